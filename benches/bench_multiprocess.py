"""Multiprocess mode vs single-process mode vs prometheus_client's multiprocess mode.

Issue 8's targets (checked here, never in tests): a scrape with 5,000 dead workers' state
present stays under 100 ms after compaction; an increment in multiprocess mode stays within
2x of single-process mode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import prometheus_client as pc
from prometheus_client import multiprocess as pc_multiprocess
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from support import label
from truthound.stores.observability.config import MetricsConfig
from truthound.stores.observability.metrics import InMemoryMetricsBackend

DEAD = 5_000
SERIES_PER_WORKER = 8


def _backend(directory: str | None) -> InMemoryMetricsBackend:
    return InMemoryMetricsBackend(MetricsConfig(prefix="app", multiprocess_dir=directory))


def test_increment_single_process(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "increment with labels: single-process", core.CORE_NAME)
    increment = _backend(None).increment
    benchmark(lambda: increment("jobs_total", labels={"kind": "read"}))


def test_increment_multiprocess(benchmark: Any, core: ModuleType, tmp_path: Path) -> None:
    label(benchmark, "increment with labels: multiprocess", core.CORE_NAME)
    increment = _backend(str(tmp_path)).increment
    benchmark(lambda: increment("jobs_total", labels={"kind": "read"}))


def _pc_registry(directory: str) -> pc.CollectorRegistry:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    pc.values.ValueClass = pc.values.get_value_class()
    return pc.CollectorRegistry()


def _pc_reset() -> None:
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    pc.values.ValueClass = pc.values.get_value_class()


def test_increment_multiprocess_prometheus_client(benchmark: Any, tmp_path: Path) -> None:
    label(benchmark, "increment with labels: multiprocess", "prometheus_client")
    counter = pc.Counter("jobs", "jobs", ["kind"], registry=_pc_registry(str(tmp_path)))
    try:
        benchmark(lambda: counter.labels(kind="read").inc())
    finally:
        _pc_reset()


def test_increment_single_process_prometheus_client(benchmark: Any) -> None:
    label(benchmark, "increment with labels: single-process", "prometheus_client")
    counter = pc.Counter("jobs", "jobs", ["kind"], registry=pc.CollectorRegistry())
    benchmark(lambda: counter.labels(kind="read").inc())


def _dead_workers(directory: str) -> None:
    """5,000 dead workers' files: each process's backend, recorded into, then gone."""
    for _ in range(DEAD):
        metrics = _backend(directory)
        for i in range(SERIES_PER_WORKER):
            metrics.increment("jobs_total", labels={"kind": f"k{i}"})
        del metrics


def test_scrape_after_compaction(benchmark: Any, core: ModuleType, tmp_path: Path) -> None:
    label(benchmark, "scrape with 5,000 dead workers (after compaction)", core.CORE_NAME)
    _dead_workers(str(tmp_path))
    live = _backend(str(tmp_path))
    live.increment("jobs_total", labels={"kind": "k0"})
    live.export()  # the first scrape compacts
    assert not [n for n in os.listdir(tmp_path) if n.startswith("w-") and "corrupt" not in n][1:]
    text = benchmark(live.export)
    assert f'app_jobs_total{{kind="k0"}} {DEAD + 1}.0' in text


def test_first_scrape_compacting(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "first scrape with 5,000 dead workers (compacting them)", core.CORE_NAME)

    def setup() -> tuple[tuple[InMemoryMetricsBackend], dict[str, Any]]:
        directory = tempfile.mkdtemp()
        _dead_workers(directory)
        return (_backend(directory),), {}

    benchmark.pedantic(lambda live: live.export(), setup=setup, rounds=3, iterations=1)


def test_scrape_dead_workers_prometheus_client(benchmark: Any, tmp_path: Path) -> None:
    """prometheus_client has no compaction: every scrape reads every dead worker's file."""
    label(benchmark, "scrape with 5,000 dead workers (after compaction)", "prometheus_client")
    for pid in range(DEAD):
        values = MmapedDict(str(tmp_path / f"counter_{pid}.db"))
        for i in range(SERIES_PER_WORKER):
            key = mmap_key("app_jobs_total", "app_jobs_total", ["kind"], [f"k{i}"], "jobs")
            values.write_value(key, 1.0, 0.0)
        values.close()
    registry = pc.CollectorRegistry()
    pc_multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    text = benchmark.pedantic(pc.generate_latest, args=(registry,), rounds=3, iterations=1)
    assert b'app_jobs_total{kind="k0"} 5000.0' in text
