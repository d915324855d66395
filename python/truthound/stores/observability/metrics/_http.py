"""The scrape endpoint and Pushgateway client (Python's standard library HTTP)."""

from __future__ import annotations

import base64
import gzip
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, urlsplit

from ..errors import InvalidArgumentError, MetricsServerError, PushGatewayError
from ._exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    accepts_gzip,
    prefers_openmetrics,
)

__all__ = ["MetricsHTTPServer", "push"]

#: Renders the exposition: ``render(openmetrics)``.
Renderer = Callable[[bool], str]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _respond(self, include_body: bool) -> None:
        if urlsplit(self.path).path != self.server.metrics_path:
            body = b"Not Found: metrics are served at " + self.server.metrics_path.encode() + b"\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if include_body:
                self.wfile.write(body)
            return
        openmetrics = prefers_openmetrics(self.headers.get("Accept"))
        try:
            body = self.server.render(openmetrics).encode("utf-8")
        except Exception as error:
            message = f"error while encoding metrics: {error}\n".encode()
            self.send_response(500)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(message)))
            self.end_headers()
            if include_body:
                self.wfile.write(message)
            return
        self.send_response(200)
        self.send_header(
            "Content-Type", OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        )
        self.send_header("Vary", "Accept, Accept-Encoding")
        if accepts_gzip(self.headers.get("Accept-Encoding")):
            body = gzip.compress(body, compresslevel=6)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if include_body:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._respond(include_body=True)

    def do_HEAD(self) -> None:
        self._respond(include_body=False)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not logged (one line per scrape would flood the application's logs)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], render: Renderer, metrics_path: str) -> None:
        self.render = render
        self.metrics_path = metrics_path
        super().__init__(address, _Handler)


class MetricsHTTPServer:
    """A running scrape endpoint; ``stop()`` closes its socket so the port is free again."""

    def __init__(self, render: Renderer, port: int, addr: str, path: str) -> None:
        if not path.startswith("/"):
            raise InvalidArgumentError(f"path={path!r}: must start with '/'")
        if not 0 <= port <= 65535:
            raise InvalidArgumentError(f"port={port!r}: must be a TCP port (0-65535)")
        try:
            self._server = _Server((addr, port), render, path)
        except OSError as error:
            raise MetricsServerError(
                f"cannot serve metrics on {addr}:{port}: {error.strerror or error}"
            ) from error
        self.path = path
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"truthound-metrics-http-{self.port}",
            daemon=True,
        )
        self._thread.start()

    @property
    def address(self) -> str:
        """The address the socket is bound to."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one when started with ``port=0``)."""
        return int(self._server.server_address[1])

    def forget(self) -> None:
        """In a forked child: closes this process's copy of the socket, without stopping the
        serving thread (the parent's; it does not exist in the child)."""
        self._server.socket.close()

    def stop(self) -> None:
        """Stops serving, closes the socket and waits for the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)


def _path_segment(name: str, value: str) -> str:
    if value == "":
        return f"{name}@base64/="
    if "/" in value:
        encoded = base64.urlsafe_b64encode(value.encode()).decode()
        return f"{name}@base64/{encoded}"
    return f"{name}/{quote(value, safe='')}"


def gateway_url_for(gateway_url: str, job: str, grouping_key: Mapping[str, str] | None) -> str:
    """The Pushgateway URL of a grouping key (values with ``/`` or empty use base64)."""
    if "://" not in gateway_url:
        gateway_url = f"http://{gateway_url}"
    url = gateway_url.rstrip("/") + "/metrics/" + _path_segment("job", job)
    for name, value in (grouping_key or {}).items():
        url += "/" + _path_segment(name, str(value))
    return url


_METHODS = {"put": "PUT", "replace": "PUT", "post": "POST", "add": "POST", "delete": "DELETE"}


def push(  # noqa: PLR0917 - internal helper called with every argument
    body: str,
    gateway_url: str,
    job: str,
    grouping_key: Mapping[str, str] | None,
    timeout: float,
    method: str,
    username: str | None,
    password: str | None,
    headers: Mapping[str, str] | None,
) -> None:
    """Sends one push; raises ``PushGatewayError`` (naming the URL) on any failure."""
    verb = _METHODS.get(method.lower())
    if verb is None:
        raise InvalidArgumentError(f"method={method!r}: expected put/replace, post/add or delete")
    if not job:
        raise InvalidArgumentError("job='': a Pushgateway job name must not be empty")
    url = gateway_url_for(gateway_url, job, grouping_key)
    request_headers = {"Content-Type": TEXT_CONTENT_TYPE, **(headers or {})}
    if username is not None:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        request_headers["Authorization"] = f"Basic {token}"
    data = None if verb == "DELETE" else body.encode("utf-8")
    request = urllib.request.Request(url, data=data, method=verb, headers=request_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
            response.read()
    except urllib.error.HTTPError as error:
        detail = error.read(512).decode("utf-8", "replace").strip()
        raise PushGatewayError(
            f"push to {url} failed: HTTP {error.code} {error.reason}: {detail}"
        ) from error
    except (OSError, ValueError) as error:
        raise PushGatewayError(f"push to {url} failed: {error}") from error
    if not 200 <= status < 300:
        raise PushGatewayError(f"push to {url} failed: HTTP {status}")
