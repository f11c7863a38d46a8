"""Risk parity: equal risk contribution and general risk budgeting, long-only.

The weights whose fractional Euler risk contributions
``w_i (cov w)_i / w' cov w`` equal given budgets ``b_i`` are found from the
convex problem ``min 1/2 y' cov y - sum_i b_i log y_i`` (Spinu 2013) by a
damped Newton method (`pmkit.optimize._risk_budget`), then ``w = y / sum(y)``
scaled to the budget. The contributions match the budgets to 1e-10.

Risk budgets fix the weights completely, so other constraints cannot be
optimized over: per-asset upper bounds are checked (and the conflict raised
as `InfeasibleError`), and constraints that would change the weights
(groups, turnover, costs, ...) are refused with a `ValidationError`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from pmkit.errors import InfeasibleError, NoSolutionError, ValidationError
from pmkit.optimize._inputs import ProblemData
from pmkit.optimize._risk_budget import risk_budget_weights
from pmkit.optimize.base import Optimizer, Solution
from pmkit.optimize.constraints import Constraints, ResolvedConstraints

__all__ = ["EqualRiskContribution", "RiskBudgeting"]


class RiskBudgeting(Optimizer):
    """Long-only weights whose risk contributions equal the budgets.

    Parameters
    ----------
    budgets : mapping asset -> float, xarray.DataArray on asset, or None
        Positive risk budgets for every asset, normalized to sum to 1. None
        means equal budgets (equal risk contribution).
    constraints : Constraints, optional
        Long-only with an exact positive budget; per-asset upper bounds are
        checked against the answer. Other constraints are refused.
    **kwargs
        See `Optimizer`.

    Notes
    -----
    The objective reported is the largest absolute gap between a fractional
    risk contribution and its budget (about 1e-12 at convergence).
    """

    method = "risk budgeting"

    def __init__(
        self,
        budgets: Mapping[Hashable, float] | xr.DataArray | None = None,
        constraints: Constraints | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(constraints, **kwargs)
        self.budgets = budgets

    def _budgets(self, assets: np.ndarray) -> np.ndarray:
        n = len(assets)
        if self.budgets is None:
            return np.full(n, 1.0 / n)
        given = self.budgets
        if isinstance(given, xr.DataArray):
            given = given.to_series().to_dict()
        if not isinstance(given, Mapping):
            raise ValidationError("budgets", type(given).__name__, "must be a mapping or DataArray")
        missing = [a for a in assets.tolist() if a not in given]
        if missing:
            raise ValidationError("budgets", missing[:5], "every asset needs a risk budget")
        extra = [a for a in given if a not in set(assets.tolist())]
        if extra:
            raise ValidationError("budgets", extra[:5], "are not assets of the problem")
        b = np.array([given[a] for a in assets.tolist()], dtype=float)
        bad = ~np.isfinite(b) | (b <= 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValidationError(f"budgets[{assets[i]}]", float(b[i]), "must be > 0")
        return b / b.sum()

    def _solve(self, data: ProblemData, cons: ResolvedConstraints) -> Solution:
        b = self._budgets(data.assets)
        budget = cons.budget[0]
        refused = [
            name
            for name, on in (
                ("budget range", cons.budget[0] != cons.budget[1]),
                ("max_gross", cons.max_gross is not None),
                ("group_bounds/linear", cons.rows.shape[0] > 0),
                ("max_turnover", cons.max_turnover is not None),
                ("costs", cons.has_costs),
                ("max_tracking_error", cons.max_tracking_error is not None),
                ("lower", bool(np.any(cons.lower != 0))),
            )
            if on
        ]
        if refused or budget <= 0:
            raise ValidationError(
                "constraints", refused or f"budget={budget}",
                "risk budgeting is long-only with a positive exact budget and optional caps",
            )
        y, info = risk_budget_weights(data.cov, b)
        if not info["converged"]:
            raise NoSolutionError(
                f"risk budgeting did not converge (largest budget gap {info['max_error']:.3g})"
            )
        w = budget * y
        over = np.flatnonzero(w > cons.upper + 1e-12)
        if over.size:
            i = over[0]
            raise InfeasibleError(
                f"risk budgets imply weight {w[i]:.6g} for {data.assets[i]} > upper bound "
                f"{cons.upper[i]:.6g}: lower its budget or raise the bound"
            )
        return w, float(info["max_error"]), "newton", {}, info


class EqualRiskContribution(RiskBudgeting):
    """Equal risk contribution (ERC): every asset contributes ``1/N`` of the risk.

    `RiskBudgeting` with equal budgets; see it for the parameters.
    """

    method = "equal risk contribution"

    def __init__(self, constraints: Constraints | None = None, **kwargs: Any) -> None:
        super().__init__(None, constraints, **kwargs)
