//! Fork safety: no metrics lock is ever held, and no structure is half-updated, when the
//! process forks.
//!
//! Every lock of the metrics core is taken through [`lock`], [`read`] or [`write`], which first
//! enter a *fork gate*: a per-thread counter (a "big reader" lock with one slot per thread, so
//! entering costs one uncontended store on the thread's own cache line, never a shared atomic).
//! The `pthread_atfork` prepare handler closes the gate and waits until every other thread has
//! left its critical sections; the parent and child handlers reopen it. A child therefore starts
//! with every metrics lock free and every map consistent, and can record at once.
//!
//! Critical sections never call Python or wait for anything outside the core, so the wait in
//! the prepare handler is bounded (the forking thread may hold the GIL; the threads it waits for
//! have released it). A thread that forks from inside a critical section is not waited for.
//!
//! The child handler also runs the hooks registered with [`on_fork_child`] (the multiprocess
//! mode moves its shared-memory values to a file of the child's own there).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once, RwLock, RwLockReadGuard, RwLockWriteGuard};

static FORKING: AtomicBool = AtomicBool::new(false);
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

/// Enters the fork gate (re-entrant); waits while a fork is in progress.
#[inline]
pub fn enter() -> Token {
    REGISTER.call_once(register_handlers);
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

/// Reopens the gate in the child, frees the slots of threads that do not exist there, and runs
/// the child hooks.
pub fn child() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    #[test]
    fn prepare_waits_for_critical_sections_and_blocks_new_ones() {
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
}
