"""Real demo data: daily prices shipped inside the skfolio wheel, never the network.

The CSV files are located through the installed skfolio distribution's
metadata, without importing skfolio (skfolio's own loaders are not used
because they may download). Install them with ``pip install 'pmkit[data]'``.

Files (adjusted daily closes in USD, rounded to 3 decimals):

- ``sp500_dataset.csv.gz``: 20 US stocks, 1990-01-02 to 2022-12-28, 8313 rows.
- ``factors_dataset.csv.gz``: 5 iShares factor ETFs (MTUM, QUAL, SIZE, USMV,
  VLUE) from 2014-01-02 to 2022-12-28, 2264 rows.
- ``sp500_index.csv.gz``: the S&P 500 index level on the stock file's dates.

None of them carries volume. Real daily volumes come from another wheel:
cvxportfolio's test data (``cvxportfolio/tests/volumes.csv`` and
``returns.csv``: the daily value traded, in USD, and the daily returns of
28 Dow Jones stocks over 2014; ``pip install 'pmkit[bench]'``), read by
`load_traded_values` and `load_volume_market`. Parsed files are cached once
per process and every public function returns fresh objects.
"""

from __future__ import annotations

import functools
import importlib.metadata
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.errors import MissingDependencyError, ValidationError
from pmkit.model.market import NanPolicy, _timestamp, market_dataset

__all__ = [
    "ASSET_CLASSES",
    "ETFS",
    "SECTORS",
    "load_benchmark",
    "load_factor_prices",
    "load_market",
    "load_traded_values",
    "load_volume_market",
]

_STOCKS = "sp500_dataset.csv.gz"
_FACTORS = "factors_dataset.csv.gz"
_INDEX = "sp500_index.csv.gz"

#: Factor ETFs of ``factors_dataset.csv.gz``, in file order.
ETFS: tuple[str, ...] = ("MTUM", "QUAL", "SIZE", "USMV", "VLUE")

_GICS: dict[str, tuple[str, ...]] = {
    "Information Technology": ("AAPL", "AMD", "MSFT"),
    "Financials": ("BAC", "JPM"),
    "Consumer Discretionary": ("BBY", "HD"),
    "Energy": ("CVX", "RRC", "XOM"),
    "Industrials": ("GE",),
    "Health Care": ("JNJ", "LLY", "MRK", "PFE", "UNH"),
    "Consumer Staples": ("KO", "PEP", "PG", "WMT"),
    "Multi-Sector": ETFS,
}
#: GICS sector of every asset (``"Multi-Sector"`` for the factor ETFs).
SECTORS: dict[str, str] = {a: sector for sector, names in _GICS.items() for a in names}
#: ``"ETF"`` for the factor ETFs, ``"Equity"`` for the stocks.
ASSET_CLASSES: dict[str, str] = {a: "ETF" if a in ETFS else "Equity" for a in SECTORS}

DateLike = str | datetime | np.datetime64 | pd.Timestamp | None


def _package_file(distribution: str, extra: str, path: str) -> Path:
    """A data file shipped inside an installed distribution.

    Located through the distribution's metadata rather than importlib.resources,
    which would import the package (skfolio pulls in scikit-learn and cvxpy,
    cvxportfolio matplotlib: seconds) just to find a file.
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        raise MissingDependencyError(distribution, extra) from exc
    found = Path(str(dist.locate_file(path)))
    if not found.is_file():
        version = importlib.metadata.version(distribution)
        raise FileNotFoundError(f"{distribution} {version} does not ship {path}")
    return found


def _data_file(name: str) -> Path:
    return _package_file("skfolio", "data", f"skfolio/datasets/data/{name}")


@functools.lru_cache(maxsize=4)  # three files; bounded on purpose
def _read_csv(name: str) -> pd.DataFrame:
    """Parse one shipped CSV (cached: callers must copy before handing it out)."""
    with _data_file(name).open("rb") as fh:
        frame = pd.read_csv(fh, compression="gzip", index_col="Date", parse_dates=["Date"])
    frame.index = pd.DatetimeIndex(frame.index).as_unit("ns")
    frame.index.name = "time"
    return frame.astype(np.float64)


def _window(frame: pd.DataFrame, start: DateLike, end: DateLike) -> pd.DataFrame:
    """Rows with ``start <= time <= end`` as a copy; an empty window is an error."""
    lo = None if start is None else _timestamp("start", start)
    hi = None if end is None else _timestamp("end", end)
    if lo is not None and hi is not None and lo > hi:
        raise ValidationError("start", start, f"is after end={end!r}")
    out = frame.loc[lo:hi]
    if out.empty:
        first, last = (ts.date().isoformat() for ts in frame.index[[0, -1]])
        raise ValidationError(
            "start" if hi is None else "end",
            start if hi is None else end,
            f"no data in the window; the file covers {first} to {last}",
        )
    return out.copy()


def _source(*names: str) -> str:
    return f"skfolio {importlib.metadata.version('skfolio')} wheel: {', '.join(names)}"


def load_market(
    start: DateLike = None,
    end: DateLike = None,
    include_etfs: bool = True,
    nan_policy: NanPolicy = "ffill",
    ffill_limit: int = 5,
) -> xr.Dataset:
    """Load 20 US stocks (and 5 factor ETFs) as a validated market dataset.

    The two files are joined on the union of their dates, so the ETFs are NaN
    before they list on 2014-01-02: a real ragged history.

    What the data hold (checked against skfolio 1.12): from 2014-01-02 on the
    ETF file has exactly the stock file's dates (2264 rows, no interior gap)
    and neither file has a missing or non-positive price, so ``close_filled``
    is all False; ``nan_policy`` only guards against other file versions.
    Market closures show as calendar gaps (2001-09-11 to 09-14, 2007-01-02,
    2012-10-29 to 10-30). Prices are rounded to 3 decimals, so early
    split-adjusted prices are coarse (AAPL 0.098 in 1997, one tick ~1 %) and
    RRC is flat for up to 69 days in 1990-1992: zero returns from rounding,
    not from trading.

    Parameters
    ----------
    start, end : str, datetime, numpy.datetime64 or pandas.Timestamp, optional
        Inclusive window; default the whole history (1990-01-02 to 2022-12-28).
    include_etfs : bool, default True
        Add MTUM, QUAL, SIZE, USMV and VLUE as assets. A window ending before
        they list is refused (pass False).
    nan_policy : {"raise", "ffill"}, default "ffill"
        Policy for NaN after listing, see `pmkit.model.validate_market`.
    ffill_limit : int, default 5
        Longest gap in rows that ``"ffill"`` fills (ignored with ``"raise"``).

    Returns
    -------
    xarray.Dataset
        ``close(asset, time)`` in USD per share (adjusted close, float64),
        ``close_filled(asset, time)``, coordinates ``sector``, ``asset_class``,
        ``currency`` ("USD") and ``lot_size`` (1) on ``asset``; no ``volume``
        (the files have none).

    Raises
    ------
    MissingDependencyError
        skfolio is not installed.
    ValidationError
        An empty window, or one that ends before the ETFs list.
    """
    frame = _read_csv(_STOCKS)
    if include_etfs:
        frame = frame.join(_read_csv(_FACTORS), how="outer")
    frame = _window(frame, start, end)
    if include_etfs:
        unlisted = [a for a in ETFS if frame[a].isna().all()]
        if unlisted:
            listed = _read_csv(_FACTORS).index[0].date().isoformat()
            raise ValidationError(
                "end", end, f"{unlisted} list on {listed}; pass include_etfs=False for this window"
            )
    ds = market_dataset(
        frame,
        sector=SECTORS,
        asset_class=ASSET_CLASSES,
        currency="USD",
        lot_size=1,
        nan_policy=nan_policy,
        ffill_limit=ffill_limit if nan_policy == "ffill" else None,
    )
    ds["close"].attrs.update(units="USD per share", description="adjusted daily close")
    ds.attrs["source"] = _source(_STOCKS, _FACTORS) if include_etfs else _source(_STOCKS)
    return ds


def load_benchmark(start: DateLike = None, end: DateLike = None) -> xr.DataArray:
    """Load the S&P 500 index level.

    Parameters
    ----------
    start, end : str, datetime, numpy.datetime64 or pandas.Timestamp, optional
        Inclusive window; default 1990-01-02 to 2022-12-28.

    Returns
    -------
    xarray.DataArray
        ``SP500(time)`` in index points (float64), on the stock file's dates.
    """
    # Through market_dataset so the index gets the same NaN/positivity checks as prices.
    ds = market_dataset(_window(_read_csv(_INDEX), start, end))
    out = ds["close"].sel(asset="SP500", drop=True).reset_coords(drop=True)
    out.attrs = {"units": "index points", "source": _source(_INDEX)}
    return out.rename("SP500")


def load_factor_prices(start: DateLike = None, end: DateLike = None) -> xr.DataArray:
    """Load the factor ETF prices (MTUM, QUAL, SIZE, USMV, VLUE).

    Parameters
    ----------
    start, end : str, datetime, numpy.datetime64 or pandas.Timestamp, optional
        Inclusive window; default 2014-01-02 to 2022-12-28.

    Returns
    -------
    xarray.DataArray
        ``close(factor, time)`` in USD per share (adjusted close, float64).
    """
    ds = market_dataset(_window(_read_csv(_FACTORS), start, end))
    out = ds["close"].reset_coords(drop=True).rename({"asset": "factor"})
    out.attrs = {"units": "USD per share", "source": _source(_FACTORS)}
    return out.rename("close")


def _cvxportfolio_file(name: str) -> Path:
    return _package_file("cvxportfolio", "bench", f"cvxportfolio/tests/{name}")


@functools.lru_cache(maxsize=2)
def _read_cvxportfolio(name: str) -> pd.DataFrame:
    frame = pd.read_csv(_cvxportfolio_file(name), index_col=0, parse_dates=[0])
    frame.index = pd.DatetimeIndex(frame.index).as_unit("ns")
    frame.index.name = "time"
    return frame.astype(np.float64)


def load_traded_values(start: DateLike = None, end: DateLike = None) -> xr.DataArray:
    """Real daily value traded of 28 Dow Jones stocks in 2014 (USD), from cvxportfolio's wheel.

    The file ``cvxportfolio/tests/volumes.csv`` (cvxportfolio 1.5, GPLv3: read
    from the installed package, not copied) holds each stock's daily dollar
    volume from 2014-01-02 to 2014-12-31 (252 rows). Needs ``pmkit[bench]``.

    Returns
    -------
    xarray.DataArray
        ``value_traded(asset, time)``, USD per day.

    Raises
    ------
    MissingDependencyError
        cvxportfolio is not installed.
    """
    frame = _window(_read_cvxportfolio("volumes.csv"), start, end)
    da = xr.DataArray(frame.to_numpy().T, dims=("asset", "time"),
                      coords={"asset": list(frame.columns), "time": frame.index},
                      name="value_traded", attrs={"units": "USD per day"})
    da.attrs["source"] = (f"cvxportfolio {importlib.metadata.version('cvxportfolio')} wheel: "
                          "tests/volumes.csv")
    return da


def load_volume_market(start: DateLike = None, end: DateLike = None) -> xr.Dataset:
    """A market dataset with real volumes: 28 Dow Jones stocks over 2014.

    ``close`` is a total-return index rebuilt from cvxportfolio's shipped daily
    returns (``tests/returns.csv``), 100 on the day before the first return,
    not a quoted price; ``volume`` is the real value traded divided by that
    index, so ``volume * close`` is exactly the real dollar volume and
    `pmkit.execution.liquidity` estimates real ADVs from it (in USD). Needs
    ``pmkit[bench]``.

    Returns
    -------
    xarray.Dataset
        ``close(asset, time)`` (index units), ``volume(asset, time)`` (index
        units traded) on the dates both files cover, ``lot_size`` 1.
    """
    returns = _read_cvxportfolio("returns.csv").drop(columns=["cash"], errors="ignore")
    values = _read_cvxportfolio("volumes.csv")
    index = 100.0 * (1.0 + returns).cumprod()
    common = index.index.intersection(values.index)
    close = _window(index.loc[common], start, end)
    volume = values.loc[close.index, close.columns] / close
    ds = market_dataset(close, volume=volume, currency="USD", lot_size=1)
    ds["close"].attrs.update(units="index (100 before the first return)",
                             description="total-return index rebuilt from daily returns")
    ds.attrs["source"] = (f"cvxportfolio {importlib.metadata.version('cvxportfolio')} wheel: "
                          "tests/returns.csv, tests/volumes.csv")
    return ds
