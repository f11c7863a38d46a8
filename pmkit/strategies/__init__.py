"""Strategies inside a portfolio and the allocation of its capital between them."""

from pmkit.strategies.manager import ALLOCATION_TOLERANCE, StrategyManager
from pmkit.strategies.types import (
    Strategy,
    StrategyInfo,
    StrategyPerformance,
    performance_of,
    strategy_id,
    validated_returns,
)

#: The design note's name for `StrategyManager`.
PortfolioManager = StrategyManager

__all__ = [
    "ALLOCATION_TOLERANCE",
    "PortfolioManager",
    "Strategy",
    "StrategyInfo",
    "StrategyManager",
    "StrategyPerformance",
    "performance_of",
    "strategy_id",
    "validated_returns",
]
