"""Risk budgeting weights (equal risk contribution and its budgeted form) by Newton's method.

Long-only, fully invested weights ``w`` whose fractional risk contributions
``w_i (Σw)_i / w'Σw`` equal given budgets ``b_i > 0`` (``sum b = 1``) are
``w = y / sum(y)`` for the unique minimizer ``y > 0`` of the strictly convex

    f(y) = 1/2 y'Σy - sum_i b_i log(y_i)

(Spinu, "An algorithm for computing risk parity weights", SSRN 2297383,
2013): its gradient ``Σy - b / y`` vanishes exactly where ``y_i (Σy)_i = b_i``,
and then ``y'Σy = sum b = 1``. The problem is solved in correlation units
(``y = z / sigma``), which makes the Hessian ``C + diag(b / z^2)`` well scaled,
by Newton's method with a step that keeps ``z > 0`` and backtracking on ``f``;
convergence is quadratic near the solution, so contributions match budgets to
machine precision in a few more iterations than a loose tolerance would take.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import lapack

from pmkit.errors import NoSolutionError, ValidationError

__all__ = ["risk_budget_weights", "variance_contributions"]


def variance_contributions(
    weights: np.ndarray, cov: np.ndarray, relative: bool = False
) -> np.ndarray:
    """Euler contributions to the variance ``w_i (Σw)_i`` (they sum to ``w'Σw``).

    The numpy twin of `pmkit.core.risk_budget.variance_contributions` (the
    owner), kept for one small covariance at a time, where a JAX dispatch
    costs more than the product; a test holds the two equal on real data.

    Parameters
    ----------
    weights : ndarray, shape (n,)
        Portfolio weights (fractions).
    cov : ndarray, shape (n, n)
        Covariance (any units: the result is in the same units).
    relative : bool, default False
        Divide by the variance: fractions summing to 1.

    Returns
    -------
    ndarray, shape (n,)
    """
    rc = weights * (cov @ weights)
    return rc / float(rc.sum()) if relative else rc


def _check(cov: Any, budgets: Any) -> tuple[np.ndarray, np.ndarray]:
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] == 0:
        raise ValidationError("cov", cov.shape, "must be a non-empty square matrix")
    if not np.isfinite(cov).all():
        raise ValidationError("cov", "non-finite entry", "must be finite")
    n = cov.shape[0]
    var = np.diag(cov)
    if not np.all(var > 0):
        i = int(np.argmin(var))
        raise ValidationError(f"cov[{i}, {i}]", float(var[i]), "variances must be positive")
    if budgets is None:
        b = np.full(n, 1.0 / n)
    else:
        b = np.asarray(budgets, dtype=np.float64)
        if b.shape != (n,):
            raise ValidationError("budgets", b.shape, f"must have shape ({n},)")
        if not (np.isfinite(b).all() and np.all(b > 0)):
            i = int(np.argmin(np.where(np.isfinite(b), b, -np.inf)))
            raise ValidationError(f"budgets[{i}]", float(b[i]), "budgets must be positive")
        total = float(b.sum())
        if abs(total - 1.0) > 1e-9:
            raise ValidationError("budgets", total, "budgets must sum to 1")
        b = b / total
    return cov, b


def risk_budget_weights(
    cov: np.ndarray,
    budgets: np.ndarray | None = None,
    *,
    tol: float = 1e-12,
    max_iter: int = 100,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Long-only weights whose risk contributions equal ``budgets``.

    Parameters
    ----------
    cov : ndarray, shape (n, n)
        Covariance, symmetric positive definite (a semi-definite one works if
        no positive combination of assets is riskless). Units do not matter.
    budgets : ndarray, shape (n,), optional
        Risk budgets ``b_i > 0`` summing to 1 (within 1e-9; renormalized).
        Default ``1/n`` each: equal risk contribution.
    tol : float, default 1e-12
        Stop when ``max_i |RC_i - b_i| <= tol`` (fractional contributions).
    max_iter : int, default 100
        Newton iterations allowed.

    Returns
    -------
    weights : ndarray, shape (n,)
        Positive, summing to 1 (fractions of value).
    info : dict
        ``iterations``, ``max_error`` (largest ``|RC_i - b_i|``), ``converged``
        and ``newton_decrement`` of the last step.

    Raises
    ------
    ValidationError
        Bad shapes, non-finite entries, a non-positive variance or budget, or
        budgets not summing to 1.
    NoSolutionError
        The Newton system is singular (a riskless positive combination) or
        the iteration limit is hit far from the solution.
    """
    cov, b = _check(cov, budgets)
    sigma = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sigma, sigma)
    # Diagonal-covariance solution sqrt(b)/sigma, scaled to the optimal radius
    # along that ray (where z'Cz = sum b = 1): exact when assets are uncorrelated.
    z = np.sqrt(b)
    z /= np.sqrt(float(z @ corr @ z))
    cz = corr @ z
    f = 0.5 * float(z @ cz) - float(b @ np.log(z))
    info: dict[str, Any] = {"iterations": 0, "converged": False, "newton_decrement": np.nan}
    n = b.size
    diag = np.arange(n)
    for it in range(1, max_iter + 1):
        rc = z * cz
        err = float(np.abs(rc / rc.sum() - b).max())
        if err <= tol:
            info.update(iterations=it - 1, converged=True)
            break
        grad = cz - b / z
        hess = corr.copy()
        hess[diag, diag] += b / (z * z)
        chol, code = lapack.dpotrf(hess.T, lower=1, clean=0, overwrite_a=1)  # in place
        if code != 0:
            raise NoSolutionError(
                "risk budgeting: the Newton system is singular; the covariance has a riskless "
                "long-only combination"
            )
        step, _ = lapack.dpotrs(chol, grad, lower=1)
        decrement = float(np.sqrt(max(float(grad @ step), 0.0)))
        info["newton_decrement"] = decrement
        # Largest step keeping z > 0 (shrunk to stay strictly inside), then Armijo backtracking.
        shrinking = step > 0
        t = 1.0
        if shrinking.any():
            t = min(1.0, 0.95 * float(np.min(z[shrinking] / step[shrinking])))
        slope = -decrement * decrement
        # Near the solution f changes by rounding only: take the (quadratically convergent)
        # full step there rather than let Armijo reject it on noise.
        exact = decrement * decrement <= 1e-14 * (1.0 + abs(f))
        while True:
            z_new = z - t * step
            cz_new = corr @ z_new
            f_new = 0.5 * float(z_new @ cz_new) - float(b @ np.log(z_new))
            if exact or f_new <= f + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        z, cz, f = z_new, cz_new, f_new
    else:
        info["iterations"] = max_iter
    rc = z * cz
    info["max_error"] = float(np.abs(rc / rc.sum() - b).max())
    info["converged"] = info["max_error"] <= tol
    y = z / sigma
    w = y / y.sum()
    if not info["converged"] and info["max_error"] > 1e-6:
        raise NoSolutionError(
            f"risk budgeting did not converge in {max_iter} Newton iterations "
            f"(largest contribution error {info['max_error']:.3g})"
        )
    return w, info
