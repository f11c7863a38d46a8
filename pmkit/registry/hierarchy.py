"""The group hierarchy: one breadth-first walk, up (ancestors) or down (members).

Groups contain portfolios and other groups; the graph is acyclic (adding a
member that contains the group is refused). Every question about the tree
(which groups contain a portfolio and how far up, which portfolios a group
holds, which groups are nested in it) is the same walk, so it lives here once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pmkit.errors import CycleError
from pmkit.store.base import Reader

__all__ = [
    "ancestor_depths",
    "ancestors",
    "groups_children_first",
    "leaf_portfolios",
    "nested_groups",
    "walk",
]


def walk(start: str, step: Callable[[str], Iterable[str]]) -> dict[str, int]:
    """Breadth-first from ``start``: every id reached, each once, with its distance.

    ``start`` itself is not included. Ids are in the order first reached,
    nearest first.
    """
    depth: dict[str, int] = {}
    frontier, d = [start], 0
    while frontier:
        d += 1
        nxt = []
        for node in frontier:
            for other in step(node):
                if other != start and other not in depth:
                    depth[other] = d
                    nxt.append(other)
        frontier = nxt
    return depth


def ancestors(reader: Reader, target: str) -> list[str]:
    """Groups containing ``target`` directly or through nested groups, nearest first."""
    return list(walk(target, reader.parents))


def ancestor_depths(reader: Reader, target: str) -> dict[str, int]:
    """Each group containing ``target`` with its distance (1: a direct parent)."""
    return walk(target, reader.parents)


def _below(reader: Reader, gid: str) -> dict[str, int]:
    return walk(gid, lambda g: (m.member_id for m in reader.members(g)))


def _is_group(reader: Reader, id_: str) -> bool:
    return reader.get("group", id_) is not None


def leaf_portfolios(reader: Reader, gid: str) -> list[str]:
    """Every portfolio in group ``gid``, nested groups included, each once, nearest first."""
    return [m for m in _below(reader, gid) if not _is_group(reader, m)]


def nested_groups(reader: Reader, gid: str) -> list[str]:
    """Every group nested in ``gid`` (at any depth), each once."""
    return [m for m in _below(reader, gid) if _is_group(reader, m)]


def groups_children_first(groups: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Group ids of a config ordered so that each comes after the groups it contains.

    Raises
    ------
    CycleError
        The config's groups contain each other.
    """
    order: list[str] = []
    visiting: set[str] = set()

    def visit(g: str) -> None:
        if g in order:
            return
        if g in visiting:
            raise CycleError("groups", g, "group hierarchy in config has a cycle")
        visiting.add(g)
        spec = groups[g]
        for m in [*spec.get("portfolios", []), *spec.get("groups", [])]:
            if m in groups:
                visit(m)
        visiting.discard(g)
        order.append(g)

    for g in groups:
        visit(g)
    return order
