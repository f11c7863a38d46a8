"""From target weights to a whole-lot trade list that never overdraws cash.

Pure numpy functions: arrays in (one portfolio's holdings, cash, prices, lot
sizes, target weights), a `TradePlan` out. `pmkit.rebalance.builder` feeds
them from the registry and turns the plan into `TradeLine` records.

The rules, in the order they apply
----------------------------------
Notation: ``q0`` units held, ``c0`` cash, ``p`` reference prices, ``L`` lot
sizes, ``w*`` target weights (fractions of NAV; ``1 - sum(w*)`` is the target
cash), ``NAV = c0 + q0·p`` and ``w0 = q0 p / NAV``.

1. **Ideal trade.** ``d = w* NAV / p - q0`` units.
2. **No-trade band.** An asset with ``|w* - w0| <= no_trade_band`` (an
   absolute fraction of NAV: 0.01 means one percentage point) is not traded.
3. **Whole lots, toward zero.** Every trade is rounded toward zero to whole
   lots: ``sign(d) * floor(|d| / L) * L`` (a 1e-9-lot tolerance absorbs
   floating-point error, so 599.9999999 units with ``L = 1`` is 600). A trade
   never exceeds its ideal size, so a long-only sale never sells more than is
   held; selling a whole position that is not a whole number of lots leaves
   the odd lot (reported). Shorting needs ``allow_short=True``.
4. **Minimum trade value.** A rounded trade with ``|q| p < min_trade_value``
   (currency) is dropped.
5. **Sells first.** Sales raise cash before any purchase spends it. When the
   cash after the sales and their costs is still below ``cash_floor`` (a cash
   transfer out of the portfolio, or cash already short), more whole lots are
   sold, the most overweight held asset (largest ``w0 - w*``) first, never
   beyond the units held, until it is not; bands and the minimum trade size
   give way to this, because a proposal must never overdraw.
6. **Buys fit the cash.** If the buys and all costs would take cash below
   ``cash_floor``, every buy is scaled by the same factor ``s`` (the largest
   in [0, 1], found by bisection) and re-rounded *down* to whole lots (and
   the minimum trade value re-applied), so that
   ``c0 - q·p - sum(costs(q)) >= cash_floor``.

Costs come from a callable ``costs(q) -> per-asset currency`` (the builder
passes `pmkit.execution.CostModel`); it must be zero for ``q = 0`` and not
decrease as ``|q|`` grows, which makes step 6's feasibility monotone in ``s``.
A sale whose estimated cost is at least its proceeds (with the square-root
law, a trade of hundreds of days' volume) is dropped (reason ``"cost"``), so
sales only ever add cash. Hence, whenever the cash starts at or above
``cash_floor``, it ends there too; when it starts below, step 5 gets it
back unless every held lot sold together cannot (``cash_shortfall`` > 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pmkit.errors import AllocationError, ValidationError
from pmkit.rebalance.types import CashTransfer
from pmkit.validation import check_number

__all__ = [
    "LOT_TOLERANCE",
    "CostFunction",
    "TradePlan",
    "allocation_transfers",
    "lots_toward_zero",
    "plan_trades",
]

#: Fraction of a lot forgiven when rounding, so float noise never loses a whole lot.
LOT_TOLERANCE = 1e-9

CostFunction = Callable[[np.ndarray], np.ndarray]
"""``costs(q) -> c``: estimated cost in currency of trading ``q[i]`` units of each asset."""


def _zero_costs(q: np.ndarray) -> np.ndarray:
    return np.zeros_like(q, dtype=float)


def lots_toward_zero(units: Any, lot_sizes: Any) -> np.ndarray:
    """Round signed units toward zero to whole lots.

    Parameters
    ----------
    units : array-like
        Signed units (buy > 0).
    lot_sizes : array-like
        Units per lot (> 0), broadcast against ``units``.

    Returns
    -------
    ndarray
        ``sign(u) * floor(|u| / L + LOT_TOLERANCE) * L``.
    """
    u = np.asarray(units, dtype=float)
    lots = np.asarray(lot_sizes, dtype=float)
    return np.sign(u) * np.floor(np.abs(u) / lots + LOT_TOLERANCE) * lots


@dataclass(frozen=True)
class TradePlan:
    """One portfolio's whole-lot trades and their consequences.

    Attributes
    ----------
    assets : tuple of str
    holdings : ndarray
        Units held before the trades.
    trades : ndarray
        Signed units per asset (buy > 0), whole lots; 0 where nothing trades.
    prices : ndarray
        Reference price per unit (currency).
    costs : ndarray
        Estimated cost per asset (currency) of ``trades``.
    nav : float
        NAV the trades were sized on, ``c0 + q0·p`` (currency).
    cash_before, cash_after : float
        Cash before and after the trades and their costs (currency).
    weights_before, weights_after : ndarray
        ``q0 p / nav`` and ``(q0 + trades) p / nav_after`` (fractions).
    targets : ndarray
        The target weights the plan aimed at (fractions of ``nav``).
    buy_scale : float
        Factor applied to every buy to respect ``cash_floor`` (1 = none needed).
    skipped : dict
        ``asset -> reason`` for every asset with a non-zero ideal trade that
        does not trade at all: ``"band"``, ``"below one lot"``,
        ``"min_trade_value"``, ``"cost"`` (a sale costing more than it brings) or
        ``"cash"`` (a buy the cash could not fund).
    scaled : dict
        ``asset -> units`` wanted, for buys cut (not dropped) to fit the cash.
    raised : dict
        ``asset -> units`` sold beyond the ideal to reach ``cash_floor``.
    odd_lots : dict
        ``asset -> units`` left over by a full exit that is not whole lots.
    cash_shortfall : float
        How far ``cash_after`` is below ``cash_floor`` when even selling
        every held lot could not reach it (0 normally).
    """

    assets: tuple[str, ...]
    holdings: np.ndarray
    trades: np.ndarray
    prices: np.ndarray
    costs: np.ndarray
    nav: float
    cash_before: float
    cash_after: float
    weights_before: np.ndarray
    weights_after: np.ndarray
    targets: np.ndarray
    buy_scale: float = 1.0
    skipped: dict[str, str] = field(default_factory=dict)
    scaled: dict[str, float] = field(default_factory=dict)
    raised: dict[str, float] = field(default_factory=dict)
    odd_lots: dict[str, float] = field(default_factory=dict)
    cash_shortfall: float = 0.0

    @property
    def order(self) -> list[int]:
        """Indices of the traded assets: sells first, then buys (each in asset order)."""
        sells = [i for i in range(len(self.assets)) if self.trades[i] < 0]
        buys = [i for i in range(len(self.assets)) if self.trades[i] > 0]
        return sells + buys

    @property
    def total_cost(self) -> float:
        """Sum of the estimated costs (currency)."""
        return float(self.costs.sum())

    @property
    def nav_after(self) -> float:
        """NAV after the trades at the reference prices: ``nav - total_cost`` (currency)."""
        return float(self.cash_after + (self.holdings + self.trades) @ self.prices)

    @property
    def cash_weight_after(self) -> float:
        """Cash after the trades as a fraction of `nav_after`."""
        return float(self.cash_after / self.nav_after) if self.nav_after else 0.0

    @property
    def turnover(self) -> float:
        """One-way turnover ``sum |w_after - w_before| / 2`` of the rounded trades (fraction)."""
        return float(np.abs(self.weights_after - self.weights_before).sum() / 2.0)


def _array(name: str, value: Any, n: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, value, "must be an array of numbers") from exc
    if n is not None and arr.shape[0] != n:
        raise ValidationError(name, arr.shape[0], f"must have one value per asset ({n})")
    return arr


def _number(name: str, value: Any, *, low: float | None = 0.0) -> float:
    return check_number(value, name, minimum=low)


def _check_inputs(
    assets: Sequence[str],
    quantities: Any,
    cash: Any,
    prices: Any,
    lot_sizes: Any,
    target_weights: Any,
    allow_short: bool,
) -> tuple[tuple[str, ...], np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    names = tuple(str(a) for a in assets)
    if len(set(names)) != len(names):
        raise ValidationError("assets", names, "labels must be unique")
    n = len(names)
    q0 = _array("quantities", quantities, n)
    p = _array("prices", prices, n)
    lots = _array("lot_sizes", lot_sizes, n)
    wt = _array("target_weights", target_weights, n)
    c0 = _number("cash", cash, low=None)
    for name, arr in (("quantities", q0), ("target_weights", wt)):
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValidationError(f"{name}[{names[bad[0]]}]", arr[bad[0]], "must be finite")
    bad = np.flatnonzero(~(np.isfinite(p) & (p > 0)))
    if bad.size:
        raise ValidationError(f"prices[{names[bad[0]]}]", p[bad[0]], "must be finite and > 0")
    bad = np.flatnonzero(~(np.isfinite(lots) & (lots > 0)))
    if bad.size:
        raise ValidationError(f"lot_sizes[{names[bad[0]]}]", lots[bad[0]], "must be > 0")
    if not allow_short:
        bad = np.flatnonzero(wt < 0)
        if bad.size:
            raise ValidationError(
                f"target_weights[{names[bad[0]]}]", wt[bad[0]], "must be >= 0 (allow_short=False)"
            )
    return names, q0, c0, p, lots, wt


def plan_trades(
    assets: Sequence[str],
    quantities: Any,
    cash: float,
    prices: Any,
    lot_sizes: Any,
    target_weights: Any,
    *,
    no_trade_band: float = 0.0,
    min_trade_value: float = 0.0,
    cash_floor: float = 0.0,
    costs: CostFunction | None = None,
    allow_short: bool = False,
) -> TradePlan:
    """Whole-lot trades from holdings to target weights (rules in the module docstring).

    Parameters
    ----------
    assets : sequence of str
        Asset labels, in the order of the arrays.
    quantities : array-like
        Units held now.
    cash : float
        Cash now (currency); may be negative, e.g. after a transfer out.
    prices : array-like
        Reference price per unit (currency, > 0).
    lot_sizes : array-like
        Units per lot (> 0).
    target_weights : array-like
        Target fraction of NAV per asset; ``1 - sum`` is the target cash.
    no_trade_band : float, default 0
        Absolute weight band (fraction of NAV) inside which an asset is not traded.
    min_trade_value : float, default 0
        Smallest trade notional kept (currency).
    cash_floor : float, default 0
        Least cash left after the trades and their estimated costs (currency).
    costs : callable, optional
        ``costs(q) -> ndarray`` estimated cost per asset in currency of trading
        ``q`` units (zero at ``q = 0``, non-decreasing in ``|q|``). Default: free.
    allow_short : bool, default False
        Allow negative target weights, and sales beyond the units held.

    Returns
    -------
    TradePlan

    Raises
    ------
    ValidationError
        A bad array (named, with the asset), a negative band, minimum or floor,
        or a NAV <= 0.
    """
    names, q0, c0, p, lots, wt = _check_inputs(
        assets, quantities, cash, prices, lot_sizes, target_weights, allow_short
    )
    band = _number("no_trade_band", no_trade_band)
    min_value = _number("min_trade_value", min_trade_value)
    floor = _number("cash_floor", cash_floor)
    cost_fn = costs or _zero_costs
    nav = float(c0 + q0 @ p)
    if not nav > 0:
        raise ValidationError("nav", nav, "cash plus holdings must be > 0 to size trades")

    def spend(q: np.ndarray) -> float:
        """Cash used by trades ``q``: notional bought minus sold, plus every cost."""
        return float(q @ p + np.asarray(cost_fn(q), dtype=float).sum())

    w0 = q0 * p / nav
    ideal = wt * nav / p - q0
    wanted = np.abs(ideal) * p > 1e-9 * nav
    in_band = np.abs(wt - w0) <= band + 1e-12
    q = np.where(in_band, 0.0, lots_toward_zero(ideal, lots))
    if not allow_short:
        # never sell more whole lots than are held (a long book has no shorts to open)
        held_lots = lots_toward_zero(np.maximum(q0, 0.0), lots)
        q = np.maximum(q, -held_lots)
    small = (q != 0) & (np.abs(q) * p < min_value)
    q = np.where(small, 0.0, q)

    skipped: dict[str, str] = {}
    for i in np.flatnonzero(wanted & (q == 0)):
        skipped[names[i]] = (
            "band" if in_band[i] else "min_trade_value" if small[i] else "below one lot"
        )

    sells = np.minimum(q, 0.0)
    # a sale whose own cost eats its proceeds (a trade of hundreds of days' volume) cannot
    # help the cash: it is dropped rather than allowed to drain it
    losing = (sells < 0) & (np.asarray(cost_fn(sells), dtype=float) >= -sells * p)
    for i in np.flatnonzero(losing):
        skipped[names[i]] = "cost"
    sells = np.where(losing, 0.0, sells)
    q = np.where(losing, 0.0, q)
    raised: dict[str, float] = {}
    if c0 - spend(sells) < floor:
        candidates = np.argsort(-(w0 - wt), kind="stable")
        sells, extra = _raise_cash(sells, q0, c0, p, lots, candidates, floor, spend, allow_short)
        raised = {names[i]: u for i, u in extra.items()}
        for i in extra:
            skipped.pop(names[i], None)
            if q[i] > 0:  # it was to be bought: the cash need wins
                q[i] = 0.0
    buys = np.maximum(q, 0.0)
    scale = 1.0
    scaled: dict[str, float] = {}
    if buys.any() and c0 - spend(sells + buys) < floor:
        wanted_buys = buys
        scale, buys = _fit_buys(buys, lots, p, min_value, lambda b: c0 - spend(sells + b) >= floor)
        for i in np.flatnonzero(buys < wanted_buys):
            if buys[i] == 0:
                skipped[names[i]] = "cash"
            else:
                scaled[names[i]] = float(wanted_buys[i])
    trades = sells + buys

    exits = (wt == 0) & (q0 > 0) & ~in_band
    leftover = q0 + trades
    odd = {names[i]: float(leftover[i]) for i in np.flatnonzero(exits & (leftover > 0))}
    cost_arr = np.asarray(cost_fn(trades), dtype=float)
    cash_after = float(c0 - trades @ p - cost_arr.sum())
    nav_after = float(cash_after + (q0 + trades) @ p)
    return TradePlan(
        assets=names,
        holdings=q0,
        trades=trades,
        prices=p,
        costs=cost_arr,
        nav=nav,
        cash_before=c0,
        cash_after=cash_after,
        weights_before=w0,
        weights_after=(q0 + trades) * p / nav_after,
        targets=wt,
        buy_scale=scale,
        skipped=skipped,
        scaled=scaled,
        raised=raised,
        odd_lots=odd,
        cash_shortfall=max(floor - cash_after, 0.0),
    )


def _raise_cash(
    sells: np.ndarray,
    q0: np.ndarray,
    c0: float,
    p: np.ndarray,
    lots: np.ndarray,
    candidates: np.ndarray,
    floor: float,
    spend: Callable[[np.ndarray], float],
    allow_short: bool,
) -> tuple[np.ndarray, dict[int, float]]:
    """Sell more whole lots of ``candidates``, in order, until cash reaches ``floor``."""
    sells = sells.copy()
    raised: dict[int, float] = {}
    held = np.maximum(q0, 0.0)
    for i in candidates:
        if c0 - spend(sells) >= floor:
            break
        before = float(sells[i])
        available = np.inf if allow_short else float(lots_toward_zero(held[i] + before, lots[i]))
        # the first guess ignores costs; more lots follow while costs keep cash short
        need = (floor - (c0 - spend(sells))) / (p[i] * lots[i])
        step = min(math.ceil(need - LOT_TOLERANCE) * lots[i], available)
        while step > 0:
            sells[i] = before - step
            if c0 - spend(sells) >= floor or step >= available:
                break
            step = min(step + lots[i], available)
        if sells[i] != before:
            raised[int(i)] = float(before - sells[i])
    return sells, raised


def _fit_buys(
    buys: np.ndarray,
    lots: np.ndarray,
    p: np.ndarray,
    min_value: float,
    ok: Callable[[np.ndarray], bool],
) -> tuple[float, np.ndarray]:
    """Largest common scale ``s`` of the buys (re-rounded down) that keeps cash above the floor."""

    def scaled(s: float) -> np.ndarray:
        b = lots_toward_zero(buys * s, lots)
        return np.where(b * p < min_value, 0.0, b)

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if ok(scaled(mid)):
            lo = mid
        else:
            hi = mid
    return lo, scaled(lo)


def allocation_transfers(
    navs: Mapping[str, float], shares: Mapping[str, float]
) -> tuple[dict[str, float], list[CashTransfer]]:
    """Cash transfers that bring member NAVs to their shares of the group NAV.

    Work is in whole cents so the transfers conserve cash exactly: each
    member's target is ``share * group NAV`` in cents, rounded by largest
    remainder so the targets add up to the group's NAV in cents; then the
    largest surplus pays the largest deficit, greedily, until every member
    is on target.

    Parameters
    ----------
    navs : mapping portfolio -> float
        Member NAVs now (currency).
    shares : mapping portfolio -> float
        Target share of the group NAV per member (fractions >= 0 summing to 1).

    Returns
    -------
    targets : dict portfolio -> float
        Target NAV per member (currency, whole cents).
    transfers : list of CashTransfer
        ``source -> destination`` amounts (> 0, whole cents); each member's
        NAV rounded to cents plus its net transfer is exactly its target.

    Raises
    ------
    AllocationError
        Shares that do not cover exactly the members, are negative, or do not sum to 1.
    """
    if set(navs) != set(shares):
        extra = sorted(set(navs) ^ set(shares))
        raise AllocationError("allocation", extra, "shares must name exactly the members")
    members = list(navs)
    share = np.array([float(shares[m]) for m in members])
    if (share < 0).any() or not np.isfinite(share).all() or abs(share.sum() - 1.0) > 1e-9:
        raise AllocationError("allocation", dict(shares), "shares must be >= 0 and sum to 1")
    cents = np.array([round(float(navs[m]) * 100) for m in members], dtype=np.int64)
    total = int(cents.sum())
    exact = share * total
    target = np.floor(exact).astype(np.int64)
    rest = total - int(target.sum())
    for k in np.argsort(-(exact - target), kind="stable")[:rest]:
        target[k] += 1
    gap = {m: int(t - c) for m, t, c in zip(members, target, cents, strict=True)}
    payers = sorted((m for m in members if gap[m] < 0), key=lambda m: gap[m])
    takers = sorted((m for m in members if gap[m] > 0), key=lambda m: -gap[m])
    transfers: list[CashTransfer] = []
    while payers and takers:
        src, dst = payers[0], takers[0]
        amount = min(-gap[src], gap[dst])
        transfers.append(CashTransfer(src, dst, amount / 100.0))
        gap[src] += amount
        gap[dst] -= amount
        if gap[src] == 0:
            payers.pop(0)
        if gap[dst] == 0:
            takers.pop(0)
    return {m: int(t) / 100.0 for m, t in zip(members, target, strict=True)}, transfers
