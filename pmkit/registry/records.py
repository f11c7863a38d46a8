"""Immutable views of registry records, with rich HTML reprs for Jupyter."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any

from pmkit.display import format_money
from pmkit.errors import ValidationError
from pmkit.validation import MAX_NAME_LENGTH, check_text

__all__ = ["GroupInfo", "GroupNode", "PortfolioInfo", "Segment"]

PORTFOLIO_STATUSES = ("active", "inactive", "archived", "deleted")


@dataclass(frozen=True, slots=True)
class Segment:
    """How a portfolio is segmented: by strategy, asset class and/or client."""

    strategy: str | None = None
    asset_class: str | None = None
    client: str | None = None

    @classmethod
    def parse(cls, value: Segment | Mapping[str, Any] | None) -> Segment:
        """Accept a `Segment`, a mapping with those keys, or None."""
        if value is None:
            return cls()
        if isinstance(value, Segment):
            return value
        if not isinstance(value, Mapping):
            raise ValidationError(
                "segment", value, "must be a mapping of strategy/asset_class/client"
            )
        unknown = set(value) - {"strategy", "asset_class", "client"}
        if unknown:
            raise ValidationError("segment", sorted(map(str, unknown)), "unknown segment keys")
        for k, v in value.items():
            if v is not None:
                check_text(v, f"segment.{k}", max_length=MAX_NAME_LENGTH, multiline=False)
        return cls(**dict(value))

    def as_dict(self) -> dict[str, str | None]:
        """Plain dict, for storage."""
        return {"strategy": self.strategy, "asset_class": self.asset_class, "client": self.client}

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if v)


def _money(x: float | None, ccy: str = "") -> str:
    return format_money(x, ccy or None)


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(
        f"<tr><th style='text-align:left'>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"


@dataclass(frozen=True, slots=True)
class PortfolioInfo:
    """A portfolio's registry entry.

    Attributes
    ----------
    id : str
        Namespaced identifier.
    name, description : str
        Display name and free text.
    currency : str
        ISO code of the portfolio's base currency.
    initial_capital : float
        Capital deposited at creation, in ``currency``.
    risk_profile, benchmark : str or None
        E.g. ``"aggressive"``, ``"QQQ"``.
    tags : tuple of str
        Free labels for queries.
    segment : Segment
        Strategy / asset class / client segmentation.
    status : str
        ``active``, ``inactive``, ``archived`` or ``deleted`` (tombstone).
    config : dict
        The portfolio's own configuration overrides (see
        `Registry.resolve_config` for the inherited view).
    created_at, updated_at : str
        ISO-8601 UTC.
    """

    id: str
    name: str
    description: str = ""
    currency: str = "USD"
    initial_capital: float = 0.0
    risk_profile: str | None = None
    benchmark: str | None = None
    tags: tuple[str, ...] = ()
    segment: Segment = field(default_factory=Segment)
    status: str = "active"
    config: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""

    def data(self) -> dict[str, Any]:
        """Stored attributes (everything but id, status and timestamps)."""
        return {
            "name": self.name,
            "description": self.description,
            "currency": self.currency,
            "initial_capital": self.initial_capital,
            "risk_profile": self.risk_profile,
            "benchmark": self.benchmark,
            "tags": list(self.tags),
            "segment": self.segment.as_dict(),
            "config": self.config,
        }

    def __repr__(self) -> str:
        # the key facts: the full record is `data()` and the notebook's HTML
        return (f"PortfolioInfo(id={self.id!r}, name={self.name!r}, status={self.status!r}, "
                f"currency={self.currency!r})")

    def _repr_html_(self) -> str:
        status_color = {"active": "#1a7f37", "inactive": "#9a6700"}.get(self.status, "#cf222e")
        rows = [
            ("id", f"<code>{escape(self.id)}</code>"),
            ("status", f"<b style='color:{status_color}'>{escape(self.status)}</b>"),
            ("currency", escape(self.currency)),
            ("initial capital", _money(self.initial_capital, self.currency)),
            ("risk profile", escape(self.risk_profile or "—")),
            ("benchmark", escape(self.benchmark or "—")),
            ("segment", escape(str(self.segment) or "—")),
            ("tags", " ".join(f"<code>{escape(t)}</code>" for t in self.tags) or "—"),
        ]
        if self.description:
            rows.insert(1, ("description", escape(self.description)))
        if self.config:
            rows.append(("config overrides", escape(repr(self.config))))
        return f"<div><b>Portfolio {escape(self.name)}</b>{_table(rows)}</div>"


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A group's registry entry.

    Attributes
    ----------
    id, name, description : str
        Identifier and display text.
    members : tuple of str
        Direct members (portfolios or groups), in order.
    allocation : dict or None
        Target weight per direct member (fractions summing to 1), or None.
    status : str
        ``active``, ``inactive``, ``archived`` or ``deleted``.
    config : dict
        Configuration the members inherit unless they override it.
    """

    id: str
    name: str
    description: str = ""
    members: tuple[str, ...] = ()
    allocation: dict[str, float] | None = None
    status: str = "active"
    config: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    updated_at: str = ""

    def __repr__(self) -> str:
        return (f"GroupInfo(id={self.id!r}, name={self.name!r}, status={self.status!r}, "
                f"members={len(self.members)})")

    def _repr_html_(self) -> str:
        members = "".join(
            f"<li><code>{escape(m)}</code>"
            + (f" — target {self.allocation[m]:.1%}" if self.allocation else "")
            + "</li>"
            for m in self.members
        )
        rows = [
            ("id", f"<code>{escape(self.id)}</code>"),
            ("status", escape(self.status)),
            ("members", f"<ul style='margin:0'>{members}</ul>" if members else "—"),
        ]
        if self.config:
            rows.append(("config", escape(repr(self.config))))
        return f"<div><b>Group {escape(self.name)}</b>{_table(rows)}</div>"


@dataclass(slots=True)
class GroupNode:
    """A node of the group tree: a group with its children, or a portfolio leaf.

    Attributes
    ----------
    id, name, kind : str
        ``kind`` is ``"group"`` or ``"portfolio"``.
    status : str
        Lifecycle state.
    target : float or None
        Target weight within the parent group (None when it has none).
    actual : float or None
        Actual weight within the parent, by value (None without market data).
    value : float or None
        Value in the base currency (consolidated for groups).
    children : list of GroupNode
        Members, for groups.
    """

    id: str
    name: str
    kind: str
    status: str
    target: float | None = None
    actual: float | None = None
    value: float | None = None
    currency: str = "USD"
    children: list[GroupNode] = field(default_factory=list)

    def walk(self, depth: int = 0) -> list[tuple[int, GroupNode]]:
        """Depth-first ``(depth, node)`` pairs, this node first."""
        out = [(depth, self)]
        for c in self.children:
            out.extend(c.walk(depth + 1))
        return out

    def _facts(self) -> list[str]:
        """Value, target vs actual weight and (if not active) status, as short texts."""
        facts = []
        if self.value is not None:
            facts.append(_money(self.value, self.currency))
        if self.target is not None:
            actual = "—" if self.actual is None else f"{self.actual:.1%}"
            facts.append(f"target {self.target:.1%} / actual {actual}")
        if self.status != "active":
            facts.append(self.status)
        return facts

    def __repr__(self) -> str:
        return "\n".join(
            "  ".join([f"{'  ' * depth}{n.name} [{n.id or n.kind}]", *n._facts()])
            for depth, n in self.walk()
        )

    def _repr_html_(self) -> str:
        rows = [
            _tree_row(n, depth - 1 if self.kind == "root" else depth)
            for depth, n in self.walk()
            if n.kind != "root"
        ]
        if not rows:
            return "<p><i>No groups or portfolios.</i></p>"
        head = (
            "<tr><th>Group / portfolio</th><th class='num'>Value</th>"
            "<th class='num'>Target</th><th class='num'>Actual</th>"
            "<th>Actual vs target</th></tr>"
        )
        return (
            f"{_TREE_CSS}<table class='pmkit-tree'><thead>{head}</thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )


_TREE_CSS = """<style>
table.pmkit-tree { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
table.pmkit-tree th, table.pmkit-tree td { padding: 4px 10px; border-bottom: 1px solid #e5e7eb;
  white-space: nowrap; }
table.pmkit-tree th { text-align: left; font-weight: 600; color: #374151;
  border-bottom: 2px solid #d1d5db; }
table.pmkit-tree td.num, table.pmkit-tree th.num { text-align: right;
  font-variant-numeric: tabular-nums; }
table.pmkit-tree tr.group td.name { font-weight: 600; }
table.pmkit-tree code { font-size: 0.8rem; color: #6b7280; background: none; }
table.pmkit-tree .bar { position: relative; width: 120px; height: 10px; background: #f3f4f6;
  border-radius: 2px; display: inline-block; vertical-align: middle; }
table.pmkit-tree .bar .actual { position: absolute; left: 0; top: 0; bottom: 0;
  background: #60a5fa; border-radius: 2px; }
table.pmkit-tree .bar .target { position: absolute; top: -3px; bottom: -3px; width: 2px;
  background: #111827; }
table.pmkit-tree .status { font-style: italic; color: #9a6700; margin-left: 6px; }
</style>"""


def _pct(x: float | None) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.1%}"


def _bar(target: float | None, actual: float | None) -> str:
    """Actual weight as a bar, target as a tick; both clipped to [0, 1] for drawing."""
    parts = []
    if actual is not None and not math.isnan(actual):
        parts.append(f"<span class='actual' style='width:{min(max(actual, 0.0), 1.0):.2%}'></span>")
    if target is not None:
        parts.append(
            f"<span class='target' style='left:{min(max(target, 0.0), 1.0):.2%}'"
            f" title='target {target:.1%}'></span>"
        )
    return f"<span class='bar'>{''.join(parts)}</span>" if parts else ""


def _tree_row(n: GroupNode, level: int) -> str:
    # Plain geometric glyphs: emoji need a font that server-side browsers often lack.
    glyph = "▸" if n.kind == "group" else "◦"
    status = f"<span class='status'>{escape(n.status)}</span>" if n.status != "active" else ""
    return (
        f"<tr class='{escape(n.kind)}' data-node='{escape(n.id)}'>"
        f"<td class='name' style='padding-left:{0.6 + 1.4 * level:.1f}em'>{glyph} "
        f"{escape(n.name)} <code>{escape(n.id)}</code>{status}</td>"
        f"<td class='num'>{escape(_money(n.value, n.currency))}</td>"
        f"<td class='num'>{_pct(n.target)}</td><td class='num'>{_pct(n.actual)}</td>"
        f"<td>{_bar(n.target, n.actual)}</td></tr>"
    )
