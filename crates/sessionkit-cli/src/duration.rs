//! Durations on the command line (`500ms`, `60s`, `5m`, `1h`) and in messages (`12.3 s`).
//!
//! The syntax is deliberately small: decimal digits, then exactly one unit, nothing else. A
//! bare number is refused rather than guessed at, so `--timeout 5` cannot mean five
//! milliseconds to one reader and five seconds to another.

use std::time::Duration;

/// The units a duration may end in, with their length in milliseconds.
///
/// `ms` comes before `s` and `m`, so a value ending in `ms` is never read as minutes.
const UNITS: [(&str, u64); 4] = [("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

/// Parses a duration such as `500ms`, `60s`, `5m` or `1h`; zero (`0s`) is allowed.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let Some((digits, unit_ms)) = UNITS
        .iter()
        .find_map(|(unit, ms)| text.strip_suffix(unit).map(|digits| (digits, *ms)))
    else {
        return Err(format!(
            "`{text}` has no unit (write it as 500ms, 60s, 5m or 1h)"
        ));
    };
    // `u64::from_str` would also take a leading `+`, which this syntax does not.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{text}` is not a whole number and a unit (write it as 500ms, 60s, 5m or 1h)"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_ms))
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Parses a duration as [`parse`] does, but refuses zero.
pub(crate) fn parse_positive(text: &str) -> Result<Duration, String> {
    match parse(text)? {
        d if d.is_zero() => Err(format!("`{text}` is zero; it must be more than zero")),
        d => Ok(d),
    }
}

/// A duration for people: `450 ms` under a second, `12.3 s` under 100 s, else whole seconds
/// (`300 s`).
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 100_000 {
        // Tenths, rounded down, so a hold never reads as longer than it was.
        format!("{}.{} s", ms / 1_000, ms % 1_000 / 100)
    } else {
        format!("{} s", ms / 1_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_duration_in_every_unit_round_trips(
            n in prop_oneof![0_u64..100_000, any::<u64>()],
            // Written out rather than taken from `UNITS`, so a wrong factor there is caught.
            (unit, unit_ms) in proptest::sample::select(vec![
                ("ms", 1_u64),
                ("s", 1_000),
                ("m", 60_000),
                ("h", 3_600_000),
            ]),
            zeros in 0_usize..3,
        ) {
            let text = format!("{}{n}{unit}", "0".repeat(zeros));
            match n.checked_mul(unit_ms) {
                Some(ms) => prop_assert_eq!(parse(&text), Ok(Duration::from_millis(ms))),
                None => {
                    let err = parse(&text).expect_err(&text);
                    prop_assert!(err.contains("too long"), "{}", err);
                }
            }
            match parse_positive(&text) {
                Ok(d) => prop_assert_eq!(Ok(d), parse(&text)),
                Err(err) => {
                    prop_assert!(err.contains(&format!("`{text}`")), "{}", err);
                    prop_assert!(n == 0 || n.checked_mul(unit_ms).is_none(), "{}", err);
                }
            }
        }

        #[test]
        fn any_text_parses_or_is_refused_by_name(text in any::<String>()) {
            match parse(&text) {
                Ok(d) => {
                    // Only digits and one unit parse.
                    let digits = text.trim_end_matches(char::is_alphabetic);
                    prop_assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
                    prop_assert_eq!(parse_positive(&text).is_ok(), !d.is_zero());
                }
                Err(err) => {
                    prop_assert!(err.contains(&format!("`{text}`")), "{}", err);
                    prop_assert!(parse_positive(&text).is_err());
                }
            }
        }
    }

    #[test]
    fn every_unit_parses() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3_600)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse("007s"), Ok(Duration::from_secs(7)));
        assert_eq!(parse("1ms"), Ok(Duration::from_millis(1)));
    }

    #[test]
    fn each_unit_scales_every_small_number() {
        // Exhaustive over a range, so no unit is off by a factor anywhere in it.
        for n in 0..=2_000_u64 {
            assert_eq!(parse(&format!("{n}ms")), Ok(Duration::from_millis(n)));
            assert_eq!(parse(&format!("{n}s")), Ok(Duration::from_secs(n)));
            assert_eq!(parse(&format!("{n}m")), Ok(Duration::from_secs(n * 60)));
            assert_eq!(parse(&format!("{n}h")), Ok(Duration::from_secs(n * 3_600)));
        }
    }

    #[test]
    fn the_largest_values_parse_and_one_more_is_too_long() {
        assert_eq!(
            parse(&format!("{}ms", u64::MAX)),
            Ok(Duration::from_millis(u64::MAX))
        );
        let max_h = u64::MAX / 3_600_000;
        assert_eq!(
            parse(&format!("{max_h}h")),
            Ok(Duration::from_millis(max_h * 3_600_000))
        );
        for bad in [
            format!("{}h", max_h + 1),
            format!("{}s", u64::MAX),
            "18446744073709551616ms".to_owned(),
            "99999999999999999999999999h".to_owned(),
        ] {
            let err = parse(&bad).expect_err(&bad);
            assert!(err.contains("too long"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_durations_are_refused_with_the_text_quoted() {
        for bad in [
            "", "5", "0", "ms", "s", "m", "h", "5 s", " 5s", "5s ", "+5s", "-5s", "5.5s", "1e3ms",
            "5S", "5MS", "5sec", "5min", "5d", "5us", "5ns", "5ss", "5sm", "5hms", "s5", "0x5s",
            "5_000ms", "١s", "five s", "5s5",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn every_two_character_input_is_refused_or_is_a_digit_and_a_unit() {
        // Exhaustive over printable ASCII pairs: exactly `<digit><s|m|h>` is valid.
        for a in b' '..=b'~' {
            for b in b' '..=b'~' {
                let text = String::from_utf8(vec![a, b]).expect("ASCII");
                let valid = a.is_ascii_digit() && b"smh".contains(&b);
                assert_eq!(parse(&text).is_ok(), valid, "{text:?}");
            }
        }
    }

    #[test]
    fn positive_durations_refuse_zero_only() {
        assert_eq!(parse_positive("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(parse_positive("5m"), Ok(Duration::from_secs(300)));
        for zero in ["0ms", "0s", "0m", "0h", "000s"] {
            let err = parse_positive(zero).expect_err(zero);
            assert!(err.contains("more than zero"), "{zero}: {err}");
        }
        assert!(parse_positive("5").is_err());
    }

    #[test]
    fn human_durations_pick_a_readable_unit() {
        assert_eq!(human(Duration::ZERO), "0 ms");
        assert_eq!(human(Duration::from_millis(999)), "999 ms");
        assert_eq!(human(Duration::from_millis(1_000)), "1.0 s");
        assert_eq!(human(Duration::from_millis(12_345)), "12.3 s");
        assert_eq!(human(Duration::from_millis(12_399)), "12.3 s");
        assert_eq!(human(Duration::from_millis(99_999)), "99.9 s");
        assert_eq!(human(Duration::from_millis(100_000)), "100 s");
        assert_eq!(human(Duration::from_secs(300)), "300 s");
        assert_eq!(human(Duration::from_micros(1_500)), "1 ms");
    }
}
