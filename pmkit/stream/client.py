"""The asyncio streaming client: subscribe, keep the sequence whole, reconnect.

`StreamClient.run` keeps one WebSocket session to a feed (through a
`pmkit.stream.protocol.FeedAdapter`) until a stop event is set:

1. **Connect and subscribe.** A connection attempt is bounded by
   ``connect_timeout``; the ``subscribe`` frame names the whole universe. An
   ``unknown_symbol`` error frame raises `pmkit.errors.UnknownAssetError`
   naming the symbols, at once (retrying cannot fix it).
2. **Sequence.** Sequence numbers are per connection; a snapshot sets the
   next expected number (``snapshot.seq + 1``) and is applied as prices.
   A data frame

   * at the expected number is applied (and any frames it unblocks);
   * entirely below it is skipped: a *duplicate* when a frame starting there
     was applied recently, else *out of order* (it arrived after the gap it
     left was resolved). A frame straddling the expected number has its
     already-seen prefix skipped and the rest applied;
   * above it opens a *gap*. The frame is held in a small reorder window
     (at most ``reorder_window`` frames, ``reorder_wait`` seconds): a frame
     that was merely overtaken fills the gap, is counted as out of order and
     applied in sequence, so no tick is lost or applied twice. When the window
     overflows, the wait expires, or a heartbeat shows ticks were sent that
     never came, the gap is real: it is counted, the held frames are applied
     (they are newer than anything applied), and a snapshot is requested
     (``adapter.resync``); the snapshot, when it comes, overrides every
     price and resets the expected number.

   A frame that does not parse is counted as malformed and skipped.
3. **Liveness.** No frame for ``heartbeat_timeout`` seconds closes the
   session (the server sends heartbeats when idle, so silence means a dead
   link) and the client reconnects.
4. **Reconnect.** After a lost session or a failed attempt the client waits
   `backoff_delay` (exponential from ``reconnect_initial``, capped at
   ``reconnect_max``, randomized by ``± reconnect_jitter``) and connects
   again; the new session resubscribes and its first snapshot resynchronizes
   every price. ``max_reconnects`` consecutive failed attempts raise
   `StreamError`.

Bounds of every loop
--------------------
* connection attempts: at most ``max_reconnects`` consecutive failures, each
  at most ``connect_timeout`` + ``reconnect_max`` seconds;
* one receive: at most ``heartbeat_timeout`` seconds (the watchdog closes
  the session otherwise);
* the reorder window: at most ``reorder_window`` frames for at most
  ``reorder_wait`` seconds (checked on every frame and by the watchdog);
* duplicate detection remembers the last ``reorder_window * 4`` applied
  frame starts (memory bound);
* the session loop runs while frames arrive: a stream is meant to run until
  its stop event is set (that is its only unbounded loop; setting the event
  ends it within ``close_timeout`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from pmkit.errors import PmkitError, UnknownAssetError
from pmkit.stream.metrics import StreamMetrics
from pmkit.stream.protocol import FeedAdapter, ProtocolError, TickBlock
from pmkit.stream.settings import StreamSettings

__all__ = ["StreamClient", "StreamError", "backoff_delay"]

log = logging.getLogger(__name__)

#: Seconds a closing session waits for the peer's close frame.
CLOSE_TIMEOUT = 0.5
#: Largest frame accepted (bytes): a snapshot of 100,000 symbols fits.
MAX_FRAME = 2**24


class StreamError(PmkitError, ConnectionError):
    """The stream gave up: ``attempts`` consecutive connection attempts to ``url`` failed.

    Attributes
    ----------
    url : str
    attempts : int
    reason : str
        The last failure.
    """

    def __init__(self, url: str, attempts: int, reason: str) -> None:
        self.url = url
        self.attempts = attempts
        self.reason = reason
        super().__init__(
            f"gave up on {url} after {attempts} failed connection attempts; last: {reason}"
        )


def backoff_delay(attempt: int, settings: StreamSettings, rng: random.Random) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (1 = the first retry).

    The base doubles from ``reconnect_initial`` and is capped at
    ``reconnect_max``; it is then scaled by a uniform factor in
    ``[1 - reconnect_jitter, 1 + reconnect_jitter]`` (so many clients do not
    reconnect in lockstep) and capped at ``reconnect_max`` again.

    Returns
    -------
    float
        In ``[reconnect_initial * (1 - reconnect_jitter), reconnect_max]``.
    """
    base = settings.reconnect_initial * 2.0 ** min(max(attempt - 1, 0), 60)
    base = min(base, settings.reconnect_max)
    j = settings.reconnect_jitter
    return min(base * (1.0 + j * rng.uniform(-1.0, 1.0)), settings.reconnect_max)


class _Session:
    """Sequence state of one connection."""

    __slots__ = ("expected", "gap_since", "last_rx", "pending", "recent", "recent_set",
                 "resyncing", "timed_out", "ws")

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.expected: int | None = None  # next sequence number; None until the first snapshot
        self.pending: dict[int, TickBlock] = {}  # frames above ``expected``, by first seq
        self.gap_since = 0.0
        self.recent: deque[int] = deque()
        self.recent_set: set[int] = set()
        self.resyncing = False
        self.timed_out = False
        self.last_rx = time.monotonic()


class StreamClient:
    """A reconnecting, sequence-checking feed client (see the module docstring).

    Parameters
    ----------
    adapter : FeedAdapter
        How to talk to the feed (`pmkit.stream.protocol.pmkit_adapter` for ``pmkit feed``).
    symbols : sequence of str
        The universe to subscribe to.
    settings : StreamSettings
        Timeouts, backoff and ``max_reconnects``.
    on_block : callable
        ``on_block(block: TickBlock)``, called on the event loop with ticks in
        sequence order, each sequence number at most once per connection.
    metrics : StreamMetrics, optional
        Counters to update (a new one by default; see `metrics`).
    on_snapshot : callable, optional
        ``on_snapshot(block)`` for snapshot prices; default ``on_block``.
    reorder_window : int, default 16
        Most frames held while waiting for an overtaken frame.
    reorder_wait : float, default 0.2
        Most seconds to wait for it.
    seed : int, optional
        Seeds the backoff jitter (reproducible tests).
    """

    def __init__(
        self,
        adapter: FeedAdapter,
        symbols: Sequence[str],
        settings: StreamSettings,
        on_block: Callable[[TickBlock], Any],
        metrics: StreamMetrics | None = None,
        on_snapshot: Callable[[TickBlock], Any] | None = None,
        *,
        reorder_window: int = 16,
        reorder_wait: float = 0.2,
        seed: int | None = None,
    ) -> None:
        self.adapter = adapter
        self.symbols = list(dict.fromkeys(symbols))
        self.settings = settings
        self.on_block = on_block
        self.on_snapshot = on_snapshot or on_block
        self.metrics = metrics if metrics is not None else StreamMetrics()
        self.reorder_window = int(reorder_window)
        self.reorder_wait = float(reorder_wait)
        self._rng = random.Random(seed)
        self.attempts = 0  # connection attempts in total
        self.connected = False

    # -- the outer loop --------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Stream until ``stop`` is set.

        Raises
        ------
        UnknownAssetError
            The feed refused symbols of the subscription.
        StreamError
            ``max_reconnects`` consecutive connection attempts failed.
        """
        s = self.settings
        m = self.metrics
        failures = 0
        had_session = False
        while not stop.is_set():
            self.attempts += 1
            try:
                ws = await self._connect()
            except (OSError, TimeoutError, _handshake_errors()) as exc:
                failures += 1
                m.connect_failures += 1
                log.info("stream: connect to %s failed (%d): %r", self.adapter.url, failures, exc)
                limit = s.max_reconnects
                if limit is not None and failures >= max(limit, 1):
                    raise StreamError(self.adapter.url, failures, repr(exc)) from exc
                await _sleep_or_stop(stop, backoff_delay(failures, s, self._rng))
                continue
            session = _Session(ws)
            subscribed = False
            try:
                subscribed = await self._session(session, stop, had_session)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await ws.close()
            if subscribed:
                failures = 0
                had_session = True
            if stop.is_set():
                return
            m.disconnects += 1
            failures += 0 if subscribed else 1
            limit = s.max_reconnects
            if limit is not None and failures >= max(limit, 1):
                raise StreamError(self.adapter.url, failures, "sessions closed before subscribing")
            await _sleep_or_stop(stop, backoff_delay(max(failures, 1), s, self._rng))

    async def _connect(self) -> Any:
        from websockets.asyncio.client import connect

        timeout = self.settings.connect_timeout
        return await asyncio.wait_for(
            connect(
                self.adapter.url,
                open_timeout=timeout,
                close_timeout=CLOSE_TIMEOUT,
                max_size=MAX_FRAME,
                compression=None,
                ping_interval=None,  # the feed's heartbeats and our watchdog do this job
            ),
            timeout,
        )

    # -- one session -----------------------------------------------------------------------
    async def _session(self, ss: _Session, stop: asyncio.Event, had_session: bool) -> bool:
        """Run one connection; True once it was subscribed (a snapshot or data came)."""
        from websockets.exceptions import ConnectionClosed

        m = self.metrics
        await ss.ws.send(self.adapter.subscribe(self.symbols))
        watchdog = asyncio.create_task(self._watchdog(ss, stop))
        subscribed = False
        parse = self.adapter.parse
        try:
            while True:
                try:
                    frame = await ss.ws.recv()
                except ConnectionClosed:
                    break
                ss.last_rx = time.monotonic()
                m.frames += 1
                try:
                    kind, payload = parse(frame)
                except ProtocolError:
                    m.malformed += 1
                    continue
                if kind == "tick" or kind == "batch":
                    if not subscribed:
                        subscribed = self._subscribed(had_session)
                    await self._on_data(ss, payload)
                elif kind == "snapshot":
                    if not subscribed:
                        subscribed = self._subscribed(had_session)
                    self._on_snapshot(ss, payload)
                elif kind == "heartbeat":
                    m.heartbeats += 1
                    await self._on_heartbeat(ss, payload)
                elif kind == "error":
                    m.errors += 1
                    if payload.get("code") == "unknown_symbol":
                        bad = payload.get("symbols") or []
                        raise UnknownAssetError(
                            "symbols", bad, f"not served by {self.adapter.url}: "
                            f"{payload.get('message', '')}",
                        )
                    log.warning("stream: feed error %s", payload)
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        if ss.timed_out:
            m.heartbeat_timeouts += 1
        return subscribed

    def _subscribed(self, had_session: bool) -> bool:
        self.connected = True
        self.metrics.connects += 1
        if had_session:
            self.metrics.reconnects += 1
        return True

    async def _watchdog(self, ss: _Session, stop: asyncio.Event) -> None:
        """Close the session on silence, an expired reorder wait, or ``stop``."""
        hb = self.settings.heartbeat_timeout
        tick = min(hb, self.reorder_wait) / 2
        while True:
            now = time.monotonic()
            if now - ss.last_rx >= hb:
                ss.timed_out = True
                log.info("stream: no frame for %.2f s; reconnecting", now - ss.last_rx)
                await ss.ws.close()
                return
            if ss.pending and now - ss.gap_since >= self.reorder_wait:
                await self._declare_gap(ss)
            if stop.is_set():
                await ss.ws.close()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)

    # -- sequence handling -----------------------------------------------------------------
    def _apply(self, ss: _Session, block: TickBlock) -> None:
        self.metrics.ticks_applied += len(block)
        ss.recent.append(block.seq)
        ss.recent_set.add(block.seq)
        if len(ss.recent) > 4 * self.reorder_window:
            ss.recent_set.discard(ss.recent.popleft())
        self.on_block(block)
        ss.expected = block.seq + len(block)

    async def _on_data(self, ss: _Session, block: TickBlock) -> None:
        m = self.metrics
        n = len(block)
        m.ticks_received += n
        if n == 0:
            return
        exp = ss.expected
        if exp is None:  # a feed without snapshots: the first frame sets the sequence
            self._apply(ss, block)
            return
        start, end = block.seq, block.seq + n
        if start == exp:
            self._apply(ss, block)
            self._drain(ss)
            return
        if end <= exp:
            m.ticks_skipped += n
            if start in ss.recent_set:
                m.duplicates += 1
            else:
                m.out_of_order += 1
            return
        if start < exp:  # straddles: skip the prefix already seen
            k = exp - start
            m.ticks_skipped += k
            m.duplicates += 1
            self._apply(ss, _tail(block, k))
            self._drain(ss)
            return
        # start > exp: ticks exp..start-1 are missing, for now
        if start in ss.pending:
            m.duplicates += 1
            m.ticks_skipped += n
            return
        if not ss.pending:
            ss.gap_since = time.monotonic()
        ss.pending[start] = block
        if len(ss.pending) > self.reorder_window or (
            time.monotonic() - ss.gap_since >= self.reorder_wait
        ):
            await self._declare_gap(ss)

    def _drain(self, ss: _Session) -> None:
        """Apply held frames that are now in sequence."""
        pending = ss.pending
        while pending:
            exp = ss.expected
            assert exp is not None
            first = min(pending)
            if first > exp:
                return
            block = pending.pop(first)
            self.metrics.out_of_order += 1  # it was held because it overtook a frame
            end = first + len(block)
            if end <= exp:
                self.metrics.ticks_skipped += len(block)
            elif first < exp:
                self.metrics.ticks_skipped += exp - first
                self._apply(ss, _tail(block, exp - first))
            else:
                self._apply(ss, block)
        ss.gap_since = 0.0

    async def _declare_gap(self, ss: _Session) -> None:
        """The missing ticks are lost: apply what is held, and ask for a snapshot."""
        m = self.metrics
        m.gaps += 1
        for first in sorted(ss.pending):
            block = ss.pending.pop(first)
            exp = ss.expected or 0
            if first + len(block) <= exp:
                m.ticks_skipped += len(block)
                continue
            if first < exp:
                m.ticks_skipped += exp - first
                block = _tail(block, exp - first)
            self._apply(ss, block)
        ss.pending.clear()
        ss.gap_since = 0.0
        await self._request_snapshot(ss)

    async def _request_snapshot(self, ss: _Session) -> None:
        from websockets.exceptions import ConnectionClosed

        if self.adapter.resync is None or ss.resyncing:
            return  # no snapshots, or one is already on its way
        ss.resyncing = True
        self.metrics.resyncs += 1
        with contextlib.suppress(ConnectionClosed):
            await ss.ws.send(self.adapter.resync())

    def _on_snapshot(self, ss: _Session, block: TickBlock) -> None:
        self.metrics.snapshots += 1
        ss.resyncing = False
        seq = block.seq
        # Held frames the snapshot already covers are dropped; later ones wait their turn.
        for first in [f for f in ss.pending if f + len(ss.pending[f]) <= seq + 1]:
            self.metrics.ticks_skipped += len(ss.pending.pop(first))
        ss.expected = seq + 1
        self.on_snapshot(block)
        self._drain(ss)

    async def _on_heartbeat(self, ss: _Session, last_seq: int) -> None:
        exp = ss.expected
        if exp is not None and last_seq >= exp:
            # ticks up to last_seq were sent and never arrived: a gap, now certain
            if ss.resyncing:
                return  # the snapshot on its way covers them
            if not ss.pending:
                self.metrics.gaps += 1
                await self._request_snapshot(ss)
            else:
                await self._declare_gap(ss)


def _tail(block: TickBlock, k: int) -> TickBlock:
    """``block`` without its first ``k`` ticks."""
    return TickBlock(
        block.seq + k, block.symbols[k:], block.prices[k:], block.sizes[k:], block.ts[k:]
    )


def _handshake_errors() -> type[Exception]:
    from websockets.exceptions import InvalidHandshake

    return InvalidHandshake


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
