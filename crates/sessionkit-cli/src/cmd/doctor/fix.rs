//! The repairing half of `doctor`, run with `--fix` after the report.
//!
//! Each repair goes through the library function another command already uses: the sweeper
//! (as `sweep`), a transcript's write lock and atomic-fs's tail repair (as the store does when
//! it opens a transcript), and the store opened with `recover`, then one maintenance pass that
//! only handles orphans, then a compaction (as `store maintain` and `store compact`). Every
//! problem found by the report gets an outcome: fixed, quarantined, left or failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sessionkit::atomic_fs::{self, Durability};
use sessionkit::lock::Locker;
use sessionkit::store::{Maintenance, Store, TranscriptDisposal};
use sessionkit::sweeper::SweepReport;

use super::diagnose::{self, RegistryState, with_suffix};
use super::{Actions, Kind, Outcome, Report, SNAPSHOT, Settings, human_age, quoted};
use crate::cmd::store::check::count;
use crate::cmd::sweep::{reasons, sweep_error};
use crate::failure::Failure;

/// Repairs what the report found, printing each action as it is done.
pub(crate) fn fix(
    dir: &Path,
    settings: &Settings,
    locker: &Locker,
    report: &mut Report,
    actions: &mut Actions,
) -> Result<(), Failure> {
    // Stale locks go first, so that a transcript whose lock was left by a crash can be locked.
    sweep(dir, settings, report, actions)?;
    transcripts(locker, report, actions)?;
    registry(settings, report, actions)?;
    for finding in report.findings.iter_mut().filter(|f| f.problem) {
        finding.outcome.get_or_insert(Outcome::Left);
    }
    Ok(())
}

/// Sets the outcome of every finding of `kind` by its path.
fn settle(report: &mut Report, kind: Kind, outcome: impl Fn(&Path) -> Outcome) {
    for finding in report.findings.iter_mut().filter(|f| f.kind == kind) {
        if let Some(path) = &finding.path {
            finding.outcome = Some(outcome(path));
        }
    }
}

/// Sets the outcome of every finding of `kind`, whatever its path.
fn settle_all(report: &mut Report, kind: Kind, outcome: Outcome) {
    for finding in report.findings.iter_mut().filter(|f| f.kind == kind) {
        finding.outcome = Some(outcome);
    }
}

/// Removes stale locks and old temp files with the sweeper.
fn sweep(
    dir: &Path,
    settings: &Settings,
    report: &mut Report,
    actions: &mut Actions,
) -> Result<(), Failure> {
    let swept = diagnose::sweeper(settings, false)
        .and_then(|sweeper| sweeper.sweep(&[dir]).map_err(sweep_error));
    let swept: SweepReport = match swept {
        Ok(swept) => swept,
        Err(failure) => {
            actions.failed("sweep", Some(dir), failure.message())?;
            settle_all(report, Kind::StaleLock, Outcome::Failed);
            settle_all(report, Kind::TempFile, Outcome::Failed);
            return Ok(());
        }
    };
    for entry in &swept.entries {
        if entry.removed {
            actions.done(
                "remove-lock",
                Some(&entry.path),
                format!(
                    "removed stale lock {} ({})",
                    quoted(&entry.path),
                    reasons(entry)
                ),
            )?;
        }
        if let Some(error) = &entry.error {
            actions.failed(
                "remove-lock",
                Some(&entry.path),
                format!("could not handle {}: {error}", quoted(&entry.path)),
            )?;
        }
    }
    for error in &swept.dir_errors {
        actions.failed(
            "sweep",
            Some(&error.path),
            format!("could not list {}: {}", quoted(&error.path), error.error),
        )?;
    }
    let temps = swept.temps.clone().unwrap_or_default();
    for temp in &temps.removed {
        actions.done(
            "remove-temp",
            Some(&temp.path),
            format!(
                "removed temp file {} ({}, last modified {} ago)",
                quoted(&temp.path),
                count(temp.len, "byte"),
                human_age(Duration::from_millis(temp.age_ms))
            ),
        )?;
    }
    for error in &temps.errors {
        actions.failed(
            "remove-temp",
            Some(&error.path),
            format!("could not remove {}: {}", quoted(&error.path), error.error),
        )?;
    }
    settle(report, Kind::StaleLock, |path| {
        match swept.entries.iter().find(|e| e.path == path) {
            // Gone since the report, or no longer stale (a live owner has it now).
            None => Outcome::Fixed,
            Some(e) if e.error.is_some() => Outcome::Failed,
            Some(e) if e.removed || !e.is_stale() => Outcome::Fixed,
            Some(_) => Outcome::Left,
        }
    });
    settle(report, Kind::TempFile, |path| {
        if temps.errors.iter().any(|e| e.path == path) {
            Outcome::Failed
        } else if temps.removed.iter().any(|t| t.path == path) || !path.exists() {
            Outcome::Fixed
        } else {
            Outcome::Left
        }
    });
    Ok(())
}

/// Cuts the torn tails of transcripts, each under its write lock, taken without waiting: a
/// transcript whose lock a live process holds is never touched.
fn transcripts(locker: &Locker, report: &mut Report, actions: &mut Actions) -> Result<(), Failure> {
    let torn: Vec<PathBuf> = report
        .findings
        .iter()
        .filter(|f| f.kind == Kind::TranscriptTornTail && f.fix.is_some())
        .filter_map(|f| f.path.clone())
        .collect();
    for path in torn {
        let outcome = match locker.try_acquire(&path) {
            Ok(Some(guard)) => {
                let outcome = match guard.check_fence() {
                    Ok(()) => cut_tail(&path, actions)?,
                    Err(e) => {
                        actions.failed("cut-tail", Some(&path), Failure::Lock(e).message())?;
                        Outcome::Failed
                    }
                };
                if let Err(e) = guard.release() {
                    actions.failed("release-lock", Some(&path), Failure::Lock(e).message())?;
                }
                outcome
            }
            Ok(None) => {
                actions.done(
                    "skip",
                    Some(&path),
                    format!(
                        "left {}: its lock is held by another process",
                        quoted(&path)
                    ),
                )?;
                Outcome::Left
            }
            Err(e) => {
                actions.failed("cut-tail", Some(&path), Failure::Lock(e).message())?;
                Outcome::Failed
            }
        };
        for finding in report.findings.iter_mut() {
            if finding.kind == Kind::TranscriptTornTail && finding.path.as_ref() == Some(&path) {
                finding.outcome = Some(outcome);
            }
        }
    }
    Ok(())
}

/// Cuts the torn tail of a transcript whose lock this process holds.
fn cut_tail(path: &Path, actions: &mut Actions) -> Result<Outcome, Failure> {
    // Not durable, as the store's own repair: no fsync while the lock is held.
    match atomic_fs::repair_torn_tail(path, Durability::AtomicOnly) {
        Ok(repair) => {
            if repair.removed > 0 {
                actions.done(
                    "cut-tail",
                    Some(path),
                    format!(
                        "cut a torn tail of {} from {}",
                        count(repair.removed, "byte"),
                        quoted(path)
                    ),
                )?;
            }
            Ok(Outcome::Fixed)
        }
        // Archived or deleted since the report: no tail left to cut.
        Err(e) if e.is_not_found() => Ok(Outcome::Fixed),
        Err(e) => {
            actions.failed("cut-tail", Some(path), Failure::Library(e).message())?;
            Ok(Outcome::Failed)
        }
    }
}

/// Maintenance that only archives orphan transcripts past the grace: no pruning, no cap, no
/// archive retention, no disk budget, so `--fix` never evicts an entry.
fn orphans_only(settings: &Settings) -> Maintenance {
    Maintenance::new()
        .background(false)
        .interval(None)
        // An operator's pass finishes what it starts.
        .time_budget(Duration::MAX)
        .prune_after(None)
        .max_entries(None)
        .archive_retention(None)
        .max_disk_bytes(None)
        .orphan_grace(settings.orphan_grace)
        .transcripts(TranscriptDisposal::Archive)
}

/// The registry's kinds of problem that opening the store with `recover` settles.
const OPENED: [Kind; 5] = [
    Kind::SnapshotCorrupt,
    Kind::JournalCorrupt,
    Kind::JournalTornTail,
    Kind::JournalFencedBatch,
    Kind::FenceCorrupt,
];

/// Opens the store with `recover` (cutting a torn journal tail, quarantining a corrupt file),
/// archives orphans past the grace, and compacts.
fn registry(
    settings: &Settings,
    report: &mut Report,
    actions: &mut Actions,
) -> Result<(), Failure> {
    if diagnose::registry_state(report) != RegistryState::Present {
        return Ok(());
    }
    let path = report.registry.path.clone();
    let journal = report.registry.journal_path.clone();
    let opened = Store::builder()
        .create(false)
        .auto_compact(false)
        .recover(true)
        .maintenance(orphans_only(settings))
        .open(&path);
    let store = match opened {
        Ok(store) => store,
        Err(e) => {
            actions.failed("open", Some(&path), Failure::Store(e).message())?;
            for kind in OPENED.into_iter().chain([Kind::OrphanTranscript]) {
                settle_all(report, kind, Outcome::Failed);
            }
            return Ok(());
        }
    };
    let open = store.open_report().clone();
    if let Some(bytes) = open.torn_tail_bytes {
        actions.done(
            "cut-tail",
            Some(&journal),
            format!(
                "cut a torn tail of {} from {}",
                count(bytes, "byte"),
                quoted(&journal)
            ),
        )?;
    }
    if let Some(bytes) = open.fenced_batch_bytes {
        actions.done(
            "cut-fenced-batch",
            Some(&journal),
            format!(
                "cut a fenced-off failed batch of {} from {}",
                count(bytes, "byte"),
                quoted(&journal)
            ),
        )?;
    }
    let named = |aside: &Path, prefix: &str| {
        aside
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
    };
    let is_journal = |aside: &Path| named(aside, &format!("{SNAPSHOT}.journal.corrupt."));
    let fence = with_suffix(&journal, ".fence");
    let is_fence = |aside: &Path| named(aside, &format!("{SNAPSHOT}.journal.fence.corrupt."));
    for aside in &open.quarantined {
        let from = if is_journal(aside) {
            &journal
        } else if is_fence(aside) {
            &fence
        } else {
            &path
        };
        actions.done(
            "quarantine",
            Some(from),
            format!("quarantined {} as {}", quoted(from), quoted(aside)),
        )?;
    }
    for temp in &open.temps_removed {
        actions.done(
            "remove-temp",
            Some(temp),
            format!(
                "removed temp file {} of an interrupted compaction",
                quoted(temp)
            ),
        )?;
    }
    let journal_quarantined = open.quarantined.iter().any(|a| is_journal(a));
    let fence_quarantined = open.quarantined.iter().any(|a| is_fence(a));
    let snapshot_quarantined = open
        .quarantined
        .iter()
        .any(|a| !is_journal(a) && !is_fence(a));
    let outcome = |quarantined: bool| {
        if quarantined {
            Outcome::Quarantined
        } else {
            Outcome::Fixed
        }
    };
    settle_all(report, Kind::SnapshotCorrupt, outcome(snapshot_quarantined));
    settle_all(report, Kind::JournalCorrupt, outcome(journal_quarantined));
    settle_all(report, Kind::JournalTornTail, outcome(journal_quarantined));
    settle_all(
        report,
        Kind::JournalFencedBatch,
        outcome(journal_quarantined),
    );
    settle_all(report, Kind::FenceCorrupt, outcome(fence_quarantined));

    match store.maintain(false) {
        Ok(pass) => {
            for orphan in &pass.orphans {
                let archive = archive_of(orphan)
                    .unwrap_or_else(|| with_suffix(orphan, ".deleted.<UTC time>"));
                actions.done(
                    "archive-orphan",
                    Some(orphan),
                    format!(
                        "archived orphan transcript {} as {}",
                        quoted(orphan),
                        quoted(&archive)
                    ),
                )?;
            }
            for error in &pass.errors {
                actions.failed("archive-orphan", None, error.clone())?;
            }
            settle(report, Kind::OrphanTranscript, |p| {
                if pass.orphans.iter().any(|o| o == p) || !p.exists() {
                    Outcome::Fixed
                } else {
                    Outcome::Left
                }
            });
        }
        Err(e) => {
            actions.failed("maintain", Some(&path), Failure::Store(e).message())?;
            settle_all(report, Kind::OrphanTranscript, Outcome::Failed);
        }
    }

    let repaired = open.torn_tail_bytes.is_some()
        || open.fenced_batch_bytes.is_some()
        || !open.quarantined.is_empty();
    if open.journal_records > 0 || repaired {
        match store.compact() {
            Ok(c) if c.superseded => actions.done(
                "compact",
                Some(&path),
                "another process compacted the store first".to_owned(),
            )?,
            Ok(c) => actions.done(
                "compact",
                Some(&path),
                format!(
                    "compacted {}: {}, snapshot {}, journal {} before, {} after",
                    quoted(&path),
                    count(c.entries, "entry"),
                    count(c.snapshot_bytes, "byte"),
                    count(c.journal_bytes_before, "byte"),
                    count(c.journal_bytes_after, "byte")
                ),
            )?,
            Err(e) => actions.failed("compact", Some(&path), Failure::Store(e).message())?,
        }
    }
    Ok(())
}

/// The newest archive of `transcript` (`<file>.deleted.<UTC time>`), which maintenance just
/// made; the times sort as text.
fn archive_of(transcript: &Path) -> Option<PathBuf> {
    let dir = transcript.parent()?;
    let prefix = format!("{}.deleted.", transcript.file_name()?.to_string_lossy());
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&prefix))
        .max()
        .map(|name| dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphan_maintenance_evicts_nothing() {
        let settings = Settings {
            orphan_grace: Duration::from_secs(60),
            temp_older_than: Duration::from_secs(60),
            max_disk_bytes: Some(1),
        };
        let text = format!("{:?}", orphans_only(&settings));
        for field in [
            "prune_after: None",
            "max_entries: None",
            "archive_retention: None",
            "max_disk_bytes: None",
            "orphan_grace: 60s",
            "transcripts: Archive",
            "background: false",
        ] {
            assert!(text.contains(field), "{field} not in {text}");
        }
    }
}
