"""Configuration from the environment, overrides, and the two factory functions."""

from __future__ import annotations

from pathlib import Path

import pytest

from truthound.stores.memory import InMemoryStore
from truthound.stores.observability import (
    AuditLogLevel,
    InvalidArgumentError,
    NoopTracer,
    ObservabilityConfig,
    ObservableStore,
    TracingSampler,
    create_observable_store,
    get_default_observability_config,
    wrap_store,
)


def test_the_environment_configures_every_pillar() -> None:
    config = get_default_observability_config(
        {
            "TRUTHOUND_AUDIT_ENABLED": "yes",
            "TRUTHOUND_AUDIT_LEVEL": "MINIMAL",
            "TRUTHOUND_AUDIT_BACKEND": "file",
            "TRUTHOUND_AUDIT_PATH": "/var/log/audit.log",
            "TRUTHOUND_AUDIT_RETENTION_DAYS": "30",
            "TRUTHOUND_AUDIT_FAIL_CLOSED": "on",
            "TRUTHOUND_AUDIT_INTEGRITY_KEY_ENV": "ORDERS_AUDIT_KEY",
            "TRUTHOUND_METRICS_ENABLED": "on",
            "TRUTHOUND_METRICS_PREFIX": "svc",
            "TRUTHOUND_METRICS_PORT": "9200",
            "TRUTHOUND_METRICS_HTTP_ENABLED": "1",
            "TRUTHOUND_METRICS_PUSH_GATEWAY": "http://gateway:9091",
            "TRUTHOUND_TRACING_ENABLED": "true",
            "TRUTHOUND_TRACING_SERVICE_NAME": "orders",
            "TRUTHOUND_TRACING_ENDPOINT": "http://collector:4317",
            "TRUTHOUND_TRACING_SAMPLER": "ratio",
            "TRUTHOUND_TRACING_SAMPLE_RATIO": "0.25",
            "TRUTHOUND_TRACING_EXPORTER": "zipkin",
            "TRUTHOUND_ENVIRONMENT": "staging",
        }
    )
    assert config.audit.level is AuditLogLevel.MINIMAL
    assert (config.audit.backend, config.audit.file_path) == ("file", Path("/var/log/audit.log"))
    assert config.audit.retention_days == 30
    assert config.audit.fail_closed
    assert config.audit.integrity_key_env == "ORDERS_AUDIT_KEY"
    assert (config.metrics.prefix, config.metrics.http_port) == ("svc", 9200)
    assert config.metrics.enable_http_server
    assert config.metrics.push_gateway_url == "http://gateway:9091"
    assert config.tracing_enabled
    assert (config.tracing.service_name, config.tracing.exporter) == ("orders", "zipkin")
    assert config.tracing.sampler is TracingSampler.RATIO
    assert config.tracing.sample_ratio == 0.25
    assert config.environment == "staging"


def test_tracing_is_off_unless_the_environment_turns_it_on() -> None:
    config = get_default_observability_config({})
    assert config.audit_enabled
    assert config.metrics_enabled
    assert not config.tracing_enabled


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRUTHOUND_AUDIT_ENABLED", "maybe", "TRUTHOUND_AUDIT_ENABLED='maybe' is not a boolean"),
        ("TRUTHOUND_METRICS_PORT", "ninety", "TRUTHOUND_METRICS_PORT='ninety'"),
        ("TRUTHOUND_TRACING_SAMPLE_RATIO", "1.5", "sample_ratio=1.5"),
        ("TRUTHOUND_AUDIT_LEVEL", "loud", "level='loud'"),
    ],
)
def test_bad_environment_values_are_rejected_by_name(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message.replace("(", r"\(")):
        get_default_observability_config({variable: value})


def test_create_observable_store_applies_overrides() -> None:
    store = create_observable_store(
        InMemoryStore(),
        config=ObservabilityConfig.minimal(),
        audit_backend="memory",
        metrics_prefix="",
        environment="test",
    )
    config = store.observability.config
    assert (config.audit.backend, config.metrics.prefix, config.environment) == (
        "memory",
        "",
        "test",
    )
    assert config.audit.level is AuditLogLevel.MINIMAL
    store.save({"id": "x"})
    assert 'store_operations_total{operation="save"' in store.get_metrics()


def test_create_observable_store_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUTHOUND_AUDIT_BACKEND", "memory")
    monkeypatch.setenv("TRUTHOUND_METRICS_PREFIX", "fromenv")
    store = create_observable_store(InMemoryStore())
    assert store.observability.config.metrics.prefix == "fromenv"
    assert isinstance(store.observability.tracer, NoopTracer)
    ignored = create_observable_store(
        InMemoryStore(), use_env_config=False, audit_backend="memory", tracing_enabled=False
    )
    assert ignored.observability.config.metrics.prefix == "truthound_store"


def test_unknown_overrides_are_rejected_by_name() -> None:
    with pytest.raises(InvalidArgumentError, match="'metrics_colour'"):
        create_observable_store(InMemoryStore(), use_env_config=False, metrics_colour="red")
    with pytest.raises(InvalidArgumentError, match="sample_ratio"):
        create_observable_store(InMemoryStore(), use_env_config=False, tracing_sample_ratio=7)


def test_wrap_store_chooses_the_pillars() -> None:
    store = wrap_store(InMemoryStore(), audit=False, metrics=True, tracing=False)
    assert isinstance(store, ObservableStore)
    manager = store.observability
    assert manager.audit is None
    assert manager.metrics is not None
    assert isinstance(manager.tracer, NoopTracer)
