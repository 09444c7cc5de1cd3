//! The `child-locker` role: a worker of the lock-set checker ([`crate::lockcheck`]).
//!
//! A worker loops until the parent creates `<dir>/stop`: take the lock on `<dir>/counter`, read
//! the counter (decimal text), write the counter plus one, append one line describing the
//! critical section to its own history file `<dir>/hist-<pid>.log`, release. A section counts
//! as completed only once its history line is written, after the counter write:
//!
//! ```text
//! <start_ns> <end_ns> <generation> <value read>
//! ```
//!
//! where the times are wall-clock (`SystemTime`) nanoseconds since the Unix epoch, taken right
//! after the acquire returned and right after the write returned; they are comparable across
//! processes but may jump, so the checker uses them for a best-effort report only. A guarded
//! write refused with [`Error::Fenced`] (the worker's own watchdog revoked its guard while it
//! was stopped) aborts the section without writing the counter; the worker logs
//! `abort <generation> <value read> <fence failure> <held for, in µs>` and goes on. A guard that
//! fails its fence check right after the acquire returned logs
//! `unowned <generation> <fence failure> <held for, in µs> <pid> <generation>`, the last two
//! naming the lock file's owner at that moment (`-` for none), and is dropped. A section whose
//! write succeeded although its guard was revoked by the time the write returned (the write
//! passed its fence check, then raced the revocation) is followed by `raced <generation>
//! <value read>`.
//!
//! Two variants:
//!
//! - [`LockVariant::Correct`]: [`Locker::acquire`] with the shortened settings it is given, and
//!   the counter written through the guard ([`LockGuard::write_with`], atomic-only).
//! - [`LockVariant::Steal`]: a deliberately broken lock the checker must catch. A lock file
//!   older than the steal age (by its mtime) is deleted and taken without any OS-lock check,
//!   otherwise it is created with `O_EXCL`; the counter is written without any fence, and the
//!   generation comes from a plain `counter.mgen` file.
//!
//! [`LockGuard::write_with`]: sessionkit_write_lock::LockGuard::write_with
//! [`Error::Fenced`]: sessionkit_write_lock::Error::Fenced

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sessionkit_atomic_fs::{AtomicWriter, Durability};
use sessionkit_write_lock::{LockConfig, Locker, Payload, parse_record};

use crate::flags::Flags;
use crate::rng::{SplitMix64, mix64};

/// The shared counter every worker increments, inside the run's directory.
pub const COUNTER_NAME: &str = "counter";
/// The file whose existence tells the workers to finish their section and exit.
pub const STOP_NAME: &str = "stop";
/// The generation file of the steal mutant (the correct lock keeps `counter.lock.gen`).
pub const MUTANT_GENERATION_NAME: &str = "counter.mgen";
/// The prefix of every worker's history file, `hist-<pid>.log`.
pub const HISTORY_PREFIX: &str = "hist-";

/// A worker that is never stopped exits on its own after this long (it also exits when its
/// parent is gone).
const RUNAWAY_LIMIT: Duration = Duration::from_secs(2 * 60 * 60);

/// The counter inside `dir`.
pub fn counter_path(dir: &Path) -> PathBuf {
    dir.join(COUNTER_NAME)
}

/// The lock file of the counter: `<dir>/counter.lock` (for both variants).
pub fn counter_lock_path(dir: &Path) -> PathBuf {
    dir.join(format!("{COUNTER_NAME}.lock"))
}

/// The history file of the worker with process id `pid`.
pub fn history_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("{HISTORY_PREFIX}{pid}.log"))
}

/// Which lock a worker uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockVariant {
    /// `sessionkit-write-lock` as shipped, writes through the guard.
    Correct,
    /// The naive mutant: steal a lock file older than the steal age, write unfenced.
    Steal,
}

impl LockVariant {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            LockVariant::Correct => "correct",
            LockVariant::Steal => "steal",
        }
    }

    /// The variant called `name`.
    pub fn parse(name: &str) -> Option<LockVariant> {
        [LockVariant::Correct, LockVariant::Steal]
            .into_iter()
            .find(|v| v.name() == name)
    }
}

impl fmt::Display for LockVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The lock settings of a run, shortened so that the SIGSTOP nemesis outlasts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockTiming {
    /// How long an acquire waits; long enough that waiters outwait any pause.
    pub acquire_timeout: Duration,
    /// The max hold: the holder's own watchdog revokes a guard held longer.
    pub max_hold: Duration,
    /// The stale age (report-only for records of this crate).
    pub stale_after: Duration,
    /// How long a lock file without a valid record is kept.
    pub malformed_grace: Duration,
    /// The steal mutant takes a lock file older than this.
    pub steal_after: Duration,
}

impl Default for LockTiming {
    /// 5 s acquire timeout, 150 ms max hold, 200 ms stale age, 100 ms malformed grace, 50 ms
    /// steal age. The short grace lets a contender remove the still-empty lock file of an
    /// acquirer stopped between creating it and taking its OS lock, so that path is exercised
    /// too.
    fn default() -> Self {
        LockTiming {
            acquire_timeout: Duration::from_secs(5),
            max_hold: Duration::from_millis(150),
            stale_after: Duration::from_millis(200),
            malformed_grace: Duration::from_millis(100),
            steal_after: Duration::from_millis(50),
        }
    }
}

/// Everything a worker needs; [`LockerArgs::to_args`] and [`LockerArgs::parse`] round-trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockerArgs {
    /// The run's directory (counter, stop file, history files).
    pub dir: PathBuf,
    /// The lock the worker uses.
    pub variant: LockVariant,
    /// The seed of the worker's pauses between sections.
    pub seed: u64,
    /// The lock settings.
    pub timing: LockTiming,
    /// The longest pause between two sections, outside the lock, so the lock changes hands.
    pub think_max: Duration,
}

fn millis(d: Duration) -> OsString {
    d.as_millis().to_string().into()
}

impl LockerArgs {
    /// The command line after the `child-locker` role word.
    pub fn to_args(&self) -> Vec<OsString> {
        let t = &self.timing;
        vec![
            "--dir".into(),
            self.dir.clone().into_os_string(),
            "--mutant".into(),
            self.variant.name().into(),
            "--seed".into(),
            self.seed.to_string().into(),
            "--acquire-timeout-ms".into(),
            millis(t.acquire_timeout),
            "--max-hold-ms".into(),
            millis(t.max_hold),
            "--stale-ms".into(),
            millis(t.stale_after),
            "--malformed-grace-ms".into(),
            millis(t.malformed_grace),
            "--steal-ms".into(),
            millis(t.steal_after),
            "--think-us".into(),
            self.think_max.as_micros().to_string().into(),
        ]
    }

    /// Parses the command line after the role word.
    ///
    /// # Errors
    ///
    /// A message naming the bad or missing option.
    pub fn parse(args: &[OsString]) -> Result<LockerArgs, String> {
        let mut dir = None;
        let mut variant = LockVariant::Correct;
        let mut seed = 0;
        let mut timing = LockTiming::default();
        let mut think_max = Duration::ZERO;
        let mut flags = Flags::new(args);
        while let Some(flag) = flags.next_flag() {
            match flag.as_str() {
                "--dir" => dir = Some(flags.path()?),
                "--mutant" => variant = flags.choice("lock mutant", LockVariant::parse)?,
                "--seed" => seed = flags.u64()?,
                "--acquire-timeout-ms" => timing.acquire_timeout = flags.millis()?,
                "--max-hold-ms" => timing.max_hold = flags.millis()?,
                "--stale-ms" => timing.stale_after = flags.millis()?,
                "--malformed-grace-ms" => timing.malformed_grace = flags.millis()?,
                "--steal-ms" => timing.steal_after = flags.millis()?,
                "--think-us" => think_max = Duration::from_micros(flags.u64()?),
                other => return Err(format!("unknown child-locker option {other:?}")),
            }
        }
        Ok(LockerArgs {
            dir: dir.ok_or("child-locker needs --dir")?,
            variant,
            seed,
            timing,
            think_max,
        })
    }
}

/// Wall-clock nanoseconds since the Unix epoch (0 if the clock is before it).
pub fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Reads the counter: decimal digits and a newline.
fn read_counter(path: &Path) -> Result<u64, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read the counter {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| format!("the counter holds {text:?}, not a number"))
}

/// The worker's history file, opened for appending; each line is one `write(2)`.
struct History {
    file: File,
}

impl History {
    fn open(dir: &Path) -> Result<History, String> {
        let path = history_path(dir, std::process::id());
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(History { file })
    }

    fn line(&mut self, line: &str) -> Result<(), String> {
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| format!("cannot append to the history: {e}"))
    }

    fn section(&mut self, start: u64, end: u64, generation: u64, value: u64) -> Result<(), String> {
        self.line(&format!("{start} {end} {generation} {value}\n"))
    }
}

/// Runs a worker until `<dir>/stop` exists.
///
/// # Errors
///
/// Returns only on failure: an acquire timeout, an unexpected lock or I/O error, a corrupt
/// counter, a lost parent, or two hours without being stopped.
pub fn run(args: &LockerArgs) -> Result<(), String> {
    let parent = std::os::unix::process::parent_id();
    let mut history = History::open(&args.dir)?;
    let mut rng = SplitMix64::new(mix64(args.seed ^ 0x10c4));
    let started = Instant::now();
    let stop = args.dir.join(STOP_NAME);
    let counter = counter_path(&args.dir);
    let mut writer = AtomicWriter::new();
    writer.durability(Durability::AtomicOnly);
    let mut worker = match args.variant {
        LockVariant::Correct => {
            let t = &args.timing;
            let config = LockConfig::builder()
                .acquire_timeout(t.acquire_timeout)
                .max_hold(t.max_hold)
                .stale_after(t.stale_after)
                .malformed_grace(t.malformed_grace)
                .label("lockcheck")
                .build()
                .map_err(|e| format!("bad lock settings: {e}"))?;
            Worker::Correct(Locker::with_config(config))
        }
        LockVariant::Steal => Worker::Steal {
            lock_path: counter_lock_path(&args.dir),
            steal_after: args.timing.steal_after,
        },
    };
    let think_us = u64::try_from(args.think_max.as_micros()).unwrap_or(u64::MAX);
    loop {
        if stop.exists() {
            return Ok(());
        }
        if std::os::unix::process::parent_id() != parent {
            return Err("the parent is gone; stopping".into());
        }
        if started.elapsed() > RUNAWAY_LIMIT {
            return Err(format!("ran {RUNAWAY_LIMIT:?} without being stopped"));
        }
        worker.section(&counter, &writer, &mut history)?;
        if think_us > 0 {
            std::thread::sleep(Duration::from_micros(rng.below(think_us + 1)));
        }
    }
}

/// The lock a worker uses.
enum Worker {
    Correct(Locker),
    Steal {
        lock_path: PathBuf,
        steal_after: Duration,
    },
}

impl Worker {
    /// One critical section: lock, read, write +1, log, unlock.
    fn section(
        &mut self,
        counter: &Path,
        writer: &AtomicWriter,
        history: &mut History,
    ) -> Result<(), String> {
        match self {
            Worker::Correct(locker) => {
                let guard = locker
                    .acquire(counter)
                    .map_err(|e| format!("acquire failed: {e}"))?;
                let start = wall_ns();
                let generation = guard.generation();
                // A guard fresh from acquire must own the lock file at the path. (After a
                // SIGSTOP right here its watchdog may already have revoked it; the parent tells
                // the two apart by how long it was held.)
                if let Err(e) = guard.check_fence() {
                    let reason = e
                        .fence_failure()
                        .map_or_else(|| "unknown".to_owned(), |f| format!("{f:?}"));
                    let held_us = guard.held_for().as_micros();
                    let (pid, other) = current_owner(&counter_lock_path(counter_dir(counter)));
                    return history.line(&format!(
                        "unowned {generation} {reason} {held_us} {pid} {other}\n"
                    ));
                }
                let value = read_counter(counter)?;
                let next = format!("{}\n", value + 1);
                match guard.write_with(writer, next.as_bytes()) {
                    Ok(()) => {}
                    Err(e) if e.is_fenced() => {
                        // Revoked or superseded (while stopped): nothing was written.
                        let reason = e
                            .fence_failure()
                            .map_or_else(|| "unknown".to_owned(), |f| format!("{f:?}"));
                        let held_us = guard.held_for().as_micros();
                        return history
                            .line(&format!("abort {generation} {value} {reason} {held_us}\n"));
                    }
                    Err(e) => return Err(format!("guarded write failed: {e}")),
                }
                let end = wall_ns();
                // Revoked by now, yet the write went through: it passed its fence check before
                // the revocation, and its rename raced it.
                let raced = guard.revocation().is_revoked();
                history.section(start, end, generation, value)?;
                if raced {
                    history.line(&format!("raced {generation} {value}\n"))?;
                }
                guard.release().map_err(|e| format!("release failed: {e}"))
            }
            Worker::Steal {
                lock_path,
                steal_after,
            } => {
                steal_acquire(lock_path, *steal_after)
                    .map_err(|e| format!("mutant acquire failed: {e}"))?;
                let start = wall_ns();
                let value = read_counter(counter)?;
                let generation_path = counter.with_file_name(MUTANT_GENERATION_NAME);
                let generation = match fs::read_to_string(&generation_path) {
                    Ok(text) => text.trim().parse::<u64>().unwrap_or(0) + 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => 1,
                    Err(e) => return Err(format!("cannot read the mutant generation: {e}")),
                };
                writer
                    .write(&generation_path, format!("{generation}\n").as_bytes())
                    .map_err(|e| format!("cannot write the mutant generation: {e}"))?;
                writer
                    .write(counter, format!("{}\n", value + 1).as_bytes())
                    .map_err(|e| format!("unguarded write failed: {e}"))?;
                let end = wall_ns();
                history.section(start, end, generation, value)?;
                // Naive release: whatever lock file is there goes, even a thief's.
                match fs::remove_file(lock_path.as_path()) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(format!("mutant release failed: {e}")),
                }
            }
        }
    }
}

/// The directory holding `counter`.
fn counter_dir(counter: &Path) -> &Path {
    counter.parent().unwrap_or(Path::new("."))
}

/// The pid and generation the lock file names now (`-` for none), for diagnostics.
fn current_owner(lock_path: &Path) -> (String, String) {
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    match fs::read(lock_path).map(|bytes| parse_record(&bytes)) {
        Ok(Payload::Record(r)) => (
            show(r.pid.map(|p| p.to_string())),
            show(r.generation.map(|g| g.to_string())),
        ),
        _ => (show(None), show(None)),
    }
}

/// The mutant's acquire: `O_EXCL` create, or delete a lock file older than `steal_after` (by
/// its mtime) and try again. No OS lock is ever checked.
fn steal_acquire(lock_path: &Path, steal_after: Duration) -> io::Result<()> {
    loop {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(lock_path)
        {
            Ok(mut file) => {
                file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let age = match fs::metadata(lock_path) {
                    Ok(meta) => meta
                        .modified()
                        .ok()
                        .and_then(|m| m.elapsed().ok())
                        .unwrap_or(Duration::ZERO),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if age > steal_after {
                    match fs::remove_file(lock_path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
}
