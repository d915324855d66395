"""Strict W3C ``traceparent`` parsing in the core, proven identical on both cores."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from truthound.stores.observability import _core, _pure
from truthound.stores.observability.tracing import SpanContext

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (VALID, (0, TRACE, SPAN, 1)),
        (f"00-{TRACE}-{SPAN}-00", (0, TRACE, SPAN, 0)),
        (f" \t{VALID} ", (0, TRACE, SPAN, 1)),
        (f"cc-{TRACE}-{SPAN}-09-future", (0xCC, TRACE, SPAN, 9)),
        (f"00-{TRACE.upper()}-{SPAN}-01", None),
        (f"00-{'0' * 32}-{SPAN}-01", None),
        (f"00-{TRACE}-{'0' * 16}-01", None),
        (f"ff-{TRACE}-{SPAN}-01", None),
        (f"00-{TRACE}-{SPAN}-01-extra", None),
        (f"cc-{TRACE}-{SPAN}-01x", None),
        ("00-abc123def456-span789-01", None),  # the specification's placeholder ids
        ("", None),
    ],
)
def test_parse(header: str, expected: tuple[int, str, str, int] | None) -> None:
    assert _core.core.parse_traceparent(header) == expected


def test_span_context_round_trips_through_the_header() -> None:
    context = SpanContext.from_traceparent(VALID)
    assert context is not None
    assert (context.trace_id, context.span_id, context.trace_flags) == (TRACE, SPAN, 1)
    assert context.is_remote
    assert context.to_traceparent() == VALID
    assert SpanContext.from_traceparent(None) is None


@pytest.mark.only_core("native")
@given(st.text(alphabet="0123456789abcdefABCDEF- \tx", max_size=80) | st.text(max_size=80))
def test_native_and_pure_agree_on_any_input(header: str) -> None:
    """Equivalence is a property of the pair of cores, so it runs once."""
    from truthound.stores.observability import _native

    assert _native.parse_traceparent(header) == _pure.parse_traceparent(header)
