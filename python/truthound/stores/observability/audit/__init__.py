"""Audit pillar: audit events, redaction, and the memory, file, JSON, composite and async backends.

See the README's "Audit logging" section for defaults, limits, counters and the file format.
"""

from __future__ import annotations

from .backends import (
    AsyncAuditBackend,
    CompositeAuditBackend,
    FileAuditBackend,
    InMemoryAuditBackend,
    JsonAuditBackend,
    backend_healthy,
)
from .events import AuditEvent, AuditEventType, AuditStatus
from .export import OtlpAuditBackend
from .logger import AuditLogger
from .reader import QueryReport
from .redaction import DEFAULT_PATTERNS, DataRedactor
from .verify import DEFAULT_KEY_ENV, Finding, VerifyReport, verify, verify_main

__all__ = [
    "DEFAULT_KEY_ENV",
    "DEFAULT_PATTERNS",
    "AsyncAuditBackend",
    "AuditEvent",
    "AuditEventType",
    "AuditLogger",
    "AuditStatus",
    "CompositeAuditBackend",
    "DataRedactor",
    "FileAuditBackend",
    "Finding",
    "InMemoryAuditBackend",
    "JsonAuditBackend",
    "OtlpAuditBackend",
    "QueryReport",
    "VerifyReport",
    "backend_healthy",
    "verify",
    "verify_main",
]
