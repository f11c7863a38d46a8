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
    """Almgren–Chriss schedules of 10,000 parent orders in one call; the engine's throughput."""
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

    An event is a child order sent or a child fill booked. A tick's slices
    are one audited transaction and the paper broker's fills of the tick
    another (an audit record per child, per fill and per parent either way).
    Latency: from a tick's start to its fills being in the ledger (the
    fills' commit), p50 and p99 over the session. Checked first: every
    parent filled and positions equal the ledger replay. Two workloads: the
    demo growth portfolio selling half of its 5 holdings, and a large
    rebalance, a portfolio buying every asset of the demo market (25
    parents). Target (issue 16): >= 5,000 events/s.
    """
    return [*_engine_case(ctx, "5 parents", large=False),
            *_engine_case(ctx, "25 parents", large=True)]


def _engine_case(ctx: Context, name: str, *, large: bool) -> list[Row]:
    import time

    from pmkit.demo import open_demo
    from pmkit.execution import ExecutionEngine, PaperBroker, simulate_session

    reg = open_demo(str(ctx.tmp / f"engine-{'large' if large else 'small'}.db"))
    intervals = 39 if ctx.quick else 390
    day = reg.market.indexes["time"][-2]
    if large:
        pid = "desk/large"
        assets = [str(a) for a in reg.market.indexes["asset"]]
        reg.as_user("system").create_portfolio(pid, 50_000_000.0)
        reg.as_user("system").grant("alice", pid, "trader")
    else:
        pid = "client_a/growth"
        held = reg.store.positions(pid).quantities
        assets = [a for a, q in held.items() if q > 0]
    alice = reg.as_user("alice")
    sess = simulate_session(reg.market, day, assets=assets, intervals=intervals, seed=1)
    paper = PaperBroker(alice)
    eng = ExecutionEngine(alice, paper, max_participation=1.0)
    for a in assets:
        price = float(sess.prices[sess.assets.index(a), 0])
        quantity = np.floor(1_500_000 / price) if large else -float(held[a]) * 0.5
        eng.place(pid, a, float(quantity), reference_price=price, id=f"bench-{a}")
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
        fail(f"{name}: a parent did not fill")
    if reg.store.positions(pid) != reg.store.replay(pid):
        fail(f"{name}: positions differ from the ledger replay")
    rate = events / elapsed
    p50, p99 = np.percentile(latencies, [50, 99])
    return [
        Row("engine events/s", f"{name} x {intervals} intervals, file store", rate,
            unit="events/s",
            note=f"{events:,} child events (sends + fills) in {elapsed:.2f} s; target >= 5,000"),
        Row("engine latency p99", f"{name}: tick start to fill in the ledger", p99, unit="s",
            note=f"p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms (a tick's fills commit "
                 "together)"),
    ]
