"""The ``pmkit`` command line: ``pmkit serve`` starts the operations app."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

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
    return p


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
        serve(store=args.store, port=args.port, address=args.address, show=args.show)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
