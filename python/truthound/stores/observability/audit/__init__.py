"""Audit pillar: audit events, redaction, and the memory, file, JSON, composite, async backends."""

from __future__ import annotations

__all__: list[str] = []
