"""Look at a file before opening it as a store, without changing a byte of it.

SQLite itself writes as soon as it is asked to: ``PRAGMA journal_mode=WAL``
rewrites the header, a migration creates tables, and even a read of a
WAL-mode database creates ``-wal`` and ``-shm`` files beside it. So the store
first reads the 100-byte header with plain file I/O, then reads
``sqlite_master`` and the schema version over a read-only (or, when that would
create files, immutable) connection, and only writes once the file is known to
be a pmkit store (or a new, empty file that the caller asked to create).

See https://www.sqlite.org/fileformat2.html#the_database_header for the
header fields used here.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from pmkit.errors import NotAStoreError, SchemaVersionError, StoreNotFoundError

__all__ = ["SIDECARS", "FileVerdict", "inspect_store_file", "is_read_only_file", "read_uri"]

_MAGIC = b"SQLite format 3\x00"
_HEADER_BYTES = 100
#: Files SQLite keeps beside a database.
SIDECARS = ("-wal", "-shm", "-journal")
#: Tables every pmkit store has had since schema version 1.
_CORE_TABLES = frozenset({"meta", "entities", "memberships", "grants", "ledger", "audit"})


@dataclass(frozen=True)
class FileVerdict:
    """What is at a store path.

    Attributes
    ----------
    new : bool
        Nothing is there yet, or an empty file (0 bytes, or an SQLite
        database with no schema objects): the store may initialise it.
    schema_version : int
        The pmkit schema version found (0 when ``new``).
    wal : bool
        The header says the database is in WAL mode.
    """

    new: bool
    schema_version: int
    wal: bool


def read_uri(path: str, *, immutable: bool = False) -> str:
    """SQLite URI that opens ``path`` read-only (``immutable`` also skips locks and sidecars)."""
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    return uri + "&immutable=1" if immutable else uri


def is_read_only_file(path: str) -> bool:
    """Whether the file's mode bits give nobody write permission (chmod a-w).

    Mode bits rather than ``os.access``: an administrator (root) may write any
    file, yet a store its owner marked read-only should open read-only for them too.
    """
    try:
        return not (os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    except FileNotFoundError:
        return False


def _check_parents(path: Path) -> Path | None:
    """The nearest missing ancestor directory, or None; refuses a file where a directory must be."""
    missing = None
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotAStoreError(
                    str(path), f"{str(parent)!r} is a regular file, not a directory"
                )
            return missing
        missing = parent
    return missing


def _header(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(_HEADER_BYTES)


def _page_size(header: bytes) -> int:
    raw = int.from_bytes(header[16:18], "big")
    return 65536 if raw == 1 else raw


def _check_header(path: str, header: bytes, size: int) -> bool:
    """Refuse a non-SQLite or truncated file; True when the header says WAL mode."""
    if not header.startswith(_MAGIC):
        raise NotAStoreError(path, "not an SQLite database (its first 16 bytes are not the magic)")
    if len(header) < _HEADER_BYTES:
        raise NotAStoreError(path, f"truncated: {size} bytes, shorter than the 100-byte header")
    page_size = _page_size(header)
    if page_size < 512 or page_size & (page_size - 1):
        raise NotAStoreError(path, f"damaged header: page size {page_size} is not a power of 2")
    if size % page_size:
        raise NotAStoreError(
            path, f"truncated or damaged: {size} bytes is not a whole number of {page_size}-byte"
            " pages"
        )
    # The in-header page count is only meaningful when the "version-valid-for"
    # number equals the change counter (fileformat2 §1.3.7).
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and pages * page_size > size:
        raise NotAStoreError(
            path, f"truncated: {size} bytes, the header says {pages} pages of {page_size} bytes"
        )
    return header[18] == 2 and header[19] == 2


def _schema(conn: sqlite3.Connection, path: str) -> tuple[set[str], int]:
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = 0
        if "meta" in names:
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
    except (sqlite3.DatabaseError, ValueError) as exc:
        raise NotAStoreError(path, f"unreadable as SQLite: {exc}") from exc
    return names, version


def inspect_store_file(path: str, *, create: bool, supported_version: int) -> FileVerdict:
    """Decide, reading only, whether ``path`` can be opened as a pmkit store.

    Parameters
    ----------
    path : str
        The database file.
    create : bool
        Whether a missing file (and missing parent directories) may be created.
    supported_version : int
        The newest schema version this pmkit understands.

    Returns
    -------
    FileVerdict

    Raises
    ------
    StoreNotFoundError
        Nothing at ``path`` and ``create`` is false.
    NotAStoreError
        A directory, a path under a regular file, a non-SQLite, truncated or
        damaged file, or an SQLite database without pmkit's metadata.
    SchemaVersionError
        A pmkit store of a newer schema.

    Notes
    -----
    The file is left byte-for-byte as it was, and no ``-wal``/``-shm`` file
    that was not there before is left behind, whatever the outcome.
    """
    p = Path(path)
    missing_parent = _check_parents(p)
    if p.is_dir():
        raise NotAStoreError(path, "is a directory")
    if not p.exists():
        if not create:
            where = f"directory {str(missing_parent)!r} does not exist" if missing_parent else (
                "no such file"
            )
            raise StoreNotFoundError(path, f"{where} (pass create=True, or --create, to make one)")
        return FileVerdict(new=True, schema_version=0, wal=False)
    if not p.is_file():
        raise NotAStoreError(path, "is not a regular file")
    size = p.stat().st_size
    if size == 0:
        if not create:
            raise StoreNotFoundError(path, "empty file (pass create=True, or --create, to use it)")
        return FileVerdict(new=True, schema_version=0, wal=False)
    wal = _check_header(path, _header(path), size)
    before = {s for s in SIDECARS if Path(path + s).exists()}
    # A WAL database whose -wal file is absent has everything in the main
    # file: read it immutable, which creates no sidecars. Otherwise the
    # sidecars exist already (a store in use, or one not cleanly closed) and a
    # read-only connection must see the WAL's content.
    immutable = wal and "-wal" not in before
    try:
        try:
            with closing(sqlite3.connect(read_uri(path, immutable=immutable), uri=True)) as conn:
                names, version = _schema(conn, path)
        except sqlite3.Error as exc:
            raise NotAStoreError(path, f"cannot be read as SQLite: {exc}") from exc
        if not names:
            if not create:
                raise StoreNotFoundError(path, "an empty SQLite database (pass create=True)")
            return FileVerdict(new=True, schema_version=0, wal=wal)
        if not names >= _CORE_TABLES or version < 1:
            shown = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "")
            raise NotAStoreError(
                path, f"an SQLite database without pmkit's metadata (tables: {shown})"
            )
        if version > supported_version:
            raise SchemaVersionError(
                path,
                f"schema version {version}; this pmkit understands up to {supported_version}:"
                " upgrade pmkit",
            )
        return FileVerdict(new=False, schema_version=version, wal=wal)
    except BaseException:
        for s in SIDECARS:
            if s not in before:
                Path(path + s).unlink(missing_ok=True)
        raise
