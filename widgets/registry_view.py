"""The registry view: every visible portfolio with value, day P&L and risk, and lifecycle actions.

The table is `pmkit.analytics.overview.portfolio_overview`; the buttons call
`Registry.create_portfolio`, `activate`, `deactivate`, `delete` and
`restore` as the session's user. A button the user's roles do not allow on
the selected portfolio is disabled, its tooltip saying why (the registry's
own answer, `ReadView.refusal`); a refused call shows the service's error
and changes nothing (the registry guarantees it; the view only reports).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param

from pmkit.display import format_time, formatted_frame
from pmkit_widgets.base import ServiceView, desk_table, escape_text, refusal_text, update_table

if TYPE_CHECKING:
    from pmkit.registry import Registry

__all__ = ["DEFAULT_TOPICS", "SUMMARY_COLUMNS", "RegistryView", "last_close"]

#: Columns of the portfolios table, in order (`portfolio_overview` plus its ``id`` index):
#: the name, then value, P&L, return and risk, the less important ones after.
SUMMARY_COLUMNS = ("id", "name", "value", "day_pnl", "day_return", "volatility", "var", "cash",
                   "currency", "priced_at", "status", "segment", "tags")

#: Event topics after which the view re-reads the registry.
DEFAULT_TOPICS = ("portfolio.*", "group.*", "ledger.*", "access.*")

_TITLES = {
    "id": "ID", "name": "Name", "status": "Status", "segment": "Segment", "tags": "Tags",
    "currency": "Ccy", "cash": "Cash", "value": "Value", "day_pnl": "Day P&L",
    "day_return": "Day %", "volatility": "Vol 1y (ann.)", "var": "VaR 95% 1d (1y)",
    "priced_at": "Priced at",
}
_KINDS = {"cash": "money", "value": "money", "day_pnl": "money", "day_return": "percent",
          "volatility": "percent", "var": "percent", "priced_at": "time"}
#: Widest (px) the free-text columns may be: longer text is cut, the full text shows on hover.
_TRUNCATE = {"name": 220, "segment": 200, "tags": 200}

#: What the form's fields hold before anything is typed (and again after a creation).
FORM_DEFAULTS = {"id": "", "name": "", "capital": 100_000.0, "currency": "USD", "tags": ""}

#: Lifecycle buttons: verb -> (label, CSS class, colour, action the registry checks).
_LIFECYCLE = {
    "activate": ("Activate", "pmkit-activate", "success", "portfolio.activate"),
    "deactivate": ("Deactivate", "pmkit-deactivate", "warning", "portfolio.deactivate"),
    "delete": ("Delete", "pmkit-delete", "danger", "portfolio.archive"),
    "restore": ("Restore", "pmkit-restore", "default", "portfolio.restore"),
}


def last_close(registry: Registry) -> pd.Timestamp | None:
    """Time of the last close in the registry's market data (None without market data).

    Values on the Portfolios tab are as of this close: positions are valued
    at each asset's last available price up to it, cash as booked.
    """
    market = registry.market
    if market is None or "time" not in market.indexes or not len(market.indexes["time"]):
        return None
    return pd.Timestamp(market.indexes["time"][-1])


def _overview_frame(registry: Registry) -> pd.DataFrame:
    from pmkit.analytics.overview import portfolio_overview

    df = portfolio_overview(registry).reset_index().loc[:, list(SUMMARY_COLUMNS)]
    return formatted_frame(df, {"priced_at": "time"})  # times are text for Tabulator


class RegistryView(ServiceView):
    """Portfolios with value, day P&L, risk, status and tags; create and lifecycle actions.

    Works inline in a notebook (after ``pn.extension("tabulator")``) and in
    the served app. It follows the registry's event bus, so changes made
    through the same bus show at once; with ``poll_period`` it also re-reads
    the store on a timer, which picks up other processes' changes.

    Buttons follow the user and the selection: one the user's roles do not
    allow on the selected portfolio (or with nothing selected) is disabled
    and its tooltip says why; they are set again when the selection or the
    user's grants change. The methods (`activate`, `create`, ...) always
    call the registry, which refuses what it must.

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
    Values are as of the last close of the market data (`last_close`):
    positions at each asset's last available price, cash as booked.
    ``Day P&L`` is in the portfolio currency net of external cash flows;
    ``Day %``, ``Vol 1y (ann.)`` (annualized, ex ante: today's weights over
    the last 252 daily returns) and ``VaR 95% 1d (1y)`` (historical over the
    same window, loss positive) are fractions shown as percentages.

    Examples
    --------
    >>> import panel as pn
    >>> pn.extension("tabulator")  # doctest: +SKIP
    >>> RegistryView(registry)  # doctest: +SKIP
    """

    topics = DEFAULT_TOPICS

    def __init__(self, registry: Registry, **params: Any) -> None:
        super().__init__(registry, **params)
        self._table = desk_table(
            SUMMARY_COLUMNS, _KINDS, css="pmkit-portfolios", titles=_TITLES,
            truncate=_TRUNCATE, selectable=1, max_height=520,
        )
        self._table.param.watch(self._on_select, "selection")
        self._status = pn.pane.Markdown("", margin=(0, 10), styles={"color": "#6b7280"},
                                        css_classes=["pmkit-status"])
        self._empty = pn.pane.Markdown("", margin=(0, 10), visible=False,
                                       css_classes=["pmkit-empty"])
        self._selected = pn.pane.Markdown("Select a portfolio in the table.", margin=(5, 10),
                                          css_classes=["pmkit-selected"])
        self._hard = pn.widgets.Checkbox(label="permanently (hard delete)", value=False,
                                         css_classes=["pmkit-hard"])
        self._hard.param.watch(lambda _e: self.update_controls(), "value")
        self._buttons: dict[str, pn.widgets.Button] = {}
        for verb, (label, css, color, _action) in _LIFECYCLE.items():
            button = pn.widgets.Button(label=label, color=color, css_classes=[css],
                                       width=110, disabled=True)
            button.on_click(lambda _event, v=verb: self._lifecycle(v, clicked=True))
            self._buttons[verb] = button
        self._new_id = pn.widgets.TextInput(label="Portfolio id", placeholder="client_c/core",
                                            css_classes=["pmkit-new-id"], width=200)
        self._new_name = pn.widgets.TextInput(label="Name", css_classes=["pmkit-new-name"],
                                              width=200)
        # no lower bound: a negative capital reaches the registry, whose typed refusal
        # is shown (a bounded input would silently clamp it)
        self._new_capital = pn.widgets.FloatInput(label="Initial capital", step=1000.0,
                                                  width=160, css_classes=["pmkit-new-capital"])
        self._new_currency = pn.widgets.TextInput(label="Currency", width=80,
                                                  css_classes=["pmkit-new-currency"])
        self._new_tags = pn.widgets.TextInput(label="Tags (comma-separated)", width=200,
                                              css_classes=["pmkit-new-tags"])
        self.reset_form()
        self._create_btn = pn.widgets.Button(label="Create portfolio", color="primary",
                                             css_classes=["pmkit-create"], align="end")
        self._create_btn.on_click(lambda _event: self._create_clicked())
        layout = pn.Column(
            self._status,
            self._error,
            self._message,
            pn.pane.Markdown("### Portfolios", margin=(0, 10)),
            self._empty,
            self._table,
            pn.Row(self._selected, *self._buttons.values(), self._hard, align="center"),
            pn.Card(
                pn.Row(self._new_id, self._new_name, self._new_capital, self._new_currency,
                       self._new_tags, self._create_btn),
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

    @property
    def form(self) -> dict[str, Any]:
        """The new-portfolio form: ``id``, ``name``, ``capital``, ``currency``, ``tags``."""
        return {"id": self._new_id.value, "name": self._new_name.value,
                "capital": self._new_capital.value, "currency": self._new_currency.value,
                "tags": self._new_tags.value}

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
                self._empty.object = self._empty_text()
                self._empty.visible = df.empty
            self.update_controls()  # grants may have changed though the rows did not
            return changed

    def _status_text(self, df: pd.DataFrame, now: datetime) -> str:
        close = last_close(self.registry)
        asof = ("" if close is None else
                f" · as of the last close {format_time(close)}; positions valued at the "
                f"last available price")
        n = len(df)
        return (f"**{n}** portfolio{'s' if n != 1 else ''} visible to "
                f"<code>{escape_text(self.registry.user)}</code>{asof} · updated {now:%H:%M:%S}")

    def _empty_text(self) -> str:
        user = escape_text(self.registry.user)
        if self.registry.view().creation_refusal() is None:
            todo = "Create one with the form below, or ask an owner to grant you a role on one."
        else:
            todo = ("Ask an owner to grant you a role on a portfolio or group, or an "
                    "administrator to let you create portfolios.")
        return f"**No portfolio is visible to <code>{user}</code>.** {todo}"

    def _on_select(self, *_: Any) -> None:
        pid = self.selected
        self._selected.object = ("Select a portfolio in the table." if pid is None
                                 else f"Selected: **{escape_text(pid)}**")
        self.update_controls()

    def update_controls(self) -> None:
        """Enable the buttons the user's roles allow on the selection; say why for the others."""
        view = self.registry.view()
        pid = self.selected
        for verb, button in self._buttons.items():
            label, _css, _color, action = _LIFECYCLE[verb]
            if verb == "delete" and self._hard.value:
                action = "portfolio.delete"
            if pid is None:
                reason: str | None = f"Select a portfolio in the table to {label.lower()} it."
            else:
                refusal = view.refusal(action, pid)
                reason = (None if refusal is None
                          else refusal_text(label, refusal, view.role(pid)))
                # what the portfolio's state allows (asked only when the role does not refuse)
                state = None if reason is not None else view.state_refusal(action, pid)
                if state is not None:
                    reason = f"Cannot {label.lower()} {pid} while it is {state.status}."
            self._set_control(button, reason)
        refusal = view.creation_refusal()
        self._set_control(self._create_btn, None if refusal is None
                          else refusal_text("Creating a portfolio", refusal))

    def _set_control(self, button: pn.widgets.Button, reason: str | None) -> None:
        # kept disabled while a call runs; the tooltip says why otherwise
        button.disabled = reason is not None or self.acting
        button.description = reason

    # -- actions (each is one service call as this session's user) ------------------
    def _target(self) -> str | None:
        pid = self.selected
        if pid is None:
            self.show_error("Select a portfolio first.")
        return pid

    def _lifecycle(self, verb: str, *, clicked: bool = False) -> bool:
        button = self._buttons[verb] if clicked else None
        if button is not None and not self.pressable(button):
            return False
        pid = self._target()
        if pid is None:
            return False
        registry = self.registry
        hard = bool(self._hard.value)
        calls = {
            "activate": (lambda: registry.activate(pid), f"{pid} activated"),
            "deactivate": (lambda: registry.deactivate(pid), f"{pid} deactivated"),
            "delete": (lambda: registry.delete(pid, hard=hard),
                       f"{pid} deleted" if hard else f"{pid} archived (Restore brings it back)"),
            "restore": (lambda: registry.restore(pid), f"{pid} restored (inactive)"),
        }
        call, text = calls[verb]
        return self.act(lambda: call() or True, text, button=button) is not None

    def activate(self) -> bool:
        """`Registry.activate` the selected portfolio; False when refused."""
        return self._lifecycle("activate")

    def deactivate(self) -> bool:
        """`Registry.deactivate` the selected portfolio; False when refused."""
        return self._lifecycle("deactivate")

    def delete(self, hard: bool = False) -> bool:
        """`Registry.delete` the selected portfolio; False when refused.

        Archives it (``Restore`` undoes that); ``hard=True`` leaves a tombstone.
        """
        registry, pid = self.registry, self._target()
        what = "deleted" if hard else "archived (Restore brings it back)"
        return pid is not None and self.act(
            lambda: registry.delete(pid, hard=hard) or True, f"{pid} {what}") is not None

    def restore(self) -> bool:
        """`Registry.restore` the selected (archived) portfolio; False when refused."""
        return self._lifecycle("restore")

    def create(self, portfolio_id: str, initial_capital: float | None, *,
               name: str | None = None, currency: str = "USD",
               tags: tuple[str, ...] = ()) -> str | None:
        """`Registry.create_portfolio`; returns the new id, or None when refused."""
        registry = self.registry
        return self.act(
            lambda: registry.create_portfolio(
                portfolio_id, initial_capital, name=name or None, currency=currency, tags=tags),
            lambda pid: f"{pid} created",
        )

    def reset_form(self) -> None:
        """Put every field of the new-portfolio form back to `FORM_DEFAULTS`."""
        self._new_id.value = FORM_DEFAULTS["id"]
        self._new_name.value = FORM_DEFAULTS["name"]
        self._new_capital.value = FORM_DEFAULTS["capital"]
        self._new_currency.value = FORM_DEFAULTS["currency"]
        self._new_tags.value = FORM_DEFAULTS["tags"]

    def _create_clicked(self) -> None:
        form = self.form
        tags = tuple(t.strip() for t in str(form["tags"]).split(",") if t.strip())
        registry = self.registry
        pid = str(form["id"]).strip()
        name = str(form["name"]).strip() or None
        currency = str(form["currency"]).strip()
        capital = form["capital"]
        # the form is cleared only once the registry has accepted it; a refusal keeps
        # what was typed, beside the error, for the user to correct
        self.act(
            lambda: registry.create_portfolio(pid, capital, name=name, currency=currency,
                                              tags=tags),
            lambda created: f"{created} created",
            button=self._create_btn,
            then=lambda _created: self.reset_form(),
        )
