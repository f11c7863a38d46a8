"""Schema migrations for the SQLite store, applied in order on open.

Each migration takes the schema from version ``n - 1`` to ``n`` inside the
same transaction that bumps ``meta.schema_version``, so a crash mid-way
leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from pmkit.ledger import LedgerEntry, replay

_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE entities (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    status TEXT NOT NULL,
    data TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE memberships (
    group_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    weight REAL,
    position INTEGER NOT NULL,
    PRIMARY KEY (group_id, member_id)
);
CREATE INDEX memberships_member ON memberships (member_id);
CREATE TABLE grants (
    user_id TEXT NOT NULL,
    scope_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (user_id, scope_id)
);
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    portfolio TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('trade', 'cash')),
    ts TEXT NOT NULL,
    asset TEXT,
    quantity REAL NOT NULL,
    price REAL NOT NULL,
    fee REAL NOT NULL,
    amount REAL NOT NULL,
    currency TEXT NOT NULL,
    actor TEXT NOT NULL,
    memo TEXT NOT NULL
);
CREATE INDEX ledger_portfolio ON ledger (portfolio, seq);
CREATE TRIGGER ledger_append_only_update BEFORE UPDATE ON ledger
    BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER ledger_append_only_delete BEFORE DELETE ON ledger
    BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT,
    after TEXT
);
CREATE INDEX audit_target ON audit (target, seq);
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""

# v2 caches the ledger replay so that reading positions does not scan the
# ledger; the cache is rebuilt from the ledger here and kept in step by the
# same transaction that appends an entry.
_V2 = """
CREATE TABLE positions (
    portfolio TEXT NOT NULL,
    asset TEXT NOT NULL,
    quantity REAL NOT NULL,
    PRIMARY KEY (portfolio, asset)
);
CREATE TABLE cash (
    portfolio TEXT PRIMARY KEY,
    amount REAL NOT NULL,
    last_seq INTEGER NOT NULL
);
"""

# v3 closes the REPLACE loophole of the append-only tables: `INSERT OR REPLACE`
# deletes the old row without firing the delete trigger (unless
# recursive_triggers is on), so an insert that names an existing key is
# refused outright. It also counts each portfolio's ledger entries in the
# cache, so that opening a store can check the cache against the ledger with
# one indexed aggregate instead of a replay.
_V3 = """
CREATE TRIGGER ledger_append_only_replace BEFORE INSERT ON ledger
    WHEN NEW.seq IS NOT NULL AND EXISTS (SELECT 1 FROM ledger WHERE seq = NEW.seq)
    BEGIN SELECT RAISE(ABORT, 'ledger is append-only'); END;
CREATE TRIGGER audit_append_only_replace BEFORE INSERT ON audit
    WHEN NEW.seq IS NOT NULL AND EXISTS (SELECT 1 FROM audit WHERE seq = NEW.seq)
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
ALTER TABLE cash ADD COLUMN entries INTEGER NOT NULL DEFAULT 0;
UPDATE cash SET entries = (SELECT COUNT(*) FROM ledger WHERE ledger.portfolio = cash.portfolio);
INSERT OR REPLACE INTO meta VALUES ('format', 'pmkit');
"""

# Listing the open records of a kind (the brokers' and the engine's open orders, read at
# every tick) would otherwise scan every record of the kind, filled ones included.
_V4 = """
CREATE INDEX entities_status ON entities (kind, status, id);
"""

LEDGER_COLUMNS = (
    "seq, portfolio, kind, ts, asset, quantity, price, fee, amount, currency, actor, memo"
)


def ledger_entry(row: sqlite3.Row | tuple) -> LedgerEntry:
    """Build a `LedgerEntry` from a row selected with `LEDGER_COLUMNS`."""
    seq, portfolio, kind, ts, asset, quantity, price, fee, amount, currency, actor, memo = row
    return LedgerEntry.from_record(
        dict(
            seq=seq,
            portfolio=portfolio,
            kind=kind,
            ts=ts,
            asset=asset,
            quantity=quantity,
            price=price,
            fee=fee,
            amount=amount,
            currency=currency,
            actor=actor,
            memo=memo,
        )
    )


def write_positions(conn: sqlite3.Connection, portfolio: str) -> None:
    """Recompute one portfolio's cached positions from its ledger."""
    rows = conn.execute(
        f"SELECT {LEDGER_COLUMNS} FROM ledger WHERE portfolio = ? ORDER BY seq", (portfolio,)
    ).fetchall()
    pos = replay(ledger_entry(r) for r in rows)
    conn.execute("DELETE FROM positions WHERE portfolio = ?", (portfolio,))
    conn.execute("DELETE FROM cash WHERE portfolio = ?", (portfolio,))
    conn.executemany(
        "INSERT INTO positions (portfolio, asset, quantity) VALUES (?, ?, ?)",
        [(portfolio, a, q) for a, q in pos.quantities.items()],
    )
    columns = {r[1] for r in conn.execute("PRAGMA table_info(cash)")}
    if "entries" in columns:
        conn.execute(
            "INSERT INTO cash (portfolio, amount, last_seq, entries) VALUES (?, ?, ?, ?)",
            (portfolio, pos.cash, pos.last_seq, len(rows)),
        )
    else:  # the v2 migration, before v3 adds the count
        conn.execute(
            "INSERT INTO cash (portfolio, amount, last_seq) VALUES (?, ?, ?)",
            (portfolio, pos.cash, pos.last_seq),
        )


def _v2(conn: sqlite3.Connection) -> None:
    for stmt in _split(_V2):
        conn.execute(stmt)
    for (portfolio,) in conn.execute("SELECT DISTINCT portfolio FROM ledger").fetchall():
        write_positions(conn, portfolio)


def _v3(conn: sqlite3.Connection) -> None:
    for stmt in _split(_V3):
        conn.execute(stmt)


def _v4(conn: sqlite3.Connection) -> None:
    for stmt in _split(_V4):
        conn.execute(stmt)


def _v1(conn: sqlite3.Connection) -> None:
    for stmt in _split(_V1):
        conn.execute(stmt)
    conn.execute(
        "INSERT INTO entities VALUES ('user', 'system', 'active', ?, 1, ?, ?)",
        ('{"admin": true, "display_name": "System"}', "1970-01-01T00:00:00", "1970-01-01T00:00:00"),
    )


def _split(script: str) -> list[str]:
    """Split a script into statements, keeping trigger bodies whole.

    ``executescript`` would commit the surrounding transaction, so migrations
    run statement by statement instead.
    """
    out: list[str] = []
    buf = ""
    for part in script.split(";"):
        buf += part + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n;"):
                out.append(buf.strip())
            buf = ""
    return out


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3, _v4]
SCHEMA_VERSION = len(MIGRATIONS)
