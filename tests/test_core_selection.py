"""Which core serves the documented API, and how the choice is made."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest

from truthound.stores.observability import _core, _pure, active_core


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )


def test_active_core_reports_the_core_in_use(core: str) -> None:
    assert active_core() == core


@pytest.mark.only_core("native")
def test_pure_core_mirrors_every_native_name() -> None:
    """Interface parity is a property of the pair of cores, so it is checked once."""
    from truthound.stores.observability import _native

    def public(module: object) -> set[str]:
        return {name for name in dir(module) if not name.startswith("_")}

    native_names = public(_native)
    pure_names = public(_pure) - {"audit", "metrics", "tracing", "annotations"}
    assert native_names == pure_names
    for name in native_names:
        assert callable(getattr(_pure, name)) == callable(getattr(_native, name)), name


@pytest.mark.only_core("native")
def test_native_is_the_default_when_it_can_be_imported() -> None:
    """Describes the default selection of the installed package, independent of the fixture."""
    result = _run_python(
        "from truthound.stores.observability import active_core; print(active_core())",
        TRUTHOUND_OBSERVABILITY_CORE="auto",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "native"


@pytest.mark.only_core("pure")
def test_environment_variable_forces_the_pure_core() -> None:
    """Describes process-level selection, independent of the fixture."""
    result = _run_python(
        "from truthound.stores.observability import active_core; print(active_core())",
        TRUTHOUND_OBSERVABILITY_CORE="pure",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "pure"


@pytest.mark.only_core("pure")
def test_missing_native_module_falls_back_to_pure_with_one_warning() -> None:
    """Simulates an installation without the extension module: the import must still work."""
    result = _run_python(
        """
        import sys, warnings
        sys.modules["truthound.stores.observability._native"] = None  # makes the import fail
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from truthound.stores.observability import active_core
            from truthound.stores.observability.tracing import SpanContext
        header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        assert SpanContext.from_traceparent(header).to_traceparent() == header
        print(active_core(), len([w for w in caught if w.category is RuntimeWarning]))
        """,
        TRUTHOUND_OBSERVABILITY_CORE="auto",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["pure", "1"]


@pytest.mark.only_core("pure")
def test_forcing_native_without_the_module_fails_loudly() -> None:
    """An explicit request for the native core must not silently measure the pure one."""
    result = _run_python(
        """
        import sys
        sys.modules["truthound.stores.observability._native"] = None
        import truthound.stores.observability
        """,
        TRUTHOUND_OBSERVABILITY_CORE="native",
    )
    assert result.returncode != 0
    assert "TRUTHOUND_OBSERVABILITY_CORE=native" in result.stderr


@pytest.mark.only_core("pure")
def test_an_unknown_core_name_is_rejected_by_name() -> None:
    """Process-level configuration error, independent of the fixture."""
    result = _run_python(
        "import truthound.stores.observability", TRUTHOUND_OBSERVABILITY_CORE="fastest"
    )
    assert result.returncode != 0
    assert "'fastest'" in result.stderr


def test_use_core_restores_the_previous_core(core: str) -> None:
    other = "pure" if core == "native" else "native"
    if other == "native" and not _core.native_available():
        pytest.skip("the native core is not importable in this environment")
    with _core.use_core(other):  # type: ignore[arg-type]
        assert active_core() == other
    assert active_core() == core


def test_core_functions_are_documented(core: str) -> None:
    for name in ("format_float", "parse_traceparent", "format_traceparent"):
        assert inspect.getdoc(getattr(_core.core, name)), name
