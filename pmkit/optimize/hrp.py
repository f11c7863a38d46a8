"""Hierarchical Risk Parity (López de Prado 2016) with per-asset weight bounds.

The allocation has three steps:

1. **Tree clustering.** Correlations ``rho = cov_ij / (sigma_i sigma_j)`` of
   the covariance give the distance ``d_ij = sqrt((1 - rho_ij) / 2)`` (0 for
   identical, 1 for opposite assets), clustered by `scipy.cluster.hierarchy.linkage`
   (single linkage as in the paper; ward, average, complete or weighted on
   request).
2. **Quasi-diagonalization.** Assets are ordered by the leaves of the
   dendrogram (`scipy.cluster.hierarchy.leaves_list`), so that similar assets
   sit next to each other.
3. **Recursive bisection.** Starting from the whole ordered list with weight
   1, every cluster is cut in the middle of its list (not along the tree:
   that is the published algorithm). Each half's variance is that of its
   inverse-variance portfolio, ``V = u' C u`` with ``u_i ∝ 1 / C_ii``, and
   the left half receives the share ``alpha = 1 - V_left / (V_left + V_right)``
   of the parent's weight.

Bounds: the parent's weight ``W`` is known when it is split, and every
cluster can hold any weight between the sums of its assets' lower and upper
bounds. The left share ``alpha W`` is therefore clipped to

    [max(L_left, W - U_right), min(U_left, W - L_right)]

with ``L``/``U`` the summed lower/upper bounds of a half. This interval is
never empty when ``L_parent <= W <= U_parent``, which holds at the root when
``sum(lower) <= 1 <= sum(upper)`` and then, by construction, at every level,
so every asset ends inside its bounds. It is the split skfolio's
``HierarchicalRiskParity`` computes with two successive clips (the same
projection onto the same interval). Without bounds (``[0, 1]``) nothing is
ever clipped and the weights are those of the paper.

Definitional differences from other implementations (documented so the
tests can match them exactly):

* López de Prado's published code passes the *square* distance matrix to
  ``linkage``, which scipy reads as observation vectors: the tree is then
  built on the Euclidean distance between columns of ``d`` (a "distance of
  distances"). Like PyPortfolioOpt and skfolio, pmkit clusters on ``d``
  itself (the condensed form), which is what the paper's text describes.
* skfolio defaults to ward linkage with optimal leaf ordering; pmkit
  defaults to single linkage without it (the paper). Both are options here.
* PyPortfolioOpt rounds the correlation to 6 decimals when it is given a
  covariance instead of returns; pmkit does not round.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from pmkit.errors import InfeasibleError, ValidationError
from pmkit.optimize._inputs import Estimator, ProblemData
from pmkit.optimize.base import Optimizer, Solution
from pmkit.optimize.constraints import Constraints, ResolvedConstraints

__all__ = ["HierarchicalRiskParity", "hrp_weights"]

LINKAGES: tuple[str, ...] = ("single", "complete", "average", "weighted", "ward")

# Bound sums within this of the budget are accepted (rounding in user input).
_BOUND_TOL = 1e-9


def correlation_distance(cov: np.ndarray) -> np.ndarray:
    """The distance ``sqrt((1 - rho) / 2)`` of the correlations implied by ``cov``.

    Parameters
    ----------
    cov : ndarray, shape (N, N)
        Covariance (any scale); the diagonal must be positive.

    Returns
    -------
    ndarray, shape (N, N)
        Symmetric, zero diagonal, entries in [0, 1].
    """
    sd = np.sqrt(np.diag(cov))
    corr = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
    dist = np.sqrt(np.clip((1.0 - corr) / 2.0, 0.0, 1.0))
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    return dist


def hrp_weights(
    cov: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
    *,
    linkage: str = "single",
    optimal_ordering: bool = False,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hierarchical Risk Parity weights of one covariance matrix (numpy kernel).

    Parameters
    ----------
    cov : ndarray, shape (N, N)
        Covariance of asset returns (any time scale: the weights do not
        depend on it). Symmetric with a positive diagonal.
    lower, upper : ndarray, shape (N,), optional
        Per-asset weight bounds, fractions; default 0 and 1. ``lower >= 0``.
    linkage : {"single", "complete", "average", "weighted", "ward"}, default "single"
        `scipy.cluster.hierarchy.linkage` method.
    optimal_ordering : bool, default False
        Reorder the dendrogram's leaves so that adjacent leaves are as close
        as possible (scipy's ``optimal_ordering``, skfolio's default).
    labels : ndarray, shape (N,), optional
        Asset labels, used in error messages only.

    Returns
    -------
    weights : ndarray, shape (N,)
        Long-only weights summing to 1, within the bounds.
    order : ndarray of int, shape (N,)
        Asset positions in quasi-diagonal (leaf) order.
    link : ndarray, shape (N - 1, 4)
        The scipy linkage matrix.

    Raises
    ------
    ValidationError
        Bad ``linkage``; a non-square or non-finite ``cov``; an asset with zero
        or negative variance (named); negative lower bounds.
    InfeasibleError
        ``sum(lower) > 1`` or ``sum(upper) < 1`` (with the sums).
    """
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    if linkage not in LINKAGES:
        raise ValidationError("linkage", linkage, f"must be one of {LINKAGES}")
    cov = np.asarray(cov, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or cov.shape[0] == 0:
        raise ValidationError("cov", cov.shape, "must be a non-empty square matrix")
    n = cov.shape[0]
    names = np.arange(n) if labels is None else np.asarray(labels)
    if not np.isfinite(cov).all():
        raise ValidationError("cov", "non-finite entries", "covariance must be finite")
    var = np.diag(cov).copy()
    if (var <= 0).any():
        i = int(np.argmax(var <= 0))
        raise ValidationError(
            f"cov[{names[i]}, {names[i]}]", float(var[i]), "HRP needs a positive variance"
        )
    lo = np.zeros(n) if lower is None else np.asarray(lower, dtype=np.float64)
    # An upper bound above the budget can never bind.
    hi = np.ones(n) if upper is None else np.minimum(np.asarray(upper, dtype=np.float64), 1.0)
    if (lo < 0).any():
        i = int(np.argmax(lo < 0))
        raise ValidationError(f"lower[{names[i]}]", float(lo[i]), "HRP is long-only: must be >= 0")
    conflicts = []
    if lo.sum() > 1.0 + _BOUND_TOL:
        conflicts.append(f"asset minimums sum to {lo.sum():.6g} > budget 1")
    if hi.sum() < 1.0 - _BOUND_TOL:
        conflicts.append(f"asset maximums sum to {hi.sum():.6g} < budget 1")
    if conflicts:
        raise InfeasibleError(conflicts)

    if n == 1:
        return np.ones(1), np.zeros(1, dtype=int), np.zeros((0, 4))
    condensed = squareform(correlation_distance(cov), checks=False)
    link = hierarchy.linkage(condensed, method=linkage, optimal_ordering=optimal_ordering)
    order = hierarchy.leaves_list(link)
    return _bisect(cov, var, order, lo, hi), order, link


def _bisect(
    cov: np.ndarray, var: np.ndarray, order: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Recursive bisection of ``order`` with the bound-clipped split (module docstring)."""
    # Prefix sums of the bounds in leaf order give any contiguous cluster's
    # least and most weight in O(1).
    cum_lo = np.concatenate([[0.0], np.cumsum(lo[order])])
    cum_hi = np.concatenate([[0.0], np.cumsum(hi[order])])

    def cluster_variance(ids: np.ndarray) -> float:
        u = 1.0 / var[ids]
        u /= u.sum()
        return float(u @ cov[np.ix_(ids, ids)] @ u)

    weights = np.zeros(len(order))
    stack: list[tuple[int, int, float]] = [(0, len(order), 1.0)]  # [start, stop) and weight
    while stack:
        start, stop, total = stack.pop()
        if stop - start == 1:
            weights[order[start]] = total
            continue
        mid = start + (stop - start) // 2
        v_left = cluster_variance(order[start:mid])
        v_right = cluster_variance(order[mid:stop])
        alpha = 1.0 - v_left / (v_left + v_right)
        floor = max(cum_lo[mid] - cum_lo[start], total - (cum_hi[stop] - cum_hi[mid]))
        cap = min(cum_hi[mid] - cum_hi[start], total - (cum_lo[stop] - cum_lo[mid]))
        left = min(max(alpha * total, floor), cap)
        stack.append((start, mid, left))
        stack.append((mid, stop, total - left))
    return weights


class HierarchicalRiskParity(Optimizer):
    """Hierarchical Risk Parity allocation, long-only, fully invested, bounds honoured.

    See the module docstring for the algorithm, how bounds enter the
    bisection, and how it differs from the paper's code, PyPortfolioOpt and
    skfolio. The result has ``objective`` NaN (HRP optimizes nothing) and
    ``solver="heuristic"``; ``info`` holds ``order`` (asset labels in leaf
    order), ``linkage_matrix`` (scipy's ``(N-1, 4)`` array), ``linkage``,
    ``optimal_ordering`` and ``distance``.

    Parameters
    ----------
    linkage : {"single", "complete", "average", "weighted", "ward"}, default "single"
        Linkage of the tree clustering on the correlation distance
        ``sqrt((1 - rho) / 2)``.
    optimal_ordering : bool, default False
        Optimal leaf ordering of the dendrogram (skfolio's default is True).
    constraints : Constraints, optional
        Only per-asset ``lower``/``upper`` bounds (fractions, ``lower >= 0``)
        with ``budget=1`` are supported; any other constraint raises
        `ValidationError` (field ``"constraints"``, value naming it).
    covariance, periods_per_year, max_condition
        As `pmkit.optimize.base.Optimizer`. Only the covariance drives the
        weights (its time scale does not matter). When ``returns`` are given,
        ``mu`` is also estimated (``expected_returns``), for reporting only.

    Examples
    --------
    >>> res = HierarchicalRiskParity(constraints=Constraints(upper=0.1)).fit(returns)
    ... # doctest: +SKIP
    """

    method = "hierarchical risk parity"
    needs_cov = True

    def __init__(
        self,
        linkage: str = "single",
        optimal_ordering: bool = False,
        *,
        constraints: Constraints | None = None,
        expected_returns: Estimator = "mean",
        covariance: Estimator = "sample",
        periods_per_year: int = 252,
        max_condition: float = 1e10,
    ) -> None:
        if linkage not in LINKAGES:
            raise ValidationError("linkage", linkage, f"must be one of {LINKAGES}")
        super().__init__(
            constraints,
            expected_returns=expected_returns,
            covariance=covariance,
            periods_per_year=periods_per_year,
            max_condition=max_condition,
        )
        self.linkage = linkage
        self.optimal_ordering = bool(optimal_ordering)

    def _wants_mu(self, returns: xr.DataArray | None) -> bool:
        """``mu`` is only reported, so it is estimated whenever returns are given."""
        return returns is not None

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        _check_supported(cons)
        w, order, link = hrp_weights(
            data.cov,
            cons.lower,
            cons.upper,
            linkage=self.linkage,
            optimal_ordering=self.optimal_ordering,
            labels=data.assets,
        )
        info = {
            "linkage": self.linkage,
            "optimal_ordering": self.optimal_ordering,
            "distance": "sqrt((1 - rho) / 2)",
            "order": data.assets[order].tolist(),
            "linkage_matrix": link,
        }
        return w, float("nan"), "heuristic", {}, info

    def __repr__(self) -> str:
        return (
            f"HierarchicalRiskParity(linkage={self.linkage!r}, "
            f"optimal_ordering={self.optimal_ordering}, constraints={self.constraints!r})"
        )


def _check_supported(resolved: ResolvedConstraints) -> None:
    """Refuse constraints the bisection cannot honour, naming the first one found."""
    reason = "hierarchical risk parity supports only per-asset bounds"
    if resolved.budget != (1.0, 1.0):
        raise ValidationError("constraints", f"budget={resolved.budget}", reason)
    checks = {
        "max_gross": resolved.max_gross is not None,
        "group_bounds/linear": resolved.rows.shape[0] > 0,
        "max_turnover": resolved.max_turnover is not None,
        "costs": resolved.has_costs,
        "max_tracking_error": resolved.max_tracking_error is not None,
    }
    for name, present in checks.items():
        if present:
            raise ValidationError("constraints", name, reason)
    if (resolved.lower < 0).any():
        raise ValidationError(
            "constraints", "long_only=False", reason + " with long-only (non-negative) weights"
        )
