"""``verify``: checks a tamper-evident audit log against its key and reports every finding.

A chained log (``FileAuditBackend``/``JsonAuditBackend`` with an integrity key) is a sequence of
*links*: each line carries ``"seq"`` (0, 1, 2, ... across every segment and writer) and
``"mac" = HMAC-SHA256(key, previous MAC || the line up to the MAC)``. Checkpoints are links too
(``"_type":"checkpoint"``); every segment starts with one, and one is written at least every
``checkpoint_interval_seconds``, at every writer start, rotation, retention and close.

``verify`` reads every segment (plain or gzip) in order and reports, each with the file and the
line number:

- ``modified``: a record whose MAC does not match its content (a changed byte);
  ``checkpoint_modified`` for a checkpoint;
- ``deleted``: missing sequence numbers (deleted records, or records cut from a segment's end);
  ``deleted_segment`` when whole segments are missing (at the start of the log unless a
  ``retention`` checkpoint says they were pruned); ``checkpoint_deleted`` when a checkpoint no
  longer names its predecessor;
- ``reordered``: a record found before its predecessor (it verifies once put back in order);
- ``inserted``: a line that is not a link (no MAC) or repeats a sequence number;
- ``damaged``: an unreadable line that is not the torn last line of a killed writer;
- ``truncated``: the log does not end with a ``close`` checkpoint (or, for a live log, its newest
  checkpoint is older than two intervals), or a writer found records missing when it restarted;
- ``head_missing``: the log's lock file (``.<name>.lock``, holding the writers' MAC-protected
  chain head) is gone, so a cut back to an earlier ``close`` checkpoint could not be seen
  (``require_head=False`` makes it a note, for copies shipped without the lock file);
  ``head_invalid``: the head is unreadable or its MAC does not verify;
- ``no_log``: a path holds no audit log at all (``deleted_segment`` when only the lock file of a
  log is left);
- ``wrong_key``: the log was sealed with another key; ``unreadable``; ``not_chained``.

A writer restart (a new ``open`` checkpoint, and after a crash the torn line it left followed by
a ``recover``/``open`` checkpoint) is reported in ``notes``, not as a finding.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import hmac
import json
import os
import re
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError

__all__ = ["DEFAULT_KEY_ENV", "Finding", "VerifyReport", "load_key", "verify", "verify_main"]

#: The environment variable ``verify`` (and the CLI) read the key from by default.
DEFAULT_KEY_ENV = "TRUTHOUND_AUDIT_KEY"

_MAC_SUFFIX_LEN = 74
_ZERO = bytes(32)
_HEX = frozenset(b"0123456789abcdef")
_STAMP = re.compile(r"\.(\d{8}T\d{12}Z)$")
_DATE = re.compile(r"-(\d{4}-\d{2}-\d{2})$")
_LOCK = re.compile(r"^\.(.+)\.lock$")
#: How often ``verify(live=True)`` reads a log whose segments a writer rotated meanwhile.
_LIVE_ATTEMPTS = 5
#: How many links may arrive ahead of their predecessor before the gap is declared.
_WINDOW = 4096


@dataclass(frozen=True)
class Finding:
    """One problem: its kind (see the module docs), where, and a sentence saying what."""

    kind: str
    segment: str
    line: int
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.segment}:{self.line}" if self.line else self.segment
        return f"{where}: {self.kind}: {self.message}"


@dataclass
class VerifyReport:
    """What ``verify`` found. ``ok`` is true when there is no finding."""

    logs: list[str] = field(default_factory=list)
    segments: int = 0
    records: int = 0
    checkpoints: int = 0
    writer_starts: int = 0
    recoveries: int = 0
    pruned_segments: list[str] = field(default_factory=list)
    #: Records after the newest checkpoint (the unsealed window).
    unsealed_records: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def kinds(self) -> set[str]:
        """The kinds of the findings."""
        return {finding.kind for finding in self.findings}


def load_key(key: bytes | str | None = None, key_env: str | None = None) -> bytes:
    """The key as bytes: ``key`` itself (a ``str`` is UTF-8 encoded), else the value of the
    environment variable ``key_env``. Raises ``InvalidArgumentError`` naming the source when
    there is none or it is shorter than 16 bytes."""
    if key is not None:
        source = "integrity_key"
        raw = key.encode() if isinstance(key, str) else bytes(key)
    elif key_env:
        source = f"environment variable {key_env}"
        value = os.environ.get(key_env)
        if not value:
            raise InvalidArgumentError(f"{source!r}: is not set (it must hold the audit key)")
        raw = value.encode()
    else:
        raise InvalidArgumentError("'integrity_key': no key given and no environment variable")
    if len(raw) < 16:
        raise InvalidArgumentError(f"{source!r}: an audit integrity key needs at least 16 bytes")
    return raw


# ---- finding the segments of a log -----------------------------------------------------------


def _split_name(name: str) -> tuple[str, str, str, str, bool] | None:
    """``(stem, suffix, date, stamp, compressed)`` of a segment file name."""
    if name.startswith(".") or ".tmp-" in name:
        return None
    compressed = name.endswith(".gz")
    base = name[:-3] if compressed else name
    stamp_match = _STAMP.search(base)
    if stamp_match is not None:
        suffix = ""
    else:
        root, suffix = os.path.splitext(base)
        base = root
        stamp_match = _STAMP.search(base)
    stamp = ""
    if stamp_match is not None:
        stamp = stamp_match.group(1)
        base = base[: stamp_match.start()]
    date = ""
    date_match = _DATE.search(base)
    if date_match is not None:
        date = date_match.group(1)
        base = base[: date_match.start()]
    if not base:
        return None
    return base, suffix, date, stamp, compressed


_LogKey = tuple[str, str, str]


def _log_of_lock(directory: Path, name: str) -> _LogKey | None:
    """The log whose lock file (``.<stem><suffix>.lock``) ``name`` is, if it is one."""
    lock = _LOCK.match(name)
    parts = _split_name(lock.group(1)) if lock is not None else None
    if parts is None or any(parts[2:]) or not (directory / name).is_file():
        return None
    return str(directory), parts[0], parts[1]


def _discover(
    paths: Sequence[str | os.PathLike[str]],
) -> tuple[dict[_LogKey, list[Any]], list[tuple[str, set[_LogKey]]]]:
    """The segments of every log at ``paths`` (a log known only by its lock file has none), and
    which logs each path names."""
    logs: dict[_LogKey, list[Any]] = {}
    named: list[tuple[str, set[_LogKey]]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            directory, names = path, None
        else:
            directory, names = path.parent, {path.name}
        try:
            entries = sorted(os.listdir(directory))
        except OSError as error:
            raise InvalidArgumentError(
                f"{str(path)!r}: cannot list the audit directory: {error}"
            ) from None
        if names is not None and not path.is_file():
            raise InvalidArgumentError(f"{str(path)!r}: no such audit file")
        wanted: set[_LogKey] = set()
        for name in entries:
            if name.startswith("."):
                # The lock file outlives a deleted log: its chain head says the log existed.
                log_of_lock = _log_of_lock(directory, name) if names is None else None
                if log_of_lock is not None:
                    wanted.add(log_of_lock)
                    logs.setdefault(log_of_lock, [])
                continue
            parts = _split_name(name)
            if parts is None or not (directory / name).is_file():
                continue
            log = (str(directory), parts[0], parts[1])
            if names is None or name in names:
                wanted.add(log)
            logs.setdefault(log, []).append(
                (parts[2], parts[3] or "~", parts[4], str(directory / name))
            )
        named.append((str(path), wanted))
    every: set[_LogKey] = set().union(*(wanted for _path, wanted in named))
    result = {}
    for log, segs in logs.items():
        if log in every:
            # A segment whose compression was interrupted after the rename may exist in both
            # forms (identical content): read the plain one.
            plain = {path for _d, _s, compressed, path in segs if not compressed}
            result[log] = sorted(s for s in segs if not (s[2] and s[3][:-3] in plain))
    return result, named


# ---- reading links ---------------------------------------------------------------------------


@dataclass
class _Link:
    position: int
    segment: int
    path: str
    line: int
    seq: int
    mac: bytes
    body: bytes
    checkpoint: dict[str, Any] | None


def _parse(raw: bytes) -> tuple[int, bytes, bytes, bool] | None:
    line = raw[:-1] if raw.endswith(b"\n") else raw
    if len(line) < _MAC_SUFFIX_LEN + 8 or not line.endswith(b'"}'):
        return None
    cut = len(line) - _MAC_SUFFIX_LEN
    suffix = line[cut:]
    digits = suffix[8:72]
    if not suffix.startswith(b',"mac":"') or not _HEX.issuperset(digits):
        return None
    body = line[:cut]
    marker = body.rfind(b',"seq":')
    number = body[marker + 7 :] if marker >= 0 else b""
    if not number.isdigit() or not number.isascii():
        return None
    payload = body
    tab = body.find(b"\t")
    if tab >= 0 and not body.startswith(b"{"):
        payload = body[tab + 1 :]
    return (
        int(number),
        bytes.fromhex(digits.decode()),
        body,
        payload.startswith(b'{"_type":"checkpoint"'),
    )


def _json_part(raw: bytes) -> Any:
    payload = raw
    if not raw.startswith(b"{"):
        tab = raw.find(b"\t")
        if tab >= 0:
            payload = raw[tab + 1 :]
    try:
        return json.loads(payload)
    except ValueError:
        return None


class _Log:
    """Verification state of one log (a group of segments)."""

    def __init__(
        self,
        name: str,
        key: bytes,
        live: bool,
        report: VerifyReport,
        *,
        head: _HeadState,
        require_head: bool,
    ) -> None:
        self.name = name
        self.base = hmac.new(key, digestmod=hashlib.sha256)
        probe = self.base.copy()
        probe.update(b"truthound-audit key id")
        self.key_id = probe.hexdigest()[:16]
        self.live = live
        self.report = report
        self.findings: list[Finding] = []
        self.expected: int | None = None
        self.prev_mac = _ZERO
        self.prev_failed = False
        self.last: _Link | None = None
        self.pending: dict[int, _Link] = {}
        self.first_seq: int | None = None
        self.segment_first: dict[int, int] = {}
        self.last_checkpoint_mac: bytes | None = None
        self.last_checkpoint: _Link | None = None
        self.since_checkpoint = 0
        self.retained_first_seq: int | None = None
        self.torn: list[tuple[str, int]] = []
        self.wrong_key = False
        self.links = 0
        #: The kind of the gap reported just before the link being accepted, if any.
        self.gap_kind: str | None = None
        #: The writers' (MAC-protected) chain head: the next sequence number they will write.
        self.head = head
        self.require_head = require_head

    def finding(self, kind: str, link: _Link | None, message: str, seq: int | None = None) -> None:
        if link is None:
            self.findings.append(Finding(kind, self.name, 0, seq, message))
        else:
            self.findings.append(
                Finding(kind, link.path, link.line, link.seq if seq is None else seq, message)
            )

    def mac_of(self, prev: bytes, body: bytes) -> bytes:
        mac = self.base.copy()
        mac.update(prev)
        mac.update(body)
        return mac.digest()

    # -- line by line --

    def non_link(self, path: str, number: int, raw: bytes) -> None:
        data = _json_part(raw)
        if isinstance(data, dict):
            kind = "inserted"
            message = "a record without a sequence number and MAC (not written by a keyed writer)"
            self.findings.append(Finding(kind, path, number, None, message))
        else:
            # Torn (a killed writer) if a restart checkpoint follows; decided at the next link.
            self.torn.append((path, number))

    def link(self, link: _Link) -> None:
        self.links += 1
        if self.torn:
            restart = (
                link.checkpoint is not None
                and link.checkpoint.get("reason") in ("open", "recover")
                and (self.expected is None or link.seq == self.expected)
            )
            for path, number in self.torn:
                if restart:
                    self.report.notes.append(
                        f"{path}:{number}: torn line left by a killed writer (the next writer "
                        "recovered the chain)"
                    )
                else:
                    self.findings.append(
                        Finding("damaged", path, number, None, "an unreadable line (not a link)")
                    )
            self.torn.clear()
        if link.checkpoint is not None and self.last_checkpoint is None:
            key_id = link.checkpoint.get("key_id")
            if key_id != self.key_id:
                self.wrong_key = True
                self.finding(
                    "wrong_key",
                    link,
                    f"sealed with key {key_id!r}, not with the given key ({self.key_id})",
                )
                return
        if self.expected is None:
            self.first_seq = link.seq
            self.accept(link, verify=link.seq == 0)
        elif link.seq == self.expected:
            self.accept(link, verify=True)
        elif link.seq > self.expected:
            self.pending[link.seq] = link
            if len(self.pending) > _WINDOW:
                self.resolve_gap()
        else:
            self.finding(
                "inserted",
                link,
                f"sequence number {link.seq} repeats or goes back (expected {self.expected})",
            )
        self.drain()

    def drain(self) -> None:
        while self.expected is not None and self.expected in self.pending:
            self.accept(self.pending.pop(self.expected), verify=True)

    def resolve_gap(self) -> None:
        assert self.expected is not None
        lowest = min(self.pending)
        link = self.pending.pop(lowest)
        self.gap_kind = self.report_gap(self.expected, lowest - 1, link)
        self.accept(link, verify=False)
        self.gap_kind = None
        self.drain()

    def report_gap(self, first: int, last: int, after: _Link) -> str:
        count = last - first + 1
        span = f"{first}" if count == 1 else f"{first}..{last}"
        previous = self.last
        cp = after.checkpoint
        if (
            previous is not None
            and cp is not None
            and cp.get("reason") == "rotate"
            and after.segment != previous.segment
        ):
            records = int(cp.get("segment_records", 0))
            previous_first = self.segment_first.get(previous.segment)
            if previous_first is not None and previous_first == after.seq - records:
                self.finding(
                    "deleted",
                    after,
                    f"{count} record(s) (seq {span}) cut from the end of {previous.path}",
                    seq=first,
                )
                return "deleted"
            self.finding(
                "deleted_segment",
                after,
                f"segment(s) holding seq {span} ({count} record(s)) are missing before "
                f"{after.path}",
                seq=first,
            )
            return "deleted_segment"
        self.finding(
            "deleted",
            after,
            f"{count} record(s) missing (seq {span}) before this one",
            seq=first,
        )
        return "deleted"

    def accept(self, link: _Link, *, verify: bool) -> None:
        # Found in the file before the link it follows in the chain.
        early = self.last is not None and self.last.position > link.position
        if verify:
            good = self.mac_of(self.prev_mac, link.body) == link.mac
            if not good:
                kind = "checkpoint_modified" if link.checkpoint is not None else "modified"
                what = "checkpoint" if link.checkpoint is not None else "record"
                self.finding(kind, link, f"the {what}'s MAC does not match its content")
            elif early:
                self.finding(
                    "reordered",
                    link,
                    f"record seq {link.seq} appears before seq {link.seq - 1} (it verifies in "
                    "sequence order)",
                )
        self.segment_first.setdefault(link.segment, link.seq)
        self.prev_mac = link.mac
        self.expected = link.seq + 1
        self.last = link
        if link.checkpoint is None:
            self.report.records += 1
            self.since_checkpoint += 1
        else:
            self.checkpoint(link, verified=verify)

    def checkpoint(self, link: _Link, *, verified: bool) -> None:
        cp = link.checkpoint
        assert cp is not None
        self.report.checkpoints += 1
        self.since_checkpoint = 0
        reason = cp.get("reason")
        prev = cp.get("prev_checkpoint", "")
        # Right after a gap the checkpoint's own MAC cannot be checked, but whether the gap
        # swallowed a checkpoint can (a missing segment swallows its checkpoints by definition).
        if (
            (verified or self.gap_kind == "deleted")
            and self.last_checkpoint_mac is not None
            and prev != self.last_checkpoint_mac.hex()
        ):
            self.finding(
                "checkpoint_deleted",
                link,
                "this checkpoint does not follow the previous one found (a checkpoint between "
                "them is missing)",
            )
        self.last_checkpoint_mac = link.mac
        self.last_checkpoint = link
        if reason == "open":
            self.report.writer_starts += 1
        elif reason == "recover":
            self.report.recoveries += 1
        elif reason == "retention":
            self.report.pruned_segments.extend(str(n) for n in cp.get("pruned", []))
            first = cp.get("retained_first_seq")
            if isinstance(first, int):
                self.retained_first_seq = first
        missing = cp.get("missing", 0)
        if isinstance(missing, int) and missing > 0:
            self.finding(
                "truncated",
                link,
                f"the writer found {missing} record(s) missing from the end of the log when it "
                f"continued the chain ({reason})",
            )

    def check_head(self) -> None:
        # Only the head can tell a log cut back to an earlier close checkpoint from an intact
        # one (the cut-off end is a genuine, sealed close), so a log without it cannot pass.
        head = self.head
        if head.problem is None:
            return
        if head.problem == "head_missing" and not self.require_head:
            self.report.notes.append(
                f"{head.lock}: no lock file (require_head=False): a cut back to an earlier close "
                "checkpoint cannot be detected without the chain head"
            )
            return
        self.findings.append(
            Finding(
                head.problem,
                str(head.lock),
                0,
                None,
                f"{head.reason}: the chain head of {self.name} cannot be cross-checked, so a cut "
                "back to an earlier close checkpoint would go unseen",
            )
        )

    def finish(self) -> None:
        if self.wrong_key:
            return
        while self.pending:
            self.resolve_gap()
        for path, number in self.torn:
            self.findings.append(
                Finding("damaged", path, number, None, "an unreadable line (not a link)")
            )
        if self.last is None:
            self.findings.append(
                Finding("not_chained", self.name, 0, None, "no sealed record in this log")
            )
            return
        if self.first_seq:
            if self.retained_first_seq == self.first_seq:
                self.report.notes.append(
                    f"{self.name}: records before seq {self.first_seq} were pruned by retention"
                )
            else:
                self.findings.append(
                    Finding(
                        "deleted_segment",
                        self.name,
                        0,
                        0,
                        f"the log starts at seq {self.first_seq}: the segment(s) before it are "
                        "missing and no retention checkpoint accounts for them",
                    )
                )
        self.report.unsealed_records += self.since_checkpoint
        self.check_head()
        last, cp = self.last, self.last.checkpoint
        head = self.head.next_seq
        if head is not None and head > last.seq + 1:
            self.findings.append(
                Finding(
                    "truncated",
                    last.path,
                    last.line,
                    last.seq,
                    f"the log ends at seq {last.seq}, but the writers' chain head (in the lock "
                    f"file) says seq {head - 1} was written: its tail was cut",
                )
            )
            return
        if cp is not None and cp.get("reason") == "close":
            return
        if self.live and self.last_checkpoint is not None:
            lcp = self.last_checkpoint.checkpoint or {}
            interval = int(lcp.get("interval_ms", 0)) / 1000.0
            try:
                written = datetime.fromisoformat(str(lcp.get("time"))).timestamp()
            except ValueError:
                written = 0.0
            if interval <= 0 or time.time() - written <= 2 * interval:
                self.report.notes.append(
                    f"{self.name}: live log, {self.since_checkpoint} record(s) after the newest "
                    "checkpoint are not sealed yet"
                )
                return
        self.findings.append(
            Finding(
                "truncated",
                last.path,
                last.line,
                last.seq,
                f"the log ends at seq {last.seq} without a close checkpoint; "
                f"{self.since_checkpoint} record(s) after the newest checkpoint are unsealed and "
                "its tail may have been cut",
            )
        )


def _open(path: str, compressed: bool, live: bool) -> tuple[str, Any]:
    """The segment's path and an open binary handle on its lines."""
    try:
        return path, gzip.open(path, "rb") if compressed else open(path, "rb")
    except FileNotFoundError:
        if compressed or not live:
            raise
    # A writer compressed it since it was listed (the same content under ``.gz``).
    return f"{path}.gz", gzip.open(f"{path}.gz", "rb")


def _lines(handle: Any) -> Iterator[bytes]:
    with handle:
        yield from handle


_HEAD = struct.Struct("<8sQ")
_HEAD_MAGIC = b"TACHAIN1"


@dataclass(frozen=True)
class _HeadState:
    """What the log's lock file says about the chain head."""

    lock: Path
    #: The next sequence number, when the head is there and its MAC verifies.
    next_seq: int | None = None
    #: ``head_missing`` or ``head_invalid`` when there is no usable head, with the reason.
    problem: str | None = None
    reason: str = ""
    #: The file holds a chain head at all (a keyed writer used it), authentic or not.
    present: bool = False


def _read_head(lock_path: Path, key: bytes) -> _HeadState:
    """The chain head in the log's lock file: the next sequence number if its MAC verifies,
    else why it cannot be used."""
    try:
        data = lock_path.read_bytes()
    except FileNotFoundError:
        return _HeadState(lock_path, problem="head_missing", reason="the lock file is missing")
    except OSError as error:
        return _HeadState(lock_path, problem="head_invalid", reason=f"unreadable: {error}")
    if not data.startswith(_HEAD_MAGIC):
        return _HeadState(lock_path, problem="head_invalid", reason="it holds no chain head")
    if len(data) < 160:
        return _HeadState(
            lock_path, problem="head_invalid", reason="its chain head is cut short", present=True
        )
    mac = hmac.new(key, b"truthound-audit head" + data[:128], hashlib.sha256).digest()
    if not hmac.compare_digest(mac, data[128:160]):
        return _HeadState(
            lock_path,
            problem="head_invalid",
            reason="its chain head's MAC does not verify (edited, or sealed with another key)",
            present=True,
        )
    return _HeadState(lock_path, next_seq=int(_HEAD.unpack(data[:16])[1]), present=True)


def _verify_log(
    name: str,
    segments: list[Any],
    key: bytes,
    report: VerifyReport,
    *,
    live: bool,
    head: _HeadState,
    require_head: bool,
    relist: Callable[[], list[Any]] | None = None,
) -> None:
    log = _Log(name, key, live, report, head=head, require_head=require_head)
    position = 0
    pending = list(segments)
    index = 0
    while pending:
        date, stamp, compressed, path = pending.pop(0)
        report.segments += 1
        number = 0
        try:
            path, handle = _open(path, compressed, live)
            for number, raw in enumerate(_lines(handle), 1):
                if not raw.strip():
                    continue
                parsed = _parse(raw)
                if parsed is None:
                    log.non_link(path, number, raw)
                    continue
                seq, mac, body, is_checkpoint = parsed
                checkpoint = None
                if is_checkpoint:
                    data = _json_part(body + b"}")
                    checkpoint = data if isinstance(data, dict) else {}
                position += 1
                log.link(_Link(position, index, path, number, seq, mac, body, checkpoint))
                if log.wrong_key:
                    break
        except (OSError, EOFError, zlib.error) as error:
            log.findings.append(Finding("unreadable", path, number, None, str(error)))
        if log.wrong_key:
            break
        index += 1
        if relist is not None:
            # Follow the log as it is now: a writer may have rotated the active segment (it is
            # listed under its new name, ahead of the new active one) since it was listed.
            pending = [s for s in relist() if (s[0], s[1]) > (date, stamp)]
    log.finish()
    report.findings.extend(log.findings)


def _deleted_log(name: str, head: _HeadState, report: VerifyReport) -> None:
    if head.problem is not None:
        report.findings.append(Finding(head.problem, str(head.lock), 0, None, head.reason))
    written = "" if head.next_seq is None else f" ({head.next_seq} link(s) written)"
    report.findings.append(
        Finding(
            "deleted_segment",
            name,
            0,
            0,
            f"no segment of this log exists, but its lock file {head.lock} holds a chain "
            f"head{written}: the log was deleted",
        )
    )


def _merge(report: VerifyReport, part: VerifyReport) -> None:
    report.segments += part.segments
    report.records += part.records
    report.checkpoints += part.checkpoints
    report.writer_starts += part.writer_starts
    report.recoveries += part.recoveries
    report.unsealed_records += part.unsealed_records
    report.pruned_segments.extend(part.pruned_segments)
    report.findings.extend(part.findings)
    report.notes.extend(part.notes)


def _check_log(
    log: _LogKey,
    segments: list[Any],
    key: bytes,
    report: VerifyReport,
    *,
    live: bool,
    require_head: bool,
) -> bool:
    """Verifies one log into ``report``; false when there is no log (an unused lock file)."""
    directory, stem, suffix = log
    name = str(Path(directory) / f"{stem}{suffix}")
    lock = Path(directory) / f".{stem}{suffix}.lock"
    attempt = 1
    while True:
        # Read before the segments: writers only move the head forward while we read.
        head = _read_head(lock, key)
        part = VerifyReport()
        if segments:
            _verify_log(
                name,
                segments,
                key,
                part,
                live=live,
                head=head,
                require_head=require_head,
                relist=(lambda: _discover([directory])[0].get(log, [])) if live else None,
            )
        elif head.present:
            _deleted_log(name, head, part)
        else:
            return False
        if not live or part.ok or attempt == _LIVE_ATTEMPTS:
            break
        # A writer rotating or compressing a segment while it was read makes a real segment look
        # missing or vanish: if the log changed under the scan, read it again; findings that
        # persist over a scan nothing raced with are real.
        again = _discover([directory])[0].get(log, [])
        if again == segments and _read_head(lock, key) == head:
            break
        segments = again
        attempt += 1
    report.logs.append(name)
    _merge(report, part)
    if attempt > 1:
        report.notes.append(
            f"{name}: read {attempt} times (writers rotated or compressed segments meanwhile)"
        )
    return True


def verify(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    key: bytes | str | None = None,
    *,
    key_env: str | None = DEFAULT_KEY_ENV,
    live: bool = False,
    require_head: bool = True,
) -> VerifyReport:
    """Verifies the tamper-evident audit logs at ``paths`` (directories: every log in them;
    files: the log each belongs to, all its segments included).

    ``key``: the integrity key (else read from ``key_env``). ``live=False`` (default) treats the
    logs as at rest, so a log must end with a ``close`` checkpoint; ``live=True`` accepts an
    unsealed tail as long as the newest checkpoint is younger than two checkpoint intervals, and
    reads a log again (up to 5 times) when writers rotated or compressed segments during the scan.

    Each log's chain head (in its lock file ``.<name>.lock``) is required: it is what shows a log
    cut back to an earlier, genuine ``close`` checkpoint. A missing lock file is a
    ``head_missing`` finding, an unreadable or unauthentic head a ``head_invalid`` one.
    ``require_head=False`` is for copies shipped without the lock file: a missing one is then
    only a note, and truncation back to an earlier close checkpoint **cannot be detected**.

    A path that holds no audit log (no segment, no lock file with a chain head) is a ``no_log``
    finding. Returns a ``VerifyReport``; ``report.ok`` is true when nothing is wrong.
    """
    secret = load_key(key, key_env)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    report = VerifyReport()
    logs, named = _discover(paths)
    found = set()
    for log, segments in sorted(logs.items()):
        if _check_log(log, segments, secret, report, live=live, require_head=require_head):
            found.add(log)
    for path, wanted in named:
        if not wanted & found:
            report.findings.append(
                Finding(
                    "no_log",
                    path,
                    0,
                    None,
                    "holds no audit log (no segment, no lock file with a chain head): deleted, "
                    "or the wrong path",
                )
            )
    return report


def verify_main(argv: Sequence[str] | None = None) -> int:
    """``truthound-obs audit verify PATH...``: prints the findings; exit status 0 when every log
    verifies, 1 when anything is wrong, 2 for a usage or key error."""
    parser = argparse.ArgumentParser(
        prog="truthound-obs audit verify",
        description="Verify tamper-evident audit logs (sequence numbers, chained HMACs, "
        "checkpoints).",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="an audit file or directory")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--key-env",
        default=DEFAULT_KEY_ENV,
        metavar="NAME",
        help=f"environment variable holding the key (default {DEFAULT_KEY_ENV})",
    )
    source.add_argument("--key-file", metavar="FILE", help="file holding the key")
    parser.add_argument(
        "--live", action="store_true", help="the writers may still be running (see the docs)"
    )
    parser.add_argument(
        "--without-head",
        action="store_true",
        help="the lock files were not copied: a missing chain head is only a note (a cut back "
        "to an earlier close checkpoint then goes unseen)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0) if not isinstance(stop.code, str) else 2
    try:
        key: bytes | None = None
        if args.key_file:
            key = Path(args.key_file).read_bytes().rstrip(b"\r\n")
        report = verify(
            args.paths,
            key,
            key_env=args.key_env,
            live=args.live,
            require_head=not args.without_head,
        )
    except (InvalidArgumentError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        payload = {
            "ok": report.ok,
            "logs": report.logs,
            "segments": report.segments,
            "records": report.records,
            "checkpoints": report.checkpoints,
            "writer_starts": report.writer_starts,
            "recoveries": report.recoveries,
            "pruned_segments": report.pruned_segments,
            "unsealed_records": report.unsealed_records,
            "findings": [f.__dict__ for f in report.findings],
            "notes": report.notes,
        }
        print(json.dumps(payload, indent=2))
    else:
        for finding in report.findings:
            print(finding)
        for note in report.notes:
            print(f"note: {note}")
        status = "OK" if report.ok else f"FAILED ({len(report.findings)} finding(s))"
        print(
            f"{status}: {len(report.logs)} log(s), {report.segments} segment(s), "
            f"{report.records} record(s), {report.checkpoints} checkpoint(s), "
            f"{report.writer_starts} writer start(s)"
        )
    return 0 if report.ok else 1
