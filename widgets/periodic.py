"""Periodic work of a served page that does not count as the page being busy.

Panel counts every periodic callback as "busy", so the app's busy indicator
would spin at each store poll and login check even with nothing to show.
Upkeep (polling, session checks) runs through `background_periodic`
instead; the indicator then reflects real work: a user's click, a slow
service call (`pmkit_widgets.base.run_service_call`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import panel as pn
from panel.io.callbacks import PeriodicCallback

__all__ = ["background_periodic"]


def background_periodic(callback: Callable[[], Any], period_ms: int) -> PeriodicCallback:
    """Start ``callback`` every ``period_ms`` ms in this session, not shown as busy.

    Like ``pn.state.add_periodic_callback`` (the callback is stopped with the
    session), except that Panel's ``busy`` state ignores it.
    """
    cb = PeriodicCallback(callback=callback, period=int(period_ms), background=True)
    cb.start()
    doc = pn.state.curdoc
    if doc is not None:
        pn.state._periodic.setdefault(doc, []).append(cb)
    return cb
