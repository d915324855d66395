"""Helpers shared by the benchmark modules."""

from __future__ import annotations


def label(benchmark: object, group: str, impl: str) -> None:
    """Files a benchmark under its workload and implementation for the comparison table."""
    benchmark.group = group  # type: ignore[attr-defined]
    benchmark.extra_info["impl"] = impl  # type: ignore[attr-defined]
