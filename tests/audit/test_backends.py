"""The memory, file, JSON, composite and async backends."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from truthound.stores.observability.audit import (
    AsyncAuditBackend,
    AuditEvent,
    AuditEventType,
    AuditStatus,
    CompositeAuditBackend,
    FileAuditBackend,
    InMemoryAuditBackend,
    JsonAuditBackend,
)
from truthound.stores.observability.config import AuditConfig, AuditLogLevel
from truthound.stores.observability.errors import AuditClosedError, InvalidArgumentError
from truthound.stores.observability.protocols import AuditBackend


def at(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 6, day, hour, tzinfo=UTC)


def sample_events() -> list[AuditEvent]:
    return [
        AuditEvent(event_id="e1", event_type=AuditEventType.CREATE, timestamp=at(1), user_id="u1",
                   item_id="r1"),
        AuditEvent(event_id="e2", event_type=AuditEventType.READ, timestamp=at(2), user_id="u2",
                   item_id="r1"),
        AuditEvent(event_id="e3", event_type=AuditEventType.READ, timestamp=at(3), user_id="u1",
                   item_id="r2"),
        AuditEvent(event_id="e4", event_type=AuditEventType.DELETE, timestamp=at(4), user_id="u1",
                   item_id="r2"),
    ]  # fmt: skip


def ids(events: list[AuditEvent]) -> list[str]:
    return [e.event_id for e in events]


@pytest.fixture(params=["memory", "file", "json"])
def queryable(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    kind = request.param
    if kind == "memory":
        return InMemoryAuditBackend(max_events=100)
    if kind == "file":
        return FileAuditBackend(file_path=tmp_path / "audit.log")
    return JsonAuditBackend(directory=tmp_path / "audit", file_prefix="audit")


def test_every_backend_satisfies_the_protocol(queryable: Any) -> None:
    assert isinstance(queryable, AuditBackend)


def test_query_filters_newest_first_with_inclusive_bounds(queryable: Any) -> None:
    for event in sample_events():
        queryable.log(event)
    assert ids(queryable.query()) == ["e4", "e3", "e2", "e1"]
    assert ids(queryable.query(event_type=AuditEventType.READ)) == ["e3", "e2"]
    assert ids(queryable.query(event_type="read", limit=1)) == ["e3"]
    # Inclusive bounds; naive datetimes are UTC.
    assert ids(queryable.query(start_time=datetime(2024, 6, 2), end_time=at(3))) == ["e3", "e2"]
    assert ids(queryable.query(user_id="u1", resource_id="r2")) == ["e4", "e3"]
    assert ids(queryable.query(item_id="r1")) == ["e2", "e1"]
    assert queryable.query(start_time=at(5)) == []
    assert queryable.query()[0] == sample_events()[3]


def test_in_memory_spec_example_and_ring_eviction() -> None:
    backend = InMemoryAuditBackend(max_events=3)
    for event in sample_events():
        backend.log(event)
    assert ids(backend.get_all()) == ["e2", "e3", "e4"]
    assert backend.evicted_events == 1
    events = backend.query(
        event_type=AuditEventType.READ,
        start_time=datetime(2024, 1, 1),
        end_time=datetime(2024, 12, 31),
        limit=100,
    )
    assert ids(events) == ["e3", "e2"]
    assert ids(backend.events) == ids(backend.get_all())
    backend.clear()
    assert backend.get_all() == []


def test_in_memory_keeps_its_own_copy() -> None:
    backend = InMemoryAuditBackend()
    event = AuditEvent(metadata={"a": 1})
    backend.log(event)
    event.metadata["a"] = 2
    assert backend.get_all()[0].metadata == {"a": 1}


def test_config_first_constructors_apply_level_and_redaction(tmp_path: Path) -> None:
    config = AuditConfig(level=AuditLogLevel.MINIMAL, sensitive_fields=["secret"])
    for backend in (
        InMemoryAuditBackend(config),
        JsonAuditBackend(config, file_path=tmp_path / "x.jsonl"),
        FileAuditBackend(config, file_path=tmp_path / "x.log"),
    ):
        backend.log(AuditEvent(event_type=AuditEventType.READ))  # not recorded at MINIMAL
        backend.log(AuditEvent(event_type=AuditEventType.ACCESS_DENIED))  # always recorded
        backend.log(AuditEvent(event_type="create", metadata={"my_secret": 1, "m": "x@y.com"}))
        events = backend.query()
        assert [e.event_type for e in events] == ["create", "access_denied"]
        assert events[0].metadata == {"my_secret": "[REDACTED]", "m": "[REDACTED]"}
        assert backend.filtered_events == 1


def test_file_backend_spec_example_readable_lines(tmp_path: Path) -> None:
    path = tmp_path / ".truthound" / "audit.log"
    backend = FileAuditBackend(file_path=str(path), max_file_size_mb=100, max_files=10)
    backend.log(
        AuditEvent(
            event_type=AuditEventType.CREATE, store_type="s3", operation="save", item_id="run-1",
            user_id="admin", correlation_id="c-1", duration_ms=12.345, timestamp=at(1),
        )
    )  # fmt: skip
    line = path.read_text()
    prefix, record = line.rstrip("\n").split("\t", 1)
    assert prefix == (
        "2024-06-01T00:00:00.000000+00:00 [CREATE] [success] store=s3 store_id=N/A op=save "
        "resource=run-1 user=admin correlation_id=c-1 duration_ms=12.35"
    )
    assert json.loads(record)["item_id"] == "run-1"
    assert backend.query()[0].duration_ms == 12.345


def test_file_backend_rotates_by_size_and_keeps_max_files(tmp_path: Path) -> None:
    backend = FileAuditBackend(
        file_path=tmp_path / "audit.log", max_file_size_mb=0.002, max_files=3
    )
    for i in range(100):
        backend.log(AuditEvent(event_id=f"e{i:03d}", timestamp=at(1) + timedelta(seconds=i)))
    backend.close()
    segments = backend.segments()
    assert len(segments) == 3
    assert segments[-1] == str(tmp_path / "audit.log")
    assert backend.rotations >= 10
    kept = backend.query(limit=None)
    assert ids(kept)[0] == "e099"
    assert len(kept) == sum(len(Path(s).read_text().splitlines()) for s in segments)


def test_json_backend_names_files_by_prefix_and_utc_day(tmp_path: Path) -> None:
    backend = JsonAuditBackend(directory=tmp_path, file_prefix="trail", rotate_daily=True)
    backend.log(AuditEvent(event_id="today"))
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert Path(backend.active_path).name == f"trail-{today}.jsonl"
    backend._sink.set_clock_offset(86400)
    backend.log(AuditEvent(event_id="tomorrow"))
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert Path(backend.active_path).name == f"trail-{tomorrow}.jsonl"
    assert sorted(p.name for p in tmp_path.glob("trail-*")) == [
        f"trail-{today}.jsonl", f"trail-{tomorrow}.jsonl",
    ]  # fmt: skip
    assert {e.event_id for e in backend.query()} == {"today", "tomorrow"}


def test_json_backend_compresses_closed_files_and_queries_them(tmp_path: Path) -> None:
    older = tmp_path / "audit-2024-06-01.jsonl"
    older.write_text(
        json.dumps({"event_id": "old", "event_type": "read", "status": "success",
                    "timestamp": "2024-06-01T10:00:00+00:00"}) + "\n"
    )  # fmt: skip
    backend = JsonAuditBackend(directory=tmp_path, compress=True, max_file_size_mb=0.001)
    for i in range(20):
        backend.log(AuditEvent(event_id=f"n{i}", event_type="create"))
    backend.close()  # waits for background compression
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert "audit-2024-06-01.jsonl.gz" in names
    assert not older.exists()
    assert backend.compressed_segments >= 2
    with gzip.open(tmp_path / "audit-2024-06-01.jsonl.gz", "rt") as handle:
        assert json.loads(handle.readline())["event_id"] == "old"
    found = backend.query(limit=None)
    assert len(found) == 21
    assert found[-1].event_id == "old"
    assert backend.query(event_type="read")[0].event_id == "old"


def test_json_backend_existing_signature(tmp_path: Path) -> None:
    backend = JsonAuditBackend(AuditConfig(batch_size=10), file_path=tmp_path / "a.jsonl")
    backend.log(AuditEvent(event_id="x"))
    assert (tmp_path / "a.jsonl").read_text().count("\n") == 1  # written at once, not buffered
    assert backend.file_path == tmp_path / "a.jsonl"


def test_composite_gives_each_backend_its_own_copy_and_survives_failures(tmp_path: Path) -> None:
    class Failing:
        def log(self, event: AuditEvent) -> None:
            raise RuntimeError("disk on fire")

    class Mutating(InMemoryAuditBackend):
        def log(self, event: AuditEvent) -> None:
            event.metadata["touched"] = True
            super().log(event)

    first, last = Mutating(max_events=1000), InMemoryAuditBackend(max_events=1000)
    backend = CompositeAuditBackend(
        backends=[first, Failing(), FileAuditBackend(file_path=tmp_path / "audit.log"), last]
    )
    event = AuditEvent(metadata={"k": 1})
    backend.log(event)
    backend.log(AuditEvent())
    assert event.metadata == {"k": 1}
    assert first.get_all()[0].metadata == {"k": 1, "touched": True}
    assert last.get_all()[0].metadata == {"k": 1}
    assert backend.failed_deliveries == 2
    assert "disk on fire" in backend.last_errors[1]
    assert len(backend.backends[2].query()) == 2
    assert len(backend.query()) == 2


def test_async_spec_example_delivers_to_a_python_backend() -> None:
    inner = InMemoryAuditBackend()
    backend = AsyncAuditBackend(backend=inner, queue_size=1000, flush_interval_seconds=5.0)
    for i in range(500):
        backend.log(AuditEvent(event_id=str(i)))
    assert backend.flush() is True
    assert len(inner.get_all()) == 500
    assert backend.stats() == {"enqueued": 500, "dropped": 0, "persisted": 500, "failed": 0,
                               "pending": 0}  # fmt: skip
    backend.close()
    with pytest.raises(AuditClosedError):
        backend.log(AuditEvent())


def test_async_flush_returns_only_when_earlier_events_are_written(tmp_path: Path) -> None:
    release = threading.Event()

    class Slow:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def log(self, event: AuditEvent) -> None:
            release.wait(10)
            self.seen.append(event.event_id)

    inner = Slow()
    backend = AsyncAuditBackend(inner, queue_size=10)
    backend.log(AuditEvent(event_id="a"))
    assert backend.flush(timeout=0.05) is False  # the writer is stuck in log()
    release.set()
    assert backend.flush(timeout=10) is True
    assert inner.seen == ["a"]
    backend.close()


def test_async_drop_newest_counts_exactly_and_reports_a_metric() -> None:
    gate = threading.Event()

    class Blocked:
        def log(self, event: AuditEvent) -> None:
            gate.wait(10)

    class Metrics:
        def __init__(self) -> None:
            self.calls: list[tuple[str, float, dict[str, str]]] = []

        def increment(
            self, name: str, value: float = 1, labels: dict[str, str] | None = None
        ) -> None:
            self.calls.append((name, value, labels or {}))

    metrics = Metrics()
    backend = AsyncAuditBackend(Blocked(), queue_size=5, overflow="drop_newest", metrics=metrics)
    for _ in range(100):
        backend.log(AuditEvent())
    gate.set()
    assert backend.close(timeout=10)
    assert backend.enqueued_events + backend.dropped_events == 100
    assert backend.persisted_events == backend.enqueued_events
    assert 80 <= backend.dropped_events <= 95
    assert sum(v for n, v, _ in metrics.calls if n == "audit_events_dropped_total") == (
        backend.dropped_events
    )
    assert metrics.calls[0][2] == {"backend": "Blocked"}


def test_async_block_policy_waits_then_drops_and_counts() -> None:
    gate = threading.Event()

    class Blocked:
        def log(self, event: AuditEvent) -> None:
            gate.wait(10)

    backend = AsyncAuditBackend(Blocked(), queue_size=1, block_timeout_seconds=0.01)
    for _ in range(5):
        backend.log(AuditEvent())
    assert backend.dropped_events >= 3
    gate.set()
    assert backend.close(timeout=10)
    assert backend.persisted_events == backend.enqueued_events == 5 - backend.dropped_events


def test_async_counts_events_the_backend_fails_to_record() -> None:
    class Picky:
        def log(self, event: AuditEvent) -> None:
            if event.event_id.startswith("bad"):
                raise ValueError(f"refused {event.event_id}")

    backend = AsyncAuditBackend(Picky())
    for name in ("ok1", "bad1", "ok2", "bad2"):
        backend.log(AuditEvent(event_id=name))
    backend.close()
    assert (backend.persisted_events, backend.failed_events) == (2, 2)
    assert "refused bad" in (backend.last_error or "")


def test_async_over_json_writes_natively_and_close_drains(tmp_path: Path) -> None:
    inner = JsonAuditBackend(directory=tmp_path)
    backend = AsyncAuditBackend(inner, queue_size=64)
    for i in range(1000):
        backend.log(AuditEvent(event_id=f"e{i}", timestamp=at(1) + timedelta(seconds=i)))
    backend.close()
    lines = Path(inner.active_path).read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [f"e{i}" for i in range(1000)]
    assert backend.persisted_events == 1000
    assert inner.written_events == 1000


def test_async_query_sees_everything_logged_before(tmp_path: Path) -> None:
    backend = AsyncAuditBackend(JsonAuditBackend(directory=tmp_path))
    backend.log(AuditEvent(event_id="x"))
    assert ids(backend.query()) == ["x"]
    backend.close()


def test_bad_arguments_are_rejected_by_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="max_events"):
        InMemoryAuditBackend(max_events=0)
    with pytest.raises(InvalidArgumentError, match="queue_size"):
        AsyncAuditBackend(InMemoryAuditBackend(), queue_size=0)
    with pytest.raises(InvalidArgumentError, match="overflow"):
        AsyncAuditBackend(InMemoryAuditBackend(), overflow="maybe")
    with pytest.raises(InvalidArgumentError, match="durability"):
        JsonAuditBackend(directory=tmp_path, durability="sometimes")
    with pytest.raises(InvalidArgumentError, match="max_files"):
        FileAuditBackend(file_path=tmp_path / "a.log", max_files=0)
    with pytest.raises(InvalidArgumentError, match="limit"):
        InMemoryAuditBackend().query(limit=-1)
    with pytest.raises(InvalidArgumentError, match="event_type"):
        InMemoryAuditBackend().query(event_type="nope")


def test_status_filter_not_needed_but_status_survives(tmp_path: Path) -> None:
    backend = JsonAuditBackend(directory=tmp_path)
    backend.log(AuditEvent(status=AuditStatus.DENIED, event_type=AuditEventType.ACCESS_DENIED))
    assert backend.query()[0].status is AuditStatus.DENIED
