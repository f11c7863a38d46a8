"""Absurd prices on the client side: the price band, sound updates and periodic recomputation.

The end-to-end tests drive the real path (a WebSocket feed on loopback → `StreamClient` →
`PriceBand` + `ConflatingBuffer` → `LiveValuation`) with scripted frames, and check at
every flush that the live values equal ``cash + sum(quantity * price)`` recomputed in plain
Python from the ledger's positions and the prices the valuation holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("websockets")

from pmkit.demo import open_demo
from pmkit.errors import ConfigError, ValidationError
from pmkit.stream.band import PriceBand
from pmkit.stream.live import LiveStream
from pmkit.stream.protocol import (
    batch_message,
    decode,
    heartbeat_message,
    snapshot_message,
    tick_message,
)
from pmkit.stream.settings import StreamSettings
from pmkit.stream.valuation import LiveValuation

HUGE = 1e308


# -- the band --------------------------------------------------------------------------------
def test_band_accepts_within_and_rejects_outside():
    band = PriceBand(0.5, 3)
    band.seed(np.array([0, 1]), np.array([100.0, 10.0]))
    slots = np.array([0, 0, 0, 0, 1, 1, 1])
    prices = np.array([149.0, 151.0, 67.0, 66.0, HUGE, 10.0 * 1000, 10.0 / 1000])
    # every tick against the last good price from before the frame: 100 and 10
    assert band.accept(slots, prices).tolist() == [True, False, True, False, False, False, False]
    assert band.rejected == 5 and band.reanchored == 0
    assert band.last(0) in (149.0, 67.0) and band.last(1) == 10.0


def test_band_single_tick_path_matches_the_rule():
    band = PriceBand(0.25, 4)
    band.seed(np.array([0]), np.array([80.0]))
    assert band.accept_one(0, 100.0)  # 80 * 1.25
    assert not band.accept_one(0, 125.1)
    assert band.accept_one(0, 80.0)  # 100 / 1.25
    assert not band.accept_one(0, 63.9)
    assert band.rejected == 2
    assert band.accept_one(7, 5.0) and band.last(7) == 5.0  # no last good price yet


def test_one_absurd_price_never_moves_the_level_but_a_confirmed_one_does():
    band = PriceBand(0.5, 3)
    band.seed(np.array([0]), np.array([100.0]))
    for p in (HUGE, 100.0, HUGE, 101.0, 1e5, 99.0):  # spikes between good ticks
        band.accept_one(0, p)
    assert band.last(0) == 99.0 and band.reanchored == 0 and band.rejected == 3
    # alternating absurd levels confirm nothing
    for p in (1e6, 1e-3, 1e6, 1e-3):
        assert not band.accept_one(0, p)
    assert band.reanchored == 0
    # a real new level (a restarted replay): three in a row, each within the band
    assert [band.accept_one(0, p) for p in (300.0, 301.0, 302.0)] == [False, False, True]
    assert band.last(0) == 302.0 and band.reanchored == 1
    assert band.accept_one(0, 303.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(1e-3, 1e6)), min_size=1, max_size=40))
def test_vector_path_equals_the_single_tick_path_for_distinct_slots(ticks):
    # frames of distinct slots: the vectorized check must decide as tick by tick
    one, vec = PriceBand(0.5, 3), PriceBand(0.5, 3)
    for b in (one, vec):
        b.seed(np.arange(4), np.array([1.0, 10.0, 100.0, 1000.0]))
    frames, frame = [], []
    for slot, price in ticks:
        if any(s == slot for s, _ in frame):
            frames.append(frame)
            frame = []
        frame.append((slot, price))
    frames.append(frame)
    for fr in frames:
        want = [one.accept_one(s, p) for s, p in fr]
        got = vec.accept(np.array([s for s, _ in fr]), np.array([p for _, p in fr]))
        assert got.tolist() == want
    assert (vec.rejected, vec.reanchored) == (one.rejected, one.reanchored)
    assert [vec.last(s) for s in range(4)] == [one.last(s) for s in range(4)]


def test_band_arguments_and_settings_are_validated():
    with pytest.raises(ValidationError):
        PriceBand(0.0, 3)
    with pytest.raises(ValidationError):
        PriceBand(0.5, 1)
    for key, bad in (("price_band", 0), ("price_band", math.inf), ("price_band", "wide"),
                     ("price_band_confirm", 1), ("price_band_confirm", 2.5),
                     ("resync_every", 0), ("resync_every", True)):
        with pytest.raises(ConfigError) as info:
            StreamSettings.from_mapping({key: bad})
        assert info.value.field == f"streaming.{key}"
    s = StreamSettings()
    assert (s.price_band, s.price_band_confirm, s.resync_every) == (0.5, 5, 100)


# -- the valuation's soundness ---------------------------------------------------------------
def recompute(reg, pids, marks: dict[str, float]) -> np.ndarray:
    """``cash + sum(q * price)`` per portfolio from the ledger's positions, in plain Python."""
    out = []
    for pid in pids:
        pos = reg.positions(pid)
        out.append(pos.cash + sum(q * marks[a] for a, q in pos.quantities.items() if q != 0))
    return np.array(out)


def assert_sound(reg, lv: LiveValuation, values=None, prices=None) -> None:
    values = lv.values().to_numpy() if values is None else values
    prices = lv.prices() if prices is None else prices
    assert np.isfinite(values).all()
    want = recompute(reg, lv.portfolios, prices.to_dict())
    np.testing.assert_allclose(values, want, rtol=1e-12, atol=1e-6)


def biggest_holding(lv: LiveValuation) -> str:
    """The asset with the largest position of any portfolio."""
    return str(lv.holdings().abs().max().idxmax())


def test_an_overflowing_price_is_refused_and_the_values_stay_finite():
    reg = open_demo()
    lv = LiveValuation(reg, publish=False)
    asset = biggest_holding(lv)
    before = lv.prices()[asset]
    lv.update(lv.index([asset]), [1.5e308])  # q * 1.5e308 overflows
    assert lv.prices()[asset] == before and lv.prices_refused == 1 and lv.unsound_updates == 1
    assert_sound(reg, lv)


def test_a_sum_that_overflows_refuses_the_whole_flush():
    reg = open_demo()
    lv = LiveValuation(reg, publish=False)
    h = lv.holdings().abs()
    a = str(h.max().idxmax())
    row = h[a].idxmax()  # the largest holder of a
    share = (h.loc[row] / h.max().replace(0, np.inf)).drop(a)
    b = str(share.idxmax())  # its largest other position, relative to b's largest holder
    assert share[b] > 0.01
    # every product q * p stays finite (<= 1.79e308); row's sum of the two does not
    pa, pb = 1.79e308 / h[a].max(), 1.79e308 / h[b].max()
    before = lv.prices()[[a, b]].to_numpy()
    lv.update(lv.index([a, b]), [pa, pb])
    assert lv.prices_refused == 2 and lv.unsound_updates == 1
    np.testing.assert_array_equal(lv.prices()[[a, b]].to_numpy(), before)  # no trace
    assert_sound(reg, lv)


def test_a_cancelling_round_trip_is_recomputed_exactly():
    reg = open_demo()
    lv = LiveValuation(reg, publish=False)
    asset = biggest_holding(lv)
    p0 = lv.prices()[asset]
    lv.update(lv.index([asset]), [1e300])  # up a lot: finite, accurate
    assert_sound(reg, lv)
    lv.update(lv.index([asset]), [p0 * 1.01])  # and back: the running sum lost every bit
    assert lv.unsound_updates >= 1
    assert_sound(reg, lv)


# -- end to end through the real client --------------------------------------------------------
class Recording(LiveValuation):
    """A `LiveValuation` that keeps its values and prices after every flush."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.flushes: list[tuple[np.ndarray, object]] = []

    def update(self, *args, **kwargs):
        out = super().update(*args, **kwargs)
        self.flushes.append((self.values().to_numpy(), self.prices()))
        return out


async def stream_script(reg, frames, settings: StreamSettings) -> tuple[LiveStream, Recording]:
    """Serve ``frames`` (after a snapshot of the opening prices) to a `LiveStream`.

    Each frame is sent once the previous one was received and flushed, so every frame
    is a flush of its own (none conflated into the next), whatever the machine's speed.
    """
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    lv = Recording(reg)
    sent = asyncio.Event()
    streams: list[LiveStream] = []

    async def flushed(ticks: int) -> None:
        stream = streams[0]
        deadline = time.monotonic() + 10
        while stream.metrics()["ticks_received"] < ticks or len(stream.buffer):
            assert time.monotonic() < deadline, "the stream did not flush"
            await asyncio.sleep(0.005)

    async def handler(ws):
        with contextlib.suppress(ConnectionClosed):  # the stream stops while we send
            await script(ws)

    async def script(ws):
        await ws.recv()  # the subscription
        syms = lv.symbols
        await ws.send(snapshot_message(0, syms, lv.prices()[syms].tolist(), time.time()))
        ticks = 0
        for frame in frames:
            await flushed(ticks)
            await ws.send(frame)
            ticks += len(decode(frame)[1])
        await flushed(ticks)
        sent.set()
        while True:
            await asyncio.sleep(0.1)
            await ws.send(heartbeat_message(ticks, time.time()))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        stream = LiveStream(reg, url=f"ws://127.0.0.1:{port}", settings=settings,
                            valuation=lv, metrics_interval=None)
        streams.append(stream)
        task = asyncio.create_task(stream.run())
        await asyncio.wait_for(sent.wait(), 30)
        await stream.stop()
        await task
    return stream, lv


class Script:
    """Numbered frames: ``batch(("AAPL", 1.0), ...)`` or ``tick("AAPL", 1.0)``."""

    def __init__(self) -> None:
        self.seq = 1
        self.frames: list[str] = []

    def batch(self, *ticks: tuple[str, float]) -> None:
        n = len(ticks)
        now = time.time()
        self.frames.append(batch_message(self.seq, [s for s, _ in ticks],
                                         [float(p) for _, p in ticks], [100.0] * n, [now] * n))
        self.seq += n

    def tick(self, symbol: str, price: float) -> None:
        self.frames.append(tick_message(self.seq, symbol, float(price), 100.0, time.time()))
        self.seq += 1


def test_absurd_ticks_are_rejected_and_values_equal_a_recomputation_at_every_flush():
    reg = open_demo()
    opening = LiveValuation(reg, publish=False).prices()
    a, b = opening.index[0], opening.index[1]
    pa, pb = opening[a], opening[b]
    sc = Script()
    sc.batch((a, pa * 1.01), (b, pb * 0.99))
    sc.batch((a, HUGE))  # rejected
    sc.batch((a, pa * 1.02))
    sc.batch((b, pb * 1000))  # rejected: a 1000x jump
    sc.batch((b, pb * 0.98))
    sc.batch((a, pa / 1000))  # rejected
    sc.batch((a, pa * 1.03), (a, HUGE), (a, pa * 1.031))  # the spike inside a frame: rejected
    sc.tick(a, HUGE)  # the single-tick path: rejected
    sc.tick(b, pb * 0.97)
    settings = StreamSettings(flush_interval=0.01, resync_every=1000)
    stream, lv = asyncio.run(stream_script(reg, sc.frames, settings))

    assert len(lv.flushes) >= 4
    for values, prices in lv.flushes:  # every flush: no spike applied, values sound
        assert (prices / opening).between(1 / 1.5, 1.5).all()
        assert_sound(reg, lv, values, prices)
    final = lv.prices()
    assert (final[a], final[b]) == (pa * 1.031, pb * 0.97)
    m = stream.metrics()
    assert m["ticks_rejected"] == 5 and m["band_reanchors"] == 0
    assert m["ticks_applied"] == sc.seq - 1  # the client applied them; the band refused 5
    assert m["unsound_updates"] == 0 and m["prices_refused"] == 0


def test_overflowing_sequences_are_recomputed_or_refused_at_every_flush():
    reg = open_demo()
    probe = LiveValuation(reg, publish=False)
    a = biggest_holding(probe)
    pa = probe.prices()[a]
    other = next(s for s in probe.symbols if s != a)
    sc = Script()
    sc.batch((a, 1.5e308))  # its holders' values would be inf: refused
    sc.batch((a, 1e300))  # huge, finite: applied
    sc.batch((a, pa * 1.01), (other, probe.prices()[other] * 1.01))  # cancels: recomputed
    sc.batch((a, 1e300))
    sc.batch((a, 1e-6))  # values collapse to cash: recomputed
    sc.batch((a, pa))
    # a band so wide it lets everything through: the valuation alone keeps values sound
    settings = StreamSettings(flush_interval=0.01, price_band=1e308, resync_every=1000)
    stream, lv = asyncio.run(stream_script(reg, sc.frames, settings))

    assert len(lv.flushes) >= 4
    for values, prices in lv.flushes:
        assert_sound(reg, lv, values, prices)
    assert lv.prices()[a] == pa
    m = stream.metrics()
    assert m["ticks_rejected"] == 0
    assert m["prices_refused"] == 1 and m["unsound_updates"] == 3
    assert m["recomputations"] == m["unsound_updates"]  # no periodic one was due


def test_values_are_recomputed_every_resync_every_flushes():
    reg = open_demo()
    opening = LiveValuation(reg, publish=False).prices()
    sc = Script()
    rng = np.random.default_rng(3)
    for _ in range(12):
        k = rng.choice(len(opening), 3, replace=False)
        sc.batch(*[(opening.index[j], opening.iloc[j] * rng.uniform(0.97, 1.03)) for j in k])
    settings = StreamSettings(flush_interval=0.005, resync_every=3)
    stream, lv = asyncio.run(stream_script(reg, sc.frames, settings))
    m = stream.metrics()
    assert m["batches"] >= 6 and m["unsound_updates"] == 0
    assert m["recomputations"] == m["batches"] // 3
    for values, prices in lv.flushes:
        assert_sound(reg, lv, values, prices)
