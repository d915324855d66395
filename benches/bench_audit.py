"""Audit workloads: native vs pure vs the existing truthound module, same run.

The existing module (truthound 3.2.0's ``truthound/stores/observability/audit.py``) is read from
the wheel that ``pip download`` fetches into ``.benchmarks/`` (it needs only the standard library
and the config/protocols API, which this package provides); its benchmarks are skipped when the
wheel cannot be fetched.

Throughput workloads log ``EVENTS`` events per round and close (everything persisted); the
table's time is per round, so events/s = EVENTS / median.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import label
from truthound.stores.observability import _core
from truthound.stores.observability.audit import (
    AsyncAuditBackend,
    AuditEvent,
    AuditEventType,
    AuditLogger,
    DataRedactor,
    InMemoryAuditBackend,
    JsonAuditBackend,
)

EXISTING = "truthound (existing)"
WHEEL_SPEC = "truthound==3.2.0"
EVENTS = 50_000
EMAIL = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}\b"
SSN = r"\b\d{3}-\d{2}-\d{4}\b"

# A 15-string event: ids, summaries and metadata as a store would log them.
EVENT_DATA = {
    "event_id": "5b3c1f2e-8d4a-4f6b-9a1c-2e3d4f5a6b7c",
    "store_type": "s3",
    "store_id": "my-bucket",
    "operation": "save",
    "resource_id": "run-2024-06-01-0001",
    "user_id": "admin",
    "correlation_id": "corr-7f3e",
    "user_agent": "truthound/1.0 (linux)",
    "input_summary": "validation run for dataset orders",
    "error_message": "contact ops@example.com for access",
    "metadata": {
        "region": "us-east-1",
        "dataset": "orders",
        "checkpoint": "nightly",
        "owner": "data-platform",
        "note": "ssn 123-45-6789 seen in column x",
    },
}
TEN_KB = ("lorem ipsum dolor sit amet, consectetur adipiscing elit 0123456789 " * 160)[:10_240]


def _load_existing() -> types.ModuleType | None:
    folder = Path(".benchmarks/wheels")
    wheels = sorted(folder.glob("truthound-3.2.0-*.whl"))
    if not wheels:
        folder.mkdir(parents=True, exist_ok=True)
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL_SPEC,
             "-d", str(folder)],
            capture_output=True, timeout=300, check=False,
        )  # fmt: skip
        if fetched.returncode != 0:
            return None
        wheels = sorted(folder.glob("truthound-3.2.0-*.whl"))
    if not wheels:
        return None
    with zipfile.ZipFile(wheels[0]) as wheel:
        source = wheel.read("truthound/stores/observability/audit.py").decode()
    module = types.ModuleType("truthound_existing_audit")
    module.__file__ = f"{wheels[0]}/truthound/stores/observability/audit.py"
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


@pytest.fixture(scope="session")
def existing() -> types.ModuleType:
    module = _load_existing()
    if module is None:
        pytest.skip(f"{WHEEL_SPEC} could not be fetched")
    return module


@pytest.fixture
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as name:
        yield Path(name)


# ---- redaction -------------------------------------------------------------------------------


def test_redact_event(benchmark: Any, core: Any) -> None:
    label(benchmark, "audit: redact a 15-string event", core.CORE_NAME)
    redactor = DataRedactor(patterns=[EMAIL, SSN], fields_to_redact=["password", "ssn"])
    result = benchmark(redactor.redact, EVENT_DATA)
    assert result["error_message"] == "contact [REDACTED] for access"


def test_redact_event_existing(benchmark: Any, existing: Any) -> None:
    label(benchmark, "audit: redact a 15-string event", EXISTING)
    import re

    redactor = existing.DataRedactor(["password", "ssn"], [re.compile(EMAIL), re.compile(SSN)])
    result = benchmark(redactor.redact, EVENT_DATA)
    assert result["error_message"] == "contact [REDACTED] for access"


def test_redact_10kb(benchmark: Any, core: Any) -> None:
    label(benchmark, "audit: redact a 10 KB string, no match (email|SSN)", core.CORE_NAME)
    redactor = DataRedactor(patterns=[EMAIL, SSN])
    assert benchmark(redactor.redact_text, TEN_KB) == TEN_KB


def test_redact_10kb_existing(benchmark: Any, existing: Any) -> None:
    label(benchmark, "audit: redact a 10 KB string, no match (email|SSN)", EXISTING)
    import re

    redactor = existing.DataRedactor([], [re.compile(EMAIL), re.compile(SSN)])
    assert benchmark(redactor._redact_string, TEN_KB) == TEN_KB


# ---- logging on the caller's thread ----------------------------------------------------------


def test_log_create_async_json(benchmark: Any, core: Any, folder: Path) -> None:
    label(benchmark, "audit: AuditLogger.log_create via Async->Json (caller)", core.CORE_NAME)
    backend = AsyncAuditBackend(
        JsonAuditBackend(directory=folder, durability="none"), queue_size=1_000_000
    )
    logger = AuditLogger(backend, store_type="s3", store_id="my-bucket")
    benchmark(logger.log_create, "run-123", user_id="admin")
    assert backend.close(timeout=300)
    assert backend.dropped_events == 0
    assert backend.failed_events == 0


def test_log_event_async_json_existing(benchmark: Any, existing: Any, folder: Path) -> None:
    label(benchmark, "audit: AuditLogger.log_create via Async->Json (caller)", EXISTING)
    inner = existing.JsonAuditBackend(existing.AuditConfig(), file_path=folder / "audit.jsonl")
    backend = existing.AsyncAuditBackend(inner, queue_size=1_000_000)
    logger = existing.AuditLogger(backend, store_type="s3", store_id="my-bucket")
    benchmark(logger.log_event, existing.AuditEventType.CREATE, "create", resource_id="run-123",
              user_id="admin")  # fmt: skip
    backend.close()


def create_event() -> AuditEvent:
    """The event the synchronous JsonAuditBackend.log benchmarks write."""
    return AuditEvent(
        event_type=AuditEventType.CREATE,
        store_type="s3",
        store_id="b",
        item_id="run-1",
        user_id="admin",
        metadata={"region": "us-east-1"},
    )


def test_json_backend_log(benchmark: Any, core: Any, folder: Path) -> None:
    label(benchmark, "audit: JsonAuditBackend.log(event), synchronous", core.CORE_NAME)
    backend = JsonAuditBackend(directory=folder, durability="none")
    benchmark(backend.log, create_event())
    backend.close()


def test_json_backend_log_existing(benchmark: Any, existing: Any, folder: Path) -> None:
    label(benchmark, "audit: JsonAuditBackend.log(event), synchronous", EXISTING)
    backend = existing.JsonAuditBackend(
        existing.AuditConfig(batch_size=1), file_path=folder / "audit.jsonl"
    )
    event = existing.AuditEvent(event_type=existing.AuditEventType.CREATE, store_type="s3",
                                store_id="b", resource_id="run-1", user_id="admin",
                                metadata={"region": "us-east-1"})  # fmt: skip
    benchmark(backend.log, event)


def test_log_event_memory(benchmark: Any, core: Any) -> None:
    label(benchmark, "audit: AuditLogger.log_event -> InMemory", core.CORE_NAME)
    logger = AuditLogger(InMemoryAuditBackend(max_events=1000), store_type="s3", store_id="b")
    benchmark(logger.log_event, AuditEventType.READ, "get", item_id="run-1", user_id="admin")


def test_log_event_memory_existing(benchmark: Any, existing: Any) -> None:
    label(benchmark, "audit: AuditLogger.log_event -> InMemory", EXISTING)
    backend = existing.InMemoryAuditBackend()
    logger = existing.AuditLogger(backend, store_type="s3", store_id="b")

    def log() -> None:
        logger.log_event(existing.AuditEventType.READ, "get", resource_id="run-1",
                         user_id="admin")  # fmt: skip
        if len(backend._events) > 1000:
            backend._events.clear()

    benchmark(log)


# ---- persisted throughput --------------------------------------------------------------------


def _persist(core_name: str, root: Path, round_no: list[int], key: bytes | None = None) -> None:
    round_no[0] += 1
    with _core.use_core(core_name):  # type: ignore[arg-type]
        backend = AsyncAuditBackend(
            JsonAuditBackend(
                directory=root / f"r{round_no[0]}", durability="none", integrity_key=key
            ),
            queue_size=10_000,
        )
        logger = AuditLogger(backend, store_type="s3", store_id="my-bucket")
        log_create = logger.log_create
        for _ in range(EVENTS):
            log_create("run-123", user_id="admin")
        assert backend.close(timeout=600)
    assert backend.persisted_events == EVENTS  # 0 lost


def test_persisted_throughput(benchmark: Any, core: Any, folder: Path) -> None:
    label(benchmark, f"audit: {EVENTS:,} log_create persisted to disk (Async->Json)",
          core.CORE_NAME)  # fmt: skip
    rounds = 5 if core.CORE_NAME == "native" else 2
    benchmark.pedantic(_persist, args=(core.CORE_NAME, folder, [0]), rounds=rounds, iterations=1)
    benchmark.extra_info["events_per_second"] = EVENTS / benchmark.stats.stats.median


def test_persisted_throughput_existing(benchmark: Any, existing: Any, folder: Path) -> None:
    label(benchmark, f"audit: {EVENTS:,} log_create persisted to disk (Async->Json)", EXISTING)
    counter = [0]

    def persist() -> None:
        counter[0] += 1
        inner = existing.JsonAuditBackend(
            existing.AuditConfig(), file_path=folder / f"r{counter[0]}.jsonl"
        )
        backend = existing.AsyncAuditBackend(inner, queue_size=EVENTS)
        logger = existing.AuditLogger(backend, store_type="s3", store_id="my-bucket")
        for _ in range(EVENTS):
            logger.log_event(existing.AuditEventType.CREATE, "create", resource_id="run-123",
                             user_id="admin")  # fmt: skip
        backend.flush()
        backend.close()

    benchmark.pedantic(persist, rounds=2, iterations=1)
    benchmark.extra_info["events_per_second"] = EVENTS / benchmark.stats.stats.median


# ---- tamper evidence (issue 7): the same persisted workload with the HMAC chain on ------------

KEY = b"benchmark integrity key, 32 byte"


def test_persisted_throughput_tamper_evident(benchmark: Any, core: Any, folder: Path) -> None:
    """Compare with "persisted to disk (Async->Json)": the target is >= 70% of its events/s."""
    label(benchmark, f"audit: {EVENTS:,} log_create persisted, tamper-evident (HMAC chain)",
          core.CORE_NAME)  # fmt: skip
    rounds = 5 if core.CORE_NAME == "native" else 2
    benchmark.pedantic(
        _persist, args=(core.CORE_NAME, folder, [0], KEY), rounds=rounds, iterations=1
    )
    benchmark.extra_info["events_per_second"] = EVENTS / benchmark.stats.stats.median


def test_json_backend_log_tamper_evident(benchmark: Any, core: Any, folder: Path) -> None:
    """Compare with "JsonAuditBackend.log(event), synchronous": the same event, HMAC-chained."""
    label(benchmark, "audit: JsonAuditBackend.log(event), synchronous, tamper-evident",
          core.CORE_NAME)  # fmt: skip
    backend = JsonAuditBackend(directory=folder, durability="none", integrity_key=KEY)
    benchmark(backend.log, create_event())
    backend.close()
