"""Exposing our metrics through prometheus_client (its registry, ASGI or WSGI app)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, cast

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
        """The families the backend has now (names and types, no samples).

        prometheus_client's registry checks them for collisions when the collector is
        registered, so a prometheus_client ``Counter("app_req")`` next to our ``app_req`` is a
        ``ValueError`` (duplicated timeseries) instead of two HELP/TYPE blocks. Families
        created later are collected at every scrape all the same, and name filtering
        (``restricted_registry``, ``?name[]=``) reaches them too: the collector also enrols
        itself among the registry's collectors that are always asked (see ``_enrol``).
        """
        from prometheus_client.metrics_core import Metric

        described = [
            Metric(name, documentation, kind)
            for kind, name, documentation, _series in self.backend.collect()
        ]
        _enrol(self, described)
        return described

    def collect(self) -> Iterator[Any]:
        """One prometheus_client ``Metric`` per family, with every series as samples."""
        from prometheus_client.metrics_core import Metric
        from prometheus_client.samples import Exemplar
        from prometheus_client.utils import floatToGoString

        # prometheus_client's own label text for le/quantile ("1e+06", as Go writes it).
        label_float = cast("Callable[[float], str]", floatToGoString)

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
                            f"{name}_bucket",
                            {**base, "le": label_float(le)},
                            count,
                            exemplar=exemplar,
                        )
                    if not (pairs and pairs[0][0] < 0.0):
                        # With a negative bucket bound _sum is no counter: left out, with
                        # _count, as in our own OpenMetrics export.
                        metric.add_sample(f"{name}_count", base, value)
                        metric.add_sample(f"{name}_sum", base, total)
                    metric.add_sample(f"{name}_created", base, created)
                else:
                    for quantile, estimate in pairs:
                        metric.add_sample(
                            name, {**base, "quantile": label_float(quantile)}, estimate
                        )
                    metric.add_sample(f"{name}_count", base, value)
                    metric.add_sample(f"{name}_sum", base, total)
                    metric.add_sample(f"{name}_created", base, created)
            yield metric


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}


def _enrol(collector: PrometheusClientCollector, described: list[Any]) -> None:
    """When ``describe`` runs inside ``CollectorRegistry.register`` (which holds the registry's
    lock), adds the collector to the registry's collectors without names, which
    ``restricted_registry`` always asks (filtering their samples by name): families created
    after registration then pass name filters too. Not when the registration is about to fail
    on a duplicate; ``unregister`` removes it again. Best effort: prometheus_client internals
    that differ leave only the families described at registration reachable by filters."""
    try:
        from prometheus_client.registry import CollectorRegistry

        frame: FrameType | None = sys._getframe(2)
        registry = None
        for _ in range(3):
            if frame is None:
                break
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, CollectorRegistry) and frame.f_code.co_name == "register":
                registry = candidate
                break
            frame = frame.f_back
        if registry is None:
            return
        names = set()
        for metric in described:
            names.add(metric.name)
            names.update(metric.name + suffix for suffix in _SUFFIXES.get(metric.type, ()))
        if names & set(registry._names_to_collectors):
            return  # the registration raises DuplicateTimeseries
        without_names = registry._collectors_without_names
        if collector not in without_names:
            without_names.append(collector)
    except Exception:  # best effort over prometheus_client internals
        return
