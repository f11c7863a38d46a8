"""Input limits and checks shared by every service: numbers, text and JSON-like values.

One place for what pmkit accepts, so the ledger, the registry, the
coordinator, proposals, fills and strategies refuse the same things the same
way, with a typed `pmkit.errors.ValidationError` naming the field.

Numbers
-------
A number is a Python ``int`` or ``float``, or a numpy integer or floating
scalar (``np.int64``, ``np.float32``, ...); it is stored as a Python float.
``bool`` (and ``np.bool_``), ``Decimal``, strings, None, containers and ints
too large for a float are refused. Magnitudes are bounded by the constants
below (`LimitExceededError`), and so are the *consequences* of a trade: its
notional ``|quantity * price| + fee`` and the balances it leaves (cash and
the position), so no accepted entry can make the append-only ledger
non-finite.

=====================  =========  =====================================================
limit                  value      applies to
=====================  =========  =====================================================
`MAX_QUANTITY`         1e12       units in a trade, a fill, an order; a position held
`MAX_PRICE`            1e9        price per unit (trades, fills, signals, proposals)
`MAX_AMOUNT`           1e15       a cash flow, a fee, a trade's notional, initial
                                  capital, a transfer, a margin limit, config numbers
`MAX_BALANCE`          1e15       a portfolio's cash after any ledger entry
=====================  =========  =====================================================

Text
----
Text is a ``str`` without NUL or lone surrogates (which cannot be encoded as
UTF-8); single-line text (names, tags, ids) has no control characters at
all, free text (descriptions, notes, memos, reasons) may hold tabs and line
breaks. C1 control characters (U+0080 to U+009F) are refused in both.

Bidirectional formatting characters are refused too, because they reorder
the text *around* them wherever it is shown (a table cell, a log line, an
audit record), and HTML escaping does not neutralize them: a portfolio named
``"\u202eXYZ"`` (RIGHT-TO-LEFT OVERRIDE) can display as another name, or flip
the figures beside it. The embeddings, overrides and isolates (U+202A to
U+202E, U+2066 to U+2069) are refused in all text; single-line text also
refuses the direction marks (U+200E, U+200F, U+061C) and the line and
paragraph separators (U+2028, U+2029). Right-to-left letters (Arabic,
Hebrew) are ordinary text and accepted everywhere.

Lengths are counted in characters:

=======================  =====  =================================================
limit                    value  applies to
=======================  =====  =================================================
`MAX_NAME_LENGTH`        200    names (portfolios, groups, users), segment values
`MAX_TAG_LENGTH`         64     one tag; also risk profile and benchmark
`MAX_TAGS`               64     tags on one portfolio
`MAX_MEMO_LENGTH`        1000   ledger memos, reasons, signal text fields
`MAX_TEXT_LENGTH`        10000  descriptions and notes
`MAX_JSON_BYTES`         65536  one config mapping, signal input, execution result
`MAX_JSON_DEPTH`         16     nesting of such a mapping
=======================  =====  =================================================
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import numpy as np

from pmkit.errors import LimitExceededError, ValidationError

__all__ = [
    "MAX_AMOUNT",
    "MAX_BALANCE",
    "MAX_JSON_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_MEMO_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_PRICE",
    "MAX_QUANTITY",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_TEXT_LENGTH",
    "check_bool",
    "check_limit",
    "check_number",
    "check_text",
    "json_value",
    "safe_text",
]

#: Largest number of units in one trade, fill or order, and in one position.
MAX_QUANTITY = 1e12
#: Largest price per unit, in the portfolio currency.
MAX_PRICE = 1e9
#: Largest cash flow, fee, trade notional, initial capital, transfer or config number.
MAX_AMOUNT = 1e15
#: Largest magnitude of a portfolio's cash balance.
MAX_BALANCE = 1e15

#: Display names (portfolios, groups, users).
MAX_NAME_LENGTH = 200
#: One tag, risk profile, benchmark or segment value.
MAX_TAG_LENGTH = 64
#: Tags on one portfolio.
MAX_TAGS = 64
#: Ledger memos, reasons, signal text fields.
MAX_MEMO_LENGTH = 1000
#: Descriptions and notes.
MAX_TEXT_LENGTH = 10_000
#: Serialized size of one config mapping, signal input or execution result.
MAX_JSON_BYTES = 65_536
#: Nesting depth of such a mapping.
MAX_JSON_DEPTH = 16

_MAX_KEY_LENGTH = 256
_CONTROL_ANY = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_FREE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: Embeddings, overrides and isolates: they reorder the neighbouring text (Trojan Source).
_BIDI_FREE = re.compile("[\u202a-\u202e\u2066-\u2069]")
#: In names, also the direction marks and the line and paragraph separators.
_BIDI_ANY = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\u2028\u2029]")


def _numeric(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return False
    return isinstance(value, int | float | np.integer | np.floating)


def check_number(
    value: Any,
    field: str,
    *,
    limit: float = MAX_AMOUNT,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    error: type[ValidationError] = ValidationError,
) -> float:
    """``value`` as a finite Python float within ``[-limit, limit]``.

    Parameters
    ----------
    value : Any
        An int, float or numpy integer/floating scalar.
    field : str
        Named in the error.
    limit : float
        Largest accepted magnitude (one of the ``MAX_*`` constants); beyond it
        `LimitExceededError`.
    minimum, maximum : float, optional
        Inclusive bounds (e.g. ``minimum=0`` for a fee, ``maximum=1`` for a fraction).
    positive : bool
        Require ``> 0``.
    error : type
        The `ValidationError` subclass raised for a wrong type or range.

    Raises
    ------
    ValidationError
        (or ``error``) for a wrong type, a non-finite value or an out-of-range one;
        `LimitExceededError` for a magnitude beyond ``limit``.
    """
    if minimum is not None and maximum is not None:
        wanted = f"in [{minimum:g}, {maximum:g}]"
    elif minimum is not None:
        wanted = f">= {minimum:g}"
    elif maximum is not None:
        wanted = f"<= {maximum:g}"
    else:
        wanted = ""
    if positive:
        wanted = f"> 0{' and ' + wanted if wanted else ''}"
    suffix = f" {wanted}" if wanted else ""
    if not _numeric(value):
        raise error(field, value, f"must be a number (int, float or numpy scalar){suffix}")
    try:
        x = float(value)
    except OverflowError as exc:
        raise error(field, value, "is too large for a float") from exc
    if not math.isfinite(x):
        raise error(field, value, f"must be a finite number{suffix}")
    if abs(x) > limit:
        raise LimitExceededError(field, value, f"magnitude exceeds the limit {limit:g}")
    if (
        (positive and not x > 0)
        or (minimum is not None and x < minimum)
        or (maximum is not None and x > maximum)
    ):
        raise error(field, value, f"must be {wanted}")
    return x


def check_limit(value: float, field: str, limit: float, what: str = "") -> float:
    """Refuse a derived quantity (a product, a balance) that is non-finite or beyond ``limit``.

    Raises
    ------
    LimitExceededError
        Naming ``field`` and the value.
    """
    if not math.isfinite(value) or abs(value) > limit:
        detail = f"{what} " if what else ""
        raise LimitExceededError(field, value, f"{detail}would exceed the limit {limit:g}")
    return value


def check_bool(value: Any, field: str, error: type[ValidationError] = ValidationError) -> bool:
    """``value`` if it is ``True`` or ``False`` (numpy bools too), else ``error``."""
    if not isinstance(value, bool | np.bool_):
        raise error(field, value, "must be True or False")
    return bool(value)


def check_text(
    value: Any,
    field: str,
    *,
    max_length: int = MAX_MEMO_LENGTH,
    multiline: bool = True,
    allow_empty: bool = True,
    error: type[ValidationError] = ValidationError,
) -> str:
    """``value`` if it is acceptable text, as a plain ``str``.

    Parameters
    ----------
    max_length : int
        Longest accepted length in characters (one of the ``MAX_*_LENGTH`` constants).
    multiline : bool
        Whether tabs and line breaks are allowed (free text); other control
        characters never are, nor bidirectional embeddings, overrides and
        isolates; single-line text also refuses direction marks and the
        Unicode line and paragraph separators (see the module docstring).
    allow_empty : bool
        Whether an empty or all-blank string is accepted.

    Raises
    ------
    ValidationError
        (or ``error``) naming ``field``: not a string, NUL or another control
        character, a bidirectional formatting character, a lone surrogate,
        too long, or blank when not allowed.
    """
    if not isinstance(value, str):
        raise error(field, value, "must be a string")
    text = str(value)
    if len(text) > max_length:
        raise error(field, f"<{len(text)} characters>", f"longer than {max_length} characters")
    bad = (_CONTROL_FREE if multiline else _CONTROL_ANY).search(text)
    if bad is not None:
        raise error(field, value, f"contains the control character {bad.group()!r}")
    bad = (_BIDI_FREE if multiline else _BIDI_ANY).search(text)
    if bad is not None:
        char = bad.group()
        what = f"U+{ord(char):04X} ({unicodedata.name(char, 'FORMAT CHARACTER')})"
        if char in "\u2028\u2029":
            raise error(field, value, f"contains {what}: a line break in single-line text")
        raise error(field, value, f"contains {what}, a bidirectional formatting character "
                    "that can reorder the text around it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise error(field, value, "contains a lone surrogate (not valid Unicode text)") from exc
    if not allow_empty and not text.strip():
        raise error(field, value, "must be a non-empty string")
    return text


def safe_text(value: str, max_length: int = MAX_MEMO_LENGTH) -> str:
    r"""``value`` made storable as given-but-defanged: lone surrogates escaped, NUL dropped, cut.

    Bidirectional formatting characters are written as escapes (``\u202e``),
    so the record cannot reorder the text around it where it is shown. For
    keeping a record of refused input (a rejected signal) without refusing
    to record it.
    """
    text = value.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "")
    text = _BIDI_ANY.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= max_length else text[: max_length - 1] + "…"


def json_value(
    value: Any,
    field: str,
    *,
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
    error: type[ValidationError] = ValidationError,
) -> Any:
    """A JSON-ready copy of ``value`` whose stored form reads back identical.

    Accepted: None, bools, numbers (`check_number` with `MAX_AMOUNT`; numpy
    scalars become Python numbers, ints stay ints), text (`check_text`, free
    text up to `MAX_TEXT_LENGTH`), lists and tuples (as lists) and mappings
    with string keys (single-line, at most 256 characters), nested at most
    ``max_depth`` deep and at most ``max_bytes`` serialized.

    Raises
    ------
    ValidationError
        (or ``error``) naming the path of the offending item, e.g. ``config.limits[2]``.
    """

    def walk(v: Any, path: str, depth: int) -> Any:
        if depth > max_depth:
            raise error(path, "<nested>", f"nested deeper than {max_depth} levels")
        if v is None or isinstance(v, bool):
            return v
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, str):
            return check_text(v, path, max_length=MAX_TEXT_LENGTH, error=error)
        if isinstance(v, int | np.integer):
            if abs(int(v)) > MAX_AMOUNT:
                raise LimitExceededError(path, v, f"magnitude exceeds the limit {MAX_AMOUNT:g}")
            return int(v)
        if _numeric(v):
            return check_number(v, path, error=error)
        if isinstance(v, list | tuple):
            return [walk(x, f"{path}[{i}]", depth + 1) for i, x in enumerate(v)]
        if isinstance(v, Mapping):
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise error(path, k, "mapping keys must be strings")
                key = check_text(k, f"{path} key", max_length=_MAX_KEY_LENGTH, multiline=False)
                out[key] = walk(x, f"{path}.{key}", depth + 1)
            return out
        raise error(
            path, type(v).__name__, "must be JSON-like: None, bool, number, str, list, dict"
        )

    clean = walk(value, field, 0)
    size = len(json.dumps(clean, allow_nan=False))
    if size > max_bytes:
        raise LimitExceededError(field, f"<{size} bytes>", f"larger than {max_bytes} bytes")
    return clean
