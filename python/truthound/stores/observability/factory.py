"""Building observable stores from configuration and the environment (the existing ``factory``
API).

Environment variables (read by ``get_default_observability_config``; booleans accept
``true/1/yes/on`` and ``false/0/no/off``, case-insensitively):

=====================================  ==============================================
``TRUTHOUND_AUDIT_ENABLED``            audit on/off (default on)
``TRUTHOUND_AUDIT_LEVEL``              ``minimal``, ``standard``, ``verbose``, ``debug``
``TRUTHOUND_AUDIT_BACKEND``            ``memory``, ``file``, ``json``
``TRUTHOUND_AUDIT_PATH``               audit file path
``TRUTHOUND_AUDIT_RETENTION_DAYS``     days to keep audit files
``TRUTHOUND_AUDIT_FAIL_CLOSED``        refuse operations no audit backend can record
``TRUTHOUND_AUDIT_INTEGRITY_KEY_ENV``  name of the variable holding the audit chain's key
``TRUTHOUND_METRICS_ENABLED``          metrics on/off (default on)
``TRUTHOUND_METRICS_PREFIX``           metric name prefix
``TRUTHOUND_METRICS_PORT``             scrape endpoint port
``TRUTHOUND_METRICS_HTTP_ENABLED``     serve the scrape endpoint
``TRUTHOUND_METRICS_PUSH_GATEWAY``     Pushgateway URL (pushes periodically)
``TRUTHOUND_TRACING_ENABLED``          tracing on/off (default **off**)
``TRUTHOUND_TRACING_SERVICE_NAME``     ``service.name`` of the spans
``TRUTHOUND_TRACING_ENDPOINT``         exporter endpoint
``TRUTHOUND_TRACING_SAMPLER``          ``always_on``, ``always_off``, ``ratio``, ``parent_based``
``TRUTHOUND_TRACING_SAMPLE_RATIO``     0.0 - 1.0
``TRUTHOUND_TRACING_EXPORTER``         ``otlp``, ``jaeger``, ``zipkin``, ``console``, ``noop``
``TRUTHOUND_ENVIRONMENT``              deployment environment name
=====================================  ==============================================

An invalid value raises ``InvalidArgumentError`` naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from truthound.stores.base import BaseStore

from .config import AuditConfig, MetricsConfig, ObservabilityConfig, TracingConfig
from .errors import InvalidArgumentError
from .protocols import ObservabilityContext
from .store import ObservableStore

__all__ = ["create_observable_store", "get_default_observability_config", "wrap_store"]

T = TypeVar("T")

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _boolean(variable: str, text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgumentError(
        f"{variable}={text!r} is not a boolean (true/false/1/0/yes/no/on/off)"
    )


def _number(kind: Callable[[str], Any]) -> Callable[[str, str], Any]:
    def parse(variable: str, text: str) -> Any:
        try:
            return kind(text.strip())
        except ValueError:
            raise InvalidArgumentError(
                f"{variable}={text!r} is not a valid {kind.__name__}"
            ) from None

    return parse


def _text(_variable: str, text: str) -> str:
    return text


# variable -> (section, field, parser)
_VARIABLES: dict[str, tuple[str, str, Callable[[str, str], Any]]] = {
    "TRUTHOUND_AUDIT_ENABLED": ("audit", "enabled", _boolean),
    "TRUTHOUND_AUDIT_LEVEL": ("audit", "level", _text),
    "TRUTHOUND_AUDIT_BACKEND": ("audit", "backend", _text),
    "TRUTHOUND_AUDIT_PATH": ("audit", "file_path", _text),
    "TRUTHOUND_AUDIT_RETENTION_DAYS": ("audit", "retention_days", _number(int)),
    "TRUTHOUND_AUDIT_FAIL_CLOSED": ("audit", "fail_closed", _boolean),
    "TRUTHOUND_AUDIT_INTEGRITY_KEY_ENV": ("audit", "integrity_key_env", _text),
    "TRUTHOUND_METRICS_ENABLED": ("metrics", "enabled", _boolean),
    "TRUTHOUND_METRICS_PREFIX": ("metrics", "prefix", _text),
    "TRUTHOUND_METRICS_PORT": ("metrics", "http_port", _number(int)),
    "TRUTHOUND_METRICS_HTTP_ENABLED": ("metrics", "enable_http_server", _boolean),
    "TRUTHOUND_METRICS_HTTP_ADDR": ("metrics", "http_addr", _text),
    "TRUTHOUND_METRICS_PUSH_GATEWAY": ("metrics", "push_gateway_url", _text),
    "TRUTHOUND_TRACING_ENABLED": ("tracing", "enabled", _boolean),
    "TRUTHOUND_TRACING_SERVICE_NAME": ("tracing", "service_name", _text),
    "TRUTHOUND_TRACING_ENDPOINT": ("tracing", "endpoint", _text),
    "TRUTHOUND_TRACING_SAMPLER": ("tracing", "sampler", _text),
    "TRUTHOUND_TRACING_SAMPLE_RATIO": ("tracing", "sample_ratio", _number(float)),
    "TRUTHOUND_TRACING_EXPORTER": ("tracing", "exporter", _text),
    "TRUTHOUND_ENVIRONMENT": ("", "environment", _text),
}

_SECTIONS: dict[str, type[Any]] = {
    "audit": AuditConfig,
    "metrics": MetricsConfig,
    "tracing": TracingConfig,
}


def get_default_observability_config(
    environ: Mapping[str, str] | None = None,
) -> ObservabilityConfig:
    """The configuration described by the ``TRUTHOUND_*`` environment variables (see the module
    docstring); tracing is off unless ``TRUTHOUND_TRACING_ENABLED`` turns it on."""
    environ = os.environ if environ is None else environ
    fields: dict[str, dict[str, Any]] = {"audit": {}, "metrics": {}, "tracing": {"enabled": False}}
    top: dict[str, Any] = {}
    for variable, (section, name, parse) in _VARIABLES.items():
        text = environ.get(variable)
        if text is None or text == "":
            continue
        value = parse(variable, text)
        (fields[section] if section else top)[name] = value
    try:
        sections = {section: _SECTIONS[section](**values) for section, values in fields.items()}
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f"from the environment: {error}") from None
    return ObservabilityConfig(**sections, **top)


def _apply_overrides(
    config: ObservabilityConfig, overrides: Mapping[str, Any]
) -> ObservabilityConfig:
    """A copy of ``config`` with ``overrides`` applied.

    Keys are ``ObservabilityConfig`` fields and properties (``environment``, ``audit``,
    ``tracing_enabled``...) or ``<section>_<field>`` for a pillar's field (``audit_level``,
    ``metrics_prefix``, ``tracing_service_name``...).
    """
    top_fields = {field.name for field in dataclasses.fields(ObservabilityConfig)}
    result = dataclasses.replace(
        config,
        audit=dataclasses.replace(config.audit),
        metrics=dataclasses.replace(config.metrics),
        tracing=dataclasses.replace(config.tracing),
    )
    section_updates: dict[str, dict[str, Any]] = {"audit": {}, "metrics": {}, "tracing": {}}
    for key, value in overrides.items():
        if key in top_fields:
            setattr(result, key, value)
            continue
        section, _, name = key.partition("_")
        section_type = _SECTIONS.get(section)
        if section_type is not None and name in {f.name for f in dataclasses.fields(section_type)}:
            section_updates[section][name] = value
            continue
        raise InvalidArgumentError(
            f"unknown observability option {key!r}: use an ObservabilityConfig field "
            "or <audit|metrics|tracing>_<field>"
        )
    for section, updates in section_updates.items():
        if updates:
            # replace() re-runs validation, so a bad override is reported with its field name.
            setattr(result, section, dataclasses.replace(getattr(result, section), **updates))
    return result


def create_observable_store(
    store: BaseStore[T, Any],
    config: ObservabilityConfig | None = None,
    use_env_config: bool = True,
    **overrides: Any,
) -> ObservableStore[T]:
    """Wraps ``store`` with observability.

    The configuration is ``config``, else the environment's (``use_env_config``), else the
    defaults; ``overrides`` then adjust it (see ``_apply_overrides``), and ``context=`` sets the
    store's default ``ObservabilityContext``.
    """
    context: ObservabilityContext | None = overrides.pop("context", None)
    if config is None:
        config = get_default_observability_config() if use_env_config else ObservabilityConfig()
    return ObservableStore(store, _apply_overrides(config, overrides), context=context)


def wrap_store(
    store: BaseStore[T, Any],
    audit: bool = True,
    metrics: bool = True,
    tracing: bool = False,
    **kwargs: Any,
) -> ObservableStore[T]:
    """Wraps ``store`` with the chosen pillars on the default configuration (no environment);
    ``kwargs`` are overrides as for ``create_observable_store``."""
    return create_observable_store(
        store,
        use_env_config=False,
        audit_enabled=audit,
        metrics_enabled=metrics,
        tracing_enabled=tracing,
        **kwargs,
    )
