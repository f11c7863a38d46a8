"""What a rebalance proposal is: trade lines, transfers, risk snapshots, states.

Plain dataclasses with a JSON round trip (`to_record` / `from_record`), so a
proposal is stored whole in the store and comes back equal after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pmkit.codec import decode, encode
from pmkit.display import format_money

__all__ = [
    "FINAL_STATES",
    "TRADE_KINDS",
    "TRANSITIONS",
    "CashTransfer",
    "ProposalState",
    "RebalanceProposal",
    "RiskSnapshot",
    "TradeLine",
]


class ProposalState(StrEnum):
    """States of the approval workflow."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUBMITTED = "submitted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"


S = ProposalState

#: state -> states it may move to. Everything else is a `TransitionError`.
TRANSITIONS: dict[ProposalState, frozenset[ProposalState]] = {
    S.PROPOSED: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED}),
    S.APPROVED: frozenset({S.SUBMITTED, S.EXPIRED, S.CANCELLED}),
    S.SUBMITTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED}),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
}

#: States with no way out.
FINAL_STATES = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


@dataclass(frozen=True, slots=True)
class TradeLine:
    """One order of a proposal: buy or sell whole lots of one asset in one portfolio.

    Attributes
    ----------
    portfolio : str
    asset : str
    quantity : float
        Signed units (buy > 0), a whole number of lots.
    price : float
        Reference price per unit (the close the proposal was built on).
    commission, spread, impact : float
        Estimated costs in currency (`pmkit.execution.CostModel`).
    filled : float
        Signed units filled so far.
    fill_value : float
        Sum of ``units * execution price`` over the fills (signed like quantity).
    fees : float
        Fees paid on the fills (currency).
    """

    portfolio: str
    asset: str
    quantity: float
    price: float
    commission: float = 0.0
    spread: float = 0.0
    impact: float = 0.0
    filled: float = 0.0
    fill_value: float = 0.0
    fees: float = 0.0

    @property
    def key(self) -> str:
        """``"portfolio|asset"``, unique within a proposal."""
        return f"{self.portfolio}|{self.asset}"

    @property
    def notional(self) -> float:
        """``|quantity| * price`` (currency)."""
        return abs(self.quantity) * self.price

    @property
    def estimated_cost(self) -> float:
        """Commission + spread + impact (currency)."""
        return self.commission + self.spread + self.impact

    @property
    def remaining(self) -> float:
        """Signed units still to fill."""
        return self.quantity - self.filled

    @property
    def average_price(self) -> float | None:
        """Average execution price of the fills (None before the first)."""
        return self.fill_value / self.filled if self.filled else None


@dataclass(frozen=True, slots=True)
class CashTransfer:
    """Cash moved between two member portfolios of a group (currency > 0)."""

    source: str
    destination: str
    amount: float


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    """Risk of one portfolio's weights.

    Attributes
    ----------
    volatility : float
        Annualized volatility (fraction).
    var : float
        One-day historical VaR at ``confidence``, a positive loss fraction of NAV.
    confidence : float
        VaR confidence level, e.g. 0.95.
    sectors : dict[str, float]
        Net weight per sector (fractions of NAV).
    cash : float
        Cash weight (fraction of NAV).
    """

    volatility: float
    var: float
    confidence: float
    sectors: dict[str, float] = field(default_factory=dict)
    cash: float = 0.0


#: How `RebalanceProposal.trades_frame`'s columns read (`pmkit.display` kinds).
TRADE_KINDS: dict[str, str] = {
    "quantity": "count", "filled": "count",
    **dict.fromkeys(("price", "notional", "commission", "spread", "impact", "estimated_cost"),
                    "money"),
}


@dataclass(frozen=True)
class RebalanceProposal:
    """A proposed rebalance of one portfolio or of a group's member portfolios.

    Attributes
    ----------
    id : str
        ``"rb-..."``, unique in the store.
    scope : str
        The portfolio or group id it rebalances.
    scope_kind : {"portfolio", "group"}
    portfolios : list of str
        Portfolios that trade.
    state : ProposalState
    created_by : str
        The proposer (maker). Approval needs someone else.
    created_at : str
        ISO-8601 UTC.
    expires_at : str or None
        After this the proposal can only expire.
    as_of : str
        Market time the prices and risk were taken at (ISO-8601).
    reason : str
        Why: ``"manual"`` or the trigger's explanation.
    method : str
        Optimizer (class name) that produced the targets.
    target_weights, current_weights : dict portfolio -> {asset: weight}
        Fractions of each portfolio's NAV (after transfers for targets).
    trades : list of TradeLine
    transfers : list of CashTransfer
    turnover : dict portfolio -> float
        One-way turnover ``sum |w_after - w_now| / 2`` of the rounded trades
        (fraction; basis in ``info["turnover_basis"]``).
    risk_before, risk_after : dict portfolio -> RiskSnapshot
    cost_model : dict
        `CostModel.to_dict` of the model the estimate used.
    history : list of dict
        ``{"state", "actor", "ts", "note"}`` per transition, oldest first.
    info : dict
        Anything else worth keeping (bands, skipped trades, solver).
    """

    id: str
    scope: str
    scope_kind: str
    portfolios: list[str]
    state: ProposalState
    created_by: str
    created_at: str
    expires_at: str | None
    as_of: str
    reason: str
    method: str
    target_weights: dict[str, dict[str, float]]
    current_weights: dict[str, dict[str, float]]
    trades: list[TradeLine]
    transfers: list[CashTransfer] = field(default_factory=list)
    turnover: dict[str, float] = field(default_factory=dict)
    risk_before: dict[str, RiskSnapshot] = field(default_factory=dict)
    risk_after: dict[str, RiskSnapshot] = field(default_factory=dict)
    cost_model: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def estimated_cost(self) -> float:
        """Total estimated cost of every trade line (currency)."""
        return float(sum(t.estimated_cost for t in self.trades))

    def trade(self, portfolio: str, asset: str) -> TradeLine:
        """The trade line of ``asset`` in ``portfolio`` (KeyError when none)."""
        for t in self.trades:
            if t.portfolio == portfolio and t.asset == asset:
                return t
        raise KeyError(f"{portfolio}|{asset}")

    def with_changes(self, **changes: Any) -> RebalanceProposal:
        """A copy with ``changes`` applied (proposals are immutable values)."""
        return replace(self, **changes)

    def trades_frame(self) -> Any:
        """Trade lines as a pandas DataFrame (one row per line, cost columns in currency)."""
        import pandas as pd

        rows = [
            {
                "portfolio": t.portfolio,
                "asset": t.asset,
                "quantity": t.quantity,
                "price": t.price,
                "notional": t.notional,
                "commission": t.commission,
                "spread": t.spread,
                "impact": t.impact,
                "estimated_cost": t.estimated_cost,
                "filled": t.filled,
                "average_price": t.average_price,
            }
            for t in self.trades
        ]
        return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)

    # -- storage ----------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict (the store's ``data``), by the one codec `pmkit.codec`."""
        return encode(self)

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> RebalanceProposal:
        """Inverse of `to_record`."""
        return decode(cls, d)

    def __repr__(self) -> str:
        # the key facts: the whole proposal is `to_record()` and the notebook's HTML
        return (f"RebalanceProposal(id={self.id!r}, scope={self.scope!r}, "
                f"state={str(self.state)!r}, trades={len(self.trades)}, "
                f"estimated_cost={format_money(self.estimated_cost)!r}, reason={self.reason!r})")

    def _repr_html_(self) -> str:
        from html import escape

        from pmkit.display import html_table

        head = (
            f"<b>RebalanceProposal {escape(self.id)}</b> — {escape(self.scope_kind)} "
            f"<code>{escape(self.scope)}</code>, state <b>{escape(str(self.state))}</b>, "
            f"{len(self.trades)} trades, estimated cost {format_money(self.estimated_cost)}; "
            f"reason: {escape(self.reason)}"
        )
        frame = self.trades_frame()
        return head + ("" if frame.empty else html_table(frame, TRADE_KINDS))
