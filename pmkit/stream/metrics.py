"""Streaming metrics: counters, queue depth and end-to-end latency percentiles.

One `StreamMetrics` per stream. The client and the live stream increment
plain integer attributes (no locking on the hot path: only the stream's event
loop writes them); readers in other threads get a consistent-enough copy with
`StreamMetrics.as_dict`, and `StreamMetrics.publish` sends the same dict as a
global ``"stream.metrics"`` event.

Latency is measured per flush, from the ``ts`` of the oldest tick in it (the
feed's own clock, epoch seconds) to the moment the portfolio events of that
flush were published: the worst case within the flush. Percentiles are over
the last `LATENCY_WINDOW` flushes (a bounded deque), so memory stays constant
however long the stream runs.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

__all__ = ["COUNTERS", "LATENCY_WINDOW", "METRICS_TOPIC", "StreamMetrics"]

#: Topic of the metrics event (published globally: no portfolio, no group).
METRICS_TOPIC = "stream.metrics"
#: Latency samples kept for the percentiles (the most recent ones).
LATENCY_WINDOW = 10_000

#: Integer counters, in `as_dict` order.
COUNTERS = (
    "ticks_received",  # ticks in well-formed data frames, duplicates included
    "ticks_applied",  # ticks handed on, each sequence number at most once
    "ticks_skipped",  # ticks of duplicate or late frames, not handed on
    "ticks_conflated",  # superseded in the buffer by a later tick of the same symbol
    "ticks_dropped",  # refused by the buffer (symbol table full)
    "frames",  # frames received, all kinds
    "batches",  # flushes delivered to the valuation
    "connects",  # sessions established (subscribe answered)
    "reconnects",  # sessions established after a lost one
    "connect_failures",  # connection attempts that failed
    "disconnects",  # sessions lost (closed by the peer, network, or heartbeat timeout)
    "heartbeat_timeouts",  # sessions closed for silence
    "heartbeats",
    "gaps",  # missing sequence ranges detected
    "resyncs",  # snapshot requests sent after a gap
    "snapshots",  # snapshots applied (subscribe answers and resyncs)
    "duplicates",  # data frames already applied
    "out_of_order",  # data frames arriving after a later one
    "malformed",  # frames that failed to parse
    "errors",  # error frames from the feed
    "ui_updates",  # throttled UI callbacks fired
    "risk_checks",
    "ticks_rejected",  # prices outside streaming.price_band of the last good one, not applied
    "band_reanchors",  # confirmed new levels (streaming.price_band_confirm rejections in a row)
    "recomputations",  # full recomputations of the live values (periodic or forced)
    "unsound_updates",  # incremental updates that were not finite or cancelled: recomputed
    "prices_refused",  # flush prices refused because the values they give overflow
)


class StreamMetrics:
    """Counters and latency of one stream (see the module docstring).

    Attributes
    ----------
    queue_depth : int
        Ticks buffered and not yet flushed (set by the live stream).
    buffered_symbols : int
        Distinct symbols buffered and not yet flushed.
    latencies : collections.deque of float
        The latency window (ms), newest last, at most ``window`` samples;
        clear it to restart the percentiles (e.g. after a warm-up).
    """

    def __init__(self, window: int = LATENCY_WINDOW) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self.queue_depth = 0
        self.buffered_symbols = 0
        self.max_queue_depth = 0
        self.latencies: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def record_latency(self, ms: float) -> None:
        """Add one end-to-end latency sample (milliseconds)."""
        with self._lock:
            self.latencies.append(float(ms))

    def set_queue(self, depth: int, symbols: int) -> None:
        """Record the buffer's current depth (ticks) and distinct symbols."""
        self.queue_depth = depth
        self.buffered_symbols = symbols
        if depth > self.max_queue_depth:
            self.max_queue_depth = depth

    def latency(self) -> dict[str, float]:
        """``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms`` over the window (NaN when empty)."""
        with self._lock:
            samples = np.array(self.latencies, dtype=np.float64)
        if samples.size == 0:
            return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"),
                    "max_ms": float("nan"), "samples": 0}
        p50, p95, p99 = np.percentile(samples, [50, 95, 99])
        return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99),
                "max_ms": float(samples.max()), "samples": int(samples.size)}

    def as_dict(self) -> dict[str, Any]:
        """Every counter, the queue depth and the latency percentiles.

        Latency appears flat (``latency_p50_ms``, ``latency_p95_ms``,
        ``latency_p99_ms``, ``latency_max_ms``, ``latency_samples``) and as
        ``latency_ms = {"p50", "p95", "p99", "max", "samples"}``.
        """
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        out["queue_depth"] = self.queue_depth
        out["max_queue_depth"] = self.max_queue_depth
        out["buffered_symbols"] = self.buffered_symbols
        lat = self.latency()
        for k, v in lat.items():
            out[f"latency_{k}"] = v
        out["latency_ms"] = {k.removesuffix("_ms"): v for k, v in lat.items()}
        return out

    def publish(self, bus: Any, **extra: Any) -> None:
        """Publish `as_dict` (plus ``extra``) as a global ``"stream.metrics"`` event."""
        from pmkit.events import Event

        bus.publish(Event(METRICS_TOPIC, payload={**self.as_dict(), **extra}))
