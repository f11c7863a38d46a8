"""Live, incremental revaluation of a registry's portfolios and groups.

`LiveValuation` keeps the book as arrays and moves them with market data:

* ``H`` (P × N): units held per portfolio and asset, from the ledger replay
  (`Registry.positions`); columns are `LiveValuation.symbols`;
* ``c`` (P): cash; ``p`` (N): current prices; ``V`` (P): current values
  ``H @ p + c``; ``V_open`` (P): values at the opening prices (the closes at
  ``at``, the last known close when ``at`` has none);
* ``M`` (G × P): group membership, each tracked leaf portfolio counted once
  per group, nested groups included (`Registry.get_group_portfolios`).

`LiveValuation.update` takes a conflated flush (changed columns and their
latest prices) and makes ONE call to the jitted, vmapped kernel
`pmkit.core.live.apply_price_changes`, which adds ``H[:, idx] @ (new - old)``
to every portfolio's value and P&L (only the changed columns are read) and
recomputes the group values ``M @ V``. It then publishes one
``"stream.valuation"`` event per affected portfolio (routed to that
portfolio's subscribers and its groups') and one ``"stream.group_valuation"``
per affected group. These go straight to ``registry.bus``, not through
`Registry.mutation`: a price tick is market data, not a change of the book,
so there is nothing to audit or to commit; the book's own changes (trades,
cash flows) are audited where they happen, in the registry.

P&L since the open
------------------
``pnl = V - V_open - flows``, where ``flows`` are the external cash flows
(``ledger.cash`` entries) booked since the valuation was built. It is kept
incrementally, never recomputed: a price update adds the kernel's ``delta``;
a trade of ``q`` units at ``exec`` with fee ``f``, marked at the current
price ``mark``, changes ``V`` (and the P&L) by ``q * (mark - exec) - f``: a
fill at the mark is value-neutral except for its fee, and slippage shows as
P&L immediately; a cash flow moves ``V`` and ``flows`` by the same amount and
leaves the P&L alone.

Soundness
---------
The incremental sums must equal a full recomputation ``H @ p + c``. After each
kernel call `update` checks the result: a non-finite value, P&L or change, or a
cancellation that lost more than 20 of the 53 significant bits (``|V_old| + |delta|
> 2**20 * |V_new|``, e.g. a price that went up a million-fold and came back), makes
it recompute every value from scratch at once. When the full recomputation itself is
not finite (prices so large that ``H @ p`` overflows), the prices of this flush
that overflow are refused (counted in `prices_refused`; the previous price stays),
so the live values stay finite and equal to ``H @ p + c`` of the prices applied.
`resync` recomputes on demand (`pmkit.stream.live.LiveStream` calls it every
``streaming.resync_every`` flushes).

Fills stream through the same path: `LiveValuation.attach` subscribes to the
registry's ``"ledger.trade"`` and ``"ledger.cash"`` events (a `PaperBroker`
fill, `Registry.record_trade`...). On each it replays the portfolio's ledger
entries after the last one it applied (so a missed or repeated event is
harmless), and publishes the portfolio's ``"stream.valuation"`` event. A
trade in an asset not yet tracked appends a column (marked at the trade price
until the stream prices it); existing column positions never move.

Thread safety: the stream calls `update` from a worker thread while a
notebook reads `values`; every read and write of the state holds one lock.
Events are published after the lock is released.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import numpy as np
import pandas as pd

from pmkit.errors import ConfigError, ValidationError
from pmkit.events import Event
from pmkit.ledger import LedgerEntry, cash_effect

__all__ = ["GROUP_TOPIC", "TOPIC", "LiveValuation", "ValuationUpdate"]

#: Topic of a portfolio's valuation event.
TOPIC = "stream.valuation"
#: Topic of a group's valuation event.
GROUP_TOPIC = "stream.group_valuation"
#: An update whose inputs exceed its result by this factor (20 bits) is recomputed.
_CANCELLATION = 2.0**20


@dataclass(frozen=True, slots=True)
class ValuationUpdate:
    """What one `LiveValuation.update` (or one booked fill) changed.

    Attributes
    ----------
    ts : float or None
        Time of the first tick of the flush (epoch seconds), or of the ledger
        entry for a fill; None when not given.
    portfolios : tuple of str
        Affected portfolios (holding an asset whose price moved, or booked).
    values : dict[str, float]
        New value of each affected portfolio (portfolio currency).
    pnl : dict[str, float]
        P&L since the open of each affected portfolio (currency units).
    changes : dict[str, float]
        Change in value of each affected portfolio caused by this update.
    groups : dict[str, float]
        New value of each affected group.
    prices : int
        Number of prices applied (after dropping untracked and repeated ones).
    elapsed : float
        Wall time of the update, kernel and event publishing, in seconds.
    """

    ts: float | None
    portfolios: tuple[str, ...]
    values: dict[str, float] = field(default_factory=dict)
    pnl: dict[str, float] = field(default_factory=dict)
    changes: dict[str, float] = field(default_factory=dict)
    groups: dict[str, float] = field(default_factory=dict)
    prices: int = 0
    elapsed: float = 0.0


def _sound(v: np.ndarray, pnl: np.ndarray, delta: np.ndarray) -> bool:
    """Whether an incremental update can stand: finite, and no catastrophic cancellation."""
    with np.errstate(over="ignore", invalid="ignore"):
        if not (np.isfinite(v).all() and np.isfinite(pnl).all() and np.isfinite(delta).all()):
            return False
        # V_old = V - delta; |V_old| + |delta| >> |V| means the sum lost its low bits
        return bool((np.abs(v - delta) + np.abs(delta) <= _CANCELLATION * np.abs(v)).all())


def _epoch(ts: Any) -> float | None:
    if ts is None:
        return None
    x = float(ts)
    return x if math.isfinite(x) else None


class LiveValuation:
    """Portfolio and group values kept current by price updates and fills.

    Parameters
    ----------
    registry : pmkit.registry.Registry
        With market data. Its user must be able to view the portfolios.
    portfolios : sequence of str, optional
        Portfolios to track; default the active portfolios the user may view.
    at : datetime-like, optional
        Market time whose closes are the opening prices (default: the last
        market time). An asset without a close at ``at`` takes its last
        earlier close.
    publish : bool, default True
        Publish valuation events on ``registry.bus``. With False, `update`
        only computes and returns.

    Attributes
    ----------
    symbols : list of str
        Assets held by any tracked portfolio: the column order (``N``).
    portfolios : list of str
        Tracked portfolios, the row order (``P``).
    groups : list of str
        Visible groups containing a tracked portfolio (``G``). A group's value
        consolidates its tracked members only; a group whose tracked members
        have different currencies is left out (with a warning).

    Raises
    ------
    ConfigError
        The registry has no market data.
    ValidationError
        Repeated portfolio ids, an ``at`` before the market data, or a held
        asset with no close at or before ``at``.
    NotFoundError, PermissionDenied
        A portfolio does not exist or the user may not view it.
    """

    def __init__(
        self,
        registry: Any,
        *,
        portfolios: Sequence[str] | None = None,
        at: Any = None,
        publish: bool = True,
    ) -> None:
        from pmkit.core import float_dtype

        market = registry.market
        if market is None:
            raise ConfigError("market", None, "live valuation needs a registry with market data")
        if portfolios is None:
            pids = [p.id for p in registry.portfolios(status="active")]
        else:
            pids = list(portfolios)
            dup = next((p for p in pids if pids.count(p) > 1), None)
            if dup is not None:
                raise ValidationError("portfolios", dup, "listed more than once")
        infos = {pid: registry.portfolio(pid) for pid in pids}  # existence + view rights
        positions = {pid: registry.positions(pid) for pid in pids}
        symbols = sorted({a for pos in positions.values() for a in pos.open_positions()})

        times = market.indexes["time"]
        t = times[-1] if at is None else pd.Timestamp(at)
        if len(times) == 0 or t < times[0]:
            raise ValidationError("at", at, "is before the first market time")
        closes = (
            market["close"].sel(asset=symbols, time=slice(None, t)).ffill("time").isel(time=-1)
        )
        p_open = np.asarray(closes.values, dtype=np.float64).reshape(len(symbols))
        bad = np.flatnonzero(~(np.isfinite(p_open) & (p_open > 0)))
        if bad.size:
            a = symbols[int(bad[0])]
            reason = f"no close at or before {t}"
            raise ValidationError(f"prices[{a}]", float(p_open[bad[0]]), reason)

        col = {a: j for j, a in enumerate(symbols)}
        h = np.zeros((len(pids), len(symbols)))
        cash = np.zeros(len(pids))
        for i, pid in enumerate(pids):
            pos = positions[pid]
            for a, q in pos.open_positions().items():
                h[i, col[a]] = q
            cash[i] = pos.cash

        groups, rows = self._membership(registry, pids, infos)
        m = np.zeros((len(groups), len(pids)))
        for g, members in enumerate(rows):
            m[g, [pids.index(p) for p in members]] = 1.0

        self.registry = registry
        self.publish = bool(publish)
        self.at = t
        self.symbols: list[str] = symbols
        self.portfolios: list[str] = pids
        self.groups: list[str] = groups
        self._dtype = float_dtype()
        self._col = col
        self._row = {pid: i for i, pid in enumerate(pids)}
        self._last_seq = {pid: positions[pid].last_seq for pid in pids}
        self._lock = threading.RLock()
        self._subs: list[Any] = []
        self._m_np = m
        v_open = h @ p_open + cash
        self._v_open = v_open
        self._cash = cash
        self._flows = np.zeros(len(pids))
        self._change = np.zeros(len(pids))
        self._peak_live = v_open.copy()
        self._peak_hist: np.ndarray | None = None
        #: Full recomputations so far (`resync` and unsound updates).
        self.recomputations = 0
        #: Updates whose incremental result was unsound (non-finite or cancelling).
        self.unsound_updates = 0
        #: Flush prices refused because the values they give overflow.
        self.prices_refused = 0
        self._set_state(h, v_open.copy(), np.zeros(len(pids)), p_open, m)

    @staticmethod
    def _membership(
        registry: Any, pids: list[str], infos: dict[str, Any]
    ) -> tuple[list[str], list[list[str]]]:
        tracked = set(pids)
        groups, rows = [], []
        for g in registry.groups():
            members = [p for p in registry.get_group_portfolios(g.id) if p in tracked]
            if not members:
                continue
            ccys = sorted({infos[p].currency for p in members})
            if len(ccys) > 1:
                warnings.warn(
                    f"group {g.id!r}: tracked members are in {ccys}; no live group value",
                    UserWarning,
                    stacklevel=3,
                )
                continue
            groups.append(g.id)
            rows.append(members)
        return groups, rows

    def _set_state(
        self, h: np.ndarray, v: np.ndarray, pnl: np.ndarray, p: np.ndarray, m: np.ndarray
    ) -> None:
        import jax.numpy as jnp

        from pmkit.core import precision

        dt = self._dtype
        with precision(dt.name):  # pmkit no longer sets JAX's x64 flag for the whole process
            self._h = jnp.asarray(h, dtype=dt)
            self._v = jnp.asarray(v, dtype=dt)
            self._pnl = jnp.asarray(pnl, dtype=dt)
            self._p = jnp.asarray(p, dtype=dt)
            self._m = jnp.asarray(m, dtype=dt)

    # -- lookups ----------------------------------------------------------------------------
    def index(self, symbols: Sequence[str]) -> np.ndarray:
        """Column of each symbol in `symbols` (int64), -1 for one not tracked."""
        with self._lock:
            return np.array([self._col.get(s, -1) for s in symbols], dtype=np.int64)

    # -- market data ---------------------------------------------------------------------------
    def warm(self) -> int:
        """Compile the kernel for every flush size this book can see, before the stream starts.

        A jitted kernel compiles on its first call per shape (a fraction of a
        second each); warming moves that out of the first flushes' latency.
        Changes nothing.

        Returns
        -------
        int
            Number of bucket sizes compiled (``log2`` of the column count, about).
        """
        from pmkit.core.live import apply_price_changes, bucket_size

        with self._lock:
            n = len(self.symbols)
            sizes = sorted({bucket_size(k) for k in range(n + 1)})
            for size in sizes:
                # All-padding changes: the real shapes and dtypes, no effect.
                pi = np.full(size, n, dtype=np.int32)
                pp = np.zeros(size, dtype=self._dtype)
                out = apply_price_changes(self._h, self._v, self._pnl, self._p, self._m, pi, pp)
                out[0].block_until_ready()
        return len(sizes)

    def _checked(self, idx: Any, prices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Tracked, unique (last wins), validated columns and prices of one flush."""
        idx_a = np.asarray(idx)
        px = np.asarray(prices, dtype=np.float64)
        if idx_a.ndim != 1 or px.ndim != 1 or len(idx_a) != len(px):
            raise ValidationError(
                "prices", px.shape, f"idx and prices must be 1-D of one length (idx {idx_a.shape})"
            )
        if idx_a.size and not np.issubdtype(idx_a.dtype, np.integer):
            raise ValidationError("idx", idx_a.dtype, "must be integer column positions")
        idx_a = idx_a.astype(np.int64)
        keep = idx_a != -1
        idx_a, px = idx_a[keep], px[keep]
        n = len(self.symbols)
        out = np.flatnonzero((idx_a < 0) | (idx_a >= n))
        if out.size:
            raise ValidationError("idx", int(idx_a[out[0]]), f"not a column in [0, {n}) or -1")
        bad = np.flatnonzero(~(np.isfinite(px) & (px > 0)))
        if bad.size:
            a = self.symbols[int(idx_a[bad[0]])]
            raise ValidationError(f"prices[{a}]", float(px[bad[0]]), "must be finite and > 0")
        if len(np.unique(idx_a)) < len(idx_a):
            # A repeated column keeps its last price, as a conflating buffer would.
            _, first_rev = np.unique(idx_a[::-1], return_index=True)
            pick = np.sort(len(idx_a) - 1 - first_rev)
            idx_a, px = idx_a[pick], px[pick]
        return idx_a, px

    def update(self, idx: Any, prices: Any, ts: float | None = None) -> ValuationUpdate:
        """Apply a flush of prices: one kernel call, one event per affected portfolio.

        Parameters
        ----------
        idx : array of int, shape (K,)
            Columns (positions in `symbols`, see `index`); -1 entries are
            ignored. Callers should pass conflated, unique columns; a repeated
            column keeps its last price.
        prices : array of float, shape (K,)
            New price per unit of each column (finite, > 0), in the asset's
            currency (= its holders' currency).
        ts : float, optional
            Time of the flush's first tick, epoch seconds (carried in events).

        Returns
        -------
        ValuationUpdate
            Affected portfolios and groups with their new values.

        Raises
        ------
        ValidationError
            Shapes differ, a column is out of range, or a price is not finite
            and positive; nothing changes.
        """
        from pmkit.core.live import apply_price_changes, pad_changes

        t0 = time.perf_counter()
        cols, px = self._checked(idx, prices)
        ts_f = _epoch(ts)
        if cols.size == 0:
            return ValuationUpdate(ts_f, (), elapsed=time.perf_counter() - t0)
        with self._lock:
            pi, pp = pad_changes(cols, px, len(self.symbols))
            p_before, v_before = self._p, self._v
            v, pnl, p, g, delta, touched = apply_price_changes(
                self._h, self._v, self._pnl, self._p, self._m, pi, pp.astype(self._dtype)
            )
            self._v, self._pnl, self._p = v, pnl, p
            v_np, pnl_np, delta_np = np.asarray(v), np.asarray(pnl), np.asarray(delta)
            if not _sound(v_np, pnl_np, delta_np):
                self.unsound_updates += 1
                self._recompute(p_before, cols, px)
                v_np, pnl_np = np.asarray(self._v), np.asarray(self._pnl)
                delta_np = v_np - np.asarray(v_before)
                g = self._m_np @ v_np
            self._change = delta_np
            self._peak_live = np.maximum(self._peak_live, v_np)
            rows = np.flatnonzero(np.asarray(touched))
            events, result = self._outcome(rows, v_np, pnl_np, delta_np, np.asarray(g), ts_f)
        self._emit(events)
        return ValuationUpdate(
            ts_f, *result, prices=len(cols), elapsed=time.perf_counter() - t0
        )

    def _outcome(
        self,
        rows: np.ndarray,
        v: np.ndarray,
        pnl: np.ndarray,
        delta: np.ndarray,
        g: np.ndarray,
        ts: float | None,
        **extra: Any,
    ) -> tuple[list[Event], tuple[Any, ...]]:
        """Events and `ValuationUpdate` fields for the affected rows (call under the lock)."""
        pids = [self.portfolios[i] for i in rows]
        values = {p: float(v[i]) for p, i in zip(pids, rows, strict=True)}
        pnls = {p: float(pnl[i]) for p, i in zip(pids, rows, strict=True)}
        changes = {p: float(delta[i]) for p, i in zip(pids, rows, strict=True)}
        grows = np.flatnonzero((self._m_np[:, rows] != 0).any(axis=1)) if rows.size else rows
        gdelta = self._m_np @ delta
        gpnl = self._m_np @ pnl
        groups = {self.groups[k]: float(g[k]) for k in grows}
        events: list[Event] = []
        if self.publish:
            for p in pids:
                payload = {"value": values[p], "pnl": pnls[p], "change": changes[p], "ts": ts}
                events.append(Event(TOPIC, portfolio=p, payload={**payload, **extra}))
            for k in grows:
                gid = self.groups[k]
                payload = {
                    "value": groups[gid],
                    "pnl": float(gpnl[k]),
                    "change": float(gdelta[k]),
                    "ts": ts,
                }
                events.append(Event(GROUP_TOPIC, group=gid, payload={**payload, **extra}))
        return events, (tuple(pids), values, pnls, changes, groups)

    def _emit(self, events: list[Event]) -> None:
        bus = self.registry.bus
        for e in events:
            e.payload["published_at"] = time.time()
            bus.publish(e)

    # -- fills and cash flows -----------------------------------------------------------------
    def attach(self) -> None:
        """Follow the registry's ledger: trades and cash flows update the book live.

        Also applies entries booked since this valuation was built. Calling
        it twice is a no-op.
        """
        with self._lock:
            if self._subs:
                return
            bus = self.registry.bus
            self._subs = [
                bus.subscribe("ledger.trade", self._on_ledger),
                bus.subscribe("ledger.cash", self._on_ledger),
            ]
        for pid in self.portfolios:
            self.sync(pid)

    def detach(self) -> None:
        """Stop following the ledger (no error when not attached)."""
        with self._lock:
            subs, self._subs = self._subs, []
        for s in subs:
            s.cancel()

    @property
    def attached(self) -> bool:
        """Whether `attach` is in effect."""
        return bool(self._subs)

    def _on_ledger(self, event: Event) -> None:
        if event.portfolio in self._row:
            self.sync(event.portfolio)

    def sync(self, portfolio: str) -> ValuationUpdate | None:
        """Apply ``portfolio``'s ledger entries booked after the last one applied.

        Publishes one ``"stream.valuation"`` event for the portfolio (and one
        per group containing it) when anything was applied.

        Returns
        -------
        ValuationUpdate or None
            None when there was nothing new.
        """
        t0 = time.perf_counter()
        with self._lock:
            i = self._row[portfolio]
            entries = self.registry.view().ledger(portfolio, after_seq=self._last_seq[portfolio])
            if not entries:
                return None
            h, p = np.array(self._h), np.array(self._p)
            v, pnl = np.array(self._v), np.array(self._pnl)
            before = v[i]
            for e in entries:
                h, p = self._apply_entry(i, e, h, p, v, pnl)
            self._last_seq[portfolio] = int(entries[-1].seq or self._last_seq[portfolio])
            self._set_state(h, v, pnl, p, self._m_np)
            delta = np.zeros(len(self.portfolios))
            delta[i] = v[i] - before
            self._change = delta
            self._peak_live = np.maximum(self._peak_live, v)
            last = entries[-1]
            ts = last.ts.replace(tzinfo=UTC).timestamp()
            events, result = self._outcome(
                np.array([i]), v, pnl, delta, self._m_np @ v, ts,
                source="ledger", seq=self._last_seq[portfolio],
            )
        self._emit(events)
        return ValuationUpdate(ts, *result, elapsed=time.perf_counter() - t0)

    def _apply_entry(
        self,
        i: int,
        e: LedgerEntry,
        h: np.ndarray,
        p: np.ndarray,
        v: np.ndarray,
        pnl: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Apply one ledger entry to row ``i`` (``v``, ``pnl`` in place; may widen h, p)."""
        flow = cash_effect(e)
        self._cash[i] += flow
        if e.kind == "cash":
            v[i] += flow
            self._flows[i] += flow
            return h, p
        assert e.asset is not None
        j = self._col.get(e.asset)
        if j is None:  # rare: a new asset; append so existing columns keep their place
            j = len(self.symbols)
            self.symbols.append(e.asset)
            self._col[e.asset] = j
            h = np.concatenate([h, np.zeros((h.shape[0], 1))], axis=1)
            p = np.append(p, e.price)
        h[i, j] += e.quantity
        # At the mark the position is worth what the cash paid, up to slippage and fee.
        move = e.quantity * p[j] + flow
        v[i] += move
        pnl[i] += move
        return h, p

    # -- risk ----------------------------------------------------------------------------------
    def metrics(self) -> Any:
        """The live metrics `pmkit.risk.limits.check_limits` compares.

        Returns
        -------
        xarray.Dataset
            ``weight(portfolio, asset)`` = ``H * p / V`` (fractions of NAV),
            ``sector_weight(portfolio, sector)``, ``leverage(portfolio)``
            (gross, ``sum |w|``), ``net_leverage(portfolio)`` (``|sum w|``),
            ``nav(portfolio)`` and ``drawdown(portfolio)``
            (``1 - V / peak``, the peak over the daily NAV history up to ``at``
            and the live values since). Portfolios with ``V <= 0`` (no
            meaningful weights) are left out.
        """
        import xarray as xr

        from pmkit.risk.exposures import leverage, sector_exposure

        peak_hist = self._historical_peak()
        with self._lock:
            h, p, v = np.array(self._h), np.array(self._p), np.array(self._v)
            peak = np.maximum(self._peak_live, peak_hist)
            symbols, pids = list(self.symbols), list(self.portfolios)
        ok = v > 0
        pids = [pid for pid, k in zip(pids, ok, strict=True) if k]
        w = h[ok] * p[None, :] / v[ok, None]
        wda = xr.DataArray(
            w, dims=("portfolio", "asset"), coords={"portfolio": pids, "asset": symbols}
        )
        out = xr.Dataset(
            {
                "nav": ("portfolio", v[ok]),
                "drawdown": ("portfolio", 1.0 - v[ok] / peak[ok]),
            },
            coords={"portfolio": pids},
        )
        if symbols and pids:
            out["weight"] = wda
            out["sector_weight"] = sector_exposure(wda, self.registry.market)
            lev = leverage(wda)
            out["leverage"] = lev["gross"]
            out["net_leverage"] = abs(lev["net"])
        else:
            out["leverage"] = ("portfolio", np.zeros(len(pids)))
            out["net_leverage"] = ("portfolio", np.zeros(len(pids)))
        return out

    def _historical_peak(self) -> np.ndarray:
        """Highest daily NAV up to ``at`` per portfolio (computed once, lazily)."""
        if self._peak_hist is None:
            from pmkit.model import portfolio_values

            market = self.registry.market
            times = market.indexes["time"][market.indexes["time"] <= self.at]
            h = self.registry.holdings(self.portfolios, times=times)
            nav = portfolio_values(h, market.sel(time=times)).transpose("portfolio", "time")
            self._peak_hist = np.nanmax(np.asarray(nav.values, dtype=np.float64), axis=1)
        return self._peak_hist

    def check_limits(self, limits: Any = None, *, publish: bool | None = None) -> list:
        """Check live weights against the risk limits; publish breaches.

        Parameters
        ----------
        limits : Mapping, optional
            Explicit thresholds, as in `pmkit.risk.limits.check_limits`
            (fractions: ``{"position": 0.25}``); default the configuration.
        publish : bool, optional
            Publish ``"risk.limit_breach"`` events; default this valuation's
            ``publish``.

        Returns
        -------
        list of pmkit.risk.limits.LimitBreach
        """
        from pmkit.risk.limits import check_limits

        metrics = self.metrics()
        if metrics.sizes.get("portfolio", 0) == 0:
            return []
        return check_limits(
            self.registry,
            metrics,
            limits=limits,
            publish=self.publish if publish is None else bool(publish),
        )

    # -- views ----------------------------------------------------------------------------------
    def values(self) -> pd.Series:
        """Current value per portfolio (portfolio currency)."""
        with self._lock:
            return pd.Series(np.array(self._v), index=list(self.portfolios), name="value")

    def pnl(self) -> pd.Series:
        """P&L since the open per portfolio (currency units), net of external flows."""
        with self._lock:
            return pd.Series(np.array(self._pnl), index=list(self.portfolios), name="pnl")

    def group_values(self) -> pd.Series:
        """Current consolidated value per group."""
        with self._lock:
            return pd.Series(
                self._m_np @ np.array(self._v), index=list(self.groups), name="value"
            )

    def prices(self) -> pd.Series:
        """Current price per tracked asset."""
        with self._lock:
            return pd.Series(np.array(self._p), index=list(self.symbols), name="price")

    def holdings(self) -> pd.DataFrame:
        """Units held, portfolios × assets."""
        with self._lock:
            return pd.DataFrame(
                np.array(self._h), index=list(self.portfolios), columns=list(self.symbols)
            )

    def frame(self) -> pd.DataFrame:
        """Portfolios then groups: ``kind``, ``value``, ``open``, ``flows``, ``pnl``, ``change``.

        ``open`` is the value at the opening prices, ``flows`` the external
        cash flows since, ``pnl`` = ``value - open - flows``, ``change`` the
        last update's move (currency units). Group rows sum their members.
        """
        with self._lock:
            cols = {
                "value": np.array(self._v),
                "open": self._v_open.copy(),
                "flows": self._flows.copy(),
                "pnl": np.array(self._pnl),
                "change": self._change.copy(),
            }
            m, pids, gids = self._m_np, list(self.portfolios), list(self.groups)
        ports = pd.DataFrame(cols, index=pids)
        grps = pd.DataFrame({k: m @ x for k, x in cols.items()}, index=gids)
        ports.insert(0, "kind", "portfolio")
        grps.insert(0, "kind", "group")
        out = pd.concat([ports, grps])
        out.index.name = "id"
        return out

    def resync(self) -> float:
        """Recompute the values from scratch (``H @ p + c``), replacing the running sums.

        The incremental sums drift from a full recomputation only by float
        round-off; `update` recomputes at once when an update is unsound, and a
        long-running stream calls this every ``streaming.resync_every`` flushes.

        Returns
        -------
        float
            Largest absolute correction applied (currency units).
        """
        with self._lock:
            before = np.asarray(self._v)
            fresh = self._full(np.asarray(self._p, dtype=np.float64))
            drift = float(np.max(np.abs(fresh - before), initial=0.0))
            self._store(fresh, np.asarray(self._p))
        return drift if math.isfinite(drift) else math.inf

    def _full(self, p: np.ndarray) -> np.ndarray:
        """``H @ p + c`` in float64 (call under the lock)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(self._h, dtype=np.float64) @ p + self._cash

    def _store(self, v: np.ndarray, p: np.ndarray) -> None:
        """Replace values (P&L follows: ``V - V_open - flows``) and prices (under the lock)."""
        self.recomputations += 1
        pnl = v - self._v_open - self._flows
        self._set_state(np.asarray(self._h), v, pnl, p, self._m_np)
        self._peak_live = np.maximum(self._peak_live, v)

    def _recompute(self, p_before: Any, cols: np.ndarray, px: np.ndarray) -> None:
        """Full recomputation after an unsound update; refuse prices that overflow."""
        p = np.array(p_before, dtype=np.float64)
        old = p[cols].copy()
        p[cols] = px
        v = self._full(p)
        if np.isfinite(v).all():
            self._store(v, p)
            return
        h = np.asarray(self._h, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            bad = ~np.isfinite(h[:, cols] * px).all(axis=0)
        p[cols[bad]] = old[bad]
        v = self._full(p)
        refused = int(bad.sum())
        if not np.isfinite(v).all():  # only their sum overflows: refuse the whole flush
            p[cols] = old
            v = self._full(p)
            refused = len(cols)
        self.prices_refused += refused
        self._store(v, p)

    def __repr__(self) -> str:
        return (
            f"LiveValuation({len(self.portfolios)} portfolios, {len(self.groups)} groups,"
            f" {len(self.symbols)} assets, attached={self.attached})"
        )
