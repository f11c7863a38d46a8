"""The one record codec: frozen dataclasses to JSON-ready data and back.

Every value pmkit stores (ledger entries, signals, proposals, orders, fills,
strategy decisions) is a dataclass; its stored form is made here, by one
rule set, instead of a hand-written ``to_record``/``from_record`` pair each:

- a dataclass becomes a dict of its fields (nested dataclasses too);
- a `StrEnum` is stored as its string, any other enum by its member name
  (a `Priority` reads ``"HIGH"``, not ``3``); decoding accepts either;
- `datetime` and `date` become ISO-8601 text;
- tuples, sets and lists become lists; mappings become dicts (copied);
- a non-finite float becomes None (JSON has no NaN), and None read back into
  a plain ``float`` field is NaN again.

Decoding follows the dataclass's type hints, ignores keys it does not know
(records written by a newer version stay readable) and lets missing fields
take their defaults (records written by an older version too).
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from datetime import date, datetime
from functools import cache
from typing import Any, TypeVar

__all__ = ["decode", "encode"]

T = TypeVar("T")

_PLAIN = (str, int, bool, type(None))


def _encode_enum(member: enum.Enum) -> Any:
    return member.value if isinstance(member, str) else member.name


def encode(obj: Any) -> Any:
    """``obj`` as JSON-ready data (see the module notes for the rules)."""
    if isinstance(obj, enum.Enum):  # first: an IntEnum is an int, a StrEnum a str
        return _encode_enum(obj)
    if isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {name: encode(getattr(obj, name)) for name in _field_names(type(obj))}
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [encode(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return encode(obj.item())
    return obj


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode_enum(tp: type[enum.Enum], value: Any) -> enum.Enum:
    if isinstance(value, tp):
        return value
    if isinstance(value, str) and not issubclass(tp, str) and value in tp.__members__:
        return tp[value]
    return tp(value)


def _decode_as(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return _decode_as(options[0], value) if len(options) == 1 else value
    if tp is float:
        return math.nan if value is None else value
    if value is None:
        return None
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return decode(tp, value)
        if issubclass(tp, enum.Enum):
            return _decode_enum(tp, value)
        if issubclass(tp, datetime):
            return value if isinstance(value, datetime) else datetime.fromisoformat(value)
        if issubclass(tp, date):
            return value if isinstance(value, date) else date.fromisoformat(value)
        if tp is tuple:
            return tuple(value)
        return value
    args = typing.get_args(tp)
    if origin is tuple:
        item = args[0] if args else Any
        return tuple(_decode_as(item, v) for v in value)
    if origin is list:
        return [_decode_as(args[0] if args else Any, v) for v in value]
    if origin in (dict, Mapping):
        vt = args[1] if len(args) == 2 else Any
        return {k: _decode_as(vt, v) for k, v in value.items()}
    return value


def decode(cls: type[T], data: Mapping[str, Any]) -> T:
    """The dataclass ``cls`` from data `encode` made (unknown keys ignored)."""
    hints = _hints(cls)
    names = _field_names(cls)
    kwargs = {k: _decode_as(hints.get(k, Any), data[k]) for k in names if k in data}
    return cls(**kwargs)
