"""Portfolio lifecycle: create, activate / deactivate, archive / restore, delete, update, config.

Each function is one registry action in one transaction: role check, input
validation, the write with its audit record, events after the commit.
States: ``active`` <-> ``inactive``; either -> ``archived`` -> (restore)
``inactive``; any -> ``deleted`` (a tombstone: the id, ledger and audit stay).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pmkit.errors import LifecycleError, OpenPositionsError, ValidationError
from pmkit.events import Event
from pmkit.ledger import LedgerEntry, utcnow
from pmkit.registry.access import Role
from pmkit.registry.catalogue import check_free, free_id, get_portfolio, target_kind
from pmkit.registry.config import json_checked
from pmkit.registry.ids import validate_id
from pmkit.registry.records import PortfolioInfo, Segment
from pmkit.registry.resolution import put_settings, read_settings
from pmkit.store.base import Transaction
from pmkit.validation import (
    MAX_NAME_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TEXT_LENGTH,
    check_bool,
    check_number,
    check_text,
)

if TYPE_CHECKING:
    from pmkit.registry.registry import Registry

__all__ = [
    "TRANSITIONS",
    "create_portfolio",
    "create_portfolio_in",
    "delete",
    "detach",
    "set_config",
    "set_portfolio_status",
    "state_refusal",
    "transition",
    "update_portfolio",
    "validated_portfolio",
]


def create_portfolio(
    reg: Registry,
    spec: str | Mapping[str, Any] | None = None,
    initial_capital: float | None = None,
    *,
    name: str | None = None,
    description: str = "",
    currency: str = "USD",
    risk_profile: str | None = None,
    benchmark: str | None = None,
    tags: Iterable[str] = (),
    segment: Segment | Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    status: str = "active",
    at: datetime | None = None,
) -> str:
    """Create a portfolio and deposit its initial capital.

    Parameters
    ----------
    spec : str or mapping, optional
        The new id (``"client_a/growth"``), or the design note's portfolio
        config mapping (keys as in `pmkit.registry.config.PORTFOLIO_KEYS`,
        plus an optional ``"id"``). Without an id one is made from the name.
    initial_capital : float, optional
        Cash deposited at creation, in ``currency`` (>= 0). Recorded in the
        ledger as a cash flow, so it is part of the replay.
    name, description, currency, risk_profile, benchmark, tags, segment, config
        Metadata; see `PortfolioInfo`. ``config`` holds overrides of the
        configuration inherited from groups.
    status : {"active", "inactive"}
        Initial lifecycle state.
    at : datetime, optional
        Time of the initial deposit (tz-naive UTC; default now).

    Returns
    -------
    str
        The portfolio id. The creator becomes its owner.
    """
    fields: dict[str, Any] = {}
    pid: str | None = None
    if isinstance(spec, Mapping):
        fields = dict(spec)
        pid = fields.pop("id", None)
    elif spec is not None:
        pid = spec
    explicit = dict(
        name=name,
        description=description,
        currency=currency,
        risk_profile=risk_profile,
        benchmark=benchmark,
        tags=tags,
        segment=segment,
        config=config,
        status=status,
    )
    for k, v in explicit.items():
        fields.setdefault(k, v)
    if initial_capital is not None:
        fields["initial_capital"] = initial_capital
    if pid is None:  # taken in a race? _check_free in the transaction refuses it
        pid = free_id(reg.store, str(fields.get("name") or "portfolio"))
    with reg._tx("portfolio.create", pid) as (tx, events):
        return create_portfolio_in(reg, tx, events, pid, fields, at)


def validated_portfolio(pid: str, fields: Mapping[str, Any]) -> PortfolioInfo:
    """The new or updated portfolio entry, every field checked (typed errors name the field)."""
    name = fields.get("name")
    name = pid if name is None or name == "" else name
    check_text(name, "name", max_length=MAX_NAME_LENGTH, multiline=False, allow_empty=False)
    currency = fields.get("currency")
    currency = "USD" if currency is None else currency
    if not (
        isinstance(currency, str)
        and len(currency) == 3
        and currency.isalpha()
        and currency.isupper()
    ):
        raise ValidationError("currency", currency, "must be a 3-letter upper-case ISO code")
    capital = check_number(fields.get("initial_capital", 0.0), "initial_capital", minimum=0.0)
    tags = fields.get("tags")
    tags = () if tags is None else tags
    if isinstance(tags, str | bytes | Mapping) or not isinstance(tags, Iterable):
        raise ValidationError("tags", tags, "must be a list of non-empty strings")
    tags = list(tags)
    if len(tags) > MAX_TAGS:
        raise ValidationError("tags", f"<{len(tags)} tags>", f"at most {MAX_TAGS} tags")
    for t in tags:
        check_text(t, "tags", max_length=MAX_TAG_LENGTH, multiline=False, allow_empty=False)
    status = fields.get("status")
    status = "active" if status is None else status
    if not isinstance(status, str) or status not in ("active", "inactive"):
        raise ValidationError("status", status, "a new portfolio is 'active' or 'inactive'")
    for key in ("risk_profile", "benchmark"):
        v = fields.get(key)
        if v is not None:
            check_text(v, key, max_length=MAX_TAG_LENGTH, multiline=False)
    if fields.get("description") is not None:
        check_text(fields["description"], "description", max_length=MAX_TEXT_LENGTH)
    return PortfolioInfo(
        id=pid,
        name=name,
        description=fields.get("description") or "",
        currency=currency,
        initial_capital=float(capital),
        risk_profile=fields.get("risk_profile"),
        benchmark=fields.get("benchmark"),
        tags=tuple(dict.fromkeys(tags)),
        segment=Segment.parse(fields.get("segment")),
        config=json_checked(fields.get("config"), "config"),
        status=status,
    )


def create_portfolio_in(
    reg: Registry,
    tx: Transaction,
    events: list[Event],
    pid: str | None,
    fields: Mapping[str, Any],
    at: datetime | None,
) -> str:
    """Create portfolio ``pid`` inside ``tx`` (the creator becomes its owner); returns ``pid``."""
    reg._require_creator(tx, "portfolio.create", pid or "?")
    validate_id(pid)
    check_free(tx, pid)
    info = validated_portfolio(pid, fields)
    tx.put("portfolio", pid, info.status, info.data())
    if not reg._is_admin(tx):
        tx.set_grant(reg.user, pid, str(Role.OWNER))
    if info.initial_capital > 0:
        tx.append(
            [
                LedgerEntry(
                    pid,
                    "cash",
                    at or utcnow(),
                    amount=info.initial_capital,
                    currency=info.currency,
                    actor=reg.user,
                    memo="initial capital",
                ).validated()
            ]
        )
    if tx.before is None and tx.after is None:
        tx.record(None, {"id": pid, "status": info.status, **info.data()})
    else:  # part of a larger operation (from_config): audit under its own target
        tx.note("portfolio.create", pid, None, {"id": pid, "status": info.status, **info.data()})
    events.append(reg._event("portfolio.created", portfolio=pid, status=info.status))
    return pid


#: A portfolio's state changes: action -> (the states it may start from, the state it leads to).
#: The write path and front ends (`ReadView.state_refusal`) both read it.
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "portfolio.activate": (("inactive",), "active"),
    "portfolio.deactivate": (("active",), "inactive"),
    "portfolio.restore": (("archived",), "inactive"),
    "portfolio.archive": (("active", "inactive"), "archived"),
}


def state_refusal(info: PortfolioInfo, action: str) -> LifecycleError | None:
    """The `LifecycleError` ``action`` would raise in ``info``'s state, or None (`TRANSITIONS`)."""
    allowed = TRANSITIONS.get(action)
    if allowed is None or info.status in allowed[0]:
        return None
    return LifecycleError(info.id, info.status, action.split(".")[-1])


def transition(reg: Registry, pid: str | None, action: str) -> None:
    """Make the state change ``action`` (`TRANSITIONS`) on a portfolio, in its own transaction."""
    allowed, new = TRANSITIONS[action]
    pid = reg._pid(pid)
    with reg._tx(action, pid) as (tx, events):
        info = get_portfolio(tx, pid)
        reg._require(tx, action, pid)
        set_portfolio_status(reg, tx, events, info, action, allowed, new)


def set_portfolio_status(
    reg: Registry,
    tx: Transaction,
    events: list[Event],
    info: PortfolioInfo,
    action: str,
    allowed: Sequence[str],
    new: str,
    *,
    primary: bool = True,
) -> None:
    """Set a portfolio's state in ``tx``: audited (primary record or a note) and announced."""
    if info.status not in allowed:
        raise LifecycleError(info.id, info.status, action.split(".")[-1])
    tx.put("portfolio", info.id, new, info.data())
    if primary:
        tx.record({"status": info.status}, {"status": new})
    else:
        tx.note(action, info.id, {"status": info.status}, {"status": new})
    events.append(reg._event(f"portfolio.{new}", portfolio=info.id, previous=info.status))


def delete(
    reg: Registry, portfolio_id: str | None = None, *, hard: bool = False, force: bool = False
) -> None:
    """Archive a portfolio, or with ``hard=True`` delete it (needs OWNER).

    Archiving keeps everything and can be undone with `restore`. A hard
    delete leaves a tombstone: the id stays reserved, the ledger and the
    audit log are kept, but the portfolio leaves its groups, loses its
    role grants and is no longer listed.

    Raises
    ------
    OpenPositionsError
        Hard delete while positions are open, unless ``force=True``.
    LifecycleError
        Hard delete while a group's target allocation names it (change the
        allocation first), or deleting an already deleted portfolio.
    """
    pid = reg._pid(portfolio_id)
    if not hard:
        transition(reg, pid, "portfolio.archive")
        return
    with reg._tx("portfolio.delete", pid) as (tx, events):
        info = get_portfolio(tx, pid)
        reg._require(tx, "portfolio.delete", pid)
        open_ = tx.positions(pid).open_positions()
        if open_ and not force:
            raise OpenPositionsError(
                pid,
                info.status,
                "hard-delete",
                f"open positions {sorted(open_)}; pass force=True",
            )
        for gid in tx.parents(pid):
            detach(tx, gid, pid, info)
        for g in tx.grants(scope_id=pid):
            tx.set_grant(g.user_id, pid, None)
        settings = read_settings(tx)
        if settings.get("default_portfolio") == pid:
            put_settings(tx, {**settings, "default_portfolio": None})
        tx.put("portfolio", pid, "deleted", info.data())
        tx.record(
            {"status": info.status, "open_positions": open_},
            {"status": "deleted", "forced": bool(open_)},
        )
        events.append(reg._event("portfolio.deleted", portfolio=pid, forced=bool(open_)))
    if reg._active == pid:
        reg._active = None


def detach(tx: Transaction, gid: str, member: str, info: Any) -> None:
    """Take ``member`` out of group ``gid``; refused while the group's allocation names it."""
    members = tx.members(gid)
    if any(m.weight is not None for m in members):
        raise LifecycleError(
            info.id,
            info.status,
            "hard-delete",
            f"group {gid!r} has a target allocation naming it; change it first",
        )
    tx.set_members(gid, [(m.member_id, m.weight) for m in members if m.member_id != member])


def update_portfolio(
    reg: Registry, portfolio_id: str | None = None, **fields: Any
) -> PortfolioInfo:
    """Change metadata: name, description, risk_profile, benchmark, tags, segment.

    Currency and initial capital are fixed at creation (the ledger is in
    that currency).
    """
    pid = reg._pid(portfolio_id)
    allowed = {"name", "description", "risk_profile", "benchmark", "tags", "segment"}
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ValidationError("fields", unknown, f"updatable fields are {sorted(allowed)}")
    with reg._tx("portfolio.update", pid) as (tx, events):
        info = get_portfolio(tx, pid)
        reg._require(tx, "portfolio.update", pid)
        new = validated_portfolio(pid, {**info.data(), "status": "active", **fields})
        data = {**new.data(), "config": info.config}
        tx.put("portfolio", pid, info.status, data)
        tx.record({k: info.data()[k] for k in fields}, {k: data[k] for k in fields})
        events.append(reg._event("portfolio.updated", portfolio=pid, fields=sorted(fields)))
    return get_portfolio(reg.store, pid)


def set_config(
    reg: Registry, target: str, values: Mapping[str, Any], *, replace: bool = False
) -> None:
    """Set configuration on a portfolio (its overrides) or a group (inherited by members).

    Parameters
    ----------
    target : str
        Portfolio or group id.
    values : mapping
        Keys to set; a value of None removes the key.
    replace : bool
        Replace the whole configuration instead of merging.
    """
    values = json_checked(values, "values")
    replace = check_bool(replace, "replace")
    with reg._tx("config.set", target) as (tx, events):
        kind = target_kind(tx, target)
        reg._require(tx, f"{kind}.config", target)
        rec = tx.get(kind, target)
        assert rec is not None
        before = dict(rec.data.get("config", {}))
        after = {} if replace else dict(before)
        for k, v in values.items():
            if v is None:
                after.pop(k, None)
            else:
                after[k] = v
        tx.put(kind, target, rec.status, {**rec.data, "config": after})
        tx.record(before, after)
        events.append(reg._scoped_event(tx, "config.changed", target, keys=sorted(values)))
