"""Configuration of the three pillars (the existing truthound ``config`` API).

Every enum is a ``StrEnum`` (a ``str`` and an ``Enum``), so members compare equal to their values,
and every field that takes an enum also accepts its value as a string. Invalid values are rejected
at construction with an error that names the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any, TypeVar

from .errors import InvalidArgumentError

__all__ = [
    "AuditConfig",
    "AuditLogLevel",
    "MetricsConfig",
    "MetricsExportFormat",
    "ObservabilityConfig",
    "TracingConfig",
    "TracingSampler",
]


class AuditLogLevel(StrEnum):
    """How much the audit trail records.

    ``MINIMAL`` records mutations (create, update, delete, batch create/delete) and errors;
    ``STANDARD`` records everything except store initialise/close; ``VERBOSE`` and ``DEBUG`` record
    everything. Access-control events (``ACCESS_DENIED``/``ACCESS_GRANTED``) and validation
    errors are recorded at every level: an auditor must always see them.
    """

    MINIMAL = "minimal"
    STANDARD = "standard"
    VERBOSE = "verbose"
    DEBUG = "debug"


class MetricsExportFormat(StrEnum):
    """Text format of ``export()``: Prometheus 0.0.4, OpenMetrics 1.0, JSON or StatsD lines."""

    PROMETHEUS = "prometheus"
    OPENMETRICS = "openmetrics"
    JSON = "json"
    STATSD = "statsd"


class TracingSampler(StrEnum):
    """Which spans are sampled (recorded and exported)."""

    ALWAYS_ON = "always_on"
    ALWAYS_OFF = "always_off"
    RATIO = "ratio"
    PARENT_BASED = "parent_based"


_E = TypeVar("_E", bound=Enum)


def _coerce_enum(owner: str, name: str, enum_type: type[_E], value: Any) -> _E:
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value.lower() if isinstance(value, str) else value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in enum_type)
        raise InvalidArgumentError(f"{owner}.{name}={value!r} is not one of {choices}") from None


def _require(condition: bool, owner: str, name: str, value: object, reason: str) -> None:
    if not condition:
        raise InvalidArgumentError(f"{owner}.{name}={value!r}: {reason}")


def _default_sensitive_fields() -> list[str]:
    return ["password", "secret", "token", "api_key", "credential", "ssn", "credit_card"]


def _default_buckets() -> list[float]:
    return [0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]


_AUDIT_BACKENDS = ("memory", "file", "json")
_TRACING_EXPORTERS = ("otlp", "jaeger", "zipkin", "console", "noop")


@dataclass
class AuditConfig:
    """Audit trail settings; ``backend`` is ``"memory"``, ``"file"`` or ``"json"``."""

    enabled: bool = True
    level: AuditLogLevel = AuditLogLevel.STANDARD
    backend: str = "json"
    file_path: Path | None = None
    include_data_preview: bool = False
    max_data_preview_size: int = 1024
    redact_sensitive: bool = True
    sensitive_fields: list[str] = field(default_factory=_default_sensitive_fields)
    retention_days: int = 90
    batch_size: int = 100
    flush_interval_seconds: float = 5.0
    extra_context: dict[str, Any] = field(default_factory=dict)
    #: Tamper evidence of the file/JSON backends: the HMAC key itself (never printed) ...
    integrity_key: bytes | str | None = field(default=None, repr=False)
    #: ... or the name of the environment variable that holds it.
    integrity_key_env: str | None = None
    #: A checkpoint is written at least this often in a chained log (0: only at open, rotation,
    #: retention and close); it bounds the unsealed window.
    checkpoint_interval_seconds: float = 60.0
    #: Refuse operations (``AuditUnavailableError``) when no audit backend can record them.
    fail_closed: bool = False
    #: How long a fail-closed health check may take before the backend counts as unavailable.
    fail_closed_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        owner = "AuditConfig"
        _require(
            self.checkpoint_interval_seconds >= 0,
            owner,
            "checkpoint_interval_seconds",
            self.checkpoint_interval_seconds,
            "must not be negative",
        )
        _require(
            self.fail_closed_timeout_seconds > 0,
            owner,
            "fail_closed_timeout_seconds",
            self.fail_closed_timeout_seconds,
            "must be positive",
        )
        self.level = _coerce_enum(owner, "level", AuditLogLevel, self.level)
        _require(
            self.backend in _AUDIT_BACKENDS,
            owner,
            "backend",
            self.backend,
            f"expected one of {', '.join(_AUDIT_BACKENDS)}",
        )
        if self.file_path is not None:
            self.file_path = Path(self.file_path)
        _require(
            self.max_data_preview_size >= 0,
            owner,
            "max_data_preview_size",
            self.max_data_preview_size,
            "must not be negative",
        )
        _require(
            self.retention_days >= 0,
            owner,
            "retention_days",
            self.retention_days,
            "must not be negative (0 keeps files forever)",
        )
        _require(self.batch_size >= 1, owner, "batch_size", self.batch_size, "must be at least 1")
        _require(
            self.flush_interval_seconds > 0,
            owner,
            "flush_interval_seconds",
            self.flush_interval_seconds,
            "must be positive",
        )


@dataclass
class MetricsConfig:
    """Metrics settings; names become ``{prefix}_{name}`` (one trailing ``_`` of the prefix is
    dropped, so ``"app_"`` means ``"app"``), or the bare name without a prefix."""

    enabled: bool = True
    export_format: MetricsExportFormat = MetricsExportFormat.PROMETHEUS
    prefix: str = "truthound_store"
    labels: dict[str, str] = field(default_factory=dict)
    histogram_buckets: list[float] = field(default_factory=_default_buckets)
    enable_http_server: bool = False
    http_port: int = 9090
    http_path: str = "/metrics"
    push_gateway_url: str | None = None
    push_interval_seconds: float = 10.0
    include_timestamps: bool = True
    # Added by the metrics pillar (not in the existing module): the per-metric series limit
    # (label sets beyond it share one overflow series, counted), summary quantiles and the
    # sliding window they cover.
    max_series_per_metric: int = 10_000
    summary_quantiles: list[float] = field(default_factory=lambda: [0.5, 0.9, 0.95, 0.99])
    summary_max_age_seconds: float = 600.0
    # Added by the multiprocess mode (issue 8): ``multiprocess=None`` follows
    # ``metrics.multiprocess.enable()``; ``True`` requires a directory (``multiprocess_dir`` or
    # the enabled one); ``False`` keeps the backend single-process. A ``multiprocess_dir``
    # alone turns the mode on for this backend.
    multiprocess: bool | None = None
    multiprocess_dir: str | Path | None = None
    # Added: the address the HTTP endpoint binds. Loopback by default, so metrics are not
    # exposed by accident; "0.0.0.0" or "::" lets a Prometheus on another host scrape it.
    http_addr: str = "127.0.0.1"

    def __post_init__(self) -> None:
        owner = "MetricsConfig"
        _require(
            isinstance(self.http_addr, str) and bool(self.http_addr.strip()),
            owner,
            "http_addr",
            self.http_addr,
            "must be a host name or IP address",
        )
        _require(
            self.max_series_per_metric >= 1,
            owner,
            "max_series_per_metric",
            self.max_series_per_metric,
            "must be at least 1",
        )
        quantiles = [float(q) for q in self.summary_quantiles]
        _require(
            all(0.0 <= q <= 1.0 for q in quantiles) and quantiles == sorted(set(quantiles)),
            owner,
            "summary_quantiles",
            self.summary_quantiles,
            "must be strictly increasing values between 0 and 1",
        )
        self.summary_quantiles = quantiles
        _require(
            self.summary_max_age_seconds > 0,
            owner,
            "summary_max_age_seconds",
            self.summary_max_age_seconds,
            "must be positive",
        )
        self.export_format = _coerce_enum(
            owner, "export_format", MetricsExportFormat, self.export_format
        )
        _require(
            0 <= self.http_port <= 65535,
            owner,
            "http_port",
            self.http_port,
            "must be a TCP port (0-65535)",
        )
        _require(
            self.http_path.startswith("/"),
            owner,
            "http_path",
            self.http_path,
            "must start with '/'",
        )
        _require(
            self.push_interval_seconds > 0,
            owner,
            "push_interval_seconds",
            self.push_interval_seconds,
            "must be positive",
        )
        buckets = [float(b) for b in self.histogram_buckets]
        _require(
            bool(buckets) and buckets == sorted(set(buckets)),
            owner,
            "histogram_buckets",
            self.histogram_buckets,
            "must be a non-empty, strictly increasing list",
        )
        self.histogram_buckets = buckets


@dataclass
class TracingConfig:
    """Tracing settings; ``exporter``: ``otlp``, ``jaeger``, ``zipkin``, ``console``, ``noop``."""

    enabled: bool = True
    service_name: str = "truthound-store"
    sampler: TracingSampler = TracingSampler.PARENT_BASED
    sample_ratio: float = 1.0
    exporter: str = "otlp"
    endpoint: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    propagators: list[str] = field(default_factory=lambda: ["tracecontext", "baggage"])
    record_exceptions: bool = True
    record_attributes: dict[str, Any] = field(default_factory=dict)
    max_attributes: int = 128
    max_events: int = 128

    def __post_init__(self) -> None:
        owner = "TracingConfig"
        self.sampler = _coerce_enum(owner, "sampler", TracingSampler, self.sampler)
        _require(
            0.0 <= self.sample_ratio <= 1.0,
            owner,
            "sample_ratio",
            self.sample_ratio,
            "must be between 0 and 1",
        )
        _require(
            self.exporter in _TRACING_EXPORTERS,
            owner,
            "exporter",
            self.exporter,
            f"expected one of {', '.join(_TRACING_EXPORTERS)}",
        )
        _require(
            self.max_attributes >= 0,
            owner,
            "max_attributes",
            self.max_attributes,
            "must not be negative",
        )
        _require(self.max_events >= 0, owner, "max_events", self.max_events, "must not be negative")


@dataclass
class ObservabilityConfig:
    """The three pillars' settings together, plus deployment-wide fields."""

    audit: AuditConfig = field(default_factory=AuditConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracing: TracingConfig = field(default_factory=TracingConfig)
    correlation_id_header: str = "X-Correlation-ID"
    environment: str = "development"
    version: str = "unknown"

    @property
    def audit_enabled(self) -> bool:
        return self.audit.enabled

    @audit_enabled.setter
    def audit_enabled(self, value: bool) -> None:
        self.audit.enabled = value

    @property
    def metrics_enabled(self) -> bool:
        return self.metrics.enabled

    @metrics_enabled.setter
    def metrics_enabled(self, value: bool) -> None:
        self.metrics.enabled = value

    @property
    def tracing_enabled(self) -> bool:
        return self.tracing.enabled

    @tracing_enabled.setter
    def tracing_enabled(self, value: bool) -> None:
        self.tracing.enabled = value

    @classmethod
    def disabled(cls) -> ObservabilityConfig:
        """All three pillars off."""
        return cls(
            audit=AuditConfig(enabled=False),
            metrics=MetricsConfig(enabled=False),
            tracing=TracingConfig(enabled=False),
        )

    @classmethod
    def minimal(cls) -> ObservabilityConfig:
        """Audit at ``MINIMAL``, metrics on, tracing off."""
        return cls(
            audit=AuditConfig(level=AuditLogLevel.MINIMAL),
            metrics=MetricsConfig(),
            tracing=TracingConfig(enabled=False),
        )

    @classmethod
    def production(cls, service_name: str = "truthound") -> ObservabilityConfig:
        """JSON audit kept a year, metrics served over HTTP, tracing sampled at 10%."""
        return cls(
            audit=AuditConfig(level=AuditLogLevel.STANDARD, backend="json", retention_days=365),
            metrics=MetricsConfig(enable_http_server=True, labels={"service": service_name}),
            tracing=TracingConfig(
                service_name=service_name,
                sampler=TracingSampler.PARENT_BASED,
                sample_ratio=0.1,
            ),
            environment="production",
        )
