"""Performance statistics of return series: pure JAX, batched over portfolios.

Every statistic is first written for one portfolio, a 1-D array ``returns`` of
shape ``(T,)`` holding simple periodic returns as fractions (0.01 is +1 %).
`performance_stats` evaluates all of them at once, batched over a leading
``portfolio`` axis with `jax.vmap` and compiled with `jax.jit`;
`group_returns` combines member returns into value-weighted group returns.

Missing observations
--------------------
NaN marks an absent observation (a portfolio that has not started yet has
leading NaN). Absence is handled with masks, never by boolean indexing, so
everything is jit-friendly: sums, means and counts run over the present
observations only, and compounding skips absent periods (wealth is carried
unchanged through them). For a series whose only NaN are leading NaN, every
statistic therefore equals the statistic of the trimmed series. Interior NaN
are treated the same way here; the xarray layer refuses them, because
compounding through a gap would silently mean "zero return that day".

Definitions
-----------
The reference definitions are empyrical's (``empyrical-reloaded``,
``empyrical.stats``), named in each docstring; win rate, profit factor and
payoff ratio, which empyrical lacks, follow quantstats (``quantstats.stats``).
Annualization uses ``periods_per_year`` (252 for daily data): means scale by
``periods_per_year``, deviations by ``sqrt(periods_per_year)`` and compounded
rates by the power ``periods_per_year / n``. Degenerate cases never raise: they
give NaN (or ±inf where the reference gives it, e.g. a Sharpe ratio of a
series with no dispersion).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = [
    "BENCHMARK_STATISTICS",
    "STATISTICS",
    "alpha",
    "annual_volatility",
    "batched",
    "beta",
    "cagr",
    "calmar_ratio",
    "down_capture",
    "downside_risk",
    "drawdown",
    "drawdown_stats",
    "group_returns",
    "information_ratio",
    "max_drawdown",
    "omega_ratio",
    "payoff_ratio",
    "performance_stats",
    "profit_factor",
    "sharpe_ratio",
    "sortino_ratio",
    "summary",
    "total_return",
    "tracking_error",
    "up_capture",
    "win_rate",
]

Array = jax.Array

#: Statistics of a return series alone, in the order `summary` returns them.
STATISTICS: tuple[str, ...] = (
    "observations",
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe_ratio",
    "downside_risk",
    "sortino_ratio",
    "max_drawdown",
    "drawdown_duration",
    "drawdown_peak_to_recovery",
    "drawdown_recovery",
    "calmar_ratio",
    "omega_ratio",
    "win_rate",
    "profit_factor",
    "payoff_ratio",
)
#: Statistics against a benchmark, appended by `summary` when one is given.
BENCHMARK_STATISTICS: tuple[str, ...] = (
    "beta",
    "alpha",
    "tracking_error",
    "information_ratio",
    "up_capture",
    "down_capture",
)


# -- masked building blocks -----------------------------------------------------------------
def _present(x: Array) -> tuple[Array, Array]:
    """``(mask of present values, x with absent values replaced by 0)``."""
    valid = ~jnp.isnan(x)
    return valid, jnp.where(valid, x, 0.0)


def _count(valid: Array) -> Array:
    return jnp.sum(valid).astype(jnp.result_type(float))


def _mean(x: Array, valid: Array) -> Array:
    """Mean of the present values (NaN when there are none)."""
    return jnp.sum(jnp.where(valid, x, 0.0)) / _count(valid)


def _std(x: Array, valid: Array, ddof: int = 1) -> Array:
    """Two-pass standard deviation of the present values, ``ddof`` as in numpy.

    Exactly 0 when every present value is equal (empyrical's
    ``_zero_dispersion_std``: the floating-point mean of equal values may
    differ from them in the last bit and leave a spurious ~1e-18).
    """
    n = _count(valid)
    dev = jnp.where(valid, x - _mean(x, valid), 0.0)
    std = jnp.sqrt(jnp.sum(dev * dev) / (n - ddof))
    hi = jnp.max(jnp.where(valid, x, -jnp.inf))
    lo = jnp.min(jnp.where(valid, x, jnp.inf))
    return jnp.where((hi == lo) & jnp.isfinite(std), 0.0, std)


def _paired(returns: Array, benchmark: Array) -> tuple[Array, Array, Array]:
    """Mask of periods where both are present, and both series zero-filled elsewhere."""
    valid = ~jnp.isnan(returns) & ~jnp.isnan(benchmark)
    return valid, jnp.where(valid, returns, 0.0), jnp.where(valid, benchmark, 0.0)


def _compound(x: Array, valid: Array) -> Array:
    """Growth factor ``prod(1 + r)`` over the present values."""
    return jnp.prod(jnp.where(valid, 1.0 + x, 1.0))


def _annualize_growth(growth: Array, n: Array, periods_per_year: float | Array) -> Array:
    """``growth ** (periods_per_year / n) - 1`` (NaN for n == 0)."""
    return jnp.where(n > 0, growth ** (periods_per_year / n) - 1.0, jnp.nan)


# -- returns and risk -----------------------------------------------------------------------
def total_return(returns: Array) -> Array:
    """Compounded return over the whole series, ``prod(1 + r) - 1``.

    Reference: empyrical ``cum_returns_final``. Fraction (0.5 is +50 %).

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.

    Returns
    -------
    jax.Array, shape ()
        NaN when no period is present.
    """
    valid, x = _present(returns)
    return jnp.where(_count(valid) > 0, _compound(x, valid) - 1.0, jnp.nan)


def cagr(returns: Array, periods_per_year: float | Array = 252) -> Array:
    """Compound annual growth rate, ``prod(1 + r) ** (periods_per_year / n) - 1``.

    Reference: empyrical ``annual_return`` / ``cagr``, with ``n`` the number
    of present periods (empyrical counts ``len(returns)``, the same for a
    series without NaN). Fraction per year.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    periods_per_year : float, default 252
        Periods in a year (252 trading days).

    Returns
    -------
    jax.Array, shape ()
    """
    valid, x = _present(returns)
    return _annualize_growth(_compound(x, valid), _count(valid), periods_per_year)


def annual_volatility(returns: Array, periods_per_year: float | Array = 252) -> Array:
    """Annualized volatility, ``std(r, ddof=1) * sqrt(periods_per_year)``.

    Reference: empyrical ``annual_volatility`` (``alpha=2``). Fraction per
    square-root year; NaN with fewer than 2 present periods.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, _ = _present(returns)
    return _std(returns, valid) * jnp.sqrt(periods_per_year)


def sharpe_ratio(
    returns: Array, risk_free: float | Array = 0.0, periods_per_year: float | Array = 252
) -> Array:
    """Annualized Sharpe ratio, ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(ppy)``.

    Reference: empyrical ``sharpe_ratio``. Dimensionless; ±inf (or NaN for
    0/0) when the excess returns have no dispersion, as in empyrical.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    risk_free : float or jax.Array broadcastable to (T,), default 0
        Risk-free return *per period* (an annual rate ``R`` is
        ``(1 + R) ** (1 / periods_per_year) - 1`` per period).
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, _ = _present(returns)
    excess = returns - risk_free
    return _mean(excess, valid) / _std(excess, valid) * jnp.sqrt(periods_per_year)


def downside_risk(
    returns: Array, required_return: float | Array = 0.0, periods_per_year: float | Array = 252
) -> Array:
    """Annualized downside deviation below ``required_return``.

    ``sqrt(mean(min(r - required_return, 0) ** 2)) * sqrt(periods_per_year)``,
    the mean running over *all* present periods (not only the losing ones).
    Reference: empyrical ``downside_risk``.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    required_return : float, default 0
        Minimum acceptable return *per period*.
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, _ = _present(returns)
    short = jnp.minimum(returns - required_return, 0.0)
    return jnp.sqrt(_mean(short * short, valid)) * jnp.sqrt(periods_per_year)


def sortino_ratio(
    returns: Array, required_return: float | Array = 0.0, periods_per_year: float | Array = 252
) -> Array:
    """Annualized Sortino ratio.

    ``mean(r - required_return) * ppy / downside_risk(r, required_return, ppy)``.
    Reference: empyrical ``sortino_ratio``. Dimensionless; +inf when no period
    falls below ``required_return``.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    required_return : float, default 0
        Minimum acceptable return *per period*.
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, _ = _present(returns)
    mean_excess = _mean(returns - required_return, valid) * periods_per_year
    return mean_excess / downside_risk(returns, required_return, periods_per_year)


# -- drawdowns -------------------------------------------------------------------------------
def _wealth(returns: Array) -> Array:
    """Wealth path of one unit, shape (T + 1,): position 0 is the start (1.0)."""
    valid, x = _present(returns)
    growth = jnp.cumprod(jnp.where(valid, 1.0 + x, 1.0))
    return jnp.concatenate([jnp.ones((1,), growth.dtype), growth])


def drawdown(returns: Array) -> Array:
    """Drawdown after each period, ``wealth / running peak - 1`` (≤ 0).

    The running peak includes the starting wealth, so a loss on the first
    day is already a drawdown. Reference: empyrical ``drawdown_series``.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods (drawdown carried).

    Returns
    -------
    jax.Array, shape (T,)
        Fractions; NaN-free.
    """
    wealth = _wealth(returns)
    return (wealth / jax.lax.cummax(wealth))[1:] - 1.0


def max_drawdown(returns: Array) -> Array:
    """Maximum drawdown, ``min(drawdown(returns))`` (≤ 0, a fraction).

    Reference: empyrical ``max_drawdown``.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.

    Returns
    -------
    jax.Array, shape ()
        NaN when no period is present.
    """
    return drawdown_stats(returns)[0]


def drawdown_stats(returns: Array) -> tuple[Array, Array, Array, Array]:
    """The maximum drawdown and how long it lasted, in periods.

    Let the trough be the first period where the maximum drawdown is reached,
    the peak the last time before it that wealth stood at its running
    maximum (the start counts, as in `drawdown`), and the recovery the first
    period after the trough at which wealth is back at or above that peak.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods (they count as
        periods of the duration: the xarray layer only lets leading NaN in,
        which lie before any peak).

    Returns
    -------
    max_drawdown : jax.Array, shape ()
        As `max_drawdown` (empyrical ``max_drawdown``).
    duration : jax.Array, shape ()
        Periods from peak to trough. 0 when there is no drawdown.
    peak_to_recovery : jax.Array, shape ()
        Periods from peak to recovery; NaN if not recovered by the end.
    recovery : jax.Array, shape ()
        Periods from trough to recovery; NaN if not recovered by the end.

    Notes
    -----
    empyrical has no duration statistics; pyfolio's ``get_max_drawdown``
    uses the same peak/valley/recovery convention (in dates).
    """
    valid, x = _present(returns)
    dtype = x.dtype
    zero, minus = jnp.zeros((), jnp.int32), jnp.full((), -1, jnp.int32)
    one = jnp.ones((), dtype)

    # One sequential pass (a lax.scan: O(T), cheap to compile, no cumulative
    # scans). Positions: 0 is the start, k is after the k-th period.
    def step(carry: tuple[Array, ...], item: tuple[Array, Array]) -> tuple[tuple[Array, ...], None]:
        wealth, peak, peak_at, mdd, trough, trough_peak_at, trough_peak, rec = carry
        r, k = item
        wealth = wealth * (1.0 + r)
        new_peak = wealth >= peak
        peak = jnp.where(new_peak, wealth, peak)
        peak_at = jnp.where(new_peak, k, peak_at)
        dd = wealth / peak - 1.0
        deeper = dd < mdd
        mdd = jnp.where(deeper, dd, mdd)
        trough = jnp.where(deeper, k, trough)
        trough_peak_at = jnp.where(deeper, peak_at, trough_peak_at)
        trough_peak = jnp.where(deeper, peak, trough_peak)
        back = ~deeper & (rec < 0) & (k > trough) & (wealth >= trough_peak)
        rec = jnp.where(deeper, minus, jnp.where(back, k, rec))
        return (wealth, peak, peak_at, mdd, trough, trough_peak_at, trough_peak, rec), None

    init = (one, one, zero, 0.0 * one, zero, zero, one, minus)
    ks = jnp.arange(1, x.shape[0] + 1, dtype=jnp.int32)
    final, _ = jax.lax.scan(step, init, (jnp.where(valid, x, 0.0), ks))
    _, _, _, mdd, trough, peak_at, _, rec = final
    has_dd = mdd < 0
    recovered = rec >= 0
    nan = jnp.asarray(jnp.nan, dtype)
    duration = jnp.where(has_dd, trough - peak_at, 0).astype(dtype)
    to_rec = jnp.where(has_dd, jnp.where(recovered, (rec - peak_at).astype(dtype), nan), 0.0)
    recovery = jnp.where(has_dd, jnp.where(recovered, (rec - trough).astype(dtype), nan), 0.0)
    some = _count(valid) > 0
    return (
        jnp.where(some, mdd, nan),
        jnp.where(some, duration, nan),
        jnp.where(some, to_rec, nan).astype(dtype),
        jnp.where(some, recovery, nan).astype(dtype),
    )


def calmar_ratio(returns: Array, periods_per_year: float | Array = 252) -> Array:
    """Calmar ratio, ``cagr / |max_drawdown|``; NaN without a drawdown.

    Reference: empyrical ``calmar_ratio`` (NaN also where it would be inf).

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    jax.Array, shape ()
    """
    return _calmar(cagr(returns, periods_per_year), max_drawdown(returns))


def _calmar(growth_rate: Array, mdd: Array) -> Array:
    ratio = growth_rate / jnp.abs(mdd)
    return jnp.where((mdd < 0) & jnp.isfinite(ratio), ratio, jnp.nan)


# -- distribution of gains and losses ---------------------------------------------------------
def omega_ratio(returns: Array, threshold: float | Array = 0.0) -> Array:
    """Omega ratio: gains above ``threshold`` over losses below it.

    ``sum(max(r - threshold, 0)) / sum(max(threshold - r, 0))``; NaN when
    nothing falls below the threshold. Reference: empyrical ``omega_ratio``
    with ``annualization=1`` (``threshold`` is a *per-period* return here;
    empyrical's default converts an annual ``required_return`` to a daily one,
    which is ``threshold = (1 + R) ** (1 / 252) - 1``).

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    threshold : float, default 0
        Per-period return separating gains from losses.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, _ = _present(returns)
    excess = jnp.where(valid, returns - threshold, 0.0)
    gains = jnp.sum(jnp.maximum(excess, 0.0))
    losses = -jnp.sum(jnp.minimum(excess, 0.0))
    return jnp.where(losses > 0, gains / losses, jnp.nan)


def win_rate(returns: Array) -> Array:
    """Share of winning periods among periods with a non-zero return.

    ``count(r > 0) / count(r != 0)``. Reference: quantstats ``win_rate``
    (which returns 0.0 where this returns NaN: no non-zero return at all).
    Fraction in [0, 1].

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, x = _present(returns)
    wins = _count(valid & (x > 0))
    moves = _count(valid & (x != 0))
    return jnp.where(moves > 0, wins / moves, jnp.nan)


def profit_factor(returns: Array) -> Array:
    """Sum of gains over the absolute sum of losses, ``sum(r >= 0) / |sum(r < 0)|``.

    Reference: quantstats ``profit_factor``: +inf with gains and no losses;
    NaN (quantstats: 0.0) with neither.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.

    Returns
    -------
    jax.Array, shape ()
    """
    _, x = _present(returns)
    gains = jnp.sum(jnp.maximum(x, 0.0))
    losses = -jnp.sum(jnp.minimum(x, 0.0))
    return jnp.where(losses > 0, gains / losses, jnp.where(gains > 0, jnp.inf, jnp.nan))


def payoff_ratio(returns: Array) -> Array:
    """Average win over the absolute average loss, ``mean(r > 0) / |mean(r < 0)|``.

    Reference: quantstats ``payoff_ratio``. NaN without a win or a loss.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, x = _present(returns)
    win, loss = valid & (x > 0), valid & (x < 0)
    avg_win = _mean(x, win)
    avg_loss = _mean(x, loss)
    return jnp.where(_count(loss) > 0, avg_win / jnp.abs(avg_loss), jnp.nan)


# -- against a benchmark ---------------------------------------------------------------------
def beta(returns: Array, benchmark: Array) -> Array:
    """CAPM beta, ``cov(r, b) / var(b)`` over the periods where both are present.

    Reference: empyrical ``beta`` (population moments; NaN when
    ``var(b) < 1e-30`` or fewer than 2 paired periods). Dimensionless.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    benchmark : jax.Array, shape (T,)
        Benchmark returns on the same periods; NaN marks absent periods.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, r, b = _paired(returns, benchmark)
    n = _count(valid)
    db = jnp.where(valid, b - jnp.sum(b) / n, 0.0)
    dr = jnp.where(valid, r - jnp.sum(r) / n, 0.0)
    var = jnp.sum(db * db) / n
    cov = jnp.sum(db * dr) / n
    return jnp.where((n >= 2) & (var >= 1e-30), cov / var, jnp.nan)


def alpha(
    returns: Array,
    benchmark: Array,
    risk_free: float | Array = 0.0,
    periods_per_year: float | Array = 252,
) -> Array:
    """Jensen's alpha, annualized by compounding.

    ``(1 + mean((r - rf) - beta * (b - rf))) ** periods_per_year - 1`` over
    the paired periods. Reference: empyrical ``alpha``. Fraction per year.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    benchmark : jax.Array, shape (T,)
        Benchmark returns on the same periods.
    risk_free : float, default 0
        Risk-free return per period.
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, r, b = _paired(returns, benchmark)
    residual = (r - risk_free) - beta(returns, benchmark) * (b - risk_free)
    return (1.0 + _mean(residual, valid)) ** periods_per_year - 1.0


def tracking_error(
    returns: Array, benchmark: Array, periods_per_year: float | Array = 252
) -> Array:
    """Annualized tracking error, ``std(r - b, ddof=1) * sqrt(periods_per_year)``.

    The volatility of the active return (empyrical has no such function; it
    is the denominator of empyrical ``excess_sharpe``, annualized like
    ``annual_volatility``). Fraction per square-root year.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    benchmark : jax.Array, shape (T,)
        Benchmark returns on the same periods.
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, r, b = _paired(returns, benchmark)
    return _std(r - b, valid) * jnp.sqrt(periods_per_year)


def information_ratio(
    returns: Array, benchmark: Array, periods_per_year: float | Array = 252
) -> Array:
    """Annualized information ratio, ``mean(r - b) / std(r - b, ddof=1) * sqrt(ppy)``.

    Equals empyrical ``excess_sharpe`` (which is not annualized) times
    ``sqrt(periods_per_year)``: annualized active return over `tracking_error`.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    benchmark : jax.Array, shape (T,)
        Benchmark returns on the same periods.
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    jax.Array, shape ()
    """
    valid, r, b = _paired(returns, benchmark)
    active = r - b
    return _mean(active, valid) / _std(active, valid) * jnp.sqrt(periods_per_year)


def _capture(returns: Array, benchmark: Array, up: bool, periods_per_year: float | Array) -> Array:
    valid, r, b = _paired(returns, benchmark)
    side = valid & ((b > 0) if up else (b < 0))
    n = _count(side)
    mine = _annualize_growth(_compound(r, side), n, periods_per_year)
    theirs = _annualize_growth(_compound(b, side), n, periods_per_year)
    return mine / theirs


def up_capture(returns: Array, benchmark: Array, periods_per_year: float | Array = 252) -> Array:
    """Up-market capture: CAGR of the portfolio over CAGR of the benchmark, up periods only.

    On the ``n`` periods where the benchmark return is > 0 (both present),
    ``cagr(r_up) / cagr(b_up)``, each annualized over ``n`` periods.
    Reference: empyrical ``up_capture``. Dimensionless; NaN without such periods.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    benchmark : jax.Array, shape (T,)
        Benchmark returns on the same periods.
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    jax.Array, shape ()
    """
    return _capture(returns, benchmark, True, periods_per_year)


def down_capture(returns: Array, benchmark: Array, periods_per_year: float | Array = 252) -> Array:
    """Down-market capture: as `up_capture` on the periods where the benchmark is < 0.

    Reference: empyrical ``down_capture``. Dimensionless.

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    benchmark : jax.Array, shape (T,)
        Benchmark returns on the same periods.
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    jax.Array, shape ()
    """
    return _capture(returns, benchmark, False, periods_per_year)


# -- all at once -----------------------------------------------------------------------------
def summary(
    returns: Array,
    benchmark: Array | None = None,
    risk_free: float | Array = 0.0,
    required_return: float | Array = 0.0,
    threshold: float | Array = 0.0,
    periods_per_year: float | Array = 252,
) -> dict[str, Array]:
    """Every statistic of one portfolio (and against ``benchmark`` if given).

    Parameters
    ----------
    returns : jax.Array, shape (T,)
        Simple periodic returns; NaN marks absent periods.
    benchmark : jax.Array, shape (T,), optional
        Benchmark returns on the same periods.
    risk_free : float, default 0
        Risk-free return per period (Sharpe, alpha).
    required_return : float, default 0
        Minimum acceptable return per period (downside risk, Sortino).
    threshold : float, default 0
        Per-period Omega threshold.
    periods_per_year : float, default 252
        Periods in a year.

    Returns
    -------
    dict of str to jax.Array, shape ()
        Keys `STATISTICS`, then `BENCHMARK_STATISTICS` with a benchmark.
        ``observations`` is the number of present periods.
    """
    ppy = periods_per_year
    valid, _ = _present(returns)
    mdd, duration, to_rec, recovery = drawdown_stats(returns)
    growth_rate = cagr(returns, ppy)
    out = {
        "observations": _count(valid),
        "total_return": total_return(returns),
        "cagr": growth_rate,
        "annual_volatility": annual_volatility(returns, ppy),
        "sharpe_ratio": sharpe_ratio(returns, risk_free, ppy),
        "downside_risk": downside_risk(returns, required_return, ppy),
        "sortino_ratio": sortino_ratio(returns, required_return, ppy),
        "max_drawdown": mdd,
        "drawdown_duration": duration,
        "drawdown_peak_to_recovery": to_rec,
        "drawdown_recovery": recovery,
        "calmar_ratio": _calmar(growth_rate, mdd),
        "omega_ratio": omega_ratio(returns, threshold),
        "win_rate": win_rate(returns),
        "profit_factor": profit_factor(returns),
        "payoff_ratio": payoff_ratio(returns),
    }
    if benchmark is not None:
        out.update(
            beta=beta(returns, benchmark),
            alpha=alpha(returns, benchmark, risk_free, ppy),
            tracking_error=tracking_error(returns, benchmark, ppy),
            information_ratio=information_ratio(returns, benchmark, ppy),
            up_capture=up_capture(returns, benchmark, ppy),
            down_capture=down_capture(returns, benchmark, ppy),
        )
    return out


@jax.jit
def performance_stats(
    returns: Array,
    benchmark: Array | None = None,
    risk_free: float | Array = 0.0,
    required_return: float | Array = 0.0,
    threshold: float | Array = 0.0,
    periods_per_year: float | Array = 252.0,
) -> dict[str, Array]:
    """`summary` for many portfolios in one compiled call.

    Parameters
    ----------
    returns : jax.Array, shape (P, T)
        Simple periodic returns of ``P`` portfolios; NaN marks absent periods
        (leading NaN: not started yet).
    benchmark : jax.Array, shape (T,) or (P, T), optional
        Benchmark returns, shared by all portfolios or one row each.
    risk_free, required_return, threshold, periods_per_year : float
        As in `summary` (traced: changing them does not recompile).

    Returns
    -------
    dict of str to jax.Array, shape (P,)
        One entry per statistic (see `summary`).
    """
    fn = functools.partial(
        summary,
        risk_free=risk_free,
        required_return=required_return,
        threshold=threshold,
        periods_per_year=periods_per_year,
    )
    if benchmark is None:
        return jax.vmap(fn)(returns)
    axis = None if benchmark.ndim == 1 else 0
    return jax.vmap(fn, in_axes=(0, axis))(returns, benchmark)


# -- groups ----------------------------------------------------------------------------------
@jax.jit
def group_returns(membership: Array, returns: Array, previous_values: Array) -> Array:
    """Value-weighted returns of groups of portfolios.

    ``R_g,t = sum_i m_gi v_i,t-1 r_i,t / sum_i m_gi v_i,t-1`` over members
    with a return and a previous value at ``t``: the return of the combined
    holdings (what a consolidated group earns) when ``r`` are flow-adjusted.

    Parameters
    ----------
    membership : jax.Array, shape (G, P)
        Weight of portfolio ``i`` in group ``g`` (1 member, 0 not; fractions
        count that share of a portfolio).
    returns : jax.Array, shape (P, T)
        Simple periodic returns; NaN marks absent periods.
    previous_values : jax.Array, shape (P, T)
        Value of each portfolio at the end of the *previous* period (currency).

    Returns
    -------
    jax.Array, shape (G, T)
        NaN where no member has a return and a positive value.
    """
    valid = ~jnp.isnan(returns) & ~jnp.isnan(previous_values)
    v = jnp.where(valid, previous_values, 0.0)
    pnl = jnp.where(valid, previous_values * returns, 0.0)
    total = membership @ v
    safe = jnp.where(total > 0, total, 1.0)
    return jnp.where(total > 0, (membership @ pnl) / safe, jnp.nan)


def batched(fn: Callable[..., Array], *, benchmark: bool = False) -> Callable[..., Array]:
    """Batch a single-portfolio statistic over a leading portfolio axis and jit it.

    Parameters
    ----------
    fn : callable
        One of this module's single-portfolio statistics.
    benchmark : bool, default False
        Whether ``fn`` takes a benchmark as its second argument (shared by all
        portfolios, shape (T,)).

    Returns
    -------
    callable
        ``(returns (P, T), [benchmark (T,)], *params) -> (P,)``.
    """
    if benchmark:
        return jax.jit(lambda r, b, *a: jax.vmap(lambda x: fn(x, b, *a))(r))
    return jax.jit(lambda r, *a: jax.vmap(lambda x: fn(x, *a))(r))
