"""Seeded intraday price paths: Brownian bridges and GBM (pure numpy).

Used by ``pmkit feed`` and by the execution engine's simulated sessions.

A Brownian bridge joins two real daily closes with a random intraday path
that hits both exactly, so a replay of real history has plausible ticks in
between and never drifts away from the real closes. A geometric Brownian
motion (GBM) generates prices with no history at all (synthetic symbols,
load tests).
"""

from __future__ import annotations

import math
import zlib

import numpy as np

from pmkit.errors import ValidationError

__all__ = ["brownian_bridge", "gbm_path", "replay_sigma", "symbol_rng"]

#: Daily volatility used where a symbol has fewer than 2 returns.
FALLBACK_DAILY_VOL = 0.02

#: Returns in the window `replay_sigma` estimates over.
VOL_WINDOW = 60


def symbol_rng(seed: int, symbol: str) -> np.random.Generator:
    """The random generator of one symbol's path.

    Seeded by ``(seed, crc32(symbol))``, so a symbol's path depends only on the
    seed and its own name: not on which other symbols are served, nor on the
    order clients subscribe in.
    """
    return np.random.default_rng([int(seed), zlib.crc32(symbol.encode())])


def _check_price(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValidationError(name, value, "must be a finite price > 0")


def brownian_bridge(
    start: float, end: float, steps: int, volatility: float, rng: np.random.Generator
) -> np.ndarray:
    """A price path whose log is a Brownian bridge from ``start`` to ``end``.

    With ``t_k = k / steps`` and ``W`` a Brownian motion of variance
    ``volatility**2`` per unit time, the log price is
    ``log(start) + t_k * log(end / start) + W(t_k) - t_k * W(1)``: a straight
    line in log space plus a bridge of variance ``volatility**2 * t_k * (1 - t_k)``.

    Parameters
    ----------
    start, end : float
        Prices at ``t = 0`` and ``t = 1`` (> 0, e.g. two consecutive daily closes).
    steps : int
        Number of increments (>= 1); the path has ``steps + 1`` points.
    volatility : float
        Volatility of the log price over the whole span (a fraction; for a
        one-day span, the daily volatility of log returns), >= 0.
    rng : numpy.random.Generator
        Source of the ``steps`` standard normal draws (consumed exactly).

    Returns
    -------
    numpy.ndarray, shape (steps + 1,)
        Prices; ``[0] == start`` and ``[-1] == end`` exactly (not merely to
        rounding: the endpoints are set, not computed).
    """
    _check_price("start", start)
    _check_price("end", end)
    if not isinstance(steps, int | np.integer) or steps < 1:
        raise ValidationError("steps", steps, "must be an integer >= 1")
    if not (math.isfinite(volatility) and volatility >= 0):
        raise ValidationError("volatility", volatility, "must be finite and >= 0")
    t = np.arange(steps + 1, dtype=np.float64) / steps
    walk = np.empty(steps + 1)
    walk[0] = 0.0
    np.cumsum(rng.standard_normal(steps) * (volatility / math.sqrt(steps)), out=walk[1:])
    log_path = math.log(start) + t * math.log(end / start) + (walk - t * walk[-1])
    out = np.exp(log_path)
    out[0] = start
    out[-1] = end
    return out


def gbm_path(
    s0: float, steps: int, volatility: float, dt: float, rng: np.random.Generator, mu: float = 0.0
) -> np.ndarray:
    """A geometric Brownian motion sampled every ``dt``.

    ``S_{k+1} = S_k * exp((mu - volatility**2 / 2) * dt + volatility * sqrt(dt) * Z_k)``,
    exact in distribution for any ``dt`` (``E[S_k] = s0 * exp(mu * k * dt)``).

    Parameters
    ----------
    s0 : float
        Price at step 0 (> 0).
    steps : int
        Number of increments (>= 0); the path has ``steps + 1`` points.
    volatility : float
        Annualized volatility of log returns (a fraction, e.g. 0.2), >= 0.
    dt : float
        Step length in years (> 0).
    rng : numpy.random.Generator
        Source of the ``steps`` standard normal draws (consumed exactly).
    mu : float, default 0.0
        Annualized arithmetic drift (a fraction).

    Returns
    -------
    numpy.ndarray, shape (steps + 1,)
        Prices; ``[0] == s0``.
    """
    _check_price("s0", s0)
    if not isinstance(steps, int | np.integer) or steps < 0:
        raise ValidationError("steps", steps, "must be an integer >= 0")
    if not (math.isfinite(volatility) and volatility >= 0):
        raise ValidationError("volatility", volatility, "must be finite and >= 0")
    if not (math.isfinite(dt) and dt > 0):
        raise ValidationError("dt", dt, "must be finite and > 0")
    incr = (mu - 0.5 * volatility**2) * dt + volatility * math.sqrt(dt) * rng.standard_normal(steps)
    out = np.empty(steps + 1)
    out[0] = 0.0
    np.cumsum(incr, out=out[1:])
    out = s0 * np.exp(out)
    out[0] = s0
    return out


def replay_sigma(closes: np.ndarray, t0: int, window: int = VOL_WINDOW) -> float:
    """Daily volatility of log returns over the ``window`` days ending at row ``t0``.

    Parameters
    ----------
    closes : numpy.ndarray, shape (time,)
        One symbol's closes (NaN where unpriced; NaN rows are dropped first).
    t0 : int
        Row of the replay's start date (included).
    window : int, default 60
        Number of returns (fewer where the history is shorter).

    Returns
    -------
    float
        Sample standard deviation (ddof 1) of daily log returns, a fraction;
        0.02 when fewer than 2 returns exist.
    """
    hist = closes[max(0, t0 - window) : t0 + 1]
    hist = hist[np.isfinite(hist)]
    rets = np.diff(np.log(hist))
    if rets.size < 2:
        return FALLBACK_DAILY_VOL
    return float(np.std(rets, ddof=1))
