"""The rebalance approval view: pending proposals, their trades, costs and risk, approve/reject.

A view over `pmkit.rebalance.ProposalBook`: it lists the proposals the user
may view, shows the selected one (trade list, estimated costs, turnover, risk
and sector exposure before and after as hvplot charts, history, audit trail)
and its Approve and Reject buttons call ``ProposalBook(registry).approve`` /
``.reject``, the same methods a notebook user calls. The buttons follow the
proposal and the user: a proposal whose state has no approval or rejection
ahead (approved, rejected, ...) shows neither; one the user may not approve
(a trader, a viewer, the proposer under the four-eyes rule) shows Approve
disabled, its tooltip saying why. Roles and maker-checker stay the
service's: a refused action shows the service's error (type and message) and
changes nothing. The view refreshes on ``proposal.*`` and ``access.*``
events and, optionally, on a timer, so proposals made by other sessions or
processes appear.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
import param

from pmkit.display import format_money, format_percent, format_time
from pmkit.errors import ValidationError
from pmkit.rebalance import TRANSITIONS, ProposalBook, ProposalState
from pmkit.rebalance.types import TRADE_KINDS
from pmkit_widgets.base import (
    ServiceView,
    desk_table,
    error_text,
    escape_text,
    refusal_text,
    typed_frame,
)
from pmkit_widgets.charts import CANVAS

if TYPE_CHECKING:
    from pmkit.rebalance import RebalanceProposal
    from pmkit.registry import Registry

__all__ = [
    "AUDIT_COLUMNS",
    "COST_COLUMNS",
    "EMPTY_TEXT",
    "HISTORY_COLUMNS",
    "PROPOSAL_TOPICS",
    "TRADE_COLUMNS",
    "ApprovalView",
    "proposer_note",
]

#: Event topics after which the view re-reads (ProposalBook publishes ``proposal.<state>``;
#: a grant changes which buttons the user may press).
PROPOSAL_TOPICS = ("proposal.*", "access.*")

#: Columns of the trades table (`RebalanceProposal.trades_frame`; costs in currency).
TRADE_COLUMNS = (
    "portfolio", "asset", "quantity", "price", "notional", "commission", "spread", "impact",
    "estimated_cost", "filled",
)

#: Columns of the per-portfolio cost and turnover table.
COST_COLUMNS = ("portfolio", "currency", "nav", "estimated_cost", "cost_fraction", "turnover")

#: Columns of the proposal's state history (``ts`` formatted for people).
HISTORY_COLUMNS = ("ts", "state", "actor", "note")

#: Columns of the audit trail (`ReadView.audit(target=proposal.id)`; ``ts`` formatted).
AUDIT_COLUMNS = ("seq", "ts", "actor", "action", "note")

#: What the view says when there is no proposal at all to show.
EMPTY_TEXT = ("No proposal to review. Proposals appear here when a trader proposes a "
              "rebalance from the Optimize tab or `%pm propose`.")

_TRADE_DTYPES = {c: "float64" for c in TRADE_COLUMNS if c not in ("portfolio", "asset")}
_COST_DTYPES = dict.fromkeys(("nav", "estimated_cost", "cost_fraction", "turnover"), "float64")
_AUDIT_DTYPES = {"seq": "int64"}
_TRANSFER_DTYPES = {"amount": "float64"}
_DTYPES = {TRADE_COLUMNS: _TRADE_DTYPES, COST_COLUMNS: _COST_DTYPES, AUDIT_COLUMNS: _AUDIT_DTYPES,
           HISTORY_COLUMNS: {}, ("source", "destination", "amount"): _TRANSFER_DTYPES}

_COST_KINDS = {"nav": "money", "estimated_cost": "money", "cost_fraction": "percent",
               "turnover": "percent"}

_RISK_MEASURES = {"volatility": "volatility (annualized)", "var": "1-day VaR"}
#: Bar colours: before grey, after the app's accent.
_WHEN_COLORS = ["#9ca3af", "#1f4e79"]


def _order(proposals: list[RebalanceProposal]) -> list[RebalanceProposal]:
    """Pending first, then the rest; newest first within each."""
    newest = sorted(proposals, key=lambda p: (p.created_at, p.id), reverse=True)
    return sorted(newest, key=lambda p: p.state != ProposalState.PROPOSED)


def _label(p: RebalanceProposal) -> str:
    return f"{p.id} · {p.state} · {p.scope} · by {p.created_by} · {format_time(p.created_at)}"


def _audit_note(after: Any) -> str:
    if isinstance(after, dict):
        return str(after.get("note") or "")
    return ""


def proposer_note(p: RebalanceProposal) -> str:
    """The note the proposer gave (``%pm propose --note``), or ``""`` when none was given."""
    first = next((h for h in p.history if h.get("state") == str(ProposalState.PROPOSED)), None)
    note = str((first or {}).get("note") or "")
    return "" if note == p.reason else note  # the book stores the reason when no note is given


def _table(columns: tuple[str, ...], css: str, kinds: dict[str, Any] | None = None,
           **kw: Any) -> pn.widgets.Tabulator:
    return desk_table(columns, kinds or {}, css=css,
                      frame=typed_frame(None, columns, _DTYPES[columns]), **kw)


class ApprovalView(ServiceView):
    """Review, approve and reject rebalance proposals.

    Works inline in a notebook (after ``pn.extension("tabulator")``) and in
    the served app. Everything it shows is read from `ProposalBook` (as the
    registry's user) and the registry's audit log; the buttons call
    `approve` / `reject`, which call the book.

    Parameters
    ----------
    registry : Registry
        The session whose user reviews and acts.
    poll_period : int, optional
        Milliseconds between re-reads of the store (default: no polling;
        events only). Polling picks up proposals made by other processes.
    **params
        Other parameters of the view (see the class parameters).

    Examples
    --------
    >>> import panel as pn
    >>> pn.extension("tabulator")  # doctest: +SKIP
    >>> view = ApprovalView(registry.as_user("bob"))  # doctest: +SKIP
    >>> view.approve(note="within budget")  # doctest: +SKIP
    """

    show_all = param.Boolean(default=False,
                             doc="List proposals in every state, not only pending ones.")
    topics = param.List(default=list(PROPOSAL_TOPICS), item_type=str, constant=True,
                        doc="Event topic patterns that trigger a refresh.")

    #: The book's refusals and anything else it raises are shown, never raised at a click.
    refusals = (Exception,)

    def __init__(self, registry: Registry, *, poll_period: int | None = None,
                 **params: Any) -> None:
        super().__init__(registry, poll_period=poll_period, **params)
        self._proposals: dict[str, RebalanceProposal] = {}
        self._current: RebalanceProposal | None = None
        self._shown_key: Any = None
        self._sticky: str | None = None  # kept listed while selected, whatever its state
        self._updating = False
        self._error_from_refresh = False
        self._nav_cache: dict[tuple[str, str], float | None] = {}
        self._charts: dict[str, dict[str, Any]] = {}
        self._charts_for: str | None = None
        self._risk = pd.DataFrame(columns=["portfolio", "measure", "when", "value"])
        self._sectors = pd.DataFrame(columns=["portfolio", "sector", "when", "value"])

        self._select = pn.widgets.Select(label="Proposal", options={}, sizing_mode="stretch_width",
                                         css_classes=["pmkit-proposal-select"])
        self._select.param.watch(self._on_select, "value")
        self._show_all = pn.widgets.Checkbox.from_param(
            self.param.show_all, label="Show all states", css_classes=["pmkit-show-all"])
        self.param.watch(lambda _e: self._safe_refresh(), "show_all")
        self._state = pn.pane.HTML("", css_classes=["pmkit-proposal-state"], margin=(5, 10))
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width")
        self._note = pn.widgets.TextInput(label="Note (approve) / reason (reject)",
                                          placeholder="why", sizing_mode="stretch_width",
                                          css_classes=["pmkit-note"])
        self._approve_btn = pn.widgets.Button(label="Approve", color="success", align="end",
                                              css_classes=["pmkit-approve"], disabled=True)
        self._reject_btn = pn.widgets.Button(label="Reject", color="danger", align="end",
                                             css_classes=["pmkit-reject"], disabled=True)
        self._approve_btn.on_click(
            lambda _e: self._act("approve", self._note.value, button=self._approve_btn))
        self._reject_btn.on_click(
            lambda _e: self._act("reject", self._note.value, button=self._reject_btn))
        self._status = pn.pane.Markdown("", margin=(0, 10), styles={"color": "#6b7280"},
                                        css_classes=["pmkit-status"])
        self._trades = _table(TRADE_COLUMNS, "pmkit-trades", TRADE_KINDS, max_height=360,
                              titles={"estimated_cost": "est. cost", "notional": "notional"})
        self._costs = _table(COST_COLUMNS, "pmkit-costs", _COST_KINDS,
                             titles={"nav": "NAV", "estimated_cost": "est. cost",
                                     "cost_fraction": "cost / NAV",
                                     "turnover": "turnover (one-way)"})
        self._transfers = _table(("source", "destination", "amount"), "pmkit-transfers",
                                 {"amount": "money"}, visible=False)
        self._history = _table(HISTORY_COLUMNS, "pmkit-history", truncate={"note": 420})
        self._audit = _table(AUDIT_COLUMNS, "pmkit-audit", hidden_columns=["seq"],
                             frozen=False, truncate={"note": 420})
        self._chart_box = pn.Column(sizing_mode="stretch_width", css_classes=["pmkit-risk-charts"])
        self._actions = pn.Row(self._note, self._approve_btn, self._reject_btn,
                               sizing_mode="stretch_width")
        self._detail = pn.Column(
            self._state,
            self._summary,
            self._actions,
            self._message,
            pn.pane.Markdown("#### Trades", margin=(10, 10, 0, 10)),
            self._trades,
            self._transfers,
            pn.pane.Markdown("#### Estimated cost and turnover", margin=(10, 10, 0, 10)),
            self._costs,
            pn.pane.Markdown("#### Risk and sector exposure, before and after",
                             margin=(10, 10, 0, 10)),
            self._chart_box,
            pn.pane.Markdown("#### History", margin=(10, 10, 0, 10)),
            self._history,
            pn.pane.Markdown("#### Audit trail", margin=(10, 10, 0, 10)),
            self._audit,
            sizing_mode="stretch_width",
            visible=False,
        )
        self._empty = pn.pane.Markdown(EMPTY_TEXT, margin=(5, 10), css_classes=["pmkit-empty"])
        layout = pn.Column(
            self._status,
            pn.Row(self._select, self._show_all, sizing_mode="stretch_width"),
            self._error,
            self._empty,
            self._detail,
            sizing_mode="stretch_width",
        )
        self._start(layout)

    # -- read accessors -----------------------------------------------------------------
    @property
    def proposal_ids(self) -> list[str]:
        """Ids listed in the selector, in order (pending first, newest first)."""
        return list(self._select.options.values())

    @property
    def selected(self) -> str | None:
        """Id of the proposal shown, or None."""
        return self._current.id if self._current is not None else None

    @property
    def proposal(self) -> RebalanceProposal | None:
        """The proposal shown, as last read from the book."""
        return self._current

    @property
    def state(self) -> str:
        """State of the proposal shown (``""`` when none)."""
        return "" if self._current is None else str(self._current.state)

    @property
    def empty_text(self) -> str:
        """What the view says instead of a proposal (``""`` while one is shown)."""
        return "" if self._current is not None else str(self._empty.object)

    @property
    def trades(self) -> pd.DataFrame:
        """The trade lines shown (a copy); costs in currency."""
        return self._trades.value.copy()

    @property
    def costs(self) -> pd.DataFrame:
        """Per-portfolio NAV, estimated cost (currency and fraction of NAV) and turnover."""
        return self._costs.value.copy()

    @property
    def history(self) -> pd.DataFrame:
        """The proposal's state transitions shown, oldest first (``ts`` as shown)."""
        return self._history.value.copy()

    @property
    def audit(self) -> pd.DataFrame:
        """The audit records of the proposal shown, oldest first (``ts`` as shown)."""
        return self._audit.value.copy()

    @property
    def risk(self) -> pd.DataFrame:
        """Data of the risk charts: ``portfolio, measure, when, value`` (fractions)."""
        return self._risk.copy()

    @property
    def sector_exposure(self) -> pd.DataFrame:
        """Data of the sector charts: ``portfolio, sector, when, value`` (fractions of NAV)."""
        return self._sectors.copy()

    @property
    def charts(self) -> dict[str, dict[str, Any]]:
        """HoloViews charts shown: portfolio -> ``{"risk": Bars, "sectors": Bars}``."""
        return {k: dict(v) for k, v in self._charts.items()}

    # -- actions ------------------------------------------------------------------------
    def select(self, proposal_id: str) -> RebalanceProposal | None:
        """Show ``proposal_id`` (listed even when its state is filtered out).

        Returns
        -------
        RebalanceProposal or None
            The proposal, or None when the book refused (the error is shown).
        """
        with self._lock:
            self.clear_messages()
            if proposal_id not in self._proposals:
                try:
                    self._proposals[proposal_id] = ProposalBook(self.registry).get(proposal_id)
                except Exception as exc:  # the service's error is the message
                    self.show_error(error_text(exc))
                    return None
            self._sticky = proposal_id
            self.refresh()
            return self._current

    def approve(self, note: str = "") -> RebalanceProposal | None:
        """Approve the selected proposal: ``ProposalBook(registry).approve(id, note)``.

        Called directly it always asks the book, whatever the buttons show.

        Returns
        -------
        RebalanceProposal or None
            The approved proposal, or None when the book refused (the error is
            shown and nothing changed).
        """
        return self._act("approve", note)

    def reject(self, reason: str) -> RebalanceProposal | None:
        """Reject the selected proposal: ``ProposalBook(registry).reject(id, reason)``.

        An empty reason is the book's `ValidationError`, shown like any refusal.
        """
        return self._act("reject", reason)

    def _act(self, verb: str, text: str, *,
             button: pn.widgets.Button | None = None) -> RebalanceProposal | None:
        with self._lock:
            if button is not None and not self.pressable(button):
                return None
            self.clear_messages()
            pid = self.selected
            book = ProposalBook(self.registry)

            def call() -> RebalanceProposal:
                if pid is None:
                    raise ValidationError("proposal", None, "select a proposal first")
                return getattr(book, verb)(pid, text)

            def then(after: RebalanceProposal) -> None:
                self._sticky = pid
                self._note.value = ""
                state = escape_text(str(after.state))
                html = f"Proposal <code>{escape_text(pid)}</code> is now <b>{state}</b>."
                self.show_message(f"Proposal {pid} is now {after.state}.", html)

            return self.act(call, button=button, then=then)

    def show_error(self, text: str) -> None:
        """Show ``text`` as the view's error (and hide the success message)."""
        super().show_error(text)
        self._error_from_refresh = False

    def _on_select(self, event: Any) -> None:
        if self._updating or event.new is None:
            return
        with self._lock:
            self.clear_messages()
            self._sticky = event.new
            self._safe_refresh()

    # -- buttons --------------------------------------------------------------------------
    def update_controls(self) -> None:
        """Set Approve and Reject for the proposal shown and the user.

        Shown only when the proposal's state allows them (`TRANSITIONS`);
        enabled only when the user may (roles, the four-eyes rule), the
        tooltip saying why otherwise.
        """
        p = self._current
        can_approve = p is not None and ProposalState.APPROVED in TRANSITIONS[p.state]
        can_reject = p is not None and ProposalState.REJECTED in TRANSITIONS[p.state]
        self._approve_btn.visible = can_approve
        self._reject_btn.visible = can_reject
        self._note.visible = can_approve or can_reject
        if p is None:
            return
        view = self.registry.view()
        role = view.role(p.scope)
        refusal = view.refusal("proposal.approve", p.scope)
        if refusal is not None:
            approve_why: str | None = refusal_text("Approving", refusal, role)
        elif p.created_by == self.registry.user:
            # the book's four-eyes rule (MakerCheckerError), administrators included
            approve_why = (f"{self.registry.user} proposed {p.id}: another manager must "
                           "approve it (four-eyes rule).")
        else:
            approve_why = None
        refusal = view.refusal("proposal.reject", p.scope)
        reject_why = None if refusal is None else refusal_text("Rejecting", refusal, role)
        for button, why in ((self._approve_btn, approve_why), (self._reject_btn, reject_why)):
            button.disabled = why is not None or self.acting
            button.description = why
        self._note.disabled = approve_why is not None and reject_why is not None

    # -- reading ------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Re-read the book (and the selected proposal's audit trail) and update what changed.

        Returns
        -------
        bool
            Whether anything shown changed.
        """
        with self._lock:
            found = {p.id: p for p in ProposalBook(self.registry).list()}
            self._proposals = found
            shown = [p for p in _order(list(found.values()))
                     if self.show_all or p.state == ProposalState.PROPOSED or p.id == self._sticky]
            options = {_label(p): p.id for p in shown}
            target = self._sticky if self._sticky in found else None
            if target is None or target not in options.values():
                target = next(iter(options.values()), None)
            # What is on screen stays listed when its state changes (e.g. approved elsewhere).
            self._sticky = target
            changed = False
            self._updating = True
            try:
                if options != self._select.options:
                    self._select.options = options
                    changed = True
                if self._select.value != target:
                    self._select.value = target
            finally:
                self._updating = False
            p = found.get(target) if target is not None else None
            audit = self.registry.view().audit(target=p.id) if p is not None else []
            key = None if p is None else (p.to_record(), [a.seq for a in audit])
            if key != self._shown_key:
                self._render(p, audit)
                self._shown_key = key
                changed = True
            empty = self._empty_text(found)
            if empty != self._empty.object:
                self._empty.object = empty
            if self.error and self._error_from_refresh:
                self.clear_messages()
                changed = True
            if changed or self.last_refresh is None:
                now = datetime.now().replace(microsecond=0)
                with param.edit_constant(self):
                    self.last_refresh = now
                pending = sum(q.state == ProposalState.PROPOSED for q in found.values())
                self._status.object = (
                    f"**{pending}** pending proposal{'s' if pending != 1 else ''} of {len(found)}"
                    f" visible to <code>{escape_text(self.registry.user)}</code>"
                    f" · updated {now:%H:%M:%S}"
                )
            self.update_controls()  # a grant may have changed though the proposal did not
            return changed

    def _empty_text(self, found: dict[str, RebalanceProposal]) -> str:
        if not found or self.show_all:
            return EMPTY_TEXT
        n = len(found)
        return (f"No pending proposal. Tick **Show all states** to see the {n} decided "
                f"one{'s' if n != 1 else ''}. New proposals appear here when a trader proposes "
                "a rebalance from the Optimize tab or `%pm propose`.")

    def _show_refresh_error(self, exc: Exception) -> None:
        super()._show_refresh_error(exc)
        self._error_from_refresh = True

    def _render(self, p: RebalanceProposal | None, audit: list[Any]) -> None:
        self._current = p
        has = p is not None
        self._detail.visible = has
        self._empty.visible = not has
        if p is None:
            self._state.object = ""
            for table, cols in ((self._trades, TRADE_COLUMNS), (self._costs, COST_COLUMNS),
                                (self._history, HISTORY_COLUMNS), (self._audit, AUDIT_COLUMNS)):
                table.value = typed_frame(None, cols, _DTYPES[cols])
            self._set_charts(None)
            return
        self._state.object = (f"State of <code>{escape_text(p.id)}</code>: "
                              f"<b class='pmkit-state-value'>{escape_text(str(p.state))}</b>")
        trades = p.trades_frame()
        self._trades.value = typed_frame(None if trades.empty else trades, TRADE_COLUMNS,
                                         _TRADE_DTYPES)
        cols = ("source", "destination", "amount")
        transfers = typed_frame(
            pd.DataFrame([(t.source, t.destination, t.amount) for t in p.transfers], columns=cols),
            cols, _TRANSFER_DTYPES)
        self._transfers.value = transfers
        self._transfers.visible = not transfers.empty
        costs = self._cost_frame(p)
        self._costs.value = costs
        self._summary.object = self._summary_html(p, costs)
        self._history.value = typed_frame(pd.DataFrame(
            [{**{k: h.get(k) for k in HISTORY_COLUMNS}, "ts": format_time(h.get("ts"))}
             for h in p.history],
            columns=list(HISTORY_COLUMNS),
        ), HISTORY_COLUMNS, {})
        self._audit.value = typed_frame(pd.DataFrame(
            [(a.seq, format_time(a.ts), a.actor, a.action, _audit_note(a.after)) for a in audit],
            columns=list(AUDIT_COLUMNS),
        ), AUDIT_COLUMNS, _AUDIT_DTYPES)
        if self._charts_for != p.id:
            self._set_charts(p)

    def _nav(self, p: RebalanceProposal, pid: str) -> float | None:
        stored = p.info.get("nav") if isinstance(p.info.get("nav"), dict) else {}
        if pid in stored:
            return float(stored[pid])
        key = (pid, p.as_of)
        if key not in self._nav_cache:
            try:
                self._nav_cache[key] = float(self.registry.value(pid, at=p.as_of))
            except Exception:  # no value to show; the fraction shows "—"
                self._nav_cache[key] = None
        return self._nav_cache[key]

    def _currency(self, pid: str) -> str:
        try:
            return str(self.registry.portfolio(pid).currency)
        except Exception:  # a portfolio deleted since: show no currency
            return ""

    def _cost_frame(self, p: RebalanceProposal) -> pd.DataFrame:
        rows = []
        for pid in p.portfolios:
            cost = float(sum(t.estimated_cost for t in p.trades if t.portfolio == pid))
            nav = self._nav(p, pid)
            rows.append({
                "portfolio": pid,
                "currency": self._currency(pid),
                "nav": float("nan") if nav is None else nav,
                "estimated_cost": cost,
                "cost_fraction": cost / nav if nav else float("nan"),
                "turnover": float(p.turnover.get(pid, float("nan"))),
            })
        return typed_frame(pd.DataFrame(rows, columns=list(COST_COLUMNS)), COST_COLUMNS,
                           _COST_DTYPES)

    def _summary_html(self, p: RebalanceProposal, costs: pd.DataFrame) -> str:
        ccys = sorted(set(costs["currency"]) - {""})
        ccy = ccys[0] if len(ccys) == 1 else ""
        nav = costs["nav"].sum(min_count=len(costs)) if len(costs) else float("nan")
        frac = p.estimated_cost / nav if nav == nav and nav else float("nan")
        frac_text = "—" if frac != frac else f"{format_percent(frac)} of NAV"
        note = proposer_note(p)
        method = escape_text(p.method)
        rows = [
            ("Scope", f"{escape_text(p.scope_kind)} <code>{escape_text(p.scope)}</code>"),
            ("Portfolios", escape_text(", ".join(p.portfolios))),
            ("Proposed by", f"{escape_text(p.created_by)} at "
                            f"{escape_text(format_time(p.created_at))}"),
            # the proposer's note is the reason when given; the method's own label stays
            ("Reason", f"<span class='pmkit-proposal-reason'>"
                       f"{escape_text(note or p.reason)}</span>"),
            ("Method", f"{method} · {escape_text(p.reason)}" if note else method),
            ("Expires", escape_text(format_time(p.expires_at) if p.expires_at else "never")),
            ("Prices as of", escape_text(format_time(p.as_of))),
            ("Trades", str(len(p.trades))),
            ("Estimated cost",
             f"<b>{escape_text(format_money(p.estimated_cost, ccy or None))}</b> ({frac_text})"),
        ]
        th = "<th style='text-align:left;padding-right:1em;vertical-align:top'>"
        body = "".join(f"<tr>{th}{k}</th><td>{v}</td></tr>" for k, v in rows)
        return f"<table class='pmkit-proposal-summary'>{body}</table>"

    # -- charts -------------------------------------------------------------------------
    def _set_charts(self, p: RebalanceProposal | None) -> None:
        self._charts_for = None if p is None else p.id
        risk_rows, sector_rows = [], []
        if p is not None:
            for pid in p.portfolios:
                for when, snaps in (("before", p.risk_before), ("after", p.risk_after)):
                    snap = snaps.get(pid)
                    if snap is None:
                        continue
                    for attr, label in _RISK_MEASURES.items():
                        name = label if attr != "var" else f"{label} {snap.confidence:.0%}"
                        risk_rows.append((pid, name, when, float(getattr(snap, attr))))
                    for sector, w in {**snap.sectors, "cash": snap.cash}.items():
                        sector_rows.append((pid, str(sector), when, float(w)))
        self._risk = pd.DataFrame(risk_rows, columns=["portfolio", "measure", "when", "value"])
        self._sectors = pd.DataFrame(sector_rows, columns=["portfolio", "sector", "when", "value"])
        self._chart_box.loading = True  # the first chart imports hvplot: a second or two
        try:
            self._charts = _risk_charts(self._risk, self._sectors)
        finally:
            self._chart_box.loading = False
        panes: list[Any] = []
        for pid, charts in self._charts.items():
            panes.append(pn.pane.Markdown(f"**{escape_text(pid)}**", margin=(5, 10, 0, 10)))
            panes.append(pn.Row(
                pn.pane.HoloViews(charts["risk"], backend="bokeh", sizing_mode="stretch_width",
                                  css_classes=["pmkit-risk-chart"]),
                pn.pane.HoloViews(charts["sectors"], backend="bokeh",
                                  sizing_mode="stretch_width", css_classes=["pmkit-sector-chart"]),
                sizing_mode="stretch_width"))
        if not panes:
            panes = [pn.pane.Markdown("No risk snapshot in this proposal.", margin=(0, 10))]
        self._chart_box.objects = panes


def _when_ordered(frame: pd.DataFrame, order: tuple[str, str] = ("before", "after")
                  ) -> pd.DataFrame:
    """``frame`` with ``when`` as a categorical in ``order`` (the order bars are drawn in)."""
    return frame.assign(when=pd.Categorical(frame["when"], list(order)))


def _level_sector_labels(plot: Any, element: Any) -> None:
    """Sector names read level beside their bars, "before" and "after" beside each bar."""
    axis = plot.state.yaxis[0]
    axis.group_label_orientation = "horizontal"
    axis.group_text_font_style = "normal"
    axis.group_text_font_size = "12px"
    axis.major_label_text_font_size = "10px"  # "before" / "after" beside each bar


def _risk_charts(risk: pd.DataFrame, sectors: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Grouped bars of risk and of sector exposure, before beside after, per portfolio.

    Values stay fractions in the charts' data; the value axes read in percent.
    Sector exposure is horizontal (the sector names read level), largest at the
    top, cash last; the charts take the width of their container.
    """
    if risk.empty and sectors.empty:
        return {}
    from bokeh.models import NumeralTickFormatter

    from pmkit._hvplot import ensure_hvplot

    ensure_hvplot()

    out: dict[str, dict[str, Any]] = {}
    common = {"legend": "top_right", "color": _WHEN_COLORS, "responsive": True,
              "backend_opts": CANVAS}
    for pid in dict.fromkeys([*risk["portfolio"], *sectors["portfolio"]]):
        r = _when_ordered(risk[risk["portfolio"] == pid].reset_index(drop=True))
        s = sectors[sectors["portfolio"] == pid]
        # bottom to top on the axis: cash, then the smallest to the largest exposure
        size = s.groupby("sector")["value"].max().drop("cash", errors="ignore")
        order = ["cash", *size.sort_values(kind="stable").index]
        rank = s["sector"].map({k: i for i, k in enumerate(order)})
        # a vertical axis runs bottom up: "after" first puts "before" above it, read first
        s = (_when_ordered(s, ("after", "before")).assign(rank=rank)
             .sort_values(["rank", "when"], kind="stable")
             .drop(columns="rank").reset_index(drop=True))
        out[pid] = {
            "risk": r.hvplot.bar(x="measure", y="value", by="when", xlabel="",
                                 ylabel="% (volatility annualized, VaR 1 day)",
                                 title="Volatility and VaR",
                                 yformatter=NumeralTickFormatter(format="0.0%"), height=300,
                                 **common),
            "sectors": s.hvplot.barh(x="sector", y="value", by="when", xlabel="",
                                     ylabel="% of NAV", title="Sector exposure",
                                     xformatter=NumeralTickFormatter(format="0%"),
                                     height=max(300, 70 + 24 * len(s)), **common)
                         .opts(hooks=[_level_sector_labels]),
        }
    return out
