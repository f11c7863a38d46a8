"""Tabulator formatters for the views, from `pmkit.display` (the one set of formatting rules).

Each call builds fresh formatter models: Tabulator mis-assigns one Bokeh
formatter model shared by several columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bokeh.models.widgets.tables import NumberFormatter

from pmkit.display import MISSING, TABULATOR_FORMATS, Kind

__all__ = ["number_formatter", "tabulator_formatters"]


def number_formatter(kind: Kind) -> NumberFormatter:
    """A new Bokeh ``NumberFormatter`` showing ``kind`` as `pmkit.display` does."""
    return NumberFormatter(format=TABULATOR_FORMATS[kind], nan_format=MISSING,
                           text_align="right")


def tabulator_formatters(kinds: Mapping[str, Kind]) -> dict[str, Any]:
    """``{column: formatter}`` for the numeric ``kinds`` (other kinds are preformatted text)."""
    return {c: number_formatter(k) for c, k in kinds.items() if k in TABULATOR_FORMATS}
