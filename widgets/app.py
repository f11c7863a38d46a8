"""The served pmkit operations app (``pmkit serve``).

One registry (and store connection) is shared by the server process; every
browser session gets its own view objects over it. Views poll the store, so
changes made by other processes (notebooks, scripts) appear within seconds.
"""

from __future__ import annotations

import contextlib
import signal
import socket
from typing import TYPE_CHECKING, Any

import panel as pn

from pmkit_widgets.registry_view import RegistryView

if TYPE_CHECKING:
    from pmkit.registry import Registry
    from pmkit.store import Store

__all__ = ["APP_TITLE", "POLL_PERIOD_MS", "build_app", "serve"]

#: Title of the app's page and browser tab.
APP_TITLE = "pmkit operations"

#: How often each session re-reads the store, in milliseconds.
POLL_PERIOD_MS = 2000


def build_app(registry: Registry, *, poll_period: int | None = POLL_PERIOD_MS) -> Any:
    """Build one session's page over ``registry``.

    Parameters
    ----------
    registry : Registry
        Shared registry; the page shows what its user may view.
    poll_period : int, optional
        Milliseconds between store re-reads (None: events only).

    Returns
    -------
    panel.template.FastListTemplate
        The page, ready to ``.servable()`` or return from a ``pn.serve`` factory.
    """
    pn.extension("tabulator")
    view = RegistryView(registry, poll_period=poll_period)
    return pn.template.FastListTemplate(
        title=APP_TITLE,
        main=[view],
        main_max_width="1400px",
        accent="#1f4e79",
        theme_toggle=False,
    )


def serve(
    store: Store | str,
    port: int = 5006,
    address: str = "127.0.0.1",
    show: bool = False,
    feed_port: int | None = 8765,
    **kwargs: Any,
) -> None:
    """Serve the operations app until interrupted (SIGINT or SIGTERM).

    By default the local market-data feed (`pmkit.stream.server.FeedServer`,
    replaying the bundled real closes) runs beside the app, and a
    `pmkit.stream.live.LiveStream` revalues every active portfolio from it,
    publishing ``stream.valuation`` events on the registry's bus.

    Parameters
    ----------
    store : Store or str
        Store or URL; an empty store is seeded with the demo
        (`pmkit.demo.open_demo`).
    port : int
        TCP port (0 picks a free one).
    address : str
        Interface to listen on.
    show : bool
        Open a browser tab.
    feed_port : int or None, default 8765
        Port of the local feed on ``address`` (0 picks a free one); None runs
        no feed and no stream.
    **kwargs
        Passed on to `panel.serve`.
    """
    from pmkit.demo import open_demo

    kwargs.setdefault("verbose", False)
    registry = open_demo(store)
    if port == 0:  # pick now: the websocket origins must name the real port
        with socket.socket() as sock:
            sock.bind((address, 0))
            port = sock.getsockname()[1]
    server = pn.serve(
        {"/": lambda: build_app(registry)},
        port=port,
        address=address,
        show=show,
        start=False,
        allow_websocket_origin=[f"{address}:{port}", f"localhost:{port}"],
        title=APP_TITLE,
        **kwargs,
    )

    def stop(*_: Any) -> None:
        server.io_loop.asyncio_loop.call_soon_threadsafe(server.io_loop.stop)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: the caller stops us
            signal.signal(sig, stop)
    feed, stream = _start_feed(registry, address, feed_port)
    print(f"pmkit serving at http://{address}:{server.port}/", flush=True)
    server.start()
    try:
        server.io_loop.start()
    finally:
        server.stop()
        if stream is not None:
            stream.stop()
        if feed is not None:
            feed.stop_thread()
        close = getattr(registry.store, "close", None)
        if close is not None:
            close()


def _start_feed(registry: Registry, address: str, port: int | None) -> tuple[Any, Any]:
    """Start the local feed and the live stream over it (None, None when ``port`` is None)."""
    if port is None:
        return None, None
    from pmkit.stream.live import LiveStream
    from pmkit.stream.server import FeedServer

    feed = FeedServer(registry.market, host=address, port=port).start_in_thread()
    stream = LiveStream(registry, url=feed.url).start_in_thread()
    print(f"pmkit feed at {feed.url}; live stream of {len(stream.symbols)} symbols", flush=True)
    return feed, stream
