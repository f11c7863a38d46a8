"""Panel's JavaScript from the installed packages in a notebook, so views render offline.

Panel loads BokehJS, its own bundle and Tabulator from public CDNs in a
notebook unless told to inline them. On a desk without internet access
(and for privacy everywhere) pmkit's views must not depend on that, so:

- importing `pmkit_widgets` inside a Jupyter kernel turns Panel's inline
  mode on (``PANEL_INLINE``, read by ``pn.config.inline`` whenever Panel
  loads) and HoloViews' (``hv.extension.inline``, set as HoloViews is
  imported: hvplot loads through it with its own switch): a later
  ``pn.extension("tabulator")`` or ``import hvplot.pandas`` loads
  everything from the installed packages;
- displaying a pmkit view (`NotebookResources`, a base of every view) makes
  sure of it once per kernel: it loads the Panel extension inline if
  nobody did, or again inline if it was loaded from a CDN before
  `pmkit_widgets` was imported.

Outside a kernel (the served app, scripts, tests) nothing here does anything:
the served app gets its resources from its own server.
"""

from __future__ import annotations

import importlib.abc
import os
import sys
from typing import Any

__all__ = ["NotebookResources", "enable_inline_resources", "ensure_resources", "in_kernel"]

_state = {"loaded_inline": False, "loaded_from_cdn": False}

_TRUTHY = ("1", "true", "True", "yes")


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (not a script, the app or a plain shell)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return getattr(shell, "kernel", None) is not None


def enable_inline_resources() -> None:
    """In a kernel, make Panel inline its JavaScript and CSS (a user's explicit choice wins).

    Cheap (Panel is not imported). Remembers whether Panel was already
    loaded from a CDN, so the first view displayed loads it again inline.
    """
    if not in_kernel():
        return
    config = sys.modules.get("panel.config")
    if config is not None and config.panel_extension._loaded and not config.config.inline:
        _state["loaded_from_cdn"] = True
    os.environ.setdefault("PANEL_INLINE", "1")
    if os.environ["PANEL_INLINE"] not in _TRUTHY:
        return
    hv = sys.modules.get("holoviews.ipython")
    if hv is not None:
        if hv.notebook_extension._loaded and not hv.notebook_extension.inline:
            _state["loaded_from_cdn"] = True
        hv.notebook_extension.inline = True
    elif not any(isinstance(f, _HoloViewsInline) for f in sys.meta_path):
        sys.meta_path.insert(0, _HoloViewsInline())


def ensure_resources() -> None:
    """Load BokehJS, Panel and Tabulator inline into this notebook, once per kernel."""
    if _state["loaded_inline"] or not in_kernel():
        return
    enable_inline_resources()
    _state["loaded_inline"] = True
    if os.environ.get("PANEL_INLINE") not in _TRUTHY:
        return  # the user chose CDN resources (PANEL_INLINE=0): respect it
    import panel as pn
    import panel.models.tabulator  # puts Tabulator's JavaScript in the bundle
    from panel.config import panel_extension
    from panel.io.notebook import load_notebook

    if not panel_extension._loaded:
        pn.extension("tabulator")
    elif _state["loaded_from_cdn"]:  # loaded before pmkit_widgets was imported
        load_notebook(inline=True, reloading=False)
    pn.config.inline = True  # the stylesheets of what is displayed, too
    _inline_stylesheet_updates()


def _inline_stylesheet_updates() -> None:
    """Inline Panel's own stylesheets in every update sent to the page, not only the first.

    Panel inlines a component's cdn.holoviz.org stylesheets when it is first
    displayed, but models sent later (a table that appears, an alert shown, a
    theme's sheet for a new widget) still import theirs from the CDN: offline
    they go unstyled, online the page tells cdn.holoviz.org who is looking.
    Every outgoing update passes through ``panel.io.model.monkeypatch_events``
    (Panel's own hook for patching events before they are serialized): the
    stylesheets are inlined there, from the installed package's files.
    """
    import panel.io.model as model_io

    if getattr(model_io.monkeypatch_events, "pmkit_inline", False):
        return
    original = model_io.monkeypatch_events

    def monkeypatch_events(events: Any) -> None:
        original(events)
        _inline_stylesheets_of(events)

    monkeypatch_events.pmkit_inline = True  # type: ignore[attr-defined]
    model_io.monkeypatch_events = monkeypatch_events


def _inline_stylesheets_of(events: Any) -> None:
    """Replace the CDN stylesheets that ``events`` would send by their inline text."""
    from bokeh.document.events import ModelChangedEvent
    from bokeh.model.util import collect_models
    from bokeh.models import ImportedStyleSheet, UIElement
    from panel.config import config
    from panel.io.notebook import patch_inline_stylesheets, replace_inline_css

    if not config.inline:
        return
    for event in events:
        if not isinstance(event, ModelChangedEvent):
            continue
        if event.attr == "stylesheets" and isinstance(event.new, list | tuple):
            event.new = [replace_inline_css(s) if isinstance(s, ImportedStyleSheet) else s
                         for s in event.new]
        for model in collect_models(event.new):
            if isinstance(model, UIElement):
                patch_inline_stylesheets(model)


class _HoloViewsInline(importlib.abc.MetaPathFinder):
    """Sets ``hv.extension.inline`` the moment HoloViews' notebook extension is imported.

    hvplot loads BokehJS through HoloViews, whose switch defaults to CDN and
    is read in the same cell as the import: there is no later moment to set it.
    """

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "holoviews.ipython":
            return None
        sys.meta_path.remove(self)  # once, and not to find the spec ourselves
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_then_inline(module: Any) -> None:
            exec_module(module)
            module.notebook_extension.inline = True

        spec.loader.exec_module = exec_then_inline  # type: ignore[method-assign]
        return spec


class NotebookResources:
    """Mixin for views: their first display in a notebook loads Panel's resources inline."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        ensure_resources()
        return super()._repr_mimebundle_(include, exclude)  # type: ignore[misc]
