"""Position sizing with validation: fixed-fractional, volatility target, Kelly; portfolio heat.

Every rule returns a non-negative number of units (shares), rounded *down*
to whole lots and capped so the position's value stays within
``max_position_weight`` of equity (the cap is in units,
``floor(max_position_weight * equity / price)`` lots). The side is the
caller's: for fixed-fractional, long when ``stop < entry``, short when
``stop > entry``. Arguments broadcast like numpy arrays: scalars in, a
float out; arrays in, an array out.

Portfolio heat is the total open risk to stops as a fraction of equity:
``sum |price - stop| * |quantity| / equity``.

Bad input raises `pmkit.errors.ValidationError` naming the field and value:
``stop == entry``, a win rate outside ``[0, 1]``, ``payoff <= 0``, negative
equity, non-positive prices or volatilities, a lot size that is not a
positive integer, non-finite numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from pmkit.core import sizing as core
from pmkit.errors import UnknownAssetError, ValidationError
from pmkit.model._apply import apply_core

__all__ = [
    "fixed_fractional_size",
    "heat_from_registry",
    "kelly_fraction",
    "kelly_size",
    "portfolio_heat",
    "size_for_portfolio",
    "vol_target_size",
]

Number = float | int | np.ndarray


def _arr(
    name: str,
    x: Any,
    *,
    lo: float | None = None,
    lo_open: bool = False,
    hi: float | None = None,
    allow_inf: bool = False,
) -> np.ndarray:
    """``x`` as a float64 array, checked finite and within bounds; errors name the field."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, x, "must be a number or an array of numbers") from exc
    bad = np.isnan(a) if allow_inf else ~np.isfinite(a)
    if bad.any():
        raise ValidationError(name, _first(a, bad), "must be finite")
    if lo is not None:
        below = a <= lo if lo_open else a < lo
        if below.any():
            op = ">" if lo_open else ">="
            raise ValidationError(name, _first(a, below), f"must be {op} {lo:g}")
    if hi is not None and (a > hi).any():
        raise ValidationError(name, _first(a, a > hi), f"must be <= {hi:g}")
    return a


def _first(a: np.ndarray, mask: np.ndarray) -> float:
    return float(np.broadcast_to(a, mask.shape)[mask].flat[0]) if mask.shape else float(a)


def _lots(lot_size: Any) -> np.ndarray:
    a = _arr("lot_size", lot_size, lo=1.0)
    if (a != np.floor(a)).any():
        raise ValidationError("lot_size", _first(a, a != np.floor(a)), "must be a positive integer")
    return a


def _cap(equity: np.ndarray, price: np.ndarray, max_position_weight: Any) -> np.ndarray:
    if max_position_weight is None:
        return np.asarray(np.inf)
    mw = _arr("max_position_weight", max_position_weight, lo=0.0)
    return np.asarray(core.max_units(equity, price, mw))


def _finish(units: Any, cap: np.ndarray, lots: np.ndarray, *inputs: Any) -> Number:
    out = np.asarray(core.cap_and_round(np.asarray(units), cap, lots), dtype=np.float64)
    scalar = all(np.ndim(x) == 0 for x in inputs)
    return float(out) if scalar else out


def fixed_fractional_size(
    equity: Number,
    risk_fraction: Number,
    entry: Number,
    stop: Number,
    *,
    lot_size: Number = 1,
    max_position_weight: Number | None = None,
) -> Number:
    """Units so that a move from entry to stop loses ``risk_fraction`` of equity.

    ``units = risk_fraction * equity / |entry - stop|``, rounded down to
    lots and capped by ``max_position_weight`` (valued at ``entry``). E.g.
    1 % of 100,000 with entry 50 and stop 48 is 500 units.

    Parameters
    ----------
    equity : float or array
        Account equity (currency), >= 0.
    risk_fraction : float or array
        Fraction of equity at risk, in ``(0, 1]``.
    entry, stop : float or array
        Entry and stop prices (currency per unit), > 0 and different.
    lot_size : int or array, default 1
        Units per lot.
    max_position_weight : float or array, optional
        Largest position value as a fraction of equity.

    Returns
    -------
    float or numpy.ndarray
        Units (whole lots, >= 0).
    """
    e = _arr("equity", equity, lo=0.0)
    rf = _arr("risk_fraction", risk_fraction, lo=0.0, lo_open=True, hi=1.0)
    en = _arr("entry", entry, lo=0.0, lo_open=True)
    st = _arr("stop", stop, lo=0.0, lo_open=True)
    same = np.broadcast_to(en == st, np.broadcast(en, st).shape)
    if same.any():
        raise ValidationError(
            "stop",
            _first(np.broadcast_to(st, same.shape), same),
            "equals entry: the risk per unit would be zero",
        )
    lots = _lots(lot_size)
    mw = (
        np.asarray(np.inf)
        if max_position_weight is None
        else _arr("max_position_weight", max_position_weight, lo=0.0)
    )
    out = np.asarray(core.fixed_fractional_lots(e, rf, en, st, mw, lots), dtype=np.float64)
    scalar = all(np.ndim(x) == 0 for x in (equity, risk_fraction, entry, stop, lot_size))
    return float(out) if scalar else out


def vol_target_size(
    equity: Number,
    target_volatility: Number,
    price: Number,
    asset_volatility: Number,
    *,
    lot_size: Number = 1,
    max_position_weight: Number | None = None,
) -> Number:
    """Units whose currency volatility is ``target_volatility * equity``.

    ``units = target_volatility * equity / (price * asset_volatility)``, rounded down to
    lots and capped by ``max_position_weight``.

    Parameters
    ----------
    equity : float or array
        Account equity (currency), >= 0.
    target_volatility : float or array
        Target position volatility as a fraction of equity, >= 0, in the
        horizon of ``asset_volatility`` (e.g. both annualised).
    price : float or array
        Price per unit (currency), > 0.
    asset_volatility : float or array
        Volatility of the asset's simple returns (fraction), > 0.
    lot_size : int or array, default 1
        Units per lot.
    max_position_weight : float or array, optional
        Largest position value as a fraction of equity.

    Returns
    -------
    float or numpy.ndarray
        Units (whole lots, >= 0).
    """
    e = _arr("equity", equity, lo=0.0)
    tv = _arr("target_volatility", target_volatility, lo=0.0)
    p = _arr("price", price, lo=0.0, lo_open=True)
    av = _arr("asset_volatility", asset_volatility, lo=0.0, lo_open=True)
    lots = _lots(lot_size)
    units = core.vol_target(e, tv, p, av)
    return _finish(
        units, _cap(e, p, max_position_weight), lots, equity, target_volatility, price,
        asset_volatility, lot_size,
    )


def kelly_fraction(win_rate: Number, payoff: Number, *, cap: Number = 1.0) -> Number:
    """Kelly fraction ``f* = p - (1 - p) / b``, floored at 0 and capped.

    Parameters
    ----------
    win_rate : float or array
        Probability ``p`` of a win, in ``[0, 1]``.
    payoff : float or array
        Average win over average loss ``b``, > 0.
    cap : float or array, default 1.0
        Largest fraction of equity, in ``[0, 1]`` (e.g. 0.25).

    Returns
    -------
    float or numpy.ndarray
        Fraction of equity to commit, in ``[0, cap]`` (0 when the edge is
        negative).
    """
    p = _arr("win_rate", win_rate, lo=0.0, hi=1.0)
    b = _arr("payoff", payoff, lo=0.0, lo_open=True)
    c = _arr("cap", cap, lo=0.0, hi=1.0)
    out = np.asarray(core.kelly_fraction(p, b, c), dtype=np.float64)
    return float(out) if all(np.ndim(x) == 0 for x in (win_rate, payoff, cap)) else out


def kelly_size(
    equity: Number,
    win_rate: Number,
    payoff: Number,
    price: Number,
    *,
    cap: Number = 1.0,
    lot_size: Number = 1,
    max_position_weight: Number | None = None,
) -> Number:
    """Units worth the (capped) Kelly fraction of equity.

    ``units = kelly_fraction(p, b, cap) * equity / price``, rounded down to
    lots and capped by ``max_position_weight``.

    Parameters
    ----------
    equity : float or array
        Account equity (currency), >= 0.
    win_rate, payoff, cap : float or array
        See `kelly_fraction`.
    price : float or array
        Price per unit (currency), > 0.
    lot_size : int or array, default 1
        Units per lot.
    max_position_weight : float or array, optional
        Largest position value as a fraction of equity.

    Returns
    -------
    float or numpy.ndarray
        Units (whole lots, >= 0).
    """
    e = _arr("equity", equity, lo=0.0)
    f = np.asarray(kelly_fraction(win_rate, payoff, cap=cap))
    p = _arr("price", price, lo=0.0, lo_open=True)
    lots = _lots(lot_size)
    units = f * e / p
    return _finish(
        units, _cap(e, p, max_position_weight), lots, equity, win_rate, payoff, price, cap, lot_size
    )


# ---------------------------------------------------------------- heat


def _pa(name: str, x: Any) -> xr.DataArray:
    if not isinstance(x, xr.DataArray) or set(x.dims) - {"portfolio", "asset"}:
        got = x.dims if isinstance(x, xr.DataArray) else type(x).__name__
        raise ValidationError(name, got, "must be a DataArray over (portfolio, asset)")
    return x.astype(np.float64)


def portfolio_heat(
    quantity: xr.DataArray,
    price: xr.DataArray,
    stop: xr.DataArray,
    equity: xr.DataArray,
) -> xr.Dataset:
    """Open risk to stops per position and heat per portfolio.

    Parameters
    ----------
    quantity : xarray.DataArray
        Units held, ``(portfolio, asset)``, signed.
    price : xarray.DataArray
        Current price per unit (currency), ``(asset,)`` or ``(portfolio, asset)``.
    stop : xarray.DataArray
        Stop price per unit, ``(portfolio, asset)`` or ``(asset,)``; NaN (no
        stop) is allowed only where nothing is held.
    equity : xarray.DataArray
        Equity per portfolio (currency), ``(portfolio,)``, > 0.

    Returns
    -------
    xarray.Dataset
        ``open_risk(portfolio, asset) = |price - stop| * |quantity|``
        (currency) and ``heat(portfolio) = sum(open_risk) / equity`` (fraction).

    Raises
    ------
    ValidationError
        A held position without a stop or a price (names portfolio and
        asset), non-positive equity, bad dims.
    """
    q = _pa("quantity", quantity)
    if set(q.dims) != {"portfolio", "asset"}:
        raise ValidationError("quantity", q.dims, "must have dims (portfolio, asset)")
    q = q.transpose("portfolio", "asset")
    if not np.isfinite(q.values).all():
        raise ValidationError(
            "quantity", _first(q.values, ~np.isfinite(q.values)), "must be finite"
        )
    p, s = (
        _pa(n, x).broadcast_like(q).transpose("portfolio", "asset")
        for n, x in (("price", price), ("stop", stop))
    )
    held = q.values != 0
    for name, arr in (("price", p), ("stop", s)):
        missing = held & ~np.isfinite(arr.values)
        if missing.any():
            i, j = np.argwhere(missing)[0]
            raise ValidationError(
                f"{name}[{q.portfolio.values[i]}, {q.asset.values[j]}]",
                float(arr.values[i, j]),
                f"a held position needs a finite {name}",
            )
    if not isinstance(equity, xr.DataArray) or equity.dims != ("portfolio",):
        raise ValidationError(
            "equity", getattr(equity, "dims", equity), "must be a DataArray (portfolio,)"
        )
    e = equity.astype(np.float64).sel(portfolio=q.portfolio.values)
    if not (np.isfinite(e.values) & (e.values > 0)).all():
        bad = e.portfolio.values[~(np.isfinite(e.values) & (e.values > 0))][0]
        raise ValidationError(
            f"equity[{bad}]", float(e.sel(portfolio=bad)), "must be finite and > 0"
        )
    args = [x.reset_coords(drop=True).fillna(0.0) for x in (q, p, s)]
    risk, heat = apply_core(
        core.portfolio_heat,
        *args,
        e.reset_coords(drop=True),
        input_core_dims=[["asset"], ["asset"], ["asset"], []],
        output_core_dims=[["asset"], []],
    )
    return xr.Dataset({"open_risk": risk, "heat": heat})


def heat_from_registry(
    registry: Any,
    stops: Mapping[str, Mapping[str, float]] | xr.DataArray,
    portfolios: Any = None,
    at: Any = None,
) -> xr.Dataset:
    """Portfolio heat of a registry's portfolios from their holdings and given stops.

    Parameters
    ----------
    registry : pmkit.registry.Registry
        With market data.
    stops : Mapping[str, Mapping[str, float]] or xarray.DataArray
        ``{portfolio: {asset: stop price}}`` or ``stop(portfolio, asset)``;
        every held position needs one.
    portfolios : sequence of str, optional
        Default: every portfolio the user may view.
    at : datetime-like, optional
        Market time (default the last); equity is the NAV then.

    Returns
    -------
    xarray.Dataset
        As `portfolio_heat`.
    """
    from pmkit.risk.exposures import current_weights

    cw = current_weights(registry, portfolios, at)
    if isinstance(stops, Mapping):
        s = xr.full_like(cw["quantity"], np.nan)
        for pid, per in stops.items():
            if pid not in cw.indexes["portfolio"]:
                raise ValidationError("stops", pid, "not one of the portfolios")
            for asset, v in per.items():
                if asset not in cw.indexes["asset"]:
                    raise UnknownAssetError(f"stops[{pid!r}]", asset, "not an asset of the market")
                s.loc[{"portfolio": pid, "asset": asset}] = float(v)
    else:
        s = stops
    return portfolio_heat(cw["quantity"], cw["price"], s, cw["nav"])


def size_for_portfolio(
    registry: Any,
    portfolio: str,
    asset: str,
    method: str,
    *,
    at: Any = None,
    **params: Any,
) -> float:
    """Size a new position in a registry portfolio, capped by its configured limit.

    Equity is the portfolio's NAV at ``at``; the price is the asset's close
    then; the lot size is the market's ``lot_size``; the cap is the
    portfolio's resolved ``max_position_weight`` (`Registry.resolve_config`),
    if any, applied to the whole resulting position (units already held
    count against it).

    Parameters
    ----------
    registry : pmkit.registry.Registry
        With market data.
    portfolio : str
        Portfolio id.
    asset : str
        Asset to size.
    method : {"fixed_fractional", "vol_target", "kelly"}
        Which rule. Parameters: ``risk_fraction`` and ``stop`` (the entry is
        the price) for fixed-fractional; ``target_volatility`` and ``asset_volatility`` for
        vol-target; ``win_rate``, ``payoff`` and optional ``cap`` for Kelly.
    at : datetime-like, optional
        Market time; default the last.
    **params
        The rule's parameters.

    Returns
    -------
    float
        Units to add (whole lots, >= 0).
    """
    from pmkit.risk.exposures import current_weights

    cw = current_weights(registry, [portfolio], at)
    if asset not in cw.indexes["asset"]:
        raise UnknownAssetError("asset", asset, "not an asset of the market")
    equity = float(cw["nav"].sel(portfolio=portfolio))
    price = float(cw["price"].sel(asset=asset))
    if not np.isfinite(price):
        raise ValidationError("asset", asset, "has no price at this time (not listed)")
    lot = int(cw["lot_size"].sel(asset=asset)) if "lot_size" in cw.coords else 1
    mpw = registry.resolve_config(portfolio).get("max_position_weight")

    def need(key: str) -> Any:
        if key not in params:
            raise ValidationError(key, None, f"method {method!r} needs {key!r}")
        return params[key]

    if method == "fixed_fractional":
        units = fixed_fractional_size(
            equity, need("risk_fraction"), price, need("stop"), lot_size=lot
        )
    elif method == "vol_target":
        units = vol_target_size(
            equity, need("target_volatility"), price, need("asset_volatility"), lot_size=lot
        )
    elif method == "kelly":
        units = kelly_size(
            equity,
            need("win_rate"),
            need("payoff"),
            price,
            cap=params.get("cap", 1.0),
            lot_size=lot,
        )
    else:
        raise ValidationError(
            "method", method, "must be 'fixed_fractional', 'vol_target' or 'kelly'"
        )
    if mpw is None:
        return float(units)
    held = abs(float(cw["quantity"].sel(portfolio=portfolio, asset=asset)))
    room = max(
        float(core.max_units(equity, price, _arr("max_position_weight", mpw, lo=0.0))) - held, 0.0
    )
    return float(core.cap_and_round(np.asarray(units), np.asarray(room), np.asarray(float(lot))))
