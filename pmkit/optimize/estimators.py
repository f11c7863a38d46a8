"""Expected-return and covariance estimators for the optimizers, labelled and ragged-aware.

`expected_returns` estimates annualized expected returns per asset from
``(asset, time)`` simple returns by the historical mean, an exponentially
weighted mean or the CAPM; `covariance` delegates to
`pmkit.risk.covariance.covariance_matrix` and optionally annualizes;
`correlation` turns a covariance into a correlation matrix.

Ragged histories (NaN before an asset lists) are never zero-filled: every
estimate of an asset uses that asset's own observations (CAPM: the times the
asset and the market are both observed). The definitions follow
PyPortfolioOpt's ``expected_returns`` module (``mean_historical_return``,
``ema_historical_return``, ``capm_return`` with ``returns_data=True``), which
skips NaN the same way; the one deliberate difference is that a CAPM beta
divides by the market variance over the asset's common observations, not over
every market observation (they coincide on complete data).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Literal

import numpy as np
import xarray as xr

from pmkit.errors import (
    AlignmentError,
    DuplicateLabelError,
    InsufficientDataError,
    ValidationError,
)

__all__ = ["correlation", "covariance", "expected_returns"]

ReturnMethod = Literal["mean", "ewma", "capm"]
RETURN_METHODS: tuple[str, ...] = ("mean", "ewma", "capm")


def _returns_values(returns: Any) -> tuple[np.ndarray, np.ndarray, xr.DataArray]:
    """Validated ``(A, T)`` float64 values, asset labels and the ``(asset, time)`` array."""
    if not isinstance(returns, xr.DataArray):
        raise ValidationError("returns", type(returns).__name__, "must be an xarray.DataArray")
    if set(returns.dims) != {"asset", "time"}:
        raise ValidationError(
            "returns", returns.dims, "must have exactly the dims ('asset', 'time')"
        )
    da = returns.transpose("asset", "time")
    assets = np.asarray(da["asset"].values)
    seen: set[Hashable] = set()
    for label in assets.tolist():
        if label in seen:
            raise DuplicateLabelError("asset", label, "asset labels must be unique")
        seen.add(label)
    values = np.asarray(da.values, dtype=np.float64)
    bad = np.isinf(values)
    if bad.any():
        a, t = np.argwhere(bad)[0]
        raise ValidationError(
            f"returns[{assets[a]}, {t}]", float(values[a, t]), "returns must be finite or NaN"
        )
    return values, assets, da


def _positive_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValidationError(name, value, f"must be an integer >= {low}")
    return int(value)


def _finite_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValidationError(name, value, "must be a real number")
    if not np.isfinite(value):
        raise ValidationError(name, value, "must be finite")
    return float(value)


def _check_counts(counts: np.ndarray, assets: np.ndarray, min_observations: int, what: str) -> None:
    low = counts < min_observations
    if low.any():
        i = int(np.argmax(low))
        raise InsufficientDataError(
            "asset",
            str(assets[i]),
            f"has {int(counts[i])} {what}; need at least min_observations={min_observations}",
        )


def _annualize(per_period: np.ndarray, periods_per_year: int, compounding: bool) -> np.ndarray:
    if compounding:
        return (1.0 + per_period) ** periods_per_year - 1.0
    return per_period * periods_per_year


def _geometric(values: np.ndarray, periods_per_year: int) -> np.ndarray:
    """CAGR of each row over its own observations: ``prod(1+r)^(ppy/n) - 1``."""
    n = (~np.isnan(values)).sum(axis=-1)
    log_growth = np.nansum(np.log1p(values), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.expm1(log_growth * periods_per_year / n)


def _ewma_last(values: np.ndarray, span: float) -> np.ndarray:
    """Last value of ``pandas.Series.ewm(span=span).mean()`` per row (adjust=True).

    pandas weights an observation by its distance *in rows* from the end
    (``ignore_na=False``), so a gap still ages older data; weights are taken
    relative to each row's last observation, which leaves the ratio unchanged
    and keeps long histories with a short span from underflowing to 0/0.
    """
    alpha = 2.0 / (span + 1.0)
    observed = ~np.isnan(values)
    positions = np.arange(values.shape[-1])
    last = np.where(observed, positions, -1).max(axis=-1)
    age = np.where(observed, last[:, None] - positions[None, :], 0)
    # power, not exp(age * log(1 - alpha)): span 1 (alpha = 1) keeps the last value, 0**0 = 1
    weights = np.where(observed, np.power(1.0 - alpha, age), 0.0)
    filled = np.where(observed, values, 0.0)  # masked by zero weight, not used as data
    return (weights * filled).sum(axis=-1) / weights.sum(axis=-1)


def _market_series(market: Any, da: xr.DataArray, values: np.ndarray) -> tuple[np.ndarray, str]:
    """Market returns aligned on ``returns``' times, and a description of the proxy."""
    if market is None:
        observed = ~np.isnan(values)
        counts = observed.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            proxy = np.where(observed, values, 0.0).sum(axis=0) / counts
        return np.where(counts > 0, proxy, np.nan), "equal-weighted mean of available assets"
    if not isinstance(market, xr.DataArray):
        raise ValidationError("market", type(market).__name__, "must be an xarray.DataArray")
    if market.dims != ("time",):
        raise ValidationError("market", market.dims, "must have exactly the dim ('time',)")
    if "time" not in da.coords or "time" not in market.coords:
        if market.sizes["time"] != da.sizes["time"]:
            raise AlignmentError(
                "market",
                market.sizes["time"],
                f"has no time labels and not {da.sizes['time']} rows like returns",
            )
        aligned = np.asarray(market.values, dtype=np.float64)
    else:
        wanted = da.indexes["time"]
        have = market.indexes["time"]
        if not have.is_unique:
            raise DuplicateLabelError("market.time", "", "market time labels must be unique")
        missing = ~wanted.isin(have)
        if missing.all():
            raise AlignmentError("market", "time", "shares no time label with returns")
        aligned = np.full(len(wanted), np.nan)
        aligned[~missing] = np.asarray(
            market.sel(time=wanted[~missing]).values, dtype=np.float64
        )
    if np.isinf(aligned).any():
        raise ValidationError("market", "inf", "market returns must be finite or NaN")
    return aligned, str(market.name or "market")


def _capm(
    values: np.ndarray,
    assets: np.ndarray,
    market: np.ndarray,
    periods_per_year: int,
    risk_free: float,
    compounding: bool,
    min_observations: int,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Betas over common observations and CAPM expected returns (annualized)."""
    m_obs = ~np.isnan(market)
    if m_obs.sum() < max(2, min_observations):
        raise InsufficientDataError(
            "market", int(m_obs.sum()), f"observations; need at least {max(2, min_observations)}"
        )
    common = ~np.isnan(values) & m_obs[None, :]
    counts = common.sum(axis=1)
    _check_counts(
        counts, assets, max(2, min_observations), "observations in common with the market"
    )
    x = np.where(common, values, 0.0)
    m = np.where(common, market[None, :], 0.0)
    mx = x.sum(axis=1) / counts
    mm = m.sum(axis=1) / counts
    dx = np.where(common, x - mx[:, None], 0.0)
    dm = np.where(common, m - mm[:, None], 0.0)
    var_m = (dm * dm).sum(axis=1)
    flat = var_m <= 0.0
    if flat.any():
        i = int(np.argmax(flat))
        raise InsufficientDataError(
            "asset", str(assets[i]), "market returns are constant over its observations: no beta"
        )
    beta = (dx * dm).sum(axis=1) / var_m
    m_values = market[m_obs]
    if compounding:
        market_return = float(_geometric(m_values[None, :], periods_per_year)[0])
    else:
        market_return = float(m_values.mean() * periods_per_year)
    return beta, risk_free + beta * (market_return - risk_free), market_return


def expected_returns(
    returns: xr.DataArray,
    method: ReturnMethod = "mean",
    *,
    periods_per_year: int = 252,
    span: float = 500.0,
    market: xr.DataArray | None = None,
    risk_free: float = 0.0,
    compounding: bool = False,
    min_observations: int = 2,
) -> xr.DataArray:
    """Annualized expected return of each asset from its return history.

    Parameters
    ----------
    returns : xarray.DataArray
        ``(asset, time)`` simple returns per period as fractions; NaN where an
        asset is unobserved (before listing). Each asset's estimate uses its
        own observations only; nothing is zero-filled.
    method : {"mean", "ewma", "capm"}, default "mean"
        ``"mean"``: historical mean of each asset's observed returns
        (PyPortfolioOpt ``mean_historical_return``). ``"ewma"``:
        exponentially weighted mean, the last value of pandas
        ``ewm(span=span).mean()`` (PyPortfolioOpt ``ema_historical_return``);
        gaps age the older data like pandas' default ``ignore_na=False``.
        ``"capm"``: ``mu_i = risk_free + beta_i (E[r_m] - risk_free)`` with
        ``beta_i = cov(r_i, r_m) / var(r_m)`` over the times asset ``i`` and
        the market are both observed, and ``E[r_m]`` the annualized mean (or
        CAGR with ``compounding``) of every market observation
        (PyPortfolioOpt ``capm_return``, whose beta divides by the variance
        of all market observations instead; identical on complete data).
    periods_per_year : int, default 252
        Periods per year of ``returns`` (252 for daily data).
    span : float, default 500
        EWMA span in periods (decay ``alpha = 2 / (span + 1)``), ``>= 1``.
    market : xarray.DataArray, optional
        ``(time)`` market simple returns per period, aligned to ``returns`` on
        the ``time`` labels (NaN where missing). Default (None): the
        equal-weighted mean of the assets observed each period
        (PyPortfolioOpt's proxy). Used by ``"capm"`` only.
    risk_free : float, default 0.0
        Annual risk-free rate as a fraction (``"capm"`` only).
    compounding : bool, default False
        Geometric annualization: ``"mean"`` gives the CAGR
        ``prod(1 + r)^(periods_per_year / n) - 1``, ``"ewma"``
        ``(1 + m)^periods_per_year - 1``, ``"capm"`` uses the market CAGR.
        False: arithmetic, the per-period mean times ``periods_per_year``.
        (PyPortfolioOpt defaults to True; pmkit to the arithmetic mean that
        mean-variance theory assumes.)
    min_observations : int, default 2
        Fewest observations accepted for an asset (for ``"capm"``, in
        common with the market; at least 2 there).

    Returns
    -------
    xarray.DataArray
        ``expected_return(asset)``, annualized fraction (0.08 = 8 % a year),
        float64, with the asset coordinates of ``returns``. Attrs: ``method``,
        ``units``, ``periods_per_year``, ``compounding``, plus ``span``
        (EWMA) or ``market`` and ``market_return`` (CAPM). CAPM also returns
        the ``beta(asset)`` coordinate.

    Raises
    ------
    ValidationError
        Bad ``method``, ``span``, ``periods_per_year``, ``min_observations``,
        ``risk_free``, wrong dims or inf returns, a bad ``market``.
    DuplicateLabelError
        An asset label repeats.
    InsufficientDataError
        An asset (named) with fewer than ``min_observations`` observations.
    AlignmentError
        ``market`` shares no time label with ``returns``.
    """
    if method not in RETURN_METHODS:
        raise ValidationError("method", method, f"must be one of {RETURN_METHODS}")
    ppy = _positive_int("periods_per_year", periods_per_year)
    min_observations = _positive_int("min_observations", min_observations)
    rf = _finite_float("risk_free", risk_free)
    values, assets, da = _returns_values(returns)
    attrs: dict[str, Any] = {
        "method": method,
        "units": "fraction per year",
        "periods_per_year": ppy,
        "compounding": int(bool(compounding)),
    }
    extra_coords: dict[str, Any] = {}

    if method == "capm":
        series, label = _market_series(market, da, values)
        beta, mu, market_return = _capm(
            values, assets, series, ppy, rf, bool(compounding), min_observations
        )
        attrs.update(market=label, market_return=market_return, risk_free=rf)
        extra_coords["beta"] = ("asset", beta)
    else:
        counts = (~np.isnan(values)).sum(axis=1)
        _check_counts(counts, assets, min_observations, "return observations")
        if method == "mean":
            mu = _geometric(values, ppy) if compounding else np.nanmean(values, axis=1) * ppy
        else:
            span_f = _finite_float("span", span)
            if span_f < 1.0:
                raise ValidationError("span", span, "must be >= 1")
            mu = _annualize(_ewma_last(values, span_f), ppy, bool(compounding))
            attrs["span"] = span_f

    coords: dict[str, Any] = {
        key: coord for key, coord in da.coords.items() if coord.dims == ("asset",)
    }
    coords.update(extra_coords)
    return xr.DataArray(
        np.asarray(mu, dtype=np.float64),
        dims=("asset",),
        coords=coords,
        name="expected_return",
        attrs=attrs,
    )


def covariance(
    returns: xr.DataArray,
    method: Literal["sample", "ledoit_wolf", "ewma"] = "sample",
    *,
    periods_per_year: int = 252,
    annualize: bool = True,
    **kwargs: Any,
) -> xr.DataArray:
    """Covariance of asset returns via `pmkit.risk.covariance.covariance_matrix`, annualized.

    Annualized by default, like `expected_returns`, so the two pair as they
    come: ``MaximumSharpe().fit(mu=expected_returns(r), cov=covariance(r))``.
    Every optimizer refuses a ``mu``/``cov`` pair whose ``units`` attrs
    disagree (`pmkit.errors.UnitsMismatchError`).

    Parameters
    ----------
    returns : xarray.DataArray
        ``(asset, time)`` simple returns per period, NaN before listing.
    method : {"sample", "ledoit_wolf", "ewma"}, default "sample"
        Estimator, with its ragged-history rule (pairwise for ``"sample"`` and
        ``"ewma"``, listwise for ``"ledoit_wolf"``); see `covariance_matrix`.
    periods_per_year : int, default 252
        Periods of ``returns`` per year, used by ``annualize``.
    annualize : bool, default True
        Multiply by ``periods_per_year``: squared fractions per year, the unit
        of `expected_returns` and of every optimizer. False: per period, as
        `covariance_matrix` (for risk measures over one period).
    **kwargs
        Passed to `covariance_matrix` (``ddof``, ``decay``, ``demean``,
        ``min_observations``, ``repair``, ...).

    Returns
    -------
    xarray.DataArray
        ``covariance(asset, asset_j)`` float64; attrs of `covariance_matrix`
        plus ``periods_per_year``, and ``units`` ``"fraction**2 per year"``
        (annualized) or ``"fraction**2 per period"``.

    Raises
    ------
    ValidationError, InsufficientDataError, DuplicateLabelError
        As `covariance_matrix`; a bad ``periods_per_year``.
    """
    # Imported here: pmkit.risk pulls in the JAX core, and `import pmkit.optimize` stays light.
    from pmkit.risk.covariance import covariance_matrix

    ppy = _positive_int("periods_per_year", periods_per_year)
    cov = covariance_matrix(returns, method, **kwargs)
    if annualize:
        attrs = {**cov.attrs, "units": "fraction**2 per year", "periods_per_year": ppy}
        return (cov * ppy).assign_attrs(attrs).rename(cov.name)
    return cov.assign_attrs(periods_per_year=ppy)


def correlation(cov: xr.DataArray) -> xr.DataArray:
    """Correlation matrix of a covariance matrix.

    Parameters
    ----------
    cov : xarray.DataArray
        ``(asset, asset_j)`` covariance in any units (per period or annual).

    Returns
    -------
    xarray.DataArray
        ``correlation(asset, asset_j)``, unitless, ones on the diagonal, same
        coordinates as ``cov``: ``cov_ij / sqrt(cov_ii cov_jj)``. For a
        pairwise covariance of ragged returns the variances are those of each
        asset's whole history, so it differs from pandas' pairwise ``corr``
        (which rescales by the variances over the pair's common times).

    Raises
    ------
    ValidationError
        Wrong dims, mismatched ``asset``/``asset_j`` labels, non-finite
        entries, or a variance (named by asset) that is not positive.
    """
    values, assets, ordered = _cov_values(cov)
    var = np.diag(values)
    bad = ~(var > 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(
            f"cov[{assets[i]}, {assets[i]}]", float(var[i]), "variance must be > 0"
        )
    sd = np.sqrt(var)
    corr = values / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    out = ordered.copy(data=corr).rename("correlation")
    out.attrs = {"units": "1"}
    return out


def _cov_values(cov: Any, name: str = "cov") -> tuple[np.ndarray, np.ndarray, xr.DataArray]:
    """Validated square values, labels and the ``(asset, asset_j)``-ordered DataArray."""
    if not isinstance(cov, xr.DataArray):
        raise ValidationError(name, type(cov).__name__, "must be an xarray.DataArray")
    if set(cov.dims) != {"asset", "asset_j"}:
        raise ValidationError(name, cov.dims, "must have exactly the dims ('asset', 'asset_j')")
    cov = cov.transpose("asset", "asset_j")
    assets = np.asarray(cov["asset"].values)
    if "asset_j" in cov.coords and list(cov["asset_j"].values) != list(assets):
        raise AlignmentError(
            f"{name}.asset_j", list(cov["asset_j"].values), "must equal the asset labels in order"
        )
    values = np.asarray(cov.values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValidationError(name, "non-finite", "covariance entries must be finite")
    return values, assets, cov
