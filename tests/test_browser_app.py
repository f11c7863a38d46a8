"""End-to-end: `pmkit serve` in a subprocess, driven by Debian's chromium through playwright."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from pmkit.datasets import load_market  # noqa: E402
from pmkit.demo import DEMO_CONFIG  # noqa: E402
from pmkit.registry import Registry  # noqa: E402
from pmkit.store import open_store  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

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


def _run(cmd: list[str], timeout: float) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (never `playwright install`)."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and this user cannot install it; run as root: "
                    "apt-get update && apt-get install -y chromium")
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and apt-get is not available to install it")
    _run(["apt-get", "update"], timeout=600)
    _run(["apt-get", "install", "-y", "chromium"], timeout=900)
    if not Path(CHROMIUM).exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} does not exist")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A `pmkit serve` subprocess on a fresh demo sqlite store."""
    root = tmp_path_factory.mktemp("served")
    store_url = f"sqlite:///{root}/app.sqlite"
    port = _free_port()
    out, err = root / "server.out", root / "server.err"
    cmd = [sys.executable, "-m", "pmkit.cli", "serve", "--store", store_url,
           "--port", str(port), "--address", "127.0.0.1", "--feed-port", "0"]
    with out.open("wb") as fout, err.open("wb") as ferr:
        proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, cwd=root)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_http(url, proc, err, SERVER_START_TIMEOUT)
        yield {"url": url, "store": store_url, "stdout": str(out)}
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def browser(chromium: str):
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(PAGE_TIMEOUT_MS)
    pg.goto(server["url"], wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
    try:
        yield pg
    finally:
        context.close()


def _id_cell(page, pid: str):
    return page.locator('.tabulator-cell[tabulator-field="id"]',
                        has_text=re.compile(rf"^\s*{re.escape(pid)}\s*$")).first


def _cell(page, pid: str, field: str) -> str:
    row = page.locator(".tabulator-row", has=_id_cell(page, pid)).first
    return row.locator(f'.tabulator-cell[tabulator-field="{field}"]').inner_text().strip()


def _screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.exists()
    assert path.stat().st_size > 0


def test_served_app_shows_demo_portfolios_and_groups(page, server, tmp_path):
    first = _id_cell(page, "client_a/growth")
    first.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    assert "pmkit serving at http://127.0.0.1:" in Path(server["stdout"]).read_text()
    # the local feed is the app's default market-data source
    assert "pmkit feed at ws://127.0.0.1:" in Path(server["stdout"]).read_text()
    assert page.title() == "pmkit operations"

    for pid in DEMO_CONFIG["portfolios"]:
        sync_api.expect(_id_cell(page, pid)).to_be_visible()

    # The value shown equals an independent valuation of the same store, to the cent.
    reg = Registry(open_store(server["store"]), market=load_market())
    try:
        expected = reg.value("client_a/growth")
    finally:
        reg.store.close()
    shown = float(_cell(page, "client_a/growth", "value").replace(",", ""))
    assert shown == pytest.approx(expected, abs=0.005 + 1e-9)
    assert _cell(page, "client_a/growth", "name") == "Growth Strategy"
    assert _cell(page, "client_a/growth", "status") == "active"

    tree = page.locator("table.pmkit-tree")
    sync_api.expect(tree.locator("tr[data-node='client_a']")).to_contain_text(
        "Client A Portfolios")
    sync_api.expect(tree.locator("tr[data-node='firm']")).to_contain_text("Firm")
    sync_api.expect(tree.locator("tr[data-node='client_a/growth']")).to_contain_text("70.0%")

    _screenshot(page, tmp_path / "demo.png")


def test_portfolio_created_elsewhere_appears_without_reload(page, server, tmp_path):
    _id_cell(page, "client_a/growth").wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    assert _id_cell(page, "client_c/new").count() == 0

    reg = Registry(open_store(server["store"]))
    try:
        # deposited inside the market history, so it counts as of the last close
        reg.create_portfolio("client_c/new", 1000.0, name="Newcomer", at=datetime(2022, 12, 1))
    finally:
        reg.store.close()

    _id_cell(page, "client_c/new").wait_for(state="visible", timeout=REFRESH_TIMEOUT_MS)
    assert _cell(page, "client_c/new", "name") == "Newcomer"
    assert _cell(page, "client_c/new", "cash") == "1,000.00"
    assert _cell(page, "client_c/new", "value") == "1,000.00"
    sync_api.expect(page.locator("table.pmkit-tree tr[data-node='client_c/new']")).to_be_visible(
        timeout=REFRESH_TIMEOUT_MS)

    _screenshot(page, tmp_path / "created.png")
