"""Property tests: every weight vector an optimizer returns satisfies every constraint.

Random constraint sets (bounds, sector bounds, budget ranges, cash floors,
gross leverage, turnover, tracking error, costs) on a small real-data
problem. Each method either returns weights within 1e-7 of every constraint,
or raises `InfeasibleError` — and then an independent cvxpy feasibility
problem must agree that no portfolio exists — or `NoSolutionError` (maximum
Sharpe undefined).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmkit.datasets import load_market
from pmkit.errors import InfeasibleError, NoSolutionError
from pmkit.model.market import simple_returns
from pmkit.optimize import (
    Constraints,
    MaximumSharpe,
    MaximumUtility,
    MinimumVariance,
    TargetRisk,
    TransactionCosts,
)
from pmkit.optimize.cvar import MeanCVaR
from pmkit.optimize.diversification import MaximumDiversification, MinimumCorrelation

ASSETS = ["AAPL", "MSFT", "JPM", "BAC", "XOM", "CVX", "JNJ", "PFE"]


@pytest.fixture(scope="module")
def returns() -> xr.DataArray:
    r = simple_returns(load_market()).sel(asset=ASSETS)
    return r.isel(time=slice(-1500, None))


@st.composite
def constraint_sets(draw: st.DrawFn) -> Constraints:
    long_only = draw(st.booleans())
    upper = draw(st.floats(0.15, 1.0))
    lower = 0.0 if long_only else -draw(st.floats(0.0, 0.5))
    kwargs: dict = {"long_only": long_only, "lower": lower, "upper": upper}
    if draw(st.booleans()):
        lo = draw(st.floats(0.0, 0.5))
        kwargs["group_bounds"] = {"sector": {"Energy": (lo, lo + draw(st.floats(0.0, 0.5)))}}
    if draw(st.booleans()):
        kwargs["cash_floor"] = draw(st.floats(0.0, 0.3))
    if not long_only and draw(st.booleans()):
        kwargs["max_gross"] = draw(st.floats(1.0, 2.0))
    if draw(st.booleans()):
        current = draw(st.lists(st.floats(0.0, 1.0), min_size=8, max_size=8))
        total = sum(current) or 1.0
        kwargs["current_weights"] = {a: c / total for a, c in zip(ASSETS, current, strict=True)}
        kwargs["max_turnover"] = draw(st.floats(0.05, 2.0))
    if draw(st.booleans()):
        kwargs["benchmark"] = {a: 1 / 8 for a in ASSETS}
        kwargs["max_tracking_error"] = draw(st.floats(0.01, 0.2))
    return Constraints(**kwargs)


def _feasible_somewhere(cons, cov: np.ndarray) -> bool:
    """Independent check: does any w satisfy the resolved constraints?"""
    w = cp.Variable(cons.n)
    c = [w >= cons.lower, w <= cons.upper, cp.sum(w) >= cons.budget[0], cp.sum(w) <= cons.budget[1]]
    if cons.max_gross is not None:
        c.append(cp.norm1(w) <= cons.max_gross)
    for k in range(cons.rows.shape[0]):
        c += [cons.rows[k] @ w >= cons.row_lower[k], cons.rows[k] @ w <= cons.row_upper[k]]
    if cons.max_turnover is not None:
        c.append(cp.norm1(w - cons.current) <= cons.max_turnover)
    if cons.max_tracking_error is not None:
        c.append(cp.quad_form(w - cons.benchmark, cov) <= cons.max_tracking_error**2)
    prob = cp.Problem(cp.Minimize(0), c)
    prob.solve(solver="CLARABEL")
    return prob.status == cp.OPTIMAL


METHODS = {
    "minimum variance": lambda c: MinimumVariance(c),
    "maximum Sharpe": lambda c: MaximumSharpe(c),
    "maximum utility with costs": lambda c: MaximumUtility(
        3.0, Constraints(**{**c.__dict__, "costs": TransactionCosts(linear=0.001, impact=0.01)})
    ),
    "target risk": lambda c: TargetRisk(0.25, c),
    "maximum diversification": lambda c: MaximumDiversification(c),
    "minimum correlation": lambda c: MinimumCorrelation(c),
    "minimum CVaR": lambda c: MeanCVaR(0.95, c),
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_returned_weight_vector_satisfies_every_constraint(returns, method):
    @settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(constraint_sets())
    def check(c: Constraints) -> None:
        opt = METHODS[method](c)
        data = opt.prepare(returns)
        cons = opt.constraints.resolve(data.assets, data.coords)
        try:
            res = opt.fit(returns)
        except InfeasibleError:
            if method == "target risk":
                return  # the volatility target itself may be out of reach
            assert not _feasible_somewhere(cons, data.cov)
            return
        except NoSolutionError:
            assert method in ("maximum Sharpe", "maximum diversification")
            return
        gaps = cons.violations(res.weights.values, data.cov)
        assert max(gaps.values()) <= 1e-7, gaps

    check()
