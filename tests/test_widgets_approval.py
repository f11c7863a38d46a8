"""ApprovalView without a browser: it shows what ProposalBook holds; its buttons call the book."""

from __future__ import annotations

import gc

import pandas as pd
import pytest

pn = pytest.importorskip("panel")

from pmkit.demo import open_demo  # noqa: E402
from pmkit.rebalance import ProposalBook, propose_rebalance  # noqa: E402
from pmkit.registry import Registry  # noqa: E402
from pmkit.store import open_store  # noqa: E402
from pmkit_widgets.approval_view import TRADE_COLUMNS, ApprovalView  # noqa: E402

GROWTH = "client_a/growth"
INCOME = "client_a/income"
TARGETS = {"AAPL": 0.3, "MSFT": 0.3, "XOM": 0.3}


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
    pd.testing.assert_frame_equal(view.risk[view.risk.portfolio == GROWTH].reset_index(drop=True),
                                  charts["risk"].data.reset_index(drop=True),
                                  check_dtype=False)


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
    view._approve_btn.clicks += 1  # rejected is final: the book says so
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
