"""Strategies inside a portfolio: the protocol, their stored form and performance.

A strategy is anything with a ``returns()`` method giving its daily simple
returns as a `pandas.Series` on a DatetimeIndex. It may also offer
``target_weights(at=None)`` (asset -> fraction of the strategy's capital),
which lets a change of strategy allocation become asset trades.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from pmkit.codec import decode, encode
from pmkit.errors import InsufficientDataError, ValidationError

__all__ = [
    "AllocationDecision",
    "RebalanceOutcome",
    "Strategy",
    "StrategyInfo",
    "StrategyPerformance",
    "performance_of",
    "validated_returns",
]


@runtime_checkable
class Strategy(Protocol):
    """What `StrategyManager.register_strategy` accepts."""

    def returns(self) -> pd.Series:
        """Daily simple returns (fractions) on a DatetimeIndex."""
        ...


@dataclass(frozen=True, slots=True)
class StrategyPerformance:
    """Performance of a strategy's daily returns (all fractions; annualized where named).

    Attributes
    ----------
    sharpe : float
        Annualized Sharpe ratio (risk-free 0), ``mean / std * sqrt(252)``.
    annual_return : float
        Compound annual growth rate.
    volatility : float
        Annualized volatility.
    max_drawdown : float
        Worst peak-to-trough loss (a positive fraction).
    win_rate : float
        Share of up days among non-flat days.
    profit_factor : float
        Sum of gains over the absolute sum of losses.
    observations : int
        Number of daily returns.
    start, end : str
        First and last date (ISO).
    """

    sharpe: float
    annual_return: float
    volatility: float
    max_drawdown: float
    win_rate: float
    profit_factor: float
    observations: int
    start: str
    end: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite values become None), by the one codec `pmkit.codec`."""
        return encode(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StrategyPerformance:
        """Inverse of `to_dict`."""
        return decode(cls, d)


#: Largest accepted single-period return (+1000 %): beyond it the series is a data error.
MAX_RETURN = 10.0


def validated_returns(returns: Any, field_name: str = "returns") -> pd.Series:
    """A float Series on a sorted, unique DatetimeIndex, without NaN; else `ValidationError`."""
    if not isinstance(returns, pd.Series):
        raise ValidationError(field_name, type(returns).__name__, "must be a pandas Series")
    if not isinstance(returns.index, pd.DatetimeIndex):
        raise ValidationError(field_name, type(returns.index).__name__, "needs a DatetimeIndex")
    if returns.index.has_duplicates:
        dup = returns.index[returns.index.duplicated()][0]
        raise ValidationError(field_name, str(dup), "duplicate date")
    if not returns.index.is_monotonic_increasing:
        raise ValidationError(field_name, "index", "dates must be increasing")
    try:
        values = returns.to_numpy(dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(field_name, str(returns.dtype), "returns must be numbers") from exc
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValidationError(
            field_name, str(returns.index[bad][0].date()), "NaN or infinite return"
        )
    if (values <= -1.0).any():
        raise ValidationError(field_name, float(values.min()), "a return of -100 % or worse")
    if (values > MAX_RETURN).any():
        raise ValidationError(
            field_name, float(values.max()), f"a return above {MAX_RETURN:g} (+{MAX_RETURN:.0%})"
        )
    return pd.Series(values, index=returns.index, name=returns.name)


def performance_of(returns: pd.Series, periods_per_year: int = 252) -> StrategyPerformance:
    """`StrategyPerformance` of daily returns (via `pmkit.core.performance`).

    Raises
    ------
    InsufficientDataError
        Fewer than 2 returns.
    """
    from pmkit.core import performance as perf

    r = validated_returns(returns)
    if len(r) < 2:
        raise InsufficientDataError("returns", len(r), "needs at least 2 daily returns")
    x = np.asarray(r.to_numpy(), dtype=np.float64)
    return StrategyPerformance(
        sharpe=float(perf.sharpe_ratio(x, periods_per_year=periods_per_year)),
        annual_return=float(perf.cagr(x, periods_per_year)),
        volatility=float(perf.annual_volatility(x, periods_per_year)),
        max_drawdown=float(abs(perf.max_drawdown(x))),
        win_rate=float(perf.win_rate(x)),
        profit_factor=float(perf.profit_factor(x)),
        observations=len(r),
        start=r.index[0].date().isoformat(),
        end=r.index[-1].date().isoformat(),
    )


@dataclass(frozen=True)
class StrategyInfo:
    """A registered strategy, as stored.

    Attributes
    ----------
    portfolio : str
        The portfolio whose capital it trades.
    name : str
        Unique within the portfolio.
    active : bool
        Inactive strategies keep their record but get no capital and no signals.
    allocation : float
        Current fraction of the portfolio's capital (after drift).
    target_allocation : float
        Fraction the last decision set.
    kind : str
        Class name of the strategy object.
    performance : StrategyPerformance or None
        Of its return series (None before any returns are known).
    registered_by : str
    registered_at : str
        ISO-8601 UTC.
    """

    portfolio: str
    name: str
    active: bool
    allocation: float
    target_allocation: float
    kind: str = ""
    performance: StrategyPerformance | None = None
    registered_by: str = ""
    registered_at: str = ""
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        """Store id: ``"<portfolio>#<name>"``."""
        return strategy_id(self.portfolio, self.name)

    @classmethod
    def from_record(cls, rec: Any) -> StrategyInfo:
        """From a store `Record` of kind ``"strategy"``."""
        d = rec.data
        perf = d.get("performance")
        return cls(
            portfolio=d["portfolio"],
            name=d["name"],
            active=rec.status == "active",
            allocation=float(d["allocation"]),
            target_allocation=float(d["target_allocation"]),
            kind=d.get("kind", ""),
            performance=StrategyPerformance.from_dict(perf) if perf else None,
            registered_by=d.get("registered_by", ""),
            registered_at=d.get("registered_at", ""),
            data=d,
        )


def strategy_id(portfolio: str, name: str) -> str:
    """Store id of strategy ``name`` in ``portfolio``."""
    return f"{portfolio}#{name}"


@dataclass(frozen=True)
class AllocationDecision:
    """One allocation decision between a portfolio's strategies, as kept in `history`.

    Attributes
    ----------
    seq : int
        Increasing per portfolio.
    portfolio : str
    kind : {"optimization", "rebalance"}
    method : str
        Optimization method, or ``"restore targets"``.
    trigger : str or None
        The rebalance trigger that fired (None for a direct optimization).
    reason : str
    before, after : dict name -> fraction
        Allocations before and after (fractions of the portfolio's capital).
    applied : bool
        Whether ``after`` was stored.
    as_of : str
        Last return date the decision saw (ISO); drift is measured from here.
    ts : str
        Wall-clock time of the decision (ISO-8601 UTC).
    actor : str
    expected_return, volatility : float or None
        Annualized, of the chosen mix (when the method estimates them).
    details : dict
    """

    seq: int
    portfolio: str
    kind: str
    method: str
    trigger: str | None
    reason: str
    before: dict[str, float]
    after: dict[str, float]
    applied: bool
    as_of: str
    ts: str
    actor: str
    expected_return: float | None = None
    volatility: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict, by the one codec `pmkit.codec`."""
        return encode(self)

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> AllocationDecision:
        """Inverse of `to_record`."""
        return decode(cls, d)


@dataclass(frozen=True)
class RebalanceOutcome:
    """What `StrategyManager.rebalance_portfolio` did.

    Attributes
    ----------
    trigger : pmkit.rebalance.triggers.TriggerResult
    decision : AllocationDecision or None
        None when the trigger did not fire.
    proposal : pmkit.rebalance.RebalanceProposal or None
        The asset-level proposal created, if any.
    """

    trigger: Any
    decision: AllocationDecision | None
    proposal: Any = None

    @property
    def fired(self) -> bool:
        """Whether the trigger fired."""
        return bool(self.trigger.fired)
