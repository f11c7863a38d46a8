"""End-to-end: `pmkit serve --users` in a subprocess, driven by Debian chromium via playwright.

People log in (hashed-password users file), act as their pmkit users, and the
store is then read back independently: a trader proposes in the app, a
manager approves it, a viewer is refused, live values move with the feed, and
a portfolio created through the Python API appears. Each test saves a
screenshot under its pytest temporary directory.
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

import pytest

sync_api = pytest.importorskip("playwright.sync_api")

from browser_support import LOGINS, PAGE_TIMEOUT_MS, REFRESH_TIMEOUT_MS  # noqa: E402

from pmkit.datasets import load_market  # noqa: E402
from pmkit.demo import DEMO_CONFIG  # noqa: E402
from pmkit.rebalance import ProposalBook, ProposalState, propose_rebalance  # noqa: E402
from pmkit.registry import Registry  # noqa: E402
from pmkit.store import open_store  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1200)]

GROWTH = "client_a/growth"


def _registry(server) -> Registry:
    return Registry(open_store(server["store"]), market=load_market())


def _tab(page, title: str) -> None:
    page.locator(".bk-tab", has_text=re.compile(rf"^\s*{re.escape(title)}\s*$")).first.click()


def _id_text(pid: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(pid)}\s*$")


def _id_cell(page, pid: str):
    return page.locator('.pmkit-portfolios .tabulator-cell[tabulator-field="id"]',
                        has_text=_id_text(pid)).first


def _cell(page, pid: str, field: str, table: str = ".pmkit-portfolios") -> str:
    id_cell = page.locator('.tabulator-cell[tabulator-field="id"]', has_text=_id_text(pid))
    row = page.locator(f"{table} .tabulator-row", has=id_cell).first
    return row.locator(f'.tabulator-cell[tabulator-field="{field}"]').inner_text().strip()


def _select_proposal(page, proposal_id: str) -> None:
    """Pick ``proposal_id`` in the approval view's selector (it appears within a poll)."""
    select = page.locator(".pmkit-proposal-select select")
    option = select.locator("option", has_text=proposal_id)
    option.wait_for(state="attached", timeout=REFRESH_TIMEOUT_MS)
    select.select_option(value=option.get_attribute("value"))
    sync_api.expect(page.locator(".pmkit-trades .tabulator-row").first).to_be_visible()


def _alice_proposes_by_api(server, portfolio: str) -> str:
    """A pending proposal made through the Python API by alice (a trader on client_a)."""
    reg = _registry(server)
    try:
        alice = reg.as_user("alice")
        # within client_a's 25% max_position_weight: the pre-trade controls refuse more
        proposal = propose_rebalance(alice, portfolio,
                                     target_weights={"KO": 0.2, "PEP": 0.2, "PG": 0.2})
        return ProposalBook(alice).propose(proposal).id
    finally:
        reg.store.close()


def _screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.exists()
    assert path.stat().st_size > 0


def test_a_wrong_password_is_refused_and_no_page_is_served(browser, server, tmp_path):
    context = browser.new_context()
    try:
        pg = context.new_page()
        pg.goto(server["url"], wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
        assert "/login" in pg.url  # not signed in: sent to the login page
        form = pg.locator("form.login-form")
        form.locator("input[name='username']").fill("bob")
        form.locator("input[name='password']").fill(LOGINS["alice"][1])
        form.locator("button[type='submit']").click()
        sync_api.expect(pg.locator("#error-message")).to_contain_text("Invalid")
        assert pg.locator(".pmkit-user").count() == 0
        _screenshot(pg, tmp_path / "refused-login.png")
    finally:
        context.close()


def test_registry_view_shows_demo_values_and_an_api_created_portfolio(login, server, tmp_path):
    page = login("carol")
    _id_cell(page, GROWTH).wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    assert "pmkit serving at http://127.0.0.1:" in Path(server["stdout"]).read_text()
    assert "pmkit feed at ws://127.0.0.1:" in Path(server["stdout"]).read_text()
    assert page.title() == "pmkit operations"
    for pid in DEMO_CONFIG["portfolios"]:
        sync_api.expect(_id_cell(page, pid)).to_be_visible()

    # The value shown equals an independent valuation of the same store, to the cent.
    reg = _registry(server)
    try:
        expected = reg.value(GROWTH)
        # created through the Python API in this process, while the page is open
        reg.create_portfolio("client_c/new", 1000.0, name="Newcomer", at=datetime(2022, 12, 1))
        reg.grant("carol", "client_c/new", "viewer")
    finally:
        reg.store.close()
    shown = float(_cell(page, GROWTH, "value").replace(",", ""))
    assert shown == pytest.approx(expected, abs=0.005 + 1e-9)
    assert _cell(page, GROWTH, "status") == "active"

    _id_cell(page, "client_c/new").wait_for(state="visible", timeout=REFRESH_TIMEOUT_MS)
    assert _cell(page, "client_c/new", "name") == "Newcomer"
    assert _cell(page, "client_c/new", "cash") == "1,000.00"
    assert _cell(page, "client_c/new", "value") == "1,000.00"
    _screenshot(page, tmp_path / "registry.png")


def test_a_viewer_gets_no_enabled_control_and_nothing_changes(login, server, tmp_path):
    # the controls follow the roles (the services' refusals are tested at the service and
    # view level: a viewer's call is refused there with the store unchanged)
    reg = _registry(server)
    try:  # the demo's strategy run writes as prices stream: look at the portfolio's own trail
        before = list(reg.store.audit(target=GROWTH))
    finally:
        reg.store.close()
    page = login("carol")
    _id_cell(page, GROWTH).click()
    for action in ("activate", "deactivate", "delete", "restore", "create"):
        sync_api.expect(page.locator(f".pmkit-{action} button")).to_be_disabled()
    page.locator(".pmkit-deactivate button").click(force=True)  # a click on it does nothing
    page.wait_for_timeout(1000)
    reg = _registry(server)
    try:
        assert reg.portfolio(GROWTH).status == "active"
        assert list(reg.store.audit(target=GROWTH)) == before
    finally:
        reg.store.close()
    _screenshot(page, tmp_path / "viewer-disabled.png")


def test_trader_proposes_in_the_app_and_a_manager_approves_it(login, server, tmp_path):
    # alice, a trader, picks a point on client_a/growth's efficient frontier and proposes it
    page = login("alice")
    _tab(page, "Optimize")
    page.locator(".pmkit-frontier-portfolio select").select_option(GROWTH)
    propose = page.locator(".pmkit-propose button")
    sync_api.expect(propose).to_be_enabled(timeout=PAGE_TIMEOUT_MS)  # the frontier is ready
    page.locator(".pmkit-frontier-point select").select_option(index=5)
    sync_api.expect(page.locator(".pmkit-frontier-point select")).to_have_value(
        re.compile(".+"))
    propose.click()
    made = page.locator(".pmkit-ok .pmkit-proposal-id")
    made.wait_for(state="visible", timeout=PAGE_TIMEOUT_MS)
    proposal_id = made.inner_text().strip()
    assert re.fullmatch(r"rb-[0-9a-f]{32}", proposal_id)
    _screenshot(page, tmp_path / "trader-proposed.png")

    reg = _registry(server)
    try:
        stored = ProposalBook(reg).get(proposal_id)
        assert stored.state == ProposalState.PROPOSED and stored.created_by == "alice"
        assert stored.reason == "efficient frontier point 5" and stored.trades
    finally:
        reg.store.close()

    # bob, a manager on the firm, approves it in his own session
    page = login("bob")
    _tab(page, "Approvals")
    _select_proposal(page, proposal_id)
    page.locator(".pmkit-note input").fill("within the growth risk budget")
    page.locator(".pmkit-approve button").click()
    sync_api.expect(page.locator(".pmkit-proposal-state .pmkit-state-value")).to_have_text(
        "approved", timeout=REFRESH_TIMEOUT_MS)
    sync_api.expect(page.locator(".pmkit-audit")).to_contain_text("proposal.approve")
    _screenshot(page, tmp_path / "manager-approved.png")

    # the store, read independently, holds the approved proposal and its audit trail
    reg = _registry(server)
    try:
        stored = ProposalBook(reg).get(proposal_id)
        assert stored.state == ProposalState.APPROVED
        assert [(h["state"], h["actor"]) for h in stored.history] == [
            ("proposed", "alice"), ("approved", "bob")]
        assert stored.history[-1]["note"] == "within the growth risk budget"
        audit = [(r.actor, r.action) for r in reg.store.audit(target=proposal_id)]
        assert audit == [("alice", "proposal.create"), ("bob", "proposal.approve")]
    finally:
        reg.store.close()


def test_a_viewer_cannot_approve_and_the_proposal_stays_pending(login, server, tmp_path):
    proposal_id = _alice_proposes_by_api(server, "client_a/income")
    page = login("carol")
    _tab(page, "Approvals")
    _select_proposal(page, proposal_id)
    reg = _registry(server)
    try:  # the proposal's own trail (the demo's strategy run writes meanwhile)
        before = list(reg.store.audit(target=proposal_id))
    finally:
        reg.store.close()
    for action in ("approve", "reject"):
        sync_api.expect(page.locator(f".pmkit-{action} button")).to_be_disabled()
    page.locator(".pmkit-approve button").click(force=True)  # a click on it does nothing
    page.wait_for_timeout(1000)
    _screenshot(page, tmp_path / "viewer-approval-disabled.png")
    reg = _registry(server)
    try:
        assert ProposalBook(reg).get(proposal_id).state == ProposalState.PROPOSED
        assert list(reg.store.audit(target=proposal_id)) == before
    finally:
        reg.store.close()


def test_live_values_change_while_the_feed_runs(login, server, tmp_path):
    page = login("carol")
    _tab(page, "Live")
    table = ".pmkit-live-values"
    status = page.locator(".pmkit-live-status .pmkit-live-state")
    sync_api.expect(status).to_have_attribute("data-status", "connected",
                                              timeout=PAGE_TIMEOUT_MS)
    page.locator(f'{table} .tabulator-cell[tabulator-field="id"]',
                 has_text=_id_text(GROWTH)).first.wait_for(state="visible")
    seen = {_cell(page, GROWTH, "value", table)}
    deadline = time.monotonic() + 30
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        seen.add(_cell(page, GROWTH, "value", table))
    assert len(seen) >= 3, f"live value did not move: {seen}"
    assert all(float(v.replace(",", "")) > 0 for v in seen)
    _screenshot(page, tmp_path / "live.png")


def test_the_execution_tab_pauses_resumes_and_cancels_a_parent(login, server, tmp_path):
    from pmkit.execution import ExecutionEngine, PaperBroker, plan_of, simulate_session

    # a parent order worked ten intervals into a session, in this process, on the app's store
    reg = _registry(server)
    try:
        alice = reg.as_user("alice")
        engine = ExecutionEngine(alice, PaperBroker(alice))
        day = reg.market.indexes["time"][-3]
        sess = simulate_session(reg.market, day, assets=["MSFT"], intervals=26, seed=2)
        engine.place(GROWTH, "MSFT", -52.0, reference_price=float(sess.prices[0, 0]),
                     id="bx-1")
        engine.run(sess, until=10)
        filled = engine._load("bx-1").filled
        assert filled == -20.0
    finally:
        reg.store.close()

    def state() -> tuple[str, str]:
        r = _registry(server)
        try:
            p = ExecutionEngine(r, PaperBroker(r))._load("bx-1")
            return str(p.status), plan_of(p).state
        finally:
            r.store.close()

    # a viewer sees it, with no enabled control
    page = login("carol")
    _tab(page, "Execution")
    parent = page.locator('.pmkit-execution-parents .tabulator-cell[tabulator-field="parent"]',
                          has_text=_id_text("bx-1")).first
    parent.wait_for(state="visible", timeout=REFRESH_TIMEOUT_MS)
    id_cell = page.locator('.tabulator-cell[tabulator-field="parent"]', has_text=_id_text("bx-1"))
    row = page.locator(".pmkit-execution-parents .tabulator-row", has=id_cell).first
    shown = row.locator('.tabulator-cell[tabulator-field="filled_pct"]').inner_text().strip()
    assert float(shown) == pytest.approx(100 * 20 / 52, abs=0.005)  # 20 of 52 sold
    for verb in ("pause", "resume", "cancel"):
        sync_api.expect(page.locator(f".pmkit-{verb} button")).to_be_disabled()
    page.locator(".pmkit-cancel button").click(force=True)
    page.wait_for_timeout(1000)
    assert state() == ("partially_filled", "working")

    # the trader pauses, resumes and cancels it; the store follows each click
    page = login("alice")
    _tab(page, "Execution")
    select = page.locator(".pmkit-execution-select select")
    select.locator("option", has_text="bx-1").wait_for(state="attached",
                                                       timeout=REFRESH_TIMEOUT_MS)
    select.select_option(value="bx-1")
    sync_api.expect(page.locator(".pmkit-execution-chart canvas").first).to_be_visible()
    page.locator(".pmkit-pause button").click()
    sync_api.expect(page.locator(".pmkit-resume button")).to_be_enabled(
        timeout=REFRESH_TIMEOUT_MS)
    assert state() == ("partially_filled", "paused")
    page.locator(".pmkit-resume button").click()
    sync_api.expect(page.locator(".pmkit-pause button")).to_be_enabled(
        timeout=REFRESH_TIMEOUT_MS)
    assert state() == ("partially_filled", "working")
    page.locator(".pmkit-cancel button").click()
    sync_api.expect(page.locator(".pmkit-cancel button")).to_be_disabled(
        timeout=REFRESH_TIMEOUT_MS)
    assert state() == ("cancelled", "done")
    # its transaction costs: a row of the TCA table and the stacked chart
    tca = page.locator('.pmkit-execution-tca .tabulator-cell[tabulator-field="parent"]',
                       has_text=_id_text("bx-1")).first
    tca.wait_for(state="visible", timeout=REFRESH_TIMEOUT_MS)
    sync_api.expect(page.locator(".pmkit-execution-tca-chart canvas").first).to_be_visible(
        timeout=REFRESH_TIMEOUT_MS)
    page.wait_for_timeout(2500)  # a poll after the clicks: the view refreshed without error
    assert page.locator(".pmkit-error:visible").count() == 0
    _screenshot(page, tmp_path / "execution-cancelled.png")
