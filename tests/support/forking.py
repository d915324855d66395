"""Test support for fork safety: running code in a forked child, holding a lock while forking,
a keep-alive OTLP/HTTP collector, and an independent reader of JSON Lines audit logs.

The reader decodes with ``json``/``gzip`` and recomputes the keyed chain with ``hmac`` (not
with the library's ``verify``), so the tests check the files with code that shares nothing with
the writers.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json
import os
import socket
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MAC_SUFFIX_LEN = len(',"mac":"') + 64 + len('"}')


def wait_child(pid: int, timeout: float) -> int:
    """The child's exit status, or -9 after killing it when it did not finish in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.002)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -9


def start_child(body: Callable[[], object]) -> tuple[int, int]:
    """Forks; the child runs ``body`` and leaves with ``os._exit`` (0, or 1 after writing the
    traceback to the pipe). Returns ``(pid, read end of the pipe)``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            body()
            code = 0
        except BaseException:
            with contextlib.suppress(BaseException):
                os.write(write_fd, traceback.format_exc().encode()[-8000:])
        finally:
            os._exit(code)  # whatever happened: never back into the test runner
    os.close(write_fd)
    return pid, read_fd


def finish_child(pid: int, read_fd: int, timeout: float = 30.0) -> tuple[int, str]:
    """``(exit status, the child's traceback if any)``; a child still running after ``timeout``
    seconds is killed (status -9)."""
    status = wait_child(pid, timeout)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    return status, b"".join(chunks).decode(errors="replace")


def run_forked(body: Callable[[], object], timeout: float = 30.0) -> tuple[int, str]:
    """Runs ``body`` in a forked child: ``(exit status, traceback)``."""
    return finish_child(*start_child(body), timeout=timeout)


@contextmanager
def held(lock: Any) -> Iterator[None]:
    """Another thread holds ``lock`` (anything with ``acquire``/``release``) for the duration
    of the block."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        lock.acquire()
        try:
            taken.set()
            release.wait(60)
        finally:
            lock.release()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert taken.wait(30), "the holder thread could not take the lock"
    try:
        yield
    finally:
        release.set()
        holder.join(30)


# ---- loopback HTTP ---------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, timeout: float = 10.0) -> int:
    """The status of a GET (HTTP errors are returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Polls ``predicate`` (connection errors count as "not yet") until it is truthy."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError as error:
            last_error = error
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} ({last_error})")


# ---- JSON Lines audit logs, read independently ---------------------------------------------


def read_lines(directory: Path) -> list[bytes]:
    """Every line of every ``*.jsonl`` / ``*.jsonl.gz`` segment in ``directory``. A segment
    present in both forms (a compression interrupted between writing the ``.gz`` and removing
    the plain file) is read from the plain file."""
    lines: list[bytes] = []
    names = {path.name for path in directory.iterdir()}
    for path in sorted(directory.iterdir()):
        if path.name.endswith(".jsonl"):
            data = path.read_bytes()
        elif path.name.endswith(".jsonl.gz") and path.name[:-3] not in names:
            data = gzip.decompress(path.read_bytes())
        else:
            continue
        lines.extend(line for line in data.split(b"\n") if line)
    return lines


def records(directory: Path) -> list[dict[str, Any]]:
    """Every audit record (checkpoints excluded) of the JSON Lines log in ``directory``."""
    out = []
    for line in read_lines(directory):
        record = json.loads(line)
        if "_type" not in record:
            out.append(record)
    return out


def check_chain(directory: Path, key: bytes) -> int:
    """Recomputes the keyed chain over every line (``mac = HMAC-SHA256(key, previous mac ||
    the line up to the mac)``): sequence numbers 0..n-1 without gap or repeat, every MAC
    linked to its predecessor's. Returns the number of links."""
    links = {}
    for line in read_lines(directory):
        record = json.loads(line)
        seq = record["seq"]
        assert seq not in links, f"sequence number {seq} appears twice"
        links[seq] = line
    assert sorted(links) == list(range(len(links))), "a gap in the sequence numbers"
    previous = bytes(32)
    for seq in range(len(links)):
        line = links[seq]
        body, mac = line[:-MAC_SUFFIX_LEN], line[-MAC_SUFFIX_LEN + 8 : -2]
        expected = hmac.new(key, previous + body, hashlib.sha256).digest()
        assert expected.hex().encode() == mac, f"the MAC of link {seq} does not verify"
        previous = expected
    return len(links)


# ---- a keep-alive OTLP/HTTP collector --------------------------------------------------------


class KeepAliveOtlpReceiver:
    """An OTLP/HTTP collector (traces and logs) that keeps connections open (HTTP/1.1), as
    real collectors do, and notes which client connection (local port of the peer) brought
    each item. Decodes with the official ``opentelemetry-proto`` classes."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
            ExportLogsServiceResponse,
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        #: ``(client port, span name or log event_id)`` for every item received.
        self.items: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                port = self.client_address[1]
                try:
                    if self.path == "/v1/traces":
                        request = ExportTraceServiceRequest.FromString(body)
                        names = [
                            span.name
                            for rs in request.resource_spans
                            for ss in rs.scope_spans
                            for span in ss.spans
                        ]
                        payload = ExportTraceServiceResponse().SerializeToString()
                    elif self.path == "/v1/logs":
                        logs = ExportLogsServiceRequest.FromString(body)
                        names = [
                            attribute.value.string_value
                            for rl in logs.resource_logs
                            for sl in rl.scope_logs
                            for record in sl.log_records
                            for attribute in record.attributes
                            if attribute.key == "audit.item_id"
                        ]
                        payload = ExportLogsServiceResponse().SerializeToString()
                    else:
                        raise AssertionError(f"unexpected path {self.path}")
                except Exception as error:
                    with receiver._cond:
                        receiver.errors.append(f"{type(error).__name__}: {error}")
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with receiver._cond:
                    receiver.items.extend((port, name) for name in names)
                    receiver._cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ports_of(self, name: str) -> list[int]:
        with self._cond:
            return [port for port, item in self.items if item == name]

    def names(self) -> list[str]:
        with self._cond:
            assert not self.errors, self.errors
            return sorted(item for _, item in self.items)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
