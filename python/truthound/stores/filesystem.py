"""A filesystem document store: one JSON file per item, written atomically.

Layout: ``<base_path>/<namespace>/<id>.json``. A save writes a temporary file in the same
directory, flushes and fsyncs it, renames it over the target and fsyncs the directory, so a reader
(or a crash) sees either the old or the new document, never a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._documents import Document, document_id, normalised_copy
from .base import BaseStore, StoreConfig, StoreError, StoreNotFoundError, StoreQuery

__all__ = ["FileSystemStore"]

_SUFFIX = ".json"


class FileSystemStore(BaseStore[Document, StoreConfig]):
    """Keeps JSON documents as files under ``base_path``.

    ``durable=True`` (the default) fsyncs each document and its directory; turn it off only for
    scratch data.
    """

    def __init__(
        self,
        base_path: str | os.PathLike[str] = ".truthound/store",
        config: StoreConfig | None = None,
        *,
        durable: bool = True,
    ) -> None:
        super().__init__(config)
        self.base_path = Path(base_path)
        self.durable = durable

    @property
    def directory(self) -> Path:
        """Where this store's namespace keeps its files."""
        return self.base_path / self.config.namespace

    def _do_initialize(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"cannot create store directory {self.directory}: {error}") from error

    def _path(self, item_id: str) -> Path:
        return self.directory / f"{document_id(item_id)}{_SUFFIX}"

    def save(self, item: Mapping[str, Any]) -> str:
        self._ensure_initialized()
        document = normalised_copy(item)
        target = self._path(document["id"])
        data = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
        try:
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=_SUFFIX)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    if self.durable:
                        os.fsync(handle.fileno())
                os.replace(temporary, target)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            if self.durable:
                self._fsync_directory()
        except OSError as error:
            raise StoreError(f"cannot write {target}: {error}") from error
        return str(document["id"])

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get(self, item_id: str) -> Document:
        self._ensure_initialized()
        path = self._path(item_id)
        try:
            document: Document = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise StoreNotFoundError("item", item_id) from None
        except (OSError, ValueError) as error:
            raise StoreError(f"cannot read {path}: {error}") from error
        return document

    def exists(self, item_id: str) -> bool:
        self._ensure_initialized()
        return self._path(item_id).is_file()

    def delete(self, item_id: str) -> bool:
        self._ensure_initialized()
        try:
            self._path(item_id).unlink()
        except FileNotFoundError:
            return False
        except OSError as error:
            raise StoreError(f"cannot delete {self._path(item_id)}: {error}") from error
        return True

    def _documents(self) -> Iterator[Document]:
        for path in self.directory.glob(f"*{_SUFFIX}"):
            if path.name.startswith("."):
                continue  # an in-flight temporary file
            try:
                yield json.loads(path.read_bytes())
            except FileNotFoundError:
                continue  # deleted between listing and reading
            except (OSError, ValueError) as error:
                raise StoreError(f"cannot read {path}: {error}") from error

    def list_ids(self, query: StoreQuery | None = None) -> list[str]:
        return [str(document["id"]) for document in self.query(query or StoreQuery())]

    def query(self, query: StoreQuery) -> list[Document]:
        self._ensure_initialized()
        return query.apply(list(self._documents()))
