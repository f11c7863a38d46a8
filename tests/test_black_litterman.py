"""Black–Litterman (pmkit.optimize.black_litterman).

References:

- He, G. and Litterman, R. (1999), "The Intuition Behind Black-Litterman Model
  Portfolios", Goldman Sachs Investment Management Research. Inputs: the
  correlations, volatilities and equilibrium weights of the seven countries
  (the paper's Tables 1-2), delta = 2.5, tau = 0.05. Outputs: equilibrium
  returns (Table 2), posterior returns mu and unconstrained weights w*
  (Tables 4-8) and the view weights lambda. The numbers below are the
  paper's printed ones, as transcribed identically by independent public
  reproductions (Hudson & Thames mlfinlab tests, the EDHEC
  "Introduction to Black-Litterman in Python" lab, Walters' hlbl.m driver).
  Printed to 0.1 pp: the tolerance is the 0.05 pp rounding plus 0.03 pp for
  the rounded inputs (correlations to 3 decimals, weights to 0.1 pp).
- Idzorek, T. (2005), "A Step-by-Step Guide to the Black-Litterman Model:
  Incorporating user-specified confidence levels" (draft of 26 Apr 2005).
  Inputs: Table 5 covariance, Table 2 market weights, the three views of
  section 2.2 with the market-cap P of Formula 7, tau = 0.025. Outputs:
  Table 1 implied returns, Table 6 (posterior E[R] and weights w), the
  100 %-confidence weights and the implied confidence levels of Table 7.
  Printed to 0.01 pp.
- PyPortfolioOpt 1.6 (``pypfopt.black_litterman``) as an independent
  implementation: He–Litterman omega, Walters' closed form of Idzorek's
  omega, posterior mean and covariance, implied prior, market risk aversion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pmkit.errors import AlignmentError, UnknownAssetError, ValidationError
from pmkit.optimize.black_litterman import (
    BlackLitterman,
    View,
    he_litterman_omega,
    idzorek_omega,
    implied_returns,
    market_implied_risk_aversion,
    unconstrained_weights,
    view_matrices,
)

# ------------------------------------------------------------------ He & Litterman (1999)

HL_ASSETS = ["Australia", "Canada", "France", "Germany", "Japan", "UK", "USA"]
HL_CORR = np.array(
    [
        [1.000, 0.488, 0.478, 0.515, 0.439, 0.512, 0.491],
        [0.488, 1.000, 0.664, 0.655, 0.310, 0.608, 0.779],
        [0.478, 0.664, 1.000, 0.861, 0.355, 0.783, 0.668],
        [0.515, 0.655, 0.861, 1.000, 0.354, 0.777, 0.653],
        [0.439, 0.310, 0.355, 0.354, 1.000, 0.405, 0.306],
        [0.512, 0.608, 0.783, 0.777, 0.405, 1.000, 0.652],
        [0.491, 0.779, 0.668, 0.653, 0.306, 0.652, 1.000],
    ]
)
HL_VOL = np.array([0.160, 0.203, 0.248, 0.271, 0.210, 0.200, 0.187])
HL_WEQ = np.array([0.016, 0.022, 0.052, 0.055, 0.116, 0.124, 0.615])
HL_PI = [3.9, 6.9, 8.4, 9.0, 4.3, 6.8, 7.6]  # Table 2, percent
HL_TOL = 0.08  # percentage points, see the module docstring

# View 1: Germany outperforms a market-cap weighted France/UK by 5 %; view 2: Canada beats the
# USA by 3 % (Table 5) or 4 % (Tables 6-8); view 3 (Table 8): Canada beats Japan by 4.12 %.
VIEW1 = View.relative("Germany", {"France": 0.052, "UK": 0.124}, 0.05)
# Table -> (views, view-variance multipliers of Omega or None, mu %, w* %, lambda or None)
HL_TABLES = {
    "table 4": (
        [VIEW1], None,
        [4.3, 7.6, 9.3, 11.0, 4.5, 7.0, 8.1], [1.5, 2.1, -4.0, 35.4, 11.0, -9.5, 58.6], None,
    ),
    "table 5": (
        [VIEW1, ("Canada", ">", "USA", 0.03)], None,
        [4.4, 8.7, 9.5, 11.2, 4.6, 7.0, 7.5], [1.5, 41.9, -3.4, 33.6, 11.0, -8.2, 18.8],
        [0.298, 0.418],
    ),
    "table 6": (
        [VIEW1, ("Canada", ">", "USA", 0.04)], None,
        [4.4, 9.1, 9.5, 11.3, 4.6, 7.0, 7.3], [1.5, 53.3, -3.3, 33.1, 11.0, -7.8, 7.3],
        [0.292, 0.538],
    ),
    "table 7": (  # less confidence in view 1: its variance doubled
        [VIEW1, ("Canada", ">", "USA", 0.04)], [2.0, 1.0],
        [4.3, 8.9, 9.3, 10.6, 4.6, 6.9, 7.2], [1.5, 53.9, -0.5, 23.6, 11.0, -1.1, 6.8],
        [0.193, 0.544],
    ),
    "table 8": (  # a third view at the value implied by the others gets zero weight
        [VIEW1, ("Canada", ">", "USA", 0.04), ("Canada", ">", "Japan", 0.0412)], [2.0, 1.0, 1.0],
        [4.3, 8.9, 9.3, 10.6, 4.6, 6.9, 7.2], [1.5, 53.9, -0.5, 23.6, 11.0, -1.1, 6.8],
        [0.193, 0.544, 0.0],
    ),
}


def labelled_cov(values: np.ndarray, assets: list[str]) -> xr.DataArray:
    return xr.DataArray(
        values, dims=("asset", "asset_j"), coords={"asset": assets, "asset_j": assets}
    )


def labelled(values, assets, dim: str = "asset") -> xr.DataArray:
    return xr.DataArray(np.asarray(values, dtype=float), dims=(dim,), coords={dim: assets})


@pytest.fixture(scope="module")
def hl_cov() -> xr.DataArray:
    return labelled_cov(np.outer(HL_VOL, HL_VOL) * HL_CORR, HL_ASSETS)


@pytest.fixture(scope="module")
def hl_weights() -> xr.DataArray:
    return labelled(HL_WEQ, HL_ASSETS)


def test_he_litterman_equilibrium_returns_table_2(hl_cov, hl_weights):
    pi = implied_returns(hl_cov, hl_weights, risk_aversion=2.5)
    np.testing.assert_allclose(pi.values * 100, HL_PI, atol=0.05)
    # Reverse optimization recovers the weights; caps in any unit give the same prior.
    np.testing.assert_allclose(unconstrained_weights(pi, hl_cov, 2.5).values, HL_WEQ, rtol=1e-12)
    caps = {a: w * 7.3e12 for a, w in zip(HL_ASSETS, HL_WEQ, strict=True)}
    np.testing.assert_allclose(implied_returns(hl_cov, caps, 2.5).values, pi.values, rtol=1e-12)
    shifted = implied_returns(hl_cov, hl_weights, 2.5, risk_free=0.03)
    np.testing.assert_allclose(shifted.values, pi.values + 0.03, rtol=1e-12)


@pytest.mark.parametrize("table", list(HL_TABLES))
def test_he_litterman_tables_4_to_8(hl_cov, hl_weights, table):
    views, scale, mu_pub, w_pub, lam_pub = HL_TABLES[table]
    omega = "he_litterman"
    if scale is not None:
        pick, _ = view_matrices(views, HL_ASSETS)
        omega = np.diag(np.diag(he_litterman_omega(hl_cov, pick, 0.05).values) * scale)
    res = BlackLitterman(hl_weights, views, risk_aversion=2.5, tau=0.05, omega=omega).fit(hl_cov)
    np.testing.assert_allclose(res.mu.values * 100, mu_pub, atol=HL_TOL)
    np.testing.assert_allclose(res.weights.values * 100, w_pub, atol=HL_TOL)
    # Their eq. (17): w* = (w_eq + P' Lambda) / (1 + tau), the tilt lies in the span of the view
    # portfolios; assets in no view keep w_eq / (1 + tau) exactly.
    tilt = 1.05 * res.weights.values - HL_WEQ
    lam, *_ = np.linalg.lstsq(res.P.values.T, tilt, rcond=None)
    np.testing.assert_allclose(res.P.values.T @ lam, tilt, atol=1e-12)
    unviewed = ~(res.P.values != 0).any(axis=0)
    assert unviewed.sum() >= 1
    np.testing.assert_allclose(res.weights.values[unviewed], HL_WEQ[unviewed] / 1.05, rtol=1e-12)
    if lam_pub is not None:
        np.testing.assert_allclose(lam, lam_pub, atol=0.0015)  # printed to 3 decimals
    else:  # Table 4's text prints Lambda / (1 + tau) = 0.302
        assert lam[0] / 1.05 == pytest.approx(0.302, abs=0.0015)


def test_view_1_pick_matrix_is_cap_weighted(hl_weights):
    pick, q = view_matrices([VIEW1], HL_ASSETS)
    # He & Litterman's P row for view 1: -29.5 % France, 100 % Germany, -70.5 % UK.
    np.testing.assert_allclose(pick.values[0] * 100, [0, 0, -29.5, 100, 0, -70.5, 0], atol=0.05)
    assert q.values.tolist() == [0.05]
    assert pick.dims == ("view", "asset") and "Germany" in str(pick["description"].values[0])


# ------------------------------------------------------------------ Idzorek (2005)

IDZ_ASSETS = [
    "US Bonds", "Intl Bonds", "US Large Growth", "US Large Value",
    "US Small Growth", "US Small Value", "Intl Dev Equity", "Intl Emerg Equity",
]
IDZ_COV = np.array(  # Table 5
    [
        [0.001005, 0.001328, -0.000579, -0.000675, 0.000121, 0.000128, -0.000445, -0.000437],
        [0.001328, 0.007277, -0.001307, -0.000610, -0.002237, -0.000989, 0.001442, -0.001535],
        [-0.000579, -0.001307, 0.059852, 0.027588, 0.063497, 0.023036, 0.032967, 0.048039],
        [-0.000675, -0.000610, 0.027588, 0.029609, 0.026572, 0.021465, 0.020697, 0.029854],
        [0.000121, -0.002237, 0.063497, 0.026572, 0.102488, 0.042744, 0.039943, 0.065994],
        [0.000128, -0.000989, 0.023036, 0.021465, 0.042744, 0.032056, 0.019881, 0.032235],
        [-0.000445, 0.001442, 0.032967, 0.020697, 0.039943, 0.019881, 0.028355, 0.035064],
        [-0.000437, -0.001535, 0.048039, 0.029854, 0.065994, 0.032235, 0.035064, 0.079958],
    ]
)
IDZ_WEIGHTS = np.array([0.1934, 0.2613, 0.1209, 0.1209, 0.0134, 0.0134, 0.2418, 0.0349])
IDZ_PI = np.array([0.08, 0.67, 6.41, 4.08, 7.43, 3.70, 4.80, 6.60])  # Table 1, percent
IDZ_P = np.array(  # Formula 7
    [
        [0, 0, 0, 0, 0, 0, 1, 0],
        [-1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0.9, -0.9, 0.1, -0.1, 0, 0],
    ],
    dtype=float,
)
IDZ_Q = np.array([0.0525, 0.0025, 0.02])
IDZ_CONFIDENCES = [0.25, 0.50, 0.65]
IDZ_TAU = 0.025


@pytest.fixture(scope="module")
def idz():
    cov = labelled_cov(IDZ_COV, IDZ_ASSETS)
    weights = labelled(IDZ_WEIGHTS, IDZ_ASSETS)
    pick = xr.DataArray(IDZ_P, dims=("view", "asset"), coords={"asset": IDZ_ASSETS})
    q = xr.DataArray(IDZ_Q, dims=("view",))
    # The paper gives delta as "approximately 3.07"; the delta its Table 1 was computed with is
    # recovered from Table 1 itself by least squares (3.065, which rounds to 3.07).
    s = IDZ_COV @ IDZ_WEIGHTS
    delta = float((IDZ_PI / 100) @ s / (s @ s))
    assert delta == pytest.approx(3.07, abs=0.006)
    return cov, weights, pick, q, delta


def test_idzorek_table_6_and_table_7(idz):
    cov, weights, pick, q, delta = idz
    res = BlackLitterman(weights, (pick, q), risk_aversion=delta, tau=IDZ_TAU).fit(cov)
    np.testing.assert_allclose(res.prior.values * 100, IDZ_PI, atol=0.005)  # Table 1
    # p. 15: Omega = diag(tau p Sigma p') = diag(0.000709, 0.000141, 0.000866)
    np.testing.assert_allclose(np.diag(res.omega.values), [0.000709, 0.000141, 0.000866],
                               atol=5e-7)
    # Table 6: New Combined Return Vector E[R] and New Weight Vector (w with the prior Sigma).
    np.testing.assert_allclose(res.mu.values * 100,
                               [0.07, 0.50, 6.50, 4.32, 7.59, 3.94, 4.93, 6.84], atol=0.01)
    w = unconstrained_weights(res.mu, cov, delta).values * 100
    np.testing.assert_allclose(w, [29.88, 15.59, 9.35, 14.82, 1.04, 1.65, 27.81, 3.49],
                               atol=0.01)
    # Table 7: the 100 %-confidence weights (Omega = 0) and the confidence each view's tilt
    # implies, (w - w_mkt) / (w_100 - w_mkt), for the assets in views.
    full = BlackLitterman(weights, (pick, q), risk_aversion=delta, tau=IDZ_TAU,
                          omega=np.zeros(3)).fit(cov)
    np.testing.assert_allclose(full.P.values @ full.mu.values, IDZ_Q, atol=1e-15)
    w100 = unconstrained_weights(full.mu, cov, delta).values * 100
    np.testing.assert_allclose(w100, [43.82, 1.65, 3.81, 20.37, 0.42, 2.26, 35.21, 3.49],
                               atol=0.02)
    implied = (w - IDZ_WEIGHTS * 100)[:7] / (w100 - IDZ_WEIGHTS * 100)[:7] * 100
    np.testing.assert_allclose(implied, [43.06, 43.06, 33.02, 33.02, 33.02, 33.02, 32.94],
                               atol=0.02)


def test_idzorek_confidences_match_definition_and_pypfopt(idz):
    from pypfopt.black_litterman import BlackLittermanModel

    cov, weights, pick, q, delta = idz
    res = BlackLitterman(weights, (pick, q), risk_aversion=delta, tau=IDZ_TAU, omega="idzorek",
                         confidences=IDZ_CONFIDENCES).fit(cov)
    omega = np.diag(res.omega.values)
    # The paper's definition, view by view with numpy: the posterior weights' tilt from the
    # market weights is C_k times the tilt of the 100 %-confident posterior.
    sigma, pi = IDZ_COV, res.prior.values
    for k, c in enumerate(IDZ_CONFIDENCES):
        p, v = IDZ_P[k], IDZ_TAU * IDZ_P[k] @ IDZ_COV @ IDZ_P[k]

        def weights_with(om, p=p, v=v, k=k):
            mu = pi + IDZ_TAU * sigma @ p * (IDZ_Q[k] - p @ pi) / (v + om)
            return np.linalg.solve(delta * sigma, mu)

        tilt_full = weights_with(0.0) - IDZ_WEIGHTS
        np.testing.assert_allclose(weights_with(omega[k]) - IDZ_WEIGHTS, c * tilt_full,
                                   rtol=1e-9, atol=1e-13)
    # PyPortfolioOpt: Walters' closed form, then its own posterior.
    ref = BlackLittermanModel(
        pd.DataFrame(IDZ_COV, index=IDZ_ASSETS, columns=IDZ_ASSETS), pi=res.prior.values,
        Q=IDZ_Q, P=IDZ_P, omega="idzorek", view_confidences=IDZ_CONFIDENCES, tau=IDZ_TAU,
        risk_aversion=delta,
    )
    np.testing.assert_allclose(omega, np.diag(ref.omega), rtol=1e-10)
    np.testing.assert_allclose(res.mu.values, ref.bl_returns().values, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(res.cov.values, ref.bl_cov().values, rtol=1e-12, atol=1e-16)
    # The standalone function gives the same Omega.
    direct = idzorek_omega(cov, pick, q, IDZ_CONFIDENCES, res.prior, tau=IDZ_TAU,
                           risk_aversion=delta)
    np.testing.assert_allclose(direct.values, res.omega.values, rtol=1e-15)


def test_idzorek_confidence_extremes(idz):
    cov, weights, pick, q, delta = idz

    def fit(conf):
        return BlackLitterman(weights, (pick, q), risk_aversion=delta, tau=IDZ_TAU,
                              omega="idzorek", confidences=conf).fit(cov)

    certain = fit([1.0, 1.0, 1.0])
    np.testing.assert_array_equal(certain.omega.values, np.zeros((3, 3)))
    np.testing.assert_allclose(pick.values @ certain.mu.values, IDZ_Q, atol=1e-15)
    ignored = fit([0.0, 0.0, 0.0])
    assert np.isinf(np.diag(ignored.omega.values)).all()
    np.testing.assert_array_equal(ignored.mu.values, ignored.prior.values)
    np.testing.assert_allclose(ignored.cov.values, 1.025 * IDZ_COV, rtol=1e-15)
    # A 0 % view drops out: the same posterior as without it.
    mixed = fit([0.0, 0.5, 0.65])
    without = BlackLitterman(weights, (pick[1:], q[1:]), risk_aversion=delta, tau=IDZ_TAU,
                             omega="idzorek", confidences=[0.5, 0.65]).fit(cov)
    np.testing.assert_allclose(mixed.mu.values, without.mu.values, rtol=1e-14)
    # Confidences can sit on the views instead.
    on_views = BlackLitterman(
        weights,
        [View({"Intl Dev Equity": 1.0}, 0.0525, confidence=0.25),
         View.relative("Intl Bonds", "US Bonds", 0.0025, confidence=0.5),
         View.relative({"US Large Growth": 0.9, "US Small Growth": 0.1},
                       {"US Large Value": 0.9, "US Small Value": 0.1}, 0.02, confidence=0.65)],
        risk_aversion=delta, tau=IDZ_TAU, omega="idzorek",
    ).fit(cov)
    np.testing.assert_allclose(on_views.mu.values, fit(IDZ_CONFIDENCES).mu.values, rtol=1e-12)


# ------------------------------------------------------------------ invariants


def test_no_views_gives_the_prior(hl_cov, hl_weights):
    res = BlackLitterman(hl_weights, [], tau=0.05).fit(hl_cov)
    np.testing.assert_array_equal(res.mu.values, res.prior.values)
    np.testing.assert_allclose(res.cov.values, 1.05 * hl_cov.values, rtol=1e-15)
    np.testing.assert_allclose(res.weights.values, HL_WEQ / 1.05, rtol=1e-12)
    assert res.omega.shape == (0, 0) and res.P.shape == (0, 7)


def test_certain_views_hold_exactly(hl_cov, hl_weights):
    views = [VIEW1, ("Canada", ">", "USA", 0.04), ("Japan", 0.07)]
    exact = BlackLitterman(hl_weights, views, omega=np.zeros(3)).fit(hl_cov)
    np.testing.assert_allclose(exact.P.values @ exact.mu.values, [0.05, 0.04, 0.07], atol=1e-15)
    # ... and are the limit of shrinking uncertainty.
    hl = np.diag(he_litterman_omega(hl_cov, exact.P, 0.05).values)
    near = BlackLitterman(hl_weights, views, omega=hl * 1e-9).fit(hl_cov)
    np.testing.assert_allclose(near.mu.values, exact.mu.values, atol=1e-10)


def test_view_at_its_implied_value_changes_nothing(hl_cov, hl_weights):
    base = BlackLitterman(hl_weights, [VIEW1]).fit(hl_cov)
    implied = float(base.mu.sel(asset="Canada") - base.mu.sel(asset="USA"))
    more = BlackLitterman(hl_weights, [VIEW1, ("Canada", ">", "USA", implied)]).fit(hl_cov)
    np.testing.assert_allclose(more.mu.values, base.mu.values, rtol=1e-13)
    # A view equal to the prior itself, alone: posterior mean = prior.
    prior_view = float(base.prior.sel(asset="Japan"))
    alone = BlackLitterman(hl_weights, [("Japan", prior_view)], omega="idzorek",
                           confidences=[0.4]).fit(hl_cov)
    np.testing.assert_allclose(alone.mu.values, alone.prior.values, rtol=1e-14)


def test_posterior_is_the_precision_weighted_mean(hl_cov, hl_weights):
    """Stable form == the textbook [(tau S)^-1 + P'O^-1 P]^-1 [(tau S)^-1 pi + P'O^-1 Q]."""
    res = BlackLitterman(hl_weights, [VIEW1, ("Canada", ">", "USA", 0.03)],
                         risk_free=0.02).fit(hl_cov)
    ts_inv = np.linalg.inv(0.05 * hl_cov.values)
    p, o_inv = res.P.values, np.linalg.inv(res.omega.values)
    precision = ts_inv + p.T @ o_inv @ p
    mu = np.linalg.solve(precision, ts_inv @ res.prior.values + p.T @ o_inv @ res.Q.values)
    np.testing.assert_allclose(res.mu.values, mu, rtol=1e-12)
    np.testing.assert_allclose(res.cov.values, hl_cov.values + np.linalg.inv(precision),
                               rtol=1e-12)
    w = np.linalg.solve(2.5 * res.cov.values, res.mu.values - 0.02)
    np.testing.assert_allclose(res.weights.values, w, rtol=1e-12)


def test_view_specs_are_equivalent(hl_cov):
    specs = [
        ("Canada", ">", "USA", 0.02),
        ("USA", "<", "Canada", 0.02),
        View.relative({"Canada": 1}, {"USA": 1}, 0.02),
        View.relative(["Canada"], "USA", 0.02),
    ]
    rows = [view_matrices([s], HL_ASSETS)[0].values[0] for s in specs]
    for row in rows[1:]:
        np.testing.assert_array_equal(row, rows[0])
    pick, q = view_matrices([("Japan", 0.07), View.absolute("UK", -0.01)], HL_ASSETS)
    assert pick.sel(asset="Japan").values.tolist() == [1.0, 0.0]
    assert q.values.tolist() == [0.07, -0.01]


def test_raw_p_q_equal_spec_views(hl_cov, hl_weights):
    specs = [VIEW1, ("Canada", ">", "USA", 0.03)]
    pick, q = view_matrices(specs, HL_ASSETS)
    # Raw P may name only the assets it uses, in any order.
    partial = pick.sel(asset=["USA", "UK", "Germany", "France", "Canada"])
    a = BlackLitterman(hl_weights, specs).fit(hl_cov)
    b = BlackLitterman(hl_weights, (partial, q)).fit(hl_cov)
    np.testing.assert_allclose(b.mu.values, a.mu.values, rtol=1e-14)
    # cov in another asset order gives the same (labelled) answer
    shuffled = hl_cov.isel(asset=[6, 2, 0, 1, 5, 3, 4], asset_j=[6, 2, 0, 1, 5, 3, 4])
    c = BlackLitterman(hl_weights, specs).fit(shuffled)
    np.testing.assert_allclose(c.mu.sel(asset=HL_ASSETS).values, a.mu.values, rtol=1e-13)


# ------------------------------------------------------------------ PyPortfolioOpt, real data


@pytest.fixture(scope="module")
def real():
    from pmkit.datasets import load_benchmark, load_market
    from pmkit.model import simple_returns
    from pmkit.optimize.estimators import covariance

    returns = simple_returns(load_market(start="2015-01-01", include_etfs=False))
    cov = covariance(returns, "ledoit_wolf", annualize=True)
    index = load_benchmark(start="2015-01-01")
    return cov, index


def test_market_implied_risk_aversion_matches_pypfopt(real):
    from pypfopt.black_litterman import market_implied_risk_aversion as ref

    _, index = real
    prices = index.to_pandas()
    market = (index / index.shift(time=1) - 1).rename("SP500")
    for rf in (0.0, 0.02):
        assert market_implied_risk_aversion(market, risk_free=rf) == pytest.approx(
            ref(prices, risk_free_rate=rf), rel=1e-12
        )


def test_posterior_matches_pypfopt_on_real_data(real):
    from pypfopt.black_litterman import BlackLittermanModel, market_implied_prior_returns

    cov, index = real
    assets = [str(a) for a in cov["asset"].values]
    caps = {a: float(i + 1) for i, a in enumerate(assets)}  # any positive caps
    delta = market_implied_risk_aversion(index / index.shift(time=1) - 1, risk_free=0.02)
    views = [("AAPL", 0.12), ("MSFT", ">", "JNJ", 0.03), ("XOM", "<", ["CVX", "RRC"], 0.01)]
    res = BlackLitterman(caps, views, risk_aversion=delta, tau=0.05, risk_free=0.02).fit(cov)

    s = cov.to_pandas()
    pi = market_implied_prior_returns(pd.Series(caps), delta, s, risk_free_rate=0.02)
    np.testing.assert_allclose(res.prior.values, pi.values, rtol=1e-12)
    ref = BlackLittermanModel(s, pi=pi, Q=res.Q.values, P=res.P.values, tau=0.05,
                              risk_aversion=delta)
    np.testing.assert_allclose(res.omega.values, ref.omega, rtol=1e-12)
    np.testing.assert_allclose(res.mu.values, ref.bl_returns().values, rtol=1e-12)
    np.testing.assert_allclose(res.cov.values, ref.bl_cov().values, rtol=1e-12)
    # One view alone with He-Litterman's Omega = tau p S p' moves its portfolio exactly halfway
    # from the prior to the view: p mu = p pi + v / (v + omega) (q - p pi), v = tau p S p'.
    for k in range(3):
        single = BlackLitterman(caps, [views[k]], risk_aversion=delta, risk_free=0.02).fit(cov)
        row, value = single.P.values[0], float(single.Q.values[0])
        prior_v = row @ single.prior.values
        assert row @ single.mu.values == pytest.approx((prior_v + value) / 2, rel=1e-12)


# ------------------------------------------------------------------ errors


def test_bad_inputs_raise_typed_errors(hl_cov, hl_weights):
    with pytest.raises(ValidationError, match="tau"):
        BlackLitterman(hl_weights, [VIEW1], tau=0.0)
    with pytest.raises(ValidationError, match="risk_aversion"):
        BlackLitterman(hl_weights, [VIEW1], risk_aversion=-1.0)
    with pytest.raises(ValidationError, match=r"confidences\[1\]"):
        BlackLitterman(hl_weights, [VIEW1, ("Japan", 0.05)], omega="idzorek",
                       confidences=[0.5, 1.2])
    with pytest.raises(ValidationError, match="confidences"):
        BlackLitterman(hl_weights, [VIEW1], omega="idzorek", confidences=[0.5, 0.5])
    with pytest.raises(ValidationError, match="confidences"):
        BlackLitterman(hl_weights, [VIEW1], omega="idzorek")
    with pytest.raises(ValidationError, match="confidences"):
        BlackLitterman(hl_weights, [VIEW1], confidences=[0.5])
    with pytest.raises(ValidationError, match=r"view\.confidence"):
        View.absolute("Japan", 0.05, confidence=-0.1)
    with pytest.raises(UnknownAssetError) as info:
        BlackLitterman(hl_weights, [("Brazil", ">", "USA", 0.02)])
    assert info.value.value == "Brazil" and info.value.field == "views[0]"
    with pytest.raises(ValidationError, match=r"views\[1\]"):
        BlackLitterman(hl_weights, [VIEW1, ("Japan", "=", "UK", 0.01)])
    pick, q = view_matrices([VIEW1, ("Japan", 0.05)], HL_ASSETS)
    with pytest.raises(ValidationError, match="Q"):
        BlackLitterman(hl_weights, (pick, q[:1]))
    with pytest.raises(ValidationError, match="omega"):
        BlackLitterman(hl_weights, (pick, q), omega=np.eye(3))
    with pytest.raises(ValidationError, match="omega"):
        BlackLitterman(hl_weights, (pick, q), omega=[-1.0, 1.0])


def test_bad_covariance_raises(hl_cov, hl_weights):
    model = BlackLitterman(hl_weights, [VIEW1])
    indefinite = hl_cov.copy(data=hl_cov.values - 0.02 * np.eye(7))
    assert np.linalg.eigvalsh(indefinite.values)[0] < 0
    with pytest.raises(ValidationError, match="positive semi-definite") as info:
        model.fit(indefinite)
    assert info.value.field == "cov"
    skew = hl_cov.values.copy()
    skew[0, 1] += 1e-3
    with pytest.raises(ValidationError, match="symmetric"):
        model.fit(hl_cov.copy(data=skew))
    with pytest.raises(AlignmentError, match="USA"):
        model.fit(hl_cov.isel(asset=slice(0, 6), asset_j=slice(0, 6)))
    bigger = labelled_cov(np.eye(8) * 0.04, [*HL_ASSETS, "Brazil"])
    with pytest.raises(UnknownAssetError, match="Brazil"):
        model.fit(bigger)
    # Two certain views on the same portfolio: P tau Sigma P' + Omega is singular.
    twice = BlackLitterman(hl_weights, [("Japan", 0.05), ("Japan", 0.06)], omega=np.zeros(2))
    with pytest.raises(ValidationError, match="singular"):
        twice.fit(hl_cov)
    with pytest.raises(ValidationError, match="market_weights"):
        implied_returns(hl_cov, labelled([-0.1, *HL_WEQ[1:]], HL_ASSETS))
