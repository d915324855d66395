"""Multiprocess mode: metrics that stay right under pre-fork servers (gunicorn, uWSGI,
``multiprocessing``).

Call :func:`enable` once in the parent process (a gunicorn config file, before
``multiprocessing`` starts workers), or pass ``MetricsConfig(multiprocess_dir=...)``. Every
backend created afterwards keeps its values in a memory-mapped file of one directory, and a
scrape (``export()``, the HTTP endpoint, ``get()``...) from any process aggregates every live
and dead process: counters and histograms summed, gauges by their ``multiprocess_mode``,
summaries' sketches merged. Dead processes' files are compacted into an archive at scrape time,
so a scrape costs the same after ten thousand worker restarts as after one, and counters never
go backwards.

No environment variable has to be set before import: :func:`enable` sets
``TRUTHOUND_METRICS_MULTIPROCESS_DIR`` itself so that children started with *spawn* (which
re-import the package) join the same directory automatically.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from enum import StrEnum
from pathlib import Path

from .. import _core
from ..errors import MultiprocessError

__all__ = [
    "ENV_VAR",
    "GaugeMode",
    "compact",
    "directory",
    "disable",
    "enable",
    "export",
    "is_enabled",
]

#: Set by :func:`enable` for child processes; read at import (spawned children join).
ENV_VAR = "TRUTHOUND_METRICS_MULTIPROCESS_DIR"


class GaugeMode(StrEnum):
    """How a gauge's values from several processes combine (``register(...,
    multiprocess_mode=)``). The ``live*`` modes ignore dead processes; the others keep a dead
    process's last value (compacted into the archive)."""

    SUM = "sum"
    MAX = "max"
    MIN = "min"
    LATEST = "latest"
    LIVE_SUM = "livesum"
    LIVE_MAX = "livemax"
    LIVE_MIN = "livemin"
    LIVE_LATEST = "livelatest"


_directory: Path | None = None
# (creator pid, directory) of every directory the library made: each is removed at exit by the
# process that made it (disable() then enable() makes a new one without forgetting the old).
_owned: list[tuple[int, Path]] = []


def _default_parent() -> str:
    shm = "/dev/shm"  # tmpfs: the shared pages never go to disk
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return tempfile.gettempdir()


def _remove_owned() -> None:
    for creator, made in _owned:
        if creator == os.getpid():
            shutil.rmtree(made, ignore_errors=True)


def enable(directory: str | os.PathLike[str] | None = None) -> Path:
    """Turns multiprocess mode on for backends created from now on; returns the directory.

    ``directory`` defaults to a new private directory (under ``/dev/shm`` when available) that
    this process removes at exit. A given directory is created if missing and kept: its values
    (and its archive of dead processes) continue across restarts until removed. Children
    inherit the mode (fork) or join through ``ENV_VAR`` (spawn).
    """
    global _directory
    try:
        if directory is None:
            if _directory is not None:
                return _directory
            made = Path(tempfile.mkdtemp(prefix="truthound-metrics-", dir=_default_parent()))
            if not _owned:
                atexit.register(_remove_owned)
            _owned.append((os.getpid(), made))
            chosen = made
        else:
            chosen = Path(directory).absolute()
            chosen.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MultiprocessError(
            f"{str(directory)!r}: cannot use it as the multiprocess directory: "
            f"{error.strerror or error}"
        ) from None
    _directory = chosen
    os.environ[ENV_VAR] = str(chosen)
    return chosen


def disable() -> None:
    """Backends created from now on are single-process again (existing ones are unchanged)."""
    global _directory
    _directory = None
    os.environ.pop(ENV_VAR, None)


def is_enabled() -> bool:
    """Whether new backends use multiprocess mode by default."""
    return _directory is not None


def directory() -> Path | None:
    """The directory new backends share, or ``None``."""
    return _directory


def compact(path: str | os.PathLike[str] | None = None) -> int:
    """Absorbs dead processes' files into the archive now (scrapes also do it); returns how
    many were absorbed (0 while another process is compacting)."""
    chosen = path if path is not None else _directory
    if chosen is None:
        return 0
    return int(_core.core.compact_directory(os.fspath(chosen)))


def export(path: str | os.PathLike[str] | None = None, openmetrics: bool = False) -> str:
    """The aggregated exposition of a directory, without a backend (a sidecar, a master)."""
    chosen = path if path is not None else _directory
    if chosen is None:
        raise ValueError("multiprocess mode is not enabled and no directory was given")
    return str(_core.core.encode_directory(os.fspath(chosen), openmetrics))


# A process started with the directory in its environment (a spawned worker) joins it.
with contextlib.suppress(OSError):
    if os.environ.get(ENV_VAR):
        enable(os.environ[ENV_VAR])
