//! Strict W3C Trace Context `traceparent` parsing and formatting.
//!
//! Rules (W3C Trace Context, level 1, section 3.2): lowercase hex only; a two-digit version other
//! than `ff`; a 32-digit trace id and a 16-digit span id, neither all zeros; two flag digits.
//! Version `00` is exactly 55 characters. A higher version is parsed forward-compatibly: its first
//! 55 characters follow the `00` layout and anything beyond must start with `-`.
//! Optional whitespace (space, tab) around the header value is tolerated, as HTTP allows.

use crate::error::{Error, ErrorKind, Result};

/// The fields of a valid `traceparent`, borrowing the ids from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent<'a> {
    pub version: u8,
    pub trace_id: &'a str,
    pub span_id: &'a str,
    pub flags: u8,
}

const VERSION_00_LEN: usize = 55;

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn is_valid_id(bytes: &[u8]) -> bool {
    is_lower_hex(bytes) && bytes.iter().any(|&b| b != b'0')
}

fn hex_byte(pair: &[u8]) -> u8 {
    let nibble = |b: u8| if b <= b'9' { b - b'0' } else { b - b'a' + 10 };
    (nibble(pair[0]) << 4) | nibble(pair[1])
}

/// Parses a `traceparent` header value; `None` means "invalid: start a new trace".
#[must_use]
pub fn parse_traceparent(header: &str) -> Option<TraceParent<'_>> {
    let header = header.trim_matches(|c| c == ' ' || c == '\t');
    let bytes = header.as_bytes();
    if bytes.len() < VERSION_00_LEN {
        return None;
    }
    let (version, trace_id, span_id, flags) =
        (&bytes[0..2], &bytes[3..35], &bytes[36..52], &bytes[53..55]);
    if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    if !is_lower_hex(version) || version == b"ff" || !is_lower_hex(flags) {
        return None;
    }
    if !is_valid_id(trace_id) || !is_valid_id(span_id) {
        return None;
    }
    let version = hex_byte(version);
    if version == 0 && bytes.len() != VERSION_00_LEN {
        return None;
    }
    if bytes.len() > VERSION_00_LEN && bytes[VERSION_00_LEN] != b'-' {
        return None;
    }
    Some(TraceParent {
        version,
        // The slices are ASCII (checked above), so these are valid char boundaries.
        trace_id: &header[3..35],
        span_id: &header[36..52],
        flags: hex_byte(flags),
    })
}

/// Whether `id` is a valid W3C trace id: 32 lowercase hex digits, not all zeros.
#[must_use]
pub fn is_valid_trace_id(id: &str) -> bool {
    id.len() == 32 && is_valid_id(id.as_bytes())
}

/// Whether `id` is a valid W3C span (parent) id: 16 lowercase hex digits, not all zeros.
#[must_use]
pub fn is_valid_span_id(id: &str) -> bool {
    id.len() == 16 && is_valid_id(id.as_bytes())
}

/// Formats a version-00 `traceparent` header; an invalid id is rejected (never sent).
pub fn format_traceparent(trace_id: &str, span_id: &str, flags: u8) -> Result<String> {
    if !is_valid_trace_id(trace_id) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            super::printable(trace_id),
            "traceparent trace-id must be 32 lowercase hex digits, not all zeros",
        ));
    }
    if !is_valid_span_id(span_id) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            super::printable(span_id),
            "traceparent parent-id (span id) must be 16 lowercase hex digits, not all zeros",
        ));
    }
    Ok(format!("00-{trace_id}-{span_id}-{flags:02x}"))
}

#[cfg(test)]
mod tests {
    use super::{TraceParent, format_traceparent, parse_traceparent};

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn parses_a_valid_header() {
        let header = format!("00-{TRACE}-{SPAN}-01");
        assert_eq!(
            parse_traceparent(&header),
            Some(TraceParent {
                version: 0,
                trace_id: TRACE,
                span_id: SPAN,
                flags: 1
            })
        );
    }

    #[test]
    fn rejects_invalid_headers() {
        let invalid = [
            format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
            format!("00-{}-{SPAN}-01", "0".repeat(32)),
            format!("00-{TRACE}-{}-01", "0".repeat(16)),
            format!("ff-{TRACE}-{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}-01-extra"),
            format!("00-{TRACE}-{SPAN}-1"),
            format!("01-{TRACE}-{SPAN}-01x"),
            format!("0g-{TRACE}-{SPAN}-01"),
            "00-abc123def456-span789-01".to_owned(),
            String::new(),
        ];
        for header in &invalid {
            assert_eq!(parse_traceparent(header), None, "accepted {header:?}");
        }
    }

    #[test]
    fn parses_future_versions_forward_compatibly() {
        let header = format!("cc-{TRACE}-{SPAN}-09-what-the-future-holds");
        let parsed = parse_traceparent(&header).expect("future version is valid");
        assert_eq!((parsed.version, parsed.flags), (0xcc, 9));
        assert!(parse_traceparent(&format!("cc-{TRACE}-{SPAN}-09")).is_some());
    }

    #[test]
    fn tolerates_surrounding_whitespace_and_round_trips() {
        let header = format_traceparent(TRACE, SPAN, 1).unwrap();
        assert_eq!(header, format!("00-{TRACE}-{SPAN}-01"));
        assert!(parse_traceparent(&format!(" \t{header}\t ")).is_some());
    }

    #[test]
    fn refuses_to_format_invalid_ids_and_names_them() {
        assert_eq!(
            format_traceparent("abc123def456", SPAN, 1)
                .unwrap_err()
                .item,
            "abc123def456"
        );
        assert_eq!(
            format_traceparent(TRACE, "span789", 1).unwrap_err().item,
            "span789"
        );
        assert!(format_traceparent(TRACE, &"0".repeat(16), 1).is_err());
    }
}
