//! Append-only, rotating audit segments that several threads and processes can share.
//!
//! Protocol (every writer of a path follows it, in any process):
//! - Records are written whole with one `write(2)` on an `O_APPEND` descriptor, so concurrent
//!   writers never interleave inside a line.
//! - Each batch is written under a *shared* `flock` on `.<stem><suffix>.lock`; rotation, repair
//!   and the barrier before compressing a closed segment take it *exclusively*. Under the shared
//!   lock a writer re-checks that its descriptor is still the active file (same device and inode)
//!   and reopens otherwise, so nobody appends to a segment after it was rotated away.
//! - Torn tail repair: if the file does not end in `\n` when checked under the exclusive lock (a
//!   writer was killed mid-line, or a write hit a full disk), a `\n` is appended so the fragment
//!   stays on its own (unparseable, reported) line and the next record starts clean.
//! - Segment names: active `<stem>[-YYYY-MM-DD]<suffix>`; rotated by size
//!   `<stem>[-YYYY-MM-DD].<YYYYMMDDTHHMMSSffffffZ><suffix>` (a unique stamp, so no rename chains);
//!   compressed `...<suffix>.gz`. Names sort chronologically.
//! - Compression runs on a background thread, after an exclusive-lock barrier, into a temporary
//!   file that is renamed over `<segment>.gz` before the plain segment is removed; a crash at any
//!   point leaves the data readable, and the next start compresses leftovers.
//! - Tamper evidence ([`ChainConfig`], see [`crate::audit::chain`]): batches are sealed and
//!   written under the *exclusive* lock, so every thread and process extends one chain whose
//!   head lives in the lock file; each new segment starts with a checkpoint written by whichever
//!   writer opens it first; pruning (`max_files`, `max_age`) is recorded in a checkpoint.
//! - Fork safety: descriptors, locks, counters and threads (checkpoint timer, compression) belong
//!   to one process ([`PerProcess`]). A forked child never uses the ones it inherited: on its
//!   first write it opens the lock file and the active segment again (an inherited descriptor
//!   would share its `flock` with the parent, so the two could hold the exclusive lock at the
//!   same time) and joins the chain as a new writer, with an `open` checkpoint naming it; until
//!   then it writes nothing, not even at close.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use crate::audit::chain::{self, ChainKey, ChainState, Checkpoint, STATE_LEN};
use crate::audit::time::{now_micros, segment_stamp, utc_date};
use crate::error::{Error, ErrorKind, Result};
use crate::fork::{Current, PerProcess};

/// When written records are forced to stable storage (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Never explicitly: the kernel writes back on its own schedule. A process crash loses
    /// nothing that was written; a power loss can lose recent records.
    None,
    /// After every `every_events` records or `interval` (whichever comes first; 0 disables one),
    /// and on `flush()`/`close()`. A power loss can lose at most that window.
    Periodic {
        every_events: u64,
        interval: Duration,
    },
    /// Before a write is acknowledged (every batch; every event for synchronous logging).
    Always,
}

/// Where and how a sink writes.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub directory: PathBuf,
    pub stem: String,
    pub suffix: String,
    /// One active file per UTC day (`<stem>-YYYY-MM-DD<suffix>`).
    pub daily: bool,
    /// Rotate the active file once it reaches this size.
    pub max_bytes: Option<u64>,
    /// Keep at most this many segments (active included); the oldest are deleted at rotation.
    pub max_files: Option<usize>,
    /// Gzip closed segments in the background.
    pub compress: bool,
    pub durability: Durability,
    /// Delete closed segments last modified longer ago than this (checked when the sink opens,
    /// at every rotation and day change, and at every checkpoint).
    pub max_age: Option<Duration>,
    /// Tamper evidence (see [`crate::audit::chain`]); `None` writes records unchained.
    pub chain: Option<ChainConfig>,
}

/// How a sink seals its records.
#[derive(Debug, Clone)]
pub struct ChainConfig {
    pub key: ChainKey,
    /// Checkpoints use the readable text prefix (`FileAuditBackend`).
    pub text_format: bool,
    /// A checkpoint is written at least this often, also without records (zero: only at open,
    /// rotation, retention and close).
    pub interval: Duration,
    /// Names this writer in its checkpoints; `None`: the process id and a random tag, drawn
    /// again in every forked child (each process is a writer of its own).
    pub writer: Option<String>,
}

/// Counters of a sink (of one process); every loss or failure is counted.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub written_events: AtomicU64,
    pub written_bytes: AtomicU64,
    pub failed_events: AtomicU64,
    pub rotations: AtomicU64,
    pub repaired_lines: AtomicU64,
    pub compressed_segments: AtomicU64,
    pub compression_failures: AtomicU64,
    pub syncs: AtomicU64,
    pub checkpoints: AtomicU64,
    pub pruned_segments: AtomicU64,
    /// The most recent write failed (cleared by the next successful one).
    pub failing: AtomicBool,
}

struct State {
    file: Option<File>,
    path: PathBuf,
    identity: (u64, u64),
    known_end: u64,
    /// The lock file (`None` until this process opened the sink).
    lock: Option<File>,
    unsynced_events: u64,
    last_sync: Instant,
    /// This process opened the sink (its `open` checkpoint is written).
    opened: bool,
    closed: bool,
}

impl State {
    fn lock_file(&self) -> &File {
        self.lock.as_ref().expect("the sink is open")
    }
}

/// The checkpoint timer of one process.
struct Timer {
    handle: JoinHandle<()>,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

/// What a sink owns in one process (see the module docs on fork safety).
struct Proc {
    state: Mutex<State>,
    stats: Arc<SinkStats>,
    compressors: Mutex<Vec<JoinHandle<()>>>,
    timer: Mutex<Option<Timer>>,
    /// The writer named in this process's checkpoints.
    writer: String,
}

impl Proc {
    fn new(writer: String, closed: bool) -> Self {
        Self {
            state: Mutex::new(State {
                file: None,
                path: PathBuf::new(),
                identity: (0, 0),
                known_end: 0,
                lock: None,
                unsynced_events: 0,
                last_sync: Instant::now(),
                opened: false,
                closed,
            }),
            stats: Arc::new(SinkStats::default()),
            compressors: Mutex::new(Vec::new()),
            timer: Mutex::new(None),
            writer,
        }
    }

    /// In a forked child: closes the descriptors inherited with `self` when no thread was using
    /// them at the fork (a `flock` is held only under the state lock, so none is released
    /// here); otherwise leaves them (they stay open, unused, in the child).
    fn retire(&self) {
        if let Ok(mut state) = self.state.try_lock() {
            state.file = None;
            state.lock = None;
        }
    }
}

/// A rotating append-only segment writer. Thread-safe; shared as `Arc`.
pub struct FileSink {
    config: SinkConfig,
    proc: PerProcess<Proc>,
    /// Closed here, or by an ancestor before the fork.
    closed: AtomicBool,
    last_error: Arc<ArcSwapOption<String>>,
    clock_offset_us: AtomicI64,
    /// Fixed checkpoint time for tests (`i64::MIN`: the real clock).
    frozen_clock_us: AtomicI64,
    /// For the checkpoint timer thread, which must not keep the sink alive.
    me: Weak<FileSink>,
}

/// The OS error as both cores write it: `[Errno 28] No space left on device` (Python's form,
/// the pure core's; Rust would write `No space left on device (os error 28)`).
fn os_text(error: &io::Error) -> String {
    let text = error.to_string();
    match error.raw_os_error() {
        Some(code) => {
            let detail = text
                .strip_suffix(&format!(" (os error {code})"))
                .unwrap_or(&text);
            format!("[Errno {code}] {detail}")
        }
        None => text,
    }
}

/// `"<path>": cannot <action>: [Errno N] <OS error text>` (identical on the pure core).
fn io_error(path: &Path, action: &str, error: &io::Error) -> Error {
    Error::new(
        ErrorKind::AuditIo,
        path.display().to_string(),
        format!("cannot {action}: {}", os_text(error)),
    )
}

fn lock_guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The writer this process names in its checkpoints.
fn writer_name(config: &SinkConfig) -> String {
    match config.chain.as_ref().and_then(|c| c.writer.clone()) {
        Some(fixed) => fixed,
        None => format!(
            "{}-{}",
            std::process::id(),
            &crate::audit::event::new_event_id()[..8]
        ),
    }
}

fn identity(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn sync_dir(dir: &Path) {
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// One segment found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    /// `YYYY-MM-DD` for daily segments, empty otherwise.
    pub date: String,
    /// The rotation stamp, empty for an active file.
    pub stamp: String,
    pub compressed: bool,
}

impl Segment {
    fn sort_key(&self) -> (String, String) {
        let stamp = if self.stamp.is_empty() {
            "~".to_owned()
        } else {
            self.stamp.clone()
        };
        (self.date.clone(), stamp)
    }
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 22
        && b[8] == b'T'
        && b[21] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 8 || i == 21 || c.is_ascii_digit())
}

/// Parses a directory entry name as a segment of `stem`/`suffix`.
#[must_use]
pub fn parse_segment_name(name: &str, stem: &str, suffix: &str) -> Option<(String, String, bool)> {
    let rest = name.strip_prefix(stem)?;
    let (rest, compressed) = match rest.strip_suffix(".gz") {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let mut middle = rest.strip_suffix(suffix)?;
    let mut date = String::new();
    if let Some(d) = middle.strip_prefix('-') {
        if d.len() < 10 || !is_date(&d[..10]) {
            return None;
        }
        d[..10].clone_into(&mut date);
        middle = &d[10..];
    }
    let mut stamp = String::new();
    if let Some(s) = middle.strip_prefix('.') {
        if !is_stamp(s) {
            return None;
        }
        s.clone_into(&mut stamp);
        middle = "";
    }
    if !middle.is_empty() {
        return None;
    }
    Some((date, stamp, compressed))
}

/// Every segment of `stem`/`suffix` in `directory`, oldest first.
pub fn list_segments(directory: &Path, stem: &str, suffix: &str) -> io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(directory)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some((date, stamp, compressed)) = parse_segment_name(&name, stem, suffix) {
            segments.push(Segment {
                path: entry.path(),
                date,
                stamp,
                compressed,
            });
        }
    }
    segments.sort_by(|a, b| {
        a.sort_key()
            .cmp(&b.sort_key())
            .then(a.compressed.cmp(&b.compressed))
    });
    Ok(segments)
}

impl FileSink {
    /// Creates the directory if needed and opens (or creates) the active segment, repairing a
    /// torn tail left by a previous writer; starts the checkpoint timer of a chained log.
    /// `frozen_clock_us` fixes the time written into checkpoints (tests).
    pub fn open(config: SinkConfig, frozen_clock_us: Option<i64>) -> Result<Arc<Self>> {
        fs::create_dir_all(&config.directory)
            .map_err(|e| io_error(&config.directory, "create the audit directory", &e))?;
        let writer = writer_name(&config);
        let sink = Arc::new_cyclic(|me| Self {
            proc: PerProcess::new(Proc::new(writer, false)),
            config,
            closed: AtomicBool::new(false),
            last_error: Arc::new(ArcSwapOption::empty()),
            clock_offset_us: AtomicI64::new(0),
            frozen_clock_us: AtomicI64::new(frozen_clock_us.unwrap_or(i64::MIN)),
            me: me.clone(),
        });
        let proc = sink.proc();
        let mut state = lock_guard(&proc.state);
        sink.ensure_open(&proc, &mut state)?;
        drop(state);
        if sink.config.compress {
            sink.compress_leftovers(&proc);
        }
        drop(proc);
        Ok(sink)
    }

    /// This process's descriptors, locks, counters and threads (fresh in a forked child).
    fn proc(&self) -> Current<Proc> {
        self.proc.get(
            || {
                Proc::new(
                    writer_name(&self.config),
                    self.closed.load(Ordering::Acquire),
                )
            },
            Proc::retire,
        )
    }

    /// Opens the sink in this process, once: the lock file, the active segment (repairing a
    /// torn tail), retention, the `open` checkpoint and the checkpoint timer of a chained log.
    fn ensure_open(&self, proc: &Proc, state: &mut State) -> Result<()> {
        if state.opened {
            return Ok(());
        }
        let lock_path = self.lock_path();
        state.lock = Some(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o640)
                .open(&lock_path)
                .map_err(|e| io_error(&lock_path, "open the audit lock file", &e))?,
        );
        let target = self.active_path();
        self.reopen_exclusive(proc, state, &target)?;
        state
            .lock_file()
            .lock()
            .map_err(|e| io_error(&target, "lock the audit file", &e))?;
        // Another writer may have rotated the file since `reopen_exclusive` let go.
        let result = (|| {
            let target = self.active_path();
            if !Self::is_current(state, &target) {
                self.reopen_locked(proc, state, &target)?;
            }
            self.prune_locked(proc, state)?;
            let open = self.checkpoint(proc, "open");
            self.chain_append(proc, state, b"", open.as_ref())
        })();
        let _ = state.lock_file().unlock();
        result?;
        state.opened = true;
        self.start_checkpoint_timer(proc);
        Ok(())
    }

    fn lock_path(&self) -> PathBuf {
        self.config
            .directory
            .join(format!(".{}{}.lock", self.config.stem, self.config.suffix))
    }

    #[must_use]
    pub fn config(&self) -> &SinkConfig {
        &self.config
    }

    /// This process's counters (zero in a forked child until it writes).
    #[must_use]
    pub fn stats(&self) -> Arc<SinkStats> {
        Arc::clone(&self.proc().stats)
    }

    /// The last write, sync, rotation or compression error, if any.
    #[must_use]
    pub fn last_error(&self) -> Option<String> {
        self.last_error.load_full().map(|e| (*e).clone())
    }

    /// Shifts this sink's notion of "now" (for day rotation only); for tests.
    pub fn set_clock_offset_us(&self, offset: i64) {
        self.clock_offset_us.store(offset, Ordering::Relaxed);
    }

    fn record_error(&self, error: &Error) {
        self.last_error.store(Some(Arc::new(error.to_string())));
    }

    /// The path records are appended to right now.
    #[must_use]
    pub fn active_path(&self) -> PathBuf {
        let c = &self.config;
        let name = if c.daily {
            let now = now_micros() + self.clock_offset_us.load(Ordering::Relaxed);
            format!("{}-{}{}", c.stem, utc_date(now), c.suffix)
        } else {
            format!("{}{}", c.stem, c.suffix)
        };
        c.directory.join(name)
    }

    /// Every segment on disk, oldest first.
    pub fn segments(&self) -> Result<Vec<Segment>> {
        list_segments(
            &self.config.directory,
            &self.config.stem,
            &self.config.suffix,
        )
        .map_err(|e| io_error(&self.config.directory, "list audit segments", &e))
    }

    /// Opens `target` under the exclusive lock, repairing a torn tail. The caller holds no flock.
    fn reopen_exclusive(&self, proc: &Proc, state: &mut State, target: &Path) -> Result<()> {
        state
            .lock_file()
            .lock()
            .map_err(|e| io_error(target, "lock the audit file", &e))?;
        let result = self.reopen_locked(proc, state, target);
        let _ = state.lock_file().unlock();
        result
    }

    fn reopen_locked(&self, proc: &Proc, state: &mut State, target: &Path) -> Result<()> {
        let existed = target.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(target)
            .map_err(|e| io_error(target, "open the audit file", &e))?;
        let meta = file
            .metadata()
            .map_err(|e| io_error(target, "stat the audit file", &e))?;
        let mut size = meta.len();
        if size > 0 && last_byte(&file, size) != Some(b'\n') {
            (&file)
                .write_all(b"\n")
                .map_err(|e| io_error(target, "repair the torn last line of", &e))?;
            proc.stats.repaired_lines.fetch_add(1, Ordering::Relaxed);
            size += 1;
        }
        if !existed && self.config.durability != Durability::None {
            sync_dir(&self.config.directory);
        }
        let previous = std::mem::replace(&mut state.path, target.to_path_buf());
        state.file = Some(file);
        state.identity = identity(&meta);
        state.known_end = size;
        let changed = !previous.as_os_str().is_empty() && previous != target;
        if self.config.daily && self.config.compress && changed {
            self.schedule_compression(proc, previous);
        }
        // Every segment starts with a checkpoint (written by whichever writer opens it first).
        self.chain_append(proc, state, b"", None)?;
        if changed {
            self.prune_locked(proc, state)?;
        }
        Ok(())
    }

    /// Whether the open descriptor is still the active segment (checked under the shared lock).
    fn is_current(state: &State, target: &Path) -> bool {
        state.file.is_some()
            && state.path == target
            && fs::metadata(target).is_ok_and(|m| identity(&m) == state.identity)
    }

    /// Appends whole `\n`-terminated records (`events` of them) with one write.
    pub fn write_lines(&self, buf: &[u8], events: u64) -> Result<()> {
        let proc = self.proc();
        let result = self.write_lines_inner(&proc, buf, events);
        let stats = &proc.stats;
        match &result {
            Ok(()) => {
                stats.failing.store(false, Ordering::Relaxed);
                stats.written_events.fetch_add(events, Ordering::Relaxed);
                stats
                    .written_bytes
                    .fetch_add(buf.len() as u64, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failing.store(true, Ordering::Relaxed);
                stats.failed_events.fetch_add(events, Ordering::Relaxed);
                self.record_error(e);
            }
        }
        result
    }

    fn write_lines_inner(&self, proc: &Proc, buf: &[u8], events: u64) -> Result<()> {
        let mut state = lock_guard(&proc.state);
        if state.closed {
            return Err(Error::new(
                ErrorKind::AuditClosed,
                self.active_path().display().to_string(),
                "the audit sink is closed",
            ));
        }
        self.ensure_open(proc, &mut state)?;
        let mut attempts = 0;
        let rotate = loop {
            attempts += 1;
            let target = self.active_path();
            let locked = if self.config.chain.is_some() {
                state.lock_file().lock()
            } else {
                state.lock_file().lock_shared()
            };
            locked.map_err(|e| io_error(&target, "lock the audit file", &e))?;
            let needs_reopen = if Self::is_current(&state, &target) {
                // Someone else appended since our last write: make sure they left a whole line.
                let file = state.file.as_ref().expect("current file");
                let size = file.metadata().map_or(0, |m| m.len());
                size != state.known_end && size > 0 && last_byte(file, size) != Some(b'\n')
            } else {
                true
            };
            if needs_reopen {
                let _ = state.lock_file().unlock();
                if attempts >= 8 {
                    // Never append to a descriptor that may have been rotated (and compressed)
                    // away: fail, counted, rather than lose the records.
                    return Err(Error::new(
                        ErrorKind::AuditIo,
                        target.display().to_string(),
                        "cannot keep up with concurrent rotations of the audit file",
                    ));
                }
                self.reopen_exclusive(proc, &mut state, &target)?;
                continue;
            }
            if self.config.chain.is_some() {
                let outcome = self.chain_append(proc, &mut state, buf, None);
                let _ = state.lock_file().unlock();
                outcome?;
            } else {
                let file = state.file.as_ref().expect("open file");
                let outcome = (&*file).write_all(buf);
                let _ = state.lock_file().unlock();
                if let Err(e) = outcome {
                    // A partial write may have left a fragment: check before the next write.
                    state.known_end = u64::MAX;
                    return Err(io_error(&target, "append to the audit file", &e));
                }
            }
            let size = state
                .file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len());
            state.known_end = size;
            break self.config.max_bytes.is_some_and(|max| size >= max);
        };
        state.unsynced_events += events;
        let sync_now = match self.config.durability {
            Durability::None => false,
            Durability::Always => true,
            Durability::Periodic {
                every_events,
                interval,
            } => {
                (every_events > 0 && state.unsynced_events >= every_events)
                    || (!interval.is_zero() && state.last_sync.elapsed() >= interval)
            }
        };
        if sync_now {
            Self::sync_locked(&mut state, &proc.stats)?;
        }
        if rotate && let Err(e) = self.rotate(proc, &mut state) {
            // The records are written; only the rotation failed. Count and keep going.
            self.record_error(&e);
        }
        Ok(())
    }

    // ---- tamper evidence ----------------------------------------------------------------

    /// The time written into checkpoints.
    fn checkpoint_clock(&self) -> i64 {
        match self.frozen_clock_us.load(Ordering::Relaxed) {
            i64::MIN => now_micros(),
            frozen => frozen,
        }
    }

    /// Fixes the time written into checkpoints (`None`: the real clock); for tests.
    pub fn freeze_clock(&self, micros: Option<i64>) {
        self.frozen_clock_us
            .store(micros.unwrap_or(i64::MIN), Ordering::Relaxed);
    }

    /// A checkpoint of this process's writer (`None` when the log is not chained).
    fn checkpoint<'a>(&'a self, proc: &'a Proc, reason: &'static str) -> Option<Checkpoint<'a>> {
        let chain = self.config.chain.as_ref()?;
        Some(Checkpoint {
            reason,
            time_us: self.checkpoint_clock(),
            writer: &proc.writer,
            interval_ms: chain.interval.as_millis() as u64,
            ..Checkpoint::default()
        })
    }

    fn read_chain_state(state: &State, key: &ChainKey) -> Option<ChainState> {
        let mut bytes = [0u8; STATE_LEN];
        match state.lock_file().read_at(&mut bytes, 0) {
            Ok(STATE_LEN) => ChainState::decode(&bytes, &chain::key_tag(key)),
            _ => None,
        }
    }

    /// Appends `body` (whole unchained lines) as links, preceded by whatever checkpoint the
    /// segment needs first (`start`, `rotate` or `recover`) and followed by `extra` and by a
    /// `periodic` checkpoint when one is due; then stores the new head. No-op when unchained.
    /// The caller holds the exclusive lock and `state.file` is the active segment.
    fn chain_append(
        &self,
        proc: &Proc,
        state: &mut State,
        body: &[u8],
        extra: Option<&Checkpoint<'_>>,
    ) -> Result<()> {
        let Some(chain) = self.config.chain.as_ref() else {
            return Ok(());
        };
        let path = state.path.clone();
        let file = state.file.as_ref().expect("open file");
        let meta = file
            .metadata()
            .map_err(|e| io_error(&path, "stat the audit file", &e))?;
        let (size, ident) = (meta.len(), identity(&meta));
        let mut out = Vec::with_capacity(body.len() + body.len() / 4 + 1024);
        let mut head = self.chain_head(proc, state, chain, ident, size, &mut out)?;
        for line in body.split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            if line.last() != Some(&b'}') {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned(),
                    "a chained record must be one JSON object line",
                ));
            }
            head.head = chain::seal_line(&mut out, line, head.next_seq, &head.head, &chain.key);
            head.next_seq += 1;
            head.segment_records += 1;
        }
        let now = self.checkpoint_clock();
        let periodic;
        let extra = match extra {
            Some(cp) => Some(cp),
            None if !chain.interval.is_zero()
                && now.saturating_sub(head.last_checkpoint_us)
                    >= chain.interval.as_micros() as i64 =>
            {
                periodic = self.checkpoint(proc, "periodic").expect("chained");
                Some(&periodic)
            }
            None => None,
        };
        if let Some(cp) = extra {
            Self::push_checkpoint(proc, &mut out, &mut head, cp.clone(), chain);
        }
        if out.is_empty() {
            return Ok(());
        }
        if let Err(e) = (&*file).write_all(&out) {
            state.known_end = u64::MAX;
            return Err(io_error(&path, "append to the audit file", &e));
        }
        head.segment = ident;
        head.segment_end = size + out.len() as u64;
        state.known_end = head.segment_end;
        let encoded = head.encode();
        let mut stored = [0u8; STATE_LEN + 32];
        stored[..STATE_LEN].copy_from_slice(&encoded);
        stored[STATE_LEN..].copy_from_slice(&chain.key.head_mac(&encoded));
        state
            .lock_file()
            .write_all_at(&stored, 0)
            .map_err(|e| io_error(&path, "record the audit chain head in the lock file", &e))
    }

    fn push_checkpoint(
        proc: &Proc,
        out: &mut Vec<u8>,
        head: &mut ChainState,
        mut cp: Checkpoint<'_>,
        chain: &ChainConfig,
    ) {
        if cp.reason != "rotate" {
            cp.segment_records = head.segment_records;
            cp.segment_digest = (head.segment_records > 0).then_some(head.head);
        }
        cp.prev_checkpoint = (head.last_checkpoint != [0u8; 32]).then_some(head.last_checkpoint);
        let mac = chain::write_checkpoint(
            out,
            &cp,
            chain.text_format,
            &chain.key,
            head.next_seq,
            &head.head,
        );
        head.head = mac;
        head.last_checkpoint = mac;
        head.last_checkpoint_us = cp.time_us;
        head.next_seq += 1;
        head.segment_records = if cp.reason == "rotate" || cp.reason == "start" {
            1
        } else {
            head.segment_records + 1
        };
        proc.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    /// The chain head for appending to the active segment (`ident`, `size`), writing into `out`
    /// the checkpoint a new or inconsistent segment needs first.
    fn chain_head(
        &self,
        proc: &Proc,
        state: &State,
        chain: &ChainConfig,
        ident: (u64, u64),
        size: u64,
        out: &mut Vec<u8>,
    ) -> Result<ChainState> {
        let stored = Self::read_chain_state(state, &chain.key);
        if let Some(head) = stored {
            if head.segment == ident && head.segment_end == size {
                return Ok(head);
            }
            if head.segment != ident && size == 0 {
                let mut head = head;
                let mut cp = self.checkpoint(proc, "rotate").expect("chained");
                cp.segment_records = head.segment_records;
                cp.segment_digest = (head.segment_records > 0).then_some(head.head);
                Self::push_checkpoint(proc, out, &mut head, cp, chain);
                return Ok(head);
            }
        }
        self.recover(proc, state, chain, stored, size, out)
    }

    /// Rebuilds the head from the log itself (see the module docs of `chain`).
    fn recover(
        &self,
        proc: &Proc,
        state: &State,
        chain: &ChainConfig,
        stored: Option<ChainState>,
        size: u64,
        out: &mut Vec<u8>,
    ) -> Result<ChainState> {
        let active = File::open(&state.path)
            .and_then(chain::scan_segment)
            .map_err(|e| io_error(&state.path, "read the audit file", &e))?;
        let mut head = ChainState {
            key_tag: chain::key_tag(&chain.key),
            last_checkpoint_us: i64::MIN / 2,
            ..ChainState::default()
        };
        let expected = stored.map_or(0, |s| s.next_seq);
        if let (Some(last), true) = (active.last, size > 0) {
            head.next_seq = last.seq + 1;
            head.head = last.mac;
            head.segment_records = active.links;
            if let Some(cp) = active.last_checkpoint {
                head.last_checkpoint = cp.mac;
            }
            let mut cp = self.checkpoint(proc, "recover").expect("chained");
            cp.missing = expected.saturating_sub(head.next_seq);
            Self::push_checkpoint(proc, out, &mut head, cp, chain);
            return Ok(head);
        }
        // The active segment has no link: continue from the newest earlier segment that has.
        let segments = self.segments()?;
        for segment in segments.iter().rev().filter(|s| s.path != state.path) {
            let Ok(scan) =
                open_segment(&segment.path, segment.compressed).and_then(chain::scan_segment)
            else {
                continue;
            };
            if let Some(last) = scan.last {
                head.next_seq = last.seq + 1;
                head.head = last.mac;
                head.segment_records = scan.links;
                if let Some(cp) = scan.last_checkpoint {
                    head.last_checkpoint = cp.mac;
                }
                let mut cp = self.checkpoint(proc, "rotate").expect("chained");
                cp.segment_records = scan.links;
                cp.segment_digest = Some(last.mac);
                cp.missing = expected.saturating_sub(head.next_seq);
                Self::push_checkpoint(proc, out, &mut head, cp, chain);
                return Ok(head);
            }
        }
        let mut cp = self.checkpoint(proc, "start").expect("chained");
        cp.missing = expected;
        Self::push_checkpoint(proc, out, &mut head, cp, chain);
        Ok(head)
    }

    /// Writes a `periodic` checkpoint if one is due (also when no record was written since the
    /// last one). Called by the checkpoint timer.
    pub fn checkpoint_if_due(&self) -> Result<()> {
        if self.config.chain.is_none() {
            return Ok(());
        }
        let proc = self.proc();
        let mut state = lock_guard(&proc.state);
        if state.closed {
            return Ok(());
        }
        let result = self.ensure_open(&proc, &mut state).and_then(|()| {
            let target = self.active_path();
            state
                .lock_file()
                .lock()
                .map_err(|e| io_error(&target, "lock the audit file", &e))?;
            let result = (|| {
                if !Self::is_current(&state, &target) {
                    self.reopen_locked(&proc, &mut state, &target)?;
                }
                self.chain_append(&proc, &mut state, b"", None)?;
                if self.config.max_age.is_some() {
                    self.prune_locked(&proc, &mut state)?;
                }
                Ok(())
            })();
            let _ = state.lock_file().unlock();
            result
        });
        if let Err(e) = &result {
            self.record_error(e);
        }
        result
    }

    /// Starts this process's thread that writes periodic checkpoints (chained logs with an
    /// interval); it holds only a weak reference to the sink.
    fn start_checkpoint_timer(&self, proc: &Proc) {
        let Some(chain) = self.config.chain.as_ref() else {
            return;
        };
        if chain.interval.is_zero() {
            return;
        }
        let interval = chain.interval;
        let weak = self.me.clone();
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread_stop = Arc::clone(&stop);
        let handle = crate::fork::spawn(
            std::thread::Builder::new().name("truthound-audit-checkpoint".to_owned()),
            move || {
                loop {
                    {
                        let (flag, cond) = &*thread_stop;
                        let guard = lock_guard(flag);
                        let (guard, _) = cond
                            .wait_timeout_while(guard, interval / 2, |stopped| !*stopped)
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        if *guard {
                            return;
                        }
                    }
                    let Some(sink) = weak.upgrade() else { return };
                    let _ = sink.checkpoint_if_due();
                }
            },
        );
        if let Ok(handle) = handle {
            *lock_guard(&proc.timer) = Some(Timer { handle, stop });
        }
    }

    fn sync_locked(state: &mut State, counters: &SinkStats) -> Result<()> {
        if let Some(file) = state.file.as_ref() {
            file.sync_data()
                .map_err(|e| io_error(&state.path, "fdatasync the audit file", &e))?;
            counters.syncs.fetch_add(1, Ordering::Relaxed);
        }
        state.unsynced_events = 0;
        state.last_sync = Instant::now();
        Ok(())
    }

    /// Makes records written by this process durable according to the policy (no-op for
    /// `Durability::None`).
    pub fn flush(&self) -> Result<()> {
        let proc = self.proc();
        let mut state = lock_guard(&proc.state);
        if self.config.durability != Durability::None && state.unsynced_events > 0 {
            let result = Self::sync_locked(&mut state, &proc.stats);
            if let Err(e) = &result {
                self.record_error(e);
            }
            return result;
        }
        Ok(())
    }

    /// Forces an `fdatasync` whatever the policy.
    pub fn sync(&self) -> Result<()> {
        let proc = self.proc();
        let mut state = lock_guard(&proc.state);
        Self::sync_locked(&mut state, &proc.stats)
    }

    /// Writes the `close` checkpoint (chained logs, if this process wrote), flushes per policy,
    /// waits for this process's background compression, and closes. Idempotent.
    pub fn close(&self) -> Result<()> {
        let proc = self.proc();
        let timer = lock_guard(&proc.timer).take();
        if let Some(timer) = timer {
            let (flag, cond) = &*timer.stop;
            *lock_guard(flag) = true;
            cond.notify_all();
            if timer.handle.thread().id() != std::thread::current().id() {
                let _ = timer.handle.join();
            }
        }
        let mut result = self.close_checkpoint(&proc);
        let flushed = self.flush();
        if result.is_ok() {
            result = flushed;
        }
        {
            let mut state = lock_guard(&proc.state);
            state.closed = true;
            state.file = None;
            self.closed.store(true, Ordering::Release);
        }
        let handles = std::mem::take(&mut *lock_guard(&proc.compressors));
        for handle in handles {
            let _ = handle.join();
        }
        result
    }

    fn close_checkpoint(&self, proc: &Proc) -> Result<()> {
        let Some(cp) = self.checkpoint(proc, "close") else {
            return Ok(());
        };
        let mut state = lock_guard(&proc.state);
        if state.closed || state.file.is_none() {
            return Ok(());
        }
        let target = self.active_path();
        state
            .lock_file()
            .lock()
            .map_err(|e| io_error(&target, "lock the audit file", &e))?;
        let result = (|| {
            if !Self::is_current(&state, &target) {
                self.reopen_locked(proc, &mut state, &target)?;
            }
            self.chain_append(proc, &mut state, b"", Some(&cp))
        })();
        let _ = state.lock_file().unlock();
        if let Err(e) = &result {
            self.record_error(e);
        }
        result
    }

    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn rotate(&self, proc: &Proc, state: &mut State) -> Result<()> {
        let target = state.path.clone();
        state
            .lock_file()
            .lock()
            .map_err(|e| io_error(&target, "lock the audit file", &e))?;
        let result = self.rotate_locked(proc, state, &target);
        let _ = state.lock_file().unlock();
        let rotated = result?;
        if let Some(rotated) = rotated
            && self.config.compress
        {
            self.schedule_compression(proc, rotated);
        }
        Ok(())
    }

    fn rotate_locked(
        &self,
        proc: &Proc,
        state: &mut State,
        target: &Path,
    ) -> Result<Option<PathBuf>> {
        let max = self.config.max_bytes.unwrap_or(u64::MAX);
        let Ok(meta) = fs::metadata(target) else {
            return Ok(None);
        };
        if identity(&meta) != state.identity || meta.len() < max {
            // Another writer rotated first; the next write reopens.
            return Ok(None);
        }
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let base = name
            .strip_suffix(self.config.suffix.as_str())
            .unwrap_or(name);
        let mut micros = now_micros();
        let rotated = loop {
            let candidate = self.config.directory.join(format!(
                "{base}.{}{}",
                segment_stamp(micros),
                self.config.suffix
            ));
            let gz = PathBuf::from(format!("{}.gz", candidate.display()));
            if !candidate.exists() && !gz.exists() {
                break candidate;
            }
            micros += 1;
        };
        fs::rename(target, &rotated).map_err(|e| io_error(target, "rotate the audit file", &e))?;
        proc.stats.rotations.fetch_add(1, Ordering::Relaxed);
        // Opens the new segment: its first link (chained) and the pruning of old ones.
        self.reopen_locked(proc, state, target)?;
        if state.path == target {
            // `reopen_locked` prunes only on a path change; a size rotation keeps the path.
            self.prune_locked(proc, state)?;
        }
        Ok(Some(rotated))
    }

    /// Deletes closed segments beyond `max_files` (oldest first) and those older than
    /// `max_age`; in a chained log a `retention` checkpoint names them, so `verify` can tell a
    /// pruned segment from a deleted one. The caller holds the exclusive lock.
    fn prune_locked(&self, proc: &Proc, state: &mut State) -> Result<()> {
        if self.config.max_files.is_none() && self.config.max_age.is_none() {
            return Ok(());
        }
        let Ok(segments) = self.segments() else {
            return Ok(());
        };
        let active = state.path.clone();
        let closed: Vec<&Segment> = segments.iter().filter(|s| s.path != active).collect();
        let mut excess = self
            .config
            .max_files
            .map_or(0, |max| segments.len().saturating_sub(max.max(1)));
        let cutoff = self
            .config
            .max_age
            .map(|age| std::time::SystemTime::now() - age);
        let mut pruned = Vec::new();
        for segment in closed {
            let expired = cutoff.is_some_and(|cutoff| {
                fs::metadata(&segment.path)
                    .and_then(|m| m.modified())
                    .is_ok_and(|modified| modified < cutoff)
            });
            if excess == 0 && !expired {
                continue;
            }
            if fs::remove_file(&segment.path).is_ok() {
                excess = excess.saturating_sub(1);
                proc.stats.pruned_segments.fetch_add(1, Ordering::Relaxed);
                pruned.push(
                    segment
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
        }
        if pruned.is_empty() || self.config.chain.is_none() {
            return Ok(());
        }
        // The first link still on disk: the chain legitimately starts there now.
        let retained_first_seq = self.segments().ok().and_then(|segments| {
            segments
                .iter()
                .find_map(|s| first_link_of(&s.path, s.compressed).map(|l| l.seq))
        });
        let mut cp = self.checkpoint(proc, "retention").expect("chained");
        cp.pruned = pruned;
        cp.retained_first_seq = retained_first_seq;
        self.chain_append(proc, state, b"", Some(&cp))
    }

    /// Queues compression of closed, uncompressed segments left by earlier runs. A segment that
    /// also has its `.gz` was being compressed when its writer stopped (a crash, or a process
    /// that exited without closing the sink, such as a recycled pre-fork worker): the `.gz`
    /// may not be durable yet, so it is made again from the plain segment and replaces it.
    fn compress_leftovers(&self, proc: &Proc) {
        let Ok(segments) = self.segments() else {
            return;
        };
        let active = self.active_path();
        for segment in segments {
            if !segment.compressed && segment.path != active {
                self.schedule_compression(proc, segment.path);
            }
        }
    }

    fn schedule_compression(&self, proc: &Proc, path: PathBuf) {
        let stats = Arc::clone(&proc.stats);
        let last_error = Arc::clone(&self.last_error);
        let lock_path = self.lock_path();
        let durable = self.config.durability != Durability::None;
        let handle = crate::fork::spawn(
            std::thread::Builder::new().name("truthound-audit-gzip".to_owned()),
            move || match compress_segment(&path, &lock_path, durable) {
                Ok(()) => {
                    stats.compressed_segments.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.compression_failures.fetch_add(1, Ordering::Relaxed);
                    last_error.store(Some(Arc::new(e.to_string())));
                }
            },
        );
        match handle {
            Ok(handle) => {
                let mut handles = lock_guard(&proc.compressors);
                handles.retain(|h| !h.is_finished());
                handles.push(handle);
            }
            Err(e) => {
                proc.stats
                    .compression_failures
                    .fetch_add(1, Ordering::Relaxed);
                self.record_error(&io_error(&self.config.directory, "start compression", &e));
            }
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

fn open_segment(path: &Path, compressed: bool) -> io::Result<Box<dyn Read>> {
    let (path, compressed) = match File::open(path) {
        Ok(file) if !compressed => return Ok(Box::new(file)),
        Ok(file) => return Ok(Box::new(flate2::read::MultiGzDecoder::new(file))),
        // Compressed (renamed) since it was listed.
        Err(e) if e.kind() == io::ErrorKind::NotFound && !compressed => {
            (PathBuf::from(format!("{}.gz", path.display())), true)
        }
        Err(e) => return Err(e),
    };
    let file = File::open(path)?;
    Ok(if compressed {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    })
}

fn first_link_of(path: &Path, compressed: bool) -> Option<chain::Link> {
    open_segment(path, compressed)
        .and_then(chain::first_link)
        .ok()
        .flatten()
}

fn last_byte(file: &File, size: u64) -> Option<u8> {
    let mut byte = [0u8; 1];
    match file.read_at(&mut byte, size - 1) {
        Ok(1) => Some(byte[0]),
        _ => None,
    }
}

/// Gzips a closed segment into `<segment>.gz` (via a private temporary name) and removes it.
fn compress_segment(path: &Path, lock_path: &Path, durable: bool) -> Result<()> {
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .open(lock_path)
        .ok();
    // Barrier: once we held the exclusive lock, no writer can still be appending to `path`.
    if let Some(lock) = &lock {
        let _ = lock.lock();
        let _ = lock.unlock();
    }
    let gz_path = PathBuf::from(format!("{}.gz", path.display()));
    let tmp_path = PathBuf::from(format!(
        "{}.tmp-{}-{}",
        gz_path.display(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let run = || -> io::Result<()> {
        let mut input = File::open(path)?;
        let output = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&tmp_path)?;
        let mut encoder = flate2::write::GzEncoder::new(output, flate2::Compression::default());
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = input.read(&mut buf)?;
            if n == 0 {
                break;
            }
            encoder.write_all(&buf[..n])?;
        }
        let output = encoder.finish()?;
        if durable {
            output.sync_all()?;
        }
        // Publish under the exclusive lock, and only if the segment is still there: pruning
        // (which runs under that lock) may have removed it meanwhile, and renaming our copy
        // into place then would bring a pruned segment back.
        if let Some(lock) = &lock {
            let _ = lock.lock();
        }
        let published = if fs::symlink_metadata(path).is_ok() {
            fs::rename(&tmp_path, &gz_path).and_then(|()| fs::remove_file(path))
        } else {
            Err(io::Error::from(io::ErrorKind::NotFound))
        };
        if let Some(lock) = &lock {
            let _ = lock.unlock();
        }
        published
    };
    run().or_else(|e| {
        let _ = fs::remove_file(&tmp_path);
        if e.kind() == io::ErrorKind::NotFound || gz_path.exists() {
            // Another process compressed it first, or it was pruned meanwhile: nothing is lost.
            return Ok(());
        }
        Err(io_error(path, "compress the closed audit segment", &e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "truthound-audit-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn config(dir: &Path) -> SinkConfig {
        SinkConfig {
            directory: dir.to_path_buf(),
            stem: "audit".into(),
            suffix: ".log".into(),
            daily: false,
            max_bytes: None,
            max_files: None,
            compress: false,
            durability: Durability::Always,
            max_age: None,
            chain: None,
        }
    }

    #[test]
    fn parses_segment_names() {
        let p = |n: &str| parse_segment_name(n, "audit", ".jsonl");
        assert_eq!(
            p("audit.jsonl"),
            Some((String::new(), String::new(), false))
        );
        assert_eq!(
            p("audit-2024-05-01.20240501T120000000001Z.jsonl.gz"),
            Some(("2024-05-01".into(), "20240501T120000000001Z".into(), true))
        );
        assert_eq!(p("audit-extra.jsonl"), None);
        assert_eq!(p("audit.jsonl.gz.tmp-1-2"), None);
        assert_eq!(p("other.jsonl"), None);
    }

    #[test]
    fn repairs_a_torn_tail_before_appending() {
        let dir = temp_dir("torn");
        fs::write(dir.join("audit.log"), b"{\"a\":1}\n{\"torn").unwrap();
        let sink = FileSink::open(config(&dir), None).unwrap();
        sink.write_lines(b"{\"b\":2}\n", 1).unwrap();
        let text = fs::read_to_string(dir.join("audit.log")).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"torn\n{\"b\":2}\n");
        assert_eq!(sink.stats().repaired_lines.load(Ordering::Relaxed), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rotates_by_size_keeps_max_files_and_compresses() {
        let dir = temp_dir("rotate");
        let mut cfg = config(&dir);
        cfg.max_bytes = Some(100);
        cfg.max_files = Some(3);
        cfg.compress = true;
        let sink = FileSink::open(cfg, None).unwrap();
        for i in 0..50 {
            sink.write_lines(format!("{{\"i\":{i:040}}}\n").as_bytes(), 1)
                .unwrap();
        }
        sink.close().unwrap();
        let segments = list_segments(&dir, "audit", ".log").unwrap();
        assert_eq!(segments.len(), 3, "{segments:?}");
        assert!(segments[..2].iter().all(|s| s.compressed));
        assert!(sink.stats().rotations.load(Ordering::Relaxed) >= 15);
        fs::remove_dir_all(dir).unwrap();
    }

    fn chained(dir: &Path) -> SinkConfig {
        let mut cfg = config(dir);
        cfg.chain = Some(ChainConfig {
            key: ChainKey::new(b"0123456789abcdef-sink-test", "test").unwrap(),
            text_format: false,
            interval: Duration::ZERO,
            writer: Some("w".into()),
        });
        cfg
    }

    /// Every line of every segment, oldest first, checked as one chain; returns the lines.
    fn check_chain(dir: &Path, key: &ChainKey) -> Vec<String> {
        let mut prev = [0u8; 32];
        let mut lines = Vec::new();
        for segment in list_segments(dir, "audit", ".log").unwrap() {
            let text = fs::read_to_string(&segment.path).unwrap();
            for line in text.lines() {
                let link = chain::parse_link(line.as_bytes()).expect("a link");
                assert_eq!(link.seq, lines.len() as u64, "{line}");
                let body = &line.as_bytes()[..line.len() - chain::MAC_SUFFIX_LEN];
                assert_eq!(key.link_mac(&prev, body), link.mac, "{line}");
                prev = link.mac;
                lines.push(line.to_owned());
            }
        }
        lines
    }

    #[test]
    fn a_chain_runs_across_rotations_threads_and_reopens() {
        let dir = temp_dir("chain");
        let mut cfg = chained(&dir);
        cfg.max_bytes = Some(400);
        let key = cfg.chain.as_ref().unwrap().key.clone();
        for _ in 0..2 {
            let sink = FileSink::open(cfg.clone(), None).unwrap();
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let sink = Arc::clone(&sink);
                    std::thread::spawn(move || {
                        for i in 0..25 {
                            sink.write_lines(format!("{{\"t\":{t},\"i\":{i}}}\n").as_bytes(), 1)
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            sink.close().unwrap();
        }
        let lines = check_chain(&dir, &key);
        assert_eq!(
            lines.iter().filter(|l| l.starts_with("{\"t\"")).count(),
            200
        );
        let reasons = |r: &str| {
            lines
                .iter()
                .filter(|l| l.contains(&format!("\"reason\":\"{r}\"")))
                .count()
        };
        assert_eq!(reasons("start"), 1);
        assert_eq!(reasons("open"), 2);
        assert_eq!(reasons("close"), 2);
        assert!(reasons("rotate") > 5);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_lost_chain_head_is_recovered_from_the_log() {
        let dir = temp_dir("recover");
        let cfg = chained(&dir);
        let key = cfg.chain.as_ref().unwrap().key.clone();
        let sink = FileSink::open(cfg.clone(), None).unwrap();
        sink.write_lines(b"{\"a\":1}\n{\"a\":2}\n", 2).unwrap();
        drop(sink);
        fs::write(dir.join(".audit.log.lock"), b"").unwrap();
        let sink = FileSink::open(cfg, None).unwrap();
        sink.write_lines(b"{\"a\":3}\n", 1).unwrap();
        sink.close().unwrap();
        let lines = check_chain(&dir, &key);
        assert!(lines.iter().any(|l| l.contains("\"reason\":\"recover\"")));
        assert!(lines.last().unwrap().contains("\"reason\":\"close\""));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn forked_children_join_the_chain_as_new_writers() {
        let dir = temp_dir("fork");
        let mut cfg = chained(&dir);
        cfg.max_bytes = Some(4000);
        cfg.durability = Durability::None;
        if let Some(chain) = cfg.chain.as_mut() {
            chain.writer = None;
        }
        let key = cfg.chain.as_ref().unwrap().key.clone();
        let sink = FileSink::open(cfg, None).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        // Two threads keep the state lock and the exclusive flock busy while the process forks.
        let threads: Vec<_> = (0..2)
            .map(|t| {
                let (sink, stop) = (Arc::clone(&sink), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        sink.write_lines(format!("{{\"t\":{t},\"i\":{i}}}\n").as_bytes(), 1)
                            .unwrap();
                        i += 1;
                    }
                    i
                })
            })
            .collect();
        for child in 0..10 {
            std::thread::sleep(Duration::from_millis(2));
            let status = crate::fork::testing::in_child(|| {
                for i in 0..20 {
                    let line = format!("{{\"child\":{child},\"i\":{i}}}\n");
                    sink.write_lines(line.as_bytes(), 1).unwrap();
                }
                let written = sink.stats().written_events.load(Ordering::Relaxed);
                sink.close().is_ok() && written == 20
            });
            assert_eq!(status, 0);
        }
        stop.store(true, Ordering::Relaxed);
        let parent: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        sink.close().unwrap();
        let lines = check_chain(&dir, &key);
        let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(count("{\"child\""), 200);
        assert_eq!(count("{\"t\""), parent);
        let writers: std::collections::HashSet<_> = lines
            .iter()
            .filter(|l| l.contains("\"reason\":\"open\""))
            .map(|l| {
                l.split("\"writer\":\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            writers.len(),
            11,
            "the parent and each child open as writers of their own"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unwritable_directory_is_a_named_error() {
        let err = FileSink::open(config(Path::new("/proc/truthound-no-such-dir")), None)
            .err()
            .unwrap();
        assert_eq!(err.kind, ErrorKind::AuditIo);
        assert!(err.item.contains("truthound-no-such-dir"));
    }
}
