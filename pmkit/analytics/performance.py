"""Performance statistics of portfolios and groups, labelled (xarray over the JAX core).

Returns are simple periodic returns as fractions (0.01 is +1 %) on a
``(portfolio, time)`` DataArray; annualization assumes ``periods_per_year``
periods a year (252 for daily data). A portfolio that has not started yet has
leading NaN: those periods are absent, never zero-filled, so its statistics
equal those of its trimmed series. NaN *after* a portfolio's first return is
refused with `ValidationError` naming the portfolio and the time, since
compounding through a gap would silently book a zero return. This is the one
missing-data policy of `pmkit.model._missing`, shared with
`pmkit.risk.var` and `pmkit.risk.expected_shortfall`.

- `performance_table`: every statistic per portfolio, one variable each
  (``.to_dataframe()`` gives a portfolio-by-statistic table).
- `rolling_statistics`: rolling return, volatility, Sharpe, Sortino, maximum
  drawdown (and beta, tracking error against a benchmark) per portfolio and time.
- `group_returns`: value-weighted group returns, to feed the two above.

The definitions are empyrical's (see `pmkit.core.performance` for each
formula); dask-backed inputs chunked over ``portfolio`` are computed chunk by
chunk through `pmkit.model._apply.apply_core`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from pmkit.core import performance as _perf
from pmkit.core import rolling as _rolling
from pmkit.errors import (
    AlignmentError,
    DuplicateLabelError,
    InsufficientDataError,
    NonMonotonicTimeError,
    ValidationError,
)
from pmkit.model._apply import apply_core
from pmkit.model._missing import gap_error

__all__ = [
    "STATISTIC_INFO",
    "drawdowns",
    "group_returns",
    "performance_table",
    "rolling_statistics",
]

#: Units and a one-line description of every statistic (attrs of the outputs).
STATISTIC_INFO: dict[str, tuple[str, str]] = {
    "observations": ("periods", "number of returns (leading NaN excluded)"),
    "total_return": ("fraction", "compounded return over the whole series"),
    "cagr": ("fraction per year", "compound annual growth rate"),
    "annual_volatility": ("fraction, annualized", "std of returns (ddof=1) * sqrt(ppy)"),
    "sharpe_ratio": ("1", "annualized Sharpe ratio over the per-period risk-free rate"),
    "downside_risk": ("fraction, annualized", "downside deviation below required_return"),
    "sortino_ratio": ("1", "annualized Sortino ratio over required_return"),
    "max_drawdown": ("fraction", "largest peak-to-trough loss (<= 0)"),
    "drawdown_duration": ("periods", "max drawdown: peak to trough"),
    "drawdown_peak_to_recovery": ("periods", "max drawdown: peak to recovery (NaN: not yet)"),
    "drawdown_recovery": ("periods", "max drawdown: trough to recovery (NaN: not yet)"),
    "calmar_ratio": ("1", "cagr / |max_drawdown|"),
    "omega_ratio": ("1", "gains over losses relative to the per-period threshold"),
    "win_rate": ("fraction", "positive periods / non-zero periods"),
    "profit_factor": ("1", "sum of gains / |sum of losses|"),
    "payoff_ratio": ("1", "average gain / |average loss|"),
    "beta": ("1", "CAPM beta against the benchmark"),
    "alpha": ("fraction per year", "Jensen's alpha, annualized by compounding"),
    "tracking_error": ("fraction, annualized", "std of active return * sqrt(ppy)"),
    "information_ratio": ("1", "annualized active return / tracking error"),
    "up_capture": ("1", "CAGR ratio to the benchmark on its up periods"),
    "down_capture": ("1", "CAGR ratio to the benchmark on its down periods"),
    "rolling_return": ("fraction", "compounded return over the window"),
    "rolling_volatility": ("fraction, annualized", "volatility over the window"),
    "rolling_sharpe": ("1", "annualized Sharpe ratio over the window"),
    "rolling_sortino": ("1", "annualized Sortino ratio over the window"),
    "rolling_max_drawdown": ("fraction", "maximum drawdown within the window"),
    "rolling_beta": ("1", "beta against the benchmark over the window"),
    "rolling_tracking_error": ("fraction, annualized", "tracking error over the window"),
}

#: Volatility-type statistics, all annualized by ``sqrt(periods_per_year)``; their
#: attrs carry ``annualized=1`` (per-period volatilities of `pmkit.risk` carry 0).
ANNUALIZED_VOLATILITIES: frozenset[str] = frozenset(
    name for name, (units, _) in STATISTIC_INFO.items() if units == "fraction, annualized"
)

# -- validation ------------------------------------------------------------------------------
def _real(field: str, value: Any, *, positive: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)):
        raise ValidationError(field, value, "must be a finite real number")
    if positive and value <= 0:
        raise ValidationError(field, value, "must be positive")
    return float(value)


def _returns_array(returns: Any, field: str = "returns") -> xr.DataArray:
    """``returns`` as a 2-D DataArray (unit, time); a 1-D (time) series gets one unit."""
    if not isinstance(returns, xr.DataArray):
        raise ValidationError(field, type(returns).__name__, "must be an xarray.DataArray")
    if returns.dims == ("time",):
        returns = returns.expand_dims(portfolio=[returns.name or "portfolio"])
    if returns.ndim != 2 or "time" not in returns.dims:
        raise ValidationError(
            field, returns.dims, "must have dims (portfolio, time): one portfolio axis and time"
        )
    unit = next(d for d in returns.dims if d != "time")
    returns = returns.transpose(unit, "time")
    for dim in (unit, "time"):
        if dim not in returns.indexes:
            returns = returns.assign_coords({dim: np.arange(returns.sizes[dim])})
    labels = returns.indexes[unit]
    if labels.has_duplicates:
        raise DuplicateLabelError(unit, labels[labels.duplicated()][0], "appears more than once")
    time = returns.indexes["time"]
    if not time.is_monotonic_increasing or time.has_duplicates:
        raise NonMonotonicTimeError("time", field, "must be strictly increasing")
    if not np.issubdtype(returns.dtype, np.floating):
        returns = returns.astype(np.float64)
    return returns


def _check_history(returns: xr.DataArray, field: str = "returns") -> np.ndarray:
    """Counts of present returns per unit; refuse inf, gaps and all-NaN units."""
    unit = returns.dims[0]
    valid = returns.notnull()
    started = valid.cumsum("time") > 0
    facts = xr.Dataset(
        {
            "count": valid.sum("time"),
            "gap": (started & ~valid).any("time"),
            "inf": np.isinf(returns).any("time"),
        }
    ).compute()
    labels = returns.indexes[unit]
    for k in np.flatnonzero(facts["inf"].values):
        raise ValidationError(field, labels[k], "has infinite returns")
    for k in np.flatnonzero(facts["count"].values == 0):
        raise InsufficientDataError(field, labels[k], "has no returns (all NaN)")
    for k in np.flatnonzero(facts["gap"].values):
        row = returns.isel({unit: k})
        after = (row.notnull().cumsum("time") > 0) & row.isnull()
        raise gap_error(field, labels[k], returns.indexes["time"][int(np.argmax(after.values))])
    return facts["count"].values


def _check_benchmark(benchmark: Any, returns: xr.DataArray) -> xr.DataArray:
    """The benchmark as a float (time) DataArray on exactly the returns' time labels."""
    if not isinstance(benchmark, xr.DataArray):
        raise ValidationError("benchmark", type(benchmark).__name__, "must be an xarray.DataArray")
    if benchmark.dims != ("time",):
        raise ValidationError("benchmark", benchmark.dims, "must have the single dim (time,)")
    mine = returns.indexes["time"]
    theirs = benchmark.indexes.get("time")
    if theirs is None or not mine.equals(theirs):
        if theirs is None or len(theirs) != len(mine):
            n = benchmark.sizes["time"]
            raise AlignmentError("benchmark.time", n, f"has {n} labels; returns have {len(mine)}")
        k = int(np.argmax(np.asarray(mine != theirs)))
        raise AlignmentError(
            "benchmark.time", theirs[k], f"differs from the returns' time label {mine[k]!s}"
        )
    benchmark = benchmark.reset_coords(drop=True).astype(np.float64)
    if bool(np.isinf(benchmark).any()):
        raise ValidationError("benchmark", "inf", "has infinite returns")
    missing = (benchmark.isnull() & returns.notnull()).transpose(*returns.dims).compute()
    if bool(missing.any()):
        unit = returns.dims[0]
        k, t = (int(i[0]) for i in np.nonzero(missing.values))
        raise ValidationError(
            "benchmark",
            str(mine[t]),
            f"is NaN where {unit} {returns.indexes[unit][k]!r} has a return",
        )
    return benchmark


def _check_window(window: Any, n_time: int) -> int:
    if not isinstance(window, numbers.Integral) or isinstance(window, bool):
        raise ValidationError("window", window, "must be an integer number of periods")
    if window < 2:
        raise ValidationError("window", window, "must be at least 2 periods")
    if window > n_time:
        raise InsufficientDataError("window", window, f"is longer than the {n_time} periods")
    return int(window)


# -- core adapters (arrays in, arrays out) ------------------------------------------------------
def _shared(benchmark: np.ndarray | None) -> np.ndarray | None:
    """apply_ufunc hands a broadcast (1, T) benchmark; the core wants (T,)."""
    if benchmark is not None and benchmark.ndim == 2 and benchmark.shape[0] == 1:
        return benchmark[0]
    return benchmark


def _table_core(
    returns: np.ndarray,
    benchmark: np.ndarray | None = None,
    *,
    names: tuple[str, ...],
    **params: float,
) -> Any:
    out = _perf.performance_stats(returns, _shared(benchmark), **params)
    return jnp.stack([out[k] for k in names], axis=-1)


def _rolling_core(
    returns: np.ndarray,
    benchmark: np.ndarray | None = None,
    *,
    names: tuple[str, ...],
    window: int,
    **params: float,
) -> Any:
    out = _rolling.rolling_stats(returns, _shared(benchmark), window, **params)
    return jnp.stack([out[k] for k in names], axis=-2)


def _label(stacked: xr.DataArray, names: tuple[str, ...]) -> xr.Dataset:
    ds = stacked.assign_coords(statistic=list(names)).to_dataset("statistic")
    for name in names:
        units, description = STATISTIC_INFO[name]
        ds[name].attrs = {"units": units, "description": description}
        if name in ANNUALIZED_VOLATILITIES:
            ds[name].attrs["annualized"] = 1
    if "observations" in ds:
        ds["observations"] = ds["observations"].astype(np.int64).assign_attrs(
            ds["observations"].attrs
        )
    return ds


# -- public API ----------------------------------------------------------------------------------
def performance_table(
    returns: xr.DataArray,
    benchmark: xr.DataArray | None = None,
    risk_free: float = 0.0,
    periods_per_year: float = 252,
    required_return: float = 0.0,
    threshold: float = 0.0,
) -> xr.Dataset:
    """Performance statistics of every portfolio (or group), one variable per statistic.

    Parameters
    ----------
    returns : xarray.DataArray, dims (portfolio, time)
        Simple periodic returns as fractions. The non-``time`` dim may have any
        name (``group`` for `group_returns` output); a 1-D ``(time,)`` series
        is one portfolio. Leading NaN mark a portfolio that has not started;
        numpy- or dask-backed (chunked over ``portfolio``).
    benchmark : xarray.DataArray, dims (time,), optional
        Benchmark simple returns on exactly the same time labels; adds beta,
        alpha, tracking error, information ratio, up and down capture.
    risk_free : float, default 0
        Risk-free return *per period* (Sharpe ratio, alpha); an annual rate
        ``R`` is ``(1 + R) ** (1 / periods_per_year) - 1`` per period.
    periods_per_year : float, default 252
        Periods in a year: means scale by it, deviations by its square root,
        compounded rates by the power ``periods_per_year / n``.
    required_return : float, default 0
        Minimum acceptable return per period (downside risk, Sortino ratio).
    threshold : float, default 0
        Per-period Omega-ratio threshold.

    Returns
    -------
    xarray.Dataset
        Variables (dims ``(portfolio,)``, float64; attrs ``units`` and
        ``description``): ``observations``, ``total_return``, ``cagr``,
        ``annual_volatility``, ``sharpe_ratio``, ``downside_risk``,
        ``sortino_ratio``, ``max_drawdown``, ``drawdown_duration`` (peak to
        trough, periods), ``drawdown_peak_to_recovery``, ``drawdown_recovery``
        (trough to recovery; NaN if not recovered), ``calmar_ratio``,
        ``omega_ratio``, ``win_rate``, ``profit_factor``, ``payoff_ratio`` and
        with a benchmark ``beta``, ``alpha``, ``tracking_error``,
        ``information_ratio``, ``up_capture``, ``down_capture``. Definitions
        are empyrical's (quantstats' for win rate, profit factor and payoff
        ratio); see `pmkit.core.performance`. ``.to_dataframe()`` gives one
        row per portfolio.

    Raises
    ------
    ValidationError
        Bad parameters, infinite returns, NaN after a portfolio's first
        return, a benchmark NaN where a portfolio has a return.
    InsufficientDataError
        A portfolio with no return (all NaN) or fewer than 2.
    AlignmentError
        Benchmark time labels that are not the returns' time labels.
    """
    params = {
        "risk_free": _real("risk_free", risk_free),
        "required_return": _real("required_return", required_return),
        "threshold": _real("threshold", threshold),
        "periods_per_year": _real("periods_per_year", periods_per_year, positive=True),
    }
    returns = _returns_array(returns)
    counts = _check_history(returns)
    unit = returns.dims[0]
    for k in np.flatnonzero(counts < 2):
        raise InsufficientDataError(
            "returns", returns.indexes[unit][k], f"has {int(counts[k])} return(s); needs at least 2"
        )
    names = _perf.STATISTICS
    args = [returns]
    if benchmark is not None:
        args.append(_check_benchmark(benchmark, returns))
        names = names + _perf.BENCHMARK_STATISTICS
    stacked = apply_core(
        _table_core,
        *args,
        input_core_dims=[["time"]] * len(args),
        output_core_dims=[["statistic"]],
        output_sizes={"statistic": len(names)},
        kwargs={"names": names, **params},
    )
    ds = _label(stacked, names)
    ds.attrs = {
        **params,
        "start": str(returns.indexes["time"][0]),
        "end": str(returns.indexes["time"][-1]),
        "definitions": "empyrical (win rate, profit factor, payoff ratio: quantstats)",
    }
    return ds


def rolling_statistics(
    returns: xr.DataArray,
    window: int,
    benchmark: xr.DataArray | None = None,
    risk_free: float = 0.0,
    periods_per_year: float = 252,
    required_return: float = 0.0,
) -> xr.Dataset:
    """Rolling performance statistics over trailing windows of ``window`` periods.

    The value at ``t`` is the full-sample statistic of the ``window`` returns
    ending at ``t`` (inclusive); NaN until a portfolio has ``window`` returns.

    Parameters
    ----------
    returns : xarray.DataArray, dims (portfolio, time)
        Simple periodic returns (leading NaN: not started), as in
        `performance_table`.
    window : int
        Periods per window, ``2 <= window <= len(time)`` (63 is about a quarter
        of trading days).
    benchmark : xarray.DataArray, dims (time,), optional
        Benchmark simple returns on the same time labels; adds
        ``rolling_beta`` and ``rolling_tracking_error``.
    risk_free : float, default 0
        Risk-free return per period (Sharpe ratio).
    periods_per_year : float, default 252
        Periods in a year (volatility, Sharpe, Sortino, tracking error are annualized).
    required_return : float, default 0
        Minimum acceptable return per period (Sortino ratio).

    Returns
    -------
    xarray.Dataset
        Variables on ``(portfolio, time)``: ``rolling_return`` (compounded,
        not annualized), ``rolling_volatility``, ``rolling_sharpe``,
        ``rolling_sortino``, ``rolling_max_drawdown``, and with a benchmark
        ``rolling_beta`` and ``rolling_tracking_error``.

    Raises
    ------
    ValidationError
        ``window`` < 2 or not an integer, bad parameters, gaps in returns.
    InsufficientDataError
        ``window`` longer than the series, or a portfolio with fewer returns
        than ``window`` (or none).
    AlignmentError
        Benchmark time labels that are not the returns' time labels.
    """
    params = {
        "risk_free": _real("risk_free", risk_free),
        "required_return": _real("required_return", required_return),
        "periods_per_year": _real("periods_per_year", periods_per_year, positive=True),
    }
    returns = _returns_array(returns)
    window = _check_window(window, returns.sizes["time"])
    counts = _check_history(returns)
    unit = returns.dims[0]
    for k in np.flatnonzero(counts < window):
        raise InsufficientDataError(
            "returns",
            returns.indexes[unit][k],
            f"has {int(counts[k])} returns, fewer than window={window}",
        )
    names = _rolling.ROLLING_STATISTICS
    args = [returns]
    if benchmark is not None:
        args.append(_check_benchmark(benchmark, returns))
        names = names + _rolling.ROLLING_BENCHMARK_STATISTICS
    stacked = apply_core(
        _rolling_core,
        *args,
        input_core_dims=[["time"]] * len(args),
        output_core_dims=[["statistic", "time"]],
        output_sizes={"statistic": len(names)},
        kwargs={"names": names, "window": window, **params},
    )
    ds = _label(stacked.transpose(unit, "statistic", "time"), names)
    ds.attrs = {"window": window, **params}
    return ds


def group_returns(
    returns: xr.DataArray,
    values: xr.DataArray,
    membership: xr.DataArray | Mapping[Hashable, Sequence[Hashable]],
) -> xr.DataArray:
    """Value-weighted returns of groups of portfolios.

    The return of group ``g`` over period ``t`` is the value-weighted mean of
    its members' returns, weighted by their values at the end of the previous
    period::

        R[g, t] = sum_i m[g, i] * V[i, t-1] * r[i, t] / sum_i m[g, i] * V[i, t-1]

    over the members that have both a return at ``t`` and a value at
    ``t - 1``: the return of the members' combined holdings when ``r`` are
    returns net of flows (a member starts counting the period after its first
    value). The first period, and any period where no member has a positive
    previous value, is NaN.

    Parameters
    ----------
    returns : xarray.DataArray, dims (portfolio, time)
        Member simple returns (leading NaN: not started).
    values : xarray.DataArray, dims (portfolio, time)
        Member values at the end of each period (currency, >= 0; NaN before a
        portfolio exists), on the same labels as ``returns``.
    membership : xarray.DataArray (group, portfolio) or mapping
        Weights of portfolios in groups (1 member, 0 not; a fraction counts
        that share of a portfolio's value), or ``{group: [portfolio, ...]}``.

    Returns
    -------
    xarray.DataArray, dims (group, time)
        Group simple returns, ready for `performance_table` and
        `rolling_statistics` (which label their results by ``group``).

    Raises
    ------
    AlignmentError
        ``values`` not on the labels of ``returns``, or a member portfolio
        that ``returns`` lacks.
    ValidationError
        Negative values or membership weights, or malformed inputs.
    """
    returns = _returns_array(returns)
    unit = returns.dims[0]
    values = _returns_array(values, "values")
    if values.dims != returns.dims:
        raise AlignmentError("values", values.dims, f"must have the dims of returns {returns.dims}")
    for dim in (unit, "time"):
        if not returns.indexes[dim].equals(values.indexes[dim]):
            raise AlignmentError(
                f"values.{dim}", list(values.indexes[dim][:5]), f"differs from returns.{dim}"
            )
    if bool((values < 0).any()):
        k, t = (int(i[0]) for i in np.nonzero((values < 0).values))
        raise ValidationError(
            "values", float(values[k, t]), f"negative for {values.indexes[unit][k]!r}"
        )
    if isinstance(membership, Mapping):
        groups = list(membership)
        members = sorted({p for g in groups for p in membership[g]}, key=str)
        m = np.zeros((len(groups), len(members)))
        col = {p: j for j, p in enumerate(members)}
        for i, g in enumerate(groups):
            for p in membership[g]:
                m[i, col[p]] = 1.0
        membership = xr.DataArray(m, dims=("group", unit), coords={"group": groups, unit: members})
    if (
        not isinstance(membership, xr.DataArray)
        or membership.ndim != 2
        or (unit not in membership.dims)
    ):
        raise ValidationError(
            "membership",
            getattr(membership, "dims", type(membership).__name__),
            f"must be a (group, {unit}) DataArray or a mapping of group to {unit}s",
        )
    gdim = next(d for d in membership.dims if d != unit)
    unknown = membership.indexes[unit].difference(returns.indexes[unit])
    if len(unknown):
        raise AlignmentError("membership", unknown[0], f"is not a {unit} of returns")
    membership = membership.astype(np.float64).transpose(gdim, unit)
    if bool((membership < 0).any()) or not bool(np.isfinite(membership).all()):
        raise ValidationError("membership", "weights", "must be finite and >= 0")
    membership = membership.reindex({unit: returns.indexes[unit]}, fill_value=0.0)
    previous = values.shift(time=1)
    out = apply_core(
        _perf.group_returns,
        membership,
        returns,
        previous,
        input_core_dims=[[gdim, unit], [unit, "time"], [unit, "time"]],
        output_core_dims=[[gdim, "time"]],
    )
    return out.rename("group_returns").assign_attrs(
        units="fraction", description="value-weighted group return"
    )


_drawdown_batch = jax.jit(jax.vmap(_perf.drawdown))


def drawdowns(returns: xr.DataArray) -> xr.DataArray:
    """Drawdown after each period: wealth over its running peak, minus 1.

    Parameters
    ----------
    returns : xarray.DataArray
        Simple periodic returns on (portfolio, time) (or a group axis), as
        fractions. Leading NaN (not yet started) give a drawdown of 0: nothing
        was lost yet. Reference: empyrical ``drawdown_series``.

    Returns
    -------
    xarray.DataArray
        ``drawdown`` on the same dims, fractions <= 0 (-0.25: 25 % below the peak).

    Raises
    ------
    InsufficientDataError, ValidationError
        As `performance_table` (all-NaN series, gaps after the start, inf).
    """
    returns = _returns_array(returns)
    _check_history(returns)
    out = apply_core(_drawdown_batch, returns, input_core_dims=[["time"]],
                     output_core_dims=[["time"]])
    return out.rename("drawdown").assign_attrs(units="fraction", description="wealth / peak - 1")
