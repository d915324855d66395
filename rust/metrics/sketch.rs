//! Summary quantiles: a DDSketch over a sliding time window.
//!
//! DDSketch (Masson, Rim, Lee, VLDB 2019) maps a positive value `x` to the bin
//! `k = ceil(ln(x) / ln(γ))` with `γ = (1 + α) / (1 − α)` and reports the bin as `2γ^k / (γ + 1)`;
//! every value in the bin `(γ^(k−1), γ^k]` is then within relative error `α` of it. Quantiles
//! are rank-exact over the bins, so a reported q-quantile is within `α` (relative, plus float
//! rounding) of the observation of rank `⌊q·(n−1)⌋` in the window, and is clamped to the window's
//! exact minimum and maximum (the ranks of those two are reported exactly). Memory is bounded by `max_bins` per
//! sketch: beyond it the lowest bins are merged upwards (only low quantiles lose accuracy,
//! and only when values span more than `max_bins` bins, about 17 decades at α = 1%).
//!
//! We implement the sketch here instead of using a crate: the pure-Python core must reproduce
//! the reported quantiles bit for bit, which needs the exact operation order of the mapping
//! (`ln`, `powf` from the platform libm, which Python's `math.log`/`math.pow` also call), of bin
//! collapsing (by distinct-bin count, in both cores) and of the window merge. The maintained
//! Rust crate collapses by key span over a dense store and exposes neither choice.
//!
//! The window (`max_age` seconds) is split into `age_buckets` sketches; observations go to the
//! newest, a query merges all of them, and the oldest is cleared each `max_age / age_buckets`
//! seconds. A quantile therefore covers between `max_age·(n−1)/n` and `max_age` seconds.

use std::collections::BTreeMap;

use crate::error::{Error, ErrorKind, Result};

/// The mapping and memory bound shared by every sketch of a summary family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SketchParams {
    pub relative_accuracy: f64,
    pub max_bins: usize,
    gamma: f64,
    multiplier: f64,
}

impl SketchParams {
    pub fn new(relative_accuracy: f64, max_bins: usize) -> Result<Self> {
        if !(relative_accuracy > 0.0 && relative_accuracy < 1.0) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                crate::float::format_float(relative_accuracy),
                "summary relative accuracy must be strictly between 0 and 1",
            ));
        }
        if max_bins < 1 {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                max_bins.to_string(),
                "summary max_bins must be at least 1",
            ));
        }
        let gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy);
        Ok(Self {
            relative_accuracy,
            max_bins,
            gamma,
            multiplier: 1.0 / gamma.ln(),
        })
    }

    #[inline]
    pub(crate) fn key(&self, value: f64) -> i32 {
        (value.ln() * self.multiplier).ceil() as i32
    }

    fn value(&self, key: i32) -> f64 {
        2.0 * self.gamma.powf(f64::from(key)) / (self.gamma + 1.0)
    }
}

/// One DDSketch over non-negative values (zero has its own bin).
#[derive(Debug, Clone, Default)]
pub struct Sketch {
    bins: BTreeMap<i32, u64>,
    zero: u64,
    count: u64,
    min: f64,
    max: f64,
}

impl Sketch {
    /// A sketch from its bins (key, count), zero count, total count and extremes.
    #[must_use]
    pub fn from_parts(bins: BTreeMap<i32, u64>, zero: u64, count: u64, min: f64, max: f64) -> Self {
        Self {
            bins,
            zero,
            count,
            min,
            max,
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }

    fn track_extremes(&mut self, min: f64, max: f64, was_empty: bool) {
        if was_empty {
            self.min = min;
            self.max = max;
        } else {
            self.min = self.min.min(min);
            self.max = self.max.max(max);
        }
    }

    /// Adds one observation; `value` must be `>= 0` and not NaN (checked by the caller).
    pub fn add(&mut self, params: &SketchParams, value: f64) {
        self.track_extremes(value, value, self.count == 0);
        self.count += 1;
        if value > 0.0 {
            *self.bins.entry(params.key(value)).or_insert(0) += 1;
            self.collapse(params);
        } else {
            self.zero += 1;
        }
    }

    /// Adds every observation of `other` (sketches with the same parameters merge exactly).
    pub fn merge(&mut self, params: &SketchParams, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        self.track_extremes(other.min, other.max, self.count == 0);
        self.count += other.count;
        self.zero += other.zero;
        for (&key, &count) in &other.bins {
            *self.bins.entry(key).or_insert(0) += count;
        }
        self.collapse(params);
    }

    /// Keeps at most `max_bins` bins by folding the lowest bin into the next one.
    fn collapse(&mut self, params: &SketchParams) {
        while self.bins.len() > params.max_bins {
            let (_, lowest) = self.bins.pop_first().expect("more than max_bins >= 1 bins");
            *self
                .bins
                .first_entry()
                .expect("at least one bin remains")
                .get_mut() += lowest;
        }
    }

    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The q-quantile estimate (NaN when empty).
    #[must_use]
    pub fn quantile(&self, params: &SketchParams, q: f64) -> f64 {
        if self.count == 0 {
            return f64::NAN;
        }
        let rank = q * (self.count - 1) as f64;
        // The smallest and largest observations are known exactly.
        if rank < 1.0 {
            return self.min;
        }
        if rank >= (self.count - 1) as f64 {
            return self.max;
        }
        let mut seen = self.zero;
        let mut estimate = if seen as f64 > rank { Some(0.0) } else { None };
        if estimate.is_none() {
            for (&key, &count) in &self.bins {
                seen += count;
                if seen as f64 > rank {
                    estimate = Some(params.value(key));
                    break;
                }
            }
        }
        estimate.unwrap_or(self.max).max(self.min).min(self.max)
    }
}

/// A sketch per age bucket; see the module documentation.
#[derive(Debug, Clone)]
pub struct WindowedSketch {
    slots: Vec<Sketch>,
    head: usize,
    head_expires: f64,
    width: f64,
    count: u64,
    sum: f64,
}

impl WindowedSketch {
    /// An empty window of `max_age` seconds in `age_buckets` parts, starting at `now`.
    #[must_use]
    pub fn new(max_age: f64, age_buckets: usize, now: f64) -> Self {
        let width = max_age / age_buckets as f64;
        Self {
            slots: vec![Sketch::default(); age_buckets],
            head: 0,
            head_expires: now + width,
            width,
            count: 0,
            sum: 0.0,
        }
    }

    fn rotate(&mut self, now: f64) {
        if now < self.head_expires {
            return;
        }
        let steps = ((now - self.head_expires) / self.width).floor() + 1.0;
        let clear = if steps >= self.slots.len() as f64 {
            self.slots.len()
        } else {
            steps as usize
        };
        for _ in 0..clear {
            self.head = (self.head + 1) % self.slots.len();
            self.slots[self.head].clear();
        }
        self.head_expires += steps * self.width;
    }

    /// Records `value` (non-negative, not NaN) at time `now`.
    pub fn observe(&mut self, params: &SketchParams, value: f64, now: f64) {
        self.rotate(now);
        self.slots[self.head].add(params, value);
        self.count += 1;
        self.sum += value;
    }

    /// All-time number of observations (the `_count` sample).
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// All-time sum of observations (the `_sum` sample).
    #[must_use]
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The observations of the current window, merged (slots in index order).
    pub fn window(&mut self, params: &SketchParams, now: f64) -> Sketch {
        self.rotate(now);
        let mut merged = Sketch::default();
        for slot in &self.slots {
            merged.merge(params, slot);
        }
        merged
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point of these tests
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_the_relative_error_of_the_exact_rank() {
        let params = SketchParams::new(0.01, 2048).unwrap();
        let mut sketch = Sketch::default();
        let values: Vec<f64> = (1..=1000).map(|i| f64::from(i) * 0.37).collect();
        for &v in &values {
            sketch.add(&params, v);
        }
        for q in [0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 1.0] {
            let exact = values[(q * 999.0_f64).floor() as usize];
            let estimate = sketch.quantile(&params, q);
            assert!(
                (estimate - exact).abs() <= 0.01 * exact + 1e-12,
                "q={q} {estimate} {exact}"
            );
        }
        assert_eq!(sketch.quantile(&params, 0.0), 0.37);
        assert_eq!(sketch.quantile(&params, 1.0), 370.0);
    }

    #[test]
    fn memory_is_bounded_by_max_bins() {
        let params = SketchParams::new(0.01, 16).unwrap();
        let mut sketch = Sketch::default();
        for i in 0..10_000 {
            sketch.add(&params, 1.0 + f64::from(i));
        }
        assert_eq!(sketch.bins.len(), 16);
        assert_eq!(sketch.count(), 10_000);
        assert_eq!(sketch.quantile(&params, 1.0), 10_000.0);
    }

    #[test]
    fn old_observations_leave_the_window() {
        let params = SketchParams::new(0.01, 2048).unwrap();
        let mut window = WindowedSketch::new(10.0, 5, 0.0);
        window.observe(&params, 100.0, 0.5);
        window.observe(&params, 1.0, 9.0);
        assert_eq!(window.window(&params, 9.5).count(), 2);
        assert_eq!(window.window(&params, 10.5).count(), 1);
        assert_eq!(window.window(&params, 100.0).count(), 0);
        assert!(
            window
                .window(&params, 100.0)
                .quantile(&params, 0.5)
                .is_nan()
        );
        assert_eq!(window.count(), 2);
        assert_eq!(window.sum(), 101.0);
    }

    #[test]
    fn zero_has_its_own_bin() {
        let params = SketchParams::new(0.01, 2048).unwrap();
        let mut sketch = Sketch::default();
        for v in [0.0, 0.0, 0.0, 5.0] {
            sketch.add(&params, v);
        }
        assert_eq!(sketch.quantile(&params, 0.5), 0.0);
        assert_eq!(sketch.quantile(&params, 1.0), 5.0);
    }
}
