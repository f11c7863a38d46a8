"""The groups view: the hierarchy as a tree, target versus actual allocation, consolidated figures.

It shows `Registry.group_tree` (the tree with values and weights) and
`pmkit.analytics.overview.group_overview` (consolidated value, day P&L and
risk), and charts each group's target against its actual allocation
(grouped bars, percent of the group's value, sized to the page).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn

from pmkit.display import format_time, formatted_frame
from pmkit_widgets.base import ServiceView, desk_table, escape_text, update_table
from pmkit_widgets.charts import CANVAS
from pmkit_widgets.registry_view import DEFAULT_TOPICS, last_close

if TYPE_CHECKING:
    from pmkit.registry import Registry
    from pmkit.registry.records import GroupNode

__all__ = ["GROUP_COLUMNS", "GroupsView", "allocation_frame"]

#: Columns of the consolidated table (`group_overview` plus its ``id`` index): the group,
#: then value, P&L, return and risk, the less important ones after.
GROUP_COLUMNS = ("id", "name", "value", "day_pnl", "day_return", "volatility", "var",
                 "members", "priced_at", "status")
_KINDS = {"value": "money", "day_pnl": "money", "day_return": "percent",
          "volatility": "percent", "var": "percent", "members": "count", "priced_at": "time"}

_TITLES = {"id": "Group", "name": "Name", "status": "Status", "members": "Portfolios",
           "value": "Value", "day_pnl": "Day P&L", "day_return": "Day %",
           "volatility": "Vol 1y (ann.)", "var": "VaR 95% 1d (1y)", "priced_at": "Priced at"}


def allocation_frame(tree: GroupNode) -> pd.DataFrame:
    """Target and actual weight of every member that has a target, one row each.

    Parameters
    ----------
    tree : GroupNode
        From `Registry.group_tree`.

    Returns
    -------
    pandas.DataFrame
        Columns ``group``, ``member``, ``target`` and ``actual`` (fractions of
        the group's value; ``actual`` NaN without market data).
    """
    rows = []

    def walk(node: GroupNode) -> None:
        for child in node.children:
            if child.target is not None:
                rows.append({"group": node.id, "member": child.id, "target": child.target,
                             "actual": float("nan") if child.actual is None else child.actual})
            walk(child)

    walk(tree)
    return pd.DataFrame(rows, columns=["group", "member", "target", "actual"])


class GroupsView(ServiceView):
    """Group hierarchy, target vs actual allocation, and consolidated value, P&L and risk.

    Parameters
    ----------
    registry : Registry
        The registry, as its acting user sees it.
    poll_period : int, optional
        Milliseconds between store re-reads (default: no polling).
    **params
        Other parameters of the view.

    Notes
    -----
    Values are in the base currency at the last market close; ``Day %``,
    ``Vol 1y (ann.)`` and ``VaR 95% 1d (1y)`` (over the last 252 daily
    returns) are fractions of the consolidated book, shown as percentages (a
    group's risk is that of its combined positions, not a sum of its members'
    risks).
    """

    topics = DEFAULT_TOPICS

    def __init__(self, registry: Registry, **params: Any) -> None:
        super().__init__(registry, **params)
        self._table = desk_table(GROUP_COLUMNS, _KINDS, css="pmkit-groups", titles=_TITLES,
                                 truncate={"name": 220})
        self._status = pn.pane.Markdown("", margin=(0, 10), styles={"color": "#6b7280"},
                                        css_classes=["pmkit-status"])
        self._empty = pn.pane.Markdown("", margin=(0, 10), visible=False,
                                       css_classes=["pmkit-empty"])
        self._tree = pn.pane.HTML("", sizing_mode="stretch_width", css_classes=["pmkit-tree-pane"])
        self._chart = pn.pane.HoloViews(None, sizing_mode="stretch_width", min_height=300,
                                        css_classes=["pmkit-allocation-chart"])
        self._allocation = pd.DataFrame()
        layout = pn.Column(
            self._status,
            self._error,
            pn.pane.Markdown("### Groups: consolidated value, P&L and risk", margin=(0, 10)),
            self._empty,
            self._table,
            # one above the other: side by side, the tree's columns and the chart's axis
            # overlap at 1280 px
            pn.pane.Markdown("### Hierarchy: target vs actual", margin=(0, 10)),
            self._tree,
            pn.pane.Markdown("### Allocation by group", margin=(0, 10)),
            self._chart,
            sizing_mode="stretch_width",
        )
        self._start(layout)

    @property
    def table(self) -> pd.DataFrame:
        """The consolidated figures shown, one row per group (a copy)."""
        return self._table.value.copy()

    @property
    def tree_html(self) -> str:
        """The group tree HTML shown."""
        return str(self._tree.object)

    @property
    def allocation(self) -> pd.DataFrame:
        """The target vs actual weights charted (a copy)."""
        return self._allocation.copy()

    def refresh(self) -> bool:
        """Re-read the registry and update what changed; True when something did."""
        from pmkit.analytics.overview import group_overview

        df = group_overview(self.registry).reset_index().loc[:, list(GROUP_COLUMNS)]
        df = formatted_frame(df, {"priced_at": "time"})  # times are text for Tabulator
        tree = self.registry.group_tree()
        html = tree._repr_html_()
        changed = update_table(self._table, df)
        if html != self._tree.object:
            self._tree.object = html
            allocation = allocation_frame(tree)
            self._allocation = allocation
            self._chart.object = _allocation_chart(allocation)
            self._chart.visible = not allocation.empty
            changed = True
        if changed or not self._status.object:
            close = last_close(self.registry)
            asof = "" if close is None else f" · as of the last close {format_time(close)}"
            n = len(df)
            self._status.object = (f"**{n}** group{'s' if n != 1 else ''} visible to "
                                   f"<code>{escape_text(self.registry.user)}</code>{asof}")
            self._empty.object = (
                f"**No group is visible to <code>{escape_text(self.registry.user)}</code>.** "
                "Groups gather portfolios for consolidated figures and target allocations: "
                "create one with `registry.create_group(...)`, or ask an owner to grant you "
                "a role on one.")
            self._empty.visible = df.empty
        return changed


def _allocation_chart(allocation: pd.DataFrame) -> Any:
    """Grouped bars of target and actual weight of each member of each group (percent)."""
    from bokeh.models import NumeralTickFormatter

    from pmkit._hvplot import ensure_hvplot

    ensure_hvplot()

    if allocation.empty:
        return None
    # a portfolio may sit in several groups: label bars by group and member
    labelled = allocation.assign(member=allocation["group"] + " › " + allocation["member"])
    # target beside actual, members in the tree's order (the data's order is the axis's)
    long = pd.DataFrame(
        [(row.member, weight, getattr(row, weight)) for row in labelled.itertuples()
         for weight in ("target", "actual")],
        columns=["member", "weight", "fraction"])
    long = long.assign(weight=pd.Categorical(long["weight"], ["target", "actual"]))
    return long.hvplot.bar(
        x="member", y="fraction", by="weight", ylabel="% of the group's value",
        xlabel="", height=320, responsive=True, title="Target vs actual allocation",
        yformatter=NumeralTickFormatter(format="0%"), color=["#9ca3af", "#1f4e79"],
        backend_opts=CANVAS,
    )
