"""Loopback peers for the feed tests: clients from a chosen 127.x address, stalled or killed."""

from __future__ import annotations

import socket
import struct
from urllib.parse import urlsplit

from websockets.asyncio.client import connect


def peer(url: str, host: str = "127.0.0.1", *, rcvbuf: int | None = None, **kw):
    """``connect(url)`` from ``host`` (any 127.0.0.0/8 address is this machine).

    ``rcvbuf`` shrinks the client's receive buffer (bytes), so a client that stops
    reading fills the server's send queue quickly instead of after megabytes.
    """
    kw.setdefault("close_timeout", 0.3)
    kw.setdefault("open_timeout", 5.0)
    kw.setdefault("ping_interval", None)
    kw.setdefault("compression", None)
    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((host, 0))
    sock.setblocking(False)
    sock.settimeout(5.0)
    sock.connect((parts.hostname, parts.port))
    sock.setblocking(False)
    return connect(url, sock=sock, **kw)


def stall(ws) -> None:
    """Stop reading: the peer's buffers, then the server's send queue, fill up."""
    ws.transport.pause_reading()


def kill(ws) -> None:
    """Vanish without a close frame: a TCP reset (linger 0, then abort)."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()
