//! ISO-8601 timestamps as JavaScript writes them, without a date library.
//!
//! Owner records carry `createdAt` as the string OpenClaw writes with `new Date().toISOString()`,
//! so this module formats exactly that shape and parses it (plus numeric zone offsets) back into
//! milliseconds since the Unix epoch. The calendar arithmetic is the proleptic Gregorian
//! "days from civil" conversion (Howard Hinnant's algorithm).

use std::time::{SystemTime, UNIX_EPOCH};

const MS_PER_SECOND: u64 = 1_000;
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;

/// Days from 0000-03-01 (the start of the shifted calendar's era 0) to 1970-01-01.
const EPOCH_SHIFT_DAYS: i64 = 719_468;
/// Days in one 400-year era of the Gregorian calendar.
const DAYS_PER_ERA: i64 = 146_097;

/// Formats milliseconds since the Unix epoch exactly as JavaScript's
/// `Date.prototype.toISOString()` does: `2026-11-21T05:10:56.123Z`, UTC, always three fraction
/// digits and `Z`.
///
/// This is the shape OpenClaw writes for a lock's `createdAt` and for tools that show a session's
/// `updatedAt`. Times before 1970 count backwards (`-1` is `1969-12-31T23:59:59.999Z`), and
/// years outside 0–9999 use JavaScript's expanded form with a sign and six digits
/// (`+010000-01-01T00:00:00.000Z`, `-000001-01-01T00:00:00.000Z`), which the parser of lock
/// records does not accept; such a time cannot come from a real clock. Every `i64` formats
/// without overflow (JavaScript itself refuses times past year 275760; this function keeps
/// counting).
///
/// # Examples
///
/// ```
/// use sessionkit_write_lock::format_iso8601_ms;
///
/// assert_eq!(format_iso8601_ms(1_795_237_856_123), "2026-11-21T05:10:56.123Z");
/// assert_eq!(format_iso8601_ms(-1), "1969-12-31T23:59:59.999Z");
/// ```
pub fn format_iso8601_ms(ms_since_epoch: i64) -> String {
    let ms_per_day = MS_PER_DAY as i64;
    let (year, month, day) = civil_from_days(ms_since_epoch.div_euclid(ms_per_day));
    // `rem_euclid` of a positive divisor is in 0..MS_PER_DAY.
    let in_day = ms_since_epoch.rem_euclid(ms_per_day).unsigned_abs();
    let hour = in_day / MS_PER_HOUR;
    let minute = in_day % MS_PER_HOUR / MS_PER_MINUTE;
    let second = in_day % MS_PER_MINUTE / MS_PER_SECOND;
    let milli = in_day % MS_PER_SECOND;
    let year = match year {
        0..=9999 => format!("{year:04}"),
        10_000.. => format!("+{year:06}"),
        _ => format!("-{:06}", year.unsigned_abs()),
    };
    format!("{year}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z")
}

/// [`format_iso8601_ms`] of an unsigned count, as lock records hold it.
pub(crate) fn format_iso8601_ms_unsigned(ms_since_epoch: u64) -> String {
    format_iso8601_ms(i64::try_from(ms_since_epoch).unwrap_or(i64::MAX))
}

/// Parses `YYYY-MM-DDTHH:MM:SS` with an optional fraction of 1 to 9 digits and a zone of `Z` or
/// `±HH:MM`, into milliseconds since the Unix epoch.
///
/// The fraction is truncated to milliseconds. Every field is range-checked (month 1–12, a day
/// that exists in that month, leap years included, hour 0–23, minute and second 0–59, zone hour
/// 0–23 and minute 0–59); a leap second (`:60`) is refused. Returns `None` for anything else,
/// including lowercase `t`/`z`, a space instead of `T`, missing zone, and any instant before
/// 1970-01-01T00:00:00Z.
///
/// # Examples
///
/// ```
/// use sessionkit_write_lock::parse_iso8601_ms;
///
/// assert_eq!(parse_iso8601_ms("2026-11-21T05:10:56.123Z"), Some(1_795_237_856_123));
/// assert_eq!(parse_iso8601_ms("2026-11-21T06:10:56.123456+01:00"), Some(1_795_237_856_123));
/// assert_eq!(parse_iso8601_ms("2026-11-21 05:10:56Z"), None);
/// ```
pub fn parse_iso8601_ms(s: &str) -> Option<u64> {
    // Bytes, not chars: every accepted character is ASCII, and indexing bytes cannot split a
    // multi-byte character and panic.
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(b, 0, 4)?;
    literal(b, 4, b'-')?;
    let month = digits(b, 5, 2)?;
    literal(b, 7, b'-')?;
    let day = digits(b, 8, 2)?;
    literal(b, 10, b'T')?;
    let hour = digits(b, 11, 2)?;
    literal(b, 13, b':')?;
    let minute = digits(b, 14, 2)?;
    literal(b, 16, b':')?;
    let second = digits(b, 17, 2)?;

    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut at = 19;
    let mut milli: u32 = 0;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let count = at - start;
        if !(1..=9).contains(&count) {
            return None;
        }
        // Truncate to milliseconds: the first three digits, padded on the right with zeros.
        for i in 0..3 {
            let digit = if i < count { b[start + i] - b'0' } else { 0 };
            milli = milli * 10 + u32::from(digit);
        }
    }

    let offset_ms: i64 = match b.get(at) {
        Some(b'Z') if b.len() == at + 1 => 0,
        Some(&sign @ (b'+' | b'-')) if b.len() == at + 6 => {
            let zone_hour = digits(b, at + 1, 2)?;
            literal(b, at + 3, b':')?;
            let zone_minute = digits(b, at + 4, 2)?;
            if zone_hour > 23 || zone_minute > 59 {
                return None;
            }
            let magnitude = i64::from(zone_hour) * 3_600_000 + i64::from(zone_minute) * 60_000;
            if sign == b'+' { magnitude } else { -magnitude }
        }
        _ => return None,
    };

    let days = days_from_civil(i64::from(year), month, day);
    // The local time minus its offset from UTC is the UTC time.
    let ms = days * MS_PER_DAY as i64
        + i64::from(hour) * MS_PER_HOUR as i64
        + i64::from(minute) * MS_PER_MINUTE as i64
        + i64::from(second) * MS_PER_SECOND as i64
        + i64::from(milli)
        - offset_ms;
    u64::try_from(ms).ok()
}

/// Milliseconds since the Unix epoch; 0 for a time before it, `u64::MAX` past the end of u64.
pub(crate) fn system_time_ms(t: SystemTime) -> u64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        Err(_) => 0,
    }
}

/// The `len` ASCII digits at `at` as a number, or `None` if any is missing or not a digit.
fn digits(b: &[u8], at: usize, len: usize) -> Option<u32> {
    let field = b.get(at..at + len)?;
    field.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

/// `Some(())` if the byte at `at` is `want`.
fn literal(b: &[u8], at: usize, want: u8) -> Option<()> {
    (b.get(at) == Some(&want)).then_some(())
}

fn is_leap_year(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// The number of days in `month` (1–12) of `year`.
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1–12, day 1–31).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Count years from March, so the leap day is the last day of the shifted year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - EPOCH_SHIFT_DAYS
}

/// The proleptic Gregorian date (year, month 1–12, day 1–31) of a day count since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + EPOCH_SHIFT_DAYS;
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z.rem_euclid(DAYS_PER_ERA);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are small by construction (1–12 and 1–31).
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    /// The last millisecond of year 9999, `date -u -d 9999-12-31T23:59:59.999Z +%s%3N`.
    const MAX_ISO_MS: u64 = 253_402_300_799_999;

    #[test]
    fn known_vectors_format_and_parse() {
        // Values from `date -u -d <iso> +%s%3N`.
        let vectors = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_709_210_096_789, "2024-02-29T12:34:56.789Z"),
            (1_795_237_856_123, "2026-11-21T05:10:56.123Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (MAX_ISO_MS, "9999-12-31T23:59:59.999Z"),
        ];
        for (ms, iso) in vectors {
            assert_eq!(format_iso8601_ms_unsigned(ms), iso);
            assert_eq!(parse_iso8601_ms(iso), Some(ms), "{iso}");
        }
    }

    #[test]
    fn years_past_9999_use_the_javascript_expanded_form() {
        assert_eq!(
            format_iso8601_ms_unsigned(MAX_ISO_MS + 1),
            "+010000-01-01T00:00:00.000Z"
        );
        assert_eq!(parse_iso8601_ms("+010000-01-01T00:00:00.000Z"), None);
        // The largest inputs must not overflow.
        assert!(format_iso8601_ms_unsigned(u64::MAX).starts_with('+'));
        assert!(format_iso8601_ms(i64::MAX).starts_with('+'));
    }

    #[test]
    fn times_before_1970_count_backwards_as_javascript_does() {
        // `new Date(ms).toISOString()` for each.
        assert_eq!(format_iso8601_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_iso8601_ms(-86_400_000), "1969-12-31T00:00:00.000Z");
        assert_eq!(
            format_iso8601_ms(-62_167_219_200_000),
            "0000-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_iso8601_ms(-62_167_219_200_001),
            "-000001-12-31T23:59:59.999Z"
        );
        // The smallest input must not overflow.
        assert!(format_iso8601_ms(i64::MIN).starts_with('-'));
        assert!(format_iso8601_ms(i64::MIN).ends_with('Z'));
    }

    #[test]
    fn fractions_are_optional_and_truncated_to_milliseconds() {
        let base = 1_795_237_856_000;
        assert_eq!(parse_iso8601_ms("2026-11-21T05:10:56Z"), Some(base));
        assert_eq!(parse_iso8601_ms("2026-11-21T05:10:56.1Z"), Some(base + 100));
        assert_eq!(
            parse_iso8601_ms("2026-11-21T05:10:56.12Z"),
            Some(base + 120)
        );
        assert_eq!(
            parse_iso8601_ms("2026-11-21T05:10:56.123999999Z"),
            Some(base + 123)
        );
        assert_eq!(parse_iso8601_ms("2026-11-21T05:10:56.Z"), None);
        assert_eq!(parse_iso8601_ms("2026-11-21T05:10:56.1234567890Z"), None);
    }

    #[test]
    fn zone_offsets_shift_to_utc() {
        let utc = parse_iso8601_ms("2026-11-21T05:10:56.123Z");
        assert_eq!(parse_iso8601_ms("2026-11-21T07:40:56.123+02:30"), utc);
        assert_eq!(parse_iso8601_ms("2026-11-20T23:10:56.123-06:00"), utc);
        assert_eq!(parse_iso8601_ms("2026-11-21T05:10:56.123+00:00"), utc);
        assert_eq!(parse_iso8601_ms("2026-11-21T05:10:56.123-00:00"), utc);
        assert_eq!(parse_iso8601_ms("1970-01-01T01:00:00+01:00"), Some(0));
        // One millisecond before the epoch, once the offset is applied.
        assert_eq!(parse_iso8601_ms("1970-01-01T00:59:59.999+01:00"), None);
        assert_eq!(parse_iso8601_ms("1970-01-01T00:00:00-00:01"), Some(60_000));
    }

    #[test]
    fn invalid_strings_are_refused() {
        for bad in [
            "",
            "yesterday",
            "1969-12-31T23:59:59.999Z",
            "2026-11-21T05:10:56.123",
            "2026-11-21 05:10:56.123Z",
            "2026-11-21t05:10:56.123Z",
            "2026-11-21T05:10:56.123z",
            "2026-11-21T05:10:56.123ZZ",
            "2026-11-21T05:10:56.123Z ",
            " 2026-11-21T05:10:56.123Z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-01-00T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:60:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01T00:00:00+24:00",
            "2026-01-01T00:00:00+01:60",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00+01:00:00",
            "+02026-01-01T00:00:00Z",
            "２026-01-01T00:00:00Z",
            "2026-01-01T00:00:00.１Z",
            "2026-1-01T00:00:00.000Z",
        ] {
            assert_eq!(parse_iso8601_ms(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn leap_days_follow_the_gregorian_rules() {
        assert!(parse_iso8601_ms("2000-02-29T00:00:00Z").is_some());
        assert!(parse_iso8601_ms("2024-02-29T00:00:00Z").is_some());
        assert!(parse_iso8601_ms("2100-02-29T00:00:00Z").is_none());
        assert_eq!(
            parse_iso8601_ms("2024-03-01T00:00:00Z"),
            parse_iso8601_ms("2024-02-29T00:00:00Z").map(|ms| ms + MS_PER_DAY)
        );
    }

    #[test]
    fn system_time_counts_from_the_epoch() {
        assert_eq!(system_time_ms(UNIX_EPOCH), 0);
        assert_eq!(
            system_time_ms(UNIX_EPOCH + Duration::from_millis(1_795_237_856_123)),
            1_795_237_856_123
        );
        assert_eq!(system_time_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }

    #[test]
    fn civil_days_agree_in_both_directions_around_eras() {
        // Cross 400-year era boundaries, including before year 0 where the division rounds.
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    proptest! {
        #[test]
        fn format_then_parse_is_the_identity(ms in 0..=MAX_ISO_MS) {
            let iso = format_iso8601_ms_unsigned(ms);
            prop_assert_eq!(iso.len(), 24);
            prop_assert_eq!(parse_iso8601_ms(&iso), Some(ms));
        }

        #[test]
        fn anything_parsed_formats_back_to_the_same_instant(s in any::<String>()) {
            if let Some(ms) = parse_iso8601_ms(&s) {
                prop_assert_eq!(parse_iso8601_ms(&format_iso8601_ms_unsigned(ms)), Some(ms));
            }
        }

        #[test]
        fn valid_fields_parse_to_their_instant(
            (year, month, day) in (1970..=9999u32, 1..=12u32, 1..=28u32),
            (hour, minute, second) in (0..=23u32, 0..=59u32, 0..=59u32),
            fraction in "[0-9]{1,9}",
            (east, zone_hour, zone_minute) in (any::<bool>(), 0..=23u32, 0..=59u32),
        ) {
            let local = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
            let utc = parse_iso8601_ms(&format!("{local}.{fraction}Z"));
            // The fraction is cut, not rounded, to milliseconds.
            let milli = format!("{fraction:0<3}");
            let expected = format!("{local}.{}Z", &milli[..3]);
            prop_assert_eq!(utc.map(format_iso8601_ms_unsigned), Some(expected));

            let sign = if east { '+' } else { '-' };
            let zoned = parse_iso8601_ms(&format!("{local}.{fraction}{sign}{zone_hour:02}:{zone_minute:02}"));
            let offset = i64::from(zone_hour * 60 + zone_minute) * 60_000 * if east { 1 } else { -1 };
            let expected_zoned = utc
                .and_then(|ms| i64::try_from(ms).ok())
                .map(|ms| ms - offset)
                .and_then(|ms| u64::try_from(ms).ok());
            prop_assert_eq!(zoned, expected_zoned);
        }

        #[test]
        fn one_field_out_of_range_is_refused(
            field in 0..5usize,
            bad in prop_oneof![Just(0u32), 13..=99u32],
            fraction in proptest::option::of("[0-9]{1,9}"),
        ) {
            // Start from a valid instant and break one field: month, day, hour, minute or second.
            let mut fields = [2026u32, 11, 21, 5, 10, 56];
            let (index, bad) = match field {
                0 => (1, bad),
                1 => (2, if bad == 0 { 0 } else { bad.max(32) }),
                2 => (3, bad.max(24)),
                3 => (4, bad.max(60)),
                _ => (5, bad.max(60)),
            };
            fields[index] = bad;
            let [y, mo, d, h, mi, s] = fields;
            let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
            let text = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{fraction}Z");
            prop_assert_eq!(parse_iso8601_ms(&text), None, "{}", text);
        }
    }
}
