"""Rolling statistics (pmkit.core.rolling, pmkit.analytics.rolling_statistics).

Reference: the full-sample statistic of `pmkit.core.performance` (itself tested
against empyrical in test_core_performance.py) applied to every window in a
Python loop, plus empyrical's own ``roll_*`` functions on a real series.
"""

from __future__ import annotations

import empyrical as ep
import jax
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from numpy.testing import assert_allclose

from pmkit.analytics.performance import rolling_statistics
from pmkit.core import performance as pf
from pmkit.core import precision
from pmkit.core import rolling as rl
from pmkit.datasets import load_benchmark, load_market
from pmkit.errors import AlignmentError, InsufficientDataError, ValidationError
from pmkit.model import simple_returns

W = 21
RF, REQ, PPY = 1e-4, 2e-4, 252.0
ASSETS = ["AAPL", "XOM", "MTUM"]  # MTUM: leading NaN until 2014-01-03


@pytest.fixture(scope="module")
def real() -> tuple[xr.DataArray, xr.DataArray]:
    """Daily returns of three assets and the S&P 500 over 2013-06 to 2014-06 (ragged)."""
    market = load_market(start="2013-06-01", end="2014-06-30").sel(asset=ASSETS)
    returns = simple_returns(market).rename(asset="portfolio").reset_coords(drop=True)
    index = load_benchmark(start="2013-06-01", end="2014-06-30")
    return returns, (index / index.shift(time=1) - 1.0).rename("SP500")


@pytest.fixture(scope="module")
def rolled(real) -> dict[str, np.ndarray]:
    returns, bench = real
    out = rolling_statistics(
        returns, W, bench, risk_free=RF, required_return=REQ, periods_per_year=PPY
    )
    return {k: out[k].values for k in out.data_vars}


def window_loop(r: np.ndarray, b: np.ndarray, window: int) -> dict[str, np.ndarray]:
    """The full-sample statistics applied to every window, one by one (jitted once)."""
    one = jax.jit(
        lambda x, y: {
            "rolling_return": pf.total_return(x),
            "rolling_volatility": pf.annual_volatility(x, PPY),
            "rolling_sharpe": pf.sharpe_ratio(x, RF, PPY),
            "rolling_sortino": pf.sortino_ratio(x, REQ, PPY),
            "rolling_max_drawdown": pf.max_drawdown(x),
            "rolling_beta": pf.beta(x, y),
            "rolling_tracking_error": pf.tracking_error(x, y, PPY),
        }
    )
    out = {k: np.full(len(r), np.nan) for k in rl.ROLLING_STATISTICS}
    out.update({k: np.full(len(r), np.nan) for k in rl.ROLLING_BENCHMARK_STATISTICS})
    for t in range(window - 1, len(r)):
        x, y = r[t - window + 1 : t + 1], b[t - window + 1 : t + 1]
        if np.isnan(x).any():
            continue
        with precision("float64"):  # our own jax.jit of core functions: JAX's default is float32
            for k, v in one(x, y).items():
                out[k][t] = float(v)
    return out


def test_rolling_equals_full_sample_statistic_per_window(real, rolled):
    returns, bench = real
    for k, name in enumerate(ASSETS):
        ref = window_loop(returns.values[k], bench.values, W)
        for stat, expected in ref.items():
            got = rolled[stat][k]
            assert np.array_equal(np.isnan(got), np.isnan(expected)), f"{name} {stat}"
            # cumulative-sum moments: ~1e-13 relative; atol for ratios near 0
            assert_allclose(got, expected, rtol=1e-10, atol=1e-12, err_msg=f"{name} {stat}")


def test_rolling_matches_empyrical_roll_functions(real, rolled):
    returns, bench = real
    r = returns.sel(portfolio="AAPL").values[1:]  # the first day has no return
    b = bench.values[1:]
    k = ASSETS.index("AAPL")
    cases = {
        "rolling_volatility": ep.roll_annual_volatility(r, window=W, annualization=PPY),
        "rolling_sharpe": ep.roll_sharpe_ratio(r, window=W, risk_free=RF, annualization=PPY),
        "rolling_sortino": ep.roll_sortino_ratio(
            r, window=W, required_return=REQ, annualization=PPY
        ),
        "rolling_max_drawdown": ep.roll_max_drawdown(r, window=W),
        "rolling_beta": ep.roll_beta(r, b, window=W),
    }
    for stat, expected in cases.items():
        got = rolled[stat][k][W:]  # full windows of the trimmed series
        assert_allclose(got, np.asarray(expected), rtol=1e-10, atol=1e-12, err_msg=stat)


def test_leading_nan_series_starts_after_a_full_window(real, rolled):
    returns, _ = real
    k = ASSETS.index("MTUM")
    first = int(np.argmax(returns.values[k] == returns.values[k]))
    for stat, values in rolled.items():
        assert np.isnan(values[k][: first + W - 1]).all(), stat
        assert not np.isnan(values[k][first + W - 1 :]).any(), stat


def test_rolling_statistics_labels_and_dask(real, rolled):
    """Chunks of one portfolio (the per-portfolio loop) equal the batched (P, T) call."""
    returns, bench = real
    lazy = rolling_statistics(
        returns.chunk(portfolio=1), W, bench, risk_free=RF, required_return=REQ
    )
    assert lazy["rolling_beta"].chunks is not None
    eager = lazy.compute()
    assert eager["rolling_sharpe"].dims == ("portfolio", "time")
    assert list(eager.indexes["portfolio"]) == ASSETS
    assert eager.attrs["window"] == W
    for stat, values in rolled.items():
        assert_allclose(eager[stat].values, values, rtol=1e-12, atol=1e-15, err_msg=stat)


# ------------------------------------------------------------------ bad input
@pytest.fixture
def small() -> xr.DataArray:
    times = pd.date_range("2021-01-04", periods=8, freq="B")
    data = np.array([[0.01, -0.02, 0.0, 0.03, 0.01, -0.01, 0.02, 0.0]] * 2)
    data[1, :5] = np.nan
    return xr.DataArray(
        data, dims=("portfolio", "time"), coords={"portfolio": ["p1", "p2"], "time": times}
    )


@pytest.mark.parametrize("window", [0, -3, 1, 2.5, "5", True])
def test_bad_window(small, window):
    with pytest.raises(ValidationError) as info:
        rolling_statistics(small, window)
    assert info.value.field == "window"


def test_window_longer_than_series_or_portfolio(small):
    with pytest.raises(InsufficientDataError) as info:
        rolling_statistics(small, 9)
    assert info.value.field == "window"
    with pytest.raises(InsufficientDataError) as info:
        rolling_statistics(small, 4)  # p2 has 3 returns
    assert info.value.value == "p2"


def test_bad_periods_per_year_and_benchmark(small):
    with pytest.raises(ValidationError) as info:
        rolling_statistics(small, 2, periods_per_year=0)
    assert info.value.field == "periods_per_year"
    bench = small.isel(portfolio=0, drop=True)
    with pytest.raises(AlignmentError):
        rolling_statistics(small, 2, bench.isel(time=slice(0, 7)))
    all_nan = small.copy()
    all_nan[0] = np.nan
    with pytest.raises(InsufficientDataError) as info:
        rolling_statistics(all_nan, 2)
    assert info.value.value == "p1"


def test_drawdowns_match_a_wealth_path_by_hand():
    from pmkit.analytics import drawdowns

    r = np.array([[np.nan, 0.10, -0.20, 0.05, 0.30], [0.0, -0.5, 1.0, 0.0, -0.1]])
    times = pd.date_range("2022-01-03", periods=5)
    da = xr.DataArray(r, dims=("portfolio", "time"),
                      coords={"portfolio": ["a", "b"], "time": times})
    dd = drawdowns(da)
    wealth = np.cumprod(1 + np.nan_to_num(r), axis=1)
    peak = np.maximum.accumulate(np.maximum(wealth, 1.0), axis=1)
    np.testing.assert_allclose(dd.values, wealth / peak - 1, rtol=1e-14, atol=1e-15)
    assert dd.dims == ("portfolio", "time") and (dd <= 0).all()
