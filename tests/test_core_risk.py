"""VaR, ES, volatility and Euler contributions: core (pmkit.core.risk) and labelled layer.

References are independent: scipy.stats closed forms, numpy.quantile, skfolio.measures,
scipy numerical integration, hand-worked samples and finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import integrate, stats

from pmkit.core import risk as core
from pmkit.errors import AlignmentError, InsufficientDataError, ValidationError
from pmkit.risk import measures as rm

CONFIDENCES = (0.9, 0.95, 0.975, 0.99)


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    """Fat-tailed correlated returns (T=1500, A=6) and 5 long/short portfolios."""
    rng = np.random.default_rng(7)
    factor = rng.standard_t(4, (1500, 1)) * 0.01
    returns = 0.0004 + factor * rng.uniform(0.5, 1.5, 6) + rng.standard_t(5, (1500, 6)) * 0.008
    weights = rng.normal(0.2, 0.5, (5, 6))
    return returns, weights


@pytest.fixture(scope="module")
def real() -> tuple[xr.DataArray, xr.DataArray]:
    from pmkit.datasets import load_market
    from pmkit.model.market import simple_returns

    returns = simple_returns(load_market())
    rng = np.random.default_rng(3)
    assets = returns["asset"].values
    w = rng.dirichlet(np.ones(len(assets)), 3)
    w[0, -5:] = 0.0  # stocks only: no ETF, so the full stock history is usable
    weights = xr.DataArray(
        w, dims=("portfolio", "asset"), coords={"portfolio": ["a", "b", "c"], "asset": assets}
    )
    return weights, returns


# ------------------------------------------------------------------ historical
@pytest.mark.parametrize("c", CONFIDENCES)
def test_historical_var_is_numpy_inverted_cdf_quantile(sample, c):
    returns, weights = sample
    losses = -(returns @ weights.T)
    expected = np.quantile(losses, c, axis=0, method="inverted_cdf")
    got = np.asarray(core.value_at_risk(weights, returns, c))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("c", CONFIDENCES)
def test_historical_es_is_rockafellar_uryasev(sample, c):
    returns, weights = sample
    losses = -(returns @ weights.T)
    q = np.quantile(losses, c, axis=0, method="inverted_cdf")
    ru = q + np.maximum(losses - q, 0).mean(axis=0) / (1 - c)
    got = np.asarray(core.expected_shortfall(weights, returns, c))
    np.testing.assert_allclose(got, ru, rtol=1e-12)


def test_historical_es_integer_tail_is_mean_of_worst_losses(sample):
    returns, weights = sample  # T = 1500, c = 0.98: exactly 30 worst losses
    losses = np.sort(-(returns @ weights.T), axis=0)[::-1]
    np.testing.assert_allclose(
        core.expected_shortfall(weights, returns, 0.98), losses[:30].mean(axis=0), rtol=1e-13
    )
    np.testing.assert_allclose(core.value_at_risk(weights, returns, 0.98), losses[30], rtol=0)


def test_historical_horizon_uses_overlapping_sums(sample):
    returns, weights = sample
    h = 10
    windows = np.stack([returns[t : t + h].sum(axis=0) for t in range(len(returns) - h + 1)])
    losses = -(windows @ weights.T)
    np.testing.assert_allclose(
        core.value_at_risk(weights, returns, 0.95, horizon=h),
        np.quantile(losses, 0.95, axis=0, method="inverted_cdf"),
        rtol=1e-12,
    )
    counts = np.asarray(core.n_observations(weights, returns, horizon=h))
    assert (counts == len(returns) - h + 1).all()


def test_historical_matches_skfolio_on_real_data(real):
    import skfolio.measures as sm

    weights, returns = real
    var = rm.var(weights, returns, 0.95)
    es = rm.expected_shortfall(weights, returns, 0.99)
    r = returns.transpose("time", "asset").values
    counts = dict(
        zip(
            weights["portfolio"].values,
            np.asarray(core.n_observations(weights.values, r)),
            strict=True,
        )
    )
    for p in weights["portfolio"].values:
        w = weights.sel(portfolio=p)
        held = w["asset"].values[w.values != 0]
        panel = returns.sel(asset=held).dropna("time", how="any")  # times all held assets have
        port = panel.transpose("time", "asset").values @ w.sel(asset=held).values
        assert len(port) == counts[p]
        assert float(var.sel(portfolio=p)) == pytest.approx(sm.value_at_risk(port, 0.95), abs=1e-15)
        assert float(es.sel(portfolio=p)) == pytest.approx(sm.cvar(port, 0.99), rel=1e-12)


# ------------------------------------------------------------------ parametric
@pytest.mark.parametrize("c", CONFIDENCES)
@pytest.mark.parametrize("h", [1, 10])
def test_gaussian_matches_scipy_norm(sample, c, h):
    rng = np.random.default_rng(11)
    a = rng.normal(size=(6, 6)) * 0.01
    returns = rng.multivariate_normal(np.linspace(-0.001, 0.001, 6), a @ a.T, size=1500)
    weights = sample[1]
    port = returns @ weights.T
    mu, sd = port.mean(axis=0), port.std(axis=0, ddof=1)
    dist = stats.norm(loc=h * mu, scale=np.sqrt(h) * sd)
    var_ref = -dist.ppf(1 - c)
    es_ref = -h * mu + np.sqrt(h) * sd * stats.norm.pdf(stats.norm.ppf(c)) / (1 - c)
    # ES as the tail mean of the normal, by scipy's own expectation
    es_int = [
        -stats.norm(h * m, np.sqrt(h) * s).expect(
            lambda x: x, ub=stats.norm(h * m, np.sqrt(h) * s).ppf(1 - c), conditional=True
        )
        for m, s in zip(mu, sd, strict=True)
    ]
    np.testing.assert_allclose(
        core.value_at_risk(weights, returns, c, h, "gaussian"), var_ref, rtol=1e-12
    )
    np.testing.assert_allclose(
        core.expected_shortfall(weights, returns, c, h, "gaussian"), es_ref, rtol=1e-12
    )
    np.testing.assert_allclose(es_ref, es_int, rtol=1e-7)
    np.testing.assert_allclose(core.volatility(weights, returns, h), np.sqrt(h) * sd, rtol=1e-12)


def test_cornish_fisher_reduces_to_gaussian_without_skew_and_kurtosis(sample):
    # -b, 0, 0, 0, 0, +b has zero skewness and m4 / m2^2 = 3 exactly: excess kurtosis 0.
    one = np.array([-0.02, 0, 0, 0, 0, 0.02])
    returns = sample[0].copy()  # same shapes as the other tests: compiled once
    returns[:, 0] = 0.001 + np.tile(one, 250)
    assert stats.skew(returns[:, 0]) == pytest.approx(0, abs=1e-12)
    assert stats.kurtosis(returns[:, 0]) == pytest.approx(0, abs=1e-12)
    weights = np.zeros((5, 6))
    weights[:, 0] = [1.0, 0.3, -0.5, 2.0, 1e-3]  # only the symmetric asset is held
    for c in CONFIDENCES:
        for fn in (core.value_at_risk, core.expected_shortfall):
            np.testing.assert_allclose(
                fn(weights, returns, c, method="cornish_fisher"),
                fn(weights, returns, c, method="gaussian"),
                rtol=1e-12,
            )
    a = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(core.cornish_fisher_quantile(a, 0.0, 0.0), a)
    np.testing.assert_allclose(core.cornish_fisher_tail_mean(a, 0.0, 0.0), -stats.norm.pdf(a))


def _cf_quantile(u: float, s: float, k: float) -> float:
    a = stats.norm.ppf(u)
    return a + (a**2 - 1) * s / 6 + (a**3 - 3 * a) * k / 24 - (2 * a**3 - 5 * a) * s**2 / 36


@pytest.mark.parametrize("c", [0.95, 0.99])
@pytest.mark.parametrize("h", [1, 10])
def test_cornish_fisher_against_scipy_moments_and_integration(sample, c, h):
    returns, weights = sample
    port = returns @ weights.T
    var = np.asarray(core.value_at_risk(weights, returns, c, h, "cornish_fisher"))
    es = np.asarray(core.expected_shortfall(weights, returns, c, h, "cornish_fisher"))
    for p in range(weights.shape[0]):
        x = port[:, p]
        mu, sd = x.mean(), x.std(ddof=1)
        s, k = stats.skew(x) / np.sqrt(h), stats.kurtosis(x) / h
        assert var[p] == pytest.approx(
            -(h * mu + np.sqrt(h) * sd * _cf_quantile(1 - c, s, k)), rel=1e-11
        )
        tail, _ = integrate.quad(
            lambda u, s=s, k=k: _cf_quantile(u, s, k),
            0,
            1 - c,
            epsabs=1e-13,
            epsrel=1e-11,
            limit=200,
        )
        assert es[p] == pytest.approx(-(h * mu + np.sqrt(h) * sd * tail / (1 - c)), rel=1e-7)


# ------------------------------------------------------------------ Monte Carlo
N_MC = 400_000


@pytest.fixture(scope="module")
def mc_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    mean = np.array([0.0005, 0.0002, -0.0001])
    a = rng.normal(size=(3, 3)) * 0.01
    cov = a @ a.T + np.diag([1e-4, 2e-4, 5e-5])
    weights = np.array([[0.5, 0.3, 0.2], [1.0, -1.0, 0.5], [1.0, 0.0, 0.0]])
    return mean, cov, weights


def test_monte_carlo_normal_converges_to_gaussian_within_standard_error(mc_model):
    mean, cov, weights = mc_model
    n, c = N_MC, 0.99
    scen = np.asarray(core.monte_carlo_scenarios(mean, cov, 42, n_scenarios=n))
    mu, sd = weights @ mean, np.sqrt(np.einsum("pi,ij,pj->p", weights, cov, weights))
    z = stats.norm.ppf(c)
    var_true, es_true = -mu + z * sd, -mu + sd * stats.norm.pdf(z) / (1 - c)
    # asymptotic standard errors of the empirical quantile and of the tail mean
    se_var = np.sqrt(c * (1 - c) / n) * sd / stats.norm.pdf(z)
    tail_var = sd**2 * (1 + z * stats.norm.pdf(z) / (1 - c) - (stats.norm.pdf(z) / (1 - c)) ** 2)
    se_es = np.sqrt((tail_var + c * (es_true - var_true) ** 2) / ((1 - c) * n))
    var_mc = np.asarray(core.value_at_risk(weights, scen, c))
    es_mc = np.asarray(core.expected_shortfall(weights, scen, c))
    assert (np.abs(var_mc - var_true) < 4 * se_var).all(), (var_mc - var_true) / se_var
    assert (np.abs(es_mc - es_true) < 4 * se_es).all(), (es_mc - es_true) / se_es
    # sample covariance within 5 standard errors, entry by entry
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert (np.abs(np.cov(scen.T) - cov) < 5 * se_cov).all()
    again = np.asarray(core.monte_carlo_scenarios(mean, cov, 42, n_scenarios=n))
    np.testing.assert_array_equal(scen, again)  # deterministic per seed
    other = np.asarray(core.monte_carlo_scenarios(mean, cov, 43, n_scenarios=n))
    assert not np.allclose(scen[:100], other[:100])


def test_monte_carlo_t_matches_student_t_quantile(mc_model):
    mean, cov, weights = mc_model
    nu, c, n = 5.0, 0.99, N_MC // 4
    scen = core.monte_carlo_scenarios(mean, cov, 3, n_scenarios=n, distribution="t", dof=nu)
    again = core.monte_carlo_scenarios(mean, cov, 3, n_scenarios=n, distribution="t", dof=nu)
    np.testing.assert_array_equal(scen, again)
    # the third portfolio holds asset 0 only: its marginal is a t with covariance cov[0, 0]
    scale = np.sqrt(cov[0, 0] * (nu - 2) / nu)
    dist = stats.t(nu, loc=mean[0], scale=scale)
    var_true = -dist.ppf(1 - c)
    se = np.sqrt(c * (1 - c) / n) / dist.pdf(dist.ppf(1 - c))
    var_mc = float(core.value_at_risk(weights, scen, c)[2])
    assert abs(var_mc - var_true) < 4 * se
    # covariance of the t scenarios is cov (heavier tails: looser tolerance)
    np.testing.assert_allclose(np.cov(np.asarray(scen).T), cov, rtol=0.05, atol=2e-6)


# ------------------------------------------------------------------ Euler contributions
@pytest.mark.parametrize(
    ("measure", "method", "h"),
    [("volatility", "-", 1), ("volatility", "-", 10)]
    + [(m, k, 1) for m in ("var", "es") for k in core.METHODS]
    + [("var", "historical", 10), ("es", "historical", 10), ("es", "cornish_fisher", 10)],
)
def test_components_sum_to_total(sample, measure, method, h):
    returns, weights = sample
    total, marginal, component = core.risk_contributions(
        weights, returns, 0.95, h, method, measure=measure
    )
    np.testing.assert_allclose(np.asarray(component).sum(axis=1), total, rtol=0, atol=1e-12)
    np.testing.assert_allclose(component, weights * np.asarray(marginal), rtol=1e-15)
    if measure == "volatility":
        ref = core.volatility(weights, returns, h)
    else:
        fn = core.value_at_risk if measure == "var" else core.expected_shortfall
        ref = fn(weights, returns, 0.95, h, method)
    np.testing.assert_allclose(total, ref, rtol=1e-14)


@pytest.mark.parametrize("measure", ["volatility", "var", "es"])
@pytest.mark.parametrize("method", ["gaussian", "cornish_fisher"])
def test_parametric_marginals_match_finite_differences(sample, measure, method):
    returns, weights = sample
    _, marginal, _ = core.risk_contributions(weights, returns, 0.99, method=method, measure=measure)
    step = 1e-6
    fd = np.empty_like(weights)
    for i in range(weights.shape[1]):
        up, down = weights.copy(), weights.copy()
        up[:, i] += step
        down[:, i] -= step
        if measure == "volatility":
            f_up, f_down = core.volatility(up, returns), core.volatility(down, returns)
        else:
            fn = core.value_at_risk if measure == "var" else core.expected_shortfall
            f_up = fn(up, returns, 0.99, method=method)
            f_down = fn(down, returns, 0.99, method=method)
        fd[:, i] = (np.asarray(f_up) - np.asarray(f_down)) / (2 * step)
    np.testing.assert_allclose(marginal, fd, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("measure", ["var", "es"])
def test_historical_marginals_are_tail_scenarios_and_finite_differences(sample, measure):
    returns, weights = sample
    c = 0.95
    _, marginal, _ = core.risk_contributions(
        weights, returns, c, method="historical", measure=measure
    )
    losses = -(returns @ weights.T)
    n = len(returns)
    k = (1 - c) * n  # 75: integer tail
    for p in range(weights.shape[0]):
        order = np.argsort(-losses[:, p], kind="stable")  # worst first
        if measure == "var":
            expected = -returns[order[int(k)]]  # the scenario at the quantile
        else:
            expected = -returns[order[: int(k)]].mean(axis=0)
        np.testing.assert_allclose(marginal[p], expected, rtol=1e-12)
    # piecewise linear: a step too small to reorder scenarios gives the same slope
    step = 1e-9
    fn = core.value_at_risk if measure == "var" else core.expected_shortfall
    for i in range(weights.shape[1]):
        up, down = weights.copy(), weights.copy()
        up[:, i] += step
        down[:, i] -= step
        fd = (np.asarray(fn(up, returns, c)) - np.asarray(fn(down, returns, c))) / (2 * step)
        np.testing.assert_allclose(marginal[:, i], fd, rtol=1e-5, atol=1e-8)


def test_ragged_returns_use_common_times_and_flag_undefined_marginals(sample):
    returns, weights = sample
    ragged = returns.copy()
    ragged[:400, 0] = np.nan  # asset 0 lists late
    w = weights[:2].copy()
    w[1, 0] = 0.0  # portfolio 1 does not hold it
    counts = np.asarray(core.n_observations(w, ragged))
    assert counts.tolist() == [len(returns) - 400, len(returns)]
    var = np.asarray(core.value_at_risk(w, ragged, 0.95))
    assert var[0] == pytest.approx(
        np.quantile(-(returns[400:] @ w[0]), 0.95, method="inverted_cdf"), abs=1e-15
    )
    assert var[1] == pytest.approx(
        np.quantile(-(returns[:, 1:] @ w[1, 1:]), 0.95, method="inverted_cdf"), abs=1e-15
    )
    total, marginal, component = core.risk_contributions(
        w, ragged, 0.95, method="historical", measure="es"
    )
    assert np.isnan(marginal[1, 0]) and component[1, 0] == 0.0
    assert np.isfinite(marginal[0]).all()
    np.testing.assert_allclose(np.asarray(component).sum(axis=1), total, atol=1e-12)


# ------------------------------------------------------------------ labelled layer
def test_labelled_results_are_named_and_match_core(real):
    weights, returns = real
    for method in ("gaussian", "cornish_fisher"):
        got = rm.var(weights, returns, 0.99, 10, method)
        assert got.dims == ("portfolio",) and got.name == "var"
        assert got.attrs["confidence"] == 0.99 and got.attrs["method"] == method
        p = "a"  # holds no ETF: the whole stock history, first (NaN) day excepted
        w = weights.sel(portfolio=p)
        held = w["asset"].values[w.values != 0]
        r = returns.sel(asset=held).isel(time=slice(1, None)).transpose("time", "asset").values
        port = r @ w.sel(asset=held).values
        assert np.isfinite(port).all()
        mu, sd = port.mean(), port.std(ddof=1)
        s, k = stats.skew(port) / np.sqrt(10), stats.kurtosis(port) / 10
        q = _cf_quantile(0.01, s, k) if method == "cornish_fisher" else stats.norm.ppf(0.01)
        ref = -(10 * mu + np.sqrt(10) * sd * q)
        assert float(got.sel(portfolio=p)) == pytest.approx(ref, rel=1e-11)


def test_labelled_contributions_dataset(real):
    weights, returns = real
    ds = rm.risk_contributions(weights, returns, 0.975, method="historical", measure="es")
    assert set(ds.data_vars) == {"total", "marginal", "component"}
    assert ds["component"].dims == ("portfolio", "asset")
    np.testing.assert_allclose(ds["component"].sum("asset"), ds["total"], atol=1e-12)
    np.testing.assert_allclose(
        ds["total"], rm.expected_shortfall(weights, returns, 0.975), rtol=1e-14
    )
    # portfolio "a" holds no ETF and uses days before the ETFs listed: their marginal is undefined
    assert np.isnan(ds["marginal"].sel(portfolio="a", asset="MTUM"))
    assert float(ds["component"].sel(portfolio="a", asset="MTUM")) == 0.0
    vol = rm.risk_contributions(weights, returns)
    np.testing.assert_allclose(vol["total"], rm.volatility(weights, returns), rtol=1e-14)
    np.testing.assert_allclose(vol["component"].sum("asset"), vol["total"], atol=1e-12)


@pytest.mark.parametrize("method", ["monte_carlo_normal"])
def test_labelled_monte_carlo_contributions_and_determinism(real, method):
    weights, returns = real
    kw = {"n_scenarios": 2000, "seed": 9}
    v1 = rm.var(weights, returns, 0.95, method=method, **kw)
    v2 = rm.var(weights, returns, 0.95, method=method, **kw)
    np.testing.assert_array_equal(v1, v2)
    ds = rm.risk_contributions(weights, returns, 0.95, method=method, measure="es", **kw)
    np.testing.assert_allclose(ds["component"].sum("asset"), ds["total"], atol=1e-12)
    np.testing.assert_allclose(
        ds["total"], rm.expected_shortfall(weights, returns, 0.95, method=method, **kw)
    )


# real daily returns are too fat-tailed for Cornish–Fisher: the warning is expected here
@pytest.mark.filterwarnings("ignore::pmkit.risk.measures.CornishFisherDomainWarning")
def test_risk_report_collects_every_measure(real):
    weights, returns = real
    rep = rm.risk_report(weights, returns, 0.99)
    for m in ("historical", "gaussian", "cornish_fisher"):
        np.testing.assert_allclose(rep[f"var_{m}"], rm.var(weights, returns, 0.99, method=m))
        np.testing.assert_allclose(
            rep[f"es_{m}"], rm.expected_shortfall(weights, returns, 0.99, method=m)
        )
    np.testing.assert_allclose(rep["volatility"], rep["std"])
    assert (rep["es_historical"] >= rep["var_historical"]).all()
    # portfolio "a" holds no ETF: every day after the first; others: the ETFs' history
    assert int(rep["n_observations"].sel(portfolio="a")) == returns.sizes["time"] - 1
    assert int(rep["n_observations"].sel(portfolio="b")) == int(
        returns.sel(asset="MTUM").notnull().sum()
    )


def test_dask_weights_chunked_over_portfolio(real):
    weights, returns = real
    lazy = weights.chunk(portfolio=1)
    got = rm.var(lazy, returns, 0.95)
    assert got.chunks is not None
    np.testing.assert_allclose(got.compute(), rm.var(weights, returns, 0.95))
    ds = rm.risk_contributions(lazy, returns, method="historical", measure="var")
    np.testing.assert_allclose(
        ds["component"].compute(),
        rm.risk_contributions(weights, returns, measure="var")["component"],
    )


def test_one_dimensional_weights(real):
    weights, returns = real
    w = weights.sel(portfolio="b", drop=True)
    got = rm.var(w, returns)
    assert got.dims == ()
    assert float(got) == float(rm.var(weights, returns).sel(portfolio="b"))


@pytest.mark.parametrize("bad", [0, 1, 1.2, -0.5, float("nan"), True, "0.95"])
def test_bad_confidence_is_a_validation_error(real, bad):
    weights, returns = real
    with pytest.raises(ValidationError) as err:
        rm.var(weights, returns, bad)
    assert err.value.field == "confidence"


def test_bad_parameters(real):
    weights, returns = real
    with pytest.raises(ValidationError, match="method"):
        rm.var(weights, returns, method="delta_normal")
    with pytest.raises(ValidationError, match="horizon"):
        rm.var(weights, returns, horizon=0)
    with pytest.raises(ValidationError, match="dof"):
        rm.var(weights, returns, method="monte_carlo_t", dof=2.0)
    with pytest.raises(ValidationError, match="measure"):
        rm.risk_contributions(weights, returns, measure="sharpe")
    nan_w = weights.copy()
    nan_w[1, 2] = np.nan
    with pytest.raises(ValidationError) as err:
        rm.var(nan_w, returns)
    assert err.value.field == "weights[b, BAC]"


def test_too_few_observations(real):
    weights, returns = real
    short = returns.isel(time=slice(-20, None))
    with pytest.raises(InsufficientDataError) as err:
        rm.var(weights, short)
    assert err.value.field == "portfolio[a]" and err.value.value == 20
    assert float(rm.var(weights, short, min_observations=15).sel(portfolio="a")) > 0
    with pytest.raises(InsufficientDataError, match="horizon"):
        rm.var(weights, short, horizon=30, min_observations=2)


def test_all_nan_asset_is_named(real):
    weights, returns = real
    hole = returns.copy()
    hole.loc[{"asset": "KO"}] = np.nan
    with pytest.raises(InsufficientDataError) as err:
        rm.expected_shortfall(weights, hole)
    assert err.value.field == "asset" and err.value.value == "KO"
    # not held anywhere: fine, its marginal is undefined
    w = weights.copy()
    w.loc[{"asset": "KO"}] = 0.0
    ds = rm.risk_contributions(w, hole, measure="var")
    assert ds["marginal"].sel(asset="KO").isnull().all()


def test_misaligned_assets(real):
    weights, returns = real
    renamed = weights.assign_coords(asset=[*weights["asset"].values[:-1], "NOPE"])
    with pytest.raises(AlignmentError) as err:
        rm.var(renamed, returns)
    assert err.value.value == ["NOPE"]
    # returns with more assets than the weights are fine: the extra ones are ignored
    sub = weights.isel(asset=slice(0, 20))
    assert rm.var(sub, returns).sizes == {"portfolio": 3}


def test_cornish_fisher_domain_matches_a_numerical_monotonicity_check():
    from pmkit.risk.measures import cornish_fisher_valid

    z = np.linspace(-6, 6, 24001)
    rng = np.random.default_rng(11)
    cases = [(0.0, 0.0), (0.0, 8.0), (0.0, 13.0), (0.0, -0.15), (1.5, 2.0), (-1.0, 6.0)]
    cases += [tuple(x) for x in rng.uniform([-2, -2], [2, 20], (200, 2))]
    for s, k in cases:
        q = z + (z**2 - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s**2 / 36
        assert bool(np.all(np.diff(q) > 0)) == bool(cornish_fisher_valid(s, k)), (s, k)


def test_cornish_fisher_outside_its_domain_warns_naming_the_portfolio():
    import warnings

    import pandas as pd
    import xarray as xr

    from pmkit.risk.measures import CornishFisherDomainWarning, var

    rng = np.random.default_rng(3)
    n = 4000
    heavy = rng.standard_t(2.5, n) * 0.01  # excess kurtosis far above 8
    normal = rng.normal(0, 0.01, n)
    times = pd.date_range("2000-01-03", periods=n)
    returns = xr.DataArray(np.stack([heavy, normal]), dims=("asset", "time"),
                           coords={"asset": ["H", "N"], "time": times})
    w = xr.DataArray([[1.0, 0.0], [0.0, 1.0]], dims=("portfolio", "asset"),
                     coords={"portfolio": ["heavy", "calm"], "asset": ["H", "N"]})
    with pytest.warns(CornishFisherDomainWarning, match="heavy") as rec:
        var(w, returns, method="cornish_fisher")
    assert "calm" not in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CornishFisherDomainWarning)
        var(w.sel(portfolio=["calm"]), returns, method="cornish_fisher")
