"""Panel views over pmkit services, and the served operations app.

Importing this package is cheap: Panel is imported only when a component is
first used, so ``import pmkit_widgets`` (and certainly ``import pmkit``, which
never imports this package) does not pull in Panel or Bokeh.

In a notebook, load Panel's Tabulator extension once before displaying views::

    import panel as pn
    pn.extension("tabulator")
    from pmkit_widgets import RegistryView
    RegistryView(registry)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pmkit_widgets.registry_view import RegistryView

__all__ = ["RegistryView"]

_LAZY = {"RegistryView": "pmkit_widgets.registry_view"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
