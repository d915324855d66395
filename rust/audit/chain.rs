//! Tamper evidence: a keyed hash chain over every record of a log, and signed checkpoints.
//!
//! Format (identical on both cores; see the README's "Tamper-evident audit trail"):
//! - Every line of a chained log is a *link*. A link is the unchained record with
//!   `,"seq":N` appended inside its JSON object (the body), followed by `,"mac":"<64 hex>"}`.
//!   `mac = HMAC-SHA256(key, prev_mac || body)`, where `body` is every byte of the line before
//!   `,"mac":"` (the readable prefix of a text line included) and `prev_mac` is the raw 32-byte
//!   MAC of link `N-1` (32 zero bytes for link 0). `seq` counts links from 0 across every segment
//!   and every writer of the log, without gaps.
//! - Checkpoints are links whose object starts with `"_type":"checkpoint"`: the reason (`start`,
//!   `open`, `periodic`, `rotate`, `retention`, `close`, `recover`), the UTC time, the writer, the
//!   key id, the checkpoint interval, the number of links of the segment and its digest (the MAC of
//!   its last link, which commits to every byte of it and of everything before it), and the MAC of
//!   the previous checkpoint. Every segment starts with a checkpoint (`start` for the first one,
//!   `rotate` afterwards, describing the segment that ended).
//! - The chain head (next `seq`, last MAC, last checkpoint, current segment) is kept in the log's
//!   lock file ([`ChainState`]), read and written under the exclusive lock, so threads and
//!   processes extend one chain. It is a cache: when it disagrees with the log (a writer was killed
//!   between its write and its state update, or the file was replaced), the head is recovered from
//!   the log itself and a `recover` checkpoint records it. The head is followed by its own MAC
//!   ([`ChainKey::head_mac`]), so `verify` can tell a log whose tail was cut back to an earlier
//!   clean close from a complete one (unless the lock file was replayed from that time too).

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::audit::encode::{write_escaped, write_str};
use crate::audit::time::write_timestamp;
use crate::error::{Error, ErrorKind, Result};

type HmacSha256 = Hmac<Sha256>;

/// Shortest key accepted (bytes).
pub const MIN_KEY_LEN: usize = 16;
/// Length of `,"mac":"` + 64 hex digits + `"}`.
pub const MAC_SUFFIX_LEN: usize = 8 + 64 + 2;
const HEX: &[u8; 16] = b"0123456789abcdef";
const STATE_MAGIC: &[u8; 8] = b"TACHAIN1";
/// Size of the encoded [`ChainState`].
pub const STATE_LEN: usize = 128;

/// A MAC key, with its HMAC state prepared once.
#[derive(Clone)]
pub struct ChainKey {
    mac: HmacSha256,
    id: String,
}

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainKey({})", self.id)
    }
}

impl ChainKey {
    /// Rejects keys shorter than [`MIN_KEY_LEN`] bytes (naming `source`, never the key).
    pub fn new(key: &[u8], source: &str) -> Result<Self> {
        if key.len() < MIN_KEY_LEN {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                source,
                format!("an audit integrity key needs at least {MIN_KEY_LEN} bytes"),
            ));
        }
        let mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        let mut probe = mac.clone();
        probe.update(b"truthound-audit key id");
        let digest = probe.finalize().into_bytes();
        let id = hex(&digest[..8]);
        Ok(Self { mac, id })
    }

    /// A public identifier of the key (16 hex digits); it reveals nothing usable about the key.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The MAC stored after the encoded [`ChainState`] in the lock file, so `verify` can use the
    /// writers' head as a witness of how far the log went (it cannot be forged, only replayed).
    #[must_use]
    pub fn head_mac(&self, state: &[u8; STATE_LEN]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(b"truthound-audit head");
        mac.update(state);
        mac.finalize().into_bytes().into()
    }

    /// `HMAC(key, prev || body)`.
    #[must_use]
    pub fn link_mac(&self, prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(prev);
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

/// Lower-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0xf) as usize] as char);
    }
    out
}

fn unhex(text: &[u8]) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// The chain head as stored in the lock file (little-endian, [`STATE_LEN`] bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainState {
    pub next_seq: u64,
    pub head: [u8; 32],
    /// MAC of the last checkpoint (zeros before the first).
    pub last_checkpoint: [u8; 32],
    pub last_checkpoint_us: i64,
    /// Identity (device, inode) and size of the segment the head was written to.
    pub segment: (u64, u64),
    pub segment_end: u64,
    /// Links in that segment.
    pub segment_records: u64,
    /// The first 8 bytes of the key id, so a state written with another key is ignored.
    pub key_tag: [u8; 8],
}

impl ChainState {
    #[must_use]
    pub fn encode(&self) -> [u8; STATE_LEN] {
        let mut out = [0u8; STATE_LEN];
        out[..8].copy_from_slice(STATE_MAGIC);
        out[8..16].copy_from_slice(&self.next_seq.to_le_bytes());
        out[16..48].copy_from_slice(&self.head);
        out[48..80].copy_from_slice(&self.last_checkpoint);
        out[80..88].copy_from_slice(&self.last_checkpoint_us.to_le_bytes());
        out[88..96].copy_from_slice(&self.segment.0.to_le_bytes());
        out[96..104].copy_from_slice(&self.segment.1.to_le_bytes());
        out[104..112].copy_from_slice(&self.segment_end.to_le_bytes());
        out[112..120].copy_from_slice(&self.segment_records.to_le_bytes());
        out[120..128].copy_from_slice(&self.key_tag);
        out
    }

    /// `None` unless `bytes` is a state written with the key tagged `key_tag`.
    #[must_use]
    pub fn decode(bytes: &[u8], key_tag: &[u8; 8]) -> Option<Self> {
        if bytes.len() < STATE_LEN || &bytes[..8] != STATE_MAGIC || &bytes[120..128] != key_tag {
            return None;
        }
        let u = |r: std::ops::Range<usize>| u64::from_le_bytes(bytes[r].try_into().expect("8"));
        Some(Self {
            next_seq: u(8..16),
            head: bytes[16..48].try_into().expect("32"),
            last_checkpoint: bytes[48..80].try_into().expect("32"),
            last_checkpoint_us: u(80..88).cast_signed(),
            segment: (u(88..96), u(96..104)),
            segment_end: u(104..112),
            segment_records: u(112..120),
            key_tag: *key_tag,
        })
    }
}

/// The 8-byte tag of a key id stored in [`ChainState`].
#[must_use]
pub fn key_tag(key: &ChainKey) -> [u8; 8] {
    key.id().as_bytes()[..8].try_into().expect("16 hex digits")
}

/// Appends the link of one unchained record line (`line` without its `\n`; it must end with
/// `}`) and returns its MAC.
pub fn seal_line(
    out: &mut Vec<u8>,
    line: &[u8],
    seq: u64,
    prev: &[u8; 32],
    key: &ChainKey,
) -> [u8; 32] {
    let start = out.len();
    out.extend_from_slice(&line[..line.len() - 1]);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
    let mac = key.link_mac(prev, &out[start..]);
    out.extend_from_slice(b",\"mac\":\"");
    for b in mac {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xf) as usize]);
    }
    out.extend_from_slice(b"\"}\n");
    mac
}

/// What a checkpoint states (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct Checkpoint<'a> {
    pub reason: &'a str,
    pub time_us: i64,
    pub writer: &'a str,
    pub interval_ms: u64,
    pub segment_records: u64,
    /// MAC of the segment's last link (`None`: the segment has none yet).
    pub segment_digest: Option<[u8; 32]>,
    /// MAC of the previous checkpoint (`None` for the first).
    pub prev_checkpoint: Option<[u8; 32]>,
    /// `retention` only: the segments removed and the first `seq` still on disk.
    pub pruned: Vec<String>,
    pub retained_first_seq: Option<u64>,
    /// `recover` / `open` only: links the chain head said existed but the log did not have.
    pub missing: u64,
}

/// Appends a checkpoint link; returns its MAC.
pub fn write_checkpoint(
    out: &mut Vec<u8>,
    cp: &Checkpoint<'_>,
    text_format: bool,
    key: &ChainKey,
    seq: u64,
    prev: &[u8; 32],
) -> [u8; 32] {
    let mut line = Vec::with_capacity(512);
    if text_format {
        write_timestamp(&mut line, cp.time_us);
        line.extend_from_slice(b" [CHECKPOINT] [");
        write_escaped(&mut line, cp.reason);
        line.extend_from_slice(b"]\t");
    }
    line.extend_from_slice(b"{\"_type\":\"checkpoint\",\"reason\":");
    write_str(&mut line, cp.reason);
    line.extend_from_slice(b",\"time\":\"");
    write_timestamp(&mut line, cp.time_us);
    line.extend_from_slice(b"\",\"writer\":");
    write_str(&mut line, cp.writer);
    let mut text = String::new();
    let _ = write!(
        text,
        ",\"key_id\":\"{}\",\"interval_ms\":{},\"segment_records\":{},\"segment_digest\":\"{}\",\"prev_checkpoint\":\"{}\"",
        key.id(),
        cp.interval_ms,
        cp.segment_records,
        cp.segment_digest.map(|d| hex(&d)).unwrap_or_default(),
        cp.prev_checkpoint.map(|d| hex(&d)).unwrap_or_default(),
    );
    line.extend_from_slice(text.as_bytes());
    if cp.reason == "retention" {
        line.extend_from_slice(b",\"pruned\":[");
        for (i, name) in cp.pruned.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            write_str(&mut line, name);
        }
        line.extend_from_slice(b"],\"retained_first_seq\":");
        line.extend_from_slice(
            itoa::Buffer::new()
                .format(cp.retained_first_seq.unwrap_or(seq))
                .as_bytes(),
        );
    }
    if cp.missing > 0 {
        line.extend_from_slice(b",\"missing\":");
        line.extend_from_slice(itoa::Buffer::new().format(cp.missing).as_bytes());
    }
    line.push(b'}');
    seal_line(out, &line, seq, prev, key)
}

/// One parsed link: its `seq`, MAC, and whether it is a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub seq: u64,
    pub mac: [u8; 32],
    pub checkpoint: bool,
}

/// Parses a line (with or without its `\n`) as a link; `None` for anything else.
#[must_use]
pub fn parse_link(line: &[u8]) -> Option<Link> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    if line.len() < MAC_SUFFIX_LEN + 8 || !line.ends_with(b"\"}") {
        return None;
    }
    let cut = line.len() - MAC_SUFFIX_LEN;
    let suffix = &line[cut..];
    if !suffix.starts_with(b",\"mac\":\"") {
        return None;
    }
    let mac = unhex(&suffix[8..72])?;
    let body = &line[..cut];
    let digits_start = body.iter().rposition(|c| !c.is_ascii_digit())? + 1;
    if !body[..digits_start].ends_with(b",\"seq\":") || digits_start == body.len() {
        return None;
    }
    let seq = std::str::from_utf8(&body[digits_start..])
        .ok()?
        .parse()
        .ok()?;
    let json = match body.iter().position(|c| *c == b'\t') {
        Some(tab) if !body.starts_with(b"{") => &body[tab + 1..],
        _ => body,
    };
    let checkpoint = json.starts_with(b"{\"_type\":\"checkpoint\"");
    Some(Link {
        seq,
        mac,
        checkpoint,
    })
}

/// The chain facts of one segment, from reading it whole.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SegmentScan {
    pub first: Option<Link>,
    pub last: Option<Link>,
    pub last_checkpoint: Option<Link>,
    pub links: u64,
}

/// Reads every line of a segment (plain or gzip).
pub fn scan_segment(reader: impl Read) -> std::io::Result<SegmentScan> {
    let mut scan = SegmentScan::default();
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if let Some(link) = parse_link(&line) {
            if scan.first.is_none() {
                scan.first = Some(link);
            }
            if link.checkpoint {
                scan.last_checkpoint = Some(link);
            }
            scan.last = Some(link);
            scan.links += 1;
        }
    }
    Ok(scan)
}

/// The first link of a segment (reads only until it is found).
pub fn first_link(reader: impl Read) -> std::io::Result<Option<Link>> {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if let Some(link) = parse_link(&line) {
            return Ok(Some(link));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ChainKey {
        ChainKey::new(b"0123456789abcdef-test-key", "test").unwrap()
    }

    #[test]
    fn rejects_short_keys_by_source() {
        let err = ChainKey::new(b"short", "env TRUTHOUND_AUDIT_KEY").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidArgument);
        assert!(err.item.contains("TRUTHOUND_AUDIT_KEY"));
    }

    #[test]
    fn seals_and_parses_links() {
        let key = key();
        let mut out = Vec::new();
        let prev = [0u8; 32];
        let mac = seal_line(&mut out, b"{\"event_id\":\"a\"}", 7, &prev, &key);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("{\"event_id\":\"a\",\"seq\":7,\"mac\":\""));
        assert!(text.ends_with("\"}\n"));
        let link = parse_link(&out).unwrap();
        assert_eq!(link.seq, 7);
        assert_eq!(link.mac, mac);
        assert!(!link.checkpoint);
        // The MAC covers prev || body.
        let body = &out[..out.len() - 1 - MAC_SUFFIX_LEN];
        assert_eq!(key.link_mac(&prev, body), mac);
        assert_ne!(key.link_mac(&mac, body), mac);
    }

    #[test]
    fn checkpoints_are_links() {
        let key = key();
        let mut out = Vec::new();
        let cp = Checkpoint {
            reason: "retention",
            writer: "w",
            pruned: vec!["a.jsonl.gz".into()],
            retained_first_seq: Some(3),
            ..Checkpoint::default()
        };
        write_checkpoint(&mut out, &cp, true, &key, 9, &[1u8; 32]);
        let link = parse_link(&out).unwrap();
        assert!(link.checkpoint);
        assert_eq!(link.seq, 9);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("[CHECKPOINT] [retention]\t{\"_type\":\"checkpoint\""));
        assert!(text.contains("\"pruned\":[\"a.jsonl.gz\"],\"retained_first_seq\":3,\"seq\":9"));
    }

    #[test]
    fn state_round_trips_and_ignores_other_keys() {
        let key = key();
        let state = ChainState {
            next_seq: 42,
            head: [3; 32],
            last_checkpoint: [4; 32],
            last_checkpoint_us: -5,
            segment: (1, 2),
            segment_end: 99,
            segment_records: 7,
            key_tag: key_tag(&key),
        };
        let bytes = state.encode();
        assert_eq!(ChainState::decode(&bytes, &key_tag(&key)), Some(state));
        assert_eq!(ChainState::decode(&bytes, b"ffffffff"), None);
        assert_eq!(ChainState::decode(&[0u8; 10], &key_tag(&key)), None);
    }

    #[test]
    fn scans_segments() {
        let key = key();
        let mut out = b"garbage\n".to_vec();
        let mut prev = [0u8; 32];
        for seq in 0..3 {
            prev = seal_line(&mut out, b"{\"x\":1}", seq, &prev, &key);
        }
        let scan = scan_segment(&out[..]).unwrap();
        assert_eq!(scan.links, 3);
        assert_eq!(scan.first.unwrap().seq, 0);
        assert_eq!(scan.last.unwrap().mac, prev);
        assert_eq!(first_link(&out[..]).unwrap().unwrap().seq, 0);
    }
}
