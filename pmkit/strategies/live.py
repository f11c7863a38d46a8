"""Signal strategies on a live price stream: pure rules of one symbol's price history.

Each rule looks at the prices observed so far for one symbol (oldest first,
the last one is the price now) and says whether *this* observation is an
entry: it returns an `Idea` (side, entry, stop, target, confidence) or None.
A rule fires on the observation where its condition *starts* to hold (a
crossing), not on every observation while it holds, so a steady trend does
not repeat its signal. Rules are pure functions of the history and their
parameters: the same series gives the same ideas, offline or live.

The entry is the last price; the stop and target are derived from the
prices (no outside data), so a long has ``stop < entry < target`` and a
short ``target < entry < stop``, as `pmkit.coordinator.signals.validate_signal`
requires. Volatilities are sample standard deviations (ddof 1) of simple
returns between consecutive observations.

=================== ======================================================================
rule                fires when (at the last observation ``p[-1]``)
=================== ======================================================================
`ma_crossover`      the mean of the last ``fast`` prices crosses the mean of the last
                    ``slow`` prices: up -> long, down -> short. Stop ``stop_sigmas``
                    volatilities of ``slow`` returns from the entry, target ``reward``
                    times as far on the other side.
`breakout`          the price leaves the channel (high, low) of the ``window``
                    observations before it, having been inside the previous channel:
                    above -> long, below -> short. Stop at the channel's middle,
                    target ``reward`` times the risk on the other side.
`mean_reversion`    the z-score of the price against the ``window`` observations before
                    it crosses ``-threshold`` (long) or ``+threshold`` (short). Target
                    the window's mean, stop ``stop_sigmas`` window standard deviations
                    (in price) beyond the entry.
=================== ======================================================================

`LIVE_STRATEGIES` registers them by name with their parameters (`Param`:
default and bounds); `live_strategy` looks one up and `register_live_strategy`
adds another. Every strategy also takes the two rate limits of a run
(`RATE_PARAMS`, applied by `RateLimit`): ``min_interval`` seconds between two
signals on the same symbol and at most ``max_per_minute`` signals in any 60 s.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pmkit.errors import NotFoundError, ValidationError
from pmkit.validation import MAX_NAME_LENGTH, MAX_PRICE, check_text

__all__ = [
    "LIVE_STRATEGIES",
    "RATE_PARAMS",
    "Idea",
    "LiveStrategy",
    "Param",
    "RateLimit",
    "breakout",
    "live_strategy",
    "ma_crossover",
    "mean_reversion",
    "register_live_strategy",
]


@dataclass(frozen=True, slots=True)
class Idea:
    """An entry a rule proposes at the last observed price (a signal before routing).

    Attributes
    ----------
    side : {"long", "short"}
    entry, stop, target : float
        Prices (currency per unit), > 0; long: ``stop < entry < target``,
        short: ``target < entry < stop``.
    confidence : float
        In [0, 1].
    reason : str
        Why the rule fired, for people.
    """

    side: str
    entry: float
    stop: float
    target: float
    confidence: float
    reason: str

    def signal(self, symbol: str, strategy: str, portfolio: str, **metadata: Any) -> dict[str, Any]:
        """The signal mapping `StrategyCoordinator.process_signal` takes (extra keys: metadata)."""
        return {
            "symbol": symbol,
            "side": self.side,
            "entry": self.entry,
            "stop": self.stop,
            "target": self.target,
            "confidence": self.confidence,
            "strategy": strategy,
            "portfolio": portfolio,
            "reason": self.reason,
            **metadata,
        }


def _prices(prices: Any) -> np.ndarray:
    p = np.asarray(prices, dtype=np.float64)
    if p.ndim != 1:
        raise ValidationError("prices", f"<array of shape {p.shape}>", "must be one-dimensional")
    bad = ~(np.isfinite(p) & (p > 0) & (p <= MAX_PRICE))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValidationError("prices", float(p[i]), f"observation {i} is not a price in "
                              f"(0, {MAX_PRICE:g}]")
    return p


def _volatility(p: np.ndarray, n: int) -> float:
    """Sample std (ddof 1) of the last ``n`` simple returns (needs ``n + 1`` prices, n >= 2)."""
    tail = p[-n - 1 :]
    r = tail[1:] / tail[:-1] - 1.0
    return float(r.std(ddof=1))


def _bracket(side: str, entry: float, risk: float, reward: float) -> tuple[float, float] | None:
    """(stop, target) ``risk`` from the entry and ``reward * risk`` beyond it; None if not > 0."""
    if not (risk > 0 and math.isfinite(risk)):
        return None
    if side == "long":
        stop, target = entry - risk, entry + reward * risk
    else:
        stop, target = entry + risk, entry - reward * risk
    if not (stop > 0 and target > 0 and stop != entry and target != entry):
        return None
    if max(stop, target) > MAX_PRICE:
        return None
    return stop, target


def ma_crossover(
    prices: Any, *, fast: int = 5, slow: int = 20, stop_sigmas: float = 2.0, reward: float = 2.0
) -> Idea | None:
    """Moving-average crossover at the last observation.

    With ``F_t`` the mean of the ``fast`` prices ending at observation ``t``,
    ``S_t`` that of the ``slow`` prices, and ``d_t = F_t - S_t``: long when
    ``d_prev <= 0 < d_now``, short when ``d_prev >= 0 > d_now``.

    Parameters
    ----------
    prices : array_like, shape (n,)
        Observed prices of one symbol, oldest first (currency per unit, > 0).
        Needs ``n >= slow + 1``; fewer gives None.
    fast, slow : int
        Window lengths in observations, ``1 <= fast < slow``.
    stop_sigmas : float
        Stop distance in volatilities: ``risk = stop_sigmas * sigma * entry``,
        ``sigma`` the std of the last ``slow`` simple returns.
    reward : float
        Target distance over stop distance (the risk:reward ratio).

    Returns
    -------
    Idea or None
        ``confidence = 0.5 + 0.5 * min(1, |d_now| / (sigma * entry))``.
    """
    p = _prices(prices)
    if len(p) < slow + 1:
        return None
    d_now = p[-fast:].mean() - p[-slow:].mean()
    d_prev = p[-fast - 1 : -1].mean() - p[-slow - 1 : -1].mean()
    if d_prev <= 0 < d_now:
        side = "long"
    elif d_prev >= 0 > d_now:
        side = "short"
    else:
        return None
    entry = float(p[-1])
    sigma = _volatility(p, slow)
    bracket = _bracket(side, entry, stop_sigmas * sigma * entry, reward)
    if bracket is None:
        return None
    confidence = 0.5 + 0.5 * min(1.0, abs(float(d_now)) / (sigma * entry))
    way = "above" if side == "long" else "below"
    return Idea(side, entry, *bracket, confidence,
                f"MA({fast}) crossed {way} MA({slow})")


def breakout(prices: Any, *, window: int = 20, reward: float = 2.0) -> Idea | None:
    """Channel breakout at the last observation.

    ``H``, ``L``: the highest and lowest of the ``window`` prices before the
    last; ``H0``, ``L0`` the same one observation earlier. Long when
    ``p[-1] > H`` and ``p[-2] <= H0`` (a fresh break up), short when
    ``p[-1] < L`` and ``p[-2] >= L0``.

    Parameters
    ----------
    prices : array_like, shape (n,)
        Observed prices, oldest first; needs ``n >= window + 2``.
    window : int
        Channel length in observations (>= 2).
    reward : float
        Target distance over stop distance.

    Returns
    -------
    Idea or None
        Stop at the channel middle ``(H + L) / 2``; ``confidence = 0.5 + 0.5 *
        min(1, beyond / (H - L))`` with ``beyond`` the distance past the
        channel (1 when the channel is flat).
    """
    p = _prices(prices)
    if len(p) < window + 2:
        return None
    hi, lo = float(p[-window - 1 : -1].max()), float(p[-window - 1 : -1].min())
    hi0, lo0 = float(p[-window - 2 : -2].max()), float(p[-window - 2 : -2].min())
    entry, before = float(p[-1]), float(p[-2])
    if entry > hi and before <= hi0:
        side, beyond = "long", entry - hi
    elif entry < lo and before >= lo0:
        side, beyond = "short", lo - entry
    else:
        return None
    middle = (hi + lo) / 2.0
    bracket = _bracket(side, entry, abs(entry - middle), reward)
    if bracket is None:
        return None
    confidence = 1.0 if hi == lo else 0.5 + 0.5 * min(1.0, beyond / (hi - lo))
    way = "above" if side == "long" else "below"
    return Idea(side, entry, *bracket, confidence,
                f"broke {way} the {window}-observation channel")


def _zscore(p: np.ndarray, end: int, window: int) -> tuple[float, float, float] | None:
    """(z, mean, std) of ``p[end]`` against the ``window`` prices before it; None if flat."""
    n = len(p)
    k = end % n
    ref = p[k - window : k]
    s = float(ref.std(ddof=1))
    if not s > 0:
        return None
    m = float(ref.mean())
    return (float(p[k]) - m) / s, m, s


def mean_reversion(
    prices: Any, *, window: int = 20, threshold: float = 2.0, stop_sigmas: float = 1.0
) -> Idea | None:
    """Mean reversion when the price's z-score crosses ``threshold``.

    ``z_t = (p_t - m_t) / s_t`` with ``m_t``, ``s_t`` the mean and std (ddof 1)
    of the ``window`` prices before observation ``t``. Long when
    ``z_now <= -threshold < z_prev``, short when ``z_now >= threshold > z_prev``.

    Parameters
    ----------
    prices : array_like, shape (n,)
        Observed prices, oldest first; needs ``n >= window + 2``.
    window : int
        Reference window in observations (>= 3).
    threshold : float
        z-score that triggers (> 0).
    stop_sigmas : float
        Stop distance in window standard deviations (price units).

    Returns
    -------
    Idea or None
        Target ``m_now`` (the window mean), stop ``entry -+ stop_sigmas * s_now``,
        ``confidence = min(1, |z_now| / (2 * threshold))``.
    """
    p = _prices(prices)
    if len(p) < window + 2:
        return None
    now, prev = _zscore(p, -1, window), _zscore(p, -2, window)
    if now is None or prev is None:
        return None
    z, m, s = now
    z_prev = prev[0]
    if z <= -threshold < z_prev:
        side = "long"
    elif z >= threshold > z_prev:
        side = "short"
    else:
        return None
    entry = float(p[-1])
    stop = entry - stop_sigmas * s if side == "long" else entry + stop_sigmas * s
    if not (stop > 0 and stop <= MAX_PRICE and (stop < entry < m or m < entry < stop)):
        return None
    confidence = min(1.0, abs(z) / (2.0 * threshold))
    return Idea(side, entry, stop, m, confidence,
                f"z-score {z:+.2f} crossed {'-' if side == 'long' else '+'}{threshold:g}")


# -- parameters and the registry of strategies -------------------------------------------------
@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a live strategy.

    Attributes
    ----------
    name : str
    default : int or float
    minimum, maximum : float
        Inclusive bounds.
    integer : bool
        Whole numbers only.
    doc : str
        What it means, with its unit.
    """

    name: str
    default: float
    minimum: float
    maximum: float
    integer: bool = False
    doc: str = ""

    def parse(self, value: Any) -> float | int:
        """``value`` (a number, or its text as typed in ``%pm`` or a form) checked and typed."""
        raw = value
        if isinstance(value, str):
            text = value.strip()
            try:
                value = int(text) if self.integer else float(text)
            except ValueError:
                kind = "a whole number" if self.integer else "a number"
                raise ValidationError(self.name, raw, f"must be {kind}") from None
        if isinstance(value, bool | np.bool_) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            raise ValidationError(self.name, raw, "must be a number")
        x = float(value)
        if not math.isfinite(x):
            raise ValidationError(self.name, raw, "must be a finite number")
        if self.integer and x != int(x):
            raise ValidationError(self.name, raw, "must be a whole number")
        if not self.minimum <= x <= self.maximum:
            raise ValidationError(
                self.name, raw, f"must be in [{self.minimum:g}, {self.maximum:g}]"
            )
        return int(x) if self.integer else x


#: Rate limits every run takes besides its rule's parameters (see `RateLimit`).
RATE_PARAMS = (
    Param("min_interval", 30.0, 0.0, 86_400.0,
          doc="least seconds between two signals on the same symbol"),
    Param("max_per_minute", 6, 1, 600, integer=True,
          doc="most signals of the run in any 60 seconds"),
)


@dataclass(frozen=True)
class LiveStrategy:
    """A named live rule with its parameters (an entry of `LIVE_STRATEGIES`).

    Attributes
    ----------
    name : str
        Registry key and the strategy name its signals carry.
    rule : callable
        ``rule(prices, **rule_params) -> Idea | None``, pure.
    params : tuple of Param
        The rule's parameters (`RATE_PARAMS` are added by `parameters`).
    summary : str
        One line for people.
    history : callable
        ``history(rule_params) -> int``: observations the rule looks at.
    check : callable, optional
        ``check(rule_params)`` raising `ValidationError` for inconsistent values.
    """

    name: str
    rule: Callable[..., Idea | None]
    params: tuple[Param, ...]
    summary: str
    history: Callable[[Mapping[str, Any]], int]
    check: Callable[[Mapping[str, Any]], None] | None = None

    @property
    def all_params(self) -> tuple[Param, ...]:
        """The rule's parameters, then the rate limits."""
        return (*self.params, *RATE_PARAMS)

    def defaults(self) -> dict[str, float | int]:
        """Every parameter at its default."""
        return {p.name: p.default for p in self.all_params}

    def parameters(self, given: Mapping[str, Any] | None = None) -> dict[str, float | int]:
        """Defaults overridden by ``given``, each checked (`ValidationError` names the parameter).

        Raises
        ------
        ValidationError
            ``given`` is not a mapping (field ``params``), names an unknown
            parameter (field ``params``), or a value is out of its bounds
            (field: the parameter's name).
        """
        if given is None:
            given = {}
        if not isinstance(given, Mapping):
            raise ValidationError("params", type(given).__name__, "must be a mapping name -> value")
        known = {p.name: p for p in self.all_params}
        out = self.defaults()
        for key, value in given.items():
            if not isinstance(key, str) or key not in known:
                raise ValidationError(
                    "params", key, f"is not a parameter of {self.name}; one of {sorted(known)}"
                )
            out[key] = known[key].parse(value)
        if self.check is not None:
            self.check(self.rule_params(out))
        return out

    def rule_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The rule's own parameters out of ``params`` (the rate limits left out)."""
        return {p.name: params[p.name] for p in self.params}

    def __call__(self, prices: Any, **params: Any) -> Idea | None:
        """The rule on ``prices`` with checked parameters (defaults for those not given)."""
        return self.rule(prices, **self.rule_params(self.parameters(params)))


def _fast_below_slow(params: Mapping[str, Any]) -> None:
    if not params["fast"] < params["slow"]:
        raise ValidationError("fast", params["fast"], f"must be below slow={params['slow']}")


#: Live strategies by name.
LIVE_STRATEGIES: dict[str, LiveStrategy] = {}


def register_live_strategy(strategy: LiveStrategy) -> LiveStrategy:
    """Add ``strategy`` to `LIVE_STRATEGIES` (its name: a strategy name a portfolio may register).

    Raises
    ------
    ValidationError
        A bad name, or the name is taken by another strategy.
    """
    # the rule StrategyManager.register_strategy applies: the signals carry this name
    from pmkit.strategies.manager import _NAME

    name = check_text(strategy.name, "name", max_length=MAX_NAME_LENGTH, multiline=False)
    if not _NAME.fullmatch(name):
        raise ValidationError("name", name, "must be 1-64 of lowercase letters, digits, '_', '-'")
    existing = LIVE_STRATEGIES.get(name)
    if existing is not None and existing != strategy:
        raise ValidationError("name", name, "is already a live strategy")
    LIVE_STRATEGIES[name] = strategy
    return strategy


def live_strategy(name: Any) -> LiveStrategy:
    """The live strategy called ``name``.

    Raises
    ------
    ValidationError
        ``name`` is not single-line text.
    NotFoundError
        No live strategy has that name (the message lists them).
    """
    check_text(name, "strategy", max_length=MAX_NAME_LENGTH, multiline=False)
    try:
        return LIVE_STRATEGIES[name]
    except KeyError:
        raise NotFoundError(f"live strategy (one of {sorted(LIVE_STRATEGIES)})", name) from None


for _spec in (
    LiveStrategy(
        "ma_crossover", ma_crossover,
        (Param("fast", 5, 1, 500, integer=True, doc="short moving average, observations"),
         Param("slow", 20, 2, 1000, integer=True, doc="long moving average, observations"),
         Param("stop_sigmas", 2.0, 0.1, 20.0, doc="stop distance, in volatilities"),
         Param("reward", 2.0, 0.1, 20.0, doc="target distance over stop distance")),
        "moving-average crossover: long on a cross up, short on a cross down",
        lambda q: int(q["slow"]) + 1, _fast_below_slow,
    ),
    LiveStrategy(
        "breakout", breakout,
        (Param("window", 20, 2, 1000, integer=True, doc="channel length, observations"),
         Param("reward", 2.0, 0.1, 20.0, doc="target distance over stop distance")),
        "channel breakout: long above the recent high, short below the recent low",
        lambda q: int(q["window"]) + 2,
    ),
    LiveStrategy(
        "mean_reversion", mean_reversion,
        (Param("window", 20, 3, 1000, integer=True, doc="reference window, observations"),
         Param("threshold", 2.0, 0.1, 10.0, doc="z-score that triggers"),
         Param("stop_sigmas", 1.0, 0.1, 20.0, doc="stop distance, in window std devs")),
        "mean reversion: long when the z-score falls through -threshold, short through +",
        lambda q: int(q["window"]) + 2,
    ),
):
    register_live_strategy(_spec)


class RateLimit:
    """The rate limits of one run: per symbol and per minute.

    A signal on ``symbol`` at time ``now`` is allowed when the last allowed
    signal on that symbol was at least ``min_interval`` seconds before and
    fewer than ``max_per_minute`` were allowed in ``(now - 60, now]``.
    Times are seconds on any monotonic clock, passed in (no hidden clock).

    Parameters
    ----------
    min_interval : float
        Seconds, >= 0.
    max_per_minute : int
        >= 1.
    """

    def __init__(self, min_interval: float, max_per_minute: int) -> None:
        self.min_interval = float(min_interval)
        self.max_per_minute = int(max_per_minute)
        self._last: dict[str, float] = {}
        self._recent: deque[float] = deque()

    def allow(self, symbol: str, now: float) -> bool:
        """Whether a signal on ``symbol`` may go now; when it may, it is counted."""
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()
        last = self._last.get(symbol)
        if last is not None and now - last < self.min_interval:
            return False
        if len(self._recent) >= self.max_per_minute:
            return False
        self._last[symbol] = now
        self._recent.append(now)
        return True
