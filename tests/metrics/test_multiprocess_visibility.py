"""What a scrape in another process may see while a writer works: never a value that goes
backwards, never a value counted twice.

Both checks race a writer process against a reader that reads as fast as it can; before the
fixes they fail within a fraction of a second (the pure core's writes went through
``struct.pack_into``, which zeroes its destination before storing into it; a forked child's
file became visible while it still held a copy of its parent's values).
"""

from __future__ import annotations

import mmap
import multiprocessing
import operator
import os
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from truthound.stores.observability._pure import _multiprocess as pure_multiprocess
from truthound.stores.observability.metrics import HistogramValue, SummaryValue

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import mp_workers  # noqa: E402

LOOKS = 200_000
MOST_ROUNDS = 5_000_000
CHILDREN = 600


def _receive(conn: Connection, what: str) -> object:
    if not conn.poll(60):
        pytest.fail(f"the other process did not send {what} within 60 s")
    return conn.recv()


@pytest.mark.timeout(120)
def test_a_reader_never_sees_a_cell_go_backwards_while_its_writer_stores_it(
    core: str, tmp_path: Path
) -> None:
    """Each store into a shared cell is one aligned 8-byte write, as the reader's loads are:
    another process sees the old value or the new one, never a zeroed or half-written word.

    The reader here is our own view of the writer's file (not either core's scrape code): while
    the writer only increments a counter and observes positive values into a histogram, no
    8-byte word of its file may decrease (non-negative doubles order like their bit patterns).
    It looks until it has seen the writer change the file 200,000 times (about a second when
    both run at once) or the writer has done 5 million rounds (a busy machine may run them in
    turns).
    """
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    writer = context.Process(
        target=mp_workers.hammer, args=(core, str(tmp_path), MOST_ROUNDS, theirs)
    )
    writer.start()
    went_down: tuple[int, int, int] | None = None
    changes = 0
    try:
        path = str(_receive(ours, "its file"))
        with open(path, "rb") as file:
            mapping = mmap.mmap(file.fileno(), 0, prot=mmap.PROT_READ)
        words = memoryview(mapping).cast("Q")
        try:
            everything = words.tolist()
            used = max(i for i, word in enumerate(everything) if word) + 1
            ours.send("go")
            before = words[:used].tolist()
            while changes < LOOKS and not ours.poll():
                now = words[:used].tolist()
                if now == before:
                    continue
                changes += 1
                if any(map(operator.gt, before, now)):
                    at = next(i for i in range(used) if now[i] < before[i])
                    went_down = (at, before[at], now[at])
                    break
                before = now
        finally:
            words.release()
            mapping.close()
        ours.send("stop")
        rounds = _receive(ours, "how many rounds it did")
        writer.join(timeout=60)
        assert writer.exitcode == 0
    finally:
        if writer.is_alive():
            writer.kill()
            writer.join()
    assert went_down is None, "word {} of the file went from {:#x} down to {:#x}".format(*went_down)
    # The reader did watch the writer at work (how often depends on the machine's load: when
    # both processes share a core, the reader sees one change per turn).
    assert changes > 0, f"no change seen in the writer's {rounds} rounds"


@pytest.mark.timeout(120)
def test_a_forked_child_never_shows_its_parents_values_twice(core: str, tmp_path: Path) -> None:
    """A forked child moves the series it inherited to a file of its own, values zeroed (the
    parent's values stay in the parent's file). That file must become visible to scrapes only
    once it is ready: a scrape in between would count the parent's values twice, and the next
    one would see them go back down (think gunicorn --preload workers, recycled).

    The parent's counter holds 1; every scrape during 600 forks must say 1.
    """
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    forker = context.Process(
        target=mp_workers.fork_children, args=(core, str(tmp_path), CHILDREN, theirs)
    )
    forker.start()
    scraper = mp_workers.backend(str(tmp_path))
    seen: dict[float | None, int] = {}
    try:
        _receive(ours, "ready")
        ours.send("go")
        while not ours.poll() or not seen:
            value = scraper.get("jobs_total")
            assert not isinstance(value, (HistogramValue, SummaryValue))
            seen[value] = seen.get(value, 0) + 1
        forker.join(timeout=60)
        assert forker.exitcode == 0
    finally:
        if forker.is_alive():
            forker.kill()
            forker.join()
    assert set(seen) == {1.0}, f"values seen by scrapes (value: times): {seen}"
    assert scraper.get("jobs_total") == 1.0  # (compacts the last children's files)
    # every child left a file of its own, as did the forker
    assert scraper.multiprocess_compacted_files == CHILDREN + 1


@pytest.mark.only_core("pure")
def test_a_scrape_maps_a_file_again_when_it_grew_after_being_sized(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer grows its file by new chunks; a scrape that sized its mapping just before may
    find records published beyond it. It maps the file again instead of skipping it (the
    file's values would vanish from that scrape, and come back in the next).

    The race is a few microseconds wide: the test makes it certain by showing the scrape the
    file's size from before its growth, which only the pure core's reader can be shown (the
    native reader's retry is tested the same way by ``cargo test``:
    ``a_file_that_grew_after_it_was_sized_is_mapped_again``).
    """
    directory = str(tmp_path)
    writer = mp_workers.backend(directory)
    writer.increment("jobs_total", 7)
    for i in range(8):  # a summary series takes ~20 KB of cells
        writer.summary("size_bytes", 1.0, {"shard": str(i)})
    path = writer.multiprocess_file
    assert path is not None
    grown = path.stat()
    assert grown.st_size > pure_multiprocess.FIRST_CHUNK  # the file did grow past its first chunk
    real_fstat = os.fstat
    stale_answers = [pure_multiprocess.FIRST_CHUNK]

    def fstat(fd: int) -> os.stat_result:
        found = real_fstat(fd)
        if found.st_ino == grown.st_ino and stale_answers:
            fields = list(found)
            fields[6] = stale_answers.pop()  # st_size
            return os.stat_result(fields)
        return found

    monkeypatch.setattr(pure_multiprocess.os, "fstat", fstat)
    scraper = mp_workers.backend(directory)
    assert scraper.get("jobs_total") == 7.0
    assert not stale_answers  # the scrape was shown the stale size
    assert scraper.multiprocess_skipped_files == 0
