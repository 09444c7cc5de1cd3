//! The locker: acquiring, inspecting, removing stale locks, and the watchdog pass.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use sessionkit_atomic_fs::in_turn_of_parent;

use crate::config::LockConfig;
use crate::error::{Ctx, Error, Holder, Operation, Result};
use crate::guard::{Held, LockGuard};
use crate::judge::{self, Context, Observation, Rules, StaleReason, Status};
use crate::lookup::Liveness;
use crate::record::{OwnerRecord, Payload, RECORD_FORMAT, parse_record};
use crate::registry::{InProcessHolder, Turn, Wake, registry};
use crate::{sys, time, watchdog};

/// Lock files larger than this are not lock records (ours are about 300 bytes).
const MAX_RECORD_BYTES: u64 = 64 * 1024;

static NEXT_HELD_ID: AtomicU64 = AtomicU64::new(1);

/// A hook called between judging a lock stale and removing it (a seam for tests).
pub(crate) type RemovalHook = Arc<dyn Fn(&Path) + Send + Sync>;

pub(crate) struct LockerShared {
    pub(crate) config: LockConfig,
    /// Every lock this locker handed out, for the watchdog.
    pub(crate) held: Mutex<Vec<Weak<Held>>>,
    pub(crate) before_removal: Mutex<Option<RemovalHook>>,
}

/// Takes, inspects and cleans up write locks, with one [`LockConfig`].
///
/// A `Locker` is cheap to clone; clones share the settings and the watchdog. All lockers of a
/// process share one in-process gate per lock file, so two lockers never both hold a lock.
#[derive(Clone)]
pub struct Locker {
    pub(crate) shared: Arc<LockerShared>,
}

impl fmt::Debug for Locker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locker")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// The lock file of a target, and the target as the lock names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Paths {
    pub(crate) target: PathBuf,
    pub(crate) lock_path: PathBuf,
}

/// The most symlinks followed to a missing target, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// The lock file for `target`: `<real path of target>.lock`.
///
/// An existing target is resolved through every symlink; a missing one through the symlinks
/// that lead to it (a dangling link names where its target will be) and then its directory's
/// real path. So a symlinked path and its real path share one lock, whether or not the file
/// exists yet.
pub(crate) fn resolve(target: &Path, op: Operation) -> Result<Paths> {
    let ctx = Ctx::new(op, target);
    let real = match fs::canonicalize(target) {
        Ok(real) => real,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let target = &follow_dangling(target).map_err(|e| ctx.io("follow", target, e))?;
            let name = target.file_name().ok_or_else(|| {
                ctx.io(
                    "name a file with",
                    target,
                    io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
                )
            })?;
            let dir = match target.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = fs::canonicalize(dir).map_err(|e| ctx.io("resolve the directory", dir, e))?;
            dir.join(name)
        }
        Err(e) => return Err(ctx.io("resolve", target, e)),
    };
    let mut lock = real.clone().into_os_string();
    lock.push(".lock");
    Ok(Paths {
        target: real,
        lock_path: PathBuf::from(lock),
    })
}

/// Follows the symlinks at the end of `path` whose targets are missing, to the path the last
/// one names; `path` itself if it is not a symlink.
fn follow_dangling(path: &Path) -> io::Result<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let next = fs::read_link(&path)?;
                // A relative link is relative to the directory the link is in.
                path = match path.parent() {
                    Some(dir) if next.is_relative() => dir.join(next),
                    _ => next,
                };
            }
            _ => return Ok(path),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "too many levels of symbolic links",
    ))
}

/// What [`Locker::inspect`] found, without changing anything.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Inspection {
    /// The lock file.
    pub lock_path: PathBuf,
    /// Held, stale, malformed or free.
    pub status: Status,
    /// Every reason found, report-only ones included, sorted.
    pub reasons: Vec<StaleReason>,
    /// The owner record, if the file held one.
    pub record: Option<OwnerRecord>,
    /// The owner's liveness, if it was looked up (records of this crate are judged by their
    /// OS lock instead).
    pub liveness: Option<Liveness>,
    /// The lock's age: from the record's `createdAt`, else from the file's mtime.
    #[serde(rename = "ageMs", serialize_with = "as_millis")]
    pub age: Option<Duration>,
    /// True if a removal would be allowed (the status is [`Status::Stale`]).
    pub removable: bool,
    /// True if the holder is past the max hold its record declares.
    pub past_max_hold: bool,
    /// True if this process holds the lock.
    pub held_here: bool,
    /// How many acquires in this process are waiting for this lock.
    pub waiters_here: usize,
    /// True if the lock file is a regular file whose content is not a JSON object: perhaps no
    /// lock at all, but another program's file with a `.lock` name. An acquire judges it as a
    /// malformed lock; the sweeper leaves it alone.
    pub not_a_record: bool,
}

fn as_millis<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

impl Inspection {
    /// The holder as a timeout error names it.
    pub fn holder(&self) -> Holder {
        Holder {
            record: self.record.clone(),
            held_for: self.age,
            past_max_hold: self.past_max_hold,
        }
    }
}

/// A lock file as seen by a contender: its bytes, identity, and, if its OS lock was free, the
/// open file holding that lock (which serialises removal among our processes).
struct Seen {
    /// False for a symlink or anything else that is not a regular file.
    regular: bool,
    file: Option<File>,
    bytes: Vec<u8>,
    identity: (u64, u64),
    payload: Payload,
    mtime: SystemTime,
    os_lock_free: Option<bool>,
}

impl Seen {
    /// A symlink, FIFO, socket or device: never followed, read or locked; it has no record.
    fn special(meta: &fs::Metadata) -> Seen {
        Seen {
            regular: false,
            file: None,
            bytes: Vec::new(),
            identity: sessionkit_atomic_fs::file_identity(meta),
            payload: Payload::Unparsable,
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            os_lock_free: None,
        }
    }
}

/// Looks at a lock file. `Ok(None)` if it does not exist.
///
/// A regular file costs five system calls: an open that refuses symlinks, an fstat for its
/// identity, one read, the OS lock attempt and, when the caller is done, the close.
fn observe(lock_path: &Path) -> io::Result<Option<Seen>> {
    let mut retried = false;
    loop {
        // A symlink fails the open (never followed); a FIFO opens without waiting for a writer
        // and is closed again unread.
        let file = match sys::open_to_observe(lock_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => match fs::symlink_metadata(lock_path) {
                Ok(meta) if !meta.file_type().is_file() => return Ok(Some(Seen::special(&meta))),
                // A symlink swapped for a regular file between the open and the lstat: once more.
                Ok(_) if !retried && sys::is_not_openable_kind(&e) => {
                    retried = true;
                    continue;
                }
                Err(gone) if gone.kind() == io::ErrorKind::NotFound => return Ok(None),
                // A regular file that cannot be opened (permissions): the open's error.
                _ => return Err(e),
            },
        };
        return observe_open(file);
    }
}

/// [`observe`] once the lock file is open.
fn observe_open(file: File) -> io::Result<Option<Seen>> {
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(Some(Seen::special(&meta)));
    }
    let bytes = read_small(&file, meta.len())?;
    let payload = if bytes.len() as u64 > MAX_RECORD_BYTES {
        Payload::Unparsable
    } else {
        parse_record(&bytes)
    };
    let (file, os_lock_free) = match sys::try_lock(&file) {
        Ok(()) => (Some(file), Some(true)),
        Err(TryLockError::WouldBlock) => (None, Some(false)),
        // No OS locks here (some network file systems): judge by the record alone.
        Err(TryLockError::Error(_)) => (None, None),
    };
    Ok(Some(Seen {
        regular: true,
        file,
        bytes,
        identity: sessionkit_atomic_fs::file_identity(&meta),
        payload,
        mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        os_lock_free,
    }))
}

/// Reads a regular file that fstat said is `len` bytes long, up to `MAX_RECORD_BYTES + 1`.
///
/// The buffer has room for one byte more than `len`, so an unchanged file is read with one
/// call: a regular file reads short only at its end. A file that grew fills the buffer and is
/// read on; one that shrank reads on to the end.
fn read_small(mut file: &File, len: u64) -> io::Result<Vec<u8>> {
    let limit = MAX_RECORD_BYTES as usize + 1;
    let mut bytes = vec![0; (len as usize).min(limit - 1) + 1];
    let mut filled = 0;
    loop {
        if filled == bytes.len() {
            if filled >= limit {
                break;
            }
            bytes.resize((filled * 2).min(limit), 0);
        }
        match file.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                filled += n;
                if filled as u64 == len {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}

/// What one cross-process attempt found.
pub(crate) enum Attempt {
    Acquired(Held),
    /// Someone holds it; here is who.
    Busy(Holder),
    /// Something changed (a stale lock removed, a file vanished): try again at once.
    Retry,
}

impl Locker {
    /// A locker with the default settings (no environment overrides).
    pub fn new() -> Locker {
        Locker::with_config(LockConfig::default())
    }

    /// A locker with the defaults and the `SESSIONKIT_LOCK_*` environment overrides.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming an invalid variable.
    pub fn from_env() -> Result<Locker> {
        Ok(Locker::with_config(
            LockConfig::builder().from_env().build()?,
        ))
    }

    /// A locker with `config`.
    pub fn with_config(config: LockConfig) -> Locker {
        let shared = Arc::new(LockerShared {
            config,
            held: Mutex::new(Vec::new()),
            before_removal: Mutex::new(None),
        });
        Locker { shared }
    }

    /// The settings.
    pub fn config(&self) -> &LockConfig {
        &self.shared.config
    }

    /// Calls `hook` with the lock file's path after a stale lock was judged and before it is
    /// checked unchanged and removed. A seam for tests that need to act in that window.
    ///
    /// By default, there is no hook.
    pub fn set_removal_hook(&self, hook: impl Fn(&Path) + Send + Sync + 'static) {
        *self
            .shared
            .before_removal
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    /// Takes the lock on `target`, waiting up to the configured acquire timeout.
    ///
    /// Waiters in this process are served first come, first served, and woken by the release
    /// itself; while another process holds the lock, the first waiter polls with a pause that
    /// doubles up to the configured maximum (8 ms by default). Stale locks are removed on the
    /// way (see [`StaleReason`]); a live holder is never robbed.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] naming the holder, or [`Error::Io`].
    pub fn acquire(&self, target: impl AsRef<Path>) -> Result<LockGuard> {
        let timeout = self.shared.config.acquire_timeout;
        self.acquire_timeout(target, timeout)
    }

    /// Takes the lock on `target`, waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Locker::acquire).
    pub fn acquire_timeout(
        &self,
        target: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<LockGuard> {
        let target = target.as_ref();
        let paths = resolve(target, Operation::Acquire)?;
        self.acquire_paths(target, &paths, Some(timeout), None)
            .map(|g| g.expect("a waiting acquire returns a guard or an error"))
    }

    /// Takes the lock on `target` if nobody holds it, without waiting. `Ok(None)` means it is
    /// held (by another process, or by another holder in this one).
    ///
    /// # Errors
    ///
    /// [`Error::Io`].
    pub fn try_acquire(&self, target: impl AsRef<Path>) -> Result<Option<LockGuard>> {
        let target = target.as_ref();
        let paths = resolve(target, Operation::Acquire)?;
        self.acquire_paths(target, &paths, None, None)
    }

    /// Takes the lock on `target` for the holder identity `holder`, reentrantly: if `holder`
    /// already holds it in this process, another guard of the same lock is returned at once,
    /// and the lock file goes when the last of them is released. Other holders, and plain
    /// [`acquire`](Locker::acquire)s, wait as usual.
    ///
    /// # Errors
    ///
    /// As [`acquire`](Locker::acquire).
    pub fn acquire_as(&self, target: impl AsRef<Path>, holder: &str) -> Result<LockGuard> {
        let target = target.as_ref();
        let paths = resolve(target, Operation::Acquire)?;
        let timeout = self.shared.config.acquire_timeout;
        self.acquire_paths(target, &paths, Some(timeout), Some(holder))
            .map(|g| g.expect("a waiting acquire returns a guard or an error"))
    }

    /// A guard sharing the lock `holder` already holds on `paths`, if it does.
    fn reenter(&self, paths: &Paths, holder: Option<&str>) -> Option<LockGuard> {
        let holder = holder?;
        let current = registry().holder(&paths.lock_path)?;
        if current.key.as_deref() != Some(holder) {
            return None;
        }
        let held = current.held.upgrade()?;
        held.is_held().then(|| self.guard(held))
    }

    pub(crate) fn guard(&self, held: Arc<Held>) -> LockGuard {
        LockGuard::new(held, self.clone())
    }

    /// The waiting loop shared by every sync acquire; `timeout: None` tries once.
    pub(crate) fn acquire_paths(
        &self,
        target: &Path,
        paths: &Paths,
        timeout: Option<Duration>,
        holder: Option<&str>,
    ) -> Result<Option<LockGuard>> {
        if let Some(guard) = self.reenter(paths, holder) {
            return Ok(Some(guard));
        }
        let config = &self.shared.config;
        let started = Instant::now();
        let ticket = Ticket::join(&paths.lock_path);
        let mut pause = config.poll_min;
        let mut last_holder = None;
        let mut floor = 0;
        loop {
            let remaining = timeout.map(|t| t.saturating_sub(started.elapsed()));
            match registry().poll(
                &paths.lock_path,
                ticket.id,
                Wake::Thread(std::thread::current()),
            ) {
                Turn::Mine => match self.attempt(target, paths, holder, &mut floor)? {
                    Attempt::Acquired(held) => {
                        let waited = started.elapsed();
                        if waited > Duration::from_secs(1) {
                            tracing::info!(path = %target.display(), waited_ms = waited.as_millis() as u64, "lock acquired after a wait");
                        }
                        return Ok(Some(self.install(held, &ticket)));
                    }
                    Attempt::Retry => continue,
                    Attempt::Busy(who) => {
                        last_holder = Some(who);
                        let Some(remaining) = remaining.filter(|r| !r.is_zero()) else {
                            return self.gave_up(target, timeout, started, last_holder);
                        };
                        std::thread::sleep(pause.min(remaining));
                        pause = (pause * 2).min(config.poll_max);
                    }
                },
                Turn::Wait => {
                    let Some(remaining) = remaining.filter(|r| !r.is_zero()) else {
                        last_holder = in_process_holder(&paths.lock_path).or(last_holder);
                        return self.gave_up(target, timeout, started, last_holder);
                    };
                    // The release unparks us; a spurious wake-up just polls again.
                    std::thread::park_timeout(remaining);
                }
            }
        }
    }

    fn gave_up(
        &self,
        target: &Path,
        timeout: Option<Duration>,
        started: Instant,
        holder: Option<Holder>,
    ) -> Result<Option<LockGuard>> {
        if timeout.is_none() {
            return Ok(None);
        }
        Err(timeout_error(target, started, holder))
    }

    /// Records a new hold in the registry and for the watchdog, and wraps it in a guard.
    pub(crate) fn install(&self, held: Held, ticket: &Ticket) -> LockGuard {
        let held = Arc::new(held);
        registry().take(
            &held.lock_path,
            ticket.id,
            InProcessHolder {
                key: held.holder_key.clone(),
                held_id: held.id,
                held: Arc::downgrade(&held),
            },
        );
        ticket.taken();
        {
            let mut list = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
            list.retain(|w| w.strong_count() > 0);
            list.push(Arc::downgrade(&held));
        }
        if self.shared.config.watchdog {
            watchdog::watch(&self.shared);
        }
        tracing::debug!(path = %held.target.display(), generation = held.record.generation, "lock acquired");
        self.guard(held)
    }

    /// One attempt for the async acquire, with the generation floor passed by value.
    #[cfg(feature = "tokio")]
    pub(crate) fn attempt_once(
        &self,
        target: &Path,
        paths: &Paths,
        holder: Option<&str>,
        mut floor: u64,
    ) -> Result<(Attempt, u64)> {
        let attempt = self.attempt(target, paths, holder, &mut floor)?;
        Ok((attempt, floor))
    }

    /// [`reenter`](Locker::reenter) for the async acquire.
    #[cfg(feature = "tokio")]
    pub(crate) fn reenter_pub(&self, paths: &Paths, holder: Option<&str>) -> Option<LockGuard> {
        self.reenter(paths, holder)
    }

    /// One cross-process attempt: create the lock file, or judge the one that is there.
    fn attempt(
        &self,
        target: &Path,
        paths: &Paths,
        holder: Option<&str>,
        floor: &mut u64,
    ) -> Result<Attempt> {
        let ctx = Ctx::new(Operation::Acquire, target);
        let lock_path = &paths.lock_path;
        let created = in_turn_of_parent(lock_path, || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(lock_path)
        });
        match created {
            Ok(file) => self.take_new(ctx, paths, file, holder, *floor),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let Some(seen) =
                    observe(lock_path).map_err(|e| ctx.io("read the lock file", lock_path, e))?
                else {
                    return Ok(Attempt::Retry);
                };
                let verdict = self.judge_seen(&seen, lock_path, Context::Acquire);
                if verdict.status == Status::Stale
                    && (seen.file.is_some() || seen.os_lock_free.is_none())
                {
                    if let Payload::Record(r) = &seen.payload {
                        *floor = (*floor).max(r.generation.unwrap_or(0));
                    }
                    self.remove_if_unchanged(ctx, lock_path, &seen, &verdict.reasons)?;
                    return Ok(Attempt::Retry);
                }
                let (record, past_max_hold) = owner_of(seen.payload, verdict.age);
                Ok(Attempt::Busy(Holder {
                    record,
                    held_for: Some(verdict.age),
                    past_max_hold,
                }))
            }
            Err(e) => Err(ctx.io("create the lock file", lock_path, e)),
        }
    }

    /// Finishes taking a freshly created lock file: OS lock, generation, record.
    fn take_new(
        &self,
        ctx: Ctx<'_>,
        paths: &Paths,
        mut file: File,
        holder: Option<&str>,
        floor: u64,
    ) -> Result<Attempt> {
        let config = &self.shared.config;
        let lock_path = &paths.lock_path;
        let undo = |file: File, e: Error| {
            // We created it and hold it: nobody else can have replaced it.
            let _ = in_turn_of_parent(lock_path, || fs::remove_file(lock_path));
            drop(file);
            e
        };
        // Lock before writing the record, so a record that promises an OS lock is never seen
        // without the lock held. A contender that opened the empty file may hold it briefly.
        if let Err(e) = sys::lock(&file) {
            return Err(undo(file, ctx.io("take the OS lock on", lock_path, e)));
        }
        // While we waited for the OS lock, a contender that judged the still-empty file stale
        // (a clock far off, say) may have removed it: then the lock is not ours; start over.
        let ours = match (file.metadata(), fs::symlink_metadata(lock_path)) {
            (Ok(mine), Ok(there)) => {
                sessionkit_atomic_fs::file_identity(&mine)
                    == sessionkit_atomic_fs::file_identity(&there)
            }
            _ => false,
        };
        if !ours {
            return Ok(Attempt::Retry);
        }
        let generation = match next_generation(lock_path, floor, config.sync_lock_file) {
            Ok(g) => g,
            Err(e) => {
                return Err(undo(
                    file,
                    ctx.io("advance the generation in", &generation_path(lock_path), e),
                ));
            }
        };
        let now = config.clock.now();
        let record = OwnerRecord {
            pid: Some(std::process::id()),
            created_at_ms: Some(time::system_time_ms(now)),
            starttime: sys::own_start_time(),
            max_hold_ms: Some(u64::try_from(config.max_hold.as_millis()).unwrap_or(u64::MAX)),
            format: Some(RECORD_FORMAT),
            token: Some(sys::random_token()),
            hostname: sys::hostname(),
            boot_id: sys::boot_id(),
            program: sys::program_name(),
            label: config.label.clone(),
            generation: Some(generation),
            os_lock: true,
        };
        let written = file
            .write_all(&record.to_bytes())
            .and_then(|()| {
                if config.sync_lock_file {
                    file.sync_data()
                } else {
                    Ok(())
                }
            })
            .and_then(|()| file.metadata());
        let meta = match written {
            Ok(meta) => meta,
            Err(e) => {
                return Err(undo(
                    file,
                    ctx.io("write the owner record to", lock_path, e),
                ));
            }
        };
        Ok(Attempt::Acquired(Held::new(
            NEXT_HELD_ID.fetch_add(1, Ordering::Relaxed),
            paths.target.clone(),
            lock_path.clone(),
            file,
            sessionkit_atomic_fs::file_identity(&meta),
            record,
            config.clock.instant(),
            config.max_hold,
            holder.map(str::to_owned),
            config.clock.clone(),
            config.warn_hold_after,
        )))
    }

    /// Removes a lock file judged stale, only if it is still the file that was judged: the
    /// same identity and the same bytes. Returns whether it was removed.
    fn remove_if_unchanged(
        &self,
        ctx: Ctx<'_>,
        lock_path: &Path,
        seen: &Seen,
        reasons: &[StaleReason],
    ) -> Result<bool> {
        let hook = self
            .shared
            .before_removal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook(lock_path);
        }
        let still = match fs::symlink_metadata(lock_path) {
            Ok(meta) => sessionkit_atomic_fs::file_identity(&meta) == seen.identity,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(ctx.io("inspect the lock file", lock_path, e)),
        };
        let unchanged = still
            && match &seen.file {
                Some(file) => unchanged_bytes(file, &seen.bytes)
                    .map_err(|e| ctx.io("re-read the lock file", lock_path, e))?,
                // A symlink or special file has no bytes to compare; its identity must do.
                None => true,
            };
        if !unchanged {
            tracing::debug!(path = %lock_path.display(), "stale lock changed before removal; kept");
            return Ok(false);
        }
        match in_turn_of_parent(lock_path, || fs::remove_file(lock_path)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(ctx.io("remove the stale lock file", lock_path, e)),
        }
        let reasons: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
        tracing::warn!(path = %lock_path.display(), reasons = %reasons.join(","), "removed stale lock");
        Ok(true)
    }

    /// Reports the status of the lock on `target` without changing anything.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the lock file exists but cannot be read.
    pub fn inspect(&self, target: impl AsRef<Path>) -> Result<Inspection> {
        let target = target.as_ref();
        let paths = resolve(target, Operation::Inspect)?;
        self.inspect_lock_file(&paths.lock_path)
    }

    /// Reports the status of a lock file given by its own path (`<target>.lock`), as a
    /// directory sweep finds it, without changing anything.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the lock file exists but cannot be read.
    pub fn inspect_lock_file(&self, lock_path: &Path) -> Result<Inspection> {
        let ctx = Ctx::new(Operation::Inspect, lock_path);
        let seen = observe(lock_path).map_err(|e| ctx.io("read the lock file", lock_path, e))?;
        // Dropping `seen` closes the file, which gives back the OS lock inspect may have taken.
        Ok(self.inspection_of(seen.as_ref(), lock_path))
    }

    /// Judges the lock file at `lock_path` once and, if it is stale and `spare` does not
    /// object, removes it if it is unchanged: one observation instead of the two of
    /// [`inspect_lock_file`](Locker::inspect_lock_file) then
    /// [`remove_judged`](Locker::remove_judged). The judgement is made while holding the
    /// file's OS lock where it can be taken, and the removal still checks, right before the
    /// unlink, that the file has the identity and bytes that were judged. For sweeps over many
    /// files.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read or removed.
    pub fn remove_if_stale_once(
        &self,
        lock_path: &Path,
        spare: impl FnOnce(&Inspection) -> bool,
    ) -> Result<(Inspection, bool)> {
        let ctx = Ctx::new(Operation::RemoveStale, lock_path);
        let seen = observe(lock_path).map_err(|e| ctx.io("read the lock file", lock_path, e))?;
        let inspection = self.inspection_of(seen.as_ref(), lock_path);
        let Some(seen) = seen else {
            return Ok((inspection, false));
        };
        // Someone holds the OS lock after all, or the file vanished: not ours to remove.
        if !inspection.removable
            || (seen.file.is_none() && seen.os_lock_free.is_some())
            || spare(&inspection)
        {
            return Ok((inspection, false));
        }
        let removed = self.remove_if_unchanged(ctx, lock_path, &seen, &inspection.reasons)?;
        Ok((inspection, removed))
    }

    fn inspection_of(&self, seen: Option<&Seen>, lock_path: &Path) -> Inspection {
        let held_here = registry().holder(lock_path).is_some();
        let Some(seen) = seen else {
            return Inspection {
                lock_path: lock_path.to_path_buf(),
                status: Status::Free,
                reasons: Vec::new(),
                record: None,
                liveness: None,
                age: None,
                removable: false,
                past_max_hold: false,
                held_here,
                waiters_here: registry().waiters(lock_path),
                not_a_record: false,
            };
        };
        let verdict = self.judge_seen(seen, lock_path, Context::Observe);
        let not_a_record = seen.regular && seen.payload == Payload::Unparsable;
        let (record, past_max_hold) = owner_of(seen.payload.clone(), verdict.age);
        Inspection {
            lock_path: lock_path.to_path_buf(),
            status: verdict.status,
            removable: verdict.status == Status::Stale,
            reasons: verdict.reasons,
            record,
            liveness: verdict.liveness,
            age: Some(verdict.age),
            past_max_hold,
            held_here,
            waiters_here: registry().waiters(lock_path),
            not_a_record,
        }
    }

    /// Removes the lock file at `lock_path` if it is stale now and unchanged between the
    /// judgement and the removal. Returns the inspection and whether the file was removed.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read or removed.
    pub fn remove_if_stale(&self, lock_path: &Path) -> Result<(Inspection, bool)> {
        let inspection = self.inspect_lock_file(lock_path)?;
        let removed = self.remove_judged(lock_path, &inspection)?;
        Ok((inspection, removed))
    }

    /// Removes the lock file that `inspection` judged removable, if it still is: it is judged
    /// again while holding its OS lock, and removed only if unchanged since. For callers that
    /// inspect first (the sweeper), so each file is judged once before the removal.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read or removed.
    pub fn remove_judged(&self, lock_path: &Path, inspection: &Inspection) -> Result<bool> {
        let ctx = Ctx::new(Operation::RemoveStale, lock_path);
        if !inspection.removable {
            return Ok(false);
        }
        // Judge again while holding the file's OS lock, so the removal is of what was judged.
        let Some(seen) =
            observe(lock_path).map_err(|e| ctx.io("read the lock file", lock_path, e))?
        else {
            return Ok(false);
        };
        let again = self.inspect_seen(&seen, lock_path);
        if again != Status::Stale || (seen.file.is_none() && seen.os_lock_free.is_some()) {
            return Ok(false);
        }
        self.remove_if_unchanged(ctx, lock_path, &seen, &inspection.reasons)
    }

    /// Judges a lock file as seen, in `context`. An acquire waits out the configured malformed
    /// grace; an observer (inspect, the sweeper) keeps a malformed file at most 30 s, as
    /// OpenClaw's sweeper does.
    fn judge_seen(&self, seen: &Seen, lock_path: &Path, context: Context) -> judge::Verdict {
        let config = &self.shared.config;
        let grace = match context {
            Context::Acquire => config.malformed_grace(),
            Context::Observe => config.malformed_grace().min(Duration::from_secs(30)),
        };
        judge::judge(
            &Observation {
                payload: &seen.payload,
                mtime: seen.mtime,
                os_lock_free: seen.os_lock_free,
                held_here: registry().holder(lock_path).is_some(),
            },
            Rules {
                stale_after: config.stale_after,
                malformed_grace: grace,
                foreign_unless: config.ours.as_ref().filter(|_| config.foreign_owners_stale),
            },
            context,
            config.clock.now(),
            &*config.lookup,
        )
    }

    fn inspect_seen(&self, seen: &Seen, lock_path: &Path) -> Status {
        self.judge_seen(seen, lock_path, Context::Observe).status
    }

    /// Revokes every guard of this locker held longer than its max hold, and reports what it
    /// did. The watchdog thread calls this; tests call it after moving a manual clock.
    pub fn watchdog_pass(&self) -> WatchdogReport {
        watchdog::pass(&self.shared)
    }
}

impl Default for Locker {
    fn default() -> Self {
        Locker::new()
    }
}

/// What one watchdog pass did.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct WatchdogReport {
    /// The targets whose guards were revoked.
    pub revoked: Vec<PathBuf>,
    /// Revocations that failed (the guard is revoked anyway; its lock file may remain).
    pub failed: Vec<Error>,
    /// Overdue guards in the middle of a guarded write, to be revoked on the next pass.
    pub deferred: Vec<PathBuf>,
}

pub(crate) fn in_process_holder(lock_path: &Path) -> Option<Holder> {
    let held = registry().holder(lock_path)?.held.upgrade()?;
    Some(Holder {
        record: Some(held.record.clone()),
        held_for: Some(held.acquired.elapsed()),
        past_max_hold: held.acquired.elapsed() > held.max_hold,
    })
}

/// True if `file` still holds exactly `bytes`: one positioned read of a byte more than that.
///
/// A regular file reads short only at its end, so `bytes.len()` bytes back means the same
/// length; a longer file fills the extra byte. Of a file too big to be a record only the part
/// that was read (`MAX_RECORD_BYTES + 1`) is compared, as it was judged on that part.
fn unchanged_bytes(file: &File, bytes: &[u8]) -> io::Result<bool> {
    let room = if bytes.len() as u64 > MAX_RECORD_BYTES {
        bytes.len()
    } else {
        bytes.len() + 1
    };
    let mut now = vec![0; room];
    loop {
        match file.read_at(&mut now, 0) {
            Ok(n) => return Ok(now[..n] == *bytes),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The owner record of a lock file, if it has one, and whether a lock of age `age` is past
/// the max hold that record declares.
fn owner_of(payload: Payload, age: Duration) -> (Option<OwnerRecord>, bool) {
    let record = match payload {
        Payload::Record(r) => Some(r),
        _ => None,
    };
    let past_max_hold = record
        .as_ref()
        .and_then(|r| r.max_hold_ms)
        .is_some_and(|max| age > Duration::from_millis(max));
    (record, past_max_hold)
}

/// The error of an acquire that gave up, naming the holder if it is known.
pub(crate) fn timeout_error(target: &Path, started: Instant, holder: Option<Holder>) -> Error {
    Error::Timeout {
        op: Operation::Acquire,
        path: target.to_path_buf(),
        waited: started.elapsed(),
        holder: Box::new(holder.unwrap_or(Holder {
            record: None,
            held_for: None,
            past_max_hold: false,
        })),
    }
}

/// `<target>.lock.gen`, the per-target generation counter.
pub(crate) fn generation_path(lock_path: &Path) -> PathBuf {
    let mut p = lock_path.as_os_str().to_owned();
    p.push(".gen");
    PathBuf::from(p)
}

/// Advances the generation counter of a lock and returns the new value, at least `floor + 1`.
///
/// Only the holder of the lock calls this, so the read-modify-write needs no lock of its own.
fn next_generation(lock_path: &Path, floor: u64, sync: bool) -> io::Result<u64> {
    let path = generation_path(lock_path);
    // `O_CREAT` may create the counter: a change to the directory.
    let mut file = in_turn_of_parent(&path, || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
    })?;
    let mut text = String::new();
    (&mut file).take(64).read_to_string(&mut text).ok();
    let last = text.trim().parse::<u64>().unwrap_or_else(|_| {
        if !text.trim().is_empty() {
            tracing::warn!(path = %path.display(), "generation counter unreadable; continuing from the last seen lock record");
        }
        0
    });
    let next = last.max(floor) + 1;
    let line = format!("{next:020}\n");
    file.seek(SeekFrom::Start(0))?;
    file.write_all(line.as_bytes())?;
    if text.len() > line.len() {
        file.set_len(line.len() as u64)?;
    }
    if sync {
        file.sync_data()?;
    }
    Ok(next)
}

/// A place in the in-process queue, left on drop unless the lock was taken.
pub(crate) struct Ticket {
    pub(crate) id: u64,
    lock_path: PathBuf,
    taken: std::sync::atomic::AtomicBool,
}

impl Ticket {
    pub(crate) fn join(lock_path: &Path) -> Ticket {
        Ticket {
            id: registry().join(lock_path),
            lock_path: lock_path.to_path_buf(),
            taken: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn taken(&self) {
        self.taken.store(true, Ordering::SeqCst);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.taken.load(Ordering::SeqCst) {
            registry().leave(&self.lock_path, self.id);
        }
    }
}
