"""A simulated intraday session: the clock and market the engine works against.

Prices follow the live feed's replay model (`pmkit.model.paths`): between
the previous real close and the session's close, each asset's log price is
a Brownian bridge of ``intervals`` steps with the feed's volatility estimate
(`replay_sigma`) and the feed's per-symbol seed (`symbol_rng`). A
``pmkit feed`` replay started the day before the session with the same seed
and ``steps_per_day = intervals`` sends exactly these prices.

Volumes are simulated: each interval trades the asset's ADV (in units at the
previous close) times the intraday profile (default `u_shape_profile`) times
a log-normal factor of mean 1 (``volume_noise`` its log standard
deviation), drawn from a stream of its own so prices do not depend on it.
Where the market has ``volume`` the ADV is estimated from it (`liquidity`);
otherwise it comes from ``adv`` or the cost model's default.

Times are tz-naive UTC, from ``open_time`` to ``close_time`` (default
14:30–21:00, the New York session in winter).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.errors import UnknownAssetError, ValidationError
from pmkit.execution.impact import check_intervals, liquidity, u_shape_profile
from pmkit.model.paths import brownian_bridge, replay_sigma, symbol_rng
from pmkit.validation import check_number

__all__ = ["IntradaySession", "Tick", "simulate_session"]


@dataclass(frozen=True)
class Tick:
    """The end of one interval of a session.

    Attributes
    ----------
    interval : int
        1-based interval that just ended.
    ts : pandas.Timestamp
        Its end time (UTC, tz-naive).
    prices : dict of str to float
        Last price per asset (currency per unit).
    volumes : dict of str to float
        Units traded in the interval per asset.
    """

    interval: int
    ts: pd.Timestamp
    prices: dict[str, float]
    volumes: dict[str, float]


@dataclass(frozen=True)
class IntradaySession:
    """One trading session's simulated prices and volumes.

    Attributes
    ----------
    session : pandas.Timestamp
        The market date (a time of the daily market data).
    previous : pandas.Timestamp
        The market date before it (its close opens the session).
    assets : tuple of str
    times : pandas.DatetimeIndex, length intervals + 1
        The open, then the end of each interval.
    prices : numpy.ndarray, shape (asset, intervals + 1)
        Column 0 is the previous close, the last column the session's close.
    volumes : numpy.ndarray, shape (asset, intervals)
        Units traded per interval.
    adv : numpy.ndarray, shape (asset,)
        Average daily value traded used (currency).
    volatility : numpy.ndarray, shape (asset,)
        Daily volatility of log returns the paths were drawn with (fraction).
    profile : numpy.ndarray, shape (intervals,), optional
        The expected intraday volume shape (fractions, sum 1) the volumes were
        drawn around: what VWAP schedules follow. None: `u_shape_profile`.
    """

    session: pd.Timestamp
    previous: pd.Timestamp
    assets: tuple[str, ...]
    times: pd.DatetimeIndex
    prices: np.ndarray
    volumes: np.ndarray
    adv: np.ndarray
    volatility: np.ndarray
    profile: np.ndarray | None = None

    @property
    def intervals(self) -> int:
        """Number of intervals."""
        return int(self.volumes.shape[1])

    def tick(self, interval: int) -> Tick:
        """The end of ``interval`` (1-based)."""
        if not 1 <= interval <= self.intervals:
            raise ValidationError("interval", interval, f"must be in [1, {self.intervals}]")
        return Tick(
            interval,
            self.times[interval],
            {a: float(p) for a, p in zip(self.assets, self.prices[:, interval], strict=True)},
            {a: float(v) for a, v in zip(self.assets, self.volumes[:, interval - 1],
                                         strict=True)},
        )

    def ticks(self, start: int = 1) -> Iterator[Tick]:
        """Ticks from interval ``start`` to the close."""
        for k in range(start, self.intervals + 1):
            yield self.tick(k)

    def vwap(self, asset: str, first: int = 1, last: int | None = None) -> float:
        """Market VWAP of ``asset`` over intervals ``first..last`` (interval-end prices)."""
        i = self.assets.index(asset)
        last = self.intervals if last is None else last
        p = self.prices[i, first:last + 1]
        v = self.volumes[i, first - 1:last]
        return float(p @ v / v.sum())


def _clock(name: str, value: str) -> pd.Timedelta:
    try:
        out = pd.Timedelta(value + ":00" if value.count(":") == 1 else value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(name, value, "must be a time of day like '14:30'") from exc
    if not pd.Timedelta(0) <= out < pd.Timedelta(days=1):
        raise ValidationError(name, value, "must be a time of day like '14:30'")
    return out


def simulate_session(
    market: xr.Dataset,
    session: Any,
    *,
    assets: Sequence[str] | None = None,
    intervals: int = 390,
    seed: int = 0,
    adv: Mapping[str, float] | None = None,
    default_adv: float = 5e7,
    profile: Any = None,
    volume_noise: float = 0.3,
    open_time: str = "14:30",
    close_time: str = "21:00",
) -> IntradaySession:
    """Simulate ``session``'s intraday prices and volumes (see the module docstring).

    Parameters
    ----------
    market : xarray.Dataset
        Daily ``close(asset, time)``; ``volume(asset, time)`` (units) when known.
    session : date-like
        A time of ``market`` after its first.
    assets : sequence of str, optional
        Default: every asset priced on the session and the day before.
    intervals : int, default 390
        Intervals of the session (one a minute for 6.5 hours).
    seed : int, default 0
        The feed's seed.
    adv : mapping asset -> float, optional
        ADV (currency) where the market has no volumes.
    default_adv : float, default 5e7
        ADV of assets neither the market nor ``adv`` covers (currency).
    profile : array-like, shape (intervals,), optional
        Fractions of the day's volume per interval; default `u_shape_profile`,
        or one estimated from intraday volumes with `estimate_profile`.
    volume_noise : float, default 0.3
        Log standard deviation of the per-interval volume factor (>= 0).
    open_time, close_time : str
        Session hours, UTC.

    Returns
    -------
    IntradaySession
    """
    intervals = check_intervals(intervals)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValidationError("seed", seed, "must be an integer >= 0")
    noise = check_number(volume_noise, "volume_noise", limit=5.0, minimum=0.0)
    default_adv = check_number(default_adv, "default_adv", positive=True)
    opens, closes = _clock("open_time", open_time), _clock("close_time", close_time)
    if closes <= opens:
        raise ValidationError("close_time", close_time, "must be after open_time")
    times = market.indexes["time"]
    try:
        day = pd.Timestamp(session)
    except (TypeError, ValueError) as exc:
        raise ValidationError("session", session, "must be a date") from exc
    if day not in times:
        raise ValidationError("session", session, "not a time of the market data")
    row = int(times.get_loc(day))
    if row == 0:
        raise ValidationError("session", session, "needs the close of the day before")
    close = market["close"].transpose("asset", "time")
    names = [str(a) for a in close["asset"].values]
    values = np.asarray(close.values, dtype=np.float64)
    if assets is None:
        chosen = [a for i, a in enumerate(names)
                  if np.isfinite(values[i, row]) and np.isfinite(values[i, row - 1])]
    else:
        if isinstance(assets, str):
            raise ValidationError("assets", assets, "must be a sequence of asset labels")
        chosen = list(dict.fromkeys(str(a) for a in assets))
        missing = [a for a in chosen if a not in names]
        if missing:
            raise UnknownAssetError("assets", missing, "not in the market data")
        unpriced = [a for a in chosen if not (np.isfinite(values[names.index(a), row])
                                             and np.isfinite(values[names.index(a), row - 1]))]
        if unpriced:
            raise ValidationError("assets", unpriced, f"not priced on {day.date()} and the day "
                                  "before")
    if not chosen:
        raise ValidationError("assets", assets, "no asset to simulate")
    if profile is None:
        shape = u_shape_profile(int(intervals))
    else:
        shape = np.asarray(profile, dtype=np.float64).reshape(-1)
        if shape.size != intervals or not np.isfinite(shape).all() or (shape < 0).any() \
                or shape.sum() <= 0:
            raise ValidationError("profile", f"{shape.size} values",
                                  f"must be {intervals} finite fractions >= 0 with a positive sum")
        shape = shape / shape.sum()
    estimated: dict[str, float] = {}
    if "volume" in market:
        window = min(20, row - 1)
        if window >= 2:
            liq = liquidity(market.isel(time=slice(0, row)), window=window)
            estimated = {str(a): float(v) for a, v in zip(liq["asset"].values, liq["adv"].values,
                                                          strict=True) if np.isfinite(v) and v > 0}
    given = dict(adv or {})
    n = int(intervals)
    prices = np.empty((len(chosen), n + 1))
    volumes = np.empty((len(chosen), n))
    advs = np.empty(len(chosen))
    vols = np.empty(len(chosen))
    for j, a in enumerate(chosen):
        series = values[names.index(a)]
        start, end = float(series[row - 1]), float(series[row])
        sigma = replay_sigma(series, row - 1)
        prices[j] = brownian_bridge(start, end, n, sigma, symbol_rng(seed, a))
        value = estimated.get(a) or given.get(a) or default_adv
        advs[j] = check_number(value, f"adv[{a!r}]", positive=True)
        vols[j] = sigma
        rng = np.random.default_rng([int(seed), zlib.crc32(a.encode()), 1])
        factor = np.exp(noise * rng.standard_normal(n) - 0.5 * noise**2)
        volumes[j] = advs[j] / start * shape * factor
    grid = pd.date_range(day.normalize() + opens, day.normalize() + closes, periods=n + 1)
    return IntradaySession(day, times[row - 1], tuple(chosen), grid, prices, volumes, advs, vols,
                           shape)
