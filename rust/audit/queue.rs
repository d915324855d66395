//! The bounded hand-off between callers and the native writer thread.
//!
//! Producers append to the current batch under a mutex held for a few hundred nanoseconds; the
//! writer swaps the whole batch out (double buffering, so allocations are reused) and writes it
//! without holding the lock. Nobody busy-waits: the writer sleeps on a condition variable until
//! records arrive, a flush is requested, the queue closes or the periodic flush is due; blocked
//! producers and flushers sleep on their own condition variables.
//!
//! Accounting (exact at quiescence): `accepted = persisted + failed + discarded + pending`, and
//! every record offered but not accepted is counted in `dropped`. `discarded` counts records the
//! sink gave up on without trying (a Python target at interpreter exit).
//!
//! Fork safety: the batch, its locks, the counters and the writer thread belong to one process
//! ([`PerProcess`]). A forked child starts with an empty queue, zero counters and (on its first
//! record) a writer thread of its own, made from the same sink factory; it never touches the
//! inherited queue, so a lock held there by a thread that does not exist in the child cannot
//! block it, and the records the parent had queued are written once, by the parent.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::fork::{Current, PerProcess, ProcessLocal};

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

/// What became of a batch's records; the rest were persisted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Records the sink tried and failed to write.
    pub failed: u64,
    /// Records the sink gave up on without trying (its target is going away).
    pub discarded: u64,
}

impl Outcome {
    /// Every record persisted.
    pub const PERSISTED: Self = Self {
        failed: 0,
        discarded: 0,
    };

    #[must_use]
    pub fn failed(count: u64) -> Self {
        Self {
            failed: count,
            discarded: 0,
        }
    }
}

/// Where the writer thread delivers batches.
pub trait BatchSink<B: Batch>: Send + 'static {
    /// Persists a batch (and empties it); says how many of its records were not persisted.
    fn write_batch(&mut self, batch: &mut B) -> Outcome;
    /// Periodic / requested flush (durability point of the sink).
    fn flush(&mut self);
    /// Called once, after the last batch.
    fn close(&mut self);
}

/// Makes the sink of a writer thread (one per process).
pub type SinkFactory<B> = Box<dyn Fn() -> Box<dyn BatchSink<B>> + Send + Sync>;

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
    /// The queue was full (and stayed full for the whole block timeout), or no writer thread
    /// could be started.
    Dropped,
    /// The queue is closed.
    Closed,
}

/// Public counters (of this process).
#[derive(Debug, Default)]
pub struct QueueStats {
    pub accepted: AtomicU64,
    pub dropped: AtomicU64,
    pub persisted: AtomicU64,
    pub failed: AtomicU64,
    pub discarded: AtomicU64,
}

/// A snapshot of [`QueueStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub accepted: u64,
    pub dropped: u64,
    pub persisted: u64,
    pub failed: u64,
    pub discarded: u64,
}

// Five independent flags guarded by one mutex; a state machine would not make them clearer.
#[allow(clippy::struct_excessive_bools)]
struct State<B> {
    batch: B,
    closing: bool,
    stopped: bool,
    writer_started: bool,
    writer_sleeping: bool,
    wake_sent: bool,
    producers_waiting: usize,
    /// Records accepted / records written or failed (under the lock, for flush handshakes).
    accepted: u64,
    done: u64,
    flush_requested: u64,
    flushed: u64,
}

/// One process's queue.
struct Shared<B> {
    state: Mutex<State<B>>,
    writer_wake: Condvar,
    room: Condvar,
    progress: Condvar,
    stats: QueueStats,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl<B: Batch> Shared<B> {
    fn new(closed: bool) -> Self {
        Self {
            state: Mutex::new(State {
                batch: B::default(),
                closing: closed,
                stopped: closed,
                writer_started: false,
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
            stats: QueueStats::default(),
            writer: Mutex::new(None),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A bounded queue with its writer thread (one queue and one thread per process).
pub struct AsyncQueue<B: Batch> {
    shared: PerProcess<Shared<B>>,
    make_sink: Arc<SinkFactory<B>>,
    capacity: usize,
    overflow: Overflow,
    interval: Duration,
    /// Closed by `close()` or drop, in this process or an ancestor before the fork.
    closed: AtomicBool,
}

impl<B: Batch> AsyncQueue<B> {
    /// Starts the writer thread. `flush_interval` is the period of the sink's timed flush;
    /// `make_sink` makes the sink of the writer thread (again in each forked child that logs).
    pub fn start(
        make_sink: SinkFactory<B>,
        capacity: usize,
        overflow: Overflow,
        flush_interval: Duration,
    ) -> std::io::Result<Self> {
        let queue = Self {
            shared: PerProcess::new(Shared::new(false)),
            make_sink: Arc::new(make_sink),
            capacity: capacity.max(1),
            overflow,
            interval: flush_interval,
            closed: AtomicBool::new(false),
        };
        let shared = queue.current();
        let mut state = lock(&shared.state);
        queue.spawn_writer(&shared, &mut state)?;
        drop(state);
        drop(shared);
        Ok(queue)
    }

    /// This process's queue (a fresh, empty one in a forked child).
    fn current(&self) -> Current<Shared<B>> {
        self.shared
            .get(|| Shared::new(self.closed.load(Ordering::Acquire)), |_| {})
    }

    /// Starts this process's writer thread. The caller holds the state lock.
    fn spawn_writer(
        &self,
        shared: &Arc<ProcessLocal<Shared<B>>>,
        state: &mut State<B>,
    ) -> std::io::Result<()> {
        let thread_shared = Arc::clone(shared);
        let make_sink = Arc::clone(&self.make_sink);
        let interval = self.interval;
        let handle = crate::fork::spawn(
            std::thread::Builder::new().name("truthound-audit-writer".to_owned()),
            move || writer_loop(&thread_shared, make_sink(), interval),
        )?;
        state.writer_started = true;
        *lock(&shared.writer) = Some(handle);
        Ok(())
    }

    /// This process's counters.
    #[must_use]
    pub fn stats(&self) -> Counts {
        let shared = self.current();
        let s = &shared.stats;
        Counts {
            accepted: s.accepted.load(Ordering::Acquire),
            dropped: s.dropped.load(Ordering::Acquire),
            persisted: s.persisted.load(Ordering::Acquire),
            failed: s.failed.load(Ordering::Acquire),
            discarded: s.discarded.load(Ordering::Acquire),
        }
    }

    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records queued (by this process) and not yet written.
    #[must_use]
    pub fn pending(&self) -> u64 {
        let c = self.stats();
        c.accepted
            .saturating_sub(c.persisted + c.failed + c.discarded)
    }

    /// Offers a record without ever waiting: `add` appends it to the batch when there is room.
    /// Returns `Err(add)` when the queue is full and the policy is to block (call
    /// [`Self::offer`]).
    pub fn try_offer(&self, add: impl FnOnce(&mut B)) -> Result<Offer, impl FnOnce(&mut B)> {
        let shared = self.current();
        let mut state = lock(&shared.state);
        if state.closing {
            return Ok(Offer::Closed);
        }
        if state.batch.count() >= self.capacity {
            if self.overflow == Overflow::DropNewest {
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(Offer::Dropped);
            }
            return Err(add);
        }
        Ok(self.accept(&shared, &mut state, add))
    }

    /// Offers a record, waiting for room per the overflow policy (may block).
    pub fn offer(&self, add: impl FnOnce(&mut B)) -> Offer {
        let shared = self.current();
        let mut state = lock(&shared.state);
        if state.closing {
            return Offer::Closed;
        }
        if state.batch.count() >= self.capacity {
            let Overflow::Block(timeout) = self.overflow else {
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Offer::Dropped;
            };
            let deadline = Instant::now() + timeout;
            state.producers_waiting += 1;
            while state.batch.count() >= self.capacity && !state.closing {
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
            if state.batch.count() >= self.capacity {
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Offer::Dropped;
            }
        }
        self.accept(&shared, &mut state, add)
    }

    fn accept(
        &self,
        shared: &Arc<ProcessLocal<Shared<B>>>,
        state: &mut State<B>,
        add: impl FnOnce(&mut B),
    ) -> Offer {
        if !state.writer_started && self.spawn_writer(shared, state).is_err() {
            // A forked child that cannot start its writer thread: refuse, counted.
            shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Offer::Dropped;
        }
        add(&mut state.batch);
        state.accepted += 1;
        shared.stats.accepted.fetch_add(1, Ordering::Release);
        if state.writer_sleeping && !state.wake_sent {
            state.wake_sent = true;
            shared.writer_wake.notify_one();
        }
        Offer::Accepted
    }

    /// Waits until every record accepted (by this process) before this call is written and the
    /// sink flushed. Returns `false` on timeout (or when the writer has stopped with records
    /// unwritten).
    pub fn flush(&self, timeout: Duration) -> bool {
        let shared = self.current();
        let mut state = lock(&shared.state);
        if state.stopped || !state.writer_started {
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

    /// Stops accepting, drains everything queued (by this process), flushes and closes the
    /// sink, and joins the writer. Returns `false` if that did not finish within `timeout` (the
    /// writer keeps draining in the background). Idempotent.
    pub fn close(&self, timeout: Duration) -> bool {
        self.closed.store(true, Ordering::Release);
        let shared = self.current();
        {
            let mut state = lock(&shared.state);
            state.closing = true;
            if !state.writer_started {
                state.stopped = true;
            }
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
        if let Some(handle) = lock(&shared.writer).take() {
            let _ = handle.join();
        }
        true
    }

    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl<B: Batch> Drop for AsyncQueue<B> {
    fn drop(&mut self) {
        // Never wait here (the caller may hold resources the writer needs); the writer drains
        // what is queued and exits on its own. A queue inherited across a fork is not touched.
        self.closed.store(true, Ordering::Release);
        if let Some(shared) = self.shared.if_current() {
            let mut state = lock(&shared.state);
            state.closing = true;
            shared.writer_wake.notify_one();
            shared.room.notify_all();
        }
    }
}

fn writer_loop<B: Batch>(shared: &Shared<B>, mut sink: Box<dyn BatchSink<B>>, interval: Duration) {
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
            let outcome = sink.write_batch(&mut spare);
            spare.clear();
            let failed = outcome.failed.min(count);
            let discarded = outcome.discarded.min(count - failed);
            shared.stats.failed.fetch_add(failed, Ordering::Release);
            shared
                .stats
                .discarded
                .fetch_add(discarded, Ordering::Release);
            shared
                .stats
                .persisted
                .fetch_add(count - failed - discarded, Ordering::Release);
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
    use crate::fork::testing::in_child;

    struct Collect(Arc<Mutex<Vec<u32>>>, u32);

    fn collect(seen: &Arc<Mutex<Vec<u32>>>, poison: u32) -> SinkFactory<Vec<u32>> {
        let seen = Arc::clone(seen);
        Box::new(move || Box::new(Collect(Arc::clone(&seen), poison)))
    }

    impl BatchSink<Vec<u32>> for Collect {
        fn write_batch(&mut self, batch: &mut Vec<u32>) -> Outcome {
            // Fails every record equal to the poison value.
            let failed = batch.iter().filter(|v| **v == self.1).count() as u64;
            lock(&self.0).extend(batch.iter().copied().filter(|v| *v != self.1));
            Outcome::failed(failed)
        }
        fn flush(&mut self) {}
        fn close(&mut self) {}
    }

    #[test]
    fn accounts_for_every_record_and_flush_waits_for_them() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let queue = AsyncQueue::start(
            collect(&seen, 7),
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
        let Counts {
            accepted,
            dropped,
            persisted,
            failed,
            discarded,
        } = queue.stats();
        assert_eq!(discarded, 0);
        assert_eq!(accepted + dropped, offered);
        assert_eq!(persisted + failed, accepted);
        assert_eq!(lock(&seen).len() as u64, persisted);
        assert!(queue.close(Duration::from_secs(10)));
        assert_eq!(queue.offer(|b: &mut Vec<u32>| b.push(1)), Offer::Closed);
    }

    #[test]
    fn records_a_sink_discards_are_counted_and_leave_nothing_pending() {
        // Discards every odd record, as a sink whose target went away would.
        struct Discarding;
        impl BatchSink<Vec<u32>> for Discarding {
            fn write_batch(&mut self, batch: &mut Vec<u32>) -> Outcome {
                let odd = batch.iter().filter(|v| **v % 2 == 1).count() as u64;
                batch.clear();
                Outcome {
                    failed: 0,
                    discarded: odd,
                }
            }
            fn flush(&mut self) {}
            fn close(&mut self) {}
        }
        let queue = AsyncQueue::start(
            Box::new(|| Box::new(Discarding)),
            64,
            Overflow::Block(Duration::from_secs(30)),
            Duration::from_millis(50),
        )
        .unwrap();
        for i in 0..1_000u32 {
            assert_eq!(queue.offer(|b: &mut Vec<u32>| b.push(i)), Offer::Accepted);
        }
        assert!(queue.close(Duration::from_secs(10)));
        let counts = queue.stats();
        assert_eq!(counts.accepted, 1_000);
        assert_eq!(counts.persisted + counts.failed + counts.discarded, 1_000);
        assert_eq!(counts.failed, 0);
        assert_eq!(queue.pending(), 0);
        assert_eq!(counts.discarded, 500);
    }

    #[test]
    fn blocking_policy_loses_nothing_and_close_drains() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(
            AsyncQueue::start(
                collect(&seen, u32::MAX),
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

    #[test]
    fn a_forked_child_gets_its_own_queue_and_writer() {
        // Records count, sum and max (atomics: a lock of the test's own would not survive the
        // fork either). A slow sink keeps records queued; a producer keeps taking the lock.
        #[derive(Default)]
        struct Seen {
            count: AtomicU64,
            sum: AtomicU64,
            max: AtomicU64,
        }
        struct Slow(Arc<Seen>);
        impl BatchSink<Vec<u32>> for Slow {
            fn write_batch(&mut self, batch: &mut Vec<u32>) -> Outcome {
                std::thread::sleep(Duration::from_millis(2));
                for v in batch.iter() {
                    self.0.count.fetch_add(1, Ordering::SeqCst);
                    self.0.sum.fetch_add(u64::from(*v), Ordering::SeqCst);
                    self.0.max.fetch_max(u64::from(*v), Ordering::SeqCst);
                }
                Outcome::PERSISTED
            }
            fn flush(&mut self) {}
            fn close(&mut self) {}
        }
        let seen = Arc::new(Seen::default());
        let factory_seen = Arc::clone(&seen);
        let queue = Arc::new(
            AsyncQueue::start(
                Box::new(move || Box::new(Slow(Arc::clone(&factory_seen)))),
                1 << 16,
                Overflow::Block(Duration::from_secs(30)),
                Duration::from_millis(20),
            )
            .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let producer = {
            let (queue, stop) = (Arc::clone(&queue), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    assert_eq!(queue.offer(|b: &mut Vec<u32>| b.push(i)), Offer::Accepted);
                    i = (i + 1) % 1_000_000;
                }
            })
        };
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(3));
            let status = in_child(|| {
                // Nothing of the parent's runs here: these are stable.
                let (count, sum) = (
                    seen.count.load(Ordering::SeqCst),
                    seen.sum.load(Ordering::SeqCst),
                );
                for i in 0..100 {
                    let record = 2_000_000 + i;
                    assert_eq!(
                        queue.offer(|b: &mut Vec<u32>| b.push(record)),
                        Offer::Accepted
                    );
                }
                let flushed = queue.flush(Duration::from_secs(10));
                let mine = queue.stats();
                flushed
                    && mine.accepted == 100
                    && mine.persisted == 100
                    && queue.pending() == 0
                    && seen.count.load(Ordering::SeqCst) - count == 100
                    && seen.sum.load(Ordering::SeqCst) - sum == (2_000_000..2_000_100).sum::<u64>()
                    && queue.close(Duration::from_secs(10))
            });
            assert_eq!(status, 0);
        }
        stop.store(true, Ordering::Relaxed);
        producer.join().unwrap();
        assert!(queue.close(Duration::from_secs(30)));
        let counts = queue.stats();
        assert_eq!(counts.persisted, counts.accepted);
        assert_eq!(seen.count.load(Ordering::SeqCst), counts.persisted);
        assert!(
            seen.max.load(Ordering::SeqCst) < 2_000_000,
            "no child record in the parent"
        );
    }
}
