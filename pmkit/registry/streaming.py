"""Streaming options: update frequency, buffering and throttling (per registry).

The design note asks for "configuration options for update frequency and
throttling". They live in the registry's settings under ``"streaming"``
(``multi_portfolio_config["streaming"] = {...}``, or
`Registry.set_streaming`), so every session on a store streams the same way.

=========================== ========= ==================================================
key                         default   meaning
=========================== ========= ==================================================
``buffer_symbols``          100000    most distinct symbols the buffer holds between
                                      flushes (memory bound; more are counted as dropped)
``flush_size``              20000     flush after this many ticks were received…
``flush_interval``          0.05      …or this many seconds after the first unflushed one
``ui_max_rate``             4.0       most UI updates per second (throttled callbacks)
``risk_interval``           5.0       seconds between risk-limit checks
``heartbeat_timeout``       5.0       seconds of silence before forcing a reconnect
``reconnect_initial``       0.1       first reconnect delay (s); doubles each attempt…
``reconnect_max``           5.0       …up to this (s), with ±``reconnect_jitter`` jitter
``reconnect_jitter``        0.2       fraction of the delay randomized
``max_reconnects``          20        attempts before the stream gives up (None: never)
``connect_timeout``         5.0       seconds for one connection attempt
``price_band``              0.5       a price is applied only within this fraction of
                                      its symbol's last good price: from
                                      ``last / (1 + band)`` to ``last * (1 + band)``
                                      (0.5: two thirds to one and a half times); others
                                      are rejected and counted (``ticks_rejected``)
``price_band_confirm``      5         consecutive rejected prices of a symbol, each
                                      within the band of the one before, that make the
                                      last one the new level (a real jump, a restarted
                                      feed); one absurd price never does
``resync_every``            100       flushes between full recomputations of the live
                                      values (``H @ p + cash``); a non-finite or
                                      cancelling update recomputes at once
=========================== ========= ==================================================

Under a steady feed the interval decides (10,000 ticks/s flushes every 50 ms, about 500
ticks); ``flush_size`` bounds the work per flush under overload, where each flush
revalues every affected portfolio once however many ticks it conflates.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from pmkit.errors import ConfigError
from pmkit.validation import check_number

#: Largest magnitude of a streaming setting: any finite float (a wide price band is legal;
#: what must not pass is an integer too large to be a float at all).
MAX_SETTING = sys.float_info.max

__all__ = ["StreamSettings"]


@dataclass(frozen=True)
class StreamSettings:
    """Validated streaming options (see the module docstring for each key)."""

    buffer_symbols: int = 100_000
    # Only reached under load (at 10,000 ticks/s the interval flushes first, every ~500
    # ticks): 20,000 ticks is a 50 Hz revaluation at 1M ticks/s, where 5,000 spent more
    # time revaluing 100 portfolios than parsing (731k vs 1.19M ticks/s, benchmarks/stream).
    flush_size: int = 20_000
    flush_interval: float = 0.05
    ui_max_rate: float = 4.0
    risk_interval: float = 5.0
    heartbeat_timeout: float = 5.0
    reconnect_initial: float = 0.1
    reconnect_max: float = 5.0
    reconnect_jitter: float = 0.2
    max_reconnects: int | None = 20
    connect_timeout: float = 5.0
    price_band: float = 0.5
    price_band_confirm: int = 5
    resync_every: int = 100

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            key = f"streaming.{f.name}"
            if f.name == "max_reconnects" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConfigError(key, v, "must be a number")
            # an int too large for a float would raise OverflowError in isfinite
            check_number(v, key, limit=MAX_SETTING, minimum=0.0, error=ConfigError)
            if f.type in ("int", "int | None") and v != int(v):
                raise ConfigError(key, v, "must be a whole number")
        for name in ("buffer_symbols", "flush_size", "resync_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"streaming.{name}", getattr(self, name), "must be >= 1")
        for name in ("flush_interval", "ui_max_rate", "risk_interval", "heartbeat_timeout",
                     "reconnect_initial", "connect_timeout", "price_band"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"streaming.{name}", getattr(self, name), "must be > 0")
        if self.reconnect_max < self.reconnect_initial:
            raise ConfigError(
                "streaming.reconnect_max", self.reconnect_max, "must be >= reconnect_initial"
            )
        if self.price_band_confirm < 2:
            raise ConfigError(
                "streaming.price_band_confirm", self.price_band_confirm, "must be >= 2"
            )
        if self.reconnect_jitter > 1:
            raise ConfigError("streaming.reconnect_jitter", self.reconnect_jitter, "must be <= 1")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> StreamSettings:
        """Settings from a mapping of the keys above; unknown keys are a `ConfigError`."""
        if values is None:
            return cls()
        if not isinstance(values, Mapping):
            raise ConfigError("streaming", values, "must be a mapping")
        known = {f.name for f in fields(cls)}
        for k in values:
            if k not in known:
                raise ConfigError(f"streaming.{k}", values[k], f"unknown key; use {sorted(known)}")
        return cls(**dict(values))

    @classmethod
    def from_registry(cls, registry: Any) -> StreamSettings:
        """The registry's ``streaming`` settings (defaults where unset)."""
        return cls.from_mapping(registry.settings().get("streaming"))

    def with_changes(self, **changes: Any) -> StreamSettings:
        """A validated copy with ``changes``."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)
