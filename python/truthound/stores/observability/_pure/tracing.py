"""Pure-Python mirror of the native tracing core (``rust/tracing/``).

Same functions, signatures, results, exception types and messages as the native core; the Jaeger
Thrift encoding is byte-identical (checked by the equivalence tests).
"""

from __future__ import annotations

import os
import random
import re
import struct
from collections.abc import Sequence

from ..errors import InvalidArgumentError

__all__ = [
    "encode_jaeger_batch",
    "format_traceparent",
    "format_tracestate",
    "generate_span_id",
    "generate_trace_id",
    "is_valid_span_id",
    "is_valid_trace_id",
    "parse_traceparent",
    "parse_tracestate",
    "reseed_ids",
]


def _item(text: str) -> str:
    """An offending item quoted as the native core quotes it: characters outside printable
    ASCII become ``\\u{hex}`` (``tracing::printable``), then ``"`` and ``\\`` are escaped and the
    whole is put in double quotes (Rust's ``{:?}`` of that ASCII text)."""
    printable = "".join(c if " " <= c <= "~" else f"\\u{{{ord(c):x}}}" for c in text)
    return '"' + printable.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _invalid(item: str, reason: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{_item(item)}: {reason}")


# ---- traceparent --------------------------------------------------------------------------------

# Version, trace id, span id and flags of a traceparent; lowercase hex only (W3C Trace Context).
_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL
)
# The common case (version 00, no surrounding whitespace) checked by one anchored pattern.
_VERSION_00 = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")
_FLAGS = {f"{value:02x}": value for value in range(256)}
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16


def parse_traceparent(header: str) -> tuple[int, str, str, int] | None:
    """Strictly parses a W3C ``traceparent`` header.

    Returns ``(version, trace_id, span_id, flags)``, or ``None`` when the header is invalid.
    """
    if len(header) == 55 and _VERSION_00.match(header) is not None:
        trace_id, span_id = header[3:35], header[36:52]
        if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
            return None
        return 0, trace_id, span_id, _FLAGS[header[53:]]
    header = header.strip(" \t")
    match = _TRACEPARENT.fullmatch(header)
    if match is None:
        return None
    version_hex, trace_id, span_id, flags_hex, rest = match.groups()
    if version_hex == "ff" or trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    version = int(version_hex, 16)
    if version == 0 and rest is not None:
        return None
    del rest  # Future versions may append fields after a '-'; they are ignored.
    return version, trace_id, span_id, int(flags_hex, 16)


def is_valid_trace_id(trace_id: str) -> bool:
    """Whether ``trace_id`` is 32 lowercase hex digits, not all zeros."""
    return _TRACE_ID.fullmatch(trace_id) is not None and trace_id != _ZERO_TRACE_ID


def is_valid_span_id(span_id: str) -> bool:
    """Whether ``span_id`` is 16 lowercase hex digits, not all zeros."""
    return _SPAN_ID.fullmatch(span_id) is not None and span_id != _ZERO_SPAN_ID


def format_traceparent(trace_id: str, span_id: str, flags: int) -> str:
    """Formats a version-00 ``traceparent`` header.

    Raises ``InvalidArgumentError`` naming the id when an id is not a valid W3C id (an invalid
    header is never produced), and ``OverflowError`` when ``flags`` does not fit in one byte.
    """
    if not 0 <= flags <= 0xFF:
        raise OverflowError(f"trace flags {flags} do not fit in one byte")
    if not is_valid_trace_id(trace_id):
        raise _invalid(
            trace_id, "traceparent trace-id must be 32 lowercase hex digits, not all zeros"
        )
    if not is_valid_span_id(span_id):
        raise _invalid(
            span_id,
            "traceparent parent-id (span id) must be 16 lowercase hex digits, not all zeros",
        )
    return f"00-{trace_id}-{span_id}-{flags:02x}"


# ---- ids ----------------------------------------------------------------------------------------

# One generator per process, seeded from the OS; reseeded in a forked child so parent and child
# never draw the same ids. ``getrandbits`` is a single C call, so threads share it safely.
_random = random.Random(os.urandom(32))
_getrandbits = _random.getrandbits


def reseed_ids() -> None:
    """Draws a fresh OS seed before the next id, in every thread (call in a forked child)."""
    _random.seed(os.urandom(32))


os.register_at_fork(after_in_child=reseed_ids)


# ``%``-formatting is measurably faster than an f-string with a format spec here.
def generate_trace_id() -> str:
    """A new random trace id: 32 lowercase hex digits, never all zeros."""
    value = _getrandbits(128)
    return "%032x" % value if value else generate_trace_id()  # noqa: UP031


def generate_span_id() -> str:
    """A new random span id: 16 lowercase hex digits, never all zeros."""
    value = _getrandbits(64)
    return "%016x" % value if value else generate_span_id()  # noqa: UP031


# ---- tracestate ---------------------------------------------------------------------------------

_MAX_MEMBERS = 32
_KEY = re.compile(
    r"[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}"
)
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")


def _valid_key(key: str) -> bool:
    return _KEY.fullmatch(key) is not None


def _valid_value(value: str) -> bool:
    return _VALUE.fullmatch(value) is not None


def parse_tracestate(header: str) -> list[tuple[str, str]] | None:
    """Strictly parses a ``tracestate`` header (several headers joined with ``,``).

    Returns the ``(key, value)`` members, leftmost first, or ``None`` when the header is invalid.
    """
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in header.split(","):
        member = raw.strip(" \t")
        if not member:
            continue
        key, sep, value = member.partition("=")
        if not sep or not _valid_key(key) or not _valid_value(value):
            return None
        if len(members) == _MAX_MEMBERS or key in seen:
            return None
        seen.add(key)
        members.append((key, value))
    return members


def format_tracestate(members: Sequence[tuple[str, str]]) -> str:
    """Formats ``(key, value)`` members as a ``tracestate`` header value.

    Raises ``InvalidArgumentError`` naming the offending key or member (invalid key or value,
    duplicate key, more than 32 members).
    """
    if len(members) > _MAX_MEMBERS:
        raise _invalid("tracestate", f"{len(members)} members; at most {_MAX_MEMBERS} are allowed")
    seen: set[str] = set()
    parts = []
    for key, value in members:
        if not _valid_key(key):
            raise _invalid(
                key,
                "invalid tracestate key: lowercase letter first, then lowercase letters, digits, "
                "'_', '-', '*', '/' (or tenant@system), at most 256 characters",
            )
        if not _valid_value(value):
            raise _invalid(
                f"{key}={value}",
                "invalid tracestate value: 1 to 256 printable ASCII characters, no ',' or '=', "
                "not ending in a space",
            )
        if key in seen:
            raise _invalid(key, "duplicate tracestate key")
        seen.add(key)
        parts.append(f"{key}={value}")
    return ",".join(parts)


# ---- Jaeger Thrift (binary protocol) -----------------------------------------------------------

_T_BOOL, _T_DOUBLE, _T_I32, _T_I64, _T_STRING, _T_STRUCT, _T_LIST = 2, 4, 8, 10, 11, 12, 15
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_U64 = 2**64
_field = struct.Struct(">bh").pack
_i32 = struct.Struct(">i").pack
_i64 = struct.Struct(">q").pack
_double = struct.Struct(">d").pack

JaegerTag = tuple[str, object]
JaegerSpan = tuple[
    int,
    int,
    int,
    str,
    int,
    int,
    int,
    Sequence[tuple[int, int, int]],
    Sequence[JaegerTag],
    Sequence[tuple[int, Sequence[JaegerTag]]],
]


def _signed(value: int) -> int:
    """The bits of an unsigned 64-bit id as Jaeger's signed i64."""
    return value - _U64 if value >= 2**63 else value


def _string(out: list[bytes], value: bytes) -> None:
    out.append(_i32(len(value)))
    out.append(value)


def _tag(out: list[bytes], key: str, value: object) -> None:
    out.append(_field(_T_STRING, 1))
    _string(out, key.encode())
    if isinstance(value, bool):
        out += (_field(_T_I32, 2), _i32(2), _field(_T_BOOL, 5), b"\x01" if value else b"\x00")
    elif isinstance(value, int):
        if _I64_MIN <= value <= _I64_MAX:
            out += (_field(_T_I32, 2), _i32(3), _field(_T_I64, 6), _i64(value))
        else:
            out += (_field(_T_I32, 2), _i32(0), _field(_T_STRING, 3))
            _string(out, str(value).encode())
    elif isinstance(value, float):
        out += (_field(_T_I32, 2), _i32(1), _field(_T_DOUBLE, 4), _double(value))
    elif isinstance(value, str):
        out += (_field(_T_I32, 2), _i32(0), _field(_T_STRING, 3))
        _string(out, value.encode())
    elif isinstance(value, bytes):
        out += (_field(_T_I32, 2), _i32(4), _field(_T_STRING, 7))
        _string(out, value)
    else:
        raise _invalid(
            key,
            f"unsupported Jaeger tag value type {type(value).__name__} "
            "(str, bool, int, float, bytes)",
        )
    out.append(b"\x00")


def _tags(out: list[bytes], field_id: int, tags: Sequence[JaegerTag]) -> None:
    out += (_field(_T_LIST, field_id), bytes([_T_STRUCT]), _i32(len(tags)))
    for key, value in tags:
        _tag(out, key, value)


def _check_u64(value: int) -> int:
    if not 0 <= value < _U64:
        raise OverflowError(f"id {value} does not fit in an unsigned 64-bit integer")
    return value


def encode_jaeger_batch(
    service_name: str, process_tags: Sequence[JaegerTag], spans: Sequence[JaegerSpan]
) -> bytes:
    """Encodes a Jaeger Thrift ``Batch`` with the binary protocol (for ``POST /api/traces``).

    ``process_tags`` and each span's tags are ``(key, value)`` pairs whose value is str, bool,
    int, float or bytes (an int outside i64 becomes its decimal string). Each span is
    ``(trace_id, span_id, parent_span_id or 0, operation_name, flags, start_us, duration_us,
    references [(ref_type, trace_id, span_id)], tags, logs [(timestamp_us, fields)])``.
    """
    out: list[bytes] = [_field(_T_STRUCT, 1), _field(_T_STRING, 1)]
    _string(out, service_name.encode())
    if process_tags:
        _tags(out, 2, process_tags)
    out += (b"\x00", _field(_T_LIST, 2), bytes([_T_STRUCT]), _i32(len(spans)))
    for trace_id, span_id, parent, name, flags, start, duration, refs, tags, logs in spans:
        if not 0 <= trace_id < 2**128:
            raise OverflowError(f"trace id {trace_id} does not fit in 128 bits")
        out += (
            _field(_T_I64, 1),
            _i64(_signed(trace_id & (_U64 - 1))),
            _field(_T_I64, 2),
            _i64(_signed(trace_id >> 64)),
            _field(_T_I64, 3),
            _i64(_signed(_check_u64(span_id))),
            _field(_T_I64, 4),
            _i64(_signed(_check_u64(parent))),
            _field(_T_STRING, 5),
        )
        _string(out, name.encode())
        if refs:
            out += (_field(_T_LIST, 6), bytes([_T_STRUCT]), _i32(len(refs)))
            for ref_type, ref_trace, ref_span in refs:
                out += (
                    _field(_T_I32, 1),
                    _i32(ref_type),
                    _field(_T_I64, 2),
                    _i64(_signed(ref_trace & (_U64 - 1))),
                    _field(_T_I64, 3),
                    _i64(_signed(ref_trace >> 64)),
                    _field(_T_I64, 4),
                    _i64(_signed(_check_u64(ref_span))),
                    b"\x00",
                )
        out += (
            _field(_T_I32, 7),
            _i32(flags),
            _field(_T_I64, 8),
            _i64(start),
            _field(_T_I64, 9),
            _i64(duration),
        )
        if tags:
            _tags(out, 10, tags)
        if logs:
            out += (_field(_T_LIST, 11), bytes([_T_STRUCT]), _i32(len(logs)))
            for timestamp, fields in logs:
                out += (_field(_T_I64, 1), _i64(timestamp))
                _tags(out, 2, fields)
                out.append(b"\x00")
        out.append(b"\x00")
    out.append(b"\x00")
    return b"".join(out)
