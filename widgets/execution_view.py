"""The execution view: live progress of parent orders, their schedule, pause / resume / cancel.

A view over `pmkit.execution.ExecutionEngine`: it shows, for the parents the
user may view, progress per portfolio and per parent
(`pmkit.execution.portfolio_progress`, `progress`), the selected parent's
schedule against its fills as a live chart (`schedule_frame`), and its
Pause, Resume and Cancel buttons call ``engine.pause`` / ``resume`` /
``cancel``: the same methods a notebook user calls. The engine's state is
the store's, so the view works over any engine with the same name and venues
as the one executing (another process included, with polling). It refreshes
on ``execution.*`` and ``order.*`` events.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn

from pmkit.execution import (
    ExecutionEngine,
    PaperBroker,
    TCAReport,
    plan_of,
    portfolio_progress,
    progress,
    read_parents,
    schedule_frame,
)
from pmkit_widgets.base import ServiceView, desk_table, escape_text, typed_frame, update_table
from pmkit_widgets.charts import PALETTE, hover, new_figure

if TYPE_CHECKING:
    from pmkit.execution import Order
    from pmkit.registry import Registry

__all__ = ["EMPTY_TEXT", "EXECUTION_TOPICS", "PARENT_COLUMNS", "PORTFOLIO_COLUMNS",
           "TCA_COLUMNS", "ExecutionView", "tca_bps"]

#: Event topics after which the view re-reads.
EXECUTION_TOPICS = ("execution.*", "order.*")

#: Columns of the parents table (`pmkit.execution.progress`).
PARENT_COLUMNS = ("parent", "portfolio", "asset", "algorithm", "state", "filled_pct",
                  "schedule_pct", "deviation", "slippage_bps", "vs_vwap_bps", "quantity",
                  "filled", "alerts")
#: Columns of the portfolios table (`pmkit.execution.portfolio_progress`).
PORTFOLIO_COLUMNS = ("portfolio", "parents", "notional", "filled_pct", "schedule_pct",
                     "slippage_bps", "alerts")

_PARENT_KINDS = {"filled_pct": "ratio", "schedule_pct": "ratio", "deviation": "ratio",
                 "slippage_bps": "ratio", "vs_vwap_bps": "ratio", "quantity": "ratio",
                 "filled": "ratio"}
_PORTFOLIO_KINDS = {"parents": "count", "notional": "money", "filled_pct": "ratio",
                    "schedule_pct": "ratio", "slippage_bps": "ratio", "alerts": "count"}
#: Columns of the transaction-cost table (`pmkit.execution.tca`, currency unless bps).
TCA_COLUMNS = ("parent", "asset", "algorithm", "delay", "timing", "impact", "opportunity",
               "fees", "total", "total_bps", "vs_arrival_bps", "vs_vwap_bps", "vs_close_bps",
               "estimated_cost", "realized_cost")
_TCA_KINDS = {c: ("ratio" if c.endswith("_bps") else "money") for c in TCA_COLUMNS[3:]}
_TCA_DTYPES = dict.fromkeys(TCA_COLUMNS[3:], "float64")
_TCA_TITLES = {"total_bps": "total (bp)", "vs_arrival_bps": "vs arrival (bp)",
               "vs_vwap_bps": "vs VWAP (bp)", "vs_close_bps": "vs close (bp)",
               "estimated_cost": "est. cost", "realized_cost": "realized cost"}
#: The shortfall's parts, stacked in the chart (bps of the arrival notional).
_PARTS = ("delay", "timing", "impact", "opportunity", "fees")

_PARENT_DTYPES = dict.fromkeys(_PARENT_KINDS, "float64")
_PORTFOLIO_DTYPES = {**dict.fromkeys(("notional", "filled_pct", "schedule_pct",
                                      "slippage_bps"), "float64"),
                     "parents": "int64", "alerts": "int64"}
_TITLES = {"filled_pct": "filled %", "schedule_pct": "schedule %",
           "slippage_bps": "slippage vs arrival (bp)", "vs_vwap_bps": "vs interval VWAP (bp)",
           "deviation": "ahead (+) / behind (-), units"}

#: What the view says when no parent order is visible.
EMPTY_TEXT = ("No parent order to show. Parent orders appear here when a proposal is "
              "submitted to the execution engine or `engine.place(...)` places one.")


def tca_bps(table: pd.DataFrame) -> pd.DataFrame:
    """The shortfall's parts of a `tca` parent table in basis points of arrival notional."""
    return table[list(_PARTS)].div(table["notional"], axis=0) * 1e4


def _frame(frame: pd.DataFrame, columns: tuple[str, ...], dtypes: dict[str, str]
           ) -> pd.DataFrame:
    return typed_frame(frame.reset_index(), columns, dtypes)


class ExecutionView(ServiceView):
    """Execution progress, the selected parent's schedule, and its Pause/Resume/Cancel.

    Parameters
    ----------
    registry : Registry
        The session's registry (its user is who acts and what is shown).
    engine : ExecutionEngine, optional
        Acts on pause, resume and cancel; default an engine named ``"algo"``
        over the paper broker (the registry's market), the app's.
    poll_period : int, optional
        Milliseconds between re-reads (None: events only).

    Notes
    -----
    ``filled %`` and ``schedule %`` are percent of each order; slippage in
    basis points of the arrival price (positive = cost); ``ahead / behind``
    in units (negative = behind the schedule).
    """

    topics = EXECUTION_TOPICS

    def __init__(self, registry: Registry, *, engine: ExecutionEngine | None = None,
                 **params: Any) -> None:
        super().__init__(registry, **params)
        if engine is None and registry.market is not None:
            engine = ExecutionEngine(registry, PaperBroker(registry))
        self.engine = engine
        self._parents: dict[str, Order] = {}
        self._updating = False
        self._status = pn.pane.Markdown("", margin=(0, 10), styles={"color": "#6b7280"},
                                        css_classes=["pmkit-status"])
        self._empty = pn.pane.Markdown(EMPTY_TEXT, margin=(5, 10),
                                       css_classes=["pmkit-empty", "pmkit-execution-empty"])
        self._portfolios = desk_table(
            PORTFOLIO_COLUMNS, _PORTFOLIO_KINDS, css="pmkit-execution-portfolios",
            titles=_TITLES, frame=typed_frame(None, PORTFOLIO_COLUMNS, _PORTFOLIO_DTYPES))
        self._table = desk_table(PARENT_COLUMNS, _PARENT_KINDS, css="pmkit-execution-parents",
                                 titles=_TITLES,
                                 frame=typed_frame(None, PARENT_COLUMNS, _PARENT_DTYPES),
                                 max_height=360)
        self._select = pn.widgets.Select(label="Parent order", options=[],
                                         css_classes=["pmkit-execution-select"])
        self._select.param.watch(self._on_select, "value")
        self._pause = pn.widgets.Button(label="Pause", css_classes=["pmkit-pause"],
                                        disabled=True, align="end")
        self._resume = pn.widgets.Button(label="Resume", css_classes=["pmkit-resume"],
                                         disabled=True, align="end")
        self._cancel = pn.widgets.Button(label="Cancel", color="danger", disabled=True,
                                         css_classes=["pmkit-cancel"], align="end")
        self._pause.on_click(lambda _e: self._act("pause", self._pause))
        self._resume.on_click(lambda _e: self._act("resume", self._resume))
        self._cancel.on_click(lambda _e: self._act("cancel", self._cancel))
        self._chart, self._source = self._new_chart()
        self._chart_pane = pn.pane.Bokeh(self._chart, sizing_mode="stretch_width",
                                         css_classes=["pmkit-execution-chart"], visible=False)
        self._tca = desk_table(TCA_COLUMNS, _TCA_KINDS, css="pmkit-execution-tca",
                               titles=_TCA_TITLES, max_height=300,
                               frame=typed_frame(None, TCA_COLUMNS, _TCA_DTYPES))
        self._tca_chart, self._tca_source = self._new_tca_chart()
        # hidden until there are bars: Bokeh draws nothing of an empty factor range
        self._tca_pane = pn.pane.Bokeh(self._tca_chart, sizing_mode="stretch_width",
                                       css_classes=["pmkit-execution-tca-chart"], visible=False)
        self._detail = pn.Column(
            pn.Row(self._select, self._pause, self._resume, self._cancel),
            self._message,
            self._chart_pane,
            pn.pane.Markdown("#### Transaction costs (implementation shortfall)",
                             margin=(10, 10, 0, 10)),
            self._tca,
            self._tca_pane,
            sizing_mode="stretch_width",
        )
        layout = pn.Column(
            self._status,
            self._error,
            self._empty,
            pn.pane.Markdown("#### By portfolio", margin=(10, 10, 0, 10)),
            self._portfolios,
            pn.pane.Markdown("#### Parent orders", margin=(10, 10, 0, 10)),
            self._table,
            self._detail,
            sizing_mode="stretch_width",
        )
        self._start(layout)

    # -- read accessors -------------------------------------------------------------------
    @property
    def parents_table(self) -> pd.DataFrame:
        """The parents table shown (a copy)."""
        return self._table.value.copy()

    @property
    def portfolios_table(self) -> pd.DataFrame:
        """The portfolios table shown (a copy)."""
        return self._portfolios.value.copy()

    @property
    def tca_table(self) -> pd.DataFrame:
        """The transaction-cost table shown (a copy)."""
        return self._tca.value.copy()

    @property
    def tca_chart_data(self) -> pd.DataFrame:
        """The shortfall's parts per parent as charted (bps), indexed by parent."""
        return pd.DataFrame(dict(self._tca_source.data)).set_index("parent")

    @property
    def selected(self) -> str | None:
        """The parent whose schedule is shown."""
        return self._select.value or None

    @property
    def chart_data(self) -> pd.DataFrame:
        """The selected parent's schedule and cumulative fills, as charted."""
        return pd.DataFrame(dict(self._source.data)).set_index("interval")

    def select(self, parent_id: str) -> None:
        """Show ``parent_id``'s schedule (as a click on it would)."""
        self._select.value = parent_id

    # -- refreshing ------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Re-read the parents this user may view and update what changed."""
        parents = read_parents(self.registry, with_fills=True)
        self._parents = {p.id: p for p in parents if plan_of(p) is not None}
        planned = list(self._parents.values())
        changed = update_table(self._table,
                               _frame(progress(planned), PARENT_COLUMNS, _PARENT_DTYPES))
        changed |= update_table(self._portfolios, _frame(portfolio_progress(planned),
                                                         PORTFOLIO_COLUMNS, _PORTFOLIO_DTYPES))
        ids = list(self._parents)
        if ids != list(self._select.options):
            self._updating = True
            try:
                keep = self._select.value if self._select.value in ids else (ids[-1] if ids
                                                                             else None)
                self._select.options = ids
                self._select.value = keep
            finally:
                self._updating = False
            changed = True
        self._draw()
        changed |= self._draw_tca(planned)
        n = len(ids)
        working = sum(1 for p in planned if plan_of(p).state == "working" and p.is_open)
        self._status.object = (f"**{n}** parent order{'s' if n != 1 else ''} visible to "
                               f"<code>{escape_text(self.registry.user)}</code> · "
                               f"**{working}** working")
        self._empty.visible = n == 0
        # no hidden hint left in the page either: a browser test finds the table or the hint
        self._empty.object = EMPTY_TEXT if n == 0 else ""
        self._detail.visible = n > 0
        self.update_controls()
        return changed

    def _on_select(self, _event: Any) -> None:
        if not self._updating:
            self.clear_messages()
            self._draw()
            self.update_controls()

    # -- the chart ----------------------------------------------------------------------------
    @staticmethod
    def _new_chart() -> tuple[Any, Any]:
        from bokeh.models import ColumnDataSource

        source = ColumnDataSource({"interval": [], "target": [], "filled": []})
        fig = new_figure("Schedule and fills", height=300, xlabel="interval",
                         ylabel="units (cumulative)")
        target = fig.line("interval", "target", source=source, color="#9ca3af", line_width=2,
                          legend_label="schedule")
        filled = fig.step("interval", "filled", source=source, color="#1f4e79", line_width=2,
                          mode="after", legend_label="filled")
        fig.legend.location = "top_left"
        hover(fig, [target, filled], [("interval", "@interval"), ("schedule", "@target{0,0}"),
                                      ("filled", "@filled{0,0}")])
        return fig, source

    @staticmethod
    def _new_tca_chart() -> tuple[Any, Any]:
        from bokeh.models import ColumnDataSource, FactorRange

        source = ColumnDataSource({"parent": [], **{p: [] for p in _PARTS}})
        fig = new_figure("Implementation shortfall by part", height=280,
                         ylabel="bp of arrival notional (cost > 0)", x_range=FactorRange())
        bars = fig.vbar_stack(list(_PARTS), x="parent", source=source, width=0.7,
                              color=list(PALETTE[:len(_PARTS)]), legend_label=list(_PARTS))
        fig.legend.location = "top_left"
        fig.xaxis.major_label_orientation = 0.8
        hover(fig, bars, [("parent", "@parent"), *[(p, f"@{p}{{0.00}} bp") for p in _PARTS]])
        return fig, source

    def _draw_tca(self, planned: list[Order]) -> bool:
        report = [p for p in planned if p.filled or not p.is_open]
        self._tca_pane.visible = bool(report)
        if not report:
            return update_table(self._tca, typed_frame(None, TCA_COLUMNS, _TCA_DTYPES))
        table = TCAReport(report).table()
        bps = tca_bps(table)
        factors = [str(i) for i in bps.index]
        data = {"parent": factors, **{p: bps[p].tolist() for p in _PARTS}}

        def draw() -> None:
            self._tca_chart.x_range.factors = factors
            self._tca_source.data = data

        self._on_document(draw)
        return update_table(self._tca, _frame(table, TCA_COLUMNS, _TCA_DTYPES))

    def _draw(self) -> None:
        parent = self._parents.get(self._select.value or "")
        if parent is None:
            self._chart_pane.visible = False
            return
        frame = schedule_frame(parent).reset_index()
        data = {"interval": frame["interval"].tolist(), "target": frame["target"].tolist(),
                "filled": frame["filled"].tolist()}
        algorithm = plan_of(parent).algorithm.upper()
        title = f"{parent.id}: {parent.asset} {algorithm}, schedule and fills"

        def draw() -> None:
            self._source.data = data
            self._chart.title.text = title

        self._on_document(draw)
        self._chart_pane.visible = True

    # -- buttons ------------------------------------------------------------------------------
    def update_controls(self) -> None:
        """Pause for a working parent, Resume for a paused one, Cancel while it is open."""
        parent = self._parents.get(self._select.value or "")
        plan = None if parent is None else plan_of(parent)
        may = (parent is not None and self.engine is not None
               and parent.broker == self.engine.name
               and self.registry.view().refusal("ledger.trade", parent.portfolio) is None)
        open_ = parent is not None and parent.is_open and plan is not None
        self._pause.disabled = not (may and open_ and plan.state == "working") or self.acting
        self._resume.disabled = not (may and open_ and plan.state == "paused") or self.acting
        self._cancel.disabled = not (may and open_) or self.acting

    def _act(self, verb: str, button: pn.widgets.Button) -> Any:
        parent_id = self._select.value
        if not parent_id or self.engine is None:
            return None
        engine = self.engine
        call = {"pause": lambda: engine.pause(parent_id),
                "resume": lambda: engine.resume(parent_id),
                "cancel": lambda: engine.cancel(parent_id)}[verb]
        past = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[verb]
        return self.act(call, f"{parent_id} {past}", button=button)
