"""Exposing our metrics through prometheus_client (its registry, ASGI or WSGI app)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import _core

__all__ = ["PrometheusClientCollector"]


class PrometheusClientCollector:
    """A prometheus_client collector that reads a backend at every scrape.

    ``prometheus_client.REGISTRY.register(PrometheusClientCollector(backend))`` makes our
    metrics part of prometheus_client's ``generate_latest``, ``make_asgi_app`` and
    ``make_wsgi_app`` output, exemplars included. prometheus_client is imported lazily: it is
    only needed when this class is used.
    """

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def describe(self) -> list[Any]:
        """Nothing up front: our metrics appear as they are recorded."""
        return []

    def collect(self) -> Iterator[Any]:
        """One prometheus_client ``Metric`` per family, with every series as samples."""
        from prometheus_client.metrics_core import Metric
        from prometheus_client.samples import Exemplar

        fmt = _core.core.format_float
        for kind, name, documentation, series_list in self.backend.collect():
            metric = Metric(name, documentation, kind)
            for labels, value, total, pairs, created, exemplars in series_list:
                base = dict(labels)
                if kind == "counter":
                    metric.add_sample(f"{name}_total", base, value)
                    metric.add_sample(f"{name}_created", base, created)
                elif kind == "gauge":
                    metric.add_sample(name, base, value)
                elif kind == "histogram":
                    by_le = {le: (dict(lbl), v, ts) for le, lbl, v, ts in exemplars}
                    for le, count in pairs:
                        exemplar = None
                        if le in by_le:
                            exemplar = Exemplar(*by_le[le])
                        metric.add_sample(
                            f"{name}_bucket", {**base, "le": fmt(le)}, count, exemplar=exemplar
                        )
                    metric.add_sample(f"{name}_count", base, value)
                    metric.add_sample(f"{name}_sum", base, total)
                    metric.add_sample(f"{name}_created", base, created)
                else:
                    for quantile, estimate in pairs:
                        metric.add_sample(name, {**base, "quantile": fmt(quantile)}, estimate)
                    metric.add_sample(f"{name}_count", base, value)
                    metric.add_sample(f"{name}_sum", base, total)
                    metric.add_sample(f"{name}_created", base, created)
            yield metric
