"""Collect hooks: values computed on demand are refreshed before every whole-registry read."""

from __future__ import annotations

from truthound.stores.observability.metrics import InMemoryMetricsBackend, PrometheusMetricsBackend


def test_collect_hooks_refresh_on_demand_values_before_every_read() -> None:
    backend = PrometheusMetricsBackend(prefix="")
    reads: list[int] = []

    def refresh() -> None:
        reads.append(1)
        backend.gauge("queue_depth", float(len(reads)))

    backend.add_collect_hook(refresh)
    assert "queue_depth 1.0" in backend.export()
    assert any(v.name == "queue_depth" and v.value == 2.0 for v in backend.get_metrics())
    assert backend.collect()
    assert len(reads) == 3


def test_a_failing_collect_hook_is_counted_and_does_not_break_the_read() -> None:
    backend = InMemoryMetricsBackend(prefix="")
    backend.increment("ops_total")

    def broken() -> None:
        raise RuntimeError("hook bug")

    backend.add_collect_hook(broken)
    assert "ops_total 1.0" in backend.export()
    assert backend.collect_hook_failures == 1
