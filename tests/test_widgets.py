"""RegistryView without a browser: it shows what the services say, and follows their events."""

from __future__ import annotations

import gc
import subprocess
import sys

import pandas as pd
import pytest

pn = pytest.importorskip("panel")

from pmkit.demo import DEMO_CONFIG, seed_demo  # noqa: E402
from pmkit.registry import Registry  # noqa: E402
from pmkit.store import open_store  # noqa: E402
from pmkit_widgets import RegistryView  # noqa: E402
from pmkit_widgets.app import build_app  # noqa: E402


@pytest.fixture(scope="module")
def market():
    from pmkit.datasets import load_market

    return load_market()


@pytest.fixture
def demo(market):
    reg = Registry(open_store(":memory:"), market=market)
    seed_demo(reg)
    return reg


def test_table_is_the_registry_summary(demo):
    view = RegistryView(demo)
    shown = view.table.set_index("id")
    expected = demo.summary()
    assert list(shown.index) == sorted(DEMO_CONFIG["portfolios"])
    pd.testing.assert_frame_equal(shown, expected, check_names=False)


def test_a_portfolio_created_through_the_api_appears_via_events(demo):
    view = RegistryView(demo)  # no polling: only the bus can tell it
    demo.create_portfolio("client_c/new", 1000.0, name="Newcomer")
    assert "client_c/new" in set(view.table["id"])
    demo.deactivate("client_c/new")
    row = view.table.set_index("id").loc["client_c/new"]
    assert row["status"] == "inactive"


def test_tree_shows_every_group_with_targets_and_consolidated_values(demo):
    view = RegistryView(demo)
    html = view.tree_html
    for spec in DEMO_CONFIG["groups"].values():
        assert spec["name"] in html
        for weight in (spec.get("allocation") or {}).values():
            assert f"{weight:.1%}" in html
    firm = f"{demo.group_value('firm'):,.2f}"
    assert firm in html


def test_a_view_shows_only_what_its_user_may_view(demo):
    view = RegistryView(demo.as_user("alice"))
    assert list(view.table["id"]) == ["client_a/growth", "client_a/income"]
    assert "Client B" not in view.tree_html


def test_a_failed_refresh_is_shown_not_raised(demo):
    view = RegistryView(demo)
    demo.store.close()
    view._safe_refresh()
    assert view._error.visible and "StoreError" in view._error.object


def test_a_discarded_view_stops_listening(demo):
    before = len(demo.bus._subs)
    view = RegistryView(demo)
    assert len(demo.bus._subs) > before
    del view
    gc.collect()
    assert len(demo.bus._subs) == before


def test_app_page_holds_the_registry_view(demo):
    page = build_app(demo, poll_period=None)
    assert page.title == "pmkit operations"
    # templates unwrap a Viewer into its layout, which keeps the view alive
    views = [getattr(o, "_pmkit_view", None) for o in page.main.objects]
    views = [v for v in views if isinstance(v, RegistryView)]
    assert len(views) == 1 and views[0].registry is demo


@pytest.mark.parametrize(
    "code",
    [
        "import pmkit, pmkit.registry, pmkit.store, sys; assert 'panel' not in sys.modules",
        # the widgets package itself imports Panel only when a component is first used
        "import pmkit_widgets, sys; assert not {'panel', 'bokeh'} & set(sys.modules)",
    ],
)
def test_core_imports_do_not_import_panel(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
