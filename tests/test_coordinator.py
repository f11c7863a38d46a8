"""StrategyCoordinator: validation, enrichment, conflicts, resolution, queue, audit, restart."""

from __future__ import annotations

import asyncio
import functools
import math

import numpy as np
import pandas as pd
import pytest

from pmkit.coordinator import (
    Priority,
    PriorityRule,
    ResolutionStrategy,
    Side,
    Signal,
    SignalState,
    StrategyCoordinator,
    performance_score,
    position_size,
    resolve_signal_conflicts,
    risk_reward,
)
from pmkit.demo import open_demo
from pmkit.errors import (
    NotFoundError,
    PermissionDenied,
    TransitionError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.registry import Registry
from pmkit.store import SQLiteStore
from pmkit.strategies import StrategyManager, StrategyPerformance

GROWTH = "client_a/growth"
INCOME = "client_a/income"
BALANCED = "client_b/balanced"
R = ResolutionStrategy


# -- an independent oracle of the documented priority table -----------------------------------
def expected_priority(perf: StrategyPerformance | None, confidence: float) -> Priority:
    sharpe = None if perf is None or not math.isfinite(perf.sharpe) else perf.sharpe
    if confidence < 0.25 or (sharpe is not None and sharpe < 0):
        return Priority.LOW
    if sharpe is not None and sharpe >= 1.0 and perf.max_drawdown <= 0.25 and confidence >= 0.75:
        return Priority.CRITICAL
    if sharpe is not None and sharpe >= 0.5 and confidence >= 0.5:
        return Priority.HIGH
    return Priority.MEDIUM


def returns_with_sharpe(sharpe: float, seed: int, n: int = 500, vol: float = 0.01) -> pd.Series:
    """Daily returns whose sample mean/std * sqrt(252) is ``sharpe`` (standardised noise)."""
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    mu = sharpe / math.sqrt(252) * vol
    return pd.Series(mu + vol * z, index=pd.bdate_range("2019-01-01", periods=n))


STRATS = {"alpha": (2.0, 0.3), "beta": (0.7, 0.2), "gamma": (-0.5, 0.1)}


def setup_demo(store: str = ":memory:"):
    reg = open_demo(store)
    bob = reg.as_user("bob")
    for k, pid in enumerate((GROWTH, INCOME, BALANCED)):
        sm = StrategyManager(bob, pid)
        for j, (name, (sharpe, alloc)) in enumerate(STRATS.items()):
            sm.register_strategy(name, returns_with_sharpe(sharpe, 10 * k + j), alloc)
    return reg


@functools.cache
def _template():
    return setup_demo()


def fresh_demo():
    """A private copy of the demo with strategies (registering them is slow: JAX performance)."""
    src = _template()
    dst = SQLiteStore(":memory:")
    src.store._conn.backup(dst._conn)
    return Registry(dst, market=src.market)


@pytest.fixture
def reg():
    return fresh_demo()


@pytest.fixture
def coord(reg):
    return StrategyCoordinator(reg.as_user("alice"))


def perf(reg, name: str, pid: str = GROWTH) -> StrategyPerformance:
    return StrategyManager(reg, pid).strategy(name).performance


def sig(
    symbol="MSFT",
    side="long",
    strategy="alpha",
    portfolio=GROWTH,
    confidence=0.5,
    entry=100.0,
    risk=5.0,
    rr=2.0,
    **extra,
):
    s = 1 if side == "long" else -1
    return {
        "symbol": symbol,
        "side": side,
        "entry": entry,
        "stop": entry - s * risk,
        "target": entry + s * rr * risk,
        "confidence": confidence,
        "strategy": strategy,
        "portfolio": portfolio,
        **extra,
    }


def drain(coord) -> list[Signal]:
    async def go():
        out = []
        while (s := await coord.get_next_signal(timeout=0)) is not None:
            out.append(s)
        return out

    return asyncio.run(go())


def records_by_state(reg) -> dict[str, int]:
    out = {str(s): 0 for s in SignalState}
    for r in reg.store.list("signal"):
        out[r.status] += 1
    return out


def test_setup_gives_the_intended_strategy_tiers(reg):
    a, b, g = (perf(reg, n) for n in ("alpha", "beta", "gamma"))
    assert a.sharpe == pytest.approx(2.0, rel=1e-2) and a.max_drawdown <= 0.25
    assert 0.5 <= b.sharpe < 1.0
    assert g.sharpe < 0


# -- pure parts ------------------------------------------------------------------------------
def _perf(sharpe=1.0, mdd=0.1, win=0.55):
    return StrategyPerformance(sharpe, 0.1, 0.1, mdd, win, 1.2, 500, "2020-01-01", "2021-01-01")


@pytest.mark.parametrize(
    ("perf_", "conf", "want"),
    [
        (_perf(1.0, 0.25), 0.75, Priority.CRITICAL),  # every CRITICAL bound met exactly
        (_perf(0.9999, 0.25), 0.75, Priority.HIGH),
        (_perf(1.0, 0.2501), 0.75, Priority.HIGH),
        (_perf(1.0, 0.25), 0.7499, Priority.HIGH),
        (_perf(0.5), 0.5, Priority.HIGH),
        (_perf(0.4999), 0.5, Priority.MEDIUM),
        (_perf(0.5), 0.4999, Priority.MEDIUM),
        (_perf(0.0), 0.25, Priority.MEDIUM),
        (_perf(0.0), 0.2499, Priority.LOW),
        (_perf(-1e-9), 1.0, Priority.LOW),
        (_perf(3.0, 0.01), 0.2, Priority.LOW),  # low confidence beats a great strategy
        (None, 1.0, Priority.MEDIUM),  # unknown performance is average
        (None, 0.1, Priority.LOW),
        (_perf(float("nan")), 0.9, Priority.MEDIUM),
    ],
)
def test_priority_table_boundaries(perf_, conf, want):
    assert PriorityRule()(perf_, conf) is want
    assert expected_priority(perf_, conf) is want


def test_performance_score_closed_form():
    assert performance_score(_perf(1.0, win=0.6)) == pytest.approx(math.e * 0.6)
    assert performance_score(_perf(-2.0, win=0.4)) == pytest.approx(math.exp(-2) * 0.4)
    assert performance_score(_perf(10.0, win=0.5)) == pytest.approx(math.exp(3) * 0.5)  # clipped
    assert performance_score(None) == 0.5


def test_risk_reward_and_size_closed_forms():
    assert risk_reward(100.0, 95.0, 112.5) == pytest.approx(2.5)
    assert risk_reward(100.0, 104.0, 90.0) == pytest.approx(2.5)
    # 1 % of 0.3 * 1e6 over a 2.0 risk per unit = 1500 units
    cap, units = position_size(1e6, 0.3, 0.01, 50.0, 48.0)
    assert (cap, units) == (300_000.0, 1500.0)
    # the portfolio limit: 5 % of 1e6 at 50 per unit is 1000 units
    assert position_size(1e6, 0.3, 0.01, 50.0, 48.0, max_position_weight=0.05)[1] == 1000.0
    # 1000 units rounded down to lots of 300 = 900
    assert position_size(1e6, 0.3, 0.01, 50.0, 47.0, lot_size=300)[1] == 900.0
    assert position_size(1e6, 0.0, 0.01, 50.0, 48.0, max_position_weight=0.05) == (0.0, 0.0)


def mk(
    seq,
    side="long",
    priority=Priority.MEDIUM,
    confidence=0.5,
    rr=2.0,
    weight=1.0,
    status=SignalState.QUEUED,
    symbol="AAPL",
):
    return Signal(
        symbol,
        Side(side),
        100.0,
        95.0 if side == "long" else 105.0,
        110.0 if side == "long" else 90.0,
        confidence,
        "s",
        GROWTH,
        pd.Timestamp("2024-01-01").to_pydatetime(),
        id=f"sig-{seq}",
        seq=seq,
        risk_reward=rr,
        priority=priority,
        weight=weight,
        status=status,
    )


def test_highest_priority_rule_and_its_tie_breaks():
    old = [mk(1, "short", Priority.HIGH, 0.6), mk(2, "short", Priority.MEDIUM, 0.9)]
    new = mk(3, "long", Priority.CRITICAL, 0.1)
    r = resolve_signal_conflicts(new, old, R.HIGHEST_PRIORITY)
    assert r.new_wins and r.winner is new and r.losers == tuple(old)
    # equal priority: higher confidence wins
    r = resolve_signal_conflicts(mk(3, "long", Priority.HIGH, 0.7), old, "highest_priority")
    assert r.new_wins
    r = resolve_signal_conflicts(mk(3, "long", Priority.HIGH, 0.5), old, R.HIGHEST_PRIORITY)
    assert not r.new_wins and r.winner is old[0] and r.losers[0].seq == 3
    # equal priority and confidence: the better risk:reward; then the earlier signal
    r = resolve_signal_conflicts(mk(3, "long", Priority.HIGH, 0.6, rr=3.0), old, R.HIGHEST_PRIORITY)
    assert r.new_wins
    r = resolve_signal_conflicts(mk(3, "long", Priority.HIGH, 0.6, rr=2.0), old, R.HIGHEST_PRIORITY)
    assert r.winner is old[0]


def test_best_risk_reward_rule():
    old = [mk(1, "short", Priority.CRITICAL, 1.0, rr=1.5), mk(2, "short", rr=2.5)]
    r = resolve_signal_conflicts(mk(3, "long", Priority.LOW, 0.0, rr=2.6), old, R.BEST_RISK_REWARD)
    assert r.new_wins
    r = resolve_signal_conflicts(mk(3, "long", Priority.LOW, 0.0, rr=2.4), old, R.BEST_RISK_REWARD)
    assert r.winner is old[1]
    # equal R:R, then priority decides
    r = resolve_signal_conflicts(mk(3, "long", Priority.HIGH, rr=2.5), old, R.BEST_RISK_REWARD)
    assert r.new_wins


def test_performance_weighted_rule_uses_score_times_confidence():
    p_old, p_new = _perf(0.2, win=0.5), _perf(1.5, win=0.55)
    w_old = math.exp(0.2) * 0.5 * 0.9  # = 0.5496...
    w_new_lo, w_new_hi = math.exp(1.5) * 0.55 * 0.2, math.exp(1.5) * 0.55 * 0.3  # 0.49, 0.74
    assert w_new_lo < w_old < w_new_hi
    old = [mk(1, "short", confidence=0.9, weight=performance_score(p_old) * 0.9)]
    for conf, wins in ((0.2, False), (0.3, True)):
        new = mk(2, "long", confidence=conf, weight=performance_score(p_new) * conf)
        assert resolve_signal_conflicts(new, old, R.PERFORMANCE_WEIGHTED).new_wins is wins


def test_fifo_rule_keeps_the_existing_signal():
    old = [mk(5, "short", Priority.LOW, 0.0, rr=0.1, weight=0.0)]
    new = mk(6, "long", Priority.CRITICAL, 1.0, rr=9.0, weight=9.0)
    r = resolve_signal_conflicts(new, old, R.FIRST_IN_FIRST_OUT)
    assert r.winner is old[0] and r.losers == (new,)


def test_dispatched_signal_always_wins():
    old = [mk(1, "short", Priority.LOW, status=SignalState.DISPATCHED), mk(2, "short")]
    r = resolve_signal_conflicts(mk(3, "long", Priority.CRITICAL, 1.0), old, R.HIGHEST_PRIORITY)
    assert r.reason == "in_flight" and r.winner is old[0] and not r.new_wins


def test_resolution_input_checks():
    with pytest.raises(ValidationError) as e:
        resolve_signal_conflicts(mk(2), [mk(1)], R.HIGHEST_PRIORITY)  # same side
    assert e.value.field == "conflicting_signals"
    with pytest.raises(ValidationError) as e:
        resolve_signal_conflicts(mk(2), [mk(1, "short")], "best")
    assert e.value.field == "resolution_strategy"


# -- validation -------------------------------------------------------------------------------
def _entity_rows(dump):
    return {tuple(r) for r in dump["entities"]}


BAD = [
    (dict(symbol="ZZZZ"), UnknownAssetError, "symbol"),
    (dict(symbol=None), ValidationError, "symbol"),
    (dict(side="buy"), ValidationError, "side"),
    (dict(entry=-1.0), ValidationError, "entry"),
    (dict(entry="abc"), ValidationError, "entry"),
    (dict(stop=0.0), ValidationError, "stop"),
    (dict(target=float("nan")), ValidationError, "target"),
    (dict(stop=101.0), ValidationError, "stop"),  # long stop above entry
    (dict(target=99.0), ValidationError, "target"),  # long target below entry
    (dict(side="short", stop=95.0, target=90.0), ValidationError, "stop"),
    (dict(side="short", stop=105.0, target=110.0), ValidationError, "target"),
    (dict(confidence=1.5), ValidationError, "confidence"),
    (dict(confidence=-0.01), ValidationError, "confidence"),
    (dict(confidence=True), ValidationError, "confidence"),
    (dict(strategy="nope"), ValidationError, "strategy"),
    (dict(time="yesterday"), ValidationError, "time"),
]


@pytest.mark.parametrize(("change", "error", "field"), BAD)
def test_each_validation_failure_is_recorded_then_raised(reg, coord, change, error, field):
    before = reg.store.dump()
    with pytest.raises(error) as e:
        coord.process_signal({**sig(), **change})
    assert e.value.field == field
    after = reg.store.dump()
    new_entities = _entity_rows(after) - _entity_rows(before)
    assert _entity_rows(before) <= _entity_rows(after)
    (row,) = new_entities
    kind, sid, status = row[:3]
    assert (kind, status) == ("signal", "rejected")
    assert coord.record(sid)["reason"] == field
    new_audit = after["audit"][len(before["audit"]) :]
    assert after["audit"][: len(before["audit"])] == before["audit"]
    assert {a[4] for a in new_audit} == {sid}
    assert {"signal.submit", "signal.received", "signal.rejected"} <= {a[3] for a in new_audit}
    for table in before:
        if table not in ("entities", "audit"):
            assert after[table] == before[table], table
    stats = coord.get_processing_stats()
    assert stats["rejected"] == 1 and stats["rejections"] == {field: 1}
    assert coord.pending == 0


def test_inactive_strategy_and_strategy_argument_mismatch(reg, coord):
    StrategyManager(reg.as_user("bob"), GROWTH).update_strategy_status("beta", False)
    with pytest.raises(ValidationError) as e:
        coord.process_signal(sig(strategy="beta"))
    assert e.value.field == "strategy" and "inactive" in e.value.reason
    with pytest.raises(ValidationError) as e:
        asyncio.run(coord.process_strategy_signal("gamma", sig(strategy="alpha")))
    assert e.value.field == "strategy"
    assert records_by_state(reg)["rejected"] == 2


def test_unknown_portfolio_writes_nothing(reg):
    coord = StrategyCoordinator(reg)  # system: admin, so only existence can fail
    before = reg.store.dump()
    with pytest.raises(NotFoundError):
        coord.process_signal(sig(portfolio="client_a/nope"))
    assert reg.store.dump() == before


# -- enrichment -------------------------------------------------------------------------------
def test_enrichment_matches_an_independent_computation(reg, coord):
    s = coord.process_signal(
        sig(symbol="MSFT", strategy="beta", confidence=0.6, entry=250.0, risk=4.0, rr=3.0)
    )
    nav = reg.value(GROWTH)
    mpw = reg.resolve_config(GROWTH)["max_position_weight"]
    lot = int(reg.market["lot_size"].sel(asset="MSFT"))
    capital = 0.2 * nav
    units = math.floor(min(0.01 * capital / 4.0, mpw * nav / 250.0) / lot) * lot
    p = perf(reg, "beta")
    assert s.status is SignalState.QUEUED and s.accepted
    assert s.allocation == pytest.approx(capital) and s.nav == pytest.approx(nav)
    assert s.size == units
    assert s.risk_reward == pytest.approx(3.0)
    assert s.priority is expected_priority(p, 0.6)
    assert s.weight == pytest.approx(math.exp(min(p.sharpe, 3)) * p.win_rate * 0.6)


def test_size_is_capped_by_the_portfolio_limit(reg):
    coord = StrategyCoordinator(reg.as_user("alice"), risk_fraction=1.0)
    s = coord.process_signal(sig(symbol="MSFT", entry=250.0, risk=0.5))
    nav = reg.value(GROWTH)
    assert s.size == math.floor(0.25 * nav / 250.0)  # the cap binds, not the 100 % risk


def test_nav_is_cached_until_refreshed(reg, coord, monkeypatch):
    calls = []
    real = type(coord.registry).value

    def counting(self, pid=None, at=None):
        calls.append(pid)
        return real(self, pid, at)

    monkeypatch.setattr(type(coord.registry), "value", counting)
    for sym in ("MSFT", "AMD", "HD"):
        coord.process_signal(sig(symbol=sym))
    assert calls == [GROWTH]
    coord.refresh_nav(GROWTH)
    coord.process_signal(sig(symbol="UNH"))
    assert calls == [GROWTH, GROWTH]


# -- conflicts --------------------------------------------------------------------------------
def test_duplicates_are_rejected_while_the_original_is_live(reg, coord):
    first = coord.process_signal(sig(confidence=0.9))
    dup = coord.process_signal(sig(confidence=0.1, entry=120.0))
    assert dup.status is SignalState.REJECTED and dup.reason == "duplicate"
    assert dup.conflicts[0]["with"] == first.id
    other = coord.process_signal(sig(strategy="beta"))  # another strategy: not a duplicate
    assert other.status is SignalState.QUEUED
    coord.mark_signal_executed(first.id, {"filled": 10})
    again = coord.process_signal(sig())
    assert again.status is SignalState.QUEUED
    stats = coord.get_processing_stats()
    assert stats["rejections"] == {"duplicate": 1} and stats["conflicts"]["duplicate"] == 1


def test_position_conflicts_flagged_or_rejected(reg, coord):
    held = reg.positions(GROWTH).quantities["AAPL"]
    assert held > 0
    long_ = coord.process_signal(sig(symbol="AAPL"))
    assert not [c for c in long_.conflicts if c["kind"] == "position"]
    coord.mark_signal_executed(long_.id)
    short = coord.process_signal(sig(symbol="AAPL", side="short"))
    assert short.status is SignalState.QUEUED
    assert short.conflicts == (
        {"kind": "position", "with": None, "portfolio": GROWTH, "quantity": held},
    )
    strict = StrategyCoordinator(reg.as_user("alice"), position_policy="reject")
    strict.mark_signal_executed(short.id)
    rej = strict.process_signal(sig(symbol="AAPL", side="short", strategy="beta"))
    assert rej.status is SignalState.REJECTED and rej.reason == "position"
    assert strict.get_processing_stats()["rejections"] == {"position": 1}


def test_group_scope_conflicts(reg):
    plain = StrategyCoordinator(reg.as_user("bob"))
    a = plain.process_signal(sig(symbol="PFE", portfolio=GROWTH, confidence=0.9))
    b = plain.process_signal(sig(symbol="PFE", side="short", portfolio=INCOME, confidence=0.9))
    assert a.status is b.status is SignalState.QUEUED and b.conflicts == ()

    reg2 = fresh_demo()
    grouped = StrategyCoordinator(reg2.as_user("bob"), group_conflicts=True)
    a = grouped.process_signal(sig(symbol="PFE", portfolio=GROWTH, confidence=0.5))
    far = grouped.process_signal(sig(symbol="PFE", side="short", portfolio=BALANCED))
    assert far.status is SignalState.QUEUED and far.conflicts == ()  # no shared direct group
    b = grouped.process_signal(sig(symbol="PFE", side="short", portfolio=INCOME, confidence=0.9))
    assert [c["kind"] for c in b.conflicts] == ["group"] and b.conflicts[0]["with"] == a.id
    # alpha with confidence 0.9 is CRITICAL against alpha at 0.5 (HIGH): the new one wins
    assert expected_priority(perf(reg2, "alpha", INCOME), 0.9) > expected_priority(
        perf(reg2, "alpha", GROWTH), 0.5
    )
    assert b.status is SignalState.QUEUED
    assert grouped.record(a.id)["status"] == "superseded"
    assert grouped.record(a.id)["superseded_by"] == b.id

    reg3 = fresh_demo()
    firm = StrategyCoordinator(reg3.as_user("bob"), group_conflicts="firm")
    a = firm.process_signal(sig(symbol="PFE", portfolio=GROWTH, confidence=0.9))
    c = firm.process_signal(sig(symbol="PFE", side="short", portfolio=BALANCED, confidence=0.3))
    assert c.status is SignalState.SUPERSEDED and c.superseded_by == a.id
    assert c.conflicts[0]["kind"] == "group"


@pytest.mark.parametrize("rule", list(ResolutionStrategy))
def test_each_rule_through_the_coordinator(reg, rule):
    coord = StrategyCoordinator(reg.as_user("alice"))
    coord.as_user("bob").set_resolution_strategy(rule, GROWTH)
    # an existing gamma (negative Sharpe) short with a great R:R and full confidence,
    # against a new alpha long with a modest R:R
    old = coord.process_signal(
        sig(symbol="MSFT", side="short", strategy="gamma", confidence=1.0, rr=6.0)
    )
    new = coord.process_signal(
        sig(symbol="MSFT", side="long", strategy="alpha", confidence=0.8, rr=1.5)
    )
    pg, pa = perf(reg, "gamma"), perf(reg, "alpha")
    if rule is R.HIGHEST_PRIORITY:
        new_wins = expected_priority(pa, 0.8) > expected_priority(pg, 1.0)
    elif rule is R.BEST_RISK_REWARD:
        new_wins = 1.5 > 6.0
    elif rule is R.PERFORMANCE_WEIGHTED:
        w_old = math.exp(max(pg.sharpe, -3)) * pg.win_rate * 1.0
        w_new = math.exp(min(pa.sharpe, 3)) * pa.win_rate * 0.8
        new_wins = w_new > w_old
    else:
        new_wins = False
    assert rule in (R.BEST_RISK_REWARD, R.FIRST_IN_FIRST_OUT) or new_wins  # the case is telling
    winner, loser = (new, old) if new_wins else (old, new)
    assert coord.record(winner.id)["status"] == "queued"
    assert coord.record(loser.id)["status"] == "superseded"
    assert coord.record(loser.id)["superseded_by"] == winner.id
    assert coord.record(new.id)["conflicts"][0] == {
        "kind": "opposing",
        "with": old.id,
        "portfolio": GROWTH,
    }
    assert [s.id for s in drain(coord)] == [winner.id]


def test_settings_persist_and_need_roles(reg, tmp_path):
    coord = StrategyCoordinator(reg.as_user("alice"))
    assert coord.resolution_strategy(GROWTH) is R.HIGHEST_PRIORITY
    with pytest.raises(PermissionDenied):
        coord.set_resolution_strategy(R.FIRST_IN_FIRST_OUT, GROWTH)  # alice is a trader
    with pytest.raises(PermissionDenied):
        coord.as_user("bob").set_resolution_strategy(R.FIRST_IN_FIRST_OUT)  # default: admin
    coord.as_user("bob").set_resolution_strategy("BEST_RISK_REWARD", GROWTH)
    coord.as_user("system").set_resolution_strategy(R.PERFORMANCE_WEIGHTED)
    again = StrategyCoordinator(reg)
    assert again.resolution_strategy(GROWTH) is R.BEST_RISK_REWARD
    assert again.resolution_strategy(INCOME) is R.PERFORMANCE_WEIGHTED
    rec = reg.store.get("coordinator.settings", GROWTH)
    assert rec.data == {"resolution": "best_risk_reward"}


# -- the queue --------------------------------------------------------------------------------
def test_queue_order_is_priority_then_fifo(reg, coord):
    plan = [
        ("alpha", 0.9),
        ("gamma", 0.9),
        ("beta", 0.6),
        ("alpha", 0.5),
        ("beta", 0.3),
        ("alpha", 0.1),
        ("beta", 0.7),
        ("alpha", 0.95),
    ]
    symbols = ["AAPL", "MSFT", "AMD", "HD", "UNH", "KO", "PEP", "PG"]
    ids, prio = [], []
    for (name, conf), sym in zip(plan, symbols, strict=True):
        ids.append(coord.process_signal(sig(symbol=sym, strategy=name, confidence=conf)).id)
        prio.append(expected_priority(perf(reg, name), conf))
    assert len(set(prio)) == 4  # every level is present
    want = [ids[k] for k in sorted(range(len(ids)), key=lambda k: (-prio[k], k))]
    assert [s.id for s in coord.queued_signals()] == want
    got = drain(coord)
    assert [s.id for s in got] == want
    assert all(s.status is SignalState.DISPATCHED for s in got)


def test_get_next_signal_timeout_and_wakeup(coord):
    async def go():
        assert await coord.get_next_signal(timeout=0.05) is None
        waiter = asyncio.create_task(coord.get_next_signal(timeout=30))
        await asyncio.sleep(0.01)
        sent = await coord.process_strategy_signal("alpha", sig())
        got = await waiter
        return sent, got

    sent, got = asyncio.run(go())
    assert got.id == sent.id and got.status is SignalState.DISPATCHED
    assert coord._sh.waiters == []


def test_displaced_signals_are_never_dequeued(reg, coord):
    lows = [
        coord.process_signal(sig(symbol=s, side="short", strategy="gamma", confidence=0.9))
        for s in ("MSFT", "AMD")
    ]
    keep = coord.process_signal(sig(symbol="HD", strategy="gamma"))
    wins = [
        coord.process_signal(sig(symbol=s, strategy="alpha", confidence=0.9))
        for s in ("MSFT", "AMD")
    ]
    got = [s.id for s in drain(coord)]
    assert sorted(got) == sorted([keep.id] + [w.id for w in wins])
    assert not {lo.id for lo in lows} & set(got)
    for lo, w in zip(lows, wins, strict=True):
        assert coord.record(lo.id)["superseded_by"] == w.id


def test_execute_once_only(reg, coord):
    s = coord.process_signal(sig())
    loser = coord.process_signal(sig(side="short", strategy="gamma"))
    assert loser.status is SignalState.SUPERSEDED
    done = coord.mark_signal_executed(s.id, {"price": 100.1, "units": 5})
    assert done.status is SignalState.EXECUTED and done.execution_result == {
        "price": 100.1,
        "units": 5,
    }
    before = reg.store.dump()
    with pytest.raises(TransitionError) as e:
        coord.mark_signal_executed(s.id)
    assert e.value.status == "executed"
    with pytest.raises(TransitionError):
        coord.mark_signal_executed(loser.id)
    with pytest.raises(NotFoundError):
        coord.mark_signal_executed("sig-999999999")
    with pytest.raises(ValidationError) as e:
        coord.mark_signal_executed(s.id, {"bad": float("nan")})
    assert e.value.field == "execution_result.bad"
    assert reg.store.dump() == before
    assert drain(coord) == []  # executed from the queue: never handed out


@pytest.mark.parametrize("user", ["carol", "erin", "dave"])
def test_role_denial_writes_nothing(reg, coord, user):
    if user == "erin":
        reg.add_user("erin")
    queued = coord.process_signal(sig())
    other = coord.as_user(user)
    before = reg.store.dump()
    with pytest.raises(PermissionDenied):
        other.process_signal(sig(symbol="AMD"))
    with pytest.raises(PermissionDenied):
        other.mark_signal_executed(queued.id)
    # a signal the user may not execute is not theirs to take: it stays queued for its desk
    assert asyncio.run(other.get_next_signal(timeout=0)) is None
    assert reg.store.dump() == before
    assert [s.id for s in coord.queued_signals()] == [queued.id]  # still queued
    assert coord.get_processing_stats()["received"] == 1


# -- audit, events, reporting ---------------------------------------------------------------
def test_every_step_is_audited(reg, coord):
    old = coord.process_signal(sig(side="short", strategy="gamma"))
    new = coord.process_signal(sig(strategy="alpha", confidence=0.9))
    asyncio.run(coord.get_next_signal(timeout=0))
    coord.mark_signal_executed(new.id, {"ok": True})
    acts = [a.action for a in reg.store.audit(target=new.id)]
    for step in (
        "signal.submit",
        "signal.received",
        "signal.validated",
        "signal.enriched",
        "signal.conflict",
        "signal.resolved",
        "signal.queued",
        "signal.dequeue",
        "signal.execute",
    ):
        assert step in acts, step
    sup = [a for a in reg.store.audit(target=old.id) if a.action == "signal.superseded"]
    assert sup and sup[-1].after["superseded_by"] == new.id
    assert all(a.actor == "alice" for a in reg.store.audit(target=new.id))


def test_events_are_portfolio_routed(reg, coord):
    seen, foreign = [], []
    reg.bus.subscribe(
        "signal.*", lambda e: seen.append((e.topic, e.payload["signal"])), portfolio=GROWTH
    )
    reg.bus.subscribe("signal.*", lambda e: foreign.append(e), portfolio=BALANCED)
    old = coord.process_signal(sig(side="short", strategy="gamma"))
    new = coord.process_signal(sig(confidence=0.9))
    dup = coord.process_signal(sig(confidence=0.9))
    with pytest.raises(ValidationError):
        coord.process_signal(sig(confidence=2.0))
    coord.mark_signal_executed(new.id)
    topics = [t for t, _ in seen]
    assert ("signal.superseded", old.id) in seen
    assert ("signal.rejected", dup.id) in seen
    assert topics.count("signal.accepted") == 2 and topics.count("signal.rejected") == 2
    assert ("signal.executed", new.id) in seen
    assert foreign == []


def test_stats_and_summary(reg, coord):
    coord.process_signal(sig(symbol="MSFT"))
    coord.process_signal(sig(symbol="MSFT", strategy="beta", confidence=0.6))
    coord.process_signal(sig(symbol="AMD", side="short", strategy="alpha", confidence=0.9))
    coord.process_signal(sig(symbol="AMD", strategy="gamma"))  # loses to a CRITICAL
    coord.process_signal(sig(symbol="MSFT"))  # duplicate
    with pytest.raises(UnknownAssetError):
        coord.process_signal(sig(symbol="BTC"))
    st = coord.get_processing_stats()
    assert st["received"] == 6 and st["accepted"] == 3
    assert st["by_state"] == records_by_state(reg)
    assert st["rejections"] == {"duplicate": 1, "symbol": 1}
    assert st["conflicts"]["opposing"] == 1 and st["conflicts"]["duplicate"] == 1
    lat = st["latency_ms"]
    assert lat["count"] == 6 and 0 < lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    summ = coord.get_active_signals_summary()
    assert summ["total"] == 3 and summ["by_portfolio"] == {GROWTH: 3}
    assert summ["by_portfolio_symbol"][GROWTH] == {
        "MSFT": {"long": 2, "short": 0},
        "AMD": {"long": 0, "short": 1},
    }
    assert sum(summ["by_priority"].values()) == 3
    frame = coord.active_signals_frame()
    assert list(frame.index) == [s["id"] for s in summ["signals"]]
    assert set(frame["symbol"]) == {"MSFT", "AMD"}


# -- restart ----------------------------------------------------------------------------------
def test_restart_mid_stream_loses_nothing(tmp_path):
    path = str(tmp_path / "coord.sqlite")
    reg = setup_demo(path)
    coord = StrategyCoordinator(reg.as_user("alice"))
    coord.as_user("bob").set_resolution_strategy(R.BEST_RISK_REWARD, GROWTH)
    rng = np.random.default_rng(7)
    syms = ["AAPL", "MSFT", "AMD", "HD", "UNH", "KO"]
    for k in range(60):
        coord.process_signal(
            sig(
                symbol=syms[rng.integers(6)],
                side=["long", "short"][rng.integers(2)],
                strategy=["alpha", "beta", "gamma"][rng.integers(3)],
                portfolio=[GROWTH, INCOME][rng.integers(2)],
                confidence=float(rng.uniform(0.1, 1)),
                rr=float(rng.uniform(0.5, 4)),
                note=k,
            )
        )
        if k % 10 == 9:
            first = asyncio.run(coord.get_next_signal(timeout=0))
            if k % 20 == 19 and first is not None:
                coord.mark_signal_executed(first.id, {"k": k})
    live = [s.to_record() for s in coord.live_signals()]
    order = [s.id for s in coord.queued_signals()]
    stats = coord.get_processing_stats()
    assert len(order) > 3 and stats["dispatched"] > 0
    reg.store.close()

    reg2 = open_demo(path)
    coord2 = StrategyCoordinator(reg2.as_user("alice"))
    assert [s.to_record() for s in coord2.live_signals()] == live
    assert coord2.get_processing_stats() == stats
    assert stats["by_state"] == records_by_state(reg2)
    assert coord2.resolution_strategy(GROWTH) is R.BEST_RISK_REWARD
    assert [s.id for s in drain(coord2)] == order
    nxt = coord2.process_signal(sig(symbol="PG"))
    assert int(nxt.id.split("-")[1]) == stats["received"] + 1
    assert coord2.get_processing_stats()["received"] == stats["received"] + 1
    reg2.store.close()


def test_handlers_see_the_coordinator_state_their_event_announces(reg, coord):
    # a view refreshing on an event must read the state after the change, not before
    seen: list[tuple[str, set[str], int, int]] = []

    def handler(event):
        stats = coord.get_processing_stats()
        live = {s.id for s in coord.live_signals()}
        seen.append((event.topic, live, stats["received"], stats["by_state"].get("executed", 0)))

    reg.bus.subscribe("signal.*", handler)
    first = coord.process_signal(sig(confidence=0.9))
    topic, live, received, _ = seen[-1]
    assert first.id in live and received == 1
    bad = sig(strategy="alpha", symbol="MSFT", side="long")
    bad["stop"] = bad["entry"] + 1.0  # a long stop above entry: rejected
    with pytest.raises(ValidationError):
        coord.process_signal(bad)
    assert seen[-1][0] == "signal.rejected" and seen[-1][2] == 2
    [dispatched] = drain(coord)
    assert seen[-1][0] == "signal.dispatched" and dispatched.id in seen[-1][1]
    coord.mark_signal_executed(first.id, {"filled": 10})
    topic, live, _, executed = seen[-1]
    assert topic == "signal.executed" and first.id not in live and executed == 1
