"""Cross-portfolio allocation: split a group's capital between its members.

A group's direct members (portfolios and child groups) are treated as the
assets of an ordinary optimization problem. Each member's per-period return
series is its daily time-weighted (Modified Dietz) return, computed from the
ledger and the market closes, so deposits and withdrawals are not counted as
performance; a child group's series is the return of its consolidated value
(every portfolio under it counted once). The optimizer's weights become the
group's target allocation, written through `pmkit.registry.Registry.set_allocation`,
so the registry's permissions, validation, audit and events apply.

`allocate` is the pure step (returns in, weights out); `member_returns` builds
the return series from a registry; `allocate_group` does both and writes.

Ragged histories are handled by one explicit policy: a member has a return
observation on a day only when capital was invested in it (the Modified
Dietz base ``V[t-1] + w F[t]`` is non-zero), and the optimizer sees only the
days on which *every* member has one (listwise), so every member's mean and
covariance come from the same window. A member with fewer than
``min_observations`` observations, or a common window shorter than that, raises
`InsufficientDataError` naming the member(s) responsible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.errors import (
    AllocationError,
    ConfigError,
    CurrencyMismatchError,
    InsufficientDataError,
    NotFoundError,
    PermissionDenied,
    ValidationError,
)
from pmkit.optimize.base import Optimizer
from pmkit.optimize.constraints import Constraints
from pmkit.optimize.mean_variance import MaximumSharpe, MaximumUtility, MinimumVariance
from pmkit.optimize.result import OptimizationResult
from pmkit.optimize.risk_parity import EqualRiskContribution, RiskBudgeting

if TYPE_CHECKING:
    from pmkit.registry import Registry

__all__ = [
    "ALLOCATION_METHODS",
    "GroupAllocation",
    "allocate",
    "allocate_group",
    "member_returns",
    "to_allocation",
]

#: Method names accepted by `allocate` and `allocate_group` (or pass an `Optimizer`).
ALLOCATION_METHODS: tuple[str, ...] = ("risk_parity", "min_variance", "max_sharpe", "max_utility")

#: Negative weights down to this are solver round-off and become 0; below it they are shorts.
_NEGATIVE_NOISE = 1e-8
#: Weights may sum to 1 within this before renormalization; more means cash was left over.
_BUDGET_NOISE = 1e-6


def _optimizer(
    method: str | Optimizer, constraints: Constraints | None, options: Mapping[str, Any]
) -> Optimizer:
    """The optimizer a method name (with its options) or an instance stands for."""
    if isinstance(method, Optimizer):
        if constraints is not None or options:
            given = ["constraints"] * (constraints is not None) + sorted(options)
            raise ValidationError(
                "method", type(method).__name__,
                f"an Optimizer instance carries its own settings; do not also pass {given}",
            )
        return method
    opts = dict(options)
    if method == "risk_parity":
        budgets = opts.pop("budgets", None)
        if budgets is not None:
            return RiskBudgeting(budgets, constraints, **opts)
        return EqualRiskContribution(constraints, **opts)
    if method == "min_variance":
        return MinimumVariance(constraints, **opts)
    if method == "max_sharpe":
        return MaximumSharpe(constraints, **opts)
    if method == "max_utility":
        return MaximumUtility(constraints=constraints, **opts)
    raise ValidationError(
        "method", method, f"must be one of {list(ALLOCATION_METHODS)} or an Optimizer instance"
    )


def allocate(
    member_returns: xr.DataArray,
    method: str | Optimizer = "risk_parity",
    constraints: Constraints | None = None,
    **options: Any,
) -> OptimizationResult:
    """Weights of a group's members from their return series.

    Parameters
    ----------
    member_returns : xarray.DataArray
        ``(asset, time)`` per-period simple returns (fractions, daily by
        default) with the member ids as ``asset`` labels, NaN where a member
        has no observation. Statistics are annualized by the optimizer
        (``periods_per_year``, default 252).
    method : {"risk_parity", "min_variance", "max_sharpe", "max_utility"} or Optimizer
        ``"risk_parity"`` is `EqualRiskContribution` (with ``budgets=`` in
        ``options``, `RiskBudgeting`); ``"min_variance"`` `MinimumVariance`;
        ``"max_sharpe"`` `MaximumSharpe` (``risk_free=``, annualized);
        ``"max_utility"`` `MaximumUtility` (``risk_aversion=``). An
        `Optimizer` instance is used as it is.
    constraints : Constraints, optional
        Default: long-only, fully invested. Not allowed with an instance.
    **options
        Further keyword arguments of the optimizer's constructor
        (``covariance=``, ``expected_returns=``, ``periods_per_year=``, ...).
        Not allowed with an instance.

    Returns
    -------
    OptimizationResult
        ``weights(asset)`` are fractions of the group's capital per member;
        ``mu`` and ``cov`` are annualized.

    Raises
    ------
    ValidationError
        Unknown method, options given with an instance, or bad returns.
    InfeasibleError, SolverError, NoSolutionError
        As the optimizer's ``fit``.
    """
    return _optimizer(method, constraints, options).fit(member_returns)


def to_allocation(
    weights: xr.DataArray | Mapping[str, float], *, tolerance: float = 1e-9
) -> dict[str, float]:
    """Weights as a target allocation: in [0, 1] and summing to 1 within ``tolerance``.

    Solver round-off is removed without changing the answer: negative weights
    above ``-1e-8`` become 0, the weights are divided by their (exactly
    rounded) sum, and the rounding residue ``1 - sum(others)`` is put on the
    largest weight, where it is relatively smallest.

    Parameters
    ----------
    weights : xarray.DataArray on ``asset`` or mapping of member id to float
        Fractions of the group's capital.
    tolerance : float, default 1e-9
        Largest accepted ``|sum - 1|`` of the result (the registry's
        ``ALLOCATION_TOLERANCE``).

    Returns
    -------
    dict of str to float
        Member id to weight, in the input's order.

    Raises
    ------
    AllocationError
        A weight is short (below ``-1e-8``) or non-finite, or the weights sum
        to more than ``1e-6`` away from 1 (cash left over or leverage, which a
        group allocation cannot express).
    """
    if isinstance(weights, xr.DataArray):
        if weights.dims != ("asset",):
            raise AllocationError("weights", weights.dims, "must be a DataArray on ('asset',)")
        items = list(zip(map(str, weights["asset"].values.tolist()), weights.values.tolist(),
                         strict=True))
    else:
        items = [(str(k), v) for k, v in weights.items()]
    if not items:
        raise AllocationError("weights", {}, "no members to allocate to")
    w = np.array([float(v) for _, v in items])
    for (member, _), x in zip(items, w, strict=True):
        if not math.isfinite(x) or x < -_NEGATIVE_NOISE:
            raise AllocationError(
                f"weights[{member}]", x, "a group allocation is long-only: weights must be >= 0"
            )
    w = np.maximum(w, 0.0)
    total = math.fsum(w)
    if abs(total - 1.0) > _BUDGET_NOISE:
        raise AllocationError(
            "weights", total,
            "weights must sum to 1 (fully invested); a group allocation has no cash line",
        )
    w = w / total
    big = int(np.argmax(w))
    w[big] = 1.0 - math.fsum(np.delete(w, big))
    out = {m: float(x) for (m, _), x in zip(items, w, strict=True)}
    if abs(math.fsum(out.values()) - 1.0) > tolerance or not (0.0 <= w[big] <= 1.0):
        raise AllocationError("weights", out, f"cannot be rounded to sum to 1 within {tolerance}")
    return out


# ---------------------------------------------------------------- member return series


def _timestamp(value: Any, field: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, value, f"not a date: {exc}") from exc
    if ts is pd.NaT:
        raise ValidationError(field, value, "not a date")
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def _members(
    registry: Registry, group: str
) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Direct members, the portfolios each stands for, and each member's kind."""
    info = registry.group(group)
    if not info.members:
        raise ValidationError("group", group, "the group has no members to allocate to")
    leaves: dict[str, list[str]] = {}
    kinds: list[str] = []
    for m in info.members:
        try:
            leaves[m] = list(dict.fromkeys(registry.get_group_portfolios(m)))
            kinds.append("group")
        except NotFoundError:
            leaves[m] = [m]
            kinds.append("portfolio")
    return list(info.members), leaves, kinds


def member_returns(
    registry: Registry,
    group: str,
    *,
    start: Any = None,
    end: Any = None,
    flow_weight: float = 1.0,
) -> xr.DataArray:
    """Daily time-weighted returns of a group's direct members, from ledger and market.

    A portfolio member's value is its positions at the market close plus
    cash; a child group's is the sum over every portfolio under it (each
    once), and its external flows are the sum of theirs. Each member's
    return on day ``t`` is the Modified Dietz return
    ``(V[t] - V[t-1] - F[t]) / (V[t-1] + w F[t])``
    (`pmkit.analytics.returns.time_weighted_returns`), so deposits and
    withdrawals are not returns. Where nothing was invested (the denominator
    is 0: before a member's first deposit, after it was emptied, or always
    for an empty child group) there is no observation and the return is NaN.

    Parameters
    ----------
    registry : Registry
        Must have market data; the acting user needs VIEWER on the group.
    group : str
        The group whose direct members are returned.
    start, end : datetime-like, optional
        First and last day of the returns (inclusive; default: the market
        data's range). The close before ``start`` is used as the base of the
        first return when the market has it.
    flow_weight : float, default 1.0
        Modified Dietz flow weight ``w`` in [0, 1] (1: flows at the start of
        the day, so an inception deposit earns that day's return).

    Returns
    -------
    xarray.DataArray
        ``member_return(asset, time)``: simple returns as fractions per day,
        ``asset`` = member ids in the group's order, coordinate
        ``member_kind(asset)`` (``"portfolio"`` or ``"group"``) and attribute
        ``currency``.

    Raises
    ------
    ValidationError
        The group has no members, or bad ``start``/``end``/``flow_weight``.
    InsufficientDataError
        No market day in ``[start, end]``.
    CurrencyMismatchError
        The group's portfolios report in different currencies (their returns
        would not be comparable without FX).
    PermissionDenied, NotFoundError
        From the registry.
    ConfigError
        The registry has no market data.
    """
    from pmkit.analytics.returns import external_flows, time_weighted_returns
    from pmkit.model import portfolio_values

    if not (isinstance(flow_weight, int | float) and 0.0 <= flow_weight <= 1.0):
        raise ValidationError("flow_weight", flow_weight, "must be a number in [0, 1]")
    members, leaves, kinds = _members(registry, group)
    market = registry.market
    if market is None:
        raise ConfigError("market", None, "this registry has no market data; pass market=")
    times = market.indexes["time"]
    lo = 0 if start is None else int(times.searchsorted(_timestamp(start, "start"), "left"))
    hi = len(times) if end is None else int(times.searchsorted(_timestamp(end, "end"), "right"))
    if hi <= lo:
        raise InsufficientDataError(
            "start", (start, end), "no market day between start and end (inclusive)"
        )
    base = max(lo - 1, 0)  # the close before `start` anchors the first return
    valuation_times = times[base:hi]

    pids = list(dict.fromkeys(p for m in members for p in leaves[m]))
    n_t = len(valuation_times)
    if pids:
        holdings = registry.holdings(pids, times=valuation_times)
        currencies = sorted(set(holdings["currency"].values.tolist()))
        if len(currencies) > 1:
            raise CurrencyMismatchError(
                "group", group,
                f"member portfolios report in {currencies}; returns in different currencies "
                "are not comparable without FX",
            )
        nav = portfolio_values(holdings, market.sel(time=valuation_times)).values
        entries = [e for p in pids for e in registry.ledger(p)]
        flows = external_flows(entries, pids, valuation_times, currency=currencies[0]).values
        currency = currencies[0]
    else:
        nav = flows = np.zeros((0, n_t))
        currency = ""
    col = {p: j for j, p in enumerate(pids)}
    membership = np.zeros((len(members), len(pids)))
    for i, m in enumerate(members):
        membership[i, [col[p] for p in leaves[m]]] = 1.0
    value = membership @ nav
    flow = membership @ flows
    if n_t >= 2:
        labels = {"portfolio": members, "time": valuation_times}
        daily = time_weighted_returns(
            xr.DataArray(value, dims=("portfolio", "time"), coords=labels),
            xr.DataArray(flow, dims=("portfolio", "time"), coords=labels),
            flow_weight=float(flow_weight),
        )["daily_return"].values
        # No capital at work means no observation (the core returns 0 there, which an
        # optimizer would read as a riskless member).
        invested = np.zeros_like(value, dtype=bool)
        invested[:, 1:] = (value[:, :-1] + flow_weight * flow[:, 1:]) != 0
        daily = np.where(invested, daily, np.nan)
    else:
        daily = np.full_like(value, np.nan)
    return xr.DataArray(
        daily[:, lo - base:],
        dims=("asset", "time"),
        coords={
            "asset": np.array(members, dtype=object).astype(str),
            "time": times[lo:hi].to_numpy(),
            "member_kind": ("asset", np.array(kinds)),
        },
        name="member_return",
        attrs={
            "units": "fraction per day",
            "method": f"Modified Dietz time-weighted, flow weight {float(flow_weight):g}",
            "group": group,
            "currency": currency,
        },
    )


def _common_window(returns: xr.DataArray, min_observations: int) -> xr.DataArray:
    """The days on which every member has a return; raises naming short members."""
    values = returns.values
    observed = ~np.isnan(values)
    counts = observed.sum(axis=1)
    members = [str(a) for a in returns["asset"].values.tolist()]
    short = [m for m, c in zip(members, counts, strict=True) if c < min_observations]
    if short:
        detail = ", ".join(
            f"{m}: {c}" for m, c in zip(members, counts.tolist(), strict=True) if m in short
        )
        raise InsufficientDataError(
            "member", short[0] if len(short) == 1 else short,
            f"too little return history in the window ({detail} days with capital invested; "
            f"need min_observations={min_observations}); fund the member, remove it from the "
            "group, or choose start/end",
        )
    complete = observed.all(axis=0)
    if complete.sum() < min_observations:
        times = returns.indexes["time"]
        first = [times[np.argmax(row)] for row in observed]
        latest = max(first)
        late = [m for m, f in zip(members, first, strict=True) if f == latest]
        raise InsufficientDataError(
            "member", late[0] if len(late) == 1 else late,
            f"only {int(complete.sum())} days on which every member has a return (need "
            f"min_observations={min_observations}); this member's history starts {latest.date()}",
        )
    return returns.isel(time=np.flatnonzero(complete))


def _check_group_constraints(optimizer: Optimizer, returns: xr.DataArray) -> None:
    """A group allocation is long-only and fully invested; refuse anything else up front."""
    coords = {
        str(k): np.asarray(c.values) for k, c in returns.coords.items()
        if k != "asset" and c.dims == ("asset",)
    }
    cons = optimizer.constraints.resolve(returns["asset"].values, coords)
    if cons.budget != (1.0, 1.0) or bool(np.any(cons.lower < 0)):
        raise ValidationError(
            "constraints", {"budget": cons.budget, "lower_min": float(cons.lower.min())},
            "a group's target allocation is long-only and fully invested: use budget=1, no "
            "cash_floor and lower bounds >= 0",
        )


@dataclass(frozen=True)
class GroupAllocation:
    """What `allocate_group` computed and (with ``apply=True``) wrote.

    Attributes
    ----------
    group : str
    result : OptimizationResult
        The optimizer's answer on the members' returns (annualized ``mu``/``cov``).
    allocation : dict of str to float
        Member id to target weight as written (or, with ``applied=False``, as
        it would be): the result's weights with round-off removed, summing to
        1 within the registry's tolerance (see `to_allocation`).
    previous : dict of str to float or None
        The group's allocation before the call.
    applied : bool
        Whether ``allocation`` was written to the registry.
    returns : xarray.DataArray
        ``(asset, time)`` daily member returns the optimizer saw: the days on
        which every member had capital invested.
    reason : str
        Which method produced it, on which data (recorded in the audit when
        the registry's ``set_allocation`` accepts a ``reason``).
    """

    group: str
    result: OptimizationResult
    allocation: dict[str, float]
    previous: dict[str, float] | None
    applied: bool
    returns: xr.DataArray
    reason: str


def _method_name(method: str | Optimizer) -> str:
    return method if isinstance(method, str) else type(method).__name__


def allocate_group(
    registry: Registry,
    group: str,
    method: str | Optimizer = "risk_parity",
    *,
    constraints: Constraints | None = None,
    start: Any = None,
    end: Any = None,
    min_observations: int = 60,
    flow_weight: float = 1.0,
    apply: bool = True,
    **options: Any,
) -> GroupAllocation:
    """Allocate a group's capital between its direct members and write it as its target.

    Steps: the members' daily time-weighted returns (`member_returns`); the
    days on which every member had capital invested (see the module notes on
    ragged histories); the optimizer (`allocate`); round-off removed
    (`to_allocation`); then, with ``apply=True``, one
    ``registry.set_allocation`` call, which checks the acting user's role
    (MANAGER on the group), validates, audits and publishes
    ``group.allocation_changed``. Any error leaves the registry unchanged.

    Parameters
    ----------
    registry : Registry
        With market data; acting as the user making the change.
    group : str
        The group to allocate.
    method : str or Optimizer, default "risk_parity"
        See `allocate`.
    constraints : Constraints, optional
        Must stay long-only and fully invested (budget 1). Member labels are
        the member ids; the coordinate ``member_kind`` (``"portfolio"`` /
        ``"group"``) can be used in ``group_bounds``.
    start, end : datetime-like, optional
        Estimation window (inclusive); default the whole market history.
    min_observations : int, default 60
        Fewest days with a return each member, and the common window, must
        have (60 trading days is about a quarter).
    flow_weight : float, default 1.0
        Modified Dietz flow weight, see `member_returns`.
    apply : bool, default True
        Write the allocation; with False nothing is written.
    **options
        Optimizer options, see `allocate`.

    Returns
    -------
    GroupAllocation

    Raises
    ------
    PermissionDenied
        ``apply=True`` and the user may not change the group's allocation
        (checked before any computation, and again by the registry); also
        without VIEWER on the group.
    InsufficientDataError
        A member (named) has fewer than ``min_observations`` days of returns in
        the window, or the common window is shorter (the latest-starting
        member is named).
    ValidationError
        Bad method/options, or constraints that are not long-only and fully
        invested.
    AllocationError
        The weights cannot be written (e.g. the group's members changed
        meanwhile).
    CurrencyMismatchError, InfeasibleError, SolverError, NoSolutionError
        As `member_returns` and the optimizer.
    """
    from pmkit.registry.access import ACTION_ROLES

    n_min = min_observations
    if isinstance(n_min, bool) or not isinstance(n_min, int) or n_min < 2:
        raise ValidationError("min_observations", min_observations, "must be an integer >= 2")
    if apply and not registry.can("group.allocation", group):
        raise PermissionDenied(
            registry.user, "group.allocation", group, str(ACTION_ROLES["group.allocation"])
        )
    previous = registry.group(group).allocation
    optimizer = _optimizer(method, constraints, options)
    raw = member_returns(registry, group, start=start, end=end, flow_weight=flow_weight)
    returns = _common_window(raw, min_observations)
    _check_group_constraints(optimizer, returns)
    result = optimizer.fit(returns)
    members = [str(a) for a in returns["asset"].values.tolist()]
    from pmkit.registry import ALLOCATION_TOLERANCE

    allocation = to_allocation(result.weights.sel(asset=members), tolerance=ALLOCATION_TOLERANCE)
    t = returns.indexes["time"]
    reason = (
        f"pmkit.optimize.allocate_group: {result.method} (method={_method_name(method)!r}, "
        f"solver {result.solver}) on daily time-weighted returns of {len(members)} members, "
        f"{t[0].date()}..{t[-1].date()} ({len(t)} days)"
    )
    if apply:
        _write(registry, group, allocation, reason)
    return GroupAllocation(
        group=group,
        result=result,
        allocation=allocation,
        previous=previous,
        applied=bool(apply),
        returns=returns,
        reason=reason,
    )


def _write(registry: Registry, group: str, allocation: dict[str, float], reason: str) -> None:
    """``registry.set_allocation`` with the method recorded in the audit trail."""
    registry.set_allocation(group, allocation, reason=reason)
