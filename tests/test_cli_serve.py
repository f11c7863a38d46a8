"""``pmkit serve``: its options reach `pmkit_widgets.app.serve`; publishing needs logins."""

from __future__ import annotations

import pytest

from pmkit import cli
from pmkit.auth import UsersFile

pytest.importorskip("panel")
import pmkit_widgets.app


@pytest.fixture
def calls(monkeypatch, tmp_path) -> list[dict]:
    """Record what `pmkit serve` would serve instead of serving it (stores under tmp_path)."""
    monkeypatch.chdir(tmp_path)
    recorded: list[dict] = []
    monkeypatch.setattr(pmkit_widgets.app, "serve", lambda **kw: recorded.append(kw))
    monkeypatch.delenv(cli.COOKIE_SECRET_ENV, raising=False)
    return recorded


@pytest.fixture
def users_file(tmp_path) -> str:
    users = UsersFile.load(tmp_path / "users.json", missing_ok=True)
    users.add("alice", "correct horse battery")
    return str(users.path)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_public_address_without_users_is_refused(calls, capsys, address) -> None:
    assert cli.main(["serve", "--address", address]) == 2
    assert calls == []
    err = capsys.readouterr().err
    assert "--users" in err and address in err


def test_loopback_serves_single_user(calls) -> None:
    argv = ["serve", "--store", "sqlite:///x.sqlite", "--create", "--port", "0", "--no-feed"]
    assert cli.main(argv) == 0
    store = calls[-1]["store"]
    assert store.info().location == "x.sqlite"
    assert calls == [
        {
            "store": store,
            "port": 0,
            "address": "127.0.0.1",
            "show": False,
            "feed_port": None,
            "users_file": None,
            "cookie_secret": None,
            "user": "system",
            "allow_origin": [],
            "behind_proxy": False,
        }
    ]
    assert cli.main(["serve", "--address", "localhost", "--user", "carol"]) == 0
    assert calls[-1]["user"] == "carol" and calls[-1]["feed_port"] == 8765
    argv = ["serve", "--allow-origin", "pm.example.com", "--allow-origin", "10.0.0.5:443"]
    assert cli.main(argv) == 0
    assert calls[-1]["allow_origin"] == ["pm.example.com", "10.0.0.5:443"]


def test_mistyped_store_is_not_created(calls, capsys, tmp_path) -> None:
    assert cli.main(["serve", "--store", "sqlite:///opps.sqlite", "--no-feed"]) == 2
    assert calls == [] and not (tmp_path / "opps.sqlite").exists()
    err = capsys.readouterr().err
    assert "opps.sqlite" in err and "--create" in err
    (tmp_path / "foreign.db").write_bytes(b"not a database at all")
    assert cli.main(["serve", "--store", "foreign.db", "--create", "--no-feed"]) == 2
    assert (tmp_path / "foreign.db").read_bytes() == b"not a database at all"
    assert "not an SQLite database" in capsys.readouterr().err
    # The default demo store is created without asking.
    assert cli.main(["serve", "--no-feed"]) == 0
    assert (tmp_path / "pmkit-demo.sqlite").exists()


def test_public_address_with_users(calls, users_file, monkeypatch) -> None:
    monkeypatch.setenv(cli.COOKIE_SECRET_ENV, "e" * 32)
    argv = ["serve", "--address", "0.0.0.0", "--port", "8080", "--users", users_file]
    assert cli.main(argv) == 0
    assert calls[-1]["users_file"] == users_file
    assert calls[-1]["address"] == "0.0.0.0" and calls[-1]["port"] == 8080
    assert calls[-1]["cookie_secret"] == "e" * 32
    assert cli.main([*argv, "--cookie-secret", "c" * 32]) == 0
    assert calls[-1]["cookie_secret"] == "c" * 32
    assert calls[-1]["behind_proxy"] is False
    assert cli.main([*argv, "--behind-proxy"]) == 0
    assert calls[-1]["behind_proxy"] is True


def test_a_users_file_others_can_read_is_refused(calls, capsys, users_file) -> None:
    import os

    os.chmod(users_file, 0o640)
    assert cli.main(["serve", "--users", users_file]) == 2
    assert calls == []
    err = capsys.readouterr().err
    assert users_file in err and "mode 0640" in err and "chmod 600" in err
    os.chmod(users_file, 0o600)
    assert cli.main(["serve", "--users", users_file]) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--users", "{missing}"], "does not exist"),
        (["--users", "{users}", "--cookie-secret", "tiny"], "at least 16"),
        (["--user", "Not Valid"], "--user="),
        (["--users", "{empty}"], "no logins"),
    ],
)
def test_bad_serve_options_exit_2(calls, capsys, tmp_path, users_file, extra, message) -> None:
    empty = UsersFile(tmp_path / "empty.json")
    empty.save()
    extra = [
        a.format(missing=tmp_path / "nope.json", users=users_file, empty=empty.path) for a in extra
    ]
    assert cli.main(["serve", *extra]) == 2
    assert calls == []
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("", False),
        ("myhost", False),
    ],
)
def test_is_loopback(address, loopback) -> None:
    assert cli.is_loopback(address) is loopback
