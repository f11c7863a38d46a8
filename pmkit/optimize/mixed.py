"""A convex blend of several allocations: ``w = sum_k alpha_k w_k``.

Each component is an optimizer (fitted by `Mixed.fit` on the same inputs) or
an already computed `OptimizationResult`. The blend weights ``alpha`` are
non-negative and sum to 1, so the blend stays inside any convex set every
component lies in: if each component satisfies per-asset bounds, a budget,
group bounds, a turnover limit or a tracking-error limit, so does the blend.
Non-convex properties (a cardinality limit, exactly-zero holdings) are not
preserved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from pmkit.errors import AlignmentError, ValidationError
from pmkit.optimize.base import Optimizer
from pmkit.optimize.result import OptimizationResult

__all__ = ["Mixed"]

Component = Optimizer | OptimizationResult

# Blend weights may miss a sum of 1 by this much (decimal input such as 0.1 + 0.2 + 0.7).
_SUM_TOL = 1e-9


class Mixed(Optimizer):
    """Blend the weights of several optimizers or results with fixed convex weights.

    Parameters
    ----------
    components : sequence
        Either ``(component, alpha)`` pairs (with ``blend`` omitted) or the
        components alone (with ``blend``). A component is an optimizer (any
        object with ``fit(returns, *, mu, cov) -> OptimizationResult``, such
        as a `pmkit.optimize.base.Optimizer`) or an `OptimizationResult`.
    blend : sequence of float, optional
        ``alpha_k``: one per component, each >= 0, summing to 1 (within 1e-9;
        they are not renormalized).

    Notes
    -----
    The result has ``method="mixed"``, ``objective`` NaN,
    ``solver="closed-form"``, ``info["components"]`` (each component's
    `OptimizationResult`, in order), ``info["blend"]`` (the alphas) and
    ``info["methods"]``. Its ``mu`` and ``cov`` (used for reporting return and
    risk) are those of the first component that carries them. Components
    must hold the same assets (in any order); the blend follows the first
    component's order.

    Examples
    --------
    >>> mix = Mixed([(HierarchicalRiskParity(), 0.5), (PerformanceBased(), 0.5)])
    >>> res = mix.fit(returns)  # doctest: +SKIP
    """

    method = "mixed"
    needs_cov = False

    def __init__(self, components: Sequence[Any], blend: Sequence[float] | None = None) -> None:
        super().__init__()
        comps, alpha = _split(components, blend)
        for k, comp in enumerate(comps):
            fittable = callable(getattr(comp, "fit", None))
            if not isinstance(comp, OptimizationResult) and not fittable:
                raise ValidationError(
                    f"components[{k}]",
                    type(comp).__name__,
                    "must be an optimizer (with fit) or an OptimizationResult",
                )
        self.components: list[Any] = comps
        self.blend: np.ndarray = _check_blend(alpha)

    def fit(
        self,
        returns: xr.DataArray | None = None,
        *,
        mu: xr.DataArray | None = None,
        cov: xr.DataArray | None = None,
    ) -> OptimizationResult:
        """Fit every optimizer component on the same inputs and blend the weights.

        Parameters
        ----------
        returns : xarray.DataArray, optional
            ``(asset, time)`` per-period simple returns (fractions), passed to
            every optimizer component. Not needed when every component is an
            `OptimizationResult`.
        mu, cov : xarray.DataArray, optional
            Annualized expected returns ``(asset)`` / covariance
            ``(asset, asset_j)``, passed to every optimizer component.

        Returns
        -------
        OptimizationResult
            Also stored as ``self.result_``. Its ``risk_free`` is the
            components' common rate, NaN when they differ (then `sharpe`
            needs an explicit rate).

        Raises
        ------
        ValidationError
            An optimizer component but no inputs to fit it on.
        AlignmentError
            Components whose weights cover different assets (named).
        Any error of a component's own ``fit``.
        """
        nothing = returns is None and mu is None and cov is None
        results: list[OptimizationResult] = []
        for k, comp in enumerate(self.components):
            if isinstance(comp, OptimizationResult):
                results.append(comp)
                continue
            if nothing:
                raise ValidationError(
                    "returns", None, f"components[{k}] is an optimizer: give returns or mu/cov"
                )
            res = comp.fit(returns, mu=mu, cov=cov)
            if not isinstance(res, OptimizationResult):
                raise ValidationError(
                    f"components[{k}]", type(res).__name__, "fit must return an OptimizationResult"
                )
            results.append(res)

        assets = _assets(results[0].weights, 0)
        total = np.zeros(len(assets))
        for k, (res, a) in enumerate(zip(results, self.blend, strict=True)):
            total += a * _aligned(res.weights, assets, k)
        weights = results[0].weights.copy(data=total).rename("weight")

        mu_out = next((r.mu for r in results if r.mu is not None), None)
        cov_out = next((r.cov for r in results if r.cov is not None), None)
        if mu_out is not None:
            mu_out = mu_out.sel(asset=assets)
        if cov_out is not None:
            cov_out = cov_out.sel(asset=assets, asset_j=assets)
        # One Sharpe ratio needs one rate: the components' if they share it, else undefined.
        rates = {r.risk_free for r in results}
        result = OptimizationResult(
            weights=weights,
            method=self.method,
            objective=float("nan"),
            solver="closed-form",
            mu=mu_out,
            cov=cov_out,
            info={
                "components": results,
                "blend": self.blend.copy(),
                "methods": [r.method for r in results],
            },
            risk_free=rates.pop() if len(rates) == 1 else float("nan"),
        )
        self.result_ = result
        self.weights_ = result.weights
        return result

    def __repr__(self) -> str:
        parts = ", ".join(
            f"({c.method if isinstance(c, OptimizationResult) else c!r}, {a:g})"
            for c, a in zip(self.components, self.blend, strict=True)
        )
        return f"Mixed([{parts}])"


def _split(components: Any, blend: Sequence[float] | None) -> tuple[list[Any], list[Any]]:
    """Components and alphas from either calling convention."""
    if isinstance(components, OptimizationResult | Optimizer) or not isinstance(
        components, Sequence
    ):
        raise ValidationError(
            "components", type(components).__name__, "must be a sequence of components"
        )
    if len(components) == 0:
        raise ValidationError("components", [], "needs at least one component")
    comps = list(components)
    if blend is not None:
        if isinstance(blend, str) or np.ndim(blend) != 1 or len(blend) != len(comps):
            raise ValidationError(
                "blend", blend, f"must be a sequence of {len(comps)} numbers, one per component"
            )
        return comps, list(blend)
    pairs: list[Any] = []
    alphas: list[Any] = []
    for k, item in enumerate(comps):
        if not isinstance(item, tuple) or len(item) != 2:
            raise ValidationError(
                f"components[{k}]",
                type(item).__name__,
                "must be a (component, weight) pair when blend is not given",
            )
        pairs.append(item[0])
        alphas.append(item[1])
    return pairs, alphas


def _check_blend(alpha: list[Any]) -> np.ndarray:
    out = np.empty(len(alpha))
    for k, a in enumerate(alpha):
        ok = isinstance(a, int | float | np.integer | np.floating) and not isinstance(a, bool)
        if not ok or not np.isfinite(a):
            raise ValidationError(f"blend[{k}]", a, "must be a finite number")
        if a < 0:
            raise ValidationError(f"blend[{k}]", a, "must be >= 0 (a convex blend)")
        out[k] = float(a)
    if abs(out.sum() - 1.0) > _SUM_TOL:
        raise ValidationError("blend", out.tolist(), f"must sum to 1, not {out.sum():.12g}")
    return out


def _assets(weights: Any, k: int) -> np.ndarray:
    if not isinstance(weights, xr.DataArray) or weights.dims != ("asset",):
        raise ValidationError(
            f"components[{k}].weights",
            getattr(weights, "dims", type(weights).__name__),
            "must be a DataArray(asset)",
        )
    return np.asarray(weights["asset"].values)


def _aligned(weights: xr.DataArray, assets: np.ndarray, k: int) -> np.ndarray:
    labels = _assets(weights, k)
    if len(labels) != len(assets) or set(labels.tolist()) != set(assets.tolist()):
        differ = sorted(set(map(str, labels)) ^ set(map(str, assets)))
        raise AlignmentError(
            f"components[{k}].weights", differ[:5], "assets differ from those of components[0]"
        )
    return np.asarray(weights.sel(asset=assets).values, dtype=np.float64)
