"""Exemplars: a histogram observation inside a sampled span links to it (OpenMetrics only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from truthound.stores.observability import _context
from truthound.stores.observability.metrics import InMemoryMetricsBackend


@dataclass(frozen=True)
class FakeSpan:
    """The tiny part of a span the metrics pillar reads (`_context.SpanIdentity`)."""

    trace_id: str
    span_id: str
    is_sampled: bool = True


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def in_span(span: Any, action: Any) -> None:
    token = _context.current_span.set(span)
    try:
        action()
    finally:
        _context.current_span.reset(token)


def test_sampled_span_becomes_the_bucket_exemplar(clock: Any) -> None:
    backend = InMemoryMetricsBackend(prefix="", buckets=[0.1, 1.0], clock=clock)
    in_span(FakeSpan(TRACE, SPAN), lambda: backend.histogram("latency", 0.05))
    backend.histogram("latency", 0.5)  # outside any span: no exemplar
    om = backend.export("openmetrics")
    assert (
        f'latency_bucket{{le="0.1"}} 1.0 # {{trace_id="{TRACE}",span_id="{SPAN}"}} 0.05 '
        "1700000000.0\n" in om
    )
    assert 'latency_bucket{le="1.0"} 2.0\n' in om
    assert "trace_id" not in backend.export("prometheus")
    family = next(iter(text_string_to_metric_families(om)))
    exemplar = family.samples[0].exemplar
    assert exemplar.labels == {"trace_id": TRACE, "span_id": SPAN}
    assert exemplar.value == 0.05


def test_unsampled_spans_and_handles(clock: Any) -> None:
    backend = InMemoryMetricsBackend(prefix="", buckets=[1.0], clock=clock)
    in_span(FakeSpan(TRACE, SPAN, is_sampled=False), lambda: backend.histogram("h", 0.5))
    assert "trace_id" not in backend.export("openmetrics")
    handle = backend.histogram_series("h")
    in_span(FakeSpan(TRACE, SPAN), lambda: handle.observe(0.25))
    assert f'trace_id="{TRACE}"' in backend.export("openmetrics")


def test_exemplar_labels_respect_the_128_code_point_limit(clock: Any) -> None:
    backend = InMemoryMetricsBackend(prefix="", buckets=[1.0], clock=clock)
    long_span = "é" * 100  # trace_id (8+32) fits, span_id (7+100) would not
    in_span(FakeSpan(TRACE, long_span), lambda: backend.histogram("h", 0.5))
    om = backend.export("openmetrics")
    assert f'# {{trace_id="{TRACE}"}} 0.5' in om
    assert backend.dropped_exemplars == 0
    in_span(FakeSpan("t" * 121, SPAN), lambda: backend.histogram("h", 0.7))
    assert backend.dropped_exemplars == 1  # counted, never silent
    assert "t" * 121 not in backend.export("openmetrics")
    assert backend.get("h").count == 2  # type: ignore[union-attr]


def test_exemplars_reach_prometheus_client_through_the_bridge(clock: Any) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.openmetrics.exposition import generate_latest

    from truthound.stores.observability.metrics import PrometheusClientCollector

    backend = InMemoryMetricsBackend(prefix="", buckets=[1.0], clock=clock)
    in_span(FakeSpan(TRACE, SPAN), lambda: backend.histogram("h", 0.5))
    registry = CollectorRegistry()
    registry.register(PrometheusClientCollector(backend))
    assert f'trace_id="{TRACE}"'.encode() in generate_latest(registry)
