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
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ._cli_args import seconds
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
    ages: dict[Path, float] = {}
    for path in set(found):
        try:
            ages[path] = path.stat().st_mtime
        except FileNotFoundError:
            continue  # rotated or compressed while we were listing
    unique = sorted(ages, key=lambda p: (ages[p], p.name))
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
    for option, value in (("--since", args.start_time), ("--until", args.end_time)):
        if value is not None:
            try:
                QueryFilter.build(value, None, None, None, None, None, None)
            except ValueError:
                raise UsageError(
                    f"{option} {value!r} is not an ISO 8601 date or time "
                    "(for example 2026-01-31 or 2026-01-31T12:00:00+00:00)"
                ) from None
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


class _Follower:
    """Prints events appended to a live trail, across rotations and compression.

    Each uncompressed segment is read incrementally, remembered by name and inode: when the
    active file is rotated (renamed) a new file takes its name and is read from the start, while
    the renamed one, and any segment compressed later, is read once more in full. Events are
    remembered by id, so that re-reading prints nothing twice, and events logged before we
    started (present in those re-read segments) are not printed at all.
    """

    _REMEMBERED = 100_000

    def __init__(self, paths: Sequence[str], flt: QueryFilter, output_format: str, out: TextIO):
        self.paths, self.flt, self.output_format, self.out = paths, flt, output_format, out
        self.started = datetime.now(UTC)
        self.seen_archives: set[Path] = set()
        self.files: dict[Path, tuple[int, int]] = {}  # path -> (inode, bytes read)
        self.partial: dict[Path, bytes] = {}  # an incomplete last line, per path
        for path in _segments(paths):
            if path.name.endswith(".gz"):
                self.seen_archives.add(path)
            else:
                status = path.stat()
                self.files[path] = (status.st_ino, status.st_size)
        self.printed: set[str] = set()
        self.printed_order: deque[str] = deque()

    def _show(self, events: Iterable[AuditEvent], *, since_start: bool) -> None:
        fresh = [
            event
            for event in events
            if event.event_id not in self.printed
            and (not since_start or event.timestamp >= self.started)
            and self.flt.matches(event)
        ]
        for event in fresh:
            self.printed.add(event.event_id)
            self.printed_order.append(event.event_id)
            if len(self.printed_order) > self._REMEMBERED:
                self.printed.discard(self.printed_order.popleft())
        if fresh:
            _write(fresh, self.output_format, self.out, header=False)
            self.out.flush()

    def _read_archive(self, path: Path) -> None:
        self.seen_archives.add(path)
        entry = [(str(path), "", "", True)]
        archived = iter_events(entry, _is_text_format(path), QueryReport())
        self._show((event for _, event in archived), since_start=True)

    def _read_appended(self, path: Path) -> None:
        try:
            status = path.stat()
            inode, done = self.files.get(path, (None, 0))
            fresh_file = inode != status.st_ino
            if fresh_file:  # a new file under this name (after a rotation), or a new segment
                done = 0
                self.partial.pop(path, None)
            if status.st_size <= done:
                return
            with path.open("rb") as handle:
                handle.seek(done)
                data = self.partial.pop(path, b"") + handle.read(status.st_size - done)
        except FileNotFoundError:
            return  # compressed meanwhile: its .gz is read on a later poll
        self.files[path] = (status.st_ino, status.st_size)
        lines = data.split(b"\n")
        if lines[-1]:
            self.partial[path] = lines[-1]  # an incomplete line: wait for the rest
        text = _is_text_format(path)
        parsed = (parse_line(raw, text) for raw in lines[:-1])
        self._show((value for kind, value in parsed if kind == "event"), since_start=fresh_file)

    def poll(self) -> None:
        try:
            segments = _segments(self.paths)
        except UsageError:
            return  # between a rotation's rename and the new file: try again next time
        for path in segments:
            if path.name.endswith(".gz"):
                if path not in self.seen_archives:
                    self._read_archive(path)
            else:
                self._read_appended(path)
        current = set(segments)
        for gone in [path for path in self.files if path not in current]:
            del self.files[gone]
            self.partial.pop(gone, None)


def _follow(paths: Sequence[str], flt: QueryFilter, output_format: str, interval: float) -> None:
    """Prints events appended from now on, following rotation, until interrupted."""
    follower = _Follower(paths, flt, output_format, sys.stdout)
    try:
        while True:
            time.sleep(interval)
            follower.poll()
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
        "--interval",
        type=seconds(),
        default=0.5,
        help="seconds between checks with --follow (default 0.5)",
    )
    tail.set_defaults(handler=_tail)
    # Listed here for `audit --help`; `truthound-obs audit verify ...` is handed to verify_main
    # whole (see cli.main), which owns its arguments and help.
    sub.add_parser(
        "verify",
        help="check tamper-evident audit logs (sequence, chained HMAC, checkpoints)",
        add_help=False,
    )
