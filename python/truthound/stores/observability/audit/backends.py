"""Audit backends: memory, human-readable file, JSON Lines, composite and async.

Fork safety (gunicorn ``--preload``, uWSGI, ``multiprocessing``): every backend can be created
in a parent and used in forked children at once. No lock held by another thread at the fork
blocks the child; every thread the parent ran (the async writer, composite delivery workers,
checkpoint timer, compression) is started again in the child when it first needs it; events
the parent had queued but not written are written by the parent, once. Components that deliver
events (``AsyncAuditBackend``, the file/JSON backends, ``CompositeAuditBackend``,
``OtlpAuditBackend``) count per process: a child's delivery counters start at zero.
``InMemoryAuditBackend`` is a plain copy in the child (the parent's events included). A child's
pending async events are written when it exits (``atexit``, or the end of a
``multiprocessing`` child, which skips ``atexit``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import _core, _fork
from .._bounded import Worker, call_with_timeout
from ..config import AuditConfig, AuditLogLevel
from ..errors import InvalidArgumentError
from .events import AuditEvent, AuditEventType
from .reader import QueryFilter, QueryReport, iter_events
from .redaction import DataRedactor

__all__ = [
    "AsyncAuditBackend",
    "CompositeAuditBackend",
    "FileAuditBackend",
    "InMemoryAuditBackend",
    "JsonAuditBackend",
]

_MINIMAL = frozenset(
    {
        AuditEventType.CREATE,
        AuditEventType.UPDATE,
        AuditEventType.DELETE,
        AuditEventType.BATCH_CREATE,
        AuditEventType.BATCH_DELETE,
        AuditEventType.ERROR,
        # Recorded at every level: an auditor must always see access decisions and validation
        # failures.
        AuditEventType.ACCESS_DENIED,
        AuditEventType.ACCESS_GRANTED,
        AuditEventType.VALIDATION_ERROR,
    }
)


def _excluded(level: AuditLogLevel) -> frozenset[str]:
    """Event type values a level does not record."""
    if level is AuditLogLevel.MINIMAL:
        return frozenset(t.value for t in AuditEventType if t not in _MINIMAL)
    if level is AuditLogLevel.STANDARD:
        return frozenset({AuditEventType.INITIALIZE.value, AuditEventType.CLOSE.value})
    return frozenset()


class _Backend:
    """Config handling shared by the backends: the level filter and config-driven redaction.

    Leaf backends (memory, file, JSON) apply ``AuditConfig()``'s defaults when no config is given
    (``STANDARD`` level, redaction of the default sensitive fields and patterns). Wrappers
    (composite, async) apply a config only when one is given explicitly; otherwise they leave the
    decision to the backends they wrap.
    """

    _leaf = True

    def __init__(self, config: AuditConfig | None) -> None:
        if config is not None and not isinstance(config, AuditConfig):
            raise InvalidArgumentError(f"config={config!r} must be an AuditConfig")
        applies = config is not None or self._leaf
        self._config_given = config is not None
        self.config = config if config is not None else AuditConfig()
        self._level_excluded: frozenset[str] = (
            _excluded(self.config.level) if applies else frozenset()
        )
        self.redactor: DataRedactor | None = (
            DataRedactor(sensitive_fields=self.config.sensitive_fields)
            if applies and self.config.redact_sensitive
            else None
        )
        #: Events not recorded because the configured level excludes their type (by design).
        self.filtered_events = 0

    def _accepts(self, event: AuditEvent) -> bool:
        if event.event_type.value in self._level_excluded:
            self.filtered_events += 1
            return False
        return True

    def healthy(self, timeout: float = 5.0) -> bool:
        """Whether the backend can record an event now (used by fail-closed loggers)."""
        return True


# One reused probe thread per custom backend (fail-closed asks before every operation: a thread
# started per probe would cost more than most operations).
_PROBES: weakref.WeakKeyDictionary[Any, Worker] = weakref.WeakKeyDictionary()
_PROBES_LOCK = threading.Lock()
_fork.track(sys.modules[__name__], "_PROBES_LOCK")


def _probe_worker(backend: Any) -> Worker | None:
    """The probe thread of ``backend`` (``None`` when it cannot be weakly referenced)."""
    try:
        with _PROBES_LOCK:
            worker = _PROBES.get(backend)
            if worker is None:
                worker = _PROBES[backend] = Worker("truthound-audit-health")
                weakref.finalize(backend, worker.stop)
    except TypeError:  # unhashable, or not weak-referenceable
        return None
    return worker


def backend_healthy(backend: Any, timeout: float = 5.0) -> bool:
    """Whether ``backend`` can record an event now, deciding within ``timeout`` seconds.

    The built-in backends answer without blocking; any other backend is asked through its
    ``healthy()`` method (if it has one; without one it is assumed able to record) on its probe
    thread (one per backend, reused), and counts as unavailable when it raises, returns
    ``False``, does not answer in time, or is still stuck in an earlier probe.
    """
    if isinstance(backend, _Backend):
        return backend.healthy(timeout)
    probe = getattr(backend, "healthy", None)
    if probe is None:
        return True
    worker = _probe_worker(backend)
    if worker is None:
        return call_with_timeout(probe, timeout, "truthound-audit-health").succeeded
    if worker.hung(timeout):
        return False
    return worker.run(probe, timeout).succeeded


class InMemoryAuditBackend(_Backend):
    """A bounded in-memory ring: when full, the oldest event is evicted and counted in
    ``evicted_events``. Stores a (redacted) copy of each event. A forked child gets a copy of
    the ring and its counters, like any object (each process then records its own events)."""

    def __init__(self, config: AuditConfig | None = None, *, max_events: int = 10000) -> None:
        super().__init__(config)
        if not isinstance(max_events, int) or max_events < 1:
            raise InvalidArgumentError(f"max_events={max_events!r} must be a positive int")
        self.max_events = max_events
        self._events: deque[AuditEvent] = deque(maxlen=max_events)
        self._lock = threading.Lock()
        #: Events evicted because the ring was full.
        self.evicted_events = 0
        #: Events logged (after the level filter).
        self.logged_events = 0
        _fork.track(self, "_lock")

    def log(self, event: AuditEvent) -> bool:
        if not self._accepts(event):
            return True
        stored = self.redactor.redact_event(event) if self.redactor else event.copy()
        with self._lock:
            if len(self._events) == self.max_events:
                self.evicted_events += 1
            self._events.append(stored)
            self.logged_events += 1
        return True

    def query(  # noqa: PLR0917 - the existing API passes these positionally
        self,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        event_type: AuditEventType | str | None = None,
        user_id: str | None = None,
        resource_id: str | None = None,
        limit: int | None = 100,
        *,
        item_id: str | None = None,
    ) -> list[AuditEvent]:
        """Matching events, newest first, at most ``limit``; time bounds inclusive."""
        flt = QueryFilter.build(
            start_time, end_time, event_type, user_id, item_id, resource_id, limit
        )
        with self._lock:
            events = list(self._events)
        return flt.select(((e.timestamp, i), e) for i, e in enumerate(events))

    def get_all(self) -> list[AuditEvent]:
        """Every stored event, oldest first."""
        with self._lock:
            return list(self._events)

    @property
    def events(self) -> list[AuditEvent]:
        """The existing API's name of ``get_all()``."""
        return self.get_all()

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def flush(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        """Nothing to close."""

    def __len__(self) -> int:
        return len(self._events)


class _SegmentBackend(_Backend):
    """A backend writing through the core's ``FileSink``."""

    _text_format = False

    def _open(
        self,
        directory: Path,
        stem: str,
        suffix: str,
        *,
        daily: bool,
        max_bytes: int | None,
        max_files: int | None,
        compress: bool,
        durability: str,
        sync_every_events: int,
        sync_interval_ms: int,
        integrity_key: bytes | str | None,
        integrity_key_env: str | None,
        checkpoint_interval_seconds: float | None,
        retention_days: int | None,
    ) -> None:
        key, source = _resolve_key(self.config, integrity_key, integrity_key_env)
        interval = (
            self.config.checkpoint_interval_seconds
            if checkpoint_interval_seconds is None
            else checkpoint_interval_seconds
        )
        # Deleting audit data by age needs an explicit decision: retention_days= or a config.
        if retention_days is not None:
            days = retention_days
        else:
            days = self.config.retention_days if self._config_given else 0
        if not isinstance(days, int) or days < 0:
            raise InvalidArgumentError(
                f"retention_days={days!r} must be a non-negative int (0 keeps files forever)"
            )
        #: Days closed segments are kept (0: forever).
        self.retention_days = days
        if max_files is not None and (not isinstance(max_files, int) or max_files < 1):
            raise InvalidArgumentError(f"max_files={max_files!r} must be a positive int")
        if max_bytes is not None and max_bytes < 1:
            raise InvalidArgumentError(f"max_file_size_mb={max_bytes / 2**20!r} must be positive")
        self._sink = _core.core.FileSink(
            directory,
            stem,
            suffix,
            daily=daily,
            max_bytes=max_bytes,
            max_files=max_files,
            compress=compress,
            durability=durability,
            sync_every_events=sync_every_events,
            sync_interval_ms=sync_interval_ms,
            text_format=self._text_format,
            redactor=self.redactor._core if self.redactor else None,
            integrity_key=key,
            key_source=source,
            checkpoint_interval=interval,
            max_age_seconds=days * 86400.0 if days else None,
        )
        #: Whether records are sealed into the keyed chain (tamper evidence).
        self.tamper_evident = key is not None
        self._probe_after = 0.0
        #: The AuditLogger fast path (fields straight to the core, no AuditEvent built).
        self._log_fields = self._sink.log_fields
        self.last_query_report = QueryReport()
        self._recent_failures = _RecentFailures()

    def log(self, event: AuditEvent) -> bool:
        """Writes the event now (one whole line, one ``write``); raises ``AuditIOError`` naming
        the file when it cannot be written (the event is counted in ``failed_events``)."""
        if not self._accepts(event):
            return True
        self._sink.log_event(event, None)
        return True

    def healthy(self, timeout: float = 5.0) -> bool:
        """Whether a record can be written now: the backend is open; its directory exists, is
        writable and has free space (a full disk or a read-only mount refuses); the active file,
        if there is one, is a regular file it may append to; and no write failed in the last
        ``RETRY_AFTER_FAILURE_SECONDS``. (A write can still fail after this answer; it is then
        counted in ``failed_events``, and the next answers are ``False`` for a while.)"""
        del timeout
        sink = self._sink
        if sink.closed:
            return False
        active = Path(sink.active_path)
        return (
            _directory_writable(active.parent)
            and _appendable(active)
            and self._recent_failures.clear(sink.failed_events)
        )

    def query(  # noqa: PLR0917 - the existing API passes these positionally
        self,
        start_time: datetime | str | None = None,
        end_time: datetime | str | None = None,
        event_type: AuditEventType | str | None = None,
        user_id: str | None = None,
        resource_id: str | None = None,
        limit: int | None = 100,
        *,
        item_id: str | None = None,
    ) -> list[AuditEvent]:
        """Matching events from every segment (rotated, compressed and active), newest first,
        at most ``limit``. Torn or invalid lines are skipped and reported in
        ``last_query_report``."""
        flt = QueryFilter.build(
            start_time, end_time, event_type, user_id, item_id, resource_id, limit
        )
        report = QueryReport()
        events = flt.select(iter_events(self._sink.segments(), self._text_format, report))
        self.last_query_report = report
        return events

    def segments(self) -> list[str]:
        """Paths of every segment, oldest first."""
        return [path for path, *_ in self._sink.segments()]

    @property
    def active_path(self) -> str:
        return self._sink.active_path

    def flush(self) -> None:
        """Makes written events durable per the durability policy."""
        self._sink.flush()

    def close(self) -> None:
        """Flushes and waits for background compression. Idempotent."""
        self._sink.close()

    # -- counters --

    @property
    def written_events(self) -> int:
        return self._sink.written_events

    @property
    def failed_events(self) -> int:
        """Events that could not be written (I/O errors)."""
        return self._sink.failed_events

    @property
    def rotations(self) -> int:
        return self._sink.rotations

    @property
    def repaired_lines(self) -> int:
        """Torn last lines (from a killed writer) terminated before appending."""
        return self._sink.repaired_lines

    @property
    def compressed_segments(self) -> int:
        return self._sink.compressed_segments

    @property
    def compression_failures(self) -> int:
        return self._sink.compression_failures

    @property
    def last_error(self) -> str | None:
        return self._sink.last_error

    @property
    def checkpoints(self) -> int:
        """Checkpoints written (tamper-evident logs)."""
        return self._sink.checkpoints

    @property
    def pruned_segments(self) -> int:
        """Segments deleted by ``max_files`` or ``retention_days``."""
        return self._sink.pruned_segments

    @property
    def key_id(self) -> str | None:
        """Public id of the integrity key (``None`` when not tamper-evident)."""
        return self._sink.key_id

    def checkpoint(self) -> None:
        """Writes a periodic checkpoint now if one is due (a timer does this on its own)."""
        self._sink.checkpoint_if_due()


def _resolve_key(
    config: AuditConfig, key: bytes | str | None, key_env: str | None
) -> tuple[bytes | None, str]:
    """The integrity key (explicit argument, then the config, then the environment variable the
    argument or the config names) and where it came from; never read from the log."""
    if key is None and key_env is None:
        key, key_env = config.integrity_key, config.integrity_key_env
    if key is not None:
        return (key.encode() if isinstance(key, str) else bytes(key)), "integrity_key"
    if key_env:
        value = os.environ.get(key_env)
        if not value:
            raise InvalidArgumentError(
                f"integrity_key_env={key_env!r}: the environment variable is not set"
            )
        return value.encode(), f"environment variable {key_env}"
    return None, "integrity_key"


#: After a failed write, how long ``healthy()`` answers ``False`` (so that fail-closed loggers
#: refuse operations) before letting one through to try again.
RETRY_AFTER_FAILURE_SECONDS = 5.0


class _RecentFailures:
    """Tells whether a failure counter has stayed still for ``RETRY_AFTER_FAILURE_SECONDS``."""

    __slots__ = ("_changed_at", "_seen")

    def __init__(self) -> None:
        self._seen = 0
        self._changed_at = -RETRY_AFTER_FAILURE_SECONDS

    def clear(self, failures: int) -> bool:
        now = time.monotonic()
        if failures != self._seen:  # (a forked child's counters restart at zero: also a change)
            self._seen = failures
            self._changed_at = now
        return now - self._changed_at >= RETRY_AFTER_FAILURE_SECONDS


def _appendable(path: Path) -> bool:
    """``path`` does not exist yet, or is a regular file (after symbolic links) we may write."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return stat.S_ISREG(mode) and os.access(path, os.W_OK)


def _directory_writable(directory: Path) -> bool:
    try:
        stats = os.statvfs(directory)
    except OSError:
        return False
    return os.access(directory, os.W_OK) and stats.f_bavail > 0


def _mb(value: float | None) -> int | None:
    if value is None:
        return None
    if value <= 0:
        raise InvalidArgumentError(f"max_file_size_mb={value!r} must be positive")
    return max(int(value * 2**20), 1)


class FileAuditBackend(_SegmentBackend):
    """One human-readable line per event, rotated by size, queryable.

    Each line is ``<timestamp> [<TYPE>] [<status>] store=... store_id=... op=... resource=...
    user=... correlation_id=... duration_ms=...``, a tab, and the full JSON record (which is what
    ``query`` reads). Rotation renames the full file to ``<stem>.<UTC stamp><suffix>`` and keeps
    at most ``max_files`` files (active included). ``durability``: ``"none"``, ``"periodic"``
    (default: ``fdatasync`` every ``sync_interval_ms`` = 1000 ms and/or every
    ``sync_every_events``, and on flush/close) or ``"always"`` (before ``log`` returns).

    Tamper evidence (opt-in): with ``integrity_key`` (bytes/str, at least 16 bytes) or
    ``integrity_key_env`` (the name of an environment variable holding it), or the same fields
    of the ``AuditConfig``, every record gets a sequence number and a chained HMAC-SHA256, and
    signed checkpoints are written at open, rotation, pruning, close and every
    ``checkpoint_interval_seconds`` (default 60); check the files with
    ``audit.verify(path, key)``. ``retention_days`` (or the config's, when a config is given)
    deletes closed segments not modified for that many days (0: keep forever).

    Several threads and processes can write one path; a forked child (pre-fork server worker,
    ``multiprocessing``) opens the file again on its first write and, for a tamper-evident
    log, joins the chain as a writer of its own (an ``open`` checkpoint names it), so ``verify``
    stays clean with the parent and its children writing. Counters are per process.
    """

    _text_format = True

    def __init__(
        self,
        config: AuditConfig | None = None,
        file_path: str | Path | None = None,
        *,
        max_file_size_mb: float | None = 100,
        max_files: int | None = 10,
        compress: bool = False,
        durability: str = "periodic",
        sync_every_events: int = 0,
        sync_interval_ms: int = 1000,
        integrity_key: bytes | str | None = None,
        integrity_key_env: str | None = None,
        checkpoint_interval_seconds: float | None = None,
        retention_days: int | None = None,
    ) -> None:
        super().__init__(config)
        path = Path(file_path or self.config.file_path or "./audit.log")
        self.file_path = path
        suffix = path.suffix
        self._open(
            path.parent,
            path.name[: len(path.name) - len(suffix)] if suffix else path.name,
            suffix,
            daily=False,
            max_bytes=_mb(max_file_size_mb),
            max_files=max_files,
            compress=compress,
            durability=durability,
            sync_every_events=sync_every_events,
            sync_interval_ms=sync_interval_ms,
            integrity_key=integrity_key,
            integrity_key_env=integrity_key_env,
            checkpoint_interval_seconds=checkpoint_interval_seconds,
            retention_days=retention_days,
        )


class JsonAuditBackend(_SegmentBackend):
    """JSON Lines, one file per UTC day (``<prefix>-YYYY-MM-DD.jsonl``), queryable across every
    file. ``compress=True`` gzips closed files in the background. With ``file_path`` (the existing
    API) that exact file is used and daily rotation is off unless asked for. Optional size
    rotation (``max_file_size_mb``), retention by count (``max_files``) and age
    (``retention_days``); durability, tamper evidence (``integrity_key``...) and the behaviour
    in forked children as for ``FileAuditBackend``.
    """

    def __init__(
        self,
        config: AuditConfig | None = None,
        file_path: str | Path | None = None,
        compress: bool = False,
        *,
        directory: str | Path | None = None,
        file_prefix: str = "audit",
        rotate_daily: bool | None = None,
        max_file_size_mb: float | None = None,
        max_files: int | None = None,
        durability: str = "periodic",
        sync_every_events: int = 0,
        sync_interval_ms: int = 1000,
        integrity_key: bytes | str | None = None,
        integrity_key_env: str | None = None,
        checkpoint_interval_seconds: float | None = None,
        retention_days: int | None = None,
    ) -> None:
        super().__init__(config)
        explicit = file_path or (self.config.file_path if directory is None else None)
        if explicit:
            path = Path(explicit)
            suffix = path.suffix
            folder = path.parent
            stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
            daily = bool(rotate_daily)
        else:
            folder = Path(directory if directory is not None else ".truthound/audit")
            stem, suffix = file_prefix, ".jsonl"
            daily = True if rotate_daily is None else rotate_daily
        if not stem:
            raise InvalidArgumentError(f"file_prefix={file_prefix!r} must not be empty")
        self.directory = folder
        self.file_prefix = stem
        self.rotate_daily = daily
        self.compress = compress
        self._open(
            folder,
            stem,
            suffix,
            daily=daily,
            max_bytes=_mb(max_file_size_mb),
            max_files=max_files,
            compress=compress,
            durability=durability,
            sync_every_events=sync_every_events,
            sync_interval_ms=sync_interval_ms,
            integrity_key=integrity_key,
            integrity_key_env=integrity_key_env,
            checkpoint_interval_seconds=checkpoint_interval_seconds,
            retention_days=retention_days,
        )

    @property
    def file_path(self) -> Path:
        """The file events are appended to now."""
        return Path(self._sink.active_path)


class CompositeAuditBackend(_Backend):
    """Fan-out: every backend gets its own copy of each event; a failing backend does not stop
    the others, and each failure is counted (``failed_deliveries``, ``last_errors``).

    With ``timeout_seconds``, each backend is served by its own thread and ``log``/``flush``/
    ``close`` wait at most that long for all of them: a backend that has not answered in time
    (a hung disk, a stuck network peer) is cut off and counted in ``timed_out_deliveries``, and
    while it stays stuck its events are skipped (counted there too) instead of piling up.
    ``log`` returns whether at least one backend recorded the event.

    In a forked child the delivery threads are started again (the parent's calls in flight stay
    with the parent) and the counters start at zero.
    """

    _leaf = False

    def __init__(
        self,
        backends: Sequence[Any] | None = None,
        config: AuditConfig | None = None,
        *,
        timeout_seconds: float | None = None,
    ) -> None:
        super().__init__(config)
        if timeout_seconds is not None and not timeout_seconds > 0:
            raise InvalidArgumentError(f"timeout_seconds={timeout_seconds!r} must be positive")
        self.backends: list[Any] = list(backends or [])
        self.timeout_seconds = timeout_seconds
        #: Deliveries (one per backend per event) that raised or were refused.
        self.failed_deliveries = 0
        #: Deliveries cut off by ``timeout_seconds`` (or skipped while their backend hung).
        self.timed_out_deliveries = 0
        #: The last error of each backend (by index).
        self.last_errors: dict[int, str] = {}
        self._lock = threading.Lock()
        self._workers = self._start_workers()
        _fork.track(self, "_lock", forget=CompositeAuditBackend._after_fork_in_child)

    def _start_workers(self) -> list[Worker] | None:
        if self.timeout_seconds is None:
            return None
        return [Worker(f"truthound-audit-composite-{i}") for i in range(len(self.backends))]

    def _after_fork_in_child(self) -> None:
        # The parent's workers do not exist here: calls submitted to them would never return.
        self._workers = self._start_workers()
        self.failed_deliveries = 0
        self.timed_out_deliveries = 0
        self.last_errors = {}

    def _fail(self, index: int, error: BaseException | str) -> None:
        with self._lock:
            self.failed_deliveries += 1
            self.last_errors[index] = (
                error if isinstance(error, str) else f"{type(error).__name__}: {error}"
            )

    def _time_out(self, index: int, what: str) -> None:
        with self._lock:
            self.timed_out_deliveries += 1
            self.last_errors[index] = f"timed out after {self.timeout_seconds} s ({what})"

    def _each(self, what: str, call: Callable[[Any], Any]) -> list[tuple[int, Any]]:
        """Calls ``call(backend)`` for every backend; returns ``(index, result)`` of those that
        returned in time without raising."""
        results: list[tuple[int, Any]] = []
        workers = self._workers
        if workers is None:
            for index, backend in enumerate(self.backends):
                try:
                    results.append((index, call(backend)))
                except Exception as error:
                    self._fail(index, error)
            return results
        timeout = self.timeout_seconds
        assert timeout is not None
        waiting = []
        for index, (backend, worker) in enumerate(zip(self.backends, workers, strict=True)):
            if worker.hung(timeout):
                self._time_out(index, what)
                continue
            waiting.append((index, worker.submit(functools.partial(call, backend))))
        deadline = time.monotonic() + timeout
        for index, pending in waiting:
            outcome = pending.wait(deadline - time.monotonic())
            if not outcome.finished:
                self._time_out(index, what)
            elif outcome.error is not None:
                self._fail(index, outcome.error)
            else:
                results.append((index, outcome.value))
        return results

    def log(self, event: AuditEvent) -> bool:
        if not self._accepts(event):
            return True
        if self.redactor is not None:
            event = self.redactor.redact_event(event)
        recorded = 0
        for index, result in self._each("log", lambda backend: backend.log(event.copy())):
            if result is False:
                self._fail(index, "the backend did not record the event")
            else:
                recorded += 1
        return recorded > 0

    def healthy(self, timeout: float = 5.0) -> bool:
        """At least one backend can record (each asked within the timeout)."""
        limit = self.timeout_seconds or timeout
        return any(
            healthy
            for _, healthy in self._each("health check", lambda b: backend_healthy(b, limit))
        )

    def query(self, *args: Any, **kwargs: Any) -> list[AuditEvent]:
        """The first backend that answers (in order) answers the query."""
        for index, backend in enumerate(self.backends):
            try:
                return list(backend.query(*args, **kwargs))
            except Exception as error:
                self._fail(index, error)
        return []

    def flush(self) -> None:
        self._each("flush", lambda backend: backend.flush())

    def close(self) -> None:
        self._each("close", lambda backend: backend.close())
        for worker in self._workers or []:
            worker.stop()


# Strong references: an async backend that was not closed (or whose close timed out) must still
# be drained at exit, even when the program dropped its last reference to it.
_OPEN_ASYNC: set[AsyncAuditBackend] = set()
#: How long interpreter exit waits, after ``exit_timeout_seconds``, for a writer delivering to a
#: Python backend to finish the ``log`` call it is in (it must not be inside the interpreter when
#: finalisation begins).
_ABANDON_TIMEOUT = 10.0
_log = logging.getLogger(__name__)


def _close_at_exit() -> None:
    for backend in list(_OPEN_ASYNC):
        with contextlib.suppress(Exception):
            backend._close_at_exit()


# At interpreter exit, and at the end of a multiprocessing child (which skips atexit).
_fork.at_exit(_close_at_exit)


class AsyncAuditBackend(_Backend):
    """Non-blocking logging through a bounded queue drained by a writer thread.

    For ``FileAuditBackend``/``JsonAuditBackend`` the event is encoded on the caller's thread by
    the core and written in batches by a native thread with the interpreter released; any other
    backend (``InMemoryAuditBackend``, your own class) receives each event through its ``log``
    from the writer thread.

    - ``overflow="block"`` (default): ``log`` waits up to ``block_timeout_seconds`` for room;
      ``overflow="drop_newest"``: ``log`` returns at once. Either way an event that finds no room
      is counted in ``dropped_events`` and, when ``metrics`` is given, reported as
      ``metrics.increment("audit_events_dropped_total", value=1, labels={"backend": ...})``.
    - ``flush(timeout=)`` returns ``True`` once everything logged before it is written and the
      backend flushed; ``False`` on timeout, or when an event written since the previous
      ``flush`` could not be recorded (counted in ``failed_events``, cause in ``last_error``).
      ``close(timeout=)`` drains, then closes the backend; when it times out, the backend stays
      registered and is drained (then closed) at interpreter exit.
    - Interpreter exit waits up to ``exit_timeout_seconds`` (default 30) for pending events to
      be written. For a Python backend (your own class, ``InMemoryAuditBackend``...) the writer
      thread then stops delivering before the interpreter finalises (a native thread must not
      enter a finalising interpreter): events still queued are given up and counted in
      ``discarded_events`` (and in ``dropped_events``), and a warning is logged. A ``log`` call
      already running is let finish for up to 10 more seconds; one that hangs longer cannot be
      interrupted.
    - Every event offered is counted exactly once:
      ``offered == persisted_events + failed_events + dropped_events + pending_events``
      (``dropped_events`` covers events that found no room and events discarded at exit;
      ``enqueued_events == persisted + failed + discarded + pending``).
    - Fork-safe: a backend created before a fork (gunicorn ``--preload``, ``multiprocessing``)
      works in the child at once. The child has a queue and a writer thread of its own (started
      on its first event), counters starting at zero, and drains its queue when it exits; the
      events the parent had queued are written by the parent, never by a child.
    """

    _leaf = False

    def __init__(
        self,
        backend: Any,
        config: AuditConfig | None = None,
        queue_size: int = 10000,
        flush_interval_seconds: float | None = None,
        *,
        overflow: str = "block",
        block_timeout_seconds: float = 5.0,
        metrics: Any = None,
        exit_timeout_seconds: float = 30.0,
    ) -> None:
        super().__init__(config)
        if not exit_timeout_seconds >= 0:
            raise InvalidArgumentError(
                f"exit_timeout_seconds={exit_timeout_seconds!r} must not be negative"
            )
        self.exit_timeout_seconds = exit_timeout_seconds
        if backend is None or not hasattr(backend, "log"):
            raise InvalidArgumentError(f"backend={backend!r} must have a log(event) method")
        if not isinstance(queue_size, int) or queue_size < 1:
            raise InvalidArgumentError(f"queue_size={queue_size!r} must be a positive int")
        if overflow not in ("block", "drop_newest"):
            raise InvalidArgumentError(f"overflow={overflow!r} must be 'block' or 'drop_newest'")
        interval = (
            self.config.flush_interval_seconds
            if flush_interval_seconds is None
            else flush_interval_seconds
        )
        if not interval > 0:
            raise InvalidArgumentError(f"flush_interval_seconds={interval!r} must be positive")
        self.backend = backend
        self.queue_size = queue_size
        self.flush_interval_seconds = interval
        self.overflow = overflow
        self.metrics = metrics
        core = _core.core
        sink = getattr(backend, "_sink", None)
        native = isinstance(sink, core.FileSink)
        self._writer = core.AsyncWriter(
            sink if native else backend,
            queue_size,
            interval,
            overflow,
            block_timeout_seconds,
        )
        self._native = native
        inner_excluded: frozenset[str] = getattr(backend, "_level_excluded", frozenset())
        self._level_excluded = self._level_excluded | (inner_excluded if native else frozenset())
        self._core_redactor = self.redactor._core if self.redactor else None
        if native:
            self._log_fields = self._fast_log_fields
        self._reported = {"dropped": 0, "failed": 0}
        self._metrics_lock = threading.Lock()
        self._backend_closed = False
        self._failed_at_flush = 0
        self._recent_failures = _RecentFailures()
        _OPEN_ASYNC.add(self)
        _fork.track(self, "_metrics_lock", forget=AsyncAuditBackend._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        # The writer's counters start at zero in the child: so do the deltas already reported.
        self._reported = {"dropped": 0, "failed": 0}
        self._failed_at_flush = 0

    @property
    def _backend_name(self) -> str:
        return type(self.backend).__name__

    def _report(self) -> None:
        """Sends new drops and failures to the metrics backend (exact deltas)."""
        metrics = self.metrics
        if metrics is None:
            return
        increment = getattr(metrics, "increment", None) or getattr(metrics, "counter", None)
        if increment is None:
            return
        with self._metrics_lock:
            for kind, total in (("dropped", self.dropped_events), ("failed", self.failed_events)):
                delta = total - self._reported[kind]
                if delta > 0:
                    self._reported[kind] = total
                    with contextlib.suppress(Exception):
                        increment(
                            f"audit_events_{kind}_total",
                            value=delta,
                            labels={"backend": self._backend_name},
                        )

    def log(self, event: AuditEvent) -> bool:
        """Queues the event (never blocks longer than the overflow policy allows); returns
        whether it was accepted (``False``: dropped and counted)."""
        if not self._accepts(event):
            return True
        if self._native:
            accepted: bool = self._writer.log_event(event, self._core_redactor)
        else:
            queued = self.redactor.redact_event(event) if self.redactor else event.copy()
            accepted = self._writer.log_event(queued, None)
        if not accepted:
            self._report()
        return accepted

    def healthy(self, timeout: float = 5.0) -> bool:
        """Open, with room in the queue, no delivery failed in the last
        ``RETRY_AFTER_FAILURE_SECONDS``, and the wrapped backend able to record."""
        writer = self._writer
        if writer.closed or writer.pending >= writer.capacity:
            return False
        return self._recent_failures.clear(writer.failed) and backend_healthy(self.backend, timeout)

    def _fast_log_fields(  # noqa: PLR0917 - the core fast-path signature
        self,
        redactor: Any,
        event_type: str,
        status: str,
        store_type: str,
        store_id: str,
        operation: str,
        item_id: Any,
        user_id: Any,
        duration_ms: float | None,
        metadata: Any,
        error_message: Any,
        extra: dict[str, Any] | None,
    ) -> bool:
        if self._core_redactor is not None and redactor is None:
            redactor = self._core_redactor
        accepted: bool = self._writer.log_fields(
            redactor, event_type, status, store_type, store_id, operation, item_id, user_id,
            duration_ms, metadata, error_message, extra,
        )  # fmt: skip
        if not accepted:
            self._report()
        return accepted

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Waits until everything logged before the call is persisted; ``False`` on timeout or
        when an event written since the previous flush failed (see ``failed_events``)."""
        failed_before = self._failed_at_flush
        done = self._writer.flush(1e9 if timeout is None else timeout)
        # (A forked child's writer starts its counters at zero: never "more failures" then.)
        self._failed_at_flush = failed = self._writer.failed
        self._report()
        return done and failed <= failed_before

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stops accepting, drains the queue, flushes and closes the backend; ``False`` if that
        did not finish in time (the writer keeps draining; the backend is closed by a later
        ``close()`` or at interpreter exit). Idempotent."""
        done = self._writer.close(1e9 if timeout is None else timeout)
        self._report()
        if done:
            if not self._backend_closed:
                self._backend_closed = True
                close = getattr(self.backend, "close", None)
                if close is not None:
                    close()
            _OPEN_ASYNC.discard(self)
        return done

    def _close_at_exit(self) -> None:
        """Interpreter exit: drains within ``exit_timeout_seconds``; otherwise stops delivering
        (see the class docs), counts what is left and says so."""
        if self.close(self.exit_timeout_seconds):
            return
        left = self._writer.abandon(_ABANDON_TIMEOUT)
        self._report()
        _log.warning(
            "%s: %d audit event(s) not written at interpreter exit (%d discarded, %d still "
            "pending%s)",
            type(self).__name__, self.discarded_events + self.pending_events,
            self.discarded_events, self.pending_events,
            "" if left else "; the backend's log() call did not return in time",
        )  # fmt: skip

    def query(self, *args: Any, **kwargs: Any) -> list[AuditEvent]:
        """Flushes, then queries the wrapped backend."""
        if not self._writer.closed:
            self.flush()
        return list(self.backend.query(*args, **kwargs))

    # -- counters --

    @property
    def enqueued_events(self) -> int:
        """Events accepted into the queue."""
        return self._writer.accepted

    @property
    def dropped_events(self) -> int:
        """Events lost by the queue: those that found it full, and those discarded at
        interpreter exit (exact; never silently lost)."""
        writer = self._writer
        return writer.dropped + writer.discarded

    @property
    def discarded_events(self) -> int:
        """Events accepted but given up at interpreter exit (included in ``dropped_events``)."""
        return self._writer.discarded

    @property
    def persisted_events(self) -> int:
        """Events the wrapped backend accepted."""
        return self._writer.persisted

    @property
    def failed_events(self) -> int:
        """Events the wrapped backend failed to record (its error is in ``last_error``)."""
        return self._writer.failed

    @property
    def pending_events(self) -> int:
        """Events queued and not yet written."""
        return self._writer.pending

    @property
    def last_error(self) -> str | None:
        return self._writer.last_error

    def stats(self) -> dict[str, int]:
        """All counters at once (``dropped`` includes ``discarded_events``)."""
        return {
            "enqueued": self.enqueued_events,
            "dropped": self.dropped_events,
            "persisted": self.persisted_events,
            "failed": self.failed_events,
            "pending": self.pending_events,
        }
