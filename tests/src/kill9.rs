//! Part 1, plan R5: SIGKILL a writer at random moments and check what it leaves behind.
//!
//! One target in a fresh directory. Each round starts a `child-writer` (alternately durable and
//! atomic-only) that rewrites the target with indexed payloads in a seeded order, waits for its
//! `ready`, kills it after a random 0–10 ms, reaps it and then checks:
//!
//! - the target is byte for byte the payload of the child's last acked write, or of the write
//!   it had in flight (before any ack: the previous contents, or its first write);
//! - after `remove_orphan_temps(dir, 0)` the directory holds the target and nothing else.
//!
//! A SIGKILL cannot lose the page cache, so both durabilities must pass every round.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sessionkit_atomic_fs::{AtomicWriter, Durability, remove_orphan_temps};

use crate::child::{ChildArgs, PayloadKind, TARGET_NAME, Variant, durability_name, target_path};
use crate::payload::{INITIAL_PAYLOAD, IndexedPayloads, IndexedSequence, Known};
use crate::process::WriterProcess;
use crate::rng::{SplitMix64, mix64};
use crate::scratch::ScratchDir;

/// How many violation descriptions a report keeps.
const MAX_EXAMPLES: usize = 10;

/// What to run.
#[derive(Clone, Debug)]
pub struct Kill9Config {
    /// The `sessionkit-torture` binary, which plays the child.
    pub exe: PathBuf,
    /// Where the scratch directory is made.
    pub base_dir: PathBuf,
    /// How many children to kill.
    pub kills: u64,
    /// The seed of the delays and of the children's payload orders.
    pub seed: u64,
    /// The writer the children use.
    pub variant: Variant,
    /// The longest wait between `ready` and the kill.
    pub max_delay: Duration,
}

impl Kill9Config {
    /// The defaults of the plan: 0–10 ms delays, scratch under the system temp dir.
    pub fn new(exe: PathBuf, kills: u64, seed: u64, variant: Variant) -> Kill9Config {
        Kill9Config {
            exe,
            base_dir: std::env::temp_dir(),
            kills,
            seed,
            variant,
            max_delay: Duration::from_millis(10),
        }
    }
}

/// What a run found.
#[derive(Clone, Debug, Default)]
pub struct Kill9Report {
    /// The writer variant.
    pub variant: Option<Variant>,
    /// Children killed and checked.
    pub kills: u64,
    /// Kills after which everything was as required.
    pub verified: u64,
    /// Kills after which something was wrong.
    pub violations: u64,
    /// Orphan temp files removed by the sweeps.
    pub orphans_removed: u64,
    /// Writes the children acked, over all kills.
    pub acked_writes: u64,
    /// Kills of durable children.
    pub durable_kills: u64,
    /// Kills of atomic-only children.
    pub atomic_only_kills: u64,
    /// Kills after which the target held the older of its two allowed versions.
    pub found_older: u64,
    /// Kills after which the target held the write that was in flight.
    pub found_newer: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The first few violations, described.
    pub examples: Vec<String>,
}

impl fmt::Display for Kill9Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = self.variant.map_or("?", Variant::name);
        writeln!(
            f,
            "kills: {}  verified: {}  violations: {}  orphan temps removed: {}  elapsed: {:.1}s",
            self.kills,
            self.verified,
            self.violations,
            self.orphans_removed,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  writer: {variant}; durable kills: {}, atomic-only kills: {}; acked writes: {}",
            self.durable_kills, self.atomic_only_kills, self.acked_writes
        )?;
        write!(
            f,
            "  target held the older version {} times, the write in flight {} times",
            self.found_older, self.found_newer
        )?;
        for example in &self.examples {
            write!(f, "\n  VIOLATION: {example}")?;
        }
        Ok(())
    }
}

/// Runs the kill -9 torture.
///
/// # Errors
///
/// Fails when the harness itself cannot work (a child fails to start or exits on its own, the
/// scratch directory cannot be written); violations are counted in the report instead.
pub fn run(config: &Kill9Config) -> Result<Kill9Report, String> {
    let started = Instant::now();
    let scratch = ScratchDir::new(&config.base_dir, "kill9")
        .map_err(|e| format!("cannot create a scratch dir: {e}"))?;
    let dir = scratch.path();
    let target = target_path(dir);
    let payloads = IndexedPayloads::new();
    reset_target(dir)?;

    let mut rng = SplitMix64::new(mix64(config.seed ^ 0x0c1d_4b11));
    let max_delay_us = config.max_delay.as_micros() as u64;
    let mut report = Kill9Report {
        variant: Some(config.variant),
        ..Kill9Report::default()
    };
    let mut current = Known::Initial;

    for round in 0..config.kills {
        let durability = if round % 2 == 0 {
            report.durable_kills += 1;
            Durability::Durable
        } else {
            report.atomic_only_kills += 1;
            Durability::AtomicOnly
        };
        let child_seed = rng.next_u64();
        let delay = Duration::from_micros(rng.below(max_delay_us + 1));
        let args = ChildArgs {
            dir: dir.to_path_buf(),
            durability,
            seed: child_seed,
            variant: config.variant,
            payloads: PayloadKind::Indexed,
            start_seq: 0,
        };
        let mut process = WriterProcess::spawn(&config.exe, &args)?;
        process.wait_ready()?;
        std::thread::sleep(delay);
        let reaped = process.kill_and_reap()?;
        reaped.check_consecutive(0)?;
        report.kills += 1;
        report.acked_writes += reaped.acks.len() as u64;

        // The child's write k is payload `order[k]`. After ack k it may have finished k + 1
        // but cannot have started k + 2, so these are the only two legal contents.
        let mut order = IndexedSequence::new(child_seed);
        let (older, newer) = match reaped.last() {
            None => (current, Known::Indexed(order.next().unwrap_or(0))),
            Some(k) => {
                let done = order.nth(k as usize).unwrap_or(0);
                (
                    Known::Indexed(done),
                    Known::Indexed(order.next().unwrap_or(0)),
                )
            }
        };

        let mut problems = Vec::new();
        match std::fs::read(&target) {
            Ok(contents) => match payloads.identify(&contents) {
                Some(found) if found == newer => {
                    report.found_newer += 1;
                    current = found;
                }
                Some(found) if found == older => {
                    report.found_older += 1;
                    current = found;
                }
                found => problems.push(describe_bad_contents(
                    &contents, found, older, newer, &payloads,
                )),
            },
            Err(e) => problems.push(format!("target unreadable: {e}")),
        }
        match sweep_orphans(dir) {
            Ok(removed) => report.orphans_removed += removed,
            Err(problem) => problems.push(problem),
        }
        match leftovers(dir) {
            Ok(names) if names.is_empty() => {}
            Ok(names) => problems.push(format!("after the sweep the dir also holds {names:?}")),
            Err(e) => problems.push(e),
        }

        if problems.is_empty() {
            report.verified += 1;
        } else {
            report.violations += 1;
            if report.examples.len() < MAX_EXAMPLES {
                report.examples.push(format!(
                    "kill #{round} ({}, child seed {child_seed}, delay {}us, {} acks): {}",
                    durability_name(durability),
                    delay.as_micros(),
                    reaped.acks.len(),
                    problems.join("; ")
                ));
            }
            // Start the next round from a known state so one bad kill is counted once.
            reset_target(dir)?;
            current = Known::Initial;
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Explains why the target's contents are not allowed, with enough detail to debug.
fn describe_bad_contents(
    contents: &[u8],
    found: Option<Known>,
    older: Known,
    newer: Known,
    payloads: &IndexedPayloads,
) -> String {
    let what = match found {
        Some(known) => format!("{known}, whole but not one of the two allowed"),
        None => {
            let zeros = !contents.is_empty() && contents.iter().all(|&b| b == 0);
            let prefix = |k: Known| {
                contents
                    .iter()
                    .zip(payloads.bytes(k))
                    .take_while(|(a, b)| a == b)
                    .count()
            };
            format!(
                "{} bytes{}, matching the first {} bytes of the older and {} of the newer",
                contents.len(),
                if zeros { ", all zero" } else { "" },
                prefix(older),
                prefix(newer)
            )
        }
    };
    format!("target is {what}; allowed: {older} or {newer}")
}

/// Sweeps orphan temp files from `dir`, whose writers are dead, and returns how many were
/// removed.
pub(crate) fn sweep_orphans(dir: &Path) -> Result<u64, String> {
    let mut removed = 0;
    // The child is dead, so no temp file is in flight. A temp whose timestamp equals the clock
    // reading counts as young even with a zero age limit; a second sweep a moment later gets it.
    for attempt in 0..3 {
        let report = remove_orphan_temps(dir, Duration::ZERO)
            .map_err(|e| format!("remove_orphan_temps failed: {e}"))?;
        removed += report.removed.len() as u64;
        if !report.failed.is_empty() {
            let failed: Vec<String> = report
                .failed
                .iter()
                .map(|f| format!("{}: {}", f.path.display(), f.error))
                .collect();
            return Err(format!("the sweep could not remove {failed:?}"));
        }
        if report.kept_young.is_empty() {
            return Ok(removed);
        }
        if attempt < 2 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    Err("the sweep kept young temp files after the writer was dead".into())
}

/// Every name in `dir` besides the target.
fn leftovers(dir: &Path) -> Result<Vec<String>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != TARGET_NAME {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Removes everything but the target and writes the initial payload.
fn reset_target(dir: &Path) -> Result<(), String> {
    for name in leftovers(dir)? {
        let path = dir.join(&name);
        std::fs::remove_file(&path)
            .map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
    }
    AtomicWriter::new()
        .write(target_path(dir), INITIAL_PAYLOAD)
        .map_err(|e| format!("cannot write the initial payload: {e}"))
}
