"""The design notes' names, in one place.

The design notes pmkit grew from (``/work/shared/seeds``) name some objects
and methods differently from pmkit's own API. Code written after a note
imports the note-shaped objects from here::

    from pmkit.compat import (
        PortfolioManager, RealTimePerformanceMonitor, RiskManager, StrategyCoordinator,
    )

    risk_manager = RiskManager({"equity_usd": 10000})
    portfolio_manager = PortfolioManager(risk_manager, RealTimePerformanceMonitor())
    coordinator = StrategyCoordinator(portfolio_manager, risk_manager)

`DESIGN_NOTE_NAMES` says, for every note-shaped name, which pmkit name it
stands for; new code should use those. Nothing inside pmkit imports this
module: it sits above the services, so it adds no import cycle.

The objects themselves are still defined beside their pmkit counterparts
(`pmkit.strategies.manager`, `pmkit.strategies.session`,
`pmkit.coordinator.coordinator`, `pmkit.registry.Registry`), whose owners
move them here; the names below are the ones to import meanwhile and after.
"""

from __future__ import annotations

from pmkit.coordinator import StrategyCoordinator
from pmkit.integration import Integration
from pmkit.strategies import PortfolioManager, RealTimePerformanceMonitor, RiskManager

__all__ = [
    "DESIGN_NOTE_NAMES",
    "Integration",
    "PortfolioManager",
    "RealTimePerformanceMonitor",
    "RiskManager",
    "StrategyCoordinator",
]

#: Note-shaped name -> the pmkit name it stands for (what new code should use).
DESIGN_NOTE_NAMES: dict[str, str] = {
    "PortfolioManager": "pmkit.strategies.StrategyManager (note 004's coroutine signatures)",
    "RiskManager": "a pmkit.registry.Registry session bound to one portfolio",
    "RealTimePerformanceMonitor": "pmkit.strategies.StrategyManager.strategy(name).performance",
    "StrategyCoordinator": "pmkit.coordinator.StrategyCoordinator (same object)",
    "StrategyCoordinator.process_strategy_signal": "StrategyCoordinator.process_signal",
    "StrategyCoordinator.resolve_signal_conflicts":
        "pmkit.coordinator.conflicts.resolve_signal_conflicts",
    "Integration": "pmkit.registry.Registry (note 001's integration object)",
    "Integration.get_all_portfolios": "pmkit.registry.Registry.portfolios",
    "Integration.activate_portfolio": "pmkit.registry.Registry.activate",
    "Integration.deactivate_portfolio": "pmkit.registry.Registry.deactivate",
    "Integration.delete_portfolio": "pmkit.registry.Registry.delete",
    "Integration.create_portfolio_group": "pmkit.registry.Registry.create_group",
}
