"""pmkit.optimize against PyPortfolioOpt, skfolio and riskfolio-lib on the real bundled data.

Data: daily simple returns of the 20 bundled stocks over their last 2,520
days (2012-12-26 to 2022-12-28), a complete panel. Every answer, pmkit's and
the peers', is judged by the same independent numpy formulas written here:

* covariance ``S = cov(X, ddof=1) * 252`` and mean ``m = mean(X) * 252`` —
  the definitions of PyPortfolioOpt (``sample_cov``, ``mean_historical_return``
  with ``compounding=False``) and of pmkit; skfolio and riskfolio estimate the
  same moments per day (unannualized), which leaves the minimum variance,
  maximum Sharpe (risk-free 0) and risk budgeting weights unchanged;
* CVaR at 95 % of the daily loss ``-X w`` from the 2,520 scenarios, the value
  of the Rockafellar–Uryasev program every library solves;
* fractional risk contributions ``w_i (S w)_i / w'S w``.

Assertions: pmkit's weights are feasible (long-only, fully invested, within
the caps) and its objective is equal or better than every peer's within the
stated relative tolerance; where the problem is strictly convex (minimum
variance, maximum Sharpe, risk budgeting) the weights agree within 1e-5.
Peers run with CLARABEL at tight tolerances (1e-12; at its defaults, 1e-8,
their weights differ from the exact optimum by up to 7e-4 on this flat
minimum variance problem) or HiGHS (the CVaR LP).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from numpy.testing import assert_allclose

from pmkit.datasets import load_market
from pmkit.model.market import simple_returns
from pmkit.optimize import Constraints, MaximumSharpe, MinimumVariance
from pmkit.optimize.cvar import MeanCVaR
from pmkit.optimize.hrp import HierarchicalRiskParity
from pmkit.optimize.risk_parity import EqualRiskContribution, RiskBudgeting

DAYS = 2520
CONFIDENCE = 0.95
REL = 1e-6  # objective tolerance: solver accuracy of the peers
WEIGHT_ATOL = 1e-5
# CLARABEL tightened so that the peers' answers are accurate enough to compare weights.
TIGHT = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "tol_ktratio": 1e-10}


@pytest.fixture(scope="module")
def stocks() -> xr.DataArray:
    """``(asset, time)`` daily returns of the 20 stocks, last 2,520 days, no NaN."""
    r = simple_returns(load_market(include_etfs=False)).isel(time=slice(-DAYS, None))
    assert r.sizes["asset"] == 20 and not bool(r.isnull().any())
    return r


@pytest.fixture(scope="module")
def frame(stocks) -> pd.DataFrame:
    """The same numbers as a ``(time, asset)`` DataFrame, the peers' input."""
    return stocks.transpose("time", "asset").to_pandas()


class Judge:
    """Independent objective formulas on one return panel ``X`` (T x N)."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.assets = list(frame.columns)
        self.x = frame.to_numpy()
        self.cov = np.cov(self.x, rowvar=False, ddof=1) * 252
        self.mu = self.x.mean(axis=0) * 252

    def align(self, weights) -> np.ndarray:
        """Weights (DataArray, Series, dict or array in column order) as an array."""
        if isinstance(weights, xr.DataArray):
            return weights.sel(asset=self.assets).values.astype(float)
        if isinstance(weights, pd.DataFrame):
            weights = weights.iloc[:, 0]
        if isinstance(weights, dict | pd.Series):
            return np.array([weights[a] for a in self.assets], dtype=float)
        return np.asarray(weights, dtype=float).ravel()

    def variance(self, w: np.ndarray) -> float:
        return float(w @ self.cov @ w)

    def sharpe(self, w: np.ndarray) -> float:
        return float(self.mu @ w / np.sqrt(w @ self.cov @ w))

    def cvar(self, w: np.ndarray) -> float:
        """Historical CVaR of the daily loss at CONFIDENCE (fractional tail scenario included)."""
        losses = np.sort(-(self.x @ w))[::-1]
        k = (1.0 - CONFIDENCE) * len(losses)
        j = int(np.floor(k))
        tail = losses[:j].sum() + (k - j) * (losses[j] if j < len(losses) else 0.0)
        return float(tail / k)

    def contributions(self, w: np.ndarray) -> np.ndarray:
        sw = self.cov @ w
        return w * sw / float(w @ sw)


@pytest.fixture(scope="module")
def judge(frame) -> Judge:
    return Judge(frame)


def assert_feasible(w: np.ndarray, upper: float | np.ndarray = 1.0) -> None:
    assert w.min() >= -1e-12, f"negative weight {w.min():.3g}"
    assert np.all(w <= np.asarray(upper) + 1e-12), f"above cap by {np.max(w - upper):.3g}"
    assert w.sum() == pytest.approx(1.0, abs=1e-10)


# -- peers (each returns weights in the frame's column order, or a labelled container) --------
def pypfopt_frontier(frame: pd.DataFrame):
    from pypfopt import EfficientFrontier, expected_returns, risk_models

    mu = expected_returns.mean_historical_return(frame, returns_data=True, compounding=False)
    cov = risk_models.sample_cov(frame, returns_data=True)
    return EfficientFrontier(mu, cov, solver="CLARABEL", solver_options=TIGHT)


def skfolio_mean_risk(frame: pd.DataFrame, objective: str, measure: str, **kw) -> np.ndarray:
    from skfolio.measures import RiskMeasure
    from skfolio.optimization import MeanRisk, ObjectiveFunction

    model = MeanRisk(
        objective_function=ObjectiveFunction[objective],
        risk_measure=RiskMeasure[measure],
        **kw,
    )
    return model.fit(frame).weights_


def riskfolio_portfolio(frame: pd.DataFrame, solver: str):
    import riskfolio as rp

    port = rp.Portfolio(returns=frame)
    port.assets_stats(method_mu="hist", method_cov="hist")
    port.solvers = [solver]
    if solver == "CLARABEL":
        port.sol_params = {"CLARABEL": TIGHT}
    return port


def peers_min_variance(frame: pd.DataFrame) -> dict[str, object]:
    ef = pypfopt_frontier(frame)
    ef.min_volatility()
    port = riskfolio_portfolio(frame, "CLARABEL")
    return {
        "PyPortfolioOpt": ef.weights,
        "skfolio": skfolio_mean_risk(
            frame, "MINIMIZE_RISK", "VARIANCE", solver="CLARABEL", solver_params=TIGHT
        ),
        "riskfolio": port.optimization(model="Classic", rm="MV", obj="MinRisk", rf=0, hist=True),
    }


def peers_max_sharpe(frame: pd.DataFrame) -> dict[str, object]:
    ef = pypfopt_frontier(frame)
    ef.max_sharpe(risk_free_rate=0.0)
    port = riskfolio_portfolio(frame, "CLARABEL")
    return {
        "PyPortfolioOpt": ef.weights,
        "skfolio": skfolio_mean_risk(
            frame, "MAXIMIZE_RATIO", "VARIANCE", solver="CLARABEL", solver_params=TIGHT
        ),
        "riskfolio": port.optimization(model="Classic", rm="MV", obj="Sharpe", rf=0, hist=True),
    }


def peers_min_cvar(frame: pd.DataFrame) -> dict[str, object]:
    from pypfopt import EfficientCVaR, expected_returns

    mu = expected_returns.mean_historical_return(frame, returns_data=True, compounding=False)
    ef = EfficientCVaR(mu, frame, beta=CONFIDENCE, solver="HIGHS")
    ef.min_cvar()
    port = riskfolio_portfolio(frame, "HIGHS")
    port.alpha = 1.0 - CONFIDENCE
    return {
        "PyPortfolioOpt": ef.weights,
        "skfolio": skfolio_mean_risk(
            frame, "MINIMIZE_RISK", "CVAR", cvar_beta=CONFIDENCE, solver="HIGHS"
        ),
        "riskfolio": port.optimization(model="Classic", rm="CVaR", obj="MinRisk", rf=0, hist=True),
    }


def peers_risk_budget(frame: pd.DataFrame, budgets: np.ndarray) -> dict[str, object]:
    from skfolio.measures import RiskMeasure
    from skfolio.optimization import RiskBudgeting as SkRiskBudgeting

    sk = SkRiskBudgeting(
        risk_measure=RiskMeasure.VARIANCE, risk_budget=budgets, solver="CLARABEL",
        solver_params=TIGHT,
    )
    port = riskfolio_portfolio(frame, "CLARABEL")
    rf = port.rp_optimization(model="Classic", rm="MV", rf=0, b=budgets.reshape(-1, 1), hist=True)
    return {"skfolio": sk.fit(frame).weights_, "riskfolio": rf}


# -- minimum variance, maximum Sharpe --------------------------------------------------------
def test_min_variance_equal_or_better_than_peers(stocks, frame, judge):
    res = MinimumVariance().fit(stocks)
    w = judge.align(res.weights)
    assert_feasible(w)
    ours = judge.variance(w)
    assert res.objective == pytest.approx(ours, rel=1e-12)
    for name, peer in peers_min_variance(frame).items():
        pw = judge.align(peer)
        assert pw.min() >= -1e-7 and abs(pw.sum() - 1) <= 1e-8, name
        assert ours <= judge.variance(pw) * (1 + REL), name
        assert_allclose(w, pw, atol=WEIGHT_ATOL, err_msg=name)
    assert (w == 0).sum() >= 3  # the long-only bound binds: not an unconstrained solution


def test_max_sharpe_equal_or_better_than_peers(stocks, frame, judge):
    res = MaximumSharpe().fit(stocks)
    w = judge.align(res.weights)
    assert_feasible(w)
    ours = judge.sharpe(w)
    assert res.objective == pytest.approx(ours, rel=1e-12)
    for name, peer in peers_max_sharpe(frame).items():
        pw = judge.align(peer)
        assert pw.min() >= -1e-7 and abs(pw.sum() - 1) <= 1e-8, name
        assert ours >= judge.sharpe(pw) * (1 - REL), name
        assert_allclose(w, pw, atol=WEIGHT_ATOL, err_msg=name)
    assert (w == 0).sum() >= 3


def test_constrained_min_variance_matches_pypfopt(stocks, frame, judge):
    """Per-asset cap 0.1 and a Consumer Staples cap of 0.25, both binding."""
    sectors = dict(zip(stocks["asset"].values.tolist(), stocks["sector"].values.tolist(),
                       strict=True))
    cons = Constraints(upper=0.1, group_bounds={"sector": {"Consumer Staples": (None, 0.25)}})
    res = MinimumVariance(cons).fit(stocks)
    w = judge.align(res.weights)
    assert_feasible(w, upper=0.1)
    staples = np.array([sectors[a] == "Consumer Staples" for a in judge.assets])
    assert w[staples].sum() <= 0.25 + 1e-9

    ef = pypfopt_frontier(frame)
    ef.add_constraint(lambda x: x <= 0.1)
    ef.add_sector_constraints(sectors, {}, {"Consumer Staples": 0.25})
    ef.min_volatility()
    pw = judge.align(ef.weights)
    assert pw.min() >= -1e-7 and pw.max() <= 0.1 + 1e-7
    assert pw[staples].sum() <= 0.25 + 1e-7

    assert judge.variance(w) <= judge.variance(pw) * (1 + REL)
    assert_allclose(w, pw, atol=WEIGHT_ATOL)
    # Both constraints bind (otherwise this would test the unconstrained problem again).
    assert np.isclose(w, 0.1, atol=1e-7).sum() >= 1
    assert w[staples].sum() == pytest.approx(0.25, abs=1e-7)
    unconstrained = MinimumVariance().fit(stocks)
    assert judge.variance(w) > judge.variance(judge.align(unconstrained.weights)) * (1 + 1e-3)


# -- CVaR ---------------------------------------------------------------------------------------
def test_min_cvar_equal_or_better_than_peers(stocks, frame, judge):
    res = MeanCVaR(confidence=CONFIDENCE).fit(stocks)
    w = judge.align(res.weights)
    assert_feasible(w)
    ours = judge.cvar(w)
    assert res.objective == pytest.approx(ours, rel=1e-9)  # a daily loss fraction
    for name, peer in peers_min_cvar(frame).items():
        pw = judge.align(peer)
        assert pw.min() >= -1e-7 and abs(pw.sum() - 1) <= 1e-8, name
        # An LP: the optimal weights need not be unique, the optimal value is.
        assert ours <= judge.cvar(pw) * (1 + REL), name
    assert ours < judge.cvar(judge.align(MinimumVariance().fit(stocks).weights))


# -- risk budgeting -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["equal", "ramp"])
def test_risk_budgeting_matches_peers(stocks, frame, judge, kind):
    n = len(judge.assets)
    if kind == "equal":
        budgets = np.full(n, 1.0 / n)
        res = EqualRiskContribution().fit(stocks)
    else:  # budgets rising linearly, the last 8 times the first
        budgets = 1.0 + 7.0 * np.arange(n) / (n - 1)
        budgets /= budgets.sum()
        res = RiskBudgeting(dict(zip(judge.assets, budgets, strict=True))).fit(stocks)
    w = judge.align(res.weights)
    assert_feasible(w)
    ours = np.abs(judge.contributions(w) - budgets).max()
    assert ours <= 1e-10
    for name, peer in peers_risk_budget(frame, budgets).items():
        pw = judge.align(peer)
        assert pw.min() >= -1e-7 and abs(pw.sum() - 1) <= 1e-8, name
        assert ours <= np.abs(judge.contributions(pw) - budgets).max(), name
        assert_allclose(w, pw, atol=WEIGHT_ATOL, err_msg=name)


# -- HRP ----------------------------------------------------------------------------------------
def test_hrp_matches_all_three_peers(stocks, frame, judge):
    """Single linkage, no leaf reordering, Pearson distance: the paper's HRP everywhere."""
    import riskfolio as rp
    from pypfopt import HRPOpt
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.distance import PearsonDistance
    from skfolio.optimization import HierarchicalRiskParity as SkHRP
    from skfolio.seriation import HierarchicalSeriation

    w = judge.align(HierarchicalRiskParity("single").fit(stocks).weights)
    assert_feasible(w)
    sk = SkHRP(
        distance_estimator=PearsonDistance(),
        seriation_estimator=HierarchicalSeriation(
            hierarchical_clustering_estimator=HierarchicalClustering(
                linkage_method=LinkageMethod.SINGLE
            ),
            optimal_ordering=False,
        ),
    ).fit(frame)
    hc = rp.HCPortfolio(returns=frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        rf = hc.optimization(
            model="HRP", codependence="pearson", rm="MV", rf=0, linkage="single",
            leaf_order=False,
        )
    peers = {
        "PyPortfolioOpt": HRPOpt(frame).optimize(linkage_method="single"),
        "skfolio": sk.weights_,
        "riskfolio": rf,
    }
    for name, peer in peers.items():
        assert_allclose(w, judge.align(peer), atol=1e-8, err_msg=name)
