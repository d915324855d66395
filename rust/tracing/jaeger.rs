//! Jaeger's Thrift data model (`jaeger.thrift`: `Batch`, `Process`, `Span`, `Tag`, `Log`,
//! `SpanRef`) encoded with the Thrift binary protocol, as the Jaeger collector accepts it on
//! `POST /api/traces` with `Content-Type: application/x-thrift`.
//!
//! Binary protocol: a struct is a sequence of fields (type byte, big-endian i16 field id, value)
//! closed by a stop byte 0; strings/binary are a big-endian i32 length and the bytes; a list is
//! the element type byte and a big-endian i32 count. Ids are unsigned in OpenTelemetry and signed
//! i64 in Jaeger: the bits are carried unchanged (two's complement).

// Ids are unsigned here and signed i64 in Jaeger's IDL: the bit pattern is carried unchanged,
// which is exactly what the wrapping casts do.
#![allow(clippy::cast_possible_wrap)]

const T_STOP: u8 = 0;
const T_BOOL: u8 = 2;
const T_DOUBLE: u8 = 4;
const T_I32: u8 = 8;
const T_I64: u8 = 10;
const T_STRING: u8 = 11;
const T_STRUCT: u8 = 12;
const T_LIST: u8 = 15;

/// A tag's value; the variant decides Jaeger's `TagType`.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    Str(String),
    Double(f64),
    Bool(bool),
    Long(i64),
    Binary(Vec<u8>),
}

/// `Tag`: a key and a typed value.
#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub key: String,
    pub value: TagValue,
}

/// `Log`: a timestamp (microseconds since the epoch) and fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Log {
    pub timestamp_us: i64,
    pub fields: Vec<Tag>,
}

/// `SpanRef`: `ref_type` 0 is `CHILD_OF`, 1 is `FOLLOWS_FROM`.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRef {
    pub ref_type: i32,
    pub trace_id: u128,
    pub span_id: u64,
}

/// `Span`; `parent_span_id` 0 means a root span; times in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_span_id: u64,
    pub operation_name: String,
    pub references: Vec<SpanRef>,
    pub flags: i32,
    pub start_time_us: i64,
    pub duration_us: i64,
    pub tags: Vec<Tag>,
    pub logs: Vec<Log>,
}

struct Writer(Vec<u8>);

impl Writer {
    fn field(&mut self, kind: u8, id: i16) {
        self.0.push(kind);
        self.0.extend_from_slice(&id.to_be_bytes());
    }
    fn i32(&mut self, value: i32) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
    fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
    fn bytes(&mut self, value: &[u8]) {
        // Thrift lengths are i32; a longer value cannot be represented and is cut.
        let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
        self.i32(len);
        self.0.extend_from_slice(&value[..len as usize]);
    }
    fn list_header(&mut self, kind: u8, len: usize) {
        self.0.push(kind);
        self.i32(i32::try_from(len).unwrap_or(i32::MAX));
    }
    fn stop(&mut self) {
        self.0.push(T_STOP);
    }

    fn tag(&mut self, tag: &Tag) {
        self.field(T_STRING, 1);
        self.bytes(tag.key.as_bytes());
        let (type_code, field_kind, field_id) = match tag.value {
            TagValue::Str(_) => (0, T_STRING, 3),
            TagValue::Double(_) => (1, T_DOUBLE, 4),
            TagValue::Bool(_) => (2, T_BOOL, 5),
            TagValue::Long(_) => (3, T_I64, 6),
            TagValue::Binary(_) => (4, T_STRING, 7),
        };
        self.field(T_I32, 2);
        self.i32(type_code);
        self.field(field_kind, field_id);
        match &tag.value {
            TagValue::Str(s) => self.bytes(s.as_bytes()),
            TagValue::Double(d) => self.0.extend_from_slice(&d.to_bits().to_be_bytes()),
            TagValue::Bool(b) => self.0.push(u8::from(*b)),
            TagValue::Long(l) => self.i64(*l),
            TagValue::Binary(b) => self.bytes(b),
        }
        self.stop();
    }

    fn tags(&mut self, id: i16, tags: &[Tag]) {
        self.field(T_LIST, id);
        self.list_header(T_STRUCT, tags.len());
        for tag in tags {
            self.tag(tag);
        }
    }

    fn span(&mut self, span: &Span) {
        let (low, high) = split_trace_id(span.trace_id);
        self.field(T_I64, 1);
        self.i64(low);
        self.field(T_I64, 2);
        self.i64(high);
        self.field(T_I64, 3);
        self.i64(span.span_id as i64);
        self.field(T_I64, 4);
        self.i64(span.parent_span_id as i64);
        self.field(T_STRING, 5);
        self.bytes(span.operation_name.as_bytes());
        if !span.references.is_empty() {
            self.field(T_LIST, 6);
            self.list_header(T_STRUCT, span.references.len());
            for reference in &span.references {
                let (low, high) = split_trace_id(reference.trace_id);
                self.field(T_I32, 1);
                self.i32(reference.ref_type);
                self.field(T_I64, 2);
                self.i64(low);
                self.field(T_I64, 3);
                self.i64(high);
                self.field(T_I64, 4);
                self.i64(reference.span_id as i64);
                self.stop();
            }
        }
        self.field(T_I32, 7);
        self.i32(span.flags);
        self.field(T_I64, 8);
        self.i64(span.start_time_us);
        self.field(T_I64, 9);
        self.i64(span.duration_us);
        if !span.tags.is_empty() {
            self.tags(10, &span.tags);
        }
        if !span.logs.is_empty() {
            self.field(T_LIST, 11);
            self.list_header(T_STRUCT, span.logs.len());
            for log in &span.logs {
                self.field(T_I64, 1);
                self.i64(log.timestamp_us);
                self.tags(2, &log.fields);
                self.stop();
            }
        }
        self.stop();
    }
}

/// `(traceIdLow, traceIdHigh)` of a 128-bit trace id, as Jaeger's signed i64s.
fn split_trace_id(trace_id: u128) -> (i64, i64) {
    (trace_id as u64 as i64, (trace_id >> 64) as u64 as i64)
}

/// Encodes one `Batch { process: Process { serviceName, tags }, spans }`.
#[must_use]
pub fn encode_batch(service_name: &str, process_tags: &[Tag], spans: &[Span]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(64 + spans.len() * 160));
    w.field(T_STRUCT, 1);
    w.field(T_STRING, 1);
    w.bytes(service_name.as_bytes());
    if !process_tags.is_empty() {
        w.tags(2, process_tags);
    }
    w.stop();
    w.field(T_LIST, 2);
    w.list_header(T_STRUCT, spans.len());
    for span in spans {
        w.span(span);
    }
    w.stop();
    w.0
}

#[cfg(test)]
mod tests {
    use super::{Span, Tag, TagValue, encode_batch};

    #[test]
    fn encodes_an_empty_batch_field_by_field() {
        let bytes = encode_batch("svc", &[], &[]);
        let expected: Vec<u8> = [
            &[12, 0, 1][..],         // field 1: struct Process
            &[11, 0, 1, 0, 0, 0, 3], // serviceName: string, length 3
            b"svc",
            &[0],                        // end of Process
            &[15, 0, 2, 12, 0, 0, 0, 0], // field 2: list<struct>, 0 elements
            &[0],                        // end of Batch
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn ids_keep_their_bits_and_tags_their_types() {
        let span = Span {
            trace_id: u128::MAX,
            span_id: u64::MAX,
            parent_span_id: 0,
            operation_name: "op".into(),
            references: vec![],
            flags: 1,
            start_time_us: 1,
            duration_us: 2,
            tags: vec![Tag {
                key: "k".into(),
                value: TagValue::Bool(true),
            }],
            logs: vec![],
        };
        let bytes = encode_batch("s", &[], &[span]);
        // traceIdLow = -1 as i64: field header then eight 0xff bytes.
        let needle = [10, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(bytes.windows(needle.len()).any(|w| w == needle));
        // Tag: vType BOOL (2), vBool (field 5) true.
        let tag = [8, 0, 2, 0, 0, 0, 2, 2, 0, 5, 1, 0];
        assert!(bytes.windows(tag.len()).any(|w| w == tag));
    }
}
