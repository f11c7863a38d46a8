"""Cross-portfolio operations: compare, correlate, diversify, consolidate.

Design note 001 ("API Extensions", Cross-Portfolio Operations) asks for::

    comparison = integration.compare_portfolios(portfolio_ids, metrics)
    correlation = integration.calculate_correlation(portfolio_ids)
    diversification = integration.analyze_diversification(portfolio_ids)
    consolidated_report = integration.generate_consolidated_report(portfolio_ids)

Here they are module functions that take the `pmkit.registry.Registry` first,
so the registry can expose each as a one-line facade method.

Where the numbers come from
---------------------------
A portfolio's value at each market close is its ledger replayed to that day
(``registry.holdings``) priced at the close
(`pmkit.analytics.valuation.portfolio_values`); its external cash flows are
its ledger's cash entries (`pmkit.analytics.returns.external_flows`); its
daily return is the Modified Dietz return of the two with flows at the start
of the day (`pmkit.analytics.returns.time_weighted_returns`, weight 1), the
one definition of a portfolio return pmkit has. A day with nothing invested
(``V[t-1] + F[t] = 0``, e.g. before the first deposit) has no return (NaN),
never a zero, so a portfolio's history starts on the day it is funded.
Returns are simple daily returns as fractions (0.01 is +1 %).

Currencies
----------
`compare_portfolios` and `calculate_correlation` measure each portfolio in
its own reporting currency unless ``currency=`` (with ``fx=`` where needed)
names one currency to measure them all in. `analyze_diversification` and
`generate_consolidated_report` add values across portfolios, so they need one
currency: portfolios in different currencies raise `CurrencyMismatchError`
unless ``fx=`` rates and ``currency=`` are given (values and flows are then
converted at each day's rate, ``rate[ccy] / rate[currency]``; see the FX
convention of `pmkit.analytics.valuation`).

Permissions
-----------
Every read goes through the registry's public API (``portfolios``,
``portfolio``, ``holdings``, ``view``), acting as the registry's user. Each
requested id is looked up with ``registry.portfolio(pid)`` before anything
is computed, so an id the user may not view raises exactly what that lookup
raises (`PermissionDenied`, or `NotFoundError` for an id that does not
exist) and nothing about the other portfolios is returned.

Settings
--------
``registry.settings()["cross_portfolio"]`` (defaults in
`pmkit.registry.config.DEFAULT_SETTINGS`, all True; a missing key takes its
default):

- ``enable_analysis``: False makes `compare_portfolios`,
  `calculate_correlation` and `analyze_diversification` raise `ConfigError`
  naming the flag, and leaves the statistics, correlation and
  diversification out of the consolidated report.
- ``enable_reporting``: False makes `generate_consolidated_report` raise
  `ConfigError`.
- ``correlation_analysis``: False makes `calculate_correlation` raise
  `ConfigError`; `analyze_diversification` and the report then leave out
  every figure computed from the covariance of the portfolios' returns
  (average correlation, combined volatility, diversification ratio,
  correlation-adjusted effective number), reporting them as None.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.analytics.performance import STATISTIC_INFO, performance_table
from pmkit.analytics.returns import external_flows, time_weighted_returns
from pmkit.analytics.valuation import fx_rates, portfolio_values
from pmkit.core.performance import STATISTICS
from pmkit.errors import (
    ConfigError,
    CurrencyMismatchError,
    DuplicateLabelError,
    InsufficientDataError,
    ValidationError,
)
from pmkit.registry.config import DEFAULT_SETTINGS

if TYPE_CHECKING:
    from pmkit.registry import Registry
    from pmkit.registry.records import PortfolioInfo

__all__ = [
    "CASH_LABEL",
    "METRIC_ALIASES",
    "REPORT_METRICS",
    "TOTAL_LABEL",
    "ConsolidatedReport",
    "Diversification",
    "analyze_diversification",
    "calculate_correlation",
    "compare_portfolios",
    "cross_portfolio_flags",
    "generate_consolidated_report",
]

#: Short names accepted for `performance_table` statistics (the names
#: `pmkit.strategies.StrategyPerformance` and the design note use). The
#: statistic, its units and its definition are the full name's; the column
#: keeps the name the caller asked for.
METRIC_ALIASES: dict[str, str] = {
    "sharpe": "sharpe_ratio",
    "sortino": "sortino_ratio",
    "calmar": "calmar_ratio",
    "omega": "omega_ratio",
    "volatility": "annual_volatility",
    "annual_return": "cagr",
}

#: Statistics in the consolidated report's summary.
REPORT_METRICS: tuple[str, ...] = (
    "observations",
    "total_return",
    "cagr",
    "annual_volatility",
    "sharpe_ratio",
    "max_drawdown",
)

#: Row label of the consolidated book in `ConsolidatedReport.to_frame` (upper case:
#: portfolio ids are lower case, so it never collides with one).
TOTAL_LABEL = "TOTAL"

#: Row label of consolidated cash in `ConsolidatedReport.holdings`.
CASH_LABEL = "(cash)"

#: Modified Dietz flow weight: flows at the start of the day (GIPS-style), so a
#: deposit earns that day's return; the weight `pmkit.optimize.allocation` uses too.
FLOW_WEIGHT = 1.0

CorrelationMethod = Literal["pearson", "spearman", "kendall"]
_METHODS: tuple[str, ...] = ("pearson", "spearman", "kendall")


# -- settings and inputs --------------------------------------------------------------------------
def cross_portfolio_flags(registry: Registry) -> dict[str, bool]:
    """The registry's ``cross_portfolio`` flags, each missing key at its default.

    Parameters
    ----------
    registry : Registry
        Read through ``registry.settings()``.

    Returns
    -------
    dict of str to bool
        ``enable_analysis``, ``enable_reporting``, ``correlation_analysis``
        (defaults: `pmkit.registry.config.DEFAULT_SETTINGS`, all True).
    """
    stored = registry.settings().get("cross_portfolio") or {}
    defaults = DEFAULT_SETTINGS["cross_portfolio"]
    return {k: bool(stored.get(k, default)) for k, default in defaults.items()}


def _require_flag(flags: Mapping[str, bool], name: str, what: str) -> None:
    if not flags[name]:
        raise ConfigError(
            f"cross_portfolio.{name}",
            False,
            f"{what} is disabled in this registry's settings; "
            f"set cross_portfolio.{name} to true in its configuration to use it",
        )


def _portfolios(registry: Registry, portfolios: Any) -> list[PortfolioInfo]:
    """The requested portfolios' entries, each looked up (and permission-checked) first."""
    if portfolios is None:
        infos = list(registry.portfolios())
        if not infos:
            raise ValidationError(
                "portfolios", None, f"user {registry.user!r} may view no portfolio"
            )
        return infos
    if isinstance(portfolios, str):
        ids: list[Any] = [portfolios]
    elif isinstance(portfolios, Iterable) and not isinstance(portfolios, Mapping):
        ids = list(portfolios)
    else:
        raise ValidationError(
            "portfolios", type(portfolios).__name__, "must be a sequence of portfolio ids"
        )
    if not ids:
        raise ValidationError("portfolios", [], "name at least one portfolio")
    seen: set[str] = set()
    for pid in ids:
        if not isinstance(pid, str):
            raise ValidationError("portfolios", pid, "portfolio ids are strings")
        if pid in seen:
            raise DuplicateLabelError("portfolio", pid, "appears more than once in portfolios")
        seen.add(pid)
    # The lookup raises NotFoundError / PermissionDenied exactly as a direct call
    # would, before anything is read about any portfolio.
    return [registry.portfolio(pid) for pid in ids]


def _integer(field: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValidationError(field, value, f"must be an integer >= {low}")
    return int(value)


def _positive(field: str, value: Any) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or value <= 0:
        raise ValidationError(field, value, "must be a finite positive number")
    return float(value)


def _timestamp(field: str, value: Any) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, value, "is not a date") from exc
    if ts is pd.NaT:
        raise ValidationError(field, value, "is not a date")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tz is not None else ts


def _reporting_currency(
    infos: Sequence[PortfolioInfo], fx: Any, currency: Any, *, common: bool
) -> str | None:
    """The one currency every amount is measured in; None: each portfolio's own."""
    ccys = sorted({i.currency for i in infos})
    if currency is not None:
        if not isinstance(currency, str) or not currency:
            raise ValidationError("currency", currency, "must be a currency code, e.g. 'USD'")
        if fx is None and ccys != [currency]:
            raise CurrencyMismatchError(
                "currency",
                currency,
                f"the portfolios report in {ccys}; measuring them in {currency} needs fx= "
                "rates (currency, time)",
            )
        return currency
    if len(ccys) == 1:
        return ccys[0]
    if not common:
        return None
    if fx is None:
        raise CurrencyMismatchError(
            "portfolios",
            [i.id for i in infos],
            f"the portfolios report in {ccys}; adding their values needs fx= rates "
            "(currency, time) and currency= (the reporting currency)",
        )
    raise ValidationError(
        "currency", None, f"the portfolios report in {ccys}: name the reporting currency"
    )


# -- the book: values, flows and daily returns from the ledgers -----------------------------------
@dataclass(frozen=True)
class _Book:
    """What every operation reads, computed once per call."""

    infos: tuple[PortfolioInfo, ...]
    currency: str | None  # every amount in it; None: each portfolio in its own
    times: pd.DatetimeIndex  # valuation times: the close before ``start`` (if any), then the window
    first: int  # index in ``times`` of the first day of the window
    own_values: xr.DataArray  # nav(portfolio, time), each portfolio's currency
    values: xr.DataArray  # nav(portfolio, time) in ``currency`` (own_values when None)
    flows: xr.DataArray  # external flows (portfolio, time), like ``values``
    holdings: xr.Dataset  # quantity(portfolio, asset) and cash(portfolio) at the last time

    @property
    def ids(self) -> list[str]:
        return [i.id for i in self.infos]

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.times[-1])

    def returns(self) -> xr.DataArray:
        """Daily returns ``(portfolio, time)`` from the first day any portfolio has one."""
        return _trim(_daily_returns(self.values, self.flows).isel(time=slice(self.first, None)))

    def total_returns(self) -> xr.DataArray:
        """Daily returns of the consolidated book (values and flows summed), one row."""
        values = self.values.sum("portfolio").expand_dims(portfolio=[TOTAL_LABEL])
        flows = self.flows.sum("portfolio").expand_dims(portfolio=[TOTAL_LABEL])
        return _trim(_daily_returns(values, flows).isel(time=slice(self.first, None)))


def _trim(returns: xr.DataArray) -> xr.DataArray:
    """Drop the days before any portfolio has a return (decades of market data, say).

    Nothing changes in the statistics (leading NaN are "not started"), but the
    window's reported start becomes the first day with data. With no return at
    all the window is kept, for the statistics to refuse it by name.
    """
    any_return = np.asarray(returns.notnull().any("portfolio").values)
    if not any_return.any():
        return returns
    return returns.isel(time=slice(int(np.argmax(any_return)), None))


def _daily_returns(values: xr.DataArray, flows: xr.DataArray) -> xr.DataArray:
    """Modified Dietz daily returns (flows at the start of the day), NaN where nothing was invested.

    `time_weighted_returns` is the definition; the mask only turns its 0 for
    "nothing invested, nothing gained" into "no observation", as
    `pmkit.optimize.allocation` does, since a zero would read as a riskless day.
    """
    values = values.reset_coords(drop=True)
    flows = flows.reset_coords(drop=True)
    daily = time_weighted_returns(values, flows, flow_weight=FLOW_WEIGHT)["daily_return"]
    v, f = np.asarray(values.values), np.asarray(flows.values)
    invested = np.zeros(v.shape, dtype=bool)
    invested[:, 1:] = (v[:, :-1] + FLOW_WEIGHT * f[:, 1:]) != 0
    out = daily.where(xr.DataArray(invested, dims=daily.dims, coords=daily.coords))
    return out.rename("daily_return").assign_attrs(units="fraction per day")


def _window(market: xr.Dataset, start: Any, end: Any) -> tuple[pd.DatetimeIndex, int]:
    """Valuation times for ``[start, end]`` and the index of ``start``'s day in them."""
    times = pd.DatetimeIndex(market.indexes["time"])
    lo = 0 if start is None else int(times.searchsorted(_timestamp("start", start), "left"))
    hi = len(times) if end is None else int(times.searchsorted(_timestamp("end", end), "right"))
    if hi <= lo:
        raise InsufficientDataError(
            "start", (str(start), str(end)), "no market day between start and end (inclusive)"
        )
    base = max(lo - 1, 0)  # the close before `start` is the base of the first return
    return times[base:hi], lo - base


def _book(
    registry: Registry,
    infos: Sequence[PortfolioInfo],
    *,
    start: Any,
    end: Any,
    fx: Any,
    currency: Any,
    common: bool,
) -> _Book:
    reporting = _reporting_currency(infos, fx, currency, common=common)
    market = registry.require_market()
    times, first = _window(market, start, end)
    ids = [i.id for i in infos]
    holdings = registry.holdings(ids, times=times)
    own = portfolio_values(holdings, market.sel(time=times), fx).reset_coords(drop=True)
    view = registry.view()
    entries = [e for pid in ids for e in view.ledger(pid)]
    flows = external_flows(entries, ids, times, currency={i.id: i.currency for i in infos})
    values = own
    if reporting is not None and any(i.currency != reporting for i in infos):
        rate = fx_rates(fx, {reporting, *(i.currency for i in infos)}, times)
        factor = xr.DataArray(
            rate.sel(currency=[i.currency for i in infos]).values
            / rate.sel(currency=reporting).values[None, :],
            dims=("portfolio", "time"),
            coords={"portfolio": ids, "time": times},
        )
        values, flows = own * factor, flows * factor
    last = holdings.isel(time=-1, drop=True)
    return _Book(
        infos=tuple(infos),
        currency=reporting,
        times=times,
        first=first,
        own_values=own,
        values=values,
        flows=flows,
        holdings=last,
    )


# -- compare --------------------------------------------------------------------------------------
def _metrics(metrics: Any) -> list[tuple[str, str]]:
    """(column name, performance_table statistic) per requested metric."""
    if metrics is None:
        return [(m, m) for m in STATISTICS]
    names: list[Any] = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ValidationError("metrics", [], "name at least one metric")
    valid = [*STATISTICS, *METRIC_ALIASES]
    out: list[tuple[str, str]] = []
    for name in names:
        if not isinstance(name, str) or (name not in STATISTICS and name not in METRIC_ALIASES):
            raise ValidationError(
                "metrics", name, f"is not a statistic of performance_table; valid: {valid}"
            )
        if any(name == seen for seen, _ in out):
            raise DuplicateLabelError("metrics", name, "appears more than once")
        out.append((name, METRIC_ALIASES.get(name, name)))
    return out


def _statistics(
    returns: xr.DataArray,
    wanted: Sequence[tuple[str, str]],
    *,
    risk_free: float,
    periods_per_year: float,
) -> pd.DataFrame:
    table = performance_table(returns, risk_free=risk_free, periods_per_year=periods_per_year)
    labels = [str(p) for p in returns.indexes["portfolio"]]
    frame = pd.DataFrame(
        {name: np.asarray(table[stat].values) for name, stat in wanted},
        index=pd.Index(labels, name="portfolio"),
    )
    frame.attrs.update(
        units={name: STATISTIC_INFO[stat][0] for name, stat in wanted},
        statistics={name: stat for name, stat in wanted},
        risk_free=table.attrs["risk_free"],
        periods_per_year=table.attrs["periods_per_year"],
    )
    return frame


def compare_portfolios(
    registry: Registry,
    portfolios: Sequence[str] | None = None,
    metrics: Sequence[str] | str | None = None,
    *,
    start: Any = None,
    end: Any = None,
    risk_free: float = 0.0,
    periods_per_year: float = 252,
    fx: xr.DataArray | xr.Dataset | None = None,
    currency: str | None = None,
) -> pd.DataFrame:
    """Performance statistics of portfolios side by side, from their ledgers at market closes.

    Parameters
    ----------
    registry : Registry
        With market data; its user needs VIEWER on every portfolio.
    portfolios : sequence of str, optional
        Rows, in this order. Default: every portfolio the user may view.
    metrics : sequence of str, optional
        Columns, in this order: statistics of
        `pmkit.analytics.performance.performance_table`, by their names there
        (``"sharpe_ratio"``, ``"annual_volatility"``, ``"cagr"``,
        ``"max_drawdown"``, ...) or a short name of `METRIC_ALIASES`
        (``"sharpe"``, ``"volatility"``, ``"annual_return"``, ``"sortino"``,
        ``"calmar"``, ``"omega"``). Default: every statistic of the table.
    start, end : datetime-like, optional
        First and last day of the returns (inclusive; default: the market
        data's range). The close before ``start`` is the base of the first return.
    risk_free : float, default 0
        Risk-free return *per period* (Sharpe ratio).
    periods_per_year : float, default 252
        Trading days per year, to annualize.
    fx : xarray.DataArray or xarray.Dataset, optional
        ``rate(currency, time)`` (see `pmkit.analytics.valuation`); needed for
        assets priced in another currency than their portfolio, and with
        ``currency``.
    currency : str, optional
        Measure every portfolio's returns in this currency (values and flows
        converted daily). Default: each portfolio in its own currency.

    Returns
    -------
    pandas.DataFrame
        Index ``portfolio`` (the ids), one column per metric, float. Units are
        `performance_table`'s: ``annual_volatility`` an annualized fraction
        (``std(r, ddof=1) * sqrt(periods_per_year)``), ``sharpe_ratio``
        dimensionless and annualized, ``cagr`` a fraction per year,
        ``max_drawdown`` a fraction <= 0, ``observations`` a count of days.
        ``attrs``: ``units`` and ``statistics`` (column to statistic name),
        ``start``, ``end``, ``currency`` (None: each portfolio's own),
        ``risk_free``, ``periods_per_year``.

    Raises
    ------
    ConfigError
        ``cross_portfolio.enable_analysis`` is False, or no market data.
    ValidationError
        An unknown metric (named, with the valid ones), bad arguments.
    PermissionDenied, NotFoundError
        As ``registry.portfolio(pid)`` for an id the user may not view / that
        does not exist.
    InsufficientDataError
        A portfolio with fewer than 2 daily returns in the window (named), or
        no market day in the window.
    CurrencyMismatchError
        ``currency`` differs from a portfolio's and ``fx`` is None, or an
        asset in a foreign currency without ``fx``.
    """
    _require_flag(cross_portfolio_flags(registry), "enable_analysis", "cross-portfolio analysis")
    wanted = _metrics(metrics)
    infos = _portfolios(registry, portfolios)
    book = _book(registry, infos, start=start, end=end, fx=fx, currency=currency, common=False)
    returns = book.returns()
    frame = _statistics(returns, wanted, risk_free=risk_free, periods_per_year=periods_per_year)
    frame.attrs.update(
        start=str(returns.indexes["time"][0].date()),
        end=str(returns.indexes["time"][-1].date()),
        currency=book.currency,
    )
    return frame


# -- correlation ----------------------------------------------------------------------------------
def _correlation(
    returns: xr.DataArray, method: str, min_observations: int
) -> xr.DataArray:
    """Pairwise correlation ``(portfolio, portfolio_j)`` over each pair's common days."""
    ids = [str(p) for p in returns.indexes["portfolio"]]
    x = np.asarray(returns.transpose("portfolio", "time").values, dtype=np.float64)
    present = (~np.isnan(x)).astype(np.float64)
    counts = present @ present.T  # common days of each pair
    low = counts < min_observations
    if low.any():
        i, j = np.argwhere(low)[0]
        raise InsufficientDataError(
            f"returns[{ids[i]}, {ids[j]}]",
            int(counts[i, j]),
            "days on which both portfolios have a return; need at least "
            f"min_observations={min_observations}",
        )
    frame = pd.DataFrame(x.T, columns=pd.Index(ids))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = frame.corr(method=method, min_periods=min_observations).to_numpy(copy=True)
    # A portfolio whose returns never vary (all cash) has no correlation with
    # anything, itself included; pandas says so for some methods only.
    constant = np.array([np.nanstd(row) == 0 for row in x])
    corr[constant, :] = np.nan
    corr[:, constant] = np.nan
    diag = np.arange(len(ids))
    corr[diag, diag] = np.where(constant, np.nan, 1.0)  # exactly 1, not 1 - rounding
    t = returns.indexes["time"]
    return xr.DataArray(
        corr,
        dims=("portfolio", "portfolio_j"),
        coords={"portfolio": ids, "portfolio_j": list(ids)},
        name="correlation",
        attrs={
            "units": "1",
            "method": method,
            "n_observations": int(counts.min()),
            "start": str(t[0].date()),
            "end": str(t[-1].date()),
            "description": "correlation of daily portfolio returns over each pair's common days",
        },
    )


def _check_method(method: Any) -> str:
    if method not in _METHODS:
        raise ValidationError("method", method, f"must be one of {_METHODS}")
    return str(method)


def calculate_correlation(
    registry: Registry,
    portfolios: Sequence[str] | None = None,
    *,
    method: CorrelationMethod = "pearson",
    start: Any = None,
    end: Any = None,
    min_observations: int = 20,
    fx: xr.DataArray | xr.Dataset | None = None,
    currency: str | None = None,
) -> xr.DataArray:
    """Correlation matrix of the portfolios' daily returns.

    Each pair is measured over the days on which both have a return (pairwise,
    as ``pandas.DataFrame.corr`` and `pmkit.risk.covariance_matrix`'s
    ``"sample"`` method); a portfolio's history starts the day it is funded.

    Parameters
    ----------
    registry : Registry
        With market data; its user needs VIEWER on every portfolio.
    portfolios : sequence of str, optional
        Default: every portfolio the user may view.
    method : {"pearson", "spearman", "kendall"}, default "pearson"
        Pearson's product-moment, or Spearman's / Kendall's rank correlation
        (``pandas.DataFrame.corr``).
    start, end : datetime-like, optional
        First and last day of the returns (inclusive; default: all market days).
    min_observations : int, default 20
        Fewest common days accepted for a pair (>= 3). Below about 20 daily
        observations a sample correlation's standard error,
        ``(1 - rho**2) / sqrt(n)``, exceeds 0.2: it says little.
    fx, currency
        As `compare_portfolios`.

    Returns
    -------
    xarray.DataArray
        ``correlation(portfolio, portfolio_j)``, dimensionless, symmetric,
        unit diagonal, labelled by the ids in order (``portfolio_j`` is the
        second copy of ``portfolio``, as ``asset_j`` in
        `pmkit.risk.covariance_matrix`). A portfolio whose returns never vary
        (only cash) has no correlation: its row and column are NaN. Attrs:
        ``method``, ``n_observations`` (fewest common days of any pair),
        ``start``, ``end``.

    Raises
    ------
    ConfigError
        ``cross_portfolio.enable_analysis`` or
        ``cross_portfolio.correlation_analysis`` is False; no market data.
    InsufficientDataError
        A pair (named) with fewer than ``min_observations`` common days.
    PermissionDenied, NotFoundError, ValidationError, CurrencyMismatchError
        As `compare_portfolios`.
    """
    flags = cross_portfolio_flags(registry)
    _require_flag(flags, "enable_analysis", "cross-portfolio analysis")
    _require_flag(flags, "correlation_analysis", "cross-portfolio correlation analysis")
    method = _check_method(method)
    min_obs = _integer("min_observations", min_observations, 3)
    infos = _portfolios(registry, portfolios)
    book = _book(registry, infos, start=start, end=end, fx=fx, currency=currency, common=False)
    out = _correlation(book.returns(), method, min_obs)
    out.attrs["currency"] = book.currency or "each portfolio's own"
    return out


# -- diversification ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Diversification:
    """How diversified a set of portfolios is, taken together.

    Every weight is a fraction of the portfolios' combined value at ``as_of``
    in ``currency``. Volatilities are annualized fractions of the daily
    returns over the days on which *every* portfolio has a return (``start``
    to ``end``, ``observations`` days), so that they and the covariance come
    from one sample. None means "not computed" (the
    ``cross_portfolio.correlation_analysis`` flag is off); NaN means
    undefined (e.g. an average correlation of one portfolio).

    Attributes
    ----------
    weights : pandas.Series
        Value weight of each portfolio, ``w_i = V_i / sum_j V_j`` (fraction, sums to 1).
    volatility : pandas.Series
        Each portfolio's annualized volatility ``sigma_i = std(r_i, ddof=1) * sqrt(ppy)``.
    combined_volatility : float or None
        Annualized volatility of the value-weighted combination,
        ``sqrt(w' Sigma w)`` with ``Sigma`` the annualized sample covariance.
    average_correlation : float or None
        Mean Pearson correlation over the ``n (n - 1) / 2`` pairs (dimensionless).
    diversification_ratio : float or None
        ``DR = sum_i w_i sigma_i / sqrt(w' Sigma w)`` (dimensionless, >= 1
        for non-negative weights; 1: no diversification). Choueifaty &
        Coignard (2008), "Toward Maximum Diversification", Journal of
        Portfolio Management 35(1), 40-51.
    effective_portfolios : float
        ``1 / sum_i w_i**2``: the inverse Herfindahl index of the value
        weights, the number of equal-sized portfolios with the same
        concentration (1 to n).
    effective_portfolios_correlated : float or None
        ``DR**2``, the correlation- and volatility-adjusted effective number:
        Choueifaty, Froidure & Reynier (2013), "Properties of the Most
        Diversified Portfolio", Journal of Investment Strategies 2(2), 49-70,
        read the squared diversification ratio of a long-only portfolio as its
        number of independent risk factors. For n equal-weight portfolios of
        equal volatility and common correlation rho it is
        ``n / (1 + (n - 1) rho)``; uncorrelated with equal volatilities it is
        ``effective_portfolios``.
    asset_herfindahl : float
        Concentration of the consolidated holdings over assets,
        ``sum_a s_a**2`` with ``s_a = |v_a| / sum_b |v_b|``, ``v_a`` the
        value of asset ``a`` summed over the portfolios (cash excluded: it is
        no asset position). 1/n_assets (spread) to 1 (one asset); NaN when
        nothing is invested.
    effective_assets : float
        ``1 / asset_herfindahl``.
    overlap : xarray.DataArray
        ``overlap(portfolio, portfolio_j)``: the fraction of value two
        portfolios hold in common, ``sum_a min(|w_ia|, |w_ja|)`` over assets
        held on the same side (long or short) by both, with ``w_ia`` asset
        ``a``'s value over portfolio ``i``'s value. For fully invested
        long-only portfolios it is ``1 - active share`` of one against the
        other (Cremers & Petajisto (2009), "How Active Is Your Fund
        Manager?", Review of Financial Studies 22(9)). The diagonal is each
        portfolio's gross invested fraction (1 minus its cash weight when long only).
    currency : str
        Currency of the values behind the weights.
    as_of : pandas.Timestamp
        Market day of the weights and the holdings.
    start, end : pandas.Timestamp or None
        The common-history window of the volatilities (None when not computed).
    observations : int
        Days in that window (0 when not computed).
    """

    weights: pd.Series
    volatility: pd.Series
    combined_volatility: float | None
    average_correlation: float | None
    diversification_ratio: float | None
    effective_portfolios: float
    effective_portfolios_correlated: float | None
    asset_herfindahl: float
    effective_assets: float
    overlap: xr.DataArray
    currency: str
    as_of: pd.Timestamp
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    observations: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: floats (non-finite as None), per-portfolio mappings, ISO dates."""
        ids = [str(p) for p in self.overlap["portfolio"].values]
        return {
            "weights": {k: _json(v) for k, v in self.weights.items()},
            "volatility": {k: _json(v) for k, v in self.volatility.items()},
            "combined_volatility": _json(self.combined_volatility),
            "average_correlation": _json(self.average_correlation),
            "diversification_ratio": _json(self.diversification_ratio),
            "effective_portfolios": _json(self.effective_portfolios),
            "effective_portfolios_correlated": _json(self.effective_portfolios_correlated),
            "asset_herfindahl": _json(self.asset_herfindahl),
            "effective_assets": _json(self.effective_assets),
            "overlap": {
                a: {b: _json(self.overlap.values[i, j]) for j, b in enumerate(ids)}
                for i, a in enumerate(ids)
            },
            "currency": self.currency,
            "as_of": _iso(self.as_of),
            "start": _iso(self.start),
            "end": _iso(self.end),
            "observations": self.observations,
        }

    def scalars(self) -> dict[str, Any]:
        """The single-number figures, in the order of the attributes (for tables)."""
        return {
            "combined_volatility": self.combined_volatility,
            "average_correlation": self.average_correlation,
            "diversification_ratio": self.diversification_ratio,
            "effective_portfolios": self.effective_portfolios,
            "effective_portfolios_correlated": self.effective_portfolios_correlated,
            "asset_herfindahl": self.asset_herfindahl,
            "effective_assets": self.effective_assets,
            "observations": self.observations,
        }


@dataclass(frozen=True)
class _Positions:
    """Consolidation inputs at ``as_of``, all in the reporting currency."""

    assets: list[str]
    asset_currency: np.ndarray  # (A,)
    quantity: np.ndarray  # (P, A) units
    value: np.ndarray  # (P, A) position values
    cash: np.ndarray  # (P,)
    nav: np.ndarray  # (P,) value + cash


def _positions(registry: Registry, book: _Book, fx: Any) -> _Positions:
    """Each portfolio's position values at ``as_of`` in the reporting currency."""
    market = registry.require_market()
    base = book.currency
    if base is None:  # only reachable if a caller forgot common=True: amounts would not add up
        raise CurrencyMismatchError("currency", None, "no common currency to consolidate in")
    q = np.asarray(book.holdings["quantity"].transpose("portfolio", "asset").values, dtype=float)
    assets = [str(a) for a in book.holdings.indexes["asset"]]
    close = np.asarray(market["close"].sel(asset=assets, time=book.as_of).values, dtype=float)
    acur = np.asarray(market["currency"].sel(asset=assets).values).astype(str)
    pcur = np.array([i.currency for i in book.infos])
    held = q != 0
    if fx is None:
        asset_rate = np.ones(len(assets))
        port_rate = np.ones(len(pcur))
    else:
        needed = {base, *pcur.tolist(), *acur[held.any(axis=0)].tolist()}
        rate = fx_rates(fx, needed, [book.as_of]).isel(time=0)
        quoted = dict(zip(rate["currency"].values.astype(str).tolist(), rate.values.tolist(),
                          strict=True))
        # an unheld asset's currency may be unquoted: its zero units need no rate
        asset_rate = np.array([quoted.get(c, math.nan) for c in acur]) / quoted[base]
        port_rate = np.array([quoted[c] for c in pcur]) / quoted[base]
    # zero units of an unlisted (NaN close) asset are worth zero, not NaN;
    # portfolio_values already refused a held asset without a close or an FX rate
    value = np.where(held, q * np.where(held, close, 0.0) * asset_rate[None, :], 0.0)
    cash = np.asarray(book.holdings["cash"].values, dtype=float) * port_rate
    return _Positions(assets, acur, q, value, cash, value.sum(axis=1) + cash)


def _overlap(pos: _Positions, ids: list[str]) -> xr.DataArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(pos.nav[:, None] > 0, pos.value / pos.nav[:, None], np.nan)
    long_, short = np.clip(w, 0, None), np.clip(-w, 0, None)
    out = (np.minimum(long_[:, None, :], long_[None, :, :])
           + np.minimum(short[:, None, :], short[None, :, :])).sum(axis=2)
    bad = np.isnan(w).any(axis=1)
    out[bad, :] = np.nan
    out[:, bad] = np.nan
    return xr.DataArray(
        out,
        dims=("portfolio", "portfolio_j"),
        coords={"portfolio": ids, "portfolio_j": list(ids)},
        name="overlap",
        attrs={"units": "fraction of value", "description": "value held in common positions"},
    )


def _diversification(
    registry: Registry,
    book: _Book,
    fx: Any,
    *,
    correlation: bool,
    min_observations: int,
    periods_per_year: float,
    pos: _Positions | None = None,
) -> Diversification:
    ids = book.ids
    pos = pos if pos is not None else _positions(registry, book, fx)
    values = np.asarray(book.values.isel(time=-1).values, dtype=float)
    for k in np.flatnonzero(values < 0):
        raise ValidationError(
            "values", float(values[k]), f"portfolio {ids[k]!r} is worth less than zero: "
            "value weights need non-negative values"
        )
    total = float(values.sum())
    if not total > 0:
        raise ValidationError(
            "values", total, f"the portfolios are worth nothing at {book.as_of.date()}: "
            "no value weights"
        )
    w = values / total
    gross = np.abs(pos.value).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        hhi = float(((gross / gross.sum()) ** 2).sum()) if gross.sum() > 0 else math.nan
    returns = book.returns()
    x = np.asarray(returns.transpose("portfolio", "time").values, dtype=float)
    complete = ~np.isnan(x).any(axis=0)
    n = int(complete.sum())
    if n < min_observations:
        raise InsufficientDataError(
            "returns",
            n,
            f"days on which all of {ids} have a return; need at least "
            f"min_observations={min_observations}",
        )
    sample = x[:, complete]
    cov = np.atleast_2d(np.cov(sample, ddof=1)) * periods_per_year
    sigma = np.sqrt(np.diag(cov))
    common_days = returns.indexes["time"][complete]
    combined = avg = dr = dr2 = None
    if correlation:
        combined = float(math.sqrt(max(float(w @ cov @ w), 0.0)))
        dr = float(w @ sigma) / combined if combined > 0 else math.nan
        dr2 = dr**2
        iu = np.triu_indices(len(ids), k=1)
        if len(ids) < 2 or (sigma == 0).any():
            avg = math.nan  # no pair, or a portfolio without correlation (constant returns)
        else:
            avg = float((cov / np.outer(sigma, sigma))[iu].mean())
    return Diversification(
        weights=pd.Series(w, index=pd.Index(ids, name="portfolio"), name="weight"),
        volatility=pd.Series(sigma, index=pd.Index(ids, name="portfolio"), name="volatility"),
        combined_volatility=combined,
        average_correlation=avg,
        diversification_ratio=dr,
        effective_portfolios=float(1.0 / (w**2).sum()),
        effective_portfolios_correlated=dr2,
        asset_herfindahl=hhi,
        effective_assets=1.0 / hhi if hhi > 0 else math.nan,
        overlap=_overlap(pos, ids),
        currency=str(book.currency),
        as_of=book.as_of,
        start=pd.Timestamp(common_days[0]),
        end=pd.Timestamp(common_days[-1]),
        observations=n,
    )


def analyze_diversification(
    registry: Registry,
    portfolios: Sequence[str] | None = None,
    *,
    start: Any = None,
    end: Any = None,
    min_observations: int = 20,
    periods_per_year: float = 252,
    fx: xr.DataArray | xr.Dataset | None = None,
    currency: str | None = None,
) -> Diversification:
    """Diversification across portfolios: correlation, risk, concentration and overlap.

    Weights are the portfolios' values at the last day of the window;
    volatilities and covariance come from their daily returns over the days
    on which every one of them has a return (see `Diversification` for each
    figure, its formula, units and source).

    Parameters
    ----------
    registry : Registry
        With market data; its user needs VIEWER on every portfolio.
    portfolios : sequence of str, optional
        Default: every portfolio the user may view.
    start, end : datetime-like, optional
        The window (inclusive; default: all market days). Holdings and
        weights are those at ``end``'s market day.
    min_observations : int, default 20
        Fewest common days accepted (>= 3), as `calculate_correlation`.
    periods_per_year : float, default 252
        Annualizes the volatilities (the ratios do not depend on it).
    fx, currency
        Needed when the portfolios report in different currencies (see the
        module docstring).

    Returns
    -------
    Diversification

    Raises
    ------
    ConfigError
        ``cross_portfolio.enable_analysis`` is False; no market data.
    CurrencyMismatchError
        Portfolios in different currencies without ``fx``.
    InsufficientDataError
        Fewer than ``min_observations`` days on which all portfolios have a return.
    ValidationError
        A portfolio worth less than zero, or all together worth nothing, at the end.
    PermissionDenied, NotFoundError
        As ``registry.portfolio(pid)``.
    """
    flags = cross_portfolio_flags(registry)
    _require_flag(flags, "enable_analysis", "cross-portfolio analysis")
    min_obs = _integer("min_observations", min_observations, 3)
    ppy = _positive("periods_per_year", periods_per_year)
    infos = _portfolios(registry, portfolios)
    book = _book(registry, infos, start=start, end=end, fx=fx, currency=currency, common=True)
    return _diversification(
        registry, book, fx, correlation=flags["correlation_analysis"],
        min_observations=min_obs, periods_per_year=ppy,
    )


# -- consolidated report --------------------------------------------------------------------------
@dataclass(frozen=True)
class ConsolidatedReport:
    """One view of several portfolios: values, statistics, consolidated holdings, diversification.

    Attributes
    ----------
    summary : pandas.DataFrame
        One row per portfolio (index ``portfolio``): ``name``, ``currency``
        (the portfolio's), ``value`` and ``cash`` (in that currency, at
        ``as_of``), ``report_value`` (the value in the report ``currency``),
        ``share`` (fraction of the consolidated value) and, with analysis
        enabled, the `REPORT_METRICS` of `performance_table` (units in
        ``summary.attrs["units"]``).
    total : pandas.Series
        The consolidated book: ``value`` and ``cash`` in ``currency``,
        ``share`` 1, and its statistics: the book's values and external flows
        summed over the portfolios, then the same Modified Dietz returns.
    holdings : pandas.DataFrame
        Index ``asset``: every asset held by any of the portfolios (largest
        absolute value first), then `CASH_LABEL`. Columns ``kind``
        (``"asset"``/``"cash"``), ``currency`` (the asset's; the report's for
        cash), ``quantity`` (units summed over the portfolios; cash: the
        amount), ``value`` (in ``currency``), ``weight`` (fraction of the
        consolidated value; the column sums to 1), ``portfolios`` (how many
        hold it).
    correlation : xarray.DataArray or None
        As `calculate_correlation` (None: analysis or correlation disabled).
    diversification : Diversification or None
        As `analyze_diversification` (None: analysis disabled).
    currency : str
        Currency of ``report_value``, ``total`` and ``holdings``.
    as_of : pandas.Timestamp
        Market day of values and holdings.
    start, end : pandas.Timestamp
        The window of the returns.
    flags : dict of str to bool
        The ``cross_portfolio`` settings the report was made under.
    """

    summary: pd.DataFrame
    total: pd.Series
    holdings: pd.DataFrame
    correlation: xr.DataArray | None
    diversification: Diversification | None
    currency: str
    as_of: pd.Timestamp
    start: pd.Timestamp
    end: pd.Timestamp
    flags: dict[str, bool]

    def to_frame(self) -> pd.DataFrame:
        """The summary with the consolidated book as a last row, `TOTAL_LABEL`."""
        total = self.total.to_frame(TOTAL_LABEL).T
        frame = pd.concat([self.summary, total.astype(self.summary.dtypes.to_dict())], axis=0)
        frame.index.name = "portfolio"
        frame.attrs = dict(self.summary.attrs)
        return frame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every table as nested mappings, non-finite numbers as None."""
        corr = None
        if self.correlation is not None:
            ids = [str(p) for p in self.correlation["portfolio"].values]
            corr = {
                a: {b: _json(self.correlation.values[i, j]) for j, b in enumerate(ids)}
                for i, a in enumerate(ids)
            }
        return {
            "currency": self.currency,
            "as_of": _iso(self.as_of),
            "start": _iso(self.start),
            "end": _iso(self.end),
            "flags": dict(self.flags),
            "summary": _records(self.summary),
            "total": {k: _json(v) for k, v in self.total.items()},
            "holdings": _records(self.holdings),
            "correlation": corr,
            "diversification": (
                None if self.diversification is None else self.diversification.to_dict()
            ),
        }

    def _repr_html_(self) -> str:
        esc = html.escape
        n = len(self.summary)
        head = (
            f"<b>Consolidated report</b>: {n} portfolio{'s' if n != 1 else ''}, values as of "
            f"{esc(_iso(self.as_of) or '')} in {esc(self.currency)}; returns "
            f"{esc(_iso(self.start) or '')} to {esc(_iso(self.end) or '')}"
        )
        parts = [f"<div class='pmkit-consolidated-report'><p>{head}</p>",
                 "<h4>Portfolios</h4>", _html_table(self.to_frame()),
                 "<h4>Consolidated holdings</h4>", _html_table(self.holdings)]
        if self.correlation is not None:
            corr = self.correlation.to_pandas()
            corr.index.name, corr.columns.name = "portfolio", None
            parts += [f"<h4>Correlation of daily returns ({esc(self.correlation.attrs['method'])})"
                      "</h4>", _html_table(corr)]
        else:
            parts.append(f"<p>Correlation: {esc(_disabled(self.flags, correlation=True))}</p>")
        if self.diversification is not None:
            d = self.diversification
            table = pd.DataFrame(
                {"value": [_json(v) for v in d.scalars().values()]},
                index=pd.Index(list(d.scalars()), name="figure"),
            )
            parts += ["<h4>Diversification</h4>", _html_table(table)]
        else:
            parts.append(f"<p>Diversification: {esc(_disabled(self.flags))}</p>")
        parts.append("</div>")
        return "".join(parts)


def _disabled(flags: Mapping[str, bool], *, correlation: bool = False) -> str:
    if not flags.get("enable_analysis", True):
        return "not computed (cross_portfolio.enable_analysis is off)"
    if correlation and not flags.get("correlation_analysis", True):
        return "not computed (cross_portfolio.correlation_analysis is off)"
    return "not computed"


def generate_consolidated_report(
    registry: Registry,
    portfolios: Sequence[str] | None = None,
    *,
    start: Any = None,
    end: Any = None,
    method: CorrelationMethod = "pearson",
    min_observations: int = 20,
    risk_free: float = 0.0,
    periods_per_year: float = 252,
    fx: xr.DataArray | xr.Dataset | None = None,
    currency: str | None = None,
) -> ConsolidatedReport:
    """A consolidated report: summary, holdings by asset, correlation, diversification.

    Parameters
    ----------
    registry : Registry
        With market data; its user needs VIEWER on every portfolio.
    portfolios : sequence of str, optional
        Default: every portfolio the user may view.
    start, end : datetime-like, optional
        Window of the returns (inclusive); values and holdings are those of
        ``end``'s market day (default: the last).
    method, min_observations
        Of the correlation, as `calculate_correlation`.
    risk_free, periods_per_year
        Of the statistics, as `compare_portfolios`.
    fx, currency
        Needed when the portfolios report in different currencies (see the
        module docstring).

    Returns
    -------
    ConsolidatedReport
        ``.summary``, ``.total``, ``.holdings``, ``.correlation``,
        ``.diversification``, ``.to_frame()``, ``.to_dict()``, and an HTML
        view in Jupyter.

    Raises
    ------
    ConfigError
        ``cross_portfolio.enable_reporting`` is False; no market data.
    CurrencyMismatchError
        Portfolios in different currencies without ``fx`` (as ``Registry.group_value``).
    InsufficientDataError, ValidationError, PermissionDenied, NotFoundError
        As `compare_portfolios`, `calculate_correlation` and
        `analyze_diversification` for the parts the settings enable.
    """
    flags = cross_portfolio_flags(registry)
    _require_flag(flags, "enable_reporting", "cross-portfolio reporting")
    method = _check_method(method)
    min_obs = _integer("min_observations", min_observations, 3)
    ppy = _positive("periods_per_year", periods_per_year)
    infos = _portfolios(registry, portfolios)
    book = _book(registry, infos, start=start, end=end, fx=fx, currency=currency, common=True)
    pos = _positions(registry, book, fx)
    ids = book.ids
    report_ccy = str(book.currency)
    consolidated = float(pos.nav.sum())

    summary = pd.DataFrame(
        {
            "name": [i.name for i in infos],
            "currency": [i.currency for i in infos],
            "value": np.asarray(book.own_values.isel(time=-1).values, dtype=float),
            "cash": np.asarray(book.holdings["cash"].values, dtype=float),
            "report_value": pos.nav,
            "share": pos.nav / consolidated if consolidated > 0 else np.full(len(ids), np.nan),
        },
        index=pd.Index(ids, name="portfolio"),
    )
    total = pd.Series(
        {"name": "Consolidated", "currency": report_ccy, "value": consolidated,
         "cash": float(pos.cash.sum()), "report_value": consolidated,
         "share": 1.0 if consolidated > 0 else math.nan},
        name=TOTAL_LABEL,
    )
    units: dict[str, str] = {"value": "portfolio currency", "cash": "portfolio currency",
                             "report_value": report_ccy, "share": "fraction"}
    returns = book.returns()
    correlation = diversification = None
    if flags["enable_analysis"]:
        wanted = [(m, m) for m in REPORT_METRICS]
        stats = _statistics(returns, wanted, risk_free=risk_free, periods_per_year=ppy)
        book_stats = _statistics(book.total_returns(), wanted, risk_free=risk_free,
                                 periods_per_year=ppy)
        summary = summary.join(stats)
        total = pd.concat([total, book_stats.loc[TOTAL_LABEL]])
        units.update(stats.attrs["units"])
        diversification = _diversification(
            registry, book, fx, correlation=flags["correlation_analysis"],
            min_observations=min_obs, periods_per_year=ppy, pos=pos,
        )
        if flags["correlation_analysis"]:
            correlation = _correlation(returns, method, min_obs)
    summary.attrs.update(units=units, currency=report_ccy, as_of=_iso(book.as_of))

    holdings = _consolidated_holdings(pos, report_ccy, consolidated)
    t = returns.indexes["time"]
    return ConsolidatedReport(
        summary=summary,
        total=total,
        holdings=holdings,
        correlation=correlation,
        diversification=diversification,
        currency=report_ccy,
        as_of=book.as_of,
        start=pd.Timestamp(t[0]),
        end=pd.Timestamp(t[-1]),
        flags=dict(flags),
    )


def _consolidated_holdings(pos: _Positions, currency: str, consolidated: float) -> pd.DataFrame:
    held = (pos.quantity != 0).any(axis=0)
    value = pos.value.sum(axis=0)
    rows = pd.DataFrame(
        {
            "kind": "asset",
            "currency": pos.asset_currency,
            "quantity": pos.quantity.sum(axis=0),
            "value": value,
            "portfolios": (pos.quantity != 0).sum(axis=0),
        },
        index=pd.Index(pos.assets, name="asset"),
    )[held]
    rows = rows.iloc[np.argsort(-np.abs(rows["value"].to_numpy()), kind="stable")]
    cash = pd.DataFrame(
        {"kind": ["cash"], "currency": [currency], "quantity": [float(pos.cash.sum())],
         "value": [float(pos.cash.sum())], "portfolios": [int((pos.cash != 0).sum())]},
        index=pd.Index([CASH_LABEL], name="asset"),
    )
    frame = pd.concat([rows, cash])
    frame["portfolios"] = frame["portfolios"].astype(np.int64)
    frame["weight"] = frame["value"] / consolidated if consolidated > 0 else math.nan
    frame.attrs.update(
        currency=currency,
        units={"quantity": "units (cash: currency)", "value": currency,
               "weight": "fraction of consolidated value"},
    )
    return frame


# -- formatting -----------------------------------------------------------------------------------
def _json(value: Any) -> Any:
    """A JSON-ready scalar: numpy scalars unwrapped, NaN and inf as None."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _iso(ts: pd.Timestamp | None) -> str | None:
    return None if ts is None else str(pd.Timestamp(ts).date())


def _records(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {
        str(idx): {str(col): _json(val) for col, val in row.items()}
        for idx, row in frame.iterrows()
    }


def _cell(value: Any) -> str:
    value = _json(value)
    if value is None:
        return "—"
    if isinstance(value, bool | int):
        return str(value)
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _html_table(frame: pd.DataFrame) -> str:
    """An HTML table in which every label and cell is escaped (ids and names are user text)."""
    esc = html.escape
    name = frame.index.name or ""
    head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
    body = "".join(
        f"<tr><th>{esc(str(idx))}</th>"
        + "".join(f"<td>{esc(_cell(v))}</td>" for v in row)
        + "</tr>"
        for idx, row in zip(frame.index, frame.itertuples(index=False, name=None), strict=True)
    )
    return (
        f"<table><thead><tr><th>{esc(str(name))}</th>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )
