"""Strategy allocation within one portfolio (the design note's ``PortfolioManager``).

A `StrategyManager` is bound to a registry session and one portfolio. It
keeps each strategy's record (allocation, status, performance) and return
series in the registry's store, so everything survives a restart and every
change is one audited transaction with a portfolio-routed event.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from pmkit.errors import AllocationError, AlreadyExistsError, NotFoundError, ValidationError
from pmkit.rebalance.triggers import (
    TRIGGERS,
    TriggerResult,
    drift_trigger,
    drifted_weights,
    performance_trigger,
    risk_trigger,
    scheduled_trigger,
)
from pmkit.strategies.session import RealTimePerformanceMonitor, session_of
from pmkit.strategies.types import (
    AllocationDecision,
    RebalanceOutcome,
    Strategy,
    StrategyInfo,
    performance_of,
    strategy_id,
    validated_returns,
)
from pmkit.validation import MAX_MEMO_LENGTH, MAX_TAG_LENGTH, check_bool, check_number, check_text

__all__ = ["ALLOCATION_TOLERANCE", "PortfolioManager", "StrategyManager"]

#: Allocations may exceed 1 in total by at most this (float round-off).
ALLOCATION_TOLERANCE = 1e-9

_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _fraction(name: str, value: Any) -> float:
    return check_number(value, name, minimum=0.0, maximum=1.0)


class StrategyManager:
    """Capital allocation between the strategies of one portfolio.

    Parameters
    ----------
    registry : pmkit.registry.Registry or RiskManager
        The session; its user is the actor of every change. A `RiskManager`
        also names the portfolio.
    portfolio : str, optional
        Portfolio id (default: the risk manager's, else the registry's active portfolio).
    history_limit : int, default 100
        How many allocation decisions `history` keeps (older ones are
        dropped from the store; the audit trail keeps them all).

    Raises
    ------
    ValidationError
        ``registry`` is not a session (field ``registry``), ``portfolio`` not
        an id, or a bad ``history_limit``.

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
        if portfolio is not None and not isinstance(portfolio, str):
            raise ValidationError("portfolio", type(portfolio).__name__, "must be a portfolio id")
        registry, bound = session_of(registry, "registry")
        self.registry = registry
        self.portfolio = registry.portfolio(portfolio or bound).id
        self.history_limit = history_limit
        self._objects: dict[str, Any] = {}

    # -- reads --------------------------------------------------------------------------
    def _records(self, reader: Any = None) -> list[Any]:
        """Strategy records of the portfolio, read by ``reader`` (a context's tx) or the view."""
        prefix = f"{self.portfolio}#"
        recs = reader.list("strategy") if reader is not None else self._view().records("strategy")
        return [rec for rec in recs if rec.id.startswith(prefix)]

    def _view(self) -> Any:
        view = self.registry.view()
        view.require_read(self.portfolio)
        return view

    def strategies(self) -> list[StrategyInfo]:
        """Every registered strategy of the portfolio, by name."""
        self.registry.require("view", self.portfolio)
        return sorted((StrategyInfo.from_record(r) for r in self._records()), key=lambda s: s.name)

    def strategy(self, name: str) -> StrategyInfo:
        """One strategy's record; `NotFoundError` when not registered."""
        rec = self._view().record("strategy", strategy_id(self.portfolio, name))
        if rec is None:
            raise NotFoundError("strategy", f"{self.portfolio}#{name}")
        return StrategyInfo.from_record(rec)

    def returns(self, name: str) -> pd.Series:
        """A strategy's stored daily returns."""
        rec = self._view().record("strategy_returns", strategy_id(self.portfolio, name))
        if rec is None:
            raise NotFoundError("strategy returns", f"{self.portfolio}#{name}")
        return pd.Series(
            rec.data["values"], index=pd.DatetimeIndex(rec.data["dates"]), name=name, dtype=float
        )

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
        if not isinstance(name, str) or not _NAME.fullmatch(name):
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
            m.portfolio(self.portfolio)  # exists and is not deleted
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
                # drift is measured from the last return the allocation saw
                "as_of": series.index[-1].date().isoformat() if len(series) else None,
            }
            rec = m.tx.put("strategy", sid, "active", data)
            _store_returns(m, sid, series)
            m.record(None, {k: v for k, v in data.items() if k != "performance"})
            m.publish(
                "strategy.registered", portfolio=self.portfolio, strategy=name, allocation=alloc
            )
        if not isinstance(strategy, pd.Series):
            self._objects[name] = strategy
        return StrategyInfo.from_record(rec)

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
            rec = _existing(m, sid)
            old = rec.data.get("performance")
            rec = m.tx.put("strategy", sid, rec.status, {**rec.data, "performance": perf.to_dict()})
            _store_returns(m, sid, series)
            m.record(old, perf.to_dict())
            m.publish("strategy.performance", portfolio=self.portfolio, strategy=name)
        return StrategyInfo.from_record(rec)

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
            rec = _existing(m, sid)
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
        return StrategyInfo.from_record(rec2)

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
        check_text(reason, "reason", max_length=MAX_MEMO_LENGTH)
        drifted = check_bool(drifted, "drifted")
        for k in allocation:
            check_text(k, "allocation", max_length=MAX_TAG_LENGTH, multiline=False)
        wanted = {k: _fraction(f"allocation[{k!r}]", v) for k, v in allocation.items()}
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

    # -- return series ------------------------------------------------------------------
    def returns_frame(self, names: list[str] | None = None) -> pd.DataFrame:
        """Daily returns of the active strategies (or ``names``) on their common dates.

        Only dates where every chosen strategy has a return are kept: the
        optimizers need aligned histories, and no missing return is filled.
        """
        if names is None:
            names = [s.name for s in self.strategies() if s.active]
        if not names:
            raise AllocationError("strategies", [], "no active strategy to allocate between")
        frame = pd.concat({n: self.returns(n) for n in names}, axis=1, join="inner")
        return frame.sort_index()

    # -- decisions and their bounded history ------------------------------------------------
    def history(self) -> list[AllocationDecision]:
        """The last `history_limit` decisions (optimizations and rebalances), oldest first."""
        prefix = f"{self.portfolio}#"
        recs = [r for r in self._view().records("strategy_decision") if r.id.startswith(prefix)]
        return sorted((AllocationDecision.from_record(r.data) for r in recs), key=lambda d: d.seq)

    def last_decision(self) -> AllocationDecision | None:
        """The newest decision, or None."""
        h = self.history()
        return h[-1] if h else None

    def _save_decision(self, m: Any, decision: AllocationDecision) -> AllocationDecision:
        prefix = f"{self.portfolio}#"
        recs = sorted(
            (r for r in m.tx.list("strategy_decision") if r.id.startswith(prefix)),
            key=lambda r: r.data["seq"],
        )
        seq = recs[-1].data["seq"] + 1 if recs else 1
        decision = replace(decision, seq=seq)
        m.tx.put("strategy_decision", f"{prefix}{seq:09d}", "kept", decision.to_record())
        # The audit trail keeps every decision; the store keeps the newest few.
        for old in recs[: max(0, len(recs) + 1 - self.history_limit)]:
            m.tx.remove("strategy_decision", old.id)
        m.note("strategy.decision", self.portfolio, None, decision.to_record())
        return decision

    def _apply(self, m: Any, new: Mapping[str, float], *, drifted: bool = False) -> None:
        for r in self._records(m.tx):
            n = r.data["name"]
            if n not in new:
                continue
            data = {**r.data, "allocation": float(new[n])}
            if not drifted:
                data["target_allocation"] = float(new[n])
            m.tx.put("strategy", r.id, r.status, data)

    # -- optimization ---------------------------------------------------------------------
    def optimize_portfolio_allocation(
        self,
        optimization_method: str = "markowitz",
        target_return: float | None = None,
        *,
        apply: bool = True,
        budget: float = 1.0,
        lookback: int | None = 756,
        views: Sequence[Any] = (),
        reason: str | None = None,
    ) -> AllocationDecision:
        """Re-allocate capital between the active strategies with a pmkit optimizer.

        Parameters
        ----------
        optimization_method : {"markowitz", "risk_parity", "black_litterman", "performance_based"}
            * ``markowitz``: maximum Sharpe (`pmkit.optimize.MaximumSharpe`),
              or the minimum-variance mix reaching ``target_return``
              (`TargetReturn`) when given;
            * ``risk_parity``: equal risk contributions (`EqualRiskContribution`);
            * ``black_litterman``: prior = returns implied by the current
              allocation, views = each strategy's own annualized mean return
              (or ``views``), He–Litterman uncertainty; then maximum Sharpe on
              the posterior (or `TargetReturn` with ``target_return``);
            * ``performance_based``: `PerformanceBased` scores (Sharpe, win
              rate, profit factor).
        target_return : float, optional
            Annualized return (fraction) for ``markowitz`` / ``black_litterman``.
        apply : bool, default True
            Store the new allocation (else only report it).
        budget : float, default 1
            Fraction of the portfolio's capital to allocate between strategies.
        lookback : int or None, default 756
            Most recent common days used (None: all).
        views : sequence, optional
            Black–Litterman views (`pmkit.optimize.View` or specs), replacing the default.
        reason : str, optional
            Kept with the decision.

        Returns
        -------
        AllocationDecision
            Kept in `history` (bounded) whether applied or not.
        """
        import xarray as xr

        from pmkit import optimize as opt

        methods = ("markowitz", "risk_parity", "black_litterman", "performance_based")
        if optimization_method not in methods:
            raise ValidationError(
                "optimization_method", optimization_method, f"must be one of {list(methods)}"
            )
        budget = _fraction("budget", budget)
        if budget <= 0:
            raise ValidationError("budget", budget, "must be > 0")
        if target_return is not None and optimization_method not in methods[::2]:
            raise ValidationError(
                "target_return", target_return, f"not used by {optimization_method!r}"
            )
        self.registry.require("strategy.allocation", self.portfolio)
        frame = self.returns_frame()
        if lookback is not None:
            frame = frame.iloc[-lookback:]
        names = list(frame.columns)
        returns = xr.DataArray(
            frame.to_numpy().T,
            dims=("asset", "time"),
            coords={"asset": names, "time": frame.index.to_numpy()},
        )
        before = {s.name: s.allocation for s in self.strategies()}
        if optimization_method == "markowitz":
            result = _mean_variance(target_return).fit(returns)
        elif optimization_method == "risk_parity":
            result = opt.EqualRiskContribution().fit(returns)
        elif optimization_method == "performance_based":
            result = opt.PerformanceBased(if_all_zero="equal").fit(returns)
        else:
            cov = opt.covariance(returns, annualize=True)
            active = {n: max(before.get(n, 0.0), 0.0) for n in names}
            market = active if sum(active.values()) > 0 else {n: 1.0 for n in names}
            bl_views = list(views) or [
                (n, float(v)) for n, v in opt.expected_returns(returns).to_series().items()
            ]
            post = opt.BlackLitterman(market, bl_views).fit(cov)
            result = _mean_variance(target_return).fit(mu=post.mu, cov=post.cov)
        raw = result.weights.to_series()
        # Interior-point solvers leave ~1e-8 on sleeves they exclude; a
        # stored allocation of 2e-8 would only be noise in every report.
        raw = raw.where(raw.abs() > 1e-6, 0.0).clip(lower=0.0)
        weights = {str(a): float(w) * budget / float(raw.sum()) for a, w in raw.items()}
        after = {**{n: 0.0 for n in before}, **weights}
        decision = AllocationDecision(
            seq=0,
            portfolio=self.portfolio,
            kind="optimization",
            method=optimization_method,
            trigger=None,
            reason=reason or f"optimize {optimization_method}",
            before=before,
            after=after,
            applied=bool(apply),
            as_of=frame.index[-1].date().isoformat(),
            ts=_now(),
            actor=self.registry.user,
            # of the strategy mix scaled to the budget (the rest is cash)
            expected_return=_finite(result.expected_return * budget),
            volatility=_finite(result.volatility * budget),
            details={
                "target_return": target_return,
                "budget": budget,
                "observations": len(frame),
                "solver": result.solver,
            },
        )
        return self._commit(decision, "strategy.allocation_optimized", method=optimization_method)

    def _commit(
        self, decision: AllocationDecision, topic: str, **payload: Any
    ) -> AllocationDecision:
        """Store a decision (and, when applied, its allocation) in one audited transaction."""
        with self.registry.mutation("strategy.allocation", self.portfolio) as m:
            m.require("strategy.allocation", self.portfolio)
            if decision.applied:
                self._apply(m, decision.after)
            decision = self._save_decision(m, decision)
            m.record(
                decision.before,
                {"allocation": decision.after, "applied": decision.applied, **payload},
            )
            m.publish(
                topic,
                portfolio=self.portfolio,
                allocation=decision.after,
                applied=decision.applied,
                **payload,
            )
        return decision

    # -- drift, triggers and rebalancing -------------------------------------------------
    def _as_of(self) -> str | None:
        last = self.last_decision()
        if last is not None and last.applied:
            return last.as_of
        dates = [s.data.get("as_of") for s in self.strategies() if s.data.get("as_of")]
        return max(dates) if dates else None

    def current_allocations(self) -> dict[str, float]:
        """Allocations drifted by each strategy's returns since the last applied decision.

        A strategy that earned more than the others since then holds a larger
        share now: ``w_i = t_i g_i / (sum_j t_j g_j + 1 - sum_j t_j)`` with
        ``g`` the growth ``prod(1 + r)`` of its stored returns after the
        decision's ``as_of`` date (`pmkit.rebalance.triggers.drifted_weights`).
        """
        infos = [s for s in self.strategies() if s.active]
        targets = {s.name: s.target_allocation for s in infos}
        as_of = self._as_of()
        growth = {}
        for s in infos:
            r = self.returns(s.name)
            if as_of is not None:
                r = r[r.index > pd.Timestamp(as_of)]
            growth[s.name] = float((1.0 + r).prod())
        return drifted_weights(targets, growth)

    def target_asset_weights(self, at: Any = None) -> dict[str, float]:
        """Asset weights of the portfolio implied by the strategy allocation.

        ``w_asset = sum_s allocation_s * w_s,asset`` over active strategies
        whose objects (registered or `attach`-ed in this session) offer
        ``target_weights(at)``; the rest of the capital is cash.

        Raises
        ------
        ValidationError
            An active, allocated strategy has no attached object with
            ``target_weights``.
        """
        out: dict[str, float] = {}
        for s in self.strategies():
            if not s.active or s.target_allocation <= 0:
                continue
            obj = self._objects.get(s.name)
            if obj is None or not callable(getattr(obj, "target_weights", None)):
                raise ValidationError(
                    "strategy", s.name, "attach an object with target_weights() to map it to assets"
                )
            for a, w in obj.target_weights(at).items():
                out[a] = out.get(a, 0.0) + s.target_allocation * float(w)
        return out

    def check_trigger(
        self,
        trigger: str = "scheduled",
        threshold: float = 0.05,
        *,
        now: datetime | None = None,
        interval: timedelta = timedelta(hours=24),
        window: int = 63,
        min_sharpe: float | None = 0.0,
        limits: Mapping[str, Any] | None = None,
        at: Any = None,
    ) -> TriggerResult:
        """Evaluate one trigger without changing anything (see `rebalance_portfolio`)."""
        if trigger not in TRIGGERS:
            raise ValidationError("trigger", trigger, f"must be one of {list(TRIGGERS)}")
        self.registry.require("view", self.portfolio)
        if trigger == "scheduled":
            last = next(
                (d for d in reversed(self.history()) if d.applied and d.kind == "rebalance"), None
            )
            when = now or datetime.now(UTC).replace(tzinfo=None)
            return scheduled_trigger(
                None if last is None else datetime.fromisoformat(last.ts), when, interval
            )
        if trigger == "threshold":
            targets = {s.name: s.target_allocation for s in self.strategies() if s.active}
            result = drift_trigger(self.current_allocations(), targets, threshold)
            asset = self._asset_drift(threshold, at)
            if asset is None:
                return result
            fired = result.fired or asset.fired
            reason = f"strategies: {result.reason}; assets: {asset.reason}"
            details = {**result.details, "asset_drift": asset.details["drift"]}
            return TriggerResult("threshold", fired, reason, details)
        if trigger == "performance":
            return performance_trigger(
                self.returns_frame(), window=window, min_sharpe=min_sharpe, max_drawdown=threshold
            )
        from pmkit.risk.limits import check_limits, limit_metrics

        metrics = limit_metrics(self.registry, [self.portfolio], at=at)
        return risk_trigger(check_limits(self.registry, metrics, limits=limits, publish=False))

    def _asset_drift(self, band: float, at: Any) -> TriggerResult | None:
        """Drift of the portfolio's asset weights from the strategy-implied targets, if mappable."""
        if self.registry.market is None:
            return None
        try:
            targets = self.target_asset_weights(at)
        except ValidationError:
            return None
        if not targets:
            return None
        from pmkit.risk.exposures import current_weights

        cw = current_weights(self.registry, [self.portfolio], at)["weight"].sel(
            portfolio=self.portfolio
        )
        current = {str(a): float(w) for a, w in cw.to_series().items() if abs(w) > 0}
        return drift_trigger(current, targets, band)

    def rebalance_portfolio(
        self,
        trigger: str = "scheduled",
        threshold: float = 0.05,
        apply: bool = True,
        *,
        method: str | None = None,
        now: datetime | None = None,
        interval: timedelta = timedelta(hours=24),
        window: int = 63,
        min_sharpe: float | None = 0.0,
        limits: Mapping[str, Any] | None = None,
        at: Any = None,
        propose: bool = True,
        **proposal_options: Any,
    ) -> RebalanceOutcome:
        """Check a trigger and, when it fires, re-allocate (and propose the asset trades).

        Parameters
        ----------
        trigger : {"scheduled", "threshold", "performance", "risk"}
            See `pmkit.rebalance.triggers`.
        threshold : float, default 0.05
            The drift band for ``"threshold"`` (absolute fraction, applied to
            strategy allocations and, when strategies map to assets, to asset
            weights); the drawdown limit for ``"performance"``; unused otherwise.
        apply : bool, default True
            Store the new allocation and create the proposal; False reports
            what would happen and stores nothing but the decision record.
        method : str, optional
            Optimizer for the new allocation (`optimize_portfolio_allocation`
            names). Default: ``"threshold"`` restores the targets; the other
            triggers re-run the last optimization method (``"risk_parity"``
            if there was none).
        now : datetime, optional
            Clock of the ``"scheduled"`` trigger (tz-naive UTC).
        interval, window, min_sharpe, limits
            Trigger parameters (see `pmkit.rebalance.triggers`).
        at : datetime-like, optional
            Market time for asset weights, risk and the proposal.
        propose : bool, default True
            When the strategies map to assets, create a `RebalanceProposal`
            of the asset trades (state ``proposed``; it needs approval).
        **proposal_options
            Passed to `pmkit.rebalance.propose_rebalance` (bands, cost model...).

        Returns
        -------
        RebalanceOutcome
            The trigger result, the decision (None when it did not fire) and
            the proposal (None when none was made).
        """
        result = self.check_trigger(
            trigger,
            threshold,
            now=now,
            interval=interval,
            window=window,
            min_sharpe=min_sharpe,
            limits=limits,
            at=at,
        )
        if not result.fired:
            return RebalanceOutcome(result, None, None)
        if method is None and trigger == "threshold":
            before = self.current_allocations()
            after = {s.name: s.target_allocation for s in self.strategies() if s.active}
            used = "restore targets"
        else:
            used = method or next(
                (d.method for d in reversed(self.history()) if d.kind == "optimization"),
                "risk_parity",
            )
            # The base method by name: `PortfolioManager` overrides it with a coroutine.
            opt = StrategyManager.optimize_portfolio_allocation(
                self, used, apply=False, reason=result.reason
            )
            before, after = self.current_allocations(), opt.after
        decision = AllocationDecision(
            seq=0,
            portfolio=self.portfolio,
            kind="rebalance",
            method=used,
            trigger=trigger,
            reason=result.reason,
            before=before,
            after=after,
            applied=bool(apply),
            as_of=self._latest_return_date(),
            ts=(now or datetime.now(UTC).replace(tzinfo=None)).isoformat(),
            actor=self.registry.user,
            details={"trigger": result.details},
        )
        decision = self._commit(
            decision, "strategy.rebalanced", trigger=trigger, reason=result.reason
        )
        proposal = None
        if apply and propose and self.registry.market is not None:
            try:
                targets = self.target_asset_weights(at)
            except ValidationError:
                targets = {}
            if targets:
                from pmkit.rebalance.builder import propose_rebalance
                from pmkit.rebalance.workflow import ProposalBook

                built = propose_rebalance(
                    self.registry,
                    self.portfolio,
                    target_weights=targets,
                    at=at,
                    reason=f"{trigger}: {result.reason}",
                    **proposal_options,
                )
                proposal = ProposalBook(self.registry).propose(built)
        return RebalanceOutcome(result, decision, proposal)

    def _latest_return_date(self) -> str:
        return self.returns_frame().index[-1].date().isoformat()

    # -- summary --------------------------------------------------------------------------
    def get_portfolio_summary(self) -> dict[str, Any]:
        """The portfolio's strategies at a glance (the seed's shape).

        Returns
        -------
        dict
            ``portfolio``, ``strategies`` (count), ``active``, ``allocated``
            (sum of current allocations), ``unallocated`` (1 - allocated),
            ``allocations`` and ``targets`` (name -> fraction), ``drift``
            (name -> allocation - target), ``performance`` (name -> dict),
            ``last_decision`` (dict or None), ``decisions`` (kept in history).
        """
        infos = self.strategies()
        current = self.current_allocations() if any(s.active for s in infos) else {}
        allocs = {s.name: current.get(s.name, 0.0) for s in infos}
        targets = {s.name: s.target_allocation for s in infos}
        hist = self.history()
        return {
            "portfolio": self.portfolio,
            "strategies": len(infos),
            "active": [s.name for s in infos if s.active],
            "allocated": float(sum(allocs.values())),
            "unallocated": float(1.0 - sum(allocs.values())),
            "allocations": allocs,
            "targets": targets,
            "drift": {n: allocs[n] - targets[n] for n in allocs},
            "performance": {
                s.name: s.performance.to_dict() if s.performance else None for s in infos
            },
            "last_decision": hist[-1].to_record() if hist else None,
            "decisions": len(hist),
        }

    def summary_frame(self) -> pd.DataFrame:
        """One row per strategy: status, allocation, target, drift and performance."""
        s = self.get_portfolio_summary()
        rows = []
        for info in self.strategies():
            perf = s["performance"][info.name] or {}
            rows.append(
                {
                    "strategy": info.name,
                    "active": info.active,
                    "allocation": s["allocations"][info.name],
                    "target": s["targets"][info.name],
                    "drift": s["drift"][info.name],
                    "sharpe": perf.get("sharpe"),
                    "max_drawdown": perf.get("max_drawdown"),
                    "win_rate": perf.get("win_rate"),
                }
            )
        return pd.DataFrame(rows).set_index("strategy") if rows else pd.DataFrame()


def _existing(m: Any, sid: str) -> Any:
    """The strategy's record inside mutation ``m``; `NotFoundError` when there is none."""
    rec = m.tx.get("strategy", sid)
    if rec is None:
        raise NotFoundError("strategy", sid)
    return rec


def _store_returns(m: Any, sid: str, series: pd.Series) -> None:
    m.tx.put(
        "strategy_returns",
        sid,
        "active",
        {"dates": [d.isoformat() for d in series.index], "values": series.tolist()},
    )


def _mean_variance(target_return: float | None) -> Any:
    from pmkit import optimize as opt

    return opt.MaximumSharpe() if target_return is None else opt.TargetReturn(target_return)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class PortfolioManager(StrategyManager):
    """The design note's ``PortfolioManager``: `StrategyManager` with its coroutine signatures.

    ``optimize_portfolio_allocation`` and ``rebalance_portfolio`` are
    coroutines here, as in the note (``await pm.rebalance_portfolio(...)``);
    they run the synchronous methods in a worker thread so an event loop
    (a notebook's, a Panel server's) is not blocked while optimizers run.
    ``register_strategy`` takes the note's argument names.

    Parameters
    ----------
    registry : Registry, RiskManager or StrategyManager
        The session; a `RiskManager` (the note's first argument) also names
        the portfolio.
    portfolio : str or RealTimePerformanceMonitor, optional
        Portfolio id, or the note's performance monitor (bound to this
        manager; the portfolio then comes from ``registry``).
    history_limit : int, default 100
        See `StrategyManager`.

    Examples
    --------
    >>> risk_manager = RiskManager({"equity_usd": 10000})  # doctest: +SKIP
    >>> pm = PortfolioManager(risk_manager, RealTimePerformanceMonitor())  # doctest: +SKIP
    """

    def __init__(
        self,
        registry: Any,
        portfolio: str | RealTimePerformanceMonitor | None = None,
        *,
        history_limit: int = 100,
    ) -> None:
        monitor = portfolio if isinstance(portfolio, RealTimePerformanceMonitor) else None
        super().__init__(registry, None if monitor else portfolio, history_limit=history_limit)
        self.performance_monitor = monitor
        if monitor is not None:
            monitor.bind(self)

    def register_strategy(  # type: ignore[override]
        self,
        strategy_name: str,
        strategy_instance: Strategy | pd.Series,
        initial_allocation: float = 0.25,
    ) -> StrategyInfo:
        """`StrategyManager.register_strategy` with the note's argument names."""
        return super().register_strategy(strategy_name, strategy_instance, initial_allocation)

    async def optimize_portfolio_allocation(  # type: ignore[override]
        self, optimization_method: str = "markowitz", target_return: float | None = None, **kw: Any
    ) -> AllocationDecision:
        """Coroutine form of `StrategyManager.optimize_portfolio_allocation`."""
        import asyncio

        call = super().optimize_portfolio_allocation
        return await asyncio.to_thread(call, optimization_method, target_return, **kw)

    async def rebalance_portfolio(  # type: ignore[override]
        self, trigger: str = "scheduled", threshold: float = 0.05, apply: bool = True, **kw: Any
    ) -> RebalanceOutcome:
        """Coroutine form of `StrategyManager.rebalance_portfolio`."""
        import asyncio

        call = super().rebalance_portfolio
        return await asyncio.to_thread(call, trigger, threshold, apply, **kw)
