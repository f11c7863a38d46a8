"""Labelled covariance estimation over the JAX core, with honest ragged-history handling.

`covariance_matrix` takes asset returns ``(asset, time)`` (simple returns as
fractions, NaN before listing) and returns a labelled ``(asset, asset_j)``
matrix. The second dimension is named ``asset_j`` (xarray cannot have one
dimension twice); both carry the same labels, so ``cov.sel(asset="AAPL",
asset_j="MSFT")`` reads one entry and ``cov.rename(asset_j="asset")`` is not
needed for ``xr.dot`` against weights renamed to ``asset_j``.

Missing data are never zero-filled: ``"sample"`` and ``"ewma"`` estimate each
pair over the pair's common observations (pairwise), ``"ledoit_wolf"`` over
the times where every asset is observed (listwise). A pairwise matrix can be
indefinite; it is then repaired to the nearest positive definite matrix by
eigenvalue clipping (variances kept) and a `CovarianceRepairWarning` states
the smallest eigenvalue found.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable
from typing import Any, Literal

import numpy as np
import xarray as xr

from pmkit.core import covariance as _core
from pmkit.errors import DuplicateLabelError, InsufficientDataError, ValidationError

__all__ = ["CovarianceRepairWarning", "covariance_matrix"]

CovMethod = Literal["sample", "ledoit_wolf", "ewma"]
COV_METHODS: tuple[str, ...] = ("sample", "ledoit_wolf", "ewma")


class CovarianceRepairWarning(UserWarning):
    """A covariance estimate was not positive semi-definite and has been repaired."""


def _returns_array(returns: Any, name: str = "returns") -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(T, A)`` float64 values and the asset labels of ``returns(asset, time)``."""
    if not isinstance(returns, xr.DataArray):
        raise ValidationError(name, type(returns).__name__, "must be an xarray.DataArray")
    if set(returns.dims) != {"asset", "time"}:
        raise ValidationError(name, returns.dims, "must have exactly the dims ('asset', 'time')")
    assets = np.asarray(returns["asset"].values)
    _check_unique(assets, "asset")
    raw = np.asarray(returns.values, dtype=np.float64)
    # A numpy transpose is a free view; DataArray.transpose costs ~1 ms of bookkeeping.
    values = raw.T if returns.dims == ("asset", "time") else raw
    bad = np.isinf(values)
    if bad.any():
        t, a = np.argwhere(bad)[0]
        when = returns["time"].values[t] if "time" in returns.coords else t
        raise ValidationError(
            f"{name}[{assets[a]}, {when}]", float(values[t, a]), "returns must be finite or NaN"
        )
    return values, assets


def _check_unique(labels: np.ndarray, dim: str) -> None:
    seen: set[Hashable] = set()
    for label in labels.tolist():
        if label in seen:
            raise DuplicateLabelError(dim, label, f"{dim} labels must be unique")
        seen.add(label)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValidationError(name, value, f"must be an integer >= {low}")
    return int(value)


def _check_assets_observed(values: np.ndarray, assets: np.ndarray) -> None:
    empty = np.isnan(values).all(axis=0)
    if empty.any():
        raise InsufficientDataError(
            "asset", str(assets[np.argmax(empty)]), "has no return observation at all"
        )


def covariance_matrix(
    returns: xr.DataArray,
    method: CovMethod = "sample",
    *,
    ddof: int = 1,
    decay: float = 0.94,
    demean: bool = False,
    min_observations: int = 2,
    repair: bool = True,
    psd_tolerance: float = 1e-12,
    floor: float = 1e-10,
) -> xr.DataArray:
    """Covariance matrix of asset returns, labelled ``(asset, asset_j)``.

    Parameters
    ----------
    returns : xarray.DataArray
        ``(asset, time)`` simple returns per period as fractions; NaN where an
        asset is unobserved (before listing). Dask-backed input is computed.
    method : {"sample", "ledoit_wolf", "ewma"}, default "sample"
        ``"sample"``: pairwise sample covariance (``pandas.DataFrame.cov``
        semantics; ``numpy.cov`` on a complete panel). ``"ledoit_wolf"``:
        shrinkage to a scaled identity, as `sklearn.covariance.ledoit_wolf`
        (``ddof=0``), listwise over times where every asset is observed.
        ``"ewma"``: RiskMetrics exponentially weighted, pairwise, zero mean
        unless ``demean``; see `pmkit.core.covariance.ewma_covariance`.
    ddof : int, default 1
        Delta degrees of freedom of ``"sample"``.
    decay : float, default 0.94
        EWMA ``lambda`` in (0, 1] (0.94: RiskMetrics daily).
    demean : bool, default False
        EWMA: subtract each asset's mean first.
    min_observations : int, default 2
        Fewest common observations accepted for any pair (pairwise methods)
        or complete times (Ledoit–Wolf); must exceed ``ddof`` for "sample".
    repair : bool, default True
        Repair an indefinite estimate (smallest eigenvalue below
        ``-psd_tolerance * largest``) by eigenvalue clipping to
        ``floor * largest`` with the variances kept
        (`pmkit.core.covariance.nearest_psd`), warning with
        `CovarianceRepairWarning`. With False the estimate is returned as is
        (the warning is still given).
    psd_tolerance : float, default 1e-12
        Relative size of negative eigenvalues treated as rounding noise.
    floor : float, default 1e-10
        Relative eigenvalue floor of the repair.

    Returns
    -------
    xarray.DataArray
        ``covariance(asset, asset_j)`` float64 in squared return fractions
        per period, symmetric. Attrs: ``method``, ``min_eigenvalue`` (before
        repair), ``repaired`` (bool), ``n_observations`` (fewest used by any
        entry), and ``shrinkage`` (Ledoit–Wolf) or ``decay`` (EWMA).

    Raises
    ------
    ValidationError
        Bad ``method``, ``ddof``, ``decay``, ``min_observations``; non-finite
        (inf) returns; wrong dims.
    DuplicateLabelError
        An asset label repeats.
    InsufficientDataError
        An asset with no observation at all (named); a pair (named) or the
        complete panel with fewer than ``min_observations`` observations.
    """
    if method not in COV_METHODS:
        raise ValidationError("method", method, f"must be one of {COV_METHODS}")
    ddof = _check_int("ddof", ddof, 0)
    min_obs = _check_int("min_observations", min_observations, max(1, ddof + 1))
    values, assets = _returns_array(returns)
    _check_assets_observed(values, assets)
    attrs: dict[str, Any] = {"method": method, "units": "fraction**2 per period"}

    if method == "ledoit_wolf":
        complete = int((~np.isnan(values).any(axis=1)).sum())
        if complete < min_obs:
            raise InsufficientDataError(
                "returns",
                complete,
                f"Ledoit-Wolf uses times where all {len(assets)} assets are observed: "
                f"{complete} such times, need at least min_observations={min_obs}",
            )
        cov_j, shrink = _core.ledoit_wolf(values)
        cov = np.asarray(cov_j)
        attrs.update(shrinkage=float(shrink), n_observations=complete)
    else:
        counts = np.asarray(_core.common_counts(values))
        low = counts < min_obs
        if low.any():
            i, j = np.argwhere(low)[0]
            raise InsufficientDataError(
                f"returns[{assets[i]}, {assets[j]}]",
                int(counts[i, j]),
                f"common observations of this pair; need at least min_observations={min_obs}",
            )
        attrs["n_observations"] = int(counts.min())
        if method == "sample":
            cov = np.asarray(_core.sample_covariance(values, ddof=ddof))
            attrs["ddof"] = ddof
        else:
            ok = isinstance(decay, float | int | np.floating) and not isinstance(decay, bool)
            if not ok or not 0.0 < float(decay) <= 1.0:
                raise ValidationError("decay", decay, "must be a number in (0, 1]")
            cov = np.asarray(_core.ewma_covariance(values, float(decay), demean=bool(demean)))
            attrs.update(decay=float(decay), demean=int(bool(demean)))

    cov, attrs = _repair(cov, attrs, repair, psd_tolerance, floor)
    coords: dict[str, Any] = {"asset": assets, "asset_j": assets.copy()}
    for key, coord in returns.coords.items():
        if key != "asset" and coord.dims == ("asset",):
            coords[key] = ("asset", np.asarray(coord.values))
    return xr.DataArray(
        cov, dims=("asset", "asset_j"), coords=coords, name="covariance", attrs=attrs
    )


def _repair(
    cov: np.ndarray, attrs: dict[str, Any], repair: bool, tol: float, floor: float
) -> tuple[np.ndarray, dict[str, Any]]:
    eig = np.linalg.eigvalsh(0.5 * (cov + cov.T))
    lo, hi = float(eig[0]), float(np.abs(eig).max())
    attrs = {**attrs, "min_eigenvalue": lo, "repaired": 0}
    if lo >= -tol * hi:
        return cov, attrs
    if repair:
        fixed = np.asarray(_core.nearest_psd(cov, floor))
        after = float(np.linalg.eigvalsh(fixed)[0])
        attrs["repaired"] = 1
        message = (
            f"covariance ({attrs['method']}) is not positive semi-definite: min eigenvalue "
            f"{lo:.6g} (largest {hi:.6g}); repaired by eigenvalue clipping to "
            f"{floor:g} x largest with the variances kept (min eigenvalue now {after:.6g})"
        )
        warnings.warn(message, CovarianceRepairWarning, stacklevel=3)
        return fixed, attrs
    warnings.warn(
        f"covariance ({attrs['method']}) is not positive semi-definite: min eigenvalue "
        f"{lo:.6g} (largest {hi:.6g}); not repaired (repair=False)",
        CovarianceRepairWarning,
        stacklevel=3,
    )
    return cov, attrs
