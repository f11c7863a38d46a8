"""Tests of pmkit.model.market: construction, validation, NaN policy and views."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmkit.errors import (
    DuplicateLabelError,
    MissingPriceError,
    NonMonotonicTimeError,
    NonPositivePriceError,
    ValidationError,
)
from pmkit.model import (
    latest_prices,
    listing_dates,
    market_dataset,
    market_time_at,
    simple_returns,
    validate_market,
)

NaN = np.nan
DAYS = pd.date_range("2020-03-02", periods=6, freq="D")


def frame(**cols: list[float]) -> pd.DataFrame:
    n = len(next(iter(cols.values())))
    return pd.DataFrame(cols, index=DAYS[:n])


def raw_dataset(close: np.ndarray, assets: list[str], times) -> xr.Dataset:
    """A market-shaped dataset built by hand, bypassing market_dataset's own checks."""
    return xr.Dataset(
        {"close": (("asset", "time"), np.asarray(close, dtype=float))},
        coords={"asset": assets, "time": pd.DatetimeIndex(times)},
    )


def assert_rejected_unchanged(ds: xr.Dataset, error: type[Exception], **kwargs) -> Exception:
    before = ds.copy(deep=True)
    with pytest.raises(error) as info:
        validate_market(ds, **kwargs)
    assert ds.identical(before)
    return info.value


# ---------------------------------------------------------------- construction


def test_market_dataset_layout_and_metadata():
    close = frame(AAPL=[NaN, 2.0, 3.0], MSFT=[1.0, 1.5, 2.5])
    volume = frame(AAPL=[NaN, 10.0, 20.0], MSFT=[5.0, NaN, 7.0])
    ds = market_dataset(
        close,
        volume,
        sector={"AAPL": "IT", "MSFT": "IT", "XOM": "Energy"},  # extra keys are fine
        asset_class="Equity",
        currency={"AAPL": "USD", "MSFT": "EUR"},
        lot_size={"AAPL": 1, "MSFT": 100},
    )
    assert ds["close"].dims == ("asset", "time")
    assert ds["close"].dtype == np.float64
    assert ds["volume"].dtype == np.float64
    assert ds["time"].dtype == np.dtype("datetime64[ns]")
    assert ds["asset"].values.tolist() == ["AAPL", "MSFT"]
    np.testing.assert_array_equal(ds["close"].values, close.to_numpy().T)
    np.testing.assert_array_equal(ds["volume"].values, volume.to_numpy().T)
    assert ds["sector"].values.tolist() == ["IT", "IT"]
    assert ds["asset_class"].values.tolist() == ["Equity", "Equity"]
    assert ds["currency"].values.tolist() == ["USD", "EUR"]
    assert ds["lot_size"].values.tolist() == [1, 100]
    assert not ds["close_filled"].values.any()
    assert ds.attrs["nan_policy"] == "raise"
    assert ds.attrs["ffill_limit"] == 0


def test_volume_is_aligned_by_label_not_position():
    close = frame(A=[1.0, 2.0], B=[3.0, 4.0])
    volume = frame(B=[30.0, 40.0], A=[10.0, 20.0]).iloc[::-1]
    ds = market_dataset(close, volume)
    assert ds["volume"].sel(asset="A").values.tolist() == [10.0, 20.0]
    assert ds["volume"].sel(asset="B").values.tolist() == [30.0, 40.0]


def test_volume_with_other_labels_is_refused():
    close = frame(A=[1.0, 2.0], B=[3.0, 4.0])
    with pytest.raises(ValidationError) as info:
        market_dataset(close, frame(A=[1.0, 2.0], C=[1.0, 1.0]))
    assert info.value.field == "volume.columns"
    assert info.value.value == ["B", "C"]


def test_tz_aware_time_becomes_naive_utc():
    idx = pd.date_range("2020-01-01 09:30", periods=2, freq="D", tz="America/New_York")
    ds = market_dataset(pd.DataFrame({"A": [1.0, 2.0]}, index=idx))
    expected = idx.tz_convert("UTC").tz_localize(None)
    assert ds["time"].dtype == np.dtype("datetime64[ns]")
    assert list(pd.DatetimeIndex(ds["time"].values)) == list(expected)
    assert ds.indexes["time"][0].hour == 14  # 09:30 EST is 14:30 UTC


def test_metadata_mapping_missing_an_asset_names_it():
    with pytest.raises(ValidationError) as info:
        market_dataset(frame(A=[1.0], B=[2.0]), sector={"A": "IT"})
    assert (info.value.field, info.value.value) == ("sector", "B")
    assert "'B'" in str(info.value)


@pytest.mark.parametrize("lot", [0, -5, 2.5, True])
def test_lot_size_must_be_a_positive_integer(lot):
    with pytest.raises(ValidationError) as info:
        market_dataset(frame(A=[1.0], B=[2.0]), lot_size={"A": 1, "B": lot})
    assert (info.value.field, info.value.value) == ("lot_size[B]", lot)
    assert type(info.value.value) is type(lot)
    assert "positive integer" in str(info.value)


def test_lot_size_coordinate_is_checked_on_validation():
    ds = raw_dataset([[1.0], [2.0]], ["A", "B"], DAYS[:1]).assign_coords(
        lot_size=("asset", [10, 0])
    )
    err = assert_rejected_unchanged(ds, ValidationError)
    assert (err.field, err.value) == ("lot_size[B]", 0)


@pytest.mark.parametrize("cur", ["usd", "US", "EURO", None, "U5D"])
def test_currency_must_be_three_upper_letters(cur):
    with pytest.raises(ValidationError) as info:
        market_dataset(frame(A=[1.0], B=[2.0]), currency={"A": "USD", "B": cur})
    assert info.value.field == "currency[B]"
    assert info.value.value == cur


def test_numeric_time_index_is_refused():
    with pytest.raises(ValidationError) as info:
        market_dataset(pd.DataFrame({"A": [1.0, 2.0]}, index=[0, 1]))
    assert info.value.field == "time"


def test_non_string_asset_labels_are_refused():
    with pytest.raises(ValidationError) as info:
        market_dataset(pd.DataFrame({7: [1.0, 2.0]}, index=DAYS[:2]))
    assert (info.value.field, info.value.value) == ("asset", 7)


# ---------------------------------------------------------------- label checks


def test_duplicate_asset_in_frame():
    close = pd.DataFrame([[1.0, 2.0]], index=DAYS[:1], columns=["A", "A"])
    with pytest.raises(DuplicateLabelError) as info:
        market_dataset(close)
    assert (info.value.field, info.value.value) == ("asset", "A")
    assert "'A'" in str(info.value)


def test_duplicate_asset_in_dataset_leaves_input_unchanged():
    ds = raw_dataset([[1.0, 2.0], [1.0, 2.0], [3.0, 4.0]], ["A", "B", "B"], DAYS[:2])
    err = assert_rejected_unchanged(ds, DuplicateLabelError)
    assert (err.field, err.value) == ("asset", "B")


def test_duplicate_time_names_the_timestamp():
    times = [DAYS[0], DAYS[1], DAYS[1]]
    ds = raw_dataset([[1.0, 2.0, 3.0]], ["A"], times)
    err = assert_rejected_unchanged(ds, DuplicateLabelError)
    assert (err.field, err.value) == ("time", DAYS[1])
    assert "2020-03-03" in str(err)


def test_non_monotonic_time_names_first_offender():
    times = [DAYS[0], DAYS[2], DAYS[1], DAYS[3], DAYS[0] - pd.Timedelta(days=9)]
    ds = raw_dataset([[1.0, 2.0, 3.0, 4.0, 5.0]], ["A"], times)
    err = assert_rejected_unchanged(ds, NonMonotonicTimeError)
    assert (err.field, err.value) == ("time", DAYS[1])
    assert "2020-03-03" in str(err)
    assert "2020-03-04" in str(err)  # the stamp it came after


def test_non_positive_price_names_asset_time_and_value():
    ds = raw_dataset(
        [[1.0, 2.0, 3.0], [1.0, 1.0, -2.0], [1.0, 0.0, 2.0]], ["A", "B", "C"], DAYS[:3]
    )
    err = assert_rejected_unchanged(ds, NonPositivePriceError)
    # earliest offending time wins, whatever the asset order
    assert err.field == "close[C, 2020-03-03]"
    assert err.value == 0.0
    assert "close[C, 2020-03-03]=0.0" in str(err)


def test_infinite_price_is_refused():
    ds = raw_dataset([[1.0, np.inf]], ["A"], DAYS[:2])
    err = assert_rejected_unchanged(ds, ValidationError)
    assert (err.field, err.value) == ("close[A, 2020-03-03]", math.inf)


def test_negative_volume_is_refused_and_nan_volume_allowed():
    ds = market_dataset(frame(A=[1.0, 2.0, 3.0]), frame(A=[NaN, 5.0, 0.0]))
    assert np.isnan(ds["volume"].values[0, 0])
    with pytest.raises(ValidationError) as info:
        market_dataset(frame(A=[1.0, 2.0, 3.0]), frame(A=[NaN, 5.0, -1.0]))
    assert (info.value.field, info.value.value) == ("volume[A, 2020-03-04]", -1.0)


# ---------------------------------------------------------------- NaN policy


def test_leading_nan_is_not_listed_yet_and_kept():
    ds = market_dataset(frame(A=[1.0, 2.0, 3.0, 4.0], NEW=[NaN, NaN, 5.0, 6.0]))
    np.testing.assert_array_equal(ds["close"].sel(asset="NEW").values, [NaN, NaN, 5.0, 6.0])
    assert not ds["close_filled"].values.any()


@pytest.mark.parametrize(
    ("values", "first_missing"),
    [([1.0, NaN, 3.0, 4.0], "2020-03-03"), ([NaN, 1.0, 2.0, NaN], "2020-03-05")],
    ids=["interior", "trailing"],
)
def test_nan_after_listing_raises_by_default(values, first_missing):
    ds = raw_dataset([[1.0, 2.0, 3.0, 4.0], values], ["OK", "GAP"], DAYS[:4])
    err = assert_rejected_unchanged(ds, MissingPriceError)
    assert err.field == f"close[GAP, {first_missing}]"
    assert math.isnan(err.value)
    assert "GAP" in str(err)
    assert first_missing in str(err)


def test_asset_without_any_price_raises():
    ds = raw_dataset([[1.0, 2.0], [NaN, NaN]], ["A", "GHOST"], DAYS[:2])
    err = assert_rejected_unchanged(ds, MissingPriceError, nan_policy="ffill", ffill_limit=5)
    assert (err.field, err.value) == ("asset", "GHOST")


def test_ffill_fills_short_gaps_and_records_them():
    values = [NaN, 1.0, NaN, NaN, 4.0, NaN]
    ds = raw_dataset([values], ["A"], DAYS)
    out = validate_market(ds, nan_policy="ffill", ffill_limit=2)
    np.testing.assert_array_equal(out["close"].values[0], [NaN, 1.0, 1.0, 1.0, 4.0, 4.0])
    assert out["close_filled"].values[0].tolist() == [False, False, True, True, False, True]
    assert out.attrs["nan_policy"] == "ffill"
    assert out.attrs["ffill_limit"] == 2
    # never mutates: the input still has its gaps
    np.testing.assert_array_equal(ds["close"].values[0], values)
    assert "close_filled" not in ds


def test_ffill_refuses_a_gap_longer_than_the_limit():
    ds = raw_dataset([[1.0, NaN, 3.0, NaN, NaN, NaN]], ["A"], DAYS)
    err = assert_rejected_unchanged(ds, MissingPriceError, nan_policy="ffill", ffill_limit=2)
    assert err.field == "close[A, 2020-03-05]"
    assert "3 rows" in str(err)
    assert "ffill_limit=2" in str(err)


def test_revalidation_keeps_the_fill_record():
    first = validate_market(raw_dataset([[1.0, NaN, 3.0]], ["A"], DAYS[:3]), "ffill", 1)
    again = validate_market(first)  # nothing left to fill, record survives
    assert again["close_filled"].values[0].tolist() == [False, True, False]
    again = validate_market(first, first.attrs["nan_policy"], first.attrs["ffill_limit"])
    assert again["close_filled"].values[0].tolist() == [False, True, False]


@pytest.mark.parametrize(
    ("policy", "limit", "field"),
    [
        ("ffill", None, "ffill_limit"),
        ("ffill", 0, "ffill_limit"),
        ("ffill", True, "ffill_limit"),
        ("ffill", 1.5, "ffill_limit"),
        ("raise", 3, "ffill_limit"),
        ("zero", None, "nan_policy"),
    ],
)
def test_bad_policy_arguments(policy, limit, field):
    ds = raw_dataset([[1.0, 2.0]], ["A"], DAYS[:2])
    err = assert_rejected_unchanged(ds, ValidationError, nan_policy=policy, ffill_limit=limit)
    assert err.field == field
    assert err.value == (policy if field == "nan_policy" else limit)


def test_validate_returns_a_new_dataset_with_float_close():
    ds = xr.Dataset(
        {"close": (("time", "asset"), np.array([[1, 2], [3, 4]], dtype=np.int32))},
        coords={"asset": ["A", "B"], "time": DAYS[:2]},
    )
    before = ds.copy(deep=True)
    out = validate_market(ds)
    assert out is not ds
    assert out["close"].dims == ("asset", "time")
    assert out["close"].dtype == np.float64
    assert ds.identical(before)


# ---------------------------------------------------------------- views


@pytest.fixture
def ragged() -> xr.Dataset:
    return market_dataset(frame(OLD=[1.0, 2.0, 4.0, 8.0], NEW=[NaN, NaN, 10.0, 11.0]))


def test_listing_dates(ragged):
    got = listing_dates(ragged)
    assert got.dims == ("asset",)
    assert got.sel(asset="OLD").values == np.datetime64(DAYS[0])
    assert got.sel(asset="NEW").values == np.datetime64(DAYS[2])


def test_latest_prices(ragged):
    assert latest_prices(ragged).values.tolist() == [8.0, 11.0]
    early = latest_prices(ragged, at="2020-03-03 12:00")
    assert early.sel(asset="OLD").item() == 2.0
    assert np.isnan(early.sel(asset="NEW").item())  # not listed yet
    assert pd.Timestamp(early["price_time"].sel(asset="OLD").values) == DAYS[1]
    assert np.isnan(latest_prices(ragged, at="1999-01-01").values).all()


def test_latest_prices_skips_a_gap_to_the_last_valid_close():
    ds = raw_dataset([[1.0, 2.0, NaN, NaN]], ["A"], DAYS[:4])
    got = latest_prices(ds)  # works on unvalidated data too: last *valid* close
    assert got.item() == 2.0
    assert pd.Timestamp(got["price_time"].item()) == DAYS[1]


def test_latest_prices_converts_tz_aware_at_to_utc(ragged):
    # 2020-03-04 01:00 in Tokyo is 2020-03-03 16:00 UTC: before NEW lists
    at = pd.Timestamp("2020-03-04 01:00", tz="Asia/Tokyo")
    assert np.isnan(latest_prices(ragged, at=at).sel(asset="NEW").item())


def test_simple_returns_match_a_loop(ragged):
    got = simple_returns(ragged)
    close = ragged["close"].values
    assert got.dims == ("asset", "time")
    for a in range(close.shape[0]):
        for t in range(close.shape[1]):
            want = NaN if t == 0 else close[a, t] / close[a, t - 1] - 1
            if np.isnan(want):
                assert np.isnan(got.values[a, t])
            else:
                assert got.values[a, t] == pytest.approx(want, rel=1e-15)
    # NEW: NaN before listing and on the listing day
    assert np.isnan(got.sel(asset="NEW").values[:3]).all()


# ---------------------------------------------------------------- properties


@st.composite
def ragged_panels(draw):
    """Positive prices with leading NaN (unlisted) and optionally NaN after listing."""
    n_a = draw(st.integers(1, 4))
    n_t = draw(st.integers(2, 14))
    close = np.full((n_a, n_t), NaN)
    for a in range(n_a):
        start = draw(st.integers(0, n_t - 1))
        close[a, start:] = draw(
            st.lists(
                st.floats(0.01, 1e4, allow_nan=False),
                min_size=n_t - start,
                max_size=n_t - start,
            )
        )
        # listing-day close stays; any later cell may go missing
        for t in range(start + 1, n_t):
            if draw(st.booleans()) and draw(st.booleans()):
                close[a, t] = NaN
    return close


def reference_gaps(close: np.ndarray) -> list[tuple[int, int, int]]:
    """(asset, first time, length) of every run of NaN after listing, by plain loops."""
    gaps = []
    for a, row in enumerate(close.tolist()):
        listed, t = False, 0
        while t < len(row):
            if not math.isnan(row[t]):
                listed, t = True, t + 1
                continue
            if not listed:
                t += 1
                continue
            start = t
            while t < len(row) and math.isnan(row[t]):
                t += 1
            gaps.append((a, start, t - start))
    return gaps


def panel_dataset(close: np.ndarray) -> xr.Dataset:
    assets = [f"A{i}" for i in range(close.shape[0])]
    return raw_dataset(close, assets, pd.date_range("2021-01-01", periods=close.shape[1]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ragged_panels())
def test_property_raise_keeps_leading_nan_and_rejects_gaps(close):
    ds = panel_dataset(close)
    gaps = reference_gaps(close)
    if not gaps:
        out = validate_market(ds)
        np.testing.assert_array_equal(out["close"].values, close)  # NaN positions included
        assert not out["close_filled"].values.any()
        return
    with pytest.raises(MissingPriceError) as info:
        validate_market(ds)
    a, t, _ = min(gaps, key=lambda g: (g[1], g[0]))
    assert info.value.field == f"close[A{a}, {ds.indexes['time'][t]:%Y-%m-%d}]"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ragged_panels(), st.integers(1, 4))
def test_property_ffill_never_fills_more_than_the_limit(close, limit):
    ds = panel_dataset(close)
    gaps = reference_gaps(close)
    if any(length > limit for _, _, length in gaps):
        with pytest.raises(MissingPriceError):
            validate_market(ds, "ffill", limit)
        return
    out = validate_market(ds, "ffill", limit)
    filled = out["close_filled"].values
    want = np.zeros_like(filled)
    for a, start, length in gaps:
        want[a, start : start + length] = True
        np.testing.assert_array_equal(
            out["close"].values[a, start : start + length], close[a, start - 1]
        )
    np.testing.assert_array_equal(filled, want)
    # untouched cells are bit-identical, leading NaN included
    np.testing.assert_array_equal(out["close"].values[~filled], close[~filled])
    for row in filled:
        run = 0
        for cell in row:
            run = run + 1 if cell else 0
            assert run <= limit


def test_market_time_at_is_the_last_time_at_or_before():
    days = pd.DatetimeIndex(["2020-03-02", "2020-03-03", "2020-03-06"])
    ds = raw_dataset([[1.0, 2.0, 3.0]], ["A"], days)
    assert market_time_at(ds) == days[-1]
    assert market_time_at(ds, "2020-03-03") == days[1]
    assert market_time_at(ds, "2020-03-05 23:00") == days[1]  # the gap keeps the last close
    # 2020-03-06 01:00 in New York is 06:00 UTC, after the last time
    assert market_time_at(ds, pd.Timestamp("2020-03-06 01:00", tz="America/New_York")) == days[2]
    with pytest.raises(ValidationError, match="when") as info:
        market_time_at(ds, "2020-03-01", field="when")
    assert "2020-03-01" in str(info.value)
    with pytest.raises(ValidationError, match="datetime-like"):
        market_time_at(ds, object())
