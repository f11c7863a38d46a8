"""The execution engine: parent orders worked through child orders over a session.

An `ExecutionEngine` is a `Broker` wrapping others (its *venues*). A parent
order handed to it (an approved proposal's order through
`ProposalBook.submit`, or one placed with `ExecutionEngine.place`) is
planned when a session starts (`ExecutionEngine.start`): its algorithm
(TWAP, VWAP, Implementation Shortfall, POV, or ``"smart"``: chosen by the
`SmartRouter`) gives a schedule of cumulative targets per interval, computed
for every parent at once by the batched JAX schedules of
`pmkit.core.schedules`. Then, driven by a clock (`ExecutionEngine.on_tick`
at the end of each interval: the simulated session's ticks, or a scheduler
on the wall clock for a real broker):

1. the children still open from the interval before are cancelled at their
   venues (cancel/replace: what they did not fill is part of the new child);
2. the new child is what the schedule is behind by (POV: the participation
   rate times the interval's realized volume), in whole lots, capped at
   ``max_participation`` of the interval's volume; none while the price is
   beyond the parent's limit (a *limit-price guard*; the child carries the
   limit too);
3. in one transaction the children are stored (pre-trade controls at stage
   ``"order"``, with the parent's override), the parent's progress is
   updated and audited, and events are queued; after the commit the
   children go to their venues' ``submit`` (idempotent per child id);
4. every child fill is booked by the `FillRecorder`: in the same
   transaction as the ledger trade the parent's filled quantity, value,
   costs and state move (`book_child_fill`), and its proposal's line, if
   any.

Nothing lives only in memory: a new engine over the same store carries on
from the stored plans (`ExecutionEngine.recover` re-sends open children,
which venues ignore when they have them). Child ids are
``"<parent>.<n>"`` (``"<parent>.<n>.<venue>"`` with several venues), ``n``
counting the parent's slices; a slice and the plan's progress commit
together, so a replayed interval sends nothing twice.

Events (routed to the parent's portfolio): ``execution.planned``,
``execution.slice``, ``execution.alert`` (``kind``: ``behind`` when the
fills trail the schedule by more than ``behind`` of the order,
``price_band`` when the price moved more than ``price_band`` from arrival,
``held`` while the limit guard holds the order, ``child_rejected``),
``execution.paused``, ``execution.resumed``, ``execution.done``, and the
``order.*`` events of parents and children.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from pmkit.codec import decode, encode
from pmkit.errors import (
    NotFoundError,
    PermissionDenied,
    PmkitError,
    StoreError,
    TransitionError,
    ValidationError,
)
from pmkit.execution.broker import (
    OPEN_ORDER_STATUSES,
    Broker,
    Fill,
    FillRecorder,
    Order,
    OrderStatus,
    accept_orders,
    check_orders,
    new_order_id,
    notify_parents,
    register_fill_listener,
)
from pmkit.execution.costs import CostModel
from pmkit.execution.plan import ALGORITHMS, ChildFill, ExecutionPlan, plan_of
from pmkit.execution.router import SMART_ORDER, URGENCIES, OrderFeatures, Venue
from pmkit.execution.session import IntradaySession, Tick
from pmkit.ledger import OPEN_QUANTITY_TOLERANCE
from pmkit.registry.controls import Override
from pmkit.validation import MAX_NAME_LENGTH, check_number, check_text, json_value

if TYPE_CHECKING:
    from pmkit.registry import Mutation, Registry

__all__ = ["END_OF_DAY", "SMART", "ExecutionEngine", "RunResult", "book_child_fill",
           "read_parents", "venue_spec"]

#: Algorithm name that asks the router to choose (the design notes' "SMART_ORDER").
SMART = SMART_ORDER
#: What happens to a parent's residual at the session's end.
END_OF_DAY: tuple[str, ...] = ("cancel", "carry")
#: Default risk aversion of Implementation Shortfall (per currency).
DEFAULT_RISK_AVERSION = 1e-6
#: Default participation rate of POV (fraction of the interval's volume).
DEFAULT_PARTICIPATION = 0.1


def _done(quantity: float, filled: float) -> bool:
    return abs(quantity - filled) <= OPEN_QUANTITY_TOLERANCE * max(1.0, abs(filled))


def _due(plan: ExecutionPlan, parent: Order, interval: int) -> float:
    """Units (unsigned) the parent should have filled after ``interval``.

    The schedule's target; for POV, the participation rate times the market
    volume seen over the intervals worked, at most the parent's quantity.
    """
    if plan.algorithm == "pov":
        rate = float(plan.params.get("participation", DEFAULT_PARTICIPATION))
        return min(rate * plan.market_volume, abs(parent.quantity))
    return abs(plan.target(interval))


def _side(x: float) -> float:
    return 1.0 if x > 0 else -1.0


@dataclass(frozen=True)
class _Slice:
    """A parent's work at one tick, decided before anything is stored."""

    parent: Order
    plan: ExecutionPlan
    after: ExecutionPlan
    children: list[Order]
    interval: int
    price: float
    volume: float
    quantity: float  # signed units asked of the venues this interval
    new_alerts: tuple[str, ...]
    rejected: tuple[str, ...]  # children the venues rejected since the last tick


@dataclass
class RunResult:
    """What `ExecutionEngine.run` did.

    Attributes
    ----------
    fills : list of Fill
        Child fills booked, in booking order.
    children : list of Order
        Child orders sent.
    failures : list
        Venue fills refused (`pmkit.execution.paper.OrderFailure`).
    alerts : list of dict
        Alerts raised (``execution.alert`` payloads).
    """

    fills: list[Fill] = field(default_factory=list)
    children: list[Order] = field(default_factory=list)
    failures: list[Any] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


# -- booking a child's fill on its parent (runs inside the fill's transaction) -----------
def _summary(order: Order, plan: ExecutionPlan | None) -> dict[str, Any]:
    out = {"id": order.id, "status": str(order.status), "filled": order.filled,
           "fill_value": order.fill_value, "fees": order.fees}
    if plan is not None:
        out |= {"state": plan.state, "next_interval": plan.next_interval,
                "open_children": list(plan.open_children), "alerts": list(plan.alerts)}
    return out


def book_child_fill(m: Mutation, child: Order, fill: Fill, *, now: datetime) -> Order:
    """Move a child's parent by ``fill`` inside the fill's transaction.

    Registered as the ``"parent"`` fill listener, so `FillRecorder` calls
    it for every fill of an order with a `Order.parent_id`. The child keeps
    the fill's details (``info["fills"]``, `ChildFill` records) and the
    parent its totals; the parent's proposal line moves too.

    Returns
    -------
    Order
        The parent after the fill.
    """
    rec = m.tx.get("order", child.parent_id)
    if rec is None:
        raise NotFoundError("order", child.parent_id)
    parent = Order.from_record(rec.data)
    plan = plan_of(parent)
    market = fill.reference_price if fill.reference_price is not None else fill.price
    detail = ChildFill(child=child.id, interval=int(child.info.get("interval", 0)),
                       venue=child.broker, ts=fill.ts.isoformat(), quantity=fill.quantity,
                       price=fill.price, market_price=float(market), fee=fill.fee,
                       spread=fill.spread, impact=fill.impact)
    child_after = child.with_changes(
        info={**child.info, "fills": [*child.info.get("fills", []), encode(detail)]})
    m.tx.put("order", child.id, str(child_after.status), child_after.to_record())
    filled = parent.filled + fill.quantity
    done = _done(parent.quantity, filled)
    if parent.status == OrderStatus.CANCELLED:
        status = OrderStatus.CANCELLED
    else:
        status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
    info = dict(parent.info)
    if plan is not None:
        plan = plan.with_changes(
            market_fill_value=plan.market_fill_value + fill.quantity * float(market),
            spread_paid=plan.spread_paid + fill.spread,
            impact_paid=plan.impact_paid + fill.impact,
            open_children=tuple(c for c in plan.open_children
                                if c != child.id or child_after.is_open),
        )
        if done:
            plan = plan.with_changes(state="done", end_reason="filled",
                                     alerts=tuple(a for a in plan.alerts if a != "behind"))
        info["execution"] = plan.to_record()
    after = parent.with_changes(status=status, filled=parent.quantity if done else filled,
                                fill_value=parent.fill_value + fill.quantity * fill.price,
                                fees=parent.fees + fill.fee, info=info)
    m.tx.put("order", parent.id, str(status), after.to_record())
    m.note("execution.fill", parent.id, _summary(parent, plan_of(parent)),
           _summary(after, plan) | {"fill": fill.id, "child": child.id})
    m.publish(f"order.{status}", portfolio=parent.portfolio, order=parent.id, child=child.id,
              proposal=parent.proposal_id, asset=parent.asset, quantity=fill.quantity,
              price=fill.price, fee=fill.fee, filled=after.filled, remaining=after.remaining)
    notify_parents(m, after, fill, now=now)  # its proposal's line (a parent has no parent)
    return after


register_fill_listener("parent", book_child_fill)


def read_parents(registry: Registry, *, broker: str | None = None, with_fills: bool = False,
                 status: Sequence[str] | None = None) -> list[Order]:
    """Parent orders (orders with an execution plan, or of ``broker``) the user may view.

    Parameters
    ----------
    registry : Registry
        Read through its user's scoped view: a desk sees its own parents only.
    broker : str, optional
        Only parents of this engine (then unplanned ones too).
    with_fills : bool, default False
        Fill each plan's ``fills`` from its children (for analysis and charts).
    status : sequence of str, optional
        Only these order statuses.

    Returns
    -------
    list of Order
        Oldest first.
    """
    view = registry.view()
    recs = view.records("order", None if status is None else list(status))
    def wanted(data: Mapping[str, Any]) -> bool:
        if broker is not None:
            return data.get("broker") == broker
        return "execution" in data.get("info", {})

    parents = [Order.from_record(r.data) for r in recs if wanted(r.data)]
    parents.sort(key=lambda o: (o.created_at, o.id))
    if not with_fills:
        return parents
    by_parent: dict[str, list[ChildFill]] = {}
    for r in view.records("order"):
        pid = r.data.get("parent_id")
        if pid is not None:
            for f in r.data.get("info", {}).get("fills", []):
                by_parent.setdefault(pid, []).append(decode(ChildFill, f))
    out = []
    for p in parents:
        plan = plan_of(p)
        if plan is not None:
            fills = sorted(by_parent.get(p.id, []), key=lambda f: (f.ts, f.child))
            stored = plan.to_record() | {"fills": [encode(f) for f in fills]}
            p = p.with_changes(info={**p.info, "execution": stored})
        out.append(p)
    return out


# -- schedules -----------------------------------------------------------------------------
def ac_impact(price: float, adv: float, cost_model: CostModel) -> tuple[float, float]:
    """Almgren–Chriss ``(eta, gamma)`` by the paper's rule of thumb, per day.

    Almgren & Chriss (2000), section 5: trading 1 % of the daily volume
    costs one bid-ask spread of temporary impact, and 10 % moves the price
    permanently by one spread. The spread is ``2 * half_spread_bps`` of
    ``price``; the daily volume ``adv / price`` units.

    Returns
    -------
    eta : float
        Currency per unit per (unit per day).
    gamma : float
        Currency per unit per unit.
    """
    spread = 2.0 * cost_model.half_spread_bps / 1e4 * price
    units = adv / price
    return spread / (0.01 * units), spread / (0.1 * units)


def venue_spec(broker: Broker) -> Venue:
    """How the router sees a broker: its `Venue`, or one read off a paper broker's terms.

    A `SimulatedVenue` carries its own; a paper broker's fee is its cost
    model's commission and its liquidity its participation cap (all the
    volume without one); any other broker is a venue with no known fee or
    latency taking all the volume.
    """
    spec = getattr(broker, "venue", None)
    if isinstance(spec, Venue):
        return spec
    model = getattr(broker, "cost_model", None)
    fee = float(model.commission_bps) if model is not None else 0.0
    share = getattr(broker, "participation", None)
    return Venue(broker.name, fee_bps=fee, latency_ms=0.0,
                 liquidity=1.0 if share is None else min(float(share), 1.0),
                 impact_coefficient=float(model.impact_coefficient) if model is not None
                 else 0.5)


def _cumulative(trades: np.ndarray) -> np.ndarray:
    return np.cumsum(np.asarray(trades, dtype=np.float64), axis=-1)


class ExecutionEngine(Broker):
    """Works parent orders through child orders at venues (see the module docstring).

    Parameters
    ----------
    registry : Registry
        Session that acts (needs TRADER on the portfolios).
    venues : Broker or sequence of Broker
        Where children go: the paper broker, simulated venues, a real broker.
    router : pmkit.execution.router.SmartRouter, optional
        Chooses the algorithm of ``"smart"`` parents (and of parents naming
        none, when given) and splits children across ``venues`` by expected
        cost when there are several.
    name : str, default "algo"
        The broker name parents carry (`Order.broker`).
    algorithm : str, default "twap"
        Algorithm of parents naming none (without a router).
    max_participation : float, default 0.25
        No child exceeds this fraction of its interval's volume.
    end_of_day : {"cancel", "carry"}, default "cancel"
        Residual handling of parents naming none.
    price_band : float, default 0.02
        Alert when the price moves more than this fraction from arrival.
    behind : float, default 0.1
        Alert when fills trail the schedule by more than this fraction of the order.
    cost_model : CostModel, optional
        For the Implementation Shortfall impact parameters and pre-trade
        estimates; default the first venue's, else `CostModel()`.
    clock : callable, optional
        ``clock() -> datetime`` (tz-naive UTC).
    """

    def __init__(
        self,
        registry: Registry,
        venues: Broker | Sequence[Broker],
        *,
        router: Any = None,
        name: str = "algo",
        algorithm: str = "twap",
        max_participation: float = 0.25,
        end_of_day: str = "cancel",
        price_band: float = 0.02,
        behind: float = 0.1,
        cost_model: CostModel | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(venues, Broker):
            venues = [venues]
        venues = list(venues)
        if not venues or not all(isinstance(v, Broker) for v in venues):
            raise ValidationError("venues", venues, "must be one or more pmkit.execution.Broker")
        names = [v.name for v in venues]
        if len(set(names)) != len(names) or name in names:
            raise ValidationError("venues", names, f"need distinct names other than {name!r}")
        check_text(name, "name", max_length=MAX_NAME_LENGTH, multiline=False, allow_empty=False)
        if algorithm not in (*ALGORITHMS, SMART):
            raise ValidationError("algorithm", algorithm, f"must be one of {(*ALGORITHMS, SMART)}")
        if algorithm == SMART and router is None:
            raise ValidationError("router", None, "algorithm 'smart' needs a router")
        if end_of_day not in END_OF_DAY:
            raise ValidationError("end_of_day", end_of_day, f"must be one of {END_OF_DAY}")
        self.registry = registry
        self.venues = {v.name: v for v in venues}
        self.router = router
        self.name = name
        self.algorithm = algorithm
        self.max_participation = check_number(max_participation, "max_participation",
                                              limit=1.0, positive=True)
        self.end_of_day = end_of_day
        self.price_band = check_number(price_band, "price_band", limit=10.0, positive=True)
        self.behind = check_number(behind, "behind", limit=1.0, positive=True)
        self.cost_model = cost_model or getattr(venues[0], "cost_model", None) or CostModel()
        self.recorder = FillRecorder(registry, clock=clock)
        self.clock = self.recorder.clock
        self._lots: dict[str, float] = {}

    def __repr__(self) -> str:
        return (f"ExecutionEngine(name={self.name!r}, venues={list(self.venues)},"
                f" user={self.registry.user!r})")

    # -- reading ---------------------------------------------------------------------------
    def _load(self, order_id: str) -> Order:
        rec = self.registry.view().record("order", order_id)
        if rec is None:
            raise NotFoundError("order", order_id)
        return Order.from_record(rec.data)

    def open_orders(self) -> list[Order]:
        """Open parents of this engine the user may view, oldest first."""
        return [o for o in self.parents(status=OPEN_ORDER_STATUSES) if o.is_open]

    def parents(self, *, with_fills: bool = False, status: Sequence[str] | None = None
                ) -> list[Order]:
        """Parent orders of this engine the user may view, oldest first (`read_parents`)."""
        return read_parents(self.registry, broker=self.name, with_fills=with_fills,
                            status=status)

    def children(self, parent_id: str) -> list[Order]:
        """Child orders of a parent, in the order they were sent."""
        self._load(parent_id)  # NotFoundError when not visible
        kids = [Order.from_record(r.data) for r in self.registry.view().records("order")
                if r.data.get("parent_id") == parent_id]
        return sorted(kids, key=lambda o: (int(o.info.get("interval", 0)), o.id))

    # -- placing -----------------------------------------------------------------------------
    def place(
        self,
        portfolio: str,
        asset: str,
        quantity: float,
        *,
        reference_price: float,
        algorithm: str | None = None,
        params: Mapping[str, Any] | None = None,
        limit_price: float | None = None,
        end_of_day: str | None = None,
        strategy: str | None = None,
        urgency: str | None = None,
        id: str | None = None,
        override: Override | None = None,
    ) -> Order:
        """Place a parent order directly (one transaction; pre-trade controls apply).

        Parameters
        ----------
        portfolio, asset : str
        quantity : float
            Signed units (buy > 0).
        reference_price : float
            The decision price it was sized at (currency per unit).
        algorithm : str, optional
            ``"twap"``, ``"vwap"``, ``"is"``, ``"pov"`` or ``"smart"``.
        params : mapping, optional
            ``risk_aversion`` (IS, per currency), ``participation`` (POV,
            fraction), ``horizon_fraction`` (share of the session to finish in).
        limit_price : float, optional
            Worst price any child may fill at.
        end_of_day : {"cancel", "carry"}, optional
        strategy : str, optional
            Label for transaction-cost analysis by strategy.
        urgency : {"low", "normal", "high"}, optional
            What the router weighs for ``"smart"`` (default ``"normal"``).
        id : str, optional
            Client order id (default a fresh one).
        override : Override, optional
            A manager's permission to exceed soft limits.
        """
        info: dict[str, Any] = {}
        if algorithm is not None:
            info["algorithm"] = algorithm
        if params is not None:
            if not isinstance(params, Mapping):
                raise ValidationError("params", params, "must be a mapping")
            info["params"] = dict(params)
        if end_of_day is not None:
            info["end_of_day"] = end_of_day
        if strategy is not None:
            info["strategy"] = strategy
        if urgency is not None:
            info["urgency"] = urgency
        order = Order(id=id or new_order_id(), portfolio=portfolio, asset=asset,
                      quantity=quantity, reference_price=reference_price, broker=self.name,
                      limit_price=limit_price, info=info)
        return self.submit([order], override=override)[0]

    def _check_terms(self, o: Order) -> None:
        algorithm = o.info.get("algorithm")
        if algorithm is not None and algorithm not in (*ALGORITHMS, SMART):
            raise ValidationError("algorithm", algorithm, f"must be one of {(*ALGORITHMS, SMART)}")
        if algorithm == SMART and self.router is None:
            raise ValidationError("algorithm", algorithm, "this engine has no router")
        eod = o.info.get("end_of_day")
        if eod is not None and eod not in END_OF_DAY:
            raise ValidationError("end_of_day", eod, f"must be one of {END_OF_DAY}")
        params = o.info.get("params", {})
        if not isinstance(params, Mapping):
            raise ValidationError("params", params, "must be a mapping")
        for key, (limit, positive) in {"risk_aversion": (1.0, False),
                                       "participation": (1.0, True),
                                       "horizon_fraction": (1.0, True)}.items():
            if key in params:
                check_number(params[key], f"params.{key}", limit=limit, positive=positive,
                             minimum=None if positive else 0.0)
        unknown = set(params) - {"risk_aversion", "participation", "horizon_fraction"}
        if unknown:
            raise ValidationError("params", sorted(unknown), "unknown algorithm parameters")
        if "urgency" in o.info and o.info["urgency"] not in URGENCIES:
            raise ValidationError("urgency", o.info["urgency"], f"must be one of {URGENCIES}")
        if "strategy" in o.info:
            check_text(o.info["strategy"], "strategy", max_length=MAX_NAME_LENGTH,
                       multiline=False, allow_empty=False)

    def submit(self, orders: Sequence[Order], *, override: Override | None = None
               ) -> list[Order]:
        """Accept parent orders: new ones are stored (one transaction), stored ones adopted.

        Orders a `ProposalBook` created are already stored: they are planned
        at the next `start`. Handing an order again is a no-op.

        Raises
        ------
        ValidationError
            An order for another broker, bad algorithm terms, or an id stored
            with different terms.
        LimitBreachError
            New orders would breach a pre-trade limit; nothing is stored.
        """
        def check(o: Order) -> None:
            if o.parent_id is not None:
                raise ValidationError("parent_id", o.parent_id, "a parent has no parent")
            self._check_terms(o)

        return accept_orders(self.registry, self.name, orders, override=override,
                             clock=self.clock, check=check)

    # -- planning ----------------------------------------------------------------------------
    def _features(self, parent: Order, session: IntradaySession, first: int) -> Any:
        i = session.assets.index(parent.asset)
        return OrderFeatures(
            quantity=parent.remaining, price=float(session.prices[i, first - 1]),
            adv=float(session.adv[i]), volatility=float(session.volatility[i]),
            spread_bps=2.0 * self.cost_model.half_spread_bps,
            urgency=str(parent.info.get("urgency", "normal")),
            session_fraction_left=(session.intervals - first + 1) / session.intervals)

    def start(self, session: IntradaySession, *, first: int = 1) -> list[Order]:
        """Plan every open parent that has no plan for ``session`` (idempotent).

        A parent without a plan, or carried over from an earlier session, gets
        one: its algorithm (the router's choice for ``"smart"``), and its
        schedule over intervals ``first..`` of ``session``, all parents of an
        algorithm in one batched call. Open children of planned parents are
        handed to their venues again (after a restart; venues ignore what
        they have).

        Returns
        -------
        list of Order
            The parents planned now.
        """
        if not isinstance(session, IntradaySession):
            raise ValidationError("session", type(session).__name__,
                                  "must be a pmkit.execution.IntradaySession")
        if isinstance(first, bool) or not isinstance(first, int) or not (
                1 <= first <= session.intervals):
            raise ValidationError("first", first, f"must be in [1, {session.intervals}]")
        day = session.session.date().isoformat()
        todo: list[tuple[Order, str, dict[str, Any], dict[str, Any]]] = []
        for parent in self.open_orders():
            plan = plan_of(parent)
            if plan is not None and (plan.session == day or plan.end_of_day != "carry"):
                continue
            if parent.asset not in session.assets:
                continue
            algorithm = parent.info.get("algorithm") or (SMART if self.router is not None
                                                         else self.algorithm)
            params = dict(parent.info.get("params", {}))
            route: dict[str, Any] = {}
            if algorithm == SMART:
                decision = self.router.decide(self._features(parent, session, first))
                algorithm, route = decision.algorithm, decision.to_record()
                params = {**decision.params, **params}
            todo.append((parent, algorithm, params, route))
        planned = []
        schedules = self._schedules(todo, session, first)
        for (parent, algorithm, params, route), schedule in zip(todo, schedules, strict=True):
            planned.append(self._store_plan(parent, session, first, algorithm, params, route,
                                            schedule))
        self.recover()
        return planned

    def _schedules(self, todo: list[tuple[Order, str, dict[str, Any], dict[str, Any]]],
                   session: IntradaySession, first: int) -> list[np.ndarray]:
        """Cumulative signed targets per interval of ``session``, one batched call per algorithm."""
        from pmkit.core.schedules import almgren_chriss_trajectory, twap_trades, vwap_trades
        from pmkit.execution.impact import u_shape_profile

        n_left = session.intervals - first + 1
        out: list[np.ndarray | None] = [None] * len(todo)
        groups: dict[tuple[str, int], list[int]] = {}
        for j, (_parent, algorithm, params, _) in enumerate(todo):
            span = max(1, round(float(params.get("horizon_fraction", 1.0)) * n_left))
            groups.setdefault((algorithm, span), []).append(j)
        shape = session.profile if session.profile is not None \
            else u_shape_profile(session.intervals)
        profile = np.asarray(shape, dtype=float)[first - 1:]
        for (algorithm, span), rows in groups.items():
            parents = [todo[j][0] for j in rows]
            q = np.array([abs(p.remaining) for p in parents])
            if algorithm == "twap":
                trades = np.asarray(twap_trades(q, span))
            elif algorithm == "vwap":
                trades = np.asarray(vwap_trades(q, profile[:span] / profile[:span].sum()))
            elif algorithm == "is":
                idx = [session.assets.index(p.asset) for p in parents]
                price = session.prices[idx, first - 1]
                vol = session.volatility[idx] * price  # currency per unit per sqrt(day)
                eta, gamma = np.array([ac_impact(float(pr), float(session.adv[i]),
                                                 self.cost_model)
                                       for pr, i in zip(price, idx, strict=True)]).T
                lam = np.array([float(todo[j][2].get("risk_aversion", DEFAULT_RISK_AVERSION))
                                for j in rows])
                horizon = span / session.intervals  # days
                _, trades = almgren_chriss_trajectory(q, vol, eta, gamma, lam, horizon,
                                                      intervals=span)
                trades = np.asarray(trades)
            else:  # pov: the expected path; children follow realized volume
                idx = [session.assets.index(p.asset) for p in parents]
                expected = session.adv[idx, None] / session.prices[idx, first - 1, None] \
                    * profile[None, :span]
                rate = np.array([float(todo[j][2].get("participation", DEFAULT_PARTICIPATION))
                                 for j in rows])
                trades = np.minimum(np.cumsum(rate[:, None] * expected, axis=1), q[:, None])
                trades = np.diff(trades, axis=1, prepend=0.0)
            cum = _cumulative(trades)
            for r, j in enumerate(rows):
                parent = todo[j][0]
                full = np.concatenate([np.zeros(first - 1), cum[r],
                                       np.full(n_left - span, cum[r, -1])])
                if algorithm != "pov":
                    full[first - 1 + span - 1:] = q[r]  # exactly the order by the horizon
                out[j] = parent.filled + _side(parent.quantity) * full
        return [o for o in out if o is not None]

    def _store_plan(self, parent: Order, session: IntradaySession, first: int, algorithm: str,
                    params: dict[str, Any], route: dict[str, Any], schedule: np.ndarray
                    ) -> Order:
        i = session.assets.index(parent.asset)
        arrival = float(session.prices[i, first - 1])
        old = plan_of(parent)
        eod = parent.info.get("end_of_day", self.end_of_day)
        if algorithm == "pov":
            params = {"participation": DEFAULT_PARTICIPATION, **params}
        if algorithm == "is":
            params = {"risk_aversion": DEFAULT_RISK_AVERSION, **params}
        volatility, adv = self._pre_trade(parent.asset, session)
        params |= {"volatility": volatility, "adv": adv}
        plan = ExecutionPlan(
            algorithm=algorithm, session=session.session.date().isoformat(),
            intervals=session.intervals, schedule=tuple(float(x) for x in schedule),
            arrival_price=arrival if old is None else old.arrival_price,
            params=json_value(params, "params"),
            max_participation=self.max_participation, end_of_day=eod, next_interval=first,
            last_price=arrival, route=json_value(route, "route"),
        )
        if old is not None:  # carried: totals go on
            plan = plan.with_changes(market_fill_value=old.market_fill_value,
                                     spread_paid=old.spread_paid, impact_paid=old.impact_paid,
                                     children=old.children)
        estimate = self.cost_model.breakdown(parent.remaining, arrival, volatility, adv)
        after = parent.with_changes(info={**parent.info, "execution": plan.to_record(),
                                          "estimate": encode(estimate)})
        with self.registry.mutation("execution.plan", parent.id) as m:
            m.require("ledger.trade", parent.portfolio)
            rec = m.tx.get("order", parent.id)
            if rec is None or Order.from_record(rec.data) != parent:
                raise TransitionError(parent.id, "changed", "plan", ())
            m.tx.put("order", parent.id, str(parent.status), after.to_record())
            m.record(_summary(parent, old), _summary(after, plan) | {
                "algorithm": algorithm, "params": plan.params, "route": plan.route})
            m.publish("execution.planned", portfolio=parent.portfolio, order=parent.id,
                      asset=parent.asset, algorithm=algorithm, session=plan.session,
                      arrival_price=arrival, reasons=route.get("reasons", []))
        return after

    def _pre_trade(self, asset: str, session: IntradaySession) -> tuple[float, float]:
        """Daily volatility and ADV the cost model prices ``asset`` with at the session's open.

        Stored in the plan's ``params``, so the pre-trade estimate, the
        paper broker's fills and the calibration of ``Y`` use one set of inputs.
        """
        market = getattr(next(iter(self.venues.values())), "market", None)
        market = self.registry.market if market is None else market
        try:
            volatility = self.cost_model.daily_volatility(market, asset, session.previous)
        except PmkitError:  # too little history: the path's own volatility
            volatility = float(session.volatility[session.assets.index(asset)])
        return float(volatility), self.cost_model.adv_of(asset)

    def recover(self) -> list[Order]:
        """Hand every open child of this engine's parents to its venue again (idempotent)."""
        sent = []
        for parent in self.open_orders():
            plan = plan_of(parent)
            if plan is None:
                continue
            by_venue: dict[str, list[Order]] = {}
            for cid in plan.open_children:
                rec = self.registry.view().record("order", cid)
                if rec is not None and rec.status in OPEN_ORDER_STATUSES:
                    child = Order.from_record(rec.data)
                    by_venue.setdefault(child.broker, []).append(child)
            for venue, kids in by_venue.items():
                sent.extend(self.venues[venue].submit(kids))
        return sent

    # -- working a tick ----------------------------------------------------------------------
    def on_tick(self, tick: Tick) -> list[Order]:
        """Act on the end of interval ``tick.interval``: replace children, send new ones.

        Parents whose plan is past this interval are skipped, so replaying a
        tick after a restart sends nothing twice.

        Returns
        -------
        list of Order
            The children sent.
        """
        slices: list[_Slice] = []
        for parent in self.open_orders():
            plan = plan_of(parent)
            # a paused parent still follows the clock, so resuming re-plans from now
            if plan is None or plan.state == "done" or tick.interval < plan.next_interval:
                continue
            if parent.asset not in tick.prices:
                continue
            try:
                piece = self._slice(parent, plan, tick)
            except (PermissionDenied, StoreError):
                raise
            except PmkitError as exc:
                self._child_rejected(parent.id, exc, tick)
                continue
            if piece is not None:
                slices.append(piece)
        stored = self._write_slices(slices, tick)
        by_venue: dict[str, list[Order]] = {}
        for child in stored:
            by_venue.setdefault(child.broker, []).append(child)
        for venue, kids in by_venue.items():
            self.venues[venue].submit(kids)
        return stored

    def _child_rejected(self, parent_id: str, exc: PmkitError, tick: Tick) -> None:
        self._alert(parent_id, "child_rejected", error=type(exc).__name__,
                    field=getattr(exc, "field", None), reason=str(exc), interval=tick.interval)

    def _write_slices(self, slices: list[_Slice], tick: Tick) -> list[Order]:
        """Store a tick's slices: one transaction for all, each parent with its audit record.

        Why one: a commit (with ``synchronous=FULL``) costs more than a slice's
        writes. When any slice is refused, that transaction rolls back and
        each slice is written in its own transaction, so the refusal stays
        with its parent (a ``child_rejected`` alert) as before.
        """
        if not slices:
            return []
        if len(slices) > 1:
            try:
                with self.registry.mutation("execution.tick", self.name) as m:
                    checked = self._check_children(m, slices)
                    stored = [c for piece in slices
                              for c in self._write_slice(m, piece, False, checked)]
                    # counts only: the batch's target is no portfolio's, and each
                    # slice's own record (same commit) names its parent and children
                    m.record(None, {"interval": tick.interval, "parents": len(slices),
                                    "children": len(stored)})
                return stored
            except PmkitError:
                pass  # one by one below: the refused slice alone is rejected
        stored = []
        for piece in slices:
            try:
                with self.registry.mutation("execution.slice", piece.parent.id) as m:
                    stored.extend(self._write_slice(m, piece, True))
            except (PermissionDenied, StoreError):
                raise
            except PmkitError as exc:
                self._child_rejected(piece.parent.id, exc, tick)
        return stored

    def advance(self, times: Sequence[Any], now: datetime, prices: Mapping[str, float],
                volumes: Mapping[str, float] | None = None) -> list[Order]:
        """Act on the wall clock: the last interval of ``times`` that has ended by ``now``.

        For a real broker: a scheduler calls this (every few seconds, say)
        with the venue's latest prices. Nothing happens before the first
        interval ends or when that interval was acted on already; intervals
        the scheduler missed are caught up in one child (the schedule is
        cumulative).

        Parameters
        ----------
        times : sequence of datetime
            The session's open, then each interval's end (`IntradaySession.times`).
        now : datetime
            Wall-clock time, tz-naive UTC.
        prices : mapping asset -> float
            Latest prices (currency per unit).
        volumes : mapping asset -> float, optional
            Units traded in the interval, where known (the participation cap
            and POV need them; without them nothing is capped).

        Returns
        -------
        list of Order
            The children sent.
        """
        import pandas as pd

        grid = pd.DatetimeIndex(times)
        if len(grid) < 2 or not grid.is_monotonic_increasing:
            raise ValidationError("times", len(grid), "must be the open and the interval ends, "
                                  "increasing")
        ended = int(grid[1:].searchsorted(pd.Timestamp(now), side="right"))
        if ended == 0:
            return []
        return self.on_tick(Tick(ended, grid[ended], dict(prices), dict(volumes or {})))

    def _replace_open(self, parent: Order, plan: ExecutionPlan) -> list[str]:
        """Cancel the children still open (their venues' transactions); the rejected ones."""
        rejected = []
        for cid in plan.open_children:
            rec = self.registry.view().record("order", cid)
            if rec is None:
                continue
            child = Order.from_record(rec.data)
            if child.status == OrderStatus.REJECTED:
                rejected.append(cid)
            elif child.is_open:
                self.venues[child.broker].cancel(cid)
        return rejected

    def _slice(self, parent: Order, plan: ExecutionPlan, tick: Tick) -> _Slice | None:
        """What a parent does at ``tick`` (its children and its plan after), not yet stored."""
        rejected = self._replace_open(parent, plan)
        if plan.open_children:  # a cancelled child may have filled before its cancel
            parent = self._load(parent.id)
            plan = plan_of(parent) or plan
        if not parent.is_open:
            return None
        k = tick.interval
        price = float(tick.prices[parent.asset])
        volume = max(float(tick.volumes.get(parent.asset, 0.0)), 0.0)
        sign = _side(parent.quantity)
        lot = self._lot(parent.asset)
        last = k >= plan.intervals or (plan.algorithm != "pov"
                                       and abs(plan.target(k)) >= abs(parent.quantity)
                                       and abs(plan.target(k - 1)) < abs(parent.quantity))
        if plan.algorithm == "pov":
            rate = float(plan.params.get("participation", DEFAULT_PARTICIPATION))
            want = rate * volume
        else:
            want = sign * (plan.target(k) - parent.filled)
            if last:
                want = abs(parent.remaining)
        if not (last and plan.algorithm != "pov"):
            want = math.floor(want / lot + 1e-9) * lot
        # a feed without volumes (a real broker's quotes) caps nothing; POV then sends nothing
        known = parent.asset in tick.volumes
        cap = math.floor(plan.max_participation * volume / lot + 1e-9) * lot if known \
            else math.inf
        want = max(min(want, cap, abs(parent.remaining)), 0.0)
        if plan.state == "paused":
            want = 0.0
        held = parent.limit_price is not None and (
            (sign > 0 and price > parent.limit_price) or (sign < 0 and price < parent.limit_price))
        if held:
            want = 0.0
        children = (self._children(parent, plan, k, sign * want, price, volume, tick)
                    if want > 0 else [])
        band = abs(price / plan.arrival_price - 1.0) > self.price_band
        alerts = set(plan.alerts)
        new_alerts = []
        for kind, on in (("held", held), ("price_band", band)):
            if on and kind not in alerts:
                new_alerts.append(kind)
            alerts = alerts | {kind} if on else alerts - {kind}
        after_plan = plan.with_changes(
            next_interval=k + 1, open_children=tuple(c.id for c in children),
            children=plan.children + len(children),
            market_value=plan.market_value + price * volume,
            market_volume=plan.market_volume + volume, last_price=price,
            alerts=tuple(sorted(alerts)))
        return _Slice(parent, plan, after_plan, children, k, price, volume, sign * want,
                      tuple(new_alerts), tuple(rejected))

    @staticmethod
    def _check_children(m: Mutation, slices: list[_Slice]) -> dict[str, Order]:
        """The pre-trade controls on a tick's children, each portfolio's together.

        Together: the children of one tick are live at once, so their joint
        effect is what the limits must allow (a refusal falls back to one
        transaction per slice, each checked alone). Parents carrying a
        manager's override are checked with it, apart from the others.
        """
        groups: dict[str | None, tuple[Override | None, list[Order]]] = {}
        for piece in slices:
            stored = piece.parent.info.get("override")
            key = None if stored is None else json.dumps(stored, sort_keys=True)
            groups.setdefault(key, (Override.from_record(stored), []))[1].extend(piece.children)
        checked: dict[str, Order] = {}
        for override, children in groups.values():
            if children:
                checked |= {c.id: c for c in check_orders(m, children, override=override)}
        return checked

    def _write_slice(self, m: Mutation, piece: _Slice, primary: bool,
                     checked: dict[str, Order] | None = None) -> list[Order]:
        """Store one slice in ``m``: its new children, the parent's plan, audit, events.

        ``checked``: the children already through the pre-trade controls
        (`_check_children`); without it they are checked here.
        """
        parent, plan, after_plan, children = piece.parent, piece.plan, piece.after, piece.children
        k, price = piece.interval, piece.price
        after = parent.with_changes(info={**parent.info, "execution": after_plan.to_record()})
        m.require("ledger.trade", parent.portfolio)
        rec = m.tx.get("order", parent.id)
        if rec is None or Order.from_record(rec.data) != parent:
            raise TransitionError(parent.id, "changed", "slice", ())
        if checked is not None:
            children = [checked[c.id] for c in children]
        elif children:
            override = Override.from_record(parent.info.get("override"))
            children = check_orders(m, children, override=override)
        stored = []
        for child in children:
            if m.tx.get("order", child.id) is not None:
                continue  # sent before a restart
            record = child.to_record()
            m.tx.put("order", child.id, str(child.status), record)
            m.note("order.submit", child.id, None, record)
            m.publish("order.open", portfolio=child.portfolio, order=child.id,
                      parent=parent.id)
            stored.append(child)
        m.tx.put("order", parent.id, str(parent.status), after.to_record())
        images = (_summary(parent, plan), _summary(after, after_plan) | {
            "interval": k, "price": price, "volume": piece.volume,
            "children": [c.id for c in children]})
        if primary:
            m.record(*images)
        else:
            m.note("execution.slice", parent.id, *images)
        m.publish("execution.slice", portfolio=parent.portfolio, order=parent.id,
                  interval=k, price=price, quantity=piece.quantity,
                  target=plan.target(k), filled=parent.filled)
        for kind in piece.new_alerts:
            m.publish("execution.alert", portfolio=parent.portfolio, order=parent.id,
                      kind=kind, interval=k, price=price, arrival=plan.arrival_price,
                      limit_price=parent.limit_price)
        for cid in piece.rejected:
            m.publish("execution.alert", portfolio=parent.portfolio, order=parent.id,
                      kind="child_rejected", interval=k, child=cid)
        return stored

    def _lot(self, asset: str) -> float:
        if asset not in self._lots:  # once per asset: a slice's hot path
            market = self.registry.market
            lot = 1.0
            if market is not None and "lot_size" in market \
                    and asset in market.indexes["asset"]:
                lot = float(market["lot_size"].sel(asset=asset))
            self._lots[asset] = lot if math.isfinite(lot) and lot > 0 else 1.0
        return self._lots[asset]

    def _children(self, parent: Order, plan: ExecutionPlan, k: int, quantity: float,
                  price: float, volume: float, tick: Tick) -> list[Order]:
        names = list(self.venues)
        if len(names) == 1 or self.router is None:
            parts = {names[0]: quantity}
        else:  # what the venues cannot take in whole lots is behind schedule at the next tick
            specs = [venue_spec(self.venues[n]) for n in names]
            seconds = 23_400.0 / plan.intervals
            split = self.router.split(quantity, specs, price=price,
                                      volatility=float(plan.params.get("volatility", 0.02)),
                                      interval_volume=max(volume, 1.0),
                                      interval_seconds=seconds, lot=self._lot(parent.asset))
            parts = {n: q for n, q in split.quantities.items() if q}
        out = []
        seq = plan.children + 1
        for venue, q in parts.items():
            cid = f"{parent.id}.{seq}" if len(names) == 1 else f"{parent.id}.{seq}.{venue}"
            out.append(Order(id=cid, portfolio=parent.portfolio, asset=parent.asset,
                             quantity=float(q), reference_price=price, broker=venue,
                             limit_price=parent.limit_price, created_at=tick.ts.isoformat(),
                             parent_id=parent.id, info={"interval": k}).validated())
        return out

    def _alert(self, parent_id: str, kind: str, **payload: Any) -> dict[str, Any]:
        """Publish an alert about a parent (its own audited transaction)."""
        parent = self._load(parent_id)
        body = {"order": parent_id, "kind": kind, **payload}
        with self.registry.mutation("execution.alert", parent_id) as m:
            m.require("ledger.trade", parent.portfolio)
            m.record(None, body)
            m.publish("execution.alert", portfolio=parent.portfolio, **body)
        return body

    def check_schedule(self, tick: Tick) -> list[dict[str, Any]]:
        """Raise ``behind`` alerts for parents trailing the schedule after ``tick``'s fills.

        The schedule of a POV parent is its participation rate times the
        market volume of the intervals worked (capped at its quantity).
        """
        raised = []
        for parent in self.open_orders():
            plan = plan_of(parent)
            if plan is None or plan.state != "working":
                continue
            lag = _due(plan, parent, min(tick.interval, plan.next_interval - 1)) \
                - abs(parent.filled)
            behind = lag > self.behind * abs(parent.quantity)
            if behind == ("behind" in plan.alerts):
                continue
            alerts = set(plan.alerts) | {"behind"} if behind else set(plan.alerts) - {"behind"}
            after = parent.with_changes(info={**parent.info, "execution": plan.with_changes(
                alerts=tuple(sorted(alerts))).to_record()})
            with self.registry.mutation("execution.alert", parent.id) as m:
                m.require("ledger.trade", parent.portfolio)
                m.tx.put("order", parent.id, str(parent.status), after.to_record())
                body = {"order": parent.id, "kind": "behind" if behind else "caught_up",
                        "interval": tick.interval, "lag": lag, "filled": parent.filled,
                        "target": math.copysign(_due(plan, parent, tick.interval),
                                                parent.quantity)}
                m.record(_summary(parent, plan), _summary(after, plan_of(after)) | body)
                m.publish("execution.alert", portfolio=parent.portfolio, **body)
            raised.append(body)
        return raised

    # -- control: pause, resume, replace, cancel ---------------------------------------------
    def _set_state(self, parent_id: str, action: str, change: Callable[[Order, ExecutionPlan],
                                                                       Order]) -> Order:
        parent = self._load(parent_id)
        plan = plan_of(parent)
        if parent.broker != self.name:
            raise ValidationError("broker", parent.broker, f"this engine is {self.name!r}")
        if plan is None and action != "execution.replace":
            raise TransitionError(parent_id, "unplanned", action.split(".")[1], ())
        if not parent.is_open:
            raise TransitionError(parent_id, str(parent.status), action.split(".")[1], ())
        if plan is not None:
            self._replace_open(parent, plan)
            parent = self._load(parent_id)
            plan = plan_of(parent)
        after = change(parent, plan)
        with self.registry.mutation(action, parent_id) as m:
            m.require("ledger.trade", parent.portfolio)
            m.tx.put("order", parent.id, str(after.status), after.to_record())
            m.record(_summary(parent, plan) | {"limit_price": parent.limit_price},
                     _summary(after, plan_of(after)) | {"limit_price": after.limit_price})
            m.publish(action, portfolio=parent.portfolio, order=parent_id,
                      filled=after.filled, remaining=after.remaining)
        return after

    def pause(self, parent_id: str) -> Order:
        """Stop sending children of a parent; its open children are cancelled."""
        def change(p: Order, plan: ExecutionPlan) -> Order:
            if plan.state != "working":
                raise TransitionError(p.id, plan.state, "pause", ("working",))
            return p.with_changes(info={**p.info, "execution": plan.with_changes(
                state="paused", open_children=()).to_record()})
        return self._set_state(parent_id, "execution.paused", change)

    def resume(self, parent_id: str) -> Order:
        """Work a paused parent again: what is left is re-planned over the intervals left.

        The remaining quantity follows the same algorithm's shape from the
        next interval (for TWAP an even split, for the others their
        remaining profile rescaled), so a pause does not end in a burst.
        """
        def change(p: Order, plan: ExecutionPlan) -> Order:
            if plan.state != "paused":
                raise TransitionError(p.id, plan.state, "resume", ("paused",))
            k = plan.next_interval
            n = plan.intervals
            if k > n:
                raise TransitionError(p.id, "session over", "resume", ())
            old = np.asarray(plan.schedule, dtype=float)
            base = plan.target(k - 1)
            span = old[k - 1:] - base
            total = abs(old[-1] - base)
            if plan.algorithm == "twap" or total == 0:
                shape = np.arange(1, n - k + 2) / (n - k + 1)
            else:
                shape = np.abs(span) / total
            new = np.concatenate([old[:k - 1], p.filled + p.remaining * shape])
            return p.with_changes(info={**p.info, "execution": plan.with_changes(
                state="working",
                schedule=tuple(float(x) for x in new)).to_record()})
        return self._set_state(parent_id, "execution.resumed", change)

    def replace(self, parent_id: str, *, limit_price: float | None) -> Order:
        """Amend a parent's limit price (cancel/replace: open children are re-sent next tick)."""
        if limit_price is not None:
            limit_price = check_number(limit_price, "limit_price", limit=1e9, positive=True)

        def change(p: Order, plan: ExecutionPlan | None) -> Order:
            info = dict(p.info)
            if plan is not None:
                info["execution"] = plan.with_changes(open_children=()).to_record()
            return p.with_changes(limit_price=limit_price, info=info)
        return self._set_state(parent_id, "execution.replace", change)

    def cancel(self, order_id: str) -> Order:
        """Cancel a parent: its open children at their venues, then the parent (idempotent).

        `ProposalBook.cancel` marks a proposal's parents cancelled and then
        calls this, which cancels their children.
        """
        parent = self._load(order_id)
        if parent.broker != self.name:
            raise ValidationError("broker", parent.broker, f"this engine is {self.name!r}")
        plan = plan_of(parent)
        if plan is not None:
            self._replace_open(parent, plan)
            parent = self._load(order_id)
            plan = plan_of(parent)
        if parent.status == OrderStatus.CANCELLED and (plan is None or plan.state == "done"):
            return parent
        if not parent.is_open and parent.status != OrderStatus.CANCELLED:
            raise TransitionError(order_id, str(parent.status), "cancel", ())
        return self._finish_one(parent, "cancelled", None)

    def _finish_one(self, parent: Order, reason: str, close: float | None) -> Order:
        plan = plan_of(parent)
        info = dict(parent.info)
        if plan is not None:
            info["execution"] = plan.with_changes(
                state="done", end_reason=plan.end_reason or reason, open_children=(),
                close_price=close if close is not None else plan.close_price).to_record()
        status = parent.status if parent.status == OrderStatus.FILLED else OrderStatus.CANCELLED
        after = parent.with_changes(status=status, info=info)
        with self.registry.mutation("execution.done", parent.id) as m:
            m.require("ledger.trade", parent.portfolio)
            m.tx.put("order", parent.id, str(status), after.to_record())
            m.record(_summary(parent, plan), _summary(after, plan_of(after)))
            m.publish("execution.done", portfolio=parent.portfolio, order=parent.id,
                      reason=(plan_of(after).end_reason if plan else reason),
                      filled=after.filled, remaining=after.remaining)
            if status == OrderStatus.CANCELLED and parent.status != OrderStatus.CANCELLED:
                m.publish("order.cancelled", portfolio=parent.portfolio, order=parent.id,
                          proposal=parent.proposal_id)
        return after

    def finish(self, session: IntradaySession) -> list[Order]:
        """End ``session``: residuals cancelled (or kept to carry), close prices stamped.

        Returns
        -------
        list of Order
            The parents of the session after it.
        """
        day = session.session.date().isoformat()
        out = []
        for parent in self.parents():
            plan = plan_of(parent)
            if plan is None or plan.session != day:
                continue
            close = float(session.prices[session.assets.index(parent.asset), -1])
            if parent.is_open:
                self._replace_open(parent, plan)
                parent = self._load(parent.id)
                plan = plan_of(parent)
            if parent.is_open and plan.end_of_day == "carry":
                after = parent.with_changes(info={**parent.info, "execution": plan.with_changes(
                    open_children=(), close_price=close, state="working").to_record()})
                with self.registry.mutation("execution.carry", parent.id) as m:
                    m.require("ledger.trade", parent.portfolio)
                    m.tx.put("order", parent.id, str(parent.status), after.to_record())
                    m.record(_summary(parent, plan), _summary(after, plan_of(after)))
                    m.publish("execution.carried", portfolio=parent.portfolio, order=parent.id,
                              remaining=parent.remaining)
                out.append(after)
            elif parent.is_open:
                out.append(self._finish_one(parent, "end_of_day", close))
            elif plan.close_price is None:
                out.append(self._finish_one(parent, plan.end_reason or "filled", close))
            else:
                out.append(parent)
        return out

    # -- a simulated session -------------------------------------------------------------------
    def run(self, session: IntradaySession, *, until: int | None = None,
            progress: bool = False) -> RunResult:
        """Work ``session`` tick by tick with the venues filling at its prices.

        Each tick: `on_tick` sends children, every simulated venue (one with
        a ``step``, like `PaperBroker`) fills at the tick's prices and
        volumes, and `check_schedule` raises ``behind`` alerts. After the
        last tick, `finish`. With ``until``, stops after that interval (a
        later call on a new engine over the same store carries on).

        Parameters
        ----------
        session : IntradaySession
        until : int, optional
            Last interval to work now.
        progress : bool, default False
            Show a tqdm progress bar.
        """
        self.start(session)
        result = RunResult()
        planned = [plan_of(p) for p in self.open_orders()]
        nexts = [p.next_interval for p in planned if p is not None and p.state == "working"]
        first = max(1, min(nexts) - 1) if nexts else 1
        last = session.intervals if until is None else min(int(until), session.intervals)
        ticks: Iterable[Tick] = (session.tick(k) for k in range(first, last + 1))
        if progress:
            try:
                from tqdm.auto import tqdm
            except ImportError as exc:
                from pmkit.errors import MissingDependencyError

                raise MissingDependencyError("tqdm", "ui") from exc
            ticks = tqdm(ticks, total=last - first + 1, desc=f"session {session.session.date()}")
        sim = [v for v in self.venues.values() if hasattr(v, "step")]
        for tick in ticks:
            result.children.extend(self.on_tick(tick))
            for venue in sim:
                step = venue.step(session.session, prices=tick.prices, volumes=tick.volumes,
                                  ts=tick.ts.to_pydatetime())
                result.fills.extend(step)
                for failure in step.failures:
                    result.failures.append(failure)
                    rec = self.registry.view().record("order", failure.order_id)
                    parent_id = None if rec is None else rec.data.get("parent_id")
                    if parent_id is not None:
                        result.alerts.append(self._alert(
                            parent_id, "child_rejected", child=failure.order_id,
                            error=failure.error, field=failure.field, reason=failure.reason,
                            interval=tick.interval))
            result.alerts.extend(self.check_schedule(tick))
        if until is None or until >= session.intervals:
            self.finish(session)
        return result
