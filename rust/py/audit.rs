//! Python bindings of the audit core: the redactor, the file sink and the async writer.
//!
//! Python values are converted to owned (or call-scoped borrowed) Rust values first; file I/O and
//! waiting happen with the interpreter released (`py.detach`). The writer thread attaches to the
//! interpreter only when the wrapped backend is a Python object.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDate, PyDateAccess, PyDateTime, PyDict, PyFloat, PyFrozenSet, PyInt, PyList,
    PySet, PyString, PyTime, PyTimeAccess, PyTuple, PyType,
};

use crate::audit::chain::ChainKey;
use crate::audit::encode::{write_json_line, write_text_line};
use crate::audit::event::{Event, TEXT_FIELDS, Value, map_set, text_field_index};
use crate::audit::queue::{AsyncQueue, BatchSink, Lines, Offer, Outcome, Overflow};
use crate::audit::redact::Redactor as CoreRedactor;
use crate::audit::sink::{ChainConfig, Durability, FileSink as CoreSink, SinkConfig};
use crate::audit::time::days_from_civil;
use crate::error::{Error, ErrorKind};

/// Containers nested deeper than this are encoded as the string `<max depth exceeded>`.
const MAX_DEPTH: usize = 64;

static ENUM_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn invalid(item: impl Into<String>, reason: impl Into<String>) -> PyErr {
    Error::new(ErrorKind::InvalidArgument, item, reason).into()
}

/// `duration_ms` as a finite `f64`: an `int`, a `float` or any object with `__float__` or
/// `__index__` (what `PyFloat_AsDouble` takes: never text); anything else is rejected naming
/// `duration_ms` (mirrored by the pure core's `check_duration`).
fn duration_arg(obj: &Bound<'_, PyAny>) -> PyResult<f64> {
    let py = obj.py();
    let item = || {
        let repr = obj
            .repr()
            .map_or_else(|_| "<unrepresentable>".to_owned(), |r| py_str_owned(&r));
        format!("duration_ms={repr}")
    };
    let not_a_number = || Error::new(ErrorKind::InvalidArgumentType, item(), "must be a number");
    let number = if let Ok(f) = obj.cast_exact::<PyFloat>() {
        f.value()
    } else {
        let kind = obj.get_type();
        if !(kind.hasattr(intern!(py, "__float__"))? || kind.hasattr(intern!(py, "__index__"))?) {
            return Err(not_a_number().into());
        }
        match obj.extract::<f64>() {
            Ok(value) => value,
            Err(e) if e.is_instance_of::<PyOverflowError>(py) => f64::INFINITY,
            Err(_) => return Err(not_a_number().into()),
        }
    };
    if number.is_finite() {
        Ok(number)
    } else {
        Err(invalid(item(), "must be a finite number"))
    }
}

fn optional_duration(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    match obj {
        Some(value) if !value.is_none() => duration_arg(value).map(Some),
        _ => Ok(None),
    }
}

fn py_str_owned(s: &Bound<'_, PyString>) -> String {
    match s.to_str() {
        Ok(text) => text.to_owned(),
        // Lone surrogates cannot be UTF-8: each offending code unit becomes U+FFFD.
        Err(_) => s.to_string_lossy().into_owned(),
    }
}

fn fallback_text(obj: &Bound<'_, PyAny>) -> String {
    if let Ok(s) = obj.str() {
        py_str_owned(&s)
    } else {
        let name = obj
            .get_type()
            .qualname()
            .map_or_else(|_| "object".to_owned(), |n| n.to_string());
        format!("<unserialisable {name}>")
    }
}

fn key_text(key: &Bound<'_, PyAny>) -> String {
    match key.cast::<PyString>() {
        Ok(s) => py_str_owned(s),
        Err(_) => fallback_text(key),
    }
}

fn float_value(f: f64) -> Value<'static> {
    if f.is_finite() {
        Value::Float(f)
    } else if f.is_nan() {
        Value::Str(Cow::Borrowed("NaN"))
    } else if f > 0.0 {
        Value::Str(Cow::Borrowed("Infinity"))
    } else {
        Value::Str(Cow::Borrowed("-Infinity"))
    }
}

fn int_value(obj: &Bound<'_, PyAny>) -> Value<'static> {
    if let Ok(i) = obj.extract::<i64>() {
        return Value::Int(i);
    }
    match obj.call_method0(intern!(obj.py(), "__repr__")) {
        Ok(digits) => match digits.cast::<PyString>() {
            Ok(s) => Value::BigInt(py_str_owned(s)),
            Err(_) => Value::Str(Cow::Borrowed("<unserialisable int>")),
        },
        Err(_) => Value::Str(Cow::Borrowed("<unserialisable int>")),
    }
}

fn map_value(dict: &Bound<'_, PyDict>, depth: usize) -> Vec<(Cow<'static, str>, Value<'static>)> {
    let mut members = Vec::with_capacity(dict.len());
    for (k, v) in dict.iter() {
        let value = to_value(&v, depth + 1);
        map_set(&mut members, Cow::Owned(key_text(&k)), value);
    }
    members
}

/// The documented normalisation of a Python value into JSON-safe data (mirrored by the pure
/// core): enums become their value; str, int, float, bool, None stay; dict → object (keys via
/// `str()`), list/tuple/set/frozenset → array; date/time/datetime → `isoformat()`; non-finite
/// floats → `"NaN"`/`"Infinity"`/`"-Infinity"`; anything else → `str(value)` (or
/// `<unserialisable TYPE>` when that raises).
fn to_value(obj: &Bound<'_, PyAny>, depth: usize) -> Value<'static> {
    if depth > MAX_DEPTH {
        return Value::Str(Cow::Borrowed("<max depth exceeded>"));
    }
    // Exact built-in types first (they cannot be enum members).
    if obj.is_none() {
        return Value::Null;
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Value::Str(Cow::Owned(py_str_owned(s)));
    }
    if let Ok(b) = obj.cast_exact::<PyBool>() {
        return Value::Bool(b.is_true());
    }
    if obj.cast_exact::<PyInt>().is_ok() {
        return int_value(obj);
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return float_value(f.value());
    }
    if let Ok(d) = obj.cast_exact::<PyDict>() {
        return Value::Map(map_value(d, depth));
    }
    if let Ok(l) = obj.cast_exact::<PyList>() {
        return Value::List(l.iter().map(|v| to_value(&v, depth + 1)).collect());
    }
    let py = obj.py();
    if let Ok(enum_type) = ENUM_TYPE.import(py, "enum", "Enum")
        && obj.is_instance(enum_type).unwrap_or(false)
    {
        return match obj.getattr(intern!(py, "value")) {
            Ok(v) => to_value(&v, depth + 1),
            Err(_) => Value::Str(Cow::Owned(fallback_text(obj))),
        };
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Value::Str(Cow::Owned(py_str_owned(s)));
    }
    if obj.cast::<PyInt>().is_ok() {
        return int_value(obj);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return float_value(f.value());
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return Value::Map(map_value(d, depth));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return Value::List(l.iter().map(|v| to_value(&v, depth + 1)).collect());
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return Value::List(t.iter().map(|v| to_value(&v, depth + 1)).collect());
    }
    if let Ok(s) = obj.cast::<PySet>() {
        return Value::List(s.iter().map(|v| to_value(&v, depth + 1)).collect());
    }
    if let Ok(s) = obj.cast::<PyFrozenSet>() {
        return Value::List(s.iter().map(|v| to_value(&v, depth + 1)).collect());
    }
    if (obj.cast::<PyDate>().is_ok() || obj.cast::<PyTime>().is_ok())
        && let Ok(iso) = obj.call_method0(intern!(py, "isoformat"))
        && let Ok(s) = iso.cast::<PyString>()
    {
        return Value::Str(Cow::Owned(py_str_owned(s)));
    }
    Value::Str(Cow::Owned(fallback_text(obj)))
}

fn metadata_value(obj: Option<&Bound<'_, PyAny>>) -> Vec<(Cow<'static, str>, Value<'static>)> {
    let Some(obj) = obj else { return Vec::new() };
    if obj.is_none() {
        return Vec::new();
    }
    match to_value(obj, 0) {
        Value::Map(members) => members,
        other => vec![(Cow::Borrowed("value"), other)],
    }
}

/// A text argument: `str` borrowed, `None` absent, anything else via `str()`.
fn text_arg<'a>(obj: Option<&'a Bound<'_, PyAny>>) -> Option<Cow<'a, str>> {
    let obj = obj?;
    if obj.is_none() {
        return None;
    }
    match obj.cast::<PyString>() {
        Ok(s) => Some(match s.to_str() {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => Cow::Owned(s.to_string_lossy().into_owned()),
        }),
        Err(_) => Some(Cow::Owned(fallback_text(obj))),
    }
}

fn enum_text(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(py_str_owned(s));
    }
    let value = obj.getattr(intern!(obj.py(), "value"))?;
    Ok(py_str_owned(value.cast::<PyString>()?))
}

fn datetime_micros(dt: &Bound<'_, PyDateTime>) -> i64 {
    let days = days_from_civil(
        i64::from(dt.get_year()),
        u32::from(dt.get_month()),
        u32::from(dt.get_day()),
    );
    let secs = days * 86_400
        + i64::from(dt.get_hour()) * 3600
        + i64::from(dt.get_minute()) * 60
        + i64::from(dt.get_second());
    secs * 1_000_000 + i64::from(dt.get_microsecond())
}

/// Reads an `AuditEvent` (any object with its attributes) into an owned record.
fn event_from_py(obj: &Bound<'_, PyAny>) -> PyResult<Event<'static>> {
    let py = obj.py();
    let event_id = py_str_owned(&obj.getattr(intern!(py, "event_id"))?.str()?);
    let event_type = enum_text(&obj.getattr(intern!(py, "event_type"))?)?;
    let status = enum_text(&obj.getattr(intern!(py, "status"))?)?;
    let timestamp = obj.getattr(intern!(py, "timestamp"))?;
    let timestamp = timestamp
        .cast::<PyDateTime>()
        .map_err(|_| PyTypeError::new_err("AuditEvent.timestamp must be a datetime"))?;
    let mut event = Event {
        event_id: Cow::Owned(event_id),
        event_type: Cow::Owned(event_type),
        timestamp_us: datetime_micros(timestamp),
        status: Cow::Owned(status),
        text: Default::default(),
        duration_ms: None,
        metadata: Vec::new(),
    };
    for (i, name) in TEXT_FIELDS.iter().enumerate() {
        let value = obj.getattr(PyString::intern(py, name))?;
        event.text[i] = text_arg(Some(&value)).map(|c| Cow::Owned(c.into_owned()));
    }
    event.duration_ms = optional_duration(Some(&obj.getattr(intern!(py, "duration_ms"))?))?;
    let metadata = obj.getattr(intern!(py, "metadata"))?;
    event.metadata = metadata_value(Some(&metadata));
    Ok(event)
}

/// A compiled redaction policy: every pattern in one linear-time automaton.
#[pyclass(frozen, module = "truthound.stores.observability._native")]
pub struct Redactor {
    inner: Arc<CoreRedactor>,
}

/// The first of `key#2`, `key#3`... that is not a key of `out` (see `Redactor::redact_map`).
fn unique_py_key<'py>(
    out: &Bound<'py, PyDict>,
    key: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let text = py_str_owned(key.cast::<PyString>()?);
    let mut n = 2u64;
    loop {
        let candidate = PyString::new(out.py(), &format!("{text}#{n}")).into_any();
        if !out.contains(&candidate)? {
            return Ok(candidate);
        }
        n += 1;
    }
}

fn redact_py<'py>(
    r: &CoreRedactor,
    obj: &Bound<'py, PyAny>,
    depth: usize,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    if depth > MAX_DEPTH {
        return Ok(obj.clone());
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let text = s.to_cow().unwrap_or_else(|_| Cow::Owned(py_str_owned(s)));
        return Ok(match r.redact_text(&text) {
            Some(red) => PyString::new(py, &red).into_any(),
            None => obj.clone(),
        });
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let out = PyDict::new(py);
        for (k, v) in d.iter() {
            let sensitive = k
                .cast::<PyString>()
                .is_ok_and(|s| r.is_sensitive_key(&py_str_owned(s)));
            let value = if sensitive {
                PyString::new(py, r.replacement()).into_any()
            } else {
                redact_py(r, &v, depth + 1)?
            };
            let key = if k.is_instance_of::<PyString>() {
                let key = redact_py(r, &k, depth + 1)?;
                if out.contains(&key)? {
                    // Two keys made equal by redaction: the later one is kept as `key#2`...
                    unique_py_key(&out, &key)?
                } else {
                    key
                }
            } else {
                k
            };
            out.set_item(key, value)?;
        }
        return Ok(out.into_any());
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let items = l
            .iter()
            .map(|v| redact_py(r, &v, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(PyList::new(py, items)?.into_any());
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let items = t
            .iter()
            .map(|v| redact_py(r, &v, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(PyTuple::new(py, items)?.into_any());
    }
    if let Ok(s) = obj.cast::<PySet>() {
        let items = s
            .iter()
            .map(|v| redact_py(r, &v, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(PySet::new(py, &items)?.into_any());
    }
    if let Ok(s) = obj.cast::<PyFrozenSet>() {
        let items = s
            .iter()
            .map(|v| redact_py(r, &v, depth + 1))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(PyFrozenSet::new(py, &items)?.into_any());
    }
    Ok(obj.clone())
}

#[pymethods]
impl Redactor {
    /// Compiles `patterns` (rejecting, by name, any the linear-time engine cannot express or that
    /// can match the empty string). `fields` are matched case-insensitively against dict keys and
    /// event field names: as substrings, or whole keys with `exact_fields`.
    #[new]
    #[pyo3(signature = (patterns, replacement, fields, exact_fields=false))]
    fn new(
        patterns: Vec<String>,
        replacement: String,
        fields: Vec<String>,
        exact_fields: bool,
    ) -> PyResult<Self> {
        let inner = CoreRedactor::new(&patterns, &replacement, &fields, exact_fields)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// `text` with every pattern match replaced, in one pass.
    fn redact_text(&self, text: &Bound<'_, PyString>) -> String {
        let owned = py_str_owned(text);
        self.inner.redact_text(&owned).unwrap_or(owned)
    }

    /// Whether a key or field name is sensitive.
    fn is_sensitive(&self, key: &str) -> bool {
        self.inner.is_sensitive_key(key)
    }

    /// A redacted copy of arbitrary data: strings (values, str keys, inside lists, tuples, sets)
    /// are pattern-redacted, values under sensitive str keys are replaced whole, other values are
    /// returned as they are.
    fn redact<'py>(&self, data: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        redact_py(&self.inner, data, 0)
    }

    /// Redacts an event's `event_id` and text fields (see the record format) from `source`
    /// into `target` (normally a copy): `None` stays `None`, non-strings are converted with
    /// `str()`, fields named sensitive are replaced whole (`event_id` is only pattern-redacted),
    /// and unchanged strings are left as they are.
    fn redact_attributes(
        &self,
        source: &Bound<'_, PyAny>,
        target: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = source.py();
        let names = std::iter::once("event_id").chain(TEXT_FIELDS.iter().copied());
        for (i, name) in names.enumerate() {
            let name = PyString::intern(py, name);
            let value = source.getattr(&name)?;
            if value.is_none() {
                continue;
            }
            let text = text_arg(Some(&value))
                .map(Cow::into_owned)
                .unwrap_or_default();
            if i > 0 && !text.is_empty() && self.inner.is_sensitive_key(TEXT_FIELDS[i - 1]) {
                target.setattr(&name, self.inner.replacement())?;
            } else if let Some(red) = self.inner.redact_text(&text) {
                target.setattr(&name, red)?;
            } else if !value.is_exact_instance_of::<PyString>() {
                target.setattr(&name, text)?;
            }
        }
        Ok(())
    }

    /// The replacement text.
    #[getter]
    fn replacement(&self) -> &str {
        self.inner.replacement()
    }
}

fn apply_redactors(event: &mut Event<'_>, first: Option<&Redactor>, second: Option<&CoreRedactor>) {
    if let Some(r) = first {
        r.inner.redact_event(event);
    }
    if let Some(r) = second {
        r.redact_event(event);
    }
}

fn parse_durability(name: &str, every_events: u64, interval_ms: u64) -> PyResult<Durability> {
    Ok(match name {
        "none" => Durability::None,
        "always" => Durability::Always,
        "periodic" => Durability::Periodic {
            every_events,
            interval: Duration::from_millis(interval_ms),
        },
        other => {
            return Err(invalid(
                other,
                "durability must be 'none', 'periodic' or 'always'",
            ));
        }
    })
}

/// A rotating, append-only audit segment writer shared by threads and processes.
///
/// Fork-safe: a forked child never uses the descriptors, locks or threads it inherited; on its
/// first write it opens the files again and joins the chain as a writer of its own. Counters
/// are per process.
#[pyclass(frozen, module = "truthound.stores.observability._native")]
pub struct FileSink {
    inner: Arc<CoreSink>,
    text_format: bool,
    redactor: Option<Arc<CoreRedactor>>,
}

impl FileSink {
    fn encode(&self, event: &Event<'_>, out: &mut Vec<u8>) {
        if self.text_format {
            write_text_line(out, event);
        } else {
            write_json_line(out, event);
        }
    }

    fn write(&self, py: Python<'_>, buf: &[u8]) -> PyResult<()> {
        let sink = &self.inner;
        py.detach(|| sink.write_lines(buf, 1)).map_err(PyErr::from)
    }
}

#[allow(clippy::too_many_arguments)]
fn fields_event<'a>(
    event_type: &'a str,
    status: &'a str,
    store_type: &'a str,
    store_id: &'a str,
    operation: &'a str,
    item_id: Option<&'a Bound<'_, PyAny>>,
    user_id: Option<&'a Bound<'_, PyAny>>,
    duration_ms: Option<f64>,
    metadata: Option<&Bound<'_, PyAny>>,
    error_message: Option<&'a Bound<'_, PyAny>>,
    extra: Option<&'a Bound<'_, PyDict>>,
) -> PyResult<Event<'a>> {
    let mut event = Event::new(Cow::Borrowed(event_type), Cow::Borrowed(status));
    event.text[0] = Some(Cow::Borrowed(store_type));
    event.text[1] = Some(Cow::Borrowed(store_id));
    event.text[2] = Some(Cow::Borrowed(operation));
    event.text[4] = text_arg(item_id);
    event.text[5] = text_arg(user_id);
    event.text[16] = text_arg(error_message);
    event.duration_ms = duration_ms;
    event.metadata = metadata_value(metadata);
    if let Some(extra) = extra {
        for (k, v) in extra.iter() {
            let name = key_text(&k);
            let Some(i) = text_field_index(&name) else {
                return Err(invalid(name, "is not an audit event text field"));
            };
            event.text[i] = text_arg(Some(&v)).map(|c| Cow::Owned(c.into_owned()));
        }
    }
    Ok(event)
}

#[pymethods]
impl FileSink {
    /// Opens (creating the directory and file) the active segment; see the module docs of the
    /// core for naming, locking, repair and compression.
    #[new]
    ///
    /// Tamper evidence: with `integrity_key` (bytes; `key_source` names where it came from, for
    /// errors) every record is sealed into the keyed chain and checkpoints are written at open,
    /// rotation, retention, close and every `checkpoint_interval` seconds (0: no periodic ones).
    /// `max_age_seconds` deletes closed segments older than that. `writer_id` and `frozen_clock`
    /// (microseconds) fix what checkpoints record, for reproducible output in tests.
    #[pyo3(signature = (directory, stem, suffix, *, daily=false, max_bytes=None, max_files=None,
        compress=false, durability="periodic", sync_every_events=0, sync_interval_ms=1000,
        text_format=false, redactor=None, integrity_key=None, key_source="integrity_key",
        checkpoint_interval=60.0, writer_id=None, max_age_seconds=None, frozen_clock=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        directory: std::path::PathBuf,
        stem: String,
        suffix: String,
        daily: bool,
        max_bytes: Option<u64>,
        max_files: Option<usize>,
        compress: bool,
        durability: &str,
        sync_every_events: u64,
        sync_interval_ms: u64,
        text_format: bool,
        redactor: Option<&Redactor>,
        integrity_key: Option<&[u8]>,
        key_source: &str,
        checkpoint_interval: f64,
        writer_id: Option<String>,
        max_age_seconds: Option<f64>,
        frozen_clock: Option<i64>,
    ) -> PyResult<Self> {
        if !(checkpoint_interval.is_finite() && checkpoint_interval >= 0.0) {
            return Err(invalid(
                format!("checkpoint_interval_seconds={checkpoint_interval}"),
                "must be a non-negative number of seconds",
            ));
        }
        let max_age = match max_age_seconds {
            None => None,
            Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
            Some(s) => return Err(invalid(format!("max_age_seconds={s}"), "must be positive")),
        };
        let chain = match integrity_key {
            None => None,
            Some(key) => Some(ChainConfig {
                key: ChainKey::new(key, key_source)?,
                text_format,
                interval: Duration::from_secs_f64(checkpoint_interval),
                writer: writer_id,
            }),
        };
        let config = SinkConfig {
            directory,
            stem,
            suffix,
            daily,
            max_bytes,
            max_files,
            compress,
            durability: parse_durability(durability, sync_every_events, sync_interval_ms)?,
            max_age,
            chain,
        };
        let sink = py.detach(|| CoreSink::open(config, frozen_clock))?;
        Ok(Self {
            inner: sink,
            text_format,
            redactor: redactor.map(|r| Arc::clone(&r.inner)),
        })
    }

    /// Writes a periodic checkpoint if one is due (the timer calls this on its own).
    fn checkpoint_if_due(&self, py: Python<'_>) -> PyResult<()> {
        let sink = &self.inner;
        py.detach(|| sink.checkpoint_if_due()).map_err(PyErr::from)
    }

    /// Fixes the time written into checkpoints (microseconds since the epoch; `None`: the real
    /// clock). Tests only.
    #[pyo3(signature = (micros=None))]
    fn freeze_clock(&self, micros: Option<i64>) {
        self.inner.freeze_clock(micros);
    }

    /// The public id of the integrity key (`None` when records are not chained).
    #[getter]
    fn key_id(&self) -> Option<String> {
        self.inner
            .config()
            .chain
            .as_ref()
            .map(|c| c.key.id().to_owned())
    }

    /// Whether the most recent write failed (cleared by the next successful one).
    #[getter]
    fn failing(&self) -> bool {
        self.inner
            .stats()
            .failing
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checkpoints this sink wrote.
    #[getter]
    fn checkpoints(&self) -> u64 {
        self.inner
            .stats()
            .checkpoints
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Segments this sink deleted (`max_files`, `max_age_seconds`).
    #[getter]
    fn pruned_segments(&self) -> u64 {
        self.inner
            .stats()
            .pruned_segments
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The line this sink would write for `event` (after `redactor`, then its own redactor).
    #[pyo3(signature = (event, redactor=None))]
    fn encode_event<'py>(
        &self,
        py: Python<'py>,
        event: &Bound<'py, PyAny>,
        redactor: Option<&Redactor>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut record = event_from_py(event)?;
        apply_redactors(&mut record, redactor, self.redactor.as_deref());
        let mut out = Vec::with_capacity(512);
        self.encode(&record, &mut out);
        Ok(PyBytes::new(py, &out))
    }

    /// Writes one `AuditEvent` (synchronously, interpreter released during I/O).
    #[pyo3(signature = (event, redactor=None))]
    fn log_event(
        &self,
        py: Python<'_>,
        event: &Bound<'_, PyAny>,
        redactor: Option<&Redactor>,
    ) -> PyResult<()> {
        let mut record = event_from_py(event)?;
        apply_redactors(&mut record, redactor, self.redactor.as_deref());
        let mut out = Vec::with_capacity(512);
        self.encode(&record, &mut out);
        self.write(py, &out)
    }

    /// Builds, redacts, encodes and writes an event from its fields (fresh id, current UTC
    /// time); `extra` holds any other text fields by name.
    #[pyo3(signature = (redactor, event_type, status, store_type, store_id, operation, item_id,
        user_id, duration_ms, metadata, error_message, extra))]
    #[allow(clippy::too_many_arguments)]
    fn log_fields(
        &self,
        py: Python<'_>,
        redactor: Option<&Redactor>,
        event_type: &str,
        status: &str,
        store_type: &str,
        store_id: &str,
        operation: &str,
        item_id: Option<&Bound<'_, PyAny>>,
        user_id: Option<&Bound<'_, PyAny>>,
        duration_ms: Option<&Bound<'_, PyAny>>,
        metadata: Option<&Bound<'_, PyAny>>,
        error_message: Option<&Bound<'_, PyAny>>,
        extra: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let mut record = fields_event(
            event_type,
            status,
            store_type,
            store_id,
            operation,
            item_id,
            user_id,
            optional_duration(duration_ms)?,
            metadata,
            error_message,
            extra,
        )?;
        apply_redactors(&mut record, redactor, self.redactor.as_deref());
        let mut out = Vec::with_capacity(512);
        self.encode(&record, &mut out);
        self.write(py, &out)
    }

    /// Appends pre-encoded whole lines (`events` records) with one write.
    fn write_lines(&self, py: Python<'_>, data: &[u8], events: u64) -> PyResult<()> {
        let sink = &self.inner;
        py.detach(|| sink.write_lines(data, events))
            .map_err(PyErr::from)
    }

    /// Syncs per the durability policy.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let sink = &self.inner;
        py.detach(|| sink.flush()).map_err(PyErr::from)
    }

    /// Forces `fdatasync` whatever the policy.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        let sink = &self.inner;
        py.detach(|| sink.sync()).map_err(PyErr::from)
    }

    /// Flushes, waits for background compression, and closes. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let sink = &self.inner;
        py.detach(|| sink.close()).map_err(PyErr::from)
    }

    /// Segments on disk, oldest first: `(path, date, stamp, compressed)`.
    fn segments(&self, py: Python<'_>) -> PyResult<Vec<(String, String, String, bool)>> {
        let sink = &self.inner;
        let segments = py.detach(|| sink.segments())?;
        Ok(segments
            .into_iter()
            .map(|s| (s.path.display().to_string(), s.date, s.stamp, s.compressed))
            .collect())
    }

    /// Shifts the sink's clock for day rotation (tests only).
    fn set_clock_offset(&self, seconds: f64) {
        self.inner.set_clock_offset_us((seconds * 1e6) as i64);
    }

    /// The file records are appended to now.
    #[getter]
    fn active_path(&self) -> String {
        self.inner.active_path().display().to_string()
    }

    #[getter]
    fn text_format(&self) -> bool {
        self.text_format
    }

    #[getter]
    fn closed(&self) -> bool {
        self.inner.is_closed()
    }

    #[getter]
    fn written_events(&self) -> u64 {
        self.inner
            .stats()
            .written_events
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[getter]
    fn failed_events(&self) -> u64 {
        self.inner
            .stats()
            .failed_events
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[getter]
    fn rotations(&self) -> u64 {
        self.inner
            .stats()
            .rotations
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[getter]
    fn repaired_lines(&self) -> u64 {
        self.inner
            .stats()
            .repaired_lines
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[getter]
    fn compressed_segments(&self) -> u64 {
        self.inner
            .stats()
            .compressed_segments
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[getter]
    fn compression_failures(&self) -> u64 {
        self.inner
            .stats()
            .compression_failures
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[getter]
    fn syncs(&self) -> u64 {
        self.inner
            .stats()
            .syncs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[getter]
    fn last_error(&self) -> Option<String> {
        self.inner.last_error()
    }
}

struct LineSink(Arc<CoreSink>);

impl BatchSink<Lines> for LineSink {
    fn write_batch(&mut self, batch: &mut Lines) -> Outcome {
        match self.0.write_lines(&batch.bytes, batch.count as u64) {
            Ok(()) => Outcome::PERSISTED,
            Err(_) => Outcome::failed(batch.count as u64),
        }
    }
    fn flush(&mut self) {
        let _ = self.0.flush();
    }
    fn close(&mut self) {
        let _ = self.0.flush();
    }
}

/// The interpreter-exit handshake of a writer that delivers to a Python object.
///
/// A thread that is not Python's own must not attach to the interpreter once finalisation has
/// begun: CPython (3.11 to 3.13) ends such a thread with `pthread_exit`, whose forced unwinding
/// through our frames crashes the process. So, before finalisation (an `atexit` handler),
/// [`AsyncWriter::abandon`] marks delivery as abandoned and waits until the writer is out of the
/// interpreter; from then on the writer never attaches again and discards (and counts) what is
/// left. Lock-free, and scoped to one process by the fork generation, so a forked child neither
/// inherits a held lock nor sees its parent's state.
#[derive(Default)]
struct ExitGate {
    /// `fork::generation() + 1` of the process that abandoned delivery (0: none).
    abandoned_in: AtomicU64,
    /// `fork::generation() + 1` of the process whose writer is in the interpreter (0: none).
    attached_in: AtomicU64,
}

impl ExitGate {
    fn here() -> u64 {
        crate::fork::generation() + 1
    }

    fn abandoned(&self) -> bool {
        self.abandoned_in.load(Ordering::SeqCst) == Self::here()
    }

    /// Announces an attachment; `false` (and nothing announced) once delivery is abandoned.
    /// The announcement is made before the check, so `abandon` cannot miss a writer that
    /// passed it (both sides use sequentially consistent operations).
    fn enter(&self) -> bool {
        self.attached_in.store(Self::here(), Ordering::SeqCst);
        if self.abandoned() {
            self.leave();
            return false;
        }
        true
    }

    fn leave(&self) {
        self.attached_in.store(0, Ordering::SeqCst);
    }

    /// Abandons delivery and waits (up to `timeout`) until the writer is out of the
    /// interpreter. Polls every millisecond: this runs once, at interpreter exit, and a
    /// lock-free handshake needs no lock that a fork could leave held.
    fn abandon(&self, timeout: Duration) -> bool {
        let here = Self::here();
        self.abandoned_in.store(here, Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        while self.attached_in.load(Ordering::SeqCst) == here {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

/// Events given up at interpreter exit are leaked, not dropped: dropping needs the interpreter,
/// which is going away with them.
fn leak_all(batch: &mut Vec<Py<PyAny>>) -> u64 {
    let count = batch.len() as u64;
    for event in batch.drain(..) {
        std::mem::forget(event);
    }
    count
}

struct ObjectSink {
    target: Arc<Py<PyAny>>,
    last_error: Arc<ArcSwapOption<String>>,
    gate: Arc<ExitGate>,
}

impl BatchSink<Vec<Py<PyAny>>> for ObjectSink {
    fn write_batch(&mut self, batch: &mut Vec<Py<PyAny>>) -> Outcome {
        let gate = &self.gate;
        if !gate.enter() {
            return Outcome {
                failed: 0,
                discarded: leak_all(batch),
            };
        }
        let target = &self.target;
        let last_error = &self.last_error;
        let outcome = Python::try_attach(|py| {
            let target = target.bind(py);
            let mut outcome = Outcome::PERSISTED;
            let mut events = batch.drain(..);
            for event in events.by_ref() {
                if gate.abandoned() {
                    // Interpreter exit: this event and the rest are given up (and counted).
                    outcome.discarded = 1 + events.len() as u64;
                    drop(event);
                    break;
                }
                if let Err(e) = target.call_method1(intern!(py, "log"), (event,)) {
                    outcome.failed += 1;
                    last_error.store(Some(Arc::new(e.to_string())));
                }
            }
            // Attached here: the remaining events are dropped normally.
            drop(events);
            outcome
        });
        // Out of the interpreter again (the attachment ended with the closure).
        gate.leave();
        // `None`: the interpreter is gone, nothing could be delivered.
        outcome.unwrap_or_else(|| Outcome {
            failed: 0,
            discarded: leak_all(batch),
        })
    }
    fn flush(&mut self) {
        let gate = &self.gate;
        if !gate.enter() {
            return;
        }
        let target = &self.target;
        let last_error = &self.last_error;
        Python::try_attach(|py| {
            let target = target.bind(py);
            if target.hasattr(intern!(py, "flush")).unwrap_or(false)
                && let Err(e) = target.call_method0(intern!(py, "flush"))
            {
                last_error.store(Some(Arc::new(e.to_string())));
            }
        });
        gate.leave();
    }
    fn close(&mut self) {
        self.flush();
    }
}

enum Mode {
    Lines {
        queue: AsyncQueue<Lines>,
        sink: Py<FileSink>,
    },
    Objects {
        queue: AsyncQueue<Vec<Py<PyAny>>>,
        /// Lock-free, so a forked child can read and replace it whatever other threads did.
        last_error: Arc<ArcSwapOption<String>>,
        gate: Arc<ExitGate>,
    },
}

/// A bounded queue drained by a native writer thread into a `FileSink` (encoded on the caller's
/// thread, written in batches with the interpreter released) or into any Python object with a
/// `log(event)` method (the writer attaches to the interpreter to deliver).
///
/// Fork-safe: the queue, its counters and its thread belong to one process. A forked child
/// starts with an empty queue and zero counters, and starts a writer thread of its own on its
/// first event; what the parent had queued is written by the parent only.
#[pyclass(frozen, module = "truthound.stores.observability._native")]
pub struct AsyncWriter {
    mode: Mode,
}

fn offer_result(offer: Offer) -> PyResult<bool> {
    match offer {
        Offer::Accepted => Ok(true),
        Offer::Dropped => Ok(false),
        Offer::Closed => Err(Error::new(
            ErrorKind::AuditClosed,
            "AsyncAuditBackend",
            "the async audit queue is closed",
        )
        .into()),
    }
}

impl AsyncWriter {
    fn push_line(&self, py: Python<'_>, line: Vec<u8>) -> PyResult<bool> {
        let Mode::Lines { queue, .. } = &self.mode else {
            return Err(PyTypeError::new_err(
                "this writer delivers AuditEvent objects",
            ));
        };
        let add = |b: &mut Lines| {
            b.bytes.extend_from_slice(&line);
            b.count += 1;
        };
        match queue.try_offer(add) {
            Ok(offer) => offer_result(offer),
            Err(add) => offer_result(py.detach(|| queue.offer(add))),
        }
    }

    fn stats(&self) -> crate::audit::queue::Counts {
        match &self.mode {
            Mode::Lines { queue, .. } => queue.stats(),
            Mode::Objects { queue, .. } => queue.stats(),
        }
    }
}

#[pymethods]
impl AsyncWriter {
    /// Starts the writer thread. `overflow`: `"block"` (wait up to `block_timeout` seconds for
    /// room, then drop and count) or `"drop_newest"` (drop and count at once).
    #[new]
    #[pyo3(signature = (target, capacity, flush_interval, overflow="block", block_timeout=5.0))]
    fn new(
        target: &Bound<'_, PyAny>,
        capacity: usize,
        flush_interval: f64,
        overflow: &str,
        block_timeout: f64,
    ) -> PyResult<Self> {
        let overflow = match overflow {
            "block" => Overflow::Block(Duration::from_secs_f64(block_timeout.max(0.0))),
            "drop_newest" => Overflow::DropNewest,
            other => return Err(invalid(other, "overflow must be 'block' or 'drop_newest'")),
        };
        if capacity == 0 {
            return Err(invalid("queue_size=0", "must be at least 1"));
        }
        if !(flush_interval.is_finite() && flush_interval > 0.0) {
            return Err(invalid(
                format!("flush_interval_seconds={flush_interval}"),
                "must be positive",
            ));
        }
        let interval = Duration::from_secs_f64(flush_interval);
        let spawn_error = |e: std::io::Error| {
            Error::new(
                ErrorKind::AuditIo,
                "truthound-audit-writer",
                format!("cannot start the writer thread: {e}"),
            )
        };
        let mode = if let Ok(sink) = target.cast::<FileSink>() {
            let core = Arc::clone(&sink.get().inner);
            let queue = AsyncQueue::start(
                Box::new(move || Box::new(LineSink(Arc::clone(&core)))),
                capacity,
                overflow,
                interval,
            )
            .map_err(spawn_error)?;
            Mode::Lines {
                queue,
                sink: sink.clone().unbind(),
            }
        } else {
            if !target.hasattr(intern!(target.py(), "log"))? {
                return Err(PyTypeError::new_err(
                    "AsyncAuditBackend needs a backend with a log(event) method",
                ));
            }
            let last_error = Arc::new(ArcSwapOption::empty());
            let gate = Arc::new(ExitGate::default());
            let (target, errors, sink_gate) = (
                Arc::new(target.clone().unbind()),
                Arc::clone(&last_error),
                Arc::clone(&gate),
            );
            let queue = AsyncQueue::start(
                Box::new(move || {
                    Box::new(ObjectSink {
                        target: Arc::clone(&target),
                        last_error: Arc::clone(&errors),
                        gate: Arc::clone(&sink_gate),
                    })
                }),
                capacity,
                overflow,
                interval,
            )
            .map_err(spawn_error)?;
            Mode::Objects {
                queue,
                last_error,
                gate,
            }
        };
        Ok(Self { mode })
    }

    /// Whether events are encoded natively (the target is a `FileSink`).
    #[getter]
    fn native_target(&self) -> bool {
        matches!(self.mode, Mode::Lines { .. })
    }

    /// Queues an `AuditEvent`: encoded now for a `FileSink` target, or the object itself for a
    /// Python target. Returns `False` when it was dropped (counted) because the queue was full.
    #[pyo3(signature = (event, redactor=None))]
    fn log_event(
        &self,
        py: Python<'_>,
        event: &Bound<'_, PyAny>,
        redactor: Option<&Redactor>,
    ) -> PyResult<bool> {
        match &self.mode {
            Mode::Lines { sink, .. } => {
                let sink = sink.get();
                let mut record = event_from_py(event)?;
                apply_redactors(&mut record, redactor, sink.redactor.as_deref());
                let mut out = Vec::with_capacity(512);
                sink.encode(&record, &mut out);
                self.push_line(py, out)
            }
            Mode::Objects { queue, .. } => {
                let object = event.clone().unbind();
                match queue.try_offer(|b: &mut Vec<Py<PyAny>>| b.push(object)) {
                    Ok(offer) => offer_result(offer),
                    Err(add) => offer_result(py.detach(|| queue.offer(add))),
                }
            }
        }
    }

    /// The fast path of `AuditLogger`: builds, redacts and encodes the event natively and queues
    /// the line (only for a `FileSink` target).
    #[pyo3(signature = (redactor, event_type, status, store_type, store_id, operation, item_id,
        user_id, duration_ms, metadata, error_message, extra))]
    #[allow(clippy::too_many_arguments)]
    fn log_fields(
        &self,
        py: Python<'_>,
        redactor: Option<&Redactor>,
        event_type: &str,
        status: &str,
        store_type: &str,
        store_id: &str,
        operation: &str,
        item_id: Option<&Bound<'_, PyAny>>,
        user_id: Option<&Bound<'_, PyAny>>,
        duration_ms: Option<&Bound<'_, PyAny>>,
        metadata: Option<&Bound<'_, PyAny>>,
        error_message: Option<&Bound<'_, PyAny>>,
        extra: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<bool> {
        let Mode::Lines { sink, .. } = &self.mode else {
            return Err(PyTypeError::new_err("log_fields needs a FileSink target"));
        };
        let sink = sink.get();
        let mut record = fields_event(
            event_type,
            status,
            store_type,
            store_id,
            operation,
            item_id,
            user_id,
            optional_duration(duration_ms)?,
            metadata,
            error_message,
            extra,
        )?;
        apply_redactors(&mut record, redactor, sink.redactor.as_deref());
        let mut out = Vec::with_capacity(512);
        sink.encode(&record, &mut out);
        self.push_line(py, out)
    }

    /// Waits (interpreter released) until everything queued before the call is written and the
    /// target flushed. `False` on timeout.
    fn flush(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = Duration::from_secs_f64(timeout.clamp(0.0, 1e9));
        match &self.mode {
            Mode::Lines { queue, .. } => py.detach(|| queue.flush(timeout)),
            Mode::Objects { queue, .. } => py.detach(|| queue.flush(timeout)),
        }
    }

    /// Stops accepting, drains, flushes the target and joins the writer. `False` on timeout.
    fn close(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = Duration::from_secs_f64(timeout.clamp(0.0, 1e9));
        match &self.mode {
            Mode::Lines { queue, .. } => py.detach(|| queue.close(timeout)),
            Mode::Objects { queue, .. } => py.detach(|| queue.close(timeout)),
        }
    }

    #[getter]
    fn closed(&self) -> bool {
        match &self.mode {
            Mode::Lines { queue, .. } => queue.is_closed(),
            Mode::Objects { queue, .. } => queue.is_closed(),
        }
    }

    #[getter]
    fn capacity(&self) -> usize {
        match &self.mode {
            Mode::Lines { queue, .. } => queue.capacity(),
            Mode::Objects { queue, .. } => queue.capacity(),
        }
    }

    /// Events accepted into the queue.
    #[getter]
    fn accepted(&self) -> u64 {
        self.stats().accepted
    }

    /// Events refused because the queue was full (exact).
    #[getter]
    fn dropped(&self) -> u64 {
        self.stats().dropped
    }

    /// Events the target accepted.
    #[getter]
    fn persisted(&self) -> u64 {
        self.stats().persisted
    }

    /// Events the target failed to write.
    #[getter]
    fn failed(&self) -> u64 {
        self.stats().failed
    }

    /// Events accepted but given up without being delivered (interpreter exit, see `abandon`).
    #[getter]
    fn discarded(&self) -> u64 {
        self.stats().discarded
    }

    /// Interpreter exit, before finalisation: stops delivering to a Python target (the writer
    /// thread never attaches to the interpreter again; what it has not delivered is discarded
    /// and counted in `discarded`) and waits, interpreter released, up to `timeout` seconds for
    /// the writer to leave the interpreter and account for every queued event. `True` once it
    /// has (always, for a `FileSink` target, whose writer never needs the interpreter).
    /// Irreversible.
    fn abandon(&self, py: Python<'_>, timeout: f64) -> bool {
        let timeout = Duration::from_secs_f64(timeout.clamp(0.0, 1e9));
        match &self.mode {
            Mode::Lines { .. } => true,
            Mode::Objects { queue, gate, .. } => py.detach(|| {
                let deadline = Instant::now() + timeout;
                // Then let the writer count what is still queued as discarded (it no longer
                // attaches, so this is quick).
                gate.abandon(timeout)
                    && queue.flush(deadline.saturating_duration_since(Instant::now()))
            }),
        }
    }

    /// Events accepted and not yet written.
    #[getter]
    fn pending(&self) -> u64 {
        match &self.mode {
            Mode::Lines { queue, .. } => queue.pending(),
            Mode::Objects { queue, .. } => queue.pending(),
        }
    }

    /// The target's last error.
    #[getter]
    fn last_error(&self) -> Option<String> {
        match &self.mode {
            Mode::Lines { sink, .. } => sink.get().inner.last_error(),
            Mode::Objects { last_error, .. } => last_error.load_full().map(|e| (*e).clone()),
        }
    }
}

/// The JSON-safe normal form of `value` that both cores encode (see the documentation).
#[pyfunction]
pub fn normalize_value(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    fn back(py: Python<'_>, v: &Value<'_>) -> PyResult<Py<PyAny>> {
        Ok(match v {
            Value::Null => py.None(),
            Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
            Value::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
            Value::BigInt(d) => py
                .import("builtins")?
                .getattr("int")?
                .call1((d.as_str(),))?
                .unbind(),
            Value::Float(f) => PyFloat::new(py, *f).into_any().unbind(),
            Value::Str(s) => PyString::new(py, s).into_any().unbind(),
            Value::List(items) => {
                let items = items
                    .iter()
                    .map(|i| back(py, i))
                    .collect::<PyResult<Vec<_>>>()?;
                PyList::new(py, items)?.into_any().unbind()
            }
            Value::Map(members) => {
                let d = PyDict::new(py);
                for (k, v) in members {
                    d.set_item(k.as_ref(), back(py, v)?)?;
                }
                d.into_any().unbind()
            }
        })
    }
    back(py, &to_value(value, 0))
}

/// `duration_ms` checked and converted: a finite `float` from an `int`, a `float` or any object
/// with `__float__`/`__index__`; anything else raises `InvalidArgumentError` naming it.
#[pyfunction]
pub fn check_duration(value: &Bound<'_, PyAny>) -> PyResult<f64> {
    duration_arg(value)
}

/// A fresh random (version 4) UUID, hyphenated, lower case: the default `event_id`.
#[pyfunction]
pub fn new_event_id() -> String {
    crate::audit::event::new_event_id()
}
