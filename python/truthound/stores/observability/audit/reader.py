"""Reading audit segments back: every line is checked, nothing aborts a query.

A line is one of: an event (parsed into ``AuditEvent``), a non-event record (a JSON object with a
``"_type"`` key, reserved for checkpoints and segment headers; skipped silently), a torn line (not
a complete JSON object: a writer was killed mid-line), or an invalid record (JSON, but not a valid
event: an unknown event type, a bad timestamp). Torn and invalid lines are skipped and reported in
a ``QueryReport``; an unreadable segment is reported too.
"""

from __future__ import annotations

import gzip
import heapq
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import InvalidArgumentError
from .events import AuditEvent, AuditEventType, coerce_event_type, to_utc

__all__ = ["QueryFilter", "QueryReport"]


@dataclass
class QueryReport:
    """What a query skipped. ``problems`` lists ``(segment, line number, reason)``, at most 100."""

    segments: int = 0
    lines: int = 0
    torn_lines: int = 0
    invalid_lines: int = 0
    other_records: int = 0
    unreadable_segments: int = 0
    problems: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, segment: str, line: int, reason: str) -> None:
        if len(self.problems) < 100:
            self.problems.append((segment, line, reason))

    @property
    def skipped_lines(self) -> int:
        """Torn plus invalid lines."""
        return self.torn_lines + self.invalid_lines


@dataclass
class QueryFilter:
    """The documented query filters; time bounds are inclusive and naive datetimes are UTC."""

    start_time: datetime | None = None
    end_time: datetime | None = None
    event_type: AuditEventType | None = None
    user_id: str | None = None
    item_id: str | None = None
    limit: int | None = 100

    @classmethod
    def build(  # noqa: PLR0917 - internal
        cls,
        start_time: datetime | str | None,
        end_time: datetime | str | None,
        event_type: AuditEventType | str | None,
        user_id: str | None,
        item_id: str | None,
        resource_id: str | None,
        limit: int | None,
    ) -> QueryFilter:
        if item_id is not None and resource_id is not None and item_id != resource_id:
            raise InvalidArgumentError(
                f"resource_id={resource_id!r} contradicts item_id={item_id!r}"
            )
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidArgumentError(f"limit={limit!r} must be a non-negative int or None")
        return cls(
            start_time=None if start_time is None else to_utc(start_time, "start_time"),
            end_time=None if end_time is None else to_utc(end_time, "end_time"),
            event_type=None if event_type is None else coerce_event_type(event_type),
            user_id=user_id,
            item_id=item_id if item_id is not None else resource_id,
            limit=limit,
        )

    def matches(self, event: AuditEvent) -> bool:
        if self.event_type is not None and event.event_type is not self.event_type:
            return False
        ts = event.timestamp
        if self.start_time is not None and ts < self.start_time:
            return False
        if self.end_time is not None and ts > self.end_time:
            return False
        if self.user_id is not None and event.user_id != self.user_id:
            return False
        return self.item_id is None or event.item_id == self.item_id

    def select(self, candidates: Iterator[tuple[Any, AuditEvent]]) -> list[AuditEvent]:
        """The newest matches first (ties: later written first), at most ``limit``."""
        matching = ((key, event) for key, event in candidates if self.matches(event))
        if self.limit is None:
            ranked = sorted(matching, key=lambda pair: pair[0], reverse=True)
        else:
            ranked = heapq.nlargest(self.limit, matching, key=lambda pair: pair[0])
        return [event for _, event in ranked]


def _open_segment(path: str, compressed: bool) -> Any:
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def parse_line(raw: bytes, text_format: bool) -> tuple[str, Any]:
    """Classifies one line: ``("event", AuditEvent)``, ``("other", None)``, ``("torn", reason)``
    or ``("invalid", reason)``."""
    payload = raw
    if text_format:
        tab = raw.find(b"\t")
        if tab < 0:
            return "torn", "no JSON record after the readable prefix"
        payload = raw[tab + 1 :]
    try:
        data = json.loads(payload)
    except ValueError as error:
        return "torn", f"not a complete JSON record ({error})"
    if not isinstance(data, dict):
        return "invalid", "not a JSON object"
    if "_type" in data:
        return "other", None
    try:
        return "event", AuditEvent.from_dict(data)
    except (InvalidArgumentError, TypeError, ValueError) as error:
        return "invalid", str(error)


def iter_events(
    segments: list[tuple[str, str, str, bool]], text_format: bool, report: QueryReport
) -> Iterator[tuple[tuple[datetime, int, int], AuditEvent]]:
    """Every event of ``segments`` (oldest first) with a sort key (timestamp, segment, line).

    A segment found both plain and compressed (its compression was interrupted after the
    ``.gz`` was complete, before the plain file was removed) is read once, from the plain file.
    """
    plain = {path for path, _day, _stamp, compressed in segments if not compressed}
    segments = [s for s in segments if not (s[3] and s[0].removesuffix(".gz") in plain)]
    for index, (path, _day, _stamp, compressed) in enumerate(segments):
        try:
            handle = _open_segment(path, compressed)
        except FileNotFoundError:
            # Compressed (or pruned) between listing and reading: read the compressed copy.
            try:
                handle = _open_segment(path + ".gz", True)
            except OSError as error:
                report.unreadable_segments += 1
                report.add(path, 0, f"unreadable: {error}")
                continue
        except OSError as error:
            report.unreadable_segments += 1
            report.add(path, 0, f"unreadable: {error}")
            continue
        report.segments += 1
        number = 0
        try:
            with handle:
                for number, raw in enumerate(handle, 1):
                    if not raw.strip():
                        continue
                    report.lines += 1
                    kind, value = parse_line(raw, text_format)
                    if kind == "event":
                        yield (value.timestamp, index, number), value
                    elif kind == "other":
                        report.other_records += 1
                    elif kind == "torn":
                        report.torn_lines += 1
                        report.add(path, number, value)
                    else:
                        report.invalid_lines += 1
                        report.add(path, number, value)
        except (OSError, EOFError, zlib.error) as error:
            report.unreadable_segments += 1
            report.add(path, number, f"unreadable: {error}")
