"""Trade signals: their shape, states, validation and enrichment (pure functions).

A signal is a strategy's request to open a position: buy (``long``) or sell
short (``short``) ``symbol`` in ``portfolio`` at ``entry``, with a protective
``stop`` and a profit ``target`` (prices in the asset's currency per unit), and
a ``confidence`` in [0, 1].

Priority
--------
`PriorityRule` maps the strategy's performance (`StrategyPerformance`) and the
signal's confidence to a `Priority`. Rows are tried in order; the first that
matches wins (default thresholds; Sharpe annualized, drawdown a positive
fraction):

=====  ==============================================================  ==========
row    condition                                                       priority
=====  ==============================================================  ==========
1      ``sharpe < 0`` or ``confidence < 0.25``                         LOW
2      ``sharpe >= 1.0`` and ``max_drawdown <= 0.25`` and               CRITICAL
       ``confidence >= 0.75``
3      ``sharpe >= 0.5`` and ``confidence >= 0.5``                      HIGH
4      otherwise                                                       MEDIUM
=====  ==============================================================  ==========

A strategy without performance (too short a history, or a NaN Sharpe) can
only match rows 1 (by its confidence) and 4: unknown performance is average.

Performance weight
------------------
For `ResolutionStrategy.PERFORMANCE_WEIGHTED` a signal weighs
``performance_score(perf) * confidence`` with
``performance_score = exp(clip(sharpe, -3, 3)) * win_rate``: positive,
increasing in both Sharpe and win rate, so a negative-Sharpe strategy still
ranks below a flat one instead of tying at zero. Unknown performance counts as
``sharpe = 0``, ``win_rate = 0.5`` (score 0.5).

Sizing
------
The strategy's capital is ``allocation * NAV`` (its fraction of the
portfolio's value). The position size in units is
`pmkit.risk.sizing.fixed_fractional_size` of that capital: a move from entry
to stop loses ``risk_fraction`` of the strategy's capital (default 1 %),
rounded down to whole lots, and capped so the position is worth at most
``max_position_weight * NAV`` at entry (the portfolio's resolved limit).
"""

from __future__ import annotations

import math
from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

from pmkit.codec import decode, encode
from pmkit.errors import UnknownAssetError, ValidationError
from pmkit.validation import (
    MAX_AMOUNT,
    MAX_JSON_DEPTH,
    MAX_NAME_LENGTH,
    MAX_PRICE,
    MAX_TAG_LENGTH,
    check_number,
    check_text,
    json_value,
    safe_text,
)

__all__ = [
    "LIVE_STATES",
    "SIGNAL_FIELDS",
    "TRANSITIONS",
    "Priority",
    "PriorityRule",
    "Side",
    "Signal",
    "SignalState",
    "check_strategy",
    "enrich_signal",
    "jsonable",
    "performance_score",
    "position_size",
    "risk_reward",
    "validate_signal",
]


class Side(StrEnum):
    """Direction of a signal."""

    LONG = "long"
    SHORT = "short"

    @property
    def opposite(self) -> Side:
        """The other side."""
        return Side.SHORT if self is Side.LONG else Side.LONG

    @property
    def sign(self) -> int:
        """+1 for long, -1 for short (the sign of the position it opens)."""
        return 1 if self is Side.LONG else -1


class Priority(IntEnum):
    """Execution priority; a higher value is served first."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    def __str__(self) -> str:
        return self.name


class SignalState(StrEnum):
    """Where a signal is in its life (the store record's ``status``).

    ``queued`` and ``dispatched`` are *live*: they take part in conflict and
    duplicate checks. ``dispatched`` means handed out by `get_next_signal`
    and awaiting `mark_signal_executed`.
    """

    QUEUED = "queued"
    DISPATCHED = "dispatched"
    EXECUTED = "executed"
    SUPERSEDED = "superseded"
    REJECTED = "rejected"


S = SignalState

#: state -> states it may move to; anything else is a `TransitionError`.
TRANSITIONS: dict[SignalState, frozenset[SignalState]] = {
    S.QUEUED: frozenset({S.DISPATCHED, S.EXECUTED, S.SUPERSEDED}),
    S.DISPATCHED: frozenset({S.EXECUTED}),
    S.EXECUTED: frozenset(),
    S.SUPERSEDED: frozenset(),
    S.REJECTED: frozenset(),
}

#: States that take part in conflict and duplicate detection.
LIVE_STATES = frozenset({S.QUEUED, S.DISPATCHED})

#: The fields a signal carries on input.
SIGNAL_FIELDS = (
    "symbol",
    "side",
    "entry",
    "stop",
    "target",
    "confidence",
    "strategy",
    "portfolio",
    "time",
)

#: Confidence of a signal that gives none.
DEFAULT_CONFIDENCE = 0.5

#: Largest serialized size of a signal's metadata (its keys beyond `SIGNAL_FIELDS`).
MAX_SIGNAL_METADATA_BYTES = 16_384


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Signal:
    """A trade signal, as validated, enriched and stored.

    Attributes
    ----------
    symbol : str
        Asset id, e.g. ``"AAPL"``.
    side : Side
    entry, stop, target : float
        Prices (currency per unit), > 0. For a long: ``stop < entry < target``;
        for a short: ``target < entry < stop``.
    confidence : float
        In [0, 1].
    strategy : str
        Name of a strategy registered (and active) in ``portfolio``.
    portfolio : str
        Portfolio id, e.g. ``"client_a/growth"``.
    time : datetime
        When the strategy emitted it (tz-naive UTC).
    id : str
        ``"sig-<seq>"``, assigned on receipt.
    seq : int
        Receipt order (1, 2, ...): the FIFO key.
    risk_reward : float or None
        ``|target - entry| / |entry - stop|``.
    priority : Priority
    score : float or None
        `performance_score` of the strategy.
    weight : float or None
        ``score * confidence`` (`ResolutionStrategy.PERFORMANCE_WEIGHTED`).
    allocation_fraction : float or None
        The strategy's fraction of the portfolio.
    allocation : float or None
        The strategy's capital, ``allocation_fraction * nav`` (portfolio currency).
    nav : float or None
        Portfolio value used (currency).
    risk_fraction : float or None
        Fraction of the strategy's capital risked to the stop.
    size : float or None
        Units to trade (whole lots, >= 0).
    status : SignalState
    accepted : bool
        Whether it passed validation, duplicate and conflict checks and was queued.
    superseded_by : str or None
        Id of the signal that won a conflict against this one.
    reason : str or None
        For a rejection: the offending field, ``"duplicate"`` or ``"position"``.
        For a supersession: the rule that decided.
    detail : str
        Human-readable explanation of the rejection or supersession.
    conflicts : tuple of dict
        Conflicts found on receipt: ``{"kind", "with", "portfolio"}``.
    latency_ms : float or None
        Processing time from receipt to decision (milliseconds, excluding the commit).
    execution_result : dict or None
        What `mark_signal_executed` was given.
    metadata : dict
        Input keys that are not signal fields, kept as given.
    """

    symbol: str
    side: Side
    entry: float
    stop: float
    target: float
    confidence: float
    strategy: str
    portfolio: str
    time: datetime
    id: str = ""
    seq: int = 0
    risk_reward: float | None = None
    priority: Priority = Priority.MEDIUM
    score: float | None = None
    weight: float | None = None
    allocation_fraction: float | None = None
    allocation: float | None = None
    nav: float | None = None
    risk_fraction: float | None = None
    size: float | None = None
    status: SignalState = SignalState.QUEUED
    accepted: bool = False
    superseded_by: str | None = None
    reason: str | None = None
    detail: str = ""
    conflicts: tuple[dict[str, Any], ...] = ()
    latency_ms: float | None = None
    execution_result: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """Whether it takes part in conflict checks (queued or dispatched)."""
        return self.status in LIVE_STATES

    def to_record(self) -> dict[str, Any]:
        """JSON-ready dict (the store record's ``data``), by the one codec `pmkit.codec`."""
        return encode(self)

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Signal:
        """Inverse of `to_record` (unknown keys are ignored)."""
        return decode(cls, data)

    def replace(self, **changes: Any) -> Signal:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


# -- validation ----------------------------------------------------------------------------
#: Items kept per list or mapping when input is recorded with `jsonable`.
MAX_RECORDED_ITEMS = 100


def jsonable(value: Any, _depth: int = 0) -> Any:
    """A bounded, JSON-ready picture of ``value``: as given where possible, else its repr.

    Input is recorded as sent (so a rejection record shows what was sent),
    but bounded so hostile input cannot bloat the store: text is cut to
    `pmkit.validation.MAX_MEMO_LENGTH` characters with lone surrogates
    escaped and NUL dropped (`pmkit.validation.safe_text`), containers keep
    their first `MAX_RECORDED_ITEMS` items, nesting stops at
    `pmkit.validation.MAX_JSON_DEPTH`, non-finite or huge numbers and other
    objects become their (cut) repr.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, int | float) and not isinstance(value, StrEnum):
        if isinstance(value, int) and abs(value) <= MAX_AMOUNT:
            return int(value)
        if isinstance(value, float) and math.isfinite(value):
            return float(value)
        return safe_text(repr(value))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return safe_text(str(value))
    if _depth >= MAX_JSON_DEPTH:
        return "<nested too deep>"
    if isinstance(value, list | tuple):
        return [jsonable(v, _depth + 1) for v in value[:MAX_RECORDED_ITEMS]]
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_RECORDED_ITEMS]
        return {safe_text(str(k), MAX_TAG_LENGTH): jsonable(v, _depth + 1) for k, v in items}
    return safe_text(repr(value))


def _price(name: str, value: Any) -> float:
    return check_number(value, name, limit=MAX_PRICE, positive=True)


def _time(value: Any) -> datetime:
    if value is None:
        return _utcnow()
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValidationError("time", value, "must be an ISO-8601 datetime") from exc
    if not isinstance(value, datetime):
        raise ValidationError("time", value, "must be a datetime or ISO-8601 string")
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except (OverflowError, ValueError) as exc:
            raise ValidationError("time", value, "out of the datetime range in UTC") from exc
    # a plain datetime (a pandas Timestamp's nanoseconds dropped): it reads back identical
    v = value
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)


def validate_signal(
    raw: Mapping[str, Any],
    universe: Container[str],
    *,
    portfolio: str,
    strategy: str | None = None,
) -> Signal:
    """Check a signal's fields and values; the first failure raises.

    Checks, in order: ``symbol`` in ``universe``; ``side`` long or short;
    ``entry``, ``stop``, ``target`` finite and > 0; the stop on the loss side
    of the entry and the target on the profit side; ``confidence`` in [0, 1]
    (default 0.5 when absent); ``strategy`` a non-empty name (and equal to the
    ``strategy`` argument when both are given); ``time`` a datetime (default now).
    Whether the strategy is registered and active is `check_strategy`'s job.

    Parameters
    ----------
    raw : mapping
        The signal as sent. Keys other than `SIGNAL_FIELDS` go to ``metadata``.
    universe : container of str
        Tradable asset ids (the market's ``asset`` labels).
    portfolio : str
        The portfolio it is for (already resolved by the caller).
    strategy : str, optional
        The strategy named by the caller (``process_strategy_signal``).

    Returns
    -------
    Signal
        Not yet enriched, with ``status`` queued.

    Raises
    ------
    UnknownAssetError
        ``symbol`` not in the universe (field ``symbol``).
    ValidationError
        Any other check; ``.field`` names the field.
    """
    symbol = raw.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise ValidationError("symbol", symbol, "must be a non-empty asset id")
    check_text(symbol, "symbol", max_length=MAX_NAME_LENGTH, multiline=False)
    if symbol not in universe:
        raise UnknownAssetError("symbol", symbol, "not an asset of the market universe")
    side_raw = raw.get("side")
    try:
        side = Side(side_raw.lower() if isinstance(side_raw, str) else side_raw)
    except ValueError as exc:
        raise ValidationError("side", side_raw, "must be 'long' or 'short'") from exc
    entry = _price("entry", raw.get("entry"))
    stop = _price("stop", raw.get("stop"))
    target = _price("target", raw.get("target"))
    if side is Side.LONG and not stop < entry:
        raise ValidationError("stop", stop, f"a long's stop must be below entry {entry:g}")
    if side is Side.SHORT and not stop > entry:
        raise ValidationError("stop", stop, f"a short's stop must be above entry {entry:g}")
    if side is Side.LONG and not target > entry:
        raise ValidationError("target", target, f"a long's target must be above entry {entry:g}")
    if side is Side.SHORT and not target < entry:
        raise ValidationError("target", target, f"a short's target must be below entry {entry:g}")
    conf_raw = raw.get("confidence", DEFAULT_CONFIDENCE)
    confidence = check_number(conf_raw, "confidence", minimum=0.0, maximum=1.0)
    name = raw.get("strategy", strategy)
    if not isinstance(name, str) or not name:
        raise ValidationError("strategy", name, "must name a registered strategy")
    check_text(name, "strategy", max_length=MAX_NAME_LENGTH, multiline=False)
    if strategy is not None and name != strategy:
        raise ValidationError("strategy", name, f"differs from the strategy argument {strategy!r}")
    when = _time(raw.get("time"))
    extra = {k: v for k, v in raw.items() if k not in SIGNAL_FIELDS}
    extra = json_value(extra, "metadata", max_bytes=MAX_SIGNAL_METADATA_BYTES)
    return Signal(
        symbol=symbol,
        side=side,
        entry=entry,
        stop=stop,
        target=target,
        confidence=confidence,
        strategy=name,
        portfolio=portfolio,
        time=when,
        metadata=extra,
    )


def check_strategy(signal: Signal, info: Any) -> None:
    """Raise `ValidationError` (field ``strategy``) unless ``info`` is active in the portfolio.

    Parameters
    ----------
    signal : Signal
    info : StrategyInfo or None
        The strategy's record in ``signal.portfolio`` (None: not registered).
    """
    if info is None:
        raise ValidationError(
            "strategy", signal.strategy, f"not registered in portfolio {signal.portfolio!r}"
        )
    if not info.active:
        raise ValidationError(
            "strategy", signal.strategy, f"inactive in portfolio {signal.portfolio!r}"
        )


# -- enrichment ------------------------------------------------------------------------------
def risk_reward(entry: float, stop: float, target: float) -> float:
    """Reward per unit of risk: ``|target - entry| / |entry - stop|`` (dimensionless)."""
    return abs(target - entry) / abs(entry - stop)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True, slots=True)
class PriorityRule:
    """The documented priority rule (see the module docstring's table).

    Parameters
    ----------
    low_confidence : float
        Below this confidence a signal is LOW.
    critical_sharpe, critical_max_drawdown, critical_confidence : float
        CRITICAL needs Sharpe >= the first, max drawdown (positive fraction)
        <= the second and confidence >= the third.
    high_sharpe, high_confidence : float
        HIGH needs Sharpe >= the first and confidence >= the second.
    """

    low_confidence: float = 0.25
    critical_sharpe: float = 1.0
    critical_max_drawdown: float = 0.25
    critical_confidence: float = 0.75
    high_sharpe: float = 0.5
    high_confidence: float = 0.5

    def __call__(self, performance: Any, confidence: float) -> Priority:
        """Priority of a signal of ``confidence`` from a strategy with ``performance``.

        Parameters
        ----------
        performance : StrategyPerformance or None
        confidence : float
            In [0, 1].
        """
        sharpe = _finite(getattr(performance, "sharpe", None))
        mdd = _finite(getattr(performance, "max_drawdown", None))
        if confidence < self.low_confidence or (sharpe is not None and sharpe < 0):
            return Priority.LOW
        if sharpe is None:
            return Priority.MEDIUM
        if (
            sharpe >= self.critical_sharpe
            and mdd is not None
            and mdd <= self.critical_max_drawdown
            and confidence >= self.critical_confidence
        ):
            return Priority.CRITICAL
        if sharpe >= self.high_sharpe and confidence >= self.high_confidence:
            return Priority.HIGH
        return Priority.MEDIUM


def performance_score(performance: Any) -> float:
    """``exp(clip(sharpe, -3, 3)) * win_rate`` (> 0; unknown parts: Sharpe 0, win rate 0.5)."""
    sharpe = _finite(getattr(performance, "sharpe", None))
    win = _finite(getattr(performance, "win_rate", None))
    s = 0.0 if sharpe is None else min(max(sharpe, -3.0), 3.0)
    return math.exp(s) * (0.5 if win is None else win)


def position_size(
    nav: float,
    allocation_fraction: float,
    risk_fraction: float,
    entry: float,
    stop: float,
    *,
    lot_size: int = 1,
    max_position_weight: float | None = None,
) -> tuple[float, float]:
    """The strategy's capital and the units of a fixed-fractional position.

    Parameters
    ----------
    nav : float
        Portfolio value (currency). A negative value counts as 0.
    allocation_fraction : float
        The strategy's share of the portfolio, in [0, 1].
    risk_fraction : float
        Fraction of the strategy's capital lost if the stop is hit, in (0, 1].
    entry, stop : float
        Prices per unit, > 0 and different.
    lot_size : int, default 1
        Units per lot.
    max_position_weight : float, optional
        Largest position value as a fraction of the *portfolio's* NAV.

    Returns
    -------
    capital : float
        ``allocation_fraction * nav`` (currency).
    units : float
        ``floor(min(risk_fraction * capital / |entry - stop|,
        max_position_weight * nav / entry) / lot_size) * lot_size``.
    """
    from pmkit.risk.sizing import fixed_fractional_size

    capital = max(allocation_fraction * nav, 0.0)
    # fixed_fractional_size caps relative to the equity it sizes: rescale the
    # portfolio-level limit to the strategy's capital.
    cap = None
    if max_position_weight is not None and capital > 0:
        cap = float(max_position_weight) * max(nav, 0.0) / capital
    units = fixed_fractional_size(
        capital, risk_fraction, entry, stop, lot_size=lot_size, max_position_weight=cap
    )
    return capital, float(units)


def enrich_signal(
    signal: Signal,
    info: Any,
    *,
    nav: float,
    lot_size: int = 1,
    max_position_weight: float | None = None,
    risk_fraction: float = 0.01,
    rule: PriorityRule | None = None,
) -> Signal:
    """``signal`` with risk:reward, priority, performance weight, capital and size filled in.

    Parameters
    ----------
    signal : Signal
        Validated.
    info : StrategyInfo
        The strategy's record (allocation and performance).
    nav : float
        Portfolio value (currency).
    lot_size : int
        The asset's lot size.
    max_position_weight : float, optional
        The portfolio's limit (fraction of NAV).
    risk_fraction : float, default 0.01
        Fraction of the strategy's capital at risk per trade.
    rule : PriorityRule, optional
        Default `PriorityRule()`.
    """
    rule = rule or PriorityRule()
    perf = info.performance
    score = performance_score(perf)
    capital, units = position_size(
        nav,
        float(info.allocation),
        risk_fraction,
        signal.entry,
        signal.stop,
        lot_size=lot_size,
        max_position_weight=max_position_weight,
    )
    return replace(
        signal,
        risk_reward=risk_reward(signal.entry, signal.stop, signal.target),
        priority=rule(perf, signal.confidence),
        score=score,
        weight=score * signal.confidence,
        allocation_fraction=float(info.allocation),
        allocation=capital,
        nav=float(nav),
        risk_fraction=float(risk_fraction),
        size=units,
    )
