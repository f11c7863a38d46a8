"""Build a `RebalanceProposal` for a portfolio or a group of portfolios.

`propose_rebalance` reads the registry (holdings, cash, prices, the group's
target allocation) and computes, without writing anything:

1. **Targets** per portfolio: an optimizer fitted on the returns window, or
   explicit ``target_weights``, or (groups only, neither given) each
   member's current mix.
2. **Cash transfers** (groups): each leaf portfolio's target NAV is its share
   of the group NAV, the product of the allocations down the group tree;
   `pmkit.rebalance.trades.allocation_transfers` moves cash, in whole cents,
   from members above target to members below it.
3. **Trades** per portfolio on its post-transfer NAV:
   `pmkit.rebalance.trades.plan_trades` (bands, whole lots, minimum size,
   sells first, buys fitted to the cash), costs from `CostModel`.
4. **Risk** before (current weights) and after (the weights the rounded
   trades leave), from `pmkit.rebalance.risk`.

Cost-aware optimizers
---------------------
When the optimizer takes `Constraints`, it is fitted on a copy whose
constraints carry the portfolio's current weights (over the optimizer's
universe, as fractions of the post-transfer NAV) and, unless the caller set
their own, ``cost_model.transaction_costs(market, universe, NAV, as_of)``:
the same linear + square-root impact model that prices the trade lines,
expressed in weights. An optimizer that refuses costs (maximum Sharpe, risk
budgeting, HRP raise `ValidationError` on ``constraints``) is refitted with
the current weights only, and ``info["optimizer"]["note"]`` says so.

The proposal is a value: persisting it, approving it and executing it are
the workflow service's job.
"""

from __future__ import annotations

import copy
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pmkit.errors import (
    AllocationError,
    ConfigError,
    CurrencyMismatchError,
    InsufficientDataError,
    LifecycleError,
    MissingPriceError,
    UnknownAssetError,
    ValidationError,
)
from pmkit.rebalance.risk import risk_snapshots
from pmkit.rebalance.trades import TradePlan, allocation_transfers, plan_trades
from pmkit.rebalance.types import CashTransfer, ProposalState, RebalanceProposal, TradeLine
from pmkit.validation import check_number

if TYPE_CHECKING:
    import xarray as xr

    from pmkit.execution import CostModel
    from pmkit.registry import Registry

__all__ = ["WEIGHT_TOLERANCE", "group_shares", "propose_rebalance"]

#: Target weights may sum to 1 within this (float noise); more is leverage.
WEIGHT_TOLERANCE = 1e-9
#: Optimizer weights within this of 0 (below) are solver round-off, not shorts.
_SOLVER_NOISE = 1e-8


def propose_rebalance(
    registry: Registry,
    scope: str,
    optimizer: Any = None,
    *,
    target_weights: Mapping[str, Any] | None = None,
    at: Any = None,
    universe: Sequence[str] | None = None,
    lookback: int = 756,
    cost_model: CostModel | None = None,
    no_trade_band: float = 0.0,
    min_trade_value: float = 0.0,
    cash_floor: float = 0.0,
    confidence: float = 0.95,
    allow_short: bool = False,
    reason: str = "manual",
    expires_in: timedelta | None = timedelta(days=1),
) -> RebalanceProposal:
    """Propose trades (and, for a group, cash transfers) that rebalance ``scope``.

    Parameters
    ----------
    registry : Registry
        With market data; its user is the proposer and needs TRADER
        (``"proposal.create"``) on ``scope``.
    scope : str
        A portfolio id, or a group id (every leaf portfolio under it trades).
    optimizer : pmkit.optimize.Optimizer, optional
        Fitted on the returns window of ``universe``, once per portfolio
        (cost-aware when it takes constraints; see the module docstring).
        The caller's object is not modified.
    target_weights : mapping, optional
        Instead of an optimizer: ``{asset: weight}`` for every portfolio, or
        ``{portfolio: {asset: weight}}`` naming every portfolio of the scope.
        Fractions of the (post-transfer) NAV summing to <= 1; the rest is cash.
    at : datetime-like, optional
        Market time of prices, holdings and the returns window: the last
        market time at or before it. Default: the last market time, with the
        holdings of the whole ledger (everything recorded so far).
    universe : sequence of str, optional
        Assets the optimizer chooses from. Default: the market's assets in
        the portfolios' currency with a return at every time of the window.
        Held assets outside it get target weight 0.
    lookback : int, default 756
        Daily returns in the window, ending at ``as_of`` inclusive (>= 30).
        The optimizer, the covariance of the risk figures and the VaR use it.
    cost_model : CostModel, optional
        Default ``CostModel()`` (its parameters are documented there).
    no_trade_band : float, default 0
        Absolute weight band (fraction of NAV) inside which an asset is not traded.
    min_trade_value : float, default 0
        Smallest trade notional kept (currency).
    cash_floor : float, default 0
        Least cash each portfolio keeps after its trades and their estimated
        costs (currency).
    confidence : float, default 0.95
        VaR confidence of the risk snapshots.
    allow_short : bool, default False
        Allow negative target weights and sales beyond the units held.
    reason : str, default "manual"
        Why the rebalance is proposed (a trigger's explanation).
    expires_in : timedelta or None, default 1 day
        Lifetime of the proposal from its creation (None: no expiry).

    Returns
    -------
    RebalanceProposal
        State PROPOSED, not stored.

    Raises
    ------
    NotFoundError, InvalidIdError
        ``scope`` is neither a portfolio nor a group.
    PermissionDenied
        The user may not create proposals on ``scope`` (checked first).
    ValidationError
        A bad argument (named), e.g. a negative band, target weights summing
        above 1, both or neither of ``optimizer`` and ``target_weights`` for a
        portfolio.
    UnknownAssetError
        A target or universe asset not in the market.
    AllocationError
        A group (or nested group) without a target allocation.
    LifecycleError
        A portfolio of the scope is not active.
    """
    kind = _scope_kind(registry, scope)
    registry.require("proposal.create", scope)
    from pmkit.execution import CostModel

    cost_model = CostModel() if cost_model is None else cost_model
    if not isinstance(cost_model, CostModel):
        raise ValidationError("cost_model", type(cost_model).__name__, "must be a CostModel")
    _check_arguments(
        kind, optimizer, target_weights, lookback, confidence, reason, expires_in,
        no_trade_band, min_trade_value, cash_floor, allow_short,
    )
    market = registry.market
    if market is None:
        raise ConfigError("registry.market", None, "proposals need a registry with market data")
    as_of = _as_of(market, at)
    pids = [scope] if kind == "portfolio" else registry.get_group_portfolios(scope)
    if not pids:
        raise ValidationError("scope", scope, "the group has no portfolios to rebalance")
    currency = _check_portfolios(registry, pids)
    shares = group_shares(registry, scope) if kind == "group" else {scope: 1.0}
    assets = [str(a) for a in market.indexes["asset"]]
    targets_given = (
        None if target_weights is None
        else _parse_targets(target_weights, pids, set(assets), allow_short)
    )
    universe_list = None if universe is None else _check_universe(universe, set(assets))

    quantities, cash = _holdings(registry, pids, at, as_of, assets)
    prices = market["close"].sel(time=as_of).to_series().reindex(assets)
    for p in pids:
        _check_prices(prices, [a for a, q in quantities[p].items() if q != 0], "held")
    navs = {p: cash[p] + sum(q * prices[a] for a, q in quantities[p].items()) for p in pids}

    transfers: list[CashTransfer] = []
    target_nav: dict[str, float] = {}
    if kind == "group":
        target_nav, transfers = allocation_transfers(navs, shares)
    flow = dict.fromkeys(pids, 0.0)
    for t in transfers:
        flow[t.source] -= t.amount
        flow[t.destination] += t.amount
    cash_post = {p: cash[p] + flow[p] for p in pids}
    nav_post = {p: navs[p] + flow[p] for p in pids}

    returns = _window(market, as_of, lookback)
    lots = (
        market["lot_size"].to_series().reindex(assets).astype(float)
        if "lot_size" in market.coords
        else pd.Series(1.0, index=assets)
    )

    opt_info: dict[str, Any] | None = None
    if targets_given is not None:
        targets = targets_given
        method = "target_weights"
    elif optimizer is not None:
        uni = universe_list or _default_universe(market, returns, currency)
        targets, opt_info = _optimizer_targets(
            optimizer, returns.sel(asset=uni), uni, quantities, prices, nav_post,
            cost_model, market, as_of, allow_short,
        )
        method = type(optimizer).__name__
    else:  # a group with neither: each member keeps its mix at its new size
        targets = {
            p: {a: q * prices[a] / navs[p] for a, q in quantities[p].items() if q != 0}
            for p in pids
        }
        method = "current_weights"
    for p in pids:
        _check_prices(prices, [a for a, w in targets[p].items() if w != 0], "targeted")

    sigma_cache: dict[str, float] = {}

    def sigma(asset: str) -> float:
        if asset not in sigma_cache:
            sigma_cache[asset] = cost_model.daily_volatility(market, asset, as_of)
        return sigma_cache[asset]

    plans: dict[str, TradePlan] = {}
    for p in pids:
        held = {a for a, q in quantities[p].items() if q != 0}
        plan_assets = [a for a in assets if a in held or targets[p].get(a, 0.0) != 0]
        px = np.array([float(prices[a]) for a in plan_assets])
        plans[p] = plan_trades(
            plan_assets,
            [quantities[p].get(a, 0.0) for a in plan_assets],
            cash_post[p],
            px,
            [float(lots[a]) for a in plan_assets],
            [targets[p].get(a, 0.0) for a in plan_assets],
            no_trade_band=no_trade_band,
            min_trade_value=min_trade_value,
            cash_floor=cash_floor,
            costs=_cost_function(cost_model, plan_assets, px, sigma),
            allow_short=allow_short,
        )

    trades = _trade_lines(plans, cost_model, sigma)
    current = {
        p: {a: float(q * prices[a] / navs[p]) for a, q in quantities[p].items() if q != 0}
        for p in pids
    }
    after = {p: _nonzero(plans[p].assets, plans[p].weights_after) for p in pids}
    risk_before = risk_snapshots(current, returns, market, confidence=confidence)
    risk_after = risk_snapshots(after, returns, market, confidence=confidence)

    created = datetime.now(UTC).replace(tzinfo=None)
    info: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "window": {
            "start": pd.Timestamp(returns.indexes["time"][0]).isoformat(),
            "end": pd.Timestamp(returns.indexes["time"][-1]).isoformat(),
            "periods": int(returns.sizes["time"]),
        },
        "currency": currency,
        "no_trade_band": float(no_trade_band),
        "min_trade_value": float(min_trade_value),
        "cash_floor": float(cash_floor),
        "allow_short": bool(allow_short),
        "optimizer": opt_info,
        "nav": {p: float(navs[p]) for p in pids},
        "nav_planned": {p: float(plans[p].nav) for p in pids},
        "cash_before": {p: float(cash[p]) for p in pids},
        "cash_after": {p: float(plans[p].cash_after) for p in pids},
        "weights_after": after,
        "estimated_cost": {p: plans[p].total_cost for p in pids},
        "skipped": {p: dict(plans[p].skipped) for p in pids},
        "scaled_buys": {p: dict(plans[p].scaled) for p in pids},
        "cash_raised": {p: dict(plans[p].raised) for p in pids},
        "odd_lots": {p: dict(plans[p].odd_lots) for p in pids},
        "buy_scale": {p: float(plans[p].buy_scale) for p in pids},
        "cash_shortfall": {p: float(plans[p].cash_shortfall) for p in pids},
        "turnover_basis": (
            "sum |w_after - w_before| / 2 of the rounded trades, w_before on the NAV the"
            " trades were sized on (after transfers), w_after on the NAV after costs"
        ),
    }
    if kind == "group":
        info["allocation"] = {p: float(s) for p, s in shares.items()}
        info["group_nav"] = float(sum(navs.values()))
        info["target_nav"] = target_nav
    return RebalanceProposal(
        id="rb-" + uuid.uuid4().hex,
        scope=scope,
        scope_kind=kind,
        portfolios=list(pids),
        state=ProposalState.PROPOSED,
        created_by=registry.user,
        created_at=created.isoformat(),
        expires_at=None if expires_in is None else (created + expires_in).isoformat(),
        as_of=as_of.isoformat(),
        reason=reason,
        method=method,
        target_weights={p: {a: float(w) for a, w in targets[p].items() if w != 0} for p in pids},
        current_weights=current,
        trades=trades,
        transfers=transfers,
        turnover={p: plans[p].turnover for p in pids},
        risk_before=risk_before,
        risk_after=risk_after,
        cost_model=cost_model.to_dict(),
        info=info,
    )


# -- scope and arguments ----------------------------------------------------------------


def _scope_kind(registry: Registry, scope: Any) -> str:
    from pmkit.registry.ids import validate_id

    validate_id(scope, "scope")
    return registry.view().target_kind(scope)


def _number(name: str, value: Any, low: float = 0.0) -> float:
    return check_number(value, name, minimum=low)


def _check_arguments(
    kind: str,
    optimizer: Any,
    target_weights: Any,
    lookback: Any,
    confidence: Any,
    reason: Any,
    expires_in: Any,
    no_trade_band: Any,
    min_trade_value: Any,
    cash_floor: Any,
    allow_short: Any,
) -> None:
    _number("no_trade_band", no_trade_band)
    _number("min_trade_value", min_trade_value)
    _number("cash_floor", cash_floor)
    if isinstance(lookback, bool) or not isinstance(lookback, int | np.integer) or lookback < 30:
        raise ValidationError("lookback", lookback, "must be an integer >= 30 (daily returns)")
    ok = isinstance(confidence, int | float) and not isinstance(confidence, bool)
    if not ok or not 0.0 < float(confidence) < 1.0:
        raise ValidationError("confidence", confidence, "must be a number in (0, 1), e.g. 0.95")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationError("reason", reason, "must be a non-empty string")
    if expires_in is not None and (
        not isinstance(expires_in, timedelta) or expires_in <= timedelta(0)
    ):
        raise ValidationError("expires_in", expires_in, "must be a positive timedelta or None")
    if not isinstance(allow_short, bool):
        raise ValidationError("allow_short", allow_short, "must be True or False")
    if optimizer is not None and not callable(getattr(optimizer, "fit", None)):
        raise ValidationError("optimizer", type(optimizer).__name__, "must have a fit(returns)")
    if optimizer is not None and target_weights is not None:
        raise ValidationError(
            "target_weights", "given with an optimizer", "give an optimizer or target weights"
        )
    if optimizer is None and target_weights is None and kind == "portfolio":
        raise ValidationError(
            "optimizer", None, "give an optimizer or target_weights for a portfolio"
        )


def _as_of(market: xr.Dataset, at: Any) -> pd.Timestamp:
    from pmkit.model import market_time_at

    return market_time_at(market, at)


def _check_portfolios(registry: Registry, pids: Sequence[str]) -> str:
    infos = [registry.portfolio(p) for p in pids]
    for info in infos:
        if info.status != "active":
            raise LifecycleError(info.id, info.status, "propose a rebalance of")
    currencies = sorted({i.currency for i in infos})
    if len(currencies) > 1:
        raise CurrencyMismatchError(
            "scope", [i.id for i in infos], f"members are in {currencies}; one currency needed"
        )
    return currencies[0]


def group_shares(registry: Registry, group_id: str) -> dict[str, float]:
    """Each leaf portfolio's share of a group's NAV: allocations multiplied down the tree.

    Parameters
    ----------
    registry : Registry
    group_id : str

    Returns
    -------
    dict portfolio -> float
        Fractions summing to 1 (a portfolio reached twice adds up its shares).

    Raises
    ------
    AllocationError
        The group, or a group nested in it, has no target allocation.
    """
    shares: dict[str, float] = {}

    view = registry.view()

    def walk(gid: str, weight: float, seen: tuple[str, ...]) -> None:
        g = registry.group(gid)
        if g.allocation is None:
            raise AllocationError(
                f"allocation[{gid}]", None,
                "the group has no target allocation (set one with Registry.set_allocation)",
            )
        for member, w in g.allocation.items():
            rec = view.record("group", member)
            if rec is not None and rec.status != "deleted" and member not in seen:
                walk(member, weight * w, (*seen, member))
            else:
                shares[member] = shares.get(member, 0.0) + weight * w

    walk(group_id, 1.0, (group_id,))
    return shares


def _check_weights(
    name: str, weights: Any, known: set[str], allow_short: bool
) -> dict[str, float]:
    if not isinstance(weights, Mapping):
        raise ValidationError(name, type(weights).__name__, "must be a mapping asset -> weight")
    out: dict[str, float] = {}
    for asset, w in weights.items():
        if asset not in known:
            raise UnknownAssetError(f"{name}[{asset}]", asset, "is not an asset of the market")
        x = _number(f"{name}[{asset}]", w, low=-math.inf)
        if x < 0 and not allow_short:
            raise ValidationError(f"{name}[{asset}]", w, "must be >= 0 (allow_short=False)")
        out[str(asset)] = x
    total = sum(out.values())
    if total > 1.0 + WEIGHT_TOLERANCE:
        raise ValidationError(name, total, "weights must sum to <= 1 (the rest is cash)")
    return out


def _parse_targets(
    target_weights: Any, pids: Sequence[str], known: set[str], allow_short: bool
) -> dict[str, dict[str, float]]:
    if not isinstance(target_weights, Mapping):
        raise ValidationError(
            "target_weights", type(target_weights).__name__, "must be a mapping"
        )
    values = list(target_weights.values())
    if not (values and all(isinstance(v, Mapping) for v in values)):
        w = _check_weights("target_weights", target_weights, known, allow_short)
        return {p: dict(w) for p in pids}
    for p in target_weights:
        if p not in pids:
            raise ValidationError(f"target_weights[{p}]", p, "is not a portfolio of the scope")
    missing = [p for p in pids if p not in target_weights]
    if missing:
        raise ValidationError("target_weights", missing, "needs targets for every portfolio")
    return {
        p: _check_weights(f"target_weights[{p}]", target_weights[p], known, allow_short)
        for p in pids
    }


def _check_universe(universe: Any, known: set[str]) -> list[str]:
    if isinstance(universe, str) or not isinstance(universe, Sequence | np.ndarray):
        raise ValidationError("universe", universe, "must be a sequence of asset labels")
    out = [str(a) for a in universe]
    for a in out:
        if a not in known:
            raise UnknownAssetError(f"universe[{a}]", a, "is not an asset of the market")
    if len(set(out)) != len(out) or not out:
        raise ValidationError("universe", out, "must list distinct assets, at least one")
    return out


def _check_prices(prices: pd.Series, assets: Sequence[str], what: str) -> None:
    for a in assets:
        p = float(prices[a])
        if not (math.isfinite(p) and p > 0):
            raise MissingPriceError(f"price[{a}]", p, f"a {what} asset needs a close at as_of")


# -- market data ----------------------------------------------------------------------------


def _holdings(
    registry: Registry, pids: Sequence[str], at: Any, as_of: pd.Timestamp, assets: list[str]
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Units and cash per portfolio: the whole ledger for ``at=None``, else as of ``as_of``."""
    if at is None:
        pos = {p: registry.positions(p) for p in pids}
        return (
            {p: {a: float(q) for a, q in pos[p].quantities.items() if q != 0} for p in pids},
            {p: float(pos[p].cash) for p in pids},
        )
    h = registry.holdings(pids, times=[as_of]).isel(time=0)
    q = h["quantity"].transpose("portfolio", "asset")
    quantities = {
        p: {
            str(a): float(x)
            for a, x in zip(q["asset"].values.tolist(), q.sel(portfolio=p).values, strict=True)
            if x != 0
        }
        for p in pids
    }
    return quantities, {p: float(h["cash"].sel(portfolio=p)) for p in pids}


def _window(market: xr.Dataset, as_of: pd.Timestamp, lookback: int) -> xr.DataArray:
    from pmkit.model import simple_returns

    closes = market.sel(time=slice(None, as_of))
    if closes.sizes["time"] < lookback + 1:
        raise InsufficientDataError(
            "lookback", lookback, f"only {closes.sizes['time']} closes up to {as_of.date()}"
        )
    return simple_returns(closes.isel(time=slice(-(lookback + 1), None))).isel(
        time=slice(1, None)
    )


def _default_universe(market: xr.Dataset, returns: xr.DataArray, currency: str) -> list[str]:
    full = returns.notnull().all("time").values
    same = (
        market["currency"].values == currency
        if "currency" in market.coords
        else np.ones(full.shape, dtype=bool)
    )
    out = [str(a) for a, ok in zip(returns["asset"].values, full & same, strict=True) if ok]
    if not out:
        raise InsufficientDataError("universe", [], "no asset has a full returns window")
    return out


# -- targets ------------------------------------------------------------------------------


def _optimizer_targets(
    optimizer: Any,
    returns: xr.DataArray,
    universe: list[str],
    quantities: Mapping[str, Mapping[str, float]],
    prices: pd.Series,
    nav: Mapping[str, float],
    cost_model: CostModel,
    market: xr.Dataset,
    as_of: pd.Timestamp,
    allow_short: bool,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    from pmkit.optimize import Constraints, Mixed

    name = type(optimizer).__name__
    cons = getattr(optimizer, "constraints", None)
    takes = isinstance(cons, Constraints) and not isinstance(optimizer, Mixed)
    note = "" if takes else f"{name} takes no constraints: fitted without current weights or costs"
    targets: dict[str, dict[str, float]] = {}
    objective: dict[str, float] = {}
    solver: dict[str, str] = {}
    costs_used = takes
    result_method = name
    for p, v in nav.items():
        fit_with = copy.copy(optimizer)
        if takes:
            current = {
                a: quantities[p][a] * float(prices[a]) / v for a in universe if a in quantities[p]
            }
            costs = cons.costs or cost_model.transaction_costs(market, universe, v, as_of)
            fit_with.constraints = replace(cons, current_weights=current, costs=costs)
            try:
                result = fit_with.fit(returns)
            except ValidationError as exc:
                if not exc.field.startswith("constraints"):
                    raise
                note = f"{name} refused transaction costs ({exc}); fitted without them"
                costs_used = False
                fit_with.constraints = replace(cons, current_weights=current)
                result = fit_with.fit(returns)
        else:
            result = fit_with.fit(returns)
        targets[p] = _clean_weights(name, result.weights, allow_short)
        objective[p] = float(result.objective)
        solver[p] = str(result.solver)
        result_method = str(result.method)
    info = {
        "class": name,
        "method": result_method,
        "objective": objective,
        "solver": solver,
        "costs_in_optimizer": costs_used,
        "universe": universe,
        "note": note,
    }
    return targets, info


def _clean_weights(name: str, weights: xr.DataArray, allow_short: bool) -> dict[str, float]:
    w = np.asarray(weights.values, dtype=float)
    labels = [str(a) for a in weights["asset"].values]
    if not allow_short:
        if (w < -_SOLVER_NOISE).any():
            raise ValidationError(
                "allow_short", False, f"{name} returned short weights; allow them or constrain it"
            )
        w = np.maximum(w, 0.0)
    total = float(w.sum())
    if total > 1.0 + WEIGHT_TOLERANCE:
        if total > 1.0 + 1e-6:
            raise ValidationError(
                "optimizer", name, f"weights sum to {total:.6g} > 1 (leverage is not supported)"
            )
        w = w / total  # solver round-off above a full investment
    return {a: float(x) for a, x in zip(labels, w, strict=True) if x != 0}


# -- trades ---------------------------------------------------------------------------------


def _cost_function(
    cost_model: CostModel, assets: Sequence[str], prices: np.ndarray, sigma: Any
) -> Any:
    adv = [cost_model.adv_of(a) for a in assets]

    def costs(q: np.ndarray) -> np.ndarray:
        out = np.zeros(len(assets))
        for i in np.flatnonzero(q):
            out[i] = cost_model.breakdown(q[i], prices[i], sigma(assets[i]), adv[i]).total
        return out

    return costs


def _trade_lines(
    plans: Mapping[str, TradePlan], cost_model: CostModel, sigma: Any
) -> list[TradeLine]:
    """Every plan's trades as lines with their cost breakdowns: all sales, then all buys."""
    sells: list[TradeLine] = []
    buys: list[TradeLine] = []
    for p, plan in plans.items():
        for i in plan.order:
            a = plan.assets[i]
            q, px = float(plan.trades[i]), float(plan.prices[i])
            b = cost_model.breakdown(q, px, sigma(a), cost_model.adv_of(a))
            line = TradeLine(p, a, q, px, b.commission, b.spread, b.impact)
            (sells if q < 0 else buys).append(line)
    return sells + buys


def _nonzero(assets: Sequence[str], values: np.ndarray) -> dict[str, float]:
    return {a: float(x) for a, x in zip(assets, values, strict=True) if x != 0}
