"""Property tests: random sequences of registry operations keep the invariants.

Invariants after every step:
- no group contains itself (the hierarchy is acyclic);
- a group with a target allocation has a weight for exactly its members, summing to 1;
- cached positions equal a fresh replay of the ledger, for every portfolio;
- group membership agrees with an independent model of the operations that succeeded;
- a call that raises a pmkit error changes nothing (store byte-identical, no event);
  a call that succeeds writes at least one audit record.
"""

from __future__ import annotations

import math
from datetime import datetime

import hypothesis.strategies as st
from hypothesis import HealthCheck, event, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pmkit.errors import PmkitError
from pmkit.ledger import LedgerEntry
from pmkit.registry import ALLOCATION_TOLERANCE, Registry
from pmkit.store import open_store

PIDS = ["p1", "p2", "ns/p3", "ns/p4"]
GIDS = ["g1", "g2", "g3"]
IDS = PIDS + GIDS
ASSETS = ["AAA", "BBB"]


class RegistryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.reg = Registry(open_store(":memory:"))
        self.reg.add_user("u", can_create=True)
        self.user = self.reg.as_user("u")
        self.events: list = []
        self.reg.bus.subscribe("*", self.events.append)
        self.members: dict[str, list[str]] = {}  # model: group -> members
        self.deleted: set[str] = set()

    @initialize()
    def start_with_portfolios_and_empty_groups(self):
        for i, pid in enumerate(PIDS):
            self.reg.create_portfolio(pid, 1000.0 * i)
        for gid in GIDS:
            self.reg.create_group(gid)
            self.members[gid] = []

    def _attempt(self, fn, label: str) -> bool:
        before = self.reg.store.dump()
        n_events, n_audit = len(self.events), len(before["audit"])
        try:
            fn()
        except PmkitError as exc:
            event(f"{label}: {type(exc).__name__}")  # --hypothesis-show-statistics
            assert self.reg.store.dump() == before
            assert len(self.events) == n_events
            return False
        event(f"{label}: ok")
        assert len(self.reg.store.dump()["audit"]) > n_audit
        return True

    @rule(
        pid=st.sampled_from(PIDS),
        capital=st.floats(-10, 1e6) | st.just(math.nan),
        as_user=st.booleans(),
    )
    def create_portfolio(self, pid, capital, as_user):
        reg = self.user if as_user else self.reg
        self._attempt(lambda: reg.create_portfolio(pid, capital), "create_portfolio")

    @rule(gid=st.sampled_from(GIDS), members=st.lists(st.sampled_from(IDS), max_size=3))
    def create_group(self, gid, members):
        if self._attempt(lambda: self.reg.create_group(gid, members), "create_group"):
            self.members[gid] = list(members)

    @rule(gid=st.sampled_from(GIDS), member=st.sampled_from(IDS))
    def add_to_group(self, gid, member):
        if self._attempt(lambda: self.reg.add_to_group(gid, member), "add_to_group"):
            self.members[gid].append(member)

    @rule(gid=st.sampled_from(GIDS), member=st.sampled_from(IDS))
    def remove_from_group(self, gid, member):
        if self._attempt(lambda: self.reg.remove_from_group(gid, member), "remove_from_group"):
            self.members[gid].remove(member)

    @rule(
        gid=st.sampled_from(GIDS),
        raw=st.lists(st.floats(0, 1), min_size=1, max_size=4),
        normalise=st.booleans(),
    )
    def set_allocation(self, gid, raw, normalise):
        members = self.members.get(gid, [])
        weights = raw[: len(members)]
        if normalise and sum(weights) > 0:
            weights = [w / math.fsum(weights) for w in weights]
        alloc = dict(zip(members, weights, strict=False))
        self._attempt(lambda: self.reg.set_allocation(gid, alloc), "set_allocation")

    @rule(gid=st.sampled_from(GIDS))
    def clear_allocation(self, gid):
        self._attempt(lambda: self.reg.set_allocation(gid, None), "clear_allocation")

    @rule(
        pid=st.sampled_from(PIDS),
        asset=st.sampled_from(ASSETS),
        qty=st.floats(-50, 50) | st.just(math.nan),
        price=st.floats(0.01, 500) | st.sampled_from([0.0, -1.0, math.inf]),
    )
    def trade(self, pid, asset, qty, price):
        self._attempt(
            lambda: self.reg.record_trade(
                asset, qty, price, portfolio=pid, ts=datetime(2022, 1, 3)
            ),
            "trade",
        )

    @rule(
        pid=st.sampled_from(PIDS),
        op=st.sampled_from(["activate", "deactivate", "delete", "restore"]),
    )
    def lifecycle(self, pid, op):
        self._attempt(lambda: getattr(self.reg, op)(pid), "lifecycle")

    @rule(pid=st.sampled_from(PIDS), force=st.booleans())
    def hard_delete(self, pid, force):
        if self._attempt(lambda: self.reg.delete(pid, hard=True, force=force), "hard_delete"):
            self.deleted.add(pid)
            for m in self.members.values():
                if pid in m:
                    m.remove(pid)

    @rule(gid=st.sampled_from(GIDS), op=st.sampled_from(["activate_group", "deactivate_group"]))
    def group_lifecycle(self, gid, op):
        self._attempt(lambda: getattr(self.reg, op)(gid), "group_lifecycle")

    @invariant()
    def hierarchy_is_acyclic_and_matches_the_model(self):
        for g in self.reg.groups():
            assert g.id not in self.reg.ancestors(g.id)
            assert list(g.members) == self.members[g.id]

    @invariant()
    def allocations_cover_members_and_sum_to_one(self):
        for g in self.reg.groups():
            if g.allocation is not None:
                assert set(g.allocation) == set(g.members)
                assert abs(math.fsum(g.allocation.values()) - 1) <= ALLOCATION_TOLERANCE

    @invariant()
    def positions_equal_ledger_replay(self):
        store = self.reg.store
        seqs = [e.seq for e in store.ledger()]
        assert seqs == sorted(set(seqs))
        for pid in {e.portfolio for e in store.ledger()}:
            assert store.positions(pid) == store.replay(pid)
            assert all(isinstance(e, LedgerEntry) for e in store.ledger(pid))

    @invariant()
    def deleted_ids_stay_reserved_and_unlisted(self):
        listed = {p.id for p in self.reg.portfolios()}
        assert not (listed & self.deleted)
        for pid in self.deleted:
            assert self.reg.store.get("portfolio", pid).status == "deleted"


TestRegistryMachine = RegistryMachine.TestCase
TestRegistryMachine.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
