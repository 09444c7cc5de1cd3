//! Opening a store, and bringing an open store's view up to date with the files.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use sessionkit_atomic_fs::{AtomicWriter, Durability};

use crate::error::{Error, Operation, Result};
use crate::files::{FileId, JournalFile, sync_dir};
use crate::journal::{
    JournalHeader, JournalRecord, ParsedJournal, SeqTracker, WriterId, parse_journal,
};
use crate::snapshot::{load_snapshot, quarantine};
use crate::state::State;
use crate::store::{
    IoCounters, OpenReport, Shared, Store, StoreBuilder, View, dir_of, fs_dir, journal_path_for,
};
use crate::writer;

/// The journal's identity and length, by path; `None` if it does not exist.
pub(crate) fn journal_identity(path: &Path) -> Result<Option<(FileId, u64)>> {
    use std::os::unix::fs::MetadataExt;
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(((meta.dev(), meta.ino()), meta.len()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(Operation::ReadJournal, "stat", path, path, e)),
    }
}

pub(crate) fn open(config: StoreBuilder, snapshot_path: &Path) -> Result<Store> {
    let path = snapshot_path.to_path_buf();
    let (tx, report) = writer::start(snapshot_path, move || open_on_writer(config, &path))?;
    Ok(Store {
        shared: tx.shared().clone(),
        tx: Arc::new(tx),
        report: Arc::new(report),
    })
}

/// Everything [`open`] does, on the writer thread.
fn open_on_writer(config: StoreBuilder, snapshot_path: &Path) -> Result<(Arc<Shared>, OpenReport)> {
    let journal_path = journal_path_for(snapshot_path);
    let mut report = OpenReport::default();
    let snapshot_exists = snapshot_path.exists();
    let journal_exists = journal_path.exists();
    if !config.create && !snapshot_exists && !journal_exists {
        return Err(Error::NoStore {
            op: Operation::Open,
            path: snapshot_path.to_path_buf(),
            journal: journal_path,
        });
    }
    // The snapshot is parsed before the journal's lock is taken, so that other processes'
    // writers are not held up for it (a large registry takes a second); the load under the
    // lock uses it if it is still the snapshot there.
    let mut early = snapshot_exists
        .then(|| crate::snapshot::Early::load(snapshot_path))
        .flatten();
    // A snapshot alone (a registry OpenClaw wrote) gets a journal, but only once it is known
    // to load: a failed open leaves nothing behind.
    if snapshot_exists && !journal_exists && !config.recover && early.is_none() {
        load_snapshot(snapshot_path)?;
    }
    report.created = !snapshot_exists && !journal_exists;
    let view = loop {
        let journal = JournalFile::open(&journal_path, true)
            .map(Arc::new)
            .map_err(|e| Error::io(Operation::Open, "open", snapshot_path, &journal_path, e))?;
        let locked = journal
            .lock(config.lock_timeout, &|| {})
            .map_err(|e| Error::io(Operation::Open, "lock", snapshot_path, &journal_path, e))?;
        // A compaction elsewhere may have replaced the journal while we waited for its lock.
        if !journal
            .is_current()
            .map_err(|e| Error::io(Operation::Open, "stat", snapshot_path, &journal_path, e))?
        {
            continue;
        }
        let loaded = load(&config, snapshot_path, journal, &mut report, early.take())?;
        drop(locked);
        // `None`: the damaged journal went aside and its whole records took its place; they
        // load like any journal, under the new file's lock.
        if let Some(view) = loaded {
            break view;
        }
    };
    let snapshot_name = snapshot_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    report.temps_removed =
        crate::maintain::remove_stale_temps(crate::store::dir_of(snapshot_path), &snapshot_name);
    let epoch = view.epoch;
    let interval = config.maintenance.as_ref().and_then(|m| m.interval);
    let schedule = crate::schedule::Schedule::new(config.clock.instant(), interval);
    let shared = Arc::new(Shared {
        snapshot_path: snapshot_path.to_path_buf(),
        journal_path,
        config,
        writer: WriterId::random(),
        view: RwLock::new(view),
        batch_lock: crate::store::InTurn::default(),
        seq: AtomicU64::new(0),
        compacting: AtomicBool::new(false),
        compactor: writer::Background::new(writer::Job::Compact),
        counters: Mutex::new(IoCounters::default()),
        maintaining: AtomicBool::new(false),
        one_pass: Mutex::new(()),
        maintainer: writer::Background::new(writer::Job::Maintain),
        schedule: Mutex::new(schedule),
        active: Mutex::new(Default::default()),
        dirty_since: Mutex::new(None),
        fsync_debt: Default::default(),
    });
    tracing::debug!(path = %snapshot_path.display(), epoch, entries = report.snapshot_entries,
        records = report.journal_records, "opened session store");
    Ok((shared, report))
}

/// Loads the snapshot and the journal (whose OS lock the caller holds), repairing and
/// quarantining as the settings allow. `None` if the journal was corrupt and replaced: a copy
/// went aside, and a new file with the whole records before the damage took its place, to be
/// loaded in turn.
fn load(
    config: &StoreBuilder,
    snapshot_path: &Path,
    journal: Arc<JournalFile>,
    report: &mut OpenReport,
    early: Option<crate::snapshot::Early>,
) -> Result<Option<View>> {
    // Every file is read and checked before anything is repaired or set aside, so that an
    // open that fails on what it finds (with `recover` too) leaves the files as they were.
    let snapshot_found = crate::snapshot::snapshot_found(snapshot_path);
    let loaded = match early.and_then(|early| early.if_current(snapshot_path)) {
        Some(state) => Ok(state),
        None => load_snapshot(snapshot_path),
    };
    let (mut state, corrupt_snapshot) = match loaded {
        Ok(state) => (state, None),
        Err(e) if e.is_corrupt() && config.recover => (State::new(), Some(e)),
        Err(e) => return Err(e),
    };
    let journal_path = journal.path.clone();
    let read = |j: &JournalFile| {
        j.read_from(0)
            .map_err(|e| Error::io(Operation::ReadJournal, "read", snapshot_path, &j.path, e))
    };
    let whole = read(&journal)?;
    let FoundFence {
        end: fence,
        unreadable,
    } = find_fence(config, snapshot_path, &journal, &whole)?;
    let file_len = whole.len() as u64;
    let bytes = &whole[..fence.flatten().map_or(whole.len(), |end| end as usize)];
    let parsed = match parse_journal(&journal_path, bytes) {
        Ok(parsed) => parsed,
        Err(Error::CorruptJournal { offset, .. }) if config.recover => {
            // Keep every whole record before the damage; the damaged file goes aside whole.
            let keep = &bytes[..usize::try_from(offset)
                .unwrap_or(bytes.len())
                .min(bytes.len())];
            let prefix = match parse_journal(&journal_path, keep) {
                Ok(p) if p.header.is_some() => keep,
                _ => &[][..],
            };
            // Copied aside, then replaced by an atomic rename, all under the damaged file's
            // lock: the path always names a journal, and another process waiting for the
            // lock finds the file replaced and moves to the new one, as after a compaction.
            let aside = crate::snapshot::quarantine_copy(&journal_path, &whole)?;
            tracing::error!(path = %journal_path.display(), aside = %aside.display(), offset,
                "quarantined a corrupt journal, keeping the records before the damage");
            report.quarantined.push(aside);
            // A fenced batch, past the damage, goes with the rest of the file.
            if let Some(Some(end)) = fence {
                report.fenced_batch_bytes = Some(file_len - end);
            }
            #[cfg(test)]
            crate::hooks::reached(crate::hooks::Point::JournalRecovery, &journal_path);
            AtomicWriter::new()
                .durability(Durability::Durable)
                .write(&journal_path, prefix)
                .map_err(|e| Error::AtomicWrite {
                    op: Operation::Open,
                    step: "replace the corrupt journal with its whole records",
                    path: journal_path.clone(),
                    source: e,
                })?;
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut parsed: ParsedJournal = parsed;
    let lost = match crate::snapshot::expect_snapshot(
        snapshot_path,
        snapshot_found,
        &journal_path,
        parsed.header.as_ref(),
    ) {
        Ok(()) => None,
        Err(e) if config.recover => Some(e),
        Err(e) => return Err(e),
    };
    // Checked: from here on only an I/O error fails the open, after the repairs before it.
    if let Some(e) = unreadable {
        let fence_path = crate::fence::path_for(&journal_path);
        let aside = quarantine(&fence_path)?;
        tracing::error!(path = %fence_path.display(), aside = %aside.display(), error = %e,
            "quarantined a journal fence that could not be read; a failed batch it hid \
             may be applied");
        report.quarantined.push(aside);
    }
    if let Some(e) = corrupt_snapshot {
        let aside = quarantine(snapshot_path)?;
        tracing::error!(path = %snapshot_path.display(), aside = %aside.display(), error = %e,
            "quarantined a corrupt snapshot");
        report.quarantined.push(aside);
        write_empty_snapshot(snapshot_path)?;
    }
    if let Some(e) = lost {
        tracing::error!(path = %snapshot_path.display(), error = %e,
            "the snapshot was lost; going on with the journal's entries only");
        report.snapshot_lost = true;
        write_empty_snapshot(snapshot_path)?;
    }
    report.snapshot_entries = state.len();
    let snapshot_bytes = fs::metadata(snapshot_path).map(|m| m.len()).unwrap_or(0);
    if let Some(end) = fence {
        cut_fenced_batch(snapshot_path, &journal, end, file_len, report)?;
    }
    if let Some(torn) = parsed.torn_tail {
        journal
            .truncate(torn.offset)
            .and_then(|()| journal.sync())
            .map_err(|e| Error::io(Operation::Open, "truncate", snapshot_path, &journal_path, e))?;
        tracing::warn!(path = %journal_path.display(), offset = torn.offset, len = torn.len,
            "cut a torn journal tail");
        report.torn_tail_bytes = Some(torn.len);
        parsed.valid_len = torn.offset;
    }
    let (epoch, offset, lines) = match parsed.header {
        Some(header) => (header.epoch, parsed.valid_len, parsed.records.len() + 1),
        None => {
            // A new (or emptied) journal gets its header now, under the lock.
            let epoch = fresh_epoch();
            let header = JournalHeader::new(epoch).encode_line();
            journal
                .truncate(0)
                .and_then(|()| journal.append(header.as_bytes()))
                .and_then(|()| journal.sync())
                .and_then(|()| sync_dir(fs_dir(dir_of(&journal_path))))
                .map_err(|e| {
                    Error::io(
                        Operation::Open,
                        "initialise",
                        snapshot_path,
                        &journal_path,
                        e,
                    )
                })?;
            (epoch, header.len() as u64, 1)
        }
    };
    let mut seqs = SeqTracker::new();
    let replay = state.replay(&parsed.records, &mut seqs);
    report.journal_records = replay.applied;
    Ok(Some(View {
        state,
        journal,
        offset,
        lines,
        epoch,
        seqs,
        snapshot_bytes,
    }))
}

/// Writes an empty snapshot (`{}`), durably, where `recover` found none it could use: every
/// process then reads the store as this one does, the journal's entries over nothing, instead
/// of finding a compacted journal without its snapshot. The caller holds the journal's lock.
fn write_empty_snapshot(snapshot_path: &Path) -> Result<()> {
    AtomicWriter::new()
        .durability(Durability::Durable)
        .write(snapshot_path, b"{}\n")
        .map(|_| ())
        .map_err(|e| Error::AtomicWrite {
            op: Operation::Open,
            step: "write an empty snapshot in place of the one set aside or lost",
            path: snapshot_path.to_path_buf(),
            source: e,
        })
}

/// What an open found of the journal's fence.
struct FoundFence {
    /// `Some(Some(end))` if a fence holds over the journal (a failed batch starts at `end`),
    /// `Some(None)` if it is stale, `None` if there is none (or none that can be read).
    end: Option<Option<u64>>,
    /// Why the fence cannot be read; with `recover` only, and the open sets it aside once
    /// every file has been checked.
    unreadable: Option<Error>,
}

/// Reads the journal's fence, if there is one, and checks it against the journal's `bytes`.
/// One that cannot be read is an error, or with `recover` reported for setting aside.
fn find_fence(
    config: &StoreBuilder,
    snapshot_path: &Path,
    journal: &JournalFile,
    bytes: &[u8],
) -> Result<FoundFence> {
    let fence_path = crate::fence::path_for(&journal.path);
    let none = |unreadable| FoundFence {
        end: None,
        unreadable,
    };
    let Some(file) = crate::fence::read(&fence_path)
        .map_err(|e| Error::io(Operation::Open, "read", snapshot_path, &fence_path, e))?
    else {
        return Ok(none(None));
    };
    match crate::fence::Fence::parse(&fence_path, &file) {
        Ok(fence) => Ok(FoundFence {
            end: Some(fence.end_of_file(bytes)),
            unreadable: None,
        }),
        Err(e) if e.is_corrupt() && config.recover => Ok(none(Some(e))),
        Err(e) => Err(e),
    }
}

/// Cuts the failed batch a fence keeps from readers out of the journal (whose exclusive lock
/// the caller holds, and which is `file_len` bytes long) at `end`, fsyncs the cut and removes
/// the fence; a stale fence (`end` `None`) is just removed.
fn cut_fenced_batch(
    snapshot_path: &Path,
    journal: &JournalFile,
    end: Option<u64>,
    file_len: u64,
    report: &mut OpenReport,
) -> Result<()> {
    let fence_path = crate::fence::path_for(&journal.path);
    let io = |step, subject: &Path, e| Error::io(Operation::Open, step, snapshot_path, subject, e);
    if let Some(end) = end {
        let len = file_len.saturating_sub(end);
        journal
            .truncate(end)
            .and_then(|()| journal.sync())
            .map_err(|e| io("cut the fenced batch out of", &journal.path, e))?;
        tracing::warn!(path = %journal.path.display(), offset = end, len,
            "cut a failed batch, fenced off by its writer, out of the journal");
        report.fenced_batch_bytes = Some(len);
    }
    crate::fence::remove(&fence_path).map_err(|e| io("remove", &fence_path, e))?;
    Ok(())
}

/// Brings `view` up to date: reads what was appended to its journal since, or reloads the
/// whole store if a compaction replaced the journal. The caller holds the journal's lock, or
/// reads with [`catch_up_to`] only what is final.
pub(crate) fn catch_up(shared: &Shared, view: &mut View) -> Result<()> {
    catch_up_to(shared, view, None)
}

/// [`catch_up`], reading no further than `end` if given.
pub(crate) fn catch_up_to(shared: &Shared, view: &mut View, end: Option<u64>) -> Result<()> {
    let current = view
        .journal
        .is_current()
        .map_err(shared.journal_io(Operation::ReadJournal, "stat"))?;
    if !current {
        match next_view(shared, &Position::of(view))? {
            NextView::Follow(follow) => {
                let read = follow.bytes_read;
                drop(follow.apply_to(view));
                shared.followed(read);
            }
            NextView::Reload(fresh) => {
                *view = fresh;
                shared.reloaded();
            }
        }
        return Ok(());
    }
    let mut bytes = view
        .journal
        .read_range(view.offset, end.unwrap_or(u64::MAX))
        .map_err(shared.journal_io(Operation::ReadJournal, "read"))?;
    if bytes.is_empty() {
        return Ok(());
    }
    // Looked for only when there is something new to read: a failed batch behind a fence is
    // never applied.
    if let Some(fence) = crate::fence::current(shared, Operation::ReadJournal)?
        && let Some(end) = fence.end_in(view.epoch, &bytes, view.offset)
    {
        bytes.truncate(usize::try_from(end - view.offset).unwrap_or(bytes.len()));
        if bytes.is_empty() {
            return Ok(());
        }
    }
    shared.count(|c| c.journal_bytes_read += bytes.len() as u64);
    // A torn tail here is an append in flight (or a crash leftover the writer will cut); only
    // whole lines count.
    let parsed =
        crate::journal::parse_records(&shared.journal_path, &bytes, view.offset, view.lines + 1)?;
    view.state.replay(&parsed.records, &mut view.seqs);
    view.lines += parsed.records.len();
    view.offset = parsed.valid_len;
    Ok(())
}

/// Where a view stands in its journal: what [`next_view`] starts from.
pub(crate) struct Position {
    journal: Arc<JournalFile>,
    offset: u64,
    epoch: u64,
    lines: usize,
}

impl Position {
    pub(crate) fn of(view: &View) -> Position {
        Position {
            journal: view.journal.clone(),
            offset: view.offset,
            epoch: view.epoch,
            lines: view.lines,
        }
    }
}

/// How a view on a replaced journal reaches the files that replaced it.
pub(crate) enum NextView {
    /// The new journal continues the view's own: a few records bring the view there.
    Follow(Follow),
    /// The whole store, loaded again from the files.
    Reload(View),
}

/// The records that take a view from its replaced journal to the new one
/// ([`JournalBase`](crate::JournalBase)), and where the view then stands.
pub(crate) struct Follow {
    journal: Arc<JournalFile>,
    /// The rest of the replaced journal up to the compaction's offset, then the new journal's
    /// records past what the view had read; in file order.
    records: Vec<JournalRecord>,
    offset: u64,
    lines: usize,
    epoch: u64,
    snapshot_bytes: u64,
    /// For a view behind the compaction's offset, that offset: the replaced journal's records
    /// up to it are still to be read, and go first.
    replaced_to: Option<u64>,
    /// Journal bytes read, of both files.
    pub(crate) bytes_read: u64,
}

impl Follow {
    /// Reads the replaced journal from the view's offset up to the compaction's, if the view
    /// is behind it, and puts those records first. The file is still open in this process,
    /// and nobody appends to it any more. False if it does not read as the base says: not
    /// whole lines up to that offset.
    fn read_replaced(&mut self, from: &Position) -> bool {
        let Some(to) = self.replaced_to.take() else {
            return true;
        };
        let Ok(rest) = from.journal.read_range(from.offset, to) else {
            return false;
        };
        self.bytes_read += rest.len() as u64;
        let path = &from.journal.path;
        match crate::journal::parse_records(path, &rest, from.offset, from.lines + 1) {
            Ok(old) if old.valid_len == to => {
                self.records.splice(0..0, old.records);
                true
            }
            _ => false,
        }
    }

    /// Moves `view` to the new journal. Records the view already applied (another thread may
    /// have read further into the replaced journal meanwhile) are skipped as repeats. Returns
    /// the replaced journal's handle, for the caller to close after letting go of the view's
    /// lock: if it is the last, the kernel frees the file then.
    pub(crate) fn apply_to(self, view: &mut View) -> Arc<JournalFile> {
        view.state.replay(&self.records, &mut view.seqs);
        view.offset = self.offset;
        view.lines = self.lines;
        view.epoch = self.epoch;
        view.snapshot_bytes = self.snapshot_bytes;
        std::mem::replace(&mut view.journal, self.journal)
    }
}

/// After a compaction replaced the journal a view stands in: follows it by reading journals
/// only if the new journal continues the view's own, else loads the store again.
pub(crate) fn next_view(shared: &Shared, from: &Position) -> Result<NextView> {
    // Set once the replaced journal did not read as the new one's base says.
    let mut reload = false;
    // The snapshot parsed with the lock let go, as an open parses it, once a reload is due.
    let mut early = None;
    let mut parsed_early = false;
    loop {
        let journal = JournalFile::open(&shared.journal_path, false)
            .map(Arc::new)
            .map_err(shared.journal_io(Operation::ReadJournal, "open"))?;
        // The compactor renames the snapshot before the journal, and holds the old journal's
        // lock until both are in place; taking the new journal's lock orders us after it, and
        // keeps the files from being replaced again while they are read.
        let locked = journal
            .lock(shared.config.lock_timeout, &|| shared.lock_waited())
            .map_err(shared.journal_io(Operation::ReadJournal, "lock"))?;
        if !journal.is_current().unwrap_or(false) {
            continue;
        }
        #[cfg(test)]
        crate::hooks::reached(crate::hooks::Point::Reloading, &shared.journal_path);
        let bytes = journal
            .read_from(0)
            .map_err(shared.journal_io(Operation::ReadJournal, "read"))?;
        let end = crate::fence::current(shared, Operation::ReadJournal)?
            .and_then(|fence| fence.end_of_file(&bytes))
            .map_or(bytes.len(), |end| end as usize);
        let parsed = parse_journal(&shared.journal_path, &bytes[..end])?;
        let snapshot_bytes = || {
            fs::metadata(&shared.snapshot_path)
                .map(|m| m.len())
                .unwrap_or(0)
        };
        if !reload && let Some(mut follow) = follow(from, &journal, &parsed) {
            follow.bytes_read += bytes.len() as u64;
            follow.snapshot_bytes = snapshot_bytes();
            // The replaced journal is read with the new one's lock let go: nobody appends to
            // it any more, and a view far behind may need megabytes of it.
            drop(locked);
            if follow.read_replaced(from) {
                return Ok(NextView::Follow(follow));
            }
            astray::<()>(from);
            reload = true;
            continue;
        }
        if !parsed_early {
            parsed_early = true;
            drop(locked);
            early = crate::snapshot::Early::load(&shared.snapshot_path);
            continue;
        }
        let found = crate::snapshot::snapshot_found(&shared.snapshot_path);
        let mut state = match early
            .take()
            .and_then(|early| early.if_current(&shared.snapshot_path))
        {
            Some(state) => state,
            None => load_snapshot(&shared.snapshot_path)?,
        };
        crate::snapshot::expect_snapshot(
            &shared.snapshot_path,
            found,
            &shared.journal_path,
            parsed.header.as_ref(),
        )?;
        let snapshot_bytes = snapshot_bytes();
        drop(locked);
        let mut seqs = SeqTracker::new();
        state.replay(&parsed.records, &mut seqs);
        return Ok(NextView::Reload(View {
            state,
            journal,
            offset: parsed.valid_len,
            lines: parsed.records.len() + 1,
            epoch: parsed.header.map_or(0, |h| h.epoch),
            seqs,
            snapshot_bytes,
        }));
    }
}

/// The new journal `journal`'s whole records (`parsed`) past what `from` has read, if its
/// header names `from`'s journal as its base and the view's offset maps to a line of it;
/// `None` if not (then the store is loaded again). A view behind the compaction's offset
/// still has the rest of the replaced journal to read ([`Follow::read_replaced`]).
fn follow(from: &Position, journal: &Arc<JournalFile>, parsed: &ParsedJournal) -> Option<Follow> {
    let header = parsed.header?;
    let base = header.base?;
    if base.epoch != from.epoch || (base.dev, base.ino) != from.journal.id {
        return None;
    }
    let body = parsed
        .records
        .first()
        .map_or(parsed.valid_len, |r| r.offset);
    let behind = from.offset < base.offset;
    // Where, in the new journal, the records the view has not applied start.
    let skip_to = if behind {
        body
    } else {
        body + (from.offset - base.offset)
    };
    // The new journal's records are the replaced journal's from the offset on, byte for byte,
    // so the view's offset maps to the start of a line there, or to the end.
    let first = parsed.records.partition_point(|r| r.offset < skip_to);
    let on_a_line = match parsed.records.get(first) {
        Some(record) => record.offset == skip_to,
        None => skip_to == parsed.valid_len,
    };
    if !on_a_line {
        return astray(from);
    }
    Some(Follow {
        journal: journal.clone(),
        records: parsed.records[first..].to_vec(),
        replaced_to: behind.then_some(base.offset),
        offset: parsed.valid_len,
        lines: parsed.records.len() + 1,
        epoch: header.epoch,
        snapshot_bytes: 0,
        bytes_read: 0,
    })
}

/// A new journal that names the view's journal as its base, but whose records do not continue
/// it from the view's offset: not what a compaction writes. Reported, and the store is loaded
/// again, which reads the files as they are.
fn astray<T>(from: &Position) -> Option<T> {
    tracing::warn!(path = %from.journal.path.display(), offset = from.offset,
        "a compacted journal does not continue the journal it names as its base; \
         loading the whole store again");
    None
}

/// A new journal epoch: the time in milliseconds, so that epochs grow across re-creations.
fn fresh_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::hooks::{Point, on};
    use crate::testing::{assert_reached, keys};
    use crate::{Entry, JournalBase, JournalHeader, Store, journal_path_for};

    fn entry(n: usize) -> Entry {
        Entry::parse(&format!(r#"{{"sessionId":"s{n}","updatedAt":1}}"#)).unwrap()
    }

    /// Two handles on one store without automatic compaction, standing in for two processes:
    /// the first has written `k0` to `k2`, which the second has read. Also returns the
    /// journal's length then, where the second's view stands.
    fn two_handles(dir: &sessionkit_test_support::Scratch) -> (Store, Store, u64) {
        let snapshot = dir.join("sessions.json");
        let mut builder = Store::builder();
        builder.auto_compact(false);
        let (one, two) = (
            builder.open(&snapshot).unwrap(),
            builder.open(&snapshot).unwrap(),
        );
        for i in 0..3 {
            one.upsert(format!("k{i}"), entry(i)).unwrap();
        }
        assert_eq!(two.count().unwrap(), 3);
        let seen = len(one.journal_path());
        (one, two, seen)
    }

    fn len(path: &std::path::Path) -> u64 {
        fs::metadata(path).unwrap().len()
    }

    /// A process behind a compaction's starting offset reads the rest of the journal it holds
    /// open up to that offset, then the new journal; one ahead of it applies only the new
    /// journal's records past the ones it had read. Either way it follows the compaction by
    /// reading exactly those journals, never the snapshot, and sees what the compacting
    /// process sees.
    #[test]
    fn a_view_follows_a_compaction_from_behind_and_from_ahead() {
        let dir = sessionkit_test_support::Scratch::new("follow");
        let (one, two, seen) = two_handles(&dir);
        let journal = one.journal_path().to_path_buf();
        // Behind: `two` has not read these two records when `one` compacts.
        for i in 3..5 {
            one.upsert(format!("k{i}"), entry(i)).unwrap();
        }
        let offset = len(&journal);
        assert!(!one.compact().unwrap().superseded);
        let read = two.counters().journal_bytes_read;
        assert_eq!(keys(&two), ["k0", "k1", "k2", "k3", "k4"]);
        assert_reached(&two, 1);
        assert_eq!(
            two.counters().journal_bytes_read - read,
            (offset - seen) + len(&journal)
        );

        // Ahead: once `one`'s compaction has taken its offset, `two` writes (so its view is
        // past the offset), then `one` writes what `two` has not read.
        let (two_then, one_then) = (two.clone(), one.clone());
        on(Point::CompactionStarted, one.path(), move || {
            two_then.upsert("ahead", entry(5)).unwrap();
            one_then.upsert("after", entry(6)).unwrap();
        });
        assert!(!one.compact().unwrap().superseded);
        let read = two.counters().journal_bytes_read;
        let new_journal = fs::read(&journal).unwrap();
        assert_eq!(
            new_journal.iter().filter(|&&b| b == b'\n').count(),
            3,
            "the new journal holds a header and the two records"
        );
        assert_eq!(keys(&two), keys(&one));
        assert_eq!(keys(&one).len(), 7);
        let counters = two.counters();
        assert_eq!(
            (counters.followed_compactions, counters.reloads),
            (2, 0),
            "{counters:?}"
        );
        assert_eq!(counters.journal_bytes_read - read, new_journal.len() as u64);
        drop((one, two));
        let reopened = Store::open(dir.join("sessions.json")).unwrap();
        assert_eq!(reopened.count().unwrap(), 7);
    }

    /// Opening a store parses its snapshot before it takes the journal's lock: another
    /// process's writer goes on meanwhile (here with a lock timeout far shorter than any
    /// wait), and the opened store has its write.
    #[test]
    fn an_open_parses_the_snapshot_without_holding_up_other_writers() {
        let dir = sessionkit_test_support::Scratch::new("open-unlocked");
        let snapshot = dir.join("sessions.json");
        let other = Store::builder()
            .lock_timeout(Duration::from_millis(100))
            .open(&snapshot)
            .unwrap();
        for i in 0..3 {
            other.upsert(format!("k{i}"), entry(i)).unwrap();
        }
        other.compact().unwrap();
        let wrote = Arc::new(Mutex::new(None));
        let (writer, result) = (other.clone(), wrote.clone());
        on(Point::SnapshotParsed, &snapshot, move || {
            *result.lock().unwrap() = Some(writer.upsert("meanwhile", entry(9)).map(|_| ()));
        });
        let opened = Store::open(&snapshot).unwrap();
        let wrote = wrote.lock().unwrap().take();
        assert!(matches!(wrote, Some(Ok(()))), "{wrote:?}");
        assert_eq!(keys(&opened), ["k0", "k1", "k2", "meanwhile"]);
    }

    /// A new journal whose header names another file as its base, or names the view's own
    /// journal but does not continue it from the view's offset (not what a compaction
    /// writes), is not followed: the store is loaded again, from the files as they are.
    #[test]
    fn a_view_reloads_when_the_new_journal_does_not_continue_its_own() {
        type Shift = fn(JournalBase, u64) -> JournalBase;
        let cases: [(&str, Shift); 3] = [
            ("another file", |b, _| {
                JournalBase::new(b.epoch, b.dev, b.ino + 1, b.offset)
            }),
            ("an offset past the end", |b, _| {
                JournalBase::new(b.epoch, b.dev, b.ino, b.offset + 1000)
            }),
            ("an offset inside a line", |b, seen| {
                JournalBase::new(b.epoch, b.dev, b.ino, seen - 3)
            }),
        ];
        for (case, shift) in cases {
            let dir = sessionkit_test_support::Scratch::new("follow-astray");
            let (one, two, seen) = two_handles(&dir);
            let journal = one.journal_path().to_path_buf();
            one.upsert("k3", entry(3)).unwrap();
            assert!(!one.compact().unwrap().superseded);
            let bytes = fs::read(&journal).unwrap();
            let parsed = crate::parse_journal(&journal, &bytes).unwrap();
            let header = parsed.header.unwrap();
            let base = header.base.expect("a compaction writes a base");
            let mut text = JournalHeader::with_base(header.epoch, shift(base, seen)).encode_line();
            let body = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
            text.push_str(std::str::from_utf8(&bytes[body..]).unwrap());
            fs::write(&journal, text).unwrap();

            // The reload parses the snapshot with the journal's lock let go, as an open does:
            // another process writes meanwhile, with a lock timeout far shorter than any wait.
            let snapshot = dir.join("sessions.json");
            let three = Store::builder()
                .lock_timeout(Duration::from_millis(100))
                .open(&snapshot)
                .unwrap();
            let wrote = Arc::new(Mutex::new(None));
            let (writer, result) = (three.clone(), wrote.clone());
            on(Point::SnapshotParsed, &snapshot, move || {
                *result.lock().unwrap() = Some(writer.upsert("meanwhile", entry(9)).map(|_| ()));
            });
            assert_eq!(keys(&two), ["k0", "k1", "k2", "k3", "meanwhile"], "{case}");
            let wrote = wrote.lock().unwrap().take();
            assert!(matches!(wrote, Some(Ok(()))), "{case}: {wrote:?}");
            assert_reached(&two, 2);
        }
    }

    /// While a damaged journal is recovered, its path names the damaged file, still locked, so
    /// another opener waits for the lock (here it gives up after its timeout). Recovery used to
    /// rename the file away first: an opener in that window found no journal, created one and
    /// took its lock, and the recovery then replaced that file under it.
    #[test]
    fn a_journal_under_recovery_is_never_missing_for_another_opener() {
        let dir = sessionkit_test_support::Scratch::new("recovery-window");
        let snapshot = dir.join("sessions.json");
        let journal = journal_path_for(&snapshot);
        {
            let store = Store::open(&snapshot).unwrap();
            for key in ["a", "b"] {
                let entry = Entry::parse(r#"{"sessionId":"s","updatedAt":1}"#).unwrap();
                store.upsert(key, entry).unwrap();
            }
        }
        // A damaged line in the middle: corrupt, not a torn tail.
        let mut damaged = fs::read(&journal).unwrap();
        let last_line = {
            let body = &damaged[..damaged.len() - 1];
            let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            damaged[start..].to_vec()
        };
        damaged.extend_from_slice(b"{not a record}\n");
        damaged.extend_from_slice(&last_line);
        fs::write(&journal, &damaged).unwrap();

        let seen = Arc::new(Mutex::new(None));
        let (other_snapshot, other_journal, seen_in_hook) =
            (snapshot.clone(), journal.clone(), seen.clone());
        crate::hooks::on(crate::hooks::Point::JournalRecovery, &journal, move || {
            let other = Store::builder()
                .recover(true)
                .lock_timeout(Duration::from_millis(20))
                .open(&other_snapshot);
            let outcome = match other {
                Ok(_) => "another opener got in".to_owned(),
                Err(e) if e.is_timeout() => "timed out".to_owned(),
                Err(e) => format!("failed: {e}"),
            };
            let bytes = fs::read(&other_journal).unwrap_or_default();
            *seen_in_hook.lock().unwrap() = Some((outcome, bytes));
        });
        let store = Store::builder().recover(true).open(&snapshot).unwrap();
        let (outcome, bytes) = seen.lock().unwrap().take().expect("the hook ran");
        assert_eq!(outcome, "timed out");
        assert!(
            bytes == damaged,
            "the journal's path did not name the damaged file"
        );
        assert_eq!(store.open_report().quarantined.len(), 1);
        assert_eq!(store.count().unwrap(), 2);

        // Once the recovery is done, the other opener gets in, finds nothing more to recover,
        // and sees the same records.
        let other = Store::builder().recover(true).open(&snapshot).unwrap();
        assert!(other.open_report().quarantined.is_empty());
        assert_eq!(other.count().unwrap(), 2);
        let corrupt: Vec<String> = dir
            .names()
            .into_iter()
            .filter(|n| n.contains(".corrupt."))
            .collect();
        assert_eq!(corrupt.len(), 1, "{corrupt:?}");
    }
}
