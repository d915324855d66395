"""The scrape endpoint: binding, stopping, content negotiation and gzip."""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from truthound.stores.observability.config import MetricsConfig
from truthound.stores.observability.errors import (
    InvalidArgumentError,
    InvalidArgumentTypeError,
    MetricsServerError,
)
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
    # As in the existing module: the config enables it, the constructor argument starts it.
    assert PrometheusMetricsBackend(config).http_server_port is None
    with PrometheusMetricsBackend(config, auto_start_server=True) as backend:
        assert backend.http_server_port == port
        assert net.http_get(f"http://127.0.0.1:{port}/custom")[0] == 200
        assert net.http_get(f"http://127.0.0.1:{port}/metrics")[0] == 404
    assert backend.http_server_port is None
    assert PrometheusMetricsBackend(config, auto_start_server=False).http_server_port is None


@pytest.mark.timeout(60)
def test_the_bind_address_comes_from_the_config(net: Any) -> None:
    """Loopback by default; ``http_addr`` (or ``TRUTHOUND_METRICS_HTTP_ADDR``) opens it to a
    Prometheus on another host."""
    assert MetricsConfig().http_addr == "127.0.0.1"
    config = MetricsConfig(http_port=0, enable_http_server=True, http_addr="0.0.0.0")
    with PrometheusMetricsBackend(config, auto_start_server=True) as backend:
        assert backend.http_server_address == "0.0.0.0"
        port = backend.http_server_port
        assert net.http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    with pytest.raises(InvalidArgumentError, match="http_addr"):
        MetricsConfig(http_addr="")


def _connection_threads(port: int) -> list[threading.Thread]:
    """The threads serving client connections of the endpoint on ``port``."""
    name = f"truthound-metrics-http-{port}-connection"
    return [t for t in threading.enumerate() if t.name == name]


def _reads_end_of_stream(sock: socket.socket) -> bool:
    """Whether the peer closed the connection (a read returns EOF or a reset) within 10 s."""
    sock.settimeout(10.0)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _scrape(client: http.client.HTTPConnection) -> http.client.HTTPResponse:
    client.request("GET", "/metrics")
    return client.getresponse()


@pytest.mark.timeout(60)
def test_stop_closes_keep_alive_connections(net: Any) -> None:
    """A client that keeps its connection open (HTTP/1.1 keep-alive, as Prometheus does) gets
    no response after stop(), and no handler thread outlives it."""
    backend = PrometheusMetricsBackend(prefix="app")
    backend.increment("requests")
    port = backend.start_http_server(port=0)
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(2)]
    try:
        for client in clients:
            client.request("GET", "/metrics")
            response = client.getresponse()
            assert response.status == 200
            assert b"app_requests_total 1.0\n" in response.read()
            assert not response.will_close  # the connection stays open for the next scrape
        assert len(_connection_threads(port)) == 2
        backend.stop_http_server()
        backend.increment("requests")
        assert _connection_threads(port) == []
        assert clients[0].sock is not None
        assert _reads_end_of_stream(clients[0].sock)  # closed by the server, unprompted
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            _scrape(clients[1])
    finally:
        for client in clients:
            client.close()
        backend.stop_http_server()
    # A new endpoint on the same port serves again (the old one holds nothing).
    assert backend.start_http_server(port=port) == port
    try:
        status, _, body = net.http_get(f"http://127.0.0.1:{port}/metrics")
        assert (status, b"app_requests_total 2.0\n" in body) == (200, True)
    finally:
        backend.stop_http_server()


@pytest.mark.timeout(60)
def test_idle_keep_alive_connections_are_closed_after_the_handler_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An idle client cannot hold a handler thread for ever (the timeout is 30 s; shortened
    here), while the endpoint keeps serving others."""
    from truthound.stores.observability.metrics import _http

    assert _http._Handler.timeout == _http.IDLE_TIMEOUT_SECONDS == 30.0
    monkeypatch.setattr(_http._Handler, "timeout", 0.5)
    backend = PrometheusMetricsBackend()
    port = backend.start_http_server(port=0)
    try:
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        with idle:
            assert _reads_end_of_stream(idle)  # it never sent a request
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        client.request("GET", "/metrics")
        assert client.getresponse().status == 200
        client.close()
    finally:
        backend.stop_http_server()


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.timeout(60)
@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this host has no IPv6 loopback")
def test_serves_on_ipv6(net: Any) -> None:
    backend = PrometheusMetricsBackend(prefix="app")
    backend.increment("requests")
    port = backend.start_http_server(port=0, addr="::1")
    try:
        assert backend.http_server_address == "::1"
        status, _, body = net.http_get(f"http://[::1]:{port}/metrics")
        assert (status, b"app_requests_total 1.0\n" in body) == (200, True)
    finally:
        backend.stop_http_server()
    port = backend.start_http_server(port=0, addr="::")  # every interface, IPv6 and IPv4
    try:
        assert backend.http_server_address == "::"
        assert net.http_get(f"http://[::1]:{port}/metrics")[0] == 200
        if socket.has_dualstack_ipv6():
            assert net.http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200
    finally:
        backend.stop_http_server()


@pytest.mark.timeout(60)
def test_bad_server_arguments_name_the_argument() -> None:
    backend = PrometheusMetricsBackend()
    with pytest.raises(InvalidArgumentTypeError, match=r"port='9090'.*int") as caught:
        backend.start_http_server(port="9090")  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError)
    with pytest.raises(InvalidArgumentTypeError, match="port=True"):
        backend.start_http_server(port=True)
    with pytest.raises(InvalidArgumentError, match="port=70000"):
        backend.start_http_server(port=70000)
    with pytest.raises(InvalidArgumentTypeError, match="addr=1"):
        backend.start_http_server(port=0, addr=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="path='metrics'"):
        backend.start_http_server(port=0, path="metrics")
    with pytest.raises(InvalidArgumentTypeError, match="path=5"):
        backend.start_http_server(port=0, path=5)  # type: ignore[arg-type]
    assert backend.http_server_port is None
