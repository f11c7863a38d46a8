"""A demo registry on real market data: four portfolios, three groups, four users.

The portfolios buy real S&P 500 constituents and factor ETFs at their real
closes on the first trading day of 2021 (rounded down to lot sizes, with a
1 bp fee) and trim a position mid-2022, so values, P&L and consolidation
are those of real prices. Everything goes through the public registry API,
so the demo's audit log reads like a real one.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pmkit.registry import Registry
from pmkit.store import Store, open_store

if TYPE_CHECKING:
    from pmkit.coordinator import StrategyRun, StrategyRunner

__all__ = [
    "DEMO_CONFIG",
    "DEMO_LIVE_STRATEGIES",
    "DEMO_RUNS",
    "DEMO_TARGETS",
    "DEMO_USERS",
    "open_demo",
    "register_demo_strategies",
    "seed_demo",
    "start_demo_runs",
]

#: Fee charged on demo trades, as a fraction of notional (1 bp).
DEMO_FEE_RATE = 1e-4
DEMO_START = "2021-01-04"
DEMO_TRIM = "2022-06-01"

DEMO_CONFIG: dict[str, Any] = {
    "portfolios": {
        "client_a/growth": {
            "name": "Growth Strategy",
            "description": "High-growth technology focus",
            "initial_capital": 1_000_000.0,
            "currency": "USD",
            "risk_profile": "aggressive",
            "benchmark": "SP500",
            "tags": ["technology", "growth", "high_risk"],
            "segment": {"client": "client_a", "strategy": "growth", "asset_class": "equity"},
        },
        "client_a/income": {
            "name": "Income Strategy",
            "description": "Dividend-focused income generation",
            "initial_capital": 500_000.0,
            "currency": "USD",
            "risk_profile": "conservative",
            "benchmark": "SP500",
            "tags": ["dividend", "income", "low_risk"],
            "segment": {"client": "client_a", "strategy": "income", "asset_class": "equity"},
        },
        "client_b/balanced": {
            "name": "Balanced",
            "description": "Sector-balanced large caps",
            "initial_capital": 750_000.0,
            "currency": "USD",
            "risk_profile": "moderate",
            "benchmark": "SP500",
            "tags": ["balanced", "core"],
            "segment": {"client": "client_b", "strategy": "balanced", "asset_class": "equity"},
        },
        "client_b/factors": {
            "name": "Factor ETFs",
            "description": "Smart-beta ETF sleeve (listed 2014)",
            "initial_capital": 250_000.0,
            "currency": "USD",
            "risk_profile": "moderate",
            "benchmark": "SP500",
            "tags": ["etf", "factor", "core"],
            "segment": {"client": "client_b", "strategy": "factor", "asset_class": "etf"},
        },
    },
    "groups": {
        "client_a": {
            "name": "Client A Portfolios",
            "portfolios": ["client_a/growth", "client_a/income"],
            "allocation": {"client_a/growth": 0.7, "client_a/income": 0.3},
            "config": {"max_position_weight": 0.25, "rebalance_band": 0.05},
        },
        "client_b": {
            "name": "Client B Portfolios",
            "portfolios": ["client_b/balanced", "client_b/factors"],
            "allocation": {"client_b/balanced": 0.75, "client_b/factors": 0.25},
            "config": {"max_position_weight": 0.20},
        },
        "firm": {
            "name": "Firm",
            "groups": ["client_a", "client_b"],
            "config": {"rebalance_band": 0.03, "base_currency": "USD"},
        },
    },
    "default_portfolio": "client_a/growth",
    "isolation": {"events": True, "data": True, "resources": True},
    "cross_portfolio": {
        "enable_analysis": True,
        "enable_reporting": True,
        "correlation_analysis": True,
    },
    "defaults": {"max_position_weight": 0.30, "rebalance_band": 0.10, "var_confidence": 0.99},
}

#: Target weights of each demo portfolio's initial purchase (the rest is cash).
DEMO_TARGETS: dict[str, dict[str, float]] = {
    "client_a/growth": {"AAPL": 0.25, "MSFT": 0.25, "AMD": 0.15, "HD": 0.15, "UNH": 0.15},
    "client_a/income": {"KO": 0.20, "PEP": 0.20, "PG": 0.20, "JNJ": 0.20, "XOM": 0.15},
    "client_b/balanced": {
        "JPM": 0.15,
        "CVX": 0.15,
        "LLY": 0.15,
        "WMT": 0.15,
        "GE": 0.15,
        "MRK": 0.10,
        "BAC": 0.10,
    },
    "client_b/factors": {"MTUM": 0.2, "QUAL": 0.2, "SIZE": 0.2, "USMV": 0.2, "VLUE": 0.15},
}

#: Demo users: id -> (roles by target, may create).
DEMO_USERS: dict[str, tuple[dict[str, str], bool]] = {
    "alice": ({"client_a": "trader"}, False),
    "bob": ({"firm": "manager"}, True),
    "carol": ({"firm": "viewer"}, False),
    "dave": ({"client_b": "owner"}, True),
}


def _close(market: Any, asset: str, day: str) -> float:
    return float(market["close"].sel(asset=asset, time=pd.Timestamp(day)).item())


def seed_demo(registry: Registry) -> None:
    """Populate an empty registry (acting as an administrator) with the demo.

    Parameters
    ----------
    registry : Registry
        Must have market data from `pmkit.datasets.load_market` and act as an
        administrator (e.g. ``"system"``).
    """
    market = registry.market
    if market is None:
        raise ValueError("seed_demo needs a registry with market data")
    start = pd.Timestamp(DEMO_START).to_pydatetime()
    registry.apply_config(DEMO_CONFIG, at=start.replace(hour=9))
    for user, (roles, can_create) in DEMO_USERS.items():
        registry.add_user(user, can_create=can_create, display_name=user.title())
        for target, role in roles.items():
            registry.grant(user, target, role)
    lots = market["lot_size"].to_series()
    close_ts = datetime.combine(start.date(), datetime.min.time()).replace(hour=16)
    for pid, targets in DEMO_TARGETS.items():
        capital = DEMO_CONFIG["portfolios"][pid]["initial_capital"]
        for asset, w in targets.items():
            price = _close(market, asset, DEMO_START)
            lot = int(lots[asset])
            qty = math.floor(w * capital / price / lot) * lot
            registry.record_trade(
                asset,
                float(qty),
                price,
                portfolio=pid,
                fee=round(DEMO_FEE_RATE * qty * price, 2),
                ts=close_ts,
                memo="initial allocation",
            )
    # Mid-2022 the growth book trims AMD by a third: a realised sale in the ledger.
    qty = registry.positions("client_a/growth").quantities["AMD"]
    price = _close(market, "AMD", DEMO_TRIM)
    sell = -float(np.floor(qty / 3))
    registry.record_trade(
        "AMD",
        sell,
        price,
        portfolio="client_a/growth",
        fee=round(DEMO_FEE_RATE * -sell * price, 2),
        ts=pd.Timestamp(DEMO_TRIM).to_pydatetime().replace(hour=16),
        memo="trim AMD",
    )


def open_demo(store: Store | str = ":memory:", *, user: str = "system") -> Registry:
    """Open (seeding on first use) the demo registry on real market data.

    Parameters
    ----------
    store : Store or str
        A store or URL; seeded only when it holds no portfolio yet, so reopening
        a demo store keeps everything done in it since.
    user : str
        User the returned registry acts as.
    """
    from pmkit.datasets import load_market

    st = open_store(store) if isinstance(store, str) else store
    market = load_market()
    admin = Registry(st, user="system", market=market)
    if not st.list("portfolio"):
        seed_demo(admin)
    return admin if user == "system" else admin.as_user(user)


#: Live signal strategies the demo registers: portfolio -> {strategy: fraction of its capital}.
DEMO_LIVE_STRATEGIES: dict[str, dict[str, float]] = {
    "client_a/growth": {"ma_crossover": 0.10, "breakout": 0.05, "mean_reversion": 0.05},
    "client_b/balanced": {"ma_crossover": 0.10, "breakout": 0.05, "mean_reversion": 0.05},
}

#: Runs the served demo starts: (strategy, portfolio, acting user, symbols watched). The
#: symbols are held by the other demo books (so the app's stream prices them) and not by
#: this one, so its signals have room under the position limits.
DEMO_RUNS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("ma_crossover", "client_a/growth", "alice", ("JNJ", "JPM", "KO", "WMT", "XOM")),
)


def register_demo_strategies(registry: Registry) -> list[str]:
    """Register `DEMO_LIVE_STRATEGIES` where missing; returns the ``portfolio#name`` ids added.

    ``registry`` acts as an administrator or a manager of the portfolios.
    Strategies already registered, and portfolios the store does not have,
    are left alone, so calling it again changes nothing. A live strategy has
    no return history yet: it is registered with an empty one (its
    performance is unknown, so its signals rank as average).
    """
    from pmkit.strategies import StrategyManager
    from pmkit.strategies.types import strategy_id

    added = []
    empty = pd.Series([], dtype=float, index=pd.DatetimeIndex([]))
    view = registry.view()
    for pid, strategies in DEMO_LIVE_STRATEGIES.items():
        if view.record("portfolio", pid) is None:
            continue
        manager = StrategyManager(registry, pid)
        for name, fraction in strategies.items():
            if view.record("strategy", strategy_id(pid, name)) is None:
                manager.register_strategy(name, empty, fraction)
                added.append(strategy_id(pid, name))
    return added


def start_demo_runs(runner: StrategyRunner) -> list[StrategyRun]:
    """Start the `DEMO_RUNS` the store has never run, each acting as its user.

    A demo run that exists in any state is left alone: a running one is
    reattached by the runner, and one somebody paused or stopped stays so
    across restarts of the app. Runs whose portfolio, user or strategy
    registration the store lacks are skipped (a store that is not the
    demo's). Returns the runs started.
    """
    from pmkit.errors import PmkitError

    live = {(r.strategy, r.portfolio) for r in runner.runs()}
    started = []
    for strategy, pid, user, symbols in DEMO_RUNS:
        if (strategy, pid) in live:
            continue
        try:
            started.append(runner.as_user(user).start(strategy, pid, symbols=list(symbols)))
        except PmkitError:
            continue  # not the demo's store: nothing to start there
    return started
