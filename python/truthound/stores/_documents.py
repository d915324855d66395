"""What the bundled stores share: document ids and validated JSON copies of documents."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from .base import StoreError

__all__ = ["Document", "InvalidItemError", "document_id", "normalised_copy"]

Document = dict[str, Any]

# Ids become file names, so they are restricted to a portable, traversal-free alphabet.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


class InvalidItemError(StoreError, ValueError):
    """An item or id the store cannot accept; the message names it."""


def document_id(item_id: object) -> str:
    """Checks an id supplied by a caller."""
    if not isinstance(item_id, str) or _ID.fullmatch(item_id) is None:
        raise InvalidItemError(
            f"invalid item id {item_id!r}: use 1-200 of A-Z a-z 0-9 . _ - "
            "(starting with a letter or digit)"
        )
    return item_id


def normalised_copy(item: Mapping[str, Any]) -> Document:
    """A deep, JSON-safe copy of ``item`` with an ``id`` (a fresh one if it had none)."""
    if not isinstance(item, Mapping):
        raise InvalidItemError(f"items are JSON objects (mappings), not {type(item).__name__}")
    try:
        copy: Document = json.loads(json.dumps(item, default=_iso_datetime))
    except (TypeError, ValueError) as error:
        raise InvalidItemError(f"item is not JSON-serialisable: {error}") from None
    given = copy.get("id")
    copy["id"] = uuid.uuid4().hex if given is None else document_id(given)
    return copy


def _iso_datetime(value: object) -> str:
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
