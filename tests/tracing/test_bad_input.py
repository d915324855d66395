"""Bad input to the tracing API is rejected with an error that names the argument (and, for a
choice, the choices), never with an unrelated TypeError or a config field the caller did not
write."""

from __future__ import annotations

import pytest

from truthound.stores.observability.errors import InvalidArgumentError, InvalidArgumentTypeError
from truthound.stores.observability.tracing import (
    InMemoryTracer,
    SpanContext,
    SpanKind,
    SpanStatus,
    TraceIdRatioSampler,
    Tracer,
    make_sampler,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


@pytest.mark.parametrize("flags", ["1", 1.0, None, b"\x01"])
def test_trace_flags_of_the_wrong_type_are_named(flags: object) -> None:
    with pytest.raises(InvalidArgumentTypeError, match=r"trace_flags=.*must be an int"):
        SpanContext(TRACE_ID, SPAN_ID, trace_flags=flags)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentTypeError, match="trace_flags"):
        SpanContext.generate(trace_flags=flags)  # type: ignore[arg-type]


def test_trace_flags_type_error_is_also_a_type_error() -> None:
    with pytest.raises(TypeError):
        SpanContext(TRACE_ID, SPAN_ID, trace_flags="1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("enum_type", "value"),
    [(SpanKind, "bogus"), (SpanKind, "SERVER "), (SpanKind, 3), (SpanStatus, "fine")],
)
def test_an_unknown_kind_or_status_names_the_value_and_the_choices(
    enum_type: type[SpanKind] | type[SpanStatus], value: object
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        enum_type(value)
    message = str(caught.value)
    assert repr(value) in message
    for member in enum_type:
        assert repr(member.value) in message


def test_span_kind_through_start_span_is_named() -> None:
    tracer = InMemoryTracer()
    with pytest.raises(InvalidArgumentError, match=r"'bogus'.*'internal'"):
        tracer.start_span("op", kind="bogus")
    assert SpanKind("client") is SpanKind.CLIENT  # valid values still work


def test_an_unknown_exporter_type_names_exporter_type() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        Tracer.create(exporter_type="bogus")
    message = str(caught.value)
    assert message.startswith("exporter_type='bogus'")
    assert "TracingConfig" not in message
    for choice in ("otlp", "jaeger", "zipkin", "console", "memory", "noop"):
        assert repr(choice) in message


@pytest.mark.parametrize("ratio", [2, -0.1, 1.5, float("nan"), float("inf")])
@pytest.mark.parametrize("sampler", ["ratio", "parent_based", "always_on"])
def test_a_sample_ratio_outside_0_to_1_is_rejected_whatever_the_sampler(
    sampler: str, ratio: float
) -> None:
    with pytest.raises(InvalidArgumentError, match=r"sample_ratio=.*between 0 and 1"):
        InMemoryTracer(sampler=sampler, sample_ratio=ratio)
    with pytest.raises(InvalidArgumentError, match="sample_ratio"):
        make_sampler(sampler, ratio)


@pytest.mark.parametrize("ratio", ["0.5", True, [0.5]])
def test_a_sample_ratio_that_is_not_a_number_is_named(ratio: object) -> None:
    with pytest.raises(InvalidArgumentTypeError, match="sample_ratio"):
        InMemoryTracer(sampler="ratio", sample_ratio=ratio)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentTypeError, match="sample_ratio"):
        TraceIdRatioSampler(ratio)  # type: ignore[arg-type]
    # ``None`` means "the config's ratio" for a tracer, but is no ratio for a sampler.
    with pytest.raises(InvalidArgumentTypeError, match="sample_ratio"):
        TraceIdRatioSampler(None)  # type: ignore[arg-type]


def test_boundary_ratios_are_accepted() -> None:
    assert InMemoryTracer(sampler="ratio", sample_ratio=0).sampler is not None
    assert InMemoryTracer(sampler="ratio", sample_ratio=1).sampler is not None
