//! Prometheus text 0.0.4 and OpenMetrics 1.0 encoders.
//!
//! Conventions (identical in the pure-Python core, byte for byte):
//! - Families in creation order, series in creation order (an overflow series last); one HELP
//!   and one TYPE line per family, even for a family without series.
//! - Counters: the family is named without `_total`, samples always carry `_total`. In text 0.0.4
//!   HELP/TYPE name the `_total` sample (as Prometheus expects of that format); in OpenMetrics
//!   they name the family, and `_created` samples follow (counters, histograms, summaries).
//!   Text 0.0.4 has no `_created` samples: that format has no such notion, and Prometheus would
//!   store them as separate series.
//! - Labels sorted by name, default labels merged in; `le`/`quantile` last.
//! - Values in the canonical float form of [`crate::float`]; counts as floats (`3.0`).
//! - OpenMetrics only: histogram bucket exemplars (`# {trace_id="..."} value timestamp`), and no
//!   `_sum`/`_count` for histograms whose buckets allow negative observations (the sum would not
//!   be a counter, and `_count` appears if and only if `_sum` does).
//! - Output ends with a newline (text) or `# EOF\n` (OpenMetrics); an empty text exposition is
//!   the empty string.

use std::fmt::Write;

use super::exposition_text::{escape_help, escape_label_value};
use super::names::Kind;
use super::registry::{Exemplar, Family, Registry, Series};
use crate::float::write_float;

fn write_count(out: &mut String, count: u64) {
    if count < 10_000_000_000_000_000 {
        out.push_str(itoa::Buffer::new().format(count));
        out.push_str(".0");
    } else {
        write_float(out, count as f64);
    }
}

/// Writes `name{labels[,extra_name="extra_value"]} ` (the value follows).
fn write_sample_head(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &str,
    extra: Option<(&str, &str)>,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some((extra_name, extra_value)) = extra {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str(extra_name);
            out.push_str("=\"");
            out.push_str(extra_value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
}

fn write_exemplar(out: &mut String, exemplar: &Exemplar) {
    out.push_str(" # {");
    for (i, (name, value)) in exemplar.labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    out.push_str("} ");
    write_float(out, exemplar.value);
    out.push(' ');
    write_float(out, exemplar.timestamp);
}

fn write_header(out: &mut String, family: &Family, openmetrics: bool) {
    let kind = family.kind();
    let counter_text = kind == Kind::Counter && !openmetrics;
    let suffix = if counter_text { "_total" } else { "" };
    out.push_str("# HELP ");
    out.push_str(family.name());
    out.push_str(suffix);
    out.push(' ');
    escape_help(out, &family.documentation(), openmetrics);
    out.push_str("\n# TYPE ");
    out.push_str(family.name());
    out.push_str(suffix);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

fn write_created(out: &mut String, family: &Family, series: &Series) {
    write_sample_head(
        out,
        family.name(),
        "_created",
        series.rendered_labels(),
        None,
    );
    write_float(out, series.created());
    out.push('\n');
}

fn write_family(out: &mut String, family: &Family, openmetrics: bool, now: f64) {
    write_header(out, family, openmetrics);
    let name = family.name();
    family.for_each_series(|series| {
        let labels = series.rendered_labels();
        match family.kind() {
            Kind::Counter => {
                write_sample_head(out, name, "_total", labels, None);
                write_float(out, series.scalar());
                out.push('\n');
                if openmetrics {
                    write_created(out, family, series);
                }
            }
            Kind::Gauge => {
                write_sample_head(out, name, "", labels, None);
                write_float(out, series.scalar());
                out.push('\n');
            }
            Kind::Histogram => {
                let (cumulative, sum) = series.histogram_snapshot();
                let exemplars = if openmetrics {
                    series.exemplars()
                } else {
                    Vec::new()
                };
                for (i, (count, le)) in cumulative.iter().zip(family.le_text()).enumerate() {
                    write_sample_head(out, name, "_bucket", labels, Some(("le", le)));
                    write_count(out, *count);
                    if let Some(Some(exemplar)) = exemplars.get(i) {
                        write_exemplar(out, exemplar);
                    }
                    out.push('\n');
                }
                // OpenMetrics: no sum when negative observations are possible (it would not
                // be a counter), and `_count` appears if and only if `_sum` does.
                if !(openmetrics && family.layout().allows_negative()) {
                    write_sample_head(out, name, "_count", labels, None);
                    write_count(out, *cumulative.last().unwrap_or(&0));
                    out.push('\n');
                    write_sample_head(out, name, "_sum", labels, None);
                    write_float(out, sum);
                    out.push('\n');
                }
                if openmetrics {
                    write_created(out, family, series);
                }
            }
            Kind::Summary => {
                let (count, sum, quantiles) = series.summary_snapshot(now);
                for (value, q) in quantiles.iter().zip(family.quantile_text()) {
                    write_sample_head(out, name, "", labels, Some(("quantile", q)));
                    write_float(out, *value);
                    out.push('\n');
                }
                write_sample_head(out, name, "_count", labels, None);
                write_count(out, count);
                out.push('\n');
                write_sample_head(out, name, "_sum", labels, None);
                write_float(out, sum);
                out.push('\n');
                if openmetrics {
                    write_created(out, family, series);
                }
            }
        }
    });
}

/// The exposition of every metric of `registry`.
#[must_use]
pub fn encode(registry: &Registry, openmetrics: bool) -> String {
    let families = registry.families();
    let mut out = String::with_capacity(4096);
    let now = registry.clock().now();
    for family in &families {
        write_family(&mut out, family, openmetrics, now);
    }
    if openmetrics {
        out.push_str("# EOF\n");
    }
    let _ = write!(out, "");
    out
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point of these tests
mod tests {
    use super::*;
    use crate::metrics::registry::{Clock, RegistryConfig};

    struct Frozen;
    impl Clock for Frozen {
        fn now(&self) -> f64 {
            1_700_000_000.5
        }
    }

    #[test]
    fn text_and_openmetrics_of_a_counter_and_a_histogram() {
        let r = Registry::new(
            RegistryConfig {
                prefix: "app".into(),
                default_labels: vec![("svc".into(), "v\"1".into())],
                buckets: vec![0.5, 1.0],
                ..RegistryConfig::default()
            },
            Box::new(Frozen),
        )
        .unwrap();
        let c = r.family("ops_total", Kind::Counter, &["op"]).unwrap();
        c.series(&["read"], r.clock())
            .counter_add("ops_total", 3.0)
            .unwrap();
        let h = r.family("lat", Kind::Histogram, &[]).unwrap();
        let s = h.series(&[], r.clock());
        s.histogram_observe(
            "lat",
            0.25,
            Some((vec![("trace_id".into(), "ab".into())], 12.0)),
        )
        .unwrap();
        s.histogram_observe("lat", 2.0, None).unwrap();
        assert_eq!(
            encode(&r, false),
            "# HELP app_ops_total Counter ops_total\n# TYPE app_ops_total counter\n\
             app_ops_total{op=\"read\",svc=\"v\\\"1\"} 3.0\n\
             # HELP app_lat Histogram lat\n# TYPE app_lat histogram\n\
             app_lat_bucket{svc=\"v\\\"1\",le=\"0.5\"} 1.0\n\
             app_lat_bucket{svc=\"v\\\"1\",le=\"1.0\"} 1.0\n\
             app_lat_bucket{svc=\"v\\\"1\",le=\"+Inf\"} 2.0\n\
             app_lat_count{svc=\"v\\\"1\"} 2.0\n\
             app_lat_sum{svc=\"v\\\"1\"} 2.25\n"
        );
        let om = encode(&r, true);
        assert!(om.starts_with("# HELP app_ops Counter ops_total\n# TYPE app_ops counter\n"));
        assert!(om.contains("app_ops_created{op=\"read\",svc=\"v\\\"1\"} 1700000000.5\n"));
        assert!(om.contains("le=\"0.5\"} 1.0 # {trace_id=\"ab\"} 0.25 12.0\n"));
        assert!(om.ends_with("# EOF\n"));
    }

    #[test]
    fn empty_registry() {
        let r = Registry::new(RegistryConfig::default(), Box::new(Frozen)).unwrap();
        assert_eq!(encode(&r, false), "");
        assert_eq!(encode(&r, true), "# EOF\n");
    }
}
