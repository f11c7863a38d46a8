"""What the browser tests share: Debian chromium, the served app's logins, waiting helpers.

The fixtures built on these (one chromium and one ``pmkit serve`` per test
session) are in ``conftest.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_TIMEOUT = 90.0  # seconds
PAGE_TIMEOUT_MS = 60_000  # first render: Bokeh + Tabulator bundles, demo valuation
REFRESH_TIMEOUT_MS = 20_000  # the app polls the store every 2 s

#: Logins of the served app: login -> (pmkit user, password). Demo roles: alice trades
#: client_a, bob manages the firm, carol views it.
LOGINS = {
    "alice": ("alice", "alice-trades-2026"),
    "bob": ("bob", "bob-approves-2026"),
    "carol": ("carol", "carol-watches-2026"),
}


def run(cmd: list[str], timeout: float) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"pmkit serve exited with {proc.returncode}:\n"
                        f"{log.read_text(errors='replace')[-5000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.5)
    pytest.fail(f"pmkit serve did not answer at {url} within {timeout:.0f} s ({last!r}):\n"
                f"{log.read_text(errors='replace')[-5000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)
