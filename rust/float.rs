//! Canonical text of a float, shared by the metrics exposition (sample values, `le`/`quantile`
//! labels) and the audit JSON records.
//!
//! Both exposition formats accept any Go-parsable float; we emit exactly what Python's `repr()`
//! emits for finite values (`42.0`, `0.005`, `1e-05`, `1.5e+16`), plus `+Inf`, `-Inf` and `NaN`.
//! This is the shortest string that round-trips, it matches prometheus_client's output for common
//! values, and it lets the pure-Python core produce byte-identical exposition with `repr()`.

use std::fmt::Write;

/// Appends the canonical form of `value` to `out`.
pub fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    // Fast path for integral values (counts, bytes): no float-to-decimal search needed.
    // Below 1e16 Python's repr prints integral floats in fixed notation with a trailing ".0".
    if value.fract() == 0.0 && value.abs() < 1e16 {
        if value == 0.0 && value.is_sign_negative() {
            out.push('-');
        }
        let _ = write!(out, "{}", value as i64);
        out.push_str(".0");
        return;
    }
    write_shortest_repr(out, value);
}

/// The canonical form of `value` as a new string.
#[must_use]
pub fn format_float(value: f64) -> String {
    let mut out = String::with_capacity(24);
    write_float(&mut out, value);
    out
}

/// The text of an `le` or `quantile` label value: as [`format_float`], except that a positive
/// value of 1e6 or more written in fixed notation switches to an exponent as Go (and
/// prometheus_client's `floatToGoString`) do: `1e+06`, `2.5e+07` (not `1000000.0`). Label
/// values are compared as strings by Prometheus, so they must match the other clients' text.
#[must_use]
pub fn format_label_float(value: f64) -> String {
    let text = format_float(value);
    match text.find('.') {
        Some(dot) if value > 0.0 && dot > 6 => {
            let mantissa = format!("{}.{}{}", &text[..1], &text[1..dot], &text[dot + 1..]);
            let mantissa = mantissa.trim_end_matches(['0', '.']);
            format!("{mantissa}e+{:02}", dot - 1)
        }
        _ => text,
    }
}

/// Python `repr()` layout of the shortest round-tripping digits: fixed notation when the decimal
/// exponent is in [-4, 16), scientific with a signed, at-least-two-digit exponent otherwise.
///
/// The digits come from Ryu, which (like CPython's `repr`, and unlike Rust's `{:e}`) breaks ties
/// between two equally short, equally close candidates towards an even last digit: for example
/// `562949953421312.25` prints as `562949953421312.2`.
fn write_shortest_repr(out: &mut String, value: f64) {
    let mut buffer = ryu::Buffer::new();
    let (digits, exponent) = decimal_digits(buffer.format_finite(value.abs()));
    if value.is_sign_negative() {
        out.push('-');
    }
    let digits = digits.as_str();
    if (-4..16).contains(&exponent) {
        if exponent < 0 {
            out.push_str("0.");
            for _ in 0..(-exponent - 1) {
                out.push('0');
            }
            out.push_str(digits);
        } else {
            let integer_len = exponent as usize + 1;
            if digits.len() <= integer_len {
                out.push_str(digits);
                for _ in digits.len()..integer_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..integer_len]);
                out.push('.');
                out.push_str(&digits[integer_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
    }
}

/// Splits a positive decimal number (`"0.0123"`, `"1.5e-7"`, `"1e16"`) into its significant
/// digits without leading or trailing zeros and the decimal exponent of the first digit.
fn decimal_digits(text: &str) -> (String, i32) {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse().expect("integer exponent")),
        None => (text, 0),
    };
    // Ryu's output is at most 24 characters, so these lengths always fit in an i32.
    let integer_len = i32::try_from(mantissa.find('.').unwrap_or(mantissa.len())).expect("short");
    let all: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let leading_zeros = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    (
        digits.to_owned(),
        exponent + integer_len - 1 - i32::try_from(leading_zeros).expect("short"),
    )
}

#[cfg(test)]
mod tests {
    use super::{format_float, format_label_float};

    #[test]
    fn label_floats_switch_to_an_exponent_at_one_million() {
        let cases: &[(f64, &str)] = &[
            (0.5, "0.5"),
            (999_999.0, "999999.0"),
            (1e6, "1e+06"),
            (2.5e7, "2.5e+07"),
            (1_234_567.5, "1.2345675e+06"),
            (1e15, "1e+15"),
            (1e16, "1e+16"),
            (-1e7, "-10000000.0"),
            (f64::INFINITY, "+Inf"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_label_float(*value), *expected, "{value}");
        }
    }

    #[test]
    fn matches_python_repr_on_known_values() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (42.0, "42.0"),
            (-3.0, "-3.0"),
            (0.005, "0.005"),
            (0.1, "0.1"),
            (2.5, "2.5"),
            (1e-4, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (123_456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (-2.5e-300, "-2.5e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (5e-324, "5e-324"),
            (0.1 + 0.2, "0.30000000000000004"),
            (2f64.powi(49) + 0.25, "562949953421312.2"),
            (123_456_789.0, "123456789.0"),
            (0.000_123, "0.000123"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_float(*value), *expected, "formatting {value:?}");
        }
    }
}
