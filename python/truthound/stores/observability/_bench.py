"""``truthound-obs bench``: a quick comparison table on this machine (well under a minute).

Each workload runs on the native core, the pure-Python core, and the library a user would
otherwise pick (prometheus_client, the OpenTelemetry SDK) when it is installed. Times are medians
of several timed runs, per call; ratios compare with the native core in the same run. For the
full, statistically careful suite use ``make bench`` (pytest-benchmark).
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import timeit
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from . import _core

__all__ = ["run"]

LABELS = {"operation": "read", "store": "s3"}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

# A case prepares its objects inside an ExitStack (closed after measuring) and returns the
# statement to time and the names it uses.
Prepare = Callable[[ExitStack], tuple[str, dict[str, Any]]]


@dataclass
class Case:
    workload: str
    implementation: str  # "native", "pure", or the anchor library's name
    prepare: Prepare


def _metrics_backend() -> Any:
    from .metrics import InMemoryMetricsBackend

    return InMemoryMetricsBackend(prefix="")


def _ours_increment(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    return "increment('ops_total', labels=LABELS)", {
        "increment": _metrics_backend().increment,
        "LABELS": LABELS,
    }


def _client_increment(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    from prometheus_client import CollectorRegistry, Counter

    counter = Counter("ops", "", list(LABELS), registry=CollectorRegistry())
    return "counter.labels(**LABELS).inc()", {"counter": counter, "LABELS": LABELS}


def _ours_observe(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    return "histogram('latency_seconds', 0.042, labels=LABELS)", {
        "histogram": _metrics_backend().histogram,
        "LABELS": LABELS,
    }


def _client_observe(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    from prometheus_client import CollectorRegistry, Histogram

    histogram = Histogram("latency_seconds", "", list(LABELS), registry=CollectorRegistry())
    return "histogram.labels(**LABELS).observe(0.042)", {"histogram": histogram, "LABELS": LABELS}


def _ours_record_operation(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    from .metrics import StoreMetrics

    metrics = StoreMetrics(_metrics_backend(), "s3", "bucket")
    return "record('read', duration_ms=4.2, success=True)", {"record": metrics.record_operation}


def _ours_export(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    backend = _metrics_backend()
    for series in range(1000):
        backend.histogram("latency_seconds", 0.01 * (series % 7), labels={"id": str(series)})
    return "export()", {"export": backend.export}


def _client_export(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    histogram = Histogram("latency_seconds", "", ["id"], registry=registry)
    for series in range(1000):
        histogram.labels(id=str(series)).observe(0.01 * (series % 7))
    return "generate_latest(registry)", {"generate_latest": generate_latest, "registry": registry}


def _event() -> Any:
    from .audit import AuditEvent, AuditEventType

    return AuditEvent(
        event_type=AuditEventType.UPDATE,
        store_type="s3",
        store_id="bucket",
        item_id="run-123",
        user_id="alice",
        session_id="sess-1",
        ip_address="10.0.0.1",
        user_agent="cli/1.0",
        error_message="contact bob@example.com",
        operation="update",
        metadata={
            "region": "eu",
            "note": "ssn 123-45-6789",
            "owner": "carol@example.com",
            "password": "hunter2",
            "tags": ["a", "b"],
            "path": "/data/x",
        },
    )


def _ours_redact(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    from .audit import DataRedactor

    return "redact(event)", {"redact": DataRedactor().redact_event, "event": _event()}


def _ours_log_create(stack: ExitStack) -> tuple[str, dict[str, Any]]:
    from .audit import AsyncAuditBackend, AuditLogger, JsonAuditBackend

    directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="truthound-bench-"))
    backend = AsyncAuditBackend(
        JsonAuditBackend(directory=directory, durability="none"), queue_size=1_000_000
    )
    stack.callback(backend.close)
    logger = AuditLogger(backend, store_type="s3", store_id="bucket")
    return "log_create('run-123', user_id='alice')", {"log_create": logger.log_create}


def _ours_span(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    from .tracing import InMemoryTracer

    tracer = InMemoryTracer(max_spans=1000)
    statement = (
        "with start_span('store.read') as span:\n"
        "    span.set_attribute('store.type', 's3')\n"
        "    span.set_attribute('item.id', 'run-123')"
    )
    return statement, {"start_span": tracer.start_span}


def _otel_span(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench")
    statement = (
        "with start_span('store.read') as span:\n"
        "    span.set_attribute('store.type', 's3')\n"
        "    span.set_attribute('item.id', 'run-123')"
    )
    return statement, {"start_span": tracer.start_as_current_span}


def _ours_traceparent(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    from .tracing import SpanContext

    return "parse(HEADER)", {"parse": SpanContext.from_traceparent, "HEADER": TRACEPARENT}


def _otel_traceparent(_stack: ExitStack) -> tuple[str, dict[str, Any]]:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return "extract(CARRIER)", {
        "extract": TraceContextTextMapPropagator().extract,
        "CARRIER": {"traceparent": TRACEPARENT},
    }


# workload -> (our preparation, anchor name, anchor preparation)
WORKLOADS: list[tuple[str, Prepare, str | None, Prepare | None]] = [
    ("counter increment with labels", _ours_increment, "prometheus_client", _client_increment),
    ("histogram observe with labels", _ours_observe, "prometheus_client", _client_observe),
    ("StoreMetrics.record_operation", _ours_record_operation, None, None),
    ("export 1,000 histogram series", _ours_export, "prometheus_client", _client_export),
    ("redact a 15-string audit event", _ours_redact, None, None),
    ("AuditLogger.log_create, async to JSON", _ours_log_create, None, None),
    ("span with 2 attributes (in memory)", _ours_span, "opentelemetry-sdk", _otel_span),
    ("validated traceparent parse", _ours_traceparent, "opentelemetry-sdk", _otel_traceparent),
]


def _cases() -> list[Case]:
    cores = ["native", "pure"] if _core.native_available() else ["pure"]
    cases: list[Case] = []
    for workload, ours, anchor, prepare_anchor in WORKLOADS:
        cases.extend(Case(workload, core, ours) for core in cores)
        if anchor is not None and prepare_anchor is not None:
            cases.append(Case(workload, anchor, prepare_anchor))
    return cases


@contextmanager
def _serving(implementation: str) -> Iterator[None]:
    if implementation in ("native", "pure"):
        with _core.use_core(implementation):  # type: ignore[arg-type]
            yield
    else:
        yield


def _measure(case: Case, seconds: float) -> float | None:
    """Median seconds per call, or None when the anchor library is not installed."""
    with ExitStack() as stack, _serving(case.implementation):
        try:
            statement, names = case.prepare(stack)
        except ImportError:
            return None
        timer = timeit.Timer(statement, globals=names)
        number, elapsed = 1, timer.timeit(1)
        while elapsed < seconds / 20 and number < 10_000_000:  # calibrate: ~1/20 of the budget
            number *= 4
            elapsed = timer.timeit(number)
        per_run = max(1, int(number * (seconds / 5) / max(elapsed, 1e-9)))
        runs = timer.repeat(repeat=5, number=per_run)
    return statistics.median(runs) / per_run


def _format(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def run(seconds_per_case: float, out: TextIO, progress: TextIO) -> int:
    """Measures every case and prints the table; returns the exit status."""
    cases = _cases()
    results: dict[tuple[str, str], float | None] = {}
    for index, case in enumerate(cases, 1):
        filled = index * 30 // len(cases)
        progress.write(
            f"\r[{'#' * filled}{' ' * (30 - filled)}] {index}/{len(cases)} "
            f"{case.workload[:34]:<34} ({case.implementation})"
        )
        progress.flush()
        results[case.workload, case.implementation] = _measure(case, seconds_per_case)
    progress.write("\n")

    headers = ["workload", "native", "pure", "anchor", "pure / native", "anchor / native"]
    rows = []
    for workload, _ours, anchor, _prepare in WORKLOADS:
        native = results.get((workload, "native"))
        pure = results.get((workload, "pure"))
        other = results.get((workload, anchor)) if anchor else None
        rows.append(
            [
                workload,
                _format(native),
                _format(pure),
                f"{_format(other)} ({anchor})" if anchor else "—",
                f"{pure / native:.1f}x" if native and pure else "—",
                f"{other / native:.1f}x" if native and other else "—",
            ]
        )
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    for row in [headers, ["-" * w for w in widths], *rows]:
        out.write(
            "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            + "\n"
        )
    out.write(
        f"\nmedian time per call; {platform.processor() or platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}\n"
    )
    return 0
