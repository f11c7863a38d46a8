"""The served app against hostile clients, over real HTTP on loopback.

Open redirects after login, CSRF on the login form, cookie flags, login
throttling (per login, per address, the bounded hashing pool) and
server-side sessions (logout, deactivation, password change), each checked
with a plain HTTP client that replays cookies exactly as an attacker would.
"""

from __future__ import annotations

import functools
import re
import socket
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("panel")

from web_client import Client

from pmkit.auth import UsersFile, is_active_user
from pmkit.errors import ThrottledError
from pmkit_widgets.auth import PmkitAuthProvider, audit_lockout, safe_next_url
from pmkit_widgets.sessions import SessionStore
from pmkit_widgets.throttle import BoundedPool, LoginThrottle

PASSWORD = "correct horse battery"
OTHER = "staple-tuna-42"
SECRET = "k" * 32

pytestmark = pytest.mark.timeout(300)


# -- next: only paths of this app ----------------------------------------------------------
HOSTILE_NEXT = [
    "///evil.example",
    "//evil.example",
    "////evil.example/x",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "https://evil.example",
    "HTTPS://evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "%2F%2Fevil.example",
    "/%2F%2Fevil.example",
    "/%2Fevil.example",
    "/%252F%252Fevil.example",
    "/%5Cevil.example",
    "/%5C%5Cevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/%09/evil.example",
    "/%0A/evil.example",
    "/%0d%0aSet-Cookie:x=1",
    " //evil.example",
    "evil.example",
    "/ok path",
    "/caf\u00e9",
    "/" + "a" * 5000,
    "/%25252525252F%25252525252Fevil.example",
    "",
]


@pytest.mark.parametrize("value", HOSTILE_NEXT)
def test_hostile_next_falls_back_to_the_app_root(value) -> None:
    assert safe_next_url(value) == "/"
    assert safe_next_url(value, "/pm/") == "/pm/"


@pytest.mark.parametrize("value", [None, b"/x", 42, ["/x"]])
def test_non_string_next_falls_back_to_the_root(value) -> None:
    assert safe_next_url(value) == "/"


@pytest.mark.parametrize("value", ["/", "/?tab=2", "/app/x?y=1&z=%2F#frag", "/%E2%9C%93"])
def test_paths_of_the_app_are_kept(value) -> None:
    assert safe_next_url(value) == value


def test_next_outside_the_prefix_falls_back() -> None:
    assert safe_next_url("/pm/live", "/pm/") == "/pm/live"
    assert safe_next_url("/other/app", "/pm/") == "/pm/"


def _where_a_browser_goes(location: str) -> urllib.parse.SplitResult:
    """Where a browser lands following ``Location: location`` from http://app.example/login.

    WHATWG URL parsing strips leading/trailing C0 controls and spaces, drops
    tabs and newlines anywhere and reads ``\\`` as ``/`` in special schemes.
    """
    cleaned = location.strip("".join(map(chr, range(33))))
    cleaned = "".join(ch for ch in cleaned if ch not in "\t\n\r").replace("\\", "/")
    return urllib.parse.urlsplit(urllib.parse.urljoin("http://app.example/login", cleaned))


_PREFIXES = ["//", "///", "/\\", "\\\\", "\\/", "/\t/", "/\n/", " //", "https://", "http:",
             "javascript:", "JAVASCRIPT:", "//@", "/%2F", "%2F%2F", "/%5C", "/%09/", "%5C%5C",
             "/%252F", "data:"]


@st.composite
def hostile_next(draw) -> str:
    """A ``next`` value built to leave the app: a redirecting prefix, a host, junk, encodings."""
    host = draw(st.sampled_from(["evil.example", "evil.example:8080", "127.0.0.1", "[::1]",
                                 "user@evil.example", "alert(1)"]))
    value = draw(st.sampled_from(_PREFIXES)) + host
    value += draw(st.text(st.characters(codec="ascii"), max_size=12))
    if draw(st.booleans()):  # percent-encode slashes and backslashes, maybe twice
        value = value.replace("/", "%2F").replace("\\", "%5C")
        if draw(st.booleans()):
            value = value.replace("%", "%25")
    if draw(st.booleans()):  # tabs / newlines inside (browsers drop them)
        at = draw(st.integers(0, len(value)))
        value = value[:at] + draw(st.sampled_from(["\t", "\n", "\r", "\t\n"])) + value[at:]
    return value


@settings(max_examples=300, deadline=None)
@given(hostile_next())
def test_generated_hostile_next_never_leaves_the_app(value) -> None:
    result = safe_next_url(value)
    assert result == "/", (value, result)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | hostile_next())
def test_whatever_next_is_given_the_browser_stays_on_the_app(value) -> None:
    result = safe_next_url(value)
    landed = _where_a_browser_goes(result)
    assert (landed.scheme, landed.netloc) == ("http", "app.example"), (value, result)
    assert result.startswith("/") and not result.startswith("//") and "\\" not in result


# -- throttle and sessions, unit level -----------------------------------------------------------
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockouts_double_from_the_base_up_to_the_cap() -> None:
    clock = _Clock()
    throttle = LoginThrottle(free_failures=3, base_delay=2, max_delay=60, clock=clock)
    delays = [throttle.failure("k") for _ in range(10)]
    assert delays == [0, 0, 0, 2, 4, 8, 16, 32, 60, 60]
    with pytest.raises(ThrottledError) as info:
        throttle.check("k")
    assert info.value.retry_after == 60 and info.value.key == "k"
    throttle.check("other")  # other keys are not affected
    clock.now += 60
    throttle.check("k")  # the lockout ran out; the count stays until forgotten
    assert throttle.failure("k") == 60
    clock.now += 60 + 901
    assert throttle.failure("k") == 0  # forgotten after 15 quiet minutes: free again
    throttle.success("k")
    assert len(throttle) == 0


def test_throttle_memory_is_bounded() -> None:
    throttle = LoginThrottle(free_failures=0, max_keys=50)
    for i in range(1000):
        throttle.failure(f"login {i}")
    assert len(throttle) == 50
    assert throttle.retry_after("login 999") > 0 and throttle.retry_after("login 0") == 0


def test_sessions_expire_end_and_stay_bounded() -> None:
    clock = _Clock()
    store = SessionStore(100.0, max_sessions=3, clock=clock)
    a = store.create("alice", "fp-a")
    assert store.get(a).login == "alice" and len(a) >= 43
    assert store.create("alice", "fp-a") != a
    clock.now += 101
    assert store.get(a) is None  # expired
    b, c, d, _ = (store.create(x, "fp") for x in ("bob", "carol", "dave", "erin"))
    assert len(store) == 3 and store.get(b) is None  # the oldest made room
    assert store.end_login("carol") == 1 and store.get(c) is None
    assert store.end(d).login == "dave" and store.get(d) is None and store.end(d) is None
    assert store.logins() == {"erin"}


# -- a real server ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo():
    from pmkit.demo import open_demo

    return open_demo()


@pytest.fixture
def users_path(tmp_path: Path) -> Path:
    users = UsersFile.load(tmp_path / "users.json", missing_ok=True)
    users.add("alice", PASSWORD)
    users.add("boss", OTHER, user="bob")
    return users.path


@pytest.fixture
def serve(serve_panel, users_path, demo):
    """``serve(**provider_kwargs) -> (port, provider)``: the app behind pmkit logins."""
    import panel as pn

    from pmkit_widgets.auth import session_login

    def start(**provider_kwargs):
        provider_kwargs.setdefault("is_allowed", functools.partial(is_active_user, demo))
        provider = PmkitAuthProvider(users_path, **provider_kwargs)

        def app():
            return pn.pane.Markdown(f"hello {session_login(provider)}")

        port = serve_panel(app, auth_provider=provider, cookie_secret=SECRET)
        return port, provider

    return start


_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)
_PMKIT_TITLE = re.compile(r"<title>[^<]*\bpmkit\b[^<]*</title>")


def test_the_pages_are_pmkits_and_fetch_nothing_from_elsewhere(serve_panel, users_path,
                                                               demo) -> None:
    """Sign-in, app and signed-out pages: pmkit's name, favicon inline, no external URL."""
    from pmkit_widgets.app import build_app
    from pmkit_widgets.auth import session_login

    provider = PmkitAuthProvider(users_path, is_allowed=functools.partial(is_active_user, demo))

    def app():
        return build_app(demo.as_user(session_login(provider)), poll_period=None, logins=True)

    port = serve_panel(app, auth_provider=provider, cookie_secret=SECRET)
    client = Client(port)
    login = client.request("GET", "/login")
    assert login.status == 200
    assert _PMKIT_TITLE.search(login.body) and "Panel" not in login.body
    assert 'rel="icon"' in login.body and "data:image/svg+xml" in login.body
    assert not _EXTERNAL.search(login.body), _EXTERNAL.search(login.body)
    assert client.login("alice", PASSWORD).status == 302
    page = client.request("GET", "/")
    assert page.status == 200, page.body[-2000:]
    assert "data:image/svg+xml;base64," in page.body  # the favicon, embedded
    assert "cdn.holoviz.org" not in page.body and "cdn.bokeh.org" not in page.body
    assert "fonts.googleapis.com" not in page.body  # the Fast design's web font is left out
    logout = client.request("GET", "/logout")
    assert logout.status == 200 and _PMKIT_TITLE.search(logout.body)
    assert not _EXTERNAL.search(logout.body)


@pytest.mark.parametrize("hostile", ["///evil.example", "//evil.example", "/\\evil.example",
                                     "https://evil.example", "javascript:alert(1)",
                                     "%2F%2Fevil.example", "/%5Cevil.example", "/\t/evil.example"])
def test_login_redirects_only_within_the_app(serve, hostile) -> None:
    port, _ = serve()
    client = Client(port)
    resp = client.login("alice", PASSWORD, next_path=hostile)
    assert resp.status == 302 and resp.location == "/", resp.location
    kept = Client(port).login("alice", PASSWORD, next_path="/?tab=3")
    assert kept.status == 302 and kept.location == "/?tab=3"


def test_login_form_needs_its_csrf_token(serve) -> None:
    port, provider = serve()
    victim, attacker = Client(port), Client(port)
    attacker_token = attacker.csrf()
    victim_token = victim.csrf()
    form = {"username": "alice", "password": PASSWORD}
    for sent in ({}, {"csrf_token": ""}, {"csrf_token": "x" * 43},
                 {"csrf_token": attacker_token}):  # a token of another browser
        resp = victim.request("POST", "/login", {**form, **sent})
        assert resp.status == 403, sent
        assert resp.cookie("user") is None and resp.cookie("pmkit_session") is None
        assert "expired" in resp.body and 'name="csrf_token"' in resp.body
    # a cross-site POST carries no cookie at all
    resp = Client(port).request("POST", "/login", {**form, "csrf_token": victim_token})
    assert resp.status == 403
    assert len(provider.sessions) == 0
    ok = victim.request("POST", "/login", {**form, "csrf_token": victim_token})
    assert ok.status == 302 and ok.location == "/" and ok.cookie("pmkit_session")
    assert len(provider.sessions) == 1
    first = dict(victim.jar)
    again = victim.request("POST", "/login", {**form, "csrf_token": victim_token})
    assert again.cookie("pmkit_session") != ok.cookie("pmkit_session")  # a new id each login
    assert len(provider.sessions) == 1  # and the browser's previous session ended
    assert Client(port).request("GET", "/", cookies=first).status == 302
    # refused forms did not count as failed logins
    assert provider.login_throttle.retry_after("login 'alice'") == 0


def _flags(raw: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in raw.split(";")[1:]}


def test_cookies_are_httponly_lax_and_secure_behind_a_proxy(serve) -> None:
    port, _ = serve()
    plain = Client(port, headers={"X-Forwarded-Proto": "https"})  # ignored without the flag
    resp = plain.login("alice", PASSWORD)
    for name in ("user", "pmkit_session"):
        raw = resp.cookie(name)
        assert {"httponly", "samesite"} <= _flags(raw) and "secure" not in _flags(raw)
        assert "SameSite=Lax" in raw
    csrf = [c for c in plain.request("GET", "/logout").set_cookies if c.startswith("pmkit_csrf")]
    assert csrf  # cleared at logout

    port, _ = serve(behind_proxy=True)
    proxied = Client(port, headers={"X-Forwarded-Proto": "https"})
    token_page = proxied.request("GET", "/login")
    assert "secure" in _flags(next(c for c in token_page.set_cookies
                                   if c.startswith("pmkit_csrf")))
    resp = proxied.login("alice", PASSWORD)
    for name in ("user", "pmkit_session"):
        assert {"httponly", "samesite", "secure"} <= _flags(resp.cookie(name))
    # a proxy saying the client came over plain HTTP gets cookies the browser will send back
    resp = Client(port, headers={"X-Forwarded-Proto": "http"}).login("alice", PASSWORD)
    assert "secure" not in _flags(resp.cookie("pmkit_session"))


def test_failed_logins_lock_the_login_out_with_429_and_an_audit_record(serve, demo) -> None:
    port, _ = serve(
        login_throttle=LoginThrottle(free_failures=3, base_delay=60, max_delay=600),
        on_lockout=functools.partial(audit_lockout, demo),
    )
    client = Client(port)
    before = len(demo.store.audit(target="login 'alice'"))
    for _ in range(4):  # three free failures, the fourth starts a 60 s lockout
        resp = client.login("alice", OTHER)
        assert resp.status == 302 and "error=invalid" in resp.location
    resp = client.login("alice", PASSWORD)  # even the right password waits
    assert resp.status == 429
    assert 0 < int(resp.headers["Retry-After"]) <= 60
    assert "Too many failed logins" in resp.body and resp.cookie("pmkit_session") is None
    records = demo.store.audit(target="login 'alice'")[before:]
    assert [(r.action, r.actor) for r in records] == [("auth.lockout", "system")]
    assert records[0].after == {"key": "login 'alice'", "seconds": 60.0, "address": "127.0.0.1"}
    # another login from the same address is not locked out
    ok = client.login("boss", OTHER)
    assert ok.status == 302 and ok.location == "/"


@pytest.mark.parametrize("behind_proxy", [False, True])
def test_failed_logins_lock_the_address_out(serve, behind_proxy) -> None:
    port, _ = serve(
        behind_proxy=behind_proxy,
        login_throttle=LoginThrottle(free_failures=100),
        address_throttle=LoginThrottle(free_failures=4, base_delay=60),
    )
    guesser = Client(port, headers={"X-Forwarded-For": "203.0.113.7"})
    for i in range(5):  # five different logins: the address is what is counted
        assert guesser.login(f"user{i}", OTHER).status == 302
    resp = guesser.login("alice", PASSWORD)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    # forging X-Forwarded-For escapes the lockout only where a proxy is trusted to set it
    other = Client(port, headers={"X-Forwarded-For": "198.51.100.9"})
    resp = other.login("alice", PASSWORD)
    assert resp.status == (302 if behind_proxy else 429)


def test_a_flood_of_logins_is_refused_beyond_the_bounded_pool(serve) -> None:
    pool = BoundedPool(workers=1, max_waiting=1)
    port, _ = serve(hash_pool=pool,
                           address_throttle=LoginThrottle(free_failures=1000),
                           login_throttle=LoginThrottle(free_failures=1000))
    n = 16
    clients = [Client(port) for _ in range(n)]
    tokens = [c.csrf() for c in clients]
    start = threading.Barrier(n + 1)
    statuses: list[int] = []
    retry: list[str | None] = []
    peak = [0]
    done = threading.Event()

    def attempt(client: Client, token: str, i: int) -> None:
        start.wait()
        form = {"username": f"nobody{i}", "password": OTHER, "csrf_token": token}
        resp = client.request("POST", "/login", form)
        statuses.append(resp.status)
        retry.append(resp.headers.get("Retry-After"))

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], pool.in_flight)
            time.sleep(0.001)

    threads = [threading.Thread(target=attempt, args=(c, t, i))
               for i, (c, t) in enumerate(zip(clients, tokens, strict=True))]
    watcher = threading.Thread(target=watch)
    for t in (*threads, watcher):
        t.start()
    start.wait()
    for t in threads:
        t.join(60)
    done.set()
    watcher.join(5)
    assert len(statuses) == n
    assert set(statuses) <= {302, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(302) >= 2
    assert all(r == "1" for s, r in zip(statuses, retry, strict=True) if s == 503)
    assert peak[0] <= 2  # never more scrypt jobs than workers + waiting
    # the server still answers, and a real login goes through once the flood is over
    assert Client(port).login("alice", PASSWORD).location == "/"


def _ws_handshake(port: int, cookies: dict[str, str]) -> int:
    """Status of a websocket upgrade of the app's /ws with ``cookies``."""
    request = (
        "GET /ws HTTP/1.1\r\n"
        f"Host: localhost:{port}\r\nOrigin: http://localhost:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: bokeh, token\r\n"
        f"Cookie: {'; '.join(f'{k}={v}' for k, v in cookies.items())}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        return int(sock.recv(1024).split(b" ", 2)[1])


def test_logout_ends_the_session_for_pages_and_websockets(serve) -> None:
    port, _ = serve()
    client = Client(port)
    client.login("alice", PASSWORD)
    copied = dict(client.jar)
    assert client.request("GET", "/").status == 200
    assert _ws_handshake(port, copied) == 101  # signed in: the upgrade is accepted
    client.request("GET", "/logout")
    replay = Client(port).request("GET", "/", cookies=copied)
    assert replay.status == 302 and "login" in replay.location
    assert _ws_handshake(port, copied) == 403


def test_deactivating_or_repasswording_a_login_ends_its_sessions(serve, users_path) -> None:
    port, provider = serve()
    alice, boss = Client(port), Client(port)
    alice.login("alice", PASSWORD)
    boss.login("boss", OTHER)
    a_cookies, b_cookies = dict(alice.jar), dict(boss.jar)
    assert Client(port).request("GET", "/", cookies=a_cookies).status == 200

    UsersFile.load(users_path).deactivate("alice")  # `pmkit users deactivate`
    assert Client(port).request("GET", "/", cookies=a_cookies).status == 302
    assert Client(port).login("alice", PASSWORD).location.endswith("error=invalid")
    UsersFile.load(users_path).activate("alice")
    assert Client(port).request("GET", "/", cookies=a_cookies).status == 302  # not revived
    assert Client(port).request("GET", "/", cookies=b_cookies).status == 200  # others stay
    assert provider.sessions.logins() == {"boss"}

    UsersFile.load(users_path).set_password("boss", PASSWORD)  # `pmkit users passwd`
    assert Client(port).request("GET", "/", cookies=b_cookies).status == 302
    assert len(provider.sessions) == 0


def test_deactivating_the_pmkit_user_ends_its_sessions(serve, demo) -> None:
    port, _ = serve()
    client = Client(port)
    client.login("boss", OTHER)
    copied = dict(client.jar)
    assert Client(port).request("GET", "/", cookies=copied).status == 200
    rec = demo.store.get("user", "bob")
    with demo.store.transaction("system", "user.deactivate", "bob") as tx:
        tx.put("user", "bob", "inactive", rec.data)
    try:
        assert Client(port).request("GET", "/", cookies=copied).status == 302
    finally:
        with demo.store.transaction("system", "user.activate", "bob") as tx:
            tx.put("user", "bob", "active", rec.data)
    assert Client(port).request("GET", "/", cookies=copied).status == 302  # not revived
    assert Client(port).login("boss", OTHER).location == "/"


# -- escaping of user text ------------------------------------------------------------------------
XSS_PAYLOADS = [
    "<script>window.__xss=1</script>",
    '<img src=x onerror="window.__xss=1">',
    '"><svg onload=alert(1)>',
    "[click](javascript:alert(1))",
    "![x](x)`code`*em*",
    "' onmouseover='alert(1)",
]


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_escaped_text_renders_literally_in_html_and_markdown(payload) -> None:
    import html
    import re

    from markdown_it import MarkdownIt

    from pmkit_widgets.base import escape_text

    safe = escape_text(payload)
    assert not set("<>\"'`[]*") & set(safe)
    # what a Markdown pane (or Alert) makes of it: one paragraph of plain text
    rendered = MarkdownIt("commonmark", {"html": True}).render(f"Name: {safe}")
    assert re.fullmatch(r"<p>[^<>]*</p>\n", rendered), rendered
    assert html.unescape(rendered[3:-5]) == f"Name: {payload}"
    assert html.unescape(safe) == payload  # and in an HTML pane, the text itself
