"""Users, role grants and registry-wide settings: the administrator's and owner's actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pmkit.errors import AlreadyExistsError, ConfigError, LifecycleError, NotFoundError
from pmkit.registry.access import Role, parse_role
from pmkit.registry.catalogue import get_portfolio, target_kind
from pmkit.registry.ids import validate_user
from pmkit.registry.resolution import put_settings, read_settings
from pmkit.validation import MAX_NAME_LENGTH, check_bool, check_text

if TYPE_CHECKING:
    from pmkit.registry.registry import Registry

__all__ = [
    "add_user",
    "grant",
    "revoke",
    "set_default_portfolio",
    "set_streaming",
    "set_user",
]


def add_user(
    reg: Registry,
    user_id: str,
    *,
    admin: bool = False,
    can_create: bool = False,
    display_name: str = "",
) -> str:
    """Register a user (administrators only).

    Parameters
    ----------
    user_id : str
        One lowercase segment, e.g. ``"alice"``.
    admin : bool
        Administrators may do anything.
    can_create : bool
        Whether the user may create portfolios and groups (becoming their owner).
    display_name : str
        Name shown in front ends.
    """
    validate_user(user_id, "user_id")
    admin = check_bool(admin, "admin")
    can_create = check_bool(can_create, "can_create")
    check_text(display_name, "display_name", max_length=MAX_NAME_LENGTH, multiline=False)
    with reg._tx("user.add", user_id) as (tx, _):
        reg._require_admin(tx, "user.add", user_id)
        if tx.get("user", user_id) is not None:
            raise AlreadyExistsError("user", user_id)
        data = {
            "admin": bool(admin),
            "can_create": bool(can_create),
            "display_name": display_name or user_id,
        }
        tx.put("user", user_id, "active", data)
        tx.record(None, data)
    return user_id


def set_user(
    reg: Registry,
    user_id: str,
    action: str,
    *,
    status: str | None = None,
    admin: bool | None = None,
) -> bool:
    """Change a user's status or admin flag (administrators only); False when unchanged."""
    validate_user(user_id, "user_id")
    reg._require_admin(reg.store, action, user_id)
    current = reg.store.get("user", user_id)
    if (
        current is not None
        and user_id != "system"
        and (status is None or status == current.status)
        and (admin is None or bool(current.data.get("admin")) == admin)
    ):
        return False  # no transaction, so no empty audit record
    with reg._tx(action, user_id) as (tx, events):
        reg._require_admin(tx, action, user_id)
        rec = tx.get("user", user_id)
        if rec is None:
            raise NotFoundError("user", user_id)
        if user_id == "system":
            raise LifecycleError(user_id, rec.status, action, "the built-in administrator")
        new_status = rec.status if status is None else status
        data = dict(rec.data) if admin is None else {**rec.data, "admin": bool(admin)}
        tx.put("user", user_id, new_status, data)
        tx.record({"status": rec.status, **rec.data}, {"status": new_status, **data})
        events.append(
            reg._event(action, user=user_id, status=new_status, admin=bool(data.get("admin")))
        )
    return True


def grant(reg: Registry, user: str, target: str, role: Role | str) -> None:
    """Give ``user`` a role on a portfolio or group (needs OWNER on it).

    The role replaces any role the user held directly on ``target``.
    """
    validate_user(user, "user")
    role = parse_role(role)
    with reg._tx("grant", target) as (tx, events):
        reg._require(tx, "grant", target)
        target_kind(tx, target)
        if tx.get("user", user) is None:
            raise NotFoundError("user", user)
        before = [g.role for g in tx.grants(user_id=user, scope_id=target)]
        tx.set_grant(user, target, str(role))
        tx.record(
            {"user": user, "role": before[0] if before else None},
            {"user": user, "role": str(role)},
        )
        events.append(reg._scoped_event(tx, "access.granted", target, user=user, role=str(role)))


def revoke(reg: Registry, user: str, target: str) -> None:
    """Remove ``user``'s direct role on ``target`` (needs OWNER on it)."""
    with reg._tx("revoke", target) as (tx, events):
        reg._require(tx, "grant", target)
        before = [g.role for g in tx.grants(user_id=user, scope_id=target)]
        if not before:
            raise NotFoundError("grant", f"{user}@{target}")
        tx.set_grant(user, target, None)
        tx.record({"user": user, "role": before[0]}, {"user": user, "role": None})
        events.append(reg._scoped_event(tx, "access.revoked", target, user=user))


def set_streaming(reg: Registry, values: Mapping[str, Any]) -> dict[str, Any]:
    """Set the registry's streaming options (administrators only).

    Parameters
    ----------
    values : mapping
        Keys of `pmkit.registry.streaming.StreamSettings` to change; the
        others keep their current value.

    Returns
    -------
    dict
        The full, validated streaming settings now in force.
    """
    from pmkit.registry.streaming import StreamSettings

    if not isinstance(values, Mapping):
        raise ConfigError("streaming", values, "must be a mapping of streaming options")
    with reg._tx("registry.streaming", "registry") as (tx, events):
        reg._require_admin(tx, "registry.streaming", "registry")
        current = reg.settings()
        old = current.get("streaming")
        new = StreamSettings.from_mapping({**(old or {}), **dict(values)}).to_dict()
        put_settings(tx, {**current, "streaming": new})
        tx.record(old, new)
        events.append(reg._event("registry.streaming_changed", **new))
    return new


def set_default_portfolio(reg: Registry, portfolio_id: str | None) -> None:
    """Set the registry's default portfolio (administrators only)."""
    with reg._tx("registry.default_portfolio", portfolio_id or "registry") as (tx, _):
        reg._require_admin(tx, "registry.default_portfolio", "registry")
        if portfolio_id is not None:
            get_portfolio(tx, portfolio_id)
        before = read_settings(tx)
        after = {**before, "default_portfolio": portfolio_id}
        put_settings(tx, after)
        tx.record(before["default_portfolio"], portfolio_id)
