//! The one error type of the native core.
//!
//! Each [`ErrorKind`] maps to exactly one exception class defined in Python
//! (`truthound/stores/observability/errors.py`); the binding layer performs that single conversion,
//! so the native and pure cores raise identical types. Every error names the offending item.

use std::fmt;

/// Which Python exception class an [`Error`] becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad caller input that fits no narrower kind (`ValueError`).
    InvalidArgument,
    /// Metrics: a metric name or backend prefix the exposition formats cannot carry.
    InvalidMetricName,
    /// Metrics: an invalid, reserved (`le`, `quantile`, `__*`) or repeated label name.
    InvalidLabel,
    /// Metrics: a name reused with another type, label schema, buckets, quantiles or help.
    MetricConflict,
    /// Metrics: a value the metric type forbids (negative or NaN counter increment...).
    InvalidMetricValue,
    /// An audit file could not be created, written, synced or rotated (`OSError`); names the path.
    AuditIo,
    /// An audit backend or queue was used after `close()` (`RuntimeError`).
    AuditClosed,
    /// Metrics: the multiprocess directory or a file in it cannot be used (`OSError`).
    Multiprocess,
    /// An argument of the wrong type, such as labels that are not a mapping (both `ValueError`
    /// and `TypeError`, so `except InvalidArgumentError` and `except TypeError` both catch it).
    InvalidArgumentType,
}

/// A rejected operation: what kind of failure, which item, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// The offending item as the caller wrote it (a metric name, a label, a pattern, a path...).
    pub item: String,
    pub reason: String,
}

impl Error {
    #[cold]
    pub fn new(kind: ErrorKind, item: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind,
            item: item.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.item, self.reason)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
