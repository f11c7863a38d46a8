"""The multi-portfolio registry: the notebook-facing facade over the service kernel.

A `Registry` is a session bound to one acting user over a durable store and
an event bus. Its public methods delegate to parts with one job each:

========================  =====================================================
`pmkit.registry.access`     who may do what (`AccessPolicy`: roles, grants, admin)
`pmkit.registry.hierarchy`  the group tree, walked once (ancestors, members)
`pmkit.registry.lifecycle`  portfolios: create, activate, archive, delete, config
`pmkit.registry.groups`     groups: members, allocations, activation, delete
`pmkit.registry.users`      users, grants and registry-wide settings
`pmkit.registry.trading`    the ledger's front door: guards and pre-trade limits
`pmkit.registry.controls`   the pre-trade limits every order path checks
`pmkit.registry.reporting`  listings, holdings, values, summary and group tree
`pmkit.registry.resolution` configuration: defaults, then groups, then portfolio
`pmkit.registry.catalogue`  stored kinds, their scope rule and the record codec
`pmkit.registry.context`    the write context services get (`WriteContext`)
`pmkit.registry.view`       the permission-filtered read view (`ReadView`)
========================  =====================================================

Every mutating call:

1. opens one store transaction;
2. checks the user's role on the target (raising `PermissionDenied`);
3. validates its input (raising a typed `pmkit.errors` error);
4. writes, with an audit record (actor, action, target, before, after);
5. publishes portfolio-routed events after the commit, each delivered only
   to subscribers whose user may read its portfolio or group.

An error at any step rolls the transaction back, so nothing changes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pmkit.errors import ConfigError, NotFoundError, ValidationError
from pmkit.events import Event, EventBus, Subscription
from pmkit.ledger import LedgerEntry, Positions
from pmkit.registry import bootstrap, lifecycle, reporting, trading
from pmkit.registry import groups as _groups
from pmkit.registry import hierarchy as _hierarchy
from pmkit.registry import users as _users
from pmkit.registry.access import AccessPolicy, Role
from pmkit.registry.catalogue import free_id, get_group, get_portfolio
from pmkit.registry.config import from_single_portfolio_config
from pmkit.registry.context import Mutation, WriteContext
from pmkit.registry.derived import DerivedCache
from pmkit.registry.groups import ALLOCATION_TOLERANCE
from pmkit.registry.ids import validate_user
from pmkit.registry.records import GroupInfo, PortfolioInfo
from pmkit.registry.resolution import ResolvedConfig, read_settings, resolve_config
from pmkit.registry.view import ReadView
from pmkit.store import Store, open_store
from pmkit.store.base import Reader, StoreInfo, Transaction

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "ALLOCATION_TOLERANCE",
    "Mutation",
    "ReadView",
    "Registry",
    "ResolvedConfig",
    "WriteContext",
]

def _delegate(part: Callable[..., Any]) -> Callable[..., Any]:
    """A facade method that calls ``part(registry, ...)``, with the part's name, docs and signature.

    ``inspect.signature`` of the bound method is the part's without its
    first (registry) parameter, so help in Jupyter shows the real arguments.
    """

    @functools.wraps(part)
    def method(self: Registry, *args: Any, **kwargs: Any) -> Any:
        return part(self, *args, **kwargs)

    return method


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
        routing and its per-subscriber read check are wired to this registry.
    market : xarray.Dataset, optional
        Market data (see `pmkit.model.market_dataset`). Needed for
        valuation and used to check trade assets and currencies.

    Examples
    --------
    >>> reg = Registry.open(":memory:")
    >>> reg.create_portfolio("client_a/growth", 1_000_000.0, name="Growth")
    'client_a/growth'
    """

    #: Who may do what; one policy for every session, reading through a given reader.
    policy = AccessPolicy(_hierarchy.ancestors)

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
            self.bus.ancestors = lambda target: _hierarchy.ancestors(self.store, target)
        if self.bus.may_read is None:
            self.bus.may_read = self._may_read_event
        self.bus.isolate = bool(self.settings()["isolation"]["events"])
        self.market = market
        #: Derived results (overviews), keyed by revision and user; shared by `as_user` sessions.
        self.derived = DerivedCache()
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

        Everything is applied in one transaction (`apply_config`): a config
        that fails anywhere leaves the store untouched. ``store`` is a store
        or a URL for `pmkit.store.open_store`; ``at`` stamps the
        initial-capital deposits (default: now).
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
        other = type(self)(self.store, user=user, bus=self.bus, market=self.market)
        other._active = self._active
        other.derived = self.derived
        return other

    # -- the kernel: write context, read view, events ---------------------------------
    @contextmanager
    def context(self, action: str, target: str) -> Iterator[WriteContext]:
        """One audited transaction for services built on the registry.

        The services (strategies, coordinator, proposals, execution) keep
        their state in the same store; this gives them the registry's rules:
        one transaction per mutation, one audit record by this session's user,
        events published only after the commit (never for a rollback), reads
        through ``ctx.view`` filtered by the user's roles.

        Parameters
        ----------
        action : str
            Dotted action name for the audit record, e.g. ``"proposal.approve"``.
        target : str
            Id of the portfolio, group, proposal or signal acted on.

        Yields
        ------
        WriteContext
            See `pmkit.registry.context.WriteContext`.

        Notes
        -----
        A context cannot change role grants, users (or their admin flag),
        portfolios, groups or registry settings, nor append raw ledger
        entries: those have dedicated, audited actions. Every record the
        service writes is covered by an audit record with before and after
        images: its own, or one added at commit.
        """
        with self._tx(action, target) as (tx, events):
            ctx = WriteContext(self, tx, events)
            yield ctx
            ctx.tx.audit_uncovered(target)

    #: The name services have used since the first release.
    mutation = context

    def view(self) -> ReadView:
        """What this session's user may see, read from committed state.

        Take a fresh view per request: it memoizes visibility.
        """
        return ReadView(self.policy, self.store, self.user)

    def service_view(self) -> ReadView:
        """An unfiltered view for a service's own bookkeeping (rebuilding in-memory state).

        Nothing read through it may be returned to a caller without a
        `view` check: it exists so that a service shared by several users
        (the coordinator's queue) can load everything once.
        """
        return ReadView(self.policy, self.store, self.user, scoped=False)

    def subscribe(
        self,
        pattern: str,
        handler: Callable[[Event], Any],
        *,
        portfolio: str | None = None,
        group: str | None = None,
        priority: int = 0,
    ) -> Subscription:
        """Receive events matching ``pattern`` that this session's user may read.

        See `pmkit.events.EventBus.subscribe`; the subscription is bound to
        this user, so another desk's events never reach ``handler``.
        """
        return self.bus.subscribe(
            pattern, handler, portfolio=portfolio, group=group, priority=priority, user=self.user
        )

    def publish(self, events: Iterable[Event]) -> None:
        """Publish events taken from a committed `WriteContext` (see ``take_events``)."""
        for event in events:
            self.bus.publish(event)

    def shares_store_with(self, other: Registry) -> bool:
        """Whether ``other`` is a session on the same store (so one can act for the other)."""
        return self.store is other.store

    def store_info(self) -> StoreInfo:
        """The store's backend, location and schema version."""
        return self.store.info()

    def close(self) -> None:
        """Close the store (every session on it): further use raises `StoreError`."""
        self.store.close()

    def revision(self) -> int:
        """Sequence number of the last committed write; caches of derived data key on it."""
        return self.view().revision()

    def _may_read_event(self, user: str, event: Event) -> bool:
        try:
            return ReadView(self.policy, self.store, user).may_read_event(event)
        except Exception:  # an unknown or deactivated subscriber receives nothing
            return False

    @contextmanager
    def _tx(self, action: str, target: str) -> Iterator[tuple[Transaction, list[Event]]]:
        events: list[Event] = []
        with self.store.transaction(self.user, action, target) as tx:
            yield tx, events
        self.publish(events)

    def _event(
        self, topic: str, *, portfolio: str | None = None, group: str | None = None, **payload: Any
    ) -> Event:
        return Event(topic, portfolio=portfolio, group=group, payload=payload, actor=self.user)

    def _scoped_event(self, reader: Reader, topic: str, target: str, **payload: Any) -> Event:
        if reader.get("group", target) is not None:
            return self._event(topic, group=target, **payload)
        return self._event(topic, portfolio=target, **payload)

    # -- access control -----------------------------------------------------------
    def _require(self, reader: Reader, action: str, target: str) -> None:
        self.policy.require(reader, self.user, action, target)

    def _require_creator(self, reader: Reader, action: str, target: str) -> None:
        self.policy.require_creator(reader, self.user, action, target)

    def _require_admin(self, reader: Reader, action: str, target: str) -> None:
        self.policy.require_admin(reader, self.user, action, target)

    def _is_admin(self, reader: Reader) -> bool:
        return self.policy.is_admin(reader, self.user)

    def require(self, action: str, target: str) -> None:
        """Raise `PermissionDenied` unless this session's user may ``action`` on ``target``.

        ``action`` is a key of `pmkit.registry.access.ACTION_ROLES`.
        """
        self._require(self.store, action, target)

    def can(self, action: str, target: str) -> bool:
        """Whether this session's user may perform ``action`` on ``target`` now."""
        return self.policy.may(self.store, self.user, action, target)

    def role_of(self, user: str, target: str, *, reader: Reader | None = None) -> Role | None:
        """Effective role of ``user`` on ``target`` (None when it has none).

        The highest of the user's grants on the target and on every group
        containing it, directly or through nested groups.
        """
        return self.policy.role_of(reader or self.store, user, target)

    # -- users and roles ------------------------------------------------------------
    add_user = _delegate(_users.add_user)

    def users(self) -> list[str]:
        """Ids of all users."""
        return [r.id for r in self.store.list("user")]

    def user_info(self, user_id: str) -> dict[str, Any]:
        """A user's ``status`` (``"active"`` or ``"inactive"``), ``admin``, ``can_create``, ``display_name``."""  # noqa: E501
        validate_user(user_id, "user_id")
        rec = self.store.get("user", user_id)
        if rec is None:
            raise NotFoundError("user", user_id)
        return {"status": rec.status, **rec.data}

    def deactivate_user(self, user_id: str) -> bool:
        """Deactivate a user (administrators only): every later call as that user is refused.

        Their grants stay (reactivation restores them). The built-in
        ``system`` administrator cannot be deactivated. False when the user
        was inactive already (nothing is written).
        """
        return _users.set_user(self, user_id, "user.deactivate", status="inactive")

    def activate_user(self, user_id: str) -> bool:
        """Reactivate a deactivated user (administrators only); False when already active."""
        return _users.set_user(self, user_id, "user.activate", status="active")

    def set_admin(self, user_id: str, admin: bool) -> bool:
        """Grant (``admin=True``) or revoke administrator rights (administrators only).

        The built-in ``system`` administrator keeps its rights. False when the
        flag already had that value (nothing is written).
        """
        if not isinstance(admin, bool):
            raise ValidationError("admin", admin, "must be True or False")
        return _users.set_user(self, user_id, "user.set_admin", admin=admin)

    grant = _delegate(_users.grant)

    revoke = _delegate(_users.revoke)

    # -- settings ---------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """Registry-wide settings: default portfolio, isolation, cross-portfolio flags, defaults."""
        return read_settings(self.store)

    set_streaming = _delegate(_users.set_streaming)

    set_default_portfolio = _delegate(_users.set_default_portfolio)

    # -- active portfolio (session state) ----------------------------------------------
    def set_active_portfolio(self, portfolio_id: str) -> None:
        """Make ``portfolio_id`` the target of calls that omit a portfolio id (session state)."""
        get_portfolio(self.store, portfolio_id)
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

        Tells existence only (no role check): services use it to refuse a
        missing target before they write anything, and check roles inside
        their write context.
        """
        return get_portfolio(self.store, portfolio_id).id

    def _pid(self, portfolio_id: str | None) -> str:
        if portfolio_id is not None:
            return portfolio_id
        pid = self._active or self.settings().get("default_portfolio")
        if pid is None:
            raise ConfigError(
                "portfolio_id", None, "no portfolio given and no active or default portfolio set"
            )
        return pid

    # -- lookups --------------------------------------------------------------------
    def portfolio(self, portfolio_id: str | None = None) -> PortfolioInfo:
        """A portfolio's entry (default: the active portfolio); needs VIEWER."""
        pid = self._pid(portfolio_id)
        info = get_portfolio(self.store, pid)
        self._require(self.store, "view", pid)
        return info

    def group(self, group_id: str) -> GroupInfo:
        """A group's entry; needs VIEWER."""
        info = get_group(self.store, group_id)
        self._require(self.store, "view", group_id)
        return info

    portfolios = _delegate(reporting.portfolios)

    def groups(self) -> list[GroupInfo]:
        """Groups this user may view (deleted ones excluded)."""
        return reporting.groups(self)

    def ancestors(self, target: str) -> list[str]:
        """Groups that contain ``target`` directly or through nested groups, nearest first."""
        return _hierarchy.ancestors(self.store, target)

    def get_group_portfolios(self, group_id: str) -> list[str]:
        """Every portfolio in the group, including those of nested groups (each once)."""
        self.group(group_id)
        return _hierarchy.leaf_portfolios(self.store, group_id)

    # -- portfolio lifecycle -----------------------------------------------------------
    create_portfolio = _delegate(lifecycle.create_portfolio)

    def activate(self, portfolio_id: str | None = None) -> None:
        """Activate an inactive portfolio (needs MANAGER)."""
        lifecycle.transition(self, portfolio_id, "portfolio.activate")

    def deactivate(self, portfolio_id: str | None = None) -> None:
        """Deactivate an active portfolio: it stops trading (needs MANAGER)."""
        lifecycle.transition(self, portfolio_id, "portfolio.deactivate")

    def restore(self, portfolio_id: str) -> None:
        """Bring an archived portfolio back as inactive (needs OWNER)."""
        lifecycle.transition(self, portfolio_id, "portfolio.restore")

    delete = _delegate(lifecycle.delete)

    update_portfolio = _delegate(lifecycle.update_portfolio)

    # -- configuration ------------------------------------------------------------------
    set_config = _delegate(lifecycle.set_config)

    def resolve_config(self, portfolio_id: str | None = None) -> ResolvedConfig:
        """A portfolio's effective configuration (needs VIEWER).

        Layers, later ones winning: registry ``defaults``, its groups from the
        farthest to the nearest, its own overrides; see
        `pmkit.registry.resolution.resolve_config` (`ConfigConflictError`
        when two groups at one depth disagree).
        """
        pid = self._pid(portfolio_id)
        self.portfolio(pid)
        return resolve_config(self.store, pid)

    apply_config = _delegate(bootstrap.apply_config)

    # -- groups ------------------------------------------------------------------------
    create_group = _delegate(_groups.create_group)

    def free_id(self, name: str) -> str:
        """An unused portfolio or group id made from a display name (``growth``, ``growth_2``)."""
        return free_id(self.store, name)

    add_to_group = _delegate(_groups.add_to_group)

    remove_from_group = _delegate(_groups.remove_from_group)

    set_allocation = _delegate(_groups.set_allocation)

    def activate_group(self, group_id: str) -> None:
        """Activate a group, its nested groups and their inactive portfolios, in one transaction."""
        _groups.group_transition(self, group_id, "group.activate", "active")

    def deactivate_group(self, group_id: str) -> None:
        """Deactivate a group, its nested groups and their active portfolios, in one transaction."""
        _groups.group_transition(self, group_id, "group.deactivate", "inactive")

    delete_group = _delegate(_groups.delete_group)

    # -- ledger ---------------------------------------------------------------------------
    record_trade = _delegate(trading.record_trade)

    record_cash = _delegate(trading.record_cash)

    def ledger(self, portfolio_id: str | None = None) -> list[LedgerEntry]:
        """A portfolio's ledger entries in sequence order (needs VIEWER)."""
        pid = self._pid(portfolio_id)
        return self.view().ledger(get_portfolio(self.store, pid, deleted=True).id)

    def positions(self, portfolio_id: str | None = None) -> Positions:
        """A portfolio's positions and cash: the cached replay of its ledger (needs VIEWER)."""
        pid = self._pid(portfolio_id)
        return self.view().positions(get_portfolio(self.store, pid, deleted=True).id)

    # -- valuation ---------------------------------------------------------------------------
    def require_market(self) -> xr.Dataset:
        """The registry's market data; `ConfigError` when it has none."""
        if self.market is None:
            raise ConfigError("market", None, "this registry has no market data; pass market=")
        return self.market

    holdings = _delegate(reporting.holdings)

    values = _delegate(reporting.values)

    def value(self, portfolio_id: str | None = None, at: Any = None) -> float:
        """One portfolio's value at ``at`` (default: last market time), in its currency."""
        return float(self.values([self._pid(portfolio_id)], at).item())

    group_holdings = _delegate(reporting.group_holdings)

    def group_value(self, group_id: str, at: Any = None) -> float:
        """Consolidated value of a group: each member portfolio counted once."""
        return reporting.group_value(self, group_id, at)

    summary = _delegate(reporting.summary)

    group_tree = _delegate(reporting.group_tree)

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

