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


def open_store(url: str | Path = ":memory:", *, busy_timeout: float = 30.0) -> Store:
    """Open (creating and migrating if needed) the store at ``url``.

    Parameters
    ----------
    url : str or Path
        ``"sqlite:///relative/or/absolute.sqlite"``, ``"sqlite:///:memory:"``,
        a plain file path, or ``":memory:"``.
    busy_timeout : float
        Seconds a writer waits for another writer's lock.

    Returns
    -------
    Store
        The opened store.

    Raises
    ------
    StoreError
        For a URL scheme no backend handles.
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
    if text != ":memory:":
        Path(text).parent.mkdir(parents=True, exist_ok=True)
    return SQLiteStore(text, busy_timeout=busy_timeout)
