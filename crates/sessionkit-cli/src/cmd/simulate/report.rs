//! What runs tell the coordinator, and the report a person reads.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// One thing that happened, in a run or a worker; workers print these as JSON lines.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum Event {
    /// A run began (before it touched anything).
    Started { key: String },
    /// An update of `key` was acknowledged; `version` is the run's step (1 upsert, 2 patch).
    Acked { key: String, version: u64 },
    /// A run ended.
    Done(RunOutcome),
    /// A run cut short by a killed worker was found by its replacement: its transcript's
    /// torn tail cut (`repaired` bytes) and its entry marked `killed`.
    Recovered { key: String, repaired: u64 },
    /// The startup sweep finished: stale locks it removed, owner lookups it made.
    Swept { removed: u64, lookups: u64 },
    /// A stale lock was removed on the way to an acquire.
    StaleTaken,
    /// Owner lookups made outside a sweep.
    Lookups { count: u64 },
    /// A worker finished all its runs.
    Summary(WorkerSummary),
}

/// How one run went.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunOutcome {
    pub(crate) key: String,
    /// Each lock acquisition's wait, in microseconds.
    pub(crate) waits_us: Vec<u64>,
    /// The longest the run held a lock, in microseconds.
    pub(crate) longest_hold_us: u64,
    /// True if the run hung holding a lock on purpose.
    pub(crate) hung: bool,
    /// True if the run's lock was revoked (ours) or released behind it (naive).
    pub(crate) revoked: bool,
    /// True if a resume found that someone else wrote while the lock was suspended.
    pub(crate) takeover: bool,
    /// True if the run wrote through a lock it no longer held (only the naive model can).
    pub(crate) wrote_after_losing_lock: bool,
    /// Why the run failed, if it did.
    pub(crate) failed: Option<String>,
}

/// What one process saw besides its runs.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WorkerSummary {
    /// The 1 ms ticker's worst lateness, in microseconds.
    pub(crate) ticker_max_us: u64,
    /// How long the startup sweep kept the service from its first run, in microseconds.
    pub(crate) startup_blocked_us: u64,
}

/// The simulation's report.
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    pub(crate) design: String,
    pub(crate) processes: usize,
    pub(crate) agents: usize,
    pub(crate) cron_jobs: usize,
    pub(crate) runs_planned: usize,
    pub(crate) runs_completed: usize,
    pub(crate) runs_failed: usize,
    /// Runs cut short because their worker process was killed.
    pub(crate) runs_killed: usize,
    /// Of those, runs a replacement worker found, repaired and marked `killed`.
    pub(crate) killed_runs_recovered: usize,
    /// Transcript tails torn by a kill and cut by the replacement.
    pub(crate) torn_tails_repaired: usize,
    pub(crate) sessions_created: usize,
    pub(crate) registry_entries: usize,
    pub(crate) evictions: usize,
    pub(crate) orphan_transcripts: usize,
    /// Transcripts or journals with a partial last record.
    pub(crate) torn_files: usize,
    /// Lock files still on disk at the end (all holders are gone by then).
    pub(crate) locks_left: usize,
    pub(crate) lock_wait_p50_ms: f64,
    pub(crate) lock_wait_p99_ms: f64,
    pub(crate) lock_wait_max_ms: f64,
    pub(crate) longest_hold_ms: f64,
    pub(crate) hangs_planted: usize,
    /// Planted hangs whose worker was killed first (stale recovery freed those locks).
    pub(crate) hangs_killed: usize,
    pub(crate) revocations: usize,
    pub(crate) takeovers: usize,
    pub(crate) writes_after_losing_lock: usize,
    pub(crate) workers_killed: usize,
    pub(crate) stale_locks_recovered: u64,
    pub(crate) owner_lookups: u64,
    pub(crate) startup_blocked_ms: f64,
    pub(crate) updates_acked: usize,
    pub(crate) updates_lost: usize,
    pub(crate) ticker_max_lateness_ms: f64,
    pub(crate) elapsed_s: f64,
    pub(crate) runs_per_s: f64,
    pub(crate) updates_per_s: f64,
    pub(crate) bytes_on_disk: u64,
    pub(crate) dir: String,
    /// Failure reasons of failed runs, counted.
    pub(crate) failures: BTreeMap<String, usize>,
}

impl Report {
    /// The promises the run must keep; each broken one, said in words.
    pub(crate) fn broken_promises(&self) -> Vec<String> {
        let mut broken = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                broken.push(what);
            }
        };
        check(
            self.updates_lost == 0,
            format!("{} updates lost", self.updates_lost),
        );
        check(
            self.orphan_transcripts == 0,
            format!("{} orphan transcripts", self.orphan_transcripts),
        );
        check(
            self.torn_files == 0,
            format!("{} torn files", self.torn_files),
        );
        check(
            self.locks_left == 0,
            format!("{} locks left behind", self.locks_left),
        );
        check(
            self.revocations + self.hangs_killed == self.hangs_planted,
            format!(
                "{} of {} hung holders were revoked ({} killed first)",
                self.revocations, self.hangs_planted, self.hangs_killed
            ),
        );
        check(
            self.writes_after_losing_lock == 0,
            format!(
                "{} writes after losing the lock",
                self.writes_after_losing_lock
            ),
        );
        check(
            self.runs_failed == 0,
            format!("{} runs failed", self.runs_failed),
        );
        check(
            self.killed_runs_recovered == self.runs_killed,
            format!(
                "{} of {} killed runs recovered",
                self.killed_runs_recovered, self.runs_killed
            ),
        );
        broken
    }
}

/// Gathers events into a report's run figures.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) started: HashSet<String>,
    /// The highest acknowledged version of each key.
    pub(crate) acked: BTreeMap<String, u64>,
    pub(crate) updates_acked: usize,
    pub(crate) outcomes: Vec<RunOutcome>,
    pub(crate) summaries: Vec<WorkerSummary>,
    /// Runs of killed workers that a replacement found and closed.
    pub(crate) recovered: HashSet<String>,
    /// Transcripts whose torn tail a replacement cut.
    pub(crate) torn_repaired: usize,
    /// Stale locks removed by sweeps and on the way to acquires.
    pub(crate) stale_removed: u64,
    /// Owner lookups made.
    pub(crate) lookups: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, event: Event) {
        match event {
            Event::Started { key } => {
                self.started.insert(key);
            }
            Event::Acked { key, version } => {
                self.updates_acked += 1;
                let v = self.acked.entry(key).or_default();
                *v = (*v).max(version);
            }
            Event::Done(outcome) => self.outcomes.push(outcome),
            Event::Recovered { key, repaired } => {
                self.recovered.insert(key);
                self.torn_repaired += usize::from(repaired > 0);
            }
            Event::Summary(summary) => self.summaries.push(summary),
            Event::Swept { removed, lookups } => {
                self.stale_removed += removed;
                self.lookups += lookups;
            }
            Event::StaleTaken => self.stale_removed += 1,
            Event::Lookups { count } => self.lookups += count,
        }
    }

    /// Fills the run figures of `report`; `hung` are the keys of the runs planted to hang.
    pub(crate) fn fill(&self, report: &mut Report, hung: &HashSet<String>) {
        let done: HashSet<&str> = self.outcomes.iter().map(|o| o.key.as_str()).collect();
        report.hangs_killed = hung
            .iter()
            .filter(|k| self.started.contains(*k) && !done.contains(k.as_str()))
            .count();
        report.runs_completed = self.outcomes.iter().filter(|o| o.failed.is_none()).count();
        report.runs_failed = self.outcomes.len() - report.runs_completed;
        report.runs_killed = self.started.len().saturating_sub(self.outcomes.len());
        report.killed_runs_recovered = self.recovered.len();
        report.torn_tails_repaired = self.torn_repaired;
        report.sessions_created = self
            .acked
            .iter()
            .filter(|(k, _)| k.contains(":run:"))
            .count();
        report.updates_acked = self.updates_acked;
        report.revocations = self.outcomes.iter().filter(|o| o.revoked).count();
        report.takeovers = self.outcomes.iter().filter(|o| o.takeover).count();
        report.writes_after_losing_lock = self
            .outcomes
            .iter()
            .filter(|o| o.wrote_after_losing_lock)
            .count();
        for o in &self.outcomes {
            if let Some(why) = &o.failed {
                *report.failures.entry(why.clone()).or_default() += 1;
            }
        }
        let mut waits: Vec<u64> = self
            .outcomes
            .iter()
            .flat_map(|o| o.waits_us.iter().copied())
            .collect();
        waits.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        let pick = |q: f64| {
            if waits.is_empty() {
                0
            } else {
                waits[((waits.len() - 1) as f64 * q).round() as usize]
            }
        };
        report.lock_wait_p50_ms = ms(pick(0.5));
        report.lock_wait_p99_ms = ms(pick(0.99));
        report.lock_wait_max_ms = ms(waits.last().copied().unwrap_or(0));
        report.longest_hold_ms = ms(self
            .outcomes
            .iter()
            .map(|o| o.longest_hold_us)
            .max()
            .unwrap_or(0));
        report.ticker_max_lateness_ms = ms(self
            .summaries
            .iter()
            .map(|s| s.ticker_max_us)
            .max()
            .unwrap_or(0));
        report.stale_locks_recovered = self.stale_removed;
        report.owner_lookups = self.lookups;
        report.startup_blocked_ms = ms(self
            .summaries
            .iter()
            .map(|s| s.startup_blocked_us)
            .max()
            .unwrap_or(0));
    }
}

/// The report for a person: one figure per line, grouped.
pub(crate) fn human(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "sessionkit simulate: {} design, {} agents x {} cron jobs, {} runs, {}",
        r.design,
        r.agents,
        r.cron_jobs,
        r.runs_planned,
        if r.processes == 0 {
            "in one process".to_owned()
        } else {
            format!("{} worker processes", r.processes)
        }
    );
    for (name, value) in rows(r) {
        let _ = writeln!(s, "  {name:<28} {value}");
    }
    let broken = r.broken_promises();
    if broken.is_empty() {
        let _ = writeln!(
            s,
            "all promises kept: no update lost, no orphan, no torn file, no lock left, every hung holder revoked"
        );
    } else {
        let _ = writeln!(s, "BROKEN: {}", broken.join("; "));
    }
    s
}

/// The report's rows, name and value, in reading order.
fn rows(r: &Report) -> Vec<(&'static str, String)> {
    vec![
        (
            "runs completed",
            format!("{} of {}", r.runs_completed, r.runs_planned),
        ),
        ("runs failed", r.runs_failed.to_string()),
        (
            "runs killed / recovered",
            format!(
                "{} / {} ({} workers killed)",
                r.runs_killed, r.killed_runs_recovered, r.workers_killed
            ),
        ),
        ("torn tails repaired", r.torn_tails_repaired.to_string()),
        ("sessions created", r.sessions_created.to_string()),
        ("registry entries", r.registry_entries.to_string()),
        ("evictions", r.evictions.to_string()),
        ("orphan transcripts", r.orphan_transcripts.to_string()),
        ("torn files", r.torn_files.to_string()),
        ("locks left", r.locks_left.to_string()),
        ("updates acknowledged", r.updates_acked.to_string()),
        ("updates lost", r.updates_lost.to_string()),
        (
            "lock wait p50 / p99 / max",
            format!(
                "{:.2} / {:.2} / {:.2} ms",
                r.lock_wait_p50_ms, r.lock_wait_p99_ms, r.lock_wait_max_ms
            ),
        ),
        ("longest hold", format!("{:.1} ms", r.longest_hold_ms)),
        (
            "hung holders / revoked",
            if r.hangs_killed == 0 {
                format!("{} / {}", r.hangs_planted, r.revocations)
            } else {
                format!(
                    "{} / {} ({} killed first)",
                    r.hangs_planted, r.revocations, r.hangs_killed
                )
            },
        ),
        (
            "writes after losing a lock",
            r.writes_after_losing_lock.to_string(),
        ),
        ("takeovers", r.takeovers.to_string()),
        ("stale locks recovered", r.stale_locks_recovered.to_string()),
        ("owner lookups", r.owner_lookups.to_string()),
        ("startup blocked", format!("{:.1} ms", r.startup_blocked_ms)),
        (
            "1 ms ticker max lateness",
            format!("{:.2} ms", r.ticker_max_lateness_ms),
        ),
        (
            "throughput",
            format!(
                "{:.1} runs/s, {:.1} updates/s",
                r.runs_per_s, r.updates_per_s
            ),
        ),
        ("elapsed", format!("{:.2} s", r.elapsed_s)),
        ("bytes on disk", r.bytes_on_disk.to_string()),
    ]
}

/// Two reports side by side, with the ratio where one means something.
pub(crate) fn side_by_side(ours: &Report, naive: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<28} {:>22} {:>22}",
        "", "sessionkit", "naive (original design)"
    );
    let a = rows(ours);
    let b = rows(naive);
    for ((name, x), (_, y)) in a.iter().zip(b.iter()) {
        let _ = writeln!(s, "{name:<28} {x:>30} {y:>30}");
    }
    let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { f64::INFINITY };
    let _ = writeln!(
        s,
        "ratio: {:.1}x the throughput (runs/s), {:.1}x lower p99 lock wait, {:.1}x lower ticker lateness",
        ratio(ours.runs_per_s, naive.runs_per_s),
        ratio(naive.lock_wait_p99_ms, ours.lock_wait_p99_ms),
        ratio(naive.ticker_max_lateness_ms, ours.ticker_max_lateness_ms),
    );
    s
}
