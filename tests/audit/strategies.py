"""Hypothesis strategies for audit events, metadata and text (shared by the audit tests)."""

from __future__ import annotations

from datetime import UTC

from hypothesis import strategies as st

from truthound.stores.observability.audit import AuditEvent, AuditEventType, AuditStatus

# Printable and control characters, quotes and backslashes, non-ASCII and astral characters.
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)

metadata_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)
    ),
    max_leaves=12,
)

metadata = st.dictionaries(text, metadata_values, max_size=5)

optional_text = st.one_of(st.none(), text)


@st.composite
def events(draw: st.DrawFn) -> AuditEvent:
    """Arbitrary events (finite durations, JSON-representable metadata)."""
    return AuditEvent(
        event_id=draw(st.uuids().map(str) | text),
        event_type=draw(st.sampled_from(list(AuditEventType))),
        timestamp=draw(st.datetimes(timezones=st.just(UTC))),
        status=draw(st.sampled_from(list(AuditStatus))),
        store_type=draw(text),
        store_id=draw(text),
        operation=draw(text),
        resource_type=draw(text),
        item_id=draw(optional_text),
        user_id=draw(optional_text),
        session_id=draw(optional_text),
        tenant_id=draw(optional_text),
        correlation_id=draw(optional_text),
        trace_id=draw(optional_text),
        span_id=draw(optional_text),
        ip_address=draw(optional_text),
        user_agent=draw(optional_text),
        duration_ms=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
        input_summary=draw(optional_text),
        output_summary=draw(optional_text),
        error_type=draw(optional_text),
        error_message=draw(optional_text),
        metadata=draw(metadata),
    )
