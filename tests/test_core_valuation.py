"""Tests of pmkit.core.valuation and pmkit.analytics.valuation."""

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

from pmkit.analytics import valuation as av
from pmkit.core import get_precision, precision, set_precision
from pmkit.core import valuation as cv
from pmkit.errors import (
    AlignmentError,
    CurrencyMismatchError,
    MissingPriceError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.ledger import LedgerEntry
from pmkit.model import holdings_dataset, market_dataset
from pmkit.registry import Registry
from pmkit.store import open_store

NaN = np.nan
DAYS = pd.date_range("2021-06-01", periods=4, freq="D")
RNG = np.random.default_rng(7)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def market() -> xr.Dataset:
    """Two USD stocks (one listing on day 3) and one EUR stock."""
    close = pd.DataFrame(
        {
            "AAA": [10.0, 11.0, 12.0, 11.5],
            "NEW": [NaN, NaN, 20.0, 21.0],
            "EUX": [5.0, 5.1, 5.2, 5.3],
        },
        index=DAYS,
    )
    return market_dataset(close, currency={"AAA": "USD", "NEW": "USD", "EUX": "EUR"})


@pytest.fixture(scope="module")
def fx() -> xr.DataArray:
    """USD per unit: EUR and GBP move day by day."""
    rates = np.array(
        [[1.0] * 4, [1.10, 1.12, 1.08, 1.09], [1.30, 1.25, 1.28, 1.31], [0.9, 0.9, 0.9, 0.9]]
    )
    return xr.DataArray(
        rates,
        dims=("currency", "time"),
        coords={"currency": ["USD", "EUR", "GBP", "CHF"], "time": DAYS},
    )


def make_holdings(q: np.ndarray, cash: np.ndarray, currency, ports=("p1", "p2")) -> xr.Dataset:
    coords = {"portfolio": list(ports), "asset": ["AAA", "NEW", "EUX"], "time": DAYS}
    return holdings_dataset(
        xr.DataArray(q, dims=("portfolio", "asset", "time"), coords=coords),
        xr.DataArray(
            cash, dims=("portfolio", "time"), coords={"portfolio": list(ports), "time": DAYS}
        ),
        currency,
    )


@pytest.fixture(scope="module")
def holdings() -> xr.Dataset:
    q = np.zeros((2, 3, 4))
    q[0, 0] = [1, 2, 2, 3]  # p1 (USD): AAA
    q[0, 1, 2:] = [4, 5]  # p1: NEW once listed
    q[0, 2] = [10, 10, 0, -2]  # p1: EUR stock, later short
    q[1, 0] = [5, 5, 5, 5]  # p2 (GBP): AAA
    q[1, 2] = [0, 3, 3, 3]  # p2: EUR stock
    cash = np.array([[100.0, 90, 80, 70], [50, 50, 40, 40]])
    return make_holdings(q, cash, {"p1": "USD", "p2": "GBP"})


# ---------------------------------------------------------------- core: one time


def test_portfolio_values_match_numpy_with_fx():
    q = RNG.normal(size=(5, 7))
    p = RNG.uniform(1, 50, 7)
    fx = RNG.uniform(0.5, 2, (5, 7))
    cash = RNG.normal(size=5)
    got = np.asarray(cv.portfolio_values(q, p, cash, fx))
    np.testing.assert_allclose(got, (q * fx) @ p + cash, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cv.portfolio_values(q, p, cash)), q @ p + cash)


def test_zero_units_of_unpriced_asset_are_worth_zero():
    q = np.array([[2.0, 0.0], [0.0, 0.0]])
    p = np.array([3.0, NaN])
    assert np.asarray(cv.portfolio_values(q, p, np.array([1.0, 0.0]))).tolist() == [7.0, 0.0]


def test_revalue_matches_numpy_matmul_with_pivot_rates():
    n_p, n_a, n_t = 6, 9, 11
    q = RNG.normal(size=(n_p, n_a))
    prices = RNG.uniform(1, 100, (n_t, n_a))
    asset_rate = RNG.uniform(0.5, 2, (n_t, n_a))
    port_rate = RNG.uniform(0.5, 2, (n_t, n_p))
    cash = RNG.normal(size=n_p)
    got = np.asarray(cv.revalue(q, prices, cash, asset_rate, port_rate))
    want = np.empty((n_p, n_t))
    for p in range(n_p):  # loops, pairwise rate = asset_rate / portfolio_rate
        for t in range(n_t):
            want[p, t] = cash[p] + sum(
                q[p, a] * prices[t, a] * asset_rate[t, a] / port_rate[t, p] for a in range(n_a)
            )
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(cv.revalue(q, prices)), q @ prices.T, rtol=1e-12)


def test_revalue_compiles_once_per_shape():
    f = jax.jit(cv.revalue.__wrapped__)  # a fresh cache, whatever other tests compiled
    traces = []

    def counted(q, p):
        traces.append(1)  # Python side effect: runs only while tracing
        return f(q, p)

    g = jax.jit(counted)
    q, p = RNG.normal(size=(3, 4)), RNG.normal(size=(5, 4))
    g(q, p)
    g(q + 1, p * 2)
    assert len(traces) == 1 and g._cache_size() == 1
    g(RNG.normal(size=(2, 4)), p)  # new shape: one more compile
    assert len(traces) == 2 and g._cache_size() == 2
    before = cv.revalue._cache_size()
    cv.revalue(q, p)
    cv.revalue(q * 3, p)
    assert cv.revalue._cache_size() <= before + 1


def test_values_over_time_match_loops():
    n_p, n_t, n_a = 3, 5, 4
    q = RNG.integers(-3, 4, (n_p, n_t, n_a)).astype(float)
    prices = RNG.uniform(1, 9, (n_t, n_a))
    prices[:2, 0] = NaN  # not listed yet ...
    q[:, :2, 0] = 0.0  # ... and not held
    ar = RNG.uniform(0.5, 2, (n_t, n_a))
    pr = RNG.uniform(0.5, 2, (n_p, n_t))
    cash = RNG.normal(size=(n_p, n_t))
    got = np.asarray(cv.values_over_time(q, prices, cash, ar, pr))
    want = np.array(
        [
            [
                cash[p, t]
                + sum(
                    q[p, t, a] * prices[t, a] * ar[t, a] / pr[p, t]
                    for a in range(n_a)
                    if q[p, t, a] != 0
                )
                for t in range(n_t)
            ]
            for p in range(n_p)
        ]
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.isfinite(got).all()


# ---------------------------------------------------------------- core: P&L and groups


def test_daily_pnl_hand_worked():
    values = np.array([[100.0, 150.0, 140.0, 200.0]])
    flows = np.array([[0.0, 40.0, 0.0, 50.0]])  # +10 gain, -10 loss, +10 gain
    got = np.asarray(cv.daily_pnl(values, flows))
    assert np.isnan(got[0, 0])
    np.testing.assert_allclose(got[0, 1:], [10.0, -10.0, 10.0])


def test_group_values_equal_sum_of_members():
    values = RNG.uniform(0, 1e6, (5, 8))
    membership = np.array([[1, 1, 0, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1.0]])
    got = np.asarray(cv.group_values(membership, values.T)).T  # (G, T)
    np.testing.assert_allclose(got[0], values[:2].sum(0))
    np.testing.assert_allclose(got[1], values[2:].sum(0))
    np.testing.assert_allclose(got[2], got[0] + got[1])


# ---------------------------------------------------------------- average cost


def reference_average_cost(trades, mark):
    """Plain-Python average cost: separate long/short bookkeeping by sign of the position."""
    q = 0.0
    basis = 0.0  # signed total cost of the open position
    realized = 0.0
    for dq, price, fee in trades:
        if dq == 0:  # padding / fee-only row: the fee is a realized cost
            realized -= fee
            continue
        if q == 0 or (q > 0) == (dq > 0):  # open or add
            q += dq
            basis += dq * price + fee
            continue
        side = 1.0 if q > 0 else -1.0
        avg = basis / q
        n_close = min(abs(dq), abs(q))
        share = n_close / abs(dq)
        realized += side * n_close * (price - avg) - fee * share
        q -= side * n_close
        basis -= side * n_close * avg
        rest = abs(dq) - n_close
        if rest > 0:  # flipped
            q = -side * rest
            basis = -side * rest * price + fee * (1 - share)
        if q == 0:
            basis = 0.0
    avg = basis / q if q else 0.0
    unreal = q * mark - basis if q else 0.0
    return q, avg, realized, unreal


def test_average_cost_hand_worked():
    # buy 10 @ 10 (fee 1): basis 101, avg 10.1
    # sell 5 @ 12 (fee 1): realized 5 * 1.9 - 1 = 8.5, avg 10.1 on 5
    # sell 10 @ 8 (fee 1): closes 5: 5 * (8 - 10.1) - 0.5 = -11 -> realized -2.5;
    #   opens short 5 @ 8 with fee 0.5: basis -39.5, avg 7.9
    # buy 3 @ 9 (fee 0): covers 3: -3 * (9 - 7.9) = -3.3 -> realized -5.8; short 2 @ 7.9
    # mark 10: unrealized -2 * (10 - 7.9) = -4.2
    q = np.array([10.0, -5, -10, 3])
    p = np.array([10.0, 12, 8, 9])
    f = np.array([1.0, 1, 1, 0])
    pos, avg, realized, unreal = (float(x) for x in cv.average_cost(q, p, f, np.array(10.0)))
    assert pos == -2.0
    assert avg == pytest.approx(7.9, abs=1e-12)
    assert realized == pytest.approx(-5.8, abs=1e-12)
    assert unreal == pytest.approx(-4.2, abs=1e-12)


N_PAD = 24
_padded = jax.jit(cv.average_cost)

trade = st.tuples(
    st.integers(-30, 30).filter(bool),
    st.integers(100, 10_000).map(lambda c: c / 100),
    st.integers(0, 300).map(lambda c: c / 100),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(trade, min_size=1, max_size=N_PAD), st.integers(100, 10_000))
def test_average_cost_matches_reference_and_total_pnl(trades, mark_cents):
    mark = mark_cents / 100
    arr = np.zeros((3, N_PAD))  # zero-padded: padding rows are no-ops
    arr[:, : len(trades)] = np.array(trades).T
    with precision("float64"):  # jnp arrays and our own jax.jit: JAX's default is float32
        got = [float(x) for x in _padded(*map(jnp.asarray, arr), jnp.asarray(mark))]
    want = reference_average_cost(trades, mark)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-8)
    # Method-free invariant: realized + unrealized = final value - cash paid - fees.
    q, p, f = arr
    total = q.sum() * mark - (q * p).sum() - f.sum()
    assert got[2] + got[3] == pytest.approx(total, rel=1e-9, abs=1e-8)


def test_average_cost_pnl_batched_equals_single():
    q = RNG.integers(-5, 6, (2, 3, 6)).astype(float)
    p = RNG.uniform(5, 15, (2, 3, 6))
    f = RNG.uniform(0, 1, (2, 3, 6))
    mark = RNG.uniform(5, 15, 3)
    out = [np.asarray(x) for x in cv.average_cost_pnl(q, p, f, mark)]
    for i in range(2):
        for j in range(3):
            want = reference_average_cost(list(zip(q[i, j], p[i, j], f[i, j], strict=True)),
                                          mark[j])
            got = [o[i, j] for o in out]
            if q[i, j].sum() == 0:  # flat: avg and unrealized are 0 in both
                want = (0.0, 0.0, want[2], 0.0)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------- float32 switch


def test_float32_switch():
    q = RNG.normal(size=(4, 6))
    prices = RNG.uniform(1, 100, (5, 6))
    ref = np.asarray(cv.revalue(q, prices, np.ones(4)))
    assert ref.dtype == np.float64
    try:
        set_precision("float32")
        got = cv.revalue(q.astype(np.float32), prices.astype(np.float32), np.ones(4, np.float32))
        assert got.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-4)
        tr = [np.array([10.0, -5, -10, 3], np.float32), np.array([10, 12, 8, 9], np.float32),
              np.array([1, 1, 1, 0], np.float32)]
        out = cv.average_cost(*map(jnp.asarray, tr), jnp.float32(10.0))
        assert all(o.dtype == jnp.float32 for o in out)
        np.testing.assert_allclose([float(o) for o in out], [-2, 7.9, -5.8, -4.2], rtol=1e-5)
    finally:
        set_precision("float64")
    assert get_precision() == "float64"


# ---------------------------------------------------------------- labelled: portfolio values


def manual_values(holdings, market, fx) -> np.ndarray:
    """numpy: convert each asset to USD, then to the portfolio currency."""
    q = holdings["quantity"].values
    close = np.nan_to_num(market["close"].sel(time=DAYS).values)  # (A, T), unheld NaN -> 0
    rates = {c: fx.sel(currency=c).values for c in ["USD", "EUR", "GBP"]}
    a_rate = np.stack([rates[c] for c in market["currency"].values])  # (A, T)
    out = np.zeros(q.shape[::2])
    for p, pc in enumerate(holdings["currency"].values):
        usd = (q[p] * close * a_rate).sum(axis=0)
        out[p] = usd / rates[pc] + holdings["cash"].values[p]
    return out


def test_portfolio_values_fx_two_currencies(holdings, market, fx):
    nav = av.portfolio_values(holdings, market, fx)
    assert nav.dims == ("portfolio", "time")
    assert nav["currency"].values.tolist() == ["USD", "GBP"]
    np.testing.assert_allclose(nav.values, manual_values(holdings, market, fx), rtol=1e-12)
    # A hand-checked cell: p2 on day 2 = (5 * 11 USD + 3 * 5.1 EUR * 1.12) / 1.25 + 50 GBP.
    assert nav.sel(portfolio="p2").values[1] == pytest.approx((55 + 3 * 5.1 * 1.12) / 1.25 + 50)


def test_portfolio_values_dask_equals_numpy(holdings, market, fx):
    lazy = av.portfolio_values(holdings.chunk(portfolio=1), market, fx)
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.compute().values, av.portfolio_values(holdings, market, fx))


def test_portfolio_values_single_currency_matches_model(market):
    from pmkit.model import portfolio_values as model_values

    q = np.zeros((2, 3, 4))
    q[0, 0] = [1, 2, 3, 4]
    q[1, 1, 2:] = [7, 7]
    h = make_holdings(q, np.ones((2, 4)), "USD")
    np.testing.assert_allclose(av.portfolio_values(h, market).values,
                               model_values(h, market).values, rtol=1e-14)


def test_held_unlisted_asset_raises_missing_price(market, fx):
    q = np.zeros((2, 3, 4))
    q[1, 1, 1] = 3  # p2 holds NEW on day 2, before it lists
    h = make_holdings(q, np.zeros((2, 4)), "USD")
    with pytest.raises(MissingPriceError, match="NEW") as err:
        av.portfolio_values(h, market, fx)
    assert "2021-06-02" in err.value.field and "'p2'" in str(err.value)


def test_foreign_asset_without_fx_raises(holdings, market):
    with pytest.raises(CurrencyMismatchError, match="fx=") as err:
        av.portfolio_values(holdings, market)
    assert err.value.field in ("currency[EUX]", "currency[AAA]")


def test_missing_fx_currency_is_named(holdings, market, fx):
    with pytest.raises(CurrencyMismatchError, match="GBP") as err:
        av.portfolio_values(holdings, market, fx.sel(currency=["USD", "EUR"]))
    assert err.value.value == "GBP"


def test_missing_fx_time_and_bad_rate(holdings, market, fx):
    with pytest.raises(AlignmentError, match="2021-06-04"):
        av.portfolio_values(holdings, market, fx.isel(time=slice(0, 3)))
    bad = fx.copy()
    bad.loc["EUR", DAYS[2]] = NaN
    with pytest.raises(ValidationError, match=r"fx\[EUR, 2021-06-03\]"):
        av.portfolio_values(holdings, market, bad)


def test_unknown_asset(market):
    coords = {"portfolio": ["p1"], "asset": ["ZZZ"], "time": DAYS}
    h = holdings_dataset(
        xr.DataArray(np.ones((1, 1, 4)), dims=("portfolio", "asset", "time"), coords=coords),
        xr.DataArray(np.zeros((1, 4)), dims=("portfolio", "time"),
                     coords={"portfolio": ["p1"], "time": DAYS}),
    )
    with pytest.raises(UnknownAssetError):
        av.portfolio_values(h, market)


# ---------------------------------------------------------------- labelled: P&L, groups


def values_da(v, ports=("a", "b", "c"), currency=None) -> xr.DataArray:
    da = xr.DataArray(np.asarray(v, float), dims=("portfolio", "time"),
                      coords={"portfolio": list(ports), "time": DAYS[: np.shape(v)[1]]})
    if currency is not None:
        da = da.assign_coords(currency=("portfolio", currency))
    return da


def test_daily_pnl_labelled_reorders_flows_and_names_odd_labels():
    v = values_da([[100, 150, 140, 200], [10, 10, 10, 10], [0, 0, 5, 5]])
    flows = values_da([[0, 40, 0, 50], [0, 0, 0, 0], [0, 0, 5, 0]]).isel(portfolio=[2, 0, 1])
    pnl = av.daily_pnl(v, flows)
    np.testing.assert_allclose(pnl.values[:, 1:], [[10, -10, 10], [0, 0, 0], [0, 0, 0]])
    odd = flows.assign_coords(portfolio=["c", "a", "zz"])
    with pytest.raises(AlignmentError, match="zz") as err:
        av.daily_pnl(v, odd)
    assert "b" in err.value.value and "zz" in err.value.value
    with pytest.raises(AlignmentError, match="2021-06-04"):
        av.daily_pnl(v, flows.isel(time=slice(0, 3)))


def test_daily_pnl_dask(holdings, market, fx):
    nav = av.portfolio_values(holdings, market, fx)
    lazy = av.daily_pnl(nav.chunk(portfolio=1))
    np.testing.assert_allclose(lazy.compute().values, av.daily_pnl(nav).values)


@pytest.fixture(scope="module")
def registry():
    reg = Registry(open_store(":memory:"))
    at = datetime(2021, 6, 1)
    for pid in ("fam/a", "fam/b", "fam/c", "solo/d"):
        reg.create_portfolio(pid, 1000.0, at=at)
    reg.create_group("fam/kids", ["fam/b", "fam/c"])
    reg.create_group("fam/all", ["fam/a", "fam/kids", "fam/b"])  # b twice: counted once
    return reg


def test_membership_matrix_and_group_values(registry):
    m = av.membership_matrix(registry, ["fam/all", "fam/kids"])
    assert m.dims == ("group", "portfolio")
    assert sorted(m.indexes["portfolio"]) == ["fam/a", "fam/b", "fam/c"]
    assert m.sel(group="fam/all").values.tolist() == [1.0, 1.0, 1.0]
    assert m.sel(group="fam/kids").sum().item() == 2.0
    ports = ["solo/d", "fam/c", "fam/b", "fam/a"]
    vals = values_da(RNG.uniform(0, 100, (4, 4)), ports)
    m4 = av.membership_matrix(registry, ["fam/all", "fam/kids"], portfolios=ports)
    g = av.group_values(vals, m4)
    assert g.dims == ("group", "time")
    np.testing.assert_allclose(g.sel(group="fam/all"), vals.sel(portfolio=["fam/a", "fam/b",
                                                                            "fam/c"]).sum("portfolio"))
    np.testing.assert_allclose(g.sel(group="fam/kids"), vals.sel(portfolio=["fam/b", "fam/c"])
                               .sum("portfolio"))
    lazy = av.group_values(vals.chunk(portfolio=2), m)  # m lacks solo/d: counts 0
    np.testing.assert_allclose(lazy.compute().values, g.values)
    with pytest.raises(AlignmentError, match="fam/c"):
        av.membership_matrix(registry, ["fam/all"], portfolios=["fam/a", "fam/b"])


def test_group_values_errors():
    m = xr.DataArray([[1.0, 1.0]], dims=("group", "portfolio"),
                     coords={"group": ["g"], "portfolio": ["a", "ghost"]})
    with pytest.raises(AlignmentError, match="ghost"):
        av.group_values(values_da(np.ones((3, 4))), m)
    mixed = values_da(np.ones((3, 4)), currency=["USD", "EUR", "USD"])
    m2 = xr.DataArray([[1.0, 1.0, 0.0]], dims=("group", "portfolio"),
                      coords={"group": ["g"], "portfolio": ["a", "b", "c"]})
    with pytest.raises(CurrencyMismatchError, match="EUR"):
        av.group_values(mixed, m2)


# ---------------------------------------------------------------- labelled: realized / unrealized


def trade(p, day, asset, q, price, fee=0.0, ccy="USD", hour=12):
    return LedgerEntry(p, "trade", datetime(2021, 6, day, hour), asset, q, price, fee,
                       currency=ccy)


def test_realized_unrealized_from_ledger(market):
    entries = [
        LedgerEntry("p1", "cash", datetime(2021, 6, 1), amount=1e4),
        trade("p1", 1, "AAA", 10, 10.0, 1.0),
        trade("p1", 2, "AAA", -5, 12.0, 1.0),
        trade("p1", 3, "AAA", -10, 8.0, 1.0),
        trade("p1", 4, "AAA", 3, 9.0),  # after `at` below: not counted
        trade("p2", 3, "NEW", 2, 19.0),
        trade("p2", 3, "NEW", -2, 21.0),  # closed: no mark needed
    ]
    out = av.realized_unrealized_pnl(entries, market, "2021-06-03")
    assert out["position"].sel(portfolio="p1", asset="AAA").item() == -5
    # realized -2.5 as in the core hand-worked case; short 5 @ 7.9 marked at 12.0
    assert out["realized"].sel(portfolio="p1", asset="AAA").item() == pytest.approx(-2.5)
    assert out["unrealized"].sel(portfolio="p1", asset="AAA").item() == pytest.approx(-5 * 4.1)
    assert out["realized"].sel(portfolio="p2", asset="NEW").item() == pytest.approx(4.0)
    assert out["unrealized"].sel(portfolio="p2", asset="NEW").item() == 0.0
    assert out["realized"].sel(portfolio="p2", asset="AAA").item() == 0.0  # never traded


def test_realized_unrealized_errors(market, fx):
    held_unlisted = [trade("p1", 1, "NEW", 2, 19.0)]
    with pytest.raises(MissingPriceError, match="NEW"):
        av.realized_unrealized_pnl(held_unlisted, market, "2021-06-01")
    with pytest.raises(ValidationError, match="at"):
        av.realized_unrealized_pnl(held_unlisted, market, "2030-01-01")
    eur = [trade("p1", 1, "EUX", 10, 5.0)]
    with pytest.raises(CurrencyMismatchError, match="fx="):
        av.realized_unrealized_pnl(eur, market, "2021-06-02")
    # With FX: the EUR close 5.1 * 1.12 USD/EUR marks the USD-priced trade.
    out = av.realized_unrealized_pnl(eur, market, "2021-06-02", fx=fx)
    assert out["unrealized"].item() == pytest.approx(10 * (5.1 * 1.12 - 5.0))
