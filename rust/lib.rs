//! Native core of `truthound.stores.observability`.
//!
//! The crate is split by pillar. `metrics`, `audit` and `tracing` are plain Rust (no PyO3) so that
//! `cargo test` runs them without a Python interpreter; `py` is the thin binding layer, compiled only
//! with the `python` feature that maturin enables. Python code never imports this module directly:
//! the documented modules choose it (or the pure-Python mirror in `_pure/`) through `_core.py`.
//! Shared by the pillars: `error`, `float` and `fork` (what a forked child may use of its parent's
//! state: the fork gate and per-process values).

pub mod audit;
pub mod error;
pub mod float;
pub mod fork;
pub mod metrics;
pub mod tracing;

#[cfg(feature = "python")]
mod py;

/// The extension module `truthound.stores.observability._native`.
///
/// Free-threading audit: every function here works on owned Rust values, and every `#[pyclass]`
/// is `frozen` with its shared state in atomics or locks, so the module does not rely on the GIL.
#[cfg(feature = "python")]
#[pyo3::pymodule(gil_used = false)]
mod _native {
    /// Identifies the core for `active_core()`; the pure mirror has the same attribute.
    #[pymodule_export]
    const CORE_NAME: &str = "native";

    // ---- Metrics pillar ------------------------------------------------------------------

    #[pymodule_export]
    use crate::py::metrics::{
        CounterSeries, GaugeSeries, HistogramSeries, MetricSet, OperationRecorder, SummarySeries,
    };
    #[pymodule_export]
    use crate::py::metrics::{compact_directory, encode_directory, format_float};

    // ---- Tracing pillar ------------------------------------------------------------------

    #[pymodule_export]
    use crate::py::tracing::{
        encode_jaeger_batch, format_traceparent, format_tracestate, generate_span_id,
        generate_trace_id, is_valid_span_id, is_valid_trace_id, parse_traceparent,
        parse_tracestate, reseed_ids,
    };

    // ---- Audit pillar --------------------------------------------------------------------

    #[pymodule_export]
    use crate::py::audit::AsyncWriter;
    #[pymodule_export]
    use crate::py::audit::FileSink;
    #[pymodule_export]
    use crate::py::audit::Redactor;
    #[pymodule_export]
    use crate::py::audit::check_duration;
    #[pymodule_export]
    use crate::py::audit::new_event_id;
    #[pymodule_export]
    use crate::py::audit::normalize_value;
}
