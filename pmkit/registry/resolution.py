"""Configuration as a portfolio sees it: defaults, then its groups, then its own overrides.

Registry-wide settings live in one ``"setting"`` record; their ``defaults``
are the first layer of every portfolio's configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pmkit.errors import ConfigConflictError
from pmkit.registry.catalogue import get_portfolio
from pmkit.registry.config import DEFAULT_SETTINGS
from pmkit.registry.hierarchy import ancestor_depths
from pmkit.store.base import Reader, Transaction

__all__ = ["SETTINGS_ID", "ResolvedConfig", "put_settings", "read_settings", "resolve_config"]

#: Id of the registry's settings record.
SETTINGS_ID = "registry"


class ResolvedConfig(dict[str, Any]):
    """A portfolio's effective configuration; `sources` tells where each key came from.

    Sources are ``"defaults"`` (registry-wide), ``"group:<id>"`` or
    ``"portfolio"`` (its own override).
    """

    def __init__(self, values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
        super().__init__(values)
        self.sources = dict(sources)


def read_settings(reader: Reader) -> dict[str, Any]:
    """The registry-wide settings (a deep copy: changing it changes nothing stored)."""
    rec = reader.get("setting", SETTINGS_ID)
    return json.loads(json.dumps(rec.data if rec else DEFAULT_SETTINGS))


def put_settings(tx: Transaction, settings: Mapping[str, Any]) -> None:
    """Replace the registry-wide settings in ``tx``."""
    tx.put("setting", SETTINGS_ID, "active", settings)


def resolve_config(reader: Reader, pid: str) -> ResolvedConfig:
    """A portfolio's effective configuration, read through ``reader`` (no role check).

    Layers, later ones winning: registry ``defaults``; then its groups from
    the farthest ancestor to the nearest; then the portfolio's own
    overrides. Two groups at the same distance that set one key to
    different values are a conflict, unless something nearer sets it.

    Raises
    ------
    ConfigConflictError
        Naming the key and the conflicting groups' values.
    """
    info = get_portfolio(reader, pid)
    values = dict(read_settings(reader).get("defaults", {}))
    sources = dict.fromkeys(values, "defaults")
    conflicts: dict[str, dict[str, Any]] = {}
    depths = ancestor_depths(reader, pid)
    for depth in sorted(set(depths.values()), reverse=True):
        level: dict[str, dict[str, Any]] = {}
        for gid in sorted(g for g, d in depths.items() if d == depth):
            rec = reader.get("group", gid)
            for k, v in (rec.data.get("config", {}) if rec else {}).items():
                level.setdefault(k, {})[gid] = v
        for k, by_group in level.items():
            distinct = {json.dumps(v, sort_keys=True) for v in by_group.values()}
            if len(distinct) > 1:
                conflicts[k] = by_group
                continue
            gid, v = next(iter(by_group.items()))
            values[k], sources[k] = v, f"group:{gid}"
            conflicts.pop(k, None)
    for k, v in info.config.items():
        values[k], sources[k] = v, "portfolio"
        conflicts.pop(k, None)
    if conflicts:
        key, by_group = sorted(conflicts.items())[0]
        raise ConfigConflictError(
            f"config.{key}",
            by_group,
            f"groups at the same depth disagree for portfolio {pid!r}; set it on the "
            "portfolio or a nearer group",
        )
    return ResolvedConfig(values, sources)
