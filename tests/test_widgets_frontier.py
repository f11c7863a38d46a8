"""FrontierView's controls without a browser: Propose follows the user, the point and the state.

The view only mirrors the registry's answer (`ReadView.refusal`); the service
still refuses what it must (see ``test_widgets_risk.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

pn = pytest.importorskip("panel")
pytest.importorskip("hvplot")
pytest.importorskip("cvxpy")

from pmkit.demo import open_demo  # noqa: E402
from pmkit.display import format_percent, format_ratio  # noqa: E402
from pmkit.rebalance import ProposalBook  # noqa: E402
from pmkit_widgets.frontier_view import FrontierView  # noqa: E402

PID = "client_a/growth"
POINTS = 6


@pytest.fixture
def reg():
    return open_demo()


def test_a_viewer_sees_propose_disabled_saying_why(reg):
    view = FrontierView(reg.as_user("carol"), portfolio=PID, points=POINTS)
    assert view.frontier is not None and view.point is not None  # looking is allowed
    button = view._propose_button
    assert button.disabled
    assert button.description == (
        f"Proposing a rebalance needs the trader role on {PID}; carol is viewer there.")
    before = reg.store.dump()
    button.clicks += 1  # a click the browser sent anyway
    assert view.proposal is None and view.error == "" and reg.store.dump() == before


def test_a_trader_may_propose_once_a_point_is_picked(reg):
    view = FrontierView(reg.as_user("alice"), portfolio=PID, points=POINTS, auto_compute=False)
    button = view._propose_button
    assert button.disabled and "Compute the frontier" in button.description
    view.compute()
    assert not button.disabled and button.description is None


def test_propose_follows_the_selected_portfolio(reg):
    reg.grant("alice", "client_b/balanced", "viewer")  # trader on client_a, viewer here
    view = FrontierView(reg.as_user("alice"), portfolio=PID, points=POINTS)
    assert not view._propose_button.disabled
    view._portfolio.value = "client_b/balanced"  # recomputes for it (inline: no event loop)
    assert view.frontier.dataset.attrs["portfolio"] == "client_b/balanced"
    assert view._propose_button.disabled
    assert "alice is viewer there" in view._propose_button.description


def test_propose_follows_grants_through_events(reg):
    view = FrontierView(reg.as_user("carol"), portfolio=PID, points=POINTS)
    assert view._propose_button.disabled
    reg.grant("carol", "client_a", "trader")
    assert not view._propose_button.disabled
    reg.revoke("carol", "client_a")
    assert view._propose_button.disabled


def test_a_double_click_proposes_once(reg):
    view = FrontierView(reg.as_user("alice"), portfolio=PID, points=POINTS)
    shown: list[str] = []
    view._message.param.watch(lambda e: shown.append(e.new) if e.new else None, "object")
    view._propose_button.clicks += 1
    view._propose_button.clicks += 1
    stored = ProposalBook(reg).list()
    assert len(stored) == 1 and stored[0].id == view.proposal.id
    assert len(shown) == 1 and view.error == ""


def test_point_labels_and_stats_read_as_pmkit_display_formats(reg):
    view = FrontierView(reg.as_user("alice"), portfolio=PID, points=POINTS)
    stats = view.stats
    html = view._stats.object
    assert format_percent(stats["expected_return"]) in html
    assert format_percent(stats["volatility"]) in html
    assert format_ratio(stats["sharpe"]) in html
    label = next(k for k, v in view._picker.options.items() if v == view.point)
    assert f"volatility {format_percent(stats['volatility'])}" in label


def test_no_portfolio_says_what_to_do(reg):
    reg.add_user("erin")
    view = FrontierView(reg.as_user("erin"))
    assert view.portfolio is None and view._empty.visible
    assert "No active portfolio is visible" in view._empty.object
    assert view._compute_button.disabled and view._propose_button.disabled


def test_the_chart_marks_the_picked_point(reg):
    """The ring on the chart sits on the point picked, after a new frontier and after a pick."""
    view = FrontierView(reg.as_user("alice"), portfolio=PID, points=POINTS)
    ds = view.frontier.dataset

    def marked() -> tuple[float, float]:
        fig = view._chart.object  # the chart as drawn now
        (ring,) = [r for item in fig.legend.items if item.label.value == "picked"
                   for r in item.renderers]
        data = ring.data_source.data
        assert len(data["volatility"]) == 1
        return (data["volatility"][0], data["expected_return"][0])

    def at(point: int) -> tuple[float, float]:  # chart axes are in percent
        row = ds.isel(point=point)
        return (float(row["volatility"]) * 100, float(row["expected_return"]) * 100)

    first = view.point
    assert first == view.frontier.max_sharpe_point() and marked() == pytest.approx(at(first))
    other = (first + 2) % ds.sizes["point"]
    view.pick(other)
    assert view.point == other and marked() == pytest.approx(at(other))
    view.compute()  # a new frontier keeps the pick and draws the ring there
    assert view.point == other and marked() == pytest.approx(at(other))

    # a tap moves pick and ring; picked in the select box, the point tapped before is
    # a tap again (the chart's selection follows the pick, so the tap is a change)
    dots = view._dots
    dots.selected.indices = [first]
    assert view.point == first and marked() == pytest.approx(at(first))
    view._picker.value = other
    assert list(dots.selected.indices) == [other] and marked() == pytest.approx(at(other))
    dots.selected.indices = [first]
    assert view.point == first and marked() == pytest.approx(at(first))


def test_the_chart_reads_in_percent_with_formatted_tooltips(reg):
    """Axes in percent of the annualized figures; every tooltip field is a column drawn."""
    import re

    from bokeh.models import HoverTool, TapTool

    from pmkit.display import TABULATOR_FORMATS

    view = FrontierView(reg.as_user("alice"), portfolio=PID, points=POINTS)
    fig = view._chart.object
    assert fig.output_backend == "canvas" and fig.sizing_mode == "stretch_width"
    assert "%" in fig.xaxis[0].axis_label and "%" in fig.yaxis[0].axis_label
    ds = view.frontier.dataset
    data = view._dots.data
    np.testing.assert_allclose(data["volatility"], ds["volatility"].values * 100)
    np.testing.assert_allclose(data["expected_return"], ds["expected_return"].values * 100)
    (tap,) = fig.select(TapTool)
    (tool,) = fig.select(HoverTool)
    assert tap.renderers == tool.renderers and tool.renderers[0].data_source is view._dots
    field = re.compile(r"@\{([^}]+)\}(?:\{([^}]+)\})?")
    for label, spec in tool.tooltips:
        ((column, fmt),) = field.findall(spec)
        assert column in data, (label, spec)
        assert fmt in ("", *TABULATOR_FORMATS.values()), (label, spec)
