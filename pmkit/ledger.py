"""The append-only ledger: entry type, validation and replay.

Positions are never stored as the truth: they are whatever replaying the
ledger in sequence order gives. The store caches the replay and tests check
that the cache equals a fresh replay.

Pure Python on purpose: the store (no xarray) and the model (xarray) both use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from pmkit.codec import decode, encode
from pmkit.errors import ValidationError
from pmkit.validation import (
    MAX_AMOUNT,
    MAX_BALANCE,
    MAX_MEMO_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PRICE,
    MAX_QUANTITY,
    MAX_TAG_LENGTH,
    check_limit,
    check_number,
    check_text,
)

__all__ = [
    "OPEN_QUANTITY_TOLERANCE",
    "LedgerEntry",
    "Positions",
    "cash_effect",
    "check_balances",
    "replay",
    "utcnow",
]


def utcnow() -> datetime:
    """Now, as the ledger stamps times: tz-naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)

EntryKind = Literal["trade", "cash"]

#: Quantities whose magnitude is at most this are treated as closed positions
#: (float share counts that net to zero may leave round-off behind).
OPEN_QUANTITY_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ledger row: a trade or an external cash flow.

    Parameters
    ----------
    portfolio : str
        Portfolio id the entry belongs to.
    kind : {"trade", "cash"}
        ``"trade"`` changes a position and cash; ``"cash"`` is an external
        deposit (positive ``amount``) or withdrawal (negative).
    ts : datetime
        Economic time of the entry, tz-naive UTC.
    asset : str or None
        Asset label for trades; None for cash flows.
    quantity : float
        Signed number of units traded (buy > 0, sell < 0). Zero for cash flows.
    price : float
        Trade price per unit in ``currency``. Zero for cash flows.
    fee : float
        Fees paid in ``currency`` (>= 0), reducing cash.
    amount : float
        Cash-flow amount in ``currency`` (zero for trades).
    currency : str
        ISO currency of price, fee and amount.
    actor : str
        User who recorded the entry.
    memo : str
        Free text.
    seq : int or None
        Sequence number assigned by the store on append; None before.
    """

    portfolio: str
    kind: EntryKind
    ts: datetime
    asset: str | None = None
    quantity: float = 0.0
    price: float = 0.0
    fee: float = 0.0
    amount: float = 0.0
    currency: str = "USD"
    actor: str = ""
    memo: str = ""
    seq: int | None = None

    def validated(self) -> LedgerEntry:
        """A checked copy with every number a Python float; raise `ValidationError` otherwise.

        Numbers may be ints, floats or numpy scalars and are bounded by
        `pmkit.validation` (`MAX_QUANTITY`, `MAX_PRICE`, `MAX_AMOUNT`); so
        is a trade's notional ``|quantity * price| + fee`` (field
        ``notional``). Text (asset, memo, actor) is checked by
        `pmkit.validation.check_text`.

        Raises
        ------
        ValidationError
            Naming the field; `LimitExceededError` for a magnitude beyond its limit.
        """
        if self.kind not in ("trade", "cash"):
            raise ValidationError("kind", self.kind, "must be 'trade' or 'cash'")
        if not isinstance(self.ts, datetime):
            raise ValidationError("ts", self.ts, "must be a datetime")
        if self.ts.tzinfo is not None:
            raise ValidationError("ts", self.ts, "must be tz-naive UTC")
        # A plain datetime (not a pandas Timestamp with nanoseconds), so the stored ISO
        # text reads back as the same value.
        ts = self.ts
        ts = datetime(ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, ts.microsecond)
        quantity = check_number(self.quantity, "quantity", limit=MAX_QUANTITY)
        price = check_number(self.price, "price", limit=MAX_PRICE)
        fee = check_number(self.fee, "fee", minimum=0.0)
        amount = check_number(self.amount, "amount")
        if not isinstance(self.currency, str) or not re.fullmatch("[A-Z]{3}", self.currency):
            raise ValidationError("currency", self.currency, "must be a 3-letter ISO code")
        check_text(self.memo, "memo", max_length=MAX_MEMO_LENGTH)
        check_text(self.actor, "actor", max_length=MAX_TAG_LENGTH, multiline=False)
        if self.kind == "trade":
            if not isinstance(self.asset, str) or not self.asset:
                raise ValidationError("asset", self.asset, "a trade needs an asset label")
            check_text(self.asset, "asset", max_length=MAX_NAME_LENGTH, multiline=False)
            if quantity == 0:
                raise ValidationError("quantity", self.quantity, "a trade must be non-zero")
            if price <= 0:
                raise ValidationError("price", self.price, "must be > 0")
            if amount != 0:
                raise ValidationError("amount", self.amount, "trades carry no cash-flow amount")
            notional = abs(quantity * price) + fee
            check_limit(notional, "notional", MAX_AMOUNT, "|quantity * price| + fee")
        else:
            if self.asset is not None:
                raise ValidationError("asset", self.asset, "a cash flow has no asset")
            if amount == 0:
                raise ValidationError("amount", self.amount, "a cash flow must be non-zero")
            if quantity != 0 or price != 0:
                raise ValidationError("quantity", self.quantity, "cash flows trade no units")
        return replace(self, ts=ts, quantity=quantity, price=price, fee=fee, amount=amount)

    def to_record(self) -> dict[str, Any]:
        """Plain dict with ``ts`` as ISO text, for storage (the one codec, `pmkit.codec`)."""
        return encode(self)

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> LedgerEntry:
        """Inverse of `to_record`."""
        return decode(cls, d)


def cash_effect(entry: LedgerEntry) -> float:
    """Change in cash caused by ``entry``, in its currency.

    A buy of ``q`` units at ``p`` with fee ``f`` costs ``q * p + f``; a sale
    (``q < 0``) brings ``|q| * p - f``; a cash flow moves ``amount``.
    """
    if entry.kind == "trade":
        return -(entry.quantity * entry.price) - entry.fee
    return entry.amount


def check_balances(positions: Positions, entry: LedgerEntry) -> tuple[float, float | None]:
    """Cash and position that ``entry`` would leave; refuse them when out of bounds.

    The ledger is append-only, so a balance that became non-finite or absurd
    could never be corrected: refuse the entry instead.

    Parameters
    ----------
    positions : Positions
        The portfolio's current state (its cached replay).
    entry : LedgerEntry
        A validated entry about to be appended.

    Returns
    -------
    cash : float
        Cash after the entry (same arithmetic as `Positions.apply`).
    quantity : float or None
        Units of ``entry.asset`` held after a trade; None for a cash flow.

    Raises
    ------
    LimitExceededError
        Field ``cash`` when ``|cash|`` would exceed `MAX_BALANCE`, field
        ``position`` when ``|quantity|`` would exceed `MAX_QUANTITY`.
    """
    cash = check_limit(positions.cash + cash_effect(entry), "cash", MAX_BALANCE, "cash balance")
    if entry.kind != "trade":
        return cash, None
    assert entry.asset is not None
    held = positions.quantities.get(entry.asset, 0.0) + entry.quantity
    return cash, check_limit(held, "position", MAX_QUANTITY, f"position in {entry.asset}")


@dataclass(slots=True)
class Positions:
    """State after replaying a portfolio's ledger.

    Attributes
    ----------
    quantities : dict[str, float]
        Units held per asset (closed positions are kept at their replayed value,
        usually 0.0, so that the cache and a replay compare equal).
    cash : float
        Cash in the portfolio currency.
    last_seq : int
        Sequence number of the last entry applied (0 when none).
    """

    quantities: dict[str, float] = field(default_factory=dict)
    cash: float = 0.0
    last_seq: int = 0

    def apply(self, entry: LedgerEntry) -> None:
        """Apply one entry in place (entries must come in sequence order)."""
        if entry.kind == "trade":
            assert entry.asset is not None
            self.quantities[entry.asset] = self.quantities.get(entry.asset, 0.0) + entry.quantity
        self.cash += cash_effect(entry)
        if entry.seq is not None:
            self.last_seq = entry.seq

    def open_positions(self) -> dict[str, float]:
        """Positions whose magnitude exceeds `OPEN_QUANTITY_TOLERANCE`."""
        return {a: q for a, q in self.quantities.items() if abs(q) > OPEN_QUANTITY_TOLERANCE}


def replay(entries: Iterable[LedgerEntry]) -> Positions:
    """Replay ``entries`` (one portfolio, in sequence order) into `Positions`."""
    pos = Positions()
    for entry in entries:
        pos.apply(entry)
    return pos
