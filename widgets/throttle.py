"""Login throttling for the served app: failure back-off per key and a bounded hashing pool.

`LoginThrottle` counts failed logins per key (a login name, a client
address). The first ``free_failures`` failures cost nothing; each further one
locks the key out for twice as long as the previous lockout, from
``base_delay`` up to ``max_delay`` seconds. A key with no failure for
``forget_after`` seconds (and no running lockout) is forgotten.

`BoundedPool` runs the password hashing (scrypt, ~16 MiB and tens of ms
each) on a few worker threads with a bounded number of waiting jobs, so a
flood of login attempts is refused early instead of queuing unbounded memory
and CPU work.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from pmkit.errors import ThrottledError, ValidationError

__all__ = ["BoundedPool", "LoginThrottle"]

T = TypeVar("T")


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    """Exponential back-off of failed attempts, per key.

    Parameters
    ----------
    free_failures : int
        Failures allowed before the first lockout.
    base_delay : float
        First lockout, in seconds; each further failure doubles it.
    max_delay : float
        Longest lockout, in seconds.
    forget_after : float
        Seconds without a failure (and past any lockout) after which a key's
        count restarts from zero.
    max_keys : int
        Keys remembered at most (least recently failed are dropped first), so
        that attempts with random names cannot exhaust memory.
    clock : callable
        Monotonic time in seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        free_failures: int = 5,
        base_delay: float = 2.0,
        max_delay: float = 900.0,
        forget_after: float = 900.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if free_failures < 0:
            raise ValidationError("free_failures", free_failures, "must be >= 0")
        if not 0 < base_delay <= max_delay:
            raise ValidationError("base_delay", base_delay, "must be > 0 and <= max_delay")
        if max_keys < 1:
            raise ValidationError("max_keys", max_keys, "must be >= 1")
        self.free_failures = free_failures
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.forget_after = float(forget_after)
        self.max_keys = max_keys
        self._clock = clock
        self._keys: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    def _current(self, key: str, now: float) -> _Failures | None:
        rec = self._keys.get(key)
        if rec is not None and now >= rec.locked_until and now - rec.last > self.forget_after:
            del self._keys[key]
            return None
        return rec

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0 when it is not locked out)."""
        with self._lock:
            now = self._clock()
            rec = self._current(key, now)
            return 0.0 if rec is None else max(0.0, rec.locked_until - now)

    def check(self, key: str) -> None:
        """Raise `ThrottledError` (with ``retry_after``) while ``key`` is locked out."""
        wait = self.retry_after(key)
        if wait > 0:
            raise ThrottledError(key, math.ceil(wait))

    def failure(self, key: str) -> float:
        """Count a failure of ``key``; the lockout it starts, in seconds (0 for none)."""
        with self._lock:
            now = self._clock()
            rec = self._current(key, now) or _Failures()
            rec.count += 1
            rec.last = now
            over = rec.count - self.free_failures
            delay = 0.0
            if over > 0:
                # 2**over overflows floats for huge counts: cap the exponent first.
                delay = min(self.max_delay, self.base_delay * 2.0 ** min(over - 1, 64))
                rec.locked_until = now + delay
            self._keys[key] = rec
            self._keys.move_to_end(key)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
            return delay

    def success(self, key: str) -> None:
        """Forget the failures of ``key`` (a correct password for this login)."""
        with self._lock:
            self._keys.pop(key, None)

    def __len__(self) -> int:
        return len(self._keys)


class BoundedPool:
    """A few threads for costly work, with at most ``max_waiting`` jobs queued.

    Parameters
    ----------
    workers : int
        Threads running jobs at once (each scrypt check holds ~16 MiB).
    max_waiting : int
        Jobs allowed to wait for a thread; beyond that, `run` refuses.
    """

    def __init__(self, workers: int = 2, max_waiting: int = 8) -> None:
        if workers < 1 or max_waiting < 0:
            raise ValidationError("workers", (workers, max_waiting), "need >= 1 and >= 0")
        self.workers = workers
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="pmkit-login")
        self._slots = threading.BoundedSemaphore(workers + max_waiting)
        self._busy = 0
        self._count_lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Jobs running or waiting now."""
        return self._busy

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the pool and await its result.

        Raises
        ------
        ThrottledError
            ``workers + max_waiting`` jobs are already running or waiting
            (``retry_after`` 1 s); nothing was queued.
        """
        if not self._slots.acquire(blocking=False):
            raise ThrottledError("the login service (busy)", 1.0)
        with self._count_lock:
            self._busy += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
            with self._count_lock:
                self._busy -= 1
            self._slots.release()

    def shutdown(self) -> None:
        """Stop the threads (waiting for running jobs)."""
        self._executor.shutdown(wait=True)
