"""The price band: ticks far from a symbol's last good price are rejected, not applied.

A feed can send one absurd but valid-looking price (1e308, a misplaced decimal, a
1000x jump). Applied, it would move every holder's live value by orders of magnitude.
`PriceBand` keeps the last good price of every buffer slot and accepts a price ``p``
only when

    last / (1 + band) <= p <= last * (1 + band)

(``band`` is `StreamSettings.price_band`, a fraction: 0.5 accepts from two thirds to
one and a half times the last good price). A slot with no last good price yet accepts
any finite positive price.

A real move larger than the band (a feed that restarted its replay, a halt that
reopened far away) must not freeze the symbol for ever: when ``confirm`` consecutive
rejected prices of a slot each lie within the band of the one before
(`StreamSettings.price_band_confirm`), the last of them is accepted as the new level.
A single absurd price never is.

Within one batch frame every tick is compared with the last good price from before the
frame (vectorized: intraday ticks move far less than a band within one frame).
"""

from __future__ import annotations

import math

import numpy as np

from pmkit.errors import ValidationError

__all__ = ["PriceBand"]


class PriceBand:
    """Last good price per slot and the band around it (see the module docstring).

    Parameters
    ----------
    band : float
        Relative width (a fraction > 0): accepted when ``last / (1 + band) <= p <=
        last * (1 + band)``.
    confirm : int
        Consecutive rejected prices, each within the band of the previous one, after
        which the last is accepted as the new level (>= 2).

    Attributes
    ----------
    rejected : int
        Prices rejected so far (ticks and snapshot prices).
    reanchored : int
        Times a confirmed level replaced a slot's last good price.
    """

    def __init__(self, band: float, confirm: int) -> None:
        if isinstance(band, bool) or not isinstance(band, int | float) or not (
            math.isfinite(band) and band > 0
        ):
            raise ValidationError("price_band", band, "must be a finite fraction > 0")
        if isinstance(confirm, bool) or not isinstance(confirm, int) or confirm < 2:
            raise ValidationError("price_band_confirm", confirm, "must be an integer >= 2")
        self.band = float(band)
        self.confirm = confirm
        self._hi = 1.0 + self.band
        self._lo = 1.0 / self._hi
        self._last = np.full(64, np.nan)
        self._cand = np.full(64, np.nan)  # the latest rejected price, per slot
        self._count = np.zeros(64, dtype=np.int64)  # consecutive confirming rejections
        self.rejected = 0
        self.reanchored = 0

    def _grow(self, n: int) -> None:
        cap = len(self._last)
        if n <= cap:
            return
        new = max(n, 2 * cap)
        self._last = np.concatenate([self._last, np.full(new - cap, np.nan)])
        self._cand = np.concatenate([self._cand, np.full(new - cap, np.nan)])
        self._count = np.concatenate([self._count, np.zeros(new - cap, dtype=np.int64)])

    def seed(self, slots: np.ndarray, prices: np.ndarray) -> None:
        """Set the last good price of ``slots`` (e.g. the valuation's opening prices)."""
        slots = np.asarray(slots, dtype=np.int64)
        prices = np.asarray(prices, dtype=np.float64)
        ok = np.isfinite(prices) & (prices > 0)
        if slots.size:
            self._grow(int(slots.max()) + 1)
        self._last[slots[ok]] = prices[ok]
        self._count[slots] = 0

    def last(self, slot: int) -> float:
        """The last good price of ``slot`` (NaN when none yet)."""
        return float(self._last[slot]) if slot < len(self._last) else math.nan

    def _inside(self, price: np.ndarray | float, ref: np.ndarray | float):
        ratio = price / ref
        return (ratio >= self._lo) & (ratio <= self._hi)

    def accept_one(self, slot: int, price: float) -> bool:
        """Check one price (the single-tick path); True when it may be applied."""
        if slot >= len(self._last):
            self._grow(slot + 1)
        ref = self._last[slot]
        if ref == ref:  # not NaN
            if self._lo <= price / ref <= self._hi:
                self._last[slot] = price
                self._count[slot] = 0
                return True
        elif math.isfinite(price) and price > 0:
            self._last[slot] = price
            return True
        return self._reject(slot, price)

    def accept(self, slots: np.ndarray, prices: np.ndarray) -> np.ndarray:
        """Mask of the prices that may be applied; the last good prices move to them.

        Parameters
        ----------
        slots : numpy.ndarray of int64, shape (n,)
            Slot of each price (>= 0).
        prices : numpy.ndarray of float64, shape (n,)

        Returns
        -------
        numpy.ndarray of bool, shape (n,)
        """
        if slots.size == 0:
            return np.ones(0, dtype=bool)
        top = int(slots.max()) + 1
        if top > len(self._last):
            self._grow(top)
        ref = self._last[slots]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            ok = self._inside(prices, ref)
            fresh = np.isnan(ref) & np.isfinite(prices) & (prices > 0)
        ok |= fresh
        if ok.all():
            self._last[slots] = prices  # a repeated slot keeps one of its (good) prices
            self._count[slots] = 0
            return ok
        self._last[slots[ok]] = prices[ok]
        self._count[slots[ok]] = 0
        for i in np.flatnonzero(~ok):  # rare: an out-of-band price
            ok[i] = self._reject(int(slots[i]), float(prices[i]))
        return ok

    def _reject(self, slot: int, price: float) -> bool:
        """Count a rejection; True when it confirms a new level (then it is accepted)."""
        if not (math.isfinite(price) and price > 0):
            self.rejected += 1
            return False
        cand = self._cand[slot]
        if self._count[slot] and self._lo <= price / cand <= self._hi:
            self._count[slot] += 1
        else:
            self._count[slot] = 1
        self._cand[slot] = price
        if self._count[slot] >= self.confirm:
            self._last[slot] = price
            self._count[slot] = 0
            self.reanchored += 1
            return True
        self.rejected += 1
        return False
