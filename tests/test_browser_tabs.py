"""Every tab of the served app, for every role, offline: it renders, says nothing in the
console, and shows the key columns without scrolling.

Each login opens each tab in a fresh browser context that aborts any request
leaving loopback; a screenshot of every tab per role is saved (in
``$PMKIT_SCREENSHOTS`` when set, else under pytest's temporary directory),
and the time from the click to the tab's first usable content is recorded
and reported at the end of the session (a measurement, not an assertion:
see ``benchmarks/bench_app.py`` for the benchmark row).
"""

from __future__ import annotations

import re

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from browser_support import (  # noqa: E402
    LOGINS,
    PAGE_TIMEOUT_MS,
    TAB_READY,
    TAB_TIMINGS,
    Watched,
    open_tab,
    screenshot_dir,
    sign_in,
)

from pmkit_widgets.app import TABS  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

#: The viewport widths an operations desk uses (issue 15: 1280 to 1920 px).
WIDTHS = (1280, 1400, 1920)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory):
    path = screenshot_dir(tmp_path_factory) / "app"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("login", sorted(LOGINS))
def test_every_tab_renders_offline_without_console_errors(browser, server, shots, login):
    watched = Watched(browser, viewport={"width": 1400, "height": 1000})
    try:
        page = watched.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        sign_in(page, server["url"], login, LOGINS[login][1])
        for index, title in enumerate(TABS):
            TAB_TIMINGS[(login, title)] = open_tab(page, title)
            page.screenshot(path=str(shots / f"{login}-{index}-{title.lower()}.png"),
                            full_page=True)
        # shown again, each tab comes back (its view left the page while hidden, and only the
        # shown tab's view is on it), still without a request leaving the machine
        for title, previous in zip([*TABS[1:], TABS[0]], TABS, strict=True):
            open_tab(page, title)
            assert page.locator(TAB_READY[previous]).count() == 0, f"{previous} stayed on the page"
        assert watched.blocked == [], f"requests left the machine: {sorted(set(watched.blocked))}"
        assert watched.errors == [], "the browser console reported errors"
    finally:
        watched.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_value_pnl_and_risk_columns_are_visible_without_scrolling(browser, server, width):
    watched = Watched(browser, viewport={"width": width, "height": 900})
    try:
        page = watched.new_page()
        sign_in(page, server["url"], "bob", LOGINS["bob"][1])
        open_tab(page, "Portfolios")
        holder = page.locator(".pmkit-portfolios .tabulator-tableholder").first
        box = holder.bounding_box()
        assert box is not None
        right = min(box["x"] + box["width"], width)
        for field in ("value", "day_pnl", "volatility"):
            header = page.locator(
                f'.pmkit-portfolios .tabulator-col[tabulator-field="{field}"]').first
            sync_api.expect(header).to_be_visible()
            col = header.bounding_box()
            assert col is not None
            assert col["x"] >= box["x"] and col["x"] + col["width"] <= right + 1, (
                f"{field} column ends at {col['x'] + col['width']:.0f} px, past the visible "
                f"table ({right:.0f} px) at a {width} px wide window")
        assert watched.blocked == []
    finally:
        watched.close()


@pytest.mark.parametrize("path", ["login", "logout"])
def test_sign_in_pages_carry_pmkits_name_and_fetch_nothing_from_other_hosts(browser, server,
                                                                           path):
    watched = Watched(browser, viewport={"width": 1280, "height": 800})
    try:
        page = watched.new_page()
        page.goto(server["url"] + path, wait_until="load", timeout=PAGE_TIMEOUT_MS)
        assert re.search(r"\bpmkit\b", page.title())
        sync_api.expect(page.locator(".brand-name")).to_have_text("pmkit")
        assert "Panel" not in page.locator("body").inner_text()
        images = page.evaluate("[...document.images].map(i => i.src)")
        assert images == []  # the logo is inline SVG
        favicon = page.locator("link[rel='icon']").get_attribute("href")
        assert favicon.startswith("data:image/svg+xml")
        assert watched.blocked == [] and watched.errors == []
    finally:
        watched.close()
