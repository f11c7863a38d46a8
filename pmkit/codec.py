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


def _encode_float(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _encode_dict(value: dict) -> dict:
    return {k: encode(v) for k, v in value.items()}


def _encode_list(value: list | tuple) -> list:
    # a series of finite floats (a schedule, weights) is already JSON-ready: checked in C
    if set(map(type, value)) == {float} and all(map(math.isfinite, value)):
        return list(value)
    return [encode(v) for v in value]


#: Exact types with a known rule, looked up before the general cases (records are
#: mostly these, and `encode` runs on every value of every record written).
_BY_TYPE: dict[type, Any] = {
    str: None, int: None, bool: None, type(None): None,
    float: _encode_float, dict: _encode_dict, list: _encode_list, tuple: _encode_list,
}


def encode(obj: Any) -> Any:
    """``obj`` as JSON-ready data (see the module notes for the rules)."""
    kind = type(obj)
    if kind in _BY_TYPE:
        rule = _BY_TYPE[kind]
        return obj if rule is None else rule(obj)
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


def _keep(value: Any) -> Any:
    return value


@cache
def _decoder(tp: Any) -> Any:
    """The function decoding a value of type ``tp`` (built once per type: decoding is hot)."""
    if tp is Any or tp is object:
        return _keep
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) != 1:
            return _keep
        inner = _decoder(options[0])
        return lambda value: None if value is None else inner(value)
    if tp is float:
        return lambda value: math.nan if value is None else value
    if isinstance(tp, type):
        if dataclasses.is_dataclass(tp):
            return lambda value: None if value is None else decode(tp, value)
        if issubclass(tp, enum.Enum):
            return lambda value: None if value is None else _decode_enum(tp, value)
        if issubclass(tp, datetime):
            return lambda value: value if value is None or isinstance(value, datetime) \
                else datetime.fromisoformat(value)
        if issubclass(tp, date):
            return lambda value: value if value is None or isinstance(value, date) \
                else date.fromisoformat(value)
        if tp is tuple:
            return lambda value: None if value is None else tuple(value)
        return _keep
    args = typing.get_args(tp)
    if origin is tuple:
        item = _decoder(args[0] if args else Any)
        if args and args[0] is float:  # None is a non-finite float (see `encode`)
            return lambda value: None if value is None else (
                tuple(value) if None not in value
                else tuple(math.nan if v is None else v for v in value))
        return lambda value: None if value is None else tuple(item(v) for v in value)
    if origin is list:
        item = _decoder(args[0] if args else Any)
        if item is _keep:
            return lambda value: None if value is None else list(value)
        return lambda value: None if value is None else [item(v) for v in value]
    if origin in (dict, Mapping):
        item = _decoder(args[1] if len(args) == 2 else Any)
        if item is _keep:
            return lambda value: None if value is None else dict(value)
        return lambda value: None if value is None else {k: item(v) for k, v in value.items()}
    return _keep


@cache
def _field_decoders(cls: type) -> tuple[tuple[str, Any], ...]:
    hints = _hints(cls)
    return tuple((name, _decoder(hints.get(name, Any))) for name in _field_names(cls))


def decode(cls: type[T], data: Mapping[str, Any]) -> T:
    """The dataclass ``cls`` from data `encode` made (unknown keys ignored)."""
    kwargs = {k: fn(data[k]) for k, fn in _field_decoders(cls) if k in data}
    return cls(**kwargs)
