//! `sessionkit simulate`: the load that broke the original system, run on sessionkit (and, on
//! request, on a model of the original design), with a report a person reads at a glance.
//!
//! N agents each have cron jobs that fire isolated runs in accelerated time; runs start in
//! storms, as cron schedules on shared minute marks do. Each run creates a session, upserts it
//! in the registry, appends its transcript under the session lock, suspends the lock around a
//! simulated model call, patches the entry, and announces itself in its agent's main session
//! (whose lock all the agent's runs share). Faults are planted: some runs hang while holding
//! the main-session lock, a crashed predecessor left stale locks, the registry starts at its
//! cap (so maintenance runs all along), and with `--processes N` some worker processes are
//! killed with SIGKILL and replaced. At the end the directory is checked: every acknowledged
//! update present (or evicted by maintenance), no orphan transcript, no torn file, no lock
//! left.

mod coord;
mod disk;
mod naive;
mod ours;
mod plan;
mod report;

use std::collections::HashSet;
use std::io::{self, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use sessionkit::StateDirBuilder;
use sessionkit::lock::LockConfig;
use sessionkit::store::{Maintenance, SyncMode};

use crate::exit;
use crate::failure::Failure;

use self::plan::{Fire, Plan};
use self::report::{Event, Report, Tally, WorkerSummary};

/// Arguments of `sessionkit simulate`.
#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// Run in this directory (created; it must be empty) and keep it; by default a fresh
    /// temporary directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The short run: 6 agents x 10 cron jobs x 2 fires in 1.5 s of accelerated time.
    #[arg(long)]
    quick: bool,
    /// Agents (by default 6).
    #[arg(long, value_name = "N")]
    agents: Option<usize>,
    /// Cron jobs per agent (by default 50, or 10 with --quick).
    #[arg(long, value_name = "N")]
    cron_jobs: Option<usize>,
    /// Run the agents in N worker processes, and kill some of them with SIGKILL mid-run
    /// (by default 0: all in this process, nothing killed).
    #[arg(long, value_name = "N", default_value_t = 0)]
    processes: usize,
    /// Also run the same workload through a model of the original design, and print both.
    #[arg(long, value_enum, value_name = "DESIGN")]
    baseline: Option<Baseline>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// The seed of the workload (which model calls are slow).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Internal: run as a worker process, reading its part of the plan from stdin.
    #[arg(long, hide = true)]
    worker: bool,
}

/// The designs `--baseline` can compare against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Baseline {
    /// The original: fsync and full rewrite under the lock per update, per-lock owner
    /// lookups, synchronous maintenance, no fence.
    Naive,
}

/// Where each run's events go: memory in the process that reports, stdout in a worker.
#[derive(Debug)]
pub(crate) enum Sink {
    Memory(Mutex<Tally>),
    /// Lines for the printer thread ([`Sink::printer`]), so no task writes to a pipe.
    Stdout(Mutex<std::sync::mpsc::Sender<String>>),
}

impl Sink {
    pub(crate) fn emit(&self, event: Event) {
        match self {
            Sink::Memory(tally) => tally.lock().unwrap_or_else(|e| e.into_inner()).add(event),
            Sink::Stdout(lines) => {
                if let Ok(line) = serde_json::to_string(&event) {
                    let _ = lines.lock().unwrap_or_else(|e| e.into_inner()).send(line);
                }
            }
        }
    }

    /// A stdout sink and its printer thread, which ends once the sink is dropped.
    ///
    /// Each line is flushed at once: a kill may come at any moment, and what was printed is
    /// what the coordinator counts as acknowledged (an acknowledgement not yet printed is
    /// simply not counted).
    pub(crate) fn printer() -> (Sink, std::thread::JoinHandle<()>) {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let printer = std::thread::spawn(move || {
            let mut out = io::stdout().lock();
            for line in rx {
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
        });
        (Sink::Stdout(Mutex::new(tx)), printer)
    }
}

impl Sink {
    /// The events gathered in memory (none for stdout).
    pub(crate) fn take_tally(&self) -> Tally {
        match self {
            Sink::Memory(tally) => {
                std::mem::take(&mut *tally.lock().unwrap_or_else(|e| e.into_inner()))
            }
            Sink::Stdout(_) => Tally::default(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn failure(step: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Simulate(format!("{step}: {e}"))
}

/// Runs `sessionkit simulate`; the exit status is 0 if every promise held, 70 if not.
pub(crate) fn run(args: &SimulateArgs) -> Result<u8, Failure> {
    if args.worker {
        return coord::worker_main();
    }
    let mut plan = Plan::new(args.quick);
    plan.seed = args.seed;
    if let Some(n) = args.agents {
        plan.agents = n.max(1);
    }
    if let Some(n) = args.cron_jobs {
        plan.cron_jobs = n.max(1);
    }
    let plan = Arc::new(plan);
    let (root, temporary) = match &args.dir {
        Some(dir) => {
            if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
                return Err(failure(
                    "prepare",
                    format!(
                        "`{}` is not empty; give a new or empty directory",
                        dir.display()
                    ),
                ));
            }
            (dir.clone(), false)
        }
        None => (
            std::env::temp_dir().join(format!(
                "sessionkit-simulate-{}-{}",
                std::process::id(),
                now_ms()
            )),
            true,
        ),
    };
    let outcome = simulate(args, &plan, &root);
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    let (ours, naive) = outcome?;
    let mut stdout = io::stdout().lock();
    if args.json {
        let value = serde_json::json!({ "sessionkit": ours, "naive": naive });
        writeln!(stdout, "{value:#}").map_err(Failure::Stdout)?;
    } else {
        write!(stdout, "{}", report::human(&ours)).map_err(Failure::Stdout)?;
        if let Some(naive) = &naive {
            writeln!(stdout).map_err(Failure::Stdout)?;
            write!(stdout, "{}", report::human(naive)).map_err(Failure::Stdout)?;
            writeln!(stdout).map_err(Failure::Stdout)?;
            write!(stdout, "{}", report::side_by_side(&ours, naive)).map_err(Failure::Stdout)?;
        }
    }
    let broken = ours.broken_promises();
    if broken.is_empty() {
        Ok(exit::SUCCESS)
    } else {
        eprintln!(
            "sessionkit: simulate: broken promises: {}",
            broken.join("; ")
        );
        Ok(exit::SOFTWARE)
    }
}

fn simulate(
    args: &SimulateArgs,
    plan: &Arc<Plan>,
    root: &Path,
) -> Result<(Report, Option<Report>), Failure> {
    let ours_dir = root.join("sessionkit");
    disk::prepare(&ours_dir, plan).map_err(|e| failure("prepare", e))?;
    let ours = if args.processes > 0 {
        coord::run_processes(plan, args.processes, &ours_dir)?
    } else {
        run_in_process(plan, &ours_dir)?
    };
    let naive = match args.baseline {
        Some(Baseline::Naive) => {
            let naive_dir = root.join("naive");
            disk::prepare(&naive_dir, plan).map_err(|e| failure("prepare", e))?;
            Some(run_naive(plan, &naive_dir)?)
        }
        None => None,
    };
    Ok((ours, naive))
}

/// The state directory as simulated services open it: durable, the plan's max hold, and
/// maintenance (when `evicted` is given) at the plan's cap, every 100 ms, hearing each pass.
fn state_builder(
    plan: &Plan,
    evicted: Option<Arc<Mutex<HashSet<String>>>>,
) -> Result<StateDirBuilder, Failure> {
    // Every lock window is scaled with the accelerated clock: a lock file a kill left empty
    // is judged abandoned after one max hold, not after the default 30 s.
    let lock = LockConfig::builder()
        .max_hold(plan.max_hold())
        .malformed_grace(plan.max_hold())
        .build()
        .map_err(|e| failure("lock settings", e))?;
    let maintenance = match evicted {
        Some(evicted) => Maintenance::new()
            .max_entries(Some(plan.max_entries))
            .interval(Some(Duration::from_millis(100)))
            .protect(|key, _| key.ends_with(":main"))
            .on_pass(move |pass| {
                let mut evicted = evicted.lock().unwrap_or_else(|e| e.into_inner());
                for key in pass
                    .pruned
                    .iter()
                    .chain(&pass.capped)
                    .chain(&pass.disk_evicted)
                {
                    evicted.insert(key.clone());
                }
            }),
        None => Maintenance::new().mode(sessionkit::store::MaintenanceMode::Off),
    };
    let mut builder = sessionkit::StateDir::builder();
    builder
        .sync(SyncMode::EveryBatch)
        .lock(lock)
        .maintenance(maintenance);
    Ok(builder)
}

/// Closes the state directory, which must hold the registry's last handle; see `StateDir::close`.
fn close(state: impl Into<Arc<sessionkit::StateDir>>) -> Result<(), Failure> {
    match Arc::into_inner(state.into()).map(sessionkit::StateDir::close) {
        Some(true) => Ok(()),
        _ => Err(failure(
            "close the state directory",
            "a handle of its registry is still open",
        )),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    // Two workers, as a gateway on a 2-core machine would have, and at most 8 blocking
    // threads: with tokio's default of 512, a storm of runs puts dozens of runnable file-work
    // threads beside the two workers, and the kernel's time slices then make the ticker tens
    // of ms late (46 ms against 15 ms in one side-by-side pair of default runs). Both designs
    // run on this same runtime.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|e| failure("start the runtime", e))
}

/// Prints a progress line on a terminal until `stop`.
fn progress(done: Arc<AtomicUsize>, total: usize, stop: Arc<AtomicBool>) {
    if !io::stderr().is_terminal() {
        return;
    }
    let started = Instant::now();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            eprint!(
                "\rsimulate: {}/{total} runs, {:.1} s ",
                done.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        eprint!("\r{:60}\r", "");
    });
}

fn base_report(design: &str, plan: &Plan, processes: usize, dir: &Path) -> Report {
    Report {
        design: design.to_owned(),
        processes,
        agents: plan.agents,
        cron_jobs: plan.cron_jobs,
        runs_planned: plan.runs(),
        hangs_planted: plan.fires_in_order().iter().filter(|f| f.hang).count(),
        dir: dir.display().to_string(),
        ..Report::default()
    }
}

/// The keys of the runs planted to hang.
fn hung_keys(plan: &Plan) -> HashSet<String> {
    plan.fires_in_order()
        .iter()
        .filter(|f| f.hang)
        .map(Fire::key)
        .collect()
}

/// Fills the figures that need the elapsed time.
fn finish(report: &mut Report, elapsed: Duration) {
    report.elapsed_s = elapsed.as_secs_f64();
    let secs = report.elapsed_s.max(1e-9);
    report.runs_per_s = report.runs_completed as f64 / secs;
    report.updates_per_s = report.updates_acked as f64 / secs;
}

/// What an in-process run's tasks report to: the tally of their events and the count of
/// finished runs, which a progress line shows on a terminal.
struct InProcess {
    sink: Arc<Sink>,
    done: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl InProcess {
    fn start(plan: &Plan) -> InProcess {
        let run = InProcess {
            sink: Arc::new(Sink::Memory(Mutex::new(Tally::default()))),
            done: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        progress(Arc::clone(&run.done), plan.runs(), Arc::clone(&run.stop));
        run
    }

    /// Ends the progress line.
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The report of design `name`: the tally's figures, the rates over `elapsed`, and what
    /// the directory holds checked against the tally and the `evicted` keys.
    fn report(
        &self,
        name: &str,
        plan: &Plan,
        dir: &Path,
        summary: WorkerSummary,
        elapsed: Duration,
        evicted: &Mutex<HashSet<String>>,
    ) -> Result<Report, Failure> {
        self.sink.emit(Event::Summary(summary));
        let mut report = base_report(name, plan, 0, dir);
        let tally = self.sink.take_tally();
        tally.fill(&mut report, &hung_keys(plan));
        finish(&mut report, elapsed);
        let evicted = evicted.lock().unwrap_or_else(|e| e.into_inner());
        disk::verify(dir, &tally, &evicted, &mut report).map_err(|e| failure("verify", e))?;
        Ok(report)
    }
}

fn run_in_process(plan: &Arc<Plan>, dir: &Path) -> Result<Report, Failure> {
    let evicted = Arc::new(Mutex::new(HashSet::new()));
    let builder = state_builder(plan, Some(Arc::clone(&evicted)))?;
    let run = InProcess::start(plan);
    let rt = runtime()?;
    let started = Instant::now();
    let (state, summary) = rt.block_on(async {
        let state = Arc::new(
            builder
                .open_async(dir)
                .await
                .map_err(|e| failure("open the state directory", e))?,
        );
        let blocked = started.elapsed();
        let mut summary = ours::run_fires(
            Arc::clone(&state),
            Arc::clone(plan),
            plan.fires_in_order(),
            Vec::new(),
            Instant::now(),
            Arc::clone(&run.sink),
            Arc::clone(&run.done),
        )
        .await;
        summary.startup_blocked_us = u64::try_from(blocked.as_micros()).unwrap_or(u64::MAX);
        Ok::<_, Failure>((state, summary))
    })?;
    let elapsed = started.elapsed();
    run.stop();
    // The runtime first: its tasks hold handles. Then the close, off the runtime, waits for
    // the registry's writer and a running maintenance pass, whose hook must have reported
    // its evictions before the check reads the directory.
    drop(rt);
    close(state)?;
    run.report("sessionkit", plan, dir, summary, elapsed, &evicted)
}

fn run_naive(plan: &Arc<Plan>, dir: &Path) -> Result<Report, Failure> {
    let model = Arc::new(naive::Naive::new(dir, Arc::clone(plan)));
    let run = InProcess::start(plan);
    let rt = runtime()?;
    let started = Instant::now();
    let summary = rt.block_on(naive::run_fires(
        Arc::clone(&model),
        plan.fires_in_order(),
        Arc::clone(&run.sink),
        Arc::clone(&run.done),
    ));
    let elapsed = started.elapsed();
    run.stop();
    drop(rt);
    run.report("naive", plan, dir, summary, elapsed, &model.evicted)
}

/// Runs each fire as a task that starts at its time after `start`, reporting its start and
/// its outcome; returns once all are done.
pub(crate) async fn schedule<F, Fut>(
    fires: Vec<Fire>,
    start: Instant,
    sink: &Arc<Sink>,
    done: &Arc<AtomicUsize>,
    run: F,
) where
    F: Fn(Fire, Arc<Sink>) -> Fut,
    Fut: std::future::Future<Output = report::RunOutcome> + Send + 'static,
{
    let mut runs = tokio::task::JoinSet::new();
    for fire in fires {
        let sink = Arc::clone(sink);
        let done = Arc::clone(done);
        let outcome = run(fire, Arc::clone(&sink));
        runs.spawn(async move {
            tokio::time::sleep_until((start + Duration::from_millis(fire.at_ms)).into()).await;
            sink.emit(Event::Started { key: fire.key() });
            sink.emit(Event::Done(outcome.await));
            done.fetch_add(1, Ordering::Relaxed);
        });
    }
    while runs.join_next().await.is_some() {}
}

/// What a worker process is given on stdin.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct WorkerSpec {
    plan: Plan,
    dir: PathBuf,
    fires: Vec<Fire>,
    /// Runs a killed predecessor left; closed first.
    interrupted: Vec<Fire>,
    /// The schedule's zero, in milliseconds since the Unix epoch.
    epoch_ms: i64,
}
