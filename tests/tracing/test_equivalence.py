"""The native and pure cores agree on every input (hypothesis-generated).

Equivalence is a property of the pair of cores, so each test runs once (``only_core("native")``)
and calls both cores directly.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from truthound.stores.observability import _pure

pytestmark = pytest.mark.only_core("native")
relaxed = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def native() -> Any:
    from truthound.stores.observability import _native

    return _native


def outcome(call: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", call(*args)
    except Exception as error:  # both cores must fail the same way, with the same message
        return type(error).__name__, str(error)


KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-*/@A"
VALUE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F)) + "\t\u00e9"
members = st.lists(
    st.tuples(st.text(KEY_CHARS, max_size=12), st.text(VALUE_CHARS, max_size=12)), max_size=35
)


@relaxed
@given(
    st.text(KEY_CHARS + VALUE_CHARS + ", \t=", max_size=120)
    | st.text(max_size=60)
    | st.text(st.characters(blacklist_categories=()), max_size=60)  # lone surrogates too
)
def test_parse_tracestate(header: str) -> None:
    assert native().parse_tracestate(header) == _pure.parse_tracestate(header)


@relaxed
@given(members)
def test_format_tracestate(pairs: list[tuple[str, str]]) -> None:
    assert outcome(native().format_tracestate, pairs) == outcome(_pure.format_tracestate, pairs)


@relaxed
@given(
    st.text("0123456789abcdefA", max_size=34)
    | st.text(st.sampled_from("0123456789abcdef\ud800\udfff"), max_size=34)
)
def test_id_validation(text: str) -> None:
    assert native().is_valid_trace_id(text) == _pure.is_valid_trace_id(text)
    assert native().is_valid_span_id(text) == _pure.is_valid_span_id(text)


@relaxed
@given(
    st.text(max_size=34),
    st.text("0123456789abcdef", max_size=17),
    st.integers(0, 255),
)
def test_format_traceparent(trace_id: str, span_id: str, flags: int) -> None:
    assert outcome(native().format_traceparent, trace_id, span_id, flags) == outcome(
        _pure.format_traceparent, trace_id, span_id, flags
    )


tag_values = (
    st.text(max_size=20)
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.binary(max_size=10)
)
tags = st.lists(st.tuples(st.text(max_size=10), tag_values), max_size=5)
u64 = st.integers(0, 2**64 - 1)
spans = st.lists(
    st.tuples(
        st.integers(0, 2**128 - 1),
        u64,
        u64,
        st.text(max_size=20),
        st.integers(0, 255),
        st.integers(0, 2**62),
        st.integers(0, 2**40),
        st.lists(st.tuples(st.integers(0, 1), st.integers(0, 2**128 - 1), u64), max_size=3),
        tags,
        st.lists(st.tuples(st.integers(0, 2**62), tags), max_size=3),
    ),
    max_size=4,
)


@relaxed
@given(st.text(max_size=20), tags, spans)
def test_jaeger_batches_are_byte_identical(service: str, process: Any, batch: Any) -> None:
    assert native().encode_jaeger_batch(service, process, batch) == _pure.encode_jaeger_batch(
        service, process, batch
    )


def test_jaeger_rejects_unsupported_tag_values_the_same_way() -> None:
    bad = [("key.name", object())]
    assert outcome(native().encode_jaeger_batch, "s", bad, [])[0] == "InvalidArgumentError"
    assert outcome(native().encode_jaeger_batch, "s", bad, [])[1].startswith('"key.name"')
    assert outcome(_pure.encode_jaeger_batch, "s", bad, [])[1].startswith('"key.name"')


@relaxed
@given(
    st.text("0123456789abcdef-", max_size=60)
    | st.text(st.characters(blacklist_categories=()), max_size=60)  # lone surrogates too
)
def test_parse_traceparent(header: str) -> None:
    assert native().parse_traceparent(header) == _pure.parse_traceparent(header)
