//! The harness's command lines: `--flag value` words, read one flag at a time.
//!
//! Each role of the `sessionkit-torture` binary (the suites and the three child roles) matches
//! on the flags it knows and asks [`Flags`] for the value in the form it wants, so the error
//! messages (a missing value, a bad number, an unknown name) read the same for every role.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::slice;
use std::time::Duration;

/// Walks a command line's `--flag [value]` words.
#[derive(Debug)]
pub struct Flags<'a> {
    words: slice::Iter<'a, OsString>,
    flag: String,
}

impl<'a> Flags<'a> {
    /// Starts at the first word of `words`.
    pub fn new(words: &'a [OsString]) -> Flags<'a> {
        Flags {
            words: words.iter(),
            flag: String::new(),
        }
    }

    /// The next flag, or `None` after the last word. The value methods read the word after it.
    pub fn next_flag(&mut self) -> Option<String> {
        let word = self.words.next()?;
        self.flag = word.to_string_lossy().into_owned();
        Some(self.flag.clone())
    }

    /// The word after the current flag.
    ///
    /// # Errors
    ///
    /// `"<flag> needs a value"` after the last word.
    pub fn value(&mut self) -> Result<&'a OsStr, String> {
        self.words
            .next()
            .map(OsString::as_os_str)
            .ok_or_else(|| format!("{} needs a value", self.flag))
    }

    /// The value as a path.
    ///
    /// # Errors
    ///
    /// As [`value`](Flags::value).
    pub fn path(&mut self) -> Result<PathBuf, String> {
        self.value().map(PathBuf::from)
    }

    /// The value as a decimal `u64`.
    ///
    /// # Errors
    ///
    /// As [`value`](Flags::value), or a message naming the flag and the value.
    pub fn u64(&mut self) -> Result<u64, String> {
        let value = self.value()?;
        value
            .to_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{} needs a non-negative integer, got {value:?}", self.flag))
    }

    /// The value as a whole number of milliseconds.
    ///
    /// # Errors
    ///
    /// As [`u64`](Flags::u64).
    pub fn millis(&mut self) -> Result<Duration, String> {
        self.u64().map(Duration::from_millis)
    }

    /// The value as one of a set of names, turned into a `T` by `parse`; `what` names the set
    /// in the error.
    ///
    /// # Errors
    ///
    /// As [`value`](Flags::value), or `"unknown <what> <value>"` when `parse` knows no such
    /// name.
    pub fn choice<T>(
        &mut self,
        what: &str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<T, String> {
        let name = self.value()?.to_string_lossy();
        parse(&name).ok_or_else(|| format!("unknown {what} {name:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_and_their_values_come_in_order() {
        let words = words(&[
            "--dir", "/a b", "--quick", "--n", "42", "--ms", "7", "--v", "b",
        ]);
        let mut flags = Flags::new(&words);
        assert_eq!(flags.next_flag().as_deref(), Some("--dir"));
        assert_eq!(flags.path(), Ok(PathBuf::from("/a b")));
        assert_eq!(flags.next_flag().as_deref(), Some("--quick"));
        assert_eq!(flags.next_flag().as_deref(), Some("--n"));
        assert_eq!(flags.u64(), Ok(42));
        assert_eq!(flags.next_flag().as_deref(), Some("--ms"));
        assert_eq!(flags.millis(), Ok(Duration::from_millis(7)));
        assert_eq!(flags.next_flag().as_deref(), Some("--v"));
        let pick = |name: &str| ["a", "b"].iter().position(|n| *n == name);
        assert_eq!(flags.choice("letter", pick), Ok(1));
        assert_eq!(flags.next_flag(), None);
    }

    #[test]
    fn errors_name_the_flag_and_the_value() {
        let words = words(&["--n", "-1", "--v", "z", "--last"]);
        let mut flags = Flags::new(&words);
        flags.next_flag();
        assert_eq!(
            flags.u64(),
            Err("--n needs a non-negative integer, got \"-1\"".to_owned())
        );
        flags.next_flag();
        assert_eq!(
            flags.choice("letter", |_| None::<u8>),
            Err("unknown letter \"z\"".to_owned())
        );
        flags.next_flag();
        assert_eq!(flags.value(), Err("--last needs a value".to_owned()));
    }
}
