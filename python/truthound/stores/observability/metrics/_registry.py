"""``MetricsRegistry``: the process-wide registry that fans records out to every backend."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .. import _fork
from ..config import MetricsConfig, MetricsExportFormat
from ..errors import InvalidArgumentError
from ._backend import InMemoryMetricsBackend, PrometheusMetricsBackend
from ._values import HistogramValue, SummaryValue

__all__ = ["MetricsRegistry"]


def _reset_class_lock(_cls: object) -> None:
    MetricsRegistry._instance_lock = threading.Lock()


_log = logging.getLogger("truthound.stores.observability.metrics")

Labels = Mapping[str, Any] | None


class MetricsRegistry:
    """The process-wide metrics registry (``MetricsRegistry() is MetricsRegistry()``).

    Records go to every registered backend; reads come from the primary one (the first
    registered, or the one given to ``configure``). A backend that raises something other than
    a bad-input error (``InvalidArgumentError``, re-raised) is skipped for that record and
    counted in ``backend_failures``: one broken backend never breaks the caller.
    """

    _instance: MetricsRegistry | None = None
    _instance_lock = threading.Lock()

    _backends: dict[str, Any]
    _lock: threading.Lock
    _failures: int

    def __new__(cls) -> MetricsRegistry:
        with cls._instance_lock:
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._backends = {}
                instance._lock = threading.Lock()
                _fork.track(instance, "_lock")
                instance._failures = 0
                cls._instance = instance
            return cls._instance

    @classmethod
    def get_instance(cls) -> MetricsRegistry:
        """The singleton."""
        return cls()

    @classmethod
    def reset_instance(cls) -> None:
        """Forgets the singleton (its backends keep running until closed by their owner)."""
        with cls._instance_lock:
            cls._instance = None

    # ---- backends -----------------------------------------------------------------------------

    def register_backend(self, name: str, backend: Any) -> None:
        """Adds (or replaces, keeping its position) a backend under ``name``."""
        with self._lock:
            self._backends = {**self._backends, name: backend}

    def unregister_backend(self, name: str) -> Any:
        """Removes and returns the backend registered under ``name`` (``None`` if absent)."""
        with self._lock:
            backends = dict(self._backends)
            removed = backends.pop(name, None)
            self._backends = backends
            return removed

    @property
    def backends(self) -> dict[str, Any]:
        """The registered backends by name, primary first."""
        return dict(self._backends)

    @property
    def backend(self) -> Any:
        """The primary backend, or ``None``."""
        return next(iter(self._backends.values()), None)

    def configure(self, config: MetricsConfig | None = None, backend: Any = None) -> Any:
        """Makes ``backend`` (or a new one built from ``config``) the primary, named
        ``"default"``: a ``PrometheusMetricsBackend`` for the Prometheus/OpenMetrics export
        formats, an ``InMemoryMetricsBackend`` otherwise."""
        if backend is None:
            config = config or MetricsConfig()
            prometheus = config.export_format in (
                MetricsExportFormat.PROMETHEUS,
                MetricsExportFormat.OPENMETRICS,
            )
            backend = (PrometheusMetricsBackend if prometheus else InMemoryMetricsBackend)(config)
        with self._lock:
            others = {k: v for k, v in self._backends.items() if k != "default"}
            self._backends = {"default": backend, **others}
        return backend

    def get_backend(self) -> Any:
        """The primary backend, configured with defaults when there is none yet."""
        return self.backend if self._backends else self.configure()

    @property
    def backend_failures(self) -> int:
        """Records that a backend failed to take (each logged; the others still got them)."""
        return self._failures

    # ---- fan-out ------------------------------------------------------------------------------

    def _fan_out(self, method: str, *args: Any) -> None:
        for name, backend in self._backends.items():
            target: Callable[..., Any] | None = getattr(backend, method, None)
            if target is None and method == "increment":
                target = backend.counter
            try:
                if target is None:
                    raise AttributeError(f"backend has no {method}()")
                target(*args)
            except InvalidArgumentError:
                raise
            except Exception:
                with self._lock:
                    self._failures += 1
                _log.exception("metrics backend %r failed in %s()", name, method)

    def increment(self, name: str, value: float = 1.0, labels: Labels = None) -> None:
        """Adds to a counter in every backend."""
        self._fan_out("increment", name, value, labels)

    def counter(self, name: str, value: float = 1.0, labels: Labels = None) -> None:
        """The existing API's name for ``increment``."""
        self._fan_out("increment", name, value, labels)

    def gauge(self, name: str, value: float, labels: Labels = None) -> None:
        """Sets a gauge in every backend."""
        self._fan_out("gauge", name, value, labels)

    def gauge_add(self, name: str, value: float, labels: Labels = None) -> None:
        """Adds to a gauge in every backend."""
        self._fan_out("gauge_add", name, value, labels)

    def histogram(self, name: str, value: float, labels: Labels = None) -> None:
        """Observes into a histogram in every backend."""
        self._fan_out("histogram", name, value, labels)

    def summary(self, name: str, value: float, labels: Labels = None) -> None:
        """Observes into a summary in every backend."""
        self._fan_out("summary", name, value, labels)

    @contextmanager
    def timer(self, name: str, labels: Labels = None) -> Iterator[None]:
        """Observes the block's duration (seconds) into histogram ``name`` of every backend."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.histogram(name, time.perf_counter() - start, labels)

    # ---- reading ------------------------------------------------------------------------------

    def get(self, name: str, labels: Labels = None) -> float | HistogramValue | SummaryValue | None:
        """The value from the primary backend (see ``InMemoryMetricsBackend.get``)."""
        primary = self.backend
        return None if primary is None else primary.get(name, labels)

    def export_all(self) -> dict[str, str]:
        """Each backend's ``export()`` by backend name."""
        return {name: backend.export() for name, backend in self._backends.items()}

    def reset(self) -> None:
        """Resets every backend's metrics."""
        for backend in self._backends.values():
            backend.reset()

    def export(self) -> str:
        """The primary backend's ``export()`` (empty without backends)."""
        primary = self.backend
        return "" if primary is None else str(primary.export())


_fork.track(MetricsRegistry, forget=_reset_class_lock)
