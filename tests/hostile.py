"""Hostile inputs and the books' contract, shared by the input and fuzz tests.

The contract of every public mutating call: it either succeeds, and what it
stored reads back byte-identical after the store is closed and reopened, or it
raises a `pmkit.errors.PmkitError` (a `ValidationError` naming its field) and
the store is exactly as it was.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from pmkit.errors import PmkitError, ValidationError
from pmkit.ledger import OPEN_QUANTITY_TOLERANCE
from pmkit.model import market_dataset
from pmkit.registry import Registry
from pmkit.store import open_store
from pmkit.validation import MAX_BALANCE, MAX_QUANTITY

#: Examples per fuzz test: at most 25 (fewer when the loaded profile says so).
FUZZ = settings(
    max_examples=min(25, settings.default.max_examples),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TIMES = pd.date_range("2024-01-01", periods=5, freq="D")
CLOSE = pd.DataFrame(
    {"AAA": [100.0, 110.0, 120.0, 130.0, 140.0], "BBB": [10.0, 10.0, 10.0, 10.0, 10.0]},
    index=TIMES,
)
MARKET = market_dataset(CLOSE)
#: A time inside the market data: the last close at or before it is AAA's 120.
T = datetime(2024, 1, 3, 12)
BEFORE = datetime(2023, 12, 31)


def deep(n: int) -> dict[str, Any]:
    """``{"k": {"k": ...}}`` nested ``n`` levels."""
    d: dict[str, Any] = {}
    for _ in range(n):
        d = {"k": d}
    return d


NASTY_TEXT = [
    "",
    " ",
    "\ud800",
    "ok\udfffok",
    "a\x00b",
    "\x07bell",
    "\x1b[2J",
    "x" * 100_000,
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "\u202eevil",
    "line\nbreak",
    "名前",
    "p",
    "AAA",
    "client_a/growth",
    "../etc/passwd",
    "'; DROP TABLE ledger;--",
]
NASTY_NUMBERS = [
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    1e308,
    -1e308,
    5e-324,
    10**400,
    -(10**400),
    2**63,
    Decimal("1.5"),
    Decimal("NaN"),
    np.int64(7),
    np.float32(1.5),
    np.float64(2.5),
    np.float32("nan"),
    np.bool_(True),
    True,
    False,
    1,
    -1,
    0.5,
    1e12,
    1e15,
    1e16,
]
WRONG_TYPES = [
    None,
    [],
    [1.0],
    {},
    {"a": 1},
    {1: "a"},
    b"bytes",
    bytearray(b"x"),
    object(),
    (1, 2),
    {1, 2},
    1j,
    datetime(2024, 1, 1),
    deep(200),
]

texts = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=30))
numbers = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    st.floats(),
    st.integers(min_value=-(10**20), max_value=10**20),
)
wrong = st.sampled_from(WRONG_TYPES)
anything = st.one_of(texts, numbers, wrong)
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), numbers, texts),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)),
    max_leaves=8,
)
configs = st.one_of(
    st.dictionaries(texts, json_like, max_size=4),
    st.sampled_from([deep(30), {"allow_short": "yes"}, {"margin_limit": -1.0}, {1: 2}]),
    wrong,
)


def spoiled(base: dict[str, Any], values: Any = None, max_spoiled: int = 2) -> Any:
    """``base`` (valid arguments) with up to ``max_spoiled`` of them replaced by hostile values.

    One or two bad fields at a time, so that both acceptance and each refusal are reached.
    """
    bad = st.dictionaries(
        st.sampled_from(sorted(base)), anything if values is None else values, max_size=max_spoiled
    )
    return bad.map(lambda b: {**base, **b})


def create_store(path: Path) -> Any:
    """A new file store at ``path`` (asking for creation where the API needs it)."""
    try:
        return open_store(str(path), create=True)
    except TypeError:  # an open_store without the create flag creates by default
        return open_store(str(path))


def build_template(path: Path) -> Path:
    """A closed file store: portfolios p (holding 100 AAA) and q, group g, user alice."""
    store = create_store(path)
    reg = Registry(store, market=MARKET)
    reg.create_portfolio("p", 1_000_000.0, name="P", at=BEFORE)
    reg.create_portfolio("q", 100_000.0, name="Q", at=BEFORE)
    reg.create_group("g", ["p", "q"], name="G")
    reg.add_user("alice", display_name="Alice")
    reg.grant("alice", "p", "trader")
    reg.record_trade("AAA", 100.0, 100.0, portfolio="p", ts=datetime(2024, 1, 1, 16))
    store.close()
    return path


class Books:
    """A fresh copy of a template store for one example, with the contract's checks."""

    def __init__(self, template: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="example-", dir=template.parent))
        self.path = self.dir / "books.db"
        shutil.copy(template, self.path)
        self.store = open_store(str(self.path))
        self.reg = Registry(self.store, market=MARKET)

    def attempt(self, call: Any) -> PmkitError | None:
        """Run ``call``; a refusal must be typed and leave the store as it was."""
        before = self.store.dump()
        try:
            call()
            event("accepted")
        except PmkitError as exc:
            event(f"refused: {type(exc).__name__}")
            assert self.store.dump() == before, f"refused call changed the store: {exc}"
            if isinstance(exc, ValidationError):
                assert isinstance(exc.field, str) and exc.field, exc
            str(exc)  # the message renders
            return exc
        return None

    def check_books(self) -> None:
        """Cash and positions finite and within bounds, the cache equal to a replay."""
        for rec in self.store.list("portfolio"):
            cached, fresh = self.store.positions(rec.id), self.store.replay(rec.id)
            assert math.isfinite(cached.cash) and abs(cached.cash) <= MAX_BALANCE
            assert cached.cash == fresh.cash
            for a, q in cached.quantities.items():
                assert math.isfinite(q) and abs(q) <= MAX_QUANTITY + OPEN_QUANTITY_TOLERANCE
                assert fresh.quantities[a] == q

    def round_trip(self) -> None:
        """Close and reopen the file: every table reads back identical, and still parses."""
        self.check_books()
        before = self.store.dump()
        self.store.close()
        self.store = open_store(str(self.path))
        assert self.store.dump() == before
        self.reg = Registry(self.store, market=MARKET)
        self.reg.summary()  # every stored portfolio decodes
        for pid in ("p", "q"):
            self.reg.ledger(pid)

    def close(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def run(template, *calls):
    """Attempt each ``call(registry)`` on fresh books from ``template``, then check the round trip.

    Each call either succeeds or raises a pmkit error with the store unchanged
    (`Books.attempt`); at the end the store must reopen byte-identical.
    """
    books = Books(template)
    try:
        for call in calls:
            books.attempt(lambda call=call: call(books.reg))
        books.round_trip()
    finally:
        books.close()
