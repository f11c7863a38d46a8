"""Live incremental valuation: the kernel against numpy, the service against full recomputation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmkit.core.live import MIN_BUCKET, apply_price_changes, bucket_size, pad_changes
from pmkit.demo import open_demo
from pmkit.errors import ValidationError
from pmkit.execution import PaperBroker
from pmkit.execution.broker import Order, new_order_id
from pmkit.stream.valuation import GROUP_TOPIC, TOPIC, LiveValuation

GROWTH, INCOME = "client_a/growth", "client_a/income"
BALANCED, FACTORS = "client_b/balanced", "client_b/factors"


@pytest.fixture(scope="module")
def shared():
    """A demo registry that tests in this module only read."""
    return open_demo()


@pytest.fixture
def reg():
    return open_demo()


# -- independent recomputation ------------------------------------------------------------------
def open_closes(reg) -> dict[str, float]:
    last = reg.market["close"].isel(time=-1)
    return {str(a): float(x) for a, x in zip(last.asset.values, last.values, strict=True)}


def recompute(reg, marks: dict[str, float]) -> dict[str, float]:
    """``sum(q * price) + cash`` per portfolio from the registry's positions, in plain Python."""
    out = {}
    for info in reg.portfolios(status="active"):
        pos = reg.positions(info.id)
        out[info.id] = pos.cash + sum(q * marks[a] for a, q in pos.quantities.items() if q != 0)
    return out


def random_flush(rng, lv, k):
    cols = rng.choice(len(lv.symbols), size=k, replace=False)
    prices = lv.prices().to_numpy()[cols] * np.exp(rng.normal(0, 0.02, size=k))
    return cols, prices


# -- kernel ---------------------------------------------------------------------------------------
def test_bucket_sizes_are_powers_of_two():
    assert [bucket_size(k) for k in (0, 1, MIN_BUCKET, MIN_BUCKET + 1, 100, 128, 129)] == [
        8,
        8,
        8,
        16,
        128,
        128,
        256,
    ]


@pytest.mark.parametrize("k", [0, 1, 5, 8, 9, 30])
def test_kernel_equals_numpy(k):
    rng = np.random.default_rng(k)
    p_, n, g_ = 6, 30, 3
    h = rng.normal(0, 100, size=(p_, n)) * (rng.random((p_, n)) < 0.5)
    prices = rng.uniform(10, 200, size=n)
    cash = rng.normal(0, 1e4, size=p_)
    v = h @ prices + cash
    pnl = rng.normal(size=p_)
    m = (rng.random((g_, p_)) < 0.5).astype(float)
    idx = rng.choice(n, size=k, replace=False)
    new = prices[idx] * rng.uniform(0.9, 1.1, size=k)
    pi, pp = pad_changes(idx, new, n)
    assert len(pi) == bucket_size(k) and (pi[k:] == n).all()
    v2, pnl2, p2, g2, delta, touched = (np.asarray(x) for x in apply_price_changes(
        h, v, pnl, prices, m, pi, pp
    ))
    expect_p = prices.copy()
    expect_p[idx] = new
    expect_delta = h[:, idx] @ (new - prices[idx])
    np.testing.assert_array_equal(p2, expect_p)
    np.testing.assert_allclose(delta, expect_delta, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(v2, h @ expect_p + cash, rtol=1e-12)
    np.testing.assert_allclose(pnl2, pnl + expect_delta, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(g2, m @ (h @ expect_p + cash), rtol=1e-12)
    np.testing.assert_array_equal(touched, (h[:, idx] != 0).any(axis=1))


def test_kernel_padding_is_a_no_op():
    h = np.array([[1.0, 2.0], [0.0, 3.0]])
    prices = np.array([10.0, 20.0])
    v = h @ prices
    pi, pp = pad_changes(np.array([], dtype=np.int64), np.array([]), 2)
    v2, _, p2, _, delta, touched = apply_price_changes(
        h, v, np.zeros(2), prices, np.ones((1, 2)), pi, pp
    )
    np.testing.assert_array_equal(np.asarray(p2), prices)
    np.testing.assert_array_equal(np.asarray(v2), v)
    assert not np.asarray(touched).any() and not np.asarray(delta).any()


# -- opening state -----------------------------------------------------------------------------
def test_open_values_equal_registry_valuation(shared):
    lv = LiveValuation(shared, publish=False)
    reg_values = shared.values().to_series()
    np.testing.assert_allclose(lv.values()[reg_values.index], reg_values, rtol=1e-12)
    assert (lv.pnl() == 0).all()
    assert lv.groups == ["client_a", "client_b", "firm"]
    for g in lv.groups:
        assert lv.group_values()[g] == pytest.approx(shared.group_value(g), rel=1e-12)
    assert set(lv.symbols) == {
        a for pid in lv.portfolios for a in shared.positions(pid).open_positions()
    }


def test_viewer_sees_only_their_portfolios(shared):
    lv = LiveValuation(shared.as_user("alice"), publish=False)
    assert lv.portfolios == [GROWTH, INCOME]
    assert lv.groups == ["client_a"]  # alice has no view on firm


# -- price updates ------------------------------------------------------------------------------
def test_flushes_match_full_recomputation(shared):
    lv = LiveValuation(shared, publish=False)
    rng = np.random.default_rng(7)
    marks = open_closes(shared)
    for _ in range(12):
        cols, prices = random_flush(rng, lv, int(rng.integers(1, 10)))
        lv.update(cols, prices)
        marks.update({lv.symbols[c]: float(x) for c, x in zip(cols, prices, strict=True)})
    want = recompute(shared, marks)
    got = lv.values()
    for pid, x in want.items():
        assert got[pid] == pytest.approx(x, rel=1e-12)
    # P&L since the open is V - V_open, V_open being the registry's own valuation
    opened = shared.values().to_series()
    for pid in want:
        assert lv.pnl()[pid] == pytest.approx(want[pid] - opened[pid], rel=1e-9, abs=1e-6)
    # groups: each leaf portfolio once, the nested firm group included
    for g in lv.groups:
        members = shared.get_group_portfolios(g)
        assert lv.group_values()[g] == pytest.approx(sum(want[p] for p in members), rel=1e-12)
    assert lv.group_values()["firm"] == pytest.approx(sum(want.values()), rel=1e-12)
    frame = lv.frame()
    np.testing.assert_allclose(
        frame["pnl"], frame["value"] - frame["open"] - frame["flows"], rtol=1e-9, atol=1e-6
    )


def test_repeated_columns_keep_the_last_price_and_untracked_are_ignored(shared):
    a = LiveValuation(shared, publish=False)
    b = LiveValuation(shared, publish=False)
    j = a.symbols.index("AAPL")
    u = a.update(np.array([j, -1, j]), np.array([100.0, 5.0, 150.0]))
    b.update(np.array([j]), np.array([150.0]))
    assert u.prices == 1
    assert a.prices()["AAPL"] == 150.0
    np.testing.assert_array_equal(a.values(), b.values())


@pytest.mark.parametrize(
    ("idx", "prices"),
    [
        ([0, 1], [np.nan, 10.0]),
        ([0], [-1.0]),
        ([0], [0.0]),
        ([10_000], [10.0]),
        ([-2], [10.0]),
        ([0, 1], [10.0]),
        ([0.5], [10.0]),
    ],
)
def test_bad_flush_raises_and_changes_nothing(shared, idx, prices):
    lv = LiveValuation(shared, publish=False)
    before = lv.frame().copy()
    with pytest.raises(ValidationError):
        lv.update(np.array(idx), np.array(prices))
    assert lv.frame().equals(before)
    assert (lv.prices() == LiveValuation(shared, publish=False).prices()).all()


# -- events ---------------------------------------------------------------------------------------
def test_one_event_per_affected_portfolio_routed_to_its_subscribers(reg):
    lv = LiveValuation(reg)
    seen = {pid: [] for pid in lv.portfolios}
    for pid in lv.portfolios:
        reg.bus.subscribe("stream.*", seen[pid].append, portfolio=pid)
    everything, client_b = [], []
    reg.bus.subscribe("stream.*", everything.append)
    reg.bus.subscribe("stream.*", client_b.append, group="client_b")
    # three of growth's assets and one of income's, in one flush
    names = ["AAPL", "MSFT", "AMD", "KO"]
    cols = lv.index(names)
    prices = lv.prices()[names].to_numpy() * 1.01
    u = lv.update(cols, prices, ts=1234.5)
    assert u.portfolios == (GROWTH, INCOME)
    assert set(u.groups) == {"client_a", "firm"}
    for pid in (GROWTH, INCOME):
        (e,) = seen[pid]  # one per portfolio per update, not per tick
        assert e.topic == TOPIC and e.portfolio == pid
        assert e.payload["value"] == pytest.approx(lv.values()[pid], rel=1e-15)
        assert e.payload["pnl"] == pytest.approx(lv.pnl()[pid], rel=1e-15)
        assert e.payload["change"] == pytest.approx(u.changes[pid], rel=1e-15)
        assert e.payload["ts"] == 1234.5 and isinstance(e.payload["published_at"], float)
    assert seen[BALANCED] == [] and seen[FACTORS] == []
    assert client_b == []
    topics = sorted((e.topic, e.portfolio or e.group) for e in everything)
    assert topics == sorted(
        [(TOPIC, GROWTH), (TOPIC, INCOME), (GROUP_TOPIC, "client_a"), (GROUP_TOPIC, "firm")]
    )
    firm = next(e for e in everything if e.group == "firm")
    assert firm.payload["value"] == pytest.approx(lv.values().sum(), rel=1e-12)
    assert firm.payload["change"] == pytest.approx(sum(u.changes.values()), rel=1e-12)


def test_publish_false_publishes_nothing(reg):
    lv = LiveValuation(reg, publish=False)
    got = []
    reg.bus.subscribe("stream.*", got.append)
    u = lv.update(lv.index(["AAPL"]), np.array([100.0]))
    assert u.portfolios == (GROWTH,) and got == []


def test_unchanged_price_affects_no_one(reg):
    lv = LiveValuation(reg)
    got = []
    reg.bus.subscribe("stream.*", got.append)
    u = lv.update(lv.index(["AAPL"]), lv.prices()[["AAPL"]].to_numpy())
    assert u.portfolios == () and got == []


# -- fills and cash flows ----------------------------------------------------------------------
def test_paper_broker_fill_streams_through(reg):
    lv = LiveValuation(reg)
    lv.attach()
    j = lv.symbols.index("KO")
    lv.update(np.array([j]), np.array([61.0]))  # a live mark away from the fill's close
    before_v, before_pnl = lv.values()[INCOME], lv.pnl()[INCOME]
    got = []
    reg.bus.subscribe(TOPIC, got.append, portfolio=INCOME)
    alice = reg.as_user("alice")
    paper = PaperBroker(alice)
    t = reg.market.indexes["time"][-1]
    close = float(reg.market["close"].sel(asset="KO", time=t))
    paper.submit(
        [Order(new_order_id(), INCOME, "KO", 100.0, reference_price=close, broker="paper")]
    )
    (fill,) = paper.step(t)
    (e,) = got
    assert e.payload["source"] == "ledger" and e.payload["value"] == lv.values()[INCOME]
    assert lv.holdings().loc[INCOME, "KO"] == reg.positions(INCOME).quantities["KO"]
    # value moves by q * (mark - exec) - fee; the P&L by the same
    move = 100.0 * (61.0 - fill.price) - fill.fee
    assert lv.values()[INCOME] - before_v == pytest.approx(move, rel=1e-9)
    assert lv.pnl()[INCOME] - before_pnl == pytest.approx(move, rel=1e-9)
    marks = {**open_closes(reg), "KO": 61.0}
    want = recompute(reg, marks)
    for pid, x in want.items():
        assert lv.values()[pid] == pytest.approx(x, rel=1e-12)
    # later ticks revalue the new holding
    lv.update(np.array([j]), np.array([62.0]))
    marks["KO"] = 62.0
    assert lv.values()[INCOME] == pytest.approx(recompute(reg, marks)[INCOME], rel=1e-12)


def test_trade_in_a_new_asset_appends_a_column(reg):
    lv = LiveValuation(reg, publish=False)
    lv.attach()
    unheld = [str(a) for a in reg.market.indexes["asset"] if a not in lv.symbols]
    new = unheld[0]
    old_symbols = list(lv.symbols)
    before = lv.values()[GROWTH]
    # A price near the last close: the registry refuses one outside its price band.
    price = round(float(reg.market["close"].sel(asset=new).dropna("time")[-1]) * 1.01, 2)
    reg.record_trade(new, 10.0, price, portfolio=GROWTH, fee=1.5)
    assert lv.symbols[: len(old_symbols)] == old_symbols and lv.symbols[-1] == new
    assert lv.index([new])[0] == len(old_symbols)
    assert lv.prices()[new] == price
    assert lv.values()[GROWTH] == pytest.approx(before - 1.5, rel=1e-12)
    lv.update(lv.index([new]), np.array([price * 1.1]))
    marks = {**open_closes(reg), new: price * 1.1}
    assert lv.values()[GROWTH] == pytest.approx(recompute(reg, marks)[GROWTH], rel=1e-12)


def test_cash_flows_move_value_not_pnl(reg):
    lv = LiveValuation(reg)
    lv.attach()
    lv.update(lv.index(["PG"]), np.array([140.0]))
    v, pnl = lv.values()[INCOME], lv.pnl()[INCOME]
    reg.record_cash(-25_000.0, portfolio=INCOME)
    assert lv.values()[INCOME] == pytest.approx(v - 25_000.0, rel=1e-15)
    assert lv.pnl()[INCOME] == pnl
    assert lv.frame().loc[INCOME, "flows"] == -25_000.0


def test_entries_before_attach_are_caught_up_and_detach_stops(reg):
    lv = LiveValuation(reg, publish=False)
    reg.record_trade("KO", 10.0, 60.0, portfolio=INCOME)
    assert lv.holdings().loc[INCOME, "KO"] == reg.positions(INCOME).quantities["KO"] - 10
    lv.attach()
    lv.attach()  # twice is once
    assert lv.holdings().loc[INCOME, "KO"] == reg.positions(INCOME).quantities["KO"]
    lv.detach()
    reg.record_trade("KO", 10.0, 60.0, portfolio=INCOME)
    assert lv.holdings().loc[INCOME, "KO"] == reg.positions(INCOME).quantities["KO"] - 10
    assert lv.sync(INCOME) is not None and lv.sync(INCOME) is None  # replaying is idempotent
    assert lv.holdings().loc[INCOME, "KO"] == reg.positions(INCOME).quantities["KO"]


# -- limits ------------------------------------------------------------------------------------
def test_check_limits_on_live_weights(reg):
    lv = LiveValuation(reg)
    lv.update(lv.index(["AAPL"]), np.array([400.0]))  # AAPL now dominates growth
    breaches = []
    reg.bus.subscribe("risk.limit_breach", breaches.append, portfolio=GROWTH)
    found = lv.check_limits({"position": 0.3})
    aapl = [b for b in found if b.portfolio == GROWTH and b.item == "AAPL"]
    q = reg.positions(GROWTH).quantities["AAPL"]
    assert len(aapl) == 1
    assert aapl[0].value == pytest.approx(q * 400.0 / lv.values()[GROWTH], rel=1e-12)
    assert any(e.payload["item"] == "AAPL" for e in breaches)
    assert all(e.portfolio == GROWTH for e in breaches)
    assert lv.check_limits({"position": 1.0, "sector": 1.0}, publish=False) == []
    m = lv.metrics()
    h, px, v = lv.holdings(), lv.prices(), lv.values()
    w = h.mul(px, axis=1).div(v, axis=0)
    np.testing.assert_allclose(m["weight"].to_pandas().loc[w.index, w.columns], w, rtol=1e-12)
    np.testing.assert_allclose(m["leverage"].to_pandas()[w.index], w.abs().sum(axis=1), rtol=1e-12)
    sector = reg.market["sector"].to_series()
    tech = w.loc[GROWTH, [a for a in w.columns if sector[a] == "Information Technology"]].sum()
    assert float(m["sector_weight"].sel(portfolio=GROWTH, sector="Information Technology")) == (
        pytest.approx(tech, rel=1e-12)
    )


# -- concurrency and the property -----------------------------------------------------------------
def test_concurrent_updates_lose_nothing(shared):
    lv = LiveValuation(shared, publish=False)
    halves = [lv.symbols[::2], lv.symbols[1::2]]
    finals = {}

    def run(names, seed):
        rng = np.random.default_rng(seed)
        cols = lv.index(names)
        base = lv.prices()[names].to_numpy()
        for _ in range(50):
            px = base * np.exp(rng.normal(0, 0.01, size=len(cols)))
            lv.update(cols, px)
            lv.values()
        finals.update(dict(zip(names, px, strict=True)))

    threads = [threading.Thread(target=run, args=(h, i)) for i, h in enumerate(halves)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    want = recompute(shared, {**open_closes(shared), **finals})
    for pid, x in want.items():
        assert lv.values()[pid] == pytest.approx(x, rel=1e-12)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flushes=st.lists(
        st.lists(
            st.tuples(st.integers(0, 21), st.floats(1.0, 1_000.0, allow_nan=False)),
            min_size=0,
            max_size=12,
        ),
        min_size=1,
        max_size=8,
    )
)
def test_any_update_sequence_ends_at_the_full_recomputation(shared, flushes):
    lv = LiveValuation(shared, publish=False)
    marks = open_closes(shared)
    for flush in flushes:
        cols = np.array([c for c, _ in flush], dtype=np.int64)
        prices = np.array([p for _, p in flush])
        lv.update(cols, prices)
        for c, p in flush:  # a repeated column keeps its last price
            marks[lv.symbols[c]] = p
    want = recompute(shared, marks)
    for pid, x in want.items():
        assert lv.values()[pid] == pytest.approx(x, rel=1e-9)
    assert lv.resync() <= 1e-9 * max(abs(x) for x in want.values())


def test_warm_compiles_every_bucket_and_changes_nothing(shared):
    lv = LiveValuation(shared, publish=False)
    before = lv.frame().copy()
    n = len(lv.symbols)
    assert lv.warm() == len({bucket_size(k) for k in range(n + 1)})
    assert lv.frame().equals(before)
