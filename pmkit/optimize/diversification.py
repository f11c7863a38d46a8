"""Diversification-seeking optimizers: maximum diversification ratio and minimum correlation."""

from __future__ import annotations

import numpy as np

from pmkit.optimize._inputs import ProblemData
from pmkit.optimize.base import Optimizer, Solution
from pmkit.optimize.constraints import ResolvedConstraints
from pmkit.optimize.mean_variance import (
    MinimumVariance,
    _long_only_ratio,
    homogeneous_ratio,
    least_quadratic,
)

__all__ = ["MaximumDiversification", "MinimumCorrelation", "diversification_ratio"]


def diversification_ratio(weights: np.ndarray, cov: np.ndarray) -> float:
    """Choueifaty–Coignard diversification ratio ``sigma' w / sqrt(w' cov w)``.

    Parameters
    ----------
    weights : ndarray, shape (N,)
    cov : ndarray, shape (N, N)
        Any consistent units (the ratio is unitless).

    Returns
    -------
    float
        1 for a single asset; larger means more diversification.
    """
    sigma = np.sqrt(np.diag(cov))
    return float(sigma @ weights / np.sqrt(weights @ cov @ weights))


class MaximumDiversification(Optimizer):
    """Maximum diversification ratio (Choueifaty & Coignard 2008).

    Maximizes ``sigma' w / sqrt(w' cov w)`` with ``sigma`` the asset
    volatilities, exactly, by the same Charnes–Cooper transform as
    `MaximumSharpe` (``sigma`` in place of excess returns), so every
    constraint holds. The objective reported is the ratio (unitless, >= 1
    for long-only portfolios). Transaction costs are refused. See
    `pmkit.optimize.Optimizer` for the parameters.
    """

    method = "maximum diversification"

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        from pmkit.errors import ValidationError

        if cons.has_costs:
            raise ValidationError(
                "constraints.costs", "TransactionCosts",
                "maximum diversification with costs is not a homogeneous ratio",
            )
        sigma = np.sqrt(np.diag(data.cov))
        undefined = "maximum diversification is undefined: no feasible portfolio has sigma'w > 0"
        fast = _long_only_ratio(data, cons, sigma, undefined)
        if fast is not None:
            w, info = fast
            return w, diversification_ratio(w, data.cov), "active-set", {}, info
        w, solver, attempts, info = homogeneous_ratio(
            data, cons, sigma, chain=self.chain, what=self.method, undefined=undefined
        )
        return w, diversification_ratio(w, data.cov), solver, attempts, info


class MinimumCorrelation(MinimumVariance):
    """Minimum correlation: minimum variance on the correlation matrix.

    Treats every asset as if it had the same volatility, so only
    correlations drive the weights: ``min w' C w`` with ``C`` the
    correlation matrix of the covariance, under the constraints. The
    objective reported is ``w' C w`` (the portfolio's average pairwise
    correlation structure; unitless). The result's ``cov`` is still the
    covariance, so its volatility is the real one. See
    `pmkit.optimize.Optimizer` for the parameters.
    """

    method = "minimum correlation"

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        sigma = np.sqrt(np.diag(data.cov))
        corr = data.cov / np.outer(sigma, sigma)
        w, solver, attempts, info = least_quadratic(
            corr, data.chol / sigma[:, None], data, cons, self.chain, self.method
        )
        return w, float(w @ corr @ w) + cons.cost(w), solver, attempts, info
