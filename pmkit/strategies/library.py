"""Three classic rule-based equity strategies on a pmkit market dataset.

Each ranks the assets that have prices at every month end, holds the chosen
ones in equal weight until the next month end (weights drift with prices in
between) and reports the daily simple returns of that sleeve, gross of
costs. They are causal: the weights chosen at a month-end close use only
closes up to that day and earn returns from the next day on.

================================ =============================================== ===============
strategy                         score at a month end (higher is chosen)         reference
================================ =============================================== ===============
`CrossSectionalMomentum`         return from ``lookback`` to ``skip`` days ago    Jegadeesh &
                                 (12-1 momentum by default)                       Titman (1993)
`ShortTermReversal`              minus the return over the last ``lookback``      Jegadeesh (1990)
                                 days (last month's losers)
`LowVolatility`                  minus the volatility of daily returns over       Baker, Bradley &
                                 the last ``lookback`` days                       Wurgler (2011)
================================ =============================================== ===============
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pmkit.errors import InsufficientDataError, UnknownAssetError, ValidationError

__all__ = ["CrossSectionalMomentum", "LowVolatility", "RankingStrategy", "ShortTermReversal"]


class RankingStrategy:
    """Monthly top-``top`` equal-weight selection by a score (subclasses define the score).

    Parameters
    ----------
    market : xarray.Dataset
        With ``close(asset, time)`` (NaN before listing).
    top : int, default 5
        Assets held.
    lookback : int
        Days of history the score needs.
    universe : sequence of str, optional
        Assets eligible (default: all).
    start, end : datetime-like, optional
        Period of the returned series.
    """

    name = "ranking"

    def __init__(
        self,
        market: xr.Dataset,
        *,
        top: int = 5,
        lookback: int = 252,
        universe: Sequence[str] | None = None,
        start: Any = None,
        end: Any = None,
    ) -> None:
        if not isinstance(top, int) or isinstance(top, bool) or top < 1:
            raise ValidationError("top", top, "must be an integer >= 1")
        if not isinstance(lookback, int) or isinstance(lookback, bool) or lookback < 2:
            raise ValidationError("lookback", lookback, "must be an integer >= 2")
        assets = list(market.indexes["asset"])
        if universe is not None:
            for a in universe:
                if a not in assets:
                    raise UnknownAssetError("universe", a, "not in the market data")
            assets = list(universe)
        close = market["close"].sel(asset=assets).transpose("time", "asset")
        if start is not None or end is not None:
            close = close.sel(time=slice(None, end))
        self.top = top
        self.lookback = lookback
        self.start = None if start is None else pd.Timestamp(start)
        self._close = pd.DataFrame(close.values, index=close.indexes["time"], columns=assets)
        self._weights, self._returns = self._run()

    # -- the rule ------------------------------------------------------------------
    def score(self, history: np.ndarray) -> np.ndarray:
        """Score per asset from ``history`` (the last ``lookback + 1`` closes, shape (L, N))."""
        raise NotImplementedError

    def _run(self) -> tuple[pd.DataFrame, pd.Series]:
        px = self._close.to_numpy()
        dates = self._close.index
        month_end = np.r_[dates.month[1:] != dates.month[:-1], True]
        rets = np.full(len(dates), np.nan)
        w = np.zeros(px.shape[1])
        held = False
        rows: dict[pd.Timestamp, np.ndarray] = {}
        for t in range(1, len(dates)):
            if held:
                r = px[t] / px[t - 1] - 1.0
                r = np.where(np.isfinite(r), r, 0.0)
                gross = w @ (1.0 + r)
                rets[t] = gross - 1.0
                w = w * (1.0 + r) / gross
            if month_end[t] and t >= self.lookback:
                hist = px[t - self.lookback : t + 1]
                ok = np.isfinite(hist).all(axis=0)
                if ok.sum() >= self.top:
                    s = np.where(ok, self.score(np.where(ok, hist, 1.0)), -np.inf)
                    chosen = np.argsort(-s, kind="stable")[: self.top]
                    w = np.zeros(px.shape[1])
                    w[chosen] = 1.0 / self.top
                    held = True
                    rows[dates[t]] = w.copy()
        series = pd.Series(rets, index=dates, name=self.name).dropna()
        if self.start is not None:
            series = series[series.index >= self.start]
        if series.empty:
            raise InsufficientDataError("market", len(dates), "too short for the lookback")
        weights = pd.DataFrame.from_dict(rows, orient="index", columns=self._close.columns)
        return weights, series

    # -- the Strategy protocol ------------------------------------------------------
    def returns(self) -> pd.Series:
        """Daily simple returns of the sleeve (fractions), gross of costs."""
        return self._returns.copy()

    def target_weights(self, at: Any = None) -> dict[str, float]:
        """Weights chosen at the last month end on or before ``at`` (default: the last)."""
        w = self._weights if at is None else self._weights.loc[: pd.Timestamp(at)]
        if w.empty:
            raise InsufficientDataError("at", str(at), "no selection yet at that date")
        row = w.iloc[-1]
        return {str(a): float(v) for a, v in row.items() if v > 0}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(top={self.top}, lookback={self.lookback})"


class CrossSectionalMomentum(RankingStrategy):
    """Hold the ``top`` assets with the best return from ``lookback`` to ``skip`` days ago."""

    name = "momentum"

    def __init__(self, market: xr.Dataset, *, skip: int = 21, lookback: int = 252, **kw: Any):
        if not isinstance(skip, int) or not 0 <= skip < lookback:
            raise ValidationError("skip", skip, "must be an integer in [0, lookback)")
        self.skip = skip
        super().__init__(market, lookback=lookback, **kw)

    def score(self, history: np.ndarray) -> np.ndarray:
        """Return from ``lookback`` to ``skip`` days ago."""
        return history[-1 - self.skip] / history[0] - 1.0


class ShortTermReversal(RankingStrategy):
    """Hold the ``top`` worst performers of the last ``lookback`` days (default 21)."""

    name = "reversal"

    def __init__(self, market: xr.Dataset, *, lookback: int = 21, **kw: Any):
        super().__init__(market, lookback=lookback, **kw)

    def score(self, history: np.ndarray) -> np.ndarray:
        """Minus the return over the window."""
        return -(history[-1] / history[0] - 1.0)


class LowVolatility(RankingStrategy):
    """Hold the ``top`` assets with the lowest daily volatility over ``lookback`` days (63)."""

    name = "low_vol"

    def __init__(self, market: xr.Dataset, *, lookback: int = 63, **kw: Any):
        super().__init__(market, lookback=lookback, **kw)

    def score(self, history: np.ndarray) -> np.ndarray:
        """Minus the daily volatility over the window."""
        r = history[1:] / history[:-1] - 1.0
        return -r.std(axis=0, ddof=1)
