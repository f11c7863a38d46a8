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

from view_support import double_click_while_running  # noqa: E402

from pmkit.analytics.overview import group_overview, portfolio_overview  # noqa: E402
from pmkit.demo import DEMO_CONFIG, seed_demo  # noqa: E402
from pmkit.display import format_time  # noqa: E402
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
    # the close each row is priced at reads as people read times (no 00:00:00)
    assert list(shown.pop("priced_at")) == [format_time(t) for t in expected.pop("priced_at")]
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


def test_a_paused_view_skips_events_and_catches_up_when_resumed(demo):
    view = RegistryView(demo)
    refreshes: list[int] = []
    real = view.refresh
    view.refresh = lambda: (refreshes.append(1), real())[1]
    view.pause_updates()
    demo.create_portfolio("client_c/new", 1000.0, name="Newcomer")
    view.flush()  # nothing runs while paused, not even an explicit flush
    assert refreshes == [] and "client_c/new" not in set(view.table["id"])
    view.resume_updates()
    assert refreshes == [1] and "client_c/new" in set(view.table["id"])
    view.resume_updates()  # not paused: nothing to catch up
    demo.deactivate("client_c/new")  # events reach it again
    assert refreshes == [1, 1] and view.table.set_index("id").loc["client_c/new", "status"] == (
        "inactive")


def test_a_paused_poll_stops_and_starts_again_on_resume(demo):
    view = RegistryView(demo, poll_period=50)
    try:
        assert view._callback is not None and view._callback.running
        view.pause_updates()
        assert view._callback is None
        view.resume_updates()
        assert view._callback is not None and view._callback.running
        assert view.poll_period == 50
    finally:
        view.close()
    unpolled = RegistryView(demo)  # events only: resuming starts no timer
    unpolled.pause_updates()
    unpolled.resume_updates()
    assert unpolled._callback is None


def test_the_app_keeps_only_the_shown_tab_on_the_page(demo):
    """Hidden tabs leave the page (a spinner stands in) and stop refreshing; shown again they
    come back as they were left, with what changed meanwhile, built once per session."""
    from pmkit_widgets.app import TABS, build_app

    page = build_app(demo, poll_period=None)
    tabs = page.main[0]
    holders = list(tabs.objects)

    def on_page(index: int) -> object:
        (shown,) = holders[index].objects
        return getattr(shown, "_pmkit_view", shown)

    def waiting(index: int) -> bool:
        (shown,) = holders[index].objects
        return isinstance(shown, pn.indicators.LoadingSpinner)

    portfolios = on_page(0)
    assert isinstance(portfolios, RegistryView)
    assert all(waiting(i) for i in range(1, len(TABS)))
    tabs.active = TABS.index("Groups")
    groups = on_page(1)
    assert waiting(0) and not waiting(1)
    demo.create_portfolio("client_c/new", 1000.0, name="Newcomer")  # while Portfolios hides
    assert "client_c/new" not in set(portfolios.table["id"])
    tabs.active = 0
    assert on_page(0) is portfolios and waiting(1)  # the same view, not a new one
    assert "client_c/new" in set(portfolios.table["id"])
    tabs.active = 1
    assert on_page(1) is groups


def test_lifecycle_buttons_follow_the_portfolios_state(demo):
    """What the state does not allow is disabled, saying why; each change moves the buttons."""
    view = RegistryView(demo)  # an administrator: no role refuses any of them

    def enabled() -> set[str]:
        return {verb for verb, button in view._buttons.items() if not button.disabled}

    view.select(GROWTH)  # active
    assert enabled() == {"deactivate", "delete"}
    assert view._buttons["activate"].description == (
        f"Cannot activate {GROWTH} while it is active.")
    assert view.deactivate()
    assert enabled() == {"activate", "delete"}
    assert view._buttons["deactivate"].description == (
        f"Cannot deactivate {GROWTH} while it is inactive.")
    assert view.delete() and demo.portfolio(GROWTH).status == "archived"
    view.select(GROWTH)
    assert enabled() == {"restore"}
    assert view.restore() and enabled() == {"activate", "delete"}
    view._hard.value = True  # a hard delete has no state rule (the service checks positions)
    assert "delete" in enabled()


@pytest.mark.parametrize("action", ["portfolio.activate", "portfolio.deactivate",
                                    "portfolio.restore", "portfolio.archive"])
@pytest.mark.parametrize("state", ["active", "inactive", "archived"])
def test_the_state_answer_is_the_write_paths(demo, state, action):
    """`ReadView.state_refusal` says None exactly when the registry makes the change."""
    from pmkit.errors import LifecycleError

    if state != "active":
        demo.deactivate(GROWTH)
    if state == "archived":
        demo.delete(GROWTH)
    assert demo.portfolio(GROWTH).status == state
    refusal = demo.view().state_refusal(action, GROWTH)
    call = {"portfolio.activate": demo.activate, "portfolio.deactivate": demo.deactivate,
            "portfolio.restore": demo.restore,
            "portfolio.archive": lambda pid: demo.delete(pid)}[action]
    before = demo.store.dump()
    try:
        call(GROWTH)
    except LifecycleError as exc:
        assert refusal is not None and str(refusal) == str(exc)
        assert demo.store.dump() == before
    else:
        assert refusal is None


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
    shown, expected = view.table.set_index("id"), group_overview(demo)
    assert list(shown.pop("priced_at")) == [format_time(t) for t in expected.pop("priced_at")]
    pd.testing.assert_frame_equal(shown, expected, check_names=False, check_like=True)
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


# -- controls that know the user and the state ------------------------------------------------
LIFECYCLE_ACTIONS = {"activate": "portfolio.activate", "deactivate": "portfolio.deactivate",
                     "delete": "portfolio.archive", "restore": "portfolio.restore"}


@pytest.mark.parametrize(
    ("user", "enabled", "may_create"),
    [
        ("carol", set(), False),  # a viewer: nothing to press
        ("alice", set(), False),  # a trader manages no lifecycle
        # GROWTH is active: activating or restoring it is refused by its state, for anyone
        ("bob", {"deactivate"}, True),  # a manager; archiving needs an owner
        ("system", {"deactivate", "delete"}, True),  # administrator
    ],
)
def test_buttons_follow_the_users_roles(demo, user, enabled, may_create):
    view = RegistryView(demo.as_user(user))
    buttons = view._buttons
    # nothing selected: every lifecycle button waits for a selection, saying so
    assert all(b.disabled and "Select a portfolio" in b.description for b in buttons.values())
    assert view._create_btn.disabled is not may_create
    if not may_create:
        assert view._create_btn.description == (
            f"Creating a portfolio needs a user allowed to create; {user} is not.")
    view.select(GROWTH)
    assert {v for v, b in buttons.items() if not b.disabled} == enabled
    role = demo.role_of(user, GROWTH)
    for verb, button in buttons.items():
        allowed = demo.as_user(user).can(LIFECYCLE_ACTIONS[verb], GROWTH)
        if verb in enabled:
            assert button.description is None
        elif not allowed:  # the role says no first
            assert f"{button.name} needs the " in button.description
            assert f"role on {GROWTH}; {user} is {role} there." in button.description
        else:
            assert button.description == f"Cannot {verb} {GROWTH} while it is active."
    # each disabled button is one the registry refuses, asked directly as the user would
    for verb in set(buttons) - enabled:
        refused_by_role = not demo.as_user(user).can(LIFECYCLE_ACTIONS[verb], GROWTH)
        refused_by_state = demo.view().state_refusal(LIFECYCLE_ACTIONS[verb], GROWTH)
        assert refused_by_role or refused_by_state is not None


def test_buttons_follow_the_selection(demo):
    demo.grant("dave", "client_a/growth", "viewer")  # dave owns client_b, views one of client_a
    view = RegistryView(demo.as_user("dave"))
    view.select("client_b/balanced")
    assert not view._buttons["delete"].disabled and view._buttons["delete"].description is None
    view.select(GROWTH)
    delete = view._buttons["delete"]
    assert delete.disabled
    assert delete.description == f"Delete needs the owner role on {GROWTH}; dave is viewer there."
    view._hard.value = True  # a hard delete is another action: asked again
    assert delete.disabled and "owner role" in delete.description
    view.select("client_b/balanced")
    assert not delete.disabled


def test_buttons_follow_grants_through_events(demo):
    view = RegistryView(demo.as_user("carol"))  # no polling: only the bus can tell it
    view.select(GROWTH)
    deactivate = view._buttons["deactivate"]
    assert deactivate.disabled
    demo.grant("carol", GROWTH, "manager")
    assert not deactivate.disabled and deactivate.description is None
    demo.revoke("carol", GROWTH)  # still a viewer through the firm
    assert deactivate.disabled and "carol is viewer" in deactivate.description


def _messages_shown(view) -> list[str]:
    shown: list[str] = []
    view._message.param.watch(lambda e: shown.append(e.new) if e.new else None, "object")
    return shown


def test_a_double_click_acts_once_and_says_so_once(demo):
    view = RegistryView(demo.as_user("bob"))
    view.select(GROWTH)
    shown = _messages_shown(view)
    button = view._buttons["deactivate"]
    button.clicks += 1
    button.clicks += 1  # the second click of a double click
    records = [r for r in demo.store.audit(target=GROWTH) if r.action == "portfolio.deactivate"]
    assert len(records) == 1 and demo.portfolio(GROWTH).status == "inactive"
    assert len(shown) == 1 and view.error == "" and view.message == f"{GROWTH} deactivated"


def test_a_click_after_the_double_click_window_acts_again(demo, monkeypatch):
    import pmkit_widgets.base as base

    monkeypatch.setattr(base, "DOUBLE_CLICK_S", 0.0)  # every click is a new request
    bob = demo.as_user("bob")
    view = RegistryView(bob)
    asked: list[str] = []
    real = type(bob).create_portfolio

    def create(self, spec, *args, **kwargs):
        asked.append(spec)
        return real(self, spec, *args, **kwargs)

    monkeypatch.setattr(type(bob), "create_portfolio", create)
    view._new_id.value = "client_c/new"
    view._create_btn.clicks += 1
    view._new_id.value = "client_c/new"  # the form reset after the first creation
    view._create_btn.clicks += 1
    # the second request reached the registry, which refused it: the window is what held it
    assert asked == ["client_c/new", "client_c/new"]
    assert "client_c/new" in view.error


def test_a_double_click_on_create_creates_one_portfolio(demo):
    view = RegistryView(demo)
    shown = _messages_shown(view)
    view._new_id.value = "client_c/new"
    view._create_btn.clicks += 1
    view._create_btn.clicks += 1
    creations = [r for r in demo.store.audit() if r.action == "portfolio.create"
                 and r.target.startswith("client_c/")]
    assert [r.target for r in creations] == ["client_c/new"]
    assert len(shown) == 1 and view.error == ""


def test_a_click_while_a_call_runs_is_ignored(demo, monkeypatch):
    """Inside an event loop the call runs on a worker and the button is disabled meanwhile."""
    import threading

    bob = demo.as_user("bob")
    view = RegistryView(bob)
    view.select(GROWTH)
    shown = _messages_shown(view)
    release = threading.Event()
    real = type(bob).deactivate

    def slow(self, *args, **kwargs):
        release.wait(10)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(bob), "deactivate", slow)
    button = view._buttons["deactivate"]
    assert double_click_while_running(button, view, release) == [True]
    records = [r for r in demo.store.audit(target=GROWTH) if r.action == "portfolio.deactivate"]
    assert len(records) == 1 and len(shown) == 1 and view.error == ""
    # the call over, the buttons follow the new state (not the running call)
    assert button.disabled and button.description == (
        f"Cannot deactivate {GROWTH} while it is inactive.")
    assert view._buttons["activate"].disabled is False


# -- forms -----------------------------------------------------------------------------------
def test_the_form_resets_completely_after_a_creation(demo):
    from pmkit_widgets.registry_view import FORM_DEFAULTS

    view = RegistryView(demo)
    assert view.form == FORM_DEFAULTS
    view._new_id.value = "client_c/new"
    view._new_name.value = "New book"
    view._new_capital.value = 25_000.0
    view._new_currency.value = "EUR"
    view._new_tags.value = "core, euro"
    view._create_btn.clicks += 1
    info = demo.portfolio("client_c/new")
    assert (info.name, info.currency, list(info.tags)) == ("New book", "EUR", ["core", "euro"])
    assert demo.positions("client_c/new").cash == pytest.approx(25_000.0)
    assert view.form == FORM_DEFAULTS  # every field, not only the name


def test_negative_capital_is_the_registrys_error_not_a_silent_reset(demo):
    view = RegistryView(demo)
    before = demo.store.dump()
    view._new_id.value = "client_c/neg"
    view._new_capital.value = -5_000.0
    assert view._new_capital.value == -5_000.0  # the input does not clamp it
    view._create_btn.clicks += 1
    assert view.error.startswith("ValidationError: ") and "initial_capital" in view.error
    assert "-5000" in view.error.replace(",", "")
    assert demo.store.dump() == before
    assert "client_c/neg" not in {p.id for p in demo.portfolios()}
    # what was typed stays, for the user to correct
    assert view.form["id"] == "client_c/neg" and view.form["capital"] == -5_000.0


# -- a screen an operations desk can read --------------------------------------------------
def test_key_columns_come_first_and_long_text_is_cut_with_a_tooltip(demo):
    view = RegistryView(demo)
    assert list(view.table.columns[:7]) == ["id", "name", "value", "day_pnl", "day_return",
                                           "volatility", "var"]
    table = view._table
    assert table.frozen_columns == ["id"]
    assert table.layout == "fit_data_table"
    model = table.get_root()  # the column definitions the browser receives
    sent = {c["field"]: c for c in model.configuration["columns"] if "field" in c}
    for column in ("name", "segment", "tags"):
        assert sent[column]["tooltip"] is True and 0 < sent[column]["maxWidth"] <= 240
    assert sent["id"]["frozen"] is True
    assert not {"tooltip", "maxWidth"} & set(sent["value"])  # numbers are never cut
    groups = GroupsView(demo)
    assert list(groups.table.columns[:7]) == ["id", "name", "value", "day_pnl", "day_return",
                                             "volatility", "var"]
    assert groups._table.layout == "fit_data_table"


def test_money_and_percent_columns_format_through_pmkit_display(demo):
    from pmkit.display import TABULATOR_FORMATS

    view = RegistryView(demo)
    formats = {c: f.format for c, f in view._table.formatters.items()}
    assert formats == {"cash": TABULATOR_FORMATS["money"], "value": TABULATOR_FORMATS["money"],
                       "day_pnl": TABULATOR_FORMATS["money"],
                       "day_return": TABULATOR_FORMATS["percent"],
                       "volatility": TABULATOR_FORMATS["percent"],
                       "var": TABULATOR_FORMATS["percent"]}


def test_the_portfolios_view_says_what_its_values_are_as_of(demo):
    view = RegistryView(demo)
    last = pd.Timestamp(demo.market["time"].values[-1]).strftime("%Y-%m-%d")
    assert (f"as of the last close {last}; positions valued at the last available price"
            in view._status.object)
    assert "T00:00:00" not in view._status.object


def test_empty_views_say_what_to_do_next(demo):
    demo.add_user("erin")  # no role anywhere, may not create
    view = RegistryView(demo.as_user("erin"))
    assert view.table.empty and view._empty.visible
    assert "No portfolio is visible" in view._empty.object
    assert "ask an owner" in view._empty.object.lower()
    assert "administrator to let you create" in view._empty.object
    demo.add_user("fay", can_create=True)
    assert "Create one with the form below" in RegistryView(demo.as_user("fay"))._empty.object
    assert not RegistryView(demo)._empty.visible
    groups = GroupsView(demo.as_user("erin"))
    assert groups._empty.visible and "No group is visible" in groups._empty.object


def test_the_allocation_chart_reads_in_percent_of_its_container(demo):
    import holoviews as hv

    fig = hv.render(GroupsView(demo)._chart.object)
    assert "%" in fig.yaxis[0].formatter.format and fig.sizing_mode == "stretch_width"


# -- the busy indicator ------------------------------------------------------------------------
def test_polling_does_not_make_the_page_busy(demo, monkeypatch):
    """A poll re-reads in the background; Panel's busy state is for work a person started."""
    import asyncio

    phase = ["polling"]
    # Count the busy events Panel is asked to add, not the flips of `pn.state.busy`: that flag is
    # process-wide, and an entry another test left (it expires after 30 s) would hold it True
    # and hide every flip (seen once in CI).
    busy: list[str] = []
    add = pn.state._add_busy_event
    monkeypatch.setattr(pn.state, "_add_busy_event",
                        lambda event_id: (busy.append(phase[0]), add(event_id))[1])
    polls: list[int] = []

    async def until(done, seconds: float = 20.0) -> None:
        # wait for what the test needs, not a fixed time: a loaded CI machine is slow
        for _ in range(int(seconds / 0.05)):
            if done():
                return
            await asyncio.sleep(0.05)

    async def main() -> None:
        view = RegistryView(demo, poll_period=30)
        real = view.refresh
        view.refresh = lambda: (polls.append(1), real())[1]
        await until(lambda: len(polls) >= 3)
        view.close()
        # the control: Panel's plain periodic callback does count as busy
        phase[0] = "plain"
        plain = pn.state.add_periodic_callback(lambda: None, period=30)
        await until(lambda: "plain" in busy)
        plain.stop()

    asyncio.run(main())
    assert len(polls) >= 3  # the poll ran
    assert "polling" not in busy
    assert "plain" in busy  # the check can see a busy event when there is one
