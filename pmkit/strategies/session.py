"""The design note's session objects: ``RiskManager`` and ``RealTimePerformanceMonitor``.

The multi-strategy note builds its services from a plain config dict::

    risk_manager = RiskManager({"equity_usd": 10000})
    performance_monitor = RealTimePerformanceMonitor()
    portfolio_manager = PortfolioManager(risk_manager, performance_monitor)
    coordinator = StrategyCoordinator(portfolio_manager, risk_manager)

Here a `RiskManager` is a registry session bound to one portfolio (the
config is migrated with `Registry.from_single_portfolio_config`, so the
equity is the ledger's cash), and the monitor reads the performance the
`PortfolioManager` stores for each strategy. `session_of` is the one place
that turns any of these objects into ``(registry, portfolio)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pmkit.errors import NotFoundError, ValidationError

__all__ = ["RealTimePerformanceMonitor", "RiskManager", "session_of"]


def session_of(obj: Any, field: str) -> tuple[Any, str | None]:
    """``(registry, portfolio)`` of a `Registry`, a `RiskManager` or a strategy manager.

    Parameters
    ----------
    obj : Registry, RiskManager or StrategyManager
        What a note-shaped constructor was given.
    field : str
        The argument's name, for the error.

    Returns
    -------
    tuple
        The registry session and the portfolio id the object is bound to
        (None for a bare registry: its active or default portfolio applies).

    Raises
    ------
    ValidationError
        ``obj`` is none of these (e.g. a config dict: wrap it in `RiskManager`).
    """
    from pmkit.registry import Registry

    if isinstance(obj, Registry):
        return obj, None
    from pmkit.strategies.manager import StrategyManager

    if isinstance(obj, RiskManager | StrategyManager):
        return obj.registry, obj.portfolio
    hint = "; wrap a config dict in RiskManager(config)" if isinstance(obj, Mapping) else ""
    raise ValidationError(
        field, type(obj).__name__, f"must be a Registry, RiskManager or PortfolioManager{hint}"
    )


class RiskManager:
    """A registry session bound to one portfolio, built the way the note builds it.

    Parameters
    ----------
    portfolio_config : mapping or Registry
        A single-portfolio config (``{"equity_usd": 10000}``, ``initial_capital``,
        ``currency``, limits...; see
        `pmkit.registry.config.from_single_portfolio_config`), a
        ``multi_portfolio_config`` (has ``"portfolios"``), or an open registry.
    market : xarray.Dataset, optional
        Market data for valuation and signals; default
        `pmkit.datasets.load_market()` when a config is given (a registry
        keeps its own). The starting equity is deposited at its last time.
    store : str or Store, default ":memory:"
        Where a config's registry is kept. A store that already holds
        portfolios (a restart) is reopened as stored; the config is not
        applied again.
    user : str, default "system"
        Acting user of a config's registry.
    portfolio : str, optional
        Portfolio to bind (default: the registry's active or default one).
    risk_fraction : float, default 0.01
        Fraction of a strategy's capital risked to the stop per trade, in
        (0, 1]; a `StrategyCoordinator` given this manager sizes with it.

    Raises
    ------
    ValidationError
        ``portfolio_config`` is neither a mapping nor a registry, or a bad value.
    ConfigError
        A config key or shape the registry refuses (naming the key).
    """

    def __init__(
        self,
        portfolio_config: Mapping[str, Any] | Any,
        *,
        market: Any = None,
        store: Any = ":memory:",
        user: str = "system",
        portfolio: str | None = None,
        risk_fraction: float = 0.01,
    ) -> None:
        from pmkit.registry import Registry, from_single_portfolio_config
        from pmkit.validation import check_number

        self.risk_fraction = check_number(
            risk_fraction, "risk_fraction", positive=True, maximum=1.0
        )
        if portfolio is not None and not isinstance(portfolio, str):
            raise ValidationError("portfolio", portfolio, "must be a portfolio id")
        if isinstance(portfolio_config, Registry):
            registry = portfolio_config
        elif isinstance(portfolio_config, Mapping):
            if market is None:
                from pmkit.datasets import load_market

                market = load_market()
            import pandas as pd

            from pmkit.integration import Integration

            # the note's integration object: registry operations and cross-portfolio analysis
            if isinstance(store, str):
                registry = Integration.open(store, user=user, market=market)
            else:
                registry = Integration(store, user=user, market=market)
            # A store set up before (a restart) is reopened as it is: depositing the
            # config's equity again would double the cash.
            if not registry.portfolios():
                at = pd.Timestamp(market.indexes["time"][-1]).to_pydatetime()
                config = (
                    portfolio_config
                    if "portfolios" in portfolio_config
                    else from_single_portfolio_config(portfolio_config, "default")
                )
                registry.apply_config(config, at=at)
        else:
            raise ValidationError(
                "portfolio_config",
                type(portfolio_config).__name__,
                "must be a config mapping or a Registry",
            )
        self.registry = registry
        self.portfolio: str = registry.portfolio(portfolio).id

    def __repr__(self) -> str:
        return f"RiskManager(portfolio={self.portfolio!r}, user={self.registry.user!r})"

    def get_portfolio_summary(self) -> dict[str, Any]:
        """Cash, value and positions of the bound portfolio (needs VIEWER).

        Returns
        -------
        dict
            ``portfolio``, ``currency``, ``cash`` (currency), ``value``
            (currency, at the last market time; None without market data) and
            ``positions`` (asset -> units, non-zero only).
        """
        pos = self.registry.positions(self.portfolio)
        info = self.registry.portfolio(self.portfolio)
        value = None if self.registry.market is None else self.registry.value(self.portfolio)
        return {
            "portfolio": self.portfolio,
            "currency": info.currency,
            "cash": float(pos.cash),
            "value": value,
            "positions": {a: float(q) for a, q in pos.quantities.items() if q},
        }


class RealTimePerformanceMonitor:
    """Per-strategy performance, as the `PortfolioManager` it is given to stores it.

    Built without arguments (the note's shape); a `PortfolioManager`
    constructed with it binds it. Until then its reads raise `NotFoundError`.
    """

    def __init__(self) -> None:
        self.manager: Any = None

    def bind(self, manager: Any) -> None:
        """Attach the strategy manager whose strategies are monitored."""
        self.manager = manager

    def _bound(self) -> Any:
        if self.manager is None:
            raise NotFoundError("portfolio manager", "RealTimePerformanceMonitor")
        return self.manager

    def get_strategy_summary(self, strategy_name: str) -> dict[str, Any] | None:
        """A strategy's stored performance (`StrategyPerformance.to_dict`), None before any.

        Sharpe, volatility and annual return are annualized (252 days); the
        drawdown is a positive fraction.
        """
        perf = self._bound().strategy(strategy_name).performance
        return None if perf is None else perf.to_dict()
