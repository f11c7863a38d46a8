"""Benchmark group ``metrics``: the performance-statistics table of many portfolios.

pmkit computes every statistic of `pmkit.core.performance.performance_stats`
(22 of them, benchmark-relative ones included) for all portfolios in one
jitted, vmapped call. The peers are empyrical-reloaded and quantstats, looped
per portfolio over the statistics they have. Peer loops are timed on a subset
of portfolios and scaled linearly to the full count (each portfolio is
independent work); the note says so. Agreement on the common statistics is
checked (np.allclose) before any ratio is reported.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from harness import Context, Row, benchmark_group, compared, fail, median_time

SEED = 20240607


@dataclass(frozen=True)
class Sizes:
    portfolios: int
    days: int
    empyrical_subset: int
    quantstats_subset: int


FULL = Sizes(portfolios=1000, days=2520, empyrical_subset=100, quantstats_subset=50)
QUICK = Sizes(portfolios=20, days=252, empyrical_subset=10, quantstats_subset=5)


def make_returns(s: Sizes) -> tuple[np.ndarray, np.ndarray, pd.DatetimeIndex]:
    """Real S&P 500 daily returns as benchmark; portfolios = beta * benchmark + noise (seeded)."""
    from pmkit.datasets import load_benchmark

    index = load_benchmark()
    bench_full = (index / index.shift(time=1) - 1.0).values[-s.days :]
    times = index.indexes["time"][-s.days :]
    rng = np.random.default_rng(SEED)
    beta = rng.uniform(0.5, 1.5, (s.portfolios, 1))
    alpha = rng.normal(1e-4, 2e-4, (s.portfolios, 1))
    noise = rng.normal(0.0, 1.0, (s.portfolios, s.days)) * rng.uniform(
        0.003, 0.02, (s.portfolios, 1)
    )
    returns = alpha + beta * bench_full + noise
    starts = rng.integers(0, s.days // 4, s.portfolios) * (rng.random(s.portfolios) < 0.2)
    for k, start in enumerate(starts):  # a fifth start late: leading NaN
        returns[k, :start] = np.nan
    return returns, bench_full, times


def empyrical_stats(r: np.ndarray, b: np.ndarray) -> dict[str, float]:
    import empyrical as ep

    return {
        "total_return": ep.cum_returns_final(r),
        "cagr": ep.annual_return(r),
        "annual_volatility": ep.annual_volatility(r),
        "sharpe_ratio": ep.sharpe_ratio(r),
        "downside_risk": ep.downside_risk(r),
        "sortino_ratio": ep.sortino_ratio(r),
        "max_drawdown": ep.max_drawdown(r),
        "calmar_ratio": ep.calmar_ratio(r),
        "omega_ratio": ep.omega_ratio(r, annualization=1),
        "beta": ep.beta(r, b),
        "alpha": ep.alpha(r, b),
        "information_ratio": ep.excess_sharpe(r, b) * math.sqrt(252),
        "up_capture": ep.up_capture(r, b),
        "down_capture": ep.down_capture(r, b),
    }


def quantstats_stats(s: pd.Series) -> dict[str, float]:
    import quantstats as qs

    return {
        "total_return": qs.stats.comp(s),
        "annual_volatility": qs.stats.volatility(s),
        "sharpe_ratio": qs.stats.sharpe(s),
        "sortino_ratio": qs.stats.sortino(s),
        "max_drawdown": qs.stats.max_drawdown(s),
        "calmar_ratio": qs.stats.calmar(s),  # calendar-year CAGR: timed, not compared
        "omega_ratio": qs.stats.omega(s),
        "win_rate": qs.stats.win_rate(s),
        "profit_factor": qs.stats.profit_factor(s),
        "payoff_ratio": qs.stats.payoff_ratio(s),
    }


QS_COMMON = (
    "total_return",
    "annual_volatility",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "win_rate",
    "profit_factor",
    "payoff_ratio",
)


def trim(r: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    first = int(np.argmax(~np.isnan(r)))
    return r[first:], b[first:]


@benchmark_group("metrics")
def metrics_group(ctx: Context) -> list[Row]:
    """Statistics table: pmkit (one jitted batched call) vs empyrical and quantstats loops."""
    import warnings

    import jax

    from pmkit.core.performance import performance_stats

    s = QUICK if ctx.quick else FULL
    returns, bench, times = make_returns(s)
    kw = {"risk_free": 0.0, "required_return": 0.0, "threshold": 0.0, "periods_per_year": 252.0}

    def run_pmkit() -> dict[str, np.ndarray]:
        out = performance_stats(returns, bench, **kw)
        return {k: np.asarray(v) for k, v in jax.block_until_ready(out).items()}

    t0 = time.perf_counter()
    ours = run_pmkit()
    first_call = time.perf_counter() - t0
    fast = median_time(run_pmkit, ctx.repeats)
    compile_s = max(first_call - fast, 0.0)
    n_stats = len(ours)

    # empyrical: agreement on every statistic it has, then timing on a subset.
    sub_e = range(s.empyrical_subset)
    pairs = [trim(returns[k], bench) for k in sub_e]
    ref_e = [empyrical_stats(r, b) for r, b in pairs]
    for stat in ref_e[0]:
        want = np.array([row[stat] for row in ref_e])
        if not np.allclose(ours[stat][: len(want)], want, rtol=1e-9, atol=1e-12, equal_nan=True):
            fail(f"pmkit and empyrical disagree on {stat}")
    t_e = median_time(lambda: [empyrical_stats(r, b) for r, b in pairs], ctx.repeats)
    t_e *= s.portfolios / len(pairs)

    # quantstats: the same on its statistics (daily Series, leading NaN dropped).
    sub_q = range(s.quantstats_subset)
    series = []
    for k in sub_q:
        r, _ = trim(returns[k], bench)
        series.append(pd.Series(r, index=times[-len(r) :]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_q = [quantstats_stats(x) for x in series]
        for stat in QS_COMMON:
            want = np.array([row[stat] for row in ref_q])
            if not np.allclose(ours[stat][: len(want)], want, rtol=1e-9, atol=1e-12):
                fail(f"pmkit and quantstats disagree on {stat}")
        t_q = median_time(lambda: [quantstats_stats(x) for x in series], ctx.repeats)
    t_q *= s.portfolios / len(series)

    case = f"{s.portfolios:,} pf x {s.days:,} days"
    goal = "goal >= 20x"
    return [
        compared(
            "metrics table",
            f"{case}, vs empyrical loop",
            fast,
            t_e,
            f"pmkit: {n_stats} stats, 1 jitted vmapped call (compile {compile_s:.1f} s, "
            f"not timed); empyrical: {len(ref_e[0])} stats, timed on {len(pairs)} pf, "
            f"scaled x{s.portfolios / len(pairs):g}; agree rtol 1e-9; {goal}",
        ),
        compared(
            "metrics table",
            f"{case}, vs quantstats loop",
            fast,
            t_q,
            f"quantstats: {len(ref_q[0])} stats, timed on {len(series)} pf, scaled "
            f"x{s.portfolios / len(series):g}; {len(QS_COMMON)} common stats agree; {goal}",
        ),
    ]
