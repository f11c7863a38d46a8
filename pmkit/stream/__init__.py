"""Real-time market data: wire protocol, local feed, streaming client, live revaluation.

Importing ``pmkit.stream`` stays light: the names below load their module
(and websockets, numpy, JAX) on first use.

===================== ===============================================
name                  module
===================== ===============================================
``LiveStream``        `pmkit.stream.live` — client → buffer → valuation
``StreamClient``      `pmkit.stream.client` (and ``StreamError``)
``ConflatingBuffer``  `pmkit.stream.buffer` (and ``Flush``)
``PriceBand``         `pmkit.stream.band` — absurd prices rejected before the buffer
``StreamMetrics``     `pmkit.stream.metrics`
``StreamSettings``    `pmkit.stream.settings`
``FeedAdapter``       `pmkit.stream.protocol` (and ``pmkit_adapter``)
``FeedServer``        `pmkit.stream.server` (and ``Faults``)
``LiveValuation``     `pmkit.stream.valuation`
``start_local_stream`` `pmkit.stream.local` — a local feed and a stream over it
===================== ===============================================
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LiveStream": "pmkit.stream.live",
    "StreamClient": "pmkit.stream.client",
    "StreamError": "pmkit.stream.client",
    "backoff_delay": "pmkit.stream.client",
    "ConflatingBuffer": "pmkit.stream.buffer",
    "Flush": "pmkit.stream.buffer",
    "PriceBand": "pmkit.stream.band",
    "StreamMetrics": "pmkit.stream.metrics",
    "StreamSettings": "pmkit.stream.settings",
    "FeedAdapter": "pmkit.stream.protocol",
    "ProtocolError": "pmkit.stream.protocol",
    "TickBlock": "pmkit.stream.protocol",
    "pmkit_adapter": "pmkit.stream.protocol",
    "FeedServer": "pmkit.stream.server",
    "Faults": "pmkit.stream.server",
    "LiveValuation": "pmkit.stream.valuation",
    "start_local_stream": "pmkit.stream.local",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pmkit.stream' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
