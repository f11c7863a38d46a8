"""Performance statistics (pmkit.core.performance, pmkit.analytics.performance).

References: empyrical-reloaded for every statistic it has, quantstats for win
rate, profit factor and payoff ratio, closed forms and hand-worked paths for
the rest. Definitional differences, tested against the closed form instead:

- ``information_ratio`` is empyrical ``excess_sharpe`` * sqrt(periods_per_year)
  (empyrical does not annualize it);
- ``tracking_error`` is ``std(r - b, ddof=1) * sqrt(ppy)`` (not in empyrical);
- ``omega_ratio`` takes a per-period threshold: empyrical ``omega_ratio`` with
  ``annualization=1``;
- ``win_rate`` and ``profit_factor`` are NaN where quantstats returns 0.0
  (no non-zero return / neither gains nor losses).

Shapes are kept few on purpose: every new shape is one XLA compilation.
"""

from __future__ import annotations

import math

import dask.array  # noqa: F401  (registers chunking with xarray)
import empyrical as ep
import jax
import numpy as np
import pandas as pd
import pytest
import quantstats as qs
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pmkit.analytics.performance import group_returns, performance_table
from pmkit.core import performance as pf
from pmkit.core import precision
from pmkit.datasets import load_benchmark, load_market
from pmkit.errors import AlignmentError, InsufficientDataError, ValidationError
from pmkit.model import simple_returns

PPY = 252.0
RF = 1e-4  # per period, about 2.5 % a year
REQ = 2e-4
THR = 1e-4
ASSETS = ["AAPL", "JPM", "XOM", "KO", "MTUM"]  # MTUM lists on 2014-01-02: leading NaN


@pytest.fixture(scope="module")
def real() -> tuple[xr.DataArray, xr.DataArray]:
    """Daily simple returns of 5 real assets and the S&P 500, 2010-2022."""
    market = load_market(start="2010-01-01").sel(asset=ASSETS)
    returns = simple_returns(market).rename(asset="portfolio").reset_coords(drop=True)
    index = load_benchmark(start="2010-01-01")
    bench = (index / index.shift(time=1) - 1.0).rename("SP500")
    return returns, bench


@pytest.fixture(scope="module")
def real_stats(real) -> dict[str, np.ndarray]:
    returns, bench = real
    return stats(returns.values, bench.values)


def trimmed(r: np.ndarray, b: np.ndarray | None = None):
    """The series without its leading NaN (and the benchmark on the same periods)."""
    first = int(np.argmax(~np.isnan(r)))
    return (r[first:], None if b is None else b[first:])


def empyrical_reference(r: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Every statistic from empyrical (or its closed form), on a NaN-free series."""
    active = r - b
    return {
        "observations": len(r),
        "total_return": ep.cum_returns_final(r),
        "cagr": ep.annual_return(r, annualization=PPY),
        "annual_volatility": ep.annual_volatility(r, annualization=PPY),
        "sharpe_ratio": ep.sharpe_ratio(r, risk_free=RF, annualization=PPY),
        "downside_risk": ep.downside_risk(r, required_return=REQ, annualization=PPY),
        "sortino_ratio": ep.sortino_ratio(r, required_return=REQ, annualization=PPY),
        "max_drawdown": ep.max_drawdown(r),
        "calmar_ratio": ep.calmar_ratio(r, annualization=PPY),
        "omega_ratio": ep.omega_ratio(r, required_return=THR, annualization=1),
        "beta": ep.beta(r, b),
        "alpha": ep.alpha(r, b, risk_free=RF, annualization=PPY),
        "tracking_error": np.std(active, ddof=1) * math.sqrt(PPY),
        "information_ratio": ep.excess_sharpe(r, b) * math.sqrt(PPY),
        "up_capture": ep.up_capture(r, b, period="daily"),
        "down_capture": ep.down_capture(r, b, period="daily"),
    }


def closed_forms(r: np.ndarray) -> dict[str, float]:
    """Win rate, profit factor and payoff ratio written out in numpy."""
    wins, losses, moves = r[r > 0], r[r < 0], np.count_nonzero(r)
    gains, lost = r[r >= 0].sum(), -losses.sum()
    return {
        "win_rate": len(wins) / moves if moves else np.nan,
        "profit_factor": gains / lost if lost > 0 else (np.inf if gains > 0 else np.nan),
        "payoff_ratio": wins.mean() / abs(losses.mean()) if len(losses) and len(wins) else np.nan,
    }


def drawdown_reference(r: np.ndarray) -> tuple[float, float, float, float]:
    """Max drawdown, peak->trough, peak->recovery, trough->recovery, by a plain loop."""
    wealth = [1.0]
    for x in r:
        wealth.append(wealth[-1] * (1.0 + x))
    peak_value, peak_at, worst, worst_at, worst_peak = 1.0, 0, 0.0, 0, 0
    for k, w in enumerate(wealth):
        if w >= peak_value:
            peak_value, peak_at = w, k
        dd = w / peak_value - 1.0
        if dd < worst:
            worst, worst_at, worst_peak = dd, k, peak_at
    if worst == 0.0:
        return 0.0, 0.0, 0.0, 0.0
    level = wealth[worst_peak]
    rec = next((k for k in range(worst_at + 1, len(wealth)) if wealth[k] >= level), None)
    if rec is None:
        return worst, float(worst_at - worst_peak), np.nan, np.nan
    return worst, float(worst_at - worst_peak), float(rec - worst_peak), float(rec - worst_at)


# ------------------------------------------------------------------ real data vs references
def test_real_data_matches_empyrical(real, real_stats):
    returns, bench = real
    assert returns.isel(time=0).isnull().all()
    assert int(returns.sel(portfolio="MTUM").isnull().sum()) > 900  # ragged: lists 2014
    for k, name in enumerate(ASSETS):
        r, b = trimmed(returns.values[k], bench.values)
        assert not np.isnan(r).any() and not np.isnan(b).any()
        for stat, expected in empyrical_reference(r, b).items():
            assert_allclose(real_stats[stat][k], expected, rtol=1e-10, err_msg=f"{name} {stat}")


def test_real_data_matches_quantstats(real, real_stats):
    returns, _ = real
    for k, name in enumerate(ASSETS):
        r, _ = trimmed(returns.values[k])
        s = pd.Series(r, index=returns.indexes["time"][-len(r) :])
        expected = {
            "win_rate": qs.stats.win_rate(s),
            "profit_factor": qs.stats.profit_factor(s),
            "payoff_ratio": qs.stats.payoff_ratio(s),
        }
        for stat, value in expected.items():
            assert_allclose(real_stats[stat][k], value, rtol=1e-10, err_msg=f"{name} {stat}")


def test_real_data_drawdown_durations_match_loop(real, real_stats):
    returns, _ = real
    for k in range(len(ASSETS)):
        r, _ = trimmed(returns.values[k])
        mdd, dur, to_rec, rec = drawdown_reference(r)
        assert_allclose(real_stats["max_drawdown"][k], mdd, rtol=1e-10)
        got = [real_stats[s][k] for s in ("drawdown_duration", "drawdown_peak_to_recovery")]
        assert_allclose(got, [dur, to_rec])
        assert_allclose(real_stats["drawdown_recovery"][k], rec)


def stats(returns: np.ndarray, bench: np.ndarray) -> dict[str, np.ndarray]:
    """The batched core call, with the keyword set the xarray layer uses (one jit cache)."""
    out = pf.performance_stats(
        returns,
        bench,
        risk_free=RF,
        required_return=REQ,
        threshold=THR,
        periods_per_year=PPY,
    )
    return {k: np.asarray(v) for k, v in out.items()}


def test_batched_equals_per_portfolio_loop(real, real_stats):
    returns, bench = real
    for k in range(len(ASSETS)):
        one = stats(returns.values[k : k + 1], bench.values)
        for stat, value in one.items():
            assert_allclose(real_stats[stat][k], value[0], rtol=1e-12, err_msg=stat)


def test_leading_nan_equals_trimmed_series(real, real_stats):
    """MTUM padded with ~1000 leading NaN gives the statistics of its own history."""
    returns, bench = real
    k = ASSETS.index("MTUM")
    r, b = trimmed(returns.values[k], bench.values)
    assert len(r) < returns.sizes["time"] - 900
    alone = stats(r[None, :], b)
    for stat, value in alone.items():
        assert_allclose(real_stats[stat][k], value[0], rtol=1e-12, err_msg=stat)


# ------------------------------------------------------------------ generated series
N = 48  # every generated series is padded with leading NaN to this length: one compile

basis_points = st.integers(-3000, 3000).map(lambda k: k / 1e4)


@st.composite
def pair(draw) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(2, N))
    r = draw(st.lists(basis_points, min_size=n, max_size=n))
    b = draw(st.lists(basis_points, min_size=n, max_size=n))
    return np.array(r), np.array(b)


def padded(x: np.ndarray) -> np.ndarray:
    return np.concatenate([np.full(N - len(x), np.nan), x])


@settings(max_examples=50, deadline=None)
@given(pair())
def test_generated_series_match_references(rb):
    r, b = rb
    got = stats(padded(r)[None, :], padded(b))
    got = {k: float(v[0]) for k, v in got.items()}
    with np.errstate(all="ignore"):
        expected = {**empyrical_reference(r, b), **closed_forms(r)}
    # atol: ratios whose numerator cancels to ~1e-18 differ in the residue's summation order.
    for stat, value in expected.items():
        assert_allclose(got[stat], value, rtol=1e-10, atol=1e-10, err_msg=stat)
    mdd, dur, to_rec, rec = drawdown_reference(r)
    assert_allclose(got["max_drawdown"], mdd, rtol=1e-10, atol=1e-15)
    if got["max_drawdown"] < -1e-12:  # a tie within rounding could pick another trough
        # peak-to-trough length in periods (a statistic of the series, not a timing)
        assert_allclose(
            [got["drawdown_duration"], got["drawdown_peak_to_recovery"], got["drawdown_recovery"]],
            [dur, to_rec, rec],
            rtol=0,
        )


# ------------------------------------------------------------------ hand-worked drawdowns
def path(*wealth: float) -> np.ndarray:
    """Returns that take wealth 1 through ``wealth``."""
    w = np.array((1.0, *wealth))
    return w[1:] / w[:-1] - 1.0


HAND_WORKED = [
    # peak 1.1 after period 1, trough 0.88 after 3 (-20 %), back above 1.1 after 5.
    ((1.1, 0.99, 0.88, 1.0, 1.2, 1.1), (-0.2, 2.0, 4.0, 2.0)),
    # losing from the start: the peak is the initial wealth; never recovered.
    ((0.9, 0.8, 0.85, 0.82, 0.84, 0.83), (-0.2, 2.0, np.nan, np.nan)),
    # a first -10 % recovered, then a deeper -25 % from a later peak 1.2.
    ((0.9, 1.05, 1.2, 1.0, 0.9, 1.3), (-0.25, 2.0, 3.0, 1.0)),
    # never below a peak.
    ((1.01, 1.02, 1.02, 1.05, 1.06, 1.07), (0.0, 0.0, 0.0, 0.0)),
]
DRAWDOWN_KEYS = (
    "max_drawdown",
    "drawdown_duration",
    "drawdown_peak_to_recovery",
    "drawdown_recovery",
)


def test_drawdown_hand_worked():
    bare = np.array([path(*w) for w, _ in HAND_WORKED])
    with precision("float64"):  # our own jax.jit of a core function: JAX's default is float32
        batched = np.array(jax.jit(jax.vmap(pf.drawdown_stats))(bare)).T  # no NaN at all
    for k, (wealth, expected) in enumerate(HAND_WORKED):
        assert_allclose(batched[k], expected, rtol=1e-12, atol=1e-15, err_msg=str(wealth))
        late = stats(padded(path(*wealth))[None, :], np.zeros(N))  # 42 leading NaN
        values = [late[key][0] for key in DRAWDOWN_KEYS]
        assert_allclose(values, expected, rtol=1e-12, atol=1e-15, err_msg=str(wealth))


def test_drawdown_series_hand_worked():
    wealth, _ = HAND_WORKED[2]
    r = padded(path(*wealth))
    dd = np.asarray(pf.drawdown(r))[-len(wealth) :]
    w = np.array(wealth)
    assert_allclose(dd, w / np.maximum.accumulate(np.maximum(w, 1.0)) - 1.0, atol=1e-15)
    assert_allclose(dd, [-0.1, 0.0, 0.0, -1 / 6, -0.25, 0.0], atol=1e-15)


def test_degenerate_series_give_nan_not_errors():
    rows = {
        "flat": np.zeros(5),
        "constant": np.full(5, 0.01),
        "gain_and_zero": np.array([0.01, 0.0]),
    }
    got = {name: stats(padded(r)[None, :], np.zeros(N)) for name, r in rows.items()}
    flat = got["flat"]
    for stat in ("win_rate", "profit_factor", "calmar_ratio", "payoff_ratio"):
        assert math.isnan(flat[stat][0]), stat
    assert flat["omega_ratio"][0] == 0.0  # every day THR below the threshold
    assert flat["sharpe_ratio"][0] == -math.inf  # excess -RF without dispersion, as empyrical
    assert flat["max_drawdown"][0] == 0.0 and flat["drawdown_recovery"][0] == 0.0
    assert got["constant"]["sharpe_ratio"][0] == math.inf  # no dispersion, as empyrical
    assert got["gain_and_zero"]["profit_factor"][0] == math.inf
    assert got["gain_and_zero"]["win_rate"][0] == 1.0
    empty = np.full(3, np.nan)
    assert math.isnan(float(pf.total_return(empty)))
    assert math.isnan(float(pf.max_drawdown(empty)))


# ------------------------------------------------------------------ xarray layer
def test_performance_table_labels_and_values(real, real_stats):
    returns, bench = real
    table = performance_table(
        returns,
        bench,
        risk_free=RF,
        required_return=REQ,
        threshold=THR,
        periods_per_year=PPY,
    )
    assert list(table.indexes["portfolio"]) == ASSETS
    assert list(table.data_vars) == list(pf.STATISTICS + pf.BENCHMARK_STATISTICS)
    for stat in table.data_vars:
        assert table[stat].dims == ("portfolio",)
        assert table[stat].attrs["units"]
        assert_allclose(table[stat].values, real_stats[stat], rtol=1e-12, err_msg=stat)
    assert table["observations"].dtype == np.int64
    frame = table.to_dataframe()
    assert list(frame.index) == ASSETS and "sharpe_ratio" in frame.columns
    assert table.attrs["periods_per_year"] == PPY


def test_performance_table_on_dask_chunks_matches_references():
    rng = np.random.default_rng(7)
    data = rng.normal(4e-4, 0.01, (3, N))
    data[2, :10] = np.nan
    bench = rng.normal(3e-4, 0.008, N)
    times = pd.date_range("2021-01-04", periods=N, freq="B")
    returns = xr.DataArray(
        data, dims=("portfolio", "time"), coords={"portfolio": list("abc"), "time": times}
    )
    b = xr.DataArray(bench, dims="time", coords={"time": times})
    params = {"risk_free": RF, "required_return": REQ, "threshold": THR, "periods_per_year": PPY}
    lazy = performance_table(returns.chunk(portfolio=1), b, **params)
    assert lazy["sharpe_ratio"].chunks == ((1, 1, 1),)
    table = lazy.compute()
    for k, row in enumerate(data):
        r, rb = trimmed(row, bench)
        for stat, value in empyrical_reference(r, rb).items():
            assert_allclose(table[stat].values[k], value, rtol=1e-10, err_msg=stat)


def test_group_returns_are_value_weighted():
    """Member returns r = V_t / V_(t-1) - 1: the group earns sum V_t / sum V_(t-1) - 1."""
    rng = np.random.default_rng(3)
    values = 100.0 * np.cumprod(1.0 + rng.normal(0, 0.02, (3, N)), axis=1)
    values[2, :4] = np.nan  # starts later
    times = pd.date_range("2022-01-03", periods=N, freq="B")
    coords = {"portfolio": ["a", "b", "c"], "time": times}
    v = xr.DataArray(values, dims=("portfolio", "time"), coords=coords)
    r = v / v.shift(time=1) - 1.0
    got = group_returns(r, v, {"ab": ["a", "b"], "all": ["a", "b", "c"], "c": ["c"]})
    assert got.dims == ("group", "time")
    ab = values[:2].sum(0)
    assert_allclose(got.sel(group="ab").values[1:], ab[1:] / ab[:-1] - 1.0, rtol=1e-12)
    prev, now = values[:, :-1], values[:, 1:]
    started = ~np.isnan(prev)
    expected_all = np.where(started, now, 0).sum(0) / np.where(started, prev, 0).sum(0) - 1.0
    assert_allclose(got.sel(group="all").values[1:], expected_all, rtol=1e-12)
    assert np.isnan(got.values[:, 0]).all()
    assert np.isnan(got.sel(group="c").values[:5]).all()
    # the same statistics work on groups (one group at a time: the (1, N) compiled shape)
    bench = xr.DataArray(np.zeros(N), dims="time", coords={"time": times})
    params = {"risk_free": RF, "required_return": REQ, "threshold": THR, "periods_per_year": PPY}
    long = performance_table(got.sel(group=["ab"]), bench, **params)
    assert list(long.indexes["group"]) == ["ab"]
    assert_allclose(long["total_return"].sel(group="ab"), ab[-1] / ab[0] - 1.0, rtol=1e-12)


def test_group_returns_refuses_bad_input():
    times = pd.date_range("2022-01-03", periods=4, freq="B")
    coords = {"portfolio": ["a", "b"], "time": times}
    v = xr.DataArray(np.full((2, 4), 100.0), dims=("portfolio", "time"), coords=coords)
    r = xr.zeros_like(v)
    with pytest.raises(AlignmentError) as info:
        group_returns(r, v, {"g": ["a", "zz"]})
    assert info.value.value == "zz"
    with pytest.raises(AlignmentError):
        group_returns(r, v.isel(time=slice(1, None)), {"g": ["a"]})
    with pytest.raises(ValidationError):
        group_returns(r, -v, {"g": ["a"]})


# ------------------------------------------------------------------ bad input
@pytest.fixture
def small() -> xr.DataArray:
    times = pd.date_range("2021-01-04", periods=6, freq="B")
    data = np.array([[0.01, -0.02, 0.0, 0.03, 0.01, -0.01]] * 2)
    return xr.DataArray(
        data, dims=("portfolio", "time"), coords={"portfolio": ["p1", "p2"], "time": times}
    )


def test_all_nan_portfolio_is_insufficient_data(small):
    bad = small.copy()
    bad[1] = np.nan
    with pytest.raises(InsufficientDataError) as info:
        performance_table(bad)
    assert info.value.value == "p2" and "all NaN" in str(info.value)


def test_too_few_observations(small):
    bad = small.copy()
    bad[0, :-1] = np.nan
    with pytest.raises(InsufficientDataError) as info:
        performance_table(bad)
    assert info.value.value == "p1"


def test_gap_after_start_is_refused_not_filled(small):
    bad = small.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValidationError) as info:
        performance_table(bad)
    assert info.value.value == "p2" and "2021-01-07" in str(info.value)


@pytest.mark.parametrize("ppy", [0, -252, math.nan, math.inf, "252", True])
def test_bad_periods_per_year(small, ppy):
    with pytest.raises(ValidationError) as info:
        performance_table(small, periods_per_year=ppy)
    assert info.value.field == "periods_per_year"


@pytest.mark.parametrize("field", ["risk_free", "required_return", "threshold"])
def test_bad_rates(small, field):
    with pytest.raises(ValidationError) as info:
        performance_table(small, **{field: math.nan})
    assert info.value.field == field


def test_benchmark_must_align(small):
    bench = small.isel(portfolio=0, drop=True)
    shifted = bench.assign_coords(time=bench.indexes["time"] + pd.Timedelta(days=1))
    with pytest.raises(AlignmentError) as info:
        performance_table(small, shifted)
    assert info.value.field == "benchmark.time"
    with pytest.raises(AlignmentError):
        performance_table(small, bench.isel(time=slice(1, None)))
    holed = bench.copy()
    holed[2] = np.nan
    with pytest.raises(ValidationError) as info:
        performance_table(small, holed)
    assert info.value.field == "benchmark"


def test_returns_must_be_labelled(small):
    with pytest.raises(ValidationError):
        performance_table(small.values)
    with pytest.raises(ValidationError):
        performance_table(small.expand_dims(x=[0]))
