"""The ``voxwire`` command line.

``voxwire bench`` runs the side-by-side microbenchmarks against whichever peers are
installed (audioop, soxr, ...) and prints one table per benchmark.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence

from voxwire import __version__
from voxwire.benchmarks import BENCHMARKS
from voxwire.benchmarks._harness import Table

__all__ = ["main"]


def _parse_only(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark {', '.join(unknown) or repr(value)}; "
            f"choose from {', '.join(BENCHMARKS)}"
        )
    return names


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxwire", description="voxwire: the media layer for real-time voice AI"
    )
    parser.add_argument("--version", action="version", version=f"voxwire {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    bench = sub.add_parser(
        "bench",
        help="run the microbenchmarks side by side with the installed peers",
        description="Time voxwire's kernels against the peers a user would otherwise pick, "
        "in the same run, on fresh data, and print the ratios.",
    )
    bench.add_argument(
        "--only",
        type=_parse_only,
        default=list(BENCHMARKS),
        metavar="NAMES",
        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="fewer rounds: a smoke run of a few seconds, noisier figures",
    )
    bench.add_argument("--json", action="store_true", help="print the tables as JSON")
    return parser


def _bench(names: Sequence[str], quick: bool, as_json: bool) -> int:
    tables: list[Table] = []
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        started = time.perf_counter()
        result: list[Table] = module.run(quick=quick)
        elapsed = time.perf_counter() - started
        tables += result
        if not as_json:
            for table in result:
                print(table.render(), end="\n\n", flush=True)
            print(f"[{name}: {elapsed:.1f} s]", end="\n\n", file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps([t.as_dict() for t in tables], indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``voxwire`` command line; return the process exit status."""
    args = _build_parser().parse_args(argv)
    if args.command == "bench":
        return _bench(args.only, args.quick, args.json)
    raise AssertionError(f"unhandled command {args.command!r}")  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
