"""Pure-Python mirror of ``rust/metrics/multiprocess/``: the same file format, locking
protocol, aggregation and compaction (a native and a pure process can share a directory).

Values are written through to the memory-mapped file, one aligned 8-byte store per cell, and
read with one aligned 8-byte load per cell (see ``Chunk``): the memory model of the native
core's atomics. The Python attributes of a series remain the writer's own copy. See the native
module for the design notes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import mmap
import os
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidArgumentError, MultiprocessError

MAGIC = 0x3170_6D6F_7374_6E74
HEADER = 64
OFF_USED = 8
OFF_PID = 16
OFF_CREATED = 24
OFF_FLAGS = 32
FLAG_ARCHIVE = 1
REC_PAD = 0
REC_FAMILY = 1
REC_SERIES = 2
REC_ABSORBED = 3
SERIES_PARTIALS = 1
STATE_REMOVED = 1
FIRST_CHUNK = 64 * 1024
MAX_CHUNK = 16 * 1024 * 1024
SLOT_BINS = 512
SLOT_HEADER = 7
ARCHIVE = "archive.db"
LOCK = ".lock"

KINDS = ("counter", "gauge", "histogram", "summary")
MODES = ("sum", "max", "min", "latest", "livesum", "livemax", "livemin", "livelatest")
LIVE_MODES = ("livesum", "livemax", "livemin", "livelatest")
SUM_MODES = ("sum", "livesum")

_Q = struct.Struct("=Q")
_D = struct.Struct("=d")
_I = struct.Struct("=I")
_HEAD = struct.Struct("=IHH")
_TWO = struct.Struct("=II")
# For record bytes only (written before they are published, never changed after): ``pack_into``
# zeroes its destination before storing into it, so it must never touch a live cell.
unpack_q = _Q.unpack_from
unpack_d = _D.unpack_from
W_USED = OFF_USED // 8
W_PID = OFF_PID // 8
W_CREATED = OFF_CREATED // 8
W_FLAGS = OFF_FLAGS // 8


# ---- shared words ----------------------------------------------------------------------------


class Chunk:
    """One mapped region of a file, with typed views of its 8-byte words.

    Every cell another process may read while this one writes it (values, the published length,
    the removed flag, summary slots) is accessed through ``q`` (unsigned) or ``d`` (float), never
    through ``struct``: ``pack_into`` first zeroes its destination, then stores (a concurrent
    scrape saw counters drop to 0), and packs doubles with ``PyFloat_Pack8``, a byte loop in C
    that only some compilers merge into one store.
    An item of a typed memoryview is read or written by one ``memcpy`` of 8 bytes from or to an
    8-byte aligned address, which C compilers emit as a single load or store (``mov``/``movsd``
    on x86-64, ``ldr``/``str`` on aarch64), and both architectures make an aligned 8-byte access
    single-copy atomic: a reader sees the old value or the new one, as with the native core's
    ``AtomicU64``. Cells are aligned: chunks start at page-multiple file offsets, the header is 64
    bytes and every record and record head is a multiple of 8 bytes.

    An mmap with exported buffers cannot be closed: ``close`` releases the views first (series
    holding them are moved to other chunks before). Chunks never move or resize while mapped.
    """

    __slots__ = ("d", "mm", "offset", "q", "raw", "size")

    def __init__(self, mm: mmap.mmap, offset: int, size: int) -> None:
        self.mm = mm
        self.offset = offset
        self.size = size
        self.raw = memoryview(mm)
        self.q = self.raw.cast("Q")
        self.d = self.raw.cast("d")

    def close(self) -> None:
        self.q.release()
        self.d.release()
        self.raw.release()
        # Another view still referenced (a thread that vanished in a fork held one): the
        # mapping goes with the garbage collector instead.
        with contextlib.suppress(BufferError):
            self.mm.close()


@contextmanager
def read_words(mm: mmap.mmap) -> Iterator[memoryview[int]]:
    """The whole 8-byte words of a mapping as unsigned integers (one aligned load per item),
    released on exit so the mapping can be closed."""
    whole = memoryview(mm)
    aligned = whole[: len(whole) // 8 * 8]
    words = aligned.cast("Q")
    try:
        yield words
    finally:
        words.release()
        aligned.release()
        whole.release()


class _Fence(threading.local):
    """This thread's lock, always held (released and taken again by ``fence``)."""

    def __init__(self) -> None:
        lock = threading.Lock()
        lock.acquire()
        self.release = lock.release
        self.acquire = lock.acquire


_FENCE = _Fence()


def fence() -> None:
    """A full memory barrier between this thread's shared-memory accesses before and after it.

    The protocols here need stores published in order (record bytes before the length that
    covers them; a summary slot's odd sequence number before its body, its body before the even
    number) and loads done in order on the reader's side. x86-64 keeps stores in order and loads
    in order by itself (each access is a separate C call, which the compiler cannot reorder);
    aarch64 does not, and Python has no fence. Releasing a lock and taking it again is one: the
    release is a store-release (every earlier access is ordered before it), the acquire a
    load-acquire read-modify-write (every later access is ordered after it), and Arm never lets
    a load-acquire pass an earlier store-release (RCsc), so nothing before the pair can be seen
    after anything behind it. That holds for every CPython lock (semaphore, mutex or PyMutex).
    The lock is this thread's own, so threads never wait on each other here.
    """
    local = _FENCE
    local.release()
    local.acquire()


def parse_mode(name: str) -> str:
    """A gauge mode name (prometheus_client's ``mostrecent`` names accepted)."""
    name = {"mostrecent": "latest", "livemostrecent": "livelatest"}.get(name, name)
    if name not in MODES:
        raise InvalidArgumentError(
            f'"{name}": multiprocess_mode must be one of sum, max, min, latest, livesum, '
            "livemax, livemin, livelatest"
        )
    return name


def slot_bins(max_bins: int) -> int:
    return min(max(max_bins, 1), SLOT_BINS)


def cell_count(kind: str, n_bounds: int, age_buckets: int, max_bins: int) -> int:
    if kind == "counter":
        return 2
    if kind == "gauge":
        return 3
    if kind == "histogram":
        return n_bounds + 3
    return 3 + age_buckets * (SLOT_HEADER + slot_bins(max_bins))


def created_index(kind: str, n_cells: int) -> int:
    if kind == "counter":
        return 1
    if kind in ("gauge", "summary"):
        return 2
    return n_cells - 1


def wall_clock() -> float:
    return time.time()


def nonce() -> int:
    return int.from_bytes(os.urandom(8), "little")


# ---- exact summation (mirror of fsum.rs) -----------------------------------------------------


def _add_finite(partials: list[float], x: float) -> None:
    i = 0
    for partial in list(partials):
        y = partial
        if abs(x) < abs(y):
            x, y = y, x
        hi = x + y
        lo = y - (hi - x)
        if lo != 0.0:
            partials[i] = lo
            i += 1
        x = hi
    del partials[i:]
    partials.append(x)


def add_partial(partials: list[float], x: float) -> None:
    """Adds ``x`` to the exact running total ``partials``."""
    if not math.isfinite(x) or any(not math.isfinite(p) for p in partials):
        total = fsum([*partials, x])
        partials.clear()
        partials.append(total)
        return
    _add_finite(partials, x)
    if partials and math.isinf(partials[-1]):
        last = partials[-1]
        partials.clear()
        partials.append(last)


def fsum(values: Iterable[float]) -> float:
    partials: list[float] = []
    special = 0.0
    infinities = 0.0
    has_special = False
    for x in values:
        if not math.isfinite(x):
            if math.isinf(x):
                infinities += x
            special += x
            has_special = True
            continue
        _add_finite(partials, x)
        if partials and math.isinf(partials[-1]):
            return partials[-1]
    if has_special:
        return math.nan if math.isnan(infinities) else special
    return round_partials(partials)


def round_partials(partials: list[float]) -> float:
    n = len(partials)
    if n == 0:
        return 0.0
    if n == 1:
        return partials[0]
    n -= 1
    hi = partials[n]
    lo = 0.0
    while n > 0:
        x = hi
        n -= 1
        y = partials[n]
        hi = x + y
        yr = hi - x
        lo = y - yr
        if lo != 0.0:
            break
    if n > 0 and ((lo < 0.0 and partials[n - 1] < 0.0) or (lo > 0.0 and partials[n - 1] > 0.0)):
        y = lo * 2.0
        x = hi + y
        yr = x - hi
        if y == yr:
            hi = x
    return hi


# ---- records -------------------------------------------------------------------------------


@dataclass
class FamilyDef:
    id: int
    kind: str
    mode: str
    name: str
    help: str
    labels: list[str]
    bounds: list[float]
    quantiles: list[float]
    age_buckets: int
    max_age: float
    relative_accuracy: float
    max_bins: int

    def cells(self) -> int:
        return cell_count(self.kind, len(self.bounds), self.age_buckets, self.max_bins)

    def same_shape(self, other: FamilyDef) -> bool:
        return (
            self.kind == other.kind
            and self.labels == other.labels
            and _bits(self.bounds) == _bits(other.bounds)
            and _bits(self.quantiles) == _bits(other.quantiles)
        )


def _bits(values: list[float]) -> list[float]:
    return [v + 0.0 for v in values]


def _string(text: str) -> bytes:
    data = text.encode()
    return _I.pack(len(data)) + data


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 8)


def _record(kind: int, flags: int, body: bytes) -> bytes:
    body = _pad(body)
    return _HEAD.pack(8 + len(body), kind, flags) + body


def family_record(d: FamilyDef) -> bytes:
    body = [
        _TWO.pack(d.id, KINDS.index(d.kind) | (MODES.index(d.mode) << 8)),
        _TWO.pack(len(d.labels), len(d.bounds)),
        _TWO.pack(len(d.quantiles), d.age_buckets),
        _D.pack(d.max_age),
        _D.pack(d.relative_accuracy),
        _Q.pack(d.max_bins),
        *(_D.pack(b) for b in d.bounds),
        *(_D.pack(q) for q in d.quantiles),
        _string(d.name),
        _string(d.help),
        *(_string(label) for label in d.labels),
    ]
    return _record(REC_FAMILY, 0, b"".join(body))


def series_head(family: int, values: Iterable[str], n_cells: int) -> tuple[bytes, int]:
    body = _pad(_Q.pack(0) + _TWO.pack(family, n_cells) + b"".join(_string(v) for v in values))
    head_len = 8 + len(body)
    total = head_len + n_cells * 8
    return _HEAD.pack(total, REC_SERIES, 0) + body, total


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: Any, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise ValueError("truncated")

    def u64(self) -> int:
        self._need(8)
        value: int = unpack_q(self.data, self.pos)[0]
        self.pos += 8
        return value

    def f64(self) -> float:
        self._need(8)
        value: float = unpack_d(self.data, self.pos)[0]
        self.pos += 8
        return value

    def two_u32(self) -> tuple[int, int]:
        self._need(8)
        a, b = _TWO.unpack_from(self.data, self.pos)
        self.pos += 8
        return a, b

    def string(self) -> str:
        self._need(4)
        (n,) = _I.unpack_from(self.data, self.pos)
        self._need(4 + n)
        text = bytes(self.data[self.pos + 4 : self.pos + 4 + n]).decode()
        self.pos += 4 + n
        return text

    def align(self) -> None:
        self.pos = (self.pos + 7) // 8 * 8


def parse_family(body: Any) -> FamilyDef | None:
    try:
        r = _Reader(body)
        fid, codes = r.two_u32()
        kind_code, mode_code = codes & 0xFF, (codes >> 8) & 0xFF
        if kind_code >= len(KINDS) or mode_code >= len(MODES):
            return None
        n_labels, n_bounds = r.two_u32()
        n_quantiles, age_buckets = r.two_u32()
        max_age = r.f64()
        accuracy = r.f64()
        max_bins = r.u64()
        if n_bounds > len(body) // 8 or n_quantiles > len(body) // 8:
            return None
        bounds = [r.f64() for _ in range(n_bounds)]
        quantiles = [r.f64() for _ in range(n_quantiles)]
        name = r.string()
        help_text = r.string()
        if n_labels > len(body) // 4:
            return None
        labels = [r.string() for _ in range(n_labels)]
    except (ValueError, UnicodeDecodeError):
        return None
    kind = KINDS[kind_code]
    if kind == "summary" and not (1 <= age_buckets <= 1024 and max_age > 0.0):
        return None
    return FamilyDef(
        fid,
        kind,
        MODES[mode_code],
        name,
        help_text,
        labels,
        bounds,
        quantiles,
        age_buckets,
        max_age,
        accuracy,
        max_bins,
    )


# ---- locks ---------------------------------------------------------------------------------


def _flock(fd: int, operation: int) -> bool:
    try:
        fcntl.flock(fd, operation)
    except OSError:
        return False
    return True


def writer_is_dead(fd: int) -> bool:
    if _flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB):
        _flock(fd, fcntl.LOCK_UN)
        return True
    return False


# ---- the writer ----------------------------------------------------------------------------


def _new_file(
    directory: str, prepare: Callable[[int, str], list[Chunk]]
) -> tuple[int, str, list[Chunk]]:
    """A new writer file of this process: created under a hidden name, locked, filled by
    ``prepare(descriptor, hidden path)`` (which maps it), and only then renamed to a name scrapes
    read, so no scrape ever sees it unfinished (a forked child's copy of its parent's file
    would be counted twice before its values are zeroed)."""
    pid = os.getpid()
    last: Exception | None = None
    for _ in range(5):
        ident = nonce()
        tmp = os.path.join(directory, f".w-{pid}-{ident:016x}.tmp")
        path = os.path.join(directory, f"w-{pid}-{ident:016x}.db")
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as error:
            last = MultiprocessError(f'"{tmp}": cannot create the metrics file: {error}')
            continue
        if not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
            os.close(fd)
            continue
        try:
            chunks = prepare(fd, tmp)
        except MultiprocessError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fence()  # the content before the name
        # A failed rename means a compaction removed the temporary file before we locked it:
        # try another name.
        try:
            os.rename(tmp, path)
        except OSError:
            for chunk in chunks:
                chunk.close()
            os.close(fd)
            continue
        return fd, path, chunks
    raise last or MultiprocessError(
        f'"{directory}": cannot create a metrics file in the multiprocess directory'
    )


def _map(fd: int, path: str, offset: int, size: int) -> Chunk:
    try:
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
    except (OSError, ValueError) as error:
        raise MultiprocessError(f'"{path}": cannot map the metrics file: {error}') from error
    return Chunk(mm, offset, size)


# Filesystems that cannot preallocate (they get a sparse extension, as ftruncate gives).
_NO_PREALLOCATION = frozenset({errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS})


def _allocate(fd: int, start: int, end: int) -> None:
    """Extends the file from ``start`` to ``end`` bytes with its blocks allocated. Writing to a
    mapped page the filesystem cannot back (a full disk or a full ``/dev/shm``) kills the
    process with ``SIGBUS``; allocating first turns that into an ``OSError`` here."""
    try:
        os.posix_fallocate(fd, start, end - start)
    except OSError as error:
        if error.errno not in _NO_PREALLOCATION:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)  # (what was allocated before the failure)
            raise
        os.ftruncate(fd, end)


def _fresh_file(fd: int, path: str) -> list[Chunk]:
    try:
        _allocate(fd, 0, FIRST_CHUNK)
    except OSError as error:
        raise MultiprocessError(f'"{path}": cannot size the metrics file: {error}') from error
    chunk = _map(fd, path, 0, FIRST_CHUNK)
    q = chunk.q
    q[0] = MAGIC
    q[W_PID] = os.getpid()
    chunk.d[W_CREATED] = wall_clock()
    q[W_USED] = HEADER
    return [chunk]


class Slab:
    """This process's writer file (mirror of ``slab.rs``)."""

    def __init__(self, directory: str, counters: Counters) -> None:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as error:
            raise MultiprocessError(
                f'"{directory}": cannot create the multiprocess directory: {error}'
            ) from error
        self.dir = directory
        self.fd, self.path, self.chunks = _new_file(directory, _fresh_file)
        self.used = HEADER
        self.next_family = 0
        self.broken = False
        self.counters = counters
        #: Every series with cells here: (series, chunk index); moved after a fork.
        self.series_list: list[tuple[Any, int]] = []
        _SLABS.add(self)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            os.close(self.fd)

    def _reserve(self, length: int) -> tuple[int, int]:
        """(chunk index, position in it) for ``length`` bytes at ``self.used``."""
        last = self.chunks[-1]
        end = last.offset + last.size
        if self.used + length <= end:
            return len(self.chunks) - 1, self.used - last.offset
        new_size = max(min(last.size * 2, MAX_CHUNK), (length + 4095) // 4096 * 4096)
        try:
            _allocate(self.fd, end, end + new_size)
        except OSError as error:
            raise MultiprocessError(f'"{self.path}": cannot grow the metrics file') from error
        chunk = _map(self.fd, self.path, end, new_size)
        remaining = end - self.used
        if remaining > 0:  # not yet published: plain bytes
            _HEAD.pack_into(last.mm, self.used - last.offset, remaining, REC_PAD, 0)
        self.used = end
        self.chunks.append(chunk)
        return len(self.chunks) - 1, 0

    def _publish(self) -> None:
        """Makes the records written so far visible: the length that covers them is stored
        after them (``fence``), and readers load it before reading them."""
        fence()
        self.chunks[0].q[W_USED] = self.used

    def _write(self, data: bytes, total: int) -> tuple[int, int, int]:
        index, pos = self._reserve(total)
        chunk = self.chunks[index]
        chunk.mm[pos : pos + len(data)] = data  # not yet published: plain bytes
        start = chunk.offset + pos
        self.used = start + total
        return index, pos, start

    def define(self, d: FamilyDef, new_id: bool) -> None:
        if new_id:
            d.id = self.next_family
            self.next_family += 1
        if self.broken:
            return
        record = family_record(d)
        with contextlib.suppress(MultiprocessError):
            self._write(record, len(record))
            self._publish()

    def series(
        self, family: int, values: list[str], n_cells: int, created_at: int, created: float
    ) -> tuple[int, int, int] | None:
        """(chunk index, index of the first cell among the chunk's words, record offset), or
        ``None``."""
        if self.broken:
            return None
        head, total = series_head(family, values, n_cells)
        try:
            index, pos, start = self._write(head, total)
        except MultiprocessError:
            return None
        cells, misaligned = divmod(pos + len(head), 8)
        assert not misaligned, "records and record heads are multiples of 8 bytes"
        self.chunks[index].d[cells + created_at] = created
        self._publish()
        return index, cells, start

    def remove(self, record: int) -> None:
        for chunk in self.chunks:
            if chunk.offset <= record < chunk.offset + chunk.size:
                at = (record - chunk.offset + 8) // 8
                chunk.q[at] = chunk.q[at] | STATE_REMOVED
                return

    def after_fork_in_child(self) -> None:
        """Moves the file's content to a file of this (child) process, values zeroed, made
        visible to scrapes only then."""
        if self.broken:
            return
        old = self.chunks
        used = self.used

        def copy(fd: int, path: str) -> list[Chunk]:
            try:
                _allocate(fd, 0, old[-1].offset + old[-1].size)
                for chunk in old:
                    length = min(chunk.size, max(used - chunk.offset, 0))
                    os.pwrite(fd, chunk.mm[:length], chunk.offset)
            except OSError as error:
                raise MultiprocessError(f'"{path}": cannot copy the metrics file') from error
            # (on failure, the chunks mapped so far are unmapped as they are dropped)
            chunks = [_map(fd, path, chunk.offset, chunk.size) for chunk in old]
            _zero_values(chunks, used)
            chunks[0].q[W_PID] = os.getpid()
            chunks[0].d[W_CREATED] = wall_clock()
            return chunks

        try:
            fd, path, chunks = _new_file(self.dir, copy)
        except MultiprocessError:
            self._privatize()
            return
        self._move(chunks)
        os.close(self.fd)
        self.fd, self.path = fd, path

    def _move(self, chunks: list[Chunk]) -> None:
        """Points every series at ``chunks`` and unmaps the old ones."""
        old, self.chunks = self.chunks, chunks
        for series, index in self.series_list:
            series.moved(chunks[index])
        for chunk in old:
            chunk.close()

    def _privatize(self) -> None:
        """No file for the child: private copies, never written back to the parent's file."""
        self.broken = True
        self.counters.unshared_series += len(self.series_list)
        chunks = []
        for chunk in self.chunks:
            private = mmap.mmap(-1, chunk.size)
            private[:] = chunk.mm[: chunk.size]
            chunks.append(Chunk(private, chunk.offset, chunk.size))
        _zero_values(chunks, self.used)
        self._move(chunks)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def _zero_values(chunks: list[Chunk], used: int) -> None:
    """Zeroes every value cell of a file's chunks (not the created times)."""
    defs: dict[int, FamilyDef] = {}
    offset = HEADER
    while offset + 8 <= used:
        chunk = next((c for c in chunks if c.offset <= offset < c.offset + c.size), None)
        if chunk is None:
            return
        mm = chunk.mm
        pos = offset - chunk.offset
        length, kind, _flags = _HEAD.unpack_from(mm, pos)
        if length < 8 or pos + length > chunk.size:
            return
        if kind == REC_FAMILY:
            d = parse_family(mm[pos + 8 : pos + length])
            if d is not None:
                defs[d.id] = d
        elif kind == REC_SERIES:
            r = _Reader(mm, pos + 16)
            family, n_cells = r.two_u32()
            d = defs.get(family)
            if d is not None:
                for _ in d.labels:
                    r.string()
                r.align()
                created = created_index(d.kind, n_cells)
                if r.pos + n_cells * 8 <= pos + length:
                    first = r.pos // 8
                    for i in range(n_cells):
                        if i != created:
                            chunk.q[first + i] = 0
        offset += length


_SLABS: weakref.WeakSet[Slab] = weakref.WeakSet()


def after_fork_in_child() -> None:
    for slab in list(_SLABS):
        slab.after_fork_in_child()


# ---- shared summary slots (mirror of Series::shared_observe) ----------------------------------


def bin_word(key: int, count: int) -> int:
    return ((key & 0xFFFFFFFF) << 32) | count


def bin_key(word: int) -> int:
    key = word >> 32
    return key - (1 << 32) if key >= 1 << 31 else key


def bin_count(word: int) -> int:
    return word & 0xFFFFFFFF


def slot_base(slot: int, max_bins: int) -> int:
    return 3 + slot * (SLOT_HEADER + slot_bins(max_bins))


class Cells:
    """A series' cells: word ``i`` from its first cell ``at`` in a chunk's views (one aligned
    8-byte load or store each, see ``Chunk``)."""

    __slots__ = ("at", "d", "q")

    def __init__(self, q: memoryview[int], d: memoryview[float], at: int) -> None:
        self.q = q
        self.d = d
        self.at = at

    def u(self, i: int) -> int:
        value: int = self.q[self.at + i]
        return value

    def f(self, i: int) -> float:
        value: float = self.d[self.at + i]
        return value

    def set_u(self, i: int, value: int) -> None:
        self.q[self.at + i] = value

    def set_f(self, i: int, value: float) -> None:
        self.d[self.at + i] = value


def shared_observe(  # noqa: PLR0917 - mirrors Series::shared_observe
    cells: Cells,
    value: float,
    now: float,
    max_age: float,
    age_buckets: int,
    max_bins: int,
    key: int | None,
) -> None:
    """Records ``value`` (bin ``key``, ``None`` for zero) in the age slot of ``now``.

    The slot is a seqlock: its sequence number is odd while it changes. ``fence`` orders the odd
    number before the body and the body before the even number (readers: ``_copy_slot``)."""
    cells.set_u(0, cells.u(0) + 1)
    cells.set_f(1, cells.f(1) + value)
    width = max_age / age_buckets
    epoch = max(math.floor(now / width), 0)
    base = slot_base(epoch % age_buckets, max_bins)
    seq = cells.u(base)
    if cells.u(base + 1) != epoch + 1:
        cells.set_u(base, seq + 1)
        fence()
        cells.set_u(base + 1, epoch + 1)
        for i in range(2, SLOT_HEADER):
            cells.set_u(base + i, 0)
        fence()
        cells.set_u(base, seq + 2)
    seq = cells.u(base)
    cells.set_u(base, seq + 1)
    fence()
    count = cells.u(base + 2)
    if count == 0:
        cells.set_f(base + 4, value)
        cells.set_f(base + 5, value)
    else:
        cells.set_f(base + 4, min(cells.f(base + 4), value))
        cells.set_f(base + 5, max(cells.f(base + 5), value))
    cells.set_u(base + 2, count + 1)
    if key is not None:
        _insert_bin(cells, base, slot_bins(max_bins), key)
    else:
        cells.set_u(base + 3, cells.u(base + 3) + 1)
    fence()
    cells.set_u(base, seq + 2)


def _insert_bin(cells: Cells, base: int, cap: int, key: int) -> None:
    n = min(cells.u(base + 6), cap)
    first = base + SLOT_HEADER
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if bin_key(cells.u(first + mid)) < key:
            lo = mid + 1
        else:
            hi = mid
    position = lo

    def bump(i: int, by: int) -> None:
        word = cells.u(first + i)
        count = min(bin_count(word) + by, 0xFFFFFFFF)
        cells.set_u(first + i, bin_word(bin_key(word), count))

    if position < n and bin_key(cells.u(first + position)) == key:
        bump(position, 1)
        return
    if n < cap:
        for i in range(n - 1, position - 1, -1):
            cells.set_u(first + i + 1, cells.u(first + i))
        cells.set_u(first + position, bin_word(key, 1))
        cells.set_u(base + 6, n + 1)
        return
    if position == 0:
        bump(0, 1)
        return
    lowest = bin_count(cells.u(first))
    for i in range(position - 1):
        cells.set_u(first + i, cells.u(first + i + 1))
    cells.set_u(first + position - 1, bin_word(key, 1))
    bump(0, lowest)


def slot_parts(
    words: Any, base: int, bins: int, current: int, age_buckets: int
) -> tuple[int, int, int, float, float, dict[int, int]] | None:
    """(tag, count, zero, min, max, bins) of an in-window slot of ``words``, or ``None``."""
    tag = words[base + 1]
    count = words[base + 2]
    if tag == 0 or count == 0 or tag - 1 > current or tag - 1 + age_buckets <= current:
        return None
    n = min(words[base + 6], bins)
    found: dict[int, int] = {}
    for i in range(n):
        word = words[base + SLOT_HEADER + i]
        found[bin_key(word)] = found.get(bin_key(word), 0) + bin_count(word)
    as_f = _D.unpack(_Q.pack(words[base + 4]))[0], _D.unpack(_Q.pack(words[base + 5]))[0]
    return tag, count, words[base + 3], as_f[0], as_f[1], found


# ---- counters ------------------------------------------------------------------------------


class Counters:
    __slots__ = (
        "compacted_files",
        "compactions",
        "repairs",
        "skipped_files",
        "skipped_records",
        "unmerged_sketches",
        "unshared_series",
    )

    def __init__(self) -> None:
        self.skipped_files = 0
        self.skipped_records = 0
        self.unshared_series = 0
        self.unmerged_sketches = 0
        self.compactions = 0
        self.compacted_files = 0
        self.repairs = 0

    def as_tuple(self) -> tuple[int, int, int, int, int, int, int]:
        return (
            self.skipped_files,
            self.skipped_records,
            self.unshared_series,
            self.unmerged_sketches,
            self.compactions,
            self.compacted_files,
            self.repairs,
        )


# ---- the reader ----------------------------------------------------------------------------


@dataclass
class FileSeries:
    family: int
    values: tuple[str, ...]
    cells: list[int]
    partials: list[float] | None


@dataclass
class ParsedFile:
    name: str = ""
    live: bool = False
    created: float = 0.0
    defs: dict[int, FamilyDef] = field(default_factory=dict)
    series: list[FileSeries] = field(default_factory=list)
    absorbed: list[str] = field(default_factory=list)


def _copy_slot(words: memoryview[int], at: int, bins: int, out: list[int], first: int) -> None:
    """Copies the summary slot at word ``at`` consistently (seqlock), retrying while its
    writer changes it. ``tolist`` of a slice reads item by item: one aligned load per word."""
    body = at + SLOT_HEADER
    for _ in range(64):
        seq = words[at]
        if seq % 2 == 0:
            fence()  # the sequence number before the body
            header = words[at : at + SLOT_HEADER].tolist()
            n = min(header[6], bins)
            found = words[body : body + n].tolist()
            fence()  # the body before the second look at the sequence number
            if words[at] == seq:
                header[0] = seq
                out[first : first + SLOT_HEADER] = header
                out[first + SLOT_HEADER : first + SLOT_HEADER + n] = found
                return
        time.sleep(0)
    # A writer that died mid-update leaves an odd sequence: take the slot as it is.
    header = words[at : at + SLOT_HEADER].tolist()
    n = min(header[6], bins)
    out[first : first + SLOT_HEADER] = header
    out[first + SLOT_HEADER : first + SLOT_HEADER + n] = words[body : body + n].tolist()


def _parse_series(  # noqa: PLR0917 - internal
    mm: Any,
    words: memoryview[int],
    parsed: ParsedFile,
    offset: int,
    length: int,
    archive: bool,
    flags: int,
) -> bool:
    r = _Reader(mm, offset + 16)
    family, n_cells = r.two_u32()
    state = words[(offset + 8) // 8]  # changes after publication (removed): one load
    d = parsed.defs.get(family)
    if d is None:
        return False
    values = tuple(r.string() for _ in d.labels)
    r.align()
    if n_cells != d.cells():
        return False
    start = r.pos
    end = start + n_cells * 8
    if end > offset + length:
        return False
    if state & STATE_REMOVED:
        return True
    at = start // 8
    if d.kind == "summary":
        cells = [0] * n_cells
        cells[:3] = words[at : at + 3].tolist()
        bins = slot_bins(d.max_bins)
        for slot in range(d.age_buckets):
            first = 3 + slot * (SLOT_HEADER + bins)
            _copy_slot(words, at + first, bins, cells, first)
    else:
        cells = words[at : at + n_cells].tolist()
    partials = None
    if archive and flags & SERIES_PARTIALS:
        pr = _Reader(mm, end)
        count = pr.u64()
        if count > length // 8 or end + 8 + 8 * count > offset + length:
            return False
        partials = [pr.f64() for _ in range(count)]
    parsed.series.append(FileSeries(family, values, cells, partials))
    return True


def parse(mm: Any, words: memoryview[int], counters: Counters) -> ParsedFile | None:
    """Parses a mapped file (``words``: its 8-byte words, see ``read_words``)."""
    size = len(mm)
    if size < HEADER or words[0] != MAGIC:
        return None
    used = words[W_USED]
    fence()  # the published length before the records it covers (the writer's ``_publish``)
    if used < HEADER or used > size or used % 8:
        return None
    parsed = ParsedFile(created=_f(words[W_CREATED]))
    archive = bool(words[W_FLAGS] & FLAG_ARCHIVE)
    offset = HEADER
    while offset < used:
        length, kind, flags = _HEAD.unpack_from(mm, offset)
        if length < 8 or length % 8 or offset + length > used:
            counters.skipped_records += 1
            break
        ok = True
        try:
            if kind == REC_FAMILY:
                d = parse_family(mm[offset + 8 : offset + length])
                if d is None:
                    ok = False
                else:
                    parsed.defs[d.id] = d
            elif kind == REC_SERIES:
                ok = _parse_series(mm, words, parsed, offset, length, archive, flags)
            elif kind == REC_ABSORBED:
                r = _Reader(mm, offset + 8)
                (count,) = _I.unpack_from(mm, offset + 8)
                r.pos += 4
                parsed.absorbed.extend(r.string() for _ in range(count))
        except (ValueError, UnicodeDecodeError, IndexError, struct.error):
            ok = False
        if not ok:
            counters.skipped_records += 1
        offset += length
    return parsed


@dataclass
class Slot:
    count: int = 0
    zero: int = 0
    min: float = 0.0
    max: float = 0.0
    bins: dict[int, int] = field(default_factory=dict)


@dataclass
class AggSeries:
    created: float = 0.0
    partials: list[float] = field(default_factory=list)
    buckets: list[int] = field(default_factory=list)
    count: int = 0
    gauge: tuple[float, float] | None = None
    slots: dict[int, Slot] = field(default_factory=dict)

    def sum(self) -> float:
        return round_partials(self.partials)

    def gauge_value(self, mode: str) -> float:
        if mode in SUM_MODES:
            return self.sum()
        return self.gauge[0] if self.gauge is not None else 0.0


@dataclass
class AggFamily:
    d: FamilyDef
    series: dict[tuple[str, ...], AggSeries]


def _earliest(current: float, created: float) -> float:
    if created > 0.0 and (current == 0.0 or created < current):
        return created
    return current


def _f(word: int) -> float:
    value: float = _D.unpack(_Q.pack(word))[0]
    return value


def _w(value: float) -> int:
    word: int = _Q.unpack(_D.pack(value))[0]
    return word


def window_epoch(d: FamilyDef, now: float) -> int:
    width = d.max_age / d.age_buckets
    return max(math.floor(now / width), 0)


class Aggregate:
    def __init__(self, now: float) -> None:
        self.families: dict[str, AggFamily] = {}
        self.now = now

    def sorted_families(self) -> list[AggFamily]:
        return [self.families[name] for name in sorted(self.families)]

    def add_file(self, file: ParsedFile, counters: Counters) -> None:  # noqa: PLR0912
        for series in file.series:
            d = file.defs.get(series.family)
            if d is None:
                continue
            family = self.families.get(d.name)
            if family is None:
                family = self.families[d.name] = AggFamily(d, {})
            if not family.d.same_shape(d):
                counters.skipped_records += 1
                continue
            if d.kind == "gauge" and family.d.mode in LIVE_MODES and not file.live:
                continue
            target = family.series.get(series.values)
            if target is None:
                target = family.series[series.values] = AggSeries()
            cells = series.cells
            target.created = _earliest(target.created, _f(cells[created_index(d.kind, len(cells))]))
            sum_cell = {"counter": 0, "gauge": 0, "histogram": len(d.bounds) + 1, "summary": 1}[
                d.kind
            ]

            def add_sum(
                target: AggSeries = target, series: FileSeries = series, at: int = sum_cell
            ) -> None:
                if series.partials is not None:
                    for p in series.partials:
                        add_partial(target.partials, p)
                else:
                    add_partial(target.partials, _f(series.cells[at]))

            if d.kind == "counter":
                add_sum()
            elif d.kind == "gauge":
                mode = family.d.mode
                if mode in SUM_MODES:
                    add_sum()
                else:
                    _combine_gauge(target, mode, _f(cells[0]), _f(cells[1]))
            elif d.kind == "histogram":
                n = len(d.bounds) + 1
                if len(target.buckets) < n:
                    target.buckets.extend([0] * (n - len(target.buckets)))
                for i in range(n):
                    target.buckets[i] = min(target.buckets[i] + cells[i], 0xFFFFFFFFFFFFFFFF)
                add_sum()
            else:
                target.count = min(target.count + cells[0], 0xFFFFFFFFFFFFFFFF)
                add_sum()
                if _w(d.relative_accuracy) != _w(family.d.relative_accuracy):
                    counters.unmerged_sketches += 1
                    continue
                _merge_slots(target, d, cells, self.now)

    def archive_bytes(self, absorbed: list[str]) -> bytes:
        out = bytearray(HEADER)  # written whole, then renamed into place: plain bytes
        _Q.pack_into(out, 0, MAGIC)
        _D.pack_into(out, OFF_CREATED, self.now)
        _Q.pack_into(out, OFF_FLAGS, FLAG_ARCHIVE)
        for index, family in enumerate(self.sorted_families()):
            d = FamilyDef(**{**family.d.__dict__, "id": index})
            out += family_record(d)
            for values in sorted(family.series):
                out += _archive_series(d, values, family.series[values])
        body = _I.pack(len(absorbed)) + b"".join(_string(name) for name in absorbed)
        out += _record(REC_ABSORBED, 0, body)
        _Q.pack_into(out, OFF_USED, len(out))
        return bytes(out)


def _combine_gauge(target: AggSeries, mode: str, value: float, stamp: float) -> None:
    if stamp <= 0.0:
        return
    current = target.gauge
    if current is None:
        replace = True
    elif mode in ("max", "livemax"):
        replace = value > current[0] or (math.isnan(current[0]) and not math.isnan(value))
    elif mode in ("min", "livemin"):
        replace = value < current[0] or (math.isnan(current[0]) and not math.isnan(value))
    else:
        replace = stamp > current[1]
    if replace:
        target.gauge = (value, stamp)


def _merge_slots(target: AggSeries, d: FamilyDef, cells: list[int], now: float) -> None:
    bins = slot_bins(d.max_bins)
    current = window_epoch(d, now)
    for slot in range(d.age_buckets):
        base = 3 + slot * (SLOT_HEADER + bins)
        parts = slot_parts(cells, base, bins, current, d.age_buckets)
        if parts is None:
            continue
        tag, count, zero, low, high, found = parts
        merged = target.slots.get(tag)
        if merged is None:
            merged = target.slots[tag] = Slot()
        if merged.count == 0:
            merged.min, merged.max = low, high
        else:
            merged.min = _fmin(merged.min, low)
            merged.max = _fmax(merged.max, high)
        merged.count += count
        merged.zero += zero
        for key, n in found.items():
            merged.bins[key] = merged.bins.get(key, 0) + n


def _fmin(a: float, b: float) -> float:
    """``f64::min``: a NaN operand yields the other one."""
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return min(a, b)


def _fmax(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


def collapse(bins: dict[int, int], cap: int) -> dict[int, int]:
    """Bins sorted by key, the lowest folded into the next beyond ``cap``."""
    keys = sorted(bins)
    cap = max(cap, 1)
    items = [(k, bins[k]) for k in keys]
    while len(items) > cap:
        _, lowest = items.pop(0)
        key, count = items[0]
        items[0] = (key, count + lowest)
    return dict(items)


def _archive_series(d: FamilyDef, values: tuple[str, ...], series: AggSeries) -> bytes:
    n_cells = d.cells()
    head, total = series_head(d.id, values, n_cells)
    cells = [0] * n_cells
    cells[created_index(d.kind, n_cells)] = _w(series.created)
    partials = True
    if d.kind == "counter":
        cells[0] = _w(series.sum())
    elif d.kind == "gauge":
        if d.mode in SUM_MODES:
            cells[0] = _w(series.sum())
        else:
            partials = False
            if series.gauge is not None:
                cells[0], cells[1] = _w(series.gauge[0]), _w(series.gauge[1])
    elif d.kind == "histogram":
        for i, count in enumerate(series.buckets):
            cells[i] = count
        cells[len(d.bounds) + 1] = _w(series.sum())
    else:
        cells[0] = series.count
        cells[1] = _w(series.sum())
        bins = slot_bins(d.max_bins)
        for tag in sorted(series.slots):
            slot = series.slots[tag]
            base = 3 + ((tag - 1) % d.age_buckets) * (SLOT_HEADER + bins)
            merged = collapse(slot.bins, bins)
            cells[base + 1] = tag
            cells[base + 2] = slot.count
            cells[base + 3] = slot.zero
            cells[base + 4] = _w(slot.min)
            cells[base + 5] = _w(slot.max)
            cells[base + 6] = len(merged)
            for i, (key, count) in enumerate(merged.items()):
                cells[base + SLOT_HEADER + i] = bin_word(key, min(count, 0xFFFFFFFF))
    record = bytearray(head)
    record += b"\0" * (total - len(record))
    struct.pack_into(f"={n_cells}Q", record, total - n_cells * 8, *cells)
    if partials:
        record += _Q.pack(len(series.partials))
        record += b"".join(_D.pack(p) for p in series.partials)
        _HEAD.pack_into(record, 0, len(record), REC_SERIES, SERIES_PARTIALS)
    return bytes(record)


# ---- directory operations ------------------------------------------------------------------


def _open_lock(directory: str) -> int:
    try:
        return os.open(os.path.join(directory, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise MultiprocessError(
            f'"{directory}": cannot open the directory lock: {error}'
        ) from error


def _writer_files(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except OSError as error:
        raise MultiprocessError(
            f'"{directory}": cannot list the multiprocess directory: {error}'
        ) from error
    return sorted(n for n in names if n.startswith("w-") and n.endswith(".db"))


def _map_and_parse(fd: int, counters: Counters) -> ParsedFile | None:
    for attempt in range(3):
        try:
            size = os.fstat(fd).st_size
            if size < HEADER:
                return None
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        except (OSError, ValueError):
            return None
        try:
            with read_words(mm) as words:
                # A writer that grew its file after our fstat may have published records
                # beyond this mapping: map it again at its new size (a file whose length
                # exceeds its size for good is unreadable).
                if attempt < 2 and words[W_USED] > size and _size(fd) > size:
                    continue
                return parse(mm, words, counters)
        finally:
            with contextlib.suppress(BufferError):  # see Chunk.close
                mm.close()
    return None


def _size(fd: int) -> int:
    try:
        return os.fstat(fd).st_size
    except OSError:
        return 0


def _read_file(path: str, counters: Counters) -> tuple[int, ParsedFile] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    parsed = _map_and_parse(fd, counters)
    if parsed is None:
        os.close(fd)
        counters.skipped_files += 1
        return None
    return fd, parsed


def _read_archive(directory: str, counters: Counters) -> ParsedFile | None:
    path = os.path.join(directory, ARCHIVE)
    if not os.path.exists(path):
        return None
    found = _read_file(path, counters)
    if found is None:
        return None
    os.close(found[0])
    found[1].name = ARCHIVE
    return found[1]


def _sort_files(files: list[ParsedFile]) -> None:
    files.sort(key=lambda f: (-f.created, f.name))


def scan(directory: str, now: float, counters: Counters) -> Aggregate:
    lock = _open_lock(directory)
    try:
        _flock(lock, fcntl.LOCK_SH)
        try:
            return _scan_locked(directory, now, counters)
        finally:
            _flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)


def _scan_locked(directory: str, now: float, counters: Counters) -> Aggregate:
    archive = _read_archive(directory, counters)
    absorbed = set(archive.absorbed) if archive is not None else set()
    files = []
    for name in _writer_files(directory):
        if name in absorbed:
            continue
        found = _read_file(os.path.join(directory, name), counters)
        if found is None:
            continue
        fd, parsed = found
        parsed.live = not writer_is_dead(fd)
        os.close(fd)
        parsed.name = name
        files.append(parsed)
    _sort_files(files)
    aggregate = Aggregate(now)
    for file in files:
        aggregate.add_file(file, counters)
    if archive is not None:
        aggregate.add_file(archive, counters)
    return aggregate


def compact(directory: str, now: float, counters: Counters) -> int:
    lock = _open_lock(directory)
    try:
        if not _flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB):
            return 0
        try:
            return _compact_locked(directory, now, counters)
        finally:
            _flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)


def _remove_stale_temporaries(directory: str, counters: Counters) -> None:
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        stale = False
        if name.startswith(".archive-") and name.endswith(".tmp"):
            stale = True
        elif name.startswith(".w-") and name.endswith(".tmp"):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            stale = writer_is_dead(fd)
            os.close(fd)
        if stale:
            try:
                os.unlink(path)
            except OSError:
                continue
            counters.repairs += 1


def _quarantine(directory: str, name: str) -> None:
    with contextlib.suppress(OSError):
        os.rename(os.path.join(directory, name), os.path.join(directory, f"corrupt-{name}"))


def _compact_locked(directory: str, now: float, counters: Counters) -> int:  # noqa: PLR0912, PLR0915
    _remove_stale_temporaries(directory, counters)
    archive_path = os.path.join(directory, ARCHIVE)
    archive = None
    if os.path.exists(archive_path):
        found = _read_file(archive_path, counters)
        if found is None:
            _quarantine(directory, ARCHIVE)
        else:
            os.close(found[0])
            archive = found[1]
    absorbed = set(archive.absorbed) if archive is not None else set()
    for name in sorted(absorbed):
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            continue
        counters.repairs += 1
    dead: list[ParsedFile] = []
    held: list[int] = []
    try:
        for name in _writer_files(directory):
            if name in absorbed:
                continue
            try:
                fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            if not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
                os.close(fd)
                continue
            held.append(fd)
            parsed = _map_and_parse(fd, counters)
            if parsed is None:
                counters.skipped_files += 1
                _quarantine(directory, name)
                continue
            parsed.name = name
            dead.append(parsed)
        if not dead:
            return 0
        _sort_files(dead)
        aggregate = Aggregate(now)
        for file in dead:
            aggregate.add_file(file, counters)
        if archive is not None:
            aggregate.add_file(archive, counters)
        names = [f.name for f in dead]
        data = aggregate.archive_bytes(names)
        tmp = os.path.join(directory, f".archive-{os.getpid()}-{nonce():016x}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                remaining = memoryview(data)
                while remaining:  # (a short write, as on a full disk, must not go unnoticed)
                    written = os.write(fd, remaining)
                    if written <= 0:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                    remaining = remaining[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, archive_path)
            dir_fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise MultiprocessError(f'"{directory}": cannot write the archive: {error}') from error
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
        counters.compactions += 1
        counters.compacted_files += len(names)
        return len(names)
    finally:
        for fd in held:
            os.close(fd)
