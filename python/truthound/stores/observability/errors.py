"""Exceptions raised by truthound.stores.observability.

Defined once, here; the native core raises these same classes, so both cores raise identical types.
Every message names the offending item.
"""

from __future__ import annotations

__all__ = [
    "AuditClosedError",
    "AuditIOError",
    "InvalidArgumentError",
    "ObservabilityError",
]


class ObservabilityError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidArgumentError(ObservabilityError, ValueError):
    """A caller-supplied value was rejected; the message names it and says why."""


# --- audit -----------------------------------------------------------------------------------


class AuditIOError(ObservabilityError, OSError):
    """An audit file could not be created, written, synced or rotated (the message names it)."""


class AuditClosedError(ObservabilityError, RuntimeError):
    """An audit backend or queue was used after ``close()``."""
