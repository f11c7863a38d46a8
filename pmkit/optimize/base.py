"""The shared shape of every optimizer: parameters in the constructor, `fit` to data."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import xarray as xr

from pmkit.errors import InfeasibleError, ValidationError
from pmkit.optimize._inputs import Estimator, ProblemData, prepare
from pmkit.optimize._solve import QP_CHAIN, needs_cvxpy
from pmkit.optimize._threads import blas_threads
from pmkit.optimize.constraints import Constraints, ResolvedConstraints
from pmkit.optimize.result import OptimizationResult

__all__ = ["Optimizer", "Solution"]

Solution = tuple[np.ndarray, float, str, dict[str, str], dict[str, Any]]
"""``(weights, objective, solver, attempts, info)`` returned by `Optimizer._solve`."""


class Optimizer:
    """Base of the optimizers in `pmkit.optimize` (skfolio-style estimator objects).

    Parameters
    ----------
    constraints : Constraints, optional
        Default: long-only, fully invested, weights in [0, 1].
    expected_returns : str or callable, default "mean"
        How ``mu`` is estimated from returns when not given: a method of
        `pmkit.optimize.estimators.expected_returns` (``"mean"``, ``"ewma"``,
        ``"capm"``) or a function ``returns -> mu(asset)`` (annualized).
    covariance : str or callable, default "sample"
        ``"sample"``, ``"ledoit_wolf"`` or ``"ewma"`` (`pmkit.risk.covariance_matrix`,
        annualized here) or a function ``returns -> cov(asset, asset_j)`` (annualized).
    periods_per_year : int, default 252
        Periods of the return data per year, for annualization.
    solvers : sequence of str, optional
        cvxpy solver chain, tried in order (default CLARABEL, OSQP, SCS; LPs
        start with HIGHS).
    max_condition : float, default 1e10
        Covariance condition numbers above this are repaired with a warning.

    Attributes
    ----------
    result_ : OptimizationResult
        The last fit's result.
    weights_ : xarray.DataArray
        ``result_.weights``.
    """

    method: ClassVar[str] = "optimizer"
    #: Annualized risk-free rate (fraction) the results' Sharpe ratios use; optimizers
    #: taking a ``risk_free`` parameter set it, so what they optimize is what they report.
    risk_free: float = 0.0
    needs_mu: ClassVar[bool] = False
    needs_cov: ClassVar[bool] = True
    needs_scenarios: ClassVar[bool] = False

    def __init__(
        self,
        constraints: Constraints | None = None,
        *,
        expected_returns: Estimator = "mean",
        covariance: Estimator = "sample",
        periods_per_year: int = 252,
        solvers: tuple[str, ...] | None = None,
        max_condition: float = 1e10,
    ) -> None:
        if constraints is not None and not isinstance(constraints, Constraints):
            raise ValidationError("constraints", type(constraints).__name__, "must be Constraints")
        self.constraints = constraints if constraints is not None else Constraints()
        self.expected_returns = expected_returns
        self.covariance = covariance
        self.periods_per_year = periods_per_year
        self.solvers = tuple(solvers) if solvers is not None else None
        if not (isinstance(max_condition, int | float) and max_condition > 1):
            raise ValidationError("max_condition", max_condition, "must be a number > 1")
        self.max_condition = float(max_condition)

    def fit(
        self,
        returns: xr.DataArray | None = None,
        *,
        mu: xr.DataArray | None = None,
        cov: xr.DataArray | None = None,
    ) -> OptimizationResult:
        """Optimize on ``returns`` (estimating what is needed) or on given ``mu``/``cov``.

        Parameters
        ----------
        returns : xarray.DataArray, optional
            ``(asset, time)`` per-period simple returns (fractions), NaN before listing.
        mu : xarray.DataArray, optional
            ``(asset)`` annualized expected returns, e.g. a Black–Litterman posterior.
        cov : xarray.DataArray, optional
            ``(asset, asset_j)`` annualized covariance.

        Returns
        -------
        OptimizationResult
            Also stored as ``self.result_``.

        Raises
        ------
        InfeasibleError
            The constraints admit no portfolio; the message names the conflict.
        SolverError
            Every solver of the chain failed; the statuses are attached.
        ValidationError
            Bad inputs or parameters (named).
        MissingDependencyError
            The problem needs cvxpy and the ``optimize`` extra is not installed.
        """
        with blas_threads():
            data = self.prepare(returns, mu, cov)
            cons = self.constraints.resolve(data.assets, data.coords)
            conflicts = cons.diagnose()
            if conflicts:
                raise InfeasibleError(conflicts)
            with needs_cvxpy():
                w, objective, solver, attempts, info = self._solve(data, cons)
        info = {**data.info, **info}
        result = OptimizationResult(
            weights=data.weights(w),
            method=self.method,
            objective=float(objective),
            solver=solver,
            mu=data.labelled_mu(),
            cov=data.labelled_cov(),
            attempts=attempts,
            info=info,
            risk_free=self.risk_free,
        )
        self.result_ = result
        self.weights_ = result.weights
        return result

    def prepare(
        self,
        returns: xr.DataArray | None,
        mu: xr.DataArray | None = None,
        cov: xr.DataArray | None = None,
    ) -> ProblemData:
        """The aligned, annualized inputs this optimizer would solve with."""
        return prepare(
            returns,
            mu,
            cov,
            need_mu=self._wants_mu(returns),
            need_cov=self.needs_cov,
            need_scenarios=self.needs_scenarios,
            expected_returns=self.expected_returns,
            covariance=self.covariance,
            periods_per_year=self.periods_per_year,
            max_condition=self.max_condition,
        )

    def _wants_mu(self, returns: xr.DataArray | None) -> bool:
        """Whether to estimate ``mu``: the method needs it (subclasses may add reporting)."""
        return self.needs_mu

    @property
    def chain(self) -> tuple[str, ...]:
        """The solver fallback chain in use."""
        return self.solvers or QP_CHAIN

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.constraints!r})"
