"""The efficient frontier: least-variance portfolios across attainable expected returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from pmkit.errors import MissingDependencyError, ValidationError
from pmkit.optimize._inputs import Estimator, prepare
from pmkit.optimize._solve import QP_CHAIN, needs_cvxpy, solve_chain
from pmkit.optimize.constraints import Constraints
from pmkit.optimize.mean_variance import MinimumVariance, _risk, attainable_returns

__all__ = ["EfficientFrontier", "efficient_frontier"]


@dataclass(frozen=True)
class EfficientFrontier:
    """Points of an efficient frontier.

    Attributes
    ----------
    dataset : xarray.Dataset
        Dims ``(point, asset)``: ``weight(point, asset)``,
        ``expected_return(point)`` and ``volatility(point)`` (annualized
        fractions), ``sharpe(point)`` (at the risk-free rate given).
    risk_free : float
        Annualized risk-free rate used for ``sharpe``.
    """

    dataset: xr.Dataset
    risk_free: float = 0.0

    @property
    def weights(self) -> xr.DataArray:
        """``weight(point, asset)``."""
        return self.dataset["weight"]

    def max_sharpe_point(self) -> int:
        """Index of the frontier point with the highest Sharpe ratio."""
        return int(self.dataset["sharpe"].argmax("point"))

    def plot(self, **kwargs: Any) -> Any:
        """Volatility against expected return with hover weights (hvplot; needs ``pmkit[ui]``).

        Returns
        -------
        holoviews.Overlay
            The frontier line, its points coloured by Sharpe ratio, and the
            highest-Sharpe point marked.
        """
        from pmkit._hvplot import ensure_hvplot

        ensure_hvplot()

        frame = self.dataset[["expected_return", "volatility", "sharpe"]].to_dataframe()
        line = frame.hvplot.line(
            x="volatility", y="expected_return", color="grey", xlabel="volatility (annualized)",
            ylabel="expected return (annualized)", title="Efficient frontier", **kwargs,
        )
        dots = frame.hvplot.scatter(
            x="volatility", y="expected_return", c="sharpe", cmap="viridis",
            hover_cols=["sharpe"], size=40,
        )
        best = frame.iloc[[self.max_sharpe_point()]].hvplot.scatter(
            x="volatility", y="expected_return", color="red", marker="star", size=200,
            label="max Sharpe",
        )
        return line * dots * best

    def _repr_html_(self) -> str:
        frame = self.dataset[["expected_return", "volatility", "sharpe"]].to_dataframe()
        return "<b>Efficient frontier</b>" + frame.to_html(float_format=lambda x: f"{x:.4f}")


def efficient_frontier(
    returns: xr.DataArray | None = None,
    *,
    mu: xr.DataArray | None = None,
    cov: xr.DataArray | None = None,
    constraints: Constraints | None = None,
    points: int = 20,
    risk_free: float = 0.0,
    expected_returns: Estimator = "mean",
    covariance: Estimator = "sample",
    periods_per_year: int = 252,
    progress: bool = False,
) -> EfficientFrontier:
    """Least-variance portfolios for ``points`` expected returns from minimum variance to max.

    The targets are evenly spaced from the minimum-variance portfolio's
    expected return to the highest attainable under the constraints. One
    parametrized cvxpy problem is canonicalized once and re-solved per point.

    Parameters
    ----------
    returns, mu, cov
        As `pmkit.optimize.Optimizer.fit`.
    constraints : Constraints, optional
    points : int, default 20
        Number of frontier points (>= 2).
    risk_free : float, default 0
        Annualized risk-free rate for the Sharpe ratios.
    expected_returns, covariance, periods_per_year
        As `pmkit.optimize.Optimizer`.
    progress : bool, default False
        Show a tqdm progress bar (needs ``pmkit[ui]``).

    Returns
    -------
    EfficientFrontier

    Raises
    ------
    MissingDependencyError
        cvxpy (the ``optimize`` extra), or tqdm with ``progress=True`` (``ui``),
        is not installed.
    """
    with needs_cvxpy():
        import cvxpy as cp

    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValidationError("points", points, "must be an integer >= 2")
    cons_in = constraints or Constraints()
    data = prepare(
        returns, mu, cov, need_mu=True, need_cov=True, expected_returns=expected_returns,
        covariance=covariance, periods_per_year=periods_per_year,
    )
    cons = cons_in.resolve(data.assets, data.coords)
    w_min = MinimumVariance(cons_in)._solve(data, cons)[0]
    low = float(data.mu @ w_min)
    _, high = attainable_returns(data, cons)
    targets = np.linspace(low, high, points)

    w = cp.Variable(data.n)
    target = cp.Parameter()
    prob = cp.Problem(
        cp.Minimize(_risk(w, data) + cons.cost_expression(w)),
        [data.mu @ w >= target, *cons.cvxpy(w, data.chol)],
    )
    weights = np.empty((points, data.n))
    steps: Any = range(points)
    if progress:
        try:
            from tqdm.auto import tqdm
        except ImportError as exc:
            raise MissingDependencyError("tqdm", "ui") from exc
        steps = tqdm(steps, desc="efficient frontier")
    for k in steps:
        if k == 0:
            weights[k] = w_min
            continue
        # The top target sits on the boundary of feasibility; shave rounding off it.
        target.value = targets[k] - (1e-9 * max(1.0, abs(high)) if k == points - 1 else 0.0)
        solve_chain(prob, what="efficient frontier", chain=QP_CHAIN)
        weights[k] = np.asarray(w.value)
    ret = weights @ data.mu
    vol = np.sqrt(np.einsum("pi,ij,pj->p", weights, data.cov, weights))
    coords = {"point": np.arange(points), "asset": data.assets}
    ds = xr.Dataset(
        {
            "weight": (("point", "asset"), weights),
            "expected_return": ("point", ret),
            "volatility": ("point", vol),
            "sharpe": ("point", (ret - risk_free * weights.sum(axis=1)) / vol),
        },
        coords=coords,
        attrs={"units": "annualized fractions", "risk_free": risk_free},
    )
    return EfficientFrontier(ds, risk_free)
