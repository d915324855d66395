"""The request context and the backend protocols (the existing truthound ``protocols`` API)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

__all__ = ["AuditBackend", "MetricsBackend", "ObservabilityContext", "TracingBackend"]


@dataclass
class ObservabilityContext:
    """Who and what an operation belongs to, carried through all three pillars.

    ``trace_id`` and ``span_id`` are opaque strings supplied by the caller (for example from an
    upstream system); they are carried as given, not validated.
    """

    correlation_id: str
    trace_id: str | None = None
    span_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_dict(self) -> dict[str, Any]:
        """Every field; the timestamp in ISO 8601."""
        data = dataclasses.asdict(self)
        data["timestamp"] = self.timestamp.isoformat()
        return data

    def with_span(self, trace_id: str, span_id: str) -> ObservabilityContext:
        """A copy carrying the given trace and span ids."""
        return dataclasses.replace(self, trace_id=trace_id, span_id=span_id)


@runtime_checkable
class AuditBackend(Protocol):
    """Where audit events go."""

    def log(self, event: Any) -> None: ...
    def query(self, *args: Any, **kwargs: Any) -> list[Any]: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class MetricsBackend(Protocol):
    """Where metric samples go."""

    def counter(
        self, name: str, value: float = 1.0, labels: Mapping[str, str] | None = None
    ) -> None: ...
    def gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None: ...
    def histogram(
        self, name: str, value: float, labels: Mapping[str, str] | None = None
    ) -> None: ...
    def summary(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None: ...
    def timer(
        self, name: str, labels: Mapping[str, str] | None = None
    ) -> AbstractContextManager[Any]: ...
    def export(self) -> str: ...
    def reset(self) -> None: ...


@runtime_checkable
class TracingBackend(Protocol):
    """Where spans are created, propagated and exported."""

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> Any: ...
    def trace(self, name: str, *args: Any, **kwargs: Any) -> AbstractContextManager[Any]: ...
    def inject_context(self, carrier: dict[str, str]) -> dict[str, str]: ...
    def extract_context(self, carrier: Mapping[str, str]) -> ObservabilityContext | None: ...
    def get_current_span(self) -> Any: ...
    def flush(self, *args: Any, **kwargs: Any) -> Any: ...
    def shutdown(self, *args: Any, **kwargs: Any) -> Any: ...
