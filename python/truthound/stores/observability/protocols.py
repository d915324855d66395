"""The existing truthound `protocols` API (see the compatibility notes)."""

from __future__ import annotations

__all__: list[str] = []
