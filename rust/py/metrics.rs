//! Python bindings of the metrics core.

use pyo3::prelude::*;

/// Canonical exposition text of a float: `repr()` for finite values, `+Inf`, `-Inf`, `NaN`.
#[pyfunction]
pub fn format_float(value: f64) -> String {
    crate::metrics::float::format_float(value)
}
