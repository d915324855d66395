"""The ``truthound-obs`` command-line tool.

truthound-obs demo                 an instrumented store workload showing all three pillars
truthound-obs audit query PATH     audit events matching filters (table or JSON Lines)
truthound-obs audit tail PATH      the last audit events, optionally following new ones
truthound-obs bench                native vs pure (vs prometheus_client / OpenTelemetry SDK)
truthound-obs core                 which core is active
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._audit_cli import UsageError, add_audit_commands
from ._cli_args import seconds
from ._core import active_core, native_available
from ._demo import add_demo_command
from .errors import InvalidArgumentError, ObservabilityError

__all__ = ["main"]


def _core(args: argparse.Namespace) -> int:
    print(active_core())
    if args.require_native and active_core() != "native":
        reason = "not importable" if not native_available() else "not selected"
        print(f"error: the native core is required but {reason}", file=sys.stderr)
        return 1
    return 0


def _bench(args: argparse.Namespace) -> int:
    from ._bench import run

    return run(seconds_per_case=args.seconds, out=sys.stdout, progress=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="truthound-obs",
        description="Audit logging, Prometheus metrics and tracing for storage systems.",
        epilog="The native (Rust) core serves everything unless TRUTHOUND_OBSERVABILITY_CORE=pure.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_demo_command(commands)
    add_audit_commands(commands)
    bench = commands.add_parser(
        "bench",
        help="compare the cores and the usual libraries on this machine (< 1 minute)",
        description="Median time per call of common workloads: native core, pure-Python core, "
        "and prometheus_client / the OpenTelemetry SDK when installed.",
    )
    bench.add_argument(
        "--seconds",
        type=seconds(),
        default=0.4,
        help="measuring time per case (default 0.4)",
    )
    bench.set_defaults(handler=_bench)
    core = commands.add_parser("core", help="print which core (native or pure) is active")
    core.add_argument(
        "--require-native", action="store_true", help="exit with 1 unless the native core is active"
    )
    core.set_defaults(handler=_core)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``truthound-obs``; returns the process exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:2] == ["audit", "verify"]:
        from .audit import verify_main

        return verify_main(arguments[2:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    try:
        status: int = args.handler(args)
    except (UsageError, InvalidArgumentError) as error:
        parser.exit(2, f"truthound-obs: error: {error}\n")
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`truthound-obs audit query ... | head`): stop quietly, and keep
        # the interpreter from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (ObservabilityError, OSError) as error:
        # An expected failure (a port in use, an unwritable file...): one line, no traceback.
        # Anything else is a bug, and keeps its traceback.
        print(f"truthound-obs: error: {_describe(error)}", file=sys.stderr)
        return 1
    return status


def _describe(error: BaseException) -> str:
    """An OSError of the standard library as ``path: reason``; this package's own errors
    already name what failed."""
    if (
        isinstance(error, OSError)
        and not isinstance(error, ObservabilityError)
        and error.strerror
        and error.filename is not None
    ):
        return f"{error.filename}: {error.strerror}"
    return str(error)
