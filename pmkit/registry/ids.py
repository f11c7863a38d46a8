"""Identifiers: validated, lowercase, optionally namespaced (``client_a/growth``)."""

from __future__ import annotations

import re

from pmkit.errors import InvalidIdError

__all__ = ["ID_PATTERN", "USER_PATTERN", "namespace_of", "slugify", "validate_id", "validate_user"]

_SEGMENT = r"[a-z0-9][a-z0-9_.-]{0,63}"
#: Portfolio and group ids: up to four ``/``-separated segments.
ID_PATTERN = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,3}}")
#: User ids: one segment.
USER_PATTERN = re.compile(_SEGMENT)


def validate_id(value: object, field: str = "portfolio_id") -> str:
    """Return ``value`` if it is a valid portfolio or group id.

    Ids are lowercase (``a-z 0-9 _ . -``), start with a letter or digit,
    have at most four ``/``-separated namespace segments of up to 64
    characters, so ``client_a/growth`` is the ``growth`` portfolio in the
    ``client_a`` namespace. Lowercase only: ids that differ by case alone are
    a classic source of operational mistakes.

    Raises
    ------
    InvalidIdError
        Naming ``field`` and the value.
    """
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidIdError(
            field,
            value,
            "ids are lowercase a-z 0-9 _ . - segments joined by '/', e.g. 'client_a/growth'",
        )
    return value


def validate_user(value: object, field: str = "user") -> str:
    """Return ``value`` if it is a valid user id (one lowercase segment)."""
    if not isinstance(value, str) or not USER_PATTERN.fullmatch(value):
        raise InvalidIdError(field, value, "user ids are one lowercase a-z 0-9 _ . - segment")
    return value


def namespace_of(id_: str) -> str:
    """The namespace part of an id (``""`` for a top-level id)."""
    return id_.rpartition("/")[0]


def slugify(name: str) -> str:
    """Turn a display name into an id segment: ``"Growth Strategy"`` -> ``"growth_strategy"``."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return slug[:64] or "portfolio"
