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
from collections.abc import Callable
from typing import Any

from pmkit.analytics import cross
from pmkit.registry import Registry

__all__ = ["Integration"]


def _delegate(part: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(part)
    def method(self: Integration, *args: Any, **kwargs: Any) -> Any:
        return part(self, *args, **kwargs)

    return method


class Integration(Registry):
    """A `Registry` session that also compares, correlates and consolidates its portfolios.

    Construct it like a `Registry` (``Integration.open``, ``Integration.from_config``,
    ``Integration(store, user=..., market=...)``); `as_user` keeps the class.
    """

    compare_portfolios = _delegate(cross.compare_portfolios)
    calculate_correlation = _delegate(cross.calculate_correlation)
    analyze_diversification = _delegate(cross.analyze_diversification)
    generate_consolidated_report = _delegate(cross.generate_consolidated_report)
