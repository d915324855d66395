"""Tracing pillar: spans, W3C Trace Context propagation, tracers and OpenTelemetry export.

Quick start::

    from truthound.stores.observability.tracing import InMemoryTracer, SpanContext, SpanKind

    tracer = InMemoryTracer(max_spans=1000)
    parent = SpanContext.from_traceparent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    )  # None for a missing or invalid header: the span then starts a new trace
    with tracer.start_span("store.read", kind=SpanKind.CLIENT, parent=parent) as span:
        span.set_attribute("store.type", "s3")
        outgoing = {"traceparent": span.context.to_traceparent()}

Ids are lowercase hex (32 digits for a trace, 16 for a span); the specification's
``"abc123def456"``/``"span789"`` are placeholders, not valid ids.
"""

from __future__ import annotations

from .. import _context
from .context import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    SpanContext,
    SpanKind,
    SpanStatus,
    TraceState,
)
from .export import JaegerThriftExporter, OpenTelemetryTracer, resolve_exporter
from .sampling import (
    AlwaysOffSampler,
    AlwaysOnSampler,
    ParentBasedSampler,
    Sampler,
    TraceIdRatioSampler,
    make_sampler,
)
from .span import DEFAULT_LIMIT, NoopSpan, Span, SpanEvent, SpanLink
from .tracer import InMemoryTracer, NoopTracer, Tracer, extract_span_context, inject_span_context

__all__ = [
    "DEFAULT_LIMIT",
    "INVALID_SPAN_ID",
    "INVALID_TRACE_ID",
    "AlwaysOffSampler",
    "AlwaysOnSampler",
    "InMemoryTracer",
    "JaegerThriftExporter",
    "NoopSpan",
    "NoopTracer",
    "OpenTelemetryTracer",
    "ParentBasedSampler",
    "Sampler",
    "Span",
    "SpanContext",
    "SpanEvent",
    "SpanKind",
    "SpanLink",
    "SpanStatus",
    "TraceIdRatioSampler",
    "TraceState",
    "Tracer",
    "extract_span_context",
    "get_current_span",
    "inject_span_context",
    "make_sampler",
    "resolve_exporter",
]


def get_current_span() -> Span | None:
    """The span current in this thread or asyncio task (whichever tracer started it), or None."""
    span = _context.current_span.get()
    return span if isinstance(span, Span) else None
