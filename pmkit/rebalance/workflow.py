"""The approval workflow of rebalance proposals: a persisted state machine.

::

    proposed -> approved | rejected | expired
    approved -> submitted | expired | cancelled
    submitted -> partially_filled | filled | cancelled
    partially_filled -> partially_filled | filled | cancelled

(`pmkit.rebalance.types.TRANSITIONS`). Proposals are stored whole as
entities of kind ``"proposal"`` whose status is the state, so a new
`ProposalBook` over the same store resumes where the last one stopped.

Every transition is one registry transaction: the new state, a history entry
``{state, actor, ts, note}``, an audit record (action ``proposal.<verb>``,
target the proposal id) and, after the commit, one ``proposal.<state>`` event
per portfolio of the proposal (and one for its group, for a group scope). An
illegal transition raises `TransitionError`; any error leaves the store as
it was.

Roles (on the proposal's scope, `pmkit.registry.access.ACTION_ROLES`):
proposing, submitting, cancelling and expiring need TRADER; approving and
rejecting need MANAGER. On top of the role, the proposer may never approve
their own proposal (`MakerCheckerError`), administrators included.

Expiry: a proposal with ``expires_at`` in the past can only expire. Approving
or submitting it raises `LifecycleError` and changes nothing; `expire_due`
moves it to ``expired``.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pmkit.errors import (
    AlreadyExistsError,
    InsufficientCashError,
    LifecycleError,
    MakerCheckerError,
    NotFoundError,
    TransitionError,
    ValidationError,
)
from pmkit.execution.broker import (
    OPEN_ORDER_STATUSES,
    Broker,
    Fill,
    Order,
    OrderStatus,
    register_fill_listener,
)
from pmkit.ledger import OPEN_QUANTITY_TOLERANCE
from pmkit.rebalance.types import TRANSITIONS, ProposalState, RebalanceProposal
from pmkit.registry.ids import validate_id
from pmkit.validation import (
    MAX_AMOUNT,
    MAX_MEMO_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_TEXT_LENGTH,
    check_limit,
    check_number,
    check_text,
)

if TYPE_CHECKING:
    from pmkit.registry import Mutation, Registry

__all__ = ["ProposalBook", "apply_fill"]

S = ProposalState
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _parse_ts(name: str, value: Any) -> datetime:
    try:
        ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    except ValueError as exc:
        raise ValidationError(name, value, "must be an ISO-8601 time") from exc
    if not isinstance(ts, datetime):
        raise ValidationError(name, value, "must be an ISO-8601 time")
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


def _stored(p: RebalanceProposal) -> dict[str, Any]:
    try:
        return json.loads(json.dumps(p.to_record(), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError("proposal", p.id, f"must be JSON-serialisable: {exc}") from exc


def _load(m: Mutation, proposal_id: str) -> RebalanceProposal:
    rec = m.tx.get("proposal", proposal_id)
    if rec is None:
        raise NotFoundError("proposal", proposal_id)
    return RebalanceProposal.from_record(rec.data)


def _check_legal(p: RebalanceProposal, new: ProposalState, verb: str) -> None:
    allowed = TRANSITIONS[p.state]
    if new not in allowed:
        raise TransitionError(p.id, str(p.state), verb, [str(s) for s in allowed])


def _summary(p: RebalanceProposal) -> dict[str, Any]:
    return {"state": str(p.state), "scope": p.scope, "history": len(p.history)}


def _advance(
    m: Mutation,
    p: RebalanceProposal,
    new: ProposalState,
    now: datetime,
    note: str = "",
    *,
    audit: str | None = None,
    **changes: Any,
) -> RebalanceProposal:
    """Move ``p`` to ``new`` inside ``m``: store, history, audit, events.

    ``audit`` names a further audit record (``m.note``) instead of the
    transaction's primary one, for transitions caused inside another
    operation's transaction (a fill).
    """
    _check_legal(p, new, str(new))
    check_text(note, "note", max_length=MAX_TEXT_LENGTH)
    entry = {"state": str(new), "actor": m.user, "ts": now.isoformat(), "note": note}
    after = p.with_changes(state=new, history=[*p.history, entry], **changes)
    m.tx.put("proposal", p.id, str(new), _stored(after))
    if audit is None:
        m.record(_summary(p), _summary(after) | {"note": note})
    else:
        m.note(audit, p.id, _summary(p), _summary(after) | {"note": note})
    payload = {"proposal": p.id, "state": str(new), "previous": str(p.state), "note": note}
    for pid in p.portfolios:
        m.publish(f"proposal.{new}", portfolio=pid, **payload)
    if p.scope_kind == "group":
        m.publish(f"proposal.{new}", group=p.scope, **payload)
    return after


def apply_fill(m: Mutation, order: Order, fill: Fill, *, now: datetime) -> RebalanceProposal:
    """Book ``fill`` of ``order`` on its proposal inside the fill's transaction.

    The trade line's ``filled``, ``fill_value`` and ``fees`` grow by the
    fill; the proposal moves to ``filled`` when every line is filled, to
    ``partially_filled`` otherwise. A late fill on a cancelled proposal
    updates the line and leaves the state alone.

    Raises
    ------
    TransitionError
        The proposal is in no state that takes fills.
    """
    assert order.proposal_id is not None
    p = _load(m, order.proposal_id)
    try:
        line = p.trade(order.portfolio, order.asset)
    except KeyError as exc:
        raise NotFoundError("trade line", f"{p.id}:{order.portfolio}|{order.asset}") from exc
    new_line = replace(
        line,
        filled=line.filled + fill.quantity,
        fill_value=line.fill_value + fill.quantity * fill.price,
        fees=line.fees + fill.fee,
    )
    trades = [new_line if t is line else t for t in p.trades]
    note = f"fill {fill.id}: {fill.quantity:g} {order.asset} @ {fill.price:.6g}"
    if p.state == S.CANCELLED:
        after = p.with_changes(trades=trades)
        m.tx.put("proposal", p.id, str(p.state), _stored(after))
        m.note("proposal.late_fill", p.id, _summary(p), _summary(after) | {"note": note})
        return after
    if p.state not in (S.SUBMITTED, S.PARTIALLY_FILLED):
        raise TransitionError(p.id, str(p.state), "fill", [str(s) for s in TRANSITIONS[p.state]])
    done = all(
        abs(t.remaining) <= OPEN_QUANTITY_TOLERANCE * max(1.0, abs(t.quantity)) for t in trades
    )
    new = S.FILLED if done else S.PARTIALLY_FILLED
    return _advance(m, p, new, now, note, audit=f"proposal.{new}", trades=trades)


class ProposalBook:
    """The approval workflow over a registry's store.

    Parameters
    ----------
    registry : Registry
        Session whose user acts (proposes, approves, submits, ...).
    clock : callable, optional
        ``clock() -> datetime``, tz-naive UTC "now" for expiry and history
        stamps (default: the wall clock).

    Examples
    --------
    >>> book = ProposalBook(reg.as_user("alice"))          # doctest: +SKIP
    >>> book.propose(proposal)                             # doctest: +SKIP
    >>> ProposalBook(reg.as_user("bob")).approve(proposal.id)   # doctest: +SKIP
    """

    def __init__(self, registry: Registry, *, clock: Clock | None = None) -> None:
        self.registry = registry
        self.clock = clock or _utcnow

    # -- reading ----------------------------------------------------------------------
    def get(self, proposal_id: str) -> RebalanceProposal:
        """The stored proposal; `NotFoundError` when missing or not visible to this user."""
        rec = self.registry.view().record("proposal", proposal_id)
        if rec is None:  # missing, or another desk's: its existence does not leak
            raise NotFoundError("proposal", proposal_id)
        return RebalanceProposal.from_record(rec.data)

    def list(
        self, state: ProposalState | str | None = None, scope: str | None = None
    ) -> builtins.list[RebalanceProposal]:
        """Proposals this user may view, ordered by id, optionally of one state and/or scope."""
        statuses = None if state is None else [str(ProposalState(state))]
        recs = self.registry.view().records("proposal", statuses)
        return [
            p
            for p in (RebalanceProposal.from_record(r.data) for r in recs)
            if scope is None or p.scope == scope
        ]

    def orders(self, proposal_id: str) -> builtins.list[Order]:
        """The orders a submitted proposal created, in trade-line order."""
        p = self.get(proposal_id)
        view = self.registry.view()
        recs = [view.record("order", oid) for oid in p.info.get("orders", [])]
        return [Order.from_record(r.data) for r in recs if r is not None]

    # -- creating ---------------------------------------------------------------------
    def propose(self, proposal: RebalanceProposal, note: str = "") -> RebalanceProposal:
        """Store a new proposal in state ``proposed`` (needs TRADER on its scope).

        Parameters
        ----------
        proposal : RebalanceProposal
            ``created_by`` must be this session's user and ``state`` ``proposed``.
        note : str
            History note (default: the proposal's ``reason``).

        Raises
        ------
        ValidationError
            A malformed proposal (field and value named).
        AlreadyExistsError
            The id is taken.
        PermissionDenied
            The user may not propose on the scope.
        """
        if not isinstance(proposal, RebalanceProposal):
            raise ValidationError("proposal", proposal, "must be a RebalanceProposal")
        now = self.clock()
        check_text(
            proposal.id, "id", max_length=MAX_NAME_LENGTH, multiline=False, allow_empty=False
        )
        validate_id(proposal.scope, "scope")
        check_text(proposal.reason, "reason", max_length=MAX_MEMO_LENGTH)
        check_text(note, "note", max_length=MAX_TEXT_LENGTH)
        with self.registry.mutation("proposal.create", proposal.id) as m:
            p = proposal
            m.require("proposal.create", p.scope)
            if p.created_by != m.user:
                raise ValidationError(
                    "created_by", p.created_by, f"must be the proposing user {m.user!r}"
                )
            if p.state != S.PROPOSED:
                raise ValidationError("state", str(p.state), "a new proposal must be 'proposed'")
            if m.tx.get("proposal", p.id) is not None:
                raise AlreadyExistsError("proposal", p.id)
            self._validate(m, p)
            entry = {
                "state": str(S.PROPOSED),
                "actor": m.user,
                "ts": now.isoformat(),
                "note": note or p.reason,
            }
            after = p.with_changes(history=[*p.history, entry])
            m.tx.put("proposal", p.id, str(S.PROPOSED), _stored(after))
            m.record(None, _summary(after) | {"note": entry["note"]})
            payload = {"proposal": p.id, "state": "proposed", "previous": None, "note": note}
            for pid in p.portfolios:
                m.publish("proposal.proposed", portfolio=pid, **payload)
            if p.scope_kind == "group":
                m.publish("proposal.proposed", group=p.scope, **payload)
        return after

    def _validate(self, m: Mutation, p: RebalanceProposal) -> None:
        if p.scope_kind == "portfolio":
            if m.tx.get("portfolio", p.scope) is None:
                raise NotFoundError("portfolio", p.scope)
            members = [p.scope]
        elif p.scope_kind == "group":
            if m.tx.get("group", p.scope) is None:
                raise NotFoundError("group", p.scope)
            members = m.group_portfolios(p.scope)
        else:
            raise ValidationError("scope_kind", p.scope_kind, "must be 'portfolio' or 'group'")
        if not p.portfolios or len(set(p.portfolios)) != len(p.portfolios):
            raise ValidationError("portfolios", p.portfolios, "must be distinct and non-empty")
        for pid in p.portfolios:
            if pid not in members:
                raise ValidationError("portfolios", pid, f"is not in scope {p.scope!r}")
        if p.expires_at is not None:
            _parse_ts("expires_at", p.expires_at)
        keys = set()
        for t in p.trades:
            if t.portfolio not in p.portfolios:
                raise ValidationError("trades.portfolio", t.portfolio, "not among portfolios")
            if t.key in keys:
                raise ValidationError("trades", t.key, "one line per portfolio and asset")
            keys.add(t.key)
            limits = {"quantity": MAX_QUANTITY, "price": MAX_PRICE}
            for name in ("quantity", "price", "commission", "spread", "impact"):
                check_number(getattr(t, name), f"trades.{name}", limit=limits.get(name, MAX_AMOUNT))
            check_limit(abs(t.quantity * t.price), "trades.notional", MAX_AMOUNT, t.key)
            if t.quantity == 0:
                raise ValidationError("trades.quantity", t.quantity, f"{t.key}: must be non-zero")
            if t.price <= 0:
                raise ValidationError("trades.price", t.price, f"{t.key}: must be > 0")
            if t.filled or t.fill_value or t.fees:
                raise ValidationError("trades.filled", t.filled, f"{t.key}: nothing filled yet")
        for tr in p.transfers:
            if tr.source not in p.portfolios or tr.destination not in p.portfolios:
                raise ValidationError(
                    "transfers", (tr.source, tr.destination), "both ends must be among portfolios"
                )
            if tr.source == tr.destination:
                raise ValidationError("transfers.destination", tr.destination, "same as source")
            check_number(tr.amount, "transfers.amount", positive=True)

    # -- transitions ------------------------------------------------------------------
    def _begin(
        self, m: Mutation, proposal_id: str, action: str, new: ProposalState
    ) -> RebalanceProposal:
        p = _load(m, proposal_id)
        m.require(action, p.scope)
        _check_legal(p, new, action.removeprefix("proposal."))
        return p

    def _check_not_expired(self, p: RebalanceProposal, verb: str, now: datetime) -> None:
        if p.expires_at is not None and now > _parse_ts("expires_at", p.expires_at):
            raise LifecycleError(
                p.id,
                str(p.state),
                verb,
                f"it expired at {p.expires_at}; expire_due() moves it to 'expired'",
            )

    def approve(self, proposal_id: str, note: str = "") -> RebalanceProposal:
        """``proposed -> approved`` (needs MANAGER on the scope, and not the proposer).

        Raises
        ------
        PermissionDenied
            The user is not a manager of the scope.
        MakerCheckerError
            The user proposed it (administrators too).
        TransitionError
            It is not ``proposed``.
        LifecycleError
            It is past ``expires_at``.
        """
        now = self.clock()
        with self.registry.mutation("proposal.approve", proposal_id) as m:
            p = self._begin(m, proposal_id, "proposal.approve", S.APPROVED)
            if p.created_by == m.user:
                raise MakerCheckerError(m.user, "approve", proposal_id)
            self._check_not_expired(p, "approve", now)
            return _advance(m, p, S.APPROVED, now, note)

    def reject(self, proposal_id: str, reason: str) -> RebalanceProposal:
        """``proposed -> rejected`` with a reason (needs MANAGER on the scope)."""
        self._need_text("reason", reason)
        now = self.clock()
        with self.registry.mutation("proposal.reject", proposal_id) as m:
            p = self._begin(m, proposal_id, "proposal.reject", S.REJECTED)
            return _advance(m, p, S.REJECTED, now, reason)

    def expire_due(self, now: datetime | None = None) -> builtins.list[RebalanceProposal]:
        """Expire every proposed or approved proposal past its ``expires_at``.

        One transaction per proposal. Only proposals this user may expire
        (TRADER on the scope) are considered, so a sweep by a user with a
        narrow role leaves the others for someone else.

        Parameters
        ----------
        now : datetime, optional
            Tz-naive UTC (default: the book's clock).

        Returns
        -------
        list of RebalanceProposal
            The proposals expired, by id.
        """
        now = self.clock() if now is None else _parse_ts("now", now)
        out = []
        for rec in self.registry.view().records("proposal", [str(S.PROPOSED), str(S.APPROVED)]):
            p = RebalanceProposal.from_record(rec.data)
            if p.expires_at is None or now <= _parse_ts("expires_at", p.expires_at):
                continue
            if not self.registry.can("proposal.expire", p.scope):
                continue
            with self.registry.mutation("proposal.expire", p.id) as m:
                p = self._begin(m, p.id, "proposal.expire", S.EXPIRED)
                out.append(_advance(m, p, S.EXPIRED, now, f"expired at {p.expires_at}"))
        return out

    def submit(self, proposal_id: str, broker: Broker, note: str = "") -> RebalanceProposal:
        """``approved -> submitted``: create the orders, move the transfers, hand over.

        In one transaction: an `Order` per trade line (entity kind
        ``"order"``, id ``"<proposal id>-<n>"``), each group transfer as a
        pair of ledger cash flows (source ``-amount``, destination
        ``+amount``), and the transition. After the commit the orders go
        to ``broker.submit``. A proposal without trade lines goes straight
        on to ``filled``.

        Raises
        ------
        InsufficientCashError
            A transfer's source could not fund it from its cash plus the
            proceeds of its own sales in this proposal (reference prices less
            estimated costs).
        LifecycleError
            It is past ``expires_at``.
        """
        if not isinstance(broker, Broker):
            raise ValidationError("broker", broker, "must be a pmkit.execution.Broker")
        now = self.clock()
        with self.registry.mutation("proposal.submit", proposal_id) as m:
            p = self._begin(m, proposal_id, "proposal.submit", S.SUBMITTED)
            self._check_not_expired(p, "submit", now)
            self._check_transfers_funded(m, p)
            orders = []
            for i, t in enumerate(p.trades, start=1):
                order = Order(
                    id=f"{p.id}-{i}",
                    portfolio=t.portfolio,
                    asset=t.asset,
                    quantity=float(t.quantity),
                    reference_price=float(t.price),
                    broker=broker.name,
                    proposal_id=p.id,
                    created_at=now.isoformat(),
                ).validated()
                if m.tx.get("order", order.id) is not None:
                    raise AlreadyExistsError("order", order.id)
                m.tx.put("order", order.id, str(order.status), order.to_record())
                m.note("order.create", order.id, None, order.to_record())
                orders.append(order)
            for tr in p.transfers:
                memo = f"{p.id}: transfer {tr.source} -> {tr.destination}"
                m.append_cash(tr.source, -float(tr.amount), ts=now, memo=memo)
                m.append_cash(tr.destination, float(tr.amount), ts=now, memo=memo)
            info = {**p.info, "orders": [o.id for o in orders], "broker": broker.name}
            p = _advance(m, p, S.SUBMITTED, now, note, info=info)
            if not orders:
                p = _advance(m, p, S.FILLED, now, "nothing to trade")
        if orders:
            broker.submit(orders)
        return p

    @staticmethod
    def _check_transfers_funded(m: Mutation, p: RebalanceProposal) -> None:
        out: dict[str, float] = {}
        for tr in p.transfers:
            out[tr.source] = out.get(tr.source, 0.0) + tr.amount
            out[tr.destination] = out.get(tr.destination, 0.0) - tr.amount
        for pid, net in out.items():
            if net <= 0:
                continue
            sales = sum(
                -t.quantity * t.price - t.estimated_cost
                for t in p.trades
                if t.portfolio == pid and t.quantity < 0
            )
            cash = m.tx.positions(pid).cash
            if cash + sales < net:
                raise InsufficientCashError(
                    "transfers",
                    net,
                    f"{pid!r} sends {net:,.2f} but has {cash:,.2f} cash and"
                    f" {sales:,.2f} from its sales in {p.id!r}",
                )

    def cancel(
        self, proposal_id: str, reason: str, broker: Broker | None = None
    ) -> RebalanceProposal:
        """``approved | submitted | partially_filled -> cancelled`` (needs TRADER).

        Open orders of the proposal are cancelled in the same transaction,
        then at ``broker`` after the commit (which must be the broker
        working them; it may be omitted when there are none). Fills booked
        before stay in the ledger.
        """
        self._need_text("reason", reason)
        now = self.clock()
        with self.registry.mutation("proposal.cancel", proposal_id) as m:
            p = self._begin(m, proposal_id, "proposal.cancel", S.CANCELLED)
            open_orders = []
            for oid in p.info.get("orders", []):
                rec = m.tx.get("order", oid)
                if rec is not None and rec.status in OPEN_ORDER_STATUSES:
                    open_orders.append(Order.from_record(rec.data))
            for o in open_orders:
                if broker is None or broker.name != o.broker:
                    raise ValidationError(
                        "broker",
                        None if broker is None else broker.name,
                        f"order {o.id!r} is open at {o.broker!r}: pass that broker",
                    )
                after = o.with_changes(status=OrderStatus.CANCELLED)
                m.tx.put("order", o.id, str(after.status), after.to_record())
                m.note("order.cancel", o.id, o.to_record(), after.to_record())
                m.publish("order.cancelled", portfolio=o.portfolio, order=o.id, proposal=p.id)
            p = _advance(m, p, S.CANCELLED, now, reason)
        for o in open_orders:
            assert broker is not None
            broker.cancel(o.id)
        return p

    @staticmethod
    def _need_text(name: str, value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValidationError(name, value, "must say why (a non-empty string)")
        check_text(value, name, max_length=MAX_MEMO_LENGTH)


register_fill_listener("proposal", apply_fill)
