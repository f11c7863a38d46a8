"""Pre-trade risk controls: the public name of `pmkit.registry.controls`.

The controls are part of the kernel (every booked trade passes them in
`pmkit.registry.trading.append_trade`, and the registry may not import the
risk layer above it), so they are implemented in `pmkit.registry.controls`;
this module gives them their place among the risk tools. See that module
for the limits, their configuration keys and units, and where they run.
"""

from pmkit.registry.controls import (
    EXPOSURE_LIMITS,
    ORDER_LIMITS,
    STAGES,
    TOLERANCE,
    Breach,
    Limits,
    Override,
    ProposedTrade,
    decision_nav,
    enforce_pre_trade,
    evaluate,
    heat_from_stops,
    historical_var,
    mark_price,
    market_returns,
    parse_limits,
    position_room,
    signal_stops,
)

__all__ = [
    "EXPOSURE_LIMITS",
    "ORDER_LIMITS",
    "STAGES",
    "TOLERANCE",
    "Breach",
    "Limits",
    "Override",
    "ProposedTrade",
    "decision_nav",
    "enforce_pre_trade",
    "evaluate",
    "heat_from_stops",
    "historical_var",
    "mark_price",
    "market_returns",
    "parse_limits",
    "position_room",
    "signal_stops",
]
