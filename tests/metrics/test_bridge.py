"""prometheus_client interop: our metrics in a prometheus_client registry, WSGI and ASGI app."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, make_asgi_app, make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families

from truthound.stores.observability.metrics import (
    InMemoryMetricsBackend,
    PrometheusClientCollector,
)


def populated() -> InMemoryMetricsBackend:
    backend = InMemoryMetricsBackend(prefix="app", buckets=[0.5, 1.0])
    backend.increment("requests_total", 2, {"path": "/a"})
    backend.gauge("active", 3)
    backend.histogram("latency_seconds", 0.7)
    backend.summary("size_bytes", 10)
    return backend


def registry_with(backend: InMemoryMetricsBackend) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(PrometheusClientCollector(backend))
    return registry


def test_generate_latest_includes_every_metric() -> None:
    backend = populated()
    text = generate_latest(registry_with(backend)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["app_requests"].samples[0].value == 2.0
    assert families["app_requests"].samples[0].labels == {"path": "/a"}
    assert families["app_active"].samples[0].value == 3.0
    buckets = {
        s.labels["le"]: s.value
        for s in families["app_latency_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert buckets == {"0.5": 0.0, "1.0": 1.0, "+Inf": 1.0}
    assert families["app_size_bytes"].type == "summary"
    backend.increment("requests_total", 1, {"path": "/a"})  # read at every scrape
    assert b'app_requests_total{path="/a"} 3.0' in generate_latest(registry_with(backend))


def test_wsgi_app_serves_our_metrics() -> None:
    app = make_wsgi_app(registry_with(populated()))
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        captured["status"] = status

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": ""}
    body = b"".join(app(environ, start_response))
    assert captured["status"].startswith("200")
    assert b"app_active 3.0" in body


def test_asgi_app_serves_our_metrics() -> None:
    app = make_asgi_app(registry_with(populated()))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/metrics",
        "query_string": b"",
        "headers": [],
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200
    assert b"app_requests_total" in b"".join(m.get("body", b"") for m in sent[1:])


def test_describe_lets_prometheus_client_detect_a_collision_at_register_time() -> None:
    import pytest
    from prometheus_client import Counter

    backend = populated()
    collector = PrometheusClientCollector(backend)
    described = {(m.name, m.type) for m in collector.describe()}
    assert ("app_requests", "counter") in described
    assert ("app_latency_seconds", "histogram") in described
    registry = CollectorRegistry()
    Counter("app_requests", "theirs", registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(collector)
    assert b"app_active" not in generate_latest(registry)  # the failed registration left nothing
    registry = registry_with(backend)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("app_requests", "theirs", registry=registry)


def test_name_filters_reach_our_metrics_including_later_ones() -> None:
    backend = populated()
    registry = registry_with(backend)
    backend.increment("late_total")  # created after registration
    text = generate_latest(registry.restricted_registry(["app_requests_total"])).decode()
    assert 'app_requests_total{path="/a"} 2.0' in text
    assert "app_active" not in text
    text = generate_latest(registry.restricted_registry(["app_late_total"])).decode()
    assert "app_late_total 1.0" in text
    full = generate_latest(registry).decode()
    assert full.count("# TYPE app_requests_total counter") == 1  # collected once
    assert "app_late_total 1.0" in full
    app = make_wsgi_app(registry)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "QUERY_STRING": "name[]=app_late_total"}
    body = b"".join(app(environ, start_response)).decode()
    assert seen["status"].startswith("200")
    assert "app_late_total 1.0" in body


def test_histograms_with_a_negative_bound_have_no_sum_in_the_bridge() -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as parse_openmetrics,
    )

    backend = InMemoryMetricsBackend(prefix="app")
    backend.register("delta", "histogram", buckets=[-1.0, 0.0, 1.0])
    backend.histogram("delta", -0.5)
    text = openmetrics_latest(registry_with(backend)).decode()
    assert "app_delta_sum" not in text
    assert "app_delta_count" not in text
    assert "app_delta_sum" not in backend.export("openmetrics")
    families = {f.name: f for f in parse_openmetrics(text)}
    buckets = [s for s in families["app_delta"].samples if s.name == "app_delta_bucket"]
    assert [s.value for s in buckets] == [0.0, 1.0, 1.0, 1.0]
