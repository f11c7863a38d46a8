"""Black–Litterman: market-implied prior, investor views and their posterior.

The model (Black and Litterman 1992; He and Litterman 1999; Idzorek 2005):

- prior: the equilibrium returns ``pi = delta Sigma w_mkt (+ rf)`` implied by
  market-capitalization weights (`implied_returns`), with the market's risk
  aversion ``delta`` (`market_implied_risk_aversion`, or 2.5 as He–Litterman);
- views: ``k`` linear statements ``P mu = Q + e``, ``e ~ N(0, Omega)``, built
  from readable specs (`View`, `view_matrices`);
- view uncertainty ``Omega``: He–Litterman ``diag(tau P Sigma P')``
  (`he_litterman_omega`) or Idzorek's confidence method (`idzorek_omega`);
- posterior mean ``mu_BL = pi + tau Sigma P' (P tau Sigma P' + Omega)^-1 (Q - P pi)``
  (the stable form of ``[(tau Sigma)^-1 + P' Omega^-1 P]^-1 [(tau Sigma)^-1 pi
  + P' Omega^-1 Q]``: it needs neither ``Omega`` nor ``Sigma`` inverted, so
  certain views, ``Omega = 0``, are allowed) and posterior covariance
  ``Sigma_BL = Sigma + M`` with ``M = tau Sigma - tau Sigma P' (P tau Sigma P'
  + Omega)^-1 P tau Sigma`` (He–Litterman);
- the unconstrained optimal weights ``w* = (delta Sigma_BL)^-1 (mu_BL - rf)``
  that He and Litterman tabulate (`unconstrained_weights`).

`BlackLitterman` ties these together; its `BlackLitterman.fit` returns a
`BlackLittermanResult` whose ``mu`` and ``cov`` any optimizer can take.

Units: everything is in the units of the covariance passed in. Pass an
annualized covariance (squared fractions per year) to get annualized
expected returns (fractions per year); then ``risk_free`` and view values
``Q`` are annual fractions too. When the covariance's ``units`` attr names
its period (as `pmkit.optimize.covariance` does), the results' ``units``
name it too, so an optimizer fitted to them checks they agree.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import xarray as xr

from pmkit.errors import (
    AlignmentError,
    DuplicateLabelError,
    InsufficientDataError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.optimize._inputs import time_basis
from pmkit.optimize.estimators import _cov_values

__all__ = [
    "BlackLitterman",
    "BlackLittermanResult",
    "View",
    "he_litterman_omega",
    "idzorek_omega",
    "implied_returns",
    "market_implied_risk_aversion",
    "unconstrained_weights",
    "view_matrices",
]

OmegaMethod = Literal["he_litterman", "idzorek"]
OMEGA_METHODS: tuple[str, ...] = ("he_litterman", "idzorek")

# Negative eigenvalues smaller than this fraction of the largest are rounding noise.
_PSD_TOLERANCE = 1e-10
# Relative asymmetry tolerated in a covariance before it is refused.
_SYMMETRY_TOLERANCE = 1e-10
# Views whose combined precision matrix is this ill-conditioned are dependent.
_MAX_CONDITION = 1e13


# ----------------------------------------------------------------------------- views


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValidationError(name, value, "must be a real number")
    if not math.isfinite(float(value)):
        raise ValidationError(name, value, "must be finite")
    return float(value)


def _leg(spec: Any, name: str) -> dict[Hashable, float]:
    """One side of a view as asset -> weight summing to 1."""
    if isinstance(spec, str) or not isinstance(spec, Mapping | Iterable):
        return {spec: 1.0}
    if isinstance(spec, Mapping):
        raw = {asset: _real(f"{name}[{asset}]", w) for asset, w in spec.items()}
    else:
        labels = list(spec)
        if len(set(labels)) != len(labels):
            raise DuplicateLabelError(name, labels, "an asset appears twice in one leg")
        raw = {asset: 1.0 for asset in labels}
    total = sum(raw.values())
    if not raw or total <= 0:
        raise ValidationError(name, spec, "needs at least one asset and weights with a sum > 0")
    return {asset: w / total for asset, w in raw.items()}


@dataclass(frozen=True)
class View:
    """One investor view: a portfolio of assets and its expected return.

    ``sum(weights[a] * mu[a]) = value``: one row of the pick matrix ``P`` and
    one entry of ``Q``. Build views with `View.absolute` and `View.relative`
    rather than by hand.

    Parameters
    ----------
    weights : mapping of asset label to float
        Pick weights of the view portfolio (a row of ``P``).
    value : float
        Expected return of the view portfolio, a fraction in the units of the
        covariance (annual for an annualized covariance).
    confidence : float, optional
        Confidence in [0, 1] for Idzorek's method (``omega="idzorek"``).
    label : str, optional
        Readable description; generated when omitted.
    """

    weights: Mapping[Hashable, float]
    value: float
    confidence: float | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", _real("view.value", self.value))
        weights = {a: _real(f"view.weights[{a}]", w) for a, w in dict(self.weights).items()}
        if not weights or not any(w != 0.0 for w in weights.values()):
            raise ValidationError("view.weights", self.weights, "a view needs a nonzero weight")
        object.__setattr__(self, "weights", weights)
        if self.confidence is not None:
            c = _real("view.confidence", self.confidence)
            if not 0.0 <= c <= 1.0:
                raise ValidationError("view.confidence", c, "must be in [0, 1]")
            object.__setattr__(self, "confidence", c)
        if self.label is None:
            object.__setattr__(self, "label", _describe(weights, self.value))

    def __hash__(self) -> int:  # the weights are a dict, which the generated hash cannot take
        return hash((tuple(self.weights.items()), self.value, self.confidence, self.label))

    @classmethod
    def absolute(
        cls, asset: Hashable, value: float, *, confidence: float | None = None,
        label: str | None = None,
    ) -> View:
        """View that ``asset`` returns ``value``: e.g. ``View.absolute("AAPL", 0.10)``."""
        return cls({asset: 1.0}, value, confidence, label)

    @classmethod
    def relative(
        cls, outperformer: Any, underperformer: Any, value: float, *,
        confidence: float | None = None, label: str | None = None,
    ) -> View:
        """View that one leg outperforms the other by ``value``.

        Each leg is an asset label, a list of labels (equal weights) or a
        mapping of label to weight (e.g. market caps), normalized to sum 1:
        ``View.relative("Germany", {"France": 52, "UK": 124}, 0.05)`` is
        He–Litterman's view 1, Germany beating a cap-weighted France/UK by 5 %.
        """
        long = _leg(outperformer, "view.outperformer")
        short = _leg(underperformer, "view.underperformer")
        overlap = set(long) & set(short)
        if overlap:
            raise ValidationError(
                "view", sorted(map(str, overlap)), "an asset is on both sides of a relative view"
            )
        weights = {**long, **{a: -w for a, w in short.items()}}
        if label is None:
            label = f"{_leg_text(long)} > {_leg_text(short)} by {value:+.4g}"
        return cls(weights, value, confidence, label)


def _leg_text(leg: Mapping[Hashable, float]) -> str:
    if len(leg) == 1:
        return str(next(iter(leg)))
    return "(" + " + ".join(f"{w:.3g} {a}" for a, w in leg.items()) + ")"


def _describe(weights: Mapping[Hashable, float], value: float) -> str:
    if len(weights) == 1:
        ((asset, w),) = weights.items()
        if w == 1.0:
            return f"{asset} = {value:.4g}"
    terms = " ".join(f"{w:+.3g} {a}" for a, w in weights.items())
    return f"{terms} = {value:.4g}"


def _parse_view(spec: Any, k: int) -> View:
    if isinstance(spec, View):
        return spec
    if isinstance(spec, tuple):
        if len(spec) == 2:
            return View.absolute(spec[0], spec[1])
        if len(spec) == 4 and spec[1] in (">", "<"):
            a, op, b, value = spec
            return View.relative(a, b, value) if op == ">" else View.relative(b, a, value)
    raise ValidationError(
        f"views[{k}]",
        spec,
        "must be a View, (asset, value) or (asset_or_leg, '>' or '<', asset_or_leg, value)",
    )


def view_matrices(
    views: Sequence[Any], assets: Sequence[Hashable]
) -> tuple[xr.DataArray, xr.DataArray]:
    """Pick matrix ``P`` and view vector ``Q`` of readable view specs.

    Parameters
    ----------
    views : sequence
        Each a `View`, ``(asset, value)`` (absolute: ``asset`` returns
        ``value``), or ``(a, ">", b, value)`` / ``(b, "<", a, value)``
        (relative: ``a`` outperforms ``b`` by ``value``; ``a``/``b`` may be
        legs as in `View.relative`). Values are fractions in the covariance's
        units.
    assets : sequence of hashable
        The asset universe, in order (columns of ``P``).

    Returns
    -------
    P : xarray.DataArray
        ``pick(view, asset)``: view portfolio weights; assets a view does not
        mention get weight 0 (they are not in the view portfolio).
    Q : xarray.DataArray
        ``view_return(view)``: expected return of each view portfolio.
        Both carry a ``description(view)`` coordinate.

    Raises
    ------
    ValidationError
        A spec of an unknown shape (named ``views[k]``).
    UnknownAssetError
        A view names an asset not in ``assets`` (the asset is named).
    """
    parsed = [_parse_view(spec, k) for k, spec in enumerate(views)]
    assets = list(assets)
    index = {a: i for i, a in enumerate(assets)}
    pick = np.zeros((len(parsed), len(assets)))
    for k, view in enumerate(parsed):
        for asset, w in view.weights.items():
            if asset not in index:
                raise UnknownAssetError(
                    f"views[{k}]", asset, f"is not an asset of the model ({len(assets)} assets)"
                )
            pick[k, index[asset]] += w
    coords = {
        "view": np.arange(len(parsed)),
        "description": ("view", np.array([v.label for v in parsed], dtype=object)),
    }
    p_da = xr.DataArray(pick, dims=("view", "asset"), coords={**coords, "asset": assets},
                        name="pick")
    q_da = xr.DataArray(
        np.array([v.value for v in parsed], dtype=np.float64), dims=("view",), coords=coords,
        name="view_return",
    )
    return p_da, q_da


def _raw_views(
    pick: Any, view_returns: Any, assets: Sequence[Hashable]
) -> tuple[xr.DataArray, xr.DataArray]:
    """Validate user-built ``P(view, asset)`` and ``Q(view)`` against the universe."""
    if not isinstance(pick, xr.DataArray) or set(pick.dims) != {"view", "asset"}:
        raise ValidationError("P", getattr(pick, "dims", type(pick).__name__),
                              "must be an xarray.DataArray with dims ('view', 'asset')")
    if not isinstance(view_returns, xr.DataArray) or view_returns.dims != ("view",):
        raise ValidationError("Q", getattr(view_returns, "dims", type(view_returns).__name__),
                              "must be an xarray.DataArray with dims ('view',)")
    pick = pick.transpose("view", "asset")
    if pick.sizes["view"] != view_returns.sizes["view"]:
        raise ValidationError(
            "Q",
            view_returns.sizes["view"],
            f"has {view_returns.sizes['view']} views but P has {pick.sizes['view']}",
        )
    if "view" in pick.coords and "view" in view_returns.coords and not np.array_equal(
        pick["view"].values, view_returns["view"].values
    ):
        raise AlignmentError(
            "Q.view", list(view_returns["view"].values), "must equal P's view labels"
        )
    known = set(assets)
    for asset in pick["asset"].values.tolist():
        if asset not in known:
            raise UnknownAssetError("P", asset, "is not an asset of the model")
    values = np.asarray(pick.values, dtype=np.float64)
    q_values = np.asarray(view_returns.values, dtype=np.float64)
    if not (np.isfinite(values).all() and np.isfinite(q_values).all()):
        raise ValidationError("P", "non-finite", "P and Q must be finite")
    zero = ~(np.abs(values) > 0).any(axis=1)
    if zero.any():
        raise ValidationError(f"P[{int(np.argmax(zero))}]", 0.0, "a view row is all zero")
    full = pick.reindex(asset=list(assets), fill_value=0.0)  # unpicked assets have pick weight 0
    desc = pick["description"].values if "description" in pick.coords else np.array(
        [f"view {k}" for k in range(pick.sizes["view"])], dtype=object
    )
    coords = {"view": np.arange(pick.sizes["view"]), "description": ("view", desc)}
    p_da = xr.DataArray(np.asarray(full.values, dtype=np.float64), dims=("view", "asset"),
                        coords={**coords, "asset": list(assets)}, name="pick")
    q_da = xr.DataArray(q_values, dims=("view",), coords=coords, name="view_return")
    return p_da, q_da


# ----------------------------------------------------------------------------- inputs


def _positive(name: str, value: Any) -> float:
    v = _real(name, value)
    if v <= 0:
        raise ValidationError(name, value, "must be > 0")
    return v


def _checked_cov(cov: Any) -> tuple[np.ndarray, np.ndarray, xr.DataArray]:
    """Symmetric positive semi-definite covariance values, labels and ordered array."""
    values, assets, ordered = _cov_values(cov)
    scale = float(np.abs(values).max()) if values.size else 0.0
    if np.abs(values - values.T).max(initial=0.0) > _SYMMETRY_TOLERANCE * max(scale, 1e-300):
        raise ValidationError("cov", "asymmetric", "covariance must be symmetric")
    if values.size:
        eig = np.linalg.eigvalsh(0.5 * (values + values.T))
        if eig[0] < -_PSD_TOLERANCE * max(abs(eig[-1]), 1e-300):
            raise ValidationError(
                "cov", float(eig[0]),
                "is not positive semi-definite (smallest eigenvalue shown); repair it first, "
                "e.g. pmkit.risk.covariance_matrix(repair=True)",
            )
    return values, assets, ordered


def _weights_vector(market_weights: Any, assets: Sequence[Hashable]) -> np.ndarray:
    """Caps or weights aligned on ``assets`` and normalized to sum 1."""
    if isinstance(market_weights, xr.DataArray):
        if market_weights.dims != ("asset",):
            raise ValidationError("market_weights", market_weights.dims,
                                  "must have exactly the dim ('asset',)")
        labels = market_weights["asset"].values.tolist()
        raw = dict(zip(labels, np.asarray(market_weights.values, dtype=np.float64).tolist(),
                       strict=True))
        if len(raw) != len(labels):
            raise DuplicateLabelError("market_weights.asset", labels, "labels must be unique")
    elif isinstance(market_weights, Mapping):
        raw = {a: _real(f"market_weights[{a}]", w) for a, w in market_weights.items()}
    else:
        raise ValidationError("market_weights", type(market_weights).__name__,
                              "must be an xarray.DataArray over asset or a mapping asset -> cap")
    known = set(assets)
    for asset in raw:
        if asset not in known:
            raise UnknownAssetError("market_weights", asset, "is not an asset of the covariance")
    missing = [a for a in assets if a not in raw]
    if missing:
        raise AlignmentError("market_weights", missing[0], "has no market weight for this asset")
    w = np.array([raw[a] for a in assets], dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValidationError("market_weights", "non-finite", "weights must be finite")
    if (w < 0).any():
        i = int(np.argmax(w < 0))
        raise ValidationError(f"market_weights[{assets[i]}]", float(w[i]),
                              "market caps/weights must be >= 0")
    total = float(w.sum())
    if total <= 0:
        raise ValidationError("market_weights", total, "must have a positive sum")
    return w / total


def _asset_coords(ordered: xr.DataArray) -> dict[str, Any]:
    return {k: c for k, c in ordered.coords.items() if c.dims == ("asset",)}


# ----------------------------------------------------------------------------- prior


def market_implied_risk_aversion(
    market_returns: xr.DataArray, risk_free: float = 0.0, periods_per_year: int = 252
) -> float:
    """Market price of risk ``delta = (E[r_m] - rf) / var(r_m)``, annualized.

    Parameters
    ----------
    market_returns : xarray.DataArray
        ``(time)`` simple returns per period of the market portfolio (e.g. the
        S&P 500), fractions; NaN entries are skipped.
    risk_free : float, default 0.0
        Annual risk-free rate, fraction.
    periods_per_year : int, default 252
        Periods per year of ``market_returns``.

    Returns
    -------
    float
        ``(mean * ppy - rf) / (var * ppy)`` with the sample variance
        (``ddof=1``), as PyPortfolioOpt's ``market_implied_risk_aversion``.
        Unitless; it is negative when the sample's market return fell short of
        ``risk_free`` (`BlackLitterman` refuses ``delta <= 0``).

    Raises
    ------
    ValidationError
        Wrong dims, inf returns, bad ``risk_free`` or ``periods_per_year``.
    InsufficientDataError
        Fewer than 2 observations, or a constant series.
    """
    if not isinstance(market_returns, xr.DataArray) or market_returns.dims != ("time",):
        raise ValidationError("market_returns", getattr(market_returns, "dims", market_returns),
                              "must be an xarray.DataArray with the dim ('time',)")
    if isinstance(periods_per_year, bool) or not isinstance(periods_per_year, int | np.integer) \
            or periods_per_year < 1:
        raise ValidationError("periods_per_year", periods_per_year, "must be an integer >= 1")
    rf = _real("risk_free", risk_free)
    r = np.asarray(market_returns.values, dtype=np.float64)
    if np.isinf(r).any():
        raise ValidationError("market_returns", "inf", "returns must be finite or NaN")
    r = r[~np.isnan(r)]
    if r.size < 2:
        raise InsufficientDataError("market_returns", int(r.size), "need at least 2 observations")
    var = float(r.var(ddof=1)) * periods_per_year
    if var <= 0:
        raise InsufficientDataError("market_returns", 0.0, "constant returns: variance is 0")
    return (float(r.mean()) * periods_per_year - rf) / var


def implied_returns(
    cov: xr.DataArray,
    market_weights: xr.DataArray | Mapping[Hashable, float],
    risk_aversion: float = 2.5,
    risk_free: float = 0.0,
) -> xr.DataArray:
    """Equilibrium returns implied by market weights: ``pi = delta Sigma w + rf``.

    Parameters
    ----------
    cov : xarray.DataArray
        ``(asset, asset_j)`` covariance; annualized gives annual returns.
    market_weights : xarray.DataArray or mapping
        ``(asset)`` market capitalizations or weights, one per asset of
        ``cov``, ``>= 0``; normalized here to sum to 1, so caps in any
        currency unit may be passed as they are.
    risk_aversion : float, default 2.5
        ``delta > 0`` (2.5: He and Litterman's world average).
    risk_free : float, default 0.0
        Risk-free rate in ``cov``'s period (annual for an annual ``cov``):
        ``delta Sigma w`` is the excess return and ``rf`` is added.

    Returns
    -------
    xarray.DataArray
        ``implied_return(asset)``, fractions per ``cov``'s period.

    Raises
    ------
    ValidationError
        Bad ``cov`` (not symmetric PSD, non-finite), ``delta <= 0``, negative
        or non-finite weights.
    UnknownAssetError, AlignmentError
        A weight for an asset ``cov`` lacks, or an asset without a weight.
    """
    delta = _positive("risk_aversion", risk_aversion)
    rf = _real("risk_free", risk_free)
    values, assets, ordered = _checked_cov(cov)
    w = _weights_vector(market_weights, list(assets))
    return xr.DataArray(delta * values @ w + rf, dims=("asset",), coords=_asset_coords(ordered),
                        name="implied_return",
                        attrs={"risk_aversion": delta, "risk_free": rf,
                               "units": _units_of(cov)[0]})


def _units_of(cov: xr.DataArray) -> tuple[str, str]:
    """``(return units, covariance units)`` in the period of ``cov``'s ``units`` attr.

    Concrete (``"fraction per year"``) when ``cov`` says its period, so an
    optimizer fitted to the posterior can check them; relative otherwise.
    """
    basis = time_basis(cov.attrs.get("units"))
    if basis is None:
        return "fraction per period of cov", "units of the input covariance"
    return f"fraction per {basis}", f"fraction**2 per {basis}"


def unconstrained_weights(
    mu: xr.DataArray, cov: xr.DataArray, risk_aversion: float, risk_free: float = 0.0
) -> xr.DataArray:
    """Unconstrained mean-variance weights ``w = (delta Sigma)^-1 (mu - rf)``.

    The optimum of ``w' (mu - rf) - delta/2 w' Sigma w`` with no budget or
    bounds (the rest is cash, possibly borrowed); reverse of
    `implied_returns`. He and Litterman (1999) tabulate it with the
    posterior covariance, Idzorek (2005) with the prior one.

    Parameters
    ----------
    mu : xarray.DataArray
        ``(asset)`` expected returns in ``cov``'s period.
    cov : xarray.DataArray
        ``(asset, asset_j)`` covariance, positive definite.
    risk_aversion : float
        ``delta > 0``.
    risk_free : float, default 0.0
        Risk-free rate in ``cov``'s period.

    Returns
    -------
    xarray.DataArray
        ``weight(asset)`` fractions of portfolio value (need not sum to 1).

    Raises
    ------
    ValidationError
        Bad or singular ``cov``, ``delta <= 0``, non-finite ``mu``.
    AlignmentError
        ``mu`` and ``cov`` do not have the same assets.
    """
    delta = _positive("risk_aversion", risk_aversion)
    rf = _real("risk_free", risk_free)
    values, assets, ordered = _checked_cov(cov)
    if not isinstance(mu, xr.DataArray) or mu.dims != ("asset",):
        raise ValidationError("mu", getattr(mu, "dims", type(mu).__name__),
                              "must be an xarray.DataArray with the dim ('asset',)")
    if set(mu["asset"].values.tolist()) != set(assets.tolist()) or mu.sizes["asset"] != len(assets):
        raise AlignmentError("mu.asset", list(mu["asset"].values), "must equal cov's assets")
    m = np.asarray(mu.sel(asset=assets).values, dtype=np.float64)
    if not np.isfinite(m).all():
        raise ValidationError("mu", "non-finite", "expected returns must be finite")
    w = _solve(delta * values, m - rf, "cov")
    return xr.DataArray(w, dims=("asset",), coords=_asset_coords(ordered), name="weight",
                        attrs={"risk_aversion": delta, "risk_free": rf, "units": "fraction"})


def _solve(a: np.ndarray, b: np.ndarray, name: str) -> np.ndarray:
    if a.size and np.linalg.cond(a) > _MAX_CONDITION:
        raise ValidationError(name, float(np.linalg.cond(a)),
                              "is singular (condition number shown): weights are not unique")
    return np.linalg.solve(a, b)


# ----------------------------------------------------------------------------- omega


def _posterior_mean(
    sigma: np.ndarray, pi: np.ndarray, p: np.ndarray, q: np.ndarray, omega: np.ndarray,
    tau: float,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``mu_BL``, ``A^-1 P tau Sigma`` (None without views) and ``tau Sigma P'``."""
    ts_p = tau * sigma @ p.T
    if p.shape[0] == 0:
        return pi.copy(), None, ts_p
    a_mat = p @ ts_p + omega  # the precision-free "A" of the stable form
    if np.linalg.cond(a_mat) > _MAX_CONDITION:
        raise ValidationError(
            "views", p.shape[0],
            "P tau Sigma P' + Omega is singular: certain (omega = 0) views that are linearly "
            "dependent, or a view portfolio with zero variance",
        )
    sol = np.linalg.solve(a_mat, np.column_stack([q - p @ pi, ts_p.T]))
    return pi + ts_p @ sol[:, 0], sol[:, 1:], ts_p


def _omega_da(diag_or_full: np.ndarray, p_da: xr.DataArray) -> xr.DataArray:
    om = np.diag(diag_or_full) if diag_or_full.ndim == 1 else diag_or_full
    coords = {"view": p_da["view"].values, "view_j": p_da["view"].values}
    return xr.DataArray(om, dims=("view", "view_j"), coords=coords, name="omega")


def _pq_values(
    cov: xr.DataArray, pick: xr.DataArray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sigma, assets, _ = _checked_cov(cov)
    if not isinstance(pick, xr.DataArray) or set(pick.dims) != {"view", "asset"}:
        raise ValidationError("P", getattr(pick, "dims", pick), "must have dims ('view', 'asset')")
    missing = set(pick["asset"].values.tolist()) - set(assets.tolist())
    if missing:
        raise UnknownAssetError("P", sorted(map(str, missing))[0], "is not an asset of cov")
    p = np.asarray(pick.transpose("view", "asset").reindex(asset=assets, fill_value=0.0).values,
                   dtype=np.float64)
    return sigma, assets, p


def he_litterman_omega(
    cov: xr.DataArray, pick: xr.DataArray, tau: float = 0.05
) -> xr.DataArray:
    """He–Litterman view uncertainty ``Omega = diag(tau P Sigma P')``.

    Each view is as uncertain as the prior on its own portfolio, so ``tau``
    cancels in the posterior mean.

    Parameters
    ----------
    cov : xarray.DataArray
        ``(asset, asset_j)`` prior covariance ``Sigma``.
    pick : xarray.DataArray
        ``(view, asset)`` pick matrix ``P`` (`view_matrices`).
    tau : float, default 0.05
        Uncertainty scale of the prior mean, ``> 0``.

    Returns
    -------
    xarray.DataArray
        ``omega(view, view_j)``, diagonal, in ``cov``'s units.
    """
    t = _positive("tau", tau)
    sigma, _, p = _pq_values(cov, pick)
    return _omega_da(np.diag(t * p @ sigma @ p.T).copy(), pick)


def idzorek_omega(
    cov: xr.DataArray,
    pick: xr.DataArray,
    view_returns: xr.DataArray,
    confidences: Sequence[float] | np.ndarray,
    prior: xr.DataArray,
    *,
    tau: float = 0.05,
    risk_aversion: float = 2.5,
    risk_free: float = 0.0,
) -> xr.DataArray:
    """View uncertainties from confidences by Idzorek's (2005) method.

    For each view ``k`` alone, following the paper's steps: the 100 %
    confident posterior (``omega_k = 0``) gives unconstrained weights
    ``w_100 = (delta Sigma)^-1 (E[R]_100 - rf)``; their tilt from the prior's
    weights ``w_eq = (delta Sigma)^-1 (pi - rf)`` is scaled by the confidence,
    ``C_k (w_100 - w_eq)``; ``omega_k`` is the view variance whose posterior
    weights carry exactly that tilt. It is found by a root search on the
    fraction of the full tilt achieved (Brent's method in ``log omega``), not
    by the closed form ``omega_k = (1 - C_k) / C_k * tau p_k Sigma p_k'``
    (Walters 2014; PyPortfolioOpt's ``idzorek_method``), which it reproduces
    and which the tests check it against.

    ``C_k = 1`` gives ``omega_k = 0`` (the view holds exactly); ``C_k = 0``
    gives ``omega_k = inf`` (the view is ignored: the posterior drops it).
    A view equal to its prior value (``p_k pi = q_k``) tilts nothing at any
    ``omega_k``; it gets the closed-form value, which then does not matter.

    Parameters
    ----------
    cov : xarray.DataArray
        ``(asset, asset_j)`` prior covariance ``Sigma``.
    pick, view_returns : xarray.DataArray
        ``(view, asset)`` pick matrix ``P`` and ``(view)`` view returns ``Q``
        (`view_matrices`).
    confidences : sequence of float
        One confidence in [0, 1] per view.
    prior : xarray.DataArray
        ``(asset)`` prior mean ``pi`` (e.g. `implied_returns`).
    tau : float, default 0.05
        ``> 0``.
    risk_aversion : float, default 2.5
        ``delta > 0``, used for the weights the confidences refer to.
    risk_free : float, default 0.0
        Risk-free rate in ``cov``'s period.

    Returns
    -------
    xarray.DataArray
        ``omega(view, view_j)``, diagonal, in ``cov``'s units (``inf`` for a
        0 % view).

    Raises
    ------
    ValidationError
        Confidences outside [0, 1] or of the wrong length (``confidences``),
        ``tau``/``delta`` ``<= 0``, a view portfolio with zero variance.
    """
    from scipy.linalg import lu_factor, lu_solve
    from scipy.optimize import brentq

    t = _positive("tau", tau)
    delta = _positive("risk_aversion", risk_aversion)
    rf = _real("risk_free", risk_free)
    sigma, assets, p = _pq_values(cov, pick)
    q = np.asarray(view_returns.values, dtype=np.float64)
    conf = _confidences(confidences, p.shape[0])
    pi = _prior_vector(prior, assets)
    lu = lu_factor(delta * sigma)
    w_eq = lu_solve(lu, pi - rf)

    omegas = np.empty(p.shape[0])
    for k in range(p.shape[0]):
        pk, qk, c = p[k : k + 1], q[k : k + 1], conf[k]
        variance = float((t * pk @ sigma @ pk.T)[0, 0])
        if not variance > 0:
            raise ValidationError(f"P[{k}]", variance, "view portfolio has zero variance")
        if c == 1.0:
            omegas[k] = 0.0
            continue
        if c == 0.0:
            omegas[k] = np.inf
            continue

        def tilt(omega: float, pk: np.ndarray = pk, qk: np.ndarray = qk) -> np.ndarray:
            mu, _, _ = _posterior_mean(sigma, pi, pk, qk, np.array([[omega]]), t)
            return lu_solve(lu, mu - rf) - w_eq

        full = tilt(0.0)
        norm2 = float(full @ full)
        if norm2 <= (1e-14 * (1.0 + float(np.abs(w_eq).max()))) ** 2:
            omegas[k] = (1.0 - c) / c * variance
            continue

        def shortfall(
            log_omega: float, full: np.ndarray = full, norm2: float = norm2, c: float = c
        ) -> float:
            return float(tilt(math.exp(log_omega)) @ full) / norm2 - c

        # The achieved fraction falls from 1 (omega -> 0) to 0 (omega -> inf); the root lies
        # within a few decades of the view variance, bracketed with ample margin.
        width = abs(math.log((1.0 - c) / c)) + 40.0
        center = math.log(variance)
        root = brentq(shortfall, center - width, center + width, xtol=1e-13, rtol=1e-15)
        omegas[k] = math.exp(root)
    return _omega_da(omegas, pick)


def _confidences(confidences: Any, k: int) -> np.ndarray:
    try:
        conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValidationError("confidences", confidences, "must be numbers in [0, 1]") from exc
    if conf.size != k:
        raise ValidationError("confidences", list(conf), f"need one per view ({k})")
    bad = ~((conf >= 0.0) & (conf <= 1.0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError(f"confidences[{i}]", float(conf[i]), "must be in [0, 1]")
    return conf


def _prior_vector(prior: Any, assets: np.ndarray) -> np.ndarray:
    if not isinstance(prior, xr.DataArray) or prior.dims != ("asset",):
        raise ValidationError("prior", getattr(prior, "dims", type(prior).__name__),
                              "must be an xarray.DataArray with the dim ('asset',)")
    labels = prior["asset"].values.tolist()
    if set(labels) != set(assets.tolist()) or len(labels) != len(assets):
        raise AlignmentError("prior.asset", labels, "must equal the covariance's assets")
    pi = np.asarray(prior.sel(asset=assets).values, dtype=np.float64)
    if not np.isfinite(pi).all():
        raise ValidationError("prior", "non-finite", "prior returns must be finite")
    return pi


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class BlackLittermanResult:
    """Prior, posterior and view uncertainty of a fitted `BlackLitterman`.

    All returns and covariances are in the units of the covariance passed to
    `BlackLitterman.fit` (annual fractions for an annualized covariance).

    Attributes
    ----------
    prior : xarray.DataArray
        ``(asset)`` prior mean ``pi`` (equilibrium returns incl. ``rf``).
    mu : xarray.DataArray
        ``(asset)`` posterior mean ``mu_BL``.
    cov : xarray.DataArray
        ``(asset, asset_j)`` posterior covariance ``Sigma + M``.
    omega : xarray.DataArray
        ``(view, view_j)`` view uncertainty used.
    weights : xarray.DataArray
        ``(asset)`` unconstrained optimal weights ``(delta cov)^-1 (mu - rf)``
        (He–Litterman's ``w*``; need not sum to 1).
    P : xarray.DataArray
        ``(view, asset)`` pick matrix.
    Q : xarray.DataArray
        ``(view)`` view returns.
    tau, risk_aversion, risk_free : float
        Parameters used.
    market_weights : xarray.DataArray or None
        ``(asset)`` normalized market weights (None when a prior was given).
    """

    prior: xr.DataArray
    mu: xr.DataArray
    cov: xr.DataArray
    omega: xr.DataArray
    weights: xr.DataArray
    P: xr.DataArray
    Q: xr.DataArray
    tau: float
    risk_aversion: float
    risk_free: float
    market_weights: xr.DataArray | None = field(default=None)


class BlackLitterman:
    """Black–Litterman posterior of market-implied returns and investor views.

    Parameters
    ----------
    market_weights : xarray.DataArray or mapping, optional
        ``(asset)`` market caps or weights (``>= 0``, normalized to sum 1);
        they define the asset universe and the prior
        ``pi = delta Sigma w + rf``. Required unless ``prior`` is given.
    views : sequence or (P, Q), default ()
        Readable view specs (see `view_matrices`: `View`, ``("AAPL", 0.10)``,
        ``("MSFT", ">", "JNJ", 0.02)``), or a tuple of user-built
        ``P(view, asset)`` and ``Q(view)`` DataArrays. Empty: posterior =
        prior.
    prior : xarray.DataArray, optional
        ``(asset)`` prior mean to use instead of the implied returns (e.g.
        published equilibrium returns, or a CAPM estimate).
    risk_aversion : float, default 2.5
        ``delta > 0``: prior (`implied_returns`), Idzorek's weights and the
        unconstrained weights.
    tau : float, default 0.05
        ``> 0``, uncertainty of the prior mean relative to ``Sigma``
        (He–Litterman 0.05, Idzorek 0.025; ``1/T`` is also common).
    omega : {"he_litterman", "idzorek"} or array-like, default "he_litterman"
        ``"he_litterman"``: ``diag(tau P Sigma P')``. ``"idzorek"``: from
        ``confidences`` (`idzorek_omega`). Or an explicit ``(k, k)`` matrix /
        length-``k`` diagonal, symmetric PSD (zeros allowed: certain views).
    confidences : sequence of float, optional
        Per-view confidences in [0, 1] for ``omega="idzorek"`` (or set on
        each `View`).
    risk_free : float, default 0.0
        Risk-free rate in the covariance's period (annual for an annual one).

    Raises
    ------
    ValidationError
        ``tau``/``risk_aversion`` ``<= 0``, confidences outside [0, 1] or of
        the wrong length, confidences without ``omega="idzorek"`` or the
        reverse, a bad ``omega`` shape, bad view specs, P/Q mismatch.
    UnknownAssetError
        A view names an asset outside the universe.
    """

    def __init__(
        self,
        market_weights: xr.DataArray | Mapping[Hashable, float] | None = None,
        views: Sequence[Any] | tuple[xr.DataArray, xr.DataArray] = (),
        *,
        prior: xr.DataArray | None = None,
        risk_aversion: float = 2.5,
        tau: float = 0.05,
        omega: OmegaMethod | Any = "he_litterman",
        confidences: Sequence[float] | None = None,
        risk_free: float = 0.0,
    ) -> None:
        self.risk_aversion = _positive("risk_aversion", risk_aversion)
        self.tau = _positive("tau", tau)
        self.risk_free = _real("risk_free", risk_free)
        if market_weights is None and prior is None:
            raise ValidationError("market_weights", None, "give market_weights or a prior")
        if prior is not None:
            if not isinstance(prior, xr.DataArray) or prior.dims != ("asset",):
                raise ValidationError("prior", getattr(prior, "dims", type(prior).__name__),
                                      "must be an xarray.DataArray with the dim ('asset',)")
            assets = prior["asset"].values.tolist()
        elif isinstance(market_weights, xr.DataArray):
            assets = market_weights["asset"].values.tolist() if "asset" in market_weights.dims \
                else []
        elif isinstance(market_weights, Mapping):
            assets = list(market_weights)
        else:
            raise ValidationError("market_weights", type(market_weights).__name__,
                                  "must be an xarray.DataArray over asset or a mapping")
        if market_weights is not None:
            _weights_vector(market_weights, assets)  # validate early, against its own labels
        self.assets: list[Hashable] = assets
        self.market_weights = market_weights
        self.prior = prior

        view_confidences: list[float | None] = []
        if isinstance(views, tuple) and len(views) == 2 and all(
            isinstance(v, xr.DataArray) for v in views
        ):
            self.P, self.Q = _raw_views(views[0], views[1], assets)
        else:
            if isinstance(views, str | View) or not isinstance(views, Sequence):
                raise ValidationError("views", views, "must be a sequence of view specs or (P, Q)")
            parsed = [_parse_view(spec, k) for k, spec in enumerate(views)]
            view_confidences = [v.confidence for v in parsed]
            self.P, self.Q = view_matrices(parsed, assets)
        k = self.P.sizes["view"]

        if any(c is not None for c in view_confidences):
            if confidences is not None:
                raise ValidationError("confidences", confidences,
                                      "given both here and on the views; give them once")
            if any(c is None for c in view_confidences):
                i = view_confidences.index(None)
                raise ValidationError(f"views[{i}].confidence", None,
                                      "every view needs a confidence when one has it")
            confidences = [float(c) for c in view_confidences if c is not None]

        self.confidences: np.ndarray | None = None
        if isinstance(omega, str):
            if omega not in OMEGA_METHODS:
                raise ValidationError("omega", omega, f"must be one of {OMEGA_METHODS} or a matrix")
            if omega == "idzorek":
                if confidences is None:
                    raise ValidationError("confidences", None,
                                          "omega='idzorek' needs one confidence per view")
                self.confidences = _confidences(confidences, k)
            elif confidences is not None:
                raise ValidationError("confidences", confidences,
                                      "are only used with omega='idzorek'")
            self.omega: str | np.ndarray = omega
        else:
            if confidences is not None:
                raise ValidationError("confidences", confidences,
                                      "are only used with omega='idzorek'")
            self.omega = _explicit_omega(omega, k)

    def fit(self, cov: xr.DataArray) -> BlackLittermanResult:
        """Posterior mean and covariance given the prior covariance ``cov``.

        Parameters
        ----------
        cov : xarray.DataArray
            ``(asset, asset_j)`` covariance ``Sigma`` of the model's assets
            (any order), symmetric PSD, e.g. `pmkit.optimize.covariance`
            (annualized). Its ``units`` attr sets the result's units.

        Returns
        -------
        BlackLittermanResult

        Raises
        ------
        ValidationError
            ``cov`` not symmetric PSD or non-finite; dependent certain views;
            a singular posterior covariance (no unconstrained weights).
        AlignmentError, UnknownAssetError
            ``cov``'s assets differ from the model's.
        """
        _, cov_assets, _ = _cov_values(cov)
        if len(set(cov_assets.tolist())) != len(cov_assets):
            raise DuplicateLabelError("cov.asset", list(cov_assets), "asset labels must be unique")
        if "asset_j" not in cov.coords:
            cov = cov.assign_coords(asset_j=cov_assets.copy())
        have = set(cov_assets.tolist())
        for asset in self.assets:
            if asset not in have:
                raise AlignmentError("cov", asset, "has no row for this asset of the model")
        for asset in cov_assets.tolist():
            if asset not in set(self.assets):
                raise UnknownAssetError("cov", asset, "is not an asset of the model")
        ordered = cov.transpose("asset", "asset_j").sel(asset=self.assets, asset_j=self.assets)
        sigma, assets, ordered = _checked_cov(ordered)
        coords = _asset_coords(ordered)

        mw_da: xr.DataArray | None = None
        if self.prior is not None:
            prior = xr.DataArray(_prior_vector(self.prior, assets), dims=("asset",),
                                 coords=coords, name="prior")
        else:
            w = _weights_vector(self.market_weights, list(assets))
            mw_da = xr.DataArray(w, dims=("asset",), coords=coords, name="market_weight")
            prior = implied_returns(ordered, mw_da, self.risk_aversion, self.risk_free)
            prior = prior.rename("prior")
        pi = np.asarray(prior.values, dtype=np.float64)
        p = np.asarray(self.P.values, dtype=np.float64)
        q = np.asarray(self.Q.values, dtype=np.float64)

        if isinstance(self.omega, np.ndarray):
            omega = _omega_da(self.omega, self.P)
        elif self.omega == "idzorek":
            assert self.confidences is not None
            omega = idzorek_omega(ordered, self.P, self.Q, self.confidences, prior, tau=self.tau,
                                  risk_aversion=self.risk_aversion, risk_free=self.risk_free)
        else:
            omega = he_litterman_omega(ordered, self.P, self.tau)

        om = np.asarray(omega.values, dtype=np.float64)
        # A view with infinite uncertainty (0 % confidence) carries no information: drop it.
        keep = np.isfinite(np.diag(om)) if om.size else np.zeros(0, dtype=bool)
        if om.size and not np.isfinite(om[np.ix_(keep, keep)]).all():
            raise ValidationError("omega", "inf", "only diagonal entries may be infinite")
        mu, sol, ts_p = _posterior_mean(
            sigma, pi, p[keep], q[keep], om[np.ix_(keep, keep)], self.tau
        )
        m = self.tau * sigma if sol is None else self.tau * sigma - ts_p @ sol
        post = sigma + m
        post = 0.5 * (post + post.T)
        cov_da = ordered.copy(data=post).rename("posterior_covariance")
        mu_units, cov_units = _units_of(cov)
        cov_da.attrs = {"units": cov_units, "tau": self.tau}
        mu_da = xr.DataArray(mu, dims=("asset",), coords=coords, name="posterior_return",
                             attrs={"units": mu_units})
        weights = unconstrained_weights(mu_da, cov_da, self.risk_aversion, self.risk_free)
        return BlackLittermanResult(
            prior=prior, mu=mu_da, cov=cov_da, omega=omega, weights=weights, P=self.P, Q=self.Q,
            tau=self.tau, risk_aversion=self.risk_aversion, risk_free=self.risk_free,
            market_weights=mw_da,
        )


def _explicit_omega(omega: Any, k: int) -> np.ndarray:
    values = np.asarray(omega.values if isinstance(omega, xr.DataArray) else omega,
                        dtype=np.float64)
    if values.ndim == 1:
        if values.size != k:
            raise ValidationError("omega", values.shape, f"diagonal needs {k} entries, one a view")
        values = np.diag(values)
    if values.shape != (k, k):
        raise ValidationError("omega", values.shape, f"must be ({k}, {k}) (views x views)")
    diag = np.diag(values)
    if np.isnan(values).any() or (diag < 0).any():
        raise ValidationError("omega", "negative/NaN", "view variances must be >= 0")
    off = values - np.diag(diag)
    if not np.isfinite(off).all() or np.abs(off - off.T).max(initial=0.0) > 0:
        raise ValidationError("omega", "asymmetric", "must be symmetric with finite off-diagonal")
    finite = np.isfinite(diag)
    sub = values[np.ix_(finite, finite)]
    if sub.size:
        eig = np.linalg.eigvalsh(sub)
        if eig[0] < -_PSD_TOLERANCE * max(abs(eig[-1]), 1e-300):
            raise ValidationError("omega", float(eig[0]), "is not positive semi-definite")
    return values
