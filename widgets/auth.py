"""Logins for the served app: Panel's basic-auth pages over a hashed `pmkit.auth.UsersFile`.

Panel's own ``basic_auth`` compares plain-text passwords. This module keeps
Panel's login and logout pages, cookies and redirects, but checks the login
form against the scrypt hashes of a users file, and refuses logins whose
pmkit user the registry does not know or has deactivated.

The session cookie (``user``) holds the *login*, signed by tornado with the
server's cookie secret (HMAC-SHA256) and marked ``HttpOnly``. In a session,
`session_login` gives that login; `pmkit.auth.UsersFile.user_of` maps it to
the pmkit user whose roles decide what the session may do.

Typical wiring (what ``pmkit serve --users FILE`` does)::

    users = UsersFile.load(path)
    pn.serve(apps, **serve_auth_kwargs(users, secret,
                                       is_allowed=partial(is_active_user, registry)))
    # in each session:
    registry.as_user(users.user_of(session_login()))
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import tornado.escape
from panel.auth import BasicAuthProvider, BasicLoginHandler, _validate_next_url
from panel.config import config
from panel.io.state import state
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler, decode_signed_value
from tornado.websocket import WebSocketHandler

from pmkit.auth import UsersFile

__all__ = [
    "COOKIE_SECRET_ENV",
    "LOGIN_FORM",
    "PmkitAuthProvider",
    "serve_auth_kwargs",
    "session_login",
]

log = logging.getLogger(__name__)

#: Environment variable read by ``pmkit serve`` for a cookie secret that survives restarts.
COOKIE_SECRET_ENV = "PMKIT_COOKIE_SECRET"

#: CSS selectors of Panel's login page (for browser tests and automation).
LOGIN_FORM = {
    "form": "form.login-form",
    "username": "form.login-form input[name='username']",
    "password": "form.login-form input[name='password']",
    "submit": "form.login-form button[type='submit']",
    "error": "#error-message p.errormessage",
}

_BAD_CREDENTIALS = "Invalid username or password!"
_NOT_ALLOWED = "This login's pmkit user is unknown or inactive; ask an administrator."


class _UsersSource:
    """The users file as it is now on disk, re-read only when it changes.

    ``pmkit users add/remove/passwd`` take effect in a running server without
    a restart. A file that stops being valid refuses every login (fails
    closed) until it is fixed.
    """

    def __init__(self, users: UsersFile | str | os.PathLike[str]) -> None:
        self._users = users if isinstance(users, UsersFile) else UsersFile.load(users)
        self.path: Path = self._users.path
        self._stamp = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def current(self) -> UsersFile | None:
        with self._lock:
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._users = UsersFile.load(self.path)
                except Exception as exc:  # any bad file: refuse everyone, say why in the log
                    log.error(
                        "pmkit users file %s unusable, refusing all logins: %s", self.path, exc
                    )
                    self._users = None
            return self._users


class PmkitAuthProvider(BasicAuthProvider):
    """Panel's basic login/logout pages, checked against a hashed users file.

    Parameters
    ----------
    users : UsersFile or path
        The logins; the file is re-read when it changes on disk.
    is_allowed : callable, optional
        ``is_allowed(pmkit_user) -> bool``; a login whose pmkit user fails it
        is refused at login and on every later request (e.g.
        ``functools.partial(pmkit.auth.is_active_user, registry)``). Default:
        every user in the file is allowed.
    login_endpoint, logout_endpoint : str, optional
        URL paths of the login and logout pages (default ``/login``, ``/logout``).
    login_template, logout_template : str, optional
        Paths of Jinja2 templates replacing Panel's pages.
    """

    def __init__(
        self,
        users: UsersFile | str | os.PathLike[str],
        *,
        is_allowed: Callable[[str], bool] | None = None,
        login_endpoint: str | None = None,
        logout_endpoint: str | None = None,
        login_template: str | None = None,
        logout_template: str | None = None,
    ) -> None:
        self._source = _UsersSource(users)
        self._is_allowed = is_allowed
        self._handler: type[PmkitLoginHandler] | None = None
        super().__init__(
            login_endpoint=login_endpoint,
            logout_endpoint=logout_endpoint,
            login_template=login_template,
            logout_template=logout_template,
        )

    @property
    def users(self) -> UsersFile | None:
        """The users file as it is on disk now (None while it is unusable)."""
        return self._source.current()

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
        """The pmkit user of ``login`` if the login exists and is allowed now, else None."""
        users = self.users
        if users is None or login not in users:
            return None
        user = users.user_of(login)
        return user if self.allowed(user) else None

    def check(self, login: str, password: str) -> tuple[str | None, str]:
        """Check a login form synchronously: ``(pmkit user or None, error message)``.

        The login handler runs the same check with the scrypt work on a
        worker thread, so a login attempt never blocks other sessions.
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
        """`check` with the password hashing off the event loop."""
        users = self.users
        if users is None:
            return None, _BAD_CREDENTIALS
        # hashlib.scrypt releases the GIL: hashing on a worker thread keeps the
        # server responsive while someone logs in.
        user = await IOLoop.current().run_in_executor(None, users.verify, login, password)
        return self._decide(user)

    @property
    def get_user(self) -> Callable[[RequestHandler], str | None]:
        """Tornado's current-user hook: the login in the signed cookie, if still allowed."""

        def get_user(handler: RequestHandler) -> str | None:
            raw = handler.get_secure_cookie("user", max_age_days=config.oauth_expiry)
            if not raw:
                return None
            login = raw.decode("utf-8")
            # Re-checked on every request: removing a login or deactivating its
            # pmkit user locks it out without waiting for the cookie to expire.
            if self.user_of(login) is None:
                return None
            if isinstance(handler, WebSocketHandler):
                state._active_users[login] += 1
            return login

        return get_user

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


class PmkitLoginHandler(BasicLoginHandler):
    """Panel's login page; the form is checked against the users file's hashes."""

    provider: ClassVar[PmkitAuthProvider]

    def _validate(self, username: str, password: str) -> bool:
        return self.provider.check(username, password)[0] is not None

    async def post(self) -> None:
        """Check the form; on success set the signed cookie and go to the app."""
        login = self.get_argument("username", "")
        password = self.get_argument("password", "")
        user, error = await self.provider.check_async(login, password)
        if user is None:
            log.warning(
                "pmkit login refused for %r from %s: %s", login[:64], self.request.remote_ip, error
            )
            # Back to the bare login page: Panel appends to request.uri, which
            # piles up ?error=... on repeated failures.
            self.redirect(f".{self._login_endpoint}?error={tornado.escape.url_escape(error)}")
            return
        log.info("pmkit login %r as pmkit user %r", login, user)
        self.set_current_user(login)
        self.redirect(_validate_next_url(self.get_cookie("next_url", state.base_url)) or "/")


def session_login() -> str | None:
    """The login of the current served session (None outside one, or without logins).

    Reads the signed ``user`` cookie the session was opened with. Unlike
    ``pn.state.user`` it ignores Panel's unsigned ``is_guest`` cookie, which a
    client could set to pose as a login named ``guest``.
    """
    secret = config.cookie_secret
    cookies: dict[str, Any] = state.cookies or {}
    raw = cookies.get("user")
    if not raw or not secret:
        return None
    decoded = decode_signed_value(secret, "user", raw, max_age_days=config.oauth_expiry)
    return None if decoded is None else decoded.decode("utf-8")


def serve_auth_kwargs(
    users: UsersFile | str | os.PathLike[str],
    cookie_secret: str | None = None,
    *,
    is_allowed: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `panel.serve` that turn logins on.

    Parameters
    ----------
    users : UsersFile or path
        The logins (re-read when the file changes).
    cookie_secret : str, optional
        Secret signing the login cookie. Default: a random secret for this
        process (everyone must log in again after a restart); give a fixed
        one (e.g. from ``$PMKIT_COOKIE_SECRET``) to keep logins across restarts.
    is_allowed : callable, optional
        ``is_allowed(pmkit_user) -> bool``, see `PmkitAuthProvider`.

    Returns
    -------
    dict
        ``{"auth_provider": PmkitAuthProvider, "cookie_secret": str}``.
    """
    if cookie_secret is not None and len(cookie_secret) < 16:
        from pmkit.errors import ValidationError

        described = f"<{len(cookie_secret)} characters>"
        raise ValidationError("cookie_secret", described, "must have at least 16 characters")
    return {
        "auth_provider": PmkitAuthProvider(users, is_allowed=is_allowed),
        "cookie_secret": cookie_secret or secrets.token_urlsafe(32),
    }
