"""The conflating buffer: last price wins, bounded symbol table, flush rules, counts."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmkit.errors import ValidationError
from pmkit.stream.buffer import ConflatingBuffer
from pmkit.stream.metrics import StreamMetrics
from pmkit.stream.protocol import TickBlock, decode, tick_message


def batch(symbols, prices, seq=1, ts0=1000.0):
    n = len(symbols)
    return TickBlock(
        seq, list(symbols), np.asarray(prices, float), np.ones(n), ts0 + np.arange(n, dtype=float)
    )


def tick(symbol, price, seq=1, ts=1000.0):
    return TickBlock(seq, [symbol], [float(price)], [1.0], [float(ts)])


def test_last_occurrence_wins_within_one_batch():
    buf = ConflatingBuffer(10)
    # AAPL three times, MSFT twice: the last of each must win, whatever numpy's
    # fancy assignment would pick among duplicates.
    buf.add(batch(["AAPL", "MSFT", "AAPL", "MSFT", "KO", "AAPL"], [1, 2, 3, 4, 5, 6]), now=0.0)
    f = buf.flush()
    assert dict(zip(f.symbols, f.prices.tolist(), strict=True)) == {
        "AAPL": 6.0, "MSFT": 4.0, "KO": 5.0
    }
    assert f.ticks == 6
    assert f.conflated == 3  # 6 ticks became 3 prices
    assert f.first_ts == 1000.0
    assert buf.ticks_conflated == 3 and buf.ticks_received == 6


def test_long_batch_of_one_symbol_keeps_the_last():
    buf = ConflatingBuffer(4)
    prices = np.arange(1.0, 5001.0)
    buf.add(batch(["X"] * 5000, prices), now=0.0)
    f = buf.flush()
    assert f.symbols == ["X"] and f.prices.tolist() == [5000.0]
    assert f.conflated == 4999


def test_conflation_across_blocks_and_flush_resets():
    buf = ConflatingBuffer(10)
    buf.add(tick("AAPL", 10.0, ts=5.0), now=1.0)
    buf.add(batch(["MSFT", "AAPL"], [20.0, 11.0], ts0=6.0), now=1.1)
    buf.add(tick("AAPL", 12.0, ts=8.0), now=1.2)
    assert buf.pending_ticks == 4 and len(buf) == 2
    assert buf.peek() == {"AAPL": 12.0, "MSFT": 20.0}
    f = buf.flush()
    assert f.first_ts == 5.0 and f.ticks == 4 and f.conflated == 2
    assert len(buf) == 0 and buf.pending_ticks == 0 and buf.peek() == {}
    assert buf.flush().symbols == []  # nothing pending: an empty flush
    buf.add(tick("MSFT", 21.0, ts=9.0), now=2.0)
    f = buf.flush()
    assert f.symbols == ["MSFT"] and f.prices.tolist() == [21.0] and f.first_ts == 9.0


def test_symbol_table_is_bounded_and_extra_symbols_are_dropped():
    buf = ConflatingBuffer(3)
    buf.add(batch(["A", "B", "C", "D", "E", "A", "D"], [1, 2, 3, 4, 5, 6, 7]), now=0.0)
    assert buf.symbols == ["A", "B", "C"]
    assert buf.ticks_dropped == 3 and buf.ticks_received == 7
    assert buf.capacity <= 3
    f = buf.flush()
    assert dict(zip(f.symbols, f.prices.tolist(), strict=True)) == {"A": 6.0, "B": 2.0, "C": 3.0}
    assert buf.add(tick("Z", 1.0), now=1.0) == 0
    assert buf.ticks_dropped == 4 and len(buf) == 0
    # a flood of new symbols never grows the table
    buf.add(batch([f"S{i}" for i in range(10_000)], np.ones(10_000)), now=2.0)
    assert len(buf.symbols) == 3 and buf.capacity <= 3 and buf.ticks_dropped == 10_004


def test_preassigned_symbols_take_the_first_slots():
    buf = ConflatingBuffer(5, ["KO", "AAPL"])
    buf.add(batch(["AAPL", "NEW", "KO"], [1, 2, 3]), now=0.0)
    f = buf.flush()
    assert buf.symbols == ["KO", "AAPL", "NEW"]
    assert f.slots.tolist() == [0, 1, 2] and f.symbols == ["KO", "AAPL", "NEW"]
    assert f.prices.tolist() == [3.0, 1.0, 2.0]
    with pytest.raises(ValidationError):
        ConflatingBuffer(1, ["A", "B"])
    with pytest.raises(ValidationError):
        ConflatingBuffer(0)


def test_due_by_size_and_by_interval():
    buf = ConflatingBuffer(10)
    assert not buf.due(100.0, flush_size=3, flush_interval=0.5)  # empty: never due
    assert buf.deadline(0.5) == math.inf
    buf.add(tick("A", 1.0), now=10.0)
    buf.add(tick("A", 2.0), now=10.1)
    assert not buf.due(10.2, flush_size=3, flush_interval=0.5)
    assert buf.deadline(0.5) == pytest.approx(10.5)
    assert buf.due(10.5, flush_size=3, flush_interval=0.5)  # interval from the first tick
    buf.add(tick("A", 3.0), now=10.2)
    assert buf.due(10.2, flush_size=3, flush_interval=0.5)  # size: 3 ticks, one symbol
    buf.flush()
    assert not buf.due(10.2, flush_size=3, flush_interval=0.5)
    buf.add(tick("B", 1.0), now=20.0)
    assert not buf.due(20.4, flush_size=3, flush_interval=0.5)
    assert buf.due(20.5, flush_size=3, flush_interval=0.5)


def test_snapshot_is_stored_but_not_counted_as_ticks():
    buf = ConflatingBuffer(10)
    kind, snap = decode(
        '{"type":"snapshot","seq":4,"symbols":["A","B"],"prices":[1.5,2.5],"ts":77.0}'
    )
    assert kind == "snapshot"
    buf.add_snapshot(snap, now=0.0)
    assert buf.ticks_received == 0 and buf.pending_ticks == 0 and len(buf) == 2
    assert buf.due(1.0, flush_size=10, flush_interval=0.5)
    f = buf.flush()
    assert f.ticks == 0 and f.first_ts == 77.0 and f.prices.tolist() == [1.5, 2.5]


def test_decoded_tick_frames_take_the_single_tick_path():
    buf = ConflatingBuffer(10)
    for i, p in enumerate([3.0, 4.0, 5.0]):
        _, b = decode(tick_message(i + 1, "AAPL", p, 100, 50.0 + i))
        buf.add(b, now=float(i))
    f = buf.flush()
    assert f.prices.tolist() == [5.0] and f.ticks == 3 and f.conflated == 2 and f.first_ts == 50.0


ops = st.lists(
    st.one_of(
        st.lists(
            st.tuples(st.sampled_from("ABCDEFG"), st.floats(0.01, 1e4, allow_nan=False)),
            min_size=1, max_size=30,
        ),
        st.just("flush"),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(ops=ops, max_symbols=st.integers(1, 8))
def test_matches_a_dict_model(ops, max_symbols):
    """Against a plain dict: last write wins, first ``max_symbols`` symbols kept, counts add up."""
    buf = ConflatingBuffer(max_symbols)
    table: list[str] = []
    model: dict[str, float] = {}
    ticks = dropped = total_entries = 0
    seq = 1
    for op in ops:
        if op == "flush":
            f = buf.flush()
            assert dict(zip(f.symbols, f.prices.tolist(), strict=True)) == model
            assert f.conflated == f.ticks - len(model)
            total_entries += len(model)
            model = {}
            continue
        syms = [s for s, _ in op]
        prices = [p for _, p in op]
        block = tick(syms[0], prices[0], seq) if len(op) == 1 else batch(syms, prices, seq)
        seq += len(op)
        buf.add(block, now=0.0)
        for s, p in op:
            ticks += 1
            if s not in table and len(table) < max_symbols:
                table.append(s)
            if s in table:
                model[s] = p
            else:
                dropped += 1
        assert buf.peek() == model
    assert buf.symbols == table
    assert buf.ticks_received == ticks and buf.ticks_dropped == dropped
    # every stored tick is either delivered as an entry, superseded, or still pending
    assert buf.ticks_conflated + total_entries + len(buf) == ticks - dropped


def test_absorbing_a_1000_tick_batch_is_vectorized():
    """Measured, not asserted as a timing: report the per-batch cost for the record."""
    symbols = [f"S{i:03d}" for i in range(500)]
    rng = np.random.default_rng(0)
    buf = ConflatingBuffer(1000, symbols)
    blocks = [
        batch([symbols[j] for j in rng.integers(0, 500, 1000)], rng.uniform(1, 2, 1000))
        for _ in range(50)
    ]
    t0 = time.perf_counter()
    for b in blocks:
        buf.add(b, now=0.0)
    per_batch_us = (time.perf_counter() - t0) / len(blocks) * 1e6
    print(f"\nabsorb: {per_batch_us:.0f} us per 1000-tick batch")
    assert buf.ticks_received == 50_000
    assert len(buf) <= 500


def test_metrics_latency_window_is_bounded_and_percentiles_match_numpy():
    m = StreamMetrics(window=100)
    for x in range(1, 301):
        m.record_latency(float(x))
    lat = m.latency()
    assert lat["samples"] == 100
    kept = np.arange(201.0, 301.0)  # only the last 100 samples
    assert lat["p50_ms"] == pytest.approx(np.percentile(kept, 50))
    assert lat["p99_ms"] == pytest.approx(np.percentile(kept, 99))
    d = m.as_dict()
    assert d["latency_p95_ms"] == pytest.approx(np.percentile(kept, 95))
    assert d["latency_ms"]["p95"] == d["latency_p95_ms"] and d["latency_ms"]["samples"] == 100
    assert d["ticks_received"] == 0 and "queue_depth" in d
    m.latencies.clear()  # a warm-up is discarded this way
    assert m.latency()["samples"] == 0
    assert math.isnan(StreamMetrics().as_dict()["latency_p50_ms"])


def test_metrics_publish_a_global_event():
    from pmkit.events import EventBus

    bus = EventBus()
    got = []
    bus.subscribe("stream.metrics", got.append)
    bus.subscribe("stream.metrics", lambda e: got.append("portfolio-only"), portfolio="p/x")
    m = StreamMetrics()
    m.gaps = 2
    m.publish(bus, source="test")
    assert len(got) == 1
    ev = got[0]
    assert ev.portfolio is None and ev.group is None
    assert ev.payload["gaps"] == 2 and ev.payload["source"] == "test"
