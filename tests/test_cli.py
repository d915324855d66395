"""``truthound-obs``: the demo, audit query/tail, bench and core commands."""

from __future__ import annotations

import json
import re
import shutil
import socket
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


# Bad values of every numeric and path option: argparse (or the command, for what only running
# can find out) names the argument and the value on one line, exit status 2, no traceback.
# "a.jsonl" is a file in the test's working directory.
BAD_ARGUMENTS = [
    (["demo", "--metrics-port", "70000"], "--metrics-port", "70000"),
    (["demo", "--metrics-port=-1"], "--metrics-port", "-1"),
    (["demo", "--metrics-port", "http"], "--metrics-port", "http"),
    (["demo", "--audit-segment-mb", "0"], "--audit-segment-mb", "'0'"),
    (["demo", "--audit-segment-mb=-1"], "--audit-segment-mb", "-1"),
    (["demo", "--audit-segment-mb", "nan"], "--audit-segment-mb", "nan"),
    (["demo", "--audit-segment-mb", "inf"], "--audit-segment-mb", "inf"),
    (["demo", "--audit-segment-mb", "1e300"], "--audit-segment-mb", "1e300"),
    (["demo", "--hold=-3"], "--hold", "-3"),
    (["demo", "--hold", "nan"], "--hold", "nan"),
    (["demo", "--hold", "1e300"], "--hold", "1e300"),
    (["demo", "--operations", "many"], "--operations", "many"),
    (["demo", "--seed", "lucky"], "--seed", "lucky"),
    (["demo", "--output", "/proc/x"], "--output", "/proc/x"),
    (["demo", "--output", "a.jsonl"], "--output", "a.jsonl"),
    (["demo", "--output", "a.jsonl/sub"], "--output", "a.jsonl/sub"),
    (["demo", "--output", ""], "--output", "empty path"),
    (["demo", "--otlp-endpoint", "notaurl"], "--otlp-endpoint", "notaurl"),
    (["demo", "--otlp-endpoint", "localhost:99999"], "--otlp-endpoint", "localhost:99999"),
    (["demo", "--otlp-endpoint", "localhost:0"], "--otlp-endpoint", "localhost:0"),
    (["demo", "--otlp-endpoint", "localhost:port"], "--otlp-endpoint", "localhost:port"),
    (["demo", "--otlp-endpoint", "ftp://collector:4317"], "--otlp-endpoint", "scheme"),
    (["demo", "--otlp-endpoint", "http://"], "--otlp-endpoint", "no host"),
    (["audit", "tail", "a.jsonl", "-f", "--interval=-1"], "--interval", "-1"),
    (["audit", "tail", "a.jsonl", "-f", "--interval", "nan"], "--interval", "nan"),
    (["audit", "tail", "a.jsonl", "-f", "--interval", "0"], "--interval", "'0'"),
    (["audit", "tail", "a.jsonl", "-f", "--interval", "1e300"], "--interval", "1e300"),
    (["audit", "tail", "a.jsonl", "-n", "-1"], "-n", "-1"),
    (["audit", "tail", "a.jsonl", "-n", "ten"], "--lines", "ten"),
    (["audit", "query", "a.jsonl", "--limit", "ten"], "--limit", "ten"),
    (["audit", "query", "a.jsonl", "--until", "soon"], "--until", "soon"),
    (["bench", "--seconds", "inf"], "--seconds", "inf"),
    (["bench", "--seconds", "nan"], "--seconds", "nan"),
    (["bench", "--seconds", "0"], "--seconds", "'0'"),
    (["audit", "verify", "a.jsonl", "--key-file", "no.key"], "no.key", "No such file"),
]


def _exit_status_and_stderr(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int | str | None, str]:
    capsys.readouterr()
    try:
        status: int | str | None = main(argv)
    except SystemExit as exited:
        status = exited.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize(("argv", "argument", "value"), BAD_ARGUMENTS)
def test_bad_values_name_the_argument_without_a_traceback(
    argv: list[str],
    argument: str,
    value: str,
    *,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_text("")
    status, err = _exit_status_and_stderr(argv, capsys)
    assert status == 2, err
    assert argument in err
    assert value in err
    assert "Traceback" not in err
    assert err.count("error:") == 1, err
    assert not (tmp_path / "demo-output").exists(), "nothing is written on bad arguments"


@pytest.mark.parametrize(
    "endpoint",
    [
        "localhost:4317",
        "grpc://collector:4317",
        "grpcs://collector",
        "http://127.0.0.1:4318",
        "https://collector.example/v1/traces",
        "[::1]:4317",
    ],
)
def test_good_otlp_endpoints_are_accepted(endpoint: str) -> None:
    from truthound.stores.observability.cli import build_parser

    args = build_parser().parse_args(["demo", "--otlp-endpoint", endpoint])
    assert args.otlp_endpoint == endpoint


def test_demo_metrics_port_in_use_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        output = tmp_path / "out"
        argv = ["demo", "--metrics-port", str(port), "--output", str(output), "--operations", "5"]
        status, err = _exit_status_and_stderr(argv, capsys)
    assert status == 1
    assert err.startswith("truthound-obs: error: ")
    assert f":{port}" in err
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert not output.exists(), "the port is bound before anything is written"


def test_an_expected_os_error_is_one_line_and_a_bug_keeps_its_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from truthound.stores.observability import _audit_cli

    def unreadable(_paths: object) -> None:
        raise PermissionError(13, "Permission denied", "/srv/audit")

    monkeypatch.setattr(_audit_cli, "_segments", unreadable)
    status, err = _exit_status_and_stderr(["audit", "query", "/srv/audit"], capsys)
    assert status == 1
    assert err == "truthound-obs: error: /srv/audit: Permission denied\n"

    def bug(_paths: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(_audit_cli, "_segments", bug)
    with pytest.raises(KeyError):
        main(["audit", "query", "/srv/audit"])


def test_a_reader_that_goes_away_is_not_an_error(core: str, tmp_path: Path) -> None:
    """`truthound-obs audit query ... | head -1`: no BrokenPipeError traceback."""
    from truthound.stores.observability.audit import AuditLogger, JsonAuditBackend

    backend = JsonAuditBackend(directory=tmp_path, durability="none")
    logger = AuditLogger(backend, store_type="s3", store_id="bucket")
    for n in range(1500):  # far more table rows than a pipe buffer holds
        logger.log_create(f"item-{n:04d}")
    backend.close()
    query = ["audit", "query", str(tmp_path), "--limit", "1500"]
    with subprocess.Popen(
        [sys.executable, "-m", "truthound.stores.observability", *query],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"TRUTHOUND_OBSERVABILITY_CORE": core, "PATH": "/usr/bin:/bin"},
    ) as reader:
        assert reader.stdout is not None
        assert reader.stderr is not None
        assert reader.stdout.readline().startswith(b"TIMESTAMP")
        reader.stdout.close()
        err = reader.stderr.read().decode()
        assert reader.wait(timeout=60) in (0, 1)
    assert "Traceback" not in err
    assert "Broken pipe" not in err


def test_console_errors_have_no_traceback(core: str, tmp_path: Path) -> None:
    """The real console: argparse errors, a port in use and an uncreatable --output."""
    env = {"TRUTHOUND_OBSERVABILITY_CORE": core, "PATH": "/usr/bin:/bin"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for argv, status, named in (
            (["demo", "--hold", "nan"], 2, "--hold"),
            (["demo", "--metrics-port", port, "--output", str(tmp_path / "out")], 1, port),
            (["demo", "--output", "/proc/x"], 2, "/proc/x"),
        ):
            result = subprocess.run(
                [sys.executable, "-m", "truthound.stores.observability", *argv],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                env=env,
                cwd=tmp_path,
            )
            assert result.returncode == status, result.stderr
            assert named in result.stderr
            assert "Traceback" not in result.stderr


def test_demo_refuses_to_overwrite_a_non_empty_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    assert main(["demo", "--output", str(tmp_path), "--operations", "5"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "precious"
    # --overwrite deletes only a directory the demo wrote (it carries the demo's marker file).
    assert main(["demo", "--output", str(tmp_path), "--operations", "5", "--overwrite"]) == 2
    assert "was not written by the demo" in capsys.readouterr().err
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
