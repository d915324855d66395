"""Pure-Python mirror of the native audit core (``rust/audit/``)."""

from __future__ import annotations

__all__: list[str] = []
