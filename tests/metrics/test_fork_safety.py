"""Fork safety: a child forked while other threads use (and lock) metrics can record at once,
and inherits no broken thread-owned state."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from forking import wait_child

from truthound.stores.observability.config import MetricsConfig
from truthound.stores.observability.metrics import PrometheusMetricsBackend

TRIALS = 100


def child_uses_metrics(backend: PrometheusMetricsBackend) -> None:
    try:
        backend.increment("child_total", labels={"pid": str(os.getpid())})
        backend.histogram("latency_seconds", 0.1, labels={"op": "child"})
        backend.summary("size_bytes", 3.0)
        backend.register("fresh", "gauge", label_names=["x"])
        backend.gauge("fresh", 1, {"x": "y"})
        text = backend.export()
        assert "child_total" in text
        backend.close()
    except BaseException:
        os._exit(1)
    os._exit(0)


@pytest.mark.timeout(240)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize("multiprocess", [False, True])
def test_fork_while_other_threads_hold_metrics_locks(
    core: str, multiprocess: bool, tmp_path: Path
) -> None:
    config = MetricsConfig(prefix="app", multiprocess_dir=str(tmp_path) if multiprocess else None)
    backend = PrometheusMetricsBackend(config)
    stop = threading.Event()

    def hammer(worker: int) -> None:
        # New series (write locks, file growth), summaries (series locks), scrapes (read locks).
        n = 0
        while not stop.is_set():
            n += 1
            backend.increment("busy_total", labels={"n": f"{worker}-{n % 40}"})
            backend.summary("size_bytes", float(n % 100))
            if n % 2000 == 0:
                backend.export()

    threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(2)]
    for thread in threads:
        thread.start()
    outcomes = []
    try:
        for _ in range(TRIALS):
            time.sleep(0.001)
            pid = os.fork()
            if pid == 0:
                child_uses_metrics(backend)
            outcomes.append(wait_child(pid, timeout=20))
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert outcomes == [0] * TRIALS


@pytest.mark.timeout(60)
@pytest.mark.only_core("pure")
def test_pure_fork_waits_for_a_held_lock_instead_of_inheriting_it() -> None:
    """Holds the pure core's lock in a thread while forking: the fork waits for the holder,
    and the child starts with the lock free. (The native core never exposes its locks.)"""
    from truthound.stores.observability._pure import metrics as pure

    backend = PrometheusMetricsBackend(prefix="app")
    held = threading.Event()

    def hold() -> None:
        with pure._LOCK:
            held.set()
            time.sleep(0.3)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        child_uses_metrics(backend)
    holder.join()
    assert wait_child(pid, timeout=20) == 0


@pytest.mark.timeout(60)
def test_a_child_does_not_inherit_the_endpoint_or_the_push_thread(core: str, net: object) -> None:
    backend = PrometheusMetricsBackend(prefix="app")
    port = backend.start_http_server(port=0)
    backend.start_pushing(interval_seconds=3600, job="j")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        ok = backend.http_server_port is None
        backend.close()  # returns at once: no thread of the parent is waited for
        child_port = backend.start_http_server(port=0)
        ok = ok and child_port != port
        backend.stop_http_server()
        os.write(write_fd, b"1" if ok else b"0")
        os._exit(0)
    os.close(write_fd)
    assert wait_child(pid, timeout=20) == 0
    assert os.read(read_fd, 1) == b"1"
    os.close(read_fd)
    assert backend.http_server_port == port  # the parent still serves
    backend.stop_pushing(final_push=False)
    backend.stop_http_server()
