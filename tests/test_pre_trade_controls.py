"""Pre-trade risk controls (issue 14, point 3): every order path checks the portfolio's limits.

Each refusal is a `LimitBreachError` naming the limit, the value and the threshold, raised
before anything is written; expected values are computed here independently (closed forms,
pandas/xarray, `pmkit.rebalance.risk.risk_snapshot`), never copied from a run.
"""

from __future__ import annotations

import asyncio
import functools
import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from pmkit.coordinator import SignalState, StrategyCoordinator
from pmkit.demo import open_demo
from pmkit.errors import (
    ConfigError,
    InsufficientCashError,
    LimitBreachError,
    NotFoundError,
    PermissionDenied,
    PmkitError,
    ValidationError,
)
from pmkit.execution import PaperBroker
from pmkit.model import simple_returns
from pmkit.rebalance import ProposalBook, ProposalState, propose_rebalance
from pmkit.rebalance.risk import risk_snapshot
from pmkit.registry import Registry
from pmkit.risk.controls import Breach, Override, ProposedTrade, evaluate, parse_limits
from pmkit.store import SQLiteStore, open_store
from pmkit.strategies import StrategyManager

GROWTH, INCOME, CASH = "client_a/growth", "client_a/income", "desk/cash"
S = ProposalState


def returns_with_sharpe(sharpe: float, seed: int, n: int = 500, vol: float = 0.01) -> pd.Series:
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return pd.Series(sharpe / math.sqrt(252) * vol + vol * z,
                     index=pd.bdate_range("2019-01-01", periods=n))


@functools.cache
def _template() -> Registry:
    reg = open_demo()
    reg.create_portfolio(CASH, 1_000_000.0, name="Cash desk")
    reg.grant("alice", CASH, "trader")
    reg.grant("bob", CASH, "manager")
    bob = reg.as_user("bob")
    StrategyManager(bob, GROWTH).register_strategy("alpha", returns_with_sharpe(1.0, 1), 0.3)
    StrategyManager(bob, CASH).register_strategy("alpha", returns_with_sharpe(1.0, 2), 0.5)
    return reg


@pytest.fixture
def reg() -> Registry:
    """A private copy of the demo (plus an all-cash portfolio and one strategy each)."""
    src = _template()
    dst = SQLiteStore(":memory:")
    src.store._conn.backup(dst._conn)
    return Registry(dst, market=src.market)


def last(market, asset: str, t=None) -> float:
    """The asset's last close at or before ``t`` (default: the market's last time)."""
    s = market["close"].sel(asset=asset).to_series().dropna()
    if t is not None:
        s = s[s.index <= pd.Timestamp(t)]
    return float(s.iloc[-1])


def nav(reg: Registry, pid: str, t=None) -> float:
    pos = reg.positions(pid)
    return pos.cash + sum(q * last(reg.market, a, t) for a, q in pos.quantities.items() if q)


def sig(symbol, entry, stop, *, strategy="alpha", portfolio=GROWTH, side="long", rr=2.0):
    return {"symbol": symbol, "side": side, "entry": entry, "stop": stop,
            "target": entry + rr * (entry - stop), "strategy": strategy, "portfolio": portfolio}


def audits(reg: Registry, target: str, action: str) -> list:
    return [a for a in reg.store.audit(target=target) if a.action == action]


# -- the pure evaluation ------------------------------------------------------------------------
def test_evaluate_checks_the_post_trade_state_in_closed_form():
    lim = parse_limits({"max_position_weight": 0.25, "max_leverage": 0.5})
    # 100 cash, buy 30 units at 1: the position is 30 / 100 of NAV, gross 0.3
    [b] = evaluate(lim, [ProposedTrade("X", 30.0, 1.0)], cash=100.0, quantities={}, prices={})
    assert (b.limit, b.item, b.hard) == ("max_position_weight", "X", True)
    assert b.value == pytest.approx(0.30) and b.before == 0.0 and b.threshold == 0.25
    # a fee lowers NAV: 30 / (100 - 2)
    [b] = evaluate(lim, [ProposedTrade("X", 30.0, 1.0, 2.0)], cash=100.0, quantities={},
                   prices={})
    assert b.value == pytest.approx(30 / 98)
    # over the limit already (60 of 100): a sale that leaves it over is allowed ...
    held = dict(cash=40.0, quantities={"X": 60.0}, prices={"X": 1.0})
    assert evaluate(lim, [ProposedTrade("X", -10.0, 1.0)], **held) == []
    # ... a purchase of one more unit is not (61 / 100, and gross 0.61 > 0.5)
    got = evaluate(lim, [ProposedTrade("X", 1.0, 1.0)], **held)
    assert [(g.limit, g.value, g.before) for g in got] == [
        ("max_position_weight", pytest.approx(0.61), pytest.approx(0.60)),
        ("max_leverage", pytest.approx(0.61), pytest.approx(0.60)),
    ]
    # a trade in another asset is not blamed for X's weight (gross 0.65 > 0.5 still is)
    [b] = evaluate(lim, [ProposedTrade("Y", 5.0, 1.0)], **held)
    assert b.limit == "max_leverage" and b.value == pytest.approx(0.65)
    # the traded asset is valued at its trade price: 70 X at 2, cash 40 - 20
    [b] = evaluate(parse_limits({"max_position_weight": 0.25}), [ProposedTrade("X", 10.0, 2.0)],
                   **held)
    assert b.value == pytest.approx(70 * 2.0 / (40 - 20 + 140))
    soft = parse_limits({"max_position_weight": 0.25, "soft_limits": ["max_position_weight"]})
    [b] = evaluate(soft, [ProposedTrade("X", 30.0, 1.0)], cash=100.0, quantities={}, prices={})
    assert b.hard is False
    assert isinstance(b, Breach) and b.to_record()["limit"] == "max_position_weight"


def test_bad_limit_configuration_is_a_typed_error_naming_the_key(reg):
    for bad, key in [
        ({"soft_limits": ["max_foo"]}, "values.soft_limits"),
        ({"restricted_assets": "KO"}, "values.restricted_assets"),
        ({"var_confidence": 1.5}, "values.var_confidence"),
        ({"var_lookback": 10}, "values.var_lookback"),
        ({"max_order_value": -1.0}, "values.max_order_value"),
        ({"max_leverage": "high"}, "values.max_leverage"),
        ({"max_participation": 0.0}, "values.max_participation"),
    ]:
        before = reg.store.dump()
        with pytest.raises(ConfigError) as err:
            reg.set_config(GROWTH, bad)
        assert err.value.field == key
        assert reg.store.dump() == before
    with pytest.raises(ConfigError) as err:
        parse_limits({"max_heat": -0.1}, GROWTH)
    assert err.value.field == f"config[{GROWTH}].max_heat"


# -- the scenario ----------------------------------------------------------------------
def expected_weight(reg, p, pid, asset):
    """Weight of ``asset`` after ``p``'s lines, all valued at the closes of ``p.as_of``."""
    pos = reg.positions(pid)
    prices = {a: last(reg.market, a, p.as_of) for a in reg.market.indexes["asset"]}
    after = dict(pos.quantities)
    cash = pos.cash
    for t in p.trades:
        after[t.asset] = after.get(t.asset, 0.0) + t.quantity
        cash -= t.quantity * t.price + t.estimated_cost
    total = cash + sum(q * prices[a] for a, q in after.items())
    return after[asset] * prices[asset] / total


TARGET = {"AAPL": 0.47, "MSFT": 0.2, "HD": 0.15, "UNH": 0.1}


def test_a_47_percent_target_under_a_25_percent_limit_is_refused_at_creation(reg):
    p = propose_rebalance(reg.as_user("alice"), GROWTH, target_weights=TARGET)
    assert p.trade(GROWTH, "AAPL").quantity > 0
    before = reg.store.dump()
    with pytest.raises(LimitBreachError) as err:
        ProposalBook(reg.as_user("alice")).propose(p)
    e = err.value
    assert (e.limit, e.field, e.item, e.portfolio, e.stage, e.hard) == (
        "max_position_weight", "max_position_weight", "AAPL", GROWTH, "proposal", True)
    assert e.threshold == 0.25
    assert e.value == pytest.approx(expected_weight(reg, p, GROWTH, "AAPL"), rel=1e-12)
    assert e.value == pytest.approx(0.47, abs=0.005)
    assert "AAPL" in str(e) and "0.25" in str(e)
    assert isinstance(e, PmkitError) and isinstance(e, ValidationError)
    assert reg.store.dump() == before
    with pytest.raises(NotFoundError):  # nothing stored: nothing to approve, never filled
        ProposalBook(reg.as_user("bob")).approve(p.id)


def test_a_limit_lowered_after_creation_refuses_the_approval_and_nothing_fills(reg):
    reg.set_config(GROWTH, {"max_position_weight": 0.5})
    p = propose_rebalance(reg.as_user("alice"), GROWTH, target_weights=TARGET)
    ProposalBook(reg.as_user("alice")).propose(p)
    reg.set_config(GROWTH, {"max_position_weight": 0.25})
    before = reg.store.dump()
    with pytest.raises(LimitBreachError) as err:
        ProposalBook(reg.as_user("bob")).approve(p.id)
    assert (err.value.limit, err.value.stage, err.value.threshold) == (
        "max_position_weight", "approval", 0.25)
    assert err.value.value == pytest.approx(expected_weight(reg, p, GROWTH, "AAPL"), rel=1e-12)
    assert reg.store.dump() == before
    assert ProposalBook(reg.as_user("bob")).get(p.id).state == S.PROPOSED


def test_a_limit_lowered_after_approval_refuses_the_submission(reg):
    reg.set_config(GROWTH, {"max_position_weight": 0.5})
    p = propose_rebalance(reg.as_user("alice"), GROWTH, target_weights=TARGET)
    ProposalBook(reg.as_user("alice")).propose(p)
    ProposalBook(reg.as_user("bob")).approve(p.id)
    reg.set_config(GROWTH, {"max_position_weight": 0.25})
    before = reg.store.dump()
    with pytest.raises(LimitBreachError) as err:
        ProposalBook(reg.as_user("alice")).submit(p.id, PaperBroker(reg.as_user("alice")))
    assert (err.value.limit, err.value.stage, err.value.item) == (
        "max_position_weight", "order", "AAPL")
    assert reg.store.dump() == before


def test_a_limit_lowered_after_submission_refuses_the_fill(reg):
    reg.set_config(GROWTH, {"max_position_weight": 0.5})
    alice = reg.as_user("alice")
    p = propose_rebalance(alice, GROWTH, target_weights=TARGET)
    ProposalBook(alice).propose(p)
    ProposalBook(reg.as_user("bob")).approve(p.id)
    paper = PaperBroker(alice)
    ProposalBook(alice).submit(p.id, paper)
    reg.set_config(GROWTH, {"max_position_weight": 0.25})
    held = reg.positions(GROWTH).quantities["AAPL"]
    [aapl] = [o.id for o in ProposalBook(alice).orders(p.id) if o.asset == "AAPL"]
    step = paper.step(pd.Timestamp(p.as_of))
    assert aapl not in {f.order_id for f in step}
    [failure] = step.failures
    assert failure.order_id == aapl
    assert (failure.error, failure.field) == ("LimitBreachError", "max_position_weight")
    assert reg.positions(GROWTH).quantities["AAPL"] == held  # never filled
    # the sales reduce positions: they fill
    assert all(f.quantity < 0 for f in step) and step


# -- each limit refuses a booked trade, naming limit, value and threshold -----------------------
def _gross(reg, pid):
    pos = reg.positions(pid)
    return sum(abs(q) * last(reg.market, a) for a, q in pos.quantities.items())


def _var_after(reg, pid, asset, q, confidence):
    """VaR of the weights after buying ``q`` ``asset`` at its close, via risk_snapshot."""
    m = reg.market
    pos = reg.positions(pid)
    after = dict(pos.quantities)
    after[asset] = after.get(asset, 0.0) + q
    total = nav(reg, pid)
    w = {a: x * last(m, a) / total for a, x in after.items() if x}
    window = simple_returns(m).isel(time=slice(-252, None))
    return risk_snapshot(w, window, m, confidence=confidence).var, w


CASES = {
    "max_position_weight": ("KO", 0.08, 0.05, lambda reg, q, p: q * p / nav(reg, GROWTH)),
    "max_sector_weight": ("KO", 0.08, 0.05, lambda reg, q, p: q * p / nav(reg, GROWTH)),
    "max_leverage": ("KO", 0.05, None,
                     lambda reg, q, p: (_gross(reg, GROWTH) + q * p) / nav(reg, GROWTH)),
    "max_net_leverage": ("KO", 0.05, None,
                         lambda reg, q, p: (_gross(reg, GROWTH) + q * p) / nav(reg, GROWTH)),
    "max_order_value": ("KO", 0.05, 10_000.0, lambda reg, q, p: q * p),
}


@pytest.mark.parametrize("key", list(CASES))
def test_each_limit_refuses_a_trade_with_its_value_and_threshold(reg, key):
    asset, fraction, threshold, expected = CASES[key]
    p = last(reg.market, asset)
    q = float(math.floor(fraction * nav(reg, GROWTH) / p))
    value = expected(reg, q, p)
    if threshold is None:  # between before and after: only the trade takes it over
        threshold = round((_gross(reg, GROWTH) / nav(reg, GROWTH) + value) / 2, 4)
    reg.set_config(GROWTH, {key: threshold})
    before = reg.store.dump()
    with pytest.raises(LimitBreachError) as err:
        reg.as_user("alice").record_trade(asset, q, p, portfolio=GROWTH)
    e = err.value
    assert (e.limit, e.field, e.threshold, e.stage, e.portfolio) == (
        key, key, threshold, "trade", GROWTH)
    assert e.value == pytest.approx(value, rel=1e-12)
    assert reg.store.dump() == before


def test_var_limit_refuses_a_trade_that_raises_the_historical_var(reg):
    q = 400.0
    conf = reg.resolve_config(GROWTH)["var_confidence"]  # the demo's 0.99
    after, _ = _var_after(reg, GROWTH, "AAPL", q, conf)
    now, _ = _var_after(reg, GROWTH, "AAPL", 0.0, conf)
    assert after > now  # more AAPL, more loss at the tail
    reg.set_config(GROWTH, {"max_var": round(now, 6), "max_position_weight": 0.5})
    before = reg.store.dump()
    with pytest.raises(LimitBreachError) as err:
        reg.as_user("alice").record_trade("AAPL", q, last(reg.market, "AAPL"), portfolio=GROWTH)
    assert (err.value.limit, err.value.threshold) == ("max_var", round(now, 6))
    assert err.value.value == pytest.approx(after, rel=1e-9)
    assert err.value.breaches[0].before == pytest.approx(now, rel=1e-9)
    assert reg.store.dump() == before
    # a sale of AAPL only reduces: allowed although VaR stays above the limit
    reg.set_config(GROWTH, {"max_var": now / 2})
    reg.as_user("alice").record_trade("AAPL", -q, last(reg.market, "AAPL"), portfolio=GROWTH)


def test_restricted_assets_refuse_purchases_not_sales(reg):
    reg.set_config(GROWTH, {"restricted_assets": ["KO", "MSFT"]})
    alice = reg.as_user("alice")
    before = reg.store.dump()
    with pytest.raises(LimitBreachError) as err:
        alice.record_trade("KO", 10.0, last(reg.market, "KO"), portfolio=GROWTH)
    assert (err.value.limit, err.value.value, err.value.threshold, err.value.item) == (
        "restricted_assets", 10.0, 0.0, "KO")
    assert reg.store.dump() == before
    alice.record_trade("MSFT", -10.0, last(reg.market, "MSFT"), portfolio=GROWTH)  # reduces


def test_participation_against_the_average_daily_volume(reg):
    reg.set_config(GROWTH, {"max_participation": 0.1, "adv_window": 20})
    p = last(reg.market, "KO")
    # the bundled market has no volume: the limit cannot be measured, and it refuses
    with pytest.raises(LimitBreachError) as err:
        reg.as_user("alice").record_trade("KO", 10.0, p, portfolio=GROWTH)
    assert err.value.limit == "max_participation" and math.isnan(err.value.value)
    assert "no volume" in str(err.value)
    # with volumes: ADV = mean of the last 20 days' volume
    m = reg.market
    vol = np.full((m.sizes["asset"], m.sizes["time"]), 4_000.0)
    vol[:, -10:] = 6_000.0
    market = m.assign(volume=(("asset", "time"), vol))
    withvol = Registry(reg.store, user="alice", market=market)
    adv = (10 * 4_000.0 + 10 * 6_000.0) / 20
    withvol.record_trade("KO", 0.1 * adv, p, portfolio=GROWTH)  # 10 % of ADV: at the limit
    before = reg.store.dump()
    with pytest.raises(LimitBreachError) as err:
        withvol.record_trade("KO", 600.0, p, portfolio=GROWTH)
    assert err.value.value == pytest.approx(600.0 / adv) and err.value.threshold == 0.1
    assert reg.store.dump() == before


def test_cash_and_margin_are_checked_before_booking_too(reg):
    cash = reg.positions(GROWTH).cash
    p = last(reg.market, "KO")
    big = propose_rebalance(reg.as_user("alice"), GROWTH, target_weights=TARGET)
    buy = big.with_changes(trades=[t for t in big.trades if t.quantity > 0])  # no sales
    assert sum(t.quantity * t.price for t in buy.trades) > cash
    before = reg.store.dump()
    with pytest.raises(InsufficientCashError):
        ProposalBook(reg.as_user("alice")).propose(buy)
    with pytest.raises(InsufficientCashError):
        reg.as_user("alice").record_trade("KO", math.ceil(cash / p) + 1.0, p, portfolio=GROWTH)
    assert reg.store.dump() == before


def test_a_reducing_trade_is_allowed_while_over_a_limit(reg):
    reg.set_config(GROWTH, {"max_position_weight": 0.10})
    alice = reg.as_user("alice")
    m = reg.market
    w = reg.positions(GROWTH).quantities["MSFT"] * last(m, "MSFT") / nav(reg, GROWTH)
    assert w > 0.10  # MSFT is over the lowered limit
    alice.record_trade("MSFT", -100.0, last(m, "MSFT"), portfolio=GROWTH)
    assert reg.positions(GROWTH).quantities["MSFT"] * last(m, "MSFT") / nav(reg, GROWTH) > 0.10
    with pytest.raises(LimitBreachError):
        alice.record_trade("MSFT", 1.0, last(m, "MSFT"), portfolio=GROWTH)
    # a small purchase of another asset is not blamed for MSFT's weight
    alice.record_trade("KO", 100.0, last(m, "KO"), portfolio=GROWTH)


def test_a_registry_without_market_data_checks_what_needs_no_prices(tmp_path):
    reg = Registry(open_store(tmp_path / "s.sqlite"))
    reg.create_portfolio("desk/a", 1000.0)
    reg.set_config("desk/a", {"max_position_weight": 0.1, "restricted_assets": ["ZZZ"],
                              "max_order_value": 600.0})
    reg.record_trade("XYZ", 50.0, 10.0, portfolio="desk/a")  # 50 % of NAV: not measurable
    reg.record_cash(10_000.0, portfolio="desk/a")
    with pytest.raises(LimitBreachError) as err:
        reg.record_trade("ZZZ", 1.0, 10.0, portfolio="desk/a")
    assert err.value.limit == "restricted_assets"
    with pytest.raises(LimitBreachError) as err:
        reg.record_trade("XYZ", 70.0, 10.0, portfolio="desk/a")
    assert (err.value.limit, err.value.value) == ("max_order_value", 700.0)


# -- soft limits: a manager's override, with a reason, audited ----------------------------------
def test_soft_limit_needs_a_managers_override_through_the_whole_workflow(reg):
    reg.set_config(GROWTH, {"max_position_weight": 0.25, "soft_limits": ["max_position_weight"]})
    alice, bob = reg.as_user("alice"), reg.as_user("bob")
    p = propose_rebalance(alice, GROWTH, target_weights=TARGET)
    stored = ProposalBook(alice).propose(p)  # created; the breach is for the approver
    [pending] = stored.info["limit_breaches"][GROWTH]
    assert (pending["limit"], pending["item"], pending["hard"]) == (
        "max_position_weight", "AAPL", False)
    before = reg.store.dump()
    with pytest.raises(LimitBreachError) as err:  # no override: refused
        ProposalBook(bob).approve(p.id)
    assert err.value.hard is False and "override" in str(err.value)
    with pytest.raises(ValidationError):  # an override must say why
        ProposalBook(bob).approve(p.id, override=Override("  "))
    assert reg.store.dump() == before
    why = "mandate allows 50% in AAPL this quarter"
    approved = ProposalBook(bob).approve(p.id, override=Override(why))
    assert approved.state == S.APPROVED
    assert approved.info["override"] == {"reason": why, "by": "bob",
                                         "limits": ["max_position_weight"], "stage": "approval"}
    [audit] = audits(reg, GROWTH, "limit.override")
    assert audit.actor == "bob" and audit.after["reason"] == why and audit.after["by"] == "bob"
    assert audit.before[0]["limit"] == "max_position_weight"
    assert audit.before[0]["value"] == pytest.approx(expected_weight(reg, p, GROWTH, "AAPL"))
    # the trader submits and the fills go through under the approved override
    paper = PaperBroker(alice)
    ProposalBook(alice).submit(p.id, paper)
    assert all(o.info["override"]["by"] == "bob" for o in ProposalBook(alice).orders(p.id))
    step = paper.step(pd.Timestamp(p.as_of))
    assert step.failures == [] and ProposalBook(alice).get(p.id).state == S.FILLED
    uses = audits(reg, GROWTH, "limit.override")
    assert {a.after["used_at"] for a in uses} == {"approval", "order", "fill"}
    assert all(a.after["by"] == "bob" for a in uses)


def test_soft_limit_on_a_direct_trade_override_by_manager_only(reg):
    reg.set_config(GROWTH, {"max_position_weight": 0.05, "soft_limits": ["max_position_weight"]})
    p = last(reg.market, "KO")
    q = float(math.floor(0.08 * nav(reg, GROWTH) / p))
    before = reg.store.dump()
    with pytest.raises(LimitBreachError) as err:
        reg.as_user("bob").record_trade("KO", q, p, portfolio=GROWTH)
    assert err.value.hard is False
    with pytest.raises(PermissionDenied):  # a trader may not override
        reg.as_user("alice").record_trade("KO", q, p, portfolio=GROWTH,
                                          override=Override("I am sure"))
    with pytest.raises(ValidationError) as verr:  # nor name someone else as its author
        reg.as_user("alice").record_trade("KO", q, p, portfolio=GROWTH,
                                          override=Override("bob said so", by="bob"))
    assert verr.value.field == "override.by"
    assert reg.store.dump() == before
    reg.as_user("bob").record_trade("KO", q, p, portfolio=GROWTH,
                                    override=Override("client top-up into staples"))
    [audit] = audits(reg, GROWTH, "limit.override")
    assert (audit.actor, audit.after["reason"], audit.after["used_at"]) == (
        "bob", "client top-up into staples", "trade")
    assert audit.before[0]["value"] == pytest.approx(q * p / nav(reg, GROWTH), rel=1e-9)


def test_a_hard_limit_is_not_overridden(reg):
    reg.set_config(GROWTH, {"max_position_weight": 0.05})
    p = last(reg.market, "KO")
    q = float(math.floor(0.08 * nav(reg, GROWTH) / p))
    with pytest.raises(LimitBreachError) as err:
        reg.as_user("bob").record_trade("KO", q, p, portfolio=GROWTH, override=Override("pls"))
    assert err.value.hard is True


# -- the coordinator: NAV at decision, zero size, limits before queueing ------------------------
def expected_units(nav_, alloc, entry, stop, limit, risk_fraction=0.01):
    units = min(risk_fraction * alloc * nav_ / abs(entry - stop), limit * nav_ / entry)
    return float(math.floor(units * (1 + 1e-12)))


def test_a_signal_after_a_90_percent_withdrawal_is_sized_on_the_new_nav(reg):
    coord = StrategyCoordinator(reg.as_user("alice"))
    first = coord.process_signal(sig("KO", 60.0, 57.0, portfolio=CASH))
    assert first.nav == pytest.approx(1_000_000.0)
    assert first.size == expected_units(1_000_000.0, 0.5, 60.0, 57.0, 0.30)
    reg.as_user("alice").record_cash(-900_000.0, portfolio=CASH)
    second = coord.process_signal(sig("PEP", 180.0, 171.0, portfolio=CASH))
    assert second.nav == pytest.approx(100_000.0) == nav(reg, CASH)
    new = expected_units(100_000.0, 0.5, 180.0, 171.0, 0.30)
    old = expected_units(1_000_000.0, 0.5, 180.0, 171.0, 0.30)
    assert second.size == new and new < old / 5
    assert second.size * 180.0 / nav(reg, CASH) <= 0.30


def test_held_units_count_against_the_position_limit_when_sizing(reg):
    coord = StrategyCoordinator(reg.as_user("alice"), risk_fraction=1.0)
    price = last(reg.market, "MSFT")
    held = reg.positions(GROWTH).quantities["MSFT"]
    s = coord.process_signal(sig("MSFT", price, price - 5.0))
    room = 0.25 * nav(reg, GROWTH) / price - held  # entry at the close: NAV unchanged
    assert s.status is SignalState.QUEUED and s.size == math.floor(room)
    assert (held + s.size) * price / nav(reg, GROWTH) <= 0.25


def test_zero_size_signals_are_rejected_not_queued(reg):
    coord = StrategyCoordinator(reg.as_user("alice"))
    reg.as_user("alice").record_cash(-999_000.0, portfolio=CASH)  # NAV 1,000: budget 5
    with pytest.raises(ValidationError) as err:
        coord.process_signal(sig("LLY", 360.0, 350.0, portfolio=CASH))  # 0.5 unit < 1 lot
    assert err.value.field == "size" and "not queued" in str(err.value)
    [rec] = [r for r in reg.store.list("signal") if r.data["symbol"] == "LLY"]
    assert (rec.status, rec.data["reason"], rec.data["size"]) == ("rejected", "size", 0.0)
    assert coord.pending == 0 and coord.queued_signals() == []
    assert asyncio.run(coord.get_next_signal(timeout=0)) is None
    assert coord.get_processing_stats()["rejections"] == {"size": 1}


def test_no_room_under_the_position_limit_refuses_the_signal(reg):
    reg.set_config(GROWTH, {"max_position_weight": 0.20})
    coord = StrategyCoordinator(reg.as_user("alice"))
    price = last(reg.market, "MSFT")
    ledger = reg.store.dump()["ledger"]
    with pytest.raises(LimitBreachError) as err:
        coord.process_signal(sig("MSFT", price, price - 5.0))
    held = reg.positions(GROWTH).quantities["MSFT"]
    assert (err.value.limit, err.value.threshold, err.value.stage) == (
        "max_position_weight", 0.20, "signal")
    assert err.value.value == pytest.approx((held + 1) * price / nav(reg, GROWTH))
    assert coord.pending == 0 and reg.store.dump()["ledger"] == ledger
    [rec] = reg.store.list("signal")
    assert (rec.status, rec.data["reason"]) == ("rejected", "max_position_weight")


def test_signal_limits_hard_soft_and_the_override(reg):
    reg.set_config(CASH, {"max_sector_weight": 0.05})
    coord = StrategyCoordinator(reg.as_user("alice"))
    s = sig("KO", 60.0, 57.0, portfolio=CASH)
    units = expected_units(1_000_000.0, 0.5, 60.0, 57.0, 0.30)
    with pytest.raises(LimitBreachError) as err:
        coord.process_signal(s)
    assert err.value.limit == "max_sector_weight" and err.value.item == "Consumer Staples"
    assert err.value.value == pytest.approx(units * 60.0 / 1_000_000.0)
    reg.set_config(CASH, {"soft_limits": ["max_sector_weight"]})
    before = reg.store.dump()
    with pytest.raises(PermissionDenied):  # alice trades, she may not override
        coord.process_signal(s, override=Override("staples are cheap"))
    assert reg.store.dump() == before
    ok = coord.as_user("bob").process_signal(s, override=Override("staples are cheap"))
    assert ok.status is SignalState.QUEUED and ok.size == units
    [audit] = audits(reg, CASH, "limit.override")
    assert audit.actor == "bob" and audit.after["used_at"] == "signal"


def test_heat_counts_open_risk_to_the_signals_stops(reg):
    coord = StrategyCoordinator(reg.as_user("alice"))
    first = coord.process_signal(sig("KO", 60.0, 57.0, portfolio=CASH))
    # booked as the signal said: the position's stop is the signal's
    reg.as_user("alice").record_trade("KO", first.size, 60.0, portfolio=CASH,
                                      ts=datetime(2022, 12, 28, 16))
    heat_now = first.size * abs(last(reg.market, "KO") - 57.0) / nav(reg, CASH)
    second = sig("PEP", 180.0, 171.0, portfolio=CASH)
    units = expected_units(nav(reg, CASH), 0.5, 180.0, 171.0, 0.30)
    heat_after = heat_now + units * 9.0 / nav(reg, CASH)
    reg.set_config(CASH, {"max_heat": round((heat_now + heat_after) / 2, 6)})
    with pytest.raises(LimitBreachError) as err:
        coord.process_signal(second)
    assert err.value.limit == "max_heat"
    assert err.value.value == pytest.approx(heat_after, rel=1e-9)
    assert err.value.breaches[0].before == pytest.approx(heat_now, rel=1e-9)


# -- the risk trigger fires on VaR and heat ------------------------------------------------------
def test_risk_trigger_fires_on_var(reg):
    conf = reg.resolve_config(GROWTH)["var_confidence"]
    now, _ = _var_after(reg, GROWTH, "AAPL", 0.0, conf)
    manager = StrategyManager(reg.as_user("bob"), GROWTH)
    reg.set_config(GROWTH, {"max_var": round(now * 1.01, 6)})
    quiet = manager.check_trigger("risk")
    assert not quiet.fired
    reg.set_config(GROWTH, {"max_var": round(now * 0.99, 6)})
    fired = manager.check_trigger("risk")
    assert fired.fired and "var" in fired.reason
    [b] = fired.details["breaches"]
    assert b["limit"] == "var" and b["value"] == pytest.approx(now, rel=1e-9)
    assert b["threshold"] == round(now * 0.99, 6)


def test_risk_trigger_fires_on_heat(reg):
    coord = StrategyCoordinator(reg.as_user("alice"))
    aapl = last(reg.market, "AAPL")
    s = coord.process_signal(sig("AAPL", aapl, aapl - 10.0))
    assert s.status is SignalState.QUEUED
    held = reg.positions(GROWTH).quantities["AAPL"]
    heat = held * 10.0 / nav(reg, GROWTH)  # AAPL's stop is known; the others' are not
    manager = StrategyManager(reg.as_user("bob"), GROWTH)
    reg.set_config(GROWTH, {"max_heat": round(heat * 0.9, 6)})
    with pytest.warns(UserWarning, match="no open risk for"):
        fired = manager.check_trigger("risk")
    assert fired.fired
    [b] = fired.details["breaches"]
    assert b["limit"] == "heat" and b["value"] == pytest.approx(heat, rel=1e-9)


def test_a_target_at_the_limit_is_planned_within_it_after_costs(reg):
    alice = reg.as_user("alice")
    p = propose_rebalance(alice, GROWTH, target_weights={"AAPL": 0.25, "MSFT": 0.25, "KO": 0.2})
    assert p.target_weights[GROWTH]["AAPL"] == 0.25  # kept as asked
    trims = p.info["limit_trims"][GROWTH]
    assert set(trims) >= {"AAPL"} and all(t["planned"] < 0.25 for t in trims.values())
    ProposalBook(alice).propose(p)  # not refused: costs do not lift it over the limit
    assert expected_weight(reg, p, GROWTH, "AAPL") <= 0.25
    assert expected_weight(reg, p, GROWTH, "AAPL") == pytest.approx(0.25, abs=2e-4)


def test_a_stand_alone_order_carries_its_override_to_the_fill(reg):
    from pmkit.execution import Order, new_order_id

    reg.set_config(GROWTH, {"max_order_value": 10_000.0, "soft_limits": ["max_order_value"]})
    p = last(reg.market, "KO")
    order = Order(new_order_id(), GROWTH, "KO", 500.0, p, "paper")
    alice, bob = reg.as_user("alice"), reg.as_user("bob")
    before = reg.store.dump()
    with pytest.raises(LimitBreachError) as err:  # 500 x close > 10,000
        PaperBroker(alice).submit([order])
    assert (err.value.limit, err.value.stage) == ("max_order_value", "order")
    assert err.value.value == pytest.approx(500 * p)
    forged = order.with_changes(info={"override": {"reason": "x", "by": "bob"}})
    with pytest.raises(ValidationError) as verr:  # only pmkit sets an order's override
        PaperBroker(alice).submit([forged])
    assert verr.value.field == "info.override"
    assert reg.store.dump() == before
    [stored] = PaperBroker(bob).submit([order], override=Override("block trade agreed"))
    assert stored.info["override"]["by"] == "bob"
    step = PaperBroker(alice).step(reg.market.indexes["time"][-1])
    assert step.failures == [] and [f.quantity for f in step] == [500.0]
    assert [a.after["used_at"] for a in audits(reg, GROWTH, "limit.override")] == [
        "order", "fill"]
