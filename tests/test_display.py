"""pmkit.display: the one set of rules for numbers and times on every screen."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmkit.display import (
    MISSING,
    format_money,
    format_percent,
    format_time,
    formatted_frame,
    html_table,
)


@given(st.floats(min_value=-1e15, max_value=1e15, allow_nan=False))
def test_money_never_uses_scientific_notation_and_round_trips_to_the_cent(x):
    text = format_money(x)
    assert "e" not in text.lower()
    assert abs(float(text.replace(",", "")) - x) <= 0.005 + 1e-16 * abs(x) * 10


@given(st.floats(min_value=-10, max_value=10, allow_nan=False))
def test_percent_is_the_fraction_times_100(x):
    text = format_percent(x)
    assert text.endswith(" %")
    assert abs(float(text[:-2].replace(",", "")) - 100 * x) <= 0.005 + 1e-12


@pytest.mark.parametrize("missing", [None, math.nan, np.nan, pd.NA, pd.NaT])
def test_missing_reads_the_same_in_every_kind(missing):
    assert format_money(missing) == MISSING
    assert format_percent(missing) == MISSING
    assert format_time(missing) == MISSING


def test_negative_zero_is_shown_as_zero():
    assert format_money(-0.001) == "0.00"
    assert format_percent(-1e-7) == "0.00 %"


@pytest.mark.parametrize(("value", "text"), [
    ("2026-12-04T00:00:00", "2026-12-04"),
    (dt.date(2026, 12, 4), "2026-12-04"),
    ("2026-12-04T15:30:12.123456", "2026-12-04 15:30"),
    (dt.datetime(2026, 12, 4, 15, 30, 59, 999, tzinfo=dt.UTC), "2026-12-04 15:30 UTC"),
    (np.datetime64("2026-12-04T09:05:00.5"), "2026-12-04 09:05"),
    ("not a time", "not a time"),
])
def test_times_are_shown_to_the_minute_without_microseconds(value, text):
    assert format_time(value) == text


def test_formatted_frame_and_html_table_agree_and_escape_text():
    frame = pd.DataFrame({"name": ["<b>x</b>", "y"], "value": [1234.5, np.nan],
                          "weight": [0.25, 0.75]})
    kinds = {"value": "money", "weight": "percent"}
    shown = formatted_frame(frame, kinds)
    assert shown["value"].tolist() == ["1,234.50", MISSING]
    assert shown["weight"].tolist() == ["25.00 %", "75.00 %"]
    html = html_table(frame, kinds, titles={"value": "Value"})
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert "1,234.50" in html and "75.00 %" in html and ">Value<" in html
