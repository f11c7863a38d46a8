"""Benchmark group ``execution``: scheduling many parent orders, and the engine's throughput.

pmkit computes the Almgren–Chriss optimal schedules of 10,000 parent orders
over 390 intervals (a trading day in minutes), each with its own quantity,
volatility, temporary impact and risk aversion, in one batched, jitted call
with their expected cost and variance (`pmkit.core.schedules.almgren_chriss_plan`:
the holdings as products of small per-order exponential tables, ``E`` and
``V`` from closed forms of the sums of squares). The baseline is the straightforward
alternative: a Python loop over the orders, each scheduled by a per-order
numpy implementation of the same closed form (``numpy_schedule`` below),
timed on a subset of orders and scaled linearly to the full count (each
order is independent work; the note says so). Both give the same holdings
(np.allclose, rtol 1e-9) before a ratio is reported.

Targets (issue 16): at least 20x the loop; the engine at least 5,000 child
events per second through the paper broker with audit on a file store.
"""

from __future__ import annotations

import numpy as np
from harness import Context, Row, benchmark_group, compared, fail, median_time

SEED = 20261207
TARGET = 20.0


def numpy_schedule(q: float, vol: float, eta: float, gamma: float, lam: float,
                   horizon: float, n: int) -> tuple[np.ndarray, float, float]:
    """One order's optimal holdings, expected cost and variance, in numpy."""
    tau = horizon / n
    eta_tilde = eta - 0.5 * gamma * tau
    kappa = np.arccosh(1.0 + 0.5 * tau**2 * lam * vol**2 / eta_tilde) / tau
    t = tau * np.arange(n + 1)
    holdings = q * np.sinh(kappa * (horizon - t)) / np.sinh(kappa * horizon)
    trades = holdings[:-1] - holdings[1:]
    expected = 0.5 * gamma * q**2 + eta_tilde / tau * np.sum(trades**2)
    variance = vol**2 * tau * np.sum(holdings[1:] ** 2)
    return holdings, expected, variance


@benchmark_group("execution")
def scheduling(ctx: Context) -> list[Row]:
    from pmkit.core.schedules import almgren_chriss_plan

    orders, n = (500, 390) if ctx.quick else (10_000, 390)
    subset = 100 if ctx.quick else 500
    rng = np.random.default_rng(SEED)
    q = rng.uniform(1e3, 1e6, orders)
    vol = rng.uniform(0.05, 0.5, orders)  # currency per unit per square root of a day
    eta = rng.uniform(1e-6, 1e-4, orders)
    lam = rng.uniform(1e-7, 1e-5, orders)
    horizon, gamma = 1.0, 0.0

    def batched() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        holdings, e, v, _ = almgren_chriss_plan(q, vol, eta, gamma, 0.0, lam, horizon,
                                                intervals=n)
        return np.asarray(holdings), np.asarray(e), np.asarray(v)

    def loop() -> list[tuple[np.ndarray, float, float]]:
        return [numpy_schedule(q[i], vol[i], eta[i], gamma, lam[i], horizon, n)
                for i in range(subset)]

    holdings, e, v = batched()
    ref = loop()
    if not np.allclose(holdings[:subset], np.array([r[0] for r in ref]), rtol=1e-9, atol=1e-6):
        fail("batched schedules differ from the numpy loop")
    if not (np.allclose(e[:subset], [r[1] for r in ref], rtol=1e-9)
            and np.allclose(v[:subset], [r[2] for r in ref], rtol=1e-9)):
        fail("batched expected cost or variance differ from the numpy loop")
    pmkit_s = median_time(batched, ctx.repeats)
    loop_s = median_time(loop, ctx.repeats) * orders / subset
    row = compared("schedule orders", f"{orders:,} orders x {n} intervals (AC)", pmkit_s, loop_s,
                   f"one batched jitted call vs a Python loop of per-order numpy, timed on "
                   f"{subset} orders and scaled to {orders:,}; target >= {TARGET:g}x")
    return [row, *engine_throughput(ctx)]


def engine_throughput(ctx: Context) -> list[Row]:
    """Child-order events per second through the engine and the paper broker, on a file store.

    An event is a child order sent or a child fill booked (each its own audited
    transaction). Latency: from a tick's start to each of its fills being in the
    ledger (the fill's commit), p50 and p99 over the session. Checked first:
    every parent filled and positions equal the ledger replay. Target (issue 16):
    >= 5,000 events/s.
    """
    import time

    from pmkit.demo import open_demo
    from pmkit.execution import ExecutionEngine, PaperBroker, simulate_session

    reg = open_demo(str(ctx.tmp / "engine.db"))
    alice = reg.as_user("alice")
    held = reg.store.positions("client_a/growth").quantities
    assets = [a for a, q in held.items() if q > 0]
    intervals = 39 if ctx.quick else 390
    day = reg.market.indexes["time"][-2]
    sess = simulate_session(reg.market, day, assets=assets, intervals=intervals, seed=1)
    paper = PaperBroker(alice)
    eng = ExecutionEngine(alice, paper, max_participation=1.0)
    for a in assets:
        eng.place("client_a/growth", a, -float(held[a]) * 0.5,
                  reference_price=float(sess.prices[sess.assets.index(a), 0]), id=f"bench-{a}")
    eng.start(sess)
    latencies: list[float] = []
    events = 0
    t0 = time.perf_counter()
    for tick in sess.ticks():
        start = time.perf_counter()
        events += len(eng.on_tick(tick))
        fills = paper.step(sess.session, prices=tick.prices, volumes=tick.volumes,
                           ts=tick.ts.to_pydatetime())
        done = time.perf_counter()
        events += len(fills)
        latencies.extend([done - start] * len(fills))
    elapsed = time.perf_counter() - t0
    eng.finish(sess)
    if any(p.is_open or p.filled == 0 for p in eng.parents()):
        fail("a parent did not fill")
    if reg.store.positions("client_a/growth") != reg.store.replay("client_a/growth"):
        fail("positions differ from the ledger replay")
    rate = events / elapsed
    p50, p99 = np.percentile(latencies, [50, 99])
    return [
        Row("engine events/s", f"{len(assets)} parents x {intervals} intervals, file store",
            rate, unit="events/s",
            note=f"{events:,} child events (sends + fills) in {elapsed:.2f} s; target >= 5,000"),
        Row("engine latency p99", "tick start to fill in the ledger", p99, unit="s",
            note=f"p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms (a tick's fills are booked "
                 "one transaction each, in turn)"),
    ]
