"""``ObservableStore``: a complete store whose every operation is traced, measured and audited
exactly once, with the three pillars correlated."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from truthound.stores.base import BaseStore, StoreNotFoundError, StoreQuery
from truthound.stores.filesystem import FileSystemStore
from truthound.stores.memory import InMemoryStore
from truthound.stores.observability import (
    AuditConfig,
    AuditEventType,
    AuditStatus,
    InMemoryAuditBackend,
    InMemoryMetricsBackend,
    InMemoryTracer,
    JsonAuditBackend,
    MetricsConfig,
    NoopTracer,
    ObservabilityConfig,
    ObservabilityContext,
    ObservabilityManager,
    ObservableStore,
    SpanKind,
    SpanStatus,
    TracingConfig,
    get_current_span,
)
from truthound.stores.observability.config import AuditLogLevel


@pytest.fixture
def tracer() -> InMemoryTracer:
    return InMemoryTracer(max_spans=10_000)


@pytest.fixture
def config() -> ObservabilityConfig:
    return ObservabilityConfig(
        audit=AuditConfig(backend="memory", level=AuditLogLevel.VERBOSE),
        metrics=MetricsConfig(prefix=""),
    )


@pytest.fixture
def observed(
    config: ObservabilityConfig, tracer: InMemoryTracer, tmp_path: Path
) -> Iterator[ObservableStore[dict[str, Any]]]:
    manager = ObservabilityManager(config, store_type="FileSystemStore", tracer=tracer)
    store = ObservableStore(FileSystemStore(tmp_path / "items"), manager=manager)
    with store:
        yield store


def _operations(store: ObservableStore[Any], operation: str, status: str = "success") -> float:
    backend = store.observability.metrics_backend
    labels = {"operation": operation, "status": status}
    return float(backend.get("store_operations_total", labels) or 0.0)


def _audit(store: ObservableStore[Any], operation: str) -> list[Any]:
    return [e for e in store.get_audit_events(limit=1000) if e.operation == operation]


def test_it_is_a_complete_store(observed: ObservableStore[dict[str, Any]]) -> None:
    assert isinstance(observed, BaseStore)
    assert observed.is_initialized
    item_id = observed.save({"data_asset": "orders", "run_time": "2026-01-01T00:00:00+00:00"})
    assert observed.exists(item_id)
    assert observed.get(item_id)["data_asset"] == "orders"
    assert observed.list_ids() == [item_id]
    assert [r["id"] for r in observed.query(StoreQuery(data_asset="orders"))] == [item_id]
    assert [r["id"] for r in observed.iter_query(StoreQuery(), batch_size=1)] == [item_id]
    latest = observed.get_latest("orders")
    assert latest is not None
    assert latest["id"] == item_id
    assert observed.count() == 1
    ids = observed.save_batch([{"id": "b1"}, {"id": "b2"}])
    assert ids == ["b1", "b2"]
    assert observed.delete_batch(["b1", "b2", "b3"]) == 2
    assert observed.delete(item_id) is True
    assert observed.clear() == 0
    assert observed.config is observed.store.config


def test_each_operation_is_recorded_exactly_once_in_every_pillar(
    observed: ObservableStore[dict[str, Any]], tracer: InMemoryTracer
) -> None:
    tracer.clear()
    item_id = observed.save({"data_asset": "orders"})
    observed.query(StoreQuery())
    list(observed.iter_query(StoreQuery(), batch_size=1))
    for operation in ("save", "query", "iter_query"):
        assert _operations(observed, operation) == 1.0, operation
        assert len(_audit(observed, operation)) == 1, operation
        assert len(tracer.get_spans_by_name(f"store.{operation}")) == 1, operation
    histogram = observed.observability.metrics_backend.get(
        "store_operation_duration_seconds", {"operation": "save"}
    )
    assert histogram.count == 1
    (created,) = _audit(observed, "save")
    assert created.event_type is AuditEventType.CREATE
    assert created.resource_id == item_id  # learnt inside the block, after the save
    assert tracer.get_spans_by_name("store.save")[0].attributes["store.resource_id"] == item_id


def test_store_errors_propagate_unchanged_and_are_recorded_as_failures(
    observed: ObservableStore[dict[str, Any]], tracer: InMemoryTracer
) -> None:
    with pytest.raises(StoreNotFoundError) as caught:
        observed.get("missing")
    assert caught.value.identifier == "missing"
    assert _operations(observed, "get", "failure") == 1.0
    errors = observed.observability.metrics_backend.get(
        "store_errors_total", {"error_type": "StoreNotFoundError"}
    )
    assert errors == 1.0
    (event,) = _audit(observed, "get")
    assert event.status is AuditStatus.FAILURE
    assert event.error_type == "StoreNotFoundError"
    (span,) = tracer.get_spans_by_name("store.get")
    assert span.status is SpanStatus.ERROR
    assert span.kind is SpanKind.CLIENT


def test_audit_events_carry_the_ids_of_their_span(
    observed: ObservableStore[dict[str, Any]], tracer: InMemoryTracer
) -> None:
    observed.count()
    (span,) = tracer.get_spans_by_name("store.count")
    (event,) = _audit(observed, "count")
    assert (event.trace_id, event.span_id) == (span.trace_id, span.span_id)


def test_a_callers_trace_is_continued(
    observed: ObservableStore[dict[str, Any]], tracer: InMemoryTracer
) -> None:
    upstream = ObservabilityContext(
        correlation_id="req-1", trace_id="4bf92f3577b34da6a3ce929d0e0e4736", user_id="bob"
    )
    observed.count(context=upstream)
    (span,) = tracer.get_spans_by_name("store.count")
    assert span.trace_id == upstream.trace_id
    (event,) = _audit(observed, "count")
    assert (event.correlation_id, event.user_id) == ("req-1", "bob")


def test_views_share_the_parents_backends(observed: ObservableStore[dict[str, Any]]) -> None:
    alice = observed.with_user("alice", tenant_id="acme")
    scoped = observed.with_context(ObservabilityContext(correlation_id="batch-7"))
    assert alice.observability is observed.observability
    assert scoped.observability is observed.observability
    alice.count()
    scoped.count()
    events = _audit(observed, "count")
    assert {(e.user_id, e.tenant_id) for e in events} == {("alice", "acme"), (None, None)}
    assert {e.correlation_id for e in events} >= {"batch-7"}
    assert _operations(observed, "count") == 2.0


def test_initialise_and_close_are_observed_and_close_flushes(
    config: ObservabilityConfig, tracer: InMemoryTracer
) -> None:
    store = ObservableStore(
        InMemoryStore(),
        manager=ObservabilityManager(config, store_type="InMemoryStore", tracer=tracer),
    )
    assert not store.is_initialized
    with store as entered:
        assert entered is store
        assert store.is_initialized
    assert [s.name for s in tracer.get_spans()] == ["store.initialize", "store.close"]
    kinds = [e.event_type for e in store.get_audit_events()]
    assert kinds == [AuditEventType.CLOSE, AuditEventType.INITIALIZE]


def test_the_manager_names_the_wrapped_store() -> None:
    store = ObservableStore(InMemoryStore(), ObservabilityConfig.disabled())
    assert store.observability.store_type == "InMemoryStore"
    assert store.observability.store_id == "default"


def test_metrics_exposition_shows_the_standard_metrics_and_exemplars(
    observed: ObservableStore[dict[str, Any]], tracer: InMemoryTracer
) -> None:
    observed.count()
    text = observed.get_metrics()
    assert (
        'store_operations_total{operation="count",status="success",store="FileSystemStore"}' in text
    )
    openmetrics = observed.observability.metrics_backend.export("openmetrics")
    (span,) = tracer.get_spans_by_name("store.count")
    exemplar = re.search(
        r'store_operation_duration_seconds_bucket\{operation="count".*# \{trace_id="(\w+)"',
        openmetrics,
    )
    assert exemplar is not None
    assert exemplar.group(1) == span.trace_id


def test_the_librarys_own_counters_are_exposed_as_metrics(
    observed: ObservableStore[dict[str, Any]],
) -> None:
    observed.count()
    text = observed.get_metrics()
    written = re.search(
        r'observability_audit_events_total\{backend="InMemoryAuditBackend",outcome="written"\} '
        r"(\S+)",
        text,
    )
    assert written is not None
    assert float(written.group(1)) >= 2.0  # initialize and count at least
    for name in (
        "observability_spans_total",
        "observability_metric_series_overflows_total",
        "observability_push_failures_total",
    ):
        assert f"# TYPE {name} counter" in text


def test_dropped_audit_events_become_visible_as_a_metric(
    config: ObservabilityConfig, tracer: InMemoryTracer
) -> None:
    audit = InMemoryAuditBackend(max_events=2)
    metrics = InMemoryMetricsBackend(prefix="")
    store = ObservableStore(
        InMemoryStore(),
        manager=ObservabilityManager(
            config, "InMemoryStore", audit_backend=audit, metrics_backend=metrics, tracer=tracer
        ),
    )
    for _ in range(5):
        store.count()
    assert audit.evicted_events == 3
    evicted = metrics.get(
        "observability_audit_events_total",
        {"backend": "InMemoryAuditBackend", "outcome": "evicted"},
    )
    assert evicted is None or evicted == 0.0  # published at read time, not before
    metrics.export()
    assert (
        metrics.get(
            "observability_audit_events_total",
            {"backend": "InMemoryAuditBackend", "outcome": "evicted"},
        )
        == 3.0
    )


def test_audit_files_deleted_by_retention_are_visible_as_a_metric(
    tmp_path: Path, config: ObservabilityConfig, tracer: InMemoryTracer
) -> None:
    audit = JsonAuditBackend(
        directory=tmp_path, rotate_daily=False, max_file_size_mb=0.001, max_files=2
    )
    metrics = InMemoryMetricsBackend(prefix="")
    store = ObservableStore(
        InMemoryStore(),
        manager=ObservabilityManager(
            config, "InMemoryStore", audit_backend=audit, metrics_backend=metrics, tracer=tracer
        ),
    )
    for _ in range(40):
        store.count()
    assert audit.pruned_segments > 0
    metrics.export()
    backend = {"backend": "JsonAuditBackend"}
    pruned = metrics.get("observability_audit_segments_pruned_total", backend)
    assert pruned == float(audit.pruned_segments)
    audit.close()


def test_disabled_pillars_record_nothing() -> None:
    store = ObservableStore(InMemoryStore(), ObservabilityConfig.disabled())
    manager = store.observability
    assert manager.audit is None
    assert manager.metrics is None
    assert isinstance(manager.tracer, NoopTracer)
    store.save({"id": "x"})
    assert store.get_metrics() == ""
    assert store.get_audit_events() == []


def test_default_configuration_builds_without_network_or_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = ObservabilityConfig(tracing=TracingConfig(enabled=False))
    store = ObservableStore(InMemoryStore(), config)
    with store:
        store.save({"id": "x"})
    assert store.observability.metrics_backend.http_server_port is None
    events = store.get_audit_events(event_type=AuditEventType.CREATE)
    assert [e.resource_id for e in events] == ["x"]
    assert list((tmp_path / ".truthound" / "audit").iterdir())
    store.observability.shutdown()


def test_non_stores_are_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="is not a BaseStore"):
        ObservableStore({"not": "a store"})  # type: ignore[arg-type]


def test_data_previews_are_audited_redacted_and_kept_out_of_spans(tracer: InMemoryTracer) -> None:
    config = ObservabilityConfig(
        audit=AuditConfig(backend="memory", include_data_preview=True, max_data_preview_size=200),
        metrics=MetricsConfig(prefix=""),
    )
    store = ObservableStore(
        InMemoryStore(), manager=ObservabilityManager(config, "InMemoryStore", tracer=tracer)
    )
    store.save({"id": "u1", "owner": "bob@example.com", "password": "hunter2", "size": 3})
    store.save({"id": "u2", "blob": "x" * 500})
    small, large = reversed(_audit(store, "save"))
    assert small.metadata["data_preview"]["id"] == "u1"
    assert small.metadata["data_preview"]["password"] == "[REDACTED]"
    assert "bob@example.com" not in json.dumps(small.to_dict())
    assert "hunter2" not in json.dumps(small.to_dict())
    assert large.metadata["data_preview"].endswith("...")
    assert len(large.metadata["data_preview"]) == 203
    for span in tracer.get_spans_by_name("store.save"):
        assert not any("preview" in key for key in span.attributes)


def test_stopping_an_iteration_early_is_a_successful_operation(
    observed: ObservableStore[dict[str, Any]], tracer: InMemoryTracer
) -> None:
    observed.save_batch([{"id": f"i{n}"} for n in range(5)])
    iterator = observed.iter_query(StoreQuery(), batch_size=2)
    assert next(iterator)["id"].startswith("i")
    iterator.close()
    assert _operations(observed, "iter_query") == 1.0
    assert _operations(observed, "iter_query", "failure") == 0.0
    (event,) = _audit(observed, "iter_query")
    assert event.status is AuditStatus.SUCCESS
    (span,) = tracer.get_spans_by_name("store.iter_query")
    assert span.status is SpanStatus.OK


def test_a_paused_iteration_leaves_the_callers_context_alone(
    observed: ObservableStore[dict[str, Any]], tracer: InMemoryTracer
) -> None:
    """Between items the caller's code runs outside the iteration's span: what it does (other
    operations, its own spans) does not join that trace, interleaved iterators included, and
    another thread can close the iterator."""
    observed.save_batch([{"id": f"i{n}"} for n in range(4)])
    first = observed.iter_query(StoreQuery(), batch_size=1)
    second = observed.iter_query(StoreQuery(), batch_size=1)
    for _ in zip(first, second, strict=False):
        assert get_current_span() is None
        observed.get("i1")
    second.close()  # zip stopped at the first's end: the second still had its last item
    with tracer.start_span("next_request") as later:
        pass
    assert later.parent_span_id is None
    for span in tracer.get_spans_by_name("store.get"):
        assert span.parent_span_id is None
    paused = observed.iter_query(StoreQuery(), batch_size=1)
    next(paused)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            paused.close()
        except BaseException as error:  # reported by the assertion below
            errors.append(error)

    closer = threading.Thread(target=close)
    closer.start()
    closer.join()
    assert errors == []
    assert _operations(observed, "iter_query") == 3.0


def test_closing_a_store_releases_what_it_built(tmp_path: Path) -> None:
    config = ObservabilityConfig(
        audit=AuditConfig(backend="json", file_path=tmp_path / "audit.jsonl"),
        metrics=MetricsConfig(enable_http_server=True, http_port=0),
        tracing=TracingConfig(enabled=False),
    )
    threads_before = threading.active_count()
    for _ in range(5):
        store = ObservableStore(InMemoryStore(), config)
        with store:
            store.save({"id": "x"})
            assert store.observability.metrics_backend.http_server_port is not None
        assert store.observability.metrics_backend.http_server_port is None
    assert threading.active_count() <= threads_before + 1  # at most a lingering daemon exiting
    events = JsonAuditBackend(config.audit, file_path=tmp_path / "audit.jsonl").query(limit=None)
    assert len([e for e in events if e.operation == "save"]) == 5


def test_closing_a_view_leaves_the_shared_stack_open(observed: ObservableStore[Any]) -> None:
    view = observed.with_user("alice")
    view.close()
    observed.count()  # the root's audit writer and metrics still work
    assert _operations(observed, "count") == 1.0


def test_store_spans_nest_under_the_callers_current_span(
    observed: ObservableStore[dict[str, Any]], tracer: InMemoryTracer
) -> None:
    with tracer.start_span("http.request") as request:
        observed.count()
    (span,) = tracer.get_spans_by_name("store.count")
    assert span.trace_id == request.trace_id
    assert span.parent_span_id == request.span_id


def test_default_tracing_without_an_endpoint_stays_in_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    config = ObservabilityConfig(audit=AuditConfig(backend="memory"))
    with pytest.warns(RuntimeWarning, match="no OTLP endpoint is configured"):
        store = ObservableStore(InMemoryStore(), config)
    assert isinstance(store.observability.tracer, InMemoryTracer)
    with store:
        store.save({"id": "x"})
    assert [s.name for s in store.observability.tracer.get_spans()][-2:] == [
        "store.save",
        "store.close",
    ]


def test_own_counters_are_published_once_per_component(tracer: InMemoryTracer) -> None:
    config = ObservabilityConfig(audit=AuditConfig(backend="memory"))
    metrics = InMemoryMetricsBackend(prefix="")
    shared_audit = InMemoryAuditBackend()
    stores = [
        ObservableStore(
            InMemoryStore(),
            manager=ObservabilityManager(
                config,
                "InMemoryStore",
                audit_backend=audit,
                metrics_backend=metrics,
                tracer=tracer,
            ),
        )
        for audit in (shared_audit, shared_audit, InMemoryAuditBackend())
    ]
    for store in stores:
        store.save({"id": "x"})
    metrics.export()
    metrics.export()
    written = metrics.get(
        "observability_audit_events_total",
        {"backend": "InMemoryAuditBackend", "outcome": "written"},
    )
    assert written == 3.0  # two events in the shared backend, one in the other; none twice
    assert len(metrics._collect_hooks) == 1
