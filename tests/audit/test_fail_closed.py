"""Fail-closed mode: an operation that cannot be audited is refused before it happens.

Real backends are made unavailable the way they fail in production (closed, directory gone,
a backend that hangs, a backend that raises); the wrapped store is a spy that counts every call,
so "never touched" is checked, not assumed.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from truthound.stores.base import StoreQuery
from truthound.stores.memory import InMemoryStore
from truthound.stores.observability.audit import (
    AsyncAuditBackend,
    AuditEvent,
    AuditEventType,
    AuditLogger,
    CompositeAuditBackend,
    InMemoryAuditBackend,
    JsonAuditBackend,
)
from truthound.stores.observability.config import (
    AuditConfig,
    MetricsConfig,
    ObservabilityConfig,
    TracingConfig,
)
from truthound.stores.observability.errors import AuditClosedError, AuditUnavailableError
from truthound.stores.observability.store import ObservabilityManager, ObservableStore

pytestmark = pytest.mark.timeout(60)


class SpyStore(InMemoryStore):
    """An in-memory store that records every call made to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def save(self, item: Any) -> str:
        self.calls.append("save")
        return super().save(item)

    def get(self, item_id: str) -> Any:
        self.calls.append("get")
        return super().get(item_id)

    def delete(self, item_id: str) -> bool:
        self.calls.append("delete")
        return super().delete(item_id)

    def query(self, query: StoreQuery) -> list[Any]:
        self.calls.append("query")
        return super().query(query)


class HangingBackend:
    """A backend whose calls block until released (a hung NFS mount, a stuck peer)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.logged = 0

    def log(self, event: AuditEvent) -> None:
        self.entered.set()
        self.release.wait(30)
        self.logged += 1

    def healthy(self) -> bool:
        self.release.wait(30)
        return True

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.release.set()


class BrokenBackend:
    """A backend that knows it cannot record, and raises if asked to."""

    def log(self, event: AuditEvent) -> None:
        raise OSError("disk on fire")

    def healthy(self) -> bool:
        return False

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def observable(backend: Any, *, fail_closed: bool = True) -> tuple[ObservableStore[Any], SpyStore]:
    store = SpyStore()
    store.initialize()
    config = ObservabilityConfig(
        audit=AuditConfig(fail_closed=fail_closed, fail_closed_timeout_seconds=0.5),
        metrics=MetricsConfig(enabled=False),
        tracing=TracingConfig(enabled=False),
    )
    manager = ObservabilityManager(config, "SpyStore", "spy", audit_backend=backend)
    return ObservableStore(store, config, manager=manager), store


def test_a_healthy_backend_lets_operations_through(tmp_path: Path) -> None:
    backend = JsonAuditBackend(directory=tmp_path, integrity_key=b"k" * 32)
    wrapped, store = observable(backend)
    item_id = wrapped.save({"id": "a", "x": 1})
    assert wrapped.get(item_id)["x"] == 1
    assert store.calls == ["save", "get"]
    assert [e.event_type for e in backend.query()] == [AuditEventType.READ, AuditEventType.CREATE]
    backend.close()


@pytest.mark.parametrize("failure", ["closed", "directory removed"])
def test_the_store_is_never_touched_when_nothing_can_record(tmp_path: Path, failure: str) -> None:
    backend = JsonAuditBackend(directory=tmp_path / "audit")
    wrapped, store = observable(backend)
    if failure == "closed":
        backend.close()
    else:
        shutil.rmtree(tmp_path / "audit")
    with pytest.raises(AuditUnavailableError, match="refused"):
        wrapped.save({"id": "a"})
    with pytest.raises(AuditUnavailableError, match="SpyStore/spy: delete"):
        wrapped.delete("a")
    assert store.calls == []
    assert wrapped.observability.audit is not None
    assert wrapped.observability.audit.refused_operations == 2


@pytest.mark.parametrize("failure", ["closed", "full disk"])
def test_without_fail_closed_a_failed_audit_write_never_fails_the_operation(
    tmp_path: Path, failure: str
) -> None:
    """The item is saved before its event is logged: raising then would make the caller retry
    (and save it twice). The lost event is counted instead, by the logger and the backend."""
    if failure == "closed":
        backend = JsonAuditBackend(directory=tmp_path)
        backend.close()
    else:
        (tmp_path / "audit.jsonl").symlink_to("/dev/full")
        backend = JsonAuditBackend(file_path=tmp_path / "audit.jsonl")
    wrapped, store = observable(backend, fail_closed=False)
    assert wrapped.save({"id": "a", "v": 1}) == "a"
    assert wrapped.get("a") == {"id": "a", "v": 1}
    assert store.calls == ["save", "get"]
    audit = wrapped.observability.audit
    assert audit is not None
    assert audit.unrecorded_events == 2
    if failure == "full disk":
        assert backend.failed_events == 2
    else:
        with pytest.raises(AuditClosedError):  # used directly, the backend still raises
            backend.log(AuditEvent())


def test_an_async_backend_over_a_dead_directory_refuses(tmp_path: Path) -> None:
    backend = AsyncAuditBackend(JsonAuditBackend(directory=tmp_path / "audit"))
    wrapped, store = observable(backend)
    wrapped.save({"id": "ok"})
    shutil.rmtree(tmp_path / "audit")
    with pytest.raises(AuditUnavailableError):
        wrapped.save({"id": "refused"})
    assert store.calls == ["save"]
    backend.close()


def test_one_healthy_backend_in_a_composite_suffices() -> None:
    memory = InMemoryAuditBackend()
    composite = CompositeAuditBackend([BrokenBackend(), memory])
    wrapped, store = observable(composite)
    wrapped.save({"id": "a"})
    assert store.calls == ["save"]
    assert len(memory.get_all()) == 1
    assert composite.failed_deliveries == 1
    # Only broken backends left: refused.
    wrapped_broken, store_broken = observable(CompositeAuditBackend([BrokenBackend()]))
    with pytest.raises(AuditUnavailableError):
        wrapped_broken.save({"id": "b"})
    assert store_broken.calls == []


def test_a_hanging_backend_is_cut_off_by_the_timeout() -> None:
    hanging = HangingBackend()
    memory = InMemoryAuditBackend()
    composite = CompositeAuditBackend([hanging, memory], timeout_seconds=0.2)
    wrapped, store = observable(composite)
    started = time.monotonic()
    for i in range(5):
        wrapped.save({"id": f"a{i}"})
    elapsed = time.monotonic() - started
    assert store.calls == ["save"] * 5
    assert len(memory.get_all()) == 5
    assert composite.timed_out_deliveries >= 5
    assert elapsed < 20  # bounded by the timeouts, not by the hang (30 s)
    hanging.release.set()
    composite.close()


def test_a_composite_of_only_hanging_backends_refuses_within_the_timeout() -> None:
    hanging = HangingBackend()
    wrapped, store = observable(CompositeAuditBackend([hanging], timeout_seconds=0.2))
    with pytest.raises(AuditUnavailableError):
        wrapped.save({"id": "a"})
    assert store.calls == []
    hanging.release.set()


def test_a_hanging_custom_backend_alone_is_cut_off_by_the_logger_timeout() -> None:
    hanging = HangingBackend()
    logger = AuditLogger(hanging, fail_closed=True, fail_closed_timeout_seconds=0.2)
    ran = []
    with pytest.raises(AuditUnavailableError), logger.operation("create", "save"):
        ran.append(True)
    assert ran == []
    hanging.release.set()


def test_log_calls_raise_when_the_event_is_not_recorded(tmp_path: Path) -> None:
    logger = AuditLogger(CompositeAuditBackend([BrokenBackend()]), fail_closed=True)
    with pytest.raises(AuditUnavailableError, match="could not be written"):
        logger.log_create("run-1")
    assert logger.unrecorded_events == 1
    hanging = HangingBackend()
    dropping = AsyncAuditBackend(
        hanging, queue_size=1, overflow="drop_newest", flush_interval_seconds=10
    )
    logger = AuditLogger(dropping, fail_closed=True)
    logger.log_event(AuditEventType.READ)  # taken by the (hung) writer thread
    assert hanging.entered.wait(10)
    logger.log_event(AuditEventType.READ)  # fills the queue
    with pytest.raises(AuditUnavailableError):
        logger.log_event(AuditEventType.READ)  # dropped: not recorded
    assert dropping.dropped_events == 1
    hanging.release.set()
    assert dropping.close(timeout=10)


def test_a_failure_inside_the_block_is_not_masked(tmp_path: Path) -> None:
    backend = JsonAuditBackend(directory=tmp_path)
    logger = AuditLogger(backend, fail_closed=True)

    def operation() -> None:
        with logger.operation("read", "get"):
            backend.close()  # the audit backend dies during the operation ...
            raise KeyError("missing")  # ... and the operation's own error still propagates

    with pytest.raises(KeyError):
        operation()


class SilentlyFailingBackend:
    """A backend that claims to be healthy, yet every write fails (what a health check cannot
    foresee: a disk that fills between the check and the write)."""

    def log(self, event: AuditEvent) -> None:
        raise OSError("No space left on device")

    def healthy(self) -> bool:
        return True


@pytest.mark.parametrize("wrapped_in_async", [False, True], ids=["sync", "async"])
def test_a_file_that_cannot_be_appended_to_refuses_before_the_store_is_touched(
    tmp_path: Path, wrapped_in_async: bool
) -> None:
    """An active file that is not a regular file (here /dev/full, writes fail with ENOSPC) is
    seen by the health check: nothing is deleted without its audit record."""
    (tmp_path / "audit.jsonl").symlink_to("/dev/full")
    json_backend = JsonAuditBackend(file_path=tmp_path / "audit.jsonl")
    backend = AsyncAuditBackend(json_backend) if wrapped_in_async else json_backend
    wrapped, store = observable(backend)
    store.save({"id": "keep-me"})
    store.calls.clear()
    with pytest.raises(AuditUnavailableError):
        wrapped.delete("keep-me")
    assert store.calls == []
    assert store.exists("keep-me")
    if wrapped_in_async:
        backend.close()


def test_after_a_failed_write_operations_are_refused_for_a_while() -> None:
    """The first operation cannot know its record will fail (it happened; the failure is
    counted). Operations right after it are refused, not silently left unaudited."""
    backend = AsyncAuditBackend(SilentlyFailingBackend())
    wrapped, store = observable(backend)
    wrapped.save({"id": "a"})
    assert not backend.flush(timeout=10)  # the record could not be written: flush says so
    assert backend.failed_events == 1
    with pytest.raises(AuditUnavailableError):
        wrapped.save({"id": "b"})
    assert store.calls == ["save"]
    backend.close()
