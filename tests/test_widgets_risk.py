"""RiskView and FrontierView without a browser: they show what the services return."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pn = pytest.importorskip("panel")
pytest.importorskip("hvplot")
pytest.importorskip("cvxpy")

from pmkit.analytics.overview import risk_overview  # noqa: E402
from pmkit.demo import open_demo  # noqa: E402
from pmkit.rebalance import ProposalBook  # noqa: E402
from pmkit.rebalance.frontier import frontier_targets, portfolio_frontier  # noqa: E402
from pmkit_widgets.frontier_view import FrontierView  # noqa: E402
from pmkit_widgets.risk_view import RiskView  # noqa: E402

PID = "client_a/growth"
POINTS = 8


@pytest.fixture(scope="module")
def reg():
    return open_demo()


def _classes(view) -> set[str]:
    layout = view.__panel__()
    return {c for obj in layout.select() for c in (getattr(obj, "css_classes", None) or [])}


# -- RiskView -------------------------------------------------------------------------------
def test_risk_view_shows_the_risk_overview(reg):
    view = RiskView(reg)
    want = risk_overview(reg)
    assert view.error == ""
    assert view.dataset is not None
    ids = [str(p) for p in want["portfolio"].values]
    assert list(view.summary.index) == ids
    np.testing.assert_allclose(view.summary["es"], want["es"].values, rtol=1e-12)
    np.testing.assert_allclose(view.summary["var"], want["var"].values, rtol=1e-12)
    np.testing.assert_allclose(view.summary["volatility"], want["volatility"].values, rtol=1e-12)

    for pid in ids:
        view._select.value = pid  # what choosing in the selector does
        shown = view.contributions
        expected = want["contribution"].sel(portfolio=pid).to_series()
        expected = expected[expected != 0]
        assert set(shown.index) == set(expected.index)
        np.testing.assert_allclose(shown["contribution"], expected[shown.index], rtol=1e-12)
        # Euler contributions add up to the ES shown for that portfolio
        assert shown["contribution"].sum() == pytest.approx(view.summary.loc[pid, "es"],
                                                            rel=1e-9)
        assert shown["share"].sum() == pytest.approx(1.0, rel=1e-9)
        assert list(shown["contribution"]) == sorted(shown["contribution"], reverse=True)
        title = view._contrib_plot.object.title.text
        assert title.startswith(pid)  # the chart is the selected portfolio's

    stress = view.stress.set_index(["portfolio", "scenario"])
    pd.testing.assert_series_equal(stress["return"], want["stress_return"].to_series(),
                                   check_names=False)
    pd.testing.assert_series_equal(stress["pnl"], want["stress_pnl"].to_series(),
                                   check_names=False)
    expected_dd = want["drawdown"].transpose("time", "portfolio").to_pandas()
    pd.testing.assert_frame_equal(view.drawdown, expected_dd)
    assert (view.drawdown.fillna(0.0) <= 0).all().all()

    assert {"pmkit-risk", "pmkit-compute-risk", "pmkit-risk-summary", "pmkit-risk-stress",
            "pmkit-risk-portfolio", "pmkit-progress"} <= _classes(view)
    assert view.__panel__().get_root() is not None


def test_risk_view_recomputes_at_the_chosen_confidence(reg):
    view = RiskView(reg, portfolios=[PID, "client_b/balanced"])
    view._confidence.value = 0.99
    assert view.confidence == 0.99
    view._button.clicks += 1  # the Compute button (inline here: no event loop)
    want = risk_overview(reg, [PID, "client_b/balanced"], confidence=0.99)
    assert view.dataset.attrs["confidence"] == 0.99
    np.testing.assert_allclose(view.summary["es"], want["es"].values, rtol=1e-12)
    assert not view.busy
    assert not view._spinner.visible


def test_stress_rows_say_how_much_of_the_book_they_cover():
    from pmkit.display import format_percent
    from pmkit_widgets.risk_view import FULL_COVERAGE

    reg = open_demo()
    # half the positions in AAPL, half in USMV (listed 2014): Lehman replays only the AAPL half
    times = reg.market.indexes["time"]
    pid = reg.create_portfolio("client_c/mixed", 100_000.0, name="Mixed",
                               at=times[-10].to_pydatetime())
    for asset in ("AAPL", "USMV"):
        price = float(reg.market["close"].sel(asset=asset, time=times[-10]))
        reg.record_trade(asset, 25_000.0 // price, price, portfolio=pid,
                         ts=times[-10].to_pydatetime())
    view = RiskView(reg)
    ds = view.dataset
    shown = view._stress_table.value.set_index(["portfolio", "scenario"])
    assert len(shown) == ds.sizes["portfolio"] * ds.sizes["scenario"]
    kinds = set()
    for (p, scenario), row in shown.iterrows():
        r = float(ds["stress_return"].sel(portfolio=p, scenario=scenario))
        c = float(ds["stress_coverage"].sel(portfolio=p, scenario=scenario))
        pnl = float(ds["stress_pnl"].sel(portfolio=p, scenario=scenario))
        if c >= FULL_COVERAGE:
            kinds.add("full")
            assert row["return"] == format_percent(r) and row["pnl"] == pnl
        elif c == 0.0:  # nothing replayed: no figure, and no P&L of 0 either
            kinds.add("none")
            assert row["return"] == "— (no position was listed then)" and np.isnan(row["pnl"])
        else:
            kinds.add("partial")
            assert row["return"] == (f"{format_percent(r)} (covers {format_percent(c, 0)} "
                                     "of the book)")
            assert row["pnl"] == pnl
    assert kinds == {"full", "none", "partial"}  # every branch met on the demo
    # the mixed book's Lehman coverage, from its positions at the last close
    mixed = view.stress.set_index(["portfolio", "scenario"]).loc[(pid, "Lehman")]
    held = reg.positions(pid).quantities
    closes = reg.market["close"].sel(time=times[-1])
    value = {a: abs(q) * float(closes.sel(asset=a)) for a, q in held.items() if q}
    assert set(value) == {"AAPL", "USMV"}
    assert mixed["coverage"] == pytest.approx(value["AAPL"] / sum(value.values()), rel=1e-12)
    assert 0.3 < mixed["coverage"] < 0.7
    assert shown.loc[(pid, "Lehman"), "return"].endswith(
        f"(covers {format_percent(mixed['coverage'], 0)} of the book)")
    # a book wholly listed in a window is covered exactly, so it reads as a plain figure
    assert float(ds["stress_coverage"].sel(portfolio=pid, scenario="Covid crash")) == 1.0
    # the factor ETFs listed in 2014: Lehman replays none of that book
    assert shown.loc[("client_b/factors", "Lehman"), "return"].startswith("—")


def test_risk_view_says_what_to_do_when_there_is_nothing_to_show():
    reg = open_demo()
    reg.add_user("dora")  # sees nothing
    reg.add_user("erin", can_create=True)
    erin = reg.as_user("erin")
    erin.create_portfolio("erin/cash", 5_000.0, name="Cash")  # a book with no position
    before = reg.store.dump()
    for user, says in (("dora", "You see no portfolio yet"),
                       ("erin", "None of the portfolios you see holds a position")):
        view = RiskView(reg.as_user(user))
        assert view.error == "" and not view._error.visible
        assert view.empty_state.startswith(says) and view._empty.visible
        assert not view._results.visible and view.dataset is None
    assert reg.store.dump() == before
    # once erin buys something, the same button shows her figures instead
    view = RiskView(erin)
    price = float(reg.market["close"].isel(time=-1).sel(asset="KO"))
    erin.record_trade("KO", 10, price, portfolio="erin/cash")
    view._button.clicks += 1
    assert view.empty_state == "" and view._results.visible
    assert list(view.summary.index) == ["erin/cash"]


def test_risk_view_formats_through_pmkit_display(reg):
    from pmkit.display import TABULATOR_FORMATS, format_percent, format_time

    view = RiskView(reg, portfolios=[PID])
    for column in ("es", "var", "volatility"):
        assert view._summary.formatters[column].format == TABULATOR_FORMATS["percent"]
    assert view._stress_table.formatters["pnl"].format == TABULATOR_FORMATS["money"]
    assert list(view._confidence.options) == [format_percent(c, 1) for c in
                                              (0.9, 0.95, 0.975, 0.99)]
    as_of = view.dataset.attrs["as_of"]
    assert f"**{format_time(as_of)}**" in view._info.object and "T00:00" not in view._info.object
    for pane in (view._contrib_plot, view._stress_plot, view._drawdown_plot):
        assert pane.sizing_mode == "stretch_width"
        assert pane.object.sizing_mode == "stretch_width"  # the chart follows its pane
    # hover text: every number through a pmkit.display format, every field one the chart has
    import re

    from bokeh.models import HoverTool

    field = re.compile(r"@\{([^}]+)\}(?:\{([^}]+)\})?")
    for pane, numbers in ((view._contrib_plot, {"contribution", "share of ES"}),
                          (view._stress_plot, {"return", "P&L", "covers"}),
                          (view._drawdown_plot, {"drawdown"})):
        fig = pane.object
        assert fig.output_backend == "canvas"  # not WebGL: software-rendered without a GPU
        tools = list(fig.select(HoverTool))
        assert tools
        for tool in tools:
            columns = {k for r in fig.renderers for k in r.data_source.data}
            seen = set()
            for label, spec in tool.tooltips:
                ((column, fmt),) = field.findall(spec)
                assert column in columns, (label, spec)
                if label in numbers:
                    seen.add(label)
                    assert fmt in TABULATOR_FORMATS.values(), (label, spec)
                elif label == "date":
                    assert fmt == "%F" and tool.formatters[f"@{{{column}}}"] == "datetime"
                else:
                    assert fmt == "", (label, spec)  # labels: shown as they are
            assert seen == numbers


def test_each_computation_draws_each_chart_once(reg, monkeypatch):
    """The browser builds every chart sent: a chart drawn twice is a second of work twice."""
    import pmkit_widgets.risk_view as module

    drawn: list[str] = []
    for name in ("_contribution_chart", "_stress_chart", "_drawdown_chart"):
        real = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, real=real, name=name: (drawn.append(name), real(*a))[1])
    view = RiskView(reg)
    once = ["_stress_chart", "_contribution_chart", "_drawdown_chart"]
    assert drawn == once
    view._button.clicks += 1
    assert drawn == once * 2
    view._select.value = "client_b/balanced"  # another portfolio: its contributions only
    assert drawn == [*once * 2, "_contribution_chart"]
    view._button.clicks += 1  # and it stays the one shown
    assert drawn == [*once * 2, "_contribution_chart", *once]
    assert view._contrib_plot.object.title.text.startswith(
        "client_b/balanced")


def test_a_rendered_table_never_has_its_rows_replaced(reg):
    """New figures come in new tables: Panel's browser side drops rows sent to a table
    that is still being built there, which left a just-opened Risk tab without its figures."""
    view = RiskView(reg, auto_compute=False)
    root = view.__panel__().get_root()  # rendered, as in a served page
    replaced: list[str] = []

    def watch(table):
        table.param.watch(lambda e: replaced.append(e.obj.css_classes[0]) if e.obj._models
                          else None, "value")

    for table in (view._summary, view._stress_table):
        watch(table)
    shown = []
    for clicks in (1, 2):
        view._button.clicks = clicks
        tables = list(view.__panel__().select(pn.widgets.Tabulator))
        assert tables == [view._summary, view._stress_table]
        assert all(t not in shown for t in tables)  # fresh ones each time
        assert all(root.ref["id"] in t._models for t in tables)  # and in the page
        shown += tables
        for table in tables:
            watch(table)
    assert replaced == []
    np.testing.assert_allclose(view.summary["es"], risk_overview(reg)["es"].values, rtol=1e-12)
    assert len(view._stress_table.value) == view.dataset.sizes["portfolio"] * view.dataset.sizes[
        "scenario"]


def test_the_as_of_line_names_books_priced_before_the_close(reg):
    from pmkit.display import format_time
    from pmkit.registry import Registry

    plain = RiskView(reg, portfolios=[PID])._info.object
    assert "positions priced at it;" in plain and "except" not in plain
    market = reg.market.copy(deep=True)
    times = market.indexes["time"]
    close = market["close"].sel(asset="AAPL").copy()
    close.loc[{"time": times[-8:]}] = np.nan  # AAPL suspended for the last 8 days
    market["close"].loc[{"asset": "AAPL"}] = close
    stale = Registry(reg.store, user="system", market=market)
    held = {p: stale.positions(p).quantities.get("AAPL", 0) for p in (PID, "client_a/income")}
    assert held[PID] != 0 and held["client_a/income"] == 0
    info = RiskView(stale, portfolios=[PID, "client_a/income"])._info.object
    assert f"except {PID} at the close of {format_time(times[-9])}" in info
    assert "client_a/income at" not in info
    assert f"**{format_time(times[-1])}**" in info


def test_risk_view_shows_a_refusal_and_nothing_else(reg):
    alice = reg.as_user("alice")  # trader on client_a only
    before = reg.store.dump()
    view = RiskView(alice, portfolios=["client_b/balanced"])
    assert view.error.startswith("PermissionDenied: ")
    assert "client_b/balanced" in view.error
    assert view._error.visible
    assert view.dataset is None
    assert view.contributions.empty
    assert reg.store.dump() == before


# -- FrontierView ---------------------------------------------------------------------------
def test_frontier_view_shows_the_service_frontier_and_picks(reg):
    alice = reg.as_user("alice")
    view = FrontierView(alice, portfolio=PID, points=POINTS)
    assert view.error == ""
    want = portfolio_frontier(alice, PID, points=POINTS)
    got = view.frontier.dataset
    np.testing.assert_allclose(got["expected_return"], want.dataset["expected_return"],
                               rtol=1e-6)
    np.testing.assert_allclose(got["weight"], want.dataset["weight"], atol=1e-6)
    assert view.point == view.frontier.max_sharpe_point()  # the default pick

    for k in (0, 3, POINTS - 1):
        view.pick(k)
        assert view.point == k
        assert view.targets == frontier_targets(view.frontier, k)
        shown = view.weights
        nonzero = shown.loc[shown["target"] != 0, "target"]
        assert nonzero.to_dict() == frontier_targets(view.frontier, k)
        point = view.frontier.dataset.isel(point=k)
        assert view.stats == {name: float(point[name])
                              for name in ("expected_return", "volatility", "sharpe")}
        from pmkit.display import format_percent  # the one rule for percentages

        assert format_percent(float(point["volatility"])) in view._stats.object

    # the current weights shown are the ledger's, priced at the last close
    from pmkit.risk import current_weights

    now = current_weights(alice, [PID])["weight"].sel(portfolio=PID).to_series()
    shown = view.weights
    held = now[now != 0]
    np.testing.assert_allclose(shown.loc[held.index, "current"], held, rtol=1e-12)
    np.testing.assert_allclose(shown["change"], shown["target"] - shown["current"])

    # a tap on the chart's points picks the same way as the select box
    view._dots.selected.indices = [2]  # what a tap on the third point sends
    assert view.point == 2
    view._picker.value = 5
    assert view.targets == frontier_targets(view.frontier, 5)

    # a point off the frontier: the service's error, and the pick stays
    view.pick(POINTS + 3)
    assert view.error.startswith("ValidationError: ")
    assert view.point == 5

    assert {"pmkit-frontier", "pmkit-compute-frontier", "pmkit-frontier-point", "pmkit-propose",
            "pmkit-frontier-weights", "pmkit-ok", "pmkit-error"} <= _classes(view)
    assert view.__panel__().get_root() is not None


def test_a_trader_proposes_the_picked_point(reg):
    alice = reg.as_user("alice")
    view = FrontierView(alice, portfolio=PID, points=POINTS)
    view.pick(4)
    targets = frontier_targets(view.frontier, 4)
    view._propose_button.clicks += 1  # the Propose button (inline here: no event loop)
    proposal = view.proposal
    assert proposal is not None
    assert view.error == ""
    stored = ProposalBook(reg).get(proposal.id)
    assert str(getattr(stored.state, "value", stored.state)) == "proposed"
    assert stored.created_by == "alice"
    assert stored.scope == PID
    assert stored.target_weights[PID] == pytest.approx(targets, rel=1e-12)
    assert proposal.id in view.message
    assert "proposed" in view.message
    assert view._message.visible and proposal.id in view._message.object

    again = view.propose()  # the method returns what it stored
    assert again is not None and again.id != proposal.id
    assert ProposalBook(reg).get(again.id).target_weights[PID] == pytest.approx(targets)


def test_a_viewer_is_refused_and_nothing_changes(reg):
    carol = reg.as_user("carol")  # viewer on the firm: may look, may not propose
    view = FrontierView(carol, portfolio=PID, points=POINTS)
    assert view.frontier is not None and view.error == ""
    before = reg.store.dump()
    view.pick(2)
    assert view.propose() is None
    assert view.error.startswith("PermissionDenied: ")
    assert "carol" in view.error
    assert view._error.visible and not view._message.visible
    assert view.message == ""
    assert reg.store.dump() == before


def test_switching_portfolio_recomputes_for_it(reg):
    alice = reg.as_user("alice")
    view = FrontierView(alice, portfolio=PID, points=POINTS)
    view._portfolio.value = "client_a/income"
    assert view.frontier.dataset.attrs["portfolio"] == "client_a/income"
    want = portfolio_frontier(alice, "client_a/income", points=POINTS)
    np.testing.assert_allclose(view.frontier.dataset["volatility"], want.dataset["volatility"],
                               rtol=1e-6)
    assert view.targets == frontier_targets(view.frontier, view.point)
    held = reg.store.positions("client_a/income").quantities
    assert set(view.weights.index) >= {a for a, q in held.items() if q}


# -- with an event loop (served app, notebook): the call runs off the loop, progress shows ---
def _run_on_loop(view, action) -> list[bool]:
    """Trigger ``action`` inside a running event loop; return the ``busy`` states seen."""
    import asyncio

    seen: list[bool] = []
    view.param.watch(lambda e: seen.append(e.new), "busy")

    async def main() -> None:
        action()
        for _ in range(6000):  # bounded; ends as soon as the worker thread is done
            await asyncio.sleep(0.01)
            if seen and not view.busy:
                return

    asyncio.run(main())
    return seen


def test_buttons_run_the_service_off_the_event_loop_with_progress(reg):
    alice = reg.as_user("alice")
    view = FrontierView(alice, portfolio=PID, points=POINTS, auto_compute=False)
    assert view.frontier is None
    spinner: list[bool] = []
    view._spinner.param.watch(lambda e: spinner.append(e.new), "visible")
    assert _run_on_loop(view, lambda: setattr(view._compute_button, "clicks", 1)) == [True, False]
    assert spinner == [True, False]
    assert view.frontier is not None and view.point == view.frontier.max_sharpe_point()
    view._picker.value = 1
    assert _run_on_loop(view, lambda: setattr(view._propose_button, "clicks", 1)) == [True, False]
    assert view.proposal is not None and view.proposal.id in view.message
    assert ProposalBook(reg).get(view.proposal.id).target_weights[PID] == pytest.approx(
        frontier_targets(view.frontier, 1))

    risk = RiskView(reg, portfolios=[PID], auto_compute=False)
    assert risk.dataset is None
    waiting: list[bool] = []
    risk._drawdown_wait.param.watch(lambda e: waiting.append(e.new), "visible")
    assert _run_on_loop(risk, lambda: setattr(risk._button, "clicks", 1)) == [True, False]
    np.testing.assert_allclose(risk.summary["es"], risk_overview(reg, [PID])["es"].values)
    # two steps: the figures first, then the drawdowns (with their own progress line)
    assert waiting == [True, False]
    pd.testing.assert_frame_equal(
        risk.drawdown, risk_overview(reg, [PID])["drawdown"].transpose("time", "portfolio")
        .to_pandas())
