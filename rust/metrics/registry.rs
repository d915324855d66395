//! Families and series: the concurrent storage behind every backend.
//!
//! Concurrency guarantees:
//! - Recording into an existing series takes no lock: the family is found through an immutable,
//!   atomically swapped name map (`ArcSwap`), the series through one of 16 independently locked
//!   shards (a shared read lock, uncontended unless a new series is being inserted into the same
//!   shard), and the value changes with one atomic operation on one cell. Summaries, which keep a
//!   sketch, lock only their own series.
//! - A scrape copies the ordered list of series (a brief read lock per family) and then reads the
//!   cells without any lock, so it never blocks writers while it encodes.
//! - A scrape sees each histogram consistently: buckets hold non-cumulative counts, and the
//!   cumulative buckets, the `+Inf` bucket and `_count` are all derived from one read of them, so
//!   `+Inf == _count` and the buckets are monotonic whatever writers do meanwhile. (`_sum` is read
//!   separately and may include or miss observations in flight at that instant.)

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use arc_swap::ArcSwap;
use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;

use super::cells::Cells;
use super::exposition_text::escape_label_value;
use super::multiprocess::format::{self as mpformat, SLOT_HEADER};
use super::multiprocess::read::Aggregate;
use super::multiprocess::slab::Slab;
use super::multiprocess::{GaugeMode, MultiprocessCounters, wall_clock};
use super::names::{self, Kind};
use super::sketch::{Sketch, SketchParams, WindowedSketch};
use crate::error::{Error, ErrorKind, Result};
use crate::float::{format_float, format_label_float};
use crate::fork;

/// The label value of every label of a family's overflow series.
pub const OVERFLOW_VALUE: &str = "__overflow__";
/// Exemplar label sets are limited to 128 UTF-8 code points (names and values together).
pub const EXEMPLAR_MAX_CODE_POINTS: usize = 128;
const SHARDS: usize = 16;

/// Seconds since the Unix epoch; injectable so tests can freeze time in both cores.
pub trait Clock: Send + Sync {
    fn now(&self) -> f64;
}

/// A clock stopped at one instant (aggregates are read at the time of the scrape).
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub f64);

impl Clock for FixedClock {
    fn now(&self) -> f64 {
        self.0
    }
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }
}

/// Settings of a registry (one backend).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    pub prefix: String,
    pub default_labels: Vec<(String, String)>,
    pub buckets: Vec<f64>,
    pub quantiles: Vec<f64>,
    pub max_series_per_metric: usize,
    pub summary_max_age: f64,
    pub summary_age_buckets: usize,
    pub summary_relative_accuracy: f64,
    pub summary_max_bins: usize,
    /// The multiprocess directory: values live in a memory-mapped file there (see
    /// [`super::multiprocess`]), and reads aggregate every process's file.
    pub multiprocess_dir: Option<std::path::PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            default_labels: Vec::new(),
            buckets: vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                10.0,
            ],
            quantiles: vec![0.5, 0.9, 0.95, 0.99],
            max_series_per_metric: 10_000,
            summary_max_age: 600.0,
            summary_age_buckets: 5,
            summary_relative_accuracy: 0.01,
            summary_max_bins: 2048,
            multiprocess_dir: None,
        }
    }
}

/// Checks bucket upper bounds; drops a trailing `+Inf` (always implied).
pub fn validate_buckets(metric: &str, buckets: &[f64]) -> Result<Vec<f64>> {
    let mut bounds: Vec<f64> = buckets.to_vec();
    if bounds.last() == Some(&f64::INFINITY) {
        bounds.pop();
    }
    let bad = |reason: &str| {
        Error::new(
            ErrorKind::InvalidArgument,
            metric,
            format!("histogram buckets {}: {reason}", render_floats(buckets)),
        )
    };
    if bounds.iter().any(|b| b.is_nan() || b.is_infinite()) {
        return Err(bad(
            "bucket bounds must be finite numbers (+Inf is implied)",
        ));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("bucket bounds must be strictly increasing"));
    }
    Ok(bounds)
}

/// Checks summary quantiles: each in [0, 1], strictly increasing.
pub fn validate_quantiles(metric: &str, quantiles: &[f64]) -> Result<Vec<f64>> {
    let bad = |reason: &str| {
        Error::new(
            ErrorKind::InvalidArgument,
            metric,
            format!("summary quantiles {}: {reason}", render_floats(quantiles)),
        )
    };
    if quantiles.iter().any(|q| !(0.0..=1.0).contains(q)) {
        return Err(bad("quantiles must be between 0 and 1"));
    }
    if quantiles.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("quantiles must be strictly increasing"));
    }
    Ok(quantiles.to_vec())
}

fn render_floats(values: &[f64]) -> String {
    let parts: Vec<String> = values.iter().map(|v| format_float(*v)).collect();
    format!("[{}]", parts.join(", "))
}

/// Where a label of a family's exposition comes from (labels are exposed sorted by name).
#[derive(Debug)]
enum LabelSlot {
    /// A backend default label: name and escaped value.
    Const(Box<str>, Box<str>),
    /// The series' own label at this index of the family's label names.
    Value(Box<str>, usize),
}

/// Loss and failure counters shared by every family of a registry.
#[derive(Debug, Default)]
pub struct RegistryCounters {
    /// Samples recorded into an overflow series because a metric reached its series limit.
    pub series_overflows: AtomicU64,
    /// Exemplars not attached because the span's ids exceed the OpenMetrics length limit.
    pub dropped_exemplars: AtomicU64,
}

/// Exemplar labels as (name, value) pairs.
pub type ExemplarLabels = Vec<(Box<str>, Box<str>)>;
/// Exemplar labels with the observation's timestamp (seconds since the epoch).
pub type PendingExemplar = (ExemplarLabels, f64);

/// An OpenMetrics exemplar: the span that made an observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub labels: ExemplarLabels,
    pub value: f64,
    pub timestamp: f64,
}

/// The exemplar labels for a span, within the 128-code-point limit: `trace_id` and `span_id`,
/// or `trace_id` alone when both do not fit, or `None` when even that does not fit.
#[must_use]
pub fn exemplar_labels(trace_id: &str, span_id: &str) -> Option<ExemplarLabels> {
    let trace = "trace_id".len() + trace_id.chars().count();
    let span = "span_id".len() + span_id.chars().count();
    if trace_id.is_empty() || trace > EXEMPLAR_MAX_CODE_POINTS {
        return None;
    }
    let mut labels = vec![("trace_id".into(), trace_id.into())];
    if !span_id.is_empty() && trace + span <= EXEMPLAR_MAX_CODE_POINTS {
        labels.push(("span_id".into(), span_id.into()));
    }
    Some(labels)
}

/// What a histogram or summary series needs to know about its family.
#[derive(Debug)]
pub struct Layout {
    pub kind: Kind,
    /// Histogram upper bounds, without the implied `+Inf`.
    pub bounds: Box<[f64]>,
    pub quantiles: Box<[f64]>,
    pub sketch: SketchParams,
    pub max_age: f64,
    pub age_buckets: usize,
    /// How a gauge combines over processes (multiprocess mode).
    pub mode: GaugeMode,
    /// Whether series keep their values in the shared file (multiprocess mode).
    pub shared: bool,
    counters: Arc<RegistryCounters>,
}

impl Layout {
    /// Rejects a value this metric forbids; `metric` names it in the error.
    #[inline]
    pub fn check(&self, value: f64, metric: &str) -> Result<()> {
        check_value(self.kind, self, value, metric)
    }

    /// Whether negative observations are allowed (histograms with a negative bucket bound).
    #[must_use]
    pub fn allows_negative(&self) -> bool {
        self.kind == Kind::Histogram && self.bounds.first().is_some_and(|b| *b < 0.0)
    }

    fn cells(&self) -> usize {
        match self.kind {
            // created (the window lives in memory)
            Kind::Summary if !self.shared => 1,
            // see the multiprocess file format
            kind => mpformat::cell_count(
                kind,
                self.bounds.len(),
                self.age_buckets,
                self.sketch.max_bins as u64,
            ),
        }
    }

    fn created_index(&self) -> usize {
        match self.kind {
            Kind::Summary if !self.shared => 0,
            kind => mpformat::created_index(kind, self.cells()),
        }
    }

    /// Whether gauge writes record their time (the modes other than the sums read it).
    fn stamps(&self) -> bool {
        self.shared && !matches!(self.mode, GaugeMode::Sum | GaugeMode::LiveSum)
    }
}

/// One label set of a family and its values.
#[derive(Debug)]
pub struct Series {
    hash: u64,
    values: Box<[Box<str>]>,
    rendered: Box<str>,
    detached: AtomicBool,
    overflow: bool,
    layout: Arc<Layout>,
    cells: Cells,
    summary: Option<SummaryState>,
    exemplars: OnceLock<Box<[Mutex<Option<Exemplar>>]>>,
    /// File offset of the series record (multiprocess mode), for `reset()`.
    record: Option<usize>,
}

/// Where a summary keeps its observations.
#[derive(Debug)]
enum SummaryState {
    /// One process: a sliding-window sketch in memory.
    Window(Mutex<WindowedSketch>),
    /// Multiprocess: age slots in the shared cells; the lock orders this process's writers.
    Shared(Mutex<()>),
    /// An aggregate read from several processes: count, sum and the window's merged sketch.
    Frozen(u64, f64, Sketch),
}

/// Rejects a value the metric type forbids; `what` names the metric in the error.
///
/// Counters, histograms and summaries take finite values only: one infinite value would leave
/// the counter, `_sum` or quantiles infinite for good (NaN likewise). Gauges take any float.
/// Histograms reject negative observations unless a bucket bound is negative, so that `_sum`
/// stays a counter as OpenMetrics requires (with a negative bound, `_sum` is not exposed).
pub fn check_value(kind: Kind, layout: &Layout, value: f64, what: &str) -> Result<()> {
    let finite = value.is_finite();
    let reason = match kind {
        Kind::Counter if !finite || value < 0.0 => {
            "a counter only goes up by finite amounts: the increment must be finite and >= 0"
                .to_owned()
        }
        // The quantile sketch has no bin for infinity (nor a finite sum to report).
        Kind::Summary if !finite || value < 0.0 => {
            "a summary observation must be finite and >= 0".to_owned()
        }
        Kind::Histogram if !finite => {
            "a histogram observation must be finite (an infinite one would leave _sum infinite)"
                .to_owned()
        }
        Kind::Histogram if value < 0.0 && !layout.allows_negative() => format!(
            "a histogram observation must be >= 0, so that _sum stays a counter as OpenMetrics \
             requires; to observe negative values, declare a negative bucket bound, e.g. \
             register({what:?}, \"histogram\", buckets=[-10.0, 0.0, 10.0])"
        ),
        _ => return Ok(()),
    };
    Err(invalid_value(what, &reason, value))
}

/// A finite value that would take a counter or a `_sum` beyond the largest float: rejected,
/// the metric unchanged (an infinite total would stay infinite for good).
#[cold]
fn overflowing_value(kind: Kind, what: &str, value: f64) -> Error {
    let reason = match kind {
        Kind::Counter => "the increment would make the counter infinite (it is left unchanged)",
        Kind::Histogram => {
            "the observation would make the histogram's _sum infinite (it is left unchanged)"
        }
        _ => "the observation would make the summary's _sum infinite (it is left unchanged)",
    };
    invalid_value(what, reason, value)
}

#[cold]
fn invalid_value(what: &str, reason: &str, value: f64) -> Error {
    Error::new(
        ErrorKind::InvalidMetricValue,
        what,
        format!("{reason} (got {})", format_float(value)),
    )
}

impl Series {
    #[must_use]
    pub fn kind(&self) -> Kind {
        self.layout.kind
    }

    /// Label values in the order of the family's (sorted) label names.
    #[must_use]
    pub fn values(&self) -> &[Box<str>] {
        &self.values
    }

    /// Escaped `name="value"` pairs, default labels included, sorted by name, without braces.
    #[must_use]
    pub fn rendered_labels(&self) -> &str {
        &self.rendered
    }

    /// Whether `reset()` removed this series from its registry (handles then re-resolve).
    #[inline]
    #[must_use]
    pub fn is_detached(&self) -> bool {
        self.detached.load(Ordering::Relaxed)
    }

    #[must_use]
    pub fn is_overflow(&self) -> bool {
        self.overflow
    }

    #[inline]
    fn note_overflow(&self) {
        if self.overflow {
            self.layout
                .counters
                .series_overflows
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The family layout (for value checks).
    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Adds to a counter; `metric` names it in errors.
    #[inline]
    pub fn counter_add(&self, metric: &str, value: f64) -> Result<()> {
        check_value(Kind::Counter, &self.layout, value, metric)?;
        if !self.cells.add_f64_finite(0, value) {
            return Err(overflowing_value(Kind::Counter, metric, value));
        }
        self.note_overflow();
        Ok(())
    }

    #[inline]
    pub fn gauge_set(&self, value: f64) {
        self.note_overflow();
        self.cells.store_f64(0, value);
        if self.layout.stamps() {
            self.cells.store_f64(1, wall_clock());
        }
    }

    #[inline]
    pub fn gauge_add(&self, value: f64) {
        self.note_overflow();
        self.cells.add_f64(0, value);
        if self.layout.stamps() {
            self.cells.store_f64(1, wall_clock());
        }
    }

    /// The value of a counter or gauge.
    #[must_use]
    pub fn scalar(&self) -> f64 {
        self.cells.load_f64(0)
    }

    /// Creation time (seconds since the epoch), exposed as `_created` in OpenMetrics.
    #[must_use]
    pub fn created(&self) -> f64 {
        self.cells.load_f64(self.layout.created_index())
    }

    /// Observes `value` into a histogram, with an optional exemplar (labels, timestamp).
    #[inline]
    pub fn histogram_observe(
        &self,
        metric: &str,
        value: f64,
        exemplar: Option<PendingExemplar>,
    ) -> Result<()> {
        check_value(Kind::Histogram, &self.layout, value, metric)?;
        let bounds = &self.layout.bounds;
        // The sum first: an observation that would make it infinite is rejected, no bucket
        // counted.
        if !self.cells.add_f64_finite(bounds.len() + 1, value) {
            return Err(overflowing_value(Kind::Histogram, metric, value));
        }
        self.note_overflow();
        let index = bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(bounds.len());
        self.cells.increment_u64(index);
        if let Some((labels, timestamp)) = exemplar {
            let slots = self.exemplars.get_or_init(|| {
                (0..=bounds.len())
                    .map(|_| Mutex::new(None))
                    .collect::<Vec<_>>()
                    .into_boxed_slice()
            });
            *fork::lock(&slots[index]) = Some(Exemplar {
                labels,
                value,
                timestamp,
            });
        }
        Ok(())
    }

    /// Observes `value` into a summary at time `now`.
    pub fn summary_observe(&self, metric: &str, value: f64, now: f64) -> Result<()> {
        check_value(Kind::Summary, &self.layout, value, metric)?;
        match &self.summary {
            Some(SummaryState::Window(window)) => {
                let mut window = fork::lock(window);
                if !(window.sum() + value).is_finite() {
                    return Err(overflowing_value(Kind::Summary, metric, value));
                }
                self.note_overflow();
                window.observe(&self.layout.sketch, value, now);
            }
            Some(SummaryState::Shared(lock)) => {
                let _guard = fork::lock(lock);
                if !(self.cells.load_f64(1) + value).is_finite() {
                    return Err(overflowing_value(Kind::Summary, metric, value));
                }
                self.note_overflow();
                self.shared_observe(value, now);
            }
            _ => self.note_overflow(),
        }
        Ok(())
    }

    /// One consistent read of a histogram: cumulative counts per bound (`+Inf` last), and sum.
    #[must_use]
    pub fn histogram_snapshot(&self) -> (Vec<u64>, f64) {
        let buckets = self.layout.bounds.len() + 1;
        let mut cumulative = Vec::with_capacity(buckets);
        let mut total = 0u64;
        for index in 0..buckets {
            total += self.cells.load_u64(index);
            cumulative.push(total);
        }
        (cumulative, self.cells.load_f64(buckets))
    }

    /// Per-bucket exemplars (`+Inf` last), when any observation carried one.
    #[must_use]
    pub fn exemplars(&self) -> Vec<Option<Exemplar>> {
        self.exemplars.get().map_or_else(Vec::new, |slots| {
            slots.iter().map(|slot| fork::lock(slot).clone()).collect()
        })
    }

    /// Summary state at `now`: all-time count and sum, and the quantiles of the window.
    #[must_use]
    pub fn summary_snapshot(&self, now: f64) -> (u64, f64, Vec<f64>) {
        let Some((count, sum, sketch)) = self.window_sketch(now) else {
            return (0, 0.0, Vec::new());
        };
        let quantiles = self
            .layout
            .quantiles
            .iter()
            .map(|q| sketch.quantile(&self.layout.sketch, *q))
            .collect();
        (count, sum, quantiles)
    }

    fn window_sketch(&self, now: f64) -> Option<(u64, f64, Sketch)> {
        match self.summary.as_ref()? {
            SummaryState::Window(window) => {
                let mut window = fork::lock(window);
                let sketch = window.window(&self.layout.sketch, now);
                Some((window.count(), window.sum(), sketch))
            }
            SummaryState::Shared(lock) => {
                let _guard = fork::lock(lock);
                Some(self.shared_window(now))
            }
            SummaryState::Frozen(count, sum, sketch) => Some((*count, *sum, sketch.clone())),
        }
    }

    fn slot_base(&self, slot: usize) -> usize {
        3 + slot * (SLOT_HEADER + mpformat::slot_bins(self.layout.sketch.max_bins as u64))
    }

    /// Records `value` into the shared age slot of `now` (the caller holds the series lock);
    /// see the file format in [`super::multiprocess::format`].
    fn shared_observe(&self, value: f64, now: f64) {
        let cells = &self.cells;
        let layout = &self.layout;
        cells.increment_u64(0);
        cells.add_f64(1, value);
        let width = layout.max_age / layout.age_buckets as f64;
        let epoch = (now / width).floor().max(0.0) as u64;
        let base = self.slot_base((epoch % layout.age_buckets as u64) as usize);
        // The slot is a seqlock, its sequence number odd while it changes: the release fence
        // orders the odd number before the body's stores, the release store of the even
        // number orders the body before it (readers: `read::copy_slot`).
        let seq = cells.load_u64(base);
        if cells.load_u64(base + 1) != epoch + 1 {
            cells.store_u64(base, seq + 1);
            fence(Ordering::Release);
            cells.store_u64(base + 1, epoch + 1);
            for i in 2..SLOT_HEADER {
                cells.store_u64(base + i, 0);
            }
            cells.cell(base).store(seq + 2, Ordering::Release);
        }
        let seq = cells.load_u64(base);
        cells.store_u64(base, seq + 1);
        fence(Ordering::Release);
        let count = cells.load_u64(base + 2);
        if count == 0 {
            cells.store_f64(base + 4, value);
            cells.store_f64(base + 5, value);
        } else {
            cells.store_f64(base + 4, cells.load_f64(base + 4).min(value));
            cells.store_f64(base + 5, cells.load_f64(base + 5).max(value));
        }
        cells.store_u64(base + 2, count + 1);
        if value > 0.0 {
            let key = layout.sketch.key(value);
            insert_bin(
                cells,
                base,
                mpformat::slot_bins(layout.sketch.max_bins as u64),
                key,
            );
        } else {
            cells.store_u64(base + 3, cells.load_u64(base + 3) + 1);
        }
        cells.cell(base).store(seq + 2, Ordering::Release);
    }

    /// This process's window of a shared summary.
    fn shared_window(&self, now: f64) -> (u64, f64, Sketch) {
        let cells = &self.cells;
        let layout = &self.layout;
        let width = layout.max_age / layout.age_buckets as f64;
        let current = (now / width).floor().max(0.0) as u64;
        let mut merged = Sketch::default();
        for slot in 0..layout.age_buckets {
            let base = self.slot_base(slot);
            let tag = cells.load_u64(base + 1);
            let count = cells.load_u64(base + 2);
            if tag == 0
                || count == 0
                || tag - 1 > current
                || tag - 1 + layout.age_buckets as u64 <= current
            {
                continue;
            }
            let n = (cells.load_u64(base + 6) as usize)
                .min(mpformat::slot_bins(layout.sketch.max_bins as u64));
            let bins = (0..n).map(|i| {
                let word = cells.load_u64(base + SLOT_HEADER + i);
                (
                    mpformat::bin_key(word),
                    u64::from(mpformat::bin_count(word)),
                )
            });
            let part = Sketch::from_parts(
                bins.collect(),
                cells.load_u64(base + 3),
                count,
                cells.load_f64(base + 4),
                cells.load_f64(base + 5),
            );
            merged.merge(&layout.sketch, &part);
        }
        (cells.load_u64(0), cells.load_f64(1), merged)
    }
}

/// Adds one observation of bin `key` to the sorted bins of the slot at `base`, folding the
/// lowest bins into the next beyond `cap` bins (counts saturate at `u32::MAX`).
fn insert_bin(cells: &Cells, base: usize, cap: usize, key: i32) {
    let n = (cells.load_u64(base + 6) as usize).min(cap);
    let first = base + SLOT_HEADER;
    let key_at = |i: usize| mpformat::bin_key(cells.load_u64(first + i));
    // Binary search for the first bin whose key is >= `key`.
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = usize::midpoint(lo, hi);
        if key_at(mid) < key {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let position = lo;
    let bump = |i: usize, by: u32| {
        let word = cells.load_u64(first + i);
        let count = mpformat::bin_count(word).saturating_add(by);
        cells.store_u64(
            first + i,
            mpformat::bin_word(mpformat::bin_key(word), count),
        );
    };
    if position < n && key_at(position) == key {
        bump(position, 1);
        return;
    }
    if n < cap {
        for i in (position..n).rev() {
            cells.store_u64(first + i + 1, cells.load_u64(first + i));
        }
        cells.store_u64(first + position, mpformat::bin_word(key, 1));
        cells.store_u64(base + 6, (n + 1) as u64);
        return;
    }
    // Full: insert, then fold the lowest bin into the next one.
    if position == 0 {
        bump(0, 1);
        return;
    }
    let lowest = mpformat::bin_count(cells.load_u64(first));
    for i in 0..position - 1 {
        cells.store_u64(first + i, cells.load_u64(first + i + 1));
    }
    cells.store_u64(first + position - 1, mpformat::bin_word(key, 1));
    bump(0, lowest);
}

/// A metric: its name, type, help, label schema and series.
#[derive(Debug)]
pub struct Family {
    /// Exposition family name (counters without `_total`).
    name: Box<str>,
    /// The name as the caller first wrote it (for messages and generated help).
    caller_name: Box<str>,
    documentation: RwLock<Box<str>>,
    label_names: Box<[Box<str>]>,
    plan: Box<[LabelSlot]>,
    layout: Arc<Layout>,
    le_text: Box<[Box<str>]>,
    quantile_text: Box<[Box<str>]>,
    hasher: DefaultHashBuilder,
    shards: Box<[RwLock<HashTable<Arc<Series>>>]>,
    ordered: RwLock<Vec<Arc<Series>>>,
    len: AtomicUsize,
    max_series: usize,
    overflow: OnceLock<Arc<Series>>,
    shared: Option<SharedFamily>,
}

/// A family's place in the multiprocess file.
#[derive(Debug)]
struct SharedFamily {
    slab: Arc<Slab>,
    def: Mutex<mpformat::FamilyDef>,
    defaults: Vec<(String, String)>,
    counters: Arc<MultiprocessCounters>,
}

impl Family {
    #[inline]
    #[must_use]
    pub fn kind(&self) -> Kind {
        self.layout.kind
    }

    /// The exposition family name (counters without `_total`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The HELP text (generated when none was given).
    #[must_use]
    pub fn documentation(&self) -> String {
        fork::read(&self.documentation).to_string()
    }

    /// The label names of every series, sorted.
    #[inline]
    #[must_use]
    pub fn label_names(&self) -> &[Box<str>] {
        &self.label_names
    }

    /// Index of `label` in [`Family::label_names`].
    #[inline]
    #[must_use]
    pub fn label_index(&self, label: &str) -> Option<usize> {
        self.label_names.iter().position(|n| &**n == label)
    }

    pub(crate) fn le_text(&self) -> &[Box<str>] {
        &self.le_text
    }

    pub(crate) fn quantile_text(&self) -> &[Box<str>] {
        &self.quantile_text
    }

    /// The error for a call whose label names (`given`) differ from the family's.
    #[cold]
    #[must_use]
    pub fn schema_error(&self, given: &[&str]) -> Error {
        let expected: Vec<&str> = self.label_names.iter().map(|n| &**n).collect();
        let offending = given
            .iter()
            .find(|g| !expected.contains(g))
            .map(|s| (*s).to_owned())
            .or_else(|| {
                expected
                    .iter()
                    .find(|e| !given.contains(e))
                    .map(|s| (*s).to_owned())
            })
            .unwrap_or_default();
        Error::new(
            ErrorKind::MetricConflict,
            offending,
            format!(
                "metric {:?} has label names [{}], got [{}]",
                self.caller_name,
                expected.join(", "),
                given.join(", ")
            ),
        )
    }

    #[inline]
    fn hash_values(&self, values: &[&str]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        for value in values {
            hasher.write_usize(value.len());
            hasher.write(value.as_bytes());
        }
        hasher.finish()
    }

    /// The series for `values` (in label-name order), created on first use. Beyond the
    /// family's series limit, new label sets share one overflow series (and are counted).
    #[inline]
    pub fn series(&self, values: &[&str], clock: &dyn Clock) -> Arc<Series> {
        debug_assert_eq!(values.len(), self.label_names.len());
        let hash = self.hash_values(values);
        let shard = &self.shards[(hash >> 60) as usize % SHARDS];
        let eq = |s: &Arc<Series>| {
            s.hash == hash
                && s.values.len() == values.len()
                && s.values.iter().zip(values).all(|(a, b)| **a == **b)
        };
        if let Some(found) = fork::read(shard).find(hash, eq) {
            return Arc::clone(found);
        }
        self.insert(hash, values, clock)
    }

    #[cold]
    fn insert(&self, hash: u64, values: &[&str], clock: &dyn Clock) -> Arc<Series> {
        // Read the clock before locking: a critical section never calls out (see `fork`).
        let now = clock.now();
        let shard = &self.shards[(hash >> 60) as usize % SHARDS];
        let eq = |s: &Arc<Series>| {
            s.hash == hash
                && s.values.len() == values.len()
                && s.values.iter().zip(values).all(|(a, b)| **a == **b)
        };
        if self.len.load(Ordering::Relaxed) >= self.max_series {
            // At the limit (no write lock for every overflowing sample), unless another thread
            // inserted this very label set since our lookup.
            if let Some(found) = fork::read(shard).find(hash, eq) {
                return Arc::clone(found);
            }
            return self.overflow_series(now);
        }
        let mut table = fork::write(shard);
        if let Some(found) = table.find(hash, eq) {
            return Arc::clone(found);
        }
        // Reserve a slot under the limit (another shard may be inserting concurrently).
        if self
            .len
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max_series).then_some(n + 1)
            })
            .is_err()
        {
            drop(table);
            return self.overflow_series(now);
        }
        let series = Arc::new(self.new_series(hash, values, false, now));
        table.insert_unique(hash, Arc::clone(&series), |s| s.hash);
        drop(table);
        fork::write(&self.ordered).push(Arc::clone(&series));
        series
    }

    #[cold]
    fn overflow_series(&self, now: f64) -> Arc<Series> {
        let _gate = fork::enter();
        Arc::clone(self.overflow.get_or_init(|| {
            let values: Vec<&str> = vec![OVERFLOW_VALUE; self.label_names.len()];
            let hash = self.hash_values(&values);
            Arc::new(self.new_series(hash, &values, true, now))
        }))
    }

    fn new_series(&self, hash: u64, values: &[&str], overflow: bool, now: f64) -> Series {
        let mut rendered = String::new();
        for (i, slot) in self.plan.iter().enumerate() {
            if i > 0 {
                rendered.push(',');
            }
            match slot {
                LabelSlot::Const(name, escaped) => {
                    rendered.push_str(name);
                    rendered.push_str("=\"");
                    rendered.push_str(escaped);
                }
                LabelSlot::Value(name, index) => {
                    rendered.push_str(name);
                    rendered.push_str("=\"");
                    escape_label_value(&mut rendered, values[*index]);
                }
            }
            rendered.push('"');
        }
        let (cells, record) = self.cells_for(values, now);
        Series {
            hash,
            values: values.iter().map(|v| Box::from(*v)).collect(),
            rendered: rendered.into_boxed_str(),
            detached: AtomicBool::new(false),
            overflow,
            layout: Arc::clone(&self.layout),
            cells,
            summary: (self.layout.kind == Kind::Summary).then(|| {
                if self.layout.shared {
                    SummaryState::Shared(Mutex::new(()))
                } else {
                    SummaryState::Window(Mutex::new(WindowedSketch::new(
                        self.layout.max_age,
                        self.layout.age_buckets,
                        now,
                    )))
                }
            }),
            exemplars: OnceLock::new(),
            record,
        }
    }

    /// The cells of a new series: in the shared file (multiprocess mode, with the series'
    /// full label values, default labels included), else (or when the file cannot grow) on
    /// the heap.
    fn cells_for(&self, values: &[&str], now: f64) -> (Cells, Option<usize>) {
        let created = self.layout.created_index();
        if let Some(shared) = &self.shared {
            let full: Vec<&str> = self
                .plan
                .iter()
                .map(|slot| match slot {
                    LabelSlot::Const(name, _) => shared
                        .defaults
                        .iter()
                        .find(|(n, _)| **n == **name)
                        .map_or("", |(_, v)| v.as_str()),
                    LabelSlot::Value(_, index) => values[*index],
                })
                .collect();
            let id = fork::lock(&shared.def).id;
            if let Some((cells, offset)) =
                shared
                    .slab
                    .series(id, &full, self.layout.cells(), created, now)
            {
                return (cells, Some(offset));
            }
            shared
                .counters
                .unshared_series
                .fetch_add(1, Ordering::Relaxed);
        }
        let cells = Cells::new(self.layout.cells());
        cells.store_f64(created, now);
        (cells, None)
    }

    /// Every series in creation order, the overflow series (if any) last.
    #[must_use]
    pub fn all_series(&self) -> Vec<Arc<Series>> {
        let mut all = fork::read(&self.ordered).clone();
        if let Some(overflow) = self.overflow.get() {
            all.push(Arc::clone(overflow));
        }
        all
    }

    /// Calls `f` on every series in creation order (the overflow series last) without copying
    /// the list: the read lock is held for chunks of 256 series at a time, so a concurrent
    /// series creation waits for one chunk at most, and recording never waits.
    pub fn for_each_series(&self, mut f: impl FnMut(&Series)) {
        const CHUNK: usize = 256;
        let len = fork::read(&self.ordered).len();
        let mut start = 0;
        while start < len {
            let end = (start + CHUNK).min(len);
            let ordered = fork::read(&self.ordered);
            for series in &ordered[start..end] {
                f(series);
            }
            start = end;
        }
        if let Some(overflow) = self.overflow.get() {
            f(overflow);
        }
    }

    /// The merged labels of a series as (name, value) pairs, sorted by name.
    #[must_use]
    pub fn series_labels(
        &self,
        series: &Series,
        default_labels: &[(String, String)],
    ) -> Vec<(String, String)> {
        self.plan
            .iter()
            .map(|slot| match slot {
                LabelSlot::Const(name, _) => {
                    let value = default_labels
                        .iter()
                        .find(|(n, _)| **n == **name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    (name.to_string(), value)
                }
                LabelSlot::Value(name, index) => {
                    (name.to_string(), series.values[*index].to_string())
                }
            })
            .collect()
    }

    fn detach_all(&self) {
        for series in self.all_series() {
            series.detached.store(true, Ordering::Relaxed);
            if let (Some(shared), Some(record)) = (&self.shared, series.record) {
                shared.slab.remove(record);
            }
        }
    }
}

/// What `get` returns: one series or the aggregate of the matching series.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    /// A counter or gauge value.
    Scalar(f64),
    /// Count, sum and cumulative bucket counts per upper bound (`+Inf` last).
    Histogram(u64, f64, Vec<(f64, u64)>),
    /// Count, sum and (quantile, value) pairs.
    Summary(u64, f64, Vec<(f64, f64)>),
}

/// A family with the spec to create or check it.
#[derive(Debug, Clone, Default)]
pub struct FamilySpec<'a> {
    pub documentation: Option<&'a str>,
    pub label_names: Option<Vec<&'a str>>,
    pub buckets: Option<&'a [f64]>,
    pub quantiles: Option<&'a [f64]>,
    /// How a gauge combines over processes (multiprocess mode; default `livesum`).
    pub mode: Option<GaugeMode>,
}

#[derive(Default)]
struct State {
    /// Families in creation order.
    families: Vec<Arc<Family>>,
    /// Every exposed name a family owns (its name and sample names), for collision checks.
    owned: HashMap<String, Arc<Family>>,
}

type Aliases = HashMap<Box<str>, Arc<Family>, DefaultHashBuilder>;

/// All metrics of one backend.
pub struct Registry {
    config: RegistryConfig,
    bounds: Vec<f64>,
    quantiles: Vec<f64>,
    sketch: SketchParams,
    aliases: ArcSwap<Aliases>,
    state: Mutex<State>,
    counters: Arc<RegistryCounters>,
    clock: Box<dyn Clock>,
    /// This process's file in the multiprocess directory.
    slab: Option<Arc<Slab>>,
    mp_counters: Arc<MultiprocessCounters>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A registry; rejects an invalid prefix, default label, bucket list or quantile list.
    pub fn new(mut config: RegistryConfig, clock: Box<dyn Clock>) -> Result<Self> {
        names::validate_prefix(&config.prefix)?;
        config.default_labels.sort();
        for (name, _) in &config.default_labels {
            names::validate_label_name("default_labels", Kind::Gauge, name)?;
            if name == "le" || name == "quantile" {
                return Err(Error::new(
                    ErrorKind::InvalidLabel,
                    name.as_str(),
                    "'le' and 'quantile' are reserved for histograms and summaries (default_labels)",
                ));
            }
        }
        let bounds = validate_buckets("default buckets", &config.buckets)?;
        let quantiles = validate_quantiles("default quantiles", &config.quantiles)?;
        let sketch = SketchParams::new(config.summary_relative_accuracy, config.summary_max_bins)?;
        if !(config.summary_max_age > 0.0 && config.summary_max_age.is_finite())
            || config.summary_age_buckets == 0
        {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format_float(config.summary_max_age),
                "summary max age must be a positive number of seconds split into >= 1 age buckets",
            ));
        }
        if config.max_series_per_metric == 0 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "0",
                "max_series_per_metric must be at least 1",
            ));
        }
        if config.summary_age_buckets > 1024 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                config.summary_age_buckets.to_string(),
                "summary age buckets must be at most 1024",
            ));
        }
        let mp_counters = Arc::new(MultiprocessCounters::default());
        let slab = match &config.multiprocess_dir {
            Some(dir) => Some(Slab::create(dir, Arc::clone(&mp_counters))?),
            None => None,
        };
        Ok(Self {
            config,
            bounds,
            quantiles,
            sketch,
            aliases: ArcSwap::from_pointee(Aliases::default()),
            state: Mutex::new(State::default()),
            counters: Arc::new(RegistryCounters::default()),
            clock,
            slab,
            mp_counters,
        })
    }

    /// This process's file in the multiprocess directory (multiprocess mode only).
    #[must_use]
    pub fn slab(&self) -> Option<&Arc<Slab>> {
        self.slab.as_ref()
    }

    /// Losses and repairs of the multiprocess mode.
    #[must_use]
    pub fn multiprocess_counters(&self) -> &MultiprocessCounters {
        &self.mp_counters
    }

    /// Compacts dead writers' files of the multiprocess directory into its archive (a no-op
    /// returning 0 outside multiprocess mode or when another process is compacting).
    pub fn compact(&self) -> Result<usize> {
        match &self.slab {
            Some(slab) => {
                super::multiprocess::read::compact(slab.dir(), self.clock.now(), &self.mp_counters)
            }
            None => Ok(0),
        }
    }

    /// Every process's values aggregated at `now` (compacting dead writers first when the
    /// directory is free), as a registry to read or encode; `None` outside multiprocess mode.
    /// A compaction that fails (a full disk cannot take the new archive) leaves every file in
    /// place: the scrape still reads them all, and the next one tries again.
    pub fn aggregate(&self, now: f64) -> Result<Option<Registry>> {
        let Some(slab) = &self.slab else {
            return Ok(None);
        };
        let _ = super::multiprocess::read::compact(slab.dir(), now, &self.mp_counters);
        let aggregate = super::multiprocess::read::scan(slab.dir(), now, &self.mp_counters)?;
        Ok(Some(Registry::from_aggregate(&aggregate, &self.config)))
    }

    /// A registry holding `aggregate` (no prefix or default labels: its names and labels are
    /// the exposed ones), families and series sorted by name and label values.
    #[must_use]
    #[allow(clippy::too_many_lines)] // one pass building families and series, in order
    pub fn from_aggregate(aggregate: &Aggregate, config: &RegistryConfig) -> Registry {
        let registry = Registry::new(
            RegistryConfig {
                prefix: String::new(),
                default_labels: Vec::new(),
                max_series_per_metric: usize::MAX,
                multiprocess_dir: None,
                ..config.clone()
            },
            Box::new(FixedClock(aggregate.now)),
        )
        .expect("a valid configuration stays valid");
        let mut state = fork::lock(&registry.state);
        for family in aggregate.families.values() {
            let def = &family.def;
            let Ok(sketch) = SketchParams::new(def.relative_accuracy, def.max_bins as usize) else {
                continue;
            };
            let labels: Vec<&str> = def.labels.iter().map(String::as_str).collect();
            let plan: Vec<LabelSlot> = labels
                .iter()
                .enumerate()
                .map(|(i, n)| LabelSlot::Value((*n).into(), i))
                .collect();
            let mut le_text: Vec<Box<str>> = def
                .bounds
                .iter()
                .map(|b| format_label_float(*b).into())
                .collect();
            le_text.push("+Inf".into());
            let built = Arc::new(Family {
                name: def.name.as_str().into(),
                caller_name: def.name.as_str().into(),
                documentation: RwLock::new(def.help.as_str().into()),
                label_names: labels.iter().map(|l| Box::from(*l)).collect(),
                plan: plan.into_boxed_slice(),
                layout: Arc::new(Layout {
                    kind: def.kind,
                    bounds: def.bounds.clone().into_boxed_slice(),
                    quantiles: def.quantiles.clone().into_boxed_slice(),
                    sketch,
                    max_age: def.max_age,
                    age_buckets: def.age_buckets.max(1) as usize,
                    mode: def.mode,
                    shared: false,
                    counters: Arc::clone(&registry.counters),
                }),
                le_text: le_text.into_boxed_slice(),
                quantile_text: def
                    .quantiles
                    .iter()
                    .map(|q| format_label_float(*q).into())
                    .collect(),
                hasher: DefaultHashBuilder::default(),
                shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
                ordered: RwLock::new(Vec::new()),
                len: AtomicUsize::new(0),
                max_series: usize::MAX,
                overflow: OnceLock::new(),
                shared: None,
            });
            for (values, agg) in &family.series {
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                let hash = built.hash_values(&refs);
                let mut series = built.new_series(hash, &refs, false, agg.created);
                let cells = &series.cells;
                match def.kind {
                    Kind::Counter => cells.store_f64(0, agg.sum()),
                    Kind::Gauge => cells.store_f64(0, agg.gauge_value(def.mode)),
                    Kind::Histogram => {
                        for (i, count) in agg.buckets.iter().enumerate() {
                            cells.store_u64(i, *count);
                        }
                        cells.store_f64(def.bounds.len() + 1, agg.sum());
                    }
                    Kind::Summary => {
                        let mut merged = Sketch::default();
                        for slot in agg.slots.values() {
                            let part = Sketch::from_parts(
                                slot.bins.clone(),
                                slot.zero,
                                slot.count,
                                slot.min,
                                slot.max,
                            );
                            merged.merge(&sketch, &part);
                        }
                        series.summary = Some(SummaryState::Frozen(agg.count, agg.sum(), merged));
                    }
                }
                let series = Arc::new(series);
                fork::write(&built.shards[(hash >> 60) as usize % SHARDS]).insert_unique(
                    hash,
                    Arc::clone(&series),
                    |s| s.hash,
                );
                built.len.fetch_add(1, Ordering::Relaxed);
                fork::write(&built.ordered).push(series);
            }
            let mut owned = vec![def.name.clone()];
            owned.extend(
                def.kind
                    .owned_suffixes()
                    .iter()
                    .map(|suffix| format!("{}{suffix}", def.name)),
            );
            for exposed in owned {
                state
                    .owned
                    .entry(exposed)
                    .or_insert_with(|| Arc::clone(&built));
            }
            state.families.push(built);
        }
        drop(state);
        registry
    }

    #[must_use]
    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    #[must_use]
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    #[must_use]
    pub fn counters(&self) -> &RegistryCounters {
        &self.counters
    }

    /// The family a caller's name resolved to before (the hot path: no lock).
    #[inline]
    #[must_use]
    pub fn cached_family(&self, name: &str) -> Option<Arc<Family>> {
        self.aliases.load().get(name).cloned()
    }

    /// The family for a recording call: found, or created with the call's label names.
    pub fn family(&self, name: &str, kind: Kind, label_names: &[&str]) -> Result<Arc<Family>> {
        let family = self.register(
            name,
            kind,
            &FamilySpec {
                label_names: Some(label_names.to_vec()),
                ..FamilySpec::default()
            },
            false,
        )?;
        Ok(family)
    }

    /// Declares a metric (or checks an existing one against `spec`) and returns it.
    /// `explicit` registrations also create the unlabelled series of a family without labels.
    pub fn register(
        &self,
        name: &str,
        kind: Kind,
        spec: &FamilySpec<'_>,
        explicit: bool,
    ) -> Result<Arc<Family>> {
        names::validate_metric_name(name)?;
        let full = names::join_prefix(&self.config.prefix, name);
        names::validate_metric_name(&full)?;
        let family_name = names::family_name(kind, &full).to_owned();
        let mut labels: Vec<&str> = spec.label_names.clone().unwrap_or_default();
        labels.sort_unstable();
        for label in &labels {
            names::validate_label_name(name, kind, label)?;
        }
        if let Some(dup) = labels.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::new(
                ErrorKind::InvalidLabel,
                dup[0],
                format!("label name repeated (metric {name:?})"),
            ));
        }
        let mut state = fork::lock(&self.state);
        if let Some(existing) = state.owned.get(&family_name).cloned() {
            if existing.name() != family_name {
                // One of the samples of another metric ("foo_created", "h_sum", "h_bucket"):
                // a conflict whichever was first (prometheus_client: duplicated timeseries).
                return Err(Error::new(
                    ErrorKind::MetricConflict,
                    name,
                    format!(
                        "a {} would expose {family_name:?}, which {} {:?} already exposes",
                        kind.as_str(),
                        existing.kind().as_str(),
                        existing.caller_name
                    ),
                ));
            }
            Self::check_existing(
                &existing,
                name,
                kind,
                &labels,
                spec,
                &self.bounds,
                &self.quantiles,
            )?;
            self.remember_alias(name, &existing);
            return Ok(existing);
        }
        let mut owned = vec![family_name.clone()];
        owned.extend(
            kind.owned_suffixes()
                .iter()
                .map(|s| format!("{family_name}{s}")),
        );
        for exposed in &owned {
            if let Some(other) = state.owned.get(exposed) {
                return Err(Error::new(
                    ErrorKind::MetricConflict,
                    name,
                    format!(
                        "a {} would expose {exposed:?}, which {} {:?} already exposes",
                        kind.as_str(),
                        other.kind().as_str(),
                        other.caller_name
                    ),
                ));
            }
        }
        let family = Arc::new(self.new_family(name, kind, &family_name, &labels, spec)?);
        for exposed in owned {
            state.owned.insert(exposed, Arc::clone(&family));
        }
        state.families.push(Arc::clone(&family));
        self.remember_alias(name, &family);
        drop(state);
        if explicit && labels.is_empty() {
            family.series(&[], &*self.clock);
        }
        Ok(family)
    }

    fn check_existing(
        existing: &Family,
        name: &str,
        kind: Kind,
        labels: &[&str],
        spec: &FamilySpec<'_>,
        default_bounds: &[f64],
        default_quantiles: &[f64],
    ) -> Result<()> {
        if existing.kind() != kind {
            return Err(Error::new(
                ErrorKind::MetricConflict,
                name,
                format!(
                    "already registered as a {}, cannot be used as a {}",
                    existing.kind().as_str(),
                    kind.as_str()
                ),
            ));
        }
        if spec.label_names.is_some()
            && !existing
                .label_names
                .iter()
                .map(|n| &**n)
                .eq(labels.iter().copied())
        {
            return Err(existing.schema_error(labels));
        }
        if let Some(buckets) = spec.buckets {
            let bounds = validate_buckets(name, buckets)?;
            if *existing.layout.bounds != *bounds {
                return Err(Error::new(
                    ErrorKind::MetricConflict,
                    name,
                    format!(
                        "already registered with buckets {}, not {}",
                        render_floats(&existing.layout.bounds),
                        render_floats(&bounds)
                    ),
                ));
            }
        }
        if let Some(quantiles) = spec.quantiles {
            let quantiles = validate_quantiles(name, quantiles)?;
            if *existing.layout.quantiles != *quantiles {
                return Err(Error::new(
                    ErrorKind::MetricConflict,
                    name,
                    format!(
                        "already registered with quantiles {}, not {}",
                        render_floats(&existing.layout.quantiles),
                        render_floats(&quantiles)
                    ),
                ));
            }
        }
        let _ = (default_bounds, default_quantiles);
        if let Some(mode) = spec.mode
            && existing.kind() == Kind::Gauge
            && existing.layout.mode != mode
        {
            return Err(Error::new(
                ErrorKind::MetricConflict,
                name,
                format!(
                    "already registered with multiprocess_mode {}, not {}",
                    existing.layout.mode.as_str(),
                    mode.as_str()
                ),
            ));
        }
        if let Some(doc) = spec.documentation.filter(|d| !d.is_empty()) {
            let mut current = fork::write(&existing.documentation);
            if **current != *generated_help(kind, &existing.caller_name) && **current != *doc {
                return Err(Error::new(
                    ErrorKind::MetricConflict,
                    name,
                    format!("already registered with help {:?}, not {doc:?}", &**current),
                ));
            }
            if **current != *doc
                && let Some(shared) = &existing.shared
            {
                let mut def = fork::lock(&shared.def);
                doc.clone_into(&mut def.help);
                shared.slab.define(&mut def, false);
            }
            *current = doc.into();
        }
        Ok(())
    }

    fn remember_alias(&self, name: &str, family: &Arc<Family>) {
        if self.aliases.load().contains_key(name) {
            return;
        }
        // Copy-on-write: readers keep using the previous map; new names are rare.
        let mut next = Aliases::clone(&self.aliases.load());
        next.insert(name.into(), Arc::clone(family));
        self.aliases.store(Arc::new(next));
    }

    fn new_family(
        &self,
        name: &str,
        kind: Kind,
        family_name: &str,
        labels: &[&str],
        spec: &FamilySpec<'_>,
    ) -> Result<Family> {
        let bounds = match spec.buckets {
            Some(b) if kind == Kind::Histogram => validate_buckets(name, b)?,
            _ => self.bounds.clone(),
        };
        let quantiles = match spec.quantiles {
            Some(q) if kind == Kind::Summary => validate_quantiles(name, q)?,
            _ => self.quantiles.clone(),
        };
        let mut plan: Vec<LabelSlot> = self
            .config
            .default_labels
            .iter()
            .filter(|(n, _)| !labels.contains(&n.as_str()))
            .map(|(n, v)| {
                let mut escaped = String::new();
                escape_label_value(&mut escaped, v);
                LabelSlot::Const(n.as_str().into(), escaped.into())
            })
            .collect();
        plan.extend(
            labels
                .iter()
                .enumerate()
                .map(|(i, n)| LabelSlot::Value((*n).into(), i)),
        );
        plan.sort_by(|a, b| slot_name(a).cmp(slot_name(b)));
        let mut le_text: Vec<Box<str>> = bounds
            .iter()
            .map(|b| format_label_float(*b).into())
            .collect();
        le_text.push("+Inf".into());
        let quantile_text = quantiles
            .iter()
            .map(|q| format_label_float(*q).into())
            .collect();
        let documentation = spec
            .documentation
            .filter(|d| !d.is_empty())
            .map_or_else(|| generated_help(kind, name), Box::from);
        let documentation_text = documentation.to_string();
        let bounds_copy = bounds.clone();
        let quantiles_copy = quantiles.clone();
        Ok(Family {
            name: family_name.into(),
            caller_name: name.into(),
            documentation: RwLock::new(documentation),
            label_names: labels.iter().map(|l| Box::from(*l)).collect(),
            plan: plan.into_boxed_slice(),
            layout: Arc::new(Layout {
                kind,
                bounds: bounds.into_boxed_slice(),
                quantiles: quantiles.into_boxed_slice(),
                sketch: self.sketch,
                max_age: self.config.summary_max_age,
                age_buckets: self.config.summary_age_buckets,
                mode: spec.mode.unwrap_or(GaugeMode::LiveSum),
                shared: self.slab.is_some(),
                counters: Arc::clone(&self.counters),
            }),
            le_text: le_text.into_boxed_slice(),
            quantile_text,
            hasher: DefaultHashBuilder::default(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            ordered: RwLock::new(Vec::new()),
            len: AtomicUsize::new(0),
            max_series: self.config.max_series_per_metric,
            overflow: OnceLock::new(),
            shared: self.slab.as_ref().map(|slab| {
                let mut names: Vec<&str> = self
                    .config
                    .default_labels
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .filter(|n| !labels.contains(n))
                    .collect();
                names.extend(labels.iter().copied());
                names.sort_unstable();
                let mut def = mpformat::FamilyDef {
                    id: 0,
                    kind,
                    mode: spec.mode.unwrap_or(GaugeMode::LiveSum),
                    name: family_name.to_owned(),
                    help: documentation_text.clone(),
                    labels: names.iter().map(|n| (*n).to_owned()).collect(),
                    bounds: bounds_copy.clone(),
                    quantiles: quantiles_copy.clone(),
                    age_buckets: self.config.summary_age_buckets as u32,
                    max_age: self.config.summary_max_age,
                    relative_accuracy: self.sketch.relative_accuracy,
                    max_bins: self.sketch.max_bins as u64,
                };
                slab.define(&mut def, true);
                SharedFamily {
                    slab: Arc::clone(slab),
                    def: Mutex::new(def),
                    defaults: self.config.default_labels.clone(),
                    counters: Arc::clone(&self.mp_counters),
                }
            }),
        })
    }

    /// Every family in creation order.
    #[must_use]
    pub fn families(&self) -> Vec<Arc<Family>> {
        fork::lock(&self.state).families.clone()
    }

    /// Finds a family by a caller's name without creating it.
    #[must_use]
    pub fn find(&self, name: &str) -> Option<Arc<Family>> {
        if let Some(found) = self.cached_family(name) {
            return Some(found);
        }
        if !names::is_valid_metric_name(name) {
            return None;
        }
        let full = names::join_prefix(&self.config.prefix, name);
        let state = fork::lock(&self.state);
        if let Some(family) = state.owned.get(&full).filter(|f| f.name() == full) {
            return Some(Arc::clone(family));
        }
        let base = names::family_name(Kind::Counter, &full);
        state
            .owned
            .get(base)
            .filter(|f| f.kind() == Kind::Counter && f.name() == base)
            .cloned()
    }

    /// The value of the series of `name` whose labels include `filter` (aggregated over all
    /// matching series: counters and gauges summed, histograms and summaries merged), or
    /// `None` when the metric or every matching series is absent.
    #[must_use]
    pub fn get(&self, name: &str, filter: &[(&str, &str)]) -> Option<Reading> {
        let family = self.find(name)?;
        let defaults = &self.config.default_labels;
        let mut matching = Vec::new();
        'series: for series in family.all_series() {
            for (label, value) in filter {
                let actual = match family.label_index(label) {
                    Some(i) => &*series.values[i],
                    None => match defaults.iter().find(|(n, _)| n == label) {
                        Some((_, v)) => v.as_str(),
                        None => continue 'series,
                    },
                };
                if actual != *value {
                    continue 'series;
                }
            }
            matching.push(series);
        }
        if matching.is_empty() {
            return None;
        }
        let layout = family.layout();
        Some(match family.kind() {
            Kind::Counter | Kind::Gauge => {
                Reading::Scalar(matching.iter().map(|s| s.scalar()).sum())
            }
            Kind::Histogram => {
                let mut cumulative = vec![0u64; layout.bounds.len() + 1];
                let mut sum = 0.0;
                for series in &matching {
                    let (counts, s) = series.histogram_snapshot();
                    for (total, c) in cumulative.iter_mut().zip(counts) {
                        *total += c;
                    }
                    sum += s;
                }
                let count = *cumulative.last().unwrap_or(&0);
                let bounds = layout.bounds.iter().copied().chain([f64::INFINITY]);
                Reading::Histogram(count, sum, bounds.zip(cumulative).collect())
            }
            Kind::Summary => {
                let now = self.clock.now();
                let mut merged = super::sketch::Sketch::default();
                let (mut count, mut sum) = (0u64, 0.0);
                for series in &matching {
                    if let Some((c, s, sketch)) = series.window_sketch(now) {
                        count += c;
                        sum += s;
                        merged.merge(&layout.sketch, &sketch);
                    }
                }
                let quantiles = layout
                    .quantiles
                    .iter()
                    .map(|q| (*q, merged.quantile(&layout.sketch, *q)))
                    .collect();
                Reading::Summary(count, sum, quantiles)
            }
        })
    }

    /// Removes every metric. Handles keep working: they re-create their series on next use.
    pub fn reset(&self) {
        let mut state = fork::lock(&self.state);
        self.aliases.store(Arc::new(Aliases::default()));
        for family in &state.families {
            family.detach_all();
        }
        *state = State::default();
    }
}

fn slot_name(slot: &LabelSlot) -> &str {
    match slot {
        LabelSlot::Const(n, _) | LabelSlot::Value(n, _) => n,
    }
}

/// HELP text of a metric declared without documentation.
#[must_use]
pub fn generated_help(kind: Kind, caller_name: &str) -> Box<str> {
    let kind = match kind {
        Kind::Counter => "Counter",
        Kind::Gauge => "Gauge",
        Kind::Histogram => "Histogram",
        Kind::Summary => "Summary",
    };
    format!("{kind} {caller_name}").into()
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point of these tests
mod tests {
    use super::*;

    struct Frozen(f64);
    impl Clock for Frozen {
        fn now(&self) -> f64 {
            self.0
        }
    }

    fn registry(config: RegistryConfig) -> Registry {
        Registry::new(config, Box::new(Frozen(1000.0))).unwrap()
    }

    #[test]
    fn label_sets_map_to_one_series_each() {
        let r = registry(RegistryConfig::default());
        let family = r.family("ops_total", Kind::Counter, &["op"]).unwrap();
        let a = family.series(&["read"], r.clock());
        let b = family.series(&["read"], r.clock());
        assert!(Arc::ptr_eq(&a, &b));
        a.counter_add("ops_total", 2.0).unwrap();
        assert_eq!(
            r.get("ops_total", &[("op", "read")]),
            Some(Reading::Scalar(2.0))
        );
        assert_eq!(r.get("ops", &[]), Some(Reading::Scalar(2.0)));
        assert_eq!(r.get("ops_total", &[("op", "write")]), None);
    }

    #[test]
    fn overflow_series_collects_label_sets_beyond_the_limit() {
        let r = registry(RegistryConfig {
            max_series_per_metric: 2,
            ..RegistryConfig::default()
        });
        let family = r.family("x", Kind::Counter, &["id"]).unwrap();
        for id in ["a", "b", "c", "d"] {
            family
                .series(&[id], r.clock())
                .counter_add("x", 1.0)
                .unwrap();
        }
        assert_eq!(family.all_series().len(), 3);
        assert_eq!(
            r.get("x", &[("id", OVERFLOW_VALUE)]),
            Some(Reading::Scalar(2.0))
        );
        assert_eq!(r.counters().series_overflows.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn conflicts_are_rejected_by_name() {
        let r = registry(RegistryConfig::default());
        r.family("x", Kind::Counter, &[]).unwrap();
        let err = r.family("x", Kind::Gauge, &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MetricConflict);
        let err = r.family("x_total", Kind::Gauge, &[]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MetricConflict);
        let err = r.family("x", Kind::Counter, &["a"]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::MetricConflict);
        assert_eq!(err.item, "a");
        let err = r.family("h", Kind::Histogram, &["le"]).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidLabel);
    }

    #[test]
    fn finite_values_that_would_overflow_are_rejected_and_change_nothing() {
        let r = registry(RegistryConfig::default());
        let c = r
            .family("c", Kind::Counter, &[])
            .unwrap()
            .series(&[], r.clock());
        c.counter_add("c", 1e308).unwrap();
        let err = c.counter_add("c", 1e308).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidMetricValue);
        assert_eq!(err.item, "c");
        assert_eq!(c.scalar(), 1e308);
        let h = r
            .family("h", Kind::Histogram, &[])
            .unwrap()
            .series(&[], r.clock());
        h.histogram_observe("h", 1e308, None).unwrap();
        assert!(h.histogram_observe("h", 1e308, None).is_err());
        assert_eq!(
            h.histogram_snapshot(),
            (vec![0; 15].into_iter().chain([1]).collect(), 1e308)
        );
        let s = r
            .family("s", Kind::Summary, &[])
            .unwrap()
            .series(&[], r.clock());
        s.summary_observe("s", 1e308, 0.0).unwrap();
        assert!(s.summary_observe("s", 1e308, 0.0).is_err());
        assert_eq!(s.summary_snapshot(0.0).0, 1);
    }

    #[test]
    fn sample_names_of_another_metric_conflict_in_either_order() {
        for (first, second) in [
            (("foo", Kind::Counter), ("foo_created", Kind::Counter)),
            (("h", Kind::Histogram), ("h_sum", Kind::Histogram)),
            (("h", Kind::Histogram), ("h_bucket", Kind::Histogram)),
            (("s", Kind::Summary), ("s_count", Kind::Summary)),
        ] {
            for (a, b) in [(first, second), (second, first)] {
                let r = registry(RegistryConfig::default());
                r.family(a.0, a.1, &[]).unwrap();
                let err = r.family(b.0, b.1, &[]).unwrap_err();
                assert_eq!(err.kind, ErrorKind::MetricConflict, "{a:?} then {b:?}");
                let message = err.to_string();
                assert!(message.contains(&format!("{:?}", a.0)), "{message}");
                assert!(message.contains(&format!("{:?}", b.0)), "{message}");
            }
        }
        let r = registry(RegistryConfig::default());
        let x = r.family("x", Kind::Counter, &[]).unwrap();
        let x_total = r.family("x_total", Kind::Counter, &[]).unwrap();
        assert!(Arc::ptr_eq(&x, &x_total));
    }

    #[test]
    fn histogram_snapshot_is_cumulative() {
        let r = registry(RegistryConfig {
            buckets: vec![1.0, 2.0],
            ..RegistryConfig::default()
        });
        let s = r
            .family("h", Kind::Histogram, &[])
            .unwrap()
            .series(&[], r.clock());
        for v in [0.5, 1.5, 1.5, 3.0] {
            s.histogram_observe("h", v, None).unwrap();
        }
        assert_eq!(s.histogram_snapshot(), (vec![1, 3, 4], 6.5));
        assert!(s.histogram_observe("h", -1.0, None).is_err());
        assert!(s.histogram_observe("h", f64::NAN, None).is_err());
    }

    #[test]
    fn non_finite_values_are_rejected_except_by_gauges() {
        let r = registry(RegistryConfig::default());
        let counter = r
            .family("c", Kind::Counter, &[])
            .unwrap()
            .series(&[], r.clock());
        let histogram = r
            .family("h", Kind::Histogram, &[])
            .unwrap()
            .series(&[], r.clock());
        let summary = r
            .family("s", Kind::Summary, &[])
            .unwrap()
            .series(&[], r.clock());
        for bad in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            let error = counter.counter_add("c", bad).unwrap_err();
            assert_eq!(
                (error.kind, error.item.as_str()),
                (ErrorKind::InvalidMetricValue, "c")
            );
            let error = histogram.histogram_observe("h", bad, None).unwrap_err();
            assert_eq!(
                (error.kind, error.item.as_str()),
                (ErrorKind::InvalidMetricValue, "h")
            );
            assert!(summary.summary_observe("s", bad, 1000.0).is_err());
        }
        assert_eq!(counter.scalar(), 0.0);
        assert_eq!(histogram.histogram_snapshot(), (vec![0; 16], 0.0));
        let gauge = r
            .family("g", Kind::Gauge, &[])
            .unwrap()
            .series(&[], r.clock());
        gauge.gauge_set(f64::INFINITY);
        assert_eq!(gauge.scalar(), f64::INFINITY);
    }

    #[test]
    fn a_negative_observation_error_says_how_to_allow_them() {
        let r = registry(RegistryConfig::default());
        let s = r
            .family("temp", Kind::Histogram, &[])
            .unwrap()
            .series(&[], r.clock());
        let error = s.histogram_observe("temp", -5.0, None).unwrap_err();
        assert!(error.reason.contains("counter"), "{}", error.reason);
        assert!(
            error.reason.contains("buckets=[-10.0, 0.0, 10.0]"),
            "{}",
            error.reason
        );
        assert!(
            error.reason.contains("register(\"temp\""),
            "{}",
            error.reason
        );
        let below = r
            .register(
                "delta",
                Kind::Histogram,
                &FamilySpec {
                    buckets: Some(&[-1.0, 0.0, 1.0]),
                    ..FamilySpec::default()
                },
                true,
            )
            .unwrap()
            .series(&[], r.clock());
        below.histogram_observe("delta", -5.0, None).unwrap();
        assert_eq!(below.histogram_snapshot(), (vec![1, 1, 1, 1], -5.0));
    }

    #[test]
    fn exemplar_labels_respect_the_length_limit() {
        let trace = "a".repeat(32);
        let span = "b".repeat(16);
        assert_eq!(exemplar_labels(&trace, &span).unwrap().len(), 2);
        let long_span = "b".repeat(100);
        assert_eq!(exemplar_labels(&trace, &long_span).unwrap().len(), 1);
        assert!(exemplar_labels(&"a".repeat(121), "").is_none());
        assert!(exemplar_labels(&"é".repeat(120), "").is_some());
    }

    #[test]
    fn reset_detaches_series() {
        let r = registry(RegistryConfig::default());
        let s = r
            .family("x", Kind::Counter, &[])
            .unwrap()
            .series(&[], r.clock());
        r.reset();
        assert!(s.is_detached());
        assert!(r.get("x", &[]).is_none());
        assert!(r.family("x", Kind::Gauge, &[]).is_ok());
    }

    #[test]
    fn snapshots_during_concurrent_observes_are_never_torn() {
        let r = Arc::new(registry(RegistryConfig {
            buckets: vec![0.25, 0.5, 0.75],
            ..RegistryConfig::default()
        }));
        let series = r
            .family("h", Kind::Histogram, &[])
            .unwrap()
            .series(&[], r.clock());
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let series = Arc::clone(&series);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let v = f64::from(((n * 7 + t) % 100) as u32) / 100.0;
                        series.histogram_observe("h", v, None).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for _ in 0..20_000 {
            let (cumulative, _) = series.histogram_snapshot();
            assert!(
                cumulative.windows(2).all(|w| w[0] <= w[1]),
                "{cumulative:?}"
            );
        }
        stop.store(true, Ordering::Relaxed);
        let total: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        let (cumulative, _) = series.histogram_snapshot();
        assert_eq!(*cumulative.last().unwrap(), total);
    }

    #[test]
    fn concurrent_series_creation_respects_the_limit() {
        let r = Arc::new(registry(RegistryConfig {
            max_series_per_metric: 100,
            ..RegistryConfig::default()
        }));
        let family = r.family("c", Kind::Counter, &["id"]).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let family = Arc::clone(&family);
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        let id = format!("{}", (i * 4 + t) % 400);
                        family
                            .series(&[&id], r.clock())
                            .counter_add("c", 1.0)
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = family.all_series();
        assert_eq!(all.len(), 101);
        let total: f64 = all.iter().map(|s| s.scalar()).sum();
        assert_eq!(total, 4000.0);
    }

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "truthound-mp-{tag}-{}-{:x}",
            std::process::id(),
            crate::metrics::multiprocess::nonce()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn mp_registry(dir: &std::path::Path) -> Registry {
        registry(RegistryConfig {
            prefix: "app".into(),
            default_labels: vec![("svc".into(), "a".into())],
            buckets: vec![1.0, 2.0],
            multiprocess_dir: Some(dir.to_path_buf()),
            ..RegistryConfig::default()
        })
    }

    fn record(r: &Registry, n: f64) {
        r.family("ops_total", Kind::Counter, &["op"])
            .unwrap()
            .series(&["read"], r.clock())
            .counter_add("ops_total", n)
            .unwrap();
        let h = r
            .family("lat", Kind::Histogram, &[])
            .unwrap()
            .series(&[], r.clock());
        h.histogram_observe("lat", 1.5, None).unwrap();
        let spec = FamilySpec {
            label_names: Some(vec![]),
            mode: Some(GaugeMode::Max),
            ..FamilySpec::default()
        };
        r.register("peak", Kind::Gauge, &spec, true).unwrap();
        r.family("peak", Kind::Gauge, &[])
            .unwrap()
            .series(&[], r.clock())
            .gauge_set(n);
        r.family("live", Kind::Gauge, &[])
            .unwrap()
            .series(&[], r.clock())
            .gauge_set(1.0);
        let s = r
            .family("size", Kind::Summary, &[])
            .unwrap()
            .series(&[], r.clock());
        s.summary_observe("size", n, 1000.0).unwrap();
    }

    #[test]
    fn processes_aggregate_and_dead_writers_compact_without_loss() {
        let dir = temp_dir("agg");
        let a = mp_registry(&dir);
        let b = mp_registry(&dir);
        record(&a, 2.0);
        record(&b, 5.0);
        let before = encode_aggregate(&a);
        assert!(
            before.contains("app_ops_total{op=\"read\",svc=\"a\"} 7.0\n"),
            "{before}"
        );
        assert!(
            before.contains("app_lat_count{svc=\"a\"} 2.0\n"),
            "{before}"
        );
        assert!(before.contains("app_peak{svc=\"a\"} 5.0\n"), "{before}");
        assert!(before.contains("app_live{svc=\"a\"} 2.0\n"), "{before}");
        assert!(before.contains("app_size_sum{svc=\"a\"} 7.0\n"), "{before}");
        drop(b); // its writer file is now dead
        let after = encode_aggregate(&a);
        assert_eq!(
            a.multiprocess_counters()
                .compacted_files
                .load(Ordering::Relaxed),
            1
        );
        assert!(dir.join("archive.db").exists());
        assert!(
            after.contains("app_ops_total{op=\"read\",svc=\"a\"} 7.0\n"),
            "{after}"
        );
        assert!(after.contains("app_peak{svc=\"a\"} 5.0\n"), "{after}");
        assert!(after.contains("app_live{svc=\"a\"} 1.0\n"), "{after}");
        assert!(after.contains("app_size_count{svc=\"a\"} 2.0\n"), "{after}");
        record(&a, 1.0);
        let more = encode_aggregate(&a);
        assert!(
            more.contains("app_ops_total{op=\"read\",svc=\"a\"} 8.0\n"),
            "{more}"
        );
        a.reset();
        let reset = encode_aggregate(&a);
        assert!(
            reset.contains("app_ops_total{op=\"read\",svc=\"a\"} 5.0\n"),
            "{reset}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn encode_aggregate(r: &Registry) -> String {
        let aggregate = r.aggregate(1000.0).unwrap().unwrap();
        crate::metrics::encode::encode(&aggregate, false)
    }

    #[test]
    fn shared_summary_slots_fold_the_lowest_bins_beyond_capacity() {
        let dir = temp_dir("slots");
        let r = registry(RegistryConfig {
            summary_max_bins: 4,
            multiprocess_dir: Some(dir.clone()),
            ..RegistryConfig::default()
        });
        let s = r
            .family("x", Kind::Summary, &[])
            .unwrap()
            .series(&[], r.clock());
        for v in [100.0, 1.0, 10.0, 1000.0, 0.1, 5.0] {
            s.summary_observe("x", v, 1000.0).unwrap();
        }
        let (count, sum, sketch) = s.window_sketch(1000.0).unwrap();
        assert_eq!(count, 6);
        assert_eq!(sum, 1116.1);
        assert_eq!(sketch.count(), 6);
        assert_eq!(sketch.quantile(&r.sketch, 1.0), 1000.0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
