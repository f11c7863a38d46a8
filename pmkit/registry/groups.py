"""Group actions: create, members, target allocations, activation, archive and delete.

A group holds portfolios and other groups (no cycles); roles on a group
apply to its members. A target allocation, when set, gives every member a
weight in [0, 1], the weights summing to 1 within `ALLOCATION_TOLERANCE`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pmkit.errors import AllocationError, CycleError, NotFoundError, ValidationError
from pmkit.events import Event
from pmkit.registry.access import Role
from pmkit.registry.catalogue import check_free, get_group, get_portfolio, target_kind
from pmkit.registry.config import json_checked
from pmkit.registry.hierarchy import ancestors, leaf_portfolios, nested_groups
from pmkit.registry.ids import validate_id
from pmkit.registry.lifecycle import detach, set_portfolio_status
from pmkit.registry.records import GroupInfo
from pmkit.store.base import Transaction
from pmkit.validation import (
    MAX_MEMO_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TEXT_LENGTH,
    check_number,
    check_text,
)

if TYPE_CHECKING:
    from pmkit.registry.registry import Registry

__all__ = [
    "ALLOCATION_TOLERANCE",
    "add_to_group",
    "create_group",
    "create_group_in",
    "delete_group",
    "group_transition",
    "remove_from_group",
    "set_allocation",
    "validated_allocation",
]

#: Target allocations must sum to 1 within this.
ALLOCATION_TOLERANCE = 1e-9


def create_group(
    reg: Registry,
    group_id: str,
    members: Iterable[str] = (),
    *,
    name: str | None = None,
    description: str = "",
    allocation: Mapping[str, float] | None = None,
    config: Mapping[str, Any] | None = None,
) -> str:
    """Create a group of portfolios and/or groups.

    Parameters
    ----------
    group_id : str
        New id (shares the id space with portfolios).
    members : iterable of str
        Portfolio or group ids. Adding one needs OWNER on it, since the
        group's role holders gain their roles on it.
    allocation : mapping, optional
        Target weight per member (fractions, each in [0, 1], summing to 1
        within `ALLOCATION_TOLERANCE`), covering exactly the members.
    config : mapping, optional
        Configuration members inherit.
    """
    if isinstance(members, str | bytes | Mapping) or not isinstance(members, Iterable):
        raise ValidationError("members", members, "must be a list of ids")
    with reg._tx("group.create", group_id) as (tx, events):
        create_group_in(
            reg, tx, events, group_id, list(members), name, description, allocation, config
        )
    return group_id


def create_group_in(
    reg: Registry,
    tx: Transaction,
    events: list[Event],
    gid: str,
    members: list[str],
    name: str | None,
    description: str,
    allocation: Mapping[str, float] | None,
    config: Mapping[str, Any] | None,
) -> None:
    """Create group ``gid`` inside ``tx`` (the creator becomes its owner)."""
    validate_id(gid, "group_id")
    reg._require_creator(tx, "group.create", gid)
    check_free(tx, gid)
    if name is not None:
        check_text(name, "name", max_length=MAX_NAME_LENGTH, multiline=False, allow_empty=False)
    check_text(description, "description", max_length=MAX_TEXT_LENGTH)
    for m in members:
        validate_id(m, "members")
    if len(set(members)) != len(members):
        dup = next(m for m in members if members.count(m) > 1)
        raise ValidationError("members", dup, "listed twice")
    for m in members:
        target_kind(tx, m)
        reg._require(tx, "group.join", m)
    weights = validated_allocation(gid, members, allocation)
    data = {
        "name": name or gid,
        "description": description,
        "config": json_checked(config, "config"),
    }
    tx.put("group", gid, "active", data)
    tx.set_members(gid, list(zip(members, weights, strict=True)))
    if not reg._is_admin(tx):
        tx.set_grant(reg.user, gid, str(Role.OWNER))
    alloc = {m: w for m, w in zip(members, weights, strict=True) if w is not None}
    after = {"id": gid, **data, "members": members, "allocation": alloc}
    if tx.before is None and tx.after is None:
        tx.record(None, after)
    else:
        tx.note("group.create", gid, None, after)
    events.append(reg._event("group.created", group=gid, members=members))


def validated_allocation(
    gid: str, members: Sequence[str], allocation: Mapping[str, float] | None
) -> list[float | None]:
    """Weights per member in member order (None each without an allocation), checked."""
    if allocation is None:
        return [None] * len(members)
    if not isinstance(allocation, Mapping) or not all(isinstance(k, str) for k in allocation):
        raise AllocationError("allocation", allocation, "must map member id -> weight")
    extra = sorted(set(allocation) - set(members))
    if extra:
        raise AllocationError("allocation", extra, f"not members of group {gid!r}")
    missing = sorted(set(members) - set(allocation))
    if missing:
        raise AllocationError("allocation", missing, f"members of {gid!r} without a weight")
    weights = {
        m: check_number(w, f"allocation[{m}]", minimum=0.0, maximum=1.0, error=AllocationError)
        for m, w in allocation.items()
    }
    total = math.fsum(weights.values())
    if abs(total - 1.0) > ALLOCATION_TOLERANCE:
        raise AllocationError(
            "allocation",
            weights,
            f"weights sum to {total!r}, not 1 (tolerance {ALLOCATION_TOLERANCE:g})",
        )
    return [weights[m] for m in members]


def members_change(
    reg: Registry,
    group_id: str,
    action: str,
    member: str,
    new_members: Any,
    allocation: Mapping[str, float] | None,
) -> None:
    """Replace a group's members by ``new_members(tx, group)``, with the new allocation."""
    with reg._tx(action, group_id) as (tx, events):
        g = get_group(tx, group_id)
        reg._require(tx, "group.members", group_id)
        target_kind(tx, member)
        members = new_members(tx, g)
        if allocation is None and g.allocation is not None:
            raise AllocationError(
                "allocation",
                None,
                f"group {group_id!r} has a target allocation; pass allocation= with a weight"
                f" for each of its {len(members)} members",
            )
        weights = validated_allocation(group_id, members, allocation)
        tx.set_members(group_id, list(zip(members, weights, strict=True)))
        alloc = dict(zip(members, weights, strict=True)) if allocation else None
        tx.record(
            {"members": list(g.members), "allocation": g.allocation},
            {"members": members, "allocation": alloc},
        )
        topic = "group.member_added" if action == "group.add" else "group.member_removed"
        events.append(reg._event(topic, group=group_id, member=member))


def add_to_group(
    reg: Registry, group_id: str, member_id: str, *, allocation: Mapping[str, float] | None = None
) -> None:
    """Add a portfolio or group to a group.

    Needs MANAGER on the group and OWNER on the member. A group with a
    target allocation needs the new full ``allocation``.

    Raises
    ------
    CycleError
        If ``member_id`` is the group or contains it.
    """

    def new_members(tx: Transaction, g: GroupInfo) -> list[str]:
        reg._require(tx, "group.join", member_id)
        if member_id in g.members:
            raise ValidationError("member_id", member_id, f"already in group {group_id!r}")
        if member_id == group_id or member_id in ancestors(tx, group_id):
            raise CycleError(
                "member_id",
                member_id,
                f"group {member_id!r} contains {group_id!r}; adding it makes a cycle",
            )
        return [*g.members, member_id]

    members_change(reg, group_id, "group.add", member_id, new_members, allocation)


def remove_from_group(
    reg: Registry, group_id: str, member_id: str, *, allocation: Mapping[str, float] | None = None
) -> None:
    """Remove a member (needs MANAGER on the group).

    A group with a target allocation needs the new ``allocation`` for the
    remaining members.
    """

    def new_members(tx: Transaction, g: GroupInfo) -> list[str]:
        if member_id not in g.members:
            raise NotFoundError(f"member of group {group_id!r}", member_id)
        return [m for m in g.members if m != member_id]

    members_change(reg, group_id, "group.remove", member_id, new_members, allocation)


def set_allocation(
    reg: Registry,
    group_id: str,
    allocation: Mapping[str, float] | None,
    *,
    reason: str | None = None,
) -> None:
    """Set (or with None, clear) a group's target allocation between its members.

    Parameters
    ----------
    group_id : str
    allocation : mapping of member id to fraction, or None
        Fractions summing to 1 (within 1e-9) over the group's members.
    reason : str, optional
        Why (e.g. the optimizer that produced it); kept in the audit trail
        as a ``group.allocation.reason`` record of the same transaction
        and carried on the event.
    """
    if reason is not None:
        check_text(reason, "reason", max_length=MAX_MEMO_LENGTH, allow_empty=False)
    with reg._tx("group.allocation", group_id) as (tx, events):
        g = get_group(tx, group_id)
        reg._require(tx, "group.allocation", group_id)
        weights = validated_allocation(group_id, list(g.members), allocation)
        tx.set_members(group_id, list(zip(g.members, weights, strict=True)))
        new = None if allocation is None else dict(zip(g.members, weights, strict=True))
        tx.record(g.allocation, new)
        extra = {}
        if reason is not None:
            tx.note("group.allocation.reason", group_id, None, {"reason": reason})
            extra["reason"] = reason
        events.append(reg._event("group.allocation_changed", group=group_id, **extra))


def group_transition(reg: Registry, group_id: str, action: str, new: str) -> None:
    """(De)activate a group, its nested groups and their portfolios in one transaction."""
    allowed = ("inactive",) if new == "active" else ("active",)
    with reg._tx(action, group_id) as (tx, events):
        g = get_group(tx, group_id)
        reg._require(tx, action, group_id)
        changed = []
        for gid in [group_id, *nested_groups(tx, group_id)]:
            rec = tx.get("group", gid)
            if rec is not None and rec.status in allowed:
                tx.put("group", gid, new, rec.data)
                if gid != group_id:
                    tx.note(action, gid, {"status": rec.status}, {"status": new})
                events.append(reg._event(f"group.{new}", group=gid))
        for pid in leaf_portfolios(tx, group_id):
            info = get_portfolio(tx, pid, deleted=True)
            if info.status in allowed:
                verb = f"portfolio.{action.split('.')[1]}"
                reg._require(tx, verb, pid)
                set_portfolio_status(reg, tx, events, info, verb, allowed, new, primary=False)
                changed.append(pid)
        tx.record({"status": g.status}, {"status": new, "portfolios": changed})


def delete_group(reg: Registry, group_id: str, *, hard: bool = False) -> None:
    """Archive a group (members untouched), or with ``hard=True`` dissolve it.

    A hard delete leaves a tombstone, drops the group's memberships (its
    members stay) and grants; it is refused while a parent group's target
    allocation names it.
    """
    action = "group.delete" if hard else "group.archive"
    with reg._tx(action, group_id) as (tx, events):
        g = get_group(tx, group_id)
        reg._require(tx, action, group_id)
        rec = tx.get("group", group_id)
        assert rec is not None
        if hard:
            for parent in tx.parents(group_id):
                detach(tx, parent, group_id, g)
            tx.set_members(group_id, [])
            for grant in tx.grants(scope_id=group_id):
                tx.set_grant(grant.user_id, group_id, None)
        new = "deleted" if hard else "archived"
        tx.put("group", group_id, new, rec.data)
        tx.record({"status": g.status, "members": list(g.members)}, {"status": new})
        events.append(reg._event(f"group.{new}", group=group_id))
