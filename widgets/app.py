"""The served pmkit operations app (``pmkit serve``, ``make run``).

One registry (and store connection), one strategy coordinator and one live
stream are shared by the server process; every browser session gets its own
views over them, bound to the session's pmkit user. With a users file
(``pmkit serve --users FILE``) people log in (passwords checked against
scrypt hashes, `pmkit.auth`) and each login acts as the pmkit user it maps
to: the services decide what that user may do, so a viewer sees everything
and every change they try is refused with the service's message.

Views poll the store, so changes made by other processes (notebooks,
scripts) appear within seconds.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import panel as pn

from pmkit_widgets.base import after_this_update, escape_text, served_document
from pmkit_widgets.brand import FAVICON_FILE, FONTS
from pmkit_widgets.periodic import background_periodic

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pmkit.coordinator import StrategyCoordinator
    from pmkit.registry import Registry
    from pmkit.store import Store
    from pmkit.stream.live import LiveStream

__all__ = [
    "APP_TITLE",
    "POLL_PERIOD_MS",
    "SESSION_CHECK_MS",
    "TABS",
    "build_app",
    "end_when_signed_out",
    "role_summary",
    "serve",
]

#: Title of the app's page and browser tab.
APP_TITLE = "pmkit operations"

#: How often each session re-reads the store, in milliseconds.
POLL_PERIOD_MS = 2000

#: Tab titles, in order.
TABS = ("Portfolios", "Groups", "Live", "Risk", "Optimize", "Approvals", "Execution",
        "Signals")


def _views(
    registry: Registry,
    coordinator: StrategyCoordinator | None,
    stream: LiveStream | None,
    poll_period: int | None,
) -> list[tuple[str, Callable[[], Any]]]:
    """Each tab's title and the factory of its view (built when the tab is first shown)."""
    from pmkit_widgets import (
        ApprovalView,
        CoordinatorView,
        ExecutionView,
        FrontierView,
        GroupsView,
        LiveView,
        RegistryView,
        RiskView,
    )

    def coordinator_view() -> Any:
        if coordinator is None:
            return pn.pane.Alert("No strategy coordinator runs in this app.", alert_type="info")
        from pmkit.coordinator import StrategyRunner

        # the process's one runner of this coordinator (started by serve), as this session's user
        runner = StrategyRunner.shared(coordinator, stream).as_user(registry.user)
        return CoordinatorView(coordinator.as_user(registry.user), runner=runner,
                               poll_period=poll_period)

    def live_view() -> Any:
        if stream is None:
            return pn.pane.Alert("No live stream: the app was started without a feed "
                                 "(pmkit serve --no-feed).", alert_type="info")
        return LiveView(stream)

    factories: dict[str, Callable[[], Any]] = {
        "Portfolios": lambda: RegistryView(registry, poll_period=poll_period),
        "Groups": lambda: GroupsView(registry, poll_period=poll_period),
        "Live": live_view,
        "Risk": lambda: RiskView(registry),
        "Optimize": lambda: FrontierView(registry),
        "Approvals": lambda: ApprovalView(registry, poll_period=poll_period),
        "Execution": lambda: ExecutionView(registry, poll_period=poll_period),
        "Signals": coordinator_view,
    }
    return [(title, factories[title]) for title in TABS]


def _lazy_tabs(factories: list[tuple[str, Callable[[], Any]]]) -> pn.Tabs:
    """Tabs that hold only the shown tab's view on the page.

    A browser lays out and restyles every element of a page on each update,
    so the page holds the shown tab's view only: a hidden view leaves the
    page (a spinner stands in for it) and stops refreshing
    (``pause_updates``); shown again it reads the store afresh
    (``resume_updates``) and returns as it was left. In a served session
    the views of `PREPARED_TABS` are built in the background once the page
    is up, so their service calls have answered by the time someone opens
    them; every other view (or one opened sooner) is built when first shown.
    """
    holders = [pn.Column(sizing_mode="stretch_width", name=title) for title, _ in factories]
    waiting = [pn.indicators.LoadingSpinner(value=True, size=40) for _ in factories]
    for holder, spinner in zip(holders, waiting, strict=True):
        holder.objects = [spinner]
    views: dict[int, Any] = {}
    shown: list[int | None] = [None]

    def build(index: int) -> Any:
        title, factory = factories[index]
        try:
            return factory()
        except Exception as exc:  # a broken tab must not take the page down
            # The message may quote what a user typed: escaped like every user text.
            text = f"Could not open {title}: {type(exc).__name__}: {exc}"
            return pn.pane.Alert(escape_text(text), alert_type="danger",
                                 css_classes=["pmkit-error"])

    def show(index: int) -> None:
        previous = shown[0]
        if previous == index:
            return
        with pn.io.hold():  # one message: the browser lays the page out once
            if previous is not None:
                _call_if_any(views[previous], "pause_updates")
                holders[previous].objects = [waiting[previous]]
            if index not in views:
                views[index] = build(index)
            else:
                _call_if_any(views[index], "resume_updates")
            holders[index].objects = [views[index]]
            shown[0] = index

    def prepare(order: list[int]) -> None:
        # one hidden view per tick, so the session's own clicks are served in between
        while order and order[0] in views:
            order.pop(0)
        if not order:
            return
        index = order.pop(0)
        views[index] = build(index)  # its first service calls start now, off the page
        _call_if_any(views[index], "pause_updates")
        after_this_update(lambda: prepare(order))

    tabs = pn.Tabs(*[(title, holder) for (title, _), holder in zip(factories, holders,
                                                                    strict=True)],
                   dynamic=False, sizing_mode="stretch_width", css_classes=["pmkit-tabs"])
    tabs.param.watch(lambda event: show(event.new), "active")
    show(0)
    if served_document() is not None:
        # Once the page is up, the views of the slow tabs are built in the background, so a
        # click shows a view that has its figures already.
        slow = [i for i, (title, _) in enumerate(factories) if title in PREPARED_TABS]
        pn.state.onload(lambda: prepare(slow))
    return tabs


#: Tabs whose views a served page builds in the background once it is up: their first
#: service call takes longest (the efficient frontier: a quadratic program per point).
#: Risk is not among them: its programs are compiled by the server's warm-up, and shown it
#: sends its figures ahead of its charts (prepared, it would arrive as one slower message).
PREPARED_TABS = ("Optimize",)


def _call_if_any(view: Any, method: str) -> None:
    # an error tab (an Alert) has nothing to pause
    call = getattr(view, method, None)
    if call is not None:
        call()


#: Grants named in the header; more are summarized ("+3 more") with the full list on hover.
HEADER_GRANTS = 2


def role_summary(grants: Sequence[tuple[str, str]], admin: bool = False) -> tuple[str, str]:
    """``(short, full)`` texts of a user's roles for the header.

    ``short`` names at most `HEADER_GRANTS` grants, strongest first, and
    counts the rest; ``full`` lists every grant (the hover text).
    """
    if admin:
        return "administrator", "administrator"
    if not grants:
        return "no roles", "no roles"
    rank = {"admin": 0, "manager": 1, "trader": 2, "viewer": 3}
    ordered = sorted(grants, key=lambda g: (rank.get(str(g[1]), 9), str(g[0])))
    named = [f"{role} on {scope}" for scope, role in ordered]
    short = ", ".join(named[:HEADER_GRANTS])
    if len(named) > HEADER_GRANTS:
        short += f" +{len(named) - HEADER_GRANTS} more"
    return short, "; ".join(named)


def _who(registry: Registry, logins: bool) -> str:
    """Header text: the acting user, a summary of their roles, and a logout link."""
    user = registry.user
    data = registry.user_info(user)
    name = data.get("display_name") or user
    short, full = role_summary(registry.view().own_grants(), bool(data.get("admin")))
    logout = " · <a href='./logout' class='pmkit-logout'>Log out</a>" if logins else ""
    return (f"<span class='pmkit-user' title='{escape_text(full)}'>Signed in as "
            f"<b class='pmkit-user-name'>{escape_text(name)}</b> "
            f"(<code>{escape_text(user)}</code>: {escape_text(short)})</span>{logout}")


def build_app(
    registry: Registry,
    *,
    coordinator: StrategyCoordinator | None = None,
    stream: LiveStream | None = None,
    poll_period: int | None = POLL_PERIOD_MS,
    logins: bool = False,
) -> Any:
    """Build one session's page over ``registry``.

    Parameters
    ----------
    registry : Registry
        The session's registry: its user is who the page acts as.
    coordinator : StrategyCoordinator, optional
        Shared coordinator (the Signals tab acts through ``as_user``).
    stream : LiveStream, optional
        Shared running live stream (the Live tab).
    poll_period : int, optional
        Milliseconds between store re-reads (None: events only).
    logins : bool
        Whether the app has logins (shows a logout link).

    Returns
    -------
    panel.template.FastListTemplate
        The page, ready to ``.servable()`` or return from a ``pn.serve`` factory.
    """
    pn.extension("tabulator")
    tabs = _lazy_tabs(_views(registry, coordinator, stream, poll_period))
    who = pn.pane.HTML(_who(registry, logins), styles={"color": "white"},
                       css_classes=["pmkit-who"])
    return pn.template.FastListTemplate(
        title=APP_TITLE,
        header=[who],
        main=[tabs],
        main_max_width="1500px",
        accent="#1f4e79",
        favicon=str(FAVICON_FILE),
        design=_offline_design(),
        font=FONTS,
        theme_toggle=False,
    )


@cache
def _offline_design() -> type:
    """Panel's Fast design without its web font (Open Sans, fetched from Google's servers)."""
    from panel.theme.fast import Fast

    resources = {kind: value for kind, value in Fast._resources.items() if kind != "font"}
    # named Fast: Panel serves a design's own files under its lowercased class name
    return type("Fast", (Fast,), {"_resources": resources})


def _warm_up(registry: Registry) -> None:
    from pmkit.analytics.overview import warm_up

    try:
        seconds = warm_up(registry)
    except Exception:  # a warm-up is an optimization: the tabs compute on demand anyway
        log.exception("pmkit serve: warming up the overviews failed")
        return
    log.info("pmkit serve: overviews warmed up in %s", seconds)


#: How often an open page checks that its login session still lives, in milliseconds.
SESSION_CHECK_MS = 3000


def end_when_signed_out(
    app: Any, signed_in: Callable[[], bool], period_ms: int = SESSION_CHECK_MS
) -> Any:
    """Empty an open page once its login session ends (logout, deactivation, removal).

    New requests and websockets are refused as soon as the session ends on
    the server; this also closes the page already open in a browser: every
    ``period_ms`` it asks ``signed_in()`` and, once that is False, removes
    the views (stopping their updates) and says so in the header.

    Returns
    -------
    PeriodicCallback
        The running check (stopped after it ends the page).
    """

    def check() -> None:
        if signed_in():
            return
        callback.stop()
        for item in list(app.main):
            item.visible = False
        app.main[:] = []
        app.header[0].object = ("<span class='pmkit-user pmkit-signed-out'>Signed out. "
                                "<a href='./login'>Log in</a></span>")

    callback = background_periodic(check, period_ms)
    return callback


def serve(
    store: Store | str,
    port: int = 5006,
    address: str = "127.0.0.1",
    show: bool = False,
    feed_port: int | None = 8765,
    *,
    users_file: str | Path | None = None,
    cookie_secret: str | None = None,
    user: str = "system",
    allow_origin: Sequence[str] = (),
    behind_proxy: bool = False,
    **kwargs: Any,
) -> None:
    """Serve the operations app until interrupted (SIGINT or SIGTERM).

    By default the local market-data feed (`pmkit.stream.server.FeedServer`,
    replaying the bundled real closes) runs beside the app, and a
    `pmkit.stream.live.LiveStream` revalues every active portfolio from it,
    publishing ``stream.valuation`` events on the registry's bus, and the
    demo's live strategies (`pmkit.demo.DEMO_RUNS`: alice's moving-average
    crossover on ``client_a/growth``) run on it, so the Signals tab shows a
    live signal queue.

    Parameters
    ----------
    store : Store or str
        Store or URL; an empty store is seeded with the demo
        (`pmkit.demo.open_demo`).
    port : int
        TCP port (0 picks a free one).
    address : str
        Interface to listen on.
    show : bool
        Open a browser tab.
    feed_port : int or None, default 8765
        Port of the local feed on 127.0.0.1 (0 picks a free one); None runs
        no feed and no stream.
    users_file : path, optional
        Logins (`pmkit.auth.UsersFile`): turns on the login page; each login
        acts as its pmkit user. Logins whose user is missing or inactive in
        the store are refused.
    cookie_secret : str, optional
        Secret signing login cookies (default: random per process).
    user : str, default "system"
        The pmkit user of every session when there are no logins.
    allow_origin : sequence of str
        More ``host[:port]`` names browsers may reach the app by (a proxy's
        public name). The listening address, ``localhost`` and, on a wildcard
        address, this machine's names and addresses are always allowed.
    behind_proxy : bool, default False
        Served through a TLS-terminating reverse proxy: login cookies are
        ``Secure`` and the login throttle counts the client address from
        ``X-Forwarded-For`` (ignored otherwise). See `pmkit_widgets.auth`.
    **kwargs
        Passed on to `panel.serve`.
    """
    from pmkit.auth import UsersFile, is_active_user
    from pmkit.coordinator import StrategyCoordinator
    from pmkit.demo import open_demo
    from pmkit_widgets.auth import audit_lockout, serve_auth_kwargs, session_login

    kwargs.setdefault("verbose", False)
    registry = open_demo(store)
    if not is_active_user(registry, user):  # fail now, not in every session
        from pmkit.errors import NotFoundError

        raise NotFoundError("user", user)
    users = provider = None
    if users_file is not None:
        users = UsersFile.load(users_file)
        kwargs.update(serve_auth_kwargs(users_file, cookie_secret,
                                        is_allowed=lambda u: is_active_user(registry, u),
                                        behind_proxy=behind_proxy,
                                        on_lockout=partial(audit_lockout, registry)))
        provider = kwargs["auth_provider"]
    coordinator = StrategyCoordinator(registry)
    if port == 0:  # pick now: the websocket origins must name the real port
        with socket.socket() as sock:
            sock.bind((address, 0))
            port = sock.getsockname()[1]
    feed, stream = _start_feed(registry, feed_port)
    # compile the overviews' programs now, so the first person to open a tab does not wait
    threading.Thread(target=_warm_up, args=(registry,), name="pmkit-warm-up",
                     daemon=True).start()
    from pmkit.coordinator import StrategyRunner
    from pmkit.demo import register_demo_strategies, start_demo_runs

    # the demo's live strategies run on the app's stream, so the Signals tab shows a live queue
    runner = StrategyRunner.shared(coordinator, stream)
    if stream is not None:
        register_demo_strategies(registry)
        for run in start_demo_runs(runner):
            print(f"pmkit strategy run {run.id}: {run.strategy} on {run.portfolio} as "
                  f"{run.started_by}", flush=True)

    def page() -> Any:
        acting = user
        if provider is not None:
            cookies = dict(pn.state.cookies or {})  # the session's, for the later checks
            login = session_login(provider, cookies)
            mapped = provider.user_of(login) if login else None
            if mapped is None:
                return pn.pane.Alert("Not signed in. <a href='./login'>Log in</a>",
                                     alert_type="warning")
            acting = mapped
        app = build_app(registry.as_user(acting), coordinator=coordinator, stream=stream,
                        logins=users is not None)
        if provider is not None:
            end_when_signed_out(app, lambda: session_login(provider, cookies) is not None)
        return app

    server = pn.serve(
        {"/": page},
        port=port,
        address=address,
        show=show,
        start=False,
        allow_websocket_origin=_origins(address, port, allow_origin),
        title=APP_TITLE,
        **kwargs,
    )

    def stop(*_: Any) -> None:
        server.io_loop.asyncio_loop.call_soon_threadsafe(server.io_loop.stop)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: the caller stops us
            signal.signal(sig, stop)
    logins = f" with {len(users.logins())} logins" if users is not None else f" as {user}"
    print(f"pmkit serving at http://{address}:{server.port}/{logins}", flush=True)
    server.start()
    try:
        server.io_loop.start()
    finally:
        server.stop()
        runner.close()  # the runs stay running in the store: a restart reattaches them
        if stream is not None:
            stream.stop()
        if feed is not None:
            feed.stop_thread()
        registry.close()


def _origins(address: str, port: int, extra: Sequence[str]) -> list[str]:
    """Websocket origins Bokeh accepts: the names a browser may use to reach the app."""
    hosts = {address, "localhost", "127.0.0.1"}
    if address in ("0.0.0.0", "::", ""):  # every interface: this machine's names and addresses
        name = socket.gethostname()
        hosts |= {name, socket.getfqdn()}
        with contextlib.suppress(OSError):
            hosts |= {info[4][0] for info in socket.getaddrinfo(name, None)}
    out = [f"{h}:{port}" for h in sorted(hosts) if h not in ("0.0.0.0", "::", "")]
    return out + [o if ":" in o else f"{o}:{port}" for o in extra]


def _start_feed(registry: Registry, port: int | None) -> tuple[Any, Any]:
    """Start the local feed and the live stream over it (None, None when ``port`` is None).

    The feed listens on loopback whatever address the app is served on: its
    only client is the app's own stream, and the feed has no logins (``pmkit
    feed`` refuses a public host without ``--allow-remote`` for the same reason).
    """
    if port is None:
        return None, None
    from pmkit.stream.local import start_local_stream

    feed, stream = start_local_stream(registry, host="127.0.0.1", port=port)
    print(f"pmkit feed at {feed.url}; live stream of {len(stream.symbols)} symbols", flush=True)
    return feed, stream
