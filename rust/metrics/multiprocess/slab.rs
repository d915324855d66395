//! The writer side: one process's file of records and cells, mapped in chunks that never move
//! (a chunk is added when the file grows), so a series' cells stay at one address for the life
//! of the process. After a fork the child moves every chunk to a file of its own at the same
//! addresses (with zeroed values), so inherited series keep working and never write into the
//! parent's file.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::format::{
    self, FIRST_CHUNK, FamilyDef, HEADER, MAGIC, MAX_CHUNK, OFF_CREATED, OFF_PID, OFF_USED,
    REC_FAMILY, REC_PAD, REC_SERIES, SLOT_HEADER,
};
use super::{MultiprocessCounters, nonce, wall_clock};
use crate::error::{Error, ErrorKind, Result};
use crate::fork;
use crate::metrics::cells::{Backing, Cells};
use crate::metrics::names::Kind;

/// One mapped region of a writer file.
#[derive(Debug)]
pub struct Chunk {
    ptr: *mut u8,
    len: usize,
    offset: usize,
}

// SAFETY: the mapping is shared memory accessed through atomics (cells) or under the slab lock
// (record bytes written before they are published).
#[allow(unsafe_code)]
unsafe impl Send for Chunk {}
// SAFETY: as above.
#[allow(unsafe_code)]
unsafe impl Sync for Chunk {}

impl Backing for Chunk {}

impl Drop for Chunk {
    fn drop(&mut self) {
        // SAFETY: `ptr..ptr+len` was mapped by `map_chunk` and nothing references it any more
        // (cells hold an `Arc` of their chunk).
        #[allow(unsafe_code)]
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

fn os_error(what: &str, path: &Path) -> Error {
    Error::new(
        ErrorKind::Multiprocess,
        path.display().to_string(),
        format!("{what}: {}", std::io::Error::last_os_error()),
    )
}

/// Extends `file` from `start` to `end` bytes with its blocks allocated. Writing to a mapped
/// page the filesystem cannot back (a full disk or a full `/dev/shm`) kills the process with
/// `SIGBUS`; allocating first turns that into an error here, which the caller counts. A
/// filesystem that cannot preallocate gets a sparse extension, as `ftruncate` gives.
fn allocate(file: &File, path: &Path, what: &str, start: usize, end: usize) -> Result<()> {
    // SAFETY: a plain system call on our own descriptor.
    #[allow(unsafe_code)]
    let code = unsafe {
        libc::posix_fallocate(
            file.as_raw_fd(),
            start as libc::off_t,
            (end - start) as libc::off_t,
        )
    };
    let failed = match code {
        0 => return Ok(()),
        libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS => {
            return file.set_len(end as u64).map_err(|e| {
                Error::new(
                    ErrorKind::Multiprocess,
                    path.display().to_string(),
                    format!("{what}: {e}"),
                )
            });
        }
        code => std::io::Error::from_raw_os_error(code),
    };
    let _ = file.set_len(start as u64); // (what was allocated before the failure)
    Err(Error::new(
        ErrorKind::Multiprocess,
        path.display().to_string(),
        format!("{what}: {failed}"),
    ))
}

fn map_chunk(file: &File, path: &Path, offset: usize, len: usize) -> Result<Chunk> {
    // SAFETY: a fresh shared mapping of `len` bytes of our own file at `offset` (a multiple of
    // the page size); the kernel chooses the address.
    #[allow(unsafe_code)]
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            offset as libc::off_t,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(os_error("cannot map the metrics file", path));
    }
    Ok(Chunk {
        ptr: ptr.cast(),
        len,
        offset,
    })
}

fn flock(file: &File, operation: libc::c_int) -> bool {
    // SAFETY: flock on a file descriptor we own.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
    rc == 0
}

/// Exclusively locks `file` without waiting.
#[must_use]
pub fn try_lock_exclusive(file: &File) -> bool {
    flock(file, libc::LOCK_EX | libc::LOCK_NB)
}

/// Whether the writer of `file` is dead (its exclusive lock is gone); takes and releases a
/// shared lock, so concurrent checks never make each other see a live writer.
#[must_use]
pub fn writer_is_dead(file: &File) -> bool {
    if flock(file, libc::LOCK_SH | libc::LOCK_NB) {
        flock(file, libc::LOCK_UN);
        true
    } else {
        false
    }
}

/// Takes a shared lock on `file`, waiting for an exclusive holder.
#[must_use = "a failed lock means no protection"]
pub fn lock_shared(file: &File) -> bool {
    flock(file, libc::LOCK_SH)
}

pub fn unlock(file: &File) {
    flock(file, libc::LOCK_UN);
}

struct State {
    file: File,
    path: PathBuf,
    chunks: Vec<Arc<Chunk>>,
    used: usize,
    next_family: u32,
    /// The shared file is unusable (a failed remap after fork): new series stay in memory.
    broken: bool,
    series: u64,
}

/// A process's writer file in a multiprocess directory.
pub struct Slab {
    dir: PathBuf,
    state: Mutex<State>,
    counters: Arc<MultiprocessCounters>,
}

impl std::fmt::Debug for Slab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slab")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

static SLABS: Mutex<Vec<Weak<Slab>>> = Mutex::new(Vec::new());

fn header_word(chunk: &Chunk, offset: usize) -> &AtomicU64 {
    // SAFETY: the header lies in the first chunk (64 bytes at offset 0, 8-byte aligned).
    #[allow(unsafe_code)]
    unsafe {
        &*chunk.ptr.add(offset).cast::<AtomicU64>()
    }
}

/// Creates a writer file of this process: under a hidden name, locked, filled by `prepare`
/// (which maps it), and only then renamed to a name scrapes read, so no scrape ever sees it
/// unfinished (a forked child's copy of its parent's file would count the parent's values twice
/// until they are zeroed, and the next scrape would see them go back down).
fn create_file<T>(
    dir: &Path,
    mut prepare: impl FnMut(&File, &Path) -> Result<T>,
) -> Result<(File, PathBuf, T)> {
    let pid = std::process::id();
    let mut last_error = None;
    for _ in 0..5 {
        let id = nonce();
        let tmp = dir.join(format!(".w-{pid}-{id:016x}.tmp"));
        let path = dir.join(format!("w-{pid}-{id:016x}.db"));
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => file,
            Err(error) => {
                last_error = Some(Error::new(
                    ErrorKind::Multiprocess,
                    tmp.display().to_string(),
                    format!("cannot create the metrics file: {error}"),
                ));
                continue;
            }
        };
        if !try_lock_exclusive(&file) {
            continue;
        }
        let filled = match prepare(&file, &tmp) {
            Ok(filled) => filled,
            Err(error) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(error);
            }
        };
        // The content before the name.
        std::sync::atomic::fence(Ordering::SeqCst);
        // A failed rename means a compaction removed the temporary file before we locked it:
        // try another name.
        if std::fs::rename(&tmp, &path).is_ok() {
            return Ok((file, path, filled));
        }
    }
    Err(last_error.unwrap_or_else(|| {
        Error::new(
            ErrorKind::Multiprocess,
            dir.display().to_string(),
            "cannot create a metrics file in the multiprocess directory",
        )
    }))
}

/// Sizes, maps and initialises a new, empty writer file.
fn fresh_file(file: &File, tmp: &Path) -> Result<Chunk> {
    allocate(file, tmp, "cannot size the metrics file", 0, FIRST_CHUNK)?;
    let chunk = map_chunk(file, tmp, 0, FIRST_CHUNK)?;
    header_word(&chunk, 0).store(MAGIC, Ordering::Relaxed);
    header_word(&chunk, OFF_PID).store(u64::from(std::process::id()), Ordering::Relaxed);
    header_word(&chunk, OFF_CREATED).store(wall_clock().to_bits(), Ordering::Relaxed);
    header_word(&chunk, OFF_USED).store(HEADER as u64, Ordering::Release);
    Ok(chunk)
}

impl Slab {
    /// Opens a new writer file in `dir` (created if missing).
    pub fn create(dir: &Path, counters: Arc<MultiprocessCounters>) -> Result<Arc<Self>> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::new(
                ErrorKind::Multiprocess,
                dir.display().to_string(),
                format!("cannot create the multiprocess directory: {e}"),
            )
        })?;
        let (file, path, chunk) = create_file(dir, fresh_file)?;
        let slab = Arc::new(Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                file,
                path,
                chunks: vec![Arc::new(chunk)],
                used: HEADER,
                next_family: 0,
                broken: false,
                series: 0,
            }),
            counters,
        });
        fork::on_fork_child(after_fork_in_child);
        let _gate = fork::enter();
        let mut slabs = SLABS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slabs.retain(|w| w.strong_count() > 0);
        slabs.push(Arc::downgrade(&slab));
        Ok(slab)
    }

    /// The directory of this file.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of this process's file.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        fork::lock(&self.state).path.clone()
    }

    /// Space for a record of `len` bytes: its address, file offset and chunk.
    fn reserve(state: &mut State, len: usize) -> Result<(*mut u8, usize, Arc<Chunk>)> {
        let last = Arc::clone(state.chunks.last().expect("the first chunk always exists"));
        let end = last.offset + last.len;
        if state.used + len <= end {
            // SAFETY: `used - offset + len <= chunk.len`.
            #[allow(unsafe_code)]
            let ptr = unsafe { last.ptr.add(state.used - last.offset) };
            return Ok((ptr, state.used, last));
        }
        let size = (last.len * 2).min(MAX_CHUNK).max(len.div_ceil(4096) * 4096);
        allocate(
            &state.file,
            &state.path,
            "cannot grow the metrics file",
            end,
            end + size,
        )?;
        let chunk = Arc::new(map_chunk(&state.file, &state.path, end, size)?);
        let remaining = end - state.used;
        if remaining > 0 {
            let pad = format::Writer::default().record(REC_PAD, 0);
            debug_assert_eq!(pad.len(), 8);
            let mut word = pad;
            word[..4].copy_from_slice(&(remaining as u32).to_ne_bytes());
            // SAFETY: at least 8 bytes remain in the last chunk at `used`.
            #[allow(unsafe_code)]
            unsafe {
                std::ptr::copy_nonoverlapping(
                    word.as_ptr(),
                    last.ptr.add(state.used - last.offset),
                    8,
                );
            }
        }
        state.used = end;
        state.chunks.push(Arc::clone(&chunk));
        Ok((chunk.ptr, end, chunk))
    }

    fn publish(state: &State) {
        header_word(&state.chunks[0], OFF_USED).store(state.used as u64, Ordering::Release);
    }

    fn write(
        state: &mut State,
        bytes: &[u8],
        total: usize,
    ) -> Result<(*mut u8, usize, Arc<Chunk>)> {
        let (ptr, offset, chunk) = Self::reserve(state, total)?;
        // SAFETY: `reserve` returned `total >= bytes.len()` writable bytes at `ptr`, not yet
        // published to readers nor referenced by any cells.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len());
        }
        state.used = offset + total;
        Ok((ptr, offset, chunk))
    }

    /// Declares a family (again, with the same id, when its help text changes).
    pub fn define(&self, def: &mut FamilyDef, new_id: bool) {
        let mut state = fork::lock(&self.state);
        if new_id {
            def.id = state.next_family;
            state.next_family += 1;
        }
        if state.broken {
            return;
        }
        let record = format::family_record(def);
        if Self::write(&mut state, &record, record.len()).is_ok() {
            Self::publish(&state);
        }
    }

    /// Cells for a new series (the created time stored), and the record's file offset; `None`
    /// when the file cannot grow (the caller keeps the series in memory and counts it).
    pub fn series(
        &self,
        family: u32,
        values: &[&str],
        n_cells: usize,
        created_index: usize,
        created: f64,
    ) -> Option<(Cells, usize)> {
        let mut state = fork::lock(&self.state);
        if state.broken {
            return None;
        }
        let (head, total) = format::series_head(family, values, n_cells);
        let (ptr, offset, chunk) = Self::write(&mut state, &head, total).ok()?;
        // SAFETY: the cells follow the head inside the reserved record (8-byte aligned, since
        // records and heads are multiples of 8 bytes and chunks are page aligned), zero-filled by
        // the file's growth, and the chunk stays mapped while `Cells` holds it.
        #[allow(unsafe_code)]
        let cells = unsafe {
            Cells::shared(
                ptr.add(head.len()).cast::<AtomicU64>(),
                n_cells,
                chunk as Arc<dyn Backing>,
            )
        };
        cells.store_f64(created_index, created);
        state.series += 1;
        Self::publish(&state);
        Some((cells, offset))
    }

    /// Marks the series record at `offset` removed (by `reset()`): readers skip it.
    pub fn remove(&self, offset: usize) {
        let state = fork::lock(&self.state);
        if let Some(word) = Self::word_at(&state, offset + 8) {
            word.fetch_or(format::STATE_REMOVED, Ordering::Release);
        }
    }

    fn word_at(state: &State, offset: usize) -> Option<&AtomicU64> {
        let chunk = state
            .chunks
            .iter()
            .find(|c| offset >= c.offset && offset + 8 <= c.offset + c.len)?;
        // SAFETY: inside the chunk and 8-byte aligned (record offsets are).
        #[allow(unsafe_code)]
        Some(unsafe { &*chunk.ptr.add(offset - chunk.offset).cast::<AtomicU64>() })
    }

    /// In a forked child: moves every chunk to a new file of this process, at the same
    /// addresses, with values zeroed (the parent's values stay in the parent's file); the file
    /// becomes visible to scrapes only then.
    fn move_to_own_file(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.broken {
            return;
        }
        let series = state.series;
        match self.remap(&mut state) {
            Ok(()) => {}
            Err(()) => {
                state.broken = true;
                // Drop the inherited descriptor: it would keep the parent's lock alive.
                if let Ok(null) = File::open("/dev/null") {
                    state.file = null;
                }
                self.counters
                    .unshared_series
                    .fetch_add(series, Ordering::Relaxed);
                zero_values(&state.chunks, state.used);
            }
        }
    }

    fn remap(&self, state: &mut State) -> std::result::Result<(), ()> {
        let chunks = &state.chunks;
        let used = state.used;
        let end = chunks.last().map_or(0, |c| c.offset + c.len);
        let created = create_file(&self.dir, |file, tmp| {
            allocate(file, tmp, "cannot size the metrics file", 0, end)?;
            for chunk in chunks {
                let len = chunk.len.min(used.saturating_sub(chunk.offset));
                // SAFETY: copying from our own mapping (valid for `chunk.len >= len` bytes).
                #[allow(unsafe_code)]
                let written = unsafe {
                    libc::pwrite(
                        file.as_raw_fd(),
                        chunk.ptr.cast(),
                        len,
                        chunk.offset as libc::off_t,
                    )
                };
                if written != len as isize {
                    return Err(os_error("cannot copy the metrics file", tmp));
                }
            }
            for chunk in chunks {
                // SAFETY: replaces our own mapping at the same address and length with the
                // same range of the new file (same content); no other thread exists in the
                // child. (If the file is then not renamed, the next attempt copies from it.)
                #[allow(unsafe_code)]
                let ptr = unsafe {
                    libc::mmap(
                        chunk.ptr.cast(),
                        chunk.len,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED | libc::MAP_FIXED,
                        file.as_raw_fd(),
                        chunk.offset as libc::off_t,
                    )
                };
                if ptr != chunk.ptr.cast() {
                    return Err(os_error("cannot map the metrics file", tmp));
                }
            }
            zero_values(chunks, used);
            header_word(&chunks[0], OFF_PID)
                .store(u64::from(std::process::id()), Ordering::Relaxed);
            header_word(&chunks[0], OFF_CREATED).store(wall_clock().to_bits(), Ordering::Relaxed);
            Ok(())
        });
        let Ok((file, path, ())) = created else {
            return Self::privatize(state);
        };
        // The inherited descriptor is closed (the parent keeps its lock), the new one kept.
        state.file = file;
        state.path = path;
        Ok(())
    }

    /// Fallback when the child cannot get a file: private copy-on-write mappings, so the child
    /// never writes into the parent's file (its values are then invisible to scrapes).
    fn privatize(state: &State) -> std::result::Result<(), ()> {
        for chunk in &state.chunks {
            // SAFETY: as in `remap`, with a private mapping of the same file range.
            #[allow(unsafe_code)]
            unsafe {
                libc::mmap(
                    chunk.ptr.cast(),
                    chunk.len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_FIXED,
                    state.file.as_raw_fd(),
                    chunk.offset as libc::off_t,
                );
            }
        }
        Err(())
    }
}

/// Zeroes every value cell of a file's chunks (not the created times), in the child after a fork.
fn zero_values(chunks: &[Arc<Chunk>], used: usize) {
    let mut kinds: std::collections::HashMap<u32, FamilyDef> = std::collections::HashMap::new();
    let mut offset = HEADER;
    while offset + 8 <= used {
        let Some(chunk) = chunks
            .iter()
            .find(|c| offset >= c.offset && offset < c.offset + c.len)
        else {
            return;
        };
        let within = offset - chunk.offset;
        // SAFETY: reading our own mapping inside the chunk (records never straddle chunks).
        #[allow(unsafe_code)]
        let bytes =
            unsafe { std::slice::from_raw_parts(chunk.ptr.add(within), chunk.len - within) };
        let len = u32::from_ne_bytes(bytes[..4].try_into().unwrap_or_default()) as usize;
        let kind = u16::from_ne_bytes(bytes[4..6].try_into().unwrap_or_default());
        if len < 8 || len > bytes.len() {
            return;
        }
        let body = &bytes[8..len];
        if kind == REC_FAMILY {
            if let Some(def) = format::parse_family(body) {
                kinds.insert(def.id, def);
            }
        } else if kind == REC_SERIES {
            let mut r = format::Reader::new(body);
            let _state = r.u64();
            if let Some((family, n_cells)) = r.two_u32()
                && let Some(def) = kinds.get(&family)
            {
                for _ in 0..def.labels.len() {
                    r.string();
                }
                r.align();
                let start = 8 + r.pos;
                let n_cells = n_cells as usize;
                if start + n_cells * 8 <= len {
                    let created = format::created_index(def.kind, n_cells);
                    for i in 0..n_cells {
                        if i == created {
                            continue;
                        }
                        // SAFETY: cell `i` of this record, inside the chunk, 8-byte aligned.
                        #[allow(unsafe_code)]
                        let cell =
                            unsafe { &*chunk.ptr.add(within + start + i * 8).cast::<AtomicU64>() };
                        cell.store(0, Ordering::Relaxed);
                    }
                }
            }
        }
        offset += len;
    }
    let _ = (Kind::Counter, SLOT_HEADER, REC_PAD);
}

fn after_fork_in_child() {
    let slabs: Vec<Arc<Slab>> = SLABS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for slab in slabs {
        slab.move_to_own_file();
    }
}
