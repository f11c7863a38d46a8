"""Labelled data model: xarray datasets for markets and holdings, with validation.

Dims are named ``portfolio``, ``asset`` and ``time``; asset metadata are
coordinates on ``asset``. Validation raises `pmkit.errors` types.
"""

from pmkit.model.holdings import (
    check_holdings_assets,
    holdings_dataset,
    holdings_from_ledger,
    portfolio_values,
    position_values,
    weights,
)
from pmkit.model.market import (
    latest_prices,
    listing_dates,
    market_dataset,
    market_time_at,
    simple_returns,
    validate_market,
)

__all__ = [
    "check_holdings_assets",
    "holdings_dataset",
    "holdings_from_ledger",
    "latest_prices",
    "listing_dates",
    "market_dataset",
    "market_time_at",
    "portfolio_values",
    "position_values",
    "simple_returns",
    "validate_market",
    "weights",
]
