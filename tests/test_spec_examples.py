"""Every code example of the specification (``store-observability.md``), verbatim, on both cores.

Each fenced python block is a string constant below, executed with ``exec`` in a namespace that
holds only the free names the surrounding application would have (the ``event`` of the
AuditEvent example, a ``context``, ``datetime``, the backends...). Each test then checks what the
example's text says happens. Peers are real: the scrape endpoint serves on the example's port
9090, and the OpenTelemetry examples' endpoints (localhost:4317, :14268, :9411) are loopback
receivers decoding with independent implementations (``tests/tracing/receivers.py``). A test
skips only when one of those fixed ports is taken on this machine.

The "Combined Observability" block is covered by ``tests/store/test_combined_example.py``.
The placeholder ids of the SpanContext example (``"abc123def456"``, ``"span789"``) are not valid
W3C ids: ``test_span_context`` documents exactly what the example does with them.
"""

from __future__ import annotations

import gc
import json
import os
import re
import socket
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import receivers
from prometheus_client.parser import text_string_to_metric_families

from truthound.stores.observability.audit import (
    AuditEvent,
    AuditEventType,
    AuditStatus,
    DataRedactor,
    JsonAuditBackend,
)
from truthound.stores.observability.errors import InvalidArgumentError
from truthound.stores.observability.metrics import (
    HistogramValue,
    InMemoryMetricsBackend,
    MetricsRegistry,
    MetricType,
    MetricValue,
    PrometheusMetricsBackend,
    SummaryValue,
)
from truthound.stores.observability.tracing import (
    InMemoryTracer,
    NoopSpan,
    NoopTracer,
    OpenTelemetryTracer,
    Span,
    SpanContext,
    SpanKind,
    SpanStatus,
    Tracer,
)

# ---- the examples, verbatim (`test_every_block_is_verbatim` compares them with the spec) -------

#: "Audit Event Types"
AUDIT_EVENT_TYPES = r"""
from truthound.stores.observability.audit import AuditEventType

# Data operations
AuditEventType.CREATE          # Item created
AuditEventType.READ            # Item read
AuditEventType.UPDATE          # Item updated
AuditEventType.DELETE          # Item deleted
AuditEventType.QUERY           # Query executed
AuditEventType.LIST            # Items listed
AuditEventType.COUNT           # Count operation

# Lifecycle events
AuditEventType.INITIALIZE      # Store initialized
AuditEventType.CLOSE           # Store closed
AuditEventType.FLUSH           # Data flushed

# Batch operations
AuditEventType.BATCH_CREATE    # Batch create
AuditEventType.BATCH_DELETE    # Batch delete

# Replication & sync
AuditEventType.REPLICATE       # Data replicated
AuditEventType.SYNC            # Sync operation
AuditEventType.MIGRATE         # Data migrated
AuditEventType.ROLLBACK        # Rollback operation

# Access control
AuditEventType.ACCESS_DENIED   # Access denied
AuditEventType.ACCESS_GRANTED  # Access granted

# Errors
AuditEventType.ERROR           # General error
AuditEventType.VALIDATION_ERROR # Validation error
"""

#: "Audit Status"
AUDIT_STATUS = r"""
from truthound.stores.observability.audit import AuditStatus

AuditStatus.SUCCESS    # Operation succeeded
AuditStatus.FAILURE    # Operation failed
AuditStatus.PARTIAL    # Partial success
AuditStatus.DENIED     # Access denied
"""

#: "AuditEvent"
AUDIT_EVENT = r"""
from truthound.stores.observability.audit import AuditEvent, AuditEventType, AuditStatus
from datetime import datetime

event = AuditEvent(
    event_id="evt-123",                    # Unique event ID
    event_type=AuditEventType.CREATE,      # Event type
    timestamp=datetime.now(),              # When it happened
    status=AuditStatus.SUCCESS,            # Operation status
    store_type="s3",                       # Store backend type
    store_id="my-bucket",                  # Store identifier
    item_id="run-456",                     # Item ID (optional)
    user_id="admin",                       # User ID (optional)
    session_id="sess-789",                 # Session ID (optional)
    duration_ms=45.2,                      # Duration in ms (optional)
    metadata={"region": "us-east-1"},      # Additional metadata
    error_message=None,                    # Error message if failed
    ip_address="192.168.1.1",              # Client IP (optional)
    user_agent="truthound/1.0",            # User agent (optional)
)

# Convert to dict
event_dict = event.to_dict()
"""

#: "Data Redaction"
DATA_REDACTION = r"""
from truthound.stores.observability.audit import DataRedactor

redactor = DataRedactor(
    patterns=[
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}\b",  # Email
        r"\b\d{3}-\d{2}-\d{4}\b",  # SSN
    ],
    replacement="[REDACTED]",
    fields_to_redact=["email", "ssn", "password"],
)

# Redact event metadata
redacted_event = redactor.redact_event(event)

# Redact arbitrary data
redacted_data = redactor.redact({"email": "test@example.com"})
"""

#: "InMemoryAuditBackend"
IN_MEMORY_AUDIT_BACKEND = r"""
from truthound.stores.observability.audit import InMemoryAuditBackend

backend = InMemoryAuditBackend(max_events=10000)

# Log event
backend.log(event)

# Query events
events = backend.query(
    event_type=AuditEventType.CREATE,
    start_time=datetime(2024, 1, 1),
    end_time=datetime(2024, 12, 31),
    limit=100,
)

# Get all events
all_events = backend.get_all()

# Clear events
backend.clear()
"""

#: "FileAuditBackend"
FILE_AUDIT_BACKEND = r"""
from truthound.stores.observability.audit import FileAuditBackend

backend = FileAuditBackend(
    file_path=".truthound/audit.log",
    max_file_size_mb=100,
    max_files=10,  # Rotation
)

backend.log(event)
"""

#: "JsonAuditBackend"
JSON_AUDIT_BACKEND = r"""
from truthound.stores.observability.audit import JsonAuditBackend

backend = JsonAuditBackend(
    directory=".truthound/audit",
    file_prefix="audit",
    rotate_daily=True,
)

backend.log(event)

# Query from files
events = backend.query(
    event_type=AuditEventType.READ,
    start_time=datetime(2024, 1, 1),
)
"""

#: "CompositeAuditBackend"
COMPOSITE_AUDIT_BACKEND = r"""
from truthound.stores.observability.audit import (
    CompositeAuditBackend,
    InMemoryAuditBackend,
    FileAuditBackend,
)

backend = CompositeAuditBackend(
    backends=[
        InMemoryAuditBackend(max_events=1000),
        FileAuditBackend(file_path=".truthound/audit.log"),
    ]
)

# Logs to all backends
backend.log(event)
"""

#: "AsyncAuditBackend"
ASYNC_AUDIT_BACKEND = r"""
from truthound.stores.observability.audit import AsyncAuditBackend, InMemoryAuditBackend

backend = AsyncAuditBackend(
    backend=InMemoryAuditBackend(),
    queue_size=1000,
    flush_interval_seconds=5.0,
)

# Non-blocking log
backend.log(event)

# Flush pending events
backend.flush()

# Shutdown
backend.close()
"""

#: "AuditLogger"
AUDIT_LOGGER = r"""
from truthound.stores.observability.audit import AuditLogger, InMemoryAuditBackend

logger = AuditLogger(
    backend=InMemoryAuditBackend(),
    store_type="s3",
    store_id="my-bucket",
    redactor=DataRedactor(fields_to_redact=["password"]),
)

# Log operations
logger.log_create("run-123", user_id="admin")
logger.log_read("run-123", user_id="admin")
logger.log_update("run-123", user_id="admin")
logger.log_delete("run-123", user_id="admin")
logger.log_query({"status": "failure"}, user_id="admin")

# Log with status
logger.log_event(
    event_type=AuditEventType.REPLICATE,
    status=AuditStatus.SUCCESS,
    item_id="run-123",
    duration_ms=150.0,
    metadata={"target_region": "eu-west-1"},
)

# Log errors
logger.log_error(
    event_type=AuditEventType.CREATE,
    error_message="Connection timeout",
    item_id="run-123",
)
"""

#: "Metric Types"
METRIC_TYPES = r"""
from truthound.stores.observability.metrics import MetricType

MetricType.COUNTER    # Monotonically increasing counter
MetricType.GAUGE      # Value that can go up or down
MetricType.HISTOGRAM  # Distribution of values
MetricType.SUMMARY    # Statistical summary
"""

#: "Metric Values"
METRIC_VALUES = r"""
from truthound.stores.observability.metrics import (
    MetricValue,
    HistogramValue,
    SummaryValue,
)

# Simple metric
metric = MetricValue(
    name="store_operations_total",
    value=42.0,
    labels={"store": "s3", "operation": "read"},
    timestamp=datetime.now(),
)

# Histogram
histogram = HistogramValue(
    name="store_operation_duration_seconds",
    count=100,
    sum=45.5,
    buckets={0.01: 10, 0.05: 50, 0.1: 80, 0.5: 95, 1.0: 100},
    labels={"store": "s3"},
)

# Summary
summary = SummaryValue(
    name="store_operation_latency",
    count=100,
    sum=45.5,
    quantiles={0.5: 0.4, 0.9: 0.8, 0.99: 1.2},
    labels={"store": "s3"},
)
"""

#: "InMemoryMetricsBackend"
IN_MEMORY_METRICS_BACKEND = r"""
from truthound.stores.observability.metrics import InMemoryMetricsBackend

backend = InMemoryMetricsBackend()

# Record metrics
backend.increment("operations_total", labels={"op": "read"})
backend.gauge("connections_active", 5, labels={"store": "s3"})
backend.histogram("latency_seconds", 0.05, labels={"op": "read"})
backend.summary("request_size_bytes", 1024, labels={"op": "write"})

# Get metrics
metrics = backend.get_metrics()

# Get specific metric
value = backend.get("operations_total", labels={"op": "read"})

# Reset
backend.reset()
"""

#: "PrometheusMetricsBackend"
PROMETHEUS_METRICS_BACKEND = r"""
from truthound.stores.observability.metrics import PrometheusMetricsBackend

backend = PrometheusMetricsBackend(
    prefix="truthound_store",
    default_labels={"service": "validation"},
)

# Record metrics (same interface)
backend.increment("operations_total", labels={"op": "read"})
backend.histogram("latency_seconds", 0.05, labels={"op": "read"})

# Start HTTP endpoint for scraping
backend.start_http_server(port=9090)

# Or push to gateway
backend.push_to_gateway(
    gateway_url="http://pushgateway:9091",
    job="truthound",
)

# Export in Prometheus format
prometheus_text = backend.export()
"""

#: "MetricsRegistry"
METRICS_REGISTRY = r"""
from truthound.stores.observability.metrics import MetricsRegistry

# Get singleton instance
registry = MetricsRegistry.get_instance()

# Register backend
registry.register_backend("prometheus", prometheus_backend)
registry.register_backend("memory", memory_backend)

# Record to all backends
registry.increment("operations_total", labels={"op": "read"})

# Get from primary backend
value = registry.get("operations_total")

# Export all
registry.export_all()
"""

#: "StoreMetrics"
STORE_METRICS = r"""
from truthound.stores.observability.metrics import StoreMetrics

metrics = StoreMetrics(
    backend=prometheus_backend,
    store_type="s3",
    store_id="my-bucket",
)

# Track operations
metrics.record_operation("read", duration_ms=45.0, success=True)
metrics.record_operation("write", duration_ms=120.0, success=False)

# Track sizes
metrics.record_size(bytes_read=1024)
metrics.record_size(bytes_written=2048)

# Track connections
metrics.record_connection_opened()
metrics.record_connection_closed()

# Track cache
metrics.record_cache_hit()
metrics.record_cache_miss()

# Track errors
metrics.record_error("ConnectionTimeout")
"""

#: "Span Kinds"
SPAN_KINDS = r"""
from truthound.stores.observability.tracing import SpanKind

SpanKind.INTERNAL   # Internal operation
SpanKind.SERVER     # Server-side operation
SpanKind.CLIENT     # Client-side operation (e.g., S3 call)
SpanKind.PRODUCER   # Message producer
SpanKind.CONSUMER   # Message consumer
"""

#: "Span Status"
SPAN_STATUS = r"""
from truthound.stores.observability.tracing import SpanStatus

SpanStatus.UNSET    # Status not set
SpanStatus.OK       # Operation succeeded
SpanStatus.ERROR    # Operation failed
"""

#: "SpanContext"
SPAN_CONTEXT = r"""
from truthound.stores.observability.tracing import SpanContext

# Create context
context = SpanContext(
    trace_id="abc123def456",
    span_id="span789",
    parent_span_id="parent123",
    trace_flags=1,  # Sampled
    trace_state={"vendor": "value"},
)

# Parse W3C traceparent
context = SpanContext.from_traceparent(
    "00-abc123def456-span789-01"
)

# Export as traceparent
traceparent = context.to_traceparent()
# "00-abc123def456-span789-01"
"""

#: "Span"
SPAN = r"""
from truthound.stores.observability.tracing import Span, SpanKind, SpanStatus

# Create span
span = Span(
    name="store.read",
    kind=SpanKind.CLIENT,
    context=context,
)

# Add attributes
span.set_attribute("store.type", "s3")
span.set_attribute("item.id", "run-123")

# Add events
span.add_event("cache.miss", {"key": "run-123"})
span.add_event("retry.attempt", {"attempt": 1})

# Set status
span.set_status(SpanStatus.OK)

# End span
span.end()

# Get duration
print(f"Duration: {span.duration_ms}ms")
"""

#: "NoopTracer"
NOOP_TRACER = r"""
from truthound.stores.observability.tracing import NoopTracer

tracer = NoopTracer()

# All operations are no-ops
with tracer.start_span("operation") as span:
    span.set_attribute("key", "value")  # Does nothing
"""

#: "InMemoryTracer"
IN_MEMORY_TRACER = r"""
from truthound.stores.observability.tracing import InMemoryTracer

tracer = InMemoryTracer(max_spans=1000)

# Create spans
with tracer.start_span("parent_operation") as parent:
    parent.set_attribute("key", "value")

    with tracer.start_span("child_operation") as child:
        child.set_attribute("nested", True)

# Get recorded spans
spans = tracer.get_spans()
print(f"Recorded {len(spans)} spans")

# Get spans by name
read_spans = tracer.get_spans_by_name("store.read")

# Clear spans
tracer.clear()
"""

#: "OpenTelemetryTracer"
OPEN_TELEMETRY_TRACER = r"""
from truthound.stores.observability.tracing import OpenTelemetryTracer

# OTLP exporter (default)
tracer = OpenTelemetryTracer(
    service_name="truthound",
    endpoint="http://localhost:4317",
    exporter_type="otlp",
)

# Jaeger exporter
tracer = OpenTelemetryTracer(
    service_name="truthound",
    endpoint="http://localhost:14268/api/traces",
    exporter_type="jaeger",
)

# Zipkin exporter
tracer = OpenTelemetryTracer(
    service_name="truthound",
    endpoint="http://localhost:9411/api/v2/spans",
    exporter_type="zipkin",
)

# Use tracer
with tracer.start_span("store.read", kind=SpanKind.CLIENT) as span:
    span.set_attribute("store.type", "s3")
    span.set_attribute("item.id", "run-123")
    # ... perform operation
    span.set_status(SpanStatus.OK)
"""

#: "Tracer Factory"
TRACER_FACTORY = r"""
from truthound.stores.observability.tracing import Tracer

# Get tracer (auto-selects based on config)
tracer = Tracer.create(
    service_name="truthound",
    enabled=True,
    exporter_type="otlp",
    endpoint="http://localhost:4317",
)

# Or create disabled tracer
tracer = Tracer.create(enabled=False)  # Returns NoopTracer
"""

#: "Context Propagation"
CONTEXT_PROPAGATION = r"""
# Extract context from headers
incoming_context = SpanContext.from_traceparent(
    headers.get("traceparent")
)

# Create span with parent context
with tracer.start_span("operation", parent=incoming_context) as span:
    # ... perform operation

    # Propagate context to downstream
    outgoing_headers = {
        "traceparent": span.context.to_traceparent()
    }
"""


#: Every example above (all but "Combined Observability").
EXAMPLES = (
    AUDIT_EVENT_TYPES, AUDIT_STATUS, AUDIT_EVENT, DATA_REDACTION, IN_MEMORY_AUDIT_BACKEND,
    FILE_AUDIT_BACKEND, JSON_AUDIT_BACKEND, COMPOSITE_AUDIT_BACKEND, ASYNC_AUDIT_BACKEND,
    AUDIT_LOGGER, METRIC_TYPES, METRIC_VALUES, IN_MEMORY_METRICS_BACKEND,
    PROMETHEUS_METRICS_BACKEND, METRICS_REGISTRY, STORE_METRICS, SPAN_KINDS, SPAN_STATUS,
    SPAN_CONTEXT, SPAN, NOOP_TRACER, IN_MEMORY_TRACER, OPEN_TELEMETRY_TRACER, TRACER_FACTORY,
    CONTEXT_PROPAGATION,
)  # fmt: skip

# ---- helpers ------------------------------------------------------------------------------------

SPEC = Path(
    os.environ.get("TRUTHOUND_SPEC", "/work/shared/spec/store-observability.md")
)  # the specification, when this checkout has it next to it
COMBINED_TEST = Path(__file__).parent / "store" / "test_combined_example.py"

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REMOTE = "00f067aa0ba902b7"
INCOMING = f"00-{TRACE}-{REMOTE}-01"


def run(block: str, **names: Any) -> dict[str, Any]:
    """Executes one example with only ``names`` predefined; returns its namespace."""
    namespace: dict[str, Any] = dict(names)
    exec(compile(block, "store-observability.md", "exec"), namespace)
    return namespace


def spec_event(**changes: Any) -> AuditEvent:
    """The ``event`` of the AuditEvent example, optionally with some fields changed (as another
    event of the same application)."""
    event: AuditEvent = run(AUDIT_EVENT)["event"]
    for name, value in changes.items():
        setattr(event, name, value)
    return event


def members(block: str, enum: str) -> list[str]:
    """The member names an enumeration example lists (``Enum.NAME  # comment`` lines)."""
    return re.findall(rf"^{enum}\.(\w+)\s+#", block, re.MULTILINE)


def start_receiver(factory: Any, port: int) -> Any:
    """A loopback receiver on the example's own ``port``; skips when the port is taken."""
    try:
        return factory(port=port)
    except (OSError, RuntimeError):
        pytest.skip(f"port {port} is in use on this machine")


def new_otel_tracers(before: set[int]) -> list[OpenTelemetryTracer]:
    """The ``OpenTelemetryTracer`` objects created since ``before`` (ids of the live ones then).

    An example that rebinds ``tracer`` leaves its earlier tracers unreachable from the namespace;
    they are still alive (their export thread holds them), and found here to be checked and shut
    down.
    """
    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, OpenTelemetryTracer) and id(obj) not in before
    ]


def live_otel_tracers() -> tuple[set[int], list[Any]]:
    tracers = [obj for obj in gc.get_objects() if isinstance(obj, OpenTelemetryTracer)]
    return {id(t) for t in tracers}, tracers  # the list keeps them alive (ids stay unique)


def scrape(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return str(response.read().decode())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, parsed by prometheus_client."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, 9091)
    except OSError:
        return False
    return True


def _port_free(port: int) -> bool:
    """Whether nothing listens on ``port`` (a connection in TIME_WAIT does not count: servers,
    ours included, bind with ``SO_REUSEADDR``)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory for examples with relative paths (``.truthound/...``)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    MetricsRegistry.reset_instance()
    try:
        yield
    finally:
        MetricsRegistry.reset_instance()


# ---- the blocks are the spec's ------------------------------------------------------------------


def test_every_block_is_verbatim() -> None:
    """Each python block of the spec is one of the constants above, or the combined example."""
    if not SPEC.is_file():
        pytest.skip(f"the specification is not at {SPEC} (set TRUTHOUND_SPEC)")
    blocks = re.findall(r"^```python\n(.*?)^```", SPEC.read_text(), re.MULTILINE | re.DOTALL)
    ours = [example.lstrip("\n") for example in EXAMPLES]
    assert [block for block in blocks if block in ours] == ours  # all of them, in order
    (combined,) = [block for block in blocks if block not in ours]
    assert "\n" + combined in COMBINED_TEST.read_text()


# ---- Audit Logging ------------------------------------------------------------------------------


def test_audit_event_types() -> None:
    run(AUDIT_EVENT_TYPES)
    listed = members(AUDIT_EVENT_TYPES, "AuditEventType")
    assert len(listed) == 20
    assert {AuditEventType[name] for name in listed} == set(AuditEventType)


def test_audit_status() -> None:
    run(AUDIT_STATUS)
    listed = members(AUDIT_STATUS, "AuditStatus")
    assert listed == ["SUCCESS", "FAILURE", "PARTIAL", "DENIED"]
    assert {AuditStatus[name] for name in listed} == set(AuditStatus)


def test_audit_event() -> None:
    before = datetime.now(UTC)
    ns = run(AUDIT_EVENT)
    event, event_dict = ns["event"], ns["event_dict"]
    assert event.event_type is AuditEventType.CREATE
    assert event.status is AuditStatus.SUCCESS
    assert (event.item_id, event.user_id, event.session_id) == ("run-456", "admin", "sess-789")
    assert event.metadata == {"region": "us-east-1"}
    # Stored in UTC. A naive datetime is taken as UTC (truthound's rule), so on a host whose
    # local zone is not UTC the example's local `datetime.now()` is off by the zone's offset.
    assert event.timestamp.tzinfo is UTC
    assert abs((event.timestamp - before).total_seconds()) < 24 * 3600
    assert event_dict["event_id"] == "evt-123"
    assert event_dict["event_type"] == "create"
    assert event_dict["status"] == "success"
    assert event_dict["store_type"] == "s3"
    assert event_dict["store_id"] == "my-bucket"
    assert event_dict["item_id"] == "run-456"
    assert event_dict["duration_ms"] == 45.2
    assert event_dict["ip_address"] == "192.168.1.1"
    assert event_dict["user_agent"] == "truthound/1.0"
    assert event_dict["error_message"] is None
    assert event_dict["timestamp"] == event.timestamp.isoformat()
    # The dict is plain JSON and converts back to the same event.
    assert AuditEvent.from_dict(json.loads(json.dumps(event_dict))) == event


def test_data_redaction() -> None:
    event = spec_event(
        metadata={"region": "us-east-1", "contact": "ops@example.com", "password": "hunter2"},
        error_message="lookup of 123-45-6789 failed",
    )
    ns = run(DATA_REDACTION, event=event)
    assert ns["redacted_data"] == {"email": "[REDACTED]"}
    redacted = ns["redacted_event"]
    assert redacted.metadata == {
        "region": "us-east-1",
        "contact": "[REDACTED]",  # the e-mail pattern
        "password": "[REDACTED]",  # a field to redact
    }
    assert redacted.error_message == "lookup of [REDACTED] failed"  # the SSN pattern
    assert "example.com" not in json.dumps(redacted.to_dict())
    assert (redacted.event_id, redacted.item_id, redacted.user_id) == (
        "evt-123",
        "run-456",
        "admin",
    )
    # The application's event is left as it was.
    assert event.metadata["contact"] == "ops@example.com"


@pytest.mark.parametrize("when", ["in 2024", "today"])
def test_in_memory_audit_backend(when: str) -> None:
    timestamp = datetime(2024, 6, 1, 12, 0) if when == "in 2024" else datetime.now()
    event = spec_event(timestamp=timestamp)
    ns = run(IN_MEMORY_AUDIT_BACKEND, event=event, AuditEventType=AuditEventType, datetime=datetime)
    # The query returns the CREATE events between the two dates (inclusive), newest first.
    assert ns["events"] == ([event] if when == "in 2024" else [])
    assert ns["all_events"] == [event]
    assert ns["backend"].max_events == 10000
    assert ns["backend"].get_all() == []  # cleared


def test_file_audit_backend(in_tmp: Path) -> None:
    event = spec_event()
    ns = run(FILE_AUDIT_BACKEND, event=event)
    backend = ns["backend"]
    try:
        backend.flush()
        (line,) = (in_tmp / ".truthound" / "audit.log").read_text().splitlines()
        assert "[CREATE] [success] store=s3 store_id=my-bucket" in line
        assert json.loads(line.split("\t", 1)[1])["event_id"] == "evt-123"
        assert backend.query() == [event]
    finally:
        backend.close()


def test_json_audit_backend(in_tmp: Path) -> None:
    event = spec_event(event_type=AuditEventType.READ, timestamp=datetime(2024, 3, 1, 9, 30))
    ns = run(JSON_AUDIT_BACKEND, event=event, AuditEventType=AuditEventType, datetime=datetime)
    backend = ns["backend"]
    try:
        # The READ events since 2024-01-01, read back from the files.
        assert ns["events"] == [event]
        (path,) = (in_tmp / ".truthound" / "audit").glob("*.jsonl")
        assert re.fullmatch(r"audit-\d{4}-\d{2}-\d{2}\.jsonl", path.name)  # one file a day
        assert json.loads(path.read_text())["event_id"] == "evt-123"
    finally:
        backend.close()
    # The files are the record: a new backend on the directory finds the event.
    reopened = JsonAuditBackend(directory=".truthound/audit")
    try:
        assert reopened.query(event_type=AuditEventType.READ) == [event]
    finally:
        reopened.close()


def test_composite_audit_backend(in_tmp: Path) -> None:
    event = spec_event()
    ns = run(COMPOSITE_AUDIT_BACKEND, event=event)
    backend = ns["backend"]
    try:
        memory, file = backend.backends
        assert memory.get_all() == [event]
        file.flush()
        text = (in_tmp / ".truthound" / "audit.log").read_text()
        assert text.count("\n") == 1
        assert '"event_id":"evt-123"' in text
        assert backend.failed_deliveries == 0
    finally:
        backend.close()


def test_async_audit_backend() -> None:
    event = spec_event()
    ns = run(ASYNC_AUDIT_BACKEND, event=event)
    backend = ns["backend"]
    # Flushed, then closed: the event reached the wrapped backend, nothing was lost.
    assert backend.backend.get_all() == [event]
    assert backend.stats() == {
        "enqueued": 1,
        "dropped": 0,
        "persisted": 1,
        "failed": 0,
        "pending": 0,
    }


def test_audit_logger() -> None:
    ns = run(
        AUDIT_LOGGER,
        DataRedactor=DataRedactor,
        AuditEventType=AuditEventType,
        AuditStatus=AuditStatus,
    )
    logger = ns["logger"]
    events = logger.backend.get_all()
    assert [(e.event_type, e.status, e.item_id) for e in events] == [
        (AuditEventType.CREATE, AuditStatus.SUCCESS, "run-123"),
        (AuditEventType.READ, AuditStatus.SUCCESS, "run-123"),
        (AuditEventType.UPDATE, AuditStatus.SUCCESS, "run-123"),
        (AuditEventType.DELETE, AuditStatus.SUCCESS, "run-123"),
        (AuditEventType.QUERY, AuditStatus.SUCCESS, None),
        (AuditEventType.REPLICATE, AuditStatus.SUCCESS, "run-123"),
        (AuditEventType.CREATE, AuditStatus.FAILURE, "run-123"),
    ]
    assert {(e.store_type, e.store_id) for e in events} == {("s3", "my-bucket")}
    assert [e.user_id for e in events] == ["admin"] * 5 + [None, None]
    query, replicate, error = events[4:]
    assert query.metadata == {"filters": {"status": "failure"}}
    assert replicate.duration_ms == 150.0
    assert replicate.metadata == {"target_region": "eu-west-1"}
    assert error.error_message == "Connection timeout"
    # The logger's redactor applies to what it logs next.
    logger.log_update("run-123", metadata={"password": "hunter2"})
    assert logger.backend.get_all()[-1].metadata == {"password": "[REDACTED]"}


# ---- Metrics ------------------------------------------------------------------------------------


def test_metric_types() -> None:
    run(METRIC_TYPES)
    listed = members(METRIC_TYPES, "MetricType")
    assert listed == ["COUNTER", "GAUGE", "HISTOGRAM", "SUMMARY"]
    assert {MetricType[name] for name in listed} == set(MetricType)


def test_metric_values() -> None:
    ns = run(METRIC_VALUES, datetime=datetime)
    metric, histogram, summary = ns["metric"], ns["histogram"], ns["summary"]
    assert isinstance(metric, MetricValue)
    assert (metric.name, metric.value) == ("store_operations_total", 42.0)
    assert metric.labels == {"store": "s3", "operation": "read"}
    assert isinstance(metric.timestamp, datetime)
    assert isinstance(histogram, HistogramValue)
    assert (histogram.count, histogram.sum) == (100, 45.5)
    assert histogram.buckets[0.5] == 95
    assert isinstance(summary, SummaryValue)
    assert summary.quantiles == {0.5: 0.4, 0.9: 0.8, 0.99: 1.2}


def test_in_memory_metrics_backend() -> None:
    ns = run(IN_MEMORY_METRICS_BACKEND)
    backend = ns["backend"]
    assert ns["value"] == 1.0
    by_name = {(m.name, tuple(m.labels.items())): m for m in ns["metrics"]}
    # Exposed names carry the default prefix `truthound_store`.
    assert by_name["truthound_store_operations_total", (("op", "read"),)].value == 1.0
    assert by_name["truthound_store_connections_active", (("store", "s3"),)].value == 5.0
    latency = by_name["truthound_store_latency_seconds", (("op", "read"),)]
    assert (latency.count, latency.sum) == (1, 0.05)
    size = by_name["truthound_store_request_size_bytes", (("op", "write"),)]
    assert (size.count, size.sum, size.quantiles[0.5]) == (1, 1024.0, 1024.0)
    assert len(by_name) == 4
    # Reset.
    assert backend.get_metrics() == []
    assert backend.get("operations_total", labels={"op": "read"}) is None


@pytest.mark.timeout(60)
def test_prometheus_metrics_backend() -> None:
    """The scrape endpoint really serves on 9090; the push to the unresolvable host
    ``pushgateway`` fails without raising and is counted."""
    if not _port_free(9090):
        pytest.skip("port 9090 is in use on this machine")
    if _resolves("pushgateway"):
        pytest.skip("a host named `pushgateway` exists here: the push would not fail")
    namespace: dict[str, Any] = {}
    try:
        exec(compile(PROMETHEUS_METRICS_BACKEND, "store-observability.md", "exec"), namespace)
        backend = namespace["backend"]
        assert backend.http_server_port == 9090
        scraped = samples(scrape("http://127.0.0.1:9090/metrics"))
    finally:
        if "backend" in namespace:
            namespace["backend"].close()
    read = frozenset({("op", "read"), ("service", "validation")})
    assert scraped["truthound_store_operations_total", read] == 1.0
    assert scraped["truthound_store_latency_seconds_count", read] == 1.0
    assert scraped["truthound_store_latency_seconds_sum", read] == 0.05
    assert samples(namespace["prometheus_text"]) == scraped
    # The push failed: reported by the counter and the last error, not by an exception.
    assert backend.push_failures == 1
    assert "pushgateway" in backend.last_push_error
    assert backend.push_to_gateway(gateway_url="http://pushgateway:9091", job="truthound") is False


def test_metrics_registry(fresh_registry: None) -> None:
    prometheus_backend = PrometheusMetricsBackend()
    memory_backend = InMemoryMetricsBackend()
    ns = run(METRICS_REGISTRY, prometheus_backend=prometheus_backend, memory_backend=memory_backend)
    registry = ns["registry"]
    assert registry is MetricsRegistry.get_instance()
    # The increment reached both backends; the read comes from the first registered.
    for backend in (prometheus_backend, memory_backend):
        assert backend.get("operations_total", labels={"op": "read"}) == 1.0
    assert ns["value"] == 1.0
    exported = registry.export_all()
    assert list(exported) == ["prometheus", "memory"]
    for text in exported.values():
        assert samples(text)["truthound_store_operations_total", frozenset({("op", "read")})] == 1.0
    assert registry.backend_failures == 0


def test_store_metrics() -> None:
    prometheus_backend = PrometheusMetricsBackend()
    ns = run(STORE_METRICS, prometheus_backend=prometheus_backend)
    assert ns["metrics"].backend is prometheus_backend
    got = samples(prometheus_backend.export())
    store = ("store", "s3")

    def value(name: str, *labels: tuple[str, str]) -> float:
        return got[f"truthound_store_{name}", frozenset({store, *labels})]

    assert value("store_operations_total", ("operation", "read"), ("status", "success")) == 1
    assert value("store_operations_total", ("operation", "write"), ("status", "failure")) == 1
    assert value("store_operation_duration_seconds_sum", ("operation", "read")) == 0.045
    assert value("store_operation_duration_seconds_sum", ("operation", "write")) == 0.12
    assert value("store_bytes_read_total") == 1024
    assert value("store_bytes_written_total") == 2048
    assert value("store_connections_active") == 0  # opened, then closed
    assert value("store_cache_hits_total") == 1
    assert value("store_cache_misses_total") == 1
    assert value("store_errors_total", ("error_type", "ConnectionTimeout")) == 1


#: The "Standard Metrics" table: metric → (type, labels, description).
STANDARD_METRICS_TABLE = {
    "store_operations_total": ("counter", {"store", "operation", "status"}, "Total operations"),
    "store_operation_duration_seconds": ("histogram", {"store", "operation"}, "Operation latency"),
    "store_bytes_read_total": ("counter", {"store"}, "Total bytes read"),
    "store_bytes_written_total": ("counter", {"store"}, "Total bytes written"),
    "store_connections_active": ("gauge", {"store"}, "Active connections"),
    "store_cache_hits_total": ("counter", {"store"}, "Cache hits"),
    "store_cache_misses_total": ("counter", {"store"}, "Cache misses"),
    "store_errors_total": ("counter", {"store", "error_type"}, "Error count"),
}


def test_standard_metrics_table() -> None:
    """With ``prefix=""`` the StoreMetrics example emits exactly the table's eight metrics, with
    its types, label names and descriptions (as HELP), read by prometheus_client's parser."""
    backend = PrometheusMetricsBackend(prefix="")
    run(STORE_METRICS, prometheus_backend=backend)
    emitted = {}
    for family in text_string_to_metric_families(backend.export()):
        # The parser names a counter family without `_total`; the samples keep it.
        name = family.name + ("_total" if family.type == "counter" else "")
        label_names = {k for s in family.samples for k in s.labels if k != "le"}
        emitted[name] = (family.type, label_names, family.documentation)
    assert emitted == STANDARD_METRICS_TABLE


# ---- Tracing ------------------------------------------------------------------------------------


def test_span_kinds() -> None:
    run(SPAN_KINDS)
    listed = members(SPAN_KINDS, "SpanKind")
    assert listed == ["INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER"]
    assert {SpanKind[name] for name in listed} == set(SpanKind)


def test_span_status() -> None:
    run(SPAN_STATUS)
    listed = members(SPAN_STATUS, "SpanStatus")
    assert listed == ["UNSET", "OK", "ERROR"]
    assert {SpanStatus[name] for name in listed} == set(SpanStatus)


def test_span_context() -> None:
    """The example as written stops at its last line: its placeholder ids are not valid W3C
    ids. ``SpanContext(...)`` keeps them as given, ``from_traceparent`` of the placeholder header
    returns None ("start a new trace"), so ``context.to_traceparent()`` is called on None. With
    valid ids in place of the placeholders the example works as its comments say."""
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'to_traceparent'"):
        run(SPAN_CONTEXT)

    # Step by step: the constructor (the block up to the parsing) accepts the placeholders...
    construct, _, _ = SPAN_CONTEXT.partition("# Parse W3C traceparent")
    context = run(construct)["context"]
    assert (context.trace_id, context.span_id, context.parent_span_id) == (
        "abc123def456",
        "span789",
        "parent123",
    )
    assert context.is_sampled
    assert context.trace_state == {"vendor": "value"}
    assert not context.is_valid
    # ...but never writes them into a header, naming the offending id.
    with pytest.raises(InvalidArgumentError, match="abc123def456"):
        context.to_traceparent()
    # The placeholder header is invalid: from_traceparent returns None.
    assert SpanContext.from_traceparent("00-abc123def456-span789-01") is None

    # With valid ids the example round-trips, as its last comment shows.
    valid = run(SPAN_CONTEXT.replace("abc123def456", TRACE).replace("span789", REMOTE))
    assert valid["traceparent"] == INCOMING
    assert valid["context"].is_remote


@pytest.mark.parametrize("given", ["valid", "placeholder", "none"])
def test_span(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``context`` is a valid context, the SpanContext example's placeholder one, or None (what
    ``from_traceparent`` gave for the placeholder header): the span works with each."""
    context = {
        "valid": SpanContext(trace_id=TRACE, span_id=REMOTE, trace_flags=1),
        "placeholder": SpanContext(trace_id="abc123def456", span_id="span789"),
        "none": None,
    }[given]
    ns = run(SPAN, context=context)
    span = ns["span"]
    assert isinstance(span, Span)
    if context is None:
        assert span.context.is_valid  # a new root context
    else:
        assert span.context is context
    assert span.kind is SpanKind.CLIENT
    assert span.attributes == {"store.type": "s3", "item.id": "run-123"}
    assert [(e.name, e.attributes) for e in span.events] == [
        ("cache.miss", {"key": "run-123"}),
        ("retry.attempt", {"attempt": 1}),
    ]
    assert span.status is SpanStatus.OK
    assert not span.is_recording
    assert isinstance(span.duration_ms, float)
    assert span.duration_ms > 0
    assert capsys.readouterr().out == f"Duration: {span.duration_ms}ms\n"


def test_noop_tracer() -> None:
    ns = run(NOOP_TRACER)
    span = ns["span"]
    assert isinstance(ns["tracer"], NoopTracer)
    assert isinstance(span, NoopSpan)
    assert span.attributes == {}  # the attribute was not kept
    assert not span.is_sampled
    assert Tracer().get_current_span() is None


def test_in_memory_tracer(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run(IN_MEMORY_TRACER)
    tracer, spans, parent, child = ns["tracer"], ns["spans"], ns["parent"], ns["child"]
    assert capsys.readouterr().out == "Recorded 2 spans\n"
    assert spans == [child, parent]  # in the order they ended
    assert child.parent_span_id == parent.span_id
    assert child.trace_id == parent.trace_id
    assert parent.parent_span_id is None
    assert parent.attributes["key"] == "value"
    assert child.attributes["nested"] is True
    assert ns["read_spans"] == []  # no span is called "store.read"
    assert tracer.get_spans() == []  # cleared
    assert tracer.max_spans == 1000


@pytest.mark.timeout(120)
def test_open_telemetry_tracer() -> None:
    """The three tracers construct against their endpoints; the example's span reaches the
    Zipkin receiver on localhost:9411, and a span through each of the two tracers the example
    rebinds reaches the OTLP (4317, gRPC) and Jaeger (14268, Thrift) receivers."""
    otlp = start_receiver(receivers.OtlpGrpcReceiver, 4317)
    jaeger = start_receiver(receivers.JaegerReceiver, 14268)
    zipkin = start_receiver(receivers.ZipkinReceiver, 9411)
    before, _alive = live_otel_tracers()
    try:
        ns = run(OPEN_TELEMETRY_TRACER, SpanKind=SpanKind, SpanStatus=SpanStatus)
        created = new_otel_tracers(before)
        by_type = {tracer.exporter_type: tracer for tracer in created}
        assert sorted(by_type) == ["jaeger", "otlp", "zipkin"]
        assert ns["tracer"] is by_type["zipkin"]
        assert {tracer.service_name for tracer in created} == {"truthound"}
        assert type(by_type["jaeger"].span_exporter).__name__ == "JaegerThriftExporter"
        assert type(by_type["zipkin"].span_exporter).__name__ == "ZipkinExporter"
        for kind in ("otlp", "jaeger"):
            with by_type[kind].start_span(f"probe.{kind}"):
                pass
        for tracer in created:
            assert tracer.shutdown(timeout_seconds=15)
        (read,) = zipkin.wait_for(1)
        assert (read.name, read.kind, read.status) == ("store.read", "client", "ok")
        assert read.attributes.items() >= {"store.type": "s3", "item.id": "run-123"}.items()
        assert read.service_name == "truthound"
        assert read.trace_id == ns["span"].trace_id
        assert [s.name for s in otlp.wait_for(1)] == ["probe.otlp"]
        assert [s.name for s in jaeger.wait_for(1)] == ["probe.jaeger"]
        assert [t.dropped_spans for t in created] == [0, 0, 0]
    finally:
        for tracer in new_otel_tracers(before):
            tracer.shutdown(timeout_seconds=5)
        for receiver in (otlp, jaeger, zipkin):
            receiver.close()


@pytest.mark.timeout(60)
def test_tracer_factory() -> None:
    """The first tracer exports OTLP over gRPC to localhost:4317 (a span through it arrives);
    the rebound ``tracer`` is the disabled one."""
    collector = start_receiver(receivers.OtlpGrpcReceiver, 4317)
    before, _alive = live_otel_tracers()
    try:
        ns = run(TRACER_FACTORY)
        assert isinstance(ns["tracer"], NoopTracer)
        created = new_otel_tracers(before)
        (enabled,) = created
        assert (enabled.service_name, enabled.exporter_type, enabled.endpoint) == (
            "truthound",
            "otlp",
            "http://localhost:4317",
        )
        with enabled.start_span("probe"):
            pass
        assert enabled.shutdown(timeout_seconds=15)
        (span,) = collector.wait_for(1)
        assert (span.name, span.service_name) == ("probe", "truthound")
    finally:
        for tracer in new_otel_tracers(before):
            tracer.shutdown(timeout_seconds=5)
        collector.close()


@pytest.mark.parametrize("incoming", ["valid", "absent", "placeholder"])
@pytest.mark.parametrize("tracer_kind", ["in-memory", "disabled"])
def test_context_propagation(incoming: str, tracer_kind: str) -> None:
    """``headers`` of an incoming request, with a valid ``traceparent``, none, or the spec's
    placeholder (invalid) one; ``tracer`` a recording tracer or the disabled one of the Tracer
    Factory example."""
    headers = {
        "valid": {"traceparent": INCOMING},
        "absent": {},
        "placeholder": {"traceparent": "00-abc123def456-span789-01"},
    }[incoming]
    tracer = InMemoryTracer() if tracer_kind == "in-memory" else Tracer.create(enabled=False)
    ns = run(CONTEXT_PROPAGATION, headers=headers, tracer=tracer, SpanContext=SpanContext)
    span, outgoing = ns["span"], ns["outgoing_headers"]["traceparent"]
    if incoming == "valid":
        assert ns["incoming_context"].trace_id == TRACE
    else:
        assert ns["incoming_context"] is None  # absent or invalid: start a new trace
    if tracer_kind == "in-memory":
        # The span continues the caller's trace (or starts one) and propagates its own id.
        assert outgoing == f"00-{span.trace_id}-{span.span_id}-01"
        assert (span.trace_id == TRACE) is (incoming == "valid")
        assert span.parent_span_id == (REMOTE if incoming == "valid" else None)
        assert tracer.get_spans() == [span]
    elif incoming == "valid":
        # Tracing disabled: the caller's context goes downstream unchanged.
        assert outgoing == INCOMING
    else:
        # Tracing disabled and no trace to continue: the all-zero "no trace" header, which
        # every receiver (ours included) reads as absent.
        assert outgoing == f"00-{'0' * 32}-{'0' * 16}-00"
        assert SpanContext.from_traceparent(outgoing) is None
