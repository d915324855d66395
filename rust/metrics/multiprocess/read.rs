//! The reader side: scrapes (aggregate every file of a directory) and compaction (absorb dead
//! writers' files into the archive). See the module documentation of [`super`] for the locking
//! protocol that keeps both consistent under concurrency and crashes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::format::{
    self, FLAG_ARCHIVE, FamilyDef, HEADER, MAGIC, OFF_CREATED, OFF_FLAGS, OFF_USED, REC_ABSORBED,
    REC_FAMILY, REC_SERIES, SERIES_PARTIALS, SLOT_HEADER, STATE_REMOVED,
};
use super::fsum::{add_partial, round_partials};
use super::slab::{lock_shared, try_lock_exclusive, unlock, writer_is_dead};
use super::{GaugeMode, MultiprocessCounters, nonce};
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::names::Kind;

pub const ARCHIVE: &str = "archive.db";
pub const LOCK: &str = ".lock";

/// A read-only view of a file.
struct ReadMap {
    ptr: *const u8,
    len: usize,
}

impl ReadMap {
    /// Maps the first `len` bytes of `file` (its size when last looked at).
    fn map(file: &File, len: usize) -> Option<Self> {
        if len < HEADER {
            return None;
        }
        // SAFETY: a read-only shared mapping of an open file, unmapped on drop.
        #[allow(unsafe_code)]
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    /// An atomic read of the word at `offset` (writers update cells atomically in place).
    fn word(&self, offset: usize) -> u64 {
        debug_assert!(offset + 8 <= self.len && offset.is_multiple_of(8));
        // SAFETY: `offset + 8 <= len`, 8-byte aligned (checked by the callers' parsing).
        #[allow(unsafe_code)]
        unsafe {
            (*self.ptr.add(offset).cast::<AtomicU64>()).load(Ordering::Acquire)
        }
    }

    fn bytes(&self, start: usize, end: usize) -> &[u8] {
        // SAFETY: `start <= end <= len` (checked by the callers); record bytes are immutable
        // once published.
        #[allow(unsafe_code)]
        unsafe {
            std::slice::from_raw_parts(self.ptr.add(start), end - start)
        }
    }
}

impl Drop for ReadMap {
    fn drop(&mut self) {
        // SAFETY: mapped in `open` with this length.
        #[allow(unsafe_code)]
        unsafe {
            libc::munmap(self.ptr.cast_mut().cast(), self.len);
        }
    }
}

/// One series as read from a file.
#[derive(Debug, Clone)]
pub struct FileSeries {
    pub family: u32,
    pub values: Vec<String>,
    pub cells: Vec<u64>,
    pub partials: Option<Vec<f64>>,
}

/// A parsed writer or archive file.
#[derive(Debug, Default)]
pub struct ParsedFile {
    pub name: String,
    pub live: bool,
    pub created: f64,
    pub defs: HashMap<u32, FamilyDef>,
    pub series: Vec<FileSeries>,
    pub absorbed: Vec<String>,
}

/// Copies one summary slot consistently (seqlock), retrying while its writer changes it.
fn copy_slot(map: &ReadMap, start: usize, bins: usize, out: &mut [u64]) {
    for _ in 0..64 {
        let seq = map.word(start);
        if seq.is_multiple_of(2) {
            out[0] = seq;
            for i in 1..SLOT_HEADER {
                out[i] = map.word(start + i * 8);
            }
            let n = (out[6] as usize).min(bins);
            for i in 0..n {
                out[SLOT_HEADER + i] = map.word(start + (SLOT_HEADER + i) * 8);
            }
            std::sync::atomic::fence(Ordering::Acquire);
            if map.word(start) == seq {
                return;
            }
        }
        std::thread::yield_now();
    }
    // A writer that died mid-update leaves an odd sequence: take the slot as it is.
    for i in 0..SLOT_HEADER {
        out[i] = map.word(start + i * 8);
    }
    let n = (out[6] as usize).min(bins);
    for i in 0..n {
        out[SLOT_HEADER + i] = map.word(start + (SLOT_HEADER + i) * 8);
    }
}

/// Parses a file; `None` when its header is unusable. Records after a malformed one are
/// skipped and counted.
fn parse(map: &ReadMap, counters: &MultiprocessCounters) -> Option<ParsedFile> {
    if map.word(0) != MAGIC {
        return None;
    }
    let used = map.word(OFF_USED) as usize;
    if used < HEADER || used > map.len || !used.is_multiple_of(8) {
        return None;
    }
    let mut parsed = ParsedFile {
        created: f64::from_bits(map.word(OFF_CREATED)),
        ..ParsedFile::default()
    };
    let archive = map.word(OFF_FLAGS) & FLAG_ARCHIVE != 0;
    let mut offset = HEADER;
    while offset < used {
        let head = map.bytes(offset, offset + 8);
        let len = u32::from_ne_bytes(head[..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(head[4..6].try_into().ok()?);
        let flags = u16::from_ne_bytes(head[6..8].try_into().ok()?);
        if len < 8 || !len.is_multiple_of(8) || offset + len > used {
            counters.skipped_records.fetch_add(1, Ordering::Relaxed);
            break;
        }
        let body = map.bytes(offset + 8, offset + len);
        let ok = match kind {
            REC_FAMILY => format::parse_family(body).map(|def| {
                parsed.defs.insert(def.id, def);
            }),
            REC_SERIES => parse_series(map, &mut parsed, offset, len, archive, flags),
            REC_ABSORBED => parse_absorbed(body).map(|names| parsed.absorbed.extend(names)),
            _ => Some(()),
        };
        if ok.is_none() {
            counters.skipped_records.fetch_add(1, Ordering::Relaxed);
        }
        offset += len;
    }
    Some(parsed)
}

fn parse_absorbed(body: &[u8]) -> Option<Vec<String>> {
    let mut r = format::Reader::new(body);
    let count = u32::from_ne_bytes(body.get(..4)?.try_into().ok()?);
    r.pos = 4;
    (0..count)
        .map(|_| r.string().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
}

fn parse_series(
    map: &ReadMap,
    parsed: &mut ParsedFile,
    offset: usize,
    len: usize,
    archive: bool,
    flags: u16,
) -> Option<()> {
    let body = map.bytes(offset + 8, offset + len);
    let mut r = format::Reader::new(body);
    r.pos = 8;
    let (family, n_cells) = r.two_u32()?;
    // Inside the record (the body holds 16 bytes); it changes after publication (removed).
    let state = map.word(offset + 8);
    let def = parsed.defs.get(&family)?;
    let values = (0..def.labels.len())
        .map(|_| r.string().map(str::to_owned))
        .collect::<Option<Vec<_>>>()?;
    r.align();
    let n_cells = n_cells as usize;
    if n_cells != def.cells() {
        return None;
    }
    let start = offset + 8 + r.pos;
    let end = start + n_cells * 8;
    if end > offset + len {
        return None;
    }
    if state & STATE_REMOVED != 0 {
        return Some(());
    }
    let mut cells = vec![0u64; n_cells];
    if def.kind == Kind::Summary {
        for (i, cell) in cells.iter_mut().enumerate().take(3) {
            *cell = map.word(start + i * 8);
        }
        let bins = format::slot_bins(def.max_bins);
        for slot in 0..def.age_buckets as usize {
            let first = 3 + slot * (SLOT_HEADER + bins);
            copy_slot(
                map,
                start + first * 8,
                bins,
                &mut cells[first..first + SLOT_HEADER + bins],
            );
        }
    } else {
        for (i, cell) in cells.iter_mut().enumerate() {
            *cell = map.word(start + i * 8);
        }
    }
    let partials = if archive && flags & SERIES_PARTIALS != 0 {
        let mut r = format::Reader::new(map.bytes(end, offset + len));
        let n = r.u64()? as usize;
        if n > len / 8 {
            return None;
        }
        Some((0..n).map(|_| r.f64()).collect::<Option<Vec<_>>>()?)
    } else {
        None
    };
    parsed.series.push(FileSeries {
        family,
        values,
        cells,
        partials,
    });
    Some(())
}

/// One summary age slot, merged over processes.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    pub count: u64,
    pub zero: u64,
    pub min: f64,
    pub max: f64,
    pub bins: BTreeMap<i32, u64>,
}

/// A series aggregated over files.
#[derive(Debug, Clone, Default)]
pub struct AggSeries {
    /// Earliest creation time (0 when unknown).
    pub created: f64,
    /// Exact partials of the summed value (counter value, gauge sum, histogram/summary sum).
    pub partials: Vec<f64>,
    /// Histogram bucket counts (non-cumulative).
    pub buckets: Vec<u64>,
    /// Summary observation count.
    pub count: u64,
    /// Gauge (value, set time) of the max/min/latest modes.
    pub gauge: Option<(f64, f64)>,
    /// Summary age slots in the window, by epoch + 1.
    pub slots: BTreeMap<u64, Slot>,
}

impl AggSeries {
    /// The summed value, correctly rounded.
    #[must_use]
    pub fn sum(&self) -> f64 {
        round_partials(&self.partials)
    }

    /// The gauge value by `mode`.
    #[must_use]
    pub fn gauge_value(&self, mode: GaugeMode) -> f64 {
        match mode {
            GaugeMode::Sum | GaugeMode::LiveSum => self.sum(),
            _ => self.gauge.map_or(0.0, |(v, _)| v),
        }
    }
}

/// A family aggregated over files.
#[derive(Debug, Clone)]
pub struct AggFamily {
    pub def: FamilyDef,
    pub series: BTreeMap<Vec<String>, AggSeries>,
}

/// Every family of a directory, by exposed name, at time `now`.
#[derive(Debug, Default)]
pub struct Aggregate {
    pub families: BTreeMap<String, AggFamily>,
    pub now: f64,
}

fn earliest(current: f64, created: f64) -> f64 {
    if created > 0.0 && (current == 0.0 || created < current) {
        created
    } else {
        current
    }
}

fn window_epoch(def: &FamilyDef, now: f64) -> u64 {
    let width = def.max_age / f64::from(def.age_buckets);
    (now / width).floor().max(0.0) as u64
}

impl Aggregate {
    #[must_use]
    pub fn new(now: f64) -> Self {
        Self {
            families: BTreeMap::new(),
            now,
        }
    }

    /// Adds a file's series (live-only gauges only from a live file).
    pub fn add_file(&mut self, file: &ParsedFile, counters: &MultiprocessCounters) {
        for series in &file.series {
            let Some(def) = file.defs.get(&series.family) else {
                continue;
            };
            let family = self
                .families
                .entry(def.name.clone())
                .or_insert_with(|| AggFamily {
                    def: def.clone(),
                    series: BTreeMap::new(),
                });
            if !family.def.same_shape(def) {
                counters.skipped_records.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if def.kind == Kind::Gauge && family.def.mode.live_only() && !file.live {
                continue;
            }
            let now = self.now;
            let target = family.series.entry(series.values.clone()).or_default();
            let cells = &series.cells;
            let created = format::created_index(def.kind, cells.len());
            target.created = earliest(target.created, f64::from_bits(cells[created]));
            let sum_cell = match def.kind {
                Kind::Counter | Kind::Gauge => 0,
                Kind::Histogram => def.bounds.len() + 1,
                Kind::Summary => 1,
            };
            let add_sum = |target: &mut AggSeries| match &series.partials {
                Some(partials) => {
                    for p in partials {
                        add_partial(&mut target.partials, *p);
                    }
                }
                None => add_partial(&mut target.partials, f64::from_bits(cells[sum_cell])),
            };
            match def.kind {
                Kind::Counter => add_sum(target),
                Kind::Gauge => {
                    let mode = family.def.mode;
                    if matches!(mode, GaugeMode::Sum | GaugeMode::LiveSum) {
                        add_sum(target);
                    } else {
                        combine_gauge(
                            target,
                            mode,
                            f64::from_bits(cells[0]),
                            f64::from_bits(cells[1]),
                        );
                    }
                }
                Kind::Histogram => {
                    let n = def.bounds.len() + 1;
                    target.buckets.resize(n, 0);
                    for (total, c) in target.buckets.iter_mut().zip(&cells[..n]) {
                        *total = total.saturating_add(*c);
                    }
                    add_sum(target);
                }
                Kind::Summary => {
                    target.count = target.count.saturating_add(cells[0]);
                    add_sum(target);
                    if def.relative_accuracy.to_bits() != family.def.relative_accuracy.to_bits() {
                        counters.unmerged_sketches.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    merge_slots(target, def, cells, now);
                }
            }
        }
    }

    /// The archive file of this aggregate, listing `absorbed` writer files.
    #[must_use]
    pub fn archive_bytes(&self, absorbed: &[String]) -> Vec<u8> {
        let mut out = vec![0u8; HEADER];
        let put = |out: &mut Vec<u8>, offset: usize, value: u64| {
            out[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
        };
        put(&mut out, 0, MAGIC);
        put(&mut out, OFF_CREATED, self.now.to_bits());
        put(&mut out, OFF_FLAGS, FLAG_ARCHIVE);
        for (id, family) in self.families.values().enumerate() {
            let mut def = family.def.clone();
            def.id = id as u32;
            out.extend_from_slice(&format::family_record(&def));
            for (values, series) in &family.series {
                out.extend_from_slice(&archive_series(&def, values, series));
            }
        }
        let mut w = format::Writer::default();
        w.bytes
            .extend_from_slice(&(absorbed.len() as u32).to_ne_bytes());
        for name in absorbed {
            w.string(name);
        }
        out.extend_from_slice(&w.record(REC_ABSORBED, 0));
        let used = out.len() as u64;
        put(&mut out, OFF_USED, used);
        out
    }
}

fn combine_gauge(target: &mut AggSeries, mode: GaugeMode, value: f64, stamp: f64) {
    if stamp <= 0.0 {
        return; // never set in that process
    }
    let replace = match target.gauge {
        None => true,
        Some((current, current_stamp)) => match mode {
            GaugeMode::Max | GaugeMode::LiveMax => {
                value > current || (current.is_nan() && !value.is_nan())
            }
            GaugeMode::Min | GaugeMode::LiveMin => {
                value < current || (current.is_nan() && !value.is_nan())
            }
            _ => stamp > current_stamp,
        },
    };
    if replace {
        target.gauge = Some((value, stamp));
    }
}

fn merge_slots(target: &mut AggSeries, def: &FamilyDef, cells: &[u64], now: f64) {
    let bins = format::slot_bins(def.max_bins);
    let current = window_epoch(def, now);
    let buckets = u64::from(def.age_buckets);
    for slot in 0..def.age_buckets as usize {
        let first = 3 + slot * (SLOT_HEADER + bins);
        let words = &cells[first..first + SLOT_HEADER + bins];
        let tag = words[1];
        let count = words[2];
        if tag == 0 || count == 0 {
            continue;
        }
        let epoch = tag - 1;
        if epoch > current || epoch + buckets <= current {
            continue;
        }
        let merged = target.slots.entry(tag).or_default();
        let (min, max) = (f64::from_bits(words[4]), f64::from_bits(words[5]));
        if merged.count == 0 {
            merged.min = min;
            merged.max = max;
        } else {
            merged.min = merged.min.min(min);
            merged.max = merged.max.max(max);
        }
        merged.count += count;
        merged.zero += words[3];
        let n = (words[6] as usize).min(bins);
        for word in &words[SLOT_HEADER..SLOT_HEADER + n] {
            *merged.bins.entry(format::bin_key(*word)).or_insert(0) +=
                u64::from(format::bin_count(*word));
        }
    }
}

/// Folds the lowest bins into the next until at most `cap` remain.
pub fn collapse(bins: &mut BTreeMap<i32, u64>, cap: usize) {
    while bins.len() > cap.max(1) {
        let Some((_, lowest)) = bins.pop_first() else {
            return;
        };
        if let Some(mut next) = bins.first_entry() {
            *next.get_mut() += lowest;
        }
    }
}

fn archive_series(def: &FamilyDef, values: &[String], series: &AggSeries) -> Vec<u8> {
    let n_cells = def.cells();
    let refs: Vec<&str> = values.iter().map(String::as_str).collect();
    let (head, total) = format::series_head(def.id, &refs, n_cells);
    let mut cells = vec![0u64; n_cells];
    let created = format::created_index(def.kind, n_cells);
    cells[created] = series.created.to_bits();
    let mut partials = true;
    match def.kind {
        Kind::Counter => cells[0] = series.sum().to_bits(),
        Kind::Gauge => {
            if matches!(def.mode, GaugeMode::Sum | GaugeMode::LiveSum) {
                cells[0] = series.sum().to_bits();
            } else {
                partials = false;
                if let Some((value, stamp)) = series.gauge {
                    cells[0] = value.to_bits();
                    cells[1] = stamp.to_bits();
                }
            }
        }
        Kind::Histogram => {
            for (cell, count) in cells.iter_mut().zip(&series.buckets) {
                *cell = *count;
            }
            cells[def.bounds.len() + 1] = series.sum().to_bits();
        }
        Kind::Summary => {
            cells[0] = series.count;
            cells[1] = series.sum().to_bits();
            let bins = format::slot_bins(def.max_bins);
            for (tag, slot) in &series.slots {
                let index = ((tag - 1) % u64::from(def.age_buckets)) as usize;
                let first = 3 + index * (SLOT_HEADER + bins);
                let mut merged = slot.bins.clone();
                collapse(&mut merged, bins);
                let words = &mut cells[first..first + SLOT_HEADER + bins];
                words[1] = *tag;
                words[2] = slot.count;
                words[3] = slot.zero;
                words[4] = slot.min.to_bits();
                words[5] = slot.max.to_bits();
                words[6] = merged.len() as u64;
                for (word, (key, count)) in words[SLOT_HEADER..].iter_mut().zip(merged) {
                    *word = format::bin_word(key, count.min(u64::from(u32::MAX)) as u32);
                }
            }
        }
    }
    let mut record = head;
    record.resize(total, 0);
    let start = total - n_cells * 8;
    for (i, cell) in cells.iter().enumerate() {
        record[start + i * 8..start + i * 8 + 8].copy_from_slice(&cell.to_ne_bytes());
    }
    if partials {
        record.extend_from_slice(&(series.partials.len() as u64).to_ne_bytes());
        for p in &series.partials {
            record.extend_from_slice(&p.to_bits().to_ne_bytes());
        }
        let len = record.len() as u32;
        record[..4].copy_from_slice(&len.to_ne_bytes());
        record[6..8].copy_from_slice(&SERIES_PARTIALS.to_ne_bytes());
    }
    record
}

fn dir_error(dir: &Path, what: &str, error: &std::io::Error) -> Error {
    Error::new(
        ErrorKind::Multiprocess,
        dir.display().to_string(),
        format!("{what}: {error}"),
    )
}

fn open_lock(dir: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(dir.join(LOCK))
        .map_err(|e| dir_error(dir, "cannot open the directory lock", &e))
}

fn is_writer_file(name: &str) -> bool {
    name.starts_with("w-") && name.ends_with(".db")
}

/// Writer files of `dir`, sorted by name.
fn writer_files(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| dir_error(dir, "cannot list the multiprocess directory", &e))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_writer_file(name))
        .collect();
    names.sort();
    Ok(names)
}

/// Maps and parses an open file.
fn map_and_parse(file: &File, counters: &MultiprocessCounters) -> Option<ParsedFile> {
    let len = file.metadata().ok()?.len() as usize;
    map_and_parse_sized(file, len, counters)
}

/// Maps and parses a file of `len` bytes when last looked at. A writer that grew its file since
/// may have published records beyond that: the file is then mapped again at its new size (a
/// file whose length exceeds its size for good is unreadable).
fn map_and_parse_sized(
    file: &File,
    mut len: usize,
    counters: &MultiprocessCounters,
) -> Option<ParsedFile> {
    for attempt in 0..3 {
        let map = ReadMap::map(file, len)?;
        if attempt < 2 && map.word(OFF_USED) as usize > map.len {
            let now = file.metadata().map_or(0, |m| m.len() as usize);
            if now > map.len {
                len = now;
                continue;
            }
        }
        return parse(&map, counters);
    }
    None
}

/// Opens and parses one file; `None` (counted) when it cannot be read.
fn read_file(path: &Path, counters: &MultiprocessCounters) -> Option<(File, ParsedFile)> {
    let file = File::open(path).ok()?;
    let parsed = map_and_parse(&file, counters);
    match parsed {
        Some(parsed) => Some((file, parsed)),
        None => {
            counters.skipped_files.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn read_archive(dir: &Path, counters: &MultiprocessCounters) -> Option<ParsedFile> {
    let path = dir.join(ARCHIVE);
    if !path.exists() {
        return None;
    }
    read_file(&path, counters).map(|(_, mut parsed)| {
        parsed.name = ARCHIVE.to_owned();
        parsed
    })
}

/// Newest writer files first (their help text wins), then by name; the archive last.
fn sort_files(files: &mut [ParsedFile]) {
    files.sort_by(|a, b| {
        b.created
            .total_cmp(&a.created)
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// Aggregates every file of `dir` at time `now` (under the shared directory lock).
pub fn scan(dir: &Path, now: f64, counters: &MultiprocessCounters) -> Result<Aggregate> {
    let lock = open_lock(dir)?;
    let _ = lock_shared(&lock);
    let result = scan_locked(dir, now, counters);
    unlock(&lock);
    result
}

fn scan_locked(dir: &Path, now: f64, counters: &MultiprocessCounters) -> Result<Aggregate> {
    let archive = read_archive(dir, counters);
    let absorbed: HashSet<&str> = archive
        .as_ref()
        .map(|a| a.absorbed.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let mut files = Vec::new();
    for name in writer_files(dir)? {
        if absorbed.contains(name.as_str()) {
            continue;
        }
        let path = dir.join(&name);
        if let Some((file, mut parsed)) = read_file(&path, counters) {
            parsed.live = !writer_is_dead(&file);
            parsed.name = name;
            files.push(parsed);
        }
    }
    sort_files(&mut files);
    let mut aggregate = Aggregate::new(now);
    for file in &files {
        aggregate.add_file(file, counters);
    }
    if let Some(archive) = &archive {
        aggregate.add_file(archive, counters);
    }
    Ok(aggregate)
}

/// Absorbs dead writers' files into the archive; returns how many. Returns 0 at once when
/// another process holds the directory lock (a later scrape compacts).
pub fn compact(dir: &Path, now: f64, counters: &MultiprocessCounters) -> Result<usize> {
    let lock = open_lock(dir)?;
    if !try_lock_exclusive(&lock) {
        return Ok(0);
    }
    let result = compact_locked(dir, now, counters);
    unlock(&lock);
    result
}

fn remove_stale_temporaries(dir: &Path, counters: &MultiprocessCounters) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| dir_error(dir, "cannot list the multiprocess directory", &e))?;
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let stale = if name.starts_with(".archive-") && name.ends_with(".tmp") {
            true // we hold the exclusive lock: no compaction is writing it
        } else if name.starts_with(".w-") && name.ends_with(".tmp") {
            File::open(entry.path()).is_ok_and(|f| writer_is_dead(&f))
        } else {
            false
        };
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            counters.repairs.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

fn quarantine(dir: &Path, name: &str) {
    let _ = std::fs::rename(dir.join(name), dir.join(format!("corrupt-{name}")));
}

fn compact_locked(dir: &Path, now: f64, counters: &MultiprocessCounters) -> Result<usize> {
    remove_stale_temporaries(dir, counters)?;
    let archive_path = dir.join(ARCHIVE);
    let archive = if archive_path.exists() {
        match read_file(&archive_path, counters) {
            Some((_, parsed)) => Some(parsed),
            None => {
                // An unreadable archive cannot be merged: keep it aside (counted) and start anew.
                quarantine(dir, ARCHIVE);
                None
            }
        }
    } else {
        None
    };
    let absorbed: HashSet<String> = archive
        .as_ref()
        .map(|a| a.absorbed.iter().cloned().collect())
        .unwrap_or_default();
    for name in &absorbed {
        // Absorbed by a compaction that died before deleting them.
        if std::fs::remove_file(dir.join(name)).is_ok() {
            counters.repairs.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut dead: Vec<(File, ParsedFile)> = Vec::new();
    for name in writer_files(dir)? {
        if absorbed.contains(&name) {
            continue;
        }
        let path = dir.join(&name);
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if !try_lock_exclusive(&file) {
            continue; // live, or being checked by a scrape right now
        }
        let parsed = map_and_parse(&file, counters);
        match parsed {
            Some(mut parsed) => {
                parsed.name = name;
                dead.push((file, parsed));
            }
            None => {
                counters.skipped_files.fetch_add(1, Ordering::Relaxed);
                quarantine(dir, &name);
            }
        }
    }
    if dead.is_empty() {
        return Ok(0);
    }
    let mut files: Vec<ParsedFile> = dead.into_iter().map(|(_, parsed)| parsed).collect();
    sort_files(&mut files);
    let mut aggregate = Aggregate::new(now);
    for file in &files {
        aggregate.add_file(file, counters);
    }
    if let Some(archive) = &archive {
        aggregate.add_file(archive, counters);
    }
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let bytes = aggregate.archive_bytes(&names);
    let tmp = dir.join(format!(
        ".archive-{}-{:016x}.tmp",
        std::process::id(),
        nonce()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &archive_path)?;
        File::open(dir)?.sync_all()
    };
    if let Err(error) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(dir_error(dir, "cannot write the archive", &error));
    }
    for name in &names {
        let _ = std::fs::remove_file(dir.join(name));
    }
    counters.compactions.fetch_add(1, Ordering::Relaxed);
    counters
        .compacted_files
        .fetch_add(names.len() as u64, Ordering::Relaxed);
    Ok(names.len())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::metrics::multiprocess::GaugeMode;
    use crate::metrics::multiprocess::format::FIRST_CHUNK;
    use crate::metrics::multiprocess::slab::Slab;

    #[test]
    fn a_file_that_grew_after_it_was_sized_is_mapped_again() {
        let dir = std::env::temp_dir().join(format!(
            "truthound-grown-{}-{:016x}",
            std::process::id(),
            nonce()
        ));
        let counters = Arc::new(MultiprocessCounters::default());
        let slab = Slab::create(&dir, Arc::clone(&counters)).expect("a writer file");
        let mut def = FamilyDef {
            id: 0,
            kind: Kind::Counter,
            mode: GaugeMode::Sum,
            name: "jobs_total".to_owned(),
            help: String::new(),
            labels: vec!["kind".to_owned()],
            bounds: Vec::new(),
            quantiles: Vec::new(),
            age_buckets: 0,
            max_age: 0.0,
            relative_accuracy: 0.0,
            max_bins: 0,
        };
        slab.define(&mut def, true);
        // 2,000 series of 48 bytes: the file grows past its first chunk.
        let cells: Vec<_> = (0..2000)
            .map(|i| {
                let (cells, _) = slab
                    .series(def.id, &[&i.to_string()], def.cells(), 1, 1.0)
                    .expect("a series");
                cells.store_f64(0, 1.0);
                cells
            })
            .collect();
        let file = File::open(slab.path()).expect("the writer file");
        assert!(file.metadata().expect("its size").len() as usize > FIRST_CHUNK);
        // Sized before the growth: mapped again, every series read.
        let parsed = map_and_parse_sized(&file, FIRST_CHUNK, &counters).expect("readable");
        assert_eq!(parsed.series.len(), cells.len());
        assert!(
            parsed
                .series
                .iter()
                .all(|s| f64::from_bits(s.cells[0]) == 1.0)
        );
        drop(cells);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
