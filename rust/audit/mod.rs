//! Audit pillar: redaction, the async ring buffer and its writer, rotating file sinks.
