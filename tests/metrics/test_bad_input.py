"""Bad input is rejected with a typed error that names the offending item; nothing is recorded."""

from __future__ import annotations

import math

import pytest

from truthound.stores.observability.errors import (
    InvalidArgumentError,
    InvalidLabelError,
    InvalidMetricNameError,
    InvalidMetricValueError,
    MetricConflictError,
)
from truthound.stores.observability.metrics import InMemoryMetricsBackend


@pytest.fixture
def backend() -> InMemoryMetricsBackend:
    return InMemoryMetricsBackend(prefix="")


@pytest.mark.parametrize("name", ["", "9lives", "has space", "dash-ed", "ünïcode"])
def test_invalid_metric_names(backend: InMemoryMetricsBackend, name: str) -> None:
    with pytest.raises(InvalidMetricNameError) as caught:
        backend.increment(name)
    assert repr(name)[1:-1] in str(caught.value) or name == ""
    assert isinstance(caught.value, ValueError)


def test_invalid_prefix_is_rejected_at_construction() -> None:
    with pytest.raises(InvalidMetricNameError, match="bad prefix"):
        InMemoryMetricsBackend(prefix="bad prefix")


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        ("counter", "1x"),
        ("counter", "a-b"),
        ("gauge", "__name__"),
        ("histogram", "le"),
        ("summary", "quantile"),
    ],
)
def test_invalid_and_reserved_label_names(
    backend: InMemoryMetricsBackend, kind: str, label: str
) -> None:
    record = {
        "counter": backend.increment,
        "gauge": backend.gauge,
        "histogram": backend.histogram,
        "summary": backend.summary,
    }[kind]
    with pytest.raises(InvalidLabelError, match=label):
        record("metric", 1.0, {label: "v"})
    assert backend.get_metrics() == []


def test_non_string_label_names(backend: InMemoryMetricsBackend) -> None:
    with pytest.raises(InvalidLabelError, match="42"):
        backend.increment("m", 1.0, {42: "v"})  # type: ignore[dict-item]


def test_label_values_that_are_not_strings_are_converted(backend: InMemoryMetricsBackend) -> None:
    backend.increment("m", 1.0, {"code": 404})
    backend.increment("m", 1.0, {"code": "404"})
    assert backend.get("m", {"code": "404"}) == 2.0


def test_type_conflicts_name_the_metric(backend: InMemoryMetricsBackend) -> None:
    backend.increment("requests")
    with pytest.raises(MetricConflictError, match="requests") as caught:
        backend.gauge("requests", 1)
    assert "counter" in str(caught.value)
    with pytest.raises(MetricConflictError, match="requests_total"):
        backend.gauge("requests_total", 1)  # would expose the counter's sample name
    backend.histogram("latency", 1)
    with pytest.raises(MetricConflictError, match="latency_count"):
        backend.gauge("latency_count", 1)


def test_label_schema_conflicts_name_the_label(backend: InMemoryMetricsBackend) -> None:
    backend.increment("ops", labels={"op": "read"})
    with pytest.raises(MetricConflictError, match="kind"):
        backend.increment("ops", labels={"op": "read", "kind": "x"})
    with pytest.raises(MetricConflictError, match="op"):
        backend.increment("ops")
    with pytest.raises(MetricConflictError, match="typo"):
        backend.increment("ops", labels={"typo": "read"})
    assert backend.get("ops") == 1.0


@pytest.mark.parametrize("value", [-1.0, -0.001, math.nan, -math.inf])
def test_counters_only_go_up(backend: InMemoryMetricsBackend, value: float) -> None:
    with pytest.raises(InvalidMetricValueError, match="requests"):
        backend.increment("requests", value)
    with pytest.raises(InvalidMetricValueError, match="requests"):
        backend.counter_series("requests").inc(value)
    assert backend.get("requests") in (None, 0.0)


def test_forbidden_observations(backend: InMemoryMetricsBackend) -> None:
    with pytest.raises(InvalidMetricValueError, match="latency"):
        backend.histogram("latency", math.nan)
    with pytest.raises(InvalidMetricValueError, match="latency"):
        backend.histogram("latency", -1.0)
    with pytest.raises(InvalidMetricValueError, match="size"):
        backend.summary("size", -1.0)
    with pytest.raises(InvalidMetricValueError, match="size"):
        backend.summary_series("size").observe(math.nan)
    with pytest.raises(InvalidMetricValueError, match="must be finite"):
        backend.summary("size", math.inf)  # the quantile sketch has no bin for infinity
    backend.histogram("latency", math.inf)  # a histogram counts it in +Inf
    with pytest.raises(TypeError):
        backend.gauge("g", "12")  # type: ignore[arg-type]
    backend.gauge("g", math.nan)  # gauges take any float
    assert math.isnan(backend.get_gauge("g") or 0.0)


def test_bad_buckets_and_quantiles(backend: InMemoryMetricsBackend) -> None:
    with pytest.raises(InvalidArgumentError, match="h1"):
        backend.register("h1", "histogram", buckets=[1.0, 0.5])
    with pytest.raises(InvalidArgumentError, match="h2"):
        backend.register("h2", "histogram", buckets=[math.nan])
    with pytest.raises(InvalidArgumentError, match="s1"):
        backend.register("s1", "summary", quantiles=[0.5, 1.5])
    with pytest.raises(InvalidArgumentError, match="histogram_buckets"):
        InMemoryMetricsBackend(buckets=[2.0, 1.0])


def test_reserved_default_labels() -> None:
    with pytest.raises(InvalidLabelError, match="le"):
        InMemoryMetricsBackend(default_labels={"le": "x"})
    with pytest.raises(InvalidLabelError, match="__x"):
        InMemoryMetricsBackend(default_labels={"__x": "x"})


def test_cardinality_limit_routes_new_label_sets_to_one_counted_overflow_series() -> None:
    backend = InMemoryMetricsBackend(prefix="", max_series_per_metric=3)
    for user in range(10):
        backend.increment("logins", labels={"user": f"u{user}"})
    assert len([m for m in backend.get_metrics() if m.name == "logins_total"]) == 4
    assert backend.get("logins", {"user": "__overflow__"}) == 7.0
    assert backend.get("logins") == 10.0  # nothing is lost from the total
    assert backend.series_overflows == 7
    assert 'logins_total{user="__overflow__"} 7.0' in backend.export()
    backend.increment("logins", labels={"user": "u0"})  # existing series still work
    assert backend.get("logins", {"user": "u0"}) == 2.0


def test_default_cardinality_limit_is_documented() -> None:
    from truthound.stores.observability.config import MetricsConfig

    assert MetricsConfig().max_series_per_metric == 10_000
    assert InMemoryMetricsBackend().config.max_series_per_metric == 10_000
