"""Upkeep of a served page (polls, login checks) does not show the page as busy."""

from __future__ import annotations

import time

import pytest

pn = pytest.importorskip("panel")

from pmkit_widgets.periodic import background_periodic  # noqa: E402


def test_background_upkeep_is_not_busy_while_panels_own_periodic_work_is(serve_panel):
    seen: dict[str, list[bool]] = {"upkeep": [], "panel": []}

    def page():
        background_periodic(lambda: seen["upkeep"].append(pn.state.busy), 50)
        pn.state.add_periodic_callback(lambda: seen["panel"].append(pn.state.busy), period=50)
        return pn.pane.Markdown("a page")

    port = serve_panel(page)
    from bokeh.client import pull_session

    with pull_session(url=f"http://127.0.0.1:{port}/"):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and min(map(len, seen.values())) < 5:
            time.sleep(0.05)
    assert len(seen["upkeep"]) >= 5 and len(seen["panel"]) >= 5
    assert all(seen["panel"])  # what the indicator would show for a plain periodic callback
    assert not any(seen["upkeep"])
