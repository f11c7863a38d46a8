"""The SQLite store: WAL, migrations, transactions, append-only tables, persistence, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
from datetime import datetime, timedelta

import pytest

from pmkit.errors import SchemaVersionError, StoreError, ValidationError
from pmkit.ledger import LedgerEntry, replay
from pmkit.store import SQLiteStore, open_store
from pmkit.store.migrations import MIGRATIONS, SCHEMA_VERSION, _split

T0 = datetime(2021, 1, 4, 16)


def _trade(pid: str, asset: str, q: float, p: float, i: int = 0) -> LedgerEntry:
    return LedgerEntry(
        pid,
        "trade",
        T0 + timedelta(minutes=i),
        asset=asset,
        quantity=q,
        price=p,
        fee=0.5,
        actor="t",
    )


@pytest.fixture
def path(tmp_path):
    return tmp_path / "s.sqlite"


def test_wal_busy_timeout_and_schema_version(path):
    st = SQLiteStore(path, busy_timeout=7.5)
    assert st._rows("PRAGMA journal_mode")[0][0] == "wal"
    assert st._rows("PRAGMA busy_timeout")[0][0] == 7500
    assert st.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
    assert st.info().backend == "sqlite"


def test_open_store_urls(tmp_path):
    a = open_store(f"sqlite:///{tmp_path}/a/b.sqlite")
    assert a.info().location == f"{tmp_path}/a/b.sqlite"
    assert open_store("sqlite:///:memory:").info().location == ":memory:"
    with pytest.raises(StoreError, match="postgresql"):
        open_store("postgresql://localhost/db")


def test_transaction_commits_one_audit_record_with_before_after(path):
    st = SQLiteStore(path)
    with st.transaction("alice", "portfolio.create", "p") as tx:
        tx.put("portfolio", "p", "active", {"name": "P"})
        tx.record(None, {"name": "P"})
    (rec,) = st.audit(target="p")
    assert (rec.actor, rec.action, rec.target, rec.before, rec.after) == (
        "alice",
        "portfolio.create",
        "p",
        None,
        {"name": "P"},
    )
    assert datetime.fromisoformat(rec.ts) <= datetime.utcnow() + timedelta(seconds=1)


def test_failed_transaction_changes_nothing(path):
    st = SQLiteStore(path)
    with st.transaction("a", "x", "p") as tx:
        tx.put("portfolio", "p", "active", {})
        tx.append([_trade("p", "AAPL", 3, 100.0)])
    before = st.dump()
    with pytest.raises(ValidationError), st.transaction("a", "y", "p") as tx:
        tx.put("portfolio", "p", "inactive", {"changed": True})
        tx.append([_trade("p", "AAPL", 1, 100.0)])
        tx.append([LedgerEntry("p", "trade", T0, asset="AAPL", quantity=1, price=-1.0)])
    assert st.dump() == before


def test_nested_transaction_is_refused(path):
    st = SQLiteStore(path)
    with (
        pytest.raises(StoreError, match="nested"),
        st.transaction("a", "x", "p"),
        st.transaction("a", "y", "p"),
    ):
        pass
    assert st.audit() == []


@pytest.mark.parametrize("table", ["ledger", "audit"])
def test_ledger_and_audit_are_append_only(path, table):
    st = SQLiteStore(path)
    with st.transaction("a", "x", "p") as tx:
        tx.append([_trade("p", "AAPL", 3, 100.0)])
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(f"UPDATE {table} SET actor = 'mallory'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute(f"DELETE FROM {table}")


def test_positions_cache_equals_replay_bit_for_bit(path):
    st = SQLiteStore(path)
    entries = [LedgerEntry("p", "cash", T0, amount=10_000.0)]
    entries += [
        _trade("p", a, q, px, i)
        for i, (a, q, px) in enumerate(
            [
                ("AAPL", 10, 129.41),
                ("MSFT", 7.5, 217.69),
                ("AAPL", -3.3, 131.01),
                ("KO", 1e-3, 52.1),
            ]
        )
    ]
    with st.transaction("a", "x", "p") as tx:
        seqs = tx.append(entries)
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    cached, fresh = st.positions("p"), st.replay("p")
    assert cached.quantities == fresh.quantities
    assert cached.cash == fresh.cash  # exact: same additions in the same order
    assert cached.last_seq == seqs[-1]
    expected_cash = (
        10_000.0 - 10 * 129.41 - 0.5 - 7.5 * 217.69 - 0.5 + 3.3 * 131.01 - 0.5 - 1e-3 * 52.1 - 0.5
    )
    assert cached.cash == pytest.approx(expected_cash, rel=1e-12)


def test_close_and_reopen_gives_identical_state(path):
    st = SQLiteStore(path)
    with st.transaction("a", "create", "p") as tx:
        tx.put("portfolio", "p", "active", {"tags": ["x"], "n": 1.5})
        tx.set_members("g", [("p", 1.0)])
        tx.set_grant("bob", "p", "viewer")
        tx.append([LedgerEntry("p", "cash", T0, amount=5.0), _trade("p", "AAPL", 1, 3.0)])
        tx.record(None, {"n": 1.5})
    before = st.dump()
    st.close()
    with pytest.raises(StoreError):
        st.dump()
    again = SQLiteStore(path)
    assert again.dump() == before
    pos = again.positions("p")
    assert pos == replay(again.ledger("p"))
    assert (pos.quantities, pos.cash, pos.last_seq) == ({"AAPL": 1.0}, 5.0 - 3.0 - 0.5, 2)


def test_migration_from_v1_builds_the_positions_cache_from_the_ledger(path):
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for stmt in _split("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"):
        conn.execute(stmt)
    MIGRATIONS[0](conn)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    rows = [
        ("p", "cash", T0.isoformat(), None, 0.0, 0.0, 0.0, 1000.0, "USD", "a", ""),
        ("p", "trade", T0.isoformat(), "AAPL", 4.0, 120.0, 1.0, 0.0, "USD", "a", ""),
        ("q", "trade", T0.isoformat(), "KO", -2.0, 50.0, 0.0, 0.0, "USD", "a", ""),
    ]
    conn.executemany(
        "INSERT INTO ledger (portfolio, kind, ts, asset, quantity, price, fee,"
        " amount, currency, actor, memo) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    conn.execute("COMMIT")
    conn.close()
    st = SQLiteStore(path)
    assert st.schema_version == SCHEMA_VERSION
    for pid in ("p", "q"):
        assert st.positions(pid) == st.replay(pid)
    assert st.positions("p").cash == 1000.0 - 480.0 - 1.0
    assert st.positions("q").quantities == {"KO": -2.0}


def test_migration_to_v4_indexes_records_by_status_and_keeps_them(path):
    """Listing a kind's open records reads the status index, not every record of the kind."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    for stmt in _split("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"):
        conn.execute(stmt)
    for migrate in MIGRATIONS[:3]:
        migrate(conn)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    conn.executemany(
        "INSERT INTO entities VALUES ('order', ?, ?, '{}', 1, 't', 't')",
        [(f"o{i:03d}", "filled" if i % 3 else "open") for i in range(300)],
    )
    conn.execute("COMMIT")
    conn.close()
    st = SQLiteStore(path)
    assert st.schema_version == SCHEMA_VERSION >= 4
    assert [r.id for r in st.list("order", ["open"])] == [f"o{i:03d}" for i in range(0, 300, 3)]
    assert len(st.list("order")) == 300
    seen = []
    st._conn.set_trace_callback(seen.append)
    st.list("order", ["open", "partially_filled"])
    st._conn.set_trace_callback(None)
    plan = st._rows("EXPLAIN QUERY PLAN " + seen[-1])
    detail = " ".join(str(row[-1]) for row in plan)
    assert "entities_status" in detail and "SCAN" not in detail


def test_newer_schema_is_refused_and_left_untouched(path):
    SQLiteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(
        "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
    )
    conn.commit()
    conn.close()
    with pytest.raises(SchemaVersionError, match=str(SCHEMA_VERSION + 1)):
        SQLiteStore(path)
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert row[0] == str(SCHEMA_VERSION + 1)


# -- two processes writing at once ---------------------------------------------------------
N_WRITES = 60


def _writer(path: str, worker: int, barrier) -> None:
    st = SQLiteStore(path, busy_timeout=60)
    barrier.wait()
    for i in range(N_WRITES):
        pid = f"p{i % 3}"
        with st.transaction(f"w{worker}", "ledger.trade", pid) as tx:
            # read-modify-write: a lost update would show as a wrong counter
            rec = tx.get("setting", "counter")
            n = 0 if rec is None else rec.data["n"]
            tx.put("setting", "counter", "active", {"n": n + 1})
            tx.append([_trade(pid, f"A{worker}", 1.0 + worker, 10.0 + i, i)])
            tx.record(n, n + 1)
    st.close()


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_processes_lose_nothing(path, workers):
    SQLiteStore(path).close()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_writer, args=(str(path), w, barrier)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    st = SQLiteStore(path)
    assert st.integrity_check() == "ok"
    total = workers * N_WRITES
    assert st.get("setting", "counter").data["n"] == total
    ledger = st.ledger()
    assert len(ledger) == total
    assert [e.seq for e in ledger] == list(range(1, total + 1))
    assert len(st.audit()) == total
    for pid in ("p0", "p1", "p2"):
        assert st.positions(pid) == st.replay(pid)
    for w in range(workers):
        units = sum(st.positions(p).quantities.get(f"A{w}", 0.0) for p in ("p0", "p1", "p2"))
        assert units == N_WRITES * (1.0 + w)


# -- reads inside a transaction --------------------------------------------------------------
def test_a_transaction_reads_its_own_writes_through_its_memo(path):
    st = SQLiteStore(path)
    with st.transaction("a", "seed", "p") as tx:
        tx.put("order", "o1", "open", {"q": 1})
        tx.append([_trade("p", "AAPL", 2.0, 10.0)])
        tx.set_grant("u", "p", "viewer")
        tx.set_members("g", [("p", None)])
    with st.transaction("a", "work", "p") as tx:
        assert tx.get("order", "o1").data == {"q": 1}
        put = tx.put("order", "o1", "filled", {"q": 1, "filled": [1.0, 2]})
        got = tx.get("order", "o1")
        assert got == put and got.version == 2 and got.data["filled"] == [1.0, 2]
        tx.remove("order", "o1")
        assert tx.get("order", "o1") is None
        pos = tx.positions("p")
        pos.quantities["AAPL"] = 1e9  # a caller's copy: the next read is not affected
        assert tx.positions("p").quantities == {"AAPL": 2.0}
        tx.append([_trade("p", "AAPL", 3.0, 10.0, 1)])
        assert tx.positions("p").quantities == {"AAPL": 5.0}
        assert [g.role for g in tx.grants("u", "p")] == ["viewer"]
        tx.set_grant("u", "p", "trader")
        assert [g.role for g in tx.grants("u", "p")] == ["trader"]
        assert tx.parents("p") == ["g"]
        tx.set_members("g", [])
        assert tx.parents("p") == [] and tx.members("g") == []
    assert st.get("order", "o1") is None
    assert st.positions("p") == st.replay("p") and st.positions("p").quantities == {"AAPL": 5.0}


def test_a_rolled_back_transactions_memo_dies_with_it(path):
    st = SQLiteStore(path)
    with st.transaction("a", "seed", "p") as tx:
        tx.put("order", "o1", "open", {"q": 1})
    with pytest.raises(RuntimeError), st.transaction("a", "fail", "p") as tx:
        tx.put("order", "o1", "filled", {"q": 2})
        tx.append([_trade("p", "AAPL", 2.0, 10.0)])
        assert tx.get("order", "o1").status == "filled"
        raise RuntimeError("abandon")
    with st.transaction("a", "again", "p") as tx:
        assert tx.get("order", "o1").data == {"q": 1} and tx.get("order", "o1").version == 1
        assert tx.positions("p").quantities == {}


def test_a_transaction_sees_what_another_process_committed_before_it(path):
    mine, other = SQLiteStore(path), SQLiteStore(path)
    with mine.transaction("a", "seed", "p") as tx:
        tx.put("order", "o1", "open", {"q": 1})
        assert tx.get("order", "o1").data == {"q": 1}
    with other.transaction("b", "change", "p") as tx:
        tx.put("order", "o1", "filled", {"q": 7})
        tx.append([_trade("p", "KO", 4.0, 50.0)])
    with mine.transaction("a", "read", "p") as tx:
        assert tx.get("order", "o1").data == {"q": 7}
        assert tx.positions("p").quantities == {"KO": 4.0}
