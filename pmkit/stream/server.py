"""``pmkit feed``: a local WebSocket market-data server on real (or synthetic) prices.

The server speaks the protocol of `pmkit.stream.protocol` on 127.0.0.1 and is
the default source of ``make run``; a real provider replaces it through a
`pmkit.stream.protocol.FeedAdapter`.

Price processes
---------------
``mode="replay"`` (default)
    Each symbol replays its real daily closes from ``start`` (default
    2022-01-03, or the first trading day after it). Between two consecutive
    closes the intraday path is a Brownian bridge in log price
    (`pmkit.model.paths.brownian_bridge`) of ``steps_per_day`` steps whose last
    point *is* the next real close (exactly). The bridge volatility is the
    symbol's daily volatility: the sample standard deviation (ddof 1) of its
    daily log returns over the 60 trading days ending on ``start`` (fewer
    where the history is shorter; 0.02 when there are fewer than 2). It is
    fixed for the whole replay. The first price is the close on ``start``.
    A symbol with no price on ``start`` (not yet listed) is not served; a
    NaN day after ``start`` is skipped (the bridge joins the closes on either
    side). When a symbol reaches the last date of the data it stops: no more
    ticks for it (its other subscribers' symbols go on; a connection whose
    symbols have all ended only gets heartbeats).
``mode="gbm"``
    Each symbol follows a geometric Brownian motion (`pmkit.model.paths.gbm_path`)
    with annual drift 0 and annual volatility ``sigma``, from its last real
    close on or before ``start`` (the last in the data when ``start`` is None),
    or from 100.0 for a symbol the market does not have (``symbols`` may name
    any number of synthetic symbols, e.g. for load tests). One tick is one step
    of ``dt = 1 / (252 * steps_per_day)`` years, the replay's intraday clock.

Each symbol's path is drawn from its own generator seeded by
``(seed, crc32(symbol))`` (`pmkit.model.paths.symbol_rng`): reproducible and
independent of which symbols are served and of subscription order. Tick
sizes (units) are ``100 * k`` with ``k`` uniform on 1..10, from the same
generator (after each chunk of prices).

Fairness and pacing
-------------------
Every connection has its own cursor on each symbol's path: a connection that
subscribes to a symbol gets the whole path from its start (replay: the first
tick after the start close; GBM: the first step), drawn from the symbol's own
seeded generator, whatever other connections read or fail to read. A client
therefore sees the same ticks alone or among any number of other subscribers
(same seed), and a greedy or stalled subscriber cannot take ticks from
anyone else. `FeedServer.prices` is the latest point emitted to any
connection. Each connection has its own producer: every ``batch / rate``
seconds (as fast as the socket takes when ``rate`` is None) it takes the next
``batch`` ticks cycling round-robin over the connection's subscribed symbols
in subscription order, numbers them from its own sequence counter (from 1; a
batch of n ticks uses ``seq .. seq + n - 1``) and awaits the send.

Limits
------
Hostile or broken clients are bounded, never queued for:

* at most ``max_connections`` open connections in total and
  ``max_connections_per_address`` per client IP address; a connection over
  either limit is closed right after the handshake with code 1013 ("try
  again later") and a reason naming the limit (counted in ``refused_total``
  and ``refused_per_address``);
* the send queue of a connection is bounded by ``write_limit`` bytes (the
  high-water mark of its write buffer): a reader that falls behind stalls
  only its own producer, and one whose queue stays full for ``send_timeout``
  seconds is dropped (close code 1008, counted in ``slow_consumers``);
* a peer that vanishes (reset, killed, or half-open and caught by the
  keepalive ping after ``ping_interval + ping_timeout`` seconds) ends its
  connection quietly: counted in ``peers_lost``, logged once at INFO and
  then at DEBUG, never a traceback. The websockets library's own
  per-connection lines go to the ``pmkit.stream.server.websockets`` logger,
  set to WARNING (lower its level to see them).

Faults
------
`Faults` injects transport faults per connection for client tests, counted
over the connection's data frames (tick/batch) from 1: every ``gap_every``-th
frame is dropped (its ticks were produced and its seq numbers used);
otherwise every ``malformed_every``-th frame is preceded by a frame that is
not JSON (the real frame still follows, no tick is lost); every
``reorder_every``-th frame is held back and sent right after the next one;
every ``duplicate_every``-th frame is sent twice. Each is counted in
`FeedServer.stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pmkit.errors import UnknownAssetError, ValidationError
from pmkit.model.paths import brownian_bridge, gbm_path, replay_sigma, symbol_rng
from pmkit.stream.protocol import (
    ProtocolError,
    batch_message,
    error_message,
    heartbeat_message,
    loads,
    snapshot_message,
    tick_message,
)

__all__ = [
    "CLOSE_LIMIT",
    "CLOSE_SLOW_CONSUMER",
    "DEFAULT_START",
    "Faults",
    "FeedServer",
    "is_loopback",
]

log = logging.getLogger(__name__)
#: The websockets library's server log: a line per connection opened or closed at INFO,
#: a flood under load, so it says only warnings unless a user lowers its level.
ws_log = logging.getLogger(f"{__name__}.websockets")
if ws_log.level == logging.NOTSET:
    ws_log.setLevel(logging.WARNING)

#: First replay date when ``start`` is not given.
DEFAULT_START = "2022-01-03"
#: Trading days per year of the GBM clock.
_DAYS_PER_YEAR = 252
#: GBM steps drawn at a time.
_GBM_CHUNK = 1024
#: Sent in place of a frame by ``Faults.malformed_every``: not JSON.
MALFORMED_FRAME = '{"type": "tick", "seq": '
#: Close code of a connection over a connection limit (RFC 6455 "try again later").
CLOSE_LIMIT = 1013
#: Close code of a consumer dropped for a full send queue (RFC 6455 "policy violation").
CLOSE_SLOW_CONSUMER = 1008


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost`` or a loopback address).

    ``0.0.0.0``, ``::`` and the empty string listen on every interface: not loopback.
    """
    import ipaddress

    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Dropped(Exception):
    """The connection was dropped by the server (slow consumer); unwind quietly."""


@dataclass(frozen=True)
class Faults:
    """Transport faults injected per connection (0 = off); see the module docstring.

    Attributes
    ----------
    malformed_every : int
        Every n-th data frame is preceded by a non-JSON frame.
    duplicate_every : int
        Every n-th data frame is sent twice.
    reorder_every : int
        Every n-th data frame is swapped with the next one.
    gap_every : int
        Every n-th data frame is dropped (a seq gap for the client).
    """

    malformed_every: int = 0
    duplicate_every: int = 0
    reorder_every: int = 0
    gap_every: int = 0

    def __post_init__(self) -> None:
        for name in ("malformed_every", "duplicate_every", "reorder_every", "gap_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValidationError(f"faults.{name}", v, "must be an integer >= 0")


# -- per-symbol price processes ---------------------------------------------------------------
class _ReplayPath:
    """Brownian bridges between consecutive real closes; ``next()`` is None after the last."""

    __slots__ = ("_buf", "_k", "_sizes", "closes", "day", "last", "rng", "sigma", "steps")

    def __init__(self, closes: np.ndarray, sigma: float, steps: int, rng: np.random.Generator):
        self.closes = closes
        self.sigma = sigma
        self.steps = steps
        self.rng = rng
        self.day = 0  # index into closes of the close the current bridge ends at
        self.last = float(closes[0])
        self._buf: np.ndarray | None = None
        self._sizes: np.ndarray | None = None
        self._k = steps + 1

    def next(self) -> tuple[float, float] | None:
        if self._k > self.steps:
            if self.day + 1 >= len(self.closes):
                return None
            self._buf = brownian_bridge(
                float(self.closes[self.day]),
                float(self.closes[self.day + 1]),
                self.steps,
                self.sigma,
                self.rng,
            )
            self._sizes = self.rng.integers(1, 11, self.steps) * 100.0
            self.day += 1
            self._k = 1
        k = self._k
        self._k = k + 1
        self.last = float(self._buf[k])  # type: ignore[index]
        return self.last, float(self._sizes[k - 1])  # type: ignore[index]


class _GbmPath:
    """An endless GBM drawn ``_GBM_CHUNK`` steps at a time."""

    __slots__ = ("_buf", "_k", "_sizes", "dt", "last", "rng", "sigma")

    def __init__(self, s0: float, sigma: float, dt: float, rng: np.random.Generator):
        self.sigma = sigma
        self.dt = dt
        self.rng = rng
        self.last = float(s0)
        self._buf: np.ndarray | None = None
        self._sizes: np.ndarray | None = None
        self._k = _GBM_CHUNK + 1

    def next(self) -> tuple[float, float]:
        if self._k > _GBM_CHUNK:
            self._buf = gbm_path(self.last, _GBM_CHUNK, self.sigma, self.dt, self.rng)
            self._sizes = self.rng.integers(1, 11, _GBM_CHUNK) * 100.0
            self._k = 1
        k = self._k
        self._k = k + 1
        self.last = float(self._buf[k])  # type: ignore[index]
        return self.last, float(self._sizes[k - 1])  # type: ignore[index]


# -- connections --------------------------------------------------------------------------
class _Conn:
    """State of one client connection."""

    __slots__ = (
        "address",
        "cursor",
        "dropped",
        "frames",
        "held",
        "last_sent",
        "lock",
        "paths",
        "seq",
        "subs",
        "subset",
        "wake",
        "ws",
    )

    def __init__(self, ws: Any, address: str) -> None:
        self.ws = ws
        self.address = address
        self.paths: dict[str, _ReplayPath | _GbmPath] = {}  # this connection's own cursors
        self.dropped = False  # closed by the server as a slow consumer
        self.subs: list[str] = []
        self.subset: set[str] = set()
        self.cursor = 0
        self.seq = 0  # last sequence number assigned on this connection
        self.frames = 0  # data frames produced (the clock of the faults)
        self.held: tuple[str, int] | None = None  # a frame held back by reorder
        self.lock = asyncio.Lock()  # one sender at a time keeps seq order on the wire
        self.wake = asyncio.Event()
        self.last_sent = time.monotonic()


class FeedServer:
    """A local WebSocket market-data server (see the module docstring).

    Parameters
    ----------
    market : xarray.Dataset, optional
        ``close(asset, time)`` daily closes; default `pmkit.datasets.load_market`.
    host : str, default "127.0.0.1"
    port : int, default 0
        0 picks a free port (read `port` / `url` after start; a restart of
        the same object reuses the port it got).
    mode : {"replay", "gbm"}, default "replay"
    symbols : sequence of str, optional
        Symbols served; default every market asset (priced on ``start`` in
        replay). Replay refuses a symbol the market lacks; GBM starts it at 100.
    rate : float or None, default 1000.0
        Ticks per second per connection; None: as fast as the socket takes.
    batch : int, default 1
        Ticks per frame: 1 sends ``tick`` frames, more sends ``batch`` frames.
    seed : int, default 0
    start : date-like, optional
        Replay start (default 2022-01-03); in GBM, the date of the starting close.
    steps_per_day : int, default 390
        Intraday ticks per symbol per day (one a minute over 6.5 hours).
    heartbeat_interval : float, default 1.0
        Seconds of silence after which a heartbeat is sent.
    sigma : float, default 0.2
        GBM annualized volatility (a fraction); unused in replay.
    faults : Faults, optional
        Injected faults (for client tests).
    close_timeout : float, default 0.25
        Seconds a closing connection waits for the client's close frame
        before the TCP connection is dropped (keeps `stop` prompt).
    max_connections : int, default 64
        Most open connections in total; more are closed with code 1013.
    max_connections_per_address : int, default 16
        Most open connections from one client IP address (all local clients
        share 127.0.0.1); more are closed with code 1013.
    write_limit : int, default 65536
        Bound of a connection's send queue, in bytes: the high-water mark of
        its write buffer, and the size asked for its kernel send buffer (Linux
        doubles it), so about ``3 * write_limit`` bytes wait at most.
    send_timeout : float, default 5.0
        Seconds a send may wait on a full send queue before the consumer is
        dropped (code 1008).
    ping_interval : float, default 20.0
        Seconds between keepalive pings; a peer that answers none within
        ``ping_interval`` more seconds (a half-open connection) is dropped.
    open_timeout : float, default 5.0
        Seconds a peer has to complete its opening handshake before the TCP
        connection is dropped (a peer that connects and says nothing).

    Attributes
    ----------
    symbols : list of str
        Symbols served, in market order.
    sigmas : dict of str to float
        Replay: daily volatility per symbol; GBM: ``sigma`` for all.
    stats : dict
        ``ticks_sent``, ``frames_sent``, ``connections`` (accepted in total),
        ``clients_connected`` (now), ``heartbeats``, ``snapshots``, ``errors``,
        ``malformed``, ``duplicates``, ``reordered``, ``gaps``, ``ticks_dropped``;
        ``refused_total`` and ``refused_per_address`` (connections over a
        limit), ``slow_consumers`` (dropped for a full send queue),
        ``peers_lost`` (connections that ended without a close handshake).
    """

    def __init__(
        self,
        market: Any = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: Literal["replay", "gbm"] = "replay",
        symbols: Sequence[str] | None = None,
        rate: float | None = 1000.0,
        batch: int = 1,
        seed: int = 0,
        start: Any = None,
        steps_per_day: int = 390,
        heartbeat_interval: float = 1.0,
        sigma: float = 0.2,
        faults: Faults | None = None,
        close_timeout: float = 0.25,
        max_connections: int = 64,
        max_connections_per_address: int = 16,
        write_limit: int = 65536,
        send_timeout: float = 5.0,
        ping_interval: float = 20.0,
        open_timeout: float = 5.0,
    ) -> None:
        if mode not in ("replay", "gbm"):
            raise ValidationError("mode", mode, "must be 'replay' or 'gbm'")
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, int | float)
            or not math.isfinite(rate) or rate <= 0
        ):
            raise ValidationError("rate", rate, "must be a finite number > 0, or None")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValidationError("batch", batch, "must be an integer >= 1")
        if isinstance(steps_per_day, bool) or not isinstance(steps_per_day, int) \
                or steps_per_day < 1:
            raise ValidationError("steps_per_day", steps_per_day, "must be an integer >= 1")
        if not (isinstance(heartbeat_interval, int | float) and heartbeat_interval > 0):
            raise ValidationError("heartbeat_interval", heartbeat_interval, "must be > 0")
        if not (isinstance(sigma, int | float) and math.isfinite(sigma) and sigma >= 0):
            raise ValidationError("sigma", sigma, "must be finite and >= 0")
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ValidationError("port", port, "must be an integer in 0..65535")
        if faults is not None and not isinstance(faults, Faults):
            raise ValidationError("faults", faults, "must be a Faults")
        for name, v in (("max_connections", max_connections),
                        ("max_connections_per_address", max_connections_per_address),
                        ("write_limit", write_limit)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValidationError(name, v, "must be an integer >= 1")
        for name, v in (("send_timeout", send_timeout), ("ping_interval", ping_interval),
                        ("close_timeout", close_timeout), ("open_timeout", open_timeout)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not (
                math.isfinite(v) and v > 0
            ):
                raise ValidationError(name, v, "must be a finite number of seconds > 0")
        if market is None:
            from pmkit.datasets import load_market

            market = load_market()
        self.host = host
        self.port = port
        self.mode = mode
        self.rate = None if rate is None else float(rate)
        self.batch = batch
        self.seed = int(seed)
        self.steps_per_day = steps_per_day
        self.heartbeat_interval = float(heartbeat_interval)
        self.sigma = float(sigma)
        self.faults = faults or Faults()
        self.close_timeout = float(close_timeout)
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        self.write_limit = write_limit
        self.send_timeout = float(send_timeout)
        self.ping_interval = float(ping_interval)
        self.open_timeout = float(open_timeout)
        # A fresh path per symbol: each connection builds its own from these.
        self._paths: dict[str, Callable[[], _ReplayPath | _GbmPath]] = {}
        self.sigmas: dict[str, float] = {}
        self.start_date: np.datetime64 | None = None
        self._build_paths(market, symbols, start)
        self.symbols: list[str] = list(self._paths)
        self._last: dict[str, float] = {s: f().last for s, f in self._paths.items()}
        self.stats: dict[str, int] = dict.fromkeys(
            (
                "ticks_sent", "frames_sent", "connections", "clients_connected", "heartbeats",
                "snapshots", "errors", "malformed", "duplicates", "reordered", "gaps",
                "ticks_dropped", "refused_total", "refused_per_address", "slow_consumers",
                "peers_lost",
            ),
            0,
        )
        self._server: Any = None
        self._conns: set[_Conn] = set()
        self._per_address: dict[str, int] = {}
        self._logged: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- construction ---------------------------------------------------------------------
    def _build_paths(self, market: Any, symbols: Sequence[str] | None, start: Any) -> None:
        close = market["close"].transpose("asset", "time")
        assets = [str(a) for a in close["asset"].values]
        times = close["time"].values
        values = np.asarray(close.values, dtype=np.float64)
        row = {a: i for i, a in enumerate(assets)}
        if symbols is not None:
            if isinstance(symbols, str):
                raise ValidationError("symbols", symbols, "must be a sequence of symbols")
            symbols = list(dict.fromkeys(str(s) for s in symbols))
        if self.mode == "replay":
            start_ts = np.datetime64(_to_date(DEFAULT_START if start is None else start), "ns")
            t0 = int(np.searchsorted(times, start_ts))
            if t0 >= len(times) - 1:
                raise ValidationError("start", start, "no two trading days from this date")
            self.start_date = times[t0]
            wanted = assets if symbols is None else symbols
            missing = [s for s in wanted if s not in row]
            if missing:
                raise UnknownAssetError("symbols", missing, "not in the market data")
            for s in wanted:
                series = values[row[s]]
                if not np.isfinite(series[t0]):
                    continue  # not listed on the start date: not served
                future = series[t0:]
                closes = future[np.isfinite(future)]
                sigma = replay_sigma(series, t0)
                self.sigmas[s] = sigma
                self._paths[s] = functools.partial(
                    _new_replay_path, closes, sigma, self.steps_per_day, self.seed, s
                )
            if not self._paths:
                raise ValidationError("symbols", wanted, f"none is priced on {self.start_date}")
        else:
            if start is None:
                t_end = len(times)
            else:
                t_end = int(np.searchsorted(
                    times, np.datetime64(_to_date(start), "ns"), side="right"
                ))
                self.start_date = times[t_end - 1] if t_end else None
            dt = 1.0 / (_DAYS_PER_YEAR * self.steps_per_day)
            for s in assets if symbols is None else symbols:
                s0 = 100.0
                if s in row:
                    hist = values[row[s], :t_end]
                    hist = hist[np.isfinite(hist)]
                    if hist.size:
                        s0 = float(hist[-1])
                self.sigmas[s] = self.sigma
                self._paths[s] = functools.partial(
                    _new_gbm_path, s0, self.sigma, dt, self.seed, s
                )
            if not self._paths:
                raise ValidationError("symbols", symbols, "must name at least one symbol")

    # -- public ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``ws://host:port`` (the port is known once started)."""
        return f"ws://{self.host}:{self.port}"

    def prices(self) -> dict[str, float]:
        """Latest price emitted per symbol to any connection (the start price before any)."""
        return dict(self._last)

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._server is not None

    async def start(self) -> None:
        """Listen on ``host:port`` (returns once listening; `port` is then known)."""
        if self._server is not None:
            return
        from websockets.asyncio.server import serve

        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            reuse_address=True,
            compression=None,  # deflate would cost more CPU than the loopback saves
            close_timeout=self.close_timeout,
            write_limit=self.write_limit,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_interval,
            max_size=2**20,  # requests are small; a megabyte holds any subscription
            max_queue=16,
            open_timeout=self.open_timeout,
            logger=ws_log,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("pmkit feed listening on %s (%s)", self.url, self.mode)

    async def stop(self) -> None:
        """Close every connection (code 1001) and the listening socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        try:
            await asyncio.wait_for(server.wait_closed(), 4 * self.close_timeout + 0.5)
        except TimeoutError:  # a peer that never closes: drop it
            for conn in list(self._conns):
                transport = getattr(conn.ws, "transport", None)
                if transport is not None:
                    transport.abort()

    async def serve_forever(self) -> None:
        """Start and run until cancelled (Ctrl-C under ``asyncio.run``)."""
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    async def __aenter__(self) -> FeedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self, timeout: float = 10.0) -> FeedServer:
        """Run the server in its own event loop in a daemon thread; return once listening.

        After `stop_thread` the same object can be started again on the same
        port (new connections start their paths afresh).
        """
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the feed server is already running in a thread")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                loop.close()
                ready.set()
                return
            self._loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(self.stop())
                    _cancel_all(loop)
                loop.close()

        self._thread = threading.Thread(target=run, name=f"pmkit-feed-{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError(f"the feed server did not start within {timeout} s")
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop_thread(self, timeout: float = 5.0) -> None:
        """Stop a server started by `start_in_thread` (closes clients and the socket)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            self._loop = None
            self._thread = None

    # -- connection handling --------------------------------------------------------------
    async def _handler(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        address = _peer_host(ws)
        if not await self._admit(ws, address):
            return
        _bound_kernel_buffer(ws, self.write_limit)
        conn = _Conn(ws, address)
        self._conns.add(conn)
        self._per_address[address] = self._per_address.get(address, 0) + 1
        self.stats["connections"] += 1
        self.stats["clients_connected"] += 1
        producer = asyncio.create_task(self._run_producer(conn))
        try:
            async for raw in ws:
                await self._on_request(conn, raw)
        except (ConnectionClosed, _Dropped):
            pass
        finally:
            producer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, _Dropped):
                await producer
            self._conns.discard(conn)
            left = self._per_address[address] - 1
            if left:
                self._per_address[address] = left
            else:
                del self._per_address[address]
            self.stats["clients_connected"] -= 1
            vanished = getattr(ws.protocol, "close_rcvd", True) is None
            if vanished and not conn.dropped and self._server is not None:
                # no close frame from the peer: it was reset, killed or timed out
                self.stats["peers_lost"] += 1
                self._log_once("lost", "pmkit feed: peer %s went away without closing", address)

    async def _admit(self, ws: Any, address: str) -> bool:
        """Whether a new connection is within the limits; one over them is closed (1013)."""
        if len(self._conns) >= self.max_connections:
            key, reason = "refused_total", f"too many connections (limit {self.max_connections})"
        elif self._per_address.get(address, 0) >= self.max_connections_per_address:
            key = "refused_per_address"
            reason = f"too many connections from {address} " \
                f"(limit {self.max_connections_per_address})"
        else:
            return True
        self.stats[key] += 1
        self._log_once(key, "pmkit feed: refused a connection: %s", reason)
        await self._close(ws, CLOSE_LIMIT, reason[:120])  # a close reason holds 123 bytes
        return False

    async def _close(self, ws: Any, code: int, reason: str) -> None:
        """Close with ``code``, or drop the TCP connection when the peer does not read."""
        try:
            async with asyncio.timeout(self.close_timeout + 0.25):
                await ws.close(code, reason)
        except Exception:  # a full send queue cannot take the close frame: abort
            transport = getattr(ws, "transport", None)
            if transport is not None:
                transport.abort()

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        """INFO the first time per kind of event, DEBUG after (the counts are in `stats`)."""
        if key in self._logged:
            log.debug(message, *args)
        else:
            self._logged.add(key)
            log.info(message + " (further ones at DEBUG; see FeedServer.stats)", *args)

    async def _send(self, conn: _Conn, frame: str) -> None:
        try:
            async with asyncio.timeout(self.send_timeout):
                await conn.ws.send(frame)
        except TimeoutError:
            await self._drop_slow(conn)
            raise _Dropped from None
        conn.last_sent = time.monotonic()

    async def _drop_slow(self, conn: _Conn) -> None:
        conn.dropped = True
        self.stats["slow_consumers"] += 1
        self._log_once(
            "slow", "pmkit feed: dropped %s: send queue full for %.1f s",
            conn.address, self.send_timeout,
        )
        reason = f"slow consumer: send queue full for {self.send_timeout:g} s"
        await self._close(conn.ws, CLOSE_SLOW_CONSUMER, reason)

    async def _error(self, conn: _Conn, code: str, message: str, symbols: Sequence[str] = ()):
        self.stats["errors"] += 1
        async with conn.lock:
            await self._send(conn, error_message(code, message, symbols))

    async def _snapshot(self, conn: _Conn) -> None:
        self.stats["snapshots"] += 1
        async with conn.lock:
            prices = [conn.paths[s].last for s in conn.subs]
            await self._send(conn, snapshot_message(conn.seq, conn.subs, prices, time.time()))

    async def _on_request(self, conn: _Conn, raw: str | bytes) -> None:
        try:
            msg = loads(raw)
        except ProtocolError as exc:
            await self._error(conn, "bad_request", str(exc))
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "snapshot":
            await self._snapshot(conn)
            return
        if kind not in ("subscribe", "unsubscribe"):
            await self._error(
                conn, "bad_request", f"unknown request type {kind!r}; "
                "use 'subscribe', 'unsubscribe' or 'snapshot'",
            )
            return
        symbols = msg.get("symbols")
        if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
            await self._error(conn, "bad_request", f"{kind}: symbols must be a list of strings")
            return
        if kind == "unsubscribe":
            gone = set(symbols)
            conn.subs = [s for s in conn.subs if s not in gone]
            conn.subset -= gone
            return
        unknown = [s for s in dict.fromkeys(symbols) if s not in self._paths]
        if unknown:
            await self._error(
                conn, "unknown_symbol", f"not served: {', '.join(unknown)}", unknown
            )
            return
        for s in symbols:
            if s not in conn.subset:
                conn.subset.add(s)
                conn.subs.append(s)
                if s not in conn.paths:  # a resubscription goes on where it stopped
                    conn.paths[s] = self._paths[s]()
        await self._snapshot(conn)
        conn.wake.set()

    def _take(self, conn: _Conn) -> tuple[list[str], list[float], list[float]]:
        """Advance the connection's paths by up to ``batch`` ticks, round-robin over its subs."""
        syms: list[str] = []
        prices: list[float] = []
        sizes: list[float] = []
        subs = conn.subs
        paths = conn.paths
        n = len(subs)
        misses = 0
        while len(syms) < self.batch and n and misses < n:
            s = subs[conn.cursor % n]
            conn.cursor += 1
            point = paths[s].next()
            if point is None:  # replay over for this symbol
                misses += 1
                continue
            misses = 0
            syms.append(s)
            prices.append(point[0])
            sizes.append(point[1])
            self._last[s] = point[0]
        return syms, prices, sizes

    async def _send_data(self, conn: _Conn, frame: str, n: int) -> None:
        f = self.faults
        conn.frames += 1
        k = conn.frames
        st = self.stats
        if f.gap_every and k % f.gap_every == 0:
            st["gaps"] += 1
            st["ticks_dropped"] += n
            return
        if f.malformed_every and k % f.malformed_every == 0:
            st["malformed"] += 1
            await self._send(conn, MALFORMED_FRAME)
        if f.reorder_every and k % f.reorder_every == 0 and conn.held is None:
            st["reordered"] += 1
            conn.held = (frame, n)
            return
        await self._send(conn, frame)
        st["frames_sent"] += 1
        st["ticks_sent"] += n
        if f.duplicate_every and k % f.duplicate_every == 0:
            st["duplicates"] += 1
            await self._send(conn, frame)
        await self._flush_held(conn)

    async def _flush_held(self, conn: _Conn) -> None:
        if conn.held is not None:
            frame, n = conn.held
            conn.held = None
            await self._send(conn, frame)
            self.stats["frames_sent"] += 1
            self.stats["ticks_sent"] += n

    async def _run_producer(self, conn: _Conn) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._produce(conn)
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except _Dropped:
            return
        except Exception:  # a bug must not leave a silent, open connection behind
            log.exception("pmkit feed: producer failed")
            await self._close(conn.ws, 1011, "producer failed")

    async def _produce(self, conn: _Conn) -> None:
        """The connection's producer: data frames at ``rate``, heartbeats when idle."""
        interval = None if self.rate is None else self.batch / self.rate
        hb = self.heartbeat_interval
        next_due = time.monotonic()
        while True:
            now = time.monotonic()
            if conn.subs and (interval is None or now >= next_due):
                async with conn.lock:
                    syms, prices, sizes = self._take(conn)
                    if syms:
                        seq = conn.seq + 1
                        conn.seq += len(syms)
                        ts = time.time()
                        if self.batch == 1:
                            frame = tick_message(seq, syms[0], prices[0], sizes[0], ts)
                        else:
                            frame = batch_message(seq, syms, prices, sizes, [ts] * len(syms))
                        await self._send_data(conn, frame, len(syms))
                    else:
                        await self._flush_held(conn)
                if syms:
                    if interval is None:
                        await asyncio.sleep(0)  # let requests, heartbeats and stop in
                    else:
                        # catch up after a short stall, but never burst more than 1 s of ticks
                        next_due = max(next_due + interval, time.monotonic() - 1.0)
                    continue
                next_due = math.inf  # every subscribed symbol has ended
            hb_due = conn.last_sent + hb
            if now >= hb_due:
                async with conn.lock:
                    await self._flush_held(conn)
                    await self._send(conn, heartbeat_message(conn.seq, time.time()))
                self.stats["heartbeats"] += 1
                continue
            wake_at = min(hb_due, next_due) if conn.subs else hb_due
            conn.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.wake.wait(), max(0.0, wake_at - now))
            if conn.wake.is_set():
                # (re)subscribed: start now if idle, but never earlier than the rate allows
                now = time.monotonic()
                next_due = now if next_due == math.inf else max(next_due, now)


def _new_replay_path(
    closes: np.ndarray, sigma: float, steps: int, seed: int, symbol: str
) -> _ReplayPath:
    return _ReplayPath(closes, sigma, steps, symbol_rng(seed, symbol))


def _new_gbm_path(s0: float, sigma: float, dt: float, seed: int, symbol: str) -> _GbmPath:
    return _GbmPath(s0, sigma, dt, symbol_rng(seed, symbol))


def _bound_kernel_buffer(ws: Any, size: int) -> None:
    """Cap the socket's kernel send buffer too, so the send queue bound is not megabytes more."""
    import socket

    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def _peer_host(ws: Any) -> str:
    """The client's IP address (the per-address limit's key)."""
    addr = getattr(ws, "remote_address", None)
    if isinstance(addr, tuple) and addr:
        return str(addr[0])
    return str(addr)


def _to_date(value: Any) -> np.datetime64:
    import pandas as pd

    try:
        return pd.Timestamp(value).to_datetime64().astype("datetime64[D]")
    except (TypeError, ValueError) as exc:
        raise ValidationError("start", value, "must be a date such as '2022-01-03'") from exc


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
