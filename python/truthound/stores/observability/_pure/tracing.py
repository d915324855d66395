"""Pure-Python mirror of the native tracing core (``rust/tracing/``)."""

from __future__ import annotations

import re

__all__ = ["format_traceparent", "parse_traceparent"]

# Version, trace id, span id and flags of a traceparent; lowercase hex only (W3C Trace Context).
_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL
)
_VERSION_00_LENGTH = 55


def parse_traceparent(header: str) -> tuple[int, str, str, int] | None:
    """Strictly parses a W3C ``traceparent`` header.

    Returns ``(version, trace_id, span_id, flags)``, or ``None`` when the header is invalid.
    """
    header = header.strip(" \t")
    match = _TRACEPARENT.fullmatch(header)
    if match is None:
        return None
    version_hex, trace_id, span_id, flags_hex, rest = match.groups()
    if version_hex == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    version = int(version_hex, 16)
    if version == 0 and rest is not None:
        return None
    del rest  # Future versions may append fields after a '-'; they are ignored.
    return version, trace_id, span_id, int(flags_hex, 16)


def format_traceparent(trace_id: str, span_id: str, flags: int) -> str:
    """Formats a version-00 ``traceparent`` header; the ids are written as given."""
    if not 0 <= flags <= 0xFF:
        raise OverflowError(f"trace flags {flags} do not fit in one byte")
    return f"00-{trace_id}-{span_id}-{flags:02x}"
