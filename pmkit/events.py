"""Portfolio-routed events.

Subscribers choose a topic pattern and, optionally, one portfolio or one
group. An event names the portfolio (or group) it concerns; it reaches

* global subscribers (no portfolio, no group), whatever it concerns;
* subscribers of that portfolio;
* subscribers of any group that contains it, directly or through nested
  groups (cross-portfolio propagation), and subscribers of a group for the
  group's own events.

A subscriber of portfolio A never receives B's events while event isolation
is on (the default; ``isolation.events`` in a registry config).

A subscription is bound to a user (`pmkit.registry.Registry.subscribe` binds
the session's): it receives an event only if ``may_read(user, event)``
allows it, which the registry wires to its access policy. So a desk's
viewer, even subscribed to everything (``"*"``), never sees another desk's
trades. A subscription without a user is the process's own (an internal
service such as the streaming valuation) and is not filtered.

Handlers run in descending priority, ties in subscription order. A handler
that raises never stops delivery to the others: the failure is published as
an ``"event.handler_error"`` event to the same audience.
"""

from __future__ import annotations

import asyncio
import fnmatch
import itertools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["HANDLER_ERROR", "DeliveryReport", "Event", "EventBus", "Subscription"]

log = logging.getLogger(__name__)

#: Topic of the event published when a handler raises.
HANDLER_ERROR = "event.handler_error"

Handler = Callable[["Event"], Any]


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened to a portfolio or group.

    Attributes
    ----------
    topic : str
        Dotted name, e.g. ``"portfolio.activated"`` or ``"ledger.trade"``.
    portfolio : str or None
        Portfolio the event concerns.
    group : str or None
        Group the event concerns (for group-level events).
    payload : dict
        Event data.
    actor : str
        User whose action caused it (``"system"`` for automatic events).
    ts : datetime
        When it was published, tz-naive UTC.
    """

    topic: str
    portfolio: str | None = None
    group: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    actor: str = "system"
    ts: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))


@dataclass(frozen=True, slots=True)
class Subscription:
    """A handle returned by `EventBus.subscribe`; call `cancel` to unsubscribe."""

    id: int
    pattern: str
    handler: Handler
    portfolio: str | None
    group: str | None
    priority: int
    bus: EventBus
    user: str | None = None

    def cancel(self) -> None:
        """Stop receiving events."""
        self.bus.unsubscribe(self)


@dataclass(slots=True)
class DeliveryReport:
    """What one publish did: handlers called, and the failures."""

    delivered: int = 0
    errors: list[tuple[Subscription, BaseException]] = field(default_factory=list)


class EventBus:
    """Synchronous and asyncio publish/subscribe with portfolio routing.

    Parameters
    ----------
    ancestors : callable, optional
        ``ancestors(id) -> iterable of group ids`` that contain ``id``
        directly or transitively. The registry supplies it; without it, group
        subscribers receive only events naming the group itself.
    isolate : bool
        When False, portfolio and group subscribers receive every event
        (``isolation.events = False``); the per-user read check still applies.
    may_read : callable, optional
        ``may_read(user, event) -> bool`` for subscriptions bound to a user.
        The registry supplies it; without it, user-bound subscriptions
        receive nothing (closed by default).
    """

    #: Topics after which cached read answers may be stale (roles, groups, users changed).
    ACCESS_TOPICS = ("access.*", "group.*", "portfolio.deleted", "user.*")

    def __init__(
        self,
        ancestors: Callable[[str], Iterable[str]] | None = None,
        *,
        isolate: bool = True,
        may_read: Callable[[str, Event], bool] | None = None,
    ) -> None:
        self.ancestors = ancestors
        self.isolate = isolate
        self.may_read = may_read
        self._readable: dict[tuple[str, str | None, str | None, str], bool] = {}
        self._subs: list[Subscription] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        portfolio: str | None = None,
        group: str | None = None,
        priority: int = 0,
        user: str | None = None,
    ) -> Subscription:
        """Register ``handler`` for topics matching ``pattern``.

        Parameters
        ----------
        pattern : str
            Topic or shell-style pattern (``"*"``, ``"ledger.*"``).
        handler : callable
            ``handler(event)``; may be a coroutine function.
        portfolio, group : str, optional
            Restrict to one portfolio, or to a group and its members. At most one.
        priority : int
            Higher runs first.
        user : str, optional
            Whose permissions filter delivery (see the module notes); None is
            the process's own subscriber.
        """
        if portfolio is not None and group is not None:
            from pmkit.errors import ValidationError

            raise ValidationError("group", group, "subscribe to a portfolio or a group, not both")
        sub = Subscription(
            next(self._ids), pattern, handler, portfolio, group, priority, self, user
        )
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove a subscription (no error if already removed)."""
        with self._lock:
            self._subs = [s for s in self._subs if s.id != sub.id]

    def audience(self, event: Event) -> list[Subscription]:
        """Subscriptions that receive ``event``, in delivery order."""
        with self._lock:
            subs = list(self._subs)
        scopes: set[str] | None = None
        chosen = []
        for s in subs:
            if not fnmatch.fnmatchcase(event.topic, s.pattern):
                continue
            if s.portfolio is None and s.group is None:
                chosen.append(s)
                continue
            if not self.isolate:
                chosen.append(s)
                continue
            if s.portfolio is not None:
                # a portfolio is never another target's ancestor: no group lookup needed
                # (which would be a store read per event on the streaming hot path)
                if s.portfolio in (event.portfolio, event.group):
                    chosen.append(s)
                continue
            if scopes is None:
                scopes = self._scopes(event)
            if s.group in scopes:
                chosen.append(s)
        chosen = [s for s in chosen if s.user is None or self._may_read(s.user, event)]
        chosen.sort(key=lambda s: (-s.priority, s.id))
        return chosen

    def _may_read(self, user: str, event: Event) -> bool:
        if self.may_read is None:
            return False
        # memoized per (user, target, kind of registry-wide event): the check is a few
        # store reads, and a streaming tick publishes one event per portfolio
        key = (
            user,
            event.portfolio,
            event.group,
            "" if event.portfolio or event.group else event.topic + repr(event.payload.get("user")),
        )
        ok = self._readable.get(key)
        if ok is None:
            ok = self._readable[key] = bool(self.may_read(user, event))
        return ok

    def forget_access(self) -> None:
        """Drop memoized read answers (after roles, groups or users change)."""
        self._readable.clear()

    def _scopes(self, event: Event) -> set[str]:
        """Ids whose subscribers an event concerns: its target and the target's groups."""
        scopes: set[str] = set()
        for target in (event.portfolio, event.group):
            if target is None:
                continue
            scopes.add(target)
            if self.ancestors is not None:
                scopes.update(self.ancestors(target))
        return scopes

    def publish(self, event: Event) -> DeliveryReport:
        """Deliver ``event`` now, in priority order.

        Coroutine handlers are scheduled on the running loop when there is one
        in this thread, otherwise run to completion before the next handler.
        """
        if any(fnmatch.fnmatchcase(event.topic, p) for p in self.ACCESS_TOPICS):
            self.forget_access()
        report = DeliveryReport()
        for sub in self.audience(event):
            try:
                result = sub.handler(event)
                if asyncio.iscoroutine(result):
                    self._run_coroutine(result, sub, event)
                report.delivered += 1
            except Exception as exc:
                report.errors.append((sub, exc))
                self._report_failure(sub, event, exc)
        return report

    async def publish_async(self, event: Event) -> DeliveryReport:
        """Deliver ``event``, awaiting coroutine handlers one by one in priority order."""
        if any(fnmatch.fnmatchcase(event.topic, p) for p in self.ACCESS_TOPICS):
            self.forget_access()
        report = DeliveryReport()
        for sub in self.audience(event):
            try:
                result = sub.handler(event)
                if isinstance(result, Awaitable):
                    await result
                report.delivered += 1
            except Exception as exc:
                report.errors.append((sub, exc))
                self._report_failure(sub, event, exc)
        return report

    def _run_coroutine(self, coro: Any, sub: Subscription, event: Event) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(coro)  # raises into publish's handler for the failure path
            return
        task = loop.create_task(coro)

        def done(t: asyncio.Task[Any]) -> None:
            if not t.cancelled() and t.exception() is not None:
                self._report_failure(sub, event, t.exception())  # type: ignore[arg-type]

        task.add_done_callback(done)

    def _report_failure(self, sub: Subscription, event: Event, exc: BaseException) -> None:
        log.warning("event handler %r failed on %s: %r", sub.handler, event.topic, exc)
        if event.topic == HANDLER_ERROR:
            return  # a failing error handler must not start a loop
        self.publish(
            Event(
                HANDLER_ERROR,
                portfolio=event.portfolio,
                group=event.group,
                payload={
                    "topic": event.topic,
                    "handler": getattr(sub.handler, "__qualname__", repr(sub.handler)),
                    "subscription": sub.id,
                    "error": repr(exc),
                },
                actor=event.actor,
            )
        )
