"""Invariants of the coordinator after any sequence of submissions, dequeues and executions."""

from __future__ import annotations

import asyncio
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_coordinator import GROWTH, INCOME, fresh_demo, records_by_state, sig

from pmkit.coordinator import ResolutionStrategy, StrategyCoordinator
from pmkit.errors import ValidationError

SYMBOLS = ["MSFT", "AMD", "PFE", "AAPL"]  # AAPL is held long by growth

submit = st.tuples(
    st.just("submit"),
    st.sampled_from([GROWTH, INCOME]),
    st.sampled_from(SYMBOLS),
    st.sampled_from(["long", "short"]),
    st.sampled_from(["alpha", "beta", "gamma"]),
    st.sampled_from([0.0, 0.2, 0.5, 0.75, 0.9, 1.0]),
    st.sampled_from([0.5, 1.0, 2.0, 3.0]),
)
action = st.one_of(
    submit,
    submit,
    st.tuples(st.just("next")),
    st.tuples(st.just("execute"), st.integers(0, 20)),
    st.tuples(st.just("bad"), st.sampled_from(["confidence", "symbol", "stop"])),
)


def run(coord, actions):
    for a in actions:
        if a[0] == "submit":
            _, pid, sym, side, strat, conf, rr = a
            coord.process_signal(
                sig(symbol=sym, side=side, strategy=strat, portfolio=pid, confidence=conf, rr=rr)
            )
        elif a[0] == "next":
            asyncio.run(coord.get_next_signal(timeout=0))
        elif a[0] == "execute":
            live = coord.live_signals()
            if live:
                coord.mark_signal_executed(live[a[1] % len(live)].id, {"n": a[1]})
        else:
            bad = {
                "confidence": {"confidence": 2.0},
                "symbol": {"symbol": "NOPE"},
                "stop": {"stop": 1000.0},
            }[a[1]]
            try:
                coord.process_signal({**sig(), **bad})
            except ValidationError:
                pass
            else:
                raise AssertionError("invalid signal accepted")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actions=st.lists(action, min_size=1, max_size=30),
    rule=st.sampled_from(list(ResolutionStrategy)),
    group=st.booleans(),
    policy=st.sampled_from(["flag", "reject"]),
)
def test_coordinator_invariants(actions, rule, group, policy):
    reg = fresh_demo()
    coord = StrategyCoordinator(reg.as_user("alice"), group_conflicts=group, position_policy=policy)
    coord.as_user("system").set_resolution_strategy(rule)
    run(coord, actions)

    recs = {r.id: r for r in reg.store.list("signal")}
    live = [r for r in recs.values() if r.status in ("queued", "dispatched")]
    # 1. never both sides live on one symbol in one portfolio (nor in sibling
    #    portfolios when group conflicts are on); never a live duplicate
    sides: dict[tuple[str, str], set[str]] = {}
    for r in live:
        scope = "client_a" if group else r.data["portfolio"]
        sides.setdefault((scope, r.data["symbol"]), set()).add(r.data["side"])
    assert all(len(v) == 1 for v in sides.values()), sides
    keys = [
        (r.data["strategy"], r.data["portfolio"], r.data["symbol"], r.data["side"]) for r in live
    ]
    assert len(keys) == len(set(keys))
    # 2. every record is in exactly one state, and the stats count the records
    stats = coord.get_processing_stats()
    by_state = records_by_state(reg)
    assert sum(by_state.values()) == len(recs) == stats["received"]
    assert stats["by_state"] == by_state
    assert stats["accepted"] == sum(bool(r.data.get("accepted")) for r in recs.values())
    assert stats["rejections"] == dict(
        sorted(Counter(r.data["reason"] for r in recs.values() if r.status == "rejected").items())
    )
    if policy == "flag":
        assert "position" not in stats["rejections"]
    # 3. the queue holds exactly the queued records, in (priority, receipt) order
    queued = sorted(
        (r for r in recs.values() if r.status == "queued"),
        key=lambda r: (
            -["LOW", "MEDIUM", "HIGH", "CRITICAL"].index(r.data["priority"]),
            r.data["seq"],
        ),
    )
    assert [s.id for s in coord.queued_signals()] == [r.id for r in queued]
    # 4. a superseded signal names a winner that was accepted at some point
    for r in recs.values():
        if r.status == "superseded":
            assert recs[r.data["superseded_by"]].data["accepted"]
    # 5. a restart sees the same thing
    again = StrategyCoordinator(reg.as_user("alice"), group_conflicts=group)
    assert again.get_processing_stats() == stats
    assert [s.id for s in again.live_signals()] == [s.id for s in coord.live_signals()]
