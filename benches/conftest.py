"""Benchmark conventions.

Every benchmark belongs to a ``group`` (one workload) and names its implementation in
``benchmark.extra_info["impl"]``: ``native``, ``pure``, or the library a user would otherwise pick
(``prometheus_client``, ``opentelemetry-sdk``, ...). ``benches/table.py`` turns a run into the
README's table of medians and ratios. Run with ``make bench``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from truthound.stores.observability import _core


@pytest.fixture(params=["native", "pure"])
def core(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """The core under measurement; new objects are served by it."""
    if request.param == "native" and not _core.native_available():
        pytest.skip("the native core is not built")
    with _core.use_core(request.param) as module:
        yield module
