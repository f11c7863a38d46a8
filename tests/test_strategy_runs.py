"""Live signal strategies and strategy runs: pure rules, the run lifecycle, who may act.

The rules are checked against independent plain-Python implementations of
their documented definitions on synthetic series; the runner is driven by a
deterministic fake stream (the `LiveStream` interface: ``on_update`` and
``last_prices``) and by a real local feed.
"""

from __future__ import annotations

import itertools
import math
import statistics
import threading
import time

import numpy as np
import pandas as pd
import pytest
from hostile import FUZZ, NASTY_TEXT
from hypothesis import given
from hypothesis import strategies as st

from pmkit.coordinator import RunState, StrategyCoordinator, StrategyRunner
from pmkit.coordinator.runner import parse_assignments
from pmkit.demo import open_demo
from pmkit.errors import (
    AlreadyExistsError,
    NotFoundError,
    PermissionDenied,
    PmkitError,
    TransitionError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.strategies import LIVE_STRATEGIES, RateLimit, StrategyManager, live_strategy
from pmkit.strategies.live import breakout, ma_crossover, mean_reversion

GROWTH = "client_a/growth"
BALANCED = "client_b/balanced"
EMPTY = pd.Series([], dtype=float, index=pd.DatetimeIndex([]))
#: small windows so that a short synthetic series crosses; no rate limit in the way
FAST = {"fast": 2, "slow": 4, "min_interval": 0, "max_per_minute": 600}


# -- independent references of the documented rules ------------------------------------------
def mean(xs):
    return sum(xs) / len(xs)


def ref_crossings(prices, fast, slow):
    """[(index, side)] where the fast mean crosses the slow mean (the documented rule)."""
    out = []
    for t in range(slow, len(prices)):
        d_now = mean(prices[t - fast + 1: t + 1]) - mean(prices[t - slow + 1: t + 1])
        d_prev = mean(prices[t - fast: t]) - mean(prices[t - slow: t])
        if d_prev <= 0 < d_now:
            out.append((t, "long"))
        elif d_prev >= 0 > d_now:
            out.append((t, "short"))
    return out


def ref_ma_idea(prices, t, side, fast, slow, stop_sigmas=2.0, reward=2.0):
    window = prices[t - slow: t + 1]
    returns = [b / a - 1 for a, b in itertools.pairwise(window)]
    sigma = statistics.stdev(returns)
    entry = prices[t]
    risk = stop_sigmas * sigma * entry
    sign = 1 if side == "long" else -1
    gap = abs(mean(prices[t - fast + 1: t + 1]) - mean(prices[t - slow + 1: t + 1]))
    return {"side": side, "entry": entry, "stop": entry - sign * risk,
            "target": entry + sign * reward * risk,
            "confidence": 0.5 + 0.5 * min(1.0, gap / (sigma * entry))}


def ideas(rule, prices, **params):
    """Index -> idea for every prefix of ``prices``."""
    return {t: rule(prices[: t + 1], **params) for t in range(len(prices))}


def fired(all_ideas):
    return {t: i for t, i in all_ideas.items() if i is not None}


# -- the rules ---------------------------------------------------------------------------------
DOWN_THEN_UP = [100.0, 99.0, 98.5, 97.0, 96.0, 95.5, 95.0, 96.5, 98.0, 99.0, 100.5]


@pytest.mark.parametrize("flip", [False, True])
def test_a_crossover_series_yields_exactly_the_expected_signal(flip):
    prices = [200.0 - p for p in DOWN_THEN_UP] if flip else DOWN_THEN_UP
    expected = ref_crossings(prices, 2, 4)
    side = "short" if flip else "long"
    assert [s for _, s in expected] == [side]  # the series crosses once, in that direction
    got = fired(ideas(ma_crossover, np.array(prices), fast=2, slow=4))
    (t, _), = expected
    assert list(got) == [t]  # fires at the crossing only, not while the trend goes on
    ref = ref_ma_idea(prices, t, side, 2, 4)
    idea = got[t]
    assert idea.side == side
    for key in ("entry", "stop", "target", "confidence"):
        assert getattr(idea, key) == pytest.approx(ref[key], rel=1e-12), key
    lo, hi = sorted((idea.stop, idea.target))
    assert lo < idea.entry < hi and 0.5 <= idea.confidence <= 1.0
    assert abs(idea.target - idea.entry) == pytest.approx(2.0 * abs(idea.entry - idea.stop))


def test_the_rules_agree_with_the_reference_on_a_random_walk():
    rng = np.random.default_rng(7)
    prices = list(100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 400))))
    got = fired(ideas(ma_crossover, np.array(prices), fast=3, slow=9))
    want = ref_crossings(prices, 3, 9)
    assert len(want) > 10
    assert [(t, i.side) for t, i in got.items()] == want
    for t, side in want:
        assert got[t].entry == prices[t]
        assert got[t].stop == pytest.approx(ref_ma_idea(prices, t, side, 3, 9)["stop"])


def test_breakout_fires_on_the_fresh_break_with_the_channel_middle_as_stop():
    channel = [10.0, 10.4, 10.1, 10.3, 10.2, 10.35]
    prices = [*channel, 10.6, 10.8, 10.9]  # breaks above 10.4 at index 6, then keeps going
    got = fired(ideas(breakout, np.array(prices), window=5, reward=3.0))
    assert list(got) == [6]
    hi, lo = max(prices[1:6]), min(prices[1:6])
    idea = got[6]
    assert (idea.side, idea.entry, idea.stop) == ("long", 10.6, (hi + lo) / 2)
    assert idea.target == pytest.approx(10.6 + 3.0 * (10.6 - (hi + lo) / 2))
    assert idea.confidence == pytest.approx(0.5 + 0.5 * min(1.0, (10.6 - hi) / (hi - lo)))
    down = [*channel, 9.9]
    (short,) = fired(ideas(breakout, np.array(down), window=5)).values()
    assert short.side == "short" and short.stop == (hi + lo) / 2 > short.entry > short.target


def test_mean_reversion_targets_the_window_mean():
    base = [100.0, 101.0, 99.0, 100.5, 99.5, 100.0, 100.8, 99.2]
    prices = [*base, 96.0, 95.0]  # a sharp drop at index 8
    got = fired(ideas(mean_reversion, np.array(prices), window=6, threshold=2.0,
                      stop_sigmas=1.5))
    assert list(got) == [8]
    ref = prices[2:8]
    m, s = statistics.fmean(ref), statistics.stdev(ref)
    z = (96.0 - m) / s
    idea = got[8]
    assert z <= -2.0 and idea.side == "long"
    assert idea.target == pytest.approx(m) and idea.stop == pytest.approx(96.0 - 1.5 * s)
    assert idea.confidence == pytest.approx(min(1.0, abs(z) / 4.0))


def test_too_short_or_flat_histories_give_nothing():
    assert ma_crossover(np.array([1.0, 2.0, 3.0]), fast=2, slow=4) is None
    assert breakout(np.full(30, 5.0)) is None
    assert mean_reversion(np.full(30, 5.0)) is None
    with pytest.raises(ValidationError, match="prices"):
        ma_crossover(np.array([1.0, np.nan, 2.0, 3.0, 4.0]), fast=2, slow=4)


def test_parameters_are_checked_and_named():
    spec = live_strategy("ma_crossover")
    assert spec.parameters({"fast": "3", "slow": 12}) == {
        **spec.defaults(), "fast": 3, "slow": 12}
    for given_, field in [({"fast": 0}, "fast"), ({"fast": "x"}, "fast"),
                          ({"fast": True}, "fast"), ({"slow": 2.5}, "slow"),
                          ({"reward": math.nan}, "reward"), ({"fast": 9, "slow": 9}, "fast"),
                          ({"nope": 1}, "params"), ({"min_interval": -1}, "min_interval")]:
        with pytest.raises(ValidationError) as err:
            spec.parameters(given_)
        assert err.value.field == field, given_
    with pytest.raises(NotFoundError, match="live strategy"):
        live_strategy("momentum")
    assert set(LIVE_STRATEGIES) >= {"ma_crossover", "breakout", "mean_reversion"}


def test_parse_assignments():
    assert parse_assignments(["fast=5", "slow= 20"]) == {"fast": "5", "slow": " 20"}
    for bad in (["fast"], ["=5"], ["fast=1", "fast=2"], ["a\x1b=1"]):
        with pytest.raises(ValidationError):
            parse_assignments(bad)


def test_the_rate_limit_per_symbol_and_per_minute():
    limit = RateLimit(min_interval=10.0, max_per_minute=3)
    assert limit.allow("A", 0.0) and not limit.allow("A", 9.99) and limit.allow("A", 10.0)
    assert limit.allow("B", 10.5)
    assert not limit.allow("C", 11.0)  # three in the last minute already
    assert limit.allow("C", 60.01)  # the first one left the window


# -- the runner on a deterministic stream ------------------------------------------------------
class FakeStream:
    """The `LiveStream` interface, driven by the test: each push is one update."""

    def __init__(self) -> None:
        self.callbacks = []
        self.prices: dict[str, float] = {}

    def on_update(self, callback):
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def last_prices(self):
        return dict(self.prices)

    def push(self, runner, **prices):
        self.prices.update(prices)
        for cb in list(self.callbacks):
            cb(None)
        assert runner.wait_idle(10.0)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


@pytest.fixture
def reg():
    reg = open_demo()
    for pid in (GROWTH, BALANCED):
        sm = StrategyManager(reg.as_user("bob"), pid)
        for name in ("ma_crossover", "breakout"):
            sm.register_strategy(name, EMPTY, 0.1)
    return reg


@pytest.fixture
def setup(reg):
    stream = FakeStream()
    runner = StrategyRunner(StrategyCoordinator(reg), stream, clock=Clock())
    yield reg, stream, runner
    runner.close()


def entry_of(reg, symbol):
    return float(reg.market["close"].isel(time=-1).sel(asset=symbol))


def series(reg, symbol, shape):
    return [entry_of(reg, symbol) * x / 100.0 for x in shape]


def run_records(reg, run_id):
    """Signal records of a run: its id is the signal's metadata (the input, when refused)."""
    return [r.data for r in reg.view().records("signal")
            if (r.data.get("metadata") or r.data.get("input") or {}).get("run") == run_id]


def test_lifecycle_start_signals_pause_resume_stop(setup):
    reg, stream, runner = setup
    alice = runner.as_user("alice")
    events = []
    sub = reg.as_user("alice").subscribe("strategy_run.*", events.append)
    run = alice.start("ma_crossover", GROWTH, FAST, symbols=["JPM"])
    assert (run.state, run.started_by, run.symbols, run.live) == ("running", "alice",
                                                                   ("JPM",), True)
    assert run.params == {**live_strategy("ma_crossover").defaults(), **FAST}

    prices = series(reg, "JPM", DOWN_THEN_UP)
    for p in prices:
        stream.push(runner, JPM=p)
    (t, side), = ref_crossings(prices, 2, 4)
    queued = alice.coordinator.queued_signals()
    assert len(queued) == 1
    sig = queued[0]
    ref = ref_ma_idea(prices, t, side, 2, 4)
    assert (sig.symbol, str(sig.side), sig.strategy, sig.portfolio) == ("JPM", side,
                                                                         "ma_crossover", GROWTH)
    assert sig.entry == pytest.approx(ref["entry"]) and sig.stop == pytest.approx(ref["stop"])
    assert sig.metadata["run"] == run.id and sig.size > 0
    now = alice.run(run.id)
    assert (now.observations, now.signals, now.queued, now.last_signal) == (
        len(prices), 1, 1, sig.id)

    # paused: prices are still recorded, nothing is submitted
    assert alice.pause(run.id).state == RunState.PAUSED
    before = reg.store.dump()
    back_down = series(reg, "JPM", [99.0, 97.5, 96.0, 95.0])
    for p in back_down:
        stream.push(runner, JPM=p)
    assert ref_crossings(prices + back_down, 2, 4)[-1][0] >= len(prices)  # it did cross
    assert reg.store.dump() == before
    assert alice.run(run.id).observations == len(prices) + len(back_down)

    # resumed: the next crossing is submitted
    alice.resume(run.id)
    up = series(reg, "JPM", [97.0, 99.0, 100.0])
    for p in up:
        stream.push(runner, JPM=p)
    every = prices + back_down + up
    crossings = [c for c in ref_crossings(every, 2, 4) if c[0] >= len(prices) + len(back_down)]
    assert len(crossings) == 1
    assert len(run_records(reg, run.id)) == 2

    stopped = alice.stop(run.id)
    assert stopped.state == RunState.STOPPED and not stopped.live
    before = reg.store.dump()
    for p in series(reg, "JPM", [95.0, 99.0, 94.0, 101.0, 93.0]):
        stream.push(runner, JPM=p)
    assert reg.store.dump() == before
    with pytest.raises(TransitionError, match="'stopped' is final"):
        alice.resume(run.id)
    assert reg.store.dump() == before

    trail = [(a.actor, a.action, a.before, a.after) for a in reg.store.audit(target=run.id)]
    assert [t[:2] for t in trail] == [("alice", f"strategy_run.{a}")
                                      for a in ("start", "pause", "resume", "stop")]
    assert trail[0][2] is None and trail[0][3]["state"] == "running"
    assert [(t[2], t[3]) for t in trail[1:]] == [
        ({"state": "running"}, {"state": "paused"}),
        ({"state": "paused"}, {"state": "running"}),
        ({"state": "running"}, {"state": "stopped"})]
    assert [e.topic for e in events] == [f"strategy_run.{s}" for s in
                                         ("started", "paused", "resumed", "stopped")]
    assert {e.portfolio for e in events} == {GROWTH}
    sub.cancel()


def test_a_burst_of_ticks_is_rate_limited(setup):
    reg, stream, runner = setup
    alice = runner.as_user("alice")
    run = alice.start("ma_crossover", GROWTH, {"fast": 2, "slow": 4, "min_interval": 1000,
                                                "max_per_minute": 600}, symbols=["JPM"])
    zigzag = series(reg, "JPM", [100, 99, 98, 97, 99, 101, 99, 97, 99, 101, 99, 97, 99, 101])
    for p in zigzag:
        stream.push(runner, JPM=p)
    crossings = ref_crossings(zigzag, 2, 4)
    assert len(crossings) >= 3
    now = alice.run(run.id)
    # the clock advances 1 s per update: min_interval=1000 s lets only the first through
    assert (now.signals, now.throttled) == (1, len(crossings) - 1)
    assert len(run_records(reg, run.id)) == 1


def test_what_the_coordinator_refuses_is_counted_and_the_run_goes_on(setup):
    reg, stream, runner = setup
    alice = runner.as_user("alice")
    run = alice.start("ma_crossover", GROWTH, FAST, symbols=["JPM"])
    # a manager takes the strategy's capital away while it runs: the coordinator refuses
    StrategyManager(reg.as_user("bob"), GROWTH).update_strategy_status("ma_crossover", False)
    for p in series(reg, "JPM", DOWN_THEN_UP):
        stream.push(runner, JPM=p)
    now = alice.run(run.id)
    assert (now.signals, now.queued, now.refused) == (1, 0, 1)
    assert now.last_error.startswith("ValidationError") and "inactive" in now.last_error
    assert now.state == "running" and alice.coordinator.queued_signals() == []
    (rejected,) = run_records(reg, run.id)  # the coordinator recorded the refusal
    assert rejected["status"] == "rejected" and rejected["reason"] == "strategy"
    manager = StrategyManager(reg.as_user("bob"), GROWTH)
    manager.update_strategy_status("ma_crossover", True)
    manager.set_allocation({"ma_crossover": 0.1})
    for p in series(reg, "JPM", [99.0, 97.5, 96.0, 95.0, 97.0, 99.0, 100.0]):
        stream.push(runner, JPM=p)
    assert alice.run(run.id).queued >= 1  # it went on


def test_bad_prices_are_not_observations(setup):
    _reg, _stream, runner = setup
    run = runner.as_user("alice").start("ma_crossover", GROWTH, FAST, symbols=["JPM", "KO"])
    for bad in (math.nan, math.inf, -1.0, 0.0, "12", None, True):
        runner.on_prices({"JPM": bad, "KO": bad})
    runner.on_prices({"JPM": 10.0, "KO": 20.0})
    runner.on_prices({"JPM": 10.0, "KO": 20.0})  # unchanged: not news
    assert runner.run(run.id).observations == 2


# -- who may act ------------------------------------------------------------------------------
def test_a_viewer_is_refused_and_nothing_changes(setup):
    reg, _stream, runner = setup
    run = runner.as_user("alice").start("ma_crossover", GROWTH, FAST, symbols=["JPM"])
    carol = runner.as_user("carol")  # viewer on the firm
    assert [r.id for r in carol.runs()] == [run.id]  # she sees it
    assert not carol.may_act(GROWTH) and runner.as_user("alice").may_act(GROWTH)
    before = reg.store.dump()
    with pytest.raises(PermissionDenied, match=r"carol.*signal.submit.*trader"):
        carol.start("breakout", GROWTH, symbols=["JPM"])
    for action in ("pause", "stop"):
        with pytest.raises(PermissionDenied):
            getattr(carol, action)(run.id)
    assert reg.store.dump() == before
    assert runner.run(run.id).state == "running"


def test_another_desk_can_neither_see_nor_stop_a_run(setup):
    reg, _stream, runner = setup
    run = runner.as_user("alice").start("ma_crossover", GROWTH, FAST, symbols=["JPM"])
    dave = runner.as_user("dave")  # owner of client_b only
    seen = []
    sub = reg.as_user("dave").subscribe("strategy_run.*", seen.append)
    mine = dave.start("ma_crossover", BALANCED, FAST, symbols=["KO"])
    assert [r.id for r in dave.runs()] == [mine.id]
    assert [r.id for r in runner.as_user("alice").runs()] == [run.id]
    before = reg.store.dump()
    for call in (dave.run, dave.pause, dave.stop, dave.resume):
        with pytest.raises(NotFoundError, match=f"strategy run '{run.id}' does not exist"):
            call(run.id)
    assert reg.store.dump() == before
    runner.as_user("alice").pause(run.id)
    assert [e.payload["run"] for e in seen] == [mine.id]  # alice's pause never reached him
    assert reg.as_user("dave").view().audit(target=run.id) == []
    # a manager over both desks may act on either
    assert runner.as_user("bob").stop(run.id).updated_by == "bob"
    sub.cancel()


def test_starting_needs_a_registered_strategy_and_one_live_run(setup):
    reg, _stream, runner = setup
    alice = runner.as_user("alice")
    before = reg.store.dump()
    with pytest.raises(ValidationError) as err:
        alice.start("mean_reversion", GROWTH, symbols=["JPM"])  # not registered there
    assert err.value.field == "strategy" and "register" in str(err.value)
    assert reg.store.dump() == before
    run = alice.start("ma_crossover", GROWTH, FAST, symbols=["JPM"])
    before = reg.store.dump()
    with pytest.raises(AlreadyExistsError, match=run.id):
        alice.start("ma_crossover", GROWTH, symbols=["KO"])
    with pytest.raises(TransitionError, match="allowed from 'running'"):
        alice.resume(run.id)
    assert reg.store.dump() == before
    alice.stop(run.id)
    again = alice.start("ma_crossover", GROWTH, symbols=["KO"])  # a stopped run is not live
    assert again.id != run.id and again.state == "running"
    # by default a run watches what the portfolio holds
    held = sorted(a for a, q in reg.positions(GROWTH).quantities.items() if q)
    assert alice.start("breakout", GROWTH).symbols == tuple(held)


def test_a_new_runner_reattaches_live_runs(reg):
    coord = StrategyCoordinator(reg)
    first = StrategyRunner(coord)
    running = first.as_user("alice").start("ma_crossover", GROWTH, FAST, symbols=["JPM"])
    paused = first.as_user("alice").start("breakout", GROWTH, symbols=["JPM"])
    first.as_user("alice").pause(paused.id)
    first.close()
    second = StrategyRunner(StrategyCoordinator(reg))
    assert {r.id: (r.state, r.live) for r in second.runs()} == {
        running.id: ("running", True), paused.id: ("paused", True)}
    prices = series(reg, "JPM", DOWN_THEN_UP)
    for p in prices:
        second.on_prices({"JPM": p})
    assert second.run(running.id).signals == 1 and second.run(paused.id).signals == 0
    nxt = second.as_user("dave").start("ma_crossover", BALANCED, FAST, symbols=["KO"])
    assert int(nxt.id.split("-")[1]) == 3  # ids go on from the store's



def test_the_demo_runs_start_once_per_store_and_a_stopped_one_stays_stopped():
    from pmkit.demo import DEMO_RUNS, register_demo_strategies, start_demo_runs

    reg = open_demo()
    added = register_demo_strategies(reg)
    assert register_demo_strategies(reg) == []  # a second call registers nothing
    assert {s for _, pid, _, _ in DEMO_RUNS for s in added if s.startswith(pid)}
    runner = StrategyRunner(StrategyCoordinator(reg), FakeStream())
    started = start_demo_runs(runner)
    assert [(r.strategy, r.portfolio, r.started_by, r.state) for r in started] == [
        (name, pid, user, "running") for name, pid, user, _ in DEMO_RUNS]
    assert start_demo_runs(runner) == []  # already running
    runner.as_user(started[0].started_by).stop(started[0].id)
    runner.close()
    # the app restarts: what somebody stopped is not started again behind their back
    again = StrategyRunner(StrategyCoordinator(reg), FakeStream())
    assert start_demo_runs(again) == []
    assert again.run(started[0].id).state == "stopped"
    again.close()
    # a store that is not the demo's gets nothing
    bare = open_demo()
    bare_runner = StrategyRunner(StrategyCoordinator(bare), FakeStream())
    assert start_demo_runs(bare_runner) == []  # no demo strategy is registered there
    bare_runner.close()

# -- hostile input -----------------------------------------------------------------------------
TEXT = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=30))
VALUE = st.one_of(TEXT, st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                  st.booleans(), st.none(), st.lists(st.integers(), max_size=2))


@FUZZ
@given(name=TEXT, params=st.dictionaries(TEXT, VALUE, max_size=3), portfolio=TEXT,
       symbols=st.one_of(st.none(), st.lists(TEXT, max_size=3), TEXT), run_id=TEXT)
def test_hostile_names_and_parameters_are_refused_with_nothing_written(
        name, params, portfolio, symbols, run_id):
    reg = _hostile_registry()
    runner = StrategyRunner(StrategyCoordinator(reg))
    alice = runner.as_user("alice")
    before = reg.store.dump()
    for strategy in (name, "ma_crossover"):
        try:
            run = alice.start(strategy, portfolio, params, symbols=symbols)
        except PmkitError as exc:
            if isinstance(exc, ValidationError) and not isinstance(exc, UnknownAssetError):
                assert exc.field in {"strategy", "params", "symbols", "portfolio_id",
                                     "portfolio", "name", *live_strategy(
                                         "ma_crossover").defaults()}, exc
            assert reg.store.dump() == before
        else:  # only a well-formed start on client_a goes through
            assert run.strategy == strategy == "ma_crossover"
            assert run.portfolio == GROWTH
            alice.stop(run.id)
            before = reg.store.dump()
    for action in ("pause", "resume", "stop"):
        with pytest.raises(PmkitError):
            getattr(alice, action)(run_id)
    assert reg.store.dump() == before


_HOSTILE: dict[str, object] = {}
_HOSTILE_LOCK = threading.Lock()


def _hostile_registry():
    from pmkit.registry import Registry
    from pmkit.store import SQLiteStore

    with _HOSTILE_LOCK:
        if "src" not in _HOSTILE:
            src = open_demo()
            StrategyManager(src.as_user("bob"), GROWTH).register_strategy("ma_crossover",
                                                                           EMPTY, 0.1)
            _HOSTILE["src"] = src
    src = _HOSTILE["src"]
    dst = SQLiteStore(":memory:")
    src.store._conn.backup(dst._conn)
    return Registry(dst, market=src.market)


# -- a real local feed -------------------------------------------------------------------------
def test_signals_from_a_real_local_stream_reach_the_queue_and_stop_when_paused(reg):
    from pmkit.stream.local import start_local_stream

    feed, stream = start_local_stream(reg)
    runner = StrategyRunner(StrategyCoordinator(reg), stream)
    try:
        alice = runner.as_user("alice")
        symbols = ["JNJ", "JPM", "KO", "WMT", "XOM"]  # held by other books: the stream prices them
        run = alice.start("ma_crossover", GROWTH, FAST, symbols=symbols)
        deadline = time.monotonic() + 60
        while not run_records(reg, run.id) and time.monotonic() < deadline:
            time.sleep(0.2)
        records = run_records(reg, run.id)
        assert records, f"no signal within 60 s: {alice.run(run.id)}"
        applied = stream.last_prices()
        for data in records:
            assert data["symbol"] in symbols and data["strategy"] == "ma_crossover"
            assert data["portfolio"] == GROWTH
            if data["side"] == "long":
                assert data["stop"] < data["entry"] < data["target"]
            else:
                assert data["target"] < data["entry"] < data["stop"]
            # an entry is a streamed price, within the feed's band of the symbol's price now
            assert abs(data["entry"] / applied[data["symbol"]] - 1) < 0.2
        assert alice.run(run.id).observations > 0
        alice.pause(run.id)
        n = len(run_records(reg, run.id))
        seen = alice.run(run.id).observations
        deadline = time.monotonic() + 3
        while alice.run(run.id).observations == seen and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        assert alice.run(run.id).observations > seen  # still watching
        assert len(run_records(reg, run.id)) == n  # but submitting nothing
        alice.stop(run.id)
    finally:
        runner.close()
        stream.stop()
        feed.stop_thread()
