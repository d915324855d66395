"""Fixtures of the metrics suite: free ports, a frozen clock, and the real peers (a Prometheus
server and a Pushgateway from Debian's packages) started on loopback by the tests themselves."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(
    url: str, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET (HTTP errors are returned, not raised)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read()


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Polls `predicate` until it returns something truthy, or fails naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except (OSError, ValueError, KeyError) as error:
            last_error = error
            result = None
        if result:
            return result
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/install-system-deps.sh")
    return path


class _Process:
    def __init__(self, argv: list[str], log: Path) -> None:
        self.log = log
        self._file = log.open("wb")
        self.process = subprocess.Popen(argv, stdout=self._file, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        self._file.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[str]:
    """A real Pushgateway on a free loopback port; yields its base URL."""
    port = free_port()
    peer = _Process(
        [_binary("prometheus-pushgateway"), f"--web.listen-address=127.0.0.1:{port}"],
        tmp_path / "pushgateway.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_get(f"{url}/-/ready")[0] == 200, 30, "the Pushgateway to start")
        yield url
    finally:
        peer.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Starts a real Prometheus scraping the given `host:port` every second; returns its URL."""
    peers: list[_Process] = []

    def start(target: str) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: truthound\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        peer = _Process(
            [
                _binary("prometheus"),
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            ],
            tmp_path / "prometheus.log",
        )
        peers.append(peer)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_get(f"{url}/-/ready")[0] == 200, 60, "Prometheus to start")
        return url

    try:
        yield start
    finally:
        for peer in peers:
            peer.stop()


class FrozenClock:
    """A settable clock for both cores (seconds since the epoch)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


class Net:
    """Loopback helpers for tests (as a fixture: test modules cannot import conftest)."""

    free_port = staticmethod(free_port)
    http_get = staticmethod(http_get)
    wait_until = staticmethod(wait_until)


@pytest.fixture
def net() -> Net:
    return Net()
