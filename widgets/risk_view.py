"""Risk of a registry's portfolios: ES contributions, historical stress and drawdowns.

The view calls `pmkit.analytics.overview.risk_overview`, the same function a
notebook user (and ``%pm risk``) calls, and draws what it returns with
hvplot; it computes nothing itself. The service call can take seconds, so in
a served session (or a notebook) it runs on a worker thread while a spinner
shows; without an event loop (scripts, tests) it runs inline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import NumberFormatter

from pmkit_widgets.base import (
    Messages,
    error_text,
    escape_text,
    run_service_call,
    served_document,
)

if TYPE_CHECKING:
    import xarray as xr

    from pmkit.registry import Registry

__all__ = ["CONFIDENCE_LEVELS", "TOP_CONTRIBUTIONS", "RiskView"]

#: Confidence levels offered for VaR and expected shortfall (fractions).
CONFIDENCE_LEVELS = (0.9, 0.95, 0.975, 0.99)

#: Assets drawn individually in the contributions chart; the rest form one "other" bar.
TOP_CONTRIBUTIONS = 12

def _pct(digits: int = 2) -> NumberFormatter:
    # values are fractions; numbro's percent format multiplies by 100
    return NumberFormatter(format="0." + "0" * digits + "%", nan_format="—")


def _table(columns: Sequence[str], titles: dict[str, str], formatters: dict[str, Any],
           css: str) -> pn.widgets.Tabulator:
    numeric = list(formatters)
    return pn.widgets.Tabulator(
        pd.DataFrame(columns=list(columns)), disabled=True, show_index=False, selectable=False,
        sortable=True, layout="fit_data_stretch", sizing_mode="stretch_width", titles=titles,
        formatters=formatters, text_align=dict.fromkeys(numeric, "right"),
        header_align=dict.fromkeys(numeric, "right"), max_height=320, css_classes=[css],
    )


class RiskView(Messages, pn.viewable.Viewer):
    """Risk contributions, stress results and drawdowns from `risk_overview`.

    Shows, for the computed portfolios: a table of 1-day VaR and expected
    shortfall (fractions of value, at ``confidence``) and annualized
    volatility; the selected portfolio's Euler contributions to expected
    shortfall as horizontal bars (they add up to its ES); historical stress
    returns by scenario (chart and table, with P&L in currency); and the
    drawdowns of each portfolio's time-weighted return. Works inline in a
    notebook (after ``pn.extension("tabulator")``) and in the served app.

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
    busy = param.Boolean(default=False, constant=True, doc="Whether a computation runs.")

    def __init__(self, registry: Registry, *, portfolios: Sequence[str] | None = None,
                 confidence: float = 0.95, **params: Any) -> None:
        super().__init__(confidence=confidence, **params)
        self.registry = registry
        self.portfolios = None if portfolios is None else [str(p) for p in portfolios]
        self._dataset: xr.Dataset | None = None

        levels = sorted({*CONFIDENCE_LEVELS, float(confidence)})
        self._select = pn.widgets.Select(label="Portfolio", options=[], width=220,
                                         css_classes=["pmkit-risk-portfolio"])
        self._confidence = pn.widgets.Select(
            label="Confidence", options={f"{c:.1%}": c for c in levels}, value=float(confidence),
            width=110, css_classes=["pmkit-risk-confidence"])
        self._button = pn.widgets.Button(label="Compute risk", color="primary",
                                         css_classes=["pmkit-compute-risk"], align="end")
        self._spinner = pn.indicators.LoadingSpinner(value=False, size=28, visible=False,
                                                     align="center",
                                                     css_classes=["pmkit-progress"])
        self._info = pn.pane.Markdown("", margin=(0, 10), styles={"color": "#6b7280"})
        self._init_messages()
        self._summary = _table(
            ["portfolio", "es", "var", "volatility"],
            {"portfolio": "Portfolio", "es": "ES (1d)", "var": "VaR (1d)",
             "volatility": "Volatility (ann.)"},
            {"es": _pct(), "var": _pct(), "volatility": _pct()}, "pmkit-risk-summary")
        self._stress_table = _table(
            ["portfolio", "scenario", "return", "pnl", "unlisted"],
            {"portfolio": "Portfolio", "scenario": "Scenario", "return": "Return",
             "pnl": "P&L", "unlisted": "Unlisted weight"},
            {"return": _pct(), "pnl": NumberFormatter(format="0,0", nan_format="—"),
             "unlisted": _pct(1)}, "pmkit-risk-stress")
        self._contrib_plot = pn.pane.HoloViews(None, sizing_mode="stretch_width",
                                               min_height=320, css_classes=["pmkit-risk-contrib"])
        self._stress_plot = pn.pane.HoloViews(None, sizing_mode="stretch_width", min_height=300)
        self._drawdown_plot = pn.pane.HoloViews(None, sizing_mode="stretch_width",
                                                min_height=300,
                                                css_classes=["pmkit-risk-drawdown"])
        self._layout = pn.Column(
            pn.Row(self._select, self._confidence, self._button, self._spinner),
            self._info,
            self._error,
            pn.Row(
                pn.Column(pn.pane.Markdown("### Risk by portfolio", margin=(0, 10)),
                          self._summary, width=460),
                pn.Column(self._contrib_plot, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            pn.pane.Markdown("### Historical stress", margin=(10, 10, 0, 10)),
            pn.Row(self._stress_plot, self._stress_table, sizing_mode="stretch_width"),
            pn.pane.Markdown("### Drawdowns", margin=(10, 10, 0, 10)),
            self._drawdown_plot,
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
        """The `risk_overview` dataset shown (None before the first computation)."""
        return self._dataset

    @property
    def portfolio(self) -> str | None:
        """The portfolio whose contributions are shown."""
        return self._select.value

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
        c = c[c != 0].sort_values(ascending=False)
        es = float(ds["es"].sel(portfolio=pid))
        out = pd.DataFrame({"contribution": c, "share": c / es if es else np.nan})
        out.index.name = "asset"
        return out

    @property
    def stress(self) -> pd.DataFrame:
        """The stress table shown, one row per portfolio and scenario.

        Columns ``portfolio``, ``scenario``, ``return`` (fraction), ``pnl``
        (currency) and ``unlisted`` (weight held as cash for lack of prices).
        """
        return self._stress_table.value.copy()

    @property
    def drawdown(self) -> pd.DataFrame:
        """Drawdowns shown (fractions, <= 0), time × portfolio."""
        if self._dataset is None:
            return pd.DataFrame()
        return self._dataset["drawdown"].transpose("time", "portfolio").to_pandas()

    # -- actions --------------------------------------------------------------------------
    def _call(self) -> Callable[[], xr.Dataset]:
        from pmkit.analytics.overview import risk_overview

        registry, portfolios = self.registry, self.portfolios
        confidence, lookback = float(self.confidence), int(self.lookback)
        return lambda: risk_overview(registry, portfolios, confidence=confidence,
                                     lookback=lookback)

    def compute(self) -> xr.Dataset | None:
        """Call `risk_overview` now and show the result (or the error).

        Returns
        -------
        xarray.Dataset or None
            The dataset shown, or None when the service refused.
        """
        done: list[xr.Dataset] = []
        self._run(self._call(), done.append, inline=True)
        return done[0] if done else None

    def compute_async(self) -> None:
        """Like `compute`, but off the session's thread when an event loop runs (the button)."""
        self._run(self._call(), lambda ds: None, inline=False)

    def _run(self, call: Callable[[], xr.Dataset], sink: Callable[[xr.Dataset], None], *,
             inline: bool) -> None:
        if self.busy:
            return

        def done(ds: xr.Dataset) -> None:
            self._show(ds)
            sink(ds)

        run_service_call(call, on_start=lambda: self._set_busy(True), on_done=done,
                         on_error=self._show_error, on_finish=lambda: self._set_busy(False),
                         inline=inline)

    def _confidence_picked(self, event: Any) -> None:
        self.confidence = float(event.new)

    def _confidence_set(self, event: Any) -> None:
        value = float(event.new)
        options = dict(self._confidence.options)
        if value not in options.values():
            options[f"{value:.1%}"] = value
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

    def _show_error(self, exc: Exception) -> None:
        self.show_error(error_text(exc))
        if self._dataset is not None:
            self._info.object = self._info_text(self._dataset)
        else:
            self._info.object = ""

    # -- drawing --------------------------------------------------------------------------
    def _show(self, ds: xr.Dataset) -> None:
        self._dataset = ds
        self.clear_messages()
        ids = [str(p) for p in ds["portfolio"].values]
        summary = pd.DataFrame({
            "portfolio": ids,
            "es": ds["es"].values.astype(float),
            "var": ds["var"].values.astype(float),
            "volatility": ds["volatility"].values.astype(float),
        })
        self._summary.value = summary
        stress = pd.DataFrame({
            "return": ds["stress_return"].to_series(),
            "pnl": ds["stress_pnl"].to_series(),
            "unlisted": ds["stress_unlisted"].to_series(),
        }).reset_index()
        self._stress_table.value = stress.loc[:, ["portfolio", "scenario", "return", "pnl",
                                                  "unlisted"]]
        self._stress_plot.object = _stress_chart(stress)
        self._drawdown_plot.object = _drawdown_chart(self.drawdown)
        keep = self._select.value if self._select.value in ids else ids[0] if ids else None
        self._select.param.update(options=ids, value=keep)
        self._show_portfolio()
        self._info.object = self._info_text(ds)

    def _show_portfolio(self) -> None:
        if self._dataset is None or self.portfolio is None:
            self._contrib_plot.object = None
            return
        es = float(self._dataset["es"].sel(portfolio=self.portfolio))
        self._contrib_plot.object = _contribution_chart(self.contributions, self.portfolio, es)

    def _info_text(self, ds: xr.Dataset) -> str:
        a = ds.attrs
        return (f"As of **{escape_text(str(a.get('as_of', '')))}** · 1-day VaR and ES at "
                f"{float(a.get('confidence', self.confidence)):.1%} from "
                f"{a.get('lookback', self.lookback)} daily returns · "
                f"seen by <code>{escape_text(self.registry.user)}</code>")

    def __panel__(self) -> pn.Column:
        return self._layout


def _contribution_chart(contrib: pd.DataFrame, portfolio: str, es: float) -> Any:
    from pmkit._hvplot import ensure_hvplot

    ensure_hvplot()

    c = contrib["contribution"]
    top = c.iloc[:TOP_CONTRIBUTIONS]
    rest = c.iloc[TOP_CONTRIBUTIONS:]
    if len(rest):
        top = pd.concat([top, pd.Series({f"other ({len(rest)})": float(rest.sum())})])
    frame = pd.DataFrame({"asset": top.index.astype(str), "contribution": top.to_numpy() * 100})
    # barh draws the first row at the bottom: reverse so the largest is on top
    return frame.iloc[::-1].hvplot.barh(
        x="asset", y="contribution", height=max(240, 24 * len(frame) + 80), responsive=True,
        xlabel="", ylabel="contribution to 1-day ES (% of value)", color="#1f4e79",
        title=f"{portfolio}: ES {es:.2%} by asset", hover_cols=["asset", "contribution"],
    )


def _stress_chart(stress: pd.DataFrame) -> Any:
    from pmkit._hvplot import ensure_hvplot

    ensure_hvplot()

    frame = stress.assign(return_pct=stress["return"] * 100)
    return frame.hvplot.bar(
        x="scenario", y="return_pct", by="portfolio", height=300, responsive=True,
        ylabel="stress return (%)", xlabel="", title="Historical stress by scenario",
        hover_cols=["pnl"], rot=0, legend="bottom_right",
    )


def _drawdown_chart(drawdown: pd.DataFrame) -> Any:
    from pmkit._hvplot import ensure_hvplot

    ensure_hvplot()

    frame = drawdown * 100
    frame.columns = pd.Index([str(c) for c in frame.columns], name="portfolio")
    return frame.hvplot.line(
        height=300, responsive=True, ylabel="drawdown (%)", xlabel="",
        title="Drawdown of the time-weighted return", legend="bottom_left",
    )
