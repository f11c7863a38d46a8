"""Portfolio constraints: one declarative object, usable by every convex method.

`Constraints` is written once by the user with labels (asset names, sector
names); `Constraints.resolve` turns it into `ResolvedConstraints`, plain numpy
arrays aligned to the assets of one problem. The resolved form then

* adds itself to a cvxpy problem (`ResolvedConstraints.cvxpy`), optionally in
  homogenized form for the Charnes–Cooper transform of maximum Sharpe, where
  every right-hand side is scaled by the auxiliary variable ``kappa``;
* measures how far any weight vector is from satisfying it
  (`ResolvedConstraints.violations`), used by tests and by the solver chain;
* explains an infeasible problem (`ResolvedConstraints.diagnose`) by an
  analysis of the bounds, e.g. ``"sector minimums sum to 1.2 > budget 1"``,
  and, when that finds nothing, by an elastic relaxation that reports which
  constraint families need slack (`pmkit.optimize._solve`).

Units: weights are fractions of portfolio value. Risk limits (tracking
error) are annualized fractions, like the covariance the optimizers use.
Transaction costs are fractions of portfolio value per unit of weight traded.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from pmkit.errors import UnknownAssetError, ValidationError

__all__ = [
    "Constraints",
    "LinearConstraint",
    "ResolvedConstraints",
    "TransactionCosts",
]

Number = float | int
PerAsset = Number | Mapping[Hashable, Number] | xr.DataArray | None
Range = tuple[Number | None, Number | None]


@dataclass(frozen=True)
class LinearConstraint:
    """``lower <= sum_i coefficients[i] * w[i] <= upper``.

    Parameters
    ----------
    coefficients : mapping of asset to float, or xarray.DataArray on ``asset``
        Missing assets have coefficient 0.
    lower, upper : float or None
        Bounds on the weighted sum (fractions of value); None means unbounded.
    name : str
        Used in error messages and diagnostics.
    """

    coefficients: Mapping[Hashable, Number] | xr.DataArray
    lower: Number | None = None
    upper: Number | None = None
    name: str = "linear"


@dataclass(frozen=True)
class TransactionCosts:
    """Cost of trading from the current weights ``w0`` to ``w``, as a fraction of value.

    ``cost(w) = sum_i linear_i |w_i - w0_i| + impact_i |w_i - w0_i|^(3/2)``

    Parameters
    ----------
    linear : float or per-asset mapping/DataArray, default 0.0005
        Half-spread plus commission per unit of weight traded (0.0005 = 5 bp).
    impact : float or per-asset mapping/DataArray, default 0
        Coefficient of the 3/2-power market-impact term; with ``impact_i =
        c * sigma_i * sqrt(V / ADV_i)`` this is the square-root impact law
        expressed in weights (``sigma_i`` daily volatility, ``V`` portfolio
        value, ``ADV_i`` average daily value traded).
    aversion : float, default 1
        Multiplier of the cost in the objective (an amortization choice:
        costs are paid once while expected returns are annual).
    """

    linear: PerAsset = 0.0005
    impact: PerAsset = 0.0
    aversion: float = 1.0


@dataclass(frozen=True)
class Constraints:
    """Constraints on a weight vector, stated with labels.

    Parameters
    ----------
    long_only : bool, default True
        No short positions: default per-asset bounds are ``[0, 1]``; with
        False they are ``[-1, 1]``.
    lower, upper : float, mapping asset -> float, xarray.DataArray on asset, or None
        Per-asset weight bounds (fractions). A mapping need not list every
        asset: the others keep the default. ``long_only=True`` also clips
        lower bounds at 0.
    budget : float or (low, high), default 1
        Net exposure, ``sum(w)``: fully invested at 1. A range lets the
        optimizer choose, e.g. ``(0.9, 1.0)``.
    cash_floor : float, optional
        Cash ``1 - sum(w)`` is at least this fraction: the upper end of
        ``budget`` becomes ``1 - cash_floor`` (with the default budget of 1,
        exactly ``1 - cash_floor`` is invested).
    max_gross : float, optional
        Gross leverage limit ``sum |w| <= max_gross`` (e.g. 1.6 for 130/30).
    group_bounds : mapping, optional
        ``{grouping: {group: (low, high)}}`` bounds on the summed weight of a
        group's assets. ``grouping`` is a coordinate on the ``asset``
        dimension of the data (``"sector"``, ``"asset_class"``) or a key of
        ``groups``. Either end may be None.
    groups : mapping, optional
        ``{grouping: {asset: group}}`` memberships for groupings the data do
        not carry as coordinates.
    linear : sequence of LinearConstraint
        Further linear constraints.
    current_weights : mapping or DataArray, optional
        Weights held now (missing assets are 0). Needed by turnover and
        costs; without it trading starts from cash (all zeros).
    max_turnover : float, optional
        ``sum |w - current_weights| <= max_turnover`` (one-way turnover
        counts buys and sells; a full switch is 2).
    costs : TransactionCosts, optional
        Penalty subtracted from the objective of return-seeking methods and
        added to risk-minimizing ones.
    benchmark : mapping or DataArray, optional
        Benchmark weights for ``max_tracking_error``.
    max_tracking_error : float, optional
        Annualized tracking error limit, ``sqrt((w-b)' cov (w-b)) <= limit``.
    """

    long_only: bool = True
    lower: PerAsset = None
    upper: PerAsset = None
    budget: Number | Range = 1.0
    cash_floor: Number | None = None
    max_gross: Number | None = None
    group_bounds: Mapping[str, Mapping[Hashable, Range]] = field(default_factory=dict)
    groups: Mapping[str, Mapping[Hashable, Hashable]] = field(default_factory=dict)
    linear: Sequence[LinearConstraint] = ()
    current_weights: Mapping[Hashable, Number] | xr.DataArray | None = None
    max_turnover: Number | None = None
    costs: TransactionCosts | None = None
    benchmark: Mapping[Hashable, Number] | xr.DataArray | None = None
    max_tracking_error: Number | None = None

    def resolve(
        self, assets: Sequence[Hashable] | np.ndarray, asset_coords: Mapping[str, Any] | None = None
    ) -> ResolvedConstraints:
        """Align every constraint to ``assets`` and validate it.

        Parameters
        ----------
        assets : sequence of labels
            The problem's assets, in order.
        asset_coords : mapping of str to array, optional
            Coordinates along ``asset`` (e.g. ``{"sector": [...]}``) used by
            ``group_bounds``.

        Returns
        -------
        ResolvedConstraints

        Raises
        ------
        ValidationError
            A value out of range (named), such as ``upper[AAPL]`` below
            ``lower[AAPL]`` or a negative ``max_turnover``.
        UnknownAssetError
            A label that is not one of ``assets``.
        """
        assets = np.asarray(assets)
        index = {a: i for i, a in enumerate(assets.tolist())}
        n = len(assets)
        coords = dict(asset_coords or {})

        default_lo = 0.0 if self.long_only else -1.0
        lower = _per_asset("lower", self.lower, index, default_lo)
        upper = _per_asset("upper", self.upper, index, 1.0)
        if self.long_only:
            neg = np.flatnonzero(lower < 0)
            if neg.size:
                raise ValidationError(
                    f"lower[{assets[neg[0]]}]",
                    float(lower[neg[0]]),
                    "must be >= 0 with long_only=True (set long_only=False to allow shorts)",
                )
        bad = np.flatnonzero(lower > upper)
        if bad.size:
            i = bad[0]
            raise ValidationError(
                f"upper[{assets[i]}]", float(upper[i]), f"is below lower[{assets[i]}]={lower[i]:g}"
            )

        budget_lo, budget_hi = _range("budget", self.budget)
        if budget_lo is None or budget_hi is None:
            raise ValidationError("budget", self.budget, "both ends of a budget range are needed")
        if self.cash_floor is not None:
            floor = _finite("cash_floor", self.cash_floor, low=0.0, high=1.0)
            budget_hi = min(budget_hi, 1.0 - floor)
            if isinstance(self.budget, int | float):
                budget_lo = min(budget_lo, budget_hi)

        rows: list[np.ndarray] = []
        row_lo: list[float] = []
        row_hi: list[float] = []
        row_names: list[str] = []
        row_kinds: list[str] = []
        for grouping, bounds in self.group_bounds.items():
            labels = _group_labels(grouping, self.groups, coords, assets, index)
            for group, rng in bounds.items():
                lo, hi = _range(f"group_bounds[{grouping}][{group}]", rng)
                member = labels == group
                if isinstance(group, str | int) and not member.any():
                    raise ValidationError(
                        f"group_bounds[{grouping}]", group, f"no asset is in this {grouping}"
                    )
                rows.append(member.astype(float))
                row_lo.append(-np.inf if lo is None else lo)
                row_hi.append(np.inf if hi is None else hi)
                row_names.append(f"{grouping} {group}")
                row_kinds.append(grouping)
        for k, con in enumerate(self.linear):
            if not isinstance(con, LinearConstraint):
                raise ValidationError(f"linear[{k}]", con, "must be a LinearConstraint")
            coef = _per_asset(f"linear[{con.name}]", con.coefficients, index, 0.0)
            lo, hi = _range(f"linear[{con.name}]", (con.lower, con.upper))
            rows.append(coef)
            row_lo.append(-np.inf if lo is None else lo)
            row_hi.append(np.inf if hi is None else hi)
            row_names.append(con.name)
            row_kinds.append("linear")

        current = (
            np.zeros(n)
            if self.current_weights is None
            else _per_asset("current_weights", self.current_weights, index, 0.0)
        )
        benchmark = (
            None
            if self.benchmark is None
            else _per_asset("benchmark", self.benchmark, index, 0.0)
        )
        if self.max_tracking_error is not None and benchmark is None:
            raise ValidationError(
                "max_tracking_error", self.max_tracking_error, "needs benchmark weights"
            )
        linear_cost = impact = None
        aversion = 1.0
        if self.costs is not None:
            if not isinstance(self.costs, TransactionCosts):
                raise ValidationError("costs", self.costs, "must be TransactionCosts")
            linear_cost = _per_asset("costs.linear", self.costs.linear, index, 0.0)
            impact = _per_asset("costs.impact", self.costs.impact, index, 0.0)
            for name, arr in (("costs.linear", linear_cost), ("costs.impact", impact)):
                if (arr < 0).any():
                    i = int(np.argmax(arr < 0))
                    raise ValidationError(f"{name}[{assets[i]}]", float(arr[i]), "must be >= 0")
            aversion = _finite("costs.aversion", self.costs.aversion, low=0.0)

        return ResolvedConstraints(
            assets=assets,
            lower=lower,
            upper=upper,
            budget=(budget_lo, budget_hi),
            max_gross=None
            if self.max_gross is None
            else _finite("max_gross", self.max_gross, low=0.0),
            rows=np.array(rows).reshape(len(rows), n),
            row_lower=np.array(row_lo, dtype=float),
            row_upper=np.array(row_hi, dtype=float),
            row_names=tuple(row_names),
            row_kinds=tuple(row_kinds),
            current=current,
            max_turnover=None
            if self.max_turnover is None
            else _finite("max_turnover", self.max_turnover, low=0.0),
            linear_cost=linear_cost,
            impact_cost=impact,
            cost_aversion=aversion,
            benchmark=benchmark,
            max_tracking_error=None
            if self.max_tracking_error is None
            else _finite("max_tracking_error", self.max_tracking_error, low=0.0),
        )


@dataclass(frozen=True)
class ResolvedConstraints:
    """`Constraints` aligned to one problem's assets (numpy arrays, in asset order).

    Attributes
    ----------
    assets : ndarray, shape (N,)
    lower, upper : ndarray, shape (N,)
        Per-asset bounds (``-inf``/``inf`` where unbounded).
    budget : (float, float)
        Range of ``sum(w)``.
    max_gross : float or None
    rows : ndarray, shape (K, N)
        Group and linear constraint rows, ``row_lower <= rows @ w <= row_upper``.
    row_lower, row_upper : ndarray, shape (K,)
    row_names, row_kinds : tuple of str
        Readable name of each row and its family (a grouping name or ``"linear"``).
    current : ndarray, shape (N,)
        Current weights (zeros when none were given).
    max_turnover : float or None
    linear_cost, impact_cost : ndarray, shape (N,), or None
    cost_aversion : float
    benchmark : ndarray, shape (N,), or None
    max_tracking_error : float or None
        Annualized.
    """

    assets: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    budget: tuple[float, float]
    max_gross: float | None
    rows: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    row_names: tuple[str, ...]
    row_kinds: tuple[str, ...]
    current: np.ndarray
    max_turnover: float | None
    linear_cost: np.ndarray | None
    impact_cost: np.ndarray | None
    cost_aversion: float
    benchmark: np.ndarray | None
    max_tracking_error: float | None

    @property
    def n(self) -> int:
        """Number of assets."""
        return len(self.assets)

    @property
    def has_costs(self) -> bool:
        """Whether a transaction-cost penalty applies."""
        return self.linear_cost is not None and bool(
            (self.linear_cost > 0).any() or (self.impact_cost > 0).any()
        )

    @property
    def is_box_budget(self) -> bool:
        """Only per-asset bounds and an exact budget: the case the fast kernels solve."""
        return (
            self.budget[0] == self.budget[1]
            and self.max_gross is None
            and self.rows.shape[0] == 0
            and self.max_turnover is None
            and not self.has_costs
            and self.max_tracking_error is None
        )

    def cvxpy(self, w: Any, cov_factor: np.ndarray | None = None, kappa: Any = 1.0) -> list[Any]:
        """The constraints as cvxpy expressions on the variable ``w``.

        Parameters
        ----------
        w : cvxpy.Variable, shape (N,)
        cov_factor : ndarray, shape (N, N), optional
            ``L`` with ``L @ L.T = cov`` (annualized), needed by the tracking
            error limit.
        kappa : cvxpy.Variable or float, default 1
            Scale of the right-hand sides. Maximum Sharpe solves in
            ``y = kappa * w`` (Charnes–Cooper); every constraint is then
            homogeneous in ``(y, kappa)``.

        Returns
        -------
        list of cvxpy.Constraint
        """
        import cvxpy as cp

        out: list[Any] = []
        lo_mask, hi_mask = np.isfinite(self.lower), np.isfinite(self.upper)
        if lo_mask.all():
            out.append(w >= self.lower * kappa)
        elif lo_mask.any():
            out.append(w[lo_mask] >= self.lower[lo_mask] * kappa)
        if hi_mask.all():
            out.append(w <= self.upper * kappa)
        elif hi_mask.any():
            out.append(w[hi_mask] <= self.upper[hi_mask] * kappa)
        b_lo, b_hi = self.budget
        if b_lo == b_hi:
            out.append(cp.sum(w) == b_lo * kappa)
        else:
            out += [cp.sum(w) >= b_lo * kappa, cp.sum(w) <= b_hi * kappa]
        if self.max_gross is not None:
            out.append(cp.norm1(w) <= self.max_gross * kappa)
        if self.rows.shape[0]:
            lo_ok, hi_ok = np.isfinite(self.row_lower), np.isfinite(self.row_upper)
            if lo_ok.any():
                out.append(self.rows[lo_ok] @ w >= self.row_lower[lo_ok] * kappa)
            if hi_ok.any():
                out.append(self.rows[hi_ok] @ w <= self.row_upper[hi_ok] * kappa)
        if self.max_turnover is not None:
            out.append(cp.norm1(w - self.current * kappa) <= self.max_turnover * kappa)
        if self.max_tracking_error is not None:
            if cov_factor is None:
                raise ValueError("tracking error needs the covariance factor")
            active = w - self.benchmark * kappa
            out.append(cp.norm(cov_factor.T @ active, 2) <= self.max_tracking_error * kappa)
        return out

    def cost_expression(self, w: Any) -> Any:
        """The cvxpy expression of the aversion-weighted transaction cost of moving to ``w``."""
        import cvxpy as cp

        trade = w - self.current
        terms = []
        if self.linear_cost is not None and (self.linear_cost > 0).any():
            terms.append(self.linear_cost @ cp.abs(trade))
        if self.impact_cost is not None and (self.impact_cost > 0).any():
            terms.append(self.impact_cost @ cp.power(cp.abs(trade), 1.5))
        if not terms:
            return cp.Constant(0.0)
        return self.cost_aversion * cp.sum(cp.hstack(terms))

    def cost(self, w: np.ndarray) -> float:
        """Aversion-weighted transaction cost of moving to ``w`` (fraction of value)."""
        if not self.has_costs:
            return 0.0
        trade = np.abs(w - self.current)
        return self.cost_aversion * float(
            self.linear_cost @ trade + self.impact_cost @ trade**1.5
        )

    def violations(self, w: np.ndarray, cov: np.ndarray | None = None) -> dict[str, float]:
        """How far ``w`` is from each constraint family (0 where satisfied).

        Parameters
        ----------
        w : ndarray, shape (N,)
        cov : ndarray, shape (N, N), optional
            Annualized covariance, needed to measure the tracking error.

        Returns
        -------
        dict of str to float
            ``{"lower": ..., "upper": ..., "budget": ..., "gross": ...,
            "rows": ..., "turnover": ..., "tracking_error": ...}`` largest
            violation of each family, in weight (or annualized volatility) units.
        """
        w = np.asarray(w, dtype=float)
        out = {
            "lower": float(np.max(self.lower - w, initial=0.0)),
            "upper": float(np.max(w - self.upper, initial=0.0)),
            "budget": float(max(self.budget[0] - w.sum(), w.sum() - self.budget[1], 0.0)),
        }
        if self.max_gross is not None:
            out["gross"] = max(float(np.abs(w).sum()) - self.max_gross, 0.0)
        if self.rows.shape[0]:
            s = self.rows @ w
            with np.errstate(invalid="ignore"):
                gap = np.maximum(self.row_lower - s, s - self.row_upper)
            out["rows"] = float(np.max(np.nan_to_num(gap, nan=0.0, neginf=0.0), initial=0.0))
        if self.max_turnover is not None:
            out["turnover"] = max(float(np.abs(w - self.current).sum()) - self.max_turnover, 0.0)
        if self.max_tracking_error is not None and cov is not None:
            a = w - self.benchmark
            out["tracking_error"] = max(
                float(np.sqrt(max(a @ cov @ a, 0.0))) - self.max_tracking_error, 0.0
            )
        return out

    def diagnose(self) -> list[str]:
        """Conflicts provable from the bounds alone (an empty list proves nothing).

        Returns
        -------
        list of str
            Statements such as ``"sector minimums sum to 1.2 > budget 1"``.
        """
        found: list[str] = []
        b_lo, b_hi = self.budget
        if b_lo > b_hi + 1e-12:
            found.append(f"budget range is empty: low {b_lo:g} > high {b_hi:g} (after cash floor)")
        lo_sum, hi_sum = float(self.lower.sum()), float(self.upper.sum())
        if lo_sum > b_hi + 1e-9:
            found.append(f"asset minimums sum to {lo_sum:.6g} > budget {b_hi:.6g}")
        if hi_sum < b_lo - 1e-9:
            found.append(f"asset maximums sum to {hi_sum:.6g} < budget {b_lo:.6g}")
        for kind in dict.fromkeys(self.row_kinds):
            if kind == "linear":
                continue
            idx = [k for k, x in enumerate(self.row_kinds) if x == kind]
            member = self.rows[idx] > 0
            covered = member.any(axis=0)
            # Each group's least and most possible weight, given its assets' bounds.
            g_min = np.maximum(self.row_lower[idx], (member * self.lower).sum(axis=1))
            g_max = np.minimum(self.row_upper[idx], (member * self.upper).sum(axis=1))
            for k, i in enumerate(idx):
                name = self.row_names[i]
                own_hi = float((member[k] * self.upper).sum())
                own_lo = float((member[k] * self.lower).sum())
                if self.row_lower[i] > own_hi + 1e-9:
                    found.append(
                        f"{name} minimum {self.row_lower[i]:.6g} > sum of its assets' upper "
                        f"bounds {own_hi:.6g}"
                    )
                if self.row_upper[i] < own_lo - 1e-9:
                    found.append(
                        f"{name} maximum {self.row_upper[i]:.6g} < sum of its assets' lower "
                        f"bounds {own_lo:.6g}"
                    )
            if not (member.sum(axis=0) <= 1).all():
                continue  # overlapping groups: the sums below would double count
            least = float(g_min.sum() + self.lower[~covered].sum())
            most = float(g_max.sum() + self.upper[~covered].sum())
            if least > b_hi + 1e-9:
                found.append(f"{kind} minimums sum to {least:.6g} > budget {b_hi:.6g}")
            if most < b_lo - 1e-9:
                found.append(f"{kind} maximums sum to {most:.6g} < budget {b_lo:.6g}")
        if self.max_gross is not None:
            least_gross = float(np.maximum(self.lower, 0).sum() + np.maximum(-self.upper, 0).sum())
            least_gross = max(least_gross, min(abs(b_lo), abs(b_hi)) if b_lo * b_hi > 0 else 0.0)
            if least_gross > self.max_gross + 1e-9:
                found.append(
                    f"gross exposure is at least {least_gross:.6g} > max_gross {self.max_gross:.6g}"
                )
        if self.max_turnover is not None:
            to_box = float(
                np.maximum(self.lower - self.current, 0).sum()
                + np.maximum(self.current - self.upper, 0).sum()
            )
            held = float(self.current.sum())
            to_budget = max(b_lo - held, held - b_hi, 0.0)
            need = max(to_box, to_budget)
            if need > self.max_turnover + 1e-9:
                what = "into the asset bounds" if to_box >= to_budget else "to meet the budget"
                found.append(
                    f"moving the current weights {what} needs turnover {need:.6g} > "
                    f"max_turnover {self.max_turnover:.6g}"
                )
        return found


    def elastic(self, w: Any, slack_for: Any, cov_factor: np.ndarray | None = None) -> dict:
        """Constraint families with slack, for `pmkit.optimize._solve.elastic_conflicts`."""
        import cvxpy as cp

        fam: dict[str, list[Any]] = {}
        s = slack_for("asset bounds")
        fam["asset bounds"] = [
            w >= np.where(np.isfinite(self.lower), self.lower, -1e6) - s,
            w <= np.where(np.isfinite(self.upper), self.upper, 1e6) + s,
        ]
        s = slack_for("budget")
        fam["budget"] = [cp.sum(w) >= self.budget[0] - s, cp.sum(w) <= self.budget[1] + s]
        if self.max_gross is not None:
            fam["max_gross"] = [cp.norm1(w) <= self.max_gross + slack_for("max_gross")]
        for k in range(self.rows.shape[0]):
            name = self.row_names[k]
            s = slack_for(self.row_kinds[k] + " bounds" if self.row_kinds[k] != "linear" else name)
            row = self.rows[k] @ w
            cons = []
            if np.isfinite(self.row_lower[k]):
                cons.append(row >= self.row_lower[k] - s)
            if np.isfinite(self.row_upper[k]):
                cons.append(row <= self.row_upper[k] + s)
            fam.setdefault(name, []).extend(cons)
        if self.max_turnover is not None:
            fam["max_turnover"] = [
                cp.norm1(w - self.current) <= self.max_turnover + slack_for("max_turnover")
            ]
        if self.max_tracking_error is not None and cov_factor is not None:
            fam["max_tracking_error"] = [
                cp.norm(cov_factor.T @ (w - self.benchmark), 2)
                <= self.max_tracking_error + slack_for("max_tracking_error")
            ]
        return fam

    def explain(self, cov_factor: np.ndarray | None = None) -> list[str]:
        """Why no weight vector satisfies these constraints.

        The bound analysis (`diagnose`) first; when it proves nothing, an
        elastic relaxation names the families that must give way.

        Returns
        -------
        list of str
        """
        from pmkit.optimize._solve import elastic_conflicts

        return self.diagnose() or elastic_conflicts(
            self.n, lambda w, slack_for: self.elastic(w, slack_for, cov_factor)
        )


def _finite(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not np.isfinite(value):
        raise ValidationError(name, value, "must be a finite number")
    if low is not None and value < low:
        raise ValidationError(name, value, f"must be >= {low:g}")
    if high is not None and value > high:
        raise ValidationError(name, value, f"must be <= {high:g}")
    return float(value)


def _range(name: str, value: Any) -> tuple[float | None, float | None]:
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValidationError(name, value, "must be a number or a (low, high) pair")
        lo = None if value[0] is None else _finite(f"{name}.low", value[0])
        hi = None if value[1] is None else _finite(f"{name}.high", value[1])
        if lo is not None and hi is not None and lo > hi:
            raise ValidationError(name, value, "low is above high")
        return lo, hi
    x = _finite(name, value)
    return x, x


def _per_asset(name: str, value: Any, index: dict[Hashable, int], default: float) -> np.ndarray:
    out = np.full(len(index), default, dtype=float)
    if value is None:
        return out
    if isinstance(value, xr.DataArray):
        if value.dims != ("asset",):
            raise ValidationError(name, value.dims, "must be a DataArray on ('asset',)")
        value = dict(zip(value["asset"].values.tolist(), value.values.tolist(), strict=True))
    if isinstance(value, Mapping):
        for asset, x in value.items():
            if asset not in index:
                raise UnknownAssetError(f"{name}[{asset}]", asset, "is not an asset of the problem")
            out[index[asset]] = _finite(f"{name}[{asset}]", x) if x is not None else default
        return out
    if np.ndim(value) == 0:
        out[:] = _finite(name, value)
        return out
    raise ValidationError(name, type(value).__name__, "must be a number, a mapping or a DataArray")


def _group_labels(
    grouping: str,
    groups: Mapping[str, Mapping[Hashable, Hashable]],
    coords: Mapping[str, Any],
    assets: np.ndarray,
    index: dict[Hashable, int],
) -> np.ndarray:
    if grouping in groups:
        labels = np.full(len(assets), None, dtype=object)
        for asset, group in groups[grouping].items():
            if asset not in index:
                raise UnknownAssetError(
                    f"groups[{grouping}][{asset}]", asset, "is not an asset of the problem"
                )
            labels[index[asset]] = group
        return labels
    if grouping in coords:
        return np.asarray(coords[grouping], dtype=object)
    raise ValidationError(
        "group_bounds",
        grouping,
        f"is neither a coordinate on asset ({sorted(coords)}) nor a key of groups",
    )
