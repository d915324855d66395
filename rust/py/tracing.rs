//! Python bindings of the tracing core.

use pyo3::prelude::*;

use crate::tracing::traceparent;

/// Strictly parses a W3C `traceparent` header.
///
/// Returns `(version, trace_id, span_id, flags)`, or `None` when the header is invalid.
#[pyfunction]
pub fn parse_traceparent(header: &str) -> Option<(u8, &str, &str, u8)> {
    traceparent::parse_traceparent(header).map(|p| (p.version, p.trace_id, p.span_id, p.flags))
}

/// Formats a version-00 `traceparent` header; the ids are written as given.
#[pyfunction]
pub fn format_traceparent(trace_id: &str, span_id: &str, flags: u8) -> String {
    traceparent::format_traceparent(trace_id, span_id, flags)
}
