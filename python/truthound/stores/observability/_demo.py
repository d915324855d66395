"""``truthound-obs demo``: an instrumented store workload showing all three pillars.

A filesystem store wrapped in ``ObservableStore`` serves a mixed workload from several users —
saves, reads, queries, deletes, batches — some of which fail (missing items, invalid ids). Audit
events go to rotating, compressed JSON Lines files with redaction; metrics are served on a local
port while it runs and written to files at the end; spans go to an OTLP endpoint when one is
given, else to a local JSON Lines file. The summary at the end reads everything back from the
pillars themselves.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from truthound.stores.base import StoreError, StoreQuery
from truthound.stores.filesystem import FileSystemStore

from . import _cli_args as _args
from ._audit_cli import UsageError
from ._core import active_core
from .audit import AsyncAuditBackend, JsonAuditBackend, verify
from .audit.verify import DEFAULT_KEY_ENV
from .config import AuditConfig, AuditLogLevel, MetricsConfig, ObservabilityConfig
from .metrics import HistogramValue, MetricValue, PrometheusMetricsBackend
from .protocols import ObservabilityContext
from .store import ObservabilityManager, ObservableStore
from .tracing import OpenTelemetryTracer

__all__ = ["add_demo_command"]

USERS = ("alice", "bob", "carol", "dave", "erin")
ASSETS = ("orders", "customers", "payments", "inventory", "shipments")
# Finer than the default buckets: filesystem operations take tens of microseconds to milliseconds.
LATENCY_BUCKETS = [
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
]


@dataclass
class Outcome:
    operations: int = 0
    failures: int = 0


def _document(rng: random.Random, number: int, user: str) -> dict[str, Any]:
    """A validation-result-like document, with personal data that redaction must catch."""
    return {
        "id": f"run-{number:06d}",
        "data_asset": rng.choice(ASSETS),
        "run_time": (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=number)).isoformat(),
        "status": "failure" if rng.random() < 0.1 else "success",
        "tags": {"env": rng.choice(("prod", "staging")), "owner": user},
        "owner_email": f"{user}@example.com",
        "api_key": f"sk-{rng.getrandbits(64):016x}",
        "rows_checked": rng.randint(100, 100_000),
    }


class _Workload:
    """One step of the mixed workload at a time; failures are part of the mix."""

    def __init__(self, store: ObservableStore[dict[str, Any]], rng: random.Random) -> None:
        self.rng = rng
        self.views = {user: store.with_user(user, tenant_id="acme") for user in USERS}
        self.ids: list[str] = []
        self.next_number = 0
        self.steps: list[tuple[float, Callable[[ObservableStore[dict[str, Any]], str], Any]]] = [
            (0.34, self.save),
            (0.26, self.get),
            (0.05, self.get_missing),
            (0.02, self.get_invalid_id),
            (0.09, self.query),
            (0.06, self.exists),
            (0.05, self.count),
            (0.06, self.delete),
            (0.04, self.save_batch),
            (0.03, self.get_latest),
        ]

    def _new(self, user: str) -> dict[str, Any]:
        self.next_number += 1
        return _document(self.rng, self.next_number, user)

    def save(self, view: ObservableStore[dict[str, Any]], user: str) -> None:
        self.ids.append(view.save(self._new(user)))

    def save_batch(self, view: ObservableStore[dict[str, Any]], user: str) -> None:
        self.ids.extend(view.save_batch([self._new(user) for _ in range(5)]))

    def _known_id(self) -> str:
        return self.rng.choice(self.ids) if self.ids else "run-000000"

    def get(self, view: ObservableStore[dict[str, Any]], _user: str) -> None:
        view.get(self._known_id())

    def get_missing(self, view: ObservableStore[dict[str, Any]], _user: str) -> None:
        view.get(f"run-missing-{self.rng.randint(0, 999)}")

    def get_invalid_id(self, view: ObservableStore[dict[str, Any]], _user: str) -> None:
        view.get("../../etc/passwd")

    def exists(self, view: ObservableStore[dict[str, Any]], _user: str) -> None:
        view.exists(self._known_id())

    def query(self, view: ObservableStore[dict[str, Any]], _user: str) -> None:
        view.query(StoreQuery(data_asset=self.rng.choice(ASSETS), limit=20))

    def count(self, view: ObservableStore[dict[str, Any]], _user: str) -> None:
        view.count(StoreQuery(status="failure"))

    def get_latest(self, view: ObservableStore[dict[str, Any]], _user: str) -> None:
        view.get_latest(self.rng.choice(ASSETS))

    def delete(self, view: ObservableStore[dict[str, Any]], _user: str) -> None:
        if self.ids:
            view.delete(self.ids.pop(self.rng.randrange(len(self.ids))))

    def step(self, outcome: Outcome) -> None:
        user = self.rng.choice(USERS)
        roll, action = self.rng.random(), self.steps[-1][1]
        for weight, candidate in self.steps:
            if roll < weight:
                action = candidate
                break
            roll -= weight
        outcome.operations += 1
        try:
            action(self.views[user], user)
        except (StoreError, ValueError):
            outcome.failures += 1


def _quantile(histogram: HistogramValue, q: float) -> float:
    """``histogram_quantile`` as Prometheus computes it: linear within the bucket."""
    bounds = sorted(histogram.buckets)
    rank = q * histogram.count
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = float(histogram.buckets[bound])
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            span = count - previous_count
            fraction = (rank - previous_count) / span if span else 0.0
            return previous_bound + (bound - previous_bound) * fraction
        previous_bound, previous_count = bound, count
    return previous_bound


class _Progress:
    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.out = total, out
        self.interactive = out.isatty()
        self.started = time.perf_counter()
        self.last_percent = -1

    def update(self, done: int) -> None:
        percent = done * 100 // self.total
        if percent == self.last_percent or (not self.interactive and percent % 10):
            return
        self.last_percent = percent
        rate = done / max(time.perf_counter() - self.started, 1e-9)
        bar = "#" * (percent // 4)
        line = f"[{bar:<25}] {percent:3d}%  {done}/{self.total} operations  {rate:,.0f} ops/s"
        self.out.write(("\r" + line) if self.interactive else line + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.interactive:
            self.out.write("\n")


def _integrity_key(output: Path) -> tuple[bytes, str]:
    """The audit chain's key: ``TRUTHOUND_AUDIT_KEY`` when set, else a fresh demo key.

    A demo key is written beside the output so that ``audit verify --key-file`` can be tried;
    real keys belong in a secret store, never next to the logs they protect.
    """
    configured = os.environ.get(DEFAULT_KEY_ENV)
    if configured:
        return configured.encode(), f"key from {DEFAULT_KEY_ENV}"
    key = secrets.token_hex(32).encode()
    key_file = output / "demo-audit.key"
    key_file.write_bytes(key)
    key_file.chmod(0o600)
    return key, f"demo key in {key_file}"


def _tracer(
    args: argparse.Namespace, output: Path, stack: ExitStack
) -> tuple[OpenTelemetryTracer, str]:
    if args.otlp_endpoint:
        tracer = OpenTelemetryTracer(
            service_name="truthound-obs-demo", endpoint=args.otlp_endpoint, exporter_type="otlp"
        )
        return tracer, f"OTLP {args.otlp_endpoint}"
    try:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter
    except ImportError:
        raise UsageError(
            "the demo exports spans with OpenTelemetry: "
            "pip install 'truthound-store-observability[opentelemetry]'"
        ) from None

    spans_file = stack.enter_context((output / "spans.jsonl").open("w", encoding="utf-8"))
    exporter = ConsoleSpanExporter(
        out=spans_file, formatter=lambda span: span.to_json(indent=None) + "\n"
    )
    tracer = OpenTelemetryTracer(
        service_name="truthound-obs-demo", span_exporter=exporter, schedule_delay_millis=500
    )
    return tracer, str(output / "spans.jsonl")


#: The file that marks a directory as the demo's output (the only kind --overwrite deletes).
DEMO_MARKER = ".truthound-demo"


def _run(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        return _run_demo(args, stack)


def _run_demo(args: argparse.Namespace, stack: ExitStack) -> int:  # noqa: PLR0915 - a script
    out = sys.stdout
    if args.require_native and active_core() != "native":
        print("error: the native core is required but not active", file=sys.stderr)
        return 1
    output = Path(args.output)
    try:
        if output.exists() and any(output.iterdir()):
            if not args.overwrite:
                print(
                    f"error: {output} is not empty (pass --overwrite to replace its contents)",
                    file=sys.stderr,
                )
                return 2
            if not (output / DEMO_MARKER).is_file():
                # --overwrite deletes the whole directory: only ever one this command made.
                print(
                    f"error: {output} was not written by the demo (it has no {DEMO_MARKER}); "
                    "refusing to delete it: choose another --output",
                    file=sys.stderr,
                )
                return 2
    except OSError as error:
        raise UsageError(f"--output {output}: {error.strerror or error}") from None
    # Bind the scrape endpoint before writing anything, so a port in use fails cleanly.
    metrics_config = MetricsConfig(prefix="", histogram_buckets=LATENCY_BUCKETS)
    metrics = PrometheusMetricsBackend(metrics_config)
    port = metrics.start_http_server(port=args.metrics_port, addr="127.0.0.1")
    stack.callback(metrics.stop_http_server)
    try:
        if output.exists():
            shutil.rmtree(output)
        output.mkdir(parents=True)
        (output / DEMO_MARKER).write_text(
            "Written by `truthound-obs demo`; `--overwrite` may replace this directory.\n",
            encoding="utf-8",
        )
    except OSError as error:
        raise UsageError(
            f"--output {output}: cannot create the directory: {error.strerror or error}"
        ) from None

    audit_config = AuditConfig(
        backend="json",
        level=AuditLogLevel.VERBOSE,
        include_data_preview=True,
        max_data_preview_size=512,
        sensitive_fields=[*AuditConfig().sensitive_fields, "email"],
    )
    config = ObservabilityConfig(
        audit=audit_config,
        metrics=metrics_config,
        environment="demo",
    )
    key, key_note = _integrity_key(output)
    json_backend = JsonAuditBackend(
        audit_config,
        directory=output / "audit",
        rotate_daily=True,
        max_file_size_mb=args.audit_segment_mb,
        compress=True,
        integrity_key=key,
        checkpoint_interval_seconds=5,
    )
    audit = AsyncAuditBackend(json_backend, queue_size=65536, metrics=metrics)
    tracer, spans_destination = _tracer(args, output, stack)
    manager = ObservabilityManager(
        config,
        "FileSystemStore",
        "demo",
        audit_backend=audit,
        metrics_backend=metrics,
        tracer=tracer,
    )
    store = ObservableStore(
        FileSystemStore(output / "store", durable=not args.no_fsync),
        manager=manager,
        context=ObservabilityContext(correlation_id="demo-run"),
    )
    print(f"truthound-obs demo — {active_core()} core", file=out)
    print(
        f"  metrics    http://127.0.0.1:{port}/metrics  (scrape it while the demo runs)", file=out
    )
    print(
        f"  audit      {output / 'audit'}  (JSON Lines: redacted, rotated, gzipped, "
        f"HMAC-chained; {key_note})",
        file=out,
    )
    print(f"  spans      {spans_destination}", file=out)
    print(f"  store      {output / 'store'}", file=out)

    rng = random.Random(args.seed)
    outcome = Outcome()
    started = time.perf_counter()
    with store:
        workload = _Workload(store, rng)
        progress = _Progress(args.operations, sys.stderr)
        for done in range(1, args.operations + 1):
            workload.step(outcome)
            progress.update(done)
        progress.finish()
    elapsed = time.perf_counter() - started
    if args.hold:
        print(f"holding the metrics endpoint open for {args.hold:g} s ...", file=out)
        time.sleep(args.hold)

    audit.flush()
    tracer.shutdown(timeout_seconds=10)
    (output / "metrics.prom").write_text(metrics.export("prometheus"), encoding="utf-8")
    (output / "metrics.openmetrics").write_text(metrics.export("openmetrics"), encoding="utf-8")
    metrics.stop_http_server()

    operations = [
        v
        for v in metrics.get_metrics()
        if isinstance(v, MetricValue) and v.name == "store_operations_total"
    ]
    failures = sum(v.value for v in operations if v.labels.get("status") == "failure")
    total = sum(v.value for v in operations)
    latency = metrics.get("store_operation_duration_seconds")
    assert isinstance(latency, HistogramValue)
    segments = json_backend.segments()
    manager.shutdown()
    audit.close()
    integrity = verify(output / "audit", key)

    print("\nsummary", file=out)
    print(f"  core                 {active_core()}", file=out)
    print(
        f"  operations           {outcome.operations} by {len(USERS)} users in {elapsed:.1f} s "
        f"({outcome.operations / elapsed:,.0f} ops/s)",
        file=out,
    )
    print(
        f"  store operations     {total:.0f} recorded (incl. initialize/close), "
        f"{failures:.0f} failed: error rate {failures / total:.1%}",
        file=out,
    )
    print(
        "  latency (histogram)  "
        + "  ".join(
            f"p{int(q * 100)} {_quantile(latency, q) * 1000:.3f} ms" for q in (0.5, 0.9, 0.99)
        ),
        file=out,
    )
    print(
        f"  audit events         {audit.persisted_events} written to {len(segments)} file(s), "
        f"{audit.dropped_events} dropped, {audit.failed_events} failed",
        file=out,
    )
    print(
        f"  audit integrity      {'verified' if integrity.ok else 'FAILED'}: "
        f"{integrity.records} sealed records, {integrity.checkpoints} checkpoints, "
        f"{len(integrity.findings)} findings",
        file=out,
    )
    print(
        f"  spans                {tracer.exported_spans} exported, {tracer.dropped_spans} dropped",
        file=out,
    )
    print(
        f"  metrics files        {output / 'metrics.prom'}, {output / 'metrics.openmetrics'}",
        file=out,
    )
    print(f"\nnext: truthound-obs audit query {output / 'audit'} --type read --limit 5", file=out)
    if not os.environ.get(DEFAULT_KEY_ENV):
        print(
            f"      truthound-obs audit verify {output / 'audit'} "
            f"--key-file {output / 'demo-audit.key'}",
            file=out,
        )
    lost = audit.dropped_events + audit.failed_events + tracer.dropped_spans
    return 0 if lost == 0 and integrity.ok else 1


def add_demo_command(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="run an instrumented store workload that shows all three pillars",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    demo.add_argument("--operations", type=_args.positive_int, default=3000, help="(default 3000)")
    demo.add_argument(
        "--output",
        type=_args.directory,
        default="demo-output",
        help="directory (default demo-output)",
    )
    demo.add_argument("--overwrite", action="store_true", help="replace an existing output")
    demo.add_argument(
        "--metrics-port",
        type=_args.port,
        default=0,
        help="scrape endpoint port (default: a free one)",
    )
    demo.add_argument(
        "--otlp-endpoint",
        type=_args.otlp_endpoint,
        help="send spans to this OTLP endpoint (http[s]://host:port, grpc[s]://host:port or "
        "host:port)",
    )
    demo.add_argument("--seed", type=int, default=7, help="workload random seed (default 7)")
    demo.add_argument(
        "--audit-segment-mb",
        type=_args.megabytes,
        default=1.0,
        help="rotate audit files at this size (default 1 MB, to show rotation)",
    )
    demo.add_argument("--no-fsync", action="store_true", help="do not fsync store writes")
    demo.add_argument(
        "--hold",
        type=_args.seconds(allow_zero=True),
        default=0.0,
        help="keep the endpoint up this many seconds at the end",
    )
    demo.add_argument(
        "--require-native", action="store_true", help="fail unless the native core is active"
    )
    demo.set_defaults(handler=_run)
