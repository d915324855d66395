"""The two cores produce byte-identical records and identical redaction on generated inputs.

Each test here compares the native core with the pure one directly, so it runs once (under the
native fixture); the parsing is done by Python's own ``json`` module, independently of both.
"""

from __future__ import annotations

import enum
import json
import math
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from truthound.stores.observability import _pure
from truthound.stores.observability.audit import DEFAULT_PATTERNS, AuditEvent

from .strategies import events, metadata_values, text

pytestmark = pytest.mark.only_core("native")

_native: Any = pytest.importorskip("truthound.stores.observability._native")
FIELDS = ["password", "Token", "e"]


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Weird:
    def __str__(self) -> str:
        return "weird\nobject"


class Broken:
    def __str__(self) -> str:
        raise RuntimeError("no")


odd_values = st.one_of(
    metadata_values,
    st.sampled_from(
        [
            float("nan"),
            float("inf"),
            -float("inf"),
            2**80,
            -(2**64),
            True,
            Color.RED,
            Color.BLUE,
            (1, "a"),
            {1, 2},
            frozenset({"x"}),
            b"bytes",
            Decimal("1.5"),
            datetime(2024, 1, 2, 3, 4, 5, 6),
            date(2024, 1, 2),
            time(1, 2, 3),
            Weird(),
            Broken(),
            {1: "int key", None: "none key", ("t",): "tuple key"},
            1e-7,
            -0.0,
            1e16,
            2.0**46 + 0.125,
            5e-324,
            1.7976931348623157e308,
        ]
    ),
)
odd_metadata = st.dictionaries(text, st.one_of(odd_values, st.lists(odd_values, max_size=3)))


def outcome(call: Any) -> tuple[str, str]:
    """``("ok", repr(result))`` or ``(exception type name, message)``."""
    try:
        return "ok", repr(call())
    except Exception as error:
        return type(error).__name__, str(error)


@pytest.fixture(scope="module")
def sinks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder: Path = tmp_path_factory.mktemp("equivalence")
    native_redactor = _native.Redactor(list(DEFAULT_PATTERNS), "[X]", FIELDS)
    pure_redactor = _pure.Redactor(list(DEFAULT_PATTERNS), "[X]", FIELDS)
    made = {}
    for text_format in (False, True):
        for name, module in (("native", _native), ("pure", _pure)):
            made[name, text_format] = module.FileSink(
                folder / name, "a", ".log", text_format=text_format, durability="none"
            )
    made["redactors"] = {"native": native_redactor, "pure": pure_redactor}
    return made


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=events(), text_format=st.booleans(), redact=st.booleans())
def test_records_are_byte_identical(
    sinks: dict[str, Any], event: AuditEvent, text_format: bool, redact: bool
) -> None:
    redactors = sinks["redactors"]
    native = sinks["native", text_format].encode_event(
        event, redactors["native"] if redact else None
    )
    pure = sinks["pure", text_format].encode_event(event, redactors["pure"] if redact else None)
    assert native == pure
    assert native.endswith(b"\n")
    assert native.count(b"\n") == 1
    record = json.loads(native.split(b"\t", 1)[1] if text_format else native)
    if not redact:
        assert AuditEvent.from_dict(record) == event


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(metadata=odd_metadata)
def test_unserialisable_metadata_is_normalised_identically(
    sinks: dict[str, Any], metadata: dict[str, Any]
) -> None:
    event = AuditEvent(event_id="e", timestamp=datetime(2024, 1, 1, tzinfo=UTC), metadata=metadata)
    native = sinks["native", False].encode_event(event)
    assert native == sinks["pure", False].encode_event(event)
    parsed = json.loads(native)
    assert parsed.get("metadata", {}) == json.loads(
        json.dumps(_pure.normalize_value(metadata) or {}, ensure_ascii=False)
    )
    for name in ("native", "pure"):
        normalized = (_native if name == "native" else _pure).normalize_value(metadata)
        assert json.dumps(normalized, allow_nan=False)  # always representable in strict JSON


def test_the_documented_fallbacks() -> None:
    for module in (_native, _pure):
        assert module.normalize_value(
            {"n": math.nan, "i": -math.inf, "e": Color.BLUE, "b": Broken(), "d": date(2024, 1, 2)}
        ) == {
            "n": "NaN",
            "i": "-Infinity",
            "e": 2,
            "b": "<unserialisable Broken>",
            "d": "2024-01-02",
        }
        deep: dict[str, Any] = {}
        deep["self"] = deep
        flattened = json.dumps(module.normalize_value(deep))
        assert "<max depth exceeded>" in flattened


@settings(max_examples=500)
@given(
    data=st.text(
        alphabet=st.sampled_from("ab@.-_ 0123456789Xx:=\n\tpasswordTOKENé€\U0001d518"), max_size=80
    )
)
def test_redaction_is_identical_on_both_cores(data: str) -> None:
    patterns = [*DEFAULT_PATTERNS, r"(?i)x+\d", r"[0-9]{2}"]
    native = _native.Redactor(patterns, "<R>", ["passw"])
    pure = _pure.Redactor(patterns, "<R>", ["passw"])
    assert native.redact_text(data) == pure.redact_text(data)
    nested = {data: [data, {"password": data, "k": (data,)}]}
    assert native.redact(nested) == pure.redact(nested)
    assert native.is_sensitive(data) == pure.is_sensitive(data)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"a(?=b)", "look-around (look-ahead/look-behind) is not supported"),
        (r"(?<=a)b", "look-around (look-ahead/look-behind) is not supported"),
        (r"(a)\1", "backreferences and octal escapes (\\1, \\0...) are not supported"),
        (r"(?(1)a|b)", "conditional backreferences are not supported"),
        (r"(?>a)", "atomic groups are not supported"),
        # Read differently by the two engines (possessive vs nested, \Z vs \z...):
        (
            r"a++",
            "repeated quantifier + (possessive or nested repetition, like a++ or a{2}*) "
            "is not supported: use a group, like (?:a+)+",
        ),
        (
            r"a{2}+",
            "repeated quantifier + (possessive or nested repetition, like a++ or a{2}*) "
            "is not supported: use a group, like (?:a+)+",
        ),
        (
            r"a\Z",
            "\\Z and \\z are not supported (use $: without the m flag it matches only "
            "at the end of the text)",
        ),
        (r"(unclosed", "unclosed group: ( without )"),
        (r"unopened)", "unbalanced parenthesis: ) without ("),
        (
            r"[[:alpha:]]",
            "a [ inside a character class must be escaped as \\[ (nested classes "
            "and [:name:] are not supported)",
        ),
        (
            r"[a&&b]",
            "&&, --, ~~ and || inside a character class must be escaped (set "
            "operations are not supported)",
        ),
        (r"a{ 3 }", "a literal { must be escaped as \\{"),
        (
            r"a(?i)b",
            "inline flags (?i) are only allowed at the start of the pattern; use a "
            "scoped group such as (?i:...)",
        ),
        (r"(?<n>a)", "(?<name>...) is not supported: use (?P<name>...)"),
        (r"\p{L}", "Unicode property classes (\\p{...}, \\P{...}) are not supported"),
        (r"\N{DIGIT ONE}", "unsupported escape \\N"),
        (r"(?#c)a", "comments (?#...) are not supported"),
        (r"[z-a]", "invalid character class range z-a"),
        (r"\ud800", "\\ud800 is not a Unicode scalar value"),
    ],
)
def test_both_cores_reject_the_same_patterns_with_the_same_message(
    pattern: str, reason: str
) -> None:
    messages = {outcome(lambda m=module: m.Redactor([pattern], "x", []))
                for module in (_native, _pure)}  # fmt: skip
    quoted = json.dumps(pattern)
    assert messages == {("InvalidArgumentError", f"{quoted}: redaction pattern rejected: {reason}")}


def test_empty_matches_are_rejected_alike() -> None:
    for pattern in (r"x?", r"a*", r"\b", r"(?i)"):
        messages = {outcome(lambda m=module, p=pattern: m.Redactor([p], "x", []))
                    for module in (_native, _pure)}  # fmt: skip
        quoted = json.dumps(pattern)
        assert messages == {
            ("InvalidArgumentError", f"{quoted}: redaction pattern can match the empty string")
        }


PATTERN_TOKENS = [
    "a", "b", "-", "é", " ", "#", ":", "}", "]", ".", "^", "$", "|", "\\d", "\\s", "\\w", "\\b",
    "\\W", "\\x41", "\\u00e9", "\\.", "\\-", "\\Z", "\\z", "\\1", "\\<", "\\q", "\\",
    "(", ")", "(?:", "(?i)", "(?m)", "(?i:", "(?-i:", "(?s:", "(?P<g>", "(?=", "(?<n>", "(?x)",
    "[", "[^", "[]", "&&", "--", "[:alpha:]", "*", "+", "?", "{2}", "{1,3}", "{,2}", "{2,1}", "{",
    "{1001}",
]  # fmt: skip


@settings(max_examples=3000)
@given(
    tokens=st.lists(st.sampled_from(PATTERN_TOKENS), min_size=1, max_size=8),
    texts=st.lists(st.text(alphabet="ab-é :#}]\n\tA1_.Xz", max_size=12), max_size=4),
)
def test_generated_patterns_are_accepted_rejected_and_applied_alike(
    tokens: list[str], texts: list[str]
) -> None:
    """Same verdict and message for every pattern; an accepted one redacts the same text."""
    import warnings

    pattern = "".join(tokens)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Python's re must not even warn about an accepted one
        pure = outcome(lambda: _pure.Redactor([pattern], "<R>", []))
    native = outcome(lambda: _native.Redactor([pattern], "<R>", []))
    assert native[0] == pure[0]
    if native[0] != "ok":
        assert native == pure
        return
    native_redactor = _native.Redactor([pattern], "<R>", [])
    pure_redactor = _pure.Redactor([pattern], "<R>", [])
    for sample in [*texts, "a\n", "ab\nab", "A-a é\t1"]:
        assert native_redactor.redact_text(sample) == pure_redactor.redact_text(sample), (
            pattern,
            sample,
        )


@pytest.mark.timeout(60)
def test_a_catastrophic_pattern_runs_in_linear_time_natively() -> None:
    """Python's ``re`` needs about 2**n steps for ``(a+)+b`` on n ``a``s (seconds at n=25); the
    native automaton scans 100,000 characters at once. Meaningless on the pure core (it would
    hang), so only the native core runs it."""
    redactor = _native.Redactor([r"(a+)+b", r"(x|xx)+y"], "[R]", [])
    assert redactor.redact_text("a" * 100_000) == "a" * 100_000
    assert redactor.redact_text("x" * 100_000 + "y") == "[R]"


@settings(max_examples=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_floats_are_written_exactly_as_python_repr(sinks: dict[str, Any], value: float) -> None:
    event = AuditEvent(event_id="e", timestamp=datetime(2024, 1, 1, tzinfo=UTC), duration_ms=value)
    line = sinks["native", False].encode_event(event)
    assert f'"duration_ms":{value!r}}}'.encode() in line


# ---- numbers in records: `duration_ms` is checked alike; metadata keeps the fallback ----------


class DuckEvent:
    """Any object with the attributes of an ``AuditEvent`` (the cores read attributes)."""

    def __init__(self, duration_ms: Any) -> None:
        template = AuditEvent(event_id="e", timestamp=datetime(2024, 1, 1, tzinfo=UTC))
        for name in ("event_id", "event_type", "timestamp", "status", "metadata"):
            setattr(self, name, getattr(template, name))
        for name in _pure.audit.TEXT_FIELDS:
            setattr(self, name, getattr(template, name))
        self.duration_ms = duration_ms


durations = st.one_of(
    st.floats(),
    st.integers(min_value=-(2**1100), max_value=2**1100),
    st.booleans(),
    st.decimals(allow_nan=True),
    st.text(max_size=5),
    st.binary(max_size=3),
    st.sampled_from([None, [1.0], {"ms": 1}, "5", " 5 ", "nan", b"5", Color.BLUE, object]),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=durations)
def test_duration_ms_is_accepted_or_rejected_identically(sinks: dict[str, Any], value: Any) -> None:
    """Same verdict, same error type and message, same encoding, on every core entry point."""
    assert outcome(lambda: _native.check_duration(value)) == outcome(
        lambda: _pure.check_duration(value)
    )
    event = DuckEvent(value)
    native = outcome(lambda: sinks["native", False].encode_event(event))
    assert native == outcome(lambda: sinks["pure", False].encode_event(event))
    if value is not None and native[0] == "ok":
        assert math.isfinite(json.loads(sinks["native", False].encode_event(event))["duration_ms"])


@pytest.mark.parametrize(
    ("value", "error", "reason"),
    [
        ("5", "InvalidArgumentTypeError", "must be a number"),
        (b"5", "InvalidArgumentTypeError", "must be a number"),
        ([5], "InvalidArgumentTypeError", "must be a number"),
        (math.nan, "InvalidArgumentError", "must be a finite number"),
        (math.inf, "InvalidArgumentError", "must be a finite number"),
        (-math.inf, "InvalidArgumentError", "must be a finite number"),
        (10**400, "InvalidArgumentError", "must be a finite number"),
    ],
)
def test_a_bad_duration_names_duration_ms_on_both_cores(
    value: Any, error: str, reason: str
) -> None:
    for module in (_native, _pure):
        kind, message = outcome(lambda m=module: m.check_duration(value))
        assert (kind, message) == (error, f'"duration_ms={value!r}": {reason}')
    assert _native.check_duration(Decimal("2.5")) == _pure.check_duration(Decimal("2.5")) == 2.5
    assert _native.check_duration(True) == _pure.check_duration(True) == 1.0


def test_non_finite_metadata_keeps_the_documented_string_fallback_on_both_cores(
    sinks: dict[str, Any],
) -> None:
    event = AuditEvent(
        event_id="e",
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        duration_ms=2,
        metadata={"inf": math.inf, "ninf": -math.inf, "nan": [math.nan], "ok": 1.5},
    )
    for text_format in (False, True):
        native = sinks["native", text_format].encode_event(event)
        assert native == sinks["pure", text_format].encode_event(event)
    record = json.loads(sinks["native", False].encode_event(event))
    assert record["duration_ms"] == 2.0
    assert record["metadata"] == {"inf": "Infinity", "ninf": "-Infinity", "nan": ["NaN"], "ok": 1.5}


def test_audit_io_errors_have_the_same_message_on_both_cores(tmp_path: Path) -> None:
    """Path, operation and OS error text, formatted alike (no "(os error 28)" vs "[Errno 28]")."""
    messages = []
    for name, module in (("native", _native), ("pure", _pure)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "a.jsonl").symlink_to("/dev/full")
        sink = module.FileSink(folder, "a", ".jsonl", durability="none")
        event = AuditEvent(event_id="e", timestamp=datetime(2024, 1, 1, tzinfo=UTC))
        kind, message = outcome(lambda s=sink, e=event: s.log_event(e))
        assert kind == "AuditIOError"
        assert sink.failed_events == 1
        assert sink.last_error == message
        messages.append(message.replace(str(folder), "<dir>"))
    assert messages[0] == messages[1]
    assert messages[0] == (
        '"<dir>/a.jsonl": cannot append to the audit file: [Errno 28] No space left on device'
    )
