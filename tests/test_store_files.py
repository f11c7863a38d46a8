"""File faults: opening never damages a file, and every refusal is typed and names the path.

Each case compares the file's bytes (and the sidecar files beside it) before
and after a refused open: SQLite writes as soon as it is asked to (WAL mode
rewrites the header, reads create -wal/-shm), so "unchanged" has to be
checked, not assumed.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import threading
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmkit.errors import (
    IntegrityError,
    NotAStoreError,
    ReadOnlyStoreError,
    SchemaVersionError,
    StoreError,
    StoreLockedError,
    StoreNotFoundError,
)
from pmkit.ledger import LedgerEntry
from pmkit.registry import Registry
from pmkit.store import SQLiteStore, open_store
from pmkit.store.inspect import SIDECARS
from pmkit.store.migrations import MIGRATIONS, SCHEMA_VERSION, _split

T0 = datetime(2024, 1, 2, 16)


def _snapshot(path: Path) -> dict[str, str | None]:
    """Hash of the file and of each sidecar (None where absent)."""
    out: dict[str, str | None] = {}
    for suffix in ("", *SIDECARS):
        p = Path(str(path) + suffix)
        if p.is_dir():
            out[suffix] = repr(sorted(os.listdir(p)))
        else:
            out[suffix] = hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None
    return out


def _store_with_data(path: Path) -> None:
    reg = Registry(SQLiteStore(path))
    reg.create_portfolio("desk/a", 1_000.0, at=T0)
    reg.record_trade("AAPL", 2, 100.0, portfolio="desk/a", ts=T0)
    reg.store.close()


def _refused(path: Path, error: type[StoreError], **kwargs) -> StoreError:
    before = _snapshot(path)
    with pytest.raises(error) as info:
        SQLiteStore(path, **kwargs)
    assert _snapshot(path) == before
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value


def test_foreign_sqlite_file_is_refused_unchanged(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO customers VALUES (1, 'Ada')")
    conn.commit()
    conn.close()
    err = _refused(path, NotAStoreError)
    assert "without pmkit's metadata" in err.reason and "customers" in err.reason


def test_foreign_wal_mode_file_gets_no_sidecars(tmp_path):
    # A WAL database closed cleanly keeps the WAL flag in its header but has no
    # -wal file: reading it the ordinary way would create -wal and -shm.
    path = tmp_path / "wal.db"
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal"
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    assert not Path(f"{path}-wal").exists()
    _refused(path, NotAStoreError)
    assert not any(Path(f"{path}{s}").exists() for s in SIDECARS)


def test_foreign_file_with_a_meta_table_is_still_foreign(tmp_path):
    path = tmp_path / "meta.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    conn.commit()
    conn.close()
    _refused(path, NotAStoreError)


def test_newer_schema_is_refused_byte_for_byte(tmp_path):
    path = tmp_path / "new.sqlite"
    _store_with_data(path)
    conn = sqlite3.connect(path)
    newer = str(SCHEMA_VERSION + 1)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (newer,))
    conn.commit()
    conn.close()
    err = _refused(path, SchemaVersionError)
    assert str(SCHEMA_VERSION + 1) in err.reason


@pytest.mark.parametrize("keep", [50, 100, 4096, 0.5])
def test_truncated_store_is_refused_unchanged(tmp_path, keep):
    path = tmp_path / "t.sqlite"
    _store_with_data(path)
    size = path.stat().st_size
    n = int(size * keep) if isinstance(keep, float) else keep
    assert 0 < n < size
    with open(path, "r+b") as fh:
        fh.truncate(n)
    err = _refused(path, NotAStoreError)
    assert "truncated" in err.reason or "damaged" in err.reason


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.sampled_from([b"", b"SQLite format 3\x00"]),
    body=st.binary(min_size=1, max_size=3000),
)
def test_random_files_are_refused_unchanged(tmp_path_factory, prefix, body):
    path = tmp_path_factory.mktemp("rnd") / "x.sqlite"
    path.write_bytes(prefix + body)
    _refused(path, NotAStoreError)


def test_random_page_sized_sqlite_lookalike(tmp_path):
    # The magic, a plausible header and whole pages of garbage: only SQLite's
    # own read can tell, and that read must not write.
    header = bytearray(os.urandom(4096 * 3))
    header[:16] = b"SQLite format 3\x00"
    header[16:18] = (4096).to_bytes(2, "big")
    header[18:20] = b"\x01\x01"
    path = tmp_path / "g.sqlite"
    path.write_bytes(bytes(header))
    _refused(path, NotAStoreError)


def test_directory_and_path_under_a_file(tmp_path):
    err = _refused(tmp_path, NotAStoreError)
    assert "directory" in err.reason
    blocker = tmp_path / "notes.txt"
    blocker.write_text("not a directory")
    path = blocker / "store.sqlite"
    with pytest.raises(NotAStoreError) as info:
        open_store(path)
    assert str(blocker) in info.value.reason and info.value.path == str(path)
    assert blocker.read_text() == "not a directory"


def test_missing_file_or_directory_without_create(tmp_path):
    path = tmp_path / "typo" / "ops.sqlite"
    with pytest.raises(StoreNotFoundError) as info:
        open_store(path, create=False)
    assert "typo" in info.value.reason
    assert not (tmp_path / "typo").exists()
    with pytest.raises(StoreNotFoundError):
        open_store(tmp_path / "ops.sqlite", create=False)
    assert list(tmp_path.iterdir()) == []
    # Asked to create, it makes the directories and a migrated store.
    st_ = open_store(path, create=True)
    assert st_.schema_version == SCHEMA_VERSION
    st_.close()
    open_store(path, create=False).close()


def test_empty_file_is_only_initialised_when_asked(tmp_path):
    path = tmp_path / "empty.sqlite"
    path.touch()
    _refused(path, StoreNotFoundError, create=False)
    assert path.stat().st_size == 0
    SQLiteStore(path).close()
    assert SQLiteStore(path, create=False).schema_version == SCHEMA_VERSION


def test_read_only_open_reads_and_refuses_writes(tmp_path):
    path = tmp_path / "ro.sqlite"
    _store_with_data(path)
    main_before = path.read_bytes()
    st_ = SQLiteStore(path, read_only=True)
    assert st_.read_only
    assert st_.positions("desk/a").quantities == {"AAPL": 2.0}
    with pytest.raises(ReadOnlyStoreError) as info, st_.transaction("system", "x", "desk/a"):
        pass
    assert info.value.path == str(path)
    st_.close()
    assert path.read_bytes() == main_before


def test_file_without_write_bits_opens_read_only(tmp_path):
    path = tmp_path / "locked-down.sqlite"
    _store_with_data(path)
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)
    try:
        before = path.read_bytes()
        reg = Registry(SQLiteStore(path))
        assert reg.store.read_only
        assert reg.positions("desk/a").cash == pytest.approx(1_000.0 - 200.0)
        with pytest.raises(ReadOnlyStoreError):
            reg.record_cash(5.0, portfolio="desk/a")
        reg.store.close()
        assert path.read_bytes() == before
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def test_read_only_needs_an_existing_store(tmp_path):
    with pytest.raises(ReadOnlyStoreError):
        SQLiteStore(tmp_path / "none.sqlite", read_only=True)
    assert list(tmp_path.iterdir()) == []


def _hold_write_lock(path: Path, held: threading.Event, release: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    release.wait(30)
    conn.execute("ROLLBACK")
    conn.close()


def _locked(path: Path):
    held, release = threading.Event(), threading.Event()
    t = threading.Thread(target=_hold_write_lock, args=(path, held, release))
    t.start()
    assert held.wait(10)
    return t, release


def test_opening_takes_no_write_lock_and_a_locked_write_is_typed(tmp_path):
    path = tmp_path / "busy.sqlite"
    _store_with_data(path)
    t, release = _locked(path)
    try:
        st_ = SQLiteStore(path, busy_timeout=0.3)  # opens although another writer holds the lock
        assert st_.positions("desk/a").quantities == {"AAPL": 2.0}
        with pytest.raises(StoreLockedError) as info, st_.transaction("system", "x", "desk/a"):
            pass
        assert info.value.path == str(path) and "0.3 s" in info.value.reason
    finally:
        release.set()
        t.join()
    with st_.transaction("system", "x", "desk/a") as tx:  # the lock is free again
        tx.record(None, None)
    st_.close()


def _v2_store(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN")
    for version, migrate in enumerate(MIGRATIONS[:2], start=1):
        migrate(conn)
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(version),))
    conn.execute(
        "INSERT INTO ledger (portfolio, kind, ts, asset, quantity, price, fee, amount, currency,"
        " actor, memo) VALUES ('p', 'cash', '2024-01-02T16:00:00', NULL, 0, 0, 0, 50, 'USD',"
        " 'system', '')"
    )
    conn.execute("INSERT INTO cash (portfolio, amount, last_seq) VALUES ('p', 50.0, 1)")
    conn.execute("COMMIT")
    conn.close()


def test_migration_waits_for_the_lock_then_fails_typed_and_unchanged(tmp_path):
    path = tmp_path / "old.sqlite"
    _v2_store(path)
    t, release = _locked(path)
    try:
        before = path.read_bytes()
        with pytest.raises(StoreLockedError):
            SQLiteStore(path, busy_timeout=0.2)
        assert path.read_bytes() == before
    finally:
        release.set()
        t.join()
    st_ = SQLiteStore(path)  # now it migrates: the cache learns the entry count
    assert st_.schema_version == SCHEMA_VERSION
    assert st_._rows("SELECT entries, last_seq FROM cash WHERE portfolio = 'p'") == [(1, 1)]
    st_.close()


def test_read_only_open_of_an_old_schema_is_refused(tmp_path):
    path = tmp_path / "old.sqlite"
    _v2_store(path)
    before = path.read_bytes()
    with pytest.raises(ReadOnlyStoreError, match="migration"):
        SQLiteStore(path, read_only=True)
    assert path.read_bytes() == before


# -- append-only against every SQL path ---------------------------------------------------
@pytest.mark.parametrize("table", ["ledger", "audit"])
@pytest.mark.parametrize(
    "verb", ["INSERT OR REPLACE INTO", "REPLACE INTO", "INSERT OR IGNORE INTO", "INSERT INTO"]
)
def test_rows_of_append_only_tables_cannot_be_replaced(tmp_path, table, verb):
    path = tmp_path / "s.sqlite"
    _store_with_data(path)
    st_ = SQLiteStore(path)
    before = st_.dump()[table]
    cols = [r[1] for r in st_._rows(f"PRAGMA table_info({table})")]
    row = list(st_._rows(f"SELECT * FROM {table} ORDER BY seq LIMIT 1")[0])
    row[cols.index("ts")] = "1999-01-01T00:00:00"
    sql = f"{verb} {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    # The raw connection, as any SQL client would: the triggers live in the file.
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        st_._conn.execute(sql, row)
    plain = sqlite3.connect(path)  # recursive_triggers off: the insert trigger still holds
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        plain.execute(sql, row)
    plain.rollback()
    plain.close()
    assert st_.dump()[table] == before
    st_.close()


def test_cache_mismatch_on_open_names_the_portfolio(tmp_path):
    path = tmp_path / "s.sqlite"
    _store_with_data(path)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO ledger (portfolio, kind, ts, asset, quantity, price, fee, amount, currency,"
        " actor, memo) VALUES ('desk/a', 'trade', '2024-01-03T16:00:00', 'AAPL', 1e6, 1, 0, 0,"
        " 'USD', 'mallory', 'behind the cache')"
    )
    conn.commit()
    conn.close()
    with pytest.raises(IntegrityError) as info:
        SQLiteStore(path)
    assert info.value.portfolio == "desk/a" and "'desk/a'" in str(info.value)


def test_ledger_rows_of_a_portfolio_without_cache_are_found(tmp_path):
    path = tmp_path / "s.sqlite"
    _store_with_data(path)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO ledger (portfolio, kind, ts, asset, quantity, price, fee, amount, currency,"
        " actor, memo) VALUES ('desk/b', 'cash', '2024-01-03T16:00:00', NULL, 0, 0, 0, 1e9,"
        " 'USD', 'mallory', 'no cache row')"
    )
    conn.commit()
    conn.close()
    with pytest.raises(IntegrityError) as info:
        SQLiteStore(path)
    assert info.value.portfolio == "desk/b"
    assert "0 ledger entries" in str(info.value) and "has 1" in str(info.value)


def test_cache_row_without_ledger_is_a_mismatch(tmp_path):
    path = tmp_path / "s.sqlite"
    _store_with_data(path)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO cash (portfolio, amount, last_seq, entries) VALUES ('ghost', 1e9, 9, 1)"
    )
    conn.commit()
    conn.close()
    with pytest.raises(IntegrityError, match="ghost"):
        SQLiteStore(path)


def test_store_opened_twice_sees_the_same_state_and_entry_counts(tmp_path):
    path = tmp_path / "s.sqlite"
    _store_with_data(path)
    a = SQLiteStore(path)
    b = SQLiteStore(path)
    with a.transaction("system", "ledger.cash", "desk/a") as tx:
        tx.append([LedgerEntry("desk/a", "cash", T0, amount=7.0, actor="system")])
    b.verify_cache()
    assert b._rows("SELECT entries FROM cash WHERE portfolio = 'desk/a'") == [(3,)]
    assert b.replay("desk/a") == b.positions("desk/a")
    a.close()
    b.close()


def test_split_keeps_v3_trigger_bodies_whole():
    from pmkit.store.migrations import _V3

    stmts = _split(_V3)
    assert sum("CREATE TRIGGER" in s for s in stmts) == 2
    assert all(s.count("BEGIN") == s.count("END;") for s in stmts)
