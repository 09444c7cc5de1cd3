//! What every suite's report shares: the shown command, the directory line, number formats,
//! and error context.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::args::Options;
use crate::machine;
use crate::stats::micros;

/// The command line as the report shows it, quoted so that it can be pasted back.
pub(crate) fn shown_command(args: &[OsString]) -> String {
    let words: Vec<String> = args
        .iter()
        .map(|a| shell_word(&a.to_string_lossy()))
        .collect();
    words.join(" ")
}

/// Where the run happens: the temp dir `root`, made inside `base`, and its file system.
pub(crate) fn directory_line(options: &Options, base: &Path, root: &Path) -> String {
    let where_ = if options.dir.is_some() {
        format!("a fresh temp dir inside `{}` (`--dir`)", base.display())
    } else {
        format!(
            "a fresh temp dir in `{}` (the system temp dir)",
            base.display()
        )
    };
    let fs = match machine::file_system(root) {
        Some(mount) => format!(
            "{} (mounted on `{}`)",
            mount.describe(),
            mount.point.display()
        ),
        None => "file system unknown".to_owned(),
    };
    format!("{where_}, on {fs}")
}

/// The machine line of a report header.
pub(crate) fn machine_line() -> String {
    format!(
        "{} CPUs (nproc), Linux {}",
        machine::cpus(),
        machine::kernel()
    )
}

/// Microseconds with a decimal only where it still matters.
pub(crate) fn fmt_micros(d: Duration) -> String {
    let us = micros(d);
    if us >= 100.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

/// Quotes a word for a shell only when it needs it, so the shown command can be pasted back.
pub(crate) fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Adds what we were doing to an I/O error, keeping its kind.
pub(crate) fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("--dir"), "--dir");
        assert_eq!(shell_word("/a b"), "'/a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn shown_commands() {
        let args: Vec<OsString> = ["lock", "--dir", "/a b"].map(OsString::from).to_vec();
        assert_eq!(shown_command(&args), "lock --dir '/a b'");
    }

    #[test]
    fn micros_keep_a_decimal_below_100() {
        assert_eq!(fmt_micros(Duration::from_nanos(12_345)), "12.3");
        assert_eq!(fmt_micros(Duration::from_micros(1234)), "1234");
    }
}
