"""Benchmark group ``batch``: many client portfolios at once against a cvxpy + CLARABEL loop.

The direct-indexing case: every portfolio has its own expected returns,
per-asset upper bounds, current weights, linear trading costs and turnover
limit, sharing one risk model. Each portfolio solves::

    min (gamma/2) w'Sw - mu_p'w + c_p'|w - w0_p|
    s.t. sum(w) = 1, 0 <= w <= u_p, ||w - w0_p||_1 <= tau_p

``dense``: ``S`` a shared dense (N, N) covariance. ``factor``: the same
problems with ``S = B F B' + diag(d)`` (K = 20 factors) passed as a
`FactorCovariance`, the shape of real risk models. pmkit: one call of
`pmkit.optimize.batch.optimize_batch` (labelled inputs in, labelled results
out; compile time of the first call reported separately in the note). Peer:
a Python loop of cvxpy + CLARABEL, one `Problem` per portfolio, timed on the
first ``LOOP`` portfolios and scaled linearly to all of them (said in the
note). Before any ratio, every checked portfolio must agree with CLARABEL to
1e-6 relative in objective (pmkit's never worse by more) and pmkit's weights
must satisfy every constraint to 1e-7. Target: >= 20x.

Full size 1,000 portfolios x 500 assets (``--quick``: 50 x 60).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import xarray as xr
from harness import Context, Row, benchmark_group, compared, fail, median_time

SEED = 20261122
LOOP = 20


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run."""

    portfolios: int
    assets: int
    factors: int


FULL = Sizes(1000, 500, 20)
QUICK = Sizes(50, 60, 5)


def synthetic(s: Sizes) -> dict[str, np.ndarray]:
    """A factor risk model (annualized) and per-client problem data."""
    rng = np.random.default_rng(SEED)
    b = rng.normal(0.0, 0.15, (s.assets, s.factors))
    b[:, 0] = rng.normal(1.0, 0.2, s.assets) * 0.15  # a market factor
    f = np.diag(rng.uniform(0.5, 1.5, s.factors))
    d = rng.uniform(0.02, 0.12, s.assets)
    cov = b @ f @ b.T + np.diag(d)
    mu = 0.06 + 0.4 * (b @ rng.normal(0.0, 0.05, s.factors)) + rng.normal(0, 0.02, s.assets)
    views = mu[None, :] + rng.normal(0.0, 0.01, (s.portfolios, s.assets))
    w0 = rng.dirichlet(np.full(s.assets, 3.0), s.portfolios)
    upper = rng.uniform(3.0, 8.0, (s.portfolios, 1)) / s.assets * np.ones((1, s.assets))
    return {
        "b": b, "f": f, "d": d, "cov": cov, "mu": views, "w0": w0, "upper": upper,
        "costs": np.full((s.portfolios, s.assets), 0.001),
        "tau": rng.uniform(0.5, 1.5, s.portfolios), "gamma": 4.0,
    }


def labelled(x: dict[str, np.ndarray], factor: bool) -> tuple[dict, object]:
    n_p, n = x["w0"].shape
    pf = [f"client{p:05d}" for p in range(n_p)]
    assets = [f"A{i:04d}" for i in range(n)]

    def pa(v):
        coords = {"portfolio": pf, "asset": assets}
        return xr.DataArray(v, dims=("portfolio", "asset"), coords=coords)

    if factor:
        from pmkit.optimize.batch import FactorCovariance

        cov = FactorCovariance(
            xr.DataArray(x["b"], dims=("asset", "factor"), coords={"asset": assets}),
            xr.DataArray(x["f"], dims=("factor", "factor_j")),
            xr.DataArray(x["d"], dims=("asset",), coords={"asset": assets}),
        )
    else:
        cov = xr.DataArray(
            x["cov"], dims=("asset", "asset_j"), coords={"asset": assets, "asset_j": assets}
        )
    kwargs = {
        "current_weights": pa(x["w0"]), "upper": pa(x["upper"]), "costs": pa(x["costs"]),
        "max_turnover": xr.DataArray(x["tau"], dims=("portfolio",), coords={"portfolio": pf}),
        "risk_aversion": x["gamma"],
    }
    return {"mu": pa(x["mu"]), "cov": cov, **kwargs}, None


def clarabel_loop(x: dict[str, np.ndarray], count: int) -> np.ndarray:
    """Objective of each of the first ``count`` problems, one cvxpy Problem each."""
    import cvxpy as cp

    chol = np.linalg.cholesky(x["cov"])
    out = np.empty(count)
    n = x["w0"].shape[1]
    for p in range(count):
        w = cp.Variable(n)
        obj = (0.5 * x["gamma"] * cp.sum_squares(chol.T @ w) - x["mu"][p] @ w
               + x["costs"][p] @ cp.abs(w - x["w0"][p]))
        cons = [cp.sum(w) == 1, w >= 0, w <= x["upper"][p]]
        cons.append(cp.norm1(w - x["w0"][p]) <= x["tau"][p])
        prob = cp.Problem(cp.Minimize(obj), cons)
        prob.solve(solver="CLARABEL")
        out[p] = prob.value
    return out


def check(res, x: dict[str, np.ndarray], ref: np.ndarray) -> None:
    w = res.weights.values
    gaps = {
        "budget": np.abs(w.sum(axis=1) - 1).max(),
        "lower": (-w).max(),
        "upper": (w - x["upper"]).max(),
        "turnover": (np.abs(w - x["w0"]).sum(axis=1) - x["tau"]).max(),
    }
    worst = max(gaps, key=gaps.get)
    if gaps[worst] > 1e-7:
        fail(f"batch weights break {worst} by {gaps[worst]:.3g}")
    ours = res.objective.values[: len(ref)]
    rel = (ours - ref) / np.maximum(np.abs(ref), 1e-12)
    if rel.max() > 1e-6:
        fail(f"batch objective worse than CLARABEL by up to {rel.max():.3g} relative")


def one_case(ctx: Context, factor: bool) -> Row:
    from pmkit.optimize.batch import optimize_batch

    s = QUICK if ctx.quick else FULL
    x = synthetic(s)
    kwargs, _ = labelled(x, factor)
    t0 = time.perf_counter()
    res = optimize_batch(**kwargs)
    first = time.perf_counter() - t0
    count = min(LOOP, s.portfolios)
    t0 = time.perf_counter()
    ref = clarabel_loop(x, count)
    loop = (time.perf_counter() - t0) / count * s.portfolios
    check(res, x, ref)
    fast = median_time(lambda: optimize_batch(**kwargs), ctx.repeats)
    rel = (res.objective.values[:count] - ref) / np.abs(ref)
    kind = f"factor K={s.factors}" if factor else "dense shared"
    return compared(
        "batch mean-variance",
        f"{s.portfolios:,} pf x {s.assets} assets, {kind} cov, own bounds/w0/costs/turnover",
        fast,
        loop,
        f"loop timed on {count} problems x {s.portfolios // count} (linear); compile "
        f"{max(first - fast, 0.0):.1f} s excluded; objective vs CLARABEL {rel.min():+.1e}.."
        f"{rel.max():+.1e} rel; converged {int(res.converged.sum())}/{s.portfolios}, median "
        f"{float(res.iterations.median()):.0f} ADMM iterations; target >= 20x",
    )


@benchmark_group("batch")
def batch(ctx: Context) -> list[Row]:
    return [one_case(ctx, factor=False), one_case(ctx, factor=True)]
