"""The broker interface: orders, fills, and the one-transaction-per-fill recorder.

A `Broker` takes `Order` objects and reports `Fill` objects. Fills are
booked by a `FillRecorder`: each fill is one registry transaction holding the
ledger trade, the order's new state, the rebalance proposal's line and state,
their audit records and the events published after the commit. Positions
therefore always equal the replay of the ledger, fill by fill.

Designed for adapters to come:

* a real broker adapter implements `Broker.submit`, `Broker.cancel` and
  `Broker.open_orders` against the venue, and delivers executions either by
  pull (`Broker.poll`, drained by `ExecutionService.process`) or by push
  (`Broker.emit` to handlers registered with `Broker.on_fill`, which
  `ExecutionService.attach` wires to the recorder);
* delivery may be at-least-once: every fill carries an ``id`` (the venue's
  execution id) and the recorder books each id once, so a replayed stream
  after a reconnect or a restart books nothing twice;
* an execution schedule (TWAP, VWAP, ...) is a `Broker` wrapping another:
  it slices a parent order into child orders (``Order.parent_id``) and
  submits them to the inner broker over time; ``Order.info`` carries the
  schedule's and the venue's own fields.

Pre-trade limits (`pmkit.risk.controls`): a broker's ``submit`` stores new
orders through `check_orders` (stage ``"order"``), inside the transaction
that stores them, and every fill is checked again when the `FillRecorder`
books it (stage ``"fill"``). An override granted for soft limits (at a
proposal's approval, or by a manager submitting) is stored in
``Order.info["override"]`` and handed to the fill checks, so an approved
order is not refused again for what was approved.
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pmkit.codec import decode, encode
from pmkit.errors import ConfigError, NotFoundError, ValidationError
from pmkit.ledger import OPEN_QUANTITY_TOLERANCE
from pmkit.registry.controls import Override, ProposedTrade, enforce_pre_trade
from pmkit.validation import (
    MAX_AMOUNT,
    MAX_NAME_LENGTH,
    MAX_PRICE,
    MAX_QUANTITY,
    check_number,
    check_text,
    json_value,
)

if TYPE_CHECKING:
    from pmkit.registry import Mutation, Registry

__all__ = [
    "FILL_LISTENERS",
    "OPEN_ORDER_STATUSES",
    "AlreadyBooked",
    "Broker",
    "ExecutionService",
    "Fill",
    "FillRecorder",
    "Order",
    "OrderStatus",
    "accept_orders",
    "check_orders",
    "new_order_id",
    "notify_parents",
    "register_fill_listener",
]

FillHandler = Callable[["Fill"], Any]


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def new_order_id() -> str:
    """A fresh ``"ord-..."`` id for an order made outside a proposal."""
    return f"ord-{uuid.uuid4().hex[:12]}"


class OrderStatus(StrEnum):
    """States of an order at its broker."""

    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


#: Statuses in which an order may still fill.
OPEN_ORDER_STATUSES: tuple[str, ...] = (str(OrderStatus.OPEN), str(OrderStatus.PARTIALLY_FILLED))


def _finite(
    name: str,
    value: Any,
    *,
    positive: bool = False,
    nonneg: bool = False,
    limit: float = MAX_AMOUNT,
) -> float:
    """A finite, bounded Python float (`pmkit.validation.check_number`)."""
    return check_number(
        value, name, limit=limit, positive=positive, minimum=0.0 if nonneg else None
    )


def _plain_ts(name: str, ts: Any) -> datetime:
    if not isinstance(ts, datetime) or ts.tzinfo is not None:
        raise ValidationError(name, ts, "must be a tz-naive UTC datetime")
    return datetime(ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.microsecond)


@dataclass(frozen=True)
class Order:
    """An order to buy or sell units of one asset for one portfolio.

    Stored as entity kind ``"order"`` (status = `status`), so a broker over
    the same store sees it after a restart.

    Attributes
    ----------
    id : str
        Unique in the store (also the client order id sent to a venue).
    portfolio : str
    asset : str
    quantity : float
        Signed units, buy > 0.
    reference_price : float
        Price the order was sized at (currency per unit): the proposal's close.
    broker : str
        Name of the `Broker` that works it.
    proposal_id : str or None
        The rebalance proposal it executes (None for a stand-alone order).
    limit_price : float or None
        Worst acceptable execution price (None: at market).
    created_at : str
        ISO-8601 UTC.
    status : OrderStatus
    filled : float
        Signed units filled so far.
    fill_value : float
        Sum of ``units * execution price`` over the fills (signed like quantity).
    fees : float
        Fees paid on the fills (currency).
    fill_ids : list of str
        Ids of the fills booked, oldest first (each is booked once).
    parent_id : str or None
        Parent order when a schedule sliced this one from it.
    info : dict
        Adapter- or schedule-specific fields (venue order id, slices, ...).
    """

    id: str
    portfolio: str
    asset: str
    quantity: float
    reference_price: float
    broker: str
    proposal_id: str | None = None
    limit_price: float | None = None
    created_at: str = ""
    status: OrderStatus = OrderStatus.OPEN
    filled: float = 0.0
    fill_value: float = 0.0
    fees: float = 0.0
    fill_ids: list[str] = field(default_factory=list)
    parent_id: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def remaining(self) -> float:
        """Signed units still to fill."""
        return self.quantity - self.filled

    @property
    def is_open(self) -> bool:
        """Whether the order may still fill."""
        return str(self.status) in OPEN_ORDER_STATUSES

    @property
    def side(self) -> str:
        """``"buy"`` or ``"sell"``."""
        return "buy" if self.quantity > 0 else "sell"

    @property
    def average_price(self) -> float | None:
        """Average execution price of the fills (None before the first)."""
        return self.fill_value / self.filled if self.filled else None

    def validated(self) -> Order:
        """A checked copy with Python floats; raise `ValidationError` naming the field otherwise.

        Limits: `pmkit.validation.MAX_QUANTITY` units, `MAX_PRICE` per unit,
        ids and labels single-line text of at most `MAX_NAME_LENGTH` characters.
        """
        for name in ("id", "portfolio", "asset", "broker"):
            check_text(
                getattr(self, name),
                name,
                max_length=MAX_NAME_LENGTH,
                multiline=False,
                allow_empty=False,
            )
        quantity = _finite("quantity", self.quantity, limit=MAX_QUANTITY)
        if quantity == 0:
            raise ValidationError("quantity", self.quantity, "an order must be non-zero")
        ref = _finite("reference_price", self.reference_price, positive=True, limit=MAX_PRICE)
        limit_price = self.limit_price
        if limit_price is not None:
            limit_price = _finite("limit_price", limit_price, positive=True, limit=MAX_PRICE)
        try:
            status = OrderStatus(self.status)
        except ValueError as exc:
            raise ValidationError("status", self.status, "not an order status") from exc
        return replace(
            self,
            quantity=quantity,
            reference_price=ref,
            limit_price=limit_price,
            status=status,
            info=json_value(self.info, "info"),
        )

    def with_changes(self, **changes: Any) -> Order:
        """A copy with ``changes`` applied (orders are immutable values)."""
        return replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict (the store's ``data``), by the one codec `pmkit.codec`."""
        return encode(self)

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> Order:
        """Inverse of `to_record`."""
        return decode(cls, d)


@dataclass(frozen=True)
class Fill:
    """One execution of (part of) an order.

    Attributes
    ----------
    order_id : str
    quantity : float
        Signed units executed, same sign as the order.
    price : float
        Execution price per unit (currency), slippage included.
    fee : float
        Fee paid (currency, >= 0): the commission.
    ts : datetime
        Execution time, tz-naive UTC; the ledger entry's time.
    id : str
        Execution id, unique per order: the recorder books each once.
    reference_price : float or None
        The market price the execution was measured against (currency per unit).
    commission, spread, impact : float
        Cost breakdown (currency): ``commission == fee`` and ``spread +
        impact == |quantity| * |price - reference_price|`` for the paper broker.
    """

    order_id: str
    quantity: float
    price: float
    fee: float
    ts: datetime
    id: str
    reference_price: float | None = None
    commission: float = 0.0
    spread: float = 0.0
    impact: float = 0.0

    @property
    def cash_effect(self) -> float:
        """Change in the portfolio's cash: ``-(quantity * price) - fee`` (currency)."""
        return -(self.quantity * self.price) - self.fee

    @property
    def cost(self) -> float:
        """Commission + spread + impact (currency)."""
        return self.commission + self.spread + self.impact

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict (``ts`` as ISO text), by the one codec `pmkit.codec`."""
        return encode(self)

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> Fill:
        """Inverse of `to_record`."""
        return decode(cls, d)


class Broker(ABC):
    """Where orders go and fills come from.

    Subclasses implement `submit`, `cancel` and `open_orders`, and report
    executions with `emit` (push to `on_fill` handlers and queue for `poll`).
    A broker never writes the ledger by itself except through a
    `FillRecorder`, so every fill is one transaction wherever it comes from.
    """

    #: Name stored on the orders it works (``Order.broker``).
    name: str = "broker"

    def __init__(self) -> None:
        self._handlers: list[FillHandler] = []
        self._pending: list[Fill] = []

    def _queues(self) -> tuple[list[FillHandler], list[Fill]]:
        # Subclasses that forget super().__init__() still deliver fills.
        if "_handlers" not in self.__dict__:
            self._handlers, self._pending = [], []
        return self._handlers, self._pending

    @abstractmethod
    def submit(self, orders: Sequence[Order]) -> list[Order]:
        """Accept ``orders`` for execution; returns them as the broker holds them.

        Must be idempotent per order id: a restart may hand the same orders again.
        """

    @abstractmethod
    def cancel(self, order_id: str) -> Order:
        """Cancel an order's unfilled part; returns the order after the request.

        Cancelling an order that is already cancelled returns it unchanged.
        """

    @abstractmethod
    def open_orders(self) -> list[Order]:
        """Orders that may still fill, oldest first."""

    # -- fill delivery ---------------------------------------------------------------
    def on_fill(self, handler: FillHandler) -> Callable[[], None]:
        """Call ``handler(fill)`` for every fill from now on; returns an unsubscribe function."""
        handlers, _ = self._queues()
        handlers.append(handler)

        def cancel() -> None:
            if handler in handlers:
                handlers.remove(handler)

        return cancel

    def emit(self, fill: Fill) -> None:
        """Report one execution: queue it for `poll` and push it to the handlers."""
        handlers, pending = self._queues()
        pending.append(fill)
        for handler in list(handlers):
            handler(fill)

    def poll(self) -> list[Fill]:
        """Fills reported since the last poll, oldest first (the queue is emptied)."""
        _, pending = self._queues()
        out = list(pending)
        pending.clear()
        return out


def check_orders(
    m: Mutation, orders: Sequence[Order], *, override: Override | None = None
) -> list[Order]:
    """Run the pre-trade controls on new orders inside the transaction that stores them.

    Each portfolio's orders are checked together against its limits (stage
    ``"order"``, at their reference prices). Cash is not: a broker may work an
    order as cash arrives, and every fill is guarded by the ledger. A broker
    adapter calls this in its ``submit`` before storing orders.

    Parameters
    ----------
    m : Mutation
        The submission's write context.
    orders : sequence of Order
        Validated, not yet stored. ``info["override"]`` is set by pmkit only.
    override : pmkit.risk.controls.Override, optional
        The submitting manager's permission to exceed soft limits (audited).

    Returns
    -------
    list of Order
        The orders, those of a portfolio whose soft limits were overridden
        carrying the override in ``info["override"]``.

    Raises
    ------
    LimitBreachError
        A hard limit, or a soft one without ``override``.
    ValidationError
        An order names an override of its own (only the workflow sets one).
    """
    by_portfolio: dict[str, list[Order]] = {}
    for o in orders:
        if "override" in o.info:
            raise ValidationError(
                "info.override", o.info["override"], "set by pmkit: pass override= to submit"
            )
        by_portfolio.setdefault(o.portfolio, []).append(o)
    out: dict[str, Order] = {}
    for pid, group in by_portfolio.items():
        trades = [ProposedTrade(o.asset, o.quantity, o.reference_price) for o in group]
        soft = enforce_pre_trade(m, pid, trades, stage="order", override=override)
        for o in group:
            if soft and override is not None:
                limits = tuple(dict.fromkeys(b.limit for b in soft))
                granted = Override(override.reason, override.by or m.user, limits, "order")
                o = o.with_changes(info={**o.info, "override": granted.to_record()})
            out[o.id] = o
    return [out[o.id] for o in orders]


def accept_orders(
    registry: Registry,
    broker: str,
    orders: Sequence[Order],
    *,
    override: Override | None = None,
    clock: Callable[[], datetime] = _utcnow,
    check: Callable[[Order], None] | None = None,
) -> list[Order]:
    """``submit`` for a broker whose orders live in the store: store the new, adopt the stored.

    Each order is validated (``check`` adds the broker's own rules). Orders
    already stored (a `ProposalBook` stores a proposal's before handing them
    over) are returned as stored when their terms agree; the new ones are
    stored in one transaction after the pre-trade controls (`check_orders`),
    each audited and published as ``order.open``.

    Raises
    ------
    ValidationError
        Not an `Order`, another broker's order, or an id stored with different terms.
    AlreadyExistsError
        An id another desk's order holds.
    LimitBreachError
        The new orders would breach a pre-trade limit; nothing is stored.
    """
    from pmkit.errors import AlreadyExistsError

    fresh: list[Order] = []
    out: list[Order] = []
    view = registry.view()  # one view: it memoizes what the user may see
    for o in orders:
        if not isinstance(o, Order):
            raise ValidationError("orders", type(o).__name__, "must be pmkit.execution.Order")
        o = o.validated()
        if o.broker != broker:
            raise ValidationError("broker", o.broker, f"this broker is {broker!r}")
        if check is not None:
            check(o)
        rec = view.record("order", o.id)
        if rec is None:
            fresh.append(o)
            continue
        stored = Order.from_record(rec.data)
        terms = ("portfolio", "asset", "quantity", "broker", "proposal_id", "limit_price")
        if any(getattr(stored, k) != getattr(o, k) for k in terms):
            raise ValidationError("id", o.id, "already stored with different terms")
        out.append(stored)
    if fresh:
        with registry.mutation("order.submit", fresh[0].id) as m:
            for o in fresh:
                m.require("ledger.trade", o.portfolio)
                m.portfolio(o.portfolio)  # NotFoundError
                if m.tx.get("order", o.id) is not None:  # another desk's id: never overwrite
                    raise AlreadyExistsError("order", o.id)
            for i, o in enumerate(check_orders(m, fresh, override=override)):
                o = o.with_changes(status=OrderStatus.OPEN,
                                   created_at=o.created_at or clock().isoformat())
                record = o.to_record()
                m.tx.put("order", o.id, str(o.status), record)
                if i == 0:
                    m.record(None, record)
                else:
                    m.note("order.submit", o.id, None, record)
                m.publish("order.open", portfolio=o.portfolio, order=o.id)
                out.append(o)
    return out


def _json_checked(value: Any, name: str) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, value, f"must be JSON-serialisable: {exc}") from exc


#: Called inside a fill's transaction for orders that belong to a parent record, by the
#: parent's kind: ``listener(ctx, order_after, fill, now=)``. Execution sits below the
#: services that create orders (rebalance), so they register here instead of being imported.
FILL_LISTENERS: dict[str, Callable[..., Any]] = {}


def register_fill_listener(kind: str, listener: Callable[..., Any]) -> None:
    """Have ``listener(ctx, order, fill, now=)`` book fills of orders whose parent is ``kind``.

    Parameters
    ----------
    kind : str
        The parent record's kind (``"proposal"`` for `Order.proposal_id`,
        ``"parent"`` for `Order.parent_id`).
    listener : callable
        Runs inside the fill's write context, so the parent's update
        commits (or rolls back) with the fill.
    """
    FILL_LISTENERS[kind] = listener


#: Why a fill cannot be booked without a parent kind's listener (what to import).
_LISTENER_NEEDS = {
    "proposal": ("order.proposal_id", "fills of proposal orders update the proposal: import "
                 "pmkit.rebalance (which registers its fill listener) before recording them"),
    "parent": ("order.parent_id", "fills of child orders update their parent: import "
               "pmkit.execution.engine"),
}


def notify_parents(m: Mutation, order: Order, fill: Fill, *, now: datetime) -> None:
    """Book ``fill`` of ``order`` on the records it belongs to, inside the fill's transaction.

    Calls the `FILL_LISTENERS` of the order's proposal (`Order.proposal_id`)
    and parent (`Order.parent_id`). A missing listener raises `ConfigError`,
    which rolls the fill back: nothing is booked half-way.
    """
    for kind, owner in (("proposal", order.proposal_id), ("parent", order.parent_id)):
        if owner is None:
            continue
        listener = FILL_LISTENERS.get(kind)
        if listener is None:
            field, reason = _LISTENER_NEEDS[kind]
            raise ConfigError(field, owner, reason)
        listener(m, order, fill, now=now)


class AlreadyBooked(Exception):
    """Raised inside the fill transaction to roll it back when the fill is a duplicate."""


class FillRecorder:
    """Books fills: one registry transaction per fill.

    The transaction appends the ledger trade (memo = order id), updates the
    order record, updates the proposal's trade line and state when the order
    belongs to one (`pmkit.rebalance.workflow.apply_fill`), writes their
    audit records and publishes ``order.filled`` / ``order.partially_filled``
    and ``proposal.*`` events after the commit.

    Parameters
    ----------
    registry : Registry
        Session whose user books the fills (needs TRADER on the portfolios).
    clock : callable, optional
        ``clock() -> datetime`` (tz-naive UTC) for proposal history stamps.

    Notes
    -----
    A fill on a cancelled order (a venue that executed before it saw the
    cancel) is still booked: the ledger must hold what was executed. The
    order and its proposal stay cancelled.
    """

    def __init__(self, registry: Registry, *, clock: Callable[[], datetime] | None = None) -> None:
        self.registry = registry
        self.clock = clock or _utcnow

    def is_booked(self, fill: Fill) -> bool:
        """Whether a fill with this id is already in the order's record."""
        rec = self.registry.view().record("order", fill.order_id)
        return rec is not None and fill.id in rec.data.get("fill_ids", [])

    def record(self, fill: Fill) -> Order | None:
        """Book ``fill``; returns the order after it, or None when it was booked before.

        Raises
        ------
        NotFoundError
            No such order.
        ValidationError
            Bad fill fields, a fill against the order's side, or more units
            than the order has left.
        LimitBreachError
            The fill would breach a pre-trade limit (stage ``"fill"``) that
            the order's override, if any, does not cover.
        TransitionError
            The order is filled or rejected, or its proposal is in no fill state.
        """
        if self.is_booked(fill):
            return None
        try:
            with self.registry.mutation("order.fill", fill.order_id) as m:
                return self.record_in(m, fill)
        except AlreadyBooked:
            return None

    def record_in(self, m: Mutation, fill: Fill, *, primary: bool = True) -> Order:
        """Book ``fill`` inside an open mutation (for callers composing one transaction).

        A fill whose id is already booked raises `AlreadyBooked`, which rolls
        the caller's transaction back; check `is_booked` first. With
        ``primary=False`` the fill's audit record (``order.fill``, before and
        after images of the order) is a further record of the commit, so one
        transaction can book several fills, each audited.
        """
        from pmkit.errors import TransitionError

        rec = m.tx.get("order", fill.order_id)
        if rec is None:
            raise NotFoundError("order", fill.order_id)
        order = Order.from_record(rec.data)
        if fill.id in order.fill_ids:
            raise AlreadyBooked
        if order.status not in (*OPEN_ORDER_STATUSES, OrderStatus.CANCELLED):
            raise TransitionError(order.id, str(order.status), "fill", ())
        fill = self._check(order, fill)
        m.append_trade(
            order.portfolio,
            order.asset,
            float(fill.quantity),
            float(fill.price),
            fee=float(fill.fee),
            ts=fill.ts,
            memo=order.id,
            override=Override.from_record(order.info.get("override")),
            stage="fill",
        )
        filled = order.filled + fill.quantity
        done = abs(order.quantity - filled) <= OPEN_QUANTITY_TOLERANCE * max(1.0, abs(filled))
        if order.status == OrderStatus.CANCELLED:
            status = OrderStatus.CANCELLED
        else:
            status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        after = order.with_changes(
            status=status,
            filled=order.quantity if done else filled,
            fill_value=order.fill_value + fill.quantity * fill.price,
            fees=order.fees + fill.fee,
            fill_ids=[*order.fill_ids, fill.id],
        )
        after_record = _json_checked(after.to_record(), "order")
        m.tx.put("order", order.id, str(status), after_record)
        image = {**after_record, "fill": fill.to_record()}
        if primary:
            m.record(rec.data, image)
        else:
            m.note("order.fill", order.id, rec.data, image)
        m.publish(
            f"order.{status}",
            portfolio=order.portfolio,
            order=order.id,
            proposal=order.proposal_id,
            asset=order.asset,
            quantity=fill.quantity,
            price=fill.price,
            fee=fill.fee,
            filled=after.filled,
            remaining=after.remaining,
        )
        notify_parents(m, after, fill, now=self.clock())
        return after

    @staticmethod
    def _check(order: Order, fill: Fill) -> Fill:
        """``fill`` checked, with Python floats and a plain datetime (JSON-ready)."""
        q = _finite("quantity", fill.quantity, limit=MAX_QUANTITY)
        ref = fill.reference_price
        if ref is not None:
            ref = _finite("reference_price", ref, limit=MAX_PRICE)
        clean = replace(
            fill,
            quantity=q,
            price=_finite("price", fill.price, positive=True, limit=MAX_PRICE),
            fee=_finite("fee", fill.fee, nonneg=True),
            ts=_plain_ts("ts", fill.ts),
            reference_price=None
            if ref is None
            else _finite("reference_price", ref, limit=MAX_PRICE),
            commission=_finite("commission", fill.commission),
            spread=_finite("spread", fill.spread),
            impact=_finite("impact", fill.impact),
        )
        check_text(fill.id, "id", max_length=MAX_NAME_LENGTH, multiline=False, allow_empty=False)
        if q == 0 or (q > 0) != (order.quantity > 0):
            raise ValidationError("quantity", q, f"must be non-zero, a {order.side} like the order")
        slack = OPEN_QUANTITY_TOLERANCE * max(1.0, abs(order.quantity))
        if abs(q) > abs(order.remaining) + slack:
            raise ValidationError(
                "quantity", q, f"order {order.id!r} has only {order.remaining:g} units left"
            )
        return clean


class ExecutionService:
    """Connects a broker's fill delivery to a `FillRecorder`.

    Parameters
    ----------
    registry : Registry
        Session that books the fills.
    broker : Broker

    Examples
    --------
    Pull: ``service.process()`` after the broker has had time to execute.
    Push: ``service.attach()`` once, then every fill the broker emits is booked.
    """

    def __init__(self, registry: Registry, broker: Broker) -> None:
        self.registry = registry
        self.broker = broker
        self.recorder = FillRecorder(registry)
        self._detach: Callable[[], None] | None = None

    def process(self) -> list[Order]:
        """Book every fill the broker queued since the last call; returns the orders booked."""
        booked = [self.recorder.record(f) for f in self.broker.poll()]
        return [o for o in booked if o is not None]

    def attach(self) -> None:
        """Book fills as the broker pushes them (idempotent)."""
        if self._detach is None:
            self._detach = self.broker.on_fill(self.recorder.record)

    def detach(self) -> None:
        """Stop booking pushed fills."""
        if self._detach is not None:
            self._detach()
            self._detach = None
