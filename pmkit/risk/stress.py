"""Labelled stress tests: historical windows and hypothetical shocks, per portfolio and group.

Historical windows
------------------
`historical_stress` applies the real move of each asset over a named window
to today's weights (held fixed, cash earning 0). A window ``(start, end)``
is snapped to the trading days *inside* it: the first trading day on or
after ``start`` and the last on or before ``end``, both included. The window
return of an asset compounds the daily simple returns of every trading day
inside, the first one included, ``prod(1 + r_t) - 1 = close_end / close_base
- 1``, where ``close_base`` is the close of the trading day *before* the first
day (the Lehman window starts with the move of 2008-09-15 itself, from the
close of Friday 2008-09-12). A window with no trading day inside, or whose
first day is the first day of the data (no close before it), is refused.

An asset held but not listed at the window start (no close on the trading
day before the window, e.g. the factor ETFs, listed 2014, in 2008) has no
history to replay. It is never silently given
a zero return: ``unlisted="cash"`` (default) treats its weight as cash
*and warns* naming portfolio, window and assets, and reports it in
``unlisted_weight``, and ``coverage`` says how much of the book (by gross
position value) the window replays at all, so a screen can say "covers 12 %
of the book" beside a small loss instead of passing it off as a mild one;
``"renormalize"`` spreads it over the listed positions in proportion to
their weights (also warned and reported); ``"raise"``
refuses with `MissingPriceError`.

Hypothetical shocks
-------------------
A scenario shocks some assets, sectors or factors. Asset and sector shocks
propagate to the unshocked assets through a covariance matrix ``Sigma``
(passed in; estimate it with `pmkit.risk.covariance` or any other way) by
the Gaussian conditional mean ``E[r_u | r_s] = Sigma_us Sigma_ss^{-1} r_s``
(a linear solve, no inverse); shocked assets keep their shocks exactly. A
sector shock shocks every asset of that sector (the market's ``sector``
coordinate) by the same amount. A factor shock sets factor returns ``f``
(unshocked factors are 0, or, given a factor covariance, their conditional
mean given the shocked ones) and moves assets by ``r = B f`` with the OLS
betas ``B`` of `pmkit.risk.exposures.factor_betas` (intercept and residual
are not part of a shock).

Results
-------
Per portfolio: the return (fraction of NAV) and, given NAVs, the P&L in
currency (a loss is negative). Per group: P&L summed over member portfolios
and the return on their summed NAV, through a membership matrix
``(group, portfolio)`` from `pmkit.analytics.valuation.membership_matrix`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.core import stress as core
from pmkit.errors import (
    AlignmentError,
    InsufficientDataError,
    MissingPriceError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.model._apply import apply_core
from pmkit.risk._weights import squeeze
from pmkit.risk.exposures import _as_portfolio_values, _as_weights, _check_assets, _drop_unheld

__all__ = [
    "STANDARD_WINDOWS",
    "asset_shock_scenarios",
    "factor_shock_scenarios",
    "historical_stress",
    "hypothetical_stress",
    "sector_shock_scenarios",
    "stress_pnl",
]

#: Named historical windows (inclusive calendar dates, snapped to trading days inside;
#: the first day's own move counts).
#: Lehman: from its bankruptcy filing (2008-09-15, a Monday) a month on;
#: Covid crash: S&P 500 peak close (2020-02-19) to its trough (2020-03-23).
#: Both endpoints of both are trading days of the shipped data.
STANDARD_WINDOWS: dict[str, tuple[str, str]] = {
    "Lehman": ("2008-09-15", "2008-10-15"),
    "Covid crash": ("2020-02-19", "2020-03-23"),
}

Unlisted = Literal["cash", "renormalize", "raise"]


# ---------------------------------------------------------------- groups


def _as_membership(membership: Any, portfolios: np.ndarray) -> xr.DataArray:
    if not isinstance(membership, xr.DataArray) or set(membership.dims) != {"group", "portfolio"}:
        got = membership.dims if isinstance(membership, xr.DataArray) else type(membership).__name__
        raise ValidationError("membership", got, "must be a DataArray with dims (group, portfolio)")
    m = membership.transpose("group", "portfolio").astype(np.float64)
    vals = m.values
    if not np.isin(vals, (0.0, 1.0)).all():
        raise ValidationError("membership", vals[~np.isin(vals, (0.0, 1.0))][0], "must be 0 or 1")
    have = set(portfolios.tolist())
    for p, used in zip(m.portfolio.values.tolist(), (vals != 0).any(axis=0), strict=True):
        if used and p not in have:
            raise AlignmentError("membership.portfolio", p, "is a group member without weights")
    return m.reindex(portfolio=portfolios, fill_value=0.0)


def _rollup(out: xr.Dataset, membership: Any, values: xr.DataArray | None, dim: str) -> xr.Dataset:
    if membership is None:
        return out
    if values is None:
        raise ValidationError("values", None, "group results need portfolio values (NAV)")
    m = _as_membership(membership, out.portfolio.values)
    gp, gv, gr = apply_core(
        core.group_rollup,
        m.reset_coords(drop=True),
        out["pnl"].reset_coords(drop=True),
        values.reset_coords(drop=True),
        input_core_dims=[["group", "portfolio"], ["portfolio", dim], ["portfolio"]],
        output_core_dims=[["group", dim], ["group"], ["group", dim]],
    )
    return out.assign(group_pnl=gp, group_value=gv, group_return=gr)


# ---------------------------------------------------------------- historical


def _window_days(
    times: pd.DatetimeIndex, name: str, span: Any
) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]:
    """(base, first, last): the close before the window and its first and last trading days."""
    field = f"windows[{name!r}]"
    try:
        start, end = (pd.Timestamp(x) for x in span)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, span, "must be a (start, end) pair of dates") from exc
    if start > end:
        raise ValidationError(field, span, "start is after end")
    i = int(times.searchsorted(start, side="left"))
    j = int(times.searchsorted(end, side="right")) - 1
    first, last = (t.date().isoformat() for t in times[[0, -1]])
    if i >= len(times) or j < 0 or j < i:
        raise InsufficientDataError(
            field, span, f"no trading day inside the window; the data cover {first} to {last}"
        )
    if i == 0:
        raise InsufficientDataError(
            field,
            span,
            f"the window starts on the first day of the data ({first}): no close before it "
            "to measure the first day's move from",
        )
    return times[i - 1], times[i], times[j]


def historical_stress(
    weights: xr.DataArray | xr.Dataset,
    market: xr.Dataset,
    windows: Mapping[str, tuple[Any, Any]] | None = None,
    *,
    values: xr.DataArray | None = None,
    membership: xr.DataArray | None = None,
    unlisted: Unlisted = "cash",
) -> xr.Dataset:
    """Replay historical windows on today's weights.

    Parameters
    ----------
    weights : xarray.DataArray, xarray.Dataset, numpy.ndarray or sequence
        ``weight(portfolio, asset)`` or ``weight(asset)`` (fractions of
        NAV), or a dataset with ``weight`` (and ``nav``, used as ``values``
        when those are omitted), e.g. from
        `pmkit.risk.exposures.current_weights`; unlabelled weights follow
        ``market.asset``.
    market : xarray.Dataset
        Market dataset with real closes covering the windows.
    windows : Mapping[str, (date, date)], optional
        Name -> inclusive ``(start, end)``; default `STANDARD_WINDOWS`. The
        first trading day's own return counts: returns run from the close
        of the trading day before it to the close of the last day.
    values : xarray.DataArray, optional
        NAV per portfolio (currency) for P&L and group results.
    membership : xarray.DataArray, optional
        ``(group, portfolio)`` 0/1 matrix (see `pmkit.analytics.valuation.membership_matrix`).
    unlisted : {"cash", "renormalize", "raise"}, default "cash"
        Treatment of held assets not listed at a window start (module doc).

    Returns
    -------
    xarray.Dataset
        ``asset_return(window, asset)`` (fraction; NaN where not listed),
        ``return(portfolio, window)`` (fraction of NAV),
        ``unlisted_weight(portfolio, window)`` (net weight of the held
        assets not listed at the window start, fraction of NAV),
        ``coverage(portfolio, window)`` (the share of the book's gross
        position value, ``sum |w|`` over held assets, that was listed at the
        window start: the part of the book the window actually replays; 1
        when every position was listed, NaN for a book with no position);
        with values
        ``pnl(portfolio, window)`` (currency); with membership
        ``group_pnl(group, window)``, ``group_value(group)``,
        ``group_return(group, window)``. Coordinates on ``window``:
        ``window_start`` and ``window_end``, the first and last trading days
        inside (both included), and ``window_base``, the trading day before
        ``window_start`` whose close the returns are measured from. With
        1-D weights the ``portfolio`` dim is dropped.

    Raises
    ------
    InsufficientDataError
        A window holds no trading day, or starts on the first day of the data.
    UnknownAssetError
        A weight's asset is not in the market.
    MissingPriceError
        ``unlisted="raise"`` and a held asset is not listed at a window start.
    """
    if unlisted not in ("cash", "renormalize", "raise"):
        raise ValidationError("unlisted", unlisted, "must be 'cash', 'renormalize' or 'raise'")
    if values is None and isinstance(weights, xr.Dataset) and "nav" in weights.data_vars:
        values = weights["nav"]
    w, one = _as_weights(weights, market.asset.values)
    windows = STANDARD_WINDOWS if windows is None else windows
    if not isinstance(windows, Mapping) or not windows:
        raise ValidationError(
            "windows", windows, "must be a non-empty mapping name -> (start, end)"
        )
    _check_assets(w.asset.values, market.indexes["asset"], "weights.asset", "market")
    times = market.indexes["time"]
    names = [str(n) for n in windows]
    days = [_window_days(times, n, windows[n]) for n in windows]
    close = market["close"].sel(asset=w.asset.values).transpose("asset", "time")
    c0 = close.sel(time=[d[0] for d in days]).values.T  # (W, N), the close before each window
    c1 = close.sel(time=[d[2] for d in days]).values.T
    listed = np.isfinite(c0)
    gap = listed & ~np.isfinite(c1)
    if gap.any():
        k, a = np.argwhere(gap)[0]
        raise MissingPriceError(
            f"close[{w.asset.values[a]}, {days[k][2].date()}]",
            float("nan"),
            "no close at window end",
        )
    _report_unlisted(w, names, listed, unlisted)
    asset_ret = np.asarray(core.window_returns(c0, c1))
    ret, unl = apply_core(
        core.historical_portfolio_returns,
        w.reset_coords(drop=True),
        input_core_dims=[["asset"]],
        output_core_dims=[["window"], ["window"]],
        output_sizes={"window": len(names)},
        kwargs={
            "returns": np.where(listed, asset_ret, 0.0),
            "listed": listed,
            "renormalize": unlisted == "renormalize",
        },
    )
    coords = {
        "window": names,
        "window_base": ("window", np.array([d[0] for d in days], dtype="datetime64[ns]")),
        "window_start": ("window", np.array([d[1] for d in days], dtype="datetime64[ns]")),
        "window_end": ("window", np.array([d[2] for d in days], dtype="datetime64[ns]")),
    }
    out = xr.Dataset(
        {
            "asset_return": (("window", "asset"), asset_ret),
            "return": ret.assign_coords(window=names),
            "unlisted_weight": unl.assign_coords(window=names),
            "coverage": _coverage(w, listed, names),
        },
        coords={**coords, "asset": w.asset.values},
    )
    out.attrs["unlisted"] = unlisted
    return squeeze(_with_pnl(out, values, membership, "window"), one)


def _coverage(w: xr.DataArray, listed: np.ndarray, names: list[str]) -> xr.DataArray:
    """Share of each book's gross position value (``sum |w|``) listed at each window start."""
    gross = np.abs(np.asarray(w.values, dtype=np.float64))  # (P, N)
    inside = gross @ listed.T.astype(np.float64)  # (P, W)
    outside = gross @ (~listed).T.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        # both parts from the same sums: exactly 1 when all is listed, exactly 0 when none
        # is (against a separate total the rounding could make a full book look partial)
        total = inside + outside
        share = np.where(total > 0, inside / total, np.nan)
    out = xr.DataArray(share, dims=("portfolio", "window"),
                       coords={"portfolio": w.portfolio.values, "window": names})
    out.attrs["units"] = "fraction of gross position value"
    return out


def _report_unlisted(w: xr.DataArray, names: list[str], listed: np.ndarray, policy: str) -> None:
    held = w.values != 0  # (P, N)
    for k, name in enumerate(names):
        missing = held & ~listed[k][None, :]
        for p in np.flatnonzero(missing.any(axis=1)):
            assets = w.asset.values[missing[p]].tolist()
            pid = str(w.portfolio.values[p])
            if policy == "raise":
                raise MissingPriceError(
                    f"weights[{pid}, {assets[0]}]",
                    float(w.values[p, missing[p]][0]),
                    f"held but not listed at the start of window {name!r}",
                )
            how = "treated as cash" if policy == "cash" else "spread over the listed positions"
            warnings.warn(
                f"window {name!r}: portfolio {pid!r} holds {assets} not listed at the window "
                f"start; their weight {float(w.values[p, missing[p]].sum()):.4f} is {how}",
                UserWarning,
                stacklevel=3,
            )


def _with_pnl(out: xr.Dataset, values: Any, membership: Any, dim: str) -> xr.Dataset:
    if values is None:
        if membership is not None:
            raise ValidationError("values", None, "group results need portfolio values (NAV)")
        return out
    v = _as_portfolio_values(values, out.portfolio.values)
    out = out.assign(pnl=out["return"] * v.reset_coords(drop=True))
    return _rollup(out, membership, v, dim)


# ---------------------------------------------------------------- hypothetical


def _as_cov(cov: Any) -> tuple[np.ndarray, np.ndarray]:
    """(asset labels, covariance array) from a labelled 2-D DataArray or DataFrame."""
    if isinstance(cov, pd.DataFrame):
        rows, cols, arr = cov.index, cov.columns, cov.to_numpy(dtype=np.float64)
    elif isinstance(cov, xr.DataArray) and cov.ndim == 2:
        d0, d1 = cov.dims
        if d0 not in cov.indexes or d1 not in cov.indexes:
            raise ValidationError("cov", cov.dims, "both dims need asset labels")
        rows, cols, arr = cov.indexes[d0], cov.indexes[d1], np.asarray(cov.values, dtype=np.float64)
    else:
        got = getattr(cov, "dims", type(cov).__name__)
        raise ValidationError("cov", got, "must be a labelled 2-D DataArray or a DataFrame")
    rows, cols = pd.Index(rows).astype(str), pd.Index(cols).astype(str)
    if rows.has_duplicates or set(rows) != set(cols) or len(rows) != len(cols):
        raise ValidationError("cov", list(cols), "rows and columns must hold the same asset labels")
    arr = arr[:, cols.get_indexer(rows)]
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValidationError(f"cov[{rows[i]}, {rows[j]}]", float(arr[i, j]), "must be finite")
    scale = max(float(np.abs(arr).max()), 1e-300)
    asym = np.abs(arr - arr.T).max()
    if asym > 1e-10 * scale:
        raise ValidationError("cov", float(asym), "is not symmetric (largest |S - S.T| shown)")
    return rows.to_numpy(), arr


def _shock_table(
    shocks: Any, labels: np.ndarray, kind: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Scenario names, masks (S, N) and shock values (S, N) on ``labels``."""
    if not isinstance(shocks, Mapping) or not shocks:
        raise ValidationError(
            "shocks", shocks, "must be a non-empty mapping scenario -> {label: r}"
        )
    pos = {a: i for i, a in enumerate(labels.tolist())}
    names, masks, vals = (
        [],
        np.zeros((len(shocks), len(labels)), bool),
        np.zeros((len(shocks), len(labels))),
    )
    for s, (name, spec) in enumerate(shocks.items()):
        names.append(str(name))
        if not isinstance(spec, Mapping) or not spec:
            raise ValidationError(
                f"shocks[{name!r}]", spec, f"must be a non-empty {{{kind}: return}}"
            )
        for label, r in spec.items():
            if label not in pos:
                err = UnknownAssetError if kind == "asset" else ValidationError
                raise err(f"shocks[{name!r}]", label, f"unknown {kind}")
            try:
                x = float(r)
            except (TypeError, ValueError) as exc:
                raise ValidationError(
                    f"shocks[{name!r}][{label!r}]", r, "must be a number"
                ) from exc
            if not np.isfinite(x) or (x <= -1.0 and kind != "factor"):
                raise ValidationError(
                    f"shocks[{name!r}][{label!r}]", r, "must be a finite simple return > -1"
                )
            masks[s, pos[label]] = True
            vals[s, pos[label]] = x
    return names, masks, vals


def _check_blocks(cov: np.ndarray, masks: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    for s, m in enumerate(masks):
        try:
            np.linalg.cholesky(cov[np.ix_(m, m)])
        except np.linalg.LinAlgError as exc:
            raise ValidationError(
                "cov",
                labels[m].tolist(),
                f"scenario {names[s]!r}: the covariance of the shocked assets is singular or "
                "not positive definite, so the conditional mean is undefined",
            ) from exc


def _scenario_array(names: list[str], labels: np.ndarray, r: Any, how: str) -> xr.DataArray:
    out = xr.DataArray(
        np.asarray(r, dtype=np.float64),
        dims=("scenario", "asset"),
        coords={"scenario": names, "asset": labels},
        name="scenario_return",
    )
    out.attrs = {"units": "fraction", "method": how}
    return out


def asset_shock_scenarios(shocks: Mapping[str, Mapping[str, float]], cov: Any) -> xr.DataArray:
    """Asset returns of scenarios that shock named assets, propagated through ``cov``.

    Parameters
    ----------
    shocks : Mapping[str, Mapping[str, float]]
        Scenario name -> {asset: shock return (fraction, > -1)}.
    cov : xarray.DataArray or pandas.DataFrame
        Covariance of asset returns, labelled by asset on both axes (any dim
        names), in the horizon of the shocks; defines the asset axis.

    Returns
    -------
    xarray.DataArray
        ``scenario_return(scenario, asset)``: the shocks on shocked assets,
        ``Sigma_us Sigma_ss^{-1} r_s`` elsewhere (fractions).

    Raises
    ------
    UnknownAssetError
        A shocked asset is not in ``cov``.
    ValidationError
        Non-finite or asymmetric ``cov``, a singular shocked block, bad shocks.
    """
    labels, arr = _as_cov(cov)
    names, masks, vals = _shock_table(shocks, labels, "asset")
    _check_blocks(arr, masks, labels, names)
    r = core.conditional_scenarios(arr, masks, vals)
    return _scenario_array(names, labels, r, "asset shock, covariance-conditional")


def sector_shock_scenarios(
    shocks: Mapping[str, Mapping[str, float]],
    cov: Any,
    market: xr.Dataset,
    *,
    coord: str = "sector",
) -> xr.DataArray:
    """Scenarios shocking every asset of a sector by the same return, propagated through ``cov``.

    Parameters
    ----------
    shocks : Mapping[str, Mapping[str, float]]
        Scenario name -> {sector: shock return}.
    cov : xarray.DataArray or pandas.DataFrame
        Covariance of asset returns (see `asset_shock_scenarios`).
    market : xarray.Dataset
        Market dataset whose ``coord`` coordinate gives each asset's sector.
    coord : str, default "sector"
        Asset coordinate to shock by (e.g. ``"asset_class"``).

    Returns
    -------
    xarray.DataArray
        ``scenario_return(scenario, asset)`` (fractions).
    """
    labels, arr = _as_cov(cov)
    if coord not in market.coords or market[coord].dims != ("asset",):
        raise ValidationError("coord", coord, "is not a coordinate on 'asset' of the market")
    _check_assets(labels, market.indexes["asset"], "cov", "market")
    sectors = np.asarray(market[coord].sel(asset=labels).values).astype(str)
    known = set(sectors.tolist())
    asset_shocks: dict[str, dict[str, float]] = {}
    for name, spec in shocks.items() if isinstance(shocks, Mapping) else []:
        if not isinstance(spec, Mapping) or not spec:
            raise ValidationError(
                f"shocks[{name!r}]", spec, f"must be a non-empty {{{coord}: return}}"
            )
        asset_shocks[name] = {}
        for sec, r in spec.items():
            if sec not in known:
                raise ValidationError(
                    f"shocks[{name!r}]", sec, f"no asset of the covariance has this {coord}"
                )
            asset_shocks[name].update({a: r for a in labels[sectors == sec].tolist()})
    if not asset_shocks:
        raise ValidationError(
            "shocks", shocks, "must be a non-empty mapping scenario -> {sector: r}"
        )
    out = asset_shock_scenarios(
        asset_shocks, xr.DataArray(arr, dims=("a", "b"), coords={"a": labels, "b": labels})
    )
    out.attrs["method"] = f"{coord} shock, covariance-conditional"
    return out


def factor_shock_scenarios(
    shocks: Mapping[str, Mapping[str, float]],
    betas: xr.Dataset | xr.DataArray,
    factor_cov: Any = None,
) -> xr.DataArray:
    """Asset returns of factor-shock scenarios: ``r = B f``.

    Parameters
    ----------
    shocks : Mapping[str, Mapping[str, float]]
        Scenario name -> {factor: factor return}.
    betas : xarray.Dataset or xarray.DataArray
        `pmkit.risk.exposures.factor_betas` output or its ``beta(asset, factor)``.
    factor_cov : xarray.DataArray or pandas.DataFrame, optional
        Covariance of factor returns. Without it unshocked factors are 0;
        with it they take their conditional mean given the shocked factors.

    Returns
    -------
    xarray.DataArray
        ``scenario_return(scenario, asset)`` (fractions); the full factor
        vector of each scenario is in ``attrs["factor_shock"]`` as
        ``{scenario: {factor: return}}``.
    """
    b = betas["beta"] if isinstance(betas, xr.Dataset) else betas
    if not isinstance(b, xr.DataArray) or set(b.dims) != {"asset", "factor"}:
        raise ValidationError(
            "betas", getattr(b, "dims", type(b).__name__), "needs beta(asset, factor)"
        )
    b = b.transpose("asset", "factor")
    bv = np.asarray(b.values, dtype=np.float64)
    if not np.isfinite(bv).all():
        a, f = np.argwhere(~np.isfinite(bv))[0]
        raise ValidationError(
            f"betas[{b.asset.values[a]}, {b.factor.values[f]}]", float(bv[a, f]), "must be finite"
        )
    factors = np.asarray(b.factor.values).astype(str)
    names, masks, vals = _shock_table(shocks, factors, "factor")
    how = "factor shock, r = B f"
    if factor_cov is not None:
        flabels, farr = _as_cov(factor_cov)
        if set(flabels.tolist()) != set(factors.tolist()):
            raise AlignmentError(
                "factor_cov", flabels.tolist(), f"must cover the factors {factors.tolist()}"
            )
        order = pd.Index(flabels).get_indexer(factors)
        farr = farr[np.ix_(order, order)]
        _check_blocks(farr, masks, factors, names)
        vals = np.asarray(core.conditional_scenarios(farr, masks, vals))
        how += " (unshocked factors covariance-conditional)"
    r = core.factor_scenarios(bv, vals)
    out = _scenario_array(names, b.asset.values, r, how)
    out.attrs["factor_shock"] = {
        n: dict(zip(factors.tolist(), vals[i].tolist(), strict=True)) for i, n in enumerate(names)
    }
    return out


def stress_pnl(
    weights: xr.DataArray | xr.Dataset,
    scenario_returns: xr.DataArray,
    *,
    values: xr.DataArray | None = None,
    membership: xr.DataArray | None = None,
) -> xr.Dataset:
    """Portfolio (and group) return and P&L under asset-level scenario returns.

    Parameters
    ----------
    weights : xarray.DataArray, xarray.Dataset, numpy.ndarray or sequence
        ``weight(portfolio, asset)``, ``weight(asset)`` (results without
        ``portfolio``) or a dataset with ``weight`` (and ``nav``); unlabelled
        weights follow ``scenario_returns.asset``.
    scenario_returns : xarray.DataArray
        ``(scenario, asset)`` fractions, e.g. from `asset_shock_scenarios`.
        Assets without a weight count as unheld; a held asset missing from
        the scenarios is an `AlignmentError`.
    values : xarray.DataArray, optional
        NAV per portfolio (currency); default the dataset's ``nav``.
    membership : xarray.DataArray, optional
        ``(group, portfolio)`` 0/1 matrix for group results (needs values).

    Returns
    -------
    xarray.Dataset
        ``asset_return(scenario, asset)``, ``return(portfolio, scenario)``;
        with values ``pnl(portfolio, scenario)`` (currency, loss negative);
        with membership ``group_pnl(group, scenario)``, ``group_value(group)``,
        ``group_return(group, scenario)``; for factor scenarios
        ``factor_shock(scenario, factor)``.
    """
    if values is None and isinstance(weights, xr.Dataset) and "nav" in weights.data_vars:
        values = weights["nav"]
    r = scenario_returns
    if not isinstance(r, xr.DataArray) or set(r.dims) != {"scenario", "asset"}:
        got = r.dims if isinstance(r, xr.DataArray) else type(r).__name__
        raise ValidationError("scenario_returns", got, "must be a DataArray (scenario, asset)")
    r = r.transpose("scenario", "asset")
    w, one = _as_weights(weights, r.asset.values)
    if not np.isfinite(r.values).all():
        s, a = np.argwhere(~np.isfinite(r.values))[0]
        raise ValidationError(
            f"scenario_returns[{r.scenario.values[s]}, {r.asset.values[a]}]",
            float(r.values[s, a]),
            "must be finite",
        )
    w = _drop_unheld(w, r.indexes["asset"], "scenario return").reindex(
        asset=r.asset.values, fill_value=0.0
    )
    v = _as_portfolio_values(values, w.portfolio.values) if values is not None else None
    ones = xr.ones_like(w.isel(asset=0, drop=True).reset_coords(drop=True))
    ret, _ = apply_core(
        core.portfolio_scenario_returns,
        w.reset_coords(drop=True),
        ones,
        input_core_dims=[["asset"], []],
        output_core_dims=[["scenario"], ["scenario"]],
        output_sizes={"scenario": r.sizes["scenario"]},
        kwargs={"scenario_returns": r.values},
    )
    out = xr.Dataset(
        {
            "asset_return": r.reset_coords(drop=True),
            "return": ret.assign_coords(scenario=r.scenario.values),
        }
    )
    if "factor_shock" in r.attrs:  # from factor_shock_scenarios: keep the factor vectors
        fs = pd.DataFrame(r.attrs["factor_shock"]).T.loc[r.scenario.values]
        out["factor_shock"] = (("scenario", "factor"), fs.to_numpy(float))
        out = out.assign_coords(factor=fs.columns.to_numpy(str))
    out.attrs["method"] = r.attrs.get("method", "")
    return squeeze(_with_pnl(out, v, membership, "scenario"), one)


def hypothetical_stress(
    weights: xr.DataArray | xr.Dataset,
    shocks: Mapping[str, Mapping[str, float]],
    *,
    by: Literal["asset", "sector", "factor"] = "asset",
    cov: Any = None,
    market: xr.Dataset | None = None,
    betas: xr.Dataset | xr.DataArray | None = None,
    factor_cov: Any = None,
    values: xr.DataArray | None = None,
    membership: xr.DataArray | None = None,
) -> xr.Dataset:
    """Build shock scenarios and evaluate them on portfolios in one call.

    Parameters
    ----------
    weights : xarray.DataArray or xarray.Dataset
        As in `stress_pnl`.
    shocks : Mapping[str, Mapping[str, float]]
        Scenario name -> {asset | sector | factor: shock return}.
    by : {"asset", "sector", "factor"}
        What the shocks name. ``"asset"`` needs ``cov``; ``"sector"`` needs
        ``cov`` and ``market``; ``"factor"`` needs ``betas`` (and optionally
        ``factor_cov``).
    cov, market, betas, factor_cov
        See `asset_shock_scenarios`, `sector_shock_scenarios`,
        `factor_shock_scenarios`.
    values, membership
        See `stress_pnl`.

    Returns
    -------
    xarray.Dataset
        As `stress_pnl`.
    """
    if by == "asset":
        if cov is None:
            raise ValidationError("cov", None, "asset shocks need a covariance matrix")
        r = asset_shock_scenarios(shocks, cov)
    elif by == "sector":
        if cov is None or market is None:
            raise ValidationError(
                "cov" if cov is None else "market", None, "sector shocks need cov and market"
            )
        r = sector_shock_scenarios(shocks, cov, market)
    elif by == "factor":
        if betas is None:
            raise ValidationError("betas", None, "factor shocks need factor betas (factor_betas)")
        r = factor_shock_scenarios(shocks, betas, factor_cov)
    else:
        raise ValidationError("by", by, "must be 'asset', 'sector' or 'factor'")
    return stress_pnl(weights, r, values=values, membership=membership)
