"""Pre-trade risk controls: every order path checks the portfolio's limits before it commits.

One module owns the controls; it is part of the kernel (every booked trade
passes it in `pmkit.registry.trading.append_trade`) and is also importable as
`pmkit.risk.controls`. `evaluate` is pure: given a portfolio's units,
cash and prices, a set of proposed trades and its parsed `Limits`, it
returns the `Breach` es the trades would cause. `enforce_pre_trade` is what
every order path calls inside its write context: it reads the resolved
configuration, the positions and the market as the transaction sees them,
evaluates, and refuses with `pmkit.errors.LimitBreachError` before anything
is written.

Limits, their configuration keys and units
------------------------------------------
Each is read from the portfolio's resolved configuration (defaults, then its
groups, then its own overrides; `pmkit.registry.Registry.resolve_config`).
NAV is ``cash + sum(units * price)``.

===================== ======================= ===========================================
key                   unit                    value compared with the threshold
===================== ======================= ===========================================
``max_position_weight`` fraction of NAV       ``|units * price| / NAV`` of each traded asset
``max_sector_weight``   fraction of NAV       ``|sum of the sector's values| / NAV`` of each
                                              sector a trade touches (the market's
                                              ``sector`` coordinate)
``max_leverage``        multiple of NAV       gross exposure ``sum |units * price| / NAV``
``max_net_leverage``    multiple of NAV       net exposure ``|sum units * price| / NAV``
``max_var``             fraction of NAV       one-day historical VaR of the post-trade
                                              weights: the ``var_confidence`` (default
                                              0.95) empirical quantile of the losses
                                              ``-r . w`` over the last ``var_lookback``
                                              (default 252) daily returns at which every
                                              held asset has one (at least 30), as
                                              ``numpy.quantile(..., "inverted_cdf")``
``max_heat``            fraction of NAV       open risk to stops ``sum |price - stop| *
                                              |units| / NAV`` over positions with a known
                                              stop (see *Stops* below)
``max_order_value``     currency              ``|units * price|`` of each order, trade or
                                              fill
``max_participation``   fraction of ADV       ``|units| / ADV``, ADV the mean daily
                                              ``volume`` (units) over the last
                                              ``adv_window`` (default 20) market days
``restricted_assets``   list of assets        a trade that raises ``|units|`` held of a
                                              listed asset (value: the units traded,
                                              threshold 0)
===================== ======================= ===========================================

Cash and margin are the ledger's guards (``margin_limit``, ``allow_short``,
`pmkit.registry.trading.guard_cash`): the booking of every trade and fill
applies them, and a proposal's creation and approval check the cash its
trades would leave with the same function (a plan must be funded). An order
is not refused at submission for cash: a broker may work it as cash arrives
(the paper broker cuts buys to the cash), and each fill is guarded when it is
booked. ``max_drawdown`` is a state of the portfolio that no trade changes:
`pmkit.risk.check_limits` watches it.

Hard and soft
-------------
Every configured limit is hard unless its key is listed in ``soft_limits``
(e.g. ``{"max_var": 0.02, "soft_limits": ["max_var"]}``). A hard breach
refuses. A soft breach refuses unless an `Override` with a reason is given
by a user holding ``limit.override`` (MANAGER) on the portfolio; the use is
audited (action ``limit.override``, before: the breaches, after: reason,
author, stage). An override granted at a proposal's approval (or an order's
submission) is stored on the proposal and its orders, so the order
submission and the fills do not refuse again what was approved; the author
must still hold the role when it is used, and it covers only the limits it
was granted for.

What counts as a breach
-----------------------
The post-trade state is checked, and only what the trades make worse:

* exposure limits (position, sector, gross and net leverage, VaR, heat)
  block when the value after is above the threshold *and* above the value
  before (beyond float and lot rounding, `TOLERANCE`). Position and sector
  limits look only at the assets and sectors the trades touch, so a
  position over its limit (after a price move) never blocks trades in other
  assets. A set of trades that only *reduces* positions (each ``|units|``
  falls, none crosses zero) is always allowed by the exposure limits;
* order limits (order value, participation) bound each order's market
  footprint, buys and sells alike;
* the restricted list refuses trades that raise the position held.

Prices: each traded asset is valued at its trade price (the decision
price); the other holdings at their last close at or before the trade time
(the last market time when it has none). A limit that cannot be measured
although the registry has market data (a held asset never priced, no
``volume`` for participation, fewer than 30 usable returns for VaR, no
``sector`` coordinate) is a breach with value NaN and a reason saying what
is missing: a configured limit never passes silently. Make it soft to
override it, or remove it. A registry without any market data can only
check the restricted list and the order value.

Stops
-----
The stop of a held position is the stop of the portfolio's latest signal on
the asset, on the position's side, that the coordinator queued, dispatched
or executed; a signal's own trade carries its stop. A position without a
known stop adds no open risk (pmkit cannot know it) and is named in the
breach's reason. Reading the stops scans the portfolio's signal records,
so it is only done when ``max_heat`` is configured.

Where the controls run
----------------------
``"signal"`` `StrategyCoordinator.process_signal`, before the signal is
queued; ``"proposal"`` and ``"approval"`` `ProposalBook.propose` and
`ProposalBook.approve` (soft breaches found at creation are recorded on the
proposal for the approver to override); ``"order"`` `ProposalBook.submit`
and `Broker` submissions (`pmkit.execution.broker.check_orders`);
``"fill"`` every fill booked by a `FillRecorder`; ``"trade"``
`Registry.record_trade`. Fills and trades run in
`pmkit.registry.trading.append_trade`, the one place every booked trade
passes, so every limit is checked there too (VaR with a cached returns
matrix: a window slice and one quantile per fill).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from pmkit.errors import LimitBreachError, PermissionDenied, ValidationError
from pmkit.registry.config import RISK_LIMIT_KEYS, check_config_value
from pmkit.validation import MAX_MEMO_LENGTH, MAX_NAME_LENGTH, check_text

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

    from pmkit.ledger import Positions
    from pmkit.registry.context import WriteContext

__all__ = [
    "EXPOSURE_LIMITS",
    "ORDER_LIMITS",
    "STAGES",
    "TOLERANCE",
    "Breach",
    "Limits",
    "Override",
    "ProposedTrade",
    "decision_nav",
    "enforce_pre_trade",
    "evaluate",
    "heat_from_stops",
    "historical_var",
    "mark_price",
    "market_returns",
    "parse_limits",
    "position_room",
    "signal_stops",
]

#: Where the controls run, in the order an order path meets them.
STAGES = ("signal", "proposal", "approval", "order", "fill", "trade")
#: Stages that also check the cash the trades would leave (a proposal must be funded).
_PRE_BOOKING = frozenset({"proposal", "approval"})

#: Limits on the portfolio's state after the trades (never block a reducing trade).
EXPOSURE_LIMITS = (
    "max_position_weight",
    "max_sector_weight",
    "max_leverage",
    "max_net_leverage",
    "max_var",
    "max_heat",
)
#: Limits on each order's size (buys and sells alike).
ORDER_LIMITS = ("max_order_value", "max_participation")
#: What a registry without market data can still check.
_WITHOUT_MARKET = frozenset({"max_order_value", "restricted_assets"})

#: Relative slack before a value counts as above its threshold or above its value
#: before: float rounding and the lot rounding of `pmkit.core.sizing.cap_and_round`
#: (1e-9).
TOLERANCE = 2e-9

#: Defaults of the companion keys.
DEFAULT_VAR_CONFIDENCE = 0.95
DEFAULT_VAR_LOOKBACK = 252
DEFAULT_ADV_WINDOW = 20
#: Fewest usable daily returns for a historical VaR.
MIN_VAR_OBSERVATIONS = 30

_UNITS = {
    "max_position_weight": "fraction of NAV",
    "max_sector_weight": "fraction of NAV",
    "max_leverage": "multiple of NAV",
    "max_net_leverage": "multiple of NAV",
    "max_var": "fraction of NAV",
    "max_heat": "fraction of NAV",
    "max_order_value": "currency",
    "max_participation": "fraction of ADV",
    "restricted_assets": "units",
}

#: Signal states whose stops count (a rejected or superseded signal never traded).
_STOP_STATES = ("queued", "dispatched", "executed")


# -- values ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ProposedTrade:
    """One trade the controls are asked about.

    Attributes
    ----------
    asset : str
    quantity : float
        Signed units, buy > 0.
    price : float
        Price per unit (currency) it would trade at: the asset is valued at
        it in the post-trade state.
    fee : float, default 0
        Costs it would pay (currency, >= 0): they lower cash.
    stop : float, optional
        Its stop price (currency per unit), for ``max_heat``.
    """

    asset: str
    quantity: float
    price: float
    fee: float = 0.0
    stop: float | None = None


@dataclass(frozen=True, slots=True)
class Breach:
    """One limit the trades would breach.

    Attributes
    ----------
    limit : str
        Configuration key, e.g. ``"max_position_weight"``.
    value : float
        Value after the trades, in ``unit`` (NaN: could not be measured).
    threshold : float
        The configured limit.
    hard : bool
        False when the key is in ``soft_limits`` (overridable).
    item : str or None
        Asset (position, order value, participation, restricted) or sector.
    before : float or None
        Value before the trades (None for order limits).
    unit : str
        ``"fraction of NAV"``, ``"multiple of NAV"``, ``"currency"``,
        ``"fraction of ADV"`` or ``"units"``.
    reason : str
        One readable sentence.
    """

    limit: str
    value: float
    threshold: float
    hard: bool = True
    item: str | None = None
    before: float | None = None
    unit: str = ""
    reason: str = ""

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict (NaN and infinities as None)."""
        d = asdict(self)
        for k in ("value", "threshold", "before"):
            if isinstance(d[k], float) and not math.isfinite(d[k]):
                d[k] = None
        return d


@dataclass(frozen=True, slots=True)
class Override:
    """A manager's permission to exceed soft limits, with the reason (audited).

    Attributes
    ----------
    reason : str
        Why (non-empty, at most `pmkit.validation.MAX_MEMO_LENGTH` characters).
    by : str, optional
        The manager granting it: the acting user (default). Only overrides
        stored by the workflow on a proposal or an order carry another user;
        `Registry.record_trade` refuses them.
    limits : tuple of str, optional
        The soft limits it covers; None: whatever soft limits the trades
        breach now (a fresh override). Set when it is stored.
    stage : str, optional
        Where it was granted (set when it is stored).
    """

    reason: str
    by: str | None = None
    limits: tuple[str, ...] | None = None
    stage: str | None = None

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict (stored on proposals and orders)."""
        return {
            "reason": self.reason,
            "by": self.by,
            "limits": None if self.limits is None else list(self.limits),
            "stage": self.stage,
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any] | None) -> Override | None:
        """Inverse of `to_record` (None in, None out)."""
        if data is None:
            return None
        limits = data.get("limits")
        return cls(
            reason=data["reason"],
            by=data.get("by"),
            limits=None if limits is None else tuple(limits),
            stage=data.get("stage"),
        )


@dataclass(frozen=True)
class Limits:
    """A portfolio's configured limits, parsed (see `parse_limits`).

    Attributes
    ----------
    values : dict of str to float
        Numeric thresholds by configuration key (only those configured).
    restricted : frozenset of str
        ``restricted_assets``.
    soft : frozenset of str
        Keys listed in ``soft_limits``.
    var_confidence : float
    var_lookback : int
    adv_window : int
    """

    values: dict[str, float] = field(default_factory=dict)
    restricted: frozenset[str] = frozenset()
    soft: frozenset[str] = frozenset()
    var_confidence: float = DEFAULT_VAR_CONFIDENCE
    var_lookback: int = DEFAULT_VAR_LOOKBACK
    adv_window: int = DEFAULT_ADV_WINDOW

    @property
    def empty(self) -> bool:
        """Whether no pre-trade limit is configured."""
        return not self.values and not self.restricted

    def hard(self, key: str) -> bool:
        """Whether the limit ``key`` is hard."""
        return key not in self.soft

    def only(self, keys: Iterable[str]) -> Limits:
        """The same limits restricted to ``keys``."""
        keep = set(keys)
        return Limits(
            {k: v for k, v in self.values.items() if k in keep},
            self.restricted if "restricted_assets" in keep else frozenset(),
            self.soft,
            self.var_confidence,
            self.var_lookback,
            self.adv_window,
        )


def parse_limits(config: Mapping[str, Any], portfolio: str = "") -> Limits:
    """The pre-trade limits of a resolved configuration.

    Parameters
    ----------
    config : mapping
        E.g. ``ctx.config(pid)``; keys other than the limit keys are ignored.
        A None value means "not configured".
    portfolio : str
        Named in errors.

    Returns
    -------
    Limits

    Raises
    ------
    ConfigError
        A value of the wrong type or range (see
        `pmkit.registry.config.RISK_LIMIT_KEYS`), naming the key.
    """
    where = f"config[{portfolio}]" if portfolio else "config"
    values: dict[str, float] = {}
    restricted: frozenset[str] = frozenset()
    for key in RISK_LIMIT_KEYS:
        v = config.get(key)
        if v is None or key == "max_drawdown":
            continue
        check_config_value(key, v, where)
        if key == "restricted_assets":
            restricted = frozenset(v)
        else:
            values[key] = float(v)
    extra: dict[str, Any] = {}
    for key in ("soft_limits", "var_confidence", "var_lookback", "adv_window"):
        v = config.get(key)
        if v is not None:
            check_config_value(key, v, where)
            extra[key] = v
    return Limits(
        values,
        restricted,
        frozenset(extra.get("soft_limits", ())),
        float(extra.get("var_confidence", DEFAULT_VAR_CONFIDENCE)),
        int(extra.get("var_lookback", DEFAULT_VAR_LOOKBACK)),
        int(extra.get("adv_window", DEFAULT_ADV_WINDOW)),
    )


# -- the pure evaluation -----------------------------------------------------------------------
def _over(value: float, threshold: float) -> bool:
    """Above the threshold beyond rounding (NaN: unmeasured, counts as above)."""
    return math.isnan(value) or value > threshold + TOLERANCE * max(1.0, abs(threshold))


def _worse(after: float, before: float | None) -> bool:
    """After above before beyond rounding (unmeasured counts as worse)."""
    if before is None or math.isnan(after) or math.isnan(before):
        return True
    return after > before + TOLERANCE * max(1.0, abs(before))


def _pct(x: float) -> str:
    return "unmeasured" if math.isnan(x) else f"{x:.2%}"


def historical_var(
    weights: Mapping[str, float],
    returns: pd.DataFrame,
    confidence: float = DEFAULT_VAR_CONFIDENCE,
) -> tuple[float, str]:
    """One-day historical VaR of ``weights`` and, when it cannot be measured, why.

    Parameters
    ----------
    weights : mapping asset -> float
        Fractions of NAV; zero weights are ignored.
    returns : pandas.DataFrame
        Daily simple returns (fractions), one column per asset, NaN where
        missing; only the rows where every weighted asset has a return count.
    confidence : float, default 0.95
        In (0, 1).

    Returns
    -------
    var : float
        The ``confidence`` empirical quantile (``method="inverted_cdf"``) of
        the losses ``-returns @ weights``: a positive loss fraction of NAV
        (0 for an all-cash portfolio; NaN when fewer than
        `MIN_VAR_OBSERVATIONS` rows are usable).
    why : str
        Empty, or what was missing.
    """
    held = [a for a, w in weights.items() if w != 0 and math.isfinite(w)]
    if not held:
        return 0.0, ""
    missing = [a for a in held if a not in returns.columns]
    if missing:
        return math.nan, f"no returns for {missing}"
    r = returns[held].to_numpy(dtype=np.float64)
    ok = np.isfinite(r).all(axis=1)
    if int(ok.sum()) < MIN_VAR_OBSERVATIONS:
        return math.nan, (
            f"only {int(ok.sum())} daily returns where every held asset has one"
            f" (VaR needs {MIN_VAR_OBSERVATIONS})"
        )
    w = np.array([weights[a] for a in held], dtype=np.float64)
    losses = -(r[ok] @ w)
    return float(np.quantile(losses, confidence, method="inverted_cdf")), ""


def heat_from_stops(
    quantities: Mapping[str, float],
    prices: Mapping[str, float],
    stops: Mapping[str, Mapping[str, float]],
    nav: float,
) -> tuple[float, list[str]]:
    """Open risk to stops over NAV, and the held assets without a known stop.

    Parameters
    ----------
    quantities : mapping asset -> float
        Units held (signed).
    prices : mapping asset -> float
        Price per unit of every held asset (currency).
    stops : mapping asset -> {"long": price, "short": price}
        The stop of a long position is under ``"long"``, of a short under ``"short"``.
    nav : float
        Currency.

    Returns
    -------
    heat : float
        ``sum |price - stop| * |units| / nav`` over the positions with a stop
        (fraction; ``inf`` when ``nav <= 0``).
    unstopped : list of str
        Held assets without a stop (they add no open risk).
    """
    risk, unstopped = 0.0, []
    for a, q in quantities.items():
        if q == 0:
            continue
        stop = stops.get(a, {}).get("long" if q > 0 else "short")
        if stop is None:
            unstopped.append(a)
            continue
        risk += abs(prices[a] - stop) * abs(q)
    return (risk / nav if nav > 0 else math.inf), unstopped


def evaluate(
    limits: Limits,
    trades: Sequence[ProposedTrade],
    *,
    cash: float,
    quantities: Mapping[str, float],
    prices: Mapping[str, float],
    sectors: Mapping[str, str] | None = None,
    returns: pd.DataFrame | None = None,
    adv: Mapping[str, float] | None = None,
    stops: Mapping[str, Mapping[str, float]] | None = None,
    cash_flow: float = 0.0,
) -> list[Breach]:
    """The breaches ``trades`` would cause (pure: reads nothing, writes nothing).

    Parameters
    ----------
    limits : Limits
        From `parse_limits`.
    trades : sequence of ProposedTrade
        Applied together (a proposal's lines; a signal's or a fill's one trade).
    cash : float
        Cash before the trades (currency).
    quantities : mapping asset -> float
        Units held before the trades.
    prices : mapping asset -> float
        Price per unit of every held asset (currency): the last close. A
        traded asset is valued at its trade price instead.
    sectors : mapping asset -> str, optional
        Needed for ``max_sector_weight``.
    returns : pandas.DataFrame, optional
        Daily returns window (rows: times, columns: assets), for ``max_var``.
    adv : mapping asset -> float, optional
        Average daily volume in units, for ``max_participation``.
    stops : mapping asset -> {"long": price, "short": price}, optional
        Known stops of held positions, for ``max_heat``.
    cash_flow : float, default 0
        External cash arriving with the trades (a proposal's transfers).

    Returns
    -------
    list of Breach
        In the order of the module docstring's table; empty when none.
    """
    out: list[Breach] = []
    if limits.empty or not trades:
        return out
    vals = limits.values

    def breach(key: str, value: float, reason: str, **kw: Any) -> None:
        threshold = 0.0 if key == "restricted_assets" else vals[key]
        out.append(
            Breach(key, float(value), threshold, limits.hard(key), unit=_UNITS[key],
                   reason=reason, **kw)
        )

    before_q = {a: float(q) for a, q in quantities.items() if q != 0}
    after_q = dict(before_q)
    marks = {a: float(p) for a, p in prices.items()}
    cash_after = float(cash) + float(cash_flow)
    for t in trades:
        after_q[t.asset] = after_q.get(t.asset, 0.0) + float(t.quantity)
        cash_after -= float(t.quantity) * float(t.price) + float(t.fee)
        marks[t.asset] = float(t.price)
    traded = list(dict.fromkeys(t.asset for t in trades))

    def reduces(a: str) -> bool:
        b, q = before_q.get(a, 0.0), after_q.get(a, 0.0)
        return abs(q) <= abs(b) and (q == 0 or (q > 0) == (b > 0))

    # -- the restricted list and the order limits: every trade -----------------------------
    for a in traded:
        if a in limits.restricted and not reduces(a):
            units = sum(abs(t.quantity) for t in trades if t.asset == a)
            breach("restricted_assets", units, f"{a} is on the restricted list: only trades"
                   " that reduce the position are allowed", item=a)
    if "max_order_value" in vals:
        for t in trades:
            v = abs(float(t.quantity) * float(t.price))
            if _over(v, vals["max_order_value"]):
                breach("max_order_value", v, f"an order of {t.quantity:g} {t.asset} at"
                       f" {t.price:g} is worth {v:,.2f}", item=t.asset)
    if "max_participation" in vals:
        for t in trades:
            d = math.nan if adv is None else float(adv.get(t.asset, math.nan))
            v = abs(float(t.quantity)) / d if d > 0 else (math.nan if math.isnan(d) else math.inf)
            if _over(v, vals["max_participation"]):
                why = (f"no volume data for {t.asset} (participation cannot be measured)"
                       if math.isnan(v) else
                       f"{abs(t.quantity):g} {t.asset} is {v:.2%} of its average daily"
                       f" volume {d:,.0f}")
                breach("max_participation", v, why, item=t.asset)

    exposure = [k for k in EXPOSURE_LIMITS if k in vals]
    if not exposure or all(reduces(a) for a in traded):
        return out

    # -- the post-trade state, against the state before -----------------------------------
    unpriced = [a for a in set(before_q) | set(after_q)
                if not math.isfinite(marks.get(a, math.nan)) or marks.get(a, 0.0) <= 0]
    value_b = {a: q * marks.get(a, math.nan) for a, q in before_q.items()}
    value_a = {a: q * marks.get(a, math.nan) for a, q in after_q.items() if q != 0}
    nav_b = float(cash) + sum(value_b.values())
    nav_a = cash_after + sum(value_a.values())

    def frac(x: float, nav: float) -> float:
        if unpriced or math.isnan(x):
            return math.nan
        if nav <= 0:
            return math.inf if x else 0.0
        return x / nav

    missing = f"; no price for {sorted(unpriced)}" if unpriced else ""
    if "max_position_weight" in vals:
        for a in traded:
            after = frac(abs(value_a.get(a, 0.0)), nav_a)
            before = frac(abs(value_b.get(a, 0.0)), nav_b)
            if _over(after, vals["max_position_weight"]) and _worse(after, before):
                breach("max_position_weight", after, f"{a} would be {_pct(after)} of NAV"
                       f" (now {_pct(before)}){missing}", item=a, before=before)
    if "max_sector_weight" in vals:
        if sectors is None:
            breach("max_sector_weight", math.nan, "the market data has no 'sector'"
                   " coordinate: sector weights cannot be measured", before=math.nan)
        else:
            for s in dict.fromkeys(sectors.get(a, "") for a in traded):
                members = [a for a in set(value_a) | set(value_b) if sectors.get(a, "") == s]
                after = frac(abs(sum(value_a.get(a, 0.0) for a in members)), nav_a)
                before = frac(abs(sum(value_b.get(a, 0.0) for a in members)), nav_b)
                if _over(after, vals["max_sector_weight"]) and _worse(after, before):
                    breach("max_sector_weight", after, f"sector {s or '(none)'!r} would be"
                           f" {_pct(after)} of NAV (now {_pct(before)}){missing}",
                           item=s or None, before=before)
    if "max_leverage" in vals:
        after = frac(sum(abs(v) for v in value_a.values()), nav_a)
        before = frac(sum(abs(v) for v in value_b.values()), nav_b)
        if _over(after, vals["max_leverage"]) and _worse(after, before):
            breach("max_leverage", after, f"gross exposure would be {_pct(after)} of NAV"
                   f" (now {_pct(before)}){missing}", before=before)
    if "max_net_leverage" in vals:
        after = frac(abs(sum(value_a.values())), nav_a)
        before = frac(abs(sum(value_b.values())), nav_b)
        if _over(after, vals["max_net_leverage"]) and _worse(after, before):
            breach("max_net_leverage", after, f"net exposure would be {_pct(after)} of NAV"
                   f" (now {_pct(before)}){missing}", before=before)
    if "max_var" in vals:
        if returns is None:
            after, before, why = math.nan, math.nan, "no returns history was given"
        elif unpriced or nav_a <= 0 or nav_b <= 0:
            after, before, why = math.nan, math.nan, f"NAV cannot be measured{missing}"
        else:
            w_a = {a: v / nav_a for a, v in value_a.items()}
            w_b = {a: v / nav_b for a, v in value_b.items()}
            after, why = historical_var(w_a, returns, limits.var_confidence)
            before, _ = historical_var(w_b, returns, limits.var_confidence)
        if _over(after, vals["max_var"]) and _worse(after, before):
            text = (f"one-day {limits.var_confidence:g} VaR would be {_pct(after)} of NAV"
                    f" (now {_pct(before)})")
            breach("max_var", after, f"{text}: {why}" if why else text, before=before)
    if "max_heat" in vals:
        known = {a: dict(s) for a, s in (stops or {}).items()}
        for t in trades:
            if t.stop is not None:
                side = "long" if after_q.get(t.asset, 0.0) > 0 else "short"
                known.setdefault(t.asset, {})[side] = float(t.stop)
        if unpriced:
            after, before, unstopped = math.nan, math.nan, []
        else:
            after, unstopped = heat_from_stops(after_q, marks, known, nav_a)
            before, _ = heat_from_stops(before_q, marks, stops or {}, nav_b)
        if _over(after, vals["max_heat"]) and _worse(after, before):
            note = f"; no known stop for {sorted(unstopped)}" if unstopped else ""
            breach("max_heat", after, f"open risk to stops would be {_pct(after)} of NAV"
                   f" (now {_pct(before)}){note}{missing}", before=before)
    return out


# -- market data, cached per market object -----------------------------------------------------
class _MarketArrays:
    """Numpy views of one market dataset (built once per market object)."""

    def __init__(self, market: xr.Dataset) -> None:
        self.assets = {str(a): i for i, a in enumerate(market.indexes["asset"])}
        self.labels = list(self.assets)
        self.times = np.asarray(market.indexes["time"].values, dtype="datetime64[ns]")
        close = np.asarray(market["close"].transpose("asset", "time").values, dtype=np.float64)
        close = np.where(np.isfinite(close) & (close > 0), close, np.nan)
        # last valid close at or before each time (forward fill along time)
        idx = np.where(np.isfinite(close), np.arange(close.shape[1])[None, :], -1)
        idx = np.maximum.accumulate(idx, axis=1)
        rows = np.arange(close.shape[0])[:, None]
        self.filled = np.where(idx >= 0, close[rows, np.maximum(idx, 0)], np.nan)
        # simple returns close_t / close_{t-1} - 1, never filled (pmkit.model.simple_returns)
        ret = np.full(close.shape, np.nan)
        ret[:, 1:] = close[:, 1:] / close[:, :-1] - 1.0
        self.returns = ret
        self.volume = (
            np.asarray(market["volume"].transpose("asset", "time").values, dtype=np.float64)
            if "volume" in market.data_vars
            else None
        )
        self.sectors = (
            {str(a): str(s) for a, s in zip(self.labels, market["sector"].values, strict=True)}
            if "sector" in market.coords
            else None
        )

    def end(self, ts: Any) -> int:
        """Number of market times at or before ``ts`` (None: all of them)."""
        if ts is None:
            return len(self.times)
        try:
            return int(np.searchsorted(self.times, np.datetime64(ts, "ns"), side="right"))
        except (TypeError, ValueError, OverflowError):
            return len(self.times)

    def mark(self, asset: str, end: int) -> float:
        row = self.assets.get(asset)
        if row is None or end == 0:
            return math.nan
        return float(self.filled[row, end - 1])

    def returns_window(self, assets: Iterable[str], end: int, lookback: int) -> pd.DataFrame:
        import pandas as pd

        cols = [a for a in dict.fromkeys(assets) if a in self.assets]
        lo = max(1, end - lookback)
        data = self.returns[[self.assets[a] for a in cols], lo:end].T if cols else None
        return pd.DataFrame(data, columns=cols) if cols else pd.DataFrame()

    def adv(self, asset: str, end: int, window: int) -> float:
        row = self.assets.get(asset)
        if self.volume is None or row is None or end == 0:
            return math.nan
        v = self.volume[row, max(0, end - window):end]
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else math.nan


_ARRAYS: dict[int, tuple[weakref.ref[Any], _MarketArrays]] = {}


def _arrays(market: xr.Dataset) -> _MarketArrays:
    """The numpy views of ``market`` (built on first use; dropped with the market)."""
    key = id(market)
    hit = _ARRAYS.get(key)
    if hit is not None and hit[0]() is market:
        return hit[1]
    arrays = _MarketArrays(market)
    _ARRAYS[key] = (weakref.ref(market, lambda _, k=key: _ARRAYS.pop(k, None)), arrays)
    return arrays


def decision_nav(
    market: xr.Dataset | None,
    positions: Positions,
    *,
    at: datetime | None = None,
    prices: Mapping[str, float] | None = None,
) -> float:
    """NAV at decision time: cash plus every holding at its last close at or before ``at``.

    Parameters
    ----------
    market : xarray.Dataset or None
        ``close(asset, time)``; None values every holding at NaN.
    positions : pmkit.ledger.Positions
        Read in the deciding transaction (never cached).
    at : datetime, optional
        Default: the last market time.
    prices : mapping asset -> float, optional
        Prices that replace the last close (a trade's own price).

    Returns
    -------
    float
        Currency; NaN when a holding has no price.
    """
    arrays = None if market is None else _arrays(market)
    end = 0 if arrays is None else arrays.end(at)
    nav = float(positions.cash)
    for a, q in positions.quantities.items():
        if q == 0:
            continue
        p = prices.get(a) if prices is not None else None
        if p is None:
            p = math.nan if arrays is None else arrays.mark(a, end)
        nav += q * p
    return nav


def market_returns(
    market: xr.Dataset,
    assets: Iterable[str],
    *,
    at: datetime | None = None,
    lookback: int = DEFAULT_VAR_LOOKBACK,
) -> pd.DataFrame:
    """Daily simple returns of ``assets`` over the last ``lookback`` market times up to ``at``.

    ``close_t / close_{t-1} - 1``, never filled (`pmkit.model.simple_returns`):
    rows are times, columns the assets of the market among ``assets``.
    """
    arrays = _arrays(market)
    return arrays.returns_window(assets, arrays.end(at), lookback)


def mark_price(market: xr.Dataset | None, asset: str, *, at: datetime | None = None) -> float:
    """The asset's last close at or before ``at`` (default the last market time); NaN if none."""
    if market is None:
        return math.nan
    arrays = _arrays(market)
    return arrays.mark(asset, arrays.end(at))


def position_room(limit: float, nav: float, held: float, price: float, side: int) -> float:
    """Most units a trade on ``side`` may add before ``|units| * price / nav`` exceeds ``limit``.

    Parameters
    ----------
    limit : float
        ``max_position_weight`` (fraction of NAV).
    nav : float
        NAV with the asset valued at ``price`` (a trade without costs does not change it).
    held : float
        Units held now (signed).
    price : float
        Trade price per unit (> 0).
    side : {1, -1}
        Buy or sell.

    Returns
    -------
    float
        ``max(limit * nav / price - side * held, 0)`` units (unrounded).
    """
    if not (nav > 0 and price > 0):
        return 0.0
    return max(limit * nav / price - side * held, 0.0)


# -- stops --------------------------------------------------------------------------------------
def signal_stops(records: Iterable[Any], portfolio: str) -> dict[str, dict[str, float]]:
    """Known stops of a portfolio from its signal records: asset -> {side: stop}.

    The latest (by ``seq``) queued, dispatched or executed signal per asset
    and side wins.
    """
    best: dict[tuple[str, str], tuple[int, float]] = {}
    for rec in records:
        d = rec.data
        if rec.status not in _STOP_STATES or d.get("portfolio") != portfolio or "stop" not in d:
            continue
        key = (str(d["symbol"]), str(d["side"]))
        seq = int(d.get("seq", 0))
        if key not in best or seq > best[key][0]:
            best[key] = (seq, float(d["stop"]))
    out: dict[str, dict[str, float]] = {}
    for (asset, side), (_, stop) in best.items():
        out.setdefault(asset, {})[side] = stop
    return out


# -- enforcement inside a write context -------------------------------------------------------
def _trade(t: Any) -> ProposedTrade:
    if isinstance(t, ProposedTrade):
        return t
    try:
        return ProposedTrade(*t)
    except TypeError as exc:
        raise ValidationError(
            "trades", t, "must be ProposedTrade or (asset, quantity, price)"
        ) from exc


def _error(
    breaches: Sequence[Breach], portfolio: str, stage: str, *, needs_override: bool = False
) -> LimitBreachError:
    first = breaches[0]
    kind = "hard" if first.hard else "soft"
    text = (f"{first.reason}: above the {kind} limit {first.limit}={first.threshold:g}"
            f" ({first.unit}) of {portfolio!r}, checked at {stage}")
    if needs_override:
        text += ("; a soft limit needs a manager's override with a reason"
                 " (override=Override(reason=...))")
    if len(breaches) > 1:
        text += "; also " + "; ".join(f"{b.limit}{f'[{b.item}]' if b.item else ''}"
                                      f"={b.value:g} > {b.threshold:g}" for b in breaches[1:])
    return LimitBreachError(
        first.limit,
        first.value,
        first.threshold,
        portfolio=portfolio,
        stage=stage,
        item=first.item,
        hard=first.hard,
        breaches=breaches,
        reason=text,
    )


def _authorize(
    ctx: WriteContext, portfolio: str, override: Override, soft: Sequence[Breach], stage: str
) -> Override:
    """The override checked and completed, or the error refusing it."""
    if not isinstance(override, Override):
        raise ValidationError("override", override, "must be a pmkit.risk.controls.Override")
    reason = check_text(override.reason, "override.reason", max_length=MAX_MEMO_LENGTH,
                        allow_empty=False)
    if not reason.strip():
        raise ValidationError("override.reason", reason, "must say why (a non-empty string)")
    by = override.by or ctx.user
    check_text(by, "override.by", max_length=MAX_NAME_LENGTH, multiline=False, allow_empty=False)
    if by == ctx.user:
        ctx.require("limit.override", portfolio)
    elif not ctx.registry.policy.may(ctx.tx, by, "limit.override", portfolio):
        raise PermissionDenied(by, "limit.override", portfolio, "manager")
    if override.limits is not None:
        uncovered = [b for b in soft if b.limit not in override.limits]
        if uncovered:
            raise _error(uncovered, portfolio, stage, needs_override=True)
    covered = tuple(dict.fromkeys(b.limit for b in soft))
    return Override(reason, by, covered, override.stage or stage)


def _stops_of(ctx: WriteContext, portfolio: str) -> dict[str, dict[str, float]]:
    return signal_stops(ctx.view.records("signal", list(_STOP_STATES)), portfolio)


def enforce_pre_trade(
    ctx: WriteContext,
    portfolio: str,
    trades: Sequence[ProposedTrade | tuple[Any, ...]],
    *,
    stage: str,
    override: Override | None = None,
    ts: datetime | None = None,
    cash_flow: float = 0.0,
    defer_soft: bool = False,
    config: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
) -> list[Breach]:
    """Check ``trades`` against ``portfolio``'s limits inside ``ctx``; refuse before any write.

    Parameters
    ----------
    ctx : WriteContext
        The order path's open write context (positions, configuration and
        roles as its transaction sees them; the override's audit goes in it).
    portfolio : str
    trades : sequence of ProposedTrade
        Or ``(asset, quantity, price[, fee[, stop]])`` tuples.
    stage : str
        One of `STAGES`; named in errors and in the audit.
    override : Override, optional
        Lets soft breaches through (see the module docstring).
    ts : datetime, optional
        Time of the prices (tz-naive UTC): holdings are valued at their last
        close at or before it. Default: the last market time.
    cash_flow : float, default 0
        External cash arriving with the trades (currency).
    defer_soft : bool, default False
        Return soft breaches instead of refusing them (a proposal's creation:
        the approver decides).
    config : mapping, optional
        The resolved configuration when the caller has it already.
    limits : Limits, optional
        ``parse_limits(config)`` when the caller has it already.

    Returns
    -------
    list of Breach
        The soft breaches let through (overridden, or deferred); empty when
        nothing is breached.

    Raises
    ------
    LimitBreachError
        A hard breach, or a soft one without a covering override; naming the
        limit, the value and the threshold (``.breaches`` holds them all).
    PermissionDenied
        The override's author may not ``limit.override`` on the portfolio.
    InsufficientCashError
        At the proposal and approval stages: the trades would take
        cash below the ``margin_limit`` floor.
    ConfigError
        A malformed limit in the configuration.
    """
    if stage not in STAGES:
        raise ValidationError("stage", stage, f"must be one of {list(STAGES)}")
    items = [_trade(t) for t in trades]
    cfg = ctx.config(portfolio) if config is None else config
    if limits is None:
        limits = parse_limits(cfg, portfolio)
    if stage in _PRE_BOOKING and items:
        from pmkit.registry.trading import guard_cash

        pos = ctx.tx.positions(portfolio)
        after = pos.cash + cash_flow - sum(t.quantity * t.price + t.fee for t in items)
        guard_cash(cfg, ctx.portfolio(portfolio), pos.cash + cash_flow, after, "trades", after)
    if limits.empty or not items:
        return []
    market = ctx.registry.market
    if market is None:
        limits = limits.only(_WITHOUT_MARKET)
        if limits.empty:
            return []
    pos = ctx.tx.positions(portfolio)
    held = {a: q for a, q in pos.quantities.items() if q != 0}
    prices: dict[str, float] = {}
    sectors = returns = adv = stops = None
    if market is not None:
        arrays = _arrays(market)
        end = arrays.end(ts)
        prices = {a: arrays.mark(a, end) for a in held}
        sectors = arrays.sectors
        vals = limits.values
        if "max_var" in vals:
            returns = arrays.returns_window(
                [*held, *(t.asset for t in items)], end, limits.var_lookback
            )
        if "max_participation" in vals:
            adv = {t.asset: arrays.adv(t.asset, end, limits.adv_window) for t in items}
        if "max_heat" in vals:
            stops = _stops_of(ctx, portfolio)
    breaches = evaluate(
        limits,
        items,
        cash=pos.cash,
        quantities=held,
        prices=prices,
        sectors=sectors,
        returns=returns,
        adv=adv,
        stops=stops,
        cash_flow=cash_flow,
    )
    if not breaches:
        return []
    hard = [b for b in breaches if b.hard]
    soft = [b for b in breaches if not b.hard]
    if hard:
        raise _error([*hard, *soft], portfolio, stage)
    if override is None:
        if defer_soft:
            return soft
        raise _error(soft, portfolio, stage, needs_override=True)
    granted = _authorize(ctx, portfolio, override, soft, stage)
    ctx.note(
        "limit.override",
        portfolio,
        [b.to_record() for b in soft],
        {**granted.to_record(), "used_by": ctx.user, "used_at": stage},
    )
    return soft

