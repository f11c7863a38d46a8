"""A live, read-only view of a `pmkit.registry.Registry`: portfolios table and group tree.

The view only reads service methods (`Registry.summary`, `Registry.group_tree`)
and formats what they return; it holds no business logic. It refreshes itself
when the registry's event bus publishes a change, and, optionally, on a timer
so that changes made by other processes sharing the store appear too.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import NumberFormatter

if TYPE_CHECKING:
    from pmkit.events import Event, Subscription
    from pmkit.registry import Registry

__all__ = ["DEFAULT_TOPICS", "SUMMARY_COLUMNS", "RegistryView"]

#: Columns of the portfolios table, in order (``Registry.summary`` plus its ``id`` index).
SUMMARY_COLUMNS = ("id", "name", "status", "segment", "tags", "currency", "cash", "value")

#: Event topics after which the view re-reads the registry.
DEFAULT_TOPICS = ("portfolio.*", "group.*", "ledger.*", "access.*")

_TITLES = {
    "id": "ID", "name": "Name", "status": "Status", "segment": "Segment", "tags": "Tags",
    "currency": "Ccy", "cash": "Cash", "value": "Value",
}

def _summary_frame(registry: Registry) -> pd.DataFrame:
    """``registry.summary()`` with its ``id`` index as the first column."""
    df = registry.summary().reset_index()
    return df.loc[:, list(SUMMARY_COLUMNS)]


def _weak_handler(view: RegistryView) -> Callable[[Event], None]:
    ref = weakref.ref(view)

    def handler(event: Event) -> None:
        target = ref()
        if target is not None:
            target._on_event(event)

    return handler


def _cancel(subs: Sequence[Subscription]) -> None:
    for sub in subs:
        sub.cancel()


class RegistryView(pn.viewable.Viewer):
    """Portfolios table and group tree of a registry, kept up to date.

    Works inline in a notebook (after ``pn.extension("tabulator")``) and in
    the served app. It subscribes to the registry's event bus, so changes made
    through the same registry's bus (e.g. ``registry.create_portfolio``) show
    at once; with ``poll_period`` it also re-reads the store on a timer, which
    picks up changes made by other processes.

    Parameters
    ----------
    registry : Registry
        The registry to show, as seen by its acting user.
    poll_period : int, optional
        Milliseconds between re-reads of the store (default: no polling).
    topics : sequence of str
        Event topic patterns that trigger a refresh.
    **params
        Other parameters of the view (see the class parameters).

    Examples
    --------
    >>> import panel as pn
    >>> pn.extension("tabulator")  # doctest: +SKIP
    >>> view = RegistryView(registry)  # doctest: +SKIP
    >>> view  # doctest: +SKIP
    """

    poll_period = param.Integer(default=None, allow_None=True, bounds=(100, None),
                                doc="Milliseconds between store re-reads (None: no polling).")
    topics = param.List(default=list(DEFAULT_TOPICS), item_type=str, constant=True,
                        doc="Event topic patterns that trigger a refresh.")
    last_refresh = param.Date(default=None, constant=True,
                              doc="When the view last changed (local time).")

    def __init__(self, registry: Registry, **params: Any) -> None:
        super().__init__(**params)
        self.registry = registry
        self._lock = threading.RLock()
        self._callback: Any = None
        self._closed = False
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=list(SUMMARY_COLUMNS)),
            disabled=True,
            show_index=False,
            selectable=False,
            sortable=True,
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
            titles=_TITLES,
            formatters={
                "cash": NumberFormatter(format="0,0.00", nan_format="—"),
                "value": NumberFormatter(format="0,0.00", nan_format="—"),
            },
            text_align={"cash": "right", "value": "right"},
            header_align={"cash": "right", "value": "right"},
            max_height=520,
        )
        self._tree = pn.pane.HTML("", sizing_mode="stretch_width", name="group tree")
        self._status = pn.pane.Markdown("", margin=(0, 10), styles={"color": "#6b7280"})
        self._error = pn.pane.Alert("", alert_type="danger", visible=False,
                                    sizing_mode="stretch_width")
        self._layout = pn.Column(
            self._status,
            self._error,
            pn.pane.Markdown("### Portfolios", margin=(0, 10)),
            self._table,
            pn.pane.Markdown("### Groups: target vs actual", margin=(10, 10, 0, 10)),
            self._tree,
            sizing_mode="stretch_width",
        )
        # The layout keeps the view alive while it is displayed; the bus only
        # holds a weak reference, so a discarded view stops listening.
        self._layout._pmkit_view = self  # type: ignore[attr-defined]
        handler = _weak_handler(self)
        self._subs = [registry.bus.subscribe(t, handler) for t in self.topics]
        self._finalizer = weakref.finalize(self, _cancel, list(self._subs))
        self.refresh()
        if self.poll_period:
            self.start_polling(self.poll_period)
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            doc.on_session_destroyed(self._session_destroyed)

    # -- reading ----------------------------------------------------------------------
    @property
    def table(self) -> pd.DataFrame:
        """The portfolios currently shown (a copy), one row per portfolio."""
        return self._table.value.copy()

    @property
    def tree_html(self) -> str:
        """The group tree HTML currently shown."""
        return str(self._tree.object)

    def refresh(self) -> bool:
        """Re-read the registry and update what changed.

        Returns
        -------
        bool
            Whether anything shown changed.
        """
        with self._lock:
            df = _summary_frame(self.registry)
            html = self.registry.group_tree()._repr_html_()
            changed = False
            current = self._table.value
            if (list(current.columns) != list(df.columns) or len(current) != len(df)
                    or not current.reset_index(drop=True).equals(df)):
                self._table.value = df
                changed = True
            if html != self._tree.object:
                self._tree.object = html
                changed = True
            if self._error.visible:
                self._error.visible = False
                changed = True
            if changed or self.last_refresh is None:
                now = datetime.now().replace(microsecond=0)
                with param.edit_constant(self):
                    self.last_refresh = now
                self._status.object = self._status_text(df, now)
            return changed

    def _status_text(self, df: pd.DataFrame, now: datetime) -> str:
        market = getattr(self.registry, "market", None)
        asof = ""
        if market is not None and "time" in market.indexes and len(market.indexes["time"]):
            last = pd.Timestamp(market.indexes["time"][-1])
            asof = f" · values at the {last:%Y-%m-%d} close"
        n = len(df)
        return (f"**{n}** portfolio{'s' if n != 1 else ''} visible to "
                f"`{escape(self.registry.user)}`{asof} · updated {now:%H:%M:%S}")

    def _safe_refresh(self) -> None:
        if self._closed:
            return
        try:
            self.refresh()
        except Exception as exc:  # keep the view (and timer) alive; show what failed
            self._error.object = f"Could not refresh: {type(exc).__name__}: {exc}"
            self._error.visible = True

    def _on_event(self, event: Event) -> None:
        self._safe_refresh()

    # -- polling and lifecycle ------------------------------------------------------
    def start_polling(self, period: int | None = None) -> None:
        """Re-read the store every ``period`` milliseconds (default: ``poll_period``).

        Inside a served session the timer belongs to that session and stops
        with it.
        """
        period = int(period or self.poll_period or 2000)
        self.stop_polling()
        self.poll_period = period
        self._callback = pn.state.add_periodic_callback(self._safe_refresh, period=period)

    def stop_polling(self) -> None:
        """Stop the timer started by `start_polling` (no error if none)."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def close(self) -> None:
        """Stop listening to the bus and stop polling."""
        self._closed = True
        self.stop_polling()
        self._finalizer()

    def _session_destroyed(self, session_context: Any) -> None:
        self.close()

    def __panel__(self) -> pn.Column:
        return self._layout
