"""Shared pytest configuration and fixtures: hypothesis profiles, an in-process Panel server
with pmkit logins, one chromium and one served app per session."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

# "ci" bounds every hypothesis test that does not set its own max_examples, so the suite's
# run time stays predictable on shared CI runners; selected when the CI variable is set.
# Locally hypothesis's defaults apply.
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the browser tests last, after the notebooks too.

    They share one chromium and one served app for the whole session, and
    playwright's sync API keeps an asyncio loop marked running in the main
    thread while its browser is open: any later test calling ``asyncio.run``
    would fail. Last, the session-scoped browser closes when nothing else is left.
    """
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


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


# -- the browser tests: one chromium and one served app per test session ------------------------
@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (never `playwright install`)."""
    import os
    import shutil
    from pathlib import Path

    from browser_support import CHROMIUM, run

    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and this user cannot install it; run as root: "
                    "apt-get update && apt-get install -y chromium")
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and apt-get is not available to install it")
    run(["apt-get", "update"], timeout=600)
    run(["apt-get", "install", "-y", "chromium"], timeout=900)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} does not exist")
    return CHROMIUM


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """`pmkit serve --users` in a subprocess on a fresh demo sqlite store, with the local feed."""
    import subprocess
    import sys

    from browser_support import LOGINS, SERVER_START_TIMEOUT, free_port, stop, wait_http

    from pmkit.auth import UsersFile

    root = tmp_path_factory.mktemp("served")
    store_url = f"sqlite:///{root}/app.sqlite"
    users = UsersFile(root / "users.json")
    for login, (user, password) in LOGINS.items():
        users.add(login, password, user=user)
    assert all(pw not in (root / "users.json").read_text() for _, pw in LOGINS.values())
    port = free_port()
    out, err = root / "server.out", root / "server.err"
    cmd = [sys.executable, "-m", "pmkit.cli", "serve", "--store", store_url, "--create",
           "--port", str(port), "--address", "127.0.0.1", "--feed-port", "0",
           "--users", str(root / "users.json"), "--cookie-secret", "s" * 32]
    with out.open("wb") as fout, err.open("wb") as ferr:
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, cwd=root)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url + "login", proc, err, SERVER_START_TIMEOUT)
        yield {"url": url, "store": store_url, "stdout": str(out), "stderr": str(err),
               "users": str(root / "users.json")}
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    from browser_support import CHROMIUM_ARGS

    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def login(browser: Any, server: dict[str, str]) -> Iterator[Callable[..., Any]]:
    """``login(name, password=None) -> page``: a fresh browser context signed in as ``name``.

    The context aborts every request leaving loopback; the test fails if any was made.
    """
    sync_api = pytest.importorskip("playwright.sync_api")
    from browser_support import LOGINS, PAGE_TIMEOUT_MS, Watched

    contexts: list[Any] = []

    def open_as(name: str, password: str | None = None, user: str | None = None) -> Any:
        context = Watched(browser, viewport={"width": 1500, "height": 1100})
        contexts.append(context)
        pg = context.new_page()
        pg.set_default_timeout(PAGE_TIMEOUT_MS)
        pg.goto(server["url"], wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
        form = pg.locator("form.login-form")
        form.locator("input[name='username']").fill(name)
        form.locator("input[name='password']").fill(password or LOGINS[name][1])
        form.locator("button[type='submit']").click()
        sync_api.expect(pg.locator(".pmkit-user")).to_contain_text(
            f"({user or LOGINS.get(name, (name,))[0]}:", timeout=PAGE_TIMEOUT_MS)
        return pg

    try:
        yield open_as
    finally:
        for context in contexts:
            context.close()
    blocked = [url for context in contexts for url in context.blocked]
    assert blocked == [], f"requests left the machine: {blocked}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Report how long each app tab took to become usable in the browser tests."""
    import sys

    support = sys.modules.get("browser_support")
    timings = getattr(support, "TAB_TIMINGS", None)
    if not timings:
        return
    write = terminalreporter.write_line
    terminalreporter.section("app tabs: seconds from click to usable (browser tests)")
    logins = sorted({login for login, _ in timings})
    tabs = list(dict.fromkeys(tab for _, tab in timings))
    write(f"{'tab':<12}" + "".join(f"{login:>10}" for login in logins))
    for tab in tabs:
        cells = "".join(f"{timings[(login, tab)]:>10.2f}" if (login, tab) in timings
                        else f"{'—':>10}" for login in logins)
        write(f"{tab:<12}{cells}")
