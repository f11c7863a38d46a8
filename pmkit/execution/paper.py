"""A paper broker: fills open orders against market closes with the cost model.

Each `PaperBroker.step` is one trading session at a market time ``at``:

1. open orders are taken oldest first, **sells before buys**, so sale
   proceeds of the session fund its purchases;
2. each order fills at the close of ``at`` moved against it by spread and
   impact (`CostModel.execution_price`) and pays the commission as its fee,
   so the fill's cash cost over the close is exactly the cost model's
   estimate for that quantity;
3. with ``participation``, a fill takes at most that fraction of the
   asset's ADV (`CostModel.adv_of`) per session, in whole lots: a large
   order fills over several sessions (``partially_filled`` states);
4. a buy never takes cash below ``-margin * NAV`` (NAV at the closes of
   ``at`` before the fill; with the default ``margin=0`` cash stays >= 0):
   it is cut to the whole lots the cash allows, or waits for a later session;
   without ``allow_short`` a sale never sells more than the position held;
5. every fill is booked by a `FillRecorder`: one transaction with the ledger
   trade, the order and its proposal;
6. an order whose fill is refused (a registry guard such as the price band,
   a risk limit, a bad cost estimate) does not stop the session: its
   transaction rolls back, the failure is audited (``order.fill_failed``, one
   transaction) and published as an ``order.fill_failed`` event, the order
   stays open, and the other orders fill. `step` returns a `StepResult`: the
   fills, with the failures in ``.failures``.

The broker keeps no state of its own: its open orders are the store's
``"order"`` entities naming it, so a new `PaperBroker` over the same store
carries on after a restart.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pmkit.codec import encode
from pmkit.errors import (
    ConfigError,
    NotFoundError,
    PermissionDenied,
    PmkitError,
    StoreError,
    TransitionError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.execution.broker import (
    OPEN_ORDER_STATUSES,
    AlreadyBooked,
    Broker,
    Fill,
    FillRecorder,
    Order,
    OrderStatus,
    _plain_ts,
    accept_orders,
)
from pmkit.execution.costs import CostBreakdown, CostModel
from pmkit.validation import check_number

if TYPE_CHECKING:
    import xarray as xr

    from pmkit.registry import Registry
    from pmkit.registry.context import Mutation
    from pmkit.registry.controls import Override

__all__ = ["OrderFailure", "PaperBroker", "StepResult"]


def _natural(text: str) -> tuple[Any, ...]:
    """Sort key reading digit runs as numbers, so ``rb-1-2`` comes before ``rb-1-10``."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


@dataclass(frozen=True)
class OrderFailure:
    """An order a `PaperBroker.step` could not fill (it stays open).

    Attributes
    ----------
    order_id, portfolio, asset : str
    quantity : float
        Signed units the order had left.
    error : str
        The `pmkit.errors` type raised (e.g. ``"PriceBandError"``).
    field : str or None
        The field the error names.
    reason : str
        The error's message.
    at : str
        Market time of the session (ISO).
    """

    order_id: str
    portfolio: str
    asset: str
    quantity: float
    error: str
    field: str | None
    reason: str
    at: str

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict (the audit record's ``after``), by the one codec `pmkit.codec`."""
        return encode(self)


class StepResult(list[Fill]):
    """The fills of a session (a list, in booking order) and its ``failures``."""

    def __init__(self, fills: Iterable[Fill] = (), failures: Iterable[OrderFailure] = ()) -> None:
        super().__init__(fills)
        self.failures: list[OrderFailure] = list(failures)

    def __repr__(self) -> str:
        return f"StepResult({list.__repr__(self)}, failures={self.failures!r})"


class PaperBroker(Broker):
    """Simulated execution at market closes (see the module docstring).

    Parameters
    ----------
    registry : Registry
        Session that books the fills (needs TRADER on the portfolios).
    market : xarray.Dataset, optional
        ``close(asset, time)`` and ``lot_size(asset)``; default: the registry's.
    cost_model : CostModel, optional
        Default `CostModel()`.
    participation : float, optional
        Largest fill per session as a fraction of the asset's ADV (> 0).
        None: no limit.
    margin : float, default 0
        Cash may go down to ``-margin * NAV`` (a fraction >= 0), and never
        below the portfolio's ``margin_limit`` config (an amount, default 0),
        which the registry enforces on every booked trade.
    allow_short : bool, default False
        Whether sales may exceed the position held; the portfolio's config
        must also say ``allow_short: true``.
    name : str, default "paper"
        Stored on the orders it works; two paper brokers with different
        names over one store work separate orders.
    clock : callable, optional
        ``clock() -> datetime`` for proposal history stamps.
    """

    def __init__(
        self,
        registry: Registry,
        market: xr.Dataset | None = None,
        cost_model: CostModel | None = None,
        *,
        participation: float | None = None,
        margin: float = 0.0,
        allow_short: bool = False,
        name: str = "paper",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        market = registry.market if market is None else market
        if market is None:
            raise ConfigError("market", None, "the paper broker needs market data; pass market=")
        if participation is not None:
            participation = check_number(participation, "participation", positive=True)
        margin = check_number(margin, "margin", minimum=0.0)
        if not isinstance(name, str) or not name:
            raise ValidationError("name", name, "must be a non-empty string")
        self.registry = registry
        self.market = market
        self.cost_model = cost_model or CostModel()
        self.participation = None if participation is None else float(participation)
        self.margin = float(margin)
        self.allow_short = bool(allow_short)
        self.name = name
        self.recorder = FillRecorder(registry, clock=clock)
        self._times = market.indexes["time"]
        self._volatility: dict[tuple[str, pd.Timestamp], float] = {}
        self._day_closes: dict[tuple[pd.Timestamp, bool], tuple[Any, Any, pd.Timestamp]] = {}
        self._lots = (
            {
                str(a): float(v)
                for a, v in zip(
                    market.indexes["asset"], np.asarray(market["lot_size"]), strict=True
                )
            }
            if "lot_size" in market
            else {}
        )

    def __repr__(self) -> str:
        return (
            f"PaperBroker(name={self.name!r}, participation={self.participation},"
            f" margin={self.margin}, user={self.registry.user!r})"
        )

    # -- the Broker interface ----------------------------------------------------------
    def open_orders(self) -> list[Order]:
        """Orders of this broker that may still fill and its user may view, oldest first.

        A paper broker run by one desk's trader works that desk's orders only.
        """
        orders = [
            Order.from_record(r.data)
            for r in self.registry.view().records("order", OPEN_ORDER_STATUSES)
            if r.data.get("broker") == self.name
        ]
        return sorted(orders, key=lambda o: (o.created_at, _natural(o.id)))

    def submit(
        self, orders: Sequence[Order], *, override: Override | None = None
    ) -> list[Order]:
        """Accept orders: those not yet stored are stored (one transaction).

        Orders a `ProposalBook` created are already stored and are simply
        worked from the next `step`; handing them again is a no-op. New
        orders pass the pre-trade controls first
        (`pmkit.execution.broker.check_orders`, stage ``"order"``).

        Parameters
        ----------
        orders : sequence of Order
        override : pmkit.risk.controls.Override, optional
            A manager's permission to exceed soft limits with these orders
            (audited; carried by the orders to their fills).

        Raises
        ------
        ValidationError
            An order for another broker, an unknown asset, or an order id
            stored with different terms.
        LimitBreachError
            New orders would breach a pre-trade limit; nothing is stored.
        """
        def check(o: Order) -> None:
            if o.asset not in self.market.indexes["asset"]:
                raise UnknownAssetError("asset", o.asset, "not in the paper broker's market data")

        return accept_orders(self.registry, self.name, orders, override=override,
                             clock=self.recorder.clock, check=check)

    def cancel(self, order_id: str) -> Order:
        """Cancel an open order (one transaction); a cancelled one is returned as is.

        Cancel a proposal's orders through `ProposalBook.cancel`, which
        moves the proposal too.

        Raises
        ------
        TransitionError
            The order is filled or rejected.
        """
        rec = self.registry.view().record("order", order_id)
        if rec is None:
            raise NotFoundError("order", order_id)
        order = Order.from_record(rec.data)
        if order.broker != self.name:
            raise ValidationError("broker", order.broker, f"this broker is {self.name!r}")
        if order.status == OrderStatus.CANCELLED:
            return order
        if not order.is_open:
            raise TransitionError(order_id, str(order.status), "cancel", ())
        with self.registry.mutation("order.cancel", order_id) as m:
            m.require("ledger.trade", order.portfolio)
            after = order.with_changes(status=OrderStatus.CANCELLED)
            m.tx.put("order", order_id, str(after.status), after.to_record())
            m.record(order.to_record(), after.to_record())
            m.publish("order.cancelled", portfolio=order.portfolio, order=order_id)
        return after

    # -- simulation ----------------------------------------------------------------------
    def _time(self, at: Any) -> pd.Timestamp:
        t = pd.Timestamp(at)
        if t not in self._times:
            raise ValidationError("at", at, "not a time of the market data")
        return t

    def step(
        self,
        at: Any,
        *,
        prices: Mapping[str, float] | None = None,
        volumes: Mapping[str, float] | None = None,
        ts: datetime | None = None,
    ) -> StepResult:
        """Fill what can be filled at the close of market time ``at``, or intraday.

        Intraday (``prices`` given), ``at`` is the session's market date and
        orders fill at ``prices`` at time ``ts``: costs use the volatility
        known at the previous close, the participation cap applies to the
        interval's ``volumes`` (units), and a child order of a parent
        (`Order.parent_id`) pays the square-root impact of the parent's
        cumulative fills (the law holds for the metaorder, not per slice:
        Tóth et al. 2011), so slicing does not make impact disappear: the
        parent's impact over all its fills equals the cost model's impact
        for the quantity it traded, at the fills' prices.

        Parameters
        ----------
        at : date-like
            A time of the market data.
        prices : mapping asset -> float, optional
            Intraday prices (currency per unit); None: the closes of ``at``.
        volumes : mapping asset -> float, optional
            Units the market traded in the interval (intraday participation cap).
        ts : datetime, optional
            Fill time (tz-naive UTC); default ``at``.

        Returns
        -------
        StepResult
            The fills booked, in booking order (each already in the ledger),
            a list; ``.failures`` holds an `OrderFailure` for each order whose
            fill was refused (audited and published as ``order.fill_failed``;
            the order stays open and the session goes on).

        Raises
        ------
        ValidationError
            ``at`` is not a time of the market data.
        PermissionDenied
            The broker's user may not trade a portfolio. Fills booked before
            the error stay booked (each is its own transaction).
        StoreError
            The store failed (nothing of the failing fill is written).
        """
        t = self._time(at)
        intraday = prices is not None
        close_now, last_close, vol_at = self._closes(t, intraday)
        if intraday:
            close_now = {str(a): float(p) for a, p in prices.items()}
            # today's prices where known, else the last close (as Series.combine_first)
            last_close = dict(last_close)
            for a, p in close_now.items():
                if not math.isnan(p) or a not in last_close:
                    last_close[a] = p
        when = t.to_pydatetime() if ts is None else _plain_ts("ts", ts)
        orders = self.open_orders()
        orders = [o for o in orders if o.quantity < 0] + [o for o in orders if o.quantity > 0]
        work = []
        for order in orders:
            close = float(close_now.get(order.asset, np.nan))
            if math.isfinite(close) and close > 0:
                volume = None if volumes is None else float(volumes.get(order.asset, 0.0))
                work.append((order, close, volume))
        booked = self._step_in_one(work, when, vol_at, last_close)
        if booked is not None:
            out = StepResult(booked)
        else:  # a fill was refused: book each in its own transaction, report the refusals
            out = StepResult()
            for order, close, volume in work:
                try:
                    fill = self._fill(order, when, vol_at, close, last_close, volume)
                    if fill is None:
                        continue
                    self.recorder.record(fill)
                except (PermissionDenied, StoreError):
                    raise
                except PmkitError as exc:
                    out.failures.append(self._report(order, t, exc))
                    continue
                out.append(fill)
        for fill in out:
            self.emit(fill)
        return out

    def _step_in_one(self, work: list[tuple[Order, float, float | None]], when: datetime,
                     vol_at: pd.Timestamp, last_close: Mapping[str, float]) -> list[Fill] | None:
        """Every fill of the step in one transaction (each with its own audit record).

        None when any fill is refused (or the user may not trade a portfolio):
        the transaction is rolled back and `step` books them one by one, so
        a refusal stays isolated and reported as before. Each fill is sized
        on the positions as this transaction leaves them (the orders before
        it in the step included), exactly as one transaction per fill would.
        """
        if not work:
            return []
        booked: list[Fill] = []
        try:
            with self.registry.mutation("order.fill_batch", self.name) as m:
                for order, close, volume in work:
                    fill = self._fill(order, when, vol_at, close, last_close, volume, m)
                    if fill is None:
                        continue
                    self.recorder.record_in(m, fill, primary=False)
                    booked.append(fill)
                # a count only: the batch's target is no portfolio's, and each fill's
                # own record (same commit) names its order
                m.record(None, {"broker": self.name, "fills": len(booked)})
        except (PmkitError, AlreadyBooked):
            return None
        return booked

    def _closes(self, t: pd.Timestamp, intraday: bool
                ) -> tuple[dict[str, float], dict[str, float], pd.Timestamp]:
        """The closes at ``t``, the last known close of every asset, and the volatility date.

        Intraday, the day's own close is not known yet: the last closes and
        the volatility are those of the day before. NAV uses the last known
        price of every holding (an asset with a gap in its closes still
        counts); one never priced counts as 0. Once per day (every tick of
        a session asks for the same day).
        """
        key = (t, intraday)
        if key not in self._day_closes:
            upto = self.market["close"].sel(time=slice(None, t))
            vol_at = t
            close_now = upto.isel(time=-1).to_series()
            if intraday:
                if len(upto["time"]) < 2:
                    raise ValidationError("at", t, "intraday fills need the close of the day "
                                                   "before")
                upto = upto.isel(time=slice(None, -1))
                vol_at = pd.Timestamp(upto["time"].values[-1])
            last = upto.ffill("time").isel(time=-1).to_series().fillna(0.0)
            self._day_closes[key] = ({str(a): float(v) for a, v in close_now.items()},
                                     {str(a): float(v) for a, v in last.items()}, vol_at)
        return self._day_closes[key]

    def _report(self, order: Order, t: pd.Timestamp, exc: PmkitError) -> OrderFailure:
        """Audit and publish a refused fill (its own transaction; the order stays open)."""
        failure = OrderFailure(
            order_id=order.id,
            portfolio=order.portfolio,
            asset=order.asset,
            quantity=float(order.remaining),
            error=type(exc).__name__,
            field=getattr(exc, "field", None),
            reason=str(exc),
            at=t.isoformat(),
        )
        with self.registry.mutation("order.fill_failed", order.id) as m:
            m.require("ledger.trade", order.portfolio)
            m.record(order.to_record(), failure.to_record())
            m.publish(
                "order.fill_failed",
                portfolio=order.portfolio,
                order=order.id,
                proposal=order.proposal_id,
                asset=order.asset,
                quantity=failure.quantity,
                error=failure.error,
                field=failure.field,
                reason=failure.reason,
            )
        return failure

    def run_until_filled(self, times: Iterable[Any]) -> StepResult:
        """`step` through ``times`` until no order of this broker is open; all fills booked.

        The result's ``failures`` gathers every session's.
        """
        out = StepResult()
        for t in times:
            if not self.open_orders():
                break
            step = self.step(t)
            out.extend(step)
            out.failures.extend(step.failures)
        return out

    def _costs(
        self, asset: str, q: float, close: float, t: pd.Timestamp, prior: float = 0.0
    ) -> tuple[float, CostBreakdown]:
        model = self.cost_model
        if (asset, t) not in self._volatility:  # closes before t never change
            self._volatility[(asset, t)] = model.daily_volatility(self.market, asset, t)
        volatility = self._volatility[(asset, t)]
        if prior == 0.0:
            bd = model.breakdown(q, close, volatility, model.adv_of(asset))
        else:  # a slice of a metaorder: the impact the slice adds to the parent's
            adv = model.adv_of(asset)
            own = model.breakdown(q, close, volatility, adv)
            after = model.breakdown(prior + abs(q), close, volatility, adv).impact
            before = model.breakdown(prior, close, volatility, adv).impact
            bd = CostBreakdown(own.commission, own.spread, max(after - before, 0.0))
        return model.execution_price(q, close, bd), bd

    def _prior_fills(self, order: Order, m: Mutation | None) -> float:
        """Units the order's parent filled before this slice (0 for an order without one)."""
        if order.parent_id is None:
            return 0.0
        rec = (self.registry.view().record("order", order.parent_id) if m is None
               else m.tx.get("order", order.parent_id))
        return 0.0 if rec is None else abs(float(rec.data.get("filled", 0.0)))

    def _fill(
        self,
        order: Order,
        when: datetime,
        t: pd.Timestamp,
        close: float,
        last_close: Mapping[str, float],
        volume: float | None = None,
        m: Mutation | None = None,
    ) -> Fill | None:
        """The fill ``order`` gets now, or None; inside ``m`` when given (its reads see its writes).

        Outside a transaction the reads go through the user's view (which
        checks read access); inside one, the booking itself checks the
        TRADER role.
        """
        lot = self._lots.get(order.asset, 1.0) or 1.0
        want = abs(order.remaining)
        if self.participation is not None:
            if volume is None:
                cap = math.floor(
                    self.participation * self.cost_model.adv_of(order.asset) / close / lot
                )
            else:
                cap = math.floor(self.participation * max(volume, 0.0) / lot + 1e-9)
            want = min(want, cap * lot)
        if m is None:
            pos = self.registry.positions(order.portfolio)
            cfg = self.registry.resolve_config(order.portfolio)
        else:
            pos = m.tx.positions(order.portfolio)
            cfg = m.config(order.portfolio)
        # Fill only what the registry's ledger guards will book (see Registry.record_trade).
        allow_short = self.allow_short and cfg.get("allow_short") is True
        margin_limit = float(cfg.get("margin_limit", 0.0))
        if order.quantity < 0 and not allow_short:
            want = min(want, max(pos.quantities.get(order.asset, 0.0), 0.0))
        if want <= 0:
            return None
        sign = 1.0 if order.quantity > 0 else -1.0
        q = sign * want
        prior = self._prior_fills(order, m)
        price, bd = self._costs(order.asset, q, close, t, prior)
        if q > 0:
            nav = pos.cash + sum(
                qty * float(last_close.get(a, 0.0)) for a, qty in pos.quantities.items() if qty
            )
            floor = max(-self.margin * max(nav, 0.0), -margin_limit)

            def affordable(units: float) -> bool:
                p, b = self._costs(order.asset, units, close, t, prior)
                # The very expression the ledger adds to cash (pmkit.ledger.cash_effect).
                return pos.cash + (-(units * p) - b.commission) >= floor

            if not affordable(q):
                lo, hi = 0, math.floor(q / lot)
                if hi * lot >= q:
                    hi -= 1
                while lo < hi:
                    mid = (lo + hi + 1) // 2
                    if affordable(mid * lot):
                        lo = mid
                    else:
                        hi = mid - 1
                if lo == 0:
                    return None
                q = lo * lot
                price, bd = self._costs(order.asset, q, close, t, prior)
        if order.limit_price is not None and (
            (q > 0 and price > order.limit_price) or (q < 0 and price < order.limit_price)
        ):
            return None
        return Fill(
            order_id=order.id,
            quantity=float(q),
            price=float(price),
            fee=float(bd.commission),
            ts=when,
            id=f"{order.id}:{len(order.fill_ids) + 1}",
            reference_price=close,
            commission=bd.commission,
            spread=bd.spread,
            impact=bd.impact,
        )
