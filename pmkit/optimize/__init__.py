"""Portfolio optimization: estimators, methods, constraints, diagnostics and batch solvers.

Every optimizer is a small object with its parameters (and a `Constraints`)
in the constructor and ``fit(returns)`` or ``fit(mu=..., cov=...)`` returning
an `OptimizationResult`. Units are annualized fractions throughout. cvxpy is
imported only when a problem needs it; see the README's optimization section
for the solver chain and the methods' definitions.
"""

from __future__ import annotations

from pmkit.optimize.allocation import (
    ALLOCATION_METHODS,
    GroupAllocation,
    allocate,
    allocate_group,
    member_returns,
    to_allocation,
)
from pmkit.optimize.base import Optimizer
from pmkit.optimize.batch import BatchResult, FactorCovariance, optimal_objective, optimize_batch
from pmkit.optimize.black_litterman import (
    BlackLitterman,
    BlackLittermanResult,
    View,
    he_litterman_omega,
    idzorek_omega,
    implied_returns,
    market_implied_risk_aversion,
    unconstrained_weights,
    view_matrices,
)
from pmkit.optimize.constraints import (
    Constraints,
    LinearConstraint,
    ResolvedConstraints,
    TransactionCosts,
)
from pmkit.optimize.cvar import MeanCVaR
from pmkit.optimize.diversification import (
    MaximumDiversification,
    MinimumCorrelation,
    diversification_ratio,
)
from pmkit.optimize.estimators import correlation, covariance, expected_returns
from pmkit.optimize.frontier import EfficientFrontier, efficient_frontier
from pmkit.optimize.hrp import HierarchicalRiskParity, hrp_weights
from pmkit.optimize.kelly import Kelly
from pmkit.optimize.mean_variance import (
    MaximumSharpe,
    MaximumUtility,
    MinimumVariance,
    TargetReturn,
    TargetRisk,
)
from pmkit.optimize.mixed import Mixed
from pmkit.optimize.performance_based import PerformanceBased, performance_scores
from pmkit.optimize.result import OptimizationResult
from pmkit.optimize.risk_parity import EqualRiskContribution, RiskBudgeting

__all__ = [
    "ALLOCATION_METHODS",
    "BatchResult",
    "BlackLitterman",
    "BlackLittermanResult",
    "Constraints",
    "EfficientFrontier",
    "EqualRiskContribution",
    "FactorCovariance",
    "GroupAllocation",
    "HierarchicalRiskParity",
    "Kelly",
    "LinearConstraint",
    "MaximumDiversification",
    "MaximumSharpe",
    "MaximumUtility",
    "MeanCVaR",
    "MinimumCorrelation",
    "MinimumVariance",
    "Mixed",
    "OptimizationResult",
    "Optimizer",
    "PerformanceBased",
    "ResolvedConstraints",
    "RiskBudgeting",
    "TargetReturn",
    "TargetRisk",
    "TransactionCosts",
    "View",
    "allocate",
    "allocate_group",
    "correlation",
    "covariance",
    "diversification_ratio",
    "efficient_frontier",
    "expected_returns",
    "he_litterman_omega",
    "hrp_weights",
    "idzorek_omega",
    "implied_returns",
    "market_implied_risk_aversion",
    "member_returns",
    "optimal_objective",
    "optimize_batch",
    "performance_scores",
    "to_allocation",
    "unconstrained_weights",
    "view_matrices",
]
