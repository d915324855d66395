"""Metrics workloads: each core vs prometheus_client on the same work (issue 3's targets).

Targets for the native core (checked here, never in tests): `increment(name, labels={...})`
<= 0.4 us; pre-bound `inc()` <= 3x an empty Python call; histogram observe with labels
<= 0.45 us; `record_operation` <= 1.5 us; export of 10k counter series <= 3 ms and of 10k
histogram series <= 30 ms; >= 10x the pure core on each.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import prometheus_client as pc

from support import label
from truthound.stores.observability.metrics import InMemoryMetricsBackend, StoreMetrics

SERIES = 10_000


def _backend() -> InMemoryMetricsBackend:
    return InMemoryMetricsBackend(prefix="truthound_store")


def _registry() -> pc.CollectorRegistry:
    return pc.CollectorRegistry()


# ---- recording ----------------------------------------------------------------------------


def test_empty_python_call(benchmark: Any) -> None:
    """The yardstick of the pre-bound target: an empty Python function call."""
    label(benchmark, "empty Python function call (yardstick)", "python")

    def empty() -> None:
        pass

    benchmark(empty)


def test_increment_with_labels(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "counter increment with labels", core.CORE_NAME)
    backend = _backend()
    increment = backend.increment
    backend.increment("operations_total", labels={"op": "read"})
    benchmark(lambda: increment("operations_total", labels={"op": "read"}))
    assert backend.get("operations_total", {"op": "read"}) > 1


def test_increment_with_labels_prometheus_client(benchmark: Any) -> None:
    label(benchmark, "counter increment with labels", "prometheus_client")
    counter = pc.Counter("operations", "ops", ["op"], registry=_registry())
    benchmark(lambda: counter.labels(op="read").inc())


def test_prebound_inc(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "pre-bound counter inc()", core.CORE_NAME)
    series = _backend().counter_series("operations_total", {"op": "read"})
    benchmark(series.inc)


def test_prebound_inc_prometheus_client(benchmark: Any) -> None:
    label(benchmark, "pre-bound counter inc()", "prometheus_client")
    child = pc.Counter("operations", "ops", ["op"], registry=_registry()).labels(op="read")
    benchmark(child.inc)


def test_histogram_with_labels(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "histogram observe with labels", core.CORE_NAME)
    backend = _backend()
    histogram = backend.histogram
    benchmark(lambda: histogram("latency_seconds", 0.05, labels={"op": "read"}))


def test_histogram_with_labels_prometheus_client(benchmark: Any) -> None:
    label(benchmark, "histogram observe with labels", "prometheus_client")
    histogram = pc.Histogram("latency_seconds", "latency", ["op"], registry=_registry())
    benchmark(lambda: histogram.labels(op="read").observe(0.05))


def test_prebound_observe(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "pre-bound histogram observe()", core.CORE_NAME)
    series = _backend().histogram_series("latency_seconds", {"op": "read"})
    benchmark(series.observe, 0.05)


def test_prebound_observe_prometheus_client(benchmark: Any) -> None:
    label(benchmark, "pre-bound histogram observe()", "prometheus_client")
    histogram = pc.Histogram("latency_seconds", "latency", ["op"], registry=_registry())
    benchmark(histogram.labels(op="read").observe, 0.05)


def test_summary_with_labels(benchmark: Any, core: ModuleType) -> None:
    """Our summaries compute windowed quantiles; prometheus_client's only count and sum."""
    label(benchmark, "summary observe with labels (quantiles)", core.CORE_NAME)
    summary = _backend().summary
    benchmark(lambda: summary("payload_bytes", 1024.0, labels={"op": "write"}))


def test_summary_with_labels_prometheus_client(benchmark: Any) -> None:
    label(benchmark, "summary observe with labels (quantiles)", "prometheus_client")
    summary = pc.Summary("payload_bytes", "sizes", ["op"], registry=_registry())
    benchmark(lambda: summary.labels(op="write").observe(1024.0))


def test_record_operation(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "StoreMetrics.record_operation", core.CORE_NAME)
    metrics = StoreMetrics(_backend(), "s3", "bucket")
    benchmark(lambda: metrics.record_operation("read", duration_ms=45.0, success=True))


# ---- export -------------------------------------------------------------------------------


def _counters(backend: InMemoryMetricsBackend) -> None:
    for i in range(SERIES):
        backend.increment("requests_total", float(i), {"path": f"/item/{i}", "code": "200"})


def _histograms(backend: InMemoryMetricsBackend) -> None:
    for i in range(SERIES):
        backend.histogram("latency_seconds", (i % 1000) / 100.0, {"path": f"/item/{i}"})


def test_export_counters(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "export 10k counter series (text)", core.CORE_NAME)
    backend = _backend()
    _counters(backend)
    assert benchmark(backend.export).count("\n") == SERIES + 2


def test_export_counters_prometheus_client(benchmark: Any) -> None:
    label(benchmark, "export 10k counter series (text)", "prometheus_client")
    registry = _registry()
    counter = pc.Counter("requests", "requests", ["path", "code"], registry=registry)
    for i in range(SERIES):
        counter.labels(path=f"/item/{i}", code="200").inc(i)
    benchmark(pc.generate_latest, registry)


def test_export_histograms(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "export 10k histogram series (text)", core.CORE_NAME)
    backend = _backend()
    _histograms(backend)
    benchmark(backend.export)


def test_export_histograms_prometheus_client(benchmark: Any) -> None:
    label(benchmark, "export 10k histogram series (text)", "prometheus_client")
    registry = _registry()
    histogram = pc.Histogram(
        "latency_seconds",
        "latency",
        ["path"],
        registry=registry,
        buckets=[0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10],
    )
    for i in range(SERIES):
        histogram.labels(path=f"/item/{i}").observe((i % 1000) / 100.0)
    benchmark(pc.generate_latest, registry)


def test_export_histograms_openmetrics(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "export 10k histogram series (OpenMetrics)", core.CORE_NAME)
    backend = _backend()
    _histograms(backend)
    benchmark(backend.export, "openmetrics")
