"""How pmkit shows numbers and times to people: one set of rules for the app, views and magics.

Every screen (the served app's tables, the Panel views inline in a notebook,
the ``%pm`` magics' HTML tables and text reprs) formats through this module,
so the same value reads the same everywhere:

============ ======================= ==================== ===================================
kind         example                 Tabulator format     rule
============ ======================= ==================== ===================================
``money``    ``1,234,567.89``        ``0,0.00``           thousands separators, 2 decimals,
                                                          never scientific notation
``percent``  ``12.34 %``             ``0.00 %``           a fraction shown as percent,
                                                          2 decimals
``ratio``    ``1.23``                ``0.00``             plain number, 2 decimals
``count``    ``1,200``               ``0,0``              whole number with separators
``time``     ``2026-12-04 15:30``    (preformatted)       to the minute, no microseconds;
                                                          a midnight shows the date only
============ ======================= ==================== ===================================

A missing value (None, NaN) shows as ``—`` in every kind. These are pure
functions on plain Python and pandas values: no Panel, no Bokeh.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from html import escape
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = [
    "MISSING",
    "TABULATOR_FORMATS",
    "Kind",
    "format_count",
    "format_money",
    "format_percent",
    "format_ratio",
    "format_time",
    "format_value",
    "formatted_frame",
    "html_table",
]

Kind = Literal["money", "percent", "ratio", "count", "time", "text"]

#: How a missing value reads.
MISSING = "—"

#: numbro formats (Bokeh's ``NumberFormatter``) giving the same text as the functions below.
TABULATOR_FORMATS: dict[str, str] = {
    "money": "0,0.00",
    "percent": "0.00 %",
    "ratio": "0.00",
    "count": "0,0",
}


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool | str):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def format_money(value: Any, currency: str | None = None) -> str:
    """``1234567.891`` -> ``"1,234,567.89"`` (with ``" USD"`` when a currency is given)."""
    x = _number(value)
    if x is None:
        return MISSING
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    text = f"{x:,.2f}"
    if text in ("-0.00",):
        text = "0.00"
    return f"{text} {currency}" if currency else text


def format_percent(value: Any, digits: int = 2) -> str:
    """A fraction as percent: ``0.1234`` -> ``"12.34 %"``."""
    x = _number(value)
    if x is None:
        return MISSING
    text = f"{x * 100:,.{digits}f}"
    if float(text.replace(",", "")) == 0:
        text = text.lstrip("-")
    return f"{text} %"


def format_ratio(value: Any, digits: int = 2) -> str:
    """A plain number: ``1.2345`` -> ``"1.23"``."""
    x = _number(value)
    return MISSING if x is None else f"{x:,.{digits}f}"


def format_count(value: Any) -> str:
    """A whole number with separators: ``1200`` -> ``"1,200"``."""
    x = _number(value)
    return MISSING if x is None else f"{round(x):,d}"


def format_time(value: Any) -> str:
    """A timestamp for people: ``"2026-12-04 15:30"``, or ``"2026-12-04"`` at midnight.

    Accepts ISO text, `datetime`, `date`, `pandas.Timestamp` and numpy
    datetimes; times with a zone are shown in that zone with its offset
    name (``UTC``). Text that is not a time is returned unchanged.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        return str(value)
    if ts is pd.NaT:
        return MISSING
    zone = f" {ts.tzname()}" if ts.tzinfo is not None else ""
    if (ts.hour, ts.minute, ts.second, ts.microsecond, ts.nanosecond) == (0, 0, 0, 0, 0):
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%d %H:%M") + zone


_FORMATTERS = {
    "money": format_money,
    "percent": format_percent,
    "ratio": format_ratio,
    "count": format_count,
    "time": format_time,
}


def format_value(value: Any, kind: Kind) -> str:
    """``value`` formatted as ``kind`` (``"text"``: ``str(value)``, missing as ``—``)."""
    fn = _FORMATTERS.get(kind)
    if fn is not None:
        return fn(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return str(value)


def formatted_frame(frame: pd.DataFrame, kinds: Mapping[str, Kind]) -> pd.DataFrame:
    """A copy of ``frame`` whose ``kinds`` columns are text formatted for people.

    Columns not named in ``kinds`` are left as they are; the index is kept.
    """
    out = frame.copy()
    for column, kind in kinds.items():
        if column in out.columns:
            out[column] = [format_value(v, kind) for v in out[column].tolist()]
    return out


_RIGHT = {"money", "percent", "ratio", "count"}


def html_table(
    frame: pd.DataFrame,
    kinds: Mapping[str, Kind],
    *,
    titles: Mapping[str, str] | None = None,
    caption: str | None = None,
    index: bool = False,
) -> str:
    """``frame`` as an HTML table with formatted numbers (right-aligned) and escaped text.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows to show.
    kinds : mapping of column -> kind
        How each column is formatted (others are text).
    titles : mapping of column -> str, optional
        Header text per column (default: the column name).
    caption : str, optional
        A caption above the table (escaped).
    index : bool
        Whether to show the index as the first column.
    """
    titles = dict(titles or {})
    data = frame.reset_index() if index else frame
    kinds = dict(kinds)
    head = "".join(
        f"<th style='text-align:{'right' if kinds.get(c) in _RIGHT else 'left'}'>"
        f"{escape(str(titles.get(c, c)))}</th>"
        for c in data.columns
    )
    rows = []
    for record in data.itertuples(index=False, name=None):
        cells = []
        for column, value in zip(data.columns, record, strict=True):
            kind = kinds.get(column, "text")
            align = "right" if kind in _RIGHT else "left"
            text = escape(format_value(_plain(value), kind))
            cells.append(f"<td style='text-align:{align};white-space:nowrap'>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption style='text-align:left'>{escape(caption)}</caption>" if caption else ""
    return (f"<table class='pmkit-table'>{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic) and not isinstance(value, np.datetime64 | np.timedelta64):
        return value.item()
    return value
