//! `sessionkit store set|delete|compact`: change a store through the library, which journals
//! each change (durably: the journal is fsynced before the command succeeds).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sessionkit::store::{Activity, CompactReport, Entry, Patch};

use super::{open, print, to_json};
use crate::failure::Failure;
use crate::{duration, exit};

/// Arguments of `sessionkit store set`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The store's snapshot, `sessions.json`; its journal is PATH.journal. A missing store is
    /// created (its directory must exist).
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// The session key.
    #[arg(value_name = "KEY")]
    pub(crate) key: String,

    /// Apply standard input as an RFC 7396 merge patch to the entry (to `{}` if there is none)
    /// and set updatedAt to now, instead of replacing the entry.
    #[arg(long)]
    pub(crate) patch: bool,

    /// With --patch: keep the entry's updatedAt (a metadata change, not activity).
    #[arg(long, requires = "patch")]
    pub(crate) preserve_activity: bool,
}

/// Arguments of `sessionkit store delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The store's snapshot, `sessions.json`; its journal is PATH.journal.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// The session key.
    #[arg(value_name = "KEY")]
    pub(crate) key: String,
}

/// Arguments of `sessionkit store compact`.
#[derive(Debug, Args)]
pub(crate) struct CompactArgs {
    /// The store's snapshot, `sessions.json`; its journal is PATH.journal.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// Print the compaction report as one JSON object (pretty-printed) instead of one field a
    /// line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Reads an entry (or a patch) from standard input and writes it under the key.
pub(super) fn set(args: &SetArgs) -> Result<u8, Failure> {
    // Read and check the input before the store is opened, so bad input changes nothing.
    let bad_input = |source: Box<dyn std::error::Error + Send + Sync>| Failure::BadInput {
        path: args.path.clone(),
        key: args.key.clone(),
        source,
    };
    let bytes = crate::cmd::read_stdin()?;
    let text = String::from_utf8(bytes).map_err(|e| bad_input(Box::new(e.utf8_error())))?;
    enum Change {
        Upsert(Entry),
        Patch(Patch),
    }
    let change = if args.patch {
        Change::Patch(Patch::parse(&text).map_err(|e| bad_input(Box::new(e)))?)
    } else {
        Change::Upsert(Entry::parse(&text).map_err(|e| bad_input(Box::new(e)))?)
    };
    let store = open(&args.path, true)?;
    match change {
        Change::Upsert(entry) => store.upsert(args.key.as_str(), entry)?,
        Change::Patch(patch) => {
            let activity = if args.preserve_activity {
                Activity::Preserve
            } else {
                Activity::Advance
            };
            store.patch(args.key.as_str(), patch, activity)?
        }
    };
    Ok(exit::SUCCESS)
}

/// Removes the entry under the key; a missing key writes nothing and succeeds.
pub(super) fn delete(args: &DeleteArgs) -> Result<u8, Failure> {
    let store = open(&args.path, false)?;
    store.delete(args.key.as_str())?;
    Ok(exit::SUCCESS)
}

/// Compacts the store now and prints the report.
pub(super) fn compact(args: &CompactArgs) -> Result<u8, Failure> {
    let store = open(&args.path, false)?;
    let report = store.compact()?;
    let text = if args.json {
        to_json(&report)?
    } else {
        human_compact(&report)
    };
    print(&text)?;
    Ok(exit::SUCCESS)
}

/// The report for people: one `field: value` line per field.
fn human_compact(report: &CompactReport) -> String {
    if report.superseded {
        return "superseded: another process compacted the store first; nothing changed\n"
            .to_owned();
    }
    let mut out = String::new();
    let mut line = |field: &str, value: String| {
        let _ = writeln!(out, "{field}: {value}");
    };
    line("entries", report.entries.to_string());
    line("snapshot bytes", report.snapshot_bytes.to_string());
    line(
        "journal bytes",
        format!(
            "{} before, {} after",
            report.journal_bytes_before, report.journal_bytes_after
        ),
    );
    line("journal locked for", locked_for(report.locked_micros));
    out
}

/// How long the journal was locked: `746 µs` under a millisecond, else as
/// [`duration::human`] (`12 ms`, `1.3 s`).
fn locked_for(micros: u64) -> String {
    if micros < 1_000 {
        format!("{micros} µs")
    } else {
        duration::human(Duration::from_micros(micros))
    }
}

#[cfg(test)]
mod tests {
    use super::locked_for;

    #[test]
    fn short_locks_read_in_microseconds() {
        assert_eq!(locked_for(0), "0 µs");
        assert_eq!(locked_for(999), "999 µs");
        assert_eq!(locked_for(1_000), "1 ms");
        assert_eq!(locked_for(1_300_000), "1.3 s");
    }
}
