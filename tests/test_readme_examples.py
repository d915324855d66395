"""The README's Python examples run as printed, on both cores.

Each example is taken from README.md by a line it contains and executed in a fresh working
directory. Only what points outside this machine is rewritten: collector addresses become
loopback receivers that decode with the official OpenTelemetry protobuf classes, fixed ports
become free ones, and `/var/log/...` becomes a temporary directory. The gunicorn examples are
exercised by the real gunicorn test in tests/metrics.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from otlp_logs import OtlpLogsHttpReceiver
from receivers import OtlpGrpcReceiver

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
KEY = "readme-example-integrity-key-0123456789"


def example(containing: str) -> str:
    (found,) = [code for code in EXAMPLES if containing in code]
    return found


def rewrite(code: str, replacements: dict[str, str]) -> str:
    for printed, local in replacements.items():
        assert printed in code, f"the README example no longer contains {printed!r}"
        code = code.replace(printed, local)
    return code


def run(code: str, folder: Path, monkeypatch: pytest.MonkeyPatch, **names: Any) -> dict[str, Any]:
    """Executes ``code`` in ``folder``; returns its globals (printed output under ``stdout``)."""
    monkeypatch.chdir(folder)
    scope: dict[str, Any] = {"__name__": "readme_example", **names}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), scope)
    scope["stdout"] = printed.getvalue()
    return scope


def closed_port() -> int:
    """A loopback port nobody listens on (a push there fails fast with a refused connection)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(receiver: Any) -> Iterator[Any]:
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def logs_collector() -> Iterator[OtlpLogsHttpReceiver]:
    yield from serve(OtlpLogsHttpReceiver())


@pytest.fixture
def trace_collector() -> Iterator[OtlpGrpcReceiver]:
    yield from serve(OtlpGrpcReceiver())


def test_the_audit_example_persists_a_redacted_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scope = run(example('audit.log_create("run-123"'), tmp_path, monkeypatch)
    (event,) = scope["events"]
    assert (event.item_id, event.user_id) == ("run-123", "admin")
    assert event.metadata == {"password": "[REDACTED]"}
    assert list((tmp_path / ".truthound" / "audit").glob("*.jsonl"))


def test_the_trusted_audit_example_records_verifies_and_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs_collector: OtlpLogsHttpReceiver
) -> None:
    monkeypatch.setenv("TRUTHOUND_AUDIT_KEY", KEY)
    trail = tmp_path / "trail"
    code = rewrite(
        example("fail_closed=True"),
        {
            "/var/log/truthound/audit": str(trail),
            "http://otel-collector:4318": logs_collector.endpoint,
        },
    )
    scope = run(code, tmp_path, monkeypatch)
    assert scope["report"].ok, scope["report"].findings
    scope["backend"].close()
    (record,) = logs_collector.wait_for(1)
    assert record["attributes"]["audit.operation"] == "delete"
    assert scope["verify"](trail).ok  # at rest: sealed by the close checkpoint


def test_the_metrics_example_serves_and_reports_a_failed_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = rewrite(
        example('PrometheusMetricsBackend(prefix="myapp"'),
        {"port=9464": "port=0", "http://gateway:9091": f"http://127.0.0.1:{closed_port()}"},
    )
    scope = run(code, tmp_path, monkeypatch)
    backend = scope["backend"]
    try:
        text = backend.export()
        assert 'myapp_requests_total{path="/items",service="api"} 2.0' in text
        assert backend.get("requests_total", labels={"path": "/items"}) == 2.0
        assert scope["port"] > 0
    finally:
        backend.stop_http_server()


def test_the_tracing_example_continues_the_incoming_trace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trace_collector: OtlpGrpcReceiver
) -> None:
    caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    code = rewrite(
        example("SpanContext.from_traceparent(headers"),
        # Port 4317 means gRPC; the free port the receiver got needs the scheme to say so.
        {"http://localhost:4317": trace_collector.endpoint.replace("http://", "grpc://")},
    )
    scope = run(code, tmp_path, monkeypatch, headers={"traceparent": caller})
    (span,) = trace_collector.wait_for(1)
    assert (span.name, span.kind, span.status) == ("store.read", "client", "ok")
    assert (span.trace_id, span.parent_span_id) == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    assert span.attributes["item.id"] == "run-123"
    assert scope["downstream"]["traceparent"] == f"00-{span.trace_id}-{span.span_id}-01"


def test_the_store_example_prints_metrics_and_alices_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.warns(RuntimeWarning, match="no OTLP endpoint"):
        scope = run(example('store.with_user("alice")'), tmp_path, monkeypatch)
    assert "store_operation_duration_seconds_bucket" in scope["stdout"]
    assert "user_id='alice'" in scope["stdout"]
    assert list((tmp_path / ".truthound" / "results").iterdir())


def test_the_core_example_names_the_active_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, core: str
) -> None:
    code = example("active_core()").replace("active_core()   #", "name = active_core()   #")
    assert run(code, tmp_path, monkeypatch)["name"] == core
