"""Roles and the least role each action needs.

Users hold one role per portfolio or group. A role on a group applies to
every member, transitively; the effective role on a target is the highest
of the user's grants on it and on every group that contains it.
Administrators (``admin`` users, such as ``system``) may do anything.
"""

from __future__ import annotations

from enum import IntEnum

from pmkit.errors import ValidationError

__all__ = ["ACTION_ROLES", "Role", "parse_role"]


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
