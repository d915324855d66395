"""``StoreMetrics``: the standard metrics of a store, recorded through any metrics backend."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .. import _fork
from ..errors import InvalidArgumentError, InvalidArgumentTypeError, InvalidMetricValueError
from ._values import MetricType

__all__ = ["STANDARD_METRICS", "StoreMetrics"]

#: The eight standard metrics: name → (type, label names, help).
STANDARD_METRICS: dict[str, tuple[MetricType, tuple[str, ...], str]] = {
    "store_operations_total": (
        MetricType.COUNTER,
        ("store", "operation", "status"),
        "Total operations",
    ),
    "store_operation_duration_seconds": (
        MetricType.HISTOGRAM,
        ("store", "operation"),
        "Operation latency",
    ),
    "store_bytes_read_total": (MetricType.COUNTER, ("store",), "Total bytes read"),
    "store_bytes_written_total": (MetricType.COUNTER, ("store",), "Total bytes written"),
    "store_connections_active": (MetricType.GAUGE, ("store",), "Active connections"),
    "store_cache_hits_total": (MetricType.COUNTER, ("store",), "Cache hits"),
    "store_cache_misses_total": (MetricType.COUNTER, ("store",), "Cache misses"),
    "store_errors_total": (MetricType.COUNTER, ("store", "error_type"), "Error count"),
}

# Metrics of the existing API's extra methods (not part of the standard eight).
_EXTRA_METRICS: dict[str, tuple[MetricType, tuple[str, ...], str]] = {
    "store_items": (MetricType.GAUGE, ("store",), "Items in the store"),
    "store_storage_bytes": (MetricType.GAUGE, ("store",), "Bytes stored"),
    "store_query_results_total": (MetricType.COUNTER, ("store",), "Items returned by queries"),
    "store_batch_items_total": (
        MetricType.COUNTER,
        ("store", "operation"),
        "Items processed in batches",
    ),
    "store_replications_total": (
        MetricType.COUNTER,
        ("store", "target", "status"),
        "Replications per target",
    ),
    "store_replication_lag_seconds": (
        MetricType.GAUGE,
        ("store", "target"),
        "Replication lag per target",
    ),
}

_HANDLE_CACHE_LIMIT = 1024


class StoreMetrics:
    """Records the standard store metrics (see ``STANDARD_METRICS``) into ``backend``.

    Every metric carries ``store=<store_type>``. The names are the standard ones, and the
    backend's prefix applies to them as to any name (``{prefix}_{name}``): with
    ``prefix=""`` they are exposed exactly as in the table, with the default prefix
    ``truthound_store`` as ``truthound_store_store_operations_total`` and so on. (A uniform
    rule: a special case that merged the repeated ``store`` would make the standard
    ``store_operations_total`` collide with a user's ``operations_total``.)
    ``backend`` may be any metrics backend (ours, a ``MetricsRegistry``, or an object with the
    ``MetricsBackend`` protocol). Durations are clamped at 0 (a clock step must not raise);
    a NaN or infinite duration raises ``InvalidMetricValueError``. On a backend whose config
    has ``enabled=False`` every method records nothing.
    """

    def __init__(
        self, backend: Any, store_type: str = "unknown", store_id: str | None = None
    ) -> None:
        self.backend = backend
        self.store_type = store_type
        self.store_id = store_id
        self._store = {"store": store_type}
        self._connections = 0
        self._lock = threading.Lock()
        _fork.track(self, "_lock")
        self._op_handles: dict[tuple[str, bool], tuple[Callable[..., Any], Callable[..., Any]]] = {}
        self._can_bind = callable(getattr(backend, "counter_series", None)) and callable(
            getattr(backend, "histogram_series", None)
        )
        register = getattr(backend, "register", None)
        self._register: Callable[..., Any] | None = register if callable(register) else None
        self._declared: set[str] = set()
        self._increment: Callable[..., Any] = getattr(backend, "increment", None) or backend.counter
        # On our own backends the whole of `record_operation` runs in the core: one call that
        # counts and observes (the method below is the fallback for any other backend).
        make_recorder = getattr(backend, "_operation_recorder", None)
        recorder = None
        if callable(make_recorder):
            recorder = make_recorder(
                store_type,
                STANDARD_METRICS["store_operations_total"][2],
                STANDARD_METRICS["store_operation_duration_seconds"][2],
            )
        if recorder is not None:
            self.record_operation = recorder.record_operation  # type: ignore[method-assign]

    def _declare(self, name: str, extra_labels: tuple[str, ...] = ()) -> str:
        """Declares a metric with its help text on first use (metrics appear once recorded)."""
        if self._register is not None and name not in self._declared:
            kind, labels, documentation = STANDARD_METRICS.get(name) or _EXTRA_METRICS[name]
            self._register(name, kind, documentation, label_names=(*labels, *extra_labels))
            self._declared.add(name)
        return name

    # ---- the documented methods ---------------------------------------------------------------

    def record_operation(
        self,
        operation: str,
        duration_seconds: float | None = None,
        success: bool = True,
        labels: Mapping[str, str] | None = None,
        *,
        duration_ms: float | None = None,
    ) -> None:
        """Counts one operation (``status`` ``success``/``failure``) and observes its latency.

        Give the duration as ``duration_ms=`` (documented) or in seconds, positionally
        (existing API). Extra ``labels`` are added to both metrics (use the same label names on
        every call: a metric's label names are fixed).
        """
        if duration_ms is not None:
            seconds = duration_ms / 1000.0
        elif duration_seconds is not None:
            seconds = duration_seconds
        else:
            raise InvalidArgumentError(
                f"record_operation({operation!r}): give duration_ms= or duration_seconds"
            )
        if not math.isfinite(seconds):
            raise InvalidMetricValueError(
                f"record_operation({operation!r}): the duration must be a finite number "
                f"(got {seconds!r} seconds)"
            )
        seconds = max(seconds, 0.0)
        if labels is not None and not isinstance(labels, Mapping):
            raise InvalidArgumentTypeError(
                f"record_operation({operation!r}): labels must be a mapping of label names "
                f"to values (a dict), not {type(labels).__name__}"
            )
        if labels is None and self._can_bind:
            handles = self._op_handles.get((operation, success))
            if handles is None:
                handles = self._bind_operation(operation, success)
            handles[0]()
            handles[1](seconds)
            return
        status = "success" if success else "failure"
        extra = tuple(labels or ())
        self._increment(
            self._declare("store_operations_total", extra),
            1.0,
            {**(labels or {}), "store": self.store_type, "operation": operation, "status": status},
        )
        self.backend.histogram(
            self._declare("store_operation_duration_seconds", extra),
            seconds,
            {**(labels or {}), "store": self.store_type, "operation": operation},
        )

    def _bind_operation(
        self, operation: str, success: bool
    ) -> tuple[Callable[..., Any], Callable[..., Any]]:
        status = "success" if success else "failure"
        counter = self.backend.counter_series(
            self._declare("store_operations_total"),
            {"store": self.store_type, "operation": operation, "status": status},
        )
        histogram = self.backend.histogram_series(
            self._declare("store_operation_duration_seconds"),
            {"store": self.store_type, "operation": operation},
        )
        handles = (counter.inc, histogram.observe)
        if len(self._op_handles) < _HANDLE_CACHE_LIMIT:
            self._op_handles[(operation, success)] = handles
        return handles

    def record_size(self, bytes_read: int = 0, bytes_written: int = 0) -> None:
        """Adds to ``store_bytes_read_total`` / ``store_bytes_written_total``."""
        if bytes_read:
            self._increment(self._declare("store_bytes_read_total"), float(bytes_read), self._store)
        if bytes_written:
            self._increment(
                self._declare("store_bytes_written_total"), float(bytes_written), self._store
            )

    def _connections_add(self, delta: float) -> None:
        gauge_add = getattr(self.backend, "gauge_add", None)
        if callable(gauge_add):
            gauge_add(self._declare("store_connections_active"), delta, self._store)
            return
        with self._lock:
            self._connections += int(delta)
            value = self._connections
        self.backend.gauge(self._declare("store_connections_active"), float(value), self._store)

    def record_connection_opened(self) -> None:
        """One more active connection."""
        self._connections_add(1.0)

    def record_connection_closed(self) -> None:
        """One fewer active connection."""
        self._connections_add(-1.0)

    def record_cache_hit(self) -> None:
        """Counts a cache hit."""
        self._increment(self._declare("store_cache_hits_total"), 1.0, self._store)

    def record_cache_miss(self) -> None:
        """Counts a cache miss."""
        self._increment(self._declare("store_cache_misses_total"), 1.0, self._store)

    def record_error(self, error_type: str) -> None:
        """Counts an error of ``error_type`` (an exception class name, for example)."""
        self._increment(
            self._declare("store_errors_total"),
            1.0,
            {"store": self.store_type, "error_type": error_type},
        )

    # ---- the existing API's methods ----------------------------------------------------------

    def _extra(self, name: str) -> str:
        """Declares an extra (non-standard) metric with its help text on first use."""
        return self._declare(name)

    def record_save(self, duration_seconds: float, size_bytes: int = 0) -> None:
        """A ``save`` operation and the bytes it wrote."""
        self.record_operation("save", duration_seconds)
        self.record_size(bytes_written=size_bytes)

    def record_get(self, duration_seconds: float, hit: bool = True) -> None:
        """A ``get`` operation, counted as a cache hit or miss."""
        self.record_operation("get", duration_seconds)
        if hit:
            self.record_cache_hit()
        else:
            self.record_cache_miss()

    def record_delete(self, duration_seconds: float) -> None:
        """A ``delete`` operation."""
        self.record_operation("delete", duration_seconds)

    def record_query(self, duration_seconds: float, result_count: int = 0) -> None:
        """A ``query`` operation and the number of items it returned."""
        self.record_operation("query", duration_seconds)
        if result_count:
            self._increment(
                self._extra("store_query_results_total"), float(result_count), self._store
            )

    def set_item_count(self, count: int) -> None:
        """Sets ``store_items``."""
        self.backend.gauge(self._extra("store_items"), float(count), self._store)

    def set_storage_size(self, size_bytes: int) -> None:
        """Sets ``store_storage_bytes``."""
        self.backend.gauge(self._extra("store_storage_bytes"), float(size_bytes), self._store)

    def record_connection(self, success: bool = True) -> None:
        """A connection attempt: opened on success, else an error ``ConnectionFailed``."""
        if success:
            self.record_connection_opened()
        else:
            self.record_error("ConnectionFailed")

    def set_active_connections(self, count: int) -> None:
        """Sets ``store_connections_active``."""
        with self._lock:
            self._connections = count
        self.backend.gauge(self._declare("store_connections_active"), float(count), self._store)

    def record_batch(self, operation: str, batch_size: int, duration_seconds: float) -> None:
        """A ``batch_<operation>`` operation and the items it processed."""
        self.record_operation(f"batch_{operation}", duration_seconds)
        self._increment(
            self._extra("store_batch_items_total"),
            float(batch_size),
            {"store": self.store_type, "operation": operation},
        )

    def record_replication(
        self, target: str, duration_seconds: float, success: bool = True
    ) -> None:
        """A ``replicate`` operation, also counted per target."""
        self.record_operation("replicate", duration_seconds, success)
        status = "success" if success else "failure"
        self._increment(
            self._extra("store_replications_total"),
            1.0,
            {"store": self.store_type, "target": target, "status": status},
        )

    def set_replication_lag(self, target: str, lag_seconds: float) -> None:
        """Sets ``store_replication_lag_seconds`` for ``target``."""
        self.backend.gauge(
            self._extra("store_replication_lag_seconds"),
            lag_seconds,
            {"store": self.store_type, "target": target},
        )
