"""A bounded, conflating tick buffer: the latest price per symbol wins.

Between two flushes the buffer keeps one price per symbol, however many ticks
arrive, so its memory is bounded by the number of distinct symbols, never by
the tick rate (an overloaded consumer sees fewer, fresher updates instead of a
growing queue). The symbol table is bounded too: at most ``max_symbols``
distinct symbols ever get a slot; ticks of any further symbol are counted as
dropped and never stored.

Symbols map to integer slots once (a dict lookup per tick, no object per
tick); a batch frame is absorbed with a handful of vectorized numpy calls.
Slots are stable across flushes, and symbols given to the constructor take
slots ``0..n-1`` in that order, so a consumer can pre-arrange slots to match
its own column order (`pmkit.stream.live.LiveStream` uses the valuation's).

With a `pmkit.stream.band.PriceBand`, a price far from its symbol's last good price is
rejected before it is stored (counted by the band, not stored, not flushed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from pmkit.errors import ValidationError
from pmkit.stream.band import PriceBand
from pmkit.stream.protocol import TickBlock

__all__ = ["ConflatingBuffer", "Flush"]

_INITIAL_CAPACITY = 64


@dataclass(frozen=True, slots=True)
class Flush:
    """What one flush hands to the consumer.

    Attributes
    ----------
    slots : numpy.ndarray of int64, shape (k,)
        Buffer slots of the symbols that changed, ascending.
    symbols : list of str
        Their symbols, in the same order.
    prices : numpy.ndarray of float64, shape (k,)
        Latest price of each (per unit, the asset's currency).
    first_ts : float
        Epoch seconds (the tick's own ``ts``) of the first tick buffered since
        the previous flush: the oldest data in this flush, for latency.
    ticks : int
        Ticks absorbed since the previous flush (snapshots excluded).
    conflated : int
        Of those, how many were superseded by a later tick of the same symbol.
    """

    slots: np.ndarray
    symbols: list[str]
    prices: np.ndarray
    first_ts: float
    ticks: int
    conflated: int

    def __len__(self) -> int:
        return len(self.symbols)


class ConflatingBuffer:
    """Latest price per symbol between flushes, bounded (see the module docstring).

    Parameters
    ----------
    max_symbols : int
        Most distinct symbols ever held (``StreamSettings.buffer_symbols``).
    symbols : sequence of str, optional
        Symbols given slots ``0..n-1`` up front, in this order (at most
        ``max_symbols`` of them).
    band : PriceBand, optional
        Rejects out-of-band prices (ticks and snapshots) before they are stored.

    Attributes
    ----------
    symbols : list of str
        Symbol of each slot.
    ticks_received : int
        Ticks offered to `add` in total (snapshots excluded).
    ticks_conflated : int
        Ticks superseded before a flush by a later tick of the same symbol.
    ticks_dropped : int
        Ticks of symbols refused because the symbol table was full.
    pending_ticks : int
        Ticks absorbed since the last flush (the queue depth).
    """

    def __init__(
        self, max_symbols: int, symbols: Sequence[str] = (), band: PriceBand | None = None
    ) -> None:
        if isinstance(max_symbols, bool) or not isinstance(max_symbols, int) or max_symbols < 1:
            raise ValidationError("max_symbols", max_symbols, "must be an integer >= 1")
        symbols = list(dict.fromkeys(symbols))
        if len(symbols) > max_symbols:
            raise ValidationError(
                "symbols", len(symbols), f"more symbols than max_symbols={max_symbols}"
            )
        self.max_symbols = max_symbols
        self.band = band
        cap = min(max_symbols, max(_INITIAL_CAPACITY, len(symbols)))
        self._prices = np.zeros(cap, dtype=np.float64)
        self._dirty = np.zeros(cap, dtype=bool)
        self._scratch = np.full(cap, -1, dtype=np.int64)
        self._ids: dict[str, int] = {}
        self.symbols: list[str] = []
        for s in symbols:
            self._slot(s)
        self.ticks_received = 0
        self.ticks_conflated = 0
        self.ticks_dropped = 0
        self.pending_ticks = 0
        self._n_dirty = 0
        self._conflated_pending = 0
        self._first_ts = math.nan
        self._first_at = math.nan

    # -- state ---------------------------------------------------------------------------
    def __len__(self) -> int:
        """Distinct symbols waiting to be flushed."""
        return self._n_dirty

    @property
    def capacity(self) -> int:
        """Slots allocated now (grows by doubling, never beyond ``max_symbols``)."""
        return len(self._prices)

    @property
    def first_arrival(self) -> float:
        """Caller clock (``now`` given to `add`) of the first unflushed tick; NaN when empty."""
        return self._first_at

    def due(self, now: float, flush_size: int, flush_interval: float) -> bool:
        """Whether to flush now: ``flush_size`` ticks absorbed, or the first one is old enough.

        Parameters
        ----------
        now : float
            The clock passed to `add` (seconds, e.g. ``time.monotonic()``).
        flush_size : int
            Flush once this many ticks were absorbed since the last flush.
        flush_interval : float
            ... or once ``flush_interval`` seconds passed since the first of them.
        """
        if self._n_dirty == 0:
            return False
        return self.pending_ticks >= flush_size or now - self._first_at >= flush_interval

    def deadline(self, flush_interval: float) -> float:
        """Clock time at which the interval rule fires (inf when nothing is pending)."""
        return self._first_at + flush_interval if self._n_dirty else math.inf

    # -- input ---------------------------------------------------------------------------
    def _slot(self, symbol: str) -> int:
        """The slot of ``symbol``, allocating one; -1 when the table is full."""
        n = len(self.symbols)
        if n >= self.max_symbols:
            return -1
        if n >= len(self._prices):
            cap = min(self.max_symbols, 2 * len(self._prices))
            self._prices = np.resize(self._prices, cap)
            dirty = np.zeros(cap, dtype=bool)
            dirty[:n] = self._dirty[:n]
            self._dirty = dirty
            self._scratch = np.full(cap, -1, dtype=np.int64)
        self._ids[symbol] = n
        self.symbols.append(symbol)
        return n

    def _mark(self, now: float, first_ts: float) -> None:
        if self._n_dirty == 0 and self.pending_ticks == 0:
            self._first_at = now
            self._first_ts = first_ts

    def add(self, block: TickBlock, now: float) -> int:
        """Absorb a block of ticks; within it, the last tick of a symbol wins.

        Parameters
        ----------
        block : TickBlock
            Ticks (from `pmkit.stream.protocol.decode`); lists or arrays.
        now : float
            Caller clock (seconds) for the interval rule of `due`.

        Returns
        -------
        int
            Ticks stored (the others were dropped: symbol table full).
        """
        return self._absorb(block.symbols, block.prices, block.ts, now, count=True)

    def add_snapshot(self, block: TickBlock, now: float) -> int:
        """Absorb a snapshot's prices: stored like ticks but not counted as ticks."""
        return self._absorb(block.symbols, block.prices, block.ts, now, count=False)

    def _absorb(self, symbols, prices, ts, now: float, *, count: bool) -> int:
        n = len(symbols)
        if n == 0:
            return 0
        if n == 1:  # the single-tick hot path: no arrays
            slot = self._ids.get(symbols[0])
            if slot is None:
                slot = self._slot(symbols[0])
            if count:
                self.ticks_received += 1
            if slot < 0:
                self.ticks_dropped += 1
                return 0
            if self.band is not None and not self.band.accept_one(slot, float(prices[0])):
                return 0
            self._mark(now, float(ts[0]))
            if self._dirty[slot]:
                if count:
                    self._conflated_pending += 1
                    self.ticks_conflated += 1
            else:
                self._dirty[slot] = True
                self._n_dirty += 1
            self._prices[slot] = prices[0]
            if count:
                self.pending_ticks += 1
            return 1
        ids = self._ids
        try:  # itemgetter looks every symbol up in C; a new symbol takes the slow path
            slots = np.array(itemgetter(*symbols)(ids), dtype=np.int64)
        except KeyError:
            slots = np.fromiter((ids.get(s, -1) for s in symbols), dtype=np.int64, count=n)
            for i in np.flatnonzero(slots < 0):
                s = symbols[i]
                slot = ids.get(s)  # a symbol new to the table can repeat within a block
                slots[i] = self._slot(s) if slot is None else slot
        prices = np.asarray(prices, dtype=np.float64)
        kept = slots >= 0
        stored = int(kept.sum())
        if count:
            self.ticks_received += n
            self.ticks_dropped += n - stored
        if stored == 0:
            return 0
        if self.band is not None:
            if stored < n:
                kept[kept] = self.band.accept(slots[kept], prices[kept])
            else:
                kept = self.band.accept(slots, prices)
            stored = int(kept.sum())
            if stored == 0:
                return 0
        if stored < n:
            slots, prices = slots[kept], prices[kept]
            ts_first = float(np.asarray(ts, dtype=np.float64)[kept][0])
        else:
            ts_first = float(ts[0])
        self._mark(now, ts_first)
        # Last occurrence of each slot, made explicit: numpy does not promise which of
        # several fancy-assigned duplicates wins, but maximum.at over positions is exact
        # (and, unlike np.unique, needs no sort).
        order = np.arange(stored)
        scratch = self._scratch
        np.maximum.at(scratch, slots, order)
        is_last = scratch[slots] == order
        scratch[slots] = -1  # leave the scratch clean for the next block
        last_slots = slots[is_last]
        already = int(self._dirty[last_slots].sum())
        self._prices[last_slots] = prices[is_last]
        self._dirty[last_slots] = True
        self._n_dirty += len(last_slots) - already
        if count:
            superseded = stored - len(last_slots) + already
            self._conflated_pending += superseded
            self.ticks_conflated += superseded
            self.pending_ticks += stored
        return stored

    # -- output --------------------------------------------------------------------------
    def flush(self) -> Flush:
        """Take every changed symbol's latest price and reset the pending state."""
        slots = np.flatnonzero(self._dirty[: len(self.symbols)])
        out = Flush(
            slots=slots,
            symbols=[self.symbols[i] for i in slots],
            prices=self._prices[slots].copy(),
            first_ts=self._first_ts,
            ticks=self.pending_ticks,
            conflated=self._conflated_pending,
        )
        self._dirty[slots] = False
        self._n_dirty = 0
        self.pending_ticks = 0
        self._conflated_pending = 0
        self._first_ts = math.nan
        self._first_at = math.nan
        return out

    def peek(self) -> dict[str, float]:
        """Pending latest prices by symbol (a copy; for inspection and tests)."""
        slots = np.flatnonzero(self._dirty[: len(self.symbols)])
        return {self.symbols[i]: float(self._prices[i]) for i in slots}
