"""Performance statistics of return series: pure JAX, batched over portfolios.

Every statistic is documented for one portfolio, a 1-D array ``returns`` of
shape ``(T,)`` holding simple periodic returns as fractions (0.01 is +1 %),
and is written on the *last* axis: the same code takes a ``(P, T)`` batch of
portfolios and returns ``(P,)``. `performance_stats` evaluates all of them at
once on such a batch, compiled with `jax.jit`; `group_returns` combines member
returns into value-weighted group returns.

Speed
-----
The batch is processed as a whole rather than by `jax.vmap` over portfolios.
`summary` gathers every sum, count, extremum and product the statistics need
into two variadic reductions over time (`_fold`: means first, then squared
deviations from them) and derives each statistic from those; on XLA CPU this
avoids one materialized ``(P, T)`` temporary per reduction, which is what
made separate reductions slow. The one sequential pass, the drawdown scan,
steps through time with ``(P,)`` vectors, so each step is vectorised across
portfolios. The single-portfolio functions keep the direct definitions.

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

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pmkit.core._precision import precise

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


def _sum(x: Array) -> Array:
    """Sum over time, the last (contiguous) axis."""
    return jnp.sum(x, axis=-1)


def _count(valid: Array) -> Array:
    return _sum(valid).astype(jnp.result_type(float))


def _per_period(x: Array) -> Array:
    """A per-series value (shape ``(...)``) broadcast back over time (``(..., 1)``)."""
    return jnp.expand_dims(x, -1)


def _mean(x: Array, valid: Array) -> Array:
    """Mean of the present values (NaN when there are none)."""
    return _sum(jnp.where(valid, x, 0.0)) / _count(valid)


def _std(x: Array, valid: Array, ddof: int = 1) -> Array:
    """Two-pass standard deviation of the present values, ``ddof`` as in numpy."""
    return _std_about(x, valid, _count(valid), _mean(x, valid), ddof)


def _std_about(x: Array, valid: Array, n: Array, mean: Array, ddof: int = 1) -> Array:
    """`_std` given the count and mean already computed (the second pass alone).

    Exactly 0 when every present value is equal (empyrical's
    ``_zero_dispersion_std``: the floating-point mean of equal values may
    differ from them in the last bit and leave a spurious ~1e-18).
    """
    dev = jnp.where(valid, x - _per_period(mean), 0.0)
    std = jnp.sqrt(_sum(dev * dev) / (n - ddof))
    hi = jnp.max(jnp.where(valid, x, -jnp.inf), axis=-1)
    lo = jnp.min(jnp.where(valid, x, jnp.inf), axis=-1)
    return jnp.where((hi == lo) & jnp.isfinite(std), 0.0, std)


def _shifted_moments(
    x: Array, valid: Array, n: Array, mean: Array, std: Array, level: float | Array
) -> tuple[Array, Array]:
    """Mean and standard deviation of ``x - level`` from those of ``x``.

    A scalar shift moves the mean and keeps the deviation, so no new pass over
    the data is needed; a per-period ``level`` (an array) gets its own passes.
    """
    if jnp.ndim(level) == 0:
        return mean - level, std
    shifted = x - level
    shifted_mean = _mean(shifted, valid)
    return shifted_mean, _std_about(shifted, valid, n, shifted_mean)


def _paired(returns: Array, benchmark: Array) -> tuple[Array, Array, Array]:
    """Mask of periods where both are present, and both series zero-filled elsewhere."""
    valid = ~jnp.isnan(returns) & ~jnp.isnan(benchmark)
    return valid, jnp.where(valid, returns, 0.0), jnp.where(valid, benchmark, 0.0)


def _compound(x: Array, valid: Array) -> Array:
    """Growth factor ``prod(1 + r)`` over the present values."""
    return jnp.prod(jnp.where(valid, 1.0 + x, 1.0), axis=-1)


def _annualize_growth(growth: Array, n: Array, periods_per_year: float | Array) -> Array:
    """``growth ** (periods_per_year / n) - 1`` (NaN for n == 0)."""
    return jnp.where(n > 0, growth ** (periods_per_year / n) - 1.0, jnp.nan)


# -- returns and risk -----------------------------------------------------------------------
@precise
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


@precise
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


@precise
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


@precise
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


@precise
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


@precise
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
    """Wealth path of one unit, shape (..., T + 1): position 0 is the start (1.0)."""
    valid, x = _present(returns)
    growth = jnp.cumprod(jnp.where(valid, 1.0 + x, 1.0), axis=-1)
    start = jnp.ones((*growth.shape[:-1], 1), growth.dtype)
    return jnp.concatenate([start, growth], axis=-1)


@precise
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
    return (wealth / jax.lax.cummax(wealth, axis=wealth.ndim - 1))[..., 1:] - 1.0


@precise
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


@precise
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
    return _drawdown_stats(_drawdown_scan(returns), _count(~jnp.isnan(returns)) > 0)


class _Drawdown(NamedTuple):
    """What the drawdown scan leaves, per series; positions count periods (0 = start)."""

    wealth: Array  # final wealth, prod(1 + r) in time order
    mdd: Array  # maximum drawdown (<= 0)
    trough: Array  # first position where it is reached
    peak_at: Array  # last running-maximum position before the trough
    recovered_at: Array  # first position after the trough back at that peak; -1 if none


@jax.jit  # un-jitted, every call re-traced the scan (~60 ms for one series)
def _drawdown_scan(returns: Array) -> _Drawdown:
    """One sequential pass over time of ``returns`` (..., T); absent periods earn 0.

    A `jax.lax.scan` (O(T), cheap to compile) whose carry holds one value per
    series: each step updates the whole batch at once, reading one contiguous
    row of a time-major copy of the returns. Cumulative ops (cumprod + cummax
    + arg-reductions) would be several slower passes on XLA CPU.
    """
    # Transpose first, fill after: one fused pass from the raw input, not
    # sharing a zero-filled (P, T) copy with the reductions in `summary`.
    rows = jnp.moveaxis(returns, -1, 0)
    rows = jnp.where(jnp.isnan(rows), 0.0, rows)
    batch = returns.shape[:-1]
    zero = jnp.zeros(batch, jnp.int32)
    minus = zero - 1
    one = jnp.ones(batch, rows.dtype)

    def step(carry: _Drawdown, item: tuple[Array, Array]) -> tuple[_Drawdown, None]:
        (wealth, mdd, trough, trough_peak_at, rec), peak, peak_at, trough_peak = carry
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
        back = ~deeper & (rec < 0) & (wealth >= trough_peak)  # not deeper: k > trough
        rec = jnp.where(deeper, minus, jnp.where(back, k, rec))
        state = _Drawdown(wealth, mdd, trough, trough_peak_at, rec)
        return (state, peak, peak_at, trough_peak), None

    init = (_Drawdown(one, 0.0 * one, zero, zero, minus), one, zero, one)
    ks = jnp.arange(1, rows.shape[0] + 1, dtype=jnp.int32)
    (final, *_), _ = jax.lax.scan(step, init, (rows, ks))
    return final


def _drawdown_stats(dd: _Drawdown, some: Array) -> tuple[Array, Array, Array, Array]:
    """`drawdown_stats` from the scan; ``some``: whether any period is present."""
    dtype = dd.mdd.dtype
    nan = jnp.asarray(jnp.nan, dtype)
    has_dd = dd.mdd < 0
    recovered = dd.recovered_at >= 0

    def periods(since: Array, until: Array, done: Array) -> Array:
        """``until - since`` where a drawdown happened and ``done``; 0 without a drawdown."""
        span = jnp.where(done, (until - since).astype(dtype), nan)
        return jnp.where(some, jnp.where(has_dd, span, 0.0), nan)

    return (
        jnp.where(some, dd.mdd, nan),
        periods(dd.peak_at, dd.trough, True),
        periods(dd.peak_at, dd.recovered_at, recovered),
        periods(dd.trough, dd.recovered_at, recovered),
    )


@precise
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
@precise
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
    valid, x = _present(returns)
    return _omega(x, valid, threshold)


def _omega(x: Array, valid: Array, threshold: float | Array) -> Array:
    excess = jnp.where(valid, x - threshold, 0.0)
    gains = _sum(jnp.maximum(excess, 0.0))
    losses = -_sum(jnp.minimum(excess, 0.0))
    return jnp.where(losses > 0, gains / losses, jnp.nan)


@precise
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
    _, x = _present(returns)
    return _gains_and_losses(x).win_rate()


@precise
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
    return _gains_and_losses(x).profit_factor()


@precise
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
    _, x = _present(returns)
    return _gains_and_losses(x).payoff_ratio()


class _GainsAndLosses(NamedTuple):
    """Counts and sums of the winning and losing periods: all three ratios use them."""

    wins: Array  # count(r > 0)
    moves: Array  # count(r != 0); the losing periods are moves - wins
    gains: Array  # sum(r > 0)
    losses: Array  # |sum(r < 0)|

    def win_rate(self) -> Array:
        return jnp.where(self.moves > 0, self.wins / self.moves, jnp.nan)

    def profit_factor(self) -> Array:
        g, lo = self.gains, self.losses
        return jnp.where(lo > 0, g / lo, jnp.where(g > 0, jnp.inf, jnp.nan))

    def payoff_ratio(self) -> Array:
        n_loss = self.moves - self.wins
        ratio = (self.gains / self.wins) / (self.losses / n_loss)
        return jnp.where(n_loss > 0, ratio, jnp.nan)


def _gains_and_losses(x: Array) -> _GainsAndLosses:
    """From zero-filled returns (absent periods are neither wins nor losses)."""
    return _GainsAndLosses(
        wins=_count(x > 0),
        moves=_count(x != 0),
        gains=_sum(jnp.maximum(x, 0.0)),
        losses=-_sum(jnp.minimum(x, 0.0)),
    )


# -- against a benchmark ---------------------------------------------------------------------
@precise
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
    return _beta(r, b, valid, n, _sum(r) / n, _sum(b) / n)


def _beta(r: Array, b: Array, valid: Array, n: Array, mean_r: Array, mean_b: Array) -> Array:
    """`beta` given the paired count and means (population moments, as empyrical)."""
    db = jnp.where(valid, b - _per_period(mean_b), 0.0)
    dr = jnp.where(valid, r - _per_period(mean_r), 0.0)
    var = _sum(db * db) / n
    cov = _sum(db * dr) / n
    return jnp.where((n >= 2) & (var >= 1e-30), cov / var, jnp.nan)


@precise
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
    residual = (r - risk_free) - _per_period(beta(returns, benchmark)) * (b - risk_free)
    return (1.0 + _mean(residual, valid)) ** periods_per_year - 1.0


@precise
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


@precise
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
    return _capture_paired(r, b, valid, up, periods_per_year)


def _capture_paired(
    r: Array, b: Array, valid: Array, up: bool, periods_per_year: float | Array
) -> Array:
    side = valid & ((b > 0) if up else (b < 0))
    n = _count(side)
    mine = _annualize_growth(_compound(r, side), n, periods_per_year)
    theirs = _annualize_growth(_compound(b, side), n, periods_per_year)
    return mine / theirs


@precise
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


@precise
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
@precise
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
    returns : jax.Array, shape (T,) or (P, T)
        Simple periodic returns; NaN marks absent periods. A leading axis
        batches portfolios (the statistics then have shape (P,)).
    benchmark : jax.Array, shape (T,) or (P, T), optional
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
    dict of str to jax.Array, shape () or (P,)
        Keys `STATISTICS`, then `BENCHMARK_STATISTICS` with a benchmark.
        ``observations`` is the number of present periods.
    """
    ppy = periods_per_year
    valid, x = _present(returns)
    paired = None if benchmark is None else _paired(returns, benchmark)
    first = _fold(_first_pass(x, valid, paired, required_return, threshold))
    n = first["n"]
    mean = first["sum"] / n
    means = None
    if paired is not None:
        means = (first["sum_r"] / first["n_paired"], first["sum_b"] / first["n_paired"])
    second = _fold(_second_pass(returns, benchmark, valid, mean, means))

    std = _dispersion(second["dev2"], n, first["hi"], first["lo"])
    excess_mean, excess_std = _shifted_moments(x, valid, n, mean, std, risk_free)
    required_mean, _ = _shifted_moments(x, valid, n, mean, std, required_return)
    downside = jnp.sqrt(first["down2"] / n) * jnp.sqrt(ppy)
    dd = _drawdown_scan(returns)
    some = n > 0
    mdd, duration, to_rec, recovery = _drawdown_stats(dd, some)
    growth_rate = _annualize_growth(dd.wealth, n, ppy)
    gl = _GainsAndLosses(first["wins"], first["moves"], first["gains"], first["losses"])
    out = {
        "observations": n,
        "total_return": jnp.where(some, dd.wealth - 1.0, jnp.nan),
        "cagr": growth_rate,
        "annual_volatility": std * jnp.sqrt(ppy),
        "sharpe_ratio": excess_mean / excess_std * jnp.sqrt(ppy),
        "downside_risk": downside,
        "sortino_ratio": required_mean * ppy / downside,
        "max_drawdown": mdd,
        "drawdown_duration": duration,
        "drawdown_peak_to_recovery": to_rec,
        "drawdown_recovery": recovery,
        "calmar_ratio": _calmar(growth_rate, mdd),
        "omega_ratio": jnp.where(first["below"] > 0, first["above"] / first["below"], jnp.nan),
        "win_rate": gl.win_rate(),
        "profit_factor": gl.profit_factor(),
        "payoff_ratio": gl.payoff_ratio(),
    }
    if paired is not None:
        out.update(_benchmark_stats(first, second, paired, means, risk_free, ppy))
    return out


# -- one pass over the data for all statistics -------------------------------------------------
# Why: on XLA CPU every separate reduction whose input is computed (a masked
# or shifted copy of the returns) materializes that input as a fresh (P, T)
# temporary, and allocating and writing those dominated the run time. A
# variadic `jax.lax.reduce` folds every per-period quantity into its own
# accumulator in a single loop over the data, with no temporary at all.
_FOLDS: dict[str, tuple[Callable[[Array, Array], Array], float]] = {
    "sum": (jnp.add, 0.0),
    "prod": (jnp.multiply, 1.0),
    "max": (jnp.maximum, -jnp.inf),
    "min": (jnp.minimum, jnp.inf),
}


def _fold(terms: dict[str, tuple[str, Array]]) -> dict[str, Array]:
    """Reduce over time every ``name: (fold, per-period values)`` in one pass.

    ``fold`` is a key of `_FOLDS`; the values broadcast to the returns' shape
    (a shared (T,) benchmark to (P, T)). Returns ``name: result``, shape (...).
    """
    names = list(terms)
    folds = [_FOLDS[terms[k][0]] for k in names]
    shape = jnp.broadcast_shapes(*(jnp.shape(v) for _, v in terms.values()))
    dtype = jnp.result_type(float)
    values = [jnp.broadcast_to(jnp.asarray(v, dtype), shape) for _, v in terms.values()]
    inits = [jnp.asarray(init, dtype) for _, init in folds]

    def combine(a: tuple[Array, ...], b: tuple[Array, ...]) -> tuple[Array, ...]:
        return tuple(op(u, v) for (op, _), u, v in zip(folds, a, b, strict=True))

    out = jax.lax.reduce(values, inits, combine, (len(shape) - 1,))
    return dict(zip(names, out, strict=True))


def _first_pass(
    x: Array,
    valid: Array,
    paired: tuple[Array, Array, Array] | None,
    required_return: float | Array,
    threshold: float | Array,
) -> dict[str, tuple[str, Array]]:
    """Per-period quantities whose sums need no mean (see the single functions above)."""
    short = jnp.where(valid, jnp.minimum(x - required_return, 0.0), 0.0)
    excess = jnp.where(valid, x - threshold, 0.0)
    terms = {
        "n": ("sum", valid),
        "sum": ("sum", x),
        "hi": ("max", jnp.where(valid, x, -jnp.inf)),
        "lo": ("min", jnp.where(valid, x, jnp.inf)),
        "down2": ("sum", short * short),
        "above": ("sum", jnp.maximum(excess, 0.0)),
        "below": ("sum", -jnp.minimum(excess, 0.0)),
        "wins": ("sum", x > 0),  # x is 0 where absent: neither a win nor a move
        "moves": ("sum", x != 0),
        "gains": ("sum", jnp.maximum(x, 0.0)),
        "losses": ("sum", -jnp.minimum(x, 0.0)),
    }
    if paired is None:
        return terms
    both, r, b = paired
    active = r - b
    up, down = both & (b > 0), both & (b < 0)
    return terms | {
        "n_paired": ("sum", both),
        "sum_r": ("sum", r),
        "sum_b": ("sum", b),
        "hi_active": ("max", jnp.where(both, active, -jnp.inf)),
        "lo_active": ("min", jnp.where(both, active, jnp.inf)),
        "n_up": ("sum", up),
        "growth_r_up": ("prod", jnp.where(up, 1.0 + r, 1.0)),
        "growth_b_up": ("prod", jnp.where(up, 1.0 + b, 1.0)),
        "n_down": ("sum", down),
        "growth_r_down": ("prod", jnp.where(down, 1.0 + r, 1.0)),
        "growth_b_down": ("prod", jnp.where(down, 1.0 + b, 1.0)),
    }


def _second_pass(
    returns: Array,
    benchmark: Array | None,
    valid: Array,
    mean: Array,
    means: tuple[Array, Array] | None,
) -> dict[str, tuple[str, Array]]:
    """Squared deviations from the first pass's means (two-pass moments, as numpy).

    Computed from the raw inputs, not the first pass's zero-filled copies:
    XLA would materialize a copy used by both passes as a (P, T) temporary.
    """
    dev = jnp.where(valid, returns - _per_period(mean), 0.0)
    terms = {"dev2": ("sum", dev * dev)}
    if benchmark is None or means is None:
        return terms
    both = valid & ~jnp.isnan(benchmark)
    r, b = returns, benchmark
    mean_r, mean_b = means
    dr = jnp.where(both, r - _per_period(mean_r), 0.0)
    db = jnp.where(both, b - _per_period(mean_b), 0.0)
    da = jnp.where(both, (r - b) - _per_period(mean_r - mean_b), 0.0)
    return terms | {"db2": ("sum", db * db), "dbdr": ("sum", db * dr), "da2": ("sum", da * da)}


def _dispersion(dev2: Array, n: Array, hi: Array, lo: Array) -> Array:
    """Sample standard deviation from the squared deviations; 0 if all values are equal."""
    std = jnp.sqrt(dev2 / (n - 1))
    return jnp.where((hi == lo) & jnp.isfinite(std), 0.0, std)


def _benchmark_stats(
    first: dict[str, Array],
    second: dict[str, Array],
    paired: tuple[Array, Array, Array],
    means: tuple[Array, Array],
    risk_free: float | Array,
    ppy: float | Array,
) -> dict[str, Array]:
    """`BENCHMARK_STATISTICS` from the two passes (definitions as `beta`, `alpha`, ...)."""
    n = first["n_paired"]
    mean_r, mean_b = means
    var, cov = second["db2"] / n, second["dbdr"] / n
    slope = jnp.where((n >= 2) & (var >= 1e-30), cov / var, jnp.nan)
    if jnp.ndim(risk_free) == 0:
        # mean((r - rf) - beta (b - rf)), expanded: the means are known, no third pass
        residual = (mean_r - risk_free) - slope * (mean_b - risk_free)
    else:
        both, r, b = paired
        residual = _mean((r - risk_free) - _per_period(slope) * (b - risk_free), both)
    active_mean = mean_r - mean_b
    active_std = _dispersion(second["da2"], n, first["hi_active"], first["lo_active"])

    def capture(side: str) -> Array:
        k = first[f"n_{side}"]
        mine = _annualize_growth(first[f"growth_r_{side}"], k, ppy)
        return mine / _annualize_growth(first[f"growth_b_{side}"], k, ppy)

    return {
        "beta": slope,
        "alpha": (1.0 + residual) ** ppy - 1.0,
        "tracking_error": active_std * jnp.sqrt(ppy),
        "information_ratio": active_mean / active_std * jnp.sqrt(ppy),
        "up_capture": capture("up"),
        "down_capture": capture("down"),
    }


@precise
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
    # No vmap: summary is written on the last axis, so the whole (P, T) batch
    # goes through each reduction (and each scan step) at once.
    return summary(returns, benchmark, risk_free, required_return, threshold, periods_per_year)


# -- groups ----------------------------------------------------------------------------------
@precise
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

    Every statistic here reduces over the last axis, so batching is calling it
    on the ``(P, T)`` array directly (faster than `jax.vmap` on XLA CPU).

    Parameters
    ----------
    fn : callable
        One of this module's single-portfolio statistics.
    benchmark : bool, default False
        Whether ``fn`` takes a benchmark as its second argument (shared by all
        portfolios, shape (T,)). Broadcasting handles it; kept for the signature.

    Returns
    -------
    callable
        ``(returns (P, T), [benchmark (T,)], *params) -> (P,)``.
    """
    del benchmark  # a (T,) benchmark broadcasts against (P, T) returns
    return precise(jax.jit(fn))
