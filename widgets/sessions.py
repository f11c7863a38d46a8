"""Server-side login sessions of the served app.

The browser holds only a random session id (in a signed cookie); what it
stands for lives here, so ending a session on the server (logout, a login
removed, deactivated or given a new password) makes a copied cookie
worthless at once instead of when its signature expires.

Sessions live in the server's memory: a restart ends them all.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pmkit.errors import ValidationError

__all__ = ["Session", "SessionStore"]


@dataclass(frozen=True)
class Session:
    """One signed-in browser.

    Attributes
    ----------
    login : str
        The login it signed in as.
    fingerprint : str
        The login's user, hash and state when it signed in
        (`pmkit.auth.UsersFile.fingerprint`); a change ends the session.
    expires : float
        Clock time (seconds) after which the session is over.
    """

    login: str
    fingerprint: str
    expires: float


class SessionStore:
    """Session ids mapped to logins, with expiry and a size bound.

    Parameters
    ----------
    lifetime : float
        Seconds a session lasts from sign-in.
    max_sessions : int
        Sessions kept at most; the oldest are ended first when full.
    clock : callable
        Time in seconds (injectable for tests).
    """

    def __init__(
        self,
        lifetime: float,
        *,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lifetime > 0:
            raise ValidationError("lifetime", lifetime, "must be > 0 seconds")
        if max_sessions < 1:
            raise ValidationError("max_sessions", max_sessions, "must be >= 1")
        self.lifetime = float(lifetime)
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, login: str, fingerprint: str) -> str:
        """Start a session for ``login``; its new random id (256 bits, URL-safe)."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = self._clock()
            self._sessions[sid] = Session(login, fingerprint, now + self.lifetime)
            if len(self._sessions) > self.max_sessions:
                self._purge(now)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return sid

    def _purge(self, now: float) -> None:
        for sid in [s for s, sess in self._sessions.items() if sess.expires <= now]:
            del self._sessions[sid]

    def get(self, sid: str) -> Session | None:
        """The live session ``sid`` (None when unknown, ended or expired)."""
        with self._lock:
            sess = self._sessions.get(sid)
            if sess is not None and sess.expires <= self._clock():
                del self._sessions[sid]
                return None
            return sess

    def end(self, sid: str) -> Session | None:
        """End session ``sid`` (logout); the session it was, if any."""
        with self._lock:
            return self._sessions.pop(sid, None)

    def end_login(self, login: str) -> int:
        """End every session of ``login``; how many there were."""
        return self.end_where(lambda s: s.login == login)

    def end_where(self, predicate: Callable[[Session], bool]) -> int:
        """End every session for which ``predicate(session)`` holds; how many."""
        with self._lock:
            doomed = [sid for sid, s in self._sessions.items() if predicate(s)]
            for sid in doomed:
                del self._sessions[sid]
            return len(doomed)

    def logins(self) -> set[str]:
        """Logins with at least one live session."""
        with self._lock:
            now = self._clock()
            return {s.login for s in self._sessions.values() if s.expires > now}

    def __len__(self) -> int:
        return len(self._sessions)
