"""Rolling performance statistics: pure JAX, O(T) per statistic, batched over portfolios.

The value at period ``t`` is the full-sample statistic of `pmkit.core.performance`
applied to the window of the ``window`` periods ending at ``t`` (inclusive). It
is NaN for the first ``window - 1`` periods and for every window holding an
absent (NaN) observation: a rolling statistic is only reported on full
windows, so a portfolio's first value comes ``window - 1`` periods after its
first return.

How it is computed
------------------
- Means, variances, covariances and downside moments come from differences of
  cumulative sums (``O(T)`` whatever the window). The series are centred on
  their full-sample mean first, which keeps the cancellation error of
  ``sum(x**2) - sum(x)**2 / w`` at about ``1e-16 * T / w`` relative.
- Window returns and maximum drawdowns are compounded from each window's own
  start, exactly like the full-sample definition: one `jax.lax.fori_loop`
  over the ``window`` offsets, vectorized over all window starts (``O(w T)``
  multiply-adds with no Python loop and no cancellation).

References are empyrical's definitions, as in `pmkit.core.performance`;
empyrical's ``roll_*`` functions give the same values on full windows.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pmkit.core._precision import precise

__all__ = ["ROLLING_BENCHMARK_STATISTICS", "ROLLING_STATISTICS", "rolling_stats", "rolling_summary"]

Array = jax.Array

#: Rolling statistics of the returns alone, in the order `rolling_summary` returns them.
ROLLING_STATISTICS: tuple[str, ...] = (
    "rolling_return",
    "rolling_volatility",
    "rolling_sharpe",
    "rolling_sortino",
    "rolling_max_drawdown",
)
#: Rolling statistics against a benchmark.
ROLLING_BENCHMARK_STATISTICS: tuple[str, ...] = ("rolling_beta", "rolling_tracking_error")

#: Portfolios per block in `rolling_stats` (a (block, T) float64 array is ~1 MB at T = 2520).
_BLOCK = 50


def _window_sum(x: Array, window: int) -> Array:
    """Sums over every full window, shape (T - window + 1,), by cumulative-sum differences."""
    c = jnp.concatenate([jnp.zeros((1,), x.dtype), jnp.cumsum(x)])
    return c[window:] - c[:-window]


def _pad(x: Array, window: int, full: Array) -> Array:
    """Place window results at their end periods, NaN before and on incomplete windows."""
    x = jnp.where(full, x, jnp.nan)
    return jnp.concatenate([jnp.full((window - 1,), jnp.nan, x.dtype), x])


def _centred(x: Array, valid: Array) -> tuple[Array, Array]:
    """``(x - mean, mean)`` with absent values 0 (the mean of the present values)."""
    n = jnp.maximum(jnp.sum(valid), 1)
    m = jnp.sum(jnp.where(valid, x, 0.0)) / n
    return jnp.where(valid, x - m, 0.0), m


def _moments(x: Array, valid: Array, window: int) -> tuple[Array, Array]:
    """Window mean and sample variance (ddof=1) of ``x``, shape (T - window + 1,)."""
    xc, m = _centred(x, valid)
    s1 = _window_sum(xc, window)
    s2 = _window_sum(xc * xc, window)
    var = jnp.maximum(s2 - s1 * s1 / window, 0.0) / (window - 1)
    return s1 / window + m, var


def _compounded(x: Array, window: int) -> tuple[Array, Array]:
    """Window return and maximum drawdown of every window (absent values as 0)."""
    starts = x.shape[0] - window + 1
    ones = jnp.ones((starts,), x.dtype)

    def step(j: int, carry: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        wealth, peak, mdd = carry
        wealth = wealth * (1.0 + jax.lax.dynamic_slice(x, (j,), (starts,)))
        peak = jnp.maximum(peak, wealth)
        return wealth, peak, jnp.minimum(mdd, wealth / peak - 1.0)

    wealth, _, mdd = jax.lax.fori_loop(0, window, step, (ones, ones, 0.0 * ones))
    return wealth - 1.0, mdd


@precise
def rolling_summary(
    returns: Array,
    benchmark: Array | None = None,
    window: int = 63,
    risk_free: float | Array = 0.0,
    required_return: float | Array = 0.0,
    periods_per_year: float | Array = 252,
) -> dict[str, Array]:
    """Rolling statistics of one portfolio over windows of ``window`` periods.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    benchmark : jax.Array, shape (T,), optional
        Benchmark returns on the same periods.
    window : int, default 63
        Periods per window (static; ``2 <= window <= T``).
    risk_free : float, default 0
        Risk-free return per period (Sharpe).
    required_return : float, default 0
        Minimum acceptable return per period (Sortino).
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    dict of str to jax.Array, shape (T,)
        ``rolling_return`` (compounded window return, not annualized),
        ``rolling_volatility`` (annualized, empyrical ``annual_volatility``),
        ``rolling_sharpe`` (empyrical ``sharpe_ratio``), ``rolling_sortino``
        (empyrical ``sortino_ratio``), ``rolling_max_drawdown`` (empyrical
        ``max_drawdown``); with a benchmark also ``rolling_beta`` (empyrical
        ``beta``) and ``rolling_tracking_error`` (annualized, as
        `pmkit.core.performance.tracking_error`). A window of identical
        returns gives a volatility of 0 (to rounding) and an infinite or
        meaningless Sharpe ratio.
    """
    ppy = periods_per_year
    valid = ~jnp.isnan(returns)
    full = _window_sum(valid.astype(returns.dtype), window) == window
    x = jnp.where(valid, returns, 0.0)

    mean, var = _moments(x, valid, window)
    vol = jnp.sqrt(var)
    short = jnp.where(valid, jnp.minimum(x - required_return, 0.0), 0.0)
    down = jnp.sqrt(_window_sum(short * short, window) / window)
    ret, mdd = _compounded(x, window)
    out = {
        "rolling_return": ret,
        "rolling_volatility": vol * jnp.sqrt(ppy),
        "rolling_sharpe": (mean - risk_free) / vol * jnp.sqrt(ppy),
        "rolling_sortino": (mean - required_return) * jnp.sqrt(ppy) / down,
        "rolling_max_drawdown": mdd,
    }
    if benchmark is None:
        return {k: _pad(v, window, full) for k, v in out.items()}

    paired = valid & ~jnp.isnan(benchmark)
    both = _window_sum(paired.astype(returns.dtype), window) == window
    rc, _ = _centred(returns, paired)
    bc, _ = _centred(benchmark, paired)
    sr, sb = _window_sum(rc, window), _window_sum(bc, window)
    cov = (_window_sum(rc * bc, window) - sr * sb / window) / window
    var_b = jnp.maximum(_window_sum(bc * bc, window) - sb * sb / window, 0.0) / window
    _, var_a = _moments(jnp.where(paired, returns - benchmark, 0.0), paired, window)
    out = {k: _pad(v, window, full) for k, v in out.items()}
    out["rolling_beta"] = _pad(jnp.where(var_b >= 1e-30, cov / var_b, jnp.nan), window, both)
    out["rolling_tracking_error"] = _pad(jnp.sqrt(var_a) * jnp.sqrt(ppy), window, both)
    return out


@precise
@functools.partial(jax.jit, static_argnames=("window",))
def rolling_stats(
    returns: Array,
    benchmark: Array | None = None,
    window: int = 63,
    risk_free: float | Array = 0.0,
    required_return: float | Array = 0.0,
    periods_per_year: float | Array = 252.0,
) -> dict[str, Array]:
    """`rolling_summary` for many portfolios in one compiled call (one compile per window).

    Parameters
    ----------
    returns : jax.Array, shape (P, T)
        Simple periodic returns of ``P`` portfolios; NaN marks absent periods.
    benchmark : jax.Array, shape (T,) or (P, T), optional
        Benchmark returns, shared or one row per portfolio.
    window : int, default 63
        Periods per window (static, ``2 <= window <= T``).
    risk_free, required_return, periods_per_year : float
        As in `rolling_summary`.

    Returns
    -------
    dict of str to jax.Array, shape (P, T)
        As `rolling_summary`, one row per portfolio.
    """
    fn = functools.partial(
        rolling_summary,
        window=window,
        risk_free=risk_free,
        required_return=required_return,
        periods_per_year=periods_per_year,
    )
    # lax.map in blocks of portfolios (each block vmapped) rather than one vmap
    # over all of them: the O(window * T) compounding loop then updates
    # (block, T) arrays that stay in cache instead of streaming (P, T) arrays
    # through memory on every one of its `window` steps.
    if benchmark is None:
        return jax.lax.map(fn, returns, batch_size=_BLOCK)
    if benchmark.ndim == 1:
        return jax.lax.map(lambda r: fn(r, benchmark), returns, batch_size=_BLOCK)
    return jax.lax.map(lambda rb: fn(*rb), (returns, benchmark), batch_size=_BLOCK)
