"""Time- and money-weighted returns with external cash flows.

Pure JAX array functions, written for one portfolio and batched over a
leading ``portfolio`` axis with `jax.vmap`, jitted at the boundary. Returns
are simple returns as fractions. Nothing raises on data: undefined results
are NaN (the labelled layer, `pmkit.analytics.returns`, turns them into
typed errors).

Conventions
-----------
``values[t]`` is the portfolio value at the close of period ``t``;
``flows[t]`` is the external flow during period ``t`` (deposit > 0,
withdrawal < 0), already inside ``values[t]``.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from pmkit.core._precision import precise

__all__ = [
    "annualize",
    "chain_link",
    "irr",
    "irr_batch",
    "modified_dietz",
    "money_weighted",
    "time_weighted",
]

Array = jax.Array

#: Default flow weight of `modified_dietz`: flows at the start of the day.
START_OF_DAY = 1.0


# ---------------------------------------------------------------- time-weighted


@precise
def modified_dietz(
    values: Array, flows: Array, flow_weight: float | Array = START_OF_DAY
) -> Array:
    """Daily Modified Dietz returns of one portfolio.

    ``r[t] = (V[t] - V[t-1] - F[t]) / (V[t-1] + w * F[t])``

    The weight ``w`` is the fraction of the period a flow is invested for
    (GIPS): ``w = 1`` (default) puts flows at the *start* of the day, so money
    deposited on day ``t`` earns day ``t``'s return and an inception deposit
    on a zero starting value is well defined; ``w = 0`` puts them at the end
    of the day (the flow earns nothing that day, which suits a full
    withdrawal). With daily valuations and flows exactly at period
    boundaries this is the true time-weighted return.

    Parameters
    ----------
    values : array, shape (T,)
        Values at each close (currency units).
    flows : array, shape (T,)
        External flows in each period (currency units).
    flow_weight : float, default 1.0
        Flow weight ``w`` in [0, 1].

    Returns
    -------
    array, shape (T,)
        Simple returns (fractions). ``r[0]`` is NaN (no previous value). Where
        nothing was invested (denominator 0) the return is 0 if nothing was
        gained either (e.g. before inception) and NaN otherwise.
    """
    prev = values[:-1]
    gain = values[1:] - prev - flows[1:]
    base = prev + flow_weight * flows[1:]
    idle = base == 0
    r = jnp.where(idle, jnp.where(gain == 0, 0.0, jnp.nan), gain / jnp.where(idle, 1.0, base))
    return jnp.concatenate([jnp.full((1,), jnp.nan, r.dtype), r])


@precise
def chain_link(returns: Array) -> Array:
    """Cumulative return from chain-linked period returns.

    Parameters
    ----------
    returns : array, shape (T,)
        Period returns; ``returns[0]`` is ignored (the start of the record).

    Returns
    -------
    array, shape (T,)
        ``prod_{s=1..t} (1 + r[s]) - 1``; 0 at ``t = 0``. A NaN period makes
        every later cumulative value NaN.
    """
    growth = jnp.cumprod(1.0 + returns.at[0].set(0.0))
    return growth - 1.0


@precise
@jax.jit
def time_weighted(
    values: Array, flows: Array, flow_weight: float | Array = START_OF_DAY
) -> tuple[Array, Array]:
    """Daily Modified Dietz returns and cumulative time-weighted return (TWR).

    Parameters
    ----------
    values : array, shape (P, T)
        Portfolio values at each close.
    flows : array, shape (P, T)
        External flows per period.
    flow_weight : float, default 1.0
        Flow weight, see `modified_dietz`.

    Returns
    -------
    daily : array, shape (P, T)
        Period returns (``[:, 0]`` NaN).
    cumulative : array, shape (P, T)
        Chain-linked TWR since ``t = 0`` (``[:, 0]`` = 0).
    """

    def one(v: Array, f: Array) -> tuple[Array, Array]:
        r = modified_dietz(v, f, flow_weight)
        return r, chain_link(r)

    return jax.vmap(one)(values, flows)


@precise
def annualize(rate: Array, periods: float) -> Array:
    """Compound a per-period rate to a rate per ``periods`` periods.

    ``(1 + rate) ** periods - 1``, e.g. ``periods=252`` turns a daily rate into
    an annual one (252 trading days a year).
    """
    return jnp.expm1(periods * jnp.log1p(rate))


# ---------------------------------------------------------------- money-weighted (IRR)

#: Grid of horizon log-growth ``y = T * log(1 + r)`` scanned for a sign change:
#: sinh-spaced (dense near 0), |y| <= 40, i.e. growth over the whole horizon
#: between e^-40 and e^40.
_GRID = np.sinh(np.linspace(-np.arcsinh(40.0), np.arcsinh(40.0), 801))
_BISECTIONS = 64
_NEWTON = 3


def _npv_y(cash: Array, tau: Array, y: Array) -> Array:
    # NPV with discount factor exp(-y * tau), tau = times / horizon in [0, 1].
    return jnp.sum(cash * jnp.exp(-y * tau))


@precise
def irr(cashflows: Array, times: Array) -> Array:
    """Internal rate of return of one cash-flow stream.

    Solves ``NPV(r) = sum_i c_i (1 + r) ** -t_i = 0`` for ``r`` in (-1, inf).
    Robust and vectorisable: in the variable ``y = t_max * log(1 + r)`` (the
    log-growth over the whole horizon) the NPV is scanned on a fixed grid
    (|y| <= 40) for sign changes; the bracket nearest ``r = 0`` is refined by
    64 bisections and polished by 3 Newton steps (kept only if they stay in
    the bracket and do not increase ``|NPV|``).

    Parameters
    ----------
    cashflows : array, shape (N,)
        Flows from the investor's side: money in < 0, money out > 0.
    times : array, shape (N,)
        Times of the flows in periods (e.g. days since the start), >= 0.

    Returns
    -------
    array, shape ()
        IRR per period (a fraction). NaN when NPV has no sign change in the
        searched range: every flow the same sign, all flows zero, or a rate
        beyond the range.
    """
    dtype = jnp.result_type(cashflows, times, float)
    cash = cashflows.astype(dtype)
    t = times.astype(dtype)
    horizon = jnp.max(t)
    horizon = jnp.where(horizon > 0, horizon, 1.0)
    tau = t / horizon
    scale = jnp.sum(jnp.abs(cash))
    cash = cash / jnp.where(scale > 0, scale, 1.0)

    grid = jnp.asarray(_GRID, dtype)
    npv = jax.vmap(lambda y: _npv_y(cash, tau, y))(grid)
    change = (jnp.sign(npv[:-1]) * jnp.sign(npv[1:])) <= 0
    change = change & jnp.isfinite(npv[:-1]) & jnp.isfinite(npv[1:])
    found = jnp.any(change) & (scale > 0)
    # Bracket nearest y = 0: minimise the distance of the cell to 0.
    mid = 0.5 * (grid[:-1] + grid[1:])
    k = jnp.argmin(jnp.where(change, jnp.abs(mid), jnp.inf))
    lo, hi = grid[k], grid[k + 1]
    f_lo = npv[k]

    def bisect(_: int, state: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        a, b, fa = state
        m = 0.5 * (a + b)
        fm = _npv_y(cash, tau, m)
        left = jnp.sign(fm) * jnp.sign(fa) <= 0  # root in [a, m]
        return (
            jnp.where(left, a, m),
            jnp.where(left, m, b),
            jnp.where(left, fa, fm),
        )

    lo, hi, _ = jax.lax.fori_loop(0, _BISECTIONS, bisect, (lo, hi, f_lo))
    y = 0.5 * (lo + hi)
    npv_and_slope = jax.value_and_grad(lambda z: _npv_y(cash, tau, z))

    def newton(_: int, y: Array) -> Array:
        f, df = npv_and_slope(y)
        step = jnp.where(df != 0, f / jnp.where(df != 0, df, 1.0), 0.0)
        cand = y - step
        ok = (cand >= lo) & (cand <= hi) & (jnp.abs(_npv_y(cash, tau, cand)) <= jnp.abs(f))
        return jnp.where(ok, cand, y)

    y = jax.lax.fori_loop(0, _NEWTON, newton, y)
    rate = jnp.expm1(y / horizon)
    return jnp.where(found, rate, jnp.nan)


@precise
@jax.jit
def irr_batch(cashflows: Array, times: Array) -> Array:
    """`irr` for many streams on shared times.

    Parameters
    ----------
    cashflows : array, shape (P, N)
        One stream per portfolio (money in < 0, money out > 0).
    times : array, shape (N,)
        Flow times in periods.

    Returns
    -------
    array, shape (P,)
        IRR per period, NaN where there is none.
    """
    return jax.vmap(irr, in_axes=(0, None))(cashflows, times)


def _mwr_one(values: Array, flows: Array, periods_per_year: float) -> Array:
    # Investor's flows: the starting value goes in at t=0 (flows at t=0 are inside it),
    # later deposits go in (negative), the final value comes out.
    cash = -flows
    cash = cash.at[0].set(-values[0])
    cash = cash.at[-1].add(values[-1])
    t = jnp.arange(values.shape[0], dtype=cash.dtype)
    daily = irr(cash, t)
    return annualize(daily, periods_per_year) if periods_per_year > 0 else daily


@precise
@partial(jax.jit, static_argnames=("periods_per_year",))
def money_weighted(values: Array, flows: Array, periods_per_year: float = 252) -> Array:
    """Money-weighted return (IRR) of each portfolio over the record, annualized.

    The investor's cash-flow stream is ``-values[0]`` at ``t = 0``,
    ``-flows[t]`` at each later ``t`` and ``+values[-1]`` at the end (flows at
    ``t = 0`` are already in ``values[0]``); times are period indices.

    Parameters
    ----------
    values : array, shape (P, T)
        Values at each close.
    flows : array, shape (P, T)
        External flows per period.
    periods_per_year : float, default 252
        Periods per year used to annualize the per-period IRR,
        ``(1 + r) ** periods_per_year - 1``; 0 returns the per-period rate.

    Returns
    -------
    array, shape (P,)
        Annualized IRR (fraction); NaN where no IRR exists.
    """
    return jax.vmap(partial(_mwr_one, periods_per_year=periods_per_year))(values, flows)
