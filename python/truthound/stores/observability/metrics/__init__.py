"""Metrics pillar: counters, gauges, histograms and summaries; Prometheus exposition."""

from __future__ import annotations

__all__: list[str] = []
