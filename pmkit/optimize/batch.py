"""Batched mean-variance optimization of many portfolios at once (the direct-indexing case).

Labelled front end of `pmkit.core.batch_qp`: thousands of client accounts,
each with its own expected returns, bounds, current weights, turnover limit
and trading costs, solved together by one jitted, vmapped JAX call (ADMM with
a shared factorization, then an exact active-set polish verified against
every KKT condition). Per portfolio ``p``::

    minimize   (risk_aversion / 2) w' S w - mu_p' w + costs_p' |w - w0_p|
    subject to sum(w) = 1,  lower_p <= w <= upper_p,
               sector bounds on sum_{i in s} w_i,  ||w - w0_p||_1 <= max_turnover_p

``mu`` and ``S`` must be in the same units (annualized fractions, say);
``costs`` are fractions of value per unit of weight traded, in the
objective's units. ``S`` is a shared dense covariance ``(asset, asset_j)``, a
per-portfolio one ``(portfolio, asset, asset_j)``, or a `FactorCovariance`
(``B F B' + diag(d)``, the shape of real risk models, which makes every step
``O(N K)``).

The optimal objective is differentiable: `optimal_objective` is a
`jax.custom_vjp` (envelope theorem), so ``jax.grad`` of any function of it
with respect to ``mu``, the covariance or the bounds costs one solve.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from pmkit.errors import AlignmentError, InfeasibleError, SolverError, ValidationError

__all__ = ["BatchResult", "FactorCovariance", "optimal_objective", "optimize_batch"]


@dataclass(frozen=True)
class FactorCovariance:
    """``S = B F B' + diag(d)`` with labels.

    Attributes
    ----------
    loadings : xarray.DataArray
        ``B(asset, factor)``.
    factor_cov : xarray.DataArray
        ``F(factor, factor_j)``, symmetric positive semi-definite.
    specific : xarray.DataArray
        ``d(asset)`` or ``d(portfolio, asset)``: specific variances (>= 0).
    """

    loadings: xr.DataArray
    factor_cov: xr.DataArray
    specific: xr.DataArray


@dataclass(frozen=True)
class BatchResult:
    """Answer of `optimize_batch`.

    Attributes
    ----------
    weights : xarray.DataArray
        ``weight(portfolio, asset)``, fractions.
    objective : xarray.DataArray
        ``objective(portfolio)`` at the weights.
    converged : xarray.DataArray
        ``(portfolio)`` bool: every KKT residual within tolerance.
    iterations : xarray.DataArray
        ``(portfolio)`` ADMM iterations before the accepted point.
    primal_residual, dual_residual : xarray.DataArray
        ``(portfolio)`` largest constraint violation (weight units) and
        largest stationarity / multiplier-sign violation.
    budget_multiplier : xarray.DataArray
        ``(portfolio)`` multiplier of ``sum(w) = 1``.
    """

    weights: xr.DataArray
    objective: xr.DataArray
    converged: xr.DataArray
    iterations: xr.DataArray
    primal_residual: xr.DataArray
    dual_residual: xr.DataArray
    budget_multiplier: xr.DataArray

    def summary(self) -> dict[str, float]:
        """Counts and worst residuals across portfolios."""
        return {
            "portfolios": int(self.weights.sizes["portfolio"]),
            "converged": int(self.converged.sum()),
            "max_primal_residual": float(self.primal_residual.max()),
            "max_dual_residual": float(self.dual_residual.max()),
            "median_iterations": float(self.iterations.median()),
        }

    def _repr_html_(self) -> str:
        s = self.summary()
        return (
            f"<b>Batch optimization</b>: {s['converged']}/{s['portfolios']} converged, "
            f"max constraint violation {s['max_primal_residual']:.2e}, "
            f"median iterations {s['median_iterations']:.0f}"
        )


def optimize_batch(
    mu: xr.DataArray,
    cov: xr.DataArray | FactorCovariance,
    *,
    current_weights: xr.DataArray,
    lower: float | xr.DataArray = 0.0,
    upper: float | xr.DataArray = 1.0,
    risk_aversion: float | xr.DataArray = 1.0,
    costs: float | xr.DataArray = 0.0,
    max_turnover: float | xr.DataArray | None = None,
    sectors: Mapping[Hashable, Hashable] | xr.DataArray | str | None = None,
    sector_bounds: Mapping[Hashable, tuple[float | None, float | None]] | None = None,
    tol: float | None = None,
    max_iter: int = 4000,
    raise_on_failure: bool = True,
) -> BatchResult:
    """Solve the mean-variance problem of every portfolio at once (JAX, jitted, vmapped).

    Parameters
    ----------
    mu : xarray.DataArray
        Expected returns ``(asset)`` shared or ``(portfolio, asset)``.
    cov : xarray.DataArray or FactorCovariance
        ``(asset, asset_j)`` shared, ``(portfolio, asset, asset_j)`` per
        portfolio, or factor-structured. Same units as ``mu``.
    current_weights : xarray.DataArray
        ``(portfolio, asset)`` weights held now; fixes the portfolios and
        their order. Turnover and costs are measured from them.
    lower, upper : float or xarray.DataArray
        Weight bounds: scalar, ``(asset)`` or ``(portfolio, asset)``.
    risk_aversion : float or xarray.DataArray
        ``gamma > 0``: scalar or ``(portfolio)``.
    costs : float or xarray.DataArray
        Linear trading cost per unit of weight traded (>= 0): scalar,
        ``(asset)`` or ``(portfolio, asset)``.
    max_turnover : float or xarray.DataArray, optional
        ``sum |w - w0|`` limit: scalar or ``(portfolio)``.
    sectors : mapping asset -> sector, DataArray on asset, or coordinate name, optional
        Sector of each asset (every asset needs one when given).
    sector_bounds : mapping sector -> (low, high), optional
        Bounds on each sector's summed weight, shared by all portfolios.
    tol : float, optional
        KKT tolerance (default 1e-9 in float64).
    max_iter : int, default 4000
        Most ADMM iterations per portfolio.
    raise_on_failure : bool, default True
        Raise `SolverError` naming the portfolios that did not converge;
        with False they are returned with ``converged == False``.

    Returns
    -------
    BatchResult

    Raises
    ------
    ValidationError
        Bad values (named with portfolio and asset), e.g. ``lower > upper``.
    AlignmentError
        Inputs whose portfolios or assets differ.
    InfeasibleError
        A portfolio whose bounds cannot sum to 1, sector minimums above 1, or
        current weights farther from the bounds than its turnover allows
        (the portfolio and the conflict are named).
    SolverError
        Some portfolio did not converge (with ``raise_on_failure``).
    """
    import jax.numpy as jnp

    from pmkit.core import batch_qp as core
    from pmkit.core import compute_context

    w0, portfolios, assets = _current(current_weights)
    n_p = w0.shape[0]
    mu_a = _per_portfolio("mu", mu, portfolios, assets, finite=True)
    lo = _per_portfolio("lower", lower, portfolios, assets)
    up = _per_portfolio("upper", upper, portfolios, assets)
    c = _per_portfolio("costs", costs, portfolios, assets, finite=True)
    gamma = _per_scalar("risk_aversion", risk_aversion, portfolios)
    tau = (
        np.full(n_p, np.inf)
        if max_turnover is None
        else _per_scalar("max_turnover", max_turnover, portfolios)
    )
    _check_values(lo, up, c, gamma, tau, portfolios, assets)
    sector_ids, s_lo, s_hi = _sectors(sectors, sector_bounds, current_weights, assets)
    _check_feasible(w0, lo, up, tau, sector_ids, s_lo, s_hi, portfolios)
    # The JAX arrays are built in pmkit's precision: outside it jnp.asarray gives float32.
    with compute_context():
        sigma = _covariance(cov, portfolios, assets)
        problem = core.make_problem(
            jnp.asarray(mu_a), jnp.asarray(w0), lower=jnp.asarray(lo), upper=jnp.asarray(up),
            risk_aversion=jnp.asarray(gamma), costs=jnp.asarray(c),
            max_turnover=jnp.asarray(tau),
            sector_ids=None if sector_ids is None else jnp.asarray(sector_ids),
            sector_lower=-np.inf if s_lo is None else jnp.asarray(s_lo),
            sector_upper=np.inf if s_hi is None else jnp.asarray(s_hi),
        )
        sol = core.solve(
            problem, sigma, tol=tol, max_iter=max_iter, turnover=bool(np.isfinite(tau).any())
        )
    converged = np.asarray(sol.converged)
    if raise_on_failure and not converged.all():
        bad = portfolios[~converged]
        _explain_failures(~converged, w0, lo, up, tau, sector_ids, s_lo, s_hi, portfolios)
        raise SolverError(
            {"batch ADMM+polish": f"{len(bad)} portfolios not converged, e.g. {list(bad[:5])}"},
            "batch mean-variance",
        )
    pcoord = {"portfolio": portfolios}
    per = lambda x, name: xr.DataArray(np.asarray(x), dims=("portfolio",), coords=pcoord, name=name)  # noqa: E731
    return BatchResult(
        weights=xr.DataArray(
            np.asarray(sol.weights), dims=("portfolio", "asset"),
            coords={"portfolio": portfolios, "asset": assets}, name="weight",
        ),
        objective=per(sol.objective, "objective"),
        converged=per(converged, "converged"),
        iterations=per(sol.iterations, "iterations"),
        primal_residual=per(sol.primal_residual, "primal_residual"),
        dual_residual=per(sol.dual_residual, "dual_residual"),
        budget_multiplier=per(sol.budget_multiplier, "budget_multiplier"),
    )


def optimal_objective(problem: Any, cov: Any, tol: float | None = None) -> Any:
    """The optimal objective of every portfolio, differentiable with `jax.grad`.

    A thin alias of `pmkit.core.batch_qp.optimal_objective`: by the envelope
    theorem its gradient with respect to ``mu`` is ``-w*``, with respect to the
    covariance ``(gamma / 2) w* w*'``, found from one solve (no unrolling).

    Parameters
    ----------
    problem : pmkit.core.batch_qp.Problem
        From `pmkit.core.batch_qp.make_problem` (JAX arrays; differentiate
        with respect to its fields).
    cov : pmkit.core.batch_qp.DenseSigma or FactorSigma
    tol : float, optional

    Returns
    -------
    jax.Array
        ``(P,)`` optimal objectives.
    """
    from pmkit.core import batch_qp as core

    return core.optimal_objective(problem, cov, tol)


def _current(w0: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(w0, xr.DataArray) or set(w0.dims) != {"portfolio", "asset"}:
        raise ValidationError(
            "current_weights", getattr(w0, "dims", type(w0).__name__),
            "must be a DataArray on (portfolio, asset)",
        )
    w0 = w0.transpose("portfolio", "asset")
    values = np.asarray(w0.values, dtype=float)
    portfolios = np.asarray(w0["portfolio"].values)
    assets = np.asarray(w0["asset"].values)
    bad = ~np.isfinite(values)
    if bad.any():
        p, i = np.argwhere(bad)[0]
        raise ValidationError(
            f"current_weights[{portfolios[p]}, {assets[i]}]", float(values[p, i]), "must be finite"
        )
    return values, portfolios, assets


def _per_portfolio(
    name: str, value: Any, portfolios: np.ndarray, assets: np.ndarray, finite: bool = False
) -> np.ndarray:
    shape = (len(portfolios), len(assets))
    if isinstance(value, xr.DataArray):
        if "asset" not in value.dims or not set(value.dims) <= {"portfolio", "asset"}:
            raise ValidationError(name, value.dims, "must be on (asset) or (portfolio, asset)")
        _same(name, "asset", value["asset"].values, assets)
        if "portfolio" in value.dims:
            _same(name, "portfolio", value["portfolio"].values, portfolios)
            out = value.transpose("portfolio", "asset").values
        else:
            out = np.broadcast_to(value.values, shape)
    elif np.ndim(value) == 0 and isinstance(value, int | float | np.floating | np.integer):
        out = np.full(shape, float(value))
    else:
        raise ValidationError(name, type(value).__name__, "must be a number or a DataArray")
    out = np.asarray(out, dtype=float)
    if np.isnan(out).any() or (finite and not np.isfinite(out).all()):
        p, i = np.argwhere(~np.isfinite(out) if finite else np.isnan(out))[0]
        raise ValidationError(f"{name}[{portfolios[p]}, {assets[i]}]", float(out[p, i]),
                              "must be finite" if finite else "must not be NaN")
    return out


def _per_scalar(name: str, value: Any, portfolios: np.ndarray) -> np.ndarray:
    if isinstance(value, xr.DataArray):
        if value.dims != ("portfolio",):
            raise ValidationError(name, value.dims, "must be a number or a DataArray on portfolio")
        _same(name, "portfolio", value["portfolio"].values, portfolios)
        return np.asarray(value.values, dtype=float)
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ValidationError(name, value, "must be a number or a DataArray on portfolio")
    return np.full(len(portfolios), float(value))


def _same(name: str, dim: str, found: np.ndarray, expected: np.ndarray) -> None:
    if len(found) != len(expected) or not np.array_equal(np.asarray(found), expected):
        diff = sorted(set(map(str, found)) ^ set(map(str, expected)))[:5]
        raise AlignmentError(f"{name}.{dim}", diff or "order", f"must match current_weights' {dim}")


def _check_values(lo, up, c, gamma, tau, portfolios, assets) -> None:
    bad = np.argwhere(lo > up)
    if bad.size:
        p, i = bad[0]
        raise ValidationError(f"upper[{portfolios[p]}, {assets[i]}]", float(up[p, i]),
                              f"is below lower={lo[p, i]:g}")
    if (c < 0).any():
        p, i = np.argwhere(c < 0)[0]
        raise ValidationError(
            f"costs[{portfolios[p]}, {assets[i]}]", float(c[p, i]), "must be >= 0"
        )
    for name, arr in (("risk_aversion", gamma), ("max_turnover", tau)):
        low = arr <= 0 if name == "risk_aversion" else arr < 0
        if np.isnan(arr).any() or low.any():
            p = int(np.argmax(np.isnan(arr) | low))
            raise ValidationError(f"{name}[{portfolios[p]}]", float(arr[p]),
                                  "must be > 0" if name == "risk_aversion" else "must be >= 0")


def _sectors(sectors, bounds, w0: xr.DataArray, assets: np.ndarray):
    if sectors is None and not bounds:
        return None, None, None
    if sectors is None or not bounds:
        raise ValidationError("sector_bounds", bounds, "sectors and sector_bounds go together")
    if isinstance(sectors, str):
        if sectors not in w0.coords or w0[sectors].dims != ("asset",):
            raise ValidationError(
                "sectors", sectors, "is not a coordinate on current_weights' asset"
            )
        labels = np.asarray(w0[sectors].values, dtype=object)
    elif isinstance(sectors, xr.DataArray):
        _same("sectors", "asset", sectors["asset"].values, assets)
        labels = np.asarray(sectors.values, dtype=object)
    else:
        missing = [a for a in assets.tolist() if a not in sectors]
        if missing:
            raise ValidationError("sectors", missing[:5], "every asset needs a sector")
        labels = np.array([sectors[a] for a in assets.tolist()], dtype=object)
    names = list(dict.fromkeys(labels.tolist()))
    unknown = [s for s in bounds if s not in names]
    if unknown:
        raise ValidationError("sector_bounds", unknown[:5], "no asset is in these sectors")
    ids = np.array([names.index(x) for x in labels.tolist()], dtype=np.int32)
    s_lo = np.full(len(names), -np.inf)
    s_hi = np.full(len(names), np.inf)
    for s, (a, b) in bounds.items():
        k = names.index(s)
        s_lo[k] = -np.inf if a is None else float(a)
        s_hi[k] = np.inf if b is None else float(b)
        if s_lo[k] > s_hi[k]:
            raise ValidationError(f"sector_bounds[{s}]", (a, b), "low is above high")
    return ids, s_lo, s_hi


def _check_feasible(w0, lo, up, tau, ids, s_lo, s_hi, portfolios) -> None:
    lo_sum, up_sum = lo.sum(axis=1), up.sum(axis=1)
    for arr, cmp, text in ((lo_sum, lo_sum > 1 + 1e-12, "asset minimums sum to {:.6g} > budget 1"),
                           (up_sum, up_sum < 1 - 1e-12, "asset maximums sum to {:.6g} < budget 1")):
        if cmp.any():
            p = int(np.argmax(cmp))
            raise InfeasibleError(f"portfolio {portfolios[p]}: " + text.format(arr[p]))
    if ids is not None:
        onehot = np.eye(len(s_lo))[ids]
        g_min = np.maximum(s_lo[None, :], lo @ onehot)
        g_max = np.minimum(s_hi[None, :], up @ onehot)
        for arr, cmp, text in (
            (g_min.sum(1), g_min.sum(1) > 1 + 1e-12, "sector minimums sum to {:.6g} > budget 1"),
            (g_max.sum(1), g_max.sum(1) < 1 - 1e-12, "sector maximums sum to {:.6g} < budget 1"),
        ):
            if cmp.any():
                p = int(np.argmax(cmp))
                raise InfeasibleError(f"portfolio {portfolios[p]}: " + text.format(arr[p]))
    need = np.maximum(lo - w0, 0).sum(1) + np.maximum(w0 - up, 0).sum(1)
    need = np.maximum(need, np.abs(w0.sum(1) - 1))
    over = need > tau + 1e-12
    if over.any():
        p = int(np.argmax(over))
        raise InfeasibleError(
            f"portfolio {portfolios[p]}: moving the current weights into the bounds needs "
            f"turnover {need[p]:.6g} > max_turnover {tau[p]:.6g}"
        )


def _explain_failures(failed, w0, lo, up, tau, ids, s_lo, s_hi, portfolios) -> None:
    """Raise `InfeasibleError` for the first failed portfolio an exact LP proves infeasible.

    The cheap bound analysis before solving is only sufficient; whether bounds,
    sectors and turnover together admit a point is a linear program
    (variables ``w`` and ``t >= |w - w0|``), solved here only for portfolios
    that did not converge.
    """
    from scipy.optimize import linprog

    n = w0.shape[1]
    eye = np.eye(n)
    for p in np.flatnonzero(failed):
        a_ub = [np.hstack([eye, -eye]), np.hstack([-eye, -eye])]
        b_ub = [w0[p], -w0[p]]
        if np.isfinite(tau[p]):
            a_ub.append(np.hstack([np.zeros(n), np.ones(n)])[None, :])
            b_ub.append([tau[p]])
        if ids is not None:
            onehot = np.eye(len(s_lo))[ids].T
            for k in range(len(s_lo)):
                row = np.hstack([onehot[k], np.zeros(n)])[None, :]
                if np.isfinite(s_hi[k]):
                    a_ub.append(row)
                    b_ub.append([s_hi[k]])
                if np.isfinite(s_lo[k]):
                    a_ub.append(-row)
                    b_ub.append([-s_lo[k]])
        bounds = [(lo[p, i], up[p, i]) for i in range(n)] + [(0, None)] * n
        res = linprog(
            np.zeros(2 * n), A_ub=np.vstack(a_ub), b_ub=np.concatenate(b_ub),
            A_eq=np.hstack([np.ones(n), np.zeros(n)])[None, :], b_eq=[1.0], bounds=bounds,
            method="highs",
        )
        if res.status == 2:
            raise InfeasibleError(
                f"portfolio {portfolios[p]}: no weights meet the bounds, sector bounds and "
                f"max_turnover {tau[p]:.6g} together (linear feasibility check)"
            )


def _covariance(cov: Any, portfolios: np.ndarray, assets: np.ndarray) -> Any:
    import jax.numpy as jnp

    from pmkit.core import batch_qp as core

    if isinstance(cov, FactorCovariance):
        b = cov.loadings
        if set(b.dims) != {"asset", "factor"}:
            raise ValidationError("cov.loadings", b.dims, "must be on (asset, factor)")
        _same("cov.loadings", "asset", b["asset"].values, assets)
        f = cov.factor_cov
        if f.dims != ("factor", "factor_j"):
            raise ValidationError("cov.factor_cov", f.dims, "must be on (factor, factor_j)")
        d = _per_portfolio("cov.specific", cov.specific, portfolios, assets, finite=True)
        if (d < 0).any():
            raise ValidationError("cov.specific", float(d.min()), "must be >= 0")
        if "portfolio" not in cov.specific.dims:
            d = d[0]
        return core.FactorSigma(
            jnp.asarray(b.transpose("asset", "factor").values, dtype=float),
            jnp.asarray(f.values, dtype=float), jnp.asarray(d),
        )
    if not isinstance(cov, xr.DataArray):
        raise ValidationError("cov", type(cov).__name__, "must be a DataArray or FactorCovariance")
    if set(cov.dims) == {"asset", "asset_j"}:
        _same("cov", "asset", cov["asset"].values, assets)
        m = cov.transpose("asset", "asset_j").values
    elif set(cov.dims) == {"portfolio", "asset", "asset_j"}:
        _same("cov", "asset", cov["asset"].values, assets)
        _same("cov", "portfolio", cov["portfolio"].values, portfolios)
        m = cov.transpose("portfolio", "asset", "asset_j").values
    else:
        raise ValidationError("cov", cov.dims, "must be on (asset, asset_j) or (portfolio, ...)")
    if not np.isfinite(m).all():
        raise ValidationError("cov", "non-finite entry", "must be finite")
    return core.DenseSigma(jnp.asarray(m, dtype=float))
