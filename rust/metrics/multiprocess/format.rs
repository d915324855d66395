//! The binary layout of writer and archive files (native-endian; every field 8-byte aligned).
//!
//! ```text
//! header (64 bytes): magic u64 | used u64 | pid u64 | created f64 | flags u64 | reserved
//! record:            len u32 | type u16 | flags u16, then the body, padded to 8 bytes
//! FAMILY  body: id u32 | kind u8 | mode u8 | 0 u16; n_labels u32 | n_bounds u32;
//!               n_quantiles u32 | age_buckets u32; max_age f64; relative_accuracy f64;
//!               max_bins u64; bounds f64*; quantiles f64*; name, help, label names (u32 len +
//!               UTF-8 each), padding
//! SERIES  body: state u64 (bit 0: removed by reset()); family id u32 | n_cells u32;
//!               label values (u32 len + UTF-8 each), padding; cells u64*;
//!               archive only (record flag 1): n u64, then n f64 exact partials of the sum cell
//! ABSORBED body: n u32, names (u32 len + UTF-8 each), padding (archive only)
//! PAD     body: nothing (fills the end of a mapped chunk)
//! ```
//!
//! Cells per series: counter `[value, created]`; gauge `[value, set_time, created]`; histogram
//! `[bucket counts (non-cumulative, +Inf last)..., sum, created]`; summary `[count, sum,
//! created, age slots...]`, each slot `[seq, epoch + 1, count, zero count, min, max, n_bins,
//! bins...]` with a bin `key i32 << 32 | count u32` (sorted by key). The writer bumps `seq` to
//! odd before changing a slot and to even after, so a reader copies a consistent slot.

use crate::metrics::names::Kind;

pub const MAGIC: u64 = 0x3170_6d6f_7374_6e74; // "tntsomp1" in little-endian byte order
pub const HEADER: usize = 64;
pub const OFF_USED: usize = 8;
pub const OFF_PID: usize = 16;
pub const OFF_CREATED: usize = 24;
pub const OFF_FLAGS: usize = 32;
pub const FLAG_ARCHIVE: u64 = 1;

pub const REC_PAD: u16 = 0;
pub const REC_FAMILY: u16 = 1;
pub const REC_SERIES: u16 = 2;
pub const REC_ABSORBED: u16 = 3;
/// SERIES record flag: exact partials of the sum cell follow the cells (archive).
pub const SERIES_PARTIALS: u16 = 1;
/// SERIES state bit: removed by `reset()`; readers skip it.
pub const STATE_REMOVED: u64 = 1;

/// Size of the first mapped chunk of a writer file; each next chunk doubles, up to
/// [`MAX_CHUNK`] (a record larger than that gets a chunk of its own size).
pub const FIRST_CHUNK: usize = 64 * 1024;
pub const MAX_CHUNK: usize = 16 * 1024 * 1024;
/// Bins kept per summary age slot and process (about 4.4 decades of values at 1% accuracy;
/// beyond, the lowest bins fold into the next, as the single-process sketch does).
pub const SLOT_BINS: usize = 512;
pub const SLOT_HEADER: usize = 7;

#[must_use]
pub fn kind_code(kind: Kind) -> u8 {
    match kind {
        Kind::Counter => 0,
        Kind::Gauge => 1,
        Kind::Histogram => 2,
        Kind::Summary => 3,
    }
}

#[must_use]
pub fn kind_from_code(code: u8) -> Option<Kind> {
    match code {
        0 => Some(Kind::Counter),
        1 => Some(Kind::Gauge),
        2 => Some(Kind::Histogram),
        3 => Some(Kind::Summary),
        _ => None,
    }
}

/// Bins per summary slot for a sketch of `max_bins`.
#[must_use]
pub fn slot_bins(max_bins: u64) -> usize {
    (max_bins as usize).clamp(1, SLOT_BINS)
}

/// Cells of one series in a file.
#[must_use]
pub fn cell_count(kind: Kind, n_bounds: usize, age_buckets: usize, max_bins: u64) -> usize {
    match kind {
        Kind::Counter => 2,
        Kind::Gauge => 3,
        Kind::Histogram => n_bounds + 3,
        Kind::Summary => 3 + age_buckets * (SLOT_HEADER + slot_bins(max_bins)),
    }
}

/// Index of the `created` cell.
#[must_use]
pub fn created_index(kind: Kind, n_cells: usize) -> usize {
    match kind {
        Kind::Counter => 1,
        Kind::Gauge | Kind::Summary => 2,
        Kind::Histogram => n_cells - 1,
    }
}

/// A metric as a file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyDef {
    pub id: u32,
    pub kind: Kind,
    pub mode: super::GaugeMode,
    pub name: String,
    pub help: String,
    pub labels: Vec<String>,
    pub bounds: Vec<f64>,
    pub quantiles: Vec<f64>,
    pub age_buckets: u32,
    pub max_age: f64,
    pub relative_accuracy: f64,
    pub max_bins: u64,
}

impl FamilyDef {
    #[must_use]
    pub fn cells(&self) -> usize {
        cell_count(
            self.kind,
            self.bounds.len(),
            self.age_buckets as usize,
            self.max_bins,
        )
    }

    /// Whether `other` describes the same metric shape (help and gauge mode aside).
    #[must_use]
    pub fn same_shape(&self, other: &FamilyDef) -> bool {
        self.kind == other.kind
            && self.labels == other.labels
            && self.bounds == other.bounds
            && self.quantiles == other.quantiles
    }
}

/// Appends native-endian words and length-prefixed strings into a record body.
#[derive(Debug, Default)]
pub struct Writer {
    pub bytes: Vec<u8>,
}

impl Writer {
    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_ne_bytes());
    }
    pub fn f64(&mut self, value: f64) {
        self.u64(value.to_bits());
    }
    pub fn two_u32(&mut self, a: u32, b: u32) {
        self.bytes.extend_from_slice(&a.to_ne_bytes());
        self.bytes.extend_from_slice(&b.to_ne_bytes());
    }
    pub fn string(&mut self, text: &str) {
        self.bytes
            .extend_from_slice(&(text.len() as u32).to_ne_bytes());
        self.bytes.extend_from_slice(text.as_bytes());
    }
    pub fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(8) {
            self.bytes.push(0);
        }
    }
    /// A whole record: header word, then this body (padded).
    #[must_use]
    pub fn record(mut self, kind: u16, flags: u16) -> Vec<u8> {
        self.pad();
        let len = 8 + self.bytes.len();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&(len as u32).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }
}

/// The FAMILY record of `def`.
#[must_use]
pub fn family_record(def: &FamilyDef) -> Vec<u8> {
    let mut w = Writer::default();
    w.two_u32(
        def.id,
        u32::from(kind_code(def.kind)) | (u32::from(def.mode.code()) << 8),
    );
    w.two_u32(def.labels.len() as u32, def.bounds.len() as u32);
    w.two_u32(def.quantiles.len() as u32, def.age_buckets);
    w.f64(def.max_age);
    w.f64(def.relative_accuracy);
    w.u64(def.max_bins);
    for b in &def.bounds {
        w.f64(*b);
    }
    for q in &def.quantiles {
        w.f64(*q);
    }
    w.string(&def.name);
    w.string(&def.help);
    for label in &def.labels {
        w.string(label);
    }
    w.record(REC_FAMILY, 0)
}

/// The head of a SERIES record (through the padding before the cells) and its total length.
#[must_use]
pub fn series_head(family: u32, values: &[&str], n_cells: usize) -> (Vec<u8>, usize) {
    let mut w = Writer::default();
    w.u64(0);
    w.two_u32(family, n_cells as u32);
    for v in values {
        w.string(v);
    }
    w.pad();
    let head_len = 8 + w.bytes.len();
    let total = head_len + n_cells * 8;
    let mut out = Vec::with_capacity(head_len);
    out.extend_from_slice(&(total as u32).to_ne_bytes());
    out.extend_from_slice(&REC_SERIES.to_ne_bytes());
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&w.bytes);
    (out, total)
}

/// Reads native-endian fields from a byte slice, failing (`None`) past its end.
pub struct Reader<'a> {
    pub bytes: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }
    pub fn u64(&mut self) -> Option<u64> {
        let slice = self.bytes.get(self.pos..self.pos + 8)?;
        self.pos += 8;
        Some(u64::from_ne_bytes(slice.try_into().ok()?))
    }
    pub fn f64(&mut self) -> Option<f64> {
        self.u64().map(f64::from_bits)
    }
    pub fn two_u32(&mut self) -> Option<(u32, u32)> {
        let slice = self.bytes.get(self.pos..self.pos + 8)?;
        self.pos += 8;
        Some((
            u32::from_ne_bytes(slice[..4].try_into().ok()?),
            u32::from_ne_bytes(slice[4..].try_into().ok()?),
        ))
    }
    pub fn string(&mut self) -> Option<&'a str> {
        let len = self.bytes.get(self.pos..self.pos + 4)?;
        let len = u32::from_ne_bytes(len.try_into().ok()?) as usize;
        let text = self.bytes.get(self.pos + 4..self.pos + 4 + len)?;
        self.pos += 4 + len;
        std::str::from_utf8(text).ok()
    }
    pub fn align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }
}

/// Parses a FAMILY record body.
#[must_use]
pub fn parse_family(body: &[u8]) -> Option<FamilyDef> {
    let mut r = Reader::new(body);
    let (id, codes) = r.two_u32()?;
    let kind = kind_from_code((codes & 0xff) as u8)?;
    let mode = super::GaugeMode::from_code(((codes >> 8) & 0xff) as u8)?;
    let (n_labels, n_bounds) = r.two_u32()?;
    let (n_quantiles, age_buckets) = r.two_u32()?;
    let max_age = r.f64()?;
    let relative_accuracy = r.f64()?;
    let max_bins = r.u64()?;
    if n_bounds as usize > body.len() / 8 || n_quantiles as usize > body.len() / 8 {
        return None;
    }
    let bounds = (0..n_bounds).map(|_| r.f64()).collect::<Option<Vec<_>>>()?;
    let quantiles = (0..n_quantiles)
        .map(|_| r.f64())
        .collect::<Option<Vec<_>>>()?;
    let name = r.string()?.to_owned();
    let help = r.string()?.to_owned();
    if n_labels as usize > body.len() / 4 {
        return None;
    }
    let labels = (0..n_labels)
        .map(|_| r.string().map(str::to_owned))
        .collect::<Option<Vec<_>>>()?;
    if kind == Kind::Summary && !((1..=1024).contains(&age_buckets) && max_age > 0.0) {
        return None;
    }
    Some(FamilyDef {
        id,
        kind,
        mode,
        name,
        help,
        labels,
        bounds,
        quantiles,
        age_buckets,
        max_age,
        relative_accuracy,
        max_bins,
    })
}

/// A bin word: the key in the high half, the count in the low half.
#[inline]
#[must_use]
pub fn bin_word(key: i32, count: u32) -> u64 {
    (u64::from(key as u32) << 32) | u64::from(count)
}

#[inline]
#[must_use]
pub fn bin_key(word: u64) -> i32 {
    (word >> 32) as u32 as i32
}

#[inline]
#[must_use]
pub fn bin_count(word: u64) -> u32 {
    (word & 0xffff_ffff) as u32
}
