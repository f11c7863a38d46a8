"""Strategy signal coordination: validation, enrichment, conflicts, a priority queue.

`StrategyCoordinator` is the service (store-backed, audited, restartable);
`StrategyRunner` runs live signal strategies on a price stream and submits
their signals to it (`pmkit.coordinator.runner`);
`pmkit.coordinator.signals` and `pmkit.coordinator.conflicts` hold the pure
parts (validation, enrichment, detection and resolution rules).
"""

from pmkit.coordinator.conflicts import (
    ConflictKind,
    Resolution,
    ResolutionStrategy,
    find_duplicate,
    find_opposing,
    opposes_position,
    resolution_key,
    resolve_signal_conflicts,
)
from pmkit.coordinator.coordinator import DEFAULT_RESOLUTION, StrategyCoordinator
from pmkit.coordinator.runner import RunState, StrategyRun, StrategyRunner
from pmkit.coordinator.signals import (
    LIVE_STATES,
    TRANSITIONS,
    Priority,
    PriorityRule,
    Side,
    Signal,
    SignalState,
    enrich_signal,
    performance_score,
    position_size,
    risk_reward,
    validate_signal,
)

__all__ = [
    "DEFAULT_RESOLUTION",
    "LIVE_STATES",
    "TRANSITIONS",
    "ConflictKind",
    "Priority",
    "PriorityRule",
    "Resolution",
    "ResolutionStrategy",
    "RunState",
    "Side",
    "Signal",
    "SignalState",
    "StrategyCoordinator",
    "StrategyRun",
    "StrategyRunner",
    "enrich_signal",
    "find_duplicate",
    "find_opposing",
    "opposes_position",
    "performance_score",
    "position_size",
    "resolution_key",
    "resolve_signal_conflicts",
    "risk_reward",
    "validate_signal",
]
