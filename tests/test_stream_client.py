"""The streaming client and the live stream, against the real feed server on loopback.

The feed replays real closes from a few days before the end of the data, so
every stream *ends*: each symbol's last tick is its last real close, exactly.
That gives the tests a closed-form final state (the market's last closes) and a
closed-form tick count (symbols x trading days after ``start`` x
``steps_per_day``), independent of the client, the server's timing and its
faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("websockets")

from pmkit.datasets import load_market
from pmkit.demo import open_demo
from pmkit.errors import UnknownAssetError
from pmkit.stream.client import StreamClient, StreamError, backoff_delay
from pmkit.stream.protocol import (
    batch_message,
    decode,
    dumps,
    pmkit_adapter,
    snapshot_message,
)
from pmkit.stream.server import Faults, FeedServer
from pmkit.stream.settings import StreamSettings

START = "2022-12-20"
STEPS = 40
SYMBOLS = ["AAPL", "MSFT", "KO", "JPM"]


# -- fixtures and helpers --------------------------------------------------------------------
@pytest.fixture(scope="module")
def market():
    return load_market()


@pytest.fixture(scope="module")
def registry():
    return open_demo()


@pytest.fixture
def feed(market):
    """Factory of servers started in a thread (all stopped at teardown)."""
    started: list[FeedServer] = []

    def make(symbols=SYMBOLS, **kw) -> FeedServer:
        kw.setdefault("start", START)
        kw.setdefault("steps_per_day", STEPS)
        kw.setdefault("heartbeat_interval", 0.2)
        srv = FeedServer(market, symbols=symbols, **kw).start_in_thread()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop_thread()


def last_closes(market, symbols) -> dict[str, float]:
    """Each symbol's last real close (where every replay ends), read from the data directly."""
    close = market["close"].sel(asset=list(symbols)).to_pandas()
    close = close if close.shape[0] == len(symbols) else close.T
    return {s: float(close.loc[s].dropna().iloc[-1]) for s in symbols}


def replay_ticks(market, symbols, start=START, steps=STEPS) -> int:
    """Ticks a full replay sends: one bridge of ``steps`` per trading day after ``start``."""
    total = 0
    for s in symbols:
        c = market["close"].sel(asset=s).to_series()
        days = c[(c.index >= start) & c.notna()].index
        total += (len(days) - 1) * steps
    return total


def fast(**kw) -> StreamSettings:
    base = dict(
        flush_interval=0.01, flush_size=500, heartbeat_timeout=1.0, reconnect_initial=0.02,
        reconnect_max=0.1, reconnect_jitter=0.2, max_reconnects=50, connect_timeout=1.0,
        ui_max_rate=50.0, risk_interval=0.2,
    )
    base.update(kw)
    return StreamSettings(**base)


class Recorder:
    """on_block / on_snapshot sink: the prices a consumer would have applied."""

    def __init__(self):
        self.prices: dict[str, float] = {}
        self.applied = 0
        self.seqs: list[int] = []

    def block(self, b):
        self.applied += len(b)
        self.seqs.extend(range(b.seq, b.seq + len(b)))
        for s, p in zip(b.symbols, b.prices, strict=True):
            self.prices[s] = float(p)

    def snapshot(self, b):
        for s, p in zip(b.symbols, b.prices, strict=True):
            self.prices[s] = float(p)


async def stream_until(client: StreamClient, done, timeout: float = 15.0):
    """Run ``client`` until ``done()``; stop it; bounded by ``timeout`` seconds."""
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        deadline = time.monotonic() + timeout
        while not done():
            if task.done():
                task.result()  # raise what ended it
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done within {timeout} s: {client.metrics.as_dict()}")
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def independent_values(registry, pids, prices: dict[str, float]) -> dict[str, float]:
    """sum(quantity x price) + cash per portfolio, straight from the ledger replay."""
    out = {}
    for pid in pids:
        pos = registry.positions(pid)
        out[pid] = sum(q * prices[a] for a, q in pos.quantities.items() if q != 0) + pos.cash
    return out


# -- backoff ---------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(1, 200),
    initial=st.floats(0.001, 2.0),
    ratio=st.floats(1.0, 100.0),
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32),
)
def test_backoff_stays_within_its_bounds(attempt, initial, ratio, jitter, seed):
    s = StreamSettings(reconnect_initial=initial, reconnect_max=initial * ratio,
                       reconnect_jitter=jitter)
    d = backoff_delay(attempt, s, random.Random(seed))
    assert initial * (1 - jitter) - 1e-12 <= d <= s.reconnect_max + 1e-12
    # without jitter it is the capped doubling, exactly
    s0 = s.with_changes(reconnect_jitter=0.0)
    expected = min(initial * 2.0 ** (attempt - 1), s.reconnect_max)
    assert backoff_delay(attempt, s0, random.Random(seed)) == pytest.approx(expected)


# -- the client alone ------------------------------------------------------------------------
def test_faults_are_counted_and_skipped_and_each_tick_applied_once(feed, market):
    srv = feed(rate=4000, faults=Faults(malformed_every=7, duplicate_every=5, reorder_every=11))
    total = replay_ticks(market, SYMBOLS)
    rec = Recorder()
    client = StreamClient(pmkit_adapter(srv.url), SYMBOLS, fast(), rec.block,
                          on_snapshot=rec.snapshot)
    asyncio.run(stream_until(client, lambda: rec.applied >= total))
    m = client.metrics.as_dict()
    # every produced tick arrived exactly once, in sequence, despite the faults
    assert rec.applied == total == srv.stats["ticks_sent"]
    assert rec.seqs == list(range(1, total + 1))
    assert m["ticks_applied"] == total
    # each injected fault was seen and counted as what it is
    assert m["malformed"] == srv.stats["malformed"] > 0
    assert m["duplicates"] == srv.stats["duplicates"] > 0
    assert m["out_of_order"] == srv.stats["reordered"] > 0
    assert m["ticks_received"] == total + m["ticks_skipped"]
    assert m["gaps"] == 0
    assert rec.prices == last_closes(market, SYMBOLS) == srv.prices()


def test_gaps_trigger_a_snapshot_resync_and_the_state_ends_right(feed, market):
    srv = feed(rate=4000, faults=Faults(gap_every=9, duplicate_every=4))
    rec = Recorder()
    client = StreamClient(pmkit_adapter(srv.url), SYMBOLS, fast(), rec.block,
                          on_snapshot=rec.snapshot)
    closes = last_closes(market, SYMBOLS)
    total = replay_ticks(market, SYMBOLS)

    def done():
        sent = srv.stats["ticks_sent"] + srv.stats["ticks_dropped"]
        return sent >= total and rec.prices == closes and client.metrics.resyncs > 0

    asyncio.run(stream_until(client, done))
    m = client.metrics.as_dict()
    assert m["gaps"] >= 1 and m["resyncs"] >= 1
    assert m["snapshots"] >= 2  # the subscribe answer, then at least one resync
    # lost ticks are never invented: applied <= sent, and no sequence number twice
    assert rec.applied <= srv.stats["ticks_sent"]
    assert len(set(rec.seqs)) == len(rec.seqs)
    assert rec.seqs == sorted(rec.seqs)
    assert m["duplicates"] > 0 and m["ticks_applied"] == rec.applied
    assert rec.prices == closes == srv.prices()


def test_unknown_symbol_is_a_typed_error_at_once(feed):
    srv = feed(rate=100)
    client = StreamClient(pmkit_adapter(srv.url), ["AAPL", "NOPE", "ZZZ"], fast(),
                          lambda b: None)
    with pytest.raises(UnknownAssetError) as info:
        asyncio.run(asyncio.wait_for(client.run(asyncio.Event()), 10.0))
    assert info.value.field == "symbols"
    assert set(info.value.value) == {"NOPE", "ZZZ"}
    assert client.attempts == 1  # refused: not retried
    assert client.metrics.errors == 1


def test_gives_up_after_max_reconnects_with_no_server():
    port = free_port()  # nobody listens there
    s = fast(max_reconnects=4, reconnect_initial=0.01, reconnect_max=0.05, connect_timeout=1.0)
    client = StreamClient(pmkit_adapter(f"ws://127.0.0.1:{port}"), SYMBOLS, s, lambda b: None)
    with pytest.raises(StreamError) as info:
        # bounded in time: 4 x (connect_timeout + reconnect_max) is far under the 10 s
        # wait_for, which would raise TimeoutError (not StreamError) if the loop ran on
        asyncio.run(asyncio.wait_for(client.run(asyncio.Event()), 10.0))
    assert info.value.attempts == 4 == client.attempts
    assert client.metrics.connect_failures == 4


def test_heartbeat_timeout_forces_a_reconnect():
    """A server that answers the subscription, then goes silent without closing."""
    from websockets.asyncio.server import serve

    connections = []

    async def silent(ws):
        connections.append(ws)
        await ws.recv()  # the subscribe
        await ws.send(snapshot_message(0, ["AAPL"], [100.0 + len(connections)], time.time()))
        with contextlib.suppress(Exception):
            await ws.wait_closed()  # never another frame: no ticks, no heartbeats

    async def main():
        async with serve(silent, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            rec = Recorder()
            client = StreamClient(
                pmkit_adapter(f"ws://127.0.0.1:{port}"), ["AAPL"],
                fast(heartbeat_timeout=0.3), rec.block, on_snapshot=rec.snapshot,
            )
            await stream_until(client, lambda: client.metrics.reconnects >= 2, timeout=10.0)
            return client, rec

    client, rec = asyncio.run(main())
    m = client.metrics.as_dict()
    assert m["heartbeat_timeouts"] >= 2 and m["reconnects"] >= 2
    assert len(connections) >= 3
    assert m["snapshots"] >= 3  # every new session resubscribed and resynced
    assert rec.prices["AAPL"] > 100.0


def test_a_heartbeat_reveals_lost_ticks():
    """Ticks sent but lost are found by the heartbeat's seq, and resynced by a snapshot."""
    from websockets.asyncio.server import serve

    async def lossy(ws):
        await ws.recv()
        await ws.send(snapshot_message(0, ["AAPL"], [100.0], time.time()))
        # ticks 1..3 "were sent" but lost: only the heartbeat tells
        await ws.send(dumps({"type": "heartbeat", "seq": 3, "ts": time.time()}))
        req = await ws.recv()
        assert '"snapshot"' in req
        await ws.send(snapshot_message(3, ["AAPL"], [103.0], time.time()))
        await ws.send(dumps({"type": "tick", "seq": 4, "symbol": "AAPL", "price": 104.0,
                             "size": 1, "ts": time.time()}))
        with contextlib.suppress(Exception):
            await ws.wait_closed()

    async def main():
        async with serve(lossy, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            rec = Recorder()
            client = StreamClient(pmkit_adapter(f"ws://127.0.0.1:{port}"), ["AAPL"], fast(),
                                  rec.block, on_snapshot=rec.snapshot)
            await stream_until(client, lambda: rec.applied >= 1, timeout=10.0)
            return client, rec

    client, rec = asyncio.run(main())
    assert client.metrics.gaps == 1 and client.metrics.resyncs == 1
    assert rec.seqs == [4] and rec.prices == {"AAPL": 104.0}


# -- the live stream -------------------------------------------------------------------------
class Applied:
    """Wraps a LiveValuation: records applied prices, optionally sleeps per update (slow)."""

    def __init__(self, inner, delay: float = 0.0):
        self.inner = inner
        self.delay = delay
        self.updates = 0
        self.prices: dict[str, float] = {}

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def symbols(self):
        return self.inner.symbols

    def update(self, idx, prices, ts=None):
        if self.delay:
            time.sleep(self.delay)
        self.updates += 1
        for i, p in zip(np.asarray(idx).tolist(), np.asarray(prices).tolist(), strict=True):
            self.prices[self.inner.symbols[i]] = p
        return self.inner.update(idx, prices, ts)


def live_valuation(registry):
    lv = pytest.importorskip("pmkit.stream.valuation")
    return lv.LiveValuation(registry, at=START)


def assert_values_match(registry, val, prices):
    values = val.values()
    expected = independent_values(registry, list(values.index), prices)
    for pid, v in expected.items():
        assert values[pid] == pytest.approx(v, rel=1e-9, abs=1e-6)


def test_kill_and_restart_the_server_mid_stream(registry, market):
    from pmkit.stream.live import LiveStream

    val = Applied(live_valuation(registry))
    universe = list(val.symbols)
    closes = last_closes(market, universe)
    first = FeedServer(market, symbols=universe, start=START, steps_per_day=STEPS, rate=1500,
                       heartbeat_interval=0.2).start_in_thread()
    port = first.port
    stream = LiveStream(registry, url=first.url, valuation=val, settings=fast(), seed=1)
    second = None
    try:
        stream.start_in_thread()
        stream.wait_for(lambda: stream.metrics()["ticks_applied"] >= 200, 10.0)
        first.stop_thread()  # killed mid-stream: far from the end of the replay
        assert stream.metrics()["ticks_applied"] < replay_ticks(market, universe)
        time.sleep(0.3)
        second = FeedServer(market, symbols=universe, start=START, steps_per_day=STEPS,
                            rate=6000, heartbeat_interval=0.2, port=port).start_in_thread()
        stream.wait_for(lambda: stream.metrics()["reconnects"] >= 1, 10.0)
        # settled: the new replay ran to its end and the last flush went through
        stream.wait_for(lambda: stream.last_prices() == closes, 15.0)
    finally:
        stream.stop()
        if second is not None:
            second.stop_thread()
        first.stop_thread()
    assert stream.error is None
    m = stream.metrics()
    assert m["reconnects"] >= 1 and m["disconnects"] >= 1 and m["connects"] >= 2
    assert val.prices == stream.last_prices() == closes
    assert {s: second.prices()[s] for s in universe} == closes
    assert_values_match(registry, val, closes)
    assert m["batches"] == val.updates and m["latency_samples"] == m["batches"]
    assert 0 <= m["latency_p50_ms"] <= m["latency_p95_ms"] <= m["latency_p99_ms"]


def test_producer_ten_times_faster_than_the_consumer(registry, market):
    """A consumer sleeping 20 ms per update under a feed sending as fast as it can."""
    from pmkit.stream.live import LiveStream

    val = Applied(live_valuation(registry), delay=0.02)
    universe = list(val.symbols)
    closes = last_closes(market, universe)
    steps = 800
    total = replay_ticks(market, universe, steps=steps)
    srv = FeedServer(market, symbols=universe, start=START, steps_per_day=steps, rate=None,
                     batch=200, heartbeat_interval=0.2).start_in_thread()
    stream = LiveStream(registry, url=srv.url, valuation=val,
                        settings=fast(flush_size=50, heartbeat_timeout=3.0))
    # compile the valuation kernel for every change-vector size and import the risk checks
    # first: JIT caches and modules are one-off allocations, not the backlog measured here
    opening = val.inner.prices().to_numpy()
    for k in range(1, len(universe) + 1):
        val.inner.update(np.arange(k), opening[:k])
    val.inner.check_limits()
    tracemalloc.start()
    try:
        # what one decoded 200-tick frame costs, to size an unbounded queue of all of them
        frame = batch_message(1, [universe[i % len(universe)] for i in range(200)],
                              np.ones(200), np.ones(200), np.ones(200))
        before, _ = tracemalloc.get_traced_memory()
        held = decode(frame)
        queue_bytes = (tracemalloc.get_traced_memory()[0] - before) * (total // 200)
        del held
        base, _ = tracemalloc.get_traced_memory()
        stream.start_in_thread()
        peak_symbols = 0
        deadline = time.monotonic() + 30
        while stream.last_prices() != closes and time.monotonic() < deadline:
            peak_symbols = max(peak_symbols, stream.metrics()["buffered_symbols"])
            time.sleep(0.005)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stream.stop()
        srv.stop_thread()
    m = stream.metrics()
    print(f"\nslow consumer: {m['ticks_received']} ticks, {m['batches']} updates, "
          f"conflated {m['ticks_conflated']}, max queue depth {m['max_queue_depth']}, "
          f"traced peak growth {(peak - base) / 2**20:.1f} MiB "
          f"(a queue of every frame: {queue_bytes / 2**20:.1f} MiB), "
          f"latency p50/p99 {m['latency_p50_ms']:.0f}/{m['latency_p99_ms']:.0f} ms")
    assert stream.error is None
    assert m["ticks_applied"] == total  # every tick reached the buffer...
    assert m["batches"] * 10 <= m["ticks_received"]  # ...while the consumer took a tenth
    assert m["ticks_conflated"] >= m["ticks_received"] - m["batches"] * len(universe)
    # memory: one slot per symbol, whatever the backlog
    assert 0 < peak_symbols <= len(universe)
    assert stream.buffer.symbols == universe and stream.buffer.capacity <= 64
    # an unbounded queue would hold every decoded frame: stay far below that
    assert peak - base < queue_bytes / 2
    assert val.prices == stream.last_prices() == closes
    assert_values_match(registry, val, closes)


def test_ui_callbacks_are_throttled_and_the_last_state_wins(registry, market):
    from pmkit.stream.live import LiveStream

    val = Applied(live_valuation(registry))
    universe = list(val.symbols)
    closes = last_closes(market, universe)
    srv = FeedServer(market, symbols=universe, start=START, steps_per_day=STEPS, rate=3000,
                     heartbeat_interval=0.2).start_in_thread()
    stream = LiveStream(registry, url=srv.url, valuation=val,
                        settings=fast(ui_max_rate=5.0, flush_interval=0.005))
    calls: list[tuple[float, object]] = []
    stream.on_update(lambda upd: calls.append((time.monotonic(), upd)))
    try:
        stream.start_in_thread()
        stream.wait_for(lambda: stream.last_prices() == closes, 15.0)
        stream.wait_for(lambda: bool(calls) and calls[-1][1] is stream.last_update, 5.0)
        batches = stream.metrics()["batches"]
        t_first, t_last = calls[0][0], calls[-1][0]
    finally:
        stream.stop()
        srv.stop_thread()
    # at most 5 a second (+1 for the leading edge), far fewer than the flushes
    span = t_last - t_first
    assert len(calls) <= 5 * span + 1 + 1
    assert batches > len(calls)
    # consecutive calls are at least one period apart (a little slack for the clock)
    gaps = np.diff([t for t, _ in calls])
    assert (gaps >= 0.2 - 0.02).all()
    # the last state wins: the final call carries the last flush's update
    assert calls[-1][1] is stream.last_update


def test_metrics_are_published_as_global_events(registry, market):
    from pmkit.stream.live import LiveStream

    val = Applied(live_valuation(registry))
    srv = FeedServer(market, symbols=list(val.symbols), start=START, steps_per_day=STEPS,
                     rate=2000, heartbeat_interval=0.2).start_in_thread()
    got = []
    sub = registry.bus.subscribe("stream.metrics", got.append)
    stream = LiveStream(registry, url=srv.url, valuation=val, settings=fast(),
                        metrics_interval=0.1)
    try:
        stream.start_in_thread()
        stream.wait_for(lambda: len(got) >= 3 and got[-1].payload["batches"] > 0, 10.0)
    finally:
        stream.stop()
        srv.stop_thread()
        sub.cancel()
    ev = got[-1]
    assert ev.portfolio is None and ev.group is None
    for key in ("ticks_received", "ticks_conflated", "ticks_dropped", "batches", "reconnects",
                "gaps", "queue_depth", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"):
        assert key in ev.payload


def test_live_stream_under_asyncio_stops_cleanly_and_surfaces_typed_errors(registry, market):
    from pmkit.stream.live import LiveStream

    val = Applied(live_valuation(registry))
    srv = FeedServer(market, symbols=list(val.symbols), start=START, steps_per_day=STEPS,
                     rate=2000, heartbeat_interval=0.2).start_in_thread()

    async def main():
        stream = LiveStream(registry, url=srv.url, valuation=val, settings=fast())
        task = asyncio.create_task(stream.run())
        while stream.metrics()["batches"] < 3:
            assert not task.done()
            await asyncio.sleep(0.01)
        await asyncio.wait_for(stream.stop(), 5.0)
        assert task.done() and task.exception() is None
        # a universe with a symbol the feed lacks: the typed error comes out of run()
        bad = LiveStream(registry, url=srv.url, valuation=val, settings=fast(),
                         symbols=[*val.symbols, "NOPE"])
        with pytest.raises(UnknownAssetError):
            await asyncio.wait_for(bad.run(), 10.0)
        return stream, bad

    try:
        stream, bad = asyncio.run(main())
    finally:
        srv.stop_thread()
    assert not stream.running and stream.error is None
    assert isinstance(bad.error, UnknownAssetError)
    assert val.prices == stream.last_prices()  # the final flush reached the valuation
