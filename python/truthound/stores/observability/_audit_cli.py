"""``truthound-obs audit query`` and ``audit tail``: reading audit files without writing to them
(``audit verify`` is ``audit.verify_main``).

Both accept audit files (``.jsonl``, ``.log``, either optionally ``.gz``) and directories (every
such file inside). They never open a writer, so they are safe to run against a live trail.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from .audit import AuditEvent, AuditEventType
from .audit.reader import QueryFilter, QueryReport, iter_events, parse_line

__all__ = ["add_audit_commands"]

_SUFFIXES = (".jsonl", ".log", ".jsonl.gz", ".log.gz")
_TABLE_COLUMNS = (
    ("timestamp", 32),
    ("event_type", 15),
    ("status", 8),
    ("user_id", 12),
    ("item_id", 28),
    ("operation", 12),
    ("duration_ms", 11),
)


class UsageError(Exception):
    """A bad command-line argument; printed without a traceback."""


def _is_segment(path: Path) -> bool:
    return path.name.endswith(_SUFFIXES) and not path.name.startswith(".")


def _segments(paths: Sequence[str]) -> list[Path]:
    """The audit segments named by ``paths``, oldest first (by modification time, then name)."""
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found.extend(p for p in path.iterdir() if p.is_file() and _is_segment(p))
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"no such audit file or directory: {text}")
    unique = sorted(set(found), key=lambda p: (p.stat().st_mtime, p.name))
    if not unique:
        raise UsageError(f"no audit files ({', '.join(_SUFFIXES)}) in {', '.join(paths)}")
    return unique


def _is_text_format(path: Path) -> bool:
    return path.name.endswith((".log", ".log.gz"))


def _read(paths: Sequence[str], flt: QueryFilter) -> tuple[list[AuditEvent], QueryReport]:
    report = QueryReport()
    segments = _segments(paths)

    def candidates() -> Iterable[tuple[Any, AuditEvent]]:
        for index, path in enumerate(segments):
            entry = [(str(path), "", "", path.name.endswith(".gz"))]
            for (timestamp, _, line), event in iter_events(entry, _is_text_format(path), report):
                yield (timestamp, index, line), event

    return flt.select(iter(candidates())), report


def _format_table(events: Sequence[AuditEvent], out: TextIO, *, header: bool = True) -> None:
    if header:
        out.write("  ".join(name.upper().ljust(w) for name, w in _TABLE_COLUMNS).rstrip() + "\n")
    for event in events:
        row = event.to_dict()
        cells = []
        for name, width in _TABLE_COLUMNS:
            value = row.get(name)
            text = "" if value is None else str(value)
            cells.append(text[:width].ljust(width))
        out.write("  ".join(cells).rstrip() + "\n")


def _write(
    events: Sequence[AuditEvent], output_format: str, out: TextIO, *, header: bool = True
) -> None:
    if output_format == "jsonl":
        for event in events:
            out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
    else:
        _format_table(events, out, header=header)


def _report_problems(report: QueryReport, out: TextIO) -> None:
    if report.skipped_lines or report.unreadable_segments:
        out.write(
            f"note: skipped {report.torn_lines} torn and {report.invalid_lines} invalid lines, "
            f"{report.unreadable_segments} unreadable files\n"
        )
        for segment, line, reason in report.problems[:10]:
            out.write(f"  {segment}:{line}: {reason}\n")


def _event_type(text: str) -> AuditEventType:
    try:
        return AuditEventType(text.lower())
    except ValueError:
        choices = ", ".join(member.value for member in AuditEventType)
        raise argparse.ArgumentTypeError(
            f"unknown event type {text!r} (one of: {choices})"
        ) from None


def _filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="audit file(s) or directory")
    parser.add_argument("--type", dest="event_type", type=_event_type, help="event type")
    parser.add_argument("--user", dest="user_id", help="user id")
    parser.add_argument("--item", dest="item_id", help="item (resource) id")
    parser.add_argument("--since", dest="start_time", help="ISO 8601 start, inclusive (UTC)")
    parser.add_argument("--until", dest="end_time", help="ISO 8601 end, inclusive (UTC)")
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=("table", "jsonl"),
        default="table",
        help="output format (default: table)",
    )


def _build_filter(args: argparse.Namespace, limit: int | None) -> QueryFilter:
    try:
        return QueryFilter.build(
            args.start_time,
            args.end_time,
            args.event_type,
            args.user_id,
            args.item_id,
            None,
            limit,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


def _query(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be at least 1")
    events, report = _read(args.paths, _build_filter(args, args.limit))
    _write(events, args.output_format, sys.stdout)
    _report_problems(report, sys.stderr)
    return 0


def _tail(args: argparse.Namespace) -> int:
    if args.lines < 0:
        raise UsageError(f"-n {args.lines}: must not be negative")
    flt = _build_filter(args, args.lines)
    events, report = _read(args.paths, flt)
    _write(list(reversed(events)), args.output_format, sys.stdout)
    _report_problems(report, sys.stderr)
    if args.follow:
        _follow(args.paths, _build_filter(args, None), args.output_format, args.interval)
    return 0


def _follow(paths: Sequence[str], flt: QueryFilter, output_format: str, interval: float) -> None:
    """Prints events appended from now on, following rotation, until interrupted."""
    offsets = {path: path.stat().st_size for path in _segments(paths)}
    pending: dict[Path, bytes] = {}
    try:
        while True:
            time.sleep(interval)
            for path in _segments(paths):
                if path.name.endswith(".gz"):
                    offsets.setdefault(path, path.stat().st_size)
                    continue
                start = offsets.get(path, 0)
                size = path.stat().st_size
                if size <= start:
                    continue
                with path.open("rb") as handle:
                    handle.seek(start)
                    data = pending.pop(path, b"") + handle.read(size - start)
                offsets[path] = size
                lines = data.split(b"\n")
                if lines[-1]:
                    pending[path] = lines[-1]  # an incomplete line: wait for the rest
                fresh = []
                for raw in lines[:-1]:
                    kind, value = parse_line(raw, _is_text_format(path))
                    if kind == "event" and flt.matches(value):
                        fresh.append(value)
                if fresh:
                    _write(fresh, output_format, sys.stdout, header=False)
                    sys.stdout.flush()
    except KeyboardInterrupt:
        return


def add_audit_commands(commands: Any) -> None:
    """Adds ``audit query`` and ``audit tail`` to the ``truthound-obs`` sub-command parser."""
    audit = commands.add_parser(
        "audit",
        help="query, follow or verify audit trails",
        description="Read audit trails written by the file and JSON audit backends.",
    )
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    query = sub.add_parser(
        "query",
        help="print matching events, newest first",
        description="Print the audit events that match every given filter, newest first.",
    )
    _filter_arguments(query)
    query.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    query.set_defaults(handler=_query)
    tail = sub.add_parser(
        "tail",
        help="print the last events and optionally follow new ones",
        description="Print the last matching events (oldest first); --follow keeps printing "
        "new events as they are written, across rotations, until interrupted.",
    )
    _filter_arguments(tail)
    tail.add_argument("-n", "--lines", type=int, default=10, help="how many (default 10)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument(
        "--interval", type=float, default=0.5, help="seconds between checks with --follow"
    )
    tail.set_defaults(handler=_tail)
    # Listed here for `audit --help`; `truthound-obs audit verify ...` is handed to verify_main
    # whole (see cli.main), which owns its arguments and help.
    sub.add_parser(
        "verify",
        help="check tamper-evident audit logs (sequence, chained HMAC, checkpoints)",
        add_help=False,
    )
