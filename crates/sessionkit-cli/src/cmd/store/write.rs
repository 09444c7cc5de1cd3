//! `sessionkit store set|delete|compact|maintain`: change a store through the library, which
//! journals each change (durably: the journal is fsynced before the command succeeds).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use sessionkit::store::{
    Activity, CompactReport, Entry, Maintenance, MaintenanceReport, Patch, Store,
    TranscriptDisposal,
};

use super::{open, print, to_json, warn};
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

    /// Without --patch: what to do with the entry's updatedAt.
    #[arg(
        long,
        value_enum,
        value_name = "HOW",
        default_value_t = UpdatedAt::AsGiven,
        conflicts_with = "patch"
    )]
    pub(crate) updated_at: UpdatedAt,
}

/// `store set --updated-at`: how a replaced entry's `updatedAt` is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum UpdatedAt {
    /// Write the entry exactly as given, with its updatedAt or without one (imports, restores).
    AsGiven,
    /// Set updatedAt to now by OpenClaw's rule: the latest of the existing entry's, the
    /// input's and now, never later than now.
    Advance,
    /// Keep the existing entry's updatedAt, whatever the input says; a new key, or an existing
    /// entry without a whole-number updatedAt, gets now as with advance.
    Preserve,
}

impl UpdatedAt {
    /// The library's stamping for this choice; `None` writes the entry as given.
    fn activity(self) -> Option<Activity> {
        match self {
            UpdatedAt::AsGiven => None,
            UpdatedAt::Advance => Some(Activity::Advance),
            UpdatedAt::Preserve => Some(Activity::Preserve),
        }
    }
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
    // A failure to read names the key and the store, as bad input does.
    let bytes = crate::cmd::read_stdin().map_err(|f| f.setting(&args.path, &args.key))?;
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
    let written = match change {
        Change::Upsert(entry) => match args.updated_at.activity() {
            None => store.upsert(args.key.as_str(), entry),
            Some(activity) => store.upsert_with(args.key.as_str(), entry, activity),
        },
        Change::Patch(patch) => {
            let activity = if args.preserve_activity {
                Activity::Preserve
            } else {
                Activity::Advance
            };
            store.patch(args.key.as_str(), patch, activity)
        }
    };
    settled(&store, written)?;
    Ok(exit::SUCCESS)
}

/// Removes the entry under the key; a missing key writes nothing and succeeds.
pub(super) fn delete(args: &DeleteArgs) -> Result<u8, Failure> {
    let store = open(&args.path, false)?;
    settled(&store, store.delete(args.key.as_str()))?;
    Ok(exit::SUCCESS)
}

/// A write's result, after making good what its failure may have left: after a failed fsync
/// the library compacts in the background, which this process's exit would cut short, so
/// `Store::flush` compacts here first. A flush that fails too is a warning; the write's own
/// error is the one reported.
fn settled<T>(store: &Store, written: sessionkit::store::Result<T>) -> Result<T, Failure> {
    if written.is_err() {
        make_good(store);
    }
    Ok(written?)
}

/// After a failed write, compacts now if a failed fsync left the store owing one
/// (`Store::flush`); a failure to is a warning.
fn make_good(store: &Store) {
    if let Err(e) = store.flush() {
        warn(&format!(
            "the store could not be made durable again after the failed write: {e}"
        ));
    }
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

/// Arguments of `sessionkit store maintain`.
#[derive(Debug, Args)]
pub(crate) struct MaintainArgs {
    /// The store's snapshot, `sessions.json`; its journal is PATH.journal.
    #[arg(value_name = "PATH")]
    pub(crate) path: PathBuf,

    /// Report what the pass would evict, archive and delete, changing nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// The most entries to keep; past it plus its slack the oldest go.
    #[arg(long, value_name = "N", default_value_t = MAX_ENTRIES, conflicts_with = "no_cap")]
    pub(crate) max_entries: usize,

    /// No entry cap.
    #[arg(long)]
    pub(crate) no_cap: bool,

    /// Prune entries not updated for longer than this (as 720h; 30 days by default).
    #[arg(long, value_name = "DUR", value_parser = duration::parse_positive, conflicts_with = "no_prune")]
    pub(crate) prune_after: Option<Duration>,

    /// Never prune for age.
    #[arg(long)]
    pub(crate) no_prune: bool,

    /// The disk budget of the store's directory, in bytes [default: none].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_disk_bytes: Option<u64>,

    /// What happens to the transcripts of evicted sessions and to orphan transcripts.
    #[arg(long, value_enum, value_name = "HOW", default_value_t = Disposal::Archive)]
    pub(crate) transcripts: Disposal,

    /// Leave transcripts no entry references alone until they are this old [default: 1h].
    #[arg(long, value_name = "DUR", value_parser = duration::parse)]
    pub(crate) orphan_grace: Option<Duration>,

    /// Print the report as one JSON object (pretty-printed) instead of lines.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The default of `--max-entries`, the library's.
const MAX_ENTRIES: usize = sessionkit::store::DEFAULT_MAX_ENTRIES;

/// `--transcripts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Disposal {
    /// Rename to `<file>.deleted.<UTC time>`; archives go after 30 days.
    Archive,
    /// Delete at once.
    Delete,
}

/// Runs one maintenance pass (unbounded in time) and prints what it did.
pub(super) fn maintain(args: &MaintainArgs) -> Result<u8, Failure> {
    let mut m = Maintenance::new()
        .background(false)
        .interval(None)
        // An operator's pass finishes what it starts.
        .time_budget(Duration::MAX)
        .max_entries((!args.no_cap).then_some(args.max_entries))
        .max_disk_bytes(args.max_disk_bytes)
        .transcripts(match args.transcripts {
            Disposal::Archive => TranscriptDisposal::Archive,
            Disposal::Delete => TranscriptDisposal::Delete,
        });
    if args.no_prune {
        m = m.prune_after(None);
    } else if let Some(age) = args.prune_after {
        m = m.prune_after(Some(age));
    }
    if let Some(grace) = args.orphan_grace {
        m = m.orphan_grace(grace);
    }
    if args.json {
        // The report holds paths in the store's directory (only names that are valid UTF-8
        // are ever acted on): one that cannot be written as JSON fails here, before the pass
        // changes anything, as it would fail after it.
        to_json(&args.path)?;
    }
    let report = if args.dry_run {
        // Planned from the files as they are: opening the store would repair them.
        sessionkit::store::plan_maintenance(&args.path, &m)?
    } else {
        let mut builder = Store::builder();
        builder.create(false).maintenance(m);
        let store = super::open_with(&mut builder, &args.path)?;
        let report = settled(&store, store.maintain(false))?;
        // A failed eviction batch is one of the report's errors, not the call's.
        if !report.errors.is_empty() {
            make_good(&store);
        }
        report
    };
    // The library logs why through `tracing`, which this tool does not print; an operator who
    // asked for a budget learns here that the pass could not keep to it.
    if let (false, Some(max), Some(after)) =
        (report.dry_run, args.max_disk_bytes, report.disk_bytes_after)
        && after > max
    {
        let dir = args
            .path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        super::warn(&format!(
            "`{}` still takes {after} bytes after the pass, over the budget of {max} bytes; \
             maintenance never removes the files of subdirectories, other files or active \
             entries, and frees nothing for the budget while subdirectories alone take 80 % of \
             it; `sessionkit doctor --max-disk-bytes {max}` shows where the bytes are",
            dir.display()
        ));
    }
    let text = if args.json {
        to_json(&report)?
    } else {
        human_maintain(&report)
    };
    print(&text)?;
    Ok(if report.errors.is_empty() {
        exit::SUCCESS
    } else {
        exit::IO_ERR
    })
}

/// The report for people: one line per eviction and file, then a summary line.
fn human_maintain(report: &MaintenanceReport) -> String {
    let mut out = String::new();
    let would = if report.dry_run { "would " } else { "" };
    let mut line = |text: String| {
        let _ = writeln!(out, "{}", super::one_line(&text));
    };
    for (keys, why) in [
        (&report.pruned, "pruned"),
        (&report.capped, "over the cap"),
        (&report.disk_evicted, "over the disk budget"),
    ] {
        for key in keys {
            line(format!("{would}evict {key} ({why})"));
        }
    }
    for path in &report.archived {
        line(format!("{would}archive {}", path.display()));
    }
    for path in &report.deleted {
        line(format!("{would}delete {}", path.display()));
    }
    for path in report.archives_removed.iter().chain(&report.temps_removed) {
        line(format!("{would}delete {}", path.display()));
    }
    for path in &report.restamped {
        line(format!(
            "{would}restamp {} (its time was in the future)",
            path.display()
        ));
    }
    for error in &report.errors {
        line(format!("error {error}"));
    }
    line(format!(
        "{} {} (pruned {}, capped {}, disk {}), transcripts archived {}, deleted {}, \
         orphans {}, archives removed {}, errors {}, in {}",
        if report.dry_run {
            "would evict"
        } else {
            "evicted"
        },
        report.evicted(),
        report.pruned.len(),
        report.capped.len(),
        report.disk_evicted.len(),
        report.archived.len(),
        report.deleted.len(),
        report.orphans.len(),
        report.archives_removed.len(),
        report.errors.len(),
        duration::human(Duration::from_millis(report.elapsed_ms)),
    ));
    out
}
