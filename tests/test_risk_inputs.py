"""Every public risk function takes 1-D, unlabelled and labelled weights alike.

The same weights in five forms — labelled (portfolio, asset), labelled (asset,),
numpy 1-D, a plain list, numpy 2-D — must give the same numbers; a wrong shape is a
typed `ValidationError` naming ``weights``. Also: the one missing-data policy of
`var`, `expected_shortfall` and `performance_table`, and the daily/annualized labels
of every volatility shown.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
import xarray as xr

from pmkit.analytics.performance import (
    ANNUALIZED_VOLATILITIES,
    performance_table,
    rolling_statistics,
)
from pmkit.datasets import load_market
from pmkit.errors import ValidationError
from pmkit.model.market import simple_returns
from pmkit.risk import exposures as ex
from pmkit.risk import measures as rm
from pmkit.risk import stress as st
from pmkit.risk.covariance import covariance_matrix

# MTUM lists in 2014: ragged history, and fat tails put Cornish–Fisher outside its domain
ASSETS = ["AAPL", "JPM", "KO", "XOM", "MTUM"]
W = [0.3, 0.2, -0.1, 0.25, 0.35]


@pytest.fixture(scope="module")
def data():
    market = load_market().sel(asset=ASSETS)
    returns = simple_returns(market)
    recent = returns.sel(time=slice("2015-01-01", None))
    cov = covariance_matrix(recent)
    scen = st.asset_shock_scenarios({"crash": {"JPM": -0.2}, "oil": {"XOM": -0.3}}, cov)
    betas = ex.factor_betas(recent)
    return market, returns, scen, cov, betas


def _functions(d) -> dict[str, Callable]:
    market, returns, scen, cov, betas = d
    mc = {"n_scenarios": 500, "seed": 1}
    fns: dict[str, Callable] = {}
    for method in rm.METHODS:
        kw = mc if method.startswith("monte_carlo") else {}
        fns[f"var_{method}"] = lambda w, m=method, k=kw: rm.var(w, returns, 0.99, method=m, **k)
        fns[f"es_{method}"] = lambda w, m=method, k=kw: rm.expected_shortfall(
            w, returns, 0.99, method=m, **k
        )
    fns["volatility"] = lambda w: rm.volatility(w, returns)
    for measure in ("volatility", "var", "es"):
        for method in ("historical", "cornish_fisher"):
            fns[f"contributions_{measure}_{method}"] = (
                lambda w, a=measure, m=method: rm.risk_contributions(
                    w, returns, method=m, measure=a
                )
            )
    fns["risk_report"] = lambda w: rm.risk_report(w, returns)  # defaults include CF
    fns["portfolio_factor_exposure"] = lambda w: ex.portfolio_factor_exposure(w, betas)
    fns["sector_exposure"] = lambda w: ex.sector_exposure(w, market)
    fns["asset_class_exposure"] = lambda w: ex.asset_class_exposure(w, market)
    fns["coord_exposure"] = lambda w: ex.coord_exposure(w, market, "sector")
    fns["leverage"] = lambda w: ex.leverage(w)
    fns["concentration"] = lambda w: ex.concentration(w, 2)
    fns["exposure_report"] = lambda w: ex.exposure_report(w, market, k=2)
    fns["historical_stress"] = lambda w: st.historical_stress(w, market)
    fns["stress_pnl"] = lambda w: st.stress_pnl(w, scen)
    fns["hypothetical_stress"] = lambda w: st.hypothetical_stress(
        w, {"crash": {"JPM": -0.2}}, cov=cov
    )
    return fns


NAMES = sorted(_functions((None,) * 5))

FORMS: dict[str, Callable] = {
    "labelled_1d": lambda: xr.DataArray(W, dims=("asset",), coords={"asset": ASSETS}),
    "numpy_1d": lambda: np.array(W),
    "list_1d": lambda: list(W),
    "numpy_2d": lambda: np.array([W]),
}


def _quiet(fn: Callable, w):
    with warnings.catch_warnings():
        # CF outside its domain and unlisted ETFs in 2008 warn; the numbers are what we test
        warnings.simplefilter("ignore")
        return fn(w)


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("name", NAMES)
def test_weight_forms_give_the_same_numbers(data, name, form):
    fn = _functions(data)[name]
    labelled = xr.DataArray(
        [W], dims=("portfolio", "asset"), coords={"portfolio": ["p"], "asset": ASSETS}
    )
    ref = _quiet(fn, labelled).sel(portfolio="p", drop=True)
    got = _quiet(fn, FORMS[form]())
    if form == "numpy_2d":
        assert got["portfolio"].values.tolist() == [0]  # unnamed portfolios are numbered
        got = got.isel(portfolio=0, drop=True)
    assert "portfolio" not in got.dims
    xr.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_weight_shapes_are_typed_errors(data, name):
    fn = _functions(data)[name]
    bads = [np.ones((1, 2, 5)), "AAPL", xr.DataArray(W, dims=("stock",)), [[0.1], [0.2, 0.3]]]
    if name not in ("leverage", "concentration"):  # the others have an asset axis to match
        bads.append(np.array(W[:-1]))
    for bad in bads:
        with pytest.raises(ValidationError) as err:
            _quiet(fn, bad)
        assert err.value.field == "weights"


def test_cornish_fisher_on_1d_weights_warns_instead_of_key_error(data):
    _, returns, *_ = data
    w = xr.DataArray(W, dims=("asset",), coords={"asset": ASSETS})
    with pytest.warns(rm.CornishFisherDomainWarning, match="0 \\(skew"):
        v = rm.var(w, returns, method="cornish_fisher")
    assert v.dims == () and np.isfinite(float(v))


# ------------------------------------------------------------------ missing data: one policy
def _with_gap(returns: xr.DataArray) -> xr.DataArray:
    gap = returns.copy()
    gap.loc[{"asset": "KO", "time": "2010-06-15"}] = np.nan
    return gap


@pytest.mark.parametrize("fn", [rm.var, rm.expected_shortfall, rm.volatility])
def test_risk_measures_refuse_a_gap_naming_asset_and_time(data, fn):
    _, returns, *_ = data
    w = xr.DataArray(W, dims=("asset",), coords={"asset": ASSETS})
    with pytest.raises(ValidationError, match="2010-06-15") as err:
        fn(w, _with_gap(returns))
    assert err.value.field == "returns" and err.value.value == "KO"
    # an asset the portfolio does not hold may have gaps: it is not used
    unheld = w.where(w.asset != "KO", 0.0)
    np.testing.assert_allclose(fn(unheld, _with_gap(returns)), fn(unheld, returns), rtol=1e-14)


def test_performance_table_refuses_a_gap_the_same_way(data):
    _, returns, *_ = data
    gap = _with_gap(returns.sel(asset=["AAPL", "KO"]).isel(time=slice(1, None)))
    with pytest.raises(ValidationError, match="2010-06-15") as err:
        performance_table(gap.rename(asset="portfolio"))
    assert err.value.field == "returns" and err.value.value == "KO"


def test_leading_nan_is_not_listed_yet_in_both(data):
    _, returns, *_ = data
    mtum = returns.sel(asset="MTUM")
    start = int(np.argmax(mtum.notnull().values))
    assert start > 1000  # the ETF lists in 2014: its leading NaN are accepted
    w = xr.DataArray([1.0], dims=("asset",), coords={"asset": ["MTUM"]})
    vol = rm.volatility(w, returns)
    assert float(vol) == pytest.approx(float(mtum.std(ddof=1)), rel=1e-12)
    table = performance_table(mtum.rename("MTUM"))
    assert int(table["observations"].item()) == int(mtum.notnull().sum())


# ------------------------------------------------------------------ volatility labels
def test_volatility_is_labelled_per_period_or_annualized(data):
    _, returns, *_ = data
    w = xr.DataArray(W, dims=("asset",), coords={"asset": ASSETS})
    vol = rm.volatility(w, returns)
    assert vol.attrs["annualized"] == 0 and vol.attrs["units"].endswith("not annualized")
    vol10 = rm.volatility(w, returns, 10)
    assert vol10.attrs["units"] == "fraction per 10 periods, not annualized"
    assert float(vol10) == pytest.approx(float(vol) * math.sqrt(10), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rm.CornishFisherDomainWarning)
        rep = rm.risk_report(w, returns, horizon=5)
    for name in ("volatility", "std"):
        assert rep[name].attrs["annualized"] == 0
    assert rep["volatility"].attrs["horizon"] == 5 and rep["std"].attrs["horizon"] == 1
    assert float(rep["volatility"]) == pytest.approx(float(rep["std"]) * math.sqrt(5), rel=1e-12)
    contrib = rm.risk_contributions(w, returns)
    assert contrib.attrs["annualized"] == 0
    # performance statistics: every volatility-type column is annualized and says so
    port = xr.DataArray(
        (returns.sel(asset=["AAPL", "JPM"]).isel(time=slice(1, None)).values.T @ [0.5, 0.5]),
        dims=("time",),
        coords={"time": returns.time.values[1:]},
        name="p",
    )
    table = performance_table(port)
    assert table["annual_volatility"].attrs["annualized"] == 1
    assert float(table["annual_volatility"].item()) == pytest.approx(
        float(port.std(ddof=1)) * math.sqrt(252), rel=1e-10
    )
    rolling = rolling_statistics(port, window=63)
    for name in set(rolling.data_vars) | set(table.data_vars):
        ds = rolling if name in rolling else table
        if "volatility" in name or name in ("downside_risk", "tracking_error"):
            assert ds[name].attrs.get("annualized") == 1, name
    assert {"annual_volatility", "rolling_volatility"} <= ANNUALIZED_VOLATILITIES
