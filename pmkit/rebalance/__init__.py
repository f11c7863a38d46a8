"""Rebalancing: proposals (targets, trades, costs, risk) and their approval workflow."""

from pmkit.rebalance.builder import group_shares, propose_rebalance
from pmkit.rebalance.risk import risk_snapshot, risk_snapshots
from pmkit.rebalance.trades import (
    TradePlan,
    allocation_transfers,
    lots_toward_zero,
    plan_trades,
)
from pmkit.rebalance.types import (
    FINAL_STATES,
    TRANSITIONS,
    CashTransfer,
    ProposalState,
    RebalanceProposal,
    RiskSnapshot,
    TradeLine,
)
from pmkit.rebalance.workflow import ProposalBook

__all__ = [
    "FINAL_STATES",
    "TRANSITIONS",
    "CashTransfer",
    "ProposalBook",
    "ProposalState",
    "RebalanceProposal",
    "RiskSnapshot",
    "TradeLine",
    "TradePlan",
    "allocation_transfers",
    "group_shares",
    "lots_toward_zero",
    "plan_trades",
    "propose_rebalance",
    "risk_snapshot",
    "risk_snapshots",
]
