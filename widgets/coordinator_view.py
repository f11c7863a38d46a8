"""The Signals tab: strategy runs (start, pause, resume, stop), the live signal queue, statistics.

The view reads the coordinator (`active_signals_frame`, `live_signals`,
`record`, `resolution_strategy`, `get_processing_stats`) and the signal
records it stores, and a `pmkit.coordinator.StrategyRunner` (`runs`,
`may_act`), and formats them; every decision (priority, conflicts,
resolution, who may act) is the services'. Its buttons call
``runner.start`` / ``pause`` / ``resume`` / ``stop``, the same calls as
``%pm strategy ...`` or a notebook. Buttons the user's role or the run's
state does not allow are disabled with a tooltip saying why; the service
still refuses what it must. It refreshes when the registry's event bus
publishes a ``signal.*``, ``coordinator.*`` or ``strategy_run.*`` event
and, optionally, on a timer.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param

from pmkit.display import format_time
from pmkit.errors import PmkitError
from pmkit_widgets.base import (
    Messages,
    RefreshingView,
    after_this_update,
    error_text,
    escape_text,
    typed_frame,
    update_table,
)
from pmkit_widgets.formatting import tabulator_formatters

if TYPE_CHECKING:
    from pmkit.coordinator import StrategyCoordinator, StrategyRunner

__all__ = [
    "CLOSED_COLUMNS",
    "COORDINATOR_TOPICS",
    "RUN_TABLE_COLUMNS",
    "SIGNAL_COLUMNS",
    "CoordinatorView",
]

#: Event topics after which the coordinator view re-reads (the coordinator publishes
#: ``signal.accepted|rejected|superseded|dispatched|executed`` and
#: ``coordinator.settings_changed``; the runner ``strategy_run.started|paused|...``).
COORDINATOR_TOPICS = ("signal.*", "coordinator.*", "strategy_run.*")

#: Columns of the strategy runs table (`StrategyRunner.runs_frame`, its ``id`` index first).
RUN_TABLE_COLUMNS = (
    "id", "strategy", "portfolio", "state", "started_by", "started_at", "symbols",
    "observations", "signals", "queued", "refused", "throttled", "last_error",
)
_RUN_DTYPES = dict.fromkeys(("observations", "signals", "queued", "refused", "throttled"),
                            "int64")
_RUN_KINDS: dict[str, Any] = dict.fromkeys(_RUN_DTYPES, "count")

#: Columns of `StrategyCoordinator.active_signals_frame` (its ``id`` index first).
_FRAME_COLUMNS = (
    "id", "portfolio", "symbol", "side", "strategy", "priority", "status", "confidence",
    "risk_reward", "entry", "stop", "target", "size", "allocation", "seq",
)

#: Columns of the live-signals table: the service's frame, then what the view adds.
SIGNAL_COLUMNS = (*_FRAME_COLUMNS, "time", "conflict", "conflicts", "rule", "resolution")

#: Columns of the recently closed signals table.
CLOSED_COLUMNS = (
    "id", "seq", "portfolio", "symbol", "side", "strategy", "priority", "status",
    "superseded_by", "reason", "detail",
)

_FLOAT_COLUMNS = ("confidence", "risk_reward", "entry", "stop", "target", "size", "allocation")
#: Column dtypes of the tables. Tabulator in the browser keeps the column types of the
#: first data it got, so even an empty table starts with the final dtypes.
_SIGNAL_DTYPES = {**dict.fromkeys(_FLOAT_COLUMNS, "float64"), "seq": "int64",
                  "conflict": "bool"}
#: How the numbers read (`pmkit.display` kinds); times are preformatted text.
_SIGNAL_KINDS: dict[str, Any] = {"entry": "money", "stop": "money", "target": "money",
                                 "allocation": "money", "size": "count",
                                 "confidence": "ratio", "risk_reward": "ratio"}
_CLOSED_DTYPES = {"seq": "int64"}

#: Statistics shown as indicators, in order.
_COUNTS = ("received", "accepted", "queued", "dispatched", "executed", "superseded", "rejected")

_CLOSED_STATES = ("executed", "superseded", "rejected")
_PRIORITY_RANK = {"LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
_CONFLICT_BG = "background-color: #fff3cd"
_LOST_BG = "background-color: #f8d7da"

_TITLES = {
    "id": "Signal", "portfolio": "Portfolio", "symbol": "Symbol", "side": "Side",
    "strategy": "Strategy", "priority": "Priority", "status": "Status",
    "confidence": "Conf.", "risk_reward": "R:R", "entry": "Entry", "stop": "Stop",
    "target": "Target", "size": "Size", "allocation": "Capital", "seq": "Seq",
    "time": "Time", "conflict": "⚠", "conflicts": "Conflicts", "rule": "Rule",
    "resolution": "Resolution", "superseded_by": "Superseded by", "reason": "Reason",
    "detail": "Detail",
}
_RUN_TITLES = {
    "id": "Run", "strategy": "Strategy", "portfolio": "Portfolio", "state": "State",
    "started_by": "Acting as", "started_at": "Started (UTC)", "symbols": "Symbols",
    "observations": "Prices seen", "signals": "Signals", "queued": "Queued",
    "refused": "Refused", "throttled": "Throttled", "last_error": "Last refusal",
}
#: Least role to start, pause, resume or stop a run (the service's rule, for the tooltips).
_ACT_ROLE = "trader"


# -- formatting helpers (no decisions: they describe what the coordinator recorded) ----------
def _describe_conflicts(conflicts: Sequence[dict[str, Any]]) -> str:
    parts = []
    for c in conflicts:
        kind = str(c.get("kind", "?"))
        if c.get("with"):
            where = "" if c.get("portfolio") is None else f" in {c['portfolio']}"
            parts.append(f"{kind} vs {c['with']}{where}")
        elif "quantity" in c:
            parts.append(f"{kind} (holds {float(c['quantity']):g})")
        else:
            parts.append(kind)
    return "; ".join(parts)


def _wins_by_winner(closed: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Superseded signals' records grouped by the live signal that won against them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for data in closed:
        if data.get("status") == "superseded" and data.get("superseded_by"):
            out.setdefault(data["superseded_by"], []).append(data)
    return out


def _closed_row(data: dict[str, Any]) -> dict[str, Any]:
    raw = data.get("input") if isinstance(data.get("input"), dict) else {}
    row = {k: data.get(k, raw.get(k)) for k in CLOSED_COLUMNS}
    for text in ("superseded_by", "reason", "detail"):  # blank, not NaN, when there is none
        row[text] = row[text] or ""
    return row


class CoordinatorView(Messages, RefreshingView):
    """Strategy runs and their controls, the live signal queue, conflicts, and statistics.

    With a ``runner``, the top of the view starts a live strategy on a
    portfolio (acting as the view's user) and lists the runs the user may
    view, with Pause, Resume and Stop for the selected one. Start is enabled
    only for a portfolio the user may trade and a strategy that has no live
    run there; Pause, Resume and Stop only for the states they apply to.
    Each disabled button's tooltip says why. A click on a disabled button
    (a double click's second click) does nothing, so an action happens once.

    Live signals (queued and dispatched, those of portfolios the
    coordinator's user may view) are listed by priority, highest first, then
    by time received. A row involved in a conflict is highlighted and says
    with which signal (``conflicts``), which rule the portfolio resolves
    conflicts with (``rule``) and how it was resolved (``resolution``). A
    second table lists the most recently closed signals (executed,
    superseded, rejected) with ``superseded_by`` and the reason; the
    statistics are `StrategyCoordinator.get_processing_stats`.

    Works inline in a notebook (after ``pn.extension("tabulator")``) and in
    the served app.

    Event-driven refreshes are scheduled on a timer thread, after the
    coordinator call that published the event has returned: the coordinator publishes
    from inside its lock, before its in-memory queue follows the store, so a
    refresh inside the handler would show the state before the change. Call
    `flush` to refresh at once from the calling thread.

    Parameters
    ----------
    coordinator : StrategyCoordinator
        The coordinator to show, as seen by its acting user.
    runner : StrategyRunner, optional
        The strategy runner to control, acting as the same user (default:
        none; the runs section then says how to get one).
    poll_period : int, optional
        Milliseconds between re-reads (default: no polling; events only).
    **params
        Other parameters of the view (see the class parameters).

    Examples
    --------
    >>> import panel as pn
    >>> pn.extension("tabulator")  # doctest: +SKIP
    >>> CoordinatorView(coordinator)  # doctest: +SKIP
    """

    throttle = param.Integer(default=250, bounds=(0, None),
                             doc="Least ms between event-driven refreshes (0: every event).")
    closed_limit = param.Integer(default=50, bounds=(0, None),
                                 doc="How many recently closed signals to list.")
    topics = param.List(default=list(COORDINATOR_TOPICS), item_type=str, constant=True,
                        doc="Event topic patterns that trigger a refresh.")

    def __init__(self, coordinator: StrategyCoordinator, *,
                 runner: StrategyRunner | None = None, poll_period: int | None = None,
                 **params: Any) -> None:
        super().__init__(poll_period=poll_period, **params)
        self.coordinator = coordinator
        self.runner = runner
        self._lock = threading.RLock()
        self._stats: dict[str, Any] = {}
        self._runs: list[Any] = []
        self._registered: dict[str, list[str]] = {}
        self._table = pn.widgets.Tabulator(
            typed_frame(None, SIGNAL_COLUMNS, _SIGNAL_DTYPES),
            disabled=True, show_index=False, selectable=False, sortable=True,
            layout="fit_data_table", sizing_mode="stretch_width", max_height=480,
            titles=_TITLES, hidden_columns=["seq"],
            # the flag reads as the column's mark; the row's colour says the same
            formatters={**tabulator_formatters(_SIGNAL_KINDS),
                        "conflict": {"type": "lookup", "params": {"true": "⚠", "false": ""}}},
            css_classes=["pmkit-signals"],
        )
        self._signals_empty = pn.pane.Markdown(
            "No live signals. Running strategies submit them here as prices move.",
            margin=(0, 10), css_classes=["pmkit-signals-empty"], visible=False)
        self._table.style.apply(_highlight, axis=1, column="conflict", css=_CONFLICT_BG)
        self._closed_table = pn.widgets.Tabulator(
            typed_frame(None, CLOSED_COLUMNS, _CLOSED_DTYPES),
            disabled=True, show_index=False, selectable=False, sortable=True,
            layout="fit_data_stretch", sizing_mode="stretch_width", max_height=320,
            titles=_TITLES, hidden_columns=["seq"], css_classes=["pmkit-closed-signals"],
        )
        self._closed_table.style.apply(_highlight_status, axis=1)
        self._numbers = {
            k: pn.indicators.Number(label=k.capitalize(), value=0, format="{value:,d}",
                                    font_size="24pt", title_size="10pt", margin=(0, 12))
            for k in _COUNTS
        }
        self._details = pn.widgets.Tabulator(
            pd.DataFrame(columns=["statistic", "key", "value"]),
            disabled=True, show_index=False, selectable=False, layout="fit_data_table",
            max_height=260, css_classes=["pmkit-signal-stats"],
        )
        self._status = pn.pane.Markdown("", margin=(0, 10), styles={"color": "#6b7280"})
        self._init_messages()
        runs = self._build_runs()
        self._layout = pn.Column(
            self._status,
            self._error,
            self._message,
            pn.pane.Markdown("### Strategy runs", margin=(0, 10)),
            runs,
            sizing_mode="stretch_width",
        )
        self._start_live(coordinator.registry, self.topics, self._layout)
        # the runs first; the queue, statistics and closed signals (three more tables for the
        # browser to build) join right after
        after_this_update(lambda: self._layout.extend([
            pn.pane.Markdown("### Live signals by priority", margin=(10, 10, 0, 10)),
            self._signals_empty,
            self._table,
            pn.pane.Markdown("### Processing statistics", margin=(10, 10, 0, 10)),
            pn.FlexBox(*self._numbers.values()),
            self._details,
            pn.pane.Markdown("### Recently closed", margin=(10, 10, 0, 10)),
            self._closed_table,
        ]))

    # -- the strategy runs section ------------------------------------------------------
    def _build_runs(self) -> pn.Column:
        from pmkit.strategies import LIVE_STRATEGIES

        names = sorted(LIVE_STRATEGIES)
        self._strategy = pn.widgets.Select(
            label="Strategy", options=names, value=names[0] if names else None, width=170,
            css_classes=["pmkit-run-strategy"])
        self._portfolio = pn.widgets.Select(label="Portfolio", options=[], width=190,
                                            css_classes=["pmkit-run-portfolio"])
        self._params = pn.widgets.TextInput(
            label="Parameters (NAME=VALUE …)", placeholder="defaults", width=230,
            css_classes=["pmkit-run-params"])
        self._symbols = pn.widgets.TextInput(
            label="Symbols (comma-separated)", placeholder="what the portfolio holds",
            width=230, css_classes=["pmkit-run-symbols"])
        self._start_button = pn.widgets.Button(
            label="Start", color="primary", width=90, disabled=True,
            css_classes=["pmkit-run-start"], align="end")
        self._start_button.on_click(lambda _event: self._start_clicked())
        self._run_buttons = {}
        for action in ("pause", "resume", "stop"):
            button = pn.widgets.Button(
                label=action.capitalize(), width=90, disabled=True,
                color="danger" if action == "stop" else "default",
                css_classes=[f"pmkit-run-{action}"])
            button.on_click(lambda _event, a=action: self._run_clicked(a))
            self._run_buttons[action] = button
        self._run_table = pn.widgets.Tabulator(
            typed_frame(None, RUN_TABLE_COLUMNS, _RUN_DTYPES),
            disabled=True, show_index=False, selectable=1, sortable=True,
            layout="fit_data_table", sizing_mode="stretch_width", max_height=260,
            titles=_RUN_TITLES, formatters=tabulator_formatters(_RUN_KINDS),
            css_classes=["pmkit-runs"])
        self._runs_hint = pn.pane.Markdown("", margin=(0, 10), css_classes=["pmkit-runs-empty"])
        for widget in (self._strategy, self._portfolio):
            widget.param.watch(lambda _e: self._update_controls(), "value")
        self._run_table.param.watch(lambda _e: self._update_controls(), "selection")
        if self.runner is None:
            return pn.Column(self._runs_hint, sizing_mode="stretch_width")
        return pn.Column(
            pn.Row(self._strategy, self._portfolio, self._params, self._symbols,
                   self._start_button),
            self._runs_hint,
            self._run_table,
            pn.Row(*self._run_buttons.values()),
            sizing_mode="stretch_width",
        )

    @property
    def runs(self) -> pd.DataFrame:
        """The strategy runs shown (a copy), one row per run."""
        return self._run_table.value.copy()

    @property
    def selected_run(self) -> str | None:
        """Id of the run selected in the runs table (None when none is)."""
        rows = self._run_table.selection
        frame = self._run_table.value
        return str(frame.iloc[rows[0]]["id"]) if rows and rows[0] < len(frame) else None

    def select_run(self, run_id: str | None) -> None:
        """Select ``run_id``'s row (None clears the selection)."""
        ids = list(self._run_table.value["id"])
        self._run_table.selection = [] if run_id is None else [ids.index(run_id)]

    def _user(self) -> str:
        return self.coordinator.registry.user

    def _why_not(self, portfolio: str | None) -> str:
        """Why the user may not act on runs of ``portfolio`` ("" when they may)."""
        if self.runner is None:
            return "No strategy runner in this session."
        if portfolio is None:
            return "Choose a portfolio you trade."
        if self.runner.may_act(portfolio):
            return ""
        return (f"{self._user()} may not trade {portfolio}: starting, pausing and stopping "
                f"strategies needs the {_ACT_ROLE} role.")

    def _update_controls(self) -> None:
        """Enable what the user's role and the runs' states allow; say why otherwise."""
        pid, name = self._portfolio.value, self._strategy.value
        why = self._why_not(pid)
        if not why and name not in self._registered.get(pid, ()):
            why = (f"{name} is not registered in {pid}: a manager registers it with its "
                   "capital (StrategyManager.register_strategy).")
        if not why and name is not None:
            for run in self._runs:
                if (run.strategy, run.portfolio) == (name, pid) and run.state != "stopped":
                    why = (f"{name} already runs on {pid} ({run.id}, {run.state}): "
                           "pause, resume or stop it below.")
        self._start_button.disabled = bool(why)
        self._start_button.description = why or f"Start {name} on {pid} as {self._user()}."
        chosen = next((r for r in self._runs if r.id == self.selected_run), None)
        for action, button in self._run_buttons.items():
            if chosen is None:
                why = "Select a run in the table."
            else:
                why = self._why_not(chosen.portfolio)
                if not why and not self._allowed(action, chosen.state):
                    why = f"{chosen.id} is {chosen.state}: it cannot be {action}d."
            button.disabled = bool(why)
            button.description = why or f"{action.capitalize()} {chosen.id}."

    @staticmethod
    def _allowed(action: str, state: str) -> bool:
        from pmkit.coordinator.runner import RUN_TRANSITIONS

        return state in RUN_TRANSITIONS[action][0]

    def _start_clicked(self) -> None:
        if self._start_button.disabled or self.runner is None:
            return  # a second click of a double click, or a refused one: nothing to do
        from pmkit.coordinator.runner import parse_assignments

        runner = self.runner
        name, pid = self._strategy.value, self._portfolio.value
        params_text, symbols_text = self._params.value, self._symbols.value

        def call() -> Any:
            params = parse_assignments(params_text.split())
            symbols = [s.strip() for s in symbols_text.split(",") if s.strip()] or None
            return runner.start(name, pid, params, symbols=symbols)

        run = self._act(call, lambda r: f"Started {r.strategy} on {r.portfolio} as "
                                        f"{r.started_by}: {r.id}.")
        if run is not None:
            self._params.value = self._symbols.value = ""

    def _run_clicked(self, action: str) -> None:
        run_id = self.selected_run
        if self._run_buttons[action].disabled or self.runner is None or run_id is None:
            return
        call = getattr(self.runner, action)
        self._act(lambda: call(run_id), lambda r: f"{r.id} is {r.state}.")

    def _act(self, call: Any, success: Any) -> Any:
        try:
            result = call()
        except PmkitError as exc:
            self.show_error(error_text(exc))
            return None
        self.show_message(success(result))
        self._safe_refresh()
        return result

    def _refresh_runs(self) -> bool:
        if self.runner is None:
            text = ("No strategy runner in this session: strategies are started from a "
                    "notebook (`StrategyRunner`, `%pm strategy start`).")
            changed = self._runs_hint.object != text
            self._runs_hint.object = text
            return changed
        runner = self.runner
        self._runs = runner.runs()
        frame = pd.DataFrame([r.row() for r in self._runs],
                             columns=[*RUN_TABLE_COLUMNS, "last_signal"])
        frame["started_at"] = [format_time(t) for t in frame["started_at"]]
        frame = typed_frame(frame, RUN_TABLE_COLUMNS, _RUN_DTYPES)
        keep = self.selected_run
        changed = update_table(self._run_table, frame)
        if changed:
            ids = list(frame["id"])
            self._run_table.selection = [ids.index(keep)] if keep in ids else []
        visible = [p.id for p in self.coordinator.registry.portfolios()]
        if list(self._portfolio.options) != visible:
            current = self._portfolio.value
            self._portfolio.options = visible
            tradable = [p for p in visible if runner.may_act(p)]
            self._portfolio.value = current if current in visible else (
                tradable[0] if tradable else (visible[0] if visible else None))
        self._registered = {p: runner.registered(p) for p in visible}
        registered = self._registered.get(self._portfolio.value, [])
        if registered and self._strategy.value not in registered:
            self._strategy.value = registered[0]
        may_trade = any(runner.may_act(p) for p in visible)
        hint = ""
        if not self._runs:
            if may_trade:
                hint = ("**No strategy runs yet.** Choose a strategy and a portfolio you "
                        "trade, then **Start**: it watches live prices and its signals queue "
                        "below.")
            else:
                hint = (f"**No strategy runs yet.** Starting a strategy needs the {_ACT_ROLE} "
                        f"role on a portfolio; {escape_text(self._user())} can watch the runs "
                        "and signals of the portfolios they view here.")
        if runner.stream is None:
            hint += (" No live stream is attached to this runner: runs get no prices "
                     "(`pmkit serve` starts one; in a notebook, `%pm stream start`).")
        hint = hint.strip()
        if self._runs_hint.object != hint:
            self._runs_hint.object = hint
        self._runs_hint.visible = bool(hint)
        self._update_controls()
        return changed

    # -- reading ----------------------------------------------------------------------
    @property
    def signals(self) -> pd.DataFrame:
        """The live signals shown (a copy), by priority then time, one row per signal."""
        return self._table.value.copy()

    @property
    def closed(self) -> pd.DataFrame:
        """The recently closed signals shown (a copy), newest first."""
        return self._closed_table.value.copy()

    @property
    def stats(self) -> dict[str, Any]:
        """The processing statistics shown (`StrategyCoordinator.get_processing_stats`)."""
        return dict(self._stats)

    def _signals_frame(self, closed: Sequence[dict[str, Any]]) -> pd.DataFrame:
        coord = self.coordinator
        frame = coord.active_signals_frame().reset_index()
        live = {s.id: s for s in coord.live_signals()}
        rules: dict[str, str] = {}
        winners = _wins_by_winner(closed)
        times, flags, texts, rule_col, outcome = [], [], [], [], []
        for sid, pid in zip(frame["id"], frame["portfolio"], strict=True):
            sig = live.get(sid)
            conflicts = list(sig.conflicts) if sig is not None else []
            if pid not in rules:
                rules[pid] = str(coord.resolution_strategy(pid))
            won = winners.get(sid, [])
            seq = int(sig.seq) if sig is not None else 0
            times.append(pd.Timestamp(sig.time) if sig is not None else pd.NaT)
            flags.append(bool(conflicts or won))
            texts.append(_describe_conflicts(conflicts))
            rule_col.append(rules[pid])
            outcome.append(self._resolution_text(seq, conflicts, won))
        frame["time"] = pd.Series(times, dtype="datetime64[ns]")
        frame["conflict"] = flags
        frame["conflicts"] = texts
        frame["rule"] = rule_col
        frame["resolution"] = outcome
        frame["_rank"] = frame["priority"].map(_PRIORITY_RANK).fillna(0)
        frame = frame.sort_values(["_rank", "time", "seq"], ascending=[False, True, True],
                                  kind="stable")
        # sorted on the times themselves, shown as people read them (UTC, to the minute)
        frame["time"] = [format_time(t) for t in frame["time"]]
        return typed_frame(frame.reset_index(drop=True), SIGNAL_COLUMNS, _SIGNAL_DTYPES)

    def _resolution_text(self, seq: int, conflicts: Sequence[dict[str, Any]],
                         won: Sequence[dict[str, Any]]) -> str:
        # A superseded signal received before this one was displaced by it; one received
        # after lost to it on arrival.
        parts = [
            f"{'displaced' if int(d.get('seq', 0)) < seq else 'kept over'} {d['id']}"
            f" ({d.get('reason')})"
            for d in won
        ]
        for c in conflicts:
            other = c.get("with")
            if not other or any(d["id"] == other for d in won):
                continue
            if c.get("kind") == "position":
                continue
            try:
                rec = self.coordinator.record(other)
            except PmkitError:  # a peer this user may not view: say nothing more
                continue
            if rec.get("status") == "superseded":
                parts.append(f"displaced {other} ({rec.get('reason')})")
            else:
                parts.append(f"{other} is {rec.get('status')}")
        if not parts and any(c.get("kind") == "position" for c in conflicts):
            parts.append("kept, flagged against the position")
        return "; ".join(parts)

    def _closed_records(self, states: Sequence[str]) -> list[dict[str, Any]]:
        return self.coordinator.signal_records(states)

    def _closed_frame(self, closed: Sequence[dict[str, Any]]) -> pd.DataFrame:
        rows = sorted(closed, key=lambda d: -int(d.get("seq", 0)))
        rows = rows[: self.closed_limit]
        frame = pd.DataFrame([_closed_row(d) for d in rows], columns=list(CLOSED_COLUMNS))
        return typed_frame(frame, CLOSED_COLUMNS, _CLOSED_DTYPES)

    def refresh(self) -> bool:
        """Re-read the coordinator and update what changed.

        Returns
        -------
        bool
            Whether anything shown changed.
        """
        with self._lock:
            records = self._closed_records(_CLOSED_STATES)
            signals = self._signals_frame(records)
            closed = self._closed_frame(records)
            stats = self.coordinator.get_processing_stats()
            changed = update_table(self._table, signals) | update_table(self._closed_table, closed)
            changed |= self._refresh_runs()
            self._signals_empty.visible = signals.empty
            self._table.visible = not signals.empty
            if stats != self._stats:
                self._stats = stats
                for k, number in self._numbers.items():
                    number.value = int(stats.get(k, 0))
                self._details.value = _stats_details(stats)
                changed = True
            if self.error.startswith("Could not refresh"):  # a failed refresh works again
                self.clear_messages()
                changed = True
            if changed or self.last_refresh is None:
                now = datetime.now().replace(microsecond=0)
                with param.edit_constant(self):
                    self.last_refresh = now
                n = len(signals)
                user = escape_text(self.coordinator.registry.user)
                self._status.object = (f"**{n}** live signal{'s' if n != 1 else ''} visible to "
                                       f"<code>{user}</code> · updated {now:%H:%M:%S}")
            return changed

    def __panel__(self) -> pn.Column:
        return self._layout


def _highlight(row: pd.Series, column: str, css: str) -> list[str]:
    return [css if bool(row.get(column)) else ""] * len(row)


def _highlight_status(row: pd.Series) -> list[str]:
    css = _LOST_BG if row.get("status") in ("superseded", "rejected") else ""
    return [css] * len(row)


def _stats_details(stats: dict[str, Any]) -> pd.DataFrame:
    rows: list[tuple[str, str, Any]] = []
    for reason, n in stats.get("rejections", {}).items():
        rows.append(("rejections", str(reason), n))
    for kind, n in stats.get("conflicts", {}).items():
        rows.append(("conflicts", str(kind), n))
    for key, v in stats.get("latency_ms", {}).items():
        value = "—" if v is None else (f"{v:,d}" if isinstance(v, int) else f"{v:,.2f}")
        rows.append(("latency (ms)", key, value))
    return pd.DataFrame([(a, b, str(c)) for a, b, c in rows], columns=["statistic", "key", "value"])
