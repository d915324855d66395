"""The existing truthound `config` API (see the compatibility notes)."""

from __future__ import annotations

__all__: list[str] = []
