"""The IPython extension: %load_ext pmkit and the %pm magics return the API's own objects."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.testing.globalipapp import get_ipython

import pmkit.magics
from pmkit.demo import DEMO_CONFIG
from pmkit.registry import GroupInfo, GroupNode, PortfolioInfo


@pytest.fixture(scope="module")
def ip():
    shell = get_ipython()
    shell.run_line_magic("load_ext", "pmkit")
    shell.run_line_magic("pm", "demo")
    yield shell
    pmkit.magics.use(None)


def test_ls_is_the_registry_summary(ip):
    table = ip.run_line_magic("pm", "ls")
    reg = pmkit.magics.current()
    pd.testing.assert_frame_equal(table.frame, reg.summary())  # numbers unformatted
    assert list(table.frame.index) == sorted(DEMO_CONFIG["portfolios"])


def test_ls_filters(ip):
    assert list(ip.run_line_magic("pm", "ls --tag core --tag etf").frame.index) == [
        "client_b/factors"]
    assert list(ip.run_line_magic("pm", "ls --segment client=client_a").frame.index) == [
        "client_a/growth",
        "client_a/income",
    ]


def test_use_sets_the_active_portfolio_for_calls_without_an_id(ip):
    info = ip.run_line_magic("pm", "use client_b/factors")
    reg = pmkit.magics.current()
    assert isinstance(info, PortfolioInfo) and info == reg.portfolio("client_b/factors")
    assert reg.get_active_portfolio().id == "client_b/factors"
    assert ip.run_line_magic("pm", "show") == info


def test_show_portfolio_and_group(ip):
    reg = pmkit.magics.current()
    p = ip.run_line_magic("pm", "show client_a/income")
    g = ip.run_line_magic("pm", "show client_a")
    assert p == reg.portfolio("client_a/income")
    assert isinstance(g, GroupInfo) and g.allocation == {
        "client_a/growth": 0.7,
        "client_a/income": 0.3,
    }
    assert "Income Strategy" in p._repr_html_()


def test_groups_is_the_group_tree(ip):
    tree = ip.run_line_magic("pm", "groups").tree
    assert isinstance(tree, GroupNode)
    (firm,) = tree.children  # every demo portfolio sits under the firm group
    assert firm.id == "firm" and [c.id for c in firm.children] == ["client_a", "client_b"]
    assert "Client B Portfolios" in tree._repr_html_()


def test_errors_are_clean_usage_errors(ip):
    with pytest.raises(UsageError, match="NotFoundError: portfolio 'nope' does not exist"):
        ip.run_line_magic("pm", "use nope")
    with pytest.raises(UsageError, match="invalid choice"):
        ip.run_line_magic("pm", "frobnicate")


def test_open_a_store_file(ip, tmp_path):
    url = f"sqlite:///{tmp_path}/m.sqlite"
    reg = ip.run_line_magic("pm", f"open {url}")
    assert pmkit.magics.current() is reg
    assert ip.run_line_magic("pm", "ls").frame.empty
    assert ip.run_line_magic("pm", "whoami").startswith("system on sqlite:")
    ip.run_line_magic("pm", "demo")


def test_no_registry_is_a_usage_error():
    saved = pmkit.magics._state["registry"]
    pmkit.magics.use(None)
    try:
        with pytest.raises(UsageError, match="no registry"):
            pmkit.magics.run("ls")
    finally:
        pmkit.magics.use(saved)


def test_importing_pmkit_stays_light():
    code = (
        "import sys, pmkit, pmkit.registry, pmkit.store, pmkit.events, pmkit.magics;"
        "heavy = {'IPython', 'panel', 'cvxpy', 'hvplot', 'bokeh'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- acting users, the approval workflow, analytics -------------------------------------------
@pytest.fixture
def fresh():
    """A fresh demo registry for the magics (acting as system); the previous one restored after."""
    saved = pmkit.magics._state["registry"]
    reg = pmkit.magics.run("demo")
    yield reg
    pmkit.magics.use(saved)


def test_as_switches_the_acting_user_on_the_same_store(fresh):
    alice = pmkit.magics.run("as alice").registry
    assert pmkit.magics.current() is alice
    assert alice.user == "alice" and alice.store is fresh.store and alice.market is fresh.market
    assert pmkit.magics.run("whoami").startswith("alice on sqlite:")
    # what alice may view, not what system may
    assert list(pmkit.magics.run("ls").frame.index) == ["client_a/growth", "client_a/income"]


def test_risk_is_the_risk_overview(fresh):
    import xarray as xr

    from pmkit.analytics.overview import risk_overview

    xr.testing.assert_allclose(pmkit.magics.run("risk").dataset, risk_overview(fresh))
    one = pmkit.magics.run(
        "risk client_a/growth client_b/factors --confidence 0.99 --lookback 300").dataset
    xr.testing.assert_allclose(
        one,
        risk_overview(fresh, ["client_a/growth", "client_b/factors"], confidence=0.99,
                      lookback=300),
    )
    assert list(one.portfolio.values) == ["client_a/growth", "client_b/factors"]
    assert one.attrs["confidence"] == 0.99 and one.attrs["lookback"] == 300


def test_optimize_fits_the_method_on_the_portfolio_returns_window(fresh):
    import xarray as xr

    from pmkit.optimize import HierarchicalRiskParity, MinimumVariance
    from pmkit.rebalance.frontier import portfolio_frontier, returns_window

    mv = pmkit.magics.run("optimize client_a/growth --method min_variance --lookback 300")
    window = returns_window(fresh, "client_a/growth", lookback=300)
    xr.testing.assert_allclose(mv.weights, MinimumVariance().fit(window).weights)
    assert mv.weights.sizes["asset"] == window.sizes["asset"]
    # no id: the active portfolio; no method: minimum variance
    pmkit.magics.run("use client_b/factors")
    hrp = pmkit.magics.run("optimize --method hrp")
    expected = HierarchicalRiskParity().fit(returns_window(fresh, "client_b/factors"))
    xr.testing.assert_allclose(hrp.weights, expected.weights)
    default = pmkit.magics.run("optimize")
    xr.testing.assert_allclose(
        default.weights, MinimumVariance().fit(returns_window(fresh, "client_b/factors")).weights
    )
    frontier = pmkit.magics.run("optimize client_a/growth --method frontier --points 4")
    xr.testing.assert_allclose(
        frontier.dataset, portfolio_frontier(fresh, "client_a/growth", points=4).dataset
    )
    with pytest.raises(UsageError, match="--points goes with --method frontier"):
        pmkit.magics.run("optimize client_a/growth --points 4")
    with pytest.raises(UsageError, match="invalid choice: 'nope'"):
        pmkit.magics.run("optimize --method nope")


def test_propose_as_trader_then_approve_as_manager(fresh):
    from pmkit.rebalance import propose_rebalance
    from pmkit.rebalance.workflow import ProposalBook

    pmkit.magics.run("as alice")
    p = pmkit.magics.run("propose client_a/growth --method min_variance --note from-the-magic")
    book = ProposalBook(fresh)
    assert book.get(p.id) == p
    assert p.state == "proposed" and p.created_by == "alice" and p.scope == "client_a/growth"
    assert p.history[-1]["note"] == "from-the-magic"
    # the same trades the Python API proposes
    from pmkit.optimize import MinimumVariance

    direct = propose_rebalance(fresh.as_user("alice"), "client_a/growth",
                               optimizer=MinimumVariance())
    assert [(t.asset, t.quantity) for t in p.trades] == [
        (t.asset, t.quantity) for t in direct.trades
    ]
    before = fresh.store.dump()
    with pytest.raises(UsageError, match=r"PermissionDenied: .*needs role 'manager'"):
        pmkit.magics.run(f"approve {p.id}")  # a trader proposes, a manager approves
    assert fresh.store.dump() == before
    pmkit.magics.run("as bob")
    approved = pmkit.magics.run(f"approve {p.id} --note looks-fine")
    assert approved == book.get(p.id)
    assert approved.state == "approved" and approved.history[-1]["actor"] == "bob"
    assert approved.history[-1]["note"] == "looks-fine"
    assert pmkit.magics.run("proposals --state approved").items == [approved]
    assert pmkit.magics.run("proposals --state proposed").items == []


def test_propose_a_frontier_point_reject_and_list(fresh):
    from pmkit.rebalance.frontier import frontier_targets, portfolio_frontier
    from pmkit.rebalance.workflow import ProposalBook

    pmkit.magics.run("as bob")  # a manager may propose too, but not approve his own
    pmkit.magics.run("use client_a/income")
    p = pmkit.magics.run("propose --point 2 --points 4")
    targets = frontier_targets(portfolio_frontier(fresh, "client_a/income", points=4), 2)
    assert p.scope == "client_a/income" and p.reason == "efficient frontier point 2"
    assert p.target_weights["client_a/income"] == pytest.approx(targets, abs=1e-9)
    with pytest.raises(UsageError, match=r"ValidationError: .*point"):
        pmkit.magics.run("propose client_a/income --point 4 --points 4")
    with pytest.raises(UsageError, match="--points goes with --point"):
        pmkit.magics.run("propose --method erc --points 4")
    with pytest.raises(UsageError, match="one of the arguments --method --point is required"):
        pmkit.magics.run("propose client_a/income")
    before = fresh.store.dump()
    with pytest.raises(UsageError, match="MakerCheckerError"):
        pmkit.magics.run(f"approve {p.id}")
    assert fresh.store.dump() == before
    with pytest.raises(UsageError, match="the following arguments are required: --reason"):
        pmkit.magics.run(f"reject {p.id}")
    rejected = pmkit.magics.run(f"reject {p.id} --reason 'too concentrated'")
    assert rejected == ProposalBook(fresh).get(p.id) and rejected.state == "rejected"
    assert rejected.history[-1]["note"] == "too concentrated"
    book = ProposalBook(fresh)
    assert pmkit.magics.run("proposals").items == book.list() == [rejected]
    assert list(pmkit.magics.run("proposals --scope client_a/growth")) == []
    pmkit.magics.run("as dave")  # owner of client_b only: client_a's proposals are not his
    assert pmkit.magics.run("proposals").items == []


def test_a_viewer_cannot_propose_and_nothing_changes(fresh):
    pmkit.magics.run("as carol")
    before = fresh.store.dump()
    with pytest.raises(UsageError, match="PermissionDenied"):
        pmkit.magics.run("propose client_a/growth --method min_variance")
    with pytest.raises(UsageError, match="PermissionDenied"):
        pmkit.magics.run("propose client_a/growth --point 1 --points 3")
    assert fresh.store.dump() == before


def test_stream_from_a_local_feed_start_status_stop(fresh):
    from pmkit.stream.live import LiveStream

    stream = pmkit.magics.run("stream start")
    feed = pmkit.magics._state["feed"]
    try:
        assert isinstance(stream, LiveStream) and stream.running
        assert stream.adapter.url == feed.url and feed.port > 0
        assert stream.valuation.portfolios == [p.id for p in fresh.portfolios(status="active")]
        stream.wait_for(lambda: stream.last_update is not None, 30.0)
        assert pmkit.magics.run("stream status") is stream
        with pytest.raises(UsageError, match=r"already running: LiveStream\(ws://127.0.0.1:"):
            pmkit.magics.run("stream start")
        assert pmkit.magics.run("stream status") is stream  # the refused start changed nothing
        assert "running" in stream._repr_html_()
    finally:
        stopped = pmkit.magics.run("stream stop")
    assert stopped is stream and not stream.running and stream.error is None
    assert not feed.running  # the feed the magic started went with it
    assert stream.metrics()["ticks_applied"] > 0
    # the values shown are the holdings priced at the stream's prices (opening closes where
    # no tick arrived yet)
    prices = stream.valuation.prices()
    applied = stream.last_prices()
    assert applied and all(prices[s] == p for s, p in applied.items())
    values = stream.valuation.values()
    assert list(values.index) == stream.valuation.portfolios
    for pid, value in values.items():
        pos = fresh.positions(pid)
        expected = pos.cash + sum(q * prices[a] for a, q in pos.quantities.items())
        assert value == pytest.approx(expected, rel=1e-9)
    assert "stopped" in stream._repr_html_() and "stopped" in repr(stream)
    with pytest.raises(UsageError, match="no stream"):
        pmkit.magics.run("stream status")


def test_stream_from_a_given_url_leaves_that_feed_running(fresh):
    from pmkit.stream.server import FeedServer

    srv = FeedServer(fresh.market, port=0).start_in_thread()
    try:
        stream = pmkit.magics.run(f"stream start --url {srv.url}")
        try:
            assert pmkit.magics._state["feed"] is None and stream.adapter.url == srv.url
            stream.wait_for(lambda: stream.last_update is not None, 30.0)
        finally:
            assert pmkit.magics.run("stream stop") is stream
        assert not stream.running and srv.running
        # a local feed cannot take a port in use or out of range; nothing is left running
        with pytest.raises(UsageError, match="OSError"):
            pmkit.magics.run(f"stream start --feed-port {srv.port}")
        with pytest.raises(UsageError, match="ValidationError: port"):
            pmkit.magics.run("stream start --feed-port 70000")
        assert pmkit.magics._state["stream"] is None and pmkit.magics._state["feed"] is None
    finally:
        srv.stop_thread()


# -- tables that read well ----------------------------------------------------------------------
def money(x: float) -> str:
    """Money as people read it: separators, two decimals (Python's own format spec)."""
    return f"{x:,.2f}"


def percent(x: float) -> str:
    return f"{x * 100:,.2f} %"


def short(text: str, rows: int) -> None:
    """A text repr: a title, the table's two header lines and one line per row, no more."""
    lines = text.splitlines()
    assert len(lines) <= rows + 3, text
    assert all(len(line) < 200 for line in lines), text


def test_ls_shows_money_with_separators_never_scientific(fresh):
    from datetime import datetime

    big = "client_b/factors"
    fresh.record_cash(123_456_789.5, portfolio=big, ts=datetime(2022, 12, 1))
    table = pmkit.magics.run("ls")
    html, text = table._repr_html_(), repr(table)
    for pid in DEMO_CONFIG["portfolios"]:
        value, cash = fresh.value(pid), fresh.positions(pid).cash
        assert table.frame.loc[pid, "value"] == value  # the frame keeps the numbers
        for shown in (html, text):
            assert money(value) in shown and money(cash) in shown
    assert money(fresh.positions(big).cash).startswith("123,")
    assert "e+" not in html and "e+" not in text
    short(text, len(table.frame))
    assert text.splitlines()[0] == "4 portfolios visible to system"
    assert "<script" not in html and "Growth Strategy" in html


def test_groups_shows_consolidated_values_and_weights(fresh):
    table = pmkit.magics.run("groups")
    html, text = table._repr_html_(), repr(table)
    values = {pid: fresh.value(pid) for pid in DEMO_CONFIG["portfolios"]}
    firm = sum(values.values())
    client_a = values["client_a/growth"] + values["client_a/income"]
    for shown in (html, text):
        assert money(firm) in shown and money(client_a) in shown
        assert percent(0.7) in shown  # client_a/growth's target in client_a
        assert percent(values["client_a/growth"] / client_a) in shown  # its actual weight
    assert "e+" not in html
    assert table.frame.loc["firm", "value"] == pytest.approx(firm, rel=1e-12)
    short(text, len(table.frame))


def test_risk_shows_percent_and_stress_money(fresh):
    from pmkit.analytics.overview import risk_overview

    table = pmkit.magics.run("risk")
    html, text = table._repr_html_(), repr(table)
    ds = risk_overview(fresh)
    assert "e+" in repr(ds)  # what the raw Dataset shows
    for pid in ds.indexes["portfolio"]:
        for var in ("var", "es", "volatility"):
            x = float(ds[var].sel(portfolio=pid))
            assert percent(x) in html and percent(x) in text
        for scenario in ds.indexes["scenario"]:
            pnl = float(ds["stress_pnl"].sel(portfolio=pid, scenario=scenario))
            assert money(pnl) in html
    assert "e+" not in html and "e+" not in text
    short(text, ds.sizes["portfolio"])
    assert "95%" in text.splitlines()[0]


def test_proposals_show_reason_cost_and_times_for_people(fresh):
    from datetime import datetime

    pmkit.magics.run("as alice")
    p = pmkit.magics.run("propose client_a/growth --method min_variance --note 'trim tech'")
    table = pmkit.magics.run("proposals")
    assert table.items == [p] and list(table) == [p] and len(table) == 1
    html, text = table._repr_html_(), repr(table)
    created = datetime.fromisoformat(p.created_at).strftime("%Y-%m-%d %H:%M")
    for shown in (html, text):
        assert "trim tech" in shown and money(p.estimated_cost) in shown
        assert created in shown and p.created_at not in shown  # no "T", no microseconds
    short(text, 1)
    assert "proposed" in text and "Proposal(" not in text  # no dataclass wall


def test_as_is_one_line_naming_the_user_their_roles_and_the_store(fresh):
    info = fresh.store_info()
    where = f"{info.backend}:{info.location}"
    for user, roles in (("bob", "manager on firm"), ("alice", "trader on client_a"),
                        ("system", "administrator")):
        session = pmkit.magics.run(f"as {user}")
        assert repr(session) == f"acting as {user} ({roles}) on {where}"
        assert session.registry is pmkit.magics.current() and session.user == user
        assert session._repr_html_().count("<") == 2  # one span, nothing else
    fresh.add_user("eve")  # many grants: summarized, not listed one by one
    for pid in DEMO_CONFIG["portfolios"]:
        fresh.grant("eve", pid, "viewer")
    fresh.grant("eve", "firm", "trader")
    assert repr(pmkit.magics.run("as eve")) == (
        "acting as eve (viewer on client_a/growth, client_a/income, client_b/balanced +1 more;"
        f" trader on firm) on {where}")
    fresh.add_user("nobody")
    assert repr(pmkit.magics.run("as nobody")) == f"acting as nobody (no roles) on {where}"


def test_a_proposals_note_is_its_reason_as_typed(ip, fresh):
    from pmkit.rebalance.workflow import ProposalBook

    ip.run_line_magic("pm", "as alice")
    p = ip.run_line_magic(
        "pm", 'propose client_a/growth --method min_variance --note "after the Q3 review"')
    stored = ProposalBook(fresh).get(p.id)
    assert stored.reason == p.reason == "after the Q3 review"
    assert stored.history[-1]["note"] == "after the Q3 review"
    point = ip.run_line_magic("pm", "propose client_a/income --point 1 --points 3 "
                                    "--note 'less risk, same income'")
    assert ProposalBook(fresh).get(point.id).reason == "less risk, same income"
    plain = ip.run_line_magic("pm", "propose client_a/income --method erc")
    assert plain.reason == "manual"  # no note: the builder's default reason
    assert ip.run_line_magic("pm", "propose client_a/income --method erc --note '  '").reason \
        == "manual"
    before = fresh.store.dump()
    with pytest.raises(UsageError, match=r"ValidationError: reason=.*control character"):
        ip.run_line_magic("pm", "propose client_a/income --method erc --note 'x\x1by'")
    assert fresh.store.dump() == before



def test_records_read_in_one_line_and_their_html_is_escaped(ip, fresh):
    """``%pm use``, ``show`` and ``propose`` answer with objects whose text is one short line."""
    info = ip.run_line_magic("pm", "use client_b/factors")
    assert repr(info) == ("PortfolioInfo(id='client_b/factors', name='Factor ETFs', "
                          "status='active', currency='USD')")
    group = ip.run_line_magic("pm", "show client_a")
    assert repr(group) == ("GroupInfo(id='client_a', name='Client A Portfolios', "
                           "status='active', members=2)")
    ip.run_line_magic("pm", "as alice")
    hostile = "<img src=x onerror=alert(1)> & trim"
    p = ip.run_line_magic("pm", f"propose client_a/growth --method min_variance --note '{hostile}'")
    text = repr(p)
    assert "\n" not in text and len(text) < 250, text
    assert f"id={p.id!r}" in text and f"reason={hostile!r}" in text
    assert f"estimated_cost={money(p.estimated_cost)!r}" in text
    assert f"trades={len(p.trades)}" in text
    html = p._repr_html_()
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt; &amp; trim" in html
    first = p.trades[0]
    assert f">{money(first.notional)}</td>" in html  # money as on every screen

# -- strategy runs ------------------------------------------------------------------------------
def test_strategy_runs_from_the_magics(fresh):
    import time

    from pmkit.strategies import StrategyManager

    assert {"ma_crossover", "breakout", "mean_reversion"} <= {
        s.name for s in StrategyManager(fresh, "client_a/growth").strategies()}  # %pm demo
    pmkit.magics.run("as alice")
    with pytest.raises(UsageError, match="no live stream"):
        pmkit.magics.run("strategy start ma_crossover --portfolio client_a/growth")
    empty = pmkit.magics.run("strategies")
    assert empty.items == [] and "%pm strategy start" in repr(empty)
    pmkit.magics.run("stream start")
    try:
        with pytest.raises(UsageError, match="ValidationError: fast"):
            pmkit.magics.run("strategy start ma_crossover --portfolio client_a/growth fast=x")
        with pytest.raises(UsageError, match="NotFoundError: live strategy"):
            pmkit.magics.run("strategy start momentum --portfolio client_a/growth")
        run = pmkit.magics.run("strategy start ma_crossover --portfolio client_a/growth "
                               "--symbols JNJ,JPM,KO,WMT,XOM fast=2 slow=4 min_interval=0")
        assert (run.state, run.started_by, run.portfolio) == ("running", "alice",
                                                              "client_a/growth")
        assert run.params["fast"] == 2 and run.symbols == ("JNJ", "JPM", "KO", "WMT", "XOM")
        runner = pmkit.magics._state["runner"]
        deadline = time.monotonic() + 60
        while not runner.run(run.id).signals and time.monotonic() < deadline:
            time.sleep(0.2)
        listed = pmkit.magics.run("strategies")
        assert [r.id for r in listed] == [run.id] and listed[0].signals >= 1
        queued = [s for s in runner.coordinator.live_signals() if s.metadata["run"] == run.id]
        assert queued or listed[0].refused, "the run submitted nothing the queue kept"
        assert "running" in listed._repr_html_()
        short(repr(listed), 1)
        assert pmkit.magics.run(f"strategy pause {run.id}").state == "paused"
        before = fresh.store.dump()
        pmkit.magics.run("as carol")  # a viewer
        with pytest.raises(UsageError, match="PermissionDenied"):
            pmkit.magics.run(f"strategy resume {run.id}")
        pmkit.magics.run("as dave")  # another desk
        assert pmkit.magics.run("strategies").items == []
        with pytest.raises(UsageError, match="NotFoundError: strategy run"):
            pmkit.magics.run(f"strategy stop {run.id}")
        assert fresh.store.dump() == before
        pmkit.magics.run("as alice")
        assert pmkit.magics.run(f"strategy stop {run.id}").state == "stopped"
    finally:
        pmkit.magics.run("stream stop")
        pmkit.magics._state["runner"].close()
