"""A live view of a `pmkit.coordinator.StrategyCoordinator`: the signal queue and its statistics.

The view only reads the coordinator (`active_signals_frame`, `live_signals`,
`record`, `resolution_strategy`, `get_processing_stats`) and the signal
records it stores, and formats them; every decision (priority, conflicts,
resolution, execution) was made by the coordinator. It refreshes when the
registry's event bus publishes a ``signal.*`` or ``coordinator.*`` event and,
optionally, on a timer.

"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import NumberFormatter

from pmkit.errors import PmkitError
from pmkit_widgets.base import (
    Messages,
    RefreshingView,
    escape_text,
    typed_frame,
    update_table,
)

if TYPE_CHECKING:
    from pmkit.coordinator import StrategyCoordinator

__all__ = [
    "CLOSED_COLUMNS",
    "COORDINATOR_TOPICS",
    "SIGNAL_COLUMNS",
    "CoordinatorView",
]

#: Event topics after which the coordinator view re-reads (the coordinator publishes
#: ``signal.accepted|rejected|superseded|dispatched|executed`` and
#: ``coordinator.settings_changed``).
COORDINATOR_TOPICS = ("signal.*", "coordinator.*")

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
                  "time": "datetime64[ns]", "conflict": "bool"}
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
    """The coordinator's live signal queue, its conflicts and resolutions, and statistics.

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

    def __init__(self, coordinator: StrategyCoordinator, *, poll_period: int | None = None,
                 **params: Any) -> None:
        super().__init__(poll_period=poll_period, **params)
        self.coordinator = coordinator
        self._lock = threading.RLock()
        self._stats: dict[str, Any] = {}
        # One formatter model per column: Tabulator mis-assigns a model shared by columns.
        def money() -> NumberFormatter:
            return NumberFormatter(format="0,0.00", nan_format="—")

        def ratio() -> NumberFormatter:
            return NumberFormatter(format="0.00", nan_format="—")

        self._table = pn.widgets.Tabulator(
            typed_frame(None, SIGNAL_COLUMNS, _SIGNAL_DTYPES),
            disabled=True, show_index=False, selectable=False, sortable=True,
            layout="fit_data_stretch", sizing_mode="stretch_width", max_height=480,
            titles=_TITLES, hidden_columns=["seq"],
            formatters={"entry": money(), "stop": money(), "target": money(),
                        "allocation": money(), "size": NumberFormatter(format="0,0"),
                        "confidence": ratio(), "risk_reward": ratio()},
            css_classes=["pmkit-signals"],
        )
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
        self._layout = pn.Column(
            self._status,
            self._error,
            pn.pane.Markdown("### Processing statistics", margin=(0, 10)),
            pn.FlexBox(*self._numbers.values()),
            self._details,
            pn.pane.Markdown("### Live signals by priority", margin=(10, 10, 0, 10)),
            self._table,
            pn.pane.Markdown("### Recently closed", margin=(10, 10, 0, 10)),
            self._closed_table,
            sizing_mode="stretch_width",
        )
        self._start_live(coordinator.registry, self.topics, self._layout)

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
            if stats != self._stats:
                self._stats = stats
                for k, number in self._numbers.items():
                    number.value = int(stats.get(k, 0))
                self._details.value = _stats_details(stats)
                changed = True
            if self.error:  # a refresh that failed before works again
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
