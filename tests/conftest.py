"""Fixtures shared by test files: an in-process Panel server with pmkit logins."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture
def serve_panel() -> Iterator[Callable[..., int]]:
    """``serve_panel(app, **get_server_kwargs) -> port``: a Panel server on a loopback port.

    Runs on its own thread and event loop; every server started is stopped
    (and Panel's global cookie secret restored) at teardown.
    """
    pytest.importorskip("panel")
    from panel.config import config
    from panel.io.server import get_server
    from panel.io.state import state
    from tornado.ioloop import IOLoop

    started: list[tuple[Any, Any, threading.Thread]] = []
    old_secret = config.cookie_secret

    def serve(app: Callable[[], Any], **kwargs: Any) -> int:
        ready, box = threading.Event(), {}

        def run() -> None:
            asyncio.set_event_loop(asyncio.new_event_loop())
            loop = IOLoop.current()
            server = get_server(
                {"/": app}, port=0, address="127.0.0.1", start=False, loop=loop, **kwargs
            )
            box["server"], box["loop"] = server, loop
            server.start()
            loop.add_callback(ready.set)
            loop.start()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert ready.wait(30), "the Panel server did not start"
        started.append((box["server"], box["loop"], thread))
        return int(box["server"].port)

    try:
        yield serve
    finally:
        for server, loop, thread in started:

            def stop(server: Any = server, loop: Any = loop) -> None:
                server.stop()
                loop.stop()

            loop.add_callback(stop)
            thread.join(30)
            for key, entry in list(state._servers.items()):
                if entry[0] is server:
                    del state._servers[key]
        config.cookie_secret = old_secret
