"""The scrape endpoint and Pushgateway client (Python's standard library HTTP)."""

from __future__ import annotations

import base64
import contextlib
import gzip
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, urlsplit

from ..errors import (
    InvalidArgumentError,
    InvalidArgumentTypeError,
    MetricsServerError,
    PushGatewayError,
)
from ._exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    accepts_gzip,
    prefers_openmetrics,
)

__all__ = ["MetricsHTTPServer", "push"]

#: Renders the exposition: ``render(openmetrics)``.
Renderer = Callable[[bool], str]


#: See ``_Handler.timeout``.
IDLE_TIMEOUT_SECONDS = 30.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    #: Seconds a connection may stay idle between requests, or stall in a read or write, before
    #: it is closed: bounds how long a keep-alive client or a slow peer holds a handler thread
    #: (Prometheus reconnects on its next scrape).
    timeout = IDLE_TIMEOUT_SECONDS

    def _send(self, status: int, body: bytes, include_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if include_body:
            self.wfile.write(body)

    def _respond(self, include_body: bool) -> None:
        if self.server.stopping:
            # A request that raced with stop(): never answered with metrics.
            self.close_connection = True
            self._send(
                503, b"Service Unavailable: the metrics endpoint is stopping\n", include_body
            )
            return
        if urlsplit(self.path).path != self.server.metrics_path:
            body = b"Not Found: metrics are served at " + self.server.metrics_path.encode() + b"\n"
            self._send(404, body, include_body)
            return
        openmetrics = prefers_openmetrics(self.headers.get("Accept"))
        try:
            body = self.server.render(openmetrics).encode("utf-8")
        except Exception as error:
            self._send(500, f"error while encoding metrics: {error}\n".encode(), include_body)
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
    """The HTTP server, tracking its connections and their threads so that ``stop`` can close
    them: a keep-alive connection would otherwise keep being served after the listening socket
    is closed (its handler thread blocks reading the next request)."""

    daemon_threads = True  # never keeps the interpreter alive; stop() joins them itself
    allow_reuse_address = True
    block_on_close = False  # socketserver does not track daemon threads; see close_connections

    def __init__(
        self,
        address: tuple[Any, ...],
        family: socket.AddressFamily,
        render: Renderer,
        metrics_path: str,
    ) -> None:
        self.address_family = family
        self.render = render
        self.metrics_path = metrics_path
        #: Set when stopping begins: requests are refused from then on.
        self.stopping = False
        self.connections: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6 and self.server_address[0] == "::":
            # "::" serves IPv4 too, whatever the system default (Linux: on, BSDs: off).
            with contextlib.suppress(OSError, AttributeError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # TCPServer's bind, not HTTPServer's: that one adds a reverse DNS lookup (getfqdn)
        # that can stall start-up, for a server name nothing here uses.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if not self.stopping:
                self.connections.add(request)
                thread = threading.Thread(
                    target=self._serve_connection,
                    args=(request, client_address),
                    name=f"truthound-metrics-http-{self.server_address[1]}-connection",
                    daemon=True,
                )
                self._handlers.add(thread)
                thread.start()  # under the lock: close_connections never sees it unstarted
                return
        self.shutdown_request(request)

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._handlers.discard(threading.current_thread())

    def shutdown_request(self, request: Any) -> None:
        # Forgotten under the lock before it is closed: close_connections (which holds the
        # lock) only ever shuts down open sockets, never a reused file descriptor.
        with self._lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # the client went away, or stop() closed the connection: not an error here
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> bool:
        """Refuses further requests, shuts every open connection down (a handler blocked on
        its next request sees the end of the stream; one mid-response fails to write) and
        waits up to ``timeout`` seconds for their threads; returns whether all ended."""
        with self._lock:
            self.stopping = True
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            handlers = list(self._handlers)
        deadline = time.monotonic() + timeout
        for thread in handlers:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in handlers)


def _bind_address(addr: str, port: int) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    """The address family and socket address of ``addr``, from getaddrinfo: ``"::"`` and
    ``"::1"`` are IPv6, a host name takes its first address (as ``http.server`` does)."""
    infos = socket.getaddrinfo(addr or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _type, _proto, _name, sockaddr = infos[0]
    return family, sockaddr


class MetricsHTTPServer:
    """A running scrape endpoint; ``stop()`` closes its socket and its open connections, so
    the port is free again and nothing is served any more."""

    def __init__(self, render: Renderer, port: int, addr: str, path: str) -> None:
        if not isinstance(path, str):
            raise InvalidArgumentTypeError(f"path={path!r}: must be a str such as '/metrics'")
        if not path.startswith("/"):
            raise InvalidArgumentError(f"path={path!r}: must start with '/'")
        if not isinstance(port, int) or isinstance(port, bool):
            raise InvalidArgumentTypeError(
                f"port={port!r}: must be an int (a TCP port, 0-65535), not {type(port).__name__}"
            )
        if not 0 <= port <= 65535:
            raise InvalidArgumentError(f"port={port!r}: must be a TCP port (0-65535)")
        if not isinstance(addr, str):
            raise InvalidArgumentTypeError(
                f"addr={addr!r}: must be a str (an IP address or host name), "
                f"not {type(addr).__name__}"
            )
        try:
            family, sockaddr = _bind_address(addr, port)
            self._server = _Server(sockaddr, family, render, path)
        except OSError as error:
            raise MetricsServerError(
                f"cannot serve metrics on {_show(addr, port)}: {error.strerror or error}"
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

    @property
    def open_connections(self) -> int:
        """Client connections currently open."""
        return len(self._server.connections)

    def forget(self) -> None:
        """In a forked child: closes this process's copies of the listening socket and of the
        open connections (so the parent's closes really end them), without stopping the
        serving threads (the parent's; they do not exist in the child)."""
        self._server.socket.close()
        for connection in list(self._server.connections):
            connection.close()

    def stop(self) -> None:
        """Stops accepting, frees the port, closes every open connection (a keep-alive client
        gets no further response) and waits for the serving threads."""
        self._server.stopping = True  # a request arriving during stop() gets a 503
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections(timeout=5.0)
        self._thread.join(timeout=5.0)


def _show(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


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


def _check_gateway_url(gateway_url: Any) -> None:
    if not isinstance(gateway_url, str):
        raise InvalidArgumentTypeError(
            f"gateway_url={gateway_url!r}: must be a URL string, not {type(gateway_url).__name__}"
        )
    full = gateway_url if "://" in gateway_url else f"http://{gateway_url}"
    try:
        parts = urlsplit(full)
        _ = parts.port
    except ValueError as error:
        raise InvalidArgumentError(
            f"gateway_url={gateway_url!r}: not a valid URL ({error})"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgumentError(
            f"gateway_url={gateway_url!r}: expected http(s)://host[:port][/path]"
        )


def check_push_arguments(
    gateway_url: Any,
    job: Any,
    grouping_key: Any,
    method: Any,
    timeout: Any,
) -> None:
    """Rejects push arguments that can never work, naming the argument (``gateway_url=None``
    or ``""`` is not checked: the caller reports a missing URL as a failed push)."""
    if gateway_url is not None and gateway_url != "":
        _check_gateway_url(gateway_url)
    if not isinstance(job, str):
        raise InvalidArgumentTypeError(f"job={job!r}: must be a str, not {type(job).__name__}")
    if not job:
        raise InvalidArgumentError("job='': a Pushgateway job name must not be empty")
    if grouping_key is not None:
        if not isinstance(grouping_key, Mapping):
            raise InvalidArgumentTypeError(
                f"grouping_key={grouping_key!r}: must be a mapping of label names to values "
                f"(a dict), not {type(grouping_key).__name__}"
            )
        for name in grouping_key:
            if not isinstance(name, str) or not name:
                raise InvalidArgumentError(
                    f"grouping_key={grouping_key!r}: label name {name!r} must be a non-empty str"
                )
    if not isinstance(method, str):
        raise InvalidArgumentTypeError(
            f"method={method!r}: expected put/replace, post/add or delete"
        )
    if method.lower() not in _METHODS:
        raise InvalidArgumentError(f"method={method!r}: expected put/replace, post/add or delete")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidArgumentError(f"timeout={timeout!r}: must be a positive number of seconds")


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
    check_push_arguments(gateway_url, job, grouping_key, method, timeout)
    verb = _METHODS[method.lower()]
    url = gateway_url_for(gateway_url, job, grouping_key)
    request_headers = {"Content-Type": TEXT_CONTENT_TYPE, **(headers or {})}
    if username is not None:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        request_headers["Authorization"] = f"Basic {token}"
    data = None if verb == "DELETE" else body.encode("utf-8")
    try:
        # Built inside the try: whatever the URL or headers, a failure is a failed push.
        request = urllib.request.Request(url, data=data, method=verb, headers=request_headers)
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
