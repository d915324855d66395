"""The pure-Python core: a one-to-one mirror of the native module's interface (``_native.pyi``).

Used when the native extension is unavailable or when forced; see ``_core.py``. Behaviour and
output are identical to the native core, byte for byte where text is produced.
"""

from __future__ import annotations

from .metrics import format_float
from .tracing import format_traceparent, parse_traceparent

__all__ = ["CORE_NAME", "format_float", "format_traceparent", "parse_traceparent"]

CORE_NAME = "pure"
