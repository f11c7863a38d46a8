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
        title = view._contrib_plot.object.opts.get("plot").kwargs["title"]
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
    view._selection.event(index=[2])
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
    assert _run_on_loop(risk, lambda: setattr(risk._button, "clicks", 1)) == [True, False]
    np.testing.assert_allclose(risk.summary["es"], risk_overview(reg, [PID])["es"].values)
