//! The state directory: its builder, the handle, and the startup sweep's status.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use sessionkit_lock_sweeper::{SweepReport, Sweeper};
use sessionkit_session_store::{
    Maintenance, MaintenanceMode, Store, SuspendedTranscript, SyncMode, Transcript,
    TranscriptDisposal,
};
use sessionkit_write_lock::{CleanupReport, LockConfig, LockController, Locker};

use crate::env;
use crate::error::{Error, Result};

/// The registry's file name in a state directory.
pub const REGISTRY_FILE: &str = "sessions.json";

/// By default, the startup sweep removes atomic-fs temp files older than this: 1 hour.
pub const DEFAULT_TEMP_OLDER_THAN: Duration = Duration::from_secs(3600);

/// The write-lock variables, applied to the lock settings as write-lock reads them.
const LOCK_VARS: [&str; 3] = [
    "SESSIONKIT_LOCK_ACQUIRE_TIMEOUT_MS",
    "SESSIONKIT_LOCK_STALE_MS",
    "SESSIONKIT_LOCK_MAX_HOLD_MS",
];

/// Settings of a [`StateDir`]; every setter says its default, and
/// [`from_env`](StateDirBuilder::from_env) reads the `SESSIONKIT_*` variables.
#[derive(Clone, Debug)]
pub struct StateDirBuilder {
    sync: SyncMode,
    maintenance: Maintenance,
    recover: bool,
    startup_sweep: bool,
    temp_older_than: Option<Duration>,
    lock: Option<LockConfig>,
    lock_env: Vec<(String, String)>,
    errors: Vec<(String, String)>,
}

impl Default for StateDirBuilder {
    fn default() -> Self {
        StateDirBuilder {
            sync: SyncMode::EveryBatch,
            maintenance: Maintenance::new(),
            recover: false,
            startup_sweep: true,
            temp_older_than: Some(DEFAULT_TEMP_OLDER_THAN),
            lock: None,
            lock_env: Vec::new(),
            errors: Vec::new(),
        }
    }
}

impl StateDirBuilder {
    /// How durable an acknowledged registry update is.
    ///
    /// By default, [`SyncMode::EveryBatch`]: it survives a power loss.
    pub fn sync(&mut self, mode: SyncMode) -> &mut Self {
        self.sync = mode;
        self
    }

    /// The registry's maintenance: pruning, the entry cap, transcripts of evicted sessions,
    /// orphans, the disk budget.
    ///
    /// By default, [`Maintenance::new`]: on, enforcing, in the background, with OpenClaw's
    /// defaults (prune after 30 days, at most 500 entries, archive transcripts).
    pub fn maintenance(&mut self, maintenance: Maintenance) -> &mut Self {
        self.maintenance = maintenance;
        self
    }

    /// Whether a corrupt registry file is renamed aside (`.corrupt.<UTC time>`, reported in
    /// the open report) instead of failing the open.
    ///
    /// By default, off: a corrupt registry is an error, and nothing is moved.
    pub fn recover(&mut self, yes: bool) -> &mut Self {
        self.recover = yes;
        self
    }

    /// Whether opening starts a sweep of stale locks (and old temp files) in the directory on
    /// a background thread. The caller never waits for it; see [`StateDir::startup_sweep`].
    ///
    /// By default, on.
    pub fn startup_sweep(&mut self, yes: bool) -> &mut Self {
        self.startup_sweep = yes;
        self
    }

    /// The age past which the startup sweep removes atomic-fs temp files; `None` keeps them.
    ///
    /// By default, 1 hour ([`DEFAULT_TEMP_OLDER_THAN`]).
    pub fn temp_older_than(&mut self, age: Option<Duration>) -> &mut Self {
        self.temp_older_than = age;
        self
    }

    /// The write-lock settings of transcripts (and the startup sweep's stale age).
    ///
    /// By default, write-lock's defaults (acquire timeout 60 s, max hold 5 min), with the
    /// `SESSIONKIT_LOCK_*` variables applied if [`from_env`](StateDirBuilder::from_env) was
    /// called. Settings given here replace both.
    pub fn lock(&mut self, config: LockConfig) -> &mut Self {
        self.lock = Some(config);
        self
    }

    /// Applies the `SESSIONKIT_*` variables of the process environment (the table in the
    /// crate documentation). Setters called afterwards win; a bad value makes
    /// [`open`](StateDirBuilder::open) fail with [`Error::Config`] naming the variable.
    ///
    /// By default, the environment is not read.
    pub fn from_env(&mut self) -> &mut Self {
        self.apply_env(|name| std::env::var(name).ok())
    }

    /// Applies variables read through `get` (for tests and embedding), as
    /// [`from_env`](StateDirBuilder::from_env) does.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> &mut Self {
        for name in env::ALL {
            if let Some(raw) = get(name)
                && let Err(reason) = self.apply_one(name, &raw)
            {
                self.errors
                    .push((name.to_owned(), format!("{reason} (got {raw:?})")));
            }
        }
        for name in LOCK_VARS {
            if let Some(raw) = get(name) {
                self.lock_env.retain(|(n, _)| n != name);
                self.lock_env.push((name.to_owned(), raw));
            }
        }
        self
    }

    fn apply_one(&mut self, name: &str, raw: &str) -> std::result::Result<(), String> {
        let m = self.maintenance.clone();
        match name {
            env::SYNC => {
                self.sync = match raw.trim() {
                    s if s.eq_ignore_ascii_case("every-batch") => SyncMode::EveryBatch,
                    s if s.eq_ignore_ascii_case("never") => SyncMode::Never,
                    s => SyncMode::Interval(env::millis(s).map_err(|r| {
                        format!("must be `every-batch`, `never` or milliseconds: {r}")
                    })?),
                };
            }
            env::MAINTENANCE => {
                let mode = [
                    MaintenanceMode::Enforce,
                    MaintenanceMode::Warn,
                    MaintenanceMode::Off,
                ][env::choice(raw, &["enforce", "warn", "off"])?];
                self.maintenance = m.mode(mode);
            }
            env::MAX_ENTRIES => {
                let max = env::or_none(raw, env::positive)?;
                let max = max
                    .map(|v| usize::try_from(v).map_err(|_| "is too large".to_owned()))
                    .transpose()?;
                self.maintenance = m.max_entries(max);
            }
            env::PRUNE_AFTER_MS => {
                self.maintenance = m.prune_after(env::or_none(raw, env::millis)?)
            }
            env::TRANSCRIPTS => {
                let disposal = [TranscriptDisposal::Archive, TranscriptDisposal::Delete]
                    [env::choice(raw, &["archive", "delete"])?];
                self.maintenance = m.transcripts(disposal);
            }
            env::ARCHIVE_RETENTION_MS => {
                self.maintenance = m.archive_retention(env::or_none(raw, env::millis)?);
            }
            env::ORPHAN_GRACE_MS => self.maintenance = m.orphan_grace(env::millis(raw)?),
            env::MAX_DISK_BYTES => {
                self.maintenance = m.max_disk_bytes(env::or_none(raw, env::positive)?);
            }
            env::STARTUP_SWEEP => self.startup_sweep = env::switch(raw)?,
            env::TEMP_OLDER_THAN_MS => self.temp_older_than = env::or_none(raw, env::millis)?,
            env::RECOVER => self.recover = env::switch(raw)?,
            _ => {}
        }
        Ok(())
    }

    /// The lock settings `open` will use.
    fn lock_config(&self, dir: &Path) -> Result<LockConfig> {
        if let Some(config) = &self.lock {
            return Ok(config.clone());
        }
        LockConfig::builder()
            .apply_env(|name| {
                self.lock_env
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            })
            .build()
            .map_err(|source| Error::Lock {
                path: dir.to_path_buf(),
                source: Box::new(source),
            })
    }

    /// Opens (creating if needed) the state directory `dir`: opens the registry
    /// `dir/sessions.json` with its journal, then starts the startup sweep on a background
    /// thread and returns without waiting for it. Blocks for the registry's open; from async
    /// code use `open_async` (feature `tokio`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a bad setting or variable (nothing is touched then);
    /// [`Error::CreateDir`]; [`Error::Store`] if the registry cannot be opened (a corrupt one
    /// without [`recover`](StateDirBuilder::recover), say; its source names the file).
    pub fn open(&self, dir: impl AsRef<Path>) -> Result<StateDir> {
        let dir = dir.as_ref();
        if let Some((name, reason)) = self.errors.first() {
            return Err(Error::Config {
                name: name.clone(),
                reason: reason.clone(),
            });
        }
        let lock = self.lock_config(dir)?;
        let sweeper = if self.startup_sweep {
            let sweeper = Sweeper::builder()
                .temp_older_than(self.temp_older_than)
                .stale_after(lock.stale_after())
                .malformed_grace(lock.malformed_grace())
                .build()
                .map_err(|source| Error::Sweep {
                    path: dir.to_path_buf(),
                    source: Box::new(source),
                })?;
            Some(sweeper)
        } else {
            None
        };
        std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let store = Store::builder()
            .sync(self.sync)
            .recover(self.recover)
            .create(true)
            .maintenance(self.maintenance.clone())
            .open(dir.join(REGISTRY_FILE))
            .map_err(|source| Error::Store {
                op: "open the registry",
                path: dir.to_path_buf(),
                source: Box::new(source),
            })?;
        let locker = Locker::with_config(lock);
        let sweep = Arc::new(SweepCell::new(sweeper.is_some()));
        if let Some(sweeper) = sweeper {
            let cell = Arc::clone(&sweep);
            let target = dir.to_path_buf();
            let spawned = std::thread::Builder::new()
                .name("sessionkit-startup-sweep".to_owned())
                .spawn(move || {
                    let outcome = sweeper.sweep(&[&target]);
                    match &outcome {
                        Ok(report) => tracing::info!(
                            dir = %target.display(),
                            removed = report.totals.removed,
                            kept = report.totals.kept,
                            "startup sweep finished"
                        ),
                        Err(e) => tracing::warn!(dir = %target.display(), error = %e, "startup sweep failed"),
                    }
                    cell.finish(outcome.map(Arc::new).map_err(|e| e.to_string()));
                });
            if let Err(e) = spawned {
                sweep.finish(Err(format!("could not start the sweep thread: {e}")));
            }
        }
        Ok(StateDir {
            dir: dir.to_path_buf(),
            controller: LockController::new(locker.clone()),
            locker,
            store,
            sweep,
        })
    }
}

/// Where the startup sweep is.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum SweepStatus {
    /// The startup sweep was turned off.
    Off,
    /// Still sweeping.
    Running,
    /// Finished; what it found and removed.
    Done(Arc<SweepReport>),
    /// It could not run (the reason); nothing was removed on its account.
    Failed(String),
}

impl SweepStatus {
    /// True once the sweep has finished, failed, or was off.
    pub fn is_finished(&self) -> bool {
        !matches!(self, SweepStatus::Running)
    }

    /// The report of a finished sweep.
    pub fn report(&self) -> Option<&SweepReport> {
        match self {
            SweepStatus::Done(report) => Some(report),
            _ => None,
        }
    }
}

/// The startup sweep's status, shared with its thread.
#[derive(Debug)]
pub(crate) struct SweepCell {
    inner: Mutex<CellInner>,
    done: Condvar,
}

#[derive(Debug)]
struct CellInner {
    status: SweepStatus,
    /// The tasks awaiting the end of the sweep, woken by [`SweepCell::finish`].
    wakers: Vec<Waker>,
}

impl SweepCell {
    fn new(on: bool) -> SweepCell {
        SweepCell {
            inner: Mutex::new(CellInner {
                status: if on {
                    SweepStatus::Running
                } else {
                    SweepStatus::Off
                },
                wakers: Vec::new(),
            }),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CellInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, outcome: std::result::Result<Arc<SweepReport>, String>) {
        let wakers = {
            let mut inner = self.lock();
            inner.status = match outcome {
                Ok(report) => SweepStatus::Done(report),
                Err(reason) => SweepStatus::Failed(reason),
            };
            std::mem::take(&mut inner.wakers)
        };
        self.done.notify_all();
        for waker in wakers {
            waker.wake();
        }
    }

    fn get(&self) -> SweepStatus {
        self.lock().status.clone()
    }

    pub(crate) fn wait(&self, timeout: Duration) -> SweepStatus {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        while !inner.status.is_finished() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            inner = self
                .done
                .wait_timeout(inner, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        inner.status.clone()
    }

    /// Ready with the status once the sweep has finished; until then the task is woken by
    /// [`finish`](SweepCell::finish). The status is checked under the same lock that
    /// registers the waker, so a sweep that ends in between cannot be missed.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_finished(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<SweepStatus> {
        let mut inner = self.lock();
        if inner.status.is_finished() {
            return std::task::Poll::Ready(inner.status.clone());
        }
        if !inner.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            inner.wakers.push(cx.waker().clone());
        }
        std::task::Poll::Pending
    }
}

/// An open state directory: the registry, fenced transcripts, and the startup sweep.
///
/// Dropping it closes the registry (pending updates are written first) and drops the
/// transcripts' controller; transcripts still held keep their own locks until dropped.
pub struct StateDir {
    pub(crate) dir: PathBuf,
    pub(crate) store: Store,
    pub(crate) locker: Locker,
    pub(crate) controller: LockController,
    pub(crate) sweep: Arc<SweepCell>,
}

impl fmt::Debug for StateDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateDir")
            .field("dir", &self.dir)
            .field("startup_sweep", &self.sweep.get())
            .finish_non_exhaustive()
    }
}

impl StateDir {
    /// The builder, starting from the defaults.
    pub fn builder() -> StateDirBuilder {
        StateDirBuilder::default()
    }

    /// Opens `dir` with the defaults and the `SESSIONKIT_*` variables, as
    /// `StateDir::builder().from_env().open(dir)`.
    ///
    /// # Errors
    ///
    /// As [`StateDirBuilder::open`].
    pub fn open(dir: impl AsRef<Path>) -> Result<StateDir> {
        StateDir::builder().from_env().open(dir)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The session registry (`sessions.json` and its journal).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The locker that transcripts are locked with; the same settings as the startup sweep.
    pub fn locker(&self) -> &Locker {
        &self.locker
    }

    /// Where the startup sweep is, right now.
    pub fn startup_sweep(&self) -> SweepStatus {
        self.sweep.get()
    }

    /// Waits up to `timeout` for the startup sweep to finish and returns where it is then.
    /// Blocks; from async code use `wait_startup_sweep_async` (feature `tokio`).
    pub fn wait_startup_sweep(&self, timeout: Duration) -> SweepStatus {
        self.sweep.wait(timeout)
    }

    /// Takes `session_id`'s transcript lock (waiting up to the lock's acquire timeout), cuts a
    /// torn tail a crash left, and returns the transcript, whose appends are fenced. The lock
    /// is tracked, so [`cleanup`](StateDir::cleanup) can abandon it. Blocks.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] with session-store's error: a bad session id, a lock timeout
    /// ([`Error::is_timeout`]), or a tail that could not be repaired.
    pub fn transcript(&self, session_id: &str) -> Result<Transcript> {
        let transcript = self
            .store
            .open_transcript(&self.locker, session_id)
            .map_err(|source| self.store_error("open a transcript", source))?;
        self.track(&transcript);
        Ok(transcript)
    }

    /// Resumes a suspended transcript (taking its lock again and checking that nobody wrote
    /// meanwhile) and tracks the new hold. Blocks.
    ///
    /// # Errors
    ///
    /// [`Error::Store`]; its write-lock source says whether it was a takeover.
    pub fn resume(&self, suspended: SuspendedTranscript) -> Result<Transcript> {
        let transcript = suspended
            .resume()
            .map_err(|source| self.store_error("resume a transcript", source))?;
        self.track(&transcript);
        Ok(transcript)
    }

    /// Tracks a transcript's lock for [`cleanup`](StateDir::cleanup).
    pub fn track(&self, transcript: &Transcript) {
        if let Some(guard) = transcript.guard() {
            self.controller.track(guard);
        }
    }

    /// How many transcript locks handed out here are still held.
    pub fn held_count(&self) -> usize {
        self.controller.held_count()
    }

    /// Abandons every transcript lock handed out here that is still held: each lock file is
    /// removed if it is still its own, the holder's writes fail as fenced from then on, and
    /// each is logged. For a unit of work that ends (or is cancelled) with locks still held.
    pub fn cleanup(&self) -> CleanupReport {
        self.controller.cleanup()
    }

    /// Closes the registry as [`Store::close`] does: if this holds its last handle, waits
    /// until the registry's threads are done with the directory (queued updates committed,
    /// compactions and maintenance passes queued or running ended, hooks included). True if
    /// it was the last handle.
    /// The startup sweep is not waited for; [`wait_startup_sweep`](StateDir::wait_startup_sweep)
    /// does that. Blocks; from async code use `close_async` (feature `tokio`).
    pub fn close(self) -> bool {
        self.store.close()
    }

    pub(crate) fn store_error(
        &self,
        op: &'static str,
        source: sessionkit_session_store::Error,
    ) -> Error {
        Error::Store {
            op,
            path: self.dir.clone(),
            source: Box::new(source),
        }
    }
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use std::task::Poll;

    use super::*;

    fn waiter(cell: &Arc<SweepCell>) -> tokio::task::JoinHandle<SweepStatus> {
        let cell = Arc::clone(cell);
        tokio::spawn(async move { std::future::poll_fn(|cx| cell.poll_finished(cx)).await })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_task_waiting_for_the_sweep_is_woken_by_its_thread() {
        let cell = Arc::new(SweepCell::new(true));
        let waiting = waiter(&cell);
        // Let the waiter register its waker before the sweep ends.
        tokio::task::yield_now().await;
        assert_eq!(lock_wakers(&cell), 1);
        let finisher = Arc::clone(&cell);
        std::thread::spawn(move || finisher.finish(Err("gone".to_owned())))
            .join()
            .unwrap();
        assert!(matches!(waiting.await.unwrap(), SweepStatus::Failed(r) if r == "gone"));
        assert_eq!(lock_wakers(&cell), 0, "finish takes the wakers");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_task_polled_again_registers_one_waker_and_a_finished_sweep_is_ready() {
        let cell = Arc::new(SweepCell::new(true));
        let mut polls = 0;
        let status = std::future::poll_fn(|cx| {
            polls += 1;
            match polls {
                1..=3 => {
                    assert!(cell.poll_finished(cx).is_pending());
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                _ => Poll::Ready(cell.poll_finished(cx)),
            }
        })
        .await;
        assert!(status.is_pending());
        assert_eq!(lock_wakers(&cell), 1, "the same task's waker is kept once");
        cell.finish(Err("x".to_owned()));
        let off = SweepCell::new(false);
        let ready = std::future::poll_fn(|cx| Poll::Ready(off.poll_finished(cx))).await;
        assert!(matches!(ready, Poll::Ready(SweepStatus::Off)));
    }

    fn lock_wakers(cell: &SweepCell) -> usize {
        cell.lock().wakers.len()
    }
}

#[cfg(test)]
mod env_tests {
    use super::*;
    use crate::env::tests::{model_positive, model_switch, near_number, number, spelled};
    use proptest::prelude::*;

    /// The builder the crate docs' variable table says `raw` in `name` makes, built through
    /// the public setters; `None` if the table says the value is invalid.
    fn model(name: &str, raw: &str) -> Option<StateDirBuilder> {
        let word = raw.trim().to_ascii_lowercase();
        let none = word == "none";
        let ms = model_positive(raw).map(Duration::from_millis);
        let m = Maintenance::new();
        let mut b = StateDirBuilder::default();
        match name {
            "SESSIONKIT_SYNC" => match word.as_str() {
                "every-batch" => b.sync(SyncMode::EveryBatch),
                "never" => b.sync(SyncMode::Never),
                _ => b.sync(SyncMode::Interval(ms?)),
            },
            "SESSIONKIT_MAINTENANCE" => b.maintenance(m.mode(match word.as_str() {
                "enforce" => MaintenanceMode::Enforce,
                "warn" => MaintenanceMode::Warn,
                "off" => MaintenanceMode::Off,
                _ => return None,
            })),
            "SESSIONKIT_MAX_ENTRIES" if none => b.maintenance(m.max_entries(None)),
            "SESSIONKIT_MAX_ENTRIES" => {
                let max = usize::try_from(model_positive(raw)?).ok()?;
                b.maintenance(m.max_entries(Some(max)))
            }
            "SESSIONKIT_PRUNE_AFTER_MS" if none => b.maintenance(m.prune_after(None)),
            "SESSIONKIT_PRUNE_AFTER_MS" => b.maintenance(m.prune_after(Some(ms?))),
            "SESSIONKIT_TRANSCRIPTS" => b.maintenance(m.transcripts(match word.as_str() {
                "archive" => TranscriptDisposal::Archive,
                "delete" => TranscriptDisposal::Delete,
                _ => return None,
            })),
            "SESSIONKIT_ARCHIVE_RETENTION_MS" if none => b.maintenance(m.archive_retention(None)),
            "SESSIONKIT_ARCHIVE_RETENTION_MS" => b.maintenance(m.archive_retention(Some(ms?))),
            // The table offers no `none` here.
            "SESSIONKIT_ORPHAN_GRACE_MS" => b.maintenance(m.orphan_grace(ms?)),
            "SESSIONKIT_MAX_DISK_BYTES" if none => b.maintenance(m.max_disk_bytes(None)),
            "SESSIONKIT_MAX_DISK_BYTES" => {
                b.maintenance(m.max_disk_bytes(Some(model_positive(raw)?)))
            }
            "SESSIONKIT_STARTUP_SWEEP" => b.startup_sweep(model_switch(raw)?),
            "SESSIONKIT_TEMP_OLDER_THAN_MS" if none => b.temp_older_than(None),
            "SESSIONKIT_TEMP_OLDER_THAN_MS" => b.temp_older_than(Some(ms?)),
            "SESSIONKIT_RECOVER" => b.recover(model_switch(raw)?),
            other => panic!("the model does not know {other}"),
        };
        Some(b)
    }

    /// The variables as the crate docs' table spells them, each with the words it accepts.
    const TABLE: [(&str, &[&str]); 11] = [
        ("SESSIONKIT_SYNC", &["every-batch", "never"]),
        ("SESSIONKIT_MAINTENANCE", &["enforce", "warn", "off"]),
        ("SESSIONKIT_MAX_ENTRIES", &["none"]),
        ("SESSIONKIT_PRUNE_AFTER_MS", &["none"]),
        ("SESSIONKIT_TRANSCRIPTS", &["archive", "delete"]),
        ("SESSIONKIT_ARCHIVE_RETENTION_MS", &["none"]),
        ("SESSIONKIT_ORPHAN_GRACE_MS", &[]),
        ("SESSIONKIT_MAX_DISK_BYTES", &["none"]),
        (
            "SESSIONKIT_STARTUP_SWEEP",
            &["on", "off", "true", "false", "yes", "no"],
        ),
        ("SESSIONKIT_TEMP_OLDER_THAN_MS", &["none"]),
        (
            "SESSIONKIT_RECOVER",
            &["on", "off", "true", "false", "yes", "no"],
        ),
    ];

    /// Words some variable accepts, and near misses of them.
    const EVERY_WORD: [&str; 17] = [
        "every-batch",
        "every_batch",
        "never",
        "enforce",
        "warn",
        "off",
        "none",
        "nothing",
        "archive",
        "delete",
        "on",
        "true",
        "false",
        "yes",
        "no",
        "1",
        "0",
    ];

    /// A variable and a value for it: mostly its own words, so each is tried often, but also
    /// other variables' words, numbers, near misses and anything at all.
    fn setting() -> impl Strategy<Value = (&'static str, String)> {
        proptest::sample::select(TABLE.to_vec()).prop_flat_map(|(name, words)| {
            let own: Vec<&'static str> = if words.is_empty() {
                EVERY_WORD.to_vec()
            } else {
                words.to_vec()
            };
            let value = prop_oneof![
                3 => spelled(proptest::sample::select(own)),
                1 => spelled(proptest::sample::select(EVERY_WORD.to_vec())),
                2 => number(),
                1 => near_number(),
                1 => any::<String>(),
            ];
            (Just(name), value)
        })
    }

    proptest! {
        #[test]
        fn every_variable_follows_the_documented_table((name, raw) in setting()) {
            let mut builder = StateDirBuilder::default();
            builder.apply_env(|n| (n == name).then(|| raw.clone()));
            match model(name, &raw) {
                Some(expected) => {
                    prop_assert_eq!(format!("{builder:?}"), format!("{expected:?}"), "{:?}", raw);
                }
                None => {
                    prop_assert_eq!(builder.errors.len(), 1, "{:?}", raw);
                    let (got_name, reason) = &builder.errors[0];
                    prop_assert_eq!(got_name, name);
                    prop_assert!(reason.contains(&format!("{raw:?}")), "{}", reason);
                    // A refused value changes no setting.
                    builder.errors.clear();
                    let untouched = StateDirBuilder::default();
                    prop_assert_eq!(format!("{builder:?}"), format!("{untouched:?}"));
                }
            }
        }
    }
}
