//! The stall probe: does writing through `write_async` keep a tokio runtime responsive?
//!
//! A runtime with two workers runs a ticker that sleeps until each next 1 ms deadline and
//! records how late it woke, while many tasks do durable writes. If a write held a worker, or
//! the workers could not get a CPU, the ticker would wake late. The same probe with the sync
//! `write` called on the workers shows what such a stall looks like, so a low number means
//! the probe saw none.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sessionkit_atomic_fs::AtomicWriter;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::stats::{millis, percentile};
use crate::table::{self, Align};

/// The ticker's worst lateness must stay under this for the `write_async` writers.
const GOAL_MAX_LATENESS: Duration = Duration::from_millis(5);

/// The ticker's period.
const TICK: Duration = Duration::from_millis(1);

/// The size of every write in the probe.
const PAYLOAD: usize = 4 << 10;

/// How the probe is sized.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProbePlan {
    /// Writer tasks, each with its own file.
    pub(crate) tasks: usize,
    /// Durable writes per task, the same in every variant.
    pub(crate) writes: usize,
    /// How long the ticker runs alone, for its baseline.
    pub(crate) idle: Duration,
    /// The variants take turns in this many rounds, so that noise from the machine (other
    /// programs, the hypervisor, write-back) lands on all of them alike.
    pub(crate) rounds: usize,
}

/// Who does the writing while the ticker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writers {
    /// Nobody: the ticker's own baseline (tokio's timer has 1 ms granularity).
    Idle,
    /// Every task awaits `write_async`; the goal checks this row.
    Async,
    /// The same with atomic-fs's cap on blocking operations lifted, to show what
    /// oversubscribing the CPUs with blocking threads costs.
    Uncapped,
    /// Every task calls the sync `write` on its worker: the stall the probe must be able to see.
    Blocking,
}

impl Writers {
    fn label(self, plan: &ProbePlan) -> String {
        match self {
            Writers::Idle => "none (the ticker alone, baseline)".to_owned(),
            Writers::Async => format!(
                "{} tasks awaiting `write_async` (ours; at most {} in flight, the default cap)",
                plan.tasks,
                sessionkit_atomic_fs::tokio::default_blocking_limit()
            ),
            Writers::Uncapped => "the same with the cap lifted (every write in flight)".to_owned(),
            Writers::Blocking => format!(
                "{} tasks calling the sync `write` on the workers (deliberately blocking)",
                plan.tasks
            ),
        }
    }
}

/// What one probe saw.
#[derive(Clone, Debug)]
pub(crate) struct Probe {
    writers: Writers,
    writes_per_task: usize,
    wall: Duration,
    /// CPU time of the whole process (all threads, user and system) during the probe.
    cpu: Option<Duration>,
    lateness: Vec<Duration>,
}

/// The runtime every tokio measurement uses: multi-threaded with exactly two workers.
pub(crate) fn two_worker_runtime() -> io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
}

/// Runs the ticker alone and with each kind of writers, taking turns in rounds, in `dir`.
pub(crate) fn run(plan: &ProbePlan, dir: &Path) -> io::Result<Vec<Probe>> {
    std::fs::create_dir(dir)?;
    let mut probes: Vec<Probe> = [
        Writers::Idle,
        Writers::Async,
        Writers::Uncapped,
        Writers::Blocking,
    ]
    .into_iter()
    .map(|writers| Probe {
        writers,
        writes_per_task: 0,
        wall: Duration::ZERO,
        cpu: Some(Duration::ZERO),
        lateness: Vec::new(),
    })
    .collect();
    let rounds = plan.rounds.clamp(1, plan.writes.max(1));
    for round in 0..rounds {
        let writes = plan.writes / rounds + usize::from(round < plan.writes % rounds);
        let idle = plan.idle / rounds as u32;
        eprintln!("stall probe: round {}/{rounds}", round + 1);
        // Rotating the first variant keeps any one from always following another.
        for k in 0..probes.len() {
            let n = probes.len();
            let total = &mut probes[(round + k) % n];
            let part = probe(dir, plan.tasks, total.writers, writes, idle)?;
            total.add(part);
        }
    }
    Ok(probes)
}

impl Probe {
    /// Adds the results of one more round.
    fn add(&mut self, part: Probe) {
        self.writes_per_task += part.writes_per_task;
        self.wall += part.wall;
        self.cpu = self.cpu.zip(part.cpu).map(|(a, b)| a + b);
        self.lateness.extend(part.lateness);
    }
}

/// One round of one variant on a fresh runtime: the ticker runs until every writer task is
/// done, or for `idle` when there are no writers.
fn probe(
    dir: &Path,
    tasks: usize,
    writers: Writers,
    writes: usize,
    idle: Duration,
) -> io::Result<Probe> {
    let runtime = two_worker_runtime()?;
    let writer = AtomicWriter::new();
    let payload = vec![0x5a; PAYLOAD];
    let tasks = if writers == Writers::Idle { 0 } else { tasks };
    // The cap is process-wide; only the uncapped variant lifts it, and puts it back after.
    let cap = sessionkit_atomic_fs::tokio::default_blocking_limit();
    sessionkit_atomic_fs::tokio::set_blocking_limit(if writers == Writers::Uncapped {
        Semaphore::MAX_PERMITS
    } else {
        cap
    });
    let cpu_before = process_cpu();
    let (wall, lateness) = runtime.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let ticker = tokio::spawn(tick_until(Arc::clone(&done)));
        let start = Instant::now();
        let tasks: Vec<_> = (0..tasks)
            .map(|t| {
                let writer = writer.clone();
                let payload = payload.clone();
                let target = dir.join(format!("{writers:?}-{t}.bin"));
                tokio::spawn(async move {
                    for _ in 0..writes {
                        if writers == Writers::Blocking {
                            // Deliberately wrong: the sync call holds this worker until the
                            // write is on disk. The yield lets other tasks in between writes,
                            // as real async code would.
                            writer.write(&target, &payload).map_err(io::Error::other)?;
                            tokio::task::yield_now().await;
                        } else {
                            writer
                                .write_async(target.as_path(), payload.clone())
                                .await
                                .map_err(io::Error::other)?;
                        }
                    }
                    Ok::<_, io::Error>(())
                })
            })
            .collect();
        if writers == Writers::Idle {
            tokio::time::sleep(idle).await;
        }
        let mut result = Ok(());
        for task in tasks {
            let outcome = task.await.map_err(io::Error::other).and_then(|r| r);
            if result.is_ok() {
                result = outcome;
            }
        }
        let wall = start.elapsed();
        done.store(true, Ordering::Relaxed);
        let lateness = ticker.await.map_err(io::Error::other)?;
        result.map(|()| (wall, lateness))
    })?;
    sessionkit_atomic_fs::tokio::set_blocking_limit(cap);
    let cpu = cpu_before
        .zip(process_cpu())
        .map(|(before, after)| after.saturating_sub(before));
    Ok(Probe {
        writers,
        writes_per_task: if tasks == 0 { 0 } else { writes },
        wall,
        cpu,
        lateness,
    })
}

/// Sleeps until each next deadline, 1 ms apart, and returns how late each wake-up was.
pub(crate) async fn tick_until(done: Arc<AtomicBool>) -> Vec<Duration> {
    let mut lateness = Vec::new();
    let mut next = Instant::now() + TICK;
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep_until(next).await;
        lateness.push(Instant::now().saturating_duration_since(next));
        // Fixed deadlines, not "1 ms from now": a late tick does not move the later ones.
        next += TICK;
    }
    lateness
}

/// User plus system CPU time of this process so far, from `/proc/self/stat`, if readable.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces, so fields are counted from its closing parenthesis.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // The unit is USER_HZ, which Linux fixes at 100 for user space on the common architectures.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The probe's Markdown report: a title, the table, a note and the goal line.
pub(crate) fn report(plan: &ProbePlan, probes: &[Probe]) -> String {
    let headers = [
        ("writers", Align::Left),
        ("writes", Align::Right),
        ("wall (s)", Align::Right),
        ("CPU busy", Align::Right),
        ("ticks", Align::Right),
        ("max lateness (ms)", Align::Right),
        ("p99 lateness (ms)", Align::Right),
    ];
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let rows: Vec<Vec<String>> = probes
        .iter()
        .map(|p| {
            let busy = p.cpu.map_or_else(
                || "?".to_owned(),
                |cpu| {
                    let share = cpu.as_secs_f64() / (p.wall.as_secs_f64() * cpus);
                    format!("{:.0}%", share * 100.0)
                },
            );
            vec![
                p.writers.label(plan),
                match p.writes_per_task {
                    0 => "0".to_owned(),
                    n => format!("{} × {n}", plan.tasks),
                },
                format!("{:.1}", p.wall.as_secs_f64()),
                busy,
                p.lateness.len().to_string(),
                format!("{:.2}", millis(max(&p.lateness))),
                format!("{:.2}", millis(percentile(&p.lateness, 99.0))),
            ]
        })
        .collect();
    let met = probes
        .iter()
        .find(|p| p.writers == Writers::Async)
        .is_some_and(|p| max(&p.lateness) < GOAL_MAX_LATENESS);
    let mut out = format!(
        "**Stall probe: a 1 ms ticker on 2 tokio workers while tasks do durable {} KiB writes, \
         each task to its own file**\n\n",
        PAYLOAD >> 10
    );
    out.push_str(&table::render(&headers, &rows));
    out.push_str(
        "\nCPU busy is the process's CPU time (user and system, all threads) over the wall time \
         of all CPUs.\n\n",
    );
    out.push_str(&format!(
        "goal: ticker max lateness under {} ms: {}\n",
        GOAL_MAX_LATENESS.as_millis(),
        if met { "yes" } else { "no" }
    ));
    out
}

fn max(samples: &[Duration]) -> Duration {
    samples.iter().copied().max().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_readable() {
        assert!(process_cpu().is_some());
    }
}
