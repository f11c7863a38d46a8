"""The market-data wire protocol of ``pmkit feed``: JSON text frames over a WebSocket.

Every frame is one JSON object with a ``type``. Times ``ts`` are Unix epoch
seconds (float, UTC) of when the server produced the data, so a client can
measure tick-to-event latency. Prices are per unit in the asset's currency;
sizes are units.

Server → client
---------------
``tick``
    ``{"type": "tick", "seq": 17, "symbol": "AAPL", "price": 129.41, "size": 100,
    "ts": 1700000000.25}`` — one trade print.
``batch``
    ``{"type": "batch", "seq": 18, "symbols": [...], "prices": [...], "sizes": [...],
    "ts": [...]}`` — many ticks in one frame, stored by column; tick ``i`` has
    sequence number ``seq + i``. Columns let a client convert a frame to arrays
    in one pass instead of building an object per tick.
``snapshot``
    ``{"type": "snapshot", "seq": 40, "symbols": [...], "prices": [...], "ts": ...}`` —
    the latest price of every subscribed symbol, sent after ``subscribe`` and on
    request. ``seq`` is the last sequence number sent on this connection: the
    next tick is ``seq + 1``.
``heartbeat``
    ``{"type": "heartbeat", "seq": 40, "ts": ...}`` — sent when the connection has
    been idle for the heartbeat interval; ``seq`` as in a snapshot (no tick
    carries it), so a client also learns of ticks it missed.
``error``
    ``{"type": "error", "code": "unknown_symbol", "message": "...", "symbols": [...]}``
    — a refused request; codes: ``unknown_symbol``, ``bad_request``.

Client → server
---------------
``subscribe``
    ``{"type": "subscribe", "symbols": ["AAPL", "MSFT"]}`` — add symbols; answered
    by a snapshot of all subscribed symbols, or by an ``unknown_symbol`` error
    (and nothing subscribed) when any symbol is not served.
``unsubscribe``
    ``{"type": "unsubscribe", "symbols": [...]}``.
``snapshot``
    ``{"type": "snapshot"}`` — ask for a snapshot (a client resynchronizing after
    a gap).

Sequence numbers count ticks per connection, from 1. A client that sees a
tick or batch starting above the next expected number has missed ticks
(a *gap*) and resynchronizes with a snapshot; one starting below it is a
duplicate or out-of-order delivery and is skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pmkit.errors import PmkitError

__all__ = [
    "MESSAGE_TYPES",
    "FeedAdapter",
    "ProtocolError",
    "TickBlock",
    "batch_message",
    "decode",
    "dumps",
    "error_message",
    "heartbeat_message",
    "loads",
    "pmkit_adapter",
    "snapshot_message",
    "subscribe_message",
    "tick_message",
]

MESSAGE_TYPES = ("tick", "batch", "snapshot", "heartbeat", "error")

try:  # orjson is several times faster on both ends; the stdlib is the fallback
    import orjson as _orjson

    def dumps(obj: Any) -> str:
        """JSON text of ``obj`` (orjson when installed)."""
        return _orjson.dumps(obj).decode()

    def loads(text: str | bytes) -> Any:
        """Parse JSON text (orjson when installed); `ProtocolError` when malformed."""
        try:
            return _orjson.loads(text)
        except _orjson.JSONDecodeError as exc:
            raise ProtocolError(f"malformed JSON: {exc}") from exc

except ImportError:  # pragma: no cover - exercised only without the stream extra
    import json as _json

    def dumps(obj: Any) -> str:
        """JSON text of ``obj``."""
        return _json.dumps(obj, separators=(",", ":"))

    def loads(text: str | bytes) -> Any:
        """Parse JSON text; `ProtocolError` when malformed."""
        try:
            return _json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"malformed JSON: {exc}") from exc


class ProtocolError(PmkitError, ValueError):
    """A frame that does not follow the protocol (malformed JSON, missing or bad fields)."""


@dataclass(frozen=True, slots=True)
class TickBlock:
    """Ticks of one frame, by column.

    Attributes
    ----------
    seq : int
        Sequence number of the first tick (tick ``i`` has ``seq + i``).
    symbols : list of str
    prices : numpy.ndarray or list of float, shape (n,)
        A ``batch`` or ``snapshot`` gives float64 arrays; a ``tick`` gives
        one-element lists (an array per tick would cost more than the tick).
    sizes : numpy.ndarray or list of float, shape (n,)
    ts : numpy.ndarray or list of float, shape (n,)
        Epoch seconds per tick.
    """

    seq: int
    symbols: list[str]
    prices: np.ndarray | list[float]
    sizes: np.ndarray | list[float]
    ts: np.ndarray | list[float]

    def __len__(self) -> int:
        return len(self.symbols)


# -- encoding (server side) ---------------------------------------------------------------
def tick_message(seq: int, symbol: str, price: float, size: float, ts: float) -> str:
    """A ``tick`` frame."""
    return dumps(
        {"type": "tick", "seq": seq, "symbol": symbol, "price": price, "size": size, "ts": ts}
    )


def batch_message(
    seq: int,
    symbols: Sequence[str],
    prices: Sequence[float] | np.ndarray,
    sizes: Sequence[float] | np.ndarray,
    ts: Sequence[float] | np.ndarray,
) -> str:
    """A ``batch`` frame of ``len(symbols)`` ticks starting at ``seq``."""
    return dumps(
        {
            "type": "batch",
            "seq": seq,
            "symbols": list(symbols),
            "prices": np.asarray(prices, dtype=np.float64).tolist(),
            "sizes": np.asarray(sizes, dtype=np.float64).tolist(),
            "ts": np.asarray(ts, dtype=np.float64).tolist(),
        }
    )


def snapshot_message(
    seq: int, symbols: Sequence[str], prices: Sequence[float] | np.ndarray, ts: float
) -> str:
    """A ``snapshot`` frame."""
    return dumps(
        {
            "type": "snapshot",
            "seq": seq,
            "symbols": list(symbols),
            "prices": np.asarray(prices, dtype=np.float64).tolist(),
            "ts": ts,
        }
    )


def heartbeat_message(seq: int, ts: float) -> str:
    """A ``heartbeat`` frame."""
    return dumps({"type": "heartbeat", "seq": seq, "ts": ts})


def error_message(code: str, message: str, symbols: Sequence[str] = ()) -> str:
    """An ``error`` frame."""
    return dumps({"type": "error", "code": code, "message": message, "symbols": list(symbols)})


def subscribe_message(symbols: Sequence[str]) -> str:
    """A client's ``subscribe`` frame."""
    return dumps({"type": "subscribe", "symbols": list(symbols)})


# -- decoding (client side) -------------------------------------------------------------------
def _seq(msg: dict[str, Any]) -> int:
    seq = msg.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise ProtocolError(f"{msg.get('type')}: bad seq {seq!r}")
    return seq


def _column(msg: dict[str, Any], key: str, n: int) -> np.ndarray:
    col = msg.get(key)
    if not isinstance(col, list) or len(col) != n:
        raise ProtocolError(f"batch: column {key!r} must be a list of {n}")
    try:
        arr = np.asarray(col, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"batch: column {key!r} is not numeric") from exc
    if arr.ndim != 1:
        raise ProtocolError(f"batch: column {key!r} is not flat")
    return arr


def decode(frame: str | bytes) -> tuple[str, Any]:
    """Parse one server frame into ``(type, payload)``.

    Returns
    -------
    ("tick" | "batch", TickBlock)
        Ticks by column (a ``tick`` frame is a block of one).
    ("snapshot", TickBlock)
        Sizes are 0; ``ts`` repeats the snapshot time; ``seq`` is the
        snapshot's (the last tick sent), not a tick's own.
    ("heartbeat", int)
        The last sequence number sent.
    ("error", dict)
        ``code``, ``message``, ``symbols``.

    Raises
    ------
    ProtocolError
        Malformed JSON, an unknown type, or missing / mistyped fields. Prices
        must be finite and > 0.
    """
    msg = loads(frame)
    if not isinstance(msg, dict):
        raise ProtocolError("a frame must be a JSON object")
    kind = msg.get("type")
    if kind == "batch":
        symbols = msg.get("symbols")
        if not isinstance(symbols, list) or not _all_str(symbols):
            raise ProtocolError("batch: symbols must be a list of strings")
        n = len(symbols)
        block = TickBlock(
            _seq(msg),
            symbols,
            _column(msg, "prices", n),
            _column(msg, "sizes", n),
            _column(msg, "ts", n),
        )
        _check_prices(block.prices, kind)
        return kind, block
    if kind == "tick":
        # The hot path of single-tick feeds: plain floats, no array per tick.
        sym, price, size, ts = msg.get("symbol"), msg.get("price"), msg.get("size"), msg.get("ts")
        if not isinstance(sym, str):
            raise ProtocolError("tick: symbol must be a string")
        if not (_number(price) and _number(size) and _number(ts)):
            raise ProtocolError("tick: price, size and ts must be numbers")
        if not (0.0 < price < math.inf):
            raise ProtocolError("tick: prices must be finite and > 0")
        return kind, TickBlock(_seq(msg), [sym], [float(price)], [float(size)], [float(ts)])
    if kind == "snapshot":
        symbols = msg.get("symbols")
        if not isinstance(symbols, list) or not _all_str(symbols):
            raise ProtocolError("snapshot: symbols must be a list of strings")
        n = len(symbols)
        prices = _column(msg, "prices", n)
        _check_prices(prices, kind)
        try:
            ts = float(msg.get("ts"))  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ProtocolError("snapshot: ts must be a number") from exc
        return kind, TickBlock(_seq(msg), symbols, prices, np.zeros(n), np.full(n, ts))
    if kind == "heartbeat":
        return kind, _seq(msg)
    if kind == "error":
        return kind, {
            "code": str(msg.get("code", "")),
            "message": str(msg.get("message", "")),
            "symbols": [str(s) for s in msg.get("symbols", []) or []],
        }
    raise ProtocolError(f"unknown message type {kind!r}")


def _all_str(items: list[Any]) -> bool:
    # map(type) runs in C: a per-item isinstance generator cost more than parsing the frame
    return set(map(type, items)) <= {str}


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _check_prices(prices: np.ndarray, kind: str) -> None:
    if prices.size and not (np.isfinite(prices).all() and (prices > 0).all()):
        raise ProtocolError(f"{kind}: prices must be finite and > 0")


# -- adapters ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeedAdapter:
    """How to talk to a market-data provider: the seam for real feeds.

    Attributes
    ----------
    url : str
        WebSocket URL, e.g. ``"ws://127.0.0.1:8765"``.
    subscribe : callable
        ``subscribe(symbols) -> str``: the frame that subscribes to ``symbols``.
    parse : callable
        ``parse(frame) -> (type, payload)`` as `decode` returns it; raise
        `ProtocolError` for a frame to count and skip.
    resync : callable or None
        ``resync() -> str``: the frame asking for a snapshot; None when the
        provider has no snapshots (a gap is then only counted).
    name : str
        For metrics and logs.
    """

    url: str
    subscribe: Callable[[Sequence[str]], str]
    parse: Callable[[str | bytes], tuple[str, Any]]
    resync: Callable[[], str] | None = None
    name: str = "feed"


def pmkit_adapter(url: str = "ws://127.0.0.1:8765") -> FeedAdapter:
    """The adapter for ``pmkit feed`` (this module's protocol)."""
    return FeedAdapter(
        url=url,
        subscribe=subscribe_message,
        parse=decode,
        resync=lambda: dumps({"type": "snapshot"}),
        name="pmkit",
    )
