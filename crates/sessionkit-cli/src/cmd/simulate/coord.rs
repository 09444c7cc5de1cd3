//! `--processes N`: agents run in worker processes (this same binary, `simulate --worker`),
//! some of which are killed with SIGKILL mid-run and replaced; this process keeps the
//! registry's maintenance and gathers what the workers print.

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::plan::{Fire, Plan};
use super::report::{Event, Report, Tally};
use super::{
    Sink, WorkerSpec, base_report, failure, finish, hung_keys, ours, progress, runtime,
    state_builder,
};
use crate::exit;
use crate::failure::Failure;

/// One worker process and the runs it was given.
#[derive(Debug)]
struct Slot {
    child: Option<Child>,
    fires: Vec<Fire>,
    /// Killed on purpose; replaced once all it printed has been read.
    killed: bool,
    /// Its stdout reached its end.
    eof: bool,
}

fn spawn(
    index: usize,
    spec: &WorkerSpec,
    tx: &mpsc::Sender<(usize, Option<Event>)>,
) -> Result<Child, Failure> {
    let exe = std::env::current_exe().map_err(|e| failure("find this program", e))?;
    let mut child = Command::new(exe)
        .args(["simulate", "--worker"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| failure("start a worker", e))?;
    let json = serde_json::to_vec(spec).map_err(|e| failure("write a worker's plan", e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&json)
            .map_err(|e| failure("send a worker its plan", e))?;
    }
    if let Some(stdout) = child.stdout.take() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // A line cut by the kill is not an event; everything before it is.
                if let Ok(event) = serde_json::from_str::<Event>(&line) {
                    let _ = tx.send((index, Some(event)));
                }
            }
            let _ = tx.send((index, None));
        });
    }
    Ok(child)
}

/// Runs the plan in `workers` processes, killing `(workers + 1) / 2` of them once each.
pub(crate) fn run_processes(
    plan: &Arc<Plan>,
    workers: usize,
    dir: &Path,
) -> Result<Report, Failure> {
    let evicted = Arc::new(Mutex::new(HashSet::new()));
    // This process runs no agents: it keeps the maintenance (so no kill can cut a pass it
    // must report) and never sweeps (the workers' startup sweeps do).
    let mut builder = state_builder(plan, Some(Arc::clone(&evicted)))?;
    builder.startup_sweep(false);
    let state = builder
        .open(dir)
        .map_err(|e| failure("open the state directory", e))?;

    let all = plan.fires_in_order();
    let mut slots: Vec<Slot> = (0..workers)
        .map(|w| Slot {
            child: None,
            fires: all
                .iter()
                .filter(|f| f.agent % workers == w)
                .copied()
                .collect(),
            killed: false,
            eof: false,
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    // The schedule's zero, on the clock every process shares.
    let epoch_ms = super::now_ms();
    for (i, slot) in slots.iter_mut().enumerate() {
        let spec = WorkerSpec {
            plan: (**plan).clone(),
            dir: dir.to_path_buf(),
            fires: slot.fires.clone(),
            interrupted: Vec::new(),
            epoch_ms,
        };
        slot.child = Some(spawn(i, &spec, &tx)?);
    }
    let kills = workers.div_ceil(2);
    // Each kill lands just after a storm of runs began, while many are in flight.
    let period = plan.span_ms / plan.fires.max(1) as u64;
    let kill_at: Vec<Duration> = (0..kills as u64)
        .map(|i| {
            let mark = (plan.span_ms * (35 + 15 * i) / 100) / (period / 5).max(1) * (period / 5);
            Duration::from_millis(mark + plan.model_ms.0 + 4)
        })
        .collect();
    let mut killed = 0;
    let mut tally = Tally::default();
    let done_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    progress(Arc::clone(&done_count), plan.runs(), Arc::clone(&stop));

    while slots.iter().any(|s| !s.eof) {
        if let Some(at) = kill_at.get(killed)
            && started.elapsed() >= *at
        {
            if let Some(child) = slots[killed].child.as_mut() {
                // SIGKILL: no cleanup of any kind runs in the worker.
                let _ = child.kill();
                let _ = child.wait();
            }
            slots[killed].killed = true;
            killed += 1;
        }
        let Ok((index, event)) = rx.recv_timeout(Duration::from_millis(5)) else {
            continue;
        };
        match event {
            Some(event) => {
                if matches!(event, Event::Done(_)) {
                    done_count.fetch_add(1, Ordering::Relaxed);
                }
                tally.add(event);
            }
            None => {
                slots[index].eof = true;
                if let Some(mut child) = slots[index].child.take() {
                    let _ = child.wait();
                }
                if slots[index].killed {
                    // Everything it printed is in; hand what it did not start (and what it
                    // left half done) to a replacement.
                    slots[index].killed = false;
                    let done: HashSet<&str> =
                        tally.outcomes.iter().map(|o| o.key.as_str()).collect();
                    let (begun, rest): (Vec<Fire>, Vec<Fire>) = slots[index]
                        .fires
                        .iter()
                        .partition(|f| tally.started.contains(&f.key()));
                    let interrupted: Vec<Fire> = begun
                        .into_iter()
                        .filter(|f| !done.contains(f.key().as_str()))
                        .collect();
                    let spec = WorkerSpec {
                        plan: (**plan).clone(),
                        dir: dir.to_path_buf(),
                        fires: rest.clone(),
                        interrupted,
                        epoch_ms,
                    };
                    let new = slots.len();
                    slots.push(Slot {
                        child: Some(spawn(new, &spec, &tx)?),
                        fires: rest,
                        killed: false,
                        eof: false,
                    });
                }
            }
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    // Waits for a running maintenance pass, whose hook must have reported its evictions
    // before the check reads the directory.
    super::close(state)?;

    let mut report = base_report("sessionkit", plan, workers, dir);
    report.workers_killed = killed;
    tally.fill(&mut report, &hung_keys(plan));
    finish(&mut report, elapsed);
    let evicted = evicted.lock().unwrap_or_else(|e| e.into_inner());
    super::disk::verify(dir, &tally, &evicted, &mut report).map_err(|e| failure("verify", e))?;
    Ok(report)
}

/// The worker process: reads its spec, runs its fires, prints events and a summary.
pub(crate) fn worker_main() -> Result<u8, Failure> {
    let spec: WorkerSpec = serde_json::from_slice(&crate::cmd::read_stdin()?)
        .map_err(|e| failure("read the worker's plan", e))?;
    let plan = Arc::new(spec.plan);
    let builder = state_builder(&plan, None)?;
    let rt = runtime()?;
    let (sink, printer) = Sink::printer();
    let sink = Arc::new(sink);
    let opened = Instant::now();
    let state = rt.block_on(builder.open_async(&spec.dir));
    let state = Arc::new(state.map_err(|e| failure("open the state directory", e))?);
    let blocked = opened.elapsed();
    let behind = u64::try_from(super::now_ms() - spec.epoch_ms).unwrap_or(0);
    let start = Instant::now()
        .checked_sub(Duration::from_millis(behind))
        .unwrap_or_else(Instant::now);
    let mut summary = rt.block_on(ours::run_fires(
        Arc::clone(&state),
        Arc::clone(&plan),
        spec.fires,
        spec.interrupted,
        start,
        Arc::clone(&sink),
        Arc::new(AtomicUsize::new(0)),
    ));
    summary.startup_blocked_us = u64::try_from(blocked.as_micros()).unwrap_or(u64::MAX);
    drop(rt);
    super::close(state)?;
    sink.emit(Event::Summary(summary));
    // Every clone of the sink is gone with the runtime; dropping this one ends the printer.
    drop(sink);
    let _ = printer.join();
    Ok(exit::SUCCESS)
}
