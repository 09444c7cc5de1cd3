//! Compaction: a new snapshot and a fresh journal, with writers held up only for the swap.
//!
//! 1. Encode the state, starting at journal offset `O`, and write it to a temp file beside
//!    the snapshot, fsynced. The state is encoded in slices of keys, each under a brief read
//!    lock, so writers go on appending and applying meanwhile: the snapshot is *fuzzy*, each
//!    key as of some moment at or after `O`. atomic-fs writes the file back 2 MiB at a time
//!    as it goes (its write-behind), so that the writer's journal fsyncs meanwhile do not
//!    queue behind the whole snapshot at its final fsync.
//! 2. Take the journal lock. Read the records appended after `O`, and write a new journal
//!    (a header with the next epoch and its base, the old journal and `O`, then those records
//!    copied byte for byte) to a temp file, fsynced.
//! 3. Rename the snapshot into place, then the journal, fsyncing the directory after each;
//!    release the lock.
//!
//! Replaying the journal from `O` over the fuzzy snapshot gives the state at the end of the
//! journal: every record touches one key, and for each key the snapshot holds the result of
//! the records from `O` up to some point, which replaying them again does not change (the
//! state's idempotence). The same argument covers a crash between the renames, which leaves
//! the new snapshot with the whole old journal. A crash before the first rename leaves the
//! old files. Nothing acknowledged is lost at any point.
//!
//! A compaction is also how the store makes good a failed fsync of the journal ([`FsyncDebt`]):
//! it writes everything before `O` from memory and fsyncs all it writes.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sessionkit_atomic_fs::{AtomicWriter, Durability};

use crate::error::{Error, Operation, Result};
use crate::files::JournalFile;
use crate::journal::{JournalBase, JournalHeader, parse_records};
use crate::snapshot::{finish_snapshot, push_entries};
use crate::store::{CompactReport, Shared};

pub(crate) fn compact(shared: &Arc<Shared>) -> Result<CompactReport> {
    let span = tracing::info_span!("compact", path = %shared.snapshot_path.display());
    let _span = span.enter();
    let atomic = |step: &'static str| {
        let path = shared.snapshot_path.clone();
        move |source| Error::AtomicWrite {
            op: Operation::Compact,
            step,
            path,
            source,
        }
    };
    let io = |step: &'static str, e| shared.journal_io(Operation::Compact, step)(e);
    // Taken before the starting offset: a failed fsync counted by now wrote only below it.
    let mark = shared.fsync_debt.mark();
    shared.refresh()?;
    let (journal, offset) = {
        let view = shared.read();
        (view.journal.clone(), view.offset)
    };
    let writer = {
        let mut w = AtomicWriter::new();
        w.durability(Durability::Durable);
        w
    };
    let mut entries = 0;
    let mut snapshot_len = 0;
    let snapshot = writer
        .prepare_with(&shared.snapshot_path, |out| {
            (entries, snapshot_len) = encode_in_slices(shared, out)?;
            Ok(())
        })
        .map_err(atomic("write the new snapshot"))?;

    #[cfg(test)]
    crate::hooks::reached(
        crate::hooks::Point::CompactionStarted,
        &shared.snapshot_path,
    );
    // The snapshot about to be replaced stays open until the locks are let go, so that the
    // rename below drops only its name. The kernel frees its blocks and cached pages when the
    // last handle closes: for a snapshot of 80 MB the locks were held 17 to 20 ms instead of
    // about 1 ms on the reference VM. Held here, that happens on this thread after them.
    // Declared before the batch lock, it is dropped after it. Only a cost moves, so a failed
    // open is no error.
    let _replaced =
        crate::sys::open_regular(OpenOptions::new().read(true), &shared.snapshot_path).ok();
    let _batch = shared.batch_lock.lock();
    let started = Instant::now();
    let locked = journal
        .lock(shared.config.lock_timeout, &|| shared.lock_waited())
        .map_err(|e| io("lock", e))?;
    if !journal.is_current().map_err(|e| io("stat", e))? {
        // Another process compacted first; its snapshot is at least as new as ours.
        drop(locked);
        snapshot
            .discard()
            .map_err(atomic("discard the new snapshot"))?;
        return Ok(CompactReport {
            superseded: true,
            ..CompactReport::default()
        });
    }
    let journal_before = journal.len().map_err(|e| io("stat", e))?;
    let epoch = shared.read().epoch;
    // A failed batch behind a fence stays out of the new journal (the view never read it).
    let fence_end = match crate::fence::current(shared, Operation::Compact)? {
        Some(fence) => {
            let tail = journal.read_from(offset).map_err(|e| io("read", e))?;
            fence.end_in(epoch, &tail, offset)
        }
        None => None,
    };
    // The base lets another process that still holds this journal open follow the
    // compaction by reading journals only, not the snapshot.
    let (dev, ino) = journal.id;
    let base = JournalBase::new(epoch, dev, ino, offset);
    let header = JournalHeader::with_base(epoch + 1, base)
        .encode_line()
        .into_bytes();
    // The records appended since `offset` are copied file to file in chunks: a slow
    // compaction may have many megabytes of them, which need not sit in memory.
    let mut copied = (0, 0);
    let new_journal = writer
        .prepare_with(&shared.journal_path, |out| {
            out.write_all(&header)?;
            copied = journal.copy_lines_from(offset, fence_end, out)?;
            Ok(())
        })
        .map_err(atomic("write the new journal"))?;
    let (tail_len, tail_lines) = copied;
    let next_len = header.len() as u64 + tail_len;
    // Opened under its temp name, so that the view follows this very file even if another
    // process replaces it again right after the rename.
    let reopened = JournalFile::open_as(new_journal.temp_path(), &shared.journal_path, false)
        .map(Arc::new)
        .map_err(|e| io("open the new journal", e))?;
    snapshot
        .commit()
        .map_err(atomic("put the new snapshot in place"))?;
    new_journal
        .commit()
        .map_err(atomic("put the new journal in place"))?;
    #[cfg(test)]
    crate::hooks::reached(crate::hooks::Point::FilesReplaced, &shared.snapshot_path);

    // The view moves to the new files: first everything of the old journal, then the switch.
    // A reader may have seen the renames and reloaded the view from the new files already.
    {
        let mut view = shared.write();
        if view.journal.id != journal.id {
            drop(view);
            let report = report_of(entries, snapshot_len, journal_before, next_len, started);
            drop(locked);
            finished(shared, mark, snapshot_len);
            return Ok(report);
        }
        let rest = journal
            .read_range(view.offset, fence_end.unwrap_or(u64::MAX))
            .map_err(|e| io("read", e))?;
        shared.count(|c| c.journal_bytes_read += rest.len() as u64);
        let cut = rest
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |last| last + 1);
        let parsed = parse_records(
            &shared.journal_path,
            &rest[..cut],
            view.offset,
            view.lines + 1,
        )?;
        let view = &mut *view;
        view.state.replay(&parsed.records, &mut view.seqs);
        view.journal = reopened;
        view.offset = next_len;
        view.lines = 1 + tail_lines;
        view.epoch = epoch + 1;
        view.snapshot_bytes = snapshot_len;
    }
    // A fence over the old journal is stale now. Its file is left for the next open (or
    // fenced cut) to remove: another process may already write to the new journal, and fence
    // a batch of its own there.
    let report = report_of(entries, snapshot_len, journal_before, next_len, started);
    drop(locked);
    finished(shared, mark, snapshot_len);
    tracing::info!(
        entries,
        snapshot_bytes = report.snapshot_bytes,
        journal_before,
        journal_after = report.journal_bytes_after,
        locked_micros = report.locked_micros,
        "compacted the session store"
    );
    Ok(report)
}

/// Counts a finished compaction, and what it made good of the failed fsyncs counted by `mark`.
fn finished(shared: &Shared, mark: u64, snapshot_len: u64) {
    let repaired = shared.fsync_debt.made_good(mark);
    shared.count(|c| {
        c.compactions += 1;
        c.snapshot_bytes += snapshot_len;
        if repaired {
            c.fsync_repairs += 1;
        }
    });
    if repaired {
        tracing::info!(path = %shared.snapshot_path.display(),
            "compacted the session store after a failed fsync of its journal: it is durable again");
    }
}

/// Failed fsyncs of the journal, and how many of them finished compactions have made good.
///
/// After a failed fsync the kernel may have dropped the pages it could not write, and a later
/// fsync that succeeds does not bring them back: those bytes survive in memory only. A
/// compaction makes them durable again, but only one that took its starting offset after the
/// failure: it writes everything before that offset from memory, and copies only later bytes
/// from the journal. So each compaction marks the count of failures before it starts, and
/// makes good that many when it finishes.
#[derive(Debug, Default)]
pub(crate) struct FsyncDebt {
    failed: AtomicU64,
    made_good: AtomicU64,
}

impl FsyncDebt {
    /// Counts a failed fsync of the journal.
    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::SeqCst);
    }

    /// True while some failed fsync has not been made good by a compaction.
    pub(crate) fn owed(&self) -> bool {
        self.made_good.load(Ordering::SeqCst) < self.failed.load(Ordering::SeqCst)
    }

    /// Gives up what is owed, when this process reloaded the store from another process's
    /// compaction: the memory that could pay it is gone. True if something was owed.
    pub(crate) fn forfeit(&self) -> bool {
        let failed = self.failed.load(Ordering::SeqCst);
        self.made_good.fetch_max(failed, Ordering::SeqCst) < failed
    }

    /// The mark a compaction takes before its starting offset.
    fn mark(&self) -> u64 {
        self.failed.load(Ordering::SeqCst)
    }

    /// A compaction that took `mark` finished; true if it made good a failure not made good
    /// before.
    fn made_good(&self, mark: u64) -> bool {
        self.made_good.fetch_max(mark, Ordering::SeqCst) < mark
    }
}

fn report_of(
    entries: usize,
    snapshot_len: u64,
    journal_before: u64,
    journal_after: u64,
    locked_since: Instant,
) -> CompactReport {
    CompactReport {
        entries,
        snapshot_bytes: snapshot_len,
        journal_bytes_before: journal_before,
        journal_bytes_after: journal_after,
        locked_micros: u64::try_from(locked_since.elapsed().as_micros()).unwrap_or(u64::MAX),
        superseded: false,
    }
}

/// Entries encoded per read lock: a slice takes well under a millisecond.
const SLICE: usize = 512;

/// Encodes the snapshot in slices of [`SLICE`] keys, each under its own read lock, and writes
/// each slice to `out` with no lock held; returns the entry count and the bytes written. Only
/// one slice is ever in memory.
fn encode_in_slices(shared: &Shared, out: &mut dyn Write) -> io::Result<(usize, u64)> {
    let mut buf = String::new();
    let mut first = true;
    let mut entries = 0;
    let mut written = 0;
    let mut last: Option<String> = None;
    loop {
        let view = shared.read();
        let mut n = 0;
        let mut next_last = None;
        push_entries(
            &mut buf,
            &mut first,
            view.state
                .after(last.as_deref())
                .take(SLICE)
                .inspect(|(k, _)| {
                    n += 1;
                    next_last = Some(*k);
                }),
        );
        let next_last = next_last.map(str::to_owned);
        drop(view);
        entries += n;
        if n < SLICE {
            break;
        }
        out.write_all(buf.as_bytes())?;
        written += buf.len() as u64;
        buf.clear();
        last = next_last;
    }
    finish_snapshot(&mut buf, first);
    out.write_all(buf.as_bytes())?;
    written += buf.len() as u64;
    Ok((entries, written))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::FsyncDebt;

    /// The snapshot that a compaction replaces is still open in this process when both renames
    /// are done and the journal's lock is still held, so the renames freed nothing under the
    /// lock; it is closed by the time the compaction returns.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_replaced_snapshot_is_freed_after_the_locks() {
        use std::os::unix::fs::MetadataExt;
        use std::sync::{Arc, Mutex};

        use sessionkit_test_support::Scratch;

        use crate::hooks::{Point, on};
        use crate::{Entry, Store};

        let dir = Scratch::new("compact-frees-after-locks");
        let snapshot = dir.join("sessions.json");
        let store = Store::builder()
            .auto_compact(false)
            .open(&snapshot)
            .unwrap();
        let entry = |id: &str| Entry::parse(&format!(r#"{{"sessionId":"{id}","updatedAt":1}}"#));
        store.upsert("a", entry("a").unwrap()).unwrap();
        store.compact().unwrap();
        let old = std::fs::metadata(&snapshot).unwrap();
        let old = (old.dev(), old.ino());
        assert_eq!(open_handles(old, &snapshot), 0);
        store.upsert("b", entry("b").unwrap()).unwrap();

        let seen = Arc::new(Mutex::new(None));
        let at_hook = seen.clone();
        let path = snapshot.clone();
        on(Point::FilesReplaced, &snapshot, move || {
            let now = std::fs::metadata(&path).unwrap();
            let replaced = (now.dev(), now.ino()) != old;
            *at_hook.lock().unwrap() = Some((replaced, open_handles(old, &path)));
        });
        store.compact().unwrap();
        assert_eq!(*seen.lock().unwrap(), Some((true, 1)));
        assert_eq!(open_handles(old, &snapshot), 0);
    }

    /// How many of this process's descriptors refer to the file `id` (device, inode) under
    /// `path`'s name (`/proc` adds ` (deleted)` once the name is gone). The name guards against
    /// a freed inode number that another test's file took meanwhile.
    #[cfg(target_os = "linux")]
    fn open_handles(id: (u64, u64), path: &std::path::Path) -> usize {
        use std::os::unix::fs::MetadataExt;

        let name = path.to_string_lossy().into_owned();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|fd| fd.ok().map(|fd| fd.path()))
            .filter(|fd| std::fs::metadata(fd).is_ok_and(|m| (m.dev(), m.ino()) == id))
            .filter(|fd| {
                std::fs::read_link(fd).is_ok_and(|to| to.to_string_lossy().starts_with(&name))
            })
            .count()
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// An fsync of the journal fails.
        Fail,
        /// Compaction `n` (of at most three at once) starts.
        Start(usize),
        /// Compaction `n` finishes, if it started.
        Finish(usize),
        /// Compaction `n` fails, if it started.
        Abandon(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Fail),
            (0..3usize).prop_map(Step::Start),
            (0..3usize).prop_map(Step::Finish),
            (0..3usize).prop_map(Step::Abandon),
        ]
    }

    proptest! {
        /// The debt against the rule in its docs: a repair is owed while some failure came
        /// after the start of every compaction that finished.
        #[test]
        fn a_repair_is_owed_until_a_compaction_started_after_the_failure_finishes(
            steps in prop::collection::vec(step(), 0..40),
        ) {
            let debt = FsyncDebt::default();
            let mut marks: [Option<u64>; 3] = [None; 3];
            let mut started_at: [Option<usize>; 3] = [None; 3];
            let mut failures: Vec<usize> = Vec::new();
            let mut latest_finished_start: Option<usize> = None;
            for (time, step) in steps.into_iter().enumerate() {
                match step {
                    Step::Fail => {
                        debt.failed();
                        failures.push(time);
                    }
                    Step::Start(n) if marks[n].is_none() => {
                        marks[n] = Some(debt.mark());
                        started_at[n] = Some(time);
                    }
                    Step::Finish(n) => {
                        if let (Some(mark), Some(start)) = (marks[n].take(), started_at[n].take()) {
                            let owed_before = debt.owed();
                            let made_good = debt.made_good(mark);
                            let newly = failures.iter().any(|&failed| {
                                failed < start && latest_finished_start.is_none_or(|s| s < failed)
                            });
                            prop_assert_eq!(made_good, newly);
                            prop_assert!(!made_good || owed_before);
                            latest_finished_start = latest_finished_start.max(Some(start));
                        }
                    }
                    Step::Abandon(n) => {
                        marks[n] = None;
                        started_at[n] = None;
                    }
                    Step::Start(_) => {}
                }
                let owed = failures
                    .last()
                    .is_some_and(|&failed| latest_finished_start.is_none_or(|start| start < failed));
                prop_assert_eq!(debt.owed(), owed);
            }
        }
    }
}
