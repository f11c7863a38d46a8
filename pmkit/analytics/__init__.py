"""Labelled analytics over the JAX core: valuation, returns and performance statistics.

Functions take and return xarray objects indexed by ``portfolio`` (or
``group``), validate their input with typed `pmkit.errors`, and accept
dask-backed arrays chunked over ``portfolio``.
"""

from pmkit.analytics.performance import (
    drawdowns,
    group_returns,
    performance_table,
    rolling_statistics,
)
from pmkit.analytics.returns import external_flows, money_weighted_return, time_weighted_returns
from pmkit.analytics.valuation import (
    daily_pnl,
    fx_rates,
    group_values,
    membership_matrix,
    portfolio_values,
    realized_unrealized_pnl,
)

__all__ = [
    "daily_pnl",
    "drawdowns",
    "external_flows",
    "fx_rates",
    "group_returns",
    "group_values",
    "membership_matrix",
    "money_weighted_return",
    "performance_table",
    "portfolio_values",
    "realized_unrealized_pnl",
    "rolling_statistics",
    "time_weighted_returns",
]
