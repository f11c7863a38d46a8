"""Transaction costs: a linear term plus square-root market impact.

One model serves the proposal's estimate, the paper broker's fills and the
optimizer's cost term, so the three always agree.

The model
---------
Trading ``q`` units (either side) of an asset at reference price ``p``, with
notional ``n = |q| p``, costs, in currency,

``cost(q) = n * (commission_bps + half_spread_bps) / 1e4 + n * Y * sigma * sqrt(n / ADV)``

* ``commission_bps`` (default 1 bp) — broker commission, paid as a fee.
* ``half_spread_bps`` (default 2 bp) — half the bid/ask spread, paid in price.
* ``Y * sigma * sqrt(n / ADV)`` — the square-root impact law (Almgren et al.
  2005; Tóth et al. 2011): the price moves against the trade by ``Y`` daily
  volatilities times the square root of the participation ``n / ADV``.
  ``impact_coefficient`` ``Y`` defaults to 0.5 (measured values are of
  order 1); ``sigma`` is the asset's daily volatility of simple returns
  over the last ``vol_window`` closes (default 60); ``ADV`` is its average
  daily value traded, in currency (the bundled data has no volumes, so the
  default is ``default_adv`` = 50 million for every asset: pass real ADVs
  through ``adv``).

In weight terms, for a portfolio of value ``V``, this is exactly the
optimizer's `pmkit.optimize.TransactionCosts`:
``linear = (commission_bps + half_spread_bps) / 1e4`` and
``impact_i = Y sigma_i sqrt(V / ADV_i)`` on ``|dw|^(3/2)`` (see
`CostModel.transaction_costs`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from pmkit.errors import InsufficientDataError, UnknownAssetError, ValidationError
from pmkit.execution.impact import square_root_impact

__all__ = ["CostBreakdown", "CostModel"]


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Estimated cost of one trade, in currency (all parts >= 0).

    Attributes
    ----------
    commission : float
        Paid as a fee.
    spread : float
        Half-spread, paid in the execution price.
    impact : float
        Square-root market impact, paid in the execution price.
    """

    commission: float
    spread: float
    impact: float

    @property
    def total(self) -> float:
        """Commission + spread + impact (currency)."""
        return self.commission + self.spread + self.impact

    @property
    def slippage(self) -> float:
        """The part paid in price: spread + impact (currency)."""
        return self.spread + self.impact


def _nonneg(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, value, "must be a number") from exc
    if not math.isfinite(x) or x < 0:
        raise ValidationError(name, value, "must be finite and >= 0")
    return x


@dataclass(frozen=True)
class CostModel:
    """Linear plus square-root impact costs (see the module docstring for the formula).

    Parameters
    ----------
    commission_bps : float, default 1
        Commission per unit notional, in basis points.
    half_spread_bps : float, default 2
        Half the bid/ask spread, in basis points.
    impact_coefficient : float, default 0.5
        ``Y`` of the square-root law (dimensionless).
    adv : mapping asset -> float, optional
        Average daily value traded per asset, in currency.
    default_adv : float, default 5e7
        ADV for assets not in ``adv`` (currency).
    vol_window : int, default 60
        Closes used to estimate each asset's daily volatility.
    """

    commission_bps: float = 1.0
    half_spread_bps: float = 2.0
    impact_coefficient: float = 0.5
    adv: Mapping[str, float] = field(default_factory=dict)
    default_adv: float = 5e7
    vol_window: int = 60

    def __post_init__(self) -> None:
        for name in ("commission_bps", "half_spread_bps", "impact_coefficient"):
            _nonneg(name, getattr(self, name))
        if _nonneg("default_adv", self.default_adv) == 0:
            raise ValidationError("default_adv", self.default_adv, "must be > 0")
        for asset, v in dict(self.adv).items():
            if _nonneg(f"adv[{asset!r}]", v) == 0:
                raise ValidationError(f"adv[{asset!r}]", v, "must be > 0")
        if not isinstance(self.vol_window, int) or self.vol_window < 2:
            raise ValidationError("vol_window", self.vol_window, "must be an integer >= 2")

    # -- market inputs ----------------------------------------------------------
    def adv_of(self, asset: str) -> float:
        """Average daily value traded of ``asset`` (currency)."""
        return float(self.adv.get(asset, self.default_adv))

    def daily_volatility(self, market: xr.Dataset, asset: str, at: Any = None) -> float:
        """Daily volatility of ``asset``'s simple returns over ``vol_window`` closes up to ``at``.

        Raises
        ------
        UnknownAssetError
            ``asset`` is not in ``market``.
        InsufficientDataError
            Fewer than ``vol_window`` valid closes before ``at``.
        """
        if asset not in market.indexes["asset"]:
            raise UnknownAssetError("asset", asset, "not in the market data")
        close = market["close"].sel(asset=asset)
        if at is not None:
            close = close.sel(time=slice(None, at))
        values = close.values[-(self.vol_window + 1) :]
        values = values[np.isfinite(values)]
        if values.size < self.vol_window + 1:
            raise InsufficientDataError(
                "asset", asset, f"needs {self.vol_window + 1} closes for its volatility"
            )
        r = values[1:] / values[:-1] - 1.0
        return float(np.std(r, ddof=1))

    # -- costs ------------------------------------------------------------------------
    def breakdown(self, quantity: float, price: float, sigma: float, adv: float) -> CostBreakdown:
        """Cost of trading ``quantity`` units at ``price``.

        Parameters
        ----------
        quantity : float
            Signed units (sign is irrelevant: costs are symmetric).
        price : float
            Reference price per unit (> 0).
        sigma : float
            Daily volatility of the asset (fraction).
        adv : float
            Average daily value traded (currency, > 0).
        """
        notional = abs(float(quantity)) * float(price)
        commission = notional * self.commission_bps / 1e4
        spread = notional * self.half_spread_bps / 1e4
        impact = notional * square_root_impact(notional, sigma, adv, self.impact_coefficient)
        return CostBreakdown(commission, spread, impact)

    def estimate(
        self, market: xr.Dataset, asset: str, quantity: float, price: float, at: Any = None
    ) -> CostBreakdown:
        """`breakdown` with ``sigma`` from ``market`` and the asset's ADV."""
        sigma = self.daily_volatility(market, asset, at)
        return self.breakdown(quantity, price, sigma, self.adv_of(asset))

    def execution_price(self, quantity: float, price: float, breakdown: CostBreakdown) -> float:
        """Price a fill pays: the reference moved against the trade by the slippage.

        A buy pays ``price + slippage / |q|``; a sale receives ``price -
        slippage / |q|``. With the commission as the fee, the cash cost of
        the fill over the reference is exactly ``breakdown.total``.
        """
        q = abs(float(quantity))
        if q == 0:
            return float(price)
        per_unit = breakdown.slippage / q
        return float(price) + per_unit if quantity > 0 else float(price) - per_unit

    def transaction_costs(
        self, market: xr.Dataset, assets: list[str], value: float, at: Any = None
    ) -> Any:
        """The same model in weight space, for the optimizers.

        Parameters
        ----------
        market : xarray.Dataset
        assets : list of str
        value : float
            Portfolio value ``V`` (currency).
        at : datetime-like, optional
            Volatility estimated up to here.

        Returns
        -------
        pmkit.optimize.TransactionCosts
            ``linear = (commission + half_spread) / 1e4`` and
            ``impact_i = Y sigma_i sqrt(V / ADV_i)``.
        """
        from pmkit.optimize.constraints import TransactionCosts

        linear = (self.commission_bps + self.half_spread_bps) / 1e4
        impact = {
            a: self.impact_coefficient
            * self.daily_volatility(market, a, at)
            * math.sqrt(max(value, 0.0) / self.adv_of(a))
            for a in assets
        }
        return TransactionCosts(linear=linear, impact=impact)

    def to_dict(self) -> dict[str, Any]:
        """Parameters as a JSON-ready dict (stored with proposals and orders)."""
        return {
            "commission_bps": self.commission_bps,
            "half_spread_bps": self.half_spread_bps,
            "impact_coefficient": self.impact_coefficient,
            "adv": dict(self.adv),
            "default_adv": self.default_adv,
            "vol_window": self.vol_window,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CostModel:
        """Inverse of `to_dict`."""
        return cls(**dict(d))
