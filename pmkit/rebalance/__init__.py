"""Rebalancing: proposals (targets, trades, costs, risk) and their approval workflow."""

from pmkit.rebalance.types import (
    FINAL_STATES,
    TRANSITIONS,
    CashTransfer,
    ProposalState,
    RebalanceProposal,
    RiskSnapshot,
    TradeLine,
)

__all__ = [
    "FINAL_STATES",
    "TRANSITIONS",
    "CashTransfer",
    "ProposalState",
    "RebalanceProposal",
    "RiskSnapshot",
    "TradeLine",
]
