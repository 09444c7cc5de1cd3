//! The sweeper: its settings, and the synchronous sweep.

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use sessionkit_write_lock::{
    Clock, ENV_STALE_MS, LockConfig, Locker, OwnerLookup, OwnerRule, ProcLookup, Status,
};

use crate::error::{Error, Result};
use crate::memo::MemoLookup;
use crate::report::{DirError, SweepEntry, SweepReport, TempEntry, TempReport, millis};

/// Which lock sidecars a sweep considers, by file name (the name always ends in `.lock`).
pub(crate) type SidecarFilter = Arc<dyn Fn(&OsStr) -> bool + Send + Sync>;
/// A hook called between a lock's judgement and its removal.
pub(crate) type RemovalHook = Arc<dyn Fn(&Path) + Send + Sync>;
/// A hook told how far a sweep has got.
pub(crate) type ProgressHook = Arc<dyn Fn(SweepProgress) + Send + Sync>;

/// How far a sweep has got, as told to a [`progress`](SweeperBuilder::progress) hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SweepProgress {
    /// Directories given to the sweep.
    pub dirs: u64,
    /// Directories listed so far.
    pub dirs_listed: u64,
    /// Lock sidecars found in the directories listed so far.
    pub found: u64,
    /// Lock sidecars judged (and removed, if stale) so far.
    pub done: u64,
}

/// The settings of a [`Sweeper`].
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) dry_run: bool,
    pub(crate) filter: Option<SidecarFilter>,
    pub(crate) temp_older_than: Option<Duration>,
    pub(crate) stale_after: Option<Duration>,
    pub(crate) malformed_grace: Option<Duration>,
    pub(crate) env_stale_ms: Option<String>,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) lookup: Arc<dyn OwnerLookup>,
    pub(crate) concurrency: usize,
    pub(crate) batch: usize,
    pub(crate) ours: Option<OwnerRule>,
    pub(crate) foreign_owners_stale: bool,
    pub(crate) progress: Option<ProgressHook>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dry_run: false,
            filter: None,
            temp_older_than: None,
            stale_after: None,
            malformed_grace: None,
            env_stale_ms: None,
            clock: None,
            lookup: Arc::new(ProcLookup),
            concurrency: 8,
            batch: 64,
            ours: None,
            foreign_owners_stale: false,
            progress: None,
        }
    }
}

impl Config {
    /// The lock settings a sweep judges with, over `lookup`.
    fn lock_config(&self, lookup: Arc<dyn OwnerLookup>) -> Result<LockConfig> {
        let mut b = LockConfig::builder();
        b.lookup(lookup).watchdog(false);
        if let Some(raw) = &self.env_stale_ms {
            b.apply_env(|name| (name == ENV_STALE_MS).then(|| raw.clone()));
        }
        if let Some(stale) = self.stale_after {
            b.stale_after(stale);
        }
        // The max hold only bounds holds of this locker, which never acquires; keep it within
        // the stale age so a short stale age is valid.
        let stale = self
            .stale_after
            .or_else(|| {
                self.env_stale_ms
                    .as_deref()
                    .and_then(|raw| raw.trim().parse().ok())
                    .map(Duration::from_millis)
            })
            .unwrap_or(sessionkit_write_lock::DEFAULT_STALE_AFTER);
        if !stale.is_zero() {
            b.max_hold(stale.min(sessionkit_write_lock::DEFAULT_MAX_HOLD));
        }
        if let Some(grace) = self.malformed_grace {
            b.malformed_grace(grace);
        }
        if let Some(clock) = &self.clock {
            b.clock(clock.clone());
        }
        if let Some(ours) = &self.ours {
            b.ours(ours.clone());
        }
        b.foreign_owners_stale(self.foreign_owners_stale);
        b.build().map_err(|e| match e {
            sessionkit_write_lock::Error::Config { name, reason } => Error::Config { name, reason },
            other => Error::Config {
                name: "lock".to_owned(),
                reason: other.to_string(),
            },
        })
    }
}

/// Sweeps directories for stale lock sidecars of write-lock (and OpenClaw) and removes them.
///
/// Every lock is judged by write-lock's judge ([`Locker::remove_if_stale`]), so the sweeper
/// has no stale rules of its own. Each sweep gets a fresh [`MemoLookup`], so an owner pid is
/// looked up once per sweep however many locks it owns.
#[derive(Clone, Default)]
pub struct Sweeper {
    pub(crate) config: Config,
    pub(crate) removal_hook: Option<RemovalHook>,
}

impl fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sweeper")
            .field("dry_run", &self.config.dry_run)
            .field("filtered", &self.config.filter.is_some())
            .field("temp_older_than", &self.config.temp_older_than)
            .field("stale_after", &self.config.stale_after)
            .field("malformed_grace", &self.config.malformed_grace)
            .field("lookup", &self.config.lookup)
            .field("concurrency", &self.config.concurrency)
            .field("batch", &self.config.batch)
            .field("ours", &self.config.ours)
            .field("foreign_owners_stale", &self.config.foreign_owners_stale)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Sweeper`]; every setter says its default.
#[derive(Debug, Default)]
pub struct SweeperBuilder {
    sweeper: Sweeper,
}

impl SweeperBuilder {
    /// Judges and reports, but removes nothing (stale locks are reported with
    /// `kept_because: "dry run"`, orphan temps as the ones that would go).
    ///
    /// By default, off.
    pub fn dry_run(&mut self, yes: bool) -> &mut Self {
        self.sweeper.config.dry_run = yes;
        self
    }

    /// Narrows which lock sidecars are swept, by file name. Only files whose names end in
    /// `.lock` are ever candidates, whatever the filter says; `<target>.lock.gen` counters and
    /// every other file are never touched.
    ///
    /// By default, every regular file or symlink whose name ends in `.lock`
    /// (`sessions.json.lock` included); its content is judged by write-lock.
    pub fn sidecars(
        &mut self,
        filter: impl Fn(&OsStr) -> bool + Send + Sync + 'static,
    ) -> &mut Self {
        self.sweeper.config.filter = Some(Arc::new(filter));
        self
    }

    /// Also removes atomic-fs orphan temp files (`.<name>.<pid>.<random>.sktmp`) last modified
    /// more than `age` ago, reported apart in [`SweepReport::temps`](crate::SweepReport::temps).
    ///
    /// By default, `None`: temp files are left alone.
    pub fn temp_older_than(&mut self, age: Option<Duration>) -> &mut Self {
        self.sweeper.config.temp_older_than = age;
        self
    }

    /// The age past which a lock whose owner cannot be proven alive is reported too old
    /// (report-only: a live owner's lock is never removed for its age).
    ///
    /// By default, write-lock's stale age (30 min), or `SESSIONKIT_LOCK_STALE_MS` after
    /// [`from_env`](SweeperBuilder::from_env).
    pub fn stale_after(&mut self, age: Duration) -> &mut Self {
        self.sweeper.config.stale_after = Some(age);
        self
    }

    /// How long a lock file without a valid record is kept (its owner may be writing it).
    ///
    /// By default, write-lock's grace: 30 s (and never more than the stale age). A sweep only
    /// observes locks, and an observer keeps such a file at most 30 s, as OpenClaw's sweeper
    /// does: a longer grace set here has no effect on a sweep.
    pub fn malformed_grace(&mut self, grace: Duration) -> &mut Self {
        self.sweeper.config.malformed_grace = Some(grace);
        self
    }

    /// Reads `SESSIONKIT_LOCK_STALE_MS` from the process environment; an explicit
    /// [`stale_after`](SweeperBuilder::stale_after) still wins.
    ///
    /// By default, the environment is not read.
    pub fn from_env(&mut self) -> &mut Self {
        self.sweeper.config.env_stale_ms =
            std::env::var_os(ENV_STALE_MS).map(|v| v.to_string_lossy().into_owned());
        self
    }

    /// The clock that ages locks.
    ///
    /// By default, the system clock.
    pub fn clock(&mut self, clock: Arc<dyn Clock>) -> &mut Self {
        self.sweeper.config.clock = Some(clock);
        self
    }

    /// How owners are looked up; each sweep wraps it in a fresh [`MemoLookup`].
    ///
    /// By default, `/proc` ([`ProcLookup`]).
    pub fn lookup(&mut self, lookup: Arc<dyn OwnerLookup>) -> &mut Self {
        self.sweeper.config.lookup = lookup;
        self
    }

    /// How many batches of files a sweep judges and removes at once: on as many threads for
    /// [`Sweeper::sweep`], as blocking tasks for the async sweep, which also works on this many
    /// directories at once (the batches of one directory run side by side too). Removing a
    /// file waits for the disk, so the waits of several threads overlap.
    ///
    /// By default, 8.
    pub fn concurrency(&mut self, dirs: usize) -> &mut Self {
        self.sweeper.config.concurrency = dirs;
        self
    }

    /// How many files a sweep hands to a thread at a time; the async sweep yields between
    /// its batches.
    ///
    /// By default, 64.
    pub fn batch_size(&mut self, files: usize) -> &mut Self {
        self.sweeper.config.batch = files;
        self
    }

    /// Which live owners count as ours, by command line (see [`OwnerRule`]). An owner that
    /// holds the OS lock on its sidecar is ours by definition; the rule is asked only about
    /// owners of records without that promise (older formats, OpenClaw), and only with
    /// [`foreign_owners_stale`](SweeperBuilder::foreign_owners_stale) on.
    ///
    /// By default, none: every owner counts as ours.
    pub fn ours(&mut self, rule: OwnerRule) -> &mut Self {
        self.sweeper.config.ours = Some(rule);
        self
    }

    /// OpenClaw's non-owner rule: a live owner (of a record without an OS-lock promise) whose
    /// command line is readable, not blank and not [ours](SweeperBuilder::ours) is judged
    /// stale with reason `foreign-owner`, and its lock removed. Each such pid then costs a
    /// second lookup (its command line), also memoized and counted in
    /// [`SweepReport::lookups`](crate::SweepReport::lookups). An unreadable command line
    /// keeps the lock.
    ///
    /// By default, off. [`build`](SweeperBuilder::build) fails if it is on without
    /// [`ours`](SweeperBuilder::ours).
    pub fn foreign_owners_stale(&mut self, yes: bool) -> &mut Self {
        self.sweeper.config.foreign_owners_stale = yes;
        self
    }

    /// Calls `hook` as the sweep goes: after each directory is listed and after each lock
    /// sidecar is handled. It runs on the sweeping thread (a blocking thread for
    /// [`sweep_async`](Sweeper::sweep_async)), so it must be quick; the CLI draws its
    /// progress bar from it.
    ///
    /// By default, there is no hook.
    pub fn progress(&mut self, hook: impl Fn(SweepProgress) + Send + Sync + 'static) -> &mut Self {
        self.sweeper.config.progress = Some(Arc::new(hook));
        self
    }

    /// Checks the settings and returns the sweeper.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid setting: a zero concurrency or batch size, lock
    /// settings write-lock rejects (a zero or unparsable stale age), or
    /// [`foreign_owners_stale`](SweeperBuilder::foreign_owners_stale) without
    /// [`ours`](SweeperBuilder::ours).
    pub fn build(&self) -> Result<Sweeper> {
        let c = &self.sweeper.config;
        if c.concurrency == 0 {
            return Err(config_error("concurrency", "must be at least 1"));
        }
        if c.batch == 0 {
            return Err(config_error("batch_size", "must be at least 1"));
        }
        c.lock_config(c.lookup.clone())?;
        Ok(self.sweeper.clone())
    }
}

fn config_error(name: &str, reason: &str) -> Error {
    Error::Config {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Everything one sweep shares across its directories.
pub(crate) struct Run {
    pub(crate) locker: Locker,
    pub(crate) memo: Arc<MemoLookup>,
    pub(crate) dry_run: bool,
    pub(crate) temp_older_than: Option<Duration>,
    pub(crate) filter: Option<SidecarFilter>,
    pub(crate) progress: Option<ProgressHook>,
    pub(crate) dirs: u64,
    pub(crate) dirs_listed: AtomicU64,
    pub(crate) found: AtomicU64,
    pub(crate) done: AtomicU64,
}

/// What one directory yielded.
#[derive(Default)]
pub(crate) struct DirResult {
    pub(crate) entries: Vec<SweepEntry>,
    pub(crate) error: Option<DirError>,
    pub(crate) temps: TempReport,
}

impl Sweeper {
    /// A builder starting from the defaults.
    pub fn builder() -> SweeperBuilder {
        SweeperBuilder::default()
    }

    /// Calls `hook` with a lock file's path after the lock was judged stale (a second time,
    /// holding the file's OS lock) and before it is checked unchanged and removed. A seam for
    /// tests that need to act in that window.
    ///
    /// By default, there is no hook.
    pub fn removal_hook(&mut self, hook: impl Fn(&Path) + Send + Sync + 'static) -> &mut Self {
        self.removal_hook = Some(Arc::new(hook));
        self
    }

    /// True if this sweeper removes nothing.
    pub fn is_dry_run(&self) -> bool {
        self.config.dry_run
    }

    pub(crate) fn start(&self, dirs: usize) -> Result<Run> {
        let memo = Arc::new(MemoLookup::new(self.config.lookup.clone()));
        let locker = Locker::with_config(self.config.lock_config(memo.clone())?);
        if let Some(hook) = &self.removal_hook {
            let hook = hook.clone();
            locker.set_removal_hook(move |path| hook(path));
        }
        Ok(Run {
            locker,
            memo,
            dry_run: self.config.dry_run,
            temp_older_than: self.config.temp_older_than,
            filter: self.config.filter.clone(),
            progress: self.config.progress.clone(),
            dirs: dirs as u64,
            dirs_listed: AtomicU64::new(0),
            found: AtomicU64::new(0),
            done: AtomicU64::new(0),
        })
    }

    /// Sweeps `dirs` and reports every lock sidecar found, blocking the calling thread until
    /// it is done.
    ///
    /// The directories are listed first (a missing one is empty, not an error), each sorted by
    /// name. Then each sidecar is judged by write-lock, and the stale ones are removed with
    /// [`Locker::remove_if_stale`] (which removes a file only if it is unchanged since it was
    /// judged) unless this is a dry run: [`batch_size`](SweeperBuilder::batch_size) files at a
    /// time, on up to [`concurrency`](SweeperBuilder::concurrency) threads, the calling one
    /// included. Last come the temp files, if asked for. A file that cannot be judged or
    /// removed is reported in its entry, a directory that cannot be listed in
    /// [`SweepReport::dir_errors`](crate::SweepReport::dir_errors), and the sweep goes on.
    /// The report lists the entries in the order of `dirs`, each directory sorted by name,
    /// however the threads shared the work.
    ///
    /// # Errors
    ///
    /// None today beyond [`Error::Config`], which [`SweeperBuilder::build`] already rules out;
    /// the `Result` leaves room for failures of the whole sweep.
    pub fn sweep<P: AsRef<Path>>(&self, dirs: &[P]) -> Result<SweepReport> {
        let started = Instant::now();
        let run = self.start(dirs.len())?;
        let mut results: Vec<DirResult> = Vec::with_capacity(dirs.len());
        let mut batches = Vec::new();
        for (index, dir) in dirs.iter().enumerate() {
            let mut out = DirResult::default();
            match run.list(dir.as_ref()) {
                Ok(mut rest) => {
                    while !rest.is_empty() {
                        let tail = rest.split_off(rest.len().min(self.config.batch));
                        batches.push((index, std::mem::replace(&mut rest, tail)));
                    }
                }
                Err(e) => out.error = Some(dir_error(&e)),
            }
            results.push(out);
        }
        for (index, entries) in run.sweep_batches(batches, self.config.concurrency) {
            results[index].entries.extend(entries);
        }
        for (out, dir) in results.iter_mut().zip(dirs) {
            out.temps = run.temps(dir.as_ref());
        }
        Ok(run.report(results, started))
    }
}

/// Files to judge, tagged with the index of their directory.
type Batch = (usize, Vec<(PathBuf, bool)>);

impl Run {
    /// Judges (and removes) the files of `batches` on up to `threads` threads, the calling one
    /// included, and returns each batch's entries in the order of `batches`.
    fn sweep_batches(&self, batches: Vec<Batch>, threads: usize) -> Vec<(usize, Vec<SweepEntry>)> {
        let count = batches.len();
        let queue = Mutex::new(batches.into_iter().enumerate());
        let work = || {
            let mut done = Vec::new();
            loop {
                // The guard is held only to take a batch; were it poisoned, the queue is whole.
                let next = queue.lock().unwrap_or_else(PoisonError::into_inner).next();
                let Some((order, (index, files))) = next else {
                    return done;
                };
                let entries = files
                    .into_iter()
                    .map(|(path, symlink)| self.sweep_file(path, symlink))
                    .collect::<Vec<_>>();
                done.push((order, index, entries));
            }
        };
        let mut done = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads.min(count))
                .map_while(|_| {
                    // A thread that cannot be started leaves its share to the others.
                    std::thread::Builder::new()
                        .name("sessionkit-sweep".to_owned())
                        .spawn_scoped(scope, work)
                        .ok()
                })
                .collect();
            let mut done = work();
            for helper in helpers {
                match helper.join() {
                    Ok(more) => done.extend(more),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            done
        });
        done.sort_unstable_by_key(|(order, _, _)| *order);
        done.into_iter()
            .map(|(_, index, entries)| (index, entries))
            .collect()
    }

    /// The lock sidecars in `dir`, sorted by name, each with whether it is a symlink.
    pub(crate) fn list(&self, dir: &Path) -> Result<Vec<(PathBuf, bool)>> {
        let list_error = |source| Error::ListDir {
            path: dir.to_path_buf(),
            source,
        };
        let read = match fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) => {
                self.dirs_listed.fetch_add(1, Ordering::Relaxed);
                self.tell_progress();
                return match e.kind() {
                    io::ErrorKind::NotFound => Ok(Vec::new()),
                    _ => Err(list_error(e)),
                };
            }
        };
        let mut found = Vec::new();
        for entry in read {
            let entry = entry.map_err(list_error)?;
            let name = entry.file_name();
            if !is_lock_name(&name) || self.filter.as_ref().is_some_and(|keep| !keep(&name)) {
                continue;
            }
            // `file_type` does not follow symlinks.
            let kind = match entry.file_type() {
                Ok(kind) => kind,
                Err(_) => continue,
            };
            if kind.is_file() || kind.is_symlink() {
                found.push((name, entry.path(), kind.is_symlink()));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        self.found.fetch_add(found.len() as u64, Ordering::Relaxed);
        self.dirs_listed.fetch_add(1, Ordering::Relaxed);
        self.tell_progress();
        Ok(found
            .into_iter()
            .map(|(_, path, link)| (path, link))
            .collect())
    }

    fn tell_progress(&self) {
        if let Some(hook) = &self.progress {
            hook(SweepProgress {
                dirs: self.dirs,
                dirs_listed: self.dirs_listed.load(Ordering::Relaxed),
                found: self.found.load(Ordering::Relaxed),
                done: self.done.load(Ordering::Relaxed),
            });
        }
    }

    /// Judges one sidecar and, unless this is a dry run, removes it if stale.
    pub(crate) fn sweep_file(&self, path: PathBuf, symlink: bool) -> SweepEntry {
        let entry = self.judge_file(path, symlink);
        self.done.fetch_add(1, Ordering::Relaxed);
        self.tell_progress();
        entry
    }

    fn judge_file(&self, path: PathBuf, symlink: bool) -> SweepEntry {
        // A regular file whose content is not a lock record is another program's file with a
        // `.lock` name: report it, never touch it.
        let judged = if self.dry_run {
            self.locker
                .inspect_lock_file(&path)
                .map(|inspection| (inspection, false))
        } else {
            // One observation per file: judged under its OS lock, removed only if unchanged.
            self.locker
                .remove_if_stale_once(&path, |i| i.not_a_record && !symlink)
        };
        match judged {
            Ok((inspection, removed)) => {
                let not_a_record = inspection.not_a_record && !symlink;
                let kept_because = if removed {
                    None
                } else {
                    Some(
                        match inspection.status {
                            _ if not_a_record => {
                                "not a lock record (another program's file); never touched"
                            }
                            Status::Stale if self.dry_run => "dry run",
                            Status::Stale => "changed or removed by someone else before removal",
                            Status::Held
                                if inspection.liveness.is_none()
                                    && inspection
                                        .record
                                        .as_ref()
                                        .is_some_and(|r| !r.promises_os_lock()) =>
                            {
                                "owner unknown (lookup failed or another host); kept"
                            }
                            Status::Held => "held by a live owner",
                            Status::Malformed => "malformed, within the grace period",
                            Status::Free => "vanished before it was judged",
                            _ => "not removable",
                        }
                        .to_owned(),
                    )
                };
                SweepEntry {
                    path,
                    symlink,
                    pid: inspection.record.as_ref().and_then(|r| r.pid),
                    liveness: inspection.liveness,
                    age_ms: inspection.age.map(millis),
                    status: Some(inspection.status),
                    not_a_record,
                    reasons: inspection.reasons,
                    removed,
                    kept_because,
                    error: None,
                }
            }
            Err(source) => {
                let error = Error::Lock {
                    path: path.clone(),
                    source,
                };
                tracing::warn!(path = %path.display(), error = %error.chain(), "lock sweep skipped a file");
                SweepEntry {
                    path,
                    symlink,
                    pid: None,
                    liveness: None,
                    age_ms: None,
                    status: None,
                    not_a_record: false,
                    reasons: Vec::new(),
                    removed: false,
                    kept_because: None,
                    error: Some(error.chain()),
                }
            }
        }
    }

    /// Handles orphan temp files in `dir`, if asked.
    pub(crate) fn temps(&self, dir: &Path) -> TempReport {
        let mut report = TempReport::default();
        let Some(older_than) = self.temp_older_than else {
            return report;
        };
        if self.dry_run {
            match fs::read_dir(dir) {
                Ok(read) => {
                    let now = SystemTime::now();
                    let mut found: Vec<TempEntry> = read
                        .filter_map(|e| e.ok())
                        .filter(|e| sessionkit_atomic_fs::is_temp_file_name(&e.file_name()))
                        .filter_map(|e| {
                            let meta = fs::symlink_metadata(e.path()).ok()?;
                            if !meta.file_type().is_file() {
                                return None;
                            }
                            let age = meta
                                .modified()
                                .ok()
                                .and_then(|m| now.duration_since(m).ok())
                                .unwrap_or(Duration::ZERO);
                            Some(TempEntry {
                                path: e.path(),
                                len: meta.len(),
                                age_ms: millis(age),
                            })
                        })
                        .collect();
                    let before = found.len();
                    found.retain(|t| t.age_ms > millis(older_than));
                    report.kept_young = (before - found.len()) as u64;
                    found.sort_by(|a, b| a.path.cmp(&b.path));
                    report.removed = found;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => report.errors.push(dir_error(&Error::ListDir {
                    path: dir.to_path_buf(),
                    source,
                })),
            }
            return report;
        }
        match sessionkit_atomic_fs::remove_orphan_temps(dir, older_than) {
            Ok(done) => {
                report.removed = done
                    .removed
                    .into_iter()
                    .map(|t| TempEntry {
                        path: t.path,
                        len: t.len,
                        age_ms: millis(t.age),
                    })
                    .collect();
                report.kept_young = done.kept_young.len() as u64;
                report.errors = done
                    .failed
                    .into_iter()
                    .map(|f| DirError {
                        path: f.path,
                        error: format!("{}: {}", f.step, f.error),
                    })
                    .collect();
            }
            Err(source) => report.errors.push(dir_error(&Error::Temps {
                path: dir.to_path_buf(),
                source,
            })),
        }
        report
    }

    /// Puts the directories' results together, in the order the directories were given.
    pub(crate) fn report(&self, results: Vec<DirResult>, started: Instant) -> SweepReport {
        let mut report = SweepReport {
            dry_run: self.dry_run,
            ..SweepReport::default()
        };
        let mut temps = self.temp_older_than.map(|_| TempReport::default());
        for result in results {
            report.entries.extend(result.entries);
            report.dir_errors.extend(result.error);
            if let Some(t) = temps.as_mut() {
                t.removed.extend(result.temps.removed);
                t.kept_young += result.temps.kept_young;
                t.errors.extend(result.temps.errors);
            }
        }
        let totals = &mut report.totals;
        for entry in &report.entries {
            totals.scanned += 1;
            if entry.is_stale() {
                totals.stale += 1;
            }
            if entry.error.is_some() {
                totals.errors += 1;
            } else if entry.removed {
                totals.removed += 1;
            } else {
                totals.kept += 1;
            }
        }
        totals.errors += report.dir_errors.len() as u64;
        report.temps = temps;
        report.lookups = self.memo.lookups();
        report.elapsed_ms = millis(started.elapsed());
        report
    }
}

fn is_lock_name(name: &OsStr) -> bool {
    name.as_encoded_bytes().ends_with(b".lock")
}

fn dir_error(e: &Error) -> DirError {
    DirError {
        path: e.path().map(Path::to_path_buf).unwrap_or_default(),
        error: e.chain(),
    }
}
