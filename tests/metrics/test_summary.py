"""Summary quantiles: real quantiles within the stated error bound, over a sliding window."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from truthound.stores.observability.errors import InvalidMetricValueError
from truthound.stores.observability.metrics import InMemoryMetricsBackend, SummaryValue

QUANTILES = [0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0]


@given(
    st.lists(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False), min_size=1, max_size=500)
)
def test_quantiles_are_within_one_percent_of_the_exact_rank(observations: list[float]) -> None:
    """The documented bound: within 1% (relative) of the observation of rank floor(q(n-1));
    the minimum and maximum exactly."""
    backend = InMemoryMetricsBackend(prefix="", quantiles=QUANTILES)
    for value in observations:
        backend.summary("latency", value)
    summary = backend.get("latency")
    assert isinstance(summary, SummaryValue)
    ordered = sorted(observations)
    assert summary.count == len(observations)
    assert math.isclose(summary.sum, math.fsum(observations), rel_tol=1e-9)
    for q in QUANTILES:
        exact = ordered[math.floor(q * (len(ordered) - 1))]
        assert abs(summary.quantiles[q] - exact) <= 0.01 * exact * (1 + 1e-9), q
    assert summary.quantiles[0.0] == ordered[0]
    assert summary.quantiles[1.0] == ordered[-1]


def test_observations_leave_the_window_but_count_and_sum_stay(clock: Any) -> None:
    backend = InMemoryMetricsBackend(
        prefix="", summary_max_age_seconds=60.0, clock=clock, quantiles=[0.5]
    )
    for _ in range(100):
        backend.summary("latency", 10.0)
    clock.now += 30
    backend.summary("latency", 1.0)
    first = backend.get("latency")
    assert isinstance(first, SummaryValue)
    assert first.quantiles[0.5] == 10.0
    clock.now += 50  # the 100 observations are now 80 s old: outside the 60 s window
    second = backend.get("latency")
    assert isinstance(second, SummaryValue)
    assert second.quantiles[0.5] == 1.0
    assert (second.count, second.sum) == (101, 1001.0)  # _count and _sum are all-time
    clock.now += 3600
    empty = backend.get("latency")
    assert isinstance(empty, SummaryValue)
    assert math.isnan(empty.quantiles[0.5])
    assert 'latency{quantile="0.5"} NaN\n' in backend.export()


def test_memory_is_bounded_whatever_the_spread_of_values() -> None:
    """With values spanning 600 orders of magnitude, the sketch keeps at most max_bins bins;
    high quantiles stay accurate (only the lowest bins are merged)."""
    backend = InMemoryMetricsBackend(prefix="", quantiles=[0.99])
    values = [10.0**exponent for exponent in range(-300, 300)]
    for value in values:
        backend.summary("wide", value)
    summary = backend.get("wide")
    assert isinstance(summary, SummaryValue)
    exact = sorted(values)[math.floor(0.99 * (len(values) - 1))]
    assert abs(summary.quantiles[0.99] - exact) <= 0.01 * exact


def test_quantiles_merge_across_series() -> None:
    backend = InMemoryMetricsBackend(prefix="", quantiles=[0.5])
    for value in range(1, 51):
        backend.summary("latency", float(value), {"op": "read"})
    for value in range(51, 101):
        backend.summary("latency", float(value), {"op": "write"})
    merged = backend.get("latency")
    assert isinstance(merged, SummaryValue)
    assert merged.count == 100
    assert abs(merged.quantiles[0.5] - 50.0) <= 0.5


def test_an_infinite_observation_is_rejected_on_both_cores() -> None:
    """The quantile sketch has no bin for infinity and ``_sum`` would stay +Inf for good."""
    backend = InMemoryMetricsBackend(prefix="", quantiles=[0.5, 1.0])
    with pytest.raises(InvalidMetricValueError, match="latency"):
        backend.summary("latency", math.inf)
    assert backend.get("latency") is None
