"""Exposures: OLS betas vs numpy.linalg.lstsq, sector sums, leverage, concentration invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pmkit.datasets import load_market
from pmkit.errors import AlignmentError, InsufficientDataError, ValidationError
from pmkit.model import simple_returns
from pmkit.risk import exposures as ex


@pytest.fixture(scope="module")
def market():
    return load_market(start="2012-01-01", end="2022-12-28")


@pytest.fixture(scope="module")
def factors():
    return ex.factor_returns()


@pytest.fixture(scope="module")
def betas(market, factors):
    return ex.factor_betas(market, factors)


def _weights(values, assets, pids=None):
    values = np.atleast_2d(np.asarray(values, dtype=float))
    pids = pids or [f"p{i}" for i in range(values.shape[0])]
    return xr.DataArray(
        values, dims=("portfolio", "asset"), coords={"portfolio": pids, "asset": assets}
    )


def _lstsq(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, int]:
    ok = np.isfinite(y) & np.isfinite(x).all(axis=1)
    design = np.column_stack([np.ones(ok.sum()), x[ok]])
    coef, *_ = np.linalg.lstsq(design, y[ok], rcond=None)
    return coef, int(ok.sum())


# ---------------------------------------------------------------- factor betas
def test_factor_betas_equal_numpy_lstsq_on_real_data(market, factors, betas):
    r = simple_returns(market)
    r, f = xr.align(r, factors, join="inner", exclude=["asset", "factor"])
    x = f.transpose("time", "factor").values
    for asset in ["AAPL", "JPM", "XOM", "PG", "AMD"]:
        coef, n = _lstsq(r.sel(asset=asset).values, x)
        np.testing.assert_allclose(betas["alpha"].sel(asset=asset), coef[0], atol=1e-12)
        np.testing.assert_allclose(betas["beta"].sel(asset=asset), coef[1:], rtol=1e-9, atol=1e-10)
        assert int(betas["n_obs"].sel(asset=asset)) == n


def test_factor_of_itself_has_unit_beta(betas):
    # MTUM regressed on (MTUM, QUAL, SIZE, USMV, VLUE): beta = e_MTUM, alpha 0, no residual
    np.testing.assert_allclose(betas["beta"].sel(asset="MTUM"), [1, 0, 0, 0, 0], atol=1e-10)
    assert abs(float(betas["alpha"].sel(asset="MTUM"))) < 1e-12
    assert float(betas["resid_var"].sel(asset="MTUM")) < 1e-20


def test_masked_ols_handles_ragged_histories():
    rng = np.random.default_rng(0)
    t, k = 300, 3
    times = pd.date_range("2020-01-01", periods=t)
    x = rng.normal(0, 0.01, (t, k))
    y = np.stack([x @ [0.5, -1, 2] + rng.normal(0, 0.002, t) for _ in range(3)])
    y[0, :120] = np.nan  # late listing
    y[1, 50:60] = np.nan  # a gap
    x[200, 1] = np.nan  # a factor hole removes the row for everyone
    ya = xr.DataArray(y, dims=("asset", "time"), coords={"asset": ["a", "b", "c"], "time": times})
    xa = xr.DataArray(
        x.T, dims=("factor", "time"), coords={"factor": ["f1", "f2", "f3"], "time": times}
    )
    got = ex.factor_betas(ya, xa, min_observations=30)
    for i, a in enumerate(["a", "b", "c"]):
        coef, n = _lstsq(y[i], x)
        np.testing.assert_allclose(got["beta"].sel(asset=a), coef[1:], rtol=1e-10)
        assert int(got["n_obs"].sel(asset=a)) == n
        resid = y[i] - coef[0] - x @ coef[1:]
        ok = np.isfinite(resid)
        np.testing.assert_allclose(
            got["resid_var"].sel(asset=a), resid[ok] @ resid[ok] / (n - k - 1), rtol=1e-8
        )
    assert int(got["n_obs"].sel(asset="a")) == 300 - 120 - 1


def test_too_few_observations_is_refused(market, factors):
    with pytest.raises(InsufficientDataError) as err:
        ex.factor_betas(market.sel(time=slice("2013-06-01", "2014-02-28")), factors)
    assert err.value.field.startswith("returns[")
    with pytest.raises(AlignmentError):
        ex.factor_betas(market.sel(time=slice("2012-01-01", "2012-12-31")), factors)
    with pytest.raises(ValidationError) as err:
        ex.factor_betas(market, factors, min_observations=3)
    assert err.value.field == "min_observations"


def test_benchmark_beta_is_cov_over_var(market):
    from pmkit.datasets import load_benchmark

    bench = load_benchmark("2012-01-01", "2022-12-28")
    out = ex.benchmark_beta(market, bench)
    br = (bench / bench.shift(time=1) - 1).values
    r = simple_returns(market)
    for asset in ["AAPL", "KO", "VLUE"]:
        y = r.sel(asset=asset).values
        ok = np.isfinite(y) & np.isfinite(br)
        c = np.cov(y[ok], br[ok])
        assert float(out["beta"].sel(asset=asset)) == pytest.approx(c[0, 1] / c[1, 1], rel=1e-9)


def test_portfolio_factor_exposure_is_weighted_betas(betas):
    assets = ["AAPL", "MSFT", "KO"]
    w = _weights([[0.5, 0.3, 0.1], [0.0, -0.2, 0.6]], assets)
    got = ex.portfolio_factor_exposure(w, betas)
    want = w.values @ betas["beta"].sel(asset=assets).values
    np.testing.assert_allclose(got.values, want, rtol=1e-12)


# ---------------------------------------------------------------- sector / asset class
def test_sector_exposure_groups_and_sums_to_net(market):
    rng = np.random.default_rng(1)
    assets = market.asset.values
    w = _weights(rng.normal(0.03, 0.05, (3, len(assets))), assets)
    sec = ex.sector_exposure(w, market)
    np.testing.assert_allclose(sec.sum("sector"), w.sum("asset"), rtol=1e-12)
    frame = pd.DataFrame(w.values.T, index=market["sector"].values).groupby(level=0).sum()
    np.testing.assert_allclose(sec.values, frame.loc[sec.sector.values].values.T, rtol=1e-12)
    cls = ex.asset_class_exposure(w, market)
    etfs = [a for a in assets if market["asset_class"].sel(asset=a) == "ETF"]
    np.testing.assert_allclose(cls.sel(asset_class="ETF"), w.sel(asset=etfs).sum("asset"))


# ---------------------------------------------------------------- leverage, concentration
def test_leverage_hand_worked():
    out = ex.leverage(_weights([[0.6, -0.3, 0.5], [0.2, 0.2, 0.2]], ["a", "b", "c"]))
    np.testing.assert_allclose(out["gross"], [1.4, 0.6])
    np.testing.assert_allclose(out["net"], [0.8, 0.6])


@pytest.mark.parametrize("n", [1, 4, 10])
def test_equal_weights_enb_is_n(n):
    assets = [f"a{i}" for i in range(12)]
    w = np.zeros(12)
    w[:n] = 1.0 / n
    out = ex.concentration(_weights([w, 0.5 * w], assets), k=1)
    np.testing.assert_allclose(out["enb"], [n, n], rtol=1e-12)  # cash does not change ENB
    np.testing.assert_allclose(out["hhi"], [1 / n, 1 / n], rtol=1e-12)
    np.testing.assert_allclose(out["top_k"], [1 / n, 0.5 / n], rtol=1e-12)


def test_concentration_bounds_and_top_k_against_sorting():
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.1, (5, 8))
    out = ex.concentration(_weights(w, list("abcdefgh")), k=3)
    s = np.abs(w) / np.abs(w).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["hhi"], (s**2).sum(axis=1), rtol=1e-12)
    assert ((out["enb"] >= 1 - 1e-12) & (out["enb"] <= 8 + 1e-12)).all()
    np.testing.assert_allclose(out["top_k"], np.sort(np.abs(w), axis=1)[:, -3:].sum(axis=1))
    # batched over portfolios equals a per-portfolio loop
    for i in range(5):
        one = ex.concentration(_weights(w[i], list("abcdefgh")), k=3)
        np.testing.assert_allclose(one["enb"].values, out["enb"].values[i : i + 1], rtol=1e-14)
    with pytest.raises(ValidationError) as err:
        ex.concentration(_weights(w, list("abcdefgh")), k=9)
    assert err.value.field == "k"


def test_dask_backed_weights_give_the_same_result(market):
    rng = np.random.default_rng(3)
    assets = market.asset.values
    w = _weights(rng.normal(0.04, 0.02, (6, len(assets))), assets)
    lazy = w.chunk({"portfolio": 2})
    for fn in (lambda x: ex.sector_exposure(x, market), lambda x: ex.leverage(x)["gross"]):
        got = fn(lazy)
        assert got.chunks is not None
        np.testing.assert_allclose(got.compute().values, fn(w).values, rtol=1e-14)


def test_nan_weight_is_refused():
    w = _weights([[0.5, np.nan]], ["a", "b"])
    with pytest.raises(ValidationError) as err:
        ex.leverage(w)
    assert err.value.field == "weights[p0, b]"


def test_current_weights_on_demo_match_model():
    from pmkit.demo import open_demo
    from pmkit.model import weights as model_weights

    reg = open_demo()
    cw = ex.current_weights(reg)
    t = reg.market.indexes["time"][-1]
    ref = model_weights(reg.holdings(times=[t]), reg.market.sel(time=[t])).isel(time=0)
    np.testing.assert_allclose(cw["weight"].values, ref["weight"].values, rtol=1e-14)
    np.testing.assert_allclose(
        cw["weight"].sum("asset") + cw["cash_weight"], np.ones(cw.sizes["portfolio"]), rtol=1e-12
    )
    out = ex.exposure_report(cw, reg.market)
    np.testing.assert_allclose(out["sector_weight"].sum("sector"), out["net"], rtol=1e-12)
