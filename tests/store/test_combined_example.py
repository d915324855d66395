"""The specification's "Combined Observability" example, verbatim, against a real store.

The example's free names (``store``, ``time``, ``SpanStatus``, ``AuditEventType``) are supplied
by the test, as the surrounding application would; its OTLP endpoint (localhost:4317, gRPC) is a
real loopback receiver decoding with the official protobuf classes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import receivers

from truthound.stores.base import StoreNotFoundError
from truthound.stores.filesystem import FileSystemStore
from truthound.stores.observability.audit import AuditEventType, AuditStatus
from truthound.stores.observability.tracing import SpanStatus

SPEC_EXAMPLE = """
from truthound.stores.observability.audit import AuditLogger, InMemoryAuditBackend
from truthound.stores.observability.metrics import StoreMetrics, PrometheusMetricsBackend
from truthound.stores.observability.tracing import OpenTelemetryTracer, SpanKind

# Setup
audit = AuditLogger(
    backend=InMemoryAuditBackend(),
    store_type="s3",
    store_id="my-bucket",
)
metrics = StoreMetrics(
    backend=PrometheusMetricsBackend(),
    store_type="s3",
    store_id="my-bucket",
)
tracer = OpenTelemetryTracer(
    service_name="truthound",
    endpoint="http://localhost:4317",
)

# Instrumented operation
def get_result(item_id: str) -> dict:
    with tracer.start_span("store.read", kind=SpanKind.CLIENT) as span:
        span.set_attribute("item.id", item_id)

        start = time.time()
        try:
            result = store.get(item_id)
            duration_ms = (time.time() - start) * 1000

            # Record success
            audit.log_read(item_id, duration_ms=duration_ms)
            metrics.record_operation("read", duration_ms=duration_ms, success=True)
            span.set_status(SpanStatus.OK)

            return result
        except Exception as e:
            duration_ms = (time.time() - start) * 1000

            # Record failure
            audit.log_error(AuditEventType.READ, str(e), item_id=item_id)
            metrics.record_operation("read", duration_ms=duration_ms, success=False)
            metrics.record_error(type(e).__name__)
            span.set_status(SpanStatus.ERROR, str(e))

            raise
"""


@pytest.fixture
def collector() -> Iterator[Any]:
    """An OTLP/gRPC receiver on the example's own endpoint, localhost:4317."""
    try:
        receiver = receivers.OtlpGrpcReceiver(port=4317)
    except RuntimeError:
        pytest.skip("port 4317 is in use on this machine")
    try:
        yield receiver
    finally:
        receiver.close()


def test_the_combined_example_runs_as_written(tmp_path: Path, collector: Any) -> None:
    store = FileSystemStore(tmp_path / "results")
    store.save({"id": "run-123", "data_asset": "orders", "status": "success"})
    namespace: dict[str, Any] = {
        "store": store,
        "time": time,
        "SpanStatus": SpanStatus,
        "AuditEventType": AuditEventType,
    }
    exec(compile(SPEC_EXAMPLE, "store-observability.md", "exec"), namespace)
    get_result = namespace["get_result"]
    audit, metrics, tracer = namespace["audit"], namespace["metrics"], namespace["tracer"]

    assert get_result("run-123")["data_asset"] == "orders"
    with pytest.raises(StoreNotFoundError):
        get_result("run-404")

    # Audit: one successful read, one failed read, both of the item.
    events = audit.backend.query(limit=10)
    assert [(e.event_type, e.status, e.item_id) for e in events] == [
        (AuditEventType.READ, AuditStatus.FAILURE, "run-404"),
        (AuditEventType.READ, AuditStatus.SUCCESS, "run-123"),
    ]
    # Correlation: each event carries the trace id of the span it was logged in.
    assert events[0].trace_id is not None
    assert events[0].trace_id != events[1].trace_id

    # Metrics: the standard names, under the backend's default prefix.
    text = metrics.backend.export()
    ops = "truthound_store_store_operations_total"
    assert f'{ops}{{operation="read",status="success",store="s3"}} 1.0' in text
    assert f'{ops}{{operation="read",status="failure",store="s3"}} 1.0' in text
    assert (
        'truthound_store_store_errors_total{error_type="StoreNotFoundError",store="s3"} 1.0' in text
    )

    # Tracing: both spans reach the collector with their attributes and status.
    assert tracer.shutdown(timeout_seconds=10)
    spans = {span.attributes["item.id"]: span for span in collector.wait_for(2)}
    assert spans["run-123"].status == "ok"
    assert spans["run-404"].status == "error"
    assert spans["run-404"].trace_id == events[0].trace_id
    assert {span.name for span in spans.values()} == {"store.read"}
    assert tracer.dropped_spans == 0
