"""Pure-Python mirror of the native audit core (``rust/audit/`` and ``rust/py/audit.rs``).

Same classes, signatures, counters and behaviour as the native core, and byte-identical output:
the same record encoding (field order, omitted defaults, JSON escaping of
``json.dumps(ensure_ascii=False)``, floats as ``repr()``), the same segment names, the same
locking protocol (so native and pure writers can share a file), the same redaction semantics,
the same behaviour in a forked child (see ``FileSink`` and ``AsyncWriter``).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import gzip
import hashlib
import hmac
import json
import math
import os
import re
import shutil
import struct
import threading
import time
import unicodedata
import uuid
import weakref
import zlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from .. import _fork
from ..errors import (
    AuditClosedError,
    AuditIOError,
    InvalidArgumentError,
    InvalidArgumentTypeError,
)

__all__ = [
    "AsyncWriter",
    "FileSink",
    "Redactor",
    "check_duration",
    "new_event_id",
    "normalize_value",
]

TEXT_FIELDS = (
    "store_type",
    "store_id",
    "operation",
    "resource_type",
    "item_id",
    "user_id",
    "session_id",
    "tenant_id",
    "correlation_id",
    "trace_id",
    "span_id",
    "ip_address",
    "user_agent",
    "input_summary",
    "output_summary",
    "error_type",
    "error_message",
)
_EMPTY_DEFAULT_FIELDS = 4
_FIELD_INDEX = {name: i for i, name in enumerate(TEXT_FIELDS)}
_MAX_DEPTH = 64
_STAMP = re.compile(r"\d{8}T\d{12}Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

# ---- errors (the item quoted as the native core's `{item:?}: {reason}`) ----------------------

_DEBUG_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def _quoted(item: str) -> str:
    """``item`` as Rust's ``{:?}`` writes a string: in double quotes, with ``\\``, ``"``, ``\\n``,
    ``\\r``, ``\\t``, ``\\0`` escaped and other unprintable or combining characters as
    ``\\u{hex}``."""
    out = ['"']
    for char in item:
        escaped = _DEBUG_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char.isprintable() and unicodedata.category(char) not in ("Mn", "Me"):
            out.append(char)
        else:
            out.append(f"\\u{{{ord(char):x}}}")
    out.append('"')
    return "".join(out)


# ---- values ----------------------------------------------------------------------------------


def _clean(text: str) -> str:
    """``text`` as valid Unicode: lone surrogates become U+FFFD (as the native core does)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _fallback_text(obj: object) -> str:
    try:
        return _clean(str(obj))
    except Exception:
        return f"<unserialisable {type(obj).__qualname__}>"


def _key_text(key: object) -> str:
    if isinstance(key, str):
        return _clean(str.__str__(key))
    return _fallback_text(key)


def _float_value(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _int_value(value: int) -> int | str:
    exact = int.__index__(value)
    if -(2**63) <= exact < 2**63:
        return exact
    try:
        repr(value)
    except ValueError:
        return "<unserialisable int>"
    return exact


def _map_value(data: dict[Any, Any], depth: int) -> dict[str, Any]:
    return {_key_text(k): _to_value(v, depth + 1) for k, v in data.items()}


def _to_value(obj: Any, depth: int) -> Any:  # noqa: PLR0911, PLR0912 - one branch per type, in order
    if depth > _MAX_DEPTH:
        return "<max depth exceeded>"
    kind = type(obj)
    if obj is None:
        return None
    if kind is str:
        return _clean(obj)
    if kind is bool:
        return obj
    if kind is int:
        return _int_value(obj)
    if kind is float:
        return _float_value(obj)
    if kind is dict:
        return _map_value(obj, depth)
    if kind is list:
        return [_to_value(v, depth + 1) for v in obj]
    if isinstance(obj, enum.Enum):
        try:
            value = obj.value
        except Exception:
            return _fallback_text(obj)
        return _to_value(value, depth + 1)
    if isinstance(obj, str):
        return _clean(str.__str__(obj))
    if isinstance(obj, int):
        return _int_value(obj)
    if isinstance(obj, float):
        return _float_value(float.__float__(obj))
    if isinstance(obj, dict):
        return _map_value(obj, depth)
    if isinstance(obj, list | tuple | set | frozenset):
        return [_to_value(v, depth + 1) for v in obj]
    if isinstance(obj, date | dtime):
        try:
            iso = obj.isoformat()
        except Exception:
            iso = None
        if isinstance(iso, str):
            return _clean(iso)
    return _fallback_text(obj)


def _metadata_value(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    value = _to_value(obj, 0)
    if isinstance(value, dict):
        return value
    return {"value": value}


def new_event_id() -> str:
    """A fresh random (version 4) UUID, hyphenated, lower case: the default ``event_id``."""
    return str(uuid.uuid4())


def normalize_value(value: object) -> Any:
    """The JSON-safe normal form of ``value`` that both cores encode (see the documentation)."""
    return _to_value(value, 0)


def _text_arg(obj: object) -> str | None:
    if obj is None:
        return None
    if isinstance(obj, str):
        return _clean(obj) if type(obj) is str else _clean(str.__str__(obj))
    return _fallback_text(obj)


# ---- redaction -------------------------------------------------------------------------------

# The pattern dialect both cores accept (checked by the same scanner, mirrored in
# `rust/audit/redact.rs`): the syntax Python's `re` and the native engine read alike, so one
# pattern redacts the same text on both cores, and every rejection has the same message.


class _RejectedError(Exception):
    """A pattern outside the shared dialect (the message is the reason)."""


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_CHAR_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_HEX_LENGTHS = {"x": 2, "u": 4, "U": 8}
_COUNTED = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")
_GROUP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_REPEAT = 1000
_NOTHING, _ASSERTION, _ATOM, _QUANTIFIED = range(4)


def _escape(pattern: str, i: int, in_class: bool) -> tuple[str, str, int]:  # noqa: PLR0912
    """The escape at ``pattern[i]`` (a backslash): ``(kind, char, end)``, kind ``"char"`` (a
    literal ``char``), ``"class"`` (``\\d``...) or ``"assertion"``."""
    if i + 1 >= len(pattern):
        raise _RejectedError("trailing backslash")
    c = pattern[i + 1]
    if c in "dDwWsS":
        return "class", "", i + 2
    if c in _CHAR_ESCAPES:
        return "char", _CHAR_ESCAPES[c], i + 2
    if c in _HEX_LENGTHS:
        length = _HEX_LENGTHS[c]
        digits = pattern[i + 2 : i + 2 + length]
        if len(digits) != length or not _HEX_DIGITS.issuperset(digits):
            raise _RejectedError(f"\\{c} must be followed by exactly {length} hex digits")
        value = int(digits, 16)
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise _RejectedError(f"{pattern[i : i + 2 + length]} is not a Unicode scalar value")
        return "char", chr(value), i + 2 + length
    if c in "bBA":
        if in_class:
            raise _RejectedError(
                f"\\{c} inside a character class is not supported (\\x08 is a backspace)"
            )
        if c == "b" and pattern.startswith("{", i + 2):
            raise _RejectedError("\\b{...} word boundaries are not supported")
        return "assertion", "", i + 2
    if c in "Zz":
        raise _RejectedError(
            "\\Z and \\z are not supported (use $: without the m flag it matches only at the "
            "end of the text)"
        )
    if c in "0123456789":
        raise _RejectedError("backreferences and octal escapes (\\1, \\0...) are not supported")
    if c in "pP":
        raise _RejectedError("Unicode property classes (\\p{...}, \\P{...}) are not supported")
    if c in "<>":
        raise _RejectedError("\\< and \\> are not supported")
    if not c.isascii() or c.isalnum():
        raise _RejectedError(f"unsupported escape \\{c}")
    return "char", c, i + 2


def _class_item(pattern: str, i: int) -> tuple[str, str, int]:
    """One member of a character class at ``pattern[i]``: ``(kind, char, end)``."""
    c = pattern[i]
    if pattern.startswith(("&&", "--", "~~", "||"), i):
        raise _RejectedError(
            "&&, --, ~~ and || inside a character class must be escaped (set operations are "
            "not supported)"
        )
    if c == "[":
        raise _RejectedError(
            "a [ inside a character class must be escaped as \\[ (nested classes and "
            "[:name:] are not supported)"
        )
    if c == "\\":
        return _escape(pattern, i, in_class=True)
    return "char", c, i + 1


def _class(pattern: str, i: int) -> int:
    """Checks the character class opening at ``pattern[i]``; returns the index after it."""
    n = len(pattern)
    j = i + 1
    if j < n and pattern[j] == "^":
        j += 1
    first = True
    while True:
        if j >= n:
            raise _RejectedError("unterminated character class")
        if pattern[j] == "]" and not first:
            return j + 1
        first = False
        start = j
        kind, low, j = _class_item(pattern, j)
        if j + 1 < n and pattern[j] == "-" and pattern[j + 1] != "]":
            if pattern.startswith("--", j):
                _class_item(pattern, j)  # raises: a set operation
            end_kind, high, j = _class_item(pattern, j + 1)
            if kind != "char" or end_kind != "char" or high < low:
                raise _RejectedError(f"invalid character class range {pattern[start:j]}")


def _group(  # noqa: PLR0912, PLR0915 (mirrors rust/audit/dialect.rs line for line)
    pattern: str, i: int, names: set[str]
) -> tuple[int, str, str, bool]:
    """The head of the group at ``pattern[i:i+2] == "(?"``: ``(end, flags on, flags off,
    scoped)``; ``scoped`` is false for ``(?flags)``, which sets flags for the rest."""
    n = len(pattern)
    j = i + 2
    if j >= n:
        raise _RejectedError("unterminated group (?")
    c = pattern[j]
    if c == ":":
        return j + 1, "", "", True
    if c == "P":
        if pattern.startswith("<", j + 1):
            close = pattern.find(">", j + 2)
            if close < 0:
                raise _RejectedError("unterminated group name")
            name = pattern[j + 2 : close]
            if _GROUP_NAME.fullmatch(name) is None:
                raise _RejectedError(f"invalid group name '{name}'")
            if name in names:
                raise _RejectedError(f"duplicate group name '{name}'")
            names.add(name)
            return close + 1, "", "", True
        if pattern.startswith("=", j + 1):
            raise _RejectedError("backreferences are not supported")
        raise _RejectedError("unsupported group syntax (?P")
    if c in "=!" or pattern.startswith(("<=", "<!"), j):
        raise _RejectedError("look-around (look-ahead/look-behind) is not supported")
    if c == "<":
        raise _RejectedError("(?<name>...) is not supported: use (?P<name>...)")
    if c == ">":
        raise _RejectedError("atomic groups are not supported")
    if c == "(":
        raise _RejectedError("conditional backreferences are not supported")
    if c == "#":
        raise _RejectedError("comments (?#...) are not supported")
    on, off, negated = "", "", False
    while j < n and pattern[j] not in ":)":
        flag = pattern[j]
        if flag == "-" and not negated:
            negated = True
        elif flag in "ims":
            if flag in on or flag in off:
                raise _RejectedError(
                    f"inline flag '{flag}' repeated"
                    if (flag in on) != negated
                    else "a flag cannot be turned both on and off"
                )
            if negated:
                off += flag
            else:
                on += flag
        elif flag.isascii() and flag.isalpha():
            raise _RejectedError(f"inline flag '{flag}' is not supported (only i, m and s)")
        else:
            raise _RejectedError("invalid inline flags")
        j += 1
    if j >= n:
        raise _RejectedError("unterminated group (?")
    if negated and not off:
        raise _RejectedError("missing flag after -")
    if not on and not off:
        raise _RejectedError("missing flag")
    return j + 1, on, off, pattern[j] == ":"


def _dialect(pattern: str) -> str:  # noqa: PLR0912, PLR0915 (one scanner loop, as in Rust)
    """Checks ``pattern`` against the shared dialect and returns what Python's ``re`` must
    compile for the native engine's meaning: ``$`` outside multi-line mode matches only at the
    end of the text there (``\\Z`` here; Python's ``$`` also matches before a final newline)."""
    out: list[str] = []
    outer: list[bool] = []  # the multi-line flag outside each open group
    names: set[str] = set()
    multiline = False
    previous = _NOTHING
    n = len(pattern)
    i = 0
    while i < n:
        c = pattern[i]
        start = i
        if c == "\\":
            kind, _, i = _escape(pattern, i, in_class=False)
            previous = _ASSERTION if kind == "assertion" else _ATOM
        elif c == "[":
            i = _class(pattern, i)
            previous = _ATOM
        elif c == "(":
            on, off, scoped = "", "", True
            if pattern.startswith("(?", i):
                i, on, off, scoped = _group(pattern, i, names)
            else:
                i += 1
            if not scoped:
                if start != 0:
                    raise _RejectedError(
                        "inline flags (?i) are only allowed at the start of the pattern; use a "
                        "scoped group such as (?i:...)"
                    )
                if off:
                    raise _RejectedError(
                        "a flag can only be turned off in a scoped group such as (?-i:...)"
                    )
                multiline = "m" in on
            else:
                outer.append(multiline)
                multiline = (multiline or "m" in on) and "m" not in off
            previous = _NOTHING
        elif c == ")":
            if not outer:
                raise _RejectedError("unbalanced parenthesis: ) without (")
            multiline = outer.pop()
            i += 1
            previous = _ATOM
        elif c == "|":
            i += 1
            previous = _NOTHING
        elif c in "*+?{":
            if c == "{":
                counted = _COUNTED.match(pattern, i)
                if counted is None:
                    raise _RejectedError("a literal { must be escaped as \\{")
                low, _, high = counted.group(1, 2, 3)
                if int(low) > _MAX_REPEAT or (high and int(high) > _MAX_REPEAT):
                    raise _RejectedError(
                        f"repetition count above {_MAX_REPEAT} in {counted.group()}"
                    )
                if high and int(high) < int(low):
                    raise _RejectedError(f"invalid repetition range {counted.group()}")
                i = counted.end()
            else:
                i += 1
            quantifier = pattern[start:i]
            if previous in (_NOTHING, _ASSERTION):
                raise _RejectedError(f"nothing to repeat before {quantifier}")
            if previous == _QUANTIFIED:
                raise _RejectedError(
                    f"repeated quantifier {quantifier} (possessive or nested repetition, like a++ "
                    "or a{2}*) is not supported: use a group, like (?:a+)+"
                )
            if pattern.startswith("?", i):  # lazy
                i += 1
            previous = _QUANTIFIED
        elif c == "$":
            out.append("$" if multiline else "\\Z")
            i += 1
            previous = _ASSERTION
            continue
        elif c == "^":
            i += 1
            previous = _ASSERTION
        else:
            i += 1
            previous = _ATOM
        out.append(pattern[start:i])
    if outer:
        raise _RejectedError("unclosed group: ( without )")
    return "".join(out)


_LEADING_FLAGS = re.compile(r"\A\(\?([a-zA-Z]+)\)")


def _scoped(pattern: str) -> str:
    """``pattern`` wrapped so its leading global flags apply to it alone (as in the native core)."""
    match = _LEADING_FLAGS.match(pattern)
    if match is None:
        return f"(?:{pattern})"
    rest = pattern[match.end() :]
    return f"(?{match.group(1)}:{rest})"


def _check_pattern(pattern: str) -> str:
    """The pattern as Python's ``re`` compiles it; raises naming the pattern when it is outside
    the shared dialect or can match the empty string."""
    try:
        compiled = _dialect(pattern)
        parsed = sre_parse.parse(compiled)
        re.compile(_scoped(compiled))
    except _RejectedError as reason:
        raise InvalidArgumentError(
            f"{_quoted(pattern)}: redaction pattern rejected: {reason}"
        ) from None
    except re.error as error:  # pragma: no cover - the dialect check rejects these first
        raise InvalidArgumentError(
            f"{_quoted(pattern)}: redaction pattern rejected: {error}"
        ) from None
    if parsed.getwidth()[0] == 0:
        raise InvalidArgumentError(
            f"{_quoted(pattern)}: redaction pattern can match the empty string"
        )
    return compiled


def _unique_key(taken: dict[Any, Any], key: str) -> str:
    """The first of ``key#2``, ``key#3``... not in ``taken``: two keys made equal by redaction
    (two e-mail addresses both becoming ``[REDACTED]``) both keep their values."""
    n = 2
    while f"{key}#{n}" in taken:
        n += 1
    return f"{key}#{n}"


class Redactor:
    """A compiled redaction policy: every pattern in one alternation, applied in one pass."""

    __slots__ = ("_exact", "_fields", "_regex", "_repl", "_replacement")

    def __init__(
        self,
        patterns: list[str],
        replacement: str,
        fields: list[str],
        exact_fields: bool = False,
    ) -> None:
        compiled = [_check_pattern(pattern) for pattern in patterns]
        self._regex = re.compile("|".join(_scoped(p) for p in compiled)) if compiled else None
        self._replacement = replacement
        self._repl = replacement.replace("\\", "\\\\")
        self._fields = tuple(f.lower() for f in fields)
        self._exact = exact_fields

    def _redact(self, text: str) -> str | None:
        regex = self._regex
        if regex is None:
            return None
        result, count = regex.subn(self._repl, text)
        return result if count else None

    def redact_text(self, text: str) -> str:
        """``text`` with every pattern match replaced, in one pass."""
        text = _clean(text)
        redacted = self._redact(text)
        return text if redacted is None else redacted

    def is_sensitive(self, key: str) -> bool:
        """Whether a key or field name is sensitive."""
        if not self._fields:
            return False
        lowered = key.lower()
        if self._exact:
            return lowered in self._fields
        return any(f in lowered for f in self._fields)

    def redact(self, data: Any) -> Any:
        """A redacted copy of arbitrary data: strings (values, str keys, inside lists, tuples,
        sets) are pattern-redacted, values under sensitive str keys are replaced whole, other
        values are returned as they are."""
        return self._redact_py(data, 0)

    def _redact_py(self, obj: Any, depth: int) -> Any:  # noqa: PLR0911
        if depth > _MAX_DEPTH:
            return obj
        if isinstance(obj, str):
            redacted = self._redact(_clean(str.__str__(obj)))
            return obj if redacted is None else redacted
        if isinstance(obj, dict):
            out: dict[Any, Any] = {}
            for k, v in obj.items():
                if isinstance(k, str) and self.is_sensitive(_clean(str.__str__(k))):
                    value: Any = self._replacement
                else:
                    value = self._redact_py(v, depth + 1)
                key = self._redact_py(k, depth + 1) if isinstance(k, str) else k
                if isinstance(key, str) and key in out:
                    key = _unique_key(out, key)
                out[key] = value
            return out
        if isinstance(obj, list):
            return [self._redact_py(v, depth + 1) for v in obj]
        if isinstance(obj, tuple):
            return tuple(self._redact_py(v, depth + 1) for v in obj)
        if isinstance(obj, set):
            return {self._redact_py(v, depth + 1) for v in obj}
        if isinstance(obj, frozenset):
            return frozenset(self._redact_py(v, depth + 1) for v in obj)
        return obj

    def redact_attributes(self, source: Any, target: Any) -> None:
        """Redacts an event's ``event_id`` and text fields from ``source`` into ``target``
        (normally a copy): ``None`` stays ``None``, non-strings are converted with ``str()``,
        fields named sensitive are replaced whole (``event_id`` is only pattern-redacted), and
        unchanged strings are left as they are."""
        for i, name in enumerate(("event_id", *TEXT_FIELDS)):
            value = getattr(source, name)
            if value is None:
                continue
            text = _text_arg(value) or ""
            if i > 0 and text and self.is_sensitive(name):
                setattr(target, name, self._replacement)
                continue
            redacted = self._redact(text)
            if redacted is not None:
                setattr(target, name, redacted)
            elif type(value) is not str:
                setattr(target, name, text)

    @property
    def replacement(self) -> str:
        """The replacement text."""
        return self._replacement

    # -- record redaction (normalised data) --

    def _redact_value(self, value: Any) -> Any:
        if isinstance(value, str):
            redacted = self._redact(value)
            return value if redacted is None else redacted
        if isinstance(value, list):
            return [self._redact_value(v) for v in value]
        if isinstance(value, dict):
            return self._redact_map(value)
        return value

    def _redact_map(self, members: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in members.items():
            new_value = self._replacement if self.is_sensitive(key) else self._redact_value(value)
            redacted_key = self._redact(key)
            final = key if redacted_key is None else redacted_key
            out[_unique_key(out, final) if final in out else final] = new_value
        return out

    def _redact_record(self, record: _Record) -> None:
        redacted = self._redact(record.event_id)
        if redacted is not None:
            record.event_id = redacted
        text = record.text
        for i, value in enumerate(text):
            if value is None:
                continue
            if value and self.is_sensitive(TEXT_FIELDS[i]):
                text[i] = self._replacement
            else:
                redacted = self._redact(value)
                if redacted is not None:
                    text[i] = redacted
        if record.metadata:
            record.metadata = self._redact_map(record.metadata)


# ---- records ---------------------------------------------------------------------------------


class _Record:
    __slots__ = ("duration_ms", "event_id", "event_type", "metadata", "status", "text", "timestamp")

    def __init__(self, event_type: str, status: str) -> None:
        self.event_id = str(uuid.uuid4())
        self.event_type = event_type
        self.timestamp = datetime.now(UTC)
        self.status = status
        self.text: list[str | None] = [None] * len(TEXT_FIELDS)
        self.duration_ms: float | None = None
        self.metadata: dict[str, Any] = {}


def _enum_text(obj: Any) -> str:
    if isinstance(obj, str):
        return _clean(str.__str__(obj))
    value = obj.value
    if not isinstance(value, str):
        raise TypeError(f"expected a string enum value, got {value!r}")
    return _clean(str.__str__(value))


def check_duration(value: object) -> float:
    """``duration_ms`` as a finite ``float``: an ``int``, a ``float`` or any object with
    ``__float__`` or ``__index__`` (what the C API's ``PyFloat_AsDouble`` takes: never text);
    anything else raises ``InvalidArgumentError`` naming ``duration_ms``."""
    kind = type(value)
    if kind is float:
        number: float = value  # type: ignore[assignment]
    elif not (hasattr(kind, "__float__") or hasattr(kind, "__index__")):
        raise InvalidArgumentTypeError(f"{_quoted(f'duration_ms={value!r}')}: must be a number")
    else:
        try:
            number = float(value)  # type: ignore[arg-type]
        except OverflowError:
            number = math.inf
        except (TypeError, ValueError):
            raise InvalidArgumentTypeError(
                f"{_quoted(f'duration_ms={value!r}')}: must be a number"
            ) from None
    if not math.isfinite(number):
        raise InvalidArgumentError(f"{_quoted(f'duration_ms={value!r}')}: must be a finite number")
    return number


def _duration(value: Any) -> float | None:
    return None if value is None else check_duration(value)


def _record_from_event(event: Any) -> _Record:
    record = _Record.__new__(_Record)
    record.event_id = (
        _fallback_text(event.event_id)
        if not isinstance(event.event_id, str)
        else _clean(str.__str__(event.event_id))
    )
    record.event_type = _enum_text(event.event_type)
    record.status = _enum_text(event.status)
    timestamp = event.timestamp
    if not isinstance(timestamp, datetime):
        raise TypeError("AuditEvent.timestamp must be a datetime")
    record.timestamp = timestamp
    record.text = [_text_arg(getattr(event, name)) for name in TEXT_FIELDS]
    record.duration_ms = _duration(event.duration_ms)
    record.metadata = _metadata_value(event.metadata)
    return record


def _record_from_fields(  # noqa: PLR0917 - mirrors the native signature
    event_type: str,
    status: str,
    store_type: str,
    store_id: str,
    operation: str,
    item_id: Any,
    user_id: Any,
    duration_ms: object,
    metadata: Any,
    error_message: Any,
    extra: dict[str, Any] | None,
) -> _Record:
    record = _Record(event_type, status)
    text = record.text
    text[0] = _clean(store_type)
    text[1] = _clean(store_id)
    text[2] = _clean(operation)
    text[4] = _text_arg(item_id)
    text[5] = _text_arg(user_id)
    text[16] = _text_arg(error_message)
    record.duration_ms = _duration(duration_ms)
    record.metadata = _metadata_value(metadata)
    if extra:
        for key, value in extra.items():
            name = _key_text(key)
            index = _FIELD_INDEX.get(name)
            if index is None:
                raise InvalidArgumentError(f"{_quoted(name)}: is not an audit event text field")
            text[index] = _text_arg(value)
    return record


def _js(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _timestamp_text(ts: datetime) -> str:
    return (
        f"{ts.year:04d}-{ts.month:02d}-{ts.day:02d}T{ts.hour:02d}:{ts.minute:02d}:"
        f"{ts.second:02d}.{ts.microsecond:06d}+00:00"
    )


def _json_object(record: _Record) -> str:
    parts = [
        '{"event_id":',
        _js(record.event_id),
        ',"event_type":',
        _js(record.event_type),
        ',"timestamp":"',
        _timestamp_text(record.timestamp),
        '","status":',
        _js(record.status),
    ]
    for i, value in enumerate(record.text):
        if value is None or (i < _EMPTY_DEFAULT_FIELDS and not value):
            continue
        parts.append(f',"{TEXT_FIELDS[i]}":')
        parts.append(_js(value))
    if record.duration_ms is not None:
        parts.append(',"duration_ms":')
        parts.append(repr(record.duration_ms))
    if record.metadata:
        parts.append(',"metadata":')
        parts.append(json.dumps(record.metadata, ensure_ascii=False, separators=(",", ":")))
    parts.append("}")
    return "".join(parts)


def _prefix_value(value: str | None) -> str:
    return _js(value)[1:-1] if value else "N/A"


def _ascii_upper(text: str) -> str:
    return (
        text.upper() if text.isascii() else "".join(c.upper() if c.isascii() else c for c in text)
    )


def _text_line(record: _Record) -> str:
    text = record.text
    duration = "N/A" if record.duration_ms is None else f"{record.duration_ms:.2f}"
    return (
        f"{_timestamp_text(record.timestamp)} [{_prefix_value(_ascii_upper(record.event_type))}] "
        f"[{_prefix_value(record.status)}] store={_prefix_value(text[0])} "
        f"store_id={_prefix_value(text[1])} op={_prefix_value(text[2])} "
        f"resource={_prefix_value(text[4])} user={_prefix_value(text[5])} "
        f"correlation_id={_prefix_value(text[8])} duration_ms={duration}\t"
        f"{_json_object(record)}\n"
    )


# ---- tamper evidence (mirror of rust/audit/chain.rs) -------------------------------------------

_MIN_KEY_LEN = 16
_MAC_SUFFIX_LEN = 74
_STATE = struct.Struct("<8sQ32s32sqQQQQ8s")
_STATE_MAGIC = b"TACHAIN1"
_ZERO = bytes(32)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class _ChainKey:
    """A MAC key with its HMAC state prepared once."""

    def __init__(self, key: bytes, source: str) -> None:
        if len(key) < _MIN_KEY_LEN:
            raise InvalidArgumentError(
                f"{_quoted(source)}: an audit integrity key needs at least {_MIN_KEY_LEN} bytes"
            )
        self._base = hmac.new(bytes(key), digestmod=hashlib.sha256)
        probe = self._base.copy()
        probe.update(b"truthound-audit key id")
        self.id = probe.hexdigest()[:16]
        self.tag = self.id[:8].encode()

    def link_mac(self, prev: bytes, body: bytes) -> bytes:
        mac = self._base.copy()
        mac.update(prev)
        mac.update(body)
        return mac.digest()

    def head_mac(self, state: bytes) -> bytes:
        """The MAC stored after the chain head in the lock file (``verify`` checks it)."""
        mac = self._base.copy()
        mac.update(b"truthound-audit head")
        mac.update(state)
        return mac.digest()


class _Head:
    """The chain head stored in the lock file (``ChainState`` in the native core)."""

    __slots__ = (
        "head", "key_tag", "last_checkpoint", "last_checkpoint_us", "next_seq", "segment",
        "segment_end", "segment_records",
    )  # fmt: skip

    def __init__(self, key_tag: bytes) -> None:
        self.next_seq = 0
        self.head = _ZERO
        self.last_checkpoint = _ZERO
        self.last_checkpoint_us = 0
        self.segment = (0, 0)
        self.segment_end = 0
        self.segment_records = 0
        self.key_tag = key_tag

    def encode(self) -> bytes:
        return _STATE.pack(
            _STATE_MAGIC, self.next_seq, self.head, self.last_checkpoint,
            self.last_checkpoint_us, self.segment[0], self.segment[1], self.segment_end,
            self.segment_records, self.key_tag,
        )  # fmt: skip

    @classmethod
    def decode(cls, data: bytes, key_tag: bytes) -> _Head | None:
        if len(data) < _STATE.size:
            return None
        magic, seq, head, last_cp, last_us, dev, ino, end, records, tag = _STATE.unpack(
            data[: _STATE.size]
        )
        if magic != _STATE_MAGIC or tag != key_tag:
            return None
        state = cls(key_tag)
        state.next_seq, state.head, state.last_checkpoint = seq, head, last_cp
        state.last_checkpoint_us, state.segment = last_us, (dev, ino)
        state.segment_end, state.segment_records = end, records
        return state


def _micros_text(micros: int) -> str:
    return _timestamp_text(_EPOCH + timedelta(microseconds=micros))


def _seal_line(out: bytearray, line: bytes, seq: int, prev: bytes, key: _ChainKey) -> bytes:
    body = line[:-1] + b',"seq":' + str(seq).encode()
    mac = key.link_mac(prev, body)
    out += body
    out += b',"mac":"'
    out += mac.hex().encode()
    out += b'"}\n'
    return mac


class _Checkpoint:
    __slots__ = (
        "interval_ms", "missing", "prev_checkpoint", "pruned", "reason", "retained_first_seq",
        "segment_digest", "segment_records", "time_us", "writer",
    )  # fmt: skip

    def __init__(self, reason: str, time_us: int, writer: str, interval_ms: int) -> None:
        self.reason = reason
        self.time_us = time_us
        self.writer = writer
        self.interval_ms = interval_ms
        self.segment_records = 0
        self.segment_digest: bytes | None = None
        self.prev_checkpoint: bytes | None = None
        self.pruned: list[str] = []
        self.retained_first_seq: int | None = None
        self.missing = 0


def _write_checkpoint(  # noqa: PLR0917 - mirrors the native signature
    out: bytearray, cp: _Checkpoint, text_format: bool, key: _ChainKey, seq: int, prev: bytes
) -> bytes:
    when = _micros_text(cp.time_us)
    parts = []
    if text_format:
        parts.append(f"{when} [CHECKPOINT] [{_js(cp.reason)[1:-1]}]\t")
    parts.append(
        f'{{"_type":"checkpoint","reason":{_js(cp.reason)},"time":"{when}",'
        f'"writer":{_js(cp.writer)},"key_id":"{key.id}","interval_ms":{cp.interval_ms},'
        f'"segment_records":{cp.segment_records},'
        f'"segment_digest":"{cp.segment_digest.hex() if cp.segment_digest else ""}",'
        f'"prev_checkpoint":"{cp.prev_checkpoint.hex() if cp.prev_checkpoint else ""}"'
    )
    if cp.reason == "retention":
        pruned = ",".join(_js(name) for name in cp.pruned)
        first = seq if cp.retained_first_seq is None else cp.retained_first_seq
        parts.append(f',"pruned":[{pruned}],"retained_first_seq":{first}')
    if cp.missing > 0:
        parts.append(f',"missing":{cp.missing}')
    parts.append("}")
    return _seal_line(out, "".join(parts).encode("utf-8"), seq, prev, key)


_HEX = frozenset(b"0123456789abcdef")


def _parse_link(line: bytes) -> tuple[int, bytes, bool] | None:
    """``(seq, mac, is_checkpoint)`` of a link line; ``None`` for anything else."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if len(line) < _MAC_SUFFIX_LEN + 8 or not line.endswith(b'"}'):
        return None
    cut = len(line) - _MAC_SUFFIX_LEN
    suffix = line[cut:]
    if not suffix.startswith(b',"mac":"'):
        return None
    digits = suffix[8:72]
    if not _HEX.issuperset(digits):
        return None
    body = line[:cut]
    marker = body.rfind(b',"seq":')
    number = body[marker + 7 :] if marker >= 0 else b""
    if not number or not number.isdigit() or not number.isascii():
        return None
    json_part = body
    tab = body.find(b"\t")
    if tab >= 0 and not body.startswith(b"{"):
        json_part = body[tab + 1 :]
    return (
        int(number),
        bytes.fromhex(digits.decode()),
        json_part.startswith(b'{"_type":"checkpoint"'),
    )


class _Scan:
    __slots__ = ("first", "last", "last_checkpoint", "links")

    def __init__(self) -> None:
        self.first: tuple[int, bytes, bool] | None = None
        self.last: tuple[int, bytes, bool] | None = None
        self.last_checkpoint: tuple[int, bytes, bool] | None = None
        self.links = 0


def _open_segment_file(path: str, compressed: bool) -> Any:
    try:
        return gzip.open(path, "rb") if compressed else open(path, "rb")
    except FileNotFoundError:
        if compressed:
            raise
        return gzip.open(path + ".gz", "rb")


def _scan_segment(handle: Any) -> _Scan:
    scan = _Scan()
    with handle:
        for line in handle:
            link = _parse_link(line)
            if link is None:
                continue
            if scan.first is None:
                scan.first = link
            if link[2]:
                scan.last_checkpoint = link
            scan.last = link
            scan.links += 1
    return scan


def _first_link_of(path: str, compressed: bool) -> tuple[int, bytes, bool] | None:
    try:
        with _open_segment_file(path, compressed) as handle:
            for line in handle:
                link = _parse_link(line)
                if link is not None:
                    return link
    except (OSError, EOFError, zlib.error):
        return None
    return None


# ---- file sink -------------------------------------------------------------------------------


def _os_text(error: OSError) -> str:
    """The OS error as both cores write it: ``[Errno 28] No space left on device``."""
    if error.errno is not None and error.strerror:
        return f"[Errno {error.errno}] {error.strerror}"
    return str(error)


def _io_error(path: Path | str, action: str, error: OSError) -> AuditIOError:
    """``"<path>": cannot <action>: [Errno N] <OS error text>`` (as the native core)."""
    return AuditIOError(f"{_quoted(str(path))}: cannot {action}: {_os_text(error)}")


def _segment_stamp(ts: datetime) -> str:
    return f"{ts:%Y%m%dT%H%M%S}{ts.microsecond:06d}Z"


def _parse_segment_name(name: str, stem: str, suffix: str) -> tuple[str, str, bool] | None:
    if not name.startswith(stem):
        return None
    rest = name[len(stem) :]
    compressed = rest.endswith(".gz")
    if compressed:
        rest = rest[:-3]
    if not rest.endswith(suffix):
        return None
    middle = rest[: len(rest) - len(suffix)]
    day = ""
    if middle.startswith("-"):
        candidate = middle[1:11]
        if len(candidate) < 10 or not _DATE.fullmatch(candidate):
            return None
        day = candidate
        middle = middle[11:]
    stamp = ""
    if middle.startswith("."):
        if not _STAMP.fullmatch(middle[1:]):
            return None
        stamp = middle[1:]
        middle = ""
    if middle:
        return None
    return day, stamp, compressed


def _list_segments(directory: Path, stem: str, suffix: str) -> list[tuple[str, str, str, bool]]:
    found = []
    for entry in os.scandir(directory):
        parsed = _parse_segment_name(entry.name, stem, suffix)
        if parsed is not None:
            found.append((str(Path(directory) / entry.name), *parsed))
    found.sort(key=lambda s: (s[1], s[2] or "~", s[3]))
    return found


def _last_byte(fd: int, size: int) -> int | None:
    try:
        data = os.pread(fd, 1, size - 1)
    except OSError:
        return None
    return data[0] if data else None


def _sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _compress_segment(path: str, lock_path: Path, durable: bool) -> None:
    with contextlib.suppress(OSError):
        lock_fd = os.open(lock_path, os.O_RDWR)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            fcntl.flock(lock_fd, fcntl.LOCK_UN)
        finally:
            os.close(lock_fd)
    gz_path = f"{path}.gz"
    tmp_path = f"{gz_path}.tmp-{os.getpid()}-{uuid.uuid4().hex}"
    try:
        with open(path, "rb") as source:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            with os.fdopen(fd, "wb") as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out:
                    shutil.copyfileobj(source, out, 1 << 16)
                if durable:
                    raw.flush()
                    os.fsync(raw.fileno())
        os.replace(tmp_path, gz_path)
        os.remove(path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.remove(tmp_path)
        if os.path.exists(gz_path):
            return
        raise _io_error(path, "compress the closed audit segment", error) from None


def _writer_name(fixed: str | None) -> str:
    """The writer a process names in its checkpoints."""
    return fixed if fixed is not None else f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


class FileSink:
    """A rotating, append-only audit segment writer shared by threads and processes.

    Fork-safe: descriptors, locks, counters and threads belong to one process. A forked child
    closes the descriptors it inherited (sharing the parent's lock-file description would let
    both hold the exclusive ``flock`` at once), starts its counters at zero, and on its first
    write opens the files again and joins the chain as a new writer (an ``open`` checkpoint
    naming it); until then it writes nothing, not even at close.
    """

    def __init__(  # noqa: PLR0915 - mirrors the native constructor, option by option
        self,
        directory: str | os.PathLike[str],
        stem: str,
        suffix: str,
        *,
        daily: bool = False,
        max_bytes: int | None = None,
        max_files: int | None = None,
        compress: bool = False,
        durability: str = "periodic",
        sync_every_events: int = 0,
        sync_interval_ms: int = 1000,
        text_format: bool = False,
        redactor: Redactor | None = None,
        integrity_key: bytes | None = None,
        key_source: str = "integrity_key",
        checkpoint_interval: float = 60.0,
        writer_id: str | None = None,
        max_age_seconds: float | None = None,
        frozen_clock: int | None = None,
    ) -> None:
        if not (math.isfinite(checkpoint_interval) and checkpoint_interval >= 0):
            raise InvalidArgumentError(
                f'"checkpoint_interval_seconds={checkpoint_interval}": must be a non-negative '
                "number of seconds"
            )
        if max_age_seconds is not None and not (
            math.isfinite(max_age_seconds) and max_age_seconds > 0
        ):
            raise InvalidArgumentError(f'"max_age_seconds={max_age_seconds}": must be positive')
        self._max_age = max_age_seconds
        self._key = None if integrity_key is None else _ChainKey(integrity_key, key_source)
        interval_ns = round(checkpoint_interval * 1e9)
        self._interval_us = interval_ns // 1000
        self._interval_ms = interval_ns // 1_000_000
        self._writer_id = writer_id
        self._writer = _writer_name(writer_id)
        self._frozen_clock = frozen_clock
        self._timer_stop = threading.Event()
        self._timer: threading.Thread | None = None
        self.checkpoints = 0
        self.pruned_segments = 0
        #: The most recent write failed (cleared by the next successful one).
        self.failing = False
        if durability not in ("none", "periodic", "always"):
            raise InvalidArgumentError(
                f"{_quoted(durability)}: durability must be 'none', 'periodic' or 'always'"
            )
        self._directory = Path(directory)
        self._stem = stem
        self._suffix = suffix
        self._daily = daily
        self._max_bytes = max_bytes
        self._max_files = max_files
        self._compress = compress
        self._durability = durability
        self._sync_every = sync_every_events
        self._sync_interval = sync_interval_ms / 1000.0
        self._text_format = text_format
        self._redactor = redactor
        self._mutex = threading.Lock()
        # Counters are also updated by compression threads and outside `_mutex`.
        self._stats_lock = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._opened = False
        self._path = ""
        self._identity = (0, 0)
        self._known_end = 0
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self._closed = False
        self._clock_offset = 0.0
        self._compressors: list[threading.Thread] = []
        self._last_error: str | None = None
        self.written_events = 0
        self.failed_events = 0
        self.rotations = 0
        self.repaired_lines = 0
        self.compressed_segments = 0
        self.compression_failures = 0
        self.syncs = 0
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _io_error(self._directory, "create the audit directory", error) from None
        self._lock_path = self._directory / f".{stem}{suffix}.lock"
        with self._mutex:
            self._ensure_open()
        if compress:
            self._compress_leftovers()
        _fork.track(self, "_stats_lock", forget=FileSink._after_fork_in_child)

    def _ensure_open(self) -> None:
        """Opens the sink in this process, once: the lock file, the active segment (repairing a
        torn tail), retention, the ``open`` checkpoint and the checkpoint timer of a chained
        log. The caller holds ``_mutex``."""
        if self._opened:
            return
        try:
            self._lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as error:
            raise _io_error(self._lock_path, "open the audit lock file", error) from None
        self._reopen_exclusive(self.active_path)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            # Another writer may have rotated the file since `_reopen_exclusive` let go.
            target = self.active_path
            if not self._is_current(target):
                self._reopen_locked(target)
            self._prune_locked()
            self._chain_append(b"", self._checkpoint("open"))
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._opened = True
        if self._key is not None and self._interval_us > 0:
            self._start_timer()

    def _after_fork_in_child(self) -> None:
        """Drops what belongs to the parent (see the class docs); the child reopens lazily."""
        # The descriptors are closed only if no thread was changing them at the fork (one may
        # have closed `_fd` and not yet stored its successor, and the number been reused since);
        # otherwise they stay open, unused. Closing a copy never releases the parent's flock.
        consistent = self._mutex.acquire(blocking=False)
        self._mutex = threading.Lock()
        if consistent:
            for fd in (self._fd, self._lock_fd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        self._fd = self._lock_fd = None
        self._opened = False
        self._path = ""
        self._identity = (0, 0)
        self._known_end = 0
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self._writer = _writer_name(self._writer_id)
        self._timer = None
        self._timer_stop = threading.Event()
        self._compressors = []
        self.written_events = self.failed_events = self.rotations = self.repaired_lines = 0
        self.compressed_segments = self.compression_failures = self.syncs = 0
        self.checkpoints = self.pruned_segments = 0
        self.failing = False

    # -- paths --

    @property
    def active_path(self) -> str:
        """The file records are appended to now."""
        if self._daily:
            now = datetime.now(UTC).timestamp() + self._clock_offset
            day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
            name = f"{self._stem}-{day}{self._suffix}"
        else:
            name = f"{self._stem}{self._suffix}"
        return str(self._directory / name)

    def set_clock_offset(self, seconds: float) -> None:
        """Shifts the sink's clock for day rotation (tests only)."""
        self._clock_offset = seconds

    def segments(self) -> list[tuple[str, str, str, bool]]:
        """Segments on disk, oldest first: ``(path, date, stamp, compressed)``."""
        try:
            return _list_segments(self._directory, self._stem, self._suffix)
        except OSError as error:
            raise _io_error(self._directory, "list audit segments", error) from None

    # -- opening and repair --

    def _reopen_exclusive(self, target: str) -> None:
        assert self._lock_fd is not None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        except OSError as error:
            raise _io_error(target, "lock the audit file", error) from None
        try:
            self._reopen_locked(target)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _reopen_locked(self, target: str) -> None:
        existed = os.path.exists(target)
        try:
            fd = os.open(target, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as error:
            raise _io_error(target, "open the audit file", error) from None
        try:
            st = os.fstat(fd)
            size = st.st_size
            if size > 0 and _last_byte(fd, size) != 0x0A:
                try:
                    os.write(fd, b"\n")
                except OSError as error:
                    raise _io_error(target, "repair the torn last line of", error) from None
                self.repaired_lines += 1
                size += 1
        except BaseException:
            os.close(fd)
            raise
        if not existed and self._durability != "none":
            _sync_dir(self._directory)
        previous = self._path
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._path = target
        self._identity = (st.st_dev, st.st_ino)
        self._known_end = size
        changed = bool(previous) and previous != target
        if self._daily and self._compress and changed:
            self._schedule_compression(previous)
        # Every segment starts with a checkpoint (written by whichever writer opens it first).
        self._chain_append(b"", None)
        if changed:
            self._prune_locked()

    def _is_current(self, target: str) -> bool:
        if self._fd is None or self._path != target:
            return False
        try:
            st = os.stat(target)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    # -- writing --

    def write_lines(self, data: bytes, events: int) -> None:
        """Appends pre-encoded whole lines (``events`` records) with one write."""
        try:
            self._write_lines(data, events)
        except (AuditIOError, AuditClosedError, InvalidArgumentError) as error:
            with self._stats_lock:
                self.failing = True
                self.failed_events += events
                self._last_error = str(error)
            raise
        with self._stats_lock:
            self.failing = False
            self.written_events += events

    def _write_lines(self, data: bytes, events: int) -> None:  # noqa: PLR0915, PLR0912
        with self._mutex:
            if self._closed:
                raise AuditClosedError(f"{_quoted(self.active_path)}: the audit sink is closed")
            self._ensure_open()
            assert self._lock_fd is not None
            attempts = 0
            while True:
                attempts += 1
                target = self.active_path
                try:
                    fcntl.flock(
                        self._lock_fd, fcntl.LOCK_SH if self._key is None else fcntl.LOCK_EX
                    )
                except OSError as error:
                    raise _io_error(target, "lock the audit file", error) from None
                if self._is_current(target):
                    assert self._fd is not None
                    size = os.fstat(self._fd).st_size
                    needs_reopen = (
                        size != self._known_end and size > 0 and _last_byte(self._fd, size) != 0x0A
                    )
                else:
                    needs_reopen = True
                if needs_reopen:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    if attempts >= 8:
                        raise AuditIOError(
                            f"{_quoted(target)}: cannot keep up with concurrent rotations of "
                            "the audit file"
                        )
                    self._reopen_exclusive(target)
                    continue
                fd = self._fd
                assert fd is not None
                if self._key is not None:
                    try:
                        self._chain_append(data, None)
                    finally:
                        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    size = os.fstat(fd).st_size
                    self._known_end = size
                    rotate = self._max_bytes is not None and size >= self._max_bytes
                    break
                failure: OSError | None = None
                try:
                    _write_all(fd, data)
                except OSError as error:
                    failure = error
                size = os.fstat(fd).st_size
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                if failure is not None:
                    self._known_end = -1
                    raise _io_error(target, "append to the audit file", failure)
                self._known_end = size
                rotate = self._max_bytes is not None and size >= self._max_bytes
                break
            self._unsynced += events
            if self._durability == "always":
                sync_now = True
            elif self._durability == "periodic":
                sync_now = (self._sync_every > 0 and self._unsynced >= self._sync_every) or (
                    self._sync_interval > 0
                    and time.monotonic() - self._last_sync >= self._sync_interval
                )
            else:
                sync_now = False
            if sync_now:
                self._sync_locked()
            if rotate:
                try:
                    self._rotate()
                except AuditIOError as error:
                    self._last_error = str(error)

    def _sync_locked(self) -> None:
        if self._fd is not None:
            try:
                os.fdatasync(self._fd)
            except OSError as error:
                raise _io_error(self._path, "fdatasync the audit file", error) from None
            self.syncs += 1
        self._unsynced = 0
        self._last_sync = time.monotonic()

    def flush(self) -> None:
        """Syncs per the durability policy."""
        with self._mutex:
            if self._durability != "none" and self._unsynced > 0:
                try:
                    self._sync_locked()
                except AuditIOError as error:
                    self._last_error = str(error)
                    raise

    def sync(self) -> None:
        """Forces ``fdatasync`` whatever the policy."""
        with self._mutex:
            self._sync_locked()

    def close(self) -> None:
        """Writes the ``close`` checkpoint (chained logs), flushes, waits for background
        compression, and closes. Idempotent."""
        self._timer_stop.set()
        timer = self._timer
        self._timer = None
        if timer is not None and timer is not threading.current_thread():
            timer.join()
        error: AuditIOError | None = None
        try:
            self._close_checkpoint()
        except AuditIOError as caught:
            error = caught
        try:
            self.flush()
        except AuditIOError as caught:
            error = error or caught
        with self._mutex:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        for thread in list(self._compressors):
            thread.join()
        self._compressors.clear()
        if error is not None:
            raise error

    @property
    def closed(self) -> bool:
        return self._closed

    # -- rotation and compression --

    def _rotate(self) -> None:
        target = self._path
        assert self._lock_fd is not None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            rotated = self._rotate_locked(target)
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        if rotated is not None and self._compress:
            self._schedule_compression(rotated)

    def _rotate_locked(self, target: str) -> str | None:
        maximum = self._max_bytes if self._max_bytes is not None else 2**64
        try:
            st = os.stat(target)
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != self._identity or st.st_size < maximum:
            return None
        name = os.path.basename(target)
        base = name[: -len(self._suffix)] if self._suffix and name.endswith(self._suffix) else name
        now = datetime.now(UTC)
        micros = 0
        while True:
            stamp = _segment_stamp(now + timedelta(microseconds=micros))
            candidate = str(self._directory / f"{base}.{stamp}{self._suffix}")
            if not os.path.exists(candidate) and not os.path.exists(candidate + ".gz"):
                break
            micros += 1
        try:
            os.rename(target, candidate)
        except OSError as error:
            raise _io_error(target, "rotate the audit file", error) from None
        self.rotations += 1
        # Opens the new segment: its first link (chained) and the pruning of old ones.
        self._reopen_locked(target)
        self._prune_locked()
        return candidate

    def _prune_locked(self) -> None:
        """Deletes closed segments beyond ``max_files`` (oldest first) and those older than
        ``max_age_seconds``; a chained log records them in a ``retention`` checkpoint. The caller
        holds the exclusive lock."""
        if self._max_files is None and self._max_age is None:
            return
        try:
            segments = self.segments()
        except AuditIOError:
            return
        active = self._path
        excess = 0 if self._max_files is None else len(segments) - max(self._max_files, 1)
        cutoff = None if self._max_age is None else time.time() - self._max_age
        pruned: list[str] = []
        for path, *_ in segments:
            if path == active:
                continue
            expired = False
            if cutoff is not None:
                try:
                    expired = os.stat(path).st_mtime < cutoff
                except OSError:
                    expired = False
            if excess <= 0 and not expired:
                continue
            try:
                os.remove(path)
            except OSError:
                continue
            excess -= 1
            with self._stats_lock:
                self.pruned_segments += 1
            pruned.append(os.path.basename(path))
        if not pruned or self._key is None:
            return
        retained: int | None = None
        with contextlib.suppress(AuditIOError):
            for path, _day, _stamp, compressed in self.segments():
                link = _first_link_of(path, compressed)
                if link is not None:
                    retained = link[0]
                    break
        cp = self._checkpoint("retention")
        assert cp is not None
        cp.pruned = pruned
        cp.retained_first_seq = retained
        self._chain_append(b"", cp)

    # -- tamper evidence --

    def _checkpoint_clock(self) -> int:
        frozen = self._frozen_clock
        return time.time_ns() // 1000 if frozen is None else frozen

    def freeze_clock(self, micros: int | None = None) -> None:
        """Fixes the time written into checkpoints (``None``: the real clock). Tests only."""
        self._frozen_clock = micros

    def _checkpoint(self, reason: str) -> _Checkpoint | None:
        if self._key is None:
            return None
        return _Checkpoint(reason, self._checkpoint_clock(), self._writer, self._interval_ms)

    def _chain_append(self, body: bytes, extra: _Checkpoint | None) -> None:
        """Appends ``body`` as links, preceded by the checkpoint a new or inconsistent segment
        needs and followed by ``extra`` and a due ``periodic`` checkpoint; stores the head.
        The caller holds the exclusive lock."""
        key = self._key
        if key is None:
            return
        fd = self._fd
        assert fd is not None
        path = self._path
        try:
            st = os.fstat(fd)
        except OSError as error:
            raise _io_error(path, "stat the audit file", error) from None
        size, ident = st.st_size, (st.st_dev, st.st_ino)
        out = bytearray()
        head = self._chain_head(key, ident, size, out)
        for line in body.split(b"\n"):
            if not line:
                continue
            if not line.endswith(b"}"):
                raise InvalidArgumentError(
                    f"{_quoted(line[:80].decode('utf-8', 'replace'))}: a chained record must "
                    "be one JSON object line"
                )
            head.head = _seal_line(out, line, head.next_seq, head.head, key)
            head.next_seq += 1
            head.segment_records += 1
        if extra is None and (
            self._interval_us > 0
            and self._checkpoint_clock() - head.last_checkpoint_us >= self._interval_us
        ):
            extra = self._checkpoint("periodic")
        if extra is not None:
            self._push_checkpoint(out, head, extra, key)
        if not out:
            return
        try:
            _write_all(fd, bytes(out))
        except OSError as error:
            self._known_end = -1
            raise _io_error(path, "append to the audit file", error) from None
        head.segment = ident
        head.segment_end = size + len(out)
        self._known_end = head.segment_end
        encoded = head.encode()
        assert self._lock_fd is not None
        try:
            os.pwrite(self._lock_fd, encoded + key.head_mac(encoded), 0)
        except OSError as error:
            raise _io_error(path, "record the audit chain head in the lock file", error) from None

    def _push_checkpoint(
        self, out: bytearray, head: _Head, cp: _Checkpoint, key: _ChainKey
    ) -> None:
        if cp.reason != "rotate":
            cp.segment_records = head.segment_records
            cp.segment_digest = head.head if head.segment_records > 0 else None
        cp.prev_checkpoint = head.last_checkpoint if head.last_checkpoint != _ZERO else None
        mac = _write_checkpoint(out, cp, self._text_format, key, head.next_seq, head.head)
        head.head = mac
        head.last_checkpoint = mac
        head.last_checkpoint_us = cp.time_us
        head.next_seq += 1
        head.segment_records = 1 if cp.reason in ("rotate", "start") else head.segment_records + 1
        with self._stats_lock:
            self.checkpoints += 1

    def _chain_head(
        self, key: _ChainKey, ident: tuple[int, int], size: int, out: bytearray
    ) -> _Head:
        assert self._lock_fd is not None
        try:
            stored = _Head.decode(os.pread(self._lock_fd, _STATE.size, 0), key.tag)
        except OSError:
            stored = None
        if stored is not None:
            if stored.segment == ident and stored.segment_end == size:
                return stored
            if stored.segment != ident and size == 0:
                cp = self._checkpoint("rotate")
                assert cp is not None
                cp.segment_records = stored.segment_records
                cp.segment_digest = stored.head if stored.segment_records > 0 else None
                self._push_checkpoint(out, stored, cp, key)
                return stored
        return self._recover(key, stored, size, out)

    def _recover(self, key: _ChainKey, stored: _Head | None, size: int, out: bytearray) -> _Head:
        try:
            active = _scan_segment(open(self._path, "rb"))  # noqa: SIM115
        except OSError as error:
            raise _io_error(self._path, "read the audit file", error) from None
        head = _Head(key.tag)
        head.last_checkpoint_us = -(2**62)
        expected = 0 if stored is None else stored.next_seq
        if active.last is not None and size > 0:
            head.next_seq = active.last[0] + 1
            head.head = active.last[1]
            head.segment_records = active.links
            if active.last_checkpoint is not None:
                head.last_checkpoint = active.last_checkpoint[1]
            cp = self._checkpoint("recover")
            assert cp is not None
            cp.missing = max(expected - head.next_seq, 0)
            self._push_checkpoint(out, head, cp, key)
            return head
        for path, _day, _stamp, compressed in reversed(self.segments()):
            if path == self._path:
                continue
            try:
                scan = _scan_segment(_open_segment_file(path, compressed))
            except (OSError, EOFError, zlib.error):
                continue
            if scan.last is not None:
                head.next_seq = scan.last[0] + 1
                head.head = scan.last[1]
                head.segment_records = scan.links
                if scan.last_checkpoint is not None:
                    head.last_checkpoint = scan.last_checkpoint[1]
                cp = self._checkpoint("rotate")
                assert cp is not None
                cp.segment_records = scan.links
                cp.segment_digest = scan.last[1]
                cp.missing = max(expected - head.next_seq, 0)
                self._push_checkpoint(out, head, cp, key)
                return head
        cp = self._checkpoint("start")
        assert cp is not None
        cp.missing = expected
        self._push_checkpoint(out, head, cp, key)
        return head

    def checkpoint_if_due(self) -> None:
        """Writes a periodic checkpoint if one is due (the timer calls this on its own)."""
        if self._key is None:
            return
        with self._mutex:
            if self._closed:
                return
            try:
                self._ensure_open()
            except AuditIOError as error:
                self._last_error = str(error)
                raise
            assert self._lock_fd is not None
            target = self.active_path
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                if not self._is_current(target):
                    self._reopen_locked(target)
                self._chain_append(b"", None)
                if self._max_age is not None:
                    self._prune_locked()
            except (AuditIOError, InvalidArgumentError) as error:
                self._last_error = str(error)
                raise
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _start_timer(self) -> None:
        interval = self._interval_us / 2e6
        stop = self._timer_stop
        ref = weakref.ref(self)

        def run() -> None:
            while not stop.wait(interval):
                sink = ref()
                if sink is None:
                    return
                with contextlib.suppress(Exception):
                    sink.checkpoint_if_due()
                del sink

        self._timer = threading.Thread(target=run, name="truthound-audit-checkpoint", daemon=True)
        self._timer.start()

    def _close_checkpoint(self) -> None:
        cp = self._checkpoint("close")
        if cp is None:
            return
        with self._mutex:
            if self._closed or self._fd is None or self._lock_fd is None:
                return
            target = self.active_path
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                if not self._is_current(target):
                    self._reopen_locked(target)
                self._chain_append(b"", cp)
            except AuditIOError as error:
                self._last_error = str(error)
                raise
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @property
    def key_id(self) -> str | None:
        """The public id of the integrity key (``None`` when records are not chained)."""
        return None if self._key is None else self._key.id

    def _compress_leftovers(self) -> None:
        """Compresses closed segments left uncompressed by earlier runs, also those whose
        ``.gz`` exists already (an interrupted compression: made again, see the native core)."""
        try:
            segments = self.segments()
        except AuditIOError:
            return
        active = self.active_path
        for path, _day, _stamp, compressed in segments:
            if not compressed and path != active:
                self._schedule_compression(path)

    def _schedule_compression(self, path: str) -> None:
        durable = self._durability != "none"

        def run() -> None:
            try:
                _compress_segment(path, self._lock_path, durable)
            except AuditIOError as error:
                with self._stats_lock:
                    self.compression_failures += 1
                    self._last_error = str(error)
            else:
                with self._stats_lock:
                    self.compressed_segments += 1

        thread = threading.Thread(target=run, name="truthound-audit-gzip", daemon=True)
        self._compressors = [t for t in self._compressors if t.is_alive()]
        self._compressors.append(thread)
        thread.start()

    # -- encoding --

    def _encode(self, record: _Record) -> bytes:
        line = _text_line(record) if self._text_format else _json_object(record) + "\n"
        return line.encode("utf-8")

    def _prepare(self, record: _Record, redactor: Redactor | None) -> bytes:
        if redactor is not None:
            redactor._redact_record(record)
        if self._redactor is not None:
            self._redactor._redact_record(record)
        return self._encode(record)

    def encode_event(self, event: Any, redactor: Redactor | None = None) -> bytes:
        """The line this sink would write for ``event`` (after ``redactor``, then its own)."""
        return self._prepare(_record_from_event(event), redactor)

    def log_event(self, event: Any, redactor: Redactor | None = None) -> None:
        """Writes one ``AuditEvent`` synchronously."""
        self.write_lines(self._prepare(_record_from_event(event), redactor), 1)

    def log_fields(  # noqa: PLR0917 - mirrors the native signature
        self,
        redactor: Redactor | None,
        event_type: str,
        status: str,
        store_type: str,
        store_id: str,
        operation: str,
        item_id: Any,
        user_id: Any,
        duration_ms: object,
        metadata: Any,
        error_message: Any,
        extra: dict[str, Any] | None,
    ) -> None:
        """Builds, redacts, encodes and writes an event from its fields."""
        record = _record_from_fields(
            event_type, status, store_type, store_id, operation, item_id, user_id, duration_ms,
            metadata, error_message, extra,
        )  # fmt: skip
        self.write_lines(self._prepare(record, redactor), 1)

    @property
    def text_format(self) -> bool:
        return self._text_format

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
        lock_fd = getattr(self, "_lock_fd", None)
        if lock_fd is not None:
            with contextlib.suppress(Exception):
                os.close(lock_fd)


# ---- async writer ----------------------------------------------------------------------------


class AsyncWriter:
    """A bounded queue drained by a writer thread into a ``FileSink`` or any object with
    ``log(event)``; same accounting and handshakes as the native writer.

    Fork-safe: the queue, its counters and its thread belong to one process. A forked child
    starts with an empty queue and zero counters, and starts a writer thread of its own on its
    first event; what the parent had queued is written by the parent only.
    """

    def __init__(
        self,
        target: Any,
        capacity: int,
        flush_interval: float,
        overflow: str = "block",
        block_timeout: float = 5.0,
    ) -> None:
        if overflow not in ("block", "drop_newest"):
            raise InvalidArgumentError(
                f"{_quoted(overflow)}: overflow must be 'block' or 'drop_newest'"
            )
        if capacity < 1:
            raise InvalidArgumentError('"queue_size=0": must be at least 1')
        if not (math.isfinite(flush_interval) and flush_interval > 0):
            raise InvalidArgumentError(
                f'"flush_interval_seconds={flush_interval}": must be positive'
            )
        self._native_target = isinstance(target, FileSink)
        if not self._native_target and not hasattr(target, "log"):
            raise TypeError("AsyncAuditBackend needs a backend with a log(event) method")
        self._target = target
        self._capacity = capacity
        self._interval = flush_interval
        self._drop = overflow == "drop_newest"
        self._block_timeout = max(block_timeout, 0.0)
        self._cond = threading.Condition(threading.Lock())
        self._writer_wake = threading.Condition(self._cond._lock)  # type: ignore[attr-defined]
        self._room = threading.Condition(self._cond._lock)  # type: ignore[attr-defined]
        self._batch: list[Any] = []
        self._closing = False
        self._stopped = False
        self._accepted_locked = 0
        self._done = 0
        self._flush_requested = 0
        self._flushed = 0
        self._accepted = 0
        self._dropped = 0
        self._persisted = 0
        self._failed = 0
        self._discarded = 0
        self._abandoned = False
        self._delivering = False
        self._last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._start_writer()
        _fork.track(self, forget=AsyncWriter._after_fork_in_child)

    def _start_writer(self) -> None:
        thread = threading.Thread(target=self._run, name="truthound-audit-writer", daemon=True)
        thread.start()
        self._thread = thread

    def _after_fork_in_child(self) -> None:
        """A fresh, empty queue (see the class docs); the parent's records stay with it."""
        self._cond = threading.Condition(threading.Lock())
        self._writer_wake = threading.Condition(self._cond._lock)  # type: ignore[attr-defined]
        self._room = threading.Condition(self._cond._lock)  # type: ignore[attr-defined]
        self._batch = []
        self._stopped = self._closing
        self._accepted_locked = self._done = self._flush_requested = self._flushed = 0
        self._accepted = self._dropped = self._persisted = self._failed = self._discarded = 0
        self._abandoned = self._delivering = False
        self._thread = None

    # -- producers --

    def _offer(self, item: Any) -> bool:
        with self._cond:
            if self._closing:
                raise AuditClosedError('"AsyncAuditBackend": the async audit queue is closed')
            if len(self._batch) >= self._capacity:
                if self._drop:
                    self._dropped += 1
                    return False
                deadline = time.monotonic() + self._block_timeout
                while len(self._batch) >= self._capacity and not self._closing:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._room.wait(remaining)
                if self._closing:
                    raise AuditClosedError('"AsyncAuditBackend": the async audit queue is closed')
                if len(self._batch) >= self._capacity:
                    self._dropped += 1
                    return False
            if self._thread is None:
                try:
                    self._start_writer()
                except RuntimeError:
                    # A forked child that cannot start its writer thread: refuse, counted.
                    self._dropped += 1
                    return False
            self._batch.append(item)
            self._accepted_locked += 1
            self._accepted += 1
            self._writer_wake.notify()
            return True

    @property
    def native_target(self) -> bool:
        """Whether events are encoded by the core (the target is a ``FileSink``)."""
        return self._native_target

    def log_event(self, event: Any, redactor: Redactor | None = None) -> bool:
        """Queues an ``AuditEvent``; ``False`` when it was dropped (counted)."""
        if self._native_target:
            return self._offer(self._target._prepare(_record_from_event(event), redactor))
        return self._offer(event)

    def log_fields(  # noqa: PLR0917 - mirrors the native signature
        self,
        redactor: Redactor | None,
        event_type: str,
        status: str,
        store_type: str,
        store_id: str,
        operation: str,
        item_id: Any,
        user_id: Any,
        duration_ms: object,
        metadata: Any,
        error_message: Any,
        extra: dict[str, Any] | None,
    ) -> bool:
        """The fast path of ``AuditLogger`` (only for a ``FileSink`` target)."""
        if not self._native_target:
            raise TypeError("log_fields needs a FileSink target")
        record = _record_from_fields(
            event_type, status, store_type, store_id, operation, item_id, user_id, duration_ms,
            metadata, error_message, extra,
        )  # fmt: skip
        return self._offer(self._target._prepare(record, redactor))

    # -- writer --

    def _deliver(self, batch: list[Any]) -> tuple[int, int]:
        """Writes a batch; returns how many records failed and how many were discarded."""
        if self._native_target:
            try:
                self._target.write_lines(b"".join(batch), len(batch))
            except (AuditIOError, AuditClosedError):
                return len(batch), 0
            return 0, 0
        failed = 0
        log: Callable[[Any], Any] = self._target.log
        for index, event in enumerate(batch):
            with self._cond:
                if self._abandoned:
                    # Interpreter exit: this event and the rest are given up (and counted).
                    return failed, len(batch) - index
                self._delivering = True
            try:
                log(event)
            except Exception as error:
                failed += 1
                self._last_error = str(error)
            finally:
                with self._cond:
                    self._delivering = False
                    self._cond.notify_all()
        return failed, 0

    def _flush_target(self) -> None:
        flush = getattr(self._target, "flush", None)
        if flush is None or self._abandoned:
            return
        try:
            flush()
        except Exception as error:
            self._last_error = str(error)

    def _run(self) -> None:
        next_tick = time.monotonic() + self._interval
        while True:
            with self._cond:
                while not (self._batch or self._closing or self._flush_requested > self._flushed):
                    remaining = next_tick - time.monotonic()
                    if remaining <= 0:
                        break
                    self._writer_wake.wait(remaining)
                batch, self._batch = self._batch, []
                generation = self._flush_requested
                closing = self._closing
                tick = time.monotonic() >= next_tick
                self._room.notify_all()
            count = len(batch)
            if count:
                failed, discarded = self._deliver(batch)
                failed = min(failed, count)
                discarded = min(discarded, count - failed)
                with self._cond:
                    self._failed += failed
                    self._discarded += discarded
                    self._persisted += count - failed - discarded
            with self._cond:
                flush_due = generation > self._flushed or tick or (closing and not self._batch)
            if flush_due:
                self._flush_target()
                next_tick = time.monotonic() + self._interval
            with self._cond:
                if flush_due:
                    self._flushed = max(self._flushed, generation)
                self._done += count
                self._cond.notify_all()
                if closing and not self._batch:
                    self._stopped = True
                    self._cond.notify_all()
                    return

    # -- handshakes --

    def flush(self, timeout: float) -> bool:
        """Waits until everything queued before the call is written and the target flushed."""
        with self._cond:
            if self._stopped or self._thread is None:
                return self._done >= self._accepted_locked
            target = self._accepted_locked
            self._flush_requested += 1
            generation = self._flush_requested
            self._writer_wake.notify()
            deadline = time.monotonic() + max(timeout, 0.0)
            while not (self._done >= target and self._flushed >= generation) and not self._stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return self._done >= target

    def close(self, timeout: float) -> bool:
        """Stops accepting, drains, flushes the target and joins the writer."""
        with self._cond:
            self._closing = True
            if self._thread is None:
                self._stopped = True
            self._writer_wake.notify()
            self._room.notify_all()
            deadline = time.monotonic() + max(timeout, 0.0)
            while not self._stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        return True

    # -- counters --

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def accepted(self) -> int:
        """Events accepted into the queue."""
        return self._accepted

    @property
    def dropped(self) -> int:
        """Events refused because the queue was full (exact)."""
        return self._dropped

    @property
    def persisted(self) -> int:
        """Events the target accepted."""
        return self._persisted

    @property
    def failed(self) -> int:
        """Events the target failed to write."""
        return self._failed

    @property
    def discarded(self) -> int:
        """Events accepted but given up without being delivered (interpreter exit)."""
        return self._discarded

    def abandon(self, timeout: float) -> bool:
        """Interpreter exit: stops delivering to a Python target (what is not delivered yet is
        discarded and counted in ``discarded``) and waits up to ``timeout`` seconds until the
        writer is out of the target's ``log`` and every queued event is accounted for. Always
        ``True`` for a ``FileSink`` target."""
        if self._native_target:
            return True
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            self._abandoned = True
            self._writer_wake.notify()
            while self._delivering or (
                self._thread is not None
                and not self._stopped
                and self._accepted - self._persisted - self._failed - self._discarded > 0
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    @property
    def pending(self) -> int:
        """Events accepted and not yet written."""
        with self._cond:
            return max(self._accepted - self._persisted - self._failed - self._discarded, 0)

    @property
    def last_error(self) -> str | None:
        if self._native_target:
            error: str | None = self._target.last_error
            return error
        return self._last_error

    def __del__(self) -> None:
        with contextlib.suppress(Exception), self._cond:
            self._closing = True
            self._writer_wake.notify()
            self._room.notify_all()
