"""Expected-return and covariance estimators (pmkit.optimize.estimators).

References: pandas (``mean``, ``ewm(span).mean()``, ``corr``), numpy on the common
observations of each asset and the market, and PyPortfolioOpt 1.6
(``mean_historical_return``, ``ema_historical_return``, ``capm_return`` with
``returns_data=True``, ``risk_models.sample_cov``) on the bundled market data,
whose five ETFs list in 2014 (a real ragged history). Ledoit–Wolf against
scikit-learn is tested in tests/test_covariance.py and not repeated here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pmkit.errors import InsufficientDataError, ValidationError
from pmkit.optimize.estimators import correlation, covariance, expected_returns


@pytest.fixture(scope="module")
def real():
    from pmkit.datasets import load_benchmark, load_market
    from pmkit.model import simple_returns

    returns = simple_returns(load_market()).isel(time=slice(1, None))
    index = load_benchmark()
    market = (index / index.shift(time=1) - 1).isel(time=slice(1, None)).rename("SP500")
    return returns, market


@pytest.fixture(scope="module")
def ragged() -> xr.DataArray:
    """Synthetic (asset, time) returns: late listings, an interior gap, a trailing gap."""
    rng = np.random.default_rng(7)
    x = rng.normal(0.0004, 0.012, (6, 400)) + rng.normal(0, 0.008, 400)
    x[1, :150] = np.nan  # listed late
    x[2, 200:230] = np.nan  # suspended
    x[3, :390] = np.nan  # 10 observations only
    x[4, 380:] = np.nan  # stopped reporting
    times = pd.date_range("2021-01-01", periods=400, freq="B")
    return xr.DataArray(
        x, dims=("asset", "time"),
        coords={"asset": [f"A{i}" for i in range(6)], "time": times,
                "sector": ("asset", list("xxyyzz"))},
    )


def pypfopt_quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyPortfolioOpt warns about NaNs it then skips
        return func(*args, **kwargs)


@pytest.mark.parametrize("compounding", [False, True])
def test_mean_matches_pandas_and_pypfopt(ragged, real, compounding):
    from pypfopt import expected_returns as ref

    frame = ragged.to_pandas().T
    got = expected_returns(ragged, "mean", compounding=compounding)
    if compounding:
        expected = (1 + frame).prod() ** (252 / frame.count()) - 1
    else:
        expected = frame.mean() * 252
    np.testing.assert_allclose(got.values, expected.values, rtol=1e-12)
    assert got.dims == ("asset",) and list(got["sector"].values) == list("xxyyzz")
    assert got.attrs["units"] == "fraction per year"

    returns, _ = real
    df = returns.to_pandas().T
    want = pypfopt_quiet(ref.mean_historical_return, df, returns_data=True,
                         compounding=compounding)
    np.testing.assert_allclose(expected_returns(returns, compounding=compounding).values,
                               want.values, rtol=1e-12)


@pytest.mark.parametrize("compounding", [False, True])
def test_ewma_matches_pandas_and_pypfopt(ragged, real, compounding):
    from pypfopt import expected_returns as ref

    frame = ragged.to_pandas().T
    for span in (1.0, 5.0, 60.0, 500.0):
        last = frame.ewm(span=span).mean().iloc[-1]
        want = (1 + last) ** 252 - 1 if compounding else last * 252
        got = expected_returns(ragged, "ewma", span=span, compounding=compounding)
        np.testing.assert_allclose(got.values, want.values, rtol=1e-11)
        assert got.attrs["span"] == span

    returns, _ = real
    df = returns.to_pandas().T
    want = pypfopt_quiet(ref.ema_historical_return, df, returns_data=True, span=500,
                         compounding=compounding)
    got = expected_returns(returns, "ewma", span=500, compounding=compounding)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-10)


@pytest.mark.parametrize("compounding", [False, True])
def test_capm_matches_pypfopt_on_complete_data(real, compounding):
    from pypfopt import expected_returns as ref

    returns, market = real
    stocks = returns.sel(asset=[a for a in returns["asset"].values if a not in
                                ("MTUM", "QUAL", "SIZE", "USMV", "VLUE")])
    df = stocks.to_pandas().T
    assert not df.isna().any().any()
    got = expected_returns(stocks, "capm", risk_free=0.02, compounding=compounding)
    want = ref.capm_return(df.copy(), returns_data=True, risk_free_rate=0.02,
                           compounding=compounding)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-12)
    got = expected_returns(stocks, "capm", market=market, risk_free=0.02,
                           compounding=compounding)
    want = ref.capm_return(df.copy(), market_prices=market.to_pandas().to_frame(),
                           returns_data=True, risk_free_rate=0.02, compounding=compounding)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-12)
    assert got.attrs["market"] == "SP500"


def test_capm_on_ragged_data_uses_common_observations(ragged):
    rng = np.random.default_rng(3)
    market_values = rng.normal(0.0003, 0.01, 400)
    market_values[:5] = np.nan
    market = xr.DataArray(market_values, dims=("time",), coords={"time": ragged["time"].values})
    got = expected_returns(ragged, "capm", market=market, risk_free=0.01)
    e_m = np.nanmean(market_values) * 252
    for i, asset in enumerate(ragged["asset"].values):
        x = ragged.values[i]
        ok = ~np.isnan(x) & ~np.isnan(market_values)
        beta = np.cov(x[ok], market_values[ok])[0, 1] / np.var(market_values[ok], ddof=1)
        assert float(got["beta"].sel(asset=asset)) == pytest.approx(beta, rel=1e-12)
        assert float(got.sel(asset=asset)) == pytest.approx(0.01 + beta * (e_m - 0.01), rel=1e-12)
    # Labels align the market, not positions: shuffled times give the same answer.
    shuffled = market.isel(time=rng.permutation(400))
    np.testing.assert_allclose(
        expected_returns(ragged, "capm", market=shuffled).values,
        expected_returns(ragged, "capm", market=market).values, rtol=1e-14,
    )


def test_capm_market_as_an_asset_has_beta_one(ragged):
    proxy = ragged.mean("asset", skipna=True)  # the default proxy, equal-weighted
    with_market = xr.concat([ragged.drop_vars("sector"), proxy.expand_dims(asset=["MKT"])],
                            dim="asset")
    got = expected_returns(with_market, "capm", risk_free=0.0)
    assert float(got["beta"].sel(asset="MKT")) == pytest.approx(1.0, rel=1e-12)
    assert float(got.sel(asset="MKT")) == pytest.approx(float(proxy.mean()) * 252, rel=1e-12)
    assert got.attrs["market"] == "equal-weighted mean of available assets"


def test_estimator_errors(ragged):
    with pytest.raises(InsufficientDataError) as info:
        expected_returns(ragged, "mean", min_observations=20)
    assert info.value.value == "A3" and "10" in str(info.value)
    with pytest.raises(InsufficientDataError, match="A3"):
        expected_returns(ragged, "capm", min_observations=20)
    with pytest.raises(ValidationError, match="method"):
        expected_returns(ragged, "median")
    with pytest.raises(ValidationError, match="span"):
        expected_returns(ragged, "ewma", span=0.5)
    with pytest.raises(ValidationError, match="returns"):
        expected_returns(ragged.values)
    bad = ragged.copy()
    bad[0, 5] = np.inf
    with pytest.raises(ValidationError, match=r"returns\[A0"):
        expected_returns(bad)
    with pytest.raises(ValidationError, match="market"):
        expected_returns(ragged, "capm", market=ragged)


def test_covariance_delegates_and_annualizes(ragged, real):
    from pypfopt import risk_models

    from pmkit.risk.covariance import covariance_matrix

    overlapping = ragged.drop_sel(asset="A3")  # A3 and A4 are never observed together
    for method in ("sample", "ledoit_wolf", "ewma"):
        per_period = covariance_matrix(overlapping, method)
        got = covariance(overlapping, method, annualize=False)
        np.testing.assert_array_equal(got.values, per_period.values)
        assert got.attrs["units"] == "fraction**2 per period"
        # annualized by default, like expected_returns
        yearly = covariance(overlapping, method, periods_per_year=12)
        np.testing.assert_allclose(yearly.values, per_period.values * 12, rtol=1e-15)
        assert yearly.attrs["units"] == "fraction**2 per year"
        assert yearly.attrs["periods_per_year"] == 12 and got.attrs["periods_per_year"] == 252
        assert yearly.attrs["method"] == method and yearly.dims == ("asset", "asset_j")
    assert covariance(overlapping, "ewma", decay=0.97).attrs["decay"] == 0.97

    returns, _ = real
    want = pypfopt_quiet(risk_models.sample_cov, returns.to_pandas().T, returns_data=True)
    got = covariance(returns)
    np.testing.assert_allclose(got.values, want.values, rtol=1e-11)


def test_correlation(ragged):
    complete = ragged.isel(asset=[0, 2, 5]).dropna("time")
    corr = correlation(covariance(complete))
    want = complete.to_pandas().T.corr()
    np.testing.assert_allclose(corr.values, want.values, rtol=1e-12)
    np.testing.assert_array_equal(np.diag(corr.values), 1.0)
    # Units cancel: an annualized covariance gives the same correlation.
    yearly = correlation(covariance(complete, annualize=True))
    np.testing.assert_allclose(yearly.values, np.corrcoef(complete.values), rtol=1e-12)
    assert corr.dims == ("asset", "asset_j") and corr.attrs["units"] == "1"
    zero = corr.copy(data=np.diag([1.0, 0.0, 1.0]))
    with pytest.raises(ValidationError, match="A2"):
        correlation(zero)
