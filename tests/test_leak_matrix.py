"""Nobody sees more than their role: every read API and every event topic, user by portfolio.

Two desks on the demo registry: ``client_a`` (growth, income) and ``client_b``
(balanced, factors), both in the group ``firm``. Each desk has signals, proposals,
orders, strategies, trades and cash flows. For each user, the portfolios a read
API or an event shows must be exactly the portfolios the user's grants reach
(computed here from the grants the test makes, independently of the registry's
policy): never another desk's (no leak), and every one of their own that has
something to show (the check is not vacuous).
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict

import pandas as pd
import pytest
from proposal_fixtures import hand_proposal, line
from test_coordinator import returns_with_sharpe, sig

from pmkit.analytics.overview import portfolio_overview
from pmkit.coordinator import StrategyCoordinator
from pmkit.demo import open_demo
from pmkit.errors import NotFoundError, PermissionDenied
from pmkit.execution import PaperBroker
from pmkit.rebalance import ProposalBook
from pmkit.registry import Registry
from pmkit.store import SQLiteStore
from pmkit.strategies import StrategyManager

DESK_A = ("client_a/growth", "client_a/income")
DESK_B = ("client_b/balanced", "client_b/factors")
EVERYTHING = frozenset(DESK_A + DESK_B)
#: Users and the portfolios their grants reach (demo grants plus the two added below).
VISIBLE = {
    "system": EVERYTHING,
    "bob": EVERYTHING,  # manager on firm
    "carol": EVERYTHING,  # viewer on firm
    "alice": frozenset(DESK_A),  # trader on client_a
    "vic": frozenset(DESK_A),  # viewer on client_a (added)
    "dave": frozenset(DESK_B),  # owner of client_b
    "tess": frozenset(DESK_B),  # trader on client_b (added)
}
SIGNAL_PORTFOLIOS = ("client_a/growth", "client_b/balanced")


@functools.cache
def _template() -> Registry:
    reg = open_demo()
    reg.add_user("vic")
    reg.grant("vic", "client_a", "viewer")
    reg.add_user("tess")
    reg.grant("tess", "client_b", "trader")
    bob = reg.as_user("bob")
    for k, pid in enumerate(SIGNAL_PORTFOLIOS):
        StrategyManager(bob, pid).register_strategy("alpha", returns_with_sharpe(1.2, k), 0.5)
    return reg


@pytest.fixture
def desks():
    """A private copy of the two-desk registry, with activity in both desks."""
    src = _template()
    dst = SQLiteStore(":memory:")
    src.store._conn.backup(dst._conn)
    reg = Registry(dst, market=src.market)
    coord = StrategyCoordinator(reg.as_user("bob"))
    for pid in SIGNAL_PORTFOLIOS:
        coord.process_signal(sig(portfolio=pid, symbol="MSFT" if "client_a" in pid else "JPM"))
    book, checker = ProposalBook(reg.as_user("bob")), ProposalBook(reg)
    broker = PaperBroker(reg)
    for n, (pid, asset) in enumerate((("client_a/growth", "AAPL"), ("client_b/balanced", "JPM"))):
        book.propose(hand_proposal([line(reg.market, pid, asset, 10.0)], f"rb-{n}", by="bob",
                                   scope=pid))
        checker.approve(f"rb-{n}")
        checker.submit(f"rb-{n}", broker)
    for pid in EVERYTHING:
        reg.record_cash(1_000.0, portfolio=pid, ts=pd.Timestamp("2023-01-03").to_pydatetime())
    return reg, coord


def _assert_exact(user: str, seen: set[str], wanted: set[str], api: str) -> None:
    leaked = seen - VISIBLE[user]
    assert not leaked, f"{api} shows {user} {sorted(leaked)}"
    missing = wanted - seen
    assert not missing, f"{api} hides {sorted(missing)} from {user}"


READS = {
    "portfolios": lambda reg, coord: {p.id for p in reg.portfolios()},
    "summary": lambda reg, coord: set(reg.summary().index),
    "group_tree": lambda reg, coord: {
        n.id for _, n in reg.group_tree().walk() if n.kind == "portfolio"
    },
    "holdings": lambda reg, coord: set(reg.holdings()["portfolio"].values.tolist()),
    "overview": lambda reg, coord: set(portfolio_overview(reg).index),
    "queued_signals": lambda reg, coord: {s.portfolio for s in coord.queued_signals()},
    "live_signals": lambda reg, coord: {s.portfolio for s in coord.live_signals()},
    "signal_records": lambda reg, coord: {d["portfolio"] for d in coord.signal_records()},
    "active_signals": lambda reg, coord: set(coord.get_active_signals_summary()["by_portfolio"]),
    "proposals": lambda reg, coord: {p.scope for p in ProposalBook(reg).list()},
    "open_orders": lambda reg, coord: {o.portfolio for o in PaperBroker(reg).open_orders()},
    "view.records(order)": lambda reg, coord: {
        r.data["portfolio"] for r in reg.view().records("order")
    },
    "view.records(strategy)": lambda reg, coord: {
        r.id.split("#")[0] for r in reg.view().records("strategy")
    },
    "view.audit": lambda reg, coord: {
        a.target for a in reg.view().audit() if a.target in EVERYTHING
    },
}
#: Portfolios each read has something about (what a user who sees everything sees).
HAS = {
    "queued_signals": set(SIGNAL_PORTFOLIOS),
    "live_signals": set(SIGNAL_PORTFOLIOS),
    "signal_records": set(SIGNAL_PORTFOLIOS),
    "active_signals": set(SIGNAL_PORTFOLIOS),
    "proposals": {"client_a/growth", "client_b/balanced"},
    "open_orders": {"client_a/growth", "client_b/balanced"},
    "view.records(order)": {"client_a/growth", "client_b/balanced"},
    "view.records(strategy)": set(SIGNAL_PORTFOLIOS),
}


@pytest.mark.parametrize("api", sorted(READS))
def test_each_read_shows_a_user_exactly_their_portfolios(desks, api):
    reg, coord = desks
    for user in VISIBLE:
        seen = READS[api](reg.as_user(user), coord.as_user(user))
        _assert_exact(user, seen, VISIBLE[user] & HAS.get(api, EVERYTHING), api)


def test_processing_statistics_count_only_the_users_portfolios(desks):
    _, coord = desks
    per = {
        u: coord.as_user(u).get_processing_stats()["received"] for u in ("alice", "dave", "bob")
    }
    assert per == {"alice": 1, "dave": 1, "bob": 2}
    assert coord.as_user("vic").pending == 1 and coord.as_user("bob").pending == 2


@pytest.mark.parametrize("user", ["alice", "vic"])
def test_another_desks_records_are_missing_not_forbidden(desks, user):
    reg, coord = desks
    theirs = next(d["id"] for d in coord.signal_records() if d["portfolio"] == "client_b/balanced")
    with pytest.raises(NotFoundError):
        coord.as_user(user).record(theirs)
    with pytest.raises(NotFoundError):
        ProposalBook(reg.as_user(user)).get("rb-1")
    # the audit trail of another desk's proposal is empty for them; their own desk's is not
    assert reg.as_user(user).view().audit(target="rb-1") == []
    assert {a.action for a in reg.as_user(user).view().audit(target="rb-0")} >= {
        "proposal.create", "proposal.approve"}
    with pytest.raises(PermissionDenied):
        reg.as_user(user).ledger("client_b/balanced")
    with pytest.raises(PermissionDenied):
        StrategyManager(reg.as_user(user), "client_b/balanced").strategies()


def test_a_desks_trader_takes_their_own_signal_whatever_is_ahead(desks):
    _, coord = desks
    # client_b's backlog is bigger and more urgent than client_a's one signal
    for sym in ("PFE", "CVX", "WMT"):  # room under the 20 % position limit at entry 100
        coord.process_signal(sig(portfolio="client_b/balanced", symbol=sym, confidence=0.9))
    queue = coord.queued_signals()
    assert queue[0].portfolio == "client_b/balanced"  # an admin would take client_b's first
    theirs = sum(s.portfolio == "client_b/balanced" for s in queue)
    assert theirs == 4
    alice = coord.as_user("alice")
    got = asyncio.run(alice.get_next_signal(timeout=0))
    assert got is not None and got.portfolio == "client_a/growth"
    assert asyncio.run(alice.get_next_signal(timeout=0)) is None  # nothing else of hers
    tess = coord.as_user("tess")
    taken = [asyncio.run(tess.get_next_signal(timeout=0)) for _ in range(4)]
    assert {s.portfolio for s in taken} == {"client_b/balanced"}
    assert asyncio.run(tess.get_next_signal(timeout=0)) is None
    assert asyncio.run(coord.as_user("carol").get_next_signal(timeout=0)) is None  # a viewer


def test_a_trader_can_take_from_one_portfolio_or_group_of_their_own(desks):
    _, coord = desks
    alice = coord.as_user("alice")
    with pytest.raises(NotFoundError):  # another desk's queue is not even there for her
        asyncio.run(alice.get_next_signal(timeout=0, portfolio="client_b/balanced"))
    with pytest.raises(NotFoundError):
        asyncio.run(alice.get_next_signal(timeout=0, portfolio="client_b"))
    assert asyncio.run(alice.get_next_signal(timeout=0, portfolio="client_a/income")) is None
    got = asyncio.run(alice.get_next_signal(timeout=0, portfolio="client_a"))
    assert got is not None and got.portfolio == "client_a/growth"
    bob = coord.as_user("bob")  # client_b's signal stays for its own desk's queue
    assert asyncio.run(bob.get_next_signal(timeout=0, portfolio="client_a")) is None
    taken = asyncio.run(bob.get_next_signal(timeout=0, portfolio="client_b/balanced"))
    assert taken is not None and taken.portfolio == "client_b/balanced"


def _act_in_both_desks(reg: Registry, coord: StrategyCoordinator) -> None:
    """One action per event topic family, in each desk."""
    for pid in ("client_a/income", "client_b/factors"):
        reg.record_cash(10.0, portfolio=pid)
        reg.set_config(pid, {"note_for_events": 1})
        reg.update_portfolio(pid, description="touched")
    for pid, sym in (("client_a/growth", "AMD"), ("client_b/balanced", "PFE")):
        coord.process_signal(sig(portfolio=pid, symbol=sym))
    for pid in ("client_a/growth", "client_b/balanced"):
        reg.record_trade("MSFT" if "a/" in pid else "JPM", 1.0, _close(reg, pid), portfolio=pid)
    book = ProposalBook(reg.as_user("bob"))
    for n, pid in enumerate(("client_a/income", "client_b/factors")):
        asset = "KO" if "a/" in pid else "QUAL"
        book.propose(hand_proposal([line(reg.market, pid, asset, 1.0)], f"ev-{n}", by="bob",
                                   scope=pid))
    PaperBroker(reg).step(pd.Timestamp("2022-12-02"))
    reg.grant("carol", "client_b", "viewer")
    reg.set_allocation("client_a", {"client_a/growth": 0.5, "client_a/income": 0.5})
    reg.set_streaming({"ui_max_rate": 5.0})  # registry-wide: administrators only
    reg.add_user("temp")
    reg.deactivate_user("temp")  # about temp: administrators (and temp, who cannot read now)


def _close(reg: Registry, pid: str) -> float:
    asset = "MSFT" if "a/" in pid else "JPM"
    return float(reg.market["close"].sel(asset=asset).dropna("time")[-1])


def test_each_event_topic_reaches_exactly_the_users_who_may_read_it(desks):
    reg, coord = desks
    seen: dict[str, list] = defaultdict(list)
    subs = [
        reg.as_user(u).subscribe("*", functools.partial(lambda u, e: seen[u].append(e), u))
        for u in VISIBLE
    ]
    _act_in_both_desks(reg, coord)
    for s in subs:
        s.cancel()
    everyone = seen["system"]
    topics = {e.topic for e in everyone}
    for family in ("ledger.", "signal.", "proposal.", "order.", "config.", "portfolio.",
                   "access.", "group.", "registry.", "user."):
        assert any(t.startswith(family) for t in topics), f"no {family}* event was produced"
    groups_of = {"client_a": set(DESK_A), "client_b": set(DESK_B), "firm": set(EVERYTHING)}
    for user, events in seen.items():
        for e in events:
            reach = {e.portfolio} if e.portfolio else groups_of.get(e.group, set())
            if e.portfolio is None and e.group is None:
                assert user == "system" or e.payload.get("user") == user, (user, e.topic)
                continue
            assert reach & VISIBLE[user], f"{user} got {e.topic} about {e.portfolio or e.group}"
        by_topic = {(e.topic, e.portfolio, e.group) for e in events}
        expected = {
            (e.topic, e.portfolio, e.group)
            for e in everyone
            if (e.portfolio in VISIBLE[user])
            or (e.group is not None and groups_of.get(e.group, set()) <= VISIBLE[user])
        }
        assert expected <= by_topic, f"{user} missed {sorted(map(str, expected - by_topic))[:3]}"


def test_a_subscriber_without_rights_on_either_desk_receives_nothing(desks):
    reg, coord = desks
    reg.add_user("nobody")
    got: list = []
    reg.as_user("nobody").subscribe("*", got.append)
    _act_in_both_desks(reg, coord)
    assert got == []
