"""ExecutionView without a browser: it shows what the engine stored; its buttons call the engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pn = pytest.importorskip("panel")

from pmkit.demo import open_demo  # noqa: E402
from pmkit.execution import (  # noqa: E402
    ExecutionEngine,
    PaperBroker,
    plan_of,
    portfolio_progress,
    progress,
    read_parents,
    schedule_frame,
    simulate_session,
)
from pmkit_widgets.execution_view import (  # noqa: E402
    EMPTY_TEXT,
    PARENT_COLUMNS,
    ExecutionView,
)

GROWTH = "client_a/growth"


@pytest.fixture
def working():
    """Two parents of client_a/growth, ten intervals into a 26-interval session."""
    reg = open_demo()
    alice = reg.as_user("alice")
    engine = ExecutionEngine(alice, PaperBroker(alice))
    idx = reg.market.indexes["time"]
    sess = simulate_session(reg.market, idx[-3], assets=["MSFT", "AAPL"], intervals=26, seed=5)
    for asset, units, alg in (("MSFT", -520.0, "twap"), ("AAPL", -260.0, "vwap")):
        engine.place(GROWTH, asset, units, algorithm=alg, id=f"x-{asset}",
                     reference_price=float(sess.prices[sess.assets.index(asset), 0]))
    engine.run(sess, until=10)
    return reg, engine, sess


def test_the_view_shows_the_engines_progress_and_the_selected_schedule(working):
    reg, engine, _ = working
    view = ExecutionView(reg.as_user("alice"), engine=engine)
    parents = read_parents(reg.as_user("alice"), with_fills=True)
    want = progress(parents).reset_index().loc[:, list(PARENT_COLUMNS)]
    got = view.parents_table
    assert list(got["parent"]) == list(want["parent"])
    np.testing.assert_allclose(got["filled_pct"], want["filled_pct"].astype(float))
    np.testing.assert_allclose(got["slippage_bps"], want["slippage_bps"].astype(float))
    book = view.portfolios_table.set_index("portfolio")
    assert book.loc[GROWTH, "notional"] == pytest.approx(
        portfolio_progress(parents).loc[GROWTH, "notional"])
    view.select("x-MSFT")
    frame = schedule_frame(next(p for p in parents if p.id == "x-MSFT"))
    pd.testing.assert_series_equal(view.chart_data["filled"], frame["filled"],
                                   check_names=False, check_index_type=False)
    pd.testing.assert_series_equal(view.chart_data["target"], frame["target"],
                                   check_names=False, check_index_type=False)


def test_pause_resume_and_cancel_call_the_engine(working):
    reg, engine, sess = working
    view = ExecutionView(reg.as_user("alice"), engine=engine)
    view.select("x-MSFT")
    assert not view._pause.disabled and view._resume.disabled and not view._cancel.disabled
    view._pause.clicks += 1
    assert view.error == "" and plan_of(engine._load("x-MSFT")).state == "paused"
    assert view._pause.disabled and not view._resume.disabled  # the event refreshed the view
    view._resume.clicks += 1
    assert plan_of(engine._load("x-MSFT")).state == "working"
    view._cancel.clicks += 1
    parent = engine._load("x-MSFT")
    assert str(parent.status) == "cancelled"
    assert not any(c.is_open for c in engine.children("x-MSFT"))
    assert view._cancel.disabled and view._pause.disabled
    # the other parent works on, and the view follows the session's events
    before = view.parents_table.set_index("parent").loc["x-AAPL", "filled_pct"]
    engine.run(sess)
    after = view.parents_table.set_index("parent").loc["x-AAPL", "filled_pct"]
    assert after == pytest.approx(100.0) and after > before


def test_a_viewer_sees_but_cannot_act_and_another_desk_sees_nothing(working):
    reg, _, _ = working
    carol = reg.as_user("carol")  # firm viewer
    view = ExecutionView(carol, engine=ExecutionEngine(carol, PaperBroker(carol)))
    view.select("x-MSFT")
    assert set(view.parents_table["parent"]) == {"x-MSFT", "x-AAPL"}
    assert view._pause.disabled and view._cancel.disabled
    dump = reg.store.dump()
    view._cancel.clicks += 1  # a click the browser sent anyway: nothing happens
    assert reg.store.dump() == dump
    dave = reg.as_user("dave")
    other = ExecutionView(dave, engine=ExecutionEngine(dave, PaperBroker(dave)))
    assert other.parents_table.empty and other._empty.visible
    assert other._empty.object == EMPTY_TEXT


def test_the_view_shows_the_transaction_costs_of_the_parents(working):
    from pmkit.execution import TCAReport

    reg, engine, sess = working
    engine.run(sess)  # to the close: both parents done
    view = ExecutionView(reg.as_user("alice"), engine=engine)
    report = TCAReport(read_parents(reg.as_user("alice"), with_fills=True)).table()
    shown = view.tca_table.set_index("parent")
    for column in ("delay", "timing", "impact", "opportunity", "fees", "total", "vs_vwap_bps"):
        np.testing.assert_allclose(shown[column], report.loc[shown.index, column], rtol=1e-12)
    # the chart stacks the five parts in bps of arrival notional: they add up to the total
    bars = view.tca_chart_data
    np.testing.assert_allclose(bars.sum(axis=1), report.loc[bars.index, "total_bps"],
                               rtol=1e-9)
