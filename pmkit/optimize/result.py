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
    risk_free : float
        Annualized risk-free rate (fraction) of the optimizer that produced
        the result (``MaximumSharpe(risk_free=...)``, ``Kelly``; 0 for methods
        without one): the rate `sharpe` and `summary` use, so the Sharpe ratio
        reported is the one the optimizer maximized.
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
    risk_free: float = 0.0

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

    def sharpe(self, risk_free: float | None = None) -> float:
        """Annualized Sharpe ratio ``(mu @ w - risk_free * sum(w)) / volatility``.

        Parameters
        ----------
        risk_free : float, optional
            Annualized risk-free rate (fraction) earned by cash. Default: the
            result's own `risk_free`, the rate its optimizer was given.

        Returns
        -------
        float
            Unitless (annual excess return over annual volatility); NaN
            without ``mu`` or ``cov``.
        """
        rate = self.risk_free if risk_free is None else float(risk_free)
        excess = self.expected_return - rate * float(self.weights.sum())
        return excess / self.volatility

    def variance_contributions(self, relative: bool = False) -> xr.DataArray:
        """Euler contributions to the annualized variance, ``w_i (cov w)_i``.

        Parameters
        ----------
        relative : bool, default False
            Fractions of the variance instead (summing to 1; the same as
            ``risk_contributions(relative=True)``).

        Returns
        -------
        xarray.DataArray
            ``variance_contribution(asset)``, squared fractions per year
            summing to ``volatility ** 2`` (or fractions summing to 1).

        Raises
        ------
        ValueError
            The result carries no covariance.
        """
        from pmkit.optimize._risk_budget import variance_contributions

        if self.cov is None:
            raise ValueError("this result carries no covariance")
        rc = variance_contributions(self.weights.values, self.cov.values, relative)
        units = "fraction of the variance" if relative else "fraction**2 per year"
        out = self.weights.copy(data=rc).rename("variance_contribution")
        out.attrs = {"units": units}
        return out

    def risk_contributions(self, relative: bool = False) -> xr.DataArray:
        """Euler contributions to the annualized volatility, ``w_i (cov w)_i / volatility``.

        Parameters
        ----------
        relative : bool, default False
            Fractions of the volatility instead (summing to 1): what risk
            budgets (`RiskBudgeting`) are stated in.

        Returns
        -------
        xarray.DataArray
            ``risk_contribution(asset)``, fractions per year summing to
            `volatility` (or fractions summing to 1).

        Raises
        ------
        ValueError
            The result carries no covariance.
        """
        var = self.variance_contributions(relative)
        if relative:
            return var.rename("risk_contribution")
        out = (var / self.volatility).rename("risk_contribution")
        out.attrs = {"units": "fraction per year"}
        return out

    def to_series(self) -> Any:
        """The weights as a `pandas.Series` indexed by asset."""
        return self.weights.to_series()

    def summary(self) -> dict[str, float | str]:
        """Headline figures: method, solver, expected return, volatility, Sharpe, cash.

        ``sharpe`` is measured against ``risk_free`` (the optimizer's own rate),
        which is listed too.
        """
        return {
            "method": self.method,
            "solver": self.solver,
            "objective": self.objective,
            "expected_return": self.expected_return,
            "volatility": self.volatility,
            "risk_free": self.risk_free,
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
