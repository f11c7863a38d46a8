"""IPython extension: ``%load_ext pmkit`` registers the ``%pm`` line magic.

Commands (each returns the same rich object the Python API returns)::

    %pm demo [URL] [--user U]   open the real-data demo registry (in memory by default)
    %pm open URL [--user U]     open a store as the registry for the magics
    %pm as USER                 act as USER on the same store (Registry.as_user)
    %pm ls [--tag T ...] [--segment KEY=VALUE ...] [--status S]
                                portfolios as a table (Registry.summary)
    %pm use ID                  make ID the active portfolio (Registry.set_active_portfolio)
    %pm show [ID]               a portfolio or group entry (default: the active portfolio)
    %pm groups                  the group tree with values and target vs actual weights
    %pm risk [ID ...] [--confidence C] [--lookback N]
                                ES contributions, VaR, stress, drawdown (risk_overview)
    %pm optimize [ID] [--method M] [--points N] [--lookback N]
                                fit an optimizer on the portfolio's returns window, or
                                --method frontier: its efficient frontier
    %pm propose [ID] (--method M | --point K [--points N]) [--lookback N] [--note TEXT]
                                store a rebalance proposal (optimizer or frontier point)
    %pm approve PROPOSAL_ID [--note TEXT]
                                approve a proposal (ProposalBook.approve; maker-checker)
    %pm reject PROPOSAL_ID --reason TEXT
                                reject a proposal (ProposalBook.reject)
    %pm proposals [--state S] [--scope ID]
                                proposals this user may view (ProposalBook.list)
    %pm stream start [--url URL] [--feed-port P]
                                stream live prices into a LiveStream (default: from a
                                local FeedServer replaying the registry's market)
    %pm stream status           the LiveStream started by ``%pm stream start``
    %pm stream stop             stop it (and the local feed) and return it
    %pm whoami                  the acting user and the store

Optimizer methods (``--method``): min_variance (default), max_sharpe, erc,
hrp, max_diversification, min_correlation, min_cvar.

From Python, ``pmkit.magics.use(registry)`` makes an existing registry the
one the magics act on.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from pmkit.errors import PmkitError

__all__ = ["OPTIMIZERS", "current", "load_ipython_extension", "run", "use"]

#: ``--method`` name -> `pmkit.optimize` class name (default constructor arguments).
OPTIMIZERS = {
    "min_variance": "MinimumVariance",
    "max_sharpe": "MaximumSharpe",
    "erc": "EqualRiskContribution",
    "hrp": "HierarchicalRiskParity",
    "max_diversification": "MaximumDiversification",
    "min_correlation": "MinimumCorrelation",
    "min_cvar": "MeanCVaR",
}

_state: dict[str, Any] = {"registry": None, "stream": None, "feed": None}


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
    # Options left at None fall back to the service's own default, so the magics never
    # drift from the Python API's defaults.
    p = _Parser(prog="%pm", add_help=False)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo")
    demo.add_argument("url", nargs="?", default=":memory:")
    demo.add_argument("--user", default="system")
    op = sub.add_parser("open")
    op.add_argument("url")
    op.add_argument("--user", default="system")
    sub.add_parser("as").add_argument("user")
    ls = sub.add_parser("ls")
    ls.add_argument("--tag", action="append", default=[])
    ls.add_argument("--segment", action="append", default=[])
    ls.add_argument("--status")
    sub.add_parser("use").add_argument("id")
    sub.add_parser("show").add_argument("id", nargs="?")
    sub.add_parser("groups")
    risk = sub.add_parser("risk")
    risk.add_argument("ids", nargs="*", metavar="ID")
    risk.add_argument("--confidence", type=float)
    risk.add_argument("--lookback", type=int)
    opt = sub.add_parser("optimize")
    opt.add_argument("id", nargs="?")
    opt.add_argument("--method", choices=[*OPTIMIZERS, "frontier"], default="min_variance")
    opt.add_argument("--points", type=int)
    opt.add_argument("--lookback", type=int)
    prop = sub.add_parser("propose")
    prop.add_argument("id", nargs="?")
    how = prop.add_mutually_exclusive_group(required=True)
    how.add_argument("--method", choices=list(OPTIMIZERS))
    how.add_argument("--point", type=int)
    prop.add_argument("--points", type=int)
    prop.add_argument("--lookback", type=int)
    prop.add_argument("--note", default="")
    approve = sub.add_parser("approve")
    approve.add_argument("proposal")
    approve.add_argument("--note", default="")
    reject = sub.add_parser("reject")
    reject.add_argument("proposal")
    reject.add_argument("--reason", required=True)
    props = sub.add_parser("proposals")
    props.add_argument("--state")
    props.add_argument("--scope")
    stream = sub.add_parser("stream")
    actions = stream.add_subparsers(dest="action", required=True, parser_class=_Parser)
    start = actions.add_parser("start")
    start.add_argument("--url")
    start.add_argument("--feed-port", type=int, default=0)
    actions.add_parser("stop")
    actions.add_parser("status")
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


def _given(**kwargs: Any) -> dict[str, Any]:
    """The options the user gave (None: use the service's default)."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _optimizer(name: str) -> Any:
    import pmkit.optimize

    return getattr(pmkit.optimize, OPTIMIZERS[name])()


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
    if args.cmd == "as":
        return use(reg.as_user(args.user))
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
        if args.id is not None and reg.view().record("group", args.id) is not None:
            return reg.group(args.id)
        return reg.portfolio(args.id)
    if args.cmd == "groups":
        return reg.group_tree()
    if args.cmd == "risk":
        from pmkit.analytics.overview import risk_overview

        opts = _given(confidence=args.confidence, lookback=args.lookback)
        return risk_overview(reg, args.ids or None, **opts)
    if args.cmd == "optimize":
        return _optimize(reg, args)
    if args.cmd == "propose":
        return _propose(reg, args)
    if args.cmd in ("approve", "reject", "proposals"):
        from pmkit.rebalance.workflow import ProposalBook

        book = ProposalBook(reg)
        if args.cmd == "approve":
            return book.approve(args.proposal, args.note)
        if args.cmd == "reject":
            return book.reject(args.proposal, args.reason)
        return book.list(args.state, args.scope)
    if args.cmd == "stream":
        return _stream(reg, args)
    info = reg.store_info()
    return f"{reg.user} on {info.backend}:{info.location} (schema v{info.schema_version})"


def _optimize(reg: Any, args: argparse.Namespace) -> Any:
    from IPython.core.error import UsageError

    from pmkit.rebalance.frontier import portfolio_frontier, returns_window

    pid = reg.portfolio(args.id).id  # resolves the active portfolio and checks view rights
    if args.points is not None and args.method != "frontier":
        raise UsageError("%pm optimize: --points goes with --method frontier")
    if args.method == "frontier":
        return portfolio_frontier(reg, pid, **_given(points=args.points, lookback=args.lookback))
    window = returns_window(reg, pid, **_given(lookback=args.lookback))
    return _optimizer(args.method).fit(window)


def _propose(reg: Any, args: argparse.Namespace) -> Any:
    from IPython.core.error import UsageError

    from pmkit.rebalance.frontier import portfolio_frontier, propose_frontier_point

    pid = reg.portfolio(args.id).id
    lookback = _given(lookback=args.lookback)
    if args.points is not None and args.point is None:
        raise UsageError("%pm propose: --points goes with --point (a frontier), not --method")
    if args.point is not None:
        frontier = portfolio_frontier(reg, pid, **_given(points=args.points), **lookback)
        return propose_frontier_point(reg, pid, frontier, args.point, note=args.note, **lookback)
    from pmkit.rebalance import propose_rebalance
    from pmkit.rebalance.workflow import ProposalBook

    proposal = propose_rebalance(reg, pid, optimizer=_optimizer(args.method), **lookback)
    return ProposalBook(reg).propose(proposal, args.note)


def _stream(reg: Any, args: argparse.Namespace) -> Any:
    from IPython.core.error import UsageError

    stream = _state["stream"]
    if args.action == "status":
        if stream is None:
            raise UsageError("no stream: run %pm stream start")
        return stream
    if args.action == "stop":
        if stream is None:
            raise UsageError("no stream: run %pm stream start")
        _stop_stream()
        return stream
    if stream is not None and stream.running:
        raise UsageError(f"a stream is already running: {stream!r}; run %pm stream stop first")
    _stop_stream()  # a stream that ended on its own (or its feed) is cleaned up first
    feed = None
    try:
        if args.url is None:
            from pmkit.stream.local import start_local_stream

            feed, stream = start_local_stream(reg, port=args.feed_port)
        else:
            from pmkit.stream.live import LiveStream

            stream = LiveStream(reg, url=args.url).start_in_thread()
    except OSError as exc:  # e.g. the feed port is taken: a usage problem, not a bug
        raise UsageError(f"{type(exc).__name__}: {exc}") from exc
    _state["stream"], _state["feed"] = stream, feed
    return stream


def _stop_stream() -> None:
    stream, feed = _state["stream"], _state["feed"]
    _state["stream"] = _state["feed"] = None
    try:
        if stream is not None:
            stream.stop()
    finally:
        if feed is not None:
            feed.stop_thread()


def _magics_class() -> type:
    from IPython.core.magic import Magics, line_magic, magics_class

    @magics_class
    class PmMagics(Magics):
        """The ``%pm`` line magic."""

        @line_magic
        def pm(self, line: str) -> Any:
            """Manage pmkit portfolios: ``%pm ls``, ``%pm use ID``, ``%pm show ID``, ..."""
            return run(line)

    PmMagics.pm.__doc__ = __doc__  # ``%pm?`` lists every command
    return PmMagics


def __getattr__(name: str) -> Any:
    if name == "PmMagics":  # built lazily so that importing pmkit never imports IPython
        return _magics_class()
    raise AttributeError(name)


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%pm`` (called by ``%load_ext pmkit``)."""
    ipython.register_magics(_magics_class())
