//! Canonical text form of sample values and of `le`/`quantile` label values.
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

/// Python `repr()` layout of the shortest round-tripping digits: fixed notation when the decimal
/// exponent is in [-4, 16), scientific with a signed, at-least-two-digit exponent otherwise.
fn write_shortest_repr(out: &mut String, value: f64) {
    // `{:e}` yields the shortest round-tripping digits, e.g. "-1.2345e-7" or "5e3".
    let mut scientific = String::with_capacity(32);
    let _ = write!(scientific, "{value:e}");
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("LowerExp output always has an exponent");
    let exponent: i32 = exponent.parse().expect("LowerExp exponent is an integer");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exponent) {
        if exponent < 0 {
            out.push_str("0.");
            for _ in 0..(-exponent - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let integer_len = exponent as usize + 1;
            if digits.len() <= integer_len {
                out.push_str(&digits);
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

#[cfg(test)]
mod tests {
    use super::format_float;

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
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, expected) in cases {
            assert_eq!(format_float(*value), *expected, "formatting {value:?}");
        }
    }
}
