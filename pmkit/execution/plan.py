"""What the execution engine stores on a parent order: its plan, progress and fills.

A parent order is an ordinary `pmkit.execution.Order` (entity kind
``"order"``) whose broker is an `pmkit.execution.engine.ExecutionEngine`;
its ``info["execution"]`` holds an `ExecutionPlan`. Everything the engine,
the monitor and transaction-cost analysis need is there, so each reads one
record and a restart carries on from it.

Units: quantities are signed units (buy > 0), prices currency per unit,
costs currency, times ISO-8601 tz-naive UTC.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pmkit.codec import decode, encode
from pmkit.errors import ValidationError

#: How a schedule is stored: its float64 values, little-endian, in base64. Why: a
#: parent record is read and rewritten at every slice and fill, and a schedule of
#: 390 intervals as JSON numbers made parsing it most of an event's cost; the
#: bytes are also exactly the floats (no decimal round trip).
_PACKED = "float64_le_base64"


def _pack(values: tuple[float, ...]) -> dict[str, str]:
    data = np.asarray(values, dtype="<f8").tobytes()
    return {_PACKED: base64.b64encode(data).decode("ascii")}


def _unpack(stored: Any) -> Any:
    if isinstance(stored, Mapping) and _PACKED in stored:
        text = stored[_PACKED]
        try:
            raw = base64.b64decode(text, validate=True)
            return tuple(np.frombuffer(raw, dtype="<f8").tolist())
        except (TypeError, ValueError) as exc:  # binascii.Error is a ValueError
            raise ValidationError("execution.schedule", str(text)[:40],
                                  f"is not a packed float64 schedule: {exc}") from exc
    return stored  # a list of numbers (records written before the packing)

__all__ = ["ALGORITHMS", "ChildFill", "ExecutionPlan", "plan_of"]

#: Algorithms a parent order may be worked by.
ALGORITHMS: tuple[str, ...] = ("twap", "vwap", "is", "pov")


@dataclass(frozen=True)
class ChildFill:
    """One fill of a child order, as the parent keeps it.

    Attributes
    ----------
    child : str
        Child order id.
    interval : int
        Schedule interval (1-based) the child was sent in.
    venue : str
        Broker that filled it.
    ts : str
        Execution time (ISO).
    quantity : float
        Signed units.
    price : float
        Execution price (currency per unit), slippage included.
    market_price : float
        The feed's price the fill was measured against.
    fee, spread, impact : float
        Cost parts (currency, >= 0): commission paid as a fee, half-spread
        and impact paid in price.
    """

    child: str
    interval: int
    venue: str
    ts: str
    quantity: float
    price: float
    market_price: float
    fee: float = 0.0
    spread: float = 0.0
    impact: float = 0.0


@dataclass(frozen=True)
class ExecutionPlan:
    """A parent order's algorithm, schedule and progress (``Order.info["execution"]``).

    Attributes
    ----------
    algorithm : str
        One of `ALGORITHMS`.
    session : str
        Trading session (ISO date) the schedule runs over.
    intervals : int
        Equal intervals of the session.
    schedule : tuple of float
        Cumulative signed units to have filled after interval ``k`` (entry
        ``k - 1``); the last entry is the parent's quantity. For ``"pov"``
        the entries are filled in as realized volume arrives.
    arrival_price : float
        The market price when the parent started working (currency per unit).
    params : dict
        The algorithm's parameters (``risk_aversion``, ``participation``, ...).
    max_participation : float
        No child exceeds this fraction of its interval's market volume.
    end_of_day : str
        ``"cancel"``: the residual is cancelled at the session's end;
        ``"carry"``: it is re-planned over the next session.
    state : str
        ``"working"``, ``"paused"`` or ``"done"``.
    next_interval : int
        First interval not yet acted on (1-based; ``intervals + 1`` when past the end).
    open_children : tuple of str
        Child orders sent and not yet done (ids ``"<parent id>.<n>"``, or
        ``"<parent id>.<n>.<venue>"`` with several venues; ``n`` counts slices).
    children : int
        Child orders sent so far.
    market_fill_value : float
        ``sum(q_j * m_j)`` over the fills: units times the market price each
        was measured against (signed; with `Order.fill_value` it splits the
        trading cost into timing and impact without reading every child).
    spread_paid, impact_paid : float
        Sums of the fills' spread and impact (currency).
    fills : tuple of ChildFill
        Not stored (the children keep their fills): filled in when a parent is
        read for analysis (`pmkit.execution.engine.ExecutionEngine.parents`).
    alerts : tuple of str
        Alerts now raised (``"behind"``, ``"price_band"``, ``"held"``).
    market_value, market_volume : float
        Sums of ``price * volume`` and ``volume`` over the intervals worked
        (interval VWAP = ``market_value / market_volume``).
    last_price : float
        Latest market price seen.
    close_price : float or None
        The session's last price, set when the parent ends.
    end_reason : str or None
        ``"filled"``, ``"cancelled"`` or ``"end_of_day"``.
    route : dict
        The router's decision and its reasons (empty when none was used).
    """

    algorithm: str
    session: str
    intervals: int
    schedule: tuple[float, ...]
    arrival_price: float
    params: dict[str, Any] = field(default_factory=dict)
    max_participation: float = 0.25
    end_of_day: str = "cancel"
    state: str = "working"
    next_interval: int = 1
    open_children: tuple[str, ...] = ()
    children: int = 0
    market_fill_value: float = 0.0
    spread_paid: float = 0.0
    impact_paid: float = 0.0
    fills: tuple[ChildFill, ...] = ()
    alerts: tuple[str, ...] = ()
    market_value: float = 0.0
    market_volume: float = 0.0
    last_price: float = 0.0
    close_price: float | None = None
    end_reason: str | None = None
    route: dict[str, Any] = field(default_factory=dict)

    @property
    def interval_vwap(self) -> float | None:
        """Market VWAP over the intervals worked (None before the first)."""
        return self.market_value / self.market_volume if self.market_volume > 0 else None

    def target(self, interval: int) -> float:
        """Cumulative signed units due after ``interval`` (0 before the first)."""
        if interval < 1:
            return 0.0
        return float(self.schedule[min(interval, len(self.schedule)) - 1])

    def with_changes(self, **changes: Any) -> ExecutionPlan:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict, by the one codec `pmkit.codec` (``fills`` left out).

        The ``schedule`` is stored packed (float64 bytes in base64, see
        `_PACKED`); `from_record` also reads it as a plain list of numbers.
        """
        out = encode(replace(self, schedule=(), fills=()))
        out["schedule"] = _pack(self.schedule)
        return out

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> ExecutionPlan:
        """Inverse of `to_record`."""
        if "schedule" in d:
            d = {**d, "schedule": _unpack(d["schedule"])}
        return decode(cls, d)


#: Plans decoded lately, by the identity of their stored mapping (kept referenced, so an
#: identity is never reused while cached). Why: the engine asks for a parent's plan
#: several times per slice and fill, and decoding it is most of the cost of asking.
#: Bounded (emptied when full): an entry of a 390-interval plan holds about 17 kB.
_DECODED: dict[int, tuple[Mapping[str, Any], ExecutionPlan]] = {}
_DECODED_SIZE = 1024


def plan_of(order: Any) -> ExecutionPlan | None:
    """The `ExecutionPlan` of a parent `Order` (None for an order no engine works)."""
    data = order.info.get("execution")
    if data is None:
        return None
    hit = _DECODED.get(id(data))
    if hit is not None and hit[0] is data:
        return hit[1]
    plan = ExecutionPlan.from_record(data)
    if len(_DECODED) >= _DECODED_SIZE:
        _DECODED.clear()
    _DECODED[id(data)] = (data, plan)
    return plan
