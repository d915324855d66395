"""Foundation workloads: traceparent parsing and float formatting, each core vs the anchors."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from support import label

HEADER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_parse_traceparent(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "validated traceparent parse", core.CORE_NAME)
    assert benchmark(core.parse_traceparent, HEADER) is not None


def test_parse_traceparent_opentelemetry(benchmark: Any) -> None:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    label(benchmark, "validated traceparent parse", "opentelemetry-sdk")
    propagator = TraceContextTextMapPropagator()
    assert benchmark(propagator.extract, {"traceparent": HEADER})


def test_format_float(benchmark: Any, core: ModuleType) -> None:
    label(benchmark, "format a sample value", core.CORE_NAME)
    assert benchmark(core.format_float, 0.0125) == "0.0125"


def test_format_float_prometheus_client(benchmark: Any) -> None:
    from prometheus_client.utils import floatToGoString

    label(benchmark, "format a sample value", "prometheus_client")
    assert benchmark(floatToGoString, 0.0125) == "0.0125"
