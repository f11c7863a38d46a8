"""The ``pmkit`` command line: ``serve`` (the operations app), ``feed`` (market data), ``users``."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import ipaddress
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pmkit.auth import UsersFile
    from pmkit.registry import Registry
    from pmkit.stream.server import FeedServer

__all__ = ["COOKIE_SECRET_ENV", "DEFAULT_STORE", "is_loopback", "main"]

#: Embedded store used by ``make run`` when no ``--store`` is given.
DEFAULT_STORE = "sqlite:///pmkit-demo.sqlite"

#: Environment variable holding the cookie secret of ``pmkit serve --users``.
COOKIE_SECRET_ENV = "PMKIT_COOKIE_SECRET"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pmkit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the Panel operations app")
    serve.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help="store URL (seeded with the demo when new) [%(default)s]",
    )
    serve.add_argument(
        "--create",
        action="store_true",
        help="create the store if it does not exist (implied for the default store)",
    )
    serve.add_argument("--port", type=int, default=5006, help="[%(default)s]")
    serve.add_argument("--address", default="127.0.0.1", help="[%(default)s]")
    serve.add_argument("--show", action="store_true", help="open a browser tab")
    serve.add_argument(
        "--feed-port",
        type=int,
        default=8765,
        help="port of the local market-data feed the app streams from; 0 = any free [%(default)s]",
    )
    serve.add_argument("--no-feed", action="store_true", help="run without the feed and stream")
    serve.add_argument(
        "--users",
        metavar="FILE",
        default=None,
        help="users file of logins (see 'pmkit users'); needed on a non-loopback --address",
    )
    serve.add_argument(
        "--cookie-secret",
        default=None,
        help=f"secret signing login cookies [${COOKIE_SECRET_ENV}, else random per process]",
    )
    serve.add_argument(
        "--user",
        default="system",
        help="pmkit user of the session when no --users is given [%(default)s]",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="another name browsers reach the app by, e.g. a proxy's (repeatable)",
    )
    serve.add_argument(
        "--behind-proxy",
        action="store_true",
        help="served through a TLS-terminating reverse proxy: login cookies are Secure and "
        "the login throttle takes the client address from X-Forwarded-For",
    )
    feed = sub.add_parser("feed", help="serve real-price market data over a local WebSocket")
    feed.add_argument("--host", default="127.0.0.1", help="[%(default)s]")
    feed.add_argument("--port", type=int, default=8765, help="[%(default)s]")
    feed.add_argument("--mode", choices=("replay", "gbm"), default="replay", help="[%(default)s]")
    feed.add_argument(
        "--rate",
        type=float,
        default=1000.0,
        help="ticks per second per connection; 0 = as fast as possible [%(default)s]",
    )
    feed.add_argument("--batch", type=int, default=1, help="ticks per frame [%(default)s]")
    feed.add_argument("--seed", type=int, default=0, help="[%(default)s]")
    feed.add_argument("--start", default=None, help="replay start date [2022-01-03]")
    feed.add_argument(
        "--steps-per-day", type=int, default=390, help="intraday ticks per day [%(default)s]"
    )
    feed.add_argument(
        "--sigma", type=float, default=0.2, help="GBM annual volatility [%(default)s]"
    )
    feed.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host other than loopback (the feed has no authentication)",
    )
    feed.add_argument(
        "--max-connections", type=int, default=64, help="open connections in all [%(default)s]"
    )
    feed.add_argument(
        "--max-connections-per-address",
        type=int,
        default=16,
        help="open connections per client address [%(default)s]",
    )
    feed.add_argument(
        "--send-timeout",
        type=float,
        default=5.0,
        help="seconds a full send queue is tolerated before the client is dropped [%(default)s]",
    )
    _users_parser(sub)
    return p


def _users_parser(sub: argparse._SubParsersAction) -> None:
    users = sub.add_parser("users", help="manage the logins of the served app (a users file)")
    cmds = users.add_subparsers(dest="users_command", required=True)
    add = cmds.add_parser("add", help="add a login (password prompted twice, or from stdin)")
    add.add_argument("file", metavar="FILE", help="users file (created if missing, mode 0600)")
    add.add_argument("login", metavar="LOGIN")
    add.add_argument("--user", default=None, help="pmkit user the login acts as [LOGIN]")
    add.add_argument("--display-name", default="", help="name shown in the app")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (one line)"
    )
    remove = cmds.add_parser("remove", help="remove a login")
    remove.add_argument("file", metavar="FILE")
    remove.add_argument("login", metavar="LOGIN")
    lst = cmds.add_parser(
        "list", help="list logins, their pmkit users and state (never the hashes)"
    )
    lst.add_argument("file", metavar="FILE")
    for name, text in (
        ("deactivate", "stop a login from logging in (a running app ends its sessions)"),
        ("activate", "let a deactivated login log in again"),
    ):
        toggle = cmds.add_parser(name, help=text)
        toggle.add_argument("file", metavar="FILE")
        toggle.add_argument("login", metavar="LOGIN")
        _store_arguments(toggle, f"also {name} the login's pmkit user in this store")
    admin = cmds.add_parser("admin", help="grant or revoke a pmkit user's administrator rights")
    admin.add_argument("user", metavar="USER", help="pmkit user id")
    which = admin.add_mutually_exclusive_group(required=True)
    which.add_argument("--grant", action="store_true", help="make USER an administrator")
    which.add_argument("--revoke", action="store_true", help="take administrator rights away")
    _store_arguments(admin, "the store holding the pmkit users", required=True)
    passwd = cmds.add_parser("passwd", help="change the password of a login")
    passwd.add_argument("file", metavar="FILE")
    passwd.add_argument("login", metavar="LOGIN")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (one line)"
    )


def _store_arguments(parser: argparse.ArgumentParser, text: str, required: bool = False) -> None:
    parser.add_argument("--store", required=required, metavar="URL", help=f"{text}")
    parser.add_argument(
        "--as",
        dest="acting_user",
        default="system",
        metavar="ADMIN",
        help="administrator the change is audited as [%(default)s]",
    )


def _admin_registry(args: argparse.Namespace) -> Registry:
    """A registry on ``--store`` (never created here), acting as ``--as``."""
    from pmkit.registry import Registry

    return Registry.open(args.store, user=args.acting_user, create=False)


def _read_password(from_stdin: bool) -> str:
    """The new password: one line of stdin, or typed twice at a hidden prompt."""
    from pmkit.errors import ValidationError

    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise ValidationError("password", "<hidden>", "the two passwords typed differ")
    return first


def _load_users(path: str, *, missing_ok: bool = False) -> UsersFile:
    """The users file for ``pmkit users``, warning when others may read it.

    Unlike ``pmkit serve`` (which refuses such a file), ``pmkit users``
    accepts it: every change rewrites the file with mode 0600.
    """
    from pmkit.auth import UsersFile, file_mode

    users = UsersFile.load(path, missing_ok=missing_ok, require_private=False)
    if not users.is_private():
        print(
            f"pmkit users: warning: {users.path} is readable by group or others "
            f"(mode {file_mode(users.path):04o}); 'pmkit serve' refuses it until it is "
            "0600 (any change made here rewrites it so)",
            file=sys.stderr,
        )
    return users


def _run_users(args: argparse.Namespace) -> int:
    from pmkit.errors import AlreadyExistsError, PmkitError
    from pmkit.registry.ids import validate_user

    try:
        if args.users_command == "add":
            users = _load_users(args.file, missing_ok=True)
            validate_user(args.login, "login")  # refuse before asking for a password
            if args.login in users:
                raise AlreadyExistsError("login", args.login)
            info = users.add(
                args.login,
                _read_password(args.password_stdin),
                user=args.user,
                display_name=args.display_name,
            )
            print(f"added login {info.login!r} as pmkit user {info.user!r} to {users.path}")
        elif args.users_command == "remove":
            users = _load_users(args.file)
            users.remove(args.login)
            print(f"removed login {args.login!r} from {users.path}")
        elif args.users_command == "passwd":
            users = _load_users(args.file)
            users.user_of(args.login)  # refuse an unknown login before asking for a password
            users.set_password(args.login, _read_password(args.password_stdin))
            print(f"changed the password of login {args.login!r} in {users.path}")
        elif args.users_command in ("activate", "deactivate"):
            users = _load_users(args.file)
            user = users.user_of(args.login)
            # The store first: a refusal there (not an admin, the built-in
            # system user) leaves the login as it was.
            if args.store is not None:
                reg = _admin_registry(args)
                changed = getattr(reg, f"{args.users_command}_user")(user)
                reg.close()
                state = f"{args.users_command}d" if changed else "was already " + (
                    "active" if args.users_command == "activate" else "inactive"
                )
                print(f"pmkit user {user!r} {state} in {args.store}")
            getattr(users, args.users_command)(args.login)
            print(f"{args.users_command}d login {args.login!r} in {users.path}")
        elif args.users_command == "admin":
            reg = _admin_registry(args)
            changed = reg.set_admin(args.user, bool(args.grant))
            reg.close()
            verb = ("granted" if args.grant else "revoked") if changed else "unchanged"
            print(f"administrator rights of pmkit user {args.user!r}: {verb} in {args.store}")
        else:  # list
            users = _load_users(args.file)
            rows = [users.info(login) for login in users.logins()]
            width = max([len("login"), *(len(r.login) for r in rows)])
            uwidth = max([len("user"), *(len(r.user) for r in rows)])
            swidth = len("inactive")
            print(f"{'login':<{width}}  {'user':<{uwidth}}  {'state':<{swidth}}  display name")
            for r in rows:
                state = "active" if r.active else "inactive"
                cells = f"{r.login:<{width}}  {r.user:<{uwidth}}  {state:<{swidth}}"
                print(f"{cells}  {r.display_name}")
    except (PmkitError, OSError) as exc:
        print(f"pmkit users {args.users_command}: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print(f"pmkit users {args.users_command}: cancelled", file=sys.stderr)
        return 1
    return 0


def is_loopback(address: str) -> bool:
    """Whether serving on ``address`` is reachable from this machine only.

    ``localhost`` and loopback IPs (``127.0.0.0/8``, ``::1``) are; every other
    address, including ``0.0.0.0``, ``::`` and host names, is treated as public.
    """
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _run_serve(args: argparse.Namespace) -> int:
    from pmkit.errors import PmkitError
    from pmkit.registry.ids import validate_user

    def refuse(msg: str) -> int:
        print(f"pmkit serve: {msg}", file=sys.stderr)
        return 2

    if args.users is None and not is_loopback(args.address):
        return refuse(
            f"refusing to publish on --address {args.address} without logins: the app would "
            "let anyone on the network act as one pmkit user. Create a users file with "
            "'pmkit users add FILE LOGIN' and pass --users FILE (or serve on 127.0.0.1)."
        )
    cookie_secret = args.cookie_secret or os.environ.get(COOKIE_SECRET_ENV) or None
    try:
        validate_user(args.user, "--user")
        from pmkit.store import open_store

        # A mistyped --store must not silently become a new, demo-seeded store.
        store = open_store(args.store, create=args.create or args.store == DEFAULT_STORE)
        if args.users is not None:
            from pmkit.auth import UsersFile

            users = UsersFile.load(args.users)  # fail here, not in the first login
            if not len(users):
                return refuse(
                    f"users file {args.users} has no logins; add one with 'pmkit users add'"
                )
            if cookie_secret is not None and len(cookie_secret) < 16:
                return refuse("the cookie secret must have at least 16 characters")
    except PmkitError as exc:
        return refuse(str(exc))
    try:
        from pmkit_widgets.app import serve
    except ImportError as exc:  # the UI extra is optional
        return refuse(f"needs the UI extra: pip install 'pmkit[ui]' ({exc})")
    from pmkit.jit_cache import enable_compile_cache

    enable_compile_cache()  # compiled risk programs outlive restarts; PMKIT_JAX_CACHE=off: not
    serve(
        store=store,
        port=args.port,
        address=args.address,
        show=args.show,
        feed_port=None if args.no_feed else args.feed_port,
        users_file=args.users,
        cookie_secret=cookie_secret,
        user=args.user,
        allow_origin=args.allow_origin,
        behind_proxy=args.behind_proxy,
    )
    return 0


def _feed_server(args: argparse.Namespace) -> FeedServer:
    """The `FeedServer` that ``pmkit feed`` runs, from parsed arguments."""
    from pmkit.stream.server import FeedServer

    return FeedServer(
        host=args.host,
        port=args.port,
        mode=args.mode,
        rate=args.rate or None,
        batch=args.batch,
        seed=args.seed,
        start=args.start,
        steps_per_day=args.steps_per_day,
        sigma=args.sigma,
        max_connections=args.max_connections,
        max_connections_per_address=args.max_connections_per_address,
        send_timeout=args.send_timeout,
    )


def _run_feed(args: argparse.Namespace) -> int:
    import asyncio

    from pmkit.errors import ValidationError
    from pmkit.stream.server import is_loopback

    if not is_loopback(args.host) and not args.allow_remote:
        print(
            f"pmkit feed: refusing --host {args.host!r}: it is not a loopback address, and the"
            " feed has no authentication or encryption, so anyone who can reach the port"
            " could read it and use up its connections; pass --allow-remote to serve other"
            " machines anyway (behind a firewall or proxy you trust)",
            file=sys.stderr,
        )
        return 2
    try:
        # The server imports websockets only once listening: check the extra up front.
        import websockets  # noqa: F401

        server = _feed_server(args)
    except ImportError as exc:  # websockets, or skfolio's prices (MissingDependencyError)
        print(f"pmkit feed: needs the stream extra: pip install 'pmkit[stream]' ({exc})",
              file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"pmkit feed: {exc}", file=sys.stderr)
        return 2
    print(
        f"pmkit feed: {server.mode} of {len(server.symbols)} symbols on {server.url}"
        " (Ctrl-C stops)",
        file=sys.stderr,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve_forever())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pmkit`` command."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _run_serve(args)
    if args.command == "users":
        return _run_users(args)
    if args.command == "feed":
        return _run_feed(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
