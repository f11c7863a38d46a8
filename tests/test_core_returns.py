"""Tests of pmkit.core.returns and pmkit.analytics.returns."""

from __future__ import annotations

from datetime import datetime

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from pmkit.analytics import returns as ar
from pmkit.core import get_precision, precision
from pmkit.core import returns as cr
from pmkit.errors import (
    AlignmentError,
    CurrencyMismatchError,
    InsufficientDataError,
    NoSolutionError,
)
from pmkit.ledger import LedgerEntry

RNG = np.random.default_rng(11)
irr = jax.jit(cr.irr)  # the plain single-stream functions, compiled once for the tests
modified_dietz = jax.jit(cr.modified_dietz)


@pytest.fixture(autouse=True)
def _float64():
    """pmkit's precision around each test: they jit core functions and build jnp arrays
    themselves, which outside it follow JAX's own default (float32)."""
    with precision("float64"):
        yield


def labelled(v, ports=None, start="2021-01-04") -> xr.DataArray:
    v = np.atleast_2d(np.asarray(v, float))
    ports = ports or [f"p{i}" for i in range(v.shape[0])]
    times = pd.bdate_range(start, periods=v.shape[1])
    return xr.DataArray(v, dims=("portfolio", "time"), coords={"portfolio": ports, "time": times})


# ---------------------------------------------------------------- Modified Dietz / TWR


def test_modified_dietz_hand_worked_weights():
    # Start 1000, deposit 200 during the day, end 1250: gain 50.
    v, f = jnp.array([1000.0, 1250.0]), jnp.array([0.0, 200.0])
    assert float(modified_dietz(v, f)[1]) == pytest.approx(50 / 1200)  # start of day, w=1
    assert float(modified_dietz(v, f, 0.0)[1]) == pytest.approx(50 / 1000)  # end of day
    assert float(modified_dietz(v, f, 0.5)[1]) == pytest.approx(50 / 1100)  # mid-day (GIPS)
    assert np.isnan(float(modified_dietz(v, f)[0]))


def test_twr_without_flows_is_the_plain_return():
    v = RNG.uniform(50, 150, (3, 30))
    daily, cum = (np.asarray(x) for x in cr.time_weighted(v, np.zeros_like(v)))
    np.testing.assert_allclose(daily[:, 1:], v[:, 1:] / v[:, :-1] - 1, rtol=1e-12)
    np.testing.assert_allclose(cum, v / v[:, :1] - 1, rtol=1e-10, atol=1e-14)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=20, max_size=20), st.integers(0, 2**31))
def test_twr_invariant_to_flow_sizes(flow_list, seed):
    """Flows at the start of a day earn that day's return: TWR = product of market growth."""
    rng = np.random.default_rng(seed)
    growth = rng.uniform(-0.05, 0.05, 20)
    flows = np.array(flow_list)
    flows[0] = 0.0
    v = np.empty(20)
    v[0] = 2e6
    for t in range(1, 20):
        invested = max(v[t - 1] + flows[t], 1e5)  # never withdraw (nearly) everything
        flows[t] = invested - v[t - 1]
        v[t] = invested * (1 + growth[t])
    _, cum = cr.time_weighted(v[None], flows[None])
    want = np.prod(1 + growth[1:]) - 1
    assert float(cum[0, -1]) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_twr_from_inception_on_zero_values():
    # Nothing before day 2; deposit 100 on day 2 (start of day), +10% that day, +5% next.
    v = np.array([[0.0, 0.0, 110.0, 115.5]])
    f = np.array([[0.0, 0.0, 100.0, 0.0]])
    daily, cum = (np.asarray(x) for x in cr.time_weighted(v, f))
    np.testing.assert_allclose(daily[0, 1:], [0.0, 0.1, 0.05])
    assert cum[0, -1] == pytest.approx(1.1 * 1.05 - 1)


# ---------------------------------------------------------------- IRR


def test_irr_textbook_ten_percent():
    assert float(irr(jnp.array([-100.0, 110.0]), jnp.array([0.0, 1.0]))) == pytest.approx(
        0.10, abs=1e-14
    )
    # Daily: the same deal over 252 trading days, annualized.
    v = np.zeros((1, 253))
    v[0, 0], v[0, -1] = 100.0, 110.0
    v[0, 1:-1] = 105.0
    mwr = float(cr.money_weighted(v, np.zeros_like(v))[0])
    assert mwr == pytest.approx(0.10, abs=1e-12)


def test_irr_matches_brentq_on_random_streams():
    n, m = 200, 12
    cash = RNG.uniform(5, 40, (n, m)) * RNG.choice([1.0, -0.3], (n, m), p=[0.8, 0.2])
    cash[:, 0] = -RNG.uniform(100, 300, n)  # invest first, then mostly receive
    times = np.sort(RNG.uniform(0, 10, m))
    times[0] = 0.0
    got = np.asarray(cr.irr_batch(cash, times))
    checked = 0
    for i in range(n):
        def npv(r, c=cash[i]):
            return np.sum(c * (1 + r) ** -times)

        lo, hi = -0.99, 100.0
        if np.sign(npv(lo)) == np.sign(npv(hi)):
            continue
        # A conventional stream (one sign change from the start) has a single root.
        want = brentq(npv, lo, hi, xtol=1e-14, rtol=1e-14)
        assert got[i] == pytest.approx(want, rel=1e-9, abs=1e-12), i
        checked += 1
    assert checked > n // 2


def test_irr_without_sign_change_is_nan():
    t = jnp.arange(4.0)
    assert np.isnan(float(irr(jnp.array([-10.0, -5, -1, -2]), t)))
    assert np.isnan(float(irr(jnp.array([10.0, 5, 1, 2]), t)))
    assert np.isnan(float(irr(jnp.zeros(4), t)))


def test_mwr_without_flows_equals_geometric_rate():
    v = RNG.uniform(80, 120, (4, 60))
    got = np.asarray(cr.money_weighted(v, np.zeros_like(v), periods_per_year=252))
    want = (v[:, -1] / v[:, 0]) ** (252 / 59) - 1
    np.testing.assert_allclose(got, want, rtol=1e-9)


def test_mwr_weights_money_twr_does_not():
    # Lose 50% with 100 invested, then deposit 950 and gain 10%: TWR -45%, MWR positive.
    v = np.array([[100.0, 50.0, 1100.0]] * 2)  # (2, 3): the shape of the no-root test
    f = np.array([[0.0, 0.0, 950.0]] * 2)
    _, cum = cr.time_weighted(v, f)
    assert float(cum[0, -1]) == pytest.approx(0.5 * 1.1 - 1)
    daily_irr = float(cr.money_weighted(v, f, periods_per_year=0)[0])
    # -100 at t=0, -950 at t=2, +1100 at t=2: 100 (1+r)^2 = 150
    assert daily_irr == pytest.approx(np.sqrt(1.5) - 1, rel=1e-12)


def test_returns_compile_once_per_shape():
    traces = []

    def counted(v, f):
        traces.append(1)
        return cr.time_weighted(v, f)

    g = jax.jit(counted)
    v = RNG.uniform(1, 2, (4, 60))
    g(v, v * 0)
    g(v * 2, v * 0 + 1)
    assert len(traces) == 1 and g._cache_size() == 1
    before = cr.irr_batch._cache_size()
    cr.irr_batch(v, jnp.arange(60.0))
    cr.irr_batch(-v, jnp.arange(60.0) + 1)
    assert cr.irr_batch._cache_size() <= before + 1


def test_float32_switch_returns():
    v = RNG.uniform(80, 120, (4, 60))
    f = np.zeros_like(v)
    f[:, 10] = 5.0
    ref_twr = np.asarray(cr.time_weighted(v, f)[1])
    ref_mwr = np.asarray(cr.money_weighted(v, f))
    with precision("float32"):  # nested in the fixture's float64: the inner block wins
        twr = cr.time_weighted(v.astype(np.float32), f.astype(np.float32))[1]
        mwr = cr.money_weighted(v.astype(np.float32), f.astype(np.float32))
        assert twr.dtype == jnp.float32 and mwr.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(twr), ref_twr, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(mwr), ref_mwr, rtol=1e-4, atol=1e-5)
    assert get_precision() == "float64"


# ---------------------------------------------------------------- labelled


def test_external_flows_buckets_by_day_and_checks_currency():
    times = pd.date_range("2021-06-01", periods=3, freq="D")
    entries = [
        LedgerEntry("a", "cash", datetime(2021, 5, 20), amount=1000.0),  # before: first time
        LedgerEntry("a", "cash", datetime(2021, 6, 2, 15), amount=50.0),
        LedgerEntry("a", "cash", datetime(2021, 6, 2, 9), amount=-20.0),
        LedgerEntry("a", "trade", datetime(2021, 6, 2), "X", 1.0, 10.0),  # internal
        LedgerEntry("b", "cash", datetime(2021, 6, 3), amount=7.0),
        LedgerEntry("b", "cash", datetime(2021, 6, 9), amount=7.0),  # after the last time
        LedgerEntry("z", "cash", datetime(2021, 6, 3), amount=7.0),  # not asked for
    ]
    f = ar.external_flows(entries, ["a", "b"], times)
    assert f.dims == ("portfolio", "time")
    assert f.values.tolist() == [[1000.0, 30.0, 0.0], [0.0, 0.0, 7.0]]
    eur = [LedgerEntry("a", "cash", datetime(2021, 6, 2), amount=5.0, currency="EUR")]
    with pytest.raises(CurrencyMismatchError, match="EUR"):
        ar.external_flows(eur, ["a"], times, currency="USD")


def test_labelled_twr_and_mwr_match_core_and_dask():
    v = labelled(RNG.uniform(80, 120, (4, 60)))  # shapes shared with other tests: fewer compiles
    f = xr.zeros_like(v)
    f[:, 20] = 10.0
    tw = ar.time_weighted_returns(v, f)
    daily, cum = cr.time_weighted(v.values, f.values)
    np.testing.assert_allclose(tw["twr"].values, np.asarray(cum))
    np.testing.assert_allclose(tw["daily_return"].values, np.asarray(daily))
    mw = ar.money_weighted_return(v, f)
    assert mw.dims == ("portfolio",)
    np.testing.assert_allclose(mw.values, np.asarray(cr.money_weighted(v.values, f.values)))
    lazy = ar.time_weighted_returns(v.chunk(portfolio=2), f.chunk(portfolio=2))
    assert lazy["twr"].chunks is not None
    np.testing.assert_allclose(lazy["twr"].compute().values, tw["twr"].values)
    np.testing.assert_allclose(ar.money_weighted_return(v.chunk(portfolio=2), f).values, mw.values)


def test_mwr_without_root_raises_no_solution():
    v = labelled([[100.0, 100.0, 100.0], [100.0, 50.0, 0.0]], ports=["ok", "bad"])
    f = labelled([[0.0, 0.0, 0.0], [0.0, 50.0, 10.0]], ports=["ok", "bad"])
    # "bad": -100 in, -50 in, -10 in, +0 out: every flow the same sign.
    with pytest.raises(NoSolutionError, match="'bad'") as err:
        ar.money_weighted_return(v, f)
    assert "'ok'" not in str(err.value)


def test_labelled_alignment_and_size_errors():
    v = labelled(np.ones((2, 5)) * 100, ports=["a", "b"])
    f = labelled(np.zeros((2, 5)), ports=["a", "c"])
    with pytest.raises(AlignmentError, match="c") as err:
        ar.time_weighted_returns(v, f)
    assert set(err.value.value) == {"b", "c"}
    with pytest.raises(AlignmentError):
        ar.money_weighted_return(v, labelled(np.zeros((2, 5)), ports=["a", "b"],
                                             start="2022-01-03"))
    with pytest.raises(InsufficientDataError):
        ar.time_weighted_returns(v.isel(time=[0]))
