"""pmkit benchmark harness.

Run from the repository root (``make bench`` does this)::

    python benchmarks/run.py              # every group, full sizes
    python benchmarks/run.py store        # only the named groups
    python benchmarks/run.py --quick      # small sizes (smoke test, < 30 s)
    python benchmarks/run.py --list       # list the groups

Every group returns rows of (benchmark, case, pmkit, baseline, ratio, note).
``pmkit`` is the time of one call of the pmkit code path in seconds (best of
``--repeats`` runs after one warm-up, timed with `time.perf_counter`), or a
throughput (trades/s) where the unit column says so. ``baseline`` is the time
of the straightforward alternative written here, and ``ratio`` is
baseline / pmkit: how many times faster pmkit is (above 1 is faster). Before
any ratio is reported both sides are checked to give the same numbers; a
mismatch, or a lost write in the concurrency test, aborts with an error and a
non-zero exit status.

The table is printed at the end and written as JSON to
``benchmarks/results/latest.json`` (git-ignored).

Group ``store`` (the durable store):

``ledger append``
    `Registry.record_trade` throughput on a file-backed SQLite store (WAL,
    synchronous=FULL): each trade is one transaction with its audit record and
    the positions-cache update. Then two processes (spawned) writing the same
    portfolio at once: aggregate trades/s, after which the ledger count and
    cache == replay are verified.
``positions read``
    The cached `store.positions` against a full `store.replay` of a
    10,000-entry ledger; ratio = replay / cached.
``holdings over time``
    `pmkit.model.holdings_from_ledger` (bucketing plus a numpy cumsum)
    against a naive replay of the ledger prefix at every time with
    `pmkit.ledger.replay`; ratio = naive / pmkit.
``valuation``
    `pmkit.model.portfolio_values` (all checks plus a BLAS `xr.dot`) against
    ``(quantity * close).sum("asset") + cash`` (xarray's NaN-skipping sum) on
    the real market; ratio = sum / pmkit.
``registry summary``
    `Registry.summary` for many portfolios (one trade each, real market)
    against asking `Registry.value` portfolio by portfolio; ratio = loop /
    summary.
"""

from __future__ import annotations

import bisect
import multiprocessing as mp
import queue
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from harness import Context, Row, benchmark_group, compared, fail, market, median_time

from pmkit.ledger import LedgerEntry, replay
from pmkit.registry import Registry
from pmkit.store import SQLiteStore, Store, open_store

SEED = 20240601
TRADE_TS = datetime(2022, 6, 1, 16, 0)


# -- sizes, rows and the group registry ----------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run (full or ``--quick``)."""

    trades: int  # record_trade calls per timed run (per process when concurrent)
    ledger_entries: int  # entries of the portfolio read back by positions/replay
    hold_portfolios: int
    hold_days: int
    hold_entries: int
    value_portfolios: int
    value_days: int
    summary_portfolios: int


FULL = Sizes(
    trades=1000,
    ledger_entries=10_000,
    hold_portfolios=50,
    hold_days=2000,
    hold_entries=20_000,
    value_portfolios=1000,
    value_days=2000,
    summary_portfolios=200,
)
QUICK = Sizes(
    trades=100,
    ledger_entries=1000,
    hold_portfolios=10,
    hold_days=250,
    hold_entries=1000,
    value_portfolios=50,
    value_days=250,
    summary_portfolios=20,
)


#: The append benchmarks sell MSFT they do not hold: their portfolios allow shorts.
SHORTS = {"allow_short": True}


def file_registry(path: Path) -> Registry:
    """A system registry on a new file-backed SQLite store (WAL)."""
    return Registry(open_store(path))


def check_ledger(store: Store, pid: str, expected: int) -> None:
    """Fail unless ``pid`` has ``expected`` entries and its cache equals a fresh replay."""
    count = len(store.ledger(pid))
    if count != expected:
        fail(f"{pid}: {count} ledger entries, expected {expected}: writes were lost")
    cached, replayed = store.positions(pid), store.replay(pid)
    if cached != replayed:
        fail(f"{pid}: positions cache {cached} differs from replay {replayed}")
    if isinstance(store, SQLiteStore) and store.integrity_check() != "ok":
        fail(f"{store.path}: PRAGMA integrity_check failed")


# -- store 1: ledger append throughput --------------------------------------------------------
def record_trades(reg: Registry, pid: str, n: int, memo: str) -> None:
    """Record ``n`` alternating buys and sells through the registry."""
    for k in range(n):
        asset, qty = ("AAPL", 10.0) if k % 2 == 0 else ("MSFT", -3.0)
        reg.record_trade(asset, qty, 100.0 + k % 7, portfolio=pid, fee=0.5, ts=TRADE_TS, memo=memo)


def append_single(ctx: Context) -> Row:
    """Trades/s of `Registry.record_trade` in one process."""
    n = sizes(ctx).trades
    reg = file_registry(ctx.tmp / "append-single.sqlite")
    pid = reg.create_portfolio("bench/single", 1e9, at=TRADE_TS, config=SHORTS)
    seconds = median_time(lambda: record_trades(reg, pid, n, "single"), ctx.repeats, min_run=0)
    check_ledger(reg.store, pid, 1 + n * (ctx.repeats + 1))
    reg.store.close()
    return Row(
        "ledger append",
        "record_trade, 1 process",
        n / seconds,
        "trades/s",
        note=f"file SQLite, WAL, sync=FULL; {n:,} trades per run",
    )


def _writer(path: str, pid: str, wid: int, barrier: Any, tasks: Any, results: Any) -> None:
    """Worker process: on each task ``n``, wait for the others, then record ``n`` trades."""
    reg = Registry(open_store(path))
    try:
        while (n := tasks.get()) is not None:
            barrier.wait(timeout=120)
            start = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
            record_trades(reg, pid, n, f"w{wid}")
            results.put((wid, start, time.perf_counter()))
    finally:
        reg.store.close()


def append_concurrent(ctx: Context, single_rate: float, procs: int = 2) -> Row:
    """Aggregate trades/s of ``procs`` processes appending to one portfolio at once."""
    n = sizes(ctx).trades
    path = ctx.tmp / "append-concurrent.sqlite"
    reg = file_registry(path)
    pid = reg.create_portfolio("bench/shared", 1e9, at=TRADE_TS, config=SHORTS)
    spawn = mp.get_context("spawn")
    barrier, results = spawn.Barrier(procs), spawn.Queue()
    tasks = [spawn.Queue() for _ in range(procs)]
    workers = [
        spawn.Process(
            target=_writer, args=(str(path), pid, w, barrier, tasks[w], results), daemon=True
        )
        for w in range(procs)
    ]

    def one_round() -> float:
        for q in tasks:
            q.put(n)
        try:
            spans = [results.get(timeout=180) for _ in workers]
        except queue.Empty:
            fail("a writer process died or hung (see its traceback above)")
        return max(end for _, _, end in spans) - min(start for _, start, _ in spans)

    rounds = ctx.repeats + 1
    try:
        for w in workers:
            w.start()
        walls = [one_round() for _ in range(rounds)][1:]  # the first round is the warm-up
        for q in tasks:
            q.put(None)
        for w in workers:
            w.join(timeout=60)
            if w.exitcode != 0:
                fail(f"writer process {w.name} exited with {w.exitcode}")
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
    check_ledger(reg.store, pid, 1 + procs * n * rounds)
    memos = [e.memo for e in reg.store.ledger(pid)]
    for w in range(procs):
        got = memos.count(f"w{w}")
        if got != n * rounds:
            fail(f"writer {w}: {got} trades in the ledger, expected {n * rounds}")
    reg.store.close()
    rate = procs * n / min(walls)
    return Row(
        "ledger append",
        f"record_trade, {procs} processes",
        rate,
        "trades/s",
        note=(
            f"same portfolio; {rate / single_rate:.2f}x 1-process rate; verified "
            f"{procs * n * rounds:,} trades, cache == replay"
        ),
    )


# -- store 2: positions read ----------------------------------------------------------------
def positions_read(ctx: Context) -> Row:
    """Cached positions against a full replay of a long ledger."""
    n = sizes(ctx).ledger_entries
    reg = file_registry(ctx.tmp / "positions.sqlite")
    pid = reg.create_portfolio("bench/long", 1e9, at=TRADE_TS)  # entry 1: the deposit
    assets = list(market().indexes["asset"])
    rng = np.random.default_rng(SEED)
    qty = rng.integers(1, 100, n - 1) * rng.choice([-1, 1], n - 1, p=[0.3, 0.7])
    entries = [
        LedgerEntry(
            pid,
            "trade",
            TRADE_TS + timedelta(minutes=k),
            asset=assets[k % len(assets)],
            quantity=float(q),
            price=round(float(rng.uniform(10, 500)), 2),
            fee=1.0,
            actor="system",
        )
        for k, q in enumerate(qty)
    ]
    with reg.store.transaction("system", "bench.bulk", pid) as tx:  # same append path as trades
        tx.append(entries)
    check_ledger(reg.store, pid, n)
    cached = median_time(lambda: reg.store.positions(pid), ctx.repeats)
    replayed = median_time(lambda: reg.store.replay(pid), ctx.repeats)
    reg.store.close()
    return compared(
        "positions read",
        f"cached vs replay, {n:,} entries",
        cached,
        replayed,
        f"baseline = store.replay; {len(assets)} assets",
    )


# -- store 2b: opening a store (look before writing, cache check) ----------------------------
def store_open(ctx: Context) -> Row:
    """Checked open of a store with a long ledger against a full-scan verification."""
    n = sizes(ctx).ledger_entries * 20
    path = ctx.tmp / "open.sqlite"
    st = SQLiteStore(path)
    pids = [f"bench/p{i:03d}" for i in range(100)]
    entries = [
        LedgerEntry(pids[k % len(pids)], "cash", TRADE_TS, amount=1.0, actor="system")
        for k in range(n)
    ]
    with st.transaction("system", "bench.bulk", "bench") as tx:
        tx.append(entries)
    st.close()

    def full_scan() -> None:
        # What a count-based check costs: every ledger row visited on each open.
        with closing(sqlite3.connect(path)) as conn:
            counts = dict(conn.execute("SELECT portfolio, COUNT(*) FROM ledger GROUP BY portfolio"))
            cached = dict(conn.execute("SELECT portfolio, entries FROM cash"))
            if counts != cached:
                fail(f"{path}: cache counts differ from the ledger")

    def checked_open() -> None:
        SQLiteStore(path).close()

    return compared(
        "store open",
        f"{n:,} entries, {len(pids)} portfolios",
        median_time(checked_open, ctx.repeats),
        median_time(full_scan, ctx.repeats),
        "pmkit = header + schema read-only, then O(portfolios) cache probes;"
        " baseline = bare connect + full-scan count check",
    )


# -- store 3: holdings over time --------------------------------------------------------------
def random_ledger(
    ports: list[str], assets: list[str], times: pd.DatetimeIndex, n: int, rng: np.random.Generator
) -> list[LedgerEntry]:
    """About ``n`` entries (deposits, trades, a few cash flows) in time order, with seqs."""
    start = times[0].to_pydatetime() - timedelta(days=1)
    span = (times[-1] - times[0]).total_seconds() + 2 * 86400
    entries = [LedgerEntry(p, "cash", start, amount=1e7, actor="system") for p in ports]
    for offset in np.sort(rng.uniform(0, span, n - len(ports))):
        p = ports[rng.integers(len(ports))]
        ts = start + timedelta(seconds=float(offset))
        if rng.random() < 0.05:
            amount = float(rng.choice([-1, 1]) * rng.integers(1, 100) * 1000)
            entries.append(LedgerEntry(p, "cash", ts, amount=amount, actor="system"))
        else:
            quantity = float(rng.integers(1, 200) * rng.choice([-1, 1], p=[0.3, 0.7]))
            price = round(float(rng.uniform(10, 500)), 2)
            asset = assets[rng.integers(len(assets))]
            entries.append(
                LedgerEntry(p, "trade", ts, asset, quantity, price, fee=1.0, actor="system")
            )
    return [replace(e, seq=k) for k, e in enumerate(entries, 1)]


def naive_holdings(
    entries: list[LedgerEntry], ports: list[str], assets: list[str], times: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray]:
    """Baseline: at every time, `replay` each portfolio's ledger up to that day."""
    a_pos = {a: j for j, a in enumerate(assets)}
    qty = np.zeros((len(ports), len(assets), len(times)))
    cash = np.zeros((len(ports), len(times)))
    days = [t.to_pydatetime() for t in times]
    for i, p in enumerate(ports):
        mine = [e for e in entries if e.portfolio == p]  # already in ts (= seq) order
        # Daily labels: an entry counts from the day of its calendar date.
        keys = [datetime.combine(e.ts.date(), datetime.min.time()) for e in mine]
        for k, day in enumerate(days):
            pos = replay(mine[: bisect.bisect_right(keys, day)])
            for asset, q in pos.quantities.items():
                qty[i, a_pos[asset], k] = q
            cash[i, k] = pos.cash
    return qty, cash


def holdings_over_time(ctx: Context) -> Row:
    """holdings_from_ledger against a naive per-time replay."""
    from pmkit.model import holdings_from_ledger

    s = sizes(ctx)
    times = market().indexes["time"][-s.hold_days :]
    assets = list(market().indexes["asset"])
    ports = [f"bench/p{i:03d}" for i in range(s.hold_portfolios)]
    entries = random_ledger(ports, assets, times, s.hold_entries, np.random.default_rng(SEED))

    h = holdings_from_ledger(entries, ports, assets, times)
    qty, cash = naive_holdings(entries, ports, assets, times)
    if not (np.allclose(h["quantity"].values, qty) and np.allclose(h["cash"].values, cash)):
        fail("holdings_from_ledger and the naive replay disagree")

    fast = median_time(lambda: holdings_from_ledger(entries, ports, assets, times), ctx.repeats)
    slow = median_time(lambda: naive_holdings(entries, ports, assets, times), ctx.repeats)
    return compared(
        "holdings over time",
        f"{len(ports)} pf x {len(assets)} assets x {len(times):,} days, {len(entries):,} entries",
        fast,
        slow,
        "baseline = ledger.replay of each prefix",
    )


# -- store 4: valuation -----------------------------------------------------------------------
def random_holdings(n_ports: int, mkt: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    """Piecewise-constant random holdings on the market grid; 0 where an asset has no close."""
    from pmkit.model import holdings_dataset

    close = mkt["close"].transpose("asset", "time").values
    n_a, n_t = close.shape
    qty = np.zeros((n_ports, n_a, n_t))
    qty[:, :, 0] = rng.integers(0, 500, (n_ports, n_a)) * (rng.random((n_ports, n_a)) < 0.8)
    trades = rng.random((n_ports, n_a, n_t - 1)) < 0.01
    qty[:, :, 1:][trades] = rng.integers(-50, 60, int(trades.sum()))
    np.cumsum(qty, axis=2, out=qty)
    qty[:, np.isnan(close)] = 0.0  # nothing held before listing
    ports = [f"bench/v{i:04d}" for i in range(n_ports)]
    coords = {"portfolio": ports, "asset": mkt.indexes["asset"], "time": mkt.indexes["time"]}
    cash = rng.uniform(0, 1e6, (n_ports, n_t))
    return holdings_dataset(
        xr.DataArray(qty, dims=("portfolio", "asset", "time"), coords=coords),
        xr.DataArray(
            cash, dims=("portfolio", "time"), coords={k: coords[k] for k in ("portfolio", "time")}
        ),
    )


def sum_values(h: xr.Dataset, close: xr.DataArray) -> xr.DataArray:
    """Baseline: NaN-skipping sum of position values plus cash."""
    return (h["quantity"] * close).sum("asset") + h["cash"]


def valuation(ctx: Context) -> Row:
    """portfolio_values (xr.dot) against the NaN-skipping sum."""
    from pmkit.model import portfolio_values

    s = sizes(ctx)
    mkt = market().isel(time=slice(-s.value_days, None))
    h = random_holdings(s.value_portfolios, mkt, np.random.default_rng(SEED))
    close = mkt["close"].reset_coords(drop=True)  # its currency(asset) would clash

    nav = portfolio_values(h, mkt)
    ref = sum_values(h, close).transpose(*nav.dims)
    if not np.allclose(nav.values, ref.values, rtol=1e-10, atol=1e-6):
        fail("portfolio_values and the summed position values disagree")

    fast = median_time(lambda: portfolio_values(h, mkt), ctx.repeats)
    slow = median_time(lambda: sum_values(h, close), ctx.repeats)
    nan_cells = int(mkt["close"].isnull().sum())
    return compared(
        "valuation",
        f"{h.sizes['portfolio']:,} pf x {h.sizes['asset']} assets x {h.sizes['time']:,} days",
        fast,
        slow,
        f"real market, {nan_cells} NaN closes; pmkit time includes its checks",
    )


# -- store 5: registry summary ----------------------------------------------------------------
def registry_summary(ctx: Context) -> Row:
    """Registry.summary() on many one-trade portfolios, against value() one by one."""
    n = sizes(ctx).summary_portfolios
    mkt = market()
    reg = Registry(open_store(ctx.tmp / "summary.sqlite"), market=mkt)
    assets = list(mkt.indexes["asset"])
    day = mkt.indexes["time"][-250]
    closes = mkt["close"].sel(time=day)
    when = day.to_pydatetime().replace(hour=16)
    for i in range(n):
        pid = reg.create_portfolio(f"bench/s{i:03d}", 1e6, at=when)
        asset = assets[i % len(assets)]
        price = float(closes.sel(asset=asset))
        reg.record_trade(asset, 100.0, price, portfolio=pid, ts=when, fee=1.0)

    def one_by_one() -> list[float]:
        return [reg.value(p.id) for p in reg.portfolios()]

    table = reg.summary()
    if len(table) != n or not np.allclose(table["value"].to_numpy(), one_by_one()):
        fail("Registry.summary values differ from Registry.value")

    fast = median_time(reg.summary, ctx.repeats)
    slow = median_time(one_by_one, ctx.repeats)
    reg.store.close()
    return compared(
        "registry summary",
        f"{n} portfolios, 1 trade each",
        fast,
        slow,
        f"real market ({mkt.sizes['time']:,} days); baseline = {n} x Registry.value",
    )


@benchmark_group("store")
def store_group(ctx: Context) -> list[Row]:
    """Durable store: append throughput, cached reads, holdings, valuation, summary."""
    single = append_single(ctx)
    return [
        single,
        append_concurrent(ctx, single.pmkit),
        positions_read(ctx),
        store_open(ctx),
        holdings_over_time(ctx),
        valuation(ctx),
        registry_summary(ctx),
    ]



def sizes(ctx: Context) -> Sizes:
    """The sizes a run asks for."""
    return QUICK if ctx.quick else FULL
