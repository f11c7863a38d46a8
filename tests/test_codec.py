"""The one record codec: every stored dataclass round-trips, in the formats stores already hold."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, IntEnum, StrEnum

from hypothesis import given
from hypothesis import strategies as st

from pmkit.codec import decode, encode
from pmkit.coordinator import Priority, Side, Signal, SignalState
from pmkit.execution import Fill, Order, OrderStatus
from pmkit.ledger import LedgerEntry


class Rank(IntEnum):
    LOW = 1
    HIGH = 2


class Colour(StrEnum):
    RED = "red"


class Plain(Enum):
    A = "a-value"


@dataclass(frozen=True)
class Inner:
    when: datetime
    rank: Rank


@dataclass(frozen=True)
class Outer:
    name: str
    ratio: float
    colour: Colour
    plain: Plain
    inners: tuple[Inner, ...] = ()
    by_key: dict[str, Inner] = field(default_factory=dict)
    maybe: float | None = None


def test_the_rules_enums_by_name_strings_by_value_times_iso_nan_none():
    t = datetime(2024, 5, 6, 7, 8, 9, 123456)
    obj = Outer(
        "x", math.nan, Colour.RED, Plain.A, (Inner(t, Rank.HIGH),), {"k": Inner(t, Rank.LOW)}
    )
    data = encode(obj)
    assert data == {
        "name": "x",
        "ratio": None,  # JSON has no NaN
        "colour": "red",
        "plain": "A",
        "inners": [{"when": t.isoformat(), "rank": "HIGH"}],
        "by_key": {"k": {"when": t.isoformat(), "rank": "LOW"}},
        "maybe": None,
    }
    back = decode(Outer, data)
    assert math.isnan(back.ratio) and back.maybe is None
    assert back.inners == obj.inners and back.by_key == obj.by_key
    # records written before the codec stored an IntEnum by value: still readable
    assert decode(Inner, {"when": t.isoformat(), "rank": 2}).rank is Rank.HIGH
    # unknown keys (a newer writer) are ignored
    assert decode(Inner, {"when": t.isoformat(), "rank": "LOW", "extra": 1}).rank is Rank.LOW


@given(
    priority=st.sampled_from(list(Priority)),
    side=st.sampled_from(list(Side)),
    status=st.sampled_from(list(SignalState)),
    entry=st.floats(1e-3, 1e6),
    meta=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_a_signal_round_trips_and_keeps_the_stored_format(priority, side, status, entry, meta):
    s = Signal(
        "MSFT", side, entry, entry * 0.9, entry * 1.2, 0.5, "alpha", "p", datetime(2024, 1, 2),
        priority=priority, status=status, conflicts=({"kind": "duplicate"},), metadata=meta,
    )
    data = s.to_record()
    assert data["priority"] == priority.name and data["side"] == str(side)
    assert data["status"] == str(status) and data["time"] == "2024-01-02T00:00:00"
    assert Signal.from_record(data) == s


def test_orders_fills_and_ledger_entries_round_trip():
    o = Order("o-1", "p", "MSFT", 10.0, 100.0, "paper", status=OrderStatus.OPEN, fill_ids=["f1"])
    assert Order.from_record(o.to_record()) == o and o.to_record()["status"] == "open"
    f = Fill("o-1", 5.0, 101.0, 0.5, datetime(2024, 1, 2, 16), "f1", reference_price=100.0)
    assert Fill.from_record(f.to_record()) == f
    e = LedgerEntry("p", "trade", datetime(2024, 1, 2, 16), asset="MSFT", quantity=5.0,
                    price=101.0, fee=0.5, currency="USD").validated()
    assert LedgerEntry.from_record(e.to_record()) == e


@dataclass(frozen=True)
class Series:
    values: tuple[float, ...] = ()
    mixed: list = field(default_factory=list)


_ELEMENT = (st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10, 10)
            | st.booleans() | st.none() | st.sampled_from([Rank.HIGH, Colour.RED]))


@given(st.lists(_ELEMENT, max_size=30))
def test_lists_follow_the_per_value_rules_whatever_the_mix(values):
    """The all-finite-floats shortcut gives what the rules give value by value."""
    import numpy as np

    def rule(v):  # the module notes, spelled out independently
        if isinstance(v, Enum):
            return v.value if isinstance(v, str) else v.name
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        return v

    assert encode(values) == [rule(v) for v in values]
    assert encode(tuple(values)) == [rule(v) for v in values]
    # numpy floats are floats too, and keep their values
    as_numpy = [np.float64(v) for v in values if isinstance(v, float) and not isinstance(v, bool)]
    assert encode(as_numpy) == [rule(float(v)) for v in as_numpy]


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=30))
def test_a_float_series_reads_back_with_nan_where_none_was_stored(values):
    back = decode(Series, encode(Series(tuple(values))))
    want = [v if math.isfinite(v) else math.nan for v in values]
    assert len(back.values) == len(want)
    pairs = zip(back.values, want, strict=True)
    assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in pairs)
    assert all(type(v) is float for v in back.values)
