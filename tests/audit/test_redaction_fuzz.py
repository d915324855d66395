"""Redaction fuzz: secrets placed anywhere in an event never reach any backend's raw output."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from truthound.stores.observability.audit import (
    AsyncAuditBackend,
    AuditEvent,
    AuditLogger,
    CompositeAuditBackend,
    DataRedactor,
    FileAuditBackend,
    InMemoryAuditBackend,
    JsonAuditBackend,
)

from .strategies import text

secrets = st.from_regex(r"\ASECRET[A-Z0-9]{8}\Z")
sensitive_numbers = st.integers(min_value=10**12, max_value=10**13)


@st.composite
def secret_events(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """Fields for ``log_event`` with secrets in keys, nested values, lists, error messages and
    ids, plus a sensitive-key value that is not a string; and every secret text placed."""
    planted = [draw(secrets) for _ in range(6)]
    number = draw(sensitive_numbers)
    filler = draw(text)
    metadata = {
        planted[0]: filler,
        "nested": {"deeper": [filler, {"x": f"{filler}{planted[1]}{filler}"}]},
        "list": [planted[2], 1, None],
        "Password": number,
    }
    fields = {
        "metadata": metadata,
        "error_message": f"failed: {planted[3]}",
        "item_id": planted[4],
        "user_agent": f"agent/{planted[5]}",
        "user_id": filler,
    }
    return fields, [*planted, str(number)]


def raw_outputs(folder: Path, memory: list[InMemoryAuditBackend]) -> str:
    files = "".join(
        p.read_bytes().decode("utf-8", "replace") for p in folder.rglob("*") if p.is_file()
    )
    events = "".join(repr(e.to_dict()) for m in memory for e in m.get_all())
    return files + events


@settings(max_examples=40)
@given(sample=secret_events())
def test_no_secret_reaches_any_backend(sample: tuple[dict[str, Any], list[str]]) -> None:
    fields, planted = sample
    redactor = DataRedactor(patterns=[r"SECRET[A-Z0-9]{8}"], fields_to_redact=["password"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        memory = [InMemoryAuditBackend(), InMemoryAuditBackend()]
        targets = [
            CompositeAuditBackend([
                memory[0],
                FileAuditBackend(file_path=folder / "file" / "audit.log"),
                JsonAuditBackend(directory=folder / "json"),
            ]),
            AsyncAuditBackend(JsonAuditBackend(directory=folder / "async")),
            AsyncAuditBackend(memory[1]),
        ]  # fmt: skip
        for target in targets:
            logger = AuditLogger(target, store_type="s3", store_id="b", redactor=redactor)
            logger.log_event("create", "save", **fields)
            target.log(redactor.redact_event(AuditEvent(**fields)))
            target.close()
        output = raw_outputs(folder, memory)
        assert output.count("[REDACTED]") >= 6 * len(targets)
        for secret in planted:
            assert secret not in output
