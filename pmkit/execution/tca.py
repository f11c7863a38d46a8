"""Transaction-cost analysis of executed parent orders: implementation shortfall and benchmarks.

Pure functions over stored records: a parent `pmkit.execution.Order` whose
``info["execution"]`` is an `pmkit.execution.plan.ExecutionPlan`.

Implementation shortfall (Perold 1988; in the "expanded" form of Kissell &
Glantz, *Optimal Trading Strategies*, 2003, ch. 2) measures the executed
portfolio against a paper portfolio that traded the whole order ``Q`` at the
decision price ``p_d`` (``Order.reference_price``) for free. With fills
``q_j`` (signed units) at prices ``p_j``, the market price ``m_j`` at each
fill, fees ``f_j``, the arrival price ``p_a`` and the close ``p_c`` valuing
the unfilled residual ``R = Q - sum q_j``, in currency::

    delay       = sum q_j (p_a - p_d)     price drift before the order worked
    timing      = sum q_j (m_j - p_a)     market moves while it worked
    impact      = sum q_j (p_j - m_j)     price paid over the market: spread + impact
    opportunity = R (p_c - p_d)           the residual's missed move
    fees        = sum f_j
    total       = sum q_j p_j + fees + R p_c - Q p_d

and ``trading = timing + impact``. Signed quantities make every part
positive when it hurt, for buys and sells alike. ``bps`` are of the arrival
notional ``|Q| p_a``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pmkit.errors import InsufficientDataError, PmkitError, ValidationError
from pmkit.execution.broker import Order
from pmkit.execution.impact import ImpactFit, calibrate_square_root
from pmkit.execution.plan import ChildFill, ExecutionPlan
from pmkit.validation import MAX_AMOUNT, MAX_PRICE, MAX_QUANTITY, check_number

__all__ = ["COMPONENTS", "LEVELS", "ImpactCalibration", "ShortfallBreakdown", "TCAReport",
           "calibration_error", "shortfall", "tca"]

#: The additive parts of the shortfall (currency), in the order they are charted.
COMPONENTS: tuple[str, ...] = ("delay", "timing", "impact", "opportunity", "fees")
#: Levels `tca` reports at.
LEVELS: tuple[str, ...] = ("parent", "child", "portfolio", "algorithm", "strategy")

_CURRENCY = ("delay", "timing", "impact", "trading", "opportunity", "fees", "total")
_ESTIMATES = ("estimated_cost", "realized_cost", "estimate_error")
_BENCHMARKS = {"vs_arrival_bps": "arrival_price", "vs_vwap_bps": "interval_vwap",
               "vs_close_bps": "close_price"}
_LABELS = ("portfolio", "asset", "algorithm", "strategy", "side")
_PRICES = ("quantity", "filled", "filled_fraction", "notional", "arrival_price", "avg_price",
           "interval_vwap", "close_price")
_KINDS = ({c: "money" for c in (*_CURRENCY, *_ESTIMATES, "notional")}
          | {c: "ratio" for c in ("total_bps", *_BENCHMARKS, "total_bps_mean",
                                  "vs_vwap_bps_mean", "arrival_price", "avg_price",
                                  "interval_vwap", "close_price", "quantity", "filled")}
          | {"filled_fraction": "percent", "count": "count"})


def _bps(cost: float, notional: float) -> float:
    return cost / notional * 1e4 if notional > 0 else math.nan


@dataclass(frozen=True)
class ShortfallBreakdown:
    """Perold's implementation shortfall of one parent order, with its benchmarks.

    Attributes
    ----------
    parent, portfolio, asset, algorithm : str
    strategy : str or None
        ``Order.info["strategy"]``.
    side : str
        ``"buy"`` or ``"sell"``.
    quantity, filled : float
        Signed units ordered and filled (sum of the plan's fills).
    decision_price, arrival_price : float
        ``p_d`` (the order's ``reference_price``) and ``p_a`` (currency per unit).
    avg_price, interval_vwap, close_price : float
        Average fill price, market VWAP over the intervals worked and the
        session's close (or last price while working); NaN when not known.
    delay, timing, impact, opportunity, fees : float
        The shortfall's parts (currency, positive = cost; see the module
        docstring). ``opportunity`` is NaN when a residual is left and no
        close or last price is known.
    vs_arrival_bps, vs_vwap_bps, vs_close_bps : float
        Average fill price against each benchmark ``b``:
        ``side (avg_price - b) / b * 1e4`` (bps, positive = paid more than ``b``
        when buying, received less when selling); NaN before any fill.
    estimated_cost : float
        Pre-trade estimate ``commission + spread + impact`` for the whole
        parent (``Order.info["estimate"]``, currency); NaN when missing.
    """

    parent: str
    portfolio: str
    asset: str
    algorithm: str
    strategy: str | None
    side: str
    quantity: float
    filled: float
    decision_price: float
    arrival_price: float
    avg_price: float
    interval_vwap: float
    close_price: float
    delay: float
    timing: float
    impact: float
    opportunity: float
    fees: float
    vs_arrival_bps: float
    vs_vwap_bps: float
    vs_close_bps: float
    estimated_cost: float

    @property
    def trading(self) -> float:
        """``timing + impact = sum q_j (p_j - p_a)`` (currency)."""
        return self.timing + self.impact

    @property
    def total(self) -> float:
        """``delay + trading + opportunity + fees`` (currency): paper minus real portfolio."""
        return self.delay + self.trading + self.opportunity + self.fees

    @property
    def notional(self) -> float:
        """Arrival notional ``|Q| p_a`` (currency): the denominator of every ``*_bps``."""
        return abs(self.quantity) * self.arrival_price

    @property
    def total_bps(self) -> float:
        """`total` in bps of `notional`."""
        return _bps(self.total, self.notional)

    @property
    def filled_fraction(self) -> float:
        """``filled / quantity`` (fraction)."""
        return self.filled / self.quantity

    @property
    def realized_cost(self) -> float:
        """``fees + impact`` (currency): the execution's own cost, market moves excluded."""
        return self.fees + self.impact

    @property
    def estimate_error(self) -> float:
        """``realized_cost - estimated_cost`` (currency; positive = costlier than estimated).

        The estimate is for the whole parent, the realized cost for what
        filled: for a partly filled parent the two cover different sizes.
        """
        return self.realized_cost - self.estimated_cost

    def row(self) -> dict[str, Any]:
        """The `tca` parent-level row (without the index)."""
        out = {name: getattr(self, name) for name in (*_LABELS, *_PRICES, *_CURRENCY)}
        out["total_bps"] = self.total_bps
        out |= {name: getattr(self, name) for name in (*_BENCHMARKS, *_ESTIMATES)}
        return out


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, value, "must be text")
    return value


def _plan(order: Any) -> ExecutionPlan:
    if not isinstance(order, Order):
        raise ValidationError("order", order, "must be a pmkit.execution.Order")
    info = order.info
    if not isinstance(info, Mapping) or not isinstance(info.get("execution"), Mapping):
        raise ValidationError("execution", None if not isinstance(info, Mapping)
                              else info.get("execution"), "the order has no execution plan")
    try:
        plan = ExecutionPlan.from_record(info["execution"])
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise ValidationError("execution", type(exc).__name__,
                              f"not an execution plan record: {exc}") from exc
    if not isinstance(plan.fills, tuple) or not all(isinstance(f, ChildFill)
                                                    for f in plan.fills):
        raise ValidationError("fills", plan.fills, "must be a list of child fill records")
    return plan


def _estimate(info: Mapping[str, Any]) -> float:
    data = info.get("estimate")
    if data is None:
        return math.nan
    if not isinstance(data, Mapping):
        raise ValidationError("estimate", data, "must be a mapping of cost parts")
    return sum(check_number(data.get(k), f"estimate.{k}", minimum=0.0)
               for k in ("commission", "spread", "impact"))


def shortfall(order: Order) -> ShortfallBreakdown:
    """Implementation shortfall of a parent order in delay, timing, impact, opportunity, fees.

    Perold (1988); Kissell & Glantz (2003), ch. 2 (see the module docstring).

    Parameters
    ----------
    order : Order
        A parent order with ``info["execution"]`` (an `ExecutionPlan` record);
        optional ``info["estimate"]`` (``commission``/``spread``/``impact``,
        currency) and ``info["strategy"]`` (text).

    Returns
    -------
    ShortfallBreakdown
        Parts in currency (positive = cost); ``total`` equals
        ``sum q_j p_j + fees + R p_c - Q p_d`` (paper minus real portfolio).

    Raises
    ------
    ValidationError
        Not an `Order`, no or a malformed plan, or a value out of range
        (naming it, e.g. ``fills[2].price``).
    """
    plan = _plan(order)
    qty = check_number(order.quantity, "quantity", limit=MAX_QUANTITY)
    if qty == 0:
        raise ValidationError("quantity", order.quantity, "a parent order must be non-zero")
    p_d = check_number(order.reference_price, "reference_price", limit=MAX_PRICE, positive=True)
    p_a = check_number(plan.arrival_price, "arrival_price", limit=MAX_PRICE, positive=True)
    strategy = order.info.get("strategy")
    if strategy is not None:
        _text(strategy, "strategy")
    filled = value = delay = timing = impact = fees = 0.0
    for j, f in enumerate(plan.fills):
        q = check_number(f.quantity, f"fills[{j}].quantity", limit=MAX_QUANTITY)
        if q * qty < 0:
            raise ValidationError(f"fills[{j}].quantity", f.quantity,
                                  "a fill must be on the parent's side")
        p = check_number(f.price, f"fills[{j}].price", limit=MAX_PRICE, positive=True)
        m = check_number(f.market_price, f"fills[{j}].market_price", limit=MAX_PRICE,
                         positive=True)
        fees += check_number(f.fee, f"fills[{j}].fee", limit=MAX_AMOUNT, minimum=0.0)
        for part in ("spread", "impact"):  # shown per child and used by calibration_error
            check_number(getattr(f, part), f"fills[{j}].{part}", limit=MAX_AMOUNT)
        filled += q
        value += q * p
        delay += q * (p_a - p_d)
        timing += q * (m - p_a)
        impact += q * (p - m)
    if plan.close_price is not None:
        p_c = check_number(plan.close_price, "close_price", limit=MAX_PRICE, positive=True)
    else:
        last = check_number(plan.last_price, "last_price", limit=MAX_PRICE, minimum=0.0)
        p_c = last if last > 0 else math.nan  # a plan that saw no market price yet
    mv = check_number(plan.market_value, "market_value", minimum=0.0)
    vol = check_number(plan.market_volume, "market_volume", minimum=0.0)
    vwap = mv / vol if vol > 0 else math.nan
    if vol > 0 and not 0 < vwap <= MAX_PRICE:
        raise ValidationError("market_value", mv, f"over market_volume {vol:g} is not a price "
                              f"in (0, {MAX_PRICE:g}]")
    residual = qty - filled
    avg = value / filled if filled else math.nan
    side = 1.0 if qty > 0 else -1.0

    def versus(benchmark: float) -> float:
        return side * (avg - benchmark) / benchmark * 1e4

    return ShortfallBreakdown(
        parent=_text(order.id, "id"), portfolio=_text(order.portfolio, "portfolio"),
        asset=_text(order.asset, "asset"), algorithm=_text(plan.algorithm, "algorithm"),
        strategy=strategy, side="buy" if qty > 0 else "sell", quantity=qty, filled=filled,
        decision_price=p_d, arrival_price=p_a, avg_price=avg, interval_vwap=vwap,
        close_price=p_c, delay=delay, timing=timing, impact=impact,
        opportunity=0.0 if residual == 0 else residual * (p_c - p_d), fees=fees,
        vs_arrival_bps=versus(p_a), vs_vwap_bps=versus(vwap), vs_close_bps=versus(p_c),
        estimated_cost=_estimate(order.info))


def _orders(orders: Any) -> list[Order]:
    if isinstance(orders, str | bytes | Mapping) or not isinstance(orders, Iterable):
        raise ValidationError("orders", orders, "must be a sequence of parent Orders")
    items = list(orders)
    for i, o in enumerate(items):
        if not isinstance(o, Order):
            raise ValidationError("orders", o, f"item {i} is not a pmkit.execution.Order")
    return items


def _breakdowns(orders: list[Order]) -> list[ShortfallBreakdown]:
    out, seen = [], set()
    for o in orders:
        try:
            b = shortfall(o)
        except PmkitError as err:
            err.add_note(f"in parent order {o.id!r}")
            raise
        if b.parent in seen:
            raise ValidationError("orders", b.parent, "a parent order appears twice")
        seen.add(b.parent)
        out.append(b)
    return out


def _parent_frame(breakdowns: list[ShortfallBreakdown]) -> pd.DataFrame:
    columns = [*_LABELS, *_PRICES, *_CURRENCY, "total_bps", *_BENCHMARKS, *_ESTIMATES]
    index = pd.Index([b.parent for b in breakdowns], name="parent", dtype=object)
    return pd.DataFrame([b.row() for b in breakdowns], columns=columns, index=index)


def _child_frame(orders: list[Order], breakdowns: list[ShortfallBreakdown]) -> pd.DataFrame:
    rows = []
    for o, b in zip(orders, breakdowns, strict=True):
        side = 1.0 if b.quantity > 0 else -1.0
        for f in _plan(o).fills:
            rows.append({"child": f.child, "parent": b.parent, "portfolio": b.portfolio,
                         "asset": b.asset, "algorithm": b.algorithm, "interval": f.interval,
                         "venue": f.venue, "ts": f.ts, "quantity": float(f.quantity),
                         "price": float(f.price), "market_price": float(f.market_price),
                         "slippage_bps": side * (f.price - b.arrival_price)
                         / b.arrival_price * 1e4,
                         "fee": float(f.fee), "spread": float(f.spread),
                         "impact": float(f.impact)})
    columns = ["child", "parent", "portfolio", "asset", "algorithm", "interval", "venue", "ts",
               "quantity", "price", "market_price", "slippage_bps", "fee", "spread", "impact"]
    return pd.DataFrame(rows, columns=columns).rename_axis("fill")


def _aggregate(parents: pd.DataFrame, by: str) -> pd.DataFrame:
    """Sum currency columns per ``by``; bps on the summed notional.

    A benchmark's bps is the filled-notional-weighted mean of the parents'
    (weights ``|filled| * benchmark``), i.e. the summed currency slippage
    against that benchmark over the summed filled notional at it.
    """
    work = parents[[by, "notional", *_CURRENCY, *_ESTIMATES]].copy()
    for bps, price in _BENCHMARKS.items():
        weight = parents["filled"].abs() * parents[price]
        known = parents[bps].notna() & weight.notna()
        work[f"{bps}:w"] = weight.where(known, 0.0)
        work[f"{bps}:x"] = (weight * parents[bps]).where(known, 0.0)
    groups = work.groupby(by, dropna=False, sort=True)
    summed = groups.sum(skipna=False)  # one unknown opportunity leaves the group's total unknown
    out = pd.DataFrame({"count": groups.size()})
    out["notional"] = summed["notional"]
    for c in _CURRENCY:
        out[c] = summed[c]
    out["total_bps"] = summed["total"] / summed["notional"] * 1e4
    for bps in _BENCHMARKS:
        w = summed[f"{bps}:w"]
        out[bps] = (summed[f"{bps}:x"] / w).where(w > 0)
    for c in _ESTIMATES:
        out[c] = summed[c]
    return out


def tca(orders: Iterable[Order], by: str = "parent") -> pd.DataFrame:
    """Transaction-cost analysis of parent orders as a table.

    Parameters
    ----------
    orders : sequence of Order
        Parent orders with an ``info["execution"]`` plan (ids unique).
    by : {"parent", "child", "portfolio", "algorithm", "strategy"}
        ``"parent"``: one row per parent (index ``parent``), the columns of
        `ShortfallBreakdown` (currency: ``delay`` ... ``total``,
        ``estimated_cost``, ``realized_cost``, ``estimate_error``,
        ``notional``; bps: ``total_bps`` and ``vs_*_bps``).
        ``"child"``: one row per child fill (``child``, ``parent``, ``interval``,
        ``venue``, ``ts``, ``quantity``, ``price``, ``market_price``,
        ``slippage_bps`` against arrival, ``fee``, ``spread``, ``impact``).
        Otherwise one row per group: ``count``, currency columns summed,
        ``total_bps`` on the summed arrival notional and each ``vs_*_bps``
        weighted by filled notional at its benchmark. A group with an
        unknown value (NaN) in a currency column has that sum NaN.

    Returns
    -------
    pandas.DataFrame

    Raises
    ------
    ValidationError
        ``orders`` is not a sequence of `Order` or repeats a parent; an
        unknown ``by``; a malformed order (see `shortfall`).
    """
    if not isinstance(by, str) or by not in LEVELS:
        raise ValidationError("by", by, f"must be one of {', '.join(LEVELS)}")
    items = _orders(orders)
    breakdowns = _breakdowns(items)
    if by == "child":
        return _child_frame(items, breakdowns)
    parents = _parent_frame(breakdowns)
    return parents if by == "parent" else _aggregate(parents, by)


@dataclass(frozen=True)
class ImpactCalibration:
    """The square-root law refitted on realized fills, against the cost model's ``Y``.

    Attributes
    ----------
    fit : ImpactFit
        ``Y`` fitted from the fills, its standard error and the fills used.
    model_coefficient : float
        The cost model's ``Y`` (dimensionless).
    """

    fit: ImpactFit
    model_coefficient: float

    @property
    def error(self) -> float:
        """``fit.coefficient - model_coefficient`` (dimensionless; > 0: the model is too cheap)."""
        return self.fit.coefficient - self.model_coefficient

    @property
    def z_score(self) -> float:
        """`error` in units of the fit's standard error (±inf for an exact fit that differs)."""
        if self.fit.standard_error > 0:
            return self.error / self.fit.standard_error
        return 0.0 if self.error == 0 else math.copysign(math.inf, self.error)


def _per_asset(source: Mapping[str, Any], mapping: Mapping[str, Any] | None, asset: str,
               key: str, **limits: Any) -> float:
    if key in source:
        return check_number(source[key], f"params.{key}", **limits)
    if mapping is not None and asset in mapping:
        return check_number(mapping[asset], f"{key}[{asset!r}]", **limits)
    raise InsufficientDataError(f"params.{key}", asset,
                                f"the plan's params have no {key!r} and none was given")


def calibration_error(orders: Iterable[Order], cost_model_coefficient: float, *,
                      volatility: Mapping[str, float] | None = None,
                      adv: Mapping[str, float] | None = None) -> ImpactCalibration:
    """How far the cost model's impact coefficient ``Y`` is from what the fills realized.

    The square-root law holds for a metaorder, not for each of its slices
    (Tóth et al. 2011), so each parent is one observation: its realized
    impact, as a fraction of the market value of its fills, is the price
    paid over the market less the half-spread, ``(sum_j q_j (p_j - m_j) -
    sum_j spread_j) / sum_j |q_j| m_j``; it is regressed on the law's
    ``volatility * sqrt(sum_j |q_j| m_j / ADV)`` by `calibrate_square_root`.
    (The paper broker charges each slice the impact it adds to its parent's,
    so at a constant price this recovers its ``Y`` exactly.)

    Parameters
    ----------
    orders : sequence of Order
        Parent orders with execution plans.
    cost_model_coefficient : float
        The model's ``Y`` (dimensionless, >= 0).
    volatility, adv : mapping asset -> float, optional
        Daily volatility (fraction) and average daily value traded
        (currency) per asset, for plans whose ``params`` lack
        ``"volatility"`` / ``"adv"`` (the plan's values come first).

    Returns
    -------
    ImpactCalibration
        ``fit.fills`` counts the parents used (those with fills).

    Raises
    ------
    InsufficientDataError
        A parent's volatility or ADV is unknown, or fewer than 2 parents filled.
    ValidationError
        Malformed orders or values (naming them).
    """
    model = check_number(cost_model_coefficient, "cost_model_coefficient", limit=1e3,
                         minimum=0.0)
    for name, mapping in (("volatility", volatility), ("adv", adv)):
        if mapping is not None and not isinstance(mapping, Mapping):
            raise ValidationError(name, mapping, "must be a mapping asset -> number")
    items = _orders(orders)
    _breakdowns(items)  # validates every order and fill
    realized, vols, parts = [], [], []
    for o in items:
        plan = _plan(o)
        params = plan.params if isinstance(plan.params, Mapping) else {}
        size = sum(abs(float(f.quantity)) * float(f.market_price) for f in plan.fills)
        if size == 0:
            continue
        paid = sum(float(f.quantity) * (f.price - f.market_price) - float(f.spread)
                   for f in plan.fills)
        daily = _per_asset(params, volatility, o.asset, "volatility", limit=1e3, minimum=0.0)
        traded = _per_asset(params, adv, o.asset, "adv", positive=True)
        realized.append(paid / size)
        vols.append(daily)
        parts.append(size / traded)
    return ImpactCalibration(calibrate_square_root(realized, vols, parts), model)


class TCAReport:
    """Transaction-cost analysis of a set of parent orders, for a notebook.

    Parameters
    ----------
    orders : sequence of Order
        Parent orders with execution plans (validated here, as by `tca`).

    Examples
    --------
    ``TCAReport(orders).table(by="algorithm")``, ``.summary()``, ``.plot()``;
    in a notebook the report shows its summary and parent table.
    """

    def __init__(self, orders: Iterable[Order]) -> None:
        self._orders = _orders(orders)
        self._breakdowns = _breakdowns(self._orders)
        self._parents = _parent_frame(self._breakdowns)

    @property
    def breakdowns(self) -> tuple[ShortfallBreakdown, ...]:
        """One `ShortfallBreakdown` per parent, in the given order."""
        return tuple(self._breakdowns)

    def table(self, by: str = "parent") -> pd.DataFrame:
        """`tca` of the report's orders at level ``by`` (see `tca`)."""
        if not isinstance(by, str) or by not in LEVELS:
            raise ValidationError("by", by, f"must be one of {', '.join(LEVELS)}")
        if by == "child":
            return _child_frame(self._orders, self._breakdowns)
        return self._parents.copy() if by == "parent" else _aggregate(self._parents, by)

    def calibration(self, model_coefficient: float) -> ImpactCalibration:
        """The cost model's calibration error on these parents (`calibration_error`).

        Parameters
        ----------
        model_coefficient : float
            The model's ``Y`` (e.g. ``CostModel().impact_coefficient``).
        """
        return calibration_error(self._orders, model_coefficient)

    def summary(self) -> pd.DataFrame:
        """Per algorithm: count, notional and shortfall in bps.

        Columns ``count``, ``notional`` (arrival, currency), ``total_bps`` (on
        the summed notional), ``total_bps_mean`` and ``vs_vwap_bps_mean``
        (plain means over the algorithm's parents, bps).
        """
        groups = self._parents.groupby("algorithm", sort=True)
        out = self.table(by="algorithm")[["count", "notional", "total_bps"]]
        return out.assign(total_bps_mean=groups["total_bps"].mean(),
                          vs_vwap_bps_mean=groups["vs_vwap_bps"].mean())

    def _repr_html_(self) -> str:
        from pmkit.display import html_table

        if self._parents.empty:
            return "<b>TCA report</b>: no parent orders"
        return (html_table(self.summary(), _KINDS, index=True, caption="TCA by algorithm")
                + html_table(self._parents, _KINDS, index=True, caption="TCA by parent order"))

    def plot(self, by: str = "parent", **kwargs: Any) -> Any:
        """Stacked bars of the shortfall's parts in bps of arrival notional (hvplot).

        Parameters
        ----------
        by : {"parent", "portfolio", "algorithm", "strategy"}
            One bar per row of ``table(by)``; the stacks are `COMPONENTS`.
        **kwargs
            Passed to ``hvplot.bar``.

        Needs ``pmkit[ui]``.
        """
        if by == "child":
            raise ValidationError("by", by, "a child fill has no shortfall parts to chart")
        frame = self.table(by)
        from pmkit._hvplot import ensure_hvplot

        ensure_hvplot()
        data = frame[list(COMPONENTS)].div(frame["notional"], axis=0) * 1e4
        labels = pd.Index(frame.index, dtype=object).map(lambda x: "(none)" if x is None
                                                         or x != x else str(x))
        data = data.set_axis(labels).rename_axis(by).reset_index()
        options = {"x": by, "y": list(COMPONENTS), "stacked": True, "rot": 90,
                   "ylabel": "bps of arrival notional",
                   "title": f"Implementation shortfall by {by}"} | kwargs
        return data.hvplot.bar(**options)
