"""Fills booked while streaming reach the live values through the same event path."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("websockets")

from pmkit.datasets import load_market
from pmkit.demo import open_demo
from pmkit.execution import PaperBroker
from pmkit.execution.broker import Order
from pmkit.stream.live import LiveStream
from pmkit.stream.server import FeedServer
from pmkit.stream.settings import StreamSettings

PID = "client_a/growth"
SYMBOLS = ["AAPL", "MSFT", "AMD", "HD", "UNH", "KO"]


def test_paper_fills_update_live_values_while_streaming():
    market = load_market()
    reg = open_demo()
    feed = FeedServer(market, symbols=SYMBOLS, rate=2_000.0, batch=10, start="2022-11-01",
                      steps_per_day=40, heartbeat_interval=0.2).start_in_thread()
    settings = StreamSettings(flush_interval=0.01, heartbeat_timeout=2.0, risk_interval=60.0)
    stream = LiveStream(reg, url=feed.url, settings=settings, symbols=SYMBOLS,
                        metrics_interval=None)
    seen: list[dict] = []
    lock = threading.Lock()

    def on_event(e):
        with lock:
            seen.append(dict(e.payload))

    reg.bus.subscribe("stream.valuation", on_event, portfolio=PID)
    other: list = []
    reg.bus.subscribe("stream.valuation", other.append, portfolio="client_b/balanced")
    stream.start_in_thread()
    try:
        stream.wait_for(lambda: stream.metrics()["batches"] >= 3, timeout=20)
        held = reg.store.positions(PID).quantities.get("KO", 0.0)
        # a trader's order, filled by the paper broker at the last close: one ledger
        # transaction, whose event the live valuation picks up
        alice = reg.as_user("alice")
        broker = PaperBroker(alice)
        t = market.indexes["time"][-1]
        broker.submit([Order("ord-live-1", PID, "KO", 100.0, float(market["close"].sel(
            asset="KO", time=t)), "paper")])
        fills = broker.step(t)
        assert len(fills) == 1
        stream.wait_for(lambda: any(p.get("source") == "ledger" for p in list(seen)), timeout=10)
        assert stream.valuation.holdings().loc[PID, "KO"] == pytest.approx(held + 100.0)
        stream.wait_for(lambda: stream.metrics()["batches"] >= 6, timeout=20)
    finally:
        stream.stop()
        feed.stop_thread()
    # after the stream: live values == quantity x last applied price + cash, from the ledger
    pos = reg.store.positions(PID)
    prices = stream.valuation.prices()
    want = pos.cash + sum(q * prices[a] for a, q in pos.quantities.items())
    assert stream.valuation.values()[PID] == pytest.approx(want, rel=1e-12)
    assert other == []  # client_b holds none of the streamed symbols' fills
