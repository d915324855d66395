"""Tracers: nesting (threads, asyncio), sampling, in-memory storage, factory, propagation."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from truthound.stores.observability import _context
from truthound.stores.observability.config import TracingConfig, TracingSampler
from truthound.stores.observability.errors import InvalidArgumentError
from truthound.stores.observability.protocols import ObservabilityContext, TracingBackend
from truthound.stores.observability.tracing import (
    AlwaysOffSampler,
    InMemoryTracer,
    NoopSpan,
    NoopTracer,
    OpenTelemetryTracer,
    ParentBasedSampler,
    Span,
    SpanContext,
    SpanKind,
    SpanStatus,
    TraceIdRatioSampler,
    Tracer,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE = "00f067aa0ba902b7"


def header(flags: str = "01") -> str:
    return f"00-{TRACE}-{REMOTE}-{flags}"


def test_in_memory_tracer_specification_example() -> None:
    tracer = InMemoryTracer(max_spans=1000)
    with tracer.start_span("parent_operation") as parent:
        parent.set_attribute("key", "value")
        with tracer.start_span("child_operation") as child:
            child.set_attribute("nested", True)
    spans = tracer.get_spans()
    assert [s.name for s in spans] == ["child_operation", "parent_operation"]
    assert child.parent_span_id == parent.span_id
    assert child.trace_id == parent.trace_id
    assert tracer.get_spans_by_name("parent_operation") == [parent]
    assert tracer.get_spans_by_name("store.read") == []
    tracer.clear()
    assert tracer.get_spans() == []
    assert tracer.spans == []


def test_remote_parent_continues_the_trace_and_propagates() -> None:
    tracer = InMemoryTracer()
    incoming = SpanContext.from_traceparent(header())
    with tracer.start_span("operation", parent=incoming) as span:
        outgoing = {"traceparent": span.context.to_traceparent()}
    assert span.trace_id == TRACE
    assert span.parent_span_id == REMOTE
    assert span.parent_context is incoming
    assert span.parent_context.is_remote
    assert outgoing["traceparent"] == f"00-{TRACE}-{span.span_id}-01"


def test_unsampled_remote_parent_is_honoured_and_not_recorded() -> None:
    tracer = InMemoryTracer()  # parent-based by default
    with tracer.start_span("op", parent=SpanContext.from_traceparent(header("00"))) as span:
        carrier = tracer.inject_context({})
    assert not span.is_sampled
    assert span.context.trace_flags == 0
    assert carrier["traceparent"].endswith("-00")
    assert tracer.get_spans() == []


def test_none_parent_starts_a_new_trace() -> None:
    tracer = InMemoryTracer()
    with tracer.start_span("op", parent=SpanContext.from_traceparent(None)) as span:
        assert span.parent_span_id is None
        assert span.context.is_valid


@pytest.mark.parametrize(
    ("sampler", "ratio", "expected"),
    [
        (TracingSampler.ALWAYS_ON, 1.0, 200),
        (TracingSampler.ALWAYS_OFF, 1.0, 0),
        ("always_off", 1.0, 0),
        (TracingSampler.RATIO, 0.0, 0),
        (TracingSampler.RATIO, 1.0, 200),
        (TracingSampler.PARENT_BASED, 0.0, 0),
    ],
)
def test_samplers(sampler: TracingSampler | str, ratio: float, expected: int) -> None:
    tracer = InMemoryTracer(TracingConfig(sampler=sampler, sample_ratio=ratio))  # type: ignore[arg-type]
    for _ in range(200):
        with tracer.start_span("op") as span:
            assert span.is_sampled == (expected > 0)
            assert span.context.trace_flags == (1 if expected else 0)
    assert len(tracer.get_spans()) == expected


def test_ratio_sampling_keeps_about_the_ratio_and_decides_by_trace_id() -> None:
    sampler = TraceIdRatioSampler(0.25)
    tracer = InMemoryTracer(sampler=sampler)
    for _ in range(4000):
        with tracer.start_span("op"):
            pass
    assert 800 <= len(tracer.get_spans()) <= 1200
    assert sampler.should_sample(None, "0" * 16 + "0" * 15 + "1")
    assert not sampler.should_sample(None, "f" * 32)
    with pytest.raises(InvalidArgumentError, match="sample_ratio"):
        TraceIdRatioSampler(1.5)


def test_parent_based_follows_the_parent_and_children_follow_the_root() -> None:
    tracer = InMemoryTracer(sampler=ParentBasedSampler(AlwaysOffSampler()))
    with tracer.start_span("root") as root, tracer.start_span("child") as child:
        pass
    assert not root.is_sampled
    assert not child.is_sampled
    with tracer.start_span("remote", parent=SpanContext.from_traceparent(header())) as remote:
        pass
    assert remote.is_sampled
    assert tracer.get_spans() == [remote]


def test_nesting_is_per_thread() -> None:
    tracer = InMemoryTracer()
    results: dict[str, tuple[str | None, str]] = {}
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        with tracer.start_span(name) as outer:
            barrier.wait(timeout=10)
            with tracer.start_span(f"{name}.child") as inner:
                barrier.wait(timeout=10)
                results[name] = (inner.parent_span_id, outer.span_id)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results["a"][0] == results["a"][1]
    assert results["b"][0] == results["b"][1]
    assert len({s.trace_id for s in tracer.get_spans()}) == 2


def test_a_copied_context_carries_the_parent_into_a_thread() -> None:
    tracer = InMemoryTracer()
    seen: list[Span] = []
    with tracer.start_span("request") as request:
        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run, args=(lambda: seen.append(tracer.start_span("work")),)
        )
        thread.start()
        thread.join(timeout=30)
    assert seen[0].parent_span_id == request.span_id


@pytest.mark.timeout(30)
def test_nesting_is_per_asyncio_task() -> None:
    tracer = InMemoryTracer()

    async def handle(name: str) -> tuple[str, str | None, str]:
        with tracer.start_span(name) as outer:
            await asyncio.sleep(0.001)
            with tracer.start_span(f"{name}.child") as inner:
                await asyncio.sleep(0.001)
            assert _context.current_span.get() is outer
            return outer.span_id, inner.parent_span_id, inner.trace_id

    async def main() -> list[tuple[str, str | None, str]]:
        return await asyncio.gather(*(handle(f"task{i}") for i in range(20)))

    results = asyncio.run(main())
    assert all(outer == parent for outer, parent, _ in results)
    assert len({trace for _, _, trace in results}) == 20
    assert _context.current_span.get() is None


def test_in_memory_tracer_evicts_the_oldest_and_counts() -> None:
    tracer = InMemoryTracer(max_spans=3)
    for i in range(5):
        with tracer.start_span(f"s{i}"):
            pass
    assert [s.name for s in tracer.get_spans()] == ["s2", "s3", "s4"]
    assert tracer.evicted_spans == 2


@pytest.mark.timeout(60)
def test_in_memory_tracer_counts_every_span_under_threads() -> None:
    tracer = InMemoryTracer(max_spans=100)

    def work() -> None:
        for _ in range(500):
            with tracer.start_span("op"):
                pass

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(tracer.get_spans()) == 100
    assert tracer.evicted_spans == 1900


def test_noop_tracer_specification_example_and_cheapness() -> None:
    tracer = NoopTracer()
    with tracer.start_span("operation") as span:
        span.set_attribute("key", "value")
    assert span is tracer.start_span("other")  # one shared span: nothing allocated
    assert _context.current_span.get() is None
    assert tracer.inject_context({}) == {}
    assert tracer.extract_context({"traceparent": header()}) is None


def test_noop_tracer_keeps_a_given_parent_for_propagation() -> None:
    incoming = SpanContext.from_traceparent(header())
    with NoopTracer().start_span("operation", parent=incoming) as span:
        assert isinstance(span, NoopSpan)
        assert span.context.to_traceparent() == header()


def test_noop_tracer_without_parent_propagates_no_trace() -> None:
    """The spec's propagation code (``span.context.to_traceparent()``) with tracing disabled and
    no incoming trace: it must not raise. The header is W3C's all-zero "no trace", which
    receivers (ours and OpenTelemetry's propagator) read as absent, as if nothing was sent."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    with Tracer.create(enabled=False).start_span("operation") as span:
        outgoing = {"traceparent": span.context.to_traceparent()}
    assert outgoing == {"traceparent": f"00-{'0' * 32}-{'0' * 16}-00"}
    assert SpanContext.from_traceparent(outgoing["traceparent"]) is None
    extracted = TraceContextTextMapPropagator().extract(outgoing)
    assert not trace.get_current_span(extracted).get_span_context().is_valid
    assert NoopTracer().inject_context({}) == {}  # injecting still writes nothing
    # Any other context with invalid ids still refuses to be written.
    with pytest.raises(InvalidArgumentError, match=r"0{32}"):
        SpanContext("0" * 32, "0" * 16).to_traceparent()


def test_factory() -> None:
    assert isinstance(Tracer.create(enabled=False), NoopTracer)
    assert isinstance(Tracer.create(config=TracingConfig(enabled=False)), NoopTracer)
    assert isinstance(Tracer.create(exporter_type="noop"), NoopTracer)
    memory = Tracer.create(service_name="svc", exporter_type="memory")
    assert isinstance(memory, InMemoryTracer)
    assert memory.service_name == "svc"
    tracer = Tracer.create(
        service_name="truthound",
        enabled=True,
        exporter_type="otlp",
        endpoint="http://localhost:4317",
    )
    try:
        assert isinstance(tracer, OpenTelemetryTracer)
        assert tracer.service_name == "truthound"
        assert type(tracer.span_exporter).__module__.endswith("grpc.trace_exporter")
    finally:
        assert tracer.shutdown(timeout_seconds=5)


def test_get_tracer_is_cached_until_reset() -> None:
    Tracer.reset()
    try:
        first = Tracer.get_tracer(TracingConfig(enabled=False))
        assert isinstance(first, NoopTracer)
        assert Tracer.get_tracer() is first
        Tracer.reset()
        assert Tracer.get_tracer(TracingConfig(enabled=False)) is not first
    finally:
        Tracer.reset()


def test_existing_api_config_first_constructors_and_protocol() -> None:
    config = TracingConfig(service_name="svc", max_attributes=4, max_events=1)
    tracer = InMemoryTracer(config)
    assert isinstance(tracer, TracingBackend)
    assert isinstance(NoopTracer(config), TracingBackend)
    with tracer.trace("op", kind="client", attributes={"a": 1}) as span:
        assert tracer.get_current_span() is span
        span.add_event("one").add_event("two")
    assert span.kind is SpanKind.CLIENT
    assert span.attributes["service.name"] == "svc"
    assert span.dropped_events == 1
    assert tracer.flush()
    assert tracer.shutdown()


def test_existing_api_observability_context_is_continued_as_given() -> None:
    tracer = InMemoryTracer()
    context = ObservabilityContext(correlation_id="c-1", trace_id="abc123def456", span_id="s-1")
    span = tracer.start_span("op", context)
    assert span.trace_id == "abc123def456"
    assert span.parent_span_id == "s-1"
    assert tracer.inject_context({}, span) == {}  # not a W3C id: never written to a header


def test_inject_and_extract_round_trip() -> None:
    tracer = InMemoryTracer()
    incoming = {"TraceParent": header(), "tracestate": "rojo=1", "X-Correlation-ID": "req-7"}
    context = tracer.extract_context(incoming)
    assert context is not None
    assert (context.correlation_id, context.trace_id, context.span_id) == ("req-7", TRACE, REMOTE)
    with tracer.start_span("op", context) as span:
        carrier = tracer.inject_context({})
    assert span.trace_id == TRACE
    assert span.parent_span_id == REMOTE
    assert carrier == {"traceparent": f"00-{TRACE}-{span.span_id}-01", "tracestate": "rojo=1"}
    assert tracer.extract_context({"traceparent": "00-abc123def456-span789-01"}) is None
    assert tracer.extract_context({}) is None


def test_exceptions_recording_can_be_switched_off() -> None:
    tracer = InMemoryTracer(TracingConfig(record_exceptions=False))
    with pytest.raises(RuntimeError), tracer.start_span("op") as span:
        raise RuntimeError("x")
    assert span.events == []
    assert span.status is SpanStatus.ERROR


def test_record_attributes_are_added_to_every_span() -> None:
    tracer = InMemoryTracer(TracingConfig(record_attributes={"deployment": "blue"}))
    with tracer.start_span("op") as span:
        pass
    assert span.attributes["deployment"] == "blue"


def test_the_current_span_is_what_the_other_pillars_read() -> None:
    """Audit stamps events and metrics attach exemplars from ``_context.current_span``."""
    from truthound.stores.observability.tracing import get_current_span

    tracer = InMemoryTracer(sampler="always_off")
    with tracer.start_span("op") as span:
        current = _context.current_span.get()
        assert current is span
        assert get_current_span() is span
        assert (current.trace_id, current.span_id, current.is_sampled) == (
            span.context.trace_id,
            span.context.span_id,
            False,
        )
    assert get_current_span() is None
