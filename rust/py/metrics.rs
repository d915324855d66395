//! Python bindings of the metrics core.
//!
//! The recording methods (`increment`, `gauge`, `histogram`, ...) are the hot path: the Python
//! backends bind them directly on their instances, so a documented call such as
//! `backend.increment("ops_total", labels={"op": "read"})` costs one builtin-method call. They
//! borrow the name and label strings from the Python objects (no copies, no Python allocations),
//! and reach the series through the lock-free family map and a sharded label-set map.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use pyo3::exceptions::PyOverflowError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::error::{Error, ErrorKind};
use crate::metrics::encode;
use crate::metrics::multiprocess::GaugeMode;
use crate::metrics::names::{self, Kind};
use crate::metrics::registry::{
    self as core, Clock, Exemplar, Family, FamilySpec, PendingExemplar, Reading, RegistryConfig,
    Series, SystemClock,
};

/// Canonical exposition text of a float: `repr()` for finite values, `+Inf`, `-Inf`, `NaN`.
#[pyfunction]
pub fn format_float(value: f64) -> String {
    crate::float::format_float(value)
}

/// Compacts the multiprocess `directory` (dead processes' files into its archive); returns
/// how many files were absorbed (0 when another process is compacting).
#[pyfunction]
pub fn compact_directory(py: Python<'_>, directory: std::path::PathBuf) -> PyResult<usize> {
    let counters = crate::metrics::multiprocess::MultiprocessCounters::default();
    let now = crate::metrics::multiprocess::wall_clock();
    Ok(py.detach(|| crate::metrics::multiprocess::read::compact(&directory, now, &counters))?)
}

/// The aggregated exposition of every process's metrics in the multiprocess `directory`.
#[pyfunction]
#[pyo3(signature = (directory, openmetrics = false))]
pub fn encode_directory(
    py: Python<'_>,
    directory: std::path::PathBuf,
    openmetrics: bool,
) -> PyResult<String> {
    let counters = crate::metrics::multiprocess::MultiprocessCounters::default();
    let now = crate::metrics::multiprocess::wall_clock();
    Ok(py.detach(|| -> crate::error::Result<String> {
        crate::metrics::multiprocess::read::compact(&directory, now, &counters)?;
        let aggregate = crate::metrics::multiprocess::read::scan(&directory, now, &counters)?;
        let registry = core::Registry::from_aggregate(&aggregate, &RegistryConfig::default());
        Ok(encode::encode(&registry, openmetrics))
    })?)
}

/// A clock that asks a Python callable (tests freeze time this way in both cores).
struct PyClock(Py<PyAny>);

impl Clock for PyClock {
    fn now(&self) -> f64 {
        Python::attach(|py| {
            self.0
                .bind(py)
                .call0()
                .and_then(|t| t.extract::<f64>())
                .unwrap_or(f64::NAN)
        })
    }
}

/// An exemplar as `collect` returns it: (le, labels, value, timestamp).
type ExemplarSnapshot = (f64, Vec<(String, String)>, f64, f64);

/// Label values of one call, borrowed from the Python strings, in the family's label order.
const INLINE_LABELS: usize = 8;

fn label_name_error(key: &Bound<'_, PyAny>) -> PyErr {
    let shown = key
        .repr()
        .map_or_else(|_| "?".to_owned(), |r| r.to_string());
    Error::new(
        ErrorKind::InvalidLabel,
        shown,
        "label names must be strings",
    )
    .into()
}

/// `text` with lone surrogates written as `\udcff` (for error messages).
#[cold]
fn shown(text: &Bound<'_, PyString>) -> String {
    text.call_method1(intern!(text.py(), "encode"), ("utf-8", "backslashreplace"))
        .ok()
        .and_then(|b| {
            b.cast::<PyBytes>()
                .ok()
                .map(|b| String::from_utf8_lossy(b.as_bytes()).into_owned())
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// Text that is not valid Unicode (a lone surrogate, as `os.fsdecode` leaves for undecodable
/// bytes): rejected before any state is created, as the UTF-8 exposition could not carry it.
#[cold]
fn not_unicode(kind: ErrorKind, item: &str, what: &str, metric: &str) -> PyErr {
    Error::new(
        kind,
        item,
        format!("{what} is not valid Unicode (it contains a lone surrogate) (metric {metric:?})"),
    )
    .into()
}

#[inline]
fn label_name_str<'a>(key: &'a Bound<'_, PyString>, metric: &str) -> PyResult<&'a str> {
    key.to_str()
        .map_err(|_| not_unicode(ErrorKind::InvalidLabel, &shown(key), "label name", metric))
}

#[inline]
fn label_value_str<'a>(
    value: &'a Bound<'_, PyString>,
    label: &str,
    metric: &str,
) -> PyResult<&'a str> {
    value
        .to_str()
        .map_err(|_| not_unicode(ErrorKind::InvalidLabel, label, "label value", metric))
}

/// The overflow marker as a user's label value: reserved, so that the overflow series of a
/// family at its series limit never collides with a user series.
#[inline]
fn check_not_reserved(labels: &[Box<str>], values: &[&str], metric: &str) -> PyResult<()> {
    match values.iter().position(|v| *v == core::OVERFLOW_VALUE) {
        None => Ok(()),
        Some(index) => Err(reserved_value(&labels[index], metric)),
    }
}

#[cold]
fn reserved_value(label: &str, metric: &str) -> PyErr {
    Error::new(
        ErrorKind::InvalidLabel,
        label,
        format!(
            "label value {:?} is reserved for the series that collects label sets beyond \
             max_series_per_metric (metric {metric:?})",
            core::OVERFLOW_VALUE
        ),
    )
    .into()
}

/// A recorded value, extracted as PyO3 extracts `f64`, except that a number too large for a
/// float (`10**400`) is an `InvalidMetricValueError` naming it, not a bare `OverflowError`.
#[derive(Clone, Copy)]
pub struct Value(f64);

impl<'py> FromPyObject<'_, 'py> for Value {
    type Error = PyErr;

    #[inline]
    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        match obj.extract::<f64>() {
            Ok(value) => Ok(Self(value)),
            Err(error) if error.is_instance_of::<PyOverflowError>(obj.py()) => Err(too_large(&obj)),
            Err(error) => Err(error),
        }
    }
}

#[cold]
fn too_large(value: &Bound<'_, PyAny>) -> PyErr {
    let shown = value
        .repr()
        .map_or_else(|_| "?".to_owned(), |r| r.to_string());
    let chars: Vec<char> = shown.chars().collect();
    let shown = if chars.len() > 40 {
        let head: String = chars[..20].iter().collect();
        let tail: String = chars[chars.len() - 8..].iter().collect();
        format!("{head}...{tail} ({} characters)", chars.len())
    } else {
        shown
    };
    Error::new(
        ErrorKind::InvalidMetricValue,
        shown,
        "the value is too large for a float (metric values are 64-bit floats)",
    )
    .into()
}

/// An operation name (a label value of the store metrics) given as a Python string.
#[inline]
fn operation_str<'a>(operation: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    operation.to_str().map_err(|_| {
        not_unicode(
            ErrorKind::InvalidLabel,
            "operation",
            "label value",
            OPERATIONS,
        )
    })
}

/// A metric name given as a Python string (one that is not valid Unicode is an invalid name).
#[inline]
fn metric_name_str<'a>(name: &'a Bound<'_, PyString>) -> PyResult<&'a str> {
    name.to_str().map_err(|_| {
        Error::new(
            ErrorKind::InvalidMetricName,
            shown(name),
            "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*",
        )
        .into()
    })
}

fn value_str<'py>(value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyString>> {
    match value.cast::<PyString>() {
        Ok(s) => Ok(s.clone()),
        Err(_) => value.str(),
    }
}

#[cold]
fn not_a_mapping(labels: &Bound<'_, PyAny>, what: &str) -> PyErr {
    let type_name = labels
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |n| n.to_string());
    Error::new(
        ErrorKind::InvalidArgumentType,
        what,
        format!("labels must be a mapping of label names to values (a dict), not {type_name}"),
    )
    .into()
}

/// Iterates the (name, value) pairs of a dict or any mapping (an object with `items()`);
/// anything else is rejected naming `what` (the metric, or the argument).
fn for_each_label<'py>(
    labels: &Bound<'py, PyAny>,
    what: &str,
    mut f: impl FnMut(Bound<'py, PyAny>, Bound<'py, PyAny>) -> PyResult<()>,
) -> PyResult<usize> {
    if let Ok(dict) = labels.cast::<PyDict>() {
        for (key, value) in dict.iter() {
            f(key, value)?;
        }
        return Ok(dict.len());
    }
    let items = intern!(labels.py(), "items");
    if !labels.hasattr(items)? {
        return Err(not_a_mapping(labels, what));
    }
    let mut count = 0;
    for item in labels.call_method0(items)?.try_iter()? {
        let (key, value): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item?.extract()?;
        f(key, value)?;
        count += 1;
    }
    Ok(count)
}

fn given_names(labels: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Vec<String>> {
    let mut names = Vec::new();
    if let Some(labels) = labels {
        for_each_label(labels, what, |key, _| {
            let key = key.cast::<PyString>().map_err(|_| label_name_error(&key))?;
            names.push(label_name_str(key, what)?.to_owned());
            Ok(())
        })?;
    }
    Ok(names)
}

#[cold]
fn schema_error(family: &Family, labels: Option<&Bound<'_, PyAny>>, what: &str) -> PyErr {
    match given_names(labels, what) {
        Ok(names) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            family.schema_error(&names).into()
        }
        Err(error) => error,
    }
}

/// The series of `family` for the call's labels (created on first use); `what` is the
/// caller's metric name, for errors.
#[inline]
fn series_for(
    family: &Family,
    labels: Option<&Bound<'_, PyAny>>,
    clock: &dyn Clock,
    what: &str,
) -> PyResult<Arc<Series>> {
    let wanted = family.label_names().len();
    let Some(labels) = labels else {
        return if wanted == 0 {
            Ok(family.series(&[], clock))
        } else {
            Err(schema_error(family, None, what))
        };
    };
    if wanted <= INLINE_LABELS {
        let mut slots: [Option<Bound<'_, PyString>>; INLINE_LABELS] = Default::default();
        fill_slots(family, labels, &mut slots[..wanted], what)?;
        let mut values: [&str; INLINE_LABELS] = [""; INLINE_LABELS];
        for ((value, slot), label) in values
            .iter_mut()
            .zip(&slots[..wanted])
            .zip(family.label_names())
        {
            *value = label_value_str(slot.as_ref().expect("every slot filled"), label, what)?;
        }
        check_not_reserved(family.label_names(), &values[..wanted], what)?;
        Ok(family.series(&values[..wanted], clock))
    } else {
        let mut slots: Vec<Option<Bound<'_, PyString>>> = vec![None; wanted];
        fill_slots(family, labels, &mut slots, what)?;
        let values = slots
            .iter()
            .zip(family.label_names())
            .map(|(s, label)| label_value_str(s.as_ref().expect("every slot filled"), label, what))
            .collect::<PyResult<Vec<&str>>>()?;
        check_not_reserved(family.label_names(), &values, what)?;
        Ok(family.series(&values, clock))
    }
}

#[inline]
fn fill_slots<'py>(
    family: &Family,
    labels: &Bound<'py, PyAny>,
    slots: &mut [Option<Bound<'py, PyString>>],
    what: &str,
) -> PyResult<()> {
    let mut mismatch = false;
    let count = for_each_label(labels, what, |key, value| {
        let key = key.cast::<PyString>().map_err(|_| label_name_error(&key))?;
        match family.label_index(label_name_str(key, what)?) {
            Some(index) => slots[index] = Some(value_str(&value)?),
            None => mismatch = true,
        }
        Ok(())
    })?;
    if mismatch || count != slots.len() || slots.iter().any(Option::is_none) {
        return Err(schema_error(family, Some(labels), what));
    }
    Ok(())
}

fn registry_config(
    prefix: &str,
    default_labels: Option<&Bound<'_, PyAny>>,
    buckets: Option<Vec<f64>>,
    quantiles: Option<Vec<f64>>,
) -> PyResult<RegistryConfig> {
    let mut config = RegistryConfig {
        prefix: prefix.to_owned(),
        ..RegistryConfig::default()
    };
    if let Some(labels) = default_labels {
        for_each_label(labels, "default_labels", |key, value| {
            let key = key.cast::<PyString>().map_err(|_| label_name_error(&key))?;
            let label = label_name_str(key, "default_labels")?;
            let text = value_str(&value)?;
            config.default_labels.push((
                label.to_owned(),
                label_value_str(&text, label, "default_labels")?.to_owned(),
            ));
            Ok(())
        })?;
    }
    if let Some(buckets) = buckets {
        config.buckets = buckets;
    }
    if let Some(quantiles) = quantiles {
        config.quantiles = quantiles;
    }
    Ok(config)
}

/// All metrics of one backend: the native core of `InMemoryMetricsBackend` and
/// `PrometheusMetricsBackend`.
///
/// Thread-safe without the GIL: recording is lock-free on existing series (see the core's
/// concurrency notes), and `encode` releases the interpreter while it formats.
#[pyclass(frozen, module = "truthound.stores.observability._native")]
pub struct MetricSet {
    inner: Arc<core::Registry>,
    span_var: Option<Py<PyAny>>,
}

impl MetricSet {
    #[inline]
    fn family(
        &self,
        name: &str,
        kind: Kind,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Arc<Family>> {
        match self.inner.cached_family(name) {
            Some(family) if family.kind() == kind => Ok(family),
            _ => self.family_slow(name, kind, labels),
        }
    }

    #[cold]
    fn family_slow(
        &self,
        name: &str,
        kind: Kind,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Arc<Family>> {
        // Label names and values that are not valid Unicode are rejected before the family is
        // created (a rejected call leaves no state behind).
        if let Some(labels) = labels {
            for_each_label(labels, name, |key, value| {
                let key = key.cast::<PyString>().map_err(|_| label_name_error(&key))?;
                let label = label_name_str(key, name)?;
                label_value_str(&value_str(&value)?, label, name)?;
                Ok(())
            })?;
        }
        let names = given_names(labels, name)?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(self.inner.family(name, kind, &names)?)
    }

    #[inline]
    fn resolve(
        &self,
        name: &str,
        kind: Kind,
        value: f64,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Arc<Series>> {
        let family = self.family(name, kind, labels)?;
        family.layout().check(value, name)?;
        series_for(&family, labels, self.inner.clock(), name)
    }

    fn handle(
        &self,
        py: Python<'_>,
        kind: Kind,
        name: &str,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Handle> {
        let family = self.family(name, kind, labels)?;
        let series = series_for(&family, labels, self.inner.clock(), name)?;
        let names = family.label_names().to_vec();
        Ok(Handle {
            registry: Arc::clone(&self.inner),
            kind,
            name: name.into(),
            label_names: names,
            series: ArcSwap::new(series),
            span_var: self.span_var.as_ref().map(|v| v.clone_ref(py)),
        })
    }
}

/// The current span's exemplar, if the span is sampled (see `_context.current_span`).
fn current_exemplar(
    py: Python<'_>,
    span_var: Option<&Py<PyAny>>,
    registry: &core::Registry,
) -> Option<PendingExemplar> {
    let span = span_var?.bind(py).call_method0(intern!(py, "get")).ok()?;
    if span.is_none() {
        return None;
    }
    let read = || -> PyResult<Option<(String, String)>> {
        if !span.getattr(intern!(py, "is_sampled"))?.is_truthy()? {
            return Ok(None);
        }
        let trace_id = span
            .getattr(intern!(py, "trace_id"))?
            .str()?
            .to_str()?
            .to_owned();
        let span_id = span
            .getattr(intern!(py, "span_id"))?
            .str()?
            .to_str()?
            .to_owned();
        Ok(Some((trace_id, span_id)))
    };
    let dropped = || {
        registry
            .counters()
            .dropped_exemplars
            .fetch_add(1, Ordering::Relaxed);
        None
    };
    match read() {
        Ok(Some((trace_id, span_id))) => match core::exemplar_labels(&trace_id, &span_id) {
            Some(labels) => Some((labels, registry.clock().now())),
            None => dropped(),
        },
        Ok(None) => None,
        Err(_) => dropped(),
    }
}

#[pymethods]
impl MetricSet {
    #[new]
    #[pyo3(signature = (
        prefix = "",
        default_labels = None,
        buckets = None,
        quantiles = None,
        max_series_per_metric = 10_000,
        summary_max_age_seconds = 600.0,
        summary_age_buckets = 5,
        summary_relative_accuracy = 0.01,
        summary_max_bins = 2048,
        span_var = None,
        clock = None,
        multiprocess_dir = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        prefix: &str,
        default_labels: Option<&Bound<'_, PyAny>>,
        buckets: Option<Vec<f64>>,
        quantiles: Option<Vec<f64>>,
        max_series_per_metric: usize,
        summary_max_age_seconds: f64,
        summary_age_buckets: usize,
        summary_relative_accuracy: f64,
        summary_max_bins: usize,
        span_var: Option<Py<PyAny>>,
        clock: Option<Py<PyAny>>,
        multiprocess_dir: Option<std::path::PathBuf>,
    ) -> PyResult<Self> {
        let mut config = registry_config(prefix, default_labels, buckets, quantiles)?;
        config.max_series_per_metric = max_series_per_metric;
        config.summary_max_age = summary_max_age_seconds;
        config.summary_age_buckets = summary_age_buckets;
        config.summary_relative_accuracy = summary_relative_accuracy;
        config.summary_max_bins = summary_max_bins;
        config.multiprocess_dir = multiprocess_dir;
        let clock: Box<dyn Clock> = match clock {
            Some(callable) => Box::new(PyClock(callable)),
            None => Box::new(SystemClock),
        };
        Ok(Self {
            inner: Arc::new(core::Registry::new(config, clock)?),
            span_var,
        })
    }

    /// Adds `value` (default 1) to a counter; `_total` in `name` is optional.
    #[pyo3(
        signature = (name, value = Value(1.0), labels = None),
        text_signature = "($self, name, value=1.0, labels=None)"
    )]
    fn increment(
        &self,
        name: &Bound<'_, PyString>,
        value: Value,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let value = value.0;
        let name = metric_name_str(name)?;
        let series = self.resolve(name, Kind::Counter, value, labels)?;
        Ok(series.counter_add(name, value)?)
    }

    /// Sets a gauge to `value`.
    #[pyo3(signature = (name, value, labels = None))]
    fn gauge(
        &self,
        name: &Bound<'_, PyString>,
        value: Value,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let value = value.0;
        let name = metric_name_str(name)?;
        self.resolve(name, Kind::Gauge, value, labels)?
            .gauge_set(value);
        Ok(())
    }

    /// Adds `value` (may be negative) to a gauge.
    #[pyo3(signature = (name, value, labels = None))]
    fn gauge_add(
        &self,
        name: &Bound<'_, PyString>,
        value: Value,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let value = value.0;
        let name = metric_name_str(name)?;
        self.resolve(name, Kind::Gauge, value, labels)?
            .gauge_add(value);
        Ok(())
    }

    /// Observes `value` into a histogram; inside a sampled span it becomes the bucket's exemplar.
    #[pyo3(signature = (name, value, labels = None))]
    fn histogram(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyString>,
        value: Value,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let value = value.0;
        let name = metric_name_str(name)?;
        let series = self.resolve(name, Kind::Histogram, value, labels)?;
        let exemplar = current_exemplar(py, self.span_var.as_ref(), &self.inner);
        Ok(series.histogram_observe(name, value, exemplar)?)
    }

    /// Observes `value` into a summary (quantiles over the sliding window).
    #[pyo3(signature = (name, value, labels = None))]
    fn summary(
        &self,
        name: &Bound<'_, PyString>,
        value: Value,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let value = value.0;
        let name = metric_name_str(name)?;
        let series = self.resolve(name, Kind::Summary, value, labels)?;
        Ok(series.summary_observe(name, value, self.inner.clock().now())?)
    }

    /// Declares a metric with its help text, label names, buckets or quantiles. Declaring an
    /// identical metric again is allowed; a conflicting one raises `MetricConflictError`.
    #[pyo3(signature = (kind, name, documentation = None, label_names = None, buckets = None, quantiles = None, multiprocess_mode = None))]
    #[allow(clippy::too_many_arguments)]
    fn register(
        &self,
        kind: &str,
        name: &str,
        documentation: Option<Bound<'_, PyString>>,
        label_names: Option<Vec<Bound<'_, PyString>>>,
        buckets: Option<Vec<f64>>,
        quantiles: Option<Vec<f64>>,
        multiprocess_mode: Option<&str>,
    ) -> PyResult<()> {
        let kind = Kind::parse(name, kind)?;
        let mode = multiprocess_mode.map(GaugeMode::parse).transpose()?;
        let label_names = label_names
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|label| label_name_str(label, name))
            .collect::<PyResult<Vec<&str>>>()?;
        let documentation = documentation
            .as_ref()
            .map(|text| {
                text.to_str()
                    .map_err(|_| not_unicode(ErrorKind::InvalidArgument, name, "help text", name))
            })
            .transpose()?;
        let spec = FamilySpec {
            documentation,
            label_names: Some(label_names),
            buckets: buckets.as_deref(),
            quantiles: quantiles.as_deref(),
            mode,
        };
        self.inner.register(name, kind, &spec, true)?;
        Ok(())
    }

    /// A pre-bound counter series: `inc()` skips the name and label lookups.
    #[pyo3(signature = (name, labels = None))]
    fn counter_series(
        &self,
        py: Python<'_>,
        name: &str,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<CounterSeries> {
        Ok(CounterSeries(self.handle(
            py,
            Kind::Counter,
            name,
            labels,
        )?))
    }

    /// A pre-bound gauge series.
    #[pyo3(signature = (name, labels = None))]
    fn gauge_series(
        &self,
        py: Python<'_>,
        name: &str,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<GaugeSeries> {
        Ok(GaugeSeries(self.handle(py, Kind::Gauge, name, labels)?))
    }

    /// A pre-bound histogram series.
    #[pyo3(signature = (name, labels = None))]
    fn histogram_series(
        &self,
        py: Python<'_>,
        name: &str,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<HistogramSeries> {
        Ok(HistogramSeries(self.handle(
            py,
            Kind::Histogram,
            name,
            labels,
        )?))
    }

    /// A pre-bound summary series.
    #[pyo3(signature = (name, labels = None))]
    fn summary_series(
        &self,
        py: Python<'_>,
        name: &str,
        labels: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SummarySeries> {
        Ok(SummarySeries(self.handle(
            py,
            Kind::Summary,
            name,
            labels,
        )?))
    }

    /// `(type, value_or_count, sum, pairs)` of the series whose labels include `labels`
    /// (aggregated when several match), or `None`. Pairs are `(le, cumulative count)` for
    /// histograms and `(quantile, value)` for summaries.
    #[pyo3(signature = (name, labels = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        labels: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let mut filter_owned: Vec<(String, String)> = Vec::new();
        if let Some(labels) = labels {
            for_each_label(labels, name, |key, value| {
                let key = key.cast::<PyString>().map_err(|_| label_name_error(&key))?;
                filter_owned.push((
                    key.to_str()?.to_owned(),
                    value_str(&value)?.to_str()?.to_owned(),
                ));
                Ok(())
            })?;
        }
        let filter: Vec<(&str, &str)> = filter_owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let aggregate = self.aggregate(py)?;
        let (target, lookup): (&core::Registry, String) = match &aggregate {
            Some(aggregate) => (
                aggregate,
                names::join_prefix(&self.inner.config().prefix, name),
            ),
            None => (&self.inner, name.to_owned()),
        };
        let Some(family) = target.find(&lookup) else {
            return Ok(None);
        };
        let kind = family.kind().as_str();
        let reading = py.detach(|| target.get(&lookup, &filter));
        reading
            .map(|reading| match reading {
                Reading::Scalar(v) => (kind, v, 0.0, Vec::<(f64, f64)>::new()).into_pyobject(py),
                Reading::Histogram(count, sum, buckets) => (
                    kind,
                    count as f64,
                    sum,
                    buckets
                        .into_iter()
                        .map(|(le, c)| (le, c as f64))
                        .collect::<Vec<_>>(),
                )
                    .into_pyobject(py),
                Reading::Summary(count, sum, quantiles) => {
                    (kind, count as f64, sum, quantiles).into_pyobject(py)
                }
            })
            .transpose()
    }

    /// Every family: `(type, name, help, series)`, each series
    /// `(labels, value_or_count, sum, pairs, created, exemplars)` with labels as sorted
    /// `(name, value)` pairs (default labels included) and exemplars as
    /// `(le, labels, value, timestamp)`.
    fn collect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        let aggregate = self.aggregate(py)?;
        let target: &core::Registry = aggregate.as_ref().unwrap_or(&self.inner);
        let defaults = &target.config().default_labels;
        let now = target.clock().now();
        for family in target.families() {
            let series_list = PyList::empty(py);
            let layout = family.layout();
            for series in family.all_series() {
                let labels = family.series_labels(&series, defaults);
                let mut exemplars: Vec<ExemplarSnapshot> = Vec::new();
                let (value, sum, pairs): (f64, f64, Vec<(f64, f64)>) = match family.kind() {
                    Kind::Counter | Kind::Gauge => (series.scalar(), 0.0, Vec::new()),
                    Kind::Histogram => {
                        let (cumulative, sum) = series.histogram_snapshot();
                        let bounds: Vec<f64> = layout
                            .bounds
                            .iter()
                            .copied()
                            .chain([f64::INFINITY])
                            .collect();
                        for (le, exemplar) in bounds.iter().zip(series.exemplars()) {
                            if let Some(Exemplar {
                                labels,
                                value,
                                timestamp,
                            }) = exemplar
                            {
                                let labels = labels
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), v.to_string()))
                                    .collect();
                                exemplars.push((*le, labels, value, timestamp));
                            }
                        }
                        let count = *cumulative.last().unwrap_or(&0) as f64;
                        let pairs = bounds
                            .into_iter()
                            .zip(cumulative.into_iter().map(|c| c as f64))
                            .collect();
                        (count, sum, pairs)
                    }
                    Kind::Summary => {
                        let (count, sum, values) = series.summary_snapshot(now);
                        let pairs = layout.quantiles.iter().copied().zip(values).collect();
                        (count as f64, sum, pairs)
                    }
                };
                series_list.append((labels, value, sum, pairs, series.created(), exemplars))?;
            }
            out.append((
                family.kind().as_str(),
                family.name(),
                family.documentation(),
                series_list,
            ))?;
        }
        Ok(out)
    }

    /// The exposition text: Prometheus text 0.0.4, or OpenMetrics 1.0 when `openmetrics`.
    #[pyo3(signature = (openmetrics = false))]
    fn encode(&self, py: Python<'_>, openmetrics: bool) -> PyResult<String> {
        if self.inner.slab().is_none() {
            return Ok(py.detach(|| encode::encode(&self.inner, openmetrics)));
        }
        let now = self.inner.clock().now();
        Ok(py.detach(|| -> crate::error::Result<String> {
            Ok(match self.inner.aggregate(now)? {
                Some(aggregate) => encode::encode(&aggregate, openmetrics),
                None => encode::encode(&self.inner, openmetrics),
            })
        })?)
    }

    /// Absorbs dead processes' files into the archive of the multiprocess directory; returns
    /// how many (0 outside multiprocess mode, or while another process compacts).
    fn compact(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(py.detach(|| self.inner.compact())?)
    }

    /// The multiprocess directory, or `None` in single-process mode.
    #[getter]
    fn multiprocess_dir(&self) -> Option<String> {
        self.inner
            .slab()
            .map(|slab| slab.dir().display().to_string())
    }

    /// This process's file in the multiprocess directory, or `None`.
    #[getter]
    fn multiprocess_file(&self) -> Option<String> {
        self.inner
            .slab()
            .map(|slab| slab.path().display().to_string())
    }

    /// Multiprocess losses and repairs: `(skipped_files, skipped_records, unshared_series,
    /// unmerged_sketches, compactions, compacted_files, repairs)`.
    #[getter]
    fn multiprocess_counters(&self) -> (u64, u64, u64, u64, u64, u64, u64) {
        let c = self.inner.multiprocess_counters();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        (
            load(&c.skipped_files),
            load(&c.skipped_records),
            load(&c.unshared_series),
            load(&c.unmerged_sketches),
            load(&c.compactions),
            load(&c.compacted_files),
            load(&c.repairs),
        )
    }

    /// Removes every metric; pre-bound series handles re-create their series on next use.
    fn reset(&self) {
        self.inner.reset();
    }

    /// Samples recorded into an overflow series because a metric hit its series limit.
    #[getter]
    fn series_overflows(&self) -> u64 {
        self.inner
            .counters()
            .series_overflows
            .load(Ordering::Relaxed)
    }

    /// Exemplars not attached because the span's ids exceed the 128-code-point limit.
    #[getter]
    fn dropped_exemplars(&self) -> u64 {
        self.inner
            .counters()
            .dropped_exemplars
            .load(Ordering::Relaxed)
    }
}

/// A series bound once; re-attaches to a fresh series after `MetricSet.reset()`.
struct Handle {
    registry: Arc<core::Registry>,
    kind: Kind,
    name: Box<str>,
    label_names: Vec<Box<str>>,
    series: ArcSwap<Series>,
    span_var: Option<Py<PyAny>>,
}

impl Handle {
    #[inline]
    fn series(&self) -> PyResult<arc_swap::Guard<Arc<Series>>> {
        let current = self.series.load();
        if !current.is_detached() {
            return Ok(current);
        }
        self.reattach()
    }

    #[cold]
    fn reattach(&self) -> PyResult<arc_swap::Guard<Arc<Series>>> {
        let old = self.series.load_full();
        let names: Vec<&str> = self.label_names.iter().map(|n| &**n).collect();
        let family = self.registry.family(&self.name, self.kind, &names)?;
        let values: Vec<&str> = old.values().iter().map(|v| &**v).collect();
        self.series
            .store(family.series(&values, self.registry.clock()));
        Ok(self.series.load())
    }

    fn labels(&self) -> Vec<(String, String)> {
        let series = self.series.load();
        self.label_names
            .iter()
            .zip(series.values())
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

/// A pre-bound counter series.
#[pyclass(frozen, module = "truthound.stores.observability._native")]
pub struct CounterSeries(Handle);

#[pymethods]
impl CounterSeries {
    /// Adds `value` (default 1, must be >= 0).
    #[pyo3(signature = (value = Value(1.0)), text_signature = "($self, value=1.0)")]
    fn inc(&self, value: Value) -> PyResult<()> {
        let value = value.0;
        Ok(self.0.series()?.counter_add(&self.0.name, value)?)
    }

    /// The current value.
    #[getter]
    fn value(&self) -> PyResult<f64> {
        Ok(self.0.series()?.scalar())
    }

    /// The label names and values this handle is bound to.
    #[getter]
    fn labels(&self) -> Vec<(String, String)> {
        self.0.labels()
    }
}

/// A pre-bound gauge series.
#[pyclass(frozen, module = "truthound.stores.observability._native")]
pub struct GaugeSeries(Handle);

#[pymethods]
impl GaugeSeries {
    /// Sets the gauge.
    fn set(&self, value: Value) -> PyResult<()> {
        let value = value.0;
        self.0.series()?.gauge_set(value);
        Ok(())
    }

    /// Adds `value` (default 1).
    #[pyo3(signature = (value = Value(1.0)), text_signature = "($self, value=1.0)")]
    fn inc(&self, value: Value) -> PyResult<()> {
        let value = value.0;
        self.0.series()?.gauge_add(value);
        Ok(())
    }

    /// Subtracts `value` (default 1).
    #[pyo3(signature = (value = Value(1.0)), text_signature = "($self, value=1.0)")]
    fn dec(&self, value: Value) -> PyResult<()> {
        let value = value.0;
        self.0.series()?.gauge_add(-value);
        Ok(())
    }

    /// The current value.
    #[getter]
    fn value(&self) -> PyResult<f64> {
        Ok(self.0.series()?.scalar())
    }

    /// The label names and values this handle is bound to.
    #[getter]
    fn labels(&self) -> Vec<(String, String)> {
        self.0.labels()
    }
}

/// A pre-bound histogram series (exemplars from the current sampled span, as `histogram`).
#[pyclass(frozen, module = "truthound.stores.observability._native")]
pub struct HistogramSeries(Handle);

#[pymethods]
impl HistogramSeries {
    /// Observes `value`.
    fn observe(&self, py: Python<'_>, value: Value) -> PyResult<()> {
        let value = value.0;
        let series = self.0.series()?;
        series.layout().check(value, &self.0.name)?;
        let exemplar = current_exemplar(py, self.0.span_var.as_ref(), &self.0.registry);
        Ok(series.histogram_observe(&self.0.name, value, exemplar)?)
    }

    /// The label names and values this handle is bound to.
    #[getter]
    fn labels(&self) -> Vec<(String, String)> {
        self.0.labels()
    }
}

/// A pre-bound summary series.
#[pyclass(frozen, module = "truthound.stores.observability._native")]
pub struct SummarySeries(Handle);

#[pymethods]
impl SummarySeries {
    /// Observes `value`.
    fn observe(&self, value: Value) -> PyResult<()> {
        let value = value.0;
        let now = self.0.registry.clock().now();
        Ok(self.0.series()?.summary_observe(&self.0.name, value, now)?)
    }

    /// The label names and values this handle is bound to.
    #[getter]
    fn labels(&self) -> Vec<(String, String)> {
        self.0.labels()
    }
}

impl MetricSet {
    /// Every process's values (multiprocess mode), read with the interpreter released.
    fn aggregate(&self, py: Python<'_>) -> PyResult<Option<core::Registry>> {
        if self.inner.slab().is_none() {
            return Ok(None);
        }
        let now = self.inner.clock().now();
        Ok(py.detach(|| self.inner.aggregate(now))?)
    }
}

/// The two metric families of one operation kind: `(counter, histogram)` series.
type OperationSeries = (Arc<Series>, Arc<Series>);

/// The native `StoreMetrics.record_operation`: counts the operation and observes its latency in
/// one call (the standard `store_operations_total` / `store_operation_duration_seconds`).
///
/// Series are cached per (operation, success) (at most 1024 operations; more are resolved per
/// call), and re-resolved (and re-declared) after a `reset()`. The two families are declared
/// with their help text and label names when a series is bound (`labels` adds label names,
/// which then stay fixed).
#[pyclass(frozen, module = "truthound.stores.observability._native")]
pub struct OperationRecorder {
    registry: Py<MetricSet>,
    store: Box<str>,
    operations_help: Box<str>,
    duration_help: Box<str>,
    cache: [std::sync::RwLock<std::collections::HashMap<Box<str>, OperationSeries>>; 2],
}

const OPERATIONS: &str = "store_operations_total";
const DURATION: &str = "store_operation_duration_seconds";
const OPERATION_CACHE_LIMIT: usize = 1024;

impl OperationRecorder {
    /// Declares both families (identical re-declarations are free of effect; a different set
    /// of extra label names is a `MetricConflictError`, as for any metric).
    fn declare(&self, registry: &MetricSet, extra: &[String]) -> PyResult<()> {
        let mut counter_labels: Vec<&str> = extra.iter().map(String::as_str).collect();
        counter_labels.extend(["store", "operation", "status"]);
        let mut duration_labels: Vec<&str> = extra.iter().map(String::as_str).collect();
        duration_labels.extend(["store", "operation"]);
        let spec = |help, labels| FamilySpec {
            documentation: Some(help),
            label_names: Some(labels),
            ..FamilySpec::default()
        };
        let inner = &registry.inner;
        inner.register(
            OPERATIONS,
            Kind::Counter,
            &spec(&self.operations_help, counter_labels),
            false,
        )?;
        inner.register(
            DURATION,
            Kind::Histogram,
            &spec(&self.duration_help, duration_labels),
            false,
        )?;
        Ok(())
    }

    #[cold]
    fn bind(
        &self,
        registry: &MetricSet,
        operation: &str,
        success: bool,
    ) -> PyResult<OperationSeries> {
        self.declare(registry, &[])?;
        let inner = &registry.inner;
        let status = if success { "success" } else { "failure" };
        let counter = inner.family(OPERATIONS, Kind::Counter, &["operation", "status", "store"])?;
        let histogram = inner.family(DURATION, Kind::Histogram, &["operation", "store"])?;
        // Label values in the families' (sorted) label-name order.
        let pair = (
            counter.series(&[operation, status, &self.store], inner.clock()),
            histogram.series(&[operation, &self.store], inner.clock()),
        );
        let mut cache = self.cache[usize::from(success)]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() < OPERATION_CACHE_LIMIT || cache.contains_key(operation) {
            cache.insert(operation.into(), (Arc::clone(&pair.0), Arc::clone(&pair.1)));
        }
        Ok(pair)
    }

    #[cold]
    fn record_labelled(
        &self,
        py: Python<'_>,
        registry: &MetricSet,
        operation: &Bound<'_, PyString>,
        seconds: f64,
        success: bool,
        labels: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let operation_name = operation_str(operation)?;
        let extra = given_names(Some(labels), operation_name)?;
        self.declare(registry, &extra)?;
        let merged = PyDict::new(py);
        for_each_label(labels, operation_name, |key, value| {
            merged.set_item(key, value)
        })?;
        merged.set_item(intern!(py, "store"), &*self.store)?;
        merged.set_item(intern!(py, "operation"), operation)?;
        let duration_labels = merged.copy()?;
        merged.set_item(
            intern!(py, "status"),
            if success { "success" } else { "failure" },
        )?;
        let counter = registry.resolve(OPERATIONS, Kind::Counter, 1.0, Some(merged.as_any()))?;
        let histogram = registry.resolve(
            DURATION,
            Kind::Histogram,
            seconds,
            Some(duration_labels.as_any()),
        )?;
        counter.counter_add(OPERATIONS, 1.0)?;
        let exemplar = current_exemplar(py, registry.span_var.as_ref(), &registry.inner);
        Ok(histogram.histogram_observe(DURATION, seconds, exemplar)?)
    }
}

/// The duration of a recorded operation is NaN or infinite: rejected, as one such value would
/// leave the latency histogram's `_sum` meaningless for good.
#[cold]
fn non_finite_duration(operation: &str, seconds: f64) -> PyErr {
    Error::new(
        ErrorKind::InvalidMetricValue,
        operation,
        format!(
            "the duration must be a finite number (got {} seconds)",
            crate::float::format_float(seconds)
        ),
    )
    .into()
}

#[pymethods]
impl OperationRecorder {
    #[new]
    fn new(
        registry: Py<MetricSet>,
        store: &str,
        operations_help: &str,
        duration_help: &str,
    ) -> Self {
        Self {
            registry,
            store: store.into(),
            operations_help: operations_help.into(),
            duration_help: duration_help.into(),
            cache: Default::default(),
        }
    }

    /// Counts one operation (status `success`/`failure`) and observes its latency in seconds
    /// (`duration_ms=` or `duration_seconds`; negative durations count as 0, NaN is rejected).
    /// `success` is read for its truth value (`None`, the default, means success).
    #[pyo3(signature = (operation, duration_seconds = None, success = None, labels = None, *, duration_ms = None))]
    fn record_operation(
        &self,
        py: Python<'_>,
        operation: &Bound<'_, PyString>,
        duration_seconds: Option<f64>,
        success: Option<&Bound<'_, PyAny>>,
        labels: Option<&Bound<'_, PyAny>>,
        duration_ms: Option<f64>,
    ) -> PyResult<()> {
        let name = operation_str(operation)?;
        if name == core::OVERFLOW_VALUE {
            return Err(reserved_value("operation", OPERATIONS));
        }
        let success = match success {
            Some(flag) => flag.is_truthy()?,
            None => true,
        };
        let mut seconds = match (duration_ms, duration_seconds) {
            (Some(ms), _) => ms / 1000.0,
            (None, Some(s)) => s,
            (None, None) => {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    name,
                    "record_operation needs duration_ms= or duration_seconds",
                )
                .into());
            }
        };
        if !seconds.is_finite() {
            return Err(non_finite_duration(name, seconds));
        }
        if seconds < 0.0 {
            seconds = 0.0; // a clock step must not raise into the store
        }
        let registry = self.registry.get();
        if let Some(labels) = labels {
            return self.record_labelled(py, registry, operation, seconds, success, labels);
        }
        let cached = self.cache[usize::from(success)]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .filter(|(c, h)| !c.is_detached() && !h.is_detached())
            .map(|(c, h)| (Arc::clone(c), Arc::clone(h)));
        let (counter, histogram) = match cached {
            Some(pair) => pair,
            None => self.bind(registry, name, success)?,
        };
        counter.counter_add(OPERATIONS, 1.0)?;
        let exemplar = current_exemplar(py, registry.span_var.as_ref(), &registry.inner);
        Ok(histogram.histogram_observe(DURATION, seconds, exemplar)?)
    }
}
