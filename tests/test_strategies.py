"""Strategy allocation inside a portfolio: registration, optimization, triggers, history."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from pmkit.demo import open_demo
from pmkit.errors import (
    AllocationError,
    AlreadyExistsError,
    NotFoundError,
    PermissionDenied,
    ValidationError,
)
from pmkit.events import Event
from pmkit.rebalance.triggers import (
    drift_trigger,
    drifted_weights,
    performance_trigger,
    scheduled_trigger,
)
from pmkit.registry import Registry
from pmkit.store import open_store
from pmkit.strategies import (
    CrossSectionalMomentum,
    LowVolatility,
    PortfolioManager,
    ShortTermReversal,
    StrategyManager,
    performance_of,
)

PID = "client_a/growth"


def _series(seed: int, n: int = 500, mean: float = 4e-4, vol: float = 0.01, start="2020-01-01"):
    rng = np.random.default_rng(seed)
    return pd.Series(rng.normal(mean, vol, n), index=pd.bdate_range(start, periods=n))


@pytest.fixture
def reg():
    return open_demo()


@pytest.fixture
def mgr(reg):
    return StrategyManager(reg.as_user("bob"), PID)


# -- registration ---------------------------------------------------------------------------
def test_the_seed_interface_works_as_written(reg):
    """The design note's calls, verbatim: keyword names and awaited coroutines."""
    pm = PortfolioManager(reg.as_user("bob"), PID)
    pm.register_strategy(strategy_name="a", strategy_instance=_series(1), initial_allocation=0.5)
    pm.register_strategy("b", _series(2), 0.5)

    async def run():
        opt = await pm.optimize_portfolio_allocation(optimization_method="risk_parity")
        reb = await pm.rebalance_portfolio(trigger="threshold", threshold=0.05, apply=True)
        return opt, reb

    opt, reb = asyncio.run(run())
    assert sum(opt.after.values()) == pytest.approx(1.0)
    assert not reb.fired  # just optimized: no drift yet
    assert pm.get_portfolio_summary()["strategies"] == 2
    assert isinstance(pm, StrategyManager)


def test_register_stores_allocation_performance_and_audit(reg, mgr):
    r = _series(1)
    info = mgr.register_strategy("momentum", r, 0.3)
    assert info.allocation == info.target_allocation == 0.3 and info.active
    # performance recomputed independently
    x = r.to_numpy()
    sharpe = x.mean() / x.std(ddof=1) * math.sqrt(252)
    wealth = np.cumprod(1 + x)
    mdd = np.max(1 - wealth / np.maximum.accumulate(np.r_[1.0, wealth])[1:])
    assert info.performance.sharpe == pytest.approx(sharpe, rel=1e-9)
    assert info.performance.max_drawdown == pytest.approx(mdd, rel=1e-9)
    assert info.performance.win_rate == pytest.approx((x > 0).sum() / (x != 0).sum())
    assert mgr.returns("momentum").equals(r.rename("momentum"))
    last = reg.store.audit(target=PID, limit=1)[0]
    assert (last.actor, last.action, last.after["allocation"]) == ("bob", "strategy.register", 0.3)


@pytest.mark.parametrize(
    ("name", "alloc", "field"),
    [
        ("Bad Name", 0.1, "name"),
        ("ok", 1.5, "initial_allocation"),
        ("ok", -0.1, "initial_allocation"),
        ("ok", float("nan"), "initial_allocation"),
        ("ok", True, "initial_allocation"),
    ],
)
def test_register_rejects_bad_input_and_changes_nothing(reg, mgr, name, alloc, field):
    before = reg.store.dump()
    with pytest.raises(ValidationError) as e:
        mgr.register_strategy(name, _series(1), alloc)
    assert e.value.field == field
    assert reg.store.dump() == before


def test_total_allocation_may_not_exceed_one(reg, mgr):
    mgr.register_strategy("a", _series(1), 0.6)
    before = reg.store.dump()
    with pytest.raises(AllocationError, match="may not exceed 1"):
        mgr.register_strategy("b", _series(2), 0.5)
    assert reg.store.dump() == before
    mgr.register_strategy("b", _series(2), 0.4)  # exactly 1 is fine
    with pytest.raises(AlreadyExistsError):
        mgr.register_strategy("b", _series(2), 0.0)


def test_bad_returns_are_refused(reg, mgr):
    r = _series(1)
    r.iloc[5] = np.nan
    with pytest.raises(ValidationError, match="NaN"):
        mgr.register_strategy("a", r, 0.1)
    with pytest.raises(ValidationError, match="returns"):
        mgr.register_strategy("a", object(), 0.1)


def test_roles(reg, mgr):
    mgr.register_strategy("mine", _series(3), 0.2)
    outsider = StrategyManager(reg.as_user("dave"), "client_b/balanced")  # owner elsewhere
    outsider.portfolio = PID  # pointed at a portfolio dave may not even view
    with pytest.raises(PermissionDenied):
        outsider.strategy("mine")
    with pytest.raises(PermissionDenied):
        outsider.returns("mine")
    before = reg.store.dump()
    for user in ("alice", "carol"):  # trader and viewer: not managers
        with pytest.raises(PermissionDenied):
            StrategyManager(reg.as_user(user), PID).register_strategy("a", _series(1), 0.1)
    assert reg.store.dump() == before


def test_status_frees_capital_and_blocks_allocation(reg, mgr):
    mgr.register_strategy("a", _series(1), 0.5)
    mgr.register_strategy("b", _series(2), 0.5)
    info = mgr.update_strategy_status("a", False)
    assert not info.active and info.allocation == 0.0
    before = reg.store.dump()
    with pytest.raises(AllocationError, match="inactive"):
        mgr.set_allocation({"a": 0.2})
    with pytest.raises(NotFoundError):
        mgr.update_strategy_status("zzz", True)
    assert reg.store.dump() == before
    assert mgr.get_strategy_allocation("b") == {
        "name": "b",
        "active": True,
        "allocation": 0.5,
        "target_allocation": 0.5,
        "drift": 0.0,
        "performance": mgr.strategy("b").performance.to_dict(),
    }


def test_events_are_portfolio_routed(reg, mgr):
    got: dict[str, list[Event]] = {"mine": [], "other": []}
    reg.bus.subscribe("strategy.*", got["mine"].append, portfolio=PID)
    reg.bus.subscribe("strategy.*", got["other"].append, portfolio="client_a/income")
    mgr.register_strategy("a", _series(1), 0.5)
    mgr.set_allocation({"a": 0.4}, reason="test")
    assert [e.topic for e in got["mine"]] == [
        "strategy.registered",
        "strategy.allocation_changed",
    ]
    assert got["other"] == []


# -- optimization --------------------------------------------------------------------------
def _two_uncorrelated(mgr, budget=1.0):
    """Two strategies with known means and variances (sample moments used below)."""
    a, b = _series(10, 1500, 6e-4, 0.010), _series(11, 1500, 3e-4, 0.006)
    mgr.register_strategy("a", a, 0.5)
    mgr.register_strategy("b", b, 0.5)
    return pd.concat({"a": a, "b": b}, axis=1)


def test_markowitz_is_the_tangency_portfolio(mgr):
    frame = _two_uncorrelated(mgr)
    d = mgr.optimize_portfolio_allocation("markowitz", lookback=None)
    mu = frame.mean().to_numpy() * 252
    cov = frame.cov().to_numpy() * 252
    w = np.linalg.solve(cov, mu)
    w /= w.sum()
    assert (w > 0).all()  # interior: the long-only constraint does not bind
    np.testing.assert_allclose([d.after["a"], d.after["b"]], w, atol=1e-6)
    assert d.applied and mgr.allocations() == pytest.approx(d.after)


def test_markowitz_target_return_is_reached(mgr):
    frame = _two_uncorrelated(mgr)
    mu = frame.mean().to_numpy() * 252
    cov = frame.cov().to_numpy() * 252
    w_mv = np.linalg.solve(cov, np.ones(2))
    w_mv /= w_mv.sum()
    # between the minimum-variance return and the best strategy's: the constraint binds
    target = float((w_mv @ mu + mu.max()) / 2)
    d = mgr.optimize_portfolio_allocation("markowitz", target_return=target, lookback=None)
    w = np.array([d.after["a"], d.after["b"]])
    assert w @ mu == pytest.approx(target, abs=1e-7)


def test_risk_parity_equalizes_contributions(mgr):
    frame = _two_uncorrelated(mgr)
    d = mgr.optimize_portfolio_allocation("risk_parity", lookback=None, budget=0.8)
    w = np.array([d.after["a"], d.after["b"]])
    cov = frame.cov().to_numpy()
    rc = w * (cov @ w)
    assert rc[0] == pytest.approx(rc[1], rel=1e-6)
    assert w.sum() == pytest.approx(0.8)


def test_performance_based_prefers_the_better_record(mgr):
    _two_uncorrelated(mgr)
    d = mgr.optimize_portfolio_allocation("performance_based", lookback=None)
    sa, sb = mgr.strategy("a").performance.sharpe, mgr.strategy("b").performance.sharpe
    assert sum(d.after.values()) == pytest.approx(1.0)
    assert (d.after["a"] > d.after["b"]) == (sa > sb)


def test_black_litterman_follows_the_views(mgr):
    _two_uncorrelated(mgr)
    up = mgr.optimize_portfolio_allocation(
        "black_litterman", views=[("a", 0.30), ("b", 0.02)], apply=False, lookback=None
    )
    down = mgr.optimize_portfolio_allocation(
        "black_litterman", views=[("a", 0.02), ("b", 0.30)], apply=False, lookback=None
    )
    assert up.after["a"] > 0.5 > down.after["a"]
    for d in (up, down):
        assert sum(d.after.values()) == pytest.approx(1.0)
        assert 0.05 < d.volatility < 0.5  # annualized, not daily
    assert mgr.allocations() == {"a": 0.5, "b": 0.5}  # apply=False stored nothing


def test_unknown_method_changes_nothing(reg, mgr):
    _two_uncorrelated(mgr)
    before = reg.store.dump()
    with pytest.raises(ValidationError) as e:
        mgr.optimize_portfolio_allocation("magic")
    assert e.value.field == "optimization_method"
    with pytest.raises(ValidationError):
        mgr.optimize_portfolio_allocation("risk_parity", target_return=0.1)
    assert reg.store.dump() == before


def test_history_is_bounded_persisted_and_fully_audited(tmp_path):
    url = str(tmp_path / "pm.db")
    reg = open_demo(open_store(url))
    m = StrategyManager(reg.as_user("bob"), PID, history_limit=3)
    _two_uncorrelated(m)
    methods = ["markowitz", "risk_parity", "performance_based", "risk_parity", "markowitz"]
    for method in methods:
        m.optimize_portfolio_allocation(method, lookback=None)
    assert [d.seq for d in m.history()] == [3, 4, 5]
    assert [d.method for d in m.history()] == methods[2:]
    notes = [a for a in reg.store.audit(target=PID) if a.action == "strategy.decision"]
    assert [a.after["method"] for a in notes] == methods
    last = m.history()[-1].after
    reg.store.close()
    again = StrategyManager(Registry.open(url, user="bob"), PID)
    assert [d.method for d in again.history()] == methods[2:]
    assert again.allocations() == pytest.approx(last)


# -- triggers (pure) ------------------------------------------------------------------------
def test_scheduled_trigger():
    t0 = datetime(2024, 1, 1, 9)
    assert scheduled_trigger(None, t0).fired
    assert not scheduled_trigger(t0, t0 + timedelta(hours=23)).fired
    assert scheduled_trigger(t0, t0 + timedelta(hours=24)).fired
    with pytest.raises(ValidationError):
        scheduled_trigger(t0, t0, timedelta(0))


def test_drift_closed_form():
    # targets 0.5/0.3 with 0.2 cash; A gains 10 %, B nothing
    w = drifted_weights({"a": 0.5, "b": 0.3}, {"a": 1.10, "b": 1.0})
    assert w["a"] == pytest.approx(0.55 / 1.05) and w["b"] == pytest.approx(0.3 / 1.05)
    drift_a = 0.55 / 1.05 - 0.5
    assert drift_trigger(w, {"a": 0.5, "b": 0.3}, drift_a - 1e-6).fired
    assert not drift_trigger(w, {"a": 0.5, "b": 0.3}, drift_a + 1e-6).fired
    with pytest.raises(ValidationError):
        drift_trigger(w, {"a": 0.5}, -0.1)


def test_performance_trigger_sharpe_and_drawdown():
    good = _series(3, 300, 1e-3, 0.01)
    bad = good.copy()
    bad.iloc[-63:] = -np.abs(bad.iloc[-63:])  # a losing quarter
    frame = pd.DataFrame({"good": good, "bad": bad})
    r = performance_trigger(frame, window=63, min_sharpe=0.0, max_drawdown=None)
    assert r.fired and r.details["strategies"]["bad"]["degraded"]
    assert not r.details["strategies"]["good"]["degraded"]
    assert not performance_trigger(frame[["good"]], min_sharpe=0.0, max_drawdown=None).fired
    # drawdown alone: a steady loss of 0.5 %/day for 63 days is a ~27 % drawdown
    dd = pd.Series(np.r_[np.full(200, 1e-3), np.full(63, -5e-3)], index=good.index[:263])
    wealth = np.cumprod(1 + dd.to_numpy())
    expected = 1 - wealth[-1] / wealth.max()
    hit = performance_trigger(dd.to_frame("x"), min_sharpe=None, max_drawdown=expected - 1e-6)
    miss = performance_trigger(dd.to_frame("x"), min_sharpe=None, max_drawdown=expected + 1e-6)
    assert hit.fired and not miss.fired
    assert hit.details["strategies"]["x"]["drawdown"] == pytest.approx(expected)


# -- triggers through the manager -------------------------------------------------------
def _drifting(mgr):
    """A gains 10 % after the decision date, B is flat: closed-form drift."""
    idx = pd.bdate_range("2021-01-01", periods=120)
    base = pd.Series(np.tile([0.001, -0.001], 60), index=idx)
    mgr.register_strategy("a", base, 0.5)
    mgr.register_strategy("b", base, 0.3)
    later = pd.bdate_range(idx[-1] + pd.offsets.BDay(), periods=2)
    grown = pd.concat([base, pd.Series([0.10, 0.0], index=later)])
    flat = pd.concat([base, pd.Series([0.0, 0.0], index=later)])
    mgr.update_strategy_returns("a", grown)
    mgr.update_strategy_returns("b", flat)


def test_threshold_trigger_fires_and_restores_targets(reg, mgr):
    _drifting(mgr)
    drift_a = 0.55 / 1.05 - 0.5
    assert mgr.current_allocations()["a"] == pytest.approx(0.55 / 1.05)
    quiet = mgr.rebalance_portfolio("threshold", drift_a + 1e-6)
    assert not quiet.fired and quiet.decision is None
    dry = mgr.rebalance_portfolio("threshold", drift_a - 1e-6, apply=False)
    assert dry.fired and not dry.decision.applied
    assert mgr.current_allocations()["a"] == pytest.approx(0.55 / 1.05)  # nothing applied
    done = mgr.rebalance_portfolio("threshold", drift_a - 1e-6)
    assert done.fired and done.decision.applied and done.proposal is None
    assert done.decision.before["a"] == pytest.approx(0.55 / 1.05)
    assert mgr.current_allocations() == pytest.approx({"a": 0.5, "b": 0.3})
    assert not mgr.rebalance_portfolio("threshold", 0.001).fired  # drift measured anew


def test_scheduled_trigger_through_the_manager(mgr):
    _two_uncorrelated(mgr)
    t0 = datetime(2024, 1, 1, 9)
    first = mgr.rebalance_portfolio("scheduled", now=t0)
    assert first.fired and first.decision.method == "risk_parity"  # no optimization yet
    assert not mgr.rebalance_portfolio("scheduled", now=t0 + timedelta(hours=23)).fired
    assert mgr.rebalance_portfolio("scheduled", now=t0 + timedelta(hours=25)).fired


def test_performance_trigger_through_the_manager(mgr):
    good = _series(3, 300, 1e-3, 0.01)
    bad = good.copy()
    bad.iloc[-63:] = -np.abs(bad.iloc[-63:])
    mgr.register_strategy("good", good, 0.5)
    mgr.register_strategy("bad", bad, 0.5)
    out = mgr.rebalance_portfolio("performance", threshold=0.9, method="performance_based")
    assert out.fired and "bad" in out.trigger.reason
    assert mgr.allocations()["good"] > mgr.allocations()["bad"]
    mgr.update_strategy_returns("bad", good)
    assert not mgr.rebalance_portfolio("performance", threshold=0.9).fired


def test_risk_trigger_reads_the_portfolio_limits(reg, mgr):
    _two_uncorrelated(mgr)
    # growth holds 25 % positions; the configured cap is 0.25 (client_a)
    breach = mgr.rebalance_portfolio("risk", limits={"max_position_weight": 0.05}, at="2021-06-30")
    assert breach.fired and "position" in breach.trigger.reason
    calm = mgr.rebalance_portfolio(
        "risk", limits={"max_position_weight": 0.99, "max_drawdown": 0.99}, at="2021-06-30"
    )
    assert not calm.fired


def test_summary(mgr):
    _drifting(mgr)
    s = mgr.get_portfolio_summary()
    assert s["allocated"] == pytest.approx((0.55 + 0.3) / 1.05)
    assert s["drift"]["a"] == pytest.approx(0.55 / 1.05 - 0.5)
    assert list(mgr.summary_frame().index) == ["a", "b"]


# -- the strategy library ---------------------------------------------------------------
def test_momentum_selection_is_causal_and_returns_match(reg):
    market = reg.market
    s = CrossSectionalMomentum(market, end="2015-12-31", top=5)
    close = market["close"].to_pandas().T  # time x asset
    d = pd.Timestamp("2015-06-30")
    hist = close.loc[:d].iloc[-253:]
    ok = hist.notna().all()
    score = (hist.iloc[-1 - 21] / hist.iloc[0] - 1)[ok]
    expected = set(score.sort_values(ascending=False).index[:5])
    assert set(s.target_weights(d)) == expected
    # the first day after the month end earns the equal-weight mean of those assets
    nxt = close.index[close.index.get_loc(d) + 1]
    r = close.loc[nxt, sorted(expected)] / close.loc[d, sorted(expected)] - 1
    assert s.returns().loc[nxt] == pytest.approx(r.mean(), rel=1e-12)


@pytest.mark.parametrize("cls", [ShortTermReversal, LowVolatility])
def test_other_rules_hold_top_assets_equal_weight(reg, cls):
    s = cls(reg.market, end="2012-12-31", top=4)
    w = s.target_weights()
    assert len(w) == 4 and all(v == pytest.approx(0.25) for v in w.values())
    assert performance_of(s.returns()).observations == len(s.returns())
