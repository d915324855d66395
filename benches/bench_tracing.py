"""Tracing workloads: each core against the OpenTelemetry SDK on the same work.

Targets (issue 5): in-memory span with 2 attributes <= 2 us; NoopTracer span <= 0.2 us;
validated ``from_traceparent`` <= 0.4 us; id generation <= 0.3 us; ``OpenTelemetryTracer``
<= 1.2x the bare SDK with the same exporter and a BatchSpanProcessor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import pytest

from support import label

HEADER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACESTATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,vendor@tenant=value"


class _Discard:
    """An OpenTelemetry SpanExporter that accepts and forgets (measures the pipeline, not I/O)."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _sdk_tracer(processor: Any) -> Any:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    return provider, provider.get_tracer("bench")


# ---- in-memory span with two attributes ------------------------------------------------------


def test_in_memory_span(benchmark: Any, core: ModuleType) -> None:
    from truthound.stores.observability.tracing import InMemoryTracer

    label(benchmark, "span: in-memory, 2 attributes", core.CORE_NAME)
    tracer = InMemoryTracer(max_spans=10_000)

    def span() -> None:
        with tracer.start_span("store.read") as s:
            s.set_attribute("store.type", "s3")
            s.set_attribute("item.id", "run-123")

    benchmark(span)
    assert tracer.get_spans()


def test_in_memory_span_opentelemetry(benchmark: Any) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    label(benchmark, "span: in-memory, 2 attributes", "opentelemetry-sdk")
    exporter = InMemorySpanExporter()
    provider, tracer = _sdk_tracer(SimpleSpanProcessor(exporter))

    def span() -> None:
        with tracer.start_as_current_span("store.read") as s:
            s.set_attribute("store.type", "s3")
            s.set_attribute("item.id", "run-123")

    benchmark(span)
    assert exporter.get_finished_spans()
    provider.shutdown()


# ---- no-op span -------------------------------------------------------------------------------


def test_noop_span(benchmark: Any, core: ModuleType) -> None:
    from truthound.stores.observability.tracing import NoopTracer

    label(benchmark, "span: NoopTracer", core.CORE_NAME)
    tracer = NoopTracer()

    def span() -> None:
        with tracer.start_span("store.read"):
            pass

    benchmark(span)


def test_noop_span_opentelemetry(benchmark: Any) -> None:
    from opentelemetry.trace import NoOpTracer

    label(benchmark, "span: NoopTracer", "opentelemetry-sdk")
    tracer = NoOpTracer()

    def span() -> None:
        with tracer.start_as_current_span("store.read"):
            pass

    benchmark(span)


# ---- propagation ------------------------------------------------------------------------------


def test_from_traceparent(benchmark: Any, core: ModuleType) -> None:
    from truthound.stores.observability.tracing import SpanContext

    label(benchmark, "traceparent: validated parse to a context", core.CORE_NAME)
    assert benchmark(SpanContext.from_traceparent, HEADER) is not None


def test_from_traceparent_opentelemetry(benchmark: Any) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    label(benchmark, "traceparent: validated parse to a context", "opentelemetry-sdk")
    propagator = TraceContextTextMapPropagator()
    assert benchmark(propagator.extract, {"traceparent": HEADER})


def test_to_traceparent(benchmark: Any, core: ModuleType) -> None:
    from truthound.stores.observability.tracing import SpanContext

    label(benchmark, "traceparent: format from a context", core.CORE_NAME)
    context = SpanContext.from_traceparent(HEADER)
    assert context is not None
    assert benchmark(context.to_traceparent) == HEADER


def test_to_traceparent_opentelemetry(benchmark: Any) -> None:
    from opentelemetry.trace import NonRecordingSpan, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    label(benchmark, "traceparent: format from a context", "opentelemetry-sdk")
    propagator = TraceContextTextMapPropagator()
    remote = propagator.extract({"traceparent": HEADER})
    from opentelemetry.trace import get_current_span

    context = set_span_in_context(NonRecordingSpan(get_current_span(remote).get_span_context()))

    def inject() -> dict[str, str]:
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context)
        return carrier

    assert benchmark(inject)["traceparent"] == HEADER


def test_parse_tracestate(benchmark: Any, core: ModuleType) -> None:
    from truthound.stores.observability.tracing import TraceState

    label(benchmark, "tracestate: parse 3 members", core.CORE_NAME)
    assert len(benchmark(TraceState.from_header, TRACESTATE)) == 3


def test_parse_tracestate_opentelemetry(benchmark: Any) -> None:
    from opentelemetry.trace.span import TraceState

    label(benchmark, "tracestate: parse 3 members", "opentelemetry-sdk")
    assert len(benchmark(TraceState.from_header, [TRACESTATE])) == 3


# ---- ids --------------------------------------------------------------------------------------


def test_span_id(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "id generation: span id", core.CORE_NAME)
    assert len(benchmark(core.generate_span_id)) == 16


def test_span_id_opentelemetry(benchmark: Any) -> None:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    label(benchmark, "id generation: span id", "opentelemetry-sdk")
    assert benchmark(RandomIdGenerator().generate_span_id)


def test_trace_id(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "id generation: trace id", core.CORE_NAME)
    assert len(benchmark(core.generate_trace_id)) == 32


def test_trace_id_opentelemetry(benchmark: Any) -> None:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    label(benchmark, "id generation: trace id", "opentelemetry-sdk")
    assert benchmark(RandomIdGenerator().generate_trace_id)


# ---- OpenTelemetry export pipeline ------------------------------------------------------------


@pytest.fixture
def otel_tracer(core: ModuleType) -> Iterator[Any]:
    from truthound.stores.observability.tracing import OpenTelemetryTracer

    tracer = OpenTelemetryTracer(service_name="bench", span_exporter=_Discard())
    yield tracer
    tracer.shutdown(timeout_seconds=10)


def test_opentelemetry_tracer(benchmark: Any, core: ModuleType, otel_tracer: Any) -> None:
    label(benchmark, "span: 2 attributes, BatchSpanProcessor export", core.CORE_NAME)

    def span() -> None:
        with otel_tracer.start_span("store.read") as s:
            s.set_attribute("store.type", "s3")
            s.set_attribute("item.id", "run-123")

    benchmark(span)


def test_opentelemetry_sdk(benchmark: Any) -> None:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    label(benchmark, "span: 2 attributes, BatchSpanProcessor export", "opentelemetry-sdk")
    provider, tracer = _sdk_tracer(BatchSpanProcessor(_Discard()))

    def span() -> None:
        with tracer.start_as_current_span("store.read") as s:
            s.set_attribute("store.type", "s3")
            s.set_attribute("item.id", "run-123")

    benchmark(span)
    provider.shutdown()


# ---- Jaeger Thrift encoding -------------------------------------------------------------------


def test_jaeger_encode(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "jaeger: encode a batch of 100 spans", core.CORE_NAME)
    tags = [("store.type", "s3"), ("item.count", 3), ("hit", True), ("ratio", 0.5)]
    spans = [
        (2**127 + i, 2**63 + i, i, "store.read", 1, 1_700_000_000_000_000, 250, [], tags, [])
        for i in range(100)
    ]
    assert benchmark(core.encode_jaeger_batch, "bench", [], spans)
