"""Roles and the least role each action needs.

Users hold one role per portfolio or group. A role on a group applies to
every member, transitively; the effective role on a target is the highest
of the user's grants on it and on every group that contains it.
Administrators (``admin`` users, such as ``system``) may do anything.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

from pmkit.errors import PermissionDenied, ValidationError
from pmkit.store.base import Reader

__all__ = ["ACTION_ROLES", "AccessPolicy", "Role", "parse_role"]


class Role(IntEnum):
    """Roles in increasing power; each includes the ones below it."""

    VIEWER = 1
    TRADER = 2
    MANAGER = 3
    OWNER = 4

    def __str__(self) -> str:
        return self.name.lower()


def parse_role(value: object) -> Role:
    """``"manager"`` or ``Role.MANAGER`` -> ``Role.MANAGER``; anything else raises."""
    if isinstance(value, Role):
        return value
    if isinstance(value, str) and value.upper() in Role.__members__:
        return Role[value.upper()]
    raise ValidationError("role", value, f"must be one of {[str(r) for r in Role]}")


#: The least role an action needs on its target.
#: Adding a member to a group also needs OWNER on the member, because the
#: group's role holders gain those roles on it.
ACTION_ROLES: dict[str, Role] = {
    "view": Role.VIEWER,
    "ledger.trade": Role.TRADER,
    "ledger.cash": Role.TRADER,
    "portfolio.update": Role.MANAGER,
    "portfolio.activate": Role.MANAGER,
    "portfolio.deactivate": Role.MANAGER,
    "portfolio.config": Role.MANAGER,
    "portfolio.archive": Role.OWNER,
    "portfolio.delete": Role.OWNER,
    "portfolio.restore": Role.OWNER,
    "group.update": Role.MANAGER,
    "group.members": Role.MANAGER,
    "group.allocation": Role.MANAGER,
    "group.config": Role.MANAGER,
    "group.activate": Role.MANAGER,
    "group.deactivate": Role.MANAGER,
    "group.archive": Role.OWNER,
    "group.delete": Role.OWNER,
    "group.join": Role.OWNER,
    "grant": Role.OWNER,
    # strategies inside a portfolio and their capital allocation
    "strategy.register": Role.MANAGER,
    "strategy.allocation": Role.MANAGER,
    "strategy.status": Role.MANAGER,
    "strategy.performance": Role.TRADER,
    # trade signals from strategies
    "signal.submit": Role.TRADER,
    "signal.execute": Role.TRADER,
    # rebalance proposals and their approval (maker-checker on top of roles)
    "proposal.create": Role.TRADER,
    "proposal.approve": Role.MANAGER,
    "proposal.reject": Role.MANAGER,
    "proposal.expire": Role.TRADER,
    "proposal.submit": Role.TRADER,
    "proposal.cancel": Role.TRADER,
    "proposal.fill": Role.TRADER,
}


class AccessPolicy:
    """Who may do what: the one place roles, grants and the admin flag are read.

    Every check reads through the ``reader`` it is given (the store, or an
    open transaction, which sees its own uncommitted grants).

    Parameters
    ----------
    ancestors : callable
        ``ancestors(reader, target) -> list of group ids`` containing
        ``target``; a role on a group applies to its members.
    """

    def __init__(self, ancestors: Callable[[Reader, str], list[str]]) -> None:
        self._ancestors = ancestors

    def user_data(self, reader: Reader, user: str) -> dict[str, Any]:
        """The user's stored flags; `PermissionDenied` for an unknown or inactive user."""
        rec = reader.get("user", user)
        if rec is None or rec.status != "active":
            raise PermissionDenied(user, "act", "registry", "an active user")
        return rec.data

    def is_admin(self, reader: Reader, user: str) -> bool:
        """Whether ``user`` is an active administrator."""
        return bool(self.user_data(reader, user).get("admin"))

    def role_of(self, reader: Reader, user: str, target: str) -> Role | None:
        """Highest role of ``user`` on ``target`` and every group containing it."""
        best: Role | None = None
        for scope in (target, *self._ancestors(reader, target)):
            for g in reader.grants(user_id=user, scope_id=scope):
                role = parse_role(g.role)
                best = role if best is None or role > best else best
        return best

    def require(self, reader: Reader, user: str, action: str, target: str) -> None:
        """`PermissionDenied` unless ``user`` may ``action`` (a key of `ACTION_ROLES`)."""
        if self.is_admin(reader, user):
            return
        needed = ACTION_ROLES[action]
        have = self.role_of(reader, user, target)
        if have is None or have < needed:
            raise PermissionDenied(user, action, target, str(needed))

    def may(self, reader: Reader, user: str, action: str, target: str) -> bool:
        """`require` as a yes/no answer."""
        try:
            self.require(reader, user, action, target)
        except PermissionDenied:
            return False
        return True

    def require_creator(self, reader: Reader, user: str, action: str, target: str) -> None:
        """`PermissionDenied` unless ``user`` may create portfolios and groups."""
        data = self.user_data(reader, user)
        if not (data.get("admin") or data.get("can_create")):
            raise PermissionDenied(user, action, target, "a user allowed to create")

    def require_admin(self, reader: Reader, user: str, action: str, target: str) -> None:
        """`PermissionDenied` unless ``user`` is an administrator."""
        if not self.is_admin(reader, user):
            raise PermissionDenied(user, action, target, "admin")
