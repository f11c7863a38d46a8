"""The served app against hostile input, in real chromium (the session's browser and server).

Script and image payloads written as portfolio, group and user names, tags,
descriptions, proposal reasons and approval notes render as literal text in
every tab, with no dialog and no script run; login never redirects off the
app; a cross-site login form is refused; repeated wrong passwords get 429.
"""

from __future__ import annotations

import re
import urllib.parse
from datetime import datetime

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from browser_support import PAGE_TIMEOUT_MS, REFRESH_TIMEOUT_MS  # noqa: E402

from pmkit.auth import UsersFile  # noqa: E402
from pmkit.datasets import load_market  # noqa: E402
from pmkit.rebalance import ProposalBook, propose_rebalance  # noqa: E402
from pmkit.registry import Registry  # noqa: E402
from pmkit.store import open_store  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

PAYLOADS = {
    "script": "<script>window.__xss=1</script>",
    "img": '<img src=x onerror="window.__xss=1">',
    "svg": '"><svg onload=alert(1)>',
}
MALLORY = ("mallory", "mallory-injects-2026")


def _tab(page, title: str) -> None:
    page.locator(".bk-tab", has_text=re.compile(rf"^\s*{re.escape(title)}\s*$")).first.click()


@pytest.fixture(scope="module")
def hostile(server) -> str:
    """Payload-named objects in the served store, and a login whose display name is one.

    Returns the id of an approved proposal whose reason and note are payloads.
    """
    reg = Registry(open_store(server["store"]), market=load_market())
    try:
        at = datetime(2022, 12, 1)
        reg.create_portfolio("client_x/xss1", 1000.0, name=PAYLOADS["script"],
                             description=PAYLOADS["img"], tags=[PAYLOADS["svg"]], at=at)
        reg.create_portfolio("client_x/xss2", 1000.0, name=PAYLOADS["img"], at=at)
        reg.create_group("client_x", ["client_x/xss1", "client_x/xss2"], name=PAYLOADS["svg"],
                         description=PAYLOADS["script"])
        reg.add_user(MALLORY[0], display_name=PAYLOADS["svg"])
        reg.grant(MALLORY[0], "client_x", "viewer")
        reg.grant("bob", "client_x", "manager")
        # 25%: within the demo's 30% max_position_weight (the pre-trade controls refuse more)
        proposal = propose_rebalance(reg, "client_x/xss1", target_weights={"KO": 0.25},
                                     reason=PAYLOADS["img"])
        pid = ProposalBook(reg).propose(proposal).id
        ProposalBook(reg.as_user("bob")).approve(pid, PAYLOADS["script"])
    finally:
        reg.store.close()
    UsersFile.load(server["users"]).add(*MALLORY)  # the running server re-reads the file
    return pid


def _watch(page) -> list[str]:
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return dialogs


def _no_script_ran(page, dialogs: list[str]) -> None:
    assert dialogs == []
    assert page.evaluate("() => window.__xss === undefined")


def _shows(page, text: str, scope: str = "body") -> None:
    sync_api.expect(page.locator(scope, has_text=text).first).to_be_visible(
        timeout=REFRESH_TIMEOUT_MS)


def test_user_text_renders_literally_in_every_tab(login, hostile, tmp_path) -> None:
    page = login(*MALLORY)
    dialogs = _watch(page)
    # the header: the display name
    sync_api.expect(page.locator(".pmkit-user")).to_contain_text(PAYLOADS["svg"])

    # Portfolios: names and tags in the table
    cell = page.locator('.pmkit-portfolios .tabulator-cell[tabulator-field="name"]',
                        has_text=PAYLOADS["script"]).first
    cell.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    assert cell.inner_text().strip() == PAYLOADS["script"]
    _shows(page, PAYLOADS["img"], '.pmkit-portfolios .tabulator-cell[tabulator-field="name"]')
    _shows(page, PAYLOADS["svg"], '.pmkit-portfolios .tabulator-cell[tabulator-field="tags"]')
    _no_script_ran(page, dialogs)

    # Groups: the table and the hierarchy
    _tab(page, "Groups")
    _shows(page, PAYLOADS["svg"], '.pmkit-groups .tabulator-cell[tabulator-field="name"]')
    _shows(page, PAYLOADS["script"], ".pmkit-tree td.name")
    _no_script_ran(page, dialogs)

    # Approvals: the reason in the summary, the approval note in the history
    _tab(page, "Approvals")
    page.locator(".pmkit-show-all input").check()
    select = page.locator(".pmkit-proposal-select select")
    option = select.locator("option", has_text=hostile)
    option.wait_for(state="attached", timeout=REFRESH_TIMEOUT_MS)
    select.select_option(value=option.get_attribute("value"))
    _shows(page, PAYLOADS["img"], ".pmkit-proposal-summary")
    _shows(page, PAYLOADS["script"], ".pmkit-history .tabulator-cell")
    _no_script_ran(page, dialogs)

    # Signals and Live render too, with nothing run. Risk and Optimize show only
    # validated ids and numbers, and computing them costs a minute each here: not opened.
    for title, marker in (("Signals", ".pmkit-signals:visible, .pmkit-signals-empty:visible"),
                              ("Live", ".pmkit-live-status")):
        _tab(page, title)
        page.locator(marker).first.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
        _no_script_ran(page, dialogs)
    page.screenshot(path=str(tmp_path / "xss.png"), full_page=True)


def _submit(page, username: str, password: str):
    form = page.locator("form.login-form")
    form.locator("input[name='username']").fill(username)
    form.locator("input[name='password']").fill(password)
    with page.expect_response(lambda r: r.request.method == "POST") as info:
        form.locator("button[type='submit']").click()
    return info.value


def test_login_never_redirects_off_the_app(browser, server) -> None:
    from browser_support import LOGINS

    context = browser.new_context()
    left: list[str] = []
    context.route(re.compile(r"^https?://evil\.example"),
                  lambda route: (left.append(route.request.url), route.abort()))
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        app = urllib.parse.urlsplit(server["url"])
        for hostile in ("///evil.example", "/\\evil.example", "%2F%2Fevil.example",
                        "https://evil.example/"):
            page.goto(f"{server['url']}login?next={urllib.parse.quote(hostile, safe='')}",
                      wait_until="domcontentloaded")
            response = _submit(page, "carol", LOGINS["carol"][1])
            assert response.status == 302
            assert response.headers["location"] == "/"
            page.wait_for_url(server["url"], wait_until="commit")
            assert urllib.parse.urlsplit(page.url).netloc == app.netloc
        sync_api.expect(page.locator(".pmkit-user")).to_contain_text("(carol:")
        assert left == []
    finally:
        context.close()


def test_a_cross_site_login_form_is_refused(browser, server) -> None:
    from browser_support import LOGINS

    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        # a page elsewhere posting the login form with valid credentials (login CSRF)
        page.set_content(
            f'<form id="f" method="post" action="{server["url"]}login">'
            '<input name="username" value="carol">'
            f'<input name="password" value="{LOGINS["carol"][1]}"></form>')
        with page.expect_navigation(wait_until="domcontentloaded") as info:
            page.evaluate("document.getElementById('f').submit()")
        assert info.value.status == 403 and info.value.request.method == "POST"
        sync_api.expect(page.locator("#error-message")).to_contain_text("expired")
        assert not [c for c in context.cookies() if c["name"] in ("user", "pmkit_session")]
        page.goto(server["url"], wait_until="domcontentloaded")
        assert "/login" in page.url
        sync_api.expect(page.locator("form.login-form")).to_be_visible()
    finally:
        context.close()


def test_repeated_wrong_passwords_are_answered_429(browser, server) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        statuses = []
        for _ in range(10):  # 5 free failures, then lockouts of 2 s, 4 s, ...
            page.goto(server["url"] + "login", wait_until="domcontentloaded")
            response = _submit(page, "mallet", "not-the-password")
            statuses.append(response.status)
            if response.status == 429:
                break
        assert statuses[:5] == [302] * 5 and statuses[-1] == 429, statuses
        assert int(response.headers["retry-after"]) >= 1
        sync_api.expect(page.locator("#error-message")).to_contain_text("Too many failed logins")
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["pmkit_csrf"]["httpOnly"] and cookies["pmkit_csrf"]["sameSite"] == "Lax"
        assert "user" not in cookies and "pmkit_session" not in cookies
    finally:
        context.close()
    # `pmkit serve` audits each lockout in its store
    store = open_store(server["store"])
    try:
        audit = store.audit(target="login 'mallet'")
    finally:
        store.close()
    assert [r.action for r in audit] == ["auth.lockout"] * (len(statuses) - 6)  # one per 302 past 5
    assert audit[0].after["address"] == "127.0.0.1" and audit[0].after["seconds"] == 2.0


def test_logout_closes_open_pages_and_a_copied_cookie_opens_nothing(login, browser,
                                                                     server) -> None:
    page = login("carol")
    sync_api.expect(page.locator(".pmkit-tabs").first).to_be_visible()
    copied = [c for c in page.context.cookies() if c["name"] in ("user", "pmkit_session")]
    assert {c["name"] for c in copied} == {"user", "pmkit_session"}
    assert all(c["httpOnly"] and c["sameSite"] == "Lax" for c in copied)

    other = page.context.new_page()  # signing out in another tab of the same browser
    other.goto(server["url"] + "logout", wait_until="domcontentloaded")
    sync_api.expect(page.locator(".pmkit-signed-out")).to_be_visible(timeout=REFRESH_TIMEOUT_MS)
    sync_api.expect(page.locator(".pmkit-tabs").first).to_be_hidden()

    thief = browser.new_context()  # someone who copied the cookies before the logout
    try:
        thief.add_cookies(copied)
        stolen = thief.new_page()
        stolen.goto(server["url"], wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
        assert "/login" in stolen.url
        sync_api.expect(stolen.locator("form.login-form")).to_be_visible()
        assert stolen.locator(".pmkit-user").count() == 0
    finally:
        thief.close()
