"""Fork safety of the Python layer: locks and thread-owned state are not inherited broken.

A lock held by another thread when the process forks stays locked forever in the child (that
thread does not exist there). Objects of this package register the names of their locks here;
the child re-creates them (the data they guard is a few references, consistent at any bytecode
boundary). Objects that own threads (the HTTP endpoint, the periodic push) also register a
``forget`` callback: the child drops those threads' state instead of waiting on threads that
do not exist. (The cores handle their own locks: a fork gate in Rust, one lock in Python.)
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["track"]

_tracked: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], Callable[[Any], None] | None]]
_tracked = weakref.WeakKeyDictionary()


def track(obj: Any, *lock_names: str, forget: Callable[[Any], None] | None = None) -> None:
    """Re-creates ``obj``'s named locks, and calls ``forget(obj)``, in a forked child."""
    _tracked[obj] = (lock_names, forget)


def _after_fork_in_child() -> None:
    for obj, (names, forget) in list(_tracked.items()):
        for name in names:
            current = getattr(obj, name, None)
            fresh = (
                threading.RLock() if type(current) is type(threading.RLock()) else threading.Lock()
            )
            setattr(obj, name, fresh)
        if forget is not None:
            forget(obj)


os.register_at_fork(after_in_child=_after_fork_in_child)
