"""The approval workflow: every legal and illegal transition, maker-checker and role
denials, expiry, audit records, portfolio-routed events and group transfers."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from proposal_fixtures import AT, hand_proposal, line

from pmkit.demo import open_demo
from pmkit.errors import (
    AlreadyExistsError,
    InsufficientCashError,
    LifecycleError,
    MakerCheckerError,
    NotFoundError,
    PermissionDenied,
    TransitionError,
    ValidationError,
)
from pmkit.execution import OrderStatus, PaperBroker
from pmkit.rebalance import (
    TRANSITIONS,
    CashTransfer,
    ProposalBook,
    ProposalState,
    RebalanceProposal,
    TradeLine,
)

S = ProposalState
GROWTH, INCOME, BALANCED = "client_a/growth", "client_a/income", "client_b/balanced"


class Clock:
    """A settable "now" for expiry (tz-naive UTC)."""

    def __init__(self) -> None:
        self.now = datetime(2023, 1, 2, 9, 0)

    def __call__(self) -> datetime:
        return self.now


def make(
    market,
    pid="rb-1",
    *,
    trades=None,
    **kw,
) -> RebalanceProposal:
    if trades is None:
        trades = [line(market, GROWTH, "AAPL", -300.0), line(market, GROWTH, "KO", 400.0)]
    return hand_proposal(trades, pid, **kw)


@pytest.fixture
def reg():
    return open_demo()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def book(reg, clock):
    """user -> ProposalBook acting as that user."""
    return lambda user: ProposalBook(reg.as_user(user), clock=clock)


def broker(reg, clock, **kw):
    return PaperBroker(reg.as_user("alice"), clock=clock, **kw)


def times(reg, n=40):
    idx = reg.market.indexes["time"]
    return idx[idx.get_loc(AT) :][:n]


# -- proposing ----------------------------------------------------------------------------------
def test_propose_stores_the_whole_proposal_with_its_first_history_entry(reg, book):
    p = make(reg.market)
    stored = book("alice").propose(p)
    assert stored.history == [
        {"state": "proposed", "actor": "alice", "ts": "2023-01-02T09:00:00", "note": "manual"}
    ]
    assert stored.with_changes(history=[]) == p
    got = book("carol").get("rb-1")  # a viewer on the firm may read it
    assert got == stored
    rec = reg.store.get("proposal", "rb-1")
    assert rec.status == "proposed"
    [audit] = reg.store.audit(target="rb-1")
    assert (audit.actor, audit.action, audit.before) == ("alice", "proposal.create", None)
    assert [q.id for q in book("bob").list(state="proposed")] == ["rb-1"]
    assert book("bob").list(state="approved") == []
    assert book("dave").list() == []  # dave sees client_b only


@pytest.mark.parametrize(
    ("user", "change", "error", "field"),
    [
        ("alice", {"created_by": "bob"}, ValidationError, "created_by"),
        ("alice", {"state": S.APPROVED}, ValidationError, "state"),
        ("alice", {"portfolios": [GROWTH, BALANCED]}, ValidationError, "portfolios"),
        ("alice", {"scope_kind": "desk"}, ValidationError, "scope_kind"),
        ("alice", {"expires_at": "tomorrow"}, ValidationError, "expires_at"),
        ("carol", {"created_by": "carol"}, PermissionDenied, None),
        ("dave", {"created_by": "dave"}, PermissionDenied, None),
    ],
)
def test_bad_proposals_and_denied_proposers_change_nothing(reg, book, user, change, error, field):
    before = reg.store.dump()
    with pytest.raises(error) as info:
        book(user).propose(make(reg.market).with_changes(**change))
    if field is not None:
        assert info.value.field == field
    assert reg.store.dump() == before


def test_bad_trade_lines_are_named(reg, book):
    m = reg.market
    bad = [
        ([line(m, GROWTH, "AAPL", 1.0), line(m, GROWTH, "AAPL", 2.0)], "trades"),
        ([TradeLine(GROWTH, "AAPL", 0.0, 100.0)], "trades.quantity"),
        ([TradeLine(GROWTH, "AAPL", 1.0, -1.0)], "trades.price"),
        ([TradeLine(INCOME, "KO", 1.0, 60.0)], "trades.portfolio"),
        ([TradeLine(GROWTH, "AAPL", 1.0, float("nan"))], "trades.price"),
    ]
    before = reg.store.dump()
    for trades, field in bad:
        with pytest.raises(ValidationError) as info:
            book("alice").propose(make(m, trades=trades))
        assert info.value.field == field
    assert reg.store.dump() == before


def test_an_id_is_proposed_once(reg, book):
    book("alice").propose(make(reg.market))
    before = reg.store.dump()
    with pytest.raises(AlreadyExistsError):
        book("alice").propose(make(reg.market))
    assert reg.store.dump() == before
    with pytest.raises(NotFoundError):
        book("bob").approve("rb-nope")


# -- maker-checker and roles --------------------------------------------------------------------
def test_the_proposer_may_not_approve_even_as_manager_or_admin(reg, book):
    book("alice").propose(make(reg.market))
    before = reg.store.dump()
    # As a trader, alice lacks the role (and is not told about maker-checker).
    with pytest.raises(PermissionDenied) as info:
        book("alice").approve("rb-1")
    assert not isinstance(info.value, MakerCheckerError)
    assert info.value.needed == "manager"
    # Made a manager, she has the role; the four-eyes rule still refuses her.
    reg.grant("alice", "client_a", "manager")
    before = reg.store.dump()
    with pytest.raises(MakerCheckerError):
        book("alice").approve("rb-1")
    assert reg.store.dump() == before
    # An administrator is refused their own proposal too.
    book("system").propose(make(reg.market, "rb-2", by="system"))
    before = reg.store.dump()
    with pytest.raises(MakerCheckerError):
        book("system").approve("rb-2")
    assert reg.store.dump() == before
    # Anyone else with the role may: alice (now manager) approves the admin's.
    assert book("alice").approve("rb-2").state == S.APPROVED
    assert book("bob").approve("rb-1", note="ok").state == S.APPROVED


def test_role_denials_change_nothing(reg, book, clock):
    book("bob").propose(make(reg.market, by="bob"))
    book("alice").propose(make(reg.market, "rb-2"))
    paper = broker(reg, clock)
    denied = [
        lambda: book("alice").approve("rb-1"),  # a trader approving someone else's
        lambda: book("alice").reject("rb-1", "no"),
        lambda: book("carol").approve("rb-2"),  # a viewer
        lambda: book("carol").reject("rb-2", "no"),
        lambda: book("dave").approve("rb-2"),  # an owner, but of client_b
    ]
    before = reg.store.dump()
    for call in denied:
        with pytest.raises(PermissionDenied):
            call()
    assert reg.store.dump() == before
    book("bob").approve("rb-2")
    before = reg.store.dump()
    for call in (
        lambda: book("carol").submit("rb-2", paper),
        lambda: book("carol").cancel("rb-2", "stop"),
        lambda: book("dave").submit("rb-2", paper),
    ):
        with pytest.raises(PermissionDenied):
            call()
    assert reg.store.dump() == before


def test_reasons_are_required(reg, book):
    book("alice").propose(make(reg.market))
    before = reg.store.dump()
    for reason in ("", "   ", None):
        with pytest.raises(ValidationError) as info:
            book("bob").reject("rb-1", reason)
        assert info.value.field == "reason"
    assert reg.store.dump() == before


# -- transitions --------------------------------------------------------------------------------
def drive(reg, book, clock, state: ProposalState, pid: str = "rb-1") -> PaperBroker:
    """Bring a new proposal ``pid`` to ``state``; returns the broker working it."""
    paper = broker(reg, clock, participation=0.0002)
    expires = (clock.now + timedelta(hours=1)).isoformat() if state == S.EXPIRED else None
    book("alice").propose(make(reg.market, pid, expires_at=expires))
    if state == S.PROPOSED:
        return paper
    if state == S.REJECTED:
        book("bob").reject(pid, "too much turnover")
        return paper
    if state == S.EXPIRED:
        clock.now += timedelta(hours=2)
        assert [p.id for p in book("alice").expire_due()] == [pid]
        return paper
    book("bob").approve(pid)
    if state == S.APPROVED:
        return paper
    if state == S.CANCELLED:
        book("alice").cancel(pid, "changed our mind")
        return paper
    book("alice").submit(pid, paper)
    if state == S.SUBMITTED:
        return paper
    paper.step(AT)
    if state == S.PARTIALLY_FILLED:
        return paper
    paper.run_until_filled(times(reg)[1:])
    assert state == S.FILLED
    return paper


OPS = {
    S.APPROVED: lambda book, paper: book("bob").approve("rb-1"),
    S.REJECTED: lambda book, paper: book("bob").reject("rb-1", "no"),
    S.SUBMITTED: lambda book, paper: book("alice").submit("rb-1", paper),
    S.CANCELLED: lambda book, paper: book("alice").cancel("rb-1", "stop", paper),
}
ILLEGAL = [(s, op) for s in S for op in OPS if op not in TRANSITIONS[s]]


@pytest.mark.parametrize(("state", "op"), ILLEGAL, ids=[f"{s}->{o}" for s, o in ILLEGAL])
def test_illegal_transitions_raise_and_change_nothing(reg, book, clock, state, op):
    paper = drive(reg, book, clock, state)
    assert book("alice").get("rb-1").state == state
    before = reg.store.dump()
    with pytest.raises(TransitionError) as info:
        OPS[op](book, paper)
    assert info.value.status == str(state)
    assert sorted(info.value.allowed) == sorted(str(s) for s in TRANSITIONS[state])
    assert reg.store.dump() == before


def test_every_legal_transition_happens_and_is_recorded(reg, book, clock):
    m = reg.market
    ids = {}
    for i, state in enumerate([S.REJECTED, S.EXPIRED, S.CANCELLED, S.FILLED], start=1):
        drive(reg, book, clock, state, f"rb-{i}")
        ids[state] = f"rb-{i}"
    # approved -> expired
    book("alice").propose(make(m, "rb-5", expires_at=(clock.now + timedelta(hours=1)).isoformat()))
    book("bob").approve("rb-5")
    clock.now += timedelta(hours=2)
    assert [p.id for p in book("alice").expire_due()] == ["rb-5"]
    # submitted -> cancelled, submitted -> filled (one line, no participation limit),
    # partially_filled -> cancelled
    paper = broker(reg, clock, participation=0.0002)
    for pid in ("rb-6", "rb-8"):
        book("alice").propose(make(m, pid))
        book("bob").approve(pid)
        book("alice").submit(pid, paper)
    paper.step(AT)  # both fill in part
    book("alice").cancel("rb-8", "stop", paper)
    book("alice").propose(make(m, "rb-7", trades=[line(m, GROWTH, "KO", 10.0)]))
    book("bob").approve("rb-7")
    book("alice").submit("rb-7", broker(reg, clock, name="fast"))
    broker(reg, clock, name="fast").step(AT)
    book("alice").propose(make(m, "rb-9"))
    book("bob").approve("rb-9")
    book("alice").submit("rb-9", paper)
    book("alice").cancel("rb-9", "stop", paper)

    seen = set()
    for p in book("system").list():
        states = [h["state"] for h in p.history]
        assert states[0] == "proposed"
        seen |= {(S(a), S(b)) for a, b in pairwise(states)}
    assert seen == {(s, t) for s, nxt in TRANSITIONS.items() for t in nxt}


def test_a_filled_workflow_is_audited_transition_by_transition(reg, book, clock):
    drive(reg, book, clock, S.FILLED)
    p = book("alice").get("rb-1")
    states = [h["state"] for h in p.history]
    assert states[:4] == ["proposed", "approved", "submitted", "partially_filled"]
    assert states[-1] == "filled" and set(states[3:-1]) == {"partially_filled"}
    assert [h["actor"] for h in p.history[:3]] == ["alice", "bob", "alice"]
    audit = [a for a in reg.store.audit(target="rb-1")]
    actions = [(a.action, a.actor) for a in audit]
    assert actions[:3] == [
        ("proposal.create", "alice"),
        ("proposal.approve", "bob"),
        ("proposal.submit", "alice"),
    ]
    # each fill's transition is an audit record of the fill's transaction
    fill_transitions = [a for a in audit[3:] if a.action.startswith("proposal.")]
    assert [a.after["state"] for a in fill_transitions] == states[3:]
    assert [a.before["state"] for a in fill_transitions] == states[2:-1]
    # one ledger trade per fill, memo = order id, and the lines add up the fills
    orders = {o.id: o for o in book("alice").orders("rb-1")}
    trades = [e for e in reg.store.ledger(GROWTH) if e.memo in orders]
    assert len(trades) == len(fill_transitions)
    for t in p.trades:
        mine = [e for e in trades if e.asset == t.asset]
        assert t.filled == t.quantity == sum(e.quantity for e in mine)
        assert t.fill_value == pytest.approx(sum(e.quantity * e.price for e in mine), rel=1e-12)
        assert t.fees == pytest.approx(sum(e.fee for e in mine), rel=1e-12)
    assert all(o.status == OrderStatus.FILLED for o in orders.values())


# -- expiry -------------------------------------------------------------------------------------
def test_a_proposal_past_its_expiry_cannot_be_approved_or_submitted(reg, book, clock):
    m = reg.market
    soon = (clock.now + timedelta(hours=1)).isoformat()
    book("alice").propose(make(m, "rb-1", expires_at=soon))
    book("alice").propose(make(m, "rb-2", expires_at=soon))
    book("alice").propose(make(m, "rb-3"))  # never expires
    book("bob").approve("rb-2")
    clock.now += timedelta(hours=2)
    before = reg.store.dump()
    with pytest.raises(LifecycleError) as info:
        book("bob").approve("rb-1")
    assert not isinstance(info.value, TransitionError) and info.value.status == "proposed"
    with pytest.raises(LifecycleError):
        book("alice").submit("rb-2", broker(reg, clock))
    assert reg.store.dump() == before
    assert book("carol").expire_due() == []  # a viewer's sweep expires nothing
    assert reg.store.dump() == before
    expired = book("alice").expire_due()
    assert [p.id for p in expired] == ["rb-1", "rb-2"]
    assert [p.history[-1]["state"] for p in expired] == ["expired", "expired"]
    assert book("alice").get("rb-3").state == S.PROPOSED
    assert book("alice").expire_due() == []
    # before its expiry a proposal is not touched
    book("alice").propose(make(m, "rb-4", expires_at=(clock.now + timedelta(days=1)).isoformat()))
    assert book("alice").expire_due(clock.now + timedelta(hours=23)) == []
    assert [p.id for p in book("alice").expire_due(clock.now + timedelta(days=2))] == ["rb-4"]


# -- events -------------------------------------------------------------------------------------
def test_events_reach_the_proposals_portfolios_only(reg, book, clock):
    got: dict[str, list] = {GROWTH: [], INCOME: [], BALANCED: [], "client_a": []}
    for pid in (GROWTH, INCOME, BALANCED):
        reg.bus.subscribe("proposal.*", got[pid].append, portfolio=pid)
    reg.bus.subscribe("proposal.*", got["client_a"].append, group="client_a")
    drive(reg, book, clock, S.APPROVED)
    assert [e.topic for e in got[GROWTH]] == ["proposal.proposed", "proposal.approved"]
    assert got[GROWTH][1].actor == "bob" and got[GROWTH][1].payload["proposal"] == "rb-1"
    assert got[INCOME] == [] and got[BALANCED] == []
    assert len(got["client_a"]) == 2  # a group's subscriber hears its members
    # a refused transition publishes nothing
    with pytest.raises(TransitionError):
        book("bob").approve("rb-1")
    assert len(got[GROWTH]) == 2


# -- groups and transfers -----------------------------------------------------------------------
def group_proposal(m, amount, *, sell=-200.0):
    trades = [line(m, GROWTH, "MSFT", sell), line(m, INCOME, "PG", 100.0)]
    return make(
        m,
        "rb-g",
        scope="client_a",
        kind="group",
        portfolios=[GROWTH, INCOME],
        trades=trades,
        transfers=[CashTransfer(GROWTH, INCOME, amount)],
    )


def test_group_transfers_are_paired_cash_flows_in_the_submit_transaction(reg, book, clock):
    events = []
    reg.bus.subscribe("proposal.submitted", events.append, group="client_a")
    cash = {p: reg.store.positions(p).cash for p in (GROWTH, INCOME)}
    book("alice").propose(group_proposal(reg.market, 50_000.0))
    book("bob").approve("rb-g")
    paper = broker(reg, clock)
    p = book("alice").submit("rb-g", paper)
    assert p.state == S.SUBMITTED and p.info["orders"] == ["rb-g-1", "rb-g-2"]
    flows = {e.portfolio: e for e in reg.store.ledger() if e.kind == "cash" and "rb-g" in e.memo}
    assert flows[GROWTH].amount == -50_000.0 and flows[INCOME].amount == 50_000.0
    assert reg.store.positions(GROWTH).cash == cash[GROWTH] - 50_000.0
    assert reg.store.positions(INCOME).cash == cash[INCOME] + 50_000.0
    # one transaction: the flows, the orders and the transition share one audit time
    stamps = {a.ts for a in reg.store.audit() if a.action in ("ledger.cash", "proposal.submit")}
    assert len(stamps) == 1
    # portfolio events for each member, and one naming the group itself
    assert [(e.portfolio, e.group) for e in events] == [
        (GROWTH, None),
        (INCOME, None),
        (None, "client_a"),
    ]
    paper.run_until_filled(times(reg))
    assert book("alice").get("rb-g").state == S.FILLED
    for pid in (GROWTH, INCOME):
        assert reg.store.positions(pid) == reg.store.replay(pid)
        assert reg.store.positions(pid).cash >= 0


def test_an_unfunded_transfer_is_refused_before_anything_changes(reg, book, clock):
    growth_cash = reg.store.positions(GROWTH).cash
    m = reg.market
    sale = 200 * float(m["close"].sel(asset="MSFT", time=AT))
    book("alice").propose(group_proposal(m, growth_cash + sale))  # more than cash + sale
    book("bob").approve("rb-g")
    before = reg.store.dump()
    with pytest.raises(InsufficientCashError) as info:
        book("alice").submit("rb-g", broker(reg, clock))
    assert info.value.field == "transfers"
    assert reg.store.dump() == before


# -- cancelling ---------------------------------------------------------------------------------
def test_cancelling_a_partly_filled_proposal_cancels_its_orders(reg, book, clock):
    paper = drive(reg, book, clock, S.PARTIALLY_FILLED)
    before = reg.store.dump()
    with pytest.raises(ValidationError) as info:  # its orders are open at the paper broker
        book("alice").cancel("rb-1", "stop")
    assert info.value.field == "broker"
    with pytest.raises(ValidationError):
        book("alice").cancel("rb-1", "stop", broker(reg, clock, name="other"))
    assert reg.store.dump() == before
    filled = {e.seq for e in reg.store.ledger(GROWTH)}
    p = book("alice").cancel("rb-1", "market moved", paper)
    assert p.state == S.CANCELLED and p.history[-1]["note"] == "market moved"
    assert paper.open_orders() == []
    assert {o.status for o in book("alice").orders("rb-1")} == {OrderStatus.CANCELLED}
    assert paper.run_until_filled(times(reg)[1:]) == []
    assert {e.seq for e in reg.store.ledger(GROWTH)} == filled  # fills booked before stay
    assert any(t.filled for t in p.trades)


# -- persistence --------------------------------------------------------------------------------
def test_the_workflow_resumes_after_a_restart(tmp_path, clock):
    path = str(tmp_path / "book.db")
    reg = open_demo(path)
    ProposalBook(reg.as_user("alice"), clock=clock).propose(make(reg.market))
    approved = ProposalBook(reg.as_user("bob"), clock=clock).approve("rb-1", note="fine")
    reg.store.close()
    reg = open_demo(path)  # a new process
    book = ProposalBook(reg.as_user("alice"), clock=clock)
    assert book.get("rb-1") == approved
    with pytest.raises(NotFoundError):  # dave sees client_b only: not even that it exists
        ProposalBook(reg.as_user("dave")).get("rb-1")
    paper = PaperBroker(reg.as_user("alice"), clock=clock)
    p = book.submit("rb-1", paper)
    assert [o.id for o in paper.open_orders()] == p.info["orders"] == ["rb-1-1", "rb-1-2"]
    paper.step(AT)
    assert book.get("rb-1").state == S.FILLED
    assert [h["state"] for h in book.get("rb-1").history] == [
        "proposed",
        "approved",
        "submitted",
        "partially_filled",
        "filled",
    ]
    reg.store.close()
