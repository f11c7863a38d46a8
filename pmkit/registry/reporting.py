"""What the registry reports: listings, holdings, values, the summary table and the group tree.

Every function reads only what the session's user may view.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pmkit.errors import CurrencyMismatchError
from pmkit.ledger import LedgerEntry
from pmkit.registry.catalogue import get_portfolio, group_info, portfolio_info
from pmkit.registry.hierarchy import leaf_portfolios
from pmkit.registry.ids import namespace_of
from pmkit.registry.records import GroupInfo, GroupNode, PortfolioInfo, Segment

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from pmkit.registry.registry import Registry

__all__ = [
    "at_last_close",
    "group_holdings",
    "group_tree",
    "group_value",
    "groups",
    "holdings",
    "portfolios",
    "same_currency",
    "summary",
    "value",
    "values",
]

_LIVE = ("active", "inactive", "archived")


def holdings(
    reg: Registry, portfolio_ids: Sequence[str] | None = None, times: Any = None
) -> xr.Dataset:
    """Holdings over time from the ledgers, on (portfolio, asset, time).

    Parameters
    ----------
    portfolio_ids : sequence of str, optional
        Default: every portfolio this user may view (not deleted).
    times : array-like of datetime64, optional
        Default: the market data's times.

    Returns
    -------
    xarray.Dataset
        ``quantity(portfolio, asset, time)`` in units and
        ``cash(portfolio, time)`` in each portfolio's currency. At the
        market's last time, entries made after it (a deposit today, after
        the last close) count too: the last close is the latest price there
        is, so they are valued at it (`at_last_close`).
    """
    from pmkit.model import holdings_from_ledger

    market = reg.require_market()
    pids = list(portfolio_ids) if portfolio_ids is not None else [p.id for p in reg.portfolios()]
    infos = [get_portfolio(reg.store, p, deleted=True) for p in pids]
    for p in pids:
        reg._require(reg.store, "view", p)
    entries = [e for p in pids for e in reg.store.ledger(p)]
    stamps = market.indexes["time"] if times is None else times
    return holdings_from_ledger(
        at_last_close(entries, market, stamps),
        pids,
        list(market.indexes["asset"]),
        stamps,
        currency={i.id: i.currency for i in infos},
    )


def at_last_close(
    entries: Sequence[LedgerEntry], market: xr.Dataset, times: Any
) -> list[LedgerEntry]:
    """``entries`` with those after the market's last time moved onto it, if ``times`` end there.

    Valuing "now" means valuing at the last close: an entry made after it
    (cash deposited after the close, a trade booked today) belongs to the
    current book, so it counts at the last market time instead of being left
    out of every replay. Over times ending earlier, nothing changes.
    """
    import pandas as pd

    last = pd.Timestamp(market.indexes["time"][-1])
    stamps = pd.DatetimeIndex(pd.to_datetime(list(times) if not hasattr(times, "dtype")
                                             else times))
    if len(stamps) == 0 or stamps[-1] != last:
        return list(entries)
    moved = last.to_pydatetime()
    return [replace(e, ts=moved) if e.ts > moved else e for e in entries]


def values(
    reg: Registry, portfolio_ids: Sequence[str] | None = None, at: Any = None
) -> xr.DataArray:
    """Portfolio values (positions at market close plus cash) at one time.

    Parameters
    ----------
    portfolio_ids : sequence of str, optional
        Default: every portfolio this user may view.
    at : datetime-like, optional
        A time in the market data (default: its last time). Ledger entries
        up to and including ``at`` count.

    Returns
    -------
    xarray.DataArray
        Value per portfolio, dim ``portfolio``, in each portfolio's currency.
    """
    from pmkit.model import portfolio_values

    market = reg.require_market()
    t = market.indexes["time"][-1] if at is None else at
    h = reg.holdings(portfolio_ids, times=[t])
    return portfolio_values(h, market.sel(time=[t])).isel(time=0, drop=True)


def value(reg: Registry, portfolio_id: str | None = None, at: Any = None) -> float:
    """One portfolio's value at ``at`` (default: last market time), in its currency."""
    return float(reg.values([reg._pid(portfolio_id)], at).item())


def group_holdings(reg: Registry, group_id: str, at: Any = None) -> xr.Dataset:
    """Consolidated holdings of every portfolio in a group (nested included, each once).

    Returns
    -------
    xarray.Dataset
        ``quantity(asset)`` summed over member portfolios, ``cash`` summed.

    Raises
    ------
    CurrencyMismatchError
        If members have different currencies (FX arrives with the core).
    """
    pids = reg.get_group_portfolios(group_id)
    same_currency(reg, group_id, pids)
    market = reg.require_market()
    t = market.indexes["time"][-1] if at is None else at
    h = reg.holdings(pids, times=[t]).isel(time=0, drop=True)
    return h.sum("portfolio")


def group_value(reg: Registry, group_id: str, at: Any = None) -> float:
    """Consolidated value of a group: each member portfolio counted once."""
    pids = reg.get_group_portfolios(group_id)
    if not pids:
        return 0.0
    same_currency(reg, group_id, pids)
    return float(reg.values(pids, at).sum().item())


def same_currency(reg: Registry, group_id: str, pids: Sequence[str]) -> None:
    """`CurrencyMismatchError` unless every portfolio of ``pids`` has one currency."""
    ccys = {get_portfolio(reg.store, p).currency for p in pids}
    if len(ccys) > 1:
        raise CurrencyMismatchError(
            "group_id",
            group_id,
            f"members are in {sorted(ccys)}; convert with"
            " pmkit.analytics.valuation.portfolio_values(..., fx=...) first",
        )


def summary(reg: Registry, at: Any = None) -> pd.DataFrame:
    """One row per visible portfolio: status, segment, tags, currency, cash and value.

    With market data, ``cash`` and ``value`` are both as of ``at`` (default:
    the last market time), in the portfolio currency, and
    ``DataFrame.attrs["as_of"]`` holds that time. Without market data,
    ``cash`` is the current cash and ``value`` is NaN.
    """
    import pandas as pd

    from pmkit.model import portfolio_values

    infos = reg.portfolios()
    ids = [i.id for i in infos]
    cash = {i: reg.store.positions(i).cash for i in ids}
    vals = dict.fromkeys(ids, float("nan"))
    as_of = None
    if reg.market is not None and infos:
        as_of = reg.market.indexes["time"][-1] if at is None else pd.Timestamp(at)
        h = reg.holdings(ids, times=[as_of])
        v = portfolio_values(h, reg.market.sel(time=[as_of])).isel(time=0)
        vals = dict(zip(ids, v.values.tolist(), strict=True))
        cash = dict(zip(ids, h["cash"].isel(time=0).values.tolist(), strict=True))
    rows = [
        {
            "id": i.id,
            "name": i.name,
            "status": i.status,
            "segment": str(i.segment),
            "tags": ", ".join(i.tags),
            "currency": i.currency,
            "cash": cash[i.id],
            "value": vals[i.id],
        }
        for i in infos
    ]
    cols = ["id", "name", "status", "segment", "tags", "currency", "cash", "value"]
    table = pd.DataFrame(rows, columns=cols).set_index("id")
    table.attrs["as_of"] = as_of
    return table


def group_tree(reg: Registry, at: Any = None) -> GroupNode:
    """The group hierarchy as a tree, with consolidated values and target vs actual weights.

    Only what this user may view is shown: the root's children are the
    visible groups none of whose parents are visible, then visible
    portfolios in no visible group. A group's value is the sum of its
    visible member portfolios (each once), in their common currency; a
    group whose members have different currencies gets no value (None),
    since adding them needs FX conversion.
    """
    vals = reg.summary(at)["value"].to_dict() if reg.market is not None else {}
    groups = {g.id: g for g in reg.groups()}
    visible = {p.id: p for p in reg.portfolios()}

    def node(id_: str, target: float | None) -> GroupNode:
        if id_ not in groups:
            p = visible[id_]
            return GroupNode(
                p.id,
                p.name,
                "portfolio",
                p.status,
                target,
                None,
                vals.get(p.id),
                currency=p.currency,
            )
        g = groups[id_]
        kids = [
            node(m, g.allocation[m] if g.allocation else None)
            for m in g.members
            if m in groups or m in visible
        ]
        leaves = [p for p in leaf_portfolios(reg.store, id_) if p in visible]
        ccys = {visible[p].currency for p in leaves}
        mixed = len(ccys) > 1
        currency = next(iter(ccys)) if len(ccys) == 1 else "USD"
        value = None if not vals or mixed else sum(vals[p] for p in leaves)
        n = GroupNode(
            g.id,
            g.name,
            "group",
            g.status,
            target,
            None,
            value,
            currency=currency,
            children=kids,
        )
        if value:
            for k in kids:
                k.actual = None if k.value is None else k.value / value
        return n

    def top(id_: str) -> bool:
        return not any(parent in groups for parent in reg.store.parents(id_))

    roots = [node(g, None) for g in groups if top(g)]
    loose = [node(p, None) for p in visible if top(p)]
    return GroupNode("", "All portfolios", "root", "active", children=roots + loose)


def portfolios(
    reg: Registry,
    *,
    tags: Iterable[str] | None = None,
    segment: Mapping[str, str] | None = None,
    status: str | Iterable[str] | None = None,
    namespace: str | None = None,
) -> list[PortfolioInfo]:
    """Portfolios this user may view, filtered; deleted tombstones are never listed.

    Parameters
    ----------
    tags : iterable of str, optional
        Keep portfolios carrying every one of these tags.
    segment : mapping, optional
        E.g. ``{"client": "a"}``: keep portfolios whose segment matches every item.
    status : str or iterable of str, optional
        Keep these lifecycle states (default: all but deleted).
    namespace : str, optional
        Keep ids in this namespace (``"client_a"`` keeps ``client_a/...``).
    """
    wanted_tags = set(tags or ())
    seg = dict(Segment.parse(segment).as_dict()) if segment is not None else {}
    seg = {k: v for k, v in seg.items() if v is not None}
    statuses = [status] if isinstance(status, str) else list(status or _LIVE)
    out = []
    for rec in reg.store.list("portfolio", statuses):
        info = portfolio_info(rec)
        if not wanted_tags <= set(info.tags):
            continue
        if any(info.segment.as_dict()[k] != v for k, v in seg.items()):
            continue
        if namespace is not None and namespace_of(info.id) != namespace:
            continue
        if reg.can("view", info.id):
            out.append(info)
    return out


def groups(reg: Registry) -> list[GroupInfo]:
    """Groups this user may view (deleted ones excluded)."""
    return [
        group_info(r, reg.store) for r in reg.store.list("group", _LIVE) if reg.can("view", r.id)
    ]
