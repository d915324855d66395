"""``truthound-obs``: the demo, audit query/tail, bench and core commands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from truthound.stores.observability.cli import main


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small demo run, shared by the tests that read its output (run on the native core)."""
    output = tmp_path_factory.mktemp("demo") / "out"
    status = main(
        [
            "demo",
            "--operations",
            "400",
            "--output",
            str(output),
            "--no-fsync",
            "--audit-segment-mb",
            "0.05",
        ]
    )
    assert status == 0
    return output


def test_demo_shows_all_three_pillars_and_loses_nothing(
    demo_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit_files = sorted(p.name for p in (demo_output / "audit").iterdir() if p.is_file())
    assert any(name.endswith(".jsonl") for name in audit_files)
    assert any(name.endswith(".jsonl.gz") for name in audit_files), "rotation + gzip"
    families = {f.name: f for f in parse_text((demo_output / "metrics.prom").read_text())}
    operations = families["store_operations"]
    failed = sum(s.value for s in operations.samples if s.labels.get("status") == "failure")
    assert failed > 0, "the workload includes failing operations"
    assert sum(s.value for s in operations.samples) == 402  # + initialize and close
    openmetrics = (demo_output / "metrics.openmetrics").read_text()
    histogram = {f.name: f for f in parse_om(openmetrics)}["store_operation_duration_seconds"]
    assert any(s.exemplar is not None for s in histogram.samples), "exemplars link to traces"
    spans = [json.loads(line) for line in (demo_output / "spans.jsonl").read_text().splitlines()]
    assert len(spans) == 402
    assert {s["name"] for s in spans} >= {"store.save", "store.get", "store.query"}


def test_demo_audit_trail_is_redacted(demo_output: Path) -> None:
    from truthound.stores.observability.audit import JsonAuditBackend

    raw = b"".join(
        p.read_bytes() for p in (demo_output / "audit").iterdir() if p.suffix == ".jsonl"
    )
    assert b"@example.com" not in raw
    assert not re.search(rb'"api_key": ?"sk-', raw)
    events = JsonAuditBackend(directory=demo_output / "audit").query(limit=None)
    assert len(events) == 402
    assert len({e.user_id for e in events if e.user_id}) == 5


def test_audit_query_filters_and_prints_json_lines(
    demo_output: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    status = main(
        [
            "audit",
            "query",
            str(demo_output / "audit"),
            "--type",
            "read",
            "--user",
            "alice",
            "--limit",
            "3",
            "--format",
            "jsonl",
        ]
    )
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    assert {(r["event_type"], r["user_id"]) for r in records} == {("read", "alice")}
    stamps = [r["timestamp"] for r in records]
    assert stamps == sorted(stamps, reverse=True), "newest first"


def test_audit_query_table_and_tail(demo_output: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["audit", "query", str(demo_output / "audit"), "--limit", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["TIMESTAMP", "EVENT_TYPE", "STATUS"]
    assert len(table) == 3
    assert main(["audit", "tail", str(demo_output / "audit"), "-n", "1"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert " close " in last, "the last event written is the store's close"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "query", "/nonexistent/audit"], "no such audit file or directory"),
        (["audit", "query", ".", "--since", "yesterday"], "--since 'yesterday' is not an ISO"),
        (["bench", "--seconds", "-1"], "'-1' is not a positive number of seconds"),
        (["audit", "query", ".", "--type", "explode"], "unknown event type 'explode'"),
        (["audit", "query", ".", "--limit", "0"], "--limit 0"),
        (["demo", "--operations", "0"], "0 is not a positive integer"),
    ],
)
def test_bad_arguments_get_a_clear_error(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_text("")
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_demo_refuses_to_overwrite_a_non_empty_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    assert main(["demo", "--output", str(tmp_path), "--operations", "5"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "precious"


@pytest.mark.only_core("native")
def test_bench_prints_the_comparison_table(capsys: pytest.CaptureFixture[str]) -> None:
    """The bench compares both cores itself, so it runs once."""
    assert main(["bench", "--seconds", "0.002"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:4] == ["workload", "native", "pure", "anchor"]
    assert "counter increment with labels" in table
    assert "(prometheus_client)" in table
    assert "(opentelemetry-sdk)" in table


def test_core_command_reports_the_active_core(core: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "truthound.stores.observability", "core"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"TRUTHOUND_OBSERVABILITY_CORE": core, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == core


def test_help_reads_well(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("demo", "audit", "bench", "core"):
        assert command in text


def test_demo_audit_trail_verifies_and_tampering_is_caught(
    demo_output: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = demo_output / "demo-audit.key"
    capsys.readouterr()
    assert main(["audit", "verify", str(demo_output / "audit"), "--key-file", str(key_file)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("OK: 1 log(s)")

    tampered = tmp_path / "audit"
    shutil.copytree(demo_output / "audit", tampered)
    active = next(p for p in tampered.iterdir() if p.name.endswith(".jsonl"))
    lines = active.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"status": "success"', b'"status": "failure"', 1)
    lines[3] = lines[3].replace(b'"status":"success"', b'"status":"failure"', 1)
    active.write_bytes(b"".join(lines))
    assert main(["audit", "verify", str(tampered), "--key-file", str(key_file)]) == 1
    report = capsys.readouterr().out
    assert "modified" in report
    assert active.name in report


def test_following_a_trail_across_rotations_prints_each_event_once(
    core: str, tmp_path: Path
) -> None:
    import io

    from truthound.stores.observability._audit_cli import _Follower
    from truthound.stores.observability.audit import AuditLogger, JsonAuditBackend
    from truthound.stores.observability.audit.reader import QueryFilter

    backend = JsonAuditBackend(
        directory=tmp_path, max_file_size_mb=0.002, compress=True, durability="none"
    )
    logger = AuditLogger(backend, store_type="s3", store_id="bucket")
    logger.log_create("before-start")
    out = io.StringIO()
    follower = _Follower(
        [str(tmp_path)], QueryFilter.build(None, None, None, None, None, None, None), "jsonl", out
    )
    for n in range(60):
        logger.log_create(f"item-{n:02d}")
        if n % 7 == 0:
            follower.poll()
    backend.close()
    follower.poll()
    follower.poll()
    printed = [json.loads(line)["item_id"] for line in out.getvalue().splitlines()]
    assert sorted(printed) == [f"item-{n:02d}" for n in range(60)]
    assert len(backend.segments()) > 3, "the trail rotated several times"
