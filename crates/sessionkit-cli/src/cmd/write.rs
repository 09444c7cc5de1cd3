//! `sessionkit write`: replace a file atomically with the bytes of standard input.

use std::path::PathBuf;

use clap::Args;
use sessionkit::atomic_fs::{AtomicWriter, Durability};

use crate::failure::Failure;

/// The largest mode `--mode` accepts: the permission bits plus setuid, setgid and sticky.
const MAX_MODE: u32 = 0o7777;

/// Arguments of `sessionkit write`.
#[derive(Debug, Args)]
pub(crate) struct WriteArgs {
    /// The file to replace. If it is a symlink, the file it points to is replaced.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// Skip the two fsync calls: still atomic, but a power loss may lose the new contents.
    #[arg(long)]
    pub(crate) no_fsync: bool,

    /// Give the file this mode, in octal (644, 0644 or 0o644) [default: 600 for a new file;
    /// a replaced file keeps its mode].
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub(crate) mode: Option<u32>,

    /// Create missing parent directories (mode 700).
    #[arg(long)]
    pub(crate) mkdir: bool,
}

/// Reads standard input and replaces the file with it.
pub(crate) fn run(args: &WriteArgs) -> Result<(), Failure> {
    // Read everything before touching the disk, so a failed read leaves the target alone.
    let contents = super::read_stdin()?;
    let mut writer = AtomicWriter::new();
    writer.create_parents(args.mkdir);
    if args.no_fsync {
        writer.durability(Durability::AtomicOnly);
    }
    if let Some(mode) = args.mode {
        writer.mode(mode);
    }
    writer.write(&args.path, &contents)?;
    Ok(())
}

/// Parses a file mode in octal, with or without a leading `0` or `0o`.
fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text
        .strip_prefix("0o")
        .or_else(|| text.strip_prefix("0O"))
        .unwrap_or(text);
    // `from_str_radix` would also take a sign, which a mode never has.
    if digits.is_empty() || !digits.bytes().all(|b| matches!(b, b'0'..=b'7')) {
        return Err(format!(
            "`{text}` is not an octal mode (use digits 0 to 7, as in 644 or 0o644)"
        ));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= MAX_MODE => Ok(mode),
        _ => Err(format!("`{text}` is larger than the largest mode, 7777")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_mode;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn every_mode_round_trips_in_every_spelling(
            mode in prop_oneof![Just(0), Just(0o7777), 0_u32..=0o7777],
            zeros in 0_usize..4,
        ) {
            let octal = format!("{mode:o}");
            let padded = format!("{}{octal}", "0".repeat(zeros));
            for text in [octal.clone(), padded, format!("0o{octal}"), format!("0O{octal}")] {
                prop_assert_eq!(parse_mode(&text), Ok(mode), "{}", text);
            }
        }

        #[test]
        fn a_mode_above_7777_is_refused_as_too_large(
            mode in prop_oneof![Just(0o10000), Just(u32::MAX), 0o10000_u32..=u32::MAX],
        ) {
            for text in [format!("{mode:o}"), format!("0o{mode:o}")] {
                let err = parse_mode(&text).expect_err(&text);
                prop_assert!(err.contains(&format!("`{text}`")), "{}", err);
                prop_assert!(err.contains("larger"), "{}", err);
            }
        }

        #[test]
        fn any_text_is_a_mode_or_an_error_naming_it(text in any::<String>()) {
            match parse_mode(&text) {
                Ok(mode) => {
                    prop_assert!(mode <= 0o7777);
                    // Only digits 0 to 7 after an optional `0o`, read in base 8.
                    let digits = text.trim_start_matches("0o").trim_start_matches("0O");
                    prop_assert_eq!(u32::from_str_radix(digits, 8), Ok(mode));
                }
                Err(err) => prop_assert!(err.contains(&format!("`{text}`")), "{}", err),
            }
        }
    }

    #[test]
    fn modes_parse_in_every_spelling() {
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("0o644"), Ok(0o644));
        assert_eq!(parse_mode("0O600"), Ok(0o600));
        assert_eq!(parse_mode("0"), Ok(0));
        assert_eq!(parse_mode("7777"), Ok(0o7777));
        assert_eq!(parse_mode("00007777"), Ok(0o7777));
    }

    #[test]
    fn bad_modes_are_refused() {
        for bad in [
            "",
            "0o",
            "9",
            "8",
            "64a",
            "+644",
            "-644",
            " 644",
            "0x644",
            "10000",
            "0o10000",
            "77777777777777777777",
        ] {
            assert!(parse_mode(bad).is_err(), "`{bad}` was accepted");
        }
    }
}
