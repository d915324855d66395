//! The multiprocess mode: every process keeps its values in a memory-mapped file of a shared
//! directory, and a scrape from any process aggregates them.
//!
//! Directory layout (one directory is one logical set of metrics):
//! - `w-<pid>-<nonce>.db`: one file per live or dead writer (a registry of one process). Its
//!   owner holds an exclusive `flock` on it for its whole life, so a file whose lock can be
//!   taken belongs to a dead process. It is created under a hidden temporary name, locked, then
//!   renamed, so no scraper ever sees an unlocked live file.
//! - `archive.db`: the compacted values of dead writers, replaced atomically (write to a hidden
//!   temporary file, fsync, rename, fsync the directory). It lists the writer files it absorbed,
//!   so a compaction that died after the rename but before deleting them is never counted twice.
//! - `.lock`: scrapes hold a shared `flock` on it while they read, a compaction an exclusive one
//!   (taken without waiting: a busy directory is compacted by a later scrape), so a scrape never
//!   sees a dead writer both in the archive and in its own file, nor in neither.
//!
//! File format (native-endian, every field 8-byte aligned; [`format`]): a 64-byte header whose
//! `used` word is published with release ordering after each appended record, then records.
//! A `FAMILY` record describes a metric (exposed name, type, help, label names, buckets,
//! quantiles, gauge mode, summary sketch parameters); a `SERIES` record holds one label set and
//! its cells, which writers update in place with atomic operations (the same cells the
//! single-process core uses, see [`super::cells`]). The pure-Python core reads and writes the
//! same format.

// Allowed here, each for a reason: exact float comparisons are the point of `fsum`; the
// reader indexes slot words by position (a copy of the file layout); file names are ours
// (lower-case, fixed); pointers into mappings are 8-byte aligned by the format (checked when
// parsing); `match` on parse results reads better than nested `if let` in the record loop.
#![allow(
    clippy::float_cmp,
    clippy::needless_range_loop,
    clippy::case_sensitive_file_extension_comparisons,
    clippy::cast_ptr_alignment,
    clippy::single_match_else,
    clippy::assigning_clones,
    clippy::cast_possible_wrap
)]

pub mod format;
pub mod fsum;
pub mod read;
pub mod slab;

use crate::error::{Error, ErrorKind, Result};

/// How a gauge's values from several processes combine into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaugeMode {
    /// The sum over every process, dead ones included (their last value).
    Sum,
    Max,
    Min,
    /// The most recently set value.
    Latest,
    /// The sum over live processes only (the default: a dead worker's gauge disappears).
    LiveSum,
    LiveMax,
    LiveMin,
    LiveLatest,
}

impl GaugeMode {
    pub const ALL: [GaugeMode; 8] = [
        GaugeMode::Sum,
        GaugeMode::Max,
        GaugeMode::Min,
        GaugeMode::Latest,
        GaugeMode::LiveSum,
        GaugeMode::LiveMax,
        GaugeMode::LiveMin,
        GaugeMode::LiveLatest,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            GaugeMode::Sum => "sum",
            GaugeMode::Max => "max",
            GaugeMode::Min => "min",
            GaugeMode::Latest => "latest",
            GaugeMode::LiveSum => "livesum",
            GaugeMode::LiveMax => "livemax",
            GaugeMode::LiveMin => "livemin",
            GaugeMode::LiveLatest => "livelatest",
        }
    }

    /// Parses a mode name (prometheus_client's `mostrecent`/`livemostrecent` are accepted).
    pub fn parse(name: &str) -> Result<Self> {
        let name = match name {
            "mostrecent" => "latest",
            "livemostrecent" => "livelatest",
            other => other,
        };
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    name,
                    "multiprocess_mode must be one of sum, max, min, latest, livesum, livemax, \
                     livemin, livelatest",
                )
            })
    }

    #[must_use]
    pub fn code(self) -> u8 {
        Self::ALL.iter().position(|m| *m == self).unwrap_or(0) as u8
    }

    #[must_use]
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Whether dead processes' values are ignored.
    #[must_use]
    pub fn live_only(self) -> bool {
        matches!(
            self,
            GaugeMode::LiveSum | GaugeMode::LiveMax | GaugeMode::LiveMin | GaugeMode::LiveLatest
        )
    }
}

/// Losses and repairs of the multiprocess mode, counted per registry (public, read-only).
#[derive(Debug, Default)]
pub struct MultiprocessCounters {
    /// Files that could not be read (bad header, unreadable, truncated) and were skipped; a dead
    /// writer's unreadable file is also renamed `corrupt-*` so it is not read again.
    pub skipped_files: std::sync::atomic::AtomicU64,
    /// Records skipped: malformed, or a metric defined differently by another process
    /// (another type, label names, buckets or quantiles than the first definition).
    pub skipped_records: std::sync::atomic::AtomicU64,
    /// Series kept in process memory because the shared file could not grow (or a forked
    /// child could not get a file of its own): their values are missing from every scrape.
    pub unshared_series: std::sync::atomic::AtomicU64,
    /// Summary sketches whose mapping (relative accuracy) differs from the first definition's:
    /// their count and sum are aggregated, their quantiles are not merged.
    pub unmerged_sketches: std::sync::atomic::AtomicU64,
    /// Compactions this process performed.
    pub compactions: std::sync::atomic::AtomicU64,
    /// Dead writers' files this process absorbed into the archive.
    pub compacted_files: std::sync::atomic::AtomicU64,
    /// Leftovers of interrupted operations cleaned up: temporary files of a creation or a
    /// compaction that died, files an interrupted compaction had absorbed but not deleted.
    pub repairs: std::sync::atomic::AtomicU64,
}

/// Seconds since the Unix epoch.
#[must_use]
pub fn wall_clock() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Random 64 bits for unique file names.
#[must_use]
pub fn nonce() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return (wall_clock().to_bits()) ^ u64::from(std::process::id());
    }
    u64::from_ne_bytes(bytes)
}
