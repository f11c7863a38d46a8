"""Execution schedules: TWAP, VWAP and the Almgren–Chriss optimal trajectory.

Pure JAX array functions, batched over a leading ``order`` axis (many parent
orders in one call) and jit-compiled; the number of intervals is static.
Core never raises on data: the labelled layer validates.

Conventions
-----------
A parent order of ``quantity`` units (positive; the side is the caller's) is
executed over ``horizon`` (any time unit, e.g. days) in ``intervals`` equal
intervals of length ``tau = horizon / intervals``. ``holdings[k]`` is what
remains to trade after interval ``k`` (``holdings[0] = quantity``,
``holdings[N] = 0``); ``trades[k] = holdings[k] - holdings[k + 1]`` is what
interval ``k + 1`` trades, so ``trades`` sums to ``quantity``.

Almgren & Chriss (2000), "Optimal execution of portfolio transactions",
Journal of Risk 3(2): linear permanent impact ``g(v) = gamma v`` (currency
per unit, per unit traded), temporary impact ``h(v) = epsilon sign(v) +
eta v`` (``v = n / tau`` the trading rate), and arithmetic price
``volatility`` (the paper's sigma: currency per unit per square root of the
time unit). Expected implementation shortfall and its variance of a trajectory::

    E = gamma X^2 / 2 + epsilon sum |n_k| + (eta_tilde / tau) sum n_k^2
    V = volatility^2 tau sum_{k=1..N} x_k^2,        eta_tilde = eta - gamma tau / 2

The trajectory minimizing ``E + lambda V`` is
``x_j = X sinh(kappa (T - t_j)) / sinh(kappa T)`` with
``cosh(kappa tau) = 1 + tau^2 lambda volatility^2 / (2 eta_tilde)``;
as ``lambda -> 0`` it is the straight line of TWAP.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from pmkit.core._precision import precise

__all__ = [
    "almgren_chriss_cost",
    "almgren_chriss_kappa",
    "almgren_chriss_plan",
    "almgren_chriss_trades",
    "almgren_chriss_trajectory",
    "holdings_from_trades",
    "pov_trades",
    "twap_trades",
    "vwap_trades",
]

#: Below this ``kappa * horizon`` the trajectory is drawn as the straight line: its
#: relative error there, (kappa T)^2 / 6, is under 2e-11, and the closed form's own
#: cancellation error (about 1e-16 / (kappa T)) would be larger.
_LINEAR_KT = 1e-5
#: The sums of squares have no cancellation: only ``kappa T = 0`` (or so small its
#: square underflows) needs the straight line's own closed form.
_TINY_KT = 1e-150
#: Grid split ``i = block h + l``: per order, ``N / block + block`` exponentials
#: instead of ``N`` (the elements are then products of two table entries).
_BLOCK = 16
#: Terms of the small-``a N`` series (``a N < 1/2``): the k-th is below
#: ``(2 a N)^(2k) / (2k + 1)!`` of the sum, so 12 terms leave under 1e-25.
_SERIES_TERMS = 12


@precise
@partial(jax.jit, static_argnames="intervals")
def twap_trades(quantity: jax.Array, intervals: int) -> jax.Array:
    """Equal trades per interval.

    Parameters
    ----------
    quantity : array, shape (order,)
        Units to trade per parent order.
    intervals : int
        Number of intervals (static).

    Returns
    -------
    array, shape (order, intervals)
        Units per interval; each row sums to its ``quantity``.
    """
    q = jnp.asarray(quantity)
    return jnp.broadcast_to(q[:, None] / intervals, (q.shape[0], intervals))


@precise
@jax.jit
def vwap_trades(quantity: jax.Array, profile: jax.Array) -> jax.Array:
    """Trades in proportion to an intraday volume profile.

    Parameters
    ----------
    quantity : array, shape (order,)
        Units to trade per parent order.
    profile : array, shape (interval,) or (order, interval)
        Expected volume (any unit, >= 0, positive sum) per interval.

    Returns
    -------
    array, shape (order, interval)
        ``quantity * profile / sum(profile)``; each row sums to its ``quantity``.
    """
    q = jnp.asarray(quantity)
    p = jnp.asarray(profile)
    share = p / jnp.sum(p, axis=-1, keepdims=True)
    return q[:, None] * share


@precise
@jax.jit
def pov_trades(quantity: jax.Array, volume: jax.Array, rate: jax.Array) -> jax.Array:
    """Trades at a participation rate of each interval's volume, until the order is done.

    Parameters
    ----------
    quantity : array, shape (order,)
        Units to trade per parent order.
    volume : array, shape (order, interval) or (interval,)
        Units the market trades in each interval (realized or expected).
    rate : array, shape (order,) or scalar
        Participation rate, a fraction of the interval's volume (0 < rate <= 1).

    Returns
    -------
    array, shape (order, interval)
        ``min(rate * volume, what is left)`` per interval: never above the
        rate, sums to ``quantity`` when the volume allows it (what it does
        not is the residual left at the end).
    """
    q = jnp.asarray(quantity, dtype=float)[:, None]
    cap = jnp.asarray(rate, dtype=float).reshape(-1, 1) * jnp.asarray(volume, dtype=float)
    done = jnp.minimum(jnp.cumsum(cap, axis=-1), q)
    return jnp.diff(done, axis=-1, prepend=0.0)


@precise
@jax.jit
def holdings_from_trades(quantity: jax.Array, trades: jax.Array) -> jax.Array:
    """What remains to trade after each interval, shape (order, interval + 1)."""
    done = jnp.cumsum(trades, axis=-1)
    q = jnp.asarray(quantity)[:, None]
    return jnp.concatenate([q, q - done], axis=-1)


@precise
@jax.jit
def almgren_chriss_kappa(volatility: jax.Array, eta: jax.Array, gamma: jax.Array,
                         risk_aversion: jax.Array, tau: jax.Array) -> jax.Array:
    """The trajectory's decay rate ``kappa`` (per time unit) on the discrete grid.

    ``kappa = arccosh(1 + tau^2 lambda volatility^2 / (2 eta_tilde)) / tau`` with
    ``eta_tilde = eta - gamma tau / 2`` (which must be positive: the caller checks).
    All arguments broadcast (one value per order).
    """
    eta_tilde = eta - 0.5 * gamma * tau
    kappa_tilde_sq = risk_aversion * volatility**2 / eta_tilde
    return jnp.arccosh(1.0 + 0.5 * tau**2 * kappa_tilde_sq) / tau


def _decay_rate(quantity: jax.Array, volatility: jax.Array, eta: jax.Array, gamma: jax.Array,
                risk_aversion: jax.Array, horizon: jax.Array, intervals: int
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per order: quantity, ``tau`` and ``a = kappa tau`` (the decay per interval)."""
    q = jnp.asarray(quantity, dtype=float)
    shape = q.shape
    horizon = jnp.broadcast_to(jnp.asarray(horizon, dtype=float), shape)
    tau = horizon / intervals
    kappa = almgren_chriss_kappa(*(jnp.broadcast_to(jnp.asarray(a, dtype=float), shape)
                                   for a in (volatility, eta, gamma, risk_aversion)), tau)
    return q, tau, kappa * tau


def _outer_grid(big_u: jax.Array, small_u: jax.Array, big_v: jax.Array, small_v: jax.Array,
                sign: float, count: int) -> jax.Array:
    """``U[h] u[l] + sign V[h] v[l]`` at ``i = block h + l``, ``i < count``: shape (order, count).

    Why: ``exp(-a i)`` on the whole grid costs a transcendental per element;
    as a product of a per-block and a per-offset table it costs a multiply.
    The barrier keeps the compiler from folding the tables' ``exp`` back into
    the per-element loop (which it otherwise does, four times slower).
    """
    big_u, small_u, big_v, small_v = jax.lax.optimization_barrier(
        (big_u, small_u, big_v, small_v))
    grid = (big_u[:, :, None] * small_u[:, None, :]
            + sign * (big_v[:, :, None] * small_v[:, None, :]))
    return grid.reshape(grid.shape[0], -1)[:, :count]


def _block_tables(a: jax.Array, count: int) -> tuple[int, jax.Array, jax.Array, jax.Array]:
    """Split ``i = block h + l`` (``i < count``): ``exp(-a block h)``, ``exp(-a l)`` and a constant.

    Returns ``block``, ``per_block`` (order, blocks), ``per_offset`` (order,
    block) and ``last = block (blocks - 1) + block - 1`` (the grid's last
    index, >= count - 1), so that ``exp(-a (last - i))`` is the reversed
    tables' product: every factor stays <= 1, whatever ``a``.
    """
    block = min(_BLOCK, count)
    blocks = -(-count // block)
    h = jnp.arange(blocks, dtype=float)[None, :]
    offset = jnp.arange(block, dtype=float)[None, :]
    return block, jnp.exp(-a[:, None] * block * h), jnp.exp(-a[:, None] * offset), \
        jnp.asarray(block * blocks - 1, dtype=float)


def _ac_holdings(q: jax.Array, a: jax.Array, intervals: int) -> jax.Array:
    """``q sinh(a (N - j)) / sinh(a N)``, j = 0..N: (order, N + 1).

    As ``q (exp(-a j) - exp(-a (2N - j))) / (1 - exp(-2aN))``: no overflow
    however large ``a N`` (the exponentials underflow to 0).
    """
    n = intervals
    straight = (a * n <= _LINEAR_KT)[:, None]
    rate = jnp.where(straight[:, 0], 1.0, a)
    block, per_block, per_offset, last = _block_tables(rate, n + 1)
    scale = (q / -jnp.expm1(-2.0 * rate * n))[:, None]
    # exp(-a (2N - j)) = exp(-a (2N - last)) exp(-a (last - j)), 2N - last >= 0
    far = jnp.exp(-rate * (2 * n - last))[:, None]
    h = jnp.arange(per_block.shape[1], dtype=float)[None, :]
    offset = jnp.arange(block, dtype=float)[None, :]
    q_col = q[:, None]
    big_u = jnp.where(straight, q_col * (1.0 - block * h / n), scale * per_block)
    small_u = jnp.where(straight, 1.0, per_offset)
    big_v = jnp.where(straight, q_col / n, scale * far * per_block[:, ::-1])
    small_v = jnp.where(straight, offset, per_offset[:, ::-1])
    grid = _outer_grid(big_u, small_u, big_v, small_v, -1.0, n + 1)
    j = jnp.arange(n + 1)[None, :]
    return jnp.where(j == 0, q_col, jnp.where(j == n, 0.0, grid))  # exactly the order, then done


def _ac_trades(q: jax.Array, a: jax.Array, intervals: int) -> jax.Array:
    """Units traded in intervals 1..N: (order, N), a sum of positive terms (no cancellation).

    ``x_i - x_(i+1) = q (1 - exp(-a)) (exp(-a i) + exp(-a (2N - 1 - i))) / (1 - exp(-2aN))``.
    """
    n = intervals
    straight = (a * n <= _LINEAR_KT)[:, None]
    rate = jnp.where(straight[:, 0], 1.0, a)
    _, per_block, per_offset, last = _block_tables(rate, n)
    scale = (q * -jnp.expm1(-rate) / -jnp.expm1(-2.0 * rate * n))[:, None]
    far = jnp.exp(-rate * (2 * n - 1 - last))[:, None]  # 2N - 1 - last >= 0
    q_col = q[:, None]
    big_u = jnp.where(straight, q_col / n, scale * per_block)
    small_u = jnp.where(straight, 1.0, per_offset)
    big_v = jnp.where(straight, 0.0, scale * far * per_block[:, ::-1])
    small_v = jnp.where(straight, 0.0, per_offset[:, ::-1])
    return _outer_grid(big_u, small_u, big_v, small_v, 1.0, n)


def _power_sums(intervals: int) -> list[float]:
    """``sum_{m<N} m^(2k) / (2 (2k)!)`` for k = 1.._SERIES_TERMS (exact integers, then float)."""
    import math

    return [sum(m ** (2 * k) for m in range(intervals)) / (2 * math.factorial(2 * k))
            for k in range(1, _SERIES_TERMS + 1)]


def _ac_square_sums(a: jax.Array, intervals: int) -> tuple[jax.Array, jax.Array]:
    """``sum_{j=1..N} (x_j / q)^2`` and ``sum_{i=1..N} (n_i / q)^2`` of the optimal trajectory.

    Closed forms, precise for every ``a >= 0`` (no reduction over the grid):

    * trades: ``(1 - e^-a)^2 [G (1 + e^(-2aN)) + 2N e^(-a(2N-1))] / (1 - e^(-2aN))^2``
      with ``G = (1 - e^(-2aN)) / (1 - e^(-2a))``: positive terms only;
    * holdings: ``sum_{m<N} sinh^2(a m) / sinh^2(a N)``, from the identity
      ``sum_{m<N} sinh^2(a m) = (sinh((2N-1)a) / (2 sinh a) - N + 1/2) / 2``
      written in ``e^-a`` (no overflow) where ``a N >= 1/2``; below, where
      that difference would cancel, its series ``sum_k (2a)^(2k) S_2k /
      (2 (2k)!)`` with the power sums ``S_2k`` exact for the static ``N``.
    """
    n = intervals
    straight = a * n <= _TINY_KT
    rate = jnp.where(straight, 1.0, a)
    whole = -jnp.expm1(-2.0 * rate * n)  # 1 - e^(-2aN)
    step = -jnp.expm1(-2.0 * rate)  # 1 - e^(-2a)
    geometric = whole / step
    trades = (jnp.expm1(-rate) ** 2
              * (geometric * (1.0 + jnp.exp(-2.0 * rate * n))
                 + 2.0 * n * jnp.exp(-rate * (2 * n - 1)))
              / whole**2)
    identity = (jnp.exp(-2.0 * rate) * -jnp.expm1(-2.0 * rate * (2 * n - 1)) / (whole**2 * step)
                - (n - 0.5) * 2.0 * jnp.exp(-2.0 * rate * n) / whole**2)
    small = jnp.where(rate * n < 0.5, rate, 0.0)
    x2 = (2.0 * small) ** 2
    series = jnp.zeros_like(x2)
    for c in reversed(_power_sums(n)):
        series = (series + c) * x2
    series = series / jnp.sinh(jnp.where(rate * n < 0.5, small * n, 1.0)) ** 2
    holdings = jnp.where(rate * n < 0.5, series, identity)
    return (jnp.where(straight, (n - 1) * (2 * n - 1) / (6 * n), holdings),
            jnp.where(straight, 1.0 / n, trades))


@precise
@partial(jax.jit, static_argnames="intervals")
def almgren_chriss_trajectory(quantity: jax.Array, volatility: jax.Array, eta: jax.Array,
                              gamma: jax.Array, risk_aversion: jax.Array,
                              horizon: jax.Array, intervals: int) -> tuple[jax.Array, jax.Array]:
    """The Almgren–Chriss optimal holdings and trades for many parent orders at once.

    Parameters
    ----------
    quantity : array, shape (order,)
        Units to trade (positive).
    volatility : array, shape (order,) or scalar
        Price volatility, currency per unit per square root of the time unit.
    eta, gamma : array, shape (order,) or scalar
        Temporary and permanent linear impact (currency per unit, per unit
        per time unit and per unit), with ``eta > gamma * tau / 2``.
    risk_aversion : array, shape (order,) or scalar
        ``lambda`` >= 0, per currency.
    horizon : array, shape (order,) or scalar
        Time to complete, in the time unit of ``volatility``.
    intervals : int
        Number of equal intervals (static).

    Returns
    -------
    holdings : array, shape (order, intervals + 1)
        Units left after each interval (first ``quantity``, last 0).
    trades : array, shape (order, intervals)
        Units traded in each interval (sum ``quantity``), each computed as a
        sum of positive terms, not as a difference of holdings.
    """
    q, _, a = _decay_rate(quantity, volatility, eta, gamma, risk_aversion, horizon, intervals)
    return _ac_holdings(q, a, intervals), _ac_trades(q, a, intervals)


@precise
@partial(jax.jit, static_argnames="intervals")
def almgren_chriss_trades(quantity: jax.Array, volatility: jax.Array, eta: jax.Array,
                          gamma: jax.Array, risk_aversion: jax.Array, horizon: jax.Array,
                          intervals: int) -> jax.Array:
    """The trades of `almgren_chriss_trajectory` alone, shape (order, intervals).

    For a caller that has the holdings already (from `almgren_chriss_plan`).
    """
    q, _, a = _decay_rate(quantity, volatility, eta, gamma, risk_aversion, horizon, intervals)
    return _ac_trades(q, a, intervals)


@precise
@jax.jit
def almgren_chriss_cost(holdings: jax.Array, volatility: jax.Array, eta: jax.Array,
                        gamma: jax.Array, epsilon: jax.Array,
                        horizon: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Expected implementation shortfall ``E`` and its variance ``V`` of trajectories.

    Parameters
    ----------
    holdings : array, shape (order, interval + 1)
        Units left after each interval (first the order's quantity, last 0).
    volatility, eta, gamma : array, shape (order,) or scalar
        As in `almgren_chriss_trajectory`.
    epsilon : array, shape (order,) or scalar
        Fixed cost per unit traded (half the spread plus fees), currency per unit.
    horizon : array, shape (order,) or scalar
        Time to complete.

    Returns
    -------
    expected : array, shape (order,)
        ``E``, currency.
    variance : array, shape (order,)
        ``V``, currency squared.
    """
    x = jnp.asarray(holdings, dtype=float)
    n_int = x.shape[-1] - 1
    tau = jnp.asarray(horizon, dtype=float) / n_int
    trades = x[..., :-1] - x[..., 1:]
    eta_tilde = eta - 0.5 * gamma * tau
    quantity = x[..., 0]
    expected = (0.5 * gamma * quantity**2 + epsilon * jnp.sum(jnp.abs(trades), axis=-1)
                + eta_tilde / tau * jnp.sum(trades**2, axis=-1))
    variance = volatility**2 * tau * jnp.sum(x[..., 1:] ** 2, axis=-1)
    return expected, variance


@precise
@partial(jax.jit, static_argnames="intervals")
def almgren_chriss_plan(quantity: jax.Array, volatility: jax.Array, eta: jax.Array,
                        gamma: jax.Array, epsilon: jax.Array, risk_aversion: jax.Array,
                        horizon: jax.Array, intervals: int
                        ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Optimal trajectories with their ``E``, ``V`` and ``kappa``, in one compiled call.

    The holdings of `almgren_chriss_trajectory`; ``E`` and ``V`` are what
    `almgren_chriss_cost` gives for them, from closed forms of the sums of
    squares (no pass over the grid), precise for every ``kappa``. The trades
    are `almgren_chriss_trades` (or ``-diff(holdings)``).

    Parameters
    ----------
    quantity, volatility, eta, gamma, risk_aversion, horizon, intervals
        As in `almgren_chriss_trajectory`.
    epsilon : array, shape (order,) or scalar
        As in `almgren_chriss_cost`.

    Returns
    -------
    holdings : array, shape (order, intervals + 1)
    expected : array, shape (order,)
        ``E``, currency.
    variance : array, shape (order,)
        ``V``, currency squared.
    kappa : array, shape (order,)
        Per time unit.
    """
    q, tau, a = _decay_rate(quantity, volatility, eta, gamma, risk_aversion, horizon, intervals)
    holdings = _ac_holdings(q, a, intervals)
    held, traded = _ac_square_sums(a, intervals)
    shape = q.shape
    volatility, eta, gamma, epsilon = (jnp.broadcast_to(jnp.asarray(v, dtype=float), shape)
                                       for v in (volatility, eta, gamma, epsilon))
    eta_tilde = eta - 0.5 * gamma * tau
    expected = 0.5 * gamma * q**2 + epsilon * jnp.abs(q) + eta_tilde / tau * traded * q**2
    variance = volatility**2 * tau * held * q**2
    return holdings, expected, variance, a / tau
