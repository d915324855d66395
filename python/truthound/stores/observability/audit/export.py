"""``OtlpAuditBackend``: audit events as OTLP log records, for central storage by a collector.

Each event becomes one OpenTelemetry log record (built with opentelemetry-sdk's
``ReadableLogRecord`` and sent by its OTLP log exporter, HTTP/protobuf or gRPC):

- ``time_unix_nano`` = the event's timestamp; ``observed_time_unix_nano`` = when it was logged;
- ``severity``: ``INFO`` for success, ``WARN`` for partial/denied, ``ERROR`` for failure;
- ``event_name`` = ``truthound.audit.<event_type>``;
- ``body`` = the whole (redacted) record as a map, metadata nested as it was logged;
- attributes for indexing: ``audit.event_id``, ``audit.event_type``, ``audit.status``,
  ``audit.store_type``, ``audit.store_id``, ``audit.operation``, ``audit.item_id``,
  ``enduser.id``, ``session.id``, ``client.address``, ``user_agent.original``,
  ``audit.correlation_id``, ``audit.tenant_id``, ``error.type``, ``audit.duration_ms`` (each only
  when set);
- ``trace_id``/``span_id`` from the event when they are valid W3C ids (so a backend can join the
  audit record to its trace).

Redaction (the config's, like every leaf backend) is applied before the record is built, so no
unredacted value leaves the process. ``log`` buffers; a batch is exported when it reaches
``max_batch_size`` and on ``flush``/``close`` (wrap the backend in ``AsyncAuditBackend`` to take
exports off the caller's thread and flush on a timer). A failed export is counted
(``failed_exports``, ``failed_events``, ``last_error``), never raised; the exporter's own retry
policy applies within ``timeout_seconds``.

Forked children (pre-fork servers, ``multiprocessing``): the child drops the records the parent
had buffered (the parent exports them, once), starts its counters at zero and, on its first
export, builds an exporter of its own: an inherited one would share the parent's pooled HTTP
connections (or gRPC channel). An exporter passed as ``exporter=`` is kept as it is, and must
be fork-safe itself. Over gRPC, gRPC's own fork rules apply (see its ``GRPC_ENABLE_FORK_SUPPORT``);
HTTP/protobuf needs nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import _fork, _otlp
from .._bounded import call_with_timeout
from ..config import AuditConfig
from ..errors import AuditClosedError, InvalidArgumentError
from .backends import _Backend
from .events import AuditEvent, AuditStatus, json_metadata

__all__ = ["OtlpAuditBackend"]

_SCOPE = "truthound.stores.observability.audit"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_ATTRIBUTES = (
    ("event_id", "audit.event_id"),
    ("store_type", "audit.store_type"),
    ("store_id", "audit.store_id"),
    ("operation", "audit.operation"),
    ("item_id", "audit.item_id"),
    ("user_id", "enduser.id"),
    ("session_id", "session.id"),
    ("ip_address", "client.address"),
    ("user_agent", "user_agent.original"),
    ("correlation_id", "audit.correlation_id"),
    ("tenant_id", "audit.tenant_id"),
    ("error_type", "error.type"),
)


def _hex_id(value: str | None, length: int) -> int | None:
    if value is None or len(value) != length:
        return None
    try:
        number = int(value, 16)
    except ValueError:
        return None
    return number or None


def _log_exporter(
    endpoint: str | None, protocol: str, headers: Mapping[str, str], timeout: float
) -> Any:
    return _otlp.exporter("logs", endpoint, protocol, headers, timeout)


# Strong references: a backend the program dropped without closing still exports (or counts)
# what it buffered when the interpreter exits.
_OPEN: set[OtlpAuditBackend] = set()
_OPEN_LOCK = threading.Lock()
_fork.track(sys.modules[__name__], "_OPEN_LOCK")


def _close_at_exit() -> None:
    with _OPEN_LOCK:
        backends = list(_OPEN)
    for backend in backends:
        backend._close_at_exit()


# At interpreter exit, and at the end of a multiprocessing child (which skips atexit); after
# the async backends' drain (registered when `backends` was imported), which may feed these.
_fork.at_exit(_close_at_exit)


_INT64 = range(-(2**63), 2**63)


def _any_value(value: Any) -> Any:
    """A JSON-safe value as OTLP's ``AnyValue`` can hold it: integers beyond 64 bits as text."""
    if isinstance(value, dict):
        return {key: _any_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_any_value(item) for item in value]
    if type(value) is int and value not in _INT64:
        return str(value)
    return value


class OtlpAuditBackend(_Backend):
    """Sends audit events as OTLP log records (see the module docs for the mapping).

    ``endpoint``: the collector (``http://host:4318`` for HTTP, ``/v1/logs`` is added; or
    ``host:4317`` for gRPC); ``None`` uses the OpenTelemetry environment variables
    (``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT``...). ``protocol``: ``"grpc"`` or ``"http/protobuf"``;
    by default decided from the endpoint by the same rule as ``OpenTelemetryTracer`` (port 4317
    or a ``grpc://`` scheme: gRPC; any other URL: HTTP/protobuf; no endpoint: the
    ``OTEL_EXPORTER_OTLP_[LOGS_]PROTOCOL`` variables, else gRPC). ``exporter``: any
    opentelemetry-sdk ``LogRecordExporter`` instead.

    At interpreter exit (and when a ``multiprocessing`` child finishes) a backend that was not
    closed is closed: what it buffered is exported within ``timeout_seconds``; what could not
    be is counted in ``failed_events``.

    Counters: ``exported_events``, ``failed_events`` (in batches the collector did not accept,
    or left at exit), ``failed_exports``, ``filtered_events`` (excluded by level);
    ``last_error``.
    """

    def __init__(
        self,
        config: AuditConfig | None = None,
        *,
        endpoint: str | None = None,
        protocol: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = 10.0,
        service_name: str = "truthound-store",
        resource_attributes: Mapping[str, Any] | None = None,
        max_batch_size: int = 512,
        exporter: Any = None,
    ) -> None:
        super().__init__(config)
        protocol = _otlp.otlp_protocol(endpoint, protocol, "LOGS")
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise InvalidArgumentError(f"max_batch_size={max_batch_size!r} must be a positive int")
        if not timeout_seconds > 0:
            raise InvalidArgumentError(f"timeout_seconds={timeout_seconds!r} must be positive")
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError as error:  # pragma: no cover - exercised without the extra
            raise InvalidArgumentError(
                "OtlpAuditBackend needs opentelemetry-sdk and the OTLP exporters (install the "
                "'opentelemetry' extra)"
            ) from error
        self.endpoint = endpoint
        #: The transport in use: ``"grpc"`` or ``"http/protobuf"``.
        self.protocol = protocol
        self.max_batch_size = max_batch_size
        self.timeout_seconds = timeout_seconds
        if exporter is None:
            settings = (endpoint, protocol, dict(headers or {}), timeout_seconds)
            self._make_exporter: Any = lambda: _log_exporter(*settings)
            self._exporter: Any = self._make_exporter()
        else:
            self._make_exporter = None
            self._exporter = exporter
        self._resource = Resource.create(
            {"service.name": service_name, **dict(resource_attributes or {})}
        )
        self._scope = InstrumentationScope(_SCOPE)
        self._buffer: list[Any] = []
        self._lock = threading.Lock()
        self._export_lock = threading.Lock()
        self._closed = False
        self._failing = False
        #: Events the collector accepted.
        self.exported_events = 0
        #: Events in batches that failed to export (each failure also in ``failed_exports``).
        self.failed_events = 0
        #: Export calls that failed.
        self.failed_exports = 0
        #: The last export error.
        self.last_error: str | None = None
        self._in_flight = 0
        self._abandoned = False
        _fork.track(self, "_lock", "_export_lock", forget=OtlpAuditBackend._after_fork_in_child)
        with _OPEN_LOCK:
            _OPEN.add(self)

    def _after_fork_in_child(self) -> None:
        self._buffer = []
        self._in_flight = 0
        self.exported_events = self.failed_events = self.failed_exports = 0
        self.last_error = None
        self._failing = False
        if self._make_exporter is not None:
            # Built again on the first export here, never shut down from the child.
            self._exporter = None

    # -- building records --

    def _record(self, event: AuditEvent) -> Any:
        from opentelemetry import trace
        from opentelemetry._logs import LogRecord, SeverityNumber
        from opentelemetry.sdk._logs import ReadableLogRecord

        if event.status is AuditStatus.SUCCESS:
            severity, text = SeverityNumber.INFO, "INFO"
        elif event.status is AuditStatus.FAILURE:
            severity, text = SeverityNumber.ERROR, "ERROR"
        else:
            severity, text = SeverityNumber.WARN, "WARN"
        body = {k: v for k, v in event.to_dict().items() if v not in (None, "", {})}
        if event.metadata:
            # What protobuf's AnyValue can carry: one odd value must not fail the whole batch.
            body["metadata"] = _any_value(json_metadata(event.metadata))
        attributes: dict[str, Any] = {
            "audit.event_type": event.event_type.value,
            "audit.status": event.status.value,
        }
        for name, key in _ATTRIBUTES:
            value = getattr(event, name)
            if value not in (None, ""):
                attributes[key] = str(value)
        if event.duration_ms is not None:
            attributes["audit.duration_ms"] = float(event.duration_ms)
        trace_id = _hex_id(event.trace_id, 32)
        span_id = _hex_id(event.span_id, 16)
        context = None
        if trace_id is not None and span_id is not None:
            span_context = trace.SpanContext(
                trace_id, span_id, is_remote=False, trace_flags=trace.TraceFlags(1)
            )
            context = trace.set_span_in_context(trace.NonRecordingSpan(span_context))
        record = LogRecord(
            timestamp=((event.timestamp - _EPOCH) // _MICROSECOND) * 1000,
            observed_timestamp=time.time_ns(),
            context=context,
            severity_text=text,
            severity_number=severity,
            body=body,
            attributes=attributes,
            event_name=f"truthound.audit.{event.event_type.value}",
        )
        return ReadableLogRecord(record, resource=self._resource, instrumentation_scope=self._scope)

    # -- the backend protocol --

    def log(self, event: AuditEvent) -> bool:
        """Redacts, converts and buffers the event; exports when the batch is full."""
        if self._closed:
            raise AuditClosedError('"OtlpAuditBackend": the backend is closed')
        if not self._accepts(event):
            return True
        if self.redactor is not None:
            event = self.redactor.redact_event(event)
        record = self._record(event)
        with self._lock:
            self._buffer.append(record)
            full = len(self._buffer) >= self.max_batch_size
        if full:
            self._export()
        return True

    def _export(self) -> bool:
        with self._export_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
                self._in_flight = len(batch)
            if not batch:
                return True
            from opentelemetry.sdk._logs.export import LogRecordExportResult

            try:
                if self._exporter is None:
                    self._exporter = self._make_exporter()
                result = self._exporter.export(batch)
                error = None if result == LogRecordExportResult.SUCCESS else f"export: {result}"
            except Exception as caught:
                error = f"{type(caught).__name__}: {caught}"
            with self._lock:
                self._in_flight = 0
                if self._abandoned:
                    return False  # already counted as failed at interpreter exit
                if error is None:
                    self.exported_events += len(batch)
                    self._failing = False
                    return True
                self.failed_exports += 1
                self.failed_events += len(batch)
                self.last_error = error
                self._failing = True
                return False

    def flush(self) -> bool:
        """Exports what is buffered; ``False`` if the export failed (counted)."""
        return self._export()

    def close(self) -> None:
        """Exports what is buffered and shuts the exporter down. Idempotent."""
        if self._closed:
            return
        self._export()
        self._closed = True
        with _OPEN_LOCK:
            _OPEN.discard(self)
        if self._exporter is not None:
            self._exporter.shutdown()

    def _close_at_exit(self) -> None:
        """``close()`` within ``timeout_seconds``; what it could not export is counted in
        ``failed_events`` (the interpreter is about to end: it would be lost silently)."""
        if self._closed or not (self._buffer or self._in_flight):
            return
        outcome = call_with_timeout(self.close, self.timeout_seconds, "truthound-audit-otlp-exit")
        if outcome.finished and outcome.error is None:
            return
        with self._lock:
            lost = self._in_flight + len(self._buffer)
            if self._abandoned or (outcome.finished and not lost):
                if outcome.error is not None:  # the exporter's shutdown failed: nothing lost
                    self.last_error = f"{type(outcome.error).__name__}: {outcome.error}"
                return
            self._abandoned = True
            self._buffer = []
            self.failed_events += lost
            self.failed_exports += 1
            self.last_error = (
                f"interpreter exit: {lost} event(s) not exported within {self.timeout_seconds} s"
                if not outcome.finished
                else f"interpreter exit: {type(outcome.error).__name__}: {outcome.error}"
            )

    def healthy(self, timeout: float = 5.0) -> bool:
        """Open, and the last export (if any) succeeded."""
        return not self._closed and not self._failing

    def query(self, *args: Any, **kwargs: Any) -> list[AuditEvent]:
        """Export only: events are queried in the collector's store, not here."""
        return []

    @property
    def pending_events(self) -> int:
        """Events buffered, not yet exported."""
        return len(self._buffer)
