//! `sessionkit append`: append standard input to a JSONL file as one record.

use std::path::PathBuf;

use clap::Args;
use sessionkit::atomic_fs::RecordAppender;

use crate::failure::Failure;

/// Arguments of `sessionkit append`.
#[derive(Debug, Args)]
pub(crate) struct AppendArgs {
    /// The JSONL file to append to; it is created (mode 600) if missing.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// Follow the append with fdatasync, so the record survives a power loss.
    #[arg(long)]
    pub(crate) fsync: bool,

    /// Create missing parent directories (mode 700).
    #[arg(long)]
    pub(crate) mkdir: bool,
}

/// Reads standard input and appends it as one record.
pub(crate) fn run(args: &AppendArgs) -> Result<(), Failure> {
    let input = super::read_stdin()?;
    let mut appender = RecordAppender::new();
    appender.sync(args.fsync).create_parents(args.mkdir);
    // The library refuses empty records and records with a newline; that is a data error.
    appender.append(&args.path, strip_one_newline(&input))?;
    Ok(())
}

/// Drops one trailing `\n` or `\r\n`, which `echo` and most editors add, and nothing more.
fn strip_one_newline(input: &[u8]) -> &[u8] {
    input
        .strip_suffix(b"\r\n")
        .or_else(|| input.strip_suffix(b"\n"))
        .unwrap_or(input)
}

#[cfg(test)]
mod tests {
    use super::strip_one_newline;

    #[test]
    fn exactly_one_line_ending_is_stripped() {
        assert_eq!(strip_one_newline(b"{}\n"), b"{}");
        assert_eq!(strip_one_newline(b"{}\r\n"), b"{}");
        assert_eq!(strip_one_newline(b"{}"), b"{}");
        assert_eq!(strip_one_newline(b"{}\n\n"), b"{}\n");
        assert_eq!(strip_one_newline(b"{}\r"), b"{}\r");
        assert_eq!(strip_one_newline(b"\n"), b"");
        assert_eq!(strip_one_newline(b""), b"");
    }
}
