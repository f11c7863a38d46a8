"""Portfolio optimization: estimators, methods, constraints, diagnostics and batch solvers.

Every optimizer is a small object with its parameters (and a `Constraints`)
in the constructor and ``fit(returns)`` or ``fit(mu=..., cov=...)`` returning
an `OptimizationResult`. Units are annualized fractions throughout. cvxpy is
imported only when a problem needs it; see the README's optimization section
for the solver chain and the methods' definitions.
"""

from __future__ import annotations

from pmkit.optimize.base import Optimizer
from pmkit.optimize.constraints import (
    Constraints,
    LinearConstraint,
    ResolvedConstraints,
    TransactionCosts,
)
from pmkit.optimize.mean_variance import (
    MaximumSharpe,
    MaximumUtility,
    MinimumVariance,
    TargetReturn,
    TargetRisk,
)
from pmkit.optimize.result import OptimizationResult

__all__ = [
    "Constraints",
    "LinearConstraint",
    "MaximumSharpe",
    "MaximumUtility",
    "MinimumVariance",
    "OptimizationResult",
    "Optimizer",
    "ResolvedConstraints",
    "TargetReturn",
    "TargetRisk",
    "TransactionCosts",
]
