"""Stress-test kernels: historical windows, conditional shock propagation, group roll-up.

Pure JAX array functions (no xarray, no I/O, no state), batched over a
leading axis with `jax.vmap` and jit-compiled at the boundary. Core never
raises on data: a singular shocked block gives non-finite results, which the
labelled layer (`pmkit.risk.stress`) rules out before calling.

Shapes: ``P`` portfolios, ``N`` assets, ``S`` scenarios, ``W`` historical
windows, ``G`` groups, ``K`` factors, ``T`` dates. Returns are simple returns
(fractions); weights are fractions of NAV.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pmkit.core._precision import precise

__all__ = [
    "conditional_scenarios",
    "drawdown",
    "factor_scenarios",
    "group_rollup",
    "historical_portfolio_returns",
    "portfolio_scenario_returns",
    "window_returns",
]


@precise
@jax.jit
def window_returns(close_start: jax.Array, close_end: jax.Array) -> jax.Array:
    """Compounded simple return between two closes.

    ``prod(1 + r_t) - 1`` over the days after the start close up to the end
    close telescopes to ``close_end / close_start - 1``. For a window whose
    first day's move counts, ``close_start`` is the close of the day before it.

    Parameters
    ----------
    close_start, close_end : array, shape (W, N)
        Closes (price per unit) the window's return is measured from (the
        trading day before its first day) and to (its last trading day);
        NaN where an asset is not listed.

    Returns
    -------
    array, shape (W, N)
        Window return (fraction); NaN where either close is NaN.
    """
    return close_end / close_start - 1.0


def _historical_one(
    w: jax.Array, r: jax.Array, listed: jax.Array, renormalize: bool
) -> tuple[jax.Array, jax.Array]:
    """One portfolio over ``W`` windows: returns (W,) and unlisted weight (W,)."""
    wl = jnp.where(listed, w[None, :], 0.0)  # (W, N)
    unlisted = jnp.sum(jnp.where(listed, 0.0, w[None, :]), axis=1)
    if renormalize:
        total, kept = jnp.sum(w), jnp.sum(wl, axis=1)
        scale = total / jnp.where(kept != 0, kept, jnp.nan)
        wl = wl * jnp.where(unlisted != 0, scale, 1.0)[:, None]
    ret = jnp.sum(wl * jnp.where(listed, r, 0.0), axis=1)
    return ret, unlisted


@precise
@functools.partial(jax.jit, static_argnames="renormalize")
def historical_portfolio_returns(
    weights: jax.Array, returns: jax.Array, listed: jax.Array, renormalize: bool = False
) -> tuple[jax.Array, jax.Array]:
    """Portfolio return over each historical window, weights held fixed.

    Parameters
    ----------
    weights : array, shape (P, N)
        Weights as fractions of NAV; cash (``1 - sum w``) earns 0.
    returns : array, shape (W, N)
        Compounded asset return over each window (fraction); ignored where
        not ``listed``.
    listed : bool array, shape (W, N)
        Whether each asset has a close at the window's start.
    renormalize : bool
        False: weight in an unlisted asset is treated as cash (earns 0).
        True: it is spread over the listed positions in proportion to their
        weights, ``w_listed * sum(w) / sum(w_listed)`` (NaN when nothing
        held is listed).

    Returns
    -------
    returns : array, shape (P, W)
        Portfolio simple return over each window (fraction of NAV).
    unlisted_weight : array, shape (P, W)
        Net weight held in assets not listed at the window start.
    """
    fn = jax.vmap(_historical_one, in_axes=(0, None, None, None))
    return fn(jnp.asarray(weights), jnp.asarray(returns), jnp.asarray(listed), renormalize)


def _conditional_one(cov: jax.Array, mask: jax.Array, shock: jax.Array) -> jax.Array:
    """Gaussian conditional mean of all assets given the shocked ones (fixed shapes)."""
    n = cov.shape[0]
    both = mask[:, None] & mask[None, :]
    # Sigma_ss on the shocked block, identity elsewhere: solving with the rhs
    # zero outside the block gives x_s = Sigma_ss^{-1} r_s and x_u = 0.
    a = jnp.where(both, cov, jnp.eye(n, dtype=cov.dtype))
    x = jnp.linalg.solve(a, jnp.where(mask, shock, 0.0))
    return jnp.where(mask, shock, cov @ x)


@precise
@jax.jit
def conditional_scenarios(cov: jax.Array, masks: jax.Array, shocks: jax.Array) -> jax.Array:
    """Propagate asset shocks to unshocked assets through the covariance.

    For shocked assets ``s`` and the others ``u``, the conditional mean of
    a zero-mean Gaussian is ``E[r_u | r_s] = Sigma_us Sigma_ss^{-1} r_s``
    (computed with a linear solve, never an inverse); shocked assets keep
    their shock exactly.

    Parameters
    ----------
    cov : array, shape (N, N)
        Covariance of asset returns (any horizon; the shocks are in the same
        horizon). ``Sigma_ss`` must be non-singular for every scenario.
    masks : bool array, shape (S, N)
        Which assets each scenario shocks.
    shocks : array, shape (S, N)
        Shock returns (fractions); read only where ``masks`` is True.

    Returns
    -------
    array, shape (S, N)
        Scenario return of every asset (fraction).
    """
    cov = jnp.asarray(cov)
    return jax.vmap(_conditional_one, in_axes=(None, 0, 0))(cov, jnp.asarray(masks), shocks)


@precise
@jax.jit
def factor_scenarios(betas: jax.Array, factor_shocks: jax.Array) -> jax.Array:
    """Asset responses to factor shocks: ``r = B f`` (no intercept, no residual).

    Parameters
    ----------
    betas : array, shape (N, K)
        OLS factor betas of each asset.
    factor_shocks : array, shape (S, K)
        Factor returns in each scenario (fractions).

    Returns
    -------
    array, shape (S, N)
        Asset scenario returns (fractions).
    """
    b = jnp.asarray(betas)
    return jax.vmap(lambda f: b @ f)(jnp.asarray(factor_shocks))


@precise
@jax.jit
def portfolio_scenario_returns(
    weights: jax.Array, values: jax.Array, scenario_returns: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Portfolio return and P&L in each scenario.

    Parameters
    ----------
    weights : array, shape (P, N)
        Weights as fractions of NAV (cash earns 0).
    values : array, shape (P,)
        NAV per portfolio (currency).
    scenario_returns : array, shape (S, N)
        Asset returns per scenario (fractions).

    Returns
    -------
    returns : array, shape (P, S)
        ``w . r`` (fraction of NAV).
    pnl : array, shape (P, S)
        ``NAV * w . r`` (currency; a loss is negative).
    """
    r = jnp.asarray(scenario_returns)

    def one(w: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
        ret = r @ w
        return ret, v * ret

    return jax.vmap(one)(jnp.asarray(weights), jnp.asarray(values))


@precise
@jax.jit
def group_rollup(
    membership: jax.Array, pnl: jax.Array, values: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Consolidate portfolio P&L into groups.

    Parameters
    ----------
    membership : array, shape (G, P)
        1 where portfolio ``p`` belongs to group ``g`` (directly or through
        nested groups, each once), else 0.
    pnl : array, shape (P, S)
        P&L per portfolio and scenario (currency).
    values : array, shape (P,)
        NAV per portfolio (currency).

    Returns
    -------
    group_pnl : array, shape (G, S)
        Sum of member P&L (currency).
    group_value : array, shape (G,)
        Sum of member NAV (currency).
    group_return : array, shape (G, S)
        ``group_pnl / group_value`` (fraction); NaN for an empty group.
    """
    m = jnp.asarray(membership)
    gp = m @ jnp.asarray(pnl)
    gv = m @ jnp.asarray(values)
    return gp, gv, gp / jnp.where(gv != 0, gv, jnp.nan)[:, None]


@precise
@jax.jit
def drawdown(values: jax.Array) -> jax.Array:
    """Drawdown from the running peak, ``1 - V_t / max_{s<=t} V_s``.

    Parameters
    ----------
    values : array, shape (P, T)
        Portfolio values (currency); values <= 0 or NaN (before inception)
        are skipped.

    Returns
    -------
    array, shape (P, T)
        Drawdown as a positive fraction of the peak (0 at a new high); NaN
        until the first positive value.
    """

    def one(v: jax.Array) -> jax.Array:
        ok = jnp.isfinite(v) & (v > 0)
        peak = jax.lax.cummax(jnp.where(ok, v, -jnp.inf))
        dd = 1.0 - v / peak
        return jnp.where(ok & (peak > 0), dd, jnp.nan)

    return jax.vmap(one)(jnp.asarray(values))
