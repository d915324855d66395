"""DataRedactor: one automaton for every pattern, every string of an event, both cores alike."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from truthound.stores.observability.audit import AuditEvent, DataRedactor
from truthound.stores.observability.errors import InvalidArgumentError

EMAIL = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}\b"
SSN = r"\b\d{3}-\d{2}-\d{4}\b"


@pytest.fixture
def redactor() -> DataRedactor:
    """The specification's example."""
    return DataRedactor(
        patterns=[EMAIL, SSN],
        replacement="[REDACTED]",
        fields_to_redact=["email", "ssn", "password"],
    )


def test_the_specification_example(redactor: DataRedactor) -> None:
    assert redactor.redact({"email": "test@example.com"}) == {"email": "[REDACTED]"}
    event = AuditEvent(metadata={"contact": "mail bob@corp.io or call", "ssn": 123456789})
    redacted = redactor.redact_event(event)
    assert redacted.metadata == {"contact": "mail [REDACTED] or call", "ssn": "[REDACTED]"}
    assert event.metadata == {"contact": "mail bob@corp.io or call", "ssn": 123456789}


def test_every_string_of_the_event_is_covered(redactor: DataRedactor) -> None:
    secret = "alice@example.com"
    event = AuditEvent(
        event_id=f"id-{secret}",
        store_type=secret, store_id=secret, operation=secret, resource_type=secret,
        item_id=secret, user_id=secret, session_id=secret, tenant_id=secret,
        correlation_id=secret, trace_id=secret, span_id=secret, ip_address=secret,
        user_agent=f"agent {secret}", input_summary=secret, output_summary=secret,
        error_type=secret, error_message=f"failed for {secret}",
        metadata={
            secret: "key holds the secret",
            "deep": {"list": [secret, {"x": (secret, 1)}], "set": {secret}},
            "ssn-like": "000-12-3456",
        },
    )  # fmt: skip
    redacted = redactor.redact_event(event)
    assert secret not in repr(redacted.to_dict())
    assert "000-12-3456" not in repr(redacted.to_dict())
    assert redacted.metadata["[REDACTED]"] == "key holds the secret"
    # Redacted in the JSON-safe form the records hold (tuples and sets become lists).
    assert redacted.metadata["deep"]["list"][1] == {"x": ["[REDACTED]", 1]}
    assert redacted.error_message == "failed for [REDACTED]"
    assert secret in event.user_agent  # the original is untouched


class Opaque:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return f"Opaque({self.text})"


def test_secrets_in_bytes_keys_and_objects_are_redacted_too(redactor: DataRedactor) -> None:
    """Values JSON cannot hold are redacted in the text form every record keeps for them."""
    secret = "alice@example.com"
    event = AuditEvent(
        metadata={
            "blob": secret.encode(),
            "buffer": bytearray(secret.encode()),
            (secret, 1): "a tuple key",
            7: f"int key {secret}",
            "object": Opaque(secret),
            "error": ValueError(f"no access for {secret}"),
        }
    )
    redacted = redactor.redact_event(event)
    assert secret not in repr(redacted.metadata)
    assert redacted.metadata["7"] == "int key [REDACTED]"
    assert redacted.metadata["object"] == "Opaque([REDACTED])"
    assert redacted.metadata["error"] == "no access for [REDACTED]"


def test_a_redacted_copy_shares_nothing_with_the_callers_objects(redactor: DataRedactor) -> None:
    mutable = bytearray(b"before")
    opaque = Opaque("before")
    redacted = redactor.redact_event(AuditEvent(metadata={"buffer": mutable, "object": opaque}))
    mutable[:] = b"after!"
    opaque.text = "after"
    assert redacted.metadata == {"buffer": "bytearray(b'before')", "object": "Opaque(before)"}


def test_sensitive_keys_replace_any_value_case_insensitively(redactor: DataRedactor) -> None:
    data = {
        "Password": {"nested": "dict"},
        "DB_PASSWORD_2": 1234,
        "items": [{"SSN": None}],
        "when": datetime(2024, 1, 1),
        "count": 3,
    }
    assert redactor.redact(data) == {
        "Password": "[REDACTED]",
        "DB_PASSWORD_2": "[REDACTED]",
        "items": [{"SSN": "[REDACTED]"}],
        "when": datetime(2024, 1, 1),
        "count": 3,
    }


def test_field_names_match_substrings_unless_exact_matching_is_asked_for() -> None:
    substring = DataRedactor(fields_to_redact=["token"], patterns=[])
    exact = DataRedactor(fields_to_redact=["token"], patterns=[], exact_field_match=True)
    data = {"token": "a", "refresh_token": "b", "TOKEN": "c"}
    assert substring.redact(data) == dict.fromkeys(data, "[REDACTED]")
    assert exact.redact(data) == {
        "token": "[REDACTED]",
        "refresh_token": "b",
        "TOKEN": "[REDACTED]",
    }


def test_sensitive_event_fields_are_replaced_whole() -> None:
    redactor = DataRedactor(fields_to_redact=["user_id"], patterns=[])
    event = AuditEvent(user_id="alice", item_id="run-1")
    redacted = redactor.redact_event(event)
    assert (redacted.user_id, redacted.item_id) == ("[REDACTED]", "run-1")


def test_existing_signature_defaults_and_attributes() -> None:
    redactor = DataRedactor(["password"])
    assert redactor.redacted_value == "[REDACTED]"
    assert redactor.sensitive_fields == {"password"}
    text = "ssn 123-45-6789, card 1234567812345678, mail a.b@c.org, token: abc123 done"
    assert (
        redactor.redact(text) == "ssn [REDACTED], card [REDACTED], mail [REDACTED], [REDACTED] done"
    )
    compiled = DataRedactor(patterns=[re.compile("secret", re.IGNORECASE)])
    assert compiled.redact("A SECRET here") == "A [REDACTED] here"


def test_all_patterns_apply_in_one_pass_leftmost_first() -> None:
    redactor = DataRedactor(patterns=["abc", "b", "cd"], replacement="<$1>")
    # One left-to-right pass: "abc" wins at 0, then "d" is not matched by anything.
    assert redactor.redact("abcd b") == "<$1>d <$1>"


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"password(?=:)", "look-around"),
        (r"(?<!x)secret", "look-around"),
        (r"(\w+) \1", "backreference"),
        (r"a*", "empty string"),
        (r"(unclosed", ""),
        (r"secret\Z", ""),
    ],
)
def test_patterns_needing_backtracking_are_rejected_by_name(pattern: str, reason: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        DataRedactor(patterns=["ok", pattern])
    message = str(caught.value)
    assert pattern.replace("\\", "\\\\") in message or pattern in message
    assert reason in message


def test_a_pattern_cannot_be_a_bytes_or_other_object() -> None:
    with pytest.raises(InvalidArgumentError):
        DataRedactor(patterns=[re.compile(b"x")])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError):
        DataRedactor(patterns=[42])  # type: ignore[list-item]


def test_lone_surrogates_become_replacement_characters() -> None:
    redactor = DataRedactor(patterns=["x"])
    assert redactor.redact_text("a\ud800x") == "a\ufffd\ufffd\ufffd[REDACTED]"


@pytest.mark.parametrize("argument", ["fields_to_redact", "sensitive_fields", "patterns"])
@pytest.mark.parametrize("value", ["password", b"password"])
def test_a_single_string_is_not_taken_as_a_list_of_letters(argument: str, value: Any) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"^{argument}=.*not a single string") as caught:
        DataRedactor(**{argument: value})
    assert isinstance(caught.value, TypeError)
    # The list form works (a field name of one letter would have redacted nearly every key).
    redactor = DataRedactor(**{argument: ["password"]})
    assert redactor.redact({"amount": 3, "password": "x"})["amount"] == 3


def test_keys_made_equal_by_redaction_keep_every_value(redactor: DataRedactor) -> None:
    """Per-user maps keyed by e-mail address: after redaction each value is still there."""
    data = {"alice@example.com": "read", "bob@example.com": "write", "[REDACTED]": "literal"}
    assert redactor.redact(data) == {
        "[REDACTED]": "read",
        "[REDACTED]#2": "write",
        "[REDACTED]#3": "literal",
    }
    event = redactor.redact_event(AuditEvent(metadata={"users": data}))
    assert sorted(event.metadata["users"].values()) == ["literal", "read", "write"]
