"""A plain HTTP client for the served app's login pages: a cookie jar, the CSRF token, forms.

Deliberately not a browser: it replays cookies exactly as told, which is
what an attacker holding a copied cookie does.
"""

from __future__ import annotations

import http.client
import http.cookies
import re
import urllib.parse
from dataclasses import dataclass, field

CSRF_INPUT = re.compile(r'<input type="hidden" name="csrf_token" value="([^"]*)">')


@dataclass
class Response:
    status: int
    location: str | None
    set_cookies: list[str]
    body: str
    headers: dict[str, str] = field(default_factory=dict)

    def cookie(self, name: str) -> str | None:
        """The raw ``Set-Cookie`` header setting ``name`` to a non-empty value."""
        for raw in self.set_cookies:
            if raw.startswith(f"{name}=") and not raw.startswith(f'{name}="";'):
                return raw
        return None


class Client:
    """One HTTP 'browser' against ``127.0.0.1:port`` with its own cookie jar."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.jar: dict[str, str] = {}
        self.headers = dict(headers or {})

    def request(
        self,
        method: str,
        path: str,
        form: dict[str, str] | None = None,
        *,
        headers: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        sent = {**self.headers, **(headers or {})}
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        jar = self.jar if cookies is None else cookies
        if jar:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        try:
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        set_cookies = resp.msg.get_all("Set-Cookie") or []
        if cookies is None:
            for raw in set_cookies:
                parsed = http.cookies.SimpleCookie()
                parsed.load(raw)
                for name, morsel in parsed.items():
                    if morsel.value in ("", '""'):
                        self.jar.pop(name, None)
                    else:
                        self.jar[name] = morsel.coded_value
        return Response(resp.status, resp.getheader("Location"), set_cookies,
                        data.decode("utf-8", "replace"), dict(resp.getheaders()))

    def csrf(self, path: str = "/login") -> str:
        """GET the login page; the CSRF token its form carries (its cookie lands in the jar)."""
        page = self.request("GET", path)
        assert page.status == 200, page.status
        found = CSRF_INPUT.search(page.body)
        assert found, "the login form carries no CSRF token"
        return found.group(1)

    def login(self, username: str, password: str, *, next_path: str | None = None) -> Response:
        """The whole form flow: GET the page (with ``next``), POST the form with its token."""
        query = "" if next_path is None else "?" + urllib.parse.urlencode({"next": next_path})
        token = self.csrf("/login" + query)
        form = {"username": username, "password": password, "csrf_token": token}
        return self.request("POST", "/login", form)
