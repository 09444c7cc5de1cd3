//! The `SESSIONKIT_*` variables: names and value parsers.

use std::time::Duration;

/// `every-batch`, `never`, or a number of milliseconds (fsync at most that often).
pub(crate) const SYNC: &str = "SESSIONKIT_SYNC";
/// `enforce`, `warn` or `off`.
pub(crate) const MAINTENANCE: &str = "SESSIONKIT_MAINTENANCE";
/// The entry cap, or `none`.
pub(crate) const MAX_ENTRIES: &str = "SESSIONKIT_MAX_ENTRIES";
/// Milliseconds, or `none`.
pub(crate) const PRUNE_AFTER_MS: &str = "SESSIONKIT_PRUNE_AFTER_MS";
/// `archive` or `delete`.
pub(crate) const TRANSCRIPTS: &str = "SESSIONKIT_TRANSCRIPTS";
/// Milliseconds, or `none`.
pub(crate) const ARCHIVE_RETENTION_MS: &str = "SESSIONKIT_ARCHIVE_RETENTION_MS";
/// Milliseconds.
pub(crate) const ORPHAN_GRACE_MS: &str = "SESSIONKIT_ORPHAN_GRACE_MS";
/// Bytes, or `none`.
pub(crate) const MAX_DISK_BYTES: &str = "SESSIONKIT_MAX_DISK_BYTES";
/// `on` or `off`.
pub(crate) const STARTUP_SWEEP: &str = "SESSIONKIT_STARTUP_SWEEP";
/// Milliseconds, or `none`.
pub(crate) const TEMP_OLDER_THAN_MS: &str = "SESSIONKIT_TEMP_OLDER_THAN_MS";
/// `on` or `off`.
pub(crate) const RECOVER: &str = "SESSIONKIT_RECOVER";

/// Every variable this crate reads itself (write-lock reads its `SESSIONKIT_LOCK_*` ones).
pub(crate) const ALL: [&str; 11] = [
    SYNC,
    MAINTENANCE,
    MAX_ENTRIES,
    PRUNE_AFTER_MS,
    TRANSCRIPTS,
    ARCHIVE_RETENTION_MS,
    ORPHAN_GRACE_MS,
    MAX_DISK_BYTES,
    STARTUP_SWEEP,
    TEMP_OLDER_THAN_MS,
    RECOVER,
];

/// A whole number in decimal digits, more than zero (write-lock's rule for its variables).
pub(crate) fn positive(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err("must be a whole number in decimal digits".to_owned());
    }
    let value: u64 = raw.parse().map_err(|_| "is too large".to_owned())?;
    if value == 0 {
        return Err("must be more than zero".to_owned());
    }
    Ok(value)
}

/// Milliseconds, as [`positive`].
pub(crate) fn millis(raw: &str) -> Result<Duration, String> {
    positive(raw).map(Duration::from_millis)
}

/// `none` or what `parse` accepts.
pub(crate) fn or_none<T>(
    raw: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    if raw.trim().eq_ignore_ascii_case("none") {
        Ok(None)
    } else {
        parse(raw).map(Some)
    }
}

/// `on`/`off` (also `true`/`false`, `1`/`0`).
pub(crate) fn switch(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err("must be `on` or `off`".to_owned()),
    }
}

/// One of `choices`, case-insensitive; its index.
pub(crate) fn choice(raw: &str, choices: &[&str]) -> Result<usize, String> {
    let raw = raw.trim();
    choices
        .iter()
        .position(|c| c.eq_ignore_ascii_case(raw))
        .ok_or_else(|| format!("must be one of {}", choices.join(", ")))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the documented number rule says `raw` is: trimmed decimal digits naming 1 to
    /// `u64::MAX`, read as a wider integer so no overflow can hide.
    pub(crate) fn model_positive(raw: &str) -> Option<u64> {
        let digits = raw.trim();
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let significant = digits.trim_start_matches('0');
        if significant.len() > 30 {
            return None;
        }
        let value: u128 = significant.parse().unwrap_or(0);
        u64::try_from(value).ok().filter(|&v| v > 0)
    }

    /// The documented switch words, written out rather than taken from `switch`.
    pub(crate) fn model_switch(raw: &str) -> Option<bool> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => Some(true),
            "off" | "false" | "0" | "no" => Some(false),
            _ => None,
        }
    }

    /// Whitespace `trim` removes, including a non-ASCII space.
    fn blank() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vec!["", " ", "\t", "\n", " \r\n", "\u{3000}"])
    }

    /// `word` in a random mix of upper and lower case, padded with whitespace.
    pub(crate) fn spelled(
        word: impl Strategy<Value = &'static str>,
    ) -> impl Strategy<Value = String> {
        (
            word,
            proptest::collection::vec(any::<bool>(), 16),
            blank(),
            blank(),
        )
            .prop_map(|(word, upper, before, after)| {
                let cased: String = word
                    .chars()
                    .zip(upper.iter().cycle())
                    .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
                    .collect();
                format!("{before}{cased}{after}")
            })
    }

    /// Numbers with the edges of the accepted range, leading zeros and padding.
    pub(crate) fn number() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                Just(0),
                Just(1),
                Just(u64::MAX),
                any::<u64>(),
                1_u64..100_000
            ],
            0_usize..3,
            blank(),
            blank(),
        )
            .prop_map(|(n, zeros, before, after)| {
                format!("{before}{}{n}{after}", "0".repeat(zeros))
            })
    }

    /// Almost numbers: signs, exponents, separators, hex, non-ASCII digits, or past u64.
    pub(crate) fn near_number() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ \t]{0,2}[-+]?[0-9]{0,6}([.e_,xX]|\u{0663})?[0-9a-f]{0,6}[ \t]{0,2}",
            "[1-9][0-9]{19,40}",
        ]
    }

    proptest! {
        #[test]
        fn every_positive_number_round_trips(
            n in prop_oneof![Just(1), Just(u64::MAX), any::<u64>().prop_filter("positive", |&n| n > 0)],
            zeros in 0_usize..4,
            before in blank(),
            after in blank(),
        ) {
            let raw = format!("{before}{}{n}{after}", "0".repeat(zeros));
            prop_assert_eq!(positive(&raw), Ok(n), "{:?}", raw);
            prop_assert_eq!(millis(&raw), Ok(Duration::from_millis(n)), "{:?}", raw);
            prop_assert_eq!(or_none(&raw, positive), Ok(Some(n)), "{:?}", raw);
        }

        #[test]
        fn any_text_is_a_positive_number_by_the_digits_only_rule(
            raw in prop_oneof![any::<String>(), number(), near_number()],
        ) {
            prop_assert_eq!(positive(&raw).ok(), model_positive(&raw), "{:?}", raw);
            prop_assert_eq!(millis(&raw).ok(), model_positive(&raw).map(Duration::from_millis));
        }

        #[test]
        fn none_in_any_case_is_none(raw in spelled(Just("none"))) {
            prop_assert_eq!(or_none(&raw, positive), Ok(None), "{:?}", raw);
            // Only `or_none` knows the word; the number parser refuses it.
            prop_assert!(positive(&raw).is_err());
        }

        #[test]
        fn switches_follow_the_documented_words(
            raw in prop_oneof![
                spelled(proptest::sample::select(vec![
                    "on", "off", "true", "false", "1", "0", "yes", "no", "onn", "y", "of", "2",
                ])),
                any::<String>(),
            ],
        ) {
            match model_switch(&raw) {
                Some(on) => prop_assert_eq!(switch(&raw), Ok(on), "{:?}", raw),
                None => {
                    let err = switch(&raw).expect_err(&raw);
                    prop_assert!(err.contains("`on` or `off`"), "{}", err);
                }
            }
        }

        #[test]
        fn a_choice_in_any_case_is_its_index(
            (choices, index) in proptest::sample::select(vec![
                vec!["enforce", "warn", "off"],
                vec!["archive", "delete"],
            ])
            .prop_flat_map(|choices| {
                let len = choices.len();
                (Just(choices), 0..len)
            }),
            upper in proptest::collection::vec(any::<bool>(), 16),
            other in any::<String>(),
        ) {
            let word: String = choices[index]
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
                .collect();
            prop_assert_eq!(choice(&format!(" {word}\t"), &choices), Ok(index));
            let known = choices.iter().position(|c| c.eq_ignore_ascii_case(other.trim()));
            match choice(&other, &choices) {
                Ok(i) => prop_assert_eq!(Some(i), known),
                Err(err) => {
                    prop_assert_eq!(known, None);
                    for c in &choices {
                        prop_assert!(err.contains(c), "{}", err);
                    }
                }
            }
        }
    }

    #[test]
    fn numbers_are_digits_only_and_positive() {
        assert_eq!(positive(" 42 "), Ok(42));
        for bad in ["", "0", "-1", "1e3", "0x10", "1.5", "18446744073709551616"] {
            assert!(positive(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn none_and_switches_parse() {
        assert_eq!(or_none("NONE", positive), Ok(None));
        assert_eq!(or_none("7", positive), Ok(Some(7)));
        assert_eq!(switch("Off"), Ok(false));
        assert_eq!(switch("1"), Ok(true));
        assert!(switch("maybe").is_err());
        assert_eq!(choice("WARN", &["enforce", "warn", "off"]), Ok(1));
        assert!(choice("later", &["enforce", "warn"]).is_err());
    }
}
