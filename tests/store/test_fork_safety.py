"""Self-observation across a fork: the library's own counters, published as metrics by every
process of a pre-fork server, add up exactly (nothing is counted twice, nothing is lost)."""

from __future__ import annotations

from pathlib import Path

import pytest
from forking import run_forked
from prometheus_client.parser import text_string_to_metric_families

from truthound.stores.observability import ObservabilityConfig, ObservabilityManager
from truthound.stores.observability.audit import AsyncAuditBackend, JsonAuditBackend
from truthound.stores.observability.config import MetricsConfig
from truthound.stores.observability.metrics import PrometheusMetricsBackend
from truthound.stores.observability.tracing import InMemoryTracer

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def persisted(text: str) -> float:
    """``*observability_audit_events_total{backend="AsyncAuditBackend",outcome="persisted"}``
    (the backend's prefix applies), read with prometheus_client's parser."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("observability_audit_events_total") and sample.labels == {
                "backend": "AsyncAuditBackend",
                "outcome": "persisted",
            }:
                return float(sample.value)
    raise AssertionError("no persisted audit events in the exposition")


def test_a_pre_fork_server_publishes_each_audit_event_once(core: str, tmp_path: Path) -> None:
    """Multiprocess metrics (each process its own values, summed at scrape): the parent
    persisted 3 events and published them before forking; a child persists 2 more. The sum
    over both processes is 5: the child publishes its own 2, not the parent's 3 again, and not
    less because its delivery counters started from zero."""
    metrics = PrometheusMetricsBackend(MetricsConfig(multiprocess_dir=str(tmp_path / "metrics")))
    audit = AsyncAuditBackend(JsonAuditBackend(directory=tmp_path / "audit", rotate_daily=False))
    manager = ObservabilityManager(
        ObservabilityConfig(),
        store_type="fork",
        audit_backend=audit,
        metrics_backend=metrics,
        tracer=InMemoryTracer(),
    )
    assert manager.audit is not None
    for i in range(3):
        manager.audit.log_create(f"parent-{i}")
    assert audit.flush()
    assert persisted(metrics.export()) == 3.0

    def child() -> None:
        assert manager.audit is not None
        for i in range(2):
            manager.audit.log_create(f"child-{i}")
        assert audit.flush()
        assert audit.persisted_events == 2
        metrics.export()  # publishes the child's growth into its own values

    status, error = run_forked(child)
    assert status == 0, error
    assert persisted(metrics.export()) == 5.0
    audit.close()
    metrics.close()
