"""Worker processes of the multiprocess tests (a plain module: spawned children import it)."""

from __future__ import annotations

from truthound.stores.observability import _core
from truthound.stores.observability.config import MetricsConfig
from truthound.stores.observability.metrics import InMemoryMetricsBackend

KINDS = ("read", "write", "delete", "list")


def backend(directory: str) -> InMemoryMetricsBackend:
    return InMemoryMetricsBackend(MetricsConfig(prefix="app", multiprocess_dir=directory))


def work(core: str, directory: str, increments: int) -> None:
    """One worker's life: `increments` increments over four labelled series and as many
    histogram observations, then exit (its file is then a dead worker's)."""
    with _core.use_core(core):  # type: ignore[arg-type]
        metrics = backend(directory)
        increment = metrics.increment
        observe = metrics.histogram
        for i in range(increments):
            kind = KINDS[i % 4]
            increment("jobs_total", labels={"kind": kind})
            if i % 8 == 0:
                observe("latency_seconds", 0.01 * (i % 7), labels={"kind": kind})
