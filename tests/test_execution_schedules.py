"""Execution schedules (`pmkit.core.schedules`) against independent references.

* The Almgren–Chriss closed form is the exact minimizer of ``E + lambda V``:
  checked against the solution of the first-order conditions (a tridiagonal
  linear system, solved with numpy) for many parameter sets.
* ``E`` and ``V`` are checked against a Monte Carlo simulation of the price
  model of Almgren & Chriss (2000), section 2: arithmetic random walk, linear
  permanent impact, linear temporary impact plus a fixed cost per unit.
* ``E`` and ``V`` of the optimal trajectory equal the paper's closed forms
  (its equations for the optimal strategy's expected cost and variance).
* TWAP is the ``lambda -> 0`` limit; schedules sum to the order; many orders
  in one batched call equal one call per order.
* `almgren_chriss_plan`'s closed-form ``E`` and ``V`` (no reduction over the
  grid) and the holdings and trades equal the definitions evaluated in
  300-digit decimal arithmetic (Python's `decimal`, independent of the float
  formulas), from ``kappa T = 0`` to ``kappa T`` in the thousands.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmkit.core.schedules import (
    almgren_chriss_cost,
    almgren_chriss_kappa,
    almgren_chriss_plan,
    almgren_chriss_trades,
    almgren_chriss_trajectory,
    holdings_from_trades,
    twap_trades,
    vwap_trades,
)


def _first_order_solution(quantity, sigma, eta, gamma, lam, horizon, n):
    """Holdings minimizing E + lambda V: solve its gradient = 0 for x_1..x_{N-1}."""
    tau = horizon / n
    eta_tilde = eta - 0.5 * gamma * tau
    a = eta_tilde / tau
    b = lam * sigma**2 * tau
    m = n - 1
    matrix = np.zeros((m, m))
    rhs = np.zeros(m)
    for i in range(m):
        matrix[i, i] = 2 * a + b
        if i > 0:
            matrix[i, i - 1] = -a
        if i < m - 1:
            matrix[i, i + 1] = -a
    rhs[0] = a * quantity  # x_0 = X enters the first equation; x_N = 0 the last
    inner = np.linalg.solve(matrix, rhs)
    return np.concatenate([[quantity], inner, [0.0]])


params = st.tuples(
    st.floats(1e3, 1e7),  # quantity
    st.floats(0.05, 5.0),  # sigma
    st.floats(1e-7, 1e-4),  # eta
    st.floats(0.0, 1e-6),  # gamma (eta > gamma tau / 2 below)
    st.floats(1e-9, 1e-4),  # lambda
    st.floats(0.5, 10.0),  # horizon
    st.integers(2, 60),  # intervals
)


@settings(max_examples=60, deadline=None)
@given(params)
def test_the_closed_form_minimizes_expected_cost_plus_risk(p):
    quantity, sigma, eta, gamma, lam, horizon, n = p
    if eta <= gamma * horizon / n:
        return
    holdings, trades = almgren_chriss_trajectory(
        np.array([quantity]), sigma, eta, gamma, lam, horizon, intervals=n)
    want = _first_order_solution(quantity, sigma, eta, gamma, lam, horizon, n)
    np.testing.assert_allclose(np.asarray(holdings)[0], want, rtol=1e-8,
                               atol=1e-9 * quantity)
    assert np.asarray(trades).sum() == pytest.approx(quantity, rel=1e-12)
    assert (np.asarray(trades) >= -1e-9 * quantity).all()  # a sell never buys back


def test_twap_is_the_limit_of_no_risk_aversion():
    q = np.array([1e6, 2.5e5])
    _, trades = almgren_chriss_trajectory(q, 0.95, 2.5e-6, 2.5e-7, 0.0, 5.0,
                                                 intervals=5)
    np.testing.assert_allclose(trades, twap_trades(q, 5), rtol=1e-12)
    # and continuously so: a tiny lambda is within its first-order correction of TWAP
    _, near = almgren_chriss_trajectory(q, 0.95, 2.5e-6, 2.5e-7, 1e-12, 5.0, intervals=5)
    np.testing.assert_allclose(near, twap_trades(q, 5), rtol=1e-4)


def test_expected_cost_and_variance_match_a_simulation_of_the_price_model():
    """Monte Carlo of Almgren & Chriss (2000), section 2, selling X over N intervals."""
    x0, s0, sigma, eta, gamma, eps, lam, horizon, n = (1e6, 50.0, 0.95, 2.5e-6, 2.5e-7,
                                                       0.0625, 1e-6, 5.0, 5)
    holdings, trades = almgren_chriss_trajectory(np.array([x0]), sigma, eta, gamma, lam,
                                                 horizon, intervals=n)
    e, v = almgren_chriss_cost(holdings, sigma, eta, gamma, eps, horizon)
    tau = horizon / n
    trades = np.asarray(trades)[0]
    rng = np.random.default_rng(7)
    paths = 400_000
    price = np.full(paths, s0)
    proceeds = np.zeros(paths)
    for k in range(n):
        nk = trades[k]
        # sold in interval k+1 at the last price less the temporary impact
        proceeds += nk * (price - eps - eta * nk / tau)
        # then the price moves by the noise and the permanent impact of the trade
        price = price + sigma * np.sqrt(tau) * rng.standard_normal(paths) - gamma * nk
    shortfall = x0 * s0 - proceeds
    se = shortfall.std() / np.sqrt(paths)
    assert float(e[0]) == pytest.approx(shortfall.mean(), abs=4 * se)
    assert float(v[0]) == pytest.approx(shortfall.var(), rel=0.01)


def test_optimal_cost_and_variance_equal_the_papers_closed_forms():
    """E and V of the optimal trajectory (Almgren & Chriss 2000, section 2.3)."""
    x0, sigma, eta, gamma, eps, horizon, n = 1e6, 0.95, 2.5e-6, 2.5e-7, 0.0625, 5.0, 5
    tau = horizon / n
    for lam in (1e-8, 1e-6, 2e-6, 1e-5):
        holdings, _ = almgren_chriss_trajectory(np.array([x0]), sigma, eta, gamma, lam,
                                                horizon, intervals=n)
        e, v = almgren_chriss_cost(holdings, sigma, eta, gamma, eps, horizon)
        k = float(almgren_chriss_kappa(sigma, eta, gamma, lam, tau))
        eta_tilde = eta - 0.5 * gamma * tau
        e_paper = (0.5 * gamma * x0**2 + eps * x0 + eta_tilde * x0**2 * np.tanh(0.5 * k * tau)
                   * (tau * np.sinh(2 * k * horizon) + 2 * horizon * np.sinh(k * tau))
                   / (2 * tau**2 * np.sinh(k * horizon) ** 2))
        v_paper = (0.5 * sigma**2 * x0**2
                   * (tau * np.sinh(k * horizon) * np.cosh(k * (horizon - tau))
                      - horizon * np.sinh(k * tau))
                   / (np.sinh(k * horizon) ** 2 * np.sinh(k * tau)))
        assert float(e[0]) == pytest.approx(e_paper, rel=1e-9)
        assert float(v[0]) == pytest.approx(v_paper, rel=1e-9)


def test_the_efficient_frontier_trades_cost_for_risk():
    """More risk aversion: less variance, more expected cost (strictly)."""
    lams = np.geomspace(1e-9, 1e-4, 12)
    q = np.full(lams.shape, 1e6)
    holdings, _ = almgren_chriss_trajectory(q, 0.95, 2.5e-6, 2.5e-7, lams, 5.0, intervals=20)
    e, v = almgren_chriss_cost(holdings, 0.95, 2.5e-6, 2.5e-7, 0.0625, 5.0)
    assert (np.diff(np.asarray(v)) < 0).all() and (np.diff(np.asarray(e)) > 0).all()


def test_very_risk_averse_orders_stay_finite_and_trade_at_once():
    q = np.array([1e6])
    holdings, trades = almgren_chriss_trajectory(q, 5.0, 1e-9, 0.0, 1.0, 10.0, intervals=390)
    # kappa * horizon is about 6,500 here: sinh(kappa T) alone would overflow
    assert np.isfinite(np.asarray(holdings)).all()
    np.testing.assert_allclose(np.asarray(holdings)[0],
                               _first_order_solution(1e6, 5.0, 1e-9, 0.0, 1.0, 10.0, 390),
                               rtol=1e-9, atol=1e-9)
    assert float(np.asarray(trades)[0, 0]) == pytest.approx(1e6, rel=1e-6)


def test_many_orders_in_one_call_equal_one_call_each():
    rng = np.random.default_rng(3)
    m = 50
    q = rng.uniform(1e3, 1e6, m)
    sigma = rng.uniform(0.1, 2.0, m)
    eta = rng.uniform(1e-7, 1e-5, m)
    lam = rng.uniform(1e-8, 1e-5, m)
    horizon = rng.uniform(1.0, 5.0, m)
    batch, _ = almgren_chriss_trajectory(q, sigma, eta, 0.0, lam, horizon, intervals=13)
    for i in range(m):
        one, _ = almgren_chriss_trajectory(q[i:i + 1], sigma[i], eta[i], 0.0, lam[i],
                                           horizon[i], intervals=13)
        np.testing.assert_allclose(np.asarray(batch)[i], np.asarray(one)[0], rtol=1e-12)


def test_vwap_follows_the_profile_and_sums_to_the_order():
    profile = np.array([3.0, 2.0, 1.0, 1.0, 2.0, 3.0])  # a U shape
    q = np.array([600.0, 1200.0])
    trades = np.asarray(vwap_trades(q, profile))
    np.testing.assert_allclose(trades.sum(axis=1), q, rtol=1e-12)
    np.testing.assert_allclose(trades[0], 600.0 * profile / profile.sum(), rtol=1e-12)
    holdings = np.asarray(holdings_from_trades(q, trades))
    np.testing.assert_allclose(holdings[:, 0], q)
    np.testing.assert_allclose(holdings[:, -1], 0.0, atol=1e-9)


def test_pov_trades_at_the_rate_until_done_and_leaves_the_residual():
    from pmkit.core.schedules import pov_trades

    volume = np.array([[100.0, 200.0, 50.0, 400.0], [10.0, 10.0, 10.0, 10.0]])
    q = np.array([60.0, 100.0])
    trades = np.asarray(pov_trades(q, volume, np.array([0.1, 0.5])))
    np.testing.assert_allclose(trades[0], [10.0, 20.0, 5.0, 25.0])  # done in interval 4
    np.testing.assert_allclose(trades[1], [5.0, 5.0, 5.0, 5.0])  # 80 left at the end
    rate = np.array([0.1, 0.5])[:, None]
    assert (trades <= rate * volume + 1e-12).all() and (trades >= 0).all()
    assert (trades.sum(axis=1) <= q + 1e-9).all()


def test_the_papers_worked_example_at_its_two_extremes_and_in_between():
    """Almgren & Chriss (2000), section 2.3's example: sell X = 1,000,000 shares of a $50 stock
    (30 % annual volatility: sigma = 0.95 $/share/day^0.5) over T = 5 days in N = 5 daily
    slices, with epsilon = 1/16 $ (half the 1/8 spread), gamma = 2.5e-7 (trading 10 % of
    the 5M daily volume moves the price one spread) and eta = 2.5e-6 (1 % of the volume
    costs one spread). By hand, from the paper's formulas (eta_tilde = eta - gamma tau / 2
    = 2.375e-6, tau = 1 day):

    * the naive strategy (lambda = 0, equal slices):
      E = gamma X^2 / 2 + epsilon X + eta_tilde X^2 / T
        = 125,000 + 62,500 + 475,000 = 662,500 $;
      V = sigma^2 X^2 T (1 - 1/N)(1 - 1/(2N)) / 3 = 0.9025e12 x 5 x 0.8 x 0.9 / 3
        = 1.083e12 $^2 (a standard deviation of $1.04M);
    * the fastest (lambda -> infinity, all in the first period): V = 0 and
      E = gamma X^2 / 2 + epsilon X + eta_tilde X^2 / tau = 125,000 + 62,500 + 2,375,000
        = 2,562,500 $;
    * lambda = 1e-6: kappa = arccosh(1 + lambda sigma^2 tau^2 / (2 eta_tilde)) / tau
      = arccosh(1.19) = 0.6065 per day (a half-life 1 / kappa of 1.65 days).
    """
    from pmkit.execution import AlmgrenChriss

    ac = AlmgrenChriss(permanent=2.5e-7, temporary=2.5e-6, fixed=0.0625)
    plan = ac.schedule([1e6, 1e6, 1e6], volatility=0.95, horizon=5.0, intervals=5,
                       risk_aversion=[0.0, 1.0, 1e-6])
    e, v, kappa = (plan[k].values for k in ("expected_cost", "variance", "kappa"))
    assert e[0] == pytest.approx(662_500.0, rel=1e-12)
    assert v[0] == pytest.approx(1.083e12, rel=1e-12)
    np.testing.assert_allclose(plan["trades"].values[0], [200_000.0] * 5, rtol=1e-12)
    assert e[1] == pytest.approx(2_562_500.0, rel=1e-4)  # x_1 = X e^(-12.85): 2.6 shares left
    assert v[1] < 1e-8 * v[0]
    assert kappa[2] == pytest.approx(np.arccosh(1.19), rel=1e-12)
    assert 1.0 / kappa[2] == pytest.approx(1.65, abs=0.005)
    # the optimum lies between the extremes: cheaper than the fastest, safer than the naive
    assert e[0] < e[2] < e[1] and v[1] < v[2] < v[0]


def _decimal_trajectory(quantity: float, a: float, n: int) -> tuple[list, list]:
    """x_j = X sinh(a (N - j)) / sinh(a N) and its trades, in 300-digit decimals."""
    with localcontext() as ctx:
        ctx.prec = 300
        big_x, rate = Decimal(quantity), Decimal(a)
        if rate == 0:
            x = [big_x * (n - j) / n for j in range(n + 1)]
        else:
            def sinh(z):
                return (z.exp() - (-z).exp()) / 2

            x = [big_x * sinh(rate * (n - j)) / sinh(rate * n) for j in range(n + 1)]
        return x, [x[j - 1] - x[j] for j in range(1, n + 1)]


@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 390])
def test_the_plans_closed_forms_equal_the_definitions_in_exact_arithmetic(n):
    """E = eta/tau sum n^2 (gamma = epsilon = 0), V = sigma^2 tau sum_{j>=1} x_j^2."""
    # tau = 1, eta = sigma = 1: a = arccosh(1 + lambda / 2), from 0 to about 690
    lams = np.array([0.0, 1e-200, 1e-14, 1e-10, 1e-6, 1e-3, 0.1, 1.0, 10.0, 1e3, 1e20, 1e300])
    q = np.full(lams.shape, 1e6)
    holdings, e, v, kappa = almgren_chriss_plan(q, 1.0, 1.0, 0.0, 0.0, lams, float(n),
                                                intervals=n)
    _, trades = almgren_chriss_trajectory(q, 1.0, 1.0, 0.0, lams, float(n), intervals=n)
    holdings, trades, e, v = (np.asarray(x) for x in (holdings, trades, e, v))
    assert np.isfinite(holdings).all() and np.isfinite(trades).all()
    for i, a in enumerate(np.asarray(kappa)):  # kappa per unit time = a per interval
        x, t = _decimal_trajectory(1e6, float(a), n)
        want_v = float(sum(xj * xj for xj in x[1:]))
        want_e = float(sum(tj * tj for tj in t))
        assert e[i] == pytest.approx(want_e, rel=1e-13, abs=1e-300)
        assert v[i] == pytest.approx(want_v, rel=1e-13, abs=1e-300)
        # the holdings' own formula cancels near kappa T = 1e-5 (about 1e-16 / (kappa T))
        np.testing.assert_allclose(holdings[i], [float(xj) for xj in x], rtol=0, atol=1e-5)
        want_t = np.array([float(tj) for tj in t])
        normal = want_t > 1e-250  # below, the float result is subnormal or zero
        np.testing.assert_allclose(trades[i][normal], want_t[normal], rtol=1e-11)


def test_the_plans_cost_and_risk_are_those_of_its_holdings():
    rng = np.random.default_rng(11)
    m = 40
    q = rng.uniform(1e3, 1e6, m)
    vol, eta = rng.uniform(0.05, 2.0, m), rng.uniform(1e-7, 1e-4, m)
    gamma, eps = rng.uniform(0.0, 1e-8, m), rng.uniform(0.0, 0.05, m)
    lam, horizon = np.geomspace(1e-10, 1e-3, m), rng.uniform(0.2, 5.0, m)
    holdings, e, v, kappa = almgren_chriss_plan(q, vol, eta, gamma, eps, lam, horizon,
                                                intervals=78)
    want_e, want_v = almgren_chriss_cost(holdings, vol, eta, gamma, eps, horizon)
    np.testing.assert_allclose(e, want_e, rtol=1e-11)
    np.testing.assert_allclose(v, want_v, rtol=1e-11)
    np.testing.assert_allclose(kappa, almgren_chriss_kappa(vol, eta, gamma, lam, horizon / 78),
                               rtol=1e-15)
    # the trades alone are the trajectory's, and those of the plan's holdings
    both_holdings, both_trades = almgren_chriss_trajectory(q, vol, eta, gamma, lam, horizon,
                                                           intervals=78)
    alone = np.asarray(almgren_chriss_trades(q, vol, eta, gamma, lam, horizon, intervals=78))
    np.testing.assert_allclose(alone, both_trades, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(holdings), both_holdings, rtol=0, atol=1e-9 * q.max())
    np.testing.assert_allclose(alone, -np.diff(np.asarray(holdings), axis=1), rtol=1e-9,
                               atol=1e-9 * q.max())
