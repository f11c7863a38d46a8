"""Benchmark group ``risk``: historical VaR + ES + Euler components for many portfolios.

``tail contributions``
    pmkit: one jitted, vmapped call of `pmkit.core.risk.tail_risk` (historical, 95 %,
    ``contributions=True``) giving VaR, ES and their marginal and component
    contributions for every portfolio at once. Compile time is measured separately (first
    call minus a warm call) and reported in the note, not in the timing.

    Peer: a Python loop over portfolios calling ``skfolio.measures.value_at_risk`` and
    ``skfolio.measures.cvar`` on each portfolio's return series. skfolio has no analytic
    component function (``Portfolio.contribution`` is a finite difference needing 2 x A
    measure evaluations per portfolio, far slower still), so the loop computes the
    components the straightforward way with numpy: the asset returns of the scenario at
    the quantile (VaR) and the tail-weighted mean of the tail scenarios (ES), times the
    weights. Both sides are checked to agree (VaR/ES to 1e-12, components to 1e-10)
    before any timing. Target: ratio >= 20x (not asserted).

    Second row: the same pmkit call against skfolio's own contribution method,
    ``Portfolio.contribution`` (VaR and CVaR), timed on one portfolio and multiplied by
    the number of portfolios (the loop is linear); agreement checked on that portfolio.

Data: seeded synthetic daily returns from a 5-factor model with Student-t shocks;
full size 100 portfolios x 500 assets x 2,520 days, ``--quick`` 10 x 50 x 500.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import numpy as np
from harness import Context, Row, benchmark_group, compared, fail, median_time

from pmkit.core.risk import tail_risk

SEED = 20240603
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run."""

    portfolios: int
    assets: int
    days: int


FULL = Sizes(portfolios=100, assets=500, days=2520)
QUICK = Sizes(portfolios=10, assets=50, days=500)


def synthetic(s: Sizes) -> tuple[np.ndarray, np.ndarray]:
    """Factor-model returns ``(days, assets)`` and long-only weights ``(portfolios, assets)``."""
    rng = np.random.default_rng(SEED)
    factors = rng.standard_t(5, (s.days, 5)) * 0.008
    loadings = rng.normal(0.6, 0.4, (5, s.assets))
    noise = rng.standard_t(4, (s.days, s.assets)) * rng.uniform(0.005, 0.02, s.assets)
    returns = 0.0003 + factors @ loadings + noise
    weights = rng.dirichlet(np.full(s.assets, 0.5), s.portfolios)
    return returns, weights


def pmkit_all(weights: np.ndarray, returns: np.ndarray) -> dict[str, np.ndarray]:
    out = tail_risk(weights, returns, CONFIDENCE, 1, "historical", contributions=True)
    return {k: np.asarray(v) for k, v in jax.block_until_ready(out).items()}


def peer_loop(weights: np.ndarray, returns: np.ndarray) -> dict[str, np.ndarray]:
    """skfolio VaR/CVaR per portfolio plus numpy Euler components."""
    import skfolio.measures as sm

    n_p, n_a = weights.shape
    n = returns.shape[0]
    out = {k: np.empty(n_p) for k in ("var", "es")}
    out.update({k: np.empty((n_p, n_a)) for k in ("var_component", "es_component")})
    k = (1.0 - CONFIDENCE) * n
    eps = np.finfo(float).eps
    i_var = min(n - 1, int(np.floor(k + 4 * eps * n)))
    i_es = max(0, int(np.ceil(k)) - 1)
    for p in range(n_p):
        w = weights[p]
        port = returns @ w
        out["var"][p] = sm.value_at_risk(port, CONFIDENCE)
        out["es"][p] = sm.cvar(port, CONFIDENCE)
        order = np.argsort(port)  # worst first
        out["var_component"][p] = -w * returns[order[i_var]]
        tail = returns[order[:i_es]].sum(axis=0) + (k - i_es) * returns[order[i_es]]
        out["es_component"][p] = -w * tail / k
    return out


def check(ours: dict[str, np.ndarray], peer: dict[str, np.ndarray]) -> None:
    """Fail unless pmkit and the peer agree, and components sum to the totals."""
    for key in ("var", "es"):
        if not np.allclose(ours[key], peer[key], rtol=0, atol=1e-12):
            worst = np.abs(ours[key] - peer[key]).max()
            fail(f"{key}: pmkit and skfolio differ by up to {worst:.3g}")
        comp = f"{key}_component"
        if not np.allclose(ours[comp], peer[comp], rtol=0, atol=1e-10):
            fail(f"{comp}: pmkit and numpy loop differ by {np.abs(ours[comp] - peer[comp]).max()}")
        if not np.allclose(ours[comp].sum(axis=1), ours[key], rtol=0, atol=1e-12):
            fail(f"{comp} do not sum to {key}")


def tail_contributions(ctx: Context) -> Row:
    s = QUICK if ctx.quick else FULL
    returns, weights = synthetic(s)
    t0 = time.perf_counter()
    ours = pmkit_all(weights, returns)
    first = time.perf_counter() - t0
    peer = peer_loop(weights, returns)
    check(ours, peer)
    fast = median_time(lambda: pmkit_all(weights, returns), ctx.repeats)
    slow = median_time(lambda: peer_loop(weights, returns), ctx.repeats)
    return compared(
        "tail contributions",
        f"hist VaR+ES+Euler 95%, {s.portfolios} pf x {s.assets} assets x {s.days:,} days",
        fast,
        slow,
        f"1 jitted vmapped call; compile {max(first - fast, 0.0):.2f} s excluded; "
        "peer = skfolio value_at_risk+cvar + numpy components, looped; target >= 20x",
    )


def skfolio_contribution(weights: np.ndarray, returns: np.ndarray) -> dict[str, np.ndarray]:
    """skfolio's own way: ``Portfolio.contribution`` (central finite differences) per portfolio."""
    from skfolio import Portfolio
    from skfolio.measures import ExtraRiskMeasure, RiskMeasure

    out: dict[str, list] = {"var_component": [], "es_component": []}
    for w in weights:
        pf = Portfolio(returns, w)
        out["var_component"].append(pf.contribution(ExtraRiskMeasure.VALUE_AT_RISK))
        out["es_component"].append(pf.contribution(RiskMeasure.CVAR))
    return {k: np.array(v) for k, v in out.items()}


def versus_skfolio_contribution(ctx: Context) -> Row:
    """pmkit for all portfolios vs skfolio Portfolio.contribution, timed on one, times P."""
    s = QUICK if ctx.quick else FULL
    returns, weights = synthetic(s)
    ours = pmkit_all(weights, returns)
    one = skfolio_contribution(weights[:1], returns)
    for key, theirs in one.items():
        scale = np.abs(ours[key[:-10]][0])
        if not np.allclose(ours[key][:1], theirs, rtol=0, atol=1e-8 * scale):
            fail(f"{key}: pmkit and skfolio Portfolio.contribution differ")
    fast = median_time(lambda: pmkit_all(weights, returns), ctx.repeats)
    per_portfolio = median_time(lambda: skfolio_contribution(weights[:1], returns), ctx.repeats)
    return compared(
        "tail contributions",
        f"vs skfolio Portfolio.contribution, {s.portfolios} pf x {s.assets} x {s.days:,}",
        fast,
        per_portfolio * s.portfolios,
        f"peer timed on 1 portfolio x {s.portfolios} (linear loop): finite differences, "
        f"2 x {s.assets} evaluations per measure; VaR and ES components",
    )


@benchmark_group("risk")
def risk_group(ctx: Context) -> list[Row]:
    """Risk: historical VaR, ES and Euler contributions, pmkit batched vs skfolio looped."""
    return [tail_contributions(ctx), versus_skfolio_contribution(ctx)]
