"""Audit backends: memory, human-readable file, JSON Lines, composite and async."""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections import deque
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import _core
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


class InMemoryAuditBackend(_Backend):
    """A bounded in-memory ring: when full, the oldest event is evicted and counted in
    ``evicted_events``. Stores a (redacted) copy of each event."""

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

    def log(self, event: AuditEvent) -> None:
        if not self._accepts(event):
            return
        stored = self.redactor.redact_event(event) if self.redactor else event.copy()
        with self._lock:
            if len(self._events) == self.max_events:
                self.evicted_events += 1
            self._events.append(stored)
            self.logged_events += 1

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
    ) -> None:
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
        )
        #: The AuditLogger fast path (fields straight to the core, no AuditEvent built).
        self._log_fields = self._sink.log_fields
        self.last_query_report = QueryReport()

    def log(self, event: AuditEvent) -> None:
        """Writes the event now (one whole line, one ``write``); raises ``AuditIOError`` naming
        the file when it cannot be written (the event is counted in ``failed_events``)."""
        if not self._accepts(event):
            return
        self._sink.log_event(event, None)

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
        )


class JsonAuditBackend(_SegmentBackend):
    """JSON Lines, one file per UTC day (``<prefix>-YYYY-MM-DD.jsonl``), queryable across every
    file. ``compress=True`` gzips closed files in the background. With ``file_path`` (the existing
    API) that exact file is used and daily rotation is off unless asked for. Optional size
    rotation (``max_file_size_mb``) and retention by count (``max_files``); durability as for
    ``FileAuditBackend``.
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
        )

    @property
    def file_path(self) -> Path:
        """The file events are appended to now."""
        return Path(self._sink.active_path)


class CompositeAuditBackend(_Backend):
    """Fan-out: every backend gets its own copy of each event; a failing backend does not stop
    the others, and each failure is counted (``failed_deliveries``, ``last_errors``)."""

    _leaf = False

    def __init__(
        self, backends: Sequence[Any] | None = None, config: AuditConfig | None = None
    ) -> None:
        super().__init__(config)
        self.backends: list[Any] = list(backends or [])
        #: Deliveries (one per backend per event) that raised.
        self.failed_deliveries = 0
        #: The last error of each backend (by index).
        self.last_errors: dict[int, str] = {}
        self._lock = threading.Lock()

    def _fail(self, index: int, error: BaseException) -> None:
        with self._lock:
            self.failed_deliveries += 1
            self.last_errors[index] = f"{type(error).__name__}: {error}"

    def log(self, event: AuditEvent) -> None:
        if not self._accepts(event):
            return
        if self.redactor is not None:
            event = self.redactor.redact_event(event)
        for index, backend in enumerate(self.backends):
            try:
                backend.log(event.copy())
            except Exception as error:
                self._fail(index, error)

    def query(self, *args: Any, **kwargs: Any) -> list[AuditEvent]:
        """The first backend that answers (in order) answers the query."""
        for index, backend in enumerate(self.backends):
            try:
                return list(backend.query(*args, **kwargs))
            except Exception as error:
                self._fail(index, error)
        return []

    def flush(self) -> None:
        for index, backend in enumerate(self.backends):
            try:
                backend.flush()
            except Exception as error:
                self._fail(index, error)

    def close(self) -> None:
        for index, backend in enumerate(self.backends):
            try:
                backend.close()
            except Exception as error:
                self._fail(index, error)


# Strong references: an async backend that was never closed must still be drained at exit, even
# when the program dropped its last reference to it.
_OPEN_ASYNC: set[AsyncAuditBackend] = set()
_EXIT_TIMEOUT = 30.0


def _close_at_exit() -> None:
    for backend in list(_OPEN_ASYNC):
        with contextlib.suppress(Exception):
            backend.close(timeout=_EXIT_TIMEOUT)


atexit.register(_close_at_exit)


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
      backend flushed; ``False`` on timeout. ``close()`` drains, then closes the backend.
      Pending events are flushed at interpreter exit.
    - At quiescence ``enqueued_events == persisted_events + failed_events`` and every event
      offered is either enqueued or in ``dropped_events``.
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
    ) -> None:
        super().__init__(config)
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
        _OPEN_ASYNC.add(self)

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

    def log(self, event: AuditEvent) -> None:
        """Queues the event (never blocks longer than the overflow policy allows)."""
        if not self._accepts(event):
            return
        if self._native:
            accepted = self._writer.log_event(event, self._core_redactor)
        else:
            queued = self.redactor.redact_event(event) if self.redactor else event.copy()
            accepted = self._writer.log_event(queued, None)
        if not accepted:
            self._report()

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
    ) -> None:
        if self._core_redactor is not None and redactor is None:
            redactor = self._core_redactor
        if not self._writer.log_fields(
            redactor, event_type, status, store_type, store_id, operation, item_id, user_id,
            duration_ms, metadata, error_message, extra,
        ):  # fmt: skip
            self._report()

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Waits until everything logged before the call is persisted; ``False`` on timeout."""
        done = self._writer.flush(1e9 if timeout is None else timeout)
        self._report()
        return done

    def close(self, timeout: float | None = 30.0) -> bool:
        """Stops accepting, drains the queue, flushes and closes the backend. Idempotent."""
        done = self._writer.close(1e9 if timeout is None else timeout)
        self._report()
        if done and not self._backend_closed:
            self._backend_closed = True
            close = getattr(self.backend, "close", None)
            if close is not None:
                close()
        _OPEN_ASYNC.discard(self)
        return done

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
        """Events that found the queue full (exact; never silently lost)."""
        return self._writer.dropped

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
        """All counters at once."""
        return {
            "enqueued": self.enqueued_events,
            "dropped": self.dropped_events,
            "persisted": self.persisted_events,
            "failed": self.failed_events,
            "pending": self.pending_events,
        }
