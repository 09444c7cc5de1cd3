//! The `child-writer` role: a process that rewrites `<dir>/target` in a loop until killed.
//!
//! It prints `ready` once set up, then `ack <n>` after every write that returned `Ok`, each
//! line flushed in one `write(2)`. For indexed payloads `n` counts writes from 0; for sequenced
//! payloads it is the payload's sequence number.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessionkit_atomic_fs::{AtomicWriter, Durability, FileSystem};

use crate::flags::Flags;
use crate::payload::{IndexedPayloads, IndexedSequence, Known, random_body_len, sequenced_payload};
use crate::rng::{SplitMix64, mix64};

/// The file every child writes, inside the directory it is given.
pub const TARGET_NAME: &str = "target";

/// A child that is never killed stops on its own after this long, so a lost parent cannot leave
/// it spinning forever.
const RUNAWAY_LIMIT: Duration = Duration::from_secs(120);

/// The target inside `dir`.
pub fn target_path(dir: &Path) -> PathBuf {
    dir.join(TARGET_NAME)
}

/// How the child writes: the real protocol or a deliberately broken one the harness must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Variant {
    /// [`AtomicWriter`] as shipped.
    Correct,
    /// [`AtomicWriter`] over a file system whose `sync_all` (the temp-file fsync) does nothing.
    NoTempFsync,
    /// [`AtomicWriter`] over a file system whose `sync_dir` does nothing.
    NoDirFsync,
    /// No temp file at all: `std::fs::write` truncates and rewrites the target in place.
    InPlace,
}

impl Variant {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Correct => "correct",
            Variant::NoTempFsync => "no-temp-fsync",
            Variant::NoDirFsync => "no-dir-fsync",
            Variant::InPlace => "in-place",
        }
    }

    /// The variant called `name`.
    pub fn parse(name: &str) -> Option<Variant> {
        [
            Variant::Correct,
            Variant::NoTempFsync,
            Variant::NoDirFsync,
            Variant::InPlace,
        ]
        .into_iter()
        .find(|v| v.name() == name)
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which payload family the child writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadKind {
    /// [`IndexedPayloads`] in the order of [`IndexedSequence`].
    Indexed,
    /// Sequenced payloads numbered from the start sequence, with random body sizes.
    Sequenced,
}

/// The name of a durability on the command line.
pub fn durability_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Durable => "durable",
        Durability::AtomicOnly => "atomic-only",
    }
}

/// Everything a child needs; [`ChildArgs::to_args`] and [`ChildArgs::parse`] round-trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildArgs {
    /// The directory holding the target.
    pub dir: PathBuf,
    /// The durability passed to [`AtomicWriter`].
    pub durability: Durability,
    /// The seed of the payload order and sizes.
    pub seed: u64,
    /// The writer variant.
    pub variant: Variant,
    /// The payload family.
    pub payloads: PayloadKind,
    /// The sequence number of the first sequenced payload.
    pub start_seq: u64,
}

impl ChildArgs {
    /// The command line after the `child-writer` role word.
    pub fn to_args(&self) -> Vec<OsString> {
        let payloads = match self.payloads {
            PayloadKind::Indexed => "indexed",
            PayloadKind::Sequenced => "sequenced",
        };
        vec![
            "--dir".into(),
            self.dir.clone().into_os_string(),
            "--durability".into(),
            durability_name(self.durability).into(),
            "--seed".into(),
            self.seed.to_string().into(),
            "--mutant".into(),
            self.variant.name().into(),
            "--payloads".into(),
            payloads.into(),
            "--start-seq".into(),
            self.start_seq.to_string().into(),
        ]
    }

    /// Parses the command line after the role word.
    ///
    /// # Errors
    ///
    /// A message naming the bad or missing option.
    pub fn parse(args: &[OsString]) -> Result<ChildArgs, String> {
        let mut dir = None;
        let mut durability = Durability::Durable;
        let mut seed = 0;
        let mut variant = Variant::Correct;
        let mut payloads = PayloadKind::Indexed;
        let mut start_seq = 1;
        let mut flags = Flags::new(args);
        while let Some(flag) = flags.next_flag() {
            match flag.as_str() {
                "--dir" => dir = Some(flags.path()?),
                "--durability" => {
                    durability = flags.choice("durability", |name| match name {
                        "durable" => Some(Durability::Durable),
                        "atomic-only" => Some(Durability::AtomicOnly),
                        _ => None,
                    })?;
                }
                "--seed" => seed = flags.u64()?,
                "--mutant" => variant = flags.choice("mutant", Variant::parse)?,
                "--payloads" => {
                    payloads = flags.choice("payload kind", |name| match name {
                        "indexed" => Some(PayloadKind::Indexed),
                        "sequenced" => Some(PayloadKind::Sequenced),
                        _ => None,
                    })?;
                }
                "--start-seq" => start_seq = flags.u64()?,
                other => return Err(format!("unknown child-writer option {other:?}")),
            }
        }
        Ok(ChildArgs {
            dir: dir.ok_or("child-writer needs --dir")?,
            durability,
            seed,
            variant,
            payloads,
            start_seq,
        })
    }
}

/// A file system whose temp-file fsync does nothing: the mutant the power-loss images must
/// catch as zero-filled or empty targets.
#[derive(Debug)]
struct SkipTempSync;

impl FileSystem for SkipTempSync {
    fn sync_all(&self, _file: &std::fs::File, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// A file system whose directory fsync does nothing: the mutant the power-loss images must
/// catch as lost renames.
#[derive(Debug)]
struct SkipDirSync;

impl FileSystem for SkipDirSync {
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// One way of replacing the target.
enum Writer {
    Atomic(AtomicWriter),
    InPlace,
}

impl Writer {
    fn new(variant: Variant, durability: Durability) -> Writer {
        let mut writer = AtomicWriter::new();
        writer.durability(durability);
        match variant {
            Variant::Correct => {}
            Variant::NoTempFsync => {
                writer.file_system(Arc::new(SkipTempSync));
            }
            Variant::NoDirFsync => {
                writer.file_system(Arc::new(SkipDirSync));
            }
            Variant::InPlace => return Writer::InPlace,
        }
        Writer::Atomic(writer)
    }

    fn write(&self, target: &Path, bytes: &[u8]) -> Result<(), String> {
        match self {
            Writer::Atomic(writer) => writer.write(target, bytes).map_err(|e| e.to_string()),
            Writer::InPlace => std::fs::write(target, bytes).map_err(|e| e.to_string()),
        }
    }
}

/// Writes one line to stdout with a single flush, so the parent never sees half a line from a
/// live child.
fn say(out: &mut io::StdoutLock<'_>, line: &str) -> Result<(), String> {
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot report to the parent (gone?): {e}"))
}

/// Runs the child until it is killed.
///
/// # Errors
///
/// Returns only on failure: a write error, a lost parent, or two minutes without being killed.
pub fn run(args: &ChildArgs) -> Result<(), String> {
    let writer = Writer::new(args.variant, args.durability);
    let target = target_path(&args.dir);
    let indexed = match args.payloads {
        PayloadKind::Indexed => Some(IndexedPayloads::new()),
        PayloadKind::Sequenced => None,
    };
    let mut order = IndexedSequence::new(args.seed);
    // Body sizes draw from a stream apart from the indexed order's.
    let mut sizes = SplitMix64::new(mix64(args.seed ^ 0x51ce));
    let started = Instant::now();
    let mut out = io::stdout().lock();
    say(&mut out, "ready\n")?;
    let mut count: u64 = 0;
    while started.elapsed() < RUNAWAY_LIMIT {
        let ack = match &indexed {
            Some(payloads) => {
                let index = order.next().unwrap_or(0);
                writer.write(&target, payloads.bytes(Known::Indexed(index)))?;
                count
            }
            None => {
                let seq = args.start_seq + count;
                let payload = sequenced_payload(seq, random_body_len(&mut sizes));
                writer.write(&target, &payload)?;
                seq
            }
        };
        say(&mut out, &format!("ack {ack}\n"))?;
        count += 1;
    }
    Err(format!(
        "ran {RUNAWAY_LIMIT:?} without being killed; stopping"
    ))
}
