"""Risk budgeting weights in JAX: jitted, batched over any leading axes (many covariances at once).

Long-only, fully invested weights whose fractional risk contributions
``w_i (Σw)_i / w'Σw`` equal budgets ``b_i > 0`` (``sum b = 1``) are
``w = y / sum(y)`` for the minimizer ``y > 0`` of the strictly convex
``1/2 y'Σy - sum_i b_i log(y_i)`` (Spinu, SSRN 2297383, 2013). Solved in
correlation units (``y = z / sigma``) by Newton's method, with a step capped
to keep ``z > 0`` and Armijo backtracking, from the exact solution for
uncorrelated assets (``z ∝ sqrt(b)``). The same method as
`pmkit.optimize._risk_budget` (numpy, one covariance); this one serves many
small problems at once, e.g. splitting capital across many groups.

`variance_contributions` is the owner of covariance-based Euler
contributions; the numpy twin in `pmkit.optimize._risk_budget` is kept for
one small covariance at a time (`OptimizationResult`), where a JAX dispatch
costs more than the product, and a test holds the two equal on real data.

Core never raises on data: a singular Newton system gives NaN weights, and
the returned ``max_error`` tells the caller whether the answer is good.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from pmkit.core._precision import precise

__all__ = ["risk_budget_weights", "variance_contributions"]


@precise
@partial(jax.jit, static_argnames=("relative",))
def variance_contributions(
    weights: jax.Array, cov: jax.Array, relative: bool = False
) -> jax.Array:
    """Euler contributions to the variance, ``w_i (Σw)_i``: they sum to ``w'Σw``.

    Volatility contributions (summing to ``sqrt(w'Σw)``) are these divided
    by the volatility; as fractions of their totals both are the same.

    Parameters
    ----------
    weights : array, shape (..., N)
        Weights (fractions).
    cov : array, shape (..., N, N)
        Covariances (any units: the result is in the same units).
    relative : bool, default False
        Divide by the variance: fractions summing to 1 (what risk budgets
        are stated in).

    Returns
    -------
    array, shape (..., N)
        Contributions in ``cov``'s units summing to the variance along the
        last axis, or fractions summing to 1 with ``relative``.
    """
    sw = jnp.einsum("...ij,...j->...i", cov, weights)
    rc = weights * sw
    if relative:
        return rc / jnp.sum(rc, axis=-1, keepdims=True)
    return rc


def _solve_one(
    cov: jax.Array, budgets: jax.Array, tol: float, max_iter: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    sigma = jnp.sqrt(jnp.diagonal(cov))
    corr = cov / jnp.outer(sigma, sigma)
    b = budgets / jnp.sum(budgets)

    def objective(z: jax.Array) -> jax.Array:
        return 0.5 * z @ (corr @ z) - b @ jnp.log(z)

    def error(z: jax.Array) -> jax.Array:
        rc = z * (corr @ z)
        return jnp.max(jnp.abs(rc / jnp.sum(rc) - b))

    z0 = jnp.sqrt(b)
    z0 = z0 / jnp.sqrt(z0 @ (corr @ z0))

    def cond(state: tuple[jax.Array, jax.Array, jax.Array]) -> jax.Array:
        it, _, err = state
        return (it < max_iter) & (err > tol)

    def body(
        state: tuple[jax.Array, jax.Array, jax.Array],
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        it, z, _ = state
        grad = corr @ z - b / z
        hess = corr + jnp.diag(b / (z * z))
        step = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(hess, lower=True), grad)
        dec2 = grad @ step
        ratio = jnp.where(step > 0, z / jnp.where(step > 0, step, 1.0), jnp.inf)
        t0 = jnp.minimum(1.0, 0.95 * jnp.min(ratio))
        f0 = objective(z)
        # Near the solution f changes by rounding only: take the full (capped) step there.
        exact = dec2 <= 1e-14 * (1.0 + jnp.abs(f0))

        def shrink(t: jax.Array) -> jax.Array:
            return t * 0.5

        def needs_shrink(t: jax.Array) -> jax.Array:
            worse = objective(z - t * step) > f0 - 1e-4 * t * dec2
            return ~exact & worse & (t > 1e-12)

        t = jax.lax.while_loop(needs_shrink, shrink, t0)
        z_new = z - t * step
        return it + 1, z_new, error(z_new)

    it, z, err = jax.lax.while_loop(cond, body, (jnp.asarray(0), z0, error(z0)))
    y = z / sigma
    return y / jnp.sum(y), it, err


@precise
@partial(jax.jit, static_argnames=("max_iter",))
def risk_budget_weights(
    cov: jax.Array,
    budgets: jax.Array,
    tol: float = 1e-12,
    max_iter: int = 50,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Long-only weights whose risk contributions equal ``budgets``, batched.

    Parameters
    ----------
    cov : array, shape (..., N, N)
        Covariances, symmetric positive definite, positive diagonal (any
        units).
    budgets : array, shape (..., N)
        Risk budgets ``> 0`` (normalized to sum 1 here); broadcast against
        the batch axes of ``cov``. ``jnp.full(N, 1 / N)`` gives equal risk
        contribution.
    tol : float, default 1e-12
        Stop when ``max_i |RC_i - b_i| <= tol``.
    max_iter : int, default 50
        Newton iterations allowed (static: one compile per value).

    Returns
    -------
    weights : array, shape (..., N)
        Positive weights summing to 1 (fractions).
    iterations : array of int, shape (...)
        Newton iterations taken.
    max_error : array, shape (...)
        Largest ``|RC_i - b_i|`` at the answer; above ``tol`` means not
        converged (NaN for a singular problem).
    """
    solve = partial(_solve_one, tol=tol, max_iter=max_iter)
    return jnp.vectorize(solve, signature="(n,n),(n)->(n),(),()")(
        jnp.asarray(cov), jnp.asarray(budgets)
    )
