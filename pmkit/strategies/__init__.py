"""Strategies inside a portfolio and the allocation of its capital between them."""

from pmkit.strategies.library import (
    CrossSectionalMomentum,
    LowVolatility,
    RankingStrategy,
    ShortTermReversal,
)
from pmkit.strategies.live import (
    LIVE_STRATEGIES,
    Idea,
    LiveStrategy,
    RateLimit,
    live_strategy,
    register_live_strategy,
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
    "LIVE_STRATEGIES",
    "AllocationDecision",
    "CrossSectionalMomentum",
    "Idea",
    "LiveStrategy",
    "LowVolatility",
    "PortfolioManager",
    "RankingStrategy",
    "RateLimit",
    "RealTimePerformanceMonitor",
    "RebalanceOutcome",
    "RiskManager",
    "ShortTermReversal",
    "Strategy",
    "StrategyInfo",
    "StrategyManager",
    "StrategyPerformance",
    "live_strategy",
    "performance_of",
    "register_live_strategy",
    "session_of",
    "strategy_id",
    "validated_returns",
]
