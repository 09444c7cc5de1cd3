//! `sessionkit store`: read, change, compact and check a session store (`sessions.json` and
//! its journal `sessions.json.journal`).
//!
//! The commands that only read (`stats`, `get`, `list`, `check`) never change a file: they read
//! the snapshot and the journal as they are, under a shared OS lock on the journal so that a
//! compaction cannot swap the files halfway through the read, and they never create, repair or
//! quarantine anything; nor does `maintain --dry-run`, which plans from the files as they are.
//! The commands that write (`set`, `delete`, `compact`, `maintain`) open the store through the
//! library, which cuts a torn journal tail (and says so here, on standard error) but
//! never touches a corrupt file: the command fails with exit status 65 instead.

pub(crate) mod check;
mod read;
mod write;

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sessionkit::store::{Store, StoreBuilder, journal_path_for};

use crate::failure::Failure;

/// Arguments of `sessionkit store`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// What to do with the store.
    #[command(subcommand)]
    pub(crate) command: StoreCommand,
}

/// The `store` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Print the store's sizes: entries, sessions, bytes, snapshot and journal bytes.
    Stats(read::StatsArgs),
    /// Print the entry under KEY as JSON; exit 1 if there is none.
    Get(read::GetArgs),
    /// List the entries: key, sessionId and updatedAt, one a line.
    List(read::ListArgs),
    /// Set the entry under KEY to the JSON object on standard input (or merge it as a patch).
    Set(write::SetArgs),
    /// Remove the entry under KEY (a missing key is not an error).
    Delete(write::DeleteArgs),
    /// Write a new snapshot and start a fresh journal, and print what was done.
    Compact(write::CompactArgs),
    /// Run one maintenance pass: prune, cap, archive or delete transcripts, remove orphans and
    /// old archives, keep to a disk budget; print each action.
    Maintain(write::MaintainArgs),
    /// Check the snapshot, the journal and the transcripts, changing nothing; exit 65 if any
    /// problem is found.
    Check(check::CheckArgs),
}

/// Runs one `store` command and returns its exit status.
pub(crate) fn run(args: StoreArgs) -> Result<u8, Failure> {
    match args.command {
        StoreCommand::Stats(args) => read::stats(&args),
        StoreCommand::Get(args) => read::get(&args),
        StoreCommand::List(args) => read::list(&args),
        StoreCommand::Set(args) => write::set(&args),
        StoreCommand::Delete(args) => write::delete(&args),
        StoreCommand::Compact(args) => write::compact(&args),
        StoreCommand::Maintain(args) => write::maintain(&args),
        StoreCommand::Check(args) => check::run(&args),
    }
}

/// The journal of the snapshot at `path`: `path` with `.journal` added.
fn journal_path(path: &Path) -> PathBuf {
    journal_path_for(path)
}

/// Opens the store at `path` for a command that writes.
///
/// Unless `create` is set, a missing store is an error. The store does not compact in the
/// background, so the command's exit cannot cut a compaction short; after a failed fsync,
/// when the library would, the command compacts before it exits (`write::settled`). If the
/// open cut a torn journal tail or a fenced-off failed batch, a warning says so on standard
/// error.
fn open(path: &Path, create: bool) -> Result<Store, Failure> {
    let mut builder = Store::builder();
    builder.create(create);
    open_with(&mut builder, path)
}

/// [`open`] with `builder`'s settings (less background compaction).
fn open_with(builder: &mut StoreBuilder, path: &Path) -> Result<Store, Failure> {
    let store = builder.auto_compact(false).open(path)?;
    if let Some(bytes) = store.open_report().torn_tail_bytes {
        warn(&format!(
            "cut a torn tail of {} from `{}`: an append was interrupted by a crash and never \
             acknowledged",
            check::count(bytes, "byte"),
            journal_path(path).display()
        ));
    }
    let temps = &store.open_report().temps_removed;
    if !temps.is_empty() {
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        warn(&format!(
            "removed {} of the store's that a crash left in `{}` (older than 5 minutes)",
            check::count(temps.len(), "temp file"),
            dir.display()
        ));
    }
    if let Some(bytes) = store.open_report().fenced_batch_bytes {
        warn(&format!(
            "cut a failed batch of {} from `{}`: its writer could not cut it back out, fenced \
             it off, and told its callers it failed",
            check::count(bytes, "byte"),
            journal_path(path).display()
        ));
    }
    Ok(store)
}

/// Prints `sessionkit: warning: <text>` on standard error, on one line.
fn warn(text: &str) {
    let text = one_line(text);
    // A warning that cannot be printed is not worth failing the command for.
    let _ = writeln!(io::stderr().lock(), "sessionkit: warning: {text}");
}

/// `text` with line breaks (a key or path may contain them) shown as `\n` and `\r`.
fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\r', "\\r")
}

/// Writes `text` to standard output.
fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Failure::Stdout)
}

/// `value` as pretty JSON with a final newline.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Failure> {
    let mut json = serde_json::to_string_pretty(value).map_err(Failure::StoreJson)?;
    json.push('\n');
    Ok(json)
}

/// An `updatedAt` as JavaScript's `toISOString` writes it. Past JavaScript's range (±8.64e15 ms),
/// where `toISOString` throws, a listing still shows the entry, so the calendar goes on.
fn iso_time(ms: i64) -> String {
    sessionkit::lock::format_iso8601_ms(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_match_javascript() {
        // `new Date(ms).toISOString()` for each.
        assert_eq!(iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_time(1_795_246_212_123), "2026-11-21T07:30:12.123Z");
        assert_eq!(iso_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso_time(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(iso_time(1_763_708_000_000), "2025-11-21T06:53:20.000Z");
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        // Far outside JavaScript's range, but an entry may hold any i64.
        assert!(iso_time(i64::MAX).ends_with('Z'));
        assert!(iso_time(i64::MIN).ends_with('Z'));
    }

    #[test]
    fn the_journal_sits_beside_the_snapshot() {
        assert_eq!(
            journal_path(Path::new("/s/sessions.json")),
            Path::new("/s/sessions.json.journal")
        );
    }
}
