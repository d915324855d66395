//! Tracing pillar: W3C Trace Context parsing/formatting (`traceparent`, `tracestate`), id
//! generation, and the Jaeger Thrift encoding of exported spans.

use std::fmt::Write as _;

pub mod ids;
pub mod jaeger;
pub mod traceparent;
pub mod tracestate;

/// An offending item as it appears in an error message: characters outside printable ASCII become
/// `\u{hex}`, so both cores quote untrusted header text identically (and terminals stay safe).
#[must_use]
pub fn printable(item: &str) -> String {
    let mut out = String::with_capacity(item.len());
    for c in item.chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    out
}
