"""Operations overviews of a registry: value, day P&L and risk per portfolio and group.

These are what the front ends show (registry, groups and risk views, ``%pm
risk``), composed from the labelled analytics and risk functions, so a
notebook user gets the same numbers from the same calls. Results are cached
per store state (the last audit record), market data, user and arguments:
views that poll the store every few seconds recompute only after a change.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.errors import ConfigError, InsufficientDataError, ValidationError

if TYPE_CHECKING:
    from pmkit.registry import Registry

__all__ = ["TRADING_DAYS", "group_overview", "portfolio_overview", "risk_overview"]

#: Trading days per year used to annualize daily volatility.
TRADING_DAYS = 252

T = TypeVar("T")


def _cached(registry: Registry, name: str, args: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """``compute()``, cached by the registry until the store changes (per user and market)."""
    key = (name, registry.revision(), registry.user, *args)
    value, _ = registry.derived.get(key, (registry.market,), compute)
    return _copy(value)


def _copy(value: T) -> T:
    # callers may edit what they get; the cached object must stay as computed
    return value.copy(deep=True) if hasattr(value, "copy") else value  # type: ignore[attr-defined]


def _check(confidence: Any, lookback: Any, least: int = 30) -> tuple[float, int]:
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not (
        0.5 <= float(confidence) < 1
    ):
        raise ValidationError("confidence", confidence, "must be a fraction in [0.5, 1)")
    if isinstance(lookback, bool) or not isinstance(lookback, int) or lookback < least:
        raise ValidationError("lookback", lookback, f"must be an integer >= {least}")
    return float(confidence), int(lookback)


def _market(registry: Registry) -> xr.Dataset:
    if registry.market is None:
        raise ConfigError("registry.market", None, "overviews need a registry with market data")
    return registry.market


def _as_of(market: xr.Dataset, at: Any) -> pd.Timestamp:
    """The market day of ``at``; it needs a day before it (day P&L, returns)."""
    from pmkit.model import market_time_at

    as_of = market_time_at(market, at)
    if market.indexes["time"].get_loc(as_of) < 1:
        raise ValidationError("at", at, "needs a market day before it")
    return as_of


def _asset_returns(market: xr.Dataset, as_of: pd.Timestamp, lookback: int) -> xr.DataArray:
    """The last ``lookback`` daily simple returns up to ``as_of`` (NaN before listing)."""
    from pmkit.model import simple_returns

    closes = market.sel(time=slice(None, as_of))
    if closes.sizes["time"] < lookback + 1:
        raise InsufficientDataError(
            "lookback", lookback, f"only {closes.sizes['time']} closes up to {as_of.date()}"
        )
    window = closes.isel(time=slice(-(lookback + 1), None))
    return simple_returns(window).isel(time=slice(1, None))


def _day_values(
    registry: Registry, ids: Sequence[str], as_of: pd.Timestamp
) -> tuple[xr.DataArray, xr.DataArray]:
    """Values at the previous market day and ``as_of``, and the day's P&L net of flows."""
    from pmkit.analytics.returns import external_flows
    from pmkit.analytics.valuation import daily_pnl, portfolio_values

    market = _market(registry)
    times = market.indexes["time"]
    days = [times[times.get_loc(as_of) - 1], as_of]
    holdings = registry.holdings(list(ids), times=days)
    values = portfolio_values(holdings, market.sel(time=days))
    entries = [e for p in ids for e in registry.ledger(p)]
    flows = external_flows(entries, list(ids), days)
    return values, daily_pnl(values, flows).isel(time=-1)


def _risk(weights: xr.DataArray, returns: xr.DataArray, confidence: float) -> pd.DataFrame:
    """Annualized volatility and 1-day historical VaR of ``weights(portfolio, asset)``."""
    from pmkit.risk import var, volatility

    invested = np.abs(weights).sum("asset") > 0
    out = pd.DataFrame(index=pd.Index(weights["portfolio"].values, name="id"),
                       columns=["volatility", "var"], dtype=float)
    if not bool(invested.any()):
        return out
    w = weights.sel(portfolio=invested)
    ids = [str(p) for p in w["portfolio"].values]
    out.loc[ids, "volatility"] = volatility(w, returns).values * math.sqrt(TRADING_DAYS)
    out.loc[ids, "var"] = var(w, returns, confidence=confidence).values
    return out


def portfolio_overview(
    registry: Registry, at: Any = None, *, confidence: float = 0.95, lookback: int = 252
) -> pd.DataFrame:
    """Every visible portfolio's status, value, day P&L and risk at one market day.

    Parameters
    ----------
    registry : Registry
        With market data; rows are the portfolios its user may view.
    at : datetime-like, optional
        Market day (the last at or before it); default the last market day.
    confidence : float, default 0.95
        VaR confidence level (fraction).
    lookback : int, default 252
        Daily returns behind the risk figures (>= 30).

    Returns
    -------
    pandas.DataFrame
        Index ``id``; columns ``name``, ``status``, ``segment``, ``tags``,
        ``currency``, ``cash`` and ``value`` (as `Registry.summary`, currency),
        ``day_pnl`` (currency: the day's value change net of external cash
        flows), ``day_return`` (fraction of the previous day's value),
        ``volatility`` (annualized fraction, ex ante: today's weights over the
        window) and ``var`` (1-day historical VaR, fraction of value, loss
        positive). Risk is NaN for a portfolio with nothing invested.
        ``attrs``: ``as_of``, ``confidence``, ``lookback``.
    """
    confidence, lookback = _check(confidence, lookback)
    market = _market(registry)
    as_of = _as_of(market, at)

    def compute() -> pd.DataFrame:
        from pmkit.risk import current_weights

        table = registry.summary(at=as_of)
        ids = [str(i) for i in table.index]
        extra = pd.DataFrame(index=table.index, columns=["day_pnl", "day_return",
                                                         "volatility", "var"], dtype=float)
        if ids:
            values, pnl = _day_values(registry, ids, as_of)
            previous = values.isel(time=0).values
            extra["day_pnl"] = pnl.values
            with np.errstate(divide="ignore", invalid="ignore"):
                extra["day_return"] = np.where(previous > 0, pnl.values / previous, np.nan)
            weights = current_weights(registry, ids, at=as_of)["weight"]
            risk = _risk(weights, _asset_returns(market, as_of, lookback), confidence)
            extra[["volatility", "var"]] = risk.loc[ids].to_numpy()
        out = pd.concat([table, extra], axis=1)
        out.attrs.update(as_of=as_of, confidence=confidence, lookback=lookback)
        return out

    return _cached(registry, "portfolio", (as_of, confidence, lookback), compute)


def group_overview(
    registry: Registry, at: Any = None, *, confidence: float = 0.95, lookback: int = 252
) -> pd.DataFrame:
    """Every visible group's consolidated value, day P&L and risk.

    A group consolidates the positions of every portfolio under it (nested
    groups resolved, each portfolio once), so its risk is that of the
    combined book, not a sum of its members' risks.

    Parameters
    ----------
    registry, at, confidence, lookback
        As `portfolio_overview`.

    Returns
    -------
    pandas.DataFrame
        Index ``id``; columns ``name``, ``status``, ``members`` (portfolio
        count), ``value`` and ``day_pnl`` (currency), ``day_return``,
        ``volatility`` (annualized) and ``var`` (1 day), fractions as in
        `portfolio_overview`. ``attrs``: ``as_of``, ``confidence``, ``lookback``.
    """
    confidence, lookback = _check(confidence, lookback)
    market = _market(registry)
    as_of = _as_of(market, at)

    def compute() -> pd.DataFrame:
        from pmkit.analytics.valuation import membership_matrix
        from pmkit.risk import current_weights

        groups = registry.groups()
        cols = ["name", "status", "members", "value", "day_pnl", "day_return", "volatility", "var"]
        out = pd.DataFrame(index=pd.Index([g.id for g in groups], name="id"), columns=cols)
        out["name"] = [g.name for g in groups]
        out["status"] = [g.status for g in groups]
        members = {g.id: registry.get_group_portfolios(g.id) for g in groups}
        ids = sorted({p for m in members.values() for p in m})
        out["members"] = [len(members[g.id]) for g in groups]
        if groups and ids:
            m = membership_matrix(registry, [g.id for g in groups], portfolios=ids)
            values, pnl = _day_values(registry, ids, as_of)
            current = xr.dot(m, values.isel(time=-1), dim="portfolio")
            previous = xr.dot(m, values.isel(time=0), dim="portfolio")
            out["value"] = current.values
            out["day_pnl"] = xr.dot(m, pnl, dim="portfolio").values
            with np.errstate(divide="ignore", invalid="ignore"):
                out["day_return"] = np.where(previous.values > 0,
                                             out["day_pnl"].to_numpy(float) / previous.values,
                                             np.nan)
            w = current_weights(registry, ids, at=as_of)
            exposure = xr.dot(m, w["weight"] * w["nav"], dim="portfolio")  # currency per asset
            gw = (exposure / current.where(current > 0)).fillna(0.0)
            risk = _risk(gw.rename(group="portfolio"), _asset_returns(market, as_of, lookback),
                         confidence)
            out[["volatility", "var"]] = risk.to_numpy()
        for c in cols[3:]:
            out[c] = out[c].astype(float)
        out.attrs.update(as_of=as_of, confidence=confidence, lookback=lookback)
        return out

    return _cached(registry, "group", (as_of, confidence, lookback), compute)


def _drawdowns(registry: Registry, ids: list[str], as_of: pd.Timestamp) -> xr.DataArray:
    """Drawdown of each portfolio's time-weighted return since its first ledger day."""
    from pmkit.analytics.performance import drawdowns
    from pmkit.analytics.returns import external_flows, time_weighted_returns
    from pmkit.analytics.valuation import portfolio_values

    market = _market(registry)
    ledgers = {p: registry.ledger(p) for p in ids}
    starts = [min(e.ts for e in entries) for entries in ledgers.values() if entries]
    times = market.indexes["time"]
    start = pd.Timestamp(min(starts)).normalize() if starts else as_of
    days = times[(times >= start) & (times <= as_of)]
    if len(days) < 3:
        raise InsufficientDataError("drawdown", len(days), "needs three market days of history")
    values = portfolio_values(registry.holdings(ids, times=days), market.sel(time=days))
    flows = external_flows([e for es in ledgers.values() for e in es], ids, days)
    daily = time_weighted_returns(values, flows)["daily_return"].isel(time=slice(1, None))
    # a portfolio whose first deposit comes later has NaN (not started) before it
    daily = daily.where(values.isel(time=slice(None, -1)).values > 0)
    return drawdowns(daily)


def risk_overview(
    registry: Registry,
    portfolios: Sequence[str] | None = None,
    at: Any = None,
    *,
    confidence: float = 0.95,
    lookback: int = 756,
) -> xr.Dataset:
    """Risk contributions, stress results and drawdowns of portfolios.

    Parameters
    ----------
    registry : Registry
        With market data; its user needs VIEWER on each portfolio.
    portfolios : sequence of str, optional
        Default: every visible portfolio with something invested.
    at : datetime-like, optional
        Market day of the weights and the end of the windows (default: last).
    confidence : float, default 0.95
        Confidence of VaR and expected shortfall (fraction).
    lookback : int, default 756
        Daily returns behind contributions, VaR, ES and volatility (>= 30).

    Returns
    -------
    xarray.Dataset
        - ``contribution(portfolio, asset)``: Euler contributions to 1-day
          historical expected shortfall (fraction of value); they sum over
          ``asset`` to ``es``.
        - ``es``, ``var`` (1 day, fractions, loss positive) and
          ``volatility`` (annualized fraction), on ``portfolio``.
        - ``stress_return(portfolio, scenario)`` (fraction) and
          ``stress_pnl(portfolio, scenario)`` (currency): the held positions
          through each historical crisis window of
          `pmkit.risk.STANDARD_WINDOWS` (unlisted assets held as cash;
          ``stress_unlisted`` is their weight).
        - ``drawdown(portfolio, time)``: of the time-weighted return since the
          first ledger day (fraction, <= 0).

    Raises
    ------
    PermissionDenied
        A portfolio the user may not view.
    ValidationError
        Bad ``confidence``/``lookback``, or no invested portfolio to show.
    """
    confidence, lookback = _check(confidence, lookback)
    market = _market(registry)
    as_of = _as_of(market, at)
    if portfolios is not None:
        if isinstance(portfolios, str):
            portfolios = [portfolios]
        for p in portfolios:
            registry.require("view", p)
    chosen = None if portfolios is None else tuple(str(p) for p in portfolios)

    def compute() -> xr.Dataset:
        from pmkit.risk import current_weights, historical_stress, risk_contributions, var
        from pmkit.risk import volatility as vol

        ids = list(chosen) if chosen is not None else [p.id for p in registry.portfolios()]
        w = current_weights(registry, ids, at=as_of)
        if chosen is None:
            invested = (np.abs(w["weight"]).sum("asset") > 0).values
            w = w.isel(portfolio=np.flatnonzero(invested))
            ids = [str(p) for p in w["portfolio"].values]
        if not ids:
            raise ValidationError("portfolios", list(chosen or []), "none has anything invested")
        weights = w["weight"]
        returns = _asset_returns(market, as_of, lookback)
        contrib = risk_contributions(weights, returns, measure="es", method="historical",
                                     confidence=confidence)
        with warnings.catch_warnings():
            # assets listed after a crisis are held as cash there: reported below, not warned
            warnings.simplefilter("ignore")
            stress = historical_stress(weights, market, values=w["nav"])
        out = xr.Dataset(
            {
                "contribution": contrib["component"],
                "es": contrib["total"],
                "var": var(weights, returns, confidence=confidence),
                "volatility": vol(weights, returns) * math.sqrt(TRADING_DAYS),
                "stress_return": stress["return"].rename(window="scenario"),
                "stress_pnl": stress["pnl"].rename(window="scenario"),
                "stress_unlisted": stress["unlisted_weight"].rename(window="scenario"),
                "drawdown": _drawdowns(registry, ids, as_of),
            }
        )
        out = out.drop_vars([c for c in out.coords if c not in out.dims], errors="ignore")
        out["contribution"].attrs.update(units="fraction of value", measure="expected shortfall")
        out["volatility"].attrs.update(units="fraction per year", annualized=1)
        out.attrs.update(as_of=str(as_of.date()), confidence=confidence, lookback=lookback,
                         horizon_days=1)
        return out

    return _cached(registry, "risk", (as_of, confidence, lookback, chosen), compute)
