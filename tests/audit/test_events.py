"""AuditEventType, AuditStatus and AuditEvent: the documented fields and their round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from truthound.stores.observability.audit import AuditEvent, AuditEventType, AuditStatus
from truthound.stores.observability.errors import InvalidArgumentError
from truthound.stores.observability.protocols import ObservabilityContext

from .strategies import events


def test_all_twenty_event_types_and_four_statuses_exist() -> None:
    assert [t.name for t in AuditEventType] == [
        "CREATE", "READ", "UPDATE", "DELETE", "QUERY", "LIST", "COUNT",
        "INITIALIZE", "CLOSE", "FLUSH", "BATCH_CREATE", "BATCH_DELETE",
        "REPLICATE", "SYNC", "MIGRATE", "ROLLBACK",
        "ACCESS_DENIED", "ACCESS_GRANTED", "ERROR", "VALIDATION_ERROR",
    ]  # fmt: skip
    assert [s.value for s in AuditStatus] == ["success", "failure", "partial", "denied"]
    assert AuditEventType.CREATE == "create"
    assert AuditStatus.DENIED == "denied"


def test_the_specification_example() -> None:
    event = AuditEvent(
        event_id="evt-123",
        event_type=AuditEventType.CREATE,
        timestamp=datetime.now(),
        status=AuditStatus.SUCCESS,
        store_type="s3",
        store_id="my-bucket",
        item_id="run-456",
        user_id="admin",
        session_id="sess-789",
        duration_ms=45.2,
        metadata={"region": "us-east-1"},
        error_message=None,
        ip_address="192.168.1.1",
        user_agent="truthound/1.0",
    )
    event_dict = event.to_dict()
    assert event_dict["event_id"] == "evt-123"
    assert event_dict["event_type"] == "create"
    assert event_dict["item_id"] == event_dict["resource_id"] == "run-456"
    assert event_dict["ip_address"] == event_dict["source_ip"] == "192.168.1.1"
    assert event_dict["session_id"] == "sess-789"
    assert datetime.fromisoformat(event_dict["timestamp"]).tzinfo is not None


def test_defaults_match_the_existing_api() -> None:
    event = AuditEvent()
    assert len(event.event_id) == 36
    assert event.event_type is AuditEventType.READ
    assert event.status is AuditStatus.SUCCESS
    assert (event.store_type, event.store_id, event.operation, event.resource_type) == ("",) * 4
    assert event.resource_id is None
    assert event.metadata == {}
    assert event.timestamp.tzinfo is UTC


def test_timestamps_are_utc_and_naive_values_are_taken_as_utc() -> None:
    naive = datetime(2024, 5, 1, 12, 0, 0)
    assert AuditEvent(timestamp=naive).timestamp == naive.replace(tzinfo=UTC)
    plus_two = datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    event = AuditEvent(timestamp=plus_two)
    assert event.timestamp.tzinfo is UTC
    assert event.timestamp.hour == 12
    event.timestamp = datetime(2024, 1, 1)
    assert event.timestamp.tzinfo is UTC
    assert event.to_dict()["timestamp"] == "2024-01-01T00:00:00.000000+00:00"


def test_enum_fields_accept_values_and_reject_unknown_ones_by_name() -> None:
    assert AuditEvent(event_type="delete", status="partial").event_type is AuditEventType.DELETE
    with pytest.raises(InvalidArgumentError, match="'explode'"):
        AuditEvent(event_type="explode")
    with pytest.raises(ValueError, match="'meh'"):
        AuditEvent(status="meh")


def test_aliases_of_the_existing_api_are_one_field() -> None:
    event = AuditEvent(resource_id="r1", source_ip="10.0.0.1")
    assert event.item_id == "r1"
    assert event.ip_address == "10.0.0.1"
    event.item_id = "r2"
    assert event.resource_id == "r2"
    with pytest.raises(InvalidArgumentError, match="contradicts"):
        AuditEvent(item_id="a", resource_id="b")


@given(events())
def test_to_dict_and_from_dict_round_trip_losslessly(event: AuditEvent) -> None:
    assert AuditEvent.from_dict(event.to_dict()) == event


def test_from_dict_ignores_keys_written_by_newer_versions() -> None:
    data = AuditEvent(event_id="e1").to_dict()
    data.update(seq=42, mac="00ff")
    assert AuditEvent.from_dict(data).event_id == "e1"


def test_from_context_copies_the_context_ids() -> None:
    context = ObservabilityContext(
        correlation_id="corr-1", trace_id="t1", span_id="s1", user_id="u1", tenant_id="ten",
        source_ip="1.2.3.4", user_agent="ua",
    )  # fmt: skip
    event = AuditEvent.from_context(context, AuditEventType.READ, "get", resource_id="r1")
    assert (event.correlation_id, event.trace_id, event.span_id) == ("corr-1", "t1", "s1")
    assert (event.user_id, event.tenant_id, event.source_ip, event.user_agent) == (
        "u1", "ten", "1.2.3.4", "ua",
    )  # fmt: skip
    assert (event.operation, event.item_id) == ("get", "r1")


def test_copy_is_independent() -> None:
    event = AuditEvent(metadata={"nested": {"a": [1]}})
    clone = event.copy()
    clone.metadata["nested"]["a"].append(2)
    assert event.metadata == {"nested": {"a": [1]}}
    assert clone != event


@given(st.datetimes(timezones=st.just(UTC)))
def test_the_timestamp_text_is_fixed_width_iso_8601(ts: datetime) -> None:
    text = AuditEvent(timestamp=ts).to_dict()["timestamp"]
    assert len(text) == 32
    assert datetime.fromisoformat(text) == ts
