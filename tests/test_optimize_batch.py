"""pmkit.optimize.batch against cvxpy + CLARABEL, closed forms and the envelope theorem."""

from __future__ import annotations

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmkit.core import batch_qp as core
from pmkit.errors import AlignmentError, InfeasibleError, ValidationError
from pmkit.optimize.batch import FactorCovariance, optimal_objective, optimize_batch

P, N, K = 6, 24, 3
SECTORS = np.array(["a", "b", "c", "d"])[np.arange(N) % 4]
ASSETS = [f"S{i:02d}" for i in range(N)]
PORTFOLIOS = [f"client{p}" for p in range(P)]


def _case(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    b = rng.normal(0.0, 0.12, (N, K))
    f = np.diag(rng.uniform(0.02, 0.06, K))
    d = rng.uniform(0.01, 0.06, N)
    w0 = rng.dirichlet(np.ones(N), P)
    return {
        "b": b, "f": f, "d": d, "cov": b @ f @ b.T + np.diag(d),
        "mu": rng.normal(0.06, 0.04, (P, N)), "w0": w0,
        "lower": np.zeros((P, N)), "upper": rng.uniform(0.08, 0.3, (P, N)),
        "gamma": rng.uniform(1.0, 6.0, P), "costs": rng.uniform(0.0, 0.004, (P, N)),
        "tau": rng.uniform(0.4, 1.2, P),
    }


def _da(x, dims):
    coords = {"portfolio": PORTFOLIOS, "asset": ASSETS, "asset_j": ASSETS}
    return xr.DataArray(x, dims=dims, coords={k: coords[k] for k in dims})


def _clarabel(
    c: dict, p: int, sector_bounds=None, turnover=True, costs=True
) -> tuple[float, np.ndarray]:
    w = cp.Variable(N)
    obj = 0.5 * c["gamma"][p] * cp.quad_form(w, c["cov"]) - c["mu"][p] @ w
    if costs:
        obj = obj + c["costs"][p] @ cp.abs(w - c["w0"][p])
    cons = [cp.sum(w) == 1, w >= c["lower"][p], w <= c["upper"][p]]
    if turnover:
        cons.append(cp.norm1(w - c["w0"][p]) <= c["tau"][p])
    for s, (lo, hi) in (sector_bounds or {}).items():
        mask = (s == SECTORS).astype(float)
        cons += [mask @ w >= lo, mask @ w <= hi]
    prob = cp.Problem(cp.Minimize(obj), cons)
    prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    return float(prob.value), np.asarray(w.value)


def _check(res, c, sector_bounds, turnover=True) -> None:
    w = res.weights.values
    assert np.abs(w.sum(axis=1) - 1).max() <= 1e-7
    assert (w >= c["lower"] - 1e-7).all() and (w <= c["upper"] + 1e-7).all()
    if turnover:
        assert (np.abs(w - c["w0"]).sum(axis=1) <= c["tau"] + 1e-7).all()
    for s, (lo, hi) in (sector_bounds or {}).items():
        tot = w[:, s == SECTORS].sum(axis=1)
        assert (tot >= lo - 1e-7).all() and (tot <= hi + 1e-7).all()


@pytest.mark.parametrize("kind", ["shared dense", "per-portfolio dense", "factor"])
@pytest.mark.parametrize("seed", [1, 2])
def test_matches_clarabel_on_every_portfolio(kind, seed):
    c = _case(seed)
    bounds = {"a": (0.15, 0.4), "c": (0.0, 0.3)}
    if kind == "shared dense":
        cov = _da(c["cov"], ("asset", "asset_j"))
    elif kind == "per-portfolio dense":
        scale = np.linspace(0.8, 1.2, P)
        c["cov_p"] = c["cov"][None] * scale[:, None, None]
        cov = _da(c["cov_p"], ("portfolio", "asset", "asset_j"))
    else:
        cov = FactorCovariance(
            xr.DataArray(c["b"], dims=("asset", "factor"), coords={"asset": ASSETS}),
            xr.DataArray(c["f"], dims=("factor", "factor_j")),
            xr.DataArray(c["d"], dims=("asset",), coords={"asset": ASSETS}),
        )
    res = optimize_batch(
        _da(c["mu"], ("portfolio", "asset")), cov,
        current_weights=_da(c["w0"], ("portfolio", "asset")),
        upper=_da(c["upper"], ("portfolio", "asset")),
        risk_aversion=xr.DataArray(
            c["gamma"], dims=("portfolio",), coords={"portfolio": PORTFOLIOS}
        ),
        costs=_da(c["costs"], ("portfolio", "asset")),
        max_turnover=xr.DataArray(c["tau"], dims=("portfolio",), coords={"portfolio": PORTFOLIOS}),
        sectors=dict(zip(ASSETS, SECTORS, strict=True)), sector_bounds=bounds,
    )
    assert bool(res.converged.all())
    _check(res, c, bounds)
    for p in range(P):
        c_p = {**c, "cov": c["cov_p"][p]} if kind == "per-portfolio dense" else c
        ref, _ = _clarabel(c_p, p, bounds)
        got = float(res.objective[p])
        assert abs(got - ref) <= 1e-6 * max(abs(ref), 1e-3)
        assert got <= ref + 1e-9 * max(abs(ref), 1.0)


def test_budget_only_is_the_closed_form():
    c = _case(3)
    inv = np.linalg.inv(c["cov"])
    ones = np.ones(N)
    res = optimize_batch(
        _da(c["mu"], ("portfolio", "asset")), _da(c["cov"], ("asset", "asset_j")),
        current_weights=_da(c["w0"], ("portfolio", "asset")), lower=-10.0, upper=10.0,
        risk_aversion=2.0,
    )
    for p in range(P):
        lam = (1 - ones @ inv @ c["mu"][p] / 2.0) / (ones @ inv @ ones / 2.0)
        expected = inv @ (c["mu"][p] + lam * ones) / 2.0
        np.testing.assert_allclose(res.weights.values[p], expected, atol=1e-8)


def test_gradient_of_the_optimal_objective_is_minus_the_weights():
    c = _case(4)
    sigma = core.DenseSigma(jnp.asarray(c["cov"]))

    def total(mu):
        pr = core.make_problem(mu, jnp.asarray(c["w0"]), upper=jnp.asarray(c["upper"]),
                               risk_aversion=3.0, costs=0.001)
        return optimal_objective(pr, sigma).sum()

    mu = jnp.asarray(c["mu"])
    grad = np.asarray(jax.grad(total)(mu))
    pr = core.make_problem(mu, jnp.asarray(c["w0"]), upper=jnp.asarray(c["upper"]),
                           risk_aversion=3.0, costs=0.001)
    w = np.asarray(core.solve(pr, sigma).weights)
    np.testing.assert_allclose(grad, -w, atol=1e-9)
    # Finite differences of independent CLARABEL solves agree.
    c3 = {**c, "gamma": np.full(P, 3.0), "costs": np.full((P, N), 0.001)}
    h = 1e-5
    for i in (0, 5):
        up = {**c3, "mu": c3["mu"].copy()}
        dn = {**c3, "mu": c3["mu"].copy()}
        up["mu"][0, i] += h
        dn["mu"][0, i] -= h
        fd = (_clarabel(up, 0, turnover=False)[0] - _clarabel(dn, 0, turnover=False)[0]) / (2 * h)
        assert grad[0, i] == pytest.approx(fd, abs=1e-5)


def test_bad_inputs_are_typed_named_and_infeasible_portfolios_named():
    c = _case(5)
    mu = _da(c["mu"], ("portfolio", "asset"))
    cov = _da(c["cov"], ("asset", "asset_j"))
    w0 = _da(c["w0"], ("portfolio", "asset"))
    bad_upper = c["upper"].copy()
    bad_upper[2, 3] = -0.5
    with pytest.raises(ValidationError, match=r"upper\[client2, S03\]"):
        optimize_batch(mu, cov, current_weights=w0, upper=_da(bad_upper, ("portfolio", "asset")))
    with pytest.raises(InfeasibleError, match=r"portfolio client0: asset maximums sum to 0.48"):
        optimize_batch(mu, cov, current_weights=w0, upper=0.02)
    sectors = dict(zip(ASSETS, SECTORS, strict=True))
    with pytest.raises(InfeasibleError, match=r"sector minimums sum to 1.2"):
        optimize_batch(mu, cov, current_weights=w0, sectors=sectors,
                       sector_bounds={"a": (0.6, None), "b": (0.6, None)})
    concentrated = np.zeros((P, N))
    concentrated[:, 0] = 1.0
    with pytest.raises(InfeasibleError, match=r"turnover 0.9 > max_turnover 0.5"):
        optimize_batch(mu, cov, current_weights=_da(concentrated, ("portfolio", "asset")),
                       upper=0.1, max_turnover=0.5)
    smaller = cov.isel(asset=slice(1, None), asset_j=slice(1, None))
    with pytest.raises(AlignmentError, match=r"cov.asset"):
        optimize_batch(mu, smaller, current_weights=w0)
    with pytest.raises(ValidationError, match=r"risk_aversion"):
        optimize_batch(mu, cov, current_weights=w0, risk_aversion=-1.0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    cap=st.floats(0.06, 0.5),
    tau=st.floats(0.2, 2.0),
    sector_floor=st.floats(0.0, 0.24),
)
def test_every_batch_weight_vector_satisfies_every_constraint(seed, cap, tau, sector_floor):
    c = _case(seed)
    c["upper"] = np.full((P, N), cap)
    c["tau"] = np.full(P, tau)
    bounds = {"a": (sector_floor, 0.6)}
    args = dict(
        current_weights=_da(c["w0"], ("portfolio", "asset")), upper=cap, max_turnover=tau,
        costs=0.002, risk_aversion=3.0, sectors=dict(zip(ASSETS, SECTORS, strict=True)),
        sector_bounds=bounds,
    )
    try:
        res = optimize_batch(_da(c["mu"], ("portfolio", "asset")),
                             _da(c["cov"], ("asset", "asset_j")), **args)
    except InfeasibleError:
        return
    _check(res, c, bounds)


def test_float32_runs_with_looser_tolerance():
    c = _case(6)
    pr = core.make_problem(jnp.asarray(c["mu"], jnp.float32), jnp.asarray(c["w0"], jnp.float32),
                           upper=jnp.asarray(c["upper"], jnp.float32), risk_aversion=2.0)
    sol = core.solve(pr, core.DenseSigma(jnp.asarray(c["cov"], jnp.float32)))
    assert sol.weights.dtype == jnp.float32
    w = np.asarray(sol.weights, dtype=float)
    assert np.abs(w.sum(axis=1) - 1).max() <= 1e-4 and (w >= -1e-4).all()
    c64 = {**c, "gamma": np.full(P, 2.0)}
    ref, _ = _clarabel(c64, 0, turnover=False, costs=False)
    assert float(sol.objective[0]) == pytest.approx(ref, abs=1e-4)
