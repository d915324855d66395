"""AuditLogger: the documented operations, the existing API, correlation with the current span."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from truthound.stores.observability import _context
from truthound.stores.observability.audit import (
    AsyncAuditBackend,
    AuditEventType,
    AuditLogger,
    AuditStatus,
    DataRedactor,
    FileAuditBackend,
    InMemoryAuditBackend,
    JsonAuditBackend,
)
from truthound.stores.observability.protocols import ObservabilityContext


@dataclass(frozen=True)
class FakeSpan:
    """A minimal ``_context.SpanIdentity`` (tracing is another pillar)."""

    trace_id: str = "4bf92f3577b34da6a3ce929d0e0e4736"
    span_id: str = "00f067aa0ba902b7"
    is_sampled: bool = True


def backends(tmp_path: Path) -> dict[str, Any]:
    """The same logger behaviour must hold on the object path and on the core fast paths."""
    return {
        "memory": InMemoryAuditBackend(),
        "json": JsonAuditBackend(directory=tmp_path / "json"),
        "file": FileAuditBackend(file_path=tmp_path / "file" / "audit.log"),
        "async-json": AsyncAuditBackend(JsonAuditBackend(directory=tmp_path / "async")),
        "async-memory": AsyncAuditBackend(InMemoryAuditBackend()),
    }


@pytest.fixture(params=["memory", "json", "file", "async-json", "async-memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    made = backends(tmp_path)
    yield made[request.param]
    for b in made.values():
        b.close()


def test_the_specification_example(backend: Any) -> None:
    logger = AuditLogger(
        backend=backend,
        store_type="s3",
        store_id="my-bucket",
        redactor=DataRedactor(fields_to_redact=["password"]),
    )
    logger.log_create("run-123", user_id="admin")
    logger.log_read("run-123", user_id="admin")
    logger.log_update("run-123", user_id="admin")
    logger.log_delete("run-123", user_id="admin")
    logger.log_query({"status": "failure"}, user_id="admin")
    logger.log_event(
        event_type=AuditEventType.REPLICATE,
        status=AuditStatus.SUCCESS,
        item_id="run-123",
        duration_ms=150.0,
        metadata={"target_region": "eu-west-1"},
    )
    logger.log_error(
        event_type=AuditEventType.CREATE,
        error_message="Connection timeout",
        item_id="run-123",
    )
    events = list(reversed(backend.query(limit=None)))
    assert [e.event_type.value for e in events] == [
        "create", "read", "update", "delete", "query", "replicate", "create",
    ]  # fmt: skip
    assert all((e.store_type, e.store_id) == ("s3", "my-bucket") for e in events)
    assert events[0].item_id == "run-123"
    assert events[0].user_id == "admin"
    assert events[4].metadata == {"filters": {"status": "failure"}}
    assert events[5].duration_ms == 150.0
    assert events[5].metadata == {"target_region": "eu-west-1"}
    assert events[6].status is AuditStatus.FAILURE
    assert events[6].error_message == "Connection timeout"
    assert len({e.event_id for e in events}) == 7


def test_the_redactor_applies_on_every_path(backend: Any) -> None:
    logger = AuditLogger(
        backend, redactor=DataRedactor(fields_to_redact=["password"], patterns=[r"s3cr3t\w*"])
    )
    logger.log_create(
        "item-s3cr3tA", user_id="u",
        metadata={"password": 42, "note": ["s3cr3tB"], "s3cr3tC": 1},
        error_message="bad s3cr3tD", user_agent="ua s3cr3tE",
    )  # fmt: skip
    [event] = backend.query()
    assert "s3cr3t" not in repr(event.to_dict())
    assert event.metadata["password"] == "[REDACTED]"


def test_events_are_stamped_with_the_current_span(backend: Any) -> None:
    logger = AuditLogger(backend, store_type="s3", store_id="b")
    token = _context.current_span.set(FakeSpan())
    try:
        logger.log_read("r1")
        logger.log_read("r2", trace_id="explicit-trace", span_id="explicit-span")
        with logger.operation(AuditEventType.UPDATE, "update", resource_id="r3"):
            pass
    finally:
        _context.current_span.reset(token)
    logger.log_read("r4")
    found = {e.item_id: (e.trace_id, e.span_id) for e in backend.query(limit=None)}
    assert found["r1"] == (FakeSpan.trace_id, FakeSpan.span_id)
    assert found["r2"] == ("explicit-trace", "explicit-span")
    assert found["r3"] == (FakeSpan.trace_id, FakeSpan.span_id)
    assert found["r4"] == (None, None)


def test_operation_context_manager_times_and_marks_the_outcome() -> None:
    backend = InMemoryAuditBackend()
    logger = AuditLogger(backend, store_type="fs", store_id="s1")
    context = ObservabilityContext(correlation_id="c1", user_id="u1", source_ip="1.1.1.1")
    with logger.operation(
        AuditEventType.CREATE, "save", "run", "r1", context=context, size=3
    ) as ev:
        ev.metadata["extra"] = True
    with pytest.raises(KeyError), logger.operation(AuditEventType.DELETE, "delete", "run", "r2"):
        raise KeyError("r2")
    failed, ok = backend.query()
    assert ok.status is AuditStatus.SUCCESS
    assert ok.duration_ms is not None
    assert ok.duration_ms > 0
    assert (ok.correlation_id, ok.user_id, ok.source_ip) == ("c1", "u1", "1.1.1.1")
    assert ok.metadata == {"size": 3, "extra": True}
    assert (ok.resource_type, ok.resource_id, ok.operation) == ("run", "r1", "save")
    assert failed.status is AuditStatus.FAILURE
    assert (failed.error_type, failed.error_message) == ("KeyError", "'r2'")


def test_existing_log_event_signature_and_defaults() -> None:
    backend = InMemoryAuditBackend()
    logger = AuditLogger(backend)
    assert logger.store_type == "unknown"
    assert logger.store_id == ""
    logger.log_event(
        AuditEventType.SYNC, "sync", AuditStatus.PARTIAL, resource_id="r", tenant_id="t"
    )
    [event] = backend.query()
    assert (event.operation, event.status, event.item_id, event.tenant_id) == (
        "sync", AuditStatus.PARTIAL, "r", "t",
    )  # fmt: skip


def test_fast_path_writes_the_same_record_shape(tmp_path: Path) -> None:
    backend = JsonAuditBackend(directory=tmp_path)
    AuditLogger(backend, store_type="s3", store_id="b").log_create(
        "run-1", user_id="admin", duration_ms=1.5, session_id="s", ip_address="10.0.0.1"
    )
    record = json.loads(Path(backend.active_path).read_text())
    assert list(record) == [
        "event_id", "event_type", "timestamp", "status", "store_type", "store_id", "operation",
        "item_id", "user_id", "session_id", "ip_address", "duration_ms",
    ]  # fmt: skip


def test_level_filter_applies_on_the_fast_path(tmp_path: Path) -> None:
    from truthound.stores.observability.config import AuditConfig, AuditLogLevel

    backend = JsonAuditBackend(
        AuditConfig(level=AuditLogLevel.MINIMAL), file_path=tmp_path / "a.jsonl"
    )
    logger = AuditLogger(backend)
    logger.log_read("r")
    logger.log_create("c")
    assert [e.item_id for e in backend.query()] == ["c"]
    assert backend.filtered_events == 1


def test_status_is_validated_and_explicit_ids_are_kept_on_every_path(backend: Any) -> None:
    from datetime import UTC, datetime

    from truthound.stores.observability.errors import InvalidArgumentError

    logger = AuditLogger(backend)
    with pytest.raises(InvalidArgumentError, match="'bogus'"):
        logger.log_create("r", status="bogus")
    when = datetime(2024, 3, 1, tzinfo=UTC)
    logger.log_event(AuditEventType.MIGRATE, event_id="fixed-id", timestamp=when, item_id="r")
    [event] = backend.query()
    assert (event.event_id, event.timestamp, event.item_id) == ("fixed-id", when, "r")


def test_store_id_defaults_to_empty_not_a_random_id() -> None:
    """A generated id would change at every restart: the same store would look like another."""
    assert AuditLogger().store_id == ""
    assert AuditLogger(store_id=None).store_id == AuditLogger(store_id=None).store_id == ""
    backend = InMemoryAuditBackend()
    AuditLogger(backend, store_type="s3").log_create("r")
    assert backend.query()[0].store_id == ""


# ---- a backend that cannot record never breaks the application (outside fail-closed mode) ----


def full_disk_path(tmp_path: Path, name: str) -> Path:
    """A path whose writes fail with ENOSPC, like a full disk."""
    path = tmp_path / name
    path.symlink_to("/dev/full")
    return path


class RaisingBackend:
    def log(self, event: Any) -> bool:
        raise RuntimeError("backend exploded")


class RefusingBackend:
    def log(self, event: Any) -> bool:
        return False


def failing_backend(kind: str, tmp_path: Path) -> Any:
    if kind == "json":
        return JsonAuditBackend(file_path=full_disk_path(tmp_path, "a.jsonl"))
    if kind == "file":
        return FileAuditBackend(file_path=full_disk_path(tmp_path, "a.log"))
    if kind == "closed-async":
        closed = AsyncAuditBackend(JsonAuditBackend(directory=tmp_path))
        closed.close()
        return closed
    return RaisingBackend() if kind == "raising" else RefusingBackend()


@pytest.mark.parametrize("kind", ["json", "file", "closed-async", "raising", "refusing"])
def test_an_event_the_backend_cannot_record_is_counted_and_logged_never_raised(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = failing_backend(kind, tmp_path)
    logger = AuditLogger(backend, store_type="s3", store_id="b")
    with caplog.at_level("WARNING", logger="truthound.stores.observability.audit.logger"):
        logger.log_create("r1", user_id="u")  # the core fast path where there is one
        logger.log_event(AuditEventType.DELETE, "delete", event_id="fixed")  # the object path
        with logger.operation(AuditEventType.UPDATE, "update"):
            pass
    assert logger.unrecorded_events == 3
    if kind in ("json", "file"):
        assert backend.failed_events == 3
    # Rate-limited: one warning for the three, naming the store, the operation and the cause.
    [record] = caplog.records
    assert "'s3/b: create'" in record.getMessage()
    if kind in ("json", "file"):
        assert "AuditIOError" in record.getMessage()
        assert "No space left on device" in record.getMessage()


def test_the_warning_reports_how_many_events_were_not_recorded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from truthound.stores.observability.audit import logger as logger_module

    logger = AuditLogger(RaisingBackend())
    with caplog.at_level("WARNING", logger=logger_module.__name__):
        logger.log_read("a")
        logger.log_read("b")  # within the interval: counted, not logged
        monkeypatch.setattr(logger_module, "WARNING_INTERVAL_SECONDS", 0.0)
        logger._next_warning = 0.0
        logger.log_read("c")
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split("': ", 1)[1].split(" ", 1)[0] for m in messages] == ["1", "2"]
    assert all("(last cause: RuntimeError: backend exploded)" in m for m in messages)
    assert logger.unrecorded_events == 3


def test_fail_closed_still_raises_for_an_event_that_was_not_written(tmp_path: Path) -> None:
    from truthound.stores.observability.errors import AuditUnavailableError

    backend = JsonAuditBackend(file_path=full_disk_path(tmp_path, "a.jsonl"))
    logger = AuditLogger(backend, store_type="s3", store_id="b", fail_closed=True)
    with pytest.raises(AuditUnavailableError, match="No space left on device"):
        logger.log_create("r")
    assert logger.unrecorded_events == 1
    assert backend.failed_events == 1


def test_bad_arguments_still_raise_and_reach_no_backend(backend: Any) -> None:
    """Invalid input is the caller's bug: it raises before anything is delivered or counted."""
    from truthound.stores.observability.errors import InvalidArgumentError

    logger = AuditLogger(backend)
    with pytest.raises(InvalidArgumentError, match="duration_ms"):
        logger.log_create("r", duration_ms="5")
    with pytest.raises(InvalidArgumentError, match="event_type"):
        logger.log_event("bogus")
    assert logger.unrecorded_events == 0
    backend.flush()
    assert backend.query() == []
