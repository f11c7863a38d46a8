"""From labelled inputs to the aligned, annualized, well-conditioned arrays a solver needs.

An optimizer is fitted either to asset returns ``(asset, time)`` — from which
expected returns and covariance are estimated — or to given ``mu``/``cov``.
Everything returned here is annualized: ``mu`` in fractions per year, ``cov``
in squared fractions per year. Scenario methods (CVaR, Kelly) also get the
per-period return scenarios, using only the times where every asset is
observed: a ragged history shortens the scenario set (reported in ``info``),
it is never zero-filled.

Units: a given ``mu`` or ``cov`` (or one returned by an estimator function)
whose ``units`` attr names its period must be per year, and the two must
agree; otherwise `UnitsMismatchError` names both. An input without a
``units`` attr is taken to be annual, as documented.

Covariance conditioning: a Cholesky factorization proves positive
definiteness cheaply and LAPACK's ``pocon`` estimates the condition number.
A matrix that is indefinite or whose condition number exceeds
``max_condition`` has its eigenvalues floored at ``largest / max_condition``
and a `CovarianceRepairWarning` states the condition number before and after.
"""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg as sla
import xarray as xr

from pmkit.errors import (
    AlignmentError,
    InsufficientDataError,
    UnitsMismatchError,
    ValidationError,
)
from pmkit.risk.covariance import CovarianceRepairWarning, _returns_array, covariance_matrix

__all__ = [
    "COV_UNITS",
    "MU_UNITS",
    "ProblemData",
    "check_units",
    "condition_covariance",
    "prepare",
    "time_basis",
]

#: The units of expected returns inside every optimizer (and on its results).
MU_UNITS = "fraction per year"
#: The units of covariances inside every optimizer (and on its results).
COV_UNITS = "fraction**2 per year"

Estimator = str | Callable[[xr.DataArray], xr.DataArray]

# Labelled templates keyed by their label values (never by id(): a reused address would
# return another problem's labels). Optimizers run in worker threads (PortfolioManager),
# so reads and evictions go under the lock.
_TEMPLATES: dict[tuple[Any, ...], xr.DataArray] = {}
_TEMPLATES_LOCK = threading.Lock()


@dataclass(frozen=True)
class ProblemData:
    """Aligned numpy inputs of one optimization problem.

    Attributes
    ----------
    assets : ndarray, shape (N,)
    coords : dict of str to ndarray
        Coordinates along ``asset`` (sector, asset_class, ...).
    mu : ndarray, shape (N,), or None
        Annualized expected returns (fractions).
    cov : ndarray, shape (N, N), or None
        Annualized covariance, positive definite after conditioning.
    chol : ndarray, shape (N, N), or None
        Lower Cholesky factor of ``cov``.
    scenarios : ndarray, shape (T, N), or None
        Per-period simple returns at the times every asset is observed.
    periods_per_year : int
    info : dict
    """

    assets: np.ndarray
    coords: dict[str, np.ndarray]
    mu: np.ndarray | None
    cov: np.ndarray | None
    chol: np.ndarray | None
    scenarios: np.ndarray | None
    periods_per_year: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of assets."""
        return len(self.assets)

    def labelled_mu(self) -> xr.DataArray | None:
        """``mu`` as ``expected_return(asset)``."""
        if self.mu is None:
            return None
        return self._vector(self.mu, "expected_return", {"units": MU_UNITS})

    def labelled_cov(self) -> xr.DataArray | None:
        """``cov`` as ``covariance(asset, asset_j)``."""
        if self.cov is None:
            return None
        out = self._template("matrix").copy(deep=False, data=self.cov)
        out.name = "covariance"
        out.attrs = {"units": COV_UNITS}
        return out

    def weights(self, w: np.ndarray) -> xr.DataArray:
        """A weight vector labelled ``weight(asset)``."""
        return self._vector(np.asarray(w, dtype=float), "weight", {})

    def _vector(self, values: np.ndarray, name: str, attrs: dict[str, Any]) -> xr.DataArray:
        out = self._template("vector").copy(deep=False, data=values)
        out.name = name
        out.attrs = dict(attrs)
        return out

    def _template(self, kind: str) -> xr.DataArray:
        # xarray's coordinate and index bookkeeping costs ~0.7 ms per labelled array, which
        # dominates small problems; templates are memoized by their (immutable) labels.
        key = (kind, _label_key(self.assets), *(
            (k, _label_key(v)) for k, v in sorted(self.coords.items())
        ))
        with _TEMPLATES_LOCK:
            found = _TEMPLATES.get(key)
        if found is None:
            coords = self._coords()
            if kind == "matrix":
                coords["asset_j"] = self.assets.copy()
                found = xr.DataArray(
                    np.empty((self.n, self.n)), dims=("asset", "asset_j"),
                    coords=xr.Coordinates(coords),
                )
            else:
                found = xr.DataArray(
                    np.empty(self.n), dims=("asset",), coords=xr.Coordinates(coords)
                )
            with _TEMPLATES_LOCK:
                while len(_TEMPLATES) >= 16:
                    _TEMPLATES.pop(next(iter(_TEMPLATES)))
                _TEMPLATES[key] = found
        return found

    def _coords(self) -> dict[str, Any]:
        return {"asset": self.assets, **{k: ("asset", v) for k, v in self.coords.items()}}


def _label_key(values: np.ndarray) -> tuple[Any, ...]:
    """A hashable, value-based key of a label array (object arrays by value, not address)."""
    if values.dtype.hasobject:
        return ("O", *values.tolist())
    return (values.dtype.str, values.shape, values.tobytes())


def prepare(
    returns: xr.DataArray | None,
    mu: xr.DataArray | None,
    cov: xr.DataArray | None,
    *,
    need_mu: bool,
    need_cov: bool,
    need_scenarios: bool = False,
    expected_returns: Estimator = "mean",
    covariance: Estimator = "sample",
    periods_per_year: int = 252,
    max_condition: float = 1e10,
) -> ProblemData:
    """Estimate or align ``mu``, ``cov`` and scenarios for one problem.

    Parameters
    ----------
    returns : xarray.DataArray, optional
        ``(asset, time)`` per-period simple returns (fractions), NaN before listing.
    mu : xarray.DataArray, optional
        ``(asset)`` annualized expected returns; overrides the estimate.
    cov : xarray.DataArray, optional
        ``(asset, asset_j)`` annualized covariance; overrides the estimate.
    need_mu, need_cov, need_scenarios : bool
        What the method uses.
    expected_returns : str or callable, default "mean"
        Method of `pmkit.optimize.estimators.expected_returns`, or a function
        ``returns -> mu(asset)`` giving annualized fractions.
    covariance : str or callable, default "sample"
        Method of `pmkit.risk.covariance_matrix` (per period, annualized
        here), or a function ``returns -> cov(asset, asset_j)`` giving an
        annualized covariance.
    periods_per_year : int, default 252
    max_condition : float, default 1e10
        Largest condition number accepted before repair.

    Returns
    -------
    ProblemData

    Raises
    ------
    ValidationError
        Nothing to estimate from, wrong dims, non-finite values.
    AlignmentError
        ``mu``, ``cov`` and ``returns`` disagree on the assets.
    InsufficientDataError
        Too few complete scenarios.
    """
    if isinstance(periods_per_year, bool) or not isinstance(periods_per_year, int):
        raise ValidationError("periods_per_year", periods_per_year, "must be a positive integer")
    if periods_per_year < 1:
        raise ValidationError("periods_per_year", periods_per_year, "must be a positive integer")
    check_units(mu, cov)
    values = assets = None
    coords: dict[str, np.ndarray] = {}
    if returns is not None:
        values, assets = _returns_array(returns)
        coords = _asset_coords(returns)
    info: dict[str, Any] = {}

    mu_arr = None
    if mu is not None:
        assets, mu_arr = _align_vector("mu", mu, assets)
        coords = coords or _asset_coords(mu)
    elif need_mu:
        if returns is None:
            raise ValidationError("returns", None, "needed to estimate mu (or give mu)")
        mu_arr = _estimate_mu(returns, expected_returns, periods_per_year, assets, values)

    cov_arr = chol = None
    if cov is not None:
        assets, cov_arr = _align_matrix(cov, assets)
        coords = coords or _asset_coords(cov)
    elif need_cov:
        if returns is None:
            raise ValidationError("returns", None, "needed to estimate cov (or give cov)")
        cov_arr = _estimate_cov(returns, values, covariance, periods_per_year, assets)
    if cov_arr is not None:
        cov_arr, chol, cond_info = condition_covariance(cov_arr, max_condition)
        info.update(cond_info)

    scenarios = None
    if need_scenarios:
        if values is None:
            raise ValidationError("returns", None, "scenario methods need asset returns")
        complete = ~np.isnan(values).any(axis=1)
        scenarios = np.ascontiguousarray(values[complete])
        info["scenarios"] = int(complete.sum())
        info["scenarios_dropped"] = int((~complete).sum())
        if scenarios.shape[0] < 2:
            raise InsufficientDataError(
                "returns", int(complete.sum()), "times with every asset observed; need at least 2"
            )
    if assets is None:
        raise ValidationError("returns", None, "give returns, or mu and/or cov")
    return ProblemData(
        assets=np.asarray(assets),
        coords=coords,
        mu=mu_arr,
        cov=cov_arr,
        chol=chol,
        scenarios=scenarios,
        periods_per_year=periods_per_year,
        info=info,
    )


def time_basis(units: Any) -> str | None:
    """The period a ``units`` attr is "per": ``"year"``, another (``"period"``, ``"day"``), or None.

    None when the text names no period or a relative one (``"fraction per
    period of cov"``): such units cannot be checked and are not refused.

    Parameters
    ----------
    units : object
        A ``units`` attr, e.g. ``"fraction**2 per year"``, ``"fraction per
        period, not annualized"``, ``"annualized fractions"``.

    Returns
    -------
    str or None
    """
    if not isinstance(units, str):
        return None
    text = " ".join(units.lower().split())
    if "per year" in text or ("annualized" in text and "not annualized" not in text):
        return "year"
    found = re.search(r"\bper ((?:\d+ )?[a-z]+)(?: of\b)?", text)
    if found is None or found.group(0).endswith(" of"):
        return None
    return found.group(1)


def check_units(mu: Any, cov: Any) -> None:
    """Refuse ``mu``/``cov`` whose units disagree, or are not per year.

    Parameters
    ----------
    mu, cov : xarray.DataArray or None
        Inputs given to an optimizer; their ``units`` attrs are read (see
        `time_basis`). Missing or unreadable units are not refused.

    Raises
    ------
    UnitsMismatchError
        ``mu`` and ``cov`` are per different periods (both named with their
        units), or either is per a period other than a year.
    """
    found = {}
    for name, da in (("mu", mu), ("cov", cov)):
        units = getattr(da, "attrs", {}).get("units") if da is not None else None
        basis = time_basis(units)
        if basis is not None:
            found[name] = (units, basis)
    if len(found) == 2 and found["mu"][1] != found["cov"][1]:
        (mu_units, mu_basis), (cov_units, cov_basis) = found["mu"], found["cov"]
        raise UnitsMismatchError(
            "cov",
            cov_units,
            f"disagrees with mu's units {mu_units!r}: mu is per {mu_basis}, cov per {cov_basis}."
            " Mixing them would misstate every risk figure (a Sharpe ratio by sqrt(periods per"
            " year)); give both annualized, e.g. pmkit.optimize.expected_returns(returns) with"
            " pmkit.optimize.covariance(returns)",
        )
    for name, (units, basis) in found.items():
        if basis != "year":
            want = MU_UNITS if name == "mu" else COV_UNITS
            raise UnitsMismatchError(
                name,
                units,
                f"is per {basis}; optimizers work in annualized units ({want!r}, paired with"
                f" {'cov' if name == 'mu' else 'mu'} per year). Annualize it, e.g."
                " pmkit.optimize.covariance(returns) (annualized by default) or multiply by"
                " periods_per_year",
            )


def condition_covariance(
    cov: np.ndarray, max_condition: float = 1e10
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Symmetrize, test and if needed repair a covariance matrix.

    Parameters
    ----------
    cov : ndarray, shape (N, N)
    max_condition : float
        Largest 2-norm condition number accepted.

    Returns
    -------
    cov : ndarray, shape (N, N)
        The input (symmetrized) or its repair.
    chol : ndarray, shape (N, N)
        Lower Cholesky factor of the returned matrix.
    info : dict
        ``condition_number`` (estimate before repair, inf if indefinite),
        ``repaired`` (bool), ``min_eigenvalue`` (when the spectrum was computed).
    """
    cov = 0.5 * (cov + cov.T)
    if not np.isfinite(cov).all():
        i, j = np.argwhere(~np.isfinite(cov))[0]
        raise ValidationError(f"cov[{i}, {j}]", float(cov[i, j]), "must be finite")
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        chol = None
    if chol is not None:
        # 1-norm condition estimate from the factor: O(N^2), against O(N^3) for eigvalsh.
        rcond, status = sla.lapack.dpocon(chol, np.abs(cov).sum(axis=0).max(), uplo="L")
        cond = np.inf if status or rcond <= 0 else 1.0 / float(rcond)
        if cond <= max_condition:
            return cov, chol, {"condition_number": cond, "repaired": False}
    eig = np.linalg.eigvalsh(cov)
    top = float(eig[-1])
    if top <= 0:
        raise ValidationError("cov", top, "has no positive eigenvalue")
    before = top / eig[0] if eig[0] > 0 else np.inf
    floor = top / max_condition
    from pmkit.core.covariance import nearest_psd  # the one repair (variances not kept here)

    # nearest_psd's floor is relative to the largest |eigenvalue|; this one to the largest.
    relative = floor / float(np.abs(eig).max())
    fixed = np.asarray(nearest_psd(cov, relative, keep_variances=False))
    after = top / max(float(eig[0]), floor)
    kind = "not positive definite" if eig[0] <= 0 else "ill-conditioned"
    warnings.warn(
        f"covariance is {kind}: condition number {before:.3g} (min eigenvalue {eig[0]:.3g}, "
        f"max {top:.3g}); eigenvalues floored at {floor:.3g}, condition number now {after:.3g}",
        CovarianceRepairWarning,
        stacklevel=4,
    )
    return fixed, np.linalg.cholesky(fixed), {
        "condition_number": float(before),
        "repaired": True,
        "min_eigenvalue": float(eig[0]),
    }


def _asset_coords(da: xr.DataArray) -> dict[str, np.ndarray]:
    return {
        str(k): np.asarray(c.values)
        for k, c in da.coords.items()
        if k not in ("asset", "asset_j") and c.dims == ("asset",)
    }


def _check_assets(field: str, found: np.ndarray, expected: np.ndarray | None) -> None:
    if expected is not None and (
        len(found) != len(expected) or not np.array_equal(found, np.asarray(expected))
    ):
        missing = sorted(set(map(str, expected)) ^ set(map(str, found)))
        raise AlignmentError(
            field, missing[:5] or "order", "assets differ from those of the other inputs"
        )


def _align_vector(
    field: str, da: xr.DataArray, assets: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(da, xr.DataArray) or da.dims != ("asset",):
        found = getattr(da, "dims", type(da).__name__)
        raise ValidationError(field, found, "must be a DataArray on ('asset',)")
    if assets is not None and set(da["asset"].values.tolist()) == set(assets.tolist()):
        da = da.sel(asset=assets)
    labels = np.asarray(da["asset"].values)
    _check_assets(field, labels, assets)
    values = np.asarray(da.values, dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(f"{field}[{labels[i]}]", float(values[i]), "must be finite")
    return labels, values


def _align_matrix(da: xr.DataArray, assets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(da, xr.DataArray) or da.dims != ("asset", "asset_j"):
        raise ValidationError(
            "cov", getattr(da, "dims", type(da).__name__), "must be DataArray(asset, asset_j)"
        )
    if assets is not None and set(da["asset"].values.tolist()) == set(assets.tolist()):
        da = da.sel(asset=assets, asset_j=assets)
    labels = np.asarray(da["asset"].values)
    if not np.array_equal(labels, np.asarray(da["asset_j"].values)):
        raise AlignmentError("cov.asset_j", "order", "must list the same assets as cov.asset")
    _check_assets("cov", labels, assets)
    return labels, np.asarray(da.values, dtype=float)


def _estimate_mu(
    returns: xr.DataArray,
    method: Estimator,
    ppy: int,
    assets: np.ndarray,
    values: np.ndarray | None = None,
) -> np.ndarray:
    if callable(method):
        mu = method(returns)
        check_units(mu, None)
    elif method == "mean" and values is not None and not np.isnan(values).any():
        # Complete panel: the arithmetic mean x periods, as expected_returns("mean"), without
        # its per-asset ragged bookkeeping.
        return values.mean(axis=0) * ppy
    else:
        from pmkit.optimize.estimators import expected_returns

        mu = expected_returns(returns, method=method, periods_per_year=ppy)
    return _align_vector("mu", mu, assets)[1]


def _estimate_cov(
    returns: xr.DataArray, values: np.ndarray, method: Estimator, ppy: int, assets: np.ndarray
) -> np.ndarray:
    if callable(method):
        cov = method(returns)
        check_units(None, cov)
        return _align_matrix(cov, assets)[1]
    if method == "sample" and not np.isnan(values).any():
        # Complete panel: numpy's BLAS syrk is ~2x faster than the pairwise-masked core
        # path and needs no eigen check (conditioning happens next, by Cholesky).
        centred = values - values.mean(axis=0)
        return (centred.T @ centred) * (ppy / (values.shape[0] - 1))
    with warnings.catch_warnings():
        # The conditioning step below repairs and warns once, with the condition number.
        warnings.simplefilter("ignore", CovarianceRepairWarning)
        cov = covariance_matrix(returns, method=method, repair=False)
    return np.asarray(cov.values) * ppy
