"""Logins of the served app: scrypt hashes, users file, ``pmkit users``, Panel's login pages."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from pmkit import cli
from pmkit.auth import (
    LoginInfo,
    UsersFile,
    check_users,
    hash_password,
    is_active_user,
    verify_password,
)
from pmkit.errors import (
    AlreadyExistsError,
    ConfigError,
    InvalidIdError,
    NotFoundError,
    ValidationError,
)

PASSWORD = "correct horse battery"
OTHER = "staple-tuna-42"


@pytest.fixture
def users_path(tmp_path: Path) -> Path:
    users = UsersFile.load(tmp_path / "users.json", missing_ok=True)
    users.add("alice", PASSWORD, display_name="Alice A.")
    users.add("boss", OTHER, user="bob")
    return users.path


@pytest.fixture(scope="module")
def demo():
    from pmkit.demo import open_demo

    return open_demo()


# -- hashes -------------------------------------------------------------------------------
def test_hash_round_trip_and_wrong_password() -> None:
    encoded = hash_password(PASSWORD)
    assert verify_password(PASSWORD, encoded)
    assert not verify_password(PASSWORD + "!", encoded)
    assert not verify_password("", encoded)
    assert PASSWORD not in encoded


def test_hash_is_scrypt_of_the_stored_salt() -> None:
    """The encoding is what it says: scrypt(password, salt, n, r, p) in base64."""
    encoded = hash_password(PASSWORD)
    name, n, r, p, salt, digest = encoded.split("$")
    assert name == "scrypt"
    salt_raw = base64.b64decode(salt)
    assert len(salt_raw) == 16
    expected = hashlib.scrypt(
        PASSWORD.encode(),
        salt=salt_raw,
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=len(base64.b64decode(digest)),
        maxmem=2**26,
    )
    assert base64.b64decode(digest) == expected


def test_same_password_hashes_differently() -> None:
    a, b = hash_password(PASSWORD), hash_password(PASSWORD)
    assert a != b
    assert a.split("$")[4] != b.split("$")[4]  # different salts
    assert verify_password(PASSWORD, a) and verify_password(PASSWORD, b)


def _tampered(encoded: str, index: int, value: str) -> str:
    parts = encoded.split("$")
    parts[index] = value
    return "$".join(parts)


@pytest.mark.parametrize(
    "make",
    [
        lambda h: "",
        lambda h: PASSWORD,  # a plain password where a hash belongs
        lambda h: h.replace("scrypt$", "bcrypt$", 1),
        lambda h: h.rsplit("$", 1)[0],  # truncated
        lambda h: _tampered(h, 1, "1000"),  # n not a power of two
        lambda h: _tampered(h, 1, str(2**30)),  # n too costly
        lambda h: _tampered(h, 2, "0"),
        lambda h: _tampered(h, 4, "!!not base64!!"),
        lambda h: _tampered(h, 5, base64.b64encode(b"short").decode()),
        lambda h: None,
    ],
)
def test_garbled_encodings_verify_false(make) -> None:
    assert not verify_password(PASSWORD, make(hash_password(PASSWORD)))


# -- the users file ----------------------------------------------------------------------------
def test_users_file_round_trip(users_path: Path) -> None:
    users = UsersFile.load(users_path)
    assert users.logins() == ["alice", "boss"]
    assert users.user_of("alice") == "alice"
    assert users.user_of("boss") == "bob"
    assert users.info("alice") == LoginInfo("alice", "alice", "Alice A.")
    assert users.verify("alice", PASSWORD) == "alice"
    assert users.verify("boss", OTHER) == "bob"
    assert users.verify("alice", OTHER) is None
    assert users.verify("nobody", PASSWORD) is None
    with pytest.raises(NotFoundError, match="login 'nobody'"):
        users.user_of("nobody")


def test_file_never_holds_plain_passwords_and_is_private(users_path: Path) -> None:
    raw = users_path.read_bytes()
    assert PASSWORD.encode() not in raw
    assert OTHER.encode() not in raw
    assert stat.S_IMODE(os.stat(users_path).st_mode) == 0o600
    # the hash stored for alice verifies against her password
    import json

    stored = json.loads(raw)["logins"]["alice"]["password"]
    assert verify_password(PASSWORD, stored)


def test_file_mode_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        users = UsersFile.load(tmp_path / "u.json", missing_ok=True)
        users.add("alice", PASSWORD)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(users.path).st_mode) == 0o600
    # no temporary left behind; the lock file (never replaced) is private too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.json", "u.json.lock"]
    assert stat.S_IMODE(os.stat(tmp_path / "u.json.lock").st_mode) == 0o600


def test_set_password_and_remove(users_path: Path) -> None:
    users = UsersFile.load(users_path)
    users.set_password("alice", OTHER)
    again = UsersFile.load(users_path)
    assert again.verify("alice", OTHER) == "alice"
    assert again.verify("alice", PASSWORD) is None
    again.remove("boss")
    assert UsersFile.load(users_path).logins() == ["alice"]


@pytest.mark.parametrize(
    ("action", "error", "field"),
    [
        (lambda u: u.add("Alice B", PASSWORD), InvalidIdError, "login"),
        (lambda u: u.add("carol", PASSWORD, user="Not A User"), InvalidIdError, "user"),
        (lambda u: u.add("carol", "short"), ValidationError, "password"),
        (lambda u: u.add("carol", "x" * 5000), ValidationError, "password"),
        (
            lambda u: u.add("carol", PASSWORD, display_name="two\nlines"),
            ValidationError,
            "display_name",
        ),
        (lambda u: u.set_password("alice", "1234567"), ValidationError, "password"),
    ],
)
def test_validation_errors_leave_the_file_unchanged(users_path, action, error, field) -> None:
    before = users_path.read_bytes()
    users = UsersFile.load(users_path)
    with pytest.raises(error) as info:
        action(users)
    assert info.value.field == field
    assert users_path.read_bytes() == before
    assert UsersFile.load(users_path).logins() == users.logins() == ["alice", "boss"]


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda u: u.add("alice", OTHER), AlreadyExistsError),
        (lambda u: u.remove("nobody"), NotFoundError),
        (lambda u: u.set_password("nobody", OTHER), NotFoundError),
    ],
)
def test_lookup_errors_leave_the_file_unchanged(users_path, action, error) -> None:
    before = users_path.read_bytes()
    users = UsersFile.load(users_path)
    with pytest.raises(error):
        action(users)
    assert users_path.read_bytes() == before
    assert users.verify("alice", PASSWORD) == "alice"  # the in-memory copy is intact too


def test_password_errors_do_not_echo_the_password(tmp_path: Path) -> None:
    users = UsersFile.load(tmp_path / "u.json", missing_ok=True)
    with pytest.raises(ValidationError) as info:
        users.add("carol", "hunter2")
    assert "hunter2" not in str(info.value)
    assert "7 characters" in str(info.value)
    assert not users.path.exists()


@pytest.mark.parametrize(
    ("text", "error", "field"),
    [
        ("not json", ConfigError, "users_file"),
        ('{"version": 2, "logins": {}}', ConfigError, "version"),
        ('{"version": 1, "logins": []}', ConfigError, "logins"),
        ('{"version": 1, "logins": {"Alice": {}}}', InvalidIdError, "login"),
        (
            '{"version": 1, "logins": {"alice": {"user": "alice", "password": "hunter2hunter2"}}}',
            ConfigError,
            "logins.alice.password",
        ),
    ],
)
def test_load_refuses_malformed_files(tmp_path, text, error, field) -> None:
    path = tmp_path / "u.json"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(error) as info:
        UsersFile.load(path)
    assert info.value.field == field
    assert "hunter2" not in str(info.value)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="users file"):
        UsersFile.load(tmp_path / "nope.json")
    empty = UsersFile.load(tmp_path / "nope.json", missing_ok=True)
    assert empty.logins() == []
    assert not empty.path.exists()


def test_check_users_against_the_store(users_path, demo) -> None:
    users = UsersFile.load(users_path)
    users.add("ghost", PASSWORD, user="nobody")
    assert is_active_user(demo, "alice")
    assert not is_active_user(demo, "nobody")
    problems = check_users(users, demo)
    assert set(problems) == {"ghost"}
    assert "'nobody' does not exist" in problems["ghost"]
    assert check_users(users, lambda u: u == "alice") == {
        "boss": "pmkit user 'bob' is not allowed",
        "ghost": "pmkit user 'nobody' is not allowed",
    }


# -- pmkit users ----------------------------------------------------------------------------
def _cli(monkeypatch, argv, stdin: str | None = None) -> int:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main(argv)


def test_cli_users_add_list_passwd_remove(tmp_path, monkeypatch, capsys) -> None:
    path = tmp_path / "team" / "users.json"
    path.parent.mkdir()
    f = str(path)
    assert _cli(monkeypatch, ["users", "add", f, "alice", "--password-stdin"], PASSWORD + "\n") == 0
    assert (
        _cli(
            monkeypatch,
            [
                "users",
                "add",
                f,
                "boss",
                "--user",
                "bob",
                "--display-name",
                "Bob B",
                "--password-stdin",
            ],
            OTHER + "\n",
        )
        == 0
    )
    users = UsersFile.load(path)
    assert users.verify("alice", PASSWORD) == "alice"
    assert users.verify("boss", OTHER) == "bob"
    assert users.info("boss").display_name == "Bob B"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    capsys.readouterr()

    assert _cli(monkeypatch, ["users", "list", f]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["login", "user", "state", "display", "name"]
    assert lines[1].split() == ["alice", "alice", "active"]
    assert lines[2].split() == ["boss", "bob", "active", "Bob", "B"]
    assert "scrypt" not in out and PASSWORD not in out

    assert _cli(monkeypatch, ["users", "passwd", f, "alice", "--password-stdin"], OTHER) == 0
    assert UsersFile.load(path).verify("alice", OTHER) == "alice"
    assert UsersFile.load(path).verify("alice", PASSWORD) is None

    assert _cli(monkeypatch, ["users", "remove", f, "boss"]) == 0
    assert UsersFile.load(path).logins() == ["alice"]


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["users", "add", "{f}", "alice", "--password-stdin"], OTHER + "\n", "already exists"),
        (["users", "add", "{f}", "carol", "--password-stdin"], "short\n", "at least 8"),
        (["users", "add", "{f}", "Carol", "--password-stdin"], OTHER + "\n", "login='Carol'"),
        (["users", "remove", "{f}", "carol"], None, "login 'carol' does not exist"),
        (["users", "passwd", "{f}", "carol", "--password-stdin"], OTHER, "does not exist"),
        (["users", "passwd", "{f}", "alice", "--password-stdin"], "short", "at least 8"),
    ],
)
def test_cli_users_errors_exit_2_and_change_nothing(
    users_path, monkeypatch, capsys, argv, stdin, message
) -> None:
    before = users_path.read_bytes()
    argv = [a.format(f=users_path) for a in argv]
    assert _cli(monkeypatch, argv, stdin) == 2
    err = capsys.readouterr().err
    assert message in err
    if stdin:
        assert stdin.strip() not in err  # the typed password is never echoed
    assert users_path.read_bytes() == before


def test_cli_users_prompts_twice_and_refuses_a_mismatch(users_path, monkeypatch, capsys) -> None:
    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    before = users_path.read_bytes()
    assert cli.main(["users", "add", str(users_path), "carol"]) == 2
    assert "differ" in capsys.readouterr().err
    assert users_path.read_bytes() == before

    answers = iter([PASSWORD, PASSWORD])
    assert cli.main(["users", "add", str(users_path), "carol"]) == 0
    assert UsersFile.load(users_path).verify("carol", PASSWORD) == "carol"


def test_cli_users_deactivate_and_activate(users_path, capsys) -> None:
    assert cli.main(["users", "deactivate", str(users_path), "boss"]) == 0
    users = UsersFile.load(users_path)
    assert not users.is_active("boss") and users.is_active("alice")
    assert users.info("boss").active is False
    assert users.verify("boss", OTHER) is None  # right password, deactivated login
    assert users.verify("alice", PASSWORD) == "alice"
    capsys.readouterr()
    assert cli.main(["users", "list", str(users_path)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["boss"][:3] == ["boss", "bob", "inactive"]
    assert rows["alice"][:3] == ["alice", "alice", "active"]

    assert cli.main(["users", "activate", str(users_path), "boss"]) == 0
    assert UsersFile.load(users_path).verify("boss", OTHER) == "bob"
    assert cli.main(["users", "deactivate", str(users_path), "nobody"]) == 2
    assert "login 'nobody' does not exist" in capsys.readouterr().err


def test_cli_users_deactivate_with_store_and_admin_rights(users_path, tmp_path, capsys) -> None:
    from pmkit.registry import Registry
    from pmkit.store import open_store

    store = tmp_path / "ops.sqlite"
    reg = Registry(open_store(store))
    reg.add_user("alice")
    reg.add_user("bob")
    reg.store.close()
    url = f"sqlite:///{store}"
    # boss acts as pmkit user bob: both the login and the user are deactivated, audited
    assert cli.main(["users", "deactivate", str(users_path), "boss", "--store", url]) == 0
    reg = Registry(open_store(store))
    assert reg.user_info("bob")["status"] == "inactive"
    assert not UsersFile.load(users_path).is_active("boss")
    (rec,) = [a for a in reg.store.audit(target="bob") if a.action == "user.deactivate"]
    assert rec.actor == "system" and rec.after["status"] == "inactive"
    assert cli.main(["users", "activate", str(users_path), "boss", "--store", url]) == 0
    assert Registry(open_store(store)).user_info("bob")["status"] == "active"

    # admin rights: granted, used as --as, revoked; a non-admin is refused, nothing changes
    assert cli.main(["users", "admin", "alice", "--grant", "--store", url]) == 0
    assert cli.main(["users", "admin", "bob", "--grant", "--store", url, "--as", "alice"]) == 0
    assert cli.main(["users", "admin", "alice", "--revoke", "--store", url, "--as", "bob"]) == 0
    capsys.readouterr()
    before = open_store(store).dump()
    assert cli.main(["users", "admin", "bob", "--revoke", "--store", url, "--as", "alice"]) == 2
    assert "may not user.set_admin" in capsys.readouterr().err
    assert open_store(store).dump() == before
    reg = Registry(open_store(store))
    assert (reg.user_info("alice")["admin"], reg.user_info("bob")["admin"]) == (False, True)
    # a mistyped store is never created by a users command
    missing = tmp_path / "typo.sqlite"
    assert cli.main(["users", "admin", "bob", "--revoke", "--store", str(missing)]) == 2
    assert not missing.exists() and "--create" in capsys.readouterr().err
    # the store refuses first, so the login is left as it was
    assert cli.main(["users", "deactivate", str(users_path), "boss", "--store", url,
                     "--as", "alice"]) == 2
    assert UsersFile.load(users_path).is_active("boss")


def test_load_refuses_a_file_others_can_read(users_path, capsys) -> None:
    for mode in (0o644, 0o640, 0o604, 0o620):
        users_path.chmod(mode)
        with pytest.raises(ConfigError) as info:
            UsersFile.load(users_path)
        assert info.value.field == "users_file"
        assert str(users_path) in str(info.value) and f"mode {mode:04o}" in str(info.value)
        assert "chmod 600" in str(info.value)
    # `pmkit users` warns, and its next change restores 0600
    users_path.chmod(0o644)
    assert cli.main(["users", "list", str(users_path)]) == 0
    assert "mode 0644" in capsys.readouterr().err
    assert cli.main(["users", "deactivate", str(users_path), "boss"]) == 0
    assert stat.S_IMODE(os.stat(users_path).st_mode) == 0o600
    assert UsersFile.load(users_path).logins() == ["alice", "boss"]


_ADDER = """
import sys
from pmkit.auth import UsersFile
path, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(first, first + count):
    # each edit starts from a copy loaded before the others wrote
    UsersFile.load(path, missing_ok=True).add(f"user{i:03d}", "correct horse battery")
"""


def test_concurrent_writers_lose_no_login(tmp_path: Path) -> None:
    """Several processes adding logins at once: every login survives (the lock + re-read)."""
    import subprocess
    import sys

    path = tmp_path / "users.json"
    procs, per = 4, 5
    started = [
        subprocess.Popen([sys.executable, "-c", _ADDER, str(path), str(k * per), str(per)])
        for k in range(procs)
    ]
    for proc in started:
        assert proc.wait(timeout=120) == 0
    expected = sorted(f"user{i:03d}" for i in range(procs * per))
    assert UsersFile.load(path).logins() == expected


def test_a_stale_copy_does_not_overwrite_newer_changes(users_path: Path) -> None:
    stale = UsersFile.load(users_path)
    UsersFile.load(users_path).add("carol", PASSWORD)  # another process, meanwhile
    stale.deactivate("alice")
    fresh = UsersFile.load(users_path)
    assert fresh.logins() == ["alice", "boss", "carol"]
    assert not fresh.is_active("alice")
    assert stale.logins() == ["alice", "boss", "carol"]  # the stale copy caught up
    with pytest.raises(AlreadyExistsError):
        UsersFile.load(users_path).add("carol", OTHER)


def test_cli_users_list_missing_file(tmp_path, capsys) -> None:
    assert cli.main(["users", "list", str(tmp_path / "nope.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- the Panel provider --------------------------------------------------------------------------
def _provider(users_path, demo):
    pytest.importorskip("panel")
    from pmkit_widgets.auth import PmkitAuthProvider

    users = UsersFile.load(users_path)
    users.add("ghost", PASSWORD, user="nobody")  # maps to a pmkit user the store lacks
    return PmkitAuthProvider(users, is_allowed=functools.partial(is_active_user, demo))


def test_provider_checks_hashes_and_the_store(users_path, demo) -> None:
    provider = _provider(users_path, demo)
    assert provider.check("alice", PASSWORD) == ("alice", "")
    assert provider.check("boss", OTHER) == ("bob", "")
    assert provider.check("alice", OTHER)[0] is None
    assert provider.check("nobody", PASSWORD)[0] is None
    user, message = provider.check("ghost", PASSWORD)
    assert user is None and "unknown or inactive" in message
    # what the login handler runs, with hashing on a worker thread
    assert asyncio.run(provider.check_async("alice", PASSWORD)) == ("alice", "")
    assert asyncio.run(provider.check_async("alice", OTHER))[0] is None


def test_provider_refuses_a_deactivated_user(users_path, demo) -> None:
    provider = _provider(users_path, demo)
    assert provider.user_of("boss") == "bob"
    rec = demo.store.get("user", "bob")
    with demo.store.transaction("system", "user.deactivate", "bob") as tx:
        tx.put("user", "bob", "inactive", rec.data)
    try:
        assert provider.check("boss", OTHER)[0] is None
        assert provider.user_of("boss") is None
    finally:
        with demo.store.transaction("system", "user.activate", "bob") as tx:
            tx.put("user", "bob", "active", rec.data)
    assert provider.check("boss", OTHER) == ("bob", "")


def test_provider_sees_file_changes_and_fails_closed(users_path, demo) -> None:
    provider = _provider(users_path, demo)
    UsersFile.load(users_path).set_password("alice", OTHER)  # e.g. `pmkit users passwd`
    assert provider.check("alice", PASSWORD)[0] is None
    assert provider.check("alice", OTHER) == ("alice", "")
    users_path.chmod(0o644)  # readable by others: refused at runtime too (fails closed)
    assert provider.check("alice", OTHER)[0] is None
    assert provider.user_of("alice") is None
    users_path.chmod(0o600)
    assert provider.check("alice", OTHER) == ("alice", "")
    users_path.write_text("{ broken")
    assert provider.check("alice", OTHER)[0] is None
    assert provider.user_of("alice") is None


def test_serve_auth_kwargs(users_path) -> None:
    pytest.importorskip("panel")
    from pmkit_widgets.auth import PmkitAuthProvider, serve_auth_kwargs

    kw = serve_auth_kwargs(users_path, "s" * 32)
    assert set(kw) == {"auth_provider", "cookie_secret"}
    assert isinstance(kw["auth_provider"], PmkitAuthProvider)
    assert kw["cookie_secret"] == "s" * 32
    a, b = serve_auth_kwargs(users_path), serve_auth_kwargs(users_path)
    assert len(a["cookie_secret"]) >= 32 and a["cookie_secret"] != b["cookie_secret"]
    with pytest.raises(ValidationError, match="cookie_secret"):
        serve_auth_kwargs(users_path, "short")


# -- a real Panel server: login, cookie, app, logout ----------------------------------------
@pytest.fixture
def served(users_path, demo, serve_panel):
    """A Panel server on a free loopback port with pmkit logins; yields (port, seen logins)."""
    pn = pytest.importorskip("panel")
    from pmkit_widgets.auth import serve_auth_kwargs, session_login

    users = UsersFile.load(users_path)
    users.add("ghost", PASSWORD, user="nobody")
    seen: list[tuple[str | None, str]] = []
    kwargs = serve_auth_kwargs(
        users_path, "k" * 32, is_allowed=functools.partial(is_active_user, demo)
    )
    provider = kwargs["auth_provider"]

    def app():
        login = session_login(provider)
        seen.append((login, demo.as_user(provider.user_of(login)).user))  # what app.py does
        return pn.pane.Markdown(f"hello {login}")

    return serve_panel(app, **kwargs), seen


def test_login_page_cookie_and_logout_over_http(served, users_path) -> None:
    from web_client import Client

    port, seen = served
    client = Client(port)
    resp = client.request("GET", "/")
    assert resp.status == 302 and "login" in resp.location

    resp = client.request("GET", "/login")
    assert resp.status == 200
    for snippet in ('class="login-form"', 'name="username"', 'name="password"', 'type="submit"',
                    'name="csrf_token"'):
        assert snippet in resp.body

    for username, password in (
        ("alice", OTHER),  # wrong password
        ("nobody", PASSWORD),  # unknown login
        ("ghost", PASSWORD),  # right password, unknown pmkit user
    ):
        resp = client.login(username, password)
        assert resp.status == 302 and "error=" in resp.location, username
        assert resp.cookie("user") is None and resp.cookie("pmkit_session") is None

    resp = client.login("alice", PASSWORD)
    assert resp.status == 302 and resp.location == "/"
    for name in ("user", "pmkit_session"):
        cookie = resp.cookie(name)
        assert cookie is not None and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "Secure" not in cookie  # plain HTTP, no proxy
        assert PASSWORD not in cookie
    copied = dict(client.jar)

    assert client.request("GET", "/").status == 200
    assert seen == [("alice", "alice")]  # session_login() -> user_of -> as_user

    # a forged signature is not a login
    value = copied["pmkit_session"]
    tail = "000" if not value.endswith("000") else "111"
    forged = {**copied, "pmkit_session": value[:-3] + tail}
    assert client.request("GET", "/", cookies=forged).status == 302

    resp = client.request("GET", "/logout")
    assert resp.status == 200
    assert any(c.startswith('user="";') for c in resp.set_cookies)
    # the copied cookies no longer open the app: the session ended on the server
    assert client.request("GET", "/", cookies=copied).status == 302
    assert seen == [("alice", "alice")]

    # removing the login locks out even a fresh, still-valid session
    assert client.login("alice", PASSWORD).status == 302
    copied = dict(client.jar)
    assert client.request("GET", "/", cookies=copied).status == 200
    UsersFile.load(users_path).remove("alice")
    assert client.request("GET", "/", cookies=copied).status == 302
