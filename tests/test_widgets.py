"""Registry and groups views, and the app page, without a browser.

The views show what the services say, follow their events, and their actions
are the services' calls: a refused action shows the service's error and
leaves the store byte-for-byte unchanged.
"""

from __future__ import annotations

import gc
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pn = pytest.importorskip("panel")

from pmkit.analytics.overview import group_overview, portfolio_overview  # noqa: E402
from pmkit.demo import DEMO_CONFIG, seed_demo  # noqa: E402
from pmkit.registry import Registry  # noqa: E402
from pmkit.store import open_store  # noqa: E402
from pmkit_widgets import GroupsView, RegistryView  # noqa: E402
from pmkit_widgets.app import TABS, build_app  # noqa: E402
from pmkit_widgets.groups_view import allocation_frame  # noqa: E402

GROWTH = "client_a/growth"


@pytest.fixture(scope="module")
def market():
    from pmkit.datasets import load_market

    return load_market()


@pytest.fixture
def demo(market):
    reg = Registry(open_store(":memory:"), market=market)
    seed_demo(reg)
    return reg


def test_table_is_the_portfolio_overview(demo):
    view = RegistryView(demo)
    shown = view.table.set_index("id")
    expected = portfolio_overview(demo)
    assert list(shown.index) == sorted(DEMO_CONFIG["portfolios"])
    pd.testing.assert_frame_equal(shown, expected, check_names=False, check_like=True)
    # the value column is the registry's own valuation
    for pid in shown.index:
        assert shown.loc[pid, "value"] == pytest.approx(demo.value(pid), abs=1e-9)


def test_a_portfolio_created_through_the_api_appears_via_events(demo):
    view = RegistryView(demo)  # no polling: only the bus can tell it
    demo.create_portfolio("client_c/new", 1000.0, name="Newcomer")
    assert "client_c/new" in set(view.table["id"])
    demo.deactivate("client_c/new")
    row = view.table.set_index("id").loc["client_c/new"]
    assert row["status"] == "inactive"


def test_lifecycle_buttons_call_the_registry(demo):
    bob = demo.as_user("bob")  # manager on firm, may create
    view = RegistryView(bob)
    view.select(GROWTH)
    assert view.deactivate() and demo.portfolio(GROWTH).status == "inactive"
    assert view.table.set_index("id").loc[GROWTH, "status"] == "inactive"
    assert view.activate() and demo.portfolio(GROWTH).status == "active"
    assert "activated" in view.message and view.error == ""
    assert view.create("bob/core", 25_000.0, name="Bob core", tags=("core",)) == "bob/core"
    assert list(demo.portfolio("bob/core").tags) == ["core"]
    assert demo.positions("bob/core").cash == pytest.approx(25_000.0)
    view.select("bob/core")
    assert view.delete() and demo.portfolio("bob/core").status == "archived"
    assert view.restore() and demo.portfolio("bob/core").status == "inactive"
    audit = [(r.actor, r.action) for r in demo.store.audit(target="bob/core")]
    assert ("bob", "portfolio.archive") in audit and ("bob", "portfolio.restore") in audit


@pytest.mark.parametrize(
    ("user", "action", "error"),
    [
        ("carol", "deactivate", "PermissionDenied"),  # a viewer changes nothing
        ("carol", "delete", "PermissionDenied"),
        ("alice", "deactivate", "PermissionDenied"),  # a trader may not manage
        ("bob", "delete", "PermissionDenied"),  # archiving needs an owner
        ("bob", "activate", "LifecycleError"),  # already active
    ],
)
def test_a_refused_action_shows_the_service_error_and_changes_nothing(demo, user, action, error):
    view = RegistryView(demo.as_user(user))
    view.select(GROWTH)
    before = demo.store.dump()
    shown_before = view.table
    assert getattr(view, action)() is False
    assert view.error.startswith(f"{error}: ")
    assert demo.store.dump() == before
    pd.testing.assert_frame_equal(view.table, shown_before)


def test_refused_create_names_the_field(demo):
    view = RegistryView(demo.as_user("alice"))  # alice may not create
    before = demo.store.dump()
    assert view.create("client_a/extra", 1.0) is None
    assert view.error.startswith("PermissionDenied: ")
    view = RegistryView(demo)
    assert view.create("Bad Id", 1.0) is None
    assert view.error.startswith("InvalidIdError: ") and "Bad Id" in view.error
    assert view.create("client_c/neg", -5.0) is None
    assert "initial_capital" in view.error
    assert demo.store.dump() == before


def test_an_action_without_a_selection_says_so(demo):
    view = RegistryView(demo)
    before = demo.store.dump()
    assert view.deactivate() is False
    assert "Select a portfolio" in view.error
    assert demo.store.dump() == before


def test_groups_view_shows_tree_allocation_and_consolidated_figures(demo):
    view = GroupsView(demo)
    pd.testing.assert_frame_equal(view.table.set_index("id"), group_overview(demo),
                                  check_names=False, check_like=True)
    html = view.tree_html
    for spec in DEMO_CONFIG["groups"].values():
        assert spec["name"] in html
        for weight in (spec.get("allocation") or {}).values():
            assert f"{weight:.1%}" in html
    assert f"{demo.group_value('firm'):,.2f}" in html
    alloc = view.allocation.set_index("member")
    for gid, spec in DEMO_CONFIG["groups"].items():
        for member, target in (spec.get("allocation") or {}).items():
            assert alloc.loc[member, "target"] == target
            # actual weight = the member's value over the group's
            assert alloc.loc[member, "actual"] == pytest.approx(
                demo.value(member) / demo.group_value(gid), rel=1e-9)
    assert np.allclose(alloc.groupby("group")["actual"].sum(), 1.0)
    assert view._chart.object is not None


def test_allocation_frame_walks_nested_groups(demo):
    frame = allocation_frame(demo.group_tree())
    assert set(frame["group"]) == {"client_a", "client_b"}  # firm has no targets


def test_a_view_shows_only_what_its_user_may_view(demo):
    view = RegistryView(demo.as_user("alice"))
    assert list(view.table["id"]) == ["client_a/growth", "client_a/income"]
    assert "Client B" not in GroupsView(demo.as_user("alice")).tree_html


def test_a_failed_refresh_is_shown_not_raised(demo):
    view = RegistryView(demo)
    demo.store.close()
    view._safe_refresh()
    assert "StoreError" in view.error


def test_a_discarded_view_stops_listening(demo):
    before = len(demo.bus._subs)
    view = RegistryView(demo)
    assert len(demo.bus._subs) > before
    del view
    gc.collect()
    assert len(demo.bus._subs) == before


def test_app_page_builds_tabs_lazily_as_the_session_user(demo):
    alice = demo.as_user("alice")
    page = build_app(alice, poll_period=None)
    assert page.title == "pmkit operations"
    tabs = page.main.objects[0]
    assert [t.name for t in tabs.objects] == list(TABS)
    first = tabs.objects[0].objects[0]
    # templates unwrap a Viewer into its layout, which keeps the view alive
    view = getattr(first, "_pmkit_view", first)
    assert isinstance(view, RegistryView) and view.registry.user == "alice"
    assert isinstance(tabs.objects[1].objects[0], pn.indicators.LoadingSpinner)  # not built yet
    tabs.active = 1
    groups = tabs.objects[1].objects[0]
    assert isinstance(getattr(groups, "_pmkit_view", groups), GroupsView)
    assert "alice" in page.header.objects[0].object


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


def test_websocket_origins_name_the_listening_address_and_extras():
    from pmkit_widgets.app import _origins

    local = _origins("127.0.0.1", 5006, ())
    assert {"127.0.0.1:5006", "localhost:5006"} <= set(local)
    assert _origins("127.0.0.1", 5006, ["pm.example.com", "proxy:443"])[-2:] == [
        "pm.example.com:5006", "proxy:443"]
    import socket

    wildcard = _origins("0.0.0.0", 80, ())
    assert f"{socket.gethostname()}:80" in wildcard and "0.0.0.0:80" not in wildcard
