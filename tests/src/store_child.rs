//! The `store-child` role: a process that updates a session store from several threads until it
//! is killed, and the deterministic workload it runs (which the parent replays to know what
//! every acknowledgement promised).
//!
//! The child opens `<dir>/sessions.json` with [`SyncMode::EveryBatch`] and a small compaction
//! threshold, prints `ready`, then runs `threads` worker threads and one compactor thread:
//!
//! - worker `t` runs the op stream [`ThreadOps::new`]`(seed, gen, t, live_keys)`, one
//!   synchronous call at a time, and after each acknowledged update prints one line, flushed in
//!   one `write(2)`:
//!
//!   ```text
//!   ack <thread> <index> <op> <key> <version>
//!   ```
//!
//! - the compactor calls [`Store::compact`] every few milliseconds, besides the store's own
//!   background compactions (`compact_when(8192, 0.5)`), so kills land inside compactions;
//! - `readers` reader threads call [`Store::get`] and [`Store::list`] in a loop, as a gateway
//!   answering status calls does;
//! - with `disk_check`, after each of its compactions the compactor reads the snapshot and
//!   journal back from disk and checks they hold every update acknowledged before the
//!   compaction started (a compaction that wrote incomplete files shows even if the next one
//!   heals them before any kill).
//!
//! A store error (a failed update, compaction or read, an acknowledgement without fsync in
//! durable mode) is printed as `error <message>`, and the parent counts it as a violation; the
//! child goes on (a thread whose update failed stops), so that whatever the error left on disk
//! is checked after the kill. Only a store that does not open ends the child (status 3).
//!
//! Keys are owned by one thread each, so a thread's next op is the only update of its keys that
//! can be in flight when the kill lands:
//!
//! - `l:<t>:<i>` (`i < live_keys`): long-lived keys, upserted and patched by thread `t` of
//!   every child, never deleted; every op carries a version `gen << 32 | index` that grows
//!   across children.
//! - `e:<gen>:<t>:<j>`: ephemeral keys of one child's thread, created, patched and deleted;
//!   never re-created, so a delete is exactly checkable.
//!
//! With `faults` (the faults part, which runs the child under `strace` injecting `EIO` into its
//! `fdatasync`, `fsync` and `ftruncate` calls, or `ENOSPC` into the journal's writes), a failed
//! update is expected: the worker prints
//!
//! ```text
//! fail <thread> <index> <known|unknown> [full]
//! ```
//!
//! and stops, `unknown` when the store said the outcome is unknown
//! ([`Error::is_outcome_unknown`](sessionkit_session_store::Error::is_outcome_unknown)), `full`
//! when it said the disk is full
//! ([`Error::is_storage_full`](sessionkit_session_store::Error::is_storage_full)). A
//! failed compaction or open is expected too; a failed read, or an acknowledgement without
//! fsync, is still an `error`.
//!
//! Variants the checker must catch ([`StoreVariant`]): acknowledging before the update is
//! written, acknowledging updates that were never written, (for power-loss images)
//! [`SyncMode::Never`] while claiming durability, and (for the faults part) reporting an update
//! that was written as failed.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sessionkit_session_store::{
    Activity, Entry, ListQuery, Patch, SeqTracker, Store, SyncMode, load_snapshot, parse_journal,
};

use crate::flags::Flags;
use crate::rng::{SplitMix64, mix64};

/// The snapshot's file name inside the store directory (the journal is beside it).
pub const SNAPSHOT_NAME: &str = "sessions.json";

/// The journal's file name inside the store directory.
pub const JOURNAL_NAME: &str = "sessions.json.journal";

/// Compaction starts once the journal is at least this long (and half the snapshot's size).
pub const COMPACT_MIN_BYTES: u64 = 8192;

/// The journal-to-snapshot ratio that starts a compaction.
pub const COMPACT_RATIO: f64 = 0.5;

/// A child that is never killed stops on its own after this long.
const RUNAWAY_LIMIT: Duration = Duration::from_secs(120);

/// The most `error` lines one child prints.
const MAX_ERROR_LINES: u64 = 20;

/// The longest pause of a reader thread between two reads, in microseconds.
const READ_PAUSE_US: u64 = 500;

/// The most ephemeral keys a thread keeps open at once.
const MAX_OPEN_EPHEMERAL: usize = 3;

/// The longest padding of an upserted entry, so batches span pages and can tear.
const MAX_PAD: u64 = 1500;

/// One patch in this many carries a big field.
const BIG_EVERY: u64 = 40;

/// The size range of a big field.
const BIG_MIN: u64 = 16 * 1024;
const BIG_MAX: u64 = 96 * 1024;

/// The snapshot inside `dir`.
pub fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_NAME)
}

/// How the child updates the store and acknowledges: the real thing, or a deliberately broken
/// writer the checkers must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreVariant {
    /// Each update through the store in durable mode, acknowledged after the call returns.
    Correct,
    /// Prints the acknowledgement before calling the store: a kill in between loses an
    /// acknowledged update.
    AckEarly,
    /// Every fifth op is acknowledged without being written at all.
    SkipWrite,
    /// The store opened with [`SyncMode::Never`], acknowledged as if durable: survives kill -9,
    /// must be caught by the power-loss images.
    NoFsync,
    /// Each thread's second update (and every fourth after it), if it succeeds, is reported as
    /// failed with a known outcome, as a store that applied a batch whose callers it told of a
    /// failure would look: the faults part must catch it.
    FalseFail,
}

impl StoreVariant {
    /// Every variant, the correct one first.
    pub const ALL: [StoreVariant; 5] = [
        StoreVariant::Correct,
        StoreVariant::AckEarly,
        StoreVariant::SkipWrite,
        StoreVariant::NoFsync,
        StoreVariant::FalseFail,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            StoreVariant::Correct => "correct",
            StoreVariant::AckEarly => "ack-early",
            StoreVariant::SkipWrite => "skip-write",
            StoreVariant::NoFsync => "no-fsync",
            StoreVariant::FalseFail => "false-fail",
        }
    }

    /// The variant called `name`.
    pub fn parse(name: &str) -> Option<StoreVariant> {
        StoreVariant::ALL.into_iter().find(|v| v.name() == name)
    }
}

impl fmt::Display for StoreVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What one op does.
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    /// Replace the entry with this object.
    Upsert(Map<String, Value>),
    /// Merge this flat patch (a `null` removes the field).
    Patch(Map<String, Value>),
    /// Remove the entry.
    Delete,
}

impl OpKind {
    /// The op's name in ack lines.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Upsert(_) => "upsert",
            OpKind::Patch(_) => "patch",
            OpKind::Delete => "delete",
        }
    }
}

/// One op of a thread's stream.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreOp {
    /// Its position in the thread's stream, from 0.
    pub index: u64,
    /// The key it changes.
    pub key: String,
    /// What it does.
    pub kind: OpKind,
    /// `gen << 32 | index`: grows along a key's history across children.
    pub version: u64,
}

impl StoreOp {
    /// The ack line the child prints for this op of `thread`, without the newline.
    pub fn ack_line(&self, thread: u64) -> String {
        format!(
            "ack {thread} {} {} {} {}",
            self.index,
            self.kind.name(),
            self.key,
            self.version
        )
    }
}

/// The check value of `key` at `version`: catches an entry holding another key's or another
/// version's fields.
pub fn check_value(key: &str, version: u64) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for b in key.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:016x}", mix64(h ^ version))
}

/// The deterministic op stream of one thread of one child.
#[derive(Clone, Debug)]
pub struct ThreadOps {
    rng: SplitMix64,
    gen_: u64,
    thread: u64,
    live_keys: u64,
    index: u64,
    open: VecDeque<u64>,
    next_ephemeral: u64,
}

impl ThreadOps {
    /// The stream of thread `thread` of the child with this seed and generation.
    pub fn new(seed: u64, gen_: u64, thread: u64, live_keys: u64) -> ThreadOps {
        ThreadOps {
            rng: SplitMix64::new(mix64(seed ^ mix64(thread + 1))),
            gen_,
            thread,
            live_keys: live_keys.max(1),
            index: 0,
            open: VecDeque::new(),
            next_ephemeral: 0,
        }
    }

    /// The next op.
    pub fn next_op(&mut self) -> StoreOp {
        let index = self.index;
        self.index += 1;
        let version = (self.gen_ << 32) | index;
        let roll = self.rng.below(100);
        let (key, kind) = if roll < 12 && self.open.len() < MAX_OPEN_EPHEMERAL {
            let j = self.next_ephemeral;
            self.next_ephemeral += 1;
            self.open.push_back(j);
            let key = self.ephemeral_key(j);
            let entry = self.upsert_body(&key, version);
            (key, OpKind::Upsert(entry))
        } else if roll < 22 && !self.open.is_empty() {
            let j = self.open.pop_front().unwrap_or_default();
            (self.ephemeral_key(j), OpKind::Delete)
        } else if roll < 32 && !self.open.is_empty() {
            let pick = self.rng.below(self.open.len() as u64) as usize;
            let key = self.ephemeral_key(self.open[pick]);
            let patch = self.patch_body(&key, version);
            (key, OpKind::Patch(patch))
        } else {
            let i = self.rng.below(self.live_keys);
            let key = format!("l:{}:{i}", self.thread);
            if self.rng.below(100) < 35 {
                let entry = self.upsert_body(&key, version);
                (key, OpKind::Upsert(entry))
            } else {
                let patch = self.patch_body(&key, version);
                (key, OpKind::Patch(patch))
            }
        };
        StoreOp {
            index,
            key,
            kind,
            version,
        }
    }

    fn ephemeral_key(&self, j: u64) -> String {
        format!("e:{}:{}:{j}", self.gen_, self.thread)
    }

    fn upsert_body(&mut self, key: &str, version: u64) -> Map<String, Value> {
        let pad = self.rng.below(MAX_PAD + 1) as usize;
        let mut m = Map::new();
        m.insert("sessionId".into(), Value::from(format!("sid-{key}")));
        m.insert(
            "updatedAt".into(),
            Value::from(1_700_000_000_000_u64 + (version & 0xffff_ffff)),
        );
        m.insert("v".into(), Value::from(version));
        m.insert("u".into(), Value::from(version));
        m.insert("chk".into(), Value::from(check_value(key, version)));
        m.insert("pad".into(), Value::from(pad_text(version, pad)));
        let mut nested = Map::new();
        nested.insert("k".into(), Value::from(key));
        m.insert("meta".into(), Value::Object(nested));
        m
    }

    fn patch_body(&mut self, key: &str, version: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("v".into(), Value::from(version));
        m.insert("chk".into(), Value::from(check_value(key, version)));
        m.insert("p".into(), Value::from(version));
        match self.rng.below(4) {
            0 => {
                m.insert("pad".into(), Value::Null);
            }
            1 => {
                let pad = self.rng.below(MAX_PAD / 2) as usize;
                m.insert("pad".into(), Value::from(pad_text(version, pad)));
            }
            _ => {}
        }
        // Now and then a big field (a multi-page append, which a SIGKILL can tear between
        // pages), cleared again by most later patches so the snapshot stays small.
        match self.rng.below(BIG_EVERY) {
            0 => {
                let len = self.rng.range_inclusive(BIG_MIN, BIG_MAX) as usize;
                m.insert("big".into(), Value::from(pad_text(version ^ 0xb16, len)));
            }
            n if n < BIG_EVERY / 2 => {
                m.insert("big".into(), Value::Null);
            }
            _ => {}
        }
        m
    }
}

/// `len` printable characters derived from `version`.
fn pad_text(version: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = SplitMix64::new(mix64(version ^ 0x9ad));
    (0..len)
        .map(|_| char::from(ALPHABET[rng.below(ALPHABET.len() as u64) as usize]))
        .collect()
}

/// Applies `op` to a key's state, as the store must (RFC 7396 on flat patches; `updatedAt` is
/// left out of the comparison, so it is dropped here).
pub fn apply_op(state: Option<&Map<String, Value>>, op: &OpKind) -> Option<Map<String, Value>> {
    let mut next = match op {
        OpKind::Upsert(entry) => entry.clone(),
        OpKind::Patch(patch) => {
            let mut next = state.cloned().unwrap_or_default();
            for (field, value) in patch {
                if value.is_null() {
                    next.remove(field);
                } else {
                    next.insert(field.clone(), value.clone());
                }
            }
            next
        }
        OpKind::Delete => return None,
    };
    next.remove("updatedAt");
    Some(next)
}

/// Everything a `store-child` needs; [`StoreChildArgs::to_args`] and
/// [`StoreChildArgs::parse`] round-trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreChildArgs {
    /// The store directory.
    pub dir: PathBuf,
    /// The seed of the op streams.
    pub seed: u64,
    /// The child's generation, strictly growing across the children of one store.
    pub gen_: u64,
    /// Worker threads.
    pub threads: u64,
    /// The number of the first worker thread: two children on one store get disjoint
    /// threads, so every key still has one writer.
    pub thread_base: u64,
    /// Long-lived keys per thread.
    pub live_keys: u64,
    /// The longest pause of the compactor thread between two compactions, in ms (0: no
    /// compactor thread, only the store's own compactions).
    pub compact_every_ms: u64,
    /// Reader threads (`get` and `list` in a loop, as a gateway serving status calls).
    pub readers: u64,
    /// After each of its compactions, the compactor reads the files on disk back and checks
    /// they hold every update this child acknowledged before the compaction started.
    pub disk_check: bool,
    /// The writer variant.
    pub variant: StoreVariant,
    /// The child runs under injected faults: failed updates, compactions and opens are
    /// expected, and a failed update is reported as a `fail` line.
    pub faults: bool,
}

impl StoreChildArgs {
    /// The command line after the `store-child` role word.
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            "--dir".into(),
            self.dir.clone().into_os_string(),
            "--seed".into(),
            self.seed.to_string().into(),
            "--gen".into(),
            self.gen_.to_string().into(),
            "--threads".into(),
            self.threads.to_string().into(),
            "--thread-base".into(),
            self.thread_base.to_string().into(),
            "--live-keys".into(),
            self.live_keys.to_string().into(),
            "--compact-every-ms".into(),
            self.compact_every_ms.to_string().into(),
            "--readers".into(),
            self.readers.to_string().into(),
            "--disk-check".into(),
            u64::from(self.disk_check).to_string().into(),
            "--variant".into(),
            self.variant.name().into(),
            "--faults".into(),
            u64::from(self.faults).to_string().into(),
        ]
    }

    /// Parses the command line after the role word.
    ///
    /// # Errors
    ///
    /// A message naming the bad or missing option.
    pub fn parse(args: &[OsString]) -> Result<StoreChildArgs, String> {
        let mut dir = None;
        let mut parsed = StoreChildArgs {
            dir: PathBuf::new(),
            seed: 0,
            gen_: 1,
            threads: 4,
            thread_base: 0,
            live_keys: 8,
            compact_every_ms: 8,
            readers: 0,
            disk_check: false,
            variant: StoreVariant::Correct,
            faults: false,
        };
        let mut flags = Flags::new(args);
        while let Some(flag) = flags.next_flag() {
            match flag.as_str() {
                "--dir" => dir = Some(flags.path()?),
                "--seed" => parsed.seed = flags.u64()?,
                "--gen" => parsed.gen_ = flags.u64()?,
                "--threads" => parsed.threads = flags.u64()?,
                "--thread-base" => parsed.thread_base = flags.u64()?,
                "--live-keys" => parsed.live_keys = flags.u64()?,
                "--compact-every-ms" => parsed.compact_every_ms = flags.u64()?,
                "--readers" => parsed.readers = flags.u64()?,
                "--disk-check" => parsed.disk_check = flags.u64()? != 0,
                "--faults" => parsed.faults = flags.u64()? != 0,
                "--variant" => {
                    parsed.variant = flags.choice("store variant", StoreVariant::parse)?
                }
                other => return Err(format!("unknown store-child option {other:?}")),
            }
        }
        parsed.dir = dir.ok_or("store-child needs --dir")?;
        if parsed.threads == 0 {
            return Err("store-child needs at least one thread".into());
        }
        Ok(parsed)
    }
}

/// Writes one line to stdout in one `write(2)`, so the parent never sees half a line from a
/// live child, nor two threads' lines mixed.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let ok = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = ok {
        // The parent is gone; nothing left to report to.
        eprintln!("store-child: cannot report to the parent: {e}");
        std::process::exit(3);
    }
}

/// Reports an error no correct store produces to the parent, as an `error <what>` line (a
/// finding, not a harness failure); the first few also go to stderr.
fn report_error(what: &str) {
    static REPORTED: AtomicU64 = AtomicU64::new(0);
    let n = REPORTED.fetch_add(1, Ordering::Relaxed);
    if n >= MAX_ERROR_LINES {
        return;
    }
    let line = format!("error {}\n", what.replace('\n', " "));
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
    if n < 3 {
        eprintln!("store-child: {what}");
    }
}

/// Reports a store error and exits with status 3.
fn die(what: &str) -> ! {
    report_error(what);
    std::process::exit(3);
}

/// Runs the child until it is killed.
///
/// # Errors
///
/// Returns only on failure: the store cannot be opened, or two minutes pass without a kill.
/// A failed update or compaction ends the process at once (exit status 3).
pub fn run(args: &StoreChildArgs) -> Result<(), String> {
    let sync = match args.variant {
        StoreVariant::NoFsync => SyncMode::Never,
        _ => SyncMode::EveryBatch,
    };
    let store = match Store::builder()
        .sync(sync)
        .compact_when(COMPACT_MIN_BYTES, COMPACT_RATIO)
        .open(snapshot_path(&args.dir))
    {
        Ok(store) => store,
        Err(e) => die(&format!("cannot open the store: {e}")),
    };
    let store = Arc::new(store);
    let acked = Acked::default();
    say("ready");
    for thread in args.thread_base..args.thread_base + args.threads {
        let store = store.clone();
        let args = args.clone();
        let acked = acked.clone();
        std::thread::Builder::new()
            .name(format!("worker-{thread}"))
            .spawn(move || worker(&store, &args, thread, &acked))
            .map_err(|e| format!("cannot start a worker: {e}"))?;
    }
    for reader in 0..args.readers {
        let store = store.clone();
        let args = args.clone();
        std::thread::Builder::new()
            .name(format!("reader-{reader}"))
            .spawn(move || read_loop(&store, &args, reader))
            .map_err(|e| format!("cannot start a reader: {e}"))?;
    }
    if args.compact_every_ms > 0 {
        let store = store.clone();
        let args = args.clone();
        std::thread::Builder::new()
            .name("compactor".into())
            .spawn(move || compactor(&store, &args, &acked))
            .map_err(|e| format!("cannot start the compactor: {e}"))?;
    }
    std::thread::sleep(RUNAWAY_LIMIT);
    Err(format!(
        "ran {RUNAWAY_LIMIT:?} without being killed; stopping"
    ))
}

/// What this child acknowledged, per key: the version of the last acknowledged op, or `None`
/// after a delete.
type Acked = Arc<Mutex<HashMap<String, Option<u64>>>>;

fn worker(store: &Store, args: &StoreChildArgs, thread: u64, acked: &Acked) {
    let mut ops = ThreadOps::new(args.seed, args.gen_, thread, args.live_keys);
    let started = Instant::now();
    while started.elapsed() < RUNAWAY_LIMIT {
        let op = ops.next_op();
        let line = op.ack_line(thread);
        let applied = match args.variant {
            StoreVariant::AckEarly => {
                say(&line);
                apply(store, &op, false, args.faults)
            }
            StoreVariant::SkipWrite if op.index % 5 == 4 => {
                say(&line);
                Applied::Done
            }
            StoreVariant::NoFsync | StoreVariant::SkipWrite => {
                acknowledge(apply(store, &op, false, args.faults), &line)
            }
            StoreVariant::FalseFail if op.index % 4 == 1 => match apply(store, &op, true, true) {
                Applied::Done => Applied::Failed {
                    unknown: false,
                    full: false,
                },
                failed => failed,
            },
            StoreVariant::Correct | StoreVariant::FalseFail => {
                acknowledge(apply(store, &op, true, args.faults), &line)
            }
        };
        if let Applied::Failed { unknown, full } = applied {
            // A failed update stays this thread's last op, for the checker; the thread's stream
            // cannot go on past it.
            if args.faults || args.variant == StoreVariant::FalseFail {
                let outcome = if unknown { "unknown" } else { "known" };
                let cause = if full { " full" } else { "" };
                say(&format!("fail {thread} {} {outcome}{cause}", op.index));
            }
            return;
        }
        let after = match op.kind {
            OpKind::Delete => None,
            OpKind::Upsert(_) | OpKind::Patch(_) => Some(op.version),
        };
        lock(acked).insert(op.key, after);
    }
}

/// What became of one op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    /// The store acknowledged it.
    Done,
    /// The store refused it; `unknown` if it said the update may or may not be applied, `full`
    /// if it said the disk was full.
    Failed { unknown: bool, full: bool },
}

/// Prints the ack line of an op the store acknowledged, and passes on what became of it.
fn acknowledge(applied: Applied, line: &str) -> Applied {
    if applied == Applied::Done {
        say(line);
    }
    applied
}

/// Performs `op` through the store. With `strict` (the correct writer), insists the
/// acknowledgement says fsynced and a delete found its key. A refusal is reported as an `error`
/// unless `faults` makes it expected.
fn apply(store: &Store, op: &StoreOp, strict: bool, faults: bool) -> Applied {
    let result = match &op.kind {
        OpKind::Upsert(entry) => Entry::from_value(&Value::Object(entry.clone()))
            .and_then(|entry| store.upsert(op.key.clone(), entry)),
        OpKind::Patch(patch) => Patch::from_value(&Value::Object(patch.clone()))
            .and_then(|patch| store.patch(op.key.clone(), patch, Activity::Advance)),
        OpKind::Delete => store.delete(op.key.clone()),
    };
    match result {
        Ok(ack) if strict && !ack.durable => report_error(&format!(
            "{} of {} was acknowledged without fsync in durable mode",
            op.kind.name(),
            op.key
        )),
        Ok(ack) if strict && matches!(op.kind, OpKind::Delete) && ack.seq == 0 => report_error(
            &format!("delete of {} wrote nothing: the key was missing", op.key),
        ),
        Ok(_) => {}
        Err(e) => {
            if !faults {
                report_error(&format!("{} of {} failed: {e}", op.kind.name(), op.key));
            }
            return Applied::Failed {
                unknown: e.is_outcome_unknown(),
                full: e.is_storage_full(),
            };
        }
    }
    Applied::Done
}

/// Reads the store as a gateway does, all the time: the whole list, or one key.
fn read_loop(store: &Store, args: &StoreChildArgs, reader: u64) {
    let mut rng = SplitMix64::new(mix64(args.seed ^ 0x4ead ^ (reader << 20)));
    loop {
        let result = if rng.below(4) == 0 {
            store.list(&ListQuery::all()).map(|_| ())
        } else {
            let thread = args.thread_base + rng.below(args.threads);
            let key = format!("l:{thread}:{}", rng.below(args.live_keys.max(1)));
            store.get(&key).map(|_| ())
        };
        if let Err(e) = result {
            report_error(&format!("read failed: {e}"));
        }
        std::thread::sleep(Duration::from_micros(rng.below(READ_PAUSE_US + 1)));
    }
}

fn compactor(store: &Store, args: &StoreChildArgs, acked: &Acked) {
    let mut rng = SplitMix64::new(mix64(args.seed ^ 0xc0_4ac7));
    loop {
        std::thread::sleep(Duration::from_micros(
            rng.below(args.compact_every_ms * 1000 + 1),
        ));
        let before = args.disk_check.then(|| lock(acked).clone());
        match store.compact() {
            // Under injected faults a compaction may fail; what it leaves is checked on reopen.
            Err(_) if args.faults => {}
            Err(e) => report_error(&format!("compaction failed: {e}")),
            Ok(report) => {
                if let Some(before) = before
                    && !report.superseded
                    && let Err(e) = check_disk(&args.dir, &before)
                {
                    report_error(&format!("after a compaction, {e}"));
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads the snapshot and the journal in `dir` as a fresh process would and checks they hold
/// every update of `acked`: each key at least at its acknowledged version (versions grow along
/// a key's history), or absent after a delete (deleted keys are never re-created). A transient loss (a compaction that wrote incomplete files, healed by the next one
/// from memory) shows here even if no kill lands in it.
fn check_disk(dir: &Path, acked: &HashMap<String, Option<u64>>) -> Result<(), String> {
    let journal_path = dir.join(JOURNAL_NAME);
    let identity = |meta: &std::fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    // The journal first, then the snapshot, then the journal's name again: if it still names
    // the file read, the snapshot is its own or the next one (renamed first), and replaying the
    // journal over either gives the store's state.
    for _ in 0..10 {
        let mut file = std::fs::File::open(&journal_path)
            .map_err(|e| format!("cannot open {}: {e}", journal_path.display()))?;
        let read = file
            .metadata()
            .map_err(|e| format!("cannot stat the journal: {e}"))?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut file, &mut bytes)
            .map_err(|e| format!("cannot read the journal: {e}"))?;
        let mut state = load_snapshot(snapshot_path(dir))
            .map_err(|e| format!("the snapshot on disk does not load: {e}"))?;
        match std::fs::metadata(&journal_path) {
            Ok(now) if identity(&now) == identity(&read) => {}
            _ => continue,
        }
        let parsed = parse_journal(&journal_path, &bytes)
            .map_err(|e| format!("the journal on disk does not parse: {e}"))?;
        state.replay(&parsed.records, &mut SeqTracker::new());
        let mut missing = Vec::new();
        for (key, want) in acked {
            let found = state
                .get(key)
                .map(|e| e.get("v").and_then(|v| v.get().parse::<u64>().ok()));
            let ok = match (want, found) {
                (None, None) => true,
                (Some(v), Some(Some(f))) => f >= *v,
                // An ephemeral key may have been deleted since (its delete need not be
                // acknowledged yet); live keys never are.
                (Some(_), None) => key.starts_with("e:"),
                _ => false,
            };
            if !ok {
                missing.push(format!("{key}: acknowledged {want:?}, on disk {found:?}"));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort();
        return Err(format!(
            "the files on disk lack {} acknowledged updates: {}",
            missing.len(),
            missing[..missing.len().min(3)].join(", ")
        ));
    }
    // Other processes compacted all the time; nothing to say.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let args = StoreChildArgs {
            dir: PathBuf::from("/x y"),
            seed: 7,
            gen_: 9,
            threads: 3,
            thread_base: 4,
            live_keys: 5,
            compact_every_ms: 2,
            readers: 1,
            disk_check: true,
            variant: StoreVariant::AckEarly,
            faults: true,
        };
        let parsed = StoreChildArgs::parse(&args.to_args()).expect("parses");
        assert_eq!(parsed.dir, args.dir);
        assert_eq!(
            (parsed.seed, parsed.gen_, parsed.threads, parsed.live_keys),
            (7, 9, 3, 5)
        );
        assert_eq!((parsed.compact_every_ms, parsed.thread_base), (2, 4));
        assert_eq!((parsed.readers, parsed.disk_check), (1, true));
        assert_eq!(parsed.variant, StoreVariant::AckEarly);
        assert!(parsed.faults);
    }

    #[test]
    fn op_streams_replay_and_never_recreate_a_deleted_key() {
        let mut a = ThreadOps::new(42, 3, 1, 8);
        let mut b = ThreadOps::new(42, 3, 1, 8);
        let mut deleted = std::collections::HashSet::new();
        let mut created = std::collections::HashSet::new();
        for _ in 0..5000 {
            let op = a.next_op();
            assert_eq!(op, b.next_op());
            assert_eq!(op.version, (3 << 32) | op.index);
            if op.key.starts_with("e:") {
                assert!(
                    !deleted.contains(&op.key),
                    "{} touched after delete",
                    op.key
                );
                match op.kind {
                    OpKind::Delete => {
                        assert!(created.contains(&op.key));
                        deleted.insert(op.key.clone());
                    }
                    OpKind::Upsert(_) => assert!(created.insert(op.key.clone())),
                    OpKind::Patch(_) => assert!(created.contains(&op.key)),
                }
            } else {
                assert!(op.key.starts_with("l:1:"));
                assert!(!matches!(op.kind, OpKind::Delete));
            }
        }
        assert!(deleted.len() > 100, "deletes happen: {}", deleted.len());
    }

    #[test]
    fn apply_op_merges_flat_patches() {
        let mut ops = ThreadOps::new(1, 1, 0, 1);
        let upsert = ops.upsert_body("l:0:0", 5);
        let state = apply_op(None, &OpKind::Upsert(upsert)).expect("present");
        assert!(!state.contains_key("updatedAt"));
        let mut patch = Map::new();
        patch.insert("pad".into(), Value::Null);
        patch.insert("v".into(), Value::from(6));
        let next = apply_op(Some(&state), &OpKind::Patch(patch)).expect("present");
        assert!(!next.contains_key("pad"));
        assert_eq!(next["v"], Value::from(6));
        assert_eq!(next["u"], Value::from(5));
        assert_eq!(apply_op(Some(&next), &OpKind::Delete), None);
    }
}
