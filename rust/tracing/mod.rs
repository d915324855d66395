//! Tracing pillar: W3C Trace Context parsing/formatting, id generation, span timing.

pub mod traceparent;
