"""The strategy coordinator service: signals in, a priority queue of trades out.

Pipeline of `StrategyCoordinator.process_signal` (one store transaction per
signal, every step an audit record in it):

1. **received** (audit ``signal.received``, with the input as sent);
2. **validated** (`pmkit.coordinator.signals.validate_signal` and the
   strategy's registration) or **rejected**: the rejection is committed
   (record ``status="rejected"``, ``reason`` = the field) and *then* the typed
   error is raised;
3. **enriched**: risk:reward, priority, performance weight, the strategy's
   capital and the position size (`pmkit.coordinator.signals.enrich_signal`),
   on the NAV at the time of the decision (the positions as the signal's
   transaction reads them, at the last market closes) and capped so the
   whole position stays within ``max_position_weight``. A size that rounds
   to zero lots is **rejected** (reason ``"size"``) and a `ValidationError`
   raised after the rejection is committed; no headroom left under
   ``max_position_weight`` is a `LimitBreachError` the same way;
4. **conflicts** (`pmkit.coordinator.conflicts`): a duplicate is rejected
   (returned, not raised); a signal against a held position is flagged (or
   rejected with ``position_policy="reject"``); opposing live signals are
   **resolved** by the portfolio's `ResolutionStrategy` and the losers
   **superseded** (status, ``superseded_by`` = the winner's id);
5. **pre-trade controls** (`pmkit.risk.controls`, stage ``"signal"``; after
   the duplicate and position checks, before opposing signals are resolved):
   the signal's trade (its size at its entry, with its stop) against the
   portfolio's limits; a breach **rejects** it (reason: the limit's key) and
   the `LimitBreachError` is raised after the rejection is committed. A soft
   limit passes with ``process_signal(..., override=Override(reason))`` by
   a manager (audited);
6. **queued**: the winner enters the priority queue.

`get_next_signal` hands out the highest-priority queued signal (ties: the
earliest received) and marks it ``dispatched``; `mark_signal_executed`
closes it. States and transitions: `pmkit.coordinator.signals.TRANSITIONS`.

Persistence and restart
-----------------------
Signals are store entities of kind ``"signal"`` (id ``"sig-<seq>"``, status
= state, data = `Signal.to_record`); per-portfolio resolution settings are
kind ``"coordinator.settings"`` (id = portfolio, ``"*"`` for the default).
A new coordinator over the same store reloads them: queued signals go back
into the queue in the same order, and the statistics are recomputed from the
records, so they equal those before the restart. Dispatched signals are not
re-queued (an executor holds them); `mark_signal_executed` still closes them.

The in-memory index of live signals is this process's: run one coordinator
per store (several sessions of it via `StrategyCoordinator.as_user` share
it). A signal id already taken in the store (another writer) is a
`StoreError`.

Caches
------
Group peers are computed on a portfolio's first signal and kept until
`refresh`. NAVs and limits are never cached: each signal is sized on the
NAV at the time of its decision (cash and positions read in its own
transaction, valued at the last close of each holding, the closes held as
numpy arrays per market) and checked against the configuration resolved in
that transaction, so a withdrawal, a trade or a lowered limit counts from
the next signal on. Strategy records (status, allocation, performance) are
read fresh for every signal.

Permissions
-----------
Submitting needs ``signal.submit`` (TRADER) on the signal's portfolio;
dequeuing and executing need ``signal.execute``; setting a portfolio's
resolution strategy needs ``portfolio.config`` (MANAGER), the default an
administrator. A denial raises `PermissionDenied` with nothing written.
A group-scope conflict may supersede a signal of another portfolio of the
group: enabling ``group_conflicts`` is the coordinator owner's decision.

Events (portfolio-routed, after commit): ``signal.accepted``,
``signal.rejected``, ``signal.superseded``, ``signal.dispatched``,
``signal.executed``, ``coordinator.settings_changed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pmkit.coordinator.conflicts import (
    ConflictKind,
    Resolution,
    ResolutionStrategy,
    find_duplicate,
    find_opposing,
    opposes_position,
    parse_resolution,
    resolve_signal_conflicts,
)
from pmkit.coordinator.signals import (
    SIGNAL_FIELDS,
    TRANSITIONS,
    Priority,
    PriorityRule,
    Signal,
    SignalState,
    check_strategy,
    enrich_signal,
    jsonable,
    validate_signal,
)
from pmkit.errors import (
    ConfigError,
    LimitBreachError,
    NotFoundError,
    PermissionDenied,
    StoreError,
    TransitionError,
    ValidationError,
)
from pmkit.registry.controls import (
    Override,
    ProposedTrade,
    decision_nav,
    enforce_pre_trade,
    mark_price,
    parse_limits,
    position_room,
)
from pmkit.strategies.session import RiskManager, session_of
from pmkit.strategies.types import StrategyInfo, strategy_id
from pmkit.validation import check_number, json_value, safe_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_RESOLUTION", "SETTINGS_KIND", "SIGNAL_KIND", "StrategyCoordinator"]

SIGNAL_KIND = "signal"
SETTINGS_KIND = "coordinator.settings"
_DEFAULT_KEY = "*"
#: Resolution strategy of portfolios without a setting, when no default is stored.
DEFAULT_RESOLUTION = ResolutionStrategy.HIGHEST_PRIORITY
_POSITION_POLICIES = ("flag", "reject")

S = SignalState


def _sid(seq: int) -> str:
    return f"sig-{seq:09d}"


def _strategy_info(rec: Any) -> StrategyInfo | None:
    return None if rec is None else StrategyInfo.from_record(rec)


def _raw(signal: Any) -> dict[str, Any]:
    if isinstance(signal, Signal):
        d = {k: getattr(signal, k) for k in SIGNAL_FIELDS}
        d["side"] = str(signal.side)
        return {**signal.metadata, **d}
    if isinstance(signal, Mapping):
        return dict(signal)
    raise ValidationError("signal", type(signal).__name__, "must be a mapping or a Signal")


def _result(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValidationError("execution_result", value, "must be a mapping (or None)")
    return json_value(value, "execution_result")


class _Refused(Exception):
    """A signal refused after enrichment (zero size, a limit): recorded, then raised."""

    def __init__(self, signal: Signal, error: ValidationError) -> None:
        super().__init__(str(error))
        self.signal = signal
        self.error = error


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


@dataclass
class _Counts:
    """One portfolio's signal statistics (kept per portfolio so each user sees only theirs)."""

    states: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    conflicts: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


@dataclass
class _Shared:
    """State shared by every session (`as_user`) of one coordinator."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    #: one priority queue per portfolio: a desk's backlog never stands in front of another's
    heaps: dict[str, list[tuple[int, int, str]]] = field(default_factory=dict)
    live: dict[str, Signal] = field(default_factory=dict)
    by_key: dict[tuple[str, str], dict[str, Signal]] = field(default_factory=dict)
    counts: dict[str, _Counts] = field(default_factory=dict)
    seq: int = 0
    settings: dict[str, ResolutionStrategy] = field(default_factory=dict)
    peers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = field(
        default_factory=list
    )

    # -- bookkeeping (callers hold the lock) --------------------------------------------
    def counts_of(self, portfolio: str) -> _Counts:
        c = self.counts.get(portfolio)
        if c is None:
            c = self.counts[portfolio] = _Counts()
        return c

    def account(self, data: Mapping[str, Any]) -> None:
        """Count a record as it was decided on receipt, then in its current state."""
        c = self.counts_of(data["portfolio"])
        c.states[data["status"]] += 1
        c.accepted += bool(data.get("accepted"))
        if data.get("reason") and data["status"] == S.REJECTED:
            c.rejections[data["reason"]] += 1
        for conflict in data.get("conflicts", ()):
            c.conflicts[conflict["kind"]] += 1
        if data.get("latency_ms") is not None:
            c.latencies.append(float(data["latency_ms"]))

    def move(self, portfolio: str, old: str, new: str) -> None:
        c = self.counts_of(portfolio)
        c.states[old] -= 1
        c.states[new] += 1

    def add_live(self, sig: Signal) -> None:
        self.live[sig.id] = sig
        self.by_key.setdefault((sig.portfolio, sig.symbol), {})[sig.id] = sig
        if sig.status is S.QUEUED:
            heap = self.heaps.setdefault(sig.portfolio, [])
            heapq.heappush(heap, (-int(sig.priority), sig.seq, sig.id))

    def drop_live(self, sig_id: str) -> None:
        old = self.live.pop(sig_id, None)
        if old is not None:
            bucket = self.by_key.get((old.portfolio, old.symbol), {})
            bucket.pop(sig_id, None)
            if not bucket:
                self.by_key.pop((old.portfolio, old.symbol), None)

    def queued_top(self, portfolio: str) -> tuple[int, int, str] | None:
        """The portfolio's next queued entry, dropping entries displaced since they queued."""
        heap = self.heaps.get(portfolio)
        while heap:
            sig = self.live.get(heap[0][2])
            if sig is not None and sig.status is S.QUEUED:
                return heap[0]
            heapq.heappop(heap)
        if heap is not None:
            del self.heaps[portfolio]
        return None

    def wake(self) -> None:
        for loop, fut in list(self.waiters):
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # its loop is closed: nobody waits there any more
                self.waiters.remove((loop, fut))


class StrategyCoordinator:
    """Coordinates the signals of a registry's strategies (see the module docstring).

    Parameters
    ----------
    registry : pmkit.registry.Registry
        The session (its user acts) with market data: the market's assets are
        the symbol universe, its ``lot_size`` coordinate the lot sizes.
    risk_fraction : float, default 0.01
        Fraction of a strategy's capital risked to the stop per trade, in (0, 1].
    group_conflicts : bool or str, default False
        Also detect opposing signals in other portfolios: True, those sharing
        a direct parent group with the signal's portfolio; a group id, every
        portfolio of that group (nested included) when the signal's
        portfolio belongs to it.
    position_policy : {"flag", "reject"}, default "flag"
        A signal against a held position is kept and flagged as a
        ``position`` conflict, or rejected (reason ``"position"``).
    priority_rule : PriorityRule, optional
        Thresholds of the priority table (default `PriorityRule()`).

    The design note's shape ``StrategyCoordinator(portfolio_manager,
    risk_manager)`` works too: ``registry`` may be a `PortfolioManager` (or
    `RiskManager`), whose portfolio then receives signals that name none,
    and ``risk_manager`` (a `pmkit.strategies.RiskManager` on the same
    store) gives the default ``risk_fraction``.

    Examples
    --------
    >>> from pmkit.demo import open_demo
    >>> coord = StrategyCoordinator(open_demo())  # doctest: +SKIP
    >>> coord.process_signal({"symbol": "AAPL", "side": "long", "entry": 130.0,
    ...     "stop": 125.0, "target": 140.0, "strategy": "momentum",
    ...     "portfolio": "client_a/growth"})  # doctest: +SKIP
    """

    def __init__(
        self,
        registry: Any,
        risk_manager: RiskManager | None = None,
        *,
        risk_fraction: float | None = None,
        group_conflicts: bool | str = False,
        position_policy: str = "flag",
        priority_rule: PriorityRule | None = None,
    ) -> None:
        registry, bound = session_of(registry, "registry")
        if risk_manager is not None:
            if not isinstance(risk_manager, RiskManager):
                raise ValidationError(
                    "risk_manager", type(risk_manager).__name__, "must be a RiskManager or None"
                )
            if not risk_manager.registry.shares_store_with(registry):
                raise ValidationError(
                    "risk_manager", risk_manager.portfolio, "is on another store than the registry"
                )
            bound = bound or risk_manager.portfolio
            if risk_fraction is None:
                risk_fraction = risk_manager.risk_fraction
        if registry.market is None:
            raise ConfigError("registry.market", None, "the coordinator needs market data")
        risk_fraction = check_number(
            0.01 if risk_fraction is None else risk_fraction,
            "risk_fraction",
            positive=True,
            maximum=1.0,
        )
        if position_policy not in _POSITION_POLICIES:
            raise ValidationError("position_policy", position_policy, "must be 'flag' or 'reject'")
        if not isinstance(group_conflicts, bool | str):
            raise ValidationError(
                "group_conflicts", group_conflicts, "must be True, False or a group id"
            )
        if (
            isinstance(group_conflicts, str)
            and registry.view().record("group", group_conflicts) is None
        ):
            raise NotFoundError("group", group_conflicts)
        self.registry = registry
        #: Portfolio of signals that name none (the manager's, when built from one).
        self.portfolio = bound
        self.risk_fraction = float(risk_fraction)
        self.group_conflicts = group_conflicts
        self.position_policy = position_policy
        self.priority_rule = priority_rule or PriorityRule()
        market = registry.market
        self._universe = frozenset(str(a) for a in market.indexes["asset"])
        lots = market["lot_size"].to_series() if "lot_size" in market.coords else None
        self._lots = {str(k): int(v) for k, v in lots.items()} if lots is not None else {}
        self._sh = _Shared()
        self._load()

    def as_user(self, user: str) -> StrategyCoordinator:
        """The same coordinator (queue, index, caches) acting as ``user``."""
        other = object.__new__(StrategyCoordinator)
        other.__dict__.update(self.__dict__)
        other.registry = self.registry.as_user(user)
        return other

    def _load(self) -> None:
        sh = self._sh
        # the queue is shared by every user of this coordinator: load all, filter on read
        everything = self.registry.service_view()
        with sh.lock:
            for rec in everything.records(SETTINGS_KIND):
                sh.settings[rec.id] = parse_resolution(rec.data["resolution"])
            for rec in everything.records(SIGNAL_KIND):
                data = rec.data
                sh.seq = max(sh.seq, int(data["seq"]))
                sh.account(data)
                if rec.status in (S.QUEUED, S.DISPATCHED):
                    sh.add_live(Signal.from_record(data))

    # -- settings and caches ------------------------------------------------------------
    def resolution_strategy(self, portfolio: str | None = None) -> ResolutionStrategy:
        """The rule used for ``portfolio`` (its setting, else the default)."""
        sh = self._sh
        if portfolio is not None and portfolio in sh.settings:
            return sh.settings[portfolio]
        return sh.settings.get(_DEFAULT_KEY, DEFAULT_RESOLUTION)

    def set_resolution_strategy(
        self, strategy: ResolutionStrategy | str, portfolio: str | None = None
    ) -> None:
        """Persist the resolution rule of ``portfolio`` (None: the default for all).

        Needs ``portfolio.config`` (MANAGER) on the portfolio; the default
        needs an administrator.
        """
        rule = parse_resolution(strategy)
        key = portfolio if portfolio is not None else _DEFAULT_KEY
        reg = self.registry
        with self._sh.lock:
            with reg.mutation("coordinator.settings", key) as m:
                if portfolio is None:
                    if not m.is_admin():
                        raise PermissionDenied(m.user, "coordinator.settings", "registry", "admin")
                else:
                    m.portfolio(portfolio)
                    m.require("portfolio.config", portfolio)
                old = m.tx.get(SETTINGS_KIND, key)
                m.tx.put(SETTINGS_KIND, key, "active", {"resolution": rule.value})
                m.record(old.data if old else None, {"resolution": rule.value})
                m.publish(
                    "coordinator.settings_changed", portfolio=portfolio, resolution=rule.value
                )
            self._sh.settings[key] = rule

    def refresh_nav(self, portfolio: str | None = None) -> None:
        """Nothing to forget: NAVs are valued at each signal's decision (kept for callers)."""

    def refresh(self) -> None:
        """Forget the cached group peers (NAVs and limits are never cached)."""
        with self._sh.lock:
            self._sh.peers.clear()

    def _peers(self, pid: str) -> tuple[str, ...]:
        if not self.group_conflicts:
            return ()
        if pid not in self._sh.peers:
            # conflicts are found across desks whoever submits: the tree unfiltered
            tree = self.registry.service_view()
            if self.group_conflicts is True:
                groups = tree.parents(pid)
            else:
                groups = [self.group_conflicts] if pid in self._leaves(self.group_conflicts) else []
            found: set[str] = set()
            for g in groups:
                found.update(self._leaves(g))
            found.discard(pid)
            self._sh.peers[pid] = tuple(sorted(found))
        return self._sh.peers[pid]

    def _leaves(self, gid: str) -> list[str]:
        return self.registry.service_view().group_portfolios(gid)

    # -- processing -------------------------------------------------------------------------
    def _portfolio_of(self, raw: Mapping[str, Any]) -> str:
        pid = self.registry.resolve_portfolio_id(raw.get("portfolio") or self.portfolio)
        if not isinstance(pid, str):
            raise ValidationError("portfolio", pid, "must be a portfolio id")
        return self.registry.check_portfolio_exists(pid)  # NotFoundError before any write

    def process_signal(
        self,
        signal: Mapping[str, Any] | Signal,
        *,
        strategy: str | None = None,
        override: Override | None = None,
    ) -> Signal:
        """Validate, enrich, check conflicts, resolve and queue one signal.

        Parameters
        ----------
        signal : mapping or Signal
            ``symbol``, ``side`` (``"long"``/``"short"``), ``entry``, ``stop``,
            ``target`` (prices per unit), ``confidence`` (default 0.5),
            ``strategy``, ``portfolio`` (default: the registry's active or
            default portfolio), ``time`` (default now); other keys are kept as
            metadata.
        strategy : str, optional
            The emitting strategy (must agree with ``signal["strategy"]``).
        override : pmkit.risk.controls.Override, optional
            Lets the signal exceed the portfolio's *soft* limits (the user
            must hold MANAGER there; audited as ``limit.override``).

        Returns
        -------
        Signal
            As stored: ``queued`` (accepted), ``superseded`` (lost a conflict;
            ``superseded_by`` names the winner) or ``rejected`` (duplicate, or
            against a position under ``position_policy="reject"``).

        Raises
        ------
        PermissionDenied
            No ``signal.submit`` on the portfolio (nothing written).
        NotFoundError
            The portfolio does not exist (nothing written).
        UnknownAssetError, ValidationError
            A failed check, naming the field (``"size"``: it rounds to zero
            lots at the decision NAV); the rejection was recorded first.
        LimitBreachError
            The signal's trade would breach a pre-trade limit (the limit,
            value and threshold named); the rejection was recorded first.
        """
        t0 = time.perf_counter()
        raw = _raw(signal)
        pid = self._portfolio_of(raw)
        reg = self.registry
        rule = self.resolution_strategy(pid)
        sh = self._sh
        with sh.lock:
            seq = sh.seq + 1
            sid = _sid(seq)
            error: ValidationError | None = None
            final: Signal | None = None
            losers: list[tuple[Signal, Signal]] = []
            with reg.mutation("signal.submit", sid) as m:
                m.require("signal.submit", pid)
                info = m.portfolio(pid)
                if m.tx.get(SIGNAL_KIND, sid) is not None:
                    raise StoreError(f"signal id {sid} is taken: another coordinator writes here")
                shown = jsonable(raw)
                try:
                    if info.status != "active":
                        raise ValidationError("portfolio", pid, f"is {info.status}, not active")
                    sig = validate_signal(raw, self._universe, portfolio=pid, strategy=strategy)
                    strat = _strategy_info(m.tx.get("strategy", strategy_id(pid, sig.strategy)))
                    check_strategy(sig, strat)
                except ValidationError as exc:
                    error = exc
                    # The input is kept once, on the rejection record (what the views show).
                    m.note("signal.received", sid, None, {"portfolio": pid, "input_on": sid})
                    data = {
                        "id": sid,
                        "seq": seq,
                        "portfolio": pid,
                        "status": str(S.REJECTED),
                        "accepted": False,
                        "reason": exc.field,
                        "detail": safe_text(str(exc)),
                        "input": shown,
                        "conflicts": [],
                        "latency_ms": (time.perf_counter() - t0) * 1e3,
                    }
                    m.tx.put(SIGNAL_KIND, sid, S.REJECTED, data)
                    m.record(None, {"status": "rejected", "field": exc.field})
                    m.note("signal.rejected", sid, None, {"field": exc.field, "reason": exc.reason})
                    m.publish(
                        "signal.rejected",
                        portfolio=pid,
                        signal=sid,
                        field=exc.field,
                        reason=exc.reason,
                    )
                else:
                    assert strat is not None
                    m.note("signal.received", sid, None, {"portfolio": pid, "input": shown})
                    try:
                        final, losers = self._decide(
                            m, sig.replace(id=sid, seq=seq), strat, rule, override
                        )
                    except _Refused as refused:  # zero size or a limit: recorded, then raised
                        final, error = refused.signal, refused.error
                    final = final.replace(latency_ms=(time.perf_counter() - t0) * 1e3)
                    data = final.to_record()
                    m.tx.put(SIGNAL_KIND, sid, final.status, data)
                    m.record(None, {"status": str(final.status), "portfolio": pid})
                    self._announce(m, final)
                events = m.take_events()
            # committed: now the in-memory view follows, and then handlers hear of it
            sh.seq = seq
            sh.account(data)
            for old, new in losers:
                sh.move(old.portfolio, old.status, new.status)
                sh.drop_live(old.id)
            if final is not None and final.status is S.QUEUED:
                sh.add_live(final)
            self._publish(events)
            if error is not None:
                raise error
            assert final is not None
            if final.status is S.QUEUED:
                sh.wake()
            return final

    def _publish(self, events: list[Any]) -> None:
        self.registry.publish(events)

    def _size_cap(
        self, sig: Signal, nav: float, held: float, limit: float | None, soft_override: bool
    ) -> float | None:
        """The ``max_position_weight`` passed to sizing: the room left for the whole position.

        With an override of a soft position limit, the limit caps the new
        units alone (the position may then exceed it, audited).
        """
        if limit is None or soft_override or not nav > 0:
            return limit
        room = position_room(
            limit, self._nav_at_entry(sig, nav, held), held, sig.entry, sig.side.sign
        )
        return room * sig.entry / nav

    def _nav_at_entry(self, sig: Signal, nav: float, held: float) -> float:
        """NAV with the symbol valued at the signal's entry (as the controls value it)."""
        if not held:
            return nav
        return nav + held * (sig.entry - mark_price(self.registry.market, sig.symbol))

    def _decide(
        self,
        m: Any,
        sig: Signal,
        strat: StrategyInfo,
        rule: ResolutionStrategy,
        override: Override | None = None,
    ) -> tuple[Signal, list[tuple[Signal, Signal]]]:
        """Enrich, find conflicts and resolve; returns the decided signal and (old, new) losers.

        Raises `_Refused` for a zero size or a limit breach (the caller records it).
        """
        sid, pid, sh = sig.id, sig.portfolio, self._sh
        cfg = m.config(pid)
        limits = parse_limits(cfg, pid)
        positions = m.tx.positions(pid)
        nav = decision_nav(self.registry.market, positions)
        held = float(positions.quantities.get(sig.symbol, 0.0))
        limit = limits.values.get("max_position_weight")
        soft = override is not None and not limits.hard("max_position_weight")
        lot = self._lots.get(sig.symbol, 1)
        sig = enrich_signal(
            sig,
            strat,
            nav=nav,
            lot_size=lot,
            max_position_weight=self._size_cap(sig, nav, held, limit, soft),
            risk_fraction=self.risk_fraction,
            rule=self.priority_rule,
        )
        m.note(
            "signal.validated",
            sid,
            None,
            {"strategy": sig.strategy, "symbol": sig.symbol, "side": str(sig.side)},
        )
        m.note(
            "signal.enriched",
            sid,
            None,
            {
                "risk_reward": sig.risk_reward,
                "priority": sig.priority.name,
                "weight": sig.weight,
                "allocation": sig.allocation,
                "nav": sig.nav,
                "size": sig.size,
            },
        )
        if not sig.size:
            raise _Refused(*self._zero_size(sig, nav, held, limit, lot, limits))
        conflicts: list[dict[str, Any]] = []

        def found(kind: ConflictKind, other: str | None, portfolio: str, **extra: Any) -> None:
            c = {"kind": str(kind), "with": other, "portfolio": portfolio, **extra}
            conflicts.append(c)
            m.note("signal.conflict", sid, None, c)

        same = list(sh.by_key.get((pid, sig.symbol), {}).values())
        dup = find_duplicate(sig, same)
        if dup is not None:
            found(ConflictKind.DUPLICATE, dup.id, pid)
            return sig.replace(
                status=S.REJECTED,
                reason="duplicate",
                detail=f"same strategy, portfolio, symbol and side as live signal {dup.id}",
                conflicts=tuple(conflicts),
            ), []
        if opposes_position(sig, held):
            found(ConflictKind.POSITION, None, pid, quantity=held)
            if self.position_policy == "reject":
                return sig.replace(
                    status=S.REJECTED,
                    reason="position",
                    detail=f"{sig.side} signal against a held position of {held:g} units",
                    conflicts=tuple(conflicts),
                ), []
        trade = ProposedTrade(sig.symbol, sig.side.sign * float(sig.size), sig.entry, 0.0, sig.stop)
        try:
            enforce_pre_trade(
                m, pid, [trade], stage="signal", override=override, config=cfg, limits=limits
            )
        except LimitBreachError as exc:
            raise _Refused(self._rejected(sig, exc, conflicts), exc) from exc
        opposing = find_opposing(sig, same)
        for o in opposing:
            found(ConflictKind.OPPOSING, o.id, pid)
        for peer in self._peers(pid):
            for o in find_opposing(sig, sh.by_key.get((peer, sig.symbol), {}).values()):
                found(ConflictKind.GROUP, o.id, peer)
                opposing.append(o)
        if not opposing:
            return sig.replace(status=S.QUEUED, accepted=True, conflicts=tuple(conflicts)), []
        res = resolve_signal_conflicts(sig, sorted(opposing, key=lambda s: s.seq), rule)
        m.note(
            "signal.resolved",
            sid,
            None,
            {
                "strategy": rule.value,
                "reason": res.reason,
                "winner": res.winner.id,
                "losers": [s.id for s in res.losers],
            },
        )
        if not res.new_wins:
            return sig.replace(
                status=S.SUPERSEDED,
                superseded_by=res.winner.id,
                reason=res.reason,
                detail=f"lost to {res.winner.id} ({res.reason})",
                conflicts=tuple(conflicts),
            ), []
        losers = [(old, self._supersede(m, old, res)) for old in res.losers]
        return sig.replace(status=S.QUEUED, accepted=True, conflicts=tuple(conflicts)), losers

    @staticmethod
    def _rejected(sig: Signal, exc: ValidationError, conflicts: list[dict[str, Any]]) -> Signal:
        return sig.replace(
            status=S.REJECTED,
            reason=exc.field,
            detail=safe_text(str(exc)),
            conflicts=tuple(conflicts),
        )

    def _zero_size(
        self, sig: Signal, nav: float, held: float, limit: float | None, lot: int, limits: Any
    ) -> tuple[Signal, ValidationError]:
        """The rejected signal and its error when the size rounds to zero lots."""
        risk = abs(sig.entry - sig.stop)
        budget = self.risk_fraction * float(sig.allocation or 0.0)
        units = budget / risk
        exc: ValidationError
        if limit is not None and units >= lot:
            # the risk budget buys a lot: the position limit leaves no room for one
            nav_entry = self._nav_at_entry(sig, nav, held)
            after = held + sig.side.sign * lot
            value = abs(after) * sig.entry / nav_entry if nav_entry > 0 else float("inf")
            exc = LimitBreachError(
                "max_position_weight",
                value,
                limit,
                portfolio=sig.portfolio,
                stage="signal",
                item=sig.symbol,
                hard=limits.hard("max_position_weight"),
                reason=(
                    f"{sig.symbol}: {held:g} units held leave no room for one lot of {lot} under"
                    f" max_position_weight={limit:g} of {sig.portfolio!r} (one lot would make"
                    f" it {value:.2%} of the NAV {nav_entry:,.2f}), checked at signal"
                ),
            )
        else:
            exc = ValidationError(
                "size",
                0.0,
                f"{sig.symbol}: {budget:,.2f} at risk ({self.risk_fraction:g} of the strategy's"
                f" capital {float(sig.allocation or 0.0):,.2f} at NAV {nav:,.2f}) over"
                f" {risk:g} per unit is {units:g} units, less than one lot of {lot}:"
                " a zero-size signal is not queued",
            )
        return self._rejected(sig, exc, []), exc

    def _supersede(self, m: Any, old: Signal, res: Resolution) -> Signal:
        new = old.replace(
            status=S.SUPERSEDED,
            superseded_by=res.winner.id,
            reason=res.reason,
            detail=f"displaced by {res.winner.id} ({res.reason})",
        )
        m.tx.put(SIGNAL_KIND, new.id, new.status, new.to_record())
        m.note(
            "signal.superseded",
            new.id,
            {"status": str(old.status)},
            {"status": str(new.status), "superseded_by": res.winner.id, "reason": res.reason},
        )
        m.publish(
            "signal.superseded",
            portfolio=new.portfolio,
            signal=new.id,
            superseded_by=res.winner.id,
            reason=res.reason,
        )
        return new

    def _announce(self, m: Any, sig: Signal) -> None:
        base = {"signal": sig.id, "symbol": sig.symbol, "side": str(sig.side)}
        if sig.status is S.QUEUED:
            m.note("signal.queued", sig.id, None, {"priority": sig.priority.name, "seq": sig.seq})
            m.publish(
                "signal.accepted",
                portfolio=sig.portfolio,
                priority=sig.priority.name,
                size=sig.size,
                **base,
            )
        elif sig.status is S.REJECTED:
            m.note("signal.rejected", sig.id, None, {"reason": sig.reason, "detail": sig.detail})
            m.publish("signal.rejected", portfolio=sig.portfolio, field=sig.reason, **base)
        else:
            m.note(
                "signal.superseded",
                sig.id,
                None,
                {"status": str(sig.status), "superseded_by": sig.superseded_by},
            )
            m.publish(
                "signal.superseded",
                portfolio=sig.portfolio,
                superseded_by=sig.superseded_by,
                reason=sig.reason,
                **base,
            )

    async def process_strategy_signal(
        self, strategy_name: str, signal: Mapping[str, Any] | Signal
    ) -> Signal:
        """The design note's coroutine: `process_signal` for ``strategy_name``'s signal.

        The store work is short and runs in the calling thread; waiting
        consumers of `get_next_signal` are woken when it queues.
        """
        return self.process_signal(signal, strategy=strategy_name)

    async def resolve_signal_conflicts(
        self,
        new_signal: Signal,
        conflicting_signals: Sequence[Signal],
        resolution_strategy: ResolutionStrategy | str | None = None,
    ) -> Resolution:
        """The design note's coroutine: pure resolution, nothing written.

        ``await coordinator.resolve_signal_conflicts(new, conflicting, strategy)``;
        synchronous code calls `pmkit.coordinator.conflicts.resolve_signal_conflicts`.
        ``resolution_strategy`` defaults to the new signal's portfolio setting.
        """
        rule = (
            self.resolution_strategy(new_signal.portfolio)
            if resolution_strategy is None
            else resolution_strategy
        )
        return resolve_signal_conflicts(new_signal, conflicting_signals, rule)

    # -- the queue -----------------------------------------------------------------------------
    def _take(
        self, loop: asyncio.AbstractEventLoop, scope: frozenset[str] | None
    ) -> tuple[Signal | None, asyncio.Future[None] | None]:
        """The next signal this user may execute (dispatched), or a future a new signal wakes.

        Queues are per portfolio: the best head among the portfolios the user
        may ``signal.execute`` on (and within ``scope`` when given) wins, so a
        signal the user may not touch never blocks the ones they may.
        """
        sh = self._sh
        view = self.registry.view()
        with sh.lock:
            while True:
                best: tuple[int, int, str] | None = None
                best_pid = ""
                for pid in list(sh.heaps):
                    if scope is not None and pid not in scope:
                        continue
                    top = sh.queued_top(pid)
                    if top is None or (best is not None and top >= best):
                        continue
                    if view.may("signal.execute", pid):
                        best, best_pid = top, pid
                if best is None:
                    break
                heapq.heappop(sh.heaps[best_pid])
                sig = sh.live[best[2]]
                try:
                    out = self._dispatch(sig)
                except BaseException:
                    heapq.heappush(sh.heaps.setdefault(best_pid, []), best)
                    raise
                if out is not None:
                    return out, None
            fut: asyncio.Future[None] = loop.create_future()
            sh.waiters.append((loop, fut))
            return None, fut

    def _dispatch(self, sig: Signal) -> Signal | None:
        sh = self._sh
        rec = self.registry.service_view().record(SIGNAL_KIND, sig.id)
        if rec is None or rec.status != S.QUEUED:
            # Changed by another writer of the store: follow the store and skip it.
            sh.drop_live(sig.id)
            if rec is not None:
                sh.move(sig.portfolio, S.QUEUED, rec.status)
                if rec.status == S.DISPATCHED:
                    sh.add_live(Signal.from_record(rec.data))
            return None
        with self.registry.mutation("signal.dequeue", sig.id) as m:
            m.require("signal.execute", sig.portfolio)
            rec = m.tx.get(SIGNAL_KIND, sig.id)
            if rec is None or rec.status != S.QUEUED:
                status = "missing" if rec is None else rec.status
                raise TransitionError(sig.id, status, "dequeue", ())
            new = sig.replace(status=S.DISPATCHED)
            m.tx.put(SIGNAL_KIND, sig.id, new.status, new.to_record())
            m.record({"status": "queued"}, {"status": "dispatched"})
            m.publish(
                "signal.dispatched",
                portfolio=sig.portfolio,
                signal=sig.id,
                symbol=sig.symbol,
                side=str(sig.side),
            )
            events = m.take_events()
        sh.move(sig.portfolio, S.QUEUED, S.DISPATCHED)
        sh.drop_live(sig.id)
        sh.add_live(new)
        self._publish(events)
        return new

    async def get_next_signal(
        self, timeout: float | None = None, *, portfolio: str | None = None
    ) -> Signal | None:
        """The highest-priority queued signal this user may execute (ties: earliest), dispatched.

        Each portfolio has its own queue. Signals of portfolios where the user
        lacks ``signal.execute`` stay queued for someone who has it and never
        stand in the way: a desk's trader gets the desk's next signal whatever
        other desks have queued.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait for a signal when none is queued; None waits for ever.
        portfolio : str, optional
            Take only from this portfolio's queue, or from those of this group's
            portfolios (nested included); default: every portfolio the user may
            execute on.

        Returns
        -------
        Signal or None
            None when ``timeout`` passed with nothing queued for this user.

        Raises
        ------
        NotFoundError
            ``portfolio`` names no visible portfolio or group.
        """
        scope = None if portfolio is None else frozenset(self._scope(portfolio))
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + max(float(timeout), 0.0)
        while True:
            sig, fut = self._take(loop, scope)
            if sig is not None:
                return sig
            assert fut is not None
            try:
                if deadline is None:
                    await fut
                else:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return None
                    await asyncio.wait_for(fut, remaining)
            except TimeoutError:
                return None
            finally:
                with self._sh.lock, contextlib.suppress(ValueError):
                    self._sh.waiters.remove((loop, fut))

    def mark_signal_executed(
        self, signal_id: str, execution_result: Mapping[str, Any] | None = None
    ) -> Signal:
        """Close a queued or dispatched signal as executed (once only).

        Parameters
        ----------
        signal_id : str
        execution_result : mapping, optional
            JSON-serialisable facts of the execution (fills, prices, order ids).

        Raises
        ------
        NotFoundError
            Unknown id.
        PermissionDenied
            No ``signal.execute`` on the signal's portfolio.
        TransitionError
            The signal is executed, superseded or rejected already.
        """
        result = _result(execution_result)
        sh = self._sh
        with sh.lock:
            with self.registry.mutation("signal.execute", signal_id) as m:
                rec = m.tx.get(SIGNAL_KIND, signal_id)
                if rec is None:
                    raise NotFoundError("signal", signal_id)
                m.require("signal.execute", rec.data["portfolio"])
                state = S(rec.status)
                if S.EXECUTED not in TRANSITIONS[state]:
                    raise TransitionError(
                        signal_id, rec.status, "execute", [str(s) for s in TRANSITIONS[state]]
                    )
                new = Signal.from_record(rec.data).replace(
                    status=S.EXECUTED, execution_result=result
                )
                m.tx.put(SIGNAL_KIND, signal_id, new.status, new.to_record())
                m.record({"status": rec.status}, {"status": "executed", "result": result})
                m.publish(
                    "signal.executed",
                    portfolio=new.portfolio,
                    signal=signal_id,
                    symbol=new.symbol,
                    side=str(new.side),
                    result=result,
                )
                events = m.take_events()
            sh.move(new.portfolio, state, S.EXECUTED)
            sh.drop_live(signal_id)
            self._publish(events)
        return new

    # -- reads (each filtered by what this user may view) ---------------------------------
    def _scope(self, target: str) -> list[str]:
        """The visible portfolios ``target`` means: itself, or a group's portfolios."""
        view = self.registry.view()
        # an id the user may not see is missing (NotFoundError), like one that does not exist
        if view.target_kind(target) == "group":
            return view.group_portfolios(target)
        return [target]

    def record(self, signal_id: str) -> dict[str, Any]:
        """A signal's stored data (needs VIEWER on its portfolio); any state.

        A signal of a portfolio the user may not view is reported missing
        (`NotFoundError`), so its existence does not leak either.
        """
        rec = self.registry.view().record(SIGNAL_KIND, signal_id)
        if rec is None:
            raise NotFoundError("signal", signal_id)
        return rec.data

    def signal_records(self, states: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Stored data of the signals this user may view, by id, optionally in ``states``.

        Includes rejected inputs (which have no `Signal`), as the views show them.
        """
        statuses = None if states is None else [str(S(x)) for x in states]
        return [r.data for r in self.registry.view().records(SIGNAL_KIND, statuses)]

    def signal(self, signal_id: str) -> Signal:
        """A signal as stored. Signals rejected at validation have no `Signal`: see `record`."""
        data = self.record(signal_id)
        if "input" in data:
            raise NotFoundError("valid signal", signal_id)
        return Signal.from_record(data)

    def _visible(self, signals: Sequence[Signal]) -> list[Signal]:
        view = self.registry.view()
        return [s for s in signals if view.may_read(s.portfolio)]

    def queued_signals(self) -> list[Signal]:
        """Queued signals of the portfolios this user may view, in queue order.

        The order is priority, then receipt, across portfolios: the order an
        administrator's `get_next_signal` would hand them out.
        """
        with self._sh.lock:
            q = [s for s in self._sh.live.values() if s.status is S.QUEUED]
        return sorted(self._visible(q), key=lambda s: (-int(s.priority), s.seq))

    def live_signals(self) -> list[Signal]:
        """Queued (in queue order) then dispatched (in receipt order) signals this user may view."""
        with self._sh.lock:
            d = [s for s in self._sh.live.values() if s.status is S.DISPATCHED]
        return [*self.queued_signals(), *sorted(self._visible(d), key=lambda s: s.seq)]

    @property
    def pending(self) -> int:
        """Number of queued signals of the portfolios this user may view."""
        view = self.registry.view()
        with self._sh.lock:
            counts = list(self._sh.counts.items())
        return sum(int(c.states[S.QUEUED]) for pid, c in counts if view.may_read(pid))

    def get_processing_stats(self) -> dict[str, Any]:
        """Counts, rejection reasons, conflicts and processing latency, over visible portfolios.

        Returns
        -------
        dict
            ``received`` (every signal), ``accepted`` (queued on receipt, whatever
            happened since), the current count per state (``queued``,
            ``dispatched``, ``executed``, ``superseded``, ``rejected``; also as
            ``by_state``), ``rejections`` (reason -> count: the field for a
            validation failure, ``"duplicate"``, ``"position"``), ``conflicts``
            (kind -> count of conflicting pairs found on receipt; one per
            signal for ``position``), and ``latency_ms``: ``count``, ``mean``,
            ``p50``, ``p95``, ``p99``, ``max`` of the time from receipt to
            decision in milliseconds (linear-interpolated percentiles; None
            before any signal). Statistics cover every signal in the store of
            the portfolios this user may view, including those before a restart.
        """
        view = self.registry.view()
        sh = self._sh
        states: Counter[str] = Counter()
        rejections: Counter[str] = Counter()
        conflicts: Counter[str] = Counter()
        accepted = 0
        lats: list[float] = []
        with sh.lock:
            for pid, c in sh.counts.items():
                if not view.may_read(pid):
                    continue
                states.update(c.states)
                rejections.update(c.rejections)
                conflicts.update(c.conflicts)
                accepted += c.accepted
                lats.extend(c.latencies)
        by_state = {str(s): int(states[s]) for s in S}
        lat = np.asarray(lats, dtype=np.float64)
        stats: dict[str, Any] = {
            "received": sum(by_state.values()),
            "accepted": accepted,
            **by_state,
            "by_state": dict(by_state),
            "rejections": dict(sorted((k, v) for k, v in rejections.items() if v)),
            "conflicts": dict(sorted((k, v) for k, v in conflicts.items() if v)),
        }
        if lat.size:
            p50, p95, p99 = np.percentile(lat, [50, 95, 99])
            stats["latency_ms"] = {
                "count": int(lat.size),
                "mean": float(lat.mean()),
                "p50": float(p50),
                "p95": float(p95),
                "p99": float(p99),
                "max": float(lat.max()),
            }
        else:
            stats["latency_ms"] = dict.fromkeys(("count", "mean", "p50", "p95", "p99", "max"))
            stats["latency_ms"]["count"] = 0
        return stats

    def get_active_signals_summary(self) -> dict[str, Any]:
        """Live signals of the portfolios this user may view, counted several ways.

        Returns
        -------
        dict
            ``total``, ``queued``, ``dispatched``; ``by_portfolio`` (id ->
            count), ``by_symbol``, ``by_priority`` (name -> count, every
            level present), ``by_portfolio_symbol`` (portfolio -> symbol ->
            {"long": n, "short": n}) and ``signals``: one dict per signal
            (queue order, then dispatched).
        """
        live = self.live_signals()
        by_ps: dict[str, dict[str, dict[str, int]]] = {}
        for s in live:
            cell = by_ps.setdefault(s.portfolio, {}).setdefault(s.symbol, {"long": 0, "short": 0})
            cell[str(s.side)] += 1
        by_priority = {p.name: 0 for p in sorted(Priority, reverse=True)}
        for s in live:
            by_priority[s.priority.name] += 1
        return {
            "total": len(live),
            "queued": sum(s.status is S.QUEUED for s in live),
            "dispatched": sum(s.status is S.DISPATCHED for s in live),
            "by_portfolio": dict(sorted(Counter(s.portfolio for s in live).items())),
            "by_symbol": dict(sorted(Counter(s.symbol for s in live).items())),
            "by_priority": by_priority,
            "by_portfolio_symbol": by_ps,
            "signals": [_row(s) for s in live],
        }

    def active_signals_frame(self) -> pd.DataFrame:
        """`get_active_signals_summary`'s ``signals`` as a DataFrame indexed by id."""
        import pandas as pd

        cols = list(_row_fields)
        return pd.DataFrame([_row(s) for s in self.live_signals()], columns=cols).set_index("id")

    def __repr__(self) -> str:
        return f"StrategyCoordinator({self.registry!r}, queued={self.pending})"


_row_fields = (
    "id",
    "portfolio",
    "symbol",
    "side",
    "strategy",
    "priority",
    "status",
    "confidence",
    "risk_reward",
    "entry",
    "stop",
    "target",
    "size",
    "allocation",
    "seq",
)


def _row(s: Signal) -> dict[str, Any]:
    out = {k: getattr(s, k) for k in _row_fields}
    out.update(side=str(s.side), priority=s.priority.name, status=str(s.status))
    return out
