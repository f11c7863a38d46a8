"""Hand-built rebalance proposals shared by the workflow and paper-broker tests."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from pmkit.execution import CostModel
from pmkit.rebalance import CashTransfer, ProposalState, RebalanceProposal, TradeLine

#: Market time the hand-built proposals are priced at.
AT = pd.Timestamp("2022-12-01")


def line(market, portfolio: str, asset: str, quantity: float, t=AT) -> TradeLine:
    """A trade line priced at the close of ``t`` with the default cost model's estimate."""
    price = float(market["close"].sel(asset=asset, time=t))
    b = CostModel().estimate(market, asset, quantity, price, at=t)
    return TradeLine(portfolio, asset, quantity, price, b.commission, b.spread, b.impact)


def hand_proposal(
    trades: Sequence[TradeLine],
    pid: str = "rb-1",
    *,
    by: str = "alice",
    scope: str = "client_a/growth",
    kind: str = "portfolio",
    portfolios: Sequence[str] | None = None,
    transfers: Sequence[CashTransfer] = (),
    expires_at: str | None = None,
) -> RebalanceProposal:
    """A ``proposed`` proposal of ``trades``, made by ``by``."""
    return RebalanceProposal(
        id=pid,
        scope=scope,
        scope_kind=kind,
        portfolios=list(portfolios or [scope]),
        state=ProposalState.PROPOSED,
        created_by=by,
        created_at="2023-01-02T09:00:00",
        expires_at=expires_at,
        as_of=AT.isoformat(),
        reason="manual",
        method="manual",
        target_weights={},
        current_weights={},
        trades=list(trades),
        transfers=list(transfers),
    )
