"""The multi-portfolio registry service.

A `Registry` is a session bound to one acting user over a durable store and
an event bus. Every mutating call:

1. opens one store transaction;
2. checks the user's role on the target (raising `PermissionDenied`);
3. validates its input (raising a typed `pmkit.errors` error);
4. writes, with an audit record (actor, action, target, before, after);
5. publishes portfolio-routed events after the commit.

An error at any step rolls the transaction back, so nothing changes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pmkit.errors import (
    AllocationError,
    AlreadyExistsError,
    ConfigConflictError,
    ConfigError,
    CurrencyMismatchError,
    CycleError,
    InsufficientCashError,
    LifecycleError,
    NotFoundError,
    OpenPositionsError,
    PermissionDenied,
    PriceBandError,
    ShortSaleError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.events import Event, EventBus
from pmkit.ledger import OPEN_QUANTITY_TOLERANCE, LedgerEntry, Positions, check_balances
from pmkit.registry.access import ACTION_ROLES, Role, parse_role
from pmkit.registry.config import (
    DEFAULT_PRICE_BAND,
    DEFAULT_SETTINGS,
    from_single_portfolio_config,
    validate_config_values,
    validate_multi_portfolio_config,
)
from pmkit.registry.guard import GuardedTransaction
from pmkit.registry.ids import namespace_of, slugify, validate_id, validate_user
from pmkit.registry.records import GroupInfo, GroupNode, PortfolioInfo, Segment
from pmkit.store import Store, open_store
from pmkit.store.base import Reader, Transaction
from pmkit.validation import (
    MAX_MEMO_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TEXT_LENGTH,
    check_bool,
    check_number,
    check_text,
)

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = ["ALLOCATION_TOLERANCE", "Mutation", "Registry", "ResolvedConfig"]

#: Target allocations must sum to 1 within this.
ALLOCATION_TOLERANCE = 1e-9
_SETTINGS_ID = "registry"
_LIVE = ("active", "inactive", "archived")


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _json_checked(value: Any, field: str) -> dict[str, Any]:
    """A checked configuration mapping, exactly as it will be stored."""
    return validate_config_values({} if value is None else value, field)


def _portfolio_from(record: Any) -> PortfolioInfo:
    d = record.data
    return PortfolioInfo(
        id=record.id,
        name=d["name"],
        description=d.get("description", ""),
        currency=d["currency"],
        initial_capital=d.get("initial_capital", 0.0),
        risk_profile=d.get("risk_profile"),
        benchmark=d.get("benchmark"),
        tags=tuple(d.get("tags", ())),
        segment=Segment.parse(d.get("segment")),
        status=record.status,
        config=d.get("config", {}),
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _group_from(record: Any, reader: Reader) -> GroupInfo:
    members = reader.members(record.id)
    weights = [m.weight for m in members]
    allocation = (
        {m.member_id: float(m.weight) for m in members}  # type: ignore[arg-type]
        if members and all(w is not None for w in weights)
        else None
    )
    return GroupInfo(
        id=record.id,
        name=record.data["name"],
        description=record.data.get("description", ""),
        members=tuple(m.member_id for m in members),
        allocation=allocation,
        status=record.status,
        config=record.data.get("config", {}),
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


class ResolvedConfig(dict[str, Any]):
    """A portfolio's effective configuration; `sources` tells where each key came from.

    Sources are ``"defaults"`` (registry-wide), ``"group:<id>"`` or
    ``"portfolio"`` (its own override).
    """

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        super().__init__(values)
        self.sources = dict(sources)


class Registry:
    """Many portfolios and groups, with lifecycle, access control and events.

    Parameters
    ----------
    store : Store
        Durable store (see `pmkit.store.open_store`).
    user : str
        Acting user for every call made through this object. Must exist in
        the store; ``"system"`` (an administrator) always does.
    bus : EventBus, optional
        Event bus to publish on; a new one is made when omitted. Its group
        routing is wired to this registry's group hierarchy.
    market : xarray.Dataset, optional
        Market data (see `pmkit.model.market_dataset`). Needed for
        valuation and used to check trade assets and currencies.

    Examples
    --------
    >>> reg = Registry.open(":memory:")
    >>> reg.create_portfolio("client_a/growth", 1_000_000.0, name="Growth")
    'client_a/growth'
    """

    def __init__(
        self,
        store: Store,
        *,
        user: str = "system",
        bus: EventBus | None = None,
        market: xr.Dataset | None = None,
    ) -> None:
        self.store = store
        self.user = validate_user(user)
        if store.get("user", self.user) is None:
            raise NotFoundError("user", self.user)
        self.bus = bus if bus is not None else EventBus()
        if self.bus.ancestors is None:
            self.bus.ancestors = lambda target: self._ancestors(self.store, target)
        self.bus.isolate = bool(self.settings()["isolation"]["events"])
        self.market = market
        self._active: str | None = None

    # -- construction ---------------------------------------------------------
    @classmethod
    def open(
        cls,
        url: str = ":memory:",
        *,
        user: str = "system",
        market: xr.Dataset | None = None,
        create: bool = True,
        read_only: bool = False,
    ) -> Registry:
        """Open the store at ``url`` and bind a registry session to ``user``.

        ``create`` and ``read_only`` are passed to `pmkit.store.open_store`.
        """
        return cls(open_store(url, create=create, read_only=read_only), user=user, market=market)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        *,
        store: Store | str = ":memory:",
        user: str = "system",
        market: xr.Dataset | None = None,
        at: datetime | None = None,
    ) -> Registry:
        """Build a registry from a ``multi_portfolio_config`` (the design note's shape).

        Everything is applied in one transaction: a config that fails
        anywhere leaves the store untouched. See `pmkit.registry.config`
        for the accepted keys.

        Parameters
        ----------
        config : mapping
            ``portfolios``, ``groups``, ``default_portfolio``, ``isolation``,
            ``cross_portfolio`` (and pmkit's optional ``defaults``).
        store : Store or str
            A store, or a URL for `pmkit.store.open_store`.
        user : str
            Acting user; must be allowed to create portfolios.
        market : xarray.Dataset, optional
            Market data for valuation.
        at : datetime, optional
            Time stamped on the initial-capital deposits (default: now).
        """
        st = open_store(store) if isinstance(store, str) else store
        reg = cls(st, user=user, market=market)
        reg.apply_config(config, at=at)
        return reg

    @classmethod
    def from_single_portfolio_config(
        cls, config: Mapping[str, Any], *, portfolio_id: str = "default", **kwargs: Any
    ) -> Registry:
        """Migrate a single-portfolio configuration: one registry, one default portfolio.

        The starting cash (``initial_capital``, ``equity_usd``, ... see
        `pmkit.registry.config.from_single_portfolio_config`) is deposited into
        the ledger. With ``market=`` and no ``at=``, the deposit is stamped at the
        market's last time, so the portfolio is worth its capital there.
        """
        market = kwargs.get("market")
        if kwargs.get("at") is None and market is not None:
            import pandas as pd

            kwargs["at"] = pd.Timestamp(market.indexes["time"][-1]).to_pydatetime()
        return cls.from_config(from_single_portfolio_config(config, portfolio_id), **kwargs)

    def as_user(self, user: str) -> Registry:
        """The same store, bus and market, acting as ``user``."""
        other = Registry(self.store, user=user, bus=self.bus, market=self.market)
        other._active = self._active
        return other

    # -- transactions and events ------------------------------------------------
    @contextmanager
    def _tx(self, action: str, target: str) -> Iterator[tuple[Transaction, list[Event]]]:
        events: list[Event] = []
        with self.store.transaction(self.user, action, target) as tx:
            yield tx, events
        for event in events:
            self.bus.publish(event)

    def _event(
        self, topic: str, *, portfolio: str | None = None, group: str | None = None, **payload: Any
    ) -> Event:
        return Event(topic, portfolio=portfolio, group=group, payload=payload, actor=self.user)

    @contextmanager
    def mutation(self, action: str, target: str) -> Iterator[Mutation]:
        """One audited transaction for services built on the registry.

        The services (strategies, coordinator, proposals, execution) keep
        their state in the same store; this gives them the registry's rules:
        one transaction per mutation, one audit record by this session's user,
        and events published only after the commit (never for a rollback).

        Parameters
        ----------
        action : str
            Dotted action name for the audit record, e.g. ``"proposal.approve"``.
        target : str
            Id of the portfolio, group, proposal or signal acted on.

        Yields
        ------
        Mutation
            ``.tx`` (the open transaction, guarded: see
            `pmkit.registry.guard.GuardedTransaction`), ``.publish(topic,
            portfolio=, group=, **payload)`` to queue an event, and
            ``.require(action, target)`` to check a role inside the transaction.

        Notes
        -----
        A mutation cannot change role grants, users (or their admin flag),
        portfolios, groups or registry settings, nor append raw ledger
        entries: those have dedicated, audited actions (`grant`, `revoke`,
        `deactivate_user`, `set_admin`, ..., `Mutation.append_trade`). Every
        record the service writes is covered by an audit record with before
        and after images: its own, or one added at commit.
        """
        with self._tx(action, target) as (tx, events):
            m = Mutation(self, tx, events)
            yield m
            m.tx.audit_uncovered(target)

    def require(self, action: str, target: str) -> None:
        """Raise `PermissionDenied` unless this session's user may ``action`` on ``target``.

        ``action`` is a key of `pmkit.registry.access.ACTION_ROLES`.
        """
        self._require(self.store, action, target)

    # -- access control -----------------------------------------------------------
    def _user_data(self, reader: Reader, user: str | None = None) -> dict[str, Any]:
        rec = reader.get("user", user or self.user)
        if rec is None or rec.status != "active":
            raise PermissionDenied(user or self.user, "act", "registry", "an active user")
        return rec.data

    def _is_admin(self, reader: Reader) -> bool:
        return bool(self._user_data(reader).get("admin"))

    def role_of(self, user: str, target: str, *, reader: Reader | None = None) -> Role | None:
        """Effective role of ``user`` on ``target`` (None when it has none).

        The highest of the user's grants on the target and on every group
        containing it, directly or through nested groups.
        """
        r = reader or self.store
        best: Role | None = None
        for scope in (target, *self._ancestors(r, target)):
            for g in r.grants(user_id=user, scope_id=scope):
                role = parse_role(g.role)
                best = role if best is None or role > best else best
        return best

    def _require(self, reader: Reader, action: str, target: str) -> None:
        if self._is_admin(reader):
            return
        needed = ACTION_ROLES[action]
        have = self.role_of(self.user, target, reader=reader)
        if have is None or have < needed:
            raise PermissionDenied(self.user, action, target, str(needed))

    def _require_creator(self, reader: Reader, action: str, target: str) -> None:
        data = self._user_data(reader)
        if not (data.get("admin") or data.get("can_create")):
            raise PermissionDenied(self.user, action, target, "a user allowed to create")

    def _require_admin(self, reader: Reader, action: str, target: str) -> None:
        if not self._is_admin(reader):
            raise PermissionDenied(self.user, action, target, "admin")

    def can(self, action: str, target: str) -> bool:
        """Whether this session's user may perform ``action`` on ``target`` now."""
        try:
            self._require(self.store, action, target)
        except PermissionDenied:
            return False
        return True

    # -- users and roles ------------------------------------------------------------
    def add_user(
        self, user_id: str, *, admin: bool = False, can_create: bool = False, display_name: str = ""
    ) -> str:
        """Register a user (administrators only).

        Parameters
        ----------
        user_id : str
            One lowercase segment, e.g. ``"alice"``.
        admin : bool
            Administrators may do anything.
        can_create : bool
            Whether the user may create portfolios and groups (becoming their owner).
        display_name : str
            Name shown in front ends.
        """
        validate_user(user_id, "user_id")
        admin = check_bool(admin, "admin")
        can_create = check_bool(can_create, "can_create")
        check_text(display_name, "display_name", max_length=MAX_NAME_LENGTH, multiline=False)
        with self._tx("user.add", user_id) as (tx, _):
            self._require_admin(tx, "user.add", user_id)
            if tx.get("user", user_id) is not None:
                raise AlreadyExistsError("user", user_id)
            data = {
                "admin": bool(admin),
                "can_create": bool(can_create),
                "display_name": display_name or user_id,
            }
            tx.put("user", user_id, "active", data)
            tx.record(None, data)
        return user_id

    def users(self) -> list[str]:
        """Ids of all users."""
        return [r.id for r in self.store.list("user")]

    def user_info(self, user_id: str) -> dict[str, Any]:
        """A user's status (``"active"`` or ``"inactive"``) and flags.

        Returns
        -------
        dict
            ``status``, ``admin``, ``can_create`` and ``display_name``.
        """
        validate_user(user_id, "user_id")
        rec = self.store.get("user", user_id)
        if rec is None:
            raise NotFoundError("user", user_id)
        return {"status": rec.status, **rec.data}

    def _set_user(
        self, user_id: str, action: str, *, status: str | None = None, admin: bool | None = None
    ) -> bool:
        """Change a user's status or admin flag (administrators only); False when unchanged."""
        validate_user(user_id, "user_id")
        self._require_admin(self.store, action, user_id)
        current = self.store.get("user", user_id)
        if (
            current is not None
            and user_id != "system"
            and (status is None or status == current.status)
            and (admin is None or bool(current.data.get("admin")) == admin)
        ):
            return False  # no transaction, so no empty audit record
        with self._tx(action, user_id) as (tx, events):
            self._require_admin(tx, action, user_id)
            rec = tx.get("user", user_id)
            if rec is None:
                raise NotFoundError("user", user_id)
            if user_id == "system":
                raise LifecycleError(user_id, rec.status, action, "the built-in administrator")
            new_status = rec.status if status is None else status
            data = dict(rec.data) if admin is None else {**rec.data, "admin": bool(admin)}
            tx.put("user", user_id, new_status, data)
            tx.record({"status": rec.status, **rec.data}, {"status": new_status, **data})
            events.append(
                self._event(action, user=user_id, status=new_status, admin=bool(data.get("admin")))
            )
        return True

    def deactivate_user(self, user_id: str) -> bool:
        """Deactivate a user (administrators only): every later call as that user is refused.

        Their grants stay (reactivation restores them); sessions bound to the
        user fail their next read or write with `PermissionDenied`. The
        built-in ``system`` administrator cannot be deactivated, so the
        registry always keeps one.

        Returns
        -------
        bool
            False when the user was inactive already (nothing is written).
        """
        return self._set_user(user_id, "user.deactivate", status="inactive")

    def activate_user(self, user_id: str) -> bool:
        """Reactivate a deactivated user (administrators only); False when already active."""
        return self._set_user(user_id, "user.activate", status="active")

    def set_admin(self, user_id: str, admin: bool) -> bool:
        """Grant (``admin=True``) or revoke administrator rights (administrators only).

        The built-in ``system`` administrator keeps its rights. Audited with
        before/after images like every mutation.

        Returns
        -------
        bool
            False when the flag already had that value (nothing is written).
        """
        if not isinstance(admin, bool):
            raise ValidationError("admin", admin, "must be True or False")
        return self._set_user(user_id, "user.set_admin", admin=admin)

    def grant(self, user: str, target: str, role: Role | str) -> None:
        """Give ``user`` a role on a portfolio or group (needs OWNER on it).

        The role replaces any role the user held directly on ``target``.
        """
        validate_user(user, "user")
        role = parse_role(role)
        with self._tx("grant", target) as (tx, events):
            self._require(tx, "grant", target)
            self._existing_kind(tx, target)
            if tx.get("user", user) is None:
                raise NotFoundError("user", user)
            before = [g.role for g in tx.grants(user_id=user, scope_id=target)]
            tx.set_grant(user, target, str(role))
            tx.record(
                {"user": user, "role": before[0] if before else None},
                {"user": user, "role": str(role)},
            )
            events.append(
                self._scoped_event(tx, "access.granted", target, user=user, role=str(role))
            )

    def revoke(self, user: str, target: str) -> None:
        """Remove ``user``'s direct role on ``target`` (needs OWNER on it)."""
        with self._tx("revoke", target) as (tx, events):
            self._require(tx, "grant", target)
            before = [g.role for g in tx.grants(user_id=user, scope_id=target)]
            if not before:
                raise NotFoundError("grant", f"{user}@{target}")
            tx.set_grant(user, target, None)
            tx.record({"user": user, "role": before[0]}, {"user": user, "role": None})
            events.append(self._scoped_event(tx, "access.revoked", target, user=user))

    # -- settings ---------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Registry-wide settings: default portfolio, isolation, cross-portfolio flags, defaults."""
        rec = self.store.get("setting", _SETTINGS_ID)
        return json.loads(json.dumps(rec.data if rec else DEFAULT_SETTINGS))

    def set_streaming(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Set the registry's streaming options (administrators only).

        Parameters
        ----------
        values : mapping
            Keys of `pmkit.stream.settings.StreamSettings` to change; the
            others keep their current value.

        Returns
        -------
        dict
            The full, validated streaming settings now in force.
        """
        from pmkit.stream.settings import StreamSettings

        if not isinstance(values, Mapping):
            raise ConfigError("streaming", values, "must be a mapping of streaming options")
        with self._tx("registry.streaming", "registry") as (tx, events):
            self._require_admin(tx, "registry.streaming", "registry")
            current = self.settings()
            old = current.get("streaming")
            new = StreamSettings.from_mapping({**(old or {}), **dict(values)}).to_dict()
            self._put_settings(tx, {**current, "streaming": new})
            tx.record(old, new)
            events.append(self._event("registry.streaming_changed", **new))
        return new

    def _put_settings(self, tx: Transaction, settings: Mapping[str, Any]) -> None:
        tx.put("setting", _SETTINGS_ID, "active", settings)

    def set_default_portfolio(self, portfolio_id: str | None) -> None:
        """Set the registry's default portfolio (administrators only)."""
        with self._tx("registry.default_portfolio", portfolio_id or "registry") as (tx, _):
            self._require_admin(tx, "registry.default_portfolio", "registry")
            if portfolio_id is not None:
                self._portfolio(tx, portfolio_id)
            before = self._settings(tx)
            after = {**before, "default_portfolio": portfolio_id}
            self._put_settings(tx, after)
            tx.record(before["default_portfolio"], portfolio_id)

    def _settings(self, reader: Reader) -> dict[str, Any]:
        rec = reader.get("setting", _SETTINGS_ID)
        return dict(rec.data) if rec else json.loads(json.dumps(DEFAULT_SETTINGS))

    # -- active portfolio (session state) ----------------------------------------------
    def set_active_portfolio(self, portfolio_id: str) -> None:
        """Make ``portfolio_id`` the target of calls that omit a portfolio id.

        This is session state (this `Registry` object), not a stored mutation.
        """
        self._portfolio(self.store, portfolio_id)
        self._require(self.store, "view", portfolio_id)
        self._active = portfolio_id

    def get_active_portfolio(self) -> PortfolioInfo:
        """The active portfolio, else the registry's default portfolio."""
        return self.portfolio(None)

    def resolve_portfolio_id(self, portfolio_id: str | None = None) -> str:
        """The portfolio a call means: ``portfolio_id``, else the active, else the default one.

        Raises
        ------
        ConfigError
            No id given and neither an active nor a default portfolio is set.
        """
        return self._pid(portfolio_id)

    def check_portfolio_exists(self, portfolio_id: str) -> str:
        """``portfolio_id`` if it names a portfolio that is not deleted, else `NotFoundError`.

        Tells existence only (no role check, nothing else of the portfolio):
        services use it to refuse a missing target before they write anything,
        and check roles inside their write context.
        """
        return self._portfolio(self.store, portfolio_id).id

    def _pid(self, portfolio_id: str | None) -> str:
        if portfolio_id is not None:
            return portfolio_id
        pid = self._active or self.settings().get("default_portfolio")
        if pid is None:
            raise ConfigError(
                "portfolio_id", None, "no portfolio given and no active or default portfolio set"
            )
        return pid

    # -- lookups ------------------------------------------------------------------
    def _portfolio(self, reader: Reader, pid: str, *, deleted: bool = False) -> PortfolioInfo:
        validate_id(pid)
        rec = reader.get("portfolio", pid)
        if rec is None or (rec.status == "deleted" and not deleted):
            raise NotFoundError("portfolio", pid)
        return _portfolio_from(rec)

    def _group(self, reader: Reader, gid: str, *, deleted: bool = False) -> GroupInfo:
        validate_id(gid, "group_id")
        rec = reader.get("group", gid)
        if rec is None or (rec.status == "deleted" and not deleted):
            raise NotFoundError("group", gid)
        return _group_from(rec, reader)

    def _existing_kind(self, reader: Reader, target: str) -> str:
        validate_id(target, "target")
        for kind in ("portfolio", "group"):
            rec = reader.get(kind, target)
            if rec is not None and rec.status != "deleted":
                return kind
        raise NotFoundError("portfolio or group", target)

    def _check_free(self, reader: Reader, id_: str) -> None:
        for kind in ("portfolio", "group"):
            rec = reader.get(kind, id_)
            if rec is not None:
                detail = (
                    "a deleted id stays reserved: its ledger and audit keep it"
                    if (rec.status == "deleted")
                    else f"it is a {kind}"
                )
                raise AlreadyExistsError("id", id_, detail)

    def _free_id(self, name: str) -> str:
        """An unused id made from a display name: ``growth``, else ``growth_2``, ..."""
        base = slugify(name)
        candidate, n = base, 1
        while self.store.get("portfolio", candidate) or self.store.get("group", candidate):
            n += 1
            candidate = f"{base}_{n}"
        return candidate

    def portfolio(self, portfolio_id: str | None = None) -> PortfolioInfo:
        """A portfolio's entry (default: the active portfolio)."""
        pid = self._pid(portfolio_id)
        info = self._portfolio(self.store, pid)
        self._require(self.store, "view", pid)
        return info

    def group(self, group_id: str) -> GroupInfo:
        """A group's entry."""
        info = self._group(self.store, group_id)
        self._require(self.store, "view", group_id)
        return info

    def _visible(self, reader: Reader, target: str) -> bool:
        try:
            self._require(reader, "view", target)
        except PermissionDenied:
            return False
        return True

    def portfolios(
        self,
        *,
        tags: Iterable[str] | None = None,
        segment: Mapping[str, str] | None = None,
        status: str | Iterable[str] | None = None,
        namespace: str | None = None,
    ) -> list[PortfolioInfo]:
        """Portfolios this user may view, filtered; deleted tombstones are never listed.

        Parameters
        ----------
        tags : iterable of str, optional
            Keep portfolios carrying every one of these tags.
        segment : mapping, optional
            E.g. ``{"client": "a"}``: keep portfolios whose segment matches every item.
        status : str or iterable of str, optional
            Keep these lifecycle states (default: all but deleted).
        namespace : str, optional
            Keep ids in this namespace (``"client_a"`` keeps ``client_a/...``).
        """
        wanted_tags = set(tags or ())
        seg = dict(Segment.parse(segment).as_dict()) if segment is not None else {}
        seg = {k: v for k, v in seg.items() if v is not None}
        statuses = [status] if isinstance(status, str) else list(status or _LIVE)
        out = []
        for rec in self.store.list("portfolio", statuses):
            info = _portfolio_from(rec)
            if not wanted_tags <= set(info.tags):
                continue
            if any(info.segment.as_dict()[k] != v for k, v in seg.items()):
                continue
            if namespace is not None and namespace_of(info.id) != namespace:
                continue
            if self._visible(self.store, info.id):
                out.append(info)
        return out

    def groups(self) -> list[GroupInfo]:
        """Groups this user may view (deleted ones excluded)."""
        return [
            _group_from(r, self.store)
            for r in self.store.list("group", _LIVE)
            if self._visible(self.store, r.id)
        ]

    # -- hierarchy -------------------------------------------------------------------
    def _ancestors(self, reader: Reader, target: str) -> list[str]:
        """Groups containing ``target``, nearest first (breadth-first, each once)."""
        seen: list[str] = []
        frontier = [target]
        while frontier:
            nxt = []
            for t in frontier:
                for g in reader.parents(t):
                    if g not in seen:
                        seen.append(g)
                        nxt.append(g)
            frontier = nxt
        return seen

    def _ancestor_depths(self, reader: Reader, target: str) -> dict[str, int]:
        depths: dict[str, int] = {}
        frontier, d = [target], 0
        while frontier:
            d += 1
            nxt = []
            for t in frontier:
                for g in reader.parents(t):
                    if g not in depths:
                        depths[g] = d
                        nxt.append(g)
            frontier = nxt
        return depths

    def _leaf_portfolios(self, reader: Reader, gid: str) -> list[str]:
        out: list[str] = []
        stack = [gid]
        seen = {gid}
        while stack:
            g = stack.pop(0)
            for m in reader.members(g):
                if m.member_id in seen:
                    continue
                seen.add(m.member_id)
                if reader.get("group", m.member_id) is not None:
                    stack.append(m.member_id)
                else:
                    out.append(m.member_id)
        return out

    def ancestors(self, target: str) -> list[str]:
        """Groups that contain ``target`` directly or through nested groups."""
        return self._ancestors(self.store, target)

    def get_group_portfolios(self, group_id: str) -> list[str]:
        """Every portfolio in the group, including those of nested groups (each once)."""
        self._group(self.store, group_id)
        self._require(self.store, "view", group_id)
        return self._leaf_portfolios(self.store, group_id)

    # -- portfolio lifecycle -----------------------------------------------------------
    def create_portfolio(
        self,
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
            pid = self._free_id(str(fields.get("name") or "portfolio"))
        with self._tx("portfolio.create", pid) as (tx, events):
            return self._create_portfolio(tx, events, pid, fields, at)

    def _validated_portfolio(self, pid: str, fields: Mapping[str, Any]) -> PortfolioInfo:
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
            config=_json_checked(fields.get("config"), "config"),
            status=status,
        )

    def _create_portfolio(
        self,
        tx: Transaction,
        events: list[Event],
        pid: str | None,
        fields: Mapping[str, Any],
        at: datetime | None,
    ) -> str:
        self._require_creator(tx, "portfolio.create", pid or "?")
        validate_id(pid)
        self._check_free(tx, pid)
        info = self._validated_portfolio(pid, fields)
        tx.put("portfolio", pid, info.status, info.data())
        if not self._is_admin(tx):
            tx.set_grant(self.user, pid, str(Role.OWNER))
        if info.initial_capital > 0:
            tx.append(
                [
                    LedgerEntry(
                        pid,
                        "cash",
                        at or _utcnow(),
                        amount=info.initial_capital,
                        currency=info.currency,
                        actor=self.user,
                        memo="initial capital",
                    ).validated()
                ]
            )
        if tx.before is None and tx.after is None:
            tx.record(None, {"id": pid, "status": info.status, **info.data()})
        else:  # part of a larger operation (from_config): audit under its own target
            tx.note(
                "portfolio.create", pid, None, {"id": pid, "status": info.status, **info.data()}
            )
        events.append(self._event("portfolio.created", portfolio=pid, status=info.status))
        return pid

    def _transition(self, pid: str | None, action: str, allowed: Sequence[str], new: str) -> None:
        pid = self._pid(pid)
        with self._tx(action, pid) as (tx, events):
            info = self._portfolio(tx, pid)
            self._require(tx, action, pid)
            self._set_portfolio_status(tx, events, info, action, allowed, new)

    def _set_portfolio_status(
        self,
        tx: Transaction,
        events: list[Event],
        info: PortfolioInfo,
        action: str,
        allowed: Sequence[str],
        new: str,
        *,
        primary: bool = True,
    ) -> None:
        if info.status not in allowed:
            raise LifecycleError(info.id, info.status, action.split(".")[-1])
        tx.put("portfolio", info.id, new, info.data())
        if primary:
            tx.record({"status": info.status}, {"status": new})
        else:
            tx.note(action, info.id, {"status": info.status}, {"status": new})
        events.append(self._event(f"portfolio.{new}", portfolio=info.id, previous=info.status))

    def activate(self, portfolio_id: str | None = None) -> None:
        """Activate an inactive portfolio (needs MANAGER)."""
        self._transition(portfolio_id, "portfolio.activate", ("inactive",), "active")

    def deactivate(self, portfolio_id: str | None = None) -> None:
        """Deactivate an active portfolio: it stops trading (needs MANAGER)."""
        self._transition(portfolio_id, "portfolio.deactivate", ("active",), "inactive")

    def restore(self, portfolio_id: str) -> None:
        """Bring an archived portfolio back as inactive (needs OWNER)."""
        self._transition(portfolio_id, "portfolio.restore", ("archived",), "inactive")

    activate_portfolio = activate
    deactivate_portfolio = deactivate

    def delete(
        self, portfolio_id: str | None = None, *, hard: bool = False, force: bool = False
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
        pid = self._pid(portfolio_id)
        if not hard:
            self._transition(pid, "portfolio.archive", ("active", "inactive"), "archived")
            return
        with self._tx("portfolio.delete", pid) as (tx, events):
            info = self._portfolio(tx, pid)
            self._require(tx, "portfolio.delete", pid)
            open_ = tx.positions(pid).open_positions()
            if open_ and not force:
                raise OpenPositionsError(
                    pid,
                    info.status,
                    "hard-delete",
                    f"open positions {sorted(open_)}; pass force=True",
                )
            for gid in tx.parents(pid):
                self._detach(tx, gid, pid, info)
            for g in tx.grants(scope_id=pid):
                tx.set_grant(g.user_id, pid, None)
            settings = self._settings(tx)
            if settings.get("default_portfolio") == pid:
                self._put_settings(tx, {**settings, "default_portfolio": None})
            tx.put("portfolio", pid, "deleted", info.data())
            tx.record(
                {"status": info.status, "open_positions": open_},
                {"status": "deleted", "forced": bool(open_)},
            )
            events.append(self._event("portfolio.deleted", portfolio=pid, forced=bool(open_)))
        if self._active == pid:
            self._active = None

    delete_portfolio = delete

    def _detach(self, tx: Transaction, gid: str, member: str, info: Any) -> None:
        members = tx.members(gid)
        if any(m.weight is not None for m in members):
            raise LifecycleError(
                info.id,
                info.status,
                "hard-delete",
                f"group {gid!r} has a target allocation naming it; change it first",
            )
        tx.set_members(gid, [(m.member_id, m.weight) for m in members if m.member_id != member])

    def update_portfolio(self, portfolio_id: str | None = None, **fields: Any) -> PortfolioInfo:
        """Change metadata: name, description, risk_profile, benchmark, tags, segment.

        Currency and initial capital are fixed at creation (the ledger is in
        that currency).
        """
        pid = self._pid(portfolio_id)
        allowed = {"name", "description", "risk_profile", "benchmark", "tags", "segment"}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise ValidationError("fields", unknown, f"updatable fields are {sorted(allowed)}")
        with self._tx("portfolio.update", pid) as (tx, events):
            info = self._portfolio(tx, pid)
            self._require(tx, "portfolio.update", pid)
            new = self._validated_portfolio(pid, {**info.data(), "status": "active", **fields})
            data = {**new.data(), "config": info.config}
            tx.put("portfolio", pid, info.status, data)
            tx.record({k: info.data()[k] for k in fields}, {k: data[k] for k in fields})
            events.append(self._event("portfolio.updated", portfolio=pid, fields=sorted(fields)))
        return self._portfolio(self.store, pid)

    # -- configuration ------------------------------------------------------------------
    def set_config(self, target: str, values: Mapping[str, Any], *, replace: bool = False) -> None:
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
        values = _json_checked(values, "values")
        replace = check_bool(replace, "replace")
        with self._tx("config.set", target) as (tx, events):
            kind = self._existing_kind(tx, target)
            self._require(tx, f"{kind}.config", target)
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
            events.append(self._scoped_event(tx, "config.changed", target, keys=sorted(values)))

    def resolve_config(self, portfolio_id: str | None = None) -> ResolvedConfig:
        """A portfolio's effective configuration.

        Layers, later ones winning: registry ``defaults``; then its groups from
        the farthest ancestor to the nearest; then the portfolio's own
        overrides. Two groups at the same distance that set one key to
        different values are a conflict, unless something nearer sets it.

        Raises
        ------
        ConfigConflictError
            Naming the key and the conflicting groups' values.
        """
        pid = self._pid(portfolio_id)
        self.portfolio(pid)
        return self._resolve_config(self.store, pid)

    def _resolve_config(self, reader: Reader, pid: str) -> ResolvedConfig:
        """`resolve_config` read through ``reader`` (e.g. an open transaction), no role check."""
        info = self._portfolio(reader, pid)
        values = dict(self._settings(reader).get("defaults", {}))
        sources = dict.fromkeys(values, "defaults")
        conflicts: dict[str, dict[str, Any]] = {}
        depths = self._ancestor_depths(reader, pid)
        for depth in sorted(set(depths.values()), reverse=True):
            level: dict[str, dict[str, Any]] = {}
            for gid in sorted(g for g, d in depths.items() if d == depth):
                rec = reader.get("group", gid)
                for k, v in (rec.data.get("config", {}) if rec else {}).items():
                    level.setdefault(k, {})[gid] = v
            for k, by_group in level.items():
                distinct = {json.dumps(v, sort_keys=True) for v in by_group.values()}
                if len(distinct) > 1:
                    conflicts[k] = by_group
                    continue
                gid, v = next(iter(by_group.items()))
                values[k], sources[k] = v, f"group:{gid}"
                conflicts.pop(k, None)
        for k, v in info.config.items():
            values[k], sources[k] = v, "portfolio"
            conflicts.pop(k, None)
        if conflicts:
            key, by_group = sorted(conflicts.items())[0]
            raise ConfigConflictError(
                f"config.{key}",
                by_group,
                f"groups at the same depth disagree for portfolio {pid!r}; set it on the "
                "portfolio or a nearer group",
            )
        return ResolvedConfig(values, sources)

    # -- groups ------------------------------------------------------------------------
    def create_group(
        self,
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
        with self._tx("group.create", group_id) as (tx, events):
            self._create_group(
                tx, events, group_id, list(members), name, description, allocation, config
            )
        return group_id

    def create_portfolio_group(
        self, name: str, portfolio_ids: Iterable[str] = (), **kwargs: Any
    ) -> str:
        """Design-note API: create a group named ``name``.

        Its id is made from the name unless ``group_id=`` is given.
        """
        gid = kwargs.pop("group_id", None) or self._free_id(name)
        return self.create_group(gid, portfolio_ids, name=name, **kwargs)

    def _create_group(
        self,
        tx: Transaction,
        events: list[Event],
        gid: str,
        members: list[str],
        name: str | None,
        description: str,
        allocation: Mapping[str, float] | None,
        config: Mapping[str, Any] | None,
    ) -> None:
        validate_id(gid, "group_id")
        self._require_creator(tx, "group.create", gid)
        self._check_free(tx, gid)
        if name is not None:
            check_text(name, "name", max_length=MAX_NAME_LENGTH, multiline=False, allow_empty=False)
        check_text(description, "description", max_length=MAX_TEXT_LENGTH)
        for m in members:
            validate_id(m, "members")
        if len(set(members)) != len(members):
            dup = next(m for m in members if members.count(m) > 1)
            raise ValidationError("members", dup, "listed twice")
        for m in members:
            self._existing_kind(tx, m)
            self._require(tx, "group.join", m)
        weights = self._validated_allocation(gid, members, allocation)
        data = {
            "name": name or gid,
            "description": description,
            "config": _json_checked(config, "config"),
        }
        tx.put("group", gid, "active", data)
        tx.set_members(gid, list(zip(members, weights, strict=True)))
        if not self._is_admin(tx):
            tx.set_grant(self.user, gid, str(Role.OWNER))
        alloc = {m: w for m, w in zip(members, weights, strict=True) if w is not None}
        after = {"id": gid, **data, "members": members, "allocation": alloc}
        if tx.before is None and tx.after is None:
            tx.record(None, after)
        else:
            tx.note("group.create", gid, None, after)
        events.append(self._event("group.created", group=gid, members=members))

    def _validated_allocation(
        self, gid: str, members: Sequence[str], allocation: Mapping[str, float] | None
    ) -> list[float | None]:
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

    def _members_change(
        self,
        group_id: str,
        action: str,
        member: str,
        new_members: Any,
        allocation: Mapping[str, float] | None,
    ) -> None:
        with self._tx(action, group_id) as (tx, events):
            g = self._group(tx, group_id)
            self._require(tx, "group.members", group_id)
            self._existing_kind(tx, member)
            members = new_members(tx, g)
            if allocation is None and g.allocation is not None:
                raise AllocationError(
                    "allocation",
                    None,
                    f"group {group_id!r} has a target allocation; pass allocation= with a weight"
                    f" for each of its {len(members)} members",
                )
            weights = self._validated_allocation(group_id, members, allocation)
            tx.set_members(group_id, list(zip(members, weights, strict=True)))
            alloc = dict(zip(members, weights, strict=True)) if allocation else None
            tx.record(
                {"members": list(g.members), "allocation": g.allocation},
                {"members": members, "allocation": alloc},
            )
            topic = "group.member_added" if action == "group.add" else "group.member_removed"
            events.append(self._event(topic, group=group_id, member=member))

    def add_to_group(
        self, group_id: str, member_id: str, *, allocation: Mapping[str, float] | None = None
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
            self._require(tx, "group.join", member_id)
            if member_id in g.members:
                raise ValidationError("member_id", member_id, f"already in group {group_id!r}")
            if member_id == group_id or member_id in self._ancestors(tx, group_id):
                raise CycleError(
                    "member_id",
                    member_id,
                    f"group {member_id!r} contains {group_id!r}; adding it makes a cycle",
                )
            return [*g.members, member_id]

        self._members_change(group_id, "group.add", member_id, new_members, allocation)

    def remove_from_group(
        self, group_id: str, member_id: str, *, allocation: Mapping[str, float] | None = None
    ) -> None:
        """Remove a member (needs MANAGER on the group).

        A group with a target allocation needs the new ``allocation`` for the
        remaining members.
        """

        def new_members(tx: Transaction, g: GroupInfo) -> list[str]:
            if member_id not in g.members:
                raise NotFoundError(f"member of group {group_id!r}", member_id)
            return [m for m in g.members if m != member_id]

        self._members_change(group_id, "group.remove", member_id, new_members, allocation)

    def set_allocation(
        self,
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
        with self._tx("group.allocation", group_id) as (tx, events):
            g = self._group(tx, group_id)
            self._require(tx, "group.allocation", group_id)
            weights = self._validated_allocation(group_id, list(g.members), allocation)
            tx.set_members(group_id, list(zip(g.members, weights, strict=True)))
            new = None if allocation is None else dict(zip(g.members, weights, strict=True))
            tx.record(g.allocation, new)
            extra = {}
            if reason is not None:
                tx.note("group.allocation.reason", group_id, None, {"reason": reason})
                extra["reason"] = reason
            events.append(self._event("group.allocation_changed", group=group_id, **extra))

    def _group_transition(self, group_id: str, action: str, new: str) -> None:
        allowed = ("inactive",) if new == "active" else ("active",)
        with self._tx(action, group_id) as (tx, events):
            g = self._group(tx, group_id)
            self._require(tx, action, group_id)
            changed = []
            for gid in [group_id, *self._nested_groups(tx, group_id)]:
                rec = tx.get("group", gid)
                if rec is not None and rec.status in allowed:
                    tx.put("group", gid, new, rec.data)
                    if gid != group_id:
                        tx.note(action, gid, {"status": rec.status}, {"status": new})
                    events.append(self._event(f"group.{new}", group=gid))
            for pid in self._leaf_portfolios(tx, group_id):
                info = self._portfolio(tx, pid, deleted=True)
                if info.status in allowed:
                    verb = f"portfolio.{action.split('.')[1]}"
                    self._require(tx, verb, pid)
                    self._set_portfolio_status(tx, events, info, verb, allowed, new, primary=False)
                    changed.append(pid)
            tx.record({"status": g.status}, {"status": new, "portfolios": changed})

    def _nested_groups(self, reader: Reader, gid: str) -> list[str]:
        out, stack = [], [gid]
        while stack:
            for m in reader.members(stack.pop()):
                if reader.get("group", m.member_id) is not None and m.member_id not in out:
                    out.append(m.member_id)
                    stack.append(m.member_id)
        return out

    def activate_group(self, group_id: str) -> None:
        """Activate a group, its nested groups and their inactive portfolios, in one transaction."""
        self._group_transition(group_id, "group.activate", "active")

    def deactivate_group(self, group_id: str) -> None:
        """Deactivate a group, its nested groups and their active portfolios, in one transaction."""
        self._group_transition(group_id, "group.deactivate", "inactive")

    def delete_group(self, group_id: str, *, hard: bool = False) -> None:
        """Archive a group (members untouched), or with ``hard=True`` dissolve it.

        A hard delete leaves a tombstone, drops the group's memberships (its
        members stay) and grants; it is refused while a parent group's target
        allocation names it.
        """
        action = "group.delete" if hard else "group.archive"
        with self._tx(action, group_id) as (tx, events):
            g = self._group(tx, group_id)
            self._require(tx, action, group_id)
            rec = tx.get("group", group_id)
            assert rec is not None
            if hard:
                for parent in tx.parents(group_id):
                    self._detach(tx, parent, group_id, g)
                tx.set_members(group_id, [])
                for grant in tx.grants(scope_id=group_id):
                    tx.set_grant(grant.user_id, group_id, None)
            new = "deleted" if hard else "archived"
            tx.put("group", group_id, new, rec.data)
            tx.record({"status": g.status, "members": list(g.members)}, {"status": new})
            events.append(self._event(f"group.{new}", group=group_id))

    def _scoped_event(self, reader: Reader, topic: str, target: str, **payload: Any) -> Event:
        if reader.get("group", target) is not None:
            return self._event(topic, group=target, **payload)
        return self._event(topic, portfolio=target, **payload)

    # -- ledger ---------------------------------------------------------------------------
    def record_trade(
        self,
        asset: str,
        quantity: float,
        price: float,
        *,
        portfolio: str | None = None,
        fee: float = 0.0,
        ts: datetime | None = None,
        memo: str = "",
        force: bool = False,
        reason: str | None = None,
    ) -> int:
        """Append a trade to a portfolio's ledger (needs TRADER; the portfolio must be active).

        The ledger is append-only, so a trade is refused before it is written
        when it, or what it would do, is out of bounds:

        - numbers: see `pmkit.validation` (`MAX_QUANTITY`, `MAX_PRICE`,
          `MAX_AMOUNT` for ``|quantity * price| + fee``, `MAX_BALANCE` for the
          resulting cash);
        - a sale of more than is held, unless the portfolio's resolved config
          has ``allow_short: true`` (`ShortSaleError`);
        - a trade that takes cash below ``-margin_limit`` (config, default 0)
          while lowering it (`InsufficientCashError`);
        - a price more than ``price_band`` (config, default 0.25) away from
          the asset's last close at or before ``ts`` in the registry's market
          data (`PriceBandError`), unless ``force=True`` with a ``reason``.

        Parameters
        ----------
        asset : str
            Asset label; must be in the market data when the registry has it.
        quantity : float
            Signed units: buy > 0, sell < 0 (int, float or numpy scalar).
        price : float
            Price per unit in the portfolio currency (> 0).
        portfolio : str, optional
            Target portfolio (default: the active one).
        fee : float
            Fees in the portfolio currency (>= 0).
        ts : datetime, optional
            Trade time, tz-naive UTC (default now).
        memo : str
            Free text (at most `pmkit.validation.MAX_MEMO_LENGTH` characters).
        force : bool
            Book a price outside the band; needs ``reason``, which is written
            into the trade's audit record and event.
        reason : str, optional
            Why the price is forced.

        Returns
        -------
        int
            The ledger sequence number.
        """
        pid = self._pid(portfolio)
        with self._tx("ledger.trade", pid) as (tx, events):
            seq, rec = self._append_trade(
                tx, events, pid, asset, quantity, price, fee, ts, memo, force=force, reason=reason
            )
            tx.record(None, rec)
        return seq

    def _append_trade(
        self,
        tx: Transaction,
        events: list[Event],
        pid: str,
        asset: str,
        quantity: float,
        price: float,
        fee: float,
        ts: datetime | None,
        memo: str,
        *,
        force: bool = False,
        reason: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Validate, guard and append one trade inside ``tx``; (seq, audit image).

        Every trade path (`record_trade`, `Mutation.append_trade` used by
        fills and services) comes through here, so the guards hold for all.
        """
        force = check_bool(force, "force")
        if force:
            reason = check_text(reason, "reason", max_length=MAX_MEMO_LENGTH, allow_empty=False)
        elif reason is not None:
            check_text(reason, "reason", max_length=MAX_MEMO_LENGTH)
        info = self._portfolio(tx, pid)
        self._require(tx, "ledger.trade", pid)
        check_text(asset, "asset", max_length=MAX_NAME_LENGTH, multiline=False, allow_empty=False)
        self._check_tradable(info, asset)
        entry = LedgerEntry(
            pid,
            "trade",
            _utcnow() if ts is None else ts,
            asset=asset,
            quantity=quantity,
            price=price,
            fee=fee,
            currency=info.currency,
            actor=self.user,
            memo=memo,
        ).validated()
        self._guard_trade(tx, info, entry, force)
        (seq,) = tx.append([entry])
        extra = {"force": True, "reason": reason} if force else {}
        events.append(
            self._event(
                "ledger.trade",
                portfolio=pid,
                seq=seq,
                asset=entry.asset,
                quantity=entry.quantity,
                price=entry.price,
                **extra,
            )
        )
        return seq, {**entry.to_record(), "seq": seq, **extra}

    def _guard_trade(
        self, tx: Transaction, info: PortfolioInfo, entry: LedgerEntry, force: bool
    ) -> None:
        """Refuse shorts, cash below the margin and off-band prices (see `record_trade`)."""
        cfg = self._resolve_config(tx, info.id)
        pos = tx.positions(info.id)
        cash, held = check_balances(pos, entry)
        assert held is not None and entry.asset is not None
        before = pos.quantities.get(entry.asset, 0.0)
        slack = OPEN_QUANTITY_TOLERANCE * max(1.0, abs(entry.quantity))
        if entry.quantity < 0 and held < -slack and cfg.get("allow_short") is not True:
            raise ShortSaleError(
                "quantity",
                entry.quantity,
                f"sells {-entry.quantity:g} {entry.asset} but {info.id!r} holds {before:g};"
                " set config allow_short: true to allow short sales",
            )
        self._guard_cash(cfg, info, pos.cash, cash, "quantity", entry.quantity)
        band = check_number(
            cfg.get("price_band", DEFAULT_PRICE_BAND), "config.price_band", error=ConfigError
        )
        close = self._last_close(entry.asset, entry.ts)
        if close is not None and abs(entry.price / close - 1.0) > band and not force:
            raise PriceBandError(
                "price",
                entry.price,
                f"{abs(entry.price / close - 1.0):.1%} away from the last close {close:g} of"
                f" {entry.asset} (band {band:g}); pass force=True with a reason to book it",
            )

    @staticmethod
    def _guard_cash(
        cfg: Mapping[str, Any], info: PortfolioInfo, old: float, new: float, field: str, value: Any
    ) -> None:
        margin = check_number(
            cfg.get("margin_limit", 0.0), "config.margin_limit", error=ConfigError
        )
        if new < old and new < -margin - 1e-9 * max(1.0, abs(old)):
            raise InsufficientCashError(
                field,
                value,
                f"would take cash of {info.id!r} from {old:,.2f} to {new:,.2f} {info.currency},"
                f" below the floor {(-margin if margin else 0.0):,.2f} (config margin_limit)",
            )

    def _last_close(self, asset: str, ts: datetime) -> float | None:
        """The asset's last finite close at or before ``ts`` (None: no market data for it)."""
        import numpy as np

        market = self.market
        if market is None or "close" not in market:
            return None
        # The close matrix as numpy, once per market object: xarray's .sel per trade
        # would double record_trade's cost.
        cached = getattr(self, "_close_cache", None)
        if cached is None or cached[0] is not market:
            assets = {str(a): i for i, a in enumerate(market.indexes["asset"])}
            closes = np.asarray(market["close"].transpose("asset", "time").values, dtype=float)
            times = np.asarray(market.indexes["time"].values, dtype="datetime64[ns]")
            cached = self._close_cache = (market, times, assets, closes)
        _, times, assets, closes = cached
        row = assets.get(asset)
        try:
            end = int(np.searchsorted(times, np.datetime64(ts, "ns"), side="right"))
        except (TypeError, ValueError, OverflowError):
            return None
        if row is None or end == 0:
            return None
        window = closes[row, :end]
        ok = np.flatnonzero(np.isfinite(window) & (window > 0))
        return float(window[ok[-1]]) if ok.size else None

    def record_cash(
        self,
        amount: float,
        *,
        portfolio: str | None = None,
        ts: datetime | None = None,
        memo: str = "",
    ) -> int:
        """Append an external cash flow (deposit > 0, withdrawal < 0) in the portfolio currency.

        ``amount`` is bounded by `pmkit.validation.MAX_AMOUNT` and the cash it
        leaves by `MAX_BALANCE`; a withdrawal may take cash below zero only down
        to the portfolio's ``margin_limit`` config (default 0), else
        `InsufficientCashError`. ``memo`` is free text of at most
        `pmkit.validation.MAX_MEMO_LENGTH` characters.
        """
        pid = self._pid(portfolio)
        with self._tx("ledger.cash", pid) as (tx, events):
            seq, rec = self._append_cash(tx, events, pid, amount, ts, memo)
            tx.record(None, rec)
        return seq

    def _append_cash(
        self,
        tx: Transaction,
        events: list[Event],
        pid: str,
        amount: float,
        ts: datetime | None,
        memo: str,
    ) -> tuple[int, dict[str, Any]]:
        """Validate and append one external cash flow inside ``tx``; (seq, audit image)."""
        info = self._portfolio(tx, pid)
        self._require(tx, "ledger.cash", pid)
        if info.status != "active":
            raise LifecycleError(pid, info.status, "record cash flows for")
        entry = LedgerEntry(
            pid,
            "cash",
            _utcnow() if ts is None else ts,
            amount=amount,
            currency=info.currency,
            actor=self.user,
            memo=memo,
        ).validated()
        pos = tx.positions(pid)
        cash, _ = check_balances(pos, entry)
        self._guard_cash(self._resolve_config(tx, pid), info, pos.cash, cash, "amount", amount)
        (seq,) = tx.append([entry])
        events.append(self._event("ledger.cash", portfolio=pid, seq=seq, amount=entry.amount))
        return seq, {**entry.to_record(), "seq": seq}

    def _check_tradable(self, info: PortfolioInfo, asset: str) -> None:
        if info.status != "active":
            raise LifecycleError(info.id, info.status, "trade in")
        if self.market is None:
            return
        if asset not in self.market.indexes["asset"]:
            raise UnknownAssetError("asset", asset, "not in the registry's market data")
        ccy = str(self.market["currency"].sel(asset=asset).item())
        if ccy != info.currency:
            raise CurrencyMismatchError(
                "asset",
                asset,
                f"trades in {ccy}, portfolio {info.id!r} is in {info.currency}"
                " (record trades in the portfolio currency; value foreign assets with"
                " pmkit.analytics.valuation.portfolio_values(..., fx=...))",
            )

    def ledger(self, portfolio_id: str | None = None) -> list[LedgerEntry]:
        """A portfolio's ledger entries in sequence order (needs VIEWER)."""
        pid = self._pid(portfolio_id)
        self._portfolio(self.store, pid, deleted=True)
        self._require(self.store, "view", pid)
        return self.store.ledger(pid)

    def positions(self, portfolio_id: str | None = None) -> Positions:
        """A portfolio's positions and cash: the cached replay of its ledger (needs VIEWER)."""
        pid = self._pid(portfolio_id)
        self._portfolio(self.store, pid, deleted=True)
        self._require(self.store, "view", pid)
        return self.store.positions(pid)

    # -- valuation ---------------------------------------------------------------------------
    def _market(self) -> xr.Dataset:
        if self.market is None:
            raise ConfigError("market", None, "this registry has no market data; pass market=")
        return self.market

    def holdings(self, portfolio_ids: Sequence[str] | None = None, times: Any = None) -> xr.Dataset:
        """Holdings over time from the ledgers, on (portfolio, asset, time).

        Parameters
        ----------
        portfolio_ids : sequence of str, optional
            Default: every portfolio this user may view (not deleted).
        times : array-like of datetime64, optional
            Default: the market data's times.

        Returns
        -------
        xarray.Dataset
            ``quantity(portfolio, asset, time)`` in units and
            ``cash(portfolio, time)`` in each portfolio's currency.
        """
        from pmkit.model import holdings_from_ledger

        market = self._market()
        pids = (
            list(portfolio_ids) if portfolio_ids is not None else [p.id for p in self.portfolios()]
        )
        infos = [self._portfolio(self.store, p, deleted=True) for p in pids]
        for p in pids:
            self._require(self.store, "view", p)
        entries = [e for p in pids for e in self.store.ledger(p)]
        return holdings_from_ledger(
            entries,
            pids,
            list(market.indexes["asset"]),
            market.indexes["time"] if times is None else times,
            currency={i.id: i.currency for i in infos},
        )

    def values(self, portfolio_ids: Sequence[str] | None = None, at: Any = None) -> xr.DataArray:
        """Portfolio values (positions at market close plus cash) at one time.

        Parameters
        ----------
        portfolio_ids : sequence of str, optional
            Default: every portfolio this user may view.
        at : datetime-like, optional
            A time in the market data (default: its last time). Ledger entries
            up to and including ``at`` count.

        Returns
        -------
        xarray.DataArray
            Value per portfolio, dim ``portfolio``, in each portfolio's currency.
        """
        from pmkit.model import portfolio_values

        market = self._market()
        t = market.indexes["time"][-1] if at is None else at
        h = self.holdings(portfolio_ids, times=[t])
        return portfolio_values(h, market.sel(time=[t])).isel(time=0, drop=True)

    def value(self, portfolio_id: str | None = None, at: Any = None) -> float:
        """One portfolio's value at ``at`` (default: last market time), in its currency."""
        return float(self.values([self._pid(portfolio_id)], at).item())

    def group_holdings(self, group_id: str, at: Any = None) -> xr.Dataset:
        """Consolidated holdings of every portfolio in a group (nested included, each once).

        Returns
        -------
        xarray.Dataset
            ``quantity(asset)`` summed over member portfolios, ``cash`` summed.

        Raises
        ------
        CurrencyMismatchError
            If members have different currencies (FX arrives with the core).
        """
        pids = self.get_group_portfolios(group_id)
        self._same_currency(group_id, pids)
        market = self._market()
        t = market.indexes["time"][-1] if at is None else at
        h = self.holdings(pids, times=[t]).isel(time=0, drop=True)
        return h.sum("portfolio")

    def group_value(self, group_id: str, at: Any = None) -> float:
        """Consolidated value of a group: each member portfolio counted once."""
        pids = self.get_group_portfolios(group_id)
        if not pids:
            return 0.0
        self._same_currency(group_id, pids)
        return float(self.values(pids, at).sum().item())

    def _same_currency(self, group_id: str, pids: Sequence[str]) -> None:
        ccys = {self._portfolio(self.store, p).currency for p in pids}
        if len(ccys) > 1:
            raise CurrencyMismatchError(
                "group_id",
                group_id,
                f"members are in {sorted(ccys)}; convert with"
                " pmkit.analytics.valuation.portfolio_values(..., fx=...) first",
            )

    def summary(self, at: Any = None) -> pd.DataFrame:
        """One row per visible portfolio: status, segment, tags, currency, cash and value.

        With market data, ``cash`` and ``value`` are both as of ``at`` (default:
        the last market time), in the portfolio currency, and
        ``DataFrame.attrs["as_of"]`` holds that time. Without market data,
        ``cash`` is the current cash and ``value`` is NaN.
        """
        import pandas as pd

        from pmkit.model import portfolio_values

        infos = self.portfolios()
        ids = [i.id for i in infos]
        cash = {i: self.store.positions(i).cash for i in ids}
        vals = dict.fromkeys(ids, float("nan"))
        as_of = None
        if self.market is not None and infos:
            as_of = self.market.indexes["time"][-1] if at is None else pd.Timestamp(at)
            h = self.holdings(ids, times=[as_of])
            v = portfolio_values(h, self.market.sel(time=[as_of])).isel(time=0)
            vals = dict(zip(ids, v.values.tolist(), strict=True))
            cash = dict(zip(ids, h["cash"].isel(time=0).values.tolist(), strict=True))
        rows = [
            {
                "id": i.id,
                "name": i.name,
                "status": i.status,
                "segment": str(i.segment),
                "tags": ", ".join(i.tags),
                "currency": i.currency,
                "cash": cash[i.id],
                "value": vals[i.id],
            }
            for i in infos
        ]
        cols = ["id", "name", "status", "segment", "tags", "currency", "cash", "value"]
        table = pd.DataFrame(rows, columns=cols).set_index("id")
        table.attrs["as_of"] = as_of
        return table

    def group_tree(self, at: Any = None) -> GroupNode:
        """The group hierarchy as a tree, with consolidated values and target vs actual weights.

        Only what this user may view is shown: the root's children are the
        visible groups none of whose parents are visible, then visible
        portfolios in no visible group. A group's value is the sum of its
        visible member portfolios (each once), in their common currency; a
        group whose members have different currencies gets no value (None),
        since adding them needs FX conversion.
        """
        vals = self.summary(at)["value"].to_dict() if self.market is not None else {}
        groups = {g.id: g for g in self.groups()}
        visible = {p.id: p for p in self.portfolios()}

        def node(id_: str, target: float | None) -> GroupNode:
            if id_ not in groups:
                p = visible[id_]
                return GroupNode(
                    p.id,
                    p.name,
                    "portfolio",
                    p.status,
                    target,
                    None,
                    vals.get(p.id),
                    currency=p.currency,
                )
            g = groups[id_]
            kids = [
                node(m, g.allocation[m] if g.allocation else None)
                for m in g.members
                if m in groups or m in visible
            ]
            leaves = [p for p in self._leaf_portfolios(self.store, id_) if p in visible]
            ccys = {visible[p].currency for p in leaves}
            mixed = len(ccys) > 1
            currency = next(iter(ccys)) if len(ccys) == 1 else "USD"
            value = None if not vals or mixed else sum(vals[p] for p in leaves)
            n = GroupNode(
                g.id,
                g.name,
                "group",
                g.status,
                target,
                None,
                value,
                currency=currency,
                children=kids,
            )
            if value:
                for k in kids:
                    k.actual = None if k.value is None else k.value / value
            return n

        def top(id_: str) -> bool:
            return not any(parent in groups for parent in self.store.parents(id_))

        roots = [node(g, None) for g in groups if top(g)]
        loose = [node(p, None) for p in visible if top(p)]
        return GroupNode("", "All portfolios", "root", "active", children=roots + loose)

    # -- config application -------------------------------------------------------------
    def apply_config(self, config: Mapping[str, Any], *, at: datetime | None = None) -> None:
        """Create the portfolios and groups of a ``multi_portfolio_config`` in one transaction.

        Groups may list other groups (under ``portfolios`` or ``groups``); they
        are created children first. Registry settings (``default_portfolio``,
        ``isolation``, ``cross_portfolio``, ``defaults``) replace the current ones.
        """
        settings = validate_multi_portfolio_config(config)
        groups = dict(config.get("groups", {}))
        order = _groups_children_first(groups)
        with self._tx("registry.apply_config", "registry") as (tx, events):
            self._require_admin(tx, "registry.apply_config", "registry")
            before = self._settings(tx)
            tx.record(
                before,
                {**settings, "portfolios": sorted(config.get("portfolios", {})), "groups": order},
            )
            for pid, spec in config.get("portfolios", {}).items():
                self._create_portfolio(tx, events, pid, spec, at)
            for gid in order:
                spec = groups[gid]
                members = [*spec.get("portfolios", []), *spec.get("groups", [])]
                self._create_group(
                    tx,
                    events,
                    gid,
                    members,
                    spec.get("name"),
                    spec.get("description", ""),
                    spec.get("allocation"),
                    spec.get("config"),
                )
            self._put_settings(tx, settings)
        self.bus.isolate = bool(settings["isolation"]["events"])

    # -- display -----------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        info = self.store.info()
        table = self.summary().to_html(float_format=lambda x: f"{x:,.2f}", na_rep="—")
        tree = self.group_tree()._repr_html_()
        return (
            f"<div><b>pmkit Registry</b> — {info.backend}:{info.location}"
            f" (schema v{info.schema_version}), acting as <code>{self.user}</code>"
            f"{table}<b>Groups</b>{tree}</div>"
        )

    def __repr__(self) -> str:
        return f"Registry({self.store!r}, user={self.user!r})"

    # -- design-note aliases --------------------------------------------------------------------
    def get_all_portfolios(self) -> list[PortfolioInfo]:
        """Design-note API: every portfolio this user may view (alias of `portfolios`)."""
        return self.portfolios()


def _groups_children_first(groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(g: str) -> None:
        if g in order:
            return
        if g in visiting:
            raise CycleError("groups", g, "group hierarchy in config has a cycle")
        visiting.add(g)
        spec = groups[g]
        for m in [*spec.get("portfolios", []), *spec.get("groups", [])]:
            if m in groups:
                visit(m)
        visiting.discard(g)
        order.append(g)

    for g in groups:
        visit(g)
    return order


class Mutation:
    """An open registry transaction handed to a service (see `Registry.mutation`).

    Attributes
    ----------
    registry : Registry
        The session (its user is the audit actor).
    tx : Transaction
        The store transaction: reads see its own writes.
    events : list of Event
        Published in order after the commit.
    """

    def __init__(self, registry: Registry, tx: Transaction, events: list[Event]) -> None:
        self.registry = registry
        self._raw = tx  # for the registry's own checked writes (append_trade, append_cash)
        self.tx = GuardedTransaction(tx, registry.user)
        self.events = events

    @property
    def user(self) -> str:
        """The acting user."""
        return self.registry.user

    def portfolio(self, portfolio_id: str) -> PortfolioInfo:
        """The portfolio as this transaction sees it; `NotFoundError` if missing or deleted.

        No role check: pair it with `require` for the action at hand.
        """
        return self.registry._portfolio(self._raw, portfolio_id)

    def group_portfolios(self, group_id: str) -> list[str]:
        """Every portfolio in the group, nested groups included (each once), in this transaction."""
        return self.registry._leaf_portfolios(self._raw, group_id)

    def require(self, action: str, target: str) -> None:
        """Raise `PermissionDenied` unless the user may ``action`` on ``target`` (in this tx)."""
        self.registry._require(self._raw, action, target)

    def is_admin(self) -> bool:
        """Whether the acting user is an administrator."""
        return self.registry._is_admin(self._raw)

    def publish(
        self, topic: str, *, portfolio: str | None = None, group: str | None = None, **payload: Any
    ) -> None:
        """Queue an event for publication after the commit."""
        self.events.append(self.registry._event(topic, portfolio=portfolio, group=group, **payload))

    def take_events(self) -> list[Event]:
        """Take the queued events, to publish them after the commit yourself.

        For services with in-memory state that follows the store: call this
        last inside the ``with`` block, update the state after the commit, then
        publish, so that handlers reading the service see the new state (a
        rollback publishes nothing either way).
        """
        taken, self.events[:] = list(self.events), []
        return taken

    def record(self, before: Any, after: Any) -> None:
        """Before/after images of the transaction's primary audit record."""
        self.tx.record(before, after)

    def note(self, action: str, target: str, before: Any = None, after: Any = None) -> None:
        """A further audit record in the same commit."""
        self.tx.note(action, target, before, after)

    def append_trade(
        self,
        portfolio: str,
        asset: str,
        quantity: float,
        price: float,
        *,
        fee: float = 0.0,
        ts: datetime | None = None,
        memo: str = "",
    ) -> int:
        """Append a trade to ``portfolio``'s ledger in this transaction (as `record_trade`).

        The same checks apply (TRADER role, active portfolio, tradable asset);
        the entry gets its own ``ledger.trade`` audit record. Returns the
        ledger sequence number.
        """
        seq, rec = self.registry._append_trade(
            self._raw, self.events, portfolio, asset, quantity, price, fee, ts, memo
        )
        self._raw.note("ledger.trade", portfolio, None, rec)
        return seq

    def append_cash(
        self, portfolio: str, amount: float, *, ts: datetime | None = None, memo: str = ""
    ) -> int:
        """Append an external cash flow in this transaction (as `record_cash`)."""
        seq, rec = self.registry._append_cash(self._raw, self.events, portfolio, amount, ts, memo)
        self._raw.note("ledger.cash", portfolio, None, rec)
        return seq
