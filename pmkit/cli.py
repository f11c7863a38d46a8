"""The ``pmkit`` command line: ``serve`` (the operations app), ``feed`` (market data)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pmkit.stream.server import FeedServer

__all__ = ["DEFAULT_STORE", "main"]

#: Embedded store used by ``make run`` when no ``--store`` is given.
DEFAULT_STORE = "sqlite:///pmkit-demo.sqlite"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pmkit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the Panel operations app")
    serve.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help="store URL (seeded with the demo when empty) [%(default)s]",
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
    feed = sub.add_parser("feed", help="serve real-price market data over a local WebSocket")
    feed.add_argument("--host", default="127.0.0.1", help="[%(default)s]")
    feed.add_argument("--port", type=int, default=8765, help="[%(default)s]")
    feed.add_argument("--mode", choices=("replay", "gbm"), default="replay", help="[%(default)s]")
    feed.add_argument(
        "--rate", type=float, default=1000.0,
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
    return p


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
    )


def _run_feed(args: argparse.Namespace) -> int:
    import asyncio

    from pmkit.errors import ValidationError

    try:
        server = _feed_server(args)
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
        try:
            from pmkit_widgets.app import serve
        except ImportError as exc:  # the UI extra is optional
            print(
                f"pmkit serve needs the UI extra: pip install 'pmkit[ui]' ({exc})", file=sys.stderr
            )
            return 2
        serve(
            store=args.store,
            port=args.port,
            address=args.address,
            show=args.show,
            feed_port=None if args.no_feed else args.feed_port,
        )
    elif args.command == "feed":
        return _run_feed(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
