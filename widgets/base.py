"""What every pmkit view shares: following the event bus, polling, and showing service errors.

A view subclasses `ServiceView`, builds its layout, and implements `refresh`
(re-read the services, update what changed). Buttons call service methods
through `ServiceView.act`, which shows a refused call's typed error in the
view and leaves everything as it was (the service guarantees the store is
untouched; the view only reports).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import panel as pn
import param

from pmkit.errors import PmkitError

if TYPE_CHECKING:
    from pmkit.events import Event, Subscription
    from pmkit.registry import Registry

__all__ = ["ServiceView", "error_text"]

T = TypeVar("T")


def error_text(exc: BaseException) -> str:
    """How a view reports a refused call: ``"PermissionDenied: user 'carol' may not ..."``."""
    return f"{type(exc).__name__}: {exc}"


def _weak_handler(view: ServiceView) -> Callable[[Event], None]:
    ref = weakref.ref(view)

    def handler(event: Event) -> None:
        target = ref()
        if target is not None:
            target._on_event(event)

    return handler


def _cancel(subs: Sequence[Subscription]) -> None:
    for sub in subs:
        sub.cancel()


class ServiceView(pn.viewable.Viewer):
    """Base of the pmkit views: bus subscription, optional polling, error and status messages.

    Parameters
    ----------
    registry : Registry
        The session's registry (its user is who acts).
    poll_period : int, optional
        Milliseconds between re-reads (None: events only). Polling picks up
        changes made by other processes sharing the store.
    **params
        Other parameters.

    Notes
    -----
    Bus events may arrive on any thread. Inside a served session the refresh
    is handed to the session's own document (``add_next_tick_callback``, the
    one thread-safe Bokeh call); in a notebook it runs at once.
    """

    poll_period = param.Integer(default=None, allow_None=True, bounds=(100, None),
                                doc="Milliseconds between re-reads (None: no polling).")

    #: Event topic patterns after which the view refreshes.
    topics: tuple[str, ...] = ()

    def __init__(self, registry: Registry, **params: Any) -> None:
        super().__init__(**params)
        self.registry = registry
        self._lock = threading.RLock()
        self._callback: Any = None
        self._closed = False
        self._error = pn.pane.Alert("", alert_type="danger", visible=False,
                                    sizing_mode="stretch_width", css_classes=["pmkit-error"])
        self._message = pn.pane.Alert("", alert_type="success", visible=False,
                                      sizing_mode="stretch_width", css_classes=["pmkit-ok"])
        doc = pn.state.curdoc
        self._doc = doc if doc is not None and doc.session_context is not None else None
        handler = _weak_handler(self)
        self._subs = [registry.bus.subscribe(t, handler) for t in self.topics]
        self._finalizer = weakref.finalize(self, _cancel, list(self._subs))
        if self._doc is not None:
            self._doc.on_session_destroyed(self._session_destroyed)

    # -- messages -------------------------------------------------------------------
    @property
    def error(self) -> str:
        """The error shown ("" when none)."""
        return str(self._error.object) if self._error.visible else ""

    @property
    def message(self) -> str:
        """The success message shown ("" when none)."""
        return str(self._message.object) if self._message.visible else ""

    def show_error(self, text: str) -> None:
        """Show ``text`` as the view's error (and hide the success message)."""
        self._message.visible = False
        self._error.object = text
        self._error.visible = True

    def show_message(self, text: str) -> None:
        """Show ``text`` as the view's success message (and hide the error)."""
        self._error.visible = False
        self._message.object = text
        self._message.visible = True

    def act(
        self, call: Callable[[], T], success: Callable[[T], str] | str | None = None
    ) -> T | None:
        """Run one service call for a button; show its error or its success.

        Parameters
        ----------
        call : callable
            The service call, e.g. ``lambda: registry.deactivate(pid)``.
        success : str or callable, optional
            Message on success, or a function of the result giving it.

        Returns
        -------
        The call's result, or None when the service refused it (the error
        is shown: ``"{type}: {message}"``).
        """
        try:
            result = call()
        except PmkitError as exc:
            self.show_error(error_text(exc))
            return None
        self._error.visible = False
        if success is not None:
            self.show_message(success(result) if callable(success) else success)
        self._safe_refresh()
        return result

    # -- refreshing -----------------------------------------------------------------
    def refresh(self) -> bool:
        """Re-read the services and update what changed; True when something did."""
        raise NotImplementedError

    def _safe_refresh(self) -> None:
        if self._closed:
            return
        try:
            with self._lock:
                self.refresh()
        except Exception as exc:  # keep the view and its timer alive; say what failed
            self.show_error(f"Could not refresh: {error_text(exc)}")

    def _on_event(self, event: Event) -> None:
        if self._doc is not None:
            self._doc.add_next_tick_callback(self._safe_refresh)
        else:
            self._safe_refresh()

    def start_polling(self, period: int | None = None) -> None:
        """Re-read every ``period`` milliseconds (default: ``poll_period``, else 2000).

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

    def _start(self, layout: pn.layout.Panel) -> None:
        """Finish construction: keep the view alive with its layout, first read, polling."""
        # The layout keeps the view alive while it is displayed; the bus only
        # holds a weak reference, so a discarded view stops listening.
        layout._pmkit_view = self  # type: ignore[attr-defined]
        self._layout = layout
        self._safe_refresh()
        if self.poll_period:
            self.start_polling(self.poll_period)

    def __panel__(self) -> pn.layout.Panel:
        return self._layout
