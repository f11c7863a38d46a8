"""Numerical kernels behind pmkit.optimize: active-set QP, risk budgeting, CVaR LP.

References: cvxpy + CLARABEL (QPs, projections, Charnes-Cooper), cvxpy + HiGHS (CVaR LP),
closed forms (unconstrained minimum variance, tangency portfolio, inverse-volatility ERC,
sqrt(b)/sigma budgets for uncorrelated assets), riskfolio-lib's risk parity on the bundled
market data, and the historical CVaR of the returned weights recomputed from the scenarios.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from pmkit.errors import InfeasibleError, ValidationError
from pmkit.optimize._active_set import (
    SharpeUndefinedError,
    max_diversification_long_only,
    max_sharpe_long_only,
    max_utility_box,
    min_variance_box,
    project_budget_box,
    solve_box_qp,
)
from pmkit.optimize._cvar_lp import cvar_of, min_cvar_lp
from pmkit.optimize._risk_budget import risk_budget_weights, variance_contributions

cp = pytest.importorskip("cvxpy")


# ----------------------------------------------------------------------------- helpers


def factor_cov(rng: np.random.Generator, n: int, k: int = 3, ridge: float = 0.0) -> np.ndarray:
    """Covariance of a k-factor model with idiosyncratic noise (daily-return scale)."""
    loadings = rng.normal(0.8, 0.5, (n, k))
    idio = rng.uniform(0.5, 2.0, n) ** 2
    return 1e-4 * (loadings @ loadings.T + np.diag(idio)) + ridge * np.eye(n)


def clarabel_qp(hess, q, a, b, lo, up):
    n = len(q)
    x = cp.Variable(n)
    cons = [a @ x == b]
    fin_lo, fin_up = np.isfinite(lo), np.isfinite(up)
    if fin_lo.any():
        cons.append(x[fin_lo] >= lo[fin_lo])
    if fin_up.any():
        cons.append(x[fin_up] <= up[fin_up])
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(hess)) + q @ x), cons)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    assert prob.status == "optimal"
    return x.value, prob.value


def independent_kkt(hess, q, a, b, lo, up, sol) -> float:
    """Largest KKT violation of (x, nu, multipliers), computed here from scratch (relative)."""
    x, lm, um = sol.x, sol.lower_mult, sol.upper_mult
    scale = max(np.abs(hess).max() * max(1.0, np.abs(x).max()), np.abs(q).max())
    stat = np.abs(hess @ x + q - sol.nu * a - lm + um).max() / scale
    sign = max(0.0, -lm.min(), -um.min()) / scale
    with np.errstate(invalid="ignore"):
        comp_lo = np.where(lm > 0, np.abs(x - lo), 0.0).max()
        comp_up = np.where(um > 0, np.abs(up - x), 0.0).max()
    feas = max(np.max(lo - x, initial=0), np.max(x - up, initial=0), abs(a @ x - b))
    return float(max(stat, sign, comp_lo, comp_up, feas))


def random_problem(rng: np.random.Generator, kind: str):
    n = int(rng.integers(3, 40))
    if kind == "singular":  # rank-deficient factor covariance plus a small ridge
        loadings = rng.normal(size=(n, max(1, n // 4)))
        hess = loadings @ loadings.T + 1e-6 * np.eye(n)
    else:
        hess = factor_cov(rng, n) * 1e4
    q = np.zeros(n)
    a = np.ones(n)
    lo = np.zeros(n)
    up = np.full(n, np.inf)
    if kind == "many_at_bound":  # a strong linear term pushes most assets to a bound
        q = rng.normal(0, 5.0, n)
        up = np.full(n, 0.4)
    elif kind == "boxed":
        q = rng.normal(0, 0.5, n)
        lo = np.where(rng.random(n) < 0.3, -np.inf, rng.uniform(-0.2, 0.0, n))
        up = np.where(rng.random(n) < 0.3, np.inf, rng.uniform(0.1, 0.5, n))
    elif kind == "general_row":
        a = rng.uniform(0.2, 2.0, n)
        q = rng.normal(0, 0.5, n)
        up = rng.uniform(0.3, 1.0, n)
    b = 1.0 if kind != "general_row" else float(a.mean() * 1.5)
    return hess, q, a, b, lo, up


# ----------------------------------------------------------------------------- box QP


@pytest.mark.parametrize("kind", ["plain", "many_at_bound", "boxed", "general_row", "singular"])
def test_box_qp_matches_clarabel(kind):
    rng = np.random.default_rng(
        ["plain", "many_at_bound", "boxed", "general_row", "singular"].index(kind)
    )
    for _ in range(8):
        hess, q, a, b, lo, up = random_problem(rng, kind)
        sol = solve_box_qp(hess, q, a, b, lo, up)
        x_ref, v_ref = clarabel_qp(hess, q, a, b, lo, up)
        assert sol.converged
        assert sol.kkt_residual <= 1e-10
        assert independent_kkt(hess, q, a, b, lo, up, sol) <= 1e-10
        # Exact method: never worse than the interior-point reference, and the same point
        # (with a 1e-6 ridge the minimizer is too ill-conditioned for CLARABEL's x to 1e-6;
        # there KKT to 1e-10 plus a no-worse objective is the proof of optimality).
        assert sol.objective <= v_ref + 1e-9 * max(1.0, abs(v_ref))
        if kind != "singular":
            np.testing.assert_allclose(sol.x, x_ref, atol=1e-6)
        assert sol.objective == pytest.approx(0.5 * sol.x @ hess @ sol.x + q @ sol.x, rel=1e-12)


def test_many_assets_at_bound():
    rng = np.random.default_rng(7)
    hess = factor_cov(rng, 200)
    sol = min_variance_box(hess, 0.0, np.inf)
    assert sol.converged and sol.method == "pdas"
    assert (sol.x == 0).sum() > 100  # most weights exactly zero, not 1e-12
    assert sol.x.min() >= 0 and sol.x.sum() == pytest.approx(1.0, abs=1e-14)
    x_ref, v_ref = clarabel_qp(
        hess, np.zeros(200), np.ones(200), 1.0, np.zeros(200), np.full(200, np.inf)
    )
    assert sol.objective <= v_ref + 1e-12 * abs(v_ref)
    np.testing.assert_allclose(sol.x, x_ref, atol=1e-6)


def test_unconstrained_min_variance_closed_form():
    rng = np.random.default_rng(3)
    hess = factor_cov(rng, 30)
    inv1 = np.linalg.solve(hess, np.ones(30))
    closed = inv1 / inv1.sum()
    sol = min_variance_box(hess, -np.inf, np.inf)
    np.testing.assert_allclose(sol.x, closed, rtol=1e-10, atol=1e-13)
    assert sol.iterations == 1
    # Inactive bounds change nothing: a diagonally dominant Σ has positive Σ⁻¹1.
    diag_cov = np.diag(rng.uniform(1, 3, 30)) * 1e-4 + 1e-6
    inv1 = np.linalg.solve(diag_cov, np.ones(30))
    assert (inv1 > 0).all()
    sol = min_variance_box(diag_cov, 0.0, 1.0)
    np.testing.assert_allclose(sol.x, inv1 / inv1.sum(), rtol=1e-10)
    assert not sol.active_lower.any() and not sol.active_upper.any()


def test_primal_safeguard_agrees_with_pdas():
    rng = np.random.default_rng(11)
    for kind in ["boxed", "many_at_bound", "general_row"]:
        hess, q, a, b, lo, up = random_problem(rng, kind)
        fast = solve_box_qp(hess, q, a, b, lo, up)
        safe = solve_box_qp(hess, q, a, b, lo, up, max_iter=1)  # hand over after one iteration
        assert safe.method == "pdas+primal" and safe.converged
        np.testing.assert_allclose(safe.x, fast.x, atol=1e-10)
        assert independent_kkt(hess, q, a, b, lo, up, safe) <= 1e-10


def test_warm_start_and_utility():
    rng = np.random.default_rng(5)
    n = 25
    hess = factor_cov(rng, n)
    mu = rng.normal(3e-4, 4e-4, n)
    sol = max_utility_box(hess, mu, 5.0, 0.0, 0.3)
    x_ref, _ = clarabel_qp(5.0 * hess, -mu, np.ones(n), 1.0, np.zeros(n), np.full(n, 0.3))
    np.testing.assert_allclose(sol.x, x_ref, atol=1e-6)
    warm = solve_box_qp(5.0 * hess, -mu, 1.0, 1.0, 0.0, 0.3, x0=sol.x)
    assert warm.iterations == 1  # the right active set is confirmed in one solve
    np.testing.assert_allclose(warm.x, sol.x, atol=1e-14)


def test_projection_matches_clarabel():
    rng = np.random.default_rng(9)
    for _ in range(5):
        n = 20
        y = rng.normal(0, 0.3, n)
        a = rng.uniform(0.5, 1.5, n)
        lo = np.where(rng.random(n) < 0.2, -np.inf, -0.1)
        up = np.where(rng.random(n) < 0.2, np.inf, 0.2)
        x = project_budget_box(y, a, 1.0, lo, up)
        ref, _ = clarabel_qp(np.eye(n), -y, a, 1.0, lo, up)
        np.testing.assert_allclose(x, ref, atol=1e-7)
        assert a @ x == pytest.approx(1.0, abs=1e-13)


def test_infeasible_and_invalid():
    hess = np.eye(3)
    with pytest.raises(InfeasibleError, match="outside"):
        solve_box_qp(hess, 0.0, 1.0, 1.0, 0.0, 0.2)  # 3 x 0.2 < 1
    with pytest.raises(InfeasibleError, match="exceeds"):
        solve_box_qp(hess, 0.0, 1.0, 1.0, [0, 0.5, 0], [1, 0.4, 1])
    with pytest.raises(ValidationError, match="P"):
        solve_box_qp(np.ones((3, 2)), 0.0, 1.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValidationError, match="q"):
        solve_box_qp(hess, [0.0, np.nan, 0.0], 1.0, 1.0, 0.0, 1.0)


# ----------------------------------------------------------------------------- max Sharpe


def clarabel_sharpe(cov, mu, sigma=None):
    """Charnes-Cooper in cvxpy: min y'Σy s.t. mu'y = 1, y >= 0, w = y / sum(y)."""
    n = len(mu)
    y = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.quad_form(y, cp.psd_wrap(cov))), [mu @ y == 1, y >= 0])
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-14, tol_gap_rel=1e-12, tol_feas=1e-12)
    return y.value / y.value.sum()


def sharpe(w, cov, mu):
    return float(mu @ w / np.sqrt(w @ cov @ w))


def test_max_sharpe_long_only_matches_cvxpy():
    rng = np.random.default_rng(13)
    for _ in range(5):
        n = 40
        cov = factor_cov(rng, n)
        mu = rng.normal(2e-4, 5e-4, n)
        sol = max_sharpe_long_only(cov, mu)
        ref = clarabel_sharpe(cov, mu)
        assert sol.qp.converged
        assert sol.weights.min() >= 0 and sol.weights.sum() == pytest.approx(1, abs=1e-14)
        assert sharpe(sol.weights, cov, mu) >= sharpe(ref, cov, mu) - 1e-10
        np.testing.assert_allclose(sol.weights, ref, atol=1e-6)


def test_tangency_closed_form():
    rng = np.random.default_rng(17)
    cov = factor_cov(rng, 15)
    target = rng.uniform(0.5, 1.5, 15)
    target /= target.sum()
    mu = cov @ target * 3.0  # Σ⁻¹mu ∝ target > 0: the tangency portfolio is long-only
    tangency = np.linalg.solve(cov, mu)
    tangency /= tangency.sum()
    np.testing.assert_allclose(tangency, target, rtol=1e-10)
    sol = max_sharpe_long_only(cov, mu)
    np.testing.assert_allclose(sol.weights, tangency, rtol=1e-10)


def test_max_sharpe_undefined_and_caps():
    rng = np.random.default_rng(19)
    cov = factor_cov(rng, 10)
    with pytest.raises(SharpeUndefinedError, match="no asset has a positive"):
        max_sharpe_long_only(cov, -np.abs(rng.normal(1e-4, 1e-4, 10)))
    mu = rng.normal(2e-4, 5e-4, 10)
    free = max_sharpe_long_only(cov, mu)
    assert max_sharpe_long_only(cov, mu, upper=free.weights.max() / 2) is None  # cap binds
    loose = max_sharpe_long_only(cov, mu, upper=1.0)
    np.testing.assert_array_equal(loose.weights, free.weights)


def test_max_diversification_matches_cvxpy():
    rng = np.random.default_rng(23)
    cov = factor_cov(rng, 30)
    sigma = np.sqrt(np.diag(cov))
    sol = max_diversification_long_only(cov)
    ref = clarabel_sharpe(cov, sigma)
    assert sharpe(sol.weights, cov, sigma) >= sharpe(ref, cov, sigma) - 1e-10
    np.testing.assert_allclose(sol.weights, ref, atol=1e-6)


# ----------------------------------------------------------------------------- risk budgeting


def test_risk_budgets_met_to_1e10():
    rng = np.random.default_rng(29)
    for n in (5, 60):
        cov = factor_cov(rng, n)
        budgets = rng.uniform(0.05, 1.0, n) ** 2
        budgets /= budgets.sum()
        w, info = risk_budget_weights(cov, budgets)
        assert info["converged"] and info["iterations"] < 30
        assert w.min() > 0 and w.sum() == pytest.approx(1.0, abs=1e-14)
        # Contributions recomputed independently from the definition.
        rc = w * (cov @ w) / (w @ cov @ w)
        np.testing.assert_allclose(rc, budgets, atol=1e-10, rtol=0)
        np.testing.assert_allclose(variance_contributions(w, cov, relative=True), rc, rtol=1e-12)


def test_erc_diagonal_is_inverse_volatility():
    rng = np.random.default_rng(31)
    var = rng.uniform(1e-5, 1e-3, 12)
    w, _ = risk_budget_weights(np.diag(var))
    inv_vol = 1 / np.sqrt(var)
    np.testing.assert_allclose(w, inv_vol / inv_vol.sum(), rtol=1e-12)
    # Budgeted, uncorrelated: w_i ∝ sqrt(b_i) / sigma_i.
    b = rng.uniform(0.1, 1, 12)
    b /= b.sum()
    w, _ = risk_budget_weights(np.diag(var), b)
    ref = np.sqrt(b) * inv_vol
    np.testing.assert_allclose(w, ref / ref.sum(), rtol=1e-12)


def test_risk_budget_invalid():
    cov = np.eye(3)
    with pytest.raises(ValidationError, match="budgets"):
        risk_budget_weights(cov, [0.5, 0.5, 0.0])
    with pytest.raises(ValidationError, match="sum to 1"):
        risk_budget_weights(cov, [0.5, 0.5, 0.5])
    with pytest.raises(ValidationError, match="variances"):
        risk_budget_weights(np.diag([1.0, 0.0, 1.0]))


@pytest.fixture(scope="module")
def market_returns():
    from pmkit.datasets import load_market

    close = load_market(start="2015-01-01")["close"].transpose("time", "asset")
    values = close.values
    return values[1:] / values[:-1] - 1.0, list(close["asset"].values)


def test_erc_matches_riskfolio_on_market_data(market_returns):
    rp = pytest.importorskip("riskfolio")
    pd = pytest.importorskip("pandas")
    values, assets = market_returns
    frame = pd.DataFrame(values, columns=assets)
    port = rp.Portfolio(returns=frame)
    port.assets_stats(method_mu="hist", method_cov="hist")
    cov = frame.cov().to_numpy()
    n = len(assets)
    budgets = np.linspace(1.0, 3.0, n)
    budgets /= budgets.sum()
    for b in (None, budgets):
        ref = port.rp_optimization(
            model="Classic", rm="MV", rf=0, b=None if b is None else b.reshape(-1, 1), hist=True
        )["weights"].to_numpy()
        w, info = risk_budget_weights(cov, b)
        target = np.full(n, 1 / n) if b is None else b
        # riskfolio (cvxpy, interior point) meets budgets to ~1e-6; Newton to rounding.
        np.testing.assert_allclose(w, ref, atol=1e-5)
        assert np.abs(variance_contributions(w, cov, relative=True) - target).max() <= 1e-10
        rc_ref = variance_contributions(ref, cov, relative=True)
        assert info["max_error"] <= np.abs(rc_ref - target).max()


def test_jax_risk_budget_matches_numpy():
    pytest.importorskip("jax")
    import pmkit.core  # noqa: F401  (x64 switch before jax arrays are made)
    from pmkit.core.risk_budget import risk_budget_weights as jax_rb

    rng = np.random.default_rng(37)
    covs = np.stack([factor_cov(rng, 8) for _ in range(16)])
    budgets = rng.uniform(0.2, 1.0, (16, 8))
    budgets /= budgets.sum(axis=1, keepdims=True)
    w, _, err = jax_rb(covs, budgets)
    w = np.asarray(w)
    assert np.asarray(err).max() <= 1e-12
    for g in range(16):
        ref, _ = risk_budget_weights(covs[g], budgets[g])
        np.testing.assert_allclose(w[g], ref, atol=1e-13)
    # Shared budgets broadcast over the batch of covariances.
    w_eq, _, _ = jax_rb(covs, np.full(8, 1 / 8))
    np.testing.assert_allclose(np.asarray(w_eq)[3], risk_budget_weights(covs[3])[0], atol=1e-13)


# ----------------------------------------------------------------------------- CVaR LP


@pytest.fixture(scope="module")
def scenarios():
    rng = np.random.default_rng(41)
    t, n = 400, 15
    f = rng.standard_t(4, (t, 2)) * 0.008
    return 3e-4 + f @ rng.uniform(0.3, 1.2, (2, n)) + rng.normal(0, 0.01, (t, n))


def cvxpy_cvar(r, confidence, lo, up, a_ub=None, b_ub=None, mu=None, min_return=None):
    t, n = r.shape
    w, alpha = cp.Variable(n), cp.Variable()
    cons = [cp.sum(w) == 1, w >= lo, w <= up]
    if a_ub is not None:
        cons.append(a_ub @ w <= b_ub)
    if mu is not None:
        cons.append(mu @ w >= min_return)
    obj = alpha + cp.sum(cp.pos(-r @ w - alpha)) / ((1 - confidence) * t)
    prob = cp.Problem(cp.Minimize(obj), cons)
    with warnings.catch_warnings():
        # cvxpy's bound propagation multiplies 0 by an infinite bound (its own noise).
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        prob.solve(solver="HIGHS")
    assert prob.status == "optimal"
    return w.value, prob.value


@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_cvar_lp_matches_cvxpy(scenarios, confidence):
    _, v_ref = cvxpy_cvar(scenarios, confidence, 0.0, 0.25)
    for strategy in ("cuts", "full"):
        sol = min_cvar_lp(scenarios, confidence, upper=0.25, strategy=strategy)
        assert sol.cvar == pytest.approx(v_ref, abs=1e-8)
        assert sol.weights.min() >= 0 and sol.weights.max() <= 0.25
        assert sol.weights.sum() == pytest.approx(1.0, abs=1e-9)
        _, cvar = cvar_of(scenarios, sol.weights, confidence)  # independent of the LP
        assert cvar == pytest.approx(sol.cvar, abs=1e-10)
        # The LP's VaR minimizes the Rockafellar-Uryasev function of the returned weights.
        loss = -scenarios @ sol.weights
        ru = sol.var + np.maximum(loss - sol.var, 0).sum() / ((1 - confidence) * len(loss))
        assert ru == pytest.approx(cvar, abs=1e-10)


def test_cvar_lp_general_constraints(scenarios):
    n = scenarios.shape[1]
    sector = np.zeros((2, n))
    sector[0, :5] = 1.0  # first five assets: at most 20 %
    sector[1, 5:10] = -1.0  # next five: at least 30 %
    b_ub = np.array([0.2, -0.3])
    mu = scenarios.mean(axis=0)
    floor = float(np.quantile(mu, 0.7))
    _, v_ref = cvxpy_cvar(scenarios, 0.95, -0.05, 0.3, sector, b_ub, mu, floor)
    sol = min_cvar_lp(
        scenarios, 0.95, lower=-0.05, upper=0.3, a_ub=sector, b_ub=b_ub, mu=mu, min_return=floor
    )
    assert sol.cvar == pytest.approx(v_ref, abs=1e-8)
    assert np.all(sector @ sol.weights <= b_ub + 1e-9)
    assert mu @ sol.weights >= floor - 1e-12
    assert cvar_of(scenarios, sol.weights, 0.95)[1] == pytest.approx(sol.cvar, abs=1e-10)


def test_cvar_lp_infeasible_and_invalid(scenarios):
    with pytest.raises(InfeasibleError):
        min_cvar_lp(scenarios, 0.95, upper=0.05)  # 15 x 5 % < 100 %
    with pytest.raises(ValidationError, match="confidence"):
        min_cvar_lp(scenarios, 1.0)
    bad = scenarios.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValidationError, match="returns"):
        min_cvar_lp(bad)


def test_cvar_lp_long_short_unbounded_relaxation(scenarios):
    # confidence = 0.99 keeps 8 of 400 scenarios at first, fewer than the 15 free weights: the
    # relaxation is unbounded and the kernel must fall back to the complete LP.
    _, v_ref = cvxpy_cvar(scenarios, 0.99, -np.inf, np.inf)
    sol = min_cvar_lp(scenarios, 0.99, lower=-np.inf, upper=np.inf)
    assert sol.cvar == pytest.approx(v_ref, abs=1e-8)
    assert sol.weights.sum() == pytest.approx(1.0, abs=1e-9)
    assert cvar_of(scenarios, sol.weights, 0.99)[1] == pytest.approx(sol.cvar, abs=1e-10)
