"""Logins for the served app: Panel's basic-auth pages over a hashed `pmkit.auth.UsersFile`.

Panel's own ``basic_auth`` compares plain-text passwords. This module keeps
Panel's login and logout pages, but checks the login form against the
scrypt hashes of a users file and hardens the flow for a team deployment:

* **Server-side sessions.** A login sets two signed cookies: ``user`` (the
  login, what Panel shows as ``pn.state.user``) and ``pmkit_session`` (a
  random session id, `pmkit_widgets.sessions.SessionStore`). A request is
  signed in only while that session lives on the server: logging out,
  removing or deactivating the login (in the users file or the registry) or
  changing its password ends it, so a copied cookie stops working at once.
* **Throttling.** Failed logins back off exponentially per login and per
  client address (`pmkit_widgets.throttle.LoginThrottle`); a locked-out
  attempt gets HTTP 429 with ``Retry-After`` and each lockout is logged and
  passed to ``on_lockout`` (the app audits it in the store). Password
  hashing runs on a small bounded pool; attempts beyond it get HTTP 503.
* **CSRF.** The login form carries a random token that must match a signed
  cookie; a POST without it is refused (403).
* **Cookies** are ``HttpOnly``, ``SameSite=Lax``, and ``Secure`` over TLS or
  behind a TLS-terminating proxy (``behind_proxy``).
* **Redirects** after login go only to a path of this app (`safe_next_url`).

Typical wiring (what ``pmkit serve --users FILE`` does)::

    pn.serve(apps, **serve_auth_kwargs(path, secret,
                                       is_allowed=partial(is_active_user, registry)))
    # in each session:
    registry.as_user(provider.user_of(session_login(provider)))
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import math
import os
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import jinja2
from panel.auth import BasicAuthProvider, BasicLoginHandler, LogoutHandler
from panel.config import config
from panel.io.resources import CDN_DIST
from panel.io.state import state
from tornado.web import RequestHandler, decode_signed_value
from tornado.websocket import WebSocketHandler

from pmkit.auth import UsersFile
from pmkit.errors import NotFoundError, ThrottledError
from pmkit_widgets.brand import FAVICON, FONTS, LOGO_SVG, NAME
from pmkit_widgets.sessions import SessionStore
from pmkit_widgets.throttle import BoundedPool, LoginThrottle

#: pmkit's login and logout pages (autoescaped: they show what a client sent back).
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,
)
_TEMPLATES.globals.update(favicon=FAVICON, fonts=FONTS, logo_svg=LOGO_SVG, name=NAME)

__all__ = [
    "COOKIE_SECRET_ENV",
    "CSRF_FIELD",
    "LOGIN_FORM",
    "SESSION_COOKIE",
    "PmkitAuthProvider",
    "audit_lockout",
    "safe_next_url",
    "serve_auth_kwargs",
    "session_login",
]

log = logging.getLogger(__name__)

#: Environment variable read by ``pmkit serve`` for a cookie secret that survives restarts.
COOKIE_SECRET_ENV = "PMKIT_COOKIE_SECRET"

#: Signed cookie holding the server-side session id.
SESSION_COOKIE = "pmkit_session"
#: Signed cookie and form field of the login form's CSRF token.
CSRF_COOKIE = "pmkit_csrf"
CSRF_FIELD = "csrf_token"
_USER_COOKIE = "user"

#: CSS selectors of Panel's login page (for browser tests and automation).
LOGIN_FORM = {
    "form": "form.login-form",
    "username": "form.login-form input[name='username']",
    "password": "form.login-form input[name='password']",
    "csrf": f"form.login-form input[name='{CSRF_FIELD}']",
    "submit": "form.login-form button[type='submit']",
    "error": "#error-message p.errormessage",
}

_BAD_CREDENTIALS = "Invalid username or password!"
_NOT_ALLOWED = "This login's pmkit user is unknown or inactive; ask an administrator."
_BAD_FORM = "The login form expired or was not sent by this page; please try again."
# The login page shows only these texts: ``?error=`` carries a code, never
# free text, so a crafted link cannot put words on the page.
_ERRORS = {"invalid": _BAD_CREDENTIALS, "refused": _NOT_ALLOWED, "form": _BAD_FORM}

# Longest login name looked at (keys of the throttle); logins are short ids.
_MAX_LOGIN_CHARS = 128
_MAX_NEXT_CHARS = 2048


# -- redirects ----------------------------------------------------------------------------
def safe_next_url(value: object, root: str = "/") -> str:
    r"""``value`` if it is a plain path of this app, else ``root``.

    Accepted: printable ASCII starting with a single ``/`` (under ``root``),
    without scheme, host, backslash, control characters or whitespace, also
    after undoing up to four layers of percent-encoding. Everything else
    (``//host``, ``///host``, ``/\host``, ``https://...``, ``javascript:``,
    ``%2F%2Fhost``, tabs or newlines inside, non-strings, overlong values)
    gives ``root``: browsers strip tabs and newlines and read ``\`` as
    ``/``, so these would leave the app.

    Parameters
    ----------
    value : object
        The requested ``next`` location.
    root : str
        The app's root path (a prefix behind a proxy), the fallback.

    Returns
    -------
    str
        A path to redirect to after login.
    """
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_NEXT_CHARS:
        return root
    if not all("!" <= ch <= "~" for ch in value):  # what goes out in the Location header
        return root
    layer = value
    for _ in range(5):
        # Decoded layers may hold any text; only these would change where it leads.
        if any(ch <= " " or ch == "\x7f" or ch.isspace() for ch in layer) or "\\" in layer:
            return root
        if not layer.startswith("/") or layer.startswith("//"):
            return root
        decoded = urllib.parse.unquote(layer)
        if decoded == layer:
            break
        layer = decoded
    else:  # still encoded after four layers: no real link looks like that
        return root
    parts = urllib.parse.urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith(root.rstrip("/") + "/"):
        return root
    return value


# -- the users file, re-read when it changes ----------------------------------------------
class _UsersSource:
    """The users file as it is now on disk, re-read only when it changes.

    ``pmkit users add/remove/passwd/deactivate`` take effect in a running
    server without a restart. A file that stops being valid (or becomes
    readable by others) refuses every login (fails closed) until it is fixed.
    ``on_change(users)`` runs after each successful re-read.
    """

    def __init__(
        self,
        users: UsersFile | str | os.PathLike[str],
        on_change: Callable[[UsersFile | None], None] | None = None,
    ) -> None:
        self._users: UsersFile | None = (
            users if isinstance(users, UsersFile) else UsersFile.load(users)
        )
        self.path: Path = self._users.path
        self._stamp = self._stat()
        self._lock = threading.Lock()
        self._on_change = on_change

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode

    def current(self) -> UsersFile | None:
        changed = False
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp, changed = stamp, True
                try:
                    self._users = UsersFile.load(self.path)
                except Exception as exc:  # any bad file: refuse everyone, say why in the log
                    log.error(
                        "pmkit users file %s unusable, refusing all logins: %s", self.path, exc
                    )
                    self._users = None
            users = self._users
        if changed and self._on_change is not None:
            self._on_change(users)
        return users


# -- the provider ---------------------------------------------------------------------------
class PmkitAuthProvider(BasicAuthProvider):
    """Panel's basic login/logout pages, checked against a hashed users file.

    Parameters
    ----------
    users : UsersFile or path
        The logins; the file is re-read when it changes on disk.
    is_allowed : callable, optional
        ``is_allowed(pmkit_user) -> bool``; a login whose pmkit user fails it
        is refused at login and on every later request, and its sessions end
        (e.g. ``functools.partial(pmkit.auth.is_active_user, registry)``).
        Default: every user in the file is allowed.
    behind_proxy : bool, default False
        The app is reached through a TLS-terminating reverse proxy: cookies
        are ``Secure`` (unless the proxy sends ``X-Forwarded-Proto: http``)
        and the client address for throttling is the last entry of
        ``X-Forwarded-For`` (the one the proxy appended). Without it those
        headers are ignored: any client could forge them.
    login_throttle, address_throttle : LoginThrottle, optional
        Back-off per login (default: 5 free failures, then 2 s doubling to
        15 min) and per client address (default: 20 free failures).
    hash_pool : BoundedPool, optional
        Where password hashing runs (default: 2 threads, 8 waiting).
    on_lockout : callable, optional
        ``on_lockout(key, seconds, address)`` after each lockout starts
        (besides the log record), e.g. to write an audit record. Runs on a
        worker thread; its errors are logged.
    session_lifetime : float, optional
        Seconds a session lasts (default: Panel's ``oauth_expiry`` days).
    login_endpoint, logout_endpoint : str, optional
        URL paths of the login and logout pages (default ``/login``, ``/logout``).
    login_template, logout_template : str, optional
        Paths of Jinja2 templates replacing pmkit's pages (``widgets/templates``:
        pmkit's name, everything inline, nothing fetched from other hosts).
    """

    def __init__(
        self,
        users: UsersFile | str | os.PathLike[str],
        *,
        is_allowed: Callable[[str], bool] | None = None,
        behind_proxy: bool = False,
        login_throttle: LoginThrottle | None = None,
        address_throttle: LoginThrottle | None = None,
        hash_pool: BoundedPool | None = None,
        on_lockout: Callable[[str, float, str], None] | None = None,
        session_lifetime: float | None = None,
        login_endpoint: str | None = None,
        logout_endpoint: str | None = None,
        login_template: str | None = None,
        logout_template: str | None = None,
    ) -> None:
        self._source = _UsersSource(users, on_change=self._users_changed)
        self._is_allowed = is_allowed
        self.behind_proxy = behind_proxy
        # `is None`, not `or`: an empty throttle is falsy (it has a length).
        self.login_throttle = (
            LoginThrottle(free_failures=5) if login_throttle is None else login_throttle
        )
        self.address_throttle = (
            LoginThrottle(free_failures=20) if address_throttle is None else address_throttle
        )
        self.hash_pool = BoundedPool() if hash_pool is None else hash_pool
        self.on_lockout = on_lockout
        lifetime = session_lifetime or float(config.oauth_expiry) * 86400.0
        self.sessions = SessionStore(lifetime)
        self._handler: type[PmkitLoginHandler] | None = None
        self._logout: type[PmkitLogoutHandler] | None = None
        super().__init__(
            login_endpoint=login_endpoint,
            logout_endpoint=logout_endpoint,
            login_template=login_template,
            logout_template=logout_template,
        )
        if login_template is None:
            self._login_template = _TEMPLATES.get_template("login.html")
        if logout_template is None:
            self._logout_template = _TEMPLATES.get_template("logout.html")
        # Bokeh's AuthProvider asks for the handlers while it starts, caching them with
        # Panel's default pages: build them again with pmkit's.
        self._handler = self._logout = None

    # -- who may log in ---------------------------------------------------------
    @property
    def users(self) -> UsersFile | None:
        """The users file as it is on disk now (None while it is unusable)."""
        return self._source.current()

    def _users_changed(self, users: UsersFile | None) -> None:
        # A removed, deactivated or re-passworded login loses its sessions now,
        # not when someone next uses the cookie.
        ended = self.sessions.end_where(
            lambda s: users is None or users.fingerprint(s.login) != s.fingerprint
        )
        if ended:
            log.warning("pmkit users file changed: ended %d session(s)", ended)

    def allowed(self, user: str) -> bool:
        """Whether the pmkit ``user`` may log in (``is_allowed``; errors count as no)."""
        if self._is_allowed is None:
            return True
        try:
            return bool(self._is_allowed(user))
        except Exception:  # a store hiccup must not let anyone in
            log.exception("pmkit is_allowed(%r) failed; refusing", user)
            return False

    def user_of(self, login: str) -> str | None:
        """The pmkit user of ``login`` if the login exists, is active and allowed now."""
        users = self.users
        if users is None or not users.is_active(login):
            return None
        user = users.user_of(login)
        return user if self.allowed(user) else None

    def check(self, login: str, password: str) -> tuple[str | None, str]:
        """Check a login form synchronously: ``(pmkit user or None, error message)``.

        No throttling here; the login handler throttles and runs the same
        check with the hashing on the bounded pool (`check_async`).
        """
        users = self.users
        user = users.verify(login, password) if users is not None else None
        return self._decide(user)

    def _decide(self, user: str | None) -> tuple[str | None, str]:
        if user is None:
            return None, _BAD_CREDENTIALS
        if not self.allowed(user):
            return None, _NOT_ALLOWED
        return user, ""

    async def check_async(self, login: str, password: str) -> tuple[str | None, str]:
        """`check` with the password hashing on the bounded pool.

        Raises
        ------
        ThrottledError
            The pool is full (too many logins at once); nothing was hashed.
        """
        users = self.users
        if users is None:
            return None, _BAD_CREDENTIALS
        # hashlib.scrypt releases the GIL: hashing on worker threads keeps the
        # server responsive while someone logs in.
        user = await self.hash_pool.run(users.verify, login, password)
        return self._decide(user)

    # -- throttling ---------------------------------------------------------------
    def client_address(self, handler: RequestHandler) -> str:
        """The client address the throttle counts (see ``behind_proxy``)."""
        if self.behind_proxy:
            headers = handler.request.headers
            hops = [h.strip() for h in headers.get("X-Forwarded-For", "").split(",")]
            for candidate in (hops[-1], headers.get("X-Real-Ip", "").strip()):
                try:
                    return str(ipaddress.ip_address(candidate))
                except ValueError:
                    continue
        return str(handler.request.remote_ip)

    @staticmethod
    def _keys(login: str, address: str) -> tuple[str, str]:
        return f"login {login[:_MAX_LOGIN_CHARS]!r}", f"address {address}"

    def throttle_check(self, login: str, address: str) -> None:
        """Raise `ThrottledError` while the login or the address is locked out."""
        by_login, by_address = self._keys(login, address)
        self.login_throttle.check(by_login)
        self.address_throttle.check(by_address)

    def record_failure(self, login: str, address: str) -> list[tuple[str, float]]:
        """Count a failed login; the lockouts it starts, as ``(key, seconds)``."""
        by_login, by_address = self._keys(login, address)
        started = [(by_login, self.login_throttle.failure(by_login)),
                   (by_address, self.address_throttle.failure(by_address))]
        return [(key, seconds) for key, seconds in started if seconds > 0]

    def record_success(self, login: str) -> None:
        """Forget the login's failures (the address keeps its count: it may be guessing)."""
        self.login_throttle.success(self._keys(login, "")[0])

    def lockout(self, key: str, seconds: float, address: str) -> None:
        """Log a lockout and pass it to ``on_lockout`` (errors there are logged)."""
        log.warning("pmkit login lockout: %s for %.0f s (from %s)", key, seconds, address)
        if self.on_lockout is not None:
            try:
                self.on_lockout(key, seconds, address)
            except Exception:
                log.exception("pmkit on_lockout(%r) failed", key)

    # -- sessions and cookies -------------------------------------------------------
    def start_session(self, login: str) -> str:
        """A new server-side session id for ``login`` (which must be in the file)."""
        users = self.users
        fingerprint = users.fingerprint(login) if users is not None else None
        if fingerprint is None:  # removed between the check and now
            raise NotFoundError("login", login)
        return self.sessions.create(login, fingerprint)

    def login_of(self, signed: Callable[[str], bytes | None]) -> str | None:
        """The login of a request whose signed cookies ``signed(name)`` gives, if signed in.

        Signed in means: both cookies verify, the session id is live on the
        server and belongs to that login, and the login is unchanged,
        active and allowed. Otherwise the login's stale sessions end.
        """
        raw_login, raw_sid = signed(_USER_COOKIE), signed(SESSION_COOKIE)
        if not raw_login or not raw_sid:
            return None
        login, sid = raw_login.decode("utf-8", "replace"), raw_sid.decode("ascii", "replace")
        session = self.sessions.get(sid)
        if session is None or session.login != login:
            return None
        users = self.users
        if users is None or users.fingerprint(login) != session.fingerprint:
            self.sessions.end(sid)
            return None
        if self.user_of(login) is None:
            # e.g. deactivated in the registry: reactivating must not revive it.
            self.sessions.end_login(login)
            return None
        return login

    def cookie_secure(self, handler: RequestHandler) -> bool:
        """Whether cookies must be ``Secure``: TLS here, or a TLS proxy in front."""
        if handler.request.protocol == "https":
            return True
        if self.behind_proxy:
            proto = handler.request.headers.get("X-Forwarded-Proto", "")
            return proto.split(",")[-1].strip().lower() != "http"
        return False

    @property
    def get_user(self) -> Callable[[RequestHandler], str | None]:
        """Tornado's current-user hook: the login of a live server-side session."""

        def get_user(handler: RequestHandler) -> str | None:
            login = self.login_of(
                lambda name: handler.get_secure_cookie(name, max_age_days=config.oauth_expiry)
            )
            if login is not None and isinstance(handler, WebSocketHandler):
                state._active_users[login] += 1
            return login

        return get_user

    def _remove_user(self, session_context: Any) -> None:
        # The count get_user raised for this login; the server-side session may
        # already be gone (logout), so go by the signed cookie, never below zero.
        login = session_login(None, session_context.request.cookies)
        if login and state._active_users.get(login, 0) > 0:
            state._active_users[login] -= 1
            if not state._active_users[login]:
                del state._active_users[login]

    @property
    def login_handler(self) -> type[RequestHandler]:
        """The handler class serving the login page and checking the form."""
        if self._handler is None:
            # A handler class of its own: Panel's BasicAuthProvider configures
            # the shared BasicLoginHandler class, which would leak between servers.
            self._handler = type(
                "PmkitLoginHandler",
                (PmkitLoginHandler,),
                {
                    "provider": self,
                    "_login_endpoint": self._login_endpoint,
                    "_login_template": self._login_template,
                },
            )
        return self._handler

    @property
    def logout_handler(self) -> type[RequestHandler]:
        """The handler class ending the session and clearing the cookies."""
        if self._logout is None:
            self._logout = type(
                "PmkitLogoutHandler",
                (PmkitLogoutHandler,),
                {
                    "provider": self,
                    "_login_endpoint": self._login_endpoint,
                    "_logout_template": self._logout_template,
                },
            )
        return self._logout


class _CookieMixin:
    """Cookies with the flags the deployment calls for (see `PmkitAuthProvider`)."""

    provider: ClassVar[PmkitAuthProvider]

    def _cookie_flags(self) -> dict[str, Any]:
        return {
            "httponly": True,
            "samesite": "Lax",
            "secure": self.provider.cookie_secure(self),  # type: ignore[arg-type]
            "path": config.cookie_path,
        }

    def _set(self, name: str, value: str, *, signed: bool = True) -> None:
        handler: RequestHandler = self  # type: ignore[assignment]
        flags = self._cookie_flags()
        if signed:
            handler.set_secure_cookie(name, value, expires_days=config.oauth_expiry, **flags)
        else:
            handler.set_cookie(name, value, **flags)

    def _clear(self, *names: str) -> None:
        handler: RequestHandler = self  # type: ignore[assignment]
        for name in names:
            handler.clear_cookie(name, path=config.cookie_path)


class PmkitLoginHandler(_CookieMixin, BasicLoginHandler):
    """Panel's login page with a CSRF token; the form is throttled and checked against hashes."""

    def _validate(self, username: str, password: str) -> bool:
        return self.provider.check(username, password)[0] is not None

    def _root(self) -> str:
        return state.base_url or "/"

    def _csrf_token(self) -> str:
        """The CSRF token of this browser (kept while its signed cookie is valid)."""
        raw = self.get_secure_cookie(CSRF_COOKIE, max_age_days=1)
        token = raw.decode("ascii", "replace") if raw else ""
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", token):
            token = secrets.token_urlsafe(32)
            self._set(CSRF_COOKIE, token)
        return token

    def _page(self, error: str, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Frame-Options", "DENY")
        html = self._login_template.render(
            login_endpoint=self._login_endpoint, errormessage=error, PANEL_CDN=CDN_DIST
        )
        field = f'<input type="hidden" name="{CSRF_FIELD}" value="{self._csrf_token()}">'
        # Panel's template has no slot for extra fields: add ours right inside the form.
        html, n = re.subn(r'(<form class="login-form"[^>]*>)', lambda m: m.group(1) + field,
                          html, count=1)
        if n != 1:
            raise RuntimeError("the login template has no <form class=\"login-form\">")
        self.finish(html)

    def get(self) -> None:
        """The login page; remembers a safe ``next`` location for after the login."""
        next_url = safe_next_url(self.get_argument("next", ""), self._root())
        self._set("next_url", next_url, signed=False)
        self._page(_ERRORS.get(self.get_argument("error", ""), ""))

    def _csrf_ok(self) -> bool:
        raw = self.get_secure_cookie(CSRF_COOKIE, max_age_days=1)
        sent = self.get_argument(CSRF_FIELD, "")
        return bool(raw) and hmac.compare_digest(raw, sent.encode("utf-8", "replace"))

    def _refuse(self, code: str) -> None:
        # Back to the bare login page: Panel appends to request.uri, which
        # piles up ?error=... on repeated failures.
        self.redirect(f".{self._login_endpoint}?error={code}")

    async def post(self) -> None:
        """Check the form; on success start a session, set its cookies and go to the app."""
        provider = self.provider
        address = provider.client_address(self)
        if not self._csrf_ok():
            log.warning("pmkit login form without a valid CSRF token from %s", address)
            self._page(_BAD_FORM, status=403)
            return
        login = self.get_argument("username", "")[:_MAX_LOGIN_CHARS]
        password = self.get_argument("password", "")
        try:
            provider.throttle_check(login, address)
        except ThrottledError as exc:
            self.set_header("Retry-After", str(math.ceil(exc.retry_after)))
            self._page(f"Too many failed logins; try again in {exc.retry_after:.0f} s.", 429)
            return
        try:
            user, error = await provider.check_async(login, password)
        except ThrottledError as exc:  # the hashing pool is full
            log.warning("pmkit login pool full; refused an attempt from %s", address)
            self.set_header("Retry-After", str(math.ceil(exc.retry_after)))
            self._page("The server is busy with other logins; try again in a moment.", 503)
            return
        if user is None:
            log.warning("pmkit login refused for %r from %s: %s", login[:64], address, error)
            for key, seconds in provider.record_failure(login, address):
                await self._in_thread(provider.lockout, key, seconds, address)
            self._refuse("invalid" if error == _BAD_CREDENTIALS else "refused")
            return
        provider.record_success(login)
        log.info("pmkit login %r as pmkit user %r from %s", login, user, address)
        self.set_current_user(login)
        self.redirect(safe_next_url(self.get_cookie("next_url", ""), self._root()))

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    def set_current_user(self, user: str) -> None:
        """Start a server-side session for login ``user`` and set its cookies.

        A session this browser still had ends: a new login always gets a new
        id (no session fixation, no pile of forgotten sessions).
        """
        self._clear("is_guest", "id_token", "next_url")
        old = self.get_secure_cookie(SESSION_COOKIE, max_age_days=config.oauth_expiry)
        if old:
            self.provider.sessions.end(old.decode("ascii", "replace"))
        if not user:
            self._clear(_USER_COOKIE, SESSION_COOKIE)
            return
        self._set(_USER_COOKIE, user)
        self._set(SESSION_COOKIE, self.provider.start_session(user))


class PmkitLogoutHandler(_CookieMixin, LogoutHandler):
    """Panel's logout page; also ends the session on the server."""

    def get(self) -> None:
        """End the browser's session, clear its cookies, show the logout page."""
        raw = self.get_secure_cookie(SESSION_COOKIE, max_age_days=config.oauth_expiry)
        if raw:
            ended = self.provider.sessions.end(raw.decode("ascii", "replace"))
            if ended is not None:
                log.info("pmkit logout %r", ended.login)
        self._clear(SESSION_COOKIE, CSRF_COOKIE, "next_url")
        self.set_header("Cache-Control", "no-store")
        super().get()


def session_login(
    provider: PmkitAuthProvider | None = None, cookies: dict[str, Any] | None = None
) -> str | None:
    """The login of the current served session (None outside one, or without logins).

    Parameters
    ----------
    provider : PmkitAuthProvider, optional
        When given, the session must also be live on the server (not logged
        out, login unchanged and allowed). Without it only the ``user``
        cookie's signature is checked.
    cookies : dict, optional
        Raw cookies (default: ``pn.state.cookies`` of the current session).

    Unlike ``pn.state.user`` this ignores Panel's unsigned ``is_guest``
    cookie, which a client could set to pose as a login named ``guest``.
    """
    secret = config.cookie_secret
    jar: dict[str, Any] = cookies if cookies is not None else (state.cookies or {})
    if not secret:
        return None

    def signed(name: str) -> bytes | None:
        raw = jar.get(name)
        raw = getattr(raw, "value", raw)  # tornado request cookies are Morsels
        if not raw:
            return None
        return decode_signed_value(secret, name, raw, max_age_days=config.oauth_expiry)

    if provider is not None:
        return provider.login_of(signed)
    decoded = signed(_USER_COOKIE)
    return None if decoded is None else decoded.decode("utf-8")


def audit_lockout(registry: Any, key: str, seconds: float, address: str) -> None:
    """Write an ``auth.lockout`` audit record for a login lockout through ``registry``.

    The record's actor is the registry's user (the serving process's), its
    target the throttled key (``"login 'alice'"`` or ``"address 10.0.0.1"``)
    and its after-image the lockout: ``{"key", "seconds", "address"}``.
    Use as ``on_lockout=functools.partial(audit_lockout, registry)``.
    """
    with registry.mutation("auth.lockout", key) as m:
        m.record(None, {"key": key, "seconds": float(seconds), "address": address})


def serve_auth_kwargs(
    users: UsersFile | str | os.PathLike[str],
    cookie_secret: str | None = None,
    *,
    is_allowed: Callable[[str], bool] | None = None,
    behind_proxy: bool = False,
    on_lockout: Callable[[str, float, str], None] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `panel.serve` that turn logins on.

    Parameters
    ----------
    users : UsersFile or path
        The logins (re-read when the file changes).
    cookie_secret : str, optional
        Secret signing the cookies. Default: a random secret for this
        process. Sessions live in server memory, so a restart ends them
        either way.
    is_allowed : callable, optional
        ``is_allowed(pmkit_user) -> bool``, see `PmkitAuthProvider`.
    behind_proxy : bool, default False
        Served through a TLS-terminating reverse proxy, see `PmkitAuthProvider`.
    on_lockout : callable, optional
        ``on_lockout(key, seconds, address)``, see `PmkitAuthProvider`.

    Returns
    -------
    dict
        ``{"auth_provider": PmkitAuthProvider, "cookie_secret": str}``.
    """
    if cookie_secret is not None and len(cookie_secret) < 16:
        from pmkit.errors import ValidationError

        described = f"<{len(cookie_secret)} characters>"
        raise ValidationError("cookie_secret", described, "must have at least 16 characters")
    provider = PmkitAuthProvider(
        users, is_allowed=is_allowed, behind_proxy=behind_proxy, on_lockout=on_lockout
    )
    return {"auth_provider": provider, "cookie_secret": cookie_secret or secrets.token_urlsafe(32)}
