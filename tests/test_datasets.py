"""Tests of pmkit.datasets against the raw CSV files shipped in the skfolio wheel."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pmkit import datasets
from pmkit.errors import MissingDependencyError, ValidationError
from pmkit.model import latest_prices, listing_dates, simple_returns

pytest.importorskip("skfolio")

STOCKS = [
    "AAPL", "AMD", "BAC", "BBY", "CVX", "GE", "HD", "JNJ", "JPM", "KO",
    "LLY", "MRK", "MSFT", "PEP", "PFE", "PG", "RRC", "UNH", "WMT", "XOM",
]  # fmt: skip
ETFS = ["MTUM", "QUAL", "SIZE", "USMV", "VLUE"]
GICS = {
    "Information Technology", "Financials", "Consumer Discretionary", "Energy",
    "Industrials", "Health Care", "Consumer Staples",
}  # fmt: skip


def raw(name: str) -> pd.DataFrame:
    """Read a shipped CSV independently of pmkit."""
    path = importlib.resources.files("skfolio.datasets") / "data" / name
    with path.open("rb") as fh:
        frame = pd.read_csv(fh, compression="gzip")
    frame["Date"] = pd.to_datetime(frame["Date"])
    return frame.set_index("Date")


@pytest.fixture(scope="module")
def market() -> xr.Dataset:
    return datasets.load_market()


@pytest.fixture(scope="module")
def raw_stocks() -> pd.DataFrame:
    return raw("sp500_dataset.csv.gz")


@pytest.fixture(scope="module")
def raw_etfs() -> pd.DataFrame:
    return raw("factors_dataset.csv.gz")


def test_shape_and_labels(market):
    assert market["close"].dims == ("asset", "time")
    assert market["close"].dtype == np.float64
    assert market["asset"].values.tolist() == STOCKS + ETFS
    assert market.sizes["asset"] == 25
    assert market.indexes["time"][0] == pd.Timestamp("1990-01-02")
    assert market.indexes["time"][-1] == pd.Timestamp("2022-12-28")
    assert market["time"].dtype == np.dtype("datetime64[ns]")
    assert "volume" not in market  # the files carry none


def test_ragged_listing(market):
    listed = listing_dates(market).to_series()
    assert (listed[STOCKS] == pd.Timestamp("1990-01-02")).all()
    assert (listed[ETFS] == pd.Timestamp("2014-01-02")).all()
    etf = market["close"].sel(asset=ETFS)
    assert etf.sel(time=slice(None, "2013-12-31")).isnull().all()
    assert etf.sel(time=slice("2014-01-02", None)).notnull().all()
    assert market["close"].sel(asset=STOCKS).notnull().all()
    # before listing the ETFs have no price, and no return on their listing day
    r = simple_returns(market).sel(asset=ETFS, time=slice(None, "2014-01-02"))
    assert r.isnull().all()
    assert latest_prices(market, at="2013-06-28").sel(asset=ETFS).isnull().all()


def test_metadata_coordinates(market):
    sector = market["sector"].to_series()
    asset_class = market["asset_class"].to_series()
    assert set(sector[STOCKS]) == GICS
    assert (sector[ETFS] == "Multi-Sector").all()
    assert sector["AAPL"] == "Information Technology"
    assert sector["UNH"] == "Health Care"
    assert sector["RRC"] == "Energy"
    assert (asset_class[STOCKS] == "Equity").all()
    assert (asset_class[ETFS] == "ETF").all()
    assert (market["currency"] == "USD").all()
    assert (market["lot_size"] == 1).all()


def test_prices_positive_and_fills_recorded(market, raw_stocks, raw_etfs):
    close = market["close"].values
    assert (close[~np.isnan(close)] > 0).all()
    assert market["close_filled"].dtype == bool
    assert market.attrs["nan_policy"] == "ffill"
    assert market.attrs["ffill_limit"] == 5
    # a cell is filled exactly where the raw join had NaN after listing and pmkit has a price
    joined = raw_stocks.join(raw_etfs, how="outer")
    raw_nan = joined.isna().to_numpy().T
    np.testing.assert_array_equal(market["close_filled"].values, raw_nan & ~np.isnan(close))


def test_data_facts_documented_in_load_market(raw_stocks, raw_etfs):
    # factor file dates are exactly the stock dates from 2014-01-02: no interior gaps
    assert raw_etfs.index.equals(raw_stocks.loc["2014-01-02":].index)
    assert not raw_stocks.isna().any().any()
    assert not raw_etfs.isna().any().any()
    # so a strict policy loads the same data
    strict = datasets.load_market(nan_policy="raise")
    assert not strict["close_filled"].values.any()


def test_closes_equal_the_raw_csv(market, raw_stocks, raw_etfs):
    stocks = market["close"].sel(asset=STOCKS).to_pandas().T
    np.testing.assert_array_equal(stocks.to_numpy(), raw_stocks[STOCKS].to_numpy())
    etfs = market["close"].sel(asset=ETFS, time=raw_etfs.index).to_pandas().T
    np.testing.assert_array_equal(etfs.to_numpy(), raw_etfs[ETFS].to_numpy())
    for asset, day in [("AAPL", "2022-12-28"), ("XOM", "1990-01-02"), ("USMV", "2020-03-16")]:
        want = (raw_etfs if asset in ETFS else raw_stocks).loc[day, asset]
        assert market["close"].sel(asset=asset, time=day).item() == want


def test_window_is_inclusive_and_without_etfs():
    ds = datasets.load_market(start="2010-01-04", end="2010-01-08", include_etfs=False)
    assert ds["asset"].values.tolist() == STOCKS
    assert list(ds.indexes["time"]) == list(pd.bdate_range("2010-01-04", "2010-01-08"))


def test_window_before_etf_listing_is_refused():
    with pytest.raises(ValidationError) as info:
        datasets.load_market(end="2013-12-31")
    assert (info.value.field, info.value.value) == ("end", "2013-12-31")
    assert "include_etfs=False" in str(info.value)


def test_window_straddling_the_etf_listing_is_ragged():
    ds = datasets.load_market(start="2013-12-30", end="2014-01-03")
    assert ds.sizes["time"] == 4
    assert ds["close"].sel(asset="MTUM").isnull().values.tolist() == [True, True, False, False]


@pytest.mark.parametrize(("start", "end"), [("2030-01-01", None), ("2020-01-02", "2019-01-01")])
def test_empty_window_is_refused(start, end):
    with pytest.raises(ValidationError):
        datasets.load_benchmark(start, end)


def test_benchmark(raw_stocks):
    bench = datasets.load_benchmark()
    assert bench.name == "SP500"
    assert bench.dims == ("time",)
    want = raw("sp500_index.csv.gz")["SP500"]
    np.testing.assert_array_equal(bench.values, want.to_numpy())
    assert bench.indexes["time"].equals(raw_stocks.index)
    assert datasets.load_benchmark("2020-01-02", "2020-01-02").item() == want.loc["2020-01-02"]


def test_factor_prices(raw_etfs):
    factors = datasets.load_factor_prices(start="2015-01-01")
    assert factors.dims == ("factor", "time")
    assert factors["factor"].values.tolist() == ETFS
    want = raw_etfs.loc["2015-01-01":, ETFS].to_numpy().T
    np.testing.assert_array_equal(factors.values, want)


def test_callers_cannot_mutate_the_cache():
    first = datasets.load_market(include_etfs=False)
    first["close"].values[:] = -1.0
    bench = datasets.load_benchmark()
    bench.values[:] = -1.0
    factors = datasets.load_factor_prices()
    factors.values[:] = -1.0
    assert (datasets.load_market(include_etfs=False)["close"] > 0).all()
    assert (datasets.load_benchmark() > 0).all()
    assert (datasets.load_factor_prices() > 0).all()


@pytest.fixture
def fresh_cache():
    datasets._read_csv.cache_clear()
    yield
    datasets._read_csv.cache_clear()


def test_missing_skfolio_raises_missing_dependency(monkeypatch, fresh_cache):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(MissingDependencyError) as info:
        datasets.load_market()
    assert (info.value.package, info.value.extra) == ("skfolio", "data")
    assert "pmkit[data]" in str(info.value)


def test_loading_does_not_import_skfolio():
    code = ("import sys, pmkit.datasets as d; d.load_market();"
            "assert 'skfolio' not in sys.modules and 'sklearn' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loads_without_network(monkeypatch, fresh_cache):
    def refuse(*args, **kwargs):
        raise AssertionError("pmkit.datasets tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert datasets.load_market(end="2014-01-10").sizes["asset"] == 25
    assert datasets.load_benchmark(end="1990-01-10").size == 7
    assert datasets.load_factor_prices(end="2014-01-10").sizes["factor"] == 5
