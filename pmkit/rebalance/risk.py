"""Risk snapshots of proposed and current weights, for a proposal's before/after view.

Every number comes from `pmkit.risk` over one returns window:

* **volatility** — `pmkit.risk.volatility` (the sample standard deviation,
  ``ddof=1``, of the weighted daily return series) times
  ``sqrt(periods_per_year)``. Over the times where every held asset has a
  return this is exactly ``sqrt(w' S w * periods_per_year)`` with ``S`` the
  sample covariance (``ddof=1``) of the asset returns on those times.
* **var** — `pmkit.risk.var`, historical, one period: the lower empirical
  ``confidence`` quantile of the losses ``-r·w`` (``numpy.quantile(...,
  method="inverted_cdf")``), a positive loss fraction of NAV.
* **sectors** — `pmkit.risk.sector_exposure`: the summed weight of each
  value of the market's ``sector`` coordinate (sectors with no weight are
  left out), so they add up to the invested weight ``1 - cash``.

Cash has no risk: it dilutes the weights (they are fractions of NAV), and
``cash = 1 - sum(w)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from pmkit.errors import ValidationError
from pmkit.rebalance.types import RiskSnapshot

__all__ = ["risk_snapshot", "risk_snapshots"]


def risk_snapshots(
    weights: Mapping[str, Mapping[str, float]],
    returns: xr.DataArray,
    market: xr.Dataset,
    *,
    confidence: float = 0.95,
    periods_per_year: int = 252,
) -> dict[str, RiskSnapshot]:
    """Risk of several portfolios' weights at once (one batched call per measure).

    Parameters
    ----------
    weights : mapping portfolio -> {asset: weight}
        Fractions of each portfolio's NAV; assets left out weigh 0.
    returns : xarray.DataArray
        ``(asset, time)`` daily simple returns of the window (fractions).
    market : xarray.Dataset
        Market with a ``sector`` coordinate on ``asset``.
    confidence : float, default 0.95
        VaR confidence, in (0, 1).
    periods_per_year : int, default 252
        Return periods per year, to annualize the volatility.

    Returns
    -------
    dict portfolio -> RiskSnapshot

    Raises
    ------
    ValidationError
        Bad ``confidence``/``periods_per_year``, non-finite weights (named).
    AlignmentError, InsufficientDataError
        From `pmkit.risk`: a weighted asset without returns, or a portfolio
        with fewer than 30 times where all its assets have a return.
    """
    from pmkit.risk import sector_exposure, var, volatility

    if isinstance(periods_per_year, bool) or not isinstance(periods_per_year, int):
        raise ValidationError("periods_per_year", periods_per_year, "must be a positive integer")
    if periods_per_year < 1:
        raise ValidationError("periods_per_year", periods_per_year, "must be a positive integer")
    ok = isinstance(confidence, int | float) and not isinstance(confidence, bool)
    if not ok or not 0.0 < float(confidence) < 1.0:
        raise ValidationError("confidence", confidence, "must be a number in (0, 1), e.g. 0.95")
    c = float(confidence)
    pids = list(weights)
    assets = sorted({a for w in weights.values() for a, x in w.items() if x != 0})
    out: dict[str, RiskSnapshot] = {}
    if not pids:
        return out
    if not assets:  # all cash: nothing to measure, no risk
        return {p: RiskSnapshot(0.0, 0.0, c, {}, 1.0) for p in pids}
    matrix = np.array([[float(weights[p].get(a, 0.0)) for a in assets] for p in pids])
    w = xr.DataArray(
        matrix, dims=("portfolio", "asset"), coords={"portfolio": pids, "asset": assets}
    )
    vol = volatility(w, returns).values * math.sqrt(periods_per_year)
    loss = var(w, returns, confidence=c).values
    sectors = sector_exposure(w, market)
    for k, p in enumerate(pids):
        row = sectors.sel(portfolio=p)
        pairs = zip(row["sector"].values.tolist(), row.values.tolist(), strict=True)
        out[p] = RiskSnapshot(
            volatility=float(vol[k]),
            var=float(loss[k]),
            confidence=c,
            sectors={str(s): float(x) for s, x in pairs if x != 0},
            cash=float(1.0 - matrix[k].sum()),
        )
    return out


def risk_snapshot(
    weights: Mapping[str, float],
    returns: xr.DataArray,
    market: xr.Dataset,
    **kwargs: Any,
) -> RiskSnapshot:
    """Risk of one weight vector (see `risk_snapshots` for the parameters)."""
    return risk_snapshots({"portfolio": weights}, returns, market, **kwargs)["portfolio"]
