"""Worker processes of the multiprocess tests (a plain module: spawned children import it)."""

from __future__ import annotations

import os
from multiprocessing.connection import Connection

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


def hammer(core: str, directory: str, most: int, conn: Connection) -> None:
    """Creates a counter and a histogram series, sends this process's file path, waits for
    "go", then increments and observes (positive values only) until told to stop or ``most``
    times, and sends how many times: while it runs, every 8-byte word of its file can only
    grow."""
    with _core.use_core(core):  # type: ignore[arg-type]
        metrics = backend(directory)
        increment = metrics.increment
        observe = metrics.histogram
        increment("hammer_total")
        observe("hammer_seconds", 0.5)
        conn.send(str(metrics.multiprocess_file))
        conn.recv()
        rounds = 0
        while not conn.poll() and rounds < most:
            for _ in range(1000):
                increment("hammer_total")
                observe("hammer_seconds", 0.5)
            rounds += 1000
        conn.send(rounds)


def fork_children(core: str, directory: str, children: int, conn: Connection) -> None:
    """Records 1 in a counter, sends "ready", waits for "go", then forks ``children`` children
    that exit at once (each moves the inherited series to a file of its own, its value zeroed),
    one at a time, and sends "done"."""
    with _core.use_core(core):  # type: ignore[arg-type]
        metrics = backend(directory)
        metrics.increment("jobs_total")
        conn.send("ready")
        conn.recv()
        for _ in range(children):
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        conn.send("done")
