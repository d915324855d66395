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
from otlp_logs import OtlpLogsGrpcReceiver, OtlpLogsHttpReceiver

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
