"""Access control has no back doors: a service mutation cannot touch grants, users or the
registry's own records, every write it makes is audited with before/after images, and
user deactivation and admin revocation are dedicated, audited actions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmkit.errors import LifecycleError, NotFoundError, PermissionDenied, ValidationError
from pmkit.registry import Registry
from pmkit.store import open_store


@pytest.fixture
def reg(tmp_path) -> Registry:
    r = Registry(open_store(tmp_path / "s.sqlite"))
    r.add_user("alice", can_create=True)
    r.add_user("bob")
    r.create_portfolio("desk/a", 1_000.0)
    r.create_group("desk", ["desk/a"])
    r.grant("alice", "desk/a", "trader")
    return r


def _refused(reg: Registry, body, error=PermissionDenied):
    before = reg.store.dump()
    with pytest.raises(error) as info, reg.as_user("alice").mutation("svc.action", "desk/a") as m:
        body(m)
    assert reg.store.dump() == before
    return info.value


@pytest.mark.parametrize(
    "body",
    [
        lambda m: m.tx.set_grant("alice", "desk/a", "owner"),
        lambda m: m.tx.set_grant("bob", "desk", None),
        lambda m: m.tx.put("user", "alice", "active", {"admin": True, "can_create": True}),
        lambda m: m.tx.put("user", "mallory", "active", {"admin": True}),
        lambda m: m.tx.remove("user", "bob"),
        lambda m: m.tx.put("portfolio", "desk/a", "active", {"name": "x", "currency": "USD"}),
        lambda m: m.tx.put("group", "desk", "active", {"name": "x"}),
        lambda m: m.tx.put("setting", "registry", "active", {"isolation": {"events": False}}),
        lambda m: m.tx.set_members("desk", [("desk/a", None), ("evil", None)]),
        lambda m: m.tx.append([]),
    ],
    ids=[
        "grant-self-owner", "revoke-other", "self-admin", "new-admin-user", "remove-user",
        "rewrite-portfolio", "rewrite-group", "rewrite-settings", "members", "raw-ledger",
    ],
)
def test_a_service_mutation_cannot_write_registry_records(reg, body):
    err = _refused(reg, body)
    assert err.user == "alice"


def test_even_an_admin_mutation_cannot_change_grants(reg):
    before = reg.store.dump()
    with pytest.raises(PermissionDenied), reg.mutation("svc.action", "desk/a") as m:
        m.tx.set_grant("bob", "desk/a", "owner")
    assert reg.store.dump() == before


def test_the_dedicated_ledger_path_still_works_inside_a_mutation(reg):
    with reg.as_user("alice").mutation("svc.fill", "desk/a") as m:
        seq = m.append_cash("desk/a", 5.0, memo="fill rebate")
    assert reg.positions("desk/a").cash == pytest.approx(1_005.0)
    assert any(a.action == "ledger.cash" and a.after["seq"] == seq for a in reg.store.audit())


def test_unaudited_service_writes_get_before_after_records(reg):
    with reg.as_user("alice").mutation("svc.create", "desk/a") as m:
        m.tx.put("widget", "w1", "open", {"size": 1})
    with reg.as_user("alice").mutation("svc.update", "desk/a") as m:
        m.tx.put("widget", "w1", "open", {"size": 2})
        m.tx.put("widget", "w1", "closed", {"size": 3})  # one record: first before, last after
        m.tx.put("widget", "w2", "open", {"size": 9})
        m.record({"anything": 1}, {"anything": 2})  # covers the primary target only
    with reg.as_user("alice").mutation("svc.remove", "desk/a") as m:
        m.tx.remove("widget", "w2")
    writes = [(a.action, a.target, a.before, a.after) for a in reg.store.audit()
              if a.action == "widget.write"]
    assert writes == [
        ("widget.write", "w1", None, {"status": "open", "data": {"size": 1}}),
        ("widget.write", "w1", {"status": "open", "data": {"size": 1}},
         {"status": "closed", "data": {"size": 3}}),
        ("widget.write", "w2", None, {"status": "open", "data": {"size": 9}}),
        ("widget.write", "w2", {"status": "open", "data": {"size": 9}}, None),
    ]
    assert all(a.actor == "alice" for a in reg.store.audit() if a.action == "widget.write")


def test_a_write_the_service_audits_itself_is_not_audited_twice(reg):
    with reg.as_user("alice").mutation("svc.create", "w9") as m:
        m.tx.put("widget", "w9", "open", {"size": 1})
        m.record(None, {"size": 1})
    assert [a.action for a in reg.store.audit(target="w9")] == ["svc.create"]


@settings(max_examples=30, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["put", "remove"]), st.sampled_from(["k1", "k2", "k3"]),
                  st.integers(0, 5)),
        min_size=1,
        max_size=8,
    )
)
def test_every_write_is_covered_by_its_before_and_after(ops):
    reg = Registry(open_store(":memory:"))
    state = {}
    for op, key, value in ops:  # first commit: some records exist beforehand
        if op == "put":
            state[key] = value
    with reg.mutation("seed", "x") as m:
        for key, value in state.items():
            m.tx.put("thing", key, "s", {"v": value})
    before = {r.id: {"status": "s", "data": r.data} for r in reg.store.list("thing")}
    mark = reg.store.audit()[-1].seq
    with reg.mutation("svc.ops", "x") as m:
        for op, key, value in ops:
            if op == "put":
                m.tx.put("thing", key, "s", {"v": -value})
            else:
                m.tx.remove("thing", key)
    after = {r.id: {"status": "s", "data": r.data} for r in reg.store.list("thing")}
    notes = {a.target: (a.before, a.after) for a in reg.store.audit()
             if a.action == "thing.write" and a.seq > mark}
    assert set(notes) == {k for _, k, _ in ops}
    for key, (b, a) in notes.items():
        assert b == before.get(key) and a == after.get(key)


# -- users: deactivation and admin rights -----------------------------------------------
def test_deactivated_user_can_neither_read_nor_write_until_reactivated(reg):
    alice = reg.as_user("alice")
    alice.record_cash(10.0, portfolio="desk/a")
    assert reg.deactivate_user("alice") is True
    assert reg.deactivate_user("alice") is False  # nothing written the second time
    assert reg.user_info("alice")["status"] == "inactive"
    before = reg.store.dump()
    for call in (lambda: alice.record_cash(10.0, portfolio="desk/a"),
                 lambda: alice.positions("desk/a"),
                 lambda: alice.create_portfolio("alice/new")):
        with pytest.raises(PermissionDenied):
            call()
    assert reg.store.dump() == before
    (rec,) = [a for a in reg.store.audit(target="alice") if a.action == "user.deactivate"]
    assert rec.before["status"] == "active" and rec.after["status"] == "inactive"
    assert rec.actor == "system"
    assert reg.activate_user("alice") is True
    alice.record_cash(1.0, portfolio="desk/a")  # the grant survived deactivation
    assert reg.positions("desk/a").cash == pytest.approx(1_011.0)


def test_only_admins_manage_users_and_system_stays(reg):
    before = reg.store.dump()
    with pytest.raises(PermissionDenied):
        reg.as_user("alice").deactivate_user("bob")
    with pytest.raises(PermissionDenied):
        reg.as_user("alice").set_admin("alice", True)
    with pytest.raises(LifecycleError, match="built-in"):
        reg.deactivate_user("system")
    with pytest.raises(LifecycleError):
        reg.set_admin("system", False)
    with pytest.raises(NotFoundError):
        reg.deactivate_user("nobody")
    with pytest.raises(ValidationError, match="admin"):
        reg.set_admin("bob", "yes")
    assert reg.store.dump() == before


def test_admin_rights_granted_and_revoked_with_audit(reg):
    bob = reg.as_user("bob")
    with pytest.raises(PermissionDenied):
        bob.add_user("carol")
    assert reg.set_admin("bob", True) is True
    bob.add_user("carol")
    assert bob.can("portfolio.delete", "desk/a")
    assert reg.set_admin("bob", False) is True
    assert not bob.can("portfolio.delete", "desk/a")
    with pytest.raises(PermissionDenied):
        bob.add_user("dave")
    images = [(a.before["admin"], a.after["admin"]) for a in reg.store.audit(target="bob")
              if a.action == "user.set_admin"]
    assert images == [(False, True), (True, False)]


def test_an_admin_can_revoke_their_own_rights_and_loses_them(reg):
    reg.set_admin("bob", True)
    bob = reg.as_user("bob")
    assert bob.set_admin("bob", False) is True
    with pytest.raises(PermissionDenied):
        bob.set_admin("bob", True)
