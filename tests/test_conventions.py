"""Conventions a user cannot trip over (issue 14, point 5).

- One name per concept: the public signatures of pmkit.risk, pmkit.optimize,
  pmkit.analytics, pmkit.core and pmkit.model use the README glossary's
  names, and the risk functions take their shared arguments in one order.
- Units: `pmkit.optimize.covariance` is annualized like `expected_returns`,
  and optimizers refuse ``mu``/``cov`` whose ``units`` disagree.
- The risk-free rate given to `MaximumSharpe` is the one its result reports.
- Precision: importing pmkit leaves JAX's x64 flag alone; pmkit still
  computes in float64.
- One owner per quantity (portfolio values, covariance repair, risk
  contributions); a second path kept for speed agrees with the owner on
  real data.
- Layers: pmkit.risk does not import pmkit.analytics.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import pkgutil
import subprocess
import sys
import threading
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import pmkit.optimize as po
from pmkit.core import get_precision, precision, set_precision
from pmkit.datasets import load_market
from pmkit.errors import UnitsMismatchError, ValidationError
from pmkit.model import simple_returns

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pmkit.risk", "pmkit.optimize", "pmkit.analytics", "pmkit.core", "pmkit.model")

# ---------------------------------------------------------------- the glossary's rules
#: Parameter names that are synonyms of a glossary name, and the name to use instead.
FORBIDDEN = {
    # confidence levels (factor betas are ``betas``; CAPM outputs are not parameters)
    "beta": "confidence",
    "alpha": "confidence",
    "conf": "confidence",
    "confidence_level": "confidence",
    "level": "confidence",
    "cl": "confidence",
    # a portfolio / group label: named after its xarray dim
    "pid": "portfolio",
    "pids": "portfolios",
    "pf": "portfolio",
    "port": "portfolio",
    "portfolio_id": "portfolio",
    "portfolio_ids": "portfolios",
    "portfolio_name": "portfolio",
    "group_id": "group",
    "group_ids": "groups",
    # how many observations a statistic needs
    "min_obs": "min_observations",
    "min_periods": "min_observations",
    "min_samples": "min_observations",
    # rates and risk
    "rf": "risk_free",
    "risk_free_rate": "risk_free",
    "riskfree": "risk_free",
    "vol": "volatility",
    "target_vol": "target_volatility",
    "asset_vol": "asset_volatility",
    "cov_matrix": "cov",
    "covariance_matrix": "cov",
    "sigma": "cov",
    # data
    "ds": "market (or holdings)",
    "weight": "weights, or flow_weight for a Modified Dietz flow weight",
}

#: The shared arguments of the risk functions, in their one order.
RISK_ORDER = ("weights", "returns", "confidence", "horizon", "method")
#: Modules whose functions follow `RISK_ORDER`.
RISK_MODULES = ("pmkit.risk.measures", "pmkit.core.risk")


def _modules(packages: tuple[str, ...]) -> list[types.ModuleType]:
    found = []
    for name in packages:
        pkg = importlib.import_module(name)
        found.append(pkg)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_"):
                found.append(importlib.import_module(f"{name}.{info.name}"))
    return found


def public_callables(modules: list[types.ModuleType]) -> dict[str, object]:
    """Every callable in the modules' ``__all__``, and the public methods of classes there."""
    out: dict[str, object] = {}
    for mod in modules:
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isclass(obj):
                out[f"{mod.__name__}.{name}"] = obj
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not callable(member) or inspect.isclass(member):
                        continue
                    out[f"{mod.__name__}.{name}.{attr}"] = member
            elif callable(obj):
                out[f"{mod.__name__}.{name}"] = obj
    return out


def _signature(obj: object) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def synonym_violations(callables: dict[str, object]) -> list[str]:
    """``"qualname: param -> name to use"`` for every forbidden parameter name."""
    found = []
    for qualname, obj in callables.items():
        sig = _signature(obj)
        for param in sig.parameters if sig else ():
            if param in FORBIDDEN:
                found.append(f"{qualname}: {param} -> {FORBIDDEN[param]}")
    return found


def order_violations(callables: dict[str, object]) -> list[str]:
    """Risk functions with shared arguments out of `RISK_ORDER`, or a positional ``measure``."""
    found = []
    for qualname, obj in callables.items():
        sig = _signature(obj)
        if sig is None:
            continue
        params = sig.parameters
        shared = [p for p in params if p in RISK_ORDER]
        if len(shared) >= 2 and shared != [p for p in RISK_ORDER if p in shared]:
            found.append(f"{qualname}: {shared} not in the order {RISK_ORDER}")
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if "measure" in params and params["measure"].kind in positional:
            found.append(f"{qualname}: measure must be keyword-only")
    return found


@pytest.fixture(scope="module")
def callables() -> dict[str, object]:
    return public_callables(_modules(PACKAGES))


def test_public_signatures_use_the_glossary_names(callables):
    assert len(callables) > 300  # the scan sees the whole public surface, not an empty list
    assert synonym_violations(callables) == []


def test_risk_functions_share_one_argument_order(callables):
    risk = {k: v for k, v in callables.items() if k.startswith(RISK_MODULES)}
    assert {"pmkit.risk.measures.var", "pmkit.risk.measures.risk_contributions",
            "pmkit.core.risk.tail_risk", "pmkit.core.risk.risk_contributions"} <= set(risk)
    assert order_violations(risk) == []
    var, rc = (inspect.signature(risk[f"pmkit.risk.measures.{n}"])
               for n in ("var", "risk_contributions"))
    assert list(var.parameters)[:5] == list(rc.parameters)[:5] == list(RISK_ORDER)


def test_the_convention_checks_can_fail():
    """Probe: functions written the old ways are caught by both checks."""

    def old_cvar(weights, returns, beta=0.95, pid=None):
        """A confidence named beta, a portfolio named pid."""

    def old_contributions(weights, returns, measure="var", method="historical", confidence=0.95,
                          horizon=1):
        """Measure positional, method before confidence and horizon."""

    probe = {"probe.old_cvar": old_cvar, "probe.old_contributions": old_contributions}
    assert synonym_violations(probe) == [
        "probe.old_cvar: beta -> confidence", "probe.old_cvar: pid -> portfolio"
    ]
    found = order_violations(probe)
    assert len(found) == 2 and all("old_contributions" in f for f in found)


def test_glossary_in_readme_lists_every_rule():
    text = (ROOT / "README.md").read_text()
    start = text.index("## Glossary: one name per concept")
    glossary = text[start:text.index("\n## ", start + 1)]
    for name in ("portfolio", "confidence", "min_observations", "risk_free", "flow_weight",
                 "variance_contributions", "risk_contributions", "tests/test_conventions.py",
                 "portfolio_id", "units"):
        assert f"`{name}`" in glossary, name
    assert " → ".join(RISK_ORDER) in " ".join(glossary.replace("`", "").split())


# ---------------------------------------------------------------- units
@pytest.fixture(scope="module")
def stocks() -> xr.DataArray:
    """Daily returns of four real stocks whose maximum-Sharpe portfolio is interior."""
    market = load_market(start="2015-01-01")
    return simple_returns(market).sel(asset=["JNJ", "KO", "MSFT", "WMT"]).dropna("time")


def _tangency(mu: np.ndarray, cov: np.ndarray, rf: float) -> tuple[np.ndarray, float]:
    """Closed form: ``w ∝ cov^-1 (mu - rf)``, Sharpe ``sqrt((mu-rf)' cov^-1 (mu-rf))``."""
    z = np.linalg.solve(cov, mu - rf)
    return z / z.sum(), float(np.sqrt((mu - rf) @ z))


def test_covariance_is_annualized_like_expected_returns(stocks):
    cov, mu = po.covariance(stocks), po.expected_returns(stocks)
    x = stocks.values.T
    np.testing.assert_allclose(cov.values, np.cov(x, rowvar=False) * 252, rtol=1e-12)
    np.testing.assert_allclose(mu.values, x.mean(axis=0) * 252, rtol=1e-12)
    assert cov.attrs["units"] == "fraction**2 per year" and mu.attrs["units"] == "fraction per year"
    assert cov.attrs["periods_per_year"] == mu.attrs["periods_per_year"] == 252
    daily = po.covariance(stocks, annualize=False)
    assert daily.attrs["units"] == "fraction**2 per period"
    np.testing.assert_allclose(daily.values * 252, cov.values, rtol=1e-15)


def test_mixing_per_period_cov_with_annual_mu_is_refused(stocks):
    mu = po.expected_returns(stocks)
    daily = po.covariance(stocks, annualize=False)
    with pytest.raises(UnitsMismatchError) as err:
        po.MaximumSharpe().fit(mu=mu, cov=daily)
    assert isinstance(err.value, ValidationError)
    assert err.value.field == "cov" and err.value.value == "fraction**2 per period"
    assert "mu" in err.value.reason and "'fraction per year'" in err.value.reason
    # the reverse: per-period mu with an annual cov
    mu_daily = (mu / 252).assign_attrs(units="fraction per period")
    with pytest.raises(UnitsMismatchError, match=r"fraction per period.*per year"):
        po.MaximumSharpe().fit(mu=mu_daily, cov=po.covariance(stocks))
    # a per-period cov next to a mu the optimizer estimates (annual) is refused too
    with pytest.raises(UnitsMismatchError, match="cov"):
        po.MaximumSharpe().fit(stocks, cov=daily)
    # without units attrs nothing can be checked: taken as annual, as documented
    unlabelled = daily.copy()
    unlabelled.attrs = {}
    assert po.MaximumSharpe().fit(mu=mu, cov=unlabelled).status == "optimal"


def _optimizers() -> list[po.Optimizer]:
    needs = {
        po.TargetReturn: {"target_return": 0.1},
        po.TargetRisk: {"target_volatility": 0.2},
        po.RiskBudgeting: {"budgets": {"JNJ": 0.4, "KO": 0.2, "MSFT": 0.2, "WMT": 0.2}},
        po.Mixed: {"components": [(po.MinimumVariance(), 0.5), (po.MaximumSharpe(), 0.5)]},
    }
    classes = [c for c in vars(po).values()
               if isinstance(c, type) and issubclass(c, po.Optimizer) and c is not po.Optimizer]
    assert len(classes) >= 14  # every optimizer exported today
    return [c(**needs.get(c, {})) for c in classes]


@pytest.mark.parametrize("optimizer", _optimizers(), ids=lambda o: type(o).__name__)
def test_every_optimizer_refuses_disagreeing_units(stocks, optimizer):
    mu = po.expected_returns(stocks)
    daily = po.covariance(stocks, annualize=False)
    with pytest.raises(UnitsMismatchError):
        optimizer.fit(stocks, mu=mu, cov=daily)


def test_frontier_refuses_disagreeing_units(stocks):
    with pytest.raises(UnitsMismatchError):
        po.efficient_frontier(mu=po.expected_returns(stocks),
                              cov=po.covariance(stocks, annualize=False))


def test_consistent_inputs_give_the_closed_form_sharpe(stocks):
    mu, cov = po.expected_returns(stocks), po.covariance(stocks)
    w_ref, sharpe_ref = _tangency(mu.values, cov.values, 0.0)
    assert (w_ref > 0).all()  # interior: the long-only optimum is the closed form
    res = po.MaximumSharpe().fit(mu=mu, cov=cov)
    np.testing.assert_allclose(res.weights.values, w_ref, atol=1e-8)
    assert res.sharpe() == pytest.approx(sharpe_ref, rel=1e-10)
    # what mixing used to give silently: the same weights' Sharpe on a per-period cov
    # is sqrt(252) times too high
    vol_daily = np.sqrt(w_ref @ (cov.values / 252) @ w_ref)
    assert (mu.values @ w_ref) / vol_daily == pytest.approx(sharpe_ref * np.sqrt(252), rel=1e-12)


def test_black_litterman_results_carry_the_units_of_their_cov(stocks):
    cov = po.covariance(stocks)
    bl = po.BlackLitterman({"JNJ": 1.0, "KO": 1.0, "MSFT": 1.0, "WMT": 1.0},
                           views=[po.View.absolute("MSFT", 0.12)]).fit(cov)
    assert bl.mu.attrs["units"] == "fraction per year"
    assert bl.cov.attrs["units"] == "fraction**2 per year"
    assert po.MaximumSharpe().fit(mu=bl.mu, cov=bl.cov).status == "optimal"
    daily = po.BlackLitterman({"JNJ": 1.0, "KO": 1.0, "MSFT": 1.0, "WMT": 1.0}).fit(
        po.covariance(stocks, annualize=False))
    assert daily.mu.attrs["units"] == "fraction per period"
    with pytest.raises(UnitsMismatchError):
        po.MaximumSharpe().fit(mu=daily.mu, cov=cov)


# ---------------------------------------------------------------- the risk-free rate
def test_max_sharpe_reports_the_rate_it_maximized_with(stocks):
    rf = 0.01  # a rate at which the tangency portfolio is long-only (interior)
    mu, cov = po.expected_returns(stocks), po.covariance(stocks)
    w_ref, sharpe_ref = _tangency(mu.values, cov.values, rf)
    assert (w_ref > 0).all()
    res = po.MaximumSharpe(risk_free=rf).fit(mu=mu, cov=cov)
    np.testing.assert_allclose(res.weights.values, w_ref, atol=1e-8)
    # by hand from the weights: annual excess return over annual volatility
    by_hand = (mu.values @ w_ref - rf) / np.sqrt(w_ref @ cov.values @ w_ref)
    assert by_hand == pytest.approx(sharpe_ref, rel=1e-12)
    assert res.risk_free == rf
    assert res.sharpe() == pytest.approx(by_hand, rel=1e-10)
    assert res.objective == pytest.approx(by_hand, rel=1e-10)
    summary = res.summary()
    assert summary["risk_free"] == rf and summary["sharpe"] == pytest.approx(by_hand, rel=1e-10)
    # another rate can still be asked for explicitly
    zero = (mu.values @ res.weights.values) / res.volatility
    assert res.sharpe(0.0) == pytest.approx(zero, rel=1e-12) and zero > res.sharpe()


# ---------------------------------------------------------------- precision
_PROBE = """
import json, jax, numpy as np
import pmkit, pmkit.core, pmkit.risk, pmkit.optimize, pmkit.analytics, pmkit.model
from pmkit.datasets import load_market
from pmkit.model import simple_returns
from pmkit.risk import volatility
from pmkit.core import valuation
before = bool(jax.config.jax_enable_x64)
r = simple_returns(load_market(start="2018-01-01")).isel(asset=slice(0, 6)).dropna("time")
w = np.full(6, 1 / 6)
vol = volatility(w, r)
q, p = np.arange(12.0).reshape(2, 6) / 7, r.values.T[:5] + 1
nav = valuation.revalue(q, p)
print(json.dumps({
    "x64_after_import": before,
    "x64_after_compute": bool(jax.config.jax_enable_x64),
    "jax_default": str(jax.numpy.ones(2).dtype),
    "vol_dtype": str(vol.dtype), "vol": float(vol),
    "vol_ref": float(np.std(r.values.T @ w, ddof=1)),
    "nav_dtype": str(nav.dtype), "nav_err": float(np.abs(np.asarray(nav) - q @ p.T).max()),
}))
"""


def test_importing_pmkit_leaves_jax_x64_alone_and_pmkit_computes_in_float64():
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["x64_after_import"] is False and got["x64_after_compute"] is False
    assert got["jax_default"] == "float32"  # the rest of the process keeps JAX's default
    assert got["vol_dtype"] == "float64" and got["nav_dtype"] == "float64"
    assert got["vol"] == pytest.approx(got["vol_ref"], rel=1e-14)
    assert got["nav_err"] < 1e-12


def test_precision_block_and_setting():
    from pmkit.core import valuation

    q, p = np.ones((2, 3)) / 3, np.linspace(1, 2, 12).reshape(4, 3)
    assert get_precision() == "float64"
    with precision("float32"):
        assert get_precision() == "float32"
        assert valuation.revalue(q, p).dtype == np.float32
        with precision("float64"):  # the innermost block wins
            assert valuation.revalue(q, p).dtype == np.float64
    assert valuation.revalue(q, p).dtype == np.float64
    try:
        set_precision("float32")
        assert valuation.revalue(q, p).dtype == np.float32
    finally:
        set_precision("float64")
    assert get_precision() == "float64"
    with pytest.raises(ValidationError, match="precision"):
        set_precision("float16")
    with pytest.raises(ValidationError, match="precision"), precision("bfloat16"):
        pass


def test_precision_block_is_per_thread():
    from pmkit.core import valuation

    q, p = np.ones((2, 3)) / 3, np.linspace(1, 2, 12).reshape(4, 3)
    inside, outside = threading.Barrier(2), {}

    def other_thread() -> None:
        inside.wait()  # while the main thread is inside its float32 block
        outside["dtype"] = valuation.revalue(q, p).dtype
        inside.wait()

    t = threading.Thread(target=other_thread)
    t.start()
    with precision("float32"):
        inside.wait()
        inside.wait()
        mine = valuation.revalue(q, p).dtype
    t.join()
    assert mine == np.float32 and outside["dtype"] == np.float64


def test_each_precision_compiles_once_not_once_per_call():
    from pmkit.core import returns as cr

    v = np.random.default_rng(3).uniform(1, 2, (3, 17))  # a shape no other test uses
    before = cr.irr_batch._cache_size()
    for _ in range(3):
        cr.irr_batch(v, np.arange(17.0))
        with precision("float32"):
            cr.irr_batch(v, np.arange(17.0))
    assert cr.irr_batch._cache_size() == before + 2


# ---------------------------------------------------------------- one owner per quantity
@pytest.fixture(scope="module")
def panel() -> xr.DataArray:
    """Daily returns of every real asset since 2015, ragged (ETFs list in 2014)."""
    return simple_returns(load_market(start="2015-01-01")).isel(time=slice(1, None))


def test_variance_and_risk_contributions_sum_to_their_totals(stocks):
    res = po.MinimumVariance().fit(stocks)
    var_c, risk_c = res.variance_contributions(), res.risk_contributions()
    assert float(var_c.sum()) == pytest.approx(res.volatility**2, rel=1e-13)
    assert float(risk_c.sum()) == pytest.approx(res.volatility, rel=1e-13)
    np.testing.assert_allclose(res.variance_contributions(relative=True).sum(), 1.0, rtol=1e-14)
    np.testing.assert_allclose(res.variance_contributions(relative=True),
                               res.risk_contributions(relative=True), rtol=1e-14)
    assert var_c.attrs["units"] == "fraction**2 per year"
    assert risk_c.attrs["units"] == "fraction per year"


def test_labelled_variance_and_risk_contributions_sum_to_their_totals(panel):
    from pmkit import risk

    returns = panel.sel(asset=["AAPL", "JPM", "XOM", "KO", "MTUM", "USMV"]).dropna("time")
    w = xr.DataArray(np.random.default_rng(5).dirichlet(np.ones(6), 3),
                     dims=("portfolio", "asset"),
                     coords={"portfolio": ["a", "b", "c"], "asset": returns["asset"].values})
    vol = risk.volatility(w, returns)
    rc = risk.risk_contributions(w, returns)
    vc = risk.variance_contributions(w, returns)
    np.testing.assert_allclose(rc["component"].sum("asset"), vol, rtol=1e-13)
    np.testing.assert_allclose(vc["total"], vol**2, rtol=1e-13)
    np.testing.assert_allclose(vc["component"].sum("asset"), vol**2, rtol=1e-13)
    # the covariance path (optimize's numpy twin, per period) agrees with the scenario path
    from pmkit.optimize._risk_budget import variance_contributions as numpy_vc

    cov = po.covariance(returns, annualize=False).values
    for p in range(3):
        wp = w.isel(portfolio=p).values
        np.testing.assert_allclose(numpy_vc(wp, cov), vc["component"].isel(portfolio=p),
                                   rtol=1e-10, atol=1e-16)


def test_numpy_variance_contributions_agree_with_the_core_owner(panel):
    from pmkit.core.risk_budget import variance_contributions as core_vc
    from pmkit.optimize._risk_budget import variance_contributions as numpy_vc

    cov = po.covariance(panel).values  # pairwise over ragged histories, real data
    weights = np.random.default_rng(7).normal(size=(6, cov.shape[0]))  # long/short
    got = np.asarray(core_vc(weights, cov))
    assert got.dtype == np.float64
    for k, w in enumerate(weights):
        np.testing.assert_allclose(got[k], numpy_vc(w, cov), rtol=1e-12, atol=1e-18)
        np.testing.assert_allclose(np.asarray(core_vc(w, cov, relative=True)),
                                   numpy_vc(w, cov, relative=True), rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(got.sum(axis=1), np.einsum("ki,ij,kj->k", weights, cov, weights),
                               rtol=1e-12)


def test_portfolio_values_two_paths_agree_on_real_data():
    """`pmkit.model.portfolio_values` (the owner) and the FX-aware analytics path (core)."""
    from pmkit.analytics import portfolio_values as fx_aware
    from pmkit.model import holdings_dataset
    from pmkit.model import portfolio_values as owner

    market = load_market(start="2013-06-01", end="2015-06-30")  # ETFs list in 2014
    listed = ~np.isnan(market["close"].values)  # (asset, time)
    rng = np.random.default_rng(11)
    q = rng.integers(0, 50, (4, market.sizes["asset"], market.sizes["time"])) * listed[None]
    coords = {"portfolio": ["p0", "p1", "p2", "p3"], "asset": market["asset"].values,
              "time": market["time"].values}
    quantity = xr.DataArray(q.astype(float), dims=("portfolio", "asset", "time"), coords=coords)
    cash = xr.DataArray(rng.uniform(0, 1e4, (4, market.sizes["time"])),
                        dims=("portfolio", "time"),
                        coords={"portfolio": coords["portfolio"], "time": coords["time"]})
    holdings = holdings_dataset(quantity, cash)
    a, b = owner(holdings, market), fx_aware(holdings, market)
    ref = np.einsum("pat,at->pt", q, np.nan_to_num(market["close"].values)) + cash.values
    np.testing.assert_allclose(a.values, ref, rtol=1e-14)
    np.testing.assert_allclose(b.values, a.values, rtol=1e-14)


def test_both_covariance_repairs_go_through_the_one_owner(panel):
    """Pairwise covariance of ragged real histories is indefinite; both repairs fix it."""
    from pmkit.core.covariance import nearest_psd
    from pmkit.optimize._inputs import condition_covariance
    from pmkit.risk import CovarianceRepairWarning, covariance_matrix

    window = panel.isel(time=slice(0, 40)).copy()
    values = window.values.copy()
    values[::3, :20] = np.nan  # a third of the assets list half-way through the window
    ragged = window.copy(data=values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CovarianceRepairWarning)
        raw = covariance_matrix(ragged, repair=False).values
    eig = np.linalg.eigvalsh(raw)
    assert eig[0] < 0 < eig[-1]  # really indefinite
    with pytest.warns(CovarianceRepairWarning):
        kept = covariance_matrix(ragged).values
    np.testing.assert_allclose(kept, np.asarray(nearest_psd(raw)), rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(np.diag(kept), np.diag(raw), rtol=1e-12)  # variances kept
    assert np.linalg.eigvalsh(kept)[0] > 0
    with pytest.warns(CovarianceRepairWarning, match="condition number now"):
        fixed, chol, info = condition_covariance(raw, max_condition=1e6)
    eig_fixed = np.linalg.eigvalsh(fixed)
    assert info["repaired"] and eig_fixed[0] > 0
    assert eig_fixed[-1] / eig_fixed[0] <= 1e6 * (1 + 1e-8)  # condition number bounded
    np.testing.assert_allclose(chol @ chol.T, fixed, rtol=1e-10, atol=1e-18)


# ---------------------------------------------------------------- layers
def _imports(package_dir: Path) -> set[str]:
    """Every module named by an import anywhere in the package (function bodies too)."""
    names: set[str] = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_risk_does_not_import_analytics():
    found = sorted(n for n in _imports(ROOT / "pmkit" / "risk") if n.startswith("pmkit.analytics"))
    assert found == []
    assert "pmkit.model._apply" in _imports(ROOT / "pmkit" / "risk")  # the helper moved down


def test_core_and_model_import_nothing_above_them():
    core = {n for n in _imports(ROOT / "pmkit" / "core") if n.startswith("pmkit.")}
    assert all(n.startswith(("pmkit.core", "pmkit.errors")) for n in core), core
    above = ("pmkit.analytics", "pmkit.risk", "pmkit.optimize", "pmkit.registry",
             "pmkit.strategies", "pmkit.compat")
    model = _imports(ROOT / "pmkit" / "model")
    assert not [n for n in model if n.startswith(above)]


def test_compat_names_are_the_note_objects():
    import pmkit.compat as compat
    from pmkit.coordinator import StrategyCoordinator
    from pmkit.strategies import PortfolioManager, RealTimePerformanceMonitor, RiskManager

    assert compat.PortfolioManager is PortfolioManager
    assert compat.RiskManager is RiskManager
    assert compat.RealTimePerformanceMonitor is RealTimePerformanceMonitor
    assert compat.StrategyCoordinator is StrategyCoordinator
    for name in compat.__all__:
        if name != "DESIGN_NOTE_NAMES":
            assert name in compat.DESIGN_NOTE_NAMES
    # nothing in pmkit imports compat: it sits above the services
    users = [p for p in (ROOT / "pmkit").rglob("*.py")
             if p.name != "compat.py" and "pmkit.compat" in _imports_of(p)]
    assert users == []


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names} | {
        node.module for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module}


def test_labelled_results_stay_right_when_optimizers_run_in_threads(panel):
    """The optimizers' label-template cache is shared by threads: each result keeps its labels."""
    complete = panel.dropna("time")
    assets = complete["asset"].values
    subsets = [list(assets[k : k + 4]) for k in range(20)]  # more label sets than the cache holds
    errors, wrong = [], []

    def fit(subset: list[str]) -> None:
        try:
            for _ in range(3):
                res = po.MinimumVariance().fit(complete.sel(asset=subset))
                if list(res.weights["asset"].values) != subset or (
                    list(res.cov["asset_j"].values) != subset
                ):
                    wrong.append(subset)
        except Exception as exc:  # any failure in a thread fails the test
            errors.append(exc)

    threads = [threading.Thread(target=fit, args=(s,)) for s in subsets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and wrong == []
