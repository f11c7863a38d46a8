"""Tests of pmkit.model.holdings: datasets, ledger replay, valuation and weights."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmkit.errors import (
    CurrencyMismatchError,
    DuplicateLabelError,
    MissingPriceError,
    NonMonotonicTimeError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.ledger import LedgerEntry, replay
from pmkit.model import (
    check_holdings_assets,
    holdings_dataset,
    holdings_from_ledger,
    market_dataset,
    portfolio_values,
    position_values,
    weights,
)

NaN = np.nan
DAYS = pd.date_range("2021-06-01", periods=5, freq="D")
ASSETS = ["AAA", "BBB", "NEW"]
PORTS = ["p1", "p2"]


def counts_at(entry, t) -> bool:
    """Reference rule: a midnight time labels the whole day (its close)."""
    t = pd.Timestamp(t)
    if t == t.normalize():
        return entry.ts.date() <= t.date()
    return entry.ts <= t


def test_intraday_times_count_entries_strictly_by_timestamp():
    e = LedgerEntry("p1", "cash", datetime(2021, 6, 1, 12, 0), amount=8.0)
    times = pd.DatetimeIndex(["2021-06-01 11:59", "2021-06-01 12:00", "2021-06-01 16:00"])
    h = holdings_from_ledger([e], ["p1"], ["AAA"], times)
    assert h["cash"].values[0].tolist() == [0.0, 8.0, 8.0]
    daily = holdings_from_ledger([e], ["p1"], ["AAA"], pd.DatetimeIndex(["2021-06-01"]))
    assert daily["cash"].values[0].tolist() == [8.0]  # the day's close includes it



@pytest.fixture
def market() -> xr.Dataset:
    """NEW lists on the third day: a ragged history."""
    close = pd.DataFrame(
        {
            "AAA": [10.0, 11.0, 12.0, 11.5, 13.0],
            "BBB": [50.0, 49.0, 51.0, 52.0, 50.5],
            "NEW": [NaN, NaN, 20.0, 21.0, 19.5],
            "EUR1": [5.0, 5.1, 5.2, 5.3, 5.4],
        },
        index=DAYS,
    )
    return market_dataset(close, currency={"AAA": "USD", "BBB": "USD", "NEW": "USD", "EUR1": "EUR"})


def quantity_array(values: np.ndarray, assets=ASSETS, times=DAYS) -> xr.DataArray:
    return xr.DataArray(
        np.asarray(values, dtype=float),
        dims=("portfolio", "asset", "time"),
        coords={"portfolio": PORTS, "asset": assets, "time": times},
    )


def cash_array(values: np.ndarray, times=DAYS) -> xr.DataArray:
    return xr.DataArray(
        np.asarray(values, dtype=float),
        dims=("portfolio", "time"),
        coords={"portfolio": PORTS, "time": times},
    )


@pytest.fixture
def holdings() -> xr.Dataset:
    q = np.zeros((2, 3, 5))
    q[0, 0, :] = [1, 2, 2, 3, 3]  # p1 AAA
    q[0, 1, :] = [0, 0, 1, 1, -1]  # p1 BBB, ends short
    q[0, 2, 2:] = [4, 4, 5]  # p1 NEW, bought once listed
    q[1, 1, :] = [2, 2, 2, 2, 2]  # p2 BBB; p2 never holds NEW
    cash = [[100, 80, 0, -10, 5], [0, 0, 0, 0, 0]]
    return holdings_dataset(quantity_array(q), cash_array(cash))


def loop_values(holdings: xr.Dataset, market: xr.Dataset):
    """Reference valuation with plain Python loops."""
    q = holdings["quantity"].values
    cash = holdings["cash"].values
    assets = holdings["asset"].values.tolist()
    times = holdings.indexes["time"]
    close = market["close"].to_pandas()  # (asset, time) frame
    pv = np.zeros(q.shape)
    nav = np.zeros(cash.shape)
    for p in range(q.shape[0]):
        for t, ts in enumerate(times):
            total = cash[p, t]
            for a, asset in enumerate(assets):
                if q[p, a, t] != 0:
                    pv[p, a, t] = q[p, a, t] * close.loc[asset, ts]
                total += pv[p, a, t]
            nav[p, t] = total
    return pv, nav


# ---------------------------------------------------------------- holdings_dataset


def test_holdings_dataset_layout(holdings):
    assert holdings["quantity"].dims == ("portfolio", "asset", "time")
    assert holdings["cash"].dims == ("portfolio", "time")
    assert holdings["quantity"].dtype == np.float64
    assert holdings["cash"].dtype == np.float64
    assert holdings["time"].dtype == np.dtype("datetime64[ns]")
    assert holdings["currency"].dims == ("portfolio",)
    assert holdings["currency"].values.tolist() == ["USD", "USD"]


def test_holdings_dataset_accepts_any_dim_order_and_aligns_cash_by_label():
    q = quantity_array(np.arange(30.0).reshape(2, 3, 5))
    cash = cash_array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
    shuffled = cash.isel(portfolio=[1, 0], time=[4, 3, 2, 1, 0]).transpose("time", "portfolio")
    ds = holdings_dataset(
        q.transpose("time", "asset", "portfolio"), shuffled, {"p1": "USD", "p2": "EUR"}
    )
    np.testing.assert_array_equal(ds["quantity"].values, q.values)
    np.testing.assert_array_equal(ds["cash"].values, cash.values)
    assert ds["currency"].sel(portfolio="p2").item() == "EUR"


def assert_refused(error, quantity, cash, currency="USD"):
    q0, c0 = quantity.copy(deep=True), cash.copy(deep=True)
    with pytest.raises(error) as info:
        holdings_dataset(quantity, cash, currency)
    assert quantity.identical(q0)
    assert cash.identical(c0)
    return info.value


@pytest.mark.parametrize("dim", ["portfolio", "asset", "time"])
def test_duplicate_labels(dim):
    q = quantity_array(np.zeros((2, 3, 5)))
    labels = {"portfolio": ["p1", "p1"], "asset": ["X", "Y", "X"], "time": DAYS[[0, 1, 1, 2, 3]]}
    q = q.assign_coords({dim: labels[dim]})
    cash = cash_array(np.zeros((2, 5)), times=q.indexes["time"]).assign_coords(
        portfolio=q.indexes["portfolio"]
    )
    err = assert_refused(DuplicateLabelError, q, cash)
    assert err.field == dim
    assert err.value == {"portfolio": "p1", "asset": "X", "time": DAYS[1]}[dim]


def test_non_monotonic_time():
    times = DAYS[[0, 1, 3, 2, 4]]
    err = assert_refused(
        NonMonotonicTimeError,
        quantity_array(np.zeros((2, 3, 5)), times=times),
        cash_array(np.zeros((2, 5)), times=times),
    )
    assert (err.field, err.value) == ("time", DAYS[2])


def test_non_finite_quantity_names_the_cell():
    q = np.zeros((2, 3, 5))
    q[1, 2, 3] = np.inf
    q[0, 0, 4] = NaN
    err = assert_refused(ValidationError, quantity_array(q), cash_array(np.zeros((2, 5))))
    assert err.field == "quantity[p2, NEW, 2021-06-04]"
    assert err.value == math.inf
    assert "quantity[p2, NEW, 2021-06-04]=inf" in str(err)


def test_non_finite_cash_names_the_cell():
    cash = np.zeros((2, 5))
    cash[0, 1] = NaN
    err = assert_refused(ValidationError, quantity_array(np.zeros((2, 3, 5))), cash_array(cash))
    assert err.field == "cash[p1, 2021-06-02]"
    assert math.isnan(err.value)


def test_cash_with_other_times_is_refused():
    err = assert_refused(
        ValidationError,
        quantity_array(np.zeros((2, 3, 5))),
        cash_array(np.zeros((2, 4)), times=DAYS[:4]),
    )
    assert (err.field, err.value) == ("cash.time", DAYS[4])


def test_currency_mapping_must_cover_every_portfolio():
    err = assert_refused(
        ValidationError,
        quantity_array(np.zeros((2, 3, 5))),
        cash_array(np.zeros((2, 5))),
        {"p1": "USD"},
    )
    assert (err.field, err.value) == ("currency", "p2")


# ---------------------------------------------------------------- valuation


def test_position_and_portfolio_values_match_a_loop(holdings, market):
    pv_ref, nav_ref = loop_values(holdings, market)
    pv = position_values(holdings, market)
    nav = portfolio_values(holdings, market)
    assert pv.dims == ("portfolio", "asset", "time")
    assert nav.dims == ("portfolio", "time")
    np.testing.assert_allclose(pv.values, pv_ref, rtol=1e-15)
    np.testing.assert_allclose(nav.values, nav_ref, rtol=1e-14)
    assert nav["currency"].values.tolist() == ["USD", "USD"]


def test_unlisted_asset_with_zero_quantity_is_worth_exactly_zero(holdings, market):
    pv = position_values(holdings, market)
    before_listing = pv.sel(asset="NEW", time=DAYS[:2])
    assert not np.isnan(before_listing.values).any()
    assert (before_listing.values == 0.0).all()
    assert not np.isnan(portfolio_values(holdings, market).values).any()


def test_held_unlisted_asset_raises_naming_it(holdings, market):
    q = holdings["quantity"].copy()
    q.loc[{"portfolio": "p2", "asset": "NEW", "time": DAYS[1]}] = 3.0
    bad = holdings.assign(quantity=q)
    bad0, market0 = bad.copy(deep=True), market.copy(deep=True)
    for fn in (position_values, portfolio_values, weights):
        with pytest.raises(MissingPriceError) as info:
            fn(bad, market)
        assert info.value.field == "close[NEW, 2021-06-02]"
        assert "'p2'" in str(info.value)
        assert "'NEW'" in str(info.value)
        assert "2021-06-02" in str(info.value)
    assert bad.identical(bad0)
    assert market.identical(market0)


def test_foreign_currency_holding_is_refused(market):
    q = np.zeros((2, 4, 5))
    q[1, 3, 2] = 1.0  # p2 holds EUR1 for one day
    h = holdings_dataset(quantity_array(q, assets=[*ASSETS, "EUR1"]), cash_array(np.zeros((2, 5))))
    with pytest.raises(CurrencyMismatchError) as info:
        portfolio_values(h, market)
    assert (info.value.field, info.value.value) == ("currency[EUR1]", "EUR")
    assert "'p2'" in str(info.value)
    assert "fx=" in str(info.value)  # points to the FX-aware valuation
    # never held: no mismatch, it is worth zero in any currency
    h0 = holdings_dataset(
        quantity_array(np.zeros((2, 4, 5)), assets=[*ASSETS, "EUR1"]),
        cash_array(np.ones((2, 5))),
    )
    np.testing.assert_array_equal(portfolio_values(h0, market).values, 1.0)


def test_check_holdings_assets(holdings, market):
    check_holdings_assets(holdings, market)  # fine as built
    q = quantity_array(np.zeros((2, 4, 5)), assets=["AAA", "ZZZ", "BBB", "MMM"])
    h = holdings_dataset(q, cash_array(np.zeros((2, 5))))
    with pytest.raises(UnknownAssetError) as info:
        check_holdings_assets(h, market)
    assert (info.value.field, info.value.value) == ("asset", ["MMM", "ZZZ"])
    assert "['MMM', 'ZZZ']" in str(info.value)
    with pytest.raises(UnknownAssetError):
        position_values(h, market)


def test_holdings_time_must_be_market_time(holdings, market):
    odd = DAYS[:4].append(pd.DatetimeIndex([DAYS[4] + pd.Timedelta(hours=1)]))
    h = holdings.assign_coords(time=odd)
    with pytest.raises(ValidationError) as info:
        check_holdings_assets(h, market)
    assert (info.value.field, info.value.value) == ("time", odd[4])


def test_holdings_on_a_subset_of_market_times(holdings, market):
    h = holdings.isel(time=[1, 3])
    _, nav_ref = loop_values(h, market)
    np.testing.assert_allclose(portfolio_values(h, market).values, nav_ref, rtol=1e-14)


def test_weights_sum_to_one_and_match_a_loop(holdings, market):
    pv_ref, nav_ref = loop_values(holdings, market)
    w = weights(holdings, market)
    assert w["weight"].dims == ("portfolio", "asset", "time")
    assert w["cash_weight"].dims == ("portfolio", "time")
    positive = nav_ref > 0
    assert positive[0].all()  # p1 is solvent throughout
    for p in range(2):
        for t in range(5):
            if positive[p, t]:
                want = [pv_ref[p, a, t] / nav_ref[p, t] for a in range(3)]
                np.testing.assert_allclose(w["weight"].values[p, :, t], want, rtol=1e-14)
                total = w["weight"].values[p, :, t].sum() + w["cash_weight"].values[p, t]
                assert total == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(w["nav"].values, nav_ref, rtol=1e-14)


def test_weights_are_nan_where_nav_is_not_positive(holdings, market):
    cash = holdings["cash"].copy()
    cash.loc[{"portfolio": "p2"}] = -101.0  # p2 holds 2 BBB worth 100, 98, 102, 104, 101
    w = weights(holdings.assign(cash=cash), market)
    nav = w["nav"].sel(portfolio="p2").values
    np.testing.assert_array_equal(nav, [-1.0, -3.0, 1.0, 3.0, 0.0])
    bad = nav <= 0
    assert np.isnan(w["weight"].sel(portfolio="p2").values[:, bad]).all()
    assert np.isnan(w["cash_weight"].sel(portfolio="p2").values[bad]).all()
    assert not np.isnan(w["weight"].sel(portfolio="p2").values[:, ~bad]).any()


# ---------------------------------------------------------------- ledger


def ts(day: int, hour: int = 0) -> datetime:
    return datetime(2021, 6, 1) + timedelta(days=day, hours=hour)


LEDGER = [
    LedgerEntry("p1", "cash", ts(-3), amount=1000.0, seq=1),
    LedgerEntry("p1", "trade", ts(0, 15), asset="AAA", quantity=10, price=10.1, fee=1.0, seq=2),
    LedgerEntry("p2", "cash", ts(1), amount=500.0, seq=3),
    LedgerEntry("zz", "cash", ts(1), amount=7.0, seq=4),  # not asked for: ignored
    LedgerEntry("p1", "trade", ts(2, 16), asset="NEW", quantity=3, price=20.3, fee=0.7, seq=5),
    LedgerEntry("p2", "trade", ts(3), asset="BBB", quantity=4.5, price=52.0, seq=6),
    LedgerEntry("p1", "trade", ts(3, 10), asset="AAA", quantity=-4, price=11.7, fee=0.3, seq=7),
    LedgerEntry("p1", "cash", ts(4), amount=-25.5, seq=8),
]


def brute_force(entries, portfolio, asset, at):
    state = replay([e for e in entries if e.portfolio == portfolio and counts_at(e, at)])
    return state.quantities.get(asset, 0.0), state.cash


def test_holdings_from_ledger_matches_replay(market):
    h = holdings_from_ledger(LEDGER, PORTS, ASSETS, DAYS)
    assert h["quantity"].dims == ("portfolio", "asset", "time")
    for p in PORTS:
        final = replay([e for e in LEDGER if e.portfolio == p])
        last = h.isel(time=-1).sel(portfolio=p)
        assert last["cash"].item() == pytest.approx(final.cash, rel=1e-15)
        for a in ASSETS:
            want = final.quantities.get(a, 0.0)
            assert last["quantity"].sel(asset=a).item() == pytest.approx(want, rel=1e-15)
        for t in DAYS:  # and at every time: the replay of entries up to t
            for a in ASSETS:
                q, cash = brute_force(LEDGER, p, a, t.to_pydatetime())
                cell = h.sel(portfolio=p, time=t)
                assert cell["quantity"].sel(asset=a).item() == pytest.approx(q)
                assert cell["cash"].item() == pytest.approx(cash)
    # daily labels are closes: the 15:00 trade on day 0 is in day 0's holdings
    assert h["quantity"].sel(portfolio="p1", asset="AAA").values.tolist() == [10, 10, 10, 6, 6]
    # and the result can be valued against a ragged market (NEW bought after listing)
    assert not np.isnan(portfolio_values(h, market).values).any()


def test_entries_after_the_last_time_are_not_applied():
    late = [*LEDGER, LedgerEntry("p2", "cash", ts(9), amount=1e6, seq=9)]
    h = holdings_from_ledger(late, PORTS, ASSETS, DAYS)
    assert h["cash"].sel(portfolio="p2").values[-1] == pytest.approx(500.0 - 4.5 * 52.0)


def test_ledger_with_an_unknown_asset():
    bad = [
        *LEDGER,
        LedgerEntry("p1", "trade", ts(1), asset="ZZZ", quantity=1, price=1.0),
        LedgerEntry("p2", "trade", ts(1), asset="MMM", quantity=1, price=1.0),
        LedgerEntry("zz", "trade", ts(1), asset="QQQ", quantity=1, price=1.0),  # ignored portfolio
    ]
    with pytest.raises(UnknownAssetError) as info:
        holdings_from_ledger(bad, PORTS, ASSETS, DAYS)
    assert info.value.value == ["MMM", "ZZZ"]


def test_ledger_entry_in_another_currency():
    bad = [*LEDGER, LedgerEntry("p2", "cash", ts(1), amount=5.0, currency="EUR", seq=42)]
    with pytest.raises(CurrencyMismatchError) as info:
        holdings_from_ledger(bad, PORTS, ASSETS, DAYS)
    assert info.value.value == "EUR"
    assert "seq=42" in str(info.value)
    assert "'p2'" in str(info.value)


def test_malformed_ledger_entry_is_refused():
    bad = [*LEDGER, LedgerEntry("p1", "trade", ts(1), asset="AAA", quantity=1, price=-2.0)]
    with pytest.raises(ValidationError) as info:
        holdings_from_ledger(bad, PORTS, ASSETS, DAYS)
    assert (info.value.field, info.value.value) == ("price", -2.0)


def test_empty_ledger_gives_zeros():
    h = holdings_from_ledger([], PORTS, ASSETS, DAYS, currency={"p1": "USD", "p2": "EUR"})
    assert not h["quantity"].values.any()
    assert not h["cash"].values.any()
    assert h["currency"].values.tolist() == ["USD", "EUR"]


@st.composite
def ledgers(draw):
    """Ledgers with dyadic amounts, so every summation order gives the exact same float."""
    n = draw(st.integers(0, 30))
    entries = []
    for seq in range(1, n + 1):
        p = draw(st.sampled_from([*PORTS, "other"]))
        when = ts(draw(st.integers(-2, 4)), draw(st.integers(0, 23)))
        if draw(st.booleans()):
            amount = draw(st.integers(-4000, 4000).filter(bool)) / 4
            entries.append(LedgerEntry(p, "cash", when, amount=amount, seq=seq))
        else:
            entries.append(
                LedgerEntry(
                    p,
                    "trade",
                    when,
                    asset=draw(st.sampled_from(ASSETS)),
                    quantity=float(draw(st.integers(-50, 50).filter(bool))),
                    price=draw(st.integers(1, 4000)) / 8,
                    fee=draw(st.integers(0, 16)) / 16,
                    seq=seq,
                )
            )
    return entries


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ledgers())
def test_property_ledger_holdings_equal_replay_exactly(entries):
    times = DAYS.append(pd.DatetimeIndex([DAYS[-1] + pd.Timedelta(days=1)]))  # after every ts
    h = holdings_from_ledger(entries, PORTS, ASSETS, times)
    for i, p in enumerate(PORTS):
        mine = [e for e in entries if e.portfolio == p]
        final = replay(mine)
        assert h["cash"].values[i, -1] == final.cash
        for j, a in enumerate(ASSETS):
            assert h["quantity"].values[i, j, -1] == final.quantities.get(a, 0.0)
        for k, t in enumerate(times):
            state = replay([e for e in mine if counts_at(e, t)])
            assert h["cash"].values[i, k] == state.cash


@st.composite
def linear_cases(draw):
    q1, q2 = (
        np.array(
            draw(st.lists(st.integers(-100, 100), min_size=30, max_size=30)), dtype=float
        ).reshape(2, 3, 5)
        for _ in range(2)
    )
    for q in (q1, q2):
        q[:, 2, :2] = 0.0  # NEW is not listed yet: nobody may hold it
    c1, c2 = (
        np.array(
            draw(st.lists(st.integers(-1000, 1000), min_size=10, max_size=10)), dtype=float
        ).reshape(2, 5)
        for _ in range(2)
    )
    a, b = draw(st.integers(-5, 5)), draw(st.integers(-5, 5))
    return q1, q2, c1, c2, float(a), float(b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(linear_cases())
def test_property_portfolio_values_are_linear_in_holdings(case):
    close = pd.DataFrame(
        {
            "AAA": [10.0, 11.0, 12.0, 11.5, 13.0],
            "BBB": [50.0, 49.0, 51.0, 52.0, 50.5],
            "NEW": [NaN, NaN, 20.0, 21.0, 19.5],
        },
        index=DAYS,
    )
    market = market_dataset(close)
    q1, q2, c1, c2, a, b = case

    def nav(q, c):
        return portfolio_values(holdings_dataset(quantity_array(q), cash_array(c)), market).values

    combined = nav(a * q1 + b * q2, a * c1 + b * c2)
    np.testing.assert_allclose(combined, a * nav(q1, c1) + b * nav(q2, c2), rtol=1e-12, atol=1e-9)
