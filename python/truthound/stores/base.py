"""The store interface that observability wraps (truthound's ``truthound.stores.base``).

This package does not depend on the rest of truthound, so it carries the interface itself:
``BaseStore`` and its configuration, query and error types, with the same names and semantics.
Items are JSON-like documents; queries match on ``data_asset``, ``run_time``, ``status`` and
``tags`` and order by any top-level field (``run_time`` by default, newest first).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

__all__ = [
    "BaseStore",
    "StoreConfig",
    "StoreError",
    "StoreNotFoundError",
    "StoreQuery",
]

T = TypeVar("T")
ConfigT = TypeVar("ConfigT", bound="StoreConfig")


class StoreError(Exception):
    """A store operation failed."""


class StoreNotFoundError(StoreError):
    """The requested item does not exist."""

    def __init__(self, item_type: str, identifier: str) -> None:
        super().__init__(f"{item_type} not found: {identifier!r}")
        self.item_type = item_type
        self.identifier = identifier


@dataclass
class StoreConfig:
    """Where and how a store keeps its items."""

    namespace: str = "default"
    prefix: str = ""
    serialization_format: str = "json"
    compression: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _as_utc(value: Any) -> datetime | None:
    """A document's ``run_time`` (datetime or ISO 8601 text) as an aware UTC datetime."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _field(item: Any, name: str) -> Any:
    if isinstance(item, Mapping):
        return item.get(name)
    return getattr(item, name, None)


def _sort_key(value: Any) -> tuple[int, Any]:
    """Orders missing values first, then datetimes, numbers and text in their natural order."""
    when = _as_utc(value) if isinstance(value, str | datetime) else None
    if when is not None:
        return (1, when.timestamp())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (2, value)
    if value is None:
        return (0, 0)
    return (3, str(value))


@dataclass
class StoreQuery:
    """Filters, order and paging for ``BaseStore.query``; naive datetimes are taken as UTC."""

    data_asset: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    status: str | None = None
    tags: dict[str, str] | None = None
    limit: int | None = None
    offset: int = 0
    order_by: str = "run_time"
    ascending: bool = False

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"StoreQuery.limit={self.limit!r} must not be negative")
        if self.offset < 0:
            raise ValueError(f"StoreQuery.offset={self.offset!r} must not be negative")

    def matches(self, item: Any) -> bool:
        """Whether ``item`` passes every filter (inclusive time bounds)."""
        if self.data_asset is not None and _field(item, "data_asset") != self.data_asset:
            return False
        if self.status is not None and _field(item, "status") != self.status:
            return False
        if self.tags:
            item_tags = _field(item, "tags") or {}
            if any(item_tags.get(k) != v for k, v in self.tags.items()):
                return False
        if self.start_time is not None or self.end_time is not None:
            when = _as_utc(_field(item, "run_time"))
            if when is None:
                return False
            start, end = _as_utc(self.start_time), _as_utc(self.end_time)
            if (start is not None and when < start) or (end is not None and when > end):
                return False
        return True

    def apply(self, items: list[T]) -> list[T]:
        """Filters, orders and pages ``items``."""
        selected = [item for item in items if self.matches(item)]
        selected.sort(
            key=lambda item: _sort_key(_field(item, self.order_by)), reverse=not self.ascending
        )
        end = None if self.limit is None else self.offset + self.limit
        return selected[self.offset : end]


class BaseStore(ABC, Generic[T, ConfigT]):
    """A store of items addressed by string ids.

    ``initialize()`` is idempotent and called on first use; ``close()`` releases resources; the
    store is a context manager. Subclasses implement the abstract operations.
    """

    def __init__(self, config: ConfigT | None = None) -> None:
        self._config: ConfigT = config if config is not None else self._default_config()
        self._initialized = False
        self._init_lock = threading.Lock()

    @classmethod
    def _default_config(cls) -> ConfigT:
        return StoreConfig()  # type: ignore[return-value]

    @property
    def config(self) -> ConfigT:
        return self._config

    @property
    def is_initialized(self) -> bool:
        return self._initialized

    def initialize(self) -> None:
        """Prepares the store (creates directories, connections...). Safe to call twice."""
        with self._init_lock:
            if not self._initialized:
                self._do_initialize()
                self._initialized = True

    def _do_initialize(self) -> None:
        """Subclass hook for ``initialize()``."""

    def _ensure_initialized(self) -> None:
        if not self._initialized:
            self.initialize()

    def close(self) -> None:
        """Releases the store's resources."""
        self._initialized = False

    def __enter__(self) -> Self:
        self.initialize()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @abstractmethod
    def save(self, item: T) -> str:
        """Stores ``item`` and returns its id."""

    @abstractmethod
    def get(self, item_id: str) -> T:
        """The item with this id; raises ``StoreNotFoundError`` when there is none."""

    @abstractmethod
    def exists(self, item_id: str) -> bool:
        """Whether an item with this id exists."""

    @abstractmethod
    def delete(self, item_id: str) -> bool:
        """Deletes the item; ``False`` when there was none."""

    @abstractmethod
    def list_ids(self, query: StoreQuery | None = None) -> list[str]:
        """Ids of the items matching ``query`` (all items without one), in query order."""

    @abstractmethod
    def query(self, query: StoreQuery) -> list[T]:
        """Items matching ``query``, ordered and paged by it."""

    def iter_query(self, query: StoreQuery, batch_size: int = 100) -> Iterator[T]:
        """Yields the items of ``query`` in batches of ``batch_size`` (respecting its limit)."""
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be at least 1")
        offset, remaining = query.offset, query.limit
        while remaining is None or remaining > 0:
            size = batch_size if remaining is None else min(batch_size, remaining)
            page = self.query(
                StoreQuery(
                    data_asset=query.data_asset,
                    start_time=query.start_time,
                    end_time=query.end_time,
                    status=query.status,
                    tags=query.tags,
                    limit=size,
                    offset=offset,
                    order_by=query.order_by,
                    ascending=query.ascending,
                )
            )
            yield from page
            if len(page) < size:
                return
            offset += len(page)
            if remaining is not None:
                remaining -= len(page)

    def get_latest(self, data_asset: str) -> T | None:
        """The newest item (by ``run_time``) of ``data_asset``, or ``None``."""
        found = self.query(StoreQuery(data_asset=data_asset, limit=1))
        return found[0] if found else None

    def count(self, query: StoreQuery | None = None) -> int:
        """How many items match ``query`` (all items without one)."""
        return len(self.list_ids(query))

    def clear(self, query: StoreQuery | None = None) -> int:
        """Deletes the items matching ``query`` (all without one); returns how many."""
        return sum(1 for item_id in self.list_ids(query) if self.delete(item_id))
