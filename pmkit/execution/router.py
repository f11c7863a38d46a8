"""The smart order router: which algorithm works an order, and how a slice splits across venues.

An order asking for the algorithm `SMART_ORDER` (``"smart"``) is routed here:
`SmartRouter.decide` picks one of `pmkit.execution.plan.ALGORITHMS` from the
order's `OrderFeatures` by a rule table, and `split` divides each child slice
across venues by expected cost. Both are pure and deterministic; the
execution engine stores the `RouteDecision` in ``ExecutionPlan.route``.

The rule table (`DEFAULT_RULES`)
--------------------------------
Rules are tried in order; the first that matches routes the order. The
participation ``p`` is the order's notional over the asset's ADV (average
daily value traded); ``p / f`` is its share of the volume left in the
session, ``f`` being the fraction of the session left (volume is taken as
uniform over the session, an approximation: the real profile is U-shaped).

| # | rule | when | algorithm | params |
|---|------|------|-----------|--------|
| 1 | `tiny` | ``p < 0.1 %`` | `twap` | ``horizon_fraction`` 0.1 |
| 2 | `urgent` | urgency ``"high"`` | `is` | ``risk_aversion`` 1e-5 |
| 3 | `very_large` | ``p / f > 20 %`` | `pov` | ``participation`` 0.1 |
| 4 | `wide_spread` | spread ``> 20`` bp | `pov` | ``participation`` 0.05 |
| 5 | `volatile` | daily volatility ``> 3 %`` | `is` | ``risk_aversion`` 1e-6 |
| 6 | `medium` | ``1 % <= p <= 20 %`` | `vwap` | |
| 7 | `default` | otherwise | `twap` | ``horizon_fraction`` 1.0 |

Why these thresholds:

1. Under 0.1 % of ADV the square-root impact ``Y sigma sqrt(p)`` is a few bp
   (0.5 x 2 % x sqrt(0.001) = 3 bp), about a typical half-spread: the cost is
   mostly spread, scheduling saves little, so finish within a tenth of the
   session left.
2. The caller values speed: Almgren-Chriss with a high ``lambda`` front-loads,
   trading impact for less timing risk. Urgency overrides size: the caller
   accepts the impact.
3. A fifth of the volume left in the session is too large a footprint to
   schedule into it; at 10 % of volume the order takes ``p / 0.1`` sessions
   and may carry over (the reasons say when it will).
4. Crossing a spread over 20 bp costs more than 10 bp a trade: trade small
   and passively, at 5 % of volume.
5. 3 % a day is about 48 % annualized: timing risk dominates, so lean the
   schedule forward, moderately (1e-6 is the ``lambda`` of the
   `AlmgrenChriss` example, after Almgren & Chriss 2000; ``lambda`` is per
   currency, so its pull grows with the order's size).
6. From 1 % to 20 % of ADV impact matters: follow the volume profile, which
   is also the benchmark the cost is measured against.
7. The rest (0.1 % to 1 % of ADV, calm, normal spread): spread evenly over
   the session left.

``horizon_fraction`` is the fraction of the session left to schedule over;
``risk_aversion`` is Almgren-Chriss ``lambda`` (per currency); ``participation``
is the POV rate (fraction of interval volume). Urgency ``"low"`` routes as
``"normal"`` by default; it is there for custom rules.

Venue split
-----------
A venue fills at most ``liquidity`` of the market's interval volume. Filling
``q`` units there at price ``P`` costs, in currency (`expected_cost`),

``n fee_bps / 1e4 + n Y sigma_i sqrt(|q| / (liquidity V)) + n sigma sqrt(latency_s / 23400)``

(fee, impact and latency risk), with ``n = |q| P``, ``V`` the interval
volume (units), ``sigma`` the daily volatility and ``sigma_i = sigma
sqrt(interval_seconds / 23400)`` the interval's (a session is 23,400 s).
The impact is `square_root_impact` with the venue's interval value traded
standing in for ADV; the latency term is one standard deviation of the
price move while the order is in flight, a proxy for the cost of arriving
late. The spread is the same on every venue, so it does not change the
split and is left out. Each venue's cost is convex in ``|q|``, so filling
lots in order of their marginal cost is optimal; `split` finds the marginal
cost level by bisection instead of placing lot by lot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import pandas as pd

from pmkit.codec import decode, encode
from pmkit.errors import ValidationError
from pmkit.execution.impact import square_root_impact
from pmkit.execution.plan import ALGORITHMS
from pmkit.validation import (
    MAX_AMOUNT,
    MAX_NAME_LENGTH,
    MAX_PRICE,
    MAX_QUANTITY,
    check_limit,
    check_number,
    check_text,
)

__all__ = [
    "DEFAULT_RULES",
    "SESSION_SECONDS",
    "SMART_ORDER",
    "URGENCIES",
    "OrderFeatures",
    "RouteDecision",
    "RouteRule",
    "SmartRouter",
    "Split",
    "Venue",
    "expected_cost",
    "split",
]

#: The algorithm an order names to be routed by `SmartRouter`.
SMART_ORDER = "smart"
#: Accepted ``OrderFeatures.urgency`` values.
URGENCIES: tuple[str, ...] = ("low", "normal", "high")
#: Seconds in a trading session (6.5 hours): scales daily volatility to an interval.
SESSION_SECONDS = 23_400.0
#: Largest daily volatility accepted (fraction): 1,000 %, beyond any traded asset.
_MAX_VOLATILITY = 10.0


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%" if x >= 1e-4 or x == 0 else f"{100 * x:.2g}%"


@dataclass(frozen=True)
class OrderFeatures:
    """What the router knows about an order.

    Parameters
    ----------
    quantity : float
        Signed units (buy > 0, non-zero).
    price : float
        Reference price, currency per unit (> 0).
    adv : float
        Average daily value traded, currency (> 0).
    volatility : float
        Daily volatility of simple returns (fraction, 0 to 10).
    spread_bps : float
        Full bid/ask spread, basis points (0 to 10,000).
    urgency : str
        One of `URGENCIES`.
    session_fraction_left : float, default 1
        Fraction of the trading session still to come (0 to 1).
    """

    quantity: float
    price: float
    adv: float
    volatility: float
    spread_bps: float
    urgency: str = "normal"
    session_fraction_left: float = 1.0

    def __post_init__(self) -> None:
        q = check_number(self.quantity, "quantity", limit=MAX_QUANTITY)
        if q == 0:
            raise ValidationError("quantity", self.quantity, "must be non-zero")
        values = {
            "quantity": q,
            "price": check_number(self.price, "price", limit=MAX_PRICE, positive=True),
            "adv": check_number(self.adv, "adv", limit=MAX_AMOUNT, positive=True),
            "volatility": check_number(self.volatility, "volatility", minimum=0.0,
                                       maximum=_MAX_VOLATILITY),
            "spread_bps": check_number(self.spread_bps, "spread_bps", minimum=0.0,
                                       maximum=1e4),
            "session_fraction_left": check_number(self.session_fraction_left,
                                                  "session_fraction_left",
                                                  minimum=0.0, maximum=1.0),
        }
        if not isinstance(self.urgency, str) or self.urgency not in URGENCIES:
            raise ValidationError("urgency", self.urgency, f"must be one of {URGENCIES}")
        check_limit(abs(q) * values["price"], "quantity", MAX_AMOUNT, "the notional")
        if not math.isfinite(abs(q) * values["price"] / values["adv"]):
            raise ValidationError("adv", self.adv, "is too small: the participation overflows")
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def participation(self) -> float:
        """``|quantity| * price / adv``: the order's notional as a fraction of ADV."""
        return abs(self.quantity) * self.price / self.adv

    @property
    def remaining_participation(self) -> float:
        """`participation` over `session_fraction_left` (inf when no session is left)."""
        f = self.session_fraction_left
        return self.participation / f if f > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """The fields and `participation`, JSON-ready."""
        return encode(self) | {"participation": self.participation}


@dataclass(frozen=True)
class RouteRule:
    """One row of the router's rule table.

    Attributes
    ----------
    name : str
        Short identifier, unique in a table.
    algorithm : str
        One of `pmkit.execution.plan.ALGORITHMS`.
    params : mapping
        The algorithm's parameters (held read-only; copied into the decision).
    when : str
        The condition in words, for the table.
    predicate : callable
        ``predicate(features) -> bool``, pure.
    explain : callable, optional
        ``explain(features, matched) -> str``: the test with its numbers, for
        the decision's reasons; default ``when``.
    """

    name: str
    algorithm: str
    params: Mapping[str, Any]
    when: str
    predicate: Callable[[OrderFeatures], bool]
    explain: Callable[[OrderFeatures, bool], str] | None = None

    def __post_init__(self) -> None:
        check_text(self.name, "name", max_length=MAX_NAME_LENGTH, multiline=False,
                   allow_empty=False)
        if self.algorithm not in ALGORITHMS:
            raise ValidationError("algorithm", self.algorithm, f"must be one of {ALGORITHMS}")
        if not isinstance(self.params, Mapping):
            raise ValidationError("params", self.params, "must be a mapping")
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        if not callable(self.predicate):
            raise ValidationError("predicate", self.predicate, "must be callable")

    def reason(self, features: OrderFeatures, matched: bool) -> str:
        """Why this rule did (``matched``) or did not route ``features``."""
        if self.explain is not None:
            return self.explain(features, matched)
        return f"{self.when}{'' if matched else ': no'}"


def _is(ok: bool) -> str:
    return "is" if ok else "is not"


def _very_large(f: OrderFeatures, matched: bool) -> str:
    left = f"{_pct(f.session_fraction_left)} of the session left"
    text = (f"participation {_pct(f.participation)} of ADV {_is(matched)} above 20% of "
            f"the remaining volume ({left})")
    sessions = f.participation / 0.1
    if matched and sessions > f.session_fraction_left:
        text += (f"; at 10% of volume it needs {sessions:.3g} sessions of volume, more than "
                 f"is left: it carries over")
    return text


DEFAULT_RULES: tuple[RouteRule, ...] = (
    RouteRule("tiny", "twap", {"horizon_fraction": 0.1}, "participation < 0.1% of ADV",
              lambda f: f.participation < 0.001,
              lambda f, m: f"participation {_pct(f.participation)} of ADV {_is(m)} below "
                           f"0.1%" + (": the cost is mostly spread, get it done" if m else "")),
    RouteRule("urgent", "is", {"risk_aversion": 1e-5}, "urgency is high",
              lambda f: f.urgency == "high",
              lambda f, m: f"urgency {f.urgency!r} {_is(m)} high"),
    RouteRule("very_large", "pov", {"participation": 0.1},
              "participation > 20% of the session's remaining volume",
              lambda f: f.remaining_participation > 0.2, _very_large),
    RouteRule("wide_spread", "pov", {"participation": 0.05}, "spread > 20 bp",
              lambda f: f.spread_bps > 20,
              lambda f, m: f"spread {f.spread_bps:.3g} bp {_is(m)} wider than 20 bp"),
    RouteRule("volatile", "is", {"risk_aversion": 1e-6}, "daily volatility > 3%",
              lambda f: f.volatility > 0.03,
              lambda f, m: f"daily volatility {_pct(f.volatility)} {_is(m)} above 3%"),
    RouteRule("medium", "vwap", {}, "1% <= participation <= 20% of ADV",
              lambda f: 0.01 <= f.participation <= 0.2,
              lambda f, m: f"participation {_pct(f.participation)} of ADV {_is(m)} between "
                           f"1% and 20%"),
    RouteRule("default", "twap", {"horizon_fraction": 1.0}, "otherwise",
              lambda f: True,
              lambda f, m: f"no earlier rule applies (participation {_pct(f.participation)} "
                           f"of ADV, urgency {f.urgency!r})"),
)


@dataclass(frozen=True)
class RouteDecision:
    """The router's choice for one order.

    Attributes
    ----------
    algorithm : str
        One of `pmkit.execution.plan.ALGORITHMS`.
    params : dict
        Its parameters.
    rule : str
        Name of the rule that matched.
    reasons : tuple of str
        The matching rule's test with its numbers first, then why each
        earlier rule did not apply.
    features : dict
        `OrderFeatures.to_dict` of the order.
    """

    algorithm: str
    params: dict[str, Any]
    rule: str
    reasons: tuple[str, ...]
    features: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict, by the one codec `pmkit.codec` (for ``ExecutionPlan.route``)."""
        return encode(self)

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> RouteDecision:
        """Inverse of `to_record`."""
        return decode(cls, d)


def _named_items(items: Any, field: str, kind: type) -> tuple[Any, ...]:
    """``items`` as a tuple: a non-empty sequence of ``kind`` with unique ``name``s."""
    if isinstance(items, str | bytes) or not isinstance(items, Sequence) or not items:
        raise ValidationError(field, items, f"must be a non-empty sequence of {kind.__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, kind):
            raise ValidationError(f"{field}[{i}]", item, f"must be a {kind.__name__}")
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        raise ValidationError(field, names, "names must be unique")
    return tuple(items)


class SmartRouter:
    """Routes an order to an algorithm by a rule table (first match wins).

    Parameters
    ----------
    rules : sequence of RouteRule, default `DEFAULT_RULES`
        Tried in order; end with a catch-all, or `decide` may find no match.
    """

    def __init__(self, rules: Sequence[RouteRule] = DEFAULT_RULES) -> None:
        self.rules: tuple[RouteRule, ...] = _named_items(rules, "rules", RouteRule)

    def decide(self, features: OrderFeatures | Mapping[str, Any]) -> RouteDecision:
        """The algorithm and parameters for an order, with the reasons.

        Parameters
        ----------
        features : OrderFeatures or mapping of its fields
            A mapping may be a decision's ``features`` (its ``participation``
            is recomputed, not read).

        Raises
        ------
        ValidationError
            Invalid features (naming the field), or no rule matched (``rules``).
        """
        if isinstance(features, Mapping):
            # a stored decision's features carry the derived participation: recomputed here
            features = {k: v for k, v in features.items() if k != "participation"}
            unknown = set(features) - {f.name for f in fields(OrderFeatures)}
            if unknown:
                raise ValidationError("features", sorted(map(str, unknown)), "unknown fields")
            try:
                features = OrderFeatures(**features)
            except TypeError as exc:
                raise ValidationError("features", features, str(exc)) from exc
        elif not isinstance(features, OrderFeatures):
            raise ValidationError("features", features, "must be OrderFeatures or a mapping")
        skipped = []
        for rule in self.rules:
            if rule.predicate(features):
                reasons = (rule.reason(features, True),
                           *(f"not {r.name}: {r.reason(features, False)}" for r in skipped))
                return RouteDecision(rule.algorithm, dict(rule.params), rule.name, reasons,
                                     features.to_dict())
            skipped.append(rule)
        raise ValidationError("rules", [r.name for r in self.rules],
                              "no rule matched: end the table with a catch-all")

    def split(self, quantity: float, venues: Sequence[Venue], *, price: float,
              volatility: float, interval_volume: float, interval_seconds: float,
              lot: float = 1.0) -> Split:
        """`split` (the module function): a child slice across venues by expected cost."""
        return split(quantity, venues, price=price, volatility=volatility,
                     interval_volume=interval_volume, interval_seconds=interval_seconds,
                     lot=lot)

    def table(self) -> pd.DataFrame:
        """The rules in order: columns ``name``, ``algorithm``, ``params``, ``when``."""
        return pd.DataFrame([{"name": r.name, "algorithm": r.algorithm,
                              "params": dict(r.params), "when": r.when} for r in self.rules],
                            columns=["name", "algorithm", "params", "when"])


@dataclass(frozen=True)
class Venue:
    """A place child orders can be sent.

    Parameters
    ----------
    name : str
        Unique among the venues of a split.
    fee_bps : float
        Commission per notional, basis points (>= 0).
    latency_ms : float
        Time from sending to the fill, milliseconds (>= 0).
    liquidity : float
        Fraction of the market's interval volume the venue can fill (0 to 1;
        0 is a venue that can take nothing now).
    impact_coefficient : float, default 0.5
        ``Y`` of the square-root law on this venue (>= 0).
    """

    name: str
    fee_bps: float
    latency_ms: float
    liquidity: float
    impact_coefficient: float = 0.5

    def __post_init__(self) -> None:
        check_text(self.name, "name", max_length=MAX_NAME_LENGTH, multiline=False,
                   allow_empty=False)
        checked = {
            "fee_bps": check_number(self.fee_bps, "fee_bps", minimum=0.0, maximum=1e4),
            "latency_ms": check_number(self.latency_ms, "latency_ms", minimum=0.0,
                                       maximum=1000 * SESSION_SECONDS),
            "liquidity": check_number(self.liquidity, "liquidity", minimum=0.0, maximum=1.0),
            "impact_coefficient": check_number(self.impact_coefficient, "impact_coefficient",
                                               minimum=0.0, maximum=1e3),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)


def _market(price: Any, volatility: Any, interval_volume: Any,
            interval_seconds: Any) -> tuple[float, float, float, float]:
    return (check_number(price, "price", limit=MAX_PRICE, positive=True),
            check_number(volatility, "volatility", minimum=0.0, maximum=_MAX_VOLATILITY),
            # + 0.0: -0.0 is accepted, and read as 0
            check_number(interval_volume, "interval_volume", limit=MAX_QUANTITY,
                         minimum=0.0) + 0.0,
            check_number(interval_seconds, "interval_seconds", positive=True,
                         maximum=SESSION_SECONDS))


def _impact(venue: Venue, units: float, price: float, volatility: float,
            interval_volume: float, interval_seconds: float) -> float:
    """Square-root impact cost of ``units`` (> 0, within capacity) on ``venue`` (currency)."""
    volatility_interval = volatility * math.sqrt(interval_seconds / SESSION_SECONDS)
    # the venue's interval capacity stands in for ADV, the interval volatility for the daily;
    # in units, not currency: the price cancels in the ratio and could underflow the product
    fraction = square_root_impact(units, volatility_interval, venue.liquidity * interval_volume,
                                  venue.impact_coefficient)
    return units * price * fraction


def _linear(venue: Venue, price: float, volatility: float) -> float:
    """Fee plus latency risk per unit (currency)."""
    latency = volatility * math.sqrt(venue.latency_ms / 1000 / SESSION_SECONDS)
    return price * (venue.fee_bps / 1e4 + latency)


def expected_cost(venue: Venue, quantity: float, price: float, volatility: float,
                  interval_volume: float, interval_seconds: float) -> float:
    """Expected cost of filling ``quantity`` on ``venue`` in one interval (currency).

    Fee plus square-root impact plus latency risk (see the module docstring).

    Parameters
    ----------
    venue : Venue
    quantity : float
        Signed units; ``|quantity|`` at most the venue's capacity
        ``liquidity * interval_volume``.
    price : float
        Currency per unit (> 0).
    volatility : float
        Daily volatility (fraction).
    interval_volume : float
        The market's volume over the interval, units (>= 0).
    interval_seconds : float
        Length of the interval, seconds (0 < ... <= 23,400).

    Raises
    ------
    ValidationError
        A value out of range, or a quantity beyond the venue's capacity (``quantity``).
    """
    if not isinstance(venue, Venue):
        raise ValidationError("venue", venue, "must be a Venue")
    q = abs(check_number(quantity, "quantity", limit=MAX_QUANTITY))
    price, volatility, interval_volume, interval_seconds = _market(
        price, volatility, interval_volume, interval_seconds)
    capacity = venue.liquidity * interval_volume
    if q > capacity * (1 + 1e-9):
        raise ValidationError("quantity", quantity,
                              f"exceeds venue {venue.name!r}'s capacity {capacity:g} units")
    check_limit(q * price, "quantity", MAX_AMOUNT, "the notional")
    if q == 0:
        return 0.0
    return (q * _linear(venue, price, volatility)
            + _impact(venue, q, price, volatility, interval_volume, interval_seconds))


@dataclass(frozen=True)
class Split:
    """A slice divided across venues.

    Attributes
    ----------
    quantities : dict of str to float
        Signed units per venue (every venue, 0 for those left out), whole lots.
    unplaced : float
        Signed units not placed: beyond the venues' capacity, or an odd lot.
    expected_costs : dict of str to float
        `expected_cost` of each venue's quantity (currency).
    reasons : tuple of str
        How the split was made, with the numbers.
    """

    quantities: dict[str, float]
    unplaced: float
    expected_costs: dict[str, float]
    reasons: tuple[str, ...] = ()

    @property
    def total_cost(self) -> float:
        """Sum of `expected_costs` (currency)."""
        return sum(self.expected_costs.values())

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict, by `pmkit.codec`."""
        return encode(self)


def _increment(linear: float, impact: float, k: int) -> float:
    """Cost of the ``k``-th lot (``k >= 1``): ``linear + impact (k^1.5 - (k-1)^1.5)``."""
    # k^1.5 - (k-1)^1.5 without the cancellation of the difference
    return linear + impact * (3.0 * k * k - 3.0 * k + 1.0) / (k**1.5 + (k - 1) ** 1.5)


def _count(linear: float, impact: float, cap: int, level: float) -> int:
    """Lots (at most ``cap``) on a venue whose increments are at most ``level``."""
    # a binary search, not the closed-form inverse: when the fee dominates, many increments
    # round to one float and an inverse would land far from the boundary
    low, high = 0, cap
    while low < high:
        mid = (low + high + 1) // 2
        if _increment(linear, impact, mid) <= level:
            low = mid
        else:
            high = mid - 1
    return low


def split(quantity: float, venues: Sequence[Venue], *, price: float, volatility: float,
          interval_volume: float, interval_seconds: float, lot: float = 1.0) -> Split:
    """Divide ``quantity`` across ``venues`` at the least total expected cost.

    Each venue gets whole lots on the order's side, at most its capacity
    ``liquidity * interval_volume``; the lots go where their marginal cost is
    lowest, which minimises the total because each venue's cost is convex.

    Parameters
    ----------
    quantity : float
        Signed units to place.
    venues : sequence of Venue
        With unique names.
    price, volatility, interval_volume, interval_seconds
        As in `expected_cost`.
    lot : float, default 1
        Units per lot (> 0; at most 1e12 lots per split).

    Returns
    -------
    Split
        Its quantities sum to ``quantity`` when that is a whole number of
        lots within the venues' capacity; the rest is ``unplaced``.

    Raises
    ------
    ValidationError
        A value out of range, naming it.
    """
    q = check_number(quantity, "quantity", limit=MAX_QUANTITY)
    venues = _named_items(venues, "venues", Venue)
    market = _market(price, volatility, interval_volume, interval_seconds)
    price, volatility, interval_volume, _ = market
    lot = check_number(lot, "lot", limit=MAX_QUANTITY, positive=True)
    check_limit(abs(q) * price, "quantity", MAX_AMOUNT, "the notional")
    if abs(q) / lot > MAX_QUANTITY:
        raise ValidationError("lot", lot, f"too small: {abs(q):g} units would be more "
                              f"than {MAX_QUANTITY:g} lots")
    lots = math.floor(abs(q) / lot + 1e-9)
    # capped before the floor: a tiny lot would make the ratio overflow
    room = [math.floor(min(v.liquidity * interval_volume / lot, MAX_QUANTITY) + 1e-9)
            for v in venues]
    caps = [min(lots, r) for r in room]
    # lots[k] costs linear + impact (k^1.5 - (k-1)^1.5) on a venue
    terms = [(lot * _linear(v, price, volatility), _impact(v, lot, *market) if r else 0.0)
             for v, r in zip(venues, room, strict=True)]
    reasons = []
    if lots >= sum(caps):
        counts = caps
        if lots > sum(caps):
            reasons.append(f"the venues can take {sum(caps)} of {lots} lots of {lot:g} "
                           f"this interval: each is filled to its capacity")
    else:
        counts = _water_fill(terms, caps, lots)
        last = max(_increment(*t, c) for t, c in zip(terms, counts, strict=True) if c)
        reasons.append(f"{lots} lots of {lot:g} placed where the next lot costs least: "
                       f"the last lot placed costs {last:.6g}")
    sign = math.copysign(1.0, q)
    quantities, costs = {}, {}
    for v, r, c in zip(venues, room, counts, strict=True):
        quantities[v.name] = sign * c * lot if c else 0.0
        costs[v.name] = (c * lot * _linear(v, price, volatility)
                         + _impact(v, c * lot, *market)) if c else 0.0
        if r == 0:
            reasons.append(f"{v.name}: no capacity ({_pct(v.liquidity)} of "
                           f"{interval_volume:g} units is less than a lot)")
        elif c == r and c < lots:
            reasons.append(f"{v.name}: at its capacity of {r} lots")
    if abs(q) - lots * lot > 1e-9 * lot:
        reasons.append(f"{abs(q) - lots * lot:g} units are less than a lot of {lot:g}: unplaced")
    unplaced = abs(q) - sum(counts) * lot
    if abs(unplaced) <= 1e-9 * lot:  # lots * lot rounded, not a remainder
        unplaced = 0.0
    return Split(quantities, sign * unplaced if unplaced else 0.0, costs, tuple(reasons))


def _water_fill(terms: list[tuple[float, float]], caps: list[int], lots: int) -> list[int]:
    """Lots per venue: the ``lots`` cheapest increments of all venues (``lots < sum(caps)``)."""
    def count(level: float) -> list[int]:
        return [_count(*t, cap, level) for t, cap in zip(terms, caps, strict=True)]

    low = -1.0  # increments are >= 0: nothing costs at most -1
    high = max(_increment(*t, cap) for t, cap in zip(terms, caps, strict=True) if cap)
    for _ in range(200):
        mid = 0.5 * (low + high)
        if not low < mid < high:
            break
        if sum(count(mid)) >= lots:
            high = mid
        else:
            low = mid
    counts, upper = count(low), count(high)
    # increments in (low, high] are equal to the last bits: fill them cheapest first
    order = sorted(range(len(caps)), key=lambda i: (
        _increment(*terms[i], counts[i] + 1) if counts[i] < caps[i] else math.inf, i))
    left = lots - sum(counts)
    for bound in (upper, caps):  # caps: only if rounding made the counts disagree
        for i in order:
            extra = max(0, min(left, bound[i] - counts[i]))
            counts[i] += extra
            left -= extra
    return counts
