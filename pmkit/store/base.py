"""The store interface every backend implements.

A backend provides durable records (portfolios, groups, users, settings),
group memberships, roles, an append-only ledger with a cached replay, and an
audit log. Every mutation happens inside :meth:`Store.transaction`, which is
one database transaction and writes exactly one audit record on commit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from pmkit.ledger import LedgerEntry, Positions

__all__ = ["AuditRecord", "Membership", "Reader", "Record", "RoleGrant", "Store", "Transaction"]


@dataclass(frozen=True, slots=True)
class Record:
    """A stored entity: a portfolio, group, user or setting.

    Attributes
    ----------
    kind : str
        ``"portfolio"``, ``"group"``, ``"user"`` or ``"setting"``.
    id : str
        Identifier, unique within ``kind``.
    status : str
        Lifecycle state (e.g. ``"active"``).
    data : dict
        JSON-serialisable attributes.
    version : int
        Incremented on every write; 1 after creation.
    created_at, updated_at : str
        ISO-8601 UTC timestamps.
    """

    kind: str
    id: str
    status: str
    data: dict[str, Any]
    version: int
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class Membership:
    """A member of a group, with its target weight (None when the group has none)."""

    group_id: str
    member_id: str
    weight: float | None
    position: int


@dataclass(frozen=True, slots=True)
class RoleGrant:
    """A role a user holds on a portfolio or group."""

    user_id: str
    scope_id: str
    role: str


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audited mutation: who did what to which target, when, before and after."""

    seq: int
    ts: str
    actor: str
    action: str
    target: str
    before: Any
    after: Any


class Reader(ABC):
    """Read operations, shared by the store (committed state) and a transaction."""

    @abstractmethod
    def get(self, kind: str, id: str) -> Record | None:
        """Return the record or None."""

    @abstractmethod
    def list(self, kind: str, statuses: Sequence[str] | None = None) -> list[Record]:
        """Return records of ``kind`` ordered by id, optionally filtered by status."""

    @abstractmethod
    def members(self, group_id: str) -> list[Membership]:
        """Direct members of a group, in insertion order."""

    @abstractmethod
    def parents(self, member_id: str) -> list[str]:
        """Groups that directly contain ``member_id``, ordered by id."""

    @abstractmethod
    def grants(self, user_id: str | None = None, scope_id: str | None = None) -> list[RoleGrant]:
        """Role grants, optionally filtered by user and/or scope."""

    @abstractmethod
    def ledger(self, portfolio: str | None = None, after_seq: int = 0) -> list[LedgerEntry]:
        """Ledger entries in sequence order."""

    @abstractmethod
    def positions(self, portfolio: str) -> Positions:
        """Cached replay of a portfolio's ledger."""

    @abstractmethod
    def audit(
        self, target: str | None = None, actor: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        """Audit records, oldest first (the newest ``limit`` when given)."""


class Transaction(Reader):
    """An open write transaction. Reads see its own uncommitted writes."""

    before: Any = None
    after: Any = None
    notes: list[tuple[str, str, Any, Any]]

    @abstractmethod
    def put(self, kind: str, id: str, status: str, data: Mapping[str, Any]) -> Record:
        """Insert or replace a record; returns the stored record."""

    @abstractmethod
    def remove(self, kind: str, id: str) -> None:
        """Delete a record (tombstones are the registry's business, not the store's)."""

    @abstractmethod
    def set_members(self, group_id: str, members: Sequence[tuple[str, float | None]]) -> None:
        """Replace a group's members with ``(member_id, weight)`` pairs, in order."""

    @abstractmethod
    def set_grant(self, user_id: str, scope_id: str, role: str | None) -> None:
        """Set (or with None, revoke) a user's role on a scope."""

    @abstractmethod
    def append(self, entries: Sequence[LedgerEntry]) -> list[int]:
        """Append validated entries to the ledger; returns their sequence numbers."""

    def record(self, before: Any, after: Any) -> None:
        """Set the before/after images written to the audit record on commit."""
        self.before = before
        self.after = after

    def note(self, action: str, target: str, before: Any, after: Any) -> None:
        """Add a further audit record (same actor, same commit) for another target.

        Used when one operation changes several targets, e.g. a group
        activation that activates every member: each gets its own record.
        """
        self.notes.append((action, target, before, after))


@dataclass
class StoreInfo:
    """What a store is: backend, location and schema version."""

    backend: str
    location: str
    schema_version: int
    extra: dict[str, Any] = field(default_factory=dict)


class Store(Reader):
    """A durable store. Implementations: :class:`pmkit.store.sqlite.SQLiteStore`."""

    @abstractmethod
    def transaction(
        self, actor: str, action: str, target: str
    ) -> AbstractContextManager[Transaction]:
        """Open one write transaction that commits with one audit record.

        Parameters
        ----------
        actor : str
            The user performing the mutation.
        action : str
            Dotted action name, e.g. ``"portfolio.create"``.
        target : str
            Id of the portfolio, group or user acted on.
        """

    @abstractmethod
    def info(self) -> StoreInfo:
        """Backend, location and schema version."""

    @abstractmethod
    def replay(self, portfolio: str) -> Positions:
        """Positions recomputed from the ledger, bypassing the cache."""

    @abstractmethod
    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows in a canonical order, for equality checks and export."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Further use raises `StoreError`."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
