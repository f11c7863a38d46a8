"""Portfolio-routed events: routing, group propagation, priority, failures, asyncio."""

from __future__ import annotations

import asyncio

import pytest

from pmkit.errors import ValidationError
from pmkit.events import HANDLER_ERROR, Event, EventBus
from pmkit.registry import Registry


@pytest.fixture
def reg():
    r = Registry.open(":memory:")
    for pid in ("a/x", "a/y", "b/z"):
        r.create_portfolio(pid, 100.0)
    r.create_group("a", ["a/x", "a/y"])
    r.create_group("top", ["a", "b/z"])
    return r


def _collect(bus, **kw):
    got: list[Event] = []
    bus.subscribe(kw.pop("pattern", "*"), got.append, **kw)
    return got


def test_portfolio_subscriber_never_sees_other_portfolios(reg):
    got_x = _collect(reg.bus, portfolio="a/x")
    got_z = _collect(reg.bus, portfolio="b/z")
    reg.record_cash(5.0, portfolio="a/x")
    reg.record_cash(7.0, portfolio="b/z")
    reg.deactivate("a/y")
    assert [(e.topic, e.portfolio) for e in got_x] == [("ledger.cash", "a/x")]
    assert [(e.topic, e.portfolio) for e in got_z] == [("ledger.cash", "b/z")]
    assert got_x[0].payload["amount"] == 5.0 and got_x[0].actor == "system"


def test_group_subscriber_receives_members_events_through_nesting(reg):
    got_a = _collect(reg.bus, group="a")
    got_top = _collect(reg.bus, group="top")
    reg.record_cash(1.0, portfolio="a/x")
    reg.record_cash(2.0, portfolio="b/z")
    reg.set_config("a", {"k": 1})
    assert [e.portfolio or e.group for e in got_a] == ["a/x", "a"]
    assert [e.portfolio or e.group for e in got_top] == ["a/x", "b/z", "a"]


def test_topic_patterns_and_global_subscribers(reg):
    ledger = _collect(reg.bus, pattern="ledger.*")
    everything = _collect(reg.bus)
    reg.record_cash(1.0, portfolio="a/x")
    reg.deactivate("a/x")
    assert [e.topic for e in ledger] == ["ledger.cash"]
    assert [e.topic for e in everything] == ["ledger.cash", "portfolio.inactive"]


def test_priority_orders_delivery_ties_in_subscription_order():
    bus = EventBus()
    order: list[str] = []
    bus.subscribe("t", lambda e: order.append("low"), priority=-1)
    bus.subscribe("t", lambda e: order.append("mid1"))
    bus.subscribe("t", lambda e: order.append("high"), priority=10)
    bus.subscribe("t", lambda e: order.append("mid2"))
    bus.publish(Event("t"))
    assert order == ["high", "mid1", "mid2", "low"]


def test_failing_handler_does_not_stop_others_and_is_reported():
    bus = EventBus()
    seen: list[str] = []
    errors: list[Event] = []

    def boom(e):
        raise RuntimeError("kaput")

    bus.subscribe("t", boom, priority=5)
    bus.subscribe("t", lambda e: seen.append(e.topic))
    bus.subscribe(HANDLER_ERROR, errors.append)
    report = bus.publish(Event("t", portfolio="p"))
    assert seen == ["t"]
    assert report.delivered == 1 and len(report.errors) == 1
    (err,) = errors
    assert err.portfolio == "p" and err.payload["topic"] == "t"
    assert "kaput" in err.payload["error"] and "boom" in err.payload["handler"]


def test_failing_error_handler_does_not_loop():
    bus = EventBus()
    calls = []

    def bad_error_handler(e):
        calls.append(e)
        raise ValueError("also broken")

    bus.subscribe("t", lambda e: 1 / 0)
    bus.subscribe(HANDLER_ERROR, bad_error_handler)
    bus.publish(Event("t"))
    assert len(calls) == 1


def test_async_delivery_awaits_in_priority_order_and_reports_failures():
    bus = EventBus()
    order: list[str] = []
    errors: list[Event] = []

    async def slow(e):
        await asyncio.sleep(0.01)
        order.append("slow-high")

    async def failing(e):
        raise KeyError("x")

    bus.subscribe("t", slow, priority=2)
    bus.subscribe("t", failing, priority=1)
    bus.subscribe("t", lambda e: order.append("sync-low"))
    bus.subscribe(HANDLER_ERROR, errors.append)
    report = asyncio.run(bus.publish_async(Event("t")))
    assert order == ["slow-high", "sync-low"]
    assert report.delivered == 2 and len(errors) == 1


def test_sync_publish_runs_coroutines_without_a_loop_and_schedules_them_in_one():
    bus = EventBus()
    got: list[str] = []

    async def handler(e):
        got.append(e.topic)

    bus.subscribe("*", handler)
    bus.publish(Event("no-loop"))
    assert got == ["no-loop"]

    async def main():
        bus.publish(Event("in-loop"))
        assert got == ["no-loop"]  # scheduled, not yet run
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    assert got == ["no-loop", "in-loop"]


def test_isolation_off_lets_portfolio_subscribers_see_everything():
    r = Registry.from_config(
        {"portfolios": {"p": {"name": "P"}, "q": {"name": "Q"}}, "isolation": {"events": False}}
    )
    got = _collect(r.bus, portfolio="p")
    r.deactivate("q")
    assert [e.portfolio for e in got] == ["q"]


def test_unsubscribe_and_bad_subscription():
    bus = EventBus()
    got: list[Event] = []
    sub = bus.subscribe("*", got.append)
    sub.cancel()
    bus.publish(Event("t"))
    assert got == []
    with pytest.raises(ValidationError, match="not both"):
        bus.subscribe("*", got.append, portfolio="p", group="g")


def test_no_events_for_a_rolled_back_mutation(reg):
    got = _collect(reg.bus)
    with pytest.raises(ValidationError):
        reg.record_trade("AAPL", 1.0, -5.0, portfolio="a/x")
    assert got == []
