//! Fork safety, shared by the pillars: after `fork()` only the forking thread exists in the
//! child, so every lock another thread held stays held forever there, and every thread the
//! parent started (writers, timers, compressors) is gone. Three tools, one `pthread_atfork`
//! registration:
//!
//! - The *fork gate*, for short critical sections that never wait for anything outside the core
//!   (the metrics pillar). Every lock is taken through [`lock`], [`read`] or [`write`], which
//!   first enter the gate: a per-thread counter (a "big reader" lock with one slot per thread, so
//!   entering costs one uncontended store on the thread's own cache line, never a shared
//!   atomic). The prepare handler closes the gate and waits until every other thread has left
//!   its critical sections; the parent and child handlers reopen it. A child therefore starts
//!   with every gated lock free and every structure consistent, and can use it at once. The wait
//!   is bounded because those sections never call Python or wait for anything (the forking
//!   thread may hold the GIL; the threads it waits for have released it). A thread that forks
//!   from inside a critical section is not waited for. The child handler also runs the hooks
//!   registered with [`on_fork_child`].
//!
//! - [`PerProcess`] values, for state that belongs to one process: a queue drained by a thread
//!   of its own, open descriptors and `flock`s, locks held across file I/O or condition-variable
//!   waits (the audit pillar). The gate does not fit those: its prepare handler would wait for
//!   another thread's `fdatasync`, or for a `flock` held by another process, before every fork.
//!   Instead, a child never touches its parent's instance (whose locks may be held by threads
//!   that do not exist there, whose work the parent finishes) and builds a fresh one on first
//!   use. The check is one atomic load of the fork [`generation`], which the child handler bumps
//!   (an async-signal-safe increment; nothing else happens inside `fork()`). An instance made by
//!   another process is never dropped (its destructor could join threads that do not exist or
//!   read a half-updated structure); it is leaked, which costs a few hundred bytes per fork.
//!
//! - [`spawn`]: the core creates its threads inside the gate, because glibc cannot fork safely
//!   while another thread is inside `pthread_create` (see there).
//!
//! All rely on the handlers being registered before the fork: every constructor calls
//! [`register`] (or [`enter`]). Forks that bypass `pthread_atfork` (a raw `clone` syscall)
//! are not seen; `fork()`, Python's `os.fork`, `multiprocessing` and pre-fork servers all call
//! the handlers.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, RwLock, RwLockReadGuard, RwLockWriteGuard};

use arc_swap::ArcSwap;

static FORKING: AtomicBool = AtomicBool::new(false);
/// How many forks led to this process (0 in the process that first loaded the core).
static GENERATION: AtomicU64 = AtomicU64::new(0);
static SLOTS: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
static REGISTER: Once = Once::new();

/// One thread's gate slot: how deeply it is nested in critical sections.
struct Slot {
    active: AtomicUsize,
    claimed: AtomicBool,
    next: *mut Slot,
}

// SAFETY: `next` is written once before the slot is published and never changed afterwards;
// the other fields are atomics.
#[allow(unsafe_code)]
unsafe impl Sync for Slot {}

fn claim_slot() -> &'static Slot {
    let mut current = SLOTS.load(Ordering::Acquire);
    while !current.is_null() {
        // SAFETY: slots are leaked boxes, never freed, so every published pointer stays valid.
        #[allow(unsafe_code)]
        let slot = unsafe { &*current };
        if slot
            .claimed
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return slot;
        }
        current = slot.next;
    }
    let slot = Box::leak(Box::new(Slot {
        active: AtomicUsize::new(0),
        claimed: AtomicBool::new(true),
        next: std::ptr::null_mut(),
    }));
    let mut head = SLOTS.load(Ordering::Acquire);
    loop {
        slot.next = head;
        match SLOTS.compare_exchange_weak(head, slot, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return slot,
            Err(actual) => head = actual,
        }
    }
}

fn for_each_slot(mut f: impl FnMut(&'static Slot)) {
    let mut current = SLOTS.load(Ordering::Acquire);
    while !current.is_null() {
        // SAFETY: as in `claim_slot`.
        #[allow(unsafe_code)]
        let slot = unsafe { &*current };
        f(slot);
        current = slot.next;
    }
}

/// Releases the thread's slot for reuse when the thread exits.
struct SlotHandle(&'static Slot);

impl Drop for SlotHandle {
    fn drop(&mut self) {
        self.0.claimed.store(false, Ordering::Release);
    }
}

thread_local! {
    static SLOT: SlotHandle = SlotHandle(claim_slot());
    static MINE: Cell<*const Slot> = const { Cell::new(std::ptr::null()) };
}

fn my_slot() -> &'static Slot {
    SLOT.with(|handle| {
        MINE.with(|mine| mine.set(std::ptr::from_ref(handle.0)));
        handle.0
    })
}

/// A thread inside the gate; leaving it (on drop) lets a pending fork proceed.
#[must_use]
pub struct Token(&'static Slot);

impl Drop for Token {
    #[inline]
    fn drop(&mut self) {
        let active = self.0.active.load(Ordering::Relaxed);
        self.0.active.store(active - 1, Ordering::Release);
    }
}

/// Registers the `pthread_atfork` handlers (once per process; inherited by children).
#[inline]
pub fn register() {
    REGISTER.call_once(register_handlers);
}

/// The fork generation of this process: it changes in a child forked after [`register`].
#[inline]
#[must_use]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Enters the fork gate (re-entrant); waits while a fork is in progress.
#[inline]
pub fn enter() -> Token {
    register();
    let slot = my_slot();
    let active = slot.active.load(Ordering::Relaxed);
    if active > 0 {
        slot.active.store(active + 1, Ordering::Relaxed);
        return Token(slot);
    }
    loop {
        slot.active.swap(1, Ordering::SeqCst);
        if !FORKING.load(Ordering::SeqCst) {
            return Token(slot);
        }
        slot.active.store(0, Ordering::SeqCst);
        while FORKING.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
    }
}

/// A lock guard that also holds the fork gate (the lock is released first).
pub struct Gated<G> {
    guard: G,
    _token: Token,
}

impl<G: std::ops::Deref> std::ops::Deref for Gated<G> {
    type Target = G::Target;
    fn deref(&self) -> &G::Target {
        &self.guard
    }
}

impl<G: std::ops::DerefMut> std::ops::DerefMut for Gated<G> {
    fn deref_mut(&mut self) -> &mut G::Target {
        &mut self.guard
    }
}

/// Locks `mutex` inside the fork gate (a poisoned lock is recovered: values stay usable).
#[inline]
pub fn lock<T>(mutex: &Mutex<T>) -> Gated<MutexGuard<'_, T>> {
    let token = enter();
    Gated {
        guard: mutex
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        _token: token,
    }
}

/// Read-locks `lock` inside the fork gate.
#[inline]
pub fn read<T>(lock: &RwLock<T>) -> Gated<RwLockReadGuard<'_, T>> {
    let token = enter();
    Gated {
        guard: lock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        _token: token,
    }
}

/// Write-locks `lock` inside the fork gate.
#[inline]
pub fn write<T>(lock: &RwLock<T>) -> Gated<RwLockWriteGuard<'_, T>> {
    let token = enter();
    Gated {
        guard: lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        _token: token,
    }
}

/// Starts a thread inside the fork gate, so that `fork()` never runs while a thread of ours is
/// being created.
///
/// glibc (2.36 at least) frees the thread-local blocks left in a reused stack inside
/// `pthread_create` after letting go of its stack-cache lock. A fork in that window hands the
/// child a stack whose blocks are freed but still recorded, and the child's next
/// `pthread_create` that picks that stack frees them again: "double free or corruption", abort.
/// Creating a thread waits for nothing outside the core, so the gate's bound holds.
pub fn spawn<F, T>(
    builder: std::thread::Builder,
    f: F,
) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let _token = enter();
    builder.spawn(f)
}

type ChildHook = fn();
static CHILD_HOOKS: Mutex<Vec<ChildHook>> = Mutex::new(Vec::new());

/// Runs `hook` in every child right after a fork, before the child's code continues (once
/// registered, for the life of the process; registering the same hook again is a no-op).
pub fn on_fork_child(hook: ChildHook) {
    let _token = enter();
    let mut hooks = CHILD_HOOKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !hooks.iter().any(|h| std::ptr::fn_addr_eq(*h, hook)) {
        hooks.push(hook);
    }
}

/// Closes the gate and waits for every other thread to leave its critical sections.
pub fn prepare() {
    FORKING.store(true, Ordering::SeqCst);
    let mine = MINE.with(Cell::get);
    for_each_slot(|slot| {
        if std::ptr::eq(slot, mine) {
            return;
        }
        while slot.active.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
    });
}

/// Reopens the gate in the parent.
pub fn parent() {
    FORKING.store(false, Ordering::SeqCst);
}

/// Starts a new fork generation, reopens the gate in the child, frees the slots of threads that
/// do not exist there, and runs the child hooks.
pub fn child() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
    let mine = MINE.with(Cell::get);
    for_each_slot(|slot| {
        if !std::ptr::eq(slot, mine) {
            slot.active.store(0, Ordering::Relaxed);
            slot.claimed.store(false, Ordering::Release);
        }
    });
    FORKING.store(false, Ordering::SeqCst);
    let hooks = CHILD_HOOKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    for hook in hooks {
        hook();
    }
}

/// A value made by one process, dropped only there (see [`PerProcess`]).
pub struct ProcessLocal<T> {
    generation: u64,
    /// Always `Some` until dropped.
    value: Option<T>,
}

impl<T> ProcessLocal<T> {
    /// Whether it was made by this process (not inherited across a fork).
    #[must_use]
    pub fn is_current(&self) -> bool {
        self.generation == generation()
    }
}

impl<T> std::ops::Deref for ProcessLocal<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        self.value.as_ref().expect("present until dropped")
    }
}

impl<T> Drop for ProcessLocal<T> {
    fn drop(&mut self) {
        if !self.is_current() {
            // Made by an ancestor: its locks may be held and its fields half-updated by threads
            // that do not exist here, and its thread handles name threads of another process.
            // Moving it out is a plain copy; no code of it runs.
            std::mem::forget(self.value.take());
        }
    }
}

/// This process's instance, as returned by [`PerProcess::get`].
pub type Current<T> = arc_swap::Guard<Arc<ProcessLocal<T>>>;

/// A value of which every process has its own instance: a forked child gets a fresh one on
/// first use and never touches (or drops) the one it inherited. Reads are lock-free.
pub struct PerProcess<T> {
    current: ArcSwap<ProcessLocal<T>>,
}

impl<T> PerProcess<T> {
    /// `value` is this process's instance.
    pub fn new(value: T) -> Self {
        register();
        Self {
            current: ArcSwap::from_pointee(ProcessLocal {
                generation: generation(),
                value: Some(value),
            }),
        }
    }

    /// This process's instance. In a forked child the first call makes it with `fresh`, after
    /// passing the inherited one to `retire` (which may only try to lock it, never wait: its
    /// locks may be held by threads that do not exist here).
    #[inline]
    pub fn get(&self, fresh: impl FnOnce() -> T, retire: impl FnOnce(&T)) -> Current<T> {
        let current = self.current.load();
        if current.is_current() {
            return current;
        }
        self.renew(current, fresh, retire)
    }

    #[cold]
    fn renew(
        &self,
        stale: Current<T>,
        fresh: impl FnOnce() -> T,
        retire: impl FnOnce(&T),
    ) -> Current<T> {
        let made = Arc::new(ProcessLocal {
            generation: generation(),
            value: Some(fresh()),
        });
        let previous = self.current.compare_and_swap(&stale, made);
        if std::ptr::eq(Arc::as_ptr(&previous), Arc::as_ptr(&stale)) {
            // This thread installed the child's instance (another thread may have raced it and
            // lost: its candidate was dropped unused).
            retire(&previous);
        }
        self.current.load()
    }

    /// This process's instance if it has one already (`None` in a forked child before the
    /// first [`Self::get`]).
    pub fn if_current(&self) -> Option<Current<T>> {
        let current = self.current.load();
        current.is_current().then_some(current)
    }
}

extern "C" fn prepare_handler() {
    prepare();
}
extern "C" fn parent_handler() {
    parent();
}
extern "C" fn child_handler() {
    child();
}

fn register_handlers() {
    // SAFETY: the handlers are plain `extern "C"` functions with static lifetime.
    #[allow(unsafe_code)]
    unsafe {
        libc::pthread_atfork(
            Some(prepare_handler),
            Some(parent_handler),
            Some(child_handler),
        );
    }
}

/// Test support: running code in a forked child.
#[cfg(test)]
pub mod testing {
    use std::sync::{Mutex, MutexGuard};
    use std::time::{Duration, Instant};

    static SERIAL: Mutex<()> = Mutex::new(());

    /// Serialises the tests that fork or drive the fork handlers by hand (they share the
    /// process-wide gate: a real fork would reopen a gate a test closed).
    pub fn serial() -> MutexGuard<'static, ()> {
        SERIAL
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Exit status of a forked child running `body` (1 if it panicked), waited for at most 30 s.
    #[allow(unsafe_code)]
    pub fn in_child(body: impl FnOnce() -> bool) -> i32 {
        let _serial = serial();
        // SAFETY: the child only runs `body` (Rust code that allocates and spawns threads,
        // which glibc supports after fork) and leaves with `_exit`, never returning into the
        // test harness; the parent only waits for it.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
                libc::_exit(i32::from(!matches!(ok, Ok(true))));
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut status = 0;
            loop {
                let done = libc::waitpid(pid, &raw mut status, libc::WNOHANG);
                if done == pid {
                    return if libc::WIFEXITED(status) {
                        libc::WEXITSTATUS(status)
                    } else {
                        -1
                    };
                }
                if Instant::now() > deadline {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &raw mut status, 0);
                    return -2;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    #[test]
    fn prepare_waits_for_critical_sections_and_blocks_new_ones() {
        let _serial = testing::serial();
        let mutex = Arc::new(Mutex::new(0u64));
        let entered = Arc::new(AtomicU64::new(0));
        let holder = {
            let mutex = Arc::clone(&mutex);
            let entered = Arc::clone(&entered);
            std::thread::spawn(move || {
                let mut guard = lock(&mutex);
                entered.store(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                *guard += 1;
            })
        };
        while entered.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        prepare(); // returns only once the holder left its critical section
        assert_eq!(*mutex.try_lock().unwrap(), 1);
        let blocked = {
            let mutex = Arc::clone(&mutex);
            std::thread::spawn(move || {
                *lock(&mutex) += 1;
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            *mutex.try_lock().unwrap(),
            1,
            "new sections wait for the fork"
        );
        parent();
        blocked.join().unwrap();
        holder.join().unwrap();
        assert_eq!(*mutex.lock().unwrap(), 2);
    }

    #[test]
    fn nested_sections_do_not_wait() {
        let outer = enter();
        let inner = enter();
        drop(inner);
        drop(outer);
        assert_eq!(my_slot().active.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_child_gets_a_fresh_instance_and_never_touches_the_inherited_one() {
        let value = Arc::new(PerProcess::new(Mutex::new(7u32)));
        let held = Arc::new(AtomicU64::new(0));
        let holder = {
            let (value, held) = (Arc::clone(&value), Arc::clone(&held));
            std::thread::spawn(move || {
                let current = value.get(|| unreachable!(), |_| unreachable!());
                let mut guard = current.lock().unwrap();
                *guard += 1;
                held.store(1, Ordering::SeqCst);
                while held.load(Ordering::SeqCst) == 1 {
                    std::thread::yield_now();
                }
            })
        };
        while held.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        // Fork while another thread holds the parent's lock.
        let status = testing::in_child(|| {
            let retired = AtomicU64::new(0);
            let stale = value.if_current().is_none();
            let fresh = value.get(
                || Mutex::new(100),
                |old| {
                    retired.fetch_add(1, Ordering::SeqCst);
                    assert!(old.try_lock().is_err(), "the inherited lock is still held");
                },
            );
            let mut guard = fresh.lock().unwrap();
            *guard += 1;
            drop(guard);
            let again = value.get(|| unreachable!(), |_| unreachable!());
            stale && retired.load(Ordering::SeqCst) == 1 && *again.lock().unwrap() == 101
        });
        held.store(2, Ordering::SeqCst);
        holder.join().unwrap();
        assert_eq!(status, 0);
        let current = value.get(|| unreachable!(), |_| unreachable!());
        assert_eq!(
            *current.lock().unwrap(),
            8,
            "the parent's instance is untouched"
        );
    }
}
