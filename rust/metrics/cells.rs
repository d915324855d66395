//! The value storage of a series: a contiguous run of 64-bit atomic cells.
//!
//! Counters use one cell holding the bits of an `f64`, gauges one for the value and one for the
//! time it was last set (the multiprocess `latest` modes read it); a histogram uses one integer
//! cell per bucket (non-cumulative counts, `+Inf` last) and one `f64` cell for the sum; the
//! creation timestamp is one more `f64` cell. Every update is a single atomic operation on one
//! cell, so writers never take a lock and never wait for a reader.
//!
//! The cells live either on the heap (one process) or in a memory-mapped file shared with other
//! processes (the multiprocess mode, [`super::multiprocess`]): the code that reads and writes
//! values is the same for both, only the allocation differs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Keeps the memory behind a run of cells alive.
pub trait Backing: Send + Sync + std::fmt::Debug {}

#[derive(Debug)]
enum Owner {
    Heap(#[allow(dead_code)] Box<[AtomicU64]>),
    Shared(#[allow(dead_code)] Arc<dyn Backing>),
}

/// A fixed-size run of 64-bit atomic cells.
#[derive(Debug)]
pub struct Cells {
    ptr: *const AtomicU64,
    len: usize,
    owner: Owner,
}

// SAFETY: `ptr` points into memory owned by `owner` (a heap slice or a shared mapping that
// `Backing` keeps alive) and is only accessed through atomics.
#[allow(unsafe_code)]
unsafe impl Send for Cells {}
// SAFETY: as above; every access is an atomic operation.
#[allow(unsafe_code)]
unsafe impl Sync for Cells {}

impl Cells {
    /// `len` zeroed cells on the heap (all-zero bits are `0.0` as an `f64` and `0` as an integer).
    #[must_use]
    pub fn new(len: usize) -> Self {
        let cells: Box<[AtomicU64]> = (0..len).map(|_| AtomicU64::new(0)).collect();
        Self {
            ptr: cells.as_ptr(),
            len,
            owner: Owner::Heap(cells),
        }
    }

    /// `len` cells at `ptr` inside memory that `backing` keeps mapped.
    ///
    /// # Safety
    /// `ptr` must be 8-byte aligned and valid for reads and writes of `len` `u64`s for as long
    /// as `backing` lives, and that memory must only be accessed atomically.
    #[allow(unsafe_code)]
    #[must_use]
    pub unsafe fn shared(ptr: *const AtomicU64, len: usize, backing: Arc<dyn Backing>) -> Self {
        Self {
            ptr,
            len,
            owner: Owner::Shared(backing),
        }
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the cells live in a shared mapping.
    #[must_use]
    pub fn is_shared(&self) -> bool {
        matches!(self.owner, Owner::Shared(_))
    }

    #[inline]
    #[must_use]
    pub fn cell(&self, index: usize) -> &AtomicU64 {
        assert!(index < self.len, "cell {index} out of {}", self.len);
        // SAFETY: `index < len`, and `ptr..ptr+len` is valid while `self` lives (see `new` and
        // `shared`).
        #[allow(unsafe_code)]
        unsafe {
            &*self.ptr.add(index)
        }
    }

    /// Atomically adds `delta` to the `f64` in cell `index` (a compare-and-swap loop).
    #[inline]
    pub fn add_f64(&self, index: usize, delta: f64) {
        let cell = self.cell(index);
        let mut current = cell.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + delta).to_bits();
            match cell.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Atomically adds `delta` to the float in cell `index` unless the sum would not be finite
    /// (an overflow to infinity); returns whether it added (if not, the cell is unchanged).
    #[inline]
    #[must_use]
    pub fn add_f64_finite(&self, index: usize, delta: f64) -> bool {
        let cell = self.cell(index);
        let mut current = cell.load(Ordering::Relaxed);
        loop {
            let next = f64::from_bits(current) + delta;
            if !next.is_finite() {
                return false;
            }
            match cell.compare_exchange_weak(
                current,
                next.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }

    #[inline]
    pub fn store_f64(&self, index: usize, value: f64) {
        self.cell(index).store(value.to_bits(), Ordering::Relaxed);
    }

    #[inline]
    #[must_use]
    pub fn load_f64(&self, index: usize) -> f64 {
        f64::from_bits(self.cell(index).load(Ordering::Relaxed))
    }

    /// Atomically adds one to the integer in cell `index`.
    #[inline]
    pub fn increment_u64(&self, index: usize) {
        self.cell(index).fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub fn store_u64(&self, index: usize, value: u64) {
        self.cell(index).store(value, Ordering::Relaxed);
    }

    #[inline]
    #[must_use]
    pub fn load_u64(&self, index: usize) -> u64 {
        self.cell(index).load(Ordering::Relaxed)
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
