"""The metric data model: types and the values that ``get``/``get_metrics`` return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = ["HistogramValue", "MetricType", "MetricValue", "SummaryValue"]


class MetricType(StrEnum):
    """The four Prometheus metric types (members equal their lower-case names)."""

    COUNTER = "counter"  #: Monotonically increasing counter
    GAUGE = "gauge"  #: Value that can go up or down
    HISTOGRAM = "histogram"  #: Distribution of values in cumulative buckets
    SUMMARY = "summary"  #: Count, sum and quantiles over a sliding window


def _label_key(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


@dataclass
class MetricValue:
    """One counter or gauge series: its exposed name, value and labels."""

    name: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=datetime.now)
    metric_type: MetricType = MetricType.GAUGE

    def label_key(self) -> str:
        """``""`` without labels, else ``k="v"`` pairs sorted by key, joined by commas."""
        return _label_key(self.labels)


@dataclass
class HistogramValue:
    """One histogram series: cumulative ``buckets`` maps upper bound to count (``inf`` last)."""

    name: str
    count: int
    sum: float
    buckets: dict[float, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=datetime.now)

    def label_key(self) -> str:
        """``""`` without labels, else ``k="v"`` pairs sorted by key, joined by commas."""
        return _label_key(self.labels)


@dataclass
class SummaryValue:
    """One summary series: all-time count and sum, quantiles over the sliding window."""

    name: str
    count: int
    sum: float
    quantiles: dict[float, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    timestamp: datetime = field(default_factory=datetime.now)

    def label_key(self) -> str:
        """``""`` without labels, else ``k="v"`` pairs sorted by key, joined by commas."""
        return _label_key(self.labels)
