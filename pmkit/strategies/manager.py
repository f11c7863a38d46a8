"""Strategy allocation within one portfolio (the design note's ``PortfolioManager``).

A `StrategyManager` is bound to a registry session and one portfolio. It
keeps each strategy's record (allocation, status, performance) and return
series in the registry's store, so everything survives a restart and every
change is one audited transaction with a portfolio-routed event.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from pmkit.errors import AllocationError, AlreadyExistsError, NotFoundError, ValidationError
from pmkit.strategies.types import (
    Strategy,
    StrategyInfo,
    StrategyPerformance,
    performance_of,
    strategy_id,
    validated_returns,
)

__all__ = ["ALLOCATION_TOLERANCE", "StrategyManager"]

#: Allocations may exceed 1 in total by at most this (float round-off).
ALLOCATION_TOLERANCE = 1e-9

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _fraction(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValidationError(name, value, "must be a number in [0, 1]")
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, value, "must be a number in [0, 1]") from exc
    if not math.isfinite(x) or not 0.0 <= x <= 1.0:
        raise ValidationError(name, value, "must be a fraction in [0, 1]")
    return x


def _info(rec: Any) -> StrategyInfo:
    d = rec.data
    perf = d.get("performance")
    return StrategyInfo(
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


class StrategyManager:
    """Capital allocation between the strategies of one portfolio.

    Parameters
    ----------
    registry : pmkit.registry.Registry
        The session; its user is the actor of every change.
    portfolio : str, optional
        Portfolio id (default: the registry's active portfolio).
    history_limit : int, default 100
        How many allocation decisions `history` keeps (older ones are
        dropped from the store; the audit trail keeps them all).

    Notes
    -----
    Roles: registering strategies and changing allocations or status need
    MANAGER on the portfolio; reading needs VIEWER.
    """

    def __init__(self, registry: Any, portfolio: str | None = None, *, history_limit: int = 100):
        if not isinstance(history_limit, int) or isinstance(history_limit, bool):
            raise ValidationError("history_limit", history_limit, "must be an integer >= 1")
        if history_limit < 1:
            raise ValidationError("history_limit", history_limit, "must be an integer >= 1")
        self.registry = registry
        self.portfolio = registry.portfolio(portfolio).id
        self.history_limit = history_limit
        self._objects: dict[str, Any] = {}

    # -- reads --------------------------------------------------------------------------
    def _records(self, reader: Any = None) -> list[Any]:
        r = reader or self.registry.store
        prefix = f"{self.portfolio}#"
        return [rec for rec in r.list("strategy") if rec.id.startswith(prefix)]

    def strategies(self) -> list[StrategyInfo]:
        """Every registered strategy of the portfolio, by name."""
        self.registry.require("view", self.portfolio)
        return sorted((_info(r) for r in self._records()), key=lambda s: s.name)

    def strategy(self, name: str) -> StrategyInfo:
        """One strategy's record; `NotFoundError` when not registered."""
        rec = self.registry.store.get("strategy", strategy_id(self.portfolio, name))
        if rec is None:
            raise NotFoundError("strategy", f"{self.portfolio}#{name}")
        return _info(rec)

    def returns(self, name: str) -> pd.Series:
        """A strategy's stored daily returns."""
        rec = self.registry.store.get("strategy_returns", strategy_id(self.portfolio, name))
        if rec is None:
            raise NotFoundError("strategy returns", f"{self.portfolio}#{name}")
        return pd.Series(
            rec.data["values"], index=pd.DatetimeIndex(rec.data["dates"]), name=name, dtype=float
        )

    def strategy_object(self, name: str) -> Any:
        """The strategy object registered (or `attach`-ed) in this session, or None."""
        return self._objects.get(name)

    def allocations(self) -> dict[str, float]:
        """Current allocation of every strategy (fractions of the portfolio)."""
        return {s.name: s.allocation for s in self.strategies()}

    def get_strategy_allocation(self, strategy_name: str) -> dict[str, Any]:
        """Allocation, target, status and performance of one strategy (the seed's shape).

        Returns
        -------
        dict
            ``name``, ``active``, ``allocation``, ``target_allocation``,
            ``drift`` (allocation - target) and ``performance`` (a dict or None).
        """
        self.registry.require("view", self.portfolio)
        s = self.strategy(strategy_name)
        return {
            "name": s.name,
            "active": s.active,
            "allocation": s.allocation,
            "target_allocation": s.target_allocation,
            "drift": s.allocation - s.target_allocation,
            "performance": s.performance.to_dict() if s.performance else None,
        }

    # -- registration ---------------------------------------------------------------
    def register_strategy(
        self, name: str, strategy: Strategy | pd.Series, initial_allocation: float = 0.25
    ) -> StrategyInfo:
        """Register a strategy with a share of the portfolio's capital.

        Parameters
        ----------
        name : str
            Lowercase letters, digits, ``_`` and ``-``; unique in the portfolio.
        strategy : Strategy or pandas.Series
            An object with ``returns()`` (daily simple returns on a
            DatetimeIndex), or the return series itself.
        initial_allocation : float, default 0.25
            Fraction of the portfolio's capital in [0, 1]. The active
            strategies' allocations may not sum to more than 1.

        Raises
        ------
        ValidationError
            Bad name, allocation or returns.
        AllocationError
            The total allocation would exceed 1.
        AlreadyExistsError
            ``name`` is already registered in this portfolio.
        PermissionDenied
            The user is not a MANAGER of the portfolio.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValidationError(
                "name", name, "must be 1-64 of lowercase letters, digits, '_' or '-'"
            )
        alloc = _fraction("initial_allocation", initial_allocation)
        series = strategy if isinstance(strategy, pd.Series) else None
        if series is None:
            if not callable(getattr(strategy, "returns", None)):
                raise ValidationError(
                    "strategy", type(strategy).__name__, "needs a returns() method or a Series"
                )
            series = strategy.returns()
        series = validated_returns(series, "strategy.returns()")
        perf = performance_of(series) if len(series) >= 2 else None
        sid = strategy_id(self.portfolio, name)
        with self.registry.mutation("strategy.register", self.portfolio) as m:
            m.require("strategy.register", self.portfolio)
            self.registry._portfolio(m.tx, self.portfolio)  # exists and is not deleted
            if m.tx.get("strategy", sid) is not None:
                raise AlreadyExistsError("strategy", sid)
            total = sum(
                float(r.data["allocation"]) for r in self._records(m.tx) if r.status == "active"
            )
            if total + alloc > 1.0 + ALLOCATION_TOLERANCE:
                raise AllocationError(
                    "initial_allocation",
                    alloc,
                    f"the active strategies already hold {total:.6g}; the total may not exceed 1",
                )
            data = {
                "portfolio": self.portfolio,
                "name": name,
                "allocation": alloc,
                "target_allocation": alloc,
                "kind": type(strategy).__name__,
                "performance": perf.to_dict() if perf else None,
                "registered_by": m.user,
                "registered_at": _now(),
            }
            rec = m.tx.put("strategy", sid, "active", data)
            m.tx.put(
                "strategy_returns",
                sid,
                "active",
                {
                    "dates": [d.isoformat() for d in series.index],
                    "values": series.tolist(),
                },
            )
            m.record(None, {k: v for k, v in data.items() if k != "performance"})
            m.publish(
                "strategy.registered", portfolio=self.portfolio, strategy=name, allocation=alloc
            )
        if not isinstance(strategy, pd.Series):
            self._objects[name] = strategy
        return _info(rec)

    def attach(self, name: str, strategy: Strategy) -> None:
        """Re-attach a live strategy object after a restart (no store change)."""
        self.strategy(name)
        self._objects[name] = strategy

    def update_strategy_returns(self, name: str, returns: pd.Series) -> StrategyInfo:
        """Replace a strategy's stored return series and recompute its performance."""
        series = validated_returns(returns)
        perf = performance_of(series)
        sid = strategy_id(self.portfolio, name)
        with self.registry.mutation("strategy.performance", sid) as m:
            m.require("strategy.performance", self.portfolio)
            rec = m.tx.get("strategy", sid)
            if rec is None:
                raise NotFoundError("strategy", sid)
            old = rec.data.get("performance")
            rec = m.tx.put("strategy", sid, rec.status, {**rec.data, "performance": perf.to_dict()})
            m.tx.put(
                "strategy_returns",
                sid,
                "active",
                {"dates": [d.isoformat() for d in series.index], "values": series.tolist()},
            )
            m.record(old, perf.to_dict())
            m.publish("strategy.performance", portfolio=self.portfolio, strategy=name)
        return _info(rec)

    def update_strategy_status(self, strategy_name: str, active: bool) -> StrategyInfo:
        """Activate or deactivate a strategy.

        Deactivating frees its capital (allocation and target become 0);
        activating restores the strategy with allocation 0, to receive
        capital at the next `set_allocation` or optimization. Signals from
        an inactive strategy are rejected by the coordinator.
        """
        if not isinstance(active, bool):
            raise ValidationError("active", active, "must be True or False")
        sid = strategy_id(self.portfolio, strategy_name)
        with self.registry.mutation("strategy.status", sid) as m:
            m.require("strategy.status", self.portfolio)
            rec = m.tx.get("strategy", sid)
            if rec is None:
                raise NotFoundError("strategy", sid)
            new = "active" if active else "inactive"
            data = dict(rec.data)
            if not active:
                data.update(allocation=0.0, target_allocation=0.0)
            rec2 = m.tx.put("strategy", sid, new, data)
            m.record(
                {"status": rec.status, "allocation": rec.data["allocation"]},
                {"status": new, "allocation": data["allocation"]},
            )
            m.publish(
                f"strategy.{'activated' if active else 'deactivated'}",
                portfolio=self.portfolio,
                strategy=strategy_name,
            )
        return _info(rec2)

    def set_allocation(
        self,
        allocation: Mapping[str, float],
        *,
        reason: str = "manual",
        drifted: bool = False,
    ) -> dict[str, float]:
        """Set strategy allocations (fractions of the portfolio; active strategies only).

        Parameters
        ----------
        allocation : mapping name -> fraction
            Strategies not named keep theirs. Inactive strategies may only get 0.
        reason : str
            Kept in the audit record and on the event.
        drifted : bool, default False
            True records drifted *current* allocations (from returns since
            the last decision) and leaves the targets alone; False sets both
            (a decision).

        Returns
        -------
        dict
            The new allocation of every strategy.
        """
        if not isinstance(allocation, Mapping) or not allocation:
            raise ValidationError("allocation", allocation, "must be a non-empty mapping")
        wanted = {str(k): _fraction(f"allocation[{k!r}]", v) for k, v in allocation.items()}
        with self.registry.mutation("strategy.allocation", self.portfolio) as m:
            m.require("strategy.allocation", self.portfolio)
            recs = {r.data["name"]: r for r in self._records(m.tx)}
            for n, v in wanted.items():
                if n not in recs:
                    raise NotFoundError("strategy", strategy_id(self.portfolio, n))
                if recs[n].status != "active" and v > 0:
                    raise AllocationError(f"allocation[{n!r}]", v, "the strategy is inactive")
            new = {n: wanted.get(n, float(r.data["allocation"])) for n, r in recs.items()}
            total = sum(new.values())
            if total > 1.0 + ALLOCATION_TOLERANCE:
                raise AllocationError(
                    "allocation", round(total, 12), "strategy allocations may not exceed 1 in total"
                )
            before = {n: float(r.data["allocation"]) for n, r in recs.items()}
            for n, r in recs.items():
                data = {**r.data, "allocation": new[n]}
                if not drifted:
                    data["target_allocation"] = new[n]
                m.tx.put("strategy", r.id, r.status, data)
            m.record(before, {"allocation": new, "reason": reason, "drifted": drifted})
            m.publish(
                "strategy.allocation_changed",
                portfolio=self.portfolio,
                allocation=new,
                reason=reason,
            )
        return new
