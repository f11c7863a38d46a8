"""Benchmark group ``optimize``: pmkit.optimize against PyPortfolioOpt, skfolio and riskfolio-lib.

Four long-only, fully invested problems, each **end to end from a returns
frame** of T = 2,520 days: pmkit fits an ``xarray.DataArray(asset, time)``,
the peers a ``pandas.DataFrame(time, asset)`` of the same numbers, and both
sides' times include their own estimation of the moments they need.

==================  ==========================================================  =========
problem             peers (library: call, solver)                                target
==================  ==========================================================  =========
min variance        PyPortfolioOpt ``EfficientFrontier.min_volatility`` on        >= 5x
                    ``mean_historical_return(compounding=False)`` and
                    ``sample_cov`` (CLARABEL; also OSQP, cvxpy's choice for it);
                    skfolio ``MeanRisk(MINIMIZE_RISK, VARIANCE)`` (CLARABEL);
                    riskfolio ``Portfolio.optimization(rm="MV", obj="MinRisk")``
                    (CLARABEL)
max Sharpe          the same with ``max_sharpe(risk_free_rate=0)``,                >= 5x
                    ``MAXIMIZE_RATIO`` and ``obj="Sharpe"``
ERC                 skfolio ``RiskBudgeting(VARIANCE)``; riskfolio                 >= 20x
                    ``rp_optimization(rm="MV")``; each with CLARABEL and SCS
min CVaR 95 %       PyPortfolioOpt ``EfficientCVaR.min_cvar``; skfolio             >= 10x
                    ``MeanRisk(MINIMIZE_RISK, CVAR)``; riskfolio ``rm="CVaR"``;
                    all on HiGHS (3-4x faster than CLARABEL on this LP), and
                    riskfolio with its default CLARABEL as well
==================  ==========================================================  =========

Sizes: the 20 bundled stocks over their last 2,520 days (real data), and 100
and 500 assets of a seeded synthetic factor model (one market and four style
factors, Student-t idiosyncratic shocks, daily volatility about 2 %, drift
about 10 % a year); ``--quick`` runs the 20 stocks only.

**Every answer is checked** — pmkit's and each peer's — by this module's own
formulas on the same numbers: feasibility (every weight >= -1e-7, weights sum
to 1 within 1e-8) and the objective: annualized variance ``w'Sw`` with ``S``
the sample covariance (ddof=1) times 252; annualized Sharpe ratio ``m'w /
sqrt(w'Sw)`` with ``m`` the arithmetic mean times 252; for ERC the largest
relative gap ``max_i |RC_i / b_i - 1|`` of the risk contributions ``RC_i =
w_i (Sw)_i / w'Sw`` from the budgets ``b_i = 1/N``; the CVaR at 95 % of the
daily loss ``-Xw`` over the 2,520 scenarios (the Rockafellar–Uryasev value all
four libraries minimize). These are PyPortfolioOpt's and pmkit's estimator
definitions; skfolio and riskfolio estimate daily (unannualized) moments with
the same ddof=1, which scales the objectives but not the optimal weights, so
every answer is judged on the common definition above.

Each row compares pmkit with one peer setting; its note names the peer, the
peer's objective gap relative to pmkit (positive = the peer is worse) and its
feasibility. A peer answer counts ("valid") when it is feasible and its
objective is no more than 1e-4 (relative; ERC: a contribution gap no more
than 1e-3 of the budget) worse than pmkit's; otherwise its row has no ratio
and the note says why. pmkit wins a row only at an equal or better objective
(within 1e-6 relative; ERC: a smaller contribution gap); the ratio against
the **fastest valid peer** is the one held against the target, stated in
that peer's row. An infeasible pmkit answer, or one worse than a valid peer's
by more than 1e-4, fails the group.

Timing: `harness.median_time` with ``--repeats`` runs (after a warm-up) for
every setting; a peer whose checked call took more than 5 s is timed with
3 runs instead (the checked call and two more), said in its note. A full run
takes 8-10 minutes on 2 cores (most of it the peers at N=500), ``--quick``
about 40 s.

On a shared machine run with ``OPENBLAS_NUM_THREADS=1``: when other processes
compete for the cores, OpenBLAS's spinning threads slow pmkit's dense kernels
(the covariance product, Cholesky factorizations) by up to 30x, while the
peers' conic solvers are single-threaded and barely affected.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from harness import Context, Row, benchmark_group, fail, market, median_time, table

from pmkit.model.market import simple_returns

SEED = 20240611
DAYS = 2520
CONFIDENCE = 0.95
FULL_SIZES = (20, 100, 500)
QUICK_SIZES = (20,)
FEASIBLE_NEG = -1e-7  # smallest weight accepted
FEASIBLE_BUDGET = 1e-8  # |sum(w) - 1| accepted
EQUAL = 1e-6  # relative objective gap still "equal"
GROSS = 1e-4  # a peer worse than pmkit by more than this is not counted
RC_VALID = 1e-3  # ERC: largest |RC_i / b_i - 1| of a counted peer
SLOW = 5.0  # seconds: peers slower than this get 3 timed runs


# -- data ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Panel:
    """One return panel in both forms, with the judge's moments."""

    label: str
    x: np.ndarray  # (T, N) daily simple returns
    da: xr.DataArray  # (asset, time): pmkit's input
    df: pd.DataFrame  # (time, asset): the peers' input
    cov: np.ndarray  # annualized sample covariance, ddof=1
    mu: np.ndarray  # annualized arithmetic mean

    @property
    def n(self) -> int:
        return self.x.shape[1]


def panel(label: str, x: np.ndarray, assets: list[str], dates: pd.DatetimeIndex) -> Panel:
    da = xr.DataArray(
        x.T.copy(), dims=("asset", "time"), coords={"asset": assets, "time": dates},
        name="simple_return",
    )
    df = pd.DataFrame(x.copy(), index=dates, columns=assets)
    return Panel(label, x, da, df, np.cov(x, rowvar=False, ddof=1) * 252, x.mean(axis=0) * 252)


def real_stocks() -> Panel:
    """The 20 bundled stocks, last 2,520 days (2012-12-26 to 2022-12-28), complete."""
    r = simple_returns(market()).isel(time=slice(-DAYS, None)).transpose("asset", "time")
    r = r.dropna("asset", how="any")  # the 5 ETFs list in 2014
    if r.sizes["asset"] != 20:
        fail(f"expected the 20 stocks complete over the last {DAYS} days, got {r.sizes['asset']}")
    x = np.ascontiguousarray(r.values.T)
    return panel("real stocks", x, [str(a) for a in r["asset"].values],
                 pd.DatetimeIndex(r["time"].values))


def synthetic(n: int) -> Panel:
    """Seeded factor-model daily returns, ``DAYS x n``."""
    rng = np.random.default_rng(SEED + n)
    factor_vol = np.array([0.010, 0.006, 0.005, 0.004, 0.003])
    factors = rng.standard_normal((DAYS, 5)) * factor_vol
    loadings = rng.normal([1.0, 0, 0, 0, 0], [0.3, 0.5, 0.5, 0.5, 0.5], (n, 5))
    idio = rng.uniform(0.008, 0.025, n)
    shocks = rng.standard_t(5, (DAYS, n)) * np.sqrt(3 / 5)  # unit variance
    x = rng.normal(0.0004, 0.0003, n) + factors @ loadings.T + shocks * idio
    dates = pd.bdate_range("2013-01-02", periods=DAYS)
    return panel("synthetic", x, [f"S{i:03d}" for i in range(n)], dates)


# -- the judge ----------------------------------------------------------------------------------
def variance(p: Panel, w: np.ndarray) -> float:
    return float(w @ p.cov @ w)


def sharpe(p: Panel, w: np.ndarray) -> float:
    return float(p.mu @ w / np.sqrt(w @ p.cov @ w))


def rc_gap(p: Panel, w: np.ndarray) -> float:
    """Largest relative gap of the risk contributions from equal budgets."""
    sw = p.cov @ w
    rc = w * sw / float(w @ sw)
    return float(np.abs(rc * p.n - 1.0).max())


def cvar(p: Panel, w: np.ndarray) -> float:
    """Historical CVaR at CONFIDENCE of the daily loss (fractional tail scenario included)."""
    losses = np.sort(-(p.x @ w))[::-1]
    k = (1.0 - CONFIDENCE) * len(losses)
    j = int(np.floor(k))
    tail = losses[:j].sum() + (k - j) * (losses[j] if j < len(losses) else 0.0)
    return float(tail / k)


@dataclass(frozen=True)
class Verdict:
    """One answer judged: feasibility and objective."""

    feasible: bool
    min_weight: float
    budget_error: float
    objective: float

    @staticmethod
    def of(p: Panel, w: np.ndarray, objective: Callable[[Panel, np.ndarray], float]) -> Verdict:
        budget = abs(float(w.sum()) - 1.0)
        ok = bool(np.isfinite(w).all() and w.min() >= FEASIBLE_NEG and budget <= FEASIBLE_BUDGET)
        return Verdict(ok, float(w.min()), budget, objective(p, w))

    def why_infeasible(self) -> str:
        return f"infeasible (min weight {self.min_weight:.2g}, |sum-1| {self.budget_error:.2g})"


# -- the problems -------------------------------------------------------------------------------
Weights = Any  # what a peer returns: Series, dict, 1-column DataFrame or array in column order


@dataclass(frozen=True)
class Peer:
    """One library with one solver setting."""

    name: str
    run: Callable[[pd.DataFrame], Weights]


@dataclass(frozen=True)
class Problem:
    """An optimization problem, its judge, its pmkit optimizer and its peers."""

    name: str
    target: float
    sense: str  # "min" or "max" of objective; "rc" for ERC's contribution gap
    objective: Callable[[Panel, np.ndarray], float]
    what: str  # how the objective is shown in notes
    pmkit: Callable[[], Any]  # a fresh optimizer
    peers: tuple[Peer, ...]


def ppo_frontier(df: pd.DataFrame, solver: str) -> Any:
    from pypfopt import EfficientFrontier, expected_returns, risk_models

    mu = expected_returns.mean_historical_return(df, returns_data=True, compounding=False)
    cov = risk_models.sample_cov(df, returns_data=True)
    return EfficientFrontier(mu, cov, solver=solver)


def ppo_min_variance(solver: str) -> Callable[[pd.DataFrame], Weights]:
    def run(df: pd.DataFrame) -> Weights:
        ef = ppo_frontier(df, solver)
        ef.min_volatility()
        return ef.weights

    return run


def ppo_max_sharpe(solver: str) -> Callable[[pd.DataFrame], Weights]:
    def run(df: pd.DataFrame) -> Weights:
        ef = ppo_frontier(df, solver)
        ef.max_sharpe(risk_free_rate=0.0)
        return ef.weights

    return run


def ppo_min_cvar(solver: str) -> Callable[[pd.DataFrame], Weights]:
    def run(df: pd.DataFrame) -> Weights:
        from pypfopt import EfficientCVaR, expected_returns

        mu = expected_returns.mean_historical_return(df, returns_data=True, compounding=False)
        ef = EfficientCVaR(mu, df, beta=CONFIDENCE, solver=solver)
        ef.min_cvar()
        return ef.weights

    return run


def skfolio_mean_risk(
    objective: str, measure: str, solver: str
) -> Callable[[pd.DataFrame], Weights]:
    def run(df: pd.DataFrame) -> Weights:
        from skfolio.measures import RiskMeasure
        from skfolio.optimization import MeanRisk, ObjectiveFunction

        model = MeanRisk(
            objective_function=ObjectiveFunction[objective],
            risk_measure=RiskMeasure[measure],
            cvar_beta=CONFIDENCE,
            solver=solver,
        )
        return model.fit(df).weights_

    return run


def skfolio_erc(solver: str) -> Callable[[pd.DataFrame], Weights]:
    def run(df: pd.DataFrame) -> Weights:
        from skfolio.measures import RiskMeasure
        from skfolio.optimization import RiskBudgeting

        return RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, solver=solver).fit(df).weights_

    return run


def riskfolio(rm: str, obj: str | None, solver: str) -> Callable[[pd.DataFrame], Weights]:
    """``Portfolio.optimization`` (or ``rp_optimization`` when ``obj`` is None)."""

    def run(df: pd.DataFrame) -> Weights:
        import riskfolio as rp

        port = rp.Portfolio(returns=df, alpha=1.0 - CONFIDENCE)
        port.assets_stats(method_mu="hist", method_cov="hist")
        port.solvers = [solver]
        if obj is None:
            w = port.rp_optimization(model="Classic", rm=rm, rf=0, b=None, hist=True)
        else:
            w = port.optimization(model="Classic", rm=rm, obj=obj, rf=0, l=0, hist=True)
        if w is None:  # riskfolio prints a message and returns None when the solver fails
            raise RuntimeError(f"riskfolio returned no solution with {solver}")
        return w

    return run


def problems() -> list[Problem]:
    from pmkit.optimize import MaximumSharpe, MinimumVariance
    from pmkit.optimize.risk_parity import EqualRiskContribution

    out = [
        Problem(
            "min variance", 5.0, "min", variance, "variance", MinimumVariance,
            (
                Peer("PyPortfolioOpt (CLARABEL)", ppo_min_variance("CLARABEL")),
                Peer("PyPortfolioOpt (OSQP)", ppo_min_variance("OSQP")),
                Peer("skfolio (CLARABEL)", skfolio_mean_risk("MINIMIZE_RISK", "VARIANCE",
                                                             "CLARABEL")),
                Peer("riskfolio (CLARABEL)", riskfolio("MV", "MinRisk", "CLARABEL")),
            ),
        ),
        Problem(
            "max Sharpe", 5.0, "max", sharpe, "Sharpe", MaximumSharpe,
            (
                Peer("PyPortfolioOpt (CLARABEL)", ppo_max_sharpe("CLARABEL")),
                Peer("PyPortfolioOpt (OSQP)", ppo_max_sharpe("OSQP")),
                Peer("skfolio (CLARABEL)", skfolio_mean_risk("MAXIMIZE_RATIO", "VARIANCE",
                                                             "CLARABEL")),
                Peer("riskfolio (CLARABEL)", riskfolio("MV", "Sharpe", "CLARABEL")),
            ),
        ),
        Problem(
            "ERC", 20.0, "rc", rc_gap, "max|RC/b-1|", EqualRiskContribution,
            (
                Peer("skfolio (CLARABEL)", skfolio_erc("CLARABEL")),
                Peer("skfolio (SCS)", skfolio_erc("SCS")),
                Peer("riskfolio (CLARABEL)", riskfolio("MV", None, "CLARABEL")),
                Peer("riskfolio (SCS)", riskfolio("MV", None, "SCS")),
            ),
        ),
    ]
    cvar_optimizer = mean_cvar()
    if cvar_optimizer is not None:
        out.append(
            Problem(
                "min CVaR 95%", 10.0, "min", cvar, "CVaR", cvar_optimizer,
                (
                    Peer("PyPortfolioOpt (HIGHS)", ppo_min_cvar("HIGHS")),
                    Peer("skfolio (HIGHS)", skfolio_mean_risk("MINIMIZE_RISK", "CVAR", "HIGHS")),
                    Peer("riskfolio (HIGHS)", riskfolio("CVaR", "MinRisk", "HIGHS")),
                    Peer("riskfolio (CLARABEL)", riskfolio("CVaR", "MinRisk", "CLARABEL")),
                ),
            )
        )
    return out


def mean_cvar() -> Callable[[], Any] | None:
    """pmkit's minimum-CVaR optimizer at CONFIDENCE, or None while the module is missing."""
    try:
        from pmkit.optimize.cvar import MeanCVaR
    except ImportError:
        print("optimize: pmkit.optimize.cvar not available, CVaR skipped", file=sys.stderr)
        return None
    return lambda: MeanCVaR(confidence=CONFIDENCE)


def import_peers() -> None:
    """Import the peer libraries (seconds each) before anything is timed or checked."""
    import cvxpy  # noqa: F401
    import pypfopt  # noqa: F401
    import riskfolio  # noqa: F401
    import skfolio.optimization  # noqa: F401


# -- one problem at one size --------------------------------------------------------------------
def weights_of(p: Panel, answer: Weights) -> np.ndarray:
    """A peer's or pmkit's answer as an array in the panel's asset order."""
    assets = list(p.df.columns)
    if isinstance(answer, xr.DataArray):
        return answer.sel(asset=assets).values.astype(float)
    if isinstance(answer, pd.DataFrame):
        answer = answer.iloc[:, 0]
    if isinstance(answer, dict | pd.Series):
        return np.array([answer[a] for a in assets], dtype=float)
    return np.asarray(answer, dtype=float).ravel()


def gap(problem: Problem, ours: float, theirs: float) -> float:
    """How much worse ``theirs`` is than ``ours`` (relative; ERC: difference of gaps)."""
    if problem.sense == "rc":
        return theirs - ours
    scale = abs(ours) or 1.0
    return (theirs - ours) / scale if problem.sense == "min" else (ours - theirs) / scale


def timed_call(fn: Callable[[], Weights]) -> tuple[Weights, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def peer_time(fn: Callable[[], object], checked: float, repeats: int) -> tuple[float, str]:
    """Median seconds; slow peers get the checked call plus two runs."""
    if checked <= SLOW:
        return median_time(fn, repeats), ""
    runs = [checked]
    for _ in range(2):
        runs.append(timed_call(fn)[1])
    return float(np.median(runs)), "3 runs (slow peer); "


def run_case(problem: Problem, p: Panel, repeats: int) -> tuple[list[Row], list[str]]:
    """Rows for one problem at one size, and the pmkit failures found."""
    case = f"N={p.n} x T={DAYS:,} ({p.label})"
    res = problem.pmkit().fit(p.da)
    ours = Verdict.of(p, weights_of(p, res.weights), problem.objective)
    errors = []
    if not ours.feasible:
        errors.append(f"{problem.name} {case}: pmkit {ours.why_infeasible()}")

    checked = []
    for peer in problem.peers:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                answer, seconds = timed_call(lambda peer=peer: peer.run(p.df))
            verdict = Verdict.of(p, weights_of(p, answer), problem.objective)
            checked.append((peer, verdict, seconds, None))
        except Exception as exc:
            checked.append((peer, None, None, f"failed: {type(exc).__name__}: {str(exc)[:60]}"))

    t_pmkit = median_time(lambda: problem.pmkit().fit(p.da), repeats)
    t_prepare = median_time(lambda: problem.pmkit().prepare(p.da), repeats)
    pmkit_note = (
        f"pmkit {res.solver}, {problem.what} {ours.objective:.6g}, estimation "
        f"{100 * min(t_prepare / t_pmkit, 1):.0f}% of its time"
    )

    timed: list[dict[str, Any]] = []
    for peer, verdict, seconds, failure in checked:
        entry: dict[str, Any] = {"peer": peer, "verdict": verdict, "seconds": None,
                                 "note": f"vs {peer.name}: ", "valid": False, "win": False}
        timed.append(entry)
        if failure:
            entry["note"] += failure
            continue
        g = gap(problem, ours.objective, verdict.objective)
        if problem.sense == "rc":
            entry["note"] += f"peer {problem.what} {verdict.objective:.2g}; "
        else:
            entry["note"] += f"peer {problem.what} worse by {g:+.2g} rel; "
        if not verdict.feasible:
            entry["note"] += verdict.why_infeasible() + ", not counted; "
        elif problem.sense == "rc" and verdict.objective > RC_VALID:
            entry["note"] += f"feasible, contributions off by > {RC_VALID:g}, not counted; "
        elif problem.sense != "rc" and g > GROSS:
            entry["note"] += f"feasible, objective worse by > {GROSS:g}, not counted; "
        else:
            entry["note"] += "feasible; "
            entry["valid"] = True
        if entry["valid"]:
            pmkit_ok = ours.objective <= verdict.objective + 1e-9 if problem.sense == "rc" \
                else g >= -EQUAL
            if not pmkit_ok:
                entry["note"] += f"PMKIT OBJECTIVE WORSE by {-g:.2g}: not a win; "
                if problem.sense != "rc" and -g > GROSS:
                    errors.append(f"{problem.name} {case}: pmkit worse than {peer.name} "
                                  f"by {-g:.3g}")
            entry["win"] = pmkit_ok and ours.feasible
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            entry["seconds"], how = peer_time(lambda peer=peer: peer.run(p.df), seconds, repeats)
        entry["note"] += how

    valid = [e for e in timed if e["valid"] and e["seconds"] is not None]
    fastest = min(valid, key=lambda e: e["seconds"]) if valid else None
    rows = []
    for e in timed:
        ratio = e["seconds"] / t_pmkit if e["win"] else None
        note = e["note"].rstrip("; ")
        if e is fastest:
            ratio_s = f"{ratio:.1f}x" if ratio is not None else "no win"
            met = "MET" if ratio is not None and ratio >= problem.target else "MISSED"
            note += (f"; FASTEST VALID PEER: {ratio_s} vs target >= {problem.target:g}x {met}; "
                     f"{pmkit_note}")
        rows.append(Row(problem.name, case, t_pmkit, "s", e["seconds"], ratio, note))
    if fastest is None:
        rows.append(Row(problem.name, case, t_pmkit, "s", None, None,
                        f"no valid peer answer; {pmkit_note}"))
    return rows, errors


@benchmark_group("optimize")
def optimize_group(ctx: Context) -> list[Row]:
    """Optimize: min variance, max Sharpe, ERC, min CVaR vs PyPortfolioOpt, skfolio, riskfolio."""
    sizes = QUICK_SIZES if ctx.quick else FULL_SIZES
    import_peers()
    panels = [real_stocks() if n == 20 else synthetic(n) for n in sizes]
    rows: list[Row] = []
    errors: list[str] = []
    for problem in problems():
        for p in panels:
            t0 = time.perf_counter()
            got, bad = run_case(problem, p, ctx.repeats)
            rows += got
            errors += bad
            print(f"  optimize: {problem.name} N={p.n} {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
    if errors:
        print(table(rows), file=sys.stderr)
        fail("; ".join(errors))
    return rows
