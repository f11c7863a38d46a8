"""Mean-CVaR: least expected shortfall over historical scenarios (Rockafellar–Uryasev).

``min_w  alpha + 1 / ((1 - c) T) sum_t max(-r_t' w - alpha, 0)`` over the
per-period scenarios ``r_t`` (the times where every asset is observed), the
linear program of Rockafellar & Uryasev (2000). At the optimum ``alpha`` is
the VaR and the objective the CVaR (expected shortfall) at confidence ``c``,
both losses as positive fractions of value per period.

Constraint sets that are linear (bounds, budget, group and linear rows, an
expected-return floor) go to a HiGHS LP with scenario generation
(`pmkit.optimize._cvar_lp`): exact, and much faster than the full LP.
Gross leverage, turnover, costs and tracking error go to cvxpy (HIGHS, then
CLARABEL, SCS).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pmkit.errors import ValidationError
from pmkit.optimize._cvar_lp import cvar_of, min_cvar_lp
from pmkit.optimize._inputs import ProblemData
from pmkit.optimize._solve import LP_CHAIN, solve_chain
from pmkit.optimize.base import Optimizer, Solution
from pmkit.optimize.constraints import Constraints, ResolvedConstraints
from pmkit.optimize.mean_variance import attainable_returns

__all__ = ["MeanCVaR"]


class MeanCVaR(Optimizer):
    """Minimum CVaR at level ``confidence``, optionally with an expected-return floor.

    Parameters
    ----------
    confidence : float, default 0.95
        Confidence level in (0, 1): CVaR is the mean loss in the worst
        ``1 - confidence`` of the scenarios.
    target_return : float, optional
        Annualized expected return floor ``mu' w >= target_return``.
    constraints : Constraints, optional
    **kwargs
        See `Optimizer`.

    Notes
    -----
    The objective is the CVaR: a loss fraction per period of the returns
    (daily for daily data); ``info["var"]`` holds the VaR at the optimum.
    """

    method = "minimum CVaR"
    needs_mu = True
    needs_scenarios = True

    def __init__(
        self,
        confidence: float = 0.95,
        constraints: Constraints | None = None,
        *,
        target_return: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(constraints, **kwargs)
        if not (isinstance(confidence, float | int) and 0.0 < float(confidence) < 1.0):
            raise ValidationError("confidence", confidence, "must be in (0, 1)")
        if target_return is not None and not (
            isinstance(target_return, int | float) and np.isfinite(target_return)
        ):
            raise ValidationError("target_return", target_return, "must be a finite number")
        self.confidence = float(confidence)
        self.target_return = None if target_return is None else float(target_return)

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        linear = (
            cons.max_gross is None
            and cons.max_turnover is None
            and not cons.has_costs
            and cons.max_tracking_error is None
        )
        if linear:
            return self._solve_lp(data, cons)
        return self._solve_cvxpy(data, cons)

    def _solve_lp(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        rows, rhs = [], []
        b_lo, b_hi = cons.budget
        budget = b_lo if b_lo == b_hi else None
        if budget is None:
            rows += [np.ones(data.n), -np.ones(data.n)]
            rhs += [b_hi, -b_lo]
        for k in range(cons.rows.shape[0]):
            if np.isfinite(cons.row_upper[k]):
                rows.append(cons.rows[k])
                rhs.append(cons.row_upper[k])
            if np.isfinite(cons.row_lower[k]):
                rows.append(-cons.rows[k])
                rhs.append(-cons.row_lower[k])
        self._check_target(data, cons)
        sol = min_cvar_lp(
            data.scenarios,
            self.confidence,
            lower=cons.lower,
            upper=cons.upper,
            budget=budget,
            a_ub=np.array(rows) if rows else None,
            b_ub=np.array(rhs) if rhs else None,
            mu=data.mu if self.target_return is not None else None,
            min_return=self.target_return,
        )
        info = {"var": sol.var, "confidence": self.confidence, "lp_rounds": sol.rounds,
                "lp_scenarios": sol.scenarios_used}
        return sol.weights, sol.cvar, "highs", {"HIGHS": "optimal"}, info

    def _solve_cvxpy(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        import cvxpy as cp

        t = data.scenarios.shape[0]
        w = cp.Variable(data.n)
        alpha = cp.Variable()
        k = 1.0 / ((1.0 - self.confidence) * t)
        objective = alpha + k * cp.sum(cp.pos(-data.scenarios @ w - alpha))
        extra = [] if self.target_return is None else [data.mu @ w >= self.target_return]
        prob = cp.Problem(
            cp.Minimize(objective + cons.cost_expression(w)),
            [*extra, *cons.cvxpy(w, data.chol)],
        )
        conic = cons.max_tracking_error is not None or (
            cons.impact_cost is not None and (cons.impact_cost > 0).any()
        )
        chain = ("CLARABEL", "SCS") if conic else (self.solvers or LP_CHAIN)

        def explain() -> list[str]:
            return cons.explain(data.chol) or self._target_conflict(data, cons)

        solver, attempts = solve_chain(prob, what=self.method, chain=chain, explain=explain)
        x = np.asarray(w.value)
        var, cvar = cvar_of(data.scenarios, x, self.confidence)
        info = {"var": var, "confidence": self.confidence}
        return x, cvar + cons.cost(x), solver, attempts, info

    def _target_conflict(self, data: ProblemData, cons: ResolvedConstraints) -> list[str]:
        if self.target_return is None:
            return []
        _, best = attainable_returns(data, cons)
        if self.target_return > best + 1e-12:
            return [f"target_return {self.target_return:.6g} > highest attainable {best:.6g}"]
        return []

    def _check_target(self, data: ProblemData, cons: ResolvedConstraints) -> None:
        from pmkit.errors import InfeasibleError

        found = self._target_conflict(data, cons)
        if found:
            raise InfeasibleError(found)
