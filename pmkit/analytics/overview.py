"""Operations overviews of a registry: value, day P&L and risk per portfolio and group.

These are what the front ends show (registry, groups and risk views, ``%pm
risk``), composed from the labelled analytics and risk functions, so a
notebook user gets the same numbers from the same calls. Results are cached
in ``registry.derived`` per store revision (the last audit record), market
data, user and arguments: views that poll the store every few seconds
recompute only after a change, and the parts of `risk_overview` (measures,
stress, drawdowns) are cached on their own, so a screen can show the quick
parts first.

Valuation: now, at the last available prices
---------------------------------------------
A portfolio is valued at the market day ``as_of`` (default the last close)
with everything booked up to then, and at the last market day with
everything booked at all: cash deposited after the last close is cash at
once (a new portfolio with 100,000 is worth 100,000, not 0). Each position
is marked at its asset's last available price at or before ``as_of``
(`pmkit.analytics.valuation.last_prices`: the last real close, or for an
asset not listed yet the price of its last trade). The ``priced_at`` column
says which day that is (the oldest price behind the book's positions), so a
screen can say "priced at the close of ...".

Books with no value, no positions or no prices
-----------------------------------------------
Each row stands on its own; nothing one book lacks can blank another's
figures (no ``NaN * 0`` across portfolios, no batch refused for one row):

- a book with no value (new, or emptied: value <= 0) has no risk as a
  fraction of value: its volatility and VaR are NaN, and its day return too
  when it had no value the day before;
- a cash-only book (value > 0, no position) has volatility 0 and VaR 0;
- a book whose positions cannot be measured over the window (an asset with
  too few returns, fewer than `pmkit.risk.measures.MIN_OBSERVATIONS` days
  where every held asset has one) has NaN risk, as has a group holding it;
- a position with no price at all (no close and no trade price) leaves its
  book's value NaN, and its groups', and nobody else's.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.errors import ConfigError, InsufficientDataError, PmkitError, ValidationError

if TYPE_CHECKING:
    from pmkit.registry import Registry

__all__ = ["TRADING_DAYS", "group_overview", "portfolio_overview", "risk_overview", "warm_up"]

#: Trading days per year used to annualize daily volatility.
TRADING_DAYS = 252

T = TypeVar("T")

#: Risk batches are padded with empty (cash-only) books to a multiple of this many rows,
#: so the jitted programs compile once per bucket, not once per portfolio count: creating
#: a portfolio, a group's member count or another user's visibility reuse them.
_BATCH = 8


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


# ---------------------------------------------------------------- the book


def _book(registry: Registry, ids: Sequence[str], days: Sequence[pd.Timestamp]) -> xr.Dataset:
    """Positions of ``ids`` on market ``days``, marked at the last available prices.

    ``quantity(portfolio, asset, time)``, ``exposure`` (currency: units times
    mark, exactly 0 where nothing is held), ``cash`` and ``nav(portfolio,
    time)`` (NaN only for a book holding something with no price at all) and
    ``priced_at(portfolio, time)`` (the oldest mark date behind the
    positions; NaT without positions).
    """
    ids, days = tuple(ids), tuple(pd.Timestamp(d) for d in days)

    def compute() -> xr.Dataset:
        from pmkit.analytics.valuation import last_prices, portfolio_values
        from pmkit.registry.reporting import at_last_close

        market = _market(registry)
        times = list(days)
        holdings = registry.holdings(list(ids), times=times)
        entries = at_last_close([e for p in ids for e in registry.ledger(p)], market, times)
        marks = last_prices(market, times, entries)
        q = holdings["quantity"].transpose("portfolio", "asset", "time").reset_coords(drop=True)
        price = marks["price"].sel(asset=q.indexes["asset"]).transpose("asset", "time")
        held = np.asarray(q.values != 0)  # (P, A, T)
        unpriced = (held & np.isnan(price.values)[None]).any(axis=1)  # (P, T)
        exposure = np.where(held, q.values * price.values[None], 0.0)
        # value what can be valued; a book holding an unpriceable asset is NaN on its own
        priced = holdings.assign(quantity=q.copy(data=np.where(unpriced[:, None, :], 0.0,
                                                               q.values)))
        snap = market.sel(time=times).assign(
            close=(("asset", "time"),
                   marks["price"].sel(asset=market.indexes["asset"]).values))
        nav = _unpad(portfolio_values(_pad(priced), snap)).transpose("portfolio", "time").values
        nav = np.where(unpriced, np.nan, nav)
        stamp = marks["priced_at"].sel(asset=q.indexes["asset"]).values.astype("datetime64[ns]")
        far = np.iinfo(np.int64).max
        oldest = np.where(held, stamp.view(np.int64)[None], far).min(axis=1)
        priced_at = np.where(oldest == far, np.datetime64("NaT", "ns"),
                             oldest.astype("datetime64[ns]"))
        coords = {"portfolio": list(ids), "asset": q.indexes["asset"], "time": list(days)}
        pt, pat = ("portfolio", "time"), ("portfolio", "asset", "time")
        return xr.Dataset(
            {
                "quantity": (pat, np.asarray(q.values, dtype=np.float64)),
                "exposure": (pat, exposure),
                "cash": (pt, holdings["cash"].transpose(*pt).values.astype(np.float64)),
                "nav": (pt, nav.astype(np.float64)),
                "priced_at": (pt, priced_at),
            },
            coords=coords,
        )

    return _cached(registry, "book", (ids, days), compute)


def _flows(registry: Registry, ids: Sequence[str], days: Sequence[pd.Timestamp]) -> xr.DataArray:
    """External flows of ``ids`` on ``days``, entries after the last close counted at it."""
    from pmkit.analytics.returns import external_flows
    from pmkit.registry.reporting import at_last_close

    times = list(days)
    entries = at_last_close([e for p in ids for e in registry.ledger(p)],
                            _market(registry), times)
    return external_flows(entries, list(ids), times)


def _weights(exposure: xr.DataArray, value: xr.DataArray) -> xr.DataArray:
    """``exposure / value`` on (portfolio, asset); NaN rows where the value is not > 0."""
    v = np.asarray(value.values, dtype=np.float64)
    positive = np.isfinite(v) & (v > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(positive[:, None], exposure.values / np.where(positive, v, 1.0)[:, None],
                     np.nan)
    return xr.DataArray(w, dims=("portfolio", "asset"),
                        coords={"portfolio": exposure["portfolio"].values,
                                "asset": exposure["asset"].values}, name="weight")


def _day_figures(registry: Registry, ids: Sequence[str], days: Sequence[pd.Timestamp]
                 ) -> tuple[xr.Dataset, np.ndarray]:
    """The book on ``(previous day, as_of)`` and each portfolio's day P&L net of flows."""
    from pmkit.analytics.valuation import daily_pnl

    book = _book(registry, ids, days)
    nav = book["nav"]
    finite = np.isfinite(nav.values).all(axis=1)
    flows = _flows(registry, ids, days)
    pnl = _unpad(daily_pnl(_pad(nav.fillna(0.0)), _pad(flows))).isel(time=-1).values
    return book, np.where(finite, pnl, np.nan)


# ---------------------------------------------------------------- batched risk, row by row


def _bucket(n: int) -> int:
    return max(_BATCH, 1 << max(n - 1, 0).bit_length())


def _pad(obj: Any) -> Any:
    """``obj`` with zero rows appended on ``portfolio`` up to the next batch bucket.

    The pad rows are books holding nothing (0 everywhere), labelled so they
    can never be ids (`_unpad` drops them): the jitted programs see one
    shape per bucket, whatever the number of books.
    """
    n = obj.sizes["portfolio"]
    size = _bucket(n)
    if size == n or n == 0:
        return obj
    labels = [f" pad {i}" for i in range(size - n)]
    pad = xr.zeros_like(obj.isel(portfolio=np.zeros(size - n, dtype=int)))
    return xr.concat([obj, pad.assign_coords(portfolio=labels)], dim="portfolio")


def _unpad(obj: Any) -> Any:
    real = [p for p in obj["portfolio"].values if not str(p).startswith(" pad ")]
    return obj.sel(portfolio=real)


def _padded(weights: xr.DataArray) -> xr.DataArray:
    """``weights(portfolio, asset)`` padded with empty books (no row at all: only pads)."""
    w = weights.reset_coords(drop=True).transpose("portfolio", "asset")
    if w.sizes["portfolio"] == 0:
        return xr.DataArray(np.zeros((_BATCH, w.sizes["asset"])), dims=("portfolio", "asset"),
                            coords={"portfolio": [f" pad {i}" for i in range(_BATCH)],
                                    "asset": w["asset"].values})
    return _pad(w)


def _observed(weights: xr.DataArray, returns: xr.DataArray) -> np.ndarray:
    """Rows with finite weights and enough days on which every held asset has a return."""
    from pmkit.risk.measures import MIN_OBSERVATIONS

    w = np.asarray(weights.transpose("portfolio", "asset").values, dtype=np.float64)
    r = returns.sel(asset=weights["asset"].values).transpose("time", "asset").values
    finite = np.isfinite(w).all(axis=1)
    held = (np.nan_to_num(w) != 0).astype(np.float64)
    usable = (held @ np.isnan(r).T.astype(np.float64) == 0).sum(axis=1)
    return finite & (usable >= MIN_OBSERVATIONS)


def _rows(weights: xr.DataArray, ok: np.ndarray,
          fn: Callable[[xr.DataArray], xr.Dataset]) -> xr.Dataset:
    """``fn`` of the ``ok`` rows in one padded batch, NaN for the others.

    If the batch is refused (a check of the labelled layer that the
    pre-filter does not know), each row goes alone, so one book the
    measure refuses is NaN and the rest still have their figures.
    """
    ids = [str(p) for p in weights["portfolio"].values]
    rows = weights.isel(portfolio=np.flatnonzero(ok))
    try:
        out = fn(_padded(rows))
    except PmkitError:
        parts = []
        for i in range(rows.sizes["portfolio"]):
            try:
                part = fn(_padded(rows.isel(portfolio=[i])))
            except PmkitError:
                continue
            parts.append(part.isel(portfolio=[0]))
        # the all-cash pad rows give the shape of the result when no row is left
        out = xr.concat(parts, dim="portfolio") if parts else fn(_padded(rows.isel(portfolio=[])))
    return _unpad(out).reindex(portfolio=ids)


def _risk(weights: xr.DataArray, returns: xr.DataArray, confidence: float) -> pd.DataFrame:
    """Annualized volatility and 1-day historical VaR of ``weights(portfolio, asset)``.

    Rows are independent: a NaN (no value) or unmeasurable row is NaN, a
    zero row (cash only) is 0, and neither touches the others.
    """
    from pmkit.risk import var, volatility

    def measures(w: xr.DataArray) -> xr.Dataset:
        vol = volatility(w, returns) * math.sqrt(TRADING_DAYS)
        return xr.Dataset({"volatility": vol.reset_coords(drop=True),
                           "var": var(w, returns, confidence=confidence).reset_coords(drop=True)})

    out = _rows(weights, _observed(weights, returns), measures)
    # + 0.0: a cash-only book's VaR is 0, not the -0.0 of negating a zero loss
    frame = pd.DataFrame({"volatility": out["volatility"].values + 0.0,
                          "var": out["var"].values + 0.0},
                         index=pd.Index([str(p) for p in weights["portfolio"].values], name="id"))
    return frame.astype(float)


def _oldest(stamps: np.ndarray) -> Any:
    """The earliest of ``stamps`` (datetime64), NaT when none is set."""
    real = stamps[~np.isnat(stamps)]
    return real.min() if len(real) else np.datetime64("NaT", "ns")


# ---------------------------------------------------------------- overviews


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
        ``currency`` (as `Registry.summary`), ``cash`` and ``value``
        (currency: everything booked up to ``as_of``, and at the last market
        day everything booked, positions at the last available prices; see
        the module docstring), ``day_pnl`` (currency: the day's value change
        net of external cash flows), ``day_return`` (fraction of the
        previous day's value; NaN without one), ``volatility`` (annualized
        fraction, ex ante: today's weights over the window) and ``var``
        (1-day historical VaR, fraction of value, loss positive), and
        ``priced_at`` (``datetime64``: the close the positions are valued
        at, the oldest price behind them: ``as_of`` unless a position's last
        real close is older (forward-filled, suspended, delisted) or it is
        marked at its last trade (not listed yet); NaT for a book without
        positions). Risk is NaN for a book with no value (value <= 0) or one
        that cannot be measured over the window, and 0 for a cash-only
        book. ``attrs``: ``as_of`` (the market day), ``confidence``,
        ``lookback``.
    """
    confidence, lookback = _check(confidence, lookback)
    market = _market(registry)
    as_of = _as_of(market, at)

    def compute() -> pd.DataFrame:
        infos = registry.portfolios()
        ids = [i.id for i in infos]
        out = pd.DataFrame(
            {
                "name": [i.name for i in infos],
                "status": [i.status for i in infos],
                "segment": [str(i.segment) for i in infos],
                "tags": [", ".join(i.tags) for i in infos],
                "currency": [i.currency for i in infos],
            },
            index=pd.Index(ids, name="id"),
        )
        for c in ("cash", "value", "day_pnl", "day_return", "volatility", "var"):
            out[c] = np.nan
        out["priced_at"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
        if ids:
            times = market.indexes["time"]
            days = [times[times.get_loc(as_of) - 1], as_of]
            book, pnl = _day_figures(registry, ids, days)
            value = book["nav"].isel(time=-1)
            previous = book["nav"].isel(time=0).values
            out["cash"] = book["cash"].isel(time=-1).values
            out["value"] = value.values
            out["day_pnl"] = pnl
            with np.errstate(divide="ignore", invalid="ignore"):
                out["day_return"] = np.where(previous > 0, pnl / previous, np.nan)
            weights = _weights(book["exposure"].isel(time=-1), value)
            risk = _risk(weights, _asset_returns(market, as_of, lookback), confidence)
            out[["volatility", "var"]] = risk.loc[ids].to_numpy()
            out["priced_at"] = book["priced_at"].isel(time=-1).values
        out.attrs.update(as_of=as_of, confidence=confidence, lookback=lookback)
        return out

    return _cached(registry, "portfolio", (as_of, confidence, lookback), compute)


def group_overview(
    registry: Registry, at: Any = None, *, confidence: float = 0.95, lookback: int = 252
) -> pd.DataFrame:
    """Every visible group's consolidated value, day P&L and risk.

    A group consolidates the positions of every portfolio under it (nested
    groups resolved, each portfolio once), so its risk is that of the
    combined book, not a sum of its members' risks. A member without value
    adds nothing and blanks nothing: only a member whose own value is
    unknown (a position with no price at all) makes its groups' value and
    risk NaN.

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
        `portfolio_overview`, and ``priced_at`` (the oldest ``priced_at`` of
        its members; NaT when none holds a position). ``attrs``: ``as_of``,
        ``confidence``, ``lookback``.
    """
    confidence, lookback = _check(confidence, lookback)
    market = _market(registry)
    as_of = _as_of(market, at)

    def compute() -> pd.DataFrame:
        groups = registry.groups()
        cols = ["name", "status", "members", "value", "day_pnl", "day_return", "volatility",
                "var"]
        out = pd.DataFrame(index=pd.Index([g.id for g in groups], name="id"), columns=cols)
        out["name"] = [g.name for g in groups]
        out["status"] = [g.status for g in groups]
        members = {g.id: registry.get_group_portfolios(g.id) for g in groups}
        ids = sorted({p for m in members.values() for p in m})
        out["members"] = [len(members[g.id]) for g in groups]
        for c in cols[3:]:
            out[c] = np.nan
        out["priced_at"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns]")
        if groups:
            out["value"] = out["day_pnl"] = 0.0  # a group with no member holds nothing
        if groups and ids:
            from pmkit.analytics.valuation import membership_matrix

            m = membership_matrix(registry, [g.id for g in groups], portfolios=ids).values > 0
            times = market.indexes["time"]
            days = [times[times.get_loc(as_of) - 1], as_of]
            book, pnl = _day_figures(registry, ids, days)

            def total(x: np.ndarray) -> np.ndarray:
                # members only: a non-member's NaN must not reach the group (no NaN * 0)
                x = np.asarray(x, dtype=np.float64)
                picked = np.where(m.reshape(m.shape + (1,) * (x.ndim - 1)), x[None], 0.0)
                return picked.sum(axis=1)

            current = total(book["nav"].isel(time=-1).values)
            previous = total(book["nav"].isel(time=0).values)
            out["value"] = current
            out["day_pnl"] = total(pnl)
            with np.errstate(divide="ignore", invalid="ignore"):
                out["day_return"] = np.where(previous > 0,
                                             out["day_pnl"].to_numpy(float) / previous, np.nan)
            exposure = xr.DataArray(
                total(book["exposure"].isel(time=-1).values), dims=("portfolio", "asset"),
                coords={"portfolio": [g.id for g in groups],
                        "asset": book["asset"].values})
            value = xr.DataArray(current, dims=("portfolio",))
            risk = _risk(_weights(exposure, value), _asset_returns(market, as_of, lookback),
                         confidence)
            out[["volatility", "var"]] = risk.to_numpy()
            stamps = book["priced_at"].isel(time=-1).values
            out["priced_at"] = [_oldest(stamps[row]) for row in m]
        for c in cols[3:]:
            out[c] = out[c].astype(float)
        out["members"] = out["members"].astype(int)
        out.attrs.update(as_of=as_of, confidence=confidence, lookback=lookback)
        return out

    return _cached(registry, "group", (as_of, confidence, lookback), compute)


def _drawdowns(registry: Registry, ids: Sequence[str], as_of: pd.Timestamp) -> xr.DataArray:
    """Drawdown of each portfolio's time-weighted return since its first ledger day.

    A book that cannot have one (started after the window's first days, a
    value that is unknown) is NaN on its own.
    """
    from pmkit.analytics.performance import drawdowns
    from pmkit.analytics.returns import time_weighted_returns

    market = _market(registry)
    ledgers = {p: registry.ledger(p) for p in ids}
    starts = [min(e.ts for e in entries) for entries in ledgers.values() if entries]
    times = market.indexes["time"]
    start = pd.Timestamp(min(starts)).normalize() if starts else as_of
    days = times[(times >= start) & (times <= as_of)]
    if len(days) < 3:
        # books started on (or after) the last days have no drawdown yet: NaN, not a refusal
        days = days if len(days) else pd.DatetimeIndex([as_of])
        return xr.DataArray(np.full((len(ids), len(days)), np.nan), dims=("portfolio", "time"),
                            coords={"portfolio": list(ids), "time": days}, name="drawdown")
    days_t = tuple(pd.Timestamp(d) for d in days)
    values = _book(registry, ids, days_t)["nav"]
    flows = _flows(registry, ids, days_t)
    finite = np.isfinite(values.values).all(axis=1)
    daily = _unpad(time_weighted_returns(_pad(values.fillna(0.0)), _pad(flows))["daily_return"])
    daily = daily.isel(time=slice(1, None))
    # a portfolio whose first deposit comes later has NaN (not started) before it
    daily = daily.where(values.isel(time=slice(None, -1)).values > 0)
    daily = daily.where(xr.DataArray(finite, dims=("portfolio",),
                                     coords={"portfolio": daily["portfolio"].values}))
    out = []
    for i in range(daily.sizes["portfolio"]):
        one = daily.isel(portfolio=[i])
        try:
            out.append(drawdowns(one))
        except PmkitError:
            out.append(xr.full_like(one, np.nan).rename("drawdown"))
    return xr.concat(out, dim="portfolio")


def risk_overview(
    registry: Registry,
    portfolios: Sequence[str] | None = None,
    at: Any = None,
    *,
    confidence: float = 0.95,
    lookback: int = 756,
    drawdown: bool = True,
) -> xr.Dataset:
    """Risk contributions, stress results and drawdowns of portfolios.

    Parameters
    ----------
    registry : Registry
        With market data; its user needs VIEWER on each portfolio.
    portfolios : sequence of str, optional
        Default: every visible portfolio with a position and a value > 0.
    at : datetime-like, optional
        Market day of the weights and the end of the windows (default: last).
    confidence : float, default 0.95
        Confidence of VaR and expected shortfall (fraction).
    lookback : int, default 756
        Daily returns behind contributions, VaR, ES and volatility (>= 30).
    drawdown : bool, default True
        Include ``drawdown`` (the slowest part: a screen can show the rest
        first and ask again with ``True``, which reuses the cached parts).

    Returns
    -------
    xarray.Dataset
        - ``contribution(portfolio, asset)``: Euler contributions to 1-day
          historical expected shortfall (fraction of value); they sum over
          ``asset`` to ``es``.
        - ``es``, ``var`` (1 day, fractions, loss positive) and
          ``volatility`` (annualized fraction), on ``portfolio``; NaN for a
          book that cannot be measured over the window (see the module
          docstring), 0 for one holding only cash.
        - ``stress_return(portfolio, scenario)`` (fraction) and
          ``stress_pnl(portfolio, scenario)`` (currency): the held positions
          through each historical crisis window of
          `pmkit.risk.STANDARD_WINDOWS` (unlisted assets held as cash;
          ``stress_unlisted`` is their net weight, fraction of value), and
          ``stress_coverage(portfolio, scenario)``: the share of the book's
          gross position value listed at the window start, i.e. what the
          stress figure covers (1: all of it).
        - ``drawdown(portfolio, time)``: of the time-weighted return since the
          first ledger day (fraction, <= 0); left out with ``drawdown=False``.
        - ``priced_at(portfolio)``: the close the weights are valued at, the
          oldest price behind the positions (as in `portfolio_overview`):
          ``as_of`` unless a position's last real close is older.

        ``attrs``: ``as_of`` (the market day, ISO date), ``confidence``,
        ``lookback``, ``horizon_days``.

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
        ids = list(chosen) if chosen is not None else [p.id for p in registry.portfolios()]
        book = _book(registry, ids, (as_of,)).isel(time=0)
        if chosen is None:
            invested = (book["quantity"] != 0).any("asset").values & (book["nav"].values > 0)
            ids = [p for p, keep in zip(ids, invested, strict=True) if keep]
            book = book.sel(portfolio=ids)
        if not ids:
            raise ValidationError("portfolios", list(chosen or []), "none has anything invested")
        key = (as_of, tuple(ids))
        weights = _weights(book["exposure"], book["nav"])
        parts = [
            _cached(registry, "risk-measures", (*key, confidence, lookback),
                    lambda: _risk_measures(weights, _asset_returns(market, as_of, lookback),
                                           confidence)),
            _cached(registry, "risk-stress", key,
                    lambda: _stress(weights, book["nav"], market)),
        ]
        if drawdown:
            parts.append(_cached(registry, "risk-drawdown", key,
                                 lambda: _drawdowns(registry, ids, as_of)
                                 .to_dataset(name="drawdown")))
        out = xr.merge(parts, combine_attrs="drop_conflicts")
        out = out.drop_vars([c for c in out.coords if c not in out.dims], errors="ignore")
        out["priced_at"] = book["priced_at"].reset_coords(drop=True)
        out["contribution"].attrs.update(units="fraction of value", measure="expected shortfall")
        out["volatility"].attrs.update(units="fraction per year", annualized=1)
        out["stress_coverage"].attrs.update(units="fraction of gross position value")
        out.attrs = {"as_of": str(as_of.date()), "confidence": confidence,
                     "lookback": lookback, "horizon_days": 1}
        return out

    return _cached(registry, "risk", (as_of, confidence, lookback, chosen, drawdown), compute)


def _risk_measures(weights: xr.DataArray, returns: xr.DataArray,
                   confidence: float) -> xr.Dataset:
    """ES contributions, ES, VaR and annualized volatility, one padded batch per measure."""
    from pmkit.risk import risk_contributions
    from pmkit.risk import volatility as vol

    def measures(w: xr.DataArray) -> xr.Dataset:
        es = risk_contributions(w, returns, measure="es", method="historical",
                                confidence=confidence)
        # VaR from the same compiled program as ES (contributions of VaR): one compilation
        var = risk_contributions(w, returns, measure="var", method="historical",
                                 confidence=confidence)
        return xr.Dataset({
            "contribution": es["component"].reset_coords(drop=True),
            "es": es["total"].reset_coords(drop=True),
            "var": var["total"].reset_coords(drop=True),
            "volatility": vol(w, returns).reset_coords(drop=True) * math.sqrt(TRADING_DAYS),
        })

    return _rows(weights, _observed(weights, returns), measures)


def _stress(weights: xr.DataArray, nav: xr.DataArray, market: xr.Dataset) -> xr.Dataset:
    """Historical stress of the books with a value (others NaN), with what each covers."""
    from pmkit.risk import historical_stress

    values = nav.reset_coords(drop=True)

    def stress(w: xr.DataArray) -> xr.Dataset:
        v = values.reindex(portfolio=w["portfolio"].values, fill_value=1.0)
        with warnings.catch_warnings():
            # assets listed after a crisis are held as cash there: reported in coverage
            warnings.simplefilter("ignore")
            s = historical_stress(w, market, values=v)
        return xr.Dataset({
            "stress_return": s["return"],
            "stress_pnl": s["pnl"],
            "stress_unlisted": s["unlisted_weight"],
            "stress_coverage": s["coverage"],
        }).rename(window="scenario").reset_coords(drop=True)

    ok = np.isfinite(weights.values).all(axis=1)
    return _rows(weights, ok, stress)


def warm_up(registry: Registry) -> dict[str, float]:
    """Compute every overview once, so the screens opened next find their programs compiled.

    JAX compiles each jitted program on its first call with a new shape,
    which takes seconds on a busy machine (the risk overview's several). A
    served app calls this on a background thread as it starts, acting as an
    administrator: risk batches are padded to a common size (8, 16, ...
    rows), so the programs it compiles are those every user with up to as
    many portfolios needs, and the first person to open the Risk tab does
    not wait for them. Its own results stay cached for ``registry.user``.
    With `pmkit.jit_cache.enable_compile_cache` the compiled programs also
    outlive the process.

    Parameters
    ----------
    registry : Registry
        With market data (without, nothing is done).

    Returns
    -------
    dict of str to float
        Seconds per overview (``portfolios``, ``groups``, ``risk``); an
        overview that refused (nothing invested yet) is left out.
    """
    import time

    took: dict[str, float] = {}
    if registry.market is None:
        return took
    for name, fn in (("portfolios", portfolio_overview), ("groups", group_overview),
                     ("risk", risk_overview)):
        start = time.perf_counter()
        try:
            fn(registry)
        except PmkitError:
            continue
        took[name] = time.perf_counter() - start
    return took
