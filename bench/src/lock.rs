//! The `lock` suite: what the write lock costs, and how fast it changes hands.
//!
//! Four parts, each run side by side and, where there is more than one row, in rounds that
//! rotate which row goes first, so that machine noise lands on all rows alike:
//!
//! 1. uncontended acquire + release against two hand-written floors (exclusive create, flock);
//! 2. in-process hand-off latency: two threads, and two tokio tasks on two workers;
//! 3. cross-process hand-off latency against a child process, with short and long holds;
//! 4. throughput and fairness of contenders looping acquire → tiny work → release.
//!
//! The contenders of parts 3 and 4 are this binary started again as
//! `sessionkit-bench lock-child <role> ...` ([`child`]). They talk to the parent over their
//! stdin and stdout, one line per message; their stderr is the parent's.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sessionkit_write_lock::{LockGuard, Locker};
use tokio::runtime::Runtime;

use crate::args::{LOCK_CHILD, Options};
use crate::common::{context, directory_line, fmt_micros, machine_line, shown_command};
use crate::stats::{median, micros, millis, percentile};
use crate::table::{self, Align};
use crate::{machine, stall};

/// Ours (c) must stay within this factor of floor 1 (a), by the median.
const GOAL_UNCONTENDED_RATIO: f64 = 3.0;
/// The 99th percentile of an in-process hand-off must stay under this, in both rows.
const GOAL_IN_PROCESS_P99: Duration = Duration::from_millis(1);
/// The median of a cross-process hand-off must stay under this, in both rows.
const GOAL_CROSS_PROCESS_P50: Duration = Duration::from_millis(10);

/// The size of floor 1's record, about what ours writes into its lock file.
const RECORD_BYTES: usize = 300;
/// How long an in-process holder keeps the lock once its peer said it is about to wait, so
/// that the peer is parked in `acquire` when the release comes.
const IN_PROCESS_HOLD: Duration = Duration::from_millis(1);
/// The contenders of the contended rows of part 4.
const CONTENDERS: usize = 8;

/// How many samples each part takes.
#[derive(Clone, Copy, Debug)]
struct Plan {
    mode: &'static str,
    /// Measured acquire + release per implementation in part 1.
    uncontended: usize,
    /// Unmeasured ones per implementation before part 1's rounds.
    warmup: usize,
    /// Hand-offs per row in part 2.
    in_process: usize,
    /// Hand-offs per row in part 3.
    cross_process: usize,
    /// Parts 1 to 3 spread their samples over this many rounds.
    rounds: usize,
    /// How long every row of part 4 runs in each round.
    churn: Duration,
    /// Part 4's rounds.
    churn_rounds: usize,
}

impl Plan {
    fn new(options: &Options) -> Plan {
        let mut plan = if options.quick {
            Plan {
                mode: "quick",
                uncontended: 2000,
                warmup: 50,
                in_process: 400,
                cross_process: 120,
                rounds: 2,
                churn: Duration::from_secs(2),
                churn_rounds: 1,
            }
        } else {
            Plan {
                mode: "full",
                uncontended: 20000,
                warmup: 200,
                in_process: 5000,
                cross_process: 1500,
                rounds: 10,
                churn: Duration::from_secs(5),
                churn_rounds: 4,
            }
        };
        if let Some(n) = options.iters {
            plan.uncontended = n;
            plan.in_process = n;
            plan.cross_process = n;
        }
        plan
    }

    /// The number of rounds for `samples` samples: at least one sample per round.
    fn rounds_for(&self, samples: usize) -> usize {
        self.rounds.clamp(1, samples.max(1))
    }
}

/// The share of `total` that round `round` of `rounds` takes.
fn share(total: usize, round: usize, rounds: usize) -> usize {
    total / rounds + usize::from(round < total % rounds)
}

/// Runs the suite and prints its report to stdout.
pub(crate) fn run_suite(options: &Options, args: &[OsString]) -> io::Result<()> {
    let plan = Plan::new(options);
    let base = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let root = tempfile::Builder::new()
        .prefix("sessionkit-bench-lock-")
        .tempdir_in(&base)
        .map_err(|e| context(e, format!("create a temp dir in {}", base.display())))?;
    let exe = std::env::current_exe()
        .map_err(|e| context(e, "find this binary to start contenders".to_owned()))?;
    print_header(&plan, options, args, &base, root.path());

    let started = Instant::now();
    let progress = |what: &str| eprintln!("[{:.0} s] {what}", started.elapsed().as_secs_f64());
    let dir = |name: &str| -> io::Result<PathBuf> {
        let dir = root.path().join(name);
        fs::create_dir(&dir).map_err(|e| context(e, format!("create {}", dir.display())))?;
        Ok(dir)
    };

    progress("part 1: uncontended acquire + release");
    let uncontended = Uncontended::new(dir("uncontended")?)?.measure(&plan)?;
    print_uncontended(&uncontended);

    progress("part 2: in-process hand-offs");
    let in_process = measure_in_process(&plan, &dir("in-process")?, &progress)?;
    print_in_process(&in_process);

    progress("part 3: cross-process hand-offs");
    let cross = measure_cross_process(&plan, &exe, &dir("cross-process")?, &progress)?;
    print_cross_process(&cross);

    progress("part 4: contended throughput");
    let churn = measure_churn(&plan, &exe, &dir("throughput")?, &progress)?;
    print_churn(&plan, &churn);

    progress("part 5: a 1 ms ticker while 64 tasks contend for 8 locks");
    let ticker = measure_ticker(&plan, &dir("ticker")?)?;
    print_ticker(&ticker);

    progress("done");
    root.close()
        .map_err(|e| context(e, "remove the benchmark's temp dir".to_owned()))
}

fn print_header(plan: &Plan, options: &Options, args: &[OsString], base: &Path, root: &Path) {
    let shown = shown_command(args);
    println!("**sessionkit-bench lock**\n");
    println!("- command: `sessionkit-bench {shown}` (what `cargo xtask bench {shown}` runs)");
    println!("- mode: {}", plan.mode);
    println!(
        "- machine: {}, 1-minute load average {} at the start",
        machine_line(),
        machine::load_average()
    );
    println!("- directory: {}", directory_line(options, base, root));
    let config = Locker::new().config().clone();
    println!(
        "- lock settings: the defaults (`Locker::new()`): acquire timeout {} s, max hold {} s, \
         cross-process poll pause 1 ms doubling to 8 ms, lock file not synced",
        config.acquire_timeout().as_secs(),
        config.max_hold().as_secs()
    );
    println!(
        "- iterations: part 1: {} measured acquire + release per implementation in {} \
         interleaved rounds after {} warm-up ones; part 2: {} hand-offs per row; part 3: {} \
         hand-offs per row (parts 2 and 3 in {} interleaved rounds); part 4: {} of {} s per \
         row",
        plan.uncontended,
        plan.rounds_for(plan.uncontended),
        plan.warmup,
        plan.in_process,
        plan.cross_process,
        plan.rounds_for(plan.in_process.min(plan.cross_process)),
        rounds(plan.churn_rounds),
        plan.churn.as_secs_f64()
    );
    println!();
}

/// "1 round", "4 rounds".
fn rounds(n: usize) -> String {
    if n == 1 {
        "1 round".to_owned()
    } else {
        format!("{n} rounds")
    }
}

fn lock_error(e: sessionkit_write_lock::Error) -> io::Error {
    io::Error::other(e)
}

// ---------------------------------------------------------------------------------------------
// Part 1: uncontended acquire + release.

/// The implementations of part 1, in row order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    CreateUnlink,
    Flock,
    Acquire,
    TryAcquire,
}

impl Way {
    const ALL: [Way; 4] = [Way::CreateUnlink, Way::Flock, Way::Acquire, Way::TryAcquire];

    fn label(self) -> &'static str {
        match self {
            Way::CreateUnlink => "(a) floor 1: exclusive create, write 300 B, unlink",
            Way::Flock => "(b) floor 2: open, `File::lock`, `unlock`",
            Way::Acquire => "(c) ours: `acquire` + `release`",
            Way::TryAcquire => "(d) ours: `try_acquire` + `release`",
        }
    }
}

impl fmt::Display for Way {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Part 1's files: floor 1's lock file (absent between runs), floor 2's (always there), and
/// our target (an existing file, as a transcript is).
struct Uncontended {
    create_path: PathBuf,
    flock_path: PathBuf,
    target: PathBuf,
    locker: Locker,
    record: Vec<u8>,
}

/// Part 1's samples, one list per [`Way`].
struct UncontendedResult {
    samples: Vec<Vec<Duration>>,
}

impl UncontendedResult {
    fn median(&self, way: Way) -> Duration {
        median(&self.samples[way as usize])
    }

    fn p99(&self, way: Way) -> Duration {
        percentile(&self.samples[way as usize], 99.0)
    }

    fn ratio(&self, way: Way) -> f64 {
        micros(self.median(way)) / micros(self.median(Way::CreateUnlink))
    }
}

impl Uncontended {
    fn new(dir: PathBuf) -> io::Result<Uncontended> {
        let flock_path = dir.join("floor2.lock");
        let target = dir.join("ours.jsonl");
        fs::write(&flock_path, b"")?;
        fs::write(&target, b"")?;
        Ok(Uncontended {
            create_path: dir.join("floor1.lock"),
            flock_path,
            target,
            locker: Locker::new(),
            record: vec![b'x'; RECORD_BYTES],
        })
    }

    fn measure(&self, plan: &Plan) -> io::Result<UncontendedResult> {
        for way in Way::ALL {
            self.batch(way, plan.warmup)?;
        }
        let rounds = plan.rounds_for(plan.uncontended);
        let mut samples = vec![Vec::new(); Way::ALL.len()];
        for round in 0..rounds {
            let n = share(plan.uncontended, round, rounds);
            for k in 0..Way::ALL.len() {
                let way = Way::ALL[(round + k) % Way::ALL.len()];
                samples[way as usize].extend(self.batch(way, n)?);
            }
        }
        Ok(UncontendedResult { samples })
    }

    /// `n` timed acquire + release of `way`.
    fn batch(&self, way: Way, n: usize) -> io::Result<Vec<Duration>> {
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let start = Instant::now();
            self.once(way)
                .map_err(|e| context(e, format!("part 1, {way}")))?;
            samples.push(start.elapsed());
        }
        Ok(samples)
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the bare `flock` is one of the ways compared"
    )]
    fn once(&self, way: Way) -> io::Result<()> {
        match way {
            Way::CreateUnlink => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&self.create_path)?;
                file.write_all(&self.record)?;
                fs::remove_file(&self.create_path)?;
                drop(file);
            }
            Way::Flock => {
                let file = File::open(&self.flock_path)?;
                file.lock()?;
                file.unlock()?;
            }
            Way::Acquire => {
                let guard = self.locker.acquire(&self.target).map_err(lock_error)?;
                guard.release().map_err(lock_error)?;
            }
            Way::TryAcquire => {
                let guard = self
                    .locker
                    .try_acquire(&self.target)
                    .map_err(lock_error)?
                    .ok_or_else(|| io::Error::other("the uncontended lock was held"))?;
                guard.release().map_err(lock_error)?;
            }
        }
        Ok(())
    }
}

fn print_uncontended(result: &UncontendedResult) {
    let headers = [
        ("implementation", Align::Left),
        ("median (µs)", Align::Right),
        ("p99 (µs)", Align::Right),
        ("median / (a)", Align::Right),
    ];
    let rows: Vec<Vec<String>> = Way::ALL
        .iter()
        .map(|&way| {
            vec![
                way.label().to_owned(),
                fmt_micros(result.median(way)),
                fmt_micros(result.p99(way)),
                format!("{:.2}x", result.ratio(way)),
            ]
        })
        .collect();
    println!("**Part 1: uncontended acquire + release, µs per pair**\n");
    print!("{}", table::render(&headers, &rows));
    println!();
    let ratio = result.ratio(Way::Acquire);
    println!(
        "goal: ours (c) within {GOAL_UNCONTENDED_RATIO:.0}x of the exclusive-create floor (a): \
         {} ({ratio:.2}x)",
        yes_no(ratio <= GOAL_UNCONTENDED_RATIO)
    );
    println!();
}

fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "no" }
}

// ---------------------------------------------------------------------------------------------
// The hand-off protocol of parts 2 and 3.

/// How the two sides of a hand-off talk: time stamps, and acknowledgements (a stamp whose
/// value is ignored).
///
/// Before each release the holder stamps the time and sends it. The peer, waiting in
/// `acquire`, gets the lock, stamps the time, reads the holder's stamp (sent before the release,
/// so already there) and acknowledges. Only then does the former holder ask for the lock again:
/// across processes nothing stops a releasing process from taking its lock straight back before
/// a polling waiter looks again (part 4 shows what that does), and this part measures the
/// hand-off to a waiter, not that race.
trait Link {
    type Stamp;
    fn stamp() -> Self::Stamp;
    /// `got - released`, never negative.
    fn between(released: &Self::Stamp, got: &Self::Stamp) -> Duration;
    fn send(&mut self, stamp: Self::Stamp) -> io::Result<()>;
    fn recv(&mut self) -> io::Result<Self::Stamp>;
}

/// A lock that the sync hand-off protocol passes back and forth.
trait Handoff {
    type Held;
    /// Waits for the lock.
    fn take(&self) -> io::Result<Self::Held>;
    /// Lets it go.
    fn give(&self, held: Self::Held) -> io::Result<()>;
}

/// Ours: `acquire` and `release` on a target.
struct Ours<'a> {
    locker: &'a Locker,
    target: &'a Path,
}

impl Handoff for Ours<'_> {
    type Held = LockGuard;

    fn take(&self) -> io::Result<LockGuard> {
        self.locker.acquire(self.target).map_err(lock_error)
    }

    fn give(&self, guard: LockGuard) -> io::Result<()> {
        guard.release().map_err(lock_error)
    }
}

/// The floor: a blocking `flock` (`File::lock`) on a fresh open of an existing file. The
/// kernel wakes a blocked waiter at the unlock, in this process or another, so this is how
/// fast a hand-off can be; it is no lock file (see part 1's floor 2).
struct Flock<'a> {
    path: &'a Path,
}

#[allow(
    clippy::disallowed_methods,
    reason = "the bare `flock` hand-off is the baseline"
)]
impl Handoff for Flock<'_> {
    type Held = File;

    fn take(&self) -> io::Result<File> {
        let file = File::open(self.path)?;
        file.lock()?;
        Ok(file)
    }

    fn give(&self, file: File) -> io::Result<()> {
        file.unlock()
    }
}

/// One side of a hand-off run of `pairs` hand-offs each way.
///
/// The side that starts with the lock (`first` is its hold) waits for the peer's hello (the
/// peer is about to wait); then the sides take turns giving and taking the lock. Returns the
/// hand-offs this side measured: the ones where it took the lock.
fn handoff_side<H: Handoff, L: Link>(
    lock: &H,
    link: &mut L,
    first: Option<H::Held>,
    pairs: usize,
    hold: &mut dyn FnMut() -> Duration,
) -> io::Result<Vec<Duration>> {
    // Hold, stamp, release, and wait until the peer has the lock.
    let mut give = |link: &mut L, held: H::Held| -> io::Result<()> {
        thread::sleep(hold());
        link.send(L::stamp())?;
        lock.give(held)?;
        link.recv().map(drop)
    };
    // Wait for the lock, stamp, read the peer's stamp, acknowledge.
    let take = |link: &mut L, samples: &mut Vec<Duration>| -> io::Result<H::Held> {
        let held = lock.take()?;
        let got = L::stamp();
        let released = link.recv()?;
        samples.push(L::between(&released, &got));
        link.send(L::stamp())?;
        Ok(held)
    };
    let mut samples = Vec::with_capacity(pairs);
    match first {
        Some(mut held) => {
            link.recv()?;
            for _ in 0..pairs {
                give(link, held)?;
                held = take(link, &mut samples)?;
            }
            lock.give(held)?;
        }
        None => {
            link.send(L::stamp())?;
            for _ in 0..pairs {
                let held = take(link, &mut samples)?;
                give(link, held)?;
            }
        }
    }
    Ok(samples)
}

/// Two threads of one process: `Instant`s over a channel.
struct ThreadLink {
    tx: mpsc::Sender<Instant>,
    rx: mpsc::Receiver<Instant>,
}

impl ThreadLink {
    fn pair() -> (ThreadLink, ThreadLink) {
        let (tx_a, rx_b) = mpsc::channel();
        let (tx_b, rx_a) = mpsc::channel();
        (
            ThreadLink { tx: tx_a, rx: rx_a },
            ThreadLink { tx: tx_b, rx: rx_b },
        )
    }
}

impl Link for ThreadLink {
    type Stamp = Instant;

    fn stamp() -> Instant {
        Instant::now()
    }

    fn between(released: &Instant, got: &Instant) -> Duration {
        got.saturating_duration_since(*released)
    }

    fn send(&mut self, stamp: Instant) -> io::Result<()> {
        self.tx
            .send(stamp)
            .map_err(|_| io::Error::other("the peer thread is gone"))
    }

    fn recv(&mut self) -> io::Result<Instant> {
        self.rx
            .recv()
            .map_err(|_| io::Error::other("the peer thread is gone"))
    }
}

/// Two processes: wall-clock nanoseconds (`SystemTime`), one decimal number per line. Both
/// processes run on one machine and read the same clock.
struct PipeLink<R, W> {
    reader: R,
    writer: W,
}

impl<R: BufRead, W: Write> Link for PipeLink<R, W> {
    type Stamp = u128;

    fn stamp() -> u128 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    }

    fn between(released: &u128, got: &u128) -> Duration {
        let nanos = got.saturating_sub(*released);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn send(&mut self, stamp: u128) -> io::Result<()> {
        writeln!(self.writer, "{stamp}")?;
        self.writer.flush()
    }

    fn recv(&mut self) -> io::Result<u128> {
        let line = read_line(&mut self.reader)?;
        line.parse()
            .map_err(|_| bad_data(format!("expected a time stamp, got `{line}`")))
    }
}

/// One line without its newline; end of file is an error (the peer is gone).
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the pipe",
        ));
    }
    Ok(line.trim_end().to_owned())
}

fn bad_data(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A small xorshift generator for hold times; no need for more.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `[low, high]` (to the microsecond).
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = u64::try_from(high.saturating_sub(low).as_micros()).unwrap_or(u64::MAX);
        low + Duration::from_micros(self.next() % (span + 1))
    }
}

// ---------------------------------------------------------------------------------------------
// Part 2: in-process hand-offs.

/// The rows of part 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiter {
    Flock,
    Threads,
    Tasks,
}

impl Waiter {
    const ALL: [Waiter; 3] = [Waiter::Flock, Waiter::Threads, Waiter::Tasks];

    fn label(self) -> &'static str {
        match self {
            Waiter::Flock => "(a) floor: two threads, blocking `File::lock`",
            Waiter::Threads => "(b) ours: two threads, `acquire`",
            Waiter::Tasks => "(c) ours: two tokio tasks on 2 workers, `acquire_async`",
        }
    }

    /// The name in a goal line; the floor has no goal.
    fn goal_name(self) -> Option<&'static str> {
        match self {
            Waiter::Flock => None,
            Waiter::Threads => Some("threads"),
            Waiter::Tasks => Some("tokio tasks"),
        }
    }
}

fn measure_in_process(
    plan: &Plan,
    dir: &Path,
    progress: &dyn Fn(&str),
) -> io::Result<Vec<(Waiter, Vec<Duration>)>> {
    let runtime = stall::two_worker_runtime()?;
    let locker = Locker::new();
    let target = dir.join("in-process.jsonl");
    let flock_path = dir.join("in-process.flock");
    fs::write(&target, b"")?;
    fs::write(&flock_path, b"")?;
    let ours = Ours {
        locker: &locker,
        target: &target,
    };
    let flock = Flock { path: &flock_path };
    let rounds = plan.rounds_for(plan.in_process);
    let mut results: Vec<(Waiter, Vec<Duration>)> =
        Waiter::ALL.iter().map(|&w| (w, Vec::new())).collect();
    for round in 0..rounds {
        progress(&format!("part 2: round {}/{rounds}", round + 1));
        // Each side measures half the hand-offs; an odd count rounds up.
        let pairs = share(plan.in_process, round, rounds).div_ceil(2);
        for k in 0..results.len() {
            let (waiter, samples) = &mut results[(round + k) % Waiter::ALL.len()];
            let batch = match waiter {
                Waiter::Flock => thread_handoffs(&flock, pairs),
                Waiter::Threads => thread_handoffs(&ours, pairs),
                Waiter::Tasks => task_handoffs(&runtime, &locker, &target, pairs),
            };
            samples.extend(batch.map_err(|e| context(e, format!("part 2, {}", waiter.label())))?);
        }
    }
    Ok(results)
}

/// `pairs` hand-offs each way between two threads of this process.
fn thread_handoffs<H>(lock: &H, pairs: usize) -> io::Result<Vec<Duration>>
where
    H: Handoff + Sync,
    H::Held: Send,
{
    let (mut a, mut b) = ThreadLink::pair();
    let first = lock.take()?;
    let mut hold = || IN_PROCESS_HOLD;
    thread::scope(|scope| {
        let peer = scope.spawn(move || {
            let mut hold = || IN_PROCESS_HOLD;
            handoff_side(lock, &mut b, None, pairs, &mut hold)
        });
        let mine = handoff_side(lock, &mut a, Some(first), pairs, &mut hold);
        // Dropping our end first unblocks the peer if we failed.
        drop(a);
        let theirs = peer
            .join()
            .map_err(|_| io::Error::other("a hand-off thread panicked"))?;
        let mut all = mine?;
        all.extend(theirs?);
        Ok(all)
    })
}

/// `pairs` hand-offs each way between two tasks on the two-worker runtime, with
/// `acquire_async`; the same protocol as [`handoff_side`].
fn task_handoffs(
    runtime: &Runtime,
    locker: &Locker,
    target: &Path,
    pairs: usize,
) -> io::Result<Vec<Duration>> {
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

    async fn side(
        locker: Locker,
        target: PathBuf,
        tx: UnboundedSender<Instant>,
        mut rx: UnboundedReceiver<Instant>,
        first: Option<LockGuard>,
        pairs: usize,
    ) -> io::Result<Vec<Duration>> {
        let gone = || io::Error::other("the peer task is gone");
        // The hello: the side without the lock says it is about to wait.
        if first.is_some() {
            rx.recv().await.ok_or_else(gone)?;
        } else {
            tx.send(Instant::now()).map_err(|_| gone())?;
        }
        let mut samples = Vec::with_capacity(pairs);
        let mut guard = first;
        for _ in 0..2 * pairs {
            match guard.take() {
                // Hold, stamp, release, and wait until the peer has the lock.
                Some(held) => {
                    tokio::time::sleep(IN_PROCESS_HOLD).await;
                    tx.send(Instant::now()).map_err(|_| gone())?;
                    held.release().map_err(lock_error)?;
                    rx.recv().await.ok_or_else(gone)?;
                }
                // Wait for the lock, stamp, read the peer's stamp, acknowledge.
                None => {
                    let held = locker
                        .acquire_async(target.as_path())
                        .await
                        .map_err(lock_error)?;
                    let got = Instant::now();
                    let released = rx.recv().await.ok_or_else(gone)?;
                    samples.push(got.saturating_duration_since(released));
                    tx.send(Instant::now()).map_err(|_| gone())?;
                    guard = Some(held);
                }
            }
        }
        if let Some(held) = guard {
            held.release().map_err(lock_error)?;
        }
        Ok(samples)
    }

    let (tx_a, rx_b) = unbounded_channel();
    let (tx_b, rx_a) = unbounded_channel();
    runtime.block_on(async {
        let first = locker
            .acquire_async(target.to_path_buf())
            .await
            .map_err(lock_error)?;
        let a = tokio::spawn(side(
            locker.clone(),
            target.to_path_buf(),
            tx_a,
            rx_a,
            Some(first),
            pairs,
        ));
        let b = tokio::spawn(side(
            locker.clone(),
            target.to_path_buf(),
            tx_b,
            rx_b,
            None,
            pairs,
        ));
        let mut all = a.await.map_err(io::Error::other)??;
        all.extend(b.await.map_err(io::Error::other)??);
        Ok(all)
    })
}

/// A row of hand-off latencies: count, p50, p99 and max.
fn handoff_cells(samples: &[Duration], unit: fn(Duration) -> String) -> Vec<String> {
    vec![
        samples.len().to_string(),
        unit(percentile(samples, 50.0)),
        unit(percentile(samples, 99.0)),
        unit(samples.iter().copied().max().unwrap_or_default()),
    ]
}

fn print_in_process(results: &[(Waiter, Vec<Duration>)]) {
    let headers = [
        ("waiter", Align::Left),
        ("hand-offs", Align::Right),
        ("p50 (µs)", Align::Right),
        ("p99 (µs)", Align::Right),
        ("max (µs)", Align::Right),
    ];
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(waiter, samples)| {
            let mut row = vec![waiter.label().to_owned()];
            row.extend(handoff_cells(samples, fmt_micros));
            row
        })
        .collect();
    println!(
        "**Part 2: in-process hand-off, from the holder's release to the waiter holding the \
         lock, µs**\n"
    );
    print!("{}", table::render(&headers, &rows));
    println!();
    for (waiter, samples) in results {
        let Some(name) = waiter.goal_name() else {
            continue;
        };
        let p99 = percentile(samples, 99.0);
        println!(
            "goal: in-process hand-off p99 under {} ms ({name}): {} ({} µs)",
            GOAL_IN_PROCESS_P99.as_millis(),
            yes_no(p99 < GOAL_IN_PROCESS_P99),
            fmt_micros(p99)
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// Part 3: cross-process hand-offs.

/// The rows of part 3: which lock, and how long each holder keeps it, which for ours decides
/// where in its doubling pause the waiting process is when the release comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CrossRow {
    Flock,
    Short,
    Long,
}

impl CrossRow {
    const ALL: [CrossRow; 3] = [CrossRow::Flock, CrossRow::Short, CrossRow::Long];

    /// The range the holder draws its hold time from, uniformly.
    fn range(self) -> (Duration, Duration) {
        match self {
            CrossRow::Flock | CrossRow::Short => {
                (Duration::from_micros(500), Duration::from_millis(3))
            }
            CrossRow::Long => (Duration::from_millis(10), Duration::from_millis(30)),
        }
    }

    /// The lock, as the contender's role names it.
    fn kind(self) -> &'static str {
        match self {
            CrossRow::Flock => "flock",
            CrossRow::Short | CrossRow::Long => "ours",
        }
    }

    fn lock_label(self) -> &'static str {
        match self {
            CrossRow::Flock => "(a) floor: blocking `File::lock`",
            CrossRow::Short => "(b) ours: `acquire`",
            CrossRow::Long => "(c) ours: `acquire`",
        }
    }

    fn holds_label(self) -> String {
        let (low, high) = self.range();
        let what = match self {
            CrossRow::Flock => "",
            CrossRow::Short => ", the waiter early in its pauses",
            CrossRow::Long => ", the waiter at its 8 ms pause",
        };
        format!("{}–{} ms{what}", millis(low), millis(high))
    }

    /// The name in a goal line; the floor has no goal.
    fn goal_name(self) -> Option<&'static str> {
        match self {
            CrossRow::Flock => None,
            CrossRow::Short => Some("short holds"),
            CrossRow::Long => Some("long holds"),
        }
    }
}

/// A child process that is killed and reaped if it is still running when dropped.
struct Contender {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Contender {
    fn spawn(exe: &Path, args: &[String]) -> io::Result<Contender> {
        let mut child = Command::new(exe)
            .arg(LOCK_CHILD)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| context(e, format!("start {} {LOCK_CHILD}", exe.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other("a contender has no pipes"));
        };
        Ok(Contender {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
        })
    }

    fn send_line(&mut self, line: &str) -> io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("the contender's stdin is closed"))?;
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// Closes its stdin and waits for it to exit successfully.
    fn finish(mut self) -> io::Result<()> {
        self.stdin = None;
        let status = self.child.wait()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("a contender failed: {status}")))
        }
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn measure_cross_process(
    plan: &Plan,
    exe: &Path,
    dir: &Path,
    progress: &dyn Fn(&str),
) -> io::Result<Vec<(CrossRow, Vec<Duration>)>> {
    let locker = Locker::new();
    let target = dir.join("cross-process.jsonl");
    let flock_path = dir.join("cross-process.flock");
    fs::write(&target, b"")?;
    fs::write(&flock_path, b"")?;
    let rounds = plan.rounds_for(plan.cross_process);
    let mut results: Vec<(CrossRow, Vec<Duration>)> =
        CrossRow::ALL.iter().map(|&r| (r, Vec::new())).collect();
    let mut rng = Rng::new(clock_seed());
    for round in 0..rounds {
        progress(&format!("part 3: round {}/{rounds}", round + 1));
        let pairs = share(plan.cross_process, round, rounds).div_ceil(2);
        for k in 0..results.len() {
            let (row, samples) = &mut results[(round + k) % CrossRow::ALL.len()];
            let batch = match row {
                CrossRow::Flock => {
                    let lock = Flock { path: &flock_path };
                    process_handoffs(exe, &lock, *row, &flock_path, pairs, rng.next())
                }
                CrossRow::Short | CrossRow::Long => {
                    let lock = Ours {
                        locker: &locker,
                        target: &target,
                    };
                    process_handoffs(exe, &lock, *row, &target, pairs, rng.next())
                }
            };
            samples.extend(batch.map_err(|e| {
                context(
                    e,
                    format!("part 3, {}, {}", row.lock_label(), row.holds_label()),
                )
            })?);
        }
    }
    Ok(results)
}

fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

/// `pairs` hand-offs each way of `lock` on `path` between this process and a child started
/// for them.
fn process_handoffs<H: Handoff>(
    exe: &Path,
    lock: &H,
    row: CrossRow,
    path: &Path,
    pairs: usize,
    seed: u64,
) -> io::Result<Vec<Duration>> {
    let (low, high) = row.range();
    // We hold the lock before the child exists, so that the child starts as the waiter.
    let first = lock.take()?;
    let mut contender = Contender::spawn(
        exe,
        &[
            "handoff".to_owned(),
            row.kind().to_owned(),
            path.display().to_string(),
            pairs.to_string(),
            low.as_micros().to_string(),
            high.as_micros().to_string(),
            (seed ^ 0x9e37_79b9_7f4a_7c15).to_string(),
        ],
    )?;
    let mut rng = Rng::new(seed);
    let mut hold = || rng.between(low, high);
    let stdin = contender
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("the contender's stdin is closed"))?;
    let mut link = PipeLink {
        reader: &mut contender.stdout,
        writer: stdin,
    };
    let mut samples = handoff_side(lock, &mut link, Some(first), pairs, &mut hold)?;
    let line = read_line(link.reader)?;
    samples.extend(parse_samples(&line)?);
    drop(link);
    contender.finish()?;
    Ok(samples)
}

/// The child's report of its own measurements: `samples` and nanoseconds, space-separated.
fn format_samples(samples: &[Duration]) -> String {
    let mut line = "samples".to_owned();
    for s in samples {
        line.push_str(&format!(" {}", s.as_nanos()));
    }
    line
}

fn parse_samples(line: &str) -> io::Result<Vec<Duration>> {
    let mut words = line.split(' ');
    if words.next() != Some("samples") {
        return Err(bad_data(format!("expected the samples, got `{line}`")));
    }
    words
        .filter(|w| !w.is_empty())
        .map(|w| {
            w.parse::<u64>()
                .map(Duration::from_nanos)
                .map_err(|_| bad_data(format!("a bad sample `{w}`")))
        })
        .collect()
}

fn fmt_millis(d: Duration) -> String {
    format!("{:.2}", millis(d))
}

/// Milliseconds to the microsecond, for part 3, whose floor hands off in microseconds.
fn fmt_millis_fine(d: Duration) -> String {
    format!("{:.3}", millis(d))
}

fn print_cross_process(results: &[(CrossRow, Vec<Duration>)]) {
    let headers = [
        ("lock", Align::Left),
        ("holds", Align::Left),
        ("hand-offs", Align::Right),
        ("p50 (ms)", Align::Right),
        ("p99 (ms)", Align::Right),
        ("max (ms)", Align::Right),
    ];
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(row, samples)| {
            let mut cells = vec![row.lock_label().to_owned(), row.holds_label()];
            cells.extend(handoff_cells(samples, fmt_millis_fine));
            cells
        })
        .collect();
    println!(
        "**Part 3: cross-process hand-off, from the holder's release to the waiting process \
         holding the lock, ms**\n"
    );
    print!("{}", table::render(&headers, &rows));
    println!();
    println!(
        "Both processes stamp the time with `SystemTime` (the same wall clock on one machine); \
         each hand-off way is half the samples."
    );
    println!();
    for (row, samples) in results {
        let Some(name) = row.goal_name() else {
            continue;
        };
        let p50 = percentile(samples, 50.0);
        println!(
            "goal: cross-process hand-off p50 under {} ms ({name}): {} ({} ms)",
            GOAL_CROSS_PROCESS_P50.as_millis(),
            yes_no(p50 < GOAL_CROSS_PROCESS_P50),
            fmt_millis_fine(p50)
        );
    }
    println!();
}

// ---------------------------------------------------------------------------------------------
// Part 4: contended throughput.

/// The rows of part 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Crowd {
    /// One process alone: the loop's speed without contention.
    OneProcess,
    /// The measurement: eight processes.
    Processes,
    /// Eight threads of one process, served by the in-process queue: the contrast.
    Threads,
}

impl Crowd {
    const ALL: [Crowd; 3] = [Crowd::OneProcess, Crowd::Processes, Crowd::Threads];

    fn label(self) -> String {
        match self {
            Crowd::OneProcess => "1 process (no contention)".to_owned(),
            Crowd::Processes => format!("{CONTENDERS} processes"),
            Crowd::Threads => format!("{CONTENDERS} threads in one process"),
        }
    }

    fn contenders(self) -> usize {
        match self {
            Crowd::OneProcess => 1,
            Crowd::Processes | Crowd::Threads => CONTENDERS,
        }
    }
}

/// What one contender did in one round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Churned {
    sections: u64,
    /// The sections in which it took the lock over from another contender (or was the first).
    turns: u64,
    /// The longest single wait for the lock, a final wait cut off by the deadline included.
    longest_wait: Duration,
}

/// One row of part 4, over all rounds.
#[derive(Debug)]
struct CrowdResult {
    crowd: Crowd,
    /// Every contender, round by round.
    rounds: Vec<Vec<Churned>>,
    /// Whether the shared counter matched the sections counted, in every round.
    exclusive: bool,
}

/// Loops acquire → bump `counter` → release on `target` until `duration` has passed; `me`
/// tells this contender apart from the others of its row.
fn churn(
    locker: &Locker,
    target: &Path,
    counter: &Path,
    me: u64,
    duration: Duration,
) -> io::Result<Churned> {
    let deadline = Instant::now() + duration;
    let mut done = Churned::default();
    loop {
        let asked = Instant::now();
        let remaining = deadline.saturating_duration_since(asked);
        if remaining.is_zero() {
            break;
        }
        match locker.acquire_timeout(target, remaining) {
            Ok(guard) => {
                done.longest_wait = done.longest_wait.max(asked.elapsed());
                let took_over = bump(counter, me)?;
                guard.release().map_err(lock_error)?;
                done.sections += 1;
                done.turns += u64::from(took_over);
            }
            Err(e) if e.is_timeout() => {
                done.longest_wait = done.longest_wait.max(asked.elapsed());
                break;
            }
            Err(e) => return Err(lock_error(e)),
        }
    }
    Ok(done)
}

/// The counter file: the sections so far and the last contender, in fixed width, so that it
/// is rewritten in place.
fn counter_text(sections: u64, last: u64) -> String {
    format!("{sections:020} {last:020}\n")
}

/// The tiny work of a critical section: read the counter file, write it back one higher and
/// naming `me`, in place. Returns whether the previous section was another contender's. A lost
/// update would show that two contenders were inside at once.
fn bump(counter: &Path, me: u64) -> io::Result<bool> {
    let mut file = OpenOptions::new().read(true).write(true).open(counter)?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let (sections, last) = parse_counter(&text)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(counter_text(sections + 1, me).as_bytes())?;
    Ok(last != me)
}

/// The sections and the last contender in a counter file's text.
fn parse_counter(text: &str) -> io::Result<(u64, u64)> {
    let bad = || bad_data(format!("the counter holds `{}`", text.trim()));
    let mut words = text.split_whitespace().map(|w| w.parse::<u64>());
    match (words.next(), words.next(), words.next()) {
        (Some(Ok(sections)), Some(Ok(last)), None) => Ok((sections, last)),
        _ => Err(bad()),
    }
}

fn measure_churn(
    plan: &Plan,
    exe: &Path,
    dir: &Path,
    progress: &dyn Fn(&str),
) -> io::Result<Vec<CrowdResult>> {
    let mut results: Vec<CrowdResult> = Crowd::ALL
        .iter()
        .map(|&crowd| CrowdResult {
            crowd,
            rounds: Vec::new(),
            exclusive: true,
        })
        .collect();
    let rounds = plan.churn_rounds.max(1);
    for round in 0..rounds {
        progress(&format!("part 4: round {}/{rounds}", round + 1));
        for k in 0..results.len() {
            let result = &mut results[(round + k) % Crowd::ALL.len()];
            let crowd = result.crowd;
            let target = dir.join(format!("{crowd:?}.jsonl"));
            let counter = dir.join(format!("{crowd:?}.count"));
            fs::write(&target, b"")?;
            fs::write(&counter, counter_text(0, 0))?;
            let runs = match crowd {
                Crowd::Threads => churn_threads(&target, &counter, plan.churn),
                Crowd::OneProcess | Crowd::Processes => {
                    churn_processes(exe, crowd.contenders(), &target, &counter, plan.churn)
                }
            }
            .map_err(|e| context(e, format!("part 4, {}", crowd.label())))?;
            let counted: u64 = runs.iter().map(|r| r.sections).sum();
            let (sections, _) = parse_counter(&fs::read_to_string(&counter)?)?;
            result.exclusive &= sections == counted;
            result.rounds.push(runs);
        }
    }
    Ok(results)
}

fn churn_threads(target: &Path, counter: &Path, duration: Duration) -> io::Result<Vec<Churned>> {
    let locker = Locker::new();
    let start = Barrier::new(CONTENDERS);
    thread::scope(|scope| {
        let threads: Vec<_> = (1..=CONTENDERS as u64)
            .map(|me| {
                let (locker, start) = (&locker, &start);
                scope.spawn(move || {
                    start.wait();
                    churn(locker, target, counter, me, duration)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| io::Error::other("a contender thread panicked"))?
            })
            .collect()
    })
}

fn churn_processes(
    exe: &Path,
    n: usize,
    target: &Path,
    counter: &Path,
    duration: Duration,
) -> io::Result<Vec<Churned>> {
    let args = [
        "churn".to_owned(),
        target.display().to_string(),
        counter.display().to_string(),
        duration.as_millis().to_string(),
    ];
    let mut contenders = (0..n)
        .map(|_| Contender::spawn(exe, &args))
        .collect::<io::Result<Vec<_>>>()?;
    // Everyone is started and has its locker before anyone begins.
    for c in &mut contenders {
        expect_line(&mut c.stdout, "ready")?;
    }
    for c in &mut contenders {
        c.send_line("go")?;
    }
    let mut runs = Vec::with_capacity(n);
    for mut c in contenders {
        let line = read_line(&mut c.stdout)?;
        runs.push(parse_churned(&line)?);
        c.finish()?;
    }
    Ok(runs)
}

fn expect_line(reader: &mut impl BufRead, expected: &str) -> io::Result<()> {
    let line = read_line(reader)?;
    if line == expected {
        Ok(())
    } else {
        Err(bad_data(format!("expected `{expected}`, got `{line}`")))
    }
}

/// `done <sections> <turns> <longest wait in ns>`.
fn format_churned(c: Churned) -> String {
    format!(
        "done {} {} {}",
        c.sections,
        c.turns,
        c.longest_wait.as_nanos()
    )
}

fn parse_churned(line: &str) -> io::Result<Churned> {
    let bad = || {
        bad_data(format!(
            "expected `done <sections> <turns> <ns>`, got `{line}`"
        ))
    };
    let mut words = line.split(' ');
    if words.next() != Some("done") {
        return Err(bad());
    }
    let mut number =
        || -> io::Result<u64> { words.next().and_then(|w| w.parse().ok()).ok_or_else(bad) };
    Ok(Churned {
        sections: number()?,
        turns: number()?,
        longest_wait: Duration::from_nanos(number()?),
    })
}

/// The fewest and the most sections of one contender in the round where the two were
/// furthest apart (by their ratio); `None` without a round of two or more contenders.
fn least_fair(rounds: &[Vec<Churned>]) -> Option<(u64, u64)> {
    rounds
        .iter()
        .filter(|runs| runs.len() > 1)
        .filter_map(|runs| {
            let min = runs.iter().map(|c| c.sections).min()?;
            let max = runs.iter().map(|c| c.sections).max()?;
            Some((min, max))
        })
        .min_by(|a, b| {
            let ratio = |(min, max): (u64, u64)| min as f64 / max.max(1) as f64;
            ratio(*a).total_cmp(&ratio(*b))
        })
}

fn print_churn(plan: &Plan, results: &[CrowdResult]) {
    let headers = [
        ("contenders", Align::Left),
        ("sections", Align::Right),
        ("sections/s", Align::Right),
        ("per contender, least fair round", Align::Right),
        ("sections per turn", Align::Right),
        ("longest wait (ms)", Align::Right),
    ];
    let wall = plan.churn.as_secs_f64() * plan.churn_rounds.max(1) as f64;
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let runs = || r.rounds.iter().flatten();
            let total: u64 = runs().map(|c| c.sections).sum();
            let turns: u64 = runs().map(|c| c.turns).sum();
            let longest = runs().map(|c| c.longest_wait).max();
            let fairness = match least_fair(&r.rounds) {
                Some((min, max)) => format!("{min}–{max}"),
                None => "—".to_owned(),
            };
            vec![
                r.crowd.label(),
                total.to_string(),
                format!("{:.0}", total as f64 / wall),
                fairness,
                format!("{:.1}", total as f64 / turns.max(1) as f64),
                fmt_millis(longest.unwrap_or_default()),
            ]
        })
        .collect();
    println!(
        "**Part 4: contenders looping acquire → read and rewrite a counter file → release, \
         {:.0} s per row and round, {}**\n",
        plan.churn.as_secs_f64(),
        rounds(plan.churn_rounds.max(1))
    );
    print!("{}", table::render(&headers, &rows));
    println!();
    println!(
        "Per contender: the fewest and the most sections of one contender in one round of \
         {:.0} s, in the round where they were furthest apart. A turn is a run of sections by one contender before another takes the lock, so \
         sections per turn is 1.0 when the lock changes hands at every release. The longest \
         wait is the longest single `acquire`, counting a last one cut off by the end of the \
         round.",
        plan.churn.as_secs_f64()
    );
    println!();
    let exclusive = results.iter().all(|r| r.exclusive);
    println!(
        "check: the shared counter equals the sections counted, in every row and round: {}",
        yes_no(exclusive)
    );
    println!();
}

// ---------------------------------------------------------------------------------------------
// The contenders.

/// Runs a contender role (`sessionkit-bench lock-child <role> ...`):
///
/// - `handoff <ours|flock> <path> <pairs> <hold-min-µs> <hold-max-µs> <seed>`: the waiting
///   side of a part 3 run ([`handoff_side`] over stdin and stdout), then `samples ...`;
/// - `churn <target> <counter> <ms>`: prints `ready`, waits for a line on stdin, runs
///   [`churn`] for that long and prints `done <sections> <turns> <longest wait in ns>`.
pub(crate) fn child(args: &[OsString]) -> io::Result<()> {
    let role = parse_role(args)?;
    let locker = Locker::new();
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut output = io::stdout().lock();
    match role {
        Role::Handoff {
            flock,
            path,
            pairs,
            low,
            high,
            seed,
        } => {
            let mut rng = Rng::new(seed);
            let mut hold = || rng.between(low, high);
            let mut link = PipeLink {
                reader: &mut input,
                writer: &mut output,
            };
            let samples = if flock {
                let lock = Flock { path: &path };
                handoff_side(&lock, &mut link, None, pairs, &mut hold)?
            } else {
                let lock = Ours {
                    locker: &locker,
                    target: &path,
                };
                handoff_side(&lock, &mut link, None, pairs, &mut hold)?
            };
            writeln!(output, "{}", format_samples(&samples))?;
        }
        Role::Churn {
            target,
            counter,
            duration,
        } => {
            writeln!(output, "ready")?;
            output.flush()?;
            expect_line(&mut input, "go")?;
            let me = u64::from(std::process::id());
            let done = churn(&locker, &target, &counter, me, duration)?;
            writeln!(output, "{}", format_churned(done))?;
        }
    }
    output.flush()
}

/// A contender's role and its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    Handoff {
        /// The floor (`File::lock`) instead of ours.
        flock: bool,
        path: PathBuf,
        pairs: usize,
        low: Duration,
        high: Duration,
        seed: u64,
    },
    Churn {
        target: PathBuf,
        counter: PathBuf,
        duration: Duration,
    },
}

fn parse_role(args: &[OsString]) -> io::Result<Role> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let words: Vec<&str> = args
        .iter()
        .map(|a| {
            a.to_str()
                .ok_or_else(|| invalid(format!("a bad argument `{}`", a.to_string_lossy())))
        })
        .collect::<io::Result<_>>()?;
    let number = |w: &str| -> io::Result<u64> {
        w.parse()
            .map_err(|_| invalid(format!("expected a number, got `{w}`")))
    };
    match words.as_slice() {
        [
            "handoff",
            kind @ ("ours" | "flock"),
            path,
            pairs,
            low,
            high,
            seed,
        ] => Ok(Role::Handoff {
            flock: *kind == "flock",
            path: PathBuf::from(path),
            pairs: usize::try_from(number(pairs)?).map_err(|e| invalid(e.to_string()))?,
            low: Duration::from_micros(number(low)?),
            high: Duration::from_micros(number(high)?),
            seed: number(seed)?,
        }),
        ["churn", target, counter, ms] => Ok(Role::Churn {
            target: PathBuf::from(target),
            counter: PathBuf::from(counter),
            duration: Duration::from_millis(number(ms)?),
        }),
        _ => Err(invalid(format!(
            "unknown contender role `{}`",
            words.join(" ")
        ))),
    }
}

/// What part 5 saw: the ticker's lateness alone and beside the contending tasks.
struct TickerResult {
    idle: Vec<Duration>,
    busy: Vec<Duration>,
    sections: usize,
    wall: Duration,
}

/// Part 5: a 1 ms ticker on a 2-worker runtime, alone and while 64 tasks contend for 8 locks
/// through `acquire_async`, each section rewriting a counter through its guard.
fn measure_ticker(plan: &Plan, dir: &Path) -> io::Result<TickerResult> {
    const TASKS: usize = 64;
    const LOCKS: usize = 8;
    let rounds_per_task = if plan.mode == "quick" { 20 } else { 100 };
    let runtime = stall::two_worker_runtime()?;
    let idle = runtime.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn(stall::tick_until(done.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        done.store(true, Ordering::Relaxed);
        ticker.await.map_err(io::Error::other)
    })?;
    let locker = Locker::new();
    let counters: Vec<PathBuf> = (0..LOCKS)
        .map(|i| dir.join(format!("counter{i}")))
        .collect();
    for c in &counters {
        fs::write(c, b"0").map_err(|e| context(e, format!("create {}", c.display())))?;
    }
    let started = Instant::now();
    let busy = runtime.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn(stall::tick_until(done.clone()));
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let locker = locker.clone();
                let counter = counters[t % LOCKS].clone();
                tokio::spawn(async move {
                    for _ in 0..rounds_per_task {
                        let guard = locker
                            .acquire_async(counter.clone())
                            .await
                            .map_err(lock_error)?;
                        let path = counter.clone();
                        // The section's file work runs on the blocking pool, as a service's would.
                        tokio::task::spawn_blocking(move || {
                            let value: u64 = fs::read_to_string(&path)?
                                .trim()
                                .parse()
                                .map_err(io::Error::other)?;
                            guard
                                .write_with(&atomic_only(), (value + 1).to_string().as_bytes())
                                .map_err(lock_error)?;
                            // Releasing removes the lock file: file I/O, so here too.
                            guard.release().map_err(lock_error)
                        })
                        .await
                        .map_err(io::Error::other)??;
                    }
                    Ok::<_, io::Error>(())
                })
            })
            .collect();
        let mut result = Ok(());
        for task in tasks {
            let outcome = task.await.map_err(io::Error::other).and_then(|r| r);
            if result.is_ok() {
                result = outcome;
            }
        }
        done.store(true, Ordering::Relaxed);
        let lateness = ticker.await.map_err(io::Error::other)?;
        result.map(|()| lateness)
    })?;
    let wall = started.elapsed();
    // The counters prove the sections did not overlap: every increment is there.
    for c in &counters {
        let value: usize = fs::read_to_string(c)?
            .trim()
            .parse()
            .map_err(io::Error::other)?;
        if value != TASKS / LOCKS * rounds_per_task {
            return Err(bad_data(format!(
                "{} ended at {value}, not {}",
                c.display(),
                TASKS / LOCKS * rounds_per_task
            )));
        }
    }
    Ok(TickerResult {
        idle,
        busy,
        sections: TASKS * rounds_per_task,
        wall,
    })
}

/// A writer without fsyncs: part 5 measures the lock and the runtime, not the disk.
fn atomic_only() -> sessionkit_atomic_fs::AtomicWriter {
    let mut writer = sessionkit_atomic_fs::AtomicWriter::new();
    writer.durability(sessionkit_atomic_fs::Durability::AtomicOnly);
    writer
}

fn print_ticker(result: &TickerResult) {
    let max = |s: &[Duration]| s.iter().copied().max().unwrap_or_default();
    println!(
        "**Part 5: a 1 ms ticker on 2 tokio workers, alone and while 64 tasks contend for 8 locks (`acquire_async`, counter rewritten through the guard)**"
    );
    println!();
    println!("| ticker | ticks | sections | wall (s) | max lateness (ms) | p99 lateness (ms) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| alone (baseline) | {} | 0 | 0.5 | {:.2} | {:.2} |",
        result.idle.len(),
        millis(max(&result.idle)),
        millis(percentile(&result.idle, 99.0))
    );
    println!(
        "| with 64 tasks on 8 locks | {} | {} | {:.1} | {:.2} | {:.2} |",
        result.busy.len(),
        result.sections,
        result.wall.as_secs_f64(),
        millis(max(&result.busy)),
        millis(percentile(&result.busy, 99.0))
    );
    println!();
    println!("check: every counter ended at its number of sections (no overlapping sections): yes");
    let met = max(&result.busy) < Duration::from_millis(5);
    println!(
        "goal: ticker max lateness under 5 ms while the tasks contend: {}",
        yes_no(met)
    );
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_uncontended_way_leaves_the_lock_free() {
        let dir = tempfile::tempdir().unwrap();
        let bench = Uncontended::new(dir.path().to_path_buf()).unwrap();
        for way in Way::ALL {
            assert_eq!(bench.batch(way, 3).unwrap().len(), 3, "{way}");
        }
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // No lock file is left, only floor 2's file, the target and ours's generation counter.
        assert_eq!(names, ["floor2.lock", "ours.jsonl", "ours.jsonl.lock.gen"]);
    }

    #[test]
    fn threads_hand_off_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let locker = Locker::new();
        let ours = Ours {
            locker: &locker,
            target: &target,
        };
        assert_eq!(thread_handoffs(&ours, 3).unwrap().len(), 6);
        let flock_path = dir.path().join("f");
        fs::write(&flock_path, b"").unwrap();
        let samples = thread_handoffs(&Flock { path: &flock_path }, 3).unwrap();
        assert_eq!(samples.len(), 6);
        assert!(!Locker::new().inspect(&target).unwrap().held_here);
    }

    #[test]
    fn tasks_hand_off_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let runtime = stall::two_worker_runtime().unwrap();
        let samples = task_handoffs(&runtime, &Locker::new(), &target, 3).unwrap();
        assert_eq!(samples.len(), 6);
        assert!(!Locker::new().inspect(&target).unwrap().held_here);
    }

    #[test]
    fn the_pipe_protocol_hands_off_both_ways() {
        // Both sides in one process (so the in-process queue decides), over real pipes.
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let locker = Locker::new();
        let lock = Ours {
            locker: &locker,
            target: &target,
        };
        let (a_reads, b_writes) = io::pipe().unwrap();
        let (b_reads, a_writes) = io::pipe().unwrap();
        let first = lock.take().unwrap();
        let (mine, theirs) = thread::scope(|scope| {
            let peer = scope.spawn(|| {
                let mut link = PipeLink {
                    reader: BufReader::new(b_reads),
                    writer: b_writes,
                };
                let mut rng = Rng::new(7);
                let mut hold = || rng.between(Duration::ZERO, Duration::from_millis(1));
                handoff_side(&lock, &mut link, None, 4, &mut hold)
            });
            let mut link = PipeLink {
                reader: BufReader::new(a_reads),
                writer: a_writes,
            };
            let mut hold = || Duration::ZERO;
            let mine = handoff_side(&lock, &mut link, Some(first), 4, &mut hold);
            (mine.unwrap(), peer.join().unwrap().unwrap())
        });
        assert_eq!((mine.len(), theirs.len()), (4, 4));
        assert!(!locker.inspect(&target).unwrap().held_here);
    }

    #[test]
    fn threads_churn_exclusively_and_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        let counter = dir.path().join("count");
        fs::write(&counter, counter_text(0, 0)).unwrap();
        let runs = churn_threads(&target, &counter, Duration::from_millis(200)).unwrap();
        assert_eq!(runs.len(), CONTENDERS);
        let sections: u64 = runs.iter().map(|r| r.sections).sum();
        let turns: u64 = runs.iter().map(|r| r.turns).sum();
        assert!(sections > 0);
        assert!((1..=sections).contains(&turns));
        let (counted, last) = parse_counter(&fs::read_to_string(&counter).unwrap()).unwrap();
        assert_eq!(counted, sections);
        assert!((1..=CONTENDERS as u64).contains(&last));
    }

    #[test]
    fn bump_counts_and_names_the_last_contender() {
        let dir = tempfile::tempdir().unwrap();
        let counter = dir.path().join("count");
        fs::write(&counter, counter_text(41, 0)).unwrap();
        assert!(bump(&counter, 5).unwrap());
        assert!(!bump(&counter, 5).unwrap());
        assert!(bump(&counter, 6).unwrap());
        assert_eq!(
            parse_counter(&fs::read_to_string(&counter).unwrap()).unwrap(),
            (44, 6)
        );
        assert!(parse_counter("12").is_err());
        assert!(parse_counter("1 2 3").is_err());
        assert!(parse_counter("x 2").is_err());
    }

    #[test]
    fn reports_round_trip() {
        let samples = [Duration::from_nanos(5), Duration::from_millis(3)];
        assert_eq!(parse_samples(&format_samples(&samples)).unwrap(), samples);
        assert_eq!(parse_samples("samples").unwrap(), []);
        assert!(parse_samples("sample 1").is_err());
        assert!(parse_samples("samples 1 x").is_err());

        let churned = Churned {
            sections: 12,
            turns: 3,
            longest_wait: Duration::from_micros(1500),
        };
        assert_eq!(parse_churned(&format_churned(churned)).unwrap(), churned);
        assert!(parse_churned("done 1 2").is_err());
        assert!(parse_churned("ready").is_err());
    }

    #[test]
    fn contender_roles() {
        let words =
            |w: &[&str]| -> Vec<OsString> { w.iter().map(OsString::from).collect::<Vec<_>>() };
        assert_eq!(
            parse_role(&words(&["handoff", "ours", "/t", "3", "500", "3000", "9"])).unwrap(),
            Role::Handoff {
                flock: false,
                path: PathBuf::from("/t"),
                pairs: 3,
                low: Duration::from_micros(500),
                high: Duration::from_millis(3),
                seed: 9,
            }
        );
        assert_eq!(
            parse_role(&words(&["churn", "/t", "/c", "250"])).unwrap(),
            Role::Churn {
                target: PathBuf::from("/t"),
                counter: PathBuf::from("/c"),
                duration: Duration::from_millis(250),
            }
        );
        for bad in [
            &[][..],
            &["churn", "/t", "/c"],
            &["churn", "/t", "/c", "soon"],
            &["handoff", "ours", "/t", "-1", "0", "0", "0"],
            &["handoff", "/t", "3", "0", "0", "0"],
            &["handoff", "fcntl", "/t", "3", "0", "0", "0"],
            &["spin"],
        ] {
            let e = parse_role(&words(bad)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn hold_times_stay_in_range() {
        let mut rng = Rng::new(1);
        let (low, high) = CrossRow::Long.range();
        for _ in 0..1000 {
            let d = rng.between(low, high);
            assert!(low <= d && d <= high, "{d:?}");
        }
        assert_eq!(rng.between(low, low), low);
    }

    #[test]
    fn the_least_fair_round_is_the_furthest_apart() {
        let round = |sections: &[u64]| -> Vec<Churned> {
            sections
                .iter()
                .map(|&sections| Churned {
                    sections,
                    ..Churned::default()
                })
                .collect()
        };
        let rounds = [round(&[10, 20]), round(&[5, 40, 30]), round(&[100])];
        assert_eq!(least_fair(&rounds), Some((5, 40)));
        assert_eq!(least_fair(&[round(&[100])]), None);
        assert_eq!(least_fair(&[]), None);
    }

    #[test]
    fn rounds_share_the_samples() {
        let total: usize = (0..3).map(|r| share(10, r, 3)).sum();
        assert_eq!(total, 10);
        assert_eq!(share(10, 0, 3), 4);
        assert_eq!(rounds(1), "1 round");
        assert_eq!(rounds(4), "4 rounds");
    }
}
