//! The redaction pattern dialect both cores accept.
//!
//! The native engine (the `regex` crate) and Python's `re` (the pure core) read most patterns
//! alike but not all: `a++` is possessive in Python and a nested repetition here, `[[:alpha:]]`
//! is an ASCII class here and a nested set there, `\Z`/`\z`, `\<`, `\p{..}`, `(?<name>..)`,
//! `(?#..)`, `\0`, octal and `\N{..}` exist in one engine only, and `$` without the `m` flag
//! also matches before a final newline in Python. This scanner accepts only the syntax both
//! read the same way (the pure core's `_dialect` is the same scanner, line for line, and
//! compiles `$` as `\Z` outside multi-line mode), so one pattern redacts the same text on both
//! cores and every rejection carries the same message.
//!
//! The dialect: literals; `.`; `^`; `$`; `\A`; `\b`, `\B`; `\d \D \w \W \s \S`; the escapes
//! `\n \t \r \f \v \a`, `\xHH`, `\uHHHH`, `\UHHHHHHHH` and `\` before ASCII punctuation or
//! space; classes `[...]`/`[^...]` of those with ranges; groups `(...)`, `(?:...)`,
//! `(?P<name>...)`, `(?flags:...)` and one leading `(?flags)` (flags `i`, `m`, `s`);
//! alternation; `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}` (n, m ≤ 1000), each optionally lazy.

/// The largest count of a counted repetition.
pub const MAX_REPEAT: u64 = 1000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Previous {
    Nothing,
    Assertion,
    Atom,
    Quantified,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    Char(char),
    Class,
    Assertion,
}

type Checked<T> = std::result::Result<T, String>;

struct Scanner {
    p: Vec<char>,
}

impl Scanner {
    fn len(&self) -> usize {
        self.p.len()
    }

    fn at(&self, i: usize) -> Option<char> {
        self.p.get(i).copied()
    }

    fn text(&self, start: usize, end: usize) -> String {
        self.p[start..end.min(self.len())].iter().collect()
    }

    fn starts_with(&self, i: usize, prefix: &str) -> bool {
        prefix
            .chars()
            .enumerate()
            .all(|(k, c)| self.at(i + k) == Some(c))
    }

    /// The escape at `p[i]` (a backslash) and the index after it.
    fn escape(&self, i: usize, in_class: bool) -> Checked<(Item, usize)> {
        let Some(c) = self.at(i + 1) else {
            return Err("trailing backslash".to_owned());
        };
        let literal = match c {
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => return Ok((Item::Class, i + 2)),
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'f' => '\x0C',
            'v' => '\x0B',
            'a' => '\x07',
            'x' | 'u' | 'U' => {
                let length = match c {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let digits = self.p.get(i + 2..i + 2 + length);
                let Some(digits) = digits.filter(|d| d.iter().all(char::is_ascii_hexdigit)) else {
                    return Err(format!(
                        "\\{c} must be followed by exactly {length} hex digits"
                    ));
                };
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 16 + d.to_digit(16).unwrap_or(0));
                return match char::from_u32(value) {
                    Some(decoded) => Ok((Item::Char(decoded), i + 2 + length)),
                    None => Err(format!(
                        "{} is not a Unicode scalar value",
                        self.text(i, i + 2 + length)
                    )),
                };
            }
            'b' | 'B' | 'A' => {
                if in_class {
                    return Err(format!(
                        "\\{c} inside a character class is not supported (\\x08 is a backspace)"
                    ));
                }
                if c == 'b' && self.at(i + 2) == Some('{') {
                    return Err("\\b{...} word boundaries are not supported".to_owned());
                }
                return Ok((Item::Assertion, i + 2));
            }
            'Z' | 'z' => {
                return Err(
                    "\\Z and \\z are not supported (use $: without the m flag it \
                            matches only at the end of the text)"
                        .to_owned(),
                );
            }
            '0'..='9' => {
                return Err(
                    "backreferences and octal escapes (\\1, \\0...) are not supported".to_owned(),
                );
            }
            'p' | 'P' => {
                return Err(
                    "Unicode property classes (\\p{...}, \\P{...}) are not supported".to_owned(),
                );
            }
            '<' | '>' => return Err("\\< and \\> are not supported".to_owned()),
            c if !c.is_ascii() || c.is_ascii_alphanumeric() => {
                return Err(format!("unsupported escape \\{c}"));
            }
            c => c,
        };
        Ok((Item::Char(literal), i + 2))
    }

    /// One member of a character class at `p[i]`.
    fn class_item(&self, i: usize) -> Checked<(Item, usize)> {
        if ["&&", "--", "~~", "||"]
            .iter()
            .any(|op| self.starts_with(i, op))
        {
            return Err(
                "&&, --, ~~ and || inside a character class must be escaped (set \
                        operations are not supported)"
                    .to_owned(),
            );
        }
        match self.at(i) {
            Some('[') => Err(
                "a [ inside a character class must be escaped as \\[ (nested \
                              classes and [:name:] are not supported)"
                    .to_owned(),
            ),
            Some('\\') => self.escape(i, true),
            Some(c) => Ok((Item::Char(c), i + 1)),
            None => Err("unterminated character class".to_owned()),
        }
    }

    /// Checks the class opening at `p[i]`; returns the index after it.
    fn class(&self, i: usize) -> Checked<usize> {
        let n = self.len();
        let mut j = i + 1;
        if self.at(j) == Some('^') {
            j += 1;
        }
        let mut first = true;
        loop {
            if j >= n {
                return Err("unterminated character class".to_owned());
            }
            if self.at(j) == Some(']') && !first {
                return Ok(j + 1);
            }
            first = false;
            let start = j;
            let (low, next) = self.class_item(j)?;
            j = next;
            if j + 1 < n && self.at(j) == Some('-') && self.at(j + 1) != Some(']') {
                if self.starts_with(j, "--") {
                    self.class_item(j)?; // a set operation: rejected
                }
                let (high, next) = self.class_item(j + 1)?;
                j = next;
                let valid =
                    matches!((low, high), (Item::Char(first), Item::Char(last)) if last >= first);
                if !valid {
                    return Err(format!(
                        "invalid character class range {}",
                        self.text(start, j)
                    ));
                }
            }
        }
    }

    /// The head of the group at `p[i..i+2] == "(?"`: (end, flags on, flags off, scoped).
    fn group(&self, i: usize, names: &mut Vec<String>) -> Checked<(usize, String, String, bool)> {
        let n = self.len();
        let mut j = i + 2;
        let Some(c) = self.at(j) else {
            return Err("unterminated group (?".to_owned());
        };
        match c {
            ':' => return Ok((j + 1, String::new(), String::new(), true)),
            'P' => {
                if self.at(j + 1) == Some('<') {
                    let Some(close) = (j + 2..n).find(|&k| self.at(k) == Some('>')) else {
                        return Err("unterminated group name".to_owned());
                    };
                    let name = self.text(j + 2, close);
                    let mut chars = name.chars();
                    let valid = chars
                        .next()
                        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
                    if !valid {
                        return Err(format!("invalid group name '{name}'"));
                    }
                    if names.contains(&name) {
                        return Err(format!("duplicate group name '{name}'"));
                    }
                    names.push(name);
                    return Ok((close + 1, String::new(), String::new(), true));
                }
                if self.at(j + 1) == Some('=') {
                    return Err("backreferences are not supported".to_owned());
                }
                return Err("unsupported group syntax (?P".to_owned());
            }
            '=' | '!' => {
                return Err("look-around (look-ahead/look-behind) is not supported".to_owned());
            }
            '<' if self.starts_with(j, "<=") || self.starts_with(j, "<!") => {
                return Err("look-around (look-ahead/look-behind) is not supported".to_owned());
            }
            '<' => return Err("(?<name>...) is not supported: use (?P<name>...)".to_owned()),
            '>' => return Err("atomic groups are not supported".to_owned()),
            '(' => return Err("conditional backreferences are not supported".to_owned()),
            '#' => return Err("comments (?#...) are not supported".to_owned()),
            _ => {}
        }
        let (mut on, mut off, mut negated) = (String::new(), String::new(), false);
        while let Some(flag) = self.at(j).filter(|f| *f != ':' && *f != ')') {
            if flag == '-' && !negated {
                negated = true;
            } else if matches!(flag, 'i' | 'm' | 's') {
                if on.contains(flag) || off.contains(flag) {
                    return Err(if on.contains(flag) == negated {
                        "a flag cannot be turned both on and off".to_owned()
                    } else {
                        format!("inline flag '{flag}' repeated")
                    });
                }
                if negated {
                    off.push(flag);
                } else {
                    on.push(flag);
                }
            } else if flag.is_ascii_alphabetic() {
                return Err(format!(
                    "inline flag '{flag}' is not supported (only i, m and s)"
                ));
            } else {
                return Err("invalid inline flags".to_owned());
            }
            j += 1;
        }
        if j >= n {
            return Err("unterminated group (?".to_owned());
        }
        if negated && off.is_empty() {
            return Err("missing flag after -".to_owned());
        }
        if on.is_empty() && off.is_empty() {
            return Err("missing flag".to_owned());
        }
        Ok((j + 1, on, off, self.at(j) == Some(':')))
    }

    /// A counted repetition `{n}`, `{n,}` or `{n,m}` at `p[i]`: its end, minimum and maximum
    /// (`None` when open), each saturated above `MAX_REPEAT`.
    fn counted(&self, i: usize) -> Option<(usize, u64, Option<u64>)> {
        let digits = |mut j: usize| {
            let mut value = None;
            while let Some(d) = self.at(j).and_then(|c| c.to_digit(10)) {
                value = Some((value.unwrap_or(0) * 10 + u64::from(d)).min(MAX_REPEAT + 1));
                j += 1;
            }
            (value, j)
        };
        let (low, mut j) = digits(i + 1);
        let low = low?;
        let mut high = Some(low);
        if self.at(j) == Some(',') {
            let (max, next) = digits(j + 1);
            high = max;
            j = next;
        }
        (self.at(j) == Some('}')).then_some((j + 1, low, high))
    }
}

/// Checks `pattern` against the dialect; the error is the reason for the message.
#[allow(clippy::too_many_lines)] // one scanner loop, mirrored line for line by the pure core
pub fn check(pattern: &str) -> Checked<()> {
    let s = Scanner {
        p: pattern.chars().collect(),
    };
    let n = s.len();
    let mut outer: Vec<bool> = Vec::new(); // the multi-line flag outside each open group
    let mut names: Vec<String> = Vec::new();
    let mut multiline = false;
    let mut previous = Previous::Nothing;
    let mut i = 0;
    while i < n {
        let start = i;
        let c = s.p[i];
        match c {
            '\\' => {
                let (item, next) = s.escape(i, false)?;
                i = next;
                previous = if item == Item::Assertion {
                    Previous::Assertion
                } else {
                    Previous::Atom
                };
            }
            '[' => {
                i = s.class(i)?;
                previous = Previous::Atom;
            }
            '(' => {
                let (mut on, mut off, mut scoped) = (String::new(), String::new(), true);
                if s.starts_with(i, "(?") {
                    (i, on, off, scoped) = s.group(i, &mut names)?;
                } else {
                    i += 1;
                }
                if scoped {
                    outer.push(multiline);
                    multiline = (multiline || on.contains('m')) && !off.contains('m');
                } else {
                    if start != 0 {
                        return Err("inline flags (?i) are only allowed at the start of the \
                                    pattern; use a scoped group such as (?i:...)"
                            .to_owned());
                    }
                    if !off.is_empty() {
                        return Err("a flag can only be turned off in a scoped group such as \
                                    (?-i:...)"
                            .to_owned());
                    }
                    multiline = on.contains('m');
                }
                previous = Previous::Nothing;
            }
            ')' => {
                let Some(restored) = outer.pop() else {
                    return Err("unbalanced parenthesis: ) without (".to_owned());
                };
                multiline = restored;
                i += 1;
                previous = Previous::Atom;
            }
            '|' => {
                i += 1;
                previous = Previous::Nothing;
            }
            '*' | '+' | '?' | '{' => {
                if c == '{' {
                    let Some((end, low, high)) = s.counted(i) else {
                        return Err("a literal { must be escaped as \\{".to_owned());
                    };
                    let text = s.text(i, end);
                    if low > MAX_REPEAT || high.is_some_and(|h| h > MAX_REPEAT) {
                        return Err(format!("repetition count above {MAX_REPEAT} in {text}"));
                    }
                    if high.is_some_and(|h| h < low) {
                        return Err(format!("invalid repetition range {text}"));
                    }
                    i = end;
                } else {
                    i += 1;
                }
                let quantifier = s.text(start, i);
                if matches!(previous, Previous::Nothing | Previous::Assertion) {
                    return Err(format!("nothing to repeat before {quantifier}"));
                }
                if previous == Previous::Quantified {
                    return Err(format!(
                        "repeated quantifier {quantifier} (possessive or nested repetition, \
                         like a++ or a{{2}}*) is not supported: use a group, like (?:a+)+"
                    ));
                }
                if s.at(i) == Some('?') {
                    i += 1; // lazy
                }
                previous = Previous::Quantified;
            }
            '$' | '^' => {
                // (`multiline` decides what the pure core compiles `$` to; nothing here.)
                i += 1;
                previous = Previous::Assertion;
            }
            _ => {
                i += 1;
                previous = Previous::Atom;
            }
        }
    }
    if outer.is_empty() {
        Ok(())
    } else {
        Err("unclosed group: ( without )".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn accepts_the_shared_syntax() {
        for good in [
            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}\b",
            r"(?i)(password|secret)\s*[:=]\s*\S+",
            r"(?P<n>a)(?:b|c){1,3}?",
            r"(?i-m:x)$",
            r"[]a-]",
            r"[^\x41-\x5a\d]",
            r"\u00e9\U0001F600\.\ \#x}]",
            r"a{0}b",
        ] {
            assert_eq!(check(good), Ok(()), "{good}");
        }
    }

    #[test]
    fn rejects_what_the_engines_read_differently() {
        for (bad, reason) in [
            ("a++", "repeated quantifier +"),
            ("a{2}+", "repeated quantifier +"),
            (r"\Z", r"\Z and \z are not supported"),
            ("(unclosed", "unclosed group"),
            ("[[:alpha:]]", "a [ inside a character class"),
            ("[a&&b]", "set operations"),
            ("a{ 3 }", "a literal { must be escaped"),
            ("a(?i)b", "only allowed at the start"),
            (r"\<", r"\< and \>"),
            ("(?<n>a)", "use (?P<name>...)"),
            (r"\x{41}", "exactly 2 hex digits"),
            (r"\ud800", "not a Unicode scalar value"),
            ("a{1001}", "repetition count above 1000"),
            ("(?x)a", "inline flag 'x'"),
            ("(?", "unterminated group"),
        ] {
            let error = check(bad).unwrap_err();
            assert!(error.contains(reason), "{bad}: {error}");
        }
    }
}
