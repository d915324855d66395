"""Fork safety of the tracers: a tracer created before a fork (gunicorn ``--preload``,
``multiprocessing``) works in the child at once, exports the child's spans once, over a
connection of the child's own, and never re-exports the spans the parent had queued."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any

import pytest
from forking import KeepAliveOtlpReceiver, held, run_forked

from truthound.stores.observability.config import TracingConfig
from truthound.stores.observability.tracing import InMemoryTracer, OpenTelemetryTracer, Tracer

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def otlp_tracer(endpoint: str) -> OpenTelemetryTracer:
    # A long schedule delay: spans stay queued until a flush.
    return OpenTelemetryTracer(
        service_name="fork-test",
        endpoint=endpoint,
        protocol="http/protobuf",
        timeout_seconds=10,
        schedule_delay_millis=60_000,
    )


def test_a_child_exports_its_own_spans_on_its_own_connection(core: str) -> None:
    receiver = KeepAliveOtlpReceiver()
    try:
        tracer = otlp_tracer(receiver.endpoint)
        with tracer.start_span("parent-exported"):
            pass
        assert tracer.flush()  # opens the exporter's pooled keep-alive connection
        with tracer.start_span("parent-queued"):
            pass

        def child() -> None:
            with tracer.start_span("child"):
                pass
            assert tracer.flush()
            assert (tracer.exported_spans, tracer.dropped_spans) == (1, 0)
            assert tracer.shutdown()
            assert tracer.dropped_spans == 0  # the parent's queued span is not the child's

        status, error = run_forked(child)
        assert status == 0, error
        assert tracer.flush()
        assert tracer.exported_spans == 2
        assert tracer.shutdown()
        assert receiver.names() == ["child", "parent-exported", "parent-queued"]
        assert receiver.ports_of("parent-queued") == receiver.ports_of("parent-exported")
        assert receiver.ports_of("child") != receiver.ports_of("parent-exported")
    finally:
        receiver.close()


_TRACER: list[OpenTelemetryTracer] = []


def _traced_worker(worker: int) -> None:
    """A multiprocessing child: ends a span and returns without flushing."""
    with _TRACER[0].start_span(f"worker-{worker}"):
        pass


def test_multiprocessing_children_export_their_spans_at_exit(core: str) -> None:
    receiver = KeepAliveOtlpReceiver()
    try:
        _TRACER[:] = [otlp_tracer(receiver.endpoint)]
        context = multiprocessing.get_context("fork")
        workers = [context.Process(target=_traced_worker, args=(w,)) for w in range(3)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
            assert worker.exitcode == 0
        assert receiver.names() == ["worker-0", "worker-1", "worker-2"]
        assert _TRACER[0].shutdown()
    finally:
        _TRACER.clear()
        receiver.close()


def _in_memory_exporting() -> OpenTelemetryTracer:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return OpenTelemetryTracer(span_exporter=InMemorySpanExporter(), schedule_delay_millis=60_000)


def _use_otel(tracer: Any) -> None:
    with tracer.start_span("child"):
        pass
    assert tracer.flush()
    assert tracer.exported_spans == 1
    assert [s.name for s in tracer.span_exporter.get_finished_spans()][-1] == "child"


def _use_memory(tracer: Any) -> None:
    with tracer.start_span("child"):
        pass
    tracer.clear()
    assert tracer.get_spans() == []


def _use_factory(_: Any) -> None:
    disabled = TracingConfig(enabled=False)
    assert Tracer.get_tracer(disabled) is Tracer.get_tracer(disabled)


# (the tracer, the lock another thread holds at the fork, what the child does)
LOCK_CASES: dict[str, tuple[Callable[[], Any], str, Callable[[Any], None]]] = {
    "opentelemetry-counters": (_in_memory_exporting, "_count_lock", _use_otel),
    "in-memory": (lambda: InMemoryTracer(max_spans=1), "_lock", _use_memory),
    "factory-cache": (lambda: Tracer, "_cache_lock", _use_factory),
}


@pytest.mark.parametrize("case", sorted(LOCK_CASES))
def test_fork_while_another_thread_holds_a_tracer_lock(core: str, case: str) -> None:
    build, lock_name, use = LOCK_CASES[case]
    tracer = build()
    try:
        for _ in range(3):
            with held(getattr(tracer, lock_name)):
                status, error = run_forked(lambda: use(tracer), timeout=20)
            assert status == 0, error
    finally:
        if isinstance(tracer, OpenTelemetryTracer):
            tracer.shutdown()
        if tracer is Tracer:
            Tracer.reset()
