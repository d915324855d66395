"""``DataRedactor``: removes sensitive data from audit events before any backend sees them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .. import _core
from ..errors import InvalidArgumentError, InvalidArgumentTypeError
from .events import AuditEvent, json_metadata

__all__ = ["DEFAULT_PATTERNS", "DEFAULT_REPLACEMENT", "DataRedactor"]

#: The patterns used when none are given: e-mail address, US SSN, 16-digit card number, and
#: ``password|secret|token|api_key`` followed by ``:`` or ``=`` and a value.
DEFAULT_PATTERNS: tuple[str, ...] = (
    r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}\b",
    r"\b\d{3}-\d{2}-\d{4}\b",
    r"\b\d{16}\b",
    r"(?i)(password|secret|token|api_key)\s*[:=]\s*\S+",
)
DEFAULT_REPLACEMENT = "[REDACTED]"

# Inline flags of the dialect both cores share (see `DataRedactor`).
_FLAG_LETTERS = ((re.IGNORECASE, "i"), (re.MULTILINE, "m"), (re.DOTALL, "s"))


def _pattern_text(pattern: str | re.Pattern[str]) -> str:
    if isinstance(pattern, str):
        return pattern
    if isinstance(pattern, re.Pattern):
        if not isinstance(pattern.pattern, str):
            raise InvalidArgumentError(f"{pattern.pattern!r}: bytes patterns are not supported")
        if pattern.flags & (re.ASCII | re.LOCALE | re.VERBOSE):
            raise InvalidArgumentError(
                f"{pattern.pattern!r}: the ASCII, LOCALE and VERBOSE flags are not supported"
            )
        letters = "".join(letter for flag, letter in _FLAG_LETTERS if pattern.flags & flag)
        return f"(?{letters}){pattern.pattern}" if letters else pattern.pattern
    raise InvalidArgumentError(f"{pattern!r}: a redaction pattern must be a str or re.Pattern")


def _collection(name: str, value: Any) -> Any:
    """``value`` unless it is a single ``str``/``bytes`` (which iterates as its characters)."""
    if isinstance(value, str | bytes):
        raise InvalidArgumentTypeError(
            f"{name}={value!r}: expected a list of strings, not a single string "
            f"(write {name}=[{value!r}])"
        )
    return value


class DataRedactor:
    """Redacts every string of an event (ids, summaries, user agent, error message, metadata at
    any depth, dict keys, list items) in one pass per string, and replaces whole values under
    sensitive keys.

    - ``patterns``: regular expressions (strings or compiled ``re`` patterns), all compiled into
      one linear-time automaton. They are written in the dialect that Python's ``re`` and the
      native engine read alike: literals, ``.``, ``^``, ``$`` (end of text; end of line with
      the ``m`` flag), ``\\A``, ``\\b``, ``\\B``, ``\\d \\w \\s`` and their negations,
      ``\\n \\t \\r \\f \\v \\a``, ``\\xHH``, ``\\uHHHH``, ``\\UHHHHHHHH``, escaped
      punctuation, classes ``[...]`` with ranges, groups ``(...)``, ``(?:...)``,
      ``(?P<name>...)``, ``(?i:...)``, one leading ``(?ims)``, ``|``, and the quantifiers ``*``,
      ``+``, ``?``, ``{n}``, ``{n,}``, ``{n,m}`` (counts up to 1000, optionally lazy). Anything
      else (look-around, backreferences, possessive or nested quantifiers such as ``a++``,
      ``\\Z``/``\\z``, ``\\p{..}``, POSIX classes, class set operations, comments, the ``x``
      flag...) and patterns that can match the empty string are rejected with
      ``InvalidArgumentError`` naming the pattern and the reason, identically on both cores.
      (Unicode tables still follow each engine: ``\\w``, ``\\s`` and case folding can differ
      on rare characters, such as combining marks for ``\\w`` or ``\\x1c``-``\\x1f`` for
      ``\\s``.) ``None`` uses ``DEFAULT_PATTERNS``; ``[]`` disables pattern redaction.
    - ``fields_to_redact`` (or the existing API's ``sensitive_fields``): field names matched
      case-insensitively against dict keys at any depth and against the event's own field names.
      By default a name matches when it is a *substring* of the key (``"password"`` matches
      ``"db_password"``, like the existing API); ``exact_field_match=True`` requires the whole key.
      The value under a matching key is replaced whole, whatever its type.
    - ``replacement`` (existing attribute name: ``redacted_value``): the replacement text.

    ``patterns``, ``fields_to_redact`` and ``sensitive_fields`` are collections: a single string
    (which would be read as its letters) raises ``InvalidArgumentError`` naming the argument.
    """

    def __init__(
        self,
        sensitive_fields: Iterable[str] | None = None,
        patterns: Iterable[str | re.Pattern[str]] | None = None,
        *,
        replacement: str = DEFAULT_REPLACEMENT,
        fields_to_redact: Iterable[str] | None = None,
        exact_field_match: bool = False,
    ) -> None:
        sensitive_fields = _collection("sensitive_fields", sensitive_fields)
        fields_to_redact = _collection("fields_to_redact", fields_to_redact)
        patterns = _collection("patterns", patterns)
        fields = list(dict.fromkeys([*(sensitive_fields or ()), *(fields_to_redact or ())]))
        for name in fields:
            if not isinstance(name, str) or not name:
                raise InvalidArgumentError(
                    f"fields_to_redact item {name!r} must be a non-empty str"
                )
        if not isinstance(replacement, str):
            raise InvalidArgumentError(f"replacement={replacement!r} must be a str")
        texts = list(DEFAULT_PATTERNS) if patterns is None else [_pattern_text(p) for p in patterns]
        self._core = _core.core.Redactor(texts, replacement, fields, exact_field_match)
        self.patterns: list[str] = texts
        self.fields_to_redact: list[str] = fields
        self.exact_field_match = exact_field_match
        self._replacement = replacement

    @property
    def replacement(self) -> str:
        return self._replacement

    @property
    def redacted_value(self) -> str:
        """The existing API's name of ``replacement``."""
        return self._replacement

    @property
    def sensitive_fields(self) -> set[str]:
        """The existing API's view of ``fields_to_redact``."""
        return set(self.fields_to_redact)

    def redact(self, data: Any) -> Any:
        """A redacted copy of ``data`` (dicts, lists, tuples, sets, strings; other values are
        returned as they are). The input is never modified."""
        return self._core.redact(data)

    def redact_text(self, text: str) -> str:
        """``text`` with every pattern match replaced."""
        return self._core.redact_text(text)

    def redact_event(self, event: AuditEvent) -> AuditEvent:
        """A redacted copy of ``event``; the original is untouched. ``event_type``, ``status``
        and ``timestamp`` are not free text and are kept. ``metadata`` is redacted in the
        JSON-safe form every record holds (see ``AuditEvent``), so bytes, non-string keys and
        other objects are redacted as text, and the copy shares no object with the caller.
        A key that becomes equal to an earlier one once redacted (two e-mail addresses both
        becoming ``[REDACTED]``) is kept as ``[REDACTED]#2``, ``#3``...: no value is lost."""
        clone = event._shallow_copy()
        self._core.redact_attributes(event, clone)
        # Redacted in the JSON-safe form the records hold, so bytes, non-string keys and other
        # objects are redacted too (not passed through untouched) and the copy shares nothing
        # with the caller's objects.
        clone.metadata = self._core.redact(json_metadata(event.metadata))
        return clone

    def __repr__(self) -> str:
        return (
            f"DataRedactor(patterns={self.patterns!r}, replacement={self._replacement!r}, "
            f"fields_to_redact={self.fields_to_redact!r})"
        )
