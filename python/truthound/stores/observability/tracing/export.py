"""``OpenTelemetryTracer``: our spans, exported through the OpenTelemetry SDK.

The tracer owns its own ``TracerProvider`` (the application's global provider is left alone
unless ``set_global=True``) with a ``BatchSpanProcessor`` and one official exporter:

- ``"otlp"`` (default): OTLP. gRPC when ``protocol="grpc"``, the scheme is ``grpc://`` or the
  port is 4317 (and, as in OpenTelemetry, when no endpoint is given); HTTP/protobuf when
  ``protocol="http/protobuf"`` or for any other ``http(s)://`` URL (port 4318, ``/v1/traces``...).
  An HTTP URL without a path gets ``/v1/traces``.
- ``"jaeger"``: Jaeger's legacy collector URL (path ``/api/traces``, or port 14268) is sent
  Thrift over HTTP by ``JaegerThriftExporter`` (ours: OpenTelemetry for Python no longer ships
  one); any other endpoint uses OTLP as above, which Jaeger accepts natively.
- ``"zipkin"``: Zipkin JSON v2 (default ``http://localhost:9411/api/v2/spans``).
- ``"console"``: JSON on standard output.

Each span of ours is handed to the batch processor when it ends, as the SDK's ``ReadableSpan``
(what every processor and exporter consumes) with our ids, parent, kind, start and end times,
attributes, events, links and status: the exported span is exactly ours, down to what our
limits dropped (``dropped_attributes``/``dropped_events``/``dropped_links`` of the span and each
event's and link's ``dropped_attributes``, which OTLP sends as its ``dropped_*_count`` fields).
Unsampled spans are not exported (our sampler decides; the SDK's is always-on).
``flush()`` and ``shutdown()`` return within their timeout even when the endpoint never answers.
Spans that do not reach the collector are counted in ``dropped_spans``.

Forked children (pre-fork servers, ``multiprocessing``): the SDK's batch processor starts a
worker of its own in the child and drops the spans the parent had queued (the parent exports
them, once); the tracer's counters start at zero there, and an exporter the tracer built is
built again on the child's first export (an inherited one would share the parent's pooled
HTTP connections). A ``span_exporter`` you pass is kept as it is and must be fork-safe itself.
Pending spans are exported at interpreter exit and when a ``multiprocessing`` child finishes.
"""

from __future__ import annotations

import collections
import hashlib
import http.client
import json
import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from .. import _core, _fork, _otlp
from .._bounded import call_with_timeout
from ..config import TracingConfig
from ..errors import InvalidArgumentError
from .context import EMPTY_TRACE_STATE, SpanContext, SpanKind, SpanStatus, TraceState
from .span import Span
from .tracer import InMemoryTracer, _RecordingTracer

__all__ = ["JaegerThriftExporter", "OpenTelemetryTracer", "resolve_exporter"]

_logger = logging.getLogger(__name__)

#: Instrumentation scope of the exported spans.
SCOPE_NAME: Final = "truthound.stores.observability"
DEFAULT_TIMEOUT_SECONDS: Final = 10.0


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("truthound-store-observability")
    except Exception:  # pragma: no cover - running from a source tree
        return "0"


# ---- endpoint resolution ------------------------------------------------------------------------


def otlp_protocol(endpoint: str | None, protocol: str | None = None) -> str:
    """The OTLP transport for a span endpoint: ``"grpc"`` or ``"http/protobuf"`` (the rule every
    OTLP exporter of this package follows: see ``_otlp``)."""
    return _otlp.otlp_protocol(endpoint, protocol, "TRACES")


def is_jaeger_thrift_endpoint(endpoint: str) -> bool:
    """Whether an endpoint is Jaeger's legacy Thrift-over-HTTP collector URL."""
    url = urlsplit(endpoint)
    try:
        port = url.port
    except ValueError:
        return False
    return url.path.rstrip("/").endswith("/api/traces") or (port == 14268 and url.path in ("", "/"))


def _otlp_exporter(
    endpoint: str | None, protocol: str | None, headers: Mapping[str, str], timeout: float
) -> Any:
    return _otlp.exporter("traces", endpoint, otlp_protocol(endpoint, protocol), headers, timeout)


def resolve_exporter(
    exporter_type: str,
    endpoint: str | None,
    *,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> Any:
    """The OpenTelemetry ``SpanExporter`` for an exporter type and endpoint (see module doc)."""
    headers = headers or {}
    kind = exporter_type.strip().lower()
    if kind == "otlp":
        return _otlp_exporter(endpoint, protocol, headers, timeout_seconds)
    if kind == "jaeger":
        if endpoint is not None and protocol is None and is_jaeger_thrift_endpoint(endpoint):
            return JaegerThriftExporter(endpoint, headers=headers, timeout_seconds=timeout_seconds)
        return _otlp_exporter(endpoint, protocol, headers, timeout_seconds)
    if kind == "zipkin":
        from opentelemetry.exporter.zipkin.json import ZipkinExporter

        return ZipkinExporter(endpoint=endpoint, timeout=max(1, round(timeout_seconds)))
    if kind == "console":
        import sys

        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stdout)  # the current stdout, not the one at import
    raise InvalidArgumentError(
        f"exporter_type={exporter_type!r}: expected 'otlp', 'jaeger', 'zipkin' or 'console'"
    )


# ---- Jaeger Thrift over HTTP --------------------------------------------------------------------

_JAEGER_KIND: Final = {
    "CLIENT": "client",
    "SERVER": "server",
    "PRODUCER": "producer",
    "CONSUMER": "consumer",
}


def _jaeger_value(value: Any) -> Any:
    if isinstance(value, str | bool | int | float | bytes):
        return value
    if isinstance(value, Sequence):
        return json.dumps(list(value), default=str)
    return str(value)


def _jaeger_tags(attributes: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    return [(key, _jaeger_value(value)) for key, value in (attributes or {}).items()]


def jaeger_span(span: Any) -> tuple[Any, ...]:
    """An OpenTelemetry ``ReadableSpan`` in the layout of ``encode_jaeger_batch``.

    Mapping (OpenTelemetry's Jaeger translation): kind → tag ``span.kind`` (internal: none);
    status → ``otel.status_code`` / ``otel.status_description`` and ``error=true`` on ERROR;
    scope → ``otel.scope.name``/``otel.scope.version``; events → logs with an ``event`` field;
    parent → ``parentSpanId`` and a ``CHILD_OF`` reference; links → ``FOLLOWS_FROM``; what the
    limits dropped → ``otel.dropped_attributes_count``/``otel.dropped_events_count``/
    ``otel.dropped_links_count`` (when not zero, as OpenTelemetry asks of non-OTLP exporters).
    """
    context = span.context
    parent = span.parent
    tags = _jaeger_tags(span.attributes)
    kind = _JAEGER_KIND.get(span.kind.name)
    if kind is not None:
        tags.append(("span.kind", kind))
    status = span.status
    if status.status_code.name != "UNSET":
        tags.append(("otel.status_code", status.status_code.name))
        if status.status_code.name == "ERROR":
            tags.append(("error", True))
            if status.description:
                tags.append(("otel.status_description", status.description))
    scope = span.instrumentation_scope
    if scope is not None:
        tags.append(("otel.scope.name", scope.name))
        if scope.version:
            tags.append(("otel.scope.version", scope.version))
    for key, count in (
        ("otel.dropped_attributes_count", span.dropped_attributes),
        ("otel.dropped_events_count", span.dropped_events),
        ("otel.dropped_links_count", span.dropped_links),
    ):
        if count:
            tags.append((key, count))
    references = []
    if parent is not None:
        references.append((0, context.trace_id, parent.span_id))
    references.extend((1, link.context.trace_id, link.context.span_id) for link in span.links)
    start = span.start_time or 0
    end = span.end_time or start
    logs = [
        (event.timestamp // 1000, [("event", event.name), *_jaeger_tags(event.attributes)])
        for event in span.events
    ]
    return (
        context.trace_id,
        context.span_id,
        parent.span_id if parent is not None else 0,
        span.name,
        int(context.trace_flags) & 0xFF,
        start // 1000,
        (end - start) // 1000,
        references,
        tags,
        logs,
    )


class JaegerThriftExporter:
    """OpenTelemetry ``SpanExporter`` for Jaeger's collector: Thrift (binary protocol) over HTTP.

    ``JaegerThriftExporter("http://localhost:14268/api/traces", headers=None,
    timeout_seconds=10)`` POSTs one ``jaeger.thrift`` ``Batch`` per service (``Content-Type:
    application/x-thrift``). The encoding is done by the selected core. A 2xx answer is a
    success; anything else, or no answer within the timeout, is a failure.
    """

    def __init__(
        self,
        endpoint: str = "http://localhost:14268/api/traces",
        *,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InvalidArgumentError(f"endpoint={endpoint!r}: expected an http(s):// URL")
        self.endpoint = endpoint
        self._url = url
        self._headers = {"Content-Type": "application/x-thrift", **(headers or {})}
        self.timeout_seconds = timeout_seconds
        self._core = _core.core
        self._shutdown = False

    def encode(self, spans: Sequence[Any]) -> list[tuple[str, bytes]]:
        """``(service name, Thrift Batch)`` for each service among ``spans``."""
        by_resource: dict[int, tuple[Any, list[Any]]] = {}
        for span in spans:
            by_resource.setdefault(id(span.resource), (span.resource, []))[1].append(span)
        batches = []
        for resource, group in by_resource.values():
            attributes = dict(resource.attributes)
            service = str(attributes.pop("service.name", "unknown_service"))
            batches.append(
                (
                    service,
                    self._core.encode_jaeger_batch(
                        service, _jaeger_tags(attributes), [jaeger_span(s) for s in group]
                    ),
                )
            )
        return batches

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            for _service, body in self.encode(spans):
                self._post(body)
        except Exception as error:
            _logger.warning("Jaeger export to %s failed: %s", self.endpoint, error)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _post(self, body: bytes) -> None:
        url = self._url
        connection_type = (
            http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_type(url.hostname or "", url.port, timeout=self.timeout_seconds)
        try:
            path = url.path or "/api/traces"
            if url.query:
                path = f"{path}?{url.query}"
            connection.request("POST", path, body=body, headers=self._headers)
            response = connection.getresponse()
            response.read()
            if not 200 <= response.status < 300:
                raise OSError(f"HTTP {response.status} {response.reason}")
        finally:
            connection.close()

    def shutdown(self) -> None:
        self._shutdown = True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


# ---- the tracer ---------------------------------------------------------------------------------


def _bounded(call: Callable[[], Any], timeout_seconds: float) -> bool:
    """Runs ``call`` on a helper thread; False if it did not finish in time, raised (logged) or
    returned False."""
    outcome = call_with_timeout(call, timeout_seconds, "truthound-tracing-bounded")
    if outcome.error is not None:
        _logger.warning("tracing flush/shutdown failed: %s", outcome.error)
    return outcome.succeeded


_PRIMITIVES: Final = (str, bool, int, float)


def _otel_value(value: Any) -> Any:
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, _PRIMITIVES) for v in value):
        return tuple(value)
    return str(value)


def _otel_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not attributes:
        return None
    for value in attributes.values():
        if value.__class__ not in _PRIMITIVES:
            return {key: _otel_value(v) for key, v in attributes.items() if v is not None}
    return dict(attributes)


def _counted_attributes(
    otel: _OtelTypes, attributes: Mapping[str, Any] | None, dropped: int, empty: Any = None
) -> Any:
    """``attributes`` for the SDK (``empty`` when there are none), carrying ``dropped``: the SDK
    reads a dropped count only from its ``BoundedAttributes`` (unbounded here: our limit has
    already been applied). Events pass ``{}`` as ``empty``: exporters read an event's
    attributes as a mapping (Zipkin's fails the whole batch on an event without any)."""
    converted = _otel_attributes(attributes)
    if not dropped:
        return empty if converted is None else converted
    counted = otel.BoundedAttributes(None, converted, immutable=True)
    counted.dropped += dropped
    return counted


def _counted_list(otel: _OtelTypes, items: list[Any], dropped: int) -> Any:
    """``items`` for the SDK, carrying ``dropped`` (read only from its ``BoundedList``)."""
    if not dropped:
        return items
    counted = otel.BoundedList.from_seq(None, items)
    counted.dropped = dropped
    return counted


def _derived_id(text: str, digits: int) -> int:
    """A stable non-zero id for an id that is not valid W3C hex (existing API's free-form ids)."""
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=digits // 2).digest(), "big")
    return value or 1


def _int_id(text: str | None, digits: int) -> int:
    if not text:
        return 0
    if len(text) == digits:
        try:
            value = int(text, 16)
        except ValueError:
            pass
        else:
            if value and text == text.lower():
                return value
    return _derived_id(text, digits)


def _shutdown_at_exit(reference: weakref.ReferenceType[OpenTelemetryTracer]) -> None:
    tracer = reference()
    if tracer is not None:
        tracer.shutdown()


class OpenTelemetryTracer(_RecordingTracer):
    """Production tracer: our spans exported with the OpenTelemetry SDK (see module doc).

    ``OpenTelemetryTracer(config=None, *, service_name=, endpoint=, exporter_type="otlp",
    protocol=None, headers=None, timeout_seconds=10, span_exporter=None,
    resource_attributes=None, set_global=False, inherit_opentelemetry_context=True,
    max_queue_size=2048, schedule_delay_millis=5000, max_export_batch_size=512, ...)``; the
    config (``TracingConfig``) supplies what the keywords leave out. ``span_exporter`` replaces
    the built exporter (any OpenTelemetry ``SpanExporter``). With
    ``inherit_opentelemetry_context`` a root span of ours continues the application's current
    OpenTelemetry span, so store spans appear inside the request that caused them.

    Counters: ``exported_spans`` (accepted by the collector) and ``dropped_spans`` (refused,
    failed, lost to a full queue, or still pending when shutdown gave up). Without OpenTelemetry
    installed, it warns once and keeps spans in memory (``get_spans()``), as the existing API did.
    """

    def __init__(
        self,
        config: TracingConfig | None = None,
        *,
        service_name: str | None = None,
        endpoint: str | None = None,
        exporter_type: str | None = None,
        protocol: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        span_exporter: Any = None,
        resource_attributes: Mapping[str, Any] | None = None,
        set_global: bool = False,
        inherit_opentelemetry_context: bool = True,
        max_queue_size: int = 2048,
        schedule_delay_millis: float = 5000,
        max_export_batch_size: int = 512,
        **options: Any,
    ) -> None:
        super().__init__(config, service_name=service_name, **options)
        exporter_type = exporter_type or self.config.exporter
        if exporter_type == "noop":
            exporter_type = "otlp"
        self.exporter_type = exporter_type
        self.endpoint = endpoint if endpoint is not None else self.config.endpoint
        if timeout_seconds <= 0:
            raise InvalidArgumentError(f"timeout_seconds={timeout_seconds!r}: must be positive")
        self.timeout_seconds = timeout_seconds
        self._count_lock = threading.Lock()
        self._submitted = self._exported = self._failed = self._overflowed = 0
        _fork.track(self, "_count_lock", forget=OpenTelemetryTracer._after_fork_in_child)
        self._closed = False
        self._fallback: InMemoryTracer | None = None
        self._inherit = inherit_opentelemetry_context
        try:
            from opentelemetry import trace as trace_api
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import SpanLimits, TracerProvider
            from opentelemetry.sdk.trace.sampling import ALWAYS_ON
            from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        except ImportError as error:
            import warnings

            warnings.warn(
                f"OpenTelemetry is not installed ({error}); spans are kept in memory instead of "
                "being exported. Install truthound-store-observability[opentelemetry].",
                RuntimeWarning,
                stacklevel=2,
            )
            self._fallback = InMemoryTracer(self.config)
            self.provider = None
            return
        self._api = trace_api
        make_exporter: Callable[[], Any] | None = None
        if span_exporter is None:
            all_headers = {**self.config.headers, **(headers or {})}

            def make_exporter() -> Any:
                return resolve_exporter(
                    exporter_type,
                    self.endpoint,
                    protocol=protocol,
                    headers=all_headers,
                    timeout_seconds=timeout_seconds,
                )

            span_exporter = make_exporter()
        self.span_exporter = span_exporter
        self._counting_exporter = _CountingExporter(span_exporter, self, make_exporter)
        self._processor = _counting_processor(
            self._counting_exporter,
            self,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
        )
        max_attributes, max_events, max_links = self._limits
        self._resource = Resource.create(
            {**(resource_attributes or {}), "service.name": self.service_name}
        )
        self._scope = InstrumentationScope(SCOPE_NAME, _version())
        # Our spans go straight to the processor; the provider exists so that the application
        # can send its own spans through the same pipeline (``set_global=True``).
        self.provider = TracerProvider(
            sampler=ALWAYS_ON,
            resource=self._resource,
            span_limits=SpanLimits(
                max_span_attributes=max_attributes,
                max_events=max_events,
                max_links=max_links,
                max_event_attributes=max_attributes,
                max_link_attributes=max_attributes,
            ),
            shutdown_on_exit=False,
        )
        self.provider.add_span_processor(self._processor)
        self._otel = _OtelTypes()
        if set_global:
            trace_api.set_tracer_provider(self.provider)
        _fork.at_exit(_shutdown_at_exit, weakref.ref(self))

    def _after_fork_in_child(self) -> None:
        # The SDK's processor dropped the parent's queued spans in the child: so do the counts.
        self._submitted = self._exported = self._failed = self._overflowed = 0
        if getattr(self, "provider", None) is not None:
            self._counting_exporter._after_fork_in_child()

    # -- counters --------------------------------------------------------------------------------

    @property
    def exported_spans(self) -> int:
        """Spans the exporter delivered."""
        return self._exported

    @property
    def dropped_spans(self) -> int:
        """Spans that did not reach the collector: export failures, a full queue, spans ended
        after shutdown, and (once ``shutdown`` has run) everything it could not deliver."""
        with self._count_lock:
            if self._closed:
                return self._submitted - self._exported
            return self._failed + self._overflowed

    def get_spans(self) -> list[Span]:
        """Spans kept in memory when OpenTelemetry is not installed (else empty)."""
        return self._fallback.get_spans() if self._fallback is not None else []

    # -- spans -----------------------------------------------------------------------------------

    def _ambient_parent(self) -> SpanContext | None:
        if not self._inherit or self._fallback is not None:
            return None
        context = self._api.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        state = context.trace_state
        return SpanContext._new(
            f"{context.trace_id:032x}",
            f"{context.span_id:016x}",
            None,
            int(context.trace_flags) & 0xFF,
            TraceState(list(state.items())) if state else EMPTY_TRACE_STATE,
            context.is_remote,
        )

    def _on_end(self, span: Span) -> None:
        if self._fallback is not None:
            self._fallback._on_end(span)
            return
        with self._count_lock:
            self._submitted += 1
        # The finished span goes to the batch processor as the SDK's own ReadableSpan (the type
        # every SpanProcessor and SpanExporter consumes), built from ours: the SDK's live-span
        # machinery (sampler, locks, per-call validation) would only repeat what ours did.
        otel = self._otel
        context = span.context
        trace_id = _int_id(context.trace_id, 32)
        state = context.trace_state
        otel_state = otel.TraceState(list(state.items())) if state else None
        parent = span.parent_context
        parent_context = None
        if parent is not None:
            parent_span_id = _int_id(parent.span_id, 16)
            if parent_span_id:
                parent_context = otel.SpanContext(
                    trace_id,
                    parent_span_id,
                    parent.is_remote,
                    otel.TraceFlags(parent.trace_flags & 0xFF),
                    otel_state,
                )
        events = span._events
        links = span._links
        status = span.status
        dropped = span._dropped or _NOTHING_DROPPED
        self._processor.on_end(
            otel.ReadableSpan(
                name=span.name,
                context=otel.SpanContext(
                    trace_id,
                    _int_id(context.span_id, 16),
                    False,
                    otel.SAMPLED,
                    otel_state,
                ),
                parent=parent_context,
                resource=self._resource,
                attributes=_counted_attributes(otel, span._attributes, dropped[0]),
                events=_counted_list(
                    otel,
                    [
                        otel.Event(
                            e.name,
                            _counted_attributes(otel, e.attributes, e.dropped_attributes, {}),
                            e.timestamp_ns,
                        )
                        for e in events
                    ]
                    if events
                    else [],
                    dropped[1],
                ),
                links=_counted_list(
                    otel,
                    [
                        otel.Link(
                            otel.SpanContext(
                                _int_id(link.context.trace_id, 32),
                                _int_id(link.context.span_id, 16),
                                link.context.is_remote,
                                otel.TraceFlags(link.context.trace_flags & 0xFF),
                            ),
                            _counted_attributes(otel, link.attributes, link.dropped_attributes),
                        )
                        for link in links
                    ]
                    if links
                    else [],
                    dropped[2],
                ),
                kind=otel.KINDS[span.kind],
                status=otel.OK
                if status is SpanStatus.OK
                else otel.Status(otel.StatusCode.ERROR, span.status_message or None)
                if status is SpanStatus.ERROR
                else otel.UNSET,
                start_time=span.start_time_ns,
                end_time=span.end_time_ns,
                instrumentation_scope=self._scope,
            )
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Exports every pending span; False if that did not finish within the timeout."""
        if self.provider is None or self._closed:
            return self.provider is None
        timeout = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        return _bounded(lambda: self._processor.force_flush(int(timeout * 1000)), timeout)

    def shutdown(self, timeout_seconds: float | None = None) -> bool:
        """Exports what is pending and stops the exporter, within the timeout (idempotent).

        Whatever is not delivered by then counts in ``dropped_spans``.
        """
        if self.provider is None:
            return True
        with self._count_lock:
            if self._closed:
                return True
            self._closed = True
        timeout = self.timeout_seconds if timeout_seconds is None else timeout_seconds
        provider = self.provider
        return _bounded(provider.shutdown, timeout)


_NOTHING_DROPPED: Final = (0, 0, 0)


class _OtelTypes:
    """The OpenTelemetry names the export path uses, resolved once."""

    def __init__(self) -> None:
        from opentelemetry import trace as trace_api
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk.trace import Event, ReadableSpan
        from opentelemetry.sdk.util import BoundedList
        from opentelemetry.trace import Link, Status, StatusCode, TraceFlags
        from opentelemetry.trace import SpanContext as OtelSpanContext
        from opentelemetry.trace.span import TraceState as OtelTraceState

        self.ReadableSpan = ReadableSpan
        self.Event = Event
        self.BoundedAttributes = BoundedAttributes
        self.BoundedList = BoundedList
        self.SpanContext = OtelSpanContext
        self.TraceFlags = TraceFlags
        self.SAMPLED = TraceFlags(TraceFlags.SAMPLED)
        self.TraceState = OtelTraceState
        self.Link = Link
        self.Status = Status
        self.StatusCode = StatusCode
        self.OK = Status(StatusCode.OK)
        self.UNSET = Status(StatusCode.UNSET)
        self.KINDS = {kind: getattr(trace_api.SpanKind, kind.name) for kind in SpanKind}


class _CountingExporter:
    """Delegates to the real exporter and counts delivered and failed spans. In a forked child,
    an exporter it can make again (``make``) is replaced on the first export there."""

    def __init__(
        self, exporter: Any, owner: OpenTelemetryTracer, make: Callable[[], Any] | None = None
    ) -> None:
        self._exporter = exporter
        self._owner = owner
        self._make = make
        self._stale = False

    def _after_fork_in_child(self) -> None:
        # The inherited exporter may hold the parent's pooled connections: never used (nor shut
        # down) here. The SDK's worker of this process builds the new one on its first export.
        self._stale = self._make is not None

    def _current(self) -> Any:
        if self._stale and self._make is not None:
            self._exporter = self._owner.span_exporter = self._make()
            self._stale = False
        return self._exporter

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self._current().export(spans)
        except Exception as error:
            _logger.warning("span export failed: %s", error)
            result = SpanExportResult.FAILURE
        owner = self._owner
        with owner._count_lock:
            if result is SpanExportResult.SUCCESS:
                owner._exported += len(spans)
            else:
                owner._failed += len(spans)
        return result

    def shutdown(self) -> None:
        if not self._stale:
            self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._stale or bool(self._exporter.force_flush(timeout_millis))


class _CountingQueue(collections.deque):  # type: ignore[type-arg]
    """The SDK batch processor's queue, counting the spans it evicts when full.

    The SDK appends to a bounded deque, which silently evicts the oldest span when full; its own
    "queue full" check runs before the append, so a worker draining in between makes it count a
    drop that did not happen (or miss one). Here the check and the append are one step with
    respect to the worker's ``pop``, so the count is exact."""

    # Compared and hashed by identity, so the fork tracker (weak keys) can hold it.
    __eq__ = object.__eq__
    __hash__ = object.__hash__  # type: ignore[assignment]

    def __init__(self, maxlen: int, on_evicted: Callable[[], None]) -> None:
        super().__init__(maxlen=maxlen)
        self._lock = threading.Lock()
        self._on_evicted = on_evicted
        _fork.track(self, "_lock")  # (the worker may hold it when the process forks)

    def appendleft(self, item: Any) -> None:
        with self._lock:
            evicts = len(self) == self.maxlen
            super().appendleft(item)
        if evicts:
            self._on_evicted()

    def pop(self) -> Any:  # type: ignore[override]  # (deque.pop takes no index)
        with self._lock:
            return super().pop()


def _counting_processor(exporter: Any, owner: OpenTelemetryTracer, **options: Any) -> Any:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    def evicted() -> None:
        with owner._count_lock:
            owner._overflowed += 1

    class CountingBatchSpanProcessor(BatchSpanProcessor):
        """The SDK's batch processor, counting the spans it discards on a full queue or after
        shutdown (it only logs them)."""

        def __init__(self, exporter: Any, **options: Any) -> None:
            super().__init__(exporter, **options)
            # Guarded so that a change of the SDK's internals disables the count instead of
            # breaking export.
            batch = getattr(self, "_batch_processor", None)
            queue = getattr(batch, "_queue", None)
            if isinstance(queue, collections.deque) and queue.maxlen is not None and not queue:
                batch._queue = _CountingQueue(queue.maxlen, evicted)  # type: ignore[union-attr]

        def on_end(self, span: Any) -> None:
            if getattr(getattr(self, "_batch_processor", None), "_shutdown", False):
                evicted()  # the SDK ignores spans ended after shutdown
            super().on_end(span)

    return CountingBatchSpanProcessor(exporter, **options)
