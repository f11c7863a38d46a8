"""Strategies inside a portfolio and the allocation of its capital between them."""

from pmkit.strategies.library import (
    CrossSectionalMomentum,
    LowVolatility,
    RankingStrategy,
    ShortTermReversal,
)
from pmkit.strategies.manager import ALLOCATION_TOLERANCE, PortfolioManager, StrategyManager
from pmkit.strategies.session import RealTimePerformanceMonitor, RiskManager, session_of
from pmkit.strategies.types import (
    AllocationDecision,
    RebalanceOutcome,
    Strategy,
    StrategyInfo,
    StrategyPerformance,
    performance_of,
    strategy_id,
    validated_returns,
)

__all__ = [
    "ALLOCATION_TOLERANCE",
    "AllocationDecision",
    "CrossSectionalMomentum",
    "LowVolatility",
    "PortfolioManager",
    "RankingStrategy",
    "RealTimePerformanceMonitor",
    "RebalanceOutcome",
    "RiskManager",
    "ShortTermReversal",
    "Strategy",
    "StrategyInfo",
    "StrategyManager",
    "StrategyPerformance",
    "performance_of",
    "session_of",
    "strategy_id",
    "validated_returns",
]
