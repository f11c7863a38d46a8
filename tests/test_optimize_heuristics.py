"""Performance-based weights and convex blends (pmkit.optimize.performance_based, .mixed).

References: the score recomputed by hand with pandas (synthetic ragged data
and the real bundled market, ETFs listing in 2014); bounded weights against
cvxpy + CLARABEL solving the chi-square projection the water-filling claims
to be, and against naive cap-and-redistribute for upper bounds only;
invariants (monotonicity, bounds, convexity of the blend).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pmkit.datasets import load_market
from pmkit.errors import (
    AlignmentError,
    InfeasibleError,
    InsufficientDataError,
    NoSolutionError,
    ValidationError,
)
from pmkit.model import simple_returns
from pmkit.optimize.constraints import Constraints
from pmkit.optimize.hrp import HierarchicalRiskParity
from pmkit.optimize.mixed import Mixed
from pmkit.optimize.performance_based import PerformanceBased, performance_scores, water_fill
from pmkit.optimize.result import OptimizationResult

CAP = 10.0


def labelled(frame: pd.DataFrame) -> xr.DataArray:
    """``(asset, time)`` DataArray from a (time x asset) frame."""
    return xr.DataArray(
        frame.to_numpy().T,
        dims=("asset", "time"),
        coords={"asset": list(frame.columns), "time": frame.index},
    )


def by_hand(frame: pd.DataFrame, ppy: int = 252, cap: float = CAP) -> pd.DataFrame:
    """The module docstring's metrics and score, column by column with pandas."""
    rows = {}
    for name, s in frame.items():
        s = s.dropna()
        win = (s > 0).sum() / s.count()
        sharpe = s.mean() / s.std() * np.sqrt(ppy)
        losses = -s[s < 0].sum()
        pf = s[s > 0].sum() / losses if losses > 0 else np.inf
        score = max(sharpe, 0.0) * (win / 0.5) * min(pf, cap) if sharpe > 0 else 0.0
        rows[name] = {"win_rate": win, "sharpe": sharpe, "profit_factor": pf, "score": score}
    return pd.DataFrame(rows).T


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    idx = pd.date_range("2021-01-01", periods=120, freq="B")
    data = {
        "good": rng.normal(0.002, 0.01, 120),
        "ok": rng.normal(0.0006, 0.01, 120),
        "bad": rng.normal(-0.001, 0.01, 120),  # negative Sharpe: zero weight
        "late": rng.normal(0.001, 0.008, 120),
        "nolose": np.abs(rng.normal(0.001, 0.002, 120)),  # no loss: profit factor inf -> cap
    }
    frame = pd.DataFrame(data, index=idx)
    frame.iloc[:70, 3] = np.nan  # lists late: 50 observations
    frame.iloc[[10, 20], 0] = np.nan  # gaps
    return frame


@pytest.fixture(scope="module")
def market_returns() -> xr.DataArray:
    return simple_returns(load_market(start="2010-01-01"))  # ETFs from 2014: ragged


def test_scores_match_pandas_by_hand(synthetic):
    ref = by_hand(synthetic)
    assert ref.loc["bad", "sharpe"] < 0 and np.isinf(ref.loc["nolose", "profit_factor"])
    got = performance_scores(labelled(synthetic)).to_dataframe()
    for col in ("win_rate", "sharpe", "profit_factor", "score"):
        assert_allclose(got[col].to_numpy(), ref[col].to_numpy().astype(float), rtol=1e-12)
    assert got.loc["late", "n_observations"] == 50 and got.loc["good", "n_observations"] == 118
    res = PerformanceBased().fit(labelled(synthetic))
    expected = ref["score"] / ref["score"].sum()
    assert_allclose(res.weights.sel(asset=expected.index).values, expected.to_numpy(), rtol=1e-12)
    assert float(res.weights.sel(asset="bad")) == 0.0
    assert res.solver == "heuristic" and np.isnan(res.objective)
    # mu for reporting: each series' annualized mean over its own observations.
    assert_allclose(res.mu.sel(asset="late"), synthetic["late"].mean() * 252, rtol=1e-12)


def test_real_data_matches_pandas_by_hand(market_returns):
    frame = market_returns.transpose("time", "asset").to_pandas()
    ref = by_hand(frame)
    res = PerformanceBased().fit(market_returns)
    metrics = res.info["metrics"].to_dataframe().loc[ref.index]
    for col in ("win_rate", "sharpe", "profit_factor", "score"):
        assert_allclose(metrics[col].to_numpy(), ref[col].to_numpy().astype(float), rtol=1e-10)
    expected = ref["score"] / ref["score"].sum()
    assert_allclose(res.weights.sel(asset=expected.index).values, expected.to_numpy(), rtol=1e-10)


def chi_square_projection(scores, lower, upper, budget=1.0) -> np.ndarray:
    """cvxpy reference: min sum (w - t)^2 / t over the bounds, t = score-proportional."""
    pos = scores > 0
    t = scores[pos] / scores[pos].sum()
    w = cp.Variable(int(pos.sum()))
    rest = lower[~pos].sum()
    prob = cp.Problem(
        cp.Minimize(cp.sum(cp.multiply(1.0 / t, cp.square(w - t)))),
        [w >= lower[pos], w <= upper[pos], cp.sum(w) == budget - rest],
    )
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    out = lower.astype(float).copy()
    out[pos] = w.value
    return out


def test_bounds_by_water_filling_match_cvxpy(market_returns):
    cons = Constraints(lower=0.01, upper=0.06)
    res = PerformanceBased(constraints=cons).fit(market_returns)
    w = res.weights.values
    scores = res.info["metrics"]["score"].values
    n = len(w)
    ref = chi_square_projection(scores, np.full(n, 0.01), np.full(n, 0.06))
    assert_allclose(w, ref, atol=1e-7)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert w.min() >= 0.01 - 1e-15 and w.max() <= 0.06 + 1e-15
    assert np.isclose(w, 0.06).sum() >= 2 and np.isclose(w, 0.01).sum() >= 1  # both bind


def test_upper_bounds_match_naive_cap_and_redistribute():
    scores = np.array([9.0, 5.0, 3.0, 1.0, 0.5, 0.0])
    upper = np.full(6, 0.3)
    w = np.zeros(6)
    free = scores > 0
    while True:  # cap the violators, share what is left pro rata among the others
        left = 1.0 - w[~free].sum()
        w[free] = left * scores[free] / scores[free].sum()
        over = free & (w > upper)
        if not over.any():
            break
        w[over] = upper[over]
        free &= ~over
    assert_allclose(water_fill(scores, np.zeros(6), upper), w, atol=1e-15)
    assert_allclose(w[:2], 0.3) and 0.2 < w[2] < 0.3  # two capped, one pushed up


case = st.integers(2, 10).flatmap(
    lambda n: st.tuples(
        st.lists(st.one_of(st.just(0.0), st.floats(0.01, 10.0)), min_size=n, max_size=n),
        st.lists(st.floats(0.0, 0.8 / n), min_size=n, max_size=n),
        st.lists(st.floats(0.0, 4.0 / n), min_size=n, max_size=n),
    )
)


@settings(max_examples=60, deadline=None)
@given(case)
def test_water_fill_is_clip_of_one_lambda(c):
    s, lo, extra = (np.asarray(x) for x in c)
    hi = lo + extra
    pos = s > 0
    if not pos.any():
        return
    reach = hi[pos].sum() + lo[~pos].sum()
    if reach < 1.0:
        with pytest.raises(InfeasibleError, match="positive score"):
            water_fill(s, lo, hi)
        return
    w = water_fill(s, lo, hi)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    assert (w >= lo - 1e-15).all() and (w <= hi + 1e-15).all()
    assert (w[~pos] == lo[~pos]).all()
    # Optimality: one lambda with w = clip(lambda s, l, u) on the positive scores.
    pinned = hi - lo <= 1e-13  # l = u: fixed whatever lambda is
    at_lo = pos & ~pinned & np.isclose(w, lo, rtol=0, atol=1e-13)
    at_hi = pos & ~pinned & np.isclose(w, hi, rtol=0, atol=1e-13)
    free = pos & ~pinned & ~at_lo & ~at_hi
    lam_min = max([0.0, *(hi[at_hi] / s[at_hi])])  # capped: lambda s >= u
    lam_max = min([np.inf, *(lo[at_lo] / s[at_lo])])  # floored: lambda s <= l
    if free.any():
        ratio = w[free] / s[free]
        assert_allclose(ratio, ratio[0], rtol=1e-9)
        lam_min, lam_max = max(lam_min, ratio[0]), min(lam_max, ratio[0])
    assert lam_min <= lam_max * (1 + 1e-9) + 1e-12


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    which=st.integers(0, 3),
    shift=st.floats(0.0, 0.003),
    bounded=st.booleans(),
)
def test_improving_a_series_never_lowers_its_weight(seed, which, shift, bounded):
    rng = np.random.default_rng(seed)
    base = rng.normal(rng.uniform(-0.0005, 0.002, 4), 0.01, (60, 4))
    better = base.copy()
    better[:, which] += shift  # a constant shift up
    losses = np.flatnonzero(better[:, which] < 0)
    if losses.size:
        better[losses[0], which] *= -1.0  # and one loss turned into an equal gain
    idx = pd.date_range("2022-01-03", periods=60, freq="B")
    cols = ["a", "b", "c", "d"]
    cons = Constraints(upper=0.4) if bounded else None
    opt = PerformanceBased(constraints=cons, if_all_zero="equal")
    try:
        before = opt.fit(labelled(pd.DataFrame(base, idx, cols))).weights.values
    except InfeasibleError:  # fewer than 3 positive scores cannot fill 1 under 0.4 caps
        return
    try:
        after = opt.fit(labelled(pd.DataFrame(better, idx, cols))).weights.values
    except InfeasibleError:
        # the all-zero fallback filled 1 before; now 1-2 positive scores cannot under 0.4 caps
        positive = (by_hand(pd.DataFrame(better, idx, cols))["score"] > 0).sum()
        assert bounded and 0 < positive * 0.4 < 1
        return
    s_before = by_hand(pd.DataFrame(base, idx, cols))["score"].iloc[which]
    s_after = by_hand(pd.DataFrame(better, idx, cols))["score"].iloc[which]
    assert s_after >= s_before
    if s_before > 0 or s_after == 0:  # (the all-zero fallback is not a score)
        assert after[which] >= before[which] - 1e-12


def test_budget_range_invests_what_the_bounds_allow(synthetic):
    r = labelled(synthetic)  # 4 positive scores
    res = PerformanceBased(constraints=Constraints(upper=0.2, budget=(0.5, 1.0))).fit(r)
    assert res.weights.sum() == pytest.approx(0.8, abs=1e-12)
    assert res.cash == pytest.approx(0.2, abs=1e-12)
    with pytest.raises(InfeasibleError, match=r"at most 0\.8 .* < budget 1"):
        PerformanceBased(constraints=Constraints(upper=0.2)).fit(r)
    with pytest.raises(InfeasibleError, match=r"minimums sum to 1\.25 > budget 1"):
        PerformanceBased(constraints=Constraints(lower=0.25)).fit(r)


def test_zero_scores_and_bad_series(synthetic):
    idx = synthetic.index
    losers = pd.DataFrame({"x": -np.abs(synthetic["good"]), "y": np.zeros(len(idx))}, idx)
    with pytest.raises(NoSolutionError, match="positive Sharpe"):
        PerformanceBased().fit(labelled(losers))
    eq = PerformanceBased(if_all_zero="equal").fit(labelled(losers))
    assert_allclose(eq.weights.values, [0.5, 0.5]) and eq.info["fallback"]
    assert performance_scores(labelled(losers))["sharpe"].sel(asset="y") == 0.0  # all zero

    cash_like = synthetic.assign(cash=0.0001)
    with pytest.raises(ValidationError) as err:
        PerformanceBased().fit(labelled(cash_like))
    assert err.value.field == "returns[cash]"
    with pytest.raises(InsufficientDataError) as err:
        PerformanceBased(min_observations=60).fit(labelled(synthetic))
    assert err.value.field == "returns[late]" and err.value.value == 50


def test_parameters_and_constraints_refused(synthetic):
    with pytest.raises(ValidationError) as err:
        PerformanceBased(profit_factor_cap=1.0)
    assert err.value.field == "profit_factor_cap"
    with pytest.raises(ValidationError) as err:
        PerformanceBased(if_all_zero="skip")
    assert err.value.field == "if_all_zero"
    with pytest.raises(ValidationError) as err:
        PerformanceBased().fit()
    assert err.value.field == "returns"
    with pytest.raises(ValidationError) as err:
        PerformanceBased(constraints=Constraints(max_turnover=0.2)).fit(labelled(synthetic))
    assert err.value.field == "constraints" and err.value.value == "max_turnover"


# -- Mixed -------------------------------------------------------------------------------


# The pairwise covariance of the ragged panel is indefinite and repaired (with a warning).
@pytest.mark.filterwarnings("ignore::pmkit.risk.covariance.CovarianceRepairWarning")
def test_blend_is_the_weighted_sum_of_independent_fits(market_returns):
    comps = [HierarchicalRiskParity(), HierarchicalRiskParity("ward"), PerformanceBased()]
    alpha = [0.5, 0.2, 0.3]
    res = Mixed(list(zip(comps, alpha, strict=True))).fit(market_returns)
    singles = [
        HierarchicalRiskParity().fit(market_returns).weights,
        HierarchicalRiskParity("ward").fit(market_returns).weights,
        PerformanceBased().fit(market_returns).weights,
    ]
    expected = sum(a * w for a, w in zip(alpha, singles, strict=True))
    assert_allclose(res.weights.values, expected.sel(asset=res.weights["asset"]).values, atol=1e-15)
    assert [r.method for r in res.info["components"]] == [
        "hierarchical risk parity", "hierarchical risk parity", "performance based",
    ]
    assert res.info["components"][2] is comps[2].result_
    assert res.cov is not None and np.isfinite(res.volatility)


def test_blend_of_results_in_any_asset_order(synthetic):
    r = labelled(synthetic)
    a = PerformanceBased().fit(r)
    b = PerformanceBased(constraints=Constraints(upper=0.3)).fit(r)
    b_shuffled = OptimizationResult(
        weights=b.weights.isel(asset=[4, 2, 0, 1, 3]), method="x", objective=np.nan, solver="y"
    )
    res = Mixed([a, b_shuffled], blend=[0.25, 0.75]).fit()
    assert_allclose(res.weights.values, 0.25 * a.weights.values + 0.75 * b.weights.values)
    assert list(res.weights["asset"].values) == list(a.weights["asset"].values)


blend_case = st.tuples(
    st.integers(0, 2**31 - 1), st.integers(2, 8), st.integers(1, 5), st.booleans()
)


@settings(max_examples=50, deadline=None)
@given(blend_case)
def test_blend_keeps_every_shared_convex_constraint(c):
    seed, n, k, ranged = c
    rng = np.random.default_rng(seed)
    lo = rng.uniform(0, 0.8 / n, n)
    hi = lo + rng.uniform(0.5 / n, 3 / n, n)
    budget = (0.7, 1.0) if ranged else 1.0
    assets = [f"A{i}" for i in range(n)]
    cons = Constraints(
        lower=dict(zip(assets, lo, strict=True)),
        upper=dict(zip(assets, hi, strict=True)),
        budget=budget,
    ).resolve(assets)
    results = []
    for _ in range(k):  # feasible points of the same set: random scores water-filled
        invest = rng.uniform(0.7, 1.0) if ranged else 1.0
        try:
            w = water_fill(rng.exponential(size=n), lo, hi, (invest, invest))
        except InfeasibleError:
            return
        assert max(cons.violations(w).values()) <= 1e-12
        results.append(
            OptimizationResult(
                weights=xr.DataArray(w, dims="asset", coords={"asset": assets}),
                method="random", objective=np.nan, solver="none",
            )
        )
    alpha = rng.dirichlet(np.ones(k))
    alpha[-1] = 1.0 - alpha[:-1].sum()
    mixed = Mixed([(r, float(a)) for r, a in zip(results, alpha, strict=True)]).fit()
    assert max(cons.violations(mixed.weights.values).values()) <= 1e-12


def test_bad_blends_are_named(synthetic):
    r = PerformanceBased().fit(labelled(synthetic))
    cases = [
        (lambda: Mixed([(r, 0.5), (r, -0.1), (r, 0.6)]), "blend[1]"),
        (lambda: Mixed([(r, 0.5), (r, 0.6)]), "blend"),
        (lambda: Mixed([(r, float("nan")), (r, 1.0)]), "blend[0]"),
        (lambda: Mixed([r, r], blend=[1.0]), "blend"),
        (lambda: Mixed([r, r]), "components[0]"),
        (lambda: Mixed([("not an optimizer", 1.0)]), "components[0]"),
        (lambda: Mixed([]), "components"),
        (lambda: Mixed([(HierarchicalRiskParity(), 1.0)]).fit(), "returns"),
    ]
    for make, field in cases:
        with pytest.raises(ValidationError) as err:
            make()
        assert err.value.field == field
    other = OptimizationResult(
        weights=xr.DataArray([0.5, 0.5], dims="asset", coords={"asset": ["good", "zzz"]}),
        method="x", objective=np.nan, solver="y",
    )
    with pytest.raises(AlignmentError) as err:
        Mixed([(r, 0.5), (other, 0.5)]).fit()
    assert err.value.field == "components[1].weights"
