"""A local feed replaying the registry's market and a live stream over it, started together.

What ``pmkit serve`` and ``%pm stream start`` run when no outside feed is
given. The stream's valuation opens at the close the replay starts from, so
live P&L is measured against the prices being replayed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pmkit.registry import Registry
    from pmkit.stream.live import LiveStream
    from pmkit.stream.server import FeedServer

__all__ = ["start_local_stream"]


def start_local_stream(
    registry: Registry, *, host: str = "127.0.0.1", port: int = 0, **feed_options: Any
) -> tuple[FeedServer, LiveStream]:
    """Start a `FeedServer` over ``registry.market`` and a `LiveStream` from it, in threads.

    Parameters
    ----------
    registry : Registry
        With market data; the stream values the active portfolios its user may view.
    host : str, default "127.0.0.1"
        Interface of the feed.
    port : int, default 0
        Port of the feed (0: any free one; see ``feed.url``).
    **feed_options
        Passed on to `FeedServer` (``start``, ``rate``, ``seed``, ...).

    Returns
    -------
    (FeedServer, LiveStream)
        Both running; stop the stream first, then ``feed.stop_thread()``.
        Nothing is left running when this raises.
    """
    from pmkit.stream.live import LiveStream
    from pmkit.stream.server import FeedServer
    from pmkit.stream.valuation import LiveValuation

    feed = FeedServer(registry.market, host=host, port=port, **feed_options).start_in_thread()
    try:
        # gbm mode has no start date: the valuation then opens at the last close
        valuation = LiveValuation(registry, at=feed.start_date)
        stream = LiveStream(registry, url=feed.url, valuation=valuation).start_in_thread()
    except BaseException:
        feed.stop_thread()
        raise
    return feed, stream
