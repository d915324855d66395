"""``AuditLogger``: the high-level audit interface of a store."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from .. import _context
from ..errors import AuditUnavailableError, InvalidArgumentError
from .events import (
    ALIASES,
    AuditEvent,
    AuditEventType,
    AuditStatus,
    check_duration,
    coerce_event_type,
    coerce_status,
)
from .redaction import DataRedactor

if TYPE_CHECKING:
    from ..protocols import ObservabilityContext

__all__ = ["AuditLogger"]

_log = logging.getLogger(__name__)
#: At most one warning per logger in this many seconds about events it could not record.
WARNING_INTERVAL_SECONDS = 60.0

_CREATE = AuditEventType.CREATE.value
_READ = AuditEventType.READ.value
_UPDATE = AuditEventType.UPDATE.value
_DELETE = AuditEventType.DELETE.value
_QUERY = AuditEventType.QUERY.value
_SUCCESS = AuditStatus.SUCCESS.value
_FAILURE = AuditStatus.FAILURE.value


def _status(status: AuditStatus | str) -> str:
    return _SUCCESS if status is AuditStatus.SUCCESS else coerce_status(status).value


#: Fields the core fast path takes in ``extra`` (the text fields of the record).
_TEXT_KEYS = frozenset(
    {
        "store_type", "store_id", "operation", "resource_type", "item_id", "user_id",
        "session_id", "tenant_id", "correlation_id", "trace_id", "span_id", "ip_address",
        "user_agent", "input_summary", "output_summary", "error_type", "error_message",
    }
)  # fmt: skip


class _ItemLog(Protocol):
    """The signature of ``log_create``/``log_read``/``log_update``/``log_delete``."""

    def __call__(
        self,
        item_id: str | None,
        user_id: str | None = None,
        *,
        status: AuditStatus | str = AuditStatus.SUCCESS,
        duration_ms: float | None = None,
        metadata: dict[str, Any] | None = None,
        operation: str = ...,
        **fields: Any,
    ) -> None: ...


def _item_log(event_type: AuditEventType, doc: str) -> _ItemLog:
    """One of the four item operations (a method without a wrapper frame: the fast path)."""
    value = event_type.value

    def log(
        self: AuditLogger,
        item_id: str | None,
        user_id: str | None = None,
        *,
        status: AuditStatus | str = AuditStatus.SUCCESS,
        duration_ms: float | None = None,
        metadata: dict[str, Any] | None = None,
        operation: str = value,
        **fields: Any,
    ) -> None:
        self._emit(
            value, _status(status), item_id,
            user_id, duration_ms, metadata, fields.pop("error_message", None), operation,
            self._split(fields) if fields else None,
        )  # fmt: skip

    log.__name__ = log.__qualname__ = f"log_{value}"
    log.__doc__ = doc
    return log  # type: ignore[return-value]  # bound as a method of AuditLogger


class AuditLogger:
    """Builds and records audit events for one store.

    When the backend is a ``JsonAuditBackend``/``FileAuditBackend`` (directly or behind an
    ``AsyncAuditBackend``), the fields go straight to the core, which generates the id and the
    UTC timestamp, redacts, encodes and writes or queues the line: no ``AuditEvent`` object is
    built. For any other backend an ``AuditEvent`` is built, redacted and passed to ``log``.

    ``store_id`` defaults to ``""`` (no id): pass a stable one to tell stores of one type apart
    in the trail (a generated id would change at every restart).

    Correlation: an event logged without an explicit ``trace_id``/``span_id`` inside a span
    (``_context.current_span``) is stamped with that span's ids.

    An event the backend cannot record (it raised, such as an ``AuditIOError`` on a full disk,
    or it refused or dropped the event) is counted in ``unrecorded_events`` and, by default,
    never raises into the application: the operation being audited already happened, and an
    exception would make callers retry it. A warning is logged (logger
    ``truthound.stores.observability.audit.logger``, at most once per
    ``WARNING_INTERVAL_SECONDS`` per ``AuditLogger``, with the count since the last one); the
    backend counts the failure too (``failed_events``...). Invalid arguments (an unknown event
    type, a ``duration_ms`` that is not a finite number...) still raise ``InvalidArgumentError``.

    Fail-closed mode (``fail_closed=True``): ``operation()`` first asks the backend whether it
    can record (``CompositeAuditBackend``: at least one of its backends; each answer within
    ``fail_closed_timeout_seconds``) and raises ``AuditUnavailableError`` *before running the
    block* when it cannot (counted in ``refused_operations``). Every ``log_*`` call raises
    ``AuditUnavailableError`` when its event was not recorded (counted in
    ``unrecorded_events``).
    """

    def __init__(
        self,
        backend: Any = None,
        store_type: str = "unknown",
        store_id: str | None = None,
        redactor: DataRedactor | None = None,
        *,
        fail_closed: bool = False,
        fail_closed_timeout_seconds: float = 5.0,
    ) -> None:
        if backend is None:
            from .backends import InMemoryAuditBackend

            backend = InMemoryAuditBackend()
        self.backend = backend
        self.store_type = store_type
        self.store_id = "" if store_id is None else store_id
        self.redactor = redactor
        if not fail_closed_timeout_seconds > 0:
            raise InvalidArgumentError(
                f"fail_closed_timeout_seconds={fail_closed_timeout_seconds!r} must be positive"
            )
        self.fail_closed = fail_closed
        self.fail_closed_timeout_seconds = fail_closed_timeout_seconds
        #: Operations refused in fail-closed mode because no backend could record them.
        self.refused_operations = 0
        #: Events the backend did not record (it raised, refused or dropped them).
        self.unrecorded_events = 0
        self._count_lock = threading.Lock()
        self._next_warning = 0.0
        self._unwarned = 0

    # -- fail-closed --

    def ensure_available(self, operation: str = "operation") -> None:
        """In fail-closed mode, raises ``AuditUnavailableError`` unless the backend can record
        an event now (decided within ``fail_closed_timeout_seconds``). No-op otherwise."""
        if not self.fail_closed:
            return
        from .backends import backend_healthy

        if backend_healthy(self.backend, self.fail_closed_timeout_seconds):
            return
        with self._count_lock:
            self.refused_operations += 1
        raise AuditUnavailableError(
            f"{self._name(operation)!r}: refused (fail-closed): no audit backend can record it"
        )

    def _name(self, operation: str) -> str:
        return f"{self.store_type}/{self.store_id}: {operation}"

    def _unrecorded(self, operation: str, error: BaseException | None) -> None:
        """Counts an event the backend did not record; raises in fail-closed mode, else warns
        (rate-limited)."""
        now = time.monotonic()
        with self._count_lock:
            self.unrecorded_events += 1
            self._unwarned += 1
            warn = not self.fail_closed and now >= self._next_warning
            if warn:
                count, self._unwarned = self._unwarned, 0
                self._next_warning = now + WARNING_INTERVAL_SECONDS
        if self.fail_closed:
            cause = f" ({type(error).__name__}: {error})" if error is not None else ""
            raise AuditUnavailableError(
                f"{self._name(operation)!r}: its audit record could not be written{cause}"
            ) from error
        if warn:
            reason = f"{type(error).__name__}: {error}" if error is not None else "refused"
            _log.warning(
                "%r: %d audit event(s) not recorded since the last warning (last cause: %s); "
                "counted in AuditLogger.unrecorded_events",
                self._name(operation), count, reason,
            )  # fmt: skip

    # -- the one place events are emitted --

    def _emit(  # noqa: PLR0917 - internal, hot path
        self,
        event_type: str,
        status: str,
        item_id: Any,
        user_id: Any,
        duration_ms: Any,
        metadata: Any,
        error_message: Any,
        operation: str,
        extra: dict[str, Any] | None,
    ) -> None:
        backend = self.backend
        if event_type in getattr(backend, "_level_excluded", ()):
            backend.filtered_events += 1
            return
        if duration_ms is not None:
            # Checked here so that bad input raises before delivery (which never raises).
            duration_ms = check_duration(duration_ms)
        span = _context.current_span.get()
        if span is not None and (
            extra is None or ("trace_id" not in extra and "span_id" not in extra)
        ):
            extra = {} if extra is None else dict(extra)
            extra["trace_id"] = span.trace_id
            extra["span_id"] = span.span_id
        fast = getattr(backend, "_log_fields", None)
        redactor = self.redactor
        # Fields the record format keeps elsewhere (an explicit event_id or timestamp) take the
        # object path.
        if fast is not None and (extra is None or _TEXT_KEYS.issuperset(extra)):
            try:
                recorded = fast(
                    None if redactor is None else redactor._core,
                    event_type, status, self.store_type, self.store_id, operation, item_id,
                    user_id, duration_ms, metadata, error_message, extra,
                )  # fmt: skip
            except Exception as error:
                self._unrecorded(operation, error)
                return
            if recorded is False:
                self._unrecorded(operation, None)
            return
        event = AuditEvent(
            event_type=event_type,
            status=status,
            store_type=self.store_type,
            store_id=self.store_id,
            operation=operation,
            item_id=item_id,
            user_id=user_id,
            duration_ms=duration_ms,
            metadata=metadata,
            error_message=error_message,
            **(extra or {}),
        )
        if redactor is not None:
            event = redactor.redact_event(event)
        self._deliver(event)

    def _deliver(self, event: AuditEvent) -> None:
        try:
            recorded = self.backend.log(event)
        except Exception as error:
            self._unrecorded(event.operation, error)
            return
        if recorded is False:
            self._unrecorded(event.operation, None)

    @staticmethod
    def _split(fields: dict[str, Any]) -> dict[str, Any] | None:
        for alias, name in ALIASES.items():
            if alias in fields:
                value = fields.pop(alias)
                if fields.get(name) is None:
                    fields[name] = value
        return fields or None

    # -- the documented operations --

    log_create = _item_log(AuditEventType.CREATE, "Records the creation of ``item_id``.")
    log_read = _item_log(AuditEventType.READ, "Records a read of ``item_id``.")
    log_update = _item_log(AuditEventType.UPDATE, "Records an update of ``item_id``.")
    log_delete = _item_log(AuditEventType.DELETE, "Records the deletion of ``item_id``.")

    def log_query(
        self,
        filters: dict[str, Any] | None = None,
        user_id: str | None = None,
        *,
        status: AuditStatus | str = AuditStatus.SUCCESS,
        duration_ms: float | None = None,
        metadata: dict[str, Any] | None = None,
        operation: str = _QUERY,
        **fields: Any,
    ) -> None:
        """Records a query; ``filters`` are kept in ``metadata["filters"]``."""
        merged = dict(metadata or {})
        if filters is not None:
            merged["filters"] = filters
        self._emit(
            _QUERY, _status(status), fields.pop("item_id", None), user_id, duration_ms,
            merged, fields.pop("error_message", None), operation,
            self._split(fields) if fields else None,
        )  # fmt: skip

    def log_event(
        self,
        event_type: AuditEventType | str,
        operation: str = "",
        status: AuditStatus | str = AuditStatus.SUCCESS,
        **fields: Any,
    ) -> None:
        """Records any event; ``fields`` are ``AuditEvent`` fields (``item_id``, ``user_id``,
        ``duration_ms``, ``metadata``, ``error_message``, ...)."""
        event_value = coerce_event_type(event_type).value
        item_id = fields.pop("item_id", None)
        if item_id is None:
            item_id = fields.pop("resource_id", None)
        self._emit(
            event_value, _status(status), item_id, fields.pop("user_id", None),
            fields.pop("duration_ms", None), fields.pop("metadata", None),
            fields.pop("error_message", None), operation or event_value,
            self._split(fields) if fields else None,
        )  # fmt: skip

    def log_error(
        self,
        event_type: AuditEventType | str,
        error_message: str,
        item_id: str | None = None,
        user_id: str | None = None,
        *,
        error_type: str | None = None,
        status: AuditStatus | str = AuditStatus.FAILURE,
        **fields: Any,
    ) -> None:
        """Records a failed operation with its error message (status ``FAILURE``)."""
        if error_type is not None:
            fields["error_type"] = error_type
        event_value = coerce_event_type(event_type).value
        self._emit(
            event_value, _status(status), item_id, user_id,
            fields.pop("duration_ms", None), fields.pop("metadata", None), error_message,
            fields.pop("operation", event_value), self._split(fields) if fields else None,
        )  # fmt: skip

    @contextmanager
    def operation(
        self,
        event_type: AuditEventType | str,
        operation: str,
        resource_type: str = "",
        resource_id: str | None = None,
        context: ObservabilityContext | None = None,
        **metadata: Any,
    ) -> Iterator[AuditEvent]:
        """Times the block and logs one event on exit: ``SUCCESS``, or ``FAILURE`` with
        ``error_type``/``error_message`` when the block raises (the exception propagates). The
        yielded event may be modified inside the block.

        Fail-closed mode: raises ``AuditUnavailableError`` before the block runs when no backend
        can record, and after it when the block succeeded but its event was not recorded."""
        self.ensure_available(operation)
        event = AuditEvent(
            event_type=event_type,
            store_type=self.store_type,
            store_id=self.store_id,
            operation=operation,
            resource_type=resource_type,
            item_id=resource_id,
            metadata=metadata,
        )
        if context is not None:
            event.correlation_id = context.correlation_id
            event.trace_id = context.trace_id
            event.span_id = context.span_id
            event.user_id = context.user_id
            event.tenant_id = context.tenant_id
            event.ip_address = context.source_ip
            event.user_agent = context.user_agent
        span = _context.current_span.get()
        if span is not None and event.trace_id is None and event.span_id is None:
            event.trace_id = span.trace_id
            event.span_id = span.span_id
        started = time.perf_counter_ns()
        failed = False
        try:
            yield event
            event.status = AuditStatus.SUCCESS
        except BaseException as error:
            failed = True
            event.status = AuditStatus.FAILURE
            event.error_type = type(error).__name__
            event.error_message = str(error)
            raise
        finally:
            elapsed = (time.perf_counter_ns() - started) / 1e6
            # Monotonic and strictly positive even for an empty block.
            event.duration_ms = max(elapsed, 1e-6)
            if event.event_type.value in getattr(self.backend, "_level_excluded", ()):
                self.backend.filtered_events += 1
            else:
                logged = self.redactor.redact_event(event) if self.redactor else event
                try:
                    self._deliver(logged)
                except AuditUnavailableError:
                    # Never mask the block's own exception; it is counted either way.
                    if not failed:
                        raise

    def flush(self) -> None:
        self.backend.flush()

    def close(self) -> None:
        self.backend.close()
