//! Python bindings of the tracing core.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

use crate::error::{Error, ErrorKind};
use crate::tracing::jaeger::{self, Log, SpanRef, Tag, TagValue};
use crate::tracing::{ids, traceparent, tracestate};

/// Strictly parses a W3C `traceparent` header.
///
/// Returns `(version, trace_id, span_id, flags)`, or `None` when the header is invalid
/// (including text that is not valid Unicode, such as a lone surrogate).
#[pyfunction]
pub fn parse_traceparent<'a>(
    header: &'a Bound<'_, PyString>,
) -> Option<(u8, &'a str, &'a str, u8)> {
    let header = utf8(header)?;
    traceparent::parse_traceparent(header).map(|p| (p.version, p.trace_id, p.span_id, p.flags))
}

/// The text of a Python string, or `None` when it cannot be UTF-8 (a lone surrogate): such
/// text is never a valid header or id, so the parsers and checks answer "invalid" for it.
fn utf8<'a>(text: &'a Bound<'_, PyString>) -> Option<&'a str> {
    text.to_str().ok()
}

/// Formats a version-00 `traceparent` header.
///
/// Raises `InvalidArgumentError` naming the id when an id is not a valid W3C id (an invalid
/// header is never produced), and `OverflowError` when `flags` does not fit in one byte.
#[pyfunction]
pub fn format_traceparent(trace_id: &str, span_id: &str, flags: u8) -> PyResult<String> {
    Ok(traceparent::format_traceparent(trace_id, span_id, flags)?)
}

/// Whether `trace_id` is 32 lowercase hex digits, not all zeros.
#[pyfunction]
pub fn is_valid_trace_id(trace_id: &Bound<'_, PyString>) -> bool {
    utf8(trace_id).is_some_and(traceparent::is_valid_trace_id)
}

/// Whether `span_id` is 16 lowercase hex digits, not all zeros.
#[pyfunction]
pub fn is_valid_span_id(span_id: &Bound<'_, PyString>) -> bool {
    utf8(span_id).is_some_and(traceparent::is_valid_span_id)
}

/// A new random trace id: 32 lowercase hex digits, never all zeros.
#[pyfunction]
pub fn generate_trace_id(py: Python<'_>) -> Bound<'_, PyString> {
    let hex = ids::trace_id_hex();
    // The digits are ASCII by construction.
    PyString::new(py, std::str::from_utf8(&hex).expect("ascii hex"))
}

/// A new random span id: 16 lowercase hex digits, never all zeros.
#[pyfunction]
pub fn generate_span_id(py: Python<'_>) -> Bound<'_, PyString> {
    let hex = ids::span_id_hex();
    PyString::new(py, std::str::from_utf8(&hex).expect("ascii hex"))
}

/// Draws a fresh OS seed before the next id, in every thread (call in a forked child).
#[pyfunction]
pub fn reseed_ids() {
    ids::reseed_after_fork();
}

/// Strictly parses a `tracestate` header (several headers joined with `,`).
///
/// Returns the `(key, value)` members, leftmost first, or `None` when the header is invalid
/// (including text that is not valid Unicode, such as a lone surrogate).
#[pyfunction]
pub fn parse_tracestate<'a>(header: &'a Bound<'_, PyString>) -> Option<Vec<(&'a str, &'a str)>> {
    tracestate::parse_tracestate(utf8(header)?)
}

/// Formats `(key, value)` members as a `tracestate` header value.
///
/// Raises `InvalidArgumentError` naming the offending key or member (invalid key or value,
/// duplicate key, more than 32 members).
#[pyfunction]
pub fn format_tracestate(members: Vec<(String, String)>) -> PyResult<String> {
    Ok(tracestate::format_tracestate(&members)?)
}

fn tag(key: String, value: &Bound<'_, PyAny>) -> PyResult<Tag> {
    let value = if value.is_instance_of::<PyBool>() {
        TagValue::Bool(value.extract()?)
    } else if value.is_instance_of::<PyInt>() {
        match value.extract::<i64>() {
            Ok(long) => TagValue::Long(long),
            Err(_) => TagValue::Str(value.str()?.to_str()?.to_owned()),
        }
    } else if value.is_instance_of::<PyFloat>() {
        TagValue::Double(value.extract()?)
    } else if let Ok(text) = value.cast::<PyString>() {
        TagValue::Str(text.to_str()?.to_owned())
    } else if let Ok(bytes) = value.cast::<PyBytes>() {
        TagValue::Binary(bytes.as_bytes().to_vec())
    } else {
        let type_name = value.get_type().name()?.to_string();
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            crate::tracing::printable(&key),
            format!("unsupported Jaeger tag value type {type_name} (str, bool, int, float, bytes)"),
        )
        .into());
    };
    Ok(Tag { key, value })
}

fn tags(pairs: Vec<(String, Bound<'_, PyAny>)>) -> PyResult<Vec<Tag>> {
    pairs.into_iter().map(|(k, v)| tag(k, &v)).collect()
}

/// One span as handed to [`encode_jaeger_batch`].
type SpanTuple<'py> = (
    u128,
    u64,
    u64,
    String,
    i32,
    i64,
    i64,
    Vec<(i32, u128, u64)>,
    Vec<(String, Bound<'py, PyAny>)>,
    Vec<(i64, Vec<(String, Bound<'py, PyAny>)>)>,
);

/// Encodes a Jaeger Thrift `Batch` with the binary protocol (for `POST /api/traces`).
///
/// `process_tags` and each span's tags are `(key, value)` pairs whose value is str, bool, int,
/// float or bytes (an int outside i64 becomes its decimal string). Each span is
/// `(trace_id, span_id, parent_span_id or 0, operation_name, flags, start_us, duration_us,
/// references [(ref_type, trace_id, span_id)], tags, logs [(timestamp_us, fields)])`.
#[pyfunction]
pub fn encode_jaeger_batch<'py>(
    py: Python<'py>,
    service_name: String,
    process_tags: Vec<(String, Bound<'py, PyAny>)>,
    spans: Vec<SpanTuple<'py>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let process_tags = tags(process_tags)?;
    let mut owned = Vec::with_capacity(spans.len());
    for (trace_id, span_id, parent, name, flags, start, duration, refs, span_tags, logs) in spans {
        owned.push(jaeger::Span {
            trace_id,
            span_id,
            parent_span_id: parent,
            operation_name: name,
            references: refs
                .into_iter()
                .map(|(ref_type, trace_id, span_id)| SpanRef {
                    ref_type,
                    trace_id,
                    span_id,
                })
                .collect(),
            flags,
            start_time_us: start,
            duration_us: duration,
            tags: tags(span_tags)?,
            logs: logs
                .into_iter()
                .map(|(timestamp_us, fields)| {
                    Ok(Log {
                        timestamp_us,
                        fields: tags(fields)?,
                    })
                })
                .collect::<PyResult<_>>()?,
        });
    }
    let encoded = py.detach(|| jaeger::encode_batch(&service_name, &process_tags, &owned));
    Ok(PyBytes::new(py, &encoded))
}
