"""ApprovalView without a browser: it shows what ProposalBook holds; its buttons call the book."""

from __future__ import annotations

import gc

import pandas as pd
import pytest

pn = pytest.importorskip("panel")

from view_support import double_click_while_running  # noqa: E402

from pmkit.demo import open_demo  # noqa: E402
from pmkit.rebalance import ProposalBook, propose_rebalance  # noqa: E402
from pmkit.registry import Registry  # noqa: E402
from pmkit.store import open_store  # noqa: E402
from pmkit_widgets.approval_view import EMPTY_TEXT, TRADE_COLUMNS, ApprovalView  # noqa: E402

GROWTH = "client_a/growth"
INCOME = "client_a/income"
TARGETS = {"AAPL": 0.25, "MSFT": 0.25, "XOM": 0.25}  # at client_a's position limit


@pytest.fixture(scope="module")
def built():
    """A proposal built once by alice (trader) on the demo; every demo starts from the same data."""
    return propose_rebalance(open_demo().as_user("alice"), GROWTH, target_weights=TARGETS)


@pytest.fixture
def reg():
    return open_demo()


@pytest.fixture
def proposal(reg, built):
    return ProposalBook(reg.as_user("alice")).propose(built)


def test_a_manager_sees_the_proposal_its_trades_and_costs(reg, proposal):
    view = ApprovalView(reg.as_user("bob"))
    assert view.proposal_ids == [proposal.id]
    assert view.selected == proposal.id and view.state == "proposed"
    expected = proposal.trades_frame().loc[:, list(TRADE_COLUMNS)]
    pd.testing.assert_frame_equal(view.trades, expected)
    assert view.trades["estimated_cost"].sum() == pytest.approx(proposal.estimated_cost, rel=1e-12)
    costs = view.costs.set_index("portfolio").loc[GROWTH]
    assert costs["estimated_cost"] == pytest.approx(proposal.estimated_cost, rel=1e-12)
    nav = reg.value(GROWTH, at=proposal.as_of)  # an independent valuation at the proposal's prices
    assert costs["nav"] == pytest.approx(nav, rel=1e-9)
    assert costs["cost_fraction"] == pytest.approx(proposal.estimated_cost / nav, rel=1e-9)
    assert costs["turnover"] == proposal.turnover[GROWTH]
    assert costs["currency"] == reg.portfolio(GROWTH).currency
    assert f"{proposal.estimated_cost:,.2f}" in view._summary.object


def test_risk_charts_carry_the_snapshots_before_and_after(reg, proposal):
    view = ApprovalView(reg.as_user("bob"))
    charts = view.charts[GROWTH]
    risk = charts["risk"].data.set_index(["when", "measure"])["value"]
    sectors = charts["sectors"].data.set_index(["when", "sector"])["value"]
    for when, snap in (("before", proposal.risk_before[GROWTH]),
                       ("after", proposal.risk_after[GROWTH])):
        assert risk[(when, "volatility (annualized)")] == snap.volatility
        assert risk[(when, f"1-day VaR {snap.confidence:.0%}")] == snap.var
        assert sectors[when].drop("cash").to_dict() == snap.sectors
        assert sectors[(when, "cash")] == snap.cash
    drawn = charts["risk"].data.astype({"when": str}).reset_index(drop=True)
    pd.testing.assert_frame_equal(view.risk[view.risk.portfolio == GROWTH].reset_index(drop=True),
                                  drawn, check_dtype=False)


@pytest.mark.parametrize(
    ("user", "error"),
    [
        ("alice", "PermissionDenied"),  # a trader may propose, not approve
        ("carol", "PermissionDenied"),  # a viewer sees everything and changes nothing
    ],
)
def test_a_refused_approval_shows_the_service_error_and_changes_nothing(reg, proposal, user,
                                                                         error):
    view = ApprovalView(reg.as_user(user))
    assert view.selected == proposal.id
    before = reg.store.dump()
    trades_before, audit_before = view.trades, view.audit
    assert view.approve("looks fine") is None
    assert view.error.startswith(f"{error}: ")
    assert "proposal.approve" in view.error and user in view.error
    assert view.message == ""
    assert reg.store.dump() == before
    assert view.state == "proposed"
    pd.testing.assert_frame_equal(view.trades, trades_before)
    pd.testing.assert_frame_equal(view.audit, audit_before)


def test_the_proposer_may_not_approve_their_own_proposal(reg, built):
    # bob is a manager, so only the four-eyes rule stops him.
    own = ProposalBook(reg.as_user("bob")).propose(
        built.with_changes(id="rb-by-bob", created_by="bob"))
    view = ApprovalView(reg.as_user("bob"))
    view.select(own.id)
    before = reg.store.dump()
    assert view.approve() is None
    assert view.error.startswith("MakerCheckerError: ")
    assert reg.store.dump() == before
    assert ProposalBook(reg).get(own.id).state == "proposed"


def test_a_manager_approves_and_the_audit_trail_shows_it(reg, proposal):
    view = ApprovalView(reg.as_user("bob"))
    after = view.approve("within risk budget")
    assert after is not None and view.error == ""
    assert ProposalBook(reg).get(proposal.id).state == "approved"
    assert view.state == "approved" and "approved" in view.message
    assert view.selected == proposal.id  # still shown, though no longer pending
    audit = view.audit
    expected = [(a.actor, a.action) for a in reg.store.audit(target=proposal.id)]
    assert list(zip(audit["actor"], audit["action"], strict=True)) == expected
    last = audit.iloc[-1]
    assert (last["actor"], last["action"], last["note"]) == (
        "bob", "proposal.approve", "within risk budget")
    history = view.history
    assert list(history["state"]) == ["proposed", "approved"]
    assert list(history["actor"]) == ["alice", "bob"]


def test_the_buttons_call_the_book_with_the_note(reg, proposal):
    view = ApprovalView(reg.as_user("bob"))
    view._reject_btn.clicks += 1  # no reason typed
    assert view.error.startswith("ValidationError: ") and "reason" in view.error
    assert ProposalBook(reg).get(proposal.id).state == "proposed"
    view._note.value = "too much turnover"
    view._reject_btn.clicks += 1
    assert view.error == ""
    stored = ProposalBook(reg).get(proposal.id)
    assert stored.state == "rejected" and stored.history[-1]["note"] == "too much turnover"
    assert view.state == "rejected" and view._note.value == ""
    # rejected is final: no button offers more, and a click that arrives anyway does nothing
    assert not view._approve_btn.visible and not view._reject_btn.visible
    view._approve_btn.clicks += 1
    assert view.error == "" and ProposalBook(reg).get(proposal.id).state == "rejected"
    assert view.approve() is None  # the book, asked directly, refuses it
    assert view.error.startswith("TransitionError: ")
    assert ProposalBook(reg).get(proposal.id).state == "rejected"


def test_reject_without_reason_shows_the_validation_error(reg, proposal):
    view = ApprovalView(reg.as_user("bob"))
    before = reg.store.dump()
    assert view.reject("  ") is None
    assert view.error.startswith("ValidationError: ")
    assert reg.store.dump() == before


def test_another_users_action_shows_through_events(reg, proposal):
    alice_view = ApprovalView(reg.as_user("alice"))
    ProposalBook(reg.as_user("bob")).approve(proposal.id, note="ok")
    assert alice_view.state == "approved"  # the one on screen stays, in its new state
    assert alice_view.audit.iloc[-1]["actor"] == "bob"
    fresh = ApprovalView(reg.as_user("alice"))
    assert fresh.proposal_ids == [] and fresh.selected is None  # nothing pending any more
    fresh.show_all = True
    assert fresh.proposal_ids == [proposal.id]


def test_pending_first_and_show_all(reg, built):
    book = ProposalBook(reg.as_user("alice"))
    first = book.propose(built.with_changes(id="rb-a", created_at="2023-01-01T09:00:00"))
    second = book.propose(built.with_changes(id="rb-b", created_at="2023-01-02T09:00:00"))
    ProposalBook(reg.as_user("bob")).approve(second.id)
    view = ApprovalView(reg.as_user("carol"))
    assert view.proposal_ids == [first.id]
    view.show_all = True
    assert view.proposal_ids == [first.id, second.id]  # pending first
    assert view.select(second.id) is not None and view.state == "approved"
    assert view.select("rb-missing") is None
    assert view.error.startswith("NotFoundError: ")
    assert view.selected == second.id


def test_a_new_proposal_appears_through_events(reg, built):
    from bokeh.models.widgets.tables import NumberFormatter, StringFormatter

    view = ApprovalView(reg.as_user("bob"))  # no polling: only the bus can tell it
    assert view.proposal_ids == [] and view.selected is None
    model = view._trades.get_root()  # rendered while empty
    p = ProposalBook(reg.as_user("alice")).propose(built)
    assert view.proposal_ids == [p.id] and view.state == "proposed"
    pd.testing.assert_frame_equal(view.trades, p.trades_frame().loc[:, list(TRADE_COLUMNS)])
    formatters = {c.field: c.formatter for c in model.columns}
    assert isinstance(formatters["asset"], StringFormatter)
    assert isinstance(formatters["quantity"], NumberFormatter)


def test_a_proposal_from_another_process_appears_on_refresh(tmp_path, built):
    path = tmp_path / "pm.db"
    reg = open_demo(str(path))
    view = ApprovalView(reg.as_user("bob"))
    other = Registry(open_store(str(path)), market=reg.market)  # its own bus: no event reaches us
    p = ProposalBook(other.as_user("alice")).propose(built)
    assert view.proposal_ids == []
    assert view.refresh()  # what the poll timer calls
    assert view.proposal_ids == [p.id]


def test_a_viewer_outside_the_scope_sees_nothing(reg, proposal):
    view = ApprovalView(reg.as_user("dave"))  # owner of client_b only
    assert view.proposal_ids == []
    assert view.select(proposal.id) is None
    # another desk's proposal is reported missing: its existence does not leak either
    assert view.error.startswith("NotFoundError: ")


def test_the_view_renders_with_its_css_classes(reg, proposal):
    view = ApprovalView(reg.as_user("bob"))
    model = pn.panel(view).get_root()
    classes = {c for m in model.references() for c in (getattr(m, "css_classes", None) or [])}
    assert {"pmkit-proposal-select", "pmkit-approve", "pmkit-reject", "pmkit-note",
            "pmkit-error", "pmkit-ok", "pmkit-proposal-state", "pmkit-trades",
            "pmkit-audit"} <= classes
    view.close()


def test_a_discarded_view_stops_listening(reg):
    before = len(reg.bus._subs)
    view = ApprovalView(reg.as_user("bob"))
    assert len(reg.bus._subs) > before
    del view
    gc.collect()
    assert len(reg.bus._subs) == before


# -- controls that know the user and the state ------------------------------------------------
@pytest.mark.parametrize(
    ("user", "may_approve", "needs"),
    [
        ("bob", True, None),  # a manager of the firm, not the proposer
        ("alice", False, "manager"),  # the trader who proposed it
        ("carol", False, "manager"),  # a viewer
    ],
)
def test_approve_is_enabled_exactly_when_the_book_accepts(reg, proposal, user, may_approve,
                                                          needs):
    view = ApprovalView(reg.as_user(user))
    approve, reject = view._approve_btn, view._reject_btn
    assert approve.visible and reject.visible  # proposed: both decisions are ahead
    assert approve.disabled is not may_approve
    assert reject.disabled is not may_approve  # rejecting needs the same role here
    if needs is None:
        assert approve.description is None and reject.description is None
    else:
        role = reg.role_of(user, GROWTH)
        assert approve.description == (f"Approving needs the {needs} role on {GROWTH}; "
                                       f"{user} is {role} there.")
        assert reject.description.startswith(f"Rejecting needs the {needs} role on {GROWTH}")
    # the book, asked directly, agrees with what the button showed
    before = reg.store.dump()
    after = view.approve("checked")
    assert (after is not None) is may_approve
    if not may_approve:
        assert view.error.startswith("PermissionDenied: ") and reg.store.dump() == before


def test_the_proposer_sees_approve_disabled_by_the_four_eyes_rule(reg, built):
    own = ProposalBook(reg.as_user("bob")).propose(
        built.with_changes(id="rb-by-bob", created_by="bob"))
    view = ApprovalView(reg.as_user("bob"))
    view.select(own.id)
    assert view._approve_btn.disabled and "four-eyes" in view._approve_btn.description
    assert not view._reject_btn.disabled  # a manager may still withdraw it by rejecting
    view._approve_btn.clicks += 1  # a click the browser sent anyway: nothing happens
    assert view.error == "" and ProposalBook(reg).get(own.id).state == "proposed"


def test_a_decided_proposal_shows_no_approve_or_reject(reg, proposal):
    view = ApprovalView(reg.as_user("bob"))
    view._approve_btn.clicks += 1
    assert view.state == "approved"
    assert not view._approve_btn.visible and not view._reject_btn.visible
    assert not view._note.visible


def test_buttons_follow_a_grant_through_events(reg, proposal):
    view = ApprovalView(reg.as_user("carol"))  # no polling: only the bus can tell it
    assert view._approve_btn.disabled
    reg.grant("carol", "client_a", "manager")
    assert not view._approve_btn.disabled and view._approve_btn.description is None
    reg.revoke("carol", "client_a")  # carol still sees client_a through the firm
    assert view._approve_btn.disabled and "carol is viewer" in view._approve_btn.description


def _count_messages(view) -> list[str]:
    shown: list[str] = []
    view._message.param.watch(lambda e: shown.append(e.new) if e.new else None, "object")
    return shown


def test_a_double_click_approves_once(reg, proposal):
    view = ApprovalView(reg.as_user("bob"))
    shown = _count_messages(view)
    view._approve_btn.clicks += 1
    view._approve_btn.clicks += 1
    approvals = [a for a in reg.store.audit(target=proposal.id) if a.action == "proposal.approve"]
    assert len(approvals) == 1
    assert len(shown) == 1 and view.error == "" and "approved" in view.message


def test_a_click_while_the_approval_runs_is_ignored(reg, proposal, monkeypatch):
    """Inside an event loop the call runs on a worker; the button is disabled meanwhile."""
    import threading

    view = ApprovalView(reg.as_user("bob"))
    shown = _count_messages(view)
    release = threading.Event()
    real = ProposalBook.approve

    def slow_approve(self, *args, **kwargs):
        release.wait(10)  # the approval is still running when the second click arrives
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ProposalBook, "approve", slow_approve)
    assert double_click_while_running(view._approve_btn, view, release) == [True]
    approvals = [a for a in reg.store.audit(target=proposal.id) if a.action == "proposal.approve"]
    assert len(approvals) == 1
    assert len(shown) == 1 and view.state == "approved" and view.error == ""


# -- a screen an operations desk can read --------------------------------------------------
def test_empty_states_say_what_to_do(reg, proposal):
    fresh = ApprovalView(open_demo().as_user("bob"))  # no proposal at all
    assert fresh.empty_text == EMPTY_TEXT
    assert "Optimize tab" in EMPTY_TEXT and "%pm propose" in EMPTY_TEXT
    assert fresh._empty.visible and not fresh._detail.visible
    ProposalBook(reg.as_user("bob")).approve(proposal.id)
    view = ApprovalView(reg.as_user("bob"))  # one decided, none pending
    assert view.selected is None
    assert "Show all states" in view.empty_text and "1 decided one" in view.empty_text
    view.show_all = True
    assert view.selected == proposal.id and view.empty_text == ""


TIME_SHOWN = r"\d{4}-\d{2}-\d{2}( \d{2}:\d{2})?"


def test_timestamps_read_to_the_minute(reg, proposal):
    import re

    view = ApprovalView(reg.as_user("bob"))
    view.approve("fine")
    stored = ProposalBook(reg).get(proposal.id)
    assert any("." in h["ts"] or "T" in h["ts"] for h in stored.history)  # raw ISO in the book
    for column in (view.history["ts"], view.audit["ts"]):
        assert len(column) >= 2
        assert all(re.fullmatch(TIME_SHOWN, ts) for ts in column), list(column)
    # the same instants, to the minute
    assert list(view.history["ts"]) == [pd.Timestamp(h["ts"]).strftime("%Y-%m-%d %H:%M")
                                        for h in stored.history]
    label = next(iter(view._select.options))
    assert re.search(TIME_SHOWN + "$", label) and "T" not in label.split(" · ")[-1]
    summary = view._summary.object
    assert stored.as_of not in summary  # "2022-12-01T00:00:00" reads "2022-12-01"
    assert pd.Timestamp(stored.as_of).strftime("%Y-%m-%d") in summary


def test_the_proposers_note_is_its_reason(reg, built):
    book = ProposalBook(reg.as_user("alice"))
    noted = book.propose(built.with_changes(id="rb-noted"), "drift after the Q3 inflows")
    plain = book.propose(built.with_changes(id="rb-plain"))
    view = ApprovalView(reg.as_user("bob"))
    view.select(noted.id)
    assert ("<span class='pmkit-proposal-reason'>drift after the Q3 inflows</span>"
            in view._summary.object)
    assert noted.reason in view._summary.object  # the method's own label stays beside it
    view.select(plain.id)
    assert f"<span class='pmkit-proposal-reason'>{plain.reason}</span>" in view._summary.object


def test_sector_exposure_is_grouped_before_beside_after_in_percent(reg, proposal):
    import holoviews as hv
    from bokeh.models import NumeralTickFormatter

    view = ApprovalView(reg.as_user("bob"))
    charts = view.charts[GROWTH]
    fig = hv.render(charts["sectors"])
    factors = list(fig.y_range.factors)
    sectors = set(proposal.risk_before[GROWTH].sectors) | set(proposal.risk_after[GROWTH].sectors)
    assert {s for s, _ in factors} == sectors | {"cash"}  # every sector is labelled
    # grouped bars: each sector's before and after are neighbours, before above after
    # (a vertical factor axis runs bottom up)
    assert [w for _, w in factors] == ["after", "before"] * (len(factors) // 2)
    assert all(factors[i][0] == factors[i + 1][0] for i in range(0, len(factors), 2))
    assert isinstance(fig.xaxis[0].formatter, NumeralTickFormatter)
    assert "%" in fig.xaxis[0].formatter.format
    assert fig.sizing_mode == "stretch_width"  # sized to its container, not a fixed width
    risk = hv.render(charts["risk"])
    assert "%" in risk.yaxis[0].formatter.format and risk.sizing_mode == "stretch_width"
    # the largest exposure after the rebalance is at the top of the axis (drawn last)
    after = {s: w for s, w in proposal.risk_after[GROWTH].sectors.items()}
    before = proposal.risk_before[GROWTH].sectors
    biggest = max(sectors, key=lambda s: max(after.get(s, 0.0), before.get(s, 0.0)))
    assert factors[-1][0] == biggest


def test_tables_fit_their_data_and_format_through_pmkit_display(reg, proposal):
    from pmkit.display import TABULATOR_FORMATS

    view = ApprovalView(reg.as_user("bob"))
    for table in (view._trades, view._costs, view._history, view._audit):
        assert table.layout == "fit_data_table"  # no last column stretched across the page
    formats = {c: f.format for c, f in view._costs.formatters.items()}
    assert formats == {"nav": TABULATOR_FORMATS["money"],
                       "estimated_cost": TABULATOR_FORMATS["money"],
                       "cost_fraction": TABULATOR_FORMATS["percent"],
                       "turnover": TABULATOR_FORMATS["percent"]}


def test_every_chart_of_the_app_draws_on_the_canvas(reg, proposal):
    """WebGL (HoloViews' default) is software-rendered without a GPU: remote desks, CI."""
    import holoviews as hv

    from pmkit_widgets import FrontierView, GroupsView, RiskView

    bob = reg.as_user("bob")
    for view in (ApprovalView(bob), GroupsView(bob), RiskView(bob), FrontierView(bob)):
        panes = [p for p in view.__panel__().select(pn.pane.HoloViews) if p.object is not None]
        figures = [hv.render(p.object) for p in panes]
        figures += [p.object for p in view.__panel__().select(pn.pane.Bokeh)
                    if p.object is not None]
        assert figures, type(view).__name__
        for fig in figures:
            assert fig.output_backend == "canvas", type(view).__name__
