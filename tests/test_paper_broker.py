"""The paper broker and the fill path: prices and fees against the cost model's closed
form, one transaction per fill, positions == replay, partial fills, cash limits, stand-alone
orders, idempotent delivery for streaming adapters, and a restart in the middle."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime

import numpy as np
import pytest
from proposal_fixtures import AT, hand_proposal, line
from store_spy import opened_transactions

from pmkit.demo import open_demo
from pmkit.errors import (
    ConfigError,
    NotFoundError,
    PermissionDenied,
    TransitionError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.execution import (
    Broker,
    ExecutionService,
    Fill,
    FillRecorder,
    Order,
    OrderStatus,
    PaperBroker,
    new_order_id,
)
from pmkit.execution.paper import StepResult
from pmkit.rebalance import ProposalBook, ProposalState
from pmkit.registry import Registry

S = ProposalState
GROWTH, INCOME = "client_a/growth", "client_a/income"
COMMISSION, HALF_SPREAD, Y, ADV = 1e-4, 2e-4, 0.5, 5e7  # CostModel() defaults, restated


def close(market, asset, t=AT) -> float:
    return float(market["close"].sel(asset=asset, time=t))


def sigma(market, asset, t=AT) -> float:
    """Daily volatility over the 60 returns up to ``t``, computed here from the closes."""
    c = market["close"].sel(asset=asset, time=slice(None, t)).values[-61:]
    r = c[1:] / c[:-1] - 1.0
    return float(np.std(r, ddof=1))


def closed_form(market, asset, q, t=AT):
    """(execution price, fee) of a fill of ``q`` units at the close of ``t``."""
    p = close(market, asset, t)
    n = abs(q) * p
    slip = n * HALF_SPREAD + n * Y * sigma(market, asset, t) * math.sqrt(n / ADV)
    return p + math.copysign(slip / abs(q), q), n * COMMISSION


def proposal(market, trades, pid="rb-1", scope=GROWTH):
    return hand_proposal(trades, pid, scope=scope)


def submitted(reg, trades, broker, pid="rb-1", scope=GROWTH):
    """Propose (alice), approve (bob) and submit (alice) to ``broker``."""
    ProposalBook(reg.as_user("alice")).propose(proposal(reg.market, trades, pid, scope))
    ProposalBook(reg.as_user("bob")).approve(pid)
    return ProposalBook(reg.as_user("alice")).submit(pid, broker)


def sessions(reg, start=AT, n=30):
    idx = reg.market.indexes["time"]
    return idx[idx.get_loc(start) :][:n]


@pytest.fixture
def reg():
    return open_demo()


@pytest.fixture
def alice(reg):
    return reg.as_user("alice")


# -- prices, fees, ledger -----------------------------------------------------------------------
def test_fills_pay_the_cost_model_in_price_and_fee(reg, alice):
    m = reg.market
    trades = [line(m, GROWTH, "AAPL", -300.0), line(m, GROWTH, "KO", 400.0)]
    paper = PaperBroker(alice)
    submitted(reg, trades, paper)
    before = reg.store.positions(GROWTH)
    fills = paper.step(AT)
    assert [(f.order_id, f.quantity) for f in fills] == [("rb-1-1", -300.0), ("rb-1-2", 400.0)]
    entries = reg.store.ledger(GROWTH)[-2:]
    cash = before.cash
    for f, e, t in zip(fills, entries, trades, strict=True):
        price, fee = closed_form(m, t.asset, t.quantity)
        assert f.price == pytest.approx(price, rel=1e-12)
        assert f.fee == pytest.approx(fee, rel=1e-12)
        assert (e.asset, e.quantity, e.price, e.fee, e.memo) == (
            t.asset,
            t.quantity,
            f.price,
            f.fee,
            f.order_id,
        )
        assert e.ts == datetime(2022, 12, 1) and e.actor == "alice"
        cash += -(f.quantity * f.price) - f.fee
        # the cash cost over the reference close is exactly the proposal's estimate
        assert f.quantity * (f.price - t.price) + f.fee == pytest.approx(t.estimated_cost, rel=1e-9)
        assert f.cost == pytest.approx(t.estimated_cost, rel=1e-12)
    after = reg.store.positions(GROWTH)
    assert after.cash == pytest.approx(cash, rel=1e-15)
    assert after.quantities["AAPL"] == before.quantities["AAPL"] - 300
    assert after.quantities["KO"] == 400
    assert after == reg.store.replay(GROWTH)
    p = ProposalBook(alice).get("rb-1")
    assert p.state == S.FILLED
    by_asset = {t.asset: f for t, f in zip(trades, fills, strict=True)}
    for t in p.trades:
        f = by_asset[t.asset]
        assert (t.filled, t.average_price, t.fees) == (t.quantity, pytest.approx(f.price), f.fee)


def test_a_steps_fills_are_one_transaction_with_an_audit_record_each(reg, alice, monkeypatch):
    m = reg.market
    paper = PaperBroker(alice)
    submitted(reg, [line(m, GROWTH, "AAPL", -300.0), line(m, GROWTH, "KO", 400.0)], paper)
    n = len(reg.store.audit())
    opened = opened_transactions(reg.store, monkeypatch, actor=True)
    fills = paper.step(AT)
    assert opened == [("alice", "order.fill_batch", "paper")]
    # one commit: the batch's record, then per fill its ledger trade, the order's record
    # (before/after images) and the proposal's transition, in booking order
    new = [(a.action, a.target) for a in reg.store.audit()[n:]]
    assert new == [
        ("order.fill_batch", "paper"),
        ("ledger.trade", GROWTH),
        ("order.fill", "rb-1-1"),
        ("proposal.partially_filled", "rb-1"),
        ("ledger.trade", GROWTH),
        ("order.fill", "rb-1-2"),
        ("proposal.filled", "rb-1"),
    ]
    batch = reg.store.audit()[n]
    assert batch.after == {"broker": "paper", "fills": len(fills)}
    order_fill = reg.store.audit()[n + 2]
    assert order_fill.before["filled"] == 0 and order_fill.after["filled"] == -300.0
    assert order_fill.after["fill"]["id"] == fills[0].id


def test_a_refused_fill_rolls_the_batch_back_and_the_others_book_one_by_one(reg, alice,
                                                                           monkeypatch):
    m = reg.market
    paper = PaperBroker(alice)
    submitted(reg, [line(m, GROWTH, "AAPL", -300.0), line(m, GROWTH, "KO", 400.0)], paper)
    real_fill = paper._fill

    def off_band(order, *args):  # KO's fill comes back 50 % off the close: the ledger refuses
        fill = real_fill(order, *args)
        if fill is not None and order.asset == "KO":
            fill = dataclasses.replace(fill, price=fill.price * 1.5)
        return fill

    monkeypatch.setattr(paper, "_fill", off_band)
    opened = opened_transactions(reg.store, monkeypatch)
    before = len(reg.store.ledger(GROWTH))
    result = paper.step(AT)
    assert opened == [("order.fill_batch", "paper"), ("order.fill", "rb-1-1"),
                      ("order.fill", "rb-1-2"), ("order.fill_failed", "rb-1-2")]
    assert [f.order_id for f in result] == ["rb-1-1"]
    assert [(f.order_id, f.error) for f in result.failures] == [("rb-1-2", "PriceBandError")]
    ledger = reg.store.ledger(GROWTH)
    assert len(ledger) == before + 1 and ledger[-1].memo == "rb-1-1"
    assert reg.store.positions(GROWTH) == reg.store.replay(GROWTH)


def test_order_events_are_routed_to_the_orders_portfolio(reg, alice):
    got = {GROWTH: [], INCOME: []}
    for pid in got:
        reg.bus.subscribe("order.*", got[pid].append, portfolio=pid)
    paper = PaperBroker(alice, participation=0.0002)
    submitted(reg, [line(reg.market, GROWTH, "KO", 400.0)], paper)
    paper.run_until_filled(sessions(reg))
    topics = [e.topic for e in got[GROWTH]]
    assert topics[-1] == "order.filled" and set(topics[:-1]) == {"order.partially_filled"}
    assert got[INCOME] == []


# -- partial fills ------------------------------------------------------------------------------
def test_participation_fills_large_orders_over_sessions(reg, alice):
    m = reg.market
    rate = 0.0002
    paper = PaperBroker(alice, participation=rate)
    submitted(reg, [line(m, GROWTH, "AAPL", -300.0), line(m, GROWTH, "KO", 400.0)], paper)
    book = ProposalBook(alice)
    states, left = [], {"AAPL": 300.0, "KO": 400.0}
    for t in sessions(reg):
        fills = paper.step(t)
        for f in fills:
            asset = "AAPL" if f.order_id == "rb-1-1" else "KO"
            cap = math.floor(rate * ADV / close(m, asset, t))
            assert abs(f.quantity) == min(left[asset], cap)
            left[asset] -= abs(f.quantity)
            price, fee = closed_form(m, asset, f.quantity, t)
            assert f.price == pytest.approx(price, rel=1e-12)
            assert f.fee == pytest.approx(fee, rel=1e-12)
        states.append(book.get("rb-1").state)
        if not paper.open_orders():
            break
    assert left == {"AAPL": 0.0, "KO": 0.0}
    assert states[-1] == S.FILLED and set(states[:-1]) == {S.PARTIALLY_FILLED}
    assert len(states) >= 3  # AAPL's cap is ~67 units a session
    assert reg.store.positions(GROWTH) == reg.store.replay(GROWTH)
    hist = [h["state"] for h in book.get("rb-1").history]
    assert hist[:3] == ["proposed", "approved", "submitted"]


def test_sells_come_before_buys_in_a_session(reg, alice):
    m = reg.market
    cash = reg.store.positions(INCOME).cash
    buy = line(m, INCOME, "PG", 300.0)
    sell = line(m, INCOME, "XOM", -300.0)
    assert buy.notional > cash > buy.notional - sell.notional + 1000  # the buy needs the sale
    paper = PaperBroker(alice)
    submitted(reg, [buy, sell], paper, scope=INCOME)  # the buy is the older order
    fills = paper.step(AT)
    assert [f.quantity for f in fills] == [-300.0, 300.0]
    entries = [e for e in reg.store.ledger(INCOME) if e.memo.startswith("rb-1")]
    assert [e.asset for e in entries] == ["XOM", "PG"]
    assert reg.store.positions(INCOME).cash >= 0


def test_a_buy_is_cut_to_the_lots_cash_allows(reg, alice):
    m = reg.market
    cash = reg.store.positions(INCOME).cash
    paper = PaperBroker(alice)
    # funded when proposed, approved and submitted (the pre-trade cash check);
    # the money leaves again before the session
    reg.record_cash(1e5, portfolio=INCOME, ts=datetime(2022, 11, 30))
    submitted(reg, [line(m, INCOME, "PG", 300.0)], paper, scope=INCOME)
    reg.record_cash(-1e5, portfolio=INCOME, ts=datetime(2022, 11, 30))
    [f] = paper.step(AT)

    def cost(k):
        price, fee = closed_form(m, "PG", float(k))
        return k * price + fee

    k = int(f.quantity)
    assert 0 < k < 300 and cost(k) <= cash < cost(k + 1)
    assert reg.store.positions(INCOME).cash >= 0
    assert ProposalBook(alice).get("rb-1").state == S.PARTIALLY_FILLED
    # nothing more without cash ...
    t1 = sessions(reg)[1]
    assert paper.step(t1) == []
    # ... until a deposit arrives
    reg.record_cash(1e6, portfolio=INCOME, ts=datetime(2022, 12, 2))
    [g] = paper.step(sessions(reg)[2])
    assert f.quantity + g.quantity == 300.0
    assert ProposalBook(alice).get("rb-1").state == S.FILLED


def test_sales_never_exceed_the_position_unless_shorting_is_allowed(reg, alice):
    m = reg.market
    held = reg.store.positions(INCOME).quantities["XOM"]
    paper = PaperBroker(alice)
    submitted(reg, [line(m, INCOME, "XOM", -(held + 100))], paper, scope=INCOME)
    [f] = paper.step(AT)
    assert f.quantity == -held and reg.store.positions(INCOME).quantities["XOM"] == 0
    assert paper.step(sessions(reg)[1]) == []
    short = PaperBroker(alice, allow_short=True, name="short")
    submitted(reg, [line(m, INCOME, "JNJ", -1000.0)], short, pid="rb-2", scope=INCOME)
    short.step(AT)  # the portfolio's config does not allow shorts: sold down to zero only
    assert reg.store.positions(INCOME).quantities["JNJ"] == 0
    # the 1,318 JNJ short would be 31% of NAV, over client_a's 25% position limit
    reg.set_config(INCOME, {"allow_short": True, "max_position_weight": 0.5})
    submitted(reg, [line(m, INCOME, "JNJ", -1000.0)], short, pid="rb-3", scope=INCOME)
    short.step(AT)  # rb-2's remaining 318 and rb-3's 1000 now both fill
    assert reg.store.positions(INCOME).quantities["JNJ"] == 682 - 2000


def test_margin_lets_cash_go_negative_down_to_its_limit(reg, alice):
    m = reg.market
    pos = reg.store.positions(INCOME)
    nav = pos.cash + sum(q * close(m, a) for a, q in pos.quantities.items())
    # the books' bound; the broker's is tighter (and positions up to 100% of NAV)
    reg.set_config(INCOME, {"margin_limit": 1e9, "max_position_weight": 1.0})
    paper = PaperBroker(alice, margin=0.5)
    # buying a third of NAV more than the cash: allowed with 50% margin
    q = math.floor((pos.cash + nav / 3) / close(m, "PG"))
    submitted(reg, [line(m, INCOME, "PG", float(q))], paper, scope=INCOME)
    [f] = paper.step(AT)
    after = reg.store.positions(INCOME).cash
    assert f.quantity == q and -0.5 * nav <= after < -nav / 4
    # and a buy past the limit is cut at it (NAV at the session's closes, before the fill)
    big = math.floor(nav / 2 / close(m, "KO"))
    submitted(reg, [line(m, INCOME, "KO", float(big))], paper, pid="rb-2", scope=INCOME)
    t1 = sessions(reg)[1]
    held = reg.store.replay(INCOME)
    nav1 = held.cash + sum(q * close(m, a, t1) for a, q in held.quantities.items())
    [g] = paper.step(t1)
    assert 0 < g.quantity < big
    assert reg.store.replay(INCOME).cash >= -0.5 * nav1
    price, fee = closed_form(m, "KO", g.quantity + 1, t1)
    assert held.cash - (g.quantity + 1) * price - fee < -0.5 * nav1


# -- stand-alone orders, cancels, bad input -----------------------------------------------------
def test_stand_alone_orders_submit_once_fill_and_cancel(reg, alice):
    m = reg.market
    paper = PaperBroker(alice)
    o = Order(new_order_id(), GROWTH, "KO", 10.0, close(m, "KO"), "paper")
    [stored] = paper.submit([o])
    assert stored.status == OrderStatus.OPEN and stored.created_at
    dump = reg.store.dump()
    assert paper.submit([o]) == [stored] and reg.store.dump() == dump  # idempotent
    for bad, field in [
        (o.with_changes(quantity=11.0), "id"),
        (o.with_changes(id="x", broker="ib"), "broker"),
        (o.with_changes(id="x", quantity=0.0), "quantity"),
        (o.with_changes(id="x", reference_price=-1.0), "reference_price"),
    ]:
        with pytest.raises(ValidationError) as info:
            paper.submit([bad])
        assert info.value.field == field
    with pytest.raises(UnknownAssetError):
        paper.submit([o.with_changes(id="y", asset="ZZZZ")])
    assert reg.store.dump() == dump
    c = Order(new_order_id(), GROWTH, "PEP", 5.0, close(m, "PEP"), "paper")
    paper.submit([c])
    assert paper.cancel(c.id).status == OrderStatus.CANCELLED
    assert paper.cancel(c.id).status == OrderStatus.CANCELLED  # again: unchanged
    [f] = paper.step(AT)
    assert f.order_id == o.id and paper.open_orders() == []
    with pytest.raises(TransitionError):
        paper.cancel(o.id)
    with pytest.raises(NotFoundError):
        paper.cancel("ord-none")


def test_a_refused_fill_is_reported_and_the_other_orders_fill(reg, alice):
    """Issue 14: one order the registry refuses (price out of GROWTH's band) does not stop
    INCOME's orders; the failure is returned, audited and published, and the order stays open."""
    m = reg.market
    reg.set_config(GROWTH, {"price_band": 1e-6})  # any slippage is out of this band
    paper = PaperBroker(alice)
    bad = Order("ord-a", GROWTH, "KO", 400.0, close(m, "KO"), "paper", created_at="2022-12-01T01")
    good = [
        Order("ord-b", INCOME, "PEP", 50.0, close(m, "PEP"), "paper", created_at="2022-12-01T02"),
        Order("ord-c", INCOME, "PG", 30.0, close(m, "PG"), "paper", created_at="2022-12-01T03"),
    ]
    paper.submit([bad, *good])
    got = []
    reg.bus.subscribe("order.*", got.append, portfolio=GROWTH)
    growth_ledger, income_before = reg.store.ledger(GROWTH), reg.store.positions(INCOME)
    n = len(reg.store.audit())

    result = paper.step(AT)

    assert isinstance(result, StepResult)
    assert [(f.order_id, f.quantity) for f in result] == [("ord-b", 50.0), ("ord-c", 30.0)]
    income = reg.store.positions(INCOME)
    for f, asset in zip(result, ("PEP", "PG"), strict=True):
        price, fee = closed_form(m, asset, f.quantity)
        assert (f.price, f.fee) == (pytest.approx(price, rel=1e-12), pytest.approx(fee, rel=1e-12))
        assert income.quantities[asset] == income_before.quantities.get(asset, 0.0) + f.quantity
    (failure,) = result.failures
    assert (failure.order_id, failure.portfolio, failure.asset, failure.quantity) == (
        "ord-a",
        GROWTH,
        "KO",
        400.0,
    )
    assert (failure.error, failure.field) == ("PriceBandError", "price")
    assert failure.at == AT.isoformat() and "band 1e-06" in failure.reason
    assert reg.store.ledger(GROWTH) == growth_ledger  # nothing of the refused fill was written
    assert reg.store.get("order", "ord-a").status == OrderStatus.OPEN
    audited = [(a.action, a.target) for a in reg.store.audit()[n:]]
    assert audited[0] == ("order.fill_failed", "ord-a")
    assert reg.store.audit()[n].after == failure.to_record()
    assert [(e.topic, e.payload["order"], e.payload["error"]) for e in got] == [
        ("order.fill_failed", "ord-a", "PriceBandError")
    ]
    # the order stayed open: with the band lifted it fills in the next session
    reg.set_config(GROWTH, {"price_band": None})
    later = sessions(reg)[1]
    again = paper.step(later)
    assert [f.order_id for f in again] == ["ord-a"] and again.failures == []


def test_bad_settings_and_times_are_refused(reg, alice):
    for kw, field in [
        ({"participation": 0.0}, "participation"),
        ({"margin": -0.1}, "margin"),
        ({"participation": float("nan")}, "participation"),
    ]:
        with pytest.raises(ValidationError) as info:
            PaperBroker(alice, **kw)
        assert info.value.field == field
    with pytest.raises(ConfigError):
        PaperBroker(Registry.open(":memory:"))  # no market data
    with pytest.raises(ValidationError) as info:
        PaperBroker(alice).step("2022-12-25")  # a holiday: no close
    assert info.value.field == "at"


# -- the fill path for streaming adapters -------------------------------------------------------
class StreamingBroker(Broker):
    """A stand-in for a real adapter: it only reports executions."""

    name = "stream"

    def __init__(self):
        super().__init__()
        self.orders = {}

    def submit(self, orders):
        self.orders.update({o.id: o for o in orders})
        return list(orders)

    def cancel(self, order_id):
        return self.orders[order_id]

    def open_orders(self):
        return list(self.orders.values())


def test_fills_delivered_twice_are_booked_once(reg, alice):
    m = reg.market
    venue = StreamingBroker()
    submitted(reg, [line(m, GROWTH, "KO", 400.0)], venue)
    service = ExecutionService(alice, venue)
    service.attach()
    p = close(m, "KO")
    first = Fill("rb-1-1", 150.0, p, 1.0, datetime(2022, 12, 1, 15), id="x-1")
    second = Fill("rb-1-1", 250.0, p, 1.5, datetime(2022, 12, 1, 15, 30), id="x-2")
    venue.emit(first)
    venue.emit(first)  # a reconnect replays it
    assert ProposalBook(alice).get("rb-1").state == S.PARTIALLY_FILLED
    service.detach()
    venue.emit(second)  # not pushed any more: booked by pull
    assert ProposalBook(alice).get("rb-1").state == S.PARTIALLY_FILLED
    assert [o.filled for o in service.process()] == [400.0]  # first two queued are already booked
    trades = [e for e in reg.store.ledger(GROWTH) if e.memo == "rb-1-1"]
    assert [(e.quantity, e.fee) for e in trades] == [(150.0, 1.0), (250.0, 1.5)]
    assert ProposalBook(alice).get("rb-1").state == S.FILLED
    assert FillRecorder(alice).record(second) is None


def test_bad_fills_change_nothing(reg, alice):
    m = reg.market
    venue = StreamingBroker()
    submitted(reg, [line(m, GROWTH, "KO", 400.0)], venue)
    rec = FillRecorder(alice)
    p = close(m, "KO")
    ts = datetime(2022, 12, 1)
    dump = reg.store.dump()
    for fill, err, field in [
        (Fill("rb-1-1", 401.0, p, 0.0, ts, "a"), ValidationError, "quantity"),  # overfill
        (Fill("rb-1-1", -10.0, p, 0.0, ts, "b"), ValidationError, "quantity"),  # wrong side
        (Fill("rb-1-1", 10.0, 0.0, 0.0, ts, "c"), ValidationError, "price"),
        (Fill("rb-1-1", 10.0, p, -1.0, ts, "d"), ValidationError, "fee"),
        (Fill("rb-1-1", 10.0, p, 0.0, ts, ""), ValidationError, "id"),
        (Fill("rb-9-9", 10.0, p, 0.0, ts, "e"), NotFoundError, None),
    ]:
        with pytest.raises(err) as info:
            rec.record(fill)
        if field:
            assert info.value.field == field
    with pytest.raises(PermissionDenied):  # carol may not trade
        FillRecorder(reg.as_user("carol")).record(Fill("rb-1-1", 10.0, p, 0.0, ts, "f"))
    assert reg.store.dump() == dump


# -- restart ------------------------------------------------------------------------------------
def _run(path, stop_after=None):
    """Propose, approve, submit and fill; with ``stop_after`` sessions, close and reopen."""
    reg = open_demo(str(path))
    m = reg.market
    trades = [
        line(m, GROWTH, "AAPL", -300.0),
        line(m, GROWTH, "KO", 400.0),
        line(m, GROWTH, "PEP", 150.0),
    ]
    paper = PaperBroker(reg.as_user("alice"), participation=0.0002)
    submitted(reg, trades, paper)
    times = sessions(reg)
    if stop_after is not None:
        for t in times[:stop_after]:
            paper.step(t)
        assert ProposalBook(reg).get("rb-1").state == S.PARTIALLY_FILLED
        reg.store.close()
        reg = open_demo(str(path))  # a new process: new store, registry, bus, broker
        paper = PaperBroker(reg.as_user("alice"), participation=0.0002)
        times = times[stop_after:]
    paper.run_until_filled(times)
    return reg


def _strip(record):
    """A stored proposal or order without its wall-clock stamps."""
    d = dict(record)
    d.pop("created_at", None)
    if "history" in d:
        d["history"] = [{k: v for k, v in h.items() if k != "ts"} for h in d["history"]]
    return d


def test_a_restart_in_the_middle_ends_as_an_uninterrupted_run(tmp_path):
    whole = _run(tmp_path / "whole.db")
    resumed = _run(tmp_path / "resumed.db", stop_after=2)
    assert ProposalBook(resumed).get("rb-1").state == S.FILLED
    assert resumed.store.ledger() == whole.store.ledger()
    for kind in ("proposal", "order"):
        a = [(r.id, r.status, _strip(r.data)) for r in whole.store.list(kind)]
        b = [(r.id, r.status, _strip(r.data)) for r in resumed.store.list(kind)]
        assert a == b and a
    for pid in (GROWTH, INCOME):
        assert resumed.store.positions(pid) == resumed.store.replay(pid)
    whole.store.close()
    resumed.store.close()
