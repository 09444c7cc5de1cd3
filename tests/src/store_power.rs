//! The session-store suite, part 2: power-loss images of a durable store on an ext4 loop mount,
//! built with [`crate::power`]'s machinery (reliability.md §B.2).
//!
//! A `store-child` (see [`crate::store_child`]) updates `<mnt>/store-<n>` from several threads
//! with [`SyncMode::EveryBatch`](sessionkit_session_store::SyncMode::EveryBatch), compacting
//! often. The parent kills it after a random 5–25 ms and copies the block image with
//! `cp --sparse=always`, which holds only what ext4 had submitted to the device, not its dirty
//! page cache: the copy is the disk after a power cut at that moment. The copy's journal is
//! replayed with `e2fsck -fy`, the store directory extracted with `debugfs rdump`, and opened
//! with [`Store::open`] (no `recover`): it must open, and every key must hold its state after
//! its last acknowledged update or a later one (see [`Model::check`]).
//!
//! Then the live store is opened and checked as after a kill -9, which also tells the model
//! what the next child starts from. The mount uses `commit=60`, so only fsync makes anything
//! durable within a run.
//!
//! With `strace` at hand, the correct writer runs again on its own fresh image with every child
//! under injected faults ([`fault_plan`], as in the kill -9 faults part): batches fail and are
//! cut back out (the cut fsynced) or fenced off, compactions and fences fail. Each image must
//! hold every acknowledged update and no update the store said failed, whatever the power cut
//! caught in flight: a cut not yet durable, a fence, a compaction's renames.
//!
//! The `no-fsync` mutant ([`StoreVariant::NoFsync`]: `SyncMode::Never`, acknowledged as durable)
//! runs on its own fresh image until an image shows it lost an acknowledged update.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sessionkit_session_store::Store;

use crate::kill9::sweep_orphans;
use crate::power::{Mounted, PowerOutcome, Rig, run_ok, run_tool};
use crate::rng::{SplitMix64, mix64};
use crate::store::{InFlight, Model, StoreProcess, Verdict, fault_plan, journal_epoch, list_store};
use crate::store_child::{JOURNAL_NAME, StoreChildArgs, StoreVariant, snapshot_path};

/// How many violations a variant's report describes.
const MAX_EXAMPLES: usize = 5;

/// What to run.
#[derive(Clone, Debug)]
pub struct StorePowerConfig {
    /// The `sessionkit-torture` binary, which plays the child.
    pub exe: PathBuf,
    /// Where the image goes (must be disk-backed; `/var/tmp` is tried otherwise).
    pub base_dir: PathBuf,
    /// Images to make with the correct writer.
    pub correct_images: u64,
    /// Images to make with the correct writer under injected faults.
    pub faulted_images: u64,
    /// `strace`, which injects the faults; `None` leaves the faulted images out.
    pub strace: Option<PathBuf>,
    /// The most images to spend on the mutant before declaring it not caught.
    pub mutant_cap: u64,
    /// The seed of the delays and the children's op streams.
    pub seed: u64,
    /// Worker threads per child.
    pub threads: u64,
    /// Long-lived keys per thread.
    pub live_keys: u64,
    /// The longest pause of each child's compactor thread, in ms.
    pub compact_every_ms: u64,
    /// Reader threads per child.
    pub readers: u64,
    /// A fresh store starts every this many images.
    pub fresh_every: u64,
}

impl StorePowerConfig {
    /// The defaults: 4 threads of 8 live keys, compactions every 0-8 ms, a fresh store every 50
    /// images.
    pub fn new(exe: PathBuf, correct_images: u64, mutant_cap: u64, seed: u64) -> StorePowerConfig {
        StorePowerConfig {
            exe,
            base_dir: std::env::temp_dir(),
            correct_images,
            faulted_images: 0,
            strace: None,
            mutant_cap,
            seed,
            threads: 4,
            live_keys: 8,
            compact_every_ms: 8,
            readers: 1,
            fresh_every: 50,
        }
    }
}

/// The results for one writer variant.
#[derive(Clone, Debug)]
pub struct StorePowerVariant {
    /// The writer.
    pub variant: StoreVariant,
    /// Whether its children ran under injected faults.
    pub faults: bool,
    /// Images checked.
    pub images: u64,
    /// Images in which an acknowledged update was missing.
    pub lost: u64,
    /// Images whose store did not open, or held a state no op produced, or whose `e2fsck`
    /// failed.
    pub corrupt: u64,
    /// Kills after which the live store broke the kill -9 rules.
    pub live_violations: u64,
    /// Images whose child met a store error before its kill (a failed update, compaction or
    /// read, or a disk check after a compaction). Expected under injected faults.
    pub store_errors: u64,
    /// Updates that failed under injected faults with a known outcome (none may be found) and
    /// with an unknown one.
    pub failed_updates: u64,
    /// Updates whose outcome the store said is unknown.
    pub unknown_outcomes: u64,
    /// Updates acknowledged over all images.
    pub acked: u64,
    /// Images whose store open cut a torn journal tail.
    pub torn_tails: u64,
    /// Compactions completed on the live store (journal epoch growth).
    pub compactions: u64,
    /// The images whose store held a fence file when the power was cut.
    pub fences: u64,
    /// The image number (from 1) of the first image with a violation.
    pub first_caught: Option<u64>,
    /// The first few violations, described.
    pub examples: Vec<String>,
    /// Wall-clock time of this variant.
    pub elapsed: Duration,
}

impl StorePowerVariant {
    /// True if any image showed a violation.
    pub fn caught(&self) -> bool {
        self.lost + self.corrupt > 0
    }
}

/// What the power-loss part found.
#[derive(Clone, Debug)]
pub struct StorePowerReport {
    /// One row per variant, the correct writer first.
    pub variants: Vec<StorePowerVariant>,
    /// Wall-clock time of the whole part.
    pub elapsed: Duration,
}

impl StorePowerReport {
    /// The reasons this part fails: the correct writer lost or corrupted something, or the
    /// mutant went uncaught (so the harness could not have failed).
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for v in &self.variants {
            if v.variant == StoreVariant::Correct {
                // Under injected faults the store fails updates by design.
                let errors = if v.faults { 0 } else { v.store_errors };
                if v.caught() || v.live_violations + errors > 0 {
                    failures.push(format!(
                        "store power-loss: the correct writer{} had {} lost and {} corrupt \
                         images, {} live-store violations, {} store errors",
                        if v.faults { " under faults" } else { "" },
                        v.lost,
                        v.corrupt,
                        v.live_violations,
                        errors
                    ));
                }
            } else if !v.caught() {
                failures.push(format!(
                    "store power-loss: mutant {} was not caught in {} images; the harness cannot \
                     fail",
                    v.variant, v.images
                ));
            }
        }
        failures
    }
}

impl fmt::Display for StorePowerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<14} {:>7} {:>6} {:>8} {:>5} {:>6}  {:<14} {:>7} {:>5} {:>8} {:>8}",
            "variant",
            "images",
            "lost",
            "corrupt",
            "live",
            "errors",
            "caught?",
            "acked",
            "torn",
            "compact",
            "elapsed"
        )?;
        for v in &self.variants {
            let caught = match (v.variant, v.caught()) {
                (StoreVariant::Correct, false) => "- (ok)".to_owned(),
                (StoreVariant::Correct, true) => "FAIL".to_owned(),
                (_, true) => format!("yes, image {}", v.first_caught.unwrap_or(0)),
                (_, false) => "NO".to_owned(),
            };
            let name = if v.faults {
                format!("{}+faults", v.variant.name())
            } else {
                v.variant.name().to_owned()
            };
            writeln!(
                f,
                "{:<14} {:>7} {:>6} {:>8} {:>5} {:>6}  {:<14} {:>7} {:>5} {:>8} {:>7.1}s",
                name,
                v.images,
                v.lost,
                v.corrupt,
                v.live_violations,
                v.store_errors,
                caught,
                v.acked,
                v.torn_tails,
                v.compactions,
                v.elapsed.as_secs_f64()
            )?;
        }
        for v in self.variants.iter().filter(|v| v.faults) {
            writeln!(
                f,
                "  under faults: {} updates failed with a known outcome, {} with an unknown one; \
                 {} images with a fence up",
                v.failed_updates, v.unknown_outcomes, v.fences
            )?;
        }
        for v in &self.variants {
            for example in &v.examples {
                let faults = if v.faults { "+faults" } else { "" };
                writeln!(f, "  {}{faults}: {example}", v.variant)?;
            }
        }
        write!(f, "elapsed: {:.1}s", self.elapsed.as_secs_f64())
    }
}

/// The result of the power-loss part.
pub type StorePowerOutcome = PowerOutcome<StorePowerReport>;

/// Runs the correct writer, then (with `strace`) the correct writer under injected faults, then
/// the no-fsync mutant, each on a fresh image.
///
/// # Errors
///
/// Fails when the harness itself breaks after a first image was mounted successfully;
/// violations are counted in the report instead.
pub fn run(config: &StorePowerConfig) -> Result<StorePowerOutcome, String> {
    let started = Instant::now();
    let rig = match Rig::new(&config.base_dir, "store-")? {
        Ok(rig) => rig,
        Err(reason) => return Ok(PowerOutcome::Skipped(reason)),
    };
    let mut plan = vec![(StoreVariant::Correct, config.correct_images, false, None)];
    if let Some(strace) = config
        .strace
        .as_deref()
        .filter(|_| config.faulted_images > 0)
    {
        plan.push((
            StoreVariant::Correct,
            config.faulted_images,
            false,
            Some(strace),
        ));
    }
    plan.push((StoreVariant::NoFsync, config.mutant_cap, true, None));
    let variants = rig.on_fresh_images("store-", plan, |index, planned, mounted| {
        let (variant, images, stop_when_caught, strace) = planned;
        let mut rng = SplitMix64::new(mix64(config.seed ^ ((index as u64 + 1) << 44) ^ 0x5707e));
        let run = Run {
            config,
            rig: &rig,
            mounted,
            copy: rig.copy_path("copy.img"),
            dump: rig.copy_path("dump"),
        };
        run.variant(variant, images, stop_when_caught, strace, &mut rng)
    })?;
    Ok(match variants {
        Ok(variants) => PowerOutcome::Ran(StorePowerReport {
            variants,
            elapsed: started.elapsed(),
        }),
        Err(reason) => PowerOutcome::Skipped(reason),
    })
}

/// One variant's run on one mounted image.
struct Run<'a> {
    config: &'a StorePowerConfig,
    rig: &'a Rig,
    mounted: &'a Mounted,
    copy: PathBuf,
    dump: PathBuf,
}

/// The verdict on one image.
enum ImageVerdict {
    /// The store opened; the check's verdict, and whether the open cut a torn tail.
    Checked(Verdict, bool),
    Corrupt(String),
}

impl Run<'_> {
    fn variant(
        &self,
        variant: StoreVariant,
        images: u64,
        stop_when_caught: bool,
        strace: Option<&std::path::Path>,
        rng: &mut SplitMix64,
    ) -> Result<StorePowerVariant, String> {
        let started = Instant::now();
        let mnt = &self.mounted.mnt;
        let mut report = StorePowerVariant {
            variant,
            faults: strace.is_some(),
            images: 0,
            lost: 0,
            corrupt: 0,
            live_violations: 0,
            store_errors: 0,
            failed_updates: 0,
            unknown_outcomes: 0,
            acked: 0,
            torn_tails: 0,
            compactions: 0,
            fences: 0,
            first_caught: None,
            examples: Vec::new(),
            elapsed: Duration::ZERO,
        };
        let mut name = String::new();
        let mut model = Model::new();
        let mut gen_ = 0;
        let mut epoch = None;
        let mut force_fresh = false;
        for image in 0..images {
            if image == 0
                || force_fresh
                || (self.config.fresh_every > 0 && image % self.config.fresh_every == 0)
            {
                force_fresh = false;
                if !name.is_empty() {
                    let old = mnt.join(&name);
                    std::fs::remove_dir_all(&old)
                        .map_err(|e| format!("cannot remove {}: {e}", old.display()))?;
                }
                name = format!("store-{image}");
                let dir = mnt.join(&name);
                std::fs::create_dir(&dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                // The directory itself must be durable before any image can be judged.
                run_ok(&self.rig.tools.sync, &["-f".as_ref(), dir.as_os_str()])?;
                model = Model::new();
                gen_ = 0;
                epoch = None;
            }
            let dir = mnt.join(&name);
            gen_ += 1;
            let args = StoreChildArgs {
                dir: dir.clone(),
                seed: rng.next_u64(),
                gen_,
                threads: self.config.threads,
                thread_base: 0,
                live_keys: self.config.live_keys,
                compact_every_ms: self.config.compact_every_ms,
                readers: self.config.readers,
                disk_check: true,
                variant,
                faults: strace.is_some(),
            };
            let delay = Duration::from_micros(rng.range_inclusive(5_000, 25_000));
            let mut process = match strace {
                Some(strace) => {
                    let plan = fault_plan(rng, &dir.join(JOURNAL_NAME));
                    StoreProcess::spawn_traced(strace, &plan.options, &self.config.exe, &args)?
                }
                None => StoreProcess::spawn(&self.config.exe, &args)?,
            };
            let mut store_error = process.wait_ready()?;
            std::thread::sleep(delay);
            let reaped = process.kill_and_reap()?;
            store_error = store_error.or(reaped.errors.first().cloned());
            let acks = &reaped.acks;
            report.acked += acks.len() as u64;
            for fail in &reaped.fails {
                if fail.unknown {
                    report.unknown_outcomes += 1;
                } else {
                    report.failed_updates += 1;
                }
            }
            if dir.join(format!("{JOURNAL_NAME}.fence")).exists() {
                report.fences += 1;
            }
            if let Some(error) = &store_error {
                report.store_errors += 1;
                // Under injected faults the store fails updates by design.
                if strace.is_none() && report.examples.len() < MAX_EXAMPLES {
                    report.examples.push(format!(
                        "image #{image} (store {name}, gen {gen_}, child seed {}): the store \
                         failed the child: {error}",
                        args.seed
                    ));
                }
            }
            let in_flight = model.record_child(&args, acks, &reaped.fails)?;

            let verdict = self.check_image(&name, &model, &in_flight)?;
            report.images += 1;
            if let ImageVerdict::Checked(_, true) = verdict {
                report.torn_tails += 1;
            }
            let problem = match verdict {
                ImageVerdict::Checked(v, _) if v.ok() => None,
                ImageVerdict::Checked(v, _) => {
                    if v.lost.is_empty() {
                        report.corrupt += 1;
                    } else {
                        report.lost += 1;
                    }
                    Some(v.describe())
                }
                ImageVerdict::Corrupt(why) => {
                    report.corrupt += 1;
                    Some(why)
                }
            };

            // The live store: the kill -9 rules, and what the next child starts from.
            let live = match Store::open(snapshot_path(&dir)) {
                Ok(store) => match list_store(&store) {
                    Ok(observed) => {
                        let verdict = model.check(&observed, &in_flight, true);
                        model.settle(&observed, &verdict);
                        (!verdict.ok()).then(|| verdict.describe())
                    }
                    Err(e) => Some(e),
                },
                Err(e) => Some(format!("live reopen failed: {e}")),
            };
            let now = journal_epoch(&dir);
            if let (Some(before), Some(after)) = (epoch, now) {
                report.compactions += after.saturating_sub(before);
            }
            epoch = now;
            // Crashed compactions leave temp files on the live file system; keep it clean.
            sweep_orphans(&dir)?;

            if let Some(live) = &live {
                report.live_violations += 1;
                if report.examples.len() < MAX_EXAMPLES {
                    report.examples.push(format!(
                        "image #{image} (child seed {}, delay {}us, {} acks): live store after \
                         the kill: {live}",
                        args.seed,
                        delay.as_micros(),
                        acks.len()
                    ));
                }
                // A store that cannot be opened cannot go on; start a fresh one.
                force_fresh = live.starts_with("live reopen failed");
            }
            if let Some(problem) = problem {
                report.first_caught.get_or_insert(image + 1);
                if report.examples.len() < MAX_EXAMPLES {
                    report.examples.push(format!(
                        "image #{image} (store {name}, gen {gen_}, child seed {}, delay {}us, \
                         {} acks): {problem}",
                        args.seed,
                        delay.as_micros(),
                        acks.len()
                    ));
                }
                if stop_when_caught {
                    break;
                }
            }
        }
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Copies the image, replays its journal, extracts the store and judges it.
    fn check_image(
        &self,
        name: &str,
        model: &Model,
        in_flight: &InFlight,
    ) -> Result<ImageVerdict, String> {
        let verdict = self
            .rig
            .judge_copy(self.mounted, &self.copy, ImageVerdict::Corrupt, || {
                self.judge_store(name, model, in_flight)
            });
        if self.dump.exists() {
            std::fs::remove_dir_all(&self.dump)
                .map_err(|e| format!("cannot remove {}: {e}", self.dump.display()))?;
        }
        verdict
    }

    fn judge_store(
        &self,
        name: &str,
        model: &Model,
        in_flight: &InFlight,
    ) -> Result<ImageVerdict, String> {
        let copy = self.copy.as_os_str();
        std::fs::create_dir(&self.dump)
            .map_err(|e| format!("cannot create {}: {e}", self.dump.display()))?;
        let rdump = format!("rdump /{name} {}", self.dump.display());
        let out = run_tool(
            &self.rig.tools.debugfs,
            &["-R".as_ref(), rdump.as_ref(), copy],
        )?;
        if !out.status.success() {
            return Ok(ImageVerdict::Corrupt(format!(
                "debugfs rdump failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let dir = self.dump.join(name);
        let store = match Store::builder().create(false).open(snapshot_path(&dir)) {
            Ok(store) => store,
            // A child under injected faults may fail to create a fresh store at all: the image
            // then holds no store, which is an empty one as far as the model goes (and is
            // wrong if anything was acknowledged).
            Err(sessionkit_session_store::Error::NoStore { .. }) => {
                let observed = std::collections::BTreeMap::new();
                return Ok(ImageVerdict::Checked(
                    model.check(&observed, in_flight, false),
                    false,
                ));
            }
            Err(e) => {
                return Ok(ImageVerdict::Corrupt(format!(
                    "the store in the image does not open: {e}"
                )));
            }
        };
        let torn = store.open_report().torn_tail_bytes.is_some();
        let observed = list_store(&store)?;
        Ok(ImageVerdict::Checked(
            model.check(&observed, in_flight, false),
            torn,
        ))
    }
}
