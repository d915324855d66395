"""Multiprocess mode: every process's values in one directory, aggregated by any scrape."""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from truthound.stores.observability import _core
from truthound.stores.observability.config import MetricsConfig
from truthound.stores.observability.errors import MetricConflictError, MultiprocessError
from truthound.stores.observability.metrics import InMemoryMetricsBackend, multiprocess

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # spawned children inherit sys.path and import mp_workers

import mp_workers  # noqa: E402


@pytest.fixture(autouse=True)
def _single_process_by_default() -> Iterator[None]:
    yield
    multiprocess.disable()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus_client."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def run_in_child(target: Any, *args: Any, method: str = "fork") -> None:
    process = multiprocessing.get_context(method).Process(target=target, args=args)
    process.start()
    process.join(timeout=120)
    assert process.exitcode == 0


def _child_records(core: str, directory: str) -> None:
    with _core.use_core(core):  # type: ignore[arg-type]
        metrics = InMemoryMetricsBackend(MetricsConfig(prefix="app", multiprocess_dir=directory))
        metrics.increment("jobs_total", 5, {"kind": "read"})
        metrics.histogram("latency_seconds", 0.3)
        metrics.register("peak", "gauge", label_names=[], multiprocess_mode="max")
        metrics.gauge("peak", 9)
        metrics.gauge("busy", 1)
        metrics.summary("size_bytes", 700)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_scrape_aggregates_live_and_dead_processes(
    core: str, method: str, tmp_path: Path
) -> None:
    directory = multiprocess.enable(tmp_path / "metrics")
    metrics = InMemoryMetricsBackend(prefix="app")
    assert metrics.multiprocess_directory == directory
    metrics.increment("jobs_total", 2, {"kind": "read"})
    metrics.histogram("latency_seconds", 0.02)
    metrics.register("peak", "gauge", label_names=[], multiprocess_mode="max")
    metrics.gauge("peak", 4)
    metrics.gauge("busy", 1)
    metrics.summary("size_bytes", 100)
    run_in_child(_child_records, core, str(directory), method=method)
    values = samples(metrics.export())
    assert values[("app_jobs_total", (("kind", "read"),))] == 7.0
    assert values[("app_latency_seconds_count", ())] == 2.0
    assert values[("app_latency_seconds_sum", ())] == pytest.approx(0.32)
    assert values[("app_peak", ())] == 9.0  # max over live and dead processes
    assert values[("app_busy", ())] == 1.0  # livesum: the dead child's 1 is gone
    assert values[("app_size_bytes_count", ())] == 2.0
    assert values[("app_size_bytes", (("quantile", "0.99"),))] == 100.0  # rank 0.99 of 2
    assert values[("app_size_bytes", (("quantile", "0.5"),))] == 100.0
    # The scrape compacted the dead child (a forked child also had a copy of our backend).
    assert metrics.multiprocess_compacted_files >= 1
    assert metrics.get("jobs_total", {"kind": "read"}) == 7.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("sum", 1 + 5 + 3),
        ("max", 5),
        ("min", 1),
        ("latest", 3),
        ("livesum", 1 + 3),
        ("livemax", 3),
        ("livemin", 1),
        ("livelatest", 3),
        ("mostrecent", 3),  # prometheus_client's name
    ],
)
def test_gauge_modes(core: str, mode: str, expected: float, tmp_path: Path) -> None:
    directory = str(tmp_path)
    first = mp_workers.backend(directory)
    first.register("g", "gauge", label_names=[], multiprocess_mode=mode)
    first.gauge("g", 1)
    dying = mp_workers.backend(directory)
    dying.register("g", "gauge", label_names=[], multiprocess_mode=mode)
    dying.gauge("g", 5)
    del dying  # its file is now a dead writer's (once the backend is collected)
    gc.collect()
    last = mp_workers.backend(directory)
    last.register("g", "gauge", label_names=[], multiprocess_mode=mode)
    last.gauge("g", 3)
    assert first.get("g") == expected
    assert first.get("g") == expected  # after compaction as before


def test_gauge_modes_are_checked(core: str, tmp_path: Path) -> None:
    metrics = mp_workers.backend(str(tmp_path))
    metrics.register("g", "gauge", label_names=[], multiprocess_mode="max")
    with pytest.raises(MetricConflictError, match="multiprocess_mode"):
        metrics.register("g", "gauge", label_names=[], multiprocess_mode="min")
    with pytest.raises(ValueError, match="multiprocess_mode must be one of"):
        metrics.register("h", "gauge", label_names=[], multiprocess_mode="all")


@pytest.mark.only_core("native")
def test_native_and_pure_processes_share_a_directory(tmp_path: Path) -> None:
    """Both cores read and write one file format: their scrapes of a mixed directory agree."""
    directory = str(tmp_path)
    for name in ("native", "pure"):
        with _core.use_core(name):  # type: ignore[arg-type]
            metrics = mp_workers.backend(directory)
            metrics.increment("jobs_total", 0.1, {"kind": name})
            metrics.histogram("latency_seconds", 0.2)
            metrics.summary("size_bytes", 3.0)
            metrics.gauge("busy", 2)
            if name == "native":
                del metrics  # a dead native writer, compacted by the pure scrape
    texts = []
    for name in ("native", "pure"):
        with _core.use_core(name):  # type: ignore[arg-type]
            texts.append(mp_workers.backend(directory).export("openmetrics"))
    assert texts[0] == texts[1]
    assert 'app_jobs_total{kind="native"} 0.1' in texts[0]


def test_reset_removes_this_process_values_only(core: str, tmp_path: Path) -> None:
    directory = str(tmp_path)
    mine = mp_workers.backend(directory)
    other = mp_workers.backend(directory)
    mine.increment("jobs_total", 2)
    other.increment("jobs_total", 3)
    mine.reset()
    assert other.get("jobs_total") == 3.0
    mine.increment("jobs_total", 1)
    assert other.get("jobs_total") == 4.0


def test_unreadable_files_are_skipped_counted_and_set_aside(core: str, tmp_path: Path) -> None:
    metrics = mp_workers.backend(str(tmp_path))
    metrics.increment("jobs_total")
    (tmp_path / "w-1-00000000deadbeef.db").write_bytes(b"not a metrics file" * 10)
    (tmp_path / "w-2-00000000deadbeef.db").write_bytes(b"")
    assert metrics.get("jobs_total") == 1.0
    assert metrics.multiprocess_skipped_files == 2
    assert (tmp_path / "corrupt-w-1-00000000deadbeef.db").exists()
    assert metrics.get("jobs_total") == 1.0
    assert metrics.multiprocess_skipped_files == 2  # set aside: not read again


def test_leftovers_of_interrupted_operations_are_repaired(core: str, tmp_path: Path) -> None:
    metrics = mp_workers.backend(str(tmp_path))
    metrics.increment("jobs_total", 2)
    (tmp_path / ".archive-1-0000000000000001.tmp").write_bytes(b"half-written archive")
    (tmp_path / ".w-1-0000000000000002.tmp").write_bytes(b"")
    dead = mp_workers.backend(str(tmp_path))
    dead.increment("jobs_total", 3)
    dead_file = dead.multiprocess_file
    assert dead_file is not None
    del dead
    assert metrics.get("jobs_total") == 5.0
    assert metrics.multiprocess_repairs == 2
    # A compaction that died after publishing the archive but before deleting the file it
    # absorbed: the file is back, and must not be counted twice.
    archive = (tmp_path / "archive.db").read_bytes()
    dead_file.write_bytes(b"\0" * 64)  # (its content no longer matters: it is listed)
    assert metrics.get("jobs_total") == 5.0
    assert metrics.multiprocess_repairs == 3
    assert not dead_file.exists()
    assert (tmp_path / "archive.db").read_bytes() == archive


def _make_dead_writers(directory: str, count: int) -> None:
    for i in range(count):
        metrics = mp_workers.backend(directory)
        metrics.increment("jobs_total", 1, {"kind": mp_workers.KINDS[i % 4]})
        metrics.increment("bytes_total", 0.1)
        del metrics


@pytest.mark.timeout(200)
def test_compaction_killed_at_any_moment_loses_and_duplicates_nothing(
    core: str, tmp_path: Path
) -> None:
    """SIGKILL a compacting process at random moments: totals stay exact, counters monotonic."""
    directory = str(tmp_path)
    total = 0
    reader = mp_workers.backend(directory)
    last = 0.0
    code = textwrap.dedent(
        f"""
        from truthound.stores.observability import _core
        with _core.use_core({core!r}):
            _core.core.compact_directory({directory!r})
        """
    )
    for trial in range(12):
        _make_dead_writers(directory, 60)
        total += 60
        victim = subprocess.Popen([sys.executable, "-c", code])
        time.sleep(0.05 + 0.03 * (trial % 6))
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        value = reader.get("jobs_total")
        assert value == total
        fractional = reader.get("bytes_total")
        assert isinstance(fractional, float)
        assert fractional >= last
        last = fractional
    assert last == pytest.approx(total * 0.1)


@pytest.mark.timeout(120)
def test_concurrent_scrapes_during_compaction_never_see_a_counter_decrease(
    core: str, tmp_path: Path
) -> None:
    directory = str(tmp_path)
    stop = threading.Event()
    seen: list[list[float]] = [[], []]
    errors: list[BaseException] = []

    def scrape(out: list[float]) -> None:
        metrics = mp_workers.backend(directory)
        try:
            while not stop.is_set():
                out.append(float(metrics.get("jobs_total") or 0.0))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    scrapers = [threading.Thread(target=scrape, args=(out,)) for out in seen]
    for thread in scrapers:
        thread.start()
    try:
        for _ in range(4):
            run_in_child(mp_workers.work, core, directory, 400)
    finally:
        stop.set()
        for thread in scrapers:
            thread.join(timeout=60)
    assert not errors
    for values in seen:
        assert values
        assert all(a <= b for a, b in itertools.pairwise(values))
    assert mp_workers.backend(directory).get("jobs_total") == 1600


def test_config_opt_out_and_requirement(core: str, tmp_path: Path) -> None:
    multiprocess.enable(tmp_path)
    assert InMemoryMetricsBackend(MetricsConfig(multiprocess=False)).multiprocess_directory is None
    multiprocess.disable()
    with pytest.raises(ValueError, match="multiprocess=True"):
        InMemoryMetricsBackend(MetricsConfig(multiprocess=True))
    assert os.environ.get(multiprocess.ENV_VAR) is None


# ---- a full multiprocess directory ----------------------------------------------------------

FULL_DISK_CHILD = textwrap.dedent(
    """
    import os, re, sys
    from truthound.stores.observability.metrics import PrometheusMetricsBackend, multiprocess
    directory, filler = sys.argv[1], sys.argv[2]
    multiprocess.enable(directory)
    scraper = PrometheusMetricsBackend(prefix="app")
    scraper.increment("before_total")
    pid = os.fork()
    if pid == 0:
        worker = PrometheusMetricsBackend(prefix="app")
        worker.increment("before_total")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"x" * 4096)
        except OSError:
            pass  # the filesystem is full now
        for i in range(3000):
            worker.increment("many_total", labels={"i": str(i)})
        print("worker unshared", worker.multiprocess_unshared_series, flush=True)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    print("worker status", status, flush=True)
    text = scraper.export()  # compaction cannot write its archive: the scrape still serves
    print("before", re.search(r"^app_before_total (\\S+)", text, re.M).group(1), flush=True)
    """
)


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (root only: the tests run as root on CI)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
        capture_output=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_directory_is_counted_never_a_crash(core: str, tiny_filesystem: Path) -> None:
    """Shared files are allocated before they are mapped: on a full filesystem new series stay
    in process memory (counted as unshared) instead of the process dying of SIGBUS on a write to
    a page the filesystem cannot back; a compaction that cannot write its archive leaves every
    file in place and the scrape still serves."""
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(tiny_filesystem / "mp"),
         str(tiny_filesystem / "filler")],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "TRUTHOUND_OBSERVABILITY_CORE": core},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines())
    assert lines["worker status"] == "0", result.stderr  # not killed by SIGBUS (status 7)
    assert int(lines["worker unshared"]) > 0
    assert float(lines["before"]) == 2.0


@pytest.mark.only_core("pure")
def test_a_short_archive_write_keeps_the_dead_workers_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that stops short (a full disk) fails the compaction; nothing is renamed into
    place or deleted, so the totals stay exact."""
    from truthound.stores.observability._pure import _multiprocess

    scraper = InMemoryMetricsBackend(MetricsConfig(prefix="", multiprocess_dir=tmp_path))
    jobs = {"kind": "read"}
    run_in_child(_child_records, "pure", str(tmp_path))
    assert scraper.get("app_jobs_total", labels=jobs) == 5.0  # (compacted into the archive)
    run_in_child(_child_records, "pure", str(tmp_path))
    calls = {"write": 0}
    real_write = os.write

    def short_then_full(fd: int, data: Any) -> int:
        calls["write"] += 1
        if calls["write"] == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_multiprocess.os, "write", short_then_full)
    assert scraper.get("app_jobs_total", labels=jobs) == 10.0  # the scrape still counts both
    assert calls["write"] == 2
    monkeypatch.undo()
    assert scraper.get("app_jobs_total", labels=jobs) == 10.0  # compacted now, still exact
    assert not list(tmp_path.glob(".archive-*.tmp"))


def test_a_directory_that_cannot_be_made_is_a_multiprocess_error() -> None:
    with pytest.raises(MultiprocessError, match="/proc/nope"):
        multiprocess.enable("/proc/nope/metrics")
    assert not multiprocess.is_enabled()


def test_every_directory_the_library_made_is_removed_at_exit() -> None:
    child = textwrap.dedent(
        """
        from truthound.stores.observability.metrics import multiprocess
        print(multiprocess.enable())
        multiprocess.disable()
        print(multiprocess.enable())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=60, check=True
    )
    made = [Path(line) for line in result.stdout.split()]
    assert len(made) == 2
    assert made[0] != made[1]
    assert not any(path.exists() for path in made)
