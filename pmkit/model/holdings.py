"""Holdings as an xarray Dataset, built from arrays or from the ledger, and valued.

A holdings dataset holds ``quantity(portfolio, asset, time)`` (units held,
float64) and ``cash(portfolio, time)`` (in the portfolio currency, float64),
with coordinate ``currency(portfolio)``. Values come from a market dataset
(`pmkit.model.market`); ragged market histories (NaN before listing) are
supported everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.errors import (
    CurrencyMismatchError,
    MissingPriceError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.ledger import LedgerEntry, cash_effect
from pmkit.model.market import (
    _cell,
    _check_currencies,
    _check_time,
    _check_unique,
    _first_cell,
    _fmt_time,
    _per_label,
    _string_labels,
    _time_index,
)

__all__ = [
    "check_holdings_assets",
    "holdings_dataset",
    "holdings_from_ledger",
    "portfolio_values",
    "position_values",
    "weights",
]

_QDIMS = ("portfolio", "asset", "time")
_CDIMS = ("portfolio", "time")


def _labelled(da: xr.DataArray, name: str, dims: tuple[str, ...]) -> xr.DataArray:
    if not isinstance(da, xr.DataArray) or set(da.dims) != set(dims):
        got = da.dims if isinstance(da, xr.DataArray) else type(da).__name__
        raise ValidationError(name, got, f"must be a DataArray with dims {dims}")
    for dim in dims:
        if dim not in da.indexes:
            raise ValidationError(f"{name}.{dim}", None, "needs coordinate labels")
    return da.transpose(*dims)


def _positions(labels: pd.Index, wanted: pd.Index, field: str) -> np.ndarray:
    """Positions of ``wanted`` in ``labels``; both must hold the same set of labels."""
    odd = labels.symmetric_difference(wanted)
    if len(odd):
        raise ValidationError(field, odd[0], "cash and quantity must have the same labels")
    return labels.get_indexer(wanted)


def _finite(values: np.ndarray, name: str, labels: Sequence[Sequence[Any]]) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        cell = _first_cell(bad)
        where = [axis[i] for axis, i in zip(labels, cell, strict=True)]
        raise ValidationError(_cell(name, *where), float(values[cell]), "must be finite")


def holdings_dataset(
    quantity: xr.DataArray,
    cash: xr.DataArray,
    currency: Mapping[str, str] | str = "USD",
) -> xr.Dataset:
    """Validate quantities and cash and bundle them as a holdings dataset.

    Parameters
    ----------
    quantity : xarray.DataArray
        Units held, dims ``(portfolio, asset, time)`` in any order, labelled.
    cash : xarray.DataArray
        Cash in the portfolio currency, dims ``(portfolio, time)``, with the
        same portfolio and time labels as ``quantity`` (any order).
    currency : str or Mapping[str, str], default "USD"
        ISO 4217 code of each portfolio's cash and reported values.

    Returns
    -------
    xarray.Dataset
        ``quantity(portfolio, asset, time)`` and ``cash(portfolio, time)`` as
        float64 copies, ``time`` as tz-naive ``datetime64[ns]``, coordinate
        ``currency(portfolio)``. Other coordinates of the inputs are dropped.

    Raises
    ------
    DuplicateLabelError
        A label repeats along a dimension.
    NonMonotonicTimeError
        ``time`` is not strictly increasing.
    ValidationError
        Non-finite quantity or cash (names portfolio, asset and time),
        mismatched labels, or a bad currency.
    """
    q = _labelled(quantity, "quantity", _QDIMS)
    c = _labelled(cash, "cash", _CDIMS)
    portfolios = _string_labels(q.indexes["portfolio"], "portfolio")
    assets = _string_labels(q.indexes["asset"], "asset")
    _check_unique(portfolios, "portfolio")
    _check_unique(assets, "asset")
    times = _time_index(q.indexes["time"])
    _check_time(times)
    c_ports = pd.Index(_string_labels(c.indexes["portfolio"], "portfolio"))
    c_times = _time_index(c.indexes["time"], "cash.time")
    _check_unique(c_ports, "portfolio")
    _check_unique(c_times, "time")
    rows = _positions(c_ports, pd.Index(portfolios), "cash.portfolio")
    cols = _positions(c_times, times, "cash.time")

    qv = np.array(q.values, dtype=np.float64)
    cv = np.array(c.values, dtype=np.float64)[np.ix_(rows, cols)]
    _finite(qv, "quantity", (portfolios, assets, times))
    _finite(cv, "cash", (portfolios, times))
    currencies = np.array(_per_label("currency", currency, portfolios, "portfolio"), dtype=object)
    _check_currencies(currencies, portfolios)
    return xr.Dataset(
        {"quantity": (_QDIMS, qv), "cash": (_CDIMS, cv)},
        coords={
            "portfolio": portfolios,
            "asset": assets,
            "time": times.to_numpy(),
            "currency": ("portfolio", currencies.astype(str)),
        },
    )


def holdings_from_ledger(
    entries: Iterable[LedgerEntry],
    portfolios: Sequence[str],
    assets: Sequence[str],
    times: Any,
    currency: Mapping[str, str] | str = "USD",
) -> xr.Dataset:
    """Replay ledger entries into holdings at each of ``times``.

    The state at time ``t`` is the replay of every entry with ``entry.ts <= t``
    (entries after the last time are not applied). Daily data are the
    exception: when every time is at midnight, a time labels a whole trading
    day (valued at its close), so an entry counts from the time whose date is
    its calendar date (or the next time, for an entry on a non-trading day). The result at the last
    time equals `pmkit.ledger.replay` of the same entries up to float
    summation order.

    Parameters
    ----------
    entries : Iterable[LedgerEntry]
        Ledger entries in any order; each is checked with ``validated()``.
        Entries of portfolios not in ``portfolios`` are ignored.
    portfolios : Sequence[str]
        Portfolio labels of the result.
    assets : Sequence[str]
        Asset labels of the result; every traded asset must be among them.
    times : array-like of datetimes
        Strictly increasing valuation times (tz-aware is converted to UTC).
    currency : str or Mapping[str, str], default "USD"
        Each portfolio's currency; every entry must be in it.

    Returns
    -------
    xarray.Dataset
        A holdings dataset, see `holdings_dataset`.

    Raises
    ------
    UnknownAssetError
        A trade names an asset not in ``assets`` (value: sorted list of them).
    CurrencyMismatchError
        An entry's currency differs from its portfolio's currency.
    ValidationError
        A malformed entry or bad labels.
    """
    ports = _string_labels(portfolios, "portfolio")
    names = _string_labels(assets, "asset")
    _check_unique(ports, "portfolio")
    _check_unique(names, "asset")
    stamps = _time_index(times)
    _check_time(stamps)
    p_pos = {p: i for i, p in enumerate(ports.tolist())}
    a_pos = {a: j for j, a in enumerate(names.tolist())}
    cur = _per_label("currency", currency, ports, "portfolio")

    p_idx, a_idx, ts, dq, dc = [], [], [], [], []
    unknown: set[str] = set()
    for entry in entries:
        i = p_pos.get(entry.portfolio)
        if i is None:
            continue
        entry.validated()
        if entry.currency != cur[i]:
            raise CurrencyMismatchError(
                "currency",
                entry.currency,
                f"ledger entry seq={entry.seq} of portfolio {entry.portfolio!r} is in "
                f"{entry.currency} but the portfolio reports in {cur[i]}; FX conversion is not "
                "supported yet",
            )
        j = -1
        if entry.kind == "trade":
            j = a_pos.get(entry.asset, -1)
            if j < 0:
                unknown.add(str(entry.asset))
        p_idx.append(i)
        a_idx.append(j)
        ts.append(entry.ts)
        dq.append(entry.quantity)
        dc.append(cash_effect(entry))
    if unknown:
        raise UnknownAssetError("asset", sorted(unknown), "ledger trades assets not in `assets`")

    n_p, n_a, n_t = len(ports), len(names), len(stamps)
    # Bucket each entry at the first time >= its ts, add within buckets, then cumsum over time.
    keys = np.array(ts, dtype="datetime64[ns]")
    if n_t and (stamps == stamps.normalize()).all():
        keys = keys.astype("datetime64[D]").astype("datetime64[ns]")  # daily labels: by date
    bucket = np.searchsorted(stamps.to_numpy(), keys, side="left")
    p_arr, a_arr = np.array(p_idx, dtype=np.intp), np.array(a_idx, dtype=np.intp)
    applied = bucket < n_t
    trade = applied & (a_arr >= 0)
    qty = np.zeros((n_p, n_a, n_t))
    np.add.at(qty, (p_arr[trade], a_arr[trade], bucket[trade]), np.array(dq)[trade])
    cash = np.zeros((n_p, n_t))
    np.add.at(cash, (p_arr[applied], bucket[applied]), np.array(dc)[applied])
    np.cumsum(qty, axis=2, out=qty)
    np.cumsum(cash, axis=1, out=cash)
    coords = {"portfolio": ports, "asset": names, "time": stamps.to_numpy()}
    return holdings_dataset(
        xr.DataArray(qty, dims=_QDIMS, coords=coords),
        xr.DataArray(cash, dims=_CDIMS, coords={k: coords[k] for k in _CDIMS}),
        currency,
    )


def check_holdings_assets(holdings: xr.Dataset, market: xr.Dataset) -> None:
    """Check that the market data cover every asset and time of ``holdings``.

    Parameters
    ----------
    holdings : xarray.Dataset
        Holdings dataset.
    market : xarray.Dataset
        Market dataset.

    Raises
    ------
    UnknownAssetError
        Holdings name assets the market lacks (value: sorted list of them).
    ValidationError
        A holdings time is not a market time (names the first such time).
    """
    missing = sorted(set(holdings.indexes["asset"]) - set(market.indexes["asset"]))
    if missing:
        raise UnknownAssetError(
            "asset", missing, f"{len(missing)} asset(s) in holdings are not in the market data"
        )
    h_times = holdings.indexes["time"]
    absent = ~h_times.isin(market.indexes["time"])
    if absent.any():
        raise ValidationError(
            "time", h_times[absent][0], "holdings time is not in the market's time axis"
        )


def _require_currency(ds: xr.Dataset, what: str, dim: str) -> np.ndarray:
    if "currency" not in ds.coords or ds["currency"].dims != (dim,):
        raise ValidationError("currency", None, f"{what} need a currency coordinate on {dim!r}")
    return ds["currency"].values


def _quantity_and_price(
    holdings: xr.Dataset, market: xr.Dataset
) -> tuple[xr.DataArray, xr.DataArray]:
    """Return quantity and a NaN-free close on the holdings grid, after every check.

    The close is NaN only where an asset is not listed (or has a gap); the
    checks prove that no portfolio holds a unit there, so such cells are set
    to 0 and always multiply a zero quantity: zero units of anything are
    worth exactly zero. This is not a silent fill: no held position is ever
    valued at a made-up price (that raises `MissingPriceError`).
    """
    check_holdings_assets(holdings, market)
    q = holdings["quantity"].transpose(*_QDIMS)
    # Market metadata is dropped: its currency(asset) would clash with currency(portfolio).
    close = (
        market["close"]
        .sel(asset=q.indexes["asset"], time=q.indexes["time"])
        .transpose("asset", "time")
        .reset_coords(drop=True)
    )
    qv, cv = q.values, close.values
    held = qv != 0
    pcur = _require_currency(holdings, "holdings", "portfolio")
    _require_currency(market, "market data", "asset")
    acur = market["currency"].sel(asset=q.indexes["asset"]).values
    foreign = held.any(axis=2) & (pcur[:, None] != acur[None, :])
    if foreign.any():
        p, a = np.argwhere(foreign)[0]
        raise CurrencyMismatchError(
            _cell("currency", q.asset.values[a]),
            str(acur[a]),
            f"portfolio {q.portfolio.values[p]!r} reports in {pcur[p]} but holds "
            f"{q.asset.values[a]!r} priced in {acur[a]}; value it with FX rates through "
            "pmkit.analytics.valuation.portfolio_values(..., fx=...)",
        )
    unpriced = held & np.isnan(cv)[None, :, :]
    if unpriced.any():
        p, a, t = _first_cell(unpriced)
        asset, when = q.asset.values[a], pd.Timestamp(q.time.values[t])
        raise MissingPriceError(
            _cell("close", asset, when),
            float("nan"),
            f"portfolio {q.portfolio.values[p]!r} holds {qv[p, a, t]:g} units of {asset!r} at "
            f"{_fmt_time(when)} but there is no close (not listed yet, or a gap)",
        )
    return q, close.fillna(0.0)


def position_values(holdings: xr.Dataset, market: xr.Dataset) -> xr.DataArray:
    """Value of each position: quantity times close.

    Parameters
    ----------
    holdings : xarray.Dataset
        Holdings dataset; its times must be market times.
    market : xarray.Dataset
        Market dataset, possibly ragged (NaN before listing).

    Returns
    -------
    xarray.DataArray
        ``position_value(portfolio, asset, time)`` in the portfolio currency.
        Exactly 0 where the quantity is 0, even if the asset is not listed:
        zero units of anything are worth zero, so no price is invented.

    Raises
    ------
    MissingPriceError
        A held asset (quantity != 0) has no close; names portfolio, asset, time.
    CurrencyMismatchError
        A held asset is priced in another currency than its portfolio's.
    UnknownAssetError
        Holdings name assets the market lacks.
    """
    q, price = _quantity_and_price(holdings, market)
    return (q * price).transpose(*_QDIMS).rename("position_value")


def portfolio_values(holdings: xr.Dataset, market: xr.Dataset) -> xr.DataArray:
    """Net asset value: sum of position values plus cash.

    Parameters
    ----------
    holdings : xarray.Dataset
        Holdings dataset; its times must be market times.
    market : xarray.Dataset
        Market dataset, possibly ragged.

    Returns
    -------
    xarray.DataArray
        ``nav(portfolio, time)`` in the portfolio currency.

    Raises
    ------
    MissingPriceError, CurrencyMismatchError, UnknownAssetError
        As `position_values`.
    """
    q, price = _quantity_and_price(holdings, market)
    # xr.dot is a BLAS contraction; (q * price).sum("asset") would take a slow NaN-skipping path.
    nav = xr.dot(q, price, dim="asset") + holdings["cash"]
    return nav.transpose(*_CDIMS).rename("nav")


def weights(holdings: xr.Dataset, market: xr.Dataset) -> xr.Dataset:
    """Position and cash weights as fractions of net asset value (NAV).

    Parameters
    ----------
    holdings : xarray.Dataset
        Holdings dataset; its times must be market times.
    market : xarray.Dataset
        Market dataset, possibly ragged.

    Returns
    -------
    xarray.Dataset
        ``weight(portfolio, asset, time)`` and ``cash_weight(portfolio, time)``
        (fractions; weights summed over ``asset`` plus ``cash_weight`` equal 1)
        and ``nav(portfolio, time)`` in the portfolio currency. Where NAV <= 0
        (a wiped-out or net-short portfolio) fractions of NAV are meaningless,
        so both weights are NaN there.

    Raises
    ------
    MissingPriceError, CurrencyMismatchError, UnknownAssetError
        As `position_values`.
    """
    q, price = _quantity_and_price(holdings, market)
    cash = holdings["cash"].transpose(*_CDIMS)
    nav = (xr.dot(q, price, dim="asset") + cash).transpose(*_CDIMS)
    positive = nav > 0
    return xr.Dataset(
        {
            "weight": (q * price / nav).where(positive).transpose(*_QDIMS),
            "cash_weight": (cash / nav).where(positive),
            "nav": nav,
        }
    )
