"""Labelled valuation: portfolio values with FX, daily P&L, group values, average-cost P&L.

The xarray layer over `pmkit.core.valuation`: it validates and aligns labels,
raises typed `pmkit.errors`, hands arrays to the JAX core through
`pmkit.model._apply.apply_core` (so dask-backed inputs chunked over
``portfolio`` work) and labels the results back.

FX convention
-------------
``fx`` is a ``rate(currency, time)`` DataArray (or a Dataset holding one
variable, preferably named ``rate``) quoting **units of a pivot currency per 1
unit of each currency**, e.g. with USD as pivot ``rate.sel(currency="EUR") =
1.08`` (1 EUR = 1.08 USD) and ``rate.sel(currency="USD") = 1``. An amount in
the asset currency converts to the portfolio currency by multiplying with
``rate[asset_ccy] / rate[portfolio_ccy]``. Any pivot works, as long as every
needed currency is quoted against the same one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.core import valuation as core
from pmkit.errors import (
    AlignmentError,
    CurrencyMismatchError,
    DuplicateLabelError,
    MissingPriceError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.ledger import OPEN_QUANTITY_TOLERANCE, LedgerEntry
from pmkit.model._apply import apply_core
from pmkit.model.holdings import _labelled, check_holdings_assets
from pmkit.model.market import _cell, _first_cell, _fmt_time, _time_index, _timestamp

__all__ = [
    "daily_pnl",
    "fx_rates",
    "group_values",
    "last_prices",
    "membership_matrix",
    "portfolio_values",
    "realized_unrealized_pnl",
]

_PT = ("portfolio", "time")


# ---------------------------------------------------------------- shared label checks


def _dataarray(da: Any, name: str, dims: tuple[str, ...]) -> xr.DataArray:
    """``da`` as a DataArray with exactly ``dims`` (any order), labelled, transposed."""
    da = _labelled(da, name, dims)
    for dim in dims:
        idx = da.indexes[dim]
        if idx.has_duplicates:
            label = idx[idx.duplicated()][0]
            raise DuplicateLabelError(f"{name}.{dim}", label, "labels must be unique")
    return da


def _same_labels(a: pd.Index, b: pd.Index, field: str, a_name: str, b_name: str) -> None:
    """Raise `AlignmentError` naming the labels that only one of two inputs has."""
    only_a = a.difference(b)
    only_b = b.difference(a)
    if len(only_a) or len(only_b):
        shown = [*(str(x) for x in only_a[:5]), *(str(x) for x in only_b[:5])]
        raise AlignmentError(
            field,
            shown,
            f"{len(only_a)} label(s) only in {a_name} {list(map(str, only_a[:5]))}, "
            f"{len(only_b)} only in {b_name} {list(map(str, only_b[:5]))}; they must match",
        )


def _aligned_flows(values: xr.DataArray, flows: xr.DataArray | None) -> xr.DataArray:
    """``flows`` on exactly the labels (and order) of ``values``; zeros when None."""
    if flows is None:
        return xr.zeros_like(values)
    f = _dataarray(flows, "flows", _PT)
    for dim in _PT:
        _same_labels(values.indexes[dim], f.indexes[dim], dim, "values", "flows")
    f = f.sel(portfolio=values.indexes["portfolio"], time=values.indexes["time"])
    _check_finite(f, "flows")
    return f.drop_vars([c for c in f.coords if c not in f.dims])


def _check_finite(da: xr.DataArray, name: str) -> None:
    bad = ~np.isfinite(da)
    if bool(bad.any()):
        mask = np.asarray(bad.values)
        cell = _first_cell(mask)
        labels = [da.indexes[d][i] for d, i in zip(da.dims, cell, strict=True)]
        raise ValidationError(_cell(name, *labels), float(da.values[cell]), "must be finite")


def _values(values: Any) -> xr.DataArray:
    v = _dataarray(values, "values", _PT)
    _check_finite(v, "values")
    return v


# ---------------------------------------------------------------- FX


def fx_rates(fx: xr.DataArray | xr.Dataset, currencies: Iterable[str], times: Any) -> xr.DataArray:
    """Select and check the FX rates needed on a time axis.

    Parameters
    ----------
    fx : xarray.DataArray or xarray.Dataset
        ``rate(currency, time)``: pivot units per unit of each currency (see
        the module docstring). A Dataset must hold a ``rate`` variable or a
        single data variable.
    currencies : iterable of str
        Currencies that must be quoted.
    times : array-like of datetime
        Times that must be quoted.

    Returns
    -------
    xarray.DataArray
        ``rate(currency, time)`` on exactly ``currencies`` (sorted, unique) and
        ``times``, float64.

    Raises
    ------
    CurrencyMismatchError
        A needed currency is not in ``fx`` (names it).
    AlignmentError
        A needed time is not in ``fx`` (names the first).
    ValidationError
        Wrong layout, a NaN or non-positive rate (names currency and time).
    """
    if isinstance(fx, xr.Dataset):
        names = list(fx.data_vars)
        if "rate" in fx.data_vars:
            fx = fx["rate"]
        elif len(names) == 1:
            fx = fx[names[0]]
        else:
            raise ValidationError("fx", names, "a Dataset must hold 'rate' or one data variable")
    rate = _dataarray(fx, "fx", ("currency", "time"))
    wanted = sorted(set(currencies))
    have = set(map(str, rate.indexes["currency"]))
    missing = [c for c in wanted if c not in have]
    if missing:
        raise CurrencyMismatchError(
            "fx.currency",
            missing[0] if len(missing) == 1 else missing,
            f"no FX rate for {missing}; fx quotes {sorted(have)}",
        )
    stamps = _time_index(times)
    fx_times = _time_index(rate.indexes["time"], "fx.time")
    absent = ~stamps.isin(fx_times)
    if absent.any():
        raise AlignmentError(
            "fx.time", _fmt_time(stamps[absent][0]),
            f"{int(absent.sum())} needed time(s) have no FX rate, first shown",
        )
    rate = rate.assign_coords(time=fx_times)
    out = rate.sel(currency=wanted, time=stamps).astype(np.float64)
    vals = np.asarray(out.values)
    bad = ~(vals > 0)  # NaN or <= 0
    if bad.any():
        c, t = _first_cell(bad)
        raise ValidationError(
            _cell("fx", wanted[c], stamps[t]), float(vals[c, t]), "FX rate must be finite and > 0"
        )
    return out.reset_coords(drop=True)


# ---------------------------------------------------------------- portfolio values


def portfolio_values(
    holdings: xr.Dataset,
    market: xr.Dataset,
    fx: xr.DataArray | xr.Dataset | None = None,
) -> xr.DataArray:
    """Net asset value per portfolio and time, converted to each portfolio's currency.

    ``nav[p, t] = sum_a quantity[p, a, t] * close[a, t] * rate[ccy(a), t] /
    rate[ccy(p), t] + cash[p, t]``.

    Parameters
    ----------
    holdings : xarray.Dataset
        ``quantity(portfolio, asset, time)`` (units), ``cash(portfolio, time)``
        (portfolio currency) and coordinate ``currency(portfolio)``; numpy- or
        dask-backed (chunked over ``portfolio``). Its times must be market times.
    market : xarray.Dataset
        ``close(asset, time)`` in each asset's ``currency(asset)``; ragged
        histories (NaN before listing) are fine where nothing is held.
    fx : xarray.DataArray or xarray.Dataset, optional
        ``rate(currency, time)``, pivot units per unit of currency (see the
        module docstring). Needed only when a held asset is priced in another
        currency than its portfolio.

    Returns
    -------
    xarray.DataArray
        ``nav(portfolio, time)`` in each portfolio's currency, with the
        ``currency(portfolio)`` coordinate; dask-backed if the holdings are.

    Raises
    ------
    UnknownAssetError
        Holdings name assets the market lacks.
    MissingPriceError
        A held asset (quantity != 0) has no close; names portfolio, asset, time.
    CurrencyMismatchError
        A held asset is in a foreign currency and ``fx`` is None, or ``fx``
        lacks a needed currency (both name the currency).
    AlignmentError
        ``fx`` lacks a needed time.
    """
    check_holdings_assets(holdings, market)
    for name, ds, dim in (("holdings", holdings, "portfolio"), ("market", market, "asset")):
        if "currency" not in ds.coords or ds["currency"].dims != (dim,):
            raise ValidationError("currency", None, f"{name} need a currency coordinate on {dim!r}")
    q = holdings["quantity"].transpose("portfolio", "asset", "time")
    cash = holdings["cash"].transpose(*_PT).reset_coords(drop=True)
    assets, times = q.indexes["asset"], q.indexes["time"]
    close = (
        market["close"].sel(asset=assets, time=times).transpose("asset", "time")
        .reset_coords(drop=True)
    )
    pcur = np.asarray(holdings["currency"].values).astype(str)
    acur = np.asarray(market["currency"].sel(asset=assets).values).astype(str)
    q = q.reset_coords(drop=True)

    held = np.asarray((q != 0).values)  # (P, A, T); computes a dask-backed quantity once
    cv = np.asarray(close.values)
    unpriced = held & np.isnan(cv)[None, :, :]
    if unpriced.any():
        p, a, t = _first_cell(unpriced)
        raise MissingPriceError(
            _cell("close", assets[a], times[t]),
            float("nan"),
            f"portfolio {q.portfolio.values[p]!r} holds units of {assets[a]!r} at "
            f"{_fmt_time(times[t])} but there is no close (not listed yet, or a gap)",
        )

    def out(nav: xr.DataArray) -> xr.DataArray:
        return nav.transpose(*_PT).assign_coords(currency=("portfolio", pcur)).rename("nav")

    foreign = held.any(axis=2) & (pcur[:, None] != acur[None, :])
    if fx is None:
        if foreign.any():
            p, a = np.argwhere(foreign)[0]
            raise CurrencyMismatchError(
                _cell("currency", assets[a]),
                str(acur[a]),
                f"portfolio {q.portfolio.values[p]!r} reports in {pcur[p]} but holds "
                f"{assets[a]!r} priced in {acur[a]}; pass fx= rates (currency, time)",
            )
        nav = apply_core(
            core.values_over_time,
            q, close, cash,
            input_core_dims=[["time", "asset"], ["time", "asset"], ["time"]],
            output_core_dims=[["time"]],
        )
        return out(nav)

    held_cur = set(acur[held.any(axis=(0, 2))].tolist())
    rate = fx_rates(fx, {*pcur.tolist(), *held_cur}, times)
    have = set(rate.indexes["currency"])
    # Rates of unheld currencies only ever multiply zero units: 1.0 stands in (masked in core).
    asset_rate = xr.DataArray(
        np.stack([
            rate.sel(currency=c).values if c in have else np.ones(len(times)) for c in acur
        ]),
        dims=("asset", "time"),
        coords={"asset": assets, "time": times},
    )
    port_rate = xr.DataArray(
        rate.sel(currency=list(pcur)).values,
        dims=("portfolio", "time"),
        coords={"portfolio": q.indexes["portfolio"], "time": times},
    )
    nav = apply_core(
        core.values_over_time,
        q, close, cash, asset_rate, port_rate,
        input_core_dims=[["time", "asset"], ["time", "asset"], ["time"], ["time", "asset"],
                         ["time"]],
        output_core_dims=[["time"]],
    )
    return out(nav)


# ---------------------------------------------------------------- last available prices


def last_prices(
    market: xr.Dataset, times: Any, entries: Iterable[LedgerEntry] = ()
) -> xr.Dataset:
    """Each asset's last available price at each of ``times``: what a position is marked at.

    The price at ``t`` is the last real close at or before ``t``: cells the
    market forward-filled (``close_filled``) carry the price of an earlier
    day, and a gap of any length keeps the last close before it (a
    suspended or delisted asset). An asset with no close at or before ``t``
    (held from an allocation before its listing) is marked at the price of
    its last trade among ``entries`` that counts at ``t`` (with daily, all
    midnight, times: traded on or before ``t``'s date), when that trade is
    in the asset's currency. ``priced_at`` says which day each price is from,
    so a screen can say how old a mark is.

    Parameters
    ----------
    market : xarray.Dataset
        ``close(asset, time)`` (and optionally ``close_filled``) in each
        asset's ``currency(asset)``.
    times : array-like of datetime
        Market times to mark at.
    entries : iterable of LedgerEntry
        Ledger rows whose trades may stand in for missing closes.

    Returns
    -------
    xarray.Dataset
        ``price(asset, time)`` (asset currency per unit; NaN where there is
        neither a close nor a trade) and ``priced_at(asset, time)``
        (``datetime64[ns]``: the day of that close, or of that trade; NaT
        where there is no price).

    Raises
    ------
    AlignmentError
        A time is not a market time (names it).
    """
    stamps = _time_index(times)
    known = market.indexes["time"]
    absent = stamps.difference(known)
    if len(absent):
        raise AlignmentError("times", str(absent[0]), "is not a time of the market data")
    assets = market.indexes["asset"]
    if len(stamps) == 0:
        empty = np.empty((len(assets), 0))
        return xr.Dataset(
            {"price": (("asset", "time"), empty),
             "priced_at": (("asset", "time"), empty.astype("datetime64[ns]"))},
            coords={"asset": assets, "time": stamps},
        )
    close = market["close"].sel(time=slice(None, stamps.max())).transpose("time", "asset")
    days = close.indexes["time"]
    values = np.asarray(close.values, dtype=np.float64)
    real = np.isfinite(values)
    if "close_filled" in market.data_vars:
        filled = market["close_filled"].sel(time=days).transpose("time", "asset").values
        real &= ~np.asarray(filled, dtype=bool)
    # forward fill "last real close" with pandas (xarray's ffill needs bottleneck)
    price = pd.DataFrame(np.where(real, values, np.nan), index=days, columns=assets).ffill()
    stamp = np.where(real, days.to_numpy()[:, None], np.datetime64("NaT", "ns"))
    dated = pd.DataFrame(stamp, index=days, columns=assets).ffill()
    price = price.loc[stamps].to_numpy(dtype=np.float64, copy=True)
    dated = dated.loc[stamps].to_numpy(dtype="datetime64[ns]", copy=True)

    unpriced = np.isnan(price)
    if unpriced.any():
        daily = bool((stamps == stamps.normalize()).all())
        currency = (np.asarray(market["currency"].values).astype(str)
                    if "currency" in market.coords else None)
        column = {a: j for j, a in enumerate(assets.tolist())}
        trades: dict[int, list[tuple[pd.Timestamp, float]]] = {}
        for e in entries:
            j = column.get(e.asset) if e.kind == "trade" else None
            if j is None or not unpriced[:, j].any():
                continue
            if currency is not None and e.currency != currency[j]:
                continue
            ts = pd.Timestamp(e.ts)
            trades.setdefault(j, []).append((ts.normalize() if daily else ts, float(e.price)))
        for j, rows in trades.items():
            rows.sort(key=lambda r: r[0])
            when = pd.DatetimeIndex([r[0] for r in rows])
            for i in np.flatnonzero(unpriced[:, j]):
                k = int(when.searchsorted(stamps[i], side="right")) - 1
                if k >= 0:
                    price[i, j] = rows[k][1]
                    dated[i, j] = when[k].normalize().to_datetime64()
    return xr.Dataset(
        {
            "price": (("asset", "time"), price.T.astype(np.float64)),
            "priced_at": (("asset", "time"), dated.T.astype("datetime64[ns]")),
        },
        coords={"asset": assets, "time": stamps},
    )


# ---------------------------------------------------------------- P&L


def daily_pnl(values: xr.DataArray, flows: xr.DataArray | None = None) -> xr.DataArray:
    """Daily P&L net of external flows: ``values[t] - values[t-1] - flows[t]``.

    Parameters
    ----------
    values : xarray.DataArray
        ``nav(portfolio, time)`` in portfolio currencies (numpy or dask).
    flows : xarray.DataArray, optional
        External flows ``(portfolio, time)`` (deposits > 0), same labels as
        ``values`` in any order, e.g. from `pmkit.analytics.returns.external_flows`.
        Default: no flows.

    Returns
    -------
    xarray.DataArray
        ``pnl(portfolio, time)``; NaN at the first time.

    Raises
    ------
    AlignmentError
        ``values`` and ``flows`` have different portfolio or time labels (names them).
    ValidationError
        Wrong dims or non-finite values/flows.
    """
    v = _values(values)
    f = _aligned_flows(v, flows)
    pnl = apply_core(
        core.daily_pnl,
        v.reset_coords(drop=True), f,
        input_core_dims=[["time"], ["time"]],
        output_core_dims=[["time"]],
    )
    return pnl.transpose(*_PT).assign_coords(
        {c: v.coords[c] for c in v.coords if c not in v.dims}
    ).rename("pnl")


# ---------------------------------------------------------------- groups


def membership_matrix(
    registry: Any,
    groups: Sequence[str] | None = None,
    portfolios: Sequence[str] | None = None,
) -> xr.DataArray:
    """0/1 membership of portfolios in groups, from a `pmkit.registry.Registry`.

    Parameters
    ----------
    registry : pmkit.registry.Registry
        Membership comes from ``registry.get_group_portfolios`` (nested groups
        resolved, each portfolio once per group; needs VIEWER on each group).
    groups : sequence of str, optional
        Groups, one row each. Default: every group the acting user may view.
    portfolios : sequence of str, optional
        Portfolio labels of the columns (e.g. those of a values array).
        Default: with ``groups`` given, every member in order of first
        appearance; otherwise every portfolio the user may view.

    Returns
    -------
    xarray.DataArray
        ``membership(group, portfolio)``, float64 0/1.

    Raises
    ------
    DuplicateLabelError
        A group id repeats.
    AlignmentError
        ``portfolios`` is given and lacks members of a group (names them).
    """
    if groups is None:
        groups = [g.id for g in registry.groups()]
        if portfolios is None:
            portfolios = [p.id for p in registry.portfolios()]
    gids = list(groups)
    idx = pd.Index(gids)
    if idx.has_duplicates:
        raise DuplicateLabelError("group", idx[idx.duplicated()][0], "group ids must be unique")
    members = {g: list(dict.fromkeys(registry.get_group_portfolios(g))) for g in gids}
    if portfolios is None:
        cols = list(dict.fromkeys(p for g in gids for p in members[g]))
    else:
        cols = list(portfolios)
        if pd.Index(cols).has_duplicates:
            raise DuplicateLabelError("portfolio", pd.Index(cols)[pd.Index(cols).duplicated()][0],
                                      "portfolio labels must be unique")
        known = set(cols)
        for g in gids:
            lost = [p for p in members[g] if p not in known]
            if lost:
                raise AlignmentError(
                    "portfolio", lost, f"members of group {g!r} missing from `portfolios`"
                )
    pos = {p: j for j, p in enumerate(cols)}
    m = np.zeros((len(gids), len(cols)))
    for i, g in enumerate(gids):
        for p in members[g]:
            m[i, pos[p]] = 1.0
    return xr.DataArray(
        m, dims=("group", "portfolio"), coords={"group": gids, "portfolio": cols},
        name="membership",
    )


def group_values(values: xr.DataArray, membership: xr.DataArray) -> xr.DataArray:
    """Consolidated group values: the sum of member portfolio values.

    Parameters
    ----------
    values : xarray.DataArray
        ``nav(portfolio, time)`` (or ``nav(portfolio)``), numpy or dask.
    membership : xarray.DataArray
        ``(group, portfolio)`` weights, normally 0/1 from `membership_matrix`.
        Every portfolio it names must be in ``values``; portfolios of
        ``values`` it does not name count 0.

    Returns
    -------
    xarray.DataArray
        ``group_value(group, time)`` (or ``(group,)``), with ``currency(group)``
        when ``values`` carries ``currency(portfolio)``.

    Raises
    ------
    AlignmentError
        ``membership`` names portfolios that ``values`` lacks (names them).
    CurrencyMismatchError
        A group's members report in different currencies.
    ValidationError
        Wrong dims or non-finite entries.
    """
    dims = ("portfolio", "time") if "time" in getattr(values, "dims", ()) else ("portfolio",)
    v = _dataarray(values, "values", dims)
    _check_finite(v, "values")
    m = _dataarray(membership, "membership", ("group", "portfolio"))
    _check_finite(m, "membership")
    lost = m.indexes["portfolio"].difference(v.indexes["portfolio"])
    if len(lost):
        raise AlignmentError(
            "membership.portfolio", list(map(str, lost[:5])),
            f"{len(lost)} member portfolio(s) have no values",
        )
    m = m.reindex(portfolio=v.indexes["portfolio"], fill_value=0.0).reset_coords(drop=True)
    coords: dict[str, Any] = {}
    if "currency" in v.coords and v["currency"].dims == ("portfolio",):
        cur = np.asarray(v["currency"].values).astype(str)
        mv = np.asarray(m.values)
        group_cur = []
        for i, g in enumerate(m.indexes["group"]):
            found = sorted(set(cur[mv[i] != 0].tolist()))
            if len(found) > 1:
                raise CurrencyMismatchError(
                    "group", g, f"members report in {found}; convert to one currency first"
                )
            group_cur.append(found[0] if found else "")
        coords["currency"] = ("group", group_cur)
    out = apply_core(
        core.group_values,
        m, v.reset_coords(drop=True),
        input_core_dims=[["group", "portfolio"], ["portfolio"]],
        output_core_dims=[["group"]],
        output_sizes={"group": m.sizes["group"]},
    )
    return out.transpose("group", *dims[1:]).assign_coords(coords).rename("group_value")


# ---------------------------------------------------------------- average-cost P&L


def realized_unrealized_pnl(
    ledger_entries: Iterable[LedgerEntry],
    market: xr.Dataset,
    at: Any,
    *,
    portfolios: Sequence[str] | None = None,
    fx: xr.DataArray | xr.Dataset | None = None,
) -> xr.Dataset:
    """Realized and unrealized P&L per portfolio and asset, by the average-cost method.

    Trades are replayed per (portfolio, asset) in time order (ties by ledger
    ``seq``) with the average-cost state machine of
    `pmkit.core.valuation.average_cost`: buys (and short sales) build a cost
    basis including fees; reductions realize ``units * (price - average
    cost)`` minus their fee share; a trade through zero closes then reopens at
    the trade price. The rest is marked at the close at ``at``. FIFO tax lots
    are a different method (see the tax-lot module when it lands).

    Parameters
    ----------
    ledger_entries : iterable of LedgerEntry
        Ledger rows (any portfolios, any order); cash rows are ignored. Each
        portfolio's trades must share one currency (that of its prices).
    market : xarray.Dataset
        Market dataset; ``at`` must be one of its times.
    at : datetime-like
        Valuation time. Entries with ``ts <= at`` count; with daily (all
        midnight) market times an entry counts from its calendar date, as in
        `pmkit.model.holdings_from_ledger`.
    portfolios : sequence of str, optional
        Portfolios to report (default: every one with a trade, sorted).
    fx : xarray.DataArray or xarray.Dataset, optional
        ``rate(currency, time)`` to convert marks of assets priced in another
        currency than the trades (see the module docstring).

    Returns
    -------
    xarray.Dataset
        On ``(portfolio, asset)`` (traded assets, market order), in each
        portfolio's trade currency: ``position`` (units), ``average_cost``
        (per unit, fees included; 0 when flat), ``realized``, ``unrealized``
        and ``mark`` (close at ``at`` converted); coordinate
        ``currency(portfolio)``.

    Raises
    ------
    UnknownAssetError
        A trade names an asset the market lacks.
    ValidationError
        ``at`` is not a market time, or a malformed entry.
    MissingPriceError
        An open position has no close at ``at``.
    CurrencyMismatchError
        A portfolio trades in several currencies, or a mark needs an FX rate
        that is not given.
    """
    when = _timestamp("at", at)
    mtimes = market.indexes["time"]
    if when not in mtimes:
        raise ValidationError("at", _fmt_time(when), "is not a time of the market data")
    daily = bool((mtimes == mtimes.normalize()).all())
    wanted = None if portfolios is None else list(portfolios)

    rows = []
    for k, e in enumerate(ledger_entries):
        if e.kind != "trade" or (wanted is not None and e.portfolio not in wanted):
            continue
        e.validated()
        ts = pd.Timestamp(e.ts)
        key = ts.normalize() if daily else ts
        if key <= when:
            rows.append((e, ts, e.seq if e.seq is not None else k, k))
    rows.sort(key=lambda r: (r[1], r[2], r[3]))
    m_assets = market.indexes["asset"]
    unknown = sorted({str(r[0].asset) for r in rows} - set(m_assets))
    if unknown:
        raise UnknownAssetError("asset", unknown, "ledger trades assets not in the market data")

    ports = wanted if wanted is not None else sorted({r[0].portfolio for r in rows})
    traded = {r[0].asset for r in rows}
    assets = [a for a in m_assets if a in traded]
    p_pos = {p: i for i, p in enumerate(ports)}
    a_pos = {a: j for j, a in enumerate(assets)}
    cur: dict[str, str] = {}
    for e, *_ in rows:
        c = cur.setdefault(e.portfolio, e.currency)
        if c != e.currency:
            raise CurrencyMismatchError(
                "currency", e.currency,
                f"portfolio {e.portfolio!r} trades in {c} and {e.currency}; one currency each",
            )
    pcur = np.array([cur.get(p, "") for p in ports], dtype=object)

    n_p, n_a = len(ports), len(assets)
    counts = np.zeros((n_p, n_a), dtype=int)
    for e, *_ in rows:
        counts[p_pos[e.portfolio], a_pos[e.asset]] += 1
    n = max(int(counts.max(initial=0)), 1)
    qty, px, fee = (np.zeros((n_p, n_a, n)) for _ in range(3))
    fill = np.zeros((n_p, n_a), dtype=int)
    for e, *_ in rows:
        i, j = p_pos[e.portfolio], a_pos[e.asset]
        s = fill[i, j]
        qty[i, j, s], px[i, j, s], fee[i, j, s] = e.quantity, e.price, e.fee
        fill[i, j] = s + 1

    close = np.asarray(market["close"].sel(asset=assets, time=when).values, dtype=np.float64)
    acur = np.asarray(market["currency"].sel(asset=assets).values).astype(str)
    mark = np.broadcast_to(close, (n_p, n_a)).copy()
    open_pos = np.abs(qty.sum(axis=2)) > OPEN_QUANTITY_TOLERANCE
    foreign = (pcur[:, None] != acur[None, :]) & (counts > 0)
    if foreign.any():
        if fx is None:
            i, j = np.argwhere(foreign)[0]
            raise CurrencyMismatchError(
                _cell("currency", assets[j]), str(acur[j]),
                f"portfolio {ports[i]!r} trades {assets[j]!r} in {pcur[i]} but it is priced in "
                f"{acur[j]}; pass fx= rates (currency, time)",
            )
        needed = {*acur[foreign.any(axis=0)].tolist(), *pcur[foreign.any(axis=1)].tolist()}
        rate = fx_rates(fx, needed, [when]).isel(time=0)
        for i, j in np.argwhere(foreign):
            mark[i, j] = close[j] * float(rate.sel(currency=acur[j])) / float(
                rate.sel(currency=pcur[i])
            )
    unpriced = open_pos & np.isnan(mark)
    if unpriced.any():
        i, j = np.argwhere(unpriced)[0]
        raise MissingPriceError(
            _cell("close", assets[j], when), float("nan"),
            f"portfolio {ports[i]!r} has an open position in {assets[j]!r} but no close at "
            f"{_fmt_time(when)}",
        )
    mark = np.where(open_pos, mark, 0.0)  # flat positions ignore the mark (and any NaN)

    result = core.average_cost_pnl(qty, px, fee, mark)
    pos, avg, realized, unrealized = (np.asarray(x) for x in result)
    flat = ~open_pos  # round-off residue of a closed position counts as flat
    pos = np.where(flat, 0.0, pos)
    avg = np.where(flat, 0.0, avg)
    unrealized = np.where(flat, 0.0, unrealized)
    dims = ("portfolio", "asset")
    return xr.Dataset(
        {
            "position": (dims, pos),
            "average_cost": (dims, avg),
            "realized": (dims, realized),
            "unrealized": (dims, unrealized),
            "mark": (dims, mark),
        },
        coords={"portfolio": list(ports), "asset": assets,
                "currency": ("portfolio", pcur.astype(str))},
        attrs={"at": str(when), "method": "average cost"},
    )
