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
mod tests {
    use super::*;

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
