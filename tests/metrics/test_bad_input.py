"""Bad input is rejected with a typed error that names the offending item; nothing is recorded."""

from __future__ import annotations

import math
import os
from typing import Any

import pytest

from truthound.stores.observability.errors import (
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidLabelError,
    InvalidMetricNameError,
    InvalidMetricValueError,
    MetricConflictError,
)
from truthound.stores.observability.metrics import (
    HistogramValue,
    InMemoryMetricsBackend,
    MetricsRegistry,
    PrometheusMetricsBackend,
    StoreMetrics,
)


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


@pytest.mark.parametrize("value", [-1.0, -0.001, math.nan, -math.inf, math.inf])
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


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_values_are_rejected_where_they_would_stick(
    backend: InMemoryMetricsBackend, value: float
) -> None:
    """One infinite increment or observation would leave a counter, a ``_sum`` or a latency
    histogram infinite for good (rate() NaN for ever): rejected, naming the metric (or the
    operation), with nothing recorded. Gauges take any float."""
    with pytest.raises(InvalidMetricValueError, match=r'"latency".*finite'):
        backend.histogram("latency", value)
    with pytest.raises(InvalidMetricValueError, match=r'"latency".*finite'):
        backend.histogram_series("latency").observe(value)
    with pytest.raises(InvalidMetricValueError, match="size"):
        backend.summary("size", value)
    store = StoreMetrics(backend, "s3")
    with pytest.raises(InvalidMetricValueError, match=r'"read".*finite'):
        store.record_operation("read", duration_ms=value)
    with pytest.raises(InvalidMetricValueError, match=r'"read".*finite'):
        store.record_operation("read", value)
    with pytest.raises(InvalidMetricValueError, match=r'"read".*finite'):
        store.record_operation("read", duration_ms=value, labels={"region": "eu"})
    # Through a backend that is not ours (the generic path of StoreMetrics) too.
    registry = MetricsRegistry()
    registry.register_backend("memory", backend)
    with pytest.raises(InvalidMetricValueError, match=r"'read'.*finite"):
        StoreMetrics(registry, "s3").record_operation("read", duration_ms=value)
    latency = backend.get("latency")  # the handle created the series; nothing was observed
    assert isinstance(latency, HistogramValue)
    assert (latency.count, latency.sum) == (0, 0.0)
    assert backend.get("size") is None
    assert backend.get("store_operations_total") is None
    assert backend.get("store_operation_duration_seconds") is None
    backend.gauge("temperature", value)
    backend.gauge_add("level", value)
    assert backend.get("temperature") is not None


def test_negative_observations_need_a_negative_bucket_bound(
    backend: InMemoryMetricsBackend,
) -> None:
    """The error says why (``_sum`` stays a counter) and how to allow negatives."""
    with pytest.raises(InvalidMetricValueError) as caught:
        backend.histogram("temperature_celsius", -5.0)
    message = str(caught.value)
    assert message.startswith('"temperature_celsius": ')
    assert "_sum stays a counter" in message
    assert 'register("temperature_celsius", "histogram", buckets=[-10.0, 0.0, 10.0])' in message
    assert "(got -5.0)" in message
    # Following the advice (declared before the first observation, as in a fixed program):
    fixed = InMemoryMetricsBackend(prefix="")
    fixed.register("temperature_celsius", "histogram", buckets=[-10.0, 0.0, 10.0])
    fixed.histogram("temperature_celsius", -5.0)
    value = fixed.get("temperature_celsius")
    assert isinstance(value, HistogramValue)
    assert (value.count, value.sum, value.buckets[0.0]) == (1, -5.0, 1)


def test_labels_must_be_a_mapping(backend: InMemoryMetricsBackend) -> None:
    """Labels given as pairs (or anything but a mapping) are a typed error naming the metric,
    on the first call of a metric and on later ones, for every recording path."""
    pairs = [("op", "read")]
    calls = [
        lambda: backend.increment("ops", labels=pairs),  # type: ignore[arg-type]
        lambda: backend.gauge("level", 1.0, pairs),  # type: ignore[arg-type]
        lambda: backend.histogram("latency", 1.0, pairs),  # type: ignore[arg-type]
        lambda: backend.summary("size", 1.0, pairs),  # type: ignore[arg-type]
        lambda: backend.counter_series("ops", pairs),  # type: ignore[arg-type]
        lambda: backend.get("ops", pairs),  # type: ignore[arg-type]
    ]
    for attempt in (1, 2):
        for call in calls:
            with pytest.raises(InvalidArgumentTypeError) as caught:
                call()
            message = str(caught.value)
            assert "labels must be a mapping" in message
            assert "not list" in message
            assert isinstance(caught.value, TypeError)
            assert isinstance(caught.value, InvalidArgumentError)
        if attempt == 1:  # now with the metrics known (their cached, faster path)
            backend.increment("ops", labels={"op": "read"})
            backend.gauge("level", 1.0, {"op": "read"})
            backend.histogram("latency", 1.0, {"op": "read"})
            backend.summary("size", 1.0, {"op": "read"})
    with pytest.raises(InvalidArgumentTypeError, match='"ops"'):
        backend.increment("ops", labels="op=read")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentTypeError, match=r'"read".*mapping'):
        StoreMetrics(backend, "s3").record_operation("read", 1.0, labels=pairs)  # type: ignore[arg-type]
    assert backend.get("ops") == 1.0
    # The registry re-raises bad input instead of counting it as a backend failure.
    registry = MetricsRegistry()
    registry.register_backend("memory", backend)
    with pytest.raises(InvalidArgumentTypeError, match='"ops"'):
        registry.increment("ops", labels=pairs)  # type: ignore[arg-type]
    assert registry.backend_failures == 0


def test_an_unknown_metric_type_names_the_metric(backend: InMemoryMetricsBackend) -> None:
    with pytest.raises(InvalidArgumentError, match=r"'latency'.*'timer'.*counter, gauge"):
        backend.register("latency", "timer")
    with pytest.raises(InvalidArgumentError, match="'latency'"):
        backend.register("latency", 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["app", "app_"])
def test_one_trailing_underscore_of_a_prefix_is_dropped(prefix: str) -> None:
    """``prefix="app_"`` means what ``prefix="app"`` means (never ``app__requests_total``),
    on every path that joins a prefix, and on both cores."""
    backend = InMemoryMetricsBackend(prefix=prefix)
    backend.increment("requests")
    backend.counter_series("hits").inc()
    StoreMetrics(backend, "s3").record_operation("read", duration_ms=1.0)
    text = backend.export()
    assert "app_requests_total 1.0\n" in text
    assert "app_hits_total 1.0\n" in text
    assert 'app_store_operations_total{operation="read",status="success",store="s3"} 1.0' in text
    assert "__" not in text
    assert backend.get("requests") == 1.0
    assert backend.get_counter("requests_total") == 1.0


def test_a_prefix_of_only_an_underscore_is_rejected() -> None:
    with pytest.raises(InvalidMetricNameError, match='"_"'):
        InMemoryMetricsBackend(prefix="_")


# ---- text that is not valid Unicode (lone surrogates, e.g. from os.fsdecode) ------------------


@pytest.mark.timeout(60)
def test_lone_surrogates_are_rejected_with_no_state_created(net: Any) -> None:
    backend = PrometheusMetricsBackend(prefix="")
    backend.increment("ok")
    bad = os.fsdecode(b"/data/\xff.csv")  # a lone surrogate, as for an undecodable path
    calls = [
        lambda: backend.increment("x", 1.0, {"path": bad}),
        lambda: backend.gauge("x", 1.0, {"path": bad}),
        lambda: backend.histogram("x", 1.0, {"path": bad}),
        lambda: backend.summary("x", 1.0, {"path": bad}),
        lambda: backend.counter_series("x", {"path": bad}),
    ]
    for call in calls:
        with pytest.raises(InvalidLabelError, match=r'"path": label value is not valid Unicode'):
            call()
    with pytest.raises(InvalidLabelError, match="label name is not valid Unicode"):
        backend.increment("x", 1.0, {"p\udcff": "v"})
    with pytest.raises(InvalidLabelError, match="label name is not valid Unicode"):
        backend.register("y", "counter", "help", label_names=["p\udcff"])
    with pytest.raises(InvalidArgumentError, match=r'"y": help text is not valid Unicode'):
        backend.register("y", "counter", "help \udcff")
    with pytest.raises(InvalidMetricNameError):
        backend.increment("x\udcff")
    # An existing family: the bad label set is rejected, the family keeps its series only.
    backend.increment("z", 1.0, {"path": "good"})
    with pytest.raises(InvalidLabelError, match=r'"path": label value is not valid Unicode'):
        backend.increment("z", 1.0, {"path": bad})
    with pytest.raises(InvalidLabelError, match=r'"path": label value is not valid Unicode'):
        InMemoryMetricsBackend(default_labels={"path": bad})
    names = sorted(m.name for m in backend.get_metrics())
    assert names == ["ok_total", "z_total"]
    text = backend.export()
    types = [line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert types == ["ok_total", "z_total"]  # no empty family "x" or "y" left behind
    port = backend.start_http_server(port=0)
    try:
        assert net.http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    finally:
        backend.stop_http_server()
    closed = f"http://127.0.0.1:{net.free_port()}"
    assert backend.push_to_gateway(closed, "j", timeout=2) is False  # fails on the network only
    assert closed in (backend.last_push_error or "")


def test_lone_surrogate_operation_names_are_rejected() -> None:
    metrics = StoreMetrics(InMemoryMetricsBackend(prefix=""), "files")
    with pytest.raises(InvalidLabelError, match="not valid Unicode"):
        metrics.record_operation("read\udcff", 0.1)


# ---- a metric named like another metric's sample ---------------------------------------------

_SAMPLE_NAME_CASES = [
    ("counter", "foo", "counter", "foo_created"),
    ("counter", "foo", "gauge", "foo_created"),
    ("histogram", "h", "histogram", "h_sum"),
    ("histogram", "h", "histogram", "h_bucket"),
    ("histogram", "h", "counter", "h_count"),
    ("summary", "s", "summary", "s_count"),
    ("summary", "s", "summary", "s_created"),
]


def _record(backend: InMemoryMetricsBackend, kind: str, name: str) -> None:
    {
        "counter": backend.increment,
        "gauge": backend.gauge,
        "histogram": backend.histogram,
        "summary": backend.summary,
    }[kind](name, 1.0)


@pytest.mark.parametrize(("kind_a", "name_a", "kind_b", "name_b"), _SAMPLE_NAME_CASES)
@pytest.mark.parametrize("reverse", [False, True])
def test_a_name_of_another_metrics_sample_conflicts_in_either_order(
    kind_a: str, name_a: str, kind_b: str, name_b: str, reverse: bool
) -> None:
    backend = InMemoryMetricsBackend(prefix="")
    first, second = (
        ((kind_b, name_b), (kind_a, name_a))
        if reverse
        else (
            (kind_a, name_a),
            (kind_b, name_b),
        )
    )
    _record(backend, *first)
    before = backend.export()
    with pytest.raises(MetricConflictError) as caught:
        _record(backend, *second)
    assert f'"{name_a}"' in str(caught.value)
    assert f'"{name_b}"' in str(caught.value)
    with pytest.raises(MetricConflictError):
        backend.register(second[1], second[0])
    assert backend.export() == before  # nothing recorded into the first metric


def test_counter_total_suffix_still_names_one_counter() -> None:
    backend = InMemoryMetricsBackend(prefix="")
    backend.increment("x")
    backend.increment("x_total", 2)
    backend.register("x_total", "counter")
    assert backend.get("x") == 3.0
    assert backend.get("x_total") == 3.0
    backend.increment("c", 1)
    with pytest.raises(MetricConflictError, match=r'"c_created".*"c"'):
        backend.register("c_created", "counter")
    with pytest.raises(MetricConflictError, match=r'"c_created".*"c"'):
        backend.counter_series("c_created")


# ---- push arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"gateway_url": "http://[bad"}, "gateway_url"),
        ({"gateway_url": "ftp://host:9091"}, "gateway_url"),
        ({"gateway_url": "http://host:notaport"}, "gateway_url"),
        ({"grouping_key": [("a", "b")]}, "grouping_key"),
        ({"method": None}, "method"),
        ({"method": "patch"}, "method"),
        ({"job": ""}, "job"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_push_arguments_that_can_never_work_name_the_argument(
    arguments: dict[str, Any], named: str
) -> None:
    backend = PrometheusMetricsBackend()
    backend.increment("x")
    call = {"gateway_url": "http://127.0.0.1:1", "job": "j", **arguments}
    with pytest.raises(InvalidArgumentError, match=f"^{named}="):
        backend.push_to_gateway(**call)
    with pytest.raises(InvalidArgumentError, match=f"^{named}="):
        backend.push_to_gateway(**call, raise_on_error=False)
    if named != "gateway_url":
        with pytest.raises(InvalidArgumentError, match=f"^{named}="):
            backend.start_pushing(0.1, **call)
    assert backend.push_failures == 0


@pytest.mark.timeout(60)
def test_the_periodic_push_counts_a_malformed_gateway_url_and_keeps_going() -> None:
    import threading
    import time

    from truthound.stores.observability.config import MetricsConfig

    backend = PrometheusMetricsBackend(
        MetricsConfig(push_gateway_url="http://[bad", push_interval_seconds=0.05)
    )
    try:
        deadline = time.monotonic() + 30
        while backend.push_failures < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert backend.push_failures >= 3  # the thread survived its first failure
        assert "gateway_url" in (backend.last_push_error or "")
        assert any(t.name == "truthound-metrics-push" for t in threading.enumerate())
    finally:
        backend.close()  # the final push fails too: counted, not raised


# ---- the overflow marker is reserved -----------------------------------------------------------


def test_the_overflow_marker_is_a_reserved_label_value() -> None:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    backend = InMemoryMetricsBackend(prefix="", max_series_per_metric=1)
    backend.increment("c", 1, {"u": "a"})
    backend.increment("c", 1, {"u": "b"})  # beyond the limit: the overflow series
    assert backend.series_overflows == 1
    calls = [
        lambda: backend.increment("c", 1, {"u": "__overflow__"}),
        lambda: backend.increment("fresh", 1, {"u": "__overflow__"}),
        lambda: backend.gauge("g", 1, {"u": "__overflow__"}),
        lambda: backend.histogram("h", 1, {"u": "__overflow__"}),
        lambda: backend.summary("s", 1, {"u": "__overflow__"}),
        lambda: backend.counter_series("c", {"u": "__overflow__"}),
        lambda: StoreMetrics(backend, "files").record_operation("__overflow__", 0.1),
        lambda: StoreMetrics(backend, "files").record_operation(
            "read", 0.1, labels={"tenant": "__overflow__"}
        ),
    ]
    for call in calls:
        with pytest.raises(InvalidLabelError, match=r"__overflow__.*reserved"):
            call()
    assert backend.series_overflows == 1
    assert backend.get("c", {"u": "__overflow__"}) == 1.0  # reading the overflow series works
    text = backend.export("openmetrics")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = [(s.name, s.labels) for s in families["c"].samples]
    assert len(samples) == len({(n, tuple(sorted(labels.items()))) for n, labels in samples})


# ---- finite values whose total would overflow; numbers too large for a float ------------------


def test_a_value_that_would_make_a_total_infinite_is_rejected_and_changes_nothing() -> None:
    backend = InMemoryMetricsBackend(prefix="")
    backend.increment("big", 1e308)
    with pytest.raises(InvalidMetricValueError, match=r'^"big": .*counter infinite'):
        backend.increment("big", 1e308)
    with pytest.raises(InvalidMetricValueError, match=r'^"big": .*counter infinite'):
        backend.counter_series("big").inc(1e308)
    assert backend.get("big") == 1e308
    backend.histogram("hb", 1e308)
    with pytest.raises(InvalidMetricValueError, match=r'^"hb": .*_sum infinite'):
        backend.histogram("hb", 1e308)
    with pytest.raises(InvalidMetricValueError, match=r'^"hb": .*_sum infinite'):
        backend.histogram_series("hb").observe(1e308)
    hb = backend.get("hb")
    assert isinstance(hb, HistogramValue)
    assert (hb.count, hb.sum) == (1, 1e308)
    backend.summary("sb", 1e308)
    with pytest.raises(InvalidMetricValueError, match=r'^"sb": .*_sum infinite'):
        backend.summary("sb", 1e308)
    sb = backend.get("sb")
    assert (sb.count, sb.sum) == (1, 1e308)  # type: ignore[union-attr]
    assert "+Inf" not in backend.export().replace('le="+Inf"', "")
    backend.gauge_add("g", 1e308)
    backend.gauge_add("g", 1e308)  # gauges take any float
    assert backend.get("g") == math.inf


@pytest.mark.parametrize("kind", ["counter", "gauge", "gauge_add", "histogram", "summary"])
def test_numbers_too_large_for_a_float_are_invalid_values(kind: str) -> None:
    backend = InMemoryMetricsBackend(prefix="")
    record = {
        "counter": backend.increment,
        "gauge": backend.gauge,
        "gauge_add": backend.gauge_add,
        "histogram": backend.histogram,
        "summary": backend.summary,
    }[kind]
    with pytest.raises(InvalidMetricValueError) as caught:
        record("z", 12 * 10**400)
    assert str(caught.value) == (
        '"12000000000000000000...00000000 (402 characters)": '
        "the value is too large for a float (metric values are 64-bit floats)"
    )
    assert backend.get_metrics() == []
    handle = {
        "counter": backend.counter_series,
        "gauge": backend.gauge_series,
        "gauge_add": backend.gauge_series,
        "histogram": backend.histogram_series,
        "summary": backend.summary_series,
    }[kind]("z")
    method = getattr(
        handle,
        "inc" if kind in ("counter", "gauge_add") else "set" if kind == "gauge" else "observe",
    )
    with pytest.raises(InvalidMetricValueError, match="too large"):
        method(10**400)
