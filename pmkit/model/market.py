"""Market data as an xarray Dataset: construction, validation and simple views.

A market dataset holds ``close(asset, time)`` (float64, price per unit in the
asset's ``currency``), optionally ``volume(asset, time)`` (units traded), and
asset metadata as coordinates on ``asset``: ``sector``, ``asset_class``,
``currency`` and ``lot_size``.

Ragged histories are first-class: NaN *before* an asset's first valid close
means "not listed yet" and stays NaN. NaN *after* listing is a gap that is
either refused or forward-filled under an explicit, recorded policy.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.errors import (
    DuplicateLabelError,
    MissingPriceError,
    NonMonotonicTimeError,
    NonPositivePriceError,
    ValidationError,
)

__all__ = [
    "latest_prices",
    "listing_dates",
    "market_dataset",
    "market_time_at",
    "simple_returns",
    "validate_market",
]

NanPolicy = Literal["raise", "ffill"]
TimeLike = str | datetime | np.datetime64 | pd.Timestamp


# ---------------------------------------------------------------- label helpers
# Shared with pmkit.model.holdings so both layers word their errors alike.


def _fmt_time(t: Any) -> str:
    """Render a timestamp as a date when it is midnight, else as ISO text."""
    ts = pd.Timestamp(t)
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def _cell(name: str, *labels: Any) -> str:
    """Field name of one cell, e.g. ``close[AAPL, 2020-03-02]``."""
    stamps = pd.Timestamp | np.datetime64
    parts = [_fmt_time(x) if isinstance(x, stamps) else str(x) for x in labels]
    return f"{name}[{', '.join(parts)}]"


def _string_labels(labels: Iterable[Any], dim: str) -> np.ndarray:
    """Return ``labels`` as a numpy unicode array; every label must be a str."""
    out = list(labels)
    for label in out:
        if not isinstance(label, str) or not label:
            raise ValidationError(dim, label, f"{dim} labels must be non-empty strings")
    return np.array(out, dtype=str)


def _check_unique(labels: Iterable[Hashable], dim: str) -> None:
    """Raise `DuplicateLabelError` naming the first label repeated along ``dim``."""
    idx = pd.Index(labels)
    dup = idx.duplicated()
    if dup.any():
        label = idx[dup][0]
        count = int((idx == label).sum())
        raise DuplicateLabelError(dim, label, f"appears {count} times; {dim} labels must be unique")


def _time_index(values: Any, field: str = "time") -> pd.DatetimeIndex:
    """Coerce ``values`` to a tz-naive (UTC) ``datetime64[ns]`` index without NaT."""
    if pd.Index(values).dtype.kind in "biufc":
        # pandas would read numbers as nanoseconds since 1970: refuse rather than guess
        raise ValidationError(field, values, "time labels must be datetimes, not numbers")
    try:
        idx = pd.DatetimeIndex(values)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, values, f"cannot be read as timestamps ({exc})") from exc
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    if idx.hasnans:
        pos = int(np.flatnonzero(idx.isna())[0])
        raise ValidationError(field, pos, "time labels must not be NaT (position shown)")
    return idx.as_unit("ns")


def _check_time(idx: pd.DatetimeIndex) -> None:
    """Require ``idx`` unique and strictly increasing; name the first offender."""
    _check_unique(idx, "time")
    bad = np.flatnonzero(np.diff(idx.asi8) <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise NonMonotonicTimeError(
            "time", idx[i], f"comes after {_fmt_time(idx[i - 1])}; time must be strictly increasing"
        )


def _timestamp(field: str, value: TimeLike) -> pd.Timestamp:
    """One tz-naive UTC timestamp from user input."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, value, "is not a timestamp") from exc
    if ts is pd.NaT:
        raise ValidationError(field, value, "is not a timestamp")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tz is not None else ts


def _per_label(name: str, spec: Any, labels: np.ndarray, dim: str = "asset") -> list[Any]:
    """Expand a scalar or a Mapping label->value to one value per label."""
    if isinstance(spec, Mapping):
        for label in labels:
            if label not in spec:
                raise ValidationError(name, str(label), f"no {name} given for this {dim}")
        return [spec[label] for label in labels]
    return [spec] * len(labels)


def _check_currencies(values: np.ndarray, labels: np.ndarray) -> None:
    for label, cur in zip(labels, values, strict=True):
        if not (isinstance(cur, str) and len(cur) == 3 and cur.isalpha() and cur.isupper()):
            raise ValidationError(
                _cell("currency", label), cur, "must be a 3-letter ISO 4217 code such as 'USD'"
            )


def _first_cell(mask: np.ndarray) -> tuple[int, ...]:
    """Index of the earliest True cell, time (the last axis) first, then other axes."""
    order = (mask.ndim - 1, *range(mask.ndim - 1))
    hit = np.argwhere(mask.transpose(order))[0]
    return (*(int(i) for i in hit[1:]), int(hit[0]))


# ---------------------------------------------------------------- construction


def _frame_values(frame: pd.DataFrame, name: str) -> np.ndarray:
    try:
        return frame.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, str(frame.dtypes.to_dict()), "must be numeric") from exc


def _volume_values(volume: pd.DataFrame, assets: np.ndarray, times: pd.DatetimeIndex) -> np.ndarray:
    """Volume as (asset, time) on exactly the labels of ``close`` (no silent reindexing)."""
    if not isinstance(volume, pd.DataFrame):
        raise ValidationError("volume", type(volume).__name__, "must be a pandas DataFrame")
    v_assets = _string_labels(volume.columns, "asset")
    v_times = _time_index(volume.index)
    _check_unique(v_assets, "asset")
    _check_unique(v_times, "time")
    extra = sorted(set(v_assets.tolist()) ^ set(assets.tolist()))
    if extra:
        raise ValidationError("volume.columns", extra, "volume must have the same assets as close")
    odd = v_times.symmetric_difference(times)
    if len(odd):
        raise ValidationError("volume.index", odd[0], "volume must have the same times as close")
    values = pd.DataFrame(_frame_values(volume, "volume"), index=v_times, columns=v_assets)
    return values.reindex(index=times, columns=assets).to_numpy().T


def market_dataset(
    close: pd.DataFrame,
    volume: pd.DataFrame | None = None,
    *,
    sector: str | Mapping[str, str] | None = None,
    asset_class: str | Mapping[str, str] | None = None,
    currency: str | Mapping[str, str] = "USD",
    lot_size: int | Mapping[str, int] = 1,
    nan_policy: NanPolicy = "raise",
    ffill_limit: int | None = None,
) -> xr.Dataset:
    """Build and validate a market dataset from time-indexed frames.

    Parameters
    ----------
    close : pandas.DataFrame
        Close prices, index = time, one column per asset (string labels), in
        each asset's ``currency`` per unit. NaN before an asset's first price
        means "not listed yet".
    volume : pandas.DataFrame, optional
        Units traded, with exactly the labels of ``close``. NaN means unknown.
    sector, asset_class : str or Mapping[str, str], optional
        Per-asset metadata. A scalar applies to every asset; a Mapping must
        cover every asset (extra keys are ignored). Omitted when None.
    currency : str or Mapping[str, str], default "USD"
        ISO 4217 code of each asset's prices.
    lot_size : int or Mapping[str, int], default 1
        Smallest tradable number of units, a positive integer.
    nan_policy : {"raise", "ffill"}, default "raise"
        What to do with NaN after listing; see `validate_market`.
    ffill_limit : int, optional
        Longest gap (in rows) that ``"ffill"`` may fill; required with it.

    Returns
    -------
    xarray.Dataset
        ``close(asset, time)`` float64, ``close_filled(asset, time)`` bool,
        ``volume(asset, time)`` float64 when given, metadata coordinates on
        ``asset``, ``time`` tz-naive UTC ``datetime64[ns]`` (tz-aware input is
        converted to UTC). Attributes ``nan_policy`` and ``ffill_limit``.

    Raises
    ------
    ValidationError
        Or one of its subclasses, naming the offending label and value.
    """
    if not isinstance(close, pd.DataFrame):
        raise ValidationError(
            "close",
            type(close).__name__,
            "must be a DataFrame indexed by time with one column per asset",
        )
    assets = _string_labels(close.columns, "asset")
    times = _time_index(close.index)
    # Checked here as well as in validate_market: volume alignment needs unique labels.
    _check_unique(assets, "asset")
    _check_unique(times, "time")
    data_vars: dict[str, Any] = {"close": (("asset", "time"), _frame_values(close, "close").T)}
    if volume is not None:
        data_vars["volume"] = (("asset", "time"), _volume_values(volume, assets, times))
    coords: dict[str, Any] = {"asset": assets, "time": times.to_numpy()}
    for name, spec in (("sector", sector), ("asset_class", asset_class)):
        if spec is not None:
            coords[name] = ("asset", np.array([str(v) for v in _per_label(name, spec, assets)]))
    currencies = np.array(_per_label("currency", currency, assets), dtype=object)
    _check_currencies(currencies, assets)  # before str() could turn e.g. None into "None"
    coords["currency"] = ("asset", currencies.astype(str))
    lots = _per_label("lot_size", lot_size, assets)
    _check_lot_sizes(lots, assets)
    coords["lot_size"] = ("asset", np.array(lots, dtype=np.int64))
    ds = xr.Dataset(data_vars, coords=coords)
    return validate_market(ds, nan_policy=nan_policy, ffill_limit=ffill_limit)


# ---------------------------------------------------------------- validation


def _checked_policy(nan_policy: str, ffill_limit: int | None) -> int:
    """Return the fill limit in rows (0 = nothing may be filled)."""
    if nan_policy == "raise":
        # 0 is accepted so that the attrs of a validated dataset can be fed back in.
        if ffill_limit not in (None, 0):
            raise ValidationError(
                "ffill_limit", ffill_limit, "only applies with nan_policy='ffill'"
            )
        return 0
    if nan_policy == "ffill":
        ok = isinstance(ffill_limit, int | np.integer) and not isinstance(ffill_limit, bool)
        if not ok or ffill_limit < 1:
            raise ValidationError(
                "ffill_limit", ffill_limit, "nan_policy='ffill' needs an explicit int >= 1"
            )
        return int(ffill_limit)
    raise ValidationError("nan_policy", nan_policy, "must be 'raise' or 'ffill'")


def _dims_of(ds: xr.Dataset, name: str) -> xr.DataArray:
    da = ds[name]
    if set(da.dims) != {"asset", "time"}:
        raise ValidationError(name, da.dims, "must have exactly the dims ('asset', 'time')")
    return da.transpose("asset", "time")


def _check_metadata(ds: xr.Dataset, assets: np.ndarray) -> None:
    if "currency" in ds.coords:
        _check_currencies(ds["currency"].values, assets)
    if "lot_size" in ds.coords:
        _check_lot_sizes(ds["lot_size"].values.tolist(), assets)


def _check_lot_sizes(values: list[Any], assets: np.ndarray) -> None:
    for asset, lot in zip(assets, values, strict=True):
        # bool is an int subclass, and np.array([1, True]) would quietly make it 1
        integral = isinstance(lot, int | np.integer) and not isinstance(lot, bool | np.bool_)
        if not integral or lot < 1:
            raise ValidationError(_cell("lot_size", asset), lot, "must be a positive integer")


def _check_prices(close: np.ndarray, assets: np.ndarray, times: pd.DatetimeIndex) -> None:
    with np.errstate(invalid="ignore"):
        nonpos = close <= 0
    if nonpos.any():
        a, t = _first_cell(nonpos)
        raise NonPositivePriceError(
            _cell("close", assets[a], times[t]), float(close[a, t]), "prices must be > 0"
        )
    inf = np.isinf(close)
    if inf.any():
        a, t = _first_cell(inf)
        raise ValidationError(
            _cell("close", assets[a], times[t]), float(close[a, t]), "prices must be finite"
        )


def _apply_nan_policy(
    close: np.ndarray, assets: np.ndarray, times: pd.DatetimeIndex, policy: str, limit: int
) -> np.ndarray:
    """Refuse or forward-fill NaN after listing, in place; return the filled mask."""
    valid = ~np.isnan(close)
    never = ~valid.any(axis=1)
    if never.any():
        raise MissingPriceError(
            "asset", str(assets[np.argmax(never)]), "has no valid close price at any time"
        )
    n_t = close.shape[1]
    pos = np.arange(n_t)
    last = np.maximum.accumulate(np.where(valid, pos, -1), axis=1)
    missing = ~valid & (last >= 0)  # NaN before listing (last == -1) is honest: left alone
    if not missing.any():
        return missing
    if policy == "raise":
        offending = missing
    else:
        # Gap length = distance between the surrounding valid rows; a trailing gap ends at n_t.
        nxt = np.minimum.accumulate(np.where(valid, pos, n_t)[:, ::-1], axis=1)[:, ::-1]
        gap = nxt - last - 1
        offending = missing & (gap > limit)
    if offending.any():
        a, t = _first_cell(offending)  # earliest offending cell is always a gap's first row
        listed = times[int(np.argmax(valid[a]))]
        if policy == "raise":
            why = "nan_policy='raise' refuses gaps (use nan_policy='ffill' with a ffill_limit)"
        else:
            why = f"the gap is {int(gap[a, t])} rows long, more than ffill_limit={limit}"
        raise MissingPriceError(
            _cell("close", assets[a], times[t]),
            float("nan"),
            f"{assets[a]} has no close at {_fmt_time(times[t])} although it listed on "
            f"{_fmt_time(listed)}; {why}",
        )
    close[missing] = np.take_along_axis(close, last, axis=1)[missing]
    return missing


def _check_volume(vol: np.ndarray, assets: np.ndarray, times: pd.DatetimeIndex) -> None:
    with np.errstate(invalid="ignore"):
        bad = (vol < 0) | np.isposinf(vol)
    if bad.any():
        a, t = _first_cell(bad)
        raise ValidationError(
            _cell("volume", assets[a], times[t]),
            float(vol[a, t]),
            "volume must be finite and >= 0 (NaN means unknown)",
        )


def validate_market(
    market: xr.Dataset, nan_policy: NanPolicy = "raise", ffill_limit: int | None = None
) -> xr.Dataset:
    """Check a market dataset and apply the NaN policy; return a new dataset.

    The input is never modified: errors leave it as it was, and filling works
    on a copy.

    Parameters
    ----------
    market : xarray.Dataset
        Needs ``close(asset, time)``; ``volume(asset, time)`` and the metadata
        coordinates ``currency`` and ``lot_size`` are checked when present.
    nan_policy : {"raise", "ffill"}, default "raise"
        NaN *before* an asset's first valid close ("not listed yet") is always
        kept. NaN *after* listing (an interior gap or trailing NaN) raises
        `MissingPriceError` under ``"raise"``. Under ``"ffill"`` a gap of at
        most ``ffill_limit`` consecutive rows is filled with the last close;
        a longer gap still raises (nothing of it is filled).
    ffill_limit : int, optional
        Required (>= 1) with ``"ffill"``; None or 0 with ``"raise"``.

    Returns
    -------
    xarray.Dataset
        A copy with float64 ``close`` (filled where allowed), a boolean
        ``close_filled(asset, time)`` marking every filled cell (OR-ed with an
        existing ``close_filled``, so re-validation keeps the record), ``time``
        as ``datetime64[ns]``, and attrs ``nan_policy`` and ``ffill_limit``
        (0 under ``"raise"``).

    Raises
    ------
    DuplicateLabelError
        A label repeats along ``asset`` or ``time``.
    NonMonotonicTimeError
        ``time`` is not strictly increasing (names the first offending stamp).
    NonPositivePriceError
        A close is <= 0 (field ``close[ASSET, TIME]``, value the price).
    MissingPriceError
        NaN after listing that the policy does not fill, or an asset that has
        no valid close at all.
    ValidationError
        Bad policy, non-finite close, negative volume, bad ``lot_size`` or
        ``currency``, wrong dims.
    """
    limit = _checked_policy(nan_policy, ffill_limit)
    for dim in ("asset", "time"):
        if dim not in market.indexes:
            raise ValidationError(dim, None, f"market dataset needs a labelled {dim!r} dimension")
    if "close" not in market.data_vars:
        raise ValidationError("close", None, "market dataset needs a 'close' variable")
    assets = _string_labels(market.indexes["asset"], "asset")
    _check_unique(assets, "asset")
    times = _time_index(market.indexes["time"])
    _check_time(times)
    _check_metadata(market, assets)

    close_da = _dims_of(market, "close")
    close = np.array(close_da.values, dtype=np.float64)  # a copy: filling must not touch market
    _check_prices(close, assets, times)
    filled = _apply_nan_policy(close, assets, times, nan_policy, limit)
    if "close_filled" in market.data_vars:
        filled |= _dims_of(market, "close_filled").values.astype(bool)

    out = market.copy(deep=False).assign_coords(time=times.to_numpy())
    out["close"] = (("asset", "time"), close, dict(close_da.attrs))
    out["close_filled"] = (("asset", "time"), filled)
    if "volume" in market.data_vars:
        vol_da = _dims_of(market, "volume")
        vol = np.array(vol_da.values, dtype=np.float64)
        _check_volume(vol, assets, times)
        out["volume"] = (("asset", "time"), vol, dict(vol_da.attrs))
    out.attrs = {**market.attrs, "nan_policy": nan_policy, "ffill_limit": limit}
    return out


# ---------------------------------------------------------------- views


def _asset_coords(close: xr.DataArray) -> dict[Hashable, xr.DataArray]:
    return {k: v for k, v in close.coords.items() if "time" not in v.dims}


def listing_dates(market: xr.Dataset) -> xr.DataArray:
    """First time at which each asset has a valid close.

    Parameters
    ----------
    market : xarray.Dataset
        Market dataset with ``close(asset, time)``.

    Returns
    -------
    xarray.DataArray
        ``listing_date(asset)``, ``datetime64[ns]``; NaT for an asset with no
        valid close at all.
    """
    close = market["close"].transpose("asset", "time")
    valid = close.notnull().values
    times = market.indexes["time"].to_numpy().astype("datetime64[ns]")
    first = np.full(valid.shape[0], np.datetime64("NaT", "ns"))
    listed = valid.any(axis=1)
    first[listed] = times[np.argmax(valid, axis=1)[listed]]
    return xr.DataArray(first, dims="asset", coords=_asset_coords(close), name="listing_date")


def latest_prices(market: xr.Dataset, at: TimeLike | None = None) -> xr.DataArray:
    """Last valid close of each asset at or before ``at``.

    Parameters
    ----------
    market : xarray.Dataset
        Market dataset with ``close(asset, time)``.
    at : str, datetime, numpy.datetime64 or pandas.Timestamp, optional
        Valuation time (tz-aware is converted to UTC); default the last time.

    Returns
    -------
    xarray.DataArray
        ``close(asset)`` in each asset's currency per unit; NaN for an asset
        not listed yet at ``at``. Coordinate ``price_time(asset)`` tells when
        each price was observed, so stale prices are visible.
    """
    close = market["close"].transpose("asset", "time")
    times = market.indexes["time"]
    k = len(times) if at is None else int(times.searchsorted(_timestamp("at", at), side="right"))
    values = close.values[:, :k]
    pos = np.where(~np.isnan(values), np.arange(k), -1).max(axis=1, initial=-1)
    found = pos >= 0
    rows = np.arange(values.shape[0])
    price = np.full(values.shape[0], np.nan)
    price[found] = values[rows[found], pos[found]]
    when = np.full(values.shape[0], np.datetime64("NaT", "ns"))
    when[found] = times.to_numpy().astype("datetime64[ns]")[pos[found]]
    coords = {**_asset_coords(close), "price_time": ("asset", when)}
    return xr.DataArray(price, dims="asset", coords=coords, name="close", attrs=close.attrs)


def simple_returns(market: xr.Dataset) -> xr.DataArray:
    """Compute simple returns ``close_t / close_{t-1} - 1``, never filled.

    Parameters
    ----------
    market : xarray.Dataset
        Market dataset with ``close(asset, time)``.

    Returns
    -------
    xarray.DataArray
        ``simple_return(asset, time)`` as a fraction (0.01 = 1 %). NaN at the
        first time, before listing and on the listing day, and wherever either
        close is NaN.
    """
    close = market["close"].transpose("asset", "time")
    out = close / close.shift(time=1) - 1.0
    out.attrs = {"units": "fraction"}
    return out.rename("simple_return")


def market_time_at(market: xr.Dataset, at: Any = None, *, field: str = "at") -> pd.Timestamp:
    """The last time of ``market`` at or before ``at`` (default: its last time).

    Parameters
    ----------
    market : xarray.Dataset
        With a ``time`` index.
    at : datetime-like, optional
        Tz-aware values are converted to UTC and made naive.
    field : str
        Name used in errors.

    Raises
    ------
    ValidationError
        ``at`` is not a datetime-like, or comes before the first market time.
    """
    times = market.indexes["time"]
    if at is None:
        return pd.Timestamp(times[-1])
    try:
        t = pd.Timestamp(at)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, at, "must be a datetime-like") from exc
    if t.tzinfo is not None:
        t = t.tz_convert("UTC").tz_localize(None)
    k = times.searchsorted(t, side="right") - 1
    if k < 0:
        raise ValidationError(field, at, f"is before the first market time {times[0]}")
    return pd.Timestamp(times[k])
