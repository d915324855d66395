//! Audit pillar: the event record and its JSON Lines encoding, single-pass redaction, rotating
//! append-only file segments, and the bounded queue drained by a native writer thread.
//!
//! Record format (one line per record, UTF-8, `\n`-terminated, identical on both cores):
//! a JSON object whose keys appear in the fixed order of [`event::TEXT_FIELDS`] after
//! `event_id`, `event_type`, `timestamp`, `status`, followed by `duration_ms` and `metadata`; keys
//! whose value equals the field's default are omitted. Forward compatibility (issue "tamper-evident
//! chain"): readers ignore unknown keys, so per-record `seq`/`mac` keys can be appended after
//! `metadata`, and a line whose object has a `"_type"` key is not an event (checkpoints, segment
//! headers) and is skipped by event readers without being reported as damage.

pub mod chain;
pub mod dialect;
pub mod encode;
pub mod event;
pub mod queue;
pub mod redact;
pub mod sink;
pub mod time;
