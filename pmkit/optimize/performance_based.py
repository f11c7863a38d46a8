"""Weights from the track records of assets or strategies: win rate, Sharpe and profit factor.

For each series ``i`` with ``n_i`` observed per-period returns ``r_t``
(NaN periods are skipped, so ragged histories each use their own
observations):

* win rate ``p_i = #{t: r_t > 0} / n_i`` (a zero return is not a win);
* annualized Sharpe ratio ``S_i = sqrt(P) * mean(r) / std(r)`` with
  ``std`` the sample standard deviation (``ddof=1``), ``P`` periods per year
  and a zero risk-free rate. A constant series has ``S = 0`` if it is
  constantly 0, ``-inf`` if constantly negative, and is refused if
  constantly positive (its Sharpe ratio would be infinite);
* profit factor ``PF_i = sum_{r_t > 0} r_t / |sum_{r_t < 0} r_t|`` (gains over
  losses): ``inf`` when there is no losing period, NaN when every return is 0.

The score is

    score_i = max(S_i, 0) * (p_i / 0.5) * min(PF_i, cap)

(``cap`` = ``profit_factor_cap``, default 10, which also replaces an
infinite profit factor). Each factor is unit-free and 1 or more for a
series with a positive edge at a coin-flip win rate and break-even payoff:
the Sharpe ratio scales the score, a win rate above one half and a profit
factor above one raise it multiplicatively. ``S_i > 0``, ``PF_i > 1`` and a
positive mean return are the same condition (``sum(r) > 0``), so a series
with a non-positive Sharpe ratio (equivalently ``PF <= 1``) scores exactly 0.

Monotonicity: adding a constant ``c >= 0`` to every return of a series, or
turning one of its losses into an equal gain, weakly raises all three
metrics (for the Sharpe ratio under a sign change: when its mean is
non-negative; a negative-mean series scores 0 anyway), hence its score, hence
its weight (below).

Weights: with target invested fraction ``B`` (the budget) and per-asset
bounds ``[l_i, u_i]``,

    w_i = clip(lambda * score_i, l_i, u_i)

with the unique ``lambda`` making ``sum(w) = B``, found exactly from the
breakpoints of this piecewise-linear function (no iteration tolerance). This
is what "cap at the bound and redistribute the excess pro rata" converges
to, and it is the bounded weight vector closest to the score-proportional
one ``t`` in the chi-square sense ``sum((w_i - t_i)^2 / t_i)``. Series with
score 0 stay at their lower bound (0 by default). A budget range
``(lo, hi)`` invests ``hi`` if the positive-score series can hold it within
their upper bounds, otherwise as much as they can (at least ``lo``).

If every score is 0 the method raises `NoSolutionError` (default), or with
``if_all_zero="equal"`` uses equal scores (equal weight within the bounds).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import xarray as xr

from pmkit.errors import InfeasibleError, InsufficientDataError, NoSolutionError, ValidationError
from pmkit.optimize._inputs import ProblemData, prepare
from pmkit.optimize.base import Optimizer
from pmkit.optimize.constraints import Constraints, ResolvedConstraints
from pmkit.optimize.estimators import _returns_values
from pmkit.optimize.result import OptimizationResult

__all__ = ["PerformanceBased", "performance_scores", "water_fill"]

_BOUND_TOL = 1e-9


def _check_params(
    min_observations: object, profit_factor_cap: object, periods_per_year: object
) -> None:
    if isinstance(min_observations, bool) or not isinstance(min_observations, int | np.integer):
        raise ValidationError("min_observations", min_observations, "must be an integer >= 2")
    if min_observations < 2:
        raise ValidationError("min_observations", min_observations, "must be an integer >= 2")
    ok = isinstance(profit_factor_cap, int | float | np.integer | np.floating)
    if isinstance(profit_factor_cap, bool) or not ok or not 1.0 < profit_factor_cap < np.inf:
        raise ValidationError("profit_factor_cap", profit_factor_cap, "must be a finite number > 1")
    if isinstance(periods_per_year, bool) or not isinstance(periods_per_year, int | np.integer):
        raise ValidationError("periods_per_year", periods_per_year, "must be a positive integer")
    if periods_per_year < 1:
        raise ValidationError("periods_per_year", periods_per_year, "must be a positive integer")


def performance_scores(
    returns: xr.DataArray,
    *,
    periods_per_year: int = 252,
    profit_factor_cap: float = 10.0,
    min_observations: int = 20,
) -> xr.Dataset:
    """Win rate, Sharpe ratio, profit factor and score of each return series.

    Definitions in the module docstring.

    Parameters
    ----------
    returns : xarray.DataArray
        ``(asset, time)`` per-period simple returns (fractions) of assets or
        strategies; NaN where a series is not observed (skipped, never filled).
    periods_per_year : int, default 252
        Annualization of the Sharpe ratio.
    profit_factor_cap : float, default 10
        Cap on the profit factor inside the score (finite, > 1).
    min_observations : int, default 20
        Fewest observations accepted per series (at least 2).

    Returns
    -------
    xarray.Dataset
        On ``asset``: ``n_observations`` (int), ``win_rate`` (fraction),
        ``sharpe`` (annualized), ``profit_factor`` (uncapped: may be inf or
        NaN), ``mean_return`` (annualized arithmetic mean, fraction per year)
        and ``score``.

    Raises
    ------
    ValidationError
        Bad parameters; wrong dims; infinite returns; a series whose returns
        are all equal and positive (infinite Sharpe ratio).
    InsufficientDataError
        A series with fewer than ``min_observations`` observations (named).
    """
    _check_params(min_observations, profit_factor_cap, periods_per_year)
    values, assets, _ = _returns_values(returns)
    observed = ~np.isnan(values)
    n = observed.sum(axis=1)
    short = n < min_observations
    if short.any():
        i = int(np.argmax(short))
        raise InsufficientDataError(
            f"returns[{assets[i]}]", int(n[i]), f"observations; need at least {min_observations}"
        )
    x = np.where(observed, values, 0.0)  # zeros are masked out of every sum below
    mean = x.sum(axis=1) / n
    dev = np.where(observed, values - mean[:, None], 0.0)
    std = np.sqrt((dev * dev).sum(axis=1) / (n - 1))
    # Exact constancy (not std == 0, which rounding can miss for constant series).
    big = np.where(observed, values, -np.inf).max(axis=1)
    small = np.where(observed, values, np.inf).min(axis=1)
    constant = big == small
    bad = constant & (big > 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(
            f"returns[{assets[i]}]",
            float(big[i]),
            "every return is this same positive value: the Sharpe ratio is infinite",
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(
            constant, np.where(big < 0, -np.inf, 0.0), np.sqrt(periods_per_year) * mean / std
        )
        gains = np.where(x > 0, x, 0.0).sum(axis=1)
        losses = np.where(x < 0, -x, 0.0).sum(axis=1)
        profit_factor = gains / losses  # inf without losses, NaN when all zero
    win_rate = (x > 0).sum(axis=1) / n
    positive = sharpe > 0
    capped = np.minimum(np.where(positive, profit_factor, 0.0), profit_factor_cap)
    score = np.where(positive, sharpe * (win_rate / 0.5) * capped, 0.0)

    coords = {"asset": assets}
    for key, coord in returns.coords.items():
        if key not in ("asset", "time") and coord.dims == ("asset",):
            coords[key] = ("asset", np.asarray(coord.values))
    out = xr.Dataset(
        {
            "n_observations": ("asset", n.astype(np.int64)),
            "win_rate": ("asset", win_rate),
            "sharpe": ("asset", sharpe),
            "profit_factor": ("asset", profit_factor),
            "mean_return": ("asset", mean * periods_per_year),
            "score": ("asset", score),
        },
        coords=coords,
    )
    out.attrs = {"periods_per_year": int(periods_per_year), "profit_factor_cap": profit_factor_cap}
    return out


def water_fill(
    scores: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    budget: float | tuple[float, float] = 1.0,
) -> np.ndarray:
    """Score-proportional weights within bounds: ``w_i = clip(lambda * s_i, l_i, u_i)``.

    Parameters
    ----------
    scores : ndarray, shape (N,)
        Non-negative scores; score 0 keeps an asset at its lower bound.
    lower, upper : ndarray, shape (N,)
        Per-asset bounds (fractions), ``0 <= lower <= upper``.
    budget : float or (float, float), default 1
        Invested fraction ``sum(w)``, or a range: the upper end is invested
        when the positive-score assets can hold it, else as much as they can.

    Returns
    -------
    ndarray, shape (N,)
        Weights with ``lambda`` solved exactly from the breakpoints.

    Raises
    ------
    InfeasibleError
        The lower bounds exceed the budget, or the positive-score assets
        cannot reach it within their upper bounds (with the sums).
    """
    s = np.asarray(scores, dtype=np.float64)
    lo = np.asarray(lower, dtype=np.float64)
    hi = np.asarray(upper, dtype=np.float64)
    b_lo, b_hi = (float(budget), float(budget)) if np.ndim(budget) == 0 else map(float, budget)
    pos = s > 0
    floor_sum = float(lo.sum())
    reach = float(hi[pos].sum() + lo[~pos].sum())
    if floor_sum > b_hi + _BOUND_TOL:
        raise InfeasibleError(f"asset minimums sum to {floor_sum:.6g} > budget {b_hi:.6g}")
    if reach < b_lo - _BOUND_TOL:
        raise InfeasibleError(
            f"the {int(pos.sum())} series with a positive score can hold at most "
            f"{hi[pos].sum():.6g} within their upper bounds and the others stay at their "
            f"lower bounds ({lo[~pos].sum():.6g}): {reach:.6g} < budget {b_lo:.6g}"
        )
    target = min(b_hi, reach)
    if target <= floor_sum:
        return lo.copy()
    if target >= reach:
        return np.where(pos, hi, lo)

    sp = s[pos]
    breaks = np.unique(np.concatenate([lo[pos] / sp, hi[pos] / sp]))
    # Total weight at each breakpoint; nondecreasing in lambda.
    totals = np.clip(breaks[:, None] * sp[None, :], lo[pos], hi[pos]).sum(axis=1) + lo[~pos].sum()
    k = int(np.searchsorted(totals, target))
    if k < len(breaks) and totals[k] == target:
        lam = breaks[k]
    else:
        left = breaks[k - 1] if k > 0 else 0.0
        mid = 0.5 * (left + breaks[k])
        at_mid = np.clip(mid * sp, lo[pos], hi[pos])
        free = (at_mid > lo[pos]) & (at_mid < hi[pos])
        fixed = float(at_mid[~free].sum() + lo[~pos].sum())
        lam = (target - fixed) / float(sp[free].sum())
    return np.where(pos, np.clip(lam * s, lo, hi), lo)


class PerformanceBased(Optimizer):
    """Weights proportional to a track-record score, within per-asset bounds.

    The metrics, the score and the bounded allocation are defined in the
    module docstring. ``fit`` needs ``returns`` (the track records); given
    ``mu``/``cov`` are only carried to the result for reporting. Without
    ``mu``, the result's ``mu`` is each series' annualized mean return over
    its own observations; ``cov`` is None unless given (ragged strategy
    histories need not overlap enough for one). The result has objective
    NaN, ``solver="heuristic"`` and ``info["metrics"]`` (the
    `performance_scores` dataset), ``info["fallback"]`` (True when every
    score was 0 and ``if_all_zero="equal"`` applied).

    Parameters
    ----------
    min_observations : int, default 20
        Fewest observations per series.
    profit_factor_cap : float, default 10
        Cap on the profit factor in the score (also replaces ``inf``).
    if_all_zero : {"raise", "equal"}, default "raise"
        What to do when no series has a positive score: raise
        `NoSolutionError`, or give equal weight (within the bounds).
    constraints : Constraints, optional
        Per-asset ``lower``/``upper`` bounds (``lower >= 0``) and the budget
        (a number or a range). Other constraints raise `ValidationError`.
    periods_per_year : int, default 252
        For the annualized Sharpe ratio and mean.
    """

    method = "performance based"
    needs_cov = False

    def __init__(
        self,
        min_observations: int = 20,
        profit_factor_cap: float = 10.0,
        if_all_zero: Literal["raise", "equal"] = "raise",
        *,
        constraints: Constraints | None = None,
        periods_per_year: int = 252,
    ) -> None:
        _check_params(min_observations, profit_factor_cap, periods_per_year)
        if if_all_zero not in ("raise", "equal"):
            raise ValidationError("if_all_zero", if_all_zero, "must be 'raise' or 'equal'")
        super().__init__(constraints, periods_per_year=periods_per_year)
        self.min_observations = int(min_observations)
        self.profit_factor_cap = float(profit_factor_cap)
        self.if_all_zero = if_all_zero

    def fit(
        self,
        returns: xr.DataArray | None = None,
        *,
        mu: xr.DataArray | None = None,
        cov: xr.DataArray | None = None,
    ) -> OptimizationResult:
        """Score the series of ``returns`` and allocate in proportion, within the bounds.

        Parameters
        ----------
        returns : xarray.DataArray
            ``(asset, time)`` per-period simple returns (fractions), NaN where
            a series is not observed. Required.
        mu, cov : xarray.DataArray, optional
            Annualized expected returns / covariance, for reporting only.

        Returns
        -------
        OptimizationResult
            Also stored as ``self.result_``.

        Raises
        ------
        ValidationError
            No ``returns``; unsupported constraints; bad data (named).
        InsufficientDataError
            A series shorter than ``min_observations``.
        NoSolutionError
            Every score is 0 and ``if_all_zero="raise"``.
        InfeasibleError
            The bounds cannot meet the budget (see `water_fill`).
        """
        if returns is None:
            raise ValidationError(
                "returns", None, "performance-based weights are computed from return series"
            )
        data: ProblemData = prepare(
            returns, mu, cov, need_mu=False, need_cov=False,
            periods_per_year=self.periods_per_year, max_condition=self.max_condition,
        )
        cons = self.constraints.resolve(data.assets, data.coords)
        _check_supported(cons)
        metrics = performance_scores(
            returns,
            periods_per_year=self.periods_per_year,
            profit_factor_cap=self.profit_factor_cap,
            min_observations=self.min_observations,
        )
        scores = metrics["score"].values
        fallback = not (scores > 0).any()
        if fallback:
            if self.if_all_zero == "raise":
                raise NoSolutionError(
                    "no series has a positive Sharpe ratio (every score is 0): nothing to "
                    "allocate to; pass if_all_zero='equal' for equal weights instead"
                )
            scores = np.ones_like(scores)
        w = water_fill(scores, cons.lower, cons.upper, cons.budget)
        mu_da = data.labelled_mu()
        if mu_da is None:
            mu_da = metrics["mean_return"].rename("expected_return")
            mu_da.attrs = {"units": "fraction per year"}
        result = OptimizationResult(
            weights=data.weights(w),
            method=self.method,
            objective=float("nan"),
            solver="heuristic",
            mu=mu_da,
            cov=data.labelled_cov(),
            info={**data.info, "metrics": metrics, "fallback": fallback},
        )
        self.result_ = result
        self.weights_ = result.weights
        return result

    def __repr__(self) -> str:
        return (
            f"PerformanceBased(min_observations={self.min_observations}, "
            f"profit_factor_cap={self.profit_factor_cap:g}, if_all_zero={self.if_all_zero!r}, "
            f"constraints={self.constraints!r})"
        )


def _check_supported(cons: ResolvedConstraints) -> None:
    reason = "performance-based weights support only per-asset bounds and the budget"
    checks = {
        "max_gross": cons.max_gross is not None,
        "group_bounds/linear": cons.rows.shape[0] > 0,
        "max_turnover": cons.max_turnover is not None,
        "costs": cons.has_costs,
        "max_tracking_error": cons.max_tracking_error is not None,
        "long_only=False": bool((cons.lower < 0).any()),
    }
    for name, present in checks.items():
        if present:
            raise ValidationError("constraints", name, reason)
