"""Audit logging, Prometheus metrics and tracing for storage systems, with a native Rust core.

The pillars live in ``truthound.stores.observability.audit``, ``.metrics`` and ``.tracing``.
``active_core()`` reports whether the native (Rust) or the pure-Python core serves them.
"""

from __future__ import annotations

from ._core import active_core

__all__ = ["active_core"]
