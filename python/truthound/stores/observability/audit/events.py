"""Audit event types, statuses and the ``AuditEvent`` record."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from .. import _core
from ..errors import InvalidArgumentError

if TYPE_CHECKING:
    from ..protocols import ObservabilityContext

__all__ = ["AuditEvent", "AuditEventType", "AuditStatus"]


class AuditEventType(StrEnum):
    """What happened (the value is what the files record)."""

    # Data operations
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    DELETE = "delete"
    QUERY = "query"
    LIST = "list"
    COUNT = "count"
    # Lifecycle events
    INITIALIZE = "initialize"
    CLOSE = "close"
    FLUSH = "flush"
    # Batch operations
    BATCH_CREATE = "batch_create"
    BATCH_DELETE = "batch_delete"
    # Replication & sync
    REPLICATE = "replicate"
    SYNC = "sync"
    MIGRATE = "migrate"
    ROLLBACK = "rollback"
    # Access control
    ACCESS_DENIED = "access_denied"
    ACCESS_GRANTED = "access_granted"
    # Errors
    ERROR = "error"
    VALIDATION_ERROR = "validation_error"

    def __str__(self) -> str:
        return self.value


class AuditStatus(StrEnum):
    """How it ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    PARTIAL = "partial"
    DENIED = "denied"

    def __str__(self) -> str:
        return self.value


def coerce_event_type(value: AuditEventType | str) -> AuditEventType:
    """The member for an enum member or its string value; rejects anything else by name."""
    if type(value) is AuditEventType:
        return value
    try:
        return AuditEventType(value)
    except ValueError:
        raise InvalidArgumentError(f"event_type={value!r} is not an AuditEventType") from None


def coerce_status(value: AuditStatus | str) -> AuditStatus:
    """The member for an enum member or its string value; rejects anything else by name."""
    if type(value) is AuditStatus:
        return value
    try:
        return AuditStatus(value)
    except ValueError:
        raise InvalidArgumentError(f"status={value!r} is not an AuditStatus") from None


def check_duration(value: Any) -> float:
    """``duration_ms`` as every backend and both cores accept it: a finite number of
    milliseconds (an ``int``, a ``float`` or any object with ``__float__`` or ``__index__``; not
    text), as a ``float``. Anything else raises ``InvalidArgumentError`` naming ``duration_ms``
    (``InvalidArgumentTypeError``, also a ``TypeError``, when it is not a number)."""
    number: float = _core.core.check_duration(value)
    return number


def to_utc(value: datetime | str | None, name: str = "timestamp") -> datetime:
    """A timezone-aware UTC datetime; naive inputs are taken as UTC, strings as ISO 8601."""
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidArgumentError(f"{name}={value!r} is not an ISO 8601 datetime") from None
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"{name}={value!r} is not a datetime")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def format_timestamp(ts: datetime) -> str:
    """The fixed ISO 8601 form the files use: ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``."""
    return (
        f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:"
        f"{ts.second:02d}.{ts.microsecond:06d}+00:00"
    )


#: The fields of a record, in their on-disk order (aliases excluded).
FIELDS = (
    "event_id",
    "event_type",
    "timestamp",
    "status",
    "store_type",
    "store_id",
    "operation",
    "resource_type",
    "item_id",
    "user_id",
    "session_id",
    "tenant_id",
    "correlation_id",
    "trace_id",
    "span_id",
    "ip_address",
    "user_agent",
    "input_summary",
    "output_summary",
    "error_type",
    "error_message",
    "duration_ms",
    "metadata",
)
#: Alternative names (the existing truthound API) of two fields.
ALIASES = {"resource_id": "item_id", "source_ip": "ip_address"}


class AuditEvent:
    """One audited operation.

    ``item_id`` and ``resource_id`` are two names of the same field (the specification's and the
    existing API's), as are ``ip_address`` and ``source_ip``. ``timestamp`` is always a
    timezone-aware UTC datetime: naive values are taken as UTC, other zones are converted.
    ``event_type`` and ``status`` accept the enum members or their string values.
    ``duration_ms`` is ``None`` or a finite number of milliseconds, kept as a ``float``
    (anything else raises ``InvalidArgumentError`` naming it). In ``metadata``, values JSON
    cannot hold are kept, not dropped: non-finite floats are written as the strings
    ``"NaN"``/``"Infinity"``/``"-Infinity"``, sets and tuples as lists and other objects as
    their ``str()``, on both cores.
    """

    event_id: str
    store_type: str
    store_id: str
    operation: str
    resource_type: str
    item_id: str | None
    user_id: str | None
    session_id: str | None
    tenant_id: str | None
    correlation_id: str | None
    trace_id: str | None
    span_id: str | None
    ip_address: str | None
    user_agent: str | None
    input_summary: str | None
    output_summary: str | None
    error_message: str | None
    error_type: str | None
    metadata: dict[str, Any]

    def __init__(  # noqa: PLR0917 - the existing dataclass's positional order
        self,
        event_id: str | None = None,
        event_type: AuditEventType | str = AuditEventType.READ,
        timestamp: datetime | str | None = None,
        status: AuditStatus | str = AuditStatus.SUCCESS,
        store_type: str = "",
        store_id: str = "",
        operation: str = "",
        resource_type: str = "",
        resource_id: str | None = None,
        user_id: str | None = None,
        tenant_id: str | None = None,
        correlation_id: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        source_ip: str | None = None,
        user_agent: str | None = None,
        duration_ms: float | None = None,
        input_summary: str | None = None,
        output_summary: str | None = None,
        error_message: str | None = None,
        error_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        item_id: str | None = None,
        session_id: str | None = None,
        ip_address: str | None = None,
    ) -> None:
        self.event_id = _core.core.new_event_id() if event_id is None else event_id
        self.event_type = event_type
        self.timestamp = timestamp
        self.status = status
        self.store_type = store_type
        self.store_id = store_id
        self.operation = operation
        self.resource_type = resource_type
        self.item_id = _alias("item_id", item_id, "resource_id", resource_id)
        self.user_id = user_id
        self.session_id = session_id
        self.tenant_id = tenant_id
        self.correlation_id = correlation_id
        self.trace_id = trace_id
        self.span_id = span_id
        self.ip_address = _alias("ip_address", ip_address, "source_ip", source_ip)
        self.user_agent = user_agent
        self.duration_ms = duration_ms
        self.input_summary = input_summary
        self.output_summary = output_summary
        self.error_message = error_message
        self.error_type = error_type
        self.metadata = {} if metadata is None else metadata

    # -- normalised fields --

    @property
    def event_type(self) -> AuditEventType:
        return self._event_type

    @event_type.setter
    def event_type(self, value: AuditEventType | str) -> None:
        self._event_type = coerce_event_type(value)

    @property
    def status(self) -> AuditStatus:
        return self._status

    @status.setter
    def status(self, value: AuditStatus | str) -> None:
        self._status = coerce_status(value)

    @property
    def duration_ms(self) -> float | None:
        return self._duration_ms

    @duration_ms.setter
    def duration_ms(self, value: float | None) -> None:
        self._duration_ms = (
            value if value is None or (value.__class__ is float and math.isfinite(value))
            else check_duration(value)
        )  # fmt: skip

    @property
    def timestamp(self) -> datetime:
        return self._timestamp

    @timestamp.setter
    def timestamp(self, value: datetime | str | None) -> None:
        self._timestamp = to_utc(value)

    # -- aliases of the existing API --

    @property
    def resource_id(self) -> str | None:
        """The existing API's name of ``item_id``."""
        return self.item_id

    @resource_id.setter
    def resource_id(self, value: str | None) -> None:
        self.item_id = value

    @property
    def source_ip(self) -> str | None:
        """The existing API's name of ``ip_address``."""
        return self.ip_address

    @source_ip.setter
    def source_ip(self, value: str | None) -> None:
        self.ip_address = value

    # -- conversions --

    def to_dict(self) -> dict[str, Any]:
        """Every field (aliases included), enums as their values, the timestamp in ISO 8601."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type.value,
            "timestamp": format_timestamp(self.timestamp),
            "status": self.status.value,
            "store_type": self.store_type,
            "store_id": self.store_id,
            "operation": self.operation,
            "resource_type": self.resource_type,
            "resource_id": self.item_id,
            "item_id": self.item_id,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "tenant_id": self.tenant_id,
            "correlation_id": self.correlation_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "source_ip": self.ip_address,
            "ip_address": self.ip_address,
            "user_agent": self.user_agent,
            "duration_ms": self.duration_ms,
            "input_summary": self.input_summary,
            "output_summary": self.output_summary,
            "error_message": self.error_message,
            "error_type": self.error_type,
            "metadata": _copy_metadata(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEvent:
        """The inverse of ``to_dict``; also reads file records (absent fields take their
        defaults) and ignores keys it does not know (records written by newer versions)."""
        known = {k: v for k, v in data.items() if k in FIELDS or k in ALIASES}
        for alias, name in ALIASES.items():
            if alias in known:
                value = known.pop(alias)
                if known.get(name) is None:
                    known[name] = value
                elif value is not None and value != known[name]:
                    raise InvalidArgumentError(
                        f"{alias}={value!r} contradicts {name}={known[name]!r}"
                    )
        if known.get("metadata") is None:
            known.pop("metadata", None)
        for name in ("store_type", "store_id", "operation", "resource_type"):
            if known.get(name) is None:
                known.pop(name, None)
        return cls(**known)

    @classmethod
    def from_context(
        cls,
        context: ObservabilityContext,
        event_type: AuditEventType | str,
        operation: str,
        **kwargs: Any,
    ) -> AuditEvent:
        """An event carrying the context's correlation, trace, user, tenant and client ids."""
        fields: dict[str, Any] = {
            "correlation_id": context.correlation_id,
            "trace_id": context.trace_id,
            "span_id": context.span_id,
            "user_id": context.user_id,
            "tenant_id": context.tenant_id,
            "ip_address": context.source_ip,
            "user_agent": context.user_agent,
        }
        for alias, name in ALIASES.items():
            if alias in kwargs:
                kwargs[name] = kwargs.pop(alias)
        fields.update(kwargs)
        return cls(event_type=event_type, operation=operation, **fields)

    def _shallow_copy(self) -> AuditEvent:
        """A copy sharing the metadata object."""
        clone = _new_event(AuditEvent)
        clone.__dict__.update(self.__dict__)
        return clone

    def copy(self) -> AuditEvent:
        """An independent copy (metadata deep-copied where possible)."""
        clone = self._shallow_copy()
        clone.metadata = _copy_metadata(self.metadata)
        return clone

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AuditEvent):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in FIELDS
            if getattr(self, name) not in (None, "", {}) or name in ("event_id", "event_type")
        )
        return f"AuditEvent({shown})"


_new_event = object.__new__
_SCALARS = frozenset({str, int, float, bool, type(None)})


def json_metadata(metadata: Any) -> dict[str, Any]:
    """``metadata`` in the JSON-safe form every file record holds (string keys; bytes, dates,
    sets and other objects encoded as documented on ``AuditEvent``): a new structure that
    shares nothing with the caller's objects."""
    if metadata is None:
        return {}
    value = _core.core.normalize_value(metadata)
    return value if isinstance(value, dict) else {"value": value}


def _copy_metadata(metadata: Any) -> Any:
    if type(metadata) is dict and all(type(v) in _SCALARS for v in metadata.values()):
        return dict(metadata)
    try:
        return copy.deepcopy(metadata)
    except Exception:  # locks, generators...: the JSON-safe form instead
        return json_metadata(metadata)


def _alias(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    if alias_value is None:
        return value
    if value is not None and value != alias_value:
        raise InvalidArgumentError(f"{alias}={alias_value!r} contradicts {name}={value!r}")
    return alias_value
