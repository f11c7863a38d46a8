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

from pmkit.errors import SchemaVersionError, StoreError
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
    def __init__(self, conn: sqlite3.Connection, now: str) -> None:
        self._conn = conn
        self._now = now
        self.notes = []

    def put(self, kind: str, id: str, status: str, data: Mapping[str, Any]) -> Record:
        old = self.get(kind, id)
        version = 1 if old is None else old.version + 1
        created = self._now if old is None else old.created_at
        self._conn.execute(
            "INSERT OR REPLACE INTO entities VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, id, status, _dumps(dict(data)), version, created, self._now),
        )
        return Record(kind, id, status, json.loads(_dumps(dict(data))), version, created, self._now)

    def remove(self, kind: str, id: str) -> None:
        self._conn.execute("DELETE FROM entities WHERE kind = ? AND id = ?", (kind, id))

    def set_members(self, group_id: str, members: Sequence[tuple[str, float | None]]) -> None:
        self._conn.execute("DELETE FROM memberships WHERE group_id = ?", (group_id,))
        self._conn.executemany(
            "INSERT INTO memberships (group_id, member_id, weight, position) VALUES (?, ?, ?, ?)",
            [(group_id, m, w, i) for i, (m, w) in enumerate(members)],
        )

    def set_grant(self, user_id: str, scope_id: str, role: str | None) -> None:
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
                "INSERT INTO cash (portfolio, amount, last_seq) VALUES (?, 0.0 + ?, ?)"
                " ON CONFLICT (portfolio) DO UPDATE SET amount = amount + ?, last_seq = ?",
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
        raising `StoreError`.

    Notes
    -----
    One connection per store object, guarded by a re-entrant lock, so a store
    may be shared by threads (e.g. Panel callbacks). Separate processes open
    their own `SQLiteStore` on the same file.
    """

    def __init__(self, path: str | Path = ":memory:", *, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._in_tx = False
        try:
            self._conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {self.path!r}: {exc}") from exc
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if self.path != ":memory:":
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"could not enable WAL on {self.path!r} (journal_mode={mode})")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._migrate()

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
            if self._in_tx:
                raise StoreError(f"nested transaction for {action!r}: compose inside one")
            self._in_tx = True
            try:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    raise StoreError(f"could not lock store {self.path!r}: {exc}") from exc
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
                except BaseException:
                    self._conn.execute("ROLLBACK")
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
