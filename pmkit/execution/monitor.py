"""Live execution progress: per parent and per portfolio, from the stored plans.

Pure functions of parent orders as `ExecutionEngine.parents` returns them
(read through the user's scoped view, so a desk sees only its own). Signs:
``deviation`` is positive when fills are *ahead* of the schedule, and
``slippage_bps`` positive when the fills cost more than the arrival price
(buys above it, sells below it).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from pmkit.execution.broker import Order
from pmkit.execution.plan import plan_of

__all__ = ["portfolio_progress", "progress", "schedule_frame"]

_COLUMNS = ["portfolio", "asset", "algorithm", "state", "status", "quantity", "filled",
            "filled_pct", "target", "schedule_pct", "deviation", "arrival_price",
            "average_price", "slippage_bps", "interval_vwap", "vs_vwap_bps", "last_price",
            "next_interval", "intervals", "alerts"]


def progress(parents: Iterable[Order]) -> pd.DataFrame:
    """One row per planned parent: how far it is and what it costs so far.

    Parameters
    ----------
    parents : iterable of Order
        Parent orders with an execution plan (others are skipped).

    Returns
    -------
    pandas.DataFrame
        Indexed by parent id. ``quantity``, ``filled``, ``target`` and
        ``deviation`` in signed units (``deviation = side * (filled -
        target)``); ``filled_pct`` and ``schedule_pct`` in percent of the
        order; prices in currency per unit; ``slippage_bps`` and
        ``vs_vwap_bps`` in basis points (positive = cost); ``alerts`` the
        raised alerts joined by commas.
    """
    rows = {}
    for o in parents:
        plan = plan_of(o)
        if plan is None:
            continue
        side = 1.0 if o.quantity > 0 else -1.0
        worked = max(plan.next_interval - 1, 0)
        target = plan.target(worked) if plan.algorithm != "pov" else o.filled
        avg = o.average_price
        vwap = plan.interval_vwap
        rows[o.id] = {
            "portfolio": o.portfolio, "asset": o.asset, "algorithm": plan.algorithm,
            "state": plan.state, "status": str(o.status), "quantity": o.quantity,
            "filled": o.filled, "filled_pct": 100.0 * o.filled / o.quantity,
            "target": target, "schedule_pct": 100.0 * target / o.quantity,
            "deviation": side * (o.filled - target), "arrival_price": plan.arrival_price,
            "average_price": np.nan if avg is None else avg,
            "slippage_bps": np.nan if avg is None
            else side * (avg - plan.arrival_price) / plan.arrival_price * 1e4,
            "interval_vwap": np.nan if vwap is None else vwap,
            "vs_vwap_bps": np.nan if avg is None or vwap is None
            else side * (avg - vwap) / vwap * 1e4,
            "last_price": plan.last_price, "next_interval": plan.next_interval,
            "intervals": plan.intervals, "alerts": ", ".join(plan.alerts),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=_COLUMNS)
    frame.index.name = "parent"
    return frame


def portfolio_progress(parents: Iterable[Order]) -> pd.DataFrame:
    """Progress per portfolio, weighted by arrival notional.

    Returns
    -------
    pandas.DataFrame
        Indexed by portfolio: ``parents`` (count), ``notional`` (currency,
        ``sum |quantity| * arrival``), ``filled_pct`` and ``schedule_pct``
        (percent of notional), ``slippage_bps`` (filled-notional weighted,
        positive = cost) and ``alerts`` (parents with an alert raised).
    """
    frame = progress(parents)
    if frame.empty:
        return pd.DataFrame(columns=["parents", "notional", "filled_pct", "schedule_pct",
                                     "slippage_bps", "alerts"]).rename_axis("portfolio")
    notional = frame["quantity"].abs() * frame["arrival_price"]
    filled = frame["filled"].abs() * frame["arrival_price"]
    work = pd.DataFrame({
        "portfolio": frame["portfolio"], "notional": notional, "filled": filled,
        "target": frame["target"].abs() * frame["arrival_price"],
        "cost": (frame["slippage_bps"].fillna(0.0) * filled),
        "alerted": frame["alerts"] != "",
    })
    g = work.groupby("portfolio")
    out = pd.DataFrame({
        "parents": g.size(),
        "notional": g["notional"].sum(),
        "filled_pct": 100.0 * g["filled"].sum() / g["notional"].sum(),
        "schedule_pct": 100.0 * g["target"].sum() / g["notional"].sum(),
        "slippage_bps": g["cost"].sum() / g["filled"].sum().replace(0.0, np.nan),
        "alerts": g["alerted"].sum().astype(int),
    })
    return out


def schedule_frame(parent: Order) -> pd.DataFrame:
    """The schedule against the fills, interval by interval (for a chart).

    Parameters
    ----------
    parent : Order
        With its plan's ``fills`` filled in (`ExecutionEngine.parents(with_fills=True)`).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``interval`` (1-based): ``target`` and ``filled``
        cumulative signed units, ``price`` the fills' average market price
        in the interval (NaN without fills).
    """
    plan = plan_of(parent)
    if plan is None:
        return pd.DataFrame(columns=["target", "filled", "price"]).rename_axis("interval")
    n = plan.intervals
    qty = np.zeros(n + 1)
    value = np.zeros(n + 1)
    for f in plan.fills:
        k = min(max(int(f.interval), 0), n)
        qty[k] += f.quantity
        value[k] += f.quantity * f.market_price
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(qty != 0, value / np.where(qty != 0, qty, 1.0), np.nan)
    return pd.DataFrame({"target": np.asarray(plan.schedule, dtype=float),
                         "filled": np.cumsum(qty)[1:], "price": price[1:]},
                        index=pd.RangeIndex(1, n + 1, name="interval"))
