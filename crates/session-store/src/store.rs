//! The store: a snapshot and a journal on disk, the state in memory, one writer thread per
//! store that commits updates in groups, and compaction in the background.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::time::{Duration, Instant, UNIX_EPOCH};

use sessionkit_write_lock::{Clock, SystemClock};

use crate::entry::{Activity, Entry, Patch};
use crate::error::{Error, Input, Operation, Result};
use crate::files::JournalFile;
use crate::journal::{EvictReason, JOURNAL_SUFFIX, SeqTracker, WriterId};
#[cfg(doc)]
use crate::maintain::MaintenanceMode;
use crate::maintain::{Maintenance, MaintenanceReport};
use crate::open::NextView;
use crate::schedule::Schedule;
use crate::state::{State, Stats};
use crate::writer::{self, Request, Update};

/// How durable an acknowledged update is, as Redis' `appendfsync` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SyncMode {
    /// Each batch is fsynced before its updates are acknowledged: an acknowledged update
    /// survives a power loss. One write and one fsync per batch, however many updates it holds.
    #[default]
    EveryBatch,
    /// Updates are acknowledged once written (they survive a crash of the process), and the
    /// journal is fsynced at most this often, so a power loss loses at most about this much.
    ///
    /// A failed fsync is logged, counted ([`IoCounters::failed_fsyncs`]) and tried again an
    /// interval later. After a failed fsync the kernel may have dropped the pages it could not
    /// write, and a later fsync that succeeds does not bring them back: what was written
    /// before the failure would not survive a power loss. So the store then compacts in the
    /// background as soon as it can, automatic compaction off or not: a compaction writes the
    /// whole registry from memory with fsync, which makes it durable again
    /// ([`IoCounters::fsync_repairs`]). A failed compaction is tried again after 1 s, doubling
    /// up to 5 min, and once more by the writer thread when the last handle is dropped (a
    /// process that exits right away cuts that short). [`Store::flush`] does both the fsync
    /// and the compaction at once, in the caller's thread. Only this process can make the
    /// failure good, from its memory. If another process compacts the store first, this one
    /// follows that compaction by reading the journals and keeps its memory and the repair;
    /// only when it has to reload the whole store (after two compactions it did not see) does
    /// it give the repair up ([`IoCounters::forfeited_repairs`]).
    Interval(Duration),
    /// Updates are acknowledged once written; the journal is fsynced only by
    /// [`Store::flush`] (the kernel writes it back in its own time). A crash of the process
    /// loses nothing, a power loss may.
    Never,
}

/// By default, compaction waits until the journal holds at least this many bytes: 1 MiB.
pub const DEFAULT_COMPACT_MIN_BYTES: u64 = 1 << 20;
/// By default, compaction starts once the journal is this many times the snapshot's size.
pub const DEFAULT_COMPACT_RATIO: f64 = 1.0;
/// By default, the most updates one batch carries: 4,096.
pub const DEFAULT_MAX_BATCH: usize = 4096;
/// By default, the longest wait for the journal's OS lock: 60 s, OpenClaw's lock acquire
/// timeout.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The settings of a [`Store`], built with [`Store::builder`].
#[derive(Clone)]
pub struct StoreBuilder {
    pub(crate) sync: SyncMode,
    pub(crate) recover: bool,
    pub(crate) create: bool,
    pub(crate) compact_min_bytes: u64,
    pub(crate) compact_ratio: f64,
    pub(crate) auto_compact: bool,
    pub(crate) max_batch: usize,
    pub(crate) lock_timeout: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) maintenance: Option<Maintenance>,
}

impl fmt::Debug for StoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreBuilder")
            .field("sync", &self.sync)
            .field("recover", &self.recover)
            .field("create", &self.create)
            .field("compact_min_bytes", &self.compact_min_bytes)
            .field("compact_ratio", &self.compact_ratio)
            .field("auto_compact", &self.auto_compact)
            .field("max_batch", &self.max_batch)
            .field("lock_timeout", &self.lock_timeout)
            .field("maintenance", &self.maintenance)
            .finish_non_exhaustive()
    }
}

impl Default for StoreBuilder {
    fn default() -> Self {
        StoreBuilder {
            sync: SyncMode::default(),
            recover: false,
            create: true,
            compact_min_bytes: DEFAULT_COMPACT_MIN_BYTES,
            compact_ratio: DEFAULT_COMPACT_RATIO,
            auto_compact: true,
            max_batch: DEFAULT_MAX_BATCH,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            clock: Arc::new(SystemClock),
            maintenance: None,
        }
    }
}

impl StoreBuilder {
    /// How durable an acknowledged update is.
    ///
    /// By default, [`SyncMode::EveryBatch`]: fsync every batch.
    pub fn sync(&mut self, mode: SyncMode) -> &mut Self {
        self.sync = mode;
        self
    }

    /// What to do with a corrupt snapshot or journal at open. Off: open fails with the
    /// corruption error and the files are left as they are. On: the damaged file is put aside
    /// as `<name>.corrupt.<timestamp>` and reported in [`OpenReport`]: a snapshot is renamed,
    /// and an empty one written in its place (as for a snapshot lost beside a journal that a
    /// compaction wrote, [`Error::MissingSnapshot`]), so that every process reads the store as
    /// this one does;
    /// a journal is copied, then replaced atomically by the whole records before the damage. Never is a damaged file replaced
    /// by an empty one without a report.
    ///
    /// By default, off.
    pub fn recover(&mut self, yes: bool) -> &mut Self {
        self.recover = yes;
        self
    }

    /// Whether a missing store is created (an empty journal; the snapshot is written at the
    /// first compaction). Off: a missing snapshot and journal is [`Error::NoStore`].
    ///
    /// By default, on.
    pub fn create(&mut self, yes: bool) -> &mut Self {
        self.create = yes;
        self
    }

    /// Compaction starts in the background once the journal is at least `min_bytes` long and
    /// at least `ratio` times the snapshot's size. A `ratio` that is negative or not a number
    /// fails [`open`](StoreBuilder::open) with [`Error::Invalid`].
    ///
    /// By default, 1 MiB and 1.0.
    pub fn compact_when(&mut self, min_bytes: u64, ratio: f64) -> &mut Self {
        self.compact_min_bytes = min_bytes;
        self.compact_ratio = ratio;
        self
    }

    /// Whether the store compacts by itself in the background; [`Store::compact`] works
    /// either way. Off, the store still compacts after a failed fsync of its journal, to make
    /// it durable again (see [`SyncMode::Interval`]).
    ///
    /// By default, on.
    pub fn auto_compact(&mut self, yes: bool) -> &mut Self {
        self.auto_compact = yes;
        self
    }

    /// The most updates one batch carries (one write, at most one fsync).
    ///
    /// By default, 4,096. Zero counts as one.
    pub fn max_batch(&mut self, updates: usize) -> &mut Self {
        self.max_batch = updates.max(1);
        self
    }

    /// The longest one wait for the journal's OS lock lasts. Another process holds it for one
    /// batch's write and fsync, or a compaction's swap, and the kernel drops the lock of a
    /// process that dies; so a wait this long means a live holder that hangs (stopped, or
    /// stuck in an fsync on a failing disk), or one that writes without a pause. The
    /// operation then fails with an error whose [`is_timeout`](Error::is_timeout) is true,
    /// naming the journal, and writes nothing. An operation can wait more than once: a write
    /// queued behind this process's compaction waits for the compaction's wait first, and a
    /// reader that finds the journal replaced waits again for the new one.
    ///
    /// A waiter is woken by the OS when the lock is released (see the crate's platform
    /// notes), so it does not lose the lock to a busy holder between polls.
    ///
    /// By default, 60 s ([`DEFAULT_LOCK_TIMEOUT`]).
    pub fn lock_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.lock_timeout = timeout;
        self
    }

    /// Turns on maintenance with these settings: pruning, the entry cap, transcripts of
    /// evicted sessions, archives, orphans and the disk budget, in the background (started by
    /// the cap, and every [`interval`](Maintenance::interval)) and on demand with
    /// [`Store::maintain`]. [`Maintenance::default`] has OpenClaw's settings (enforce, 500
    /// entries, 30 days).
    ///
    /// By default, no maintenance: a store on its own never evicts or deletes anything it was
    /// not told to. The `sessionkit` facade's service state turns it on.
    pub fn maintenance(&mut self, maintenance: Maintenance) -> &mut Self {
        self.maintenance = Some(maintenance);
        self
    }

    /// The clock that stamps `updatedAt` (and ages entries for maintenance).
    ///
    /// By default, the system clock.
    pub fn clock(&mut self, clock: Arc<dyn Clock>) -> &mut Self {
        self.clock = clock;
        self
    }

    /// Opens the store whose snapshot is `path` (`sessions.json`; the journal is
    /// `sessions.json.journal` beside it): loads the snapshot, replays the journal, repairs a
    /// torn journal tail, and starts the writer thread. Blocks; from async code use
    /// `open_async` (feature `tokio`).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a setting no store can run with (a compaction ratio or a high
    /// water mark out of range), before anything on disk is touched;
    /// [`Error::CorruptSnapshot`], [`Error::CorruptJournal`] or [`Error::MissingSnapshot`]
    /// (without [`recover`](StoreBuilder::recover)); [`Error::UnsupportedJournal`]; [`Error::Io`] if a
    /// file cannot be read, created or locked ([`Error::is_timeout`] if another process held
    /// the journal's lock past the [`lock_timeout`](StoreBuilder::lock_timeout)).
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Store> {
        self.check()?;
        crate::open::open(self.clone(), path.as_ref())
    }

    /// Refuses settings no store can run with, before anything on disk is touched.
    fn check(&self) -> Result<()> {
        let invalid = |reason| {
            Err(Error::Invalid {
                input: Input::Setting,
                reason,
                source: None,
            })
        };
        if !(self.compact_ratio.is_finite() && self.compact_ratio >= 0.0) {
            return invalid(
                "the compaction ratio (`compact_when`) must be a finite number of at least 0",
            );
        }
        if let Some(m) = &self.maintenance
            && !(0.0..=1.0).contains(&m.high_water)
        {
            return invalid("the disk budget's high water mark must be a number from 0 to 1");
        }
        Ok(())
    }
}

/// What opening a store found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct OpenReport {
    /// Entries loaded from the snapshot.
    pub snapshot_entries: usize,
    /// Journal records replayed.
    pub journal_records: usize,
    /// Bytes of a torn journal tail that were cut off (a crash mid-append), if any.
    pub torn_tail_bytes: Option<u64>,
    /// Bytes of a failed batch that were cut off, if any: its writer could not cut it back out
    /// of the journal, and fenced it off from every reader instead
    /// ([`Error::Batch`](crate::Error::Batch)).
    pub fenced_batch_bytes: Option<u64>,
    /// Damaged files renamed aside (only with [`StoreBuilder::recover`]).
    pub quarantined: Vec<PathBuf>,
    /// True if the snapshot was missing beside a journal that a compaction wrote, and the
    /// store was opened with the journal's entries only, over an empty snapshot written in its
    /// place (only with [`StoreBuilder::recover`];
    /// without it the open fails with [`Error::MissingSnapshot`](crate::Error::MissingSnapshot)).
    pub snapshot_lost: bool,
    /// True if the store did not exist and was created.
    pub created: bool,
    /// Temp files of the snapshot and the journal older than 5 min (left by a compaction a
    /// crash cut short), removed.
    pub temps_removed: Vec<PathBuf>,
}

/// What a finished update promises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Ack {
    /// The update's sequence number among this writer's records.
    pub seq: u64,
    /// True if the batch holding it was fsynced before this acknowledgement. An update that
    /// wrote nothing (a delete of a missing key, or an eviction of an entry that changed) is
    /// durable if everything this process wrote before it is: always with
    /// [`SyncMode::EveryBatch`], once the last write was synced with
    /// [`SyncMode::Interval`], never with [`SyncMode::Never`].
    pub durable: bool,
}

/// How [`Store::list`] orders and bounds its answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// The order of the answer.
    pub order: ListOrder,
    /// At most this many entries.
    pub limit: Option<usize>,
}

impl ListQuery {
    /// Every entry, by key.
    pub fn all() -> ListQuery {
        ListQuery::default()
    }

    /// Only keys starting with `prefix`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> ListQuery {
        self.prefix = Some(prefix.into());
        self
    }

    /// In this order.
    pub fn order(mut self, order: ListOrder) -> ListQuery {
        self.order = order;
        self
    }

    /// At most `limit` entries.
    pub fn limit(mut self, limit: usize) -> ListQuery {
        self.limit = Some(limit);
        self
    }
}

/// The order of a [`ListQuery`]'s answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ListOrder {
    /// By key, ascending.
    #[default]
    Key,
    /// Most recently updated first (entries without `updatedAt` last).
    NewestFirst,
    /// Least recently updated first (entries without `updatedAt` first).
    OldestFirst,
}

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CompactReport {
    /// Entries in the new snapshot.
    pub entries: usize,
    /// The new snapshot's size.
    pub snapshot_bytes: u64,
    /// The journal's size before.
    pub journal_bytes_before: u64,
    /// The new journal's size (its header and the records appended during the compaction).
    pub journal_bytes_after: u64,
    /// How long the journal was locked for the swap, in microseconds.
    pub locked_micros: u64,
    /// True if another process compacted first; this compaction then changed nothing.
    pub superseded: bool,
}

/// Counters of what the store did, for benchmarks and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct IoCounters {
    /// Batches written.
    pub batches: u64,
    /// Updates written.
    pub updates: u64,
    /// Journal bytes this process appended.
    pub journal_bytes: u64,
    /// Journal fsyncs.
    pub fsyncs: u64,
    /// Compactions finished by this process.
    pub compactions: u64,
    /// Snapshot bytes this process wrote.
    pub snapshot_bytes: u64,
    /// Times this process followed another process's compaction by reading journals only: the
    /// rest of the journal it had open up to where the compaction started, then the new
    /// journal's records it had not read ([`JournalBase`](crate::JournalBase)). Those bytes
    /// count in [`journal_bytes_read`](Self::journal_bytes_read).
    pub followed_compactions: u64,
    /// Times this process reloaded the whole store, snapshot and journal, after another
    /// process compacted it: when it could not follow the compaction (the new journal did not
    /// continue the one it had open, as when two compactions happened in between).
    pub reloads: u64,
    /// Journal bytes read back after opening, to catch up with what other processes (or other
    /// handles) appended. This process's own batches are applied as written, never read back.
    pub journal_bytes_read: u64,
    /// Maintenance passes this process started in the background.
    pub background_passes: u64,
    /// Compactions this process started in the background.
    pub background_compactions: u64,
    /// Background compactions that failed; after each, the next waits longer (1 s, doubling
    /// up to 5 min).
    pub failed_compactions: u64,
    /// Times an operation of this process found the journal's OS lock held (by another
    /// process, or another open of the store) and waited for it.
    pub journal_lock_waits: u64,
    /// Journal fsyncs that failed. A batch's failed fsync fails the batch (its bytes are
    /// taken back out); interval mode's timed fsync is tried again an interval later. After
    /// either, the store compacts as soon as it can, to make durable again what the kernel may
    /// have dropped (see [`SyncMode::Interval`]).
    pub failed_fsyncs: u64,
    /// Compactions that made the store durable again after failed fsyncs of the journal: each
    /// one started after the failures it made good. Most are background compactions, started
    /// for this and counted in [`background_compactions`](Self::background_compactions).
    pub fsync_repairs: u64,
    /// Times a failed fsync could no longer be made good: another process compacted the store
    /// first, and this one reloaded it. What the failed fsync covered survives a power loss
    /// only if that compaction read it before the kernel dropped it; an error is logged.
    pub forfeited_repairs: u64,
}

/// The in-memory view of the store, as of `offset` bytes into the journal `journal`.
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) state: State,
    pub(crate) journal: Arc<JournalFile>,
    /// How far into the journal the state goes: just past the last whole line applied.
    pub(crate) offset: u64,
    /// Lines read so far, the header included (for line numbers in errors).
    pub(crate) lines: usize,
    /// The journal's epoch, from its header.
    pub(crate) epoch: u64,
    /// The `(writer, seq)` pairs applied, to skip a record seen twice.
    pub(crate) seqs: SeqTracker,
    /// The snapshot file's size when it was loaded or written.
    pub(crate) snapshot_bytes: u64,
}

/// Everything the store's handles and its threads share.
pub(crate) struct Shared {
    pub(crate) snapshot_path: PathBuf,
    pub(crate) journal_path: PathBuf,
    pub(crate) config: StoreBuilder,
    pub(crate) writer: WriterId,
    pub(crate) view: RwLock<View>,
    /// Held by the writer for a batch, by a maintenance pass for each batch of its evictions,
    /// and by a compaction for its swap: the journal's OS lock does not exclude two users of
    /// the same open file. Taken in turn, so that the writer's next batch goes between a pass's
    /// batches.
    pub(crate) batch_lock: InTurn,
    pub(crate) seq: AtomicU64,
    pub(crate) compacting: AtomicBool,
    /// The thread that runs background compactions.
    pub(crate) compactor: crate::writer::Background,
    pub(crate) counters: Mutex<IoCounters>,
    /// True while a background maintenance pass runs.
    pub(crate) maintaining: AtomicBool,
    /// Held by each pass that may change something (background, or [`Store::maintain`]) for
    /// its whole length: two at once would each plan from the other's half-done work, and a
    /// disk budget would evict entries for bytes the other pass had already freed.
    pub(crate) one_pass: Mutex<()>,
    /// The thread that runs background maintenance passes.
    pub(crate) maintainer: crate::writer::Background,
    /// When background maintenance and compaction run next.
    pub(crate) schedule: Mutex<Schedule>,
    /// Keys marked active in this process ([`Store::mark_active`]), with how many marks.
    pub(crate) active: Mutex<HashMap<String, usize>>,
    /// When the oldest write not yet fsynced happened (interval mode).
    pub(crate) dirty_since: Mutex<Option<Instant>>,
    /// Failed fsyncs of the journal that a compaction has yet to make good.
    pub(crate) fsync_debt: crate::compact::FsyncDebt,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("snapshot_path", &self.snapshot_path)
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A lock granted in the order it was asked for. With a plain mutex, a thread that lets go
/// and at once asks again usually gets it back before a waiting thread wakes: a maintenance
/// pass committing batch after batch of evictions would keep the writer, and every caller,
/// waiting for all of them. (As one batch, 10,000 evictions at a cap of 100,000 stopped the
/// writer for 51 to 75 ms per pass in a diagnostic run of the store benchmark.)
#[derive(Debug, Default)]
pub(crate) struct InTurn {
    /// The next ticket to hand out, and the ticket whose turn it is.
    tickets: Mutex<(u64, u64)>,
    turn: Condvar,
}

/// A turn of an [`InTurn`], ended when dropped.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    lock: &'a InTurn,
}

impl InTurn {
    /// Waits for every earlier ticket's turn to end, then takes its own.
    pub(crate) fn lock(&self) -> Turn<'_> {
        let mut tickets = lock(&self.tickets);
        let mine = tickets.0;
        tickets.0 += 1;
        while tickets.1 != mine {
            tickets = self
                .turn
                .wait(tickets)
                .unwrap_or_else(PoisonError::into_inner);
        }
        Turn { lock: self }
    }

    /// How many are waiting for their turn or have it.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> u64 {
        let tickets = lock(&self.tickets);
        tickets.0 - tickets.1
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        lock(&self.lock.tickets).1 += 1;
        self.lock.turn.notify_all();
    }
}

impl Shared {
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, View> {
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, View> {
        self.view.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now_ms(&self) -> i64 {
        let now = self.config.clock.now();
        now.duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }

    /// The keys marked active in this process.
    pub(crate) fn active_keys(&self) -> HashSet<String> {
        lock(&self.active).keys().cloned().collect()
    }

    /// True if maintenance must not evict `key` now: it is marked active in this process, or
    /// its entry's `status` is `"running"`.
    pub(crate) fn is_active(&self, key: &str, entry: &Entry) -> bool {
        crate::maintain::is_running(entry) || lock(&self.active).contains_key(key)
    }

    pub(crate) fn count(&self, f: impl FnOnce(&mut IoCounters)) {
        f(&mut lock(&self.counters));
    }

    /// Counts a compaction of another process followed by reading journals only, and the
    /// journal bytes read. Nothing owed is forfeited: this process's memory still holds all
    /// it wrote, for a compaction of its own to make good.
    pub(crate) fn followed(&self, bytes_read: u64) {
        self.count(|c| {
            c.followed_compactions += 1;
            c.journal_bytes_read += bytes_read;
        });
    }

    /// Counts a reload of the whole store after another process compacted it. A failed fsync
    /// not yet made good is forfeited: this process's memory, which could have made it good,
    /// now holds what that process's compaction wrote.
    pub(crate) fn reloaded(&self) {
        self.count(|c| c.reloads += 1);
        if self.fsync_debt.forfeit() {
            self.count(|c| c.forfeited_repairs += 1);
            tracing::error!(path = %self.snapshot_path.display(),
                "another process compacted the session store before this one made a failed \
                 fsync of its journal good; what this process wrote before the failure survives \
                 a power loss only if that compaction read it before the kernel dropped it");
        }
    }

    /// Counts a failed fsync of the journal, which a compaction then makes good.
    pub(crate) fn fsync_failed(&self) {
        self.count(|c| c.failed_fsyncs += 1);
        self.fsync_debt.failed();
    }

    /// Counts a wait for the journal's lock ([`IoCounters::journal_lock_waits`]).
    pub(crate) fn lock_waited(&self) {
        self.count(|c| c.journal_lock_waits += 1);
    }

    /// Makes an I/O error of `op`'s `step` on the journal, for `map_err`.
    pub(crate) fn journal_io(
        &self,
        op: Operation,
        step: &'static str,
    ) -> impl FnOnce(io::Error) -> Error + '_ {
        move |e| Error::io(op, step, &self.snapshot_path, &self.journal_path, e)
    }

    /// Brings the view up to date with the journal on disk: the records other processes (or
    /// this one's writer) appended since, or the whole store again if the journal was
    /// replaced by a compaction. Cheap when nothing changed: one `stat`.
    pub(crate) fn refresh(&self) -> Result<()> {
        let (journal, offset) = {
            let view = self.read();
            (view.journal.clone(), view.offset)
        };
        match crate::open::journal_identity(&self.journal_path)? {
            Some((id, len)) if id == journal.id && len == offset => Ok(()),
            Some((id, _)) if id != journal.id => self.reload_from(&journal),
            _ => self.read_appended(&journal),
        }
    }

    /// Loads the store again after another process's compaction replaced `journal`, and
    /// installs it if the view is still on `journal`; a view that another thread of this
    /// process moved on meanwhile is as new as the files were when it was loaded. The files
    /// are loaded with the view's lock let go, so this process's readers are not held up for
    /// a whole snapshot, and the old view (its state, and perhaps the last handle on the old
    /// journal) is dropped after the lock too.
    pub(crate) fn reload_from(&self, journal: &Arc<JournalFile>) -> Result<()> {
        let from = {
            let view = self.read();
            if !Arc::ptr_eq(&view.journal, journal) {
                return Ok(());
            }
            crate::open::Position::of(&view)
        };
        let next = crate::open::next_view(self, &from)?;
        drop(from);
        let mut view = self.write();
        if !Arc::ptr_eq(&view.journal, journal) {
            return Ok(());
        }
        match next {
            NextView::Follow(follow) => {
                let read = follow.bytes_read;
                let old = follow.apply_to(&mut view);
                drop(view);
                self.followed(read);
                drop(old);
            }
            NextView::Reload(fresh) => {
                let old = std::mem::replace(&mut *view, fresh);
                drop(view);
                self.reloaded();
                drop(old);
            }
        }
        Ok(())
    }

    /// Reads what was appended to `journal`, never bytes a writer may still cut back out (a
    /// batch whose fsync fails is taken back, and a reader that had applied it would be left
    /// past the end of the file, reading later records from the middle of a line).
    fn read_appended(&self, journal: &Arc<JournalFile>) -> Result<()> {
        // A view that moved to other files meanwhile is as new as they were when loaded.
        {
            let mut view = self.write();
            if !Arc::ptr_eq(&view.journal, journal) {
                return Ok(());
            }
            // While this process holds the exclusive lock, no other process is appending:
            // every byte before this process's own batch in flight is final.
            if let Some(read) =
                journal.read_while_held(|end| crate::open::catch_up_to(self, &mut view, end))
            {
                return read;
            }
        }
        // Taken before the view's lock: a writer of this process holds the journal's lock
        // while it waits for the view's.
        let _read = journal
            .lock_shared(self.config.lock_timeout, &|| self.lock_waited())
            .map_err(self.journal_io(Operation::ReadJournal, "lock"))?;
        let mut view = self.write();
        if !Arc::ptr_eq(&view.journal, journal) {
            return Ok(());
        }
        crate::open::catch_up(self, &mut view)
    }
}

/// A session registry: `sessions.json` and its journal, shared safely by tasks, threads and
/// processes.
///
/// Cloning a `Store` gives another handle to the same store (and the same writer thread);
/// the writer stops when the last handle is dropped, after finishing what was queued, and
/// [`close`](Store::close) waits for that.
#[derive(Clone)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
    pub(crate) tx: Arc<writer::Sender>,
    pub(crate) report: Arc<OpenReport>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.snapshot_path)
            .field("writer", &self.shared.writer)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// A builder starting from the defaults.
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
    }

    /// Opens the store at `path` with the defaults ([`StoreBuilder::open`]).
    ///
    /// # Errors
    ///
    /// As [`StoreBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        StoreBuilder::default().open(path)
    }

    /// The snapshot's path (`sessions.json`).
    pub fn path(&self) -> &Path {
        &self.shared.snapshot_path
    }

    /// The journal's path (`sessions.json.journal`).
    pub fn journal_path(&self) -> &Path {
        &self.shared.journal_path
    }

    /// What opening the store found and did.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// This store handle's writer id, as written in its journal records.
    pub fn writer_id(&self) -> WriterId {
        self.shared.writer
    }

    /// What this process's store has written so far.
    pub fn counters(&self) -> IoCounters {
        *lock(&self.shared.counters)
    }

    /// The entry under `key`, as of this process's acknowledged updates and whatever other
    /// processes appended to the journal before the call.
    ///
    /// If another process is writing a batch at that moment, this waits for it to finish (its
    /// write and fsync) rather than read bytes it may still take back; it never waits for
    /// this process's own batches. The other reads (`list`, `count`, `stats`) do the same.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] or a corruption error if the journal cannot be read.
    pub fn get(&self, key: &str) -> Result<Option<Entry>> {
        self.shared.refresh()?;
        Ok(self.shared.read().state.get(key).cloned())
    }

    /// The entries `query` asks for, as `(key, entry)` pairs.
    ///
    /// # Errors
    ///
    /// As [`get`](Store::get).
    pub fn list(&self, query: &ListQuery) -> Result<Vec<(String, Entry)>> {
        self.shared.refresh()?;
        let view = self.shared.read();
        let state = &view.state;
        let limit = query.limit.unwrap_or(usize::MAX);
        let keep = |key: &str| query.prefix.as_deref().is_none_or(|p| key.starts_with(p));
        let pick = |key: &str| state.get(key).map(|e| (key.to_owned(), e.clone()));
        Ok(match query.order {
            ListOrder::Key => match query.prefix.as_deref() {
                Some(prefix) => state
                    .with_prefix(prefix)
                    .take(limit)
                    .map(|(k, e)| (k.to_owned(), e.clone()))
                    .collect(),
                None => state
                    .iter()
                    .take(limit)
                    .map(|(k, e)| (k.to_owned(), e.clone()))
                    .collect(),
            },
            ListOrder::OldestFirst => state
                .by_updated_at()
                .filter(|(k, _)| keep(k))
                .take(limit)
                .filter_map(|(k, _)| pick(k))
                .collect(),
            ListOrder::NewestFirst => state
                .by_updated_at()
                .rev()
                .filter(|(k, _)| keep(k))
                .take(limit)
                .filter_map(|(k, _)| pick(k))
                .collect(),
        })
    }

    /// How many entries there are.
    ///
    /// # Errors
    ///
    /// As [`get`](Store::get).
    pub fn count(&self) -> Result<usize> {
        self.shared.refresh()?;
        Ok(self.shared.read().state.len())
    }

    /// Sizes of the state, the snapshot and the journal.
    ///
    /// # Errors
    ///
    /// As [`get`](Store::get).
    pub fn stats(&self) -> Result<StoreStats> {
        self.shared.refresh()?;
        let view = self.shared.read();
        Ok(StoreStats {
            state: view.state.stats(),
            snapshot_bytes: view.snapshot_bytes,
            journal_bytes: view.offset,
        })
    }

    /// Inserts or replaces the entry under `key`, as given: its `updatedAt` (or its lack of
    /// one) is written as it is, for imports, restores and tests that plant an entry of a
    /// given age. To stamp it by OpenClaw's rule, use [`upsert_with`](Store::upsert_with).
    /// Blocks until the update is as durable as the [`SyncMode`] promises; from async code use
    /// `upsert_async` (feature `tokio`).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the batch holding it could not be written or synced; the update is
    /// then not in the store.
    pub fn upsert(&self, key: impl Into<String>, entry: Entry) -> Result<Ack> {
        self.submit(Update::Upsert {
            key: key.into(),
            entry,
            activity: None,
        })
    }

    /// Inserts or replaces the entry under `key`, with `updatedAt` decided as the write path
    /// journals it ([`Entry::stamped`]): with [`Activity::Advance`], OpenClaw's rule (the
    /// latest of the existing entry's, the new entry's and now, never in the future); with
    /// [`Activity::Preserve`], the existing entry's `updatedAt` is kept. Otherwise as
    /// [`upsert`](Store::upsert).
    ///
    /// # Errors
    ///
    /// As [`upsert`](Store::upsert).
    pub fn upsert_with(
        &self,
        key: impl Into<String>,
        entry: Entry,
        activity: Activity,
    ) -> Result<Ack> {
        self.submit(Update::Upsert {
            key: key.into(),
            entry,
            activity: Some(activity),
        })
    }

    /// Applies an RFC 7396 merge patch to the entry under `key` (to `{}` if there is none),
    /// and sets `updatedAt` by OpenClaw's rule, or keeps it with [`Activity::Preserve`].
    ///
    /// # Errors
    ///
    /// As [`upsert`](Store::upsert).
    pub fn patch(&self, key: impl Into<String>, patch: Patch, activity: Activity) -> Result<Ack> {
        self.submit(Update::Patch {
            key: key.into(),
            patch,
            activity,
        })
    }

    /// Sets the entry's `updatedAt` to now. A missing key is [`Error::NoSuchEntry`].
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchEntry`], or as [`upsert`](Store::upsert).
    pub fn touch(&self, key: impl Into<String>) -> Result<Ack> {
        self.submit(Update::Touch { key: key.into() })
    }

    /// Removes the entry under `key`; removing a missing key succeeds and writes nothing.
    ///
    /// # Errors
    ///
    /// As [`upsert`](Store::upsert).
    pub fn delete(&self, key: impl Into<String>) -> Result<Ack> {
        self.submit(Update::Delete {
            key: key.into(),
            reason: None,
            if_updated_at: None,
        })
    }

    /// Removes the entry under `key` as maintenance does, recording why.
    ///
    /// # Errors
    ///
    /// As [`upsert`](Store::upsert).
    pub fn evict(&self, key: impl Into<String>, reason: EvictReason) -> Result<Ack> {
        self.submit(Update::Delete {
            key: key.into(),
            reason: Some(reason),
            if_updated_at: None,
        })
    }

    fn submit(&self, update: Update) -> Result<Ack> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.tx
            .send(Request::new(update, writer::Reply::Sync(reply)))?;
        answer
            .recv()
            .unwrap_or_else(|_| Err(writer::stopped(&self.shared)))
    }

    /// Runs a maintenance pass now, in this thread, with the store's
    /// [`maintenance`](StoreBuilder::maintenance) settings; with `dry_run` it only reports what
    /// it would do. Without maintenance settings it does nothing and says so
    /// ([`MaintenanceMode::Off`]).
    ///
    /// A pass of this process's that is running (in the background, or another call) is
    /// waited for first: one pass that changes something at a time, so that neither plans
    /// from the other's half-done work. A dry run does not wait. Passes of other processes
    /// are not waited for; each eviction applies only to the entry as its pass planned it,
    /// and each file is checked again before it goes, so two at once do less, never remove
    /// what is in use.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the store's directory cannot be listed, or the journal cannot be
    /// read. Files that cannot be archived or removed are listed in the report's `errors`.
    pub fn maintain(&self, dry_run: bool) -> Result<MaintenanceReport> {
        let report = crate::maintain::run(&self.shared, dry_run)?;
        crate::maintain::announce(&self.shared, &report);
        Ok(report)
    }

    /// Marks `key` active in this process until the returned mark is dropped: maintenance
    /// never evicts it (nor an entry whose `status` is `"running"`, in any process).
    pub fn mark_active(&self, key: impl Into<String>) -> ActiveMark {
        let key = key.into();
        *lock(&self.shared.active).entry(key.clone()).or_default() += 1;
        ActiveMark {
            shared: self.shared.clone(),
            key,
        }
    }

    /// Writes a new snapshot and starts a fresh journal now, in this thread. Writers are held
    /// up only for the swap at the end (about one batch).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if a file cannot be written; nothing is lost, the old snapshot and
    /// journal stay.
    pub fn compact(&self) -> Result<CompactReport> {
        crate::compact::compact(&self.shared)
    }

    /// Makes every update acknowledged before this call durable now, whatever the
    /// [`SyncMode`]: fsyncs the journal, and if a fsync of it has failed since the last
    /// compaction that made such a failure good (see [`SyncMode::Interval`]), compacts in this
    /// thread. Writers are held up for the one fsync.
    ///
    /// Call it before a process exits with [`SyncMode::Interval`] or [`SyncMode::Never`]:
    /// dropping the last handle lets the writer thread finish queued updates and an owed
    /// fsync by itself, but a process that exits right away may cut that short.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] with [`Operation::Flush`] if the fsync failed and the compaction that
    /// would make it good was superseded by another process's or could not start; the
    /// compaction's own error if it failed. Either way the updates stay applied, and a
    /// compaction in the background tries again.
    pub fn flush(&self) -> Result<()> {
        crate::writer::flush(&self.shared)
    }

    /// Closes this handle and, if it is the store's last, waits until no thread of the store
    /// touches its directory any more: the writer has committed what was queued (and made an
    /// owed fsync), and a background compaction or maintenance pass that is queued or
    /// running has ended, its [`on_pass`](crate::Maintenance::on_pass) hook included. True
    /// if it was the last handle; with other handles left (clones) it only drops this one.
    ///
    /// Dropping the last handle never waits: the store's threads finish by themselves, and
    /// one may still be archiving transcripts or appending evictions as the drop returns.
    /// Close instead where the directory is checked, copied or removed next. Called from a
    /// pass's [`on_pass`](crate::Maintenance::on_pass) hook, it does not wait for that pass.
    /// Blocks; from async code use `close_async` (feature `tokio`).
    pub fn close(self) -> bool {
        let Store { shared, tx, report } = self;
        drop((shared, report));
        // `into_inner`, not `try_unwrap`: of two handles closed at once, one is the last.
        match Arc::into_inner(tx) {
            Some(writer) => {
                writer.close();
                true
            }
            None => false,
        }
    }
}

/// A key marked active ([`Store::mark_active`]); dropping it removes the mark.
#[derive(Debug)]
pub struct ActiveMark {
    shared: Arc<Shared>,
    key: String,
}

impl Drop for ActiveMark {
    fn drop(&mut self) {
        let mut active = lock(&self.shared.active);
        if let Some(n) = active.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                active.remove(&self.key);
            }
        }
    }
}

/// The directory of a file path as the path gives it: empty for a bare name, so that the paths
/// of the store's other files read as the caller wrote the store's (`s1.jsonl`, not
/// `./s1.jsonl`). Hand it to the file system through [`fs_dir`].
pub(crate) fn dir_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// `dir` as the file system takes it: `.` for the empty directory of a bare name.
pub(crate) fn fs_dir(dir: &Path) -> &Path {
    if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }
}

/// Sizes of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct StoreStats {
    /// The in-memory state.
    pub state: Stats,
    /// The snapshot file's size when it was last loaded or written.
    pub snapshot_bytes: u64,
    /// The journal's size as far as this process has read it.
    pub journal_bytes: u64,
}

/// The journal's path for the snapshot at `snapshot`: the same path with `.journal` added.
pub fn journal_path_for(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(JOURNAL_SUFFIX);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::InTurn;

    /// A thread that lets go of an [`InTurn`] and asks again at once gets it only after the
    /// thread that was waiting meanwhile: the writer's batch goes between a pass's batches.
    #[test]
    fn turns_are_taken_in_the_order_asked_for() {
        let lock = Arc::new(InTurn::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = lock.lock();
        let waiter = std::thread::spawn({
            let (lock, order) = (lock.clone(), order.clone());
            move || {
                let _turn = lock.lock();
                order.lock().unwrap().push("waiter");
            }
        });
        // The waiter holds a ticket once two are out (this thread's turn and its own).
        sessionkit_test_support::wait_until("the waiter to queue", || lock.queued() == 2);
        drop(first);
        let again = lock.lock();
        order.lock().unwrap().push("again");
        drop(again);
        waiter.join().unwrap();
        assert_eq!(*order.lock().unwrap(), ["waiter", "again"]);
        assert_eq!(lock.queued(), 0);
    }
}
