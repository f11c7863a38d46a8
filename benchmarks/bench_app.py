"""Benchmark group ``app``: how long each tab of the served app takes to become usable.

``pmkit serve`` runs with logins on a fresh demo store (SQLite, with the local
feed), as ``make run`` serves it; Debian chromium (playwright) signs in as
**bob** (manager on the firm: every tab has content) in a fresh browser
context, opens the Portfolios tab (the first page load), then each other tab
in order, and records the seconds from the click to the tab's first usable
content (`browser_support.TAB_READY`: its table's cells, its chart, its
controls) and to the tab drawn in full (`TAB_DRAWN`: every chart of it).
The next tab is clicked once the page is quiet (`tab_drawn`), so each time
is the tab's own: a tab clicked while the one before still draws its
charts waits for that too (clicked the moment Risk's table shows, Optimize
took 2.0 s median and up to 3.1 s, reported in issue 15's note). Each
sign-in is a new session, so every tab is built afresh; the median over
``ctx.repeats`` sessions is reported (the first session, which also
compiles the JAX kernels of the server process, is the warm-up).

Targets (issue 15): every tab usable within 2 s of opening after the first
page load, the Risk tab within 3 s. No peer library has these screens: the
ratio is target / measured (at least 1 meets it); the "drawn in full" rows
have no target and say how long the charts after the first content take.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import Context, Row, benchmark_group, fail

TESTS = Path(__file__).resolve().parent.parent / "tests"
TARGET_S = {"Risk": 3.0}
DEFAULT_TARGET_S = 2.0


@benchmark_group("app")
def app_tabs(ctx: Context) -> list[Row]:
    sys.path.insert(0, str(TESTS))
    from browser_support import (
        CHROMIUM,
        CHROMIUM_ARGS,
        LOGINS,
        SERVER_START_TIMEOUT,
        TAB_DRAWN,
        TAB_READY,
        Watched,
        free_port,
        open_tab,
        sign_in,
        stop,
        tab_drawn,
        wait_http,
    )
    from playwright.sync_api import sync_playwright

    from pmkit.auth import UsersFile

    if not Path(CHROMIUM).exists():
        fail(f"{CHROMIUM} is missing: run the browser tests once (they install it)")
    users = UsersFile(ctx.tmp / "users.json")
    for login, (user, password) in LOGINS.items():
        users.add(login, password, user=user)
    port = free_port()
    log = ctx.tmp / "serve.log"
    cmd = [sys.executable, "-m", "pmkit.cli", "serve", "--store",
           f"sqlite:///{ctx.tmp}/app.sqlite", "--create", "--port", str(port),
           "--address", "127.0.0.1", "--feed-port", "0", "--users", str(ctx.tmp / "users.json")]
    sessions = 2 if ctx.quick else max(ctx.repeats, 3)
    # Live last: once open, its 4 Hz table updates keep a headless chromium without a GPU
    # busy, and every tab opened after it waits for the page (reported in issue 15's note)
    tabs = [t for t in TAB_READY if t != "Live"] + ["Live"]
    seconds: dict[str, list[float]] = {tab: [] for tab in tabs}
    drawn: dict[str, list[float]] = {tab: [] for tab in tabs if tab in TAB_DRAWN}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ctx.tmp)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url + "login", proc, log, SERVER_START_TIMEOUT)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=CHROMIUM_ARGS)
            for session in range(sessions + 1):  # session 0 is the warm-up
                watched = Watched(browser, viewport={"width": 1400, "height": 1000})
                page = watched.new_page()
                start = time.monotonic()
                sign_in(page, url, "bob", LOGINS["bob"][1])
                times = {tabs[0]: open_tab(page, tabs[0]) + (time.monotonic() - start)}
                full = {}
                tab_drawn(page, tabs[0])
                for tab in tabs[1:]:
                    times[tab] = open_tab(page, tab)
                    if tab != tabs[-1]:  # Live, last, never goes quiet (4 updates a second)
                        full[tab] = tab_drawn(page, tab)
                if watched.blocked:
                    fail(f"requests left the machine: {watched.blocked}")
                watched.close()
                if session:
                    for tab, t in times.items():
                        seconds[tab].append(t)
                    for tab in drawn:
                        drawn[tab].append(full[tab])
            browser.close()
    finally:
        stop(proc)
    rows = []
    for tab in tabs:
        med = statistics.median(seconds[tab])
        # the first page load has no target ("after the first page load")
        target = None if tab == tabs[0] else TARGET_S.get(tab, DEFAULT_TARGET_S)
        what = "sign-in to first table (page load)" if tab == tabs[0] else "click to usable"
        rows.append(Row("app tab usable", tab, med, "s", None,
                        None if target is None else target / med,
                        f"{what}; median of {sessions} sessions as bob; "
                        f"max {max(seconds[tab]):.2f} s"
                        + ("" if target is None else f"; target <= {target:g} s")))
    for tab, values in drawn.items():
        rows.append(Row("app tab drawn", tab, statistics.median(values), "s", None, None,
                        f"click to every chart drawn; median of {sessions} sessions as bob; "
                        f"max {max(values):.2f} s"))
    return rows
