"""The documented metrics API: every example of the specification, as written, and the existing
truthound API (compatibility notes), on both cores."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest

from truthound.stores.observability.config import MetricsConfig, MetricsExportFormat
from truthound.stores.observability.errors import MetricConflictError
from truthound.stores.observability.metrics import (
    HistogramValue,
    InMemoryMetricsBackend,
    MetricsRegistry,
    MetricType,
    MetricValue,
    PrometheusMetricsBackend,
    StoreMetrics,
    SummaryValue,
)
from truthound.stores.observability.protocols import MetricsBackend


@pytest.fixture(autouse=True)
def _fresh_registry() -> None:
    MetricsRegistry.reset_instance()


def test_metric_types() -> None:
    assert [MetricType.COUNTER, MetricType.GAUGE, MetricType.HISTOGRAM, MetricType.SUMMARY] == [
        "counter",
        "gauge",
        "histogram",
        "summary",
    ]


def test_metric_values_as_documented() -> None:
    metric = MetricValue(
        name="store_operations_total",
        value=42.0,
        labels={"store": "s3", "operation": "read"},
        timestamp=datetime.now(),
    )
    assert metric.label_key() == 'operation="read",store="s3"'
    assert MetricValue("x", 1.0).label_key() == ""
    histogram = HistogramValue(
        name="store_operation_duration_seconds",
        count=100,
        sum=45.5,
        buckets={0.01: 10, 0.05: 50, 0.1: 80, 0.5: 95, 1.0: 100},
        labels={"store": "s3"},
    )
    assert histogram.buckets[1.0] == histogram.count
    summary = SummaryValue(
        name="store_operation_latency",
        count=100,
        sum=45.5,
        quantiles={0.5: 0.4, 0.9: 0.8, 0.99: 1.2},
        labels={"store": "s3"},
    )
    assert summary.quantiles[0.99] == 1.2


def test_in_memory_backend_example() -> None:
    backend = InMemoryMetricsBackend()

    backend.increment("operations_total", labels={"op": "read"})
    backend.gauge("connections_active", 5, labels={"store": "s3"})
    backend.histogram("latency_seconds", 0.05, labels={"op": "read"})
    backend.summary("request_size_bytes", 1024, labels={"op": "write"})

    metrics = backend.get_metrics()
    by_name = {m.name: m for m in metrics}
    assert by_name["truthound_store_operations_total"].value == 1.0
    assert by_name["truthound_store_connections_active"].value == 5.0
    latency = by_name["truthound_store_latency_seconds"]
    assert isinstance(latency, HistogramValue)
    assert (latency.count, latency.sum, latency.buckets[0.05], latency.buckets[math.inf]) == (
        1,
        0.05,
        1,
        1,
    )
    size = by_name["truthound_store_request_size_bytes"]
    assert isinstance(size, SummaryValue)
    assert size.quantiles == {0.5: 1024.0, 0.9: 1024.0, 0.95: 1024.0, 0.99: 1024.0}

    value = backend.get("operations_total", labels={"op": "read"})
    assert value == 1.0

    backend.reset()
    assert backend.get_metrics() == []
    assert backend.get("operations_total", labels={"op": "read"}) is None


def test_prometheus_backend_example_records_and_exports() -> None:
    backend = PrometheusMetricsBackend(
        prefix="truthound_store",
        default_labels={"service": "validation"},
    )
    backend.increment("operations_total", labels={"op": "read"})
    backend.histogram("latency_seconds", 0.05, labels={"op": "read"})

    prometheus_text = backend.export()
    assert (
        'truthound_store_operations_total{op="read",service="validation"} 1.0\n' in prometheus_text
    )
    assert (
        'truthound_store_latency_seconds_bucket{op="read",service="validation",le="0.05"} 1.0\n'
        in prometheus_text
    )
    assert prometheus_text.count("# TYPE truthound_store_operations_total counter\n") == 1


def test_prometheus_backend_serves_and_pushes_as_documented(pushgateway: str, net: Any) -> None:
    """The spec's calls, with a free port instead of 9090 and the test's own gateway."""
    free_port, http_get = net.free_port, net.http_get
    backend = PrometheusMetricsBackend(prefix="truthound_store")
    backend.increment("operations_total", labels={"op": "read"})
    port = backend.start_http_server(port=free_port())
    try:
        status, _, body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert b'truthound_store_operations_total{op="read"} 1.0' in body
    finally:
        backend.stop_http_server()
    assert backend.push_to_gateway(gateway_url=pushgateway, job="truthound") is True
    assert backend.push_failures == 0


def test_registry_example_fans_out_and_reads_the_primary() -> None:
    prometheus_backend = PrometheusMetricsBackend()
    memory_backend = InMemoryMetricsBackend(prefix="")

    registry = MetricsRegistry.get_instance()
    assert registry is MetricsRegistry.get_instance() is MetricsRegistry()

    registry.register_backend("prometheus", prometheus_backend)
    registry.register_backend("memory", memory_backend)

    registry.increment("operations_total", labels={"op": "read"})
    registry.increment("operations_total", labels={"op": "write"})

    value = registry.get("operations_total")
    assert value == 2.0  # all series of the primary (first registered) backend, summed
    assert memory_backend.get("operations_total", labels={"op": "read"}) == 1.0

    exported = registry.export_all()
    assert set(exported) == {"prometheus", "memory"}
    assert 'truthound_store_operations_total{op="read"} 1.0' in exported["prometheus"]
    assert 'operations_total{op="write"} 1.0' in exported["memory"]


def test_store_metrics_example_emits_exactly_the_standard_metrics() -> None:
    prometheus_backend = PrometheusMetricsBackend(prefix="")
    metrics = StoreMetrics(
        backend=prometheus_backend,
        store_type="s3",
        store_id="my-bucket",
    )
    metrics.record_operation("read", duration_ms=45.0, success=True)
    metrics.record_operation("write", duration_ms=120.0, success=False)
    metrics.record_size(bytes_read=1024)
    metrics.record_size(bytes_written=2048)
    metrics.record_connection_opened()
    metrics.record_connection_closed()
    metrics.record_cache_hit()
    metrics.record_cache_miss()
    metrics.record_error("ConnectionTimeout")

    families = {
        (kind, name, tuple(sorted({label for s in series for label, _ in s[0]})))
        for kind, name, _help, series in prometheus_backend.collect()
    }
    assert families == {
        ("counter", "store_operations", ("operation", "status", "store")),
        ("histogram", "store_operation_duration_seconds", ("operation", "store")),
        ("counter", "store_bytes_read", ("store",)),
        ("counter", "store_bytes_written", ("store",)),
        ("gauge", "store_connections_active", ("store",)),
        ("counter", "store_cache_hits", ("store",)),
        ("counter", "store_cache_misses", ("store",)),
        ("counter", "store_errors", ("error_type", "store")),
    }
    get = prometheus_backend.get
    assert get("store_operations_total", {"operation": "write", "status": "failure"}) == 1.0
    duration = get("store_operation_duration_seconds", {"operation": "write"})
    assert isinstance(duration, HistogramValue)
    assert (duration.count, duration.sum) == (1, 0.12)
    assert get("store_bytes_read_total") == 1024.0
    assert get("store_bytes_written_total") == 2048.0
    assert get("store_connections_active") == 0.0
    assert get("store_cache_hits_total") == get("store_cache_misses_total") == 1.0
    assert get("store_errors_total", {"error_type": "ConnectionTimeout", "store": "s3"}) == 1.0
    text = prometheus_backend.export()
    assert "# HELP store_operations_total Total operations\n" in text
    assert "# HELP store_operation_duration_seconds Operation latency\n" in text


def test_backend_prefix_applies_to_standard_metric_names_uniformly() -> None:
    backend = PrometheusMetricsBackend()  # default prefix "truthound_store"
    StoreMetrics(backend, "s3", "b").record_operation("read", 0.01)
    backend.increment("operations_total")  # a user's own metric does not collide
    text = backend.export()
    assert (
        'truthound_store_store_operations_total{operation="read",status="success",store="s3"}'
        in text
    )
    assert "truthound_store_operations_total 1.0\n" in text


def test_counter_names_with_and_without_total_are_one_counter() -> None:
    backend = InMemoryMetricsBackend(prefix="")
    backend.increment("requests")
    backend.increment("requests_total", 2)
    assert backend.get("requests") == backend.get("requests_total") == 3.0
    text = backend.export()
    assert (
        text == "# HELP requests_total Counter requests\n"
        "# TYPE requests_total counter\n"
        "requests_total 3.0\n"
    )
    openmetrics = backend.export("openmetrics")
    assert openmetrics.startswith("# HELP requests Counter requests\n# TYPE requests counter\n")
    assert "requests_total 3.0\nrequests_created " in openmetrics


def test_existing_api_config_first_constructors_and_method_names() -> None:
    config = MetricsConfig(prefix="app", labels={"env": "test"}, histogram_buckets=[0.1, 1.0])
    backend = InMemoryMetricsBackend(config)
    assert isinstance(backend, MetricsBackend)
    backend.counter("hits", labels={"page": "a"})
    backend.counter("hits", 2.0, {"page": "a"})
    assert backend.get_counter("hits", {"page": "a"}) == 3.0
    assert backend.get_counter("absent") == 0.0
    assert backend.get_gauge("absent") is None
    backend.gauge("temperature", -3.5)
    assert backend.get_gauge("temperature") == -3.5
    with backend.timer("work_seconds", {"step": "x"}):
        pass
    timed = backend.get("work_seconds", {"step": "x"})
    assert isinstance(timed, HistogramValue)
    assert timed.count == 1
    assert list(timed.buckets) == [0.1, 1.0, math.inf]
    assert 'app_hits_total{env="test",page="a"} 3.0' in backend.export()
    backend.summary("size", 5.0)
    assert 'app_size{env="test",quantile="0.95"} 5.0' in backend.export()

    prometheus = PrometheusMetricsBackend(MetricsConfig(), auto_start_server=False)
    assert prometheus.http_server_port is None


def test_export_formats_follow_the_config() -> None:
    for fmt, marker in [
        (MetricsExportFormat.PROMETHEUS, "# TYPE x_total counter"),
        (MetricsExportFormat.OPENMETRICS, "# EOF"),
        (MetricsExportFormat.JSON, '"type":"counter"'),
        (MetricsExportFormat.STATSD, "x_total:1.0|g"),
    ]:
        backend = InMemoryMetricsBackend(MetricsConfig(prefix="", export_format=fmt))
        backend.increment("x")
        assert marker in backend.export(), fmt


def test_statsd_label_values_cannot_inject_lines_or_tags() -> None:
    backend = InMemoryMetricsBackend(
        MetricsConfig(prefix="", export_format=MetricsExportFormat.STATSD)
    )
    backend.increment("c", labels={"a": 'x"\n|:#,y', "b": "ok"})
    assert backend.export() == 'c_total:1.0|g|#a:x"__:__y,b:ok\n'


def test_registry_singleton_configure_and_backend_property() -> None:
    registry = MetricsRegistry()
    assert registry.backend is None
    backend = registry.get_backend()
    assert isinstance(backend, PrometheusMetricsBackend)
    memory = InMemoryMetricsBackend()
    registry.configure(backend=memory)
    assert registry.backend is memory
    registry.configure(MetricsConfig(export_format="json"))
    assert isinstance(registry.backend, InMemoryMetricsBackend)
    MetricsRegistry.reset_instance()
    assert MetricsRegistry().backend is None


def test_registry_counts_a_failing_backend_and_keeps_recording() -> None:
    class Broken:
        def counter(self, name: str, value: float = 1.0, labels: object = None) -> None:
            raise RuntimeError("disk full")

    registry = MetricsRegistry()
    good = InMemoryMetricsBackend(prefix="")
    registry.register_backend("good", good)
    registry.register_backend("broken", Broken())
    registry.increment("x")
    registry.increment("x")
    assert good.get("x") == 2.0
    assert registry.backend_failures == 2


def test_store_metrics_existing_methods() -> None:
    backend = InMemoryMetricsBackend(prefix="")
    metrics = StoreMetrics(backend, "fs", "root")
    metrics.record_operation("read", 0.5)  # seconds, positional (existing API)
    metrics.record_save(0.1, size_bytes=10)
    metrics.record_get(0.1, hit=False)
    metrics.record_delete(0.1)
    metrics.record_query(0.1, result_count=7)
    metrics.set_item_count(3)
    metrics.set_storage_size(4096)
    metrics.record_connection(success=False)
    metrics.set_active_connections(4)
    metrics.record_batch("create", 25, 0.2)
    metrics.record_replication("eu", 0.3, success=True)
    metrics.set_replication_lag("eu", 1.5)
    metrics.record_operation("read", duration_ms=-5.0)  # a clock step: clamped, not raised
    get = backend.get
    assert get("store_operations_total", {"operation": "read"}) == 2.0
    assert get("store_bytes_written_total") == 10.0
    assert get("store_cache_misses_total") == 1.0
    assert get("store_query_results_total") == 7.0
    assert get("store_items") == 3.0
    assert get("store_storage_bytes") == 4096.0
    assert get("store_errors_total", {"error_type": "ConnectionFailed"}) == 1.0
    assert get("store_connections_active") == 4.0
    assert get("store_batch_items_total", {"operation": "create"}) == 25.0
    assert get("store_replications_total", {"target": "eu"}) == 1.0
    assert get("store_replication_lag_seconds", {"target": "eu"}) == 1.5


def test_store_metrics_works_through_the_registry_and_extra_labels() -> None:
    registry = MetricsRegistry()
    backend = InMemoryMetricsBackend(prefix="")
    registry.register_backend("memory", backend)
    metrics = StoreMetrics(registry, "s3", "bucket")
    metrics.record_operation("read", duration_ms=10.0)
    metrics.record_connection_opened()
    assert backend.get("store_operations_total") == 1.0
    assert backend.get("store_connections_active") == 1.0
    other = StoreMetrics(InMemoryMetricsBackend(prefix=""), "s3")
    other.record_operation("read", 0.1, labels={"region": "eu"})
    assert other.backend.get("store_operations_total", {"region": "eu"}) == 1.0


def test_register_returns_the_existing_metric_and_handles_work() -> None:
    backend = InMemoryMetricsBackend(prefix="")
    latency = backend.register(
        "latency_seconds",
        MetricType.HISTOGRAM,
        "Read latency",
        label_names=("op",),
        buckets=[0.1, 1],
    )
    assert (
        backend.register(
            "latency_seconds", "histogram", "Read latency", label_names=["op"], buckets=[0.1, 1.0]
        )
        is latency
    )
    with pytest.raises(MetricConflictError, match="latency_seconds"):
        backend.register("latency_seconds", "histogram", label_names=["op"], buckets=[0.2])
    series = latency.labels(op="read")
    series.observe(0.05)
    series.observe(5)
    value = backend.get("latency_seconds", {"op": "read"})
    assert isinstance(value, HistogramValue)
    assert value.buckets == {0.1: 1, 1.0: 1, math.inf: 2}
    assert "# HELP latency_seconds Read latency\n" in backend.export()


def test_handles_keep_working_after_reset() -> None:
    backend = InMemoryMetricsBackend(prefix="")
    ops = backend.counter_series("ops_total", {"op": "read"})
    gauge = backend.gauge_series("active")
    ops.inc()
    gauge.set(3)
    gauge.dec()
    assert (ops.value, gauge.value) == (1.0, 2.0)
    backend.reset()
    assert backend.get("ops_total") is None
    ops.inc(5)
    assert backend.get("ops_total", {"op": "read"}) == 5.0
    assert ops.labels == [("op", "read")]


@pytest.mark.parametrize("backend_class", [InMemoryMetricsBackend, PrometheusMetricsBackend])
def test_disabled_config_records_nothing_on_any_path(backend_class: Any) -> None:
    """``MetricsConfig(enabled=False)``: the direct calls, the pre-bound handles, declared
    metrics, ``StoreMetrics`` (whose fast path binds handles or the core's recorder) and the
    registry all record nothing; every export is empty."""
    backend = backend_class(MetricsConfig(enabled=False))
    backend.increment("x")
    backend.counter("x", 2.0, {"a": "b"})
    backend.gauge("g", 1.0)
    backend.gauge_add("g", 1.0)
    backend.histogram("h", 1.0)
    backend.summary("s", 1.0)
    with backend.timer("t"):
        pass
    counter = backend.counter_series("cs", {"op": "read"})
    counter.inc()
    gauge = backend.gauge_series("gs")
    gauge.set(3.0)
    gauge.inc()
    gauge.dec(2.0)
    backend.histogram_series("hs").observe(1.0)
    backend.summary_series("ss").observe(1.0)
    assert (counter.value, gauge.value, counter.labels) == (0.0, 0.0, [("op", "read")])
    backend.register("declared", "counter", "help").labels().inc()
    backend.register("by_op", "histogram", label_names=["op"]).labels(op="read").observe(1.0)
    store = StoreMetrics(backend, "s3", "bucket")
    store.record_operation("read", duration_ms=3.0)
    store.record_operation("read", duration_ms=3.0)  # cached handles
    store.record_operation("write", 0.5, False, labels={"region": "eu"})
    store.record_size(bytes_read=10, bytes_written=20)
    store.record_connection_opened()
    store.record_connection_closed()
    store.record_cache_hit()
    store.record_cache_miss()
    store.record_error("TimeoutError")
    store.record_save(0.1, 5)
    store.record_get(0.1, hit=False)
    store.record_query(0.1, 3)
    store.set_item_count(4)
    store.set_active_connections(2)
    store.record_batch("put", 3, 0.2)
    store.record_replication("eu", 0.3)
    store.set_replication_lag("eu", 1.5)
    registry = MetricsRegistry()
    registry.register_backend("disabled", backend)
    registry.increment("r")
    registry.histogram("rh", 1.0)
    StoreMetrics(registry, "gcs").record_operation("read", duration_ms=1.0)
    assert registry.backend_failures == 0
    assert backend.get_metrics() == []
    assert backend.collect() == []
    assert backend.get("store_operations_total") is None
    assert backend.export("prometheus") == ""
    assert backend.export("openmetrics") == "# EOF\n"


def test_store_metrics_after_a_backend_reset() -> None:
    backend = InMemoryMetricsBackend(prefix="")
    metrics = StoreMetrics(backend, "s3", "bucket")
    metrics.record_operation("read", duration_ms=1.0)
    backend.reset()
    metrics.record_operation("read", duration_ms=2.0, success=False)
    assert backend.get("store_operations_total") == 1.0
    assert backend.get("store_operations_total", {"status": "failure"}) == 1.0
    assert "# HELP store_operations_total Total operations\n" in backend.export()


def test_record_operation_needs_a_duration() -> None:
    from truthound.stores.observability.errors import InvalidArgumentError

    metrics = StoreMetrics(InMemoryMetricsBackend(), "s3")
    with pytest.raises(InvalidArgumentError, match="read"):
        metrics.record_operation("read")
