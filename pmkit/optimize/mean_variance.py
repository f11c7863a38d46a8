"""Mean-variance optimizers: minimum variance, maximum Sharpe, target return/risk, utility.

All work in annualized units: ``mu`` in fractions per year, ``cov`` in
squared fractions per year (estimated from daily returns and scaled by
``periods_per_year`` unless given). Every `Constraints` field applies to
every method here, except that maximum Sharpe refuses transaction costs (a
cost term breaks the ratio's homogeneity; use `MaximumUtility`).

Problems with only per-asset bounds and an exact budget are solved by an
exact active-set method (`pmkit.optimize._active_set`), whose KKT residuals
are checked; anything else, or an active-set run that does not converge,
goes to cvxpy through the solver chain (`pmkit.optimize._solve`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pmkit.errors import NoSolutionError, ValidationError
from pmkit.optimize._active_set import SharpeUndefinedError, max_sharpe_long_only, solve_box_qp
from pmkit.optimize._inputs import ProblemData
from pmkit.optimize._solve import LP_CHAIN, solve_chain
from pmkit.optimize.base import Optimizer, Solution
from pmkit.optimize.constraints import Constraints, ResolvedConstraints

__all__ = [
    "MaximumSharpe",
    "MaximumUtility",
    "MinimumVariance",
    "TargetReturn",
    "TargetRisk",
    "attainable_returns",
    "homogeneous_ratio",
    "least_quadratic",
]

_KKT_TOL = 1e-9


def _box_qp(
    hess: np.ndarray, q: np.ndarray, cons: ResolvedConstraints
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Active-set answer for a box + exact budget problem, or None to use cvxpy."""
    sol = solve_box_qp(
        hess, q, np.ones(cons.n), cons.budget[0], cons.lower, cons.upper, tol=1e-11
    )
    if not sol.converged or sol.kkt_residual > _KKT_TOL:
        return None
    return sol.x, {"iterations": sol.iterations, "kkt_residual": sol.kkt_residual}


def _risk(w: Any, data: ProblemData) -> Any:
    """``w' cov w`` as a sum of squares of the Cholesky factor (no PSD check in cvxpy)."""
    import cvxpy as cp

    return cp.sum_squares(data.chol.T @ w)


def _explain(cons: ResolvedConstraints, data: ProblemData) -> Any:
    return lambda: cons.explain(data.chol)


class MinimumVariance(Optimizer):
    """Minimum variance: ``min w' cov w + cost(w)`` under the constraints.

    The objective reported is the annualized variance (plus the
    aversion-weighted transaction cost, a fraction of value, when costs are
    set). See `Optimizer` for the parameters.
    """

    method = "minimum variance"

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        w, solver, attempts, info = least_quadratic(data.cov, data.chol, data, cons, self.chain,
                                                    self.method)
        return w, float(w @ data.cov @ w) + cons.cost(w), solver, attempts, info


def least_quadratic(
    hess: np.ndarray,
    factor: np.ndarray,
    data: ProblemData,
    cons: ResolvedConstraints,
    chain: tuple[str, ...],
    what: str,
) -> tuple[np.ndarray, str, dict[str, str], dict[str, Any]]:
    """``argmin w' hess w + cost(w)`` under the constraints (``factor @ factor.T = hess``).

    The tracking-error limit, if any, is always measured with the data's
    covariance, whatever ``hess`` is.
    """
    if cons.is_box_budget:
        fast = _box_qp(2.0 * hess, np.zeros(data.n), cons)
        if fast is not None:
            return fast[0], "active-set", {}, fast[1]
    import cvxpy as cp  # only now: the import costs ~1 s and the fast path needs none

    w = cp.Variable(data.n)
    prob = cp.Problem(
        cp.Minimize(cp.sum_squares(factor.T @ w) + cons.cost_expression(w)),
        cons.cvxpy(w, data.chol),
    )
    solver, attempts = solve_chain(prob, what=what, chain=chain, explain=_explain(cons, data))
    return np.asarray(w.value), solver, attempts, {}


class MaximumSharpe(Optimizer):
    """Maximum Sharpe ratio, exactly, by the Charnes–Cooper transform.

    Maximizes ``(mu - risk_free)' w / sqrt(w' cov w)``. With ``y = kappa w``
    and the normalization ``(mu - risk_free)' y = 1`` this is the convex QP
    ``min y' cov y`` in ``(y, kappa >= 0)`` where every constraint is
    rewritten homogeneously (``lower * kappa <= y``, ``sum(y) = budget *
    kappa``, ``|y - w0 kappa|_1 <= turnover * kappa``, ...), so the weights
    ``w = y / kappa`` satisfy the original constraints exactly.

    Parameters
    ----------
    constraints : Constraints, optional
        Transaction costs are refused (use `MaximumUtility`).
    risk_free : float, default 0
        Annualized risk-free rate (fraction). The result carries it, so its
        `OptimizationResult.sharpe` and ``summary()["sharpe"]`` are the
        ratio maximized here.
    **kwargs
        See `Optimizer`.

    Notes
    -----
    The reported objective is the annualized Sharpe ratio. When no feasible
    portfolio has an expected return above ``risk_free`` the maximum Sharpe
    ratio is undefined and `NoSolutionError` is raised.
    """

    method = "maximum Sharpe"
    needs_mu = True

    def __init__(self, constraints: Constraints | None = None, *, risk_free: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(constraints, **kwargs)
        if not isinstance(risk_free, int | float) or not np.isfinite(risk_free):
            raise ValidationError("risk_free", risk_free, "must be a finite number")
        self.risk_free = float(risk_free)

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        if cons.has_costs:
            raise ValidationError(
                "constraints.costs", "TransactionCosts",
                "maximum Sharpe with costs is not a homogeneous ratio; use MaximumUtility",
            )
        excess = data.mu - self.risk_free
        undefined = (
            "maximum Sharpe ratio is undefined: no portfolio within the constraints has an "
            f"expected return above the risk-free rate {self.risk_free:g}"
        )
        fast = _long_only_ratio(data, cons, excess, undefined)
        if fast is not None:
            w, info = fast
            return w, _sharpe(w, excess, data.cov), "active-set", {}, info
        w, solver, attempts, info = homogeneous_ratio(
            data, cons, excess, chain=self.chain, what=self.method, undefined=undefined
        )
        return w, _sharpe(w, excess, data.cov), solver, attempts, info


def _long_only_ratio(
    data: ProblemData, cons: ResolvedConstraints, numerator: np.ndarray, undefined: str
) -> tuple[np.ndarray, dict[str, Any]] | None:
    """Active-set answer of ``max numerator'w / sqrt(w'cov w)``, long-only box + budget."""
    budget = cons.budget[0]
    if not (cons.is_box_budget and budget > 0 and np.all(cons.lower == 0)):
        return None
    try:
        sol = max_sharpe_long_only(data.cov, numerator, upper=cons.upper / budget)
    except SharpeUndefinedError as exc:
        raise NoSolutionError(f"{undefined} ({exc})") from exc
    if sol is None or not sol.qp.converged or sol.qp.kkt_residual > _KKT_TOL:
        return None
    info = {"iterations": sol.qp.iterations, "kkt_residual": sol.qp.kkt_residual}
    return budget * sol.weights, info


def homogeneous_ratio(
    data: ProblemData,
    cons: ResolvedConstraints,
    numerator: np.ndarray,
    *,
    chain: tuple[str, ...],
    what: str,
    undefined: str,
) -> tuple[np.ndarray, str, dict[str, str], dict[str, Any]]:
    """``argmax numerator'w / sqrt(w' cov w)`` under the constraints, by Charnes–Cooper.

    Solves ``min y' cov y`` s.t. ``numerator'y = 1`` and every constraint in
    homogeneous form in ``(y, kappa >= 0)``; returns ``w = y / kappa``.

    Raises
    ------
    InfeasibleError
        The constraints themselves conflict.
    NoSolutionError
        No feasible portfolio has a positive numerator (``undefined`` says why).
    """
    import cvxpy as cp

    y = cp.Variable(data.n)
    kappa = cp.Variable(nonneg=True)
    prob = cp.Problem(
        cp.Minimize(_risk(y, data)),
        [numerator @ y == 1, *cons.cvxpy(y, data.chol, kappa=kappa)],
    )

    def explain() -> list[str]:
        found = cons.explain(data.chol)
        if found:
            return found
        raise NoSolutionError(undefined)

    solver, attempts = solve_chain(prob, what=what, chain=chain, explain=explain)
    k = float(kappa.value)
    if k <= 1e-12:
        raise NoSolutionError(f"{what} is unbounded under these constraints (scale {k:.3g})")
    return np.asarray(y.value) / k, solver, attempts, {"kappa": k}


def _sharpe(w: np.ndarray, excess: np.ndarray, cov: np.ndarray) -> float:
    return float(excess @ w / np.sqrt(w @ cov @ w))


class TargetReturn(Optimizer):
    """Least variance for a given expected return: ``min w' cov w + cost`` s.t. ``mu' w >= r``.

    Parameters
    ----------
    target_return : float
        Annualized expected return to reach (fraction, e.g. 0.12).
    constraints : Constraints, optional
    **kwargs
        See `Optimizer`.

    Notes
    -----
    When ``r`` is above the highest return the constraints allow,
    `InfeasibleError` says so with that highest return. The objective is
    the annualized variance (plus cost).
    """

    method = "target return"
    needs_mu = True

    def __init__(self, target_return: float, constraints: Constraints | None = None,
                 **kwargs: Any) -> None:
        super().__init__(constraints, **kwargs)
        if not isinstance(target_return, int | float) or not np.isfinite(target_return):
            raise ValidationError("target_return", target_return, "must be a finite number")
        self.target_return = float(target_return)

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        import cvxpy as cp

        w = cp.Variable(data.n)
        prob = cp.Problem(
            cp.Minimize(_risk(w, data) + cons.cost_expression(w)),
            [data.mu @ w >= self.target_return, *cons.cvxpy(w, data.chol)],
        )

        def explain() -> list[str]:
            found = cons.explain(data.chol)
            if found:
                return found
            _, best = attainable_returns(data, cons)
            return [f"target_return {self.target_return:.6g} > highest attainable {best:.6g}"]

        solver, attempts = solve_chain(prob, what=self.method, chain=self.chain, explain=explain)
        x = np.asarray(w.value)
        return x, float(x @ data.cov @ x) + cons.cost(x), solver, attempts, {}


class TargetRisk(Optimizer):
    """Highest expected return for a given volatility: ``max mu' w - cost`` s.t. ``vol <= s``.

    Parameters
    ----------
    target_volatility : float
        Annualized volatility limit (fraction, e.g. 0.15).
    constraints : Constraints, optional
    **kwargs
        See `Optimizer`.

    Notes
    -----
    The objective is the annualized expected return net of the cost. Below
    the least volatility the constraints allow, `InfeasibleError` says so.
    """

    method = "target risk"
    needs_mu = True

    def __init__(self, target_volatility: float, constraints: Constraints | None = None,
                 **kwargs: Any) -> None:
        super().__init__(constraints, **kwargs)
        ok = isinstance(target_volatility, int | float) and np.isfinite(target_volatility)
        if not ok or target_volatility <= 0:
            raise ValidationError("target_volatility", target_volatility, "must be > 0")
        self.target_volatility = float(target_volatility)

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        import cvxpy as cp

        w = cp.Variable(data.n)
        prob = cp.Problem(
            cp.Maximize(data.mu @ w - cons.cost_expression(w)),
            [cp.norm(data.chol.T @ w, 2) <= self.target_volatility, *cons.cvxpy(w, data.chol)],
        )

        def explain() -> list[str]:
            found = cons.explain(data.chol)
            if found:
                return found
            least = MinimumVariance()._solve(data, cons)[0]
            vol = float(np.sqrt(least @ data.cov @ least))
            return [f"target_volatility {self.target_volatility:.6g} < least attainable {vol:.6g}"]

        solver, attempts = solve_chain(prob, what=self.method, chain=self.chain, explain=explain)
        x = np.asarray(w.value)
        return x, float(data.mu @ x) - cons.cost(x), solver, attempts, {}


class MaximumUtility(Optimizer):
    """Maximum quadratic utility: ``max mu' w - (risk_aversion / 2) w' cov w - cost(w)``.

    Parameters
    ----------
    risk_aversion : float, default 1
        ``delta`` > 0, in annualized units (2–4 is typical for an equity investor).
    constraints : Constraints, optional
    **kwargs
        See `Optimizer`.

    Notes
    -----
    The objective is the utility, a fraction per year.
    """

    method = "maximum utility"
    needs_mu = True

    def __init__(self, risk_aversion: float = 1.0, constraints: Constraints | None = None,
                 **kwargs: Any) -> None:
        super().__init__(constraints, **kwargs)
        ok = isinstance(risk_aversion, int | float) and np.isfinite(risk_aversion)
        if not ok or risk_aversion <= 0:
            raise ValidationError("risk_aversion", risk_aversion, "must be > 0")
        self.risk_aversion = float(risk_aversion)

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        delta = self.risk_aversion
        if cons.is_box_budget:
            fast = _box_qp(delta * data.cov, -data.mu, cons)
            if fast is not None:
                w, info = fast
                return w, _utility(w, data, delta), "active-set", {}, info
        import cvxpy as cp
        w = cp.Variable(data.n)
        prob = cp.Problem(
            cp.Maximize(data.mu @ w - 0.5 * delta * _risk(w, data) - cons.cost_expression(w)),
            cons.cvxpy(w, data.chol),
        )
        solver, attempts = solve_chain(
            prob, what=self.method, chain=self.chain, explain=_explain(cons, data)
        )
        x = np.asarray(w.value)
        return x, _utility(x, data, delta) - cons.cost(x), solver, attempts, {}


def _utility(w: np.ndarray, data: ProblemData, delta: float) -> float:
    return float(data.mu @ w - 0.5 * delta * (w @ data.cov @ w))


def attainable_returns(data: ProblemData, cons: ResolvedConstraints) -> tuple[float, float]:
    """Lowest and highest annualized expected return any feasible portfolio has.

    Two linear programs (tracking error, if limited, makes them conic).

    Returns
    -------
    (float, float)
        Fractions per year.
    """
    import cvxpy as cp

    out = []
    for sense in (cp.Minimize, cp.Maximize):
        w = cp.Variable(data.n)
        prob = cp.Problem(sense(data.mu @ w), cons.cvxpy(w, data.chol))
        chain = LP_CHAIN if cons.max_tracking_error is None else ("CLARABEL", "SCS")
        solve_chain(prob, what="attainable return", chain=chain, explain=_explain(cons, data))
        out.append(float(prob.value))
    return out[0], out[1]
