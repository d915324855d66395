//! The audit record as the native core sees it: borrowed where possible, owned where redacted.

use std::borrow::Cow;

/// The optional text fields of a record, in their fixed on-disk order.
///
/// The first [`EMPTY_DEFAULT_FIELDS`] default to `""` (omitted when empty); the others default to
/// `None` (omitted when absent, written even when empty).
pub const TEXT_FIELDS: [&str; 17] = [
    "store_type",
    "store_id",
    "operation",
    "resource_type",
    "item_id",
    "user_id",
    "session_id",
    "tenant_id",
    "correlation_id",
    "trace_id",
    "span_id",
    "ip_address",
    "user_agent",
    "input_summary",
    "output_summary",
    "error_type",
    "error_message",
];

/// How many leading [`TEXT_FIELDS`] default to the empty string rather than to `None`.
pub const EMPTY_DEFAULT_FIELDS: usize = 4;

/// Index of a text field by name.
#[must_use]
pub fn text_field_index(name: &str) -> Option<usize> {
    TEXT_FIELDS.iter().position(|f| *f == name)
}

/// A JSON-safe metadata value (the result of the documented normalisation of Python values).
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer outside `i64`, already rendered as JSON digits.
    BigInt(String),
    /// Always finite: non-finite floats are normalised to the strings `NaN`/`Infinity`/`-Infinity`.
    Float(f64),
    Str(Cow<'a, str>),
    List(Vec<Value<'a>>),
    /// Object members in insertion order; keys are unique.
    Map(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// One audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
    /// Microseconds since the Unix epoch, UTC.
    pub timestamp_us: i64,
    pub status: Cow<'a, str>,
    pub text: [Option<Cow<'a, str>>; 17],
    /// Finite, or `None` (non-finite durations are not representable in JSON and are omitted).
    pub duration_ms: Option<f64>,
    pub metadata: Vec<(Cow<'a, str>, Value<'a>)>,
}

impl<'a> Event<'a> {
    /// A record with a fresh UUID4 id and the current UTC time.
    #[must_use]
    pub fn new(event_type: Cow<'a, str>, status: Cow<'a, str>) -> Self {
        Self {
            event_id: Cow::Owned(new_event_id()),
            event_type,
            timestamp_us: crate::audit::time::now_micros(),
            status,
            text: Default::default(),
            duration_ms: None,
            metadata: Vec::new(),
        }
    }
}

/// A random (version 4) UUID in its hyphenated lower-case form.
#[must_use]
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// Inserts or replaces a map member the way Python's `dict[key] = value` does: a repeated key
/// keeps its first position and takes the new value.
pub fn map_set<'a>(map: &mut Vec<(Cow<'a, str>, Value<'a>)>, key: Cow<'a, str>, value: Value<'a>) {
    if let Some(slot) = map.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = value;
    } else {
        map.push((key, value));
    }
}
