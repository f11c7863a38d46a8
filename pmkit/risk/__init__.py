"""Labelled risk over the JAX core.

VaR and expected shortfall (historical, Gaussian, Cornish–Fisher, Monte Carlo)
with Euler contributions, covariance estimators, stress tests, exposures,
limits with routed breach events, and position sizing. Results are indexed by
``portfolio`` (and ``group``); weights may be dask-backed, chunked over
``portfolio``. The submodules hold the details: `pmkit.risk.measures`,
`pmkit.risk.covariance`, `pmkit.risk.stress`, `pmkit.risk.exposures`,
`pmkit.risk.limits`, `pmkit.risk.sizing`.
"""

from pmkit.risk.covariance import CovarianceRepairWarning, covariance_matrix
from pmkit.risk.exposures import (
    asset_class_exposure,
    benchmark_beta,
    concentration,
    current_weights,
    exposure_report,
    factor_betas,
    factor_returns,
    leverage,
    sector_exposure,
)
from pmkit.risk.limits import LimitBreach, breaches_frame, check_limits, limit_metrics
from pmkit.risk.measures import (
    expected_shortfall,
    risk_contributions,
    risk_report,
    var,
    variance_contributions,
    volatility,
)
from pmkit.risk.sizing import (
    fixed_fractional_size,
    kelly_fraction,
    kelly_size,
    portfolio_heat,
    size_for_portfolio,
    vol_target_size,
)
from pmkit.risk.stress import STANDARD_WINDOWS, historical_stress, hypothetical_stress

__all__ = [
    "STANDARD_WINDOWS",
    "CovarianceRepairWarning",
    "LimitBreach",
    "asset_class_exposure",
    "benchmark_beta",
    "breaches_frame",
    "check_limits",
    "concentration",
    "covariance_matrix",
    "current_weights",
    "expected_shortfall",
    "exposure_report",
    "factor_betas",
    "factor_returns",
    "fixed_fractional_size",
    "historical_stress",
    "hypothetical_stress",
    "kelly_fraction",
    "kelly_size",
    "leverage",
    "limit_metrics",
    "portfolio_heat",
    "risk_contributions",
    "risk_report",
    "sector_exposure",
    "size_for_portfolio",
    "var",
    "variance_contributions",
    "vol_target_size",
    "volatility",
]
