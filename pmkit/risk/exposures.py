"""Labelled exposures: factor and benchmark betas, sector weights, leverage, concentration.

Every function validates its labelled inputs, raises typed `pmkit.errors`
naming the field and value, hands plain arrays to `pmkit.core.exposures`
through `pmkit.model._apply.apply_core` (so dask-backed inputs chunked
over ``portfolio`` work) and labels the results back.

Weights are a ``weight(portfolio, asset)`` DataArray of fractions of NAV at
one time (cash is the rest); `current_weights` builds them from a registry.
Every function also takes 1-D ``weight(asset)`` (one portfolio; results
without ``portfolio``) and unlabelled numpy arrays or sequences, read in the
asset order of the market (or of the betas); see `pmkit.risk._weights`.

Factor betas
------------
`factor_betas` regresses simple returns on the factor returns shipped with
the data provider (`factor_returns`: daily simple returns of the iShares
factor ETFs MTUM, QUAL, SIZE, USMV, VLUE, from 2014-01-03) *with an
intercept*, by ordinary least squares over the dates common to both inputs
(inner join on ``time``) where the series and every factor are non-NaN. The
fit is a jit-compiled masked least squares in the core (rows outside the
mask are zeroed, which leaves the solution unchanged), one fixed-shape
solve per series, vmapped: ragged histories need no per-series Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from pmkit.core import exposures as core
from pmkit.errors import (
    AlignmentError,
    InsufficientDataError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.model._apply import apply_core
from pmkit.risk._weights import as_weights, squeeze

__all__ = [
    "asset_class_exposure",
    "benchmark_beta",
    "concentration",
    "coord_exposure",
    "current_weights",
    "exposure_report",
    "factor_betas",
    "factor_returns",
    "leverage",
    "portfolio_factor_exposure",
    "sector_exposure",
]


# ---------------------------------------------------------------- validation helpers


def _as_weights(
    weights: Any, assets: Any = None, name: str = "weights"
) -> tuple[xr.DataArray, bool]:
    """``(weight(portfolio, asset), one)`` after checking labels and finiteness.

    Any form of `pmkit.risk._weights.as_weights` (unlabelled weights follow
    ``assets``); ``one`` is True for 1-D weights, whose results drop ``portfolio``.
    """
    w, one = as_weights(weights, assets, name)
    for dim in ("portfolio", "asset"):
        idx = w.indexes[dim]
        if idx.has_duplicates:
            raise ValidationError(f"{name}.{dim}", idx[idx.duplicated()][0], "duplicate label")
    w.attrs = {}
    values = w.values if not _is_dask(w) else None
    if values is not None and not np.isfinite(values).all():
        p, a = np.argwhere(~np.isfinite(values))[0]
        raise ValidationError(
            f"{name}[{w.portfolio.values[p]}, {w.asset.values[a]}]",
            float(values[p, a]),
            "weights must be finite (NaN weights come from a NAV <= 0)",
        )
    return w, one


def _is_dask(da: xr.DataArray) -> bool:
    return da.chunks is not None


def _check_assets(assets: Sequence[str], known: Any, field: str, where: str) -> None:
    known_set = set(np.asarray(known).tolist())
    for a in assets:
        if a not in known_set:
            raise UnknownAssetError(field, str(a), f"not an asset of the {where}")


def _as_portfolio_values(values: Any, portfolios: Any, name: str = "values") -> xr.DataArray:
    """NAV per portfolio as ``values(portfolio)`` ordered like ``portfolios``."""
    if isinstance(values, xr.Dataset) and "nav" in values.data_vars:
        values = values["nav"]
    if not isinstance(values, xr.DataArray) or values.dims != ("portfolio",):
        got = values.dims if isinstance(values, xr.DataArray) else type(values).__name__
        raise ValidationError(name, got, "must be a DataArray with dim ('portfolio',)")
    missing = [p for p in np.asarray(portfolios).tolist() if p not in values.indexes["portfolio"]]
    if missing:
        raise AlignmentError(f"{name}.portfolio", missing[0], "no value given for this portfolio")
    out = values.sel(portfolio=portfolios).astype(np.float64)
    if not np.isfinite(out.values).all():
        bad = out.portfolio.values[~np.isfinite(out.values)][0]
        raise ValidationError(f"{name}[{bad}]", float(out.sel(portfolio=bad)), "must be finite")
    return out


# ---------------------------------------------------------------- weights from a registry


def current_weights(
    registry: Any, portfolios: Sequence[str] | None = None, at: Any = None
) -> xr.Dataset:
    """Weights and NAV of a registry's portfolios at one market time.

    Parameters
    ----------
    registry : pmkit.registry.Registry
        With market data.
    portfolios : sequence of str, optional
        Default: every portfolio the acting user may view.
    at : datetime-like, optional
        A time of the market data; default its last time. Trades up to and
        including ``at`` count.

    Returns
    -------
    xarray.Dataset
        ``weight(portfolio, asset)`` and ``cash_weight(portfolio)`` (fractions
        of NAV), ``nav(portfolio)`` (portfolio currency), ``quantity(portfolio,
        asset)`` (units) and ``price(asset)`` (close per unit at ``at``; NaN
        where not listed, for unheld assets only), with asset coordinates of
        the market (``sector``, ``asset_class``, ``lot_size``...).
    """
    from pmkit.model import weights as model_weights

    market = registry.market
    if market is None:
        raise ValidationError("registry.market", None, "the registry has no market data")
    t = market.indexes["time"][-1] if at is None else at
    pids = list(portfolios) if portfolios is not None else [p.id for p in registry.portfolios()]
    h = registry.holdings(pids, times=[t])
    snap = market.sel(time=[t])
    w = model_weights(h, snap).isel(time=0, drop=True)
    meta = {k: v for k, v in market["close"].coords.items() if v.dims == ("asset",)}
    meta.pop("currency", None)  # would clash with currency(portfolio)
    out = xr.Dataset(
        {
            "weight": w["weight"].transpose("portfolio", "asset"),
            "cash_weight": w["cash_weight"],
            "nav": w["nav"],
            "quantity": h["quantity"].isel(time=0, drop=True).transpose("portfolio", "asset"),
            "price": snap["close"].isel(time=0, drop=True).reset_coords(drop=True),
        }
    )
    out = out.assign_coords({k: ("asset", v.values) for k, v in meta.items()})
    out.attrs["time"] = str(np.datetime64(w.time.values) if "time" in w.coords else t)
    return out


# ---------------------------------------------------------------- factor betas


def factor_returns(start: Any = None, end: Any = None) -> xr.DataArray:
    """Daily simple returns of the shipped factor ETFs.

    Parameters
    ----------
    start, end : datetime-like, optional
        Inclusive window of the *prices* (the first return is the day after
        ``start``); default the whole file (2014-01-02 to 2022-12-28).

    Returns
    -------
    xarray.DataArray
        ``factor_return(factor, time)``, fractions, factors MTUM, QUAL, SIZE,
        USMV and VLUE; the first price date is dropped (it has no return).
    """
    from pmkit.datasets import load_factor_prices

    prices = load_factor_prices(start, end)
    r = (prices / prices.shift(time=1) - 1.0).isel(time=slice(1, None))
    r.attrs = {"units": "fraction", "source": prices.attrs.get("source", "")}
    return r.rename("factor_return")


def _as_returns(returns: Any, name: str = "returns") -> xr.DataArray:
    if isinstance(returns, xr.Dataset):  # a market dataset: its asset returns
        from pmkit.model import simple_returns

        returns = simple_returns(returns)
    if not isinstance(returns, xr.DataArray) or returns.ndim != 2 or "time" not in returns.dims:
        got = returns.dims if isinstance(returns, xr.DataArray) else type(returns).__name__
        raise ValidationError(
            name, got, "must be a 2-D DataArray (series, time), e.g. (asset, time)"
        )
    series_dim = next(d for d in returns.dims if d != "time")
    if series_dim not in returns.indexes:
        raise ValidationError(f"{name}.{series_dim}", None, "needs coordinate labels")
    return returns.transpose(series_dim, "time").astype(np.float64)


def factor_betas(
    returns: xr.DataArray | xr.Dataset,
    factors: xr.DataArray | None = None,
    *,
    min_observations: int = 60,
) -> xr.Dataset:
    """OLS factor betas (with intercept) of each series on factor returns.

    Parameters
    ----------
    returns : xarray.DataArray or xarray.Dataset
        Simple returns ``(series, time)`` — e.g. ``(asset, time)`` or
        ``(portfolio, time)`` — as fractions, NaN where unknown; or a market
        dataset, whose asset simple returns are used.
    factors : xarray.DataArray, optional
        Factor returns ``(factor, time)``; default `factor_returns` (the five
        factor ETFs, daily, from 2014).
    min_observations : int, default 60
        Fewest common valid dates a series needs (at least ``K + 2``).

    Returns
    -------
    xarray.Dataset
        ``beta(series, factor)`` (unitless), ``alpha(series)`` (return per
        period), ``n_obs(series)`` (dates used), ``resid_var(series)``
        (residual variance per period, fraction squared), labelled like
        ``returns``.

    Raises
    ------
    AlignmentError
        No date in common.
    InsufficientDataError
        A series has fewer than ``min_observations`` valid common dates (names it).
    ValidationError
        Bad dims or ``min_observations``.
    """
    y = _as_returns(returns)
    x = factor_returns() if factors is None else factors
    if not isinstance(x, xr.DataArray) or set(x.dims) != {"factor", "time"}:
        got = x.dims if isinstance(x, xr.DataArray) else type(x).__name__
        raise ValidationError("factors", got, "must be a DataArray with dims ('factor', 'time')")
    x = x.transpose("time", "factor").astype(np.float64)
    k = x.sizes["factor"]
    if not isinstance(min_observations, int | np.integer) or min_observations < k + 2:
        raise ValidationError(
            "min_observations", min_observations, f"must be an int >= K + 2 = {k + 2}"
        )
    y, x = xr.align(y, x, join="inner", exclude=[d for d in y.dims if d != "time"])
    if y.sizes["time"] == 0:
        raise AlignmentError("time", None, "returns and factors have no date in common")
    series_dim = y.dims[0]
    valid = y.notnull() & x.notnull().all("factor")
    n = valid.sum("time").values
    short = np.flatnonzero(n < min_observations)
    if short.size:
        label = y[series_dim].values[short[0]]
        raise InsufficientDataError(
            f"returns[{label}]",
            int(n[short[0]]),
            "valid dates in common with the factors; at least "
            f"min_observations={min_observations} needed",
        )
    alpha, beta, n_obs, resid_var = apply_core(
        core.ols_betas,
        y,
        x,
        input_core_dims=[["time"], ["time", "factor"]],
        output_core_dims=[[], ["factor"], [], []],
        output_sizes={"factor": k},
    )
    out = xr.Dataset({"beta": beta, "alpha": alpha, "n_obs": n_obs, "resid_var": resid_var})
    out["beta"].attrs["units"] = "unitless"
    out["alpha"].attrs["units"] = "fraction per period"
    return out


def benchmark_beta(
    returns: xr.DataArray | xr.Dataset,
    benchmark: xr.DataArray | None = None,
    *,
    min_observations: int = 60,
) -> xr.Dataset:
    """OLS beta (with intercept) of each series to a benchmark's simple returns.

    Parameters
    ----------
    returns : xarray.DataArray or xarray.Dataset
        As in `factor_betas`.
    benchmark : xarray.DataArray, optional
        Benchmark *levels* (prices or index points) on ``time``; default the
        S&P 500 index, `pmkit.datasets.load_benchmark`.
    min_observations : int, default 60
        Fewest common valid dates.

    Returns
    -------
    xarray.Dataset
        ``beta(series)``, ``alpha(series)``, ``n_obs(series)``, ``resid_var(series)``.
    """
    if benchmark is None:
        from pmkit.datasets import load_benchmark

        benchmark = load_benchmark()
    if not isinstance(benchmark, xr.DataArray) or benchmark.dims != ("time",):
        got = benchmark.dims if isinstance(benchmark, xr.DataArray) else type(benchmark).__name__
        raise ValidationError("benchmark", got, "must be a DataArray of levels with dim ('time',)")
    b = benchmark.astype(np.float64)
    with np.errstate(invalid="ignore"):
        if bool((b <= 0).any()):
            raise ValidationError(
                "benchmark", float(b.where(b <= 0, drop=True)[0]), "levels must be > 0"
            )
    br = (b / b.shift(time=1) - 1.0).isel(time=slice(1, None))
    label = benchmark.name or "benchmark"
    x = br.expand_dims(factor=[str(label)]).reset_coords(drop=True)
    out = factor_betas(returns, x, min_observations=min_observations)
    return out.assign(beta=out["beta"].isel(factor=0, drop=True))


def portfolio_factor_exposure(
    weights: xr.DataArray, betas: xr.Dataset | xr.DataArray
) -> xr.DataArray:
    """Factor exposure of each portfolio, ``w @ B`` (weights held fixed).

    Parameters
    ----------
    weights : xarray.DataArray
        ``weight(portfolio, asset)``, fractions of NAV.
    betas : xarray.Dataset or xarray.DataArray
        `factor_betas` output (or its ``beta(asset, factor)``).

    Returns
    -------
    xarray.DataArray
        ``factor_exposure(portfolio, factor)`` (unitless: NAV-weighted beta).

    Raises
    ------
    AlignmentError
        A held asset has no beta.
    """
    b = betas["beta"] if isinstance(betas, xr.Dataset) else betas
    if not isinstance(b, xr.DataArray) or set(b.dims) != {"asset", "factor"}:
        raise ValidationError(
            "betas", getattr(b, "dims", type(b).__name__), "needs beta(asset, factor)"
        )
    b = b.transpose("asset", "factor")
    w, one = _as_weights(weights, b.asset.values)
    w = _drop_unheld(w, b.indexes["asset"], "betas")
    b = b.sel(asset=w.indexes["asset"]).reset_coords(drop=True)
    out = apply_core(
        core.group_exposure,
        w,
        input_core_dims=[["asset"]],
        output_core_dims=[["factor"]],
        output_sizes={"factor": b.sizes["factor"]},
        kwargs={"onehot": b.values},
    )
    return squeeze(out.assign_coords(factor=b.factor.values).rename("factor_exposure"), one)


def _drop_unheld(w: xr.DataArray, available: Any, what: str) -> xr.DataArray:
    """Keep assets present in ``available``; a held (non-zero) asset missing is an error."""
    have = set(np.asarray(available).tolist())
    keep = [a in have for a in w.asset.values.tolist()]
    if not all(keep):
        dropped = w.isel(asset=[i for i, k in enumerate(keep) if not k])
        held = (dropped != 0).any("portfolio").values
        if held.any():
            raise AlignmentError(
                "asset", str(dropped.asset.values[np.argmax(held)]), f"is held but has no {what}"
            )
    return w.isel(asset=[i for i, k in enumerate(keep) if k])


# ---------------------------------------------------------------- group exposures


def coord_exposure(
    weights: xr.DataArray, market: xr.Dataset, coord: str = "sector"
) -> xr.DataArray:
    """Net weight per value of an asset coordinate (sector, asset class...).

    Parameters
    ----------
    weights : xarray.DataArray
        ``weight(portfolio, asset)``, fractions of NAV.
    market : xarray.Dataset
        Market dataset with coordinate ``coord`` on ``asset``.
    coord : str, default "sector"
        Asset coordinate to group by.

    Returns
    -------
    xarray.DataArray
        ``(portfolio, <coord>)``: sum of weights of the assets in each group
        (fractions of NAV), via a one-hot ``(asset, <coord>)`` matrix; groups
        sorted by name. Summed over groups it equals the net exposure.

    Raises
    ------
    UnknownAssetError
        A weight's asset is not in the market.
    ValidationError
        The market has no such coordinate.
    """
    w, one = _as_weights(weights, market.asset.values)
    if coord not in market.coords or market[coord].dims != ("asset",):
        raise ValidationError("coord", coord, "is not a coordinate on 'asset' of the market")
    _check_assets(w.asset.values, market.indexes["asset"], "weights.asset", "market")
    labels = np.asarray(market[coord].sel(asset=w.asset.values).values).astype(str)
    groups = np.unique(labels)
    onehot = (labels[:, None] == groups[None, :]).astype(np.float64)
    out = apply_core(
        core.group_exposure,
        w.reset_coords(drop=True),
        input_core_dims=[["asset"]],
        output_core_dims=[[coord]],
        output_sizes={coord: len(groups)},
        kwargs={"onehot": onehot},
    )
    return squeeze(out.assign_coords({coord: groups}).rename(f"{coord}_weight"), one)


def sector_exposure(weights: xr.DataArray, market: xr.Dataset) -> xr.DataArray:
    """Net weight per sector, ``(portfolio, sector)``; see `coord_exposure`."""
    return coord_exposure(weights, market, "sector")


def asset_class_exposure(weights: xr.DataArray, market: xr.Dataset) -> xr.DataArray:
    """Net weight per asset class, ``(portfolio, asset_class)``; see `coord_exposure`."""
    return coord_exposure(weights, market, "asset_class")


# ---------------------------------------------------------------- leverage, concentration


def leverage(weights: xr.DataArray) -> xr.Dataset:
    """Gross and net leverage of each portfolio.

    Parameters
    ----------
    weights : xarray.DataArray
        ``weight(portfolio, asset)``, fractions of NAV.

    Returns
    -------
    xarray.Dataset
        ``gross(portfolio) = sum |w|`` and ``net(portfolio) = sum w``
        (multiples of NAV; cash excluded).
    """
    w, one = _as_weights(weights)
    gross, net = apply_core(
        core.leverage, w.reset_coords(drop=True), input_core_dims=[["asset"]],
        output_core_dims=[[], []]
    )
    return squeeze(xr.Dataset({"gross": gross, "net": net}), one)


def concentration(weights: xr.DataArray, k: int = 5) -> xr.Dataset:
    """Herfindahl index, weight-based effective number of bets and top-k weight.

    Parameters
    ----------
    weights : xarray.DataArray
        ``weight(portfolio, asset)``, fractions of NAV.
    k : int, default 5
        Number of largest positions summed by ``top_k`` (``1 <= k <= N``).

    Returns
    -------
    xarray.Dataset
        ``hhi(portfolio)``: ``sum s**2`` with ``s = |w| / sum |w|`` (the
        invested book; equals ``sum w**2`` when fully invested long-only);
        ``enb(portfolio) = 1 / hhi``, the *weight-based* effective number of
        bets (``n`` for ``n`` equal positions; not risk-based); ``top_k``:
        sum of the ``k`` largest ``|w|`` (fraction of NAV). NaN for a
        portfolio holding nothing.
    """
    w, one = _as_weights(weights)
    w = w.reset_coords(drop=True)
    n = w.sizes["asset"]
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValidationError("k", k, f"must be an int in [1, {n}] (the number of assets)")
    hhi, enb, top = apply_core(
        core.concentration,
        w,
        input_core_dims=[["asset"]],
        output_core_dims=[[], [], []],
        kwargs={"k": int(k)},
    )
    out = squeeze(xr.Dataset({"hhi": hhi, "enb": enb, "top_k": top}), one)
    out.attrs["k"] = int(k)
    return out


def exposure_report(weights: xr.DataArray, market: xr.Dataset, *, k: int = 5) -> xr.Dataset:
    """Sector and asset-class weights, leverage and concentration in one dataset.

    Parameters
    ----------
    weights : xarray.DataArray
        ``weight(portfolio, asset)``, fractions of NAV.
    market : xarray.Dataset
        Market dataset with ``sector`` and ``asset_class`` coordinates.
    k : int, default 5
        For ``top_k``.

    Returns
    -------
    xarray.Dataset
        ``sector_weight(portfolio, sector)``,
        ``asset_class_weight(portfolio, asset_class)``, ``gross``, ``net``,
        ``hhi``, ``enb``, ``top_k`` (all per portfolio).
    """
    out = xr.merge(
        [
            sector_exposure(weights, market),
            asset_class_exposure(weights, market),
            leverage(weights),
            concentration(weights, k),
        ],
        combine_attrs="drop",
    )
    out.attrs["k"] = int(k)
    return out
