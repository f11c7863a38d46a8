"""Durable storage behind one small interface (SQLite by default).

Use :func:`open_store` with a URL or a path::

    store = open_store("sqlite:///ops.sqlite")   # a file
    store = open_store(":memory:")               # private, in memory
"""

from __future__ import annotations

from pathlib import Path

from pmkit.errors import StoreError
from pmkit.store.base import AuditRecord, Membership, Record, RoleGrant, Store, Transaction
from pmkit.store.sqlite import SQLiteStore

__all__ = [
    "AuditRecord",
    "Membership",
    "Record",
    "RoleGrant",
    "SQLiteStore",
    "Store",
    "Transaction",
    "open_store",
]


def open_store(
    url: str | Path = ":memory:",
    *,
    busy_timeout: float = 30.0,
    create: bool = True,
    read_only: bool = False,
) -> Store:
    """Open (creating and migrating if needed) the store at ``url``.

    Parameters
    ----------
    url : str or Path
        ``"sqlite:///relative/or/absolute.sqlite"``, ``"sqlite:///:memory:"``,
        a plain file path, or ``":memory:"``.
    busy_timeout : float
        Seconds a writer waits for another writer's lock.
    create : bool
        Whether a missing file (and its missing directories) may be created.
    read_only : bool
        Never write; transactions raise `ReadOnlyStoreError`.

    Returns
    -------
    Store
        The opened store.

    Raises
    ------
    StoreError
        For a URL scheme no backend handles; its subclasses for a path that is
        not a pmkit store, is missing (with ``create=False``), is newer, or is
        locked (see `SQLiteStore`). The file is never changed by a refusal.
    """
    text = str(url)
    if "://" in text:
        scheme, _, rest = text.partition("://")
        if scheme != "sqlite":
            raise StoreError(f"store url {text!r}: no backend for scheme {scheme!r} (have: sqlite)")
        # sqlite:///rel.db -> "rel.db"; sqlite:////abs/x.db -> "/abs/x.db"
        text = rest[1:] if rest.startswith("/") else rest
    if not text:
        raise StoreError(f"store url {str(url)!r} names no database")
    return SQLiteStore(text, busy_timeout=busy_timeout, create=create, read_only=read_only)
