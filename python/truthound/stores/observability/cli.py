"""The ``truthound-obs`` command-line tool."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._core import active_core, native_available

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truthound-obs",
        description="Audit logging, Prometheus metrics and tracing for storage systems.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="run an instrumented store workload that shows all three pillars"
    )
    core = commands.add_parser("core", help="print which core (native or pure) is active")
    for command in (demo, core):
        command.add_argument(
            "--require-native",
            action="store_true",
            help="exit with status 1 unless the native core is active",
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``truthound-obs``; returns the process exit status."""
    args = _build_parser().parse_args(argv)
    core = active_core()
    if args.command == "core":
        print(core)
    else:
        print(
            f"truthound-obs demo: the {core} core is active "
            f"(native available: {native_available()})"
        )
    if args.require_native and core != "native":
        print("error: the native core is required but not active", file=sys.stderr)
        return 1
    return 0
