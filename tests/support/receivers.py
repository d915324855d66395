"""Loopback collectors shared by the export tests, each decoding with an independent
implementation.

* ``OtlpHttpReceiver``: ``POST /v1/traces`` decoded with the official ``opentelemetry-proto``
  classes (``ExportTraceServiceRequest``).
* ``OtlpGrpcReceiver``: a grpcio server implementing the official ``TraceService``.
* ``ZipkinReceiver``: ``POST /api/v2/spans``, JSON checked against the Zipkin v2 span model.
* ``JaegerReceiver``: ``POST /api/traces``, decoded by thriftpy2 from ``jaeger.thrift``.

Every receiver turns what it got into the same ``Received`` records so the tests can compare
them with the spans we produced.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Received:
    """One span as a collector saw it."""

    service_name: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str  # internal, server, client, producer, consumer
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: str  # unset, ok, error
    status_message: str
    start_ns: int
    end_ns: int
    links: list[tuple[str, str]] = field(default_factory=list)
    # What the exporter reported as dropped by limits (OTLP's dropped_*_count fields): the
    # span's attributes, events and links, then each event's and each link's attributes.
    dropped_attributes: int = 0
    dropped_events: int = 0
    dropped_links: int = 0
    event_dropped_attributes: list[int] = field(default_factory=list)
    link_dropped_attributes: list[int] = field(default_factory=list)


class _Collector:
    def __init__(self) -> None:
        self.spans: list[Received] = []
        self.requests = 0
        self.errors: list[str] = []
        self._cond = threading.Condition()

    def add(self, spans: list[Received]) -> None:
        with self._cond:
            self.requests += 1
            self.spans.extend(spans)
            self._cond.notify_all()

    def fail(self, message: str) -> None:
        with self._cond:
            self.errors.append(message)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.spans) < count and not self.errors:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            assert not self.errors, self.errors
            return list(self.spans)

    def by_name(self, name: str) -> Received:
        matches = [span for span in self.spans if span.name == name]
        assert len(matches) == 1, (name, [s.name for s in self.spans])
        return matches[0]


class _HttpReceiver(_Collector):
    path = "/"
    status = 200

    def __init__(self, port: int = 0) -> None:
        """Listens on ``port`` of the loopback interface (0: a free one); ``OSError`` when
        that port is taken."""
        super().__init__()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    if self.path.split("?")[0] != receiver.path:
                        raise AssertionError(f"unexpected path {self.path}")
                    spans = receiver.decode(body, dict(self.headers.items()))
                except Exception as error:
                    import traceback

                    receiver.fail(f"{type(error).__name__}: {error} {traceback.format_exc()}")
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver.add(spans)
                payload = receiver.response()
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def decode(self, body: bytes, headers: dict[str, str]) -> list[Received]:
        raise NotImplementedError

    def response(self) -> bytes:
        return b""

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- OTLP -------------------------------------------------------------------------------------

_OTLP_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_OTLP_STATUS = {0: "unset", 1: "ok", 2: "error"}


def _any_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_any_value(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


def _kv(attributes: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in attributes}


def decode_otlp(request: Any) -> list[Received]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = _kv(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            spans.extend(
                Received(
                    service_name=str(resource.get("service.name")),
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex() or None,
                    kind=_OTLP_KINDS[span.kind],
                    attributes=_kv(span.attributes),
                    events=[(e.name, _kv(e.attributes)) for e in span.events],
                    status=_OTLP_STATUS[span.status.code],
                    status_message=span.status.message,
                    start_ns=span.start_time_unix_nano,
                    end_ns=span.end_time_unix_nano,
                    links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                    dropped_attributes=span.dropped_attributes_count,
                    dropped_events=span.dropped_events_count,
                    dropped_links=span.dropped_links_count,
                    event_dropped_attributes=[e.dropped_attributes_count for e in span.events],
                    link_dropped_attributes=[link.dropped_attributes_count for link in span.links],
                )
                for span in scope_spans.spans
            )
    return spans


class OtlpHttpReceiver(_HttpReceiver):
    path = "/v1/traces"

    def decode(self, body: bytes, headers: dict[str, str]) -> list[Received]:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type")
        assert content_type == "application/x-protobuf", content_type
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        return decode_otlp(request)

    def response(self) -> bytes:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        return ExportTraceServiceResponse().SerializeToString()


class GrpcReceiver(_Collector):
    """A grpcio server on the loopback interface serving one official OTLP service."""

    def _serve(self, add_servicer: Any, servicer: Any, port: int = 0) -> None:
        """Listens on ``port`` (0: a free one); ``RuntimeError`` when that port is taken
        (exclusively: without ``SO_REUSEPORT``, so that two test runs on one machine cannot
        share a fixed port and receive each other's data)."""
        import grpc

        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.so_reuseport", 0)]
        )
        add_servicer(servicer, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.stop(grace=None).wait(5)


class OtlpGrpcReceiver(GrpcReceiver):
    """The official ``TraceService`` on ``port`` of the loopback interface (0: a free one)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__()
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC name)
                receiver.add(decode_otlp(request))
                return trace_service_pb2.ExportTraceServiceResponse()

        self._serve(trace_service_pb2_grpc.add_TraceServiceServicer_to_server, Service(), port)


# ---- Zipkin -----------------------------------------------------------------------------------

_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX_TRACE = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_ZIPKIN_KINDS = {"CLIENT", "SERVER", "PRODUCER", "CONSUMER"}


def validate_zipkin_span(span: dict[str, Any]) -> None:
    """The Zipkin v2 span model (zipkin2 API, ``Span`` definition)."""
    allowed = {
        "traceId", "name", "parentId", "id", "kind", "timestamp", "duration", "debug",
        "shared", "localEndpoint", "remoteEndpoint", "annotations", "tags",
    }  # fmt: skip
    assert set(span) <= allowed, set(span) - allowed
    assert _HEX_TRACE.fullmatch(span["traceId"]), span["traceId"]
    assert _HEX16.fullmatch(span["id"]), span["id"]
    if "parentId" in span:
        assert _HEX16.fullmatch(span["parentId"]), span["parentId"]
    if span.get("kind") is not None:  # Zipkin's decoder reads JSON null as "absent"
        assert span["kind"] in _ZIPKIN_KINDS, span["kind"]
    assert isinstance(span["timestamp"], int), span
    assert span["timestamp"] > 0, span
    assert isinstance(span["duration"], int), span
    assert span["duration"] >= 1, span
    assert isinstance(span["localEndpoint"]["serviceName"], str), span
    for key, value in span.get("tags", {}).items():
        assert isinstance(key, str), key
        assert isinstance(value, str), (key, value)
    for annotation in span.get("annotations", []):
        assert set(annotation) == {"timestamp", "value"}, annotation
        assert isinstance(annotation["timestamp"], int)
        assert isinstance(annotation["value"], str)


class ZipkinReceiver(_HttpReceiver):
    path = "/api/v2/spans"
    status = 202

    def decode(self, body: bytes, headers: dict[str, str]) -> list[Received]:
        payload = json.loads(body)
        assert isinstance(payload, list)
        spans = []
        for span in payload:
            validate_zipkin_span(span)
            tags = dict(span.get("tags", {}))
            status_code = tags.pop("otel.status_code", "UNSET").lower()
            message = tags.pop("error", "") if status_code == "error" else ""
            events = []
            for annotation in span.get("annotations", []):
                decoded = json.loads(annotation["value"])
                ((event_name, event_attributes),) = decoded.items()
                events.append((event_name, event_attributes))
            start_us = span["timestamp"]
            spans.append(
                Received(
                    service_name=span["localEndpoint"]["serviceName"],
                    name=span["name"],
                    trace_id=span["traceId"],
                    span_id=span["id"],
                    parent_span_id=span.get("parentId"),
                    kind=(span.get("kind") or "INTERNAL").lower(),
                    attributes=tags,
                    events=events,
                    status=status_code,
                    status_message=message,
                    start_ns=start_us * 1000,
                    end_ns=(start_us + span["duration"]) * 1000,
                )
            )
        return spans


# ---- Jaeger -----------------------------------------------------------------------------------

_U64 = 2**64


def _unsigned(value: int) -> int:
    return value % _U64


def _jaeger_tag(tag: Any) -> Any:
    return {0: tag.vStr, 1: tag.vDouble, 2: tag.vBool, 3: tag.vLong, 4: tag.vBinary}[tag.vType]


class JaegerReceiver(_HttpReceiver):
    path = "/api/traces"
    status = 202

    def __init__(self, port: int = 0) -> None:
        import thriftpy2

        self.thrift = thriftpy2.load(
            str(Path(__file__).with_name("jaeger.thrift")), module_name="jaeger_thrift"
        )
        self.batches: list[Any] = []
        super().__init__(port)

    def decode(self, body: bytes, headers: dict[str, str]) -> list[Received]:
        from thriftpy2.protocol import TBinaryProtocolFactory
        from thriftpy2.utils import deserialize

        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type")
        assert content_type == "application/x-thrift", content_type
        batch = deserialize(self.thrift.Batch(), body, TBinaryProtocolFactory())
        self.batches.append(batch)
        spans = []
        for span in batch.spans:
            tags = {tag.key: _jaeger_tag(tag) for tag in span.tags or []}
            kind = tags.pop("span.kind", "internal")
            status = str(tags.pop("otel.status_code", "unset")).lower()
            message = tags.pop("otel.status_description", "")
            tags.pop("error", None)
            trace_id = (_unsigned(span.traceIdHigh) << 64) | _unsigned(span.traceIdLow)
            start_ns = span.startTime * 1000
            events = []
            for log in span.logs or []:
                fields = {tag.key: _jaeger_tag(tag) for tag in log.fields}
                events.append((fields.pop("event"), fields))
            parent = _unsigned(span.parentSpanId)
            spans.append(
                Received(
                    service_name=batch.process.serviceName,
                    name=span.operationName,
                    trace_id=f"{trace_id:032x}",
                    span_id=f"{_unsigned(span.spanId):016x}",
                    parent_span_id=f"{parent:016x}" if parent else None,
                    kind=kind,
                    attributes=tags,
                    events=events,
                    status=status,
                    status_message=message,
                    start_ns=start_ns,
                    end_ns=start_ns + span.duration * 1000,
                    links=[
                        (
                            f"{(_unsigned(r.traceIdHigh) << 64) | _unsigned(r.traceIdLow):032x}",
                            f"{_unsigned(r.spanId):016x}",
                        )
                        for r in span.references or []
                        if r.refType == 1
                    ],
                )
            )
        return spans


# ---- a peer that never answers ------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
