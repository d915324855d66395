"""Bad input never poisons a backend, never aborts a query, never hangs."""

from __future__ import annotations

import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from truthound.stores.observability.audit import (
    AuditEvent,
    AuditLogger,
    FileAuditBackend,
    JsonAuditBackend,
)
from truthound.stores.observability.errors import AuditIOError


def strict_json(raw: str) -> Any:
    def reject(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(raw, parse_constant=reject)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_unserialisable_metadata_is_encoded_with_the_documented_fallback(tmp_path: Path) -> None:
    backend = JsonAuditBackend(directory=tmp_path)
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    logger = AuditLogger(backend)
    logger.log_create("a", metadata={
        "object": Unprintable(), "bytes": b"\x00raw", "nan": math.nan, "inf": math.inf,
        "when": datetime(2024, 1, 2, tzinfo=UTC), "set": {3}, "tuple": (1, "x"), 7: "int key",
        "cycle": cycle, "big": 10**30,
    })  # fmt: skip
    backend.log(AuditEvent(event_id="plain", metadata={"object": object()}))
    lines = Path(backend.active_path).read_text().splitlines()
    first = strict_json(lines[0])["metadata"]
    assert first["object"] == "<unserialisable Unprintable>"
    assert first["bytes"] == "b'\\x00raw'"
    assert (first["nan"], first["inf"]) == ("NaN", "Infinity")
    assert first["when"] == "2024-01-02T00:00:00+00:00"
    assert (first["set"], first["tuple"], first["7"], first["big"]) == (
        [3],
        [1, "x"],
        "int key",
        10**30,
    )
    assert "<max depth exceeded>" in json.dumps(first["cycle"])
    assert strict_json(lines[1])["metadata"]["object"].startswith("<object object at")
    assert next(e.event_id for e in backend.query()) == "plain"  # the backend keeps working


def test_unknown_and_damaged_lines_never_abort_a_query(tmp_path: Path) -> None:
    def record(event_id: str, **extra: Any) -> str:
        base = {"event_id": event_id, "event_type": "read", "status": "success",
                "timestamp": "2024-01-01T00:00:00+00:00"}  # fmt: skip
        return json.dumps({**base, **extra})

    (tmp_path / "audit.jsonl").write_text(
        "\n".join(
            [
                record("ok-1"),
                "this is not json",
                "[1, 2]",
                record("bad-type", event_type="teleport"),
                record("bad-time", timestamp="yesterday"),
                json.dumps({"_type": "checkpoint", "count": 3, "mac": "00"}),
                record("ok-2", seq=7, mac="abc", future_field={"x": 1}),
                "",
                '{"event_id": "cut',
            ]
        )
        + "\n"
    )
    (tmp_path / "audit.20240101T000000000000Z.jsonl.gz").write_bytes(b"not gzip at all")
    with gzip.open(tmp_path / "audit.20230101T000000000000Z.jsonl.gz", "wt") as handle:
        handle.write(record("old") + "\n")
    backend = JsonAuditBackend(file_path=tmp_path / "audit.jsonl")
    assert sorted(e.event_id for e in backend.query()) == ["ok-1", "ok-2", "old"]
    report = backend.last_query_report
    assert (report.torn_lines, report.invalid_lines, report.other_records) == (2, 3, 1)
    assert report.unreadable_segments == 1
    assert {line for _, line, _ in report.problems if line} == {2, 3, 4, 5, 9}


def test_a_missing_directory_parent_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(AuditIOError, match="not-a-dir") as caught:
        JsonAuditBackend(directory=blocker / "audit")
    assert isinstance(caught.value, OSError)
    with pytest.raises(OSError, match="not-a-dir"):
        FileAuditBackend(file_path=blocker / "audit.log")


def run_isolated(core: str, code: str, prefix: list[str] | None = None) -> dict[str, Any]:
    result = subprocess.run(
        [*(prefix or []), sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "TRUTHOUND_OBSERVABILITY_CORE": core},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


@pytest.mark.timeout(120)
def test_a_read_only_directory_is_a_clear_error(core: str, tmp_path: Path) -> None:
    """Root ignores permissions, so as root the child runs without CAP_DAC_OVERRIDE
    (util-linux ``setpriv``)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: permissions cannot be enforced")
        drop = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}"]
    outcome = run_isolated(
        core,
        f"""
        import json
        from truthound.stores.observability.audit import JsonAuditBackend
        try:
            JsonAuditBackend(directory={str(locked / "audit")!r})
        except OSError as error:
            print(json.dumps({{"type": type(error).__name__, "message": str(error)}}))
        """,
        prefix,
    )
    assert outcome["type"] == "AuditIOError"
    assert str(locked / "audit") in outcome["message"]
    assert "Permission denied" in outcome["message"]


@pytest.mark.timeout(120)
def test_a_full_disk_is_a_clear_error_and_a_counter_never_a_hang(core: str, tmp_path: Path) -> None:
    """A file size limit (RLIMIT_FSIZE) makes writes fail like a full disk, in a child process."""
    outcome = run_isolated(
        core,
        f"""
        import json, resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))
        from truthound.stores.observability.audit import (
            AsyncAuditBackend, AuditEvent, JsonAuditBackend)
        sync = JsonAuditBackend(directory={str(tmp_path / "sync")!r})
        error = None
        for i in range(2000):
            try:
                sync.log(AuditEvent(metadata={{"pad": "x" * 200}}))
            except OSError as caught:
                error = caught
                break
        inner = JsonAuditBackend(directory={str(tmp_path / "async")!r})
        backend = AsyncAuditBackend(inner, queue_size=100)
        for i in range(2000):
            backend.log(AuditEvent(metadata={{"pad": "x" * 200}}))
        closed = backend.close(timeout=60)
        print(json.dumps({{
            "error": type(error).__name__, "message": str(error),
            "sync_failed": sync.failed_events, "closed": closed, "stats": backend.stats(),
            "last_error": backend.last_error,
        }}))
        """,
    )
    assert outcome["error"] == "AuditIOError"
    assert "File too large" in outcome["message"]
    assert "sync" in outcome["message"]
    assert outcome["sync_failed"] == 1
    assert outcome["closed"] is True
    stats = outcome["stats"]
    assert stats["failed"] > 0
    assert stats["persisted"] + stats["failed"] == stats["enqueued"] == 2000
    assert "File too large" in outcome["last_error"]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("5", "must be a number"),
        (None.__class__, "must be a number"),
        (math.nan, "must be a finite number"),
        (math.inf, "must be a finite number"),
    ],
)
def test_an_event_rejects_a_duration_that_is_not_a_finite_number(value: Any, error: str) -> None:
    """Rejected where it is set, naming the field: never silently dropped from the record."""
    from truthound.stores.observability.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match=rf"duration_ms=.*{error}"):
        AuditEvent(duration_ms=value)
    event = AuditEvent(duration_ms=3)
    assert event.duration_ms == 3.0
    assert isinstance(event.duration_ms, float)
    with pytest.raises(InvalidArgumentError, match="duration_ms"):
        event.duration_ms = value
    assert event.duration_ms == 3.0
    event.duration_ms = None
    assert event.duration_ms is None
