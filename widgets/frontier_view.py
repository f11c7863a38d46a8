"""An interactive efficient frontier: compute it, pick a point, propose that rebalance.

Every number comes from `pmkit.rebalance.frontier`, the functions a notebook
user calls: `portfolio_frontier` draws the chart, `frontier_targets` gives a
picked point's weights and `propose_frontier_point` stores the proposal (with
the acting user's rights: a viewer is refused, and the refusal is shown with
nothing changed). A point is picked on the chart (tap) or in a select box.
Slow calls run on a worker thread while a spinner shows when an event loop
runs (served app, notebook); inline otherwise. "Propose rebalance" is
enabled only for a user who may propose on the selected portfolio (its
tooltip says why otherwise, from the registry's own answer), is disabled
while a call runs, and a double click proposes once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn
import param

from pmkit.display import format_percent, format_ratio
from pmkit_widgets.base import (
    DOUBLE_CLICK_S,
    LiveRefresh,
    Messages,
    after_this_update,
    desk_table,
    error_text,
    escape_text,
    refusal_text,
    run_service_call,
    served_document,
)
from pmkit_widgets.charts import hover, new_figure, tooltip_field

if TYPE_CHECKING:
    from pmkit.optimize.frontier import EfficientFrontier
    from pmkit.rebalance.types import RebalanceProposal
    from pmkit.registry import Registry

__all__ = ["FrontierView"]


#: Event topics after which the view asks again what the user may do.
FRONTIER_TOPICS = ("access.*",)


def _point_label(k: int, ret: float, vol: float, sharpe: float, best: bool) -> str:
    star = " (max Sharpe)" if best else ""
    return (f"{k}: return {format_percent(ret)} · volatility {format_percent(vol)} · "
            f"Sharpe {format_ratio(sharpe)}{star}")


class FrontierView(Messages, LiveRefresh, pn.viewable.Viewer):
    """A portfolio's efficient frontier; pick a point and propose rebalancing to it.

    The frontier is `pmkit.rebalance.frontier.portfolio_frontier` (long-only,
    on the returns window and universe the rebalance builder uses, capped at
    the portfolio's ``max_position_weight``). Picking a point (tap it on the
    chart, or choose it in the select box) shows its target weights beside
    the current ones and its expected return, volatility (annualized
    fractions) and Sharpe ratio. "Propose rebalance" stores a proposal with
    `propose_frontier_point` as the registry's user; its id and state show in
    a message, or the service's refusal in an alert (nothing changes then).

    The view computes the selected portfolio's frontier when it is created
    (or served) and whenever another portfolio is selected, so a point can
    be picked and proposed at once. Works inline in a notebook (after
    ``pn.extension("tabulator")``) and in the served app.

    Parameters
    ----------
    registry : Registry
        The registry, as seen by its acting user (proposing needs TRADER).
    portfolio : str, optional
        Portfolio shown first; default the first active portfolio the user
        may view.
    points : int, default 20
        Frontier points (>= 2).
    **params
        Other parameters of the view (``lookback``, ``auto_compute``).
    """

    points = param.Integer(default=20, bounds=(2, 200), doc="Frontier points.")
    lookback = param.Integer(default=756, bounds=(30, None),
                             doc="Daily returns in the optimization window.")
    auto_compute = param.Boolean(default=True, constant=True,
                                 doc="Compute on creation and when the portfolio changes.")
    busy = param.Boolean(default=False, constant=True, doc="Whether a service call runs.")

    def __init__(self, registry: Registry, *, portfolio: str | None = None, points: int = 20,
                 **params: Any) -> None:
        super().__init__(points=points, **params)
        self.registry = registry
        self._frontier: EfficientFrontier | None = None
        self._current: pd.Series = pd.Series(dtype=float)
        self._targets: dict[str, float] = {}
        self._proposal: RebalanceProposal | None = None
        self._dots: Any = None  # the chart's points and its ring (Bokeh data sources)
        self._marker: Any = None
        self._result_text = ""
        self._proposed_at = float("-inf")  # monotonic time of the last stored proposal

        ids = [p.id for p in registry.portfolios(status="active")]
        if portfolio is not None and portfolio not in ids:
            ids.insert(0, portfolio)  # the service will say why it cannot be used
        self._portfolio = pn.widgets.Select(label="Portfolio", options=ids,
                                            value=portfolio or (ids[0] if ids else None),
                                            width=220, css_classes=["pmkit-frontier-portfolio"])
        self._points = pn.widgets.IntInput(label="Points", value=int(points), start=2, end=200,
                                           width=90, css_classes=["pmkit-frontier-points"])
        self._compute_button = pn.widgets.Button(label="Compute frontier", color="primary",
                                                 align="end",
                                                 css_classes=["pmkit-compute-frontier"])
        self._spinner = pn.indicators.LoadingSpinner(value=False, size=28, visible=False,
                                                     align="center",
                                                     css_classes=["pmkit-progress"])
        self._progress = pn.pane.Markdown("", margin=(0, 10), styles={"color": "#6b7280"})
        self._picker = pn.widgets.Select(label="Frontier point", options={},
                                         sizing_mode="stretch_width",
                                         css_classes=["pmkit-frontier-point"])
        self._propose_button = pn.widgets.Button(label="Propose rebalance", color="success",
                                                 align="end", disabled=True, width=160,
                                                 css_classes=["pmkit-propose"])
        self._empty = pn.pane.Markdown(
            f"**No active portfolio is visible to <code>{escape_text(registry.user)}</code>.** "
            "The efficient frontier is computed for an active portfolio with holdings: "
            "create or activate one on the Portfolios tab, or ask an owner for a role on one.",
            visible=not ids, margin=(0, 10), css_classes=["pmkit-empty"])
        self._chart = pn.pane.Bokeh(None, sizing_mode="stretch_width", min_height=380,
                                        css_classes=["pmkit-frontier-chart"])
        self._stats = pn.pane.HTML("", sizing_mode="stretch_width",
                                   css_classes=["pmkit-frontier-stats"])
        self._weights = _weights_table()
        # the table joins the page with its first figures (see `_show_point`): a browser
        # then builds it once, not an empty one first
        self._weights_box = pn.Column(sizing_mode="stretch_width", margin=0)
        self._init_messages()
        self._layout = pn.Column(
            self._empty,
            pn.Row(self._portfolio, self._points, self._compute_button, self._spinner),
            self._progress,
            self._error,
            self._message,
            pn.Row(
                self._chart,
                # the picker shrinks so that the button stays inside the column at 1280 px
                pn.Column(pn.Row(self._picker, self._propose_button, sizing_mode="stretch_width"),
                          self._stats, self._weights_box, width=560),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
            css_classes=["pmkit-frontier"],
        )
        self._layout._pmkit_view = self  # type: ignore[attr-defined]
        self._compute_button.on_click(lambda event: self.compute_async())
        self._propose_button.on_click(lambda event: self.propose_async())
        self._picker.param.watch(self._picked, "value")
        self._points.param.watch(lambda event: setattr(self, "points", int(event.new)), "value")
        self.param.watch(lambda event: setattr(self._points, "value", int(event.new)), "points")
        self._portfolio.param.watch(self._portfolio_changed, "value")
        # grants change what the user may propose: follow them on the bus
        self._start_live(registry, FRONTIER_TOPICS, self._layout)
        if self.auto_compute and self._portfolio.value is not None:
            if served_document() is not None:
                pn.state.onload(self.compute_async)
            else:
                self.compute()

    # -- reading ----------------------------------------------------------------------------
    @property
    def portfolio(self) -> str | None:
        """The selected portfolio."""
        return self._portfolio.value

    @property
    def frontier(self) -> EfficientFrontier | None:
        """The frontier shown (None before the first computation)."""
        return self._frontier

    @property
    def point(self) -> int | None:
        """The picked point (an index of ``frontier.dataset.point``), or None."""
        value = self._picker.value
        return None if value is None else int(value)

    @property
    def targets(self) -> dict[str, float]:
        """The picked point's target weights shown, ``{asset: fraction of NAV}``."""
        return dict(self._targets)

    @property
    def weights(self) -> pd.DataFrame:
        """The weights table shown, indexed by asset: ``target``, ``current``, ``change``."""
        return self._weights.value.set_index("asset").copy()

    @property
    def stats(self) -> dict[str, float]:
        """The picked point's ``expected_return``, ``volatility`` (annualized fractions), Sharpe."""
        if self._frontier is None or self.point is None:
            return {}
        row = self._frontier.dataset.isel(point=self.point)
        return {k: float(row[k]) for k in ("expected_return", "volatility", "sharpe")}

    @property
    def proposal(self) -> RebalanceProposal | None:
        """The last proposal stored from this view."""
        return self._proposal

    # -- computing ---------------------------------------------------------------------------
    def _frontier_call(self) -> Callable[[], tuple[EfficientFrontier, pd.Series]]:
        from pmkit.rebalance.frontier import portfolio_frontier
        from pmkit.risk import current_weights

        registry, pid = self.registry, self.portfolio
        points, lookback = int(self.points), int(self.lookback)

        def call() -> tuple[EfficientFrontier, pd.Series]:
            if pid is None:
                from pmkit.errors import ValidationError

                raise ValidationError("portfolio", pid, "no portfolio selected")
            frontier = portfolio_frontier(registry, pid, points=points, lookback=lookback)
            now = current_weights(registry, [pid])["weight"].sel(portfolio=pid).to_series()
            return frontier, now

        return call

    def compute(self) -> EfficientFrontier | None:
        """Compute the selected portfolio's frontier now and show it (or the error).

        Returns
        -------
        EfficientFrontier or None
            None when the service refused (the error is shown).
        """
        out: list[Any] = []
        self._run(self._frontier_call(), lambda r: (self._show_frontier(*r), out.append(r[0])),
                  "Computing the efficient frontier…", inline=True)
        return out[0] if out else None

    def compute_async(self) -> None:
        """Like `compute`, but off the session's thread when an event loop runs (the button)."""
        self._run(self._frontier_call(), lambda r: self._show_frontier(*r),
                  "Computing the efficient frontier…", inline=False)

    def pick(self, point: int) -> None:
        """Pick frontier point ``point`` (as a click on the chart or the select box does).

        A point that is not on the frontier shows the service's
        `ValidationError` and keeps the current pick.
        """
        from pmkit.rebalance.frontier import frontier_targets

        if self._frontier is None:
            self.show_error("ValidationError: no frontier computed yet")
            return
        try:
            frontier_targets(self._frontier, point)  # the service validates the index
        except Exception as exc:
            self._show_error(exc)
            return
        self._picker.value = int(point)

    def propose(self) -> RebalanceProposal | None:
        """Propose rebalancing the portfolio to the picked point, now.

        Calls `propose_frontier_point` as the registry's user.

        Returns
        -------
        RebalanceProposal or None
            The stored proposal (state ``proposed``), or None when the service
            refused (its error is shown and nothing changed).
        """
        out: list[Any] = []
        call = self._propose_call()
        if call is None:
            return None
        self._run(call, lambda p: (self._show_proposal(p), out.append(p)),
                  "Building the proposal…", inline=True)
        return out[0] if out else None

    def propose_async(self) -> None:
        """Like `propose`, but off the session's thread when an event loop runs (the button).

        A click while a call runs, on the disabled button, or within
        `DOUBLE_CLICK_S` of the last stored proposal (the second click of a
        double click) does nothing.
        """
        button = self._propose_button
        if (self.busy or button.disabled or not button.visible
                or time.monotonic() - self._proposed_at < DOUBLE_CLICK_S):
            return
        call = self._propose_call()
        if call is not None:
            self._run(call, self._show_proposal, "Building the proposal…", inline=False)

    def _propose_call(self) -> Callable[[], RebalanceProposal] | None:
        from pmkit.rebalance.frontier import propose_frontier_point

        frontier, point, pid = self._frontier, self.point, self.portfolio
        if frontier is None or point is None:
            self.show_error("ValidationError: compute the frontier and pick a point first")
            return None
        registry = self.registry
        return lambda: propose_frontier_point(registry, pid, frontier, point)

    def _run(self, call: Callable[[], Any], done: Callable[[Any], Any], label: str, *,
             inline: bool) -> None:
        if self.busy:
            return
        # busy at once, not when the worker starts: a click queued behind this one sees it
        self._set_busy(True, label)
        run_service_call(call, on_start=lambda: None, on_done=done, on_error=self._show_error,
                         on_finish=lambda: self._set_busy(False, ""), inline=inline)

    def _set_busy(self, busy: bool, label: str) -> None:
        with param.edit_constant(self):
            self.busy = busy
        self._spinner.value = busy
        self._spinner.visible = busy
        # while busy say what runs; afterwards show what the last result was
        self._progress.object = label if busy else self._result_text
        self.update_controls()

    def update_controls(self) -> None:
        """Enable Compute and Propose when they can act; say why Propose cannot otherwise.

        Whether the user may propose on the portfolio is the registry's answer
        (`ReadView.refusal`); the service checks again when it stores.
        """
        pid = self.portfolio
        self._compute_button.disabled = self.busy or pid is None
        reason: str | None = None
        if self._frontier is None or self.point is None:
            reason = "Compute the frontier and pick a point first."
        elif pid is not None:
            view = self.registry.view()
            refusal = view.refusal("proposal.create", pid)
            if refusal is not None:
                reason = refusal_text("Proposing a rebalance", refusal, view.role(pid))
        self._propose_button.disabled = self.busy or reason is not None
        self._propose_button.description = reason

    def refresh(self) -> bool:
        """Ask again what the user may do (after a grant changed); the frontier stays."""
        self.update_controls()
        return False

    def _show_refresh_error(self, exc: Exception) -> None:
        self.show_error(f"Could not refresh: {error_text(exc)}")

    # -- showing ------------------------------------------------------------------------------
    def _show_error(self, exc: Exception) -> None:
        self.show_error(error_text(exc))

    def _show_frontier(self, frontier: EfficientFrontier, current: pd.Series) -> None:
        # one message to the browser for the whole change, so it lays the page out once
        with pn.io.hold():
            self._draw_frontier(frontier, current)

    def _draw_frontier(self, frontier: EfficientFrontier, current: pd.Series) -> None:
        self.clear_messages()
        self._frontier = frontier
        self._current = current
        ds = frontier.dataset
        best = frontier.max_sharpe_point()
        options = {
            _point_label(int(k), float(r), float(v), float(s), int(k) == best): int(k)
            for k, r, v, s in zip(ds["point"].values, ds["expected_return"].values,
                                  ds["volatility"].values, ds["sharpe"].values, strict=True)
        }
        previous = self._picker.value
        keep = previous if previous is not None and previous in options.values() else best
        self._chart.object = self._build_chart(frontier, keep)  # its marker is on `keep`
        changed = keep != previous
        self._picker.param.update(options=options, value=keep)
        if not changed:  # a changed value has shown the point already (its watcher)
            self._show_point(keep)
        attrs = ds.attrs
        cap = attrs.get("max_position_weight", float("nan"))
        cap_text = "no cap" if cap != cap else f"cap {float(cap):.0%} per asset"
        self._result_text = (
            f"<code>{escape_text(str(attrs.get('portfolio', self.portfolio)))}</code> · "
            f"{ds.sizes['point']} "
            f"points · {ds.sizes['asset']} assets · {attrs.get('lookback', self.lookback)} "
            f"daily returns to {escape_text(str(attrs.get('as_of', '')))} · long-only, {cap_text}"
        )

    def _picked(self, event: Any) -> None:
        if event.new is not None:
            self.clear_messages()
            self._show_point(int(event.new))

    def _show_point(self, point: int) -> None:
        from pmkit.rebalance.frontier import frontier_targets

        frontier = self._frontier
        if frontier is None:
            return
        self._targets = frontier_targets(frontier, point)
        target = pd.Series(self._targets, dtype=float)
        current = self._current[self._current != 0]
        assets = list(dict.fromkeys([*target.sort_values(ascending=False).index,
                                     *current.sort_values(ascending=False).index]))
        tgt = target.reindex(assets).fillna(0.0)  # absent from the targets: sold to zero
        cur = self._current.reindex(assets).fillna(0.0)  # not held now
        frame = pd.DataFrame({
            "asset": assets, "target": tgt.to_numpy(), "current": cur.to_numpy(),
            "change": (tgt - cur).to_numpy(),
        })
        if self._weights_box.objects:
            self._weights.value = frame
        else:  # the first table joins after the chart: the browser shows that meanwhile
            self._weights = _weights_table(frame)
            after_this_update(lambda: self._place_weights(self._weights))
        s = self.stats
        self._stats.object = (
            f'<div style="display:flex;gap:2em">'
            f'<div><div style="color:#6b7280">expected return</div>'
            f'<b data-key="expected_return">{format_percent(s["expected_return"])}</b></div>'
            f'<div><div style="color:#6b7280">volatility</div>'
            f'<b data-key="volatility">{format_percent(s["volatility"])}</b></div>'
            f'<div><div style="color:#6b7280">Sharpe</div>'
            f'<b data-key="sharpe">{format_ratio(s["sharpe"])}</b></div>'
            f'<div style="color:#6b7280">annualized · point {point}</div></div>'
        )
        self._mark(int(point))
        self.update_controls()

    def _place_weights(self, table: pn.widgets.Tabulator) -> None:
        if not self._weights_box.objects:
            self._weights_box.objects = [table]

    def _show_proposal(self, proposal: RebalanceProposal) -> None:
        self._proposal = proposal
        self._proposed_at = time.monotonic()
        state = getattr(proposal.state, "value", proposal.state)
        n = len(proposal.trades)
        text = (f"Proposal {proposal.id} stored: state {state} · {proposal.scope} · "
                f"{proposal.reason} · {n} trade{'s' if n != 1 else ''}")
        self.show_message(text, html=(
            f'Proposal <code class="pmkit-proposal-id">{escape_text(proposal.id)}</code> stored: '
            f'state <b class="pmkit-proposal-state">{escape_text(str(state))}</b> · '
            f"{escape_text(proposal.scope)} · {escape_text(proposal.reason)} · "
            f"{n} trade{'s' if n != 1 else ''}"))

    def _portfolio_changed(self, event: Any) -> None:
        self.clear_messages()
        self.update_controls()
        if self.auto_compute and event.new is not None:
            self.compute_async()

    # -- chart -----------------------------------------------------------------------------
    def _build_chart(self, frontier: EfficientFrontier, point: int) -> Any:
        from bokeh.models import ColorBar, ColumnDataSource, TapTool
        from bokeh.palettes import Viridis256
        from bokeh.transform import linear_cmap

        ds = frontier.dataset
        # the axes read in percent; the tooltips name the fractions the service returned
        vol = ds["volatility"].values.astype(float) * 100
        ret = ds["expected_return"].values.astype(float) * 100
        sharpe = ds["sharpe"].values.astype(float)
        points = ds["point"].values.astype(int)
        fig = new_figure(f"Efficient frontier · {ds.attrs.get('portfolio', '')}", height=380,
                         xlabel="volatility (%, annualized)",
                         ylabel="expected return (%, annualized)")
        fig.line(vol, ret, color="grey", line_width=2)
        dots = ColumnDataSource({"point": points, "volatility": vol, "expected_return": ret,
                                 "sharpe": sharpe})
        finite = sharpe[np.isfinite(sharpe)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        colors = linear_cmap("sharpe", Viridis256, low, high if high > low else low + 1e-9)
        # a tap selects a point; the others keep their colour (no dimming)
        scatter = fig.scatter("volatility", "expected_return", source=dots, size=11,
                              color=colors, line_color="white", selection_alpha=1.0,
                              nonselection_alpha=1.0)
        fig.add_layout(ColorBar(color_mapper=colors["transform"], title="Sharpe", width=10),
                       "right")
        best = int(np.flatnonzero(points == frontier.max_sharpe_point())[0])
        fig.scatter([vol[best]], [ret[best]], marker="star", size=22, color="red",
                    legend_label="max Sharpe")
        (row,) = np.flatnonzero(points == point)
        dots.selected.indices = [int(row)]
        marker = ColumnDataSource({"volatility": [float(vol[row])],
                                   "expected_return": [float(ret[row])]})
        fig.scatter("volatility", "expected_return", source=marker, size=20, fill_color=None,
                    line_color="#dc2626", line_width=3, legend_label="picked")
        fig.legend.location = "bottom_right"
        fig.add_tools(TapTool(renderers=[scatter]))
        hover(fig, [scatter], [("point", "@{point}"),
                               ("volatility", f"{tooltip_field('volatility', 'ratio')} %"),
                               ("expected return",
                                f"{tooltip_field('expected_return', 'ratio')} %"),
                               ("Sharpe", tooltip_field("sharpe", "ratio"))])
        dots.selected.on_change("indices", lambda attr, old, new: self._tapped(new))
        self._dots, self._marker = dots, marker
        return fig

    def _mark(self, point: int) -> None:
        """Ring ``point`` on the chart, and make it the chart's selection."""
        marker, dots = self._marker, self._dots
        if marker is None or dots is None:
            return
        (row,) = np.flatnonzero(np.asarray(dots.data["point"]) == point)
        at = {"volatility": [float(dots.data["volatility"][row])],
              "expected_return": [float(dots.data["expected_return"][row])]}
        if dict(marker.data) == at and list(dots.selected.indices) == [row]:
            return

        def change() -> None:
            marker.data = at
            # picked in the select box: a later tap on the point picked before is a change
            dots.selected.indices = [int(row)]

        # a pick in the select box reaches here from Panel's watcher, which may run
        # without the document lock (a served page then refused the change: issue 16's CI)
        self._on_document(change)
        if served_document() is None:  # a notebook syncs a Bokeh model on request only
            pn.io.push_notebook(self._chart)

    def _tapped(self, index: list[int]) -> None:
        if len(index) and self._dots is not None:
            self.pick(int(self._dots.data["point"][int(np.asarray(index)[0])]))

    def __panel__(self) -> pn.Column:
        return self._layout


def _weights_table(frame: pd.DataFrame | None = None) -> pn.widgets.Tabulator:
    """The picked point's target, current and change of weight per asset (fractions of NAV)."""
    return desk_table(
        ("asset", "target", "current", "change"),
        dict.fromkeys(("target", "current", "change"), "percent"),
        css="pmkit-frontier-weights", max_height=420, frame=frame,
        titles={"asset": "Asset", "target": "Target", "current": "Current", "change": "Change"},
    )
