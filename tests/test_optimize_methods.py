"""pmkit.optimize methods against closed forms, KKT conditions and independent cvxpy models."""

from __future__ import annotations

import warnings

import cvxpy as cp
import numpy as np
import pytest
import xarray as xr

from pmkit.errors import InfeasibleError, NoSolutionError, SolverError, ValidationError
from pmkit.optimize import (
    Constraints,
    LinearConstraint,
    MaximumSharpe,
    MaximumUtility,
    MinimumVariance,
    TargetReturn,
    TargetRisk,
    TransactionCosts,
)
from pmkit.optimize._cvar_lp import cvar_of
from pmkit.optimize.cvar import MeanCVaR
from pmkit.optimize.diversification import MaximumDiversification, MinimumCorrelation
from pmkit.optimize.frontier import efficient_frontier
from pmkit.optimize.kelly import Kelly
from pmkit.optimize.risk_parity import EqualRiskContribution, RiskBudgeting
from pmkit.risk.covariance import CovarianceRepairWarning

PPY = 252
SECTORS = np.array(["tech", "tech", "fin", "fin", "energy", "energy", "health", "health"])


def _returns(n_assets: int = 8, n_days: int = 750, seed: int = 7) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    factors = rng.normal(0.0004, 0.01, (n_days, 2))
    loadings = rng.uniform(0.3, 1.2, (2, n_assets))
    noise = rng.normal(0, 1, (n_days, n_assets)) * rng.uniform(0.006, 0.02, n_assets)
    drift = rng.uniform(0.0001, 0.0009, n_assets)
    values = drift + factors @ loadings + noise
    assets = [f"A{i}" for i in range(n_assets)]
    return xr.DataArray(
        values.T,
        dims=("asset", "time"),
        coords={
            "asset": assets,
            "time": np.arange(n_days),
            "sector": ("asset", np.resize(SECTORS, n_assets)),
        },
    )


@pytest.fixture(scope="module")
def returns() -> xr.DataArray:
    return _returns()


def _mu_cov(r: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    x = r.transpose("time", "asset").values
    return x.mean(axis=0) * PPY, np.cov(x.T, ddof=1) * PPY


# ------------------------------------------------------------------ closed forms


def test_unconstrained_minimum_variance_is_the_closed_form(returns):
    _, cov = _mu_cov(returns)
    ones = np.ones(len(cov))
    expected = np.linalg.solve(cov, ones) / (ones @ np.linalg.solve(cov, ones))
    loose = Constraints(long_only=False, lower=-100, upper=100)
    res = MinimumVariance(loose).fit(returns)
    np.testing.assert_allclose(res.weights.values, expected, atol=1e-10)
    # The cvxpy path (a never-binding group bound forces it) agrees too.
    via_cvxpy = MinimumVariance(
        Constraints(
            long_only=False, lower=-100, upper=100, group_bounds={"sector": {"tech": (None, 50)}}
        )
    ).fit(returns)
    assert via_cvxpy.solver == "CLARABEL"
    np.testing.assert_allclose(via_cvxpy.weights.values, expected, atol=1e-6)


def test_unconstrained_maximum_sharpe_is_the_tangency_portfolio(returns):
    _, cov = _mu_cov(returns)
    # Expected returns built so that the tangency portfolio is a known long-short x.
    x = np.array([0.4, -0.2, 0.3, 0.25, -0.1, 0.15, 0.1, 0.1])
    mu = 0.02 + 3.0 * cov @ x
    assets = returns["asset"].values
    mu_da = xr.DataArray(mu, dims=("asset",), coords={"asset": assets})
    raw = np.linalg.solve(cov, mu - 0.02)
    expected = raw / raw.sum()
    np.testing.assert_allclose(expected, x, atol=1e-12)
    loose = Constraints(long_only=False, lower=-100, upper=100)
    res = MaximumSharpe(loose, risk_free=0.02).fit(returns, mu=mu_da)
    np.testing.assert_allclose(res.weights.values, expected, atol=1e-7)
    assert res.objective == pytest.approx(
        (mu - 0.02) @ expected / np.sqrt(expected @ cov @ expected), rel=1e-9
    )


def test_budget_only_utility_is_the_closed_form(returns):
    mu, cov = _mu_cov(returns)
    delta = 4.0
    inv = np.linalg.inv(cov)
    ones = np.ones(len(mu))
    # w = inv(cov) (mu - nu 1) / delta with nu fixing sum(w) = 1.
    nu = (ones @ inv @ mu - delta) / (ones @ inv @ ones)
    expected = inv @ (mu - nu * ones) / delta
    res = MaximumUtility(delta, Constraints(long_only=False, lower=-100, upper=100)).fit(returns)
    np.testing.assert_allclose(res.weights.values, expected, atol=1e-9)


def test_long_only_minimum_variance_meets_the_kkt_conditions(returns):
    _, cov = _mu_cov(returns)
    res = MinimumVariance(Constraints(upper=0.3)).fit(returns)
    w = res.weights.values
    grad = 2 * cov @ w
    free = (w > 1e-9) & (w < 0.3 - 1e-9)
    nu = grad[free].mean()
    # Stationarity on free assets, sign conditions on assets at a bound.
    np.testing.assert_allclose(grad[free], nu, rtol=1e-8)
    assert np.all(grad[w <= 1e-9] >= nu - 1e-10)
    assert np.all(grad[w >= 0.3 - 1e-9] <= nu + 1e-10)
    assert abs(w.sum() - 1) < 1e-12 and w.min() >= 0 and w.max() <= 0.3 + 1e-12


# ----------------------------------------------------------- against independent cvxpy models

CONSTRAINT_CASES = {
    "caps and sectors": Constraints(upper=0.25, group_bounds={"sector": {"tech": (0.1, 0.3)}}),
    "long-short gross": Constraints(long_only=False, lower=-0.3, upper=0.5, max_gross=1.6),
    "turnover": Constraints(
        current_weights={"A4": 0.5, "A5": 0.5}, max_turnover=0.6, upper=0.6
    ),
    "cash floor": Constraints(cash_floor=0.1, upper=0.4),
    "linear": Constraints(
        linear=[LinearConstraint({"A2": 1.0, "A3": -1.0}, lower=0.05, name="A2 over A3")]
    ),
}


def _reference_constraints(w, c: Constraints, assets, cov_chol):
    """The same constraints written out by hand for cvxpy (not via ResolvedConstraints)."""
    idx = {a: i for i, a in enumerate(assets)}
    n = len(assets)
    lo = np.full(n, 0.0 if c.long_only else -1.0)
    hi = np.full(n, 1.0)
    if c.lower is not None:
        lo[:] = c.lower
    if c.upper is not None:
        hi[:] = c.upper
    out = [w >= lo, w <= hi]
    budget = 1.0 - (c.cash_floor or 0.0)
    out.append(cp.sum(w) == budget)
    if c.max_gross is not None:
        out.append(cp.norm1(w) <= c.max_gross)
    for bounds in c.group_bounds.values():
        for g, (glo, ghi) in bounds.items():
            mask = (np.resize(SECTORS, n) == g).astype(float)
            if glo is not None:
                out.append(mask @ w >= glo)
            if ghi is not None:
                out.append(mask @ w <= ghi)
    for lc in c.linear:
        coef = np.zeros(n)
        for a, v in lc.coefficients.items():
            coef[idx[a]] = v
        if lc.lower is not None:
            out.append(coef @ w >= lc.lower)
        if lc.upper is not None:
            out.append(coef @ w <= lc.upper)
    if c.max_turnover is not None:
        w0 = np.zeros(n)
        for a, v in c.current_weights.items():
            w0[idx[a]] = v
        out.append(cp.norm1(w - w0) <= c.max_turnover)
    return out


@pytest.mark.parametrize("case", sorted(CONSTRAINT_CASES))
def test_minimum_variance_and_utility_match_independent_cvxpy(returns, case):
    c = CONSTRAINT_CASES[case]
    mu, cov = _mu_cov(returns)
    assets = list(returns["asset"].values)
    chol = np.linalg.cholesky(cov)
    w = cp.Variable(len(mu))
    cons = _reference_constraints(w, c, assets, chol)
    cp.Problem(cp.Minimize(cp.sum_squares(chol.T @ w)), cons).solve(solver="CLARABEL")
    ref_var = float(w.value @ cov @ w.value)
    res = MinimumVariance(c).fit(returns)
    assert res.objective == pytest.approx(ref_var, rel=1e-6)
    assert res.objective <= ref_var * (1 + 1e-6)

    utility = cp.Maximize(mu @ w - 1.5 * cp.sum_squares(chol.T @ w))
    cp.Problem(utility, cons).solve(solver="CLARABEL")
    ref_u = float(mu @ w.value - 1.5 * w.value @ cov @ w.value)
    res_u = MaximumUtility(3.0, c).fit(returns)
    assert res_u.objective == pytest.approx(ref_u, rel=1e-6, abs=1e-9)
    resolved = c.resolve(assets, {"sector": np.resize(SECTORS, len(assets))})
    for r in (res, res_u):
        assert max(resolved.violations(r.weights.values, cov).values()) <= 1e-7


@pytest.mark.parametrize("case", ["caps and sectors", "turnover", "long-short gross"])
def test_maximum_sharpe_charnes_cooper_beats_every_sampled_portfolio(returns, case):
    """The exact maximum: no feasible point on the frontier scan does better."""
    c = CONSTRAINT_CASES[case]
    mu, cov = _mu_cov(returns)
    res = MaximumSharpe(c).fit(returns)
    frontier = efficient_frontier(returns, constraints=c, points=25)
    best_scan = float(frontier.dataset["sharpe"].max())
    assert res.objective >= best_scan - 1e-7
    w = res.weights.values
    assert res.objective == pytest.approx(mu @ w / np.sqrt(w @ cov @ w), rel=1e-10)
    resolved = c.resolve(list(returns["asset"].values), {"sector": np.resize(SECTORS, 8)})
    assert max(resolved.violations(w, cov).values()) <= 1e-7


def test_target_return_and_target_risk_hit_their_targets(returns):
    mu, cov = _mu_cov(returns)
    top = np.sort(mu)[-2:].mean()  # the best return with 0.5 caps
    tr = TargetReturn(0.9 * top, Constraints(upper=0.5)).fit(returns)
    w = tr.weights.values
    assert mu @ w >= 0.9 * top - 1e-8
    vol = np.sqrt(MinimumVariance(Constraints(upper=0.5)).fit(returns).objective)
    rk = TargetRisk(vol * 1.3, Constraints(upper=0.5)).fit(returns)
    wr = rk.weights.values
    assert np.sqrt(wr @ cov @ wr) <= vol * 1.3 + 1e-8
    # Duality of the two problems: the return reached at risk s needs exactly risk s.
    back = TargetReturn(float(mu @ wr), Constraints(upper=0.5)).fit(returns)
    assert np.sqrt(back.objective) == pytest.approx(vol * 1.3, rel=1e-5)


def test_transaction_costs_keep_the_current_weights_when_trading_is_dear(returns):
    current = {a: 1 / 8 for a in returns["asset"].values}
    dear = Constraints(current_weights=current, costs=TransactionCosts(linear=10.0))
    res = MaximumUtility(2.0, dear).fit(returns)
    np.testing.assert_allclose(res.weights.values, 1 / 8, atol=1e-7)
    cheap = Constraints(current_weights=current, costs=TransactionCosts(linear=1e-4, impact=1e-3))
    mu, cov = _mu_cov(returns)
    w = cp.Variable(8)
    trade = w - 1 / 8
    cost = 1e-4 * cp.sum(cp.abs(trade)) + 1e-3 * cp.sum(cp.power(cp.abs(trade), 1.5))
    chol = np.linalg.cholesky(cov)
    ref = cp.Problem(
        cp.Maximize(mu @ w - cp.sum_squares(chol.T @ w) - cost), [w >= 0, w <= 1, cp.sum(w) == 1]
    )
    ref.solve(solver="CLARABEL")
    assert MaximumUtility(2.0, cheap).fit(returns).objective == pytest.approx(ref.value, rel=1e-6)


def test_tracking_error_limit_holds(returns):
    bench = {a: 1 / 8 for a in returns["asset"].values}
    _, cov = _mu_cov(returns)
    res = MaximumSharpe(Constraints(benchmark=bench, max_tracking_error=0.02)).fit(returns)
    active = res.weights.values - 1 / 8
    assert np.sqrt(active @ cov @ active) <= 0.02 + 1e-8


# ------------------------------------------------------------------ diagnostics


def test_infeasible_sector_minimums_are_named(returns):
    c = Constraints(group_bounds={"sector": {"tech": (0.6, None), "fin": (0.6, None)}})
    with pytest.raises(InfeasibleError, match=r"sector minimums sum to 1.2 > budget 1"):
        MinimumVariance(c).fit(returns)


def test_infeasible_bounds_turnover_and_targets_are_named(returns):
    with pytest.raises(InfeasibleError, match=r"asset maximums sum to 0.8 < budget 1"):
        MinimumVariance(Constraints(upper=0.1)).fit(returns)
    c = Constraints(current_weights={"A0": 1.0}, max_turnover=0.2, upper=0.5)
    with pytest.raises(InfeasibleError, match=r"needs turnover 0.5 > max_turnover 0.2"):
        MinimumVariance(c).fit(returns)
    with pytest.raises(InfeasibleError, match=r"target_return 5 > highest attainable"):
        TargetReturn(5.0).fit(returns)
    with pytest.raises(InfeasibleError, match=r"target_volatility 0.001 < least attainable"):
        TargetRisk(0.001).fit(returns)


def test_infeasibility_found_only_by_relaxation_names_a_family(returns):
    # Each family alone is satisfiable; together they are not (needs the elastic model).
    c = Constraints(
        current_weights={"A0": 0.5, "A1": 0.5},
        max_turnover=0.1,
        group_bounds={"sector": {"fin": (0.2, None)}},
    )
    assert c.resolve(list(returns["asset"].values), {"sector": SECTORS}).diagnose() == []
    with pytest.raises(InfeasibleError, match=r"must be relaxed by"):
        MinimumVariance(c).fit(returns)


def test_solver_chain_falls_back_and_reports_every_status(returns, monkeypatch):
    original = cp.Problem.solve

    def broken_clarabel(self, *args, **kwargs):
        if kwargs.get("solver") == "CLARABEL":
            raise cp.error.SolverError("CLARABEL crashed (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cp.Problem, "solve", broken_clarabel)
    c = Constraints(upper=0.3, group_bounds={"sector": {"tech": (0.1, 0.4)}})
    res = MinimumVariance(c).fit(returns)
    assert res.solver == "OSQP"
    assert res.attempts["CLARABEL"].startswith("error: CLARABEL crashed")
    assert res.attempts["OSQP"] == "optimal"
    with pytest.raises(SolverError) as err:
        MinimumVariance(c, solvers=("CLARABEL", "NO_SUCH_SOLVER")).fit(returns)
    assert err.value.statuses["NO_SUCH_SOLVER"] == "not installed"
    assert "CLARABEL" in str(err.value)


def test_indefinite_covariance_is_repaired_with_the_condition_number(returns):
    _, cov = _mu_cov(returns)
    eig, vec = np.linalg.eigh(cov)
    eig[0] = -1e-4
    bad = (vec * eig) @ vec.T
    assets = returns["asset"].values
    da = xr.DataArray(bad, dims=("asset", "asset_j"), coords={"asset": assets, "asset_j": assets})
    with pytest.warns(CovarianceRepairWarning, match=r"not positive definite: condition number"):
        res = MinimumVariance().fit(cov=da)
    assert res.info["repaired"] and np.linalg.eigvalsh(res.cov.values)[0] > 0


def test_ill_conditioned_covariance_is_repaired_with_the_condition_number(returns):
    x = _returns(n_assets=8, n_days=6).transpose("time", "asset").values  # 6 days, 8 assets
    cov = np.cov(x.T) * PPY  # rank 5: singular
    assets = [f"A{i}" for i in range(8)]
    da = xr.DataArray(cov, dims=("asset", "asset_j"), coords={"asset": assets, "asset_j": assets})
    with pytest.warns(CovarianceRepairWarning, match=r"condition number now 1e\+10"):
        res = MinimumVariance(max_condition=1e10).fit(cov=da)
    assert np.linalg.cond(res.cov.values) == pytest.approx(1e10, rel=1e-3)


def test_bad_inputs_are_typed_and_named(returns):
    with pytest.raises(ValidationError, match=r"upper\[A1\]"):
        MinimumVariance(Constraints(lower={"A1": 0.5}, upper={"A1": 0.2})).fit(returns)
    with pytest.raises(ValidationError, match=r"lower\[A0\]"):
        MinimumVariance(Constraints(lower={"A0": -0.1})).fit(returns)
    with pytest.raises(ValidationError, match=r"upper"):
        MinimumVariance(Constraints(upper={"ZZZ": 0.1})).fit(returns)
    with pytest.raises(ValidationError, match=r"group_bounds"):
        MinimumVariance(Constraints(group_bounds={"country": {"US": (0, 1)}})).fit(returns)
    with pytest.raises(ValidationError, match=r"risk_aversion"):
        MaximumUtility(-1.0)
    with pytest.raises(ValidationError, match=r"constraints.costs"):
        MaximumSharpe(Constraints(costs=TransactionCosts())).fit(returns)


def test_maximum_sharpe_without_positive_excess_return_is_no_solution(returns):
    with pytest.raises(NoSolutionError, match=r"undefined"):
        MaximumSharpe(risk_free=10.0).fit(returns)
    with pytest.raises(NoSolutionError, match=r"undefined"):
        MaximumSharpe(Constraints(upper=0.5), risk_free=10.0).fit(returns)


# ------------------------------------------------------------------ other methods


def test_risk_budgeting_contributions_match_budgets(returns):
    budgets = dict(zip(returns["asset"].values, np.arange(1.0, 9.0), strict=True))
    res = RiskBudgeting(budgets).fit(returns)
    rc = res.risk_contributions(relative=True).values  # budgets are fractions of the risk
    np.testing.assert_allclose(rc, np.arange(1.0, 9.0) / 36.0, atol=1e-10)
    erc = EqualRiskContribution().fit(returns).risk_contributions(relative=True).values
    np.testing.assert_allclose(erc, 1 / 8, atol=1e-10)
    assert erc_weights_max(returns) > 0.13
    with pytest.raises(InfeasibleError, match=r"> upper bound 0.13"):
        EqualRiskContribution(Constraints(upper=0.13)).fit(returns)
    with pytest.raises(ValidationError, match=r"constraints"):
        EqualRiskContribution(Constraints(max_gross=1.0)).fit(returns)


def erc_weights_max(returns: xr.DataArray) -> float:
    return float(EqualRiskContribution().fit(returns).weights.max())


def test_maximum_diversification_ratio_is_maximal(returns):
    _, cov = _mu_cov(returns)
    sigma = np.sqrt(np.diag(cov))
    res = MaximumDiversification(Constraints(upper=0.3)).fit(returns)
    w = res.weights.values
    assert res.objective == pytest.approx(sigma @ w / np.sqrt(w @ cov @ w), rel=1e-10)
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = np.minimum(rng.dirichlet(np.ones(8)), 0.3)
        x /= x.sum()
        if x.max() <= 0.3:
            assert sigma @ x / np.sqrt(x @ cov @ x) <= res.objective + 1e-9
    tech_floor = Constraints(upper=0.3, group_bounds={"sector": {"tech": (0.2, None)}})
    capped = MaximumDiversification(tech_floor)
    assert capped.fit(returns).objective <= res.objective + 1e-9


def test_minimum_correlation_is_minimum_variance_of_the_correlation_matrix(returns):
    _, cov = _mu_cov(returns)
    sigma = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sigma, sigma)
    w = cp.Variable(8)
    cp.Problem(cp.Minimize(cp.quad_form(w, corr)), [w >= 0, cp.sum(w) == 1]).solve(
        solver="CLARABEL"
    )
    res = MinimumCorrelation().fit(returns)
    assert res.objective == pytest.approx(float(w.value @ corr @ w.value), rel=1e-7)


def test_kelly_matches_the_binary_bet_closed_form():
    # One asset paying +b with probability p and -1/2 otherwise: f* = p/(1/2) - q/b.
    p, b, n = 0.6, 0.5, 1000
    wins = int(p * n)
    values = np.r_[np.full(wins, b), np.full(n - wins, -0.5)]
    r = xr.DataArray(values[None, :], dims=("asset", "time"), coords={"asset": ["bet"]})
    expected = p / 0.5 - (1 - p) / b
    res = Kelly(constraints=Constraints(budget=(0.0, 1.0))).fit(r)
    best = np.mean(np.log1p(values * expected))
    # The log-growth is flat at its peak: exp-cone accuracy ~1e-8 in growth is ~1e-4 in weight.
    assert res.objective == pytest.approx(best, abs=1e-8)
    assert res.weights.item() == pytest.approx(expected, abs=5e-4)
    half = Kelly(0.5).fit(r)
    assert half.weights.item() == pytest.approx(0.5 * res.weights.item(), rel=1e-12)
    assert half.info["growth_fractional"] < res.info["growth_full"]


def test_kelly_growth_beats_sampled_portfolios(returns):
    res = Kelly().fit(returns)
    x = returns.transpose("time", "asset").values
    growth = np.mean(np.log1p(x @ res.weights.values))
    assert growth == pytest.approx(res.objective, rel=1e-9)
    rng = np.random.default_rng(1)
    for _ in range(100):
        w = rng.dirichlet(np.ones(8)) * rng.uniform(0, 1)
        assert np.mean(np.log1p(x @ w)) <= growth + 1e-9


def test_efficient_frontier_is_monotone_and_starts_at_minimum_variance(returns):
    f = efficient_frontier(returns, points=8, constraints=Constraints(upper=0.5))
    ret = f.dataset["expected_return"].values
    vol = f.dataset["volatility"].values
    assert np.all(np.diff(ret) > 0) and np.all(np.diff(vol) > -1e-10)
    mv = MinimumVariance(Constraints(upper=0.5)).fit(returns)
    assert vol[0] == pytest.approx(np.sqrt(mv.objective), rel=1e-9)
    mid = TargetReturn(float(ret[4]), Constraints(upper=0.5)).fit(returns)
    assert vol[4] == pytest.approx(mid.volatility, rel=1e-6)


def test_ragged_history_is_not_zero_filled():
    r = _returns()
    values = r.values.copy()
    values[0, :300] = np.nan  # A0 lists late
    ragged = r.copy(data=values)
    res = MinimumVariance().fit(ragged)
    assert np.isfinite(res.weights.values).all()
    from pmkit.risk.covariance import covariance_matrix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CovarianceRepairWarning)
        expected = covariance_matrix(ragged, "sample").values * PPY
    np.testing.assert_allclose(res.cov.values, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "constraints",
    [
        Constraints(upper=0.4),
        Constraints(upper=0.4, max_turnover=1.5),
        Constraints(budget=(0.8, 1)),
    ],
    ids=["LP kernel", "cvxpy (turnover)", "budget range"],
)
def test_mean_cvar_matches_the_full_rockafellar_uryasev_lp(returns, constraints):
    x = returns.transpose("time", "asset").values
    t, n = x.shape
    w, alpha, u = cp.Variable(n), cp.Variable(), cp.Variable(t, nonneg=True)
    b_lo, b_hi = (0.8, 1.0) if constraints.budget != 1.0 else (1.0, 1.0)
    cons = [u >= -x @ w - alpha, w >= 0, w <= (constraints.upper or 1.0)]
    cons += [cp.sum(w) >= b_lo, cp.sum(w) <= b_hi]
    if constraints.max_turnover is not None:
        cons.append(cp.norm1(w) <= 1.5)
    ref = cp.Problem(cp.Minimize(alpha + cp.sum(u) / (0.05 * t)), cons)
    ref.solve(solver="HIGHS")
    res = MeanCVaR(0.95, constraints).fit(returns)
    assert res.objective == pytest.approx(ref.value, rel=1e-7)
    _, cvar = cvar_of(x, res.weights.values, 0.95)
    assert cvar == pytest.approx(res.objective, rel=1e-9)


def test_mean_cvar_return_floor_binds_and_unreachable_floors_are_named(returns):
    mu, _ = _mu_cov(returns)
    free = MeanCVaR().fit(returns)
    floor = float(free.expected_return) + 0.05
    res = MeanCVaR(target_return=floor).fit(returns)
    assert mu @ res.weights.values >= floor - 1e-9
    assert res.objective >= free.objective - 1e-12
    with pytest.raises(InfeasibleError, match=r"target_return 9 > highest attainable"):
        MeanCVaR(target_return=9.0).fit(returns)
