"""Stress tests: conditional propagation vs numpy, real historical windows vs manual compounding."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pmkit.analytics.valuation import membership_matrix
from pmkit.datasets import load_market
from pmkit.errors import (
    AlignmentError,
    InsufficientDataError,
    MissingPriceError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.risk import stress as st


@pytest.fixture(scope="module")
def market():
    return load_market(start="2005-01-01", end="2022-12-28")


@pytest.fixture(scope="module")
def demo():
    from pmkit.demo import open_demo

    return open_demo()


def _cov(n, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 0.02, (n, n))
    return a @ a.T + np.diag(rng.uniform(1e-4, 4e-4, n))


def _cov_da(c, labels):
    return xr.DataArray(c, dims=("asset", "asset_"), coords={"asset": labels, "asset_": labels})


def _weights(values, assets, pids):
    return xr.DataArray(
        np.asarray(values, float),
        dims=("portfolio", "asset"),
        coords={"portfolio": pids, "asset": assets},
    )


# ---------------------------------------------------------------- conditional propagation
def test_conditional_propagation_equals_numpy_solve():
    labels = [f"a{i}" for i in range(7)]
    c = _cov(7)
    shocks = {"one": {"a1": -0.1}, "two": {"a0": -0.05, "a4": 0.03, "a6": -0.2}}
    got = st.asset_shock_scenarios(shocks, _cov_da(c, labels))
    for name, spec in shocks.items():
        s = [labels.index(a) for a in spec]
        u = [i for i in range(7) if i not in s]
        rs = np.array(list(spec.values()))
        want_u = c[np.ix_(u, s)] @ np.linalg.solve(c[np.ix_(s, s)], rs)
        row = got.sel(scenario=name).values
        np.testing.assert_allclose(row[u], want_u, rtol=1e-10)
        np.testing.assert_array_equal(row[s], rs)  # shocked assets keep their shocks exactly


def test_two_asset_conditional_mean_is_beta_times_shock():
    # E[r_u | r_s] = rho * sigma_u / sigma_s * r_s
    su, ss, rho = 0.3, 0.2, 0.6
    c = np.array([[ss**2, rho * ss * su], [rho * ss * su, su**2]])
    got = st.asset_shock_scenarios({"x": {"s": -0.1}}, _cov_da(c, ["s", "u"]))
    assert float(got.sel(asset="u").item()) == pytest.approx(rho * su / ss * -0.1, rel=1e-13)


def test_conditional_mean_matches_gaussian_sample_regression():
    # Independent check: the OLS slope of r_u on r_s in a large Gaussian sample.
    c = _cov(3, seed=5)
    rng = np.random.default_rng(6)
    x = rng.multivariate_normal(np.zeros(3), c, size=400_000)
    slope, *_ = np.linalg.lstsq(x[:, :1], x[:, 1:], rcond=None)
    got = st.asset_shock_scenarios({"x": {"a": 0.1}}, _cov_da(c, ["a", "b", "c"]))
    np.testing.assert_allclose(got.values[0, 1:], 0.1 * slope[0], rtol=2e-2)


def test_sector_shock_is_asset_shock_of_all_members(market):
    labels = market.asset.values.tolist()
    c = _cov(len(labels), seed=2)
    got = st.sector_shock_scenarios({"energy": {"Energy": -0.3}}, _cov_da(c, labels), market)
    members = [a for a in labels if market["sector"].sel(asset=a) == "Energy"]
    assert members == ["CVX", "RRC", "XOM"]
    ref = st.asset_shock_scenarios({"energy": dict.fromkeys(members, -0.3)}, _cov_da(c, labels))
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-14)
    np.testing.assert_array_equal(got.sel(asset=members).values, -0.3)
    with pytest.raises(ValidationError):
        st.sector_shock_scenarios({"x": {"Utilities": -0.1}}, _cov_da(c, labels), market)


def test_factor_shock_is_betas_times_factors():
    assets, factors = ["a", "b", "c"], ["f", "g"]
    b = xr.DataArray(
        [[1.2, 0.1], [0.4, -0.5], [0.0, 2.0]],
        dims=("asset", "factor"),
        coords={"asset": assets, "factor": factors},
    )
    got = st.factor_shock_scenarios({"s": {"f": -0.1, "g": 0.02}, "t": {"g": -0.05}}, b)
    np.testing.assert_allclose(got.sel(scenario="s"), b.values @ [-0.1, 0.02], rtol=1e-14)
    np.testing.assert_allclose(got.sel(scenario="t"), b.values @ [0.0, -0.05], rtol=1e-14)
    # with a factor covariance the unshocked factor takes its conditional mean
    fc = np.array([[0.04, 0.012], [0.012, 0.01]])
    got = st.factor_shock_scenarios({"t": {"g": -0.05}}, b, _cov_da(fc, factors))
    f = np.array([0.012 / 0.01 * -0.05, -0.05])
    np.testing.assert_allclose(got.values[0], b.values @ f, rtol=1e-13)
    assert got.attrs["factor_shock"]["t"]["f"] == pytest.approx(f[0])


def test_singular_shocked_block_and_bad_inputs_are_refused():
    c = np.ones((3, 3)) * 0.01  # rank one
    with pytest.raises(ValidationError) as err:
        st.asset_shock_scenarios({"x": {"a": -0.1, "b": -0.1}}, _cov_da(c, ["a", "b", "c"]))
    assert err.value.field == "cov"
    good = _cov_da(_cov(3), ["a", "b", "c"])
    with pytest.raises(UnknownAssetError):
        st.asset_shock_scenarios({"x": {"zz": -0.1}}, good)
    with pytest.raises(ValidationError) as err:
        st.asset_shock_scenarios({"x": {"a": -1.5}}, good)
    assert err.value.field == "shocks['x']['a']"
    bad = good.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValidationError) as err:
        st.asset_shock_scenarios({"x": {"a": -0.1}}, bad)
    assert err.value.field == "cov[a, b]"


# ---------------------------------------------------------------- P&L, groups, batching
def test_stress_pnl_groups_and_batching():
    labels = ["a", "b", "c", "d"]
    c = _cov(4, seed=3)
    pids = ["p1", "p2", "p3"]
    w = _weights([[0.5, 0.3, 0, 0], [0, 0.2, 0.2, 0.5], [-0.3, 0, 0.6, 0.6]], labels, pids)
    nav = xr.DataArray([1e6, 2e5, 5e5], dims="portfolio", coords={"portfolio": pids})
    mem = xr.DataArray(
        [[1, 1, 0], [0, 1, 1], [1, 1, 1]],
        dims=("group", "portfolio"),
        coords={"group": ["g1", "g2", "all"], "portfolio": pids},
    )
    shocks = {"s1": {"a": -0.2}, "s2": {"b": 0.05, "d": -0.1}}
    out = st.hypothetical_stress(w, shocks, cov=_cov_da(c, labels), values=nav, membership=mem)
    r = out["asset_return"].values
    np.testing.assert_allclose(out["return"].values, w.values @ r.T, rtol=1e-13)
    np.testing.assert_allclose(out["pnl"].values, nav.values[:, None] * (w.values @ r.T))
    # groups = sum over members
    np.testing.assert_allclose(out["group_pnl"].values, mem.values @ out["pnl"].values)
    np.testing.assert_allclose(
        out["group_return"].sel(group="g2"),
        out["pnl"].sel(portfolio=["p2", "p3"]).sum("portfolio") / (2e5 + 5e5),
    )
    # batching equals a loop over portfolios
    for p in pids:
        one = st.stress_pnl(w.sel(portfolio=[p]), out["asset_return"], values=nav)
        np.testing.assert_allclose(one["pnl"].values[0], out["pnl"].sel(portfolio=p).values)
    # a held asset missing from the scenarios is refused; an unheld one is fine
    w2 = xr.concat([w, w.isel(asset=[0]).assign_coords(asset=["zz"]) * 0], "asset")
    st.stress_pnl(w2, out["asset_return"])
    with pytest.raises(AlignmentError):
        st.stress_pnl(w2 + 0.01, out["asset_return"])


# ---------------------------------------------------------------- historical windows
def test_standard_window_dates_are_trading_days(market):
    times = market.indexes["time"]
    for start, end in st.STANDARD_WINDOWS.values():
        assert pd.Timestamp(start) in times and pd.Timestamp(end) in times


def test_historical_stress_equals_manual_compounding(market):
    stocks = ["AAPL", "JPM", "XOM", "KO", "GE"]
    pids = ["p1", "p2"]
    w = _weights([[0.3, 0.2, 0.2, 0.2, 0.1], [0.0, 0.5, -0.2, 0.4, 0.0]], stocks, pids)
    out = st.historical_stress(w, market)
    close = market["close"].sel(asset=stocks).to_pandas().T  # time x asset
    for name, (start, end) in st.STANDARD_WINDOWS.items():
        before = close.index[close.index.get_loc(pd.Timestamp(start)) - 1]  # the prior close
        compounded = close.loc[end] / close.loc[before] - 1
        # the same as compounding every daily return of the window, its first day included
        daily = close.pct_change().loc[start:end]
        assert daily.index[0] == pd.Timestamp(start)
        np.testing.assert_allclose((1 + daily).prod() - 1, compounded, rtol=1e-12)
        np.testing.assert_allclose(
            out["asset_return"].sel(window=name, asset=stocks), compounded.values, rtol=1e-12
        )
        np.testing.assert_allclose(
            out["return"].sel(window=name), w.values @ compounded.values, rtol=1e-12
        )
        assert out["window_start"].sel(window=name) == np.datetime64(start)
        assert out["window_end"].sel(window=name) == np.datetime64(end)
        assert out["window_base"].sel(window=name) == np.datetime64(before)
    # sanity on the real data: both windows were heavy losses for a long book
    assert (out["return"].sel(portfolio="p1") < -0.15).all()


def test_window_dates_snap_to_trading_days_inside(market):
    w = _weights([[1.0]], ["JPM"], ["p"])
    out = st.historical_stress(w, market, {"x": ("2008-09-13", "2008-10-18")})  # Sat..Sat
    assert out["window_start"].values[0] == np.datetime64("2008-09-15")
    assert out["window_end"].values[0] == np.datetime64("2008-10-17")
    with pytest.raises(InsufficientDataError) as err:
        st.historical_stress(w, market, {"weekend": ("2008-09-13", "2008-09-14")})
    assert err.value.field == "windows['weekend']"


def test_window_includes_its_first_day(market):
    w = _weights([[1.0]], ["JPM"], ["p"])
    close = market["close"].sel(asset="JPM").to_pandas()
    # a one-day window is that day's own move, from the previous close (Friday 2008-09-12)
    day = st.historical_stress(w, market, {"d": ("2008-09-15", "2008-09-15")})
    expected = close.loc["2008-09-15"] / close.loc["2008-09-12"] - 1
    assert float(day["return"].item()) == pytest.approx(expected, rel=1e-12)
    assert day["window_base"].values[0] == np.datetime64("2008-09-12")
    # the Lehman window compounds 2008-09-15's move with the rest
    lehman = st.historical_stress(w, market, {"Lehman": st.STANDARD_WINDOWS["Lehman"]})
    later = close.loc["2008-10-15"] / close.loc["2008-09-15"] - 1
    assert float(lehman["return"].item()) == pytest.approx(
        (1 + expected) * (1 + later) - 1, rel=1e-12
    )
    first = market.indexes["time"][0]
    with pytest.raises(InsufficientDataError) as err:  # no close before the data's first day
        st.historical_stress(w, market, {"start": (first, first + pd.Timedelta(days=30))})
    assert err.value.field == "windows['start']"


def test_unlisted_assets_are_cash_with_a_warning_or_renormalized(market):
    assets = ["MTUM", "JPM", "KO"]
    w = _weights([[0.4, 0.3, 0.2]], assets, ["p"])
    win = {"Lehman": st.STANDARD_WINDOWS["Lehman"]}
    close = market["close"].sel(asset=["JPM", "KO"]).to_pandas().T
    r = (close.loc["2008-10-15"] / close.loc["2008-09-12"] - 1).values  # from the prior close
    with pytest.warns(UserWarning, match="MTUM"):
        cash = st.historical_stress(w, market, win)
    assert float(cash["return"].item()) == pytest.approx(0.3 * r[0] + 0.2 * r[1], rel=1e-12)
    assert float(cash["unlisted_weight"].item()) == pytest.approx(0.4)
    assert np.isnan(cash["asset_return"].sel(asset="MTUM").item())
    with pytest.warns(UserWarning):
        ren = st.historical_stress(w, market, win, unlisted="renormalize")
    scale = 0.9 / 0.5
    assert float(ren["return"].item()) == pytest.approx(scale * (0.3 * r[0] + 0.2 * r[1]))
    with pytest.raises(MissingPriceError):
        st.historical_stress(w, market, win, unlisted="raise")
    # no warning for the 2020 window, where MTUM is listed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        st.historical_stress(w, market, {"Covid crash": st.STANDARD_WINDOWS["Covid crash"]})


def test_historical_stress_on_demo_registry_groups(demo):
    from pmkit.risk.exposures import current_weights

    cw = current_weights(demo)
    mem = membership_matrix(demo)
    assert mem.sel(group="firm").values.tolist() == [1.0] * 4
    with pytest.warns(UserWarning, match="client_b/factors"):
        out = st.historical_stress(cw, demo.market, membership=mem)
    members = demo.get_group_portfolios("client_a")
    np.testing.assert_allclose(
        out["group_pnl"].sel(group="client_a"), out["pnl"].sel(portfolio=members).sum("portfolio")
    )
    np.testing.assert_allclose(
        out["group_value"].sel(group="firm"),
        sum(demo.value(p) for p in cw.portfolio.values),
        rtol=1e-12,
    )
    np.testing.assert_allclose(out["pnl"], out["return"] * cw["nav"], rtol=1e-14)
