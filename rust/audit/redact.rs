//! Single-pass redaction: every pattern compiled once into one linear-time automaton.
//!
//! Semantics (identical on the pure core): the patterns form one alternation
//! `(?:p1)|(?:p2)|...`, and every leftmost-first, non-overlapping match in a string is replaced by
//! the replacement text, in one pass. A dict key whose lower-cased text contains (or, with
//! `exact_fields`, equals) a lower-cased sensitive field name has its whole value replaced, whatever
//! its type; keys themselves are pattern-redacted too. Patterns outside the dialect both cores
//! read alike (see [`crate::audit::dialect`]: no look-around, backreferences, possessive or nested
//! repetition, engine-specific escapes...) and patterns that can match the empty string are
//! rejected with an error naming the pattern, with the same message on both cores.

use std::borrow::Cow;
use std::collections::HashSet;

use regex::Regex;

use crate::audit::event::{Event, Value};
use crate::error::{Error, ErrorKind, Result};

/// A compiled redaction policy. Immutable and shareable across threads.
#[derive(Debug, Clone)]
pub struct Redactor {
    regex: Option<Regex>,
    replacement: String,
    /// Lower-cased sensitive field names.
    fields: Vec<String>,
    exact_fields: bool,
}

fn check_pattern(pattern: &str) -> Result<()> {
    let rejected = |reason: String| {
        Error::new(
            ErrorKind::InvalidArgument,
            pattern,
            format!("redaction pattern rejected: {reason}"),
        )
    };
    // The dialect both cores read alike (see `dialect`), then the engine itself.
    crate::audit::dialect::check(pattern).map_err(rejected)?;
    let hir = regex_syntax::Parser::new().parse(pattern).map_err(|e| {
        rejected(match &e {
            regex_syntax::Error::Parse(p) => p.kind().to_string(),
            regex_syntax::Error::Translate(t) => t.kind().to_string(),
            other => other.to_string(),
        })
    })?;
    if hir.properties().minimum_len() == Some(0) {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            pattern,
            "redaction pattern can match the empty string",
        ));
    }
    Ok(())
}

impl Redactor {
    /// Compiles `patterns` into one automaton; errors name the first rejected pattern.
    pub fn new(
        patterns: &[String],
        replacement: &str,
        fields: &[String],
        exact_fields: bool,
    ) -> Result<Self> {
        for pattern in patterns {
            check_pattern(pattern)?;
        }
        let regex = if patterns.is_empty() {
            None
        } else {
            let joined = patterns
                .iter()
                .map(|p| format!("(?:{p})"))
                .collect::<Vec<_>>()
                .join("|");
            let regex = regex::RegexBuilder::new(&joined)
                .size_limit(64 << 20)
                .build()
                .map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidArgument,
                        patterns.join(" | "),
                        format!("redaction patterns cannot be combined: {e}"),
                    )
                })?;
            Some(regex)
        };
        Ok(Self {
            regex,
            replacement: replacement.to_owned(),
            fields: fields.iter().map(|f| f.to_lowercase()).collect(),
            exact_fields,
        })
    }

    /// The redacted form of `text`, or `None` when no pattern matches.
    #[must_use]
    pub fn redact_text(&self, text: &str) -> Option<String> {
        let regex = self.regex.as_ref()?;
        let mut matches = regex.find_iter(text).peekable();
        matches.peek()?;
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for m in matches {
            out.push_str(&text[last..m.start()]);
            out.push_str(&self.replacement);
            last = m.end();
        }
        out.push_str(&text[last..]);
        Some(out)
    }

    /// Redacts a string in place (allocates only when something matched).
    pub fn redact_cow(&self, text: &mut Cow<'_, str>) {
        if let Some(redacted) = self.redact_text(text) {
            *text = Cow::Owned(redacted);
        }
    }

    /// Whether a dict key (or event field name) names sensitive data.
    #[must_use]
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        if self.fields.is_empty() {
            return false;
        }
        let lowered: Cow<'_, str> = if key.bytes().any(|b| b.is_ascii_uppercase() || b >= 0x80) {
            Cow::Owned(key.to_lowercase())
        } else {
            Cow::Borrowed(key)
        };
        if self.exact_fields {
            self.fields.iter().any(|f| *f == *lowered)
        } else {
            self.fields.iter().any(|f| lowered.contains(f.as_str()))
        }
    }

    /// The replacement text.
    #[must_use]
    pub fn replacement(&self) -> &str {
        &self.replacement
    }

    /// Redacts a value tree in place.
    pub fn redact_value(&self, value: &mut Value<'_>) {
        match value {
            Value::Str(s) => self.redact_cow(s),
            Value::List(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Map(members) => self.redact_map(members),
            _ => {}
        }
    }

    /// Redacts an object's members in place: sensitive keys lose their whole value, keys are
    /// pattern-redacted, and a key that collides with an earlier member once redacted (two
    /// e-mail addresses both becoming `[REDACTED]`) is kept as `<key>#2`, `#3`...: no value is
    /// lost to the redaction.
    pub fn redact_map<'a>(&self, members: &mut Vec<(Cow<'a, str>, Value<'a>)>) {
        let taken = std::mem::take(members);
        let mut out: Vec<(Cow<'a, str>, Value<'a>)> = Vec::with_capacity(taken.len());
        // The keys so far, from the first redacted key on (before it, keys cannot collide).
        let mut seen: Option<HashSet<String>> = None;
        for (key, mut value) in taken {
            if self.is_sensitive_key(&key) {
                value = Value::Str(Cow::Owned(self.replacement.clone()));
            } else {
                self.redact_value(&mut value);
            }
            let redacted = self.redact_text(&key);
            let key = match redacted {
                Some(text) => {
                    let seen = seen.get_or_insert_with(|| {
                        out.iter().map(|(k, _)| k.clone().into_owned()).collect()
                    });
                    Cow::Owned(unique_key(seen, text))
                }
                None => match seen.as_mut() {
                    Some(seen) if seen.contains(key.as_ref()) => {
                        Cow::Owned(unique_key(seen, key.into_owned()))
                    }
                    Some(seen) => {
                        seen.insert(key.clone().into_owned());
                        key
                    }
                    None => key,
                },
            };
            out.push((key, value));
        }
        *members = out;
    }

    /// Redacts every string of a record: ids, text fields, metadata at any depth. Text fields whose
    /// name is a sensitive field are replaced whole. `event_type`, `status` and the timestamp are
    /// not free text and are left alone.
    pub fn redact_event(&self, event: &mut Event<'_>) {
        self.redact_cow(&mut event.event_id);
        for (i, slot) in event.text.iter_mut().enumerate() {
            if let Some(text) = slot {
                if self.is_sensitive_key(crate::audit::event::TEXT_FIELDS[i]) && !text.is_empty() {
                    *text = Cow::Owned(self.replacement.clone());
                } else {
                    self.redact_cow(text);
                }
            }
        }
        self.redact_map(&mut event.metadata);
    }
}

/// `key`, or the first of `key#2`, `key#3`... not in `seen`; recorded in `seen`.
fn unique_key(seen: &mut HashSet<String>, key: String) -> String {
    if !seen.contains(&key) {
        seen.insert(key.clone());
        return key;
    }
    let mut n = 2u64;
    loop {
        let candidate = format!("{key}#{n}");
        if !seen.contains(&candidate) {
            seen.insert(candidate.clone());
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(patterns: &[&str], fields: &[&str]) -> Redactor {
        let patterns: Vec<String> = patterns.iter().map(|s| (*s).to_owned()).collect();
        let fields: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
        Redactor::new(&patterns, "[REDACTED]", &fields, false).unwrap()
    }

    #[test]
    fn one_pass_over_all_patterns() {
        let r = redactor(&[r"\b\d{3}-\d{2}-\d{4}\b", r"[a-z]+@[a-z]+\.com"], &[]);
        assert_eq!(
            r.redact_text("ssn 123-45-6789 mail a@b.com").as_deref(),
            Some("ssn [REDACTED] mail [REDACTED]")
        );
        assert_eq!(r.redact_text("nothing here"), None);
    }

    #[test]
    fn rejects_what_the_engine_cannot_express_naming_the_pattern() {
        for bad in [r"foo(?=bar)", r"(?<!x)y", r"(a)\1", r"a*", r"(unclosed"] {
            let err = Redactor::new(&[bad.to_owned()], "x", &[], false).unwrap_err();
            assert_eq!(err.item, bad);
        }
    }

    #[test]
    fn sensitive_keys_are_case_insensitive_substrings_unless_exact() {
        let r = redactor(&[], &["Password"]);
        assert!(r.is_sensitive_key("DB_PASSWORD_2"));
        assert!(!r.is_sensitive_key("user"));
        let exact = Redactor::new(&[], "x", &["password".to_owned()], true).unwrap();
        assert!(exact.is_sensitive_key("PassWord"));
        assert!(!exact.is_sensitive_key("password2"));
    }

    #[test]
    fn redacts_keys_values_and_nested_structures() {
        let r = redactor(&[r"secret\d"], &["token"]);
        let mut members = vec![
            (Cow::Borrowed("secret1"), Value::Int(1)),
            (
                Cow::Borrowed("k"),
                Value::List(vec![Value::Str(Cow::Borrowed("x secret2"))]),
            ),
            (
                Cow::Borrowed("api_token"),
                Value::Map(vec![(Cow::Borrowed("a"), Value::Int(1))]),
            ),
            (Cow::Borrowed("secret3"), Value::Int(3)),
        ];
        r.redact_map(&mut members);
        // Keys made equal by redaction keep both values: the later one as `[REDACTED]#2`.
        assert_eq!(
            members,
            vec![
                (Cow::Borrowed("[REDACTED]"), Value::Int(1)),
                (
                    Cow::Borrowed("k"),
                    Value::List(vec![Value::Str(Cow::Borrowed("x [REDACTED]"))])
                ),
                (
                    Cow::Borrowed("api_token"),
                    Value::Str(Cow::Borrowed("[REDACTED]"))
                ),
                (Cow::Borrowed("[REDACTED]#2"), Value::Int(3)),
            ]
        );
    }

    #[test]
    fn pathological_input_is_linear() {
        // (a+)+$ is catastrophic for backtracking engines; here it is one linear scan.
        let r = redactor(&[r"(a+)+b"], &[]);
        let text = "a".repeat(100_000);
        assert_eq!(r.redact_text(&text), None);
    }
}
