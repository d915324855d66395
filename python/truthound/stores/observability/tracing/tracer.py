"""Tracers: ``Tracer`` (base and factory), ``NoopTracer`` and ``InMemoryTracer``.

Nesting follows ``_context.current_span`` (a ``ContextVar``): a span entered with ``with`` is the
parent of spans started inside the block, in the same thread or asyncio task; a new thread or
task started outside any span begins a new trace (pass ``parent=`` or run it in a copied
context to continue one).
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import deque
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final

from .. import _context, _core, _fork
from ..config import TracingConfig, TracingSampler
from ..errors import InvalidArgumentError
from ..protocols import ObservabilityContext
from .context import EMPTY_TRACE_STATE, SpanContext, SpanKind, TraceState
from .sampling import AlwaysOnSampler, Sampler, make_sampler
from .span import DEFAULT_LIMIT, NOOP_SPAN, NoopSpan, Span, SpanLink, _start

if TYPE_CHECKING:
    from .export import OpenTelemetryTracer

__all__ = ["InMemoryTracer", "NoopTracer", "Tracer", "extract_span_context", "inject_span_context"]

_current_span = _context.current_span
_INTERNAL: Final = SpanKind.INTERNAL
_TRACEPARENT, _TRACESTATE = "traceparent", "tracestate"
#: What ``Tracer.create(exporter_type=...)`` accepts.
_EXPORTER_TYPES: Final = ("otlp", "jaeger", "zipkin", "console", "memory", "noop")


def _header(carrier: Mapping[str, Any], name: str) -> Any:
    """A header from a carrier, case-insensitively (HTTP header names are)."""
    value = carrier.get(name)
    if value is None:
        for key, candidate in carrier.items():
            if isinstance(key, str) and key.lower() == name:
                return candidate
    return value


def extract_span_context(carrier: Mapping[str, Any]) -> SpanContext | None:
    """The remote parent described by a carrier's ``traceparent``/``tracestate`` headers.

    Header names are matched case-insensitively; a ``tracestate`` given as a list (several
    headers) is combined. ``None`` when there is no valid ``traceparent``.
    """
    traceparent = _header(carrier, _TRACEPARENT)
    if isinstance(traceparent, list | tuple):
        traceparent = traceparent[0] if len(traceparent) == 1 else None
    return SpanContext.from_traceparent(traceparent, _header(carrier, _TRACESTATE))


def inject_span_context(
    carrier: MutableMapping[str, str], context: SpanContext
) -> MutableMapping[str, str]:
    """Writes ``traceparent`` (and ``tracestate`` when there is state) for ``context``.

    A context whose ids are not valid W3C ids is not written (a receiver would discard it).
    """
    if context.is_valid:
        carrier[_TRACEPARENT] = context.to_traceparent()
        if context.trace_state:
            carrier[_TRACESTATE] = context.trace_state.to_header()
    return carrier


class Tracer:
    """Base class of every tracer, and the factory of the configured one.

    Methods common to all tracers: ``start_span`` (a span usable as a context manager), ``trace``
    (the same, existing API name), ``inject_context``/``extract_context`` (W3C headers),
    ``get_current_span``, ``flush`` and ``shutdown`` (both bounded by a timeout, returning
    whether they completed).
    """

    service_name: str = "truthound-store"

    _cached: ClassVar[Tracer | None] = None
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    # -- the factory -----------------------------------------------------------------------------

    @staticmethod
    def create(
        service_name: str | None = None,
        enabled: bool = True,
        exporter_type: str | None = None,
        endpoint: str | None = None,
        config: TracingConfig | None = None,
        **options: Any,
    ) -> Tracer:
        """The tracer a configuration asks for.

        ``enabled=False`` (or ``config.enabled`` false, or exporter ``"noop"``) gives a
        ``NoopTracer``; exporter ``"memory"`` an ``InMemoryTracer``; ``"otlp"``, ``"jaeger"``,
        ``"zipkin"`` and ``"console"`` an ``OpenTelemetryTracer`` (or an ``InMemoryTracer``, with
        a warning, when OpenTelemetry is not installed). Keyword arguments beyond these go to
        the tracer's constructor.
        """
        if exporter_type is not None and exporter_type not in _EXPORTER_TYPES:
            raise InvalidArgumentError(
                f"exporter_type={exporter_type!r}: expected one of "
                + ", ".join(repr(name) for name in _EXPORTER_TYPES)
            )
        config = config if config is not None else TracingConfig()
        if service_name is not None or exporter_type is not None or endpoint is not None:
            config = TracingConfig(
                **{
                    **config.__dict__,
                    "service_name": service_name or config.service_name,
                    "exporter": config.exporter
                    if exporter_type in (None, "memory")
                    else exporter_type,
                    "endpoint": endpoint if endpoint is not None else config.endpoint,
                }
            )
        if (
            not enabled
            or not config.enabled
            or exporter_type == "noop"
            or config.exporter == "noop"
        ):
            return NoopTracer(config)
        if exporter_type == "memory":
            return InMemoryTracer(config, **options)
        return _opentelemetry_or_memory(config, **options)

    @classmethod
    def get_tracer(cls, config: TracingConfig | None = None) -> Tracer:
        """The process-wide tracer, created from ``config`` on first use and cached until
        ``Tracer.reset()`` (a disabled config gives a ``NoopTracer``)."""
        with Tracer._cache_lock:
            if Tracer._cached is None:
                Tracer._cached = Tracer.create(config=config)
            return Tracer._cached

    @classmethod
    def reset(cls) -> None:
        """Forgets the process-wide tracer, shutting it down (bounded by its timeout)."""
        with Tracer._cache_lock:
            cached, Tracer._cached = Tracer._cached, None
        if cached is not None:
            cached.shutdown()

    # -- the interface ---------------------------------------------------------------------------

    def start_span(
        self,
        name: str,
        context: ObservabilityContext | SpanContext | None = None,
        kind: SpanKind | str = _INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        *,
        parent: SpanContext | Span | NoopSpan | None = None,
        links: Sequence[SpanLink] | None = None,
        start_time: datetime | float | None = None,
    ) -> Span | NoopSpan:
        raise NotImplementedError

    def trace(
        self,
        name: str,
        context: ObservabilityContext | SpanContext | None = None,
        kind: SpanKind | str = _INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Span | NoopSpan:
        """A span to use with ``with``: current inside the block, ended and restored after."""
        return self.start_span(name, context, kind, attributes, **options)

    def get_current_span(self) -> Span | None:
        """The span current in this thread or task (whichever tracer started it), or None."""
        span = _current_span.get()
        return span if isinstance(span, Span) else None

    def inject_context(
        self, carrier: MutableMapping[str, str], span: Span | None = None
    ) -> MutableMapping[str, str]:
        """Writes ``traceparent`` (and ``tracestate``) of ``span`` or the current span."""
        span = span if span is not None else self.get_current_span()
        if span is not None:
            inject_span_context(carrier, span.context)
        return carrier

    def extract_context(
        self, carrier: Mapping[str, Any], correlation_header: str = "x-correlation-id"
    ) -> ObservabilityContext | None:
        """The incoming trace as an ``ObservabilityContext`` (None without a valid header).

        ``correlation_id`` is the carrier's correlation header when present, else the trace id;
        ``extra`` holds ``trace_flags`` and ``tracestate`` so that ``start_span(name, context)``
        continues the trace exactly.
        """
        remote = extract_span_context(carrier)
        if remote is None:
            return None
        correlation = _header(carrier, correlation_header.lower())
        return ObservabilityContext(
            correlation_id=str(correlation) if correlation else remote.trace_id,
            trace_id=remote.trace_id,
            span_id=remote.span_id,
            extra={
                "trace_flags": remote.trace_flags,
                "tracestate": remote.trace_state.to_header(),
            },
        )

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Exports what is pending; True when done within the timeout."""
        return True

    def shutdown(self, timeout_seconds: float | None = None) -> bool:
        """Flushes and releases resources; True when done within the timeout."""
        return True

    def __enter__(self) -> Tracer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()


class NoopTracer(Tracer):
    """Tracing switched off: spans cost almost nothing and nothing is recorded or propagated.

    ``start_span`` returns one shared ``NoopSpan`` (no ids are generated, nothing is allocated);
    when a ``parent`` is given the no-op span carries it, so code that forwards
    ``span.context`` keeps the caller's trace. ``inject_context`` writes nothing and
    ``extract_context`` returns None (the existing API's behaviour).
    """

    def __init__(self, config: TracingConfig | None = None, **_ignored: Any) -> None:
        self.config = config
        if config is not None:
            self.service_name = config.service_name

    def start_span(
        self,
        name: str,
        context: ObservabilityContext | SpanContext | None = None,
        kind: SpanKind | str = _INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        *,
        parent: SpanContext | Span | NoopSpan | None = None,
        links: Sequence[SpanLink] | None = None,
        start_time: datetime | float | None = None,
    ) -> NoopSpan:
        if parent is None:
            return NOOP_SPAN
        return NoopSpan(parent if isinstance(parent, SpanContext) else parent.context)

    def inject_context(
        self, carrier: MutableMapping[str, str], span: Span | None = None
    ) -> MutableMapping[str, str]:
        return carrier

    def extract_context(
        self, carrier: Mapping[str, Any], correlation_header: str = "x-correlation-id"
    ) -> ObservabilityContext | None:
        return None


def _limit(value: int | None, default: int, name: str) -> int:
    if value is None:
        return default
    if value < 0:
        raise InvalidArgumentError(f"{name}={value!r}: must not be negative")
    return value


class _RecordingTracer(Tracer):
    """What the in-memory and OpenTelemetry tracers share: sampling, limits, span creation."""

    _limits: tuple[int, int, int]
    _record_exceptions: bool

    def __init__(
        self,
        config: TracingConfig | None = None,
        *,
        service_name: str | None = None,
        sampler: Sampler | TracingSampler | str | None = None,
        sample_ratio: float | None = None,
        max_attributes: int | None = None,
        max_events: int | None = None,
        max_links: int | None = None,
        record_exceptions: bool | None = None,
        record_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        config = config if config is not None else TracingConfig()
        self.config = config
        self.service_name = service_name or config.service_name
        ratio = config.sample_ratio if sample_ratio is None else sample_ratio
        self.sampler = make_sampler(sampler if sampler is not None else config.sampler, ratio)
        self._always_on = type(self.sampler) is AlwaysOnSampler
        self._limits = (
            _limit(max_attributes, config.max_attributes, "max_attributes"),
            _limit(max_events, config.max_events, "max_events"),
            _limit(max_links, DEFAULT_LIMIT, "max_links"),
        )
        self._record_exceptions = (
            config.record_exceptions if record_exceptions is None else record_exceptions
        )
        base = {"service.name": self.service_name}
        base.update(config.record_attributes)
        if record_attributes:
            base.update(record_attributes)
        self._base_attributes = dict(list(base.items())[: self._limits[0]])
        self._core = _core.core

    def _ambient_parent(self) -> SpanContext | None:
        """A parent from outside this package when no span of ours is current (none here)."""
        return None

    @staticmethod
    def _parent_of(
        parent: SpanContext | Span | NoopSpan | None,
        context: ObservabilityContext | SpanContext | Span | None,
    ) -> SpanContext | None:
        chosen: Any = parent if parent is not None else context
        if isinstance(chosen, SpanContext):
            return chosen
        if isinstance(chosen, Span | NoopSpan):
            return chosen.context
        if isinstance(chosen, ObservabilityContext):
            if not chosen.trace_id:
                return None
            extra = chosen.extra or {}
            flags = extra.get("trace_flags", 1)
            state = TraceState.from_header(extra.get("tracestate"))
            # The existing API continues the caller's trace id as given (not validated).
            return SpanContext._new(
                chosen.trace_id,
                chosen.span_id or "",
                None,
                flags if isinstance(flags, int) and 0 <= flags <= 0xFF else 1,
                state,
                True,
            )
        raise InvalidArgumentError(
            f"parent={chosen!r}: expected a SpanContext, a Span or an ObservabilityContext"
        )

    def start_span(
        self,
        name: str,
        context: ObservabilityContext | SpanContext | None = None,
        kind: SpanKind | str = _INTERNAL,
        attributes: Mapping[str, Any] | None = None,
        *,
        parent: SpanContext | Span | NoopSpan | None = None,
        links: Sequence[SpanLink] | None = None,
        start_time: datetime | float | None = None,
    ) -> Span:
        """Starts a span: a child of ``parent`` (a ``SpanContext``, e.g. from
        ``SpanContext.from_traceparent``, or a span), else of ``context`` (an
        ``ObservabilityContext`` carrying a ``trace_id``, existing API), else of the current
        span, else a new trace.

        A remote parent is continued: same trace id, the remote span id as parent span id, its
        sampled flag honoured by the parent-based sampler. Use the span with ``with`` to make it
        current for the block.
        """
        # An ObservabilityContext without a trace id (a request context, say) says who, not
        # where in a trace: the span then nests under the current span like any other.
        if parent is None and (
            context is None or (isinstance(context, ObservabilityContext) and not context.trace_id)
        ):
            current = _current_span.get()
            parent_context = current.context if current is not None else self._ambient_parent()  # type: ignore[attr-defined]
        else:
            parent_context = self._parent_of(parent, context)
        core = self._core
        if parent_context is None:
            trace_id = core.generate_trace_id()
            parent_span_id = None
            state = EMPTY_TRACE_STATE
        else:
            trace_id = parent_context.trace_id
            parent_span_id = parent_context.span_id or None
            state = parent_context.trace_state
        if self._always_on:
            flags = 1
        else:
            flags = 1 if self.sampler.should_sample(parent_context, trace_id) else 0
        span = _start(
            self,
            name,
            kind if kind.__class__ is SpanKind else SpanKind(kind),
            SpanContext._new(
                trace_id, core.generate_span_id(), parent_span_id, flags, state, False
            ),
            parent_context,
            self._base_attributes.copy(),
        )
        if attributes:
            span.set_attributes(attributes)
        if links:
            for link in links:
                span.add_link(link.context, link.attributes)
        if start_time is not None:
            from .span import _to_ns

            span.start_time_ns = _to_ns(start_time)
        return span

    def _on_end(self, span: Span) -> None:
        raise NotImplementedError


class InMemoryTracer(_RecordingTracer):
    """Keeps ended, sampled spans in memory (tests, debugging, local tools).

    ``InMemoryTracer(config=None, max_spans=10000, ...)``: at most ``max_spans`` spans are kept;
    older ones are evicted first and counted in ``evicted_spans``. Thread-safe; a forked child
    gets a copy of the kept spans, like any object, and a lock of its own.
    """

    DEFAULT_MAX_SPANS: ClassVar[int] = 10_000

    def __init__(
        self,
        config: TracingConfig | int | None = None,
        *,
        max_spans: int | None = None,
        **options: Any,
    ) -> None:
        if isinstance(config, int) and not isinstance(config, bool):
            config, max_spans = None, config  # InMemoryTracer(1000)
        super().__init__(config, **options)  # type: ignore[arg-type]
        self.max_spans = _limit(max_spans, self.DEFAULT_MAX_SPANS, "max_spans")
        self._spans: deque[Span] = deque()
        self._lock = threading.Lock()
        self._evicted = 0
        _fork.track(self, "_lock")

    @property
    def evicted_spans(self) -> int:
        """Spans discarded because ``max_spans`` were already kept (oldest first)."""
        return self._evicted

    def _on_end(self, span: Span) -> None:
        spans = self._spans
        spans.append(span)
        if len(spans) > self.max_spans:
            with self._lock:
                while len(spans) > self.max_spans:
                    spans.popleft()
                    self._evicted += 1

    def get_spans(self) -> list[Span]:
        """The kept spans, oldest first."""
        return list(self._spans)

    @property
    def spans(self) -> list[Span]:
        """The kept spans, oldest first (existing API)."""
        return list(self._spans)

    def get_spans_by_name(self, name: str) -> list[Span]:
        """The kept spans called ``name``, oldest first."""
        return [span for span in list(self._spans) if span.name == name]

    def clear(self) -> None:
        """Forgets every kept span (the eviction count is kept)."""
        with self._lock:
            self._spans.clear()


# The factory's cache lock: a child forked while another thread held it must not inherit it held.
_fork.track(Tracer, "_cache_lock")

#: The options every recording tracer takes (the others are the exporter's).
_RECORDING_OPTIONS = (
    "service_name",
    "sampler",
    "sample_ratio",
    "max_attributes",
    "max_events",
    "max_links",
    "record_exceptions",
    "record_attributes",
)
#: The OpenTelemetry variables that name an OTLP endpoint for traces.
_OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def _opentelemetry_or_memory(config: TracingConfig, **options: Any) -> Tracer:
    """An ``OpenTelemetryTracer`` for the configured exporter.

    The OTLP exporter with no endpoint anywhere (neither ``config.endpoint``, a keyword, nor the
    ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` variables) gives an ``InMemoryTracer`` and one
    warning instead of sending to a guessed ``localhost:4317``: the defaults must not reach for
    the network (nor make ``close()`` wait for a collector that is not there).
    """
    if (
        config.exporter == "otlp"
        and not config.endpoint
        and not options.get("endpoint")
        and not options.get("span_exporter")
        and not any(os.environ.get(name) for name in _OTLP_ENDPOINT_VARIABLES)
    ):
        warnings.warn(
            "tracing: no OTLP endpoint is configured (TracingConfig.endpoint or "
            "OTEL_EXPORTER_OTLP_ENDPOINT); spans are kept in memory",
            RuntimeWarning,
            stacklevel=3,
        )
        recording = {key: options[key] for key in _RECORDING_OPTIONS if key in options}
        return InMemoryTracer(config, **recording)
    # Imported here: export.py builds on this module. Without OpenTelemetry installed the
    # tracer warns and keeps spans in memory (see OpenTelemetryTracer).
    from .export import OpenTelemetryTracer

    tracer: OpenTelemetryTracer = OpenTelemetryTracer(config, **options)
    return tracer
