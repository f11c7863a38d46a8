"""From a portfolio's efficient frontier to a rebalance proposal.

The frontier is computed on the same returns window and universe the
rebalance builder would use for the portfolio, with the portfolio's resolved
``max_position_weight`` as a per-asset cap, so that a point picked on the
chart becomes a proposal whose targets are exactly that point's weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from pmkit.errors import ConfigError, ValidationError
from pmkit.rebalance.builder import (
    _as_of,
    _check_portfolios,
    _check_universe,
    _default_universe,
    _window,
    propose_rebalance,
)

if TYPE_CHECKING:
    from pmkit.optimize.frontier import EfficientFrontier
    from pmkit.rebalance.types import RebalanceProposal
    from pmkit.registry import Registry

__all__ = ["frontier_targets", "portfolio_frontier", "propose_frontier_point", "returns_window"]

#: Frontier weights below this (fraction of NAV) are solver noise, not targets.
WEIGHT_FLOOR = 1e-6


def returns_window(
    registry: Registry,
    portfolio: str,
    *,
    at: Any = None,
    lookback: int = 756,
    universe: Sequence[str] | None = None,
) -> xr.DataArray:
    """Daily simple returns a rebalance of ``portfolio`` would optimize on.

    Parameters
    ----------
    registry : Registry
        With market data; its user needs VIEWER on ``portfolio``.
    portfolio : str
        An active portfolio id.
    at : datetime-like, optional
        Last market time of the window (default: the last market time).
    lookback : int, default 756
        Daily returns in the window (>= 30).
    universe : sequence of str, optional
        Assets; default the market's assets in the portfolio's currency with a
        return at every time of the window (as `propose_rebalance`).

    Returns
    -------
    xarray.DataArray
        ``(time, asset)`` daily simple returns (fractions), no NaN.
    """
    market = registry.market
    if market is None:
        raise ConfigError("registry.market", None, "the registry has no market data")
    registry.require("view", portfolio)
    if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < 30:
        raise ValidationError("lookback", lookback, "must be an integer >= 30")
    currency = _check_portfolios(registry, [portfolio])
    returns = _window(market, _as_of(market, at), lookback)
    assets = (
        _check_universe(universe, {str(a) for a in market.indexes["asset"]})
        if universe is not None
        else _default_universe(market, returns, currency)
    )
    window = returns.sel(asset=assets)
    if bool(window.isnull().any()):
        missing = [str(a) for a in assets if bool(window.sel(asset=a).isnull().any())]
        raise ValidationError("universe", missing, "has assets without a full returns window")
    return window


def portfolio_frontier(
    registry: Registry,
    portfolio: str,
    *,
    points: int = 20,
    at: Any = None,
    lookback: int = 756,
    universe: Sequence[str] | None = None,
    progress: bool = False,
) -> EfficientFrontier:
    """The long-only efficient frontier a rebalance of ``portfolio`` can reach.

    Parameters
    ----------
    registry, portfolio, at, lookback, universe
        As `returns_window`.
    points : int, default 20
        Frontier points (>= 2), from minimum variance to the highest
        attainable expected return.
    progress : bool, default False
        Show a tqdm progress bar.

    Returns
    -------
    pmkit.optimize.frontier.EfficientFrontier
        ``dataset``: ``expected_return(point)``, ``volatility(point)``
        (annualized fractions), ``sharpe(point)`` and ``weight(point, asset)``
        (fractions of NAV summing to 1). ``dataset.attrs`` name the
        portfolio, the window's end and the cap used.
    """
    from pmkit.optimize import Constraints, efficient_frontier

    window = returns_window(registry, portfolio, at=at, lookback=lookback, universe=universe)
    cap = registry.resolve_config(portfolio).get("max_position_weight")
    constraints = Constraints(upper=float(cap)) if cap is not None else Constraints()
    frontier = efficient_frontier(window, constraints=constraints, points=points,
                                  progress=progress)
    frontier.dataset.attrs.update(
        portfolio=portfolio,
        as_of=str(window.indexes["time"][-1].date()),
        lookback=lookback,
        max_position_weight=float("nan") if cap is None else float(cap),
    )
    return frontier


def frontier_targets(frontier: EfficientFrontier, point: int) -> dict[str, float]:
    """Target weights of one frontier point, ``{asset: fraction of NAV}``.

    Weights below ``WEIGHT_FLOOR`` are dropped (they are solver noise).

    Raises
    ------
    ValidationError
        ``point`` is not an index of the frontier.
    """
    n = int(frontier.dataset.sizes["point"])
    if isinstance(point, bool) or not isinstance(point, int | np.integer) or not 0 <= point < n:
        raise ValidationError("point", point, f"must be an integer in [0, {n - 1}]")
    w = frontier.weights.isel(point=int(point))
    return {str(a): float(v) for a, v in zip(w["asset"].values, w.values, strict=True)
            if v >= WEIGHT_FLOOR}


def propose_frontier_point(
    registry: Registry,
    portfolio: str,
    frontier: EfficientFrontier,
    point: int,
    *,
    note: str = "",
    **kwargs: Any,
) -> RebalanceProposal:
    """Propose (and store) the rebalance of ``portfolio`` to one frontier point.

    Parameters
    ----------
    registry : Registry
        The proposer's session (needs TRADER on ``portfolio``).
    portfolio : str
        The portfolio the frontier was computed for.
    frontier : EfficientFrontier
        From `portfolio_frontier`.
    point : int
        Index of the chosen point.
    note : str
        History note (default: the reason, ``"efficient frontier point K"``).
    **kwargs
        Passed on to `pmkit.rebalance.propose_rebalance` (``cost_model``,
        ``no_trade_band``, ``min_trade_value``, ``at``, ...).

    Returns
    -------
    RebalanceProposal
        As stored, in state ``proposed``.
    """
    from pmkit.rebalance.workflow import ProposalBook

    for_portfolio = frontier.dataset.attrs.get("portfolio")
    if for_portfolio is not None and for_portfolio != portfolio:
        raise ValidationError("frontier", for_portfolio, f"was computed for another portfolio "
                              f"than {portfolio!r}")
    targets = frontier_targets(frontier, point)
    kwargs.setdefault("reason", f"efficient frontier point {int(point)}")
    proposal = propose_rebalance(registry, portfolio, target_weights=targets, **kwargs)
    return ProposalBook(registry).propose(proposal, note=note)
