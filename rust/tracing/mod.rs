//! Tracing pillar: W3C Trace Context parsing/formatting (`traceparent`, `tracestate`), id
//! generation, and the Jaeger Thrift encoding of exported spans.

pub mod ids;
pub mod jaeger;
pub mod traceparent;
pub mod tracestate;
