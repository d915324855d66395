"""Metrics pillar: counters, gauges, histograms and summaries with Prometheus exposition.

The backends record into a native (Rust) core: lock-free atomic series, a sliding-window
DDSketch for summary quantiles, and Prometheus text 0.0.4 / OpenMetrics 1.0 encoders (the
pure-Python core produces the same bytes when the native one is unavailable).
"""

from __future__ import annotations

from . import multiprocess
from ._backend import InMemoryMetricsBackend, Metric, PrometheusMetricsBackend
from ._bridge import PrometheusClientCollector
from ._exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, prefers_openmetrics
from ._registry import MetricsRegistry
from ._store import STANDARD_METRICS, StoreMetrics
from ._values import HistogramValue, MetricType, MetricValue, SummaryValue

__all__ = [
    "OPENMETRICS_CONTENT_TYPE",
    "STANDARD_METRICS",
    "TEXT_CONTENT_TYPE",
    "HistogramValue",
    "InMemoryMetricsBackend",
    "Metric",
    "MetricType",
    "MetricValue",
    "MetricsRegistry",
    "PrometheusClientCollector",
    "PrometheusMetricsBackend",
    "StoreMetrics",
    "SummaryValue",
    "multiprocess",
    "prefers_openmetrics",
]
