"""Conflicts between signals, and the rules that resolve them (pure functions).

Kinds of conflict (`ConflictKind`), checked against the *live* signals
(queued or dispatched):

``duplicate``
    Same strategy, portfolio, symbol and side as a live signal. The new
    signal is rejected (reason ``"duplicate"``); nothing is resolved.
``opposing``
    A live signal on the same symbol in the same portfolio, on the other
    side, from any strategy. Resolved by the portfolio's `ResolutionStrategy`.
``group``
    As ``opposing``, in another portfolio of the same group (only when the
    coordinator checks group scope). Resolved the same way.
``position``
    The portfolio holds the symbol on the other side (a short signal while
    long, or a long while short). Flagged, or rejected, by coordinator policy.

Resolution
----------
Among the new signal and the live signals it opposes, the winner is the one
with the largest key below (tuples compare left to right; ``seq`` is receipt
order, so ``-seq`` makes the earlier signal win a tie: existing signals take
precedence over the new one):

========================  ==================================================
strategy                  key
========================  ==================================================
HIGHEST_PRIORITY          (priority, confidence, risk_reward, -seq)
BEST_RISK_REWARD          (risk_reward, priority, confidence, -seq)
PERFORMANCE_WEIGHTED      (weight, priority, confidence, -seq), where
                          weight = performance_score * confidence
                          (see `pmkit.coordinator.signals`)
FIRST_IN_FIRST_OUT        (-seq,): the earliest signal wins
========================  ==================================================

A *dispatched* signal (handed to an executor) cannot be recalled, so it wins
against any new signal whatever the rule (reason ``"in_flight"``); among
several, the earliest. If the new signal wins, every signal it opposes is a
loser (they are all on the other side); if an existing signal wins, the new
signal is the only loser and the other opposed signals stay live.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pmkit.coordinator.signals import Signal, SignalState
from pmkit.errors import ValidationError

__all__ = [
    "ConflictKind",
    "Resolution",
    "ResolutionStrategy",
    "find_duplicate",
    "find_opposing",
    "opposes_position",
    "parse_resolution",
    "resolution_key",
    "resolve_signal_conflicts",
]


class ResolutionStrategy(StrEnum):
    """How a conflict between opposing signals is decided (see the module docstring)."""

    HIGHEST_PRIORITY = "highest_priority"
    BEST_RISK_REWARD = "best_risk_reward"
    PERFORMANCE_WEIGHTED = "performance_weighted"
    FIRST_IN_FIRST_OUT = "first_in_first_out"


class ConflictKind(StrEnum):
    """What a new signal collides with."""

    DUPLICATE = "duplicate"
    OPPOSING = "opposing"
    GROUP = "group"
    POSITION = "position"


def parse_resolution(value: ResolutionStrategy | str) -> ResolutionStrategy:
    """A `ResolutionStrategy` from itself, its value or its name (any case)."""
    if isinstance(value, ResolutionStrategy):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        for r in ResolutionStrategy:
            if text in (r.value, r.name.lower()):
                return r
    raise ValidationError(
        "resolution_strategy", value, f"must be one of {[r.name for r in ResolutionStrategy]}"
    )


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of a conflict.

    Attributes
    ----------
    winner : Signal
    losers : tuple of Signal
        To be superseded by the winner.
    strategy : ResolutionStrategy
    reason : str
        The strategy's value, or ``"in_flight"`` when a dispatched signal won.
    new_wins : bool
        Whether the new signal won.
    """

    winner: Signal
    losers: tuple[Signal, ...]
    strategy: ResolutionStrategy
    reason: str
    new_wins: bool


def _num(x: float | None) -> float:
    return float("-inf") if x is None else float(x)


def resolution_key(signal: Signal, strategy: ResolutionStrategy) -> tuple[float, ...]:
    """The key ``strategy`` maximises (see the module docstring's table)."""
    if strategy is ResolutionStrategy.HIGHEST_PRIORITY:
        return (
            float(signal.priority),
            signal.confidence,
            _num(signal.risk_reward),
            -signal.seq,
        )
    if strategy is ResolutionStrategy.BEST_RISK_REWARD:
        return (_num(signal.risk_reward), float(signal.priority), signal.confidence, -signal.seq)
    if strategy is ResolutionStrategy.PERFORMANCE_WEIGHTED:
        return (_num(signal.weight), float(signal.priority), signal.confidence, -signal.seq)
    return (-signal.seq,)


def resolve_signal_conflicts(
    new_signal: Signal,
    conflicting_signals: Sequence[Signal],
    resolution_strategy: ResolutionStrategy | str = ResolutionStrategy.HIGHEST_PRIORITY,
) -> Resolution:
    """Decide between a new signal and the live signals it opposes.

    Parameters
    ----------
    new_signal : Signal
        Enriched, with its ``seq`` (larger than every existing signal's).
    conflicting_signals : sequence of Signal
        Live signals on the other side of the same symbol (non-empty).
    resolution_strategy : ResolutionStrategy or str
        The rule.

    Returns
    -------
    Resolution
        If the new signal wins, the losers are all ``conflicting_signals``;
        otherwise the single loser is ``new_signal``.

    Raises
    ------
    ValidationError
        No conflicting signals, one on the same side as the new one, or an
        unknown strategy.
    """
    rule = parse_resolution(resolution_strategy)
    if not conflicting_signals:
        raise ValidationError("conflicting_signals", [], "nothing to resolve")
    for s in conflicting_signals:
        if s.side == new_signal.side or s.symbol != new_signal.symbol:
            raise ValidationError(
                "conflicting_signals", s.id, "must be on the other side of the same symbol"
            )
    in_flight = [s for s in conflicting_signals if s.status is SignalState.DISPATCHED]
    if in_flight:
        winner = min(in_flight, key=lambda s: s.seq)
        return Resolution(winner, (new_signal,), rule, "in_flight", False)
    candidates = [new_signal, *conflicting_signals]
    winner = max(candidates, key=lambda s: resolution_key(s, rule))
    if winner is new_signal:
        return Resolution(new_signal, tuple(conflicting_signals), rule, rule.value, True)
    return Resolution(winner, (new_signal,), rule, rule.value, False)


def find_duplicate(new_signal: Signal, live: Iterable[Signal]) -> Signal | None:
    """The first live signal with the same strategy, portfolio, symbol and side, or None."""
    for s in live:
        if (
            s.strategy == new_signal.strategy
            and s.portfolio == new_signal.portfolio
            and s.symbol == new_signal.symbol
            and s.side == new_signal.side
        ):
            return s
    return None


def find_opposing(new_signal: Signal, live: Iterable[Signal]) -> list[Signal]:
    """Live signals on the same symbol and the other side, in receipt order."""
    out = [s for s in live if s.symbol == new_signal.symbol and s.side != new_signal.side]
    return sorted(out, key=lambda s: s.seq)


def opposes_position(new_signal: Signal, quantity: float) -> bool:
    """Whether the signal's side is against a held position (units, signed)."""
    return quantity * new_signal.side.sign < 0
