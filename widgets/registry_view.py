"""The registry view: every visible portfolio with value, day P&L and risk, and lifecycle actions.

The table is `pmkit.analytics.overview.portfolio_overview`; the buttons call
`Registry.create_portfolio`, `activate`, `deactivate`, `delete` and
`restore` as the session's user. A refused call shows the service's error
and changes nothing (the registry guarantees it; the view only reports).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param
from bokeh.models.widgets.tables import NumberFormatter

from pmkit_widgets.base import ServiceView, escape_text, update_table

if TYPE_CHECKING:
    from pmkit.registry import Registry

__all__ = ["DEFAULT_TOPICS", "SUMMARY_COLUMNS", "RegistryView"]

#: Columns of the portfolios table, in order (`portfolio_overview` plus its ``id`` index).
SUMMARY_COLUMNS = ("id", "name", "status", "segment", "tags", "currency", "cash", "value",
                   "day_pnl", "day_return", "volatility", "var")

#: Event topics after which the view re-reads the registry.
DEFAULT_TOPICS = ("portfolio.*", "group.*", "ledger.*", "access.*")

_TITLES = {
    "id": "ID", "name": "Name", "status": "Status", "segment": "Segment", "tags": "Tags",
    "currency": "Ccy", "cash": "Cash", "value": "Value", "day_pnl": "Day P&L",
    "day_return": "Day %", "volatility": "Vol 1y (ann.)", "var": "VaR 95% 1d (1y)",
}
_MONEY = ("cash", "value", "day_pnl")
_PERCENT = ("day_return", "volatility", "var")


def _overview_frame(registry: Registry) -> pd.DataFrame:
    from pmkit.analytics.overview import portfolio_overview

    df = portfolio_overview(registry).reset_index()
    return df.loc[:, list(SUMMARY_COLUMNS)]


class RegistryView(ServiceView):
    """Portfolios with status, segment, tags, value, day P&L and risk; create and lifecycle actions.

    Works inline in a notebook (after ``pn.extension("tabulator")``) and in
    the served app. It follows the registry's event bus, so changes made
    through the same bus show at once; with ``poll_period`` it also re-reads
    the store on a timer, which picks up other processes' changes.

    Parameters
    ----------
    registry : Registry
        The registry, as its acting user sees it and acts.
    poll_period : int, optional
        Milliseconds between store re-reads (default: no polling).
    **params
        Other parameters of the view.

    Notes
    -----
    Values are at the last market close; ``Day P&L`` is in the portfolio
    currency net of external cash flows; ``Day %``, ``Vol 1y (ann.)``
    (annualized, ex ante: today's weights over the last 252 daily returns) and
    ``VaR 95% 1d (1y)`` (historical over the same window, loss positive) are
    fractions shown as percentages.

    Examples
    --------
    >>> import panel as pn
    >>> pn.extension("tabulator")  # doctest: +SKIP
    >>> RegistryView(registry)  # doctest: +SKIP
    """

    topics = DEFAULT_TOPICS

    def __init__(self, registry: Registry, **params: Any) -> None:
        super().__init__(registry, **params)
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(columns=list(SUMMARY_COLUMNS)),
            disabled=True,
            show_index=False,
            selectable=1,
            sortable=True,
            layout="fit_data_stretch",
            sizing_mode="stretch_width",
            titles=_TITLES,
            formatters={
                **{c: NumberFormatter(format="0,0.00", nan_format="—") for c in _MONEY},
                **{c: NumberFormatter(format="0.00%", nan_format="—") for c in _PERCENT},
            },
            text_align=dict.fromkeys((*_MONEY, *_PERCENT), "right"),
            header_align=dict.fromkeys((*_MONEY, *_PERCENT), "right"),
            max_height=520,
            css_classes=["pmkit-portfolios"],
        )
        self._table.param.watch(self._on_select, "selection")
        self._status = pn.pane.Markdown("", margin=(0, 10), styles={"color": "#6b7280"})
        self._selected = pn.pane.Markdown("Select a portfolio in the table.", margin=(5, 10),
                                          css_classes=["pmkit-selected"])
        self._hard = pn.widgets.Checkbox(label="permanently (hard delete)", value=False,
                                         css_classes=["pmkit-hard"])
        buttons = []
        for label, kind, css, handler in (
            ("Activate", "success", "pmkit-activate", self.activate),
            ("Deactivate", "warning", "pmkit-deactivate", self.deactivate),
            ("Delete", "danger", "pmkit-delete", self._delete_clicked),
            ("Restore", "default", "pmkit-restore", self.restore),
        ):
            button = pn.widgets.Button(label=label, color=kind, css_classes=[css], width=110)
            button.on_click(lambda _event, h=handler: h())
            buttons.append(button)
        self._new_id = pn.widgets.TextInput(label="Portfolio id", placeholder="client_c/core",
                                            css_classes=["pmkit-new-id"], width=200)
        self._new_name = pn.widgets.TextInput(label="Name", css_classes=["pmkit-new-name"],
                                              width=200)
        self._new_capital = pn.widgets.FloatInput(label="Initial capital", value=100_000.0,
                                                  start=0.0, step=1000.0, width=160,
                                                  css_classes=["pmkit-new-capital"])
        self._new_currency = pn.widgets.TextInput(label="Currency", value="USD", width=80)
        self._new_tags = pn.widgets.TextInput(label="Tags (comma-separated)", width=200)
        create = pn.widgets.Button(label="Create portfolio", color="primary",
                                   css_classes=["pmkit-create"], align="end")
        create.on_click(lambda _event: self._create_clicked())
        layout = pn.Column(
            self._status,
            self._error,
            self._message,
            pn.pane.Markdown("### Portfolios", margin=(0, 10)),
            self._table,
            pn.Row(self._selected, *buttons, self._hard, align="center"),
            pn.Card(
                pn.Row(self._new_id, self._new_name, self._new_capital, self._new_currency,
                       self._new_tags, create),
                title="New portfolio", collapsed=False, sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )
        self._start(layout)

    # -- reading ----------------------------------------------------------------------
    @property
    def table(self) -> pd.DataFrame:
        """The portfolios currently shown (a copy), one row per portfolio."""
        return self._table.value.copy()

    @property
    def selected(self) -> str | None:
        """Id of the selected portfolio (None when none is)."""
        rows = self._table.selection
        if not rows:
            return None
        value = self._table.value
        return str(value["id"].iloc[rows[0]]) if rows[0] < len(value) else None

    def select(self, portfolio_id: str | None) -> None:
        """Select ``portfolio_id``'s row (None clears the selection)."""
        ids = list(self._table.value["id"])
        self._table.selection = [] if portfolio_id is None else [ids.index(portfolio_id)]

    def refresh(self) -> bool:
        """Re-read the registry and update what changed; True when something did."""
        with self._lock:
            keep = self.selected
            df = _overview_frame(self.registry)
            changed = update_table(self._table, df)
            if changed:
                ids = list(df["id"])
                self._table.selection = [ids.index(keep)] if keep in ids else []
            if changed or self.last_refresh is None:
                now = datetime.now().replace(microsecond=0)
                with param.edit_constant(self):
                    self.last_refresh = now
                self._status.object = self._status_text(df, now)
            return changed

    def _status_text(self, df: pd.DataFrame, now: datetime) -> str:
        market = self.registry.market
        asof = ""
        if market is not None and "time" in market.indexes and len(market.indexes["time"]):
            last = pd.Timestamp(market.indexes["time"][-1])
            asof = f" · values at the {last:%Y-%m-%d} close"
        n = len(df)
        return (f"**{n}** portfolio{'s' if n != 1 else ''} visible to "
                f"<code>{escape_text(self.registry.user)}</code>{asof} · updated {now:%H:%M:%S}")

    def _on_select(self, *_: Any) -> None:
        pid = self.selected
        self._selected.object = ("Select a portfolio in the table." if pid is None
                                 else f"Selected: **{escape_text(pid)}**")

    # -- actions (each is one service call as this session's user) ------------------
    def _target(self) -> str | None:
        pid = self.selected
        if pid is None:
            self.show_error("Select a portfolio first.")
        return pid

    def activate(self) -> bool:
        """`Registry.activate` the selected portfolio; False when refused."""
        pid = self._target()
        return pid is not None and self.act(
            lambda: self.registry.activate(pid) or True, f"{pid} activated") is not None

    def deactivate(self) -> bool:
        """`Registry.deactivate` the selected portfolio; False when refused."""
        pid = self._target()
        return pid is not None and self.act(
            lambda: self.registry.deactivate(pid) or True, f"{pid} deactivated") is not None

    def delete(self, hard: bool = False) -> bool:
        """`Registry.delete` the selected portfolio; False when refused.

        Archives it (``Restore`` undoes that); ``hard=True`` leaves a tombstone.
        """
        pid = self._target()
        what = "deleted" if hard else "archived (Restore brings it back)"
        return pid is not None and self.act(
            lambda: self.registry.delete(pid, hard=hard) or True, f"{pid} {what}") is not None

    def restore(self) -> bool:
        """`Registry.restore` the selected (archived) portfolio; False when refused."""
        pid = self._target()
        return pid is not None and self.act(
            lambda: self.registry.restore(pid) or True, f"{pid} restored (inactive)") is not None

    def create(self, portfolio_id: str, initial_capital: float, *, name: str | None = None,
               currency: str = "USD", tags: tuple[str, ...] = ()) -> str | None:
        """`Registry.create_portfolio`; returns the new id, or None when refused."""
        return self.act(
            lambda: self.registry.create_portfolio(
                portfolio_id, initial_capital, name=name or None, currency=currency, tags=tags),
            lambda pid: f"{pid} created",
        )

    def _delete_clicked(self) -> None:
        self.delete(hard=self._hard.value)

    def _create_clicked(self) -> None:
        tags = tuple(t.strip() for t in self._new_tags.value.split(",") if t.strip())
        created = self.create(self._new_id.value.strip(), self._new_capital.value,
                              name=self._new_name.value.strip() or None,
                              currency=self._new_currency.value.strip(), tags=tags)
        if created is not None:
            self._new_id.value = ""
            self._new_name.value = ""
