"""`pmkit feed`: price paths, the WebSocket server on loopback, faults, lifecycle and CLI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("websockets")

from feed_peers import kill, peer, stall
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pmkit.datasets import load_market
from pmkit.errors import UnknownAssetError, ValidationError
from pmkit.model.paths import brownian_bridge, gbm_path, symbol_rng
from pmkit.stream.protocol import ProtocolError, decode, dumps, subscribe_message
from pmkit.stream.server import CLOSE_LIMIT, CLOSE_SLOW_CONSUMER, Faults, FeedServer, is_loopback

START = "2022-01-03"


@pytest.fixture(scope="module")
def market():
    return load_market()


@pytest.fixture
def feed(market):
    """Factory of started servers (stopped at teardown)."""
    started: list[FeedServer] = []

    def make(**kw) -> FeedServer:
        kw.setdefault("heartbeat_interval", 5.0)
        srv = FeedServer(market, **kw).start_in_thread()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop_thread()


def client(url: str, **kw):
    # A client that closes while ticks are still in flight has stopped reading, so it never
    # sees the server's close frame: keep its wait for it short.
    kw.setdefault("close_timeout", 0.3)
    return connect(url, **kw)


def run(coro, timeout: float = 10.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def next_of(ws, kinds=("tick", "batch")):
    """Next decoded frame whose type is in ``kinds`` (others skipped)."""
    while True:
        kind, payload = decode(await ws.recv())
        if kind in kinds:
            return kind, payload


async def ticks(ws, n: int) -> list[tuple[int, str, float, float]]:
    """The next ``n`` ticks as (seq, symbol, price, size), from tick or batch frames."""
    out: list[tuple[int, str, float, float]] = []
    while len(out) < n:
        _, b = await next_of(ws)
        for i in range(len(b)):
            out.append((b.seq + i, b.symbols[i], float(b.prices[i]), float(b.sizes[i])))
    return out[:n]


def closes(market, symbol: str, start: str = START) -> np.ndarray:
    """Real closes of ``symbol`` from the first trading day >= start (independent of the server)."""
    s = market["close"].sel(asset=symbol).to_series()
    return s[s.index >= start].dropna().to_numpy()


def expected_replay(market, symbol: str, steps: int, seed: int = 0, start: str = START):
    """The documented replay path, recomputed: prices and sizes after the start close."""
    s = market["close"].sel(asset=symbol).to_series()
    hist = s[s.index <= s[s.index >= start].index[0]].dropna().to_numpy()[-61:]
    sigma = float(np.std(np.diff(np.log(hist)), ddof=1))
    c = closes(market, symbol, start)
    rng = symbol_rng(seed, symbol)
    prices, sizes = [], []
    for d in range(len(c) - 1):
        prices.extend(brownian_bridge(float(c[d]), float(c[d + 1]), steps, sigma, rng)[1:])
        sizes.extend(rng.integers(1, 11, steps) * 100.0)
    return np.array(prices), np.array(sizes), sigma


# -- paths -------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    a=st.floats(0.01, 1e5),
    b=st.floats(0.01, 1e5),
    steps=st.integers(1, 500),
    sigma=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**32 - 1),
)
def test_bridge_hits_both_endpoints_exactly(a, b, steps, sigma, seed):
    path = brownian_bridge(a, b, steps, sigma, np.random.default_rng(seed))
    assert path.shape == (steps + 1,)
    assert path[0] == a and path[-1] == b
    assert np.isfinite(path).all() and (path > 0).all()


def test_bridge_without_volatility_is_the_straight_line_in_log_space():
    path = brownian_bridge(50.0, 80.0, 10, 0.0, np.random.default_rng(1))
    np.testing.assert_allclose(np.log(path), np.linspace(np.log(50.0), np.log(80.0), 11))


def test_bridge_moments_match_the_closed_form():
    # log B(t) - line(t) ~ N(0, sigma^2 t (1 - t)): check t = 1/4 and 1/2 over many draws
    sigma, n = 0.3, 20_000
    rng = np.random.default_rng(7)
    dev = np.array(
        [np.log(brownian_bridge(100.0, 110.0, 4, sigma, rng)) for _ in range(n)]
    ) - np.linspace(np.log(100.0), np.log(110.0), 5)
    for k, t in ((1, 0.25), (2, 0.5)):
        var = sigma**2 * t * (1 - t)
        assert abs(dev[:, k].mean()) < 4 * math.sqrt(var / n)
        assert dev[:, k].var() == pytest.approx(var, rel=0.05)


def test_gbm_path_closed_form():
    rng = np.random.default_rng(3)
    flat = gbm_path(42.0, 5, 0.0, 0.1, rng, mu=0.05)
    np.testing.assert_allclose(flat, 42.0 * np.exp(0.05 * 0.1 * np.arange(6)))
    sigma, dt, n = 0.2, 1 / 252, 20_000
    ends = np.array([gbm_path(100.0, 10, sigma, dt, rng)[-1] for _ in range(n)])
    logret = np.log(ends / 100.0)
    se = sigma * math.sqrt(10 * dt / n)
    assert logret.mean() == pytest.approx(-0.5 * sigma**2 * 10 * dt, abs=4 * se)
    assert logret.var() == pytest.approx(sigma**2 * 10 * dt, rel=0.05)
    # drift 0 means a martingale: E[S_T] = S_0
    assert ends.mean() == pytest.approx(100.0, abs=4 * ends.std() / math.sqrt(n))


def test_bad_path_inputs_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValidationError):
        brownian_bridge(-1.0, 2.0, 3, 0.1, rng)
    with pytest.raises(ValidationError):
        brownian_bridge(1.0, 2.0, 0, 0.1, rng)
    with pytest.raises(ValidationError):
        gbm_path(1.0, 3, 0.1, 0.0, rng)


# -- replay -----------------------------------------------------------------------------------
def test_replay_sigma_is_the_60_day_daily_vol(market):
    srv = FeedServer(market, symbols=["AAPL", "JPM"])
    for sym in ("AAPL", "JPM"):
        assert srv.sigmas[sym] == pytest.approx(expected_replay(market, sym, 2)[2], rel=1e-12)


def test_replay_ticks_end_each_day_exactly_at_the_real_close(feed, market):
    steps = 8
    srv = feed(symbols=["AAPL", "MSFT"], rate=None, batch=16, steps_per_day=steps)
    real = closes(market, "AAPL")
    want_prices, want_sizes, _ = expected_replay(market, "AAPL", steps)

    async def go():
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["AAPL"]))
            _, snap = await next_of(ws, ("snapshot",))
            return snap, await ticks(ws, steps * 6)

    snap, got = run(go())
    assert float(snap.prices[0]) == real[0]  # the start close
    prices = [p for _, _, p, _ in got]
    for day in range(1, 7):
        assert prices[day * steps - 1] == real[day]  # exact, not approximate
    # and the whole path is the documented bridge, recomputed independently
    assert prices == want_prices[: len(prices)].tolist()
    assert [s for *_, s in got] == want_sizes[: len(got)].tolist()


def test_replay_stops_after_the_last_date(feed, market):
    steps = 4
    srv = feed(symbols=["AAPL"], rate=None, steps_per_day=steps, start="2022-12-20",
               heartbeat_interval=0.2)
    real = closes(market, "AAPL", "2022-12-20")

    async def go():
        got = []
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["AAPL"]))
            while True:
                kind, b = await next_of(ws, ("tick", "heartbeat"))
                if kind == "heartbeat":
                    return got, b
                got.append((b.seq, b.prices[0]))

    got, hb_seq = run(go())
    assert len(got) == steps * (len(real) - 1)
    assert got[-1][1] == real[-1]
    assert hb_seq == len(got)


def test_unlisted_symbols_are_not_served(feed):
    srv = feed(start="2010-01-04")
    assert "MTUM" not in srv.symbols and "AAPL" in srv.symbols

    async def go():
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["MTUM"]))
            return decode(await ws.recv())

    kind, err = run(go())
    assert kind == "error" and err["code"] == "unknown_symbol" and err["symbols"] == ["MTUM"]


def test_bad_server_arguments_are_refused(market):
    with pytest.raises(ValidationError):
        FeedServer(market, mode="live")
    with pytest.raises(UnknownAssetError):
        FeedServer(market, symbols=["AAPL", "NOPE"])
    with pytest.raises(ValidationError):
        FeedServer(market, rate=0)
    with pytest.raises(ValidationError):
        FeedServer(market, batch=0)
    with pytest.raises(ValidationError):
        Faults(gap_every=-1)


def test_same_seed_same_ticks_whatever_the_subscription_order(feed):
    a = feed(symbols=["AAPL", "MSFT", "JPM"], rate=None, batch=5, seed=11)
    b = feed(symbols=["AAPL", "MSFT", "JPM"], rate=None, batch=5, seed=11)
    c = feed(symbols=["AAPL", "MSFT", "JPM"], rate=None, batch=5, seed=12)

    async def per_symbol(url, order):
        async with client(url) as ws:
            await ws.send(subscribe_message(order))
            got = await ticks(ws, 60)
        return {s: [p for _, sym, p, _ in got if sym == s] for s in order}

    pa = run(per_symbol(a.url, ["AAPL", "MSFT"]))
    pb = run(per_symbol(b.url, ["MSFT", "AAPL"]))
    pc = run(per_symbol(c.url, ["AAPL", "MSFT"]))
    for s in ("AAPL", "MSFT"):
        assert pa[s] == pb[s]
        assert pa[s] != pc[s]


def test_gbm_mode_starts_at_the_last_close_or_100(feed, market):
    steps = 10
    srv = feed(mode="gbm", symbols=["AAPL", "SYN1"], rate=None, steps_per_day=steps,
               sigma=0.3, seed=5)
    last_aapl = float(market["close"].sel(asset="AAPL").to_series().dropna().iloc[-1])

    async def go():
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["SYN1", "AAPL"]))
            _, snap = await next_of(ws, ("snapshot",))
            return snap, await ticks(ws, 40)

    snap, got = run(go())
    assert dict(zip(snap.symbols, snap.prices.tolist(), strict=True)) == {
        "SYN1": 100.0, "AAPL": last_aapl
    }
    dt = 1 / (252 * steps)
    for sym, s0 in (("SYN1", 100.0), ("AAPL", last_aapl)):
        want = gbm_path(s0, 1024, 0.3, dt, symbol_rng(5, sym))[1:21]
        assert [p for _, s, p, _ in got if s == sym] == want.tolist()


# -- protocol behaviour -----------------------------------------------------------------------
def test_subscribe_answers_with_a_snapshot_carrying_the_last_seq(feed):
    srv = feed(symbols=["AAPL", "MSFT", "JPM"], rate=2000)

    async def go():
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["AAPL"]))
            kind, snap = decode(await ws.recv())
            assert kind == "snapshot" and snap.seq == 0 and snap.symbols == ["AAPL"]
            last_seq, last_price = 0, {}
            for request in (subscribe_message(["MSFT"]), dumps({"type": "snapshot"})):
                await ws.send(request)
                while True:
                    kind, b = decode(await ws.recv())
                    if kind == "snapshot":
                        break
                    assert b.seq == last_seq + 1
                    last_seq = b.seq
                    last_price[b.symbols[0]] = b.prices[0]
                assert b.seq == last_seq
                assert b.symbols == ["AAPL", "MSFT"]
                # a single connection: the snapshot is the last price it was sent
                for s, p in zip(b.symbols, b.prices, strict=True):
                    if s in last_price:
                        assert p == last_price[s]
                kind, nxt = decode(await ws.recv())
                assert nxt.seq == b.seq + 1
                last_seq = nxt.seq
                last_price[nxt.symbols[0]] = nxt.prices[0]

    run(go())


def test_tick_frames_have_consecutive_seq_round_robin(feed):
    srv = feed(symbols=["AAPL", "MSFT", "JPM"], rate=None)

    async def go():
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["JPM", "AAPL"]))
            await next_of(ws, ("snapshot",))
            return [decode(await ws.recv()) for _ in range(100)]

    frames = run(go())
    assert {k for k, _ in frames} == {"tick"}
    assert [b.seq for _, b in frames] == list(range(1, 101))
    assert [b.symbols[0] for _, b in frames] == ["JPM", "AAPL"] * 50


def test_batch_frames_hold_n_ticks_with_running_seq(feed):
    srv = feed(symbols=["AAPL", "MSFT", "JPM"], rate=None, batch=7)

    async def go():
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["AAPL", "MSFT", "JPM"]))
            await next_of(ws, ("snapshot",))
            return [decode(await ws.recv()) for _ in range(20)]

    frames = run(go())
    assert all(k == "batch" and len(b) == 7 for k, b in frames)
    assert [b.seq for _, b in frames] == [1 + 7 * i for i in range(20)]
    assert all(b.prices.dtype == np.float64 for _, b in frames)


def test_unknown_symbol_is_an_error_and_subscribes_nothing(feed):
    srv = feed(symbols=["AAPL", "MSFT"], rate=None, heartbeat_interval=0.2)

    async def go():
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["AAPL", "NOPE", "ZZZ"]))
            kind, err = decode(await ws.recv())
            assert kind == "error"
            assert err["code"] == "unknown_symbol" and err["symbols"] == ["NOPE", "ZZZ"]
            # nothing subscribed: the next frame is a heartbeat, not a tick
            kind, seq = decode(await ws.recv())
            assert (kind, seq) == ("heartbeat", 0)
            await ws.send(subscribe_message(["MSFT"]))
            kind, snap = decode(await ws.recv())
            assert kind == "snapshot" and snap.symbols == ["MSFT"]
            _, b = await next_of(ws)
            assert b.symbols == ["MSFT"]

    run(go())


def test_bad_requests_get_an_error_and_the_connection_stays_open(feed):
    srv = feed(symbols=["AAPL"], rate=None)

    async def go():
        async with client(srv.url) as ws:
            for bad in ("not json", "[1, 2]", dumps({"type": "dance"}),
                        dumps({"type": "subscribe", "symbols": "AAPL"}),
                        dumps({"type": "subscribe", "symbols": [1]})):
                await ws.send(bad)
                kind, err = decode(await ws.recv())
                assert kind == "error" and err["code"] == "bad_request"
            await ws.send(subscribe_message(["AAPL"]))
            assert decode(await ws.recv())[0] == "snapshot"
            assert decode(await ws.recv())[0] == "tick"

    run(go())
    assert srv.stats["errors"] == 5


def test_unsubscribe_stops_ticks_for_the_symbol(feed):
    srv = feed(symbols=["AAPL", "MSFT"], rate=None)

    async def go():
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["AAPL", "MSFT"]))
            await next_of(ws, ("snapshot",))
            await ws.send(dumps({"type": "unsubscribe", "symbols": ["AAPL"]}))
            await ws.send(dumps({"type": "snapshot"}))
            _, snap = await next_of(ws, ("snapshot",))
            assert snap.symbols == ["MSFT"]
            got = await ticks(ws, 30)
            assert {s for _, s, _, _ in got} == {"MSFT"}

    run(go())


def test_heartbeats_when_idle(feed):
    srv = feed(symbols=["AAPL"], rate=0.001, heartbeat_interval=0.1)

    async def go():
        async with client(srv.url) as ws:
            first = [decode(await ws.recv()) for _ in range(2)]
            assert first == [("heartbeat", 0), ("heartbeat", 0)]
            await ws.send(subscribe_message(["AAPL"]))
            assert decode(await ws.recv())[0] == "snapshot"
            kind, b = decode(await ws.recv())
            assert kind == "tick" and b.seq == 1
            # the next tick is 1000 s away: heartbeats carry the last seq meanwhile
            assert [decode(await ws.recv()) for _ in range(2)] == [("heartbeat", 1)] * 2

    run(go())
    assert srv.stats["heartbeats"] >= 4


def test_every_connection_gets_the_whole_path_from_its_start(feed, market):
    steps = 50
    srv = feed(symbols=["AAPL"], rate=None, steps_per_day=steps)
    path, sizes, _ = expected_replay(market, "AAPL", steps)

    async def one():
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["AAPL"]))
            _, snap = await next_of(ws, ("snapshot",))
            return float(snap.prices[0]), await ticks(ws, 200)

    async def both():
        return await asyncio.gather(one(), one())

    (snap_a, a), (snap_b, b) = run(both())
    # each connection has its own cursor: both get the documented path, all of it, in order
    assert snap_a == snap_b == closes(market, "AAPL")[0]
    for got in (a, b):
        assert [seq for seq, *_ in got] == list(range(1, 201))
        assert [p for _, _, p, _ in got] == path[:200].tolist()
        assert [z for *_, z in got] == sizes[:200].tolist()
    # the latest point emitted to anyone is on the path, at or after what both saw
    assert srv.prices()["AAPL"] in path[199:]


# -- faults -----------------------------------------------------------------------------------
def _fault_frames(feed, faults: Faults, n: int = 24):
    srv = feed(symbols=["AAPL"], rate=None, faults=faults)

    async def go():
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["AAPL"]))
            await next_of(ws, ("snapshot",))
            out = []
            while len(out) < n:
                raw = await ws.recv()
                try:
                    kind, b = decode(raw)
                except ProtocolError:
                    out.append(None)
                    continue
                if kind == "tick":
                    out.append(b.seq)
            return out

    return srv, run(go())


def test_fault_malformed_frames_lose_no_tick(feed):
    srv, got = _fault_frames(feed, Faults(malformed_every=3))
    seqs = [s for s in got if s is not None]
    assert seqs == list(range(1, len(seqs) + 1))
    # a bad frame right before every 3rd tick
    assert [i for i, s in enumerate(got) if s is None] == [
        i for i, s in enumerate(got) if i + 1 < len(got) and got[i + 1] is not None
        and got[i + 1] % 3 == 0
    ]
    assert srv.stats["malformed"] >= got.count(None) > 0


def test_fault_duplicate_frames(feed):
    srv, got = _fault_frames(feed, Faults(duplicate_every=4))
    expect = []
    for k in range(1, 25):
        expect += [k, k] if k % 4 == 0 else [k]
    assert got == expect[: len(got)]
    assert srv.stats["duplicates"] >= 5


def test_fault_reorder_swaps_a_frame_with_the_next(feed):
    _, got = _fault_frames(feed, Faults(reorder_every=5))
    assert got[:12] == [1, 2, 3, 4, 6, 5, 7, 8, 9, 11, 10, 12]


def test_fault_gap_skips_the_seq_of_a_dropped_frame(feed):
    srv, got = _fault_frames(feed, Faults(gap_every=4))
    assert got == [k for k in range(1, 40) if k % 4][: len(got)]
    assert srv.stats["gaps"] >= 6 and srv.stats["ticks_dropped"] == srv.stats["gaps"]


# -- lifecycle --------------------------------------------------------------------------------
def test_stop_closes_clients_and_the_port_can_be_bound_again(feed, market):
    srv = feed(symbols=["AAPL", "MSFT"], rate=None)
    port = srv.port

    async def connected_while(stop):
        async with client(srv.url) as reader, client(srv.url) as stalled:
            await reader.send(subscribe_message(["AAPL"]))
            await stalled.send(subscribe_message(["MSFT"]))  # and never reads: backpressure
            await next_of(reader)
            await asyncio.sleep(0.2)
            await asyncio.to_thread(stop)
            with pytest.raises(ConnectionClosed):
                while True:
                    await reader.recv()

    run(connected_while(srv.stop_thread))
    assert srv.stats["clients_connected"] == 0
    again = feed(symbols=["AAPL"], port=port, rate=None)

    async def go():
        async with client(again.url) as ws:
            await ws.send(subscribe_message(["AAPL"]))
            return decode(await ws.recv())[0]

    assert run(go()) == "snapshot"


def test_a_restarted_server_serves_new_connections_the_same_path(feed):
    srv = feed(symbols=["AAPL"], rate=None)

    async def snap_then_ticks(n):
        async with client(srv.url) as ws:
            await ws.send(subscribe_message(["AAPL"]))
            _, snap = await next_of(ws, ("snapshot",))
            return float(snap.prices[0]), await ticks(ws, n)

    first = run(snap_then_ticks(30))
    port = srv.port
    srv.stop_thread()
    srv.start_in_thread()
    assert srv.port == port
    assert run(snap_then_ticks(30)) == first  # same seed, fresh cursor: the same ticks


def test_a_slow_reader_blocks_its_producer_instead_of_queueing(feed):
    srv = feed(symbols=["AAPL"], rate=None, batch=50)

    async def go():
        async with client(srv.url, max_queue=1) as ws:
            ws.transport.pause_reading()  # read nothing: the socket buffers fill up
            await ws.send(subscribe_message(["AAPL"]))
            counts = []
            for _ in range(20):
                await asyncio.sleep(0.1)
                counts.append(srv.stats["ticks_sent"])
                if len(counts) >= 3 and counts[-1] == counts[-2] == counts[-3]:
                    return counts
            return counts

    counts = run(go())
    assert counts[-1] == counts[-2] == counts[-3] > 0


def test_async_context_manager(market):
    async def go():
        async with FeedServer(market, symbols=["AAPL"], rate=None) as srv:
            async with client(srv.url) as ws:
                await ws.send(subscribe_message(["AAPL"]))
                assert decode(await ws.recv())[0] == "snapshot"
                assert decode(await ws.recv())[0] == "tick"
            return srv

    srv = run(go())
    assert not srv.running and srv.stats["connections"] == 1


# -- limits and hostile peers ----------------------------------------------------------------
async def closed_with(ws) -> tuple[int, str]:
    """The close code and reason the server sent (reading until the connection ends)."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await ws.recv()
    return info.value.rcvd.code, info.value.rcvd.reason


async def subscribed(ws, symbols=("AAPL",)):
    await ws.send(subscribe_message(list(symbols)))
    return (await next_of(ws, ("snapshot",)))[1]


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def test_greedy_and_stalled_subscribers_take_nothing_from_a_normal_reader(feed):
    rate, n = 2_000, 2_000
    symbols = ["AAPL", "MSFT", "JPM"]
    kw = {"symbols": ["AAPL", "MSFT", "JPM", "XOM"], "rate": rate, "batch": 10, "seed": 4}
    alone, crowded = feed(**kw), feed(**kw)

    async def read(url):
        async with peer(url) as ws:
            await subscribed(ws, symbols)
            t0 = time.perf_counter()
            got = await ticks(ws, n)
            return got, time.perf_counter() - t0

    async def greedy(url, stop):
        async with peer(url, "127.0.0.2") as ws:
            await subscribed(ws, kw["symbols"])
            while not stop.is_set():
                await ws.recv()

    async def crowd():
        stop = asyncio.Event()
        hogs = [asyncio.create_task(greedy(crowded.url, stop)) for _ in range(4)]
        stalled = []
        for _ in range(4):  # subscribed to the same symbols, never reading
            ws = await peer(crowded.url, "127.0.0.3", rcvbuf=4096).__aenter__()
            stall(ws)
            await ws.send(subscribe_message(kw["symbols"]))
            stalled.append(ws)
        await until(lambda: crowded.stats["clients_connected"] == 8)
        got = await read(crowded.url)
        stop.set()
        await asyncio.gather(*hogs)
        for ws in stalled:
            kill(ws)
        return got

    want, _ = run(read(alone.url))
    got, _ = run(crowd(), timeout=20)
    assert got == want  # every tick, in order, the same as alone (same seed)
    assert [seq for seq, *_ in got] == list(range(1, n + 1))
    assert crowded.stats["ticks_sent"] > 4 * n  # the greedy ones were served too


def test_connections_over_the_per_address_limit_are_refused_with_1013(feed):
    srv = feed(symbols=["AAPL"], rate=100, max_connections_per_address=3, max_connections=10)

    async def go():
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(3):
                await subscribed(await stack.enter_async_context(peer(srv.url)))
            over = [await closed_with(await stack.enter_async_context(peer(srv.url)))
                    for _ in range(2)]
            # another address has its own allowance
            await subscribed(await stack.enter_async_context(peer(srv.url, "127.0.0.2")))
            return over

    over = run(go())
    assert over == [(CLOSE_LIMIT, "too many connections from 127.0.0.1 (limit 3)")] * 2
    assert (srv.stats["refused_per_address"], srv.stats["refused_total"]) == (2, 0)
    assert srv.stats["connections"] == 4


def test_connections_over_the_total_limit_are_refused_until_one_leaves(feed):
    srv = feed(symbols=["AAPL"], rate=100, max_connections=4, max_connections_per_address=3)

    async def go():
        async with contextlib.AsyncExitStack() as stack:
            first = await stack.enter_async_context(peer(srv.url))
            await subscribed(first)
            for host in ("127.0.0.1", "127.0.0.1", "127.0.0.2"):
                await subscribed(await stack.enter_async_context(peer(srv.url, host)))
            over = await closed_with(await stack.enter_async_context(peer(srv.url, "127.0.0.3")))
            await first.close()
            await until(lambda: srv.stats["clients_connected"] == 3)
            await subscribed(await stack.enter_async_context(peer(srv.url, "127.0.0.3")))
            return over

    assert run(go()) == (CLOSE_LIMIT, "too many connections (limit 4)")
    assert (srv.stats["refused_total"], srv.stats["refused_per_address"]) == (1, 0)


def test_a_stalled_consumer_is_dropped_and_the_others_keep_their_stream(feed, market):
    steps = 50
    srv = feed(symbols=["AAPL", "MSFT"], rate=20_000, batch=50, steps_per_day=steps,
               send_timeout=0.3, write_limit=4096)
    path, _, _ = expected_replay(market, "AAPL", steps)

    async def go():
        async with peer(srv.url, "127.0.0.2", rcvbuf=4096) as slow, peer(srv.url) as reader:
            stall(slow)
            await slow.send(subscribe_message(["AAPL", "MSFT"]))
            await subscribed(reader)
            got = await ticks(reader, 400)  # reads while the stalled one is dropped
            await until(lambda: srv.stats["slow_consumers"] == 1)
            got += await ticks(reader, 400)
            slow.transport.resume_reading()
            closed = await closed_with(slow)
            await until(lambda: srv.stats["clients_connected"] == 1)  # the reader alone
            return got, closed

    got, (code, reason) = run(go(), timeout=15)
    assert [seq for seq, *_ in got] == list(range(1, 801))
    assert [p for _, _, p, _ in got] == path[:800].tolist()
    assert code == CLOSE_SLOW_CONSUMER and reason.startswith("slow consumer")
    assert srv.stats["slow_consumers"] == 1 and srv.stats["peers_lost"] == 0


def test_peers_that_vanish_mid_send_leave_no_flood_on_stderr(feed, market, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    steps = 50
    srv = feed(symbols=["AAPL", "MSFT"], rate=None, batch=20, steps_per_day=steps)
    path, _, _ = expected_replay(market, "AAPL", steps)
    n = 12

    async def go():
        async with peer(srv.url) as reader:
            await subscribed(reader)
            for k in range(n):  # each killed while the server is writing to it
                ws = await peer(srv.url, f"127.0.0.{2 + k % 3}")
                await subscribed(ws, ("AAPL", "MSFT"))
                await ticks(ws, 30)
                if k % 2:
                    stall(ws)
                kill(ws)
            await until(lambda: srv.stats["peers_lost"] == n)
            return await ticks(reader, 300)

    got = run(go(), timeout=20)
    assert [p for _, _, p, _ in got] == path[:300].tolist()  # served throughout
    # the server's side (the peers here are the test's own websockets clients)
    loud = [r for r in caplog.records if r.levelno >= logging.INFO
            and r.name.split(".")[0] in ("pmkit", "asyncio", "websockets")
            and r.name != "websockets.client"]
    # "listening on" and one "went away" line for the twelve
    assert len(loud) <= 2, [r.getMessage() for r in loud]
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.INFO)
    assert all(r.levelno < logging.WARNING for r in loud)
    assert "Traceback" not in capfd.readouterr().err


def test_half_open_and_garbage_peers_are_dropped_quietly(feed, market, caplog, capfd):
    import socket

    caplog.set_level(logging.DEBUG)
    steps = 50
    srv = feed(symbols=["AAPL"], rate=2_000, batch=10, steps_per_day=steps, open_timeout=0.3)
    path, _, _ = expected_replay(market, "AAPL", steps)
    host, port = "127.0.0.1", srv.port

    def raw(payload: bytes) -> socket.socket:
        sock = socket.create_connection((host, port), timeout=5)
        sock.sendall(payload)
        return sock

    async def go():
        async with peer(srv.url) as reader:
            await subscribed(reader)
            silent = [raw(b"") for _ in range(5)]  # connect and say nothing
            partial = [raw(b"GET / HTTP/1.1\r\nHost: x\r\n") for _ in range(5)]  # never ends
            garbage = [raw(b"\x16\x03\x01 not http at all\r\n\r\n") for _ in range(5)]
            got = await ticks(reader, 1_000)
            # every one of them was closed by the server (read returns EOF, or a reset)
            for sock in silent + partial + garbage:
                try:
                    while sock.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
                sock.close()
            return got

    got = run(go(), timeout=15)
    assert [p for _, _, p, _ in got] == path[:1_000].tolist()
    loud = [r for r in caplog.records if r.levelno >= logging.INFO
            and r.name.split(".")[0] in ("pmkit", "asyncio", "websockets")
            and r.name != "websockets.client"]
    assert len(loud) <= 1, [r.getMessage() for r in loud]  # "listening on" only
    assert "Traceback" not in capfd.readouterr().err
    assert srv.stats["connections"] == 1  # none of them ever became a connection


@pytest.mark.parametrize("host,local", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.8.9.10", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("192.0.2.7", False), ("example.org", False),
])
def test_is_loopback(host, local):
    assert is_loopback(host) is local


def test_bad_limit_arguments_are_refused(market):
    for kw in ({"max_connections": 0}, {"max_connections_per_address": 1.5},
               {"write_limit": True}, {"send_timeout": 0}, {"ping_interval": math.inf}):
        with pytest.raises(ValidationError) as info:
            FeedServer(market, **kw)
        assert info.value.field == next(iter(kw))


# -- CLI --------------------------------------------------------------------------------------
def test_cli_feed_arguments(monkeypatch, market):
    from pmkit import cli

    seen = {}
    monkeypatch.setattr(cli, "_run_feed", lambda args: seen.setdefault("args", args) and 0)
    argv = ["feed", "--port", "9001", "--mode", "gbm", "--rate", "0", "--batch", "20",
            "--seed", "3", "--start", "2021-06-01", "--steps-per-day", "60"]
    assert cli.main(argv) == 0
    args = seen["args"]
    assert (args.host, args.port, args.mode, args.rate, args.batch, args.seed, args.start) == (
        "127.0.0.1", 9001, "gbm", 0.0, 20, 3, "2021-06-01"
    )
    monkeypatch.setattr("pmkit.datasets.load_market", lambda: market)
    srv = cli._feed_server(args)
    assert (srv.port, srv.mode, srv.rate, srv.batch, srv.seed, srv.steps_per_day) == (
        9001, "gbm", None, 20, 3, 60
    )
    assert not srv.running
    defaults = cli._parser().parse_args(["feed"])
    assert (defaults.port, defaults.mode, defaults.rate, defaults.batch) == (8765, "replay",
                                                                            1000.0, 1)
    assert cli._parser().parse_args(["serve"]).command == "serve"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "feed.example.org"])
def test_cli_feed_refuses_a_non_loopback_host_without_allow_remote(monkeypatch, capsys, host):
    from pmkit import cli

    started = []
    monkeypatch.setattr(cli, "_feed_server", lambda args: started.append(args))
    assert cli.main(["feed", "--host", host]) == 2
    err = capsys.readouterr().err
    assert f"refusing --host {host!r}" in err and "not a loopback address" in err
    assert "--allow-remote" in err and not started


def test_cli_feed_allow_remote_and_limit_flags(monkeypatch, market):
    from pmkit import cli

    monkeypatch.setattr("pmkit.datasets.load_market", lambda: market)
    seen = []
    real = cli._feed_server

    class Stop(Exception):
        pass

    def build_then_stop(args):  # past the host check: build the server, never serve
        seen.append(real(args))
        raise Stop

    monkeypatch.setattr(cli, "_feed_server", build_then_stop)
    with pytest.raises(Stop):
        cli.main(["feed", "--host", "0.0.0.0", "--allow-remote", "--max-connections", "5",
                  "--max-connections-per-address", "2", "--send-timeout", "1.5"])
    srv = seen[0]
    assert (srv.host, srv.max_connections, srv.max_connections_per_address,
            srv.send_timeout) == ("0.0.0.0", 5, 2, 1.5)
    assert not srv.running
    defaults = cli._parser().parse_args(["feed"])
    assert (defaults.allow_remote, defaults.max_connections,
            defaults.max_connections_per_address, defaults.send_timeout) == (False, 64, 16, 5.0)
