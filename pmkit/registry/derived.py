"""A cache of derived data owned by a registry (shared by its `as_user` sessions).

Results computed from the store and the market data (overviews, tables) are
kept until the store changes: the key carries the store's revision (the last
audit sequence number) and the reading user, so a write anywhere or another
user's read never serves a stale or foreign result. Objects a result depends
on (the market dataset) are compared by identity and held by the entry, not
keyed by ``id()``, which Python reuses once an object is freed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["DerivedCache"]

T = TypeVar("T")


class DerivedCache:
    """A bounded, thread-safe LRU of derived results.

    Parameters
    ----------
    size : int
        Entries kept; the least recently used goes first.
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[tuple[Any, ...], Any]] = OrderedDict()

    def get(
        self, key: Hashable, depends_on: tuple[Any, ...], compute: Callable[[], T]
    ) -> tuple[T, bool]:
        """``(value, hit)``: the cached value for ``key`` if its dependencies are the same objects.

        ``compute()`` runs outside the lock (two threads may both compute a
        missing entry; the result is the same).
        """
        with self._lock:
            found = self._entries.get(key)
            if found is not None and all(
                a is b for a, b in zip(found[0], depends_on, strict=True)
            ):
                self._entries.move_to_end(key)
                return found[1], True
        value = compute()
        with self._lock:
            self._entries[key] = (depends_on, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value, False

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
