//! Part 3, plan R7: the Jepsen-style lock-set checker for `sessionkit-write-lock`.
//!
//! A fresh directory holds a counter file (`0`). N `child-locker` workers ([`crate::lock_child`])
//! each loop: acquire the lock on the counter, read it, write it plus one through the guard,
//! append a line describing the section to their own history file, release. Meanwhile the
//! parent plays two nemeses at random (seeded) moments:
//!
//! - **SIGKILL**, three times in four of the current holder (read from the lock file), else of
//!   a random worker; then a replacement worker is started. The next contender must find the
//!   dead holder's OS lock free and recover the lock. A killed worker may have written the
//!   counter without logging the section: such a value is *indeterminate*, at most one per
//!   kill.
//! - **SIGSTOP**, three times in four of the current holder (up to [`STOP_ATTEMPTS`] tries to
//!   catch one), else of a random worker, for a pause longer than the max hold and the stale
//!   age of the shortened settings. While a holder is stopped the parent watches the lock file:
//!   a paused live holder must never be robbed (the file must stay the same inode with the same
//!   bytes). After SIGCONT its own watchdog may revoke it; its write must then fail as fenced,
//!   and the worker logs an abort instead of a section.
//!
//! A counter is the simplest object on which overlapping critical sections are visible: two
//! overlapping sections read the same value. At the end the workers are stopped through a stop
//! file and reaped, and [`check_history`] checks, on the completed (logged) sections:
//!
//! - every value from 0 to the final counter − 1 was read by exactly one section, or is
//!   indeterminate (no more gaps than kills);
//! - no value was read twice (*overlaps*) and no increment is missing from the counter (*lost
//!   updates*);
//! - the fencing generations, ordered by the value read, strictly increase.
//!
//! Each worker also checks its guard's fence right after the acquire returns: a guard that
//! does not own the lock file at the path (not explained by a revocation after a stop) is an
//! *unowned acquire*, a violation even though its write would have been refused.
//!
//! Wall-clock start and end times are also logged; since they may jump, the overlaps they show
//! are reported, never failed on. Finally the lock must be free or recoverable (no leftover
//! lock), and no worker may fail (an acquire timeout would be a hang).
//!
//! The same run with the naive-steal mutant ([`LockVariant::Steal`]) must show lost updates or
//! overlaps, so a passing run of the correct lock means something.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sessionkit_atomic_fs::AtomicWriter;
use sessionkit_write_lock::{LockConfig, Locker, Payload, Status, parse_record};

use crate::kill9::sweep_orphans;
use crate::lock_child::{
    HISTORY_PREFIX, LockTiming, LockVariant, LockerArgs, STOP_NAME, counter_lock_path, counter_path,
};
use crate::process::signal;
use crate::rng::{SplitMix64, mix64};
use crate::scratch::ScratchDir;

/// How many violation descriptions a report keeps.
const MAX_EXAMPLES: usize = 10;
/// How many wall-clock overlaps a report describes.
const MAX_NOTES: usize = 3;
/// How many times a SIGSTOP tries to catch the current holder before it settles for pausing
/// whichever worker it stopped last.
pub const STOP_ATTEMPTS: u32 = 20;
/// The counter may stand still this long before the run counts as hung: minutes, far above
/// any pause, so a busy shared machine that runs the workers slowly is never taken for a hang.
const STALL_LIMIT: Duration = Duration::from_secs(180);
/// How often the parent looks at the lock file of a stopped holder.
const WATCH_EVERY: Duration = Duration::from_millis(10);
/// How many times a SIGKILL looks at the lock file for a live holder before it settles for a
/// random worker.
const KILL_LOOKS: u32 = 20;
/// The signal number of SIGKILL on Linux.
const SIGKILL: i32 = 9;

/// What to run.
#[derive(Clone, Debug)]
pub struct LockCheckConfig {
    /// The `sessionkit-torture` binary, which plays the workers.
    pub exe: PathBuf,
    /// Where the scratch directory is made.
    pub base_dir: PathBuf,
    /// The lock the workers use.
    pub variant: LockVariant,
    /// How many workers run at once (a killed one is replaced).
    pub workers: usize,
    /// The run ends once at least this many sections completed (the counter reached this plus
    /// one per kill) and the nemesis minimums are met.
    pub sections: u64,
    /// The run ends at this time even if the counter is short; for the correct lock that is
    /// reported as a failure ("fell short"), for the mutant it is the normal end.
    pub time_limit: Duration,
    /// The seed of the nemeses and of the workers.
    pub seed: u64,
    /// Play the SIGKILL nemesis.
    pub kills: bool,
    /// Play the SIGSTOP nemesis.
    pub stops: bool,
    /// The run goes on until at least this many workers were killed.
    pub min_kills: u64,
    /// The run goes on until at least this many holders were stopped.
    pub min_holder_stops: u64,
    /// End the run as soon as the histories show a lost update or an overlap (for mutants:
    /// run until caught, within the time limit), once the minimums are met.
    pub until_caught: bool,
    /// End the run once this many workers have failed on their own (each one is a violation
    /// and is replaced), however far the counter got; for checking that such failures are
    /// reported. `None` runs on to the counts, a stall or the time limit.
    pub stop_after_worker_errors: Option<u64>,
    /// The shortest and longest wait between two nemesis actions.
    pub nemesis_every: (Duration, Duration),
    /// How long a stopped worker stays stopped; longer than the max hold and the stale age.
    pub pause: Duration,
    /// The lock settings the workers use.
    pub timing: LockTiming,
    /// The longest pause of a worker between sections, outside the lock.
    pub think_max: Duration,
}

impl LockCheckConfig {
    /// The plan's settings: 4 workers, both nemeses (one every 20–120 ms, three kills to one
    /// stop), 300 ms pauses against a 150 ms max hold and a 200 ms stale age, at least 10 kills
    /// and 10 stopped holders.
    pub fn new(exe: PathBuf, variant: LockVariant, sections: u64, seed: u64) -> LockCheckConfig {
        LockCheckConfig {
            exe,
            base_dir: std::env::temp_dir(),
            variant,
            workers: 4,
            sections,
            time_limit: Duration::from_secs(600),
            seed,
            kills: true,
            stops: true,
            min_kills: 10,
            min_holder_stops: 10,
            until_caught: false,
            stop_after_worker_errors: None,
            nemesis_every: (Duration::from_millis(20), Duration::from_millis(120)),
            pause: Duration::from_millis(300),
            timing: LockTiming::default(),
            think_max: Duration::from_micros(200),
        }
    }

    /// The mutant run of the plan: 4 steal-mutant workers under the SIGSTOP nemesis only, until
    /// a holder was stopped, the counter reached `sections` and the histories show a lost update
    /// or an overlap; or until `time_limit`.
    pub fn steal_mutant(
        exe: PathBuf,
        sections: u64,
        time_limit: Duration,
        seed: u64,
    ) -> LockCheckConfig {
        LockCheckConfig {
            kills: false,
            min_kills: 0,
            min_holder_stops: 1,
            until_caught: true,
            time_limit,
            ..LockCheckConfig::new(exe, LockVariant::Steal, sections, seed)
        }
    }
}

/// One completed critical section, as its worker logged it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Section {
    /// The worker's process id.
    pub worker: u32,
    /// Wall-clock nanoseconds when the acquire returned.
    pub start_ns: u64,
    /// Wall-clock nanoseconds when the write returned.
    pub end_ns: u64,
    /// The fencing generation of the acquisition.
    pub generation: u64,
    /// The counter value read (the section wrote `value + 1`).
    pub value: u64,
}

/// A section aborted because its guarded write was fenced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Abort {
    /// The worker's process id.
    pub worker: u32,
    /// The fencing generation of the acquisition.
    pub generation: u64,
    /// The counter value read.
    pub value: u64,
    /// The fence failure (`Revoked`, `Superseded`, ...).
    pub reason: String,
    /// How long the guard had been held when the write was refused.
    pub held_for: Duration,
}

impl fmt::Display for Abort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} gen {} read {}: {} after holding {} ms",
            self.worker,
            self.generation,
            self.value,
            self.reason,
            self.held_for.as_millis()
        )
    }
}

/// A guard that failed its fence check right after the acquire returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unowned {
    /// The worker's process id.
    pub worker: u32,
    /// The fencing generation of the guard.
    pub generation: u64,
    /// The fence failure (`Revoked`, `Superseded`, ...).
    pub reason: String,
    /// How long the guard had been held at the check.
    pub held_for: Duration,
    /// Who the lock file named at that moment.
    pub owner: String,
}

impl fmt::Display for Unowned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} got gen {} from acquire, but its fence check failed ({}) after {} us; the \
             lock file then named {}",
            self.worker,
            self.generation,
            self.reason,
            self.held_for.as_micros(),
            self.owner
        )
    }
}

/// Every worker's history, parsed.
#[derive(Clone, Debug, Default)]
pub struct Histories {
    /// The completed sections of all workers.
    pub sections: Vec<Section>,
    /// Sections aborted because the guarded write was fenced, by fence failure.
    pub aborts: BTreeMap<String, u64>,
    /// The aborted sections.
    pub abort_list: Vec<Abort>,
    /// Guards that failed their fence check right after the acquire returned.
    pub unowned: Vec<Unowned>,
    /// Completed sections whose guard was revoked by the time its write returned `Ok`, as
    /// (worker, generation, value read).
    pub raced: Vec<(u32, u64, u64)>,
    /// Last lines without their newline (a worker killed mid-line).
    pub torn_lines: u64,
    /// Lines that parse as nothing, described.
    pub bad_lines: Vec<String>,
}

impl Histories {
    /// Parses one worker's history file and adds it.
    pub fn add(&mut self, worker: u32, text: &str) {
        let mut rest = text;
        while !rest.is_empty() {
            let Some((line, tail)) = rest.split_once('\n') else {
                self.torn_lines += 1;
                break;
            };
            rest = tail;
            let words: Vec<&str> = line.split_ascii_whitespace().collect();
            let numbers: Option<Vec<u64>> = words.iter().map(|w| w.parse().ok()).collect();
            match (words.as_slice(), numbers) {
                (_, Some(n)) if n.len() == 4 => self.sections.push(Section {
                    worker,
                    start_ns: n[0],
                    end_ns: n[1],
                    generation: n[2],
                    value: n[3],
                }),
                (["abort", generation, value, reason, held_us], _) => {
                    *self.aborts.entry((*reason).to_owned()).or_default() += 1;
                    self.abort_list.push(Abort {
                        worker,
                        generation: generation.parse().unwrap_or(0),
                        value: value.parse().unwrap_or(0),
                        reason: (*reason).to_owned(),
                        held_for: Duration::from_micros(held_us.parse().unwrap_or(0)),
                    });
                }
                (["raced", generation, value], _) => self.raced.push((
                    worker,
                    generation.parse().unwrap_or(0),
                    value.parse().unwrap_or(0),
                )),
                (
                    [
                        "unowned",
                        generation,
                        reason,
                        held_us,
                        pid,
                        owner_generation,
                    ],
                    _,
                ) => {
                    self.unowned.push(Unowned {
                        worker,
                        generation: generation.parse().unwrap_or(0),
                        reason: (*reason).to_owned(),
                        held_for: Duration::from_micros(held_us.parse().unwrap_or(0)),
                        owner: format!("pid {pid} gen {owner_generation}"),
                    });
                }
                _ => self
                    .bad_lines
                    .push(format!("worker {worker}: unreadable history line {line:?}")),
            }
        }
    }

    /// Reads every `hist-<pid>.log` in `dir`.
    ///
    /// # Errors
    ///
    /// A message if the directory or a history file cannot be read.
    pub fn read(dir: &Path) -> Result<Histories, String> {
        let mut histories = Histories::default();
        let entries =
            fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(HISTORY_PREFIX)
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let text =
                fs::read_to_string(entry.path()).map_err(|e| format!("cannot read {name}: {e}"))?;
            histories.add(pid, &text);
        }
        Ok(histories)
    }

    /// All aborted sections.
    pub fn abort_count(&self) -> u64 {
        self.aborts.values().sum()
    }

    /// The guards that did not own the lock right after their acquire returned, leaving out
    /// those revoked by their own watchdog (stopped past `max_hold` right after the acquire).
    pub fn unowned_acquires(&self, max_hold: Duration) -> Vec<&Unowned> {
        self.unowned
            .iter()
            .filter(|u| u.reason != "Revoked" && u.held_for <= max_hold)
            .collect()
    }
}

/// What [`check_history`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Completed sections.
    pub sections: u64,
    /// The counter at the end.
    pub final_counter: u64,
    /// Values below the final counter that no completed section read, explained by kills (a
    /// killed worker that wrote but did not log); at most one per kill.
    pub indeterminate: u64,
    /// Values below the final counter that no completed section read, beyond one per kill.
    pub unexplained_gaps: u64,
    /// Completed sections whose increment is missing from the final counter: sections minus the
    /// distinct values below the final counter they read.
    pub lost_updates: u64,
    /// Values read by more than one completed section: overlapping critical sections.
    pub overlaps: u64,
    /// Completed sections that read a value at or above the final counter (the counter went
    /// back); they are also lost updates.
    pub beyond_counter: u64,
    /// Neighbours in value order logged by different workers: how often the lock changed hands
    /// (informational).
    pub hand_offs: u64,
    /// Neighbours in value order whose generations do not strictly increase.
    pub generation_violations: u64,
    /// Pairs of sections of different workers whose wall-clock intervals overlap. Best effort:
    /// the wall clock may jump, and a worker stopped between its write and its timestamp shows
    /// one; reported, never failed on.
    pub wall_clock_overlaps: u64,
    /// The first few wall-clock overlaps, described.
    pub wall_clock_examples: Vec<String>,
    /// The first few violations, described.
    pub examples: Vec<String>,
}

impl Verdict {
    /// Lost updates, overlaps, generation violations and unexplained gaps.
    pub fn violations(&self) -> u64 {
        self.lost_updates + self.overlaps + self.generation_violations + self.unexplained_gaps
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(text);
        }
    }
}

/// Checks completed sections against the final counter, allowing one indeterminate value per
/// kill (see the module documentation).
pub fn check_history(sections: &[Section], final_counter: u64, kills: u64) -> Verdict {
    let mut verdict = Verdict {
        sections: sections.len() as u64,
        final_counter,
        ..Verdict::default()
    };
    let mut by_value: Vec<Section> = sections.to_vec();
    by_value.sort_by_key(|s| (s.value, s.generation, s.worker));

    // Values read: once each below the final counter, never twice, never beyond.
    let mut distinct_below = 0u64;
    let mut i = 0;
    while i < by_value.len() {
        let value = by_value[i].value;
        let mut j = i;
        while j < by_value.len() && by_value[j].value == value {
            j += 1;
        }
        let readers = &by_value[i..j];
        if value < final_counter {
            distinct_below += 1;
        } else {
            verdict.beyond_counter += readers.len() as u64;
            verdict.example(format!(
                "value {value} was read but the final counter is {final_counter} (it went back): {}",
                describe(readers)
            ));
        }
        if readers.len() > 1 {
            verdict.overlaps += 1;
            verdict.example(format!(
                "value {value} was read by {} sections: {}",
                readers.len(),
                describe(readers)
            ));
        }
        i = j;
    }
    verdict.lost_updates = verdict.sections - distinct_below;
    let gaps = final_counter - distinct_below;
    verdict.indeterminate = gaps.min(kills);
    verdict.unexplained_gaps = gaps - verdict.indeterminate;
    if verdict.unexplained_gaps > 0 {
        let missing: Vec<u64> = missing_values(&by_value, final_counter, 5);
        verdict.example(format!(
            "{gaps} values below the final counter {final_counter} were read by no completed \
             section, but only {kills} workers were killed; first: {missing:?}"
        ));
    }

    // Generations strictly increase along the values read.
    for pair in by_value.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.worker != b.worker {
            verdict.hand_offs += 1;
        }
        if b.generation <= a.generation {
            verdict.generation_violations += 1;
            verdict.example(format!(
                "generation does not increase: value {} had generation {}, value {} has {}",
                a.value, a.generation, b.value, b.generation
            ));
        }
    }

    // Best effort: wall-clock intervals of different workers that overlap.
    let mut by_start: Vec<Section> = sections.to_vec();
    by_start.sort_by_key(|s| (s.start_ns, s.end_ns));
    let mut latest: Option<Section> = None;
    for s in by_start {
        match latest {
            Some(l) if s.start_ns < l.end_ns => {
                if s.worker != l.worker {
                    verdict.wall_clock_overlaps += 1;
                    if verdict.wall_clock_examples.len() < MAX_NOTES {
                        verdict.wall_clock_examples.push(format!(
                            "value {} (pid {} gen {}, {}..{} ns) overlaps value {} (pid {} gen \
                             {}, {}..{} ns) by {} us",
                            l.value,
                            l.worker,
                            l.generation,
                            l.start_ns,
                            l.end_ns,
                            s.value,
                            s.worker,
                            s.generation,
                            s.start_ns,
                            s.end_ns,
                            (l.end_ns - s.start_ns) / 1_000
                        ));
                    }
                }
                if s.end_ns > l.end_ns {
                    latest = Some(s);
                }
            }
            _ => latest = Some(s),
        }
    }
    verdict
}

fn describe(readers: &[Section]) -> String {
    let parts: Vec<String> = readers
        .iter()
        .take(4)
        .map(|s| {
            format!(
                "pid {} gen {} at {}..{} ns",
                s.worker, s.generation, s.start_ns, s.end_ns
            )
        })
        .collect();
    parts.join(", ")
}

/// Up to `max` values below `end` that no section read; `sorted` is ordered by value.
fn missing_values(sorted: &[Section], end: u64, max: usize) -> Vec<u64> {
    let mut missing = Vec::new();
    let mut next = 0u64;
    for s in sorted {
        while next < s.value.min(end) && missing.len() < max {
            missing.push(next);
            next += 1;
        }
        next = next.max(s.value + 1);
    }
    while next < end && missing.len() < max {
        missing.push(next);
        next += 1;
    }
    missing
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct LockCheckReport {
    /// The lock the workers used.
    pub variant: Option<LockVariant>,
    /// Workers running at once.
    pub workers: usize,
    /// The counter the run aimed at.
    pub target: u64,
    /// The history check.
    pub verdict: Verdict,
    /// Workers killed by the SIGKILL nemesis.
    pub kills: u64,
    /// Of those, how many were chosen because the lock file named them as the holder.
    pub holder_kills: u64,
    /// Workers paused by the SIGSTOP nemesis.
    pub stops: u64,
    /// Of those, how many held the lock while stopped.
    pub holder_stops: u64,
    /// Stopped holders whose lock file changed while they were stopped.
    pub robbed: u64,
    /// Acquires that returned a guard failing its fence check at once, not explained by a
    /// revocation after the max hold: the lock file was already someone else's (or gone).
    pub unowned_acquires: u64,
    /// Guards revoked by their own watchdog before the first check (stopped right after the
    /// acquire); expected under the SIGSTOP nemesis.
    pub revoked_at_acquire: u64,
    /// Completed sections whose guard was found revoked right after its write returned `Ok`.
    /// Guarded writes hold the lock's write gate from the fence check until the rename is
    /// done and revocation waits for it, so such a revocation came after the write landed; a
    /// write that landed after the next holder's would show up as a lost update instead.
    pub raced_writes: u64,
    /// The total time workers were stopped; the lock makes no progress while a holder is.
    pub paused: Duration,
    /// Sections aborted on a fenced write, by fence failure.
    pub aborts: BTreeMap<String, u64>,
    /// The first few aborts for another reason than the watchdog's revocation, described.
    pub abort_notes: Vec<String>,
    /// The first few raced writes, described.
    pub raced_notes: Vec<String>,
    /// Torn or unreadable history lines beyond one per kill.
    pub bad_history: u64,
    /// Workers that failed on their own (an acquire timeout, an unexpected error), described.
    pub worker_errors: Vec<String>,
    /// Set when the counter stood still for too long: what the lock file held then.
    pub stalled: Option<String>,
    /// Set when the lock was left behind: neither free nor recoverable after the run.
    pub leftover_lock: Option<String>,
    /// True if the run ended on its time limit before reaching its target.
    pub fell_short: bool,
    /// Orphan temp files of killed workers swept at the end.
    pub orphans_removed: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Violations other than the history check's, described.
    pub examples: Vec<String>,
}

impl LockCheckReport {
    /// Every violation: the history check's, robbed holders, unowned acquires, bad history
    /// lines, worker failures, a stall and a leftover lock.
    pub fn violations(&self) -> u64 {
        self.verdict.violations()
            + self.robbed
            + self.unowned_acquires
            + self.bad_history
            + self.worker_errors.len() as u64
            + u64::from(self.stalled.is_some())
            + u64::from(self.leftover_lock.is_some())
    }

    /// True if the run shows the lost updates or overlaps a broken lock must cause.
    pub fn caught(&self) -> bool {
        self.verdict.lost_updates + self.verdict.overlaps > 0
    }

    /// Completed sections per second of the whole run, nemesis pauses included.
    pub fn rate(&self) -> f64 {
        self.verdict.sections as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Completed sections per second outside the SIGSTOP pauses.
    pub fn rate_unpaused(&self) -> f64 {
        let running = self.elapsed.saturating_sub(self.paused);
        self.verdict.sections as f64 / running.as_secs_f64().max(1e-9)
    }

    fn example(&mut self, text: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(text);
        }
    }
}

impl fmt::Display for LockCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.verdict;
        writeln!(
            f,
            "sections: {}  kills: {}  stops: {}  lost updates: {}  overlaps: {}  \
             generation violations: {}  elapsed: {:.1}s",
            v.sections,
            self.kills,
            self.stops,
            v.lost_updates,
            v.overlaps,
            v.generation_violations,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  lock: {}, {} workers; counter {} = {} sections - {} lost + {} indeterminate \
             (killed after the write, before the log; unexplained gaps: {}); {:.0} sections/s \
             ({:.0}/s outside the {:.1}s of pauses)",
            self.variant.map_or("?", LockVariant::name),
            self.workers,
            v.final_counter,
            v.sections,
            v.lost_updates,
            v.indeterminate,
            v.unexplained_gaps,
            self.rate(),
            self.rate_unpaused(),
            self.paused.as_secs_f64()
        )?;
        let aborts: Vec<String> = self
            .aborts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        writeln!(
            f,
            "  hand-offs between workers: {}; kills of the holder: {}; stops of the holder: {}, \
             robbed while stopped: {}; fenced aborts: {} [{}]; guards not owning the lock \
             right after acquire: {} (plus {} revoked by their watchdog after a stop); writes \
             Ok whose guard was revoked right after (legal: revocation waits for the write): {}",
            v.hand_offs,
            self.holder_kills,
            self.holder_stops,
            self.robbed,
            self.aborts.values().sum::<u64>(),
            aborts.join(", "),
            self.unowned_acquires,
            self.revoked_at_acquire,
            self.raced_writes
        )?;
        write!(
            f,
            "  values read beyond the final counter: {}; wall-clock overlaps (best effort, not \
             failed on): {}; worker errors: {}; bad history lines: {}; stalled: {}; leftover \
             lock: {}; orphan temps swept: {}",
            v.beyond_counter,
            v.wall_clock_overlaps,
            self.worker_errors.len(),
            self.bad_history,
            self.stalled.as_deref().unwrap_or("no"),
            self.leftover_lock.as_deref().unwrap_or("none"),
            self.orphans_removed
        )?;
        if self.fell_short {
            write!(
                f,
                "\n  NOTE: the time limit ended the run before the counter reached {}",
                self.target
            )?;
        }
        for note in &self.raced_notes {
            write!(f, "\n  note: raced write: {note}")?;
        }
        for note in &self.abort_notes {
            write!(f, "\n  note: fenced abort: {note}")?;
        }
        for note in &v.wall_clock_examples {
            write!(f, "\n  note: wall-clock overlap: {note}")?;
        }
        for example in v.examples.iter().chain(&self.examples) {
            write!(f, "\n  VIOLATION: {example}")?;
        }
        for error in &self.worker_errors {
            write!(f, "\n  WORKER ERROR: {error}")?;
        }
        Ok(())
    }
}

/// The running workers. Dropping it kills and reaps every one (a stopped one too).
struct Pool<'a> {
    config: &'a LockCheckConfig,
    dir: PathBuf,
    workers: Vec<Worker>,
    spawned: u64,
}

struct Worker {
    child: Child,
    err_path: PathBuf,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.err_path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }
}

impl<'a> Pool<'a> {
    fn new(config: &'a LockCheckConfig, dir: &Path) -> Pool<'a> {
        Pool {
            config,
            dir: dir.to_path_buf(),
            workers: Vec::new(),
            spawned: 0,
        }
    }

    fn spawn(&mut self, seed: u64) -> Result<(), String> {
        let args = LockerArgs {
            dir: self.dir.clone(),
            variant: self.config.variant,
            seed,
            timing: self.config.timing,
            think_max: self.config.think_max,
        };
        let err_path = self.dir.join(format!("stderr-{}.txt", self.spawned));
        self.spawned += 1;
        let err = File::create(&err_path)
            .map_err(|e| format!("cannot create {}: {e}", err_path.display()))?;
        let child = Command::new(&self.config.exe)
            .arg("child-locker")
            .args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(err))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.config.exe.display()))?;
        self.workers.push(Worker { child, err_path });
        Ok(())
    }

    /// Collects workers that exited on their own (all failures while the run lasts).
    fn reap_failed(&mut self) -> Result<Vec<String>, String> {
        self.reap_exited(|_| true, "exited on its own")
    }

    /// Removes the workers that have exited; each whose status `failed` judges a failure gives
    /// a message: `"worker <pid> <what> (<status>): <its stderr>"`.
    fn reap_exited(
        &mut self,
        failed: impl Fn(ExitStatus) -> bool,
        what: &str,
    ) -> Result<Vec<String>, String> {
        let mut failures = Vec::new();
        let mut i = 0;
        while i < self.workers.len() {
            let worker = &mut self.workers[i];
            let pid = worker.pid();
            match worker.child.try_wait() {
                Ok(Some(status)) => {
                    if failed(status) {
                        failures.push(format!(
                            "worker {pid} {what} ({status}): {}",
                            worker.stderr()
                        ));
                    }
                    self.workers.swap_remove(i);
                }
                Ok(None) => i += 1,
                Err(e) => return Err(format!("cannot check worker {pid}: {e}")),
            }
        }
        Ok(failures)
    }

    fn index_of(&self, pid: u32) -> Option<usize> {
        self.workers.iter().position(|w| w.pid() == pid)
    }

    /// SIGKILLs and reaps worker `i`. An error if it had already exited on its own.
    fn kill(&mut self, i: usize) -> Result<Option<String>, String> {
        let mut worker = self.workers.swap_remove(i);
        let pid = worker.pid();
        worker
            .child
            .kill()
            .map_err(|e| format!("cannot kill worker {pid}: {e}"))?;
        let status = worker
            .child
            .wait()
            .map_err(|e| format!("cannot reap worker {pid}: {e}"))?;
        if status.signal() == Some(SIGKILL) {
            Ok(None)
        } else {
            Ok(Some(format!(
                "worker {pid} exited on its own ({status}) before it was killed: {}",
                worker.stderr()
            )))
        }
    }

    /// Waits for every worker to exit after the stop file appeared; returns the failures.
    fn finish(&mut self, deadline: Duration) -> Result<Vec<String>, String> {
        let started = Instant::now();
        let mut failures = Vec::new();
        while !self.workers.is_empty() {
            failures.extend(self.reap_exited(|status| !status.success(), "failed")?);
            if self.workers.is_empty() {
                break;
            }
            if started.elapsed() > deadline {
                for mut worker in self.workers.drain(..) {
                    let pid = worker.pid();
                    let _ = signal(pid, "CONT");
                    let _ = worker.child.kill();
                    let _ = worker.child.wait();
                    failures.push(format!(
                        "worker {pid} did not stop within {deadline:?} of the stop file (hung); \
                         killed: {}",
                        worker.stderr()
                    ));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(failures)
    }
}

impl Drop for Pool<'_> {
    fn drop(&mut self) {
        for worker in &mut self.workers {
            let _ = worker.child.kill();
            let _ = worker.child.wait();
        }
    }
}

/// The state of a process, as far as the SIGSTOP nemesis cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProcState {
    /// Every thread is stopped (`T` in `/proc/<pid>/task/*/stat`).
    Stopped,
    /// Some thread still runs (the signal is on its way).
    Running,
    /// The process exited (a zombie, or gone).
    Gone,
}

fn proc_state(pid: u32) -> io::Result<ProcState> {
    let tasks = match fs::read_dir(format!("/proc/{pid}/task")) {
        Ok(tasks) => tasks,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ProcState::Gone),
        Err(e) => return Err(e),
    };
    let mut state = ProcState::Stopped;
    for entry in tasks {
        let stat = match fs::read_to_string(entry?.path().join("stat")) {
            Ok(stat) => stat,
            // A thread that just exited.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
        {
            Some('T') => {}
            Some('Z' | 'X') => return Ok(ProcState::Gone),
            _ => state = ProcState::Running,
        }
    }
    Ok(state)
}

/// Sends SIGSTOP and waits until the process is really stopped. `Ok(false)` if it exited
/// first (a failed worker, collected by the next reap).
fn stop_and_wait(pid: u32) -> Result<bool, String> {
    if proc_state(pid).map_err(|e| format!("cannot read the state of {pid}: {e}"))?
        == ProcState::Gone
    {
        return Ok(false);
    }
    signal(pid, "STOP")?;
    let started = Instant::now();
    loop {
        match proc_state(pid) {
            Ok(ProcState::Stopped) => return Ok(true),
            Ok(ProcState::Gone) => return Ok(false),
            Ok(ProcState::Running) => {}
            Err(e) => return Err(format!("cannot see whether {pid} stopped: {e}")),
        }
        if started.elapsed() > Duration::from_secs(5) {
            return Err(format!("worker {pid} did not stop within 5 s of SIGSTOP"));
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The lock file as it is now: its inode and bytes, or `None` if there is none.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LockFile {
    ino: u64,
    bytes: Vec<u8>,
}

impl LockFile {
    fn read(path: &Path) -> Option<LockFile> {
        let mut file = File::open(path).ok()?;
        let ino = file.metadata().ok()?.ino();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        Some(LockFile { ino, bytes })
    }

    /// The holder's pid: from the owner record, or the steal mutant's bare pid.
    fn pid(&self) -> Option<u32> {
        match parse_record(&self.bytes) {
            Payload::Record(record) => record.pid,
            _ => std::str::from_utf8(&self.bytes).ok()?.trim().parse().ok(),
        }
    }

    fn describe(&self) -> String {
        String::from_utf8_lossy(&self.bytes)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn read_counter(dir: &Path) -> Result<u64, String> {
    let path = counter_path(dir);
    let text = fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the counter {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| format!("the counter holds {text:?}, not a number"))
}

/// Runs the lock-set checker.
///
/// # Errors
///
/// Fails when the harness itself cannot work (a worker cannot be started or signalled, the
/// scratch directory cannot be written); violations are counted in the report instead.
pub fn run(config: &LockCheckConfig) -> Result<LockCheckReport, String> {
    let started = Instant::now();
    let scratch = ScratchDir::new(&config.base_dir, "lock")
        .map_err(|e| format!("cannot create a scratch dir: {e}"))?;
    let dir = scratch.path();
    let lock_path = counter_lock_path(dir);
    AtomicWriter::new()
        .write(counter_path(dir), b"0\n")
        .map_err(|e| format!("cannot write the counter: {e}"))?;
    let mut rng = SplitMix64::new(mix64(config.seed ^ 0x10c4_c4ec));
    let mut report = LockCheckReport {
        variant: Some(config.variant),
        workers: config.workers,
        target: config.sections,
        ..LockCheckReport::default()
    };
    let mut pool = Pool::new(config, dir);
    for _ in 0..config.workers.max(1) {
        pool.spawn(rng.next_u64())?;
    }

    let (lo, hi) = config.nemesis_every;
    let lo_us = u64::try_from(lo.as_micros()).unwrap_or(u64::MAX);
    let hi_us = u64::try_from(hi.as_micros()).unwrap_or(u64::MAX).max(lo_us);
    let mut last_value = 0;
    let mut last_progress = Instant::now();
    let mut timed_out = false;
    loop {
        for failure in pool.reap_failed()? {
            report.worker_errors.push(failure);
            pool.spawn(rng.next_u64())?;
        }
        if config
            .stop_after_worker_errors
            .is_some_and(|n| report.worker_errors.len() as u64 >= n)
        {
            break;
        }
        let value = read_counter(dir)?;
        if value != last_value {
            last_value = value;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL_LIMIT {
            let holder = LockFile::read(&lock_path)
                .map_or_else(|| "no lock file".to_owned(), |l| l.describe());
            report.stalled = Some(format!(
                "the counter stood at {value} for {STALL_LIMIT:?}; lock file: {holder}"
            ));
            break;
        }
        // Completed sections are at least the counter minus one per kill.
        if value >= config.sections + report.kills
            && report.kills >= config.min_kills
            && report.holder_stops >= config.min_holder_stops
            && (!config.until_caught || caught_so_far(dir, report.kills)?)
        {
            break;
        }
        if started.elapsed() > config.time_limit {
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_micros(rng.range_inclusive(lo_us, hi_us)));

        // A stop pauses the whole run for a while; a kill costs a few milliseconds. One action
        // in four is a stop, which keeps a quick run near half a minute.
        let kill = match (config.kills, config.stops) {
            (true, true) => rng.below(4) != 0,
            (true, false) => true,
            (false, true) => false,
            (false, false) => continue,
        };
        if kill {
            nemesis_kill(&mut pool, &lock_path, &mut rng, &mut report)?;
        } else {
            nemesis_stop(&mut pool, &lock_path, &mut rng, &mut report, config.pause)?;
        }
    }

    // Stop the workers cleanly: each finishes its section and exits.
    File::create(dir.join(STOP_NAME)).map_err(|e| format!("cannot create the stop file: {e}"))?;
    let deadline = config.timing.acquire_timeout + Duration::from_secs(10);
    report.worker_errors.extend(pool.finish(deadline)?);
    drop(pool);

    let final_counter = read_counter(dir)?;
    let histories = Histories::read(dir)?;
    report.verdict = check_history(&histories.sections, final_counter, report.kills);
    report.fell_short = timed_out && report.verdict.sections < config.sections;
    report.aborts = histories.aborts.clone();
    let unowned = histories.unowned_acquires(config.timing.max_hold);
    report.unowned_acquires = unowned.len() as u64;
    report.revoked_at_acquire = (histories.unowned.len() - unowned.len()) as u64;
    report.raced_writes = histories.raced.len() as u64;
    report.raced_notes = histories
        .raced
        .iter()
        .take(MAX_NOTES)
        .map(|(pid, generation, value)| {
            format!(
                "pid {pid} gen {generation} read {value}: its write returned Ok, but the guard was \
                 revoked by then"
            )
        })
        .collect();
    for u in unowned {
        report.example(format!(
            "acquire returned a guard that does not own the lock: {u}"
        ));
    }
    report.abort_notes = histories
        .abort_list
        .iter()
        .filter(|a| a.reason != "Revoked")
        .take(MAX_NOTES)
        .map(ToString::to_string)
        .collect();
    let bad = histories.torn_lines + histories.bad_lines.len() as u64;
    report.bad_history = bad.saturating_sub(report.kills);
    if report.bad_history > 0 {
        for line in &histories.bad_lines {
            report.example(line.clone());
        }
        report.example(format!(
            "{} torn history lines, {} unreadable, after {} kills",
            histories.torn_lines,
            histories.bad_lines.len(),
            report.kills
        ));
    }
    if config.variant == LockVariant::Correct {
        report.leftover_lock = check_leftover_lock(config, dir)?;
    }
    report.orphans_removed = sweep_orphans(dir)?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// True if the histories so far already show a lost update or an overlap. Histories are read
/// before the counter, so a section logged after the read cannot make the counter look behind.
fn caught_so_far(dir: &Path, kills: u64) -> Result<bool, String> {
    let histories = Histories::read(dir)?;
    let counter = read_counter(dir)?;
    let verdict = check_history(&histories.sections, counter, kills);
    Ok(verdict.lost_updates + verdict.overlaps > 0)
}

/// SIGKILL of the holder if one can be read from the lock file (three times in four), else of
/// a random worker, then a replacement.
fn nemesis_kill(
    pool: &mut Pool<'_>,
    lock_path: &Path,
    rng: &mut SplitMix64,
    report: &mut LockCheckReport,
) -> Result<(), String> {
    if pool.workers.is_empty() {
        return Ok(());
    }
    // The lock file names a live worker most of the time; look a few times to catch one. One
    // kill in four takes a random worker instead (a waiter, or one removing a stale lock).
    let looks = if rng.below(4) == 0 { 0 } else { KILL_LOOKS };
    let mut holder = None;
    for _ in 0..looks {
        holder = LockFile::read(lock_path)
            .and_then(|l| l.pid())
            .and_then(|pid| pool.index_of(pid));
        if holder.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let i = match holder {
        Some(i) => {
            report.holder_kills += 1;
            i
        }
        None => rng.below(pool.workers.len() as u64) as usize,
    };
    if let Some(failure) = pool.kill(i)? {
        report.worker_errors.push(failure);
    }
    report.kills += 1;
    pool.spawn(rng.next_u64())
}

/// SIGSTOP of the holder (up to [`STOP_ATTEMPTS`] tries, three times in four) or of a random
/// worker, a pause while watching the lock file for a thief if it holds the lock, then SIGCONT.
fn nemesis_stop(
    pool: &mut Pool<'_>,
    lock_path: &Path,
    rng: &mut SplitMix64,
    report: &mut LockCheckReport,
    pause: Duration,
) -> Result<(), String> {
    if pool.workers.is_empty() {
        return Ok(());
    }
    // One stop in four pauses a random worker instead of hunting for the holder.
    let attempts = if rng.below(4) == 0 { 1 } else { STOP_ATTEMPTS };
    let mut stopped = None;
    for attempt in 1..=attempts {
        let pid = LockFile::read(lock_path)
            .and_then(|l| l.pid())
            .filter(|&pid| pool.index_of(pid).is_some())
            .unwrap_or_else(|| pool.workers[rng.below(pool.workers.len() as u64) as usize].pid());
        if !stop_and_wait(pid)? {
            return Ok(());
        }
        // Stopped, it can neither take nor give back the lock: if the file names it now, it
        // holds the lock for the whole pause.
        let seen = LockFile::read(lock_path).filter(|l| l.pid() == Some(pid));
        if seen.is_some() || attempt == attempts {
            stopped = Some((pid, seen));
            break;
        }
        signal(pid, "CONT")?;
    }
    let Some((pid, seen)) = stopped else {
        return Ok(());
    };
    report.stops += 1;
    let paused = Instant::now();
    if let Some(seen) = &seen {
        report.holder_stops += 1;
        let mut robbed = None;
        while paused.elapsed() < pause {
            std::thread::sleep(WATCH_EVERY.min(pause.saturating_sub(paused.elapsed())));
            let now = LockFile::read(lock_path);
            if now.as_ref() != Some(seen) {
                robbed = Some(now);
                break;
            }
        }
        if let Some(now) = robbed {
            report.robbed += 1;
            let now = now.map_or_else(|| "no lock file".to_owned(), |l| l.describe());
            report.example(format!(
                "stopped holder {pid} was robbed after {} ms: its lock file {} became {now}",
                paused.elapsed().as_millis(),
                seen.describe()
            ));
        }
    }
    let rest = pause.saturating_sub(paused.elapsed());
    std::thread::sleep(rest);
    let result = signal(pid, "CONT");
    report.paused += paused.elapsed();
    result
}

/// After every worker exited: the lock must be free, or stale and recoverable by the next
/// acquire, and gone once that acquire releases.
fn check_leftover_lock(config: &LockCheckConfig, dir: &Path) -> Result<Option<String>, String> {
    let lock_path = counter_lock_path(dir);
    let t = &config.timing;
    let lock_config = LockConfig::builder()
        .acquire_timeout(Duration::from_secs(2))
        .max_hold(t.max_hold)
        .stale_after(t.stale_after)
        .malformed_grace(t.malformed_grace)
        .build()
        .map_err(|e| format!("bad lock settings: {e}"))?;
    let locker = Locker::with_config(lock_config);
    let counter = counter_path(dir);
    let inspection = locker
        .inspect(&counter)
        .map_err(|e| format!("cannot inspect the lock: {e}"))?;
    if !matches!(inspection.status, Status::Free | Status::Stale) {
        let holder =
            LockFile::read(&lock_path).map_or_else(|| "no lock file".to_owned(), |l| l.describe());
        return Ok(Some(format!(
            "with every worker gone the lock is {:?} ({:?}): {holder}",
            inspection.status, inspection.reasons
        )));
    }
    match locker.acquire(&counter) {
        Ok(guard) => {
            if let Err(e) = guard.release() {
                return Ok(Some(format!("releasing the recovered lock failed: {e}")));
            }
        }
        Err(e) => return Ok(Some(format!("the lock could not be recovered: {e}"))),
    }
    if lock_path.exists() {
        return Ok(Some(format!(
            "{} is still there after a release",
            lock_path.display()
        )));
    }
    Ok(None)
}
