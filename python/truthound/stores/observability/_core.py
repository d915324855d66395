"""The one place that decides which core serves the documented classes.

The native core (``_native``, Rust) is used by default. The pure-Python core (``_pure``) mirrors
its interface one to one and is used when the native module cannot be imported (with one
``RuntimeWarning``; the import never fails) or when ``TRUTHOUND_OBSERVABILITY_CORE=pure`` is set.
``TRUTHOUND_OBSERVABILITY_CORE=native`` insists on the native core and fails loudly without it.

Documented classes capture ``core`` when an object is constructed; module-level helpers read it at
call time. ``use_core()`` switches it temporarily (tests and benchmarks run both cores that way).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Literal

__all__ = ["CORE_ENV_VAR", "CoreName", "active_core", "core", "native_available", "use_core"]

CoreName = Literal["native", "pure"]

#: Environment variable that forces a core: ``pure``, ``native`` or ``auto`` (the default).
CORE_ENV_VAR = "TRUTHOUND_OBSERVABILITY_CORE"


def _import_native() -> tuple[ModuleType | None, BaseException | None]:
    try:
        return importlib.import_module(f"{__package__}._native"), None
    except ImportError as error:
        return None, error


def _import_pure() -> ModuleType:
    from . import _pure

    return _pure


_native_module, _native_import_error = _import_native()


def native_available() -> bool:
    """Whether the native extension module could be imported."""
    return _native_module is not None


def _select(requested: str) -> ModuleType:
    choice = requested.strip().lower() or "auto"
    if choice == "pure":
        return _import_pure()
    if choice == "native":
        if _native_module is None:
            raise ImportError(
                f"{CORE_ENV_VAR}=native but the native core cannot be imported: "
                f"{_native_import_error}"
            )
        return _native_module
    if choice != "auto":
        raise ValueError(f"{CORE_ENV_VAR}={requested!r} is not one of 'native', 'pure' or 'auto'")
    if _native_module is None:
        warnings.warn(
            "truthound.stores.observability: the native core could not be imported "
            f"({_native_import_error}); using the slower pure-Python core",
            RuntimeWarning,
            stacklevel=2,
        )
        return _import_pure()
    return _native_module


if TYPE_CHECKING:
    # Both cores implement the interface described by `_native.pyi`; stubtest checks the native
    # module against it and tests/test_core_selection.py checks that `_pure` mirrors it.
    from . import _native as core
else:
    core = _select(os.environ.get(CORE_ENV_VAR, "auto"))


def active_core() -> CoreName:
    """Which core serves newly created objects: ``"native"`` or ``"pure"``."""
    name: CoreName = core.CORE_NAME
    return name


@contextmanager
def use_core(name: CoreName) -> Iterator[ModuleType]:
    """Temporarily serve new objects from the named core (for tests and benchmarks)."""
    global core
    selected = _import_pure() if name == "pure" else _select("native")
    previous = core
    core = selected
    try:
        yield selected
    finally:
        core = previous
