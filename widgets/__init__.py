"""Panel views over pmkit services, and the served operations app.

Importing this package is cheap: Panel is imported only when a component is
first used, so ``import pmkit_widgets`` (and certainly ``import pmkit``, which
never imports this package) does not pull in Panel or Bokeh.

Every view takes the service it shows (a `pmkit.registry.Registry` bound to
the acting user, a `StrategyCoordinator`, a running `LiveStream`) and holds
no business logic: its buttons call the same service methods a notebook
user calls. In a notebook, a view just displays::

    from pmkit_widgets import RegistryView
    RegistryView(registry)

and renders offline: in a Jupyter kernel, importing this package makes Panel
load BokehJS, Panel and Tabulator from the installed packages (inline), not
from public CDNs (`pmkit_widgets.notebook`). ``pn.extension("tabulator")``
before or after the import works too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pmkit_widgets.notebook import enable_inline_resources

if TYPE_CHECKING:
    from pmkit_widgets.approval_view import ApprovalView
    from pmkit_widgets.coordinator_view import CoordinatorView
    from pmkit_widgets.execution_view import ExecutionView
    from pmkit_widgets.frontier_view import FrontierView
    from pmkit_widgets.groups_view import GroupsView
    from pmkit_widgets.live_view import LiveView
    from pmkit_widgets.registry_view import RegistryView
    from pmkit_widgets.risk_view import RiskView

__all__ = [
    "ApprovalView",
    "CoordinatorView",
    "ExecutionView",
    "FrontierView",
    "GroupsView",
    "LiveView",
    "RegistryView",
    "RiskView",
]

_LAZY = {
    "ApprovalView": "pmkit_widgets.approval_view",
    "CoordinatorView": "pmkit_widgets.coordinator_view",
    "ExecutionView": "pmkit_widgets.execution_view",
    "FrontierView": "pmkit_widgets.frontier_view",
    "GroupsView": "pmkit_widgets.groups_view",
    "LiveView": "pmkit_widgets.live_view",
    "RegistryView": "pmkit_widgets.registry_view",
    "RiskView": "pmkit_widgets.risk_view",
}


enable_inline_resources()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
