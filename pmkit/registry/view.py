"""The read view: everything a user may see, filtered once, in the kernel.

Services and front ends read through a `ReadView` (``registry.view()``)
instead of the store, so that no service writes its own permission filter.
A record is visible when the reader may ``view`` the portfolio or group the
catalogue says it belongs to (`pmkit.registry.catalogue`); registry-wide
records are visible to administrators (and public settings to everyone).
What a reader may not see is absent, as if it did not exist: a view never
tells one desk that another desk's signal or proposal exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pmkit.errors import LifecycleError, NotFoundError, PermissionDenied
from pmkit.events import Event
from pmkit.ledger import LedgerEntry, Positions
from pmkit.registry.access import AccessPolicy, Role
from pmkit.registry.catalogue import get_portfolio, service_record_scope, target_kind
from pmkit.registry.catalogue import kind as catalogue_kind
from pmkit.registry.hierarchy import leaf_portfolios
from pmkit.registry.lifecycle import state_refusal as lifecycle_state_refusal
from pmkit.registry.resolution import read_settings
from pmkit.store.base import AuditRecord, Reader, Record

if TYPE_CHECKING:
    from pmkit.registry.records import PortfolioInfo

__all__ = ["ReadView"]


class ReadView:
    """A permission-filtered, read-only view of the store for one user.

    Parameters
    ----------
    policy : AccessPolicy
        Decides what is visible.
    reader : Reader
        Committed state (the store) or an open transaction.
    user : str
        Whose permissions filter the reads.
    scoped : bool
        False only for a service's own bookkeeping (see `Registry.service_view`):
        nothing is filtered, and nothing read that way may be handed to a caller.

    Notes
    -----
    Visibility is memoized per view (one role lookup per portfolio or group),
    so take a fresh view for each request: grants changed later are not seen
    by an old view.
    """

    def __init__(self, policy: AccessPolicy, reader: Reader, user: str, *, scoped: bool = True):
        self._policy = policy
        self._reader = reader
        self.user = user
        self.scoped = scoped
        self._admin: bool | None = None
        self._seen: dict[str, bool] = {}

    # -- permission questions -------------------------------------------------------------
    @property
    def is_admin(self) -> bool:
        """Whether the reader is an administrator (sees everything)."""
        if self._admin is None:
            self._admin = self._policy.is_admin(self._reader, self.user)
        return self._admin

    def may(self, action: str, target: str) -> bool:
        """Whether the reader may perform ``action`` on ``target``."""
        return self._policy.may(self._reader, self.user, action, target)

    def refusal(self, action: str, target: str) -> PermissionDenied | None:
        """The `PermissionDenied` a service would raise for ``action`` on ``target``, or None.

        The same check the write path makes (`AccessPolicy.require`), as an
        answer instead of an exception, so that a front end can disable a
        control and say why (``exc.needed`` is the least role that would do)
        without a rule of its own. The service still checks when it acts.
        """
        try:
            self._policy.require(self._reader, self.user, action, target)
        except PermissionDenied as exc:
            return exc
        return None

    def state_refusal(self, action: str, portfolio_id: str) -> LifecycleError | None:
        """The `LifecycleError` ``action`` would raise in the portfolio's current state, or None.

        For the state changes ``portfolio.activate``, ``portfolio.deactivate``,
        ``portfolio.restore`` and ``portfolio.archive`` (a soft delete): the
        rule the write path applies (`pmkit.registry.lifecycle.TRANSITIONS`),
        as an answer, so a front end disables what the state does not allow
        and says why. Other actions, and a portfolio the reader may not see,
        get None (`refusal` answers for permissions).
        """
        if not self.may_read(portfolio_id):
            return None
        try:
            info = get_portfolio(self._reader, portfolio_id)
        except NotFoundError:
            return None
        return lifecycle_state_refusal(info, action)

    def creation_refusal(self, target: str = "?") -> PermissionDenied | None:
        """The `PermissionDenied` creating a portfolio or group would raise, or None.

        Creating needs an administrator or a user allowed to create
        (``can_create``); ``target`` only names the refused id in the error.
        """
        try:
            self._policy.require_creator(self._reader, self.user, "portfolio.create", target)
        except PermissionDenied as exc:
            return exc
        return None

    def role(self, target: str) -> Role | None:
        """The reader's effective role on ``target`` (grants on it and on its groups), or None."""
        return self._policy.role_of(self._reader, self.user, target)

    def may_read(self, target: str | None) -> bool:
        """Whether the reader may see the portfolio or group ``target`` (None: registry-wide)."""
        if not self.scoped:
            return True
        if target is None:
            return self.is_admin
        seen = self._seen.get(target)
        if seen is None:
            seen = self._seen[target] = self.is_admin or self.may("view", target)
        return seen

    def may_read_record(self, rec: Record) -> bool:
        """Whether the reader may see a stored record (by its kind's scope rule)."""
        k = catalogue_kind(rec.kind)
        target = k.scope(rec)
        if target is None and k.public:
            return True
        return self.may_read(target)

    def may_read_event(self, event: Event) -> bool:
        """Whether the reader may receive ``event``.

        An event about a portfolio or group needs ``view`` on it; a
        registry-wide event (no portfolio, no group) reaches administrators,
        and a user event (``payload["user"]``) also the user it concerns.
        """
        target = event.portfolio if event.portfolio is not None else event.group
        if target is not None:
            return self.may_read(target)
        if self.is_admin or not self.scoped:
            return True
        return event.payload.get("user") == self.user

    def require_read(self, target: str) -> None:
        """`PermissionDenied` unless the reader may see ``target``."""
        if not self.may_read(target):
            raise PermissionDenied(self.user, "view", target, "viewer")

    # -- records --------------------------------------------------------------------------
    def record(self, kind: str, id: str) -> Record | None:
        """One record of ``kind``; None when it does not exist *or* is not visible."""
        rec = self._reader.get(kind, id)
        if rec is None or not self.may_read_record(rec):
            return None
        return rec

    def records(self, kind: str, statuses: Sequence[str] | None = None) -> list[Record]:
        """Visible records of ``kind``, ordered by id, optionally by status."""
        catalogue_kind(kind)
        return [r for r in self._reader.list(kind, statuses) if self.may_read_record(r)]

    def portfolio(self, portfolio_id: str, *, deleted: bool = False) -> PortfolioInfo:
        """A visible portfolio's entry (`NotFoundError` / `PermissionDenied` otherwise)."""
        info = get_portfolio(self._reader, portfolio_id, deleted=deleted)
        self.require_read(info.id)
        return info

    def target_kind(self, target: str) -> str:
        """``"portfolio"`` or ``"group"`` for a live, visible id; `NotFoundError` otherwise.

        An id the reader may not see is reported missing, like one that does not exist.
        """
        kind = target_kind(self._reader, target)
        if not self.may_read(target):
            raise NotFoundError("portfolio or group", target)
        return kind

    def group_portfolios(self, group_id: str) -> list[str]:
        """Visible portfolios of a visible group, nested groups included (each once)."""
        self.require_read(group_id)
        leaves = leaf_portfolios(self._reader, group_id)
        return [p for p in leaves if self.may_read(p)]

    def parents(self, target: str) -> list[str]:
        """Visible groups directly containing ``target``."""
        return [g for g in self._reader.parents(target) if self.may_read(g)]

    def own_grants(self) -> list[tuple[str, str]]:
        """The reader's own direct role grants: ``(scope id, role)`` pairs, by scope."""
        return sorted((g.scope_id, g.role) for g in self._reader.grants(user_id=self.user))

    # -- ledger and audit ------------------------------------------------------------------
    def ledger(self, portfolio: str, after_seq: int = 0) -> list[LedgerEntry]:
        """A visible portfolio's ledger entries after ``after_seq``, in sequence order."""
        self.require_read(portfolio)
        return self._reader.ledger(portfolio, after_seq=after_seq)

    def positions(self, portfolio: str) -> Positions:
        """A visible portfolio's positions and cash (the cached ledger replay)."""
        self.require_read(portfolio)
        return self._reader.positions(portfolio)

    def audit(self, target: str | None = None, limit: int | None = None) -> list[AuditRecord]:
        """Audit records the reader may see, oldest first (the newest ``limit``).

        A record is visible when its target is: a portfolio or group the reader
        may view, or a service record (proposal, signal, order) that belongs
        to one. Administrators see the whole log.
        """
        if not self.scoped or self.is_admin:
            return self._reader.audit(target=target, limit=limit)
        if target is not None:
            return self._reader.audit(target=target, limit=limit) if self._target_ok(target) else []
        visible = [a for a in self._reader.audit() if self._target_ok(a.target)]
        return visible if limit is None else visible[-limit:] if limit > 0 else []

    def _target_ok(self, target: str) -> bool:
        if target in self._seen:
            return self._seen[target]
        for k in ("portfolio", "group"):
            if self._reader.get(k, target) is not None:
                return self.may_read(target)
        owner = service_record_scope(self._reader, target)
        ok = owner is not None and self.may_read(owner)
        self._seen[target] = ok
        return ok

    def revision(self) -> int:
        """The sequence number of the last committed audit record (changes on every write).

        Caches of derived data key on it: no write, same revision.
        """
        last = self._reader.audit(limit=1)
        return last[-1].seq if last else 0

    def settings(self) -> dict[str, Any]:
        """Registry-wide settings (readable by every active user)."""
        return read_settings(self._reader)

    def __repr__(self) -> str:
        return f"ReadView(user={self.user!r}, scoped={self.scoped})"
