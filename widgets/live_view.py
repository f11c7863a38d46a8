"""A live view of a running `pmkit.stream.live.LiveStream`: values, P&L, prices, status.

The stream revalues the book on its own worker thread; Panel models must only
be touched from the session's thread. So the view never reacts to the
stream's callbacks: a periodic callback at the stream's UI rate
(``ui_max_rate`` updates per second) reads a snapshot of the live valuation
(`pmkit.stream.valuation.LiveValuation.frame` and ``prices``, each taken
under the valuation's lock) and the stream metrics, and updates the tables
only when what they show changed. The view holds no business logic: every
number comes from the stream.

What the demo app streams is a replay of the bundled daily closes (the local
feed, `pmkit.stream.server.FeedServer`), not live exchange data; the view
says so above its tables, so nobody compares it with the Portfolios tab
(values as of the last close) by mistake.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import panel as pn
import param

from pmkit.display import format_count, format_ratio, format_time
from pmkit_widgets.base import (
    Messages,
    RefreshingView,
    desk_table,
    error_text,
    escape_text,
    update_table,
)

if TYPE_CHECKING:
    from pmkit.stream.live import LiveStream

__all__ = ["METRIC_KEYS", "PRICE_COLUMNS", "REPLAY_NOTE", "STATUSES", "VALUE_COLUMNS",
           "LiveView"]

#: What the view says about its data: a replay, not a market feed.
REPLAY_NOTE = ("Replay of the bundled daily closes (not live exchange data): values and P&L "
               "move with the replayed prices since the reference close. The Portfolios tab "
               "shows values as of the last close instead; the two are not comparable.")

#: Columns of the per-portfolio table (`LiveView.values`), after its ``id`` column.
VALUE_COLUMNS = ("value", "pnl", "pnl_pct", "open", "flows")

#: Columns of the prices table (`LiveView.prices`), after its ``symbol`` column.
PRICE_COLUMNS = ("price", "reference", "change", "change_pct")

#: What `LiveView.status` can say.
STATUSES = ("connecting", "connected", "reconnecting", "stopped")

#: Stream metrics shown, in order (`StreamMetrics.as_dict` keys), plus ``messages_per_s``.
METRIC_KEYS = (
    "ticks_received", "ticks_applied", "frames", "batches", "gaps", "resyncs", "reconnects",
    "disconnects", "ticks_dropped", "queue_depth", "latency_p50_ms", "latency_p99_ms",
)

_VALUE_TITLES = {
    "id": "Portfolio", "value": "Value", "pnl": "P&L", "pnl_pct": "P&L %", "open": "Open",
    "flows": "Flows",
}
_PRICE_TITLES = {
    "symbol": "Symbol", "price": "Last", "reference": "Ref. close", "change": "Change",
    "change_pct": "Change %",
}
_STATUS_COLORS = {
    "connected": "#15803d", "connecting": "#b45309", "reconnecting": "#b45309",
    "stopped": "#6b7280",
}


def _table(columns: list[str], titles: dict[str, str], money: list[str], pct: list[str],
           css: str) -> pn.widgets.Tabulator:
    kinds: dict[str, Any] = {**dict.fromkeys(money, "money"), **dict.fromkeys(pct, "percent")}
    return desk_table(columns, kinds, css=css, titles=titles, max_height=420)


class LiveView(Messages, RefreshingView):
    """Streaming prices and per-portfolio value and P&L of a running `LiveStream`.

    Shows a per-portfolio table (value, P&L since the valuation's reference
    close and P&L as a fraction of the opening value), the held symbols'
    last prices and their change since that close, the connection status
    with the feed URL, and the stream metrics. It works inline in a notebook
    (after ``pn.extension("tabulator")``) and in the served app.

    The stream belongs to the caller (the app shares one between sessions):
    `close` stops only this view's timer, never the stream.

    Parameters
    ----------
    stream : pmkit.stream.live.LiveStream
        The stream to show, usually already started.
    period_ms : int, optional
        Milliseconds between refreshes; default ``1000 / ui_max_rate`` of the
        stream's settings (the stream's own UI throttle).
    **params
        Other parameters of the view.

    Examples
    --------
    >>> stream = LiveStream(registry, url=feed.url).start_in_thread()  # doctest: +SKIP
    >>> LiveView(stream)  # doctest: +SKIP
    """

    def __init__(self, stream: LiveStream, *, period_ms: int | None = None, **params: Any) -> None:
        if period_ms is None:
            rate = float(stream.settings.ui_max_rate)
            period_ms = max(20, round(1000.0 / rate))
        super().__init__(poll_period=int(period_ms), **params)
        self.stream = stream
        self._reference = pd.Series(dtype=float)
        self._metrics: dict[str, Any] = {}
        self._rate_mark: tuple[float, int] | None = None  # (monotonic s, frames) of last read
        self._status = "stopped"
        self._values_table = _table(
            ["id", *VALUE_COLUMNS], _VALUE_TITLES, ["value", "pnl", "open", "flows"],
            ["pnl_pct"], "pmkit-live-values",
        )
        self._prices_table = _table(
            ["symbol", *PRICE_COLUMNS], _PRICE_TITLES, ["price", "reference", "change"],
            ["change_pct"], "pmkit-live-prices",
        )
        self._status_pane = pn.pane.HTML("", sizing_mode="stretch_width",
                                         css_classes=["pmkit-live-status"])
        self._note = pn.pane.HTML(
            f'<span class="pmkit-replay-note" style="color:#6b7280">{escape_text(REPLAY_NOTE)}'
            "</span>", sizing_mode="stretch_width", margin=(0, 10),
            css_classes=["pmkit-replay"])
        self._empty = pn.pane.Markdown(
            "**No portfolio is streamed.** The live stream revalues the active portfolios "
            "visible to its user: activate one on the Portfolios tab.",
            visible=False, margin=(0, 10), css_classes=["pmkit-empty"])
        self._metrics_pane = pn.pane.HTML("", sizing_mode="stretch_width",
                                          css_classes=["pmkit-live-metrics"])
        self._init_messages()
        self._layout = pn.Column(
            self._status_pane,
            self._note,
            self._error,
            pn.pane.Markdown("### Portfolios, replayed", margin=(0, 10)),
            self._empty,
            self._values_table,
            pn.pane.Markdown("### Prices", margin=(10, 10, 0, 10)),
            self._prices_table,
            pn.pane.Markdown("### Stream metrics", margin=(10, 10, 0, 10)),
            self._metrics_pane,
            sizing_mode="stretch_width",
            css_classes=["pmkit-live"],
        )
        # no bus topics: the stream's own throttle sets the pace of the timer
        self._start_live(stream.registry, (), self._layout)

    # -- reading ------------------------------------------------------------------------
    @property
    def values(self) -> pd.DataFrame:
        """The per-portfolio table shown (a copy), indexed by portfolio id.

        Columns: ``value``, ``pnl`` (currency units, since the reference
        close, net of external flows), ``pnl_pct`` (fraction of ``open``),
        ``open`` (value at the reference close), ``flows`` (external cash
        flows since).
        """
        return self._values_table.value.set_index("id").copy()

    @property
    def prices(self) -> pd.DataFrame:
        """The prices table shown (a copy), indexed by symbol.

        Columns: ``price`` (last price applied), ``reference`` (the close the
        valuation opened at), ``change`` (price units) and ``change_pct``
        (fraction).
        """
        return self._prices_table.value.set_index("symbol").copy()

    @property
    def status(self) -> str:
        """Connection status shown: one of `STATUSES`."""
        return self._status

    @property
    def metrics(self) -> dict[str, Any]:
        """The stream metrics shown: `METRIC_KEYS` plus ``messages_per_s`` (frames per second)."""
        return dict(self._metrics)

    @property
    def url(self) -> str:
        """The feed URL of the stream."""
        return str(getattr(self.stream.adapter, "url", ""))

    def refresh(self) -> bool:
        """Read the stream's latest snapshot and update what changed (the timer calls this).

        Returns
        -------
        bool
            Whether anything shown changed.
        """
        stream = self.stream
        valuation = stream.valuation
        frame = valuation.frame()
        prices = valuation.prices()
        changed = False

        ports = frame[frame["kind"] == "portfolio"]
        values = pd.DataFrame({
            "id": ports.index.astype(str),
            "value": ports["value"].to_numpy(dtype=float),
            "pnl": ports["pnl"].to_numpy(dtype=float),
            "pnl_pct": _ratio(ports["pnl"].to_numpy(dtype=float),
                              ports["open"].to_numpy(dtype=float)),
            "open": ports["open"].to_numpy(dtype=float),
            "flows": ports["flows"].to_numpy(dtype=float),
        })
        changed |= update_table(self._values_table, values)
        self._empty.visible = values.empty

        reference = self._reference_closes(list(prices.index))
        px = prices.to_numpy(dtype=float)
        ref = reference.to_numpy(dtype=float)
        table = pd.DataFrame({
            "symbol": prices.index.astype(str),
            "price": px,
            "reference": ref,
            "change": px - ref,
            "change_pct": _ratio(px - ref, ref),
        })
        changed |= update_table(self._prices_table, table)

        status = _status_of(stream)
        if status != self._status or not self._status_pane.object:
            self._status = status
            self._status_pane.object = self._status_html(status, len(values), len(table))
            changed = True
        err = stream.error
        text = error_text(err) if err is not None else ""
        if text != self.error:
            if text:
                self.show_error(text)
            else:
                self.clear_messages()
            changed = True

        metrics = self._read_metrics()
        if repr(metrics) != repr(self._metrics):  # repr: NaN latencies compare equal
            self._metrics = metrics
            self._metrics_pane.object = _metrics_html(metrics)
            changed = True
        if changed or self.last_refresh is None:
            with param.edit_constant(self):
                self.last_refresh = datetime.now().replace(microsecond=0)
        return changed

    def _reference_closes(self, symbols: list[str]) -> pd.Series:
        """The closes the valuation opened at (its ``at``), per symbol; cached."""
        if list(self._reference.index) != symbols:
            valuation = self.stream.valuation
            market = valuation.registry.market
            have = [s for s in symbols if s in market.indexes["asset"]]
            closes = (market["close"].sel(asset=have, time=slice(None, valuation.at))
                      .ffill("time").isel(time=-1))
            ref = pd.Series(np.asarray(closes.values, dtype=float).reshape(len(have)), index=have)
            self._reference = ref.reindex(symbols)
        return self._reference

    def _read_metrics(self) -> dict[str, Any]:
        raw = self.stream.metrics()
        out: dict[str, Any] = {k: raw.get(k) for k in METRIC_KEYS if k in raw}
        now, frames = time.monotonic(), int(raw.get("frames", 0))
        rate = self._metrics.get("messages_per_s", float("nan"))
        if not self.stream.running:
            rate = 0.0  # a stopped stream receives nothing, whatever came since the last read
        elif self._rate_mark is not None and now > self._rate_mark[0]:
            rate = (frames - self._rate_mark[1]) / (now - self._rate_mark[0])
        self._rate_mark = (now, frames)
        out["messages_per_s"] = float(rate)
        return out

    def _status_html(self, status: str, n_ports: int, n_symbols: int) -> str:
        color = _STATUS_COLORS.get(status, "#6b7280")
        return (
            f'<div style="display:flex;gap:1em;align-items:center">'
            f'<span class="pmkit-live-state" data-status="{status}" '
            f'style="font-weight:600;color:{color}">&#9679; {status}</span>'
            f"<span>feed <code>{escape_text(self.url)}</code></span>"
            f"<span>{n_ports} portfolios · {n_symbols} symbols · replay from the close of "
            f"{escape_text(format_time(self.stream.valuation.at))}</span></div>"
        )

    # -- timer and lifecycle --------------------------------------------------------------
    @property
    def period_ms(self) -> int:
        """Milliseconds between refreshes (default: the stream's UI rate)."""
        return int(self.poll_period)

    def start(self) -> None:
        """Start (or restart) the refresh timer; inside a served session it belongs to it."""
        self._closed = False
        self.start_polling(self.poll_period)

    def stop(self) -> None:
        """Stop the refresh timer (no error if none). The stream keeps running."""
        self.stop_polling()

    def close(self) -> None:
        """Stop this view's timer; the stream itself is left running (its owner stops it)."""
        super().close()

    def __panel__(self) -> pn.Column:
        return self._layout


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(den != 0, num / den, np.nan)
    return out.astype(float)


def _status_of(stream: Any) -> str:
    if not stream.running:
        return "stopped"
    if getattr(stream.client, "connected", False):
        return "connected"
    return "reconnecting" if stream.metrics().get("connects", 0) else "connecting"


def _metrics_html(metrics: dict[str, Any]) -> str:
    labels = {
        "ticks_received": "ticks received", "ticks_applied": "ticks applied", "frames": "messages",
        "messages_per_s": "messages/s", "batches": "flushes", "gaps": "gaps",
        "resyncs": "resyncs", "reconnects": "reconnects", "disconnects": "disconnects",
        "ticks_dropped": "dropped", "queue_depth": "queue", "latency_p50_ms": "latency p50 (ms)",
        "latency_p99_ms": "latency p99 (ms)",
    }
    cells = []
    for key, label in labels.items():
        if key not in metrics:
            continue
        v = metrics[key]
        if isinstance(v, float):
            text = format_ratio(v, digits=1)
        else:
            text = format_count(v) if isinstance(v, int) else escape_text(str(v))
        cells.append(
            f'<div class="pmkit-metric" data-key="{key}" style="min-width:7em">'
            f'<div style="color:#6b7280;font-size:0.8em">{label}</div>'
            f'<div style="font-weight:600">{text}</div></div>'
        )
    return f'<div style="display:flex;flex-wrap:wrap;gap:1em">{"".join(cells)}</div>'
