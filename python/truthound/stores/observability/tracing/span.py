"""Spans: ``Span``, ``SpanEvent``, ``SpanLink`` and the shared no-op span.

A span records its wall-clock start (``time.time_ns``) and measures its duration on the monotonic
clock (``time.perf_counter_ns``), so durations are never negative even if the wall clock steps;
its end timestamp is the start plus that duration. Attribute, event and link storage is created
on first use. Limits (default 128 each, as OpenTelemetry) drop the excess and count it in
``dropped_attributes``, ``dropped_events`` and ``dropped_links``; the attribute limit also
applies to each event's and each link's own attributes (the first ones are kept, the rest
counted in that event's or link's ``dropped_attributes``). Exporters receive every count.
"""

from __future__ import annotations

import itertools
import traceback
from collections.abc import Mapping
from contextvars import Token
from datetime import UTC, datetime
from time import perf_counter_ns, time_ns
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

from .. import _context
from .context import (
    EMPTY_TRACE_STATE,
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    SpanContext,
    SpanKind,
    SpanStatus,
)

if TYPE_CHECKING:
    from typing import Self

__all__ = ["DEFAULT_LIMIT", "NoopSpan", "Span", "SpanEvent", "SpanLink"]

#: Default number of attributes, events and links a span keeps (OpenTelemetry's default).
DEFAULT_LIMIT: Final = 128

_current_span = _context.current_span
_UNSET, _OK, _ERROR = SpanStatus.UNSET, SpanStatus.OK, SpanStatus.ERROR


def _to_ns(moment: datetime | float | None) -> int:
    """Nanoseconds since the epoch from a datetime (naive = UTC), seconds, or ``None`` (now)."""
    if moment is None:
        return time_ns()
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1_000_000) * 1000
    if isinstance(moment, int) and moment > 10**17:  # already nanoseconds
        return moment
    return int(moment * 1e9)


def _from_ns(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


class SpanEvent:
    """A timestamped event on a span: ``SpanEvent(name, timestamp=None, attributes=None)``.

    ``timestamp`` may be a datetime, seconds since the epoch or ``None`` (now); ``timestamp_ns``
    holds it in nanoseconds. ``dropped_attributes`` counts the attributes the span's limit
    refused when the event was added to a span.
    """

    __slots__ = ("attributes", "dropped_attributes", "name", "timestamp_ns")

    def __init__(
        self,
        name: str,
        timestamp: datetime | float | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.timestamp_ns = _to_ns(timestamp)
        self.attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self.dropped_attributes = 0

    @property
    def timestamp(self) -> datetime:
        """When the event happened (UTC)."""
        return _from_ns(self.timestamp_ns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "timestamp": self.timestamp.isoformat(),
            "attributes": dict(self.attributes),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpanEvent):
            return NotImplemented
        return (self.name, self.timestamp_ns, self.attributes) == (
            other.name,
            other.timestamp_ns,
            other.attributes,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SpanEvent(name={self.name!r}, attributes={self.attributes!r})"


class SpanLink:
    """A causal link to another span (for example a batch item's producer): ``SpanLink(context,
    attributes=None)``. ``dropped_attributes`` counts the attributes the span's limit refused
    when the link was added to a span."""

    __slots__ = ("attributes", "context", "dropped_attributes")

    def __init__(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        self.context = context
        self.attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self.dropped_attributes = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.context.trace_id,
            "span_id": self.context.span_id,
            "attributes": dict(self.attributes),
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpanLink):
            return NotImplemented
        return (self.context, self.attributes) == (other.context, other.attributes)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SpanLink(context={self.context!r}, attributes={self.attributes!r})"


def _limit_attributes(item: SpanEvent | SpanLink, limit: int) -> None:
    """Keeps the first ``limit`` attributes of an event or link and counts the rest."""
    attributes = item.attributes
    excess = len(attributes) - limit
    if excess > 0:
        item.attributes = dict(itertools.islice(attributes.items(), limit))
        item.dropped_attributes = excess


class _Recorder(Protocol):
    """What a span needs from the tracer that created it."""

    _limits: tuple[int, int, int]
    _record_exceptions: bool

    def _on_end(self, span: Span) -> None: ...


class _Defaults:
    """The recorder of a span built directly (``Span(...)``): default limits, records nothing."""

    _limits = (DEFAULT_LIMIT, DEFAULT_LIMIT, DEFAULT_LIMIT)
    _record_exceptions = True

    def _on_end(self, span: Span) -> None:
        pass


_DEFAULTS: Final = _Defaults()


class Span:
    """One timed operation: ``Span(name, context=None, parent_context=None, kind=INTERNAL,
    attributes=None, start_time=None)``.

    Tracers create spans with ``start_span``; a span built directly gets a fresh root context
    when none is given (or a child context of ``parent_context``), records nothing on ``end()``
    and uses the default limits. Setters return the span (fluent). As a context manager the span
    becomes the current span (``_context.current_span``, which nests children and is read by the
    audit and metrics pillars), records an exception escaping the block (event ``exception``,
    status ``ERROR``) or sets ``OK`` when no status was set, ends, and restores the previous
    current span. ``end()`` is idempotent; changes after it are ignored. A span is meant to be
    changed from one thread at a time (as OpenTelemetry's).
    """

    __slots__ = (
        "_attributes",
        "_dropped",
        "_end_mono",
        "_events",
        "_links",
        "_recorder",
        "_start_mono",
        "_token",
        "context",
        "kind",
        "name",
        "parent_context",
        "start_time_ns",
        "status",
        "status_message",
    )

    name: str
    kind: SpanKind
    context: SpanContext
    parent_context: SpanContext | None
    start_time_ns: int
    status: SpanStatus
    status_message: str
    _start_mono: int
    _end_mono: int | None
    _attributes: dict[str, Any] | None
    _events: list[SpanEvent] | None
    _links: list[SpanLink] | None
    _dropped: list[int] | None
    _recorder: _Recorder
    _token: Token[Any] | None

    def __init__(  # noqa: PLR0917 (the existing API passes these positionally)
        self,
        name: str,
        context: SpanContext | None = None,
        parent_context: SpanContext | None = None,
        kind: SpanKind | str = SpanKind.INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        start_time: datetime | float | None = None,
        *,
        links: list[SpanLink] | None = None,
    ) -> None:
        if context is None:
            context = (
                SpanContext.generate()
                if parent_context is None
                else SpanContext.from_parent(parent_context)
            )
        elif parent_context is not None and context.parent_span_id is None:
            context = SpanContext._new(  # a copy: the caller's context is left as it was
                context.trace_id,
                context.span_id,
                parent_context.span_id,
                context.trace_flags,
                context.trace_state,
                context.is_remote,
            )
        self.name = name
        self.kind = kind if kind.__class__ is SpanKind else SpanKind(kind)
        self.context = context
        self.parent_context = parent_context
        self.start_time_ns = _to_ns(start_time)
        self._start_mono = perf_counter_ns()
        self._end_mono = None
        self._attributes = None
        self._events = None
        self._links = None
        self._dropped = None
        self._recorder = _DEFAULTS
        self._token = None
        self.status = _UNSET
        self.status_message = ""
        if attributes:
            self.set_attributes(attributes)
        if links:
            for link in links:
                self.add_link(link.context, link.attributes)

    # -- identity (what the audit and metrics pillars read from the current span) ---------------

    @property
    def trace_id(self) -> str:
        return self.context.trace_id

    @property
    def span_id(self) -> str:
        return self.context.span_id

    @property
    def parent_span_id(self) -> str | None:
        return self.context.parent_span_id

    @property
    def is_sampled(self) -> bool:
        return bool(self.context.trace_flags & 1)

    @property
    def is_recording(self) -> bool:
        """Whether changes are still recorded (the span has not ended)."""
        return self._end_mono is None

    # -- data ------------------------------------------------------------------------------------

    @property
    def attributes(self) -> dict[str, Any]:
        """The span's attributes (a live dict; prefer ``set_attribute``, which applies limits)."""
        attributes = self._attributes
        if attributes is None:
            attributes = self._attributes = {}
        return attributes

    @property
    def events(self) -> list[SpanEvent]:
        return list(self._events) if self._events else []

    @property
    def links(self) -> list[SpanLink]:
        return list(self._links) if self._links else []

    @property
    def dropped_attributes(self) -> int:
        """Attributes refused because the span already had the maximum number."""
        return self._dropped[0] if self._dropped else 0

    @property
    def dropped_events(self) -> int:
        """Events refused because the span already had the maximum number."""
        return self._dropped[1] if self._dropped else 0

    @property
    def dropped_links(self) -> int:
        """Links refused because the span already had the maximum number."""
        return self._dropped[2] if self._dropped else 0

    def _drop(self, index: int) -> None:
        dropped = self._dropped
        if dropped is None:
            dropped = self._dropped = [0, 0, 0]
        dropped[index] += 1

    def set_attribute(self, key: str, value: Any) -> Self:
        """Sets one attribute; beyond the limit a new key is dropped and counted."""
        if self._end_mono is None:
            attributes = self._attributes
            if attributes is None:
                self._attributes = {key: value}
            elif key in attributes or len(attributes) < self._recorder._limits[0]:
                attributes[key] = value
            else:
                self._drop(0)
        return self

    def set_attributes(self, attributes: Mapping[str, Any]) -> Self:
        """Sets several attributes (see ``set_attribute``)."""
        for key, value in attributes.items():
            self.set_attribute(key, value)
        return self

    def add_event(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        timestamp: datetime | float | None = None,
    ) -> Self:
        """Adds a timestamped event; beyond the limit it is dropped and counted. Its attributes
        beyond the attribute limit are dropped and counted in the event's
        ``dropped_attributes``."""
        if self._end_mono is None:
            events = self._events
            if events is None:
                events = self._events = []
            limits = self._recorder._limits
            if len(events) < limits[1]:
                event = SpanEvent(name, timestamp, attributes)
                if len(event.attributes) > limits[0]:
                    _limit_attributes(event, limits[0])
                events.append(event)
            else:
                self._drop(1)
        return self

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> Self:
        """Links another span's context; beyond the limit the link is dropped and counted. Its
        attributes beyond the attribute limit are dropped and counted in the link's
        ``dropped_attributes``."""
        if self._end_mono is None:
            links = self._links
            if links is None:
                links = self._links = []
            limits = self._recorder._limits
            if len(links) < limits[2]:
                link = SpanLink(context, attributes)
                if len(link.attributes) > limits[0]:
                    _limit_attributes(link, limits[0])
                links.append(link)
            else:
                self._drop(2)
        return self

    def set_status(self, status: SpanStatus | str, message: str = "") -> Self:
        """Sets the status (OpenTelemetry rules: ``UNSET`` is ignored, ``OK`` is final, the
        message is kept for ``ERROR`` only)."""
        if self._end_mono is None and self.status is not _OK:
            status = status if status.__class__ is SpanStatus else SpanStatus(status)
            if status is _ERROR:
                self.status = _ERROR
                self.status_message = message
            elif status is _OK:
                self.status = _OK
                self.status_message = ""
        return self

    def record_exception(
        self, exception: BaseException, attributes: Mapping[str, Any] | None = None
    ) -> Self:
        """Adds an ``exception`` event (``exception.type``, ``exception.message``,
        ``exception.stacktrace``) and sets the status to ``ERROR`` with the message."""
        message = str(exception)
        event_attributes: dict[str, Any] = {
            "exception.type": type(exception).__qualname__
            if type(exception).__module__ == "builtins"
            else f"{type(exception).__module__}.{type(exception).__qualname__}",
            "exception.message": message,
            "exception.stacktrace": "".join(
                traceback.format_exception(type(exception), exception, exception.__traceback__)
            ),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event("exception", event_attributes)
        return self.set_status(_ERROR, message)

    # -- lifetime --------------------------------------------------------------------------------

    def end(self, end_time: datetime | float | None = None) -> None:
        """Ends the span (idempotent) and hands it to its tracer when sampled."""
        if self._end_mono is not None:
            return
        if end_time is None:
            self._end_mono = perf_counter_ns()
        else:
            self._end_mono = self._start_mono + max(0, _to_ns(end_time) - self.start_time_ns)
        if self.context.trace_flags & 1:
            self._recorder._on_end(self)

    @property
    def end_time_ns(self) -> int | None:
        """End timestamp in nanoseconds since the epoch (start + monotonic duration)."""
        end = self._end_mono
        return None if end is None else self.start_time_ns + (end - self._start_mono)

    @property
    def start_time(self) -> datetime:
        return _from_ns(self.start_time_ns)

    @property
    def end_time(self) -> datetime | None:
        end = self.end_time_ns
        return None if end is None else _from_ns(end)

    @property
    def duration_ns(self) -> int | None:
        """Duration in nanoseconds (monotonic clock), or ``None`` before ``end()``."""
        end = self._end_mono
        return None if end is None else end - self._start_mono

    @property
    def duration_ms(self) -> float | None:
        """Duration in milliseconds, or ``None`` before ``end()``."""
        end = self._end_mono
        return None if end is None else (end - self._start_mono) / 1e6

    @property
    def duration_seconds(self) -> float | None:
        """Duration in seconds, or ``None`` before ``end()``."""
        end = self._end_mono
        return None if end is None else (end - self._start_mono) / 1e9

    def __enter__(self) -> Self:
        self._token = _current_span.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            if self.status is _UNSET:
                self.status = _OK
        elif self._recorder._record_exceptions:
            self.record_exception(exc)
        else:
            self.set_status(_ERROR, str(exc))
        self.end()
        token = self._token
        if token is not None:
            self._token = None
            try:
                _current_span.reset(token)
            except ValueError:  # exited in another context (e.g. another task)
                previous = token.old_value
                _current_span.set(None if previous is Token.MISSING else previous)

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-friendly values (times in ISO 8601, enums as their values)."""
        end = self.end_time
        return {
            "name": self.name,
            "kind": self.kind.value,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "trace_flags": self.context.trace_flags,
            "trace_state": self.context.trace_state.to_header(),
            "start_time": self.start_time.isoformat(),
            "end_time": None if end is None else end.isoformat(),
            "duration_ms": self.duration_ms,
            "status": self.status.value,
            "status_message": self.status_message,
            "attributes": dict(self._attributes) if self._attributes else {},
            "events": [event.to_dict() for event in self._events or ()],
            "links": [link.to_dict() for link in self._links or ()],
            "dropped_attributes": self.dropped_attributes,
            "dropped_events": self.dropped_events,
            "dropped_links": self.dropped_links,
        }

    def __repr__(self) -> str:
        return (
            f"Span(name={self.name!r}, trace_id={self.trace_id!r}, span_id={self.span_id!r}, "
            f"status={self.status.value!r})"
        )


_new_span = object.__new__


def _start(  # noqa: PLR0917 (internal, positional for speed)
    recorder: _Recorder,
    name: str,
    kind: SpanKind,
    context: SpanContext,
    parent_context: SpanContext | None,
    attributes: dict[str, Any],
) -> Span:
    """A started span for a tracer (the hot path: no argument coercion, no defaults to resolve).

    ``attributes`` becomes the span's own dict; it must be within the limits already.
    """
    span: Span = _new_span(Span)
    span.name = name
    span.kind = kind
    span.context = context
    span.parent_context = parent_context
    span.start_time_ns = time_ns()
    span._start_mono = perf_counter_ns()
    span._end_mono = None
    span._attributes = attributes
    span._events = None
    span._links = None
    span._dropped = None
    span._recorder = recorder
    span._token = None
    span.status = _UNSET
    span.status_message = ""
    return span


class _NoTraceContext(SpanContext):
    """The context of a no-op span that has no parent: the all-zero ids of W3C Trace Context.

    Unlike any other invalid context, it writes its header instead of raising:
    ``00-<32 zeros>-<16 zeros>-00`` is the recommendation's own "no trace", which a receiver
    (``from_traceparent`` included) reads as absent and answers by starting its own trace,
    exactly as if nothing had been sent. So the specification's propagation code
    (``span.context.to_traceparent()``) keeps working when tracing is disabled, without a
    trace being invented or lost. ``inject_context`` still writes nothing for it.
    """

    __slots__ = ()

    def to_traceparent(self) -> str:
        return _NO_TRACE_HEADER


_NO_TRACE_HEADER: Final = f"00-{INVALID_TRACE_ID}-{INVALID_SPAN_ID}-00"
_INVALID_CONTEXT: Final = _NoTraceContext._new(
    INVALID_TRACE_ID, INVALID_SPAN_ID, None, 0, EMPTY_TRACE_STATE, False
)


class NoopSpan:
    """The span of a disabled tracer: every method does nothing and returns the span.

    ``NoopTracer`` hands out one shared instance (no allocation, no id generation). Its context
    is the invalid all-zero context (``is_valid`` is false, so ``inject_context`` never writes
    it; its ``to_traceparent()`` is the all-zero header, which receivers read as absent),
    unless the tracer was given a parent, which a no-op span carries unchanged so that
    propagation still continues the caller's trace.
    """

    __slots__ = ("context",)

    def __init__(self, context: SpanContext = _INVALID_CONTEXT) -> None:
        self.context = context

    name = ""
    kind = SpanKind.INTERNAL
    parent_context = None
    status = SpanStatus.UNSET
    status_message = ""
    is_recording = False
    duration_ms = None
    duration_seconds = None
    dropped_attributes = dropped_events = dropped_links = 0

    @property
    def trace_id(self) -> str:
        return self.context.trace_id

    @property
    def span_id(self) -> str:
        return self.context.span_id

    @property
    def parent_span_id(self) -> str | None:
        return None

    @property
    def is_sampled(self) -> bool:
        return False

    @property
    def attributes(self) -> dict[str, Any]:
        return {}

    @property
    def events(self) -> list[SpanEvent]:
        return []

    @property
    def links(self) -> list[SpanLink]:
        return []

    def set_attribute(self, key: str, value: Any) -> Self:
        return self

    def set_attributes(self, attributes: Mapping[str, Any]) -> Self:
        return self

    def add_event(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        timestamp: datetime | float | None = None,
    ) -> Self:
        return self

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> Self:
        return self

    def set_status(self, status: SpanStatus | str, message: str = "") -> Self:
        return self

    def record_exception(
        self, exception: BaseException, attributes: Mapping[str, Any] | None = None
    ) -> Self:
        return self

    def end(self, end_time: datetime | float | None = None) -> None:
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"name": "", "trace_id": self.trace_id, "span_id": self.span_id, "noop": True}

    def __repr__(self) -> str:
        return "NoopSpan()"


class _SharedNoopSpan(NoopSpan):
    """The one no-op span of ``NoopTracer``: entering it runs no Python code (see below)."""

    __slots__ = ()


NOOP_SPAN: Final = _SharedNoopSpan()
# A `with` statement calls `type(span).__enter__`; a C-level callable without `__get__` is
# called with no arguments, and `repeat(span).__next__` returns the span: one fewer Python frame
# on the hot path of disabled tracing (about 25 ns of its ~180 ns).
_SharedNoopSpan.__enter__ = itertools.repeat(NOOP_SPAN).__next__  # type: ignore[method-assign,assignment]
