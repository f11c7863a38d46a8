"""The labelled answer every optimizer returns."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["OptimizationResult"]


@dataclass(frozen=True)
class OptimizationResult:
    """Weights found by an optimizer, with the inputs and diagnostics that produced them.

    Attributes
    ----------
    weights : xarray.DataArray
        ``weight(asset)``: fraction of portfolio value per asset (negative for
        shorts). ``1 - weights.sum()`` is held in cash.
    method : str
        The optimizer, e.g. ``"minimum variance"``.
    objective : float
        The optimal value of the method's own objective, in its units (see
        the method's docstring); NaN for heuristic methods without one.
    solver : str
        What solved it: ``"active-set"``, ``"newton"``, ``"highs"``, a cvxpy
        solver name such as ``"CLARABEL"``, or ``"closed-form"``.
    status : str
        ``"optimal"`` for every returned result (failures raise).
    mu : xarray.DataArray or None
        ``(asset)`` expected returns used, annualized fractions.
    cov : xarray.DataArray or None
        ``(asset, asset_j)`` covariance used (after any repair), annualized.
    attempts : dict of str to str
        Solver name to the status it returned, in the order tried (the
        fallback chain); empty for methods that need no solver.
    info : dict
        Method-specific extras (iterations, KKT residuals, VaR level, ...).
    """

    weights: xr.DataArray
    method: str
    objective: float
    solver: str
    status: str = "optimal"
    mu: xr.DataArray | None = None
    cov: xr.DataArray | None = None
    attempts: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def cash(self) -> float:
        """Fraction of value left in cash, ``1 - sum(weights)``."""
        return float(1.0 - self.weights.sum())

    @property
    def expected_return(self) -> float:
        """Annualized expected return ``mu @ w`` (fraction); NaN without ``mu``."""
        if self.mu is None:
            return float("nan")
        return float(np.dot(self.mu.values, self.weights.values))

    @property
    def volatility(self) -> float:
        """Annualized volatility ``sqrt(w' cov w)`` (fraction); NaN without ``cov``."""
        if self.cov is None:
            return float("nan")
        w = self.weights.values
        return float(np.sqrt(max(w @ self.cov.values @ w, 0.0)))

    def sharpe(self, risk_free: float = 0.0) -> float:
        """Annualized Sharpe ratio ``(mu @ w - risk_free) / volatility``.

        Parameters
        ----------
        risk_free : float, default 0
            Annualized risk-free rate (fraction) earned by cash.
        """
        excess = self.expected_return - risk_free * float(self.weights.sum())
        return excess / self.volatility

    def risk_contributions(self) -> xr.DataArray:
        """Euler contributions to variance as fractions of it, ``w_i (cov w)_i / w' cov w``.

        Returns
        -------
        xarray.DataArray
            ``risk_contribution(asset)``; sums to 1.

        Raises
        ------
        ValueError
            The result carries no covariance.
        """
        if self.cov is None:
            raise ValueError("this result carries no covariance")
        w = self.weights.values
        marginal = self.cov.values @ w
        total = float(w @ marginal)
        return self.weights.copy(data=w * marginal / total).rename("risk_contribution")

    def to_series(self) -> Any:
        """The weights as a `pandas.Series` indexed by asset."""
        return self.weights.to_series()

    def summary(self) -> dict[str, float | str]:
        """Headline figures: method, solver, expected return, volatility, Sharpe, cash."""
        return {
            "method": self.method,
            "solver": self.solver,
            "objective": self.objective,
            "expected_return": self.expected_return,
            "volatility": self.volatility,
            "sharpe": self.sharpe(),
            "cash": self.cash,
            "holdings": int((np.abs(self.weights.values) > 1e-6).sum()),
        }

    def __repr__(self) -> str:
        s = self.summary()
        top = self.weights.to_series().sort_values(ascending=False).head(5)
        lines = [
            f"OptimizationResult({s['method']}, solver={s['solver']}, "
            f"objective={s['objective']:.6g}, holdings={s['holdings']})",
            f"  expected return {s['expected_return']:.4%}  volatility {s['volatility']:.4%}  "
            f"cash {s['cash']:.4%}",
        ]
        lines += [f"  {k}: {v:.4%}" for k, v in top.items()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        s = self.summary()
        top = self.weights.to_series().sort_values(ascending=False)
        top = top[np.abs(top) > 1e-6].head(15)
        rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{v:.2%}</td></tr>" for k, v in top.items()
        )
        return (
            f"<div><b>{html.escape(str(s['method']))}</b> via {html.escape(str(s['solver']))}: "
            f"expected return {s['expected_return']:.2%}, volatility {s['volatility']:.2%}, "
            f"cash {s['cash']:.2%}, {s['holdings']} holdings"
            f"<table><tr><th>asset</th><th>weight</th></tr>{rows}</table></div>"
        )
