"""Exposure kernels: masked OLS factor betas, group exposures, leverage, concentration.

Pure JAX array functions (no xarray, no I/O, no state). Each single-series or
single-portfolio function is batched over a leading axis with `jax.vmap` and
jit-compiled at the boundary. Core never raises on data: degenerate inputs
give NaN (too few observations) or a minimum-norm least-squares solution.

Weights are fractions of net asset value (NAV), shape ``(P, N)`` with ``P``
portfolios and ``N`` assets. Returns are simple returns (fractions).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from pmkit.core._precision import precise

__all__ = [
    "concentration",
    "group_exposure",
    "leverage",
    "ols_betas",
]


def _ols_one(y: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """OLS with intercept of one series on factors, over rows where all are finite."""
    t, k = x.shape
    mask = jnp.isfinite(y) & jnp.all(jnp.isfinite(x), axis=1)
    m = mask.astype(y.dtype)
    design = jnp.concatenate([jnp.ones((t, 1), dtype=y.dtype), jnp.where(mask[:, None], x, 0.0)], 1)
    design = design * m[:, None]  # masked rows are all-zero: they do not touch the fit
    target = jnp.where(mask, y, 0.0)
    coef, _, _, _ = jnp.linalg.lstsq(design, target)
    n = jnp.sum(m)
    resid = (target - design @ coef) * m
    dof = n - (k + 1)
    resid_var = jnp.where(dof > 0, resid @ resid / jnp.where(dof > 0, dof, 1.0), jnp.nan)
    enough = n >= k + 1
    nan = jnp.nan
    return (
        jnp.where(enough, coef[0], nan),
        jnp.where(enough, coef[1:], nan),
        n,
        resid_var,
    )


_ols_batched = jax.jit(jax.vmap(_ols_one, in_axes=(0, None)))


@precise
def ols_betas(y: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Regress each series on the factors (with intercept) over its valid rows.

    Masked least squares: a row takes part in series ``i``'s fit only when
    ``y[i, t]`` and every ``x[t, :]`` are finite; other rows are zeroed in
    both the design matrix and the target, which leaves the least-squares
    solution unchanged, so one fixed-shape `jax.numpy.linalg.lstsq` per
    series (vmapped) handles ragged histories under `jax.jit`.

    Parameters
    ----------
    y : array, shape (B, T)
        Simple returns of ``B`` series (assets or portfolios) over ``T``
        dates; NaN where unknown.
    x : array, shape (T, K)
        Factor returns on the same dates; NaN where unknown.

    Returns
    -------
    alpha : array, shape (B,)
        Intercept per date (a return fraction); NaN with fewer than ``K + 1``
        valid rows.
    beta : array, shape (B, K)
        Factor betas (unitless); NaN with fewer than ``K + 1`` valid rows. A
        rank-deficient design gives the minimum-norm solution.
    n_obs : array, shape (B,)
        Number of valid rows used (float).
    resid_var : array, shape (B,)
        Residual variance per date, ``RSS / (n_obs - K - 1)`` (return
        fraction squared); NaN without degrees of freedom.
    """
    return _ols_batched(jnp.asarray(y), jnp.asarray(x))


@precise
@jax.jit
def group_exposure(weights: jax.Array, onehot: jax.Array) -> jax.Array:
    """Sum weights by group (sector, asset class, ...) through a one-hot matrix.

    Parameters
    ----------
    weights : array, shape (P, N)
        Weights as fractions of NAV.
    onehot : array, shape (N, C)
        ``onehot[i, c] = 1`` when asset ``i`` belongs to group ``c``, else 0.

    Returns
    -------
    array, shape (P, C)
        Net weight of each group (fractions of NAV). Rows sum to the net
        exposure when every asset belongs to exactly one group.
    """
    return jax.vmap(lambda w: w @ onehot)(jnp.asarray(weights))


@precise
@jax.jit
def leverage(weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Gross and net exposure of each portfolio.

    Parameters
    ----------
    weights : array, shape (P, N)
        Weights as fractions of NAV.

    Returns
    -------
    gross : array, shape (P,)
        ``sum |w|`` (multiple of NAV).
    net : array, shape (P,)
        ``sum w`` (multiple of NAV).
    """

    def one(w: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jnp.sum(jnp.abs(w)), jnp.sum(w)

    return jax.vmap(one)(jnp.asarray(weights))


def _concentration_one(w: jax.Array, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    a = jnp.abs(w)
    gross = jnp.sum(a)
    share = a / jnp.where(gross > 0, gross, jnp.nan)
    hhi = jnp.sum(share**2)
    top = jnp.sum(jax.lax.top_k(a, k)[0])
    return hhi, 1.0 / hhi, top


@precise
def concentration(weights: jax.Array, k: int = 5) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Herfindahl index, weight-based effective number of bets and top-k weight.

    Parameters
    ----------
    weights : array, shape (P, N)
        Weights as fractions of NAV.
    k : int
        How many of the largest positions (by ``|w|``) ``top_k`` sums;
        ``1 <= k <= N``.

    Returns
    -------
    hhi : array, shape (P,)
        ``sum s_i**2`` with ``s_i = |w_i| / sum |w|``: the Herfindahl index of
        the invested book, in ``[1/N, 1]``. For a fully invested long-only
        portfolio ``s = w`` and this is ``sum w**2``; normalising by gross
        exposure keeps cash and leverage from inflating or deflating it. NaN
        when no position is held.
    enb : array, shape (P,)
        ``1 / hhi``: the *weight-based* effective number of bets (not the
        risk-based ENB of Meucci, which needs a covariance); ``N`` for
        ``N`` equal positions.
    top_k : array, shape (P,)
        Sum of the ``k`` largest ``|w|``, as a fraction of NAV.
    """
    return _concentration_jit(jnp.asarray(weights), k)


@functools.partial(jax.jit, static_argnames="k")
def _concentration_jit(weights: jax.Array, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    return jax.vmap(lambda w: _concentration_one(w, k))(weights)
