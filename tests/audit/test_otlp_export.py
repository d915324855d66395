"""Central export: audit events reach a real OTLP collector on loopback as log records.

The collectors decode with the official ``opentelemetry-proto`` classes (HTTP/protobuf and the
gRPC ``LogsService``); the tests compare what arrived with what was logged, and check that
redaction happened before anything left the process.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from otlp_logs import OtlpLogsGrpcReceiver, OtlpLogsHttpReceiver, wait_until

from truthound.stores.observability.audit import (
    AsyncAuditBackend,
    AuditEvent,
    AuditEventType,
    AuditLogger,
    AuditStatus,
    CompositeAuditBackend,
    InMemoryAuditBackend,
    OtlpAuditBackend,
)
from truthound.stores.observability.config import AuditConfig

pytestmark = pytest.mark.timeout(60)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
SECRET = "hunter2-do-not-export"


@pytest.fixture
def http_collector() -> Iterator[OtlpLogsHttpReceiver]:
    receiver = OtlpLogsHttpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def grpc_collector() -> Iterator[OtlpLogsGrpcReceiver]:
    receiver = OtlpLogsGrpcReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


def sample() -> AuditEvent:
    return AuditEvent(
        event_id="evt-1",
        event_type=AuditEventType.UPDATE,
        timestamp=datetime(2024, 6, 1, 12, 30, 45, 123456, tzinfo=UTC),
        status=AuditStatus.FAILURE,
        store_type="s3",
        store_id="bucket",
        item_id="run-7",
        user_id="alice",
        ip_address="192.0.2.10",
        duration_ms=12.5,
        trace_id=TRACE,
        span_id=SPAN,
        error_type="TimeoutError",
        error_message="mail ops@example.com",
        metadata={"password": SECRET, "nested": {"region": "eu", "tags": ["a", "b"]}},
    )


def check_sample(record: dict[str, Any]) -> None:
    assert record["service.name"] == "orders-store"
    assert record["scope"] == "truthound.stores.observability.audit"
    assert record["time_unix_nano"] == 1717245045123456000
    assert record["severity_text"] == "ERROR"
    assert record["severity_number"] == 17
    assert record["event_name"] == "truthound.audit.update"
    assert record["trace_id"] == TRACE
    assert record["span_id"] == SPAN
    attributes = record["attributes"]
    assert attributes["audit.event_id"] == "evt-1"
    assert attributes["audit.event_type"] == "update"
    assert attributes["audit.status"] == "failure"
    assert attributes["audit.item_id"] == "run-7"
    assert attributes["enduser.id"] == "alice"
    assert attributes["client.address"] == "192.0.2.10"
    assert attributes["error.type"] == "TimeoutError"
    assert attributes["audit.duration_ms"] == 12.5
    body = record["body"]
    assert body["metadata"]["nested"] == {"region": "eu", "tags": ["a", "b"]}
    # Redacted before export: the sensitive field and the e-mail address.
    assert body["metadata"]["password"] == "[REDACTED]"
    assert body["error_message"] == "mail [REDACTED]"


def test_events_arrive_as_otlp_log_records_over_http(
    http_collector: OtlpLogsHttpReceiver,
) -> None:
    backend = OtlpAuditBackend(endpoint=http_collector.endpoint, service_name="orders-store")
    backend.log(sample())
    for i in range(9):
        backend.log(AuditEvent(event_id=f"e{i}", user_id="bob"))
    assert backend.pending_events == 10
    assert backend.flush()
    records = http_collector.wait_for(10)
    check_sample(records[0])
    assert [r["attributes"]["audit.event_id"] for r in records[1:]] == [f"e{i}" for i in range(9)]
    assert records[1]["severity_text"] == "INFO"
    assert records[1]["trace_id"] == ""  # no ids on the event: none invented
    assert backend.exported_events == 10
    assert backend.failed_events == 0
    raw = b"".join(http_collector.bodies)
    assert SECRET.encode() not in raw
    assert b"ops@example.com" not in raw
    backend.close()


def test_events_arrive_over_grpc(grpc_collector: OtlpLogsGrpcReceiver) -> None:
    backend = OtlpAuditBackend(
        endpoint=grpc_collector.endpoint, protocol="grpc", service_name="orders-store"
    )
    backend.log(sample())
    backend.close()  # exports what is buffered
    (record,) = grpc_collector.wait_for(1)
    check_sample(record)
    assert backend.exported_events == 1


def test_full_batches_export_on_their_own(http_collector: OtlpLogsHttpReceiver) -> None:
    backend = OtlpAuditBackend(endpoint=http_collector.endpoint, max_batch_size=4)
    for i in range(10):
        backend.log(AuditEvent(event_id=f"e{i}"))
    assert len(http_collector.wait_for(8)) == 8
    assert backend.pending_events == 2
    assert http_collector.requests == 2
    backend.close()
    assert len(http_collector.wait_for(10)) == 10


def test_the_audit_logger_exports_through_an_async_backend(
    http_collector: OtlpLogsHttpReceiver,
) -> None:
    otlp = OtlpAuditBackend(AuditConfig(), endpoint=http_collector.endpoint)
    backend = AsyncAuditBackend(otlp, flush_interval_seconds=0.05)
    logger = AuditLogger(backend, store_type="s3", store_id="bucket")
    for i in range(25):
        logger.log_create(f"run-{i}", user_id="admin", metadata={"api_key": SECRET})
    records = http_collector.wait_for(25)  # the timed flush exports them
    assert {r["attributes"]["audit.item_id"] for r in records} == {f"run-{i}" for i in range(25)}
    assert all(r["body"]["metadata"]["api_key"] == "[REDACTED]" for r in records)
    assert backend.close(timeout=30)
    assert otlp.exported_events == 25


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_failed_exports_are_counted_and_never_raised() -> None:
    backend = OtlpAuditBackend(
        endpoint=f"http://127.0.0.1:{closed_port()}", timeout_seconds=1.0, max_batch_size=100
    )
    for i in range(3):
        backend.log(AuditEvent(event_id=f"e{i}"))
    assert backend.healthy()
    assert backend.flush() is False
    assert backend.failed_exports == 1
    assert backend.failed_events == 3
    assert backend.exported_events == 0
    assert backend.last_error
    assert not backend.healthy()
    backend.close()


def test_a_composite_keeps_a_local_copy_while_the_collector_is_down() -> None:
    local = InMemoryAuditBackend()
    remote = OtlpAuditBackend(endpoint=f"http://127.0.0.1:{closed_port()}", timeout_seconds=1.0)
    composite = CompositeAuditBackend([local, remote])
    logger = AuditLogger(composite, fail_closed=True)
    logger.log_create("run-1")
    composite.flush()
    assert remote.failed_events == 1
    assert composite.healthy()  # the local backend can still record
    logger.log_create("run-2")
    assert [e.item_id for e in local.get_all()] == ["run-1", "run-2"]
    composite.close()


# ---- interpreter exit: what a backend buffered is exported, or counted -----------------------

EXIT_CHILD = """
import atexit, json, sys

backend = None

def report():  # registered before the package is imported: runs after its exit handler
    print(json.dumps({"exported": backend.exported_events, "failed": backend.failed_events,
                      "pending": backend.pending_events, "last_error": backend.last_error}))

atexit.register(report)
from truthound.stores.observability.audit import AuditEvent, OtlpAuditBackend

backend = OtlpAuditBackend(endpoint=sys.argv[1], timeout_seconds=1.0, max_batch_size=512)
for i in range(100):
    backend.log(AuditEvent(event_id=f"e{i}"))
# Never flushed nor closed: 100 events are buffered when the interpreter exits.
"""


def run_child(core: str, endpoint: str) -> dict[str, Any]:
    import json
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", EXIT_CHILD, endpoint],
        capture_output=True, text=True, timeout=45, check=False,
        env={**os.environ, "TRUTHOUND_OBSERVABILITY_CORE": core},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_a_backend_never_closed_exports_its_buffer_at_exit(
    core: str, http_collector: OtlpLogsHttpReceiver
) -> None:
    report = run_child(core, http_collector.endpoint)
    assert report == {"exported": 100, "failed": 0, "pending": 0, "last_error": None}
    ids = {record["attributes"]["audit.event_id"] for record in http_collector.wait_for(100)}
    assert ids == {f"e{i}" for i in range(100)}


def test_what_cannot_be_exported_at_exit_is_counted_within_the_timeout(core: str) -> None:
    """A black-holed collector (it accepts connections and never answers): exit still ends
    after about ``timeout_seconds``, and the 100 buffered events are counted as failed."""
    with socket.socket() as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(16)
        report = run_child(core, f"http://127.0.0.1:{black_hole.getsockname()[1]}")
    assert report["exported"] == 0
    assert report["failed"] == 100
    assert report["pending"] == 0
    assert "interpreter exit" in report["last_error"] or "export" in report["last_error"]


def test_an_export_still_hanging_at_exit_is_counted_once() -> None:
    """The exit handler waits ``timeout_seconds`` for a hung exporter, then counts the batch as
    failed; the export finishing later does not count it again."""
    import threading

    from opentelemetry.sdk._logs.export import LogRecordExportResult

    release = threading.Event()

    class HungExporter:
        def export(self, batch: Any) -> Any:
            release.wait(30)
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    backend = OtlpAuditBackend(exporter=HungExporter(), timeout_seconds=0.2, max_batch_size=100)
    for i in range(7):
        backend.log(AuditEvent(event_id=f"e{i}"))
    backend._close_at_exit()
    assert (backend.failed_events, backend.exported_events) == (7, 0)
    assert "interpreter exit: 7 event(s) not exported within 0.2 s" in str(backend.last_error)
    release.set()
    assert wait_until(lambda: backend._in_flight == 0)
    assert (backend.failed_events, backend.exported_events) == (7, 0)


@pytest.mark.parametrize(
    ("endpoint", "protocol", "expected"),
    [
        ("http://collector:4318", None, "http/protobuf"),
        ("http://collector:4317", None, "grpc"),  # OTLP's gRPC port, whatever the scheme
        ("collector:4317", None, "grpc"),
        ("grpc://collector:9000", None, "grpc"),
        ("https://collector.example", None, "http/protobuf"),
        ("http://collector:4317", "http/protobuf", "http/protobuf"),  # explicit wins
        ("http://collector:4318", "grpc", "grpc"),
        ("http://collector:4318", "HTTP", "http/protobuf"),
    ],
)
def test_audit_export_and_tracing_resolve_endpoints_by_one_rule(
    endpoint: str, protocol: str | None, expected: str
) -> None:
    from truthound.stores.observability.tracing.export import otlp_protocol

    backend = OtlpAuditBackend(endpoint=endpoint, protocol=protocol)
    assert backend.protocol == expected
    assert otlp_protocol(endpoint, protocol) == expected
    backend.close()


def test_an_unknown_protocol_is_named_alike_by_both_pillars() -> None:
    from truthound.stores.observability.errors import InvalidArgumentError
    from truthound.stores.observability.tracing.export import otlp_protocol

    with pytest.raises(InvalidArgumentError) as audit:
        OtlpAuditBackend(endpoint="http://collector:4318", protocol="thrift")
    with pytest.raises(InvalidArgumentError) as tracing:
        otlp_protocol("http://collector:4318", "thrift")
    assert (
        str(audit.value)
        == str(tracing.value)
        == ("protocol='thrift': expected 'grpc' or 'http/protobuf'")
    )


def test_values_json_cannot_hold_are_exported_encoded_and_never_fail_the_batch(
    http_collector: OtlpLogsHttpReceiver,
) -> None:
    """One odd metadata value (a date, a set, a 70-bit integer, bytes...) is sent in the
    documented text form; it does not cost the other events of its batch."""
    backend = OtlpAuditBackend(endpoint=http_collector.endpoint)
    backend.log(AuditEvent(event_id="plain"))
    backend.log(
        AuditEvent(
            event_id="odd",
            metadata={
                "when": datetime(2024, 1, 1, tzinfo=UTC),
                "tags": {"a"},
                "big": 2**70,
                "blob": b"mail ops@example.com",
                ("tuple", "key"): 1,
            },
        )
    )
    assert backend.flush()
    plain, odd = http_collector.wait_for(2)
    assert plain["attributes"]["audit.event_id"] == "plain"
    assert odd["body"]["metadata"] == {
        "when": "2024-01-01T00:00:00+00:00",
        "tags": ["a"],
        "big": str(2**70),
        "blob": "b'mail [REDACTED]'",  # redacted in its text form, like any string
        "('tuple', 'key')": 1,
    }
    assert (backend.exported_events, backend.failed_events) == (2, 0)
    backend.close()
