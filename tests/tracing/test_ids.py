"""Trace and span ids: well-formed, never all zeros, distinct across threads and forks."""

from __future__ import annotations

import os
import re
import threading

import pytest

from truthound.stores.observability import _core
from truthound.stores.observability.tracing import InMemoryTracer, SpanContext

TRACE_RE = re.compile(r"[0-9a-f]{32}")
SPAN_RE = re.compile(r"[0-9a-f]{16}")


def test_ids_are_lowercase_hex_of_the_right_width_and_valid() -> None:
    for _ in range(1000):
        trace_id, span_id = _core.core.generate_trace_id(), _core.core.generate_span_id()
        assert TRACE_RE.fullmatch(trace_id)
        assert SPAN_RE.fullmatch(span_id)
        assert _core.core.is_valid_trace_id(trace_id)
        assert _core.core.is_valid_span_id(span_id)


def test_ids_do_not_repeat_and_use_every_digit() -> None:
    trace_ids = {_core.core.generate_trace_id() for _ in range(20_000)}
    span_ids = {_core.core.generate_span_id() for _ in range(20_000)}
    assert len(trace_ids) == len(span_ids) == 20_000
    # Every hex digit appears in every position somewhere: no stuck bits.
    for position in range(16):
        assert {span_id[position] for span_id in span_ids} == set("0123456789abcdef")


def test_threads_draw_distinct_ids() -> None:
    results: list[list[str]] = []
    barrier = threading.Barrier(4)

    def draw() -> None:
        barrier.wait(timeout=10)
        results.append([_core.core.generate_span_id() for _ in range(2000)])

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 4
    assert len({span_id for batch in results for span_id in batch}) == 8000


def _ids_in_child(read_fd: int, write_fd: int) -> list[str]:
    pid = os.fork()
    if pid == 0:  # child: report the next ids, then leave without running pytest's atexit
        try:
            os.close(read_fd)
            ids = [_core.core.generate_trace_id(), _core.core.generate_span_id()]
            os.write(write_fd, ",".join(ids).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        child_ids = pipe.read().split(",")
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    assert os.WEXITSTATUS(status) == 0
    return child_ids


@pytest.mark.timeout(60)
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    _core.core.generate_span_id()  # the generator is seeded before the fork
    read_fd, write_fd = os.pipe()
    child_ids = _ids_in_child(read_fd, write_fd)
    parent_ids = [_core.core.generate_trace_id(), _core.core.generate_span_id()]
    assert len(child_ids) == 2
    assert child_ids[0] != parent_ids[0]
    assert child_ids[1] != parent_ids[1]


@pytest.mark.timeout(60)
def test_forked_children_start_different_traces() -> None:
    tracer = InMemoryTracer()
    with tracer.start_span("warm-up"):
        pass
    traces = []
    for _ in range(3):
        read_fd, write_fd = os.pipe()
        traces.append(_ids_in_child(read_fd, write_fd)[0])
    assert len(set(traces)) == 3


def test_generated_contexts_are_roots_with_fresh_ids() -> None:
    root = SpanContext.generate()
    child = SpanContext.from_parent(root)
    assert root.is_valid
    assert child.is_valid
    assert child.trace_id == root.trace_id
    assert child.parent_span_id == root.span_id
    assert child.span_id != root.span_id
