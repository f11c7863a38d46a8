"""The design notes' API, run as written (issue 14, point 4).

Each test cites the note and section it runs. Note 004 is
``/work/shared/seeds/004_285eaba9240c140a.txt`` (the multi-strategy engine), note 001
``001_12fcec4d91424b89.txt`` (the multi-portfolio plan). Only imports and the
fixture data are added: symbols and prices are the bundled market's (a note's
``BTC/USDT:USDT`` at 50000 becomes AAPL near its last close), since the
registry refuses trades far from the market.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from note_configs import NOTE_001_CONFIG

from pmkit.coordinator import (
    Priority,
    Resolution,
    ResolutionStrategy,
    SignalState,
    StrategyCoordinator,
)
from pmkit.datasets import load_market
from pmkit.errors import ConfigError, ValidationError
from pmkit.integration import Integration
from pmkit.registry import Registry
from pmkit.strategies import (
    CrossSectionalMomentum,
    PortfolioManager,
    RealTimePerformanceMonitor,
    RiskManager,
)


@pytest.fixture(scope="module")
def market():
    return load_market()


def run(coro):
    return asyncio.run(coro)


def last_close(market, asset: str) -> float:
    return float(market["close"].sel(asset=asset).isel(time=-1))


def note_signal(market, asset: str = "AAPL", side: str = "long") -> dict:
    """The note's signal shape (entry, stop 2 % away, target 4 % away) at the last close."""
    c = last_close(market, asset)
    sign = 1.0 if side == "long" else -1.0
    return {
        "symbol": asset,
        "side": side,
        "entry": c,
        "stop": round(c * (1 - 0.02 * sign), 2),
        "target": round(c * (1 + 0.04 * sign), 2),
    }


def expected_size(signal: dict, capital: float, risk_fraction: float = 0.01) -> float:
    """Fixed-fractional units: a move to the stop loses ``risk_fraction`` of the capital."""
    return math.floor(risk_fraction * capital / abs(signal["entry"] - signal["stop"]))


class FixedMix:
    """A strategy holding fixed asset weights: its returns are the mix's real daily returns."""

    def __init__(self, market, weights: dict[str, float], days: int = 400):
        self.weights = dict(weights)
        close = market["close"].sel(asset=list(weights)).to_pandas().T.iloc[-days - 1 :]
        self._returns = (close.pct_change().iloc[1:] * pd.Series(weights)).sum(axis=1)

    def returns(self) -> pd.Series:
        return self._returns

    def target_weights(self, at=None) -> dict[str, float]:
        return dict(self.weights)


QUALITY = {"KO": 0.5, "JNJ": 0.5}
GROWTH = {"AAPL": 0.5, "MSFT": 0.5}


@pytest.fixture
def desk(market):
    """Note 004's objects on one funded portfolio with two strategies mapped to assets."""
    risk_manager = RiskManager({"equity_usd": 1_000_000}, market=market)
    pm = PortfolioManager(risk_manager, RealTimePerformanceMonitor())
    pm.register_strategy("quality", FixedMix(market, QUALITY), 0.40)
    pm.register_strategy("growth", FixedMix(market, GROWTH), 0.35)
    return risk_manager, pm


# -- note 004, "Usage Example" ------------------------------------------------------------
def test_note_004_usage_example_runs_as_written(market):
    """004 "Usage Example": setup, registration, a signal, optimization, rebalance."""
    # Setup
    portfolio_config = {"equity_usd": 10000}
    risk_manager = RiskManager(portfolio_config)
    performance_monitor = RealTimePerformanceMonitor()
    portfolio_manager = PortfolioManager(risk_manager, performance_monitor)
    coordinator = StrategyCoordinator(portfolio_manager, risk_manager)

    # Register strategies
    strategy_instance = CrossSectionalMomentum(risk_manager.registry.market)
    portfolio_manager.register_strategy("momentum", strategy_instance, 0.30)
    portfolio_manager.register_strategy("reversal", strategy_instance, 0.25)
    portfolio_manager.register_strategy("breakout", strategy_instance, 0.25)

    # Process signals
    signal = note_signal(market)

    async def session():
        result = await coordinator.process_strategy_signal("momentum", signal)
        # Optimize portfolio
        opt_result = await portfolio_manager.optimize_portfolio_allocation("performance_based")
        # Rebalance if needed
        rebalance_result = await portfolio_manager.rebalance_portfolio("performance", apply=True)
        return result, opt_result, rebalance_result

    result, opt_result, rebalance_result = run(session())

    # The equity is the ledger's cash, and the portfolio is worth it at the last close.
    reg, pid = risk_manager.registry, risk_manager.portfolio
    assert reg.positions(pid).cash == 10000.0
    assert reg.value(pid) == pytest.approx(10000.0)
    assert risk_manager.get_portfolio_summary()["value"] == pytest.approx(10000.0)
    # The signal went to the manager's portfolio, sized on momentum's 30 % of the equity.
    assert result.status is SignalState.QUEUED and result.portfolio == pid
    assert result.allocation == pytest.approx(3000.0) and result.nav == pytest.approx(10000.0)
    assert result.size == expected_size(signal, 3000.0)
    assert [s.id for s in coordinator.queued_signals()] == [result.id]
    # Three identical strategies: performance-based scores are equal, so 1/3 each.
    assert opt_result.applied and opt_result.method == "performance_based"
    assert opt_result.after == pytest.approx(dict.fromkeys(opt_result.after, 1 / 3))
    assert portfolio_manager.allocations() == pytest.approx(opt_result.after)
    # The monitor reads the stored performance.
    perf = performance_monitor.get_strategy_summary("momentum")
    assert perf == portfolio_manager.strategy("momentum").performance.to_dict()
    # Momentum's last quarter: drawdown under the 5 % default, Sharpe positive: no fire.
    details = rebalance_result.trigger.details["strategies"]["momentum"]
    assert details["drawdown"] < 0.05 and details["rolling_sharpe"] > 0
    assert not rebalance_result.fired and rebalance_result.decision is None
    assert portfolio_manager.history()[-1] == opt_result


# -- note 004, "Key Methods" of PortfolioManager ------------------------------------------------
def test_note_004_portfolio_manager_methods(desk):
    """004 "1. Portfolio Manager", Key Methods, with the note's argument names."""
    risk_manager, pm = desk
    pm.register_strategy(
        strategy_name="carry", strategy_instance=FixedMix(risk_manager.registry.market, {"PG": 1.0})
    )  # initial_allocation defaults to 0.25 ...
    assert pm.allocations()["carry"] == 0.25
    pm.update_strategy_status(strategy_name="carry", active=False)  # ... freed again
    assert pm.get_strategy_allocation(strategy_name="carry")["allocation"] == 0.0

    opt = run(pm.optimize_portfolio_allocation(optimization_method="markowitz", target_return=None))
    assert opt.applied and set(opt.after) == {"quality", "growth", "carry"}
    assert opt.after["carry"] == 0.0 and sum(opt.after.values()) == pytest.approx(1.0)

    out = run(pm.rebalance_portfolio(trigger="threshold", threshold=0.99, apply=True))
    assert not out.fired

    summary = pm.get_portfolio_summary()
    assert summary["active"] == ["growth", "quality"]
    assert summary["targets"] == pytest.approx(opt.after)
    alloc = pm.get_strategy_allocation(strategy_name="growth")
    assert alloc["target_allocation"] == pytest.approx(opt.after["growth"])
    assert alloc["drift"] == pytest.approx(alloc["allocation"] - alloc["target_allocation"])
    pm.update_strategy_status(strategy_name="carry", active=True)
    assert pm.strategy("carry").active


# -- note 004, "Rebalancing Triggers": every trigger firing and not firing -----------------------
def _assert_fired(pm, out, trigger: str, history_before: int) -> None:
    """Firing records an applied decision, stores it, and proposes trades toward the targets."""
    assert out.fired and out.trigger.trigger == trigger
    d = out.decision
    assert d.applied and d.trigger == trigger and d.kind == "rebalance"
    history = pm.history()
    assert history[-1] == d
    if d.method == "restore targets":
        assert len(history) == history_before + 1
    else:  # the optimizer's run is kept too, unapplied, with the same result
        assert len(history) == history_before + 2
        assert (history[-2].kind, history[-2].applied) == ("optimization", False)
        assert history[-2].after == d.after and history[-2].method == d.method
    assert pm.allocations() == pytest.approx(d.after)
    assert {s.name: s.target_allocation for s in pm.strategies()} == pytest.approx(d.after)
    p = out.proposal
    assert p is not None and p.state == "proposed" and p.reason.startswith(f"{trigger}: ")
    pid = pm.portfolio
    targets = {
        a: sum(d.after[s] * w[a] for s, w in (("quality", QUALITY), ("growth", GROWTH)) if a in w)
        for a in {*QUALITY, *GROWTH}
    }
    assert p.target_weights[pid] == pytest.approx(targets)
    nav = pm.registry.value(pid)
    current = p.current_weights[pid]
    for t in p.trades:
        before = current.get(t.asset, 0.0)
        after = before + t.quantity * t.price / nav
        # each trade moves its asset's weight toward the target, overshooting by < 1 lot
        assert abs(after - targets.get(t.asset, 0.0)) < abs(before - targets.get(t.asset, 0.0))


def _assert_quiet(pm, out, history_before: int, allocations: dict) -> None:
    assert not out.fired and out.decision is None and out.proposal is None
    assert len(pm.history()) == history_before
    assert pm.allocations() == pytest.approx(allocations)


def test_scheduled_trigger_fires_through_the_coroutine(desk):
    _, pm = desk
    t0 = datetime(2024, 1, 1, 9)
    n = len(pm.history())
    out = run(pm.rebalance_portfolio("scheduled", apply=True, now=t0))
    _assert_fired(pm, out, "scheduled", n)
    assert out.decision.method == "risk_parity"  # no optimization yet
    alloc, n1 = pm.allocations(), len(pm.history())
    quiet = run(pm.rebalance_portfolio("scheduled", now=t0 + timedelta(hours=23)))
    _assert_quiet(pm, quiet, n1, alloc)
    n2 = len(pm.history())
    again = run(pm.rebalance_portfolio("scheduled", now=t0 + timedelta(hours=25)))
    _assert_fired(pm, again, "scheduled", n2)


def test_threshold_trigger_fires_on_asset_drift(desk):
    """All cash against 17.5-20 % asset targets: the drift band fires and restores them."""
    _, pm = desk
    n, alloc = len(pm.history()), pm.allocations()
    quiet = run(pm.rebalance_portfolio("threshold", threshold=0.26, apply=True))
    _assert_quiet(pm, quiet, n, alloc)
    out = run(pm.rebalance_portfolio("threshold", threshold=0.05, apply=True))
    _assert_fired(pm, out, "threshold", n)
    assert out.decision.method == "restore targets"
    targets = {a: 0.40 * w for a, w in QUALITY.items()} | {a: 0.35 * w for a, w in GROWTH.items()}
    assert out.trigger.details["asset_drift"] == pytest.approx({a: -w for a, w in targets.items()})
    assert all(t.quantity > 0 for t in out.proposal.trades)
    assert {t.asset for t in out.proposal.trades} == {*QUALITY, *GROWTH}


def test_performance_trigger_fires_on_a_drawdown(desk):
    _, pm = desk
    frame = pm.returns_frame().iloc[-63:]
    wealth = (1 + frame).cumprod()
    drawdown = (1 - wealth / np.maximum(wealth.cummax(), 1.0)).iloc[-1]
    n, alloc = len(pm.history()), pm.allocations()
    quiet = run(pm.rebalance_portfolio("performance", threshold=0.99, apply=True, min_sharpe=None))
    _assert_quiet(pm, quiet, n, alloc)
    limit = float(drawdown.max()) / 2  # below the deeper drawdown: that strategy degraded
    out = run(
        pm.rebalance_portfolio(
            "performance", threshold=limit, apply=True, min_sharpe=None, method="performance_based"
        )
    )
    _assert_fired(pm, out, "performance", n)
    assert str(drawdown.idxmax()) in out.trigger.reason
    assert out.decision.method == "performance_based"


def test_risk_trigger_fires_on_a_position_limit(desk, market):
    risk_manager, pm = desk
    reg, pid = risk_manager.registry, risk_manager.portfolio
    t = market.indexes["time"][-1].to_pydatetime()
    price = last_close(market, "AAPL")
    reg.record_trade("AAPL", math.floor(600_000 / price), price, portfolio=pid, ts=t)
    weight = math.floor(600_000 / price) * price / reg.value(pid)
    n, alloc = len(pm.history()), pm.allocations()
    quiet = run(pm.rebalance_portfolio("risk", apply=True, limits={"max_position_weight": 0.99}))
    _assert_quiet(pm, quiet, n, alloc)
    out = run(pm.rebalance_portfolio("risk", apply=True, limits={"max_position_weight": 0.25}))
    _assert_fired(pm, out, "risk", n)
    (breach,) = out.trigger.details["breaches"]
    assert (breach["limit"], breach["item"]) == ("position", "AAPL")
    assert breach["value"] == pytest.approx(weight) and breach["threshold"] == 0.25
    sells = {t.asset: t.quantity for t in out.proposal.trades if t.quantity < 0}
    assert set(sells) == {"AAPL"}


# -- note 004, "Key Methods" of StrategyCoordinator ----------------------------------------------
def test_note_004_strategy_coordinator_methods(desk, market):
    """004 "2. Strategy Coordinator", Key Methods, awaited where the note awaits."""
    risk_manager, pm = desk
    coordinator = StrategyCoordinator(pm, risk_manager)
    long_sig, short_sig = note_signal(market, "KO"), note_signal(market, "KO", "short")

    async def session():
        first = await coordinator.process_strategy_signal("quality", long_sig)
        second = await coordinator.process_strategy_signal("growth", short_sig)
        res = await coordinator.resolve_signal_conflicts(
            first, [second], ResolutionStrategy.BEST_RISK_REWARD
        )
        nxt = await coordinator.get_next_signal(timeout=None)
        none = await coordinator.get_next_signal(timeout=0.01)
        return first, second, res, nxt, none

    first, second, res, nxt, none = run(session())
    capital = 0.40 * 1_000_000  # quality's share of the equity
    assert first.size == expected_size(long_sig, capital)
    # Opposing signals on KO: the default rule (highest priority, ties: first in) keeps one.
    survivor = coordinator.signal(nxt.id)
    loser = first if nxt.id == second.id else second
    assert coordinator.signal(loser.id).status is SignalState.SUPERSEDED
    assert coordinator.signal(loser.id).superseded_by == survivor.id
    # The awaited resolution is the pure rule: equal risk:reward ties go to the earlier signal.
    assert isinstance(res, Resolution) and res.strategy is ResolutionStrategy.BEST_RISK_REWARD
    assert res.winner.id == (first.id if first.risk_reward > second.risk_reward else second.id)
    assert none is None and nxt.status is SignalState.DISPATCHED

    done = coordinator.mark_signal_executed(nxt.id, {"filled": nxt.size})
    assert done.status is SignalState.EXECUTED and done.execution_result == {"filled": nxt.size}
    stats = coordinator.get_processing_stats()
    assert (stats["received"], stats["executed"], stats["superseded"]) == (2, 1, 1)
    summary = coordinator.get_active_signals_summary()
    assert summary["total"] == 0 and summary["by_priority"] == {
        p.name: 0 for p in sorted(Priority, reverse=True)
    }


# -- note 004 constructor shapes: bad shapes raise typed errors naming the field -----------------
@pytest.mark.parametrize(
    ("build", "error", "field"),
    [
        (lambda rm, pm: PortfolioManager({"equity_usd": 10000}), ValidationError, "registry"),
        (lambda rm, pm: PortfolioManager(rm, 42), ValidationError, "portfolio"),
        (lambda rm, pm: StrategyCoordinator({"equity_usd": 10000}), ValidationError, "registry"),
        (
            lambda rm, pm: StrategyCoordinator(pm, {"equity_usd": 1}),
            ValidationError,
            "risk_manager",
        ),
        (lambda rm, pm: RiskManager(["equity_usd", 10000]), ValidationError, "portfolio_config"),
        (
            lambda rm, pm: RiskManager({"equity_usd": -1}, market=rm.registry.market),
            ValidationError,
            "equity_usd",
        ),
        (
            lambda rm, pm: RiskManager({"equity_usd": 1, "capital": 2}, market=rm.registry.market),
            ConfigError,
            "capital",
        ),
        (
            lambda rm, pm: RiskManager(
                {"equity_eur": 1, "currency": "USD"}, market=rm.registry.market
            ),
            ConfigError,
            "equity_eur",
        ),
        (
            lambda rm, pm: RiskManager(
                {"equity_usd": 1}, market=rm.registry.market, risk_fraction=2
            ),
            ValidationError,
            "risk_fraction",
        ),
    ],
)
def test_bad_constructor_shapes_raise_typed_errors(desk, build, error, field):
    risk_manager, pm = desk
    with pytest.raises(error) as info:
        build(risk_manager, pm)
    assert info.value.field == field


def test_a_risk_manager_of_another_store_is_refused(desk, market):
    _, pm = desk
    other = RiskManager({"equity_usd": 5}, market=market)
    with pytest.raises(ValidationError) as info:
        StrategyCoordinator(pm, other)
    assert info.value.field == "risk_manager"


def test_a_coordinator_from_a_risk_manager_uses_its_risk_fraction(market):
    rm = RiskManager({"equity_usd": 100_000}, market=market, risk_fraction=0.02)
    pm = PortfolioManager(rm)
    pm.register_strategy("only", FixedMix(market, GROWTH), 1.0)
    coordinator = StrategyCoordinator(pm, rm)
    sig = note_signal(market, "MSFT")
    out = run(coordinator.process_strategy_signal("only", sig))
    assert coordinator.risk_fraction == 0.02
    assert out.size == expected_size(sig, 100_000, 0.02)


def test_a_risk_manager_reopens_its_store_without_depositing_twice(market, tmp_path):
    url = f"sqlite:///{tmp_path / 'desk.sqlite'}"
    first = RiskManager({"equity_usd": 10000}, market=market, store=url)
    pm = PortfolioManager(first)
    pm.register_strategy("only", FixedMix(market, GROWTH), 0.5)
    first.registry.store.close()
    again = RiskManager({"equity_usd": 10000}, market=market, store=url)
    assert again.portfolio == first.portfolio
    assert again.get_portfolio_summary()["cash"] == 10000.0
    assert PortfolioManager(again).allocations() == {"only": 0.5}


# -- from_single_portfolio_config keeps the cash -------------------------------------------------
@pytest.mark.parametrize(
    ("config", "cash", "currency"),
    [
        ({"equity_usd": 10000}, 10000.0, "USD"),
        ({"equity_eur": 2500.5, "risk": {"max_drawdown": 0.2}}, 2500.5, "EUR"),
        ({"capital": 700}, 700.0, "USD"),
        ({"config": {"initial_capital": 900, "rebalance": "monthly"}}, 900.0, "USD"),
        ({"initial_capital": 250000.0, "equity": 250000}, 250000.0, "USD"),
    ],
)
def test_single_portfolio_migration_deposits_the_capital(market, config, cash, currency):
    reg = Registry.from_single_portfolio_config(config, market=market)
    (p,) = reg.portfolios()
    assert reg.positions(p.id).cash == cash and p.currency == currency
    assert p.initial_capital == cash
    assert reg.value(p.id) == pytest.approx(cash)  # stamped at the market's last time
    (entry,) = reg.store.ledger(p.id)
    assert (entry.kind, entry.amount, entry.currency) == ("cash", cash, currency)
    leftover = {
        k: v
        for k, v in config.items()
        if k not in {"equity_usd", "equity_eur", "capital", "initial_capital", "equity", "config"}
    }
    assert reg.resolve_config() == {
        **leftover,
        **{k: v for k, v in config.get("config", {}).items() if k != "initial_capital"},
    }


# -- note 001, "Configuration Options" and "API Extensions" --------------------------------------


def test_note_001_registry_lifecycle_selection_and_grouping(market):
    """001 "Configuration Options" and "API Extensions": registry, selection, grouping."""
    integration = RiskManager(NOTE_001_CONFIG, market=market).registry
    assert integration.positions("growth_strategy").cash == 1000000.0
    assert integration.positions("income_strategy").cash == 500000.0
    assert integration.get_group_portfolios("client_a") == ["growth_strategy", "income_strategy"]

    # Portfolio Registry Operations
    config, initial_capital = {"name": "Macro Book", "currency": "USD"}, 250000.0
    portfolio_id = integration.create_portfolio(config, initial_capital)
    assert integration.positions(portfolio_id).cash == initial_capital
    integration.deactivate_portfolio(portfolio_id)
    assert integration.portfolio(portfolio_id).status == "inactive"
    integration.activate_portfolio(portfolio_id)
    assert integration.portfolio(portfolio_id).status == "active"

    # Portfolio Selection
    integration.set_active_portfolio(portfolio_id)
    active_portfolio = integration.get_active_portfolio()
    assert active_portfolio.id == portfolio_id
    all_portfolios = integration.get_all_portfolios()
    assert {p.id for p in all_portfolios} == {"growth_strategy", "income_strategy", portfolio_id}

    # Portfolio Grouping
    name, portfolio_ids = "Macro Books", ["income_strategy"]
    group_id = integration.create_portfolio_group(name, portfolio_ids)
    integration.add_to_group(group_id, portfolio_id)
    assert integration.get_group_portfolios(group_id) == ["income_strategy", portfolio_id]
    integration.remove_from_group(group_id, "income_strategy")
    group_portfolios = integration.get_group_portfolios(group_id)
    assert group_portfolios == [portfolio_id]

    integration.remove_from_group(group_id, portfolio_id)
    integration.record_cash(-initial_capital, portfolio=portfolio_id)
    integration.delete_portfolio(portfolio_id)
    assert integration.portfolio(portfolio_id).status == "archived"


def test_note_001_cross_portfolio_operations(market):
    """001 "API Extensions", Cross-Portfolio Operations, on books with a history to compare."""
    start = pd.Timestamp("2021-01-04")
    integration = Integration.from_config(NOTE_001_CONFIG, market=market, at=start.to_pydatetime())
    close = market["close"].sel(time=start)
    for pid, assets in (("growth_strategy", ["AAPL", "MSFT"]), ("income_strategy", ["KO", "PG"])):
        cash = integration.positions(pid).cash
        for a in assets:
            qty = float(np.floor(0.4 * cash / float(close.sel(asset=a))))
            integration.record_trade(a, qty, float(close.sel(asset=a)), portfolio=pid,
                                     ts=(start + pd.Timedelta(hours=16)).to_pydatetime())
    portfolio_ids, metrics = ["growth_strategy", "income_strategy"], ["sharpe", "volatility"]
    comparison = integration.compare_portfolios(portfolio_ids, metrics)
    correlation = integration.calculate_correlation(portfolio_ids)
    diversification = integration.analyze_diversification(portfolio_ids)
    consolidated_report = integration.generate_consolidated_report(portfolio_ids)
    # the shapes a user of the note expects: one row per portfolio, a unit diagonal
    assert list(comparison.index) == portfolio_ids and list(comparison.columns) == metrics
    corr = np.asarray(correlation, dtype=float)
    assert np.allclose(np.diag(corr), 1.0) and np.allclose(corr, corr.T)
    assert -1.0 < corr[0, 1] < 1.0
    # two books that are not perfectly correlated diversify: the ratio exceeds 1
    assert diversification.diversification_ratio > 1.0
    held = consolidated_report.holdings
    for a in ("AAPL", "MSFT", "KO", "PG"):
        total = sum(integration.positions(p).quantities.get(a, 0.0) for p in portfolio_ids)
        assert held.loc[a, "quantity"] == pytest.approx(total)
