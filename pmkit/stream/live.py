"""Live portfolio valuation from a market-data stream: client → buffer → valuation.

`LiveStream` wires the pieces of `pmkit.stream` together:

* a `pmkit.stream.client.StreamClient` subscribed to the universe the active
  portfolios hold (``LiveValuation.symbols``) writes every tick into a
  `pmkit.stream.buffer.ConflatingBuffer` (the latest price per symbol wins);
* ticks and snapshot prices outside ``price_band`` of their symbol's last good
  price (`pmkit.stream.band.PriceBand`, seeded with the valuation's opening
  prices) are rejected before the buffer and counted (``ticks_rejected``);
* a flush task hands the buffer to ``LiveValuation.update`` when
  ``flush_size`` ticks arrived or ``flush_interval`` seconds passed since
  the first unflushed one, whichever comes first. The update runs in one
  worker thread, so the event loop keeps reading the socket meanwhile: an
  overloaded consumer sees fewer, fresher prices, and memory stays bounded by
  the number of symbols, not by the tick rate;
* every ``resync_every`` flushes the live values are recomputed from scratch
  (``LiveValuation.resync``; the valuation also recomputes at once after an
  unsound update), so they equal ``H @ p + cash`` at every flush;
* a risk task calls ``LiveValuation.check_limits`` every ``risk_interval``
  seconds (in the same worker, so it never overlaps an update);
* UI callbacks registered with `LiveStream.on_update` are throttled to
  ``ui_max_rate`` calls per second; updates in between are coalesced (the
  callback gets the latest one, and always the last);
* `pmkit.stream.metrics.StreamMetrics` are available as `LiveStream.metrics`
  and published as a global ``"stream.metrics"`` event every
  ``metrics_interval`` seconds.

End-to-end latency is measured per flush: from the feed ``ts`` of the oldest
tick in it to the return of ``LiveValuation.update`` (which has published
the portfolio events by then).

All options come from the registry's streaming settings
(`pmkit.stream.settings.StreamSettings.from_registry`) unless given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from pmkit.stream.band import PriceBand
from pmkit.stream.buffer import ConflatingBuffer, Flush
from pmkit.stream.client import StreamClient
from pmkit.stream.metrics import StreamMetrics
from pmkit.stream.protocol import FeedAdapter, TickBlock, pmkit_adapter
from pmkit.stream.settings import StreamSettings

__all__ = ["DEFAULT_URL", "LiveStream"]

log = logging.getLogger(__name__)

#: Where ``pmkit feed`` listens by default.
DEFAULT_URL = "ws://127.0.0.1:8765"


class _Done:
    """An awaitable that is already complete (`LiveStream.stop` in thread mode)."""

    def __await__(self):
        return iter(())


class LiveStream:
    """Stream prices into a `LiveValuation` (see the module docstring).

    Parameters
    ----------
    registry : Registry
        Source of the settings, the portfolios and the event bus.
    url : str, optional
        Feed URL for the default adapter (``ws://127.0.0.1:8765``).
    adapter : FeedAdapter, optional
        Another feed; overrides ``url``.
    settings : StreamSettings, optional
        Default: the registry's streaming settings.
    valuation : LiveValuation, optional
        Default: ``LiveValuation(registry)`` (active portfolios the user may view).
    symbols : sequence of str, optional
        Universe to subscribe to; default ``valuation.symbols``.
    metrics_interval : float or None, default 1.0
        Seconds between ``"stream.metrics"`` events; None publishes none.
    seed : int, optional
        Seeds the reconnect jitter.

    Attributes
    ----------
    valuation : LiveValuation
    buffer : ConflatingBuffer
    client : StreamClient
    error : BaseException or None
        What ended the stream, when it failed (thread mode).
    last_update : object
        The latest ``ValuationUpdate``.
    """

    def __init__(
        self,
        registry: Any,
        *,
        url: str | None = None,
        adapter: FeedAdapter | None = None,
        settings: StreamSettings | None = None,
        valuation: Any = None,
        symbols: Sequence[str] | None = None,
        metrics_interval: float | None = 1.0,
        seed: int | None = None,
    ) -> None:
        self.registry = registry
        self.settings = settings if settings is not None else StreamSettings.from_registry(registry)
        if valuation is None:
            from pmkit.stream.valuation import LiveValuation

            valuation = LiveValuation(registry)
        self.valuation = valuation
        self.symbols = list(dict.fromkeys(symbols if symbols is not None else valuation.symbols))
        self.adapter = adapter if adapter is not None else pmkit_adapter(url or DEFAULT_URL)
        self._metrics = StreamMetrics()
        tracked = list(valuation.symbols)
        s = self.settings
        self.band = PriceBand(float(s.price_band), int(s.price_band_confirm))
        prices = getattr(valuation, "prices", None)
        if callable(prices):  # the opening prices are the first good ones
            self.band.seed(np.arange(len(tracked)), np.asarray(prices(), dtype=np.float64))
        # Slots 0..n-1 are the valuation's columns; a wider subscription gets further slots.
        self.buffer = ConflatingBuffer(
            max(s.buffer_symbols, len(tracked)), tracked, band=self.band
        )
        self._since_resync = 0
        self._columns = np.arange(len(tracked), dtype=np.int64)
        self._applied = np.full(len(tracked), np.nan)  # last price handed to the valuation
        self.client = StreamClient(
            self.adapter, self.symbols, self.settings, self._on_block, self._metrics,
            self._on_snapshot, seed=seed,
        )
        self.metrics_interval = metrics_interval
        self.last_update: Any = None
        self.error: BaseException | None = None
        self._callbacks: list[Callable[[Any], Any]] = []
        self._ui_pending = False
        self._wake: asyncio.Event | None = None
        self._ui_wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._worker: ThreadPoolExecutor | None = None

    # -- public ----------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Counters, queue depth and latency percentiles (`StreamMetrics.as_dict`)."""
        return self._metrics.as_dict()

    def on_update(self, callback: Callable[[Any], Any]) -> Callable[[], None]:
        """Call ``callback(update)`` after flushes, at most ``ui_max_rate`` times a second.

        Flushes between two calls are coalesced: the callback receives the
        latest ``ValuationUpdate`` (read ``valuation.values()`` for the full
        state), and always the one of the last flush. Callbacks run on the
        stream's event loop; one that raises is logged and kept.

        Returns
        -------
        callable
            Call it to unregister.
        """
        self._callbacks.append(callback)

        def cancel() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return cancel

    def last_prices(self) -> dict[str, float]:
        """The latest price handed to the valuation per symbol (those priced so far)."""
        syms = self.valuation.symbols
        return {s: float(p) for s, p in zip(syms, self._applied, strict=False) if p == p}

    @property
    def running(self) -> bool:
        """Whether `run` is in progress."""
        return self._stop is not None and not self._done.is_set()

    def _state_text(self) -> str:
        if self.running:
            return "running"
        if self.error is not None:
            return f"failed: {type(self.error).__name__}: {self.error}"
        return "stopped" if self._done.is_set() else "not started"

    def __repr__(self) -> str:
        m = self._metrics
        return (
            f"LiveStream({self.adapter.url}, {self._state_text()}, {len(self.symbols)} symbols,"
            f" {len(self.valuation.portfolios)} portfolios, {m.ticks_received} ticks,"
            f" {m.batches} updates)"
        )

    def _repr_html_(self) -> str:
        import html

        m = self.metrics()
        rows = [
            ("state", self._state_text()),
            ("feed", self.adapter.url),
            ("symbols", len(self.symbols)),
            ("portfolios", len(self.valuation.portfolios)),
            ("ticks received", m["ticks_received"]),
            ("valuation updates", m["batches"]),
            ("reconnects", m["reconnects"]),
            ("latency p50 / p99 (ms)", f"{m['latency_p50_ms']:.1f} / {m['latency_p99_ms']:.1f}"),
        ]
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        out = f"<b>LiveStream</b><table>{body}</table>"
        frame = getattr(self.valuation, "frame", None)
        if callable(frame) and self.last_update is not None:  # values only once prices arrived
            out += frame().to_html(float_format=lambda x: f"{x:,.2f}")
        return out

    # -- asyncio ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Stream until `stop`; raise what ended the client (`StreamError`, `UnknownAssetError`)."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._ui_wake = asyncio.Event()
        self._done.clear()
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="pmkit-live")
        warm = getattr(self.valuation, "warm", None)
        if callable(warm):  # compile the kernels while connecting, not on the first flush
            self._worker.submit(warm)
        # fills and cash flows booked while streaming (a broker's FillRecorder publishes
        # ledger events) update holdings through the same valuation and event path
        attach = getattr(self.valuation, "attach", None)
        attached_here = callable(attach) and not getattr(self.valuation, "attached", True)
        if attached_here:
            attach()
        client = asyncio.create_task(self.client.run(self._stop), name="pmkit-stream-client")
        flusher = asyncio.create_task(self._flush_loop(), name="pmkit-stream-flush")
        helpers = [
            asyncio.create_task(self._ui_loop(), name="pmkit-stream-ui"),
            asyncio.create_task(self._risk_loop(), name="pmkit-stream-risk"),
        ]
        if self.metrics_interval:
            helpers.append(asyncio.create_task(self._metrics_loop(), name="pmkit-stream-metrics"))
        try:
            await client  # returns once stop is set; raises when the client gives up
            if self.error is not None:
                raise self.error
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self._stop.set()
            self._wake.set()
            # never cancel a flush half-way: its update may already be running in the worker
            await asyncio.gather(flusher, return_exceptions=True)
            for t in helpers:
                t.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._flush()  # what arrived before the stop still counts
                self._fire_ui()
            if self.metrics_interval:
                with contextlib.suppress(Exception):
                    self._metrics.publish(self.registry.bus, final=True)
            self._worker.shutdown(wait=True)
            if attached_here:
                self.valuation.detach()
            self._done.set()

    def stop(self, timeout: float = 10.0) -> Any:
        """Stop the stream (final flush included).

        In thread mode (`start_in_thread`) this blocks until the thread ended.
        Otherwise it signals the running `run` and returns an awaitable that
        completes when it has ended: ``await stream.stop()``.
        """
        loop, stop = self._loop, self._stop
        if stop is None or loop is None or (self._thread is None and self._done.is_set()):
            return _Done()  # never started, or already ended: stopping again is a no-op
        if self._thread is not None:
            if loop.is_running():
                loop.call_soon_threadsafe(stop.set)
            if threading.current_thread() is self._thread:
                return _Done()  # called from a callback on the stream itself: cannot join
            self._thread.join(timeout)
            self._thread = None
            return _Done()
        stop.set()
        return loop.create_task(self._wait_done())

    async def _wait_done(self) -> None:
        while not self._done.is_set():
            await asyncio.sleep(0.01)

    # -- thread mode (notebooks) -----------------------------------------------------------
    def start_in_thread(self) -> LiveStream:
        """Run the stream on its own event loop in a daemon thread; returns at once.

        Stop it with `stop`; a failure is kept in `error` (and re-raised by `wait_for`).
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the stream is already running in a thread")
        started = threading.Event()

        def main() -> None:
            async def go() -> None:
                task = asyncio.create_task(self.run())
                started.set()
                with contextlib.suppress(BaseException):
                    await task

            try:
                asyncio.run(go())
            finally:
                started.set()
                self._done.set()

        self.error = None
        self._stop = None  # a previous run's event must not be mistaken for this one's
        self._done.clear()
        self._thread = threading.Thread(target=main, name="pmkit-live-stream", daemon=True)
        self._thread.start()
        started.wait(10.0)
        # ``run`` creates its events on the loop; wait until they exist so `stop` can reach them
        deadline = time.monotonic() + 10.0
        while self._stop is None and not self._done.is_set() and time.monotonic() < deadline:
            time.sleep(0.001)
        return self

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.01
    ) -> None:
        """Block until ``predicate()`` is true (thread mode; for tests and notebooks).

        Raises
        ------
        TimeoutError
            Not true within ``timeout`` seconds (the message has the metrics).
        Exception
            What ended the stream, when it failed meanwhile.
        """
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return
            if self.error is not None:
                raise self.error
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s; {self.metrics()}")
            time.sleep(interval)

    # -- pipeline --------------------------------------------------------------------------
    def _on_block(self, block: TickBlock) -> None:
        buf = self.buffer
        buf.add(block, time.monotonic())
        self._sync_counts()
        if buf.pending_ticks >= self.settings.flush_size:
            self._wake.set()  # type: ignore[union-attr]

    def _on_snapshot(self, block: TickBlock) -> None:
        self.buffer.add_snapshot(block, time.monotonic())
        self._sync_counts()
        self._wake.set()  # type: ignore[union-attr]  # a resync should show at once

    def _sync_counts(self) -> None:
        buf, m = self.buffer, self._metrics
        m.ticks_conflated = buf.ticks_conflated
        m.ticks_dropped = buf.ticks_dropped
        m.ticks_rejected = self.band.rejected
        m.band_reanchors = self.band.reanchored
        m.set_queue(buf.pending_ticks, len(buf))

    async def _flush_loop(self) -> None:
        """Flush when due; the wait is bounded by ``flush_interval`` each turn."""
        s = self.settings
        buf = self.buffer
        wake, stop = self._wake, self._stop
        assert wake is not None and stop is not None
        while not stop.is_set():
            now = time.monotonic()
            if buf.due(now, s.flush_size, s.flush_interval):
                try:
                    await self._flush()
                except Exception as exc:  # a failing valuation ends the stream, loudly
                    log.exception("stream: flush failed")
                    self.error = exc
                    stop.set()
                    return
                continue
            wait = min(buf.deadline(s.flush_interval) - now, s.flush_interval)
            wake.clear()
            if stop.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(wait, 0.0))

    def _columns_of(self, f: Flush) -> tuple[np.ndarray, np.ndarray]:
        """Valuation columns and prices of a flush (symbols the valuation lacks left out)."""
        n = len(self.buffer.symbols)
        if len(self._columns) < n:  # symbols outside the valuation got slots
            extra = self.valuation.index(self.buffer.symbols[len(self._columns):])
            self._columns = np.concatenate([self._columns, np.asarray(extra, dtype=np.int64)])
        cols = self._columns[f.slots]
        keep = cols >= 0
        return cols[keep], f.prices[keep]

    async def _flush(self) -> None:
        f = self.buffer.flush()
        self._sync_counts()
        if len(f) == 0:
            return
        cols, prices = self._columns_of(f)
        if len(cols) == 0:
            return
        loop = asyncio.get_running_loop()
        update = await loop.run_in_executor(self._worker, self._update, cols, prices, f.first_ts)
        self._metrics.record_latency((time.time() - f.first_ts) * 1e3)
        self._metrics.batches += 1
        if len(self._applied) < len(self.valuation.symbols):  # the valuation gained assets
            self._applied = np.concatenate(
                [self._applied, np.full(len(self.valuation.symbols) - len(self._applied), np.nan)]
            )
        self._applied[cols] = prices
        self.last_update = update
        if self._callbacks:
            self._ui_pending = True
            self._ui_wake.set()  # type: ignore[union-attr]

    def _update(self, cols: np.ndarray, prices: np.ndarray, ts: float) -> Any:
        """One flush in the worker: the update, then a full recomputation when one is due."""
        v = self.valuation
        update = v.update(cols, prices, ts)
        self._since_resync += 1
        resync = getattr(v, "resync", None)
        if callable(resync) and self._since_resync >= self.settings.resync_every:
            resync()
            self._since_resync = 0
        m = self._metrics
        for name in ("recomputations", "unsound_updates", "prices_refused"):
            setattr(m, name, getattr(v, name, 0))
        return update

    async def _ui_loop(self) -> None:
        """Fire UI callbacks at most ``ui_max_rate`` times a second (trailing edge kept)."""
        period = 1.0 / self.settings.ui_max_rate
        wake = self._ui_wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            self._fire_ui()
            await asyncio.sleep(period)

    def _fire_ui(self) -> None:
        if not self._ui_pending:
            return
        self._ui_pending = False
        self._metrics.ui_updates += 1
        update = self.last_update
        for cb in list(self._callbacks):
            try:
                cb(update)
            except Exception:
                log.exception("stream: UI callback %r failed", cb)

    async def _risk_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.settings.risk_interval)
            try:
                await loop.run_in_executor(self._worker, self.valuation.check_limits)
                self._metrics.risk_checks += 1
            except Exception:
                log.exception("stream: risk check failed")

    async def _metrics_loop(self) -> None:
        assert self.metrics_interval is not None
        while True:
            await asyncio.sleep(self.metrics_interval)
            try:
                self._metrics.publish(self.registry.bus)
            except Exception:
                log.exception("stream: publishing metrics failed")
