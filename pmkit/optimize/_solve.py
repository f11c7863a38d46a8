"""Solving cvxpy problems through a fallback chain, and explaining infeasibility.

The chain (documented in the README) is CLARABEL → OSQP → SCS for quadratic
and conic problems and HIGHS → CLARABEL → SCS for linear programs. A solver
is skipped when it is not installed or cannot take the problem class (OSQP
takes no cones); its status is kept either way. A status of ``optimal`` ends
the chain; ``optimal_inaccurate`` and errors move on to the next solver;
``infeasible`` is trusted (the interior-point certificate is reliable) and
raises `InfeasibleError` with the conflicts found by
`ResolvedConstraints.diagnose` or, when the bounds alone explain nothing,
by an elastic relaxation of each constraint family. When every solver fails,
`SolverError` carries every status.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from pmkit.errors import InfeasibleError, MissingDependencyError, SolverError

__all__ = ["LP_CHAIN", "QP_CHAIN", "elastic_conflicts", "needs_cvxpy", "solve_chain"]

QP_CHAIN: tuple[str, ...] = ("CLARABEL", "OSQP", "SCS")
LP_CHAIN: tuple[str, ...] = ("HIGHS", "CLARABEL", "SCS")


@contextlib.contextmanager
def needs_cvxpy() -> Iterator[None]:
    """Turn a missing cvxpy into `MissingDependencyError` naming the ``optimize`` extra.

    cvxpy is imported only by the problems that need it (the closed-form and
    active-set paths run on the core install), so the refusal comes at solve time.

    Raises
    ------
    MissingDependencyError
        cvxpy is not installed (the ``optimize`` extra).
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name != "cvxpy":
            raise
        raise MissingDependencyError("cvxpy", "optimize") from exc


# OSQP's defaults stop at 1e-3 accuracy, far too loose for portfolio weights.
_SOLVER_OPTIONS: dict[str, dict[str, Any]] = {
    "OSQP": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iter": 200_000, "polishing": True},
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
}


def solve_chain(
    problem: Any,
    *,
    what: str,
    chain: Sequence[str] = QP_CHAIN,
    explain: Callable[[], list[str]] | None = None,
) -> tuple[str, dict[str, str]]:
    """Solve ``problem`` with the first solver of ``chain`` that reports optimal.

    Parameters
    ----------
    problem : cvxpy.Problem
    what : str
        Name of the problem for messages, e.g. ``"minimum variance"``.
    chain : sequence of str
        cvxpy solver names in the order to try.
    explain : callable, optional
        Returns the list of conflicts when a solver reports infeasibility.

    Returns
    -------
    solver : str
        The solver whose answer is in the problem's variables.
    attempts : dict of str to str
        Every solver tried, with its status.

    Raises
    ------
    InfeasibleError
        A solver proved the problem infeasible.
    SolverError
        No solver of the chain produced an optimal answer.
    """
    import cvxpy as cp

    installed = _installed_solvers()
    attempts: dict[str, str] = {}
    for name in chain:
        if name not in installed:
            attempts[name] = "not installed"
            continue
        try:
            # cvxpy's bound propagation multiplies 0 * inf for free variables: harmless noise.
            with np.errstate(invalid="ignore"):
                problem.solve(solver=name, **_SOLVER_OPTIONS.get(name, {}))
        except (cp.error.SolverError, cp.error.DCPError, ValueError) as exc:
            attempts[name] = f"error: {str(exc).splitlines()[0][:160]}"
            continue
        status = str(problem.status)
        attempts[name] = status
        if status == cp.OPTIMAL:
            return name, attempts
        if status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
            conflicts = explain() if explain is not None else []
            proof = f"{what}: {name} proved the constraints infeasible"
            raise InfeasibleError(conflicts or [proof])
    raise SolverError(attempts, what)


def elastic_conflicts(
    n: int,
    build: Callable[[Any, Any], dict[str, list[Any]]],
    tol: float = 1e-7,
) -> list[str]:
    """Which constraint families need slack to make the problem feasible.

    Solves ``min sum(slack)`` where every family of constraints built by
    ``build(w, slack_for)`` may be violated by its own non-negative slack.

    Parameters
    ----------
    n : int
        Number of assets.
    build : callable
        ``build(w, slack_for) -> {family: [constraints]}`` where
        ``slack_for(family)`` returns that family's slack variable (a cvxpy
        scalar, >= 0) to loosen its constraints by.
    tol : float
        Slacks below this count as zero.

    Returns
    -------
    list of str
        ``"<family> must be relaxed by <slack>"`` for each family with slack,
        largest first; empty when the relaxation itself fails.
    """
    import cvxpy as cp

    w = cp.Variable(n)
    slacks: dict[str, Any] = {}

    def slack_for(family: str) -> Any:
        if family not in slacks:
            slacks[family] = cp.Variable(nonneg=True, name=family)
        return slacks[family]

    families = build(w, slack_for)
    cons = [c for group in families.values() for c in group]
    prob = cp.Problem(cp.Minimize(cp.sum(cp.hstack(list(slacks.values())))), cons)
    try:
        prob.solve(solver="CLARABEL")
    except cp.error.SolverError:
        return []
    if prob.status != cp.OPTIMAL:
        return []
    found = sorted(
        ((float(v.value), k) for k, v in slacks.items() if v.value is not None and v.value > tol),
        reverse=True,
    )
    return [f"{k} must be relaxed by {v:.6g} (least total relaxation)" for v, k in found]


@functools.cache
def _installed_solvers() -> frozenset[str]:
    # cvxpy probes every solver's package on each call (an import lookup apiece): a
    # frontier of 20 points asked 20 times, and a busy server felt it
    import cvxpy as cp

    return frozenset(cp.installed_solvers())
