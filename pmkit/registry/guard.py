"""The transaction a service sees inside `Registry.mutation`: no back doors, nothing unaudited.

A service gets the store transaction to keep its own records (signals,
proposals, orders, strategies) in the same commit as the registry's. Handing
it the raw transaction would also hand it the registry's own records: a
service could grant itself a role, flip a user's admin flag, rewrite a
portfolio or append to the ledger without the checks `record_trade` makes.
`GuardedTransaction` refuses those writes (they have dedicated, audited
registry actions) and remembers every write it lets through, so that the
mutation can add an audit record with before/after images for any write the
service did not audit itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pmkit.errors import PermissionDenied
from pmkit.ledger import LedgerEntry, Positions
from pmkit.store.base import AuditRecord, Membership, Record, RoleGrant, Transaction

__all__ = ["PROTECTED_KINDS", "GuardedTransaction"]

#: Record kinds only the registry's own actions write: users (and their admin
#: flag) through add_user / deactivate_user / set_admin, portfolios and groups
#: through their lifecycle methods, registry settings through set_* methods.
PROTECTED_KINDS = frozenset({"user", "portfolio", "group", "setting"})


def _image(rec: Record | None) -> dict[str, Any] | None:
    return None if rec is None else {"status": rec.status, "data": rec.data}


class GuardedTransaction(Transaction):
    """A `Transaction` that refuses registry-owned writes and tracks the rest.

    Parameters
    ----------
    tx : Transaction
        The open store transaction.
    user : str
        The acting user (named in refusals).
    """

    def __init__(self, tx: Transaction, user: str) -> None:
        self._tx = tx
        self._user = user
        self._before: dict[tuple[str, str], dict[str, Any] | None] = {}

    # -- audit images (shared with the inner transaction) ---------------------------
    @property  # type: ignore[override]
    def before(self) -> Any:
        """Before image of the primary audit record."""
        return self._tx.before

    @property  # type: ignore[override]
    def after(self) -> Any:
        """After image of the primary audit record."""
        return self._tx.after

    @property  # type: ignore[override]
    def notes(self) -> list[tuple[str, str, Any, Any]]:
        """Further audit records of the commit."""
        return self._tx.notes

    def record(self, before: Any, after: Any) -> None:
        """Set the primary audit record's before/after images."""
        self._tx.record(before, after)

    def note(self, action: str, target: str, before: Any, after: Any) -> None:
        """Add a further audit record in the same commit."""
        self._tx.note(action, target, before, after)

    # -- reads ------------------------------------------------------------------------
    def get(self, kind: str, id: str) -> Record | None:  # noqa: D102
        return self._tx.get(kind, id)

    def list(self, kind: str, statuses: Sequence[str] | None = None) -> list[Record]:  # noqa: D102
        return self._tx.list(kind, statuses)

    def members(self, group_id: str) -> list[Membership]:  # noqa: D102
        return self._tx.members(group_id)

    def parents(self, member_id: str) -> list[str]:  # noqa: D102
        return self._tx.parents(member_id)

    def grants(  # noqa: D102
        self, user_id: str | None = None, scope_id: str | None = None
    ) -> list[RoleGrant]:
        return self._tx.grants(user_id, scope_id)

    def ledger(self, portfolio: str | None = None, after_seq: int = 0) -> list[LedgerEntry]:  # noqa: D102
        return self._tx.ledger(portfolio, after_seq)

    def positions(self, portfolio: str) -> Positions:  # noqa: D102
        return self._tx.positions(portfolio)

    def audit(  # noqa: D102
        self, target: str | None = None, actor: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        return self._tx.audit(target, actor, limit)

    # -- writes -----------------------------------------------------------------------
    def _refuse(self, what: str, target: str, instead: str) -> PermissionDenied:
        return PermissionDenied(self._user, what, target, instead)

    def _track(self, kind: str, id: str) -> None:
        if kind in PROTECTED_KINDS:
            raise self._refuse(
                f"write {kind} records in a service mutation",
                id,
                f"the registry's own {kind} actions",
            )
        self._before.setdefault((kind, id), _image(self._tx.get(kind, id)))

    def put(self, kind: str, id: str, status: str, data: Mapping[str, Any]) -> Record:
        """Insert or replace a service record (not a user, portfolio, group or setting)."""
        self._track(kind, id)
        return self._tx.put(kind, id, status, data)

    def remove(self, kind: str, id: str) -> None:
        """Delete a service record (not a user, portfolio, group or setting)."""
        self._track(kind, id)
        self._tx.remove(kind, id)

    def set_members(self, group_id: str, members: Sequence[tuple[str, float | None]]) -> None:
        """Refused: group membership changes go through the registry's group actions."""
        raise self._refuse("change group members in a service mutation", group_id, "add_to_group")

    def set_grant(self, user_id: str, scope_id: str, role: str | None) -> None:
        """Refused: roles change only through `Registry.grant` and `Registry.revoke`."""
        raise self._refuse("change role grants in a service mutation", scope_id, "grant/revoke")

    def append(self, entries: Sequence[LedgerEntry]) -> list[int]:
        """Refused: ledger entries go through `Mutation.append_trade` / `append_cash` checks."""
        target = entries[0].portfolio if entries else "ledger"
        raise self._refuse("append raw ledger entries", target, "Mutation.append_trade")

    # -- audit coverage ---------------------------------------------------------------
    def audit_uncovered(self, primary_target: str) -> None:
        """Add an audit note for each write no audit record of this commit covers.

        A write is covered when a record of the commit (the primary one, or a
        note) targets its id with a before or after image. The added note is
        ``"<kind>.write"`` with the record's status and data before the first
        write and after the last.
        """
        covered = {
            target
            for _, target, before, after in self._tx.notes
            if before is not None or after is not None
        }
        if self._tx.before is not None or self._tx.after is not None:
            covered.add(primary_target)
        for (kind, id_), before in self._before.items():
            if id_ not in covered:
                self._tx.note(f"{kind}.write", id_, before, _image(self._tx.get(kind, id_)))
