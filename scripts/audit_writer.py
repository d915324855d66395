"""Test helper: a separate process that writes audit events (used by tests/audit).

    python scripts/audit_writer.py MODE DIRECTORY TAG COUNT [MAX_FILE_SIZE_MB]

The core is chosen with TRUTHOUND_OBSERVABILITY_CORE. Event ids are ``TAG-<n>``. Modes:

- ``sync-ack``: JsonAuditBackend with ``durability="always"``; after each ``log`` returns, the id
  is appended to ``DIRECTORY/TAG.ack`` (the events acknowledged to the caller). Runs until killed
  when COUNT is 0.
- ``async``: AsyncAuditBackend over a JsonAuditBackend, large batches, until killed / COUNT.
- ``slow-raw``: a foreign writer that appends records to the active JSON file one byte per
  ``write`` (so a SIGKILL almost surely leaves a torn tail), until killed / COUNT.
- ``file``: FileAuditBackend (size rotation at MAX_FILE_SIZE_MB, no pruning), COUNT events.
- ``async-exit``: COUNT events through AsyncAuditBackend(JsonAuditBackend) and exit without
  ``close()``: the atexit hook must persist them.
- ``async-python-exit``: the same with a Python backend that appends lines to a file.
- ``chained``: a tamper-evident JsonAuditBackend (key from ``TRUTHOUND_AUDIT_KEY``, size
  rotation at MAX_FILE_SIZE_MB, gzip of closed segments), COUNT events, or until killed when
  COUNT is 0; closes cleanly when COUNT is reached.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from pathlib import Path

from truthound.stores.observability.audit import (
    AsyncAuditBackend,
    AuditEvent,
    FileAuditBackend,
    JsonAuditBackend,
)


class LineBackend:
    """A plain Python backend (delivered to from the writer thread)."""

    def __init__(self, path: Path) -> None:
        self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def log(self, event: AuditEvent) -> None:
        self._handle.write(event.event_id + "\n")

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def main() -> None:  # noqa: PLR0912 - one branch per mode
    mode, directory, tag, count = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    size = float(sys.argv[5]) if len(sys.argv) > 5 else None
    numbers = itertools.count() if count == 0 else range(count)
    if mode == "sync-ack":
        backend = JsonAuditBackend(directory=directory, durability="always")
        ack = os.open(directory / f"{tag}.ack", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for i in numbers:
            event_id = f"{tag}-{i}"
            backend.log(AuditEvent(event_id=event_id, metadata={"payload": "x" * (i % 700)}))
            os.write(ack, f"{event_id}\n".encode())
    elif mode == "async":
        backend = AsyncAuditBackend(
            JsonAuditBackend(directory=directory, durability="none"), queue_size=50_000
        )
        for i in numbers:
            # Every 100th record is large, so batches span many pages and a SIGKILL can land in
            # the middle of a write (the kernel then stops it short: a torn tail).
            size = 100_000 if i % 100 == 0 else i % 300
            backend.log(AuditEvent(event_id=f"{tag}-{i}", metadata={"payload": "y" * size}))
    elif mode == "slow-raw":
        active = JsonAuditBackend(directory=directory).active_path
        fd = os.open(active, os.O_WRONLY | os.O_APPEND)
        for i in numbers:
            record = AuditEvent(event_id=f"{tag}-{i}").to_dict()
            line = json.dumps({k: v for k, v in record.items() if v is not None}) + "\n"
            for byte in line.encode():
                os.write(fd, bytes([byte]))
    elif mode == "file":
        backend = FileAuditBackend(
            file_path=directory / "audit.log", max_file_size_mb=size, max_files=None
        )
        for i in numbers:
            backend.log(AuditEvent(event_id=f"{tag}-{i}"))
        backend.close()
    elif mode == "async-exit":
        backend = AsyncAuditBackend(JsonAuditBackend(directory=directory), queue_size=1000)
        for i in numbers:
            backend.log(AuditEvent(event_id=f"{tag}-{i}"))
    elif mode == "async-python-exit":
        backend = AsyncAuditBackend(LineBackend(directory / "python.log"), queue_size=1000)
        for i in numbers:
            backend.log(AuditEvent(event_id=f"{tag}-{i}"))
    elif mode == "chained":
        backend = JsonAuditBackend(
            directory=directory,
            rotate_daily=False,
            max_file_size_mb=size,
            compress=True,
            durability="none",
            integrity_key_env="TRUTHOUND_AUDIT_KEY",
        )
        for i in numbers:
            backend.log(AuditEvent(event_id=f"{tag}-{i}", metadata={"payload": "c" * (i % 200)}))
        backend.close()
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
