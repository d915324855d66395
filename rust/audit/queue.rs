//! The bounded hand-off between callers and the native writer thread.
//!
//! Producers append to the current batch under a mutex held for a few hundred nanoseconds; the
//! writer swaps the whole batch out (double buffering, so allocations are reused) and writes it
//! without holding the lock. Nobody busy-waits: the writer sleeps on a condition variable until
//! records arrive, a flush is requested, the queue closes or the periodic flush is due; blocked
//! producers and flushers sleep on their own condition variables.
//!
//! Accounting (exact at quiescence): `accepted = persisted + failed + pending`, and every record
//! offered but not accepted is counted in `dropped`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A batch of queued records.
pub trait Batch: Default + Send + 'static {
    /// How many records it holds.
    fn count(&self) -> usize;
    /// Empties it, keeping its allocation.
    fn clear(&mut self);
}

impl<T: Send + 'static> Batch for Vec<T> {
    fn count(&self) -> usize {
        self.len()
    }
    fn clear(&mut self) {
        Vec::clear(self);
    }
}

/// Encoded records, concatenated: written with one `write(2)`.
#[derive(Debug, Default)]
pub struct Lines {
    pub bytes: Vec<u8>,
    pub count: usize,
}

impl Batch for Lines {
    fn count(&self) -> usize {
        self.count
    }
    fn clear(&mut self) {
        self.bytes.clear();
        self.count = 0;
    }
}

/// Where the writer thread delivers batches.
pub trait BatchSink<B: Batch>: Send + 'static {
    /// Persists a batch; returns how many of its records failed (0 = all persisted).
    fn write_batch(&mut self, batch: &mut B) -> u64;
    /// Periodic / requested flush (durability point of the sink).
    fn flush(&mut self);
    /// Called once, after the last batch.
    fn close(&mut self);
}

/// What to do when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Wait up to the duration for room; then drop the record and count it.
    Block(Duration),
    /// Drop the new record at once and count it.
    DropNewest,
}

/// Result of offering a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    Accepted,
    /// The queue was full (and stayed full for the whole block timeout).
    Dropped,
    /// The queue is closed.
    Closed,
}

/// Public counters.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub accepted: AtomicU64,
    pub dropped: AtomicU64,
    pub persisted: AtomicU64,
    pub failed: AtomicU64,
}

// Four independent flags guarded by one mutex; a state machine would not make them clearer.
#[allow(clippy::struct_excessive_bools)]
struct State<B> {
    batch: B,
    closing: bool,
    stopped: bool,
    writer_sleeping: bool,
    wake_sent: bool,
    producers_waiting: usize,
    /// Records accepted / records written or failed (under the lock, for flush handshakes).
    accepted: u64,
    done: u64,
    flush_requested: u64,
    flushed: u64,
}

struct Shared<B> {
    state: Mutex<State<B>>,
    writer_wake: Condvar,
    room: Condvar,
    progress: Condvar,
    capacity: usize,
    overflow: Overflow,
    stats: QueueStats,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A bounded queue with its writer thread.
pub struct AsyncQueue<B: Batch> {
    shared: Arc<Shared<B>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl<B: Batch> AsyncQueue<B> {
    /// Starts the writer thread. `flush_interval` is the period of the sink's timed flush.
    pub fn start(
        sink: impl BatchSink<B>,
        capacity: usize,
        overflow: Overflow,
        flush_interval: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                batch: B::default(),
                closing: false,
                stopped: false,
                writer_sleeping: false,
                wake_sent: false,
                producers_waiting: 0,
                accepted: 0,
                done: 0,
                flush_requested: 0,
                flushed: 0,
            }),
            writer_wake: Condvar::new(),
            room: Condvar::new(),
            progress: Condvar::new(),
            capacity: capacity.max(1),
            overflow,
            stats: QueueStats::default(),
        });
        let thread_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("truthound-audit-writer".to_owned())
            .spawn(move || writer_loop(&thread_shared, sink, flush_interval))?;
        Ok(Self {
            shared,
            writer: Mutex::new(Some(handle)),
        })
    }

    #[must_use]
    pub fn stats(&self) -> &QueueStats {
        &self.shared.stats
    }

    #[must_use]
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Records queued and not yet written.
    #[must_use]
    pub fn pending(&self) -> u64 {
        let s = &self.shared.stats;
        let accepted = s.accepted.load(Ordering::Acquire);
        accepted
            .saturating_sub(s.persisted.load(Ordering::Acquire) + s.failed.load(Ordering::Acquire))
    }

    /// Offers a record without ever waiting: `add` appends it to the batch when there is room.
    /// Returns `None` when the queue is full and the policy is to block (call [`Self::offer`]).
    pub fn try_offer(&self, add: impl FnOnce(&mut B)) -> Result<Offer, impl FnOnce(&mut B)> {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        if state.closing {
            return Ok(Offer::Closed);
        }
        if state.batch.count() >= shared.capacity {
            if shared.overflow == Overflow::DropNewest {
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(Offer::Dropped);
            }
            return Err(add);
        }
        Self::accept(shared, &mut state, add);
        Ok(Offer::Accepted)
    }

    /// Offers a record, waiting for room per the overflow policy (may block).
    pub fn offer(&self, add: impl FnOnce(&mut B)) -> Offer {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        if state.closing {
            return Offer::Closed;
        }
        if state.batch.count() >= shared.capacity {
            let Overflow::Block(timeout) = shared.overflow else {
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Offer::Dropped;
            };
            let deadline = Instant::now() + timeout;
            state.producers_waiting += 1;
            while state.batch.count() >= shared.capacity && !state.closing {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                state = shared
                    .room
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            state.producers_waiting -= 1;
            if state.closing {
                return Offer::Closed;
            }
            if state.batch.count() >= shared.capacity {
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Offer::Dropped;
            }
        }
        Self::accept(shared, &mut state, add);
        Offer::Accepted
    }

    fn accept(shared: &Shared<B>, state: &mut State<B>, add: impl FnOnce(&mut B)) {
        add(&mut state.batch);
        state.accepted += 1;
        shared.stats.accepted.fetch_add(1, Ordering::Release);
        if state.writer_sleeping && !state.wake_sent {
            state.wake_sent = true;
            shared.writer_wake.notify_one();
        }
    }

    /// Waits until every record accepted before this call is written and the sink flushed.
    /// Returns `false` on timeout (or when the writer has stopped with records unwritten).
    pub fn flush(&self, timeout: Duration) -> bool {
        let shared = &*self.shared;
        let mut state = lock(&shared.state);
        if state.stopped {
            return state.done >= state.accepted;
        }
        let target = state.accepted;
        state.flush_requested += 1;
        let generation = state.flush_requested;
        if state.writer_sleeping && !state.wake_sent {
            state.wake_sent = true;
        }
        shared.writer_wake.notify_one();
        let deadline = Instant::now() + timeout;
        while !(state.stopped || (state.done >= target && state.flushed >= generation)) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = shared
                .progress
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        state.done >= target
    }

    /// Stops accepting, drains everything queued, flushes and closes the sink, and joins the
    /// writer. Returns `false` if that did not finish within `timeout` (the writer keeps draining
    /// in the background). Idempotent.
    pub fn close(&self, timeout: Duration) -> bool {
        let shared = &*self.shared;
        {
            let mut state = lock(&shared.state);
            state.closing = true;
            shared.writer_wake.notify_one();
            shared.room.notify_all();
            let deadline = Instant::now() + timeout;
            while !state.stopped {
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                state = shared
                    .progress
                    .wait_timeout(state, deadline - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
        if let Some(handle) = lock(&self.writer).take() {
            let _ = handle.join();
        }
        true
    }

    #[must_use]
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.state).closing
    }
}

impl<B: Batch> Drop for AsyncQueue<B> {
    fn drop(&mut self) {
        // Never wait here (the caller may hold resources the writer needs); the writer drains
        // what is queued and exits on its own.
        let mut state = lock(&self.shared.state);
        state.closing = true;
        self.shared.writer_wake.notify_one();
        self.shared.room.notify_all();
    }
}

fn writer_loop<B: Batch>(shared: &Shared<B>, mut sink: impl BatchSink<B>, interval: Duration) {
    let interval = if interval.is_zero() {
        Duration::from_secs(3600)
    } else {
        interval
    };
    let mut spare = B::default();
    let mut next_tick = Instant::now() + interval;
    loop {
        let (generation, closing, tick);
        {
            let mut state = lock(&shared.state);
            loop {
                if state.batch.count() > 0 || state.closing || state.flush_requested > state.flushed
                {
                    break;
                }
                let now = Instant::now();
                if now >= next_tick {
                    break;
                }
                state.writer_sleeping = true;
                state.wake_sent = false;
                state = shared
                    .writer_wake
                    .wait_timeout(state, next_tick - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
                state.writer_sleeping = false;
            }
            std::mem::swap(&mut state.batch, &mut spare);
            generation = state.flush_requested;
            closing = state.closing;
            tick = Instant::now() >= next_tick;
            if state.producers_waiting > 0 {
                shared.room.notify_all();
            }
        }
        let count = spare.count() as u64;
        if count > 0 {
            let failed = sink.write_batch(&mut spare).min(count);
            spare.clear();
            shared.stats.failed.fetch_add(failed, Ordering::Release);
            shared
                .stats
                .persisted
                .fetch_add(count - failed, Ordering::Release);
        }
        let mut state = lock(&shared.state);
        let flush_due = generation > state.flushed || tick || (closing && state.batch.count() == 0);
        if flush_due {
            drop(state);
            sink.flush();
            next_tick = Instant::now() + interval;
            state = lock(&shared.state);
            state.flushed = state.flushed.max(generation);
        }
        state.done += count;
        shared.progress.notify_all();
        if closing && state.batch.count() == 0 {
            drop(state);
            sink.close();
            let mut state = lock(&shared.state);
            state.stopped = true;
            shared.progress.notify_all();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Arc<Mutex<Vec<u32>>>, u32);

    impl BatchSink<Vec<u32>> for Collect {
        fn write_batch(&mut self, batch: &mut Vec<u32>) -> u64 {
            // Fails every record equal to the poison value.
            let failed = batch.iter().filter(|v| **v == self.1).count() as u64;
            lock(&self.0).extend(batch.iter().copied().filter(|v| *v != self.1));
            failed
        }
        fn flush(&mut self) {}
        fn close(&mut self) {}
    }

    #[test]
    fn accounts_for_every_record_and_flush_waits_for_them() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let queue = AsyncQueue::start(
            Collect(Arc::clone(&seen), 7),
            16,
            Overflow::DropNewest,
            Duration::from_millis(50),
        )
        .unwrap();
        let mut offered = 0u64;
        for i in 0..10_000u32 {
            offered += 1;
            let _ = queue.offer(|b: &mut Vec<u32>| b.push(i));
        }
        assert!(queue.flush(Duration::from_secs(10)));
        let s = queue.stats();
        let (accepted, dropped) = (
            s.accepted.load(Ordering::Relaxed),
            s.dropped.load(Ordering::Relaxed),
        );
        let (persisted, failed) = (
            s.persisted.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
        );
        assert_eq!(accepted + dropped, offered);
        assert_eq!(persisted + failed, accepted);
        assert_eq!(lock(&seen).len() as u64, persisted);
        assert!(queue.close(Duration::from_secs(10)));
        assert_eq!(queue.offer(|b: &mut Vec<u32>| b.push(1)), Offer::Closed);
    }

    #[test]
    fn blocking_policy_loses_nothing_and_close_drains() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(
            AsyncQueue::start(
                Collect(Arc::clone(&seen), u32::MAX),
                4,
                Overflow::Block(Duration::from_secs(30)),
                Duration::from_millis(50),
            )
            .unwrap(),
        );
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let q = Arc::clone(&queue);
                std::thread::spawn(move || {
                    for i in 0..5_000u32 {
                        assert_eq!(
                            q.offer(|b: &mut Vec<u32>| b.push(t * 10_000 + i)),
                            Offer::Accepted
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(queue.close(Duration::from_secs(10)));
        let mut seen = lock(&seen).clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 20_000);
    }
}
