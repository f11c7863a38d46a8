"""IPython extension: ``%load_ext pmkit`` registers the ``%pm`` line magic.

Commands (each returns the same rich object the Python API returns)::

    %pm demo [URL] [--user U]   open the real-data demo registry (in memory by default)
    %pm open URL [--user U]     open a store as the registry for the magics
    %pm ls [--tag T ...] [--segment KEY=VALUE ...] [--status S]
                                portfolios as a table (Registry.summary)
    %pm use ID                  make ID the active portfolio (Registry.set_active_portfolio)
    %pm show [ID]               a portfolio or group entry (default: the active portfolio)
    %pm groups                  the group tree with values and target vs actual weights
    %pm whoami                  the acting user and the store

From Python, ``pmkit.magics.use(registry)`` makes an existing registry the
one the magics act on.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from pmkit.errors import PmkitError

__all__ = ["current", "load_ipython_extension", "run", "use"]

_state: dict[str, Any] = {"registry": None}


def use(registry: Any) -> Any:
    """Make ``registry`` (a `pmkit.registry.Registry`) the one ``%pm`` acts on."""
    _state["registry"] = registry
    return registry


def current() -> Any:
    """The registry ``%pm`` acts on; raises a `UsageError` when none is open."""
    from IPython.core.error import UsageError

    if _state["registry"] is None:
        raise UsageError("no registry: run %pm demo, %pm open URL, or pmkit.magics.use(registry)")
    return _state["registry"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        from IPython.core.error import UsageError

        raise UsageError(f"%pm: {message}\n{self.format_usage()}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="%pm", add_help=False)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo")
    demo.add_argument("url", nargs="?", default=":memory:")
    demo.add_argument("--user", default="system")
    op = sub.add_parser("open")
    op.add_argument("url")
    op.add_argument("--user", default="system")
    ls = sub.add_parser("ls")
    ls.add_argument("--tag", action="append", default=[])
    ls.add_argument("--segment", action="append", default=[])
    ls.add_argument("--status")
    sub.add_parser("use").add_argument("id")
    sub.add_parser("show").add_argument("id", nargs="?")
    sub.add_parser("groups")
    sub.add_parser("whoami")
    return p


def run(line: str) -> Any:
    """Run one ``%pm`` command line and return its result."""
    from IPython.core.error import UsageError

    args = _parser().parse_args(shlex.split(line))
    try:
        return _dispatch(args)
    except PmkitError as exc:  # a clean message, not a traceback, for expected errors
        raise UsageError(f"{type(exc).__name__}: {exc}") from exc


def _dispatch(args: argparse.Namespace) -> Any:
    if args.cmd == "demo":
        from pmkit.demo import open_demo

        return use(open_demo(args.url, user=args.user))
    if args.cmd == "open":
        from pmkit.registry import Registry

        market = None
        try:
            from pmkit.datasets import load_market

            market = load_market()
        except ImportError:
            pass  # valuation columns stay NaN without the data extra
        return use(Registry.open(args.url, user=args.user, market=market))
    reg = current()
    if args.cmd == "ls":
        segment = dict(s.split("=", 1) for s in args.segment)
        ids = [
            p.id for p in reg.portfolios(tags=args.tag, segment=segment or None, status=args.status)
        ]
        return reg.summary().loc[ids]
    if args.cmd == "use":
        reg.set_active_portfolio(args.id)
        return reg.portfolio(args.id)
    if args.cmd == "show":
        if args.id is not None and reg.store.get("group", args.id) is not None:
            return reg.group(args.id)
        return reg.portfolio(args.id)
    if args.cmd == "groups":
        return reg.group_tree()
    info = reg.store.info()
    return f"{reg.user} on {info.backend}:{info.location} (schema v{info.schema_version})"


def _magics_class() -> type:
    from IPython.core.magic import Magics, line_magic, magics_class

    @magics_class
    class PmMagics(Magics):
        """The ``%pm`` line magic."""

        @line_magic
        def pm(self, line: str) -> Any:
            """Manage pmkit portfolios: ``%pm ls``, ``%pm use ID``, ``%pm show ID``, ..."""
            return run(line)

    return PmMagics


def __getattr__(name: str) -> Any:
    if name == "PmMagics":  # built lazily so that importing pmkit never imports IPython
        return _magics_class()
    raise AttributeError(name)


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%pm`` (called by ``%load_ext pmkit``)."""
    ipython.register_magics(_magics_class())
