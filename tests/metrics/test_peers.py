"""Real peers validate the exposition: promtool, a Prometheus server and a Pushgateway."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from truthound.stores.observability.config import MetricsConfig
from truthound.stores.observability.errors import PushGatewayError
from truthound.stores.observability.metrics import PrometheusMetricsBackend, StoreMetrics

TRICKY = 'back\\slash "quoted"\nnew line, UTF-8: é 日本 𝄞'


def every_type(backend: PrometheusMetricsBackend) -> None:
    backend.register("requests_total", "counter", "Requests served", label_names=["path"])
    backend.increment("requests_total", 3, {"path": TRICKY})
    backend.register(
        "temperature_celsius", "gauge", 'Help with "quotes" and \\', label_names=["room"]
    )
    backend.gauge("temperature_celsius", -4.5, {"room": TRICKY})
    backend.register(
        "latency_seconds", "histogram", "Latency", label_names=["op"], buckets=[0.1, 1]
    )
    backend.histogram("latency_seconds", 0.05, {"op": TRICKY})
    backend.register("payload_bytes", "summary", "Payload sizes", label_names=["op"])
    backend.summary("payload_bytes", 512, {"op": TRICKY})


@pytest.mark.timeout(60)
def test_promtool_check_metrics_passes() -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        pytest.fail("promtool is not installed: run scripts/install-system-deps.sh")
    backend = PrometheusMetricsBackend(prefix="app", default_labels={"service": "store"})
    every_type(backend)
    StoreMetrics(backend, "s3", "b").record_operation("read", duration_ms=3.0)
    text = backend.export("prometheus")
    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
    assert result.stderr.strip() == ""


def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        payload = json.loads(response.read())
    assert payload["status"] == "success", payload
    return list(payload["data"]["result"])


@pytest.mark.timeout(180)
def test_a_real_prometheus_scrapes_the_endpoint(prometheus: Any, net: Any) -> None:
    backend = PrometheusMetricsBackend(prefix="truthound", default_labels={"service": "v"})
    backend.register("latency_seconds", "histogram", "Latency", buckets=[0.1, 0.2, 0.4, 0.8])
    for _ in range(10):
        backend.histogram("latency_seconds", 0.15)
        backend.histogram("latency_seconds", 0.3)
    backend.increment("operations_total", 42, labels={"op": "read", "note": TRICKY})
    backend.summary("size_bytes", 100)
    port = backend.start_http_server(port=0)
    try:
        url = prometheus(f"127.0.0.1:{port}")
        counter = net.wait_until(
            lambda: query(url, 'truthound_operations_total{op="read"}'), 60, "a scrape"
        )
        assert counter[0]["value"][1] == "42"
        assert counter[0]["metric"]["note"] == TRICKY
        assert counter[0]["metric"]["service"] == "v"
        median = query(url, "histogram_quantile(0.5, truthound_latency_seconds_bucket)")
        assert float(median[0]["value"][1]) == pytest.approx(0.2)
        upper = query(url, "histogram_quantile(0.75, truthound_latency_seconds_bucket)")
        assert float(upper[0]["value"][1]) == pytest.approx(0.3)
        size = query(url, 'truthound_size_bytes{quantile="0.99"}')
        assert size[0]["value"][1] == "100"
        health = query(url, "up")
        assert health[0]["value"][1] == "1"
    finally:
        backend.stop_http_server()


def gateway_metrics(pushgateway: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def series(families: dict[str, Any], name: str) -> list[tuple[dict[str, str], float]]:
    family = families.get(name)
    return [(s.labels, s.value) for s in family.samples] if family else []


@pytest.mark.timeout(120)
def test_a_real_pushgateway_receives_pushes_under_the_grouping_key(pushgateway: str) -> None:
    backend = PrometheusMetricsBackend(prefix="")
    backend.increment("jobs_total", 5, {"kind": "import"})
    key = {"instance": "worker-1", "path": "/data/in"}
    assert backend.push_to_gateway(gateway_url=pushgateway, job="nightly", grouping_key=key)
    pushed = series(gateway_metrics(pushgateway), "jobs")
    assert pushed == [
        ({"instance": "worker-1", "job": "nightly", "kind": "import", "path": "/data/in"}, 5.0)
    ]

    other = PrometheusMetricsBackend(prefix="")
    other.gauge("queue_depth", 7)
    # POST (add) keeps the group's other metrics; PUT (replace) drops them.
    assert other.push_to_gateway(pushgateway, "nightly", key, method="post")
    families = gateway_metrics(pushgateway)
    assert series(families, "jobs")
    assert series(families, "queue_depth")
    assert other.push_to_gateway(pushgateway, "nightly", key, method="put")
    families = gateway_metrics(pushgateway)
    assert not series(families, "jobs")
    assert series(families, "queue_depth")[0][1] == 7.0
    assert other.delete_from_gateway(pushgateway, "nightly", key)
    assert not series(gateway_metrics(pushgateway), "queue_depth")
    assert backend.push_failures == other.push_failures == 0


# bcrypt hash of "s3cret" (generated once with libxcrypt's crypt(3)).
BCRYPT_S3CRET = "$2b$10$abcdefghijklmnopqrstuu3KWNuWLhBnmgYfnzONPueahDuedC/lu"


@pytest.mark.timeout(120)
def test_basic_auth_against_a_protected_pushgateway(tmp_path: Path, net: Any) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text(f"basic_auth_users:\n  pusher: '{BCRYPT_S3CRET}'\n")
    port = net.free_port()
    gateway = subprocess.Popen(
        [
            shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.config.file={web_config}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        net.wait_until(lambda: net.http_get(f"{url}/-/ready")[0] in (200, 401), 30, "gateway")
        backend = PrometheusMetricsBackend(prefix="")
        backend.increment("x")
        assert backend.push_to_gateway(url, "j") is False
        assert backend.push_failures == 1
        assert "401" in (backend.last_push_error or "")
        assert backend.push_to_gateway(url, "j", username="pusher", password="s3cret")
        assert backend.push_failures == 1
    finally:
        gateway.kill()
        gateway.wait(timeout=10)


@pytest.mark.timeout(60)
def test_failed_pushes_are_returned_and_counted_not_raised(net: Any) -> None:
    backend = PrometheusMetricsBackend()
    backend.increment("x")
    closed = f"http://127.0.0.1:{net.free_port()}"
    assert backend.push_to_gateway(gateway_url=closed, job="j", timeout=2) is False
    assert backend.push_failures == 1
    assert closed in (backend.last_push_error or "")
    with pytest.raises(PushGatewayError, match=r"127\.0\.0\.1"):
        backend.push_to_gateway(closed, "j", timeout=2, raise_on_error=True)
    assert backend.push_failures == 2
    assert backend.push_to_gateway(job="j") is False  # no URL anywhere: a failure too
    assert backend.push_failures == 3


@pytest.mark.timeout(120)
def test_periodic_push_from_the_config(pushgateway: str, net: Any) -> None:
    config = MetricsConfig(prefix="", push_gateway_url=pushgateway, push_interval_seconds=0.2)
    backend = PrometheusMetricsBackend(config)
    try:
        backend.increment("beats_total")
        net.wait_until(lambda: series(gateway_metrics(pushgateway), "beats"), 30, "a push")
        backend.increment("beats_total", 2)
    finally:
        backend.close()  # pushes a final time
    assert series(gateway_metrics(pushgateway), "beats")[0][1] == 3.0
    time.sleep(0.5)
    assert backend.push_failures == 0
