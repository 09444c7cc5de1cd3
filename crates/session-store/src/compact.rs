//! Compaction: a new snapshot and a fresh journal, with writers held up only for the swap.
//!
//! 1. Encode the state, starting at journal offset `O`, and write it to a temp file beside
//!    the snapshot, fsynced. The state is encoded in slices of keys, each under a brief read
//!    lock, so writers go on appending and applying meanwhile: the snapshot is *fuzzy*, each
//!    key as of some moment at or after `O`.
//! 2. Take the journal lock. Read the records appended after `O`, and write a new journal
//!    (a header with the next epoch, then those records) to a temp file, fsynced.
//! 3. Rename the snapshot into place, then the journal, fsyncing the directory after each;
//!    release the lock.
//!
//! Replaying the journal from `O` over the fuzzy snapshot gives the state at the end of the
//! journal: every record touches one key, and for each key the snapshot holds the result of
//! the records from `O` up to some point, which replaying them again does not change (the
//! state's idempotence). The same argument covers a crash between the renames, which leaves
//! the new snapshot with the whole old journal. A crash before the first rename leaves the
//! old files. Nothing acknowledged is lost at any point.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Instant;

use sessionkit_atomic_fs::{AtomicWriter, Durability};

use crate::error::{Error, Operation, Result};
use crate::files::JournalFile;
use crate::journal::{JournalHeader, parse_records};
use crate::snapshot::{finish_snapshot, push_entries};
use crate::store::{CompactReport, Shared, lock};

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

    let _batch = lock(&shared.batch_lock);
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
    let header = JournalHeader::new(epoch + 1).encode_line().into_bytes();
    // The records appended since `offset` are copied file to file in chunks: a slow
    // compaction may have many megabytes of them, which need not sit in memory.
    let mut copied = (0, 0);
    let new_journal = writer
        .prepare_with(&shared.journal_path, |out| {
            out.write_all(&header)?;
            copied = journal.copy_lines_from(offset, out)?;
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

    // The view moves to the new files: first everything of the old journal, then the switch.
    // A reader may have seen the renames and reloaded the view from the new files already.
    {
        let mut view = shared.write();
        if view.journal.id != journal.id {
            drop(view);
            let report = report_of(entries, snapshot_len, journal_before, next_len, started);
            drop(locked);
            shared.count(|c| {
                c.compactions += 1;
                c.snapshot_bytes += snapshot_len;
            });
            return Ok(report);
        }
        let rest = journal.read_from(view.offset).map_err(|e| io("read", e))?;
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
    let report = report_of(entries, snapshot_len, journal_before, next_len, started);
    drop(locked);
    shared.count(|c| {
        c.compactions += 1;
        c.snapshot_bytes += snapshot_len;
    });
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
