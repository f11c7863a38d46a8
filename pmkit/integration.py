"""The design note's integration object: a `Registry` with cross-portfolio operations.

Note 001 ("API Extensions") calls its multi-portfolio entry point
``integration``: registry operations (``create_portfolio``,
``get_group_portfolios``, ...) and cross-portfolio analysis
(``compare_portfolios``, ``calculate_correlation``,
``analyze_diversification``, ``generate_consolidated_report``) on one object.
The registry sits below the analytics in pmkit's layers (analytics read the
registry, never the reverse), so the object that offers both is this
subclass, one layer up: every `Registry` method works on it, and the four
operations delegate to `pmkit.analytics.cross` with the session's permissions.

Examples
--------
>>> from pmkit.integration import Integration
>>> integration = Integration.open(":memory:")  # doctest: +SKIP
>>> integration.compare_portfolios(["growth", "income"], ["sharpe"])  # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from pmkit.analytics import cross
from pmkit.registry import PortfolioInfo, Registry

__all__ = ["Integration"]


def _delegate(part: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(part)
    def method(self: Integration, *args: Any, **kwargs: Any) -> Any:
        return part(self, *args, **kwargs)

    return method


class Integration(Registry):
    """A `Registry` session with note 001's names and its cross-portfolio operations.

    Construct it like a `Registry` (``Integration.open``, ``Integration.from_config``,
    ``Integration(store, user=..., market=...)``); `as_user` keeps the class. The
    note's method names live here, not on `Registry`, so that pmkit's own API has one
    name per concept (see the README's glossary and `pmkit.compat.DESIGN_NOTE_NAMES`).
    """

    # -- note 001's names for registry operations --------------------------------------
    def activate_portfolio(self, portfolio_id: str | None = None) -> None:
        """Note 001's name for `Registry.activate`."""
        self.activate(portfolio_id)

    def deactivate_portfolio(self, portfolio_id: str | None = None) -> None:
        """Note 001's name for `Registry.deactivate`."""
        self.deactivate(portfolio_id)

    def delete_portfolio(
        self, portfolio_id: str | None = None, *, hard: bool = False, force: bool = False
    ) -> None:
        """Note 001's name for `Registry.delete` (archives unless ``hard=True``)."""
        self.delete(portfolio_id, hard=hard, force=force)

    def get_all_portfolios(self) -> list[PortfolioInfo]:
        """Note 001's name for `Registry.portfolios` (every portfolio this user may view)."""
        return self.portfolios()

    def create_portfolio_group(
        self, name: str, portfolio_ids: Iterable[str] = (), **kwargs: Any
    ) -> str:
        """Note 001's group creation: named ``name``, its id made from it unless ``group_id=``."""
        gid = kwargs.pop("group_id", None) or self.free_id(name)
        return self.create_group(gid, portfolio_ids, name=name, **kwargs)

    # -- note 001's cross-portfolio operations ------------------------------------------

    compare_portfolios = _delegate(cross.compare_portfolios)
    calculate_correlation = _delegate(cross.calculate_correlation)
    analyze_diversification = _delegate(cross.analyze_diversification)
    generate_consolidated_report = _delegate(cross.generate_consolidated_report)
