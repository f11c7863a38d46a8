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
from urllib.parse import urlsplit

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


# -- what leaves the machine, and what the page complains about -------------------------------
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class Watched:
    """A playwright browser context that never reaches past loopback, and what it tried.

    Every request to a host other than 127.0.0.1 / localhost is aborted and
    recorded in ``blocked``; every page's console errors and uncaught
    exceptions land in ``errors``.
    """

    def __init__(self, browser, **context_kwargs) -> None:
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context = browser.new_context(**context_kwargs)
        self.context.route("**/*", self._route)
        self.context.on("page", self._watch)

    def _route(self, route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:", "about:")) or urlsplit(url).hostname in LOOPBACK_HOSTS:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _watch(self, page) -> None:
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def new_page(self):
        return self.context.new_page()

    def close(self) -> None:
        self.context.close()


SCREENSHOTS_ENV = "PMKIT_SCREENSHOTS"


def screenshot_dir(tmp_path_factory) -> Path:
    """Where browser tests save screenshots: ``$PMKIT_SCREENSHOTS`` if set, else a temp dir."""
    chosen = os.environ.get(SCREENSHOTS_ENV)
    if chosen:
        path = Path(chosen)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.getbasetemp() / "screenshots"


# -- the app's tabs: when each is usable, how long it took ------------------------------------
#: What shows that a tab is usable: its main table's cells, chart or controls are visible.
TAB_READY = {
    "Portfolios": '.pmkit-portfolios .tabulator-cell[tabulator-field="value"]',
    "Groups": '.pmkit-groups .tabulator-cell[tabulator-field="value"]',
    "Live": '.pmkit-live-values .tabulator-cell[tabulator-field="value"]',
    "Risk": '.pmkit-risk-summary .tabulator-cell[tabulator-field="es"]',
    "Optimize": ".pmkit-frontier-chart canvas",
    "Approvals": ".pmkit-proposal-select select",
    # the parents' table, or the hint saying how parents arrive (the demo has none)
    "Execution": '.pmkit-execution-parents .tabulator-cell[tabulator-field="parent"], '
                 ".pmkit-execution-empty p",
    # the runs of the strategies (the demo starts one), or the hint saying how to start one
    "Signals": '.pmkit-runs .tabulator-cell[tabulator-field="strategy"], .pmkit-runs-empty p',
}

#: What shows that a tab is drawn in full: every chart of it on the page (each selector
#: matched), for tabs whose charts arrive after their first usable content.
TAB_DRAWN = {
    "Groups": (".pmkit-allocation-chart canvas",),
    "Risk": (".pmkit-risk-contrib canvas", ".pmkit-risk-stress-chart canvas",
             ".pmkit-risk-drawdown canvas"),
    "Optimize": (".pmkit-frontier-chart canvas", '.pmkit-frontier-weights .tabulator-cell'),
}

#: Seconds from a click on a tab to its first usable content, per (login, tab), this session.
TAB_TIMINGS: dict[tuple[str, str], float] = {}


def sign_in(page, url: str, name: str, password: str) -> None:
    """Log ``name`` in through the login form at ``url`` and wait for the app's header."""
    page.goto(url, wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
    form = page.locator("form.login-form")
    form.locator("input[name='username']").fill(name)
    form.locator("input[name='password']").fill(password)
    form.locator("button[type='submit']").click()
    page.locator(".pmkit-user").first.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)


#: In the page, at each frame: is an element matching the selector shown? The selector's
#: descendant steps cross shadow roots (Panel renders components in them), as playwright's
#: CSS engine does; "shown" is playwright's "visible": a non-empty box, not hidden by style.
#: The first frame it is records ``window.__pmkitShownAt`` (ms, the page's clock). Given a
#: list of selectors, it is the first frame showing a match of every one.
_SHOWN_JS = r"""wanted => {
  const within = (root, css) => {
    const found = [];
    const walk = node => {
      for (const el of node.querySelectorAll('*')) {
        if (el.matches(css)) found.push(el);
        if (el.shadowRoot) walk(el.shadowRoot);
      }
    };
    if (root.shadowRoot) walk(root.shadowRoot);
    walk(root);
    return found;
  };
  const shown = el => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== 'hidden';
  };
  const matched = selector => selector.split(',').some(alternative => {
    let scope = [document];
    for (const step of alternative.trim().split(/\s+/)) {
      scope = scope.flatMap(root => within(root, step));
    }
    return scope.some(shown);
  });
  if ((Array.isArray(wanted) ? wanted : [wanted]).every(matched)) {
    window.__pmkitShownAt = performance.now();
    return true;
  }
  return false;
}"""

#: Resolves once the page has run no long task (over 50 ms: script, layout, paint) for
#: ``quiet`` ms in a row: nothing left to draw or lay out. A page that never settles
#: resolves after 20 s regardless.
_SETTLED_JS = r"""quiet => new Promise(resolve => {
  let busy = performance.now();
  const seen = new PerformanceObserver(list => {
    for (const task of list.getEntries()) busy = Math.max(busy, task.startTime + task.duration);
  });
  seen.observe({type: 'longtask', buffered: true});
  const done = at => { seen.disconnect(); resolve(at); };
  const check = () => {
    const now = performance.now();
    if (now - busy >= quiet) done(now); else setTimeout(check, 50);
  };
  setTimeout(check, 50);
  setTimeout(() => done(-1), 20000);
})"""


def open_tab(page, title: str) -> float:
    """Click the app tab ``title`` and wait until it is usable; seconds from the click.

    Measured on the page's own clock, from just before the click to the first
    frame showing the tab's usable content (`TAB_READY`), so the time the test
    driver takes to notice is not counted.
    """
    import re

    tab = page.locator(".bk-tab", has_text=re.compile(rf"^\s*{re.escape(title)}\b")).first
    clicked = page.evaluate("window.__pmkitClickedAt = performance.now()")
    tab.click()
    page.wait_for_function(_SHOWN_JS, arg=TAB_READY[title], polling="raf",
                           timeout=PAGE_TIMEOUT_MS)
    shown = page.evaluate("window.__pmkitShownAt")
    # and as playwright sees it, which the tests' next steps rely on
    page.locator(TAB_READY[title]).first.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    return (shown - clicked) / 1000.0


def tab_drawn(page, title: str, quiet_ms: int = 500) -> float:
    """Wait until the tab opened last is drawn in full and the page is quiet; seconds.

    Returns the seconds from the click on the tab (`open_tab`) to the first
    frame showing every chart of `TAB_DRAWN` (its first usable content for a
    tab without charts there), then waits until the page's main thread has
    been idle for ``quiet_ms``: a click after that measures the next tab
    alone, not the rest of this one.
    """
    wanted = list(TAB_DRAWN.get(title, (TAB_READY[title],)))
    page.wait_for_function(_SHOWN_JS, arg=wanted, polling="raf", timeout=PAGE_TIMEOUT_MS)
    drawn = page.evaluate("window.__pmkitShownAt - window.__pmkitClickedAt")
    page.evaluate(_SETTLED_JS, quiet_ms)
    return drawn / 1000.0
