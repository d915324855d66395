"""Every behavioural test runs once per core: native (Rust) and pure Python.

A test that is meaningful for one core only says so with ``@pytest.mark.only_core("native")``
and explains why in its docstring. When the native module is not built, the native runs skip and
the pure runs still execute (CI fails earlier, in ``make install-test``, if native is missing).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from truthound.stores.observability import _core


@pytest.fixture(autouse=True, params=["native", "pure"])
def core(request: pytest.FixtureRequest) -> Iterator[str]:
    """The core that serves objects created during this test."""
    name = request.param
    marker = request.node.get_closest_marker("only_core")
    if marker is not None and name not in marker.args:
        pytest.skip(f"only meaningful on the {', '.join(marker.args)} core")
    if name == "native" and not _core.native_available():
        pytest.skip("the native core is not importable in this environment")
    with _core.use_core(name):
        yield name


# CI machines have two busy cores: judge examples by behaviour, never by how long they took
# (neither by a deadline nor by the "generation is slow" health check).
settings.register_profile(
    "default",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("default")
