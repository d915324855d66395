"""OpenTelemetry export reaches real collectors on loopback (OTLP HTTP and gRPC, Zipkin, Jaeger).

Each collector decodes with an independent implementation (official ``opentelemetry-proto``
classes, grpcio with the official service, the Zipkin v2 model, thriftpy2 with Jaeger's IDL) and
the test compares what arrived with the spans we produced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest
from receivers import Received, wait_until

from truthound.stores.observability.config import TracingConfig
from truthound.stores.observability.tracing import (
    JaegerThriftExporter,
    OpenTelemetryTracer,
    SpanContext,
    SpanKind,
    SpanStatus,
    resolve_exporter,
)

pytestmark = pytest.mark.timeout(120)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE = "00f067aa0ba902b7"
LINKED = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331")


def produce(tracer: OpenTelemetryTracer) -> dict[str, Any]:
    """A remote-parented CLIENT span with a failing INTERNAL child, as a store would make."""
    incoming = SpanContext.from_traceparent(f"00-{TRACE}-{REMOTE}-01", "vendor=value")
    with tracer.start_span("store.read", kind=SpanKind.CLIENT, parent=incoming) as parent:
        parent.set_attribute("store.type", "s3")
        parent.set_attribute("item.count", 3)
        parent.set_attribute("hit.ratio", 0.5)
        parent.set_attribute("cached", False)
        parent.add_event("cache.miss", {"key": "run-123"})
        parent.add_link(SpanContext(*LINKED))
        with (
            pytest.raises(ValueError, match="bad payload"),
            tracer.start_span("store.decode") as child,
        ):
            raise ValueError("bad payload")
        parent.set_status(SpanStatus.OK)
    return {"parent": parent, "child": child}


def check(received: list[Received], spans: dict[str, Any], *, typed: bool = True) -> None:
    """What every collector must have seen (``typed=False``: Zipkin tags are strings)."""
    parent, child = spans["parent"], spans["child"]
    by_name = {span.name: span for span in received}
    assert set(by_name) == {"store.read", "store.decode"}
    got_parent, got_child = by_name["store.read"], by_name["store.decode"]
    assert {got_parent.service_name, got_child.service_name} == {"svc-test"}
    assert got_parent.trace_id == got_child.trace_id == TRACE
    assert (got_parent.span_id, got_parent.parent_span_id) == (parent.span_id, REMOTE)
    assert (got_child.span_id, got_child.parent_span_id) == (child.span_id, parent.span_id)
    assert (got_parent.kind, got_child.kind) == ("client", "internal")
    expected = {"store.type": "s3", "item.count": 3, "hit.ratio": 0.5, "cached": False}
    if not typed:
        expected = {"store.type": "s3", "item.count": "3", "hit.ratio": "0.5", "cached": "false"}
    for key, value in expected.items():
        assert got_parent.attributes[key] == value, key
    assert got_parent.attributes["service.name"] == "svc-test"
    assert got_parent.events == [("cache.miss", {"key": "run-123"})]
    assert (got_parent.status, got_child.status) == ("ok", "error")
    assert got_child.status_message == "bad payload"
    (exception_name, exception_attributes) = got_child.events[0]
    assert exception_name == "exception"
    assert exception_attributes["exception.type"] == "ValueError"
    # The exported lifetime is ours (collectors keep microseconds: start and duration are
    # each truncated, so the end may be off by two).
    assert abs(got_parent.start_ns - parent.start_time_ns) < 1000
    assert abs(got_parent.end_ns - parent.end_time_ns) < 2000


def make(endpoint: str, exporter_type: str, **options: Any) -> OpenTelemetryTracer:
    return OpenTelemetryTracer(
        service_name="svc-test",
        endpoint=endpoint,
        exporter_type=exporter_type,
        timeout_seconds=10,
        schedule_delay_millis=50,
        **options,
    )


def run(tracer: OpenTelemetryTracer, collector: Any) -> tuple[list[Received], dict[str, Any]]:
    try:
        spans = produce(tracer)
        assert tracer.flush(timeout_seconds=20)
        received = collector.wait_for(2)
        assert tracer.exported_spans == 2
        assert tracer.dropped_spans == 0
    finally:
        assert tracer.shutdown(timeout_seconds=10)
    return received, spans


def test_otlp_http(otlp_http: Any) -> None:
    received, spans = run(make(otlp_http.endpoint, "otlp"), otlp_http)
    check(received, spans)
    (link,) = received[-1].links if received[-1].name == "store.read" else received[0].links
    assert link == LINKED


def over_the_limits(tracer: OpenTelemetryTracer) -> Any:
    """A span past every default limit (128): attributes, events, links, and the attributes of
    one event and one link."""
    with tracer.start_span("limited") as span:
        for i in range(200):  # with service.name: 201, so 73 dropped
            span.set_attribute(f"attr.{i}", i)
        span.add_event("big", {f"e.{i}": i for i in range(200)})  # 72 of its attributes dropped
        for i in range(129):  # 130 events: 2 dropped
            span.add_event(f"small.{i}")
        span.add_link(SpanContext(*LINKED), {f"l.{i}": i for i in range(150)})  # 22 dropped
        for _ in range(129):  # 130 links: 2 dropped
            span.add_link(SpanContext(TRACE, REMOTE))
    return span


@pytest.mark.parametrize("collector", ["otlp_http", "otlp_grpc"])
def test_drop_counts_reach_the_otlp_collector(collector: str, request: Any) -> None:
    """What the limits dropped arrives as OTLP's dropped_*_count fields, exactly as counted."""
    receiver = request.getfixturevalue(collector)
    protocol = "grpc" if collector == "otlp_grpc" else None
    tracer = make(receiver.endpoint, "otlp", protocol=protocol)
    try:
        span = over_the_limits(tracer)
        assert tracer.flush(timeout_seconds=20)
        (got,) = receiver.wait_for(1)
    finally:
        assert tracer.shutdown(timeout_seconds=10)
    assert (span.dropped_attributes, span.dropped_events, span.dropped_links) == (73, 2, 2)
    assert (got.dropped_attributes, got.dropped_events, got.dropped_links) == (73, 2, 2)
    assert len(got.attributes) == 128
    assert len(got.events) == 128
    assert len(got.links) == 128
    assert got.events[0][0] == "big"
    assert got.events[0][1] == {f"e.{i}": i for i in range(128)}  # the first ones are kept
    assert got.event_dropped_attributes == [72] + [0] * 127
    assert got.link_dropped_attributes == [22] + [0] * 127


def test_drop_counts_follow_the_configured_limits(otlp_http: Any) -> None:
    """With a zero attribute limit nothing is kept, and every attribute is still counted."""
    tracer = make(otlp_http.endpoint, "otlp", max_attributes=0, max_events=1, max_links=0)
    try:
        with tracer.start_span("zero") as span:
            span.set_attribute("a", 1)
            span.add_event("first", {"x": 1, "y": 2})
            span.add_event("second")
            span.add_link(SpanContext(*LINKED), {"z": 3})
        assert tracer.flush(timeout_seconds=20)
        (got,) = otlp_http.wait_for(1)
    finally:
        assert tracer.shutdown(timeout_seconds=10)
    assert (got.attributes, got.events, got.links) == ({}, [("first", {})], [])
    assert (got.dropped_attributes, got.dropped_events, got.dropped_links) == (1, 1, 1)
    assert got.event_dropped_attributes == [2]


def test_drop_counts_reach_zipkin_as_tags(zipkin: Any) -> None:
    tracer = make(zipkin.endpoint, "zipkin")
    try:
        over_the_limits(tracer)
        assert tracer.flush(timeout_seconds=20)
        (got,) = zipkin.wait_for(1)
    finally:
        assert tracer.shutdown(timeout_seconds=10)
    assert got.attributes["otel.dropped_attributes_count"] == "73"
    assert got.attributes["otel.dropped_events_count"] == "2"
    assert got.attributes["otel.dropped_links_count"] == "2"


def test_drop_counts_reach_jaeger_as_tags(jaeger: Any) -> None:
    tracer = make(jaeger.endpoint, "jaeger")
    try:
        over_the_limits(tracer)
        assert tracer.flush(timeout_seconds=20)
        (got,) = jaeger.wait_for(1)
        assert tracer.exported_spans == 1
    finally:
        assert tracer.shutdown(timeout_seconds=10)
    assert len(got.events) == 128
    assert got.events[0] == ("big", {f"e.{i}": i for i in range(128)})
    assert got.attributes["otel.dropped_attributes_count"] == 73
    assert got.attributes["otel.dropped_events_count"] == 2
    assert got.attributes["otel.dropped_links_count"] == 2


def test_otlp_http_base_url_gets_the_signal_path(otlp_http: Any) -> None:
    base = otlp_http.endpoint.removesuffix("/v1/traces")
    received, spans = run(make(base, "otlp", protocol="http/protobuf"), otlp_http)
    check(received, spans)


def test_otlp_grpc(otlp_grpc: Any) -> None:
    received, spans = run(make(otlp_grpc.endpoint, "otlp", protocol="grpc"), otlp_grpc)
    check(received, spans)


def test_jaeger_over_otlp(otlp_grpc: Any) -> None:
    """Jaeger accepts OTLP natively: any endpoint that is not the legacy URL uses OTLP."""
    received, spans = run(make(otlp_grpc.endpoint, "jaeger", protocol="grpc"), otlp_grpc)
    check(received, spans)


def test_zipkin(zipkin: Any) -> None:
    received, spans = run(make(zipkin.endpoint, "zipkin"), zipkin)
    check(received, spans, typed=False)


def test_jaeger_thrift_over_http(jaeger: Any) -> None:
    received, spans = run(make(jaeger.endpoint, "jaeger"), jaeger)
    check(received, spans)
    parent = next(span for span in received if span.name == "store.read")
    assert parent.links == [LINKED]
    (batch,) = jaeger.batches
    process_tags = {tag.key for tag in batch.process.tags}
    assert "telemetry.sdk.name" in process_tags
    assert "service.name" not in process_tags


def test_jaeger_exporter_is_chosen_for_the_legacy_url() -> None:
    exporter = resolve_exporter("jaeger", "http://localhost:14268/api/traces")
    assert isinstance(exporter, JaegerThriftExporter)
    assert not isinstance(resolve_exporter("jaeger", "http://localhost:4317"), JaegerThriftExporter)


@pytest.mark.parametrize(
    ("exporter_type", "endpoint", "protocol", "module"),
    [
        ("otlp", "http://localhost:4317", None, "grpc"),
        ("otlp", "localhost:4317", None, "grpc"),
        ("otlp", "grpc://collector:55680", None, "grpc"),
        ("otlp", "http://localhost:4318", None, "http"),
        ("otlp", "http://localhost:4318/v1/traces", None, "http"),
        ("otlp", "https://collector.example/v1/traces", None, "http"),
        ("otlp", "http://localhost:4317", "http/protobuf", "http"),
        ("otlp", "http://localhost:9999", "grpc", "grpc"),
        ("jaeger", "http://localhost:4318", None, "http"),
        ("zipkin", "http://localhost:9411/api/v2/spans", None, "zipkin"),
        ("console", None, None, "sdk.trace.export"),
    ],
)
def test_exporter_selection(
    exporter_type: str, endpoint: str | None, protocol: str | None, module: str
) -> None:
    exporter = resolve_exporter(exporter_type, endpoint, protocol=protocol)
    try:
        assert module in type(exporter).__module__
    finally:
        exporter.shutdown()


def test_unsampled_spans_are_not_exported(otlp_http: Any) -> None:
    tracer = make(otlp_http.endpoint, "otlp", sampler="always_off")
    try:
        with tracer.start_span("dropped-by-sampling"):
            pass
        unsampled = SpanContext.from_traceparent(f"00-{TRACE}-{REMOTE}-00")
        parent_based = make(otlp_http.endpoint, "otlp")
        with parent_based.start_span("unsampled-parent", parent=unsampled):
            pass
        with parent_based.start_span("sampled"):
            pass
        assert tracer.flush(10)
        assert parent_based.flush(10)
        assert [span.name for span in otlp_http.wait_for(1)] == ["sampled"]
        parent_based.shutdown(5)
    finally:
        tracer.shutdown(5)


def test_the_global_tracer_provider_is_left_alone(otlp_http: Any) -> None:
    from opentelemetry import trace

    before = trace.get_tracer_provider()
    tracer = make(otlp_http.endpoint, "otlp")
    try:
        assert trace.get_tracer_provider() is before
        assert tracer.provider is not before
    finally:
        tracer.shutdown(5)


def test_a_root_span_continues_the_applications_opentelemetry_span(otlp_http: Any) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    application = TracerProvider().get_tracer("app")
    tracer = make(otlp_http.endpoint, "otlp")
    try:
        with (
            application.start_as_current_span("request") as request,
            tracer.start_span("store.read") as span,
        ):
            pass
        context = request.get_span_context()
        assert span.trace_id == f"{context.trace_id:032x}"
        assert span.parent_span_id == f"{context.span_id:016x}"
        assert tracer.flush(10)
        (got,) = otlp_http.wait_for(1)
        assert got.parent_span_id == span.parent_span_id
    finally:
        tracer.shutdown(5)


def test_existing_api_ids_that_are_not_w3c_still_export(otlp_http: Any) -> None:
    from truthound.stores.observability.protocols import ObservabilityContext

    tracer = make(otlp_http.endpoint, "otlp")
    try:
        context = ObservabilityContext(correlation_id="c", trace_id="abc123def456", span_id="x")
        with tracer.start_span("op", context):
            pass
        with tracer.start_span("again", context):
            pass
        assert tracer.flush(10)
        first, second = otlp_http.wait_for(2)
        assert first.trace_id == second.trace_id  # one trace, a stable derived id
        assert first.parent_span_id == second.parent_span_id is not None
    finally:
        tracer.shutdown(5)


_BLACK_HOLE_SCENARIO = """
import json, os, socket, sys, time
from truthound.stores.observability.tracing import OpenTelemetryTracer

hole = socket.socket()
hole.bind(("127.0.0.1", 0))
hole.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
tracer = OpenTelemetryTracer(
    service_name="svc",
    endpoint=f"http://127.0.0.1:{hole.getsockname()[1]}",
    protocol=sys.argv[1],
    timeout_seconds=30,  # the exporter would wait this long per attempt
    schedule_delay_millis=10,
)
for i in range(3):
    with tracer.start_span(f"s{i}"):
        pass
started = time.monotonic()
flushed = tracer.flush(timeout_seconds=0.5)
shut_down = tracer.shutdown(timeout_seconds=0.5)
print(json.dumps({
    "flushed": flushed, "shut_down": shut_down, "elapsed": time.monotonic() - started,
    "dropped": tracer.dropped_spans, "exported": tracer.exported_spans,
}), flush=True)
os._exit(0)  # the exporter's own retry thread may still be waiting on the black hole
"""


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_flush_and_shutdown_are_bounded_against_a_black_hole(core: str, protocol: str) -> None:
    """Runs in a child process: the SDK exporter's abandoned retry thread (which uses the
    global ``random`` for jitter) must not outlive the test inside the test process."""
    result = subprocess.run(
        [sys.executable, "-c", _BLACK_HOLE_SCENARIO, protocol],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "TRUTHOUND_OBSERVABILITY_CORE": core},
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["flushed"] is False
    assert outcome["shut_down"] is False
    assert outcome["elapsed"] < 10, outcome  # bounded by our timeouts, not the exporter's 30 s
    assert outcome["dropped"] == 3
    assert outcome["exported"] == 0


def test_refused_exports_are_counted(zipkin: Any) -> None:
    zipkin.status = 400
    tracer = make(zipkin.endpoint, "zipkin")
    try:
        for i in range(4):
            with tracer.start_span(f"s{i}"):
                pass
        assert tracer.flush(10)
        assert wait_until(lambda: tracer.dropped_spans == 4)
        assert tracer.exported_spans == 0
    finally:
        tracer.shutdown(5)


def test_queue_overflow_is_counted() -> None:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Blocking(SpanExporter):
        def __init__(self) -> None:
            self.entered, self.release = threading.Event(), threading.Event()

        def export(self, spans: Any) -> SpanExportResult:
            self.entered.set()
            self.release.wait(30)
            return SpanExportResult.SUCCESS

    exporter = Blocking()
    tracer = OpenTelemetryTracer(
        span_exporter=exporter,
        max_queue_size=2,
        max_export_batch_size=2,
        schedule_delay_millis=600_000,
    )
    try:
        for i in range(2):
            with tracer.start_span(f"s{i}"):
                pass
        assert exporter.entered.wait(10)  # the worker holds s0, s1 in a blocked export
        for i in range(2, 10):
            with tracer.start_span(f"s{i}"):
                pass  # s2, s3 fill the queue; s4..s9 each push the oldest out
        assert tracer.dropped_spans == 6
        exporter.release.set()
        assert tracer.flush(10)
        assert tracer.exported_spans == 4
    finally:
        exporter.release.set()
        tracer.shutdown(5)


def test_every_span_is_exported_or_dropped_exactly_once_while_the_worker_drains() -> None:
    """Spans ended while the worker drains a full queue are counted once: failed exports plus
    evictions equal the spans ended, before and after shutdown. (Evictions are counted by the
    queue's own append, under the lock its pop takes: a "queue full" check before the append
    could count a span the worker had just made room for, under load.)"""
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class Refusing(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.FAILURE

    for _ in range(60):
        tracer = OpenTelemetryTracer(
            span_exporter=Refusing(),
            max_queue_size=2,
            max_export_batch_size=2,
            schedule_delay_millis=60_000,
        )
        for i in range(3):
            with tracer.start_span(f"s{i}"):
                pass
        tracer.flush(5)
        assert tracer.dropped_spans == 3
        tracer.shutdown(5)
        assert tracer.dropped_spans == 3


def test_spans_ended_after_shutdown_are_counted() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer = OpenTelemetryTracer(span_exporter=exporter, schedule_delay_millis=10)
    with tracer.start_span("before"):
        pass
    assert tracer.shutdown(5)
    with tracer.start_span("after"):
        pass
    assert [span.name for span in exporter.get_finished_spans()] == ["before"]
    assert (tracer.exported_spans, tracer.dropped_spans) == (1, 1)


def test_specification_examples_construct_without_network() -> None:
    tracers = [
        OpenTelemetryTracer(
            service_name="truthound", endpoint="http://localhost:4317", exporter_type="otlp"
        ),
        OpenTelemetryTracer(
            service_name="truthound",
            endpoint="http://localhost:14268/api/traces",
            exporter_type="jaeger",
        ),
        OpenTelemetryTracer(
            service_name="truthound",
            endpoint="http://localhost:9411/api/v2/spans",
            exporter_type="zipkin",
        ),
        OpenTelemetryTracer(TracingConfig()),  # existing API, default config
    ]
    assert isinstance(tracers[1].span_exporter, JaegerThriftExporter)
    for tracer in tracers:
        assert tracer.shutdown(timeout_seconds=5)


def test_console_exporter_writes_json(capsys: pytest.CaptureFixture[str]) -> None:
    tracer = OpenTelemetryTracer(service_name="svc", exporter_type="console")
    with tracer.start_span("printed", kind=SpanKind.SERVER):
        pass
    assert tracer.shutdown(5)
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "printed"
    assert printed["kind"] == "SpanKind.SERVER"


@pytest.mark.only_core("pure")
def test_without_opentelemetry_spans_are_kept_in_memory() -> None:
    """Installation-level behaviour (a process without OpenTelemetry), independent of the core."""
    code = """
        import sys, warnings
        for name in ("opentelemetry", "opentelemetry.trace", "opentelemetry.sdk"):
            sys.modules[name] = None
        from truthound.stores.observability.tracing import OpenTelemetryTracer
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tracer = OpenTelemetryTracer(service_name="svc")
        with tracer.start_span("kept"):
            pass
        print(len(caught), [s.name for s in tracer.get_spans()], tracer.shutdown())
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 ['kept'] True"
