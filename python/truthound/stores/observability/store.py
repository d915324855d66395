"""Observing a store: ``ObservabilityManager`` ties the three pillars to one store, and
``ObservableStore`` wraps any ``BaseStore`` so every operation is traced, measured and audited
exactly once.

One operation = one span ``store.<operation>`` (kind CLIENT), one ``store_operations_total``
sample and one ``store_operation_duration_seconds`` observation (plus ``store_errors_total`` on
failure), and one audit event carrying the span's trace and span ids. Errors from the wrapped
store propagate unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from truthound.stores.base import BaseStore, StoreQuery

from . import _fork
from .audit import (
    AsyncAuditBackend,
    AuditEventType,
    AuditLogger,
    FileAuditBackend,
    InMemoryAuditBackend,
    JsonAuditBackend,
)
from .config import ObservabilityConfig
from .errors import InvalidArgumentError
from .metrics import PrometheusMetricsBackend, StoreMetrics
from .protocols import ObservabilityContext
from .tracing import INVALID_TRACE_ID, NoopTracer, SpanKind, Tracer

__all__ = ["ObservabilityManager", "ObservableStore"]

_log = logging.getLogger("truthound.stores.observability")

T = TypeVar("T")

#: Where the audit trail goes when the configuration names a file backend but no path.
DEFAULT_AUDIT_DIRECTORY = Path(".truthound/audit")

# The audit event and span of the operation being observed in this thread or task, so that
# what is only known inside the block (the id a save assigned) reaches both.
_current_observation: ContextVar[tuple[Any, Any] | None] = ContextVar(
    "truthound_observability_observation", default=None
)


def _audit_backend_from_config(config: ObservabilityConfig) -> Any:
    audit = config.audit
    if audit.backend == "memory":
        return InMemoryAuditBackend(audit)
    if audit.backend == "file":
        backend: Any = FileAuditBackend(
            audit, file_path=audit.file_path or DEFAULT_AUDIT_DIRECTORY / "audit.log"
        )
    elif audit.file_path is not None:
        backend = JsonAuditBackend(audit, file_path=audit.file_path)
    else:
        backend = JsonAuditBackend(audit, directory=DEFAULT_AUDIT_DIRECTORY, rotate_daily=True)
    # File writes leave the caller's thread; flush() and close() wait for them.
    return AsyncAuditBackend(backend, flush_interval_seconds=audit.flush_interval_seconds)


# The library's own loss and delivery counters, exposed as metrics (outcome label -> attribute).
_AUDIT_OUTCOMES = (
    ("written", "written_events"),
    ("written", "logged_events"),
    ("persisted", "persisted_events"),
    ("dropped", "dropped_events"),
    ("failed", "failed_events"),
    ("evicted", "evicted_events"),
    ("filtered", "filtered_events"),
    ("exported", "exported_events"),
)
_SPAN_OUTCOMES = (
    ("exported", "exported_spans"),
    ("dropped", "dropped_spans"),
    ("evicted", "evicted_spans"),
)
_METRICS_COUNTERS = (
    ("observability_metric_series_overflows_total", "series_overflows"),
    ("observability_exemplars_dropped_total", "dropped_exemplars"),
    ("observability_push_failures_total", "push_failures"),
    ("observability_multiprocess_skipped_files_total", "multiprocess_skipped_files"),
    ("observability_multiprocess_skipped_records_total", "multiprocess_skipped_records"),
    ("observability_multiprocess_repairs_total", "multiprocess_repairs"),
)
# name -> (label names, HELP text)
_SELF_METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "observability_audit_events_total": (
        ("backend", "outcome"),
        "Audit events by backend and outcome (written, persisted, exported, dropped, failed, "
        "evicted, filtered by level)",
    ),
    "observability_audit_delivery_failures_total": (
        ("backend",),
        "Deliveries from a composite audit backend to one of its backends that failed",
    ),
    "observability_audit_delivery_timeouts_total": (
        ("backend",),
        "Deliveries from a composite audit backend cut off because a backend hung",
    ),
    "observability_audit_segments_pruned_total": (
        ("backend",),
        "Closed audit files deleted by the retention settings (max_files, retention_days)",
    ),
    "observability_audit_refused_operations_total": (
        (),
        "Operations refused in fail-closed mode because no audit backend could record them",
    ),
    "observability_audit_unrecorded_events_total": (
        (),
        "Audit events that no backend recorded (fail-closed mode raises for each)",
    ),
    "observability_spans_total": (
        ("outcome",),
        "Finished spans by outcome (exported, dropped, evicted from memory)",
    ),
    "observability_metric_series_overflows_total": (
        (),
        "Samples folded into a metric's overflow series because it hit its cardinality limit",
    ),
    "observability_exemplars_dropped_total": (
        (),
        "Exemplars not attached because they exceeded the OpenMetrics size limit",
    ),
    "observability_push_failures_total": ((), "Pushes to a Pushgateway that failed"),
    "observability_multiprocess_skipped_files_total": (
        (),
        "Multiprocess metric files that could not be read and were skipped by scrapes",
    ),
    "observability_multiprocess_skipped_records_total": (
        (),
        "Records of multiprocess metric files that could not be read and were skipped",
    ),
    "observability_multiprocess_repairs_total": (
        (),
        "Leftovers of interrupted multiprocess compactions that were cleaned up",
    ),
}


_AUDIT_EVENTS = "observability_audit_events_total"
_SPANS = "observability_spans_total"
_AUDIT_DELIVERIES = (
    ("observability_audit_delivery_failures_total", "failed_deliveries"),
    ("observability_audit_delivery_timeouts_total", "timed_out_deliveries"),
    ("observability_audit_segments_pruned_total", "pruned_segments"),
)
_AUDIT_LOGGER_COUNTERS = (
    ("observability_audit_refused_operations_total", "refused_operations"),
    ("observability_audit_unrecorded_events_total", "unrecorded_events"),
)


def _reading(
    component: Any, attribute: str, metric: str, labels: dict[str, str]
) -> Iterator[tuple[Any, str, dict[str, str], float]]:
    """``component.attribute`` as a reading of ``metric``, when the component counts it."""
    value = getattr(component, attribute, None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        yield component, metric, labels, float(value)


def _audit_backends(backend: Any) -> Iterator[Any]:
    """``backend`` and every backend it wraps (async, composite), outermost first."""
    yield backend
    inner = getattr(backend, "backend", None)
    if inner is not None:
        yield from _audit_backends(inner)
    for child in getattr(backend, "backends", None) or ():
        yield from _audit_backends(child)


def _manager_readings(
    manager: ObservabilityManager,
) -> Iterator[tuple[Any, str, dict[str, str], float]]:
    if manager.audit_backend is not None:
        for backend in _audit_backends(manager.audit_backend):
            name = type(backend).__name__
            for outcome, attribute in _AUDIT_OUTCOMES:
                labels = {"backend": name, "outcome": outcome}
                yield from _reading(backend, attribute, _AUDIT_EVENTS, labels)
            for metric, attribute in _AUDIT_DELIVERIES:
                yield from _reading(backend, attribute, metric, {"backend": name})
    for metric, attribute in _AUDIT_LOGGER_COUNTERS:
        yield from _reading(manager.audit, attribute, metric, {})
    for outcome, attribute in _SPAN_OUTCOMES:
        yield from _reading(manager.tracer, attribute, _SPANS, {"outcome": outcome})
    for metric, attribute in _METRICS_COUNTERS:
        yield from _reading(manager.metrics_backend, attribute, metric, {})


class _SelfObservation:
    """The collect hook of one metrics backend that publishes the library's own counters.

    Every component keeps its counters in plain attributes. Before each read of the metrics
    backend, the growth of each component's counters since the last read is added to counters
    named ``observability_*`` (the backend's prefix applies), so a lost audit event, a dropped
    span or a failed push is visible where alerts are written. One hook serves every manager
    that shares the backend; a component shared by several managers is counted once, and two
    components with the same labels (two ``InMemoryAuditBackend``s) add up.

    In a forked child (pre-fork servers), the readings at the fork become the baseline: the
    child publishes only what it counts itself, whether a component's counters start again at
    zero there or carry on from the parent's, so a sum over the processes counts nothing twice.
    """

    def __init__(self, backend: Any) -> None:
        self._backend = weakref.ref(backend)
        self._managers: weakref.WeakSet[ObservabilityManager] = weakref.WeakSet()
        # component -> {(metric, labels): the value already published}
        self._published: weakref.WeakKeyDictionary[Any, dict[tuple[str, Any], float]] = (
            weakref.WeakKeyDictionary()
        )
        self._published_strongly: dict[int, tuple[dict[tuple[str, Any], float], Any]] = {}
        self._lock = threading.Lock()
        _fork.track(self, "_lock", forget=_SelfObservation._after_fork_in_child, last=True)
        register = getattr(backend, "register", None)
        if callable(register):
            for name, (label_names, documentation) in _SELF_METRICS.items():
                register(name, "counter", documentation, label_names=label_names)

    @classmethod
    def attach(cls, manager: ObservabilityManager) -> None:
        """Publishes ``manager``'s counters through its metrics backend's (single) hook."""
        backend = manager.metrics_backend
        add_collect_hook = getattr(backend, "add_collect_hook", None)
        if not callable(add_collect_hook):
            return
        with _OBSERVERS_LOCK:
            observer = _OBSERVERS.get(backend)
            if observer is None:
                observer = _OBSERVERS[backend] = cls(backend)
                add_collect_hook(observer)
        observer._managers.add(manager)

    def _published_by(self, component: Any) -> dict[tuple[str, Any], float]:
        try:
            return self._published.setdefault(component, {})
        except TypeError:  # not weak-referenceable: keep it alive so its id stays unique
            return self._published_strongly.setdefault(id(component), ({}, component))[0]

    def _after_fork_in_child(self) -> None:
        # Runs after every other object's fork handling (``last=True``), so what each component
        # reads now is what it counted before the child's own work: the baseline.
        with contextlib.suppress(Exception):
            for manager in list(self._managers):
                for component, name, labels, value in _manager_readings(manager):
                    self._published_by(component)[(name, tuple(sorted(labels.items())))] = value

    def __call__(self) -> None:
        backend = self._backend()
        if backend is None:
            return
        with self._lock:
            seen: set[tuple[int, str, tuple[tuple[str, str], ...]]] = set()
            for manager in list(self._managers):
                for component, name, labels, value in _manager_readings(manager):
                    key = (name, tuple(sorted(labels.items())))
                    if (id(component), *key) in seen:
                        continue  # shared by several managers: counted once
                    seen.add((id(component), *key))
                    published = self._published_by(component)
                    growth = value - published.get(key, 0.0)
                    if growth >= 0:  # a counter its owner reset is not republished
                        backend.increment(name, growth, labels)
                        published[key] = value


_OBSERVERS: weakref.WeakKeyDictionary[Any, _SelfObservation] = weakref.WeakKeyDictionary()
_OBSERVERS_LOCK = threading.Lock()
# A child forked while another thread held it must not inherit it held.
_fork.track(sys.modules[__name__], "_OBSERVERS_LOCK")


class ObservabilityManager:
    """The three pillars for one store, created from an ``ObservabilityConfig``.

    Backends given explicitly are used as they are (and shared, never copied); the others are
    built from the configuration. ``audit`` is ``None`` and ``metrics`` is ``None`` when that
    pillar is disabled; ``tracer`` is a ``NoopTracer`` when tracing is. The manager never
    installs its tracer as the process-wide OpenTelemetry provider.
    """

    def __init__(  # noqa: PLR0917 - the existing API passes these positionally
        self,
        config: ObservabilityConfig | None = None,
        store_type: str = "unknown",
        store_id: str | None = None,
        audit_backend: Any = None,
        metrics_backend: Any = None,
        tracer: Tracer | None = None,
    ) -> None:
        if config is not None and not isinstance(config, ObservabilityConfig):
            raise InvalidArgumentError(f"config={config!r} must be an ObservabilityConfig")
        self.config = config if config is not None else ObservabilityConfig()
        self.store_type = store_type
        self.store_id = store_id
        self._owned: list[Any] = []  # what this manager created, and so must close

        self.audit_backend: Any = None
        self.audit: AuditLogger | None = None
        if self.config.audit_enabled:
            self.audit_backend = audit_backend
            if audit_backend is None:
                self.audit_backend = _audit_backend_from_config(self.config)
                self._owned.append(self.audit_backend)
            self.audit = AuditLogger(
                self.audit_backend,
                store_type=store_type,
                store_id=store_id or "",
                fail_closed=self.config.audit.fail_closed,
                fail_closed_timeout_seconds=self.config.audit.fail_closed_timeout_seconds,
            )

        self.metrics_backend: Any = None
        self.metrics: StoreMetrics | None = None
        if self.config.metrics_enabled:
            self.metrics_backend = metrics_backend
            if metrics_backend is None:
                self.metrics_backend = PrometheusMetricsBackend(
                    self.config.metrics, auto_start_server=True
                )
                self._owned.append(self.metrics_backend)
            self.metrics = StoreMetrics(self.metrics_backend, store_type, store_id)

        if tracer is not None:
            self.tracer: Tracer = tracer
        elif self.config.tracing_enabled:
            self.tracer = Tracer.create(config=self.config.tracing)
            self._owned.append(self.tracer)
        else:
            self.tracer = NoopTracer(self.config.tracing)

        if self.metrics_backend is not None:
            _SelfObservation.attach(self)

        self._closed = False

    def create_context(
        self, correlation_id: str | None = None, **fields: Any
    ) -> ObservabilityContext:
        """A new context (a fresh correlation id unless one is given)."""
        return ObservabilityContext(correlation_id=correlation_id or uuid.uuid4().hex, **fields)

    @contextmanager
    def observe(
        self,
        operation: str,
        event_type: AuditEventType | str,
        resource_type: str = "",
        resource_id: str | None = None,
        context: ObservabilityContext | None = None,
        *,
        audit_metadata: Mapping[str, Any] | None = None,
        **attributes: Any,
    ) -> Iterator[ObservabilityContext]:
        """Observes the block as one store operation.

        Opens span ``store.<operation>`` (the context's trace id is continued), yields the context
        carrying the span's ids, and on exit records the operation's metrics (and the error type
        on failure) and one audit event. ``attributes`` go to the span and the audit event's
        metadata; ``audit_metadata`` to the audit event only (where redaction applies).
        Exceptions propagate unchanged.
        """
        context = context if context is not None else self.create_context()
        span_attributes = {
            "store.type": self.store_type,
            "store.operation": operation,
            **({"store.id": self.store_id} if self.store_id else {}),
            **({"store.resource_id": resource_id} if resource_id is not None else {}),
            **attributes,
        }
        started = time.perf_counter()
        # The span records an escaping exception and sets its status itself.
        with self.tracer.start_span(
            f"store.{operation}", context, SpanKind.CLIENT, span_attributes
        ) as span:
            if span.trace_id != INVALID_TRACE_ID:
                context = context.with_span(span.trace_id, span.span_id)
            audit_block: AbstractContextManager[Any] = (
                self.audit.operation(
                    event_type,
                    operation,
                    resource_type,
                    resource_id,
                    context,
                    **attributes,
                    **(audit_metadata or {}),
                )
                if self.audit is not None
                else nullcontext()
            )
            try:
                with audit_block as event:
                    token = _current_observation.set((event, span))
                    try:
                        yield context
                    finally:
                        _current_observation.reset(token)
            except BaseException as error:
                self._record_metrics(operation, started, error)
                raise
            self._record_metrics(operation, started, None)

    @staticmethod
    def set_resource_id(resource_id: str) -> None:
        """Names the item the operation being observed (in this thread or task) acted on, for
        operations that learn it inside the block, such as a save that assigns the id."""
        observation = _current_observation.get()
        if observation is None:
            return
        event, span = observation
        if event is not None:
            event.resource_id = resource_id
        span.set_attribute("store.resource_id", resource_id)

    def _record_metrics(self, operation: str, started: float, error: BaseException | None) -> None:
        if self.metrics is None:
            return
        duration_ms = (time.perf_counter() - started) * 1000.0
        self.metrics.record_operation(operation, duration_ms=duration_ms, success=error is None)
        if error is not None:
            self.metrics.record_error(type(error).__name__)

    def flush(self) -> None:
        """Persists pending audit events and exports pending spans."""
        if self.audit is not None:
            self.audit.flush()
        self.tracer.flush()

    def shutdown(self) -> None:
        """Flushes, then closes what this manager created (shared backends stay open)."""
        if self._closed:
            return
        self._closed = True
        self.flush()
        for component in reversed(self._owned):
            closer = getattr(component, "shutdown", None) or getattr(component, "close", None)
            try:
                if callable(closer):
                    closer()
            except Exception:
                _log.exception("closing %r failed", component)


class _InOwnContext(Iterator[T]):
    """Drives a generator inside a context of its own. A generator that enters a context
    manager setting context variables (the current span and observation) would otherwise leave
    them set in its caller's context while it is suspended, and resetting them from another
    context (a thread closing it, the garbage collector) fails."""

    __slots__ = ("_context", "_generator")

    def __init__(self, generator: Iterator[T]) -> None:
        self._context = contextvars.copy_context()
        self._generator = generator

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        return self._context.run(next, self._generator)

    def close(self) -> None:
        """Stops early (the operation ends as a success)."""
        close = getattr(self._generator, "close", None)
        if close is not None:
            self._context.run(close)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


class ObservableStore(BaseStore[T, Any], Generic[T]):
    """A store that observes every operation of the store it wraps.

    Each method takes an optional ``context=`` (an ``ObservabilityContext``); without one the
    store's own context (see ``with_context``/``with_user``) or a fresh one is used.
    ``with_context`` and ``with_user`` return views that share this store's manager: one
    metrics endpoint, one audit writer, one tracer.
    """

    def __init__(
        self,
        store: BaseStore[T, Any],
        config: ObservabilityConfig | None = None,
        context: ObservabilityContext | None = None,
        *,
        manager: ObservabilityManager | None = None,
    ) -> None:
        if not isinstance(store, BaseStore):
            raise InvalidArgumentError(f"store={store!r} is not a BaseStore")
        self._store = store
        self._context = context
        # A store that built its manager closes it; views share their root's (with_context).
        self._owns_observability = manager is None
        self.observability = manager or ObservabilityManager(
            config, store_type=type(store).__name__, store_id=store.config.namespace
        )
        # Deliberately not calling BaseStore.__init__: the configuration and the initialisation
        # state are the wrapped store's.

    # ---- the store's own state ----------------------------------------------------------------

    @property
    def config(self) -> Any:
        return self._store.config

    @property
    def store(self) -> BaseStore[T, Any]:
        """The wrapped store."""
        return self._store

    @property
    def is_initialized(self) -> bool:
        return self._store.is_initialized

    @property
    def context(self) -> ObservabilityContext | None:
        """The context used by operations called without ``context=``."""
        return self._context

    def _observe(
        self,
        operation: str,
        event_type: AuditEventType,
        context: ObservabilityContext | None,
        resource_id: str | None = None,
        audit_metadata: Mapping[str, Any] | None = None,
        **attributes: Any,
    ) -> AbstractContextManager[ObservabilityContext]:
        return self.observability.observe(
            operation,
            event_type,
            resource_type=type(self._store).__name__,
            resource_id=resource_id,
            context=context or self._context,
            audit_metadata=audit_metadata,
            **attributes,
        )

    def _data_preview(self, *items: Any) -> dict[str, Any] | None:
        """``AuditConfig.include_data_preview``: the saved data, for the audit event only.

        An item whose JSON fits in ``max_data_preview_size`` characters is kept as it is (so
        redaction by field name applies to its keys); a larger one becomes truncated text.
        """
        audit = self.observability.config.audit
        if not audit.include_data_preview or self.observability.audit is None:
            return None
        previews: list[Any] = []
        for item in items:
            text = json.dumps(item, default=str, ensure_ascii=False)
            if len(text) <= audit.max_data_preview_size:
                previews.append(item)
            else:
                previews.append(text[: audit.max_data_preview_size] + "...")
        return {"data_preview": previews[0] if len(items) == 1 else previews}

    def initialize(self) -> None:
        with self._observe("initialize", AuditEventType.INITIALIZE, None):
            self._store.initialize()

    def close(self) -> None:
        """Closes the wrapped store, then flushes the observability pipeline. A store that built
        its own manager also shuts it down (audit writers, metrics endpoint, span exporter);
        a view from ``with_context``/``with_user`` leaves that to the store it came from."""
        with self._observe("close", AuditEventType.CLOSE, None):
            self._store.close()
        if self._owns_observability:
            self.observability.shutdown()
        else:
            self.flush_observability()

    def __enter__(self) -> Self:
        self.initialize()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- observed operations ------------------------------------------------------------------

    def save(self, item: T, *, context: ObservabilityContext | None = None) -> str:
        with self._observe(
            "save", AuditEventType.CREATE, context, audit_metadata=self._data_preview(item)
        ):
            item_id = self._store.save(item)
            self.observability.set_resource_id(item_id)
            return item_id

    def get(self, item_id: str, *, context: ObservabilityContext | None = None) -> T:
        with self._observe("get", AuditEventType.READ, context, item_id):
            return self._store.get(item_id)

    def exists(self, item_id: str, *, context: ObservabilityContext | None = None) -> bool:
        with self._observe("exists", AuditEventType.READ, context, item_id):
            return self._store.exists(item_id)

    def delete(self, item_id: str, *, context: ObservabilityContext | None = None) -> bool:
        with self._observe("delete", AuditEventType.DELETE, context, item_id):
            return self._store.delete(item_id)

    def list_ids(
        self, query: StoreQuery | None = None, *, context: ObservabilityContext | None = None
    ) -> list[str]:
        with self._observe("list_ids", AuditEventType.LIST, context, **_query_fields(query)):
            return self._store.list_ids(query)

    def query(self, query: StoreQuery, *, context: ObservabilityContext | None = None) -> list[T]:
        with self._observe("query", AuditEventType.QUERY, context, **_query_fields(query)):
            return self._store.query(query)

    def iter_query(
        self,
        query: StoreQuery,
        batch_size: int = 100,
        *,
        context: ObservabilityContext | None = None,
    ) -> Iterator[T]:
        """Observed as one operation spanning the whole iteration: it ends when the iterator is
        exhausted, or closed early (which is a success: the caller had enough). Its span is
        current only while the iterator produces an item, never in the caller's code between
        items (so spans and audit events made there do not join it)."""
        return _InOwnContext(self._iter_query(query, batch_size, context))

    def _iter_query(
        self, query: StoreQuery, batch_size: int, context: ObservabilityContext | None
    ) -> Iterator[T]:
        with self._observe("iter_query", AuditEventType.QUERY, context, **_query_fields(query)):
            items = self._store.iter_query(query, batch_size)
            try:
                yield from items
            except GeneratorExit:
                return
            finally:
                close = getattr(items, "close", None)
                if callable(close):
                    close()

    def get_latest(
        self, data_asset: str, *, context: ObservabilityContext | None = None
    ) -> T | None:
        with self._observe("get_latest", AuditEventType.READ, context, data_asset=data_asset):
            return self._store.get_latest(data_asset)

    def count(
        self, query: StoreQuery | None = None, *, context: ObservabilityContext | None = None
    ) -> int:
        with self._observe("count", AuditEventType.COUNT, context, **_query_fields(query)):
            return self._store.count(query)

    def clear(
        self, query: StoreQuery | None = None, *, context: ObservabilityContext | None = None
    ) -> int:
        with self._observe("clear", AuditEventType.BATCH_DELETE, context, **_query_fields(query)):
            return self._store.clear(query)

    def save_batch(
        self, items: Iterable[T], *, context: ObservabilityContext | None = None
    ) -> list[str]:
        """Saves every item as one observed batch operation; returns their ids."""
        items = list(items)
        with self._observe(
            "save_batch",
            AuditEventType.BATCH_CREATE,
            context,
            audit_metadata=self._data_preview(*items),
            batch_size=len(items),
        ):
            return [self._store.save(item) for item in items]

    def delete_batch(
        self, item_ids: Iterable[str], *, context: ObservabilityContext | None = None
    ) -> int:
        """Deletes every id as one observed batch operation; returns how many existed."""
        item_ids = list(item_ids)
        with self._observe(
            "delete_batch", AuditEventType.BATCH_DELETE, context, batch_size=len(item_ids)
        ):
            return sum(1 for item_id in item_ids if self._store.delete(item_id))

    # ---- views and observability access -------------------------------------------------------

    def with_context(self, context: ObservabilityContext) -> ObservableStore[T]:
        """A view of this store whose operations use ``context``; shares every backend."""
        return ObservableStore(self._store, context=context, manager=self.observability)

    def with_user(self, user_id: str, tenant_id: str | None = None) -> ObservableStore[T]:
        """A view of this store whose operations are attributed to ``user_id``."""
        base = self._context or self.observability.create_context()
        return self.with_context(replace(base, user_id=user_id, tenant_id=tenant_id))

    def get_metrics(self) -> str:
        """The metrics exposition text ("" when metrics are disabled)."""
        backend = self.observability.metrics_backend
        return str(backend.export()) if backend is not None else ""

    def get_audit_events(self, **filters: Any) -> list[Any]:
        """Audit events matching ``filters`` (the audit backends' ``query`` arguments), newest
        first; pending asynchronous events are flushed first."""
        backend = self.observability.audit_backend
        if backend is None:
            return []
        self.observability.flush()
        return list(backend.query(**filters))

    def flush_observability(self) -> None:
        """Persists pending audit events and exports pending spans."""
        self.observability.flush()


def _query_fields(query: StoreQuery | None) -> dict[str, Any]:
    if query is None:
        return {}
    fields: Mapping[str, Any] = {
        "query.data_asset": query.data_asset,
        "query.status": query.status,
        "query.limit": query.limit,
    }
    return {key: value for key, value in fields.items() if value is not None}
