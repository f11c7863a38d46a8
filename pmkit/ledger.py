"""The append-only ledger: entry type, validation and replay.

Positions are never stored as the truth: they are whatever replaying the
ledger in sequence order gives. The store caches the replay and tests check
that the cache equals a fresh replay.

Pure Python on purpose: the store (no xarray) and the model (xarray) both use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from pmkit.errors import ValidationError

__all__ = [
    "OPEN_QUANTITY_TOLERANCE",
    "LedgerEntry",
    "Positions",
    "cash_effect",
    "replay",
]

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
        """Return self after checking every field; raise `ValidationError` otherwise."""
        if self.kind not in ("trade", "cash"):
            raise ValidationError("kind", self.kind, "must be 'trade' or 'cash'")
        if not isinstance(self.ts, datetime):
            raise ValidationError("ts", self.ts, "must be a datetime")
        if self.ts.tzinfo is not None:
            raise ValidationError("ts", self.ts, "must be tz-naive UTC")
        for name in ("quantity", "price", "fee", "amount"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise ValidationError(name, v, "must be a finite number")
        if self.fee < 0:
            raise ValidationError("fee", self.fee, "must be >= 0")
        if not isinstance(self.currency, str) or len(self.currency) != 3:
            raise ValidationError("currency", self.currency, "must be a 3-letter ISO code")
        if self.kind == "trade":
            if not isinstance(self.asset, str) or not self.asset:
                raise ValidationError("asset", self.asset, "a trade needs an asset label")
            if self.quantity == 0:
                raise ValidationError("quantity", self.quantity, "a trade must be non-zero")
            if self.price <= 0:
                raise ValidationError("price", self.price, "must be > 0")
            if self.amount != 0:
                raise ValidationError("amount", self.amount, "trades carry no cash-flow amount")
        else:
            if self.asset is not None:
                raise ValidationError("asset", self.asset, "a cash flow has no asset")
            if self.amount == 0:
                raise ValidationError("amount", self.amount, "a cash flow must be non-zero")
            if self.quantity != 0 or self.price != 0:
                raise ValidationError("quantity", self.quantity, "cash flows trade no units")
        return self

    def to_record(self) -> dict[str, Any]:
        """Plain dict with ``ts`` as ISO text, for storage."""
        d = asdict(self)
        d["ts"] = self.ts.isoformat()
        return d

    @classmethod
    def from_record(cls, d: dict[str, Any]) -> LedgerEntry:
        """Inverse of `to_record`."""
        d = dict(d)
        d["ts"] = datetime.fromisoformat(d["ts"])
        return cls(**d)


def cash_effect(entry: LedgerEntry) -> float:
    """Change in cash caused by ``entry``, in its currency.

    A buy of ``q`` units at ``p`` with fee ``f`` costs ``q * p + f``; a sale
    (``q < 0``) brings ``|q| * p - f``; a cash flow moves ``amount``.
    """
    if entry.kind == "trade":
        return -(entry.quantity * entry.price) - entry.fee
    return entry.amount


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
