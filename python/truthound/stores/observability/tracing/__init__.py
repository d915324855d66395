"""Tracing pillar: spans, W3C Trace Context propagation, tracers and OpenTelemetry export."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import _core

__all__ = ["SpanContext"]


@dataclass
class SpanContext:
    """The identity of a span as carried across process boundaries (W3C Trace Context).

    Valid ids are lowercase hex: a 32-digit ``trace_id`` and a 16-digit ``span_id``, for example
    ``SpanContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")``.
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    trace_flags: int = 1
    trace_state: dict[str, str] = field(default_factory=dict)
    is_remote: bool = False

    @classmethod
    def from_traceparent(cls, header: str | None) -> SpanContext | None:
        """Parses a ``traceparent`` header; ``None`` when it is missing or invalid."""
        if not isinstance(header, str):
            return None
        parsed = _core.core.parse_traceparent(header)
        if parsed is None:
            return None
        _version, trace_id, span_id, flags = parsed
        return cls(trace_id=trace_id, span_id=span_id, trace_flags=flags, is_remote=True)

    def to_traceparent(self) -> str:
        """This context as a version-00 ``traceparent`` header value."""
        return _core.core.format_traceparent(self.trace_id, self.span_id, self.trace_flags & 0xFF)
