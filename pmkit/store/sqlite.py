"""SQLite backend: the embedded default store.

WAL journal (readers never block the writer), a busy timeout so concurrent
writers queue instead of failing, ``BEGIN IMMEDIATE`` so a transaction holds
the write lock from its first statement (no deadlocking lock upgrades between
processes), and schema migrations applied on open.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pmkit.errors import (
    IntegrityError,
    ReadOnlyStoreError,
    SchemaVersionError,
    StoreError,
    StoreLockedError,
)
from pmkit.ledger import LedgerEntry, Positions, cash_effect
from pmkit.store.base import (
    AuditRecord,
    Membership,
    Reader,
    Record,
    RoleGrant,
    Store,
    StoreInfo,
    Transaction,
)
from pmkit.store.inspect import inspect_store_file, is_read_only_file, read_uri
from pmkit.store.migrations import (
    LEDGER_COLUMNS,
    MIGRATIONS,
    SCHEMA_VERSION,
    ledger_entry,
)

__all__ = ["SQLiteStore"]

_TABLES = ("meta", "entities", "memberships", "grants", "ledger", "audit", "positions", "cash")


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class _SQLReader(Reader):
    """Reads over one connection; used by the store and by transactions."""

    _conn: sqlite3.Connection

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def get(self, kind: str, id: str) -> Record | None:
        rows = self._rows(
            "SELECT kind, id, status, data, version, created_at, updated_at FROM entities"
            " WHERE kind = ? AND id = ?",
            (kind, id),
        )
        return _record(rows[0]) if rows else None

    def list(self, kind: str, statuses: Sequence[str] | None = None) -> list[Record]:
        sql = (
            "SELECT kind, id, status, data, version, created_at, updated_at FROM entities"
            " WHERE kind = ?"
        )
        params: list[Any] = [kind]
        if statuses is not None:
            # Without statistics SQLite would walk the primary key to skip the sort,
            # reading every record of the kind; open records are few.
            sql = sql.replace("FROM entities", "FROM entities INDEXED BY entities_status")
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params.extend(statuses)
        return [_record(r) for r in self._rows(sql + " ORDER BY id", params)]

    def members(self, group_id: str) -> list[Membership]:
        rows = self._rows(
            "SELECT group_id, member_id, weight, position FROM memberships"
            " WHERE group_id = ? ORDER BY position",
            (group_id,),
        )
        return [Membership(*r) for r in rows]

    def parents(self, member_id: str) -> list[str]:
        rows = self._rows(
            "SELECT group_id FROM memberships WHERE member_id = ? ORDER BY group_id", (member_id,)
        )
        return [r[0] for r in rows]

    def grants(self, user_id: str | None = None, scope_id: str | None = None) -> list[RoleGrant]:
        sql = "SELECT user_id, scope_id, role FROM grants WHERE 1 = 1"
        params: list[Any] = []
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        if scope_id is not None:
            sql += " AND scope_id = ?"
            params.append(scope_id)
        return [RoleGrant(*r) for r in self._rows(sql + " ORDER BY user_id, scope_id", params)]

    def ledger(self, portfolio: str | None = None, after_seq: int = 0) -> list[LedgerEntry]:
        sql = f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE seq > ?"
        params: list[Any] = [after_seq]
        if portfolio is not None:
            sql += " AND portfolio = ?"
            params.append(portfolio)
        return [ledger_entry(r) for r in self._rows(sql + " ORDER BY seq", params)]

    def positions(self, portfolio: str) -> Positions:
        rows = self._rows(
            "SELECT asset, quantity FROM positions WHERE portfolio = ? ORDER BY asset", (portfolio,)
        )
        cash = self._rows("SELECT amount, last_seq FROM cash WHERE portfolio = ?", (portfolio,))
        amount, last_seq = cash[0] if cash else (0.0, 0)
        return Positions(quantities=dict(rows), cash=amount, last_seq=last_seq)

    def audit(
        self, target: str | None = None, actor: str | None = None, limit: int | None = None
    ) -> list[AuditRecord]:
        sql = "SELECT seq, ts, actor, action, target, before, after FROM audit WHERE 1 = 1"
        params: list[Any] = []
        if target is not None:
            sql += " AND target = ?"
            params.append(target)
        if actor is not None:
            sql += " AND actor = ?"
            params.append(actor)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self._rows(sql, params)
        return [
            AuditRecord(s, ts, a, act, t, _loads(b), _loads(af))
            for s, ts, a, act, t, b, af in reversed(rows)
        ]


def _record(row: tuple[Any, ...]) -> Record:
    kind, id_, status, data, version, created, updated = row
    return Record(kind, id_, status, json.loads(data), version, created, updated)


class _SQLTransaction(_SQLReader, Transaction):
    """One open write transaction; its reads are memoized until it ends.

    Why memoize: a service transaction reads the same user, grants, settings,
    portfolio and order records many times (every role check and config
    resolution), and while it holds the write lock nothing but itself can
    change them, so a read is cached and a write updates the cache. Cached
    records are shared (`Record` is frozen; its ``data`` must not be
    mutated, as everywhere); positions are handed out as copies.
    """

    def __init__(self, conn: sqlite3.Connection, now: str) -> None:
        self._conn = conn
        self._now = now
        self.notes = []
        self._records: dict[tuple[str, str], Record | None] = {}
        self._positions: dict[str, Positions] = {}
        self._grants: dict[tuple[str | None, str | None], list[RoleGrant]] = {}
        self._members: dict[str, list[Membership]] = {}
        self._parents: dict[str, list[str]] = {}

    def get(self, kind: str, id: str) -> Record | None:
        key = (kind, id)
        if key not in self._records:
            self._records[key] = super().get(kind, id)
        return self._records[key]

    def positions(self, portfolio: str) -> Positions:
        if portfolio not in self._positions:
            self._positions[portfolio] = super().positions(portfolio)
        pos = self._positions[portfolio]
        return Positions(quantities=dict(pos.quantities), cash=pos.cash, last_seq=pos.last_seq)

    def grants(self, user_id: str | None = None, scope_id: str | None = None) -> list[RoleGrant]:
        key = (user_id, scope_id)
        if key not in self._grants:
            self._grants[key] = super().grants(user_id, scope_id)
        return list(self._grants[key])

    def members(self, group_id: str) -> list[Membership]:
        if group_id not in self._members:
            self._members[group_id] = super().members(group_id)
        return list(self._members[group_id])

    def parents(self, member_id: str) -> list[str]:
        if member_id not in self._parents:
            self._parents[member_id] = super().parents(member_id)
        return list(self._parents[member_id])

    def put(self, kind: str, id: str, status: str, data: Mapping[str, Any]) -> Record:
        old = self.get(kind, id)
        version = 1 if old is None else old.version + 1
        created = self._now if old is None else old.created_at
        text = _dumps(dict(data))
        self._conn.execute(
            "INSERT OR REPLACE INTO entities VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, id, status, text, version, created, self._now),
        )
        rec = Record(kind, id, status, json.loads(text), version, created, self._now)
        self._records[(kind, id)] = rec
        return rec

    def remove(self, kind: str, id: str) -> None:
        self._conn.execute("DELETE FROM entities WHERE kind = ? AND id = ?", (kind, id))
        self._records[(kind, id)] = None

    def set_members(self, group_id: str, members: Sequence[tuple[str, float | None]]) -> None:
        self._members.clear()
        self._parents.clear()
        self._conn.execute("DELETE FROM memberships WHERE group_id = ?", (group_id,))
        self._conn.executemany(
            "INSERT INTO memberships (group_id, member_id, weight, position) VALUES (?, ?, ?, ?)",
            [(group_id, m, w, i) for i, (m, w) in enumerate(members)],
        )

    def set_grant(self, user_id: str, scope_id: str, role: str | None) -> None:
        self._grants.clear()
        if role is None:
            self._conn.execute(
                "DELETE FROM grants WHERE user_id = ? AND scope_id = ?", (user_id, scope_id)
            )
        else:
            self._conn.execute(
                "INSERT OR REPLACE INTO grants VALUES (?, ?, ?)", (user_id, scope_id, role)
            )

    def append(self, entries: Sequence[LedgerEntry]) -> list[int]:
        seqs: list[int] = []
        for e in entries:
            e.validated()
            self._positions.pop(e.portfolio, None)
            cur = self._conn.execute(
                "INSERT INTO ledger (portfolio, kind, ts, asset, quantity, price, fee, amount,"
                " currency, actor, memo) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    e.portfolio,
                    e.kind,
                    e.ts.isoformat(),
                    e.asset,
                    float(e.quantity),
                    float(e.price),
                    float(e.fee),
                    float(e.amount),
                    e.currency,
                    e.actor,
                    e.memo,
                ),
            )
            seq = int(cur.lastrowid or 0)
            seqs.append(seq)
            # Same additions, in the same order, as pmkit.ledger.replay, so the
            # cache equals a fresh replay bit for bit.
            if e.kind == "trade":
                self._conn.execute(
                    "INSERT INTO positions (portfolio, asset, quantity) VALUES (?, ?, ?)"
                    " ON CONFLICT (portfolio, asset) DO UPDATE SET quantity = quantity + ?",
                    (e.portfolio, e.asset, float(e.quantity), float(e.quantity)),
                )
            self._conn.execute(
                "INSERT INTO cash (portfolio, amount, last_seq, entries) VALUES (?, 0.0 + ?, ?, 1)"
                " ON CONFLICT (portfolio) DO UPDATE SET amount = amount + ?, last_seq = ?,"
                " entries = entries + 1",
                (e.portfolio, cash_effect(e), seq, cash_effect(e), seq),
            )
        return seqs


class SQLiteStore(_SQLReader, Store):
    """Embedded SQLite store.

    Parameters
    ----------
    path : str or Path
        Database file, or ``":memory:"`` for a private in-memory store
        (no WAL, single process; useful in tests and demos).
    busy_timeout : float
        Seconds a writer waits for another process's write lock before
        raising `StoreLockedError`.
    create : bool
        Whether a missing (or empty) file may be created and initialised.
        With False, a missing file raises `StoreNotFoundError`.
    read_only : bool
        Open without ever writing; every transaction raises
        `ReadOnlyStoreError`. A file whose mode bits allow nobody to write
        (``chmod a-w``) opens read-only whatever this says.

    Raises
    ------
    NotAStoreError
        A directory, a path under a regular file, or a file that is not a
        pmkit store (foreign, truncated, damaged). The file is unchanged.
    SchemaVersionError
        A store written by a newer pmkit. The file is unchanged.
    StoreNotFoundError
        Nothing at ``path`` and ``create`` is false.
    StoreLockedError
        A migration is due and another writer kept the lock past ``busy_timeout``.
    IntegrityError
        The positions cache disagrees with the ledger (names the portfolio).

    Notes
    -----
    Opening reads the header, ``sqlite_master`` and the schema version before
    anything is written (see `pmkit.store.inspect`), and takes the write lock
    only when there is something to migrate. One connection per store object,
    guarded by a re-entrant lock, so a store may be shared by threads (e.g.
    Panel callbacks). Separate processes open their own `SQLiteStore` on the
    same file.
    """

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        busy_timeout: float = 30.0,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._in_tx = False
        self._conn = None  # type: ignore[assignment]
        memory = self.path == ":memory:"
        verdict = (
            None
            if memory
            else inspect_store_file(self.path, create=create, supported_version=SCHEMA_VERSION)
        )
        self.read_only = bool(read_only) or (not memory and is_read_only_file(self.path))
        if self.read_only and (verdict is None or verdict.new):
            raise ReadOnlyStoreError(self.path, "a read-only store must exist already")
        if verdict is not None and verdict.new:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._connect()
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Belt and braces beside the v3 triggers: REPLACE then fires delete triggers.
            self._conn.execute("PRAGMA recursive_triggers = ON")
            if not self.read_only:
                if not memory and not (verdict is not None and verdict.wal):
                    mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if mode.lower() != "wal":
                        raise StoreError(
                            f"could not enable WAL on {self.path!r} (journal_mode={mode})",
                            path=self.path,
                        )
                self._conn.execute("PRAGMA synchronous = FULL")
            if verdict is None or verdict.schema_version < SCHEMA_VERSION:
                if self.read_only:
                    raise ReadOnlyStoreError(
                        self.path,
                        f"schema version {verdict.schema_version if verdict else 0} needs a"
                        f" migration to {SCHEMA_VERSION}; open it writable once",
                    )
                self._migrate()
            self.verify_cache()
        except sqlite3.Error as exc:
            self.close()
            raise self._mapped(exc, "open") from exc
        except BaseException:
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        kwargs: dict[str, Any] = dict(
            isolation_level=None, check_same_thread=False, timeout=self.busy_timeout
        )
        if not self.read_only:
            return sqlite3.connect(self.path, **kwargs)
        try:
            conn = sqlite3.connect(read_uri(self.path), uri=True, **kwargs)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return conn
        except sqlite3.OperationalError:
            # A WAL store on read-only media: no -shm can be made, so read it as immutable.
            return sqlite3.connect(read_uri(self.path, immutable=True), uri=True, **kwargs)

    def _mapped(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """The typed error for an SQLite failure while ``doing`` something."""
        text = str(exc).lower()
        if "locked" in text or "busy" in text:
            return StoreLockedError(
                self.path,
                f"another writer held the lock for more than {self.busy_timeout:g} s"
                f" ({doing}: {exc})",
            )
        if "readonly" in text or "read-only" in text:
            return ReadOnlyStoreError(self.path, f"cannot write ({doing}: {exc})")
        return StoreError(f"store {self.path!r}: {doing} failed: {exc}", path=self.path)

    # -- schema ---------------------------------------------------------------
    def _version(self) -> int:
        has_meta = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return 0
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self, target: int = SCHEMA_VERSION) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                current = self._version()
                if current > SCHEMA_VERSION:
                    raise SchemaVersionError(
                        self.path,
                        f"schema version {current}; this pmkit understands up to"
                        f" {SCHEMA_VERSION}: upgrade pmkit",
                    )
                for version in range(current + 1, target + 1):
                    MIGRATIONS[version - 1](self._conn)
                    self._conn.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version),)
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def verify_cache(self) -> None:
        """Check the positions cache against the ledger, cheaply.

        The cache keeps, per portfolio, the number of ledger entries it covers
        and the last sequence number. Each portfolio's last sequence number
        must be the ledger's (one index probe each), and since sequence
        numbers run 1, 2, 3, ... without gaps (AUTOINCREMENT, nothing is ever
        deleted), the cached counts must add up to the ledger's largest
        sequence number. An entry added behind the cache's back shows up here
        in about a millisecond per hundred portfolios, whatever the ledger's
        length; `replay` compares values in full.

        Raises
        ------
        IntegrityError
            Naming the first portfolio whose cache disagrees.
        """
        cache = {p: (n, last) for p, n, last in self._rows(
            "SELECT portfolio, entries, last_seq FROM cash")}
        ((top,),) = self._rows("SELECT COALESCE(MAX(seq), 0) FROM ledger")
        totals_agree = (
            sum(n for n, _ in cache.values()) == top
            and max((last for _, last in cache.values()), default=0) == top
        )
        for pid, (_, last) in sorted(cache.items()):
            ((seq,),) = self._rows(
                "SELECT COALESCE(MAX(seq), 0) FROM ledger WHERE portfolio = ?", (pid,)
            )
            if seq != last:
                self._cache_mismatch(pid)
        if not totals_agree:
            for pid in self._ledger_portfolios_by_count(cache):
                self._cache_mismatch(pid)
            raise IntegrityError(  # pragma: no cover - the search above always names one
                self.path, f"the positions cache covers another ledger (last seq {top})"
            )

    def _ledger_portfolios_by_count(self, cache: dict[str, tuple[int, int]]) -> list[str]:
        """Portfolios whose cached entry count differs from the ledger's (a full scan)."""
        ledger = dict(self._rows("SELECT portfolio, COUNT(*) FROM ledger GROUP BY portfolio"))
        return [
            pid
            for pid in sorted(set(ledger) | set(cache))
            if ledger.get(pid, 0) != cache.get(pid, (0, 0))[0]
        ]

    def _cache_mismatch(self, pid: str) -> None:
        ((n, last),) = self._rows(
            "SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM ledger WHERE portfolio = ?", (pid,)
        )
        have = self._rows("SELECT entries, last_seq FROM cash WHERE portfolio = ?", (pid,))
        cn, clast = have[0] if have else (0, 0)
        raise IntegrityError(
            self.path,
            f"portfolio {pid!r}: the positions cache covers {cn} ledger entries up to seq"
            f" {clast}, the ledger has {n} up to seq {last}",
            portfolio=pid,
        )

    @property
    def schema_version(self) -> int:
        """Schema version of the open database."""
        with self._lock:
            return self._version()

    def info(self) -> StoreInfo:
        """Backend, location and schema version."""
        return StoreInfo("sqlite", self.path, self.schema_version)

    # -- transactions -----------------------------------------------------------
    @contextmanager
    def transaction(self, actor: str, action: str, target: str) -> Iterator[Transaction]:
        """Open one write transaction; commit writes one audit record.

        Any exception rolls everything back, the audit record included, and is
        re-raised unchanged.
        """
        with self._lock:
            if self._conn is None:
                raise StoreError("store is closed")
            if self.read_only:
                raise ReadOnlyStoreError(self.path, f"opened read-only; cannot {action}")
            if self._in_tx:
                raise StoreError(f"nested transaction for {action!r}: compose inside one")
            self._in_tx = True
            try:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    raise self._mapped(exc, action) from exc
                now = _now()
                tx = _SQLTransaction(self._conn, now)
                try:
                    yield tx
                    self._conn.executemany(
                        "INSERT INTO audit (ts, actor, action, target, before, after)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (now, actor, a, t, _dumps(b), _dumps(af))
                            for a, t, b, af in [(action, target, tx.before, tx.after), *tx.notes]
                        ],
                    )
                    self._conn.execute("COMMIT")
                except BaseException as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    if isinstance(exc, sqlite3.OperationalError):
                        raise self._mapped(exc, action) from exc
                    raise
            finally:
                self._in_tx = False

    # -- reads under the lock -------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._conn is None:
                raise StoreError("store is closed")
            return self._conn.execute(sql, params).fetchall()

    def replay(self, portfolio: str) -> Positions:
        """Positions recomputed from the ledger, bypassing the cache."""
        from pmkit.ledger import replay

        return replay(self.ledger(portfolio))

    def integrity_check(self) -> str:
        """Run SQLite's ``PRAGMA integrity_check``; ``"ok"`` when sound."""
        return str(self._rows("PRAGMA integrity_check")[0][0])

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table's rows, ordered by all columns."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        for table in _TABLES:
            cols = [r[1] for r in self._rows(f"PRAGMA table_info({table})")]
            out[table] = self._rows(f"SELECT * FROM {table} ORDER BY {', '.join(cols)}")
        return out

    def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"
