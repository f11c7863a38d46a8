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
    %pm strategy start NAME [--portfolio ID] [--symbols A,B,...] [KEY=VALUE ...]
                                run a live signal strategy on the stream, acting as
                                the current user (StrategyRunner.start)
    %pm strategy pause|resume|stop RUN_ID
                                change a run's state (StrategyRunner.pause/resume/stop)
    %pm strategies [--state S]  the strategy runs this user may view, and what they did
    %pm tca [PORTFOLIO ...] [--by parent|child|portfolio|algorithm|strategy]
                                transaction-cost analysis of executed parent orders
    %pm whoami                  the acting user and the store

Optimizer methods (``--method``): min_variance (default), max_sharpe, erc,
hrp, max_diversification, min_correlation, min_cvar. Live strategies (``%pm
strategy start``): ma_crossover, breakout, mean_reversion
(`pmkit.strategies.LIVE_STRATEGIES`; parameters as ``fast=5 slow=20``).

``ls``, ``groups``, ``proposals``, ``risk`` and ``strategies`` return a table
object: ``.frame`` is the pandas DataFrame (numbers unformatted), its HTML
and text forms format money, percent and times as every pmkit screen does
(`pmkit.display`). ``as`` returns the session (``.registry``) with a one-line
repr. ``%pm demo`` also registers the demo's live strategies
(`pmkit.demo.register_demo_strategies`), so a trader can start them.

From Python, ``pmkit.magics.use(registry)`` makes an existing registry the
one the magics act on.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from pmkit.errors import PmkitError

__all__ = [
    "OPTIMIZERS",
    "Session",
    "Table",
    "current",
    "load_ipython_extension",
    "run",
    "use",
]

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

_state: dict[str, Any] = {"registry": None, "stream": None, "feed": None, "runner": None}


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
    strategy = sub.add_parser("strategy")
    verbs = strategy.add_subparsers(dest="action", required=True, parser_class=_Parser)
    begin = verbs.add_parser("start")
    begin.add_argument("name")
    begin.add_argument("params", nargs="*", metavar="KEY=VALUE")
    begin.add_argument("--portfolio")
    begin.add_argument("--symbols")
    for verb in ("pause", "resume", "stop"):
        verbs.add_parser(verb).add_argument("run")
    sub.add_parser("strategies").add_argument("--state", action="append")
    tca = sub.add_parser("tca")
    tca.add_argument("ids", nargs="*", metavar="PORTFOLIO")
    tca.add_argument("--by", choices=["parent", "child", "portfolio", "algorithm", "strategy"])
    sub.add_parser("whoami")
    return p


def run(line: str) -> Any:
    """Run one ``%pm`` command line and return its result."""
    from IPython.core.error import UsageError

    parser = _parser()
    args, extra = parser.parse_known_args(shlex.split(line))
    if extra:
        # NAME=VALUE parameters may follow the options too (argparse takes a list of
        # positionals only before them)
        if args.cmd == "strategy" and args.action == "start" and all(
            "=" in t and not t.startswith("-") for t in extra
        ):
            args.params = [*args.params, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
        from pmkit.demo import open_demo, register_demo_strategies

        admin = open_demo(args.url)
        register_demo_strategies(admin)
        return use(admin if args.user == "system" else admin.as_user(args.user))
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
        return Session(use(reg.as_user(args.user)))
    if args.cmd == "ls":
        segment = dict(s.split("=", 1) for s in args.segment)
        ids = [
            p.id for p in reg.portfolios(tags=args.tag, segment=segment or None, status=args.status)
        ]
        return _portfolios_table(reg, reg.summary().loc[ids])
    if args.cmd == "use":
        reg.set_active_portfolio(args.id)
        return reg.portfolio(args.id)
    if args.cmd == "show":
        if args.id is not None and reg.view().record("group", args.id) is not None:
            return reg.group(args.id)
        return reg.portfolio(args.id)
    if args.cmd == "groups":
        return _groups_table(reg.group_tree())
    if args.cmd == "risk":
        from pmkit.analytics.overview import risk_overview

        opts = _given(confidence=args.confidence, lookback=args.lookback)
        return _risk_table(risk_overview(reg, args.ids or None, **opts))
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
        return _proposals_table(book.list(args.state, args.scope))
    if args.cmd == "stream":
        return _stream(reg, args)
    if args.cmd == "strategy":
        return _strategy(reg, args)
    if args.cmd == "strategies":
        return _runs_table(_runner(reg).runs(args.state))
    if args.cmd == "tca":
        return _tca(reg, args)
    info = reg.store_info()
    return f"{reg.user} on {info.backend}:{info.location} (schema v{info.schema_version})"


def _tca(reg: Any, args: argparse.Namespace) -> Any:
    """Transaction-cost analysis of the executed parent orders this user may see."""
    from pmkit.execution import TCAReport, read_parents

    parents = [p for p in read_parents(reg, with_fills=True)
               if not args.ids or p.portfolio in args.ids]
    if not parents:
        return "no executed parent orders" + (f" in {', '.join(args.ids)}" if args.ids else "")
    report = TCAReport(parents)
    return report if args.by is None else report.table(by=args.by)


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
    # a note given is the proposal's reason: what the approver reads as "reason"
    reason = {"reason": args.note} if args.note.strip() else {}
    if args.point is not None:
        frontier = portfolio_frontier(reg, pid, **_given(points=args.points), **lookback)
        return propose_frontier_point(reg, pid, frontier, args.point, note=args.note, **lookback,
                                      **reason)
    from pmkit.rebalance import propose_rebalance
    from pmkit.rebalance.workflow import ProposalBook

    proposal = propose_rebalance(reg, pid, optimizer=_optimizer(args.method), **lookback,
                                 **reason)
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
    if _state["runner"] is not None and _state["runner"].registry.shares_store_with(reg):
        _state["runner"].attach(stream)  # the runs follow the new stream
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


# -- strategy runs ---------------------------------------------------------------------------
def _runner(reg: Any) -> Any:
    """The magics' strategy runner on ``reg``'s store (one per store), acting as ``reg.user``."""
    from pmkit.coordinator import StrategyCoordinator, StrategyRunner

    runner = _state["runner"]
    if runner is None or not runner.registry.shares_store_with(reg):
        if runner is not None:
            runner.close()
        runner = _state["runner"] = StrategyRunner(StrategyCoordinator(reg))
    stream = _state["stream"]
    if runner.stream is not stream:
        runner.attach(stream)
    return runner.as_user(reg.user)


def _strategy(reg: Any, args: argparse.Namespace) -> Any:
    from IPython.core.error import UsageError

    from pmkit.coordinator.runner import parse_assignments

    runner = _runner(reg)
    if args.action != "start":
        return getattr(runner, args.action)(args.run)
    stream = _state["stream"]
    if stream is None or not stream.running:
        raise UsageError("no live stream: run %pm stream start first (a run needs live prices)")
    symbols = None
    if args.symbols is not None:
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    portfolio = reg.resolve_portfolio_id(args.portfolio)
    return runner.start(args.name, portfolio, parse_assignments(args.params), symbols=symbols)


# -- what the commands return: tables formatted by pmkit.display ------------------------------
class Table:
    """A ``%pm`` result: a DataFrame shown as a formatted table.

    Attributes
    ----------
    frame : pandas.DataFrame
        The data, numbers unformatted (money in currency, fractions as fractions).
    kinds : dict
        Column -> `pmkit.display` kind (how it reads).
    title : str
        One line above the table.

    ``_repr_html_`` formats every column through `pmkit.display.html_table`;
    ``repr`` shows the title and the ``text_columns`` formatted the same way,
    at most `max_rows` rows.
    """

    max_rows = 20

    def __init__(
        self,
        frame: Any,
        kinds: dict[str, str],
        title: str,
        *,
        titles: dict[str, str] | None = None,
        text_columns: list[str] | None = None,
        empty: str = "",
    ) -> None:
        self.frame = frame
        self.kinds = dict(kinds)
        self.title = title
        self.titles = dict(titles or {})
        self.text_columns = text_columns
        self.empty = empty

    def _shown(self) -> Any:
        return self.frame

    def _repr_html_(self) -> str:
        from html import escape

        from pmkit.display import html_table

        if self.frame.empty and self.empty:
            return f"<p><b>{escape(self.title)}</b><br>{escape(self.empty)}</p>"
        shown = self._shown()
        return html_table(shown, self.kinds, titles=self.titles, caption=self.title,
                          index=shown.index.name is not None)

    def __repr__(self) -> str:
        from pmkit.display import formatted_frame

        if self.frame.empty:
            return f"{self.title}\n{self.empty}" if self.empty else self.title
        shown = self._shown()
        cols = [c for c in (self.text_columns or list(shown.columns)) if c in shown.columns]
        text = formatted_frame(shown[cols], self.kinds)
        for c in cols:  # text reads left-aligned (to_string right-aligns every column)
            if self.kinds.get(c, "text") in ("text", "time"):
                values = text[c].map(lambda v: "—" if v is None else str(v))
                text[c] = values.str.ljust(int(values.str.len().max() or 0))
        text = text.rename(columns=self.titles)
        more = len(text) - self.max_rows
        body = text.head(self.max_rows).to_string()
        return f"{self.title}\n{body}" + (f"\n… {more} more rows" if more > 0 else "")

    def __len__(self) -> int:
        return len(self.frame)


class _Items(Table):
    """A table of service objects: iterable and indexable like the list it shows."""

    def __init__(self, items: list[Any], frame: Any, kinds: dict[str, str], title: str,
                 **kw: Any) -> None:
        super().__init__(frame, kinds, title, **kw)
        self.items = list(items)

    def __iter__(self) -> Any:
        return iter(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _portfolios_table(reg: Any, frame: Any) -> Table:
    return Table(
        frame, {"cash": "money", "value": "money"},
        f"{_plural(len(frame), 'portfolio')} visible to {reg.user}",
        text_columns=["name", "status", "currency", "cash", "value"],
        empty="No portfolio matches (or none you may view).",
    )


class GroupsTable(Table):
    """``%pm groups``: the group tree (``.tree``, a `GroupNode`) as an indented table."""

    def __init__(self, tree: Any) -> None:
        import pandas as pd

        rows = [
            {"id": n.id, "name": n.name, "kind": n.kind, "depth": depth - 1,
             "status": n.status, "value": n.value, "currency": n.currency,
             "target": n.target, "actual": n.actual}
            for depth, n in tree.walk() if n.kind != "root"
        ]
        cols = ["id", "name", "kind", "depth", "status", "value", "currency", "target", "actual"]
        frame = pd.DataFrame(rows, columns=cols).set_index("id")
        super().__init__(
            frame, {"value": "money", "target": "percent", "actual": "percent"},
            "Groups and portfolios: value, target and actual weight in the parent",
            titles={"entry": "group / portfolio", "value": "value", "target": "target",
                    "actual": "actual"},
            text_columns=["entry", "value", "currency", "target", "actual"],
            empty="No groups or portfolios (or none you may view).",
        )
        self.tree = tree

    def _shown(self) -> Any:
        shown = self.frame.copy()
        # em spaces indent the tree: html_table escapes text, so no markup is needed
        entry = ["\u2003" * int(d) + n for d, n in zip(shown["depth"], shown["name"],
                                                      strict=True)]
        shown.insert(0, "entry", entry)
        shown = shown.drop(columns=["name", "kind", "depth"])
        return shown


def _groups_table(tree: Any) -> GroupsTable:
    return GroupsTable(tree)


def _proposals_table(proposals: list[Any]) -> _Items:
    import pandas as pd

    cols = ["id", "scope", "state", "created_by", "created_at", "reason", "method", "trades",
            "estimated_cost", "expires_at"]
    rows = [
        {"id": p.id, "scope": p.scope, "state": str(p.state), "created_by": p.created_by,
         "created_at": p.created_at, "reason": p.reason, "method": p.method,
         "trades": len(p.trades), "estimated_cost": p.estimated_cost,
         "expires_at": p.expires_at}
        for p in proposals
    ]
    frame = pd.DataFrame(rows, columns=cols).set_index("id")
    kinds = {"created_at": "time", "expires_at": "time", "trades": "count",
             "estimated_cost": "money"}
    return _Items(
        proposals, frame, kinds, _plural(len(proposals), "proposal"),
        titles={"estimated_cost": "est. cost", "created_by": "by", "created_at": "created"},
        text_columns=["scope", "state", "created_by", "created_at", "trades", "estimated_cost",
                      "reason"],
        empty="No proposals you may view. Make one: %pm propose ID --method min_variance",
    )


class RiskTable(Table):
    """``%pm risk``: one row per portfolio; ``.dataset`` is `risk_overview`'s Dataset."""

    def __init__(self, ds: Any) -> None:
        import pandas as pd

        frame = pd.DataFrame(
            {
                "volatility": ds["volatility"].to_series(),
                "var": ds["var"].to_series(),
                "es": ds["es"].to_series(),
                "max_drawdown": ds["drawdown"].min("time").to_series(),
            }
        )
        kinds: dict[str, str] = dict.fromkeys(frame.columns, "percent")
        titles = {"volatility": "volatility (ann.)", "var": "VaR 1d", "es": "ES 1d",
                  "max_drawdown": "max drawdown"}
        for scenario in [str(s) for s in ds.indexes["scenario"]]:
            ret, pnl = f"{scenario} return", f"{scenario} P&L"
            frame[ret] = ds["stress_return"].sel(scenario=scenario).to_series()
            frame[pnl] = ds["stress_pnl"].sel(scenario=scenario).to_series()
            kinds[ret], kinds[pnl] = "percent", "money"
            if "stress_unlisted" in ds and bool((ds["stress_unlisted"].sel(
                    scenario=scenario) > 0).any()):
                unlisted = f"{scenario} unlisted"
                frame[unlisted] = ds["stress_unlisted"].sel(scenario=scenario).to_series()
                kinds[unlisted] = "percent"
        frame.index.name = "portfolio"
        attrs = ds.attrs
        title = (
            f"Risk as of {attrs.get('as_of')}: VaR and ES at {float(attrs['confidence']):.0%}"
            f" over {attrs.get('lookback')} daily returns (fractions of value, loss positive)"
        )
        super().__init__(frame, kinds, title, titles=titles,
                         text_columns=["volatility", "var", "es", "max_drawdown"])
        self.dataset = ds


def _risk_table(ds: Any) -> RiskTable:
    return RiskTable(ds)


def _runs_table(runs: list[Any]) -> _Items:
    import pandas as pd

    from pmkit.coordinator.runner import RUN_COLUMNS, RUN_KINDS, RUN_TITLES
    from pmkit.strategies import LIVE_STRATEGIES

    frame = pd.DataFrame([r.row() for r in runs], columns=list(RUN_COLUMNS)).set_index("id")
    names = ", ".join(sorted(LIVE_STRATEGIES))
    return _Items(
        runs, frame, RUN_KINDS, _plural(len(runs), "strategy run"), titles=RUN_TITLES,
        text_columns=["strategy", "portfolio", "state", "started_by", "signals", "queued",
                      "refused"],
        empty=f"No strategy runs. Start one: %pm stream start, then %pm strategy start NAME"
              f" --portfolio ID (NAME: {names})",
    )


class Session:
    """``%pm as USER``: the registry session the magics now act with, in one line.

    Attributes
    ----------
    registry : Registry
        The session (also `current()`).
    user : str
    """

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.user = registry.user

    def roles(self) -> str:
        """``"administrator"``, or the user's roles, e.g. ``"manager on firm"``."""
        if self.registry.user_info(self.user).get("admin"):
            return "administrator"
        by_role: dict[str, list[str]] = {}
        for scope, role in self.registry.view().own_grants():
            by_role.setdefault(role, []).append(scope)
        if not by_role:
            return "no roles"
        parts = []
        for role, scopes in by_role.items():
            more = f" +{len(scopes) - 3} more" if len(scopes) > 3 else ""
            parts.append(f"{role} on {', '.join(scopes[:3])}{more}")
        return "; ".join(parts)

    def __repr__(self) -> str:
        info = self.registry.store_info()
        return f"acting as {self.user} ({self.roles()}) on {info.backend}:{info.location}"

    def _repr_html_(self) -> str:
        from html import escape

        return f"<span class='pmkit-session'>{escape(repr(self))}</span>"


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
