"""pmkit benchmark harness: groups, timing, table and JSON output.

Each ``benchmarks/bench_<area>.py`` module registers groups with
``@benchmark_group("name")``; `run.py` imports them all. A group is a function
``ctx -> list[Row]``: ``ctx.quick`` asks for small sizes (a smoke run),
``ctx.repeats`` is the number of timed runs (median reported, after one
warm-up), ``ctx.tmp`` a scratch directory.

Every row is (benchmark, case, pmkit, baseline, ratio, note): ``pmkit`` is the
pmkit code path's time in seconds (or a throughput, by ``unit``),
``baseline`` the time of a peer library or straightforward alternative run
side by side in the same process, and ``ratio`` = baseline / pmkit (above 1:
pmkit is faster). A group checks both sides agree before it reports a ratio;
a mismatch fails the group and the run exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import xarray as xr

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.json"
MIN_REPEATS = 5


@dataclass
class Row:
    """One result line. ``pmkit`` is in ``unit``; ``baseline`` is always seconds."""

    benchmark: str
    case: str
    pmkit: float
    unit: str = "s"
    baseline: float | None = None
    ratio: float | None = None
    note: str = ""



@dataclass(frozen=True)
class Context:
    """What a group gets: size switch, repeat count and a scratch directory."""

    quick: bool
    repeats: int
    tmp: Path


Group = Callable[[Context], list[Row]]
GROUPS: dict[str, Group] = {}


def benchmark_group(name: str) -> Callable[[Group], Group]:
    """Register a function ``ctx -> list[Row]`` as the benchmark group ``name``."""

    def register(fn: Group) -> Group:
        if name in GROUPS:
            raise ValueError(f"benchmark group {name!r} registered twice")
        GROUPS[name] = fn
        return fn

    return register


def compared(benchmark: str, case: str, pmkit_s: float, baseline_s: float, note: str) -> Row:
    """A row of pmkit seconds against baseline seconds, with ratio baseline/pmkit."""
    return Row(benchmark, case, pmkit_s, "s", baseline_s, baseline_s / pmkit_s, note)



# -- timing ---------------------------------------------------------------------------------
def median_time(fn: Callable[[], object], repeats: int, min_run: float = 0.2) -> float:
    """Seconds per call of ``fn``: median of ``repeats`` timed runs after one warm-up call.

    Fast functions are called several times per run (so that a run lasts about
    ``min_run`` seconds) and the run time is divided by the number of calls.
    """
    t0 = time.perf_counter()
    fn()
    warm = time.perf_counter() - t0
    number = max(1, int(min_run / warm)) if warm > 0 else 1000
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - t0) / number)
    return statistics.median(runs)


def fail(message: str) -> NoReturn:
    """Abort the group: a benchmark that gives wrong answers measures nothing."""
    raise AssertionError(message)


# -- shared fixtures ------------------------------------------------------------------------
_MARKET: xr.Dataset | None = None


def market() -> xr.Dataset:
    """The real market of `pmkit.datasets.load_market` (loaded once)."""
    global _MARKET
    if _MARKET is None:
        from pmkit.datasets import load_market

        _MARKET = load_market()
    return _MARKET



# -- output -----------------------------------------------------------------------------------
def fmt_seconds(s: float) -> str:
    """Seconds with a readable unit."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_value(value: float, unit: str) -> str:
    """A pmkit cell: seconds, or a throughput with its unit."""
    return fmt_seconds(value) if unit == "s" else f"{value:,.0f} {unit}"


def table(rows: list[Row]) -> str:
    """Rows as an aligned plain-text table (numbers right-aligned)."""
    header = ("benchmark", "case", "pmkit", "baseline", "ratio", "note")
    cells = [
        (
            r.benchmark,
            r.case,
            fmt_value(r.pmkit, r.unit),
            "-" if r.baseline is None else fmt_seconds(r.baseline),
            "-" if r.ratio is None else f"{r.ratio:,.1f}x",
            r.note,
        )
        for r in rows
    ]
    widths = [max(len(c[k]) for c in [header, *cells]) for k in range(len(header))]
    right = {2, 3, 4}

    def line(cols: tuple[str, ...]) -> str:
        parts = [
            c.rjust(w) if k in right else c.ljust(w)
            for k, (c, w) in enumerate(zip(cols, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(c) for c in cells)])


def environment() -> dict[str, Any]:
    """Versions and machine facts stored next to the numbers."""
    import pmkit

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "pmkit": getattr(pmkit, "__version__", "?"),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "xarray": xr.__version__,
    }


def write_json(path: Path, rows: list[Row], args: argparse.Namespace, failed: list[str]) -> None:
    """Write the results (and how they were made) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "groups": args.names,
        "quick": args.quick,
        "repeats": args.repeats,
        "failed": failed,
        "environment": environment(),
        "rows": [asdict(r) for r in rows],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


# -- command line -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="groups to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the groups and exit")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS,
                        help=f"timed runs per case, median reported (>= {MIN_REPEATS})")
    parser.add_argument("--json", "--output", dest="output", type=Path, default=RESULTS,
                        help="JSON results file [%(default)s]")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {unknown}; have {sorted(GROUPS)}")
    if args.repeats < MIN_REPEATS:
        parser.error(f"--repeats must be at least {MIN_REPEATS}")
    args.names = args.names or list(GROUPS)
    return args




def discover() -> None:
    """Import every ``bench_*.py`` beside this file, registering their groups."""
    sys.path.insert(0, str(HERE))
    for path in sorted(HERE.glob("bench_*.py")):
        importlib.import_module(path.stem)


def main(argv: list[str] | None = None) -> int:
    """Run the named groups (default all), print the table, write the JSON."""
    discover()
    args = parse_args(argv)
    if args.list:
        for name, fn in GROUPS.items():
            # the group's own docstring, else its module's
            doc = fn.__doc__ or sys.modules[fn.__module__].__doc__ or ""
            lines = doc.strip().splitlines()
            print(f"{name:12} {lines[0] if lines else ''}")
        return 0
    rows: list[Row] = []
    failed: list[str] = []
    started = time.perf_counter()
    for name in args.names:
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"pmkit-bench-{name}-") as tmp:
            ctx = Context(args.quick, args.repeats, Path(tmp))
            try:
                rows.extend(GROUPS[name](ctx))
            except Exception:
                traceback.print_exc()
                failed.append(name)
        print(f"  {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(table(rows))
    print(f"\ntotal {time.perf_counter() - started:.1f} s; results in {args.output}")
    write_json(args.output, rows, args, failed)
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
