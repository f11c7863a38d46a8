"""The whole loop across services and restarts: strategies -> trigger -> proposal -> fill."""

from __future__ import annotations

import pandas as pd
import pytest

from pmkit.demo import open_demo
from pmkit.errors import MakerCheckerError
from pmkit.execution import CostModel, PaperBroker
from pmkit.rebalance import ProposalBook, ProposalState
from pmkit.registry import Registry
from pmkit.store import open_store
from pmkit.strategies import (
    CrossSectionalMomentum,
    LowVolatility,
    ShortTermReversal,
    StrategyManager,
)

PID = "client_a/growth"
T0, T1 = "2021-12-31", "2022-06-30"
CLASSES = {"momentum": CrossSectionalMomentum, "reversal": ShortTermReversal,
           "low_vol": LowVolatility}


def _reopen(url: str, user: str, market) -> Registry:
    return Registry(open_store(url), user=user, market=market)


def test_trigger_to_filled_proposal_across_restarts(tmp_path):
    url = str(tmp_path / "pm.db")
    reg = open_demo(open_store(url))
    market = reg.market
    reg.add_user("erin")
    reg.grant("erin", "client_a", "manager")
    bob = StrategyManager(reg.as_user("bob"), PID)
    for name, cls in CLASSES.items():
        bob.register_strategy(name, cls(market, end=T0), 0.3)
    bob.optimize_portfolio_allocation("risk_parity", budget=0.9)
    for name, cls in CLASSES.items():
        live = cls(market, end=T1)
        bob.update_strategy_returns(name, live.returns())
        bob.attach(name, live)
    targets = bob.target_asset_weights(T1)
    assert sum(targets.values()) == pytest.approx(0.9)

    # a band wider than any drift does not fire and proposes nothing
    assert not bob.rebalance_portfolio("threshold", 0.99, at=T1).fired
    assert ProposalBook(reg).list() == []

    out = bob.rebalance_portfolio("threshold", 0.03, at=T1, cost_model=CostModel())
    assert out.fired and out.proposal is not None
    pid_ = out.proposal.id
    assert out.proposal.state is ProposalState.PROPOSED and out.proposal.created_by == "bob"
    assert out.proposal.reason.startswith("threshold:")
    # the proposal aims at the strategies' blend: every asset they want gets bought
    bought = {t.asset for t in out.proposal.trades if t.quantity > 0}
    assert bought <= set(targets)
    with pytest.raises(MakerCheckerError):
        ProposalBook(reg.as_user("bob")).approve(pid_)
    reg.store.close()

    # restart 1: approve and submit, fill one session
    reg = _reopen(url, "erin", market)
    assert ProposalBook(reg).approve(pid_).state is ProposalState.APPROVED
    alice = reg.as_user("alice")
    broker = PaperBroker(alice, participation=0.001)
    ProposalBook(alice).submit(pid_, broker)
    sessions = market.indexes["time"][market.indexes["time"] > pd.Timestamp(T1)]
    broker.step(sessions[0])
    assert ProposalBook(reg).get(pid_).state is ProposalState.PARTIALLY_FILLED
    reg.store.close()

    # restart 2: a new broker over the same store finishes the open orders
    reg = _reopen(url, "alice", market)
    broker = PaperBroker(reg, participation=0.001)
    assert broker.open_orders()
    broker.run_until_filled(sessions[1:30])
    done = ProposalBook(reg).get(pid_)
    assert done.state is ProposalState.FILLED
    assert all(t.filled == t.quantity for t in done.trades)
    # the ledger holds exactly the proposal's trades, once each
    fills = [e for e in reg.store.ledger(PID) if e.memo.startswith(pid_)]
    for t in done.trades:
        assert sum(e.quantity for e in fills if e.asset == t.asset) == t.quantity
    assert reg.store.positions(PID) == reg.store.replay(PID)
    assert reg.store.positions(PID).cash >= 0
    actions = [a.action for a in reg.store.audit(target=pid_)]
    for step in ("proposal.create", "proposal.approve", "proposal.submit", "proposal.filled"):
        assert step in actions
    # the allocation history survived too
    again = StrategyManager(reg, PID)
    assert [d.kind for d in again.history()] == ["optimization", "rebalance"]
