"""Calls bounded by a timeout, shared by the pillars.

A call that may hang (a custom audit backend on a stuck mount, an exporter facing a black-holed
collector) runs on a daemon thread while the caller waits at most the timeout. ``Worker`` keeps
one such thread and feeds it calls in order, so repeated calls (a health probe per operation, a
delivery per event) cost a queue hand-off, not a thread start. ``call_with_timeout`` is the
one-off form (flush, shutdown, interpreter exit).

A call that times out keeps running in the background (Python threads cannot be cancelled); its
worker reports ``hung()`` until it returns, so callers can skip it instead of queueing more work
behind it. A worker inherited across ``fork()`` has no thread in the child: it starts a fresh
one (with an empty queue) on its first call there.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from . import _fork

__all__ = ["Outcome", "Worker", "call_with_timeout"]


class Outcome(NamedTuple):
    """What became of a bounded call."""

    #: The call finished (returned or raised) within the timeout.
    finished: bool
    #: Its return value, or ``None``.
    value: Any = None
    #: The exception it raised, or ``None``.
    error: BaseException | None = None

    @property
    def succeeded(self) -> bool:
        """Finished in time, without raising, and did not return ``False``."""
        return self.finished and self.error is None and self.value is not False


class _Call:
    __slots__ = ("done", "function", "outcome")

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function
        self.done = threading.Event()
        self.outcome = Outcome(False)

    def wait(self, timeout: float) -> Outcome:
        return self.outcome if self.done.wait(max(timeout, 0.0)) else Outcome(False)


class Worker:
    """A daemon thread running submitted calls one after another."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._pid = -1
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._started: float | None = None
        _fork.track(self, "_lock")

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            # First call, or the first in a forked child (the parent's thread is not here).
            self._calls = queue.SimpleQueue()
            self._started = None
            threading.Thread(
                target=self._run, args=(self._calls,), name=self.name, daemon=True
            ).start()
            self._pid = pid

    def _run(self, calls: queue.SimpleQueue[_Call | None]) -> None:
        while True:
            call = calls.get()
            if call is None:
                return
            self._started = time.monotonic()
            try:
                call.outcome = Outcome(True, call.function())
            except Exception as error:
                call.outcome = Outcome(True, None, error)
            finally:
                self._started = None
                call.done.set()

    def submit(self, function: Callable[[], Any]) -> _Call:
        """Queues ``function``; ``.wait(timeout)`` on the result gives its ``Outcome``."""
        self._ensure_thread()
        call = _Call(function)
        self._calls.put(call)
        return call

    def run(self, function: Callable[[], Any], timeout: float) -> Outcome:
        """Runs ``function`` on the worker, waiting at most ``timeout`` seconds."""
        return self.submit(function).wait(timeout)

    def hung(self, timeout: float) -> bool:
        """Whether a call has been running for longer than ``timeout`` seconds."""
        started = self._started
        return (
            started is not None
            and self._pid == os.getpid()
            and time.monotonic() - started > timeout
        )

    def stop(self) -> None:
        """Lets the thread exit once the calls queued before this one are done."""
        if self._pid == os.getpid():
            self._calls.put(None)


def call_with_timeout(function: Callable[[], Any], timeout: float, name: str) -> Outcome:
    """Runs ``function`` once on a new daemon thread named ``name``, waiting at most
    ``timeout`` seconds (it keeps running in the background if it does not finish)."""
    worker = Worker(name)
    try:
        return worker.run(function, timeout)
    finally:
        worker.stop()
