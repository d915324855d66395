//! Metric and label names: validation, reserved names, and how a backend prefix joins a name.

use crate::error::{Error, ErrorKind, Result};

/// The four metric types of the Prometheus data model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Kind {
    /// The lower-case name used in `# TYPE` lines and in the Python API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }

    /// Parses the lower-case name `kind` given for `metric` (the error names the metric).
    pub fn parse(metric: &str, kind: &str) -> Result<Self> {
        match kind {
            "counter" => Ok(Kind::Counter),
            "gauge" => Ok(Kind::Gauge),
            "histogram" => Ok(Kind::Histogram),
            "summary" => Ok(Kind::Summary),
            _ => Err(Error::new(
                ErrorKind::InvalidArgument,
                metric,
                format!("metric type {kind:?} must be one of counter, gauge, histogram, summary"),
            )),
        }
    }

    /// Sample-name suffixes a family of this kind exposes besides its own name (both formats).
    #[must_use]
    pub fn owned_suffixes(self) -> &'static [&'static str] {
        match self {
            Kind::Counter => &["_total", "_created"],
            Kind::Gauge => &[],
            Kind::Histogram => &["_bucket", "_count", "_sum", "_created"],
            Kind::Summary => &["_count", "_sum", "_created"],
        }
    }
}

/// Whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
#[must_use]
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*`.
#[must_use]
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Rejects a metric name the exposition formats cannot carry.
pub fn validate_metric_name(name: &str) -> Result<()> {
    if is_valid_metric_name(name) {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidMetricName,
            name,
            "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*",
        ))
    }
}

/// Rejects an invalid or reserved label name of `metric` (of type `kind`).
pub fn validate_label_name(metric: &str, kind: Kind, label: &str) -> Result<()> {
    let reason = if !is_valid_label_name(label) {
        "label name must match [a-zA-Z_][a-zA-Z0-9_]*"
    } else if label.starts_with("__") {
        "label names starting with '__' are reserved for Prometheus"
    } else if kind == Kind::Histogram && label == "le" {
        "'le' is reserved for histogram buckets"
    } else if kind == Kind::Summary && label == "quantile" {
        "'quantile' is reserved for summary quantiles"
    } else {
        return Ok(());
    };
    Err(Error::new(
        ErrorKind::InvalidLabel,
        label,
        format!("{reason} (metric {metric:?})"),
    ))
}

/// Rejects an invalid backend prefix: it must be empty or a valid metric name, and not `_`
/// alone (that would join as no prefix at all, see [`join_prefix`]).
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() || (is_valid_metric_name(prefix) && prefix != "_") {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidMetricName,
            prefix,
            "prefix must be empty or match [a-zA-Z_:][a-zA-Z0-9_:]* (and not be '_' alone)",
        ))
    }
}

/// The exposed name of `name` under a backend `prefix`: `{prefix}_{name}`, or `name` itself
/// with an empty prefix. One trailing `_` of the prefix is dropped first, so `"app"` and
/// `"app_"` both give `app_requests_total` (prefixes are written both ways; `app__requests`
/// is never what was meant). Otherwise the rule is uniform (no shared-segment or
/// already-prefixed special cases), so two different caller names never expose one metric.
#[must_use]
pub fn join_prefix(prefix: &str, name: &str) -> String {
    let prefix = prefix.strip_suffix('_').unwrap_or(prefix);
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}_{name}")
    }
}

/// The family name of a metric: counters drop a trailing `_total` (it is added back on samples).
#[must_use]
pub fn family_name(kind: Kind, full_name: &str) -> &str {
    if kind == Kind::Counter
        && let Some(base) = full_name.strip_suffix("_total")
        && !base.is_empty()
    {
        return base;
    }
    full_name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_joins_uniformly() {
        assert_eq!(join_prefix("", "ops_total"), "ops_total");
        assert_eq!(
            join_prefix("truthound_store", "operations_total"),
            "truthound_store_operations_total"
        );
        assert_eq!(
            join_prefix("truthound_store", "store_operations_total"),
            "truthound_store_store_operations_total"
        );
    }

    #[test]
    fn one_trailing_underscore_of_the_prefix_is_dropped() {
        assert_eq!(join_prefix("app_", "ops_total"), "app_ops_total");
        assert_eq!(join_prefix("app", "ops_total"), "app_ops_total");
        // Only one: the rest is the caller's (a valid, if odd, name).
        assert_eq!(join_prefix("app__", "ops_total"), "app__ops_total");
        assert!(validate_prefix("app_").is_ok());
        assert!(validate_prefix("").is_ok());
        let error = validate_prefix("_").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidMetricName);
        assert_eq!(error.item, "_");
        assert!(validate_prefix("1app").is_err());
    }

    #[test]
    fn an_unknown_metric_type_names_the_metric_and_the_type() {
        assert_eq!(Kind::parse("m", "summary"), Ok(Kind::Summary));
        let error = Kind::parse("latency", "timer").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidArgument);
        assert_eq!(error.item, "latency");
        assert!(error.reason.contains("\"timer\""), "{}", error.reason);
    }

    #[test]
    fn counters_drop_total_from_the_family_name() {
        assert_eq!(family_name(Kind::Counter, "ops_total"), "ops");
        assert_eq!(family_name(Kind::Counter, "ops"), "ops");
        assert_eq!(family_name(Kind::Counter, "_total"), "_total");
        assert_eq!(family_name(Kind::Gauge, "ops_total"), "ops_total");
    }

    #[test]
    fn names_are_validated_and_reserved_labels_rejected() {
        assert!(is_valid_metric_name("a:b_c9"));
        assert!(!is_valid_metric_name("9a"));
        assert!(!is_valid_metric_name(""));
        assert!(!is_valid_metric_name("a-b"));
        assert!(validate_label_name("m", Kind::Histogram, "le").is_err());
        assert!(validate_label_name("m", Kind::Gauge, "le").is_ok());
        assert!(validate_label_name("m", Kind::Summary, "quantile").is_err());
        assert!(validate_label_name("m", Kind::Gauge, "__x").is_err());
        assert!(validate_label_name("m", Kind::Gauge, "a:b").is_err());
    }
}
