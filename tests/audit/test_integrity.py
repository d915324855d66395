"""Tamper evidence: every edit an attacker without the key can make to a chained log is found.

One clean log of more than 10,000 records (4 writer threads, size rotation, gzip of closed
segments, periodic checkpoints) is generated once per core; each test copies it and applies one
kind of tampering, then ``verify`` must report exactly that kind, with the file and line.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from truthound.stores.observability import _core
from truthound.stores.observability.audit import (
    AsyncAuditBackend,
    AuditEvent,
    AuditLogger,
    FileAuditBackend,
    JsonAuditBackend,
    verify,
    verify_main,
)
from truthound.stores.observability.config import AuditConfig
from truthound.stores.observability.errors import InvalidArgumentError

pytestmark = pytest.mark.timeout(120)

KEY = b"correct horse battery staple 42"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit_writer.py"
RECORDS = 10_400

_GENERATED: dict[str, Path] = {}


@pytest.fixture(scope="module")
def generated_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chained")


def generate(directory: Path) -> None:
    """4 threads log RECORDS events through the async fast path into a rotating, compressing,
    chained JSON log with frequent periodic checkpoints, then close it."""
    backend = AsyncAuditBackend(
        JsonAuditBackend(
            directory=directory,
            rotate_daily=False,
            max_file_size_mb=0.4,
            compress=True,
            durability="none",
            integrity_key=KEY,
            checkpoint_interval_seconds=0.02,
        ),
        queue_size=100_000,
    )
    logger = AuditLogger(backend, store_type="s3", store_id="bucket")

    def work(t: int) -> None:
        for i in range(RECORDS // 4):
            logger.log_create(
                f"t{t}-{i}", user_id="admin", metadata={"i": i, "pad": "p" * (i % 64)}
            )
            if i % 200 == 0:
                # Pauses longer than the checkpoint interval: periodic checkpoints land between
                # records, inside segments.
                time.sleep(0.05)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert backend.close(timeout=60)
    assert backend.persisted_events == RECORDS


@pytest.fixture
def clean_log(core: str, generated_root: Path, tmp_path: Path) -> Path:
    """A private copy of this core's clean log (generated once per module and core)."""
    if core not in _GENERATED:
        source = generated_root / core
        generate(source)
        _GENERATED[core] = source
    copy = tmp_path / "log"
    shutil.copytree(_GENERATED[core], copy)
    return copy


def segments(directory: Path) -> list[Path]:
    return sorted(
        (p for p in directory.iterdir() if p.name.startswith("audit") and ".tmp" not in p.name),
        key=lambda p: (p.name.replace(".gz", "").replace(".jsonl", "~"), p.name),
    )


def read_lines(path: Path) -> list[bytes]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return data.split(b"\n")[:-1]


def write_lines(path: Path, lines: list[bytes]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)


def edit(path: Path, change: Callable[[list[bytes]], list[bytes]]) -> None:
    write_lines(path, change(read_lines(path)))


def is_checkpoint(line: bytes) -> bool:
    return line.startswith(b'{"_type":"checkpoint"')


def event_lines(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.startswith(b'{"event_id"')]


def only(report: Any, kind: str) -> Any:
    matching = [f for f in report.findings if f.kind == kind]
    assert matching, report.findings
    return matching[0]


# ---- clean logs ------------------------------------------------------------------------------


def test_a_clean_log_verifies_with_zero_findings(clean_log: Path) -> None:
    report = verify(clean_log, KEY)
    assert report.findings == []
    assert report.ok
    assert report.records == RECORDS
    assert report.segments >= 5
    assert any(p.name.endswith(".gz") for p in clean_log.iterdir()), "no segment was gzipped"
    assert report.checkpoints >= report.segments + 2  # each segment's first link, open, close
    assert report.writer_starts == 1
    assert report.unsealed_records == 0  # closed: the close checkpoint seals everything


def test_every_line_is_a_link_with_consecutive_sequence_numbers(clean_log: Path) -> None:
    seqs = []
    for path in segments(clean_log):
        lines = read_lines(path)
        assert is_checkpoint(lines[0]), f"{path.name} does not start with a checkpoint"
        seqs.extend(json.loads(line)["seq"] for line in lines)
    assert seqs == list(range(len(seqs)))


def test_the_reader_skips_checkpoints_and_returns_every_event(clean_log: Path) -> None:
    backend = JsonAuditBackend(directory=clean_log, rotate_daily=False)
    events = backend.query(limit=None)
    backend.close()
    assert len(events) == RECORDS
    assert backend.last_query_report.skipped_lines == 0
    assert backend.last_query_report.other_records > 0


# ---- one test per kind of tampering ----------------------------------------------------------


def test_a_changed_byte_in_record_k_names_the_file_and_record(clean_log: Path) -> None:
    target = next(p for p in segments(clean_log) if p.name.endswith(".gz"))
    lines = read_lines(target)
    k = event_lines(lines)[7]
    lines[k] = lines[k].replace(b'"user_id":"admin"', b'"user_id":"admiN"')
    write_lines(target, lines)
    report = verify(clean_log, KEY)
    assert [(f.kind, Path(f.segment).name, f.line) for f in report.findings] == [
        ("modified", target.name, k + 1)
    ]


def test_a_deleted_record_is_a_sequence_gap(clean_log: Path) -> None:
    target = [p for p in segments(clean_log) if len(event_lines(read_lines(p))) > 10][-1]
    lines = read_lines(target)
    k = event_lines(lines)[3]
    seq = json.loads(lines[k])["seq"]
    del lines[k]
    write_lines(target, lines)
    report = verify(clean_log, KEY)
    finding = only(report, "deleted")
    assert finding.seq == seq
    assert Path(finding.segment) == target
    assert report.kinds() == {"deleted"}


def test_reordered_records_are_found(clean_log: Path) -> None:
    target = segments(clean_log)[2]
    lines = read_lines(target)
    events = event_lines(lines)
    a = next(i for i in events[10:] if i + 1 in events)
    b = a + 1
    lines[a], lines[b] = lines[b], lines[a]
    write_lines(target, lines)
    report = verify(clean_log, KEY)
    assert report.kinds() == {"reordered"}
    assert only(report, "reordered").line == a + 1


def test_an_inserted_record_is_found(clean_log: Path) -> None:
    target = segments(clean_log)[1]
    lines = read_lines(target)
    k = event_lines(lines)[5]
    forged = dict(json.loads(lines[k]), event_id="forged", mac="0" * 64)
    unsealed = {key: v for key, v in forged.items() if key not in ("seq", "mac")}
    lines[k + 1 : k + 1] = [
        json.dumps(forged, separators=(",", ":")).encode(),  # a copied link, edited
        json.dumps(unsealed, separators=(",", ":")).encode(),  # a plain record
    ]
    write_lines(target, lines)
    report = verify(clean_log, KEY)
    assert report.kinds() == {"inserted"}
    assert [f.line for f in report.findings] == [k + 2, k + 3]


def test_a_truncated_tail_after_the_last_checkpoint_is_found(clean_log: Path) -> None:
    active = segments(clean_log)[-1]
    lines = read_lines(active)
    last_checkpoint = max(i for i, line in enumerate(lines[:-1]) if is_checkpoint(line))
    # Keep the newest checkpoint and cut the records after it (and the close checkpoint).
    cut = (
        lines[: last_checkpoint + 1]
        + [line for line in lines[last_checkpoint + 1 : -1] if not is_checkpoint(line)][:1]
    )
    write_lines(active, cut)
    report = verify(clean_log, KEY)
    assert report.kinds() == {"truncated"}
    assert only(report, "truncated").segment == str(active)


def test_a_deleted_segment_is_found(clean_log: Path) -> None:
    victim = segments(clean_log)[3]
    first_seq = json.loads(read_lines(victim)[0])["seq"]
    victim.unlink()
    report = verify(clean_log, KEY)
    assert report.kinds() == {"deleted_segment"}
    assert only(report, "deleted_segment").seq == first_seq


def test_deleting_the_oldest_segment_is_found(clean_log: Path) -> None:
    segments(clean_log)[0].unlink()
    report = verify(clean_log, KEY)
    assert report.kinds() == {"deleted_segment"}


def inner_checkpoint(directory: Path) -> tuple[Path, list[bytes], int]:
    """A checkpoint inside a segment (not its first line), away from the log's ends."""
    for path in segments(directory)[1:-1]:
        lines = read_lines(path)
        for i, line in enumerate(lines[1:-1], 1):
            if is_checkpoint(line):
                return path, lines, i
    raise AssertionError("no periodic checkpoint inside a segment")


def test_an_edited_checkpoint_is_found(clean_log: Path) -> None:
    target, lines, k = inner_checkpoint(clean_log)
    lines[k] = lines[k].replace(b'"segment_records":', b'"segment_records":1', 1)
    write_lines(target, lines)
    report = verify(clean_log, KEY)
    assert [(f.kind, f.line) for f in report.findings] == [("checkpoint_modified", k + 1)]


def test_a_deleted_checkpoint_is_found(clean_log: Path) -> None:
    target, lines, k = inner_checkpoint(clean_log)
    del lines[k]
    write_lines(target, lines)
    report = verify(clean_log, KEY)
    assert "checkpoint_deleted" in report.kinds()
    assert report.kinds() <= {"checkpoint_deleted", "deleted"}


def reseal(directory: Path, mac: Callable[[bytes, bytes], bytes], start_segment: int) -> None:
    """What an attacker without the key can do: edit a record and recompute every later link
    with a MAC of their own choosing (same format, same key id text)."""
    prev = bytes(32)
    edited = False
    for index, path in enumerate(segments(directory)):
        lines = read_lines(path)
        out = []
        for original in lines:
            line = original
            body, _, _ = line.rpartition(b',"mac":"')
            if index >= start_segment:
                if not edited and line.startswith(b'{"event_id"'):
                    body = body.replace(b'"user_id":"admin"', b'"user_id":"mallory"')
                    edited = True
                line = body + b',"mac":"' + mac(prev, body).hex().encode() + b'"}'
            out.append(line)
            prev = bytes.fromhex(line[-66:-2].decode())
        write_lines(path, out)


def test_recomputing_the_chain_without_the_key_still_fails(clean_log: Path) -> None:
    wrong = hmac.new(b"an attacker's own key material", digestmod=hashlib.sha256)

    def attacker_mac(prev: bytes, body: bytes) -> bytes:
        mac = wrong.copy()
        mac.update(prev + body)
        return mac.digest()

    reseal(clean_log, attacker_mac, start_segment=2)
    report = verify(clean_log, KEY)
    assert not report.ok
    assert "modified" in report.kinds()


def test_recomputing_with_plain_sha256_fails_too(clean_log: Path) -> None:
    reseal(clean_log, lambda prev, body: hashlib.sha256(prev + body).digest(), start_segment=0)
    report = verify(clean_log, KEY)
    assert "modified" in report.kinds()


def test_the_wrong_key_is_reported_once(clean_log: Path) -> None:
    report = verify(clean_log, b"not the key that sealed this log")
    assert [f.kind for f in report.findings] == ["wrong_key"]


# ---- restarts, crashes, processes ------------------------------------------------------------


def test_a_writer_restart_is_recognised_not_flagged(core: str, tmp_path: Path) -> None:
    for run in range(3):
        backend = FileAuditBackend(file_path=tmp_path / "audit.log", integrity_key=KEY)
        for i in range(50):
            backend.log(AuditEvent(event_id=f"r{run}-{i}"))
        backend.close()
    other = "pure" if core == "native" else "native"
    if _core.native_available():
        with _core.use_core(other):  # the other core continues the same chain
            backend = FileAuditBackend(file_path=tmp_path / "audit.log", integrity_key=KEY)
            backend.log(AuditEvent(event_id="other-core"))
            backend.close()
    report = verify(tmp_path, KEY)
    assert report.findings == []
    assert report.writer_starts == (4 if _core.native_available() else 3)
    assert report.records == 150 + _core.native_available()


def spawn(core: str, *args: object) -> subprocess.Popen[bytes]:
    env = {**os.environ, "TRUTHOUND_OBSERVABILITY_CORE": core, "TRUTHOUND_AUDIT_KEY": KEY.decode()}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for_records_of(tag: str, folder: Path, timeout: float = 60.0) -> None:
    """Returns once a record of the writer ``tag`` is in the active segment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for active in folder.glob("*.jsonl"):
            with contextlib.suppress(OSError):
                if f'"{tag}-'.encode() in active.read_bytes():
                    return
        time.sleep(0.02)
    raise AssertionError(f"the writer {tag} wrote nothing in {timeout} s")


@pytest.mark.timeout(180)
def test_four_processes_extend_one_chain_across_rotations(core: str, tmp_path: Path) -> None:
    procs = [spawn(core, "chained", tmp_path, f"p{n}", 1500, 0.05) for n in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err.decode()
    report = verify(tmp_path, KEY)
    assert report.findings == []
    assert report.records == 6000
    assert report.writer_starts == 4
    assert report.segments > 10
    backend = JsonAuditBackend(directory=tmp_path, rotate_daily=False)
    ids = {e.event_id for e in backend.query(limit=None)}
    backend.close()
    assert ids == {f"p{n}-{i}" for n in range(4) for i in range(1500)}


@pytest.mark.timeout(180)
def test_a_writer_killed_mid_write_is_recovered_not_flagged(core: str, tmp_path: Path) -> None:
    for trial in range(3):
        proc = spawn(core, "chained", tmp_path, f"k{trial}", 0, 0.2)
        wait_for_records_of(f"k{trial}", tmp_path)  # (a busy machine may start it late)
        time.sleep(0.1 * trial)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    backend = JsonAuditBackend(directory=tmp_path, rotate_daily=False, integrity_key=KEY)
    backend.log(AuditEvent(event_id="after-the-crashes"))
    backend.close()
    report = verify(tmp_path, KEY)
    assert report.findings == []
    assert report.writer_starts == 4
    assert report.records > 0


# ---- checkpoints, retention, keys -----------------------------------------------------------


@pytest.mark.timeout(60)
def test_periodic_checkpoints_are_written_without_events(tmp_path: Path) -> None:
    backend = JsonAuditBackend(
        directory=tmp_path, integrity_key=KEY, checkpoint_interval_seconds=0.2
    )
    before = backend.checkpoints
    deadline = time.monotonic() + 30
    while backend.checkpoints < before + 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert backend.checkpoints >= before + 3
    # A live log verifies while its newest checkpoint is fresh.
    assert verify(tmp_path, KEY, live=True).ok
    assert verify(tmp_path, KEY).kinds() == {"truncated"}  # at rest it must end with close
    backend.close()
    report = verify(tmp_path, KEY)
    assert report.ok
    assert report.records == 0
    reasons = [json.loads(line)["reason"] for line in read_lines(segments(tmp_path)[-1])]
    assert reasons.count("periodic") >= 3


def test_pruning_by_max_files_is_not_a_deleted_segment(tmp_path: Path) -> None:
    backend = FileAuditBackend(
        file_path=tmp_path / "audit.log", max_file_size_mb=0.01, max_files=3, integrity_key=KEY
    )
    for i in range(600):
        backend.log(AuditEvent(event_id=f"e{i}", metadata={"pad": "x" * 40}))
    backend.close()
    assert backend.pruned_segments > 0
    report = verify(tmp_path, KEY)
    assert report.findings == []
    # Retention checkpoints still on disk name the segments they removed.
    assert report.pruned_segments
    assert not any((tmp_path / name).exists() for name in report.pruned_segments)
    assert any("pruned by retention" in note for note in report.notes)
    # Deleting one more (the oldest kept) segment is still found.
    segments(tmp_path)[0].unlink()
    assert verify(tmp_path, KEY).kinds() == {"deleted_segment"}


def test_retention_days_prunes_old_segments_and_zero_keeps_them(tmp_path: Path) -> None:
    def fill(days: int) -> JsonAuditBackend:
        backend = JsonAuditBackend(
            AuditConfig(retention_days=days, integrity_key=KEY),
            directory=tmp_path,
            rotate_daily=False,
            max_file_size_mb=0.005,
        )
        for i in range(100):
            backend.log(AuditEvent(event_id=f"d{days}-{i}", metadata={"pad": "y" * 30}))
        return backend

    fill(0).close()
    old = time.time() - 40 * 86400
    closed = segments(tmp_path)[:-1]
    for path in closed:
        os.utime(path, (old, old))
    keep = fill(0)  # 0 = keep forever
    keep.close()
    assert keep.pruned_segments == 0
    assert all(path.exists() for path in closed)
    prune = fill(30)  # opening prunes segments untouched for more than 30 days
    prune.close()
    assert prune.pruned_segments == len(closed)
    assert not any(path.exists() for path in closed)
    report = verify(tmp_path, KEY)
    assert report.findings == []
    assert sorted(report.pruned_segments) == sorted(p.name for p in closed)


def test_the_key_comes_from_config_or_environment_never_from_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIT_TEST_KEY", KEY.decode())
    config = AuditConfig(integrity_key_env="AUDIT_TEST_KEY")
    backend = JsonAuditBackend(config, directory=tmp_path)
    backend.log(AuditEvent(event_id="e"))
    backend.close()
    assert backend.tamper_evident
    assert KEY not in b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert "horse" not in repr(AuditConfig(integrity_key=KEY))
    assert verify(tmp_path, key_env="AUDIT_TEST_KEY").ok
    monkeypatch.delenv("AUDIT_TEST_KEY")
    with pytest.raises(InvalidArgumentError, match="AUDIT_TEST_KEY"):
        JsonAuditBackend(config, directory=tmp_path)
    with pytest.raises(InvalidArgumentError, match="16 bytes"):
        JsonAuditBackend(directory=tmp_path, integrity_key=b"short")
    with pytest.raises(InvalidArgumentError, match="AUDIT_TEST_KEY"):
        verify(tmp_path, key_env="AUDIT_TEST_KEY")


def test_an_unchained_writer_on_a_chained_log_is_flagged(tmp_path: Path) -> None:
    chained = JsonAuditBackend(directory=tmp_path, rotate_daily=False, integrity_key=KEY)
    chained.log(AuditEvent(event_id="sealed"))
    plain = JsonAuditBackend(directory=tmp_path, rotate_daily=False)  # no key
    plain.log(AuditEvent(event_id="unsealed"))
    plain.close()
    chained.close()
    assert verify(tmp_path, KEY).kinds() == {"inserted"}


# ---- the command line ----------------------------------------------------------------------


def test_verify_main_exit_status_and_output(
    clean_log: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = clean_log.parent / "key"
    key_file.write_bytes(KEY + b"\n")
    assert verify_main([str(clean_log), "--key-file", str(key_file)]) == 0
    assert capsys.readouterr().out.startswith("OK: 1 log(s)")
    target = [p for p in segments(clean_log) if event_lines(read_lines(p))][-1]
    lines = read_lines(target)
    k = event_lines(lines)[0]
    lines[k] = lines[k].replace(b"admin", b"admiN")
    write_lines(target, lines)
    monkeypatch.setenv("MY_AUDIT_KEY", KEY.decode())
    assert verify_main([str(target), "--key-env", "MY_AUDIT_KEY"]) == 1
    out = capsys.readouterr().out
    assert f"{target}:{k + 1}: modified:" in out
    assert "FAILED (1 finding(s))" in out
    assert verify_main([str(clean_log), "--key-env", "NO_SUCH_VARIABLE_SET"]) == 2
    assert "NO_SUCH_VARIABLE_SET" in capsys.readouterr().err
    assert verify_main([str(clean_log), "--json", "--key-file", str(key_file)]) == 1
    assert json.loads(capsys.readouterr().out)["findings"][0]["kind"] == "modified"


@pytest.fixture
def native_and_pure() -> tuple[Any, Any]:
    from truthound.stores.observability import _native, _pure

    return _native, _pure


@pytest.mark.only_core("native")
@pytest.mark.parametrize("text_format", [False, True])
def test_both_cores_write_byte_identical_chains(
    native_and_pure: tuple[Any, Any], tmp_path: Path, text_format: bool
) -> None:
    """Equivalence of the two cores (imports both directly, so it runs once)."""
    outputs = []
    for module in native_and_pure:
        directory = tmp_path / module.CORE_NAME
        sink = module.FileSink(
            directory, "audit", ".log", max_bytes=900, integrity_key=KEY, writer_id="w",
            frozen_clock=1_700_000_000_000_000, checkpoint_interval=0, text_format=text_format,
        )  # fmt: skip
        for i in range(40):
            event = AuditEvent(
                event_id=f"e{i}", timestamp=datetime(2024, 1, 2, 3, 4, 5, i, tzinfo=UTC),
                metadata={"n": i, "s": "é\t\u2028"}, user_id="u",
            )  # fmt: skip
            sink.log_event(event)
        sink.close()
        outputs.append([p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()])
    assert len(outputs[0]) > 3
    assert [len(x) for x in outputs[0]] == [len(x) for x in outputs[1]]
    # Segment names carry the rotation time; contents must match byte for byte.
    assert outputs[0][1:] == outputs[1][1:]


def test_the_chain_continues_across_a_day_change_and_gzip(tmp_path: Path) -> None:
    backend = JsonAuditBackend(directory=tmp_path, compress=True, integrity_key=KEY)
    for i in range(20):
        backend.log(AuditEvent(event_id=f"day1-{i}"))
    backend._sink.set_clock_offset(86400.0)  # the next record belongs to tomorrow's file
    for i in range(20):
        backend.log(AuditEvent(event_id=f"day2-{i}"))
    backend.close()
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert len(names) == 2
    assert names[0].endswith(".jsonl.gz")  # yesterday's file, compressed at the day change
    report = verify(tmp_path, KEY)
    assert report.findings == []
    assert report.records == 40
    assert json.loads(read_lines(tmp_path / names[1])[0])["reason"] == "rotate"


def two_closed_runs(directory: Path) -> Path:
    """A log written by two writers in turn (each closes cleanly); returns its active file."""
    for run in range(2):
        backend = JsonAuditBackend(directory=directory, rotate_daily=False, integrity_key=KEY)
        for i in range(30):
            backend.log(AuditEvent(event_id=f"r{run}-{i}"))
        backend.close()
    return directory / "audit.jsonl"


def cut_back_to_the_first_close(active: Path) -> None:
    """What a careful attacker does: drop the second run, so the log ends with a genuine close."""
    lines = read_lines(active)
    first_close = next(i for i, line in enumerate(lines) if b'"reason":"close"' in line)
    write_lines(active, lines[: first_close + 1])


def test_cutting_the_log_back_to_an_earlier_clean_close_is_found(tmp_path: Path) -> None:
    active = two_closed_runs(tmp_path)
    assert verify(tmp_path, KEY).ok
    cut_back_to_the_first_close(active)
    report = verify(tmp_path, KEY)
    assert report.kinds() == {"truncated"}
    assert "chain head" in report.findings[0].message


def test_deleting_the_lock_file_does_not_hide_a_cut(tmp_path: Path) -> None:
    cut_back_to_the_first_close(two_closed_runs(tmp_path))
    lock = tmp_path / ".audit.jsonl.lock"
    lock.unlink()  # the head that would show the cut
    report = verify(tmp_path, KEY)
    assert report.kinds() == {"head_missing"}
    assert report.findings[0].segment == str(lock)


def test_a_corrupt_or_forged_chain_head_is_a_finding(tmp_path: Path) -> None:
    cut_back_to_the_first_close(two_closed_runs(tmp_path))
    lock = tmp_path / ".audit.jsonl.lock"
    head = bytearray(lock.read_bytes())
    head[8] -= 1  # next_seq: claim fewer links were written; the head's MAC no longer matches
    lock.write_bytes(bytes(head))
    assert verify(tmp_path, KEY).kinds() == {"head_invalid"}
    lock.write_bytes(b"")  # emptied
    report = verify(tmp_path, KEY)
    assert report.kinds() == {"head_invalid"}
    assert f"{lock}: head_invalid: it holds no chain head" in str(report.findings[0])
    # Waiving the head is for a missing lock file only: a damaged one still fails.
    assert verify(tmp_path, KEY, require_head=False).kinds() == {"head_invalid"}


def test_a_copy_without_lock_files_verifies_with_require_head_false(tmp_path: Path) -> None:
    """The documented limit: without the head, a cut back to an earlier close is invisible."""
    two_closed_runs(tmp_path)
    (tmp_path / ".audit.jsonl.lock").unlink()  # shipped without it
    report = verify(tmp_path, KEY, require_head=False)
    assert report.ok
    assert any("cannot be detected" in note for note in report.notes)
    cut_back_to_the_first_close(tmp_path / "audit.jsonl")
    assert verify(tmp_path, KEY, require_head=False).ok


def test_a_log_deleted_but_for_its_lock_file_is_found(tmp_path: Path) -> None:
    two_closed_runs(tmp_path)
    (tmp_path / "audit.jsonl").unlink()
    report = verify(tmp_path, KEY)
    assert report.kinds() == {"deleted_segment"}
    assert "no segment of this log exists" in report.findings[0].message
    assert report.logs == [str(tmp_path / "audit.jsonl")]


def test_a_path_without_any_audit_log_fails(tmp_path: Path) -> None:
    report = verify(tmp_path, KEY)
    assert report.kinds() == {"no_log"}
    assert report.findings[0].segment == str(tmp_path)
    # An unchained writer's lock file (no chain head) is no evidence of a log either.
    (tmp_path / ".audit.jsonl.lock").write_bytes(b"")
    assert verify(tmp_path, KEY).kinds() == {"no_log"}


def test_verify_main_requires_the_head_unless_told_otherwise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log"
    two_closed_runs(log)
    (log / ".audit.jsonl.lock").unlink()
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    assert verify_main([str(log), "--key-file", str(key_file)]) == 1
    assert f"{log / '.audit.jsonl.lock'}: head_missing:" in capsys.readouterr().out
    assert verify_main([str(log), "--key-file", str(key_file), "--without-head"]) == 0
    assert "cannot be detected" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert verify_main([str(empty), "--key-file", str(key_file)]) == 1
    assert f"{empty}: no_log:" in capsys.readouterr().out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_live_verify_follows_a_writer_that_rotates_during_the_scan(
    tmp_path: Path, compress: bool
) -> None:
    """Segments renamed or gzipped while ``verify(live=True)`` reads them are not reported as
    missing: the scan follows the log as it is now."""
    backend = JsonAuditBackend(
        directory=tmp_path,
        rotate_daily=False,
        max_file_size_mb=0.005,  # a rotation every ~25 records
        compress=compress,
        integrity_key=KEY,
        checkpoint_interval_seconds=5,
    )

    def write() -> None:
        for i in range(1500):
            backend.log(AuditEvent(event_id=f"w{i}", metadata={"pad": "x" * 100}))

    writer = threading.Thread(target=write)
    writer.start()
    reports = []
    while writer.is_alive() or len(reports) < 5:
        reports.append(verify(tmp_path, KEY, live=True))
    writer.join()
    backend.close()
    assert [r.findings for r in reports if not r.ok] == []
    assert len(segments(tmp_path)) > 40  # the writer rotated all along
    assert verify(tmp_path, KEY).ok
