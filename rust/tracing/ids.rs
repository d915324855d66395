//! Trace and span id generation: fast, seeded from the operating system, never all zeros.
//!
//! Each thread owns a xoshiro256++ generator seeded from the OS entropy source (`getrandom`), so
//! threads never share a sequence and generation takes no lock. A forked child process inherits
//! its parent's memory, generator state included; [`reseed_after_fork`] bumps a global generation
//! counter that makes every thread reseed before its next id; it is registered with
//! `pthread_atfork` the first time a generator is seeded, so the core is fork-safe on its own,
//! whoever forks (Python's `os.fork`, `multiprocessing`, or native code). An id is 128 (trace) or 64 (span) random bits, redrawn if all zero
//! (W3C Trace Context forbids all-zero ids).

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static REGISTER_AT_FORK: Once = Once::new();

/// Bumped after `fork()`; a thread whose generator was seeded under an older value reseeds.
static GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// `(generation the state was seeded under, xoshiro256++ state)`; generation 0 = unseeded.
    static STATE: Cell<(u64, [u64; 4])> = const { Cell::new((0, [0; 4])) };
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Makes every thread draw a fresh seed before its next id. Call in a forked child.
pub fn reseed_after_fork() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

#[cfg(unix)]
extern "C" fn reseed_in_child() {
    // Runs in the child right after fork(); an atomic increment is async-signal-safe.
    reseed_after_fork();
}

fn register_at_fork() {
    #[cfg(unix)]
    REGISTER_AT_FORK.call_once(|| {
        // SAFETY: `pthread_atfork` only stores the handler pointers; the child handler is a plain
        // `extern "C"` function that performs one atomic increment, which is safe after fork().
        #[allow(unsafe_code)]
        unsafe {
            libc::pthread_atfork(None, None, Some(reseed_in_child));
        }
    });
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cold]
fn fresh_seed() -> [u64; 4] {
    register_at_fork();
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS entropy (should not happen on supported platforms): mix what differs between
        // processes, threads and moments so ids still do not collide in practice.
        let mut mix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32)
            ^ (std::ptr::from_ref(&bytes) as usize as u64);
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&splitmix64(&mut mix).to_le_bytes());
        }
    }
    let mut state = [0u64; 4];
    for (word, chunk) in state.iter_mut().zip(bytes.chunks(8)) {
        *word = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
    }
    if state == [0; 4] {
        state[0] = 1; // xoshiro's one forbidden state
    }
    state
}

/// The next 64 random bits of this thread's generator (xoshiro256++).
fn next_u64() -> u64 {
    STATE.with(|cell| {
        let generation = GENERATION.load(Ordering::Relaxed);
        let (seeded_under, mut s) = cell.get();
        if seeded_under != generation {
            s = fresh_seed();
        }
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        cell.set((generation, s));
        result
    })
}

/// A random, non-zero 128-bit trace id.
#[must_use]
pub fn trace_id() -> u128 {
    loop {
        let id = (u128::from(next_u64()) << 64) | u128::from(next_u64());
        if id != 0 {
            return id;
        }
    }
}

/// A random, non-zero 64-bit span id.
#[must_use]
pub fn span_id() -> u64 {
    loop {
        let id = next_u64();
        if id != 0 {
            return id;
        }
    }
}

/// Lowercase hex of `value`, `N` digits (the low `4 * N` bits), without allocating.
#[must_use]
pub fn hex<const N: usize>(value: u128) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, digit) in out.iter_mut().enumerate() {
        let shift = 4 * (N - 1 - i);
        *digit = HEX[((value >> shift) & 0xf) as usize];
    }
    out
}

/// A new trace id as 32 lowercase hex digits.
#[must_use]
pub fn trace_id_hex() -> [u8; 32] {
    hex::<32>(trace_id())
}

/// A new span id as 16 lowercase hex digits.
#[must_use]
pub fn span_id_hex() -> [u8; 16] {
    hex::<16>(u128::from(span_id()))
}

#[cfg(test)]
mod tests {
    use super::{hex, reseed_after_fork, span_id, span_id_hex, trace_id, trace_id_hex};
    use std::collections::HashSet;

    #[test]
    fn ids_are_nonzero_and_distinct() {
        let traces: HashSet<u128> = (0..10_000).map(|_| trace_id()).collect();
        let spans: HashSet<u64> = (0..10_000).map(|_| span_id()).collect();
        assert_eq!((traces.len(), spans.len()), (10_000, 10_000));
        assert!(!traces.contains(&0) && !spans.contains(&0));
    }

    #[test]
    fn hex_is_lowercase_and_fixed_width() {
        assert_eq!(&hex::<16>(0xab), b"00000000000000ab");
        let t = trace_id_hex();
        assert!(
            t.iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        );
        assert_eq!(span_id_hex().len(), 16);
    }

    #[test]
    fn threads_draw_different_sequences() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..100).map(|_| span_id()).collect::<Vec<_>>()))
            .collect();
        let all: HashSet<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        assert_eq!(all.len(), 400);
    }

    #[cfg(unix)]
    #[test]
    fn a_forked_child_draws_a_different_sequence() {
        // Seed this thread's generator, then fork: the child must not repeat the parent's ids.
        let _serial = crate::fork::testing::serial(); // forks run the shared fork handlers
        let _ = span_id();
        let (read_fd, write_fd) = {
            let mut fds = [0; 2];
            // SAFETY: `fds` is a valid two-element array for pipe(2) to fill.
            #[allow(unsafe_code)]
            let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
            assert_eq!(rc, 0);
            (fds[0], fds[1])
        };
        // SAFETY: the child only computes an id, writes 8 bytes to a pipe and calls _exit, all of
        // which are safe in a forked child of a multi-threaded process (no locks are taken).
        #[allow(unsafe_code)]
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let id = span_id().to_le_bytes();
            // SAFETY: writing a stack buffer to our pipe, then exiting without unwinding.
            #[allow(unsafe_code)]
            unsafe {
                libc::write(write_fd, id.as_ptr().cast(), 8);
                libc::_exit(0);
            }
        }
        let parent_next = span_id();
        let mut buf = [0u8; 8];
        // SAFETY: reading into a stack buffer of the advertised length, then reaping the child.
        #[allow(unsafe_code)]
        unsafe {
            assert_eq!(libc::read(read_fd, buf.as_mut_ptr().cast(), 8), 8);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(read_fd);
            libc::close(write_fd);
        }
        assert_ne!(u64::from_le_bytes(buf), parent_next);
    }

    #[test]
    fn reseeding_changes_the_sequence() {
        let before = span_id();
        reseed_after_fork();
        assert_ne!(span_id(), before);
    }
}
