"""Minimum CVaR over historical scenarios: the Rockafellar-Uryasev linear program on HiGHS.

For scenario returns ``R`` (``T x N`` simple returns, one row per period) and
confidence level ``c`` (the ``confidence`` argument), the conditional value
at risk of the loss ``-R w`` is ``min_alpha alpha + 1/((1-c) T) sum_t max(-R_t w - alpha, 0)``
(Rockafellar and Uryasev, J. Risk 2, 2000), so minimum CVaR is the LP::

    minimize    alpha + k sum_t u_t                   k = 1 / ((1 - c) T)
    subject to  u_t >= -R_t w - alpha,  u_t >= 0      (one row per scenario)
                lower <= w <= upper,  budget_row' w = budget
                a_ub w <= b_ub,  a_eq w = b_eq,  mu' w >= min_return

Only the scenarios in the loss tail (``-R_t w > alpha``) matter at the optimum,
about ``(1 - c) T`` of them. The default ``strategy="cuts"`` exploits this
(scenario generation, a cutting-plane method): it solves the LP over the
worst scenarios of a starting portfolio (the minimum variance one), then adds
every scenario the new portfolio loses more than its VaR on, and repeats. A
relaxation over a scenario subset that no left-out scenario violates is
optimal for the full LP, so the answer is exact, typically after one or two
LPs over about ``2 (1 - c) T`` scenario rows instead of ``T`` (at T=2520,
N=500, c=0.95: 0.2 s against 5 s for the complete primal LP and 2.7 s for
its dual on HiGHS). ``strategy="full"`` solves the complete LP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from pmkit.errors import InfeasibleError, NoSolutionError, SolverError, ValidationError

__all__ = ["CVaRSolution", "cvar_of", "min_cvar_lp"]

Strategy = Literal["cuts", "full"]
_HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


@dataclass(frozen=True)
class CVaRSolution:
    """Answer of `min_cvar_lp`.

    Attributes
    ----------
    weights : ndarray, shape (N,)
        Optimal weights (fractions of value).
    var : float
        Value at risk ``alpha`` at the optimum: a loss, as a fraction of value
        per scenario period (positive = loss).
    cvar : float
        Minimum CVaR: the LP objective, a loss fraction per period.
    status : str
        ``"optimal"`` (failures raise).
    rounds : int
        LPs solved (1 for ``strategy="full"``).
    scenarios_used : int
        Scenario rows in the last LP.
    iterations : int
        HiGHS iterations summed over the LPs.
    """

    weights: np.ndarray
    var: float
    cvar: float
    status: str
    rounds: int
    scenarios_used: int
    iterations: int


def cvar_of(returns: np.ndarray, weights: np.ndarray, confidence: float) -> tuple[float, float]:
    """Historical VaR and CVaR of a portfolio, straight from the scenarios.

    Parameters
    ----------
    returns : ndarray, shape (T, N)
        Scenario simple returns (fractions).
    weights : ndarray, shape (N,)
        Portfolio weights.
    confidence : float
        Confidence level in (0, 1), e.g. 0.95.

    Returns
    -------
    var, cvar : float
        Losses as positive fractions: ``var`` the smallest minimizer ``alpha``
        of the Rockafellar-Uryasev function (the ``confidence`` lower quantile of
        the loss), ``cvar`` its minimum value.
    """
    loss = -(np.asarray(returns, dtype=np.float64) @ np.asarray(weights, dtype=np.float64))
    t = loss.size
    k = 1.0 / ((1.0 - confidence) * t)
    order = np.sort(loss)
    # The RU function is convex piecewise linear in alpha with kinks at the losses;
    # its minimum is at the order statistic where the slope 1 - k #{loss > alpha} turns >= 0.
    idx = max(int(np.ceil(confidence * t - 1e-9)) - 1, 0)
    alpha = float(order[idx])
    return alpha, alpha + k * float(np.maximum(loss - alpha, 0.0).sum())


def _matrix(name: str, value: object, n: int) -> np.ndarray:
    arr = np.atleast_2d(np.asarray(value, dtype=np.float64))
    if arr.ndim != 2 or arr.shape[1] != n or not np.isfinite(arr).all():
        raise ValidationError(name, arr.shape, f"must be a finite matrix with {n} columns")
    return arr


def _rhs(name: str, value: object, m: int) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.shape != (m,) or not np.isfinite(arr).all():
        raise ValidationError(name, arr.shape, f"must be a finite vector of length {m}")
    return arr


def _bounds(name: str, value: object, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    arr = np.full(n, float(arr)) if arr.ndim == 0 else arr
    if arr.shape != (n,) or np.isnan(arr).any():
        raise ValidationError(name, arr.shape, f"must be a float or a vector of length {n}")
    return arr


class _Problem:
    """The scenario-independent part of the LP, reused across rounds."""

    def __init__(
        self,
        n: int,
        k: float,
        lower: np.ndarray,
        upper: np.ndarray,
        eq_rows: np.ndarray,
        eq_rhs: np.ndarray,
        ub_rows: np.ndarray,
        ub_rhs: np.ndarray,
    ) -> None:
        self.n, self.k = n, k
        self.lower, self.upper = lower, upper
        self.eq_rows, self.eq_rhs = eq_rows, eq_rhs
        self.ub_rows, self.ub_rhs = ub_rows, ub_rhs

    def solve(self, scen: np.ndarray) -> tuple[Any, np.ndarray, float]:
        """Solve over the scenario rows ``scen`` (m x N); variables ``[w, alpha, u]``."""
        from scipy.optimize import linprog

        m, n = scen.shape[0], self.n
        c = np.concatenate([np.zeros(n), [1.0], np.full(m, self.k)])
        # -R w - alpha - u <= 0, one row per scenario; general rows pad with zeros.
        scenario_rows = sp.hstack(
            [sp.csr_matrix(-scen), sp.csr_matrix(np.full((m, 1), -1.0)), -sp.eye(m, format="csr")],
            format="csr",
        )
        pad = sp.csr_matrix((self.ub_rows.shape[0], 1 + m))
        a_ub = sp.vstack(
            [scenario_rows, sp.hstack([sp.csr_matrix(self.ub_rows), pad], format="csr")],
            format="csr",
        )
        b_ub = np.concatenate([np.zeros(m), self.ub_rhs])
        a_eq = None
        if self.eq_rows.shape[0]:
            zeros = sp.csr_matrix((self.eq_rows.shape[0], 1 + m))
            a_eq = sp.hstack([sp.csr_matrix(self.eq_rows), zeros], format="csr")
        lb = np.concatenate([self.lower, [-np.inf], np.zeros(m)])
        ub = np.concatenate([self.upper, [np.inf], np.full(m, np.inf)])
        res = linprog(
            c,
            A_ub=a_ub,
            b_ub=b_ub,
            A_eq=a_eq,
            b_eq=self.eq_rhs if a_eq is not None else None,
            bounds=np.column_stack([lb, ub]),
            method="highs-ds",
            options=_HIGHS_OPTIONS,
        )
        if res.status != 0:
            return res, np.full(n, np.nan), np.nan
        w = np.clip(res.x[:n], self.lower, self.upper)
        return res, w, float(res.x[n])


def _raise_for(res: Any, problem: str) -> None:
    status = int(res.status)
    message = str(res.message)
    if status == 2:
        raise InfeasibleError(f"{problem}: the weight constraints admit no portfolio ({message})")
    if status == 3:
        raise NoSolutionError(f"{problem} is unbounded: the weights need bounds ({message})")
    raise SolverError({"HiGHS": message}, problem)


def _start(
    returns: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    budget_row: np.ndarray | None,
    budget: float | None,
) -> np.ndarray:
    """A portfolio whose worst scenarios seed the cuts: minimum (uncentred) variance."""
    from pmkit.optimize._active_set import min_variance_box, project_budget_box

    n = returns.shape[1]
    equal = np.clip(np.full(n, 1.0 / n), lower, upper)
    if budget_row is None or budget is None:
        return equal
    # Only a heuristic: if the box and budget conflict the LP itself reports it.
    try:
        if np.all(budget_row == 1.0):
            second = returns.T @ returns / returns.shape[0]
            second[np.diag_indices(n)] += 1e-12 * float(np.trace(second)) / n
            sol = min_variance_box(second, lower, upper, budget=budget)
            if sol.converged:
                return sol.x
        return project_budget_box(equal, budget_row, budget, lower, upper)
    except (InfeasibleError, ValidationError):
        return equal


def min_cvar_lp(
    returns: np.ndarray,
    confidence: float = 0.95,
    *,
    lower: np.ndarray | float = 0.0,
    upper: np.ndarray | float = np.inf,
    budget: float | None = 1.0,
    budget_row: np.ndarray | None = None,
    a_ub: np.ndarray | None = None,
    b_ub: np.ndarray | None = None,
    a_eq: np.ndarray | None = None,
    b_eq: np.ndarray | None = None,
    mu: np.ndarray | None = None,
    min_return: float | None = None,
    x0: np.ndarray | None = None,
    strategy: Strategy = "cuts",
    max_rounds: int = 50,
) -> CVaRSolution:
    """Minimum CVaR weights over historical scenarios (Rockafellar-Uryasev LP, HiGHS).

    Parameters
    ----------
    returns : ndarray, shape (T, N)
        Scenario simple returns per period (fractions), no NaN.
    confidence : float, default 0.95
        Confidence level in (0, 1).
    lower, upper : ndarray, shape (N,), or float
        Weight bounds (fractions); infinite for none. Default long-only.
    budget : float or None, default 1
        Right-hand side of ``budget_row' w = budget``; None for no budget row.
    budget_row : ndarray, shape (N,), optional
        Default all ones (``sum(w) = budget``).
    a_ub, b_ub : ndarray, shapes (m, N) and (m,), optional
        Extra rows ``a_ub w <= b_ub`` (e.g. sector caps).
    a_eq, b_eq : ndarray, shapes (p, N) and (p,), optional
        Extra rows ``a_eq w = b_eq``.
    mu, min_return : ndarray (N,) and float, optional
        Expected returns and the floor ``mu' w >= min_return`` (same units).
    x0 : ndarray, shape (N,), optional
        Starting portfolio for the cuts (default: minimum second moment).
    strategy : {"cuts", "full"}, default "cuts"
        Scenario generation (exact, faster) or the complete LP.
    max_rounds : int, default 50
        Cap on LPs for ``"cuts"``; beyond it the complete LP is solved.

    Returns
    -------
    CVaRSolution

    Raises
    ------
    ValidationError
        Bad shapes, NaN/inf returns, ``confidence`` outside (0, 1), ``min_return``
        without ``mu``.
    InfeasibleError
        The weight constraints admit no portfolio.
    NoSolutionError
        The LP is unbounded (unbounded weights).
    SolverError
        HiGHS failed otherwise.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] == 0 or r.shape[1] == 0:
        raise ValidationError("returns", r.shape, "must be a non-empty (T, N) matrix")
    if not np.isfinite(r).all():
        raise ValidationError("returns", "non-finite entry", "scenario returns must be finite")
    if not (isinstance(confidence, float | int) and 0.0 < float(confidence) < 1.0):
        raise ValidationError("confidence", confidence, "must be in (0, 1)")
    if strategy not in ("cuts", "full"):
        raise ValidationError("strategy", strategy, "must be 'cuts' or 'full'")
    t, n = r.shape
    k = 1.0 / ((1.0 - float(confidence)) * t)
    lo, up = _bounds("lower", lower, n), _bounds("upper", upper, n)
    if np.any(lo > up):
        i = int(np.argmax(lo > up))
        raise InfeasibleError(f"lower[{i}]={lo[i]:.6g} exceeds upper[{i}]={up[i]:.6g}")

    eq_rows, eq_rhs = [np.zeros((0, n))], [np.zeros(0)]
    row = None
    if budget is not None:
        row = np.ones(n) if budget_row is None else _rhs("budget_row", budget_row, n)
        eq_rows.append(row[None, :])
        eq_rhs.append(np.array([float(budget)]))
    if a_eq is not None:
        mat = _matrix("a_eq", a_eq, n)
        eq_rows.append(mat)
        eq_rhs.append(_rhs("b_eq", b_eq, mat.shape[0]))
    ub_rows, ub_rhs = [np.zeros((0, n))], [np.zeros(0)]
    if a_ub is not None:
        mat = _matrix("a_ub", a_ub, n)
        ub_rows.append(mat)
        ub_rhs.append(_rhs("b_ub", b_ub, mat.shape[0]))
    if min_return is not None:
        if mu is None:
            raise ValidationError("min_return", min_return, "needs mu")
        ub_rows.append(-_rhs("mu", mu, n)[None, :])
        ub_rhs.append(np.array([-float(min_return)]))
    prob = _Problem(
        n,
        k,
        lo,
        up,
        np.vstack(eq_rows),
        np.concatenate(eq_rhs),
        np.vstack(ub_rows),
        np.concatenate(ub_rhs),
    )
    what = f"minimum CVaR ({float(confidence):g})"

    tail = int(np.ceil((1.0 - float(confidence)) * t))
    # A relaxation with fewer than 1/k scenarios is unbounded in alpha; twice the tail
    # usually holds the optimal tail of a minimum variance start.
    first = min(t, max(2 * tail, tail + 1))
    if strategy == "full" or first >= t:
        res, w, alpha = prob.solve(r)
        if res.status != 0:
            _raise_for(res, what)
        return CVaRSolution(w, alpha, float(res.fun), "optimal", 1, t, int(res.nit))

    w0 = _start(r, lo, up, row, budget) if x0 is None else _bounds("x0", x0, n)
    loss = -(r @ w0)
    chosen = np.zeros(t, dtype=bool)
    chosen[np.argpartition(loss, t - first)[t - first :]] = True
    iterations = rounds = 0
    while rounds < max_rounds:
        rounds += 1
        res, w, alpha = prob.solve(r[chosen])
        iterations += int(res.nit)
        if res.status == 3:
            break  # the subset does not bound the relaxation: solve the complete LP
        if res.status != 0:
            _raise_for(res, what)
        loss = -(r @ w)
        slack = 1e-12 * max(1.0, float(np.abs(loss).max()))
        violated = ~chosen & (loss > alpha + slack)
        if not violated.any():
            return CVaRSolution(
                w, alpha, float(res.fun), "optimal", rounds, int(chosen.sum()), iterations
            )
        idx = np.flatnonzero(violated)
        if idx.size > 2 * tail:  # bound the growth of one round by the worst violators
            idx = idx[np.argpartition(loss[idx], idx.size - 2 * tail)[idx.size - 2 * tail :]]
        chosen[idx] = True
    res, w, alpha = prob.solve(r)
    if res.status != 0:
        _raise_for(res, what)
    return CVaRSolution(
        w, alpha, float(res.fun), "optimal", rounds + 1, t, iterations + int(res.nit)
    )
