//! The writer thread: group commit. Every update of a store in this process goes through one
//! thread, which takes all pending updates as one batch, appends them to the journal with one
//! write and (in durable mode) one fsync under the journal's OS lock, and then answers each
//! caller.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use crate::entry::{Activity, Entry, Patch};
use crate::error::{Error, Operation, Result};
use crate::journal::{EvictReason, JournalRecord, Op, Record};
use crate::schedule::PassEnd;
use crate::store::{Ack, Shared, SyncMode, lock};

/// One update as a caller asked for it.
#[derive(Debug)]
pub(crate) enum Update {
    Upsert {
        key: String,
        entry: Entry,
        /// `None`: the entry's `updatedAt` is written as given; else decided by the rule.
        activity: Option<Activity>,
    },
    Patch {
        key: String,
        patch: Patch,
        activity: Activity,
    },
    Touch {
        key: String,
    },
    Delete {
        key: String,
        reason: Option<EvictReason>,
        /// Delete only if the entry's `updatedAt` is still this (maintenance's evictions,
        /// planned a moment earlier); otherwise write nothing.
        if_updated_at: Option<Option<i64>>,
    },
}

/// Where the answer goes.
#[derive(Debug)]
pub(crate) enum Reply {
    Sync(mpsc::Sender<Result<Ack>>),
    /// One of many answers on one channel, with the request's index (maintenance's evictions:
    /// a channel each would cost a few KiB per evicted entry).
    Indexed(mpsc::Sender<(usize, Result<Ack>)>, usize),
    #[cfg(feature = "tokio")]
    Async(tokio::sync::oneshot::Sender<Result<Ack>>),
}

impl Reply {
    fn send(self, answer: Result<Ack>) {
        // A caller that stopped waiting (a dropped future) does not care.
        match self {
            Reply::Sync(tx) => {
                let _ = tx.send(answer);
            }
            Reply::Indexed(tx, index) => {
                let _ = tx.send((index, answer));
            }
            #[cfg(feature = "tokio")]
            Reply::Async(tx) => {
                let _ = tx.send(answer);
            }
        }
    }
}

/// An update and where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    update: Update,
    reply: Reply,
}

impl Request {
    pub(crate) fn new(update: Update, reply: Reply) -> Request {
        Request { update, reply }
    }
}

/// The sending side of the writer's queue.
#[derive(Debug)]
pub(crate) struct Sender {
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Sender {
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops the writer once it has committed what was queued, and waits for it, then for
    /// every background job queued or running. The caller holds the last sender.
    pub(crate) fn close(self) {
        let Sender {
            tx,
            shared,
            thread: writer,
        } = self;
        drop(tx);
        if let Some(writer) = writer.filter(|w| w.thread().id() != thread::current().id()) {
            // A panic of the writer was reported by the panic hook; nothing is left to wait for.
            let _ = writer.join();
        }
        // With the writer gone only a maintenance pass starts a job (a compaction, after its
        // evictions' batches), and a compaction starts none: the passes first.
        shared.maintainer.wait_idle();
        shared.compactor.wait_idle();
    }

    pub(crate) fn send(&self, request: Request) -> Result<()> {
        self.tx.send(request).map_err(|_| stopped(&self.shared))
    }
}

/// The error for a writer that is gone.
pub(crate) fn stopped(shared: &Shared) -> Error {
    Error::WriterStopped {
        path: shared.snapshot_path.clone(),
    }
}

/// Starts the writer thread, which first runs `open` (loading the store) and then, if that
/// succeeded, commits the updates sent to it; returns what `open` returned and the sending
/// side. The thread stops once every [`Sender`] is dropped and the queue is empty.
///
/// The writer builds the state itself because it is the thread that later replaces and
/// evicts entries: with glibc's per-thread arenas, memory freed by an eviction is then
/// reused by the entries the writer creates next, instead of staying behind in the arena of
/// whichever thread happened to open the store.
pub(crate) fn start<T: Send + 'static>(
    path: &std::path::Path,
    open: impl FnOnce() -> Result<(Arc<Shared>, T)> + Send + 'static,
) -> Result<(Sender, T)> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("sessionkit-store-writer".to_owned())
        .spawn(move || {
            let opened = open();
            let shared = opened.as_ref().ok().map(|(shared, _)| shared.clone());
            let _ = ready_tx.send(opened);
            if let Some(shared) = shared {
                run(&shared, &rx);
            }
        })
        .map_err(|e| {
            Error::io(
                Operation::Open,
                "start the writer thread for",
                path,
                path,
                e,
            )
        })?;
    // No answer means the thread panicked while opening.
    let (shared, opened) = ready_rx.recv().map_err(|_| Error::WriterStopped {
        path: path.to_path_buf(),
    })??;
    let thread = Some(thread);
    Ok((Sender { tx, shared, thread }, opened))
}

fn run(shared: &Arc<Shared>, rx: &Receiver<Request>) {
    let max = shared.config.max_batch;
    loop {
        let first = match rx.recv_timeout(wake_after(shared)) {
            Ok(request) => request,
            Err(RecvTimeoutError::Timeout) => {
                if pending_sync_due(shared).is_some_and(|due| due <= Instant::now()) {
                    sync_now(shared);
                }
                // After a failed fsync, here or on another thread, or a compaction's pause.
                maybe_compact(shared);
                maybe_maintain(shared);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        commit(shared, batch);
    }
    // The last handle is gone: owe no fsync, and try once more to make good a failed one.
    if pending_sync_due(shared).is_some() {
        sync_now(shared);
    }
    // Here, not on the compaction thread, which stops once no handle is left. A running
    // compaction may have taken its mark before the last failure: wait for it, then try once
    // more, whatever the pause after failed compactions says.
    while shared.fsync_debt.owed() {
        if shared
            .compacting
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        shared.count(|c| c.background_compactions += 1);
        compact_job(shared);
        if shared.fsync_debt.owed() {
            tracing::error!(path = %shared.snapshot_path.display(),
                "the last handle of the session store is gone with a failed fsync of its \
                 journal not made good; what was written before it may not survive a power loss");
        }
        break;
    }
}

/// How long the idle writer waits for a request before it looks for timed work: at most a
/// second, so that it also finds work that another thread left, such as a failed fsync of
/// `Store::maintain`'s batch whose repair could not start.
fn wake_after(shared: &Shared) -> Duration {
    // An fsync owed in interval mode is due an interval after the first write it covers.
    let sync = pending_sync_due(shared).map(|due| due.saturating_duration_since(Instant::now()));
    // A timed maintenance pass, or one to go on with.
    [sync, idle_wait(shared)]
        .into_iter()
        .flatten()
        .fold(crate::schedule::RETRY_AFTER, Duration::min)
}

/// When the owed fsync of interval mode is due, if one is owed.
fn pending_sync_due(shared: &Shared) -> Option<Instant> {
    let SyncMode::Interval(every) = shared.config.sync else {
        return None;
    };
    // An interval too long to add to the clock is due in a century; it is still owed, and
    // paid when the last handle goes.
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let dirty = lock(&shared.dirty_since);
    dirty.map(|since| {
        since
            .checked_add(every)
            .unwrap_or_else(|| since + CENTURY.min(every))
    })
}

fn sync_now(shared: &Shared) {
    let journal = shared.read().journal.clone();
    match journal.sync() {
        Ok(()) => {
            *lock(&shared.dirty_since) = None;
            shared.count(|c| c.fsyncs += 1);
        }
        Err(e) => {
            // Tried again an interval later, not at once: a failing disk would otherwise keep
            // the writer spinning on fsyncs (and the log filling) until it recovers.
            *lock(&shared.dirty_since) = Some(Instant::now());
            shared.fsync_failed();
            tracing::error!(path = %shared.journal_path.display(), error = %e,
                "interval fsync of the session journal failed; it is tried again an interval \
                 later, and the store compacts to be durable again");
        }
    }
}

/// [`Store::flush`](crate::Store::flush): fsyncs the journal under the batch lock, so that no
/// batch is half written and the owed fsync of interval mode is settled, then makes good a
/// failed fsync with a compaction in this thread.
pub(crate) fn flush(shared: &Arc<Shared>) -> Result<()> {
    let synced = {
        let _batch = shared.batch_lock.lock();
        let journal = shared.read().journal.clone();
        let synced = journal.sync();
        match &synced {
            Ok(()) => {
                *lock(&shared.dirty_since) = None;
                shared.count(|c| c.fsyncs += 1);
            }
            Err(e) => {
                shared.fsync_failed();
                tracing::error!(path = %shared.journal_path.display(), error = %e,
                    "flushing the session journal failed; the store compacts to be durable");
            }
        }
        synced
    };
    if !shared.fsync_debt.owed() {
        return Ok(());
    }
    // A compaction that another process supersedes makes nothing good here: its own tail
    // copy may have read pages this process failed to write. One more try, on its files.
    for _ in 0..2 {
        crate::compact::compact(shared)?;
        if !shared.fsync_debt.owed() {
            return Ok(());
        }
    }
    let source = synced.err().unwrap_or_else(|| {
        io::Error::other("an earlier fsync of the journal failed, and compactions were superseded")
    });
    Err(shared.journal_io(Operation::Flush, "fsync")(source))
}

/// What a batch resolved each request to.
enum Outcome {
    /// Write this record, then acknowledge.
    Write(Record),
    /// Nothing to write (deleting a missing key): acknowledge at once.
    Nothing,
    /// Refused before anything was written.
    Refused(Error),
}

impl Outcome {
    /// The answer once the batch is written: the record's `seq`, 0 for nothing written.
    fn answer(self) -> Result<u64> {
        match self {
            Outcome::Write(record) => Ok(record.seq),
            Outcome::Nothing => Ok(0),
            Outcome::Refused(e) => Err(e),
        }
    }
}

/// Writes one batch and answers its callers.
pub(crate) fn commit(shared: &Arc<Shared>, batch: Vec<Request>) {
    let _batch = shared.batch_lock.lock();
    let mut outcome_unknown = false;
    match write_batch(shared, &batch, &mut outcome_unknown) {
        Ok((outcomes, durable)) => {
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                request.reply.send(outcome.map(|seq| Ack { seq, durable }));
            }
        }
        Err(e) => {
            tracing::error!(path = %shared.snapshot_path.display(), error = %e,
                updates = batch.len(), "a batch of session updates failed");
            let shared_error = std::sync::Arc::new(e);
            for request in batch {
                let path = shared.snapshot_path.clone();
                let source = shared_error.clone();
                request.reply.send(Err(if outcome_unknown {
                    Error::BatchOutcomeUnknown { path, source }
                } else {
                    Error::Batch { path, source }
                }));
            }
        }
    }
    maybe_compact(shared);
    maybe_maintain(shared);
}

/// Writes a batch and applies it; each request's answer (its record's `seq`, 0 if there was
/// nothing to write) and whether the batch is durable. If it fails after writing and its bytes
/// can be neither cut back out nor fenced off, `outcome_unknown` is set.
fn write_batch(
    shared: &Arc<Shared>,
    batch: &[Request],
    outcome_unknown: &mut bool,
) -> Result<(Vec<Result<u64>>, bool)> {
    let io = |step: &'static str, e| shared.journal_io(Operation::WriteJournal, step)(e);
    // Lock the current journal, following compactions until the one locked is the one named.
    let locked = loop {
        let journal = shared.read().journal.clone();
        let locked = journal
            .lock(shared.config.lock_timeout, &|| shared.lock_waited())
            .map_err(|e| io("lock", e))?;
        if journal.is_current().map_err(|e| io("stat", e))? {
            break locked;
        }
        drop(locked);
        #[cfg(test)]
        crate::hooks::reached(
            crate::hooks::Point::WriterFoundJournalReplaced,
            &shared.journal_path,
        );
        // Reload a view still on the replaced file (the reload takes the new file's lock). A
        // view that another thread of this process moved on meanwhile is left alone: reading
        // it here would read another process's batch in flight with no lock held, and apply
        // it even if that batch then failed and was cut back out.
        if Arc::ptr_eq(&shared.read().journal, &journal) {
            shared.reload_from(&journal)?;
        }
    };
    let journal = locked.journal();
    // Under the lock nobody else appends: read what others wrote, and cut a torn tail a
    // crashed writer left, or a failed batch behind a fence, so that this batch starts on a
    // fresh line. The batch is marked in flight before the view's lock is let go: readers of
    // this process read no further.
    let (start, epoch, _appending) = {
        let mut view = shared.write();
        crate::open::catch_up(shared, &mut view)?;
        let len = journal.len().map_err(|e| io("stat", e))?;
        let cut = len > view.offset;
        if cut {
            tracing::warn!(path = %shared.journal_path.display(), offset = view.offset,
                len = len - view.offset, "cut a torn journal tail before appending");
            journal
                .truncate(view.offset)
                .map_err(|e| io("truncate", e))?;
        }
        crate::fence::take_down(shared, journal, cut)?;
        (view.offset, view.epoch, journal.appending(view.offset))
    };

    let now = shared.now_ms();
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut offsets = Vec::with_capacity(batch.len());
    // Each written patch's result, merged once here and applied as is below.
    let mut merged: Vec<Option<Entry>> = Vec::with_capacity(batch.len());
    let mut text = String::new();
    {
        let view = shared.read();
        // Later updates of one batch see the earlier ones.
        // The entries as the batch leaves them so far, borrowed where possible: an eviction
        // batch of thousands of keys copies no entry.
        let mut pending: HashMap<&str, Option<Cow<'_, Entry>>> = HashMap::new();
        for request in batch {
            let current = |key: &str| -> Option<&Entry> {
                match pending.get(key) {
                    Some(entry) => entry.as_deref(),
                    None => view.state.get(key),
                }
            };
            let (key, outcome, after) = match &request.update {
                Update::Upsert {
                    key,
                    entry,
                    activity,
                } => {
                    // A later patch in this batch merges onto the entry as the journal holds
                    // it, as a replay of the file would.
                    let after = match activity {
                        None => entry.minified(),
                        Some(activity) => Cow::Owned(
                            entry
                                .stamped(current(key), now, *activity)
                                .minified()
                                .into_owned(),
                        ),
                    };
                    let record = Record::upsert(next_seq(shared), shared.writer, key, &after);
                    (key, Outcome::Write(record), Some(Some(after)))
                }
                Update::Patch {
                    key,
                    patch,
                    activity,
                } => {
                    let existing = current(key);
                    let resolved = patch.resolve(existing, now, *activity);
                    let next = match existing {
                        Some(existing) => existing.merge_patch(&resolved),
                        None => Entry::empty().merge_patch(&resolved),
                    };
                    let record = Record::patch(next_seq(shared), shared.writer, key, resolved);
                    (key, Outcome::Write(record), Some(Some(Cow::Owned(next))))
                }
                Update::Touch { key } => match current(key) {
                    Some(existing) => {
                        let resolved =
                            Patch::empty().resolve(Some(existing), now, Activity::Advance);
                        let next = existing.merge_patch(&resolved);
                        let record = Record::patch(next_seq(shared), shared.writer, key, resolved);
                        (key, Outcome::Write(record), Some(Some(Cow::Owned(next))))
                    }
                    None => (
                        key,
                        Outcome::Refused(Error::NoSuchEntry {
                            path: shared.snapshot_path.clone(),
                            key: key.clone(),
                        }),
                        None,
                    ),
                },
                Update::Delete {
                    key,
                    reason,
                    if_updated_at,
                } => match current(key) {
                    // Maintenance's eviction (the conditional one) applies only to the entry
                    // as planned, and never to one that became active since.
                    Some(existing)
                        if if_updated_at.is_none_or(|at| {
                            at == existing.updated_at() && !shared.is_active(key, existing)
                        }) =>
                    {
                        let seq = next_seq(shared);
                        let record = match reason {
                            Some(reason) => Record::evict(seq, shared.writer, key, *reason),
                            None => Record::delete(seq, shared.writer, key),
                        };
                        (key, Outcome::Write(record), Some(None))
                    }
                    _ => (key, Outcome::Nothing, None),
                },
            };
            if let Outcome::Write(record) = &outcome {
                offsets.push(start + text.len() as u64);
                record.encode_line(&mut text);
                merged.push(match (&record.op, &after) {
                    (Op::Patch(_), Some(Some(next))) => Some(next.clone().into_owned()),
                    _ => None,
                });
            }
            if let Some(after) = after {
                pending.insert(key.as_str(), after);
            }
            outcomes.push(outcome);
        }
    }
    if text.is_empty() {
        // Nothing written: the answers are as durable as what this process wrote before.
        let durable = match shared.config.sync {
            SyncMode::EveryBatch => true,
            SyncMode::Interval(_) => lock(&shared.dirty_since).is_none(),
            SyncMode::Never => false,
        };
        return Ok((outcomes.into_iter().map(Outcome::answer).collect(), durable));
    }

    let written = journal
        .append(text.as_bytes())
        .map_err(|e| ("append to", e));
    #[cfg(test)]
    crate::hooks::reached(crate::hooks::Point::BatchAppended, &shared.journal_path);
    let fsync = || journal.sync().map_err(|e| ("fsync", e));
    let synced = written.and_then(|()| match shared.config.sync {
        SyncMode::EveryBatch => fsync().map(|()| true),
        SyncMode::Interval(every) => {
            let mut dirty = lock(&shared.dirty_since);
            let since = *dirty.get_or_insert_with(Instant::now);
            if since.elapsed() >= every {
                fsync()?;
                *dirty = None;
                Ok(true)
            } else {
                Ok(false)
            }
        }
        SyncMode::Never => Ok(false),
    });
    let durable = match synced {
        Ok(durable) => durable,
        Err((step, e)) => {
            if step == "fsync" {
                // The compaction that makes it good starts after this batch (`commit`).
                shared.fsync_failed();
            }
            // The batch failed: take its bytes back out, so that no caller is told "failed"
            // about an update a later reader would still find (after a failed fsync the data
            // may sit in the page cache). The lock keeps everyone else out meanwhile; if the
            // cut fails, a fence keeps every reader from the bytes until the next writer cuts
            // them. In the durable mode the cut is fsynced too: another file's fsync may have
            // made the batch's bytes and the journal's length durable (ext4 commits every
            // inode's metadata, and with it their data, at once), and an unsynced cut would
            // then let them come back after a power cut. A cut that cannot be synced is
            // fenced as one that cannot be made.
            let durable_cut = || match shared.config.sync {
                SyncMode::EveryBatch => journal.sync(),
                SyncMode::Interval(_) | SyncMode::Never => Ok(()),
            };
            if let Err(cut) = journal.truncate(start).and_then(|()| durable_cut()) {
                let first = outcomes.iter().find_map(|o| match o {
                    Outcome::Write(record) => Some(record.seq),
                    _ => None,
                });
                let fence = crate::fence::Fence {
                    epoch,
                    offset: start,
                    writer: shared.writer,
                    seq: first.unwrap_or_default(),
                };
                match crate::fence::put_up(shared, fence) {
                    Ok(()) => tracing::error!(path = %shared.journal_path.display(),
                        error = %cut, offset = start,
                        "could not take a failed batch back out of the journal; fenced it off \
                         until the next write cuts it"),
                    Err(fenced) => {
                        tracing::error!(path = %shared.journal_path.display(),
                            error = %cut, fence_error = %fenced, offset = start,
                            "could not take a failed batch back out of the journal, nor fence \
                             it off: any reader, in this process or another, may apply it");
                        *outcome_unknown = true;
                    }
                }
            }
            return Err(io(step, e));
        }
    };
    let updates = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Write(_)))
        .count() as u64;
    shared.count(|c| {
        c.batches += 1;
        c.updates += updates;
        c.journal_bytes += text.len() as u64;
        if durable {
            c.fsyncs += 1;
        }
    });
    let mut view = shared.write();
    let view = &mut *view;
    if view.offset != start {
        // A reader caught up on some of these lines already (readers stop where a batch of
        // this process starts, so this is a defence); read the rest like it did. The batch is
        // written and as durable as the mode promises whatever this read does, so its callers
        // hear so: a view left behind is brought up to date by the next read, or reports why.
        if let Err(e) = crate::open::catch_up(shared, view) {
            tracing::error!(path = %shared.journal_path.display(), error = %e,
                "could not read back a batch that was written; the next read tries again");
        }
        return Ok((outcomes.into_iter().map(Outcome::answer).collect(), durable));
    }
    // Apply the batch's own records rather than reading them back and parsing them again:
    // they are what a replay of the file parses (records round-trip through their encoding),
    // and under the journal lock nobody else appended since `start`.
    let mut written = Vec::with_capacity(offsets.len());
    let answers = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Outcome::Write(record) => {
                let seq = record.seq;
                view.lines += 1;
                written.push(JournalRecord {
                    line: view.lines,
                    offset: offsets[written.len()],
                    record,
                });
                Ok(seq)
            }
            other => other.answer(),
        })
        .collect();
    view.state
        .replay_merged(written.iter().zip(merged), &mut view.seqs);
    view.offset = start + text.len() as u64;
    Ok((answers, durable))
}

fn next_seq(shared: &Shared) -> u64 {
    shared
        .seq
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1
}

/// Starts a background compaction if the journal has grown past its threshold, or a failed
/// fsync is owed one.
fn maybe_compact(shared: &Arc<Shared>) {
    let due = shared.fsync_debt.owed() || (shared.config.auto_compact && past_threshold(shared));
    if due && claim_compaction(shared) && !shared.compactor.kick(shared) {
        shared
            .compacting
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Claims the process's one background compaction, unless one runs or compaction pauses
/// after failures; counts it if claimed.
fn claim_compaction(shared: &Shared) -> bool {
    let backing_off = !lock(&shared.schedule).compaction_may_start(shared.config.clock.instant());
    if backing_off
        || shared
            .compacting
            .swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        return false;
    }
    shared.count(|c| c.background_compactions += 1);
    true
}

/// True if the journal has grown to where compaction starts by itself.
fn past_threshold(shared: &Shared) -> bool {
    let (journal_bytes, snapshot_bytes) = {
        let view = shared.read();
        (view.offset, view.snapshot_bytes)
    };
    let threshold = shared
        .config
        .compact_min_bytes
        .max((snapshot_bytes as f64 * shared.config.compact_ratio) as u64);
    journal_bytes >= threshold
}

/// One background compaction, on the compaction thread; true if it finished, which frees its
/// scratch memory (rare: once per journal's length of updates).
fn compact_job(shared: &Arc<Shared>) -> bool {
    // Cleared however the compaction ends, a panic included, so the next can start.
    let running = ClearOnDrop(&shared.compacting);
    let outcome = crate::compact::compact(shared);
    let failed =
        lock(&shared.schedule).compaction_ended(outcome.is_ok(), shared.config.clock.instant());
    // The counters hear of the compaction once the next one may start.
    drop(running);
    match outcome {
        Ok(report) => !report.superseded,
        Err(e) => {
            shared.count(|c| c.failed_compactions += 1);
            tracing::warn!(path = %shared.snapshot_path.display(), error = %e,
                retry_in_ms = failed.map_or(0, |wait| wait.as_millis() as u64),
                "background compaction failed; it will be tried again");
            false
        }
    }
}

/// A maintenance pass that evicts at least this many entries is worth handing freed memory
/// back to the kernel for; a small pass (at a cap of 500, one every few dozen sessions) is not
/// worth the walk over the allocator's arenas, which holds up other threads' allocations.
const TRIM_AFTER_EVICTIONS: usize = 1024;

/// How long the idle writer waits for a request before it looks whether a background pass is
/// due; `None` if passes do not start by themselves.
fn idle_wait(shared: &Shared) -> Option<Duration> {
    use std::sync::atomic::Ordering;
    let config = shared
        .config
        .maintenance
        .as_ref()
        .filter(|m| m.runs_in_background())?;
    let running = shared.maintaining.load(Ordering::Acquire);
    lock(&shared.schedule).idle_wait(config, running, shared.config.clock.instant())
}

/// Starts a background maintenance pass (after a batch, or when idle) if no pass is running in
/// this process and the schedule says one is due.
fn maybe_maintain(shared: &Arc<Shared>) {
    use std::sync::atomic::Ordering;
    let Some(config) = shared
        .config
        .maintenance
        .as_ref()
        .filter(|m| m.runs_in_background())
    else {
        return;
    };
    let count = shared.read().state.len();
    let now = shared.config.clock.instant();
    let mut schedule = lock(&shared.schedule);
    if !schedule.pass_due(config, count, now) || shared.maintaining.swap(true, Ordering::AcqRel) {
        return;
    }
    schedule.pass_started(config, now);
    drop(schedule);
    shared.count(|c| c.background_passes += 1);
    if !shared.maintainer.kick(shared) {
        shared.maintaining.store(false, Ordering::Release);
    }
}

/// One background maintenance pass, on the maintenance thread; true if it evicted enough to
/// free much memory. Afterwards it sets when the next pass may start.
fn maintain_job(shared: &Arc<Shared>) -> bool {
    let running = ClearOnDrop(&shared.maintaining);
    let outcome = crate::maintain::run(shared, false);
    let count = shared.read().state.len();
    let now = shared.config.clock.instant();
    if let Err(e) = &outcome {
        tracing::warn!(path = %shared.snapshot_path.display(), error = %e,
            "a maintenance pass failed; the next one tries again");
    }
    let end = pass_end(&outcome);
    if let Some(config) = &shared.config.maintenance {
        lock(&shared.schedule).pass_ended(config, end, count, now);
    }
    // The hook hears of the pass once the next one may start.
    drop(running);
    outcome.is_ok_and(|report| {
        crate::maintain::announce(shared, &report);
        report.evicted() >= TRIM_AFTER_EVICTIONS
    })
}

/// How a pass ended, for the schedule. Stuck only if the cap could not evict what it had to
/// (warn mode, active or protected entries), not whenever the pass met such an entry: a pass
/// that met its cap while new entries kept arriving would otherwise hold the next pass until
/// the count grew by a second slack.
fn pass_end(outcome: &Result<crate::maintain::MaintenanceReport>) -> PassEnd {
    match outcome {
        Ok(report) => PassEnd {
            stuck: report.dry_run || report.cap_short,
            retry: report.incomplete,
        },
        Err(_) => PassEnd {
            stuck: true,
            retry: true,
        },
    }
}

/// What a background thread runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Job {
    Compact,
    Maintain,
}

impl Job {
    fn thread_name(self) -> &'static str {
        match self {
            Job::Compact => "sessionkit-store-compact",
            Job::Maintain => "sessionkit-store-maintain",
        }
    }

    /// Compaction is bulk work with no deadline, so it yields the CPU to everything else.
    /// Maintenance keeps the normal priority: it is what holds the registry at its cap, and
    /// at nice 10 under a saturated CPU the count ran to ten times a cap of 500 between passes.
    fn lower_priority(self) -> bool {
        matches!(self, Job::Compact)
    }

    /// Runs the job once; true if it freed enough memory to hand back to the kernel.
    fn run(self, shared: &Arc<Shared>) -> bool {
        match self {
            Job::Compact => compact_job(shared),
            Job::Maintain => maintain_job(shared),
        }
    }

    /// Tells the schedule of a run that panicked, as of one that failed, so that the same
    /// work is not started again after the very next batch: a compaction waits out the pause
    /// after a failure; the cap's next pass waits for the count to grow by the slack (or for
    /// the interval), not for the quick retry of a pass that failed on the disk.
    fn panicked(self, shared: &Shared) {
        let now = shared.config.clock.instant();
        match self {
            Job::Compact => {
                shared.count(|c| c.failed_compactions += 1);
                lock(&shared.schedule).compaction_ended(false, now);
            }
            Job::Maintain => {
                if let Some(config) = &shared.config.maintenance {
                    let count = shared.read().state.len();
                    let end = PassEnd {
                        stuck: true,
                        retry: false,
                    };
                    lock(&shared.schedule).pass_ended(config, end, count, now);
                }
            }
        }
    }
}

/// A long-lived background thread that runs one kind of job (compactions, or maintenance
/// passes) each time it is kicked. One thread per kind for the store's life instead of one per
/// pass: the allocator keeps one arena for the job's scratch memory rather than spreading it
/// over fresh threads, and the thread's priority is set once.
pub(crate) struct Background {
    job: Job,
    tx: Mutex<Option<mpsc::Sender<()>>>,
    runs: Arc<Runs>,
    /// The thread's id, so that a wait on its thread (a hook that closes the store) does
    /// not wait for itself.
    thread: Mutex<Option<ThreadId>>,
}

/// The runs of a background job queued or running, for [`Background::wait_idle`].
#[derive(Default)]
struct Runs {
    pending: Mutex<usize>,
    idle: Condvar,
}

impl Runs {
    fn add(&self, n: isize) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        *pending = pending.saturating_add_signed(n);
        if *pending == 0 {
            self.idle.notify_all();
        }
    }
}

/// Counts a run as ended when dropped, also when the job panics.
struct RunEnded<'a>(&'a Runs);

impl Drop for RunEnded<'_> {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

impl Background {
    pub(crate) fn new(job: Job) -> Background {
        Background {
            job,
            tx: Mutex::new(None),
            runs: Arc::default(),
            thread: Mutex::new(None),
        }
    }

    /// Waits until no run of the job is queued or running. On the job's own thread (a pass's
    /// hook that closes the store) it returns at once.
    pub(crate) fn wait_idle(&self) {
        if *lock(&self.thread) == Some(thread::current().id()) {
            return;
        }
        let mut pending = lock(&self.runs.pending);
        while *pending > 0 {
            pending = self
                .runs
                .idle
                .wait(pending)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Queues one run of the job, starting the thread if there is none yet (or no longer:
    /// it catches its job's panics, but not any other). The caller has set the job's running
    /// flag, so at most one run is queued. False if no thread could be started.
    pub(crate) fn kick(&self, shared: &Arc<Shared>) -> bool {
        let mut tx = lock(&self.tx);
        // Counted before it is sent, so that the thread's end of the run cannot come first.
        self.runs.add(1);
        if tx.as_ref().is_some_and(|sender| sender.send(()).is_ok()) {
            return true;
        }
        let (sender, rx) = mpsc::channel::<()>();
        // Weak, so that the thread does not keep the store alive: once the last handle and the
        // writer are gone, the sender goes with `Shared` and the thread ends.
        let owner = Arc::downgrade(shared);
        let job = self.job;
        let runs = Arc::clone(&self.runs);
        let spawned = thread::Builder::new()
            .name(job.thread_name().to_owned())
            .spawn(move || {
                if job.lower_priority() {
                    crate::sys::lower_this_thread_priority();
                }
                while rx.recv().is_ok() {
                    let ended = RunEnded(&runs);
                    let Some(shared) = owner.upgrade() else {
                        break;
                    };
                    // A panicking job (a pass's hook, say) must not end the thread: a run
                    // queued meanwhile would be lost with its channel, and a close would
                    // wait for it for ever. The panic hook has printed the message.
                    let run = std::panic::AssertUnwindSafe(|| job.run(&shared));
                    let freed_much = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                        tracing::error!(path = %shared.snapshot_path.display(),
                            thread = job.thread_name(), "a background job of the store panicked");
                        job.panicked(&shared);
                        false
                    });
                    drop(shared);
                    drop(ended);
                    // A large pass frees what it evicted and its scratch memory; give the
                    // pages back rather than let the allocator keep them resident.
                    if freed_much {
                        crate::sys::return_free_memory();
                    }
                }
            });
        let queued = match spawned {
            Ok(handle) => {
                *lock(&self.thread) = Some(handle.thread().id());
                let queued = sender.send(()).is_ok();
                *tx = Some(sender);
                queued
            }
            Err(e) => {
                tracing::warn!(error = %e, thread = job.thread_name(),
                    "could not start a background thread of the store");
                false
            }
        };
        if !queued {
            self.runs.add(-1);
        }
        queued
    }
}

impl fmt::Debug for Background {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Background")
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

/// Clears a "running" flag when dropped.
struct ClearOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use sessionkit_test_support::{Scratch, wait_until};

    use crate::files::faults::Fault;
    use crate::testing::{assert_reached, keys};
    use crate::{Entry, Store, StoreBuilder, SyncMode};

    /// Settings at the edge of their types (an interval of `Duration::MAX`, a cap of
    /// `usize::MAX`) work rather than panic on the writer thread, which would stop every later
    /// call with `WriterStopped`; the fsync of interval mode is still owed.
    #[test]
    fn extreme_settings_do_not_stop_the_writer() {
        let dir = Scratch::new("extreme-settings");
        let path = dir.join("sessions.json");
        let store = Store::builder()
            .sync(SyncMode::Interval(Duration::MAX))
            .maintenance(
                crate::Maintenance::new()
                    .max_entries(Some(usize::MAX))
                    .prune_after(None)
                    .interval(Some(Duration::MAX)),
            )
            .open(&path)
            .unwrap();
        for key in ["a", "b", "c"] {
            let entry = Entry::parse(r#"{"sessionId":"s","updatedAt":1}"#).unwrap();
            assert!(!store.upsert(key, entry).unwrap().durable);
        }
        assert!(store.maintain(false).unwrap().is_empty());
        // Owed, for the close to pay.
        assert!(super::pending_sync_due(&store.shared).is_some());
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(keys(&store), ["a", "b", "c"]);
    }

    /// In interval mode, a timed fsync that fails is tried again an interval later. It used to
    /// be tried again at once, forever: the writer spun on a failing disk.
    #[test]
    fn a_failed_interval_fsync_is_tried_again_an_interval_later() {
        let dir = sessionkit_test_support::Scratch::new("interval-fsync-fails");
        let every = Duration::from_millis(100);
        let store = Store::builder()
            .sync(SyncMode::Interval(every))
            .open(dir.join("sessions.json"))
            .unwrap();
        crate::files::faults::plant(Fault::Sync, store.journal_path(), true);
        let started = Instant::now();
        let entry = Entry::parse(r#"{"sessionId":"s","updatedAt":1}"#).unwrap();
        assert!(!store.upsert("k", entry).unwrap().durable);
        wait_until("two failed fsyncs", || store.counters().failed_fsyncs >= 2);
        let failed = store.counters().failed_fsyncs;
        // Not a speed limit: tries at least an interval apart fit in the time that passed
        // however slow the machine; only tries without a pause exceed it.
        let most = started.elapsed().as_millis() / every.as_millis() + 1;
        assert!(
            u128::from(failed) <= most,
            "{failed} failed fsyncs in {:?}, with one allowed every {every:?}",
            started.elapsed()
        );

        // Once the disk recovers, the owed fsync goes through, and then nothing is owed.
        crate::files::faults::plant(Fault::Sync, store.journal_path(), false);
        wait_until("the owed fsync", || store.counters().fsyncs == 1);
        assert!(super::pending_sync_due(&store.shared).is_none());
        assert!(store.get("k").unwrap().is_some());
    }

    fn entry(id: &str) -> Entry {
        Entry::parse(&format!(r#"{{"sessionId":"{id}","updatedAt":1}}"#)).unwrap()
    }

    /// A store in a fresh scratch directory with `settings`, holding the key `kept`, and
    /// the path of its snapshot (none on disk yet).
    fn store_with(
        name: &str,
        settings: impl FnOnce(&mut StoreBuilder) -> &mut StoreBuilder,
    ) -> (Scratch, PathBuf, Store) {
        let dir = Scratch::new(name);
        let snapshot = dir.join("sessions.json");
        let store = settings(&mut Store::builder()).open(&snapshot).unwrap();
        store.upsert("kept", entry("kept")).unwrap();
        (dir, snapshot, store)
    }

    /// Runs `f` with every fsync of the journal at `journal` failing.
    fn failing_syncs<T>(journal: &Path, f: impl FnOnce() -> T) -> T {
        failing(&[Fault::Sync], journal, f)
    }

    /// Runs `f` with `faults` planted on the journal at `journal`.
    fn failing<T>(faults: &[Fault], journal: &Path, f: impl FnOnce() -> T) -> T {
        for &fault in faults {
            crate::files::faults::plant(fault, journal, true);
        }
        let result = f();
        for &fault in faults {
            crate::files::faults::plant(fault, journal, false);
        }
        result
    }

    /// The keys of the snapshot file on disk, or nothing if there is none yet.
    fn snapshot_keys(path: &Path) -> Option<Vec<String>> {
        let text = std::fs::read_to_string(path).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        Some(value.as_object().unwrap().keys().cloned().collect())
    }

    /// Waits until the store owes no repair, then checks that a compaction made one.
    fn assert_made_good(store: &Store) {
        wait_until("a compaction to make the failed fsync good", || {
            !store.shared.fsync_debt.owed()
        });
        let counters = store.counters();
        assert!(counters.failed_fsyncs >= 1, "{counters:?}");
        assert!(counters.fsync_repairs >= 1, "{counters:?}");
        assert!(
            counters.compactions >= counters.fsync_repairs,
            "{counters:?}"
        );
    }

    /// After a failed interval fsync the kernel may have dropped what it could not write, so
    /// the store compacts from memory, automatic compaction off or not. It used to go on with
    /// the journal as it was, fsyncing only what came after.
    #[test]
    fn a_failed_interval_fsync_is_made_good_by_a_compaction() {
        let (_dir, snapshot, store) = store_with("interval-fsync-repair", |b| {
            b.sync(SyncMode::Interval(Duration::from_secs(3600)))
                .auto_compact(false)
        });
        // The timed fsync, run here; the idle writer finds the debt by itself.
        failing_syncs(store.journal_path(), || super::sync_now(&store.shared));
        assert_eq!(store.counters().failed_fsyncs, 1);

        assert_made_good(&store);
        assert_eq!(snapshot_keys(&snapshot).unwrap(), ["kept"]);
    }

    /// A batch whose fsync fails is taken back out, and the batches before it are made
    /// durable again by a compaction: the failed writeback may have taken their last page.
    #[test]
    fn a_failed_batch_fsync_is_made_good_by_a_compaction() {
        let (_dir, snapshot, store) = store_with("batch-fsync-repair", |b| b.auto_compact(false));
        let failed = failing_syncs(store.journal_path(), || {
            store.upsert("failed", entry("failed")).unwrap_err()
        });
        // The cause names the step (the scratch directory's name may hold the word too).
        let cause = std::error::Error::source(&failed).unwrap().to_string();
        assert!(cause.contains("fsync"), "{cause}");

        assert_made_good(&store);
        assert_eq!(snapshot_keys(&snapshot).unwrap(), ["kept"]);
        assert!(store.get("failed").unwrap().is_none());
    }

    /// A compaction that took its starting offset before an fsync failed copies the failed
    /// bytes from the journal, and so does not make the failure good: a later one must.
    #[test]
    fn a_compaction_started_before_a_failed_fsync_does_not_make_it_good() {
        let (_dir, snapshot, store) = store_with("repair-race", |b| b.auto_compact(false));
        // Keeps the repair out of the background until the compaction below has finished.
        store.shared.compacting.store(true, Ordering::Release);
        let during = store.clone();
        crate::hooks::on(
            crate::hooks::Point::CompactionStarted,
            &snapshot,
            move || {
                failing_syncs(during.journal_path(), || {
                    during.upsert("failed", entry("failed")).unwrap_err();
                });
            },
        );
        store.compact().unwrap();
        let counters = store.counters();
        assert_eq!(
            (
                counters.compactions,
                counters.failed_fsyncs,
                counters.fsync_repairs
            ),
            (1, 1, 0)
        );
        assert!(store.shared.fsync_debt.owed());

        store.shared.compacting.store(false, Ordering::Release);
        assert_made_good(&store);
        assert_eq!(store.counters().fsync_repairs, 1);
    }

    /// A compaction running when the last handle goes may have taken its mark before the
    /// writer's last, failed fsync: the writer waits for it, then makes the failure good itself.
    #[test]
    fn the_way_out_waits_for_a_running_compaction_then_repairs() {
        let dir = Scratch::new("close-after-compaction");
        let snapshot = dir.join("sessions.json");
        let slot: Arc<Mutex<Option<Store>>> = Arc::default();
        let last = slot.clone();
        crate::hooks::on(
            crate::hooks::Point::CompactionStarted,
            &snapshot,
            move || {
                let store = last.lock().unwrap().take().unwrap();
                let (journal, shared) = (store.journal_path().to_path_buf(), store.shared.clone());
                failing_syncs(&journal, || {
                    drop(store);
                    wait_until("the writer's last fsync to fail", || {
                        shared.counters.lock().unwrap().failed_fsyncs == 1
                    });
                });
            },
        );
        let store = Store::builder()
            .sync(SyncMode::Interval(Duration::from_secs(3600)))
            .compact_when(0, 0.0)
            .open(&snapshot)
            .unwrap();
        let shared = store.shared.clone();
        *slot.lock().unwrap() = Some(store);
        // The batch starts a background compaction, which stops in the hook above.
        let answer = slot
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.upsert("kept", entry("kept")));
        answer.unwrap().unwrap();

        wait_until("the repair on the way out", || {
            shared.counters.lock().unwrap().fsync_repairs == 1
                && !shared.compacting.load(Ordering::Acquire)
        });
        assert_eq!(shared.counters.lock().unwrap().compactions, 2);
        assert_eq!(snapshot_keys(&snapshot).unwrap(), ["kept"]);
    }

    /// A process that follows another one's compaction keeps its memory, and with it what a
    /// failed fsync owes: its own next compaction makes that good. One that has to reload
    /// the store (here after two compactions) has nothing left to make it good with: the debt
    /// is given up and counted as such, never counted as repaired by a later compaction.
    #[test]
    fn a_reload_forfeits_a_failed_fsync_not_yet_made_good() {
        for compactions in [1, 2] {
            let (_dir, snapshot, store) = store_with("repair-forfeited", |b| {
                b.sync(SyncMode::Interval(Duration::from_secs(3600)))
            });
            // This process's repair does not start: the other one compacts first.
            store.shared.compacting.store(true, Ordering::Release);
            failing_syncs(store.journal_path(), || super::sync_now(&store.shared));
            assert!(store.shared.fsync_debt.owed());
            let other = Store::open(&snapshot).unwrap();
            for _ in 0..compactions {
                assert!(!other.compact().unwrap().superseded);
            }

            assert!(store.get("kept").unwrap().is_some());
            assert_reached(&store, compactions);
            let counters = store.counters();
            let followed = u64::from(compactions == 1);
            assert_eq!(
                (counters.forfeited_repairs, counters.fsync_repairs),
                (1 - followed, 0),
                "{compactions} compactions"
            );
            assert_eq!(store.shared.fsync_debt.owed(), followed == 1);
            store.shared.compacting.store(false, Ordering::Release);
            store.compact().unwrap();
            assert_eq!(store.counters().fsync_repairs, followed);
            assert!(!store.shared.fsync_debt.owed());
        }
    }

    /// A repair whose compaction failed is tried again by the idle writer, with no request to
    /// wake it: the failure may well be the last thing that happens to the store for a while.
    #[test]
    fn a_failed_repair_is_tried_again_with_no_requests() {
        let (_dir, snapshot, store) = store_with("repair-retried", |b| b);
        // A directory where the snapshot goes fails every compaction.
        std::fs::create_dir(&snapshot).unwrap();
        failing_syncs(store.journal_path(), || {
            store.upsert("failed", entry("failed")).unwrap_err();
        });
        wait_until("a failed compaction", || {
            store.counters().failed_compactions >= 1
        });
        assert!(store.shared.fsync_debt.owed());
        std::fs::remove_dir(&snapshot).unwrap();

        assert_made_good(&store);
        assert_eq!(snapshot_keys(&snapshot).unwrap(), ["kept"]);
    }

    /// A background compaction that panics counts as a failed one, and its thread lives on:
    /// the next compaction waits out the pause after a failure instead of starting after the
    /// very next batch. The clock is the test's, so the pause lasts until it moves.
    #[test]
    fn a_compaction_that_panics_counts_as_failed_and_its_thread_lives_on() {
        let clock = Arc::new(crate::ManualClock::new());
        let (_dir, snapshot, store) = store_with("compaction-panics", |b| {
            b.clock(clock.clone()).compact_when(1, 0.0)
        });
        crate::hooks::on(crate::hooks::Point::CompactionStarted, &snapshot, || {
            panic!("a compaction that panics")
        });
        store.upsert("k1", entry("k1")).unwrap();
        wait_until("the compaction's panic", || {
            store.counters().failed_compactions == 1
        });
        // Each batch looks whether a compaction is due, and the pause says no.
        let started = store.counters().background_compactions;
        store.upsert("k2", entry("k2")).unwrap();
        store.upsert("k3", entry("k3")).unwrap();
        assert_eq!(store.counters().background_compactions, started);
        // Once the pause is over, the same thread compacts.
        clock.advance(Duration::from_secs(2));
        store.upsert("k4", entry("k4")).unwrap();
        wait_until("a compaction after the pause", || {
            store.counters().compactions >= 1
        });
        assert_eq!(
            snapshot_keys(&snapshot).unwrap(),
            ["k1", "k2", "k3", "k4", "kept"]
        );
    }

    /// `flush` fsyncs what interval mode has not yet, at once, and settles the owed fsync.
    #[test]
    fn flush_makes_interval_mode_durable_now() {
        let (_dir, _, store) = store_with("flush-interval", |b| {
            b.sync(SyncMode::Interval(Duration::from_secs(3600)))
        });
        assert!(super::pending_sync_due(&store.shared).is_some());
        store.flush().unwrap();
        assert_eq!(store.counters().fsyncs, 1);
        assert!(super::pending_sync_due(&store.shared).is_none());
    }

    /// Maintenance with a cap of 2 (so a slack of 1), no pruning and no timed passes.
    fn cap_of_two() -> crate::Maintenance {
        crate::Maintenance::new()
            .max_entries(Some(2))
            .prune_after(None)
            .interval(None)
    }

    /// Upserts four entries into `store` (maintenance [`cap_of_two`]), so that a background
    /// pass starts, and holds the pass where it starts until the returned sender sends or is
    /// dropped.
    fn hold_a_background_pass(store: &Store, snapshot: &Path) -> std::sync::mpsc::Sender<()> {
        let (started, background_started) = std::sync::mpsc::channel();
        let (go, background_goes) = std::sync::mpsc::channel::<()>();
        crate::hooks::on(crate::hooks::Point::PassStarted, snapshot, move || {
            started.send(()).unwrap();
            let _ = background_goes.recv();
        });
        for key in ["k0", "k1", "k2", "k3"] {
            store.upsert(key, entry(key)).unwrap();
        }
        background_started
            .recv_timeout(sessionkit_test_support::HANG)
            .unwrap();
        go
    }

    /// One pass that may change something at a time: `Store::maintain` waits for the
    /// background pass that is running, and then finds the cap's work done.
    #[test]
    fn an_explicit_pass_waits_for_the_background_pass_that_runs() {
        use std::sync::mpsc;
        use std::thread;

        use sessionkit_test_support::HANG;

        let dir = Scratch::new("one-pass");
        let snapshot = dir.join("sessions.json");
        let store = Store::builder()
            .maintenance(cap_of_two())
            .open(&snapshot)
            .unwrap();
        let go = hold_a_background_pass(&store, &snapshot);
        let (done, explicit_done) = mpsc::channel();
        let explicit = {
            let store = store.clone();
            thread::spawn(move || {
                let report = store.maintain(false);
                done.send(()).unwrap();
                report
            })
        };
        // Held by the background pass, the explicit one cannot have ended, however long this
        // waits; without the lock it ends at once.
        assert!(
            explicit_done
                .recv_timeout(Duration::from_millis(300))
                .is_err(),
            "the explicit pass ran beside the background one"
        );
        go.send(()).unwrap();
        explicit_done.recv_timeout(HANG).unwrap();
        let report = explicit.join().unwrap().unwrap();
        assert!(report.capped.is_empty(), "{report:?}");
        assert_eq!(store.count().unwrap(), 2);
    }

    /// Closing the last handle waits for the background pass that runs, its hook included:
    /// once `close` returns, every eviction on disk has been reported. Closing another handle
    /// does not wait.
    #[test]
    fn closing_the_last_handle_waits_for_the_background_pass_and_its_hook() {
        use std::sync::mpsc;
        use std::thread;

        let dir = Scratch::new("close-waits");
        let snapshot = dir.join("sessions.json");
        let heard = Arc::new(Mutex::new(Vec::new()));
        let store = Store::builder()
            .maintenance({
                let heard = Arc::clone(&heard);
                cap_of_two().on_pass(move |pass| heard.lock().unwrap().extend(pass.capped.clone()))
            })
            .open(&snapshot)
            .unwrap();
        let go = hold_a_background_pass(&store, &snapshot);
        assert!(!store.clone().close(), "a clone is not the last handle");
        let (done, close_done) = mpsc::channel();
        let closing = thread::spawn(move || {
            let last = store.close();
            done.send(()).unwrap();
            last
        });
        // The pass is held, so the close cannot have ended, however long this waits; without
        // the wait it ends at once.
        assert!(
            close_done.recv_timeout(Duration::from_millis(300)).is_err(),
            "the close returned while the background pass ran"
        );
        go.send(()).unwrap();
        assert!(closing.join().unwrap(), "the last handle");
        let heard = heard.lock().unwrap().clone();
        assert_eq!(heard, ["k0", "k1"]);
        let reopened = crate::load_store(&snapshot).unwrap();
        let keys: Vec<&str> = reopened.state.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["k2", "k3"]);
    }

    /// The close waits for the passes first, then for the compactions: a pass's evictions
    /// can start a compaction as the pass ends, which a close that had already found the
    /// compactions idle would miss. Here only the pass's batch takes the journal past the
    /// compaction threshold, and the compaction it starts is held.
    #[test]
    fn closing_waits_for_a_compaction_that_the_last_pass_started() {
        use std::sync::mpsc;
        use std::thread;

        use sessionkit_test_support::HANG;

        // The journal's length after the four upserts alone.
        let upserts_only = {
            let dir = Scratch::new("close-order-size");
            let store = Store::open(dir.join("sessions.json")).unwrap();
            for key in ["k0", "k1", "k2", "k3"] {
                store.upsert(key, entry(key)).unwrap();
            }
            std::fs::metadata(store.journal_path()).unwrap().len()
        };
        let dir = Scratch::new("close-order");
        let snapshot = dir.join("sessions.json");
        let store = Store::builder()
            .maintenance(cap_of_two())
            .compact_when(upserts_only + 1, 0.0)
            .open(&snapshot)
            .unwrap();
        let (started, compaction_started) = mpsc::channel();
        let (go_on, compaction_goes) = mpsc::channel::<()>();
        crate::hooks::on(
            crate::hooks::Point::CompactionStarted,
            &snapshot,
            move || {
                started.send(()).unwrap();
                let _ = compaction_goes.recv();
            },
        );
        let go = hold_a_background_pass(&store, &snapshot);
        assert_eq!(store.counters().background_compactions, 0);
        let (done, close_done) = mpsc::channel();
        let closing = thread::spawn(move || {
            let last = store.close();
            done.send(()).unwrap();
            last
        });
        go.send(()).unwrap();
        // A close that looked at the compactions before the passes returns as the pass ends,
        // before the compaction starts (or, once the store is gone, instead of it).
        let deadline = std::time::Instant::now() + HANG;
        while compaction_started.try_recv().is_err() {
            assert!(
                close_done.try_recv().is_err(),
                "the close returned before the compaction the pass started"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "no compaction started"
            );
            thread::sleep(Duration::from_millis(1));
        }
        // The compaction is held, so the close cannot have ended however long this waits.
        assert!(
            close_done.recv_timeout(Duration::from_millis(300)).is_err(),
            "the close returned while the compaction the pass started ran"
        );
        go_on.send(()).unwrap();
        assert!(closing.join().unwrap(), "the last handle");
        let reopened = crate::load_store(&snapshot).unwrap();
        let keys: Vec<&str> = reopened.state.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["k2", "k3"]);
        assert_eq!(snapshot_keys(&snapshot).unwrap(), ["k2", "k3"]);
    }

    /// A pass whose hook panics does not end the maintenance thread: the pass the writer
    /// queued while the hook ran still runs, and the close returns instead of waiting for it
    /// for ever.
    #[test]
    fn a_pass_queued_while_a_hook_panics_still_runs_and_the_close_returns() {
        use std::sync::mpsc;
        use std::thread;

        use sessionkit_test_support::HANG;

        let dir = Scratch::new("hook-panics");
        let slot: Arc<Mutex<Option<Store>>> = Arc::default();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let (dropped, hook_dropped) = mpsc::channel();
        let hook = {
            let (slot, heard) = (Arc::clone(&slot), Arc::clone(&heard));
            move |pass: &crate::MaintenanceReport| {
                heard.lock().unwrap().push(pass.capped.clone());
                let Some(store) = slot.lock().unwrap().take() else {
                    return;
                };
                // Back past the trigger while this pass's hook runs: the writer queues the
                // next pass behind this one.
                for key in ["k4", "k5"] {
                    store.upsert(key, entry(key)).unwrap();
                }
                wait_until("the next pass is queued", || {
                    *super::lock(&store.shared.maintainer.runs.pending) == 2
                });
                drop(store);
                dropped.send(()).unwrap();
                panic!("a hook that panics");
            }
        };
        let store = Store::builder()
            .maintenance(cap_of_two().on_pass(hook))
            .open(dir.join("sessions.json"))
            .unwrap();
        *slot.lock().unwrap() = Some(store.clone());
        for key in ["k0", "k1", "k2", "k3"] {
            store.upsert(key, entry(key)).unwrap();
        }
        hook_dropped.recv_timeout(HANG).unwrap();
        let (done, closed) = mpsc::channel();
        thread::spawn(move || done.send(store.close()).unwrap());
        assert_eq!(closed.recv_timeout(HANG), Ok(true), "the close returned");
        assert_eq!(*heard.lock().unwrap(), [["k0", "k1"], ["k2", "k3"]]);
    }

    /// An update that writes nothing (a delete of a missing key) is as durable as what this
    /// process acknowledged before it: a caller told `durable` may rely on the state it saw.
    #[test]
    fn an_update_that_writes_nothing_is_as_durable_as_what_came_before() {
        let delete_nothing = |store: &Store| store.delete("missing").unwrap().durable;
        // Interval mode: "kept" is not synced yet, then it is.
        let (_dir, _, store) = store_with("nothing-interval", |b| {
            b.sync(SyncMode::Interval(Duration::from_secs(3600)))
        });
        assert!(!delete_nothing(&store));
        store.flush().unwrap();
        assert!(delete_nothing(&store));
        // Never mode: nothing is synced by the store's writes.
        let (_dir, _, store) = store_with("nothing-never", |b| b.sync(SyncMode::Never));
        assert!(!delete_nothing(&store));
        // The default: every batch is synced before its answer.
        let (_dir, _, store) = store_with("nothing-every", |b| b);
        assert!(delete_nothing(&store));
    }

    /// When `flush`'s own fsync fails, it makes the failure good with a compaction in the
    /// caller's thread, and so still returns only once everything is durable.
    #[test]
    fn flush_makes_its_own_failed_fsync_good_before_it_returns() {
        let (_dir, snapshot, store) = store_with("flush-repair", |b| {
            b.sync(SyncMode::Interval(Duration::from_secs(3600)))
        });
        // No background compaction gets there first.
        store.shared.compacting.store(true, Ordering::Release);
        failing_syncs(store.journal_path(), || store.flush()).unwrap();
        let counters = store.counters();
        assert_eq!(
            (
                counters.failed_fsyncs,
                counters.fsync_repairs,
                counters.compactions
            ),
            (1, 1, 1)
        );
        assert_eq!(snapshot_keys(&snapshot).unwrap(), ["kept"]);
        store.shared.compacting.store(false, Ordering::Release);
    }

    /// A failure `flush` cannot make good is an error that names the operation and the path.
    #[test]
    fn flush_reports_a_failure_it_cannot_make_good() {
        let (_dir, snapshot, store) = store_with("flush-fails", |b| b);
        std::fs::create_dir(&snapshot).unwrap();
        let error = failing_syncs(store.journal_path(), || store.flush()).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("compact the store"), "{text}");
        assert!(text.contains(&snapshot.display().to_string()), "{text}");
        assert!(store.shared.fsync_debt.owed());
        assert!(store.get("kept").unwrap().is_some());
    }

    /// A failed fsync still owed when the last handle goes is made good on the way out: the
    /// writer's last fsync fails here, with no interval left to try again in.
    #[test]
    fn a_failed_fsync_at_close_is_made_good_on_the_way_out() {
        let (_dir, snapshot, store) = store_with("close-fsync-repair", |b| {
            b.sync(SyncMode::Interval(Duration::from_secs(3600)))
        });
        let journal = store.journal_path().to_path_buf();
        let shared = store.shared.clone();
        failing_syncs(&journal, || {
            drop(store);
            wait_until("the compaction on the way out", || {
                shared.counters.lock().unwrap().fsync_repairs == 1
                    && !shared.compacting.load(Ordering::Acquire)
            });
        });
        assert_eq!(snapshot_keys(&snapshot).unwrap(), ["kept"]);
    }

    /// True if the journal's bytes hold a record for `key`.
    fn journal_mentions(store: &Store, key: &str) -> bool {
        let text = std::fs::read_to_string(store.journal_path()).unwrap();
        text.contains(&format!("\"key\":\"{key}\""))
    }

    /// The store's keys, sorted.
    /// Holds off the repair compaction a failed fsync starts (it would leave a fenced batch
    /// out of the journal too; these tests show what the fence alone does), then fails an
    /// upsert of `failed` whose fsync and truncate both fail; returns its error.
    fn fail_uncut(store: &Store, also: &[Fault]) -> crate::Error {
        store.shared.compacting.store(true, Ordering::Release);
        let faults = [&[Fault::Sync, Fault::Truncate][..], also].concat();
        failing(&faults, store.journal_path(), || {
            store.upsert("failed", entry("failed")).unwrap_err()
        })
    }

    fn fence_of(store: &Store) -> PathBuf {
        crate::fence::path_for(store.journal_path())
    }

    /// A writer that finds the journal it locked replaced reloads the view only if the view is
    /// still on that file. Here a reader of its process has already moved the view to the new
    /// journal, where another process holds the lock over a batch it then cuts back out (its
    /// fsync failed): the writer waits for the lock and never sees that batch. It used to
    /// catch up on the moved view with no lock held, applying the batch, and once the batch
    /// was cut it appended past the end of the file (two torture writers under I/O faults).
    #[test]
    fn a_writer_never_reads_the_new_journal_without_its_lock() {
        use std::io::Write as _;

        use crate::hooks::{Point, on};
        use crate::journal::{Record, WriterId};
        use crate::sys::{JournalLock, lock_journal};

        let (_dir, snapshot, store) = store_with("writer-moved-view", |b| b.auto_compact(false));
        let other = Store::builder()
            .auto_compact(false)
            .open(&snapshot)
            .unwrap();
        assert_eq!(
            other.get("kept").unwrap().unwrap().session_id(),
            Some("kept")
        );
        // The other process's view is on the journal this compaction replaces.
        store.compact().unwrap();
        let journal = store.journal_path().to_path_buf();
        let in_flight = Arc::new(Mutex::new(None));
        let (reader, path, slot) = (other.clone(), journal.clone(), in_flight.clone());
        on(Point::WriterFoundJournalReplaced, &journal, move || {
            // A reader of this process moves the view to the new journal.
            assert!(reader.get("kept").unwrap().is_some());
            // Another process takes the new journal's lock and writes a batch.
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            let held = lock_journal(&file, JournalLock::Exclusive, Duration::ZERO, &|| {});
            assert!(held.is_ok(), "{held:?}");
            let len = file.metadata().unwrap().len();
            let mut line = String::new();
            Record::upsert(1, WriterId::random(), "ghost", &entry("ghost")).encode_line(&mut line);
            (&file).write_all(line.as_bytes()).unwrap();
            *slot.lock().unwrap() = Some((file, len));
        });
        let waits = other.counters().journal_lock_waits;
        let writing = {
            let other = other.clone();
            std::thread::spawn(move || other.upsert("after", entry("after")))
        };
        wait_until("the writer waits for the new journal's lock", || {
            other.counters().journal_lock_waits > waits
        });
        // The other process's batch fails: it cuts it back out, then lets go of the lock.
        let (file, len) = in_flight.lock().unwrap().take().expect("the hook ran");
        file.set_len(len).unwrap();
        drop(file);
        writing.join().unwrap().unwrap();

        for view in [&other, &store] {
            assert!(view.get("ghost").unwrap().is_none());
            assert_eq!(keys(view), ["after", "kept"]);
        }
        drop((store, other));
        assert_eq!(keys(&Store::open(&snapshot).unwrap()), ["after", "kept"]);
    }

    /// A writer that finds its journal replaced by another process's compaction reads the new
    /// files with the view's lock let go, whether it follows the compaction (one compaction
    /// in between) or reloads the store (two): the process's readers are not held up.
    #[test]
    fn a_writer_reloads_without_holding_the_view() {
        use crate::hooks::{Point, on};

        for compactions in [1, 2] {
            let (_dir, snapshot, store) =
                store_with("writer-reload-unlocked", |b| b.auto_compact(false));
            let other = Store::builder()
                .auto_compact(false)
                .open(&snapshot)
                .unwrap();
            for _ in 0..compactions {
                other.compact().unwrap();
            }
            let seen = Arc::new(Mutex::new(None));
            let (shared, slot) = (store.shared.clone(), seen.clone());
            on(Point::Reloading, store.journal_path(), move || {
                let thread = std::thread::current().name().map(str::to_owned);
                *slot.lock().unwrap() = Some((thread, shared.view.try_write().is_ok()));
            });
            store.upsert("after", entry("after")).unwrap();
            assert_eq!(
                *seen.lock().unwrap(),
                Some((Some("sessionkit-store-writer".to_owned()), true)),
                "{compactions} compactions"
            );
            assert_reached(&store, compactions);
            assert_eq!(keys(&store), ["after", "kept"]);
            assert_eq!(keys(&other), ["after", "kept"]);
        }
    }

    /// A batch whose fsync fails and whose bytes cannot be cut back out either stays in the
    /// file behind a fence: no reader applies it (this process, another one, the read-only
    /// loader), and the next writer, here another process, cuts it and takes the fence down.
    #[test]
    fn a_failed_batch_that_cannot_be_cut_is_fenced_off_from_every_reader() {
        let (_dir, snapshot, store) = store_with("fence-readers", |b| b.auto_compact(false));
        let other = Store::open(&snapshot).unwrap();
        let failed = fail_uncut(&store, &[]);
        assert!(!failed.is_outcome_unknown(), "{failed}");
        assert!(
            failed.to_string().contains("failed to write a batch"),
            "{failed}"
        );
        assert!(journal_mentions(&store, "failed"));
        assert!(fence_of(&store).exists());

        assert!(store.get("failed").unwrap().is_none());
        assert!(other.get("failed").unwrap().is_none());
        assert!(other.get("kept").unwrap().is_some());
        let loaded = crate::load_store(&snapshot).unwrap();
        assert!(loaded.state.get("failed").is_none());
        let fenced = loaded.fenced_batch.unwrap();
        assert_eq!(fenced.offset + fenced.len, loaded.journal_bytes);

        other.upsert("after", entry("after")).unwrap();
        assert!(!fence_of(&store).exists());
        assert!(!journal_mentions(&store, "failed"));
        assert!(store.get("after").unwrap().is_some());
        assert!(store.get("failed").unwrap().is_none());
        assert_eq!(crate::load_store(&snapshot).unwrap().fenced_batch, None);
        store.shared.compacting.store(false, Ordering::Release);
    }

    /// The writer whose batch was fenced off cuts it itself once the disk lets it, before its
    /// next batch; a fresh open then finds only what was acknowledged.
    #[test]
    fn the_writer_that_fenced_a_batch_cuts_it_before_its_next_one() {
        let (_dir, snapshot, store) = store_with("fence-own-cut", |b| b.auto_compact(false));
        fail_uncut(&store, &[]);
        // While the cut still fails, no batch is written after the fenced one.
        let refused = failing(&[Fault::Truncate], store.journal_path(), || {
            store.upsert("refused", entry("refused")).unwrap_err()
        });
        let cause = std::error::Error::source(&refused).unwrap().to_string();
        assert!(cause.contains("truncate"), "{cause}");
        assert!(!journal_mentions(&store, "refused"));
        store.upsert("next", entry("next")).unwrap();
        assert!(!fence_of(&store).exists());
        assert!(!journal_mentions(&store, "failed"));
        store.shared.compacting.store(false, Ordering::Release);
        drop(store);
        let reopened = Store::open(&snapshot).unwrap();
        assert_eq!(keys(&reopened), ["kept", "next"]);
    }

    /// In the durable mode a failed batch's cut is fsynced before its callers hear of the
    /// failure: unsynced, another file's fsync may already have made the batch's bytes durable,
    /// and a power cut would bring them back. A cut that cannot be synced is fenced off like
    /// one that cannot be made; the fence is stale once the next batch is written over the
    /// cut.
    #[test]
    fn a_failed_batch_whose_cut_cannot_be_synced_is_fenced_off() {
        let (_dir, snapshot, store) = store_with("fence-unsynced-cut", |b| b.auto_compact(false));
        store.shared.compacting.store(true, Ordering::Release);
        let before = std::fs::metadata(store.journal_path()).unwrap().len();
        let failed = failing_syncs(store.journal_path(), || {
            store.upsert("failed", entry("failed")).unwrap_err()
        });
        // The cause names the step (the scratch directory's name may hold the word too).
        let cause = std::error::Error::source(&failed).unwrap().to_string();
        assert!(cause.contains("fsync"), "{cause}");
        // Cut, and fenced all the same.
        assert_eq!(
            std::fs::metadata(store.journal_path()).unwrap().len(),
            before
        );
        let fence = std::fs::read_to_string(fence_of(&store)).unwrap();
        assert!(fence.contains(&format!("\"offset\":{before}")), "{fence}");
        store.upsert("next", entry("next")).unwrap();
        assert_eq!(keys(&store), ["kept", "next"]);
        assert_eq!(keys(&Store::open(&snapshot).unwrap()), ["kept", "next"]);
        store.shared.compacting.store(false, Ordering::Release);
        drop(store);
        let reopened = Store::open(&snapshot).unwrap();
        assert_eq!(keys(&reopened), ["kept", "next"]);
        assert!(!snapshot.with_extension("json.journal.fence").exists());
    }

    /// A process that dies with a fenced batch in the journal leaves it to the next open,
    /// which cuts it and says so.
    #[test]
    fn open_cuts_a_batch_its_writer_fenced_off_before_it_died() {
        let (_dir, snapshot, store) = store_with("fence-open", |b| b.auto_compact(false));
        fail_uncut(&store, &[]);
        let fence = fence_of(&store);
        let journal_len = std::fs::metadata(store.journal_path()).unwrap().len();
        // As if the process died: its threads never run again.
        std::mem::forget(store);

        let reopened = Store::open(&snapshot).unwrap();
        let report = reopened.open_report();
        let cut = report.fenced_batch_bytes.unwrap();
        assert_eq!(
            std::fs::metadata(reopened.journal_path()).unwrap().len(),
            journal_len - cut
        );
        assert!(!fence.exists());
        assert_eq!(keys(&reopened), ["kept"]);
    }

    /// A compaction, here the repair of the failed fsync, leaves a fenced batch out of its new
    /// journal even while the journal cannot be cut.
    #[test]
    fn a_compaction_leaves_a_fenced_batch_out() {
        let (_dir, snapshot, store) = store_with("fence-compact", |b| b.auto_compact(false));
        fail_uncut(&store, &[]);
        store.shared.compacting.store(false, Ordering::Release);
        // The journal still cannot be cut: only the compaction can leave the batch out.
        failing(&[Fault::Truncate], store.journal_path(), || {
            store.flush().unwrap();
        });
        assert_eq!(store.counters().fsync_repairs, 1);
        assert!(!journal_mentions(&store, "failed"));
        assert!(store.get("failed").unwrap().is_none());
        assert_eq!(snapshot_keys(&snapshot).unwrap(), ["kept"]);
        // The fence outlives the journal it fenced, stale, until the next open removes it.
        assert!(fence_of(&store).exists());
        store.upsert("next", entry("next")).unwrap();
        assert!(store.get("next").unwrap().is_some());
        drop(store);
        let reopened = Store::open(&snapshot).unwrap();
        assert_eq!(reopened.open_report().fenced_batch_bytes, None);
        assert!(!fence_of(&reopened).exists());
        assert_eq!(keys(&reopened), ["kept", "next"]);
    }

    /// If the fence cannot be written either, the batch's callers hear that its outcome is
    /// unknown: once the lock is let go every reader may apply it, this process's included,
    /// and no writer cuts it any more, for another process may have written after it.
    #[test]
    fn a_batch_that_can_be_neither_cut_nor_fenced_has_an_unknown_outcome() {
        let (_dir, snapshot, store) = store_with("fence-unknown", |b| b.auto_compact(false));
        let other = Store::builder()
            .auto_compact(false)
            .open(&snapshot)
            .unwrap();
        let failed = fail_uncut(&store, &[Fault::Fence]);
        assert!(failed.is_outcome_unknown(), "{failed}");
        assert!(failed.to_string().contains("may reappear"), "{failed}");
        assert!(!fence_of(&store).exists());
        assert!(other.get("failed").unwrap().is_some());
        other.upsert("other", entry("other")).unwrap();
        store.upsert("next", entry("next")).unwrap();
        assert!(store.get("failed").unwrap().is_some());
        store.shared.compacting.store(false, Ordering::Release);
        drop((store, other));
        let reopened = Store::open(&snapshot).unwrap();
        assert_eq!(keys(&reopened), ["failed", "kept", "next", "other"]);
    }

    /// Once another process cut a fenced batch and fenced one of its own, the first process
    /// obeys the new fence: every reader goes by the fence file alone.
    #[test]
    fn a_second_fence_is_obeyed_after_the_first_was_cut() {
        let (_dir, snapshot, store) = store_with("fence-second", |b| b.auto_compact(false));
        let other = Store::builder()
            .auto_compact(false)
            .open(&snapshot)
            .unwrap();
        fail_uncut(&store, &[]);
        other.upsert("after", entry("after")).unwrap();
        fail_uncut(&other, &[]);
        assert!(fence_of(&store).exists());
        assert!(store.get("failed").unwrap().is_none());
        assert!(store.get("after").unwrap().is_some());
        store.upsert("next", entry("next")).unwrap();
        assert!(!fence_of(&store).exists());
        assert!(!journal_mentions(&store, "failed"));
        for s in [&store, &other] {
            s.shared.compacting.store(false, Ordering::Release);
        }
        drop((store, other));
        assert_eq!(
            keys(&Store::open(&snapshot).unwrap()),
            ["after", "kept", "next"]
        );
    }

    /// A process that follows another one's compaction, or reloads the store after two,
    /// obeys a fence over the new journal.
    #[test]
    fn a_reload_obeys_a_fence_over_the_new_journal() {
        for compactions in [1, 2] {
            let (_dir, snapshot, store) = store_with("fence-reload", |b| b.auto_compact(false));
            let other = Store::builder()
                .auto_compact(false)
                .open(&snapshot)
                .unwrap();
            for _ in 0..compactions {
                assert!(!other.compact().unwrap().superseded);
            }
            fail_uncut(&other, &[]);
            assert!(store.get("failed").unwrap().is_none());
            assert!(store.get("kept").unwrap().is_some());
            assert_reached(&store, compactions);
            other.shared.compacting.store(false, Ordering::Release);
        }
    }

    /// The fence comes down only once the cut is fsynced: if that fsync fails, the batch
    /// fails, the fence stays, and the failure is owed a repair like any failed fsync. The
    /// next batch's own fsync makes the cut durable, and its record at the fence's offset
    /// makes the fence stale; the next open removes it.
    #[test]
    fn a_fence_stays_up_until_its_cut_is_fsynced() {
        let (_dir, snapshot, store) = store_with("fence-cut-fsync", |b| b.auto_compact(false));
        fail_uncut(&store, &[]);
        let failed = failing_syncs(store.journal_path(), || {
            store.upsert("next", entry("next")).unwrap_err()
        });
        let cause = std::error::Error::source(&failed).unwrap().to_string();
        assert!(cause.contains("fsync the cut"), "{cause}");
        assert!(fence_of(&store).exists());
        assert!(!journal_mentions(&store, "failed"));
        assert_eq!(store.counters().failed_fsyncs, 2);
        store.upsert("next", entry("next")).unwrap();
        store.shared.compacting.store(false, Ordering::Release);
        assert_made_good(&store);
        drop(store);
        let reopened = Store::open(&snapshot).unwrap();
        assert!(!fence_of(&reopened).exists());
        assert_eq!(keys(&reopened), ["kept", "next"]);
    }

    /// A fence that names another record than the one at its offset, or another epoch, is
    /// stale (its removal was lost, and the journal grew again): open hides nothing for it and
    /// removes it. So is one naming the header's offset, 0, which would otherwise cut every
    /// record. One that names the record there cuts from it.
    #[test]
    fn open_obeys_a_fence_only_over_the_record_it_names() {
        let (_dir, snapshot, store) = store_with("fence-stale", |b| b.auto_compact(false));
        let ack = store.upsert("second", entry("second")).unwrap();
        let (epoch, offset) = {
            let view = store.shared.read();
            let parsed = crate::journal::parse_journal(
                store.journal_path(),
                &std::fs::read(store.journal_path()).unwrap(),
            )
            .unwrap();
            (view.epoch, parsed.records.last().unwrap().offset)
        };
        let writer = store.shared.writer;
        let fence_path = fence_of(&store);
        drop(store);
        let put = |epoch, offset, seq| {
            let fence = crate::fence::Fence {
                epoch,
                offset,
                writer,
                seq,
            };
            std::fs::write(&fence_path, fence.encode_line()).unwrap();
        };
        for (epoch, offset, seq) in [
            (epoch, offset, ack.seq + 1),
            (epoch + 1, offset, ack.seq),
            (epoch, 0, ack.seq),
        ] {
            put(epoch, offset, seq);
            let reopened = Store::open(&snapshot).unwrap();
            assert_eq!(reopened.open_report().fenced_batch_bytes, None);
            assert_eq!(keys(&reopened), ["kept", "second"]);
            assert!(!fence_path.exists());
        }
        put(epoch, offset, ack.seq);
        let reopened = Store::open(&snapshot).unwrap();
        assert!(reopened.open_report().fenced_batch_bytes.unwrap() > 0);
        assert_eq!(keys(&reopened), ["kept"]);
    }

    /// A fence file that is not a fence is corruption: open refuses it, naming it, and with
    /// `recover` renames it aside and says so.
    #[test]
    fn a_corrupt_fence_is_refused_or_quarantined() {
        let (_dir, snapshot, store) = store_with("fence-corrupt", |b| b.auto_compact(false));
        let fence_path = fence_of(&store);
        drop(store);
        std::fs::write(&fence_path, b"{\"sessionkitFence\":1,\"epo").unwrap();
        let err = Store::open(&snapshot).unwrap_err();
        assert!(err.is_corrupt(), "{err}");
        assert_eq!(err.path(), Some(fence_path.as_path()));
        assert!(crate::load_store(&snapshot).unwrap_err().is_corrupt());

        let reopened = Store::builder().recover(true).open(&snapshot).unwrap();
        let quarantined = &reopened.open_report().quarantined;
        assert_eq!(quarantined.len(), 1);
        assert!(quarantined[0].to_string_lossy().contains(".fence.corrupt."));
        assert!(!fence_path.exists());
        assert_eq!(keys(&reopened), ["kept"]);
    }

    /// A reader reading without an OS lock of its own, because this process holds the
    /// journal's exclusive lock, keeps that lock from being let go until it is done. Were the
    /// writer's failed batch to let go of it meanwhile, another process could append a batch
    /// of its own, which the reader would read and apply, and which that process then cuts
    /// back out: its caller told the update failed, the reader's offset past the end of the
    /// file, and later records read from the middle of a line.
    #[test]
    fn a_reader_under_this_process_s_lock_never_reads_another_process_s_batch() {
        use crate::hooks::{Point, on};
        use std::sync::mpsc;

        let sync = SyncMode::Interval(Duration::ZERO);
        let (_dir, snapshot, a) = store_with("held-read", |b| b.auto_compact(false).sync(sync));
        // Another process: an open of its own, with OS locks of its own.
        let b = Store::builder()
            .auto_compact(false)
            .sync(sync)
            .open(&snapshot)
            .unwrap();
        // No compaction to make good the failed fsyncs below: it would take the lock too.
        a.shared.compacting.store(true, Ordering::Release);
        b.shared.compacting.store(true, Ordering::Release);
        let journal = a.journal_path().to_path_buf();

        // A's batch is appended, and a reader of A starts and stops where it would read
        // under A's lock.
        let (reading_tx, reading_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        on(Point::ReadingWhileHeld, &journal, move || {
            reading_tx.send(()).unwrap();
            go_rx.recv().unwrap();
        });
        let (reader_tx, reader_rx) = mpsc::channel();
        let reader = a.clone();
        on(Point::BatchAppended, &journal, move || {
            let reader = std::thread::spawn(move || reader.get("b1").unwrap());
            reader_tx.send(reader).unwrap();
            reading_rx.recv().unwrap();
        });
        crate::files::faults::plant(Fault::Sync, &journal, true);
        let writer_a = std::thread::spawn({
            let a = a.clone();
            move || a.upsert("a1", entry("a1"))
        });
        let reader = reader_rx.recv().unwrap();

        // B's batch: it stops once appended, until the reader has read. With the lock let go
        // early, B appends while the reader waits; kept, B waits for the lock, the reader is
        // let go after a while, and B appends after it.
        let (appended_tx, appended_rx) = mpsc::channel();
        let (read_tx, read_rx) = mpsc::channel::<()>();
        on(Point::BatchAppended, &journal, move || {
            let _ = appended_tx.send(());
            let _ = read_rx.recv();
        });
        let writer_b = std::thread::spawn({
            let b = b.clone();
            move || b.upsert("b1", entry("b1"))
        });
        let _ = appended_rx.recv_timeout(Duration::from_secs(2));
        go_tx.send(()).unwrap();
        let seen = reader.join().unwrap();
        read_tx.send(()).unwrap();
        assert!(writer_a.join().unwrap().is_err());
        assert!(writer_b.join().unwrap().is_err());
        crate::files::faults::plant(Fault::Sync, &journal, false);
        assert_eq!(seen, None, "read a batch another process then cut back out");
        assert_eq!(a.get("b1").unwrap(), None);
        let len = std::fs::metadata(&journal).unwrap().len();
        assert!(a.shared.read().offset <= len);

        // Both go on; each sees the other's acknowledged update, and so does a fresh open.
        a.upsert("a2", entry("a2")).unwrap();
        b.upsert("b2", entry("b2")).unwrap();
        assert_eq!(keys(&a), ["a2", "b2", "kept"]);
        assert_eq!(keys(&b), ["a2", "b2", "kept"]);
        drop((a, b));
        assert_eq!(keys(&Store::open(&snapshot).unwrap()), ["a2", "b2", "kept"]);
    }

    /// A pass is stuck, for the schedule, only if the cap could not evict what it had to, not
    /// because it met a protected or active entry on the way.
    #[test]
    fn a_pass_that_met_its_cap_past_a_protected_entry_is_not_stuck() {
        let maintenance = |m: crate::Maintenance| {
            m.background(false)
                .interval(None)
                .max_entries(Some(10))
                .prune_after(None)
                .protect(|key, _| key.starts_with("keep:"))
        };
        let (_dir, _snapshot, store) = store_with("pass-end", |b| {
            b.maintenance(maintenance(crate::Maintenance::new()))
        });
        let at =
            |i: u64| Entry::parse(&format!(r#"{{"sessionId":"s{i}","updatedAt":{i}}}"#)).unwrap();
        store.upsert("keep:00", at(0)).unwrap();
        for i in 1..12 {
            store.upsert(format!("k{i:02}"), at(i)).unwrap();
        }
        let outcome = crate::maintain::run(&store.shared, false);
        let report = outcome.as_ref().unwrap();
        assert_eq!(report.capped.len(), 3, "{report:?}");
        assert_eq!(report.kept_protected, 1);
        assert!(!super::pass_end(&outcome).stuck);

        // Running sessions only, which the cap may not touch: it evicts none of what it had
        // to.
        for i in 12..15 {
            let running = format!(r#"{{"sessionId":"r{i}","updatedAt":0,"status":"running"}}"#);
            store
                .upsert(format!("r{i:02}"), Entry::parse(&running).unwrap())
                .unwrap();
        }
        for key in keys(&store) {
            if !key.starts_with('r') {
                store.delete(key).unwrap();
            }
        }
        for i in 20..32 {
            let running = format!(r#"{{"sessionId":"r{i}","updatedAt":{i},"status":"running"}}"#);
            store
                .upsert(format!("r{i:02}"), Entry::parse(&running).unwrap())
                .unwrap();
        }
        let outcome = crate::maintain::run(&store.shared, false);
        assert!(outcome.as_ref().unwrap().capped.is_empty());
        assert!(super::pass_end(&outcome).stuck);
    }
}
