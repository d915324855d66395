//! The value storage of a series: a contiguous run of 64-bit atomic cells.
//!
//! Counters and gauges use one cell holding the bits of an `f64`; a histogram uses one integer
//! cell per bucket (non-cumulative counts, `+Inf` last) and one `f64` cell for the sum; the
//! creation timestamp is one more `f64` cell. Every update is a single atomic operation on one
//! cell, so writers never take a lock and never wait for a reader.
//!
//! The layout is deliberately "n plain 64-bit words per series": the multiprocess mode (a later
//! issue) backs the same cells by a memory-mapped slab shared by pre-fork workers, replacing only
//! the allocation in [`Cells::new`], not the code that reads or writes values.

use std::sync::atomic::{AtomicU64, Ordering};

/// A fixed-size run of 64-bit atomic cells.
#[derive(Debug)]
pub struct Cells {
    cells: Box<[AtomicU64]>,
}

impl Cells {
    /// `len` zeroed cells (all-zero bits are `0.0` as an `f64` and `0` as an integer).
    #[must_use]
    pub fn new(len: usize) -> Self {
        Self {
            cells: (0..len).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Atomically adds `delta` to the `f64` in cell `index` (a compare-and-swap loop).
    #[inline]
    pub fn add_f64(&self, index: usize, delta: f64) {
        let cell = &self.cells[index];
        let mut current = cell.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + delta).to_bits();
            match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    #[inline]
    pub fn store_f64(&self, index: usize, value: f64) {
        self.cells[index].store(value.to_bits(), Ordering::Relaxed);
    }

    #[inline]
    #[must_use]
    pub fn load_f64(&self, index: usize) -> f64 {
        f64::from_bits(self.cells[index].load(Ordering::Relaxed))
    }

    /// Atomically adds one to the integer in cell `index`.
    #[inline]
    pub fn increment_u64(&self, index: usize) {
        self.cells[index].fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    #[must_use]
    pub fn load_u64(&self, index: usize) -> u64 {
        self.cells[index].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // exact values are the point of these tests
mod tests {
    use super::Cells;
    use std::sync::Arc;

    #[test]
    fn concurrent_float_adds_are_not_lost() {
        let cells = Arc::new(Cells::new(2));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cells = Arc::clone(&cells);
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        cells.add_f64(0, 1.0);
                        cells.increment_u64(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(cells.load_f64(0), 40_000.0);
        assert_eq!(cells.load_u64(1), 40_000);
    }
}
