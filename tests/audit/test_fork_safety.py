"""Fork safety: every audit component created in a parent works in a forked child at once.

Pre-fork servers (gunicorn ``--preload``, uWSGI) and ``multiprocessing`` create the backends in
one process and log from its children. After ``fork()`` only the forking thread exists in the
child: writer threads, timers and delivery workers are gone, and a lock another thread held
stays held. These tests fork while the parent is busy (and while other threads hold each lock)
and check, with readers independent of the library, that every event is written exactly once,
that the parent's queued events are not duplicated by a child, and that a tamper-evident log
written by a parent and its children verifies clean.
"""

from __future__ import annotations

import fcntl
import gzip
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from forking import (
    KeepAliveOtlpReceiver,
    check_chain,
    finish_child,
    free_port,
    held,
    http_status,
    records,
    run_forked,
    start_child,
    wait_until,
)

from truthound.stores.observability.audit import (
    AsyncAuditBackend,
    AuditLogger,
    CompositeAuditBackend,
    InMemoryAuditBackend,
    JsonAuditBackend,
    OtlpAuditBackend,
    verify,
)
from truthound.stores.observability.metrics import InMemoryMetricsBackend

# Python 3.12+ warns that forking a multi-threaded process may deadlock the child: that is
# exactly what these tests show does not happen.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded:DeprecationWarning"
)

KEY = b"fork-safety-test-key-0123456789abcdef"
TRIALS = 50
CHILD_EVENTS = 20


def item_counts(directory: Path) -> Counter[str]:
    return Counter(str(record.get("item_id")) for record in records(directory))


def assert_clean(directory: Path) -> None:
    """The chain recomputes independently, and ``verify`` reports nothing."""
    check_chain(directory, KEY)
    report = verify(directory, KEY)
    assert report.ok, [str(finding) for finding in report.findings]


def chained_json(directory: Path, **options: Any) -> JsonAuditBackend:
    settings: dict[str, Any] = {
        "directory": directory,
        "rotate_daily": False,
        "durability": "none",
        "integrity_key": KEY,
        **options,
    }
    return JsonAuditBackend(**settings)


@pytest.mark.parametrize(
    "trials",
    [
        pytest.param(TRIALS, marks=pytest.mark.timeout(120)),
        pytest.param(10 * TRIALS, marks=[pytest.mark.slow, pytest.mark.timeout(600)]),
    ],
)
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_children_log_at_once_while_the_parent_writes(
    core: str, mode: str, trials: int, tmp_path: Path
) -> None:
    """Two threads log continuously (async: through the queue and its writer thread; sync:
    straight into the file, rotating and gzipping segments, with a checkpoint timer running)
    while the process forks 50 times (500 in the slow variant); each child logs, flushes and
    (every other one) closes."""
    inner = chained_json(
        tmp_path, max_file_size_mb=0.02, compress=True, checkpoint_interval_seconds=0.05
    )
    backend: Any = (
        AsyncAuditBackend(inner, flush_interval_seconds=0.005) if mode == "async" else inner
    )
    logger = AuditLogger(backend, store_type="fork")
    stop = threading.Event()
    logged = [0, 0]

    def hammer(worker: int) -> None:
        n = 0
        while not stop.is_set():
            logger.log_create(f"parent-{worker}-{n}")
            n += 1
            if n % 25 == 0:
                if mode == "async":
                    assert backend.flush(timeout=30)
                time.sleep(0.0005)
        logged[worker] = n

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        for trial in range(trials):
            time.sleep(0.002)

            def child(trial: int = trial) -> None:
                for i in range(CHILD_EVENTS):
                    logger.log_create(f"child-{trial}-{i}")
                if mode == "async":
                    assert backend.flush(timeout=10), backend.stats()
                    # The child's own counters: the parent's events in flight are not its own.
                    assert backend.stats() == {
                        "enqueued": CHILD_EVENTS,
                        "dropped": 0,
                        "persisted": CHILD_EVENTS,
                        "failed": 0,
                        "pending": 0,
                    }
                assert inner.written_events == CHILD_EVENTS
                if trial % 2:
                    backend.close()

            status, error = run_forked(child)
            assert status == 0, error
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    backend.close()
    counts = item_counts(tmp_path)
    expected = {f"parent-{w}-{n}" for w in (0, 1) for n in range(logged[w])}
    expected |= {f"child-{t}-{i}" for t in range(trials) for i in range(CHILD_EVENTS)}
    assert set(counts) == expected
    assert [item for item, n in counts.items() if n != 1] == [], "every event exactly once"
    assert_clean(tmp_path)


@pytest.mark.timeout(60)
def test_the_parents_queued_events_are_written_once_by_the_parent(
    core: str, tmp_path: Path
) -> None:
    """The parent's writer is blocked inside a slow backend with events queued behind it when
    the process forks: the child writes only its own events; the parent writes its own."""
    gate = threading.Event()

    class Slow(InMemoryAuditBackend):
        def log(self, event: Any) -> bool:
            gate.wait(30)
            return super().log(event)

    inner = Slow()
    backend = AsyncAuditBackend(inner)
    logger = AuditLogger(backend, store_type="fork")
    for i in range(10):
        logger.log_create(f"parent-{i}")
    assert backend.pending_events == 10

    def child() -> None:
        gate.set()  # the child's own copy of the gate: its writer is not slowed down
        logger.log_create("child-0")
        assert backend.flush(timeout=10)
        mine = [e.item_id for e in inner.get_all()]
        assert mine == ["child-0"], mine
        assert backend.stats()["persisted"] == 1

    status, error = run_forked(child)
    gate.set()
    assert status == 0, error
    assert backend.flush(timeout=10)
    assert [e.item_id for e in inner.get_all()] == [f"parent-{i}" for i in range(10)]
    backend.close()


@pytest.mark.timeout(60)
def test_a_compression_cut_short_by_an_exit_loses_and_duplicates_nothing(
    core: str, tmp_path: Path
) -> None:
    """A worker that exits without closing its sink (a recycled pre-fork worker, a
    multiprocessing child) can leave a rotated segment both plain and half-compressed. Queries
    read it once; the next writer to open the log compresses it again from the plain copy."""
    backend = JsonAuditBackend(
        directory=tmp_path, rotate_daily=False, max_file_size_mb=0.002, compress=True
    )
    logger = AuditLogger(backend, store_type="fork")
    for i in range(40):
        logger.log_create(f"event-{i}")
    backend.close()
    compressed = sorted(tmp_path.glob("audit.*.jsonl.gz"))
    assert compressed, "size rotation produced compressed segments"
    victim = compressed[0]
    plain = victim.with_suffix("")
    content = gzip.decompress(victim.read_bytes())
    plain.write_bytes(content)  # the plain file was not removed yet ...
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # ... nor the .gz synced
    reopened = JsonAuditBackend(directory=tmp_path, rotate_daily=False, compress=True)
    assert sorted(e.item_id for e in reopened.query(limit=None)) == sorted(
        f"event-{i}" for i in range(40)
    )
    reopened.close()
    assert not plain.exists()
    assert gzip.decompress(victim.read_bytes()) == content


def _memory(_: Path) -> Any:
    return InMemoryAuditBackend()


def _composite(_: Path) -> Any:
    return CompositeAuditBackend(
        [InMemoryAuditBackend(), InMemoryAuditBackend()], timeout_seconds=5
    )


def _async_with_metrics(_: Path) -> Any:
    return AsyncAuditBackend(
        InMemoryAuditBackend(),
        queue_size=1,
        overflow="drop_newest",
        metrics=InMemoryMetricsBackend(),
    )


def _otlp(_: Path) -> Any:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    return OtlpAuditBackend(exporter=InMemoryLogRecordExporter())


def _json(tmp_path: Path) -> Any:
    return chained_json(tmp_path)


def _async_json(tmp_path: Path) -> Any:
    return AsyncAuditBackend(chained_json(tmp_path))


def _use(backend: Any) -> None:
    """What a child does with a backend: log, flush, read back."""
    logger = AuditLogger(backend, store_type="fork")
    for i in range(3):
        logger.log_create(f"child-{i}")
    flushed = backend.flush()
    assert flushed is not False
    if isinstance(backend, CompositeAuditBackend):
        assert backend.timed_out_deliveries == 0, backend.last_errors
        assert backend.failed_deliveries == 0, backend.last_errors
    if isinstance(backend, OtlpAuditBackend):
        assert backend.exported_events == 3
    elif isinstance(backend, AsyncAuditBackend) and backend.overflow == "drop_newest":
        # A one-slot queue drops some of the burst: the count (and its report) is the child's.
        assert backend.dropped_events == 3 - backend.enqueued_events
    else:
        found = {e.item_id for e in backend.query(limit=None)}
        assert {"child-0", "child-1", "child-2"} <= found


# (component, the lock another thread holds at the fork, a core the case needs)
LOCK_CASES: dict[str, tuple[Callable[[Path], Any], str, str | None]] = {
    "memory": (_memory, "_lock", None),
    "composite": (_composite, "_lock", None),
    "async-metrics": (_async_with_metrics, "_metrics_lock", None),
    "otlp-buffer": (_otlp, "_lock", None),
    "otlp-export": (_otlp, "_export_lock", None),
    "pure-sink-state": (_json, "_sink._mutex", "pure"),
    "pure-sink-counters": (_json, "_sink._stats_lock", "pure"),
    "pure-queue": (_async_json, "_writer._cond", "pure"),
    "pure-queue-sink": (_async_json, "backend._sink._mutex", "pure"),
}


def _attribute(obj: Any, path: str) -> Any:
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", sorted(LOCK_CASES))
def test_fork_while_another_thread_holds_a_lock(core: str, case: str, tmp_path: Path) -> None:
    """A thread holds one of the component's locks across the fork: the child uses the
    component at once (three trials). The native core's own locks are never reachable from
    Python; they are covered by the busy-parent test above and by `cargo test`."""
    build, lock_path, needs = LOCK_CASES[case]
    if needs is not None and core != needs:
        pytest.skip(f"a lock of the {needs} core")
    backend = build(tmp_path)
    for _ in range(3):
        with held(_attribute(backend, lock_path)):
            status, error = run_forked(lambda: _use(backend), timeout=20)
        assert status == 0, error
    backend.close()


@pytest.mark.timeout(60)
@pytest.mark.only_core("pure")
def test_a_child_never_shares_the_parents_file_lock(tmp_path: Path) -> None:
    """While a parent thread holds the log's exclusive ``flock`` (through the sink's own
    descriptor), a forked child's write waits for it instead of taking it through the inherited
    descriptor, and the child never releases it. (Pure core only: the native sink's descriptor
    is not reachable from Python; its chain test runs the same race in `cargo test`.)"""
    backend = chained_json(tmp_path)
    logger = AuditLogger(backend, store_type="fork")
    lock_fd = backend._sink._lock_fd
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    pid, pipe = start_child(lambda: logger.log_create("child"))
    time.sleep(0.2)  # a child that shared the lock would have written and released it by now
    with open(tmp_path / ".audit.jsonl.lock", "rb") as probe, pytest.raises(BlockingIOError):
        fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert "child" not in item_counts(tmp_path)
    fcntl.flock(lock_fd, fcntl.LOCK_UN)
    status, error = finish_child(pid, pipe)
    assert status == 0, error
    logger.log_create("parent")
    backend.close()
    assert item_counts(tmp_path) == Counter({"child": 1, "parent": 1})
    assert_clean(tmp_path)


@pytest.mark.timeout(60)
def test_otlp_children_export_their_own_events_on_their_own_connection(core: str) -> None:
    """The parent exported once (a pooled keep-alive connection) and buffered one more event
    when the process forks: the child exports only its event, on a connection of its own."""
    receiver = KeepAliveOtlpReceiver()
    try:
        backend = OtlpAuditBackend(endpoint=receiver.endpoint, max_batch_size=100)
        logger = AuditLogger(backend, store_type="fork")
        logger.log_create("parent-0")
        assert backend.flush()
        logger.log_create("parent-1")  # buffered in the parent at the fork

        def child() -> None:
            logger.log_create("child")
            assert backend.flush()
            assert backend.exported_events == 1

        status, error = run_forked(child)
        assert status == 0, error
        assert backend.flush()
        backend.close()
        assert receiver.names() == ["child", "parent-0", "parent-1"]
        assert receiver.ports_of("child") != receiver.ports_of("parent-0")
    finally:
        receiver.close()


def _mp_worker(directory: str, worker: int) -> None:
    """A multiprocessing child: logs through the backend inherited from the parent and returns
    without flushing or closing it (its exit drains the queue)."""
    logger = AuditLogger(_MP_BACKEND[0], store_type="mp")
    for i in range(CHILD_EVENTS):
        logger.log_create(f"worker-{worker}-{i}")


_MP_BACKEND: list[Any] = []


@pytest.mark.timeout(60)
def test_multiprocessing_fork_children_lose_nothing(core: str, tmp_path: Path) -> None:
    """``multiprocessing`` children (fork context) leave through ``os._exit`` without running
    ``atexit``: their queued events are still written, once, and the log verifies clean."""
    backend = AsyncAuditBackend(chained_json(tmp_path), flush_interval_seconds=60)
    _MP_BACKEND[:] = [backend]
    logger = AuditLogger(backend, store_type="mp")
    logger.log_create("parent-before")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_mp_worker, args=(str(tmp_path), w)) for w in range(4)]
    for worker in workers:
        worker.start()
    with context.Pool(2) as pool:
        pool.starmap(_mp_worker, [(str(tmp_path), w) for w in range(4, 8)])
        pool.close()
        pool.join()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    logger.log_create("parent-after")
    backend.close()
    _MP_BACKEND.clear()
    counts = item_counts(tmp_path)
    expected = {f"worker-{w}-{i}" for w in range(8) for i in range(CHILD_EVENTS)}
    assert set(counts) == expected | {"parent-before", "parent-after"}, set(counts) ^ expected
    assert set(counts.values()) == {1}
    assert_clean(tmp_path)


GUNICORN_APP = """
import os

from truthound.stores.observability.audit import AsyncAuditBackend, AuditLogger, JsonAuditBackend

# Created in the master (--preload), before the workers fork; used by every worker.
backend = AsyncAuditBackend(
    JsonAuditBackend(
        directory=os.environ["AUDIT_DIR"],
        rotate_daily=False,
        durability="none",
        integrity_key=os.environ["AUDIT_KEY"],
    )
)
audit = AuditLogger(backend, store_type="gunicorn")
audit.log_create("preload")  # the master writes too


def app(environ, start_response):
    audit.log_read(environ["QUERY_STRING"], user_id=str(os.getpid()))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""

GUNICORN_CONFIG = """
bind = "127.0.0.1:{port}"
workers = 3
preload_app = True
max_requests = 25  # recycle each worker after ~25 requests
max_requests_jitter = 5
graceful_timeout = 20
"""

REQUESTS = 150


@pytest.mark.timeout(120)
def test_gunicorn_preload_workers_audit_every_request_once(core: str, tmp_path: Path) -> None:
    """A real gunicorn with ``--preload`` (the backend is created in the master) and recycled
    workers audits every request exactly once, and the tamper-evident log verifies clean."""
    port = free_port()
    (tmp_path / "app.py").write_text(textwrap.dedent(GUNICORN_APP))
    (tmp_path / "gunicorn.conf.py").write_text(GUNICORN_CONFIG.format(port=port))
    audit_dir = tmp_path / "audit"
    env = {
        **os.environ,
        "TRUTHOUND_OBSERVABILITY_CORE": core,
        "AUDIT_DIR": str(audit_dir),
        "AUDIT_KEY": KEY.decode(),
    }
    with (tmp_path / "gunicorn.log").open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: http_status(f"{base}/?ready") == 200, 60, "gunicorn to serve")
            for i in range(REQUESTS):
                assert http_status(f"{base}/?request-{i}") == 200
        finally:
            server.terminate()
            assert server.wait(timeout=60) == 0
    output = (tmp_path / "gunicorn.log").read_text()
    assert output.count("Booting worker") > 3, "max_requests recycled workers"
    found = records(audit_dir)
    counts = Counter(str(record.get("item_id")) for record in found)
    for i in range(REQUESTS):
        assert counts[f"request-{i}"] == 1, f"request-{i}"
    assert len({record["user_id"] for record in found if "user_id" in record}) > 3
    assert_clean(audit_dir)
