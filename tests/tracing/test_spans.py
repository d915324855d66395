"""The ``Span`` API: attributes, events, links, status, exceptions, timing, limits, to_dict."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from truthound.stores.observability import _context
from truthound.stores.observability.tracing import (
    InMemoryTracer,
    NoopSpan,
    Span,
    SpanContext,
    SpanEvent,
    SpanKind,
    SpanLink,
    SpanStatus,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_the_specification_example() -> None:
    context = SpanContext(trace_id=TRACE, span_id=SPAN, trace_flags=1)
    span = Span(name="store.read", kind=SpanKind.CLIENT, context=context)
    span.set_attribute("store.type", "s3")
    span.set_attribute("item.id", "run-123")
    span.add_event("cache.miss", {"key": "run-123"})
    span.add_event("retry.attempt", {"attempt": 1})
    span.set_status(SpanStatus.OK)
    assert span.duration_ms is None  # not ended yet
    span.end()
    assert span.duration_ms is not None
    assert span.duration_ms >= 0
    assert span.duration_seconds == pytest.approx(span.duration_ms / 1000)
    assert span.attributes == {"store.type": "s3", "item.id": "run-123"}
    assert [(e.name, e.attributes) for e in span.events] == [
        ("cache.miss", {"key": "run-123"}),
        ("retry.attempt", {"attempt": 1}),
    ]
    assert span.status is SpanStatus.OK
    assert (span.trace_id, span.span_id, span.is_sampled) == (TRACE, SPAN, True)


def test_a_span_without_context_starts_a_trace_or_continues_its_parent() -> None:
    root = Span("root")
    assert root.context.is_valid
    assert root.parent_span_id is None
    child = Span("child", parent_context=root.context)
    assert child.trace_id == root.trace_id
    assert child.parent_span_id == root.span_id
    assert child.parent_context is root.context


def test_setters_are_fluent_and_kinds_accept_strings() -> None:
    span = Span("op", kind="server")
    assert span.kind is SpanKind.SERVER
    assert span.set_attribute("a", 1).set_attributes({"b": 2}).add_event("e") is span
    assert span.set_status("error", "boom") is span
    assert (span.status, span.status_message) == (SpanStatus.ERROR, "boom")


def test_status_rules_follow_opentelemetry() -> None:
    span = Span("op")
    span.set_status(SpanStatus.UNSET)
    assert span.status is SpanStatus.UNSET
    span.set_status(SpanStatus.ERROR, "first")
    span.set_status(SpanStatus.OK, "ignored message")
    assert (span.status, span.status_message) == (SpanStatus.OK, "")
    span.set_status(SpanStatus.ERROR, "too late")  # OK is final
    assert span.status is SpanStatus.OK


def test_end_is_idempotent_and_freezes_the_span() -> None:
    tracer = InMemoryTracer()
    span = tracer.start_span("op")
    span.end()
    duration = span.duration_ns
    span.end()
    span.set_attribute("late", 1).add_event("late").set_status(SpanStatus.ERROR)
    assert span.duration_ns == duration
    assert "late" not in span.attributes
    assert span.events == []
    assert span.status is SpanStatus.UNSET
    assert not span.is_recording
    assert len(tracer.get_spans()) == 1  # recorded once


def test_timing_uses_a_monotonic_duration_and_wall_clock_timestamps() -> None:
    before = time.time_ns()
    span = Span("op")
    time.sleep(0.002)
    span.end()
    assert span.start_time_ns >= before - 1_000_000
    assert span.duration_ns is not None
    assert span.duration_ns >= 2_000_000
    assert span.end_time_ns == span.start_time_ns + span.duration_ns
    assert span.start_time.tzinfo is UTC
    assert span.end_time is not None


def test_explicit_start_and_end_times() -> None:
    start = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    span = Span("op", start_time=start)
    span.end(end_time=datetime(2024, 1, 2, 3, 4, 6, tzinfo=UTC))
    assert span.start_time == start
    assert span.duration_seconds == pytest.approx(1.0)


def test_record_exception_adds_the_event_and_sets_error() -> None:
    span = Span("op")
    try:
        raise KeyError("missing")
    except KeyError as error:
        span.record_exception(error, {"retry": False})
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "KeyError"
    assert event.attributes["exception.message"] == "'missing'"
    assert "Traceback" in event.attributes["exception.stacktrace"]
    assert event.attributes["retry"] is False
    assert (span.status, span.status_message) == (SpanStatus.ERROR, "'missing'")


def test_context_manager_sets_ok_or_records_the_exception_and_reraises() -> None:
    tracer = InMemoryTracer()
    with tracer.start_span("fine"):
        pass
    with pytest.raises(ValueError, match="bad"), tracer.start_span("broken"):
        raise ValueError("bad")
    fine, broken = tracer.get_spans()
    assert fine.status is SpanStatus.OK
    assert broken.status is SpanStatus.ERROR
    assert broken.status_message == "bad"
    assert broken.events[0].attributes["exception.type"] == "ValueError"


def test_context_manager_makes_the_span_current_and_restores_the_previous_one() -> None:
    tracer = InMemoryTracer()
    assert _context.current_span.get() is None
    with tracer.start_span("outer") as outer:
        assert _context.current_span.get() is outer
        with tracer.start_span("inner") as inner:
            assert _context.current_span.get() is inner
        assert _context.current_span.get() is outer
    assert _context.current_span.get() is None
    with tracer.start_span("unrelated") as unrelated:
        assert unrelated.trace_id != outer.trace_id  # the existing module's stale-parent bug


def test_limits_drop_and_count_the_excess() -> None:
    tracer = InMemoryTracer(max_attributes=3, max_events=2, max_links=1)
    span = tracer.start_span("op")  # carries service.name: one attribute
    span.set_attributes({"a": 1, "b": 2, "c": 3, "d": 4})
    span.set_attribute("a", 10)  # updating an existing key is always allowed
    for i in range(5):
        span.add_event(f"e{i}")
    link = SpanContext(TRACE, SPAN)
    span.add_link(link).add_link(link, {"x": 1})
    span.end()
    assert span.attributes == {"service.name": "truthound-store", "a": 10, "b": 2}
    assert (span.dropped_attributes, span.dropped_events, span.dropped_links) == (2, 3, 1)
    assert [e.name for e in span.events] == ["e0", "e1"]
    assert span.links == [SpanLink(link)]


def test_default_limits_are_128() -> None:
    span = Span("op")
    for i in range(130):
        span.set_attribute(f"k{i}", i)
        span.add_event(f"e{i}")
    assert len(span.attributes) == 128
    assert len(span.events) == 128
    assert span.dropped_attributes == span.dropped_events == 2


def test_to_dict_is_json_friendly() -> None:
    import json

    parent = SpanContext(TRACE, SPAN, trace_state={"vendor": "value"})
    span = Span("op", parent_context=parent, kind=SpanKind.PRODUCER, attributes={"k": "v"})
    span.add_event("e", {"n": 1})
    span.add_link(parent)
    span.end()
    data = json.loads(json.dumps(span.to_dict()))
    assert data["name"] == "op"
    assert data["kind"] == "producer"
    assert (data["trace_id"], data["parent_span_id"]) == (TRACE, SPAN)
    assert data["trace_state"] == "vendor=value"
    assert data["attributes"] == {"k": "v"}
    assert data["events"][0]["name"] == "e"
    assert data["links"] == [{"trace_id": TRACE, "span_id": SPAN, "attributes": {}}]
    assert data["status"] == "unset"
    assert data["end_time"] is not None


def test_span_event_and_link_classes() -> None:
    moment = datetime(2024, 5, 6, tzinfo=UTC)
    event = SpanEvent("e", moment, {"a": 1})
    assert (event.name, event.timestamp, event.attributes) == ("e", moment, {"a": 1})
    assert SpanEvent("e", moment, {"a": 1}) == event
    link = SpanLink(SpanContext(TRACE, SPAN), {"b": 2})
    assert link.to_dict() == {"trace_id": TRACE, "span_id": SPAN, "attributes": {"b": 2}}


def test_noop_span_accepts_everything_and_records_nothing() -> None:
    span = NoopSpan()
    with span as entered:
        assert entered.set_attribute("k", "v").add_event("e").set_status("ok") is span
        entered.record_exception(ValueError("x"))
    span.end()
    assert span.attributes == {}
    assert span.events == []
    assert not span.is_sampled
    assert not span.context.is_valid
    assert _context.current_span.get() is None
