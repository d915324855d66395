"""An in-memory document store: thread-safe, for tests, demos and caches."""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

from ._documents import Document, document_id, normalised_copy
from .base import BaseStore, StoreConfig, StoreNotFoundError, StoreQuery

__all__ = ["InMemoryStore"]


class InMemoryStore(BaseStore[Document, StoreConfig]):
    """Keeps JSON documents in a dict; every read returns a copy."""

    def __init__(self, config: StoreConfig | None = None) -> None:
        super().__init__(config)
        self._items: dict[str, Document] = {}
        self._lock = threading.Lock()

    def save(self, item: Mapping[str, Any]) -> str:
        self._ensure_initialized()
        document = normalised_copy(item)
        with self._lock:
            self._items[document["id"]] = document
        return str(document["id"])

    def get(self, item_id: str) -> Document:
        self._ensure_initialized()
        with self._lock:
            document = self._items.get(document_id(item_id))
        if document is None:
            raise StoreNotFoundError("item", item_id)
        return copy.deepcopy(document)

    def exists(self, item_id: str) -> bool:
        self._ensure_initialized()
        with self._lock:
            return document_id(item_id) in self._items

    def delete(self, item_id: str) -> bool:
        self._ensure_initialized()
        with self._lock:
            return self._items.pop(document_id(item_id), None) is not None

    def list_ids(self, query: StoreQuery | None = None) -> list[str]:
        return [str(document["id"]) for document in self.query(query or StoreQuery())]

    def query(self, query: StoreQuery) -> list[Document]:
        self._ensure_initialized()
        with self._lock:
            documents = list(self._items.values())
        return [copy.deepcopy(document) for document in query.apply(documents)]
