"""Fork safety of the Python layer, shared by the pillars.

After ``fork()`` only the forking thread exists in the child. A lock held by another thread at
that moment stays locked forever there, and threads the parent started (writers, timers,
delivery workers, HTTP endpoints) are gone. Pre-fork servers (gunicorn ``--preload``, uWSGI) and
``multiprocessing`` create objects in one process and use them in its children, so every object
of this package that owns a lock or a thread registers here:

- ``track(obj, *lock_names, forget=...)``: in a forked child, each named lock of ``obj`` is
  replaced by a fresh one (the data it guards is a few references, consistent at any bytecode
  boundary, which is where fork finds every other thread) and ``forget(obj)`` drops the state
  of threads that do not exist there (and, for delivery components, the records the parent
  still has in flight: the parent delivers those, once).
- ``at_exit(callback, *args)``: runs at interpreter exit *and* when a ``multiprocessing`` child
  finishes (those leave through ``os._exit``, skipping ``atexit``), once per process.

The hooks run inside ``os.fork()`` (``os.register_at_fork``), so they cover ``multiprocessing``,
``concurrent.futures`` and pre-fork servers alike; a fork made by C code that bypasses
``PyOS_AfterFork_Child`` is not seen. (The native core handles its own locks and threads in
Rust: see ``rust/fork.rs``.)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["at_exit", "track"]

_Entry = tuple[tuple[str, ...], Callable[[Any], None] | None, bool]
_tracked: weakref.WeakKeyDictionary[Any, _Entry] = weakref.WeakKeyDictionary()
_RLOCK_TYPE = type(threading.RLock())


def track(
    obj: Any,
    *lock_names: str,
    forget: Callable[[Any], None] | None = None,
    last: bool = False,
) -> None:
    """Re-creates ``obj``'s named locks, then calls ``forget(obj)``, in every forked child.

    Objects are handled in the order they were first tracked; with ``last=True`` after every
    object tracked without it (for an object that reads others once they are renewed).
    """
    _tracked[obj] = (lock_names, forget, last)


_exit_callbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
_exited = False
_multiprocessing_armed = False


def at_exit(callback: Callable[..., Any], *args: Any) -> None:
    """Runs ``callback(*args)`` when this process exits: at interpreter exit, and in a
    ``multiprocessing`` child (fork or forkserver) when its target returns. Callbacks run once
    per process, in the order they were registered; an exception is suppressed."""
    _exit_callbacks.append((callback, args))


def _run_exit_callbacks() -> None:
    global _exited
    if _exited:
        return
    _exited = True
    for callback, args in _exit_callbacks:
        with contextlib.suppress(Exception):
            callback(*args)


atexit.register(_run_exit_callbacks)


class _Token:
    """Keeps the ``multiprocessing`` after-fork registration alive (it holds a weak reference)."""


_TOKEN = _Token()


def _arm_exit_finalizer(_token: _Token) -> None:
    # Runs in a multiprocessing child, after its finalizer registry was cleared: its exit
    # function runs the finalizers registered from here on, never atexit.
    util = sys.modules["multiprocessing.util"]
    util.Finalize(None, _run_exit_callbacks, exitpriority=10)


def _arm_multiprocessing() -> None:
    global _multiprocessing_armed
    util = sys.modules.get("multiprocessing.util")
    if util is None or _multiprocessing_armed:
        return
    # Inherited by every later child of this one, like the registration itself.
    _multiprocessing_armed = True
    util.register_after_fork(_TOKEN, _arm_exit_finalizer)


def _after_fork_in_child() -> None:
    global _exited
    _exited = False
    entries = list(_tracked.items())
    for phase in (False, True):
        for obj, (names, forget, last) in entries:
            if last is not phase:
                continue
            for name in names:
                current = getattr(obj, name, None)
                setattr(
                    obj,
                    name,
                    threading.RLock() if type(current) is _RLOCK_TYPE else threading.Lock(),
                )
            if forget is not None:
                forget(obj)
    _arm_multiprocessing()


os.register_at_fork(after_in_child=_after_fork_in_child)
