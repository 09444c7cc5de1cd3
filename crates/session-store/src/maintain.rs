//! Maintenance: pruning, the entry cap, transcripts of evicted sessions, archives, orphans and
//! the disk budget. It runs in the background (coalesced, one pass at a time, with a time
//! budget), or on demand with [`Store::maintain`](crate::Store::maintain).
//!
//! A pass *plans* (pure; reading the state in short turns, each under its read lock, so the
//! writer waits for one turn at most), then *executes*: evictions go to the
//! journal as one batch of `evict` records, and only once they are written are transcripts
//! archived or deleted, so a crash in between leaves orphans (which the next pass removes),
//! never an entry without its transcript. An enforcing pass does this twice: first for the
//! evictions it can plan from the state alone, then for the files, planned with a listing of
//! the store's directory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::ops::{Bound, ControlFlow};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sessionkit_atomic_fs::{in_directory_turn, in_turn_of_parent};

use crate::entry::{Entry, is_transcript_name, transcript_sessions};
use crate::journal::EvictReason;
use crate::state::State;
use crate::store::fs_dir;

/// By default, entries not updated for this long are pruned: 30 days.
pub const DEFAULT_PRUNE_AFTER: Duration = Duration::from_secs(30 * 24 * 3600);
/// By default, the most entries the registry keeps: 500.
pub const DEFAULT_MAX_ENTRIES: usize = 500;
/// By default, a transcript no entry references is left alone for this long: 1 hour (a
/// session's transcript may be written before its entry).
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(3600);
/// By default, the budget of one maintenance pass: 50 ms.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_millis(50);
/// By default, how often maintenance runs in the background when nothing else starts it:
/// every 60 s.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// By default, the disk budget's high water mark: 80 % of `max_disk_bytes`.
pub const DEFAULT_HIGH_WATER: f64 = 0.8;
/// Orphans, archives and temp files a pass removes before it looks at its time budget.
pub(crate) const MIN_FILES_PER_PASS: usize = 64;
/// Store temp files older than this are left by a crash, not by a compaction in progress:
/// removed at open and under disk pressure. 5 min.
pub(crate) const TEMP_GRACE: Duration = Duration::from_secs(5 * 60);

/// Whether maintenance changes anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum MaintenanceMode {
    /// Prune, cap, archive and delete.
    #[default]
    Enforce,
    /// Plan as `Enforce` would, log a warning with what it would do, change nothing.
    Warn,
    /// No maintenance at all, not even in the background.
    Off,
}

/// What happens to the transcript of an evicted or orphaned session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TranscriptDisposal {
    /// Renamed to `<file>.deleted.<UTC time>` and deleted after the archive retention.
    #[default]
    Archive,
    /// Deleted at once.
    Delete,
}

/// Decides whether an entry is protected from the cap and from pruning.
pub type Protection = Arc<dyn Fn(&str, &Entry) -> bool + Send + Sync>;

/// Called with the report of each pass that changed something ([`Maintenance::on_pass`]).
pub type PassHook = Arc<dyn Fn(&MaintenanceReport) + Send + Sync>;

/// The maintenance settings of a store ([`StoreBuilder::maintenance`]); every setter says its
/// default.
///
/// [`StoreBuilder::maintenance`]: crate::StoreBuilder::maintenance
#[derive(Clone)]
pub struct Maintenance {
    pub(crate) mode: MaintenanceMode,
    pub(crate) prune_after: Option<Duration>,
    pub(crate) max_entries: Option<usize>,
    pub(crate) transcripts: TranscriptDisposal,
    pub(crate) archive_retention: Option<Duration>,
    pub(crate) orphan_grace: Duration,
    pub(crate) max_disk_bytes: Option<u64>,
    pub(crate) high_water: f64,
    pub(crate) time_budget: Duration,
    pub(crate) interval: Option<Duration>,
    pub(crate) background: bool,
    pub(crate) protect: Option<Protection>,
    pub(crate) on_pass: Option<PassHook>,
}

impl fmt::Debug for Maintenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Maintenance")
            .field("mode", &self.mode)
            .field("prune_after", &self.prune_after)
            .field("max_entries", &self.max_entries)
            .field("transcripts", &self.transcripts)
            .field("archive_retention", &self.archive_retention)
            .field("orphan_grace", &self.orphan_grace)
            .field("max_disk_bytes", &self.max_disk_bytes)
            .field("high_water", &self.high_water)
            .field("time_budget", &self.time_budget)
            .field("interval", &self.interval)
            .field("background", &self.background)
            .field("protect", &self.protect.is_some())
            .field("on_pass", &self.on_pass.is_some())
            .finish()
    }
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance {
            mode: MaintenanceMode::Enforce,
            prune_after: Some(DEFAULT_PRUNE_AFTER),
            max_entries: Some(DEFAULT_MAX_ENTRIES),
            transcripts: TranscriptDisposal::Archive,
            archive_retention: Some(DEFAULT_PRUNE_AFTER),
            orphan_grace: DEFAULT_ORPHAN_GRACE,
            max_disk_bytes: None,
            high_water: DEFAULT_HIGH_WATER,
            time_budget: DEFAULT_TIME_BUDGET,
            interval: Some(DEFAULT_INTERVAL),
            background: true,
            protect: None,
            on_pass: None,
        }
    }
}

impl Maintenance {
    /// The defaults (OpenClaw's, learned the hard way): enforce, prune after 30 days, at most
    /// 500 entries, archive transcripts and keep archives 30 days, no disk budget.
    pub fn new() -> Maintenance {
        Maintenance::default()
    }

    /// Enforce, warn only, or off.
    ///
    /// By default, [`MaintenanceMode::Enforce`].
    pub fn mode(mut self, mode: MaintenanceMode) -> Self {
        self.mode = mode;
        self
    }

    /// Entries whose `updatedAt` is older than this are pruned; `None` never prunes. Entries
    /// without `updatedAt` are never pruned.
    ///
    /// By default, 30 days.
    pub fn prune_after(mut self, age: Option<Duration>) -> Self {
        self.prune_after = age;
        self
    }

    /// The most entries the registry keeps; `None` has no cap. The cap is enforced with
    /// hysteresis: a pass evicts only once the count exceeds the cap by the slack
    /// (1 up to 49 entries, else the larger of 25 and 10 %), and then down to the cap, so
    /// eviction does not run per insert.
    ///
    /// By default, 500.
    pub fn max_entries(mut self, max: Option<usize>) -> Self {
        self.max_entries = max;
        self
    }

    /// What happens to the transcripts of evicted sessions and to orphan transcripts.
    ///
    /// By default, [`TranscriptDisposal::Archive`].
    pub fn transcripts(mut self, disposal: TranscriptDisposal) -> Self {
        self.transcripts = disposal;
        self
    }

    /// Archives older than this are deleted; `None` keeps them. Archives are transcripts
    /// renamed to `<id>.jsonl.deleted.<time>` (by this crate or OpenClaw), `.reset.<time>` or
    /// `.bak.<time>`, and OpenClaw's `sessions.json.bak.*`. An archive's age counts from the
    /// time in its name (`20261121T073012.123Z` as this crate writes it,
    /// `2026-11-21T07-30-12.123Z` as OpenClaw does, or 13 digits of milliseconds since the
    /// epoch), else from its modification time, which the rename kept from the transcript's
    /// last write. A time more than a minute past the clock counts from the pass that finds
    /// it (see [`MaintenanceReport::restamped`]).
    ///
    /// By default, 30 days.
    pub fn archive_retention(mut self, age: Option<Duration>) -> Self {
        self.archive_retention = age;
        self
    }

    /// A transcript (`*.jsonl` in the store's directory) that no entry references is removed
    /// (as [`transcripts`](Maintenance::transcripts) says) once it was last modified longer
    /// ago than this, unless its write lock file (`<transcript>.lock`) exists: a holder may
    /// be about to write its entry. A modification time more than a minute past the clock is
    /// replaced by the pass's (see [`MaintenanceReport::restamped`]).
    ///
    /// By default, 1 hour.
    pub fn orphan_grace(mut self, grace: Duration) -> Self {
        self.orphan_grace = grace;
        self
    }

    /// The disk budget of the store's directory: its regular files, and those of its
    /// subdirectories at any depth (counted, never touched); `None` has none. Past it, a pass
    /// frees space down to the high water mark: archives, orphan transcripts older than 5 min
    /// (or the orphan grace, if shorter) and store temp files older than 5 min first (oldest
    /// first), then the oldest entries and their transcripts (deleted, not archived). A
    /// transcript whose write lock file exists is never touched.
    ///
    /// Entries go for the budget only after those files: a pass that runs out of its
    /// [`time_budget`](Maintenance::time_budget) first evicts nothing for the budget, and the
    /// next pass plans it again. The journal counts as long as it was when the pass started
    /// (the records of the pass's own evictions do not count, so a dry run sees what the pass
    /// does), and a pass that evicted anything ends with a compaction: an evicted entry's
    /// bytes leave the snapshot only then, and the next pass would otherwise count them again.
    ///
    /// If the subdirectories hold bytes, and at least as many as the high water mark, nothing
    /// the pass may remove brings the total under it: then the budget frees nothing at all (no
    /// archive, orphan, temp file or entry goes for it; each goes by its own rule, such as the
    /// archive retention or the orphan grace), and the pass logs a warning.
    ///
    /// Subdirectories are walked once per pass, and only when there is a budget. The walk
    /// follows no symlink, does not leave the store directory's file system (a mount point
    /// below it is skipped with everything under it) and counts each directory once (a bind
    /// mount of a directory inside itself is not counted again); a file with several hard
    /// links counts once per link. On platforms other than Unix, only the symlink rule holds.
    ///
    /// By default, none.
    pub fn max_disk_bytes(mut self, max: Option<u64>) -> Self {
        self.max_disk_bytes = max;
        self
    }

    /// The disk budget's high water mark, as a fraction of it from 0 to 1; anything else
    /// (not a number included) fails [`StoreBuilder::open`](crate::StoreBuilder::open) with
    /// [`Error::Invalid`](crate::Error::Invalid).
    ///
    /// By default, 0.8.
    pub fn high_water(mut self, fraction: f64) -> Self {
        self.high_water = fraction;
        self
    }

    /// How long one pass may work; a pass over budget stops between files and says so in its
    /// report (`incomplete`), and the next pass goes on in the background about a second later.
    /// Each pass removes at least 64 orphans, archives or temp files first, so that a large
    /// backlog shrinks however long listing the directory takes.
    ///
    /// By default, 50 ms.
    pub fn time_budget(mut self, budget: Duration) -> Self {
        self.time_budget = budget;
        self
    }

    /// How often maintenance runs in the background when the cap does not start it first;
    /// `None` runs it only at the cap and on demand. Measured on the store clock's monotonic
    /// time, so setting the wall clock back or forward neither holds nor hurries a pass.
    ///
    /// By default, every 60 s.
    pub fn interval(mut self, every: Option<Duration>) -> Self {
        self.interval = every;
        self
    }

    /// Whether passes start by themselves in the background (at the cap, and every
    /// [`interval`](Maintenance::interval)); off, only [`Store::maintain`] runs them.
    ///
    /// By default, on.
    ///
    /// [`Store::maintain`]: crate::Store::maintain
    pub fn background(mut self, yes: bool) -> Self {
        self.background = yes;
        self
    }

    /// Entries for which `rule` returns true are protected: never pruned, and evicted by the
    /// cap and the disk budget only within bounds, so that a rule that protects everything
    /// defeats neither:
    ///
    /// - The cap evicts unprotected entries, oldest first, but keeps room for new sessions:
    ///   protection keeps at most the cap minus min(25, cap / 2) entries (475 of 500). When
    ///   evicting only unprotected entries would leave fewer than that room of them, the
    ///   oldest protected entries past the bound go instead. So a gateway whose protected
    ///   thread entries fill the cap still keeps its 25 newest other sessions, not none.
    /// - The disk budget evicts protected entries only once every unprotected entry is gone,
    ///   oldest protected first.
    ///
    /// Entries marked active are never evicted.
    ///
    /// The rule runs while the pass plans, with the store's state locked for reading, so it
    /// must be quick and must not call the store (a call that writes or catches up would wait
    /// for that lock on the same thread for ever); it sees the key and the entry it needs.
    ///
    /// By default, nothing is protected but active entries.
    pub fn protect(mut self, rule: impl Fn(&str, &Entry) -> bool + Send + Sync + 'static) -> Self {
        self.protect = Some(Arc::new(rule));
        self
    }

    /// Calls `hook` with the report of every pass that evicted, archived or removed something
    /// (background passes and [`Store::maintain`](crate::Store::maintain) alike; not dry runs
    /// or warn mode), on the thread that ran the pass, after the pass is done. For metrics, or
    /// for a caller that must know which keys were evicted.
    ///
    /// By default, there is no hook; each such pass is logged through `tracing` either way.
    pub fn on_pass(mut self, hook: impl Fn(&MaintenanceReport) + Send + Sync + 'static) -> Self {
        self.on_pass = Some(Arc::new(hook));
        self
    }

    /// Whether passes start by themselves: on, and not [`MaintenanceMode::Off`].
    pub(crate) fn runs_in_background(&self) -> bool {
        self.background && self.mode != MaintenanceMode::Off
    }

    /// The count past which the cap evicts (the cap plus its slack), if there is a cap.
    pub(crate) fn cap_trigger(&self) -> Option<usize> {
        self.max_entries.map(|max| max.saturating_add(slack(max)))
    }
}

/// The room the cap keeps for unprotected entries: protection keeps at most `max - room(max)`
/// entries. Half the cap, up to 25 (OpenClaw's floor of removable entries).
pub(crate) fn room(max: usize) -> usize {
    (max / 2).min(25)
}

/// The cap's hysteresis: how far past the cap the count may go before a pass evicts.
pub(crate) fn slack(max: usize) -> usize {
    if max <= 49 { 1 } else { (max / 10).max(25) }
}

/// What one maintenance pass did (or, in warn mode and dry runs, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// The mode of the pass.
    pub mode: MaintenanceMode,
    /// True if nothing was changed (warn mode or a dry run).
    pub dry_run: bool,
    /// Keys pruned for age.
    pub pruned: Vec<String>,
    /// Keys evicted by the cap.
    pub capped: Vec<String>,
    /// Keys evicted by the disk budget.
    pub disk_evicted: Vec<String>,
    /// Active or protected entries kept although the cap or budget wanted them gone, counted
    /// once for each of the two that did: an entry both wanted gone counts twice.
    pub kept_protected: usize,
    /// Transcripts of evicted sessions, archived.
    pub archived: Vec<PathBuf>,
    /// Transcripts deleted (of evicted sessions, or orphans).
    pub deleted: Vec<PathBuf>,
    /// Orphan transcripts removed (archived or deleted, also listed there).
    pub orphans: Vec<PathBuf>,
    /// Archives deleted (past retention, or for the disk budget).
    pub archives_removed: Vec<PathBuf>,
    /// Store temp files deleted for the disk budget.
    pub temps_removed: Vec<PathBuf>,
    /// Archives and orphan transcripts whose time was more than a minute past the pass's
    /// clock (made while the clock was set wrong), given the pass's time so that their
    /// retention or grace counts from now rather than never ending: an archive whose name
    /// gives the time is renamed with the pass's time in its place (listed by its old
    /// name); any other file gets it as its modification time, unless it belongs to
    /// another user (setting its time takes ownership), when it keeps its time.
    pub restamped: Vec<PathBuf>,
    /// The directory's size before the pass, when a disk budget is set.
    pub disk_bytes_before: Option<u64>,
    /// Its size after the pass (estimated in warn mode and dry runs): the directory's files
    /// counted again, and its subdirectories' bytes as counted before the pass (maintenance
    /// never changes them).
    pub disk_bytes_after: Option<u64>,
    /// True if the pass ran out of time before it finished.
    pub incomplete: bool,
    /// Files that could not be archived, deleted, removed or given the pass's time, each as
    /// `<path>: could not <step> it: <the operating system's message>`; the pass went on.
    pub errors: Vec<String>,
    /// How long the pass took, in milliseconds.
    pub elapsed_ms: u64,
    /// True if the cap could not pick as many entries as it had to evict (active or protected
    /// ones kept them): the schedule then waits for the count to grow by the slack again,
    /// or to fall to the trigger first.
    #[serde(skip)]
    pub(crate) cap_short: bool,
}

impl MaintenanceReport {
    /// True if the pass changed (or would change) nothing.
    pub fn is_empty(&self) -> bool {
        self.pruned.is_empty()
            && self.capped.is_empty()
            && self.disk_evicted.is_empty()
            && self.archived.is_empty()
            && self.deleted.is_empty()
            && self.archives_removed.is_empty()
            && self.temps_removed.is_empty()
            && self.restamped.is_empty()
    }

    /// Entries evicted for any reason.
    pub fn evicted(&self) -> usize {
        self.pruned.len() + self.capped.len() + self.disk_evicted.len()
    }
}

/// What kind of file a directory entry is, for maintenance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `<sessionId>.jsonl` (or `<sessionId>-topic-<thread>.jsonl`): any `<name>.jsonl`,
    /// referenced as [`State::transcript_refs`] counts.
    Transcript,
    /// `<transcript>.deleted.*`, `<transcript>.reset.*`, `<transcript>.bak.*`,
    /// `sessions.json.bak.*`.
    Archive,
    /// A temp file of the store's own files: atomic-fs's, or OpenClaw's
    /// (`sessions.json.<pid>.<uuid>.tmp`, `.fs-safe-replace.<pid>.<uuid>.tmp`).
    Temp,
    /// A transcript's write-lock generation counter, `<transcript>.lock.gen`: counted for the
    /// disk budget, removed only once its transcript is gone.
    Counter,
    /// Anything else: counted for the disk budget, never touched.
    Other,
}

/// One regular file of a [`Listing`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct FileInfo {
    /// Where the name starts in [`Listing::names`], and its length.
    name_at: usize,
    name_len: u32,
    pub(crate) kind: Kind,
    pub(crate) len: u64,
    pub(crate) modified: SystemTime,
}

/// The regular files of the store's directory, sorted by name.
///
/// The names live in one string rather than in one allocation each: a directory of many
/// transcripts lists 100,000 files and more, and a pass's scratch memory counts toward the
/// process's peak (a path per file made a pass's listing about three times as large).
#[derive(Debug)]
pub(crate) struct Listing {
    dir: PathBuf,
    names: String,
    files: Vec<FileInfo>,
    /// The bytes of the regular files in the listed subdirectories, at any depth: they count
    /// toward the disk budget, but maintenance never touches them.
    nested_bytes: u64,
}

impl Listing {
    /// A listing of no files, for planning from the state alone.
    pub(crate) fn empty(dir: &Path) -> Listing {
        Listing {
            dir: dir.to_path_buf(),
            names: String::new(),
            files: Vec::new(),
            nested_bytes: 0,
        }
    }

    /// Every file, in name order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, FileInfo> {
        self.files.iter()
    }

    /// The file's name; empty if it is not UTF-8 (such a file is [`Kind::Other`], never
    /// touched).
    pub(crate) fn name(&self, file: &FileInfo) -> &str {
        let end = file.name_at + file.name_len as usize;
        self.names.get(file.name_at..end).unwrap_or_default()
    }

    /// The file's path.
    pub(crate) fn path(&self, file: &FileInfo) -> PathBuf {
        self.dir.join(self.name(file))
    }

    /// True if a file of this name is listed.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Where the file of this name is in [`iter`](Listing::iter)'s order, if it is listed.
    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        // Names in a directory are unique and the files are sorted by name.
        self.files.binary_search_by(|f| self.name(f).cmp(name)).ok()
    }

    /// The sum of the files' sizes, those in listed subdirectories included.
    pub(crate) fn total_len(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum::<u64>() + self.nested_bytes
    }

    /// Counts the file `name`, if listed, as `by` bytes shorter.
    fn discount(&mut self, name: &str, by: u64) {
        if let Some(i) = self.position(name) {
            self.files[i].len = self.files[i].len.saturating_sub(by);
        }
    }
}

/// When an archive was made, in milliseconds since the Unix epoch, from the time its name
/// ends with after `.deleted.`, `.reset.` or `.bak.`: this crate's form
/// (`20261121T073012.123Z`), OpenClaw's ISO form with `-` for `:`
/// (`2026-11-21T07-30-12.123Z`), or 13 digits of milliseconds (OpenClaw's rotated snapshots).
/// `None` for any other name; maintenance then goes by the file's modification time, which a
/// rename keeps from the transcript's last write.
pub(crate) fn archive_time_ms(name: &str) -> Option<u64> {
    archive_stamp(name).map(|(_, ms)| ms)
}

/// Where the time in an archive's name starts, and the time ([`archive_time_ms`]).
fn archive_stamp(name: &str) -> Option<(usize, u64)> {
    let start = [".deleted.", ".reset.", ".bak."]
        .iter()
        .filter_map(|marker| name.rfind(marker).map(|at| at + marker.len()))
        .max()?;
    let stamp = &name[start..];
    if !stamp.is_ascii() {
        return None;
    }
    let b = stamp.as_bytes();
    let iso = match b.len() {
        13 if b.iter().all(u8::is_ascii_digit) => return stamp.parse().ok().map(|ms| (start, ms)),
        // 20261121T073012.123Z
        20 if b[8] == b'T' => format!(
            "{}-{}-{}T{}:{}:{}{}",
            &stamp[..4],
            &stamp[4..6],
            &stamp[6..8],
            &stamp[9..11],
            &stamp[11..13],
            &stamp[13..15],
            &stamp[15..]
        ),
        // 2026-11-21T07-30-12.123Z
        24 if b[10] == b'T' && b[13] == b'-' && b[16] == b'-' => {
            format!("{}:{}:{}", &stamp[..13], &stamp[14..16], &stamp[17..])
        }
        _ => return None,
    };
    sessionkit_write_lock::parse_iso8601_ms(&iso).map(|ms| (start, ms))
}

/// Renames the transcript `path` aside as `<name>.deleted.<time>`, never over another file:
/// the next millisecond's name if one is taken, so that an archive of the same name made in
/// the same millisecond (after a clock was set back, or of a session id used again) keeps its
/// bytes. The caller holds the directory's turn.
fn archive(path: &Path, at: SystemTime) -> io::Result<()> {
    let mut prefix = path.as_os_str().to_owned();
    prefix.push(".deleted.");
    rename_aside(path, &prefix, at)
}

/// Renames `path` to `<prefix><time>`, with `at` or the first free millisecond after it as
/// the time, never over another file (see [`archive`]). The caller holds the directory's turn.
///
/// On Linux the rename itself refuses a taken name ([`crate::sys::rename_no_replace`]).
/// Elsewhere, or on a file system that cannot, the name is reserved first (created empty,
/// exclusively), and a crash between the two steps leaves an empty archive, which goes at the
/// end of its retention.
fn rename_aside(path: &Path, prefix: &std::ffi::OsStr, at: SystemTime) -> io::Result<()> {
    rename_aside_with(path, prefix, at, crate::sys::rename_no_replace)
}

/// [`rename_aside`] with `no_replace` for the platform's rename that never replaces.
fn rename_aside_with(
    path: &Path,
    prefix: &std::ffi::OsStr,
    at: SystemTime,
    no_replace: fn(&Path, &Path) -> io::Result<()>,
) -> io::Result<()> {
    // More archives of one transcript's name in one second than this is not a state a
    // directory gets into by use.
    const NAMES: u64 = 1000;
    let mut reserve = false;
    for ms in 0..NAMES {
        let mut aside = prefix.to_owned();
        aside.push(crate::snapshot::compact_utc(at + Duration::from_millis(ms)));
        let aside = PathBuf::from(aside);
        let renamed = if reserve {
            reserve_then_rename(path, &aside)
        } else {
            no_replace(path, &aside)
        };
        match renamed {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == io::ErrorKind::Unsupported && !reserve => {
                reserve = true;
                match reserve_then_rename(path, &aside) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    done => return done,
                }
            }
            done => return done,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("every archive name for the {NAMES} ms from the pass's start is taken"),
    ))
}

/// Renames `path` to `aside` over an empty file created exclusively first, so that an existing
/// `aside` is never replaced ([`io::ErrorKind::AlreadyExists`] then).
fn reserve_then_rename(path: &Path, aside: &Path) -> io::Result<()> {
    fs::File::options()
        .write(true)
        .create_new(true)
        .open(aside)?;
    // A failed rename leaves the placeholder, empty, to remove; a name that holds bytes is the
    // file itself (a rename that went through although it reported a failure, as a retried
    // one may over a network file system), and stays.
    crate::sys::rename(path, aside).inspect_err(|_| {
        if fs::symlink_metadata(aside).is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(aside);
        }
    })
}

/// The transcript a lock counter `<transcript>.lock.gen` belongs to.
fn counter_transcript(name: &str) -> Option<&str> {
    name.strip_suffix(".lock.gen")
        .filter(|transcript| is_transcript_name(transcript))
}

fn classify(name: &str, snapshot_name: &str) -> Kind {
    if is_transcript_name(name) {
        Kind::Transcript
    } else if counter_transcript(name).is_some() {
        Kind::Counter
    } else if [".jsonl.deleted.", ".jsonl.reset.", ".jsonl.bak."]
        .iter()
        .any(|marker| name.contains(marker))
        || name.starts_with(&format!("{snapshot_name}.bak."))
    {
        Kind::Archive
    } else if (sessionkit_atomic_fs::is_temp_file_name(name.as_ref())
        && name.starts_with(&format!(".{snapshot_name}.")))
        // OpenClaw's: `sessions.json.<pid>.<uuid>.tmp`, and fs-safe's for any file.
        || (name.ends_with(".tmp")
            && (name.starts_with(&format!("{snapshot_name}."))
                || name.starts_with(".fs-safe-replace.")))
    {
        Kind::Temp
    } else {
        Kind::Other
    }
}

/// Removes the atomic-fs temp files of the store's own snapshot and journal older than
/// [`TEMP_GRACE`] (a compaction cut short by a crash leaves them); returns the paths removed.
/// Failures are logged and skipped: a leftover temp file costs only disk space.
pub(crate) fn remove_stale_temps(dir: &Path, snapshot_name: &str) -> Vec<PathBuf> {
    // Only atomic-fs's names: OpenClaw's temp files may be another program's writes in
    // progress, and go only for a disk budget, as OpenClaw's own maintenance removes them.
    let ours = |name: &str, kind| {
        kind == Kind::Temp && sessionkit_atomic_fs::is_temp_file_name(name.as_ref())
    };
    let Ok(files) = list_dir(dir, snapshot_name, false, &mut |name, kind| {
        ours(name, kind)
    }) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    files
        .iter()
        .filter(|f| f.kind == Kind::Temp)
        .filter(|f| now.duration_since(f.modified).unwrap_or(Duration::ZERO) > TEMP_GRACE)
        .map(|f| files.path(f))
        .filter_map(|path| match remove_file(&path) {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "could not remove a stale temp file of the store");
                None
            }
        })
        .collect()
}

/// Lists the regular files of the store's directory (not following symlinks) that `want`
/// accepts, by name and kind. Only those are `stat`ed and kept: a pass without a disk budget
/// needs a few of the directory's files, and a directory of many sessions holds a transcript
/// and a lock counter for each.
///
/// With `subdirs`, the bytes of the files below each subdirectory that `want` accepts (as
/// [`Kind::Other`]) are added up as [`Listing::total_len`] counts them (see [`Subdirs`]):
/// OpenClaw's budget skipped subdirectories, so a directory could grow past it unseen. Only
/// the disk budget uses them, so only a pass with one asks for them.
pub(crate) fn list_dir(
    dir: &Path,
    snapshot_name: &str,
    subdirs: bool,
    want: &mut dyn FnMut(&str, Kind) -> bool,
) -> io::Result<Listing> {
    let mut listing = Listing::empty(dir);
    let mut walk = if subdirs {
        Some(Subdirs::new(fs_dir(dir))?)
    } else {
        None
    };
    for entry in fs::read_dir(fs_dir(dir))? {
        let entry = entry?;
        let file_name = entry.file_name();
        let name = file_name.to_str().unwrap_or_default();
        let name_len = u32::try_from(name.len()).unwrap_or(0);
        let kind = if name_len > 0 {
            classify(name, snapshot_name)
        } else {
            Kind::Other
        };
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if let Some(walk) = walk.as_mut()
                && want(name, Kind::Other)
            {
                listing.nested_bytes += walk.bytes_below(&entry);
            }
            continue;
        }
        if !file_type.is_file() || !want(name, kind) {
            continue;
        }
        #[cfg(test)]
        tests::FILES_STATED.with(|n| n.set(n.get() + 1));
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let name_at = listing.names.len();
        if name_len > 0 {
            listing.names.push_str(name);
        }
        listing.files.push(FileInfo {
            name_at,
            name_len,
            kind,
            len: meta.len(),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    let mut files = std::mem::take(&mut listing.files);
    files.sort_unstable_by(|a, b| listing.name(a).cmp(listing.name(b)));
    listing.files = files;
    Ok(listing)
}

/// Adds up the bytes of the regular files below a store directory's subdirectories, at any
/// depth, with limits: symlinks are not followed; a directory on another file system than the
/// store directory (a mount point) is skipped with everything below it; and each directory is
/// counted once, known by its device and inode, the store directory's included, so that a bind
/// mount of a directory inside itself cannot make the walk count it again, or loop. A file
/// with several hard links counts once per link. What cannot be read counts as nothing.
///
/// # Platform behavior
///
/// Devices and inodes are Unix's; elsewhere neither limit applies, and symlinks (and Windows'
/// junctions, which the standard library reports as symlinks) are still not followed.
struct Subdirs {
    /// The store directory's device.
    dev: Option<u64>,
    /// The directories counted so far, by device and inode.
    seen: HashSet<(u64, u64)>,
}

impl Subdirs {
    fn new(dir: &Path) -> io::Result<Subdirs> {
        let meta = fs::metadata(dir)?;
        let mut seen = HashSet::new();
        seen.extend(dir_id(&meta));
        Ok(Subdirs {
            dev: dir_id(&meta).map(|(dev, _)| dev),
            seen,
        })
    }

    /// True if the directory `meta` describes (not following a symlink) is on the store
    /// directory's file system and was not counted before; it is counted from now on.
    fn first_visit(&mut self, meta: &fs::Metadata) -> bool {
        match dir_id(meta) {
            Some((dev, ino)) => Some(dev) == self.dev && self.seen.insert((dev, ino)),
            None => true,
        }
    }

    /// The bytes below the subdirectory `entry` of the store directory.
    fn bytes_below(&mut self, entry: &fs::DirEntry) -> u64 {
        match entry.metadata() {
            Ok(meta) if self.first_visit(&meta) => {}
            _ => return 0,
        }
        let mut total = 0;
        let mut pending = vec![entry.path()];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            #[cfg(test)]
            tests::DIRS_READ.with(|n| n.set(n.get() + 1));
            for entry in entries.flatten() {
                // `DirEntry::metadata` does not follow a symlink.
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                if meta.is_dir() {
                    if self.first_visit(&meta) {
                        pending.push(entry.path());
                    }
                } else if meta.is_file() {
                    total += meta.len();
                }
            }
        }
        total
    }
}

/// A directory's device and inode.
#[cfg(unix)]
fn dir_id(meta: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

/// None: this platform's are not used.
#[cfg(not(unix))]
fn dir_id(_meta: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// What a pass will do.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Entries to evict, in order.
    pub(crate) evict: Vec<Eviction>,
    /// Transcripts of evicted sessions: (path, delete rather than archive).
    pub(crate) transcripts: Vec<(PathBuf, bool)>,
    /// Orphan transcripts: (path, delete rather than archive).
    pub(crate) orphans: Vec<(PathBuf, bool)>,
    /// Archives to delete.
    pub(crate) archives: Vec<PathBuf>,
    /// Temp files to delete.
    pub(crate) temps: Vec<PathBuf>,
    /// Files whose time is in the future, and how each gets the pass's time.
    pub(crate) restamp: Vec<(PathBuf, Restamp)>,
    pub(crate) kept_protected: usize,
    /// The cap picked fewer entries than it had to evict.
    pub(crate) cap_short: bool,
    pub(crate) disk_before: Option<u64>,
    pub(crate) disk_after: Option<u64>,
}

/// How a file whose time is in the future gets the pass's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Restamp {
    /// An archive whose name's time is in the future: renamed with the pass's time.
    Rename,
    /// An archive without a time in its name, or an orphan transcript (checked again before):
    /// given the pass's time as its modification time.
    Touch { orphan: bool },
}

/// An entry to evict, as the plan saw it: the eviction applies only to that.
#[derive(Debug)]
pub(crate) struct Eviction {
    pub(crate) key: String,
    pub(crate) reason: EvictReason,
    updated_at: Option<i64>,
    refs: Refs,
}

/// Everything the planner looks at.
pub(crate) struct Inputs<'a, S: StateSource + ?Sized> {
    pub(crate) state: &'a S,
    pub(crate) files: &'a Listing,
    /// What the entries this pass has evicted already referenced: transcripts they were the
    /// last references of go with them, as those of the entries this plan evicts do.
    pub(crate) released: &'a Gone,
    /// Whether to plan pruning and the cap (steps 1 and 2); the disk budget is always planned.
    pub(crate) limits: bool,
    pub(crate) now: SystemTime,
    pub(crate) active: &'a HashSet<String>,
    pub(crate) config: &'a Maintenance,
}

/// The transcripts one entry references: its session's, by id, and those its `sessionFile`
/// names besides (see [`State::transcript_refs`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Refs {
    session: Option<String>,
    files: Vec<String>,
}

impl Refs {
    pub(crate) fn of(entry: &Entry) -> Refs {
        Refs {
            session: entry.session_id().map(str::to_owned),
            files: entry.other_transcripts(),
        }
    }
}

/// The references of entries a pass evicts, or plans to, counted by exact id and name as
/// [`State::transcript_refs`] counts them by hash.
#[derive(Debug, Default)]
pub(crate) struct Gone {
    sessions: HashMap<String, usize>,
    files: HashMap<String, usize>,
}

impl Gone {
    pub(crate) fn add(&mut self, refs: Refs) {
        if let Some(id) = refs.session {
            *self.sessions.entry(id).or_default() += 1;
        }
        for name in refs.files {
            *self.files.entry(name).or_default() += 1;
        }
    }

    /// How many of these entries reference the transcript `name`.
    pub(crate) fn refs(&self, name: &str) -> usize {
        self.session_refs(name) + self.files.get(name).copied().unwrap_or(0)
    }

    /// How many of these entries reference the transcript `name` by their `sessionId`. Only
    /// these take a transcript with them at once: a `sessionFile` names a file by its name in
    /// any directory, and a young file of that name here may be a new session's whose entry is
    /// on its way, so such a file waits out the orphan grace.
    pub(crate) fn session_refs(&self, name: &str) -> usize {
        transcript_sessions(name)
            .filter_map(|id| self.sessions.get(id))
            .sum::<usize>()
    }
}

pub(crate) fn is_running(entry: &Entry) -> bool {
    entry
        .get("status")
        .is_some_and(|v| v.get() == "\"running\"")
}

/// Where the planner reads the state: in turns, each holding whatever guards the state for a
/// bounded amount of work, so that planning over a large store never holds the writer back
/// for longer than one turn (see [`plan`]).
pub(crate) trait StateSource {
    /// Runs `f` on the state as it is now.
    fn turn<R>(&self, f: impl FnOnce(&State) -> R) -> R;
}

impl StateSource for State {
    fn turn<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(self)
    }
}

impl StateSource for crate::store::Shared {
    fn turn<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.read().state)
    }
}

/// The most evictions one journal batch of a pass carries; the writer's batches go in between.
pub(crate) const EVICTIONS_PER_BATCH: usize = 256;

/// How far past the pass's clock a file's time may be before the pass takes it for the mark
/// of a clock that was set wrong (see [`MaintenanceReport::restamped`]). Files made on this
/// machine are never ahead of its clock; the slack covers another machine's writes to a
/// shared directory.
const FUTURE_SLACK: Duration = Duration::from_secs(60);

/// True if `at` is past `now` by more than [`FUTURE_SLACK`]: the mark of a clock set wrong.
fn in_future(at: SystemTime, now: SystemTime) -> bool {
    now.checked_add(FUTURE_SLACK).is_some_and(|last| at > last)
}

/// Whether a pass at `now` under `retention` acts on the archive `name`, as far as its name
/// tells: past its retention, or named in the future (it gets the pass's time). `None` if the
/// name gives no time, for its modification time to decide.
fn archive_due_by_name(name: &str, now: SystemTime, retention: Duration) -> Option<bool> {
    let at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(archive_time_ms(name)?))?;
    Some(in_future(at, now) || now.duration_since(at).is_ok_and(|age| age > retention))
}

/// Transcripts whose references one planning turn counts.
pub(crate) const FILES_PER_TURN: usize = 1024;
/// Entries one planning turn meets in a walk oldest first: pruning's, the cap's, the count of
/// protected entries, the disk budget's.
pub(crate) const ENTRIES_PER_TURN: usize = 512;

/// An entry a walk met, as it was then.
enum Walked {
    Active(String),
    Candidate {
        eviction: Eviction,
        /// What the entry takes in the snapshot.
        bytes: u64,
        protected: bool,
    },
}

impl Walked {
    fn key(&self) -> &str {
        match self {
            Walked::Active(key) => key,
            Walked::Candidate { eviction, .. } => &eviction.key,
        }
    }
}

/// Walks the state's entries oldest `updatedAt` first (entries without one first), from
/// `from` on, up to [`ENTRIES_PER_TURN`] of them in each of `source`'s turns. In the turn, `meet` looks at each
/// entry and may pick something of it, or end the walk; after the turn, without the state,
/// `take` gets what was picked, in order, and may end the walk too. The state may change
/// between turns: the walk resumes after the last entry it met, so an entry updated
/// meanwhile may be met again, and one added behind it is not.
fn walk_oldest<S: StateSource + ?Sized, T>(
    source: &S,
    mut from: Bound<(Option<i64>, String)>,
    mut meet: impl FnMut(&State, &str, Option<i64>) -> ControlFlow<(), Option<T>>,
    mut take: impl FnMut(T) -> ControlFlow<()>,
) {
    loop {
        let (picked, next) = source.turn(|state| {
            let mut picked = Vec::new();
            let mut last = None;
            for (n, (key, at)) in state.oldest_from(from.as_ref()).enumerate() {
                if n == ENTRIES_PER_TURN {
                    return (
                        picked,
                        last.map(|(at, key): (_, &str)| (at, key.to_owned())),
                    );
                }
                match meet(state, key, at) {
                    ControlFlow::Break(()) => break,
                    ControlFlow::Continue(found) => picked.extend(found),
                }
                last = Some((at, key));
            }
            (picked, None)
        });
        for found in picked {
            if take(found).is_break() {
                return;
            }
        }
        match next {
            Some(next) => from = Bound::Excluded(next),
            None => return,
        }
    }
}

/// Plans a pass. Pure: reads the state and the listing, changes nothing.
///
/// The state is read in turns ([`StateSource`]), each bounded: one counts the entries, one
/// counts the references of up to [`FILES_PER_TURN`] listed transcripts, one meets up to
/// [`ENTRIES_PER_TURN`] entries of a walk oldest first (for pruning, the cap, protection's
/// limit, the disk budget). Everything else (what walks pick, the listing's sorting, indexing
/// and sums) is done between turns.
///
/// The state may change between turns. The plan is checked again as it is carried out: an
/// eviction applies only to the entry as planned, and a transcript goes only if no entry
/// references it then. So a change in between makes the pass do less, never remove what is
/// in use. An entry updated between turns of a walk, and so met again, counts only where it
/// was met first.
pub(crate) fn plan<S: StateSource + ?Sized>(inputs: &Inputs<'_, S>) -> Plan {
    let Inputs {
        state: source,
        files,
        released: released_before,
        limits,
        now,
        active,
        config,
    } = *inputs;
    let now_ms = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut plan = Plan::default();
    let is_active = |key: &str, entry: &Entry| active.contains(key) || is_running(entry);
    let is_protected =
        |key: &str, entry: &Entry| config.protect.as_ref().is_some_and(|p| p(key, entry));
    let planned = |key: &str, entry: &Entry, reason: EvictReason| Eviction {
        key: key.to_owned(),
        reason,
        updated_at: entry.updated_at(),
        refs: Refs::of(entry),
    };
    // The walk of the cap and of the budget: `take` gets each entry that this plan does not
    // evict already, once (an entry updated between turns is met again).
    let walk_entries = |gone: &HashSet<String>,
                        reason: EvictReason,
                        take: &mut dyn FnMut(Walked) -> ControlFlow<()>| {
        let mut met = HashSet::new();
        walk_oldest(
            source,
            Bound::Unbounded,
            |state, key, _| {
                let Some(entry) = state.get(key).filter(|_| !gone.contains(key)) else {
                    return ControlFlow::Continue(None);
                };
                ControlFlow::Continue(Some(if is_active(key, entry) {
                    Walked::Active(key.to_owned())
                } else {
                    Walked::Candidate {
                        eviction: planned(key, entry, reason),
                        bytes: (key.len() + entry.len_bytes()) as u64,
                        protected: is_protected(key, entry),
                    }
                }))
            },
            |walked| {
                if met.insert(walked.key().to_owned()) {
                    take(walked)
                } else {
                    ControlFlow::Continue(())
                }
            },
        );
    };

    // 1. Pruning: by age, never active or protected ones.
    if let Some(age) = config.prune_after.filter(|_| limits) {
        let cutoff = now_ms.saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
        walk_oldest(
            source,
            // Entries without `updatedAt` come first, and are never pruned.
            Bound::Included((Some(i64::MIN), String::new())),
            |state, key, at| match at {
                None => ControlFlow::Continue(None),
                Some(at) if at >= cutoff => ControlFlow::Break(()),
                Some(_) => ControlFlow::Continue(
                    state
                        .get(key)
                        .filter(|entry| !is_active(key, entry) && !is_protected(key, entry))
                        .map(|entry| planned(key, entry, EvictReason::Prune)),
                ),
            },
            |eviction| {
                plan.evict.push(eviction);
                ControlFlow::Continue(())
            },
        );
    }
    let mut gone: HashSet<String> = plan.evict.iter().map(|e| e.key.clone()).collect();

    // 2. The cap, with hysteresis, oldest first: unprotected entries, but protection keeps at
    //    most `max - room(max)` entries, so that new sessions keep room to live in and a rule
    //    that protects everything cannot defeat the cap (see `Maintenance::protect`).
    if let (Some(max), Some(trigger), true) = (config.max_entries, config.cap_trigger(), limits) {
        let remaining = source.turn(State::len).saturating_sub(gone.len());
        if remaining > trigger {
            let want = remaining - max;
            let room = room(max);
            // The walk stops once it has met `room` unprotected entries more than it wants:
            // then evicting the oldest `want` of them leaves the room free, whatever the rest.
            // Else it met every entry, and knows how many of each kind there are.
            let mut walked = Vec::new();
            let mut unprotected = 0;
            walk_entries(&gone, EvictReason::Cap, &mut |met| {
                unprotected += usize::from(matches!(
                    met,
                    Walked::Candidate {
                        protected: false,
                        ..
                    }
                ));
                walked.push(met);
                if unprotected == want + room {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            let protected = walked
                .iter()
                .filter(|met| {
                    matches!(
                        met,
                        Walked::Candidate {
                            protected: true,
                            ..
                        }
                    )
                })
                .count();
            let (mut from_unprotected, mut from_protected) = (want.min(unprotected), 0);
            if unprotected < want + room {
                let spared = room.min(unprotected);
                let first = want.min(unprotected - spared);
                let excess = protected.saturating_sub(max - room);
                from_protected = (want - first).min(excess);
                from_unprotected = first + (want - first - from_protected).min(spared);
            }
            plan.cap_short = from_unprotected + from_protected < want;
            // Oldest first among those taken; what the walk met before the last of them and
            // kept (active or protected) is what the cap would have taken but could not.
            let mut picked = Vec::new();
            let mut kept = 0;
            let mut kept_before_last = 0;
            for met in walked {
                match met {
                    Walked::Candidate {
                        eviction,
                        protected: false,
                        ..
                    } if from_unprotected > 0 => {
                        from_unprotected -= 1;
                        picked.push(eviction);
                        kept_before_last = kept;
                    }
                    Walked::Candidate {
                        eviction,
                        protected: true,
                        ..
                    } if from_protected > 0 => {
                        from_protected -= 1;
                        picked.push(eviction);
                        kept_before_last = kept;
                    }
                    Walked::Candidate {
                        protected: false, ..
                    } => {}
                    Walked::Active(_) | Walked::Candidate { .. } => kept += 1,
                }
            }
            plan.kept_protected += if plan.cap_short {
                kept
            } else {
                kept_before_last
            };
            gone.extend(picked.iter().map(|e| e.key.clone()));
            plan.evict.extend(picked);
        }
    }
    // What the entries planned to go referenced, counted as they go rather than recounted
    // per eviction.
    let mut gone_refs = Gone::default();
    for eviction in &plan.evict {
        gone_refs.add(eviction.refs.clone());
    }

    // How many entries referenced each listed transcript, in turns.
    let mut state_refs = vec![0; files.files.len()];
    for (turn, refs) in state_refs.chunks_mut(FILES_PER_TURN).enumerate() {
        let first = turn * FILES_PER_TURN;
        source.turn(|state| {
            for (i, refs) in refs.iter_mut().enumerate() {
                let f = &files.files[first + i];
                if f.kind == Kind::Transcript {
                    *refs = state.transcript_refs(files.name(f));
                }
            }
        });
    }
    // True if no entry but those in `gone` references the listed transcript `i`. A hash
    // collision in the state's counts only makes a transcript look referenced, so it is
    // kept, never removed early.
    let unreferenced_after =
        |gone: &Gone, i: usize| state_refs[i] <= gone.refs(files.name(&files.files[i]));

    let age_of = |f: &FileInfo| now.duration_since(f.modified).unwrap_or(Duration::ZERO);
    // A time past the pass's clock by more than the slack comes from a clock that was set
    // wrong; trusted, it would keep the file from ageing until the clock caught up.
    let future = |at: SystemTime| in_future(at, now);
    // An archive's age counts from when it was made, which its name says; its modification
    // time is the transcript's last write. A name in the future counts as made now: the
    // pass renames it with its own time.
    let named_at = |f: &FileInfo| {
        archive_time_ms(files.name(f)).map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
    };
    let made_at = |f: &FileInfo| match (f.kind, named_at(f)) {
        (Kind::Archive, Some(at)) if future(at) => now,
        (Kind::Archive, Some(at)) => at,
        _ => f.modified,
    };
    let archive_age = |f: &FileInfo| now.duration_since(made_at(f)).unwrap_or(Duration::ZERO);
    let delete_transcripts = config.transcripts == TranscriptDisposal::Delete;
    let transcript = |f: &FileInfo| (f.kind == Kind::Transcript).then(|| files.name(f));
    // Files are named by their index in the listing from here on.
    let indexed = || files.iter().enumerate();
    // A transcript whose write lock file exists is in use, or may be (a crash leaves the
    // file): the pass leaves it (`still_orphan`), so the plan neither lists it nor counts its
    // bytes as freed. A listing without the lock files (a pass without a disk budget) lists
    // it, and the pass skips it when it gets there.
    let held = |f: &FileInfo| files.contains(&format!("{}.lock", files.name(f)));

    let mut taken: HashSet<usize> = HashSet::new();
    // 3. Transcripts that no entry references any more, because of this plan or of the
    //    evictions earlier in the same pass.
    for (i, f) in indexed() {
        if transcript(f).is_some_and(|name| {
            (gone_refs.session_refs(name) > 0 || released_before.session_refs(name) > 0)
                && unreferenced_after(&gone_refs, i)
        }) && !held(f)
        {
            taken.insert(i);
            plan.transcripts.push((files.path(f), delete_transcripts));
        }
    }
    // 4. Archives past retention.
    let mut archives: HashSet<usize> = HashSet::new();
    if let Some(retention) = config.archive_retention {
        for (i, f) in indexed() {
            if f.kind == Kind::Archive && archive_age(f) > retention {
                taken.insert(i);
                archives.insert(i);
                plan.archives.push(files.path(f));
            }
        }
    }
    // 5. Orphans past the grace.
    for (i, f) in indexed() {
        if f.kind == Kind::Transcript
            && !taken.contains(&i)
            && unreferenced_after(&gone_refs, i)
            && age_of(f) > config.orphan_grace
            && !held(f)
        {
            taken.insert(i);
            plan.orphans.push((files.path(f), delete_transcripts));
        }
    }
    // Archives and orphans whose time is in the future get the pass's time, so that their
    // retention and grace count from this pass on: an archive in its name, else as its
    // modification time. Archives only under a retention, as a pass lists them only then.
    for (i, f) in indexed() {
        let orphan = f.kind == Kind::Transcript
            && !taken.contains(&i)
            && unreferenced_after(&gone_refs, i)
            && !held(f);
        let archive = f.kind == Kind::Archive && config.archive_retention.is_some();
        let how = match named_at(f) {
            Some(at) if archive && future(at) => Some(Restamp::Rename),
            Some(_) if archive => None,
            _ if (archive || orphan) && future(f.modified) => Some(Restamp::Touch { orphan }),
            _ => None,
        };
        if let Some(how) = how {
            plan.restamp.push((files.path(f), how));
        }
    }

    // 6. The disk budget.
    if let Some(max) = config.max_disk_bytes {
        let total = files.total_len();
        plan.disk_before = Some(total);
        // What the steps above free (archiving frees nothing).
        let freed: u64 = indexed()
            .filter(|(i, f)| {
                taken.contains(i)
                    && (archives.contains(i) || (delete_transcripts && f.kind == Kind::Transcript))
            })
            .map(|(_, f)| f.len)
            .sum();
        let mut total = total - freed;
        let high = (max as f64 * config.high_water) as u64;
        // Maintenance never touches the subdirectories. If they alone hold the high water mark,
        // nothing it may remove brings the total under it, and freeing space anyway would
        // empty the archives and young orphans on every pass, and evict sessions for bytes
        // that are not theirs. Then the budget frees nothing: archives, orphans and temp files
        // go by their own rules (retention, grace, open) alone.
        let beyond_reach = files.nested_bytes > 0 && files.nested_bytes >= high;
        if total > max && beyond_reach {
            tracing::warn!(dir = %fs_dir(&files.dir).display(), nested_bytes = files.nested_bytes,
                high_water = high,
                "the store directory's subdirectories alone pass the disk budget's high water \
                 mark; maintenance frees nothing for the budget");
        }
        if total > max && !beyond_reach {
            // Archives, orphans past a short grace and old temp files, oldest first. A
            // transcript already taken above is a candidate only if it was to be archived, not
            // deleted. A young orphan may be a new session's, whose entry is not written yet.
            let young = config.orphan_grace.min(TEMP_GRACE);
            let mut cheap: Vec<(usize, &FileInfo)> = indexed()
                .filter(|&(i, f)| match f.kind {
                    Kind::Archive => !archives.contains(&i),
                    Kind::Transcript => {
                        unreferenced_after(&gone_refs, i)
                            && (taken.contains(&i) || age_of(f) > young)
                            && (!taken.contains(&i) || !delete_transcripts)
                            && !held(f)
                    }
                    Kind::Temp => age_of(f) > TEMP_GRACE,
                    Kind::Counter | Kind::Other => false,
                })
                .collect();
            cheap.sort_by(|(_, a), (_, b)| {
                (made_at(a), files.name(a)).cmp(&(made_at(b), files.name(b)))
            });
            // Orphans deleted for the budget leave the lists of transcripts and orphans that
            // steps 3 and 5 made; they are taken out in one sweep, not one search each.
            let mut forced: Vec<PathBuf> = Vec::new();
            for (_, f) in cheap {
                if total <= high {
                    break;
                }
                total -= f.len;
                let path = files.path(f);
                match f.kind {
                    Kind::Archive => plan.archives.push(path),
                    Kind::Temp => plan.temps.push(path),
                    // An orphan (or an evicted session's transcript) is deleted outright.
                    _ => forced.push(path),
                }
            }
            if !forced.is_empty() {
                let mut lookup: HashSet<&PathBuf> = forced.iter().collect();
                // An evicted entry's transcript stays in its list, now to be deleted, so that
                // the report does not count it as an orphan.
                for (path, delete) in &mut plan.transcripts {
                    if lookup.remove(&*path) {
                        *delete = true;
                    }
                }
                plan.orphans.retain(|(p, _)| !lookup.contains(p));
                // Oldest first, as they were taken.
                plan.orphans.extend(
                    forced
                        .iter()
                        .filter(|p| lookup.contains(p))
                        .map(|p| (p.clone(), true)),
                );
            }
            // Then entries, oldest first, with their transcripts deleted: unprotected ones,
            // then, if that is not enough, protected ones (a budget is a limit on the disk,
            // which protection must not defeat); never active ones.
            if total > high {
                // The transcripts each session's entries reference by its id.
                let by_session: BTreeMap<&str, Vec<usize>> = indexed()
                    .filter_map(|(i, f)| transcript(f).map(|name| (name, i)))
                    .flat_map(|(name, i)| transcript_sessions(name).map(move |s| (s, i)))
                    .fold(BTreeMap::new(), |mut m, (s, i)| {
                        m.entry(s).or_insert_with(Vec::new).push(i);
                        m
                    });
                let mut evict = |eviction: Eviction, bytes: u64, total: &mut u64| {
                    *total = total.saturating_sub(bytes);
                    let refs = &eviction.refs;
                    // The transcripts this entry referenced by its session go with it; those
                    // its `sessionFile` names only once they are older than the budget's grace
                    // for orphans (see `Gone::session_refs`).
                    let by_id = refs.session.as_deref().and_then(|id| by_session.get(id));
                    let by_file: Vec<usize> = refs
                        .files
                        .iter()
                        .filter_map(|name| files.position(name))
                        .filter(|&i| age_of(&files.files[i]) > young)
                        .collect();
                    gone_refs.add(eviction.refs.clone());
                    for i in by_id.into_iter().flatten().copied().chain(by_file) {
                        let f = &files.files[i];
                        if f.kind == Kind::Transcript
                            && unreferenced_after(&gone_refs, i)
                            && !held(f)
                            && taken.insert(i)
                        {
                            *total = total.saturating_sub(f.len);
                            plan.transcripts.push((files.path(f), true));
                        }
                    }
                    plan.evict.push(eviction);
                };
                let mut kept = 0;
                let mut protected = Vec::new();
                walk_entries(&gone, EvictReason::Disk, &mut |walked| {
                    match walked {
                        Walked::Active(_) => kept += 1,
                        Walked::Candidate {
                            eviction,
                            bytes,
                            protected: true,
                        } => protected.push((eviction, bytes)),
                        Walked::Candidate { .. } if total <= high => {
                            return ControlFlow::Break(());
                        }
                        Walked::Candidate {
                            eviction, bytes, ..
                        } => evict(eviction, bytes, &mut total),
                    }
                    ControlFlow::Continue(())
                });
                let mut still_protected = protected.len();
                for (eviction, bytes) in protected {
                    if total <= high {
                        break;
                    }
                    evict(eviction, bytes, &mut total);
                    still_protected -= 1;
                }
                plan.kept_protected += kept + still_protected;
            }
        }
        plan.disk_after = Some(total);
    }
    plan
}

/// A pass's clock for its time budget.
pub(crate) struct Budget {
    started: Instant,
    budget: Duration,
}

impl Budget {
    pub(crate) fn new(budget: Duration) -> Budget {
        Budget {
            started: Instant::now(),
            budget,
        }
    }

    pub(crate) fn spent(&self) -> bool {
        self.started.elapsed() > self.budget
    }

    pub(crate) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Runs one pass on `shared`: plans, then (unless `dry_run` or warn mode) executes.
///
/// An enforcing pass evicts in two rounds. The first plans from the state alone (pruning and
/// the cap) and evicts at once, so that the count returns to the cap without waiting for the
/// listing of a large directory, during which new entries keep arriving. The second plans
/// with the listing: the transcripts of the sessions the first round released, archives,
/// orphans, the disk budget and anything more to evict.
pub(crate) fn run(
    shared: &Arc<crate::store::Shared>,
    dry_run: bool,
) -> crate::error::Result<MaintenanceReport> {
    use crate::error::{Error, Operation};

    let Some(config) = shared.config.maintenance.clone() else {
        return Ok(MaintenanceReport {
            mode: MaintenanceMode::Off,
            dry_run: true,
            ..MaintenanceReport::default()
        });
    };
    // A dry run changes nothing, so it need not wait for a pass that does.
    let _one_pass = (!dry_run).then(|| crate::store::lock(&shared.one_pass));
    #[cfg(test)]
    crate::hooks::reached(crate::hooks::Point::PassStarted, &shared.snapshot_path);
    let budget = Budget::new(config.time_budget);
    let span = tracing::info_span!("maintain", path = %shared.snapshot_path.display());
    let _span = span.enter();
    shared.refresh()?;
    let dir = crate::store::dir_of(&shared.snapshot_path);
    let snapshot_name = shared
        .snapshot_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let now = shared.config.clock.now();
    let active = shared.active_keys();
    let dry = dry_run || config.mode != MaintenanceMode::Enforce;
    let mut report = MaintenanceReport {
        mode: config.mode,
        dry_run: dry,
        ..MaintenanceReport::default()
    };
    let plan_with = |files: &Listing, released: &Gone, limits: bool| {
        plan(&Inputs {
            state: &**shared,
            files,
            released,
            limits,
            now,
            active: &active,
            config: &config,
        })
    };

    // The journal's length as the pass starts. The records of the pass's own evictions do not
    // count against the disk budget, so that a dry run, which writes none, sees what the pass
    // does; the compaction that ends a pass that evicted under a budget takes them out.
    let journal_name = shared
        .journal_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The view's lock only for the handle, not across the `fstat`.
    let journal_len = || {
        let journal = shared.read().journal.clone();
        journal.len().ok()
    };
    let journal_at_start = config.max_disk_bytes.and_then(|_| journal_len());
    let mut released = Gone::default();
    if !dry {
        let first = plan_with(&Listing::empty(dir), &released, true);
        report.kept_protected += first.kept_protected;
        report.cap_short = first.cap_short;
        released = evict(shared, &first.evict, &mut report);
    }
    // A dry run plans everything from one listing; the disk budget needs every file's size.
    // Otherwise the listing holds only what the file round may act on: transcripts and lock
    // counters of transcripts no entry references, and archives due to go or to be renamed,
    // as far as their names tell. A directory of many sessions holds tens of thousands of
    // archives within their retention, and a `stat` of each made every pass slower.
    let full = dry || config.max_disk_bytes.is_some();
    let unreferenced = |name: &str| shared.read().state.transcript_refs(name) == 0;
    let mut want = |name: &str, kind: Kind| {
        full || match kind {
            Kind::Transcript => unreferenced(name),
            Kind::Counter => counter_transcript(name).is_some_and(unreferenced),
            Kind::Archive => config
                .archive_retention
                .is_some_and(|retention| archive_due_by_name(name, now, retention) != Some(false)),
            Kind::Temp | Kind::Other => false,
        }
    };
    let mut files = list_dir(
        dir,
        &snapshot_name,
        config.max_disk_bytes.is_some(),
        &mut want,
    )
    .map_err(|e| {
        Error::io(
            Operation::Maintain,
            "list",
            &shared.snapshot_path,
            fs_dir(dir),
            e,
        )
    })?;
    if let (Some(start), Some(now)) = (journal_at_start, journal_len()) {
        files.discount(&journal_name, now.saturating_sub(start));
    }
    let plan = plan_with(&files, &released, dry);
    report.kept_protected += plan.kept_protected;
    report.cap_short |= plan.cap_short;
    report.disk_bytes_before = plan.disk_before;
    report.disk_bytes_after = plan.disk_after;
    let file_as = |(path, delete): &(PathBuf, bool), report: &mut MaintenanceReport| {
        if *delete {
            report.deleted.push(path.clone());
        } else {
            report.archived.push(path.clone());
        }
    };
    if dry {
        dry_report(&plan, &mut report);
        report.elapsed_ms = budget.elapsed_ms();
        return Ok(report);
    }

    #[cfg(test)]
    crate::hooks::reached(crate::hooks::Point::FilesPlanned, &shared.snapshot_path);
    // Then files, each checked again, against the journal as it is then (a cheap catch-up):
    // a session may have gained an entry meanwhile, in this process or another. If the
    // journal cannot be read, no transcript goes. A transcript whose write lock is held (or
    // left by a crash) is in use, or may be: it is left for a later pass.
    let unread = std::cell::Cell::new(None);
    let still_orphan = |path: &Path| {
        if let Err(e) = shared.refresh() {
            unread.set(Some(e.to_string()));
            return false;
        }
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        name.is_some_and(|n| is_transcript_name(&n) && shared.read().state.transcript_refs(&n) == 0)
            && !with_suffix(path, ".lock").exists()
    };
    // In the directory's turn (see `in_dir_turns`), up to a run of files after the check. A
    // write lock taken in this process since is seen: its file is created in the same turn,
    // if its path names the directory as the store's path does (the turns go by the name).
    let dispose = |(path, delete): &(PathBuf, bool), report: &mut MaintenanceReport| -> bool {
        if with_suffix(path, ".lock").exists() {
            return false;
        }
        let done = if *delete {
            fs::remove_file(path)
        } else {
            archive(path, now)
        };
        match done {
            Ok(()) => {
                file_as(&(path.clone(), *delete), report);
                forget_lock_counter(path);
                true
            }
            // Another process's pass got there first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                let step = if *delete { "delete" } else { "archive" };
                report
                    .errors
                    .push(format!("{}: could not {step} it: {e}", path.display()));
                false
            }
        }
    };
    // However long the listing and the plan took, each pass gets through some files: a
    // directory of many orphans would otherwise spend every pass's budget before the first.
    let mut done = 0;
    let mut within_budget = |report: &mut MaintenanceReport| {
        if report.incomplete || (done >= MIN_FILES_PER_PASS && budget.spent()) {
            report.incomplete = true;
            return false;
        }
        done += 1;
        true
    };
    in_dir_turns(
        dir,
        &plan.orphans,
        &mut report,
        |o, report| {
            if !within_budget(report) {
                Pick::Stop
            } else if still_orphan(&o.0) {
                Pick::Change
            } else {
                Pick::Skip
            }
        },
        |o, report| {
            if dispose(o, report) {
                report.orphans.push(o.0.clone());
            }
        },
    );
    // Lock counters whose transcript is gone (left by earlier passes or other tools).
    let counters: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.kind == Kind::Counter)
        .filter_map(|f| files.name(f).strip_suffix(".lock.gen"))
        .filter(|transcript| !files.contains(transcript))
        .map(|transcript| dir.join(transcript))
        .collect();
    in_dir_turns(
        dir,
        &counters,
        &mut report,
        // Not listed may also mean that its session gained an entry after the listing.
        |transcript, _| match fs::symlink_metadata(transcript) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Pick::Change,
            _ => Pick::Skip,
        },
        |transcript, _| forget_lock_counter(transcript),
    );
    for (path, how) in &plan.restamp {
        if !within_budget(&mut report) {
            break;
        }
        let done = match how {
            Restamp::Touch { orphan: true } if !still_orphan(path) => continue,
            Restamp::Touch { .. } => restamp(path, now),
            Restamp::Rename => {
                // The name up to its time, which is replaced.
                let prefix = path.file_name().and_then(|n| n.to_str()).and_then(|name| {
                    archive_stamp(name).map(|(start, _)| path.with_file_name(&name[..start]))
                });
                match prefix {
                    Some(prefix) => {
                        in_turn_of_parent(path, || rename_aside(path, prefix.as_os_str(), now))
                    }
                    None => continue,
                }
            }
        };
        match done {
            Ok(()) => report.restamped.push(path.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Setting another user's file's time takes its ownership, which removing or
            // renaming it does not: the file keeps its time, as before, and is no error.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                tracing::debug!(path = %path.display(), error = %e,
                    "could not give a file from the future the pass's time");
            }
            Err(e) => report.errors.push(format!(
                "{}: could not give it the pass's time: {e}",
                path.display()
            )),
        }
    }
    in_dir_turns(
        dir,
        plan.archives.iter().chain(&plan.temps),
        &mut report,
        |_, report| {
            if within_budget(report) {
                Pick::Change
            } else {
                Pick::Stop
            }
        },
        |path, report| match fs::remove_file(path) {
            Ok(()) if plan.temps.contains(path) => report.temps_removed.push(path.clone()),
            Ok(()) => report.archives_removed.push(path.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => report
                .errors
                .push(format!("{}: could not remove it: {e}", path.display())),
        },
    );
    // The disk budget's evictions come after the archives, orphans and temp files it counted
    // as freed, as in OpenClaw's order: a pass out of time leaves them to the next, which
    // plans them again from what it finds.
    if !report.incomplete {
        evict(shared, &plan.evict, &mut report);
    }
    // The transcripts of this pass's evictions are not cut by the budget: there are no more of
    // them than evictions, and leaving them would make orphans that wait out their grace.
    in_dir_turns(
        dir,
        &plan.transcripts,
        &mut report,
        |t, _| {
            if still_orphan(&t.0) {
                Pick::Change
            } else {
                Pick::Skip
            }
        },
        |t, report| {
            dispose(t, report);
        },
    );
    if let Some(e) = unread.take() {
        report
            .errors
            .push(format!("transcripts kept: could not read the journal: {e}"));
    }
    // Under a disk budget, an evicted entry's bytes leave the snapshot only at a compaction,
    // and its record adds to the journal: without one now, the next pass would count them
    // still there and evict again for them.
    if config.max_disk_bytes.is_some()
        && report.evicted() > 0
        && let Err(e) = crate::compact::compact(shared)
    {
        report.errors.push(format!("compact after evicting: {e}"));
    }
    let nested_bytes = files.nested_bytes;
    drop(files);
    if config.max_disk_bytes.is_some() {
        // The directory's own files are counted again; the subdirectories, which maintenance
        // never changes, are not walked a second time.
        report.disk_bytes_after = list_dir(dir, &snapshot_name, false, &mut |_, _| true)
            .ok()
            .map(|files| files.total_len() + nested_bytes);
    }
    report.elapsed_ms = budget.elapsed_ms();
    if !report.is_empty() || !report.errors.is_empty() {
        tracing::info!(
            pruned = report.pruned.len(),
            capped = report.capped.len(),
            disk = report.disk_evicted.len(),
            archived = report.archived.len(),
            deleted = report.deleted.len(),
            orphans = report.orphans.len(),
            archives_removed = report.archives_removed.len(),
            restamped = report.restamped.len(),
            errors = report.errors.len(),
            incomplete = report.incomplete,
            elapsed_ms = report.elapsed_ms,
            "session store maintenance pass"
        );
    }
    Ok(report)
}

/// Fills a dry run's report with everything `plan` would do, and logs it in warn mode.
fn dry_report(plan: &Plan, report: &mut MaintenanceReport) {
    let file_as = |(path, delete): &(PathBuf, bool), report: &mut MaintenanceReport| {
        if *delete {
            report.deleted.push(path.clone());
        } else {
            report.archived.push(path.clone());
        }
    };
    for eviction in &plan.evict {
        push_key(report, eviction.key.clone(), eviction.reason);
    }
    for t in &plan.transcripts {
        file_as(t, report);
    }
    for o in &plan.orphans {
        report.orphans.push(o.0.clone());
        file_as(o, report);
    }
    report.archives_removed = plan.archives.clone();
    report.temps_removed = plan.temps.clone();
    report.restamped = plan.restamp.iter().map(|(path, _)| path.clone()).collect();
    if report.mode == MaintenanceMode::Warn && !report.is_empty() {
        tracing::warn!(
            pruned = report.pruned.len(),
            capped = report.capped.len(),
            disk = report.disk_evicted.len(),
            orphans = report.orphans.len(),
            "session store maintenance would evict entries (warn mode: nothing changed)"
        );
    }
}

/// Plans one maintenance pass over the store at `snapshot_path` as `maintenance` configures
/// it, and reports what the pass would do, changing nothing: a dry run that needs no open
/// store, as [`Store::maintain`](crate::Store::maintain) with `dry_run` gives, but without
/// what opening does (creating a journal beside a snapshot alone, cutting a torn tail or a
/// fenced batch, removing old temp files), and without write permission.
///
/// The store is read as [`load_store`](crate::load_store) reads it; no entry counts as active
/// except those whose `status` is `"running"`, since the marks of [`Store::mark_active`](crate::Store::mark_active)
/// belong to the process that made them. The report's `mode` is `maintenance`'s and its
/// `dry_run` is true.
///
/// # Errors
///
/// Those of [`load_store`](crate::load_store), and [`Error::Io`](crate::Error::Io) if the
/// store's directory cannot be listed.
pub fn plan_maintenance(
    snapshot_path: impl AsRef<Path>,
    maintenance: &Maintenance,
) -> crate::error::Result<MaintenanceReport> {
    use crate::error::{Error, Operation};

    let snapshot_path = snapshot_path.as_ref();
    let budget = Budget::new(Duration::MAX);
    let loaded = crate::readonly::load_store(snapshot_path)?;
    let dir = crate::store::dir_of(snapshot_path);
    let snapshot_name = snapshot_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let files = list_dir(
        dir,
        &snapshot_name,
        maintenance.max_disk_bytes.is_some(),
        &mut |_, _| true,
    )
    .map_err(|e| Error::io(Operation::Maintain, "list", snapshot_path, fs_dir(dir), e))?;
    let plan = plan(&Inputs {
        state: &loaded.state,
        files: &files,
        released: &Gone::default(),
        limits: true,
        now: SystemTime::now(),
        active: &HashSet::new(),
        config: maintenance,
    });
    let mut report = MaintenanceReport {
        mode: maintenance.mode,
        dry_run: true,
        kept_protected: plan.kept_protected,
        disk_bytes_before: plan.disk_before,
        disk_bytes_after: plan.disk_after,
        ..MaintenanceReport::default()
    };
    dry_report(&plan, &mut report);
    report.elapsed_ms = budget.elapsed_ms();
    Ok(report)
}

/// Calls the [`Maintenance::on_pass`] hook with `report` if the pass changed something. The
/// caller calls it once the pass is over, a background pass's schedule included.
pub(crate) fn announce(shared: &crate::store::Shared, report: &MaintenanceReport) {
    let hook = shared
        .config
        .maintenance
        .as_ref()
        .and_then(|m| m.on_pass.as_ref());
    let changed = !report.is_empty() || !report.errors.is_empty();
    if let Some(hook) = hook.filter(|_| !report.dry_run && changed) {
        hook(report);
    }
}

/// Carries out the plan's evictions as batches of journal records, each eviction only if its
/// entry is unchanged since the plan, and records the outcome in `report`. Returns what the
/// evicted entries referenced.
///
/// A batch holds at most [`EVICTIONS_PER_BATCH`] evictions (or the store's
/// [`max_batch`](crate::StoreBuilder::max_batch), if smaller). The writer's own batches take
/// their turn in between, so callers wait for one batch of evictions at most, not for all of
/// them: the cap's slack at 100,000 entries is 10,000.
fn evict(
    shared: &Arc<crate::store::Shared>,
    evictions: &[Eviction],
    report: &mut MaintenanceReport,
) -> Gone {
    use crate::writer::{self, Reply, Request, Update};

    let mut gone = Gone::default();
    if evictions.is_empty() {
        return gone;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let per_batch = EVICTIONS_PER_BATCH.min(shared.config.max_batch).max(1);
    for (n, chunk) in evictions.chunks(per_batch).enumerate() {
        let batch: Vec<Request> = chunk
            .iter()
            .enumerate()
            .map(|(i, eviction)| {
                Request::new(
                    Update::Delete {
                        key: eviction.key.clone(),
                        reason: Some(eviction.reason),
                        if_updated_at: Some(eviction.updated_at),
                    },
                    Reply::Indexed(tx.clone(), n * per_batch + i),
                )
            })
            .collect();
        writer::commit(shared, batch);
    }
    drop(tx);
    let mut answers: Vec<Option<crate::Result<crate::Ack>>> =
        evictions.iter().map(|_| None).collect();
    for (index, answer) in rx {
        if let Some(slot) = answers.get_mut(index) {
            *slot = Some(answer);
        }
    }
    for (eviction, answer) in evictions.iter().zip(answers) {
        let key = &eviction.key;
        match answer {
            Some(Ok(ack)) if ack.seq > 0 => {
                push_key(report, key.clone(), eviction.reason);
                gone.add(eviction.refs.clone());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => report.errors.push(format!("evict {key}: {e}")),
            None => report
                .errors
                .push(format!("evict {key}: no answer from the writer")),
        }
    }
    gone
}

/// Sets `path`'s modification time to `at`. The handle is opened for writing, which setting
/// a file's times takes on some platforms; it writes nothing.
fn restamp(path: &Path, at: SystemTime) -> io::Result<()> {
    crate::sys::open_regular(fs::File::options().write(true), path)?.set_modified(at)
}

/// Removes a file in its directory's turn.
fn remove_file(path: &Path) -> io::Result<()> {
    in_turn_of_parent(path, || fs::remove_file(path))
}

/// How many files a pass renames or removes in one turn of their directory
/// ([`in_directory_turn`]). Threads that create transcripts and their locks take the turn all
/// the time, and a pass that queued behind them once per file fell seconds behind its cap; the
/// sessions' own creations wait for at most this many changes instead.
pub(crate) const CHANGES_PER_DIR_TURN: usize = 32;

/// What [`in_dir_turns`] does with one file.
enum Pick {
    /// Changes it, in the turn.
    Change,
    /// Leaves it.
    Skip,
    /// Leaves it and every file after it.
    Stop,
}

/// Walks `items`, `check`ing each outside any turn (a check may read the journal, which waits
/// for its lock, and no turn may be held across a wait), and hands those picked to `change`
/// in one turn of `dir` per run of at most [`CHANGES_PER_DIR_TURN`]. The files picked before
/// a [`Pick::Stop`] are changed, so a pass may run past its time budget by one run.
fn in_dir_turns<'a, T: 'a>(
    dir: &Path,
    items: impl IntoIterator<Item = &'a T>,
    report: &mut MaintenanceReport,
    mut check: impl FnMut(&'a T, &mut MaintenanceReport) -> Pick,
    mut change: impl FnMut(&'a T, &mut MaintenanceReport),
) {
    let mut items = items.into_iter();
    let mut picked = Vec::with_capacity(CHANGES_PER_DIR_TURN);
    let mut more = true;
    while more {
        while picked.len() < CHANGES_PER_DIR_TURN {
            match items.next().map(|item| (item, check(item, report))) {
                Some((item, Pick::Change)) => picked.push(item),
                Some((_, Pick::Skip)) => {}
                Some((_, Pick::Stop)) | None => {
                    more = false;
                    break;
                }
            }
        }
        if !picked.is_empty() {
            #[cfg(test)]
            crate::hooks::reached(crate::hooks::Point::FilesChecked, dir);
            in_directory_turn(dir, || {
                for item in picked.drain(..) {
                    change(item, report);
                }
            });
        }
    }
}

/// Removes the write lock's generation counter (`<file>.lock.gen`) of a transcript that is
/// gone, unless its lock is held or left (`<file>.lock`): one is left per session otherwise.
/// The caller holds the directory's turn.
fn forget_lock_counter(transcript: &Path) {
    if !with_suffix(transcript, ".lock").exists()
        && let Err(e) = fs::remove_file(with_suffix(transcript, ".lock.gen"))
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::debug!(path = %transcript.display(), error = %e, "kept a lock counter");
    }
}

/// `path` with `suffix` appended to its file name: a transcript's lock files.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn push_key(report: &mut MaintenanceReport, key: String, reason: EvictReason) {
    match reason {
        EvictReason::Prune => report.pruned.push(key),
        EvictReason::Cap => report.capped.push(key),
        _ => report.disk_evicted.push(key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{documented_room, documented_slack};

    use sessionkit_test_support::Scratch;

    thread_local! {
        /// How many directories below a store directory this thread has listed, to count
        /// the walks of a pass (a pass runs on the thread that asks for it).
        pub(super) static DIRS_READ: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// How many files of a store directory this thread's listings have `stat`ed.
        pub(super) static FILES_STATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// The directories the walks of `f` listed.
    fn dirs_read(f: impl FnOnce()) -> usize {
        let before = DIRS_READ.with(std::cell::Cell::get);
        f();
        DIRS_READ.with(std::cell::Cell::get) - before
    }

    #[test]
    fn subdirectories_are_walked_once_per_pass_and_only_with_a_budget() {
        let dir = Scratch::new("maintain-walks");
        fs::create_dir_all(dir.join("media/deep")).unwrap();
        fs::write(dir.join("media/deep/blob"), b"12345").unwrap();
        let open = |m: Maintenance| {
            crate::Store::builder()
                .maintenance(m.background(false).interval(None))
                .auto_compact(false)
                .open(dir.join("sessions.json"))
                .unwrap()
        };
        // Without a budget the bytes below are never used: no pass walks them.
        for mode in [MaintenanceMode::Enforce, MaintenanceMode::Warn] {
            let store = open(Maintenance::new().mode(mode));
            for dry_run in [false, true] {
                let walked = dirs_read(|| drop(store.maintain(dry_run).unwrap()));
                assert_eq!(walked, 0, "{mode:?}, dry run {dry_run}");
            }
        }
        // With one, each pass lists `media` and `media/deep` once, however it ends.
        for mode in [MaintenanceMode::Enforce, MaintenanceMode::Warn] {
            let store = open(Maintenance::new().mode(mode).max_disk_bytes(Some(1 << 30)));
            for dry_run in [false, true] {
                let mut report = None;
                let walked = dirs_read(|| report = Some(store.maintain(dry_run).unwrap()));
                assert_eq!(walked, 2, "{mode:?}, dry run {dry_run}");
                let report = report.unwrap();
                let top: u64 = fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().metadata().unwrap())
                    .filter(fs::Metadata::is_file)
                    .map(|m| m.len())
                    .sum();
                assert_eq!(report.disk_bytes_before, Some(top + 5), "{mode:?}");
                assert_eq!(report.disk_bytes_after, Some(top + 5), "{mode:?}");
            }
        }
    }

    /// A pass without a disk budget `stat`s only the archives it may act on, as their names
    /// tell: those past their retention, those named in the future, and those whose names give
    /// no time. The many within their retention it leaves unread, and acts as before on the
    /// others.
    #[test]
    fn a_pass_stats_only_the_archives_whose_names_say_it_may_act_on_them() {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        let dir = Scratch::new("maintain-archive-names");
        let now = SystemTime::now();
        let archive = |i: usize, at: SystemTime| {
            let name = format!("s{i}.jsonl.deleted.{}", crate::snapshot::compact_utc(at));
            fs::write(dir.join(&name), b"x").unwrap();
            name
        };
        let young: Vec<String> = (0..40).map(|i| archive(i, now - DAY)).collect();
        let old: Vec<String> = (40..43).map(|i| archive(i, now - 40 * DAY)).collect();
        let future: Vec<String> = (43..45).map(|i| archive(i, now + 2 * DAY)).collect();
        for name in ["s45.jsonl.deleted.soon", "s46.jsonl.bak.x"] {
            fs::write(dir.join(name), b"x").unwrap();
        }
        let store = crate::Store::builder()
            .maintenance(Maintenance::new().background(false).interval(None))
            .auto_compact(false)
            .open(dir.join("sessions.json"))
            .unwrap();
        let stated = |f: &mut dyn FnMut()| {
            let before = FILES_STATED.with(std::cell::Cell::get);
            f();
            FILES_STATED.with(std::cell::Cell::get) - before
        };
        let mut report = None;
        let n = stated(&mut || report = Some(store.maintain(false).unwrap()));
        assert_eq!(n, 3 + 2 + 2);
        let report = report.unwrap();
        let names = sessionkit_test_support::file_names;
        assert_eq!(names(&report.archives_removed), old);
        assert_eq!(names(&report.restamped), future);
        for name in &future {
            assert!(!dir.join(name).exists(), "{name}");
        }
        let untouched = young.iter().map(String::as_str);
        for name in untouched.chain(["s45.jsonl.deleted.soon", "s46.jsonl.bak.x"]) {
            assert!(dir.join(name).exists(), "{name}");
        }
        // A dry run plans from every file: the 44 archives left, and the journal.
        assert_eq!(
            stated(&mut || drop(store.maintain(true).unwrap())),
            40 + 2 + 2 + 1
        );
        // Without a retention no archive is read.
        let store = crate::Store::builder()
            .maintenance(
                Maintenance::new()
                    .background(false)
                    .interval(None)
                    .archive_retention(None),
            )
            .auto_compact(false)
            .open(dir.join("sessions.json"))
            .unwrap();
        assert_eq!(stated(&mut || drop(store.maintain(false).unwrap())), 0);
    }

    /// Both ways of renaming aside refuse a name that is taken and leave both files as they
    /// were: Linux's rename that never replaces, and the reservation used where there is none.
    #[test]
    fn renaming_aside_never_replaces_a_file() {
        let dir = Scratch::new("maintain-no-replace");
        type Rename = fn(&Path, &Path) -> io::Result<()>;
        let ways: [(&str, Rename); 2] = [
            ("no-replace rename", crate::sys::rename_no_replace),
            ("reservation", reserve_then_rename),
        ];
        for (way, rename) in ways {
            let (from, to, free) = (dir.join("a"), dir.join("b"), dir.join("c"));
            fs::write(&from, b"moving").unwrap();
            fs::write(&to, b"kept").unwrap();
            let e = rename(&from, &to).expect_err(way);
            if e.kind() == io::ErrorKind::Unsupported && !cfg!(target_os = "linux") {
                continue;
            }
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{way}: {e}");
            assert_eq!(fs::read(&from).unwrap(), b"moving", "{way}");
            assert_eq!(fs::read(&to).unwrap(), b"kept", "{way}");
            rename(&from, &free).unwrap();
            assert!(!from.exists(), "{way}");
            assert_eq!(fs::read(&free).unwrap(), b"moving", "{way}");
            fs::remove_file(&free).unwrap();
            fs::remove_file(&to).unwrap();
        }
    }

    /// Where the rename that never replaces is refused (a file system without the flag), an
    /// archive falls back on the reservation, once, and still takes the next free millisecond
    /// rather than replace a taken name.
    #[test]
    fn renaming_aside_falls_back_on_a_reservation_where_the_rename_is_refused() {
        let dir = Scratch::new("maintain-fallback");
        let at = SystemTime::now();
        let named = |ms: u64| {
            let stamp = crate::snapshot::compact_utc(at + Duration::from_millis(ms));
            dir.join(format!("s1.jsonl.deleted.{stamp}"))
        };
        fs::write(named(0), b"taken").unwrap();
        fs::write(dir.join("s1.jsonl"), b"transcript").unwrap();
        thread_local! {
            static REFUSED: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
        }
        let refuse: fn(&Path, &Path) -> io::Result<()> = |_, _| {
            REFUSED.with(|n| n.set(n.get() + 1));
            Err(io::ErrorKind::Unsupported.into())
        };
        let mut prefix = dir.join("s1.jsonl").into_os_string();
        prefix.push(".deleted.");
        rename_aside_with(&dir.join("s1.jsonl"), &prefix, at, refuse).unwrap();
        assert_eq!(REFUSED.with(std::cell::Cell::get), 1);
        assert_eq!(fs::read(named(0)).unwrap(), b"taken");
        assert_eq!(fs::read(named(1)).unwrap(), b"transcript");
        assert!(!dir.join("s1.jsonl").exists());
        let mut names = dir.names();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    /// A state that a writer changes before some of the planner's turns, which it counts.
    struct Written<F: Fn(usize, &mut State)> {
        state: std::cell::RefCell<State>,
        turns: std::cell::Cell<usize>,
        write: F,
    }

    impl<F: Fn(usize, &mut State)> StateSource for Written<F> {
        fn turn<R>(&self, f: impl FnOnce(&State) -> R) -> R {
            let turn = self.turns.get();
            (self.write)(turn, &mut self.state.borrow_mut());
            self.turns.set(turn + 1);
            f(&self.state.borrow())
        }
    }

    #[test]
    fn planning_reads_the_state_in_bounded_turns_and_sees_what_is_written_between_them() {
        use crate::{Record, WriterId};

        const TRANSCRIPTS: usize = 3000;
        const SESSIONS: usize = 2000;
        let dir = Scratch::new("maintain-turns");
        for i in 0..TRANSCRIPTS {
            fs::write(dir.join(format!("s{i:05}.jsonl")), [b'x'; 100]).unwrap();
        }
        // Entry `k<n>` of session `s<n>`, updated at `n` ms unless said otherwise.
        let upsert = |state: &mut State, seq: usize, n: usize, at: usize, running: bool| {
            let status = if running {
                r#","status":"running""#
            } else {
                ""
            };
            let entry = Entry::parse(&format!(
                r#"{{"sessionId":"s{n:05}","updatedAt":{at}{status}}}"#
            ))
            .unwrap();
            let key = format!("k{n:05}");
            state.apply(&Record::upsert(seq as u64, WriterId::new(1), key, &entry));
        };
        // Every other entry, oldest first, is in use: running, or protected.
        let mut state = State::new();
        for i in 0..SESSIONS {
            upsert(&mut state, i + 1, i, i, i % 4 == 1);
        }
        let files = list_dir(dir.path(), "sessions.json", true, &mut |_, _| true).unwrap();
        assert_eq!(files.iter().count(), TRANSCRIPTS);
        // Every transcript without an entry is an orphan past its grace, deleted; the entries
        // go oldest first, with their transcripts, until the rest fits under 80 kB: those not
        // in use, which are enough.
        let config = Maintenance::new()
            .prune_after(None)
            .max_entries(None)
            .orphan_grace(Duration::ZERO)
            .transcripts(TranscriptDisposal::Delete)
            .max_disk_bytes(Some(100_000))
            .protect(|key, _| key[1..].parse::<usize>().is_ok_and(|n| n % 4 == 3));
        // Newer than every other entry, so never the budget's to evict.
        let newest = 1_000_000;
        let (released, active) = (Gone::default(), HashSet::new());
        let now = SystemTime::now() + Duration::from_secs(1);
        macro_rules! plan_over {
            ($state:expr, $files:expr, $config:expr) => {
                plan(&Inputs {
                    state: $state,
                    files: $files,
                    released: &released,
                    limits: true,
                    now,
                    active: &active,
                    config: $config,
                })
            };
        }
        // A session of the last turn of transcripts gains its entry before that turn.
        let file_turns = TRANSCRIPTS.div_ceil(FILES_PER_TURN);
        let written = Written {
            state: std::cell::RefCell::new(state.clone()),
            turns: std::cell::Cell::new(0),
            write: |turn, state: &mut State| {
                if turn == file_turns - 1 {
                    upsert(state, SESSIONS + 1, TRANSCRIPTS - 1, newest, false);
                }
            },
        };
        let in_turns = plan_over!(&written, &files, &config);
        let orphans: Vec<&PathBuf> = in_turns.orphans.iter().map(|(p, _)| p).collect();
        assert_eq!(orphans.len(), TRANSCRIPTS - SESSIONS - 1);
        assert!(!orphans.contains(&&dir.join(format!("s{:05}.jsonl", TRANSCRIPTS - 1))));
        // The even ones go, oldest first.
        let evicted: Vec<&str> = in_turns.evict.iter().map(|e| e.key.as_str()).collect();
        let n = evicted.len();
        let oldest: Vec<String> = (0..n).map(|i| format!("k{:05}", 2 * i)).collect();
        assert_eq!(evicted, oldest);
        assert!(n > ENTRIES_PER_TURN, "{n} evictions fit in one turn");
        assert!(in_turns.disk_after.unwrap() <= 80_000);
        // The walk met the entries in use up to the first one it did not need to evict.
        assert_eq!(in_turns.kept_protected, n);
        // One turn per 1024 transcripts, one per 512 entries walked: the evicted ones, those
        // in use between them and after the last, and the next entry not in use.
        assert_eq!(
            written.turns.get(),
            file_turns + (2 * n + 1).div_ceil(ENTRIES_PER_TURN)
        );

        // Planned in one piece from the state as it ended, the pass is the same.
        upsert(&mut state, SESSIONS + 1, TRANSCRIPTS - 1, newest, false);
        let whole = plan_over!(&state, &files, &config);
        let keys = |p: &Plan| p.evict.iter().map(|e| e.key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&whole), keys(&in_turns));
        assert_eq!(whole.orphans, in_turns.orphans);
        assert_eq!(whole.transcripts, in_turns.transcripts);
        assert_eq!(whole.disk_after, in_turns.disk_after);
        assert_eq!(whole.kept_protected, in_turns.kept_protected);

        // The cap walks in turns too. With the 100 oldest entries protected, it takes the
        // next oldest down to 500, the walk stopping at the entry after them. The first it
        // takes is updated after the walk's first turn, so that a later turn meets it again.
        let mut state = State::new();
        for i in 0..SESSIONS {
            upsert(&mut state, i + 1, i, i, false);
        }
        let config = Maintenance::new()
            .prune_after(None)
            .max_entries(Some(500))
            .protect(|key, _| key < "k00100");
        let files = Listing::empty(dir.path());
        let counted = Written {
            state: std::cell::RefCell::new(state),
            turns: std::cell::Cell::new(0),
            write: |turn, state: &mut State| {
                if turn == 2 {
                    upsert(state, SESSIONS + 1, 100, 1500, false);
                }
            },
        };
        let capped = plan_over!(&counted, &files, &config);
        let evicted: Vec<&str> = capped.evict.iter().map(|e| e.key.as_str()).collect();
        let want = SESSIONS - 500;
        let oldest: Vec<String> = (100..100 + want).map(|i| format!("k{i:05}")).collect();
        assert_eq!(evicted, oldest);
        assert_eq!(capped.kept_protected, 100);
        // One turn for the count, then the walk over the protected entries, the evicted ones
        // (one of them twice) and the one after them.
        assert_eq!(
            counted.turns.get(),
            1 + (100 + want + 2).div_ceil(ENTRIES_PER_TURN)
        );
    }

    /// A store whose passes run only when asked and take orphans at any age.
    fn orphans_at_once(snapshot: &Path) -> crate::Store {
        crate::Store::builder()
            .maintenance(
                Maintenance::new()
                    .background(false)
                    .interval(None)
                    .orphan_grace(Duration::ZERO),
            )
            .auto_compact(false)
            .open(snapshot)
            .unwrap()
    }

    /// An orphan is checked against the journal as it is when the file would go: a session
    /// that another process gave an entry after the pass planned keeps its transcript.
    #[test]
    fn an_orphan_that_another_process_adopts_meanwhile_stays() {
        let dir = Scratch::new("orphan-adopted");
        let snapshot = dir.join("sessions.json");
        let (store, other) = (orphans_at_once(&snapshot), orphans_at_once(&snapshot));
        let transcript = dir.join("s1.jsonl");
        fs::write(&transcript, b"{}\n").unwrap();
        sessionkit_test_support::set_modified_ago(&transcript, Duration::from_secs(10));
        crate::hooks::on(crate::hooks::Point::FilesPlanned, &snapshot, move || {
            let entry = Entry::parse(r#"{"sessionId":"s1","updatedAt":1}"#).unwrap();
            other.upsert("k1", entry).unwrap();
        });
        let report = store.maintain(false).unwrap();
        assert!(report.orphans.is_empty(), "{report:?}");
        assert!(transcript.exists());
        assert!(store.get("k1").unwrap().is_some());
    }

    /// A transcript whose write lock this process takes after the pass checked it, but before
    /// the pass's turn of the directory came, stays: the lock file is looked for again in the
    /// turn, in which the lock's own file is created.
    #[test]
    fn an_orphan_locked_after_its_check_stays() {
        let dir = Scratch::new("orphan-locked");
        let store = orphans_at_once(&dir.join("sessions.json"));
        let transcript = dir.join("s1.jsonl");
        fs::write(&transcript, b"{}\n").unwrap();
        sessionkit_test_support::set_modified_ago(&transcript, Duration::from_secs(10));
        let locker = sessionkit_write_lock::Locker::new();
        let taken = Arc::new(std::sync::Mutex::new(None));
        let (path, slot) = (transcript.clone(), taken.clone());
        crate::hooks::on(crate::hooks::Point::FilesChecked, dir.path(), move || {
            *slot.lock().unwrap() = Some(locker.acquire(&path).unwrap());
        });
        let report = store.maintain(false).unwrap();
        assert!(taken.lock().unwrap().is_some(), "the hook ran");
        assert!(report.orphans.is_empty(), "{report:?}");
        assert_eq!(fs::read(&transcript).unwrap(), b"{}\n");
    }

    #[test]
    fn pruning_walks_from_the_oldest_dated_entry() {
        use crate::{Record, WriterId};

        // Entries without `updatedAt` come first in the walk's order, and are never pruned.
        let mut state = State::new();
        for i in 0..ENTRIES_PER_TURN + 10 {
            let entry = if i < ENTRIES_PER_TURN {
                Entry::parse(&format!(r#"{{"sessionId":"u{i}"}}"#))
            } else {
                Entry::parse(&format!(r#"{{"sessionId":"d{i}","updatedAt":{i}}}"#))
            };
            let record = Record::upsert(
                i as u64 + 1,
                WriterId::new(1),
                format!("k{i}"),
                &entry.unwrap(),
            );
            state.apply(&record);
        }
        let counted = Written {
            state: std::cell::RefCell::new(state),
            turns: std::cell::Cell::new(0),
            write: |_, _: &mut State| {},
        };
        let config = Maintenance::new()
            .max_entries(None)
            .prune_after(Some(Duration::from_secs(1)));
        let pruned = plan(&Inputs {
            state: &counted,
            files: &Listing::empty(Path::new("/nonexistent")),
            released: &Gone::default(),
            limits: true,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(3600),
            active: &HashSet::new(),
            config: &config,
        });
        assert_eq!(pruned.evict.len(), 10);
        assert!(pruned.evict.iter().all(|e| e.reason == EvictReason::Prune));
        // One turn: the dated entries alone, not the undated ones before them.
        assert_eq!(counted.turns.get(), 1);
    }

    #[test]
    fn a_listing_sorts_classifies_and_filters_by_name_and_kind() {
        let dir = Scratch::new("maintain-listing");
        let files = [
            ("s2.jsonl", 3),
            ("s1.jsonl", 5),
            ("s1.jsonl.lock.gen", 8),
            ("s3.jsonl.lock.gen", 8),
            ("s0.jsonl.deleted.2026-01-01T00-00-00.000Z", 7),
            ("notes.txt", 11),
        ];
        for (name, len) in files {
            fs::write(dir.join(name), vec![b'x'; len]).unwrap();
        }
        // Directories are not files of the store, whatever their names.
        fs::create_dir(dir.join("s9.jsonl")).unwrap();

        let all = list_dir(dir.path(), "sessions.json", true, &mut |_, _| true).unwrap();
        let seen: Vec<(&str, Kind)> = all.iter().map(|f| (all.name(f), f.kind)).collect();
        assert_eq!(
            seen,
            [
                ("notes.txt", Kind::Other),
                ("s0.jsonl.deleted.2026-01-01T00-00-00.000Z", Kind::Archive),
                ("s1.jsonl", Kind::Transcript),
                ("s1.jsonl.lock.gen", Kind::Counter),
                ("s2.jsonl", Kind::Transcript),
                ("s3.jsonl.lock.gen", Kind::Counter),
            ]
        );
        assert_eq!(all.total_len(), 3 + 5 + 8 + 8 + 7 + 11);
        assert!(all.contains("s1.jsonl") && !all.contains("s3.jsonl"));
        assert_eq!(all.path(&all.files[2]), dir.join("s1.jsonl"));

        // The filter sees every name with its kind, and only what it accepts is kept.
        let mut asked = Vec::new();
        let some = list_dir(dir.path(), "sessions.json", true, &mut |name, kind| {
            asked.push(name.to_owned());
            kind == Kind::Counter && counter_transcript(name) == Some("s3.jsonl")
        })
        .unwrap();
        asked.sort();
        assert_eq!(asked.len(), files.len() + 1);
        let kept: Vec<&str> = some.iter().map(|f| some.name(f)).collect();
        assert_eq!(kept, ["s3.jsonl.lock.gen"]);
        assert_eq!(some.total_len(), 8);
    }

    #[test]
    fn archive_names_say_when_they_were_made() {
        let at = 1_795_246_212_123;
        assert_eq!(
            archive_time_ms("s1.jsonl.deleted.20261121T073012.123Z"),
            Some(at)
        );
        assert_eq!(
            archive_time_ms("s1.jsonl.reset.2026-11-21T07-30-12.123Z"),
            Some(at)
        );
        assert_eq!(
            archive_time_ms("s1-topic-7.jsonl.bak.2026-11-21T07-30-12.123Z"),
            Some(at)
        );
        assert_eq!(archive_time_ms("sessions.json.bak.1795246212123"), Some(at));
        // OpenClaw's legacy numbered backups, and anything else, have no time.
        assert_eq!(archive_time_ms("sessions.json.bak.3"), None);
        assert_eq!(archive_time_ms("s1.jsonl.deleted.yesterday"), None);
        assert_eq!(
            archive_time_ms("s1.jsonl.deleted.2026-13-21T07-30-12.123Z"),
            None
        );
        assert_eq!(archive_time_ms("s1.jsonl"), None);
        // The time after the last marker counts.
        assert_eq!(
            archive_time_ms("a.deleted.x.jsonl.deleted.20261121T073012.123Z"),
            Some(at)
        );
    }

    #[test]
    fn leftovers_of_openclaw_are_archives_and_temp_files() {
        let kind = |name| classify(name, "sessions.json");
        assert_eq!(kind("s1.jsonl.bak.2026-11-21T07-30-12.123Z"), Kind::Archive);
        assert_eq!(kind("sessions.json.bak.3"), Kind::Archive);
        assert_eq!(kind("sessions.json.4242.0b7c9e1a.tmp"), Kind::Temp);
        assert_eq!(kind(".fs-safe-replace.4242.0b7c9e1a.tmp"), Kind::Temp);
        // Not the store's: another registry's temp file, a quarantined snapshot.
        assert_eq!(kind("other.json.4242.0b7c9e1a.tmp"), Kind::Other);
        assert_eq!(
            kind("sessions.json.corrupt.20261121T073012.123Z"),
            Kind::Other
        );
        assert_eq!(kind("sessions.json.journal"), Kind::Other);
    }

    /// The cap's rule, said step by step: each eviction takes the oldest unprotected entry
    /// while more than the room of them is left, else the oldest protected one while
    /// protection keeps more than its bound, else the oldest unprotected one; never an
    /// active one. Returns the keys, in the order taken.
    fn cap_model(entries: &[(i64, String, u8)], max: usize) -> Vec<String> {
        const PROTECTED: u8 = 1;
        let mut sorted: Vec<&(i64, String, u8)> = entries.iter().collect();
        sorted.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let oldest = |kind: u8, taken: &[String]| {
            sorted
                .iter()
                .find(|(_, key, k)| *k == kind && !taken.contains(key))
                .map(|(_, key, _)| key.clone())
        };
        let count = |kind: u8, taken: &[String]| {
            sorted
                .iter()
                .filter(|(_, key, k)| *k == kind && !taken.contains(key))
                .count()
        };
        let mut taken = Vec::new();
        let (slack, room) = (documented_slack(max), documented_room(max));
        if entries.len() <= max + slack {
            return taken;
        }
        while entries.len() - taken.len() > max {
            let unprotected = count(0, &taken);
            let next = if unprotected > room {
                oldest(0, &taken)
            } else if count(PROTECTED, &taken) > max - room {
                oldest(PROTECTED, &taken)
            } else {
                oldest(0, &taken)
            };
            match next {
                Some(key) => taken.push(key),
                None => break,
            }
        }
        taken
    }

    proptest::proptest! {
        /// The cap's plan takes exactly what the step-by-step rule takes, whatever the mix of
        /// unprotected, protected and active entries and their ages (ties included).
        #[test]
        fn the_cap_takes_what_the_step_by_step_rule_takes(
            kinds in proptest::collection::vec((0i64..40, 0u8..3), 0..160),
            max in 1usize..70,
        ) {
            use crate::{Record, WriterId};

            let entries: Vec<(i64, String, u8)> = kinds
                .iter()
                .enumerate()
                .map(|(i, &(at, kind))| (at, format!("k{i:03}"), kind))
                .collect();
            let mut state = State::new();
            for (seq, (at, key, kind)) in entries.iter().enumerate() {
                let flag = match kind {
                    1 => r#","protected":true"#,
                    2 => r#","status":"running""#,
                    _ => "",
                };
                let entry = Entry::parse(&format!(r#"{{"sessionId":"{key}","updatedAt":{at}{flag}}}"#)).unwrap();
                state.apply(&Record::upsert(seq as u64 + 1, WriterId::new(1), key.clone(), &entry));
            }
            let config = Maintenance::new()
                .prune_after(None)
                .max_entries(Some(max))
                .protect(|_, entry| entry.get("protected").is_some());
            let dir = Scratch::new("cap-model");
            let (released, active) = (Gone::default(), HashSet::new());
            let plan = plan(&Inputs {
                state: &state,
                files: &Listing::empty(dir.path()),
                released: &released,
                limits: true,
                now: SystemTime::now(),
                active: &active,
                config: &config,
            });
            let planned: Vec<String> = plan.evict.iter().map(|e| e.key.clone()).collect();
            let mut model = cap_model(&entries, max);
            // The plan lists what it takes oldest first; the model, in the order it took it.
            model.sort_by_key(|key| entries.iter().find(|(_, k, _)| k == key).map(|(at, k, _)| (*at, k.clone())));
            proptest::prop_assert_eq!(&planned, &model);
            let short =
                entries.len() > max + documented_slack(max) && entries.len() - model.len() > max;
            proptest::prop_assert_eq!(plan.cap_short, short);
        }
        #[test]
        fn archive_times_round_trip_in_every_form(
            ms in 0u64..253_402_300_799_999,
            marker in proptest::sample::select(&[".deleted.", ".reset.", ".bak."][..]),
        ) {
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
            let ours = crate::snapshot::compact_utc(at);
            proptest::prop_assert_eq!(archive_time_ms(&format!("s.jsonl{marker}{ours}")), Some(ms));
            let iso = sessionkit_write_lock::format_iso8601_ms(i64::try_from(ms).unwrap());
            let openclaw = iso.replace(':', "-");
            proptest::prop_assert_eq!(archive_time_ms(&format!("s.jsonl{marker}{openclaw}")), Some(ms));
            if (1_000_000_000_000..10_000_000_000_000).contains(&ms) {
                proptest::prop_assert_eq!(archive_time_ms(&format!("sessions.json.bak.{ms}")), Some(ms));
            }
        }

        #[test]
        fn any_name_has_a_time_or_none_without_panicking(name in ".*\\.(deleted|reset|bak)\\..{0,30}") {
            // A time it finds formats back to the stamp's instant.
            if let Some(ms) = archive_time_ms(&name) {
                let again = crate::snapshot::compact_utc(SystemTime::UNIX_EPOCH + Duration::from_millis(ms));
                proptest::prop_assert_eq!(archive_time_ms(&format!("x.deleted.{again}")), Some(ms));
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_name_that_is_not_utf8_is_listed_as_other_and_never_named() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        let dir = Scratch::new("maintain-non-utf8");
        fs::write(dir.join(OsStr::from_bytes(b"s\xff.jsonl")), b"abc").unwrap();
        let all = list_dir(dir.path(), "sessions.json", true, &mut |_, _| true).unwrap();
        let seen: Vec<(&str, Kind, u64)> =
            all.iter().map(|f| (all.name(f), f.kind, f.len)).collect();
        assert_eq!(seen, [("", Kind::Other, 3)]);
    }
}
