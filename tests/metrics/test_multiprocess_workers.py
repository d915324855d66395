"""Exactness under worker recycling: 8 workers recycled over generations, a million
increments, aggregates exact and never decreasing between scrapes."""

from __future__ import annotations

import itertools
import multiprocessing
import sys
import threading
from pathlib import Path

import pytest

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import mp_workers  # noqa: E402

WORKERS = 8


def recycle(core: str, directory: str, generations: int, increments: int, method: str) -> None:
    scraper = mp_workers.backend(directory)
    history: dict[str, list[float]] = {kind: [] for kind in mp_workers.KINDS}
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            for kind in mp_workers.KINDS:
                history[kind].append(float(scraper.get("jobs_total", {"kind": kind}) or 0.0))

    thread = threading.Thread(target=scrape)
    thread.start()
    context = multiprocessing.get_context(method)
    try:
        for _ in range(generations):
            workers = [
                context.Process(target=mp_workers.work, args=(core, directory, increments))
                for _ in range(WORKERS)
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=300)
                assert worker.exitcode == 0
    finally:
        stop.set()
        thread.join(timeout=120)
    total = generations * WORKERS * increments
    for kind in mp_workers.KINDS:
        values = history[kind]
        assert all(a <= b for a, b in itertools.pairwise(values)), kind
        assert scraper.get("jobs_total", {"kind": kind}) == total / 4
    latency = scraper.get("latency_seconds")
    assert latency is not None
    assert latency.count == total // 8  # type: ignore[union-attr]
    assert scraper.multiprocess_compacted_files >= generations * WORKERS - WORKERS


@pytest.mark.timeout(240)
def test_a_million_increments_over_recycled_workers_sum_exactly(core: str, tmp_path: Path) -> None:
    recycle(core, str(tmp_path), generations=3, increments=42_000, method="fork")


@pytest.mark.timeout(240)
def test_spawned_workers_join_the_directory(core: str, tmp_path: Path) -> None:
    recycle(core, str(tmp_path), generations=1, increments=2_000, method="spawn")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_hundred_generations_of_recycled_workers(core: str, tmp_path: Path) -> None:
    recycle(core, str(tmp_path), generations=100, increments=1_600, method="fork")
