"""Feed abuse on loopback: greedy subscribers, connection floods, stalled readers, killed peers.

One `FeedServer` under greedy subscribers, floods from one and from many addresses,
abrupt disconnects and stalled readers, while one well-behaved client reads throughout:
its stream must stay complete (every tick, in order, the same ticks it gets alone, at
the configured rate) and the server's stats must count what it refused and dropped.
Bounded: 151 connection attempts, all on 127.0.0.0/8, the storm under 15 s.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

pytest.importorskip("websockets")

from feed_peers import kill, peer, stall
from websockets.exceptions import ConnectionClosed

from pmkit.datasets import load_market
from pmkit.stream.protocol import decode, dumps, subscribe_message
from pmkit.stream.server import CLOSE_LIMIT, FeedServer

SYMBOLS = ["AAPL", "MSFT", "JPM", "XOM", "KO"]
RATE, BATCH = 2_000, 10
LIMITS = {"max_connections": 40, "max_connections_per_address": 10}


def server(market) -> FeedServer:
    return FeedServer(market, symbols=SYMBOLS, rate=RATE, batch=BATCH, seed=9,
                      heartbeat_interval=0.5, send_timeout=0.5, write_limit=8192,
                      **LIMITS).start_in_thread()


def ticks_of(raw) -> list[tuple[int, str, float, float]]:
    kind, b = decode(raw)
    if kind not in ("tick", "batch"):
        return []
    return [(b.seq + i, b.symbols[i], float(b.prices[i]), float(b.sizes[i]))
            for i in range(len(b))]


async def good_reader(url: str, ready: asyncio.Event, done: asyncio.Event | None = None,
                      n: int | None = None):
    """Read until ``done`` is set (or ``n`` ticks); the ticks and the seconds it took."""
    async with peer(url) as ws:
        await ws.send(subscribe_message(SYMBOLS[:3]))
        assert decode(await ws.recv())[0] == "snapshot"
        ready.set()
        t0 = time.perf_counter()
        got: list[tuple[int, str, float, float]] = []
        while (done is None or not done.is_set()) and (n is None or len(got) < n):
            got += ticks_of(await ws.recv())
        return got[:n], time.perf_counter() - t0


async def attempt(url: str, host: str, symbols: list[str] | None = None, **kw):
    """Connect: the connection when admitted, else the close code and reason it got.

    Admission shows as the answer to a request: a snapshot of ``symbols`` when given (a
    subscription), else of nothing (a connection that only holds a slot).
    """
    from websockets.asyncio.client import ClientConnection

    ws: ClientConnection = await peer(url, host, **kw).__aenter__()
    try:
        await ws.send(subscribe_message(symbols) if symbols else dumps({"type": "snapshot"}))
        while decode(await ws.recv())[0] != "snapshot":
            pass
    except ConnectionClosed as exc:
        return None, (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
    return ws, None


async def greedy(url: str, stop: asyncio.Event, opened: list) -> None:
    async with peer(url, "127.0.0.2") as ws:
        opened.append(ws)
        await ws.send(subscribe_message(SYMBOLS))
        while not stop.is_set():
            await ws.recv()


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def abuse(url: str, srv: FeedServer) -> dict:
    stop, ready = asyncio.Event(), asyncio.Event()
    reader = asyncio.create_task(good_reader(url, ready, stop))
    await ready.wait()  # the app's stream is connected before an attack starts
    hogged: list = []
    hogs = [asyncio.create_task(greedy(url, stop, hogged)) for _ in range(6)]  # 127.0.0.2
    await until(lambda: srv.stats["clients_connected"] == 7)
    refusals: list[tuple[int | None, str]] = []
    flood = []
    for _ in range(60):  # from one address: 10 admitted, 50 refused per address
        ws, refused = await attempt(url, "127.0.0.4")
        (refusals.append(refused) if refused else flood.append(ws))
    for k in range(80):  # from 8 more addresses: 23 admitted up to 40 in all, 57 refused
        ws, refused = await attempt(url, f"127.0.1.{k % 8 + 1}")
        (refusals.append(refused) if refused else flood.append(ws))
    for ws in flood:  # abrupt disconnects
        kill(ws)
    await until(lambda: srv.stats["clients_connected"] == 7)
    stalled = []
    for _ in range(4):  # subscribed, never reading: dropped as slow consumers
        ws, refused = await attempt(url, "127.0.0.3", SYMBOLS, rcvbuf=4096)
        assert refused is None
        stall(ws)
        stalled.append(ws)
    await until(lambda: srv.stats["slow_consumers"] == 4)
    for ws in hogged[:3]:  # abrupt disconnects mid-stream
        kill(ws)
    await until(lambda: srv.stats["peers_lost"] == 33 + 3)
    stop.set()
    got, seconds = await reader
    await asyncio.gather(*hogs, return_exceptions=True)
    for ws in stalled:
        kill(ws)
    return {"got": got, "seconds": seconds, "refusals": refusals, "flood": len(flood)}


def test_a_good_client_keeps_its_whole_stream_through_an_abuse_storm(caplog):
    caplog.set_level(logging.INFO)
    market = load_market()
    srv, alone = server(market), server(market)
    try:
        out = asyncio.run(asyncio.wait_for(abuse(srv.url, srv), 15))
        deadline = time.monotonic() + 3
        while srv.stats["clients_connected"] and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = dict(srv.stats)
        got = out["got"]
        want, _ = asyncio.run(asyncio.wait_for(
            good_reader(alone.url, asyncio.Event(), n=len(got)), 15
        ))
    finally:
        alone.stop_thread()
        srv.stop_thread()

    # the good client: every tick in order, the same as alone (speed is a benchmark's business)
    assert len(got) >= RATE // 2  # the storm lasted a while
    assert got == want
    assert [seq for seq, *_ in got] == list(range(1, len(got) + 1))
    # what the limits refused and dropped, counted by the server
    assert out["flood"] == 10 + 23
    assert stats["refused_per_address"] == 50
    assert stats["refused_total"] == 57
    assert sorted(set(out["refusals"])) == [
        (CLOSE_LIMIT, "too many connections (limit 40)"),
        (CLOSE_LIMIT, "too many connections from 127.0.0.4 (limit 10)"),
    ]
    assert len(out["refusals"]) == 50 + 57
    assert stats["slow_consumers"] == 4
    # the killed flood and greedy readers (the stalled ones were dropped first)
    assert stats["peers_lost"] == 33 + 3
    assert stats["connections"] == 1 + 6 + 33 + 4
    assert stats["clients_connected"] == 0
    # no flood in the logs: one line per kind of event at most, no traceback
    loud = [r for r in caplog.records if r.levelno >= logging.INFO
            and r.name.split(".")[0] in ("pmkit", "asyncio", "websockets")
            and r.name != "websockets.client"]
    assert len(loud) <= 8, [r.getMessage() for r in loud]
    assert not any(r.exc_info for r in loud)
