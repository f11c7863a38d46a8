"""The catalogue of stored kinds: what each record is about, and one record codec.

Every record in the store has a kind (``"portfolio"``, ``"signal"``,
``"proposal"``, ...). The catalogue says, for each kind, which portfolio or
group a record belongs to (its *scope*), so that one read view can filter
every kind by what the reader may see instead of each service writing its
own filter. A kind with no scope rule cannot be read through a view, so a
new service kind that forgets to declare itself fails loudly rather than
leaking.

The records' ``data`` is made and read by the one codec, `pmkit.codec`
(`encode` / `decode`, re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pmkit.codec import decode, encode
from pmkit.errors import AlreadyExistsError, NotFoundError, ValidationError
from pmkit.registry.ids import slugify, validate_id
from pmkit.registry.records import GroupInfo, PortfolioInfo, Segment
from pmkit.store.base import Reader, Record

__all__ = [
    "KINDS",
    "Kind",
    "check_free",
    "decode",
    "encode",
    "free_id",
    "get_group",
    "get_portfolio",
    "group_info",
    "kind",
    "portfolio_info",
    "register_kind",
    "scope_of",
    "service_record_scope",
    "target_kind",
]

Scope = Callable[[Record], "str | None"]


@dataclass(frozen=True, slots=True)
class Kind:
    """A stored kind and the rule that scopes its records.

    Attributes
    ----------
    name : str
        The store kind.
    scope : callable
        ``scope(record) -> id`` of the portfolio or group the record belongs
        to; None means registry-wide (readable by administrators only).
    public : bool
        Registry-wide records every active user may read (settings).
    """

    name: str
    scope: Scope
    public: bool = False


def _own_id(rec: Record) -> str:
    return rec.id


def _field(name: str) -> Scope:
    def scope(rec: Record) -> str | None:
        value = rec.data.get(name)
        return value if isinstance(value, str) else None

    return scope


def _id_prefix(rec: Record) -> str | None:
    # "<portfolio>#<name>[...]" ids of strategies, their returns and decisions
    head, sep, _ = rec.id.partition("#")
    return head if sep else None


def _registry_wide(rec: Record) -> None:
    return None


def _setting_scope(rec: Record) -> str | None:
    # per-portfolio service settings are keyed by the portfolio; "*" is the default
    return None if rec.id in ("*", "default", "registry") else rec.id


#: Every stored kind pmkit writes, with its scope rule.
KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("portfolio", _own_id),
        Kind("group", _own_id),
        Kind("user", _registry_wide),
        Kind("setting", _registry_wide, public=True),
        Kind("signal", _field("portfolio")),
        Kind("proposal", _field("scope")),
        Kind("order", _field("portfolio")),
        Kind("strategy", _id_prefix),
        Kind("strategy_returns", _id_prefix),
        Kind("strategy_decision", _id_prefix),
        Kind("coordinator.settings", _setting_scope),
    )
}


def register_kind(name: str, scope: Scope, *, public: bool = False) -> Kind:
    """Declare a new stored kind (a service's own records) and how it is scoped.

    Parameters
    ----------
    name : str
        The store kind.
    scope : callable
        ``scope(record) -> portfolio or group id`` (None: registry-wide).
    public : bool
        Whether every active user may read its registry-wide records.
    """
    k = Kind(name, scope, public)
    existing = KINDS.get(name)
    if existing is not None and existing != k:
        raise ValidationError("kind", name, "is already registered with another scope rule")
    KINDS[name] = k
    return k


def kind(name: str) -> Kind:
    """The catalogue entry of ``name``; `ValidationError` for an undeclared kind."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValidationError(
            "kind", name, "is not in the catalogue (declare it with register_kind)"
        ) from None


def scope_of(rec: Record) -> str | None:
    """The portfolio or group a record belongs to (None: registry-wide)."""
    return kind(rec.kind).scope(rec)


# -- registry records ------------------------------------------------------------------------
def portfolio_info(rec: Record) -> PortfolioInfo:
    """A ``"portfolio"`` record as a `PortfolioInfo`."""
    d = rec.data
    return PortfolioInfo(
        id=rec.id,
        name=d["name"],
        description=d.get("description", ""),
        currency=d["currency"],
        initial_capital=d.get("initial_capital", 0.0),
        risk_profile=d.get("risk_profile"),
        benchmark=d.get("benchmark"),
        tags=tuple(d.get("tags", ())),
        segment=Segment.parse(d.get("segment")),
        status=rec.status,
        config=d.get("config", {}),
        created_at=rec.created_at,
        updated_at=rec.updated_at,
    )


def group_info(rec: Record, reader: Reader) -> GroupInfo:
    """A ``"group"`` record, with its members read through ``reader``, as a `GroupInfo`."""
    members = reader.members(rec.id)
    weights = [m.weight for m in members]
    allocation = (
        {m.member_id: float(m.weight) for m in members}  # type: ignore[arg-type]
        if members and all(w is not None for w in weights)
        else None
    )
    return GroupInfo(
        id=rec.id,
        name=rec.data["name"],
        description=rec.data.get("description", ""),
        members=tuple(m.member_id for m in members),
        allocation=allocation,
        status=rec.status,
        config=rec.data.get("config", {}),
        created_at=rec.created_at,
        updated_at=rec.updated_at,
    )


def get_portfolio(reader: Reader, pid: str, *, deleted: bool = False) -> PortfolioInfo:
    """The portfolio ``pid``; `NotFoundError` if missing (or deleted, unless ``deleted``)."""
    validate_id(pid)
    rec = reader.get("portfolio", pid)
    if rec is None or (rec.status == "deleted" and not deleted):
        raise NotFoundError("portfolio", pid)
    return portfolio_info(rec)


def get_group(reader: Reader, gid: str, *, deleted: bool = False) -> GroupInfo:
    """The group ``gid``; `NotFoundError` if missing (or deleted, unless ``deleted``)."""
    validate_id(gid, "group_id")
    rec = reader.get("group", gid)
    if rec is None or (rec.status == "deleted" and not deleted):
        raise NotFoundError("group", gid)
    return group_info(rec, reader)


def target_kind(reader: Reader, target: str) -> str:
    """``"portfolio"`` or ``"group"``: what the live id ``target`` names, else `NotFoundError`."""
    validate_id(target, "target")
    for k in ("portfolio", "group"):
        rec = reader.get(k, target)
        if rec is not None and rec.status != "deleted":
            return k
    raise NotFoundError("portfolio or group", target)


def check_free(reader: Reader, id_: str) -> None:
    """`AlreadyExistsError` if ``id_`` names a portfolio or group (tombstones included)."""
    for k in ("portfolio", "group"):
        rec = reader.get(k, id_)
        if rec is not None:
            detail = (
                "a deleted id stays reserved: its ledger and audit keep it"
                if rec.status == "deleted"
                else f"it is a {k}"
            )
            raise AlreadyExistsError("id", id_, detail)


def free_id(reader: Reader, name: str) -> str:
    """An unused id made from a display name: ``growth``, else ``growth_2``, ..."""
    base = slugify(name)
    candidate, n = base, 1
    while reader.get("portfolio", candidate) or reader.get("group", candidate):
        n += 1
        candidate = f"{base}_{n}"
    return candidate


def service_record_scope(reader: Reader, id_: str) -> str | None:
    """The portfolio or group a service record with id ``id_`` belongs to (None: unknown).

    Audit records name their target by id only; this finds the record among
    the scoped service kinds.
    """
    for k in KINDS.values():
        if k.name in ("portfolio", "group", "user", "setting"):
            continue
        rec = reader.get(k.name, id_)
        if rec is not None:
            return k.scope(rec)
    head, sep, _ = id_.partition("#")
    return head if sep else None
