//! The session-store suite, part 1: SIGKILL a durable `store-child` at random moments and check
//! that every acknowledged update is in the store when it is opened again.
//!
//! Each round starts a child (see [`crate::store_child`]) on the same store, waits for its
//! `ready`, kills it after a random delay, reaps it, and then:
//!
//! 1. lists the compaction temp files the kill left (`.sessions.json.*.sktmp`: a new snapshot
//!    being written; `.sessions.json.journal.*.sktmp`: the locked swap, or between its two
//!    renames), so the report says how many kills landed inside a compaction;
//! 2. replays the child's op streams ([`ThreadOps`]) up to its acknowledgements: a [`Model`]
//!    holds, per key, the state after its last acknowledged op, plus the one op per thread that
//!    may have been in flight (a thread makes one synchronous call at a time);
//! 3. opens the store with [`Store::open`] (which cuts a torn tail and must not find anything
//!    corrupt) and lists it: every key must hold exactly the state after its last acknowledged
//!    op, or the state after its thread's in-flight op; nothing else may be there;
//! 4. reads the journal's epoch (each compaction adds one), and sweeps the orphan temp files.
//!
//! The next round continues on the same store, so it grows and is compacted across kills;
//! every `fresh_every` rounds a fresh store starts. Every `pair_every`-th round two children
//! share the store (disjoint threads, so every key still has one writer); the first is killed
//! while the second goes on writing over its torn tail and half-done compaction, then the
//! second is killed too. A SIGKILL cannot lose the page cache, so nothing acknowledged may ever
//! be missing.
//!
//! Each child also runs reader threads (`get` and `list`, as a gateway does), and a store error
//! it meets (a failed update, compaction or read) is reported to the parent and counted as a
//! violation: a correct store never fails without a fault.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sessionkit_session_store::{ListQuery, Store};

use crate::kill9::sweep_orphans;
use crate::process::LineChild;
use crate::rng::{SplitMix64, mix64};
use crate::scratch::ScratchDir;
use crate::store_child::{
    JOURNAL_NAME, SNAPSHOT_NAME, StoreChildArgs, StoreVariant, ThreadOps, apply_op, snapshot_path,
};

/// The fence a writer puts up over a failed batch it could not cut back out of the journal.
const FENCE_NAME: &str = "sessions.json.journal.fence";

/// How many violation descriptions a report keeps.
const MAX_EXAMPLES: usize = 10;

/// How many key-level problems one violation description lists.
const MAX_PROBLEMS: usize = 4;

/// One key's state as compared: the entry's fields without `updatedAt` (which a patch sets from
/// the clock), or `None` for no entry.
pub type KeyState = Option<Map<String, Value>>;

/// One acknowledgement line of a child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckLine {
    /// The worker thread.
    pub thread: u64,
    /// The op's index in the thread's stream.
    pub index: u64,
    /// The op's name.
    pub op: String,
    /// The key.
    pub key: String,
    /// The op's version.
    pub version: u64,
}

/// One `fail` line of a child under injected faults: the update its thread made last failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailLine {
    /// The worker thread.
    pub thread: u64,
    /// The failed op's index in the thread's stream.
    pub index: u64,
    /// The store said the update may or may not be applied.
    pub unknown: bool,
    /// The store said the disk was full (`Error::is_storage_full`).
    pub full: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Ready,
    Ack(AckLine),
    Fail(FailLine),
    /// The store failed the child (a finding, not a harness failure).
    Error(String),
    Garbage(String),
}

fn parse_event(text: &[u8]) -> Event {
    let text = String::from_utf8_lossy(text);
    if text == "ready" {
        return Event::Ready;
    }
    if let Some(error) = text.strip_prefix("error ") {
        return Event::Error(error.to_owned());
    }
    let words: Vec<&str> = text.split(' ').collect();
    match words.as_slice() {
        ["ack", thread, index, op, key, version] => {
            match (thread.parse(), index.parse(), version.parse()) {
                (Ok(thread), Ok(index), Ok(version)) => Event::Ack(AckLine {
                    thread,
                    index,
                    op: (*op).to_owned(),
                    key: (*key).to_owned(),
                    version,
                }),
                _ => Event::Garbage(text.into_owned()),
            }
        }
        [
            "fail",
            thread,
            index,
            outcome @ ("known" | "unknown"),
            cause @ ..,
        ] if matches!(cause, [] | ["full"]) => match (thread.parse(), index.parse()) {
            (Ok(thread), Ok(index)) => Event::Fail(FailLine {
                thread,
                index,
                unknown: *outcome == "unknown",
                full: !cause.is_empty(),
            }),
            _ => Event::Garbage(text.into_owned()),
        },
        _ => Event::Garbage(text.into_owned()),
    }
}

/// What a killed `store-child` printed.
#[derive(Clone, Debug, Default)]
pub struct Reaped {
    /// Its acknowledgements, in order.
    pub acks: Vec<AckLine>,
    /// Its failed updates (under injected faults), in order.
    pub fails: Vec<FailLine>,
    /// The store errors it reported, in order.
    pub errors: Vec<String>,
}

/// A running `store-child`. Dropping it kills and reaps the child.
#[derive(Debug)]
pub struct StoreProcess {
    child: LineChild<Event>,
    /// The child reported that it could not open the store, and exits on its own.
    open_failed: bool,
}

impl StoreProcess {
    /// Starts `exe store-child <args>` with stdout piped to a reader thread.
    ///
    /// # Errors
    ///
    /// Fails if the process cannot be started.
    pub fn spawn(exe: &Path, args: &StoreChildArgs) -> Result<StoreProcess, String> {
        let mut argv = vec![OsString::from("store-child")];
        argv.extend(args.to_args());
        Ok(StoreProcess {
            child: LineChild::spawn("store child", exe, argv, parse_event)?,
            open_failed: false,
        })
    }

    /// Starts `exe store-child <args>` under `strace <options>` (which inject the faults);
    /// a kill goes to the child itself.
    ///
    /// # Errors
    ///
    /// Fails if `strace` cannot be started.
    pub fn spawn_traced(
        strace: &Path,
        options: &[String],
        exe: &Path,
        args: &StoreChildArgs,
    ) -> Result<StoreProcess, String> {
        let mut argv: Vec<OsString> = ["-f", "-qq", "--seccomp-bpf", "-o", "/dev/null"]
            .into_iter()
            .map(OsString::from)
            .collect();
        argv.extend(options.iter().map(OsString::from));
        argv.extend([
            "--".into(),
            exe.as_os_str().to_owned(),
            "store-child".into(),
        ]);
        argv.extend(args.to_args());
        Ok(StoreProcess {
            child: LineChild::spawn("store child", strace, argv, parse_event)?.traced(),
            open_failed: false,
        })
    }

    /// Waits until the child prints `ready`; returns the store error it reported instead, if
    /// it could not open the store.
    ///
    /// # Errors
    ///
    /// Fails if the child exits without a word, prints something else first, or takes far too
    /// long.
    pub fn wait_ready(&mut self) -> Result<Option<String>, String> {
        match self.child.first()? {
            Event::Ready => Ok(None),
            Event::Error(e) => {
                self.open_failed = true;
                Ok(Some(e))
            }
            other => Err(format!("store child printed {other:?} before ready")),
        }
    }

    /// Sends SIGKILL, reaps the child and returns every ack and store error it printed.
    ///
    /// # Errors
    ///
    /// Fails if the child had already exited on its own without reporting a store error, or
    /// printed something that is neither an ack nor an error.
    pub fn kill_and_reap(self) -> Result<Reaped, String> {
        let (events, killed) = self.child.kill_and_reap()?;
        let mut reaped = Reaped::default();
        for event in events {
            match event {
                Event::Ack(ack) => reaped.acks.push(ack),
                Event::Fail(fail) => reaped.fails.push(fail),
                Event::Error(e) => reaped.errors.push(e),
                other => return Err(format!("store child printed {other:?} after ready")),
            }
        }
        // A child that reported a store error may exit on its own.
        if reaped.errors.is_empty() && !self.open_failed {
            killed?;
        }
        Ok(reaped)
    }
}

/// One key's history: every state it was seen or promised to have, oldest first.
#[derive(Clone, Debug)]
struct History {
    states: Vec<KeyState>,
    /// The index of the state after the last acknowledged op (or the store's start): this one
    /// and everything after it may be found after a power loss; only the last one after a
    /// kill -9.
    floor: usize,
}

impl History {
    fn new() -> History {
        History {
            states: vec![None],
            floor: 0,
        }
    }

    fn latest(&self) -> &KeyState {
        self.states.last().unwrap_or(&None)
    }
}

/// The updates a killed child may or may not have made: per key, the state after its thread's
/// next, unacknowledged op, unless the store said that op failed.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    states: BTreeMap<String, KeyState>,
}

impl InFlight {
    /// How many keys had an op in flight.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True if no op was in flight (a child without threads).
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Adds another child's in-flight ops (its threads own other keys).
    pub fn merge(&mut self, other: InFlight) {
        self.states.extend(other.states);
    }
}

/// What one check found.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Keys whose acknowledged state is missing: found absent or older.
    pub lost: Vec<String>,
    /// Keys holding something no op of the workload produced there.
    pub corrupt: Vec<String>,
    /// Keys found holding their in-flight (unacknowledged) state.
    pub landed: u64,
}

impl Verdict {
    /// True if nothing was wrong.
    pub fn ok(&self) -> bool {
        self.lost.is_empty() && self.corrupt.is_empty()
    }

    /// The problems, shortened to a few.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.lost.is_empty() {
            parts.push(format!(
                "{} keys lost an acknowledged update: {}",
                self.lost.len(),
                shorten(&self.lost)
            ));
        }
        if !self.corrupt.is_empty() {
            parts.push(format!(
                "{} keys hold an unexpected state: {}",
                self.corrupt.len(),
                shorten(&self.corrupt)
            ));
        }
        parts.join("; ")
    }
}

fn shorten(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(MAX_PROBLEMS)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > MAX_PROBLEMS {
        out.push_str(&format!(", and {} more", items.len() - MAX_PROBLEMS));
    }
    out
}

/// A short description of a key's state: its version as `gen:index` and the op that made it.
fn describe_state(state: &KeyState) -> String {
    match state {
        None => "absent".into(),
        Some(fields) => {
            let v = fields.get("v").and_then(Value::as_u64);
            let p = fields.get("p").and_then(Value::as_u64);
            match v {
                Some(v) => format!(
                    "v {}:{}{}",
                    v >> 32,
                    v & 0xffff_ffff,
                    if p == Some(v) {
                        " (patch)"
                    } else {
                        " (upsert)"
                    }
                ),
                None => format!("no version ({} fields)", fields.len()),
            }
        }
    }
}

/// When two states carry the same version but differ, which fields differ: those only the
/// found state has, those it lacks, and those whose values differ. A patch found on a base the
/// model does not expect (an update lost under it, or a failed one that landed) shows so.
fn differing_fields(found: &KeyState, required: &KeyState) -> String {
    let (Some(found), Some(required)) = (found, required) else {
        return String::new();
    };
    if found.get("v") != required.get("v") {
        return String::new();
    }
    let names = |pick: &dyn Fn(&str) -> bool| -> Vec<&str> {
        let mut names: Vec<&str> = found
            .keys()
            .chain(required.keys())
            .map(String::as_str)
            .filter(|k| pick(k))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    };
    let extra = names(&|k| !required.contains_key(k));
    let missing = names(&|k| !found.contains_key(k));
    let changed = names(&|k| {
        found.contains_key(k) && required.contains_key(k) && found.get(k) != required.get(k)
    });
    format!(
        " (same version; found has besides {extra:?}, lacks {missing:?}, differs in {changed:?})"
    )
}

/// What the workload promised: every key's history and which of its states are required.
#[derive(Clone, Debug, Default)]
pub struct Model {
    keys: BTreeMap<String, History>,
}

impl Model {
    /// The model of an empty store.
    pub fn new() -> Model {
        Model::default()
    }

    /// How many keys the model holds (present or not).
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Applies the acknowledged ops of the child run with `args` (its `acks`, as printed) and
    /// returns the states its in-flight ops would give. A thread's op that `fails` names as
    /// failed with a known outcome is not in flight: it must not be found.
    ///
    /// # Errors
    ///
    /// A harness error: an ack that is not the next op of its thread's stream, or a failure that
    /// is not the op after its thread's last ack.
    pub fn record_child(
        &mut self,
        args: &StoreChildArgs,
        acks: &[AckLine],
        fails: &[FailLine],
    ) -> Result<InFlight, String> {
        let mut per_thread: Vec<Vec<&AckLine>> = vec![Vec::new(); args.threads as usize];
        for ack in acks {
            let slot = ack
                .thread
                .checked_sub(args.thread_base)
                .and_then(|t| per_thread.get_mut(t as usize))
                .ok_or_else(|| {
                    format!(
                        "ack from thread {}, not one of {}..{}",
                        ack.thread,
                        args.thread_base,
                        args.thread_base + args.threads
                    )
                })?;
            slot.push(ack);
        }
        let mut in_flight = InFlight::default();
        for (slot, acked) in per_thread.iter().enumerate() {
            let thread = args.thread_base + slot as u64;
            let mut ops = ThreadOps::new(args.seed, args.gen_, thread, args.live_keys);
            for ack in acked {
                let op = ops.next_op();
                if (ack.index, ack.op.as_str(), ack.key.as_str(), ack.version)
                    != (op.index, op.kind.name(), op.key.as_str(), op.version)
                {
                    return Err(format!(
                        "thread {thread} acked {ack:?}, but its op {} is {} {} v{}",
                        op.index,
                        op.kind.name(),
                        op.key,
                        op.version
                    ));
                }
                let history = self.keys.entry(op.key.clone()).or_insert_with(History::new);
                let next = apply_op(history.latest().as_ref(), &op.kind);
                history.states.push(next);
                history.floor = history.states.len() - 1;
            }
            let op = ops.next_op();
            let mut failed = fails.iter().filter(|fail| fail.thread == thread);
            if let Some(fail) = failed.next() {
                if fail.index != op.index || failed.next().is_some() {
                    return Err(format!(
                        "thread {thread} reported {fail:?}, but its next op is {}",
                        op.index
                    ));
                }
                if !fail.unknown {
                    continue;
                }
            }
            let latest = self.keys.get(&op.key).map_or(&None, History::latest);
            in_flight
                .states
                .insert(op.key.clone(), apply_op(latest.as_ref(), &op.kind));
        }
        if let Some(fail) = fails.iter().find(|fail| {
            fail.thread
                .checked_sub(args.thread_base)
                .is_none_or(|t| t >= args.threads)
        }) {
            return Err(format!("{fail:?} is not from one of this child's threads"));
        }
        Ok(in_flight)
    }

    /// Checks the store's contents, `observed`. With `strict` (a kill -9: the page cache
    /// survives) each key must hold its latest state or its in-flight one; otherwise (a power
    /// loss) any state from its last acknowledged one on, or its in-flight one.
    pub fn check(
        &self,
        observed: &BTreeMap<String, Map<String, Value>>,
        in_flight: &InFlight,
        strict: bool,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        let fresh = History::new();
        let mut keys: Vec<&String> = self.keys.keys().collect();
        keys.extend(observed.keys().filter(|k| !self.keys.contains_key(*k)));
        keys.extend(
            in_flight
                .states
                .keys()
                .filter(|k| !self.keys.contains_key(*k) && !observed.contains_key(*k)),
        );
        for key in keys {
            let history = self.keys.get(key).unwrap_or(&fresh);
            let found: KeyState = observed.get(key).cloned();
            let candidate = in_flight.states.get(key);
            let allowed: &[KeyState] = if strict {
                &history.states[history.states.len() - 1..]
            } else {
                &history.states[history.floor..]
            };
            if allowed.contains(&found) {
                continue;
            }
            if candidate == Some(&found) {
                verdict.landed += 1;
                continue;
            }
            let required = &history.states[history.floor];
            let older = history.states[..history.floor].contains(&found);
            let what = format!(
                "{key}: found {}, acknowledged {}{}{}",
                describe_state(&found),
                describe_state(required),
                match candidate {
                    Some(c) => format!(", in flight {}", describe_state(c)),
                    None => String::new(),
                },
                differing_fields(&found, required),
            );
            if older || found.is_none() {
                verdict.lost.push(what);
            } else {
                verdict.corrupt.push(what);
            }
        }
        verdict
    }

    /// Moves the model to what the live store now holds (after [`Model::check`] with
    /// `strict`): a landed in-flight state joins the key's history; a state that broke the rules
    /// becomes the new required one, so one bad kill is counted once.
    pub fn settle(&mut self, observed: &BTreeMap<String, Map<String, Value>>, verdict: &Verdict) {
        let bad = !verdict.ok();
        let keys: Vec<String> = self
            .keys
            .keys()
            .chain(observed.keys())
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for key in keys {
            let found: KeyState = observed.get(&key).cloned();
            let history = self.keys.entry(key).or_insert_with(History::new);
            if *history.latest() != found {
                history.states.push(found);
                if bad {
                    history.floor = history.states.len() - 1;
                }
            }
        }
    }
}

/// Lists the store at `dir`'s snapshot as key → fields without `updatedAt`.
///
/// # Errors
///
/// The store's error, as text.
pub fn list_store(store: &Store) -> Result<BTreeMap<String, Map<String, Value>>, String> {
    let entries = store
        .list(&ListQuery::all())
        .map_err(|e| format!("cannot list the store: {e}"))?;
    let mut out = BTreeMap::new();
    for (key, entry) in entries {
        let mut fields = match entry.to_value() {
            Value::Object(fields) => fields,
            other => {
                let mut m = Map::new();
                m.insert("not-an-object".into(), other);
                m
            }
        };
        fields.remove("updatedAt");
        out.insert(key, fields);
    }
    Ok(out)
}

/// The epoch in the journal's header line, if it can be read.
pub fn journal_epoch(dir: &Path) -> Option<u64> {
    let bytes = std::fs::read(dir.join(JOURNAL_NAME)).ok()?;
    let line = bytes.split(|&b| b == b'\n').next()?;
    let header: Value = serde_json::from_slice(line).ok()?;
    header.get("epoch")?.as_u64()
}

/// The compaction temp files found in a store directory after a kill.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Temps {
    /// New snapshots being written (`.sessions.json.<pid>.<hex>.sktmp`).
    pub snapshot: u64,
    /// New journals being written or waiting for their rename
    /// (`.sessions.json.journal.<pid>.<hex>.sktmp`).
    pub journal: u64,
    /// True if a new journal was waiting whose epoch follows the live journal's, with no new
    /// snapshot beside it: the kill landed between the snapshot's rename and the journal's.
    pub between_renames: bool,
}

impl Temps {
    /// True if any compaction temp file was there.
    pub fn any(&self) -> bool {
        self.snapshot + self.journal > 0
    }
}

/// Lists the compaction temp files in `dir`.
pub fn find_temps(dir: &Path) -> Result<Temps, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut temps = Temps::default();
    let mut journal_epochs = Vec::new();
    let journal_prefix = format!(".{JOURNAL_NAME}.");
    let snapshot_prefix = format!(".{SNAPSHOT_NAME}.");
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name();
        if !sessionkit_atomic_fs::is_temp_file_name(&name) {
            continue;
        }
        let name = name.to_string_lossy();
        if name.starts_with(&journal_prefix) {
            temps.journal += 1;
            let epoch = std::fs::read(entry.path()).ok().and_then(|bytes| {
                let line = bytes.split(|&b| b == b'\n').next()?.to_vec();
                serde_json::from_slice::<Value>(&line)
                    .ok()?
                    .get("epoch")?
                    .as_u64()
            });
            journal_epochs.extend(epoch);
        } else if name.starts_with(&snapshot_prefix) {
            temps.snapshot += 1;
        }
    }
    if temps.snapshot == 0
        && let Some(live) = journal_epoch(dir)
    {
        temps.between_renames = journal_epochs.contains(&(live + 1));
    }
    Ok(temps)
}

/// What to run.
#[derive(Clone, Debug)]
pub struct StoreKill9Config {
    /// The `sessionkit-torture` binary, which plays the child.
    pub exe: PathBuf,
    /// Where the scratch directory is made.
    pub base_dir: PathBuf,
    /// How many children to kill.
    pub kills: u64,
    /// The seed of the delays and of the children's op streams.
    pub seed: u64,
    /// The writer the children use.
    pub variant: StoreVariant,
    /// Worker threads per child.
    pub threads: u64,
    /// Long-lived keys per thread.
    pub live_keys: u64,
    /// The longest pause of each child's compactor thread, in ms.
    pub compact_every_ms: u64,
    /// Reader threads per child.
    pub readers: u64,
    /// The longest wait between `ready` and the kill.
    pub max_delay: Duration,
    /// A fresh store starts every this many kills.
    pub fresh_every: u64,
    /// Every this many rounds two writer processes share the store (0: never).
    pub pair_every: u64,
    /// Runs every child under this `strace`, which injects `EIO` into some of its `fdatasync`,
    /// `fsync` and `ftruncate` calls (see [`fault_plan`]); `None`: no faults.
    pub faults: Option<PathBuf>,
    /// Stops after the first round with a violation (a mutant's run: it only has to be caught).
    pub stop_when_caught: bool,
}

impl StoreKill9Config {
    /// The defaults: 4 threads of 8 live keys, compactions every 0-8 ms, kills 0-20 ms after
    /// `ready`, a fresh store every 100 kills, a second writer process every fourth round.
    pub fn new(exe: PathBuf, kills: u64, seed: u64, variant: StoreVariant) -> StoreKill9Config {
        StoreKill9Config {
            exe,
            base_dir: std::env::temp_dir(),
            kills,
            seed,
            variant,
            threads: 4,
            live_keys: 8,
            compact_every_ms: 8,
            readers: 1,
            max_delay: Duration::from_millis(20),
            fresh_every: 100,
            pair_every: 4,
            faults: None,
            stop_when_caught: false,
        }
    }
}

/// Finds `strace` and checks that it can trace here.
///
/// # Errors
///
/// Why not, for a `SKIP:` line.
pub fn find_strace() -> Result<PathBuf, String> {
    let strace = crate::power::find_tool("strace")
        .ok_or("strace is not installed (`cargo xtask tools` installs it)")?;
    let output = std::process::Command::new(&strace)
        .args(["-f", "-qq", "-o", "/dev/null", "--", "true"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", strace.display()))?;
    if output.status.success() {
        Ok(strace)
    } else {
        Err(format!(
            "strace cannot trace here: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The faults one child runs under: `strace` options, drawn from a seeded generator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// The options, put before the child's command line.
    pub options: Vec<String>,
    /// True for the full-disk plan: only the journal's own calls fail, its writes with
    /// `ENOSPC`.
    pub full_disk: bool,
}

/// The faults of one child, drawn from `rng`; `journal` is the store's journal. `strace` counts
/// each thread's calls apart, so the writer thread's batches, the compactor's and the opener's
/// calls each fail on their own schedule. Two children in three get the plan of failing
/// fsyncs:
///
/// - every few `fdatasync` calls (each batch's one fsync) fail from the second to the eighth
///   on, so batches fail and are cut back out of the journal;
/// - every other `ftruncate` fails, so half of those cuts fail and the batch is fenced off
///   instead, and half of the cuts at the fence succeed;
/// - in half the children every few `fsync` calls fail too: the fence's own write (then the
///   outcome is unknown), a directory's, or a compaction's.
///
/// The third gets the full-disk plan, which touches the journal's calls alone (`strace -P`):
/// every few of its `write` calls (each batch's one append, and the header of a new journal)
/// fail with `ENOSPC` from the second to the fifth on, and its `fdatasync` and every other
/// `ftruncate` with `EIO` as above. So a batch fails before any byte of it is written, a cut
/// of nothing may fail and fence off an empty batch, and the fence (another file) always goes
/// up.
pub fn fault_plan(rng: &mut SplitMix64, journal: &Path) -> FaultPlan {
    let ftruncate = inject("ftruncate", "EIO", 1 + rng.below(2), 2);
    let full_disk = rng.below(3) == 0;
    let mut options = if full_disk {
        let mut options = vec![
            "-P".to_owned(),
            journal.display().to_string(),
            "-e".to_owned(),
            "trace=write,fdatasync,ftruncate".to_owned(),
        ];
        options.extend(inject(
            "write",
            "ENOSPC",
            2 + rng.below(4),
            2 + rng.below(5),
        ));
        options.extend(inject(
            "fdatasync",
            "EIO",
            3 + rng.below(6),
            4 + rng.below(6),
        ));
        options
    } else {
        let mut options = vec![
            "-e".to_owned(),
            "trace=fdatasync,fsync,ftruncate".to_owned(),
        ];
        options.extend(inject(
            "fdatasync",
            "EIO",
            2 + rng.below(7),
            3 + rng.below(6),
        ));
        options
    };
    options.extend(ftruncate);
    if !full_disk && rng.below(2) == 0 {
        options.extend(inject("fsync", "EIO", 2 + rng.below(11), 4 + rng.below(9)));
    }
    FaultPlan { options, full_disk }
}

/// The `strace` options that fail `call` with `errno` at its `first` call and every `step`th
/// after it.
fn inject(call: &str, errno: &str, first: u64, step: u64) -> [String; 2] {
    [
        "-e".to_owned(),
        format!("inject={call}:error={errno}:when={first}+{step}"),
    ]
}

/// What a kill -9 run found.
#[derive(Clone, Debug, Default)]
pub struct StoreKill9Report {
    /// The writer variant.
    pub variant: Option<StoreVariant>,
    /// Rounds: children killed and the store checked.
    pub kills: u64,
    /// SIGKILLs sent (two in a round with a second writer).
    pub sigkills: u64,
    /// Rounds in which a second writer process shared the store and was killed first.
    pub pair_rounds: u64,
    /// Kills after which everything was as required.
    pub verified: u64,
    /// Kills after which something was wrong.
    pub violations: u64,
    /// Reopens that cut a torn journal tail.
    pub torn_tails: u64,
    /// Bytes cut as torn tails.
    pub torn_bytes: u64,
    /// Compactions completed (the journal epoch's growth).
    pub compactions: u64,
    /// Kills that left a compaction temp file (a compaction in progress).
    pub mid_compaction: u64,
    /// Kills that left a new journal temp file (inside the locked swap).
    pub in_swap: u64,
    /// Kills between the snapshot's rename and the journal's.
    pub between_renames: u64,
    /// Kills after which an unacknowledged update was found in the store (a batch written
    /// but not yet acknowledged).
    pub landed: u64,
    /// Updates the children acknowledged.
    pub acked: u64,
    /// Store errors the children reported before their kill (a failed update, compaction or
    /// read, or a disk check after a compaction).
    pub store_errors: u64,
    /// Rounds after which the reopened store lacked an acknowledged update, held something
    /// unexpected, or did not open.
    pub disk_violations: u64,
    /// Rounds after which the store did not open (without `recover`).
    pub reopen_failures: u64,
    /// Fresh stores started.
    pub stores: u64,
    /// The most entries a store held.
    pub max_entries: usize,
    /// Orphan temp files swept (the store does not remove them on open).
    pub orphans_removed: u64,
    /// Children run under injected faults (0 without them).
    pub faulted_children: u64,
    /// Of them, children under the full-disk plan ([`fault_plan`]).
    pub full_disk_children: u64,
    /// Failed updates whose error said the disk was full (of both kinds).
    pub full_disk_failures: u64,
    /// Updates that failed with a known outcome under injected faults: none may be found.
    pub failed_updates: u64,
    /// Updates whose outcome the store said was unknown (its fence could not be written).
    pub unknown_outcomes: u64,
    /// Children that could not open the store under injected faults.
    pub open_faults: u64,
    /// Kills that left a fence over a failed batch for the reopen to cut.
    pub fences_left: u64,
    /// Reopens that cut a fenced batch out of the journal.
    pub fenced_cuts: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// The first few violations, described.
    pub examples: Vec<String>,
}

impl fmt::Display for StoreKill9Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = self.variant.map_or("?", StoreVariant::name);
        writeln!(
            f,
            "  writer: {variant}; acked updates: {}; stores: {} (up to {} entries); \
             orphan temps swept: {}",
            self.acked, self.stores, self.max_entries, self.orphans_removed
        )?;
        writeln!(
            f,
            "  SIGKILLs: {}; rounds with two writer processes (one killed while the other \
             wrote on): {}",
            self.sigkills, self.pair_rounds
        )?;
        writeln!(
            f,
            "  violations: store errors in children: {}; reopened store lost or changed an \
             acknowledged update: {} (of them, reopen failed: {})",
            self.store_errors, self.disk_violations, self.reopen_failures
        )?;
        writeln!(
            f,
            "  kills mid-compaction (temp file left): {}, of them in the locked swap: {}, \
             between the two renames: {}",
            self.mid_compaction, self.in_swap, self.between_renames
        )?;
        writeln!(
            f,
            "  kills after which an unacknowledged update was found (mid-batch): {}; \
             torn tail bytes cut: {}",
            self.landed, self.torn_bytes
        )?;
        if self.faulted_children > 0 {
            writeln!(
                f,
                "  children under injected faults: {} (under the full-disk plan: {}); updates \
                 failed: {} (outcome unknown: {}; the disk full: {}); opens failed: {}; kills \
                 that left a fence: {}; reopens that cut a fenced batch: {}",
                self.faulted_children,
                self.full_disk_children,
                self.failed_updates,
                self.unknown_outcomes,
                self.full_disk_failures,
                self.open_faults,
                self.fences_left,
                self.fenced_cuts
            )?;
        }
        for example in &self.examples {
            writeln!(f, "  VIOLATION: {example}")?;
        }
        write!(
            f,
            "kills: {}  verified: {}  violations: {}  torn tails cut: {}  compactions seen: {}  \
             elapsed: {:.1}s",
            self.kills,
            self.verified,
            self.violations,
            self.torn_tails,
            self.compactions,
            self.elapsed.as_secs_f64()
        )
    }
}

/// One store under test: its directory, model and the next child generation.
struct Subject {
    dir: PathBuf,
    model: Model,
    gen_: u64,
    epoch: Option<u64>,
}

impl Subject {
    fn fresh(dir: PathBuf) -> Result<Subject, String> {
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
        }
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Subject {
            dir,
            model: Model::new(),
            gen_: 0,
            epoch: None,
        })
    }
}

/// Runs the kill -9 torture of the store.
///
/// # Errors
///
/// Fails when the harness itself cannot work (a child fails to start or exits on its own, the
/// scratch directory cannot be written); violations are counted in the report instead.
pub fn run_kill9(config: &StoreKill9Config) -> Result<StoreKill9Report, String> {
    let started = Instant::now();
    let scratch = ScratchDir::new(&config.base_dir, "store-kill9")
        .map_err(|e| format!("cannot create a scratch dir: {e}"))?;
    let mut rng = SplitMix64::new(mix64(config.seed ^ 0x5707_e4b9));
    let max_delay_us = config.max_delay.as_micros() as u64;
    let mut report = StoreKill9Report {
        variant: Some(config.variant),
        ..StoreKill9Report::default()
    };
    let mut subject: Option<Subject> = None;
    for round in 0..config.kills {
        let renew = match &subject {
            None => true,
            Some(_) => config.fresh_every > 0 && round % config.fresh_every == 0,
        };
        if renew {
            subject = Some(Subject::fresh(scratch.path().join("store"))?);
            report.stores += 1;
        }
        let Some(s) = subject.as_mut() else {
            return Err("no store".into());
        };
        s.gen_ += 1;
        // Every `pair_every`-th round a second writer process shares the store (its own
        // threads and keys); it is killed first, while the other goes on writing, cutting its
        // torn tail and reloading after its compactions.
        let pair = config.pair_every > 0 && round % config.pair_every == config.pair_every - 1;
        let children: Vec<StoreChildArgs> = (0..if pair { 2 } else { 1 })
            .map(|n| StoreChildArgs {
                dir: s.dir.clone(),
                seed: rng.next_u64(),
                gen_: s.gen_,
                threads: config.threads,
                thread_base: n * config.threads,
                live_keys: config.live_keys,
                compact_every_ms: config.compact_every_ms,
                readers: config.readers,
                disk_check: true,
                variant: config.variant,
                faults: config.faults.is_some(),
            })
            .collect();
        // A quarter of the kills come within 2 ms of `ready`: the first batches and the first
        // compaction of a store that has grown since the last child.
        let delay = if rng.below(4) == 0 {
            Duration::from_micros(rng.below(2_001))
        } else {
            Duration::from_micros(rng.below(max_delay_us + 1))
        };
        let mut processes = Vec::new();
        for args in &children {
            processes.push(match &config.faults {
                Some(strace) => {
                    report.faulted_children += 1;
                    let plan = fault_plan(&mut rng, &s.dir.join(JOURNAL_NAME));
                    if plan.full_disk {
                        report.full_disk_children += 1;
                    }
                    StoreProcess::spawn_traced(strace, &plan.options, &config.exe, args)?
                }
                None => StoreProcess::spawn(&config.exe, args)?,
            });
        }
        let mut problems = Vec::new();
        let mut open_errors = 0;
        for process in &mut processes {
            if let Some(error) = process.wait_ready()? {
                if config.faults.is_some() {
                    // An injected fault may fail the open's own cut or fsync.
                    report.open_faults += 1;
                } else {
                    open_errors += 1;
                    problems.push(format!("a child could not open the store: {error}"));
                }
            }
        }
        std::thread::sleep(delay);
        let mut acks = Vec::new();
        let mut delays = vec![delay];
        let last = processes.pop();
        let mut errors = 0;
        let mut reap = |process: StoreProcess, acks: &mut Vec<Reaped>| {
            let reaped = process.kill_and_reap()?;
            if let Some(first) = reaped.errors.first() {
                errors += reaped.errors.len() as u64;
                problems.push(format!(
                    "the store failed a child {} times, first: {first}",
                    reaped.errors.len()
                ));
            }
            acks.push(reaped);
            Ok::<(), String>(())
        };
        for process in processes {
            reap(process, &mut acks)?;
            report.sigkills += 1;
            let more = Duration::from_micros(rng.below(max_delay_us / 2 + 1));
            std::thread::sleep(more);
            delays.push(more);
        }
        if let Some(process) = last {
            reap(process, &mut acks)?;
            report.sigkills += 1;
        }
        report.store_errors += errors + open_errors;
        report.kills += 1;
        if pair {
            report.pair_rounds += 1;
        }
        let acked: usize = acks.iter().map(|reaped| reaped.acks.len()).sum();
        report.acked += acked as u64;
        for fail in acks.iter().flat_map(|reaped| &reaped.fails) {
            if fail.full {
                report.full_disk_failures += 1;
            }
            if fail.unknown {
                report.unknown_outcomes += 1;
            } else {
                report.failed_updates += 1;
            }
        }
        if s.dir.join(FENCE_NAME).exists() {
            report.fences_left += 1;
        }

        let temps = find_temps(&s.dir)?;
        if temps.any() {
            report.mid_compaction += 1;
        }
        if temps.journal > 0 {
            report.in_swap += 1;
        }
        if temps.between_renames {
            report.between_renames += 1;
        }
        let mut in_flight = InFlight::default();
        for (args, reaped) in children.iter().zip(&acks) {
            in_flight.merge(s.model.record_child(args, &reaped.acks, &reaped.fails)?);
        }

        match Store::open(snapshot_path(&s.dir)) {
            Ok(store) => {
                if let Some(bytes) = store.open_report().torn_tail_bytes {
                    report.torn_tails += 1;
                    report.torn_bytes += bytes;
                }
                if store.open_report().fenced_batch_bytes.is_some() {
                    report.fenced_cuts += 1;
                }
                match list_store(&store) {
                    Ok(observed) => {
                        let verdict = s.model.check(&observed, &in_flight, true);
                        if verdict.landed > 0 {
                            report.landed += 1;
                        }
                        if !verdict.ok() {
                            report.disk_violations += 1;
                            problems.push(verdict.describe());
                        }
                        s.model.settle(&observed, &verdict);
                        report.max_entries = report.max_entries.max(observed.len());
                    }
                    Err(e) => problems.push(e),
                }
            }
            Err(e) => {
                report.disk_violations += 1;
                report.reopen_failures += 1;
                problems.push(format!("reopen failed: {e}"));
            }
        }
        let epoch = journal_epoch(&s.dir);
        if let (Some(before), Some(after)) = (s.epoch, epoch) {
            report.compactions += after.saturating_sub(before);
        }
        s.epoch = epoch;
        report.orphans_removed += sweep_orphans(&s.dir)?;

        if problems.is_empty() {
            report.verified += 1;
        } else {
            report.violations += 1;
            // Keep room for the worse kind: what the reopened store lacks.
            let on_disk = problems.len() > usize::from(report_store_errors(&problems));
            let room = if on_disk {
                report.examples.len() < MAX_EXAMPLES
            } else {
                report.examples.len() < MAX_EXAMPLES / 2
            };
            if room {
                let seeds: Vec<u64> = children.iter().map(|a| a.seed).collect();
                let delays: Vec<u128> = delays.iter().map(Duration::as_micros).collect();
                report.examples.push(format!(
                    "kill #{round} (store gen {}, child seeds {seeds:?}, delays {delays:?}us, \
                     {acked} acks, temps {:?}): {}",
                    s.gen_,
                    temps,
                    problems.join("; ")
                ));
            }
            // A store that cannot be opened cannot go on; start a fresh one.
            if problems.iter().any(|p| p.starts_with("reopen failed")) {
                subject = None;
            }
            if config.stop_when_caught {
                break;
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// How many of a round's problems are store errors reported by a child.
fn report_store_errors(problems: &[String]) -> u8 {
    problems
        .iter()
        .filter(|p| p.starts_with("the store failed") || p.starts_with("a child could not"))
        .count()
        .min(u8::MAX as usize) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("v".into(), Value::from(v));
        m
    }

    #[test]
    fn a_same_version_difference_names_what_the_found_state_has_and_lacks() {
        let mut found = fields(7);
        found.insert("p".into(), Value::from(7));
        found.insert("big".into(), Value::from("x"));
        let mut required = fields(7);
        required.insert("p".into(), Value::from(7));
        required.insert("big".into(), Value::from("y"));
        required.insert("meta".into(), Value::from(1));
        required.insert("u".into(), Value::from(3));
        found.insert("pad".into(), Value::from("z"));
        assert_eq!(
            differing_fields(&Some(found), &Some(required)),
            r#" (same version; found has besides ["pad"], lacks ["meta", "u"], differs in ["big"])"#
        );
        assert_eq!(differing_fields(&Some(fields(7)), &Some(fields(8))), "");
        assert_eq!(differing_fields(&None, &Some(fields(8))), "");
    }

    #[test]
    fn parses_ack_lines() {
        assert_eq!(parse_event(b"ready"), Event::Ready);
        assert_eq!(
            parse_event(b"ack 2 17 patch l:2:5 4294967313"),
            Event::Ack(AckLine {
                thread: 2,
                index: 17,
                op: "patch".into(),
                key: "l:2:5".into(),
                version: 4_294_967_313,
            })
        );
        assert!(matches!(parse_event(b"ack 2 x"), Event::Garbage(_)));
    }

    #[test]
    fn the_model_requires_acked_states_and_allows_the_in_flight_one() {
        let args = StoreChildArgs {
            dir: PathBuf::from("/nowhere"),
            seed: 11,
            gen_: 1,
            threads: 1,
            thread_base: 0,
            live_keys: 2,
            compact_every_ms: 0,
            readers: 0,
            disk_check: false,
            variant: StoreVariant::Correct,
            faults: false,
        };
        let mut ops = ThreadOps::new(11, 1, 0, 2);
        let mut acks = Vec::new();
        let mut truth: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
        for _ in 0..20 {
            let op = ops.next_op();
            let next = apply_op(truth.get(&op.key), &op.kind);
            match next {
                Some(f) => truth.insert(op.key.clone(), f),
                None => truth.remove(&op.key),
            };
            acks.push(match parse_event(op.ack_line(0).as_bytes()) {
                Event::Ack(a) => a,
                other => panic!("{other:?}"),
            });
        }
        let mut model = Model::new();
        let in_flight = model.record_child(&args, &acks, &[]).expect("acks match");
        assert_eq!(in_flight.len(), 1);
        assert!(model.check(&truth, &in_flight, true).ok());

        // The in-flight op landed: allowed.
        let next = ops.next_op();
        let mut landed = truth.clone();
        match apply_op(truth.get(&next.key), &next.kind) {
            Some(f) => landed.insert(next.key.clone(), f),
            None => landed.remove(&next.key),
        };
        let verdict = model.check(&landed, &in_flight, true);
        assert!(verdict.ok() && verdict.landed == 1, "{verdict:?}");

        // A key rolled back, a stray key, a missing key: caught.
        let mut bad = truth.clone();
        let (key, _) = bad.pop_first().expect("a key");
        assert!(!model.check(&bad, &in_flight, true).ok());
        let mut stray = truth.clone();
        stray.insert("l:9:9".into(), fields(1));
        assert!(!model.check(&stray, &in_flight, true).ok());
        let mut wrong = truth.clone();
        wrong.insert(key, fields(3));
        assert!(!model.check(&wrong, &in_flight, false).ok());

        // An ack that is not the stream's next op is a harness error.
        let mut shuffled = acks.clone();
        shuffled.swap(0, 1);
        assert!(Model::new().record_child(&args, &shuffled, &[]).is_err());
    }

    #[test]
    fn a_failed_op_must_not_land_unless_its_outcome_is_unknown() {
        let args = StoreChildArgs {
            dir: PathBuf::from("/nowhere"),
            seed: 12,
            gen_: 1,
            threads: 1,
            thread_base: 3,
            live_keys: 2,
            compact_every_ms: 0,
            readers: 0,
            disk_check: false,
            variant: StoreVariant::Correct,
            faults: true,
        };
        let mut ops = ThreadOps::new(12, 1, 3, 2);
        let first = ops.next_op();
        let ack = match parse_event(first.ack_line(3).as_bytes()) {
            Event::Ack(a) => a,
            other => panic!("{other:?}"),
        };
        let mut truth = BTreeMap::new();
        if let Some(f) = apply_op(None, &first.kind) {
            truth.insert(first.key.clone(), f);
        }
        let failed = ops.next_op();
        let mut landed = truth.clone();
        match apply_op(truth.get(&failed.key), &failed.kind) {
            Some(f) => landed.insert(failed.key.clone(), f),
            None => landed.remove(&failed.key),
        };
        assert_eq!(
            parse_event(b"fail 3 1 known"),
            Event::Fail(FailLine {
                thread: 3,
                index: 1,
                unknown: false,
                full: false,
            })
        );

        for (line, may_land) in [(&b"fail 3 1 known"[..], false), (b"fail 3 1 unknown", true)] {
            let Event::Fail(fail) = parse_event(line) else {
                panic!("{line:?} is not a fail line");
            };
            let mut model = Model::new();
            let in_flight = model
                .record_child(&args, std::slice::from_ref(&ack), &[fail])
                .expect("the failure is the op after the ack");
            assert!(model.check(&truth, &in_flight, true).ok());
            assert_eq!(model.check(&landed, &in_flight, true).ok(), may_land);
        }

        // A failure that is not its thread's next op, or of another child's thread: harness
        // errors.
        for fail in [
            FailLine {
                thread: 3,
                index: 0,
                unknown: false,
                full: false,
            },
            FailLine {
                thread: 0,
                index: 1,
                unknown: false,
                full: false,
            },
        ] {
            let mut model = Model::new();
            assert!(
                model
                    .record_child(&args, std::slice::from_ref(&ack), &[fail])
                    .is_err()
            );
        }
        assert_eq!(
            parse_event(b"fail 3 1 unknown full"),
            Event::Fail(FailLine {
                thread: 3,
                index: 1,
                unknown: true,
                full: true,
            })
        );
        for garbage in [
            &b"fail 3 1 maybe"[..],
            b"fail 3 1 known empty",
            b"fail 3 1 known full full",
        ] {
            assert!(
                matches!(parse_event(garbage), Event::Garbage(_)),
                "{garbage:?}"
            );
        }
    }

    /// A third of the plans or so are the full-disk plan, which touches the journal alone;
    /// the others fail fsyncs and truncates of every file and never write.
    #[test]
    fn fault_plans_are_of_both_kinds_and_the_full_disk_one_touches_the_journal_alone() {
        let journal = Path::new("/s/sessions.json.journal");
        let mut rng = SplitMix64::new(42);
        let plans: Vec<FaultPlan> = (0..300).map(|_| fault_plan(&mut rng, journal)).collect();
        let full = plans.iter().filter(|p| p.full_disk).count();
        assert!((60..=140).contains(&full), "{full} of 300 full-disk plans");
        for plan in &plans {
            let joined = plan.options.join(" ");
            if plan.full_disk {
                assert!(
                    joined.starts_with("-P /s/sessions.json.journal ")
                        && joined.contains("inject=write:error=ENOSPC:when=")
                        && !joined.contains("inject=fsync"),
                    "{joined}"
                );
            } else {
                assert!(
                    !joined.contains("-P") && !joined.contains("write"),
                    "{joined}"
                );
            }
        }
    }
}
