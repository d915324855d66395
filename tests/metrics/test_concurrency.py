"""Concurrency: no lost updates, and scrapes that never show a torn histogram."""

from __future__ import annotations

import random
import threading

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from truthound.stores.observability.metrics import InMemoryMetricsBackend

THREADS = 8
INCREMENTS = 100_000


@pytest.mark.timeout(180)
def test_eight_threads_of_increments_on_shared_series_sum_exactly() -> None:
    backend = InMemoryMetricsBackend(prefix="")
    handle = backend.counter_series("handled_total", {"op": "read"})
    start = threading.Barrier(THREADS)

    def work(index: int) -> None:
        labels = {"op": "read" if index % 2 else "write"}
        start.wait()
        for _ in range(INCREMENTS // 2):
            backend.increment("ops_total", labels=labels)
            handle.inc()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert backend.get("ops_total", {"op": "read"}) == THREADS * INCREMENTS / 4
    assert backend.get("ops_total") == THREADS * INCREMENTS / 2
    assert handle.value == THREADS * INCREMENTS / 2


def _check_histograms(families: list[object]) -> int:
    """Checks the invariants independently of our code; returns the number of series seen."""
    seen = 0
    for family in families:
        by_series: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
        buckets: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for sample in family.samples:  # type: ignore[attr-defined]
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            if sample.name.endswith("_bucket"):
                buckets.setdefault(labels, []).append((float(sample.labels["le"]), sample.value))
            else:
                by_series.setdefault(labels, {})[sample.name.rsplit("_", 1)[-1]] = sample.value
        for labels, points in buckets.items():
            counts = [count for _, count in sorted(points)]
            assert counts == sorted(counts), f"non-monotonic buckets {counts}"
            assert counts[-1] == by_series[labels]["count"], "+Inf bucket != _count"
            seen += 1
    return seen


@pytest.mark.timeout(180)
def test_scrapes_during_concurrent_observes_never_show_a_torn_histogram() -> None:
    """Writers observe while the main thread scrapes both formats (the native encoder runs
    without the GIL, so it really overlaps the writers). prometheus_client's OpenMetrics
    parser also rejects a +Inf bucket that differs from _count."""
    backend = InMemoryMetricsBackend(prefix="", buckets=[0.001, 0.01, 0.1, 1.0])
    stop = threading.Event()
    observed = [0] * 4

    def observe(index: int) -> None:
        rng = random.Random(index)
        handle = backend.histogram_series("latency", {"worker": str(index % 2)})
        while not stop.is_set():
            for _ in range(200):
                backend.histogram("latency", rng.expovariate(20.0), {"worker": str(index % 2)})
                handle.observe(rng.random())
                observed[index] += 2

    writers = [threading.Thread(target=observe, args=(i,)) for i in range(4)]
    for writer in writers:
        writer.start()
    scrapes = 0
    try:
        while scrapes < 200:
            text = backend.export("prometheus")
            om = backend.export("openmetrics")
            if "latency_bucket" in text:
                assert _check_histograms(list(parse_text(text))) == 2
                assert _check_histograms(list(parse_om(om))) == 2
            scrapes += 1
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    final = backend.get("latency")
    assert final.count == sum(observed)  # type: ignore[union-attr]
