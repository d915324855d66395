//! UTC wall-clock time in microseconds and its fixed ISO 8601 rendering.
//!
//! Every timestamp is written as `YYYY-MM-DDTHH:MM:SS.ffffff+00:00`: always six fraction digits
//! (unlike `datetime.isoformat()`, which drops a zero fraction) so lines have one shape, and the
//! `+00:00` offset that `datetime.fromisoformat` reads on every supported Python.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch, now.
#[must_use]
pub fn now_micros() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's algorithm).
#[must_use]
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
#[must_use]
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC calendar date of a timestamp, as `YYYY-MM-DD`.
#[must_use]
pub fn utc_date(micros: i64) -> String {
    let (y, m, d) = civil_from_days(micros.div_euclid(86_400_000_000));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Appends the fixed ISO 8601 form of `micros` (see the module docs).
pub fn write_timestamp(out: &mut Vec<u8>, micros: i64) {
    let days = micros.div_euclid(86_400_000_000);
    let rem = micros.rem_euclid(86_400_000_000);
    let (y, mo, d) = civil_from_days(days);
    let secs = rem / 1_000_000;
    let frac = rem % 1_000_000;
    let (h, mi, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut buf = [0u8; 32];
    let text = {
        use std::io::Write;
        let mut cursor = std::io::Cursor::new(&mut buf[..]);
        let _ = write!(
            cursor,
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{frac:06}+00:00"
        );

        cursor.position() as usize
    };
    out.extend_from_slice(&buf[..text]);
}

/// A compact, lexically sortable stamp for rotated segment names: `YYYYMMDDTHHMMSSffffffZ`.
#[must_use]
pub fn segment_stamp(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rem = micros.rem_euclid(86_400_000_000);
    let (y, mo, d) = civil_from_days(days);
    let secs = rem / 1_000_000;
    let frac = rem % 1_000_000;
    format!(
        "{y:04}{mo:02}{d:02}T{:02}{:02}{:02}{frac:06}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(micros: i64) -> String {
        let mut out = Vec::new();
        write_timestamp(&mut out, micros);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(ts(0), "1970-01-01T00:00:00.000000+00:00");
        // 2024-02-29T23:59:59.999999Z (leap day)
        let micros = (days_from_civil(2024, 2, 29) * 86_400 + 86_399) * 1_000_000 + 999_999;
        assert_eq!(ts(micros), "2024-02-29T23:59:59.999999+00:00");
        assert_eq!(ts(-1), "1969-12-31T23:59:59.999999+00:00");
        assert_eq!(utc_date(micros), "2024-02-29");
        assert_eq!(segment_stamp(micros), "20240229T235959999999Z");
    }

    #[test]
    fn civil_round_trips() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
