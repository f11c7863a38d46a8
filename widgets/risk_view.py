"""Risk of a registry's portfolios: ES contributions, historical stress and drawdowns.

The view calls `pmkit.analytics.overview.risk_overview`, the same function a
notebook user (and ``%pm risk``) calls, and draws what it returns with
Bokeh (`pmkit_widgets.charts`); it computes nothing itself. It asks in two
steps: first without drawdowns (the table, the contributions and the stress
figures show as soon as they are ready), then with them, which reuses the
service's cached parts and fills in the drawdown chart. In a served session (or a notebook) each
step runs on a worker thread while a spinner shows; without an event loop
(scripts, tests) both run inline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn
import param

from pmkit.display import MISSING, format_percent, format_time
from pmkit.errors import ValidationError
from pmkit_widgets.base import (
    Messages,
    after_this_update,
    error_text,
    escape_text,
    run_service_call,
    served_document,
    typed_frame,
)
from pmkit_widgets.charts import PALETTE, hover, new_figure, tooltip_field
from pmkit_widgets.formatting import tabulator_formatters

if TYPE_CHECKING:
    import xarray as xr

    from pmkit.registry import Registry

__all__ = ["CONFIDENCE_LEVELS", "FULL_COVERAGE", "TOP_CONTRIBUTIONS", "RiskView",
           "stress_text"]

#: Confidence levels offered for VaR and expected shortfall (fractions).
CONFIDENCE_LEVELS = (0.9, 0.95, 0.975, 0.99)

#: Assets drawn individually in the contributions chart; the rest form one "other" bar.
TOP_CONTRIBUTIONS = 12

#: A stress figure covering less of the book than this (fraction of gross position
#: value listed at the window start) says how much it covers.
FULL_COVERAGE = 0.995


_SUMMARY = ("portfolio", "es", "var", "volatility")
_STRESS = ("portfolio", "scenario", "return", "pnl")


def stress_text(value: float, coverage: float) -> str:
    """A stress return for people, saying how much of the book it covers when not all.

    ``-0.031, 0.12`` -> ``"-3.10 % (covers 12 % of the book)"``; with no
    position listed in the window (``coverage`` 0) the figure is no loss at
    all but no figure: ``"— (no position was listed then)"``.
    """
    if not np.isfinite(coverage) or coverage >= FULL_COVERAGE:
        return format_percent(value)
    if coverage <= 0:
        return f"{MISSING} (no position was listed then)"
    return f"{format_percent(value)} (covers {format_percent(coverage, 0)} of the book)"


def _summary_table(frame: pd.DataFrame | None = None) -> pn.widgets.Tabulator:
    return _table(
        _SUMMARY if frame is None else frame,
        {"portfolio": "Portfolio", "es": "ES (1d)", "var": "VaR (1d)",
         "volatility": "Volatility (ann.)"},
        tabulator_formatters({"es": "percent", "var": "percent", "volatility": "percent"}),
        "pmkit-risk-summary", _SUMMARY[1:])


def _stress_table(frame: pd.DataFrame | None = None) -> pn.widgets.Tabulator:
    return _table(
        _STRESS if frame is None else frame,
        {"portfolio": "Portfolio", "scenario": "Scenario", "return": "Return", "pnl": "P&L"},
        tabulator_formatters({"pnl": "money"}), "pmkit-risk-stress", ("return", "pnl"))


def _table(data: Sequence[str] | pd.DataFrame, titles: dict[str, str],
           formatters: dict[str, Any], css: str, right: Sequence[str]) -> pn.widgets.Tabulator:
    """A read-only table of ``data`` (a frame, or the column names of an empty one).

    A view makes a new table for new figures instead of setting ``value``:
    Panel's browser side drops a ``value`` that arrives while the table is
    still being built there (``setData`` returns early during Tabulator's
    set-up), which left the first figures of a just-opened tab unseen on a
    busy machine. A new table carries its rows in its first render.
    """
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(columns=list(data))
    return pn.widgets.Tabulator(
        frame, disabled=True, show_index=False, selectable=False,
        sortable=True, layout="fit_data_table", sizing_mode="stretch_width", titles=titles,
        # the number formatters align right themselves; preformatted text is told to
        formatters=formatters,
        text_align={c: "right" for c in right if c not in formatters},
        header_align=dict.fromkeys(right, "right"), max_height=320, css_classes=[css],
        # a few dozen rows at most: drawn at once, without the virtual renderer's
        # row-by-row measuring
        configuration={"renderVertical": "basic"},
    )


class RiskView(Messages, pn.viewable.Viewer):
    """Risk contributions, stress results and drawdowns from `risk_overview`.

    Shows, for the computed portfolios: a table of 1-day VaR and expected
    shortfall (fractions of value, at ``confidence``) and annualized
    volatility; the selected portfolio's Euler contributions to expected
    shortfall as horizontal bars (they add up to its ES); historical stress
    returns by scenario (chart and table, with P&L in currency, and how much
    of the book each scenario covers when some positions were not listed
    then); and the drawdowns of each portfolio's time-weighted return. When
    the user has no portfolio with positions, it says what to do instead.
    Works inline in a notebook (after ``pn.extension("tabulator")``) and in
    the served app.

    Parameters
    ----------
    registry : Registry
        The registry, as seen by its acting user (who needs VIEWER rights).
    portfolios : sequence of str, optional
        Portfolios to analyse; default every visible portfolio with
        something invested.
    confidence : float, default 0.95
        Confidence of VaR and expected shortfall (fraction).
    **params
        Other parameters of the view (``lookback``, ``auto_compute``).
    """

    confidence = param.Number(default=0.95, bounds=(0.5, 0.999),
                              doc="Confidence of VaR and ES (fraction).")
    lookback = param.Integer(default=756, bounds=(30, None),
                             doc="Daily returns behind contributions, VaR, ES and volatility.")
    auto_compute = param.Boolean(default=True, constant=True,
                                 doc="Compute once when the view is created (or served).")
    busy = param.Boolean(default=False, constant=True,
                         doc="Whether a computation runs (either step).")

    def __init__(self, registry: Registry, *, portfolios: Sequence[str] | None = None,
                 confidence: float = 0.95, **params: Any) -> None:
        super().__init__(confidence=confidence, **params)
        self.registry = registry
        self.portfolios = None if portfolios is None else [str(p) for p in portfolios]
        self._dataset: xr.Dataset | None = None
        self._empty_text = ""
        self._charts_pending = False

        levels = sorted({*CONFIDENCE_LEVELS, float(confidence)})
        self._select = pn.widgets.Select(label="Portfolio", options=[], width=220,
                                         css_classes=["pmkit-risk-portfolio"])
        self._confidence = pn.widgets.Select(
            label="Confidence", options={format_percent(c, 1): c for c in levels},
            value=float(confidence), width=110, css_classes=["pmkit-risk-confidence"])
        self._button = pn.widgets.Button(label="Compute risk", color="primary",
                                         css_classes=["pmkit-compute-risk"], align="end")
        self._spinner = pn.indicators.LoadingSpinner(value=False, size=28, visible=False,
                                                     align="center",
                                                     css_classes=["pmkit-progress"])
        self._info = pn.pane.Markdown("", margin=(0, 10), styles={"color": "#6b7280"},
                                      css_classes=["pmkit-risk-info"])
        self._empty = pn.pane.Alert("", alert_type="info", visible=False,
                                    sizing_mode="stretch_width", css_classes=["pmkit-empty"])
        self._init_messages()
        # the tables join the page with their first figures (see `_table`): a browser then
        # builds each once, not an empty one first
        self._summary = _summary_table()
        self._stress_table = _stress_table()
        self._summary_box = pn.Column(sizing_mode="stretch_width", margin=0)
        self._stress_box = pn.Column(sizing_mode="stretch_width", margin=0)
        self._contrib_plot = pn.pane.Bokeh(None, sizing_mode="stretch_width",
                                               min_height=320, css_classes=["pmkit-risk-contrib"])
        self._stress_plot = pn.pane.Bokeh(None, sizing_mode="stretch_width", min_height=300,
                                              css_classes=["pmkit-risk-stress-chart"])
        self._drawdown_plot = pn.pane.Bokeh(None, sizing_mode="stretch_width",
                                                min_height=300,
                                                css_classes=["pmkit-risk-drawdown"])
        self._drawdown_wait = pn.Row(
            pn.indicators.LoadingSpinner(value=True, size=20, align="center"),
            pn.pane.Markdown("Computing drawdowns…", margin=(0, 6)),
            visible=False, css_classes=["pmkit-risk-drawdown-progress"])
        self._results = pn.Column(
            pn.Row(
                pn.Column(pn.pane.Markdown("### Risk by portfolio", margin=(0, 10)),
                          self._summary_box, width=460),
                pn.Column(self._contrib_plot, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            pn.pane.Markdown("### Historical stress", margin=(10, 10, 0, 10)),
            pn.Row(self._stress_plot, pn.Column(self._stress_box, width=560),
                   sizing_mode="stretch_width"),
            pn.pane.Markdown("### Drawdowns", margin=(10, 10, 0, 10)),
            self._drawdown_wait,
            self._drawdown_plot,
            sizing_mode="stretch_width",
        )
        self._layout = pn.Column(
            pn.Row(self._select, self._confidence, self._button, self._spinner),
            self._info,
            self._empty,
            self._error,
            self._results,
            sizing_mode="stretch_width",
            css_classes=["pmkit-risk"],
        )
        self._layout._pmkit_view = self  # type: ignore[attr-defined]
        self._button.on_click(lambda event: self.compute_async())
        self._select.param.watch(lambda event: self._show_portfolio(), "value")
        self._confidence.param.watch(self._confidence_picked, "value")
        self.param.watch(self._confidence_set, "confidence")
        if self.auto_compute:
            if served_document() is not None:
                pn.state.onload(self.compute_async)
            else:
                self.compute()

    # -- reading ------------------------------------------------------------------------
    @property
    def dataset(self) -> xr.Dataset | None:
        """The `risk_overview` dataset shown (None before the first computation).

        Without ``drawdown`` while the second step still runs.
        """
        return self._dataset

    @property
    def portfolio(self) -> str | None:
        """The portfolio whose contributions are shown."""
        return self._select.value

    @property
    def empty_state(self) -> str:
        """What the view says instead of figures when there is nothing to show (or ``""``)."""
        return self._empty_text

    @property
    def summary(self) -> pd.DataFrame:
        """ES, VaR (1 day, fractions of value) and annualized volatility shown, per portfolio."""
        return self._summary.value.set_index("portfolio").copy()

    @property
    def contributions(self) -> pd.DataFrame:
        """The selected portfolio's contributions to ES, one row per asset with a non-zero one.

        Columns ``contribution`` (fraction of value) and ``share`` (fraction of
        the ES), largest first.
        """
        ds, pid = self._dataset, self.portfolio
        if ds is None or pid is None:
            return pd.DataFrame(columns=["contribution", "share"], index=pd.Index([], name="asset"))
        c = ds["contribution"].sel(portfolio=pid).to_series()
        c = c[c != 0].dropna().sort_values(ascending=False)
        es = float(ds["es"].sel(portfolio=pid))
        out = pd.DataFrame({"contribution": c, "share": c / es if es else np.nan})
        out.index.name = "asset"
        return out

    @property
    def stress(self) -> pd.DataFrame:
        """The stress figures shown, one row per portfolio and scenario.

        Columns ``portfolio``, ``scenario``, ``return`` (fraction), ``pnl``
        (currency), ``unlisted`` (net weight held as cash for lack of
        prices) and ``coverage`` (share of the book's gross position value
        the scenario replays); the table shows ``return`` as `stress_text`.
        """
        if self._dataset is None:
            return pd.DataFrame(columns=["portfolio", "scenario", "return", "pnl", "unlisted",
                                         "coverage"])
        return _stress_frame(self._dataset)

    @property
    def drawdown(self) -> pd.DataFrame:
        """Drawdowns shown (fractions, <= 0), time × portfolio (empty until computed)."""
        if self._dataset is None or "drawdown" not in self._dataset:
            return pd.DataFrame()
        return self._dataset["drawdown"].transpose("time", "portfolio").to_pandas()

    # -- actions --------------------------------------------------------------------------
    def _call(self, drawdown: bool) -> Callable[[], xr.Dataset]:
        from pmkit.analytics.overview import risk_overview

        registry, portfolios = self.registry, self.portfolios
        confidence, lookback = float(self.confidence), int(self.lookback)
        return lambda: risk_overview(registry, portfolios, confidence=confidence,
                                     lookback=lookback, drawdown=drawdown)

    def compute(self) -> xr.Dataset | None:
        """Call `risk_overview` now (both steps) and show the result, the empty state or the error.

        Returns
        -------
        xarray.Dataset or None
            The dataset shown, or None when the service refused.
        """
        done: list[xr.Dataset] = []
        self._run(done.append, inline=True)
        return done[-1] if done else None

    def compute_async(self) -> None:
        """Like `compute`, but off the session's thread when an event loop runs (the button)."""
        self._run(lambda ds: None, inline=False)

    def _run(self, sink: Callable[[xr.Dataset], None], *, inline: bool) -> None:
        if self.busy:
            return
        first, second = self._call(False), self._call(True)

        def whole(ds: xr.Dataset) -> None:
            self._show_drawdown(ds)
            sink(ds)

        def ended_second() -> None:
            self._drawdown_wait.visible = False
            self._set_busy(False)

        def quick(ds: xr.Dataset) -> None:
            self._show(ds)
            # the second step reuses the service's cached parts and adds the drawdowns
            self._drawdown_wait.visible = True
            run_service_call(second, on_start=lambda: None, on_done=whole,
                             on_error=self._show_error, on_finish=ended_second, inline=inline)

        def ended_first() -> None:
            if not self._drawdown_wait.visible:
                self._set_busy(False)

        run_service_call(first, on_start=lambda: self._set_busy(True), on_done=quick,
                         on_error=self._show_error, on_finish=ended_first, inline=inline)

    def _confidence_picked(self, event: Any) -> None:
        self.confidence = float(event.new)

    def _confidence_set(self, event: Any) -> None:
        value = float(event.new)
        options = dict(self._confidence.options)
        if value not in options.values():
            options[format_percent(value, 1)] = value
            options = dict(sorted(options.items(), key=lambda kv: kv[1]))
        self._confidence.param.update(options=options, value=value)

    def _set_busy(self, busy: bool) -> None:
        with param.edit_constant(self):
            self.busy = busy
        self._spinner.value = busy
        self._spinner.visible = busy
        self._button.disabled = busy
        if busy:
            self._info.object = "Computing risk…"
        elif self._dataset is not None:
            self._info.object = self._info_text(self._dataset)

    def _show_error(self, exc: Exception) -> None:
        empty = self._empty_for(exc)
        if empty:
            self.clear_messages()
            self._dataset = None
            self._empty_text = empty
            self._empty.object = escape_text(empty)
            self._empty.visible = True
            self._results.visible = False
            self._info.object = ""
            return
        self.show_error(error_text(exc))
        self._info.object = self._info_text(self._dataset) if self._dataset is not None else ""

    def _empty_for(self, exc: Exception) -> str:
        """The empty-state text when ``exc`` is the service saying there is nothing to show."""
        if self.portfolios is not None or not isinstance(exc, ValidationError):
            return ""
        if exc.field != "portfolios":
            return ""
        if not self.registry.portfolios():
            return ("You see no portfolio yet. Create one in the Portfolios tab, or ask an "
                    "owner or administrator to give you access to one; its risk shows here "
                    "once it holds positions.")
        return ("None of the portfolios you see holds a position yet, so there is no risk to "
                "show. Buy assets (propose a rebalance in Optimize and have it approved, or "
                "record trades), then press Compute risk.")

    # -- drawing --------------------------------------------------------------------------
    def _show(self, ds: xr.Dataset) -> None:
        # The figures first, in one message (the browser lays the page out once), then the
        # charts and the stress table, which take longer to draw on both ends.
        self._charts_pending = True
        with pn.io.hold():
            self._draw_figures(ds)
        after_this_update(lambda: self._show_charts(ds))

    def _show_charts(self, ds: xr.Dataset) -> None:
        self._charts_pending = False
        with pn.io.hold():
            self._draw_charts(ds)

    def _draw_figures(self, ds: xr.Dataset) -> None:
        self._dataset = ds
        self.clear_messages()
        self._empty_text = ""
        self._empty.visible = False
        self._results.visible = True
        ids = [str(p) for p in ds["portfolio"].values]
        summary = pd.DataFrame({
            "portfolio": ids,
            "es": ds["es"].values.astype(float),
            "var": ds["var"].values.astype(float),
            "volatility": ds["volatility"].values.astype(float),
        })
        self._summary = _summary_table(
            typed_frame(summary, _SUMMARY, dict.fromkeys(_SUMMARY[1:], "float")))
        self._summary_box.objects = [self._summary]
        keep = self._select.value if self._select.value in ids else ids[0] if ids else None
        self._select.param.update(options=ids, value=keep)
        self._info.object = self._info_text(ds)

    def _draw_charts(self, ds: xr.Dataset) -> None:
        stress = _stress_frame(ds)
        shown = stress.assign(
            **{"return": [stress_text(r, c) for r, c in zip(stress["return"], stress["coverage"],
                                                              strict=True)],
               # a scenario that replays nothing has no P&L to show, not a P&L of 0
               "pnl": stress["pnl"].where(stress["coverage"] > 0)})
        self._stress_table = _stress_table(typed_frame(shown, _STRESS, {"pnl": "float"}))
        self._stress_box.objects = [self._stress_table]
        self._stress_plot.object = _stress_chart(stress)
        self._show_portfolio()

    def _show_drawdown(self, ds: xr.Dataset) -> None:
        self._dataset = ds
        with pn.io.hold():
            self._drawdown_plot.object = _drawdown_chart(self.drawdown)

    def _show_portfolio(self) -> None:
        if self._charts_pending:  # the charts step draws it
            return
        if self._dataset is None or self.portfolio is None:
            self._contrib_plot.object = None
            return
        es = float(self._dataset["es"].sel(portfolio=self.portfolio))
        self._contrib_plot.object = _contribution_chart(self.contributions, self.portfolio, es)

    def _info_text(self, ds: xr.Dataset) -> str:
        a = ds.attrs
        day = escape_text(format_time(a.get("as_of")))
        priced = f"positions priced at it{_older_prices(ds)}; cash booked since counts"
        return (f"As of the close of **{day}** ({priced}) · 1-day VaR and ES at "
                f"{format_percent(float(a.get('confidence', self.confidence)), 1)} from "
                f"{a.get('lookback', self.lookback)} daily returns · "
                f"seen by <code>{escape_text(self.registry.user)}</code>")

    def __panel__(self) -> pn.Column:
        return self._layout


def _older_prices(ds: xr.Dataset, most: int = 3) -> str:
    """``", except client_a/x at the close of 2022-12-20"`` for books priced before ``as_of``."""
    if "priced_at" not in ds:
        return ""
    as_of = pd.Timestamp(ds.attrs["as_of"])
    when = ds["priced_at"].to_series().dropna()
    older = when[when < as_of].sort_values()
    if older.empty:
        return ""
    parts = [f"{escape_text(str(p))} at the close of {escape_text(format_time(t))}"
             for p, t in older.iloc[:most].items()]
    more = f" and {len(older) - most} more" if len(older) > most else ""
    return ", except " + ", ".join(parts) + more + " (their last prices)"


def _stress_frame(ds: xr.Dataset) -> pd.DataFrame:
    frame = pd.DataFrame({
        "return": ds["stress_return"].to_series(),
        "pnl": ds["stress_pnl"].to_series(),
        "unlisted": ds["stress_unlisted"].to_series(),
        "coverage": ds["stress_coverage"].to_series(),
    }).reset_index()
    return frame.loc[:, ["portfolio", "scenario", "return", "pnl", "unlisted", "coverage"]]


def _contribution_chart(contrib: pd.DataFrame, portfolio: str, es: float) -> Any:
    from bokeh.models import ColumnDataSource, FactorRange

    c = contrib["contribution"]
    top = c.iloc[:TOP_CONTRIBUTIONS]
    rest = c.iloc[TOP_CONTRIBUTIONS:]
    if len(rest):
        top = pd.concat([top, pd.Series({f"other ({len(rest)})": float(rest.sum())})])
    assets = [str(a) for a in top.index]
    source = ColumnDataSource({"asset": assets, "contribution": top.to_numpy() * 100,
                               "fraction": top.to_numpy(),
                               "share": top.to_numpy() / es if es else np.full(len(top), np.nan)})
    # a categorical y axis lists its first factor at the bottom: the largest goes on top
    fig = new_figure(f"{portfolio}: ES {format_percent(es)} by asset",
                     height=max(240, 24 * len(assets) + 80),
                     xlabel="contribution to 1-day ES (% of value)",
                     y_range=FactorRange(*reversed(assets)))
    bars = fig.hbar(y="asset", right="contribution", height=0.8, source=source,
                    color="#1f4e79")
    fig.ygrid.grid_line_color = None
    hover(fig, [bars], [("asset", "@{asset}"),
                        ("contribution", tooltip_field("fraction", "percent")),
                        ("share of ES", tooltip_field("share", "percent"))])
    return fig


def _stress_chart(stress: pd.DataFrame) -> Any:
    from bokeh.models import ColumnDataSource, FactorRange
    from bokeh.transform import factor_cmap

    # a scenario that replays none of the book draws no bar (not a bar at 0)
    frame = stress.assign(return_pct=stress["return"].where(stress["coverage"] > 0) * 100)
    portfolios = [str(p) for p in dict.fromkeys(frame["portfolio"])]
    scenarios = [str(s) for s in dict.fromkeys(frame["scenario"])]
    keys = list(zip(frame["scenario"].astype(str), frame["portfolio"].astype(str),
                    strict=True))
    source = ColumnDataSource({
        "key": keys, "portfolio": frame["portfolio"].astype(str).to_list(),
        "scenario": frame["scenario"].astype(str).to_list(),
        "return_pct": frame["return_pct"].to_numpy(dtype=float),
        "return": frame["return"].to_numpy(dtype=float),
        "pnl": frame["pnl"].to_numpy(dtype=float),
        "coverage": frame["coverage"].to_numpy(dtype=float),
    })
    # horizontal, one group per scenario (first on top), a bar per portfolio: the
    # scenario/portfolio labels read in full side by side (a vertical chart overlaps them
    # from four portfolios on)
    present = set(keys)
    factors = [(s, p) for s in reversed(scenarios) for p in reversed(portfolios)
               if (s, p) in present]
    fig = new_figure("Historical stress by scenario", height=max(240, 22 * len(frame) + 90),
                     xlabel="stress return (%)", y_range=FactorRange(*factors))
    palette = [PALETTE[i % len(PALETTE)] for i in range(len(portfolios))]
    bars = fig.hbar(y="key", right="return_pct", height=0.8, source=source,
                    color=factor_cmap("portfolio", palette, portfolios))
    fig.ygrid.grid_line_color = None
    hover(fig, [bars], [("portfolio", "@{portfolio}"), ("scenario", "@{scenario}"),
                        ("return", tooltip_field("return", "percent")),
                        ("P&L", tooltip_field("pnl", "money")),
                        ("covers", tooltip_field("coverage", "percent"))])
    return fig


def _drawdown_chart(drawdown: pd.DataFrame) -> Any:
    from bokeh.models import ColumnDataSource

    fig = new_figure("Drawdown of the time-weighted return", height=300,
                     ylabel="drawdown (%)", x_axis_type="datetime")
    times = drawdown.index.to_numpy()
    lines = []
    for i, column in enumerate(drawdown.columns):
        name = str(column)
        source = ColumnDataSource({"time": times,
                                   "drawdown": drawdown[column].to_numpy(dtype=float) * 100,
                                   "portfolio": [name] * len(times)})
        lines.append(fig.line(x="time", y="drawdown", source=source, line_width=2,
                              color=PALETTE[i % len(PALETTE)], legend_label=name))
    if lines:
        fig.legend.location = "bottom_left"
        fig.legend.click_policy = "hide"
    # the curve is in percent already: the ratio format, then the sign
    hover(fig, lines, [("portfolio", "@{portfolio}"), ("date", "@{time}{%F}"),
                       ("drawdown", f"{tooltip_field('drawdown', 'ratio')} %")],
          formatters={"@{time}": "datetime"})
    return fig
