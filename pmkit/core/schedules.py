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
        Units traded in each interval (sum ``quantity``).
    """
    q = jnp.asarray(quantity, dtype=float)
    shape = q.shape
    horizon = jnp.broadcast_to(jnp.asarray(horizon, dtype=float), shape)
    tau = horizon / intervals
    kappa = almgren_chriss_kappa(*(jnp.broadcast_to(jnp.asarray(a, dtype=float), shape)
                                   for a in (volatility, eta, gamma, risk_aversion)), tau)
    k, big_t = kappa[:, None], horizon[:, None]
    curved_rows = k * big_t > _LINEAR_KT
    safe_k = jnp.where(curved_rows, k, 1.0)
    # sinh(k (T - t_j)) / sinh(k T) = (exp(-k tau j) - exp(-k tau (2N - j))) / (1 - exp(-2kT)):
    # no overflow however large k T (the exponentials underflow to 0), and one fused pass
    # (a per-row reciprocal, not a division per element)
    steps = jnp.arange(intervals + 1, dtype=float)[None, :]
    rate = safe_k * tau[:, None]
    inverse = 1.0 / -jnp.expm1(-2.0 * safe_k * big_t)
    curved = (jnp.exp(-rate * steps) - jnp.exp(-rate * (2 * intervals - steps))) * inverse
    straight = 1.0 - steps / intervals
    share = jnp.where(steps == intervals, 0.0,  # exactly done at the end
                      jnp.where(curved_rows, curved, straight))
    holdings = q[:, None] * share
    trades = holdings[:, :-1] - holdings[:, 1:]
    return holdings, trades


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
                        ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Optimal trajectories with their ``E``, ``V`` and ``kappa``, in one compiled pass.

    `almgren_chriss_trajectory` followed by `almgren_chriss_cost`, traced
    together so the compiler fuses the reductions of ``E`` and ``V`` into
    the pass that writes the holdings (instead of reading them back).

    Parameters
    ----------
    quantity, volatility, eta, gamma, risk_aversion, horizon, intervals
        As in `almgren_chriss_trajectory`.
    epsilon : array, shape (order,) or scalar
        As in `almgren_chriss_cost`.

    Returns
    -------
    holdings : array, shape (order, intervals + 1)
    trades : array, shape (order, intervals)
    expected : array, shape (order,)
        ``E``, currency.
    variance : array, shape (order,)
        ``V``, currency squared.
    kappa : array, shape (order,)
        Per time unit.
    """
    holdings, trades = almgren_chriss_trajectory(quantity, volatility, eta, gamma,
                                                 risk_aversion, horizon, intervals=intervals)
    expected, variance = almgren_chriss_cost(holdings, volatility, eta, gamma, epsilon, horizon)
    shape = jnp.asarray(quantity).shape
    tau = jnp.broadcast_to(jnp.asarray(horizon, dtype=float), shape) / intervals
    kappa = almgren_chriss_kappa(*(jnp.broadcast_to(jnp.asarray(a, dtype=float), shape)
                                   for a in (volatility, eta, gamma, risk_aversion)), tau)
    return holdings, trades, expected, variance, kappa
