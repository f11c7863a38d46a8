"""Labelled VaR, Expected Shortfall, volatility and Euler risk contributions.

Inputs are ``weights(portfolio, asset)`` (fractions of portfolio value; a 1-D
``weights(asset)`` is one unnamed portfolio, and a numpy array or sequence is
read in the order of ``returns.asset``: see `pmkit.risk._weights`) and
``returns(asset, time)`` (asset simple returns per period as fractions, NaN
before listing). Every
portfolio is computed at once by one jitted call of `pmkit.core.risk`; dask-
backed weights chunked over ``portfolio`` give dask-backed results (the data
checks below compute the weights' nonzero pattern and per-portfolio counts
eagerly; the measures themselves stay lazy).

**Losses are positive**: VaR 0.03 = a 3 % loss of portfolio value over the
horizon. Definitions, horizon scaling (overlapping ``h``-period sums for
historical, sqrt-of-time for parametric and Monte Carlo) and the exact Euler
methods are documented in `pmkit.core.risk`.

Missing data (the policy of `pmkit.model._missing`, shared with
`pmkit.analytics.performance.performance_table`): leading NaN of an asset
mean "not listed yet", and each portfolio uses only the times where every
asset it holds (nonzero weight) is observed; a NaN in a held asset *after*
its first return is a gap and raises `ValidationError` naming the asset and
the time. Fewer than ``min_observations`` (default `MIN_OBSERVATIONS` = 30)
usable times raise `InsufficientDataError` naming the portfolio. Nothing is
zero-filled. Returns may have more assets than the
weights (they are ignored); weights naming an asset the returns lack raise
`AlignmentError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from numbers import Real
from typing import Any, Literal

import numpy as np
import xarray as xr

from pmkit.core import risk as _core
from pmkit.core.risk import monte_carlo_scenarios
from pmkit.errors import AlignmentError, InsufficientDataError, ValidationError
from pmkit.model._apply import apply_core
from pmkit.model._missing import refuse_gaps
from pmkit.risk._weights import as_weights, squeeze
from pmkit.risk.covariance import COV_METHODS, _check_unique, _returns_array, covariance_matrix

__all__ = [
    "METHODS",
    "MIN_OBSERVATIONS",
    "CornishFisherDomainWarning",
    "expected_shortfall",
    "risk_contributions",
    "risk_report",
    "var",
    "variance_contributions",
    "volatility",
]

#: Fewest usable observations (times, or overlapping windows) accepted per portfolio.
MIN_OBSERVATIONS = 30
#: Every accepted ``method``.
METHODS: tuple[str, ...] = (
    "historical",
    "gaussian",
    "cornish_fisher",
    "monte_carlo_normal",
    "monte_carlo_t",
)
Method = Literal["historical", "gaussian", "cornish_fisher", "monte_carlo_normal", "monte_carlo_t"]
Measure = Literal["volatility", "var", "es"]


# ------------------------------------------------------------------ validation
def _check_confidence(confidence: Any) -> float:
    ok = isinstance(confidence, Real) and not isinstance(confidence, bool)
    if not ok or not np.isfinite(float(confidence)) or not 0.0 < float(confidence) < 1.0:
        raise ValidationError(
            "confidence", confidence, "must be a number strictly between 0 and 1, e.g. 0.95"
        )
    return float(confidence)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValidationError(name, value, f"must be an integer >= {low}")
    return int(value)


@dataclass(frozen=True)
class _Inputs:
    weights: xr.DataArray  # (portfolio, asset), maybe dask-backed
    returns: np.ndarray  # (T, A) float64 in the weights' asset order
    assets: np.ndarray
    held: np.ndarray  # (A,) bool: nonzero weight in some portfolio
    squeeze: bool  # the caller gave 1-D weights


def _inputs(weights: Any, returns: Any) -> _Inputs:
    values, r_assets = _returns_array(returns)
    weights, one = as_weights(weights, r_assets)
    w_assets = np.asarray(weights["asset"].values)
    _check_unique(w_assets, "asset")
    _check_unique(np.asarray(weights["portfolio"].values), "portfolio")
    pos = {a: k for k, a in enumerate(r_assets.tolist())}
    absent = [a for a in w_assets.tolist() if a not in pos]
    if absent:
        raise AlignmentError(
            "weights.asset",
            absent,
            f"{len(absent)} weighted asset(s) not in returns.asset "
            f"({len(r_assets)} assets); weights and returns must share asset labels",
        )
    values = values[:, [pos[a] for a in w_assets.tolist()]]
    finite = np.isfinite(weights).all("portfolio").values
    if not finite.all():
        a = int(np.argmin(finite))
        col = weights.isel(asset=a).values
        p = int(np.argmin(np.isfinite(col)))
        label = weights["portfolio"].values[p]
        raise ValidationError(
            f"weights[{label}, {w_assets[a]}]", float(col[p]), "weights must be finite"
        )
    held = np.asarray((weights != 0).any("portfolio").values)
    empty = np.isnan(values).all(axis=0) & held
    if empty.any():
        a = int(np.argmax(empty))
        raise InsufficientDataError(
            "asset",
            str(w_assets[a]),
            "has no return observation at all but a nonzero weight",
        )
    if values.shape[0] == 0:
        raise InsufficientDataError("returns.time", 0, "returns have no times")
    times = returns["time"].values if "time" in returns.coords else np.arange(values.shape[0])
    refuse_gaps(values[:, held], w_assets[held], times, "returns")
    return _Inputs(weights, values, w_assets, held, one)


def _check_observations(inp: _Inputs, horizon: int, min_obs: int) -> np.ndarray:
    if horizon > inp.returns.shape[0]:
        raise InsufficientDataError(
            "horizon", horizon, f"longer than the {inp.returns.shape[0]} times of returns"
        )
    counts = apply_core(
        _core.n_observations,
        inp.weights,
        input_core_dims=[["asset"]],
        kwargs={"returns": inp.returns, "horizon": horizon},
    )
    counts = np.asarray(counts.values)
    short = counts < min_obs
    if short.any():
        p = int(np.argmax(short))
        label = inp.weights["portfolio"].values[p]
        kind = f"overlapping {horizon}-period windows" if horizon > 1 else "times"
        raise InsufficientDataError(
            f"portfolio[{label}]",
            int(counts[p]),
            f"{kind} where every held asset has a return; need at least min_observations={min_obs}",
        )
    return counts


def _common(
    weights: Any, returns: Any, confidence: Any, horizon: Any, method: str, min_observations: Any
) -> tuple[_Inputs, float, int]:
    if method not in METHODS:
        raise ValidationError("method", method, f"must be one of {METHODS}")
    c = _check_confidence(confidence)
    h = _check_int("horizon", horizon, 1)
    min_obs = _check_int("min_observations", min_observations, 2)
    inp = _inputs(weights, returns)
    _check_observations(inp, h if method == "historical" else 1, min_obs)
    return inp, c, h


def _scenarios(
    inp: _Inputs,
    method: str,
    horizon: int,
    n_scenarios: Any,
    dof: Any,
    seed: Any,
    covariance_method: str,
) -> np.ndarray:
    """Monte Carlo scenarios ``(N, A)``; NaN columns for assets no portfolio holds."""
    n = _check_int("n_scenarios", n_scenarios, 100)
    s = _check_int("seed", seed, 0)
    if method == "monte_carlo_t":
        ok = isinstance(dof, Real) and not isinstance(dof, bool) and np.isfinite(float(dof))
        if not ok or float(dof) <= 2.0:
            raise ValidationError("dof", dof, "Student-t degrees of freedom must be > 2")
    if covariance_method not in COV_METHODS:
        raise ValidationError("covariance_method", covariance_method, f"one of {COV_METHODS}")
    sub = inp.returns[:, inp.held]
    labels = inp.assets[inp.held]
    panel = xr.DataArray(sub.T, dims=("asset", "time"), coords={"asset": labels})
    cov = covariance_matrix(panel, covariance_method).values
    mean = np.nanmean(sub, axis=0)
    dist = "t" if method == "monte_carlo_t" else "normal"
    draws = monte_carlo_scenarios(
        mean, cov, s, n_scenarios=n, distribution=dist, dof=float(dof), horizon=horizon
    )
    out = np.full((n, len(inp.assets)), np.nan)
    out[:, inp.held] = np.asarray(draws)
    return out


def _core_args(
    inp: _Inputs,
    method: str,
    horizon: int,
    n_scenarios: Any,
    dof: Any,
    seed: Any,
    covariance_method: str,
) -> dict[str, Any]:
    """Keyword arguments of the core call: data, method and horizon for ``method``."""
    if method.startswith("monte_carlo"):
        data = _scenarios(inp, method, horizon, n_scenarios, dof, seed, covariance_method)
        return {"returns": data, "method": "historical", "horizon": 1}
    return {"returns": inp.returns, "method": method, "horizon": horizon}


def volatility_attrs(horizon: int) -> dict[str, Any]:
    """Attrs labelling a volatility over ``horizon`` periods: never annualized here.

    `pmkit.analytics.performance` labels its annualized volatilities with the
    same ``annualized`` attr (1 there); a reader tells them apart by it.
    """
    per = "period" if horizon == 1 else f"{horizon} periods"
    return {"horizon": int(horizon), "units": f"fraction per {per}, not annualized",
            "annualized": 0}


def _label(out: xr.DataArray, inp: _Inputs, name: str, attrs: dict[str, Any]) -> xr.DataArray:
    out = out.rename(name)
    out.attrs = attrs
    return squeeze(out, inp.squeeze)


class CornishFisherDomainWarning(UserWarning):
    """Cornish–Fisher was applied where its expansion is not monotone (results unreliable)."""


def cornish_fisher_valid(skew: Any, kurtosis: Any, z_max: float = 6.0) -> np.ndarray:
    """Whether the Cornish–Fisher quantile is increasing on ``|z| <= z_max``.

    The expansion ``q(z) = z + (z²−1)s/6 + (z³−3z)k/24 − (2z³−5z)s²/36``
    (``s`` skew, ``k`` excess kurtosis) has derivative
    ``q'(z) = a z² + b z + c`` with ``a = k/8 − s²/6``, ``b = s/3``,
    ``c = 1 − k/8 + 5s²/36``. Where ``q'`` turns negative the "quantile" bends
    back and VaR/ES computed from it do not measure the tail (Maillard 2012,
    "A User's Guide to the Cornish Fisher Expansion", studies this domain).
    Checking ``|z| <= 6`` rather than all z ignores bends beyond a tail
    probability of about 1e-9, e.g. those of any slightly negative kurtosis.
    """
    s, k = np.broadcast_arrays(np.asarray(skew, dtype=float), np.asarray(kurtosis, dtype=float))
    a, b, c = k / 8 - s**2 / 6, s / 3, 1 - k / 8 + 5 * s**2 / 36

    def dq(z: Any) -> np.ndarray:
        return a * z**2 + b * z + c

    # q' may touch 0 at a point and q still increases: only q' < 0 bends back
    ok = (dq(-z_max) >= 0) & (dq(z_max) >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = np.where(a > 0, -b / (2 * a), np.nan)  # the minimum, when q' is convex
    inside = np.abs(vertex) <= z_max
    return ok & ~(inside & (dq(np.nan_to_num(vertex)) < 0))


def _warn_outside_cornish_fisher_domain(inp: _Inputs, horizon: int) -> None:
    if not isinstance(inp.weights.data, np.ndarray):
        return  # dask-backed: checking would compute everything now
    m = _core.portfolio_moments(np.asarray(inp.weights.values), np.asarray(inp.returns))
    # the CF horizon scaling: skew / sqrt(h), excess kurtosis / h
    skew = np.asarray(m["skew"]) / np.sqrt(horizon)
    kurt = np.asarray(m["kurtosis"]) / horizon
    bad = ~cornish_fisher_valid(skew, kurt)
    if bad.any():
        names = inp.weights.indexes["portfolio"][bad]
        detail = ", ".join(f"{n} (skew {a:.2f}, excess kurtosis {b:.2f})"
                           for n, a, b in zip(names, skew[bad], kurt[bad], strict=True))
        warnings.warn(
            f"Cornish–Fisher expansion is not monotone for {detail}: outside Maillard's (2012)"
            " domain of validity, so its VaR/ES are unreliable; prefer historical or Monte"
            " Carlo Student-t", CornishFisherDomainWarning, stacklevel=4)


def _var_es(w: np.ndarray, **kwargs: Any) -> tuple[Any, Any]:
    out = _core.tail_risk(w, **kwargs)
    return out["var"], out["es"]


def _tail_measures(
    weights: Any,
    returns: Any,
    confidence: Any,
    horizon: Any,
    method: str,
    n_scenarios: Any,
    dof: Any,
    seed: Any,
    covariance_method: str,
    min_observations: Any,
) -> tuple[xr.DataArray, xr.DataArray]:
    """Labelled ``(var, es)`` from one core call."""
    inp, c, h = _common(weights, returns, confidence, horizon, method, min_observations)
    if method == "cornish_fisher":
        _warn_outside_cornish_fisher_domain(inp, h)
    kw = _core_args(inp, method, h, n_scenarios, dof, seed, covariance_method)
    var_da, es_da = apply_core(
        _var_es,
        inp.weights,
        input_core_dims=[["asset"]],
        output_core_dims=[[], []],
        kwargs={**kw, "confidence": c},
    )
    attrs = {
        "confidence": c,
        "horizon": h,
        "method": method,
        "units": "fraction of portfolio value (loss positive)",
    }
    if method.startswith("monte_carlo"):
        attrs.update(n_scenarios=int(n_scenarios), seed=int(seed))
        if method == "monte_carlo_t":
            attrs["dof"] = float(dof)
    return _label(var_da, inp, "var", dict(attrs)), _label(es_da, inp, "es", dict(attrs))


# ------------------------------------------------------------------ public API
def var(
    weights: xr.DataArray,
    returns: xr.DataArray,
    confidence: float = 0.95,
    horizon: int = 1,
    method: Method = "historical",
    *,
    n_scenarios: int = 10_000,
    dof: float = 5.0,
    seed: int = 0,
    covariance_method: str = "sample",
    min_observations: int = MIN_OBSERVATIONS,
) -> xr.DataArray:
    """Value at Risk of every portfolio (loss positive).

    Parameters
    ----------
    weights : xarray.DataArray, numpy.ndarray or sequence
        ``(portfolio, asset)`` or ``(asset,)``, fractions of value; numpy- or
        dask-backed (chunked over ``portfolio``). Unlabelled weights follow
        the order of ``returns.asset``; 1-D weights give results without the
        ``portfolio`` dim.
    returns : xarray.DataArray
        ``(asset, time)`` asset simple returns per period (fractions), NaN
        before listing; may contain more assets than ``weights``.
    confidence : float, default 0.95
        In (0, 1) exclusive.
    horizon : int, default 1
        Periods. Historical: overlapping ``h``-period sums of the returns.
        Gaussian, Cornish–Fisher and Monte Carlo: sqrt-of-time (CF also
        scales skewness by ``1/sqrt(h)`` and excess kurtosis by ``1/h``).
    method : str, default "historical"
        ``"historical"`` (lower empirical quantile of losses, as
        ``numpy.quantile(..., method="inverted_cdf")`` and skfolio),
        ``"gaussian"``, ``"cornish_fisher"``, ``"monte_carlo_normal"``,
        ``"monte_carlo_t"``. Definitions in `pmkit.core.risk`.
    n_scenarios : int, default 10000
        Monte Carlo scenarios (>= 100), shared by all portfolios.
    dof : float, default 5.0
        Student-t degrees of freedom (> 2), ``"monte_carlo_t"`` only.
    seed : int, default 0
        Monte Carlo seed (``jax.random.PRNGKey(seed)``); fixed seed, same result.
    covariance_method : {"sample", "ledoit_wolf", "ewma"}, default "sample"
        Covariance of the Monte Carlo scenarios, from `pmkit.risk.covariance`
        over the assets held by some portfolio (means: each asset's own mean).
    min_observations : int, default `MIN_OBSERVATIONS` (30)
        Fewest usable times per portfolio (windows, for historical with
        ``horizon > 1``).

    Returns
    -------
    xarray.DataArray
        ``var(portfolio)`` float64, loss fraction over the horizon; attrs
        ``confidence``, ``horizon``, ``method``.

    Raises
    ------
    ValidationError
        ``confidence`` outside (0, 1), bad ``method``/``horizon``/parameters,
        non-finite weights, infinite returns, weights of the wrong shape
        (field ``weights``), or a gap (NaN after the first return) in a
        held asset (field ``returns``, value the asset, the time in the
        message).
    AlignmentError
        ``weights`` name assets that ``returns`` lack.
    InsufficientDataError
        A held asset with no data (named), or a portfolio (named) with fewer
        than ``min_observations`` usable times.
    """
    return _tail_measures(
        weights,
        returns,
        confidence,
        horizon,
        method,
        n_scenarios,
        dof,
        seed,
        covariance_method,
        min_observations,
    )[0]


def expected_shortfall(
    weights: xr.DataArray,
    returns: xr.DataArray,
    confidence: float = 0.95,
    horizon: int = 1,
    method: Method = "historical",
    *,
    n_scenarios: int = 10_000,
    dof: float = 5.0,
    seed: int = 0,
    covariance_method: str = "sample",
    min_observations: int = MIN_OBSERVATIONS,
) -> xr.DataArray:
    """Expected Shortfall (CVaR) of every portfolio (loss positive).

    Historical ES is the mean loss over the worst ``(1 - confidence)`` share
    of scenarios (Rockafellar–Uryasev, as ``skfolio.measures.cvar``); the
    parametric forms are in `pmkit.core.risk`. Parameters, errors and
    horizon rules are those of `var`.

    Returns
    -------
    xarray.DataArray
        ``es(portfolio)`` float64, loss fraction over the horizon.
    """
    return _tail_measures(
        weights,
        returns,
        confidence,
        horizon,
        method,
        n_scenarios,
        dof,
        seed,
        covariance_method,
        min_observations,
    )[1]


def volatility(
    weights: xr.DataArray,
    returns: xr.DataArray,
    horizon: int = 1,
    *,
    min_observations: int = MIN_OBSERVATIONS,
) -> xr.DataArray:
    """Sample standard deviation (``ddof=1``) of portfolio returns, times ``sqrt(horizon)``.

    Parameters
    ----------
    weights, returns : xarray.DataArray
        As in `var`.
    horizon : int, default 1
        Periods (sqrt-of-time).
    min_observations : int, default 30

    Returns
    -------
    xarray.DataArray
        ``volatility(portfolio)``, return fraction per horizon, *not*
        annualized; attrs ``horizon``, ``units``, ``annualized=0``, ``ddof``.
    """
    inp, _, h = _common(weights, returns, 0.5, horizon, "gaussian", min_observations)
    out = apply_core(
        _core.volatility,
        inp.weights,
        input_core_dims=[["asset"]],
        kwargs={"returns": inp.returns, "horizon": h},
    )
    return _label(out, inp, "volatility", {**volatility_attrs(h), "ddof": 1})


def risk_contributions(
    weights: xr.DataArray,
    returns: xr.DataArray,
    confidence: float = 0.95,
    horizon: int = 1,
    method: Method = "historical",
    *,
    measure: Measure = "volatility",
    n_scenarios: int = 10_000,
    dof: float = 5.0,
    seed: int = 0,
    covariance_method: str = "sample",
    min_observations: int = MIN_OBSERVATIONS,
) -> xr.Dataset:
    """Marginal and component (Euler) contributions of volatility, VaR or ES.

    ``marginal = d total / d weight`` (by `jax.grad`) and ``component =
    weight * marginal``; components sum to ``total``, the measure itself (a
    volatility, VaR or ES: not 1, not the variance, see
    `variance_contributions`), exactly (to rounding) for every method — for
    historical and Monte Carlo VaR/ES through the scenario-at-the-quantile
    (VaR) and tail-scenario-average (ES) gradients described in
    `pmkit.core.risk`. The positional arguments are those of `var`, in its
    order; ``measure`` is keyword-only.

    Parameters
    ----------
    weights, returns : xarray.DataArray
        As in `var`.
    confidence, horizon : float, int
        As in `var` (``confidence`` is ignored for volatility).
    method : str, default "historical"
        As in `var`; ignored for volatility.
    measure : {"volatility", "var", "es"}, default "volatility"
    n_scenarios, dof, seed, covariance_method, min_observations
        As in `var`.

    Returns
    -------
    xarray.Dataset
        ``total(portfolio)``, ``marginal(portfolio, asset)`` (loss fraction
        per unit weight; NaN for an unheld asset unobserved at times the
        portfolio uses) and ``component(portfolio, asset)`` (loss fraction;
        0 for unheld assets). Attrs ``measure``, ``method``, ``confidence``,
        ``horizon``.

    Raises
    ------
    ValidationError, AlignmentError, InsufficientDataError
        As in `var`; ``measure`` not one of the three.
    """
    if measure not in _core.MEASURES:
        raise ValidationError("measure", measure, f"must be one of {_core.MEASURES}")
    if measure == "volatility":
        method = "gaussian"
        confidence = 0.95 if confidence is None else confidence
    inp, c, h = _common(weights, returns, confidence, horizon, method, min_observations)
    kw = _core_args(inp, method, h, n_scenarios, dof, seed, covariance_method)
    total, marginal, component = apply_core(
        _core.risk_contributions,
        inp.weights,
        input_core_dims=[["asset"]],
        output_core_dims=[[], ["asset"], ["asset"]],
        kwargs={**kw, "confidence": c, "measure": measure},
    )
    ds = xr.Dataset({"total": total, "marginal": marginal, "component": component})
    ds.attrs = {
        "measure": measure,
        "method": "-" if measure == "volatility" else method,
        "confidence": c,
        "horizon": h,
        "units": "fraction of portfolio value (loss positive)",
    }
    if measure == "volatility":
        ds.attrs.update(volatility_attrs(h))
    return squeeze(ds, inp.squeeze)


def variance_contributions(
    weights: xr.DataArray,
    returns: xr.DataArray,
    horizon: int = 1,
    *,
    min_observations: int = MIN_OBSERVATIONS,
) -> xr.Dataset:
    """Euler contributions to the variance of portfolio returns; they sum to the variance.

    The variance ``sigma^2`` (sample, ``ddof=1``, times ``horizon``) is
    homogeneous of degree 2 in the weights, so its components are ``w_i
    d sigma^2 / d w_i / 2 = sigma * c_i`` with ``c_i`` the volatility components
    of `risk_contributions`: computed from them (one owner), not a second way.
    As fractions of the total they equal the volatility components' fractions.

    Parameters
    ----------
    weights, returns : xarray.DataArray
        As in `var`.
    horizon : int, default 1
        Periods (variance scales with ``horizon``).
    min_observations : int, default 30

    Returns
    -------
    xarray.Dataset
        ``total(portfolio)`` (the variance, squared return fraction per
        horizon, not annualized) and ``component(portfolio, asset)`` summing
        to it (0 for unheld assets).

    Raises
    ------
    ValidationError, AlignmentError, InsufficientDataError
        As in `var`.
    """
    vol = risk_contributions(
        weights, returns, horizon=horizon, measure="volatility", min_observations=min_observations
    )
    per = "period" if vol.attrs["horizon"] == 1 else f"{vol.attrs['horizon']} periods"
    ds = xr.Dataset({
        "total": vol["total"] ** 2,
        "component": vol["component"] * vol["total"],
    })
    ds.attrs = {"measure": "variance", "horizon": vol.attrs["horizon"], "ddof": 1,
                "units": f"fraction**2 per {per}, not annualized", "annualized": 0}
    return ds


def _moments_tuple(w: np.ndarray, returns: np.ndarray) -> tuple[Any, ...]:
    m = _core.portfolio_moments(w, returns)
    return m["mean"], m["std"], m["skew"], m["kurtosis"]


def risk_report(
    weights: xr.DataArray,
    returns: xr.DataArray,
    confidence: float = 0.95,
    horizon: int = 1,
    methods: tuple[str, ...] = ("historical", "gaussian", "cornish_fisher"),
    *,
    n_scenarios: int = 10_000,
    dof: float = 5.0,
    seed: int = 0,
    covariance_method: str = "sample",
    min_observations: int = MIN_OBSERVATIONS,
) -> xr.Dataset:
    """Every risk measure of every portfolio in one Dataset.

    Parameters
    ----------
    weights, returns : xarray.DataArray
        As in `var`.
    confidence : float, default 0.95
    horizon : int, default 1
    methods : tuple of str, default ("historical", "gaussian", "cornish_fisher")
        VaR/ES methods to include (any of `METHODS`).
    n_scenarios, dof, seed, covariance_method, min_observations
        As in `var`.

    Returns
    -------
    xarray.Dataset
        Over ``portfolio``: ``volatility`` (per horizon, not annualized:
        attrs ``annualized=0`` and ``units``), ``var_<method>`` and
        ``es_<method>`` for each method, the per-period ``mean``, ``std``
        (per period, not annualized, labelled like ``volatility``),
        ``skew``, ``kurtosis`` (excess) of the portfolio returns over their
        usable times, and ``n_observations`` (those times). Attrs
        ``confidence``, ``horizon``.
    """
    if isinstance(methods, str) or not methods:
        raise ValidationError("methods", methods, f"must be a non-empty tuple of {METHODS}")
    for m in methods:
        if m not in METHODS:
            raise ValidationError("methods", m, f"must be one of {METHODS}")
    out: dict[str, xr.DataArray] = {
        "volatility": volatility(weights, returns, horizon, min_observations=min_observations)
    }
    for m in methods:
        out[f"var_{m}"], out[f"es_{m}"] = _tail_measures(
            weights,
            returns,
            confidence,
            horizon,
            m,
            n_scenarios,
            dof,
            seed,
            covariance_method,
            min_observations,
        )
    inp = _inputs(weights, returns)
    moments = apply_core(
        _moments_tuple,
        inp.weights,
        input_core_dims=[["asset"]],
        output_core_dims=[[], [], [], []],
        kwargs={"returns": inp.returns},
    )
    counts = apply_core(
        _core.n_observations,
        inp.weights,
        input_core_dims=[["asset"]],
        kwargs={"returns": inp.returns},
    )
    for name, da in zip(("mean", "std", "skew", "kurtosis"), moments, strict=True):
        out[name] = squeeze(da, inp.squeeze)
    out["n_observations"] = squeeze(counts, inp.squeeze)
    for k, da in out.items():
        out[k] = da.rename(k).drop_attrs() if hasattr(da, "drop_attrs") else da.rename(k)
    out["volatility"].attrs = volatility_attrs(int(horizon))
    out["std"].attrs = volatility_attrs(1)
    ds = xr.Dataset(out)
    ds.attrs = {
        "confidence": _check_confidence(confidence),
        "horizon": int(horizon),
        "units": "fractions; var/es loss positive",
    }
    return ds
