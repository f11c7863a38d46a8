"""Covariance estimators on a returns panel, NaN-aware (ragged histories), in JAX.

Every function takes asset returns ``R`` of shape ``(T, A)`` (time first,
simple returns as fractions; NaN = no observation, e.g. before listing) and
returns an ``(A, A)`` float matrix in squared return units per period. Leading
batch axes are allowed (``(..., T, A) -> (..., A, A)``, vectorised with
`jax.vmap`). Nothing is ever zero-filled into a statistic:

- `sample_covariance` and `ewma_covariance` are *pairwise*: entry ``(i, j)``
  uses exactly the times where both ``i`` and ``j`` have data (the means of the
  sample estimator are the means over those common times, as in
  ``pandas.DataFrame.cov``). Pairwise matrices need not be positive
  semi-definite; see `nearest_psd`.
- `ledoit_wolf` is *listwise*: it uses only the times where every asset has
  data (its shrinkage intensity is defined for a complete panel).

The core never raises on data: too few common observations give NaN entries;
the labelled layer (`pmkit.risk.covariance`) checks and raises.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from pmkit.core._precision import precise

__all__ = [
    "common_counts",
    "ewma_covariance",
    "ledoit_wolf",
    "min_eigenvalue",
    "nearest_psd",
    "sample_covariance",
]


def _mask(returns: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(R with NaN -> 0, observed mask as float)``."""
    observed = ~jnp.isnan(returns)
    return jnp.where(observed, returns, 0.0), observed.astype(returns.dtype)


def _common_counts(returns: jax.Array) -> jax.Array:
    _, m = _mask(returns)
    return m.T @ m


@precise
@jax.jit
def common_counts(returns: jax.Array) -> jax.Array:
    """Number of common observations of every asset pair.

    Parameters
    ----------
    returns : array, shape (..., T, A)
        Asset returns, NaN where unobserved.

    Returns
    -------
    array, shape (..., A, A)
        ``n[i, j]`` = number of times both ``i`` and ``j`` are observed
        (float); the diagonal is each asset's own count.
    """
    return jnp.vectorize(_common_counts, signature="(t,a)->(a,a)")(returns)


def _sample_cov(returns: jax.Array, ddof: int) -> jax.Array:
    x, m = _mask(returns)
    n_own = m.sum(axis=0)
    # Centre each column on its own mean first: covariance is shift invariant
    # pair by pair, and centring avoids cancellation in the one-pass formula.
    x = jnp.where(m > 0, x - x.sum(axis=0) / jnp.maximum(n_own, 1.0), 0.0)
    n = m.T @ m  # common counts
    s = x.T @ m  # s[i, j] = sum of x_i over times where j is observed (and i is)
    cross = x.T @ x
    return (cross - s * s.T / n) / (n - ddof)


@precise
@partial(jax.jit, static_argnames=("ddof",))
def sample_covariance(returns: jax.Array, ddof: int = 1) -> jax.Array:
    """Pairwise sample covariance (pandas ``DataFrame.cov`` semantics).

    ``C[i, j] = sum_t (x_ti - m_i)(x_tj - m_j) / (n_ij - ddof)`` over the
    ``n_ij`` times where both are observed, with ``m_i``, ``m_j`` the means over
    those same times. Without NaN this is ``numpy.cov(R.T, ddof=ddof)``.

    Parameters
    ----------
    returns : array, shape (..., T, A)
        Asset returns (fractions), NaN where unobserved.
    ddof : int, default 1
        Delta degrees of freedom.

    Returns
    -------
    array, shape (..., A, A)
        Symmetric; NaN (or inf) where ``n_ij <= ddof``. May be indefinite when
        histories are ragged.
    """
    return jnp.vectorize(partial(_sample_cov, ddof=ddof), signature="(t,a)->(a,a)")(returns)


def _ledoit_wolf(returns: jax.Array) -> tuple[jax.Array, jax.Array]:
    complete = ~jnp.isnan(returns).any(axis=1)
    n = complete.sum().astype(returns.dtype)
    p = returns.shape[1]
    x = jnp.where(complete[:, None], returns, 0.0)
    x = jnp.where(complete[:, None], x - x.sum(axis=0) / n, 0.0)
    emp = x.T @ x / n
    x2 = x * x
    trace_terms = x2.sum(axis=0) / n
    mu = trace_terms.sum() / p
    beta_ = (x2.T @ x2).sum()
    delta_ = (emp * emp).sum()  # = sum((X^T X)^2) / n^2
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * trace_terms.sum() + p * mu**2) / p
    beta = jnp.minimum(beta, delta)
    shrinkage = jnp.where(delta > 0, beta / jnp.where(delta > 0, delta, 1.0), 0.0)
    shrunk = (1.0 - shrinkage) * emp + shrinkage * mu * jnp.eye(p, dtype=returns.dtype)
    return shrunk, shrinkage


@precise
@jax.jit
def ledoit_wolf(returns: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Ledoit–Wolf shrinkage towards a scaled identity (as `sklearn.covariance.ledoit_wolf`).

    ``(1 - s) S + s mu I`` with ``S`` the maximum-likelihood covariance
    (``ddof=0``) of the centred data, ``mu = trace(S) / A`` and ``s`` the
    Ledoit–Wolf (2004) optimal intensity in [0, 1]. Listwise: only times where
    every asset is observed are used.

    Parameters
    ----------
    returns : array, shape (..., T, A)
        Asset returns (fractions), NaN where unobserved.

    Returns
    -------
    covariance : array, shape (..., A, A)
        Positive definite whenever ``mu > 0`` and ``s > 0``.
    shrinkage : array, shape (...)
        The intensity ``s`` used.
    """
    return jnp.vectorize(_ledoit_wolf, signature="(t,a)->(a,a),()")(returns)


def _ewma(returns: jax.Array, decay: jax.Array, demean: bool) -> jax.Array:
    x, m = _mask(returns)
    if demean:
        x = jnp.where(m > 0, x - x.sum(axis=0) / jnp.maximum(m.sum(axis=0), 1.0), 0.0)
    t = returns.shape[0]
    age = (t - 1) - jnp.arange(t, dtype=returns.dtype)
    lam = jnp.asarray(decay, dtype=returns.dtype)
    weight = lam**age  # newest observation has weight 1
    weighted = x * weight[:, None]
    return (weighted.T @ x) / ((m * weight[:, None]).T @ m)


@precise
@partial(jax.jit, static_argnames=("demean",))
def ewma_covariance(returns: jax.Array, decay: float = 0.94, demean: bool = False) -> jax.Array:
    """Exponentially weighted (RiskMetrics) covariance, pairwise over common observations.

    ``C[i, j] = sum_t lam^(T-1-t) x_ti x_tj / sum_t lam^(T-1-t)`` over the
    times where both are observed (weights renormalised per pair). Without NaN
    this equals the recursion ``S_t = lam S_{t-1} + x_t x_t^T``,
    ``N_t = lam N_{t-1} + 1`` started at zero, read as ``S_T / N_T``: the
    RiskMetrics estimator with normalised weights. Zero mean by default
    (RiskMetrics); ``demean=True`` subtracts each asset's own sample mean first.

    Parameters
    ----------
    returns : array, shape (..., T, A)
        Asset returns (fractions), NaN where unobserved.
    decay : float, default 0.94
        ``lam`` in (0, 1]: RiskMetrics uses 0.94 for daily data; 1 gives equal
        weights (the ``ddof=0`` second moment).
    demean : bool, default False
        Subtract each asset's mean before weighting.

    Returns
    -------
    array, shape (..., A, A)
        Squared return units per period; NaN where a pair has no common time.
    """
    fn = partial(_ewma, decay=decay, demean=demean)
    return jnp.vectorize(fn, signature="(t,a)->(a,a)")(returns)


def _nearest_psd(cov: jax.Array, floor: jax.Array, keep_variances: bool) -> jax.Array:
    cov = 0.5 * (cov + cov.T)
    lam, vec = jnp.linalg.eigh(cov)
    scale = jnp.maximum(jnp.abs(lam).max(), jnp.finfo(cov.dtype).tiny)
    clipped = jnp.maximum(lam, floor * scale)
    fixed = (vec * clipped) @ vec.T
    if keep_variances:
        # Congruence by a positive diagonal keeps it PSD and restores the variances.
        s = jnp.sqrt(jnp.diag(cov) / jnp.diag(fixed))
        fixed = fixed * s[:, None] * s[None, :]
    return 0.5 * (fixed + fixed.T)


@precise
@partial(jax.jit, static_argnames=("keep_variances",))
def nearest_psd(cov: jax.Array, floor: float = 1e-10, keep_variances: bool = True) -> jax.Array:
    """Repair a symmetric matrix to positive definite by eigenvalue clipping.

    Eigenvalues below ``floor * max|eigenvalue|`` are raised to it and the
    matrix is rebuilt. With ``keep_variances`` it is then rescaled by a
    positive diagonal congruence so that the original diagonal (the
    variances) is kept exactly; the smallest eigenvalue is then about
    ``floor`` times the largest, times the smallest rescaling factor.
    Without, the spectrum is exactly the clipped one, so the condition number
    is at most ``1 / floor`` (what a solver needs). A matrix that is already
    PSD with all eigenvalues above the floor comes back unchanged up to
    rounding. The one covariance repair of pmkit: `pmkit.risk.covariance_matrix`
    (variances kept) and the optimizers' conditioning
    (`pmkit.optimize._inputs.condition_covariance`, condition number bounded)
    both call it.

    Parameters
    ----------
    cov : array, shape (..., A, A)
        Symmetric (it is symmetrised first), positive diagonal.
    floor : float, default 1e-10
        Relative eigenvalue floor.
    keep_variances : bool, default True
        Restore the diagonal after clipping.

    Returns
    -------
    array, shape (..., A, A)
        In ``cov``'s units.
    """
    fn = partial(_nearest_psd, floor=floor, keep_variances=keep_variances)
    return jnp.vectorize(fn, signature="(a,a)->(a,a)")(cov)


@precise
@jax.jit
def min_eigenvalue(cov: jax.Array) -> jax.Array:
    """Smallest eigenvalue of the symmetric part of ``cov``, shape (...)."""
    sym = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    return jnp.linalg.eigvalsh(sym)[..., 0]
