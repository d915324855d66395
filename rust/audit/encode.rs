//! JSON Lines and human-readable line encodings of a record (byte-identical to the pure core).
//!
//! JSON escaping follows Python's `json.dumps(..., ensure_ascii=False)`: `"` and `\` escaped,
//! `\b \f \n \r \t` short forms, other control characters below U+0020 as `\u00xx` (lower-case
//! hex), everything else written as UTF-8. Floats use Python's `repr()` (shortest round trip).

use crate::audit::event::{EMPTY_DEFAULT_FIELDS, Event, TEXT_FIELDS, Value};
use crate::audit::time::write_timestamp;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends the JSON string body of `s` (without quotes).
pub fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0c => b'f',
            0..=0x1f => 0,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short == 0 {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.push(b'\\');
            out.push(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `s` as a quoted JSON string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// Appends a finite float as Python's `repr()` (and so `json.dumps`) prints it.
pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    let mut text = String::with_capacity(24);
    crate::float::write_float(&mut text, value);
    out.extend_from_slice(text.as_bytes());
}

/// Appends a metadata value as JSON.
pub fn write_value(out: &mut Vec<u8>, value: &Value<'_>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => {
            let mut buf = itoa_buf(*i);
            out.append(&mut buf);
        }
        Value::BigInt(digits) => out.extend_from_slice(digits.as_bytes()),
        Value::Float(f) => write_f64(out, *f),
        Value::Str(s) => write_str(out, s),
        Value::List(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Map(members) => write_map(out, members),
    }
}

fn itoa_buf(i: i64) -> Vec<u8> {
    i.to_string().into_bytes()
}

fn write_map(out: &mut Vec<u8>, members: &[(std::borrow::Cow<'_, str>, Value<'_>)]) {
    out.push(b'{');
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// Appends the JSON object of `event` (no newline).
pub fn write_json_object(out: &mut Vec<u8>, event: &Event<'_>) {
    out.extend_from_slice(b"{\"event_id\":");
    write_str(out, &event.event_id);
    out.extend_from_slice(b",\"event_type\":");
    write_str(out, &event.event_type);
    out.extend_from_slice(b",\"timestamp\":\"");
    write_timestamp(out, event.timestamp_us);
    out.extend_from_slice(b"\",\"status\":");
    write_str(out, &event.status);
    for (i, value) in event.text.iter().enumerate() {
        let Some(value) = value else { continue };
        if i < EMPTY_DEFAULT_FIELDS && value.is_empty() {
            continue;
        }
        out.extend_from_slice(b",\"");
        out.extend_from_slice(TEXT_FIELDS[i].as_bytes());
        out.extend_from_slice(b"\":");
        write_str(out, value);
    }
    if let Some(duration) = event.duration_ms {
        out.extend_from_slice(b",\"duration_ms\":");
        write_f64(out, duration);
    }
    if !event.metadata.is_empty() {
        out.extend_from_slice(b",\"metadata\":");
        write_map(out, &event.metadata);
    }
    out.push(b'}');
}

/// Appends one JSON Lines record (`JsonAuditBackend`).
pub fn write_json_line(out: &mut Vec<u8>, event: &Event<'_>) {
    write_json_object(out, event);
    out.push(b'\n');
}

fn write_prefix_value(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) if !v.is_empty() => write_escaped(out, v),
        _ => out.extend_from_slice(b"N/A"),
    }
}

/// Appends one human-readable record (`FileAuditBackend`): a readable prefix, a tab, and the JSON
/// object. The prefix escapes like JSON (so it never holds a raw tab or newline); readers parse the
/// JSON after the first tab.
pub fn write_text_line(out: &mut Vec<u8>, event: &Event<'_>) {
    let field = |name: &str| {
        let i = crate::audit::event::text_field_index(name).expect("known field");
        event.text[i].as_deref()
    };
    write_timestamp(out, event.timestamp_us);
    out.extend_from_slice(b" [");
    write_escaped(out, &event.event_type.to_ascii_uppercase());
    out.extend_from_slice(b"] [");
    write_escaped(out, &event.status);
    out.extend_from_slice(b"] store=");
    write_prefix_value(out, field("store_type"));
    out.extend_from_slice(b" store_id=");
    write_prefix_value(out, field("store_id"));
    out.extend_from_slice(b" op=");
    write_prefix_value(out, field("operation"));
    out.extend_from_slice(b" resource=");
    write_prefix_value(out, field("item_id"));
    out.extend_from_slice(b" user=");
    write_prefix_value(out, field("user_id"));
    out.extend_from_slice(b" correlation_id=");
    write_prefix_value(out, field("correlation_id"));
    out.extend_from_slice(b" duration_ms=");
    match event.duration_ms {
        Some(d) => out.extend_from_slice(format!("{d:.2}").as_bytes()),
        None => out.extend_from_slice(b"N/A"),
    }
    out.push(b'\t');
    write_json_object(out, event);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn event() -> Event<'static> {
        let mut e = Event::new(Cow::Borrowed("create"), Cow::Borrowed("success"));
        e.event_id = Cow::Borrowed("evt-1");
        e.timestamp_us = 0;
        e
    }

    #[test]
    fn escapes_like_python_json() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\n\t\u{1}\u{7f}é\u{2028}");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\n\\t\\u0001\u{7f}é\u{2028}\""
        );
    }

    #[test]
    fn omits_defaults_and_keeps_field_order() {
        let mut e = event();
        e.text[1] = Some(Cow::Borrowed("bucket"));
        e.text[0] = Some(Cow::Borrowed(""));
        e.text[5] = Some(Cow::Borrowed(""));
        e.duration_ms = Some(45.2);
        e.metadata.push((
            Cow::Borrowed("n"),
            Value::List(vec![Value::Int(-3), Value::Float(1e-5), Value::Null]),
        ));
        let mut out = Vec::new();
        write_json_line(&mut out, &e);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"event_id\":\"evt-1\",\"event_type\":\"create\",\"timestamp\":\"1970-01-01T00:00:00.000000+00:00\",\
             \"status\":\"success\",\"store_id\":\"bucket\",\"user_id\":\"\",\"duration_ms\":45.2,\
             \"metadata\":{\"n\":[-3,1e-05,null]}}\n"
        );
    }

    #[test]
    fn text_line_has_a_readable_prefix_and_the_json_after_a_tab() {
        let mut e = event();
        e.text[4] = Some(Cow::Borrowed("run\t1"));
        e.duration_ms = Some(1.005);
        let mut out = Vec::new();
        write_text_line(&mut out, &e);
        let line = String::from_utf8(out).unwrap();
        let (prefix, json) = line.split_once('\t').unwrap();
        assert_eq!(
            prefix,
            "1970-01-01T00:00:00.000000+00:00 [CREATE] [success] store=N/A store_id=N/A op=N/A \
             resource=run\\t1 user=N/A correlation_id=N/A duration_ms=1.00"
        );
        assert!(json.starts_with("{\"event_id\":\"evt-1\""));
        assert!(json.ends_with("}\n"));
    }

    #[test]
    fn floats_match_python_repr_including_ties() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (45.2, "45.2"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1e15, "1000000000000000.0"),
            (70_368_744_177_664.13, "70368744177664.12"),
            (5.960_464_477_539_063e-8, "5.960464477539063e-08"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (-2.5e-300, "-2.5e-300"),
        ];
        for (value, expected) in cases {
            let mut out = Vec::new();
            write_f64(&mut out, *value);
            assert_eq!(String::from_utf8(out).unwrap(), *expected, "{value:?}");
        }
    }

    #[test]
    fn event_ids_are_uuid4() {
        let id = crate::audit::event::new_event_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
