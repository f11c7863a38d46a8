"""CoordinatorView without a browser: it shows what the coordinator says, and follows its events."""

from __future__ import annotations

import asyncio
import gc
import math
import time
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

pn = pytest.importorskip("panel")

from pmkit.coordinator import Priority, StrategyCoordinator  # noqa: E402
from pmkit.demo import open_demo  # noqa: E402
from pmkit.errors import NotFoundError, PermissionDenied  # noqa: E402
from pmkit.strategies import StrategyManager  # noqa: E402
from pmkit_widgets.coordinator_view import SIGNAL_COLUMNS, CoordinatorView  # noqa: E402

GROWTH = "client_a/growth"
BALANCED = "client_b/balanced"
#: name -> (annualized Sharpe of its return history, allocation): CRITICAL-, HIGH- and LOW-capable.
STRATS = {"alpha": (2.0, 0.3), "beta": (0.7, 0.2), "gamma": (-0.5, 0.1)}
FRAME_COLUMNS = ["portfolio", "symbol", "side", "strategy", "priority", "status", "confidence",
                 "risk_reward", "entry", "stop", "target", "size", "allocation", "seq"]
T0 = datetime(2024, 1, 2, 9, 30)


def returns_with_sharpe(sharpe: float, seed: int, n: int = 500, vol: float = 0.01) -> pd.Series:
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return pd.Series(sharpe / math.sqrt(252) * vol + vol * z,
                     index=pd.bdate_range("2019-01-01", periods=n))


@pytest.fixture
def reg():
    reg = open_demo()
    bob = reg.as_user("bob")
    for k, pid in enumerate((GROWTH, BALANCED)):
        sm = StrategyManager(bob, pid)
        for j, (name, (sharpe, alloc)) in enumerate(STRATS.items()):
            sm.register_strategy(name, returns_with_sharpe(sharpe, 10 * k + j), alloc)
    return reg


@pytest.fixture
def coord(reg):
    return StrategyCoordinator(reg.as_user("alice"))


def signal(reg, strategy, symbol, side, confidence, *, pid=GROWTH, minutes=0, reward=2.0):
    entry = float(reg.market["close"].isel(time=-1).sel(asset=symbol))
    sign = 1 if side == "long" else -1
    return {"strategy": strategy, "symbol": symbol, "side": side, "portfolio": pid,
            "entry": entry, "stop": entry * (1 - sign * 0.03),
            "target": entry * (1 + sign * 0.03 * reward), "confidence": confidence,
            "time": (T0 + timedelta(minutes=minutes)).isoformat()}


def eventually(check, timeout: float = 10.0) -> None:
    """Wait until ``check()`` is true (the view refreshes on a timer thread after an event)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the view did not follow the event"
        time.sleep(0.01)


def status_of(view, sid):
    rows = view.signals.set_index("id")
    return rows.loc[sid, "status"] if sid in rows.index else None


def by_priority_then_time(coord) -> pd.DataFrame:
    """The service's frame, ordered independently: priority level down, then emission time."""
    frame = coord.active_signals_frame()
    rank = frame["priority"].map(lambda name: int(Priority[name]))
    times = pd.Series({s.id: s.time for s in coord.live_signals()})
    return frame.assign(_r=rank, _t=times.reindex(frame.index)).sort_values(
        ["_r", "_t"], ascending=[False, True]).drop(columns=["_r", "_t"])


def test_rows_are_the_services_live_signals_by_priority_then_time(reg, coord):
    # Receipt order differs from both priority order and emission-time order.
    coord.process_signal(signal(reg, "gamma", "KO", "long", 0.6, minutes=5))    # LOW
    coord.process_signal(signal(reg, "beta", "PFE", "long", 0.6, minutes=9))    # HIGH, later
    coord.process_signal(signal(reg, "alpha", "XOM", "long", 0.9, minutes=7))   # CRITICAL
    coord.process_signal(signal(reg, "beta", "JNJ", "long", 0.6, minutes=1))    # HIGH, earlier
    coord.process_signal(signal(reg, "alpha", "JPM", "long", 0.5, minutes=3))   # HIGH, middle
    view = CoordinatorView(coord)
    shown = view.signals
    assert list(shown.columns) == list(SIGNAL_COLUMNS)
    expected = by_priority_then_time(coord)
    assert list(expected["priority"]) == ["CRITICAL", "HIGH", "HIGH", "HIGH", "LOW"]
    assert list(expected["symbol"][1:4]) == ["JNJ", "JPM", "PFE"]  # the oracle orders by time
    pd.testing.assert_frame_equal(shown.set_index("id")[FRAME_COLUMNS], expected,
                                  check_names=False)
    assert not shown["conflict"].any()
    assert set(shown["rule"]) == {str(coord.resolution_strategy(GROWTH))}


def test_a_conflicting_pair_is_flagged_with_its_resolution(reg, coord):
    old = coord.process_signal(signal(reg, "beta", "XOM", "long", 0.6))           # HIGH
    new = coord.process_signal(signal(reg, "alpha", "XOM", "short", 0.9, minutes=1))  # CRITICAL
    keep = coord.process_signal(signal(reg, "alpha", "PFE", "long", 0.9, minutes=2))
    lost = coord.process_signal(signal(reg, "gamma", "PFE", "short", 0.9, minutes=3))
    calm = coord.process_signal(signal(reg, "beta", "KO", "long", 0.6, minutes=4))
    loser = coord.signal(old.id)
    assert (str(loser.status), loser.superseded_by) == ("superseded", new.id)
    assert (str(lost.status), lost.superseded_by) == ("superseded", keep.id)

    view = CoordinatorView(coord)
    rows = view.signals.set_index("id")
    assert set(rows.index) == {new.id, keep.id, calm.id}
    assert rows.loc[new.id, "conflict"] and rows.loc[keep.id, "conflict"]
    assert not rows.loc[calm.id, "conflict"]
    assert f"opposing vs {old.id}" in rows.loc[new.id, "conflicts"]
    assert f"displaced {old.id} ({loser.reason})" in rows.loc[new.id, "resolution"]
    assert f"kept over {lost.id} ({lost.reason})" in rows.loc[keep.id, "resolution"]
    assert rows.loc[new.id, "rule"] == str(coord.resolution_strategy(GROWTH))

    closed = view.closed.set_index("id")
    assert closed.loc[old.id, ["status", "superseded_by"]].tolist() == ["superseded", new.id]
    assert closed.loc[lost.id, ["status", "superseded_by"]].tolist() == ["superseded", keep.id]

    # The highlight is on exactly the flagged rows.
    styled = view._table._get_style_data()["data"]
    flagged = {view.signals.loc[i, "id"] for i in styled}
    assert flagged == {new.id, keep.id}


def test_a_signal_against_a_held_position_is_flagged(reg, coord):
    held = reg.positions(GROWTH).quantities
    symbol = next(iter(held))
    sig = coord.process_signal(signal(reg, "beta", symbol, "short", 0.6))
    row = CoordinatorView(coord).signals.set_index("id").loc[sig.id]
    assert row["conflict"]
    assert f"position (holds {held[symbol]:g})" in row["conflicts"]


def test_stats_are_the_processing_stats(reg, coord):
    coord.process_signal(signal(reg, "beta", "XOM", "long", 0.6))
    coord.process_signal(signal(reg, "alpha", "XOM", "short", 0.9))
    coord.process_signal(signal(reg, "alpha", "XOM", "short", 0.9))  # duplicate -> rejected
    view = CoordinatorView(coord)
    expected = coord.get_processing_stats()
    assert view.stats == expected
    assert expected["rejected"] == 1 and expected["superseded"] == 1
    for key, number in view._numbers.items():
        assert number.value == expected[key]
    details = view._details.value
    assert details[details.statistic == "rejections"].set_index("key")["value"].to_dict() == {
        k: str(v) for k, v in expected["rejections"].items()}


def test_dispatch_and_execution_show_through_events(reg, coord):
    first = coord.process_signal(signal(reg, "alpha", "XOM", "long", 0.9))
    second = coord.process_signal(signal(reg, "beta", "PFE", "long", 0.6))
    view = CoordinatorView(coord, throttle=0)  # no polling: only the bus can tell it
    try:
        assert status_of(view, first.id) == "queued"

        got = asyncio.run(coord.get_next_signal(timeout=1))
        assert got.id == first.id
        eventually(lambda: status_of(view, first.id) == "dispatched")

        coord.mark_signal_executed(first.id, {"filled": got.size})
        eventually(lambda: list(view.signals["id"]) == [second.id])
        eventually(lambda: view.stats == coord.get_processing_stats())
        assert view.closed.set_index("id").loc[first.id, "status"] == "executed"
        assert view.stats["executed"] == 1

        third = coord.process_signal(signal(reg, "beta", "KO", "long", 0.6))
        eventually(lambda: status_of(view, third.id) == "queued")
    finally:
        view.close()


def test_a_burst_of_events_is_throttled_not_lost(reg, coord):
    view = CoordinatorView(coord, throttle=60_000)  # the construction refresh opened the window
    try:
        sig = coord.process_signal(signal(reg, "alpha", "XOM", "long", 0.9))
        coord.process_signal(signal(reg, "beta", "PFE", "long", 0.6))
        assert view.pending
        assert view.signals.empty  # deferred to the end of the window
        view.flush()
        assert not view.pending
        assert sig.id in set(view.signals["id"])
        assert len(view.signals) == len(coord.active_signals_frame())
    finally:
        view.close()


def test_a_view_shows_only_what_its_user_may_view(reg, coord):
    coord.process_signal(signal(reg, "alpha", "XOM", "long", 0.9))
    mine = coord.as_user("dave").process_signal(
        signal(reg, "alpha", "XOM", "long", 0.9, pid=BALANCED))
    view = CoordinatorView(coord.as_user("dave"))
    assert list(view.signals["id"]) == [mine.id]
    assert list(view.signals["id"]) == list(coord.as_user("dave").active_signals_frame().index)


def test_a_failed_refresh_is_shown_not_raised(reg, coord):
    view = CoordinatorView(coord)
    reg.store.close()
    view._safe_refresh()
    assert "StoreError" in view.error


def test_the_view_renders_to_bokeh(reg, coord):
    coord.process_signal(signal(reg, "alpha", "XOM", "long", 0.9))
    view = CoordinatorView(coord)
    model = pn.panel(view).get_root()
    classes = {c for m in model.references() for c in (getattr(m, "css_classes", None) or [])}
    assert {"pmkit-signals", "pmkit-closed-signals", "pmkit-signal-stats"} <= classes
    view.close()


def test_text_columns_stay_text_when_a_started_empty_table_fills(reg, coord):
    # Tabulator picks each column's formatter from the first dtypes it sees; an empty
    # text column must not look numeric, or the browser shows NaN for its strings.
    from bokeh.models.widgets.tables import NumberFormatter, StringFormatter

    view = CoordinatorView(coord, throttle=0)
    model = view._table.get_root()
    coord.process_signal(signal(reg, "beta", "XOM", "long", 0.6))
    coord.process_signal(signal(reg, "alpha", "XOM", "short", 0.9))
    view.flush()
    formatters = {c.field: c.formatter for c in model.columns}
    for field in ("id", "status", "conflicts", "rule", "resolution"):
        assert isinstance(formatters[field], StringFormatter), field
    assert isinstance(formatters["size"], NumberFormatter)
    # the conflict flag reads as a mark (Tabulator's lookup of the JSON value), not "true"
    assert view._table.formatters["conflict"] == {
        "type": "lookup", "params": {"true": "⚠", "false": ""}}
    assert view.signals["conflict"].tolist() == [True]  # the pair opposed: the winner is flagged
    assert view.signals["rule"].tolist() == [str(coord.resolution_strategy(GROWTH))]
    view.close()


def test_a_discarded_view_stops_listening(reg, coord):
    before = len(reg.bus._subs)
    view = CoordinatorView(coord)
    assert len(reg.bus._subs) > before
    del view
    gc.collect()
    assert len(reg.bus._subs) == before


def test_a_closed_view_stops_listening_and_cancels_its_timer(reg, coord):
    before = len(reg.bus._subs)
    view = CoordinatorView(coord, throttle=60_000)
    coord.process_signal(signal(reg, "alpha", "XOM", "long", 0.9))
    assert view.pending
    view.close()
    assert not view.pending
    assert len(reg.bus._subs) == before


# -- strategy runs: controls that know the user and the state ------------------------------------
from pmkit.coordinator import StrategyRunner  # noqa: E402

EMPTY = pd.Series([], dtype=float, index=pd.DatetimeIndex([]))


@pytest.fixture
def runner(reg):
    StrategyManager(reg.as_user("bob"), GROWTH).register_strategy("ma_crossover", EMPTY, 0.05)
    StrategyManager(reg.as_user("bob"), BALANCED).register_strategy("ma_crossover", EMPTY, 0.05)
    runner = StrategyRunner(StrategyCoordinator(reg))
    yield runner
    runner.close()


def view_as(runner, user, **kw):
    return CoordinatorView(runner.coordinator.as_user(user), runner=runner.as_user(user), **kw)


def click(button) -> None:
    button.clicks += 1  # what a browser click does on the server


def audit_actions(reg, run_id):
    return [(a.actor, a.action) for a in reg.store.audit(target=run_id)]


def test_the_empty_state_says_what_to_do_and_start_works_once(reg, runner):
    view = view_as(runner, "alice", throttle=0)
    try:
        assert view.runs.empty
        assert "No strategy runs yet" in view._runs_hint.object
        assert "Start" in view._runs_hint.object and view._signals_empty.visible
        view._strategy.value, view._portfolio.value = "ma_crossover", GROWTH
        view._params.value, view._symbols.value = "fast=3 slow=8", "JPM, KO"
        start = view._start_button
        assert not start.disabled and "alice" in start.description
        click(start)
        click(start)  # the second click of a double click
        (run,) = runner.runs()
        assert (run.strategy, run.portfolio, run.started_by, run.symbols) == (
            "ma_crossover", GROWTH, "alice", ("JPM", "KO"))
        assert run.params["fast"] == 3 and run.params["slow"] == 8
        assert audit_actions(reg, run.id) == [("alice", "strategy_run.start")]
        assert view.message == f"Started ma_crossover on {GROWTH} as alice: {run.id}."
        assert view.error == ""
        assert list(view.runs["id"]) == [run.id] and view.runs.loc[0, "state"] == "running"
        assert "No strategy runs yet" not in view._runs_hint.object
        # the form is reset, and Start is off for a strategy that runs there already
        assert (view._params.value, view._symbols.value) == ("", "")
        assert start.disabled and run.id in start.description
    finally:
        view.close()


def test_pause_resume_stop_follow_the_runs_state_and_act_once(reg, runner):
    run = runner.as_user("alice").start("ma_crossover", GROWTH, symbols=["JPM"])
    view = view_as(runner, "alice", throttle=0)
    try:
        buttons = view._run_buttons
        assert all(b.disabled and b.description == "Select a run in the table."
                   for b in buttons.values())
        view.select_run(run.id)
        assert view.selected_run == run.id
        assert not buttons["pause"].disabled and not buttons["stop"].disabled
        assert buttons["resume"].disabled and "is running" in buttons["resume"].description
        click(buttons["pause"])
        click(buttons["pause"])
        assert runner.run(run.id).state == "paused"
        assert audit_actions(reg, run.id) == [("alice", "strategy_run.start"),
                                              ("alice", "strategy_run.pause")]
        assert view.message == f"{run.id} is paused." and view.error == ""
        assert view.selected_run == run.id  # the selection survives the refresh
        assert buttons["pause"].disabled and not buttons["resume"].disabled
        click(buttons["resume"])
        click(buttons["stop"])
        assert runner.run(run.id).state == "stopped"
        assert all(b.disabled for b in buttons.values())
        assert "is stopped" in buttons["stop"].description
    finally:
        view.close()


def test_a_viewer_sees_no_enabled_control_and_the_service_still_refuses(reg, runner):
    run = runner.as_user("alice").start("ma_crossover", GROWTH, symbols=["JPM"])
    view = view_as(runner, "carol")  # viewer on the firm
    try:
        assert list(view.runs["id"]) == [run.id]  # she sees the run
        assert view._start_button.disabled
        assert "carol may not trade" in view._start_button.description
        assert "trader" in view._start_button.description
        view.select_run(run.id)
        for button in view._run_buttons.values():
            assert button.disabled and "carol may not trade" in button.description
        before = reg.store.dump()
        click(view._run_buttons["stop"])
        view._start_clicked()  # even called directly, a disabled control does nothing
        assert reg.store.dump() == before and view.message == ""
        with pytest.raises(PermissionDenied):
            runner.as_user("carol").stop(run.id)
        assert reg.store.dump() == before
    finally:
        view.close()
    carol_alone = view_as(StrategyRunner(StrategyCoordinator(reg)), "carol")
    # nothing running in a fresh runner's view? the store's runs are listed (reattached)
    assert list(carol_alone.runs["id"]) == [run.id]
    carol_alone.close()


def test_a_viewer_is_told_what_starting_needs_in_the_empty_state(reg, runner):
    view = view_as(runner, "carol")
    try:
        assert "needs the trader role" in view._runs_hint.object
        assert view._start_button.disabled
    finally:
        view.close()


def test_another_desk_does_not_see_the_run(reg, runner):
    run = runner.as_user("alice").start("ma_crossover", GROWTH, symbols=["JPM"])
    view = view_as(runner, "dave")
    try:
        assert view.runs.empty
        assert list(view._portfolio.options) == ["client_b/balanced", "client_b/factors"]
        assert not view._start_button.disabled  # he may start on his own desk
        with pytest.raises(NotFoundError):
            runner.as_user("dave").run(run.id)
    finally:
        view.close()


def test_a_refused_start_shows_the_services_error(reg, runner):
    view = view_as(runner, "alice", throttle=0)
    try:
        view._portfolio.value = GROWTH
        view._strategy.value = "breakout"  # not registered in client_a/growth
        assert view._start_button.disabled
        assert "breakout is not registered in client_a/growth" in view._start_button.description
        view._strategy.value = "ma_crossover"
        view._params.value = "fast=9 slow=4"
        before = reg.store.dump()
        click(view._start_button)
        assert view.error.startswith("ValidationError: fast=9") and view.message == ""
        assert reg.store.dump() == before and runner.runs() == []
    finally:
        view.close()


def test_signals_of_a_run_show_in_the_queue(reg, runner):
    alice = runner.as_user("alice")
    run = alice.start("ma_crossover", GROWTH, {"fast": 2, "slow": 4, "min_interval": 0},
                      symbols=["JPM"])
    view = view_as(runner, "alice", throttle=0)
    try:
        base = float(reg.market["close"].isel(time=-1).sel(asset="JPM"))
        for x in (100.0, 99.0, 98.5, 97.0, 96.0, 95.5, 95.0, 96.5, 98.0, 99.0, 100.5):
            alice.on_prices({"JPM": base * x / 100})
        view.flush()
        (sig,) = runner.coordinator.queued_signals()
        assert list(view.signals["id"]) == [sig.id] and not view._signals_empty.visible
        row = view.runs.set_index("id").loc[run.id]
        assert (row["signals"], row["queued"]) == (1, 1)
        assert row["observations"] == 11
    finally:
        view.close()


def test_the_app_tab_controls_the_processes_runner(reg):
    from pmkit_widgets.app import TABS, build_app

    coord = StrategyCoordinator(reg)
    page = build_app(reg.as_user("alice"), coordinator=coord, poll_period=None)
    tabs = page.main.objects[0]
    tabs.active = TABS.index("Signals")
    holder = tabs.objects[TABS.index("Signals")].objects[0]
    view = getattr(holder, "_pmkit_view", holder)
    assert isinstance(view, CoordinatorView) and view.runner is not None
    assert view.runner.registry.user == "alice"
    assert view.runner._sh is StrategyRunner.shared(coord)._sh  # one runner per coordinator
    assert "No live stream" in view._runs_hint.object  # built without a feed: it says so
    view.close()
    StrategyRunner.shared(coord).close()
