"""Benchmark group ``coordinator``: a stream of strategy signals through `StrategyCoordinator`.

10,000 signals (1,000 with ``--quick``) on the demo registry plus extra
portfolios (12 in all, 3 strategies each, the 25 real market assets), with
mixed sides, strategies and confidences so that duplicates, opposing
conflicts (resolved and superseded) and position conflicts all occur. Each
signal is one `StrategyCoordinator.process_signal` call: validation,
enrichment at the decision NAV, the pre-trade limits (`pmkit.risk.controls`:
the demo's ``max_position_weight``), conflict detection and resolution, the
queue, and one store transaction with its audit records. A signal the
position limit refuses (`LimitBreachError`: the demo books hold positions
near their limit) is recorded as rejected and counted in the note. Every
20th signal a consumer takes the next signal and marks it executed, so the
queue moves.

Reported per store (in-memory SQLite, and a file SQLite in WAL mode with
``synchronous=FULL`` on the scratch directory): throughput in signals/s (the
median over 5 equal slices of the stream) and the p50 / p99 latency of one
call, commit included, timed around each call. There is no peer library:
no baseline and no ratio. Before reporting, the run is checked: every signal
has a record, the statistics equal the records counted by state, and no two
live signals of a portfolio are on opposite sides of one symbol.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from harness import Context, Row, benchmark_group, fail

from pmkit.coordinator import StrategyCoordinator
from pmkit.demo import open_demo
from pmkit.errors import LimitBreachError, ValidationError
from pmkit.strategies import StrategyManager

SEED = 20240605
EXTRA_PORTFOLIOS = 8
STRATEGIES = {"trend": (1.5, 0.3), "carry": (0.6, 0.3), "revert": (-0.3, 0.2)}
SLICES = 5


def _returns(sharpe: float, seed: int, n: int = 500) -> pd.Series:
    z = np.random.default_rng(seed).standard_normal(n)
    z = (z - z.mean()) / z.std(ddof=1)
    return pd.Series(
        sharpe / np.sqrt(252) * 0.01 + 0.01 * z, index=pd.bdate_range("2019-01-01", periods=n)
    )


def build(store: str) -> tuple[object, list[str]]:
    """The demo registry plus extra cash portfolios, each with three strategies."""
    reg = open_demo(store)
    pids = [p.id for p in reg.portfolios()]
    for k in range(EXTRA_PORTFOLIOS):
        pid = reg.create_portfolio(f"bench/p{k:02d}", 1_000_000.0, name=f"Bench {k}")
        reg.grant("bob", pid, "manager")
        pids.append(pid)
    bob = reg.as_user("bob")
    for i, pid in enumerate(pids):
        sm = StrategyManager(bob, pid)
        for j, (name, (sharpe, alloc)) in enumerate(STRATEGIES.items()):
            sm.register_strategy(name, _returns(sharpe, 100 * i + j), alloc)
    return reg, pids


def stream(n: int, pids: list[str], assets: list[str], closes: dict[str, float]) -> list[dict]:
    """``n`` signals: random portfolio, asset, side, strategy, confidence and R:R."""
    rng = np.random.default_rng(SEED)
    names = list(STRATEGIES)
    out = []
    for _ in range(n):
        asset = assets[rng.integers(len(assets))]
        side = "long" if rng.random() < 0.5 else "short"
        entry = closes[asset] * float(rng.uniform(0.98, 1.02))
        risk = entry * float(rng.uniform(0.01, 0.05))
        rr = float(rng.uniform(0.5, 4.0))
        sgn = 1 if side == "long" else -1
        out.append(
            {
                "symbol": asset,
                "side": side,
                "entry": entry,
                "stop": entry - sgn * risk,
                "target": entry + sgn * rr * risk,
                "confidence": float(rng.choice([0.1, 0.3, 0.5, 0.7, 0.8, 0.95])),
                "strategy": names[rng.integers(len(names))],
                "portfolio": pids[rng.integers(len(pids))],
            }
        )
    return out


def check(reg, coord: StrategyCoordinator, n: int) -> dict:
    """Fail unless every signal is recorded and the statistics agree with the records."""
    recs = reg.store.list("signal")
    if len(recs) != n:
        fail(f"{len(recs)} signal records for {n} signals")
    by_state = Counter(r.status for r in recs)
    stats = coord.get_processing_stats()
    if any(stats["by_state"][s] != by_state.get(s, 0) for s in stats["by_state"]):
        fail(f"stats {stats['by_state']} != records {dict(by_state)}")
    sides: dict[tuple[str, str], set[str]] = {}
    for r in recs:
        if r.status in ("queued", "dispatched"):
            sides.setdefault((r.data["portfolio"], r.data["symbol"]), set()).add(r.data["side"])
    if any(len(v) > 1 for v in sides.values()):
        fail("two live signals on opposite sides of one symbol in one portfolio")
    return stats


def run_stream(store: str, n: int) -> tuple[list[float], list[float], dict]:
    """Process the stream; returns per-slice throughputs, per-call latencies and stats."""
    reg, pids = build(store)
    market = reg.market
    assets = [str(a) for a in market.indexes["asset"]]
    closes = market["close"].isel(time=-1).to_series().to_dict()
    signals = stream(n, pids, assets, closes)
    coord = StrategyCoordinator(reg.as_user("bob"))
    lat: list[float] = []
    per_slice = n // SLICES
    rates = []

    async def consume() -> None:
        nxt = await coord.get_next_signal(timeout=0)
        if nxt is not None:
            coord.mark_signal_executed(nxt.id, {"filled": nxt.size})

    for k in range(SLICES):
        t_slice = time.perf_counter()
        for i, s in enumerate(signals[k * per_slice : (k + 1) * per_slice]):
            t0 = time.perf_counter()
            try:
                coord.process_signal(s)
            except LimitBreachError:
                pass  # refused by a limit: recorded as rejected (counted in the stats)
            except ValidationError:
                fail(f"generated signal refused: {s}")
            lat.append(time.perf_counter() - t0)
            if i % 20 == 19:
                asyncio.run(consume())
        rates.append(per_slice / (time.perf_counter() - t_slice))
    stats = check(reg, coord, SLICES * per_slice)
    reg.store.close()
    return rates, lat, stats


@benchmark_group("coordinator")
def coordinator_group(ctx: Context) -> list[Row]:
    """10,000 strategy signals through validation, conflicts and the queue (memory, file)."""
    n = 1000 if ctx.quick else 10_000
    rows: list[Row] = []
    for label, store in (("memory", ":memory:"), ("file WAL", str(Path(ctx.tmp) / "c.sqlite"))):
        rates, lat, stats = run_stream(store, n)
        p50, p99 = np.percentile(np.asarray(lat), [50, 99])
        c = stats["conflicts"]
        note = (
            f"{n:,} signals, 12 portfolios x 25 assets; accepted {stats['accepted']:,},"
            f" superseded {stats['superseded']:,}, rejected {stats['rejected']:,}"
            f" (dup {stats['rejections'].get('duplicate', 0):,},"
            f" limits {sum(v for k, v in stats['rejections'].items() if k.startswith('max_')):,});"
            f" conflicts opposing {c.get('opposing', 0):,}, position {c.get('position', 0):,}"
        )
        rows.append(
            Row("signal stream", f"{label} store", statistics.median(rates), "signals/s", note=note)
        )
        rows.append(
            Row(
                "signal latency p99",
                f"{label} store",
                float(p99),
                note=f"p50 {p50 * 1e3:.2f} ms; one process_signal call, commit included",
            )
        )
    return rows
