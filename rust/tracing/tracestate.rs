//! Strict W3C Trace Context `tracestate` parsing and formatting.
//!
//! Rules (W3C Trace Context, level 1, section 3.3): a comma-separated list of at most 32
//! `key=value` members, optional whitespace (space, tab) around each comma, empty members ignored.
//! A key is a simple key (`lcalpha` then up to 255 of `lcalpha digit _ - * /`) or a multi-tenant
//! key `tenant@system` (tenant: `lcalpha`/digit then up to 240 more; system: `lcalpha` then up to
//! 13 more). A value is 1 to 256 printable ASCII characters other than `,` and `=`, not ending in
//! a space. A key may appear once. Several `tracestate` headers are combined by joining them with
//! `,` before parsing. Any violation invalidates the whole header (the caller then propagates
//! none of it, which the recommendation allows).

use crate::error::{Error, ErrorKind, Result};

/// Most members a `tracestate` may carry.
pub const MAX_MEMBERS: usize = 32;

fn is_key_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'*' | b'/')
}

/// Whether `key` is a valid `tracestate` key.
#[must_use]
pub fn is_valid_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    match bytes.iter().position(|&b| b == b'@') {
        None => {
            !bytes.is_empty()
                && bytes.len() <= 256
                && bytes[0].is_ascii_lowercase()
                && bytes[1..].iter().all(|&b| is_key_char(b))
        }
        Some(at) => {
            let (tenant, system) = (&bytes[..at], &bytes[at + 1..]);
            !tenant.is_empty()
                && tenant.len() <= 241
                && (tenant[0].is_ascii_lowercase() || tenant[0].is_ascii_digit())
                && tenant[1..].iter().all(|&b| is_key_char(b))
                && !system.is_empty()
                && system.len() <= 14
                && system[0].is_ascii_lowercase()
                && system[1..].iter().all(|&b| is_key_char(b))
        }
    }
}

/// Whether `value` is a valid `tracestate` value.
#[must_use]
pub fn is_valid_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 256
        && bytes[bytes.len() - 1] != b' '
        && bytes
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

/// Parses a `tracestate` header value into its members, leftmost (most recent) first.
///
/// `None` means the header is invalid and must be discarded as a whole.
#[must_use]
pub fn parse_tracestate(header: &str) -> Option<Vec<(&str, &str)>> {
    let mut members: Vec<(&str, &str)> = Vec::new();
    for raw in header.split(',') {
        let member = raw.trim_matches(|c| c == ' ' || c == '\t');
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        if !is_valid_key(key) || !is_valid_value(value) {
            return None;
        }
        if members.len() == MAX_MEMBERS || members.iter().any(|(k, _)| *k == key) {
            return None;
        }
        members.push((key, value));
    }
    Some(members)
}

/// Formats members as a `tracestate` header value, rejecting anything the parser would reject.
pub fn format_tracestate<K: AsRef<str>, V: AsRef<str>>(members: &[(K, V)]) -> Result<String> {
    if members.len() > MAX_MEMBERS {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "tracestate",
            format!(
                "{} members; at most {MAX_MEMBERS} are allowed",
                members.len()
            ),
        ));
    }
    let mut out = String::with_capacity(members.len() * 24);
    for (index, (key, value)) in members.iter().enumerate() {
        let (key, value) = (key.as_ref(), value.as_ref());
        if !is_valid_key(key) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                super::printable(key),
                "invalid tracestate key: lowercase letter first, then lowercase letters, digits, \
                 '_', '-', '*', '/' (or tenant@system), at most 256 characters",
            ));
        }
        if !is_valid_value(value) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                super::printable(&format!("{key}={value}")),
                "invalid tracestate value: 1 to 256 printable ASCII characters, no ',' or '=', \
                 not ending in a space",
            ));
        }
        if members[..index].iter().any(|(k, _)| k.as_ref() == key) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                super::printable(key),
                "duplicate tracestate key",
            ));
        }
        if index > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push('=');
        out.push_str(value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{format_tracestate, is_valid_key, parse_tracestate};

    #[test]
    fn parses_members_in_order_with_whitespace_and_empty_members() {
        assert_eq!(
            parse_tracestate("rojo=00f067aa0ba902b7 ,\t, congo=t61rcWkgMzE"),
            Some(vec![("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")])
        );
        assert_eq!(parse_tracestate(""), Some(vec![]));
    }

    #[test]
    fn rejects_invalid_members() {
        for header in [
            "Rojo=1",
            "rojo",
            "rojo=",
            "rojo=a,rojo=b",
            "rojo=a\u{7f}b",
            "rojo=\u{e9}",
            "rojo=a=b",
            "1abc=x",
            "tenant@=x",
            "@sys=x",
            "t@sys1234567890123=x",
        ] {
            assert_eq!(parse_tracestate(header), None, "accepted {header:?}");
        }
        let many = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(parse_tracestate(&many), None);
    }

    #[test]
    fn multi_tenant_keys() {
        assert!(is_valid_key("1tenant@vendor"));
        assert!(is_valid_key(&format!(
            "{}@{}",
            "t".repeat(241),
            "s".repeat(14)
        )));
        assert!(!is_valid_key(&format!("{}@s", "t".repeat(242))));
        assert!(!is_valid_key("a@b@c"));
    }

    #[test]
    fn formats_and_names_the_offending_key() {
        assert_eq!(
            format_tracestate(&[("a", "1"), ("b@c", "x y")]).unwrap(),
            "a=1,b@c=x y"
        );
        let error = format_tracestate(&[("Bad", "1")]).unwrap_err();
        assert_eq!(error.item, "Bad");
        assert!(format_tracestate(&[("a", "1"), ("a", "2")]).is_err());
    }
}
