//! The `sweep` suite: a startup sweep of many lock sidecars, ours against a model of the
//! original, with a 1 ms ticker on the same tokio runtime.
//!
//! OpenClaw's startup sweep once stalled a gateway's event loop for 87 s: it looked up the owner
//! of every lock, not of every pid, on the event loop, and never yielded. This suite plants the
//! same shape (many locks, few owners, most of them dead) and sweeps it four ways, side by side
//! in one run: ours (`Sweeper::sweep_async`) and a model of the original ([`naive_sweep`]), each
//! with an owner lookup that costs 1 ms (standing in for the slow lookups on Windows) and with
//! the real `/proc` lookup. Every sweep runs on a fresh runtime beside the ticker, and the
//! directories are planted afresh before each one (not timed), since a sweep removes what it
//! finds stale.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use sessionkit_lock_sweeper::{Liveness, OwnerLookup, ProcLookup, ProcessProbe, Sweeper};
use sessionkit_write_lock::{format_created_at, parse_record};
use tokio::runtime::Runtime;

use crate::args::Options;
use crate::common::{context, directory_line, machine_line, shown_command};
use crate::machine;
use crate::stall;
use crate::stats::{median, millis, percentile};
use crate::table::{self, Align};

/// The ticker's worst lateness during our sweeps must stay under this.
const GOAL_MAX_LATENESS: Duration = Duration::from_millis(5);
/// With the 1 ms lookup, our sweep must be at least this many times faster than the naive one.
const GOAL_SPEEDUP: f64 = 50.0;

/// The locks of a full run, in every row.
const FULL_LOCKS: usize = 10_000;
/// The directories the locks are spread over.
const DIRS: usize = 6;
/// Owners that are alive during the sweeps (`sleep` children).
const LIVE_OWNERS: usize = 3;
/// Owners that are dead (children killed and reaped before the first sweep).
const DEAD_OWNERS: usize = 7;
/// What the slow lookup costs per call.
const SLOW_LOOKUP: Duration = Duration::from_millis(1);
/// How old a dead owner's lock is: past write-lock's stale age (30 min), as a lock left by a
/// crash before a restart would be.
const DEAD_LOCK_AGE: Duration = Duration::from_secs(3600);
/// Locks planted for each unmeasured warm-up sweep.
const WARMUP_LOCKS: usize = 60;
/// The worker threads of every runtime in the suite: one, as the original's single event loop
/// (see [`runtime`]).
const WORKERS: usize = 1;
/// Files per `spawn_blocking` call of the removal-alone row: our sweep's default batch size.
const UNLINK_BATCH: usize = 64;
/// Batches in flight at once in the removal-alone row: our sweep's default concurrency.
const UNLINK_IN_FLIGHT: usize = 8;

/// How the run is sized.
#[derive(Clone, Copy, Debug)]
struct Plan {
    mode: &'static str,
    /// Lock sidecars planted before every sweep, in every row.
    locks: usize,
    /// Every row sweeps once per round; the first row rotates from round to round.
    rounds: usize,
    /// How long the ticker runs alone, in all, for its baseline (split over the rounds).
    idle: Duration,
}

impl Plan {
    fn new(options: &Options) -> Plan {
        let mut plan = if options.quick {
            Plan {
                mode: "quick",
                locks: 2000,
                rounds: 1,
                idle: Duration::from_millis(500),
            }
        } else {
            Plan {
                mode: "full",
                locks: FULL_LOCKS,
                rounds: 3,
                idle: Duration::from_secs(1),
            }
        };
        if let Some(n) = options.iters {
            plan.rounds = n;
        }
        plan
    }
}

/// How many of `locks` planted locks belong to live owners: the owners take turns, lock by
/// lock, live ones first.
fn live_locks(locks: usize) -> usize {
    let owners = LIVE_OWNERS + DEAD_OWNERS;
    locks / owners * LIVE_OWNERS + (locks % owners).min(LIVE_OWNERS)
}

/// Who sweeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sweep {
    /// `Sweeper::sweep_async` with the default settings and the row's lookup.
    Ours,
    /// [`naive_sweep`], one task that never awaits.
    Naive,
}

/// How owners are looked up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lookup {
    /// [`ProcLookup`] after a 1 ms sleep.
    Slow,
    /// [`ProcLookup`] as it is.
    Proc,
}

/// One row of the table: a sweep with a lookup, the removals alone, or the ticker alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Row {
    Idle,
    /// No sweep: only the dead owners' locks unlinked, as fast as our sweep could ([`unlink`]).
    Unlink,
    Sweep(Sweep, Lookup),
}

impl Row {
    const ALL: [Row; 6] = [
        Row::Sweep(Sweep::Ours, Lookup::Slow),
        Row::Sweep(Sweep::Naive, Lookup::Slow),
        Row::Sweep(Sweep::Ours, Lookup::Proc),
        Row::Sweep(Sweep::Naive, Lookup::Proc),
        Row::Unlink,
        Row::Idle,
    ];

    fn sweep_label(self) -> &'static str {
        match self {
            Row::Idle => "none (the ticker alone, baseline)",
            Row::Unlink => "none: only unlink the dead owners' locks (baseline)",
            Row::Sweep(Sweep::Ours, _) => "ours: `sweep_async`",
            Row::Sweep(Sweep::Naive, _) => "naive: a lookup per lock, no yield, on the worker",
        }
    }

    fn lookup_label(self) -> &'static str {
        match self {
            Row::Idle | Row::Unlink => "—",
            Row::Sweep(_, Lookup::Slow) => "1 ms + `/proc`",
            Row::Sweep(_, Lookup::Proc) => "`/proc`",
        }
    }
}

/// What one sweep (or one stretch of the ticker alone) saw.
#[derive(Clone, Debug, Default)]
struct Outcome {
    wall: Duration,
    lookups: u64,
    removed: u64,
    kept: u64,
    lateness: Vec<Duration>,
}

impl Outcome {
    fn max_lateness(&self) -> Duration {
        self.lateness.iter().copied().max().unwrap_or_default()
    }
}

/// All the sweeps of one row.
#[derive(Clone, Debug)]
struct RowResult {
    row: Row,
    outcomes: Vec<Outcome>,
}

impl RowResult {
    /// The median wall time over the rounds.
    fn wall(&self) -> Duration {
        let walls: Vec<Duration> = self.outcomes.iter().map(|o| o.wall).collect();
        median(&walls)
    }

    /// Every tick of every round.
    fn lateness(&self) -> Vec<Duration> {
        self.outcomes
            .iter()
            .flat_map(|o| o.lateness.iter().copied())
            .collect()
    }

    fn max_lateness(&self) -> Duration {
        self.outcomes
            .iter()
            .map(Outcome::max_lateness)
            .max()
            .unwrap_or_default()
    }

    /// The lookups of the row's sweeps, as one number if they all made the same.
    fn lookups(&self) -> String {
        let min = self.outcomes.iter().map(|o| o.lookups).min().unwrap_or(0);
        let max = self.outcomes.iter().map(|o| o.lookups).max().unwrap_or(0);
        if min == max {
            min.to_string()
        } else {
            format!("{min}–{max}")
        }
    }

    /// True if every sweep of the row made exactly `n` lookups.
    fn all_lookups_are(&self, n: u64) -> bool {
        !self.outcomes.is_empty() && self.outcomes.iter().all(|o| o.lookups == n)
    }
}

/// Runs the suite and prints its report to stdout.
pub(crate) fn run_suite(options: &Options, args: &[OsString]) -> io::Result<()> {
    if !cfg!(target_os = "linux") {
        // `ProcLookup` answers "unsupported" elsewhere, so no owner could be judged dead.
        println!("SKIP: sweep benchmark: owner lookups need Linux's /proc");
        return Ok(());
    }
    let plan = Plan::new(options);
    let base = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new()
        .prefix("sessionkit-bench-sweep-")
        .tempdir_in(&base)
        .map_err(|e| context(e, format!("create a temp dir in {}", base.display())))?;
    print_header(&plan, options, args, &base, root.path());

    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:.0} s] {what}", started.elapsed().as_secs_f64());
    progress("starting the owners");
    let owners = Owners::start()?;
    let mut runs = 0;
    // Each sweep gets fresh directories, so that none inherits another's deleted entries.
    let mut sweep_once = |locks: usize, row: Row| -> io::Result<Outcome> {
        runs += 1;
        let run = root.path().join(format!("run{runs}"));
        let planted = plant(locks, &owners, &run)?;
        let outcome = match row {
            Row::Sweep(sweep, lookup) => measure(sweep, lookup, &planted.dirs)?,
            Row::Unlink => unlink(&planted)?,
            Row::Idle => return Err(io::Error::other("the ticker alone plants no locks")),
        };
        check(locks, row, &outcome, &planted.dirs)?;
        fs::remove_dir_all(&run).map_err(|e| context(e, format!("remove {}", run.display())))?;
        Ok(outcome)
    };

    progress("warm-up");
    // The first sweep in a process pays for first use (code paged in, the blocking pool's
    // threads, lazy statics); a service pays it once too, but not once per round.
    for row in [
        Row::Sweep(Sweep::Ours, Lookup::Proc),
        Row::Sweep(Sweep::Naive, Lookup::Proc),
        Row::Unlink,
    ] {
        sweep_once(WARMUP_LOCKS, row)?;
    }

    let mut results: Vec<RowResult> = Row::ALL
        .iter()
        .map(|&row| RowResult {
            row,
            outcomes: Vec::new(),
        })
        .collect();
    for round in 0..plan.rounds {
        progress(&format!("round {}/{}", round + 1, plan.rounds));
        // Rotating the first row keeps any one from always following another.
        for k in 0..results.len() {
            let n = results.len();
            let result = &mut results[(round + k) % n];
            let outcome = match result.row {
                Row::Idle => idle(plan.idle / plan.rounds as u32)?,
                row => {
                    let outcome = sweep_once(plan.locks, row)?;
                    progress(&format!(
                        "{}, {}: {} ms, {} lookups, ticker max lateness {:.2} ms",
                        row.sweep_label(),
                        row.lookup_label(),
                        fmt_wall(outcome.wall),
                        outcome.lookups,
                        millis(outcome.max_lateness())
                    ));
                    outcome
                }
            };
            result.outcomes.push(outcome);
        }
    }
    drop(owners);
    print_report(&plan, &results);
    progress("done");
    root.close()
        .map_err(|e| context(e, "remove the benchmark's temp dir".to_owned()))
}

fn print_header(plan: &Plan, options: &Options, args: &[OsString], base: &Path, root: &Path) {
    let shown = shown_command(args);
    let live = live_locks(plan.locks);
    println!("**sessionkit-bench sweep**\n");
    println!("- command: `sessionkit-bench {shown}` (what `cargo xtask bench {shown}` runs)");
    if plan.locks == FULL_LOCKS {
        println!("- mode: {}", plan.mode);
    } else {
        println!(
            "- mode: {}, with {} locks in every row instead of {FULL_LOCKS}, so that the naive \
             sweep with the 1 ms lookup takes seconds, not minutes; judge the goals on a full run",
            plan.mode, plan.locks
        );
    }
    println!(
        "- machine: {}, 1-minute load average {} at the start",
        machine_line(),
        machine::load_average()
    );
    println!("- directory: {}", directory_line(options, base, root));
    println!(
        "- locks: {} OpenClaw-format sidecars (`pid`, `createdAt`, `starttime`, no OS-lock \
         promise, so only the owner lookup can tell a dead owner) in {DIRS} directories, every \
         directory holding locks of every owner: {live} of {LIVE_OWNERS} live `sleep` \
         processes, created now; {} of {DEAD_OWNERS} dead ones (killed and reaped before the \
         first sweep), created {} min ago. Planted afresh in new directories before every \
         sweep and flushed to disk (`sync -f`), as locks left by earlier processes would be; \
         not timed",
        plan.locks,
        plan.locks - live,
        DEAD_LOCK_AGE.as_secs() / 60
    );
    println!(
        "- runtime: a tokio multi-thread runtime with {WORKERS} worker thread and the blocking \
         pool, fresh for every sweep, the shape of Node's event loop (one thread runs the \
         tasks, a pool does blocking file work); the 1 ms ticker and the sweep are tasks on it"
    );
    println!(
        "- ours: `Sweeper::sweep_async` with the default settings (8 directories at once, 64 \
         files per `spawn_blocking` batch, at most 8 batches in flight, a yield after starting \
         each, one lookup per pid per sweep), spawned as a task"
    );
    println!(
        "- naive: a model of the original, spawned as one task that never awaits: directory \
         after directory, read and parse every `*.lock`, look up its owner (every lock, no \
         memo), remove it if the owner is dead or its pid recycled"
    );
    println!(
        "- only unlink: no sweep, a baseline for the disk: the dead owners' locks, known from \
         the planting, unlinked {UNLINK_BATCH} per `spawn_blocking` batch with at most \
         {UNLINK_IN_FLIGHT} batches in flight, as our sweep removes them; nothing is listed, \
         read or judged"
    );
    println!(
        "- owner lookups: `ProcLookup` (`/proc/<pid>/stat`) behind a counter; the 1 ms one \
         sleeps {} ms (`thread::sleep`) before each call",
        SLOW_LOOKUP.as_millis()
    );
    println!(
        "- rounds: {} (every row sweeps once per round, the first row rotating), after one \
         unmeasured warm-up sweep of {WARMUP_LOCKS} locks each by ours and the naive sweep; \
         the ticker alone runs {:.1} s in all",
        plan.rounds,
        plan.idle.as_secs_f64()
    );
    println!();
}

fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "no" }
}

// ---------------------------------------------------------------------------------------------
// The owners and the planted locks.

/// One owner of planted locks: its pid and its start time (`/proc/<pid>/stat` field 22).
#[derive(Clone, Copy, Debug)]
struct Owner {
    pid: u32,
    starttime: u64,
}

/// The owners of the planted locks: live `sleep` children, and the pids of killed ones.
///
/// Linux may give a dead owner's pid to a new process during the run; its locks then carry
/// the old start time, so both sweeps still judge them stale (recycled pid) and the lookups
/// are the same.
#[derive(Debug)]
struct Owners {
    live: Vec<(Child, Owner)>,
    dead: Vec<Owner>,
}

impl Owners {
    fn start() -> io::Result<Owners> {
        let mut owners = Owners {
            live: Vec::new(),
            dead: Vec::new(),
        };
        for _ in 0..LIVE_OWNERS {
            owners.live.push(spawn_owner()?);
        }
        for _ in 0..DEAD_OWNERS {
            let (mut child, owner) = spawn_owner()?;
            child.kill()?;
            child.wait()?;
            owners.dead.push(owner);
        }
        Ok(owners)
    }

    /// The owner of lock `i` and whether it is alive: the owners take turns, live ones first.
    fn of(&self, i: usize) -> (Owner, bool) {
        let k = i % (LIVE_OWNERS + DEAD_OWNERS);
        match self.live.get(k) {
            Some((_, owner)) => (*owner, true),
            None => (self.dead[k - LIVE_OWNERS], false),
        }
    }
}

impl Drop for Owners {
    fn drop(&mut self) {
        for (child, _) in &mut self.live {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts a `sleep` child and reads its start time.
fn spawn_owner() -> io::Result<(Child, Owner)> {
    let mut child = Command::new("sleep")
        .arg("3600")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| context(e, "start a `sleep` child as a lock owner".to_owned()))?;
    let pid = child.id();
    match ProcLookup.probe(pid).map(|p| p.start_time) {
        Ok(Some(starttime)) => Ok((child, Owner { pid, starttime })),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            Err(io::Error::other(format!(
                "cannot read the start time of child {pid}: {other:?}"
            )))
        }
    }
}

/// The locks planted for one sweep.
struct Planted {
    /// The directories, `DIRS` of them.
    dirs: Vec<PathBuf>,
    /// The dead owners' locks, which a sweep must remove.
    dead: Vec<PathBuf>,
}

/// Plants `locks` locks in `DIRS` new directories inside `run` and flushes them to disk.
fn plant(locks: usize, owners: &Owners, run: &Path) -> io::Result<Planted> {
    let dirs: Vec<PathBuf> = (0..DIRS).map(|d| run.join(format!("d{d}"))).collect();
    let mut dead = Vec::new();
    for dir in &dirs {
        fs::create_dir_all(dir).map_err(|e| context(e, format!("create {}", dir.display())))?;
    }
    let now = SystemTime::now();
    let fresh = format_created_at(now);
    let old = format_created_at(now - DEAD_LOCK_AGE);
    for i in 0..locks {
        let (owner, live) = owners.of(i);
        let created = if live { &fresh } else { &old };
        let path = dirs[i % DIRS].join(format!("session-{i:05}.jsonl.lock"));
        // OpenClaw's payload, pretty-printed as its `JSON.stringify(_, null, 2)` writes it.
        let record = format!(
            "{{\n  \"pid\": {},\n  \"createdAt\": \"{created}\",\n  \"starttime\": {}\n}}\n",
            owner.pid, owner.starttime
        );
        fs::write(&path, record).map_err(|e| context(e, format!("write {}", path.display())))?;
        if !live {
            dead.push(path);
        }
    }
    // Removing a file whose blocks are still unallocated (ext4's delayed allocation) is several
    // times cheaper than removing one on disk; locks left by earlier processes are on disk.
    let status = Command::new("sync")
        .arg("-f")
        .arg(run)
        .status()
        .map_err(|e| context(e, "run `sync -f` to flush the planted locks".to_owned()))?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "`sync -f {}` failed: {status}",
            run.display()
        )));
    }
    Ok(Planted { dirs, dead })
}

// ---------------------------------------------------------------------------------------------
// The lookups and the sweeps.

/// `ProcLookup` behind a counter of every call, with a fixed blocking delay before each call
/// for the slow variant.
#[derive(Debug)]
struct CountingLookup {
    delay: Option<Duration>,
    calls: AtomicU64,
}

impl CountingLookup {
    fn new(lookup: Lookup) -> CountingLookup {
        CountingLookup {
            delay: (lookup == Lookup::Slow).then_some(SLOW_LOOKUP),
            calls: AtomicU64::new(0),
        }
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn pay(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(delay) = self.delay {
            // Blocking, like the lookup it stands for (on Windows, a PowerShell child process).
            thread::sleep(delay);
        }
    }
}

impl OwnerLookup for CountingLookup {
    fn probe(&self, pid: u32) -> io::Result<ProcessProbe> {
        self.pay();
        ProcLookup.probe(pid)
    }

    fn cmdline(&self, pid: u32) -> io::Result<Option<Vec<String>>> {
        self.pay();
        ProcLookup.cmdline(pid)
    }
}

/// What the naive sweep did.
#[derive(Clone, Copy, Debug, Default)]
struct NaiveReport {
    removed: u64,
    kept: u64,
}

/// A model of the original sweep (OpenClaw's `cleanStaleLockFiles` in the version that stalled
/// a gateway's event loop for 87 s), kept as plain as that one:
///
/// - sequential: directory after directory, lock after lock, sorted by name as it did;
/// - no memo: the owner of every lock is looked up, however many locks share its pid. The
///   original's slow per-lock lookup was of the owner's command line; here every lookup costs
///   the same, so one `probe` per lock stands for it;
/// - no yield: the caller runs it inside a task that never awaits, so it holds its worker
///   thread for the whole sweep, as the original held the event loop;
/// - removal as the original's: `rm` as soon as the record's owner is dead (or its pid was
///   recycled), with no OS lock and no second look at the file.
///
/// On the planted locks it decides as write-lock's judge does (a dead or recycled pid is stale;
/// a live or unknown owner keeps its lock), so both sweeps remove the same files. A file
/// without a pid is kept; none is planted.
fn naive_sweep(dirs: &[PathBuf], lookup: &dyn OwnerLookup) -> io::Result<NaiveReport> {
    let mut report = NaiveReport::default();
    for dir in dirs {
        let mut paths: Vec<PathBuf> = fs::read_dir(dir)?
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_name().as_encoded_bytes().ends_with(b".lock"))
            .map(|entry| entry.path())
            .collect();
        paths.sort();
        for path in paths {
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let payload = parse_record(&bytes);
            let owner = payload.record().and_then(|r| Some((r.pid?, r.starttime)));
            let Some((pid, starttime)) = owner else {
                report.kept += 1;
                continue;
            };
            // What the incident was about: a lookup for every lock, never remembered.
            let gone = match lookup.probe(pid) {
                Ok(probe) => match probe.liveness {
                    Liveness::Alive => starttime
                        .zip(probe.start_time)
                        .is_some_and(|(recorded, now)| recorded != now),
                    _ => true,
                },
                // An owner that cannot be looked up keeps its lock.
                Err(_) => false,
            };
            if !gone {
                report.kept += 1;
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => report.removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(report)
}

/// A runtime for one sweep: multi-threaded with [`WORKERS`] worker and the blocking pool.
///
/// One worker is the fair model of the original: Node runs every task of a gateway on one
/// thread and hands file work to a pool, which is what this runtime does. With more workers,
/// a task blocking one of them leaves the ticker to another, so the ticker no longer shows the
/// stall that every task queued behind the blocked worker would suffer.
fn runtime() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
}

/// Sweeps `dirs` once, `sweep` with `lookup`, beside the ticker on a fresh runtime.
fn measure(sweep: Sweep, lookup: Lookup, dirs: &[PathBuf]) -> io::Result<Outcome> {
    let counter = Arc::new(CountingLookup::new(lookup));
    let shared: Arc<dyn OwnerLookup> = counter.clone();
    // Building the sweeper is configuration, done before the service runs; the sweep is timed.
    let sweeper = Sweeper::builder()
        .lookup(shared.clone())
        .build()
        .map_err(io::Error::other)?;
    let dirs = dirs.to_vec();
    let runtime = runtime()?;
    let (swept, lateness) = runtime.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn(stall::tick_until(done.clone()));
        // The ticker is running before the sweep starts.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let task = match sweep {
            Sweep::Ours => tokio::spawn(async move {
                let start = Instant::now();
                let report = sweeper.sweep_async(&dirs).await.map_err(io::Error::other)?;
                let wall = start.elapsed();
                if report.totals.errors > 0 {
                    return Err(io::Error::other(format!(
                        "our sweep reported {} errors",
                        report.totals.errors
                    )));
                }
                let totals = (report.totals.removed, report.totals.kept);
                Ok((wall, totals, Some(report.lookups)))
            }),
            Sweep::Naive => tokio::spawn(async move {
                // Deliberately blocking: the whole sweep runs here, on this worker.
                let start = Instant::now();
                let report = naive_sweep(&dirs, shared.as_ref())?;
                Ok((start.elapsed(), (report.removed, report.kept), None))
            }),
        };
        let swept = task.await.map_err(io::Error::other).and_then(|r| r);
        done.store(true, Ordering::Relaxed);
        let lateness = ticker.await.map_err(io::Error::other)?;
        Ok::<_, io::Error>((swept, lateness))
    })?;
    let (wall, (removed, kept), reported) = swept?;
    let lookups = counter.calls();
    if let Some(reported) = reported
        && reported != lookups
    {
        return Err(io::Error::other(format!(
            "our sweep reported {reported} lookups, the counter saw {lookups}"
        )));
    }
    Ok(Outcome {
        wall,
        lookups,
        removed,
        kept,
        lateness,
    })
}

/// Unlinks the dead owners' planted locks beside the ticker on a fresh runtime, in batches on
/// blocking threads as our sweep does, but with nothing listed, read or judged: what removing
/// them costs on this disk, the floor under any sweep's wall time.
fn unlink(planted: &Planted) -> io::Result<Outcome> {
    let batches: Vec<Vec<PathBuf>> = planted
        .dead
        .chunks(UNLINK_BATCH)
        .map(<[PathBuf]>::to_vec)
        .collect();
    let runtime = runtime()?;
    let (swept, lateness) = runtime.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn(stall::tick_until(done.clone()));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut in_flight = tokio::task::JoinSet::new();
            let mut removed = 0;
            for batch in batches {
                if in_flight.len() == UNLINK_IN_FLIGHT
                    && let Some(joined) = in_flight.join_next().await
                {
                    removed += joined.map_err(io::Error::other)??;
                }
                in_flight.spawn_blocking(move || {
                    for path in &batch {
                        fs::remove_file(path)
                            .map_err(|e| context(e, format!("remove {}", path.display())))?;
                    }
                    Ok::<_, io::Error>(batch.len() as u64)
                });
                tokio::task::yield_now().await;
            }
            while let Some(joined) = in_flight.join_next().await {
                removed += joined.map_err(io::Error::other)??;
            }
            Ok::<_, io::Error>((start.elapsed(), removed))
        });
        let swept = task.await.map_err(io::Error::other).and_then(|r| r);
        done.store(true, Ordering::Relaxed);
        let lateness = ticker.await.map_err(io::Error::other)?;
        Ok::<_, io::Error>((swept, lateness))
    })?;
    let (wall, removed) = swept?;
    let mut left = 0;
    for dir in &planted.dirs {
        left += fs::read_dir(dir)?.count() as u64;
    }
    Ok(Outcome {
        wall,
        lookups: 0,
        removed,
        kept: left,
        lateness,
    })
}

/// The ticker alone for `duration`, on a fresh runtime.
fn idle(duration: Duration) -> io::Result<Outcome> {
    let runtime = runtime()?;
    let lateness = runtime.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn(stall::tick_until(done.clone()));
        tokio::time::sleep(duration).await;
        done.store(true, Ordering::Relaxed);
        ticker.await.map_err(io::Error::other)
    })?;
    Ok(Outcome {
        wall: duration,
        lateness,
        ..Outcome::default()
    })
}

/// Checks that a sweep of `locks` planted locks removed exactly the dead owners' ones and kept
/// the live owners' ones, by its own count and on disk.
fn check(locks: usize, row: Row, outcome: &Outcome, dirs: &[PathBuf]) -> io::Result<()> {
    let live = live_locks(locks) as u64;
    let dead = locks as u64 - live;
    let mut left = 0;
    for dir in dirs {
        left += fs::read_dir(dir)?.count() as u64;
    }
    if outcome.removed != dead || outcome.kept != live || left != live {
        return Err(io::Error::other(format!(
            "{row:?}: removed {}, kept {} and left {left} locks; expected {dead}, {live} and \
             {live}",
            outcome.removed, outcome.kept
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The report.

fn print_report(plan: &Plan, results: &[RowResult]) {
    let headers = [
        ("sweep", Align::Left),
        ("owner lookup", Align::Left),
        ("locks", Align::Right),
        ("wall (ms)", Align::Right),
        ("lookups", Align::Right),
        ("removed", Align::Right),
        ("ticks", Align::Right),
        ("max lateness (ms)", Align::Right),
        ("p99 lateness (ms)", Align::Right),
    ];
    let dead = plan.locks - live_locks(plan.locks);
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let lateness = r.lateness();
            let (locks, wall, lookups, removed) = match r.row {
                Row::Idle => (
                    "0".to_owned(),
                    "—".to_owned(),
                    "—".to_owned(),
                    "—".to_owned(),
                ),
                Row::Unlink => (
                    plan.locks.to_string(),
                    fmt_wall(r.wall()),
                    "—".to_owned(),
                    dead.to_string(),
                ),
                Row::Sweep(..) => (
                    plan.locks.to_string(),
                    fmt_wall(r.wall()),
                    r.lookups(),
                    dead.to_string(),
                ),
            };
            vec![
                r.row.sweep_label().to_owned(),
                r.row.lookup_label().to_owned(),
                locks,
                wall,
                lookups,
                removed,
                lateness.len().to_string(),
                format!("{:.2}", millis(r.max_lateness())),
                format!("{:.2}", millis(percentile(&lateness, 99.0))),
            ]
        })
        .collect();
    println!(
        "**A startup sweep of {} locks of {} pids, with a 1 ms ticker on the same runtime \
         ({WORKERS} worker)**\n",
        plan.locks,
        LIVE_OWNERS + DEAD_OWNERS
    );
    print!("{}", table::render(&headers, &rows));
    println!();
    println!(
        "Wall is the median over the rounds, from the sweep's start to its end. The ticker runs \
         from 5 ms before the sweep to its end; lateness is over every tick of every round. The \
         1-minute load average was {} at the end (other work on the machine shows up in every \
         column).",
        machine::load_average()
    );
    println!();
    println!(
        "check: every sweep removed exactly the {dead} dead owners' locks and kept the {} live \
         ones: yes",
        live_locks(plan.locks)
    );
    let find = |row: Row| results.iter().find(|r| r.row == row);
    let (Some(ours_slow), Some(ours_proc), Some(naive_slow), Some(unlinks)) = (
        find(Row::Sweep(Sweep::Ours, Lookup::Slow)),
        find(Row::Sweep(Sweep::Ours, Lookup::Proc)),
        find(Row::Sweep(Sweep::Naive, Lookup::Slow)),
        find(Row::Unlink),
    ) else {
        return;
    };
    let pids = (LIVE_OWNERS + DEAD_OWNERS) as u64;
    println!(
        "goal: ours makes one lookup per distinct pid ({pids}): {} ({} with the 1 ms lookup, \
         {} with `/proc`)",
        yes_no(ours_slow.all_lookups_are(pids) && ours_proc.all_lookups_are(pids)),
        ours_slow.lookups(),
        ours_proc.lookups()
    );
    let (late_slow, late_proc) = (ours_slow.max_lateness(), ours_proc.max_lateness());
    println!(
        "goal: ticker max lateness under {} ms during our sweeps: {} ({:.2} ms with the 1 ms \
         lookup, {:.2} ms with `/proc`)",
        GOAL_MAX_LATENESS.as_millis(),
        yes_no(late_slow < GOAL_MAX_LATENESS && late_proc < GOAL_MAX_LATENESS),
        millis(late_slow),
        millis(late_proc)
    );
    let naive = naive_slow.wall().as_secs_f64();
    let speedup = naive / ours_slow.wall().as_secs_f64().max(1e-9);
    // The removals alone bound any sweep's speed-up on this disk; the line says how far.
    let bound = naive / unlinks.wall().as_secs_f64().max(1e-9);
    println!(
        "goal: ours at least {GOAL_SPEEDUP:.0}x faster than the naive sweep with the 1 ms \
         lookup: {} ({speedup:.0}x: {} ms against {} ms; only unlinking the {dead} dead \
         owners' locks took {} ms, {bound:.0}x)",
        yes_no(speedup >= GOAL_SPEEDUP),
        fmt_wall(ours_slow.wall()),
        fmt_wall(naive_slow.wall()),
        fmt_wall(unlinks.wall())
    );
    println!();
}

/// Milliseconds, with a decimal below 100.
fn fmt_wall(d: Duration) -> String {
    let ms = millis(d);
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_locks_follow_the_owners_turns() {
        assert_eq!(live_locks(10_000), 3000);
        assert_eq!(live_locks(2000), 600);
        assert_eq!(live_locks(12), 5);
        assert_eq!(live_locks(2), 2);
    }

    #[test]
    fn both_sweeps_remove_the_dead_owners_locks_only() {
        let root = tempfile::tempdir().unwrap();
        let owners = Owners::start().unwrap();
        let rows = [
            (Sweep::Ours, Lookup::Proc),
            (Sweep::Naive, Lookup::Proc),
            (Sweep::Ours, Lookup::Slow),
        ];
        for (k, (sweep, lookup)) in rows.into_iter().enumerate() {
            let planted = plant(40, &owners, &root.path().join(format!("run{k}"))).unwrap();
            let outcome = measure(sweep, lookup, &planted.dirs).unwrap();
            check(40, Row::Sweep(sweep, lookup), &outcome, &planted.dirs).unwrap();
            let expected = match sweep {
                Sweep::Ours => (LIVE_OWNERS + DEAD_OWNERS) as u64,
                Sweep::Naive => 40,
            };
            assert_eq!(outcome.lookups, expected, "{sweep:?}");
        }
    }

    #[test]
    fn the_unlink_baseline_removes_exactly_the_dead_owners_locks() {
        let root = tempfile::tempdir().unwrap();
        let owners = Owners::start().unwrap();
        // More dead locks than one batch holds, and not a multiple of it.
        let locks = 3 * UNLINK_BATCH + 7;
        let planted = plant(locks, &owners, root.path()).unwrap();
        let dead = (locks - live_locks(locks)) as u64;
        assert_eq!(planted.dead.len() as u64, dead);
        let outcome = unlink(&planted).unwrap();
        check(locks, Row::Unlink, &outcome, &planted.dirs).unwrap();
        assert_eq!((outcome.removed, outcome.lookups), (dead, 0));
        assert!(planted.dead.iter().all(|p| !p.exists()));
    }
}
