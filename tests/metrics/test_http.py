"""The scrape endpoint: binding, stopping, content negotiation and gzip."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from truthound.stores.observability.config import MetricsConfig
from truthound.stores.observability.errors import MetricsServerError
from truthound.stores.observability.metrics import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    PrometheusMetricsBackend,
    prefers_openmetrics,
)

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.fixture
def served(net: Any) -> Iterator[tuple[PrometheusMetricsBackend, str]]:
    backend = PrometheusMetricsBackend(prefix="app")
    backend.increment("requests_total", labels={"path": "/"})
    backend.histogram("latency_seconds", 0.2)
    port = backend.start_http_server(port=0)
    try:
        yield backend, f"http://127.0.0.1:{port}"
    finally:
        backend.stop_http_server()


@pytest.mark.timeout(60)
def test_serves_text_by_default(served: Any, net: Any) -> None:
    backend, url = served
    status, headers, body = net.http_get(f"{url}/metrics")
    assert status == 200
    assert headers["Content-Type"] == TEXT_CONTENT_TYPE
    assert body.decode() == backend.export("prometheus")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        (PROMETHEUS_ACCEPT, True),
        ("text/plain", False),
        ("application/openmetrics-text;q=0.3, text/plain;q=0.5", False),
        ("application/openmetrics-text;q=0.9, text/plain;q=0.5", True),
        ("application/openmetrics-text;q=0", False),
        ("application/json", False),
        ("*/*", False),
    ],
)
def test_accept_negotiation_honours_q_values(
    served: Any, net: Any, accept: str, openmetrics: bool
) -> None:
    assert prefers_openmetrics(accept) is openmetrics
    _, url = served
    status, headers, body = net.http_get(f"{url}/metrics", {"Accept": accept})
    assert status == 200
    expected = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
    assert headers["Content-Type"] == expected
    assert body.endswith(b"# EOF\n") is openmetrics


@pytest.mark.timeout(60)
def test_gzip_when_accepted(served: Any, net: Any) -> None:
    backend, url = served
    status, headers, body = net.http_get(
        f"{url}/metrics", {"Accept-Encoding": "gzip, deflate;q=0.5"}
    )
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).decode() == backend.export("prometheus")
    _, headers, _ = net.http_get(f"{url}/metrics", {"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in headers


@pytest.mark.timeout(60)
def test_other_paths_are_not_found(served: Any, net: Any) -> None:
    _, url = served
    assert net.http_get(f"{url}/")[0] == 404
    assert net.http_get(f"{url}/metrics/x")[0] == 404


@pytest.mark.timeout(60)
def test_stop_frees_the_port_and_loopback_is_the_default(net: Any) -> None:
    backend = PrometheusMetricsBackend()
    port = net.free_port()
    assert backend.start_http_server(port=port) == port
    assert backend.http_server_port == port
    assert backend.http_server_address == "127.0.0.1"  # loopback unless asked otherwise
    with pytest.raises(MetricsServerError, match=str(port)):
        backend.start_http_server(port=port)  # already serving
    other = PrometheusMetricsBackend()
    with pytest.raises(MetricsServerError, match=str(port)) as caught:
        other.start_http_server(port=port)  # the port is taken
    assert isinstance(caught.value, OSError)
    backend.stop_http_server()
    assert backend.http_server_port is None
    with socket.socket() as probe:  # the port is free again, immediately
        probe.bind(("127.0.0.1", port))
    assert other.start_http_server(port=port) == port
    other.stop_http_server()
    backend.stop_http_server()  # stopping twice is harmless


@pytest.mark.timeout(60)
def test_config_port_and_path_and_auto_start(net: Any) -> None:
    port = net.free_port()
    config = MetricsConfig(http_port=port, http_path="/custom", enable_http_server=True)
    with PrometheusMetricsBackend(config) as backend:
        assert backend.http_server_port == port
        assert net.http_get(f"http://127.0.0.1:{port}/custom")[0] == 200
        assert net.http_get(f"http://127.0.0.1:{port}/metrics")[0] == 404
    assert backend.http_server_port is None
    assert PrometheusMetricsBackend(config, auto_start_server=False).http_server_port is None
