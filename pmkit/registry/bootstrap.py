"""Applying a ``multi_portfolio_config``: every portfolio and group of it in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pmkit.registry.config import validate_multi_portfolio_config
from pmkit.registry.groups import create_group_in
from pmkit.registry.hierarchy import groups_children_first
from pmkit.registry.lifecycle import create_portfolio_in
from pmkit.registry.resolution import put_settings, read_settings

if TYPE_CHECKING:
    from pmkit.registry.registry import Registry

__all__ = ["apply_config"]


def apply_config(reg: Registry, config: Mapping[str, Any], *, at: datetime | None = None) -> None:
    """Create the portfolios and groups of a ``multi_portfolio_config`` in one transaction.

    Groups may list other groups (under ``portfolios`` or ``groups``); they
    are created children first. Registry settings (``default_portfolio``,
    ``isolation``, ``cross_portfolio``, ``defaults``) replace the current ones.
    """
    settings = validate_multi_portfolio_config(config)
    groups = dict(config.get("groups", {}))
    order = groups_children_first(groups)
    with reg._tx("registry.apply_config", "registry") as (tx, events):
        reg._require_admin(tx, "registry.apply_config", "registry")
        before = read_settings(tx)
        tx.record(
            before,
            {**settings, "portfolios": sorted(config.get("portfolios", {})), "groups": order},
        )
        for pid, spec in config.get("portfolios", {}).items():
            create_portfolio_in(reg, tx, events, pid, spec, at)
        for gid in order:
            spec = groups[gid]
            members = [*spec.get("portfolios", []), *spec.get("groups", [])]
            create_group_in(
                reg,
                tx,
                events,
                gid,
                members,
                spec.get("name"),
                spec.get("description", ""),
                spec.get("allocation"),
                spec.get("config"),
            )
        put_settings(tx, settings)
    reg.bus.isolate = bool(settings["isolation"]["events"])
