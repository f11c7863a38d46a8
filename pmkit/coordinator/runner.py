"""Strategy runs: live signal strategies on a price stream, submitting to the coordinator.

A *run* is one live strategy (`pmkit.strategies.live`, by name) watching a
set of symbols for one portfolio, started by a user and acting as that user:
every observed price goes into the symbol's history, the strategy's rule
looks at it, and an idea becomes a signal submitted to the
`StrategyCoordinator` (which validates, sizes, resolves conflicts and queues
it, as for any signal). The `StrategyRunner` service starts, pauses,
resumes and stops runs and lists them.

Lifecycle
---------
``running -> paused -> running`` (resume), ``running | paused -> stopped``
(final). Each change is one store transaction (kind ``"strategy_run"``, id
``"run-<seq>"``, status = state) with its audit record (before/after) and a
portfolio-routed event after the commit: ``strategy_run.started``,
``strategy_run.paused``, ``strategy_run.resumed``, ``strategy_run.stopped``.
A paused run keeps watching prices (its history stays current) but submits
nothing; once `pause` has returned, no further signal of that run is submitted.

Who may act
-----------
Starting, pausing, resuming and stopping need ``signal.submit`` (TRADER) on
the run's portfolio: whoever may trade it (`pmkit.registry.AccessPolicy`).
A refusal raises `PermissionDenied` with nothing written. Runs are read
through the user's view: a run of a portfolio the user may not view is
reported missing (`NotFoundError`), never refused, so its existence does not
leak. Starting also needs the strategy registered and active in the
portfolio (`pmkit.strategies.StrategyManager.register_strategy`, a
manager's decision: it sets the strategy's capital), the same check the
coordinator makes on each of its signals; and one live (running or paused)
run per strategy and portfolio.

Prices and rate limits
----------------------
The runner follows a `pmkit.stream.live.LiveStream` (``on_update``, then
``last_prices()``), or any caller of `StrategyRunner.on_prices`. Stream
updates are processed on one worker thread, off the stream's event loop
(updates that arrive while it is busy are conflated: the latest prices win). An
*observation* of a symbol is a price different from the last one recorded
for it (a conflated stream repeats unchanged prices; a repeat is not news).
Each run keeps the observations its rule needs
(`pmkit.strategies.LiveStrategy.history`) and submits at most what its
`pmkit.strategies.RateLimit` allows (``min_interval`` per symbol,
``max_per_minute`` per run): a burst of ticks cannot flood the queue. What
the coordinator refuses (zero size, a limit, a duplicate) is counted on the
run (``refused``, ``last_error``) and the run goes on.

Counters (observations, signals, queued, refused, throttled) live in this
process; the signals themselves are the coordinator's records. Run one
runner per store (as one coordinator): a new runner reattaches the runs the
store holds as running or paused, with empty histories.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np

from pmkit.coordinator.coordinator import StrategyCoordinator
from pmkit.coordinator.signals import SignalState
from pmkit.display import html_table
from pmkit.errors import (
    AlreadyExistsError,
    NotFoundError,
    PmkitError,
    StoreError,
    TransitionError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.registry.catalogue import register_kind
from pmkit.strategies.live import LIVE_STRATEGIES, LiveStrategy, RateLimit, live_strategy
from pmkit.strategies.types import StrategyInfo, strategy_id
from pmkit.validation import MAX_NAME_LENGTH, MAX_PRICE, check_text, safe_text

__all__ = [
    "MAX_RUN_SYMBOLS",
    "RUN_KIND",
    "RUN_TRANSITIONS",
    "RunState",
    "StrategyRun",
    "StrategyRunner",
    "parse_assignments",
]

#: Store kind of run records.
RUN_KIND = "strategy_run"

#: Most symbols one run watches.
MAX_RUN_SYMBOLS = 200


def _run_scope(rec: Any) -> str | None:
    value = rec.data.get("portfolio")
    return value if isinstance(value, str) else None


register_kind(RUN_KIND, _run_scope)

log = logging.getLogger(__name__)


class RunState(StrEnum):
    """Where a run is in its life (the record's status)."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


R = RunState

#: action -> (states it may start from, state it leads to).
RUN_TRANSITIONS: dict[str, tuple[frozenset[RunState], RunState]] = {
    "pause": (frozenset({R.RUNNING}), R.PAUSED),
    "resume": (frozenset({R.PAUSED}), R.RUNNING),
    "stop": (frozenset({R.RUNNING, R.PAUSED}), R.STOPPED),
}
_TOPICS = {"start": "started", "pause": "paused", "resume": "resumed", "stop": "stopped"}
_LIVE = (R.RUNNING, R.PAUSED)


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def parse_assignments(tokens: Iterable[str]) -> dict[str, str]:
    """``["fast=5", "slow=20"]`` -> ``{"fast": "5", "slow": "20"}`` (values checked by the run).

    Raises
    ------
    ValidationError
        A token without ``=`` or with an empty name (field ``params``), or a
        name given twice.
    """
    out: dict[str, str] = {}
    for token in tokens:
        check_text(token, "params", max_length=MAX_NAME_LENGTH, multiline=False)
        key, sep, value = token.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValidationError("params", token, "must be NAME=VALUE")
        if key in out:
            raise ValidationError("params", key, "is given twice")
        out[key] = value
    return out


@dataclass(frozen=True)
class StrategyRun:
    """A strategy run as stored, with this process's counters.

    Attributes
    ----------
    id : str
        ``"run-<seq>"``.
    strategy : str
        The live strategy's name (and the strategy its signals name).
    portfolio : str
    params : dict
        Every parameter, defaults filled in.
    symbols : tuple of str
        What it watches.
    state : RunState
    started_by : str
        The user it acts as.
    started_at, updated_at : str
        ISO-8601 UTC, to the second.
    updated_by : str
        Who made the last state change.
    live : bool
        Attached in this process (receives prices). False for a stopped run,
        or one whose strategy this process does not know.
    observations, signals, queued, refused, throttled : int
        Prices recorded; signals submitted; of those, queued by the
        coordinator; refused or rejected by it; ideas held back by the rate limits.
    last_signal : str or None
        Id of the last signal submitted.
    last_error : str
        The coordinator's last refusal (``"Type: message"``), or ``""``.
    """

    id: str
    strategy: str
    portfolio: str
    params: dict[str, Any]
    symbols: tuple[str, ...]
    state: RunState
    started_by: str
    started_at: str
    updated_by: str
    updated_at: str
    live: bool = False
    observations: int = 0
    signals: int = 0
    queued: int = 0
    refused: int = 0
    throttled: int = 0
    last_signal: str | None = None
    last_error: str = ""

    def to_record(self) -> dict[str, Any]:
        """The stored data (no counters)."""
        return {
            "id": self.id,
            "strategy": self.strategy,
            "portfolio": self.portfolio,
            "params": dict(self.params),
            "symbols": list(self.symbols),
            "state": str(self.state),
            "started_by": self.started_by,
            "started_at": self.started_at,
            "updated_by": self.updated_by,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> StrategyRun:
        """Inverse of `to_record`."""
        return cls(
            id=data["id"],
            strategy=data["strategy"],
            portfolio=data["portfolio"],
            params=dict(data.get("params", {})),
            symbols=tuple(data.get("symbols", ())),
            state=RunState(data["state"]),
            started_by=data["started_by"],
            started_at=data["started_at"],
            updated_by=data.get("updated_by", data["started_by"]),
            updated_at=data.get("updated_at", data["started_at"]),
        )

    def row(self) -> dict[str, Any]:
        """One table row (the columns of `StrategyRunner.runs_frame`)."""
        return {name: getattr(self, name) for name in RUN_COLUMNS} | {
            "state": str(self.state),
            "symbols": ", ".join(self.symbols),
        }

    def __repr__(self) -> str:
        return (
            f"StrategyRun({self.id}: {self.strategy} on {self.portfolio}, {self.state},"
            f" by {self.started_by}; {self.signals} signals, {self.queued} queued,"
            f" {self.refused} refused)"
        )

    def _repr_html_(self) -> str:
        import pandas as pd

        frame = pd.DataFrame([self.row()], columns=list(RUN_COLUMNS))
        return html_table(frame, RUN_KINDS, titles=RUN_TITLES, caption=f"Strategy run {self.id}")


#: Columns of `StrategyRunner.runs_frame` (``id`` first).
RUN_COLUMNS = (
    "id", "strategy", "portfolio", "state", "started_by", "started_at", "symbols",
    "observations", "signals", "queued", "refused", "throttled", "last_signal", "last_error",
)
#: How each column reads (`pmkit.display` kinds).
RUN_KINDS: dict[str, Any] = {
    "started_at": "time", "observations": "count", "signals": "count", "queued": "count",
    "refused": "count", "throttled": "count",
}
RUN_TITLES = {
    "id": "Run", "strategy": "Strategy", "portfolio": "Portfolio", "state": "State",
    "started_by": "Acting as", "started_at": "Started (UTC)", "symbols": "Symbols",
    "observations": "Prices seen", "signals": "Signals", "queued": "Queued",
    "refused": "Refused", "throttled": "Throttled", "last_signal": "Last signal",
    "last_error": "Last refusal",
}


@dataclass
class _Live:
    """A run attached in this process: its rule, histories, limits and counters."""

    run: StrategyRun
    spec: LiveStrategy
    rule_params: dict[str, Any]
    histories: dict[str, deque[float]]
    limit: RateLimit
    counts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, run: StrategyRun, spec: LiveStrategy) -> _Live:
        rule_params = spec.rule_params(run.params)
        keep = max(int(spec.history(rule_params)), 2)
        return cls(
            run=run,
            spec=spec,
            rule_params=rule_params,
            histories={s: deque(maxlen=keep) for s in run.symbols},
            limit=RateLimit(run.params["min_interval"], run.params["max_per_minute"]),
            counts={"observations": 0, "signals": 0, "queued": 0, "refused": 0,
                    "throttled": 0, "last_signal": None, "last_error": ""},
        )

    def snapshot(self) -> StrategyRun:
        return replace(self.run, live=self.run.state is not R.STOPPED, **self.counts)


class _Pump:
    """One worker thread taking the latest prices from a stream's callbacks (conflating).

    A stream calls back on its own event loop; submitting signals writes the
    store, so it happens here instead, off that loop. Prices that arrive while
    the worker is busy replace each other: it processes the latest.
    """

    def __init__(self, work: Callable[[Mapping[str, float]], Any]) -> None:
        self._work = work
        self._cv = threading.Condition()
        self._pending: Mapping[str, float] | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="pmkit-strategy-runs",
                                        daemon=True)
        self._thread.start()

    def put(self, prices: Mapping[str, float]) -> None:
        with self._cv:
            self._pending = prices
            self._cv.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                prices, self._pending, self._busy = self._pending, None, True
            try:
                self._work(prices)
            except Exception:  # never let one bad update end the runs
                log.exception("strategy runs: processing prices failed")
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def idle(self, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)


@dataclass
class _Shared:
    """State shared by every session (`StrategyRunner.as_user`) of one runner."""

    #: held while prices are processed and while a state change commits: once a
    #: pause returns, its run submits nothing more
    act: threading.RLock = field(default_factory=threading.RLock)
    #: guards the dicts below only; never held while calling another service
    state: threading.Lock = field(default_factory=threading.Lock)
    live: dict[str, _Live] = field(default_factory=dict)
    seq: int = 0
    stream: Any = None
    cancel: Callable[[], None] | None = None
    pump: _Pump | None = None


class StrategyRunner:
    """Runs live signal strategies for portfolios (see the module docstring).

    Parameters
    ----------
    coordinator : StrategyCoordinator
        Receives the signals; its registry's user is who acts through this
        session (`as_user` for another).
    stream : LiveStream, optional
        The price source (anything with ``on_update(callback) -> cancel`` and
        ``last_prices() -> {symbol: price}``). Without one, prices come only
        from `on_prices`.
    clock : callable, default time.monotonic
        Seconds, for the rate limits.
    restore : bool, default True
        Reattach the runs the store holds as running or paused.

    Examples
    --------
    >>> runner = StrategyRunner(StrategyCoordinator(registry), stream)  # doctest: +SKIP
    >>> run = runner.as_user("alice").start("ma_crossover", "client_a/growth",
    ...                                     {"fast": 5, "slow": 20})  # doctest: +SKIP
    >>> runner.as_user("alice").pause(run.id)  # doctest: +SKIP
    """

    def __init__(
        self,
        coordinator: StrategyCoordinator,
        stream: Any = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        restore: bool = True,
    ) -> None:
        if not isinstance(coordinator, StrategyCoordinator):
            raise ValidationError(
                "coordinator", type(coordinator).__name__, "must be a StrategyCoordinator"
            )
        if not callable(clock):
            raise ValidationError("clock", type(clock).__name__, "must be callable")
        self.coordinator = coordinator
        self.registry = coordinator.registry
        self.clock = clock
        self._sh = _Shared()
        self._load(restore)
        if stream is not None:
            self.attach(stream)

    # -- sessions, the stream, restart -----------------------------------------------------
    @classmethod
    def shared(cls, coordinator: StrategyCoordinator, stream: Any = None) -> StrategyRunner:
        """The runner of ``coordinator`` (made on first use), acting as the coordinator's user.

        Front ends that are handed a coordinator (the served app's tabs) reach
        the one runner of its process this way. A ``stream`` given is
        followed when the runner follows none yet.
        """
        with _SHARED_LOCK:
            runner = _SHARED.get(coordinator)
            if runner is None:
                runner = _SHARED[coordinator] = cls(coordinator, stream)
            elif stream is not None and runner.stream is None:
                runner.attach(stream)
        return runner.as_user(coordinator.registry.user)

    def as_user(self, user: str) -> StrategyRunner:
        """The same runner (runs, stream) acting as ``user``."""
        other = object.__new__(StrategyRunner)
        other.__dict__.update(self.__dict__)
        other.coordinator = self.coordinator.as_user(user)
        other.registry = other.coordinator.registry
        return other

    @property
    def stream(self) -> Any:
        """The price source followed (None: only `on_prices`)."""
        return self._sh.stream

    def attach(self, stream: Any) -> None:
        """Follow ``stream`` (its ``on_update``) instead of the current one (None: none)."""
        if stream is not None and not (
            callable(getattr(stream, "on_update", None))
            and callable(getattr(stream, "last_prices", None))
        ):
            raise ValidationError(
                "stream", type(stream).__name__, "needs on_update(callback) and last_prices()"
            )
        sh = self._sh
        with sh.state:
            cancel, sh.cancel, sh.stream = sh.cancel, None, stream
            pump = sh.pump
            if stream is not None and pump is None:
                pump = sh.pump = _Pump(self.on_prices)
        if cancel is not None:
            cancel()
        if stream is not None:
            on_update = stream.on_update(lambda _update: self._tick(stream, pump))
            with sh.state:
                sh.cancel = on_update

    def close(self) -> None:
        """Stop following the stream. Runs keep their stored state (a restart reattaches them)."""
        self.attach(None)
        with self._sh.state:
            pump, self._sh.pump = self._sh.pump, None
        if pump is not None:
            pump.close()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until the stream's latest prices are processed (True) or ``timeout`` s passed."""
        pump = self._sh.pump
        return True if pump is None else pump.idle(timeout)

    def _tick(self, stream: Any, pump: _Pump) -> None:
        if self._sh.stream is stream:  # a callback of a stream detached meanwhile does nothing
            pump.put(stream.last_prices())

    def _load(self, restore: bool) -> None:
        sh = self._sh
        # every run of the store: the runner is shared by every user; reads filter by view
        for rec in self.registry.service_view().records(RUN_KIND):
            sh.seq = max(sh.seq, _seq_of(rec.id))
            if not restore or rec.status not in _LIVE:
                continue
            run = StrategyRun.from_record(rec.data)
            try:
                spec = live_strategy(run.strategy)
                run = replace(run, params=spec.parameters(run.params))
            except PmkitError:
                continue  # a strategy this process does not know: listed, not attached
            sh.live[run.id] = _Live.of(run, spec)

    # -- reads (each through the user's view) ------------------------------------------------
    def _with_counts(self, run: StrategyRun) -> StrategyRun:
        with self._sh.state:
            live = self._sh.live.get(run.id)
            counts = None if live is None else dict(live.counts)
        if counts is None:
            return run
        return replace(run, live=run.state is not R.STOPPED, **counts)

    def runs(self, states: Sequence[str] | None = None) -> list[StrategyRun]:
        """The runs of the portfolios this user may view (optionally in ``states``), by id."""
        statuses = None if states is None else [str(RunState(s)) for s in states]
        view = self.registry.view()
        return [
            self._with_counts(StrategyRun.from_record(r.data))
            for r in view.records(RUN_KIND, statuses)
        ]

    def run(self, run_id: str) -> StrategyRun:
        """One run (`NotFoundError` when it does not exist or its portfolio is not visible)."""
        rec = self.registry.view().record(RUN_KIND, _checked_id(run_id))
        if rec is None:
            raise NotFoundError("strategy run", run_id)
        return self._with_counts(StrategyRun.from_record(rec.data))

    def runs_frame(self, states: Sequence[str] | None = None) -> Any:
        """`runs` as a DataFrame indexed by ``id`` (columns `RUN_COLUMNS`, numbers unformatted)."""
        import pandas as pd

        rows = [r.row() for r in self.runs(states)]
        return pd.DataFrame(rows, columns=list(RUN_COLUMNS)).set_index("id")

    def registered(self, portfolio: str) -> list[str]:
        """Live strategies registered and active in ``portfolio`` (those a run may start), sorted.

        Empty for a portfolio the user may not view.
        """
        view = self.registry.view()
        out = []
        for name in sorted(LIVE_STRATEGIES):
            rec = view.record("strategy", strategy_id(portfolio, name))
            if rec is not None and rec.status == "active":
                out.append(name)
        return out

    def may_act(self, portfolio: str) -> bool:
        """Whether this user may start, pause, resume or stop runs on ``portfolio``."""
        return self.registry.view().may("signal.submit", portfolio)

    # -- state changes ----------------------------------------------------------------------
    def start(
        self,
        strategy: str,
        portfolio: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        symbols: Sequence[str] | None = None,
    ) -> StrategyRun:
        """Start ``strategy`` on ``portfolio``, acting as this session's user.

        Parameters
        ----------
        strategy : str
            A live strategy's name (`pmkit.strategies.LIVE_STRATEGIES`),
            registered and active in the portfolio.
        portfolio : str, optional
            Default: the registry's active or default portfolio.
        params : mapping, optional
            Parameter values (numbers, or their text); the others take their defaults.
        symbols : sequence of str, optional
            Assets to watch (market assets); default: what the portfolio holds.

        Returns
        -------
        StrategyRun
            State ``running``.

        Raises
        ------
        NotFoundError
            No such live strategy, or portfolio.
        ValidationError
            A bad parameter or symbol (named), the strategy not registered or
            inactive in the portfolio (field ``strategy``), the portfolio not
            active, or nothing to watch.
        UnknownAssetError
            A symbol not in the market.
        PermissionDenied
            The user may not trade the portfolio (nothing written).
        AlreadyExistsError
            The strategy already has a live run on the portfolio.
        """
        spec = live_strategy(strategy)
        values = spec.parameters(params)
        chosen = None if symbols is None else self._symbols(symbols)
        pid = self.registry.check_portfolio_exists(self.registry.resolve_portfolio_id(portfolio))
        sh = self._sh
        with sh.act:
            with sh.state:
                seq = sh.seq + 1
            run_id = f"run-{seq:06d}"
            with self.registry.context("strategy_run.start", run_id) as m:
                info = m.portfolio(pid)
                m.require("signal.submit", pid)
                if info.status != "active":
                    raise ValidationError("portfolio", pid, f"is {info.status}, not active")
                _check_registered(m.tx.get("strategy", strategy_id(pid, spec.name)), spec, pid)
                for rec in m.tx.list(RUN_KIND, [str(s) for s in _LIVE]):
                    if rec.data["portfolio"] == pid and rec.data["strategy"] == spec.name:
                        raise AlreadyExistsError(
                            "strategy run", f"{spec.name} on {pid}",
                            f"{rec.id} is {rec.status}: pause, resume or stop it",
                        )
                if m.tx.get(RUN_KIND, run_id) is not None:
                    raise StoreError(f"run id {run_id} is taken: another runner writes here")
                if chosen is None:
                    held = m.view.positions(pid).quantities
                    chosen = tuple(sorted(a for a, q in held.items() if q))
                    if not chosen:
                        raise ValidationError(
                            "symbols", [], f"{pid} holds nothing: name the symbols to watch"
                        )
                now = _now()
                run = StrategyRun(
                    id=run_id, strategy=spec.name, portfolio=pid, params=values,
                    symbols=chosen, state=R.RUNNING, started_by=m.user, started_at=now,
                    updated_by=m.user, updated_at=now,
                )
                m.tx.put(RUN_KIND, run_id, str(run.state), run.to_record())
                m.record(None, run.to_record())
                self._announce(m, "start", run, None)
                events = m.take_events()
            live = _Live.of(run, spec)
            with sh.state:
                sh.seq = seq
                sh.live[run_id] = live
            self.registry.publish(events)
        return live.snapshot()

    def pause(self, run_id: str) -> StrategyRun:
        """``running -> paused``: the run submits nothing more (it keeps watching prices).

        Raises
        ------
        NotFoundError
            No such run visible to the user.
        PermissionDenied
            The user may not trade its portfolio (nothing written).
        TransitionError
            The run is not running.
        """
        return self._change(run_id, "pause")

    def resume(self, run_id: str) -> StrategyRun:
        """``paused -> running`` (same errors as `pause`)."""
        return self._change(run_id, "resume")

    def stop(self, run_id: str) -> StrategyRun:
        """``running | paused -> stopped``, final; the run is detached (same errors as `pause`)."""
        return self._change(run_id, "stop")

    def _change(self, run_id: str, action: str) -> StrategyRun:
        run_id = _checked_id(run_id)
        allowed_from, new_state = RUN_TRANSITIONS[action]
        sh = self._sh
        with sh.act:
            with self.registry.context(f"strategy_run.{action}", run_id) as m:
                rec = m.view.record(RUN_KIND, run_id)
                if rec is None:  # another desk's run is missing, not refused
                    raise NotFoundError("strategy run", run_id)
                old = StrategyRun.from_record(rec.data)
                m.require("signal.submit", old.portfolio)
                if old.state not in allowed_from:
                    allowed = [a for a, (src, _) in RUN_TRANSITIONS.items() if old.state in src]
                    raise TransitionError(run_id, str(old.state), action, allowed)
                new = replace(old, state=new_state, updated_by=m.user, updated_at=_now())
                m.tx.put(RUN_KIND, run_id, str(new.state), new.to_record())
                m.record({"state": str(old.state)}, {"state": str(new.state)})
                self._announce(m, action, new, old.state)
                events = m.take_events()
            with sh.state:
                live = sh.live.get(run_id)
                if live is not None:
                    live.run = replace(live.run, state=new.state, updated_by=new.updated_by,
                                       updated_at=new.updated_at)
                    if new_state is R.STOPPED:  # its counters stay for the listing
                        live.histories.clear()
                counts = None if live is None else dict(live.counts)
            self.registry.publish(events)
        if counts is None:
            return new
        return replace(new, live=new_state is not R.STOPPED, **counts)

    @staticmethod
    def _announce(m: Any, action: str, run: StrategyRun, previous: RunState | None) -> None:
        m.publish(
            f"strategy_run.{_TOPICS[action]}",
            portfolio=run.portfolio,
            run=run.id,
            strategy=run.strategy,
            state=str(run.state),
            previous=None if previous is None else str(previous),
        )

    def _symbols(self, symbols: Any) -> tuple[str, ...]:
        if isinstance(symbols, str) or not isinstance(symbols, Sequence):
            raise ValidationError("symbols", symbols, "must be a sequence of asset ids")
        if not symbols:
            raise ValidationError("symbols", [], "name at least one symbol")
        if len(symbols) > MAX_RUN_SYMBOLS:
            raise ValidationError("symbols", f"<{len(symbols)} symbols>",
                                  f"at most {MAX_RUN_SYMBOLS}")
        market = self.registry.require_market()
        universe = {str(a) for a in market.indexes["asset"]}
        out: list[str] = []
        for s in symbols:
            check_text(s, "symbols", max_length=MAX_NAME_LENGTH, multiline=False,
                       allow_empty=False)
            if s not in universe:
                raise UnknownAssetError("symbols", s, "not an asset of the market universe")
            if s not in out:
                out.append(s)
        return tuple(out)

    # -- prices in, signals out ------------------------------------------------------------
    def on_prices(self, prices: Mapping[str, float], now: float | None = None) -> list[Any]:
        """Record new prices and submit the ideas they trigger (what a stream update does).

        Parameters
        ----------
        prices : mapping symbol -> price
            Latest prices (currency per unit); non-finite or non-positive
            ones are ignored, and so is a price equal to the symbol's last one.
        now : float, optional
            Seconds on the runner's clock (default ``clock()``), for the rate limits.

        Returns
        -------
        list of Signal
            The signals submitted, as the coordinator stored them (queued,
            superseded or rejected); refusals it raised are counted on the run.
        """
        now = self.clock() if now is None else float(now)
        submitted: list[Any] = []
        sh = self._sh
        with sh.act:
            with sh.state:
                lives = list(sh.live.values())
            for live in lives:
                if live.run.state is R.STOPPED:
                    continue
                for symbol in live.run.symbols:
                    price = _price(prices.get(symbol))
                    history = live.histories.get(symbol)
                    if history is None:
                        break  # stopped meanwhile
                    if price is None or (history and history[-1] == price):
                        continue
                    history.append(price)
                    live.counts["observations"] += 1
                    if live.run.state is not R.RUNNING:
                        continue  # paused: the history stays current, nothing is submitted
                    idea = live.spec.rule(np.fromiter(history, float, len(history)),
                                          **live.rule_params)
                    if idea is None:
                        continue
                    if not live.limit.allow(symbol, now):
                        live.counts["throttled"] += 1
                        continue
                    sig = self._submit(live, symbol, idea)
                    if sig is not None:
                        submitted.append(sig)
        return submitted

    def _submit(self, live: _Live, symbol: str, idea: Any) -> Any:
        run = live.run
        coordinator = self.coordinator.as_user(run.started_by)  # the run acts as its starter
        counts = live.counts
        counts["signals"] += 1
        try:
            sig = coordinator.process_signal(
                idea.signal(symbol, run.strategy, run.portfolio, run=run.id)
            )
        except PmkitError as exc:
            counts["refused"] += 1
            counts["last_error"] = safe_text(f"{type(exc).__name__}: {exc}")
            return None
        counts["last_signal"] = sig.id
        if sig.status is SignalState.QUEUED:
            counts["queued"] += 1
        else:
            counts["refused"] += 1
            counts["last_error"] = safe_text(f"{sig.status}: {sig.detail}")
        return sig

    def __repr__(self) -> str:
        with self._sh.state:
            n = sum(v.run.state is R.RUNNING for v in self._sh.live.values())
        return f"StrategyRunner(user={self.registry.user!r}, running={n})"


#: coordinator -> its runner (`StrategyRunner.shared`); a coordinator that goes away takes it
_SHARED: weakref.WeakKeyDictionary[StrategyCoordinator, StrategyRunner] = (
    weakref.WeakKeyDictionary()
)
_SHARED_LOCK = threading.Lock()


def _check_registered(rec: Any, spec: LiveStrategy, pid: str) -> None:
    info = None if rec is None else StrategyInfo.from_record(rec)
    if info is None:
        raise ValidationError(
            "strategy", spec.name,
            f"not registered in portfolio {pid!r}: a manager registers it with its capital"
            " (StrategyManager.register_strategy)",
        )
    if not info.active:
        raise ValidationError("strategy", spec.name, f"inactive in portfolio {pid!r}")


def _checked_id(run_id: Any) -> str:
    return check_text(run_id, "run", max_length=MAX_NAME_LENGTH, multiline=False,
                      allow_empty=False)


def _seq_of(run_id: str) -> int:
    head, _, digits = run_id.partition("-")
    return int(digits) if head == "run" and digits.isdigit() else 0


def _price(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    x = float(value)
    return x if math.isfinite(x) and 0 < x <= MAX_PRICE else None

