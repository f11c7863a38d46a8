"""What the pmkit views share: live refresh, slow calls with progress, and service errors.

- `LiveRefresh` keeps a view up to date from the event bus (throttled), an
  optional timer and its served session.
- `run_service_call` runs a slow service call off the session's loop while
  the view shows progress.
- `ServiceView` is the base of the registry views: a button calls a service
  method through `ServiceView.act`, which disables the button while the call
  runs (a double click acts once), shows a refused call's typed error and
  leaves everything as it was (the service guarantees the store is
  untouched; the view only reports).
- `refusal_text` says why a control is disabled, from the service's own
  answer (`pmkit.registry.view.ReadView.refusal`).
- `desk_table` builds the read-only tables of the views: key columns first,
  numbers formatted by `pmkit.display`, long text truncated with the full
  text on hover, a frozen first column, no stretched last column.
- `typed_frame` gives tables stable column types from their first (even
  empty) data.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from html import escape as _html_escape
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import panel as pn
import param

from pmkit.display import TABULATOR_FORMATS, Kind
from pmkit.errors import PermissionDenied, PmkitError
from pmkit_widgets.formatting import tabulator_formatters
from pmkit_widgets.notebook import NotebookResources

if TYPE_CHECKING:
    from pmkit.events import Event, Subscription
    from pmkit.registry import Registry
    from pmkit.registry.access import Role

__all__ = [
    "DOUBLE_CLICK_S",
    "LiveRefresh",
    "Messages",
    "RefreshingView",
    "ServiceView",
    "after_this_update",
    "desk_table",
    "error_text",
    "escape_text",
    "refusal_text",
    "run_service_call",
    "served_document",
    "typed_frame",
    "update_table",
]

#: Seconds after a button's call succeeded during which another click on the same
#: button is the rest of a double click, not a second request.
DOUBLE_CLICK_S = 0.5

#: Characters that Markdown panes (and so `pn.pane.Alert`) would read as markup.
_MARKDOWN_MARKUP = {c: f"&#{ord(c)};" for c in "`*[]\\~|"}


def escape_text(value: object) -> str:
    """``value`` as text for an HTML, Markdown or Alert pane: shown literally, never markup.

    The one helper every view uses for text a user can write (names, tags,
    notes, reasons, memos, signal texts, error messages quoting them): HTML
    special characters become entities, and so do the Markdown characters
    that make links, images, code or emphasis. Entities render as the
    characters themselves in both kinds of pane.
    """
    text = _html_escape(str(value), quote=True)
    return "".join(_MARKDOWN_MARKUP.get(ch, ch) for ch in text)


T = TypeVar("T")


def error_text(exc: BaseException) -> str:
    """How a view reports a refused call: ``"PermissionDenied: user 'carol' may not ..."``."""
    return f"{type(exc).__name__}: {exc}"


def served_document() -> Any | None:
    """The Bokeh document of the served session running this code (None in a notebook)."""
    doc = pn.state.curdoc
    return doc if doc is not None and doc.session_context is not None else None


def after_this_update(step: Callable[[], None]) -> None:
    """Run ``step`` once the browser has been sent what changed so far (now, without a page).

    In a served session ``step`` runs on the session's next tick, after the
    current changes have gone out: a view sends what people look for first
    (a table of figures) ahead of what takes longer to draw (charts, more
    tables), and the browser shows the first part while the server prepares
    the rest. In a notebook or a script it runs at once.
    """
    doc = served_document()
    if doc is None:
        step()
        return
    doc.add_next_tick_callback(step)


def _weak_handler(view: Any) -> Callable[[Event], None]:
    ref = weakref.ref(view)

    def handler(event: Event) -> None:
        target = ref()
        if target is not None:
            target._on_event(event)

    return handler


def _cancel(subs: Sequence[Subscription], timers: list[threading.Timer]) -> None:
    for sub in subs:
        sub.cancel()
    for t in timers:
        t.cancel()


class LiveRefresh:
    """Keeps a view up to date from an event bus, an optional timer and its session.

    A mixin for `pn.viewable.Viewer` subclasses that define ``refresh()``,
    ``_show_refresh_error(exc)``, the parameters ``poll_period`` (ms or None)
    and ``throttle`` (ms), and call `_start_live` at the end of ``__init__``.

    Events are handled leading-edge throttled: an event refreshes at once
    unless the view refreshed less than ``throttle`` ms ago; then one
    refresh is scheduled (on a timer thread) for the end of that interval, so
    a burst of 10,000 signals costs a handful of refreshes, not 10,000.
    Inside a served session the refresh itself is handed to the
    session's document (``add_next_tick_callback``), as events and timers
    arrive on any thread. The bus holds the view weakly, so a discarded view
    stops listening.
    """

    _closed: bool = False
    _paused: bool = False
    _poll_on_resume: bool = False

    def _start_live(
        self, registry: Registry, topics: Sequence[str], layout: pn.viewable.Viewable
    ) -> None:
        self._callback: Any = None
        self._closed = False
        self._tlock = threading.Lock()
        self._last_run = float("-inf")
        self._timers: list[threading.Timer] = []
        self._doc = served_document()
        # The layout keeps the view alive while it is displayed.
        layout._pmkit_view = self  # type: ignore[attr-defined]
        handler = _weak_handler(self)
        # bound to the session's user: another desk's events never reach this view
        self._subs = [registry.subscribe(t, handler) for t in topics]
        self._finalizer = weakref.finalize(self, _cancel, list(self._subs), self._timers)
        self._safe_refresh()
        poll = getattr(self, "poll_period", None)
        if poll:
            self.start_polling(poll)
        if self._doc is not None:
            self._doc.on_session_destroyed(self._session_destroyed)

    @property
    def pending(self) -> bool:
        """Whether an event-driven refresh is scheduled and has not run yet."""
        with self._tlock:
            return bool(self._timers)

    def flush(self) -> None:
        """Refresh now, in the calling thread, instead of any scheduled refresh."""
        with self._tlock:
            timers, self._timers[:] = list(self._timers), []
        for t in timers:
            t.cancel()
        self._safe_refresh()

    def _safe_refresh(self) -> None:
        if self._closed or self._paused:
            return
        with self._tlock:
            self._last_run = time.monotonic()
        try:
            self.refresh()  # type: ignore[attr-defined]
        except Exception as exc:  # keep the view (and its timer) alive; show what failed
            self._show_refresh_error(exc)  # type: ignore[attr-defined]

    def _on_event(self, event: Event) -> None:
        if self._closed or self._paused:
            return
        period = float(getattr(self, "throttle", 0) or 0) / 1000.0
        with self._tlock:
            wait = self._last_run + period - time.monotonic() if period > 0 else 0.0
            now = wait <= 0
            if not now and not self._timers:
                timer = threading.Timer(max(wait, 0.0), self._trailing)
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
        if now:
            self._refresh_in_session()

    def _on_document(self, change: Callable[[], None]) -> None:
        """Apply ``change`` to Bokeh models (a chart's data) safely from any callback.

        Panel may run a widget's watcher, or the refresh after a button's call,
        on the session's loop without the document lock; Bokeh refuses a model
        changed there ("_pending_writes should be non-None ..."). In a served
        session the change goes to the document's next tick, which holds the
        lock; in a notebook it is applied now.
        """
        if self._doc is None:
            change()
        else:
            self._doc.add_next_tick_callback(change)

    def _refresh_in_session(self) -> None:
        # Events and timers arrive on any thread: inside a served session the refresh
        # goes to the session's document (the thread-safe Bokeh call); inline it runs here.
        if self._doc is None:
            self._safe_refresh()
            return
        try:
            self._doc.add_next_tick_callback(self._safe_refresh)
        except Exception:  # the session is going away: nothing left to refresh
            self.close()

    def _trailing(self) -> None:
        with self._tlock:
            if not self._timers:
                return  # flushed or closed meanwhile
            self._timers.clear()
        self._refresh_in_session()

    def start_polling(self, period: int | None = None) -> None:
        """Re-read every ``period`` milliseconds (default: ``poll_period``, else 2000).

        Inside a served session the timer belongs to that session and stops
        with it. Polling is background work: it does not set Panel's
        ``pn.state.busy``, so the page's busy indicator shows what a person
        started, not a re-read every two seconds.
        """
        from pmkit_widgets.periodic import background_periodic

        period = int(period or getattr(self, "poll_period", None) or 2000)
        self.stop_polling()
        self.poll_period = period
        self._callback = background_periodic(self._safe_refresh, period)

    def stop_polling(self) -> None:
        """Stop the timer started by `start_polling` (no error if none)."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def pause_updates(self) -> None:
        """Stop refreshing while the view is off screen (the app's hidden tabs).

        The timer stops and events are ignored until `resume_updates`, which
        reads everything again: nothing a paused view missed stays missing.
        """
        if self._paused or self._closed:
            return
        self._paused = True
        self._poll_on_resume = self._callback is not None
        self.stop_polling()

    def resume_updates(self) -> None:
        """Refresh now and restart the timer stopped by `pause_updates` (no-op if not paused)."""
        if not self._paused or self._closed:
            return
        self._paused = False
        self._safe_refresh()
        if self._poll_on_resume:
            self.start_polling(getattr(self, "poll_period", None))

    def close(self) -> None:
        """Stop listening to the bus, polling and any scheduled refresh."""
        self._closed = True
        self.stop_polling()
        with self._tlock:
            self._finalizer()
            self._timers.clear()

    def _session_destroyed(self, session_context: Any) -> None:
        self.close()



def typed_frame(df: pd.DataFrame | None, columns: Sequence[str],
                dtypes: dict[str, str]) -> pd.DataFrame:
    """``df`` (or an empty frame) with ``columns`` in order and the given dtypes.

    Parameters
    ----------
    df : DataFrame or None
        Rows to show; None for an empty table (unlisted columns are text).
    columns : sequence of str
    dtypes : dict
        column -> dtype of the non-text columns; any other column is text, even when
        empty (an empty list makes a float column, which Tabulator would format as numbers).
    """
    if df is None:
        df = pd.DataFrame(columns=list(columns), dtype=object)
    frame = df.loc[:, list(columns)]
    casts: dict[str, Any] = {c: t for c, t in dtypes.items() if c in frame.columns}
    for c in frame.columns:
        if c not in dtypes and frame[c].dtype.kind in "biufcmM":
            casts[c] = object
    return frame.astype(casts)


#: Least width (px) of a numeric column by kind: "-1,234,567.89", "-12.34%", "12,345".
_MIN_WIDTHS = {"money": 110, "percent": 80, "ratio": 70, "count": 70}


def desk_table(
    columns: Sequence[str],
    kinds: Mapping[str, Kind],
    *,
    css: str,
    titles: Mapping[str, str] | None = None,
    truncate: Mapping[str, int] | None = None,
    frozen: bool = True,
    frame: pd.DataFrame | None = None,
    **params: Any,
) -> pn.widgets.Tabulator:
    """A read-only Tabulator laid out for an operations desk.

    Columns appear in the order given (put the key figures first); numbers
    are formatted by `pmkit.display` (`tabulator_formatters`) and
    right-aligned; the table is as wide as its data (``fit_data_table``: no
    last column stretched across the page) and scrolls sideways inside its
    box, with the first column frozen.

    Parameters
    ----------
    columns : sequence of str
        Column order.
    kinds : mapping
        column -> `pmkit.display.Kind` of the numeric columns (time and text
        columns are preformatted text).
    css : str
        The table's CSS class (browsers and tests find it by that).
    titles : mapping, optional
        Header text per column.
    truncate : mapping, optional
        column -> widest it may be, in px: longer text ends in "…", and the
        full text shows on hover.
    frozen : bool, default True
        Freeze the first column (the row's name) when scrolling sideways.
    frame : DataFrame, optional
        First data (default: empty, with ``columns``).
    **params
        Other `panel.widgets.Tabulator` parameters.
    """
    numeric = [c for c in columns if kinds.get(c) in TABULATOR_FORMATS]
    config: list[dict[str, Any]] = [{"field": c, "maxWidth": int(w), "tooltip": True}
              for c, w in (truncate or {}).items()]
    # Tabulator sizes columns to the first data: a live table's later, longer numbers
    # would be cut, so numbers get room for seven digits and more from the start
    config += [{"field": c, "minWidth": _MIN_WIDTHS[kinds[c]]} for c in numeric]
    options: dict[str, Any] = {
        "disabled": True, "show_index": False, "selectable": False, "sortable": True,
        "layout": "fit_data_table", "sizing_mode": "stretch_width",
    }
    options.update(params)
    return pn.widgets.Tabulator(
        frame if frame is not None else pd.DataFrame(columns=list(columns)),
        titles=dict(titles or {}),
        formatters=tabulator_formatters({c: kinds[c] for c in numeric}),
        header_align=dict.fromkeys(numeric, "right"),  # the formatters align the cells
        frozen_columns=[columns[0]] if frozen and columns else [],
        configuration={"columns": config},
        css_classes=[css],
        **options,
    )


def refusal_text(what: str, refusal: PermissionDenied, role: Role | None = None) -> str:
    """Why a control is disabled, for its tooltip: ``"Approve needs the manager role on …"``.

    Parameters
    ----------
    what : str
        What the control does (``"Approve"``, ``"Creating a portfolio"``).
    refusal : PermissionDenied
        The service's answer (`pmkit.registry.view.ReadView.refusal`).
    role : Role, optional
        The user's role on the target, named in the text when known.
    """
    user, target, needed = refusal.user, refusal.target, refusal.needed
    if needed not in ("viewer", "trader", "manager", "owner"):  # not a role on a target
        who = "an administrator" if needed == "admin" else needed or "another user"
        return f"{what} needs {who}; {user} is not."
    has = f"{user} is {role}" if role is not None else f"{user} has no role"
    return f"{what} needs the {needed} role on {target}; {has} there."



def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _capture(call: Callable[[], T]) -> tuple[T | None, Exception | None]:
    try:
        return call(), None
    except Exception as exc:
        return None, exc


def _settle(
    outcome: tuple[Any, Exception | None],
    on_done: Callable[[Any], None],
    on_error: Callable[[Exception], None],
    on_finish: Callable[[], None],
) -> None:
    result, exc = outcome
    try:
        if exc is not None:
            on_error(exc)
        else:
            on_done(result)
    finally:
        on_finish()


def update_table(table: pn.widgets.Tabulator, frame: pd.DataFrame) -> bool:
    """Show ``frame`` in ``table`` unless it already shows the same; True when it changed.

    Redrawing an unchanged table resets the reader's scroll position and
    costs a round trip to the browser, so polls replace only what changed.
    """
    current = table.value
    if (list(current.columns) == list(frame.columns) and len(current) == len(frame)
            and current.reset_index(drop=True).equals(frame.reset_index(drop=True))):
        return False
    table.value = frame
    return True


def run_service_call(
    call: Callable[[], T],
    *,
    on_start: Callable[[], None],
    on_done: Callable[[T], None],
    on_error: Callable[[Exception], None],
    on_finish: Callable[[], None],
    inline: bool = False,
) -> None:
    """Run a (slow) service call so that the progress the callbacks show is seen.

    Inside a served session or a notebook (an event loop runs) ``call`` runs
    on a worker thread and the ``on_*`` callbacks on the session's loop, so
    Panel sends the "busy" state before the call starts and the browser
    stays responsive. Without an event loop, or with ``inline=True``,
    everything runs now, in order.

    Parameters
    ----------
    call : callable
        The service call; it must not touch Panel objects.
    on_start, on_finish : callable
        Show and hide the progress (``on_finish`` always runs).
    on_done : callable
        Receives the call's result.
    on_error : callable
        Receives what the call raised (the view shows it).
    inline : bool, default False
        Run in the calling thread even when an event loop runs (the views'
        synchronous methods, whose callers want the result at once).
    """
    if inline or not _loop_running():
        on_start()
        _settle(_capture(call), on_done, on_error, on_finish)
        return

    async def task() -> None:
        on_start()
        _settle(await asyncio.to_thread(_capture, call), on_done, on_error, on_finish)

    pn.state.execute(task)



class Messages(NotebookResources):
    """A view's red error and green success alerts, with their texts for tests and notebooks.

    Call `_init_messages` in ``__init__`` and place ``self._error`` and
    ``self._message`` in the layout. Panel renders panes in a shadow root,
    so each text also carries a class of its own (``pmkit-error-text``,
    ``pmkit-ok-text``) for browsers to read.
    """

    def _init_messages(self) -> None:
        self._error = pn.pane.Alert("", alert_type="danger", visible=False,
                                    sizing_mode="stretch_width", css_classes=["pmkit-error"])
        self._message = pn.pane.Alert("", alert_type="success", visible=False,
                                      sizing_mode="stretch_width", css_classes=["pmkit-ok"])
        self._error_text = ""
        self._message_text = ""

    @property
    def error(self) -> str:
        """The error shown (``"Type: message"``), or ``""``."""
        return self._error_text

    @property
    def message(self) -> str:
        """The success message shown, or ``""``."""
        return self._message_text

    def show_error(self, text: str) -> None:
        """Show ``text`` as the view's error (and hide the success message)."""
        self._message_text, self._message.visible = "", False
        self._error_text = text
        self._error.object = f'<span class="pmkit-error-text">{escape_text(text)}</span>'
        self._error.visible = True

    def show_message(self, text: str, html: str | None = None) -> None:
        """Show ``text`` (or its richer ``html``) as the success message; hide the error."""
        self._error_text, self._error.visible = "", False
        self._message_text = text
        self._message.object = f'<span class="pmkit-ok-text">{html or escape_text(text)}</span>'
        self._message.visible = True

    def clear_messages(self) -> None:
        """Hide both messages."""
        self._error_text, self._error.visible = "", False
        self._message_text, self._message.visible = "", False

    def _show_refresh_error(self, exc: Exception) -> None:
        self.show_error(f"Could not refresh: {error_text(exc)}")


class RefreshingView(LiveRefresh, pn.viewable.Viewer):
    """A Panel viewer kept up to date by `LiveRefresh`, with its parameters."""

    poll_period = param.Integer(default=None, allow_None=True, bounds=(20, None),
                                doc="Milliseconds between re-reads (None: no polling).")
    throttle = param.Integer(default=0, bounds=(0, None),
                             doc="Least ms between event-driven refreshes (0: every event).")
    last_refresh = param.Date(default=None, constant=True,
                              doc="When the view last changed (local time).")


class ServiceView(Messages, RefreshingView):
    """Base of the registry views: live refresh (`LiveRefresh`), error and success messages.

    Subclasses set ``topics``, build their layout (including ``self._error``
    and ``self._message``), implement ``refresh()`` (ending with
    `update_controls`) and call ``_start(layout)`` last in ``__init__``.

    Buttons act through `act` with ``button=``: the button is disabled while
    its call runs, a click that arrives meanwhile (or the second click of a
    double click, within `DOUBLE_CLICK_S` of a success) does nothing, and
    afterwards `update_controls` sets every button for the user's roles and
    the state shown.

    Parameters
    ----------
    registry : Registry
        The session's registry (its user is who acts).
    poll_period : int, optional
        Milliseconds between re-reads (None: events only). Polling picks up
        changes made by other processes sharing the store.
    **params
        Other parameters.
    """

    #: Event topic patterns after which the view refreshes.
    topics: tuple[str, ...] = ()

    #: Exceptions `act` shows as the call's refusal; anything else is a bug and propagates.
    refusals: tuple[type[Exception], ...] = (PmkitError,)

    def __init__(self, registry: Registry, **params: Any) -> None:
        super().__init__(**params)
        self.registry = registry
        self._lock = threading.RLock()
        self._acting = False
        self._succeeded: dict[int, float] = {}  # id(button) -> monotonic time of its last success
        self._init_messages()

    @property
    def acting(self) -> bool:
        """Whether a button's service call is running."""
        return self._acting

    def pressable(self, button: pn.widgets.Button) -> bool:
        """Whether a click on ``button`` acts now.

        Not when it is hidden or disabled (a click the browser sent before it
        learnt so), while another call of this view runs, or within
        `DOUBLE_CLICK_S` of its own last success (the second click of a
        double click).
        """
        if self._acting or button.disabled or not button.visible:
            return False
        last = self._succeeded.get(id(button), float("-inf"))
        return time.monotonic() - last >= DOUBLE_CLICK_S

    def act(
        self,
        call: Callable[[], T],
        success: Callable[[T], str] | str | None = None,
        *,
        button: pn.widgets.Button | None = None,
        then: Callable[[T], None] | None = None,
    ) -> T | None:
        """Run one service call; show its error or its success.

        Parameters
        ----------
        call : callable
            The service call, e.g. ``lambda: registry.deactivate(pid)``; it
            must not touch Panel objects.
        success : str or callable, optional
            Message on success, or a function of the result giving it.
        button : panel.widgets.Button, optional
            The button that was clicked. It is disabled while the call runs
            and clicks that are not `pressable` do nothing. Inside an event
            loop (served app, notebook) the call then runs on a worker thread
            and ``act`` returns None at once; the outcome shows when it is done.
        then : callable, optional
            Receives the result on success, before the message and the
            refresh (e.g. to reset a form).

        Returns
        -------
        The call's result, or None when the service refused it (the error
        is shown: ``"{type}: {message}"``).
        """
        if button is not None:
            if not self.pressable(button):
                return None
            # at once, not when the worker starts: a click queued behind this one must see it
            self._acting = True
            button.disabled = True
        out: list[T] = []

        def done(result: T) -> None:
            self.clear_messages()
            if then is not None:
                then(result)
            if success is not None:
                self.show_message(success(result) if callable(success) else success)
            if button is not None:
                self._succeeded[id(button)] = time.monotonic()
            out.append(result)
            self._safe_refresh()

        def failed(exc: Exception) -> None:
            if not isinstance(exc, self.refusals):
                raise exc
            self.show_error(error_text(exc))

        def finish() -> None:
            if button is None:
                return
            self._acting = False
            button.disabled = False
            try:
                self.update_controls()
            except Exception as exc:  # the store went away meanwhile: say so, keep the page
                self._show_refresh_error(exc)

        run_service_call(call, on_start=lambda: None, on_done=done, on_error=failed,
                         on_finish=finish, inline=button is None)
        return out[0] if out else None

    def update_controls(self) -> None:
        """Enable, disable, show or hide the buttons for the user's roles and the state shown.

        Subclasses ask the services (`pmkit.registry.view.ReadView.refusal`)
        rather than repeat their rules; the services still check every call.
        """

    # -- refreshing -----------------------------------------------------------------
    def refresh(self) -> bool:
        """Re-read the services and update what changed; True when something did."""
        raise NotImplementedError

    def _start(self, layout: pn.layout.Panel) -> None:
        """Finish construction: follow the bus, first read, polling."""
        self._layout = layout
        self._start_live(self.registry, self.topics, layout)

    def __panel__(self) -> pn.layout.Panel:
        return self._layout
