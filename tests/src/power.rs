//! Part 2, plan R6: power-loss images of an ext4 loop mount (reliability.md §B.2).
//!
//! A durable `child-writer` rewrites `<mnt>/target` with sequenced payloads and prints
//! `ack <seq>` after each write returns. The parent kills it after a random 5–25 ms, copies the
//! block image with `cp --sparse=always` (which holds only what ext4 had submitted to the
//! device, not its dirty page cache), replays the journal with `e2fsck -fy` and extracts the
//! target with `debugfs`. The extracted file must parse (header and checksum), and its sequence
//! number must be at least the last one acked by this or any earlier child.
//!
//! The verdict depends only on acked writes, so kernel writeback between the kill and the copy
//! can only make more data durable: it can hide a mutant in one image, never fail the correct
//! writer. Each variant runs on its own fresh file system so a mutant's damage never counts
//! against another variant.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sessionkit_atomic_fs::AtomicWriter;
use sessionkit_atomic_fs::Durability;
use sessionkit_test_support::is_root;

use crate::child::{ChildArgs, PayloadKind, TARGET_NAME, Variant, target_path};
use crate::kill9::sweep_orphans;
use crate::payload::{parse_sequenced, sequenced_payload};
use crate::process::WriterProcess;
use crate::rng::{SplitMix64, mix64};
use crate::scratch::ScratchDir;

/// The size of the ext4 image.
const IMAGE_SIZE: u64 = 64 * 1024 * 1024;

/// How many violations a variant's report describes.
const MAX_EXAMPLES: usize = 5;

/// The external programs the power-loss part needs.
#[derive(Clone, Debug)]
pub struct Tools {
    mkfs: PathBuf,
    pub(crate) e2fsck: PathBuf,
    pub(crate) debugfs: PathBuf,
    mount: PathBuf,
    umount: PathBuf,
    pub(crate) cp: PathBuf,
    pub(crate) sync: PathBuf,
    losetup: Option<PathBuf>,
}

/// Finds `name` on `PATH` or in the usual system directories (a root shell's `PATH` may lack
/// `/sbin`).
pub(crate) fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Checks that this machine can build power-loss images.
///
/// # Errors
///
/// The reason it cannot, for a `SKIP:` line.
pub fn prerequisites() -> Result<Tools, String> {
    if !cfg!(target_os = "linux") {
        return Err("needs Linux loop devices".into());
    }
    if !is_root() {
        return Err("needs root to mount loop devices".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("/dev/loop-control is missing".into());
    }
    let need = |name: &str| find_tool(name).ok_or_else(|| format!("{name} not found"));
    Ok(Tools {
        mkfs: need("mkfs.ext4")?,
        e2fsck: need("e2fsck")?,
        debugfs: need("debugfs")?,
        mount: need("mount")?,
        umount: need("umount")?,
        cp: need("cp")?,
        sync: need("sync")?,
        losetup: find_tool("losetup"),
    })
}

/// Decodes the octal escapes (`\040` for a space) of `/proc/self/mountinfo`.
fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Some(code) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The file-system type holding `path`, from the longest matching mount point.
fn fs_type_of(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        let mut halves = line.splitn(2, " - ");
        let (Some(left), Some(right)) = (halves.next(), halves.next()) else {
            continue;
        };
        let Some(mount_point) = left.split(' ').nth(4).map(unescape_mount_path) else {
            continue;
        };
        let Some(fs_type) = right.split(' ').next() else {
            continue;
        };
        let depth = mount_point.len();
        if path.starts_with(&mount_point) && best.as_ref().is_none_or(|(d, _)| depth >= *d) {
            best = Some((depth, fs_type.to_string()));
        }
    }
    best.map(|(_, t)| t)
}

/// A directory on a disk-backed file system for the image, preferring `preferred`.
pub(crate) fn disk_dir(preferred: &Path) -> Result<PathBuf, String> {
    for dir in [preferred, Path::new("/var/tmp")] {
        match fs_type_of(dir).as_deref() {
            Some("tmpfs" | "ramfs") | None => continue,
            Some(_) => return Ok(dir.to_path_buf()),
        }
    }
    Err(format!(
        "no disk-backed temp dir ({} and /var/tmp are memory-backed or missing)",
        preferred.display()
    ))
}

/// Runs a tool, capturing its output.
pub(crate) fn run_tool(tool: &Path, args: &[&std::ffi::OsStr]) -> Result<Output, String> {
    Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))
}

/// Runs a tool that must succeed.
pub(crate) fn run_ok(tool: &Path, args: &[&std::ffi::OsStr]) -> Result<Output, String> {
    let output = run_tool(tool, args)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "{} {:?} failed ({}): {}",
            tool.display(),
            args,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// An ext4 image mounted with `-o loop`; dropping it unmounts (which also detaches the
/// auto-clearing loop device) and removes the image.
#[derive(Debug)]
pub(crate) struct Mounted {
    tools: Tools,
    pub(crate) image: PathBuf,
    pub(crate) mnt: PathBuf,
}

impl Mounted {
    /// Creates a 64 MiB sparse image in `dir`, formats it and mounts it with `commit=60`, so
    /// only fsync makes anything durable within a run.
    pub(crate) fn new(tools: &Tools, dir: &Path) -> Result<Mounted, String> {
        let image = dir.join("fs.img");
        let mnt = dir.join("mnt");
        File::create(&image)
            .and_then(|f| f.set_len(IMAGE_SIZE))
            .map_err(|e| format!("cannot create {}: {e}", image.display()))?;
        run_ok(
            &tools.mkfs,
            &["-q".as_ref(), "-F".as_ref(), image.as_os_str()],
        )?;
        std::fs::create_dir(&mnt).map_err(|e| format!("cannot create {}: {e}", mnt.display()))?;
        run_ok(
            &tools.mount,
            &[
                "-o".as_ref(),
                "loop,commit=60".as_ref(),
                image.as_os_str(),
                mnt.as_os_str(),
            ],
        )?;
        Ok(Mounted {
            tools: tools.clone(),
            image,
            mnt,
        })
    }

    fn unmount(&self) -> Result<(), String> {
        let mut last = String::new();
        // A just-killed writer's last references can linger for a moment; retry briefly.
        for _ in 0..20 {
            match run_ok(&self.tools.umount, &[self.mnt.as_os_str()]) {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = run_tool(&self.tools.umount, &["-l".as_ref(), self.mnt.as_os_str()]);
        Err(last)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("warning: could not unmount {}: {e}", self.mnt.display());
        }
        // `-o loop` sets auto-clear, so the device is gone once unmounted; detach any straggler.
        if let Some(losetup) = &self.tools.losetup
            && let Ok(out) = run_tool(losetup, &["-j".as_ref(), self.image.as_os_str()])
        {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(dev) = line.split(':').next().filter(|d| d.starts_with("/dev/")) {
                    eprintln!("warning: detaching leftover loop device {dev}");
                    let _ = run_tool(losetup, &["-d".as_ref(), dev.as_ref()]);
                }
            }
        }
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct PowerConfig {
    /// The `sessionkit-torture` binary, which plays the child.
    pub exe: PathBuf,
    /// Where the image goes (must be disk-backed; `/var/tmp` is tried otherwise).
    pub base_dir: PathBuf,
    /// Images to make with the correct writer.
    pub correct_images: u64,
    /// The most images to spend on each mutant before declaring it not caught.
    pub mutant_cap: u64,
    /// The seed of the delays, body sizes and child seeds.
    pub seed: u64,
}

/// The results for one writer variant.
#[derive(Clone, Debug)]
pub struct VariantReport {
    /// The writer.
    pub variant: Variant,
    /// Images checked.
    pub images: u64,
    /// Images whose target was older than an acked write.
    pub lost: u64,
    /// Images whose target did not parse, or whose `e2fsck` failed.
    pub corrupt: u64,
    /// Writes acked over all images.
    pub acked_writes: u64,
    /// The first few violations, described.
    pub examples: Vec<String>,
    /// Wall-clock time of this variant.
    pub elapsed: Duration,
}

impl VariantReport {
    /// True if any image showed a violation.
    pub fn caught(&self) -> bool {
        self.lost + self.corrupt > 0
    }
}

/// What the power-loss part found.
#[derive(Clone, Debug)]
pub struct PowerReport {
    /// One row per variant, the correct writer first.
    pub variants: Vec<VariantReport>,
    /// Wall-clock time of the whole part.
    pub elapsed: Duration,
}

impl PowerReport {
    /// The reasons this part fails: the correct writer lost or corrupted something, or a mutant
    /// went uncaught (so the harness could not have failed).
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for v in &self.variants {
            if v.variant == Variant::Correct {
                if v.caught() {
                    failures.push(format!(
                        "power-loss: the correct writer had {} lost and {} corrupt images",
                        v.lost, v.corrupt
                    ));
                }
            } else if !v.caught() {
                failures.push(format!(
                    "power-loss: mutant {} was not caught in {} images; the harness cannot fail",
                    v.variant, v.images
                ));
            }
        }
        failures
    }
}

impl fmt::Display for PowerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<15} {:>7} {:>6} {:>8}  {:<8} {:>7} {:>8}",
            "variant", "images", "lost", "corrupt", "caught?", "acked", "elapsed"
        )?;
        for v in &self.variants {
            let caught = match (v.variant, v.caught()) {
                (Variant::Correct, false) => "- (ok)",
                (Variant::Correct, true) => "FAIL",
                (_, true) => "yes",
                (_, false) => "NO",
            };
            writeln!(
                f,
                "{:<15} {:>7} {:>6} {:>8}  {:<8} {:>7} {:>7.1}s",
                v.variant.name(),
                v.images,
                v.lost,
                v.corrupt,
                caught,
                v.acked_writes,
                v.elapsed.as_secs_f64()
            )?;
        }
        for v in &self.variants {
            for example in &v.examples {
                writeln!(f, "  {}: {example}", v.variant)?;
            }
        }
        write!(f, "elapsed: {:.1}s", self.elapsed.as_secs_f64())
    }
}

/// The result of a power-loss part: this one's report, or another suite's.
#[derive(Clone, Debug)]
pub enum PowerOutcome<R = PowerReport> {
    /// The machine cannot run it; the reason goes on a `SKIP:` line.
    Skipped(String),
    /// It ran.
    Ran(R),
}

/// What every power-loss part runs on: the tools, a disk-backed directory for the images and
/// a RAM-backed one (where there is one) for copies of them.
pub(crate) struct Rig {
    pub(crate) tools: Tools,
    image_base: PathBuf,
    copies: ScratchDir,
}

impl Rig {
    /// Finds the tools and the directories; `Ok(Err(reason))` when this machine cannot make
    /// power-loss images at all. `label` names the scratch directories.
    pub(crate) fn new(base_dir: &Path, label: &str) -> Result<Result<Rig, String>, String> {
        let tools = match prerequisites() {
            Ok(tools) => tools,
            Err(reason) => return Ok(Err(reason)),
        };
        let image_base = match disk_dir(base_dir) {
            Ok(dir) => dir,
            Err(reason) => return Ok(Err(reason)),
        };
        let shm = Path::new("/dev/shm");
        let copy_base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let copies = ScratchDir::new(&copy_base, &format!("{label}copies"))
            .map_err(|e| format!("cannot create a dir for image copies: {e}"))?;
        Ok(Ok(Rig {
            tools,
            image_base,
            copies,
        }))
    }

    /// A path in the copies' directory.
    pub(crate) fn copy_path(&self, name: &str) -> PathBuf {
        self.copies.path().join(name)
    }

    /// Calls `each` with every item of `plan` and its index, each on a freshly made and
    /// mounted image, which is unmounted and removed afterwards whatever came of it.
    /// `Ok(Err(reason))` if the first image cannot be mounted: the machine cannot do it at
    /// all.
    pub(crate) fn on_fresh_images<T, R>(
        &self,
        label: &str,
        plan: impl IntoIterator<Item = T>,
        mut each: impl FnMut(usize, T, &Mounted) -> Result<R, String>,
    ) -> Result<Result<Vec<R>, String>, String> {
        let mut results = Vec::new();
        for (index, item) in plan.into_iter().enumerate() {
            let scratch = ScratchDir::new(&self.image_base, &format!("{label}image"))
                .map_err(|e| format!("cannot create a dir for the image: {e}"))?;
            let mounted = match Mounted::new(&self.tools, scratch.path()) {
                Ok(m) => m,
                // The first mount proves whether this machine can do it at all.
                Err(reason) if index == 0 => {
                    return Ok(Err(format!("cannot mount an ext4 loop image: {reason}")));
                }
                Err(e) => return Err(e),
            };
            let result = each(index, item, &mounted);
            // Unmount before the scratch dir goes, whatever the result.
            drop(mounted);
            drop(scratch);
            results.push(result?);
        }
        Ok(Ok(results))
    }

    /// Copies the mounted image to `copy` with `cp --sparse=always` (only what ext4 has
    /// submitted to the device: the disk after a power cut now) and replays the copy's
    /// journal with `e2fsck -fy`. Then `judge` looks at the copy, unless `e2fsck` found it
    /// beyond repair, which `corrupt` turns into a verdict. The copy is removed afterwards,
    /// whatever came of it.
    pub(crate) fn judge_copy<V>(
        &self,
        mounted: &Mounted,
        copy: &Path,
        corrupt: impl FnOnce(String) -> V,
        judge: impl FnOnce() -> Result<V, String>,
    ) -> Result<V, String> {
        run_ok(
            &self.tools.cp,
            &[
                "--sparse=always".as_ref(),
                mounted.image.as_os_str(),
                copy.as_os_str(),
            ],
        )?;
        let verdict =
            run_tool(&self.tools.e2fsck, &["-fy".as_ref(), copy.as_os_str()]).and_then(|fsck| {
                match fsck.status.code() {
                    Some(0 | 1) => judge(),
                    other => Ok(corrupt(format!(
                        "e2fsck -fy exited with {other:?}: {}",
                        String::from_utf8_lossy(&fsck.stdout).trim()
                    ))),
                }
            });
        std::fs::remove_file(copy).map_err(|e| format!("cannot remove {}: {e}", copy.display()))?;
        verdict
    }
}

/// Runs the correct writer, then each fsync mutant, each on a fresh image.
///
/// # Errors
///
/// Fails when the harness itself breaks after a first image was mounted successfully;
/// violations are counted in the report instead.
pub fn run(config: &PowerConfig) -> Result<PowerOutcome, String> {
    let started = Instant::now();
    let rig = match Rig::new(&config.base_dir, "")? {
        Ok(rig) => rig,
        Err(reason) => return Ok(PowerOutcome::Skipped(reason)),
    };
    let plan = [
        (Variant::Correct, config.correct_images, false),
        (Variant::NoTempFsync, config.mutant_cap, true),
        (Variant::NoDirFsync, config.mutant_cap, true),
    ];
    let mut next_seq = 1;
    let variants = rig.on_fresh_images("", plan, |index, planned, mounted| {
        let (variant, images, stop_when_caught) = planned;
        let mut rng = SplitMix64::new(mix64(config.seed ^ ((index as u64 + 1) << 40)));
        let run = Run {
            config,
            rig: &rig,
            mounted,
            copy: rig.copy_path("copy.img"),
        };
        run.variant(variant, images, stop_when_caught, &mut rng, &mut next_seq)
    })?;
    Ok(match variants {
        Ok(variants) => PowerOutcome::Ran(PowerReport {
            variants,
            elapsed: started.elapsed(),
        }),
        Err(reason) => PowerOutcome::Skipped(reason),
    })
}

/// One variant's run on one mounted image.
struct Run<'a> {
    config: &'a PowerConfig,
    rig: &'a Rig,
    mounted: &'a Mounted,
    copy: PathBuf,
}

/// The verdict on one image.
enum Verdict {
    Ok,
    Lost(String),
    Corrupt(String),
}

impl Run<'_> {
    fn variant(
        &self,
        variant: Variant,
        images: u64,
        stop_when_caught: bool,
        rng: &mut SplitMix64,
        next_seq: &mut u64,
    ) -> Result<VariantReport, String> {
        let started = Instant::now();
        let mnt = &self.mounted.mnt;
        let target = target_path(mnt);

        // The initial contents are durable before the first child starts, so every image must
        // hold at least them.
        let initial_seq = *next_seq;
        *next_seq += 1;
        AtomicWriter::new()
            .write(&target, &sequenced_payload(initial_seq, 100))
            .map_err(|e| format!("cannot write the initial payload: {e}"))?;
        run_ok(&self.rig.tools.sync, &["-f".as_ref(), target.as_os_str()])?;
        let mut required = initial_seq;

        let mut report = VariantReport {
            variant,
            images: 0,
            lost: 0,
            corrupt: 0,
            acked_writes: 0,
            examples: Vec::new(),
            elapsed: Duration::ZERO,
        };
        for image in 0..images {
            let child_seed = rng.next_u64();
            let delay = Duration::from_micros(rng.range_inclusive(5_000, 25_000));
            let start_seq = *next_seq;
            let args = ChildArgs {
                dir: mnt.clone(),
                durability: Durability::Durable,
                seed: child_seed,
                variant,
                payloads: PayloadKind::Sequenced,
                start_seq,
            };
            let mut process = WriterProcess::spawn(&self.config.exe, &args)?;
            process.wait_ready()?;
            std::thread::sleep(delay);
            let reaped = process.kill_and_reap()?;
            reaped.check_consecutive(start_seq)?;
            report.acked_writes += reaped.acks.len() as u64;

            // The child may have finished the write after its last ack, never one beyond it.
            let newest_possible = reaped.last().map_or(start_seq, |a| a + 1);
            *next_seq = newest_possible + 1;
            required = required.max(reaped.last().unwrap_or(0));

            let verdict = self.check_image(required, newest_possible)?;
            report.images += 1;
            let problem = match verdict {
                Verdict::Ok => None,
                Verdict::Lost(why) => {
                    report.lost += 1;
                    Some(format!("lost: {why}"))
                }
                Verdict::Corrupt(why) => {
                    report.corrupt += 1;
                    Some(format!("corrupt: {why}"))
                }
            };
            // Crashed writers leave temp files on the live file system; keep it from filling.
            sweep_orphans(mnt)?;
            if let Some(problem) = problem {
                if report.examples.len() < MAX_EXAMPLES {
                    let acks = match (reaped.acks.first(), reaped.last()) {
                        (Some(first), Some(last)) => format!("acks {first}..={last}"),
                        _ => format!("no acks, first seq {start_seq}"),
                    };
                    report.examples.push(format!(
                        "image #{image} (child seed {child_seed}, delay {}us, {acks}): {problem}",
                        delay.as_micros(),
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

    /// Copies the image, replays its journal and judges the target it holds.
    fn check_image(&self, required: u64, newest_possible: u64) -> Result<Verdict, String> {
        self.rig
            .judge_copy(self.mounted, &self.copy, Verdict::Corrupt, || {
                self.judge_target(required, newest_possible)
            })
    }

    fn judge_target(&self, required: u64, newest_possible: u64) -> Result<Verdict, String> {
        let copy = self.copy.as_os_str();
        let cat = format!("cat /{TARGET_NAME}");
        let out = run_tool(
            &self.rig.tools.debugfs,
            &["-R".as_ref(), cat.as_ref(), copy],
        )?;
        if !out.status.success() {
            return Ok(Verdict::Corrupt(format!(
                "debugfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let contents = out.stdout;
        Ok(match parse_sequenced(&contents) {
            Err(e) => {
                let zeros = !contents.is_empty() && contents.iter().all(|&b| b == 0);
                Verdict::Corrupt(format!(
                    "target of {} bytes{}: {e}",
                    contents.len(),
                    if zeros { ", all NUL" } else { "" }
                ))
            }
            Ok(seq) if seq > newest_possible => Verdict::Corrupt(format!(
                "target holds seq {seq}, newer than any write started ({newest_possible})"
            )),
            Ok(seq) if seq < required => Verdict::Lost(format!(
                "target holds seq {seq}, but seq {required} was acked"
            )),
            Ok(_) => Verdict::Ok,
        })
    }
}
