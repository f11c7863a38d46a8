"""Exact active-set solver for a dense convex QP with one equality row and box bounds.

Solves::

    minimize    1/2 x' P x + q' x
    subject to  a' x = b,   lower <= x <= upper

with ``P`` symmetric positive definite (positive semi-definite works when every
reduced block ``P[F, F]`` met on the way is definite, e.g. after a ridge) and
bounds that may be infinite. This one problem is the fast path of minimum
variance (``P = cov, q = 0, a = 1``), maximum quadratic utility (``P = delta
cov, q = -mu``) and, through the Charnes-Cooper transform, long-only maximum
Sharpe ratio and maximum diversification (`max_sharpe_long_only`,
`max_diversification_long_only`). General inequality rows are out of scope:
callers route those to cvxpy.

Method: a primal-dual active-set iteration (Hintermueller, Ito and Kunisch,
SIAM J. Optim. 13, 2003), which moves every index whose bound or multiplier
sign is violated at once and typically ends in a handful of iterations, each a
Cholesky solve of the reduced KKT system on the free set. It converges
globally for M-matrices only, so it is safeguarded: when a set pair repeats
(a cycle), the free set loses every variable carrying the budget, or an
iteration cap is hit, a primal active-set method (one index per iteration,
finite for strictly convex problems) restarts from the Euclidean projection of
the best iterate onto the feasible set. Answers are exact up to rounding:
variables at a bound are exactly at it, free ones satisfy the reduced KKT
equations to machine precision.

Multiplier convention: ``P x + q - nu a - lower_mult + upper_mult = 0`` with
``lower_mult, upper_mult >= 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

from pmkit.errors import InfeasibleError, NoSolutionError, ValidationError

__all__ = [
    "QPSolution",
    "ScaledSolution",
    "SharpeUndefinedError",
    "max_diversification_long_only",
    "max_sharpe_long_only",
    "max_utility_box",
    "min_variance_box",
    "project_budget_box",
    "solve_box_qp",
]


@dataclass(frozen=True)
class QPSolution:
    """Answer of `solve_box_qp`.

    Attributes
    ----------
    x : ndarray, shape (n,)
        The minimizer.
    nu : float
        Multiplier of ``a' x = b``.
    lower_mult, upper_mult : ndarray, shape (n,)
        Multipliers (>= 0) of ``x >= lower`` and ``x <= upper``; zero off the
        active bound.
    objective : float
        ``1/2 x' P x + q' x`` at ``x``.
    iterations : int
        Active-set iterations (both phases).
    converged : bool
        Every KKT residual below ``tol``.
    method : str
        ``"pdas"``, or ``"pdas+primal"`` when the safeguard took over.
    active_lower, active_upper : ndarray of bool, shape (n,)
        Variables held at their lower / upper bound (exactly equal to it).
    stationarity, complementarity, dual_feasibility, primal_feasibility : float
        KKT residuals. The first three are relative to ``max(|P|max * max(1,
        |x|inf), |q|inf)``; ``primal_feasibility`` is the largest bound
        violation or ``|a'x - b| / max(1, |b|, max_i |a_i x_i|)`` (rounding
        in ``a'x`` grows with the terms summed).
    """

    x: np.ndarray
    nu: float
    lower_mult: np.ndarray
    upper_mult: np.ndarray
    objective: float
    iterations: int
    converged: bool
    method: str
    stationarity: float
    complementarity: float
    dual_feasibility: float
    primal_feasibility: float
    active_lower: np.ndarray
    active_upper: np.ndarray

    @property
    def kkt_residual(self) -> float:
        """Largest of the four KKT residuals."""
        return max(
            self.stationarity, self.complementarity, self.dual_feasibility, self.primal_feasibility
        )


@dataclass(frozen=True)
class ScaledSolution:
    """Weights recovered from a Charnes-Cooper QP, ``weights = y / sum(y)``.

    Attributes
    ----------
    weights : ndarray, shape (n,)
        Long-only, fully invested weights (sum exactly 1 up to rounding).
    qp : QPSolution
        The solution ``y`` of the scaled problem and its diagnostics.
    """

    weights: np.ndarray
    qp: QPSolution


class SharpeUndefinedError(NoSolutionError):
    """No asset has a positive excess return, so no long-only portfolio has a positive Sharpe.

    Parameters
    ----------
    best : float
        The largest excess return found (<= 0), in the caller's units.
    """

    def __init__(self, best: float) -> None:
        self.best = best
        super().__init__(
            "maximum Sharpe ratio is undefined: no asset has a positive expected excess return "
            f"(largest {best:.6g}); every long-only portfolio has Sharpe <= 0"
        )


# ----------------------------------------------------------------------------- validation


def _vector(name: str, value: object, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValidationError(name, arr.shape, f"must have shape ({n},)")
    return arr


def _check_problem(
    hess: np.ndarray, q: object, a: object, b: float, lower: object, upper: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray, np.ndarray]:
    hess = np.asarray(hess, dtype=np.float64)
    if hess.ndim != 2 or hess.shape[0] != hess.shape[1] or hess.shape[0] == 0:
        raise ValidationError("P", hess.shape, "must be a non-empty square matrix")
    n = hess.shape[0]
    if not np.isfinite(hess).all():
        raise ValidationError("P", "non-finite entry", "must be finite")
    q = _vector("q", q, n)
    a = _vector("a", a, n)
    lo = _vector("lower", lower, n)
    up = _vector("upper", upper, n)
    if not (np.isfinite(q).all() and np.isfinite(a).all()):
        raise ValidationError("q, a", "non-finite entry", "must be finite")
    if not np.isfinite(b):
        raise ValidationError("b", b, "must be finite")
    if np.isnan(lo).any() or np.isnan(up).any() or (lo == np.inf).any() or (up == -np.inf).any():
        raise ValidationError("lower, upper", "nan or wrong-signed inf", "bounds must be ordered")
    bad = np.flatnonzero(lo > up)
    if bad.size:
        i = int(bad[0])
        raise InfeasibleError(f"lower[{i}]={lo[i]:.6g} exceeds upper[{i}]={up[i]:.6g}")
    return hess, q, a, float(b), lo, up


def _budget_range(a: np.ndarray, lo: np.ndarray, up: np.ndarray) -> tuple[float, float]:
    """Smallest and largest ``a' x`` over the box (may be infinite)."""
    with np.errstate(invalid="ignore"):
        at_lo = np.where(a == 0, 0.0, a * lo)
        at_up = np.where(a == 0, 0.0, a * up)
    return float(np.minimum(at_lo, at_up).sum()), float(np.maximum(at_lo, at_up).sum())


# ----------------------------------------------------------------------------- projection


def project_budget_box(
    y: np.ndarray, a: np.ndarray, b: float, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """Euclidean projection of ``y`` onto ``{x : a'x = b, lower <= x <= upper}``.

    The projection is ``clip(y + tau a, lower, upper)`` for the scalar ``tau``
    solving the piecewise-linear, non-decreasing equation
    ``phi(tau) = a' clip(y + tau a) = b``, found exactly from its sorted
    breakpoints.

    Parameters
    ----------
    y, a, lower, upper : ndarray, shape (n,)
        Point, budget row and bounds (bounds may be infinite).
    b : float
        Budget.

    Returns
    -------
    ndarray, shape (n,)

    Raises
    ------
    InfeasibleError
        ``b`` is outside the range of ``a'x`` over the box.
    """
    lo_b, hi_b = _budget_range(a, lower, upper)
    if not lo_b - 1e-12 * max(1.0, abs(b)) <= b <= hi_b + 1e-12 * max(1.0, abs(b)):
        raise InfeasibleError(
            f"budget a'x = {b:.6g} is outside [{lo_b:.6g}, {hi_b:.6g}], the range reachable "
            "within the bounds"
        )
    moving = a != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(moving, (lower - y) / a, 0.0)
        t2 = np.where(moving, (upper - y) / a, 0.0)
    knots = np.concatenate([t1[moving], t2[moving]])
    knots = np.unique(knots[np.isfinite(knots)])

    def phi(tau: float) -> float:
        return float(a @ np.clip(y + tau * a, lower, upper))

    if knots.size == 0:
        knots = np.array([0.0])
    # phi is non-decreasing and affine between knots: bisect over the knot index.
    if b <= phi(knots[0]):
        tau = _extrapolate(phi, knots[0], b, -1.0)
    elif b >= phi(knots[-1]):
        tau = _extrapolate(phi, knots[-1], b, 1.0)
    else:
        lo_i, hi_i = 0, knots.size - 1
        while hi_i - lo_i > 1:
            mid = (lo_i + hi_i) // 2
            if phi(knots[mid]) < b:
                lo_i = mid
            else:
                hi_i = mid
        t_lo, t_hi = knots[lo_i], knots[hi_i]
        f_lo, f_hi = phi(t_lo), phi(t_hi)
        tau = t_lo + (b - f_lo) * (t_hi - t_lo) / (f_hi - f_lo) if f_hi > f_lo else t_lo
    x = np.clip(y + tau * a, lower, upper)
    # Rounding in tau leaves a residual of order eps: put it on one free variable.
    free = np.flatnonzero(moving & (x > lower) & (x < upper))
    if free.size:
        i = free[np.argmax(np.abs(a[free]))]
        x[i] = np.clip(x[i] + (b - a @ x) / a[i], lower[i], upper[i])
    return x


def _extrapolate(phi, t0: float, b: float, direction: float) -> float:
    """Solve ``phi(tau) = b`` beyond the outermost knot, where phi is affine."""
    f0 = phi(t0)
    f1 = phi(t0 + direction)
    slope = (f1 - f0) * direction
    if slope == 0:
        return t0
    return t0 + (b - f0) / slope


# ----------------------------------------------------------------------------- linear algebra


def _chol(m: np.ndarray) -> np.ndarray | None:
    """Cholesky factor of a symmetric scratch matrix in place, or None if not definite.

    The C-ordered ``m`` is passed transposed (Fortran order, the same matrix by
    symmetry) so LAPACK factors it without a copy; the result is the lower
    factor for ``dpotrs(..., lower=1)`` with the other triangle left as garbage.
    """
    c, info = lapack.dpotrf(m.T, lower=1, clean=0, overwrite_a=1)
    return c if info == 0 else None


def _eqp(
    hess: np.ndarray,
    q: np.ndarray,
    a: np.ndarray,
    b: float,
    free: np.ndarray,
    x: np.ndarray,
) -> tuple[np.ndarray, float] | None:
    """Minimize over ``x[free]`` with ``x[~free]`` fixed subject to ``a'x = b``.

    Returns ``(x_free, nu)``, or None when the reduced problem is singular
    (``P[F, F]`` not definite or ``a[F] = 0``).
    """
    idx = np.flatnonzero(free)
    if idx.size == 0:
        return None
    a_f = a[idx]
    if not np.any(a_f):
        return None
    # Rows F of P serve the right-hand side, the block P[F, F] and the refinement.
    rows = hess if idx.size == hess.shape[0] else hess.take(idx, 0)
    fixed = x.copy()
    fixed[idx] = 0.0
    rhs = np.empty((idx.size, 2))
    rhs[:, 0] = -(q[idx] + rows @ fixed)
    rhs[:, 1] = a_f
    block = hess.copy() if idx.size == hess.shape[0] else rows.take(idx, 1)
    chol = _chol(block)
    if chol is None:
        return None
    z, info = lapack.dpotrs(chol, rhs, lower=1)
    if info != 0:
        return None
    denom = float(a_f @ z[:, 1])
    if not denom > 0:
        return None
    nu = (b - float(a @ fixed) - float(a_f @ z[:, 0])) / denom
    x_f = z[:, 0] + nu * z[:, 1]
    # One step of iterative refinement on the reduced KKT system (same factor): the
    # Schur-complement elimination of nu loses digits of a'x = b when P[F, F] is
    # ill-conditioned; this restores them at the cost of one more triangular solve.
    full = fixed.copy()
    full[idx] = x_f
    r1 = rows @ full + q[idx] - nu * a_f
    r2 = b - float(a @ full)
    corr, info = lapack.dpotrs(chol, r1, lower=1)
    if info == 0:
        dnu = (r2 + float(a_f @ corr)) / denom
        x_f = x_f - corr + dnu * z[:, 1]
        nu += dnu
    return x_f, nu


# ----------------------------------------------------------------------------- residuals


def _scale(hess: np.ndarray, q: np.ndarray, x: np.ndarray) -> float:
    """Size of the gradient terms, the yardstick of the relative KKT residuals.

    ``max |P_ij| = max P_ii`` for a positive semi-definite ``P``, read off the diagonal.
    """
    big = float(np.abs(np.diagonal(hess)).max())
    scale = max(big * max(1.0, float(np.abs(x).max())), float(np.abs(q).max()))
    return scale if scale > 0 else 1.0


def _finish(
    hess: np.ndarray,
    q: np.ndarray,
    a: np.ndarray,
    b: float,
    lo: np.ndarray,
    up: np.ndarray,
    x: np.ndarray,
    nu: float,
    at_lo: np.ndarray,
    at_up: np.ndarray,
    iterations: int,
    method: str,
    tol: float,
) -> QPSolution:
    hx = hess @ x
    grad = hx + q - nu * a
    lower_mult = np.where(at_lo, grad, 0.0)
    upper_mult = np.where(at_up, -grad, 0.0)
    scale = _scale(hess, q, x)
    stationarity = float(np.abs(grad - lower_mult + upper_mult).max()) / scale
    dual = max(0.0, -float(lower_mult.min()), -float(upper_mult.min())) / scale
    with np.errstate(invalid="ignore"):
        gap_lo = np.where(at_lo, 0.0, np.where(np.isfinite(lo), x - lo, np.inf))
        gap_up = np.where(at_up, 0.0, np.where(np.isfinite(up), up - x, np.inf))
    # Multipliers are zero off the active sets and x sits exactly on its bound on them.
    comp = max(
        float(np.max(lower_mult * np.where(at_lo, x - lo, 0.0), initial=0.0)),
        float(np.max(upper_mult * np.where(at_up, up - x, 0.0), initial=0.0)),
    )
    primal = max(
        float(np.max(-gap_lo, initial=0.0)),
        float(np.max(-gap_up, initial=0.0)),
        abs(float(a @ x) - b) / max(1.0, abs(b), float(np.abs(a * x).max())),
        0.0,
    )
    comp /= scale
    converged = max(stationarity, dual, comp, primal) <= tol
    return QPSolution(
        x=x,
        nu=nu,
        lower_mult=lower_mult,
        upper_mult=upper_mult,
        objective=float(0.5 * x @ hx + q @ x),
        iterations=iterations,
        converged=bool(converged),
        method=method,
        stationarity=stationarity,
        complementarity=comp,
        dual_feasibility=dual,
        primal_feasibility=primal,
        active_lower=at_lo.copy(),
        active_upper=at_up.copy(),
    )


# ----------------------------------------------------------------------------- solvers


def solve_box_qp(
    hess: np.ndarray,
    q: np.ndarray | float,
    a: np.ndarray | float,
    b: float,
    lower: np.ndarray | float,
    upper: np.ndarray | float,
    *,
    x0: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
) -> QPSolution:
    """Minimize ``1/2 x'Px + q'x`` subject to ``a'x = b`` and ``lower <= x <= upper``.

    Parameters
    ----------
    hess : ndarray, shape (n, n)
        The matrix ``P``: symmetric positive definite (or semi-definite with
        definite reduced blocks); the factorizations read one triangle.
    q : ndarray, shape (n,), or float
        Linear term.
    a : ndarray, shape (n,), or float
        The equality row (a scalar is broadcast, e.g. 1 for a budget).
    b : float
        Right-hand side of the equality.
    lower, upper : ndarray, shape (n,), or float
        Bounds; ``-inf`` / ``+inf`` for none.
    x0 : ndarray, shape (n,), optional
        Warm start: its bound-active pattern seeds the active sets. Default:
        start from the equality-only minimizer (every variable free).
    tol : float, default 1e-10
        Threshold on the relative KKT residuals for ``converged``.
    max_iter : int, optional
        Cap on primal-dual iterations before the primal safeguard takes over
        (default ``20 + n // 10``); the primal phase gets ``3 n + 50``.

    Returns
    -------
    QPSolution
        ``converged`` is False if the safeguard also ran out of iterations or
        met a singular reduced system (a semi-definite ``P`` without ridge);
        the caller should then use a general solver.

    Raises
    ------
    ValidationError
        Shapes disagree or an input is not finite.
    InfeasibleError
        A lower bound exceeds its upper bound, or ``b`` is out of reach of
        ``a'x`` within the bounds.
    """
    hess, q, a, b, lo, up = _check_problem(hess, q, a, b, lower, upper)
    n = hess.shape[0]
    lo_b, hi_b = _budget_range(a, lo, up)
    slack = 1e-12 * max(1.0, abs(b))
    if not lo_b - slack <= b <= hi_b + slack:
        raise InfeasibleError(
            f"equality a'x = {b:.6g} is outside [{lo_b:.6g}, {hi_b:.6g}], the range "
            "reachable within the bounds"
        )
    cap = 20 + n // 10 if max_iter is None else int(max_iter)

    if x0 is None:
        at_lo = np.zeros(n, dtype=bool)
        at_up = np.zeros(n, dtype=bool)
    else:
        x0 = _vector("x0", x0, n)
        at_lo = x0 <= lo
        at_up = (x0 >= up) & ~at_lo
    x = np.where(at_lo, lo, np.where(at_up, up, 0.0))
    seen: set[bytes] = set()
    best: np.ndarray | None = None
    iterations = 0
    while iterations < cap:
        key = np.packbits(np.concatenate([at_lo, at_up])).tobytes()
        if key in seen:
            break  # cycling: hand over to the primal method
        seen.add(key)
        iterations += 1
        x = np.where(at_lo, lo, np.where(at_up, up, x))
        free = ~(at_lo | at_up)
        sol = _eqp(hess, q, a, b, free, x)
        if sol is None:
            break
        x[free], nu = sol
        best = x.copy()
        grad = hess @ x + q - nu * a
        new_lo = (at_lo & (grad >= 0)) | (free & (x < lo))
        new_up = (at_up & (grad <= 0)) | (free & (x > up))
        if np.array_equal(new_lo, at_lo) and np.array_equal(new_up, at_up):
            return _finish(hess, q, a, b, lo, up, x, nu, at_lo, at_up, iterations, "pdas", tol)
        at_lo, at_up = new_lo, new_up

    start = best if best is not None else (x0 if x0 is not None else np.zeros(n))
    return _primal_active_set(hess, q, a, b, lo, up, start, iterations, tol, 3 * n + 50)


def _primal_active_set(
    hess: np.ndarray,
    q: np.ndarray,
    a: np.ndarray,
    b: float,
    lo: np.ndarray,
    up: np.ndarray,
    start: np.ndarray,
    iterations: int,
    tol: float,
    cap: int,
) -> QPSolution:
    """Classical primal active-set method from the projection of ``start``.

    Every iterate is feasible and the objective never increases; one bound
    enters or leaves the working set per iteration, which makes it finite
    for strictly convex problems.
    """
    x = project_budget_box(np.asarray(start, dtype=np.float64), a, b, lo, up)
    at_lo = x <= lo
    at_up = (x >= up) & ~at_lo
    carriers = np.flatnonzero(a != 0)
    # The equality needs one free variable carrying it (linear independence of the working set).
    if not np.any(~(at_lo | at_up) & (a != 0)):
        i = carriers[0]
        at_lo[i] = at_up[i] = False
    nu = 0.0
    for _ in range(cap):
        iterations += 1
        free = ~(at_lo | at_up)
        sol = _eqp(hess, q, a, b, free, x)
        if sol is None:
            break
        target = x.copy()
        target[free], nu = sol
        step = target - x
        # Largest feasible step along ``step`` (blocking bound).
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_lo = np.where(free & (step < 0), (lo - x) / step, np.inf)
            ratio_up = np.where(free & (step > 0), (up - x) / step, np.inf)
        ratios = np.minimum(ratio_lo, ratio_up)
        j = int(np.argmin(ratios))
        alpha = float(ratios[j])
        if alpha >= 1.0:
            x = target
            grad = hess @ x + q - nu * a
            wrong_lo = np.where(at_lo, -grad, 0.0)
            wrong_up = np.where(at_up, grad, 0.0)
            worst = np.maximum(wrong_lo, wrong_up)
            k = int(np.argmax(worst))
            if worst[k] <= tol * _scale(hess, q, x):
                return _finish(
                    hess,
                    q,
                    a,
                    b,
                    lo,
                    up,
                    x,
                    nu,
                    at_lo,
                    at_up,
                    iterations,
                    "pdas+primal",
                    tol,
                )
            at_lo[k] = at_up[k] = False
        else:
            x = x + max(alpha, 0.0) * step
            if ratio_lo[j] <= ratio_up[j]:
                x[j] = lo[j]
                at_lo[j] = True
            else:
                x[j] = up[j]
                at_up[j] = True
    return _finish(hess, q, a, b, lo, up, x, nu, at_lo, at_up, iterations, "pdas+primal", tol)


# ----------------------------------------------------------------------------- portfolio helpers


def min_variance_box(
    cov: np.ndarray,
    lower: np.ndarray | float = 0.0,
    upper: np.ndarray | float = np.inf,
    *,
    budget: float = 1.0,
    tol: float = 1e-10,
) -> QPSolution:
    """Minimum variance weights ``argmin w'Σw`` with ``sum(w) = budget`` and box bounds.

    Parameters
    ----------
    cov : ndarray, shape (n, n)
        Covariance (any consistent units, e.g. annualized fractions squared).
    lower, upper : ndarray or float
        Weight bounds as fractions of value (default long-only, no cap).
    budget : float, default 1
        Sum of weights.
    tol : float, default 1e-10
        KKT tolerance, see `solve_box_qp`.

    Returns
    -------
    QPSolution
        ``x`` are the weights; ``objective`` is ``1/2 w'Σw``.
    """
    return solve_box_qp(cov, 0.0, 1.0, budget, lower, upper, tol=tol)


def max_utility_box(
    cov: np.ndarray,
    mu: np.ndarray,
    risk_aversion: float,
    lower: np.ndarray | float = 0.0,
    upper: np.ndarray | float = np.inf,
    *,
    budget: float = 1.0,
    tol: float = 1e-10,
) -> QPSolution:
    """Maximum quadratic utility ``mu'w - (delta/2) w'Σw`` with a budget and box bounds.

    Parameters
    ----------
    cov : ndarray, shape (n, n)
        Covariance, in the squared units of ``mu`` (e.g. both annualized).
    mu : ndarray, shape (n,)
        Expected returns.
    risk_aversion : float
        ``delta > 0`` (PyPortfolioOpt's convention).
    lower, upper, budget, tol
        As in `min_variance_box`.

    Returns
    -------
    QPSolution
        ``x`` are the weights; ``objective`` is minus the utility.
    """
    if not np.isfinite(risk_aversion) or risk_aversion <= 0:
        raise ValidationError("risk_aversion", risk_aversion, "must be a positive number")
    cov = np.asarray(cov, dtype=np.float64)
    return solve_box_qp(
        risk_aversion * cov, -np.asarray(mu, dtype=np.float64), 1.0, budget, lower, upper, tol=tol
    )


def _charnes_cooper(
    cov: np.ndarray, a: np.ndarray, upper: np.ndarray | float | None, tol: float
) -> ScaledSolution | None:
    """Solve ``min y'Σy s.t. a'y = 1, y >= 0`` and normalize; None if ``upper`` binds."""
    qp = solve_box_qp(cov, 0.0, a, 1.0, 0.0, np.inf, tol=tol)
    w = qp.x / qp.x.sum()
    if upper is not None:
        cap = np.broadcast_to(np.asarray(upper, dtype=np.float64), w.shape)
        if np.any(w > cap + 1e-12):
            return None
    return ScaledSolution(weights=w, qp=qp)


def max_sharpe_long_only(
    cov: np.ndarray,
    excess_mu: np.ndarray,
    *,
    upper: np.ndarray | float | None = None,
    tol: float = 1e-10,
) -> ScaledSolution | None:
    """Long-only, fully invested maximum Sharpe ratio weights (Charnes-Cooper).

    With ``y = w / kappa`` the ratio ``(mu - rf)'w / sqrt(w'Σw)`` is maximal
    where ``y'Σy`` is minimal subject to ``(mu - rf)'y = 1, y >= 0``; then
    ``w = y / sum(y)``. Upper bounds would become ``y <= u sum(y)``, not a box,
    so they are only checked: a solution that respects them is the answer of
    the capped problem too.

    Parameters
    ----------
    cov : ndarray, shape (n, n)
        Covariance, same period as ``excess_mu``.
    excess_mu : ndarray, shape (n,)
        Expected returns minus the risk-free rate.
    upper : ndarray or float, optional
        Weight caps to check (fractions).
    tol : float, default 1e-10
        KKT tolerance, see `solve_box_qp`.

    Returns
    -------
    ScaledSolution or None
        None when a cap in ``upper`` is violated by the uncapped optimum (use a
        general solver then).

    Raises
    ------
    SharpeUndefinedError
        No asset has ``excess_mu > 0``.
    """
    mu = np.asarray(excess_mu, dtype=np.float64)
    if mu.ndim != 1 or not np.isfinite(mu).all():
        raise ValidationError("excess_mu", mu.shape, "must be a finite vector")
    if not np.any(mu > 0):
        raise SharpeUndefinedError(float(mu.max()))
    return _charnes_cooper(cov, mu, upper, tol)


def max_diversification_long_only(
    cov: np.ndarray,
    *,
    upper: np.ndarray | float | None = None,
    tol: float = 1e-10,
) -> ScaledSolution | None:
    """Long-only maximum diversification ratio ``sigma'w / sqrt(w'Σw)`` weights.

    The maximum Sharpe problem with the volatilities ``sigma = sqrt(diag Σ)``
    in place of excess returns (Choueifaty and Coignard, 2008).

    Parameters
    ----------
    cov : ndarray, shape (n, n)
        Covariance with positive diagonal.
    upper, tol
        As in `max_sharpe_long_only`.

    Returns
    -------
    ScaledSolution or None
        None when a cap in ``upper`` binds.
    """
    cov = np.asarray(cov, dtype=np.float64)
    var = np.diag(cov)
    if not np.all(var > 0):
        i = int(np.argmin(var))
        raise ValidationError(f"cov[{i}, {i}]", float(var[i]), "variances must be positive")
    return _charnes_cooper(cov, np.sqrt(var), upper, tol)
