"""Crash, concurrency, accounting and exit behaviour with real processes, threads and files.

Every test has a timeout. Longer variants (more trials, more events) are marked ``slow``.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from truthound.stores.observability.audit import (
    AsyncAuditBackend,
    AuditEvent,
    AuditLogger,
    FileAuditBackend,
    JsonAuditBackend,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit_writer.py"


def spawn(core: str, *args: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TRUTHOUND_OBSERVABILITY_CORE": core}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def run(core: str, *args: object, timeout: float = 120) -> None:
    proc = spawn(core, *args)
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()


def read_segment(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()


def parse_json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def all_lines(directory: Path, pattern: str) -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted(directory.glob(pattern)):
        data = read_segment(path)
        assert data == b"" or data.endswith(b"\n"), f"{path.name} ends mid-line"
        lines.extend(data.split(b"\n")[:-1])
    return lines


# ---- crash safety ----------------------------------------------------------------------------


def crash_trials(core: str, root: Path, trials: int, seed: int) -> None:
    rng = random.Random(seed)
    torn_seen = 0
    directory = root
    repaired = 0
    for trial in range(trials):
        if trial % 5 == 0:  # a fresh directory now and then keeps each check small
            directory = root / f"group{trial // 5}"
            directory.mkdir()
            repaired = 0
        mode = ("sync-ack", "async", "slow-raw")[trial % 3]
        proc = spawn(core, mode, directory, f"t{trial}", 0)
        time.sleep(rng.uniform(0.05, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        data = b"".join(read_segment(p) for p in sorted(directory.glob("audit-*.jsonl")))
        *complete, final = data.split(b"\n")
        records = [parse_json(line) for line in complete]
        broken = [line for line, record in zip(complete, records, strict=True) if record is None]
        # Earlier torn tails were terminated by the next writer and stay as lone, broken lines;
        # no record was ever glued onto one.
        assert len(broken) == repaired, broken
        assert all(line.count(b'{"event_id"') <= 1 for line in complete)
        ids = [r["event_id"] for r in records if r is not None]
        assert len(ids) == len(set(ids)), "a record was written twice"
        if mode == "sync-ack":
            ack_path = directory / f"t{trial}.ack"
            acked = ack_path.read_bytes().split(b"\n")[:-1] if ack_path.exists() else []
            missing = {a.decode() for a in acked} - set(ids)
            assert not missing, f"acknowledged but lost: {sorted(missing)[:5]}"
        # The next writer (this reader opens as one) terminates a torn tail, and query skips and
        # reports it. (A tail cut exactly before its newline is a whole record, not damage.)
        tail_is_record = bool(final) and parse_json(final) is not None
        torn = bool(final) and not tail_is_record
        backend = JsonAuditBackend(directory=directory)
        assert backend.repaired_lines == (1 if final else 0)
        found = backend.query(limit=None)
        assert len(found) == len(ids) + tail_is_record
        assert backend.last_query_report.torn_lines == repaired + torn
        backend.close()
        if torn:
            torn_seen += 1
            repaired += 1
    print(f"{trials} SIGKILL trials, {torn_seen} torn tails repaired")
    assert torn_seen > 0, "no trial left a torn tail: the repair path was not exercised"


@pytest.mark.timeout(240)
def test_sigkill_at_random_moments_loses_no_acknowledged_record(core: str, tmp_path: Path) -> None:
    crash_trials(core, tmp_path, trials=50, seed=4)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigkill_many_more_trials(core: str, tmp_path: Path) -> None:
    crash_trials(core, tmp_path, trials=400, seed=7)


def test_a_torn_tail_is_skipped_reported_and_repaired(tmp_path: Path) -> None:
    good = json.dumps({"event_id": "a", "event_type": "read", "status": "success",
                       "timestamp": "2024-01-01T00:00:00+00:00"})  # fmt: skip
    path = tmp_path / "audit.jsonl"
    path.write_text(good + "\n" + good[:30])
    backend = JsonAuditBackend(file_path=path)
    assert backend.repaired_lines == 1
    backend.log(AuditEvent(event_id="b"))
    lines = path.read_text().split("\n")
    assert lines[1] == good[:30]
    assert json.loads(lines[2])["event_id"] == "b"
    assert [e.event_id for e in backend.query()] == ["b", "a"]
    assert backend.last_query_report.torn_lines == 1
    assert backend.last_query_report.problems[0][1] == 2  # the line number


# ---- concurrency -----------------------------------------------------------------------------


@pytest.mark.timeout(240)
def test_eight_threads_across_many_rotations(tmp_path: Path) -> None:
    threads_n, per_thread = 8, 1500
    backends = [
        FileAuditBackend(file_path=tmp_path / "audit.log", max_file_size_mb=0.02, max_files=None,
                         compress=True)
        for _ in range(4)
    ]  # fmt: skip
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            backend = backends[t % len(backends)]
            for i in range(per_thread):
                backend.log(AuditEvent(event_id=f"t{t}-{i}", metadata={"pad": "z" * (i % 50)}))
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=200)
    for backend in backends:
        backend.close()
    assert not errors
    lines = all_lines(tmp_path, "audit*.log*")
    records = [parse_json(line.split(b"\t", 1)[1]) for line in lines]
    assert None not in records
    ids = sorted(r["event_id"] for r in records if r)
    assert ids == sorted(f"t{t}-{i}" for t in range(threads_n) for i in range(per_thread))
    segments = list(tmp_path.glob("audit*.log*"))
    assert len(segments) - 1 >= 50, f"only {len(segments) - 1} rotations"
    assert sum(b.rotations for b in backends) == len(segments) - 1


@pytest.mark.timeout(240)
def test_four_processes_across_many_rotations(core: str, tmp_path: Path) -> None:
    per_process = 2000
    procs = [spawn(core, "file", tmp_path, f"p{p}", per_process, 0.02) for p in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=200)
        assert proc.returncode == 0, err.decode()
    lines = all_lines(tmp_path, "audit*.log*")
    records = [parse_json(line.split(b"\t", 1)[1]) for line in lines]
    assert None not in records
    ids = sorted(r["event_id"] for r in records if r)
    assert ids == sorted(f"p{p}-{i}" for p in range(4) for i in range(per_process))
    assert len(list(tmp_path.glob("audit*.log*"))) - 1 >= 50


# ---- async accounting and exit ---------------------------------------------------------------


def async_accounting(tmp_path: Path, total: int) -> None:
    inner = JsonAuditBackend(directory=tmp_path, durability="none", rotate_daily=False,
                             max_file_size_mb=64)  # fmt: skip
    backend = AsyncAuditBackend(inner, queue_size=2048, overflow="drop_newest")
    logger = AuditLogger(backend, store_type="bench", store_id="s")
    for i in range(total):
        logger.log_create("item", metadata={"i": i})
    assert backend.close(timeout=120)
    stats = backend.stats()
    assert stats["enqueued"] + stats["dropped"] == total
    assert stats["persisted"] + stats["failed"] == stats["enqueued"]
    assert stats["failed"] == 0
    assert stats["pending"] == 0
    written = sum(read_segment(p).count(b"\n") for p in tmp_path.glob("audit*.jsonl*"))
    assert written == stats["persisted"] == inner.written_events
    print(f"{total} events: {stats}")


@pytest.mark.timeout(240)
def test_async_accounting_is_exact_over_a_million_events(tmp_path: Path) -> None:
    async_accounting(tmp_path, 1_000_000)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_async_accounting_over_five_million_events(tmp_path: Path) -> None:
    async_accounting(tmp_path, 5_000_000)


@pytest.mark.timeout(120)
def test_pending_events_are_persisted_at_interpreter_exit(core: str, tmp_path: Path) -> None:
    run(core, "async-exit", tmp_path, "x", 20_000)
    lines = all_lines(tmp_path, "audit-*.jsonl")
    assert len(lines) == 20_000
    run(core, "async-python-exit", tmp_path, "y", 20_000)
    assert len((tmp_path / "python.log").read_text().splitlines()) == 20_000


# ---- exit with a slow Python backend: drained, or given up and counted, never a crash --------

SLOW_EXIT_CHILD = """
import atexit, json, sys, time

backend = None

def report():  # registered before the package is imported: runs after its exit handler
    print(json.dumps({"stats": backend.stats(), "discarded": backend.discarded_events,
                      "closed_inner": backend.backend.closed}), flush=True)

atexit.register(report)
from truthound.stores.observability.audit import AsyncAuditBackend, AuditEvent

class Slow:
    '''A custom backend that takes a while per event and writes each id to a file.'''
    def __init__(self, path):
        self.file = open(path, "a", buffering=1)
        self.closed = False
    def log(self, event):
        time.sleep(float(sys.argv[2]))
        self.file.write(event.event_id + "\\n")
    def flush(self):
        self.file.flush()
    def close(self):
        self.closed = True
        self.file.close()

backend = AsyncAuditBackend(Slow(sys.argv[1]), exit_timeout_seconds=float(sys.argv[3]))
for i in range(100):
    backend.log(AuditEvent(event_id=f"e{i}"))
assert backend.close(timeout=0.2) is False  # still delivering: stays registered for exit
"""


def slow_exit(core: str, path: Path, per_event: float, exit_timeout: float) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", SLOW_EXIT_CHILD, str(path), str(per_event),
         str(exit_timeout)],
        capture_output=True, text=True, timeout=90, check=False,
        env={**os.environ, "TRUTHOUND_OBSERVABILITY_CORE": core},
    )  # fmt: skip
    assert "Fatal Python error" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    report["stderr"] = result.stderr
    return report


@pytest.mark.timeout(240)
@pytest.mark.parametrize("trial", range(4))
def test_a_close_that_timed_out_is_finished_at_interpreter_exit(
    core: str, tmp_path: Path, trial: int
) -> None:
    """``close(timeout=0.2)`` gives up waiting, not the events: exit drains them all and then
    closes the backend."""
    written = tmp_path / "written.txt"
    report = slow_exit(core, written, per_event=0.01, exit_timeout=60)
    assert report["stats"] == {
        "enqueued": 100, "dropped": 0, "persisted": 100, "failed": 0, "pending": 0,
    }  # fmt: skip
    assert report["closed_inner"] is True
    assert written.read_text().split() == [f"e{i}" for i in range(100)]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("trial", range(4))
def test_events_not_delivered_by_the_exit_timeout_are_counted_and_exit_is_clean(
    core: str, tmp_path: Path, trial: int
) -> None:
    """With a short ``exit_timeout_seconds`` the writer stops delivering before the interpreter
    finalises (natively, a writer thread entering a finalising interpreter crashed it): the
    events left are counted as discarded (and dropped), none is lost silently."""
    written = tmp_path / "written.txt"
    report = slow_exit(core, written, per_event=0.05, exit_timeout=0.2)
    stats = report["stats"]
    delivered = written.read_text().split() if written.exists() else []
    assert stats["persisted"] == len(delivered)
    assert delivered == [f"e{i}" for i in range(len(delivered))]  # in order, no duplicates
    assert report["discarded"] > 0
    assert stats["dropped"] == report["discarded"]
    assert stats["persisted"] + stats["failed"] + report["discarded"] == 100
    assert stats["pending"] == 0
    assert report["closed_inner"] is False  # never closed under a writer still using it
    assert "audit event(s) not written at interpreter exit" in report["stderr"]
