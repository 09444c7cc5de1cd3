//! Several processes writing one store at once, through compactions: four copies of this test
//! binary (re-run with a filter and an environment variable that makes them the children)
//! write 2,000 updates each, while their stores compact by themselves at a small threshold
//! and child 0 also compacts on demand.
//!
//! - Each child reads its own writes back after every ack, and now and then audits the
//!   journal as it is on disk (each writer's records once each, in order, none skipped).
//! - Afterwards the parent checks that every acknowledged update is in the store, that the
//!   journal left behind passes the same audit, that each child's acks counted 1, 2, 3, ...,
//!   and that compactions really happened during the run.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};

use serde_json::{Value, json};
use sessionkit_session_store::{
    Activity, Entry, IoCounters, ListQuery, Op, Patch, Record, SeqTracker, Store, StoreBuilder,
    SyncMode, WriterId, load_snapshot, parse_journal,
};

use crate::util::Scratch;

/// The scratch directory, for a child of the distinct-keys test.
const DISTINCT_CHILD: &str = "SK_STORE_TEST_PROCS_DISTINCT";
/// The scratch directory, for a child of the shared-key test.
const SHARED_CHILD: &str = "SK_STORE_TEST_PROCS_SHARED";
/// The child's number, 0 to `PROCESSES - 1`.
const CHILD_NUMBER: &str = "SK_STORE_TEST_PROCS_N";

const PROCESSES: usize = 4;
/// Updates per process.
const UPDATES: usize = 2_000;
/// Child 0 compacts on demand once every this many of its updates (on top of the automatic
/// compactions of every child).
const COMPACT_EVERY: usize = 250;
/// Each child audits the journal on disk once every this many of its updates.
const AUDIT_EVERY: usize = 100;
/// The key every child patches in the shared-key test.
const SHARED_KEY: &str = "shared";

/// Small thresholds, so that compactions (and reloads in the other processes) happen all the
/// time: 16 KiB of journal, or a fifth of the snapshot. No process is killed here, so an
/// acknowledged update is one written to the journal, and fsyncs would only slow the run
/// down (the model test covers `SyncMode::EveryBatch`).
fn builder() -> StoreBuilder {
    let mut builder = Store::builder();
    builder.sync(SyncMode::Never).compact_when(16 << 10, 0.2);
    builder
}

/// The entry child `n` writes for its update `i` in the distinct-keys test.
fn entry_value(n: usize, i: usize) -> Value {
    json!({"sessionId": format!("p{n}-{i}"), "p": n, "i": i})
}

fn distinct_key(n: usize, i: usize) -> String {
    format!("p{n}:{i}")
}

/// The field child `n` patches in the shared-key test.
fn shared_field(n: usize) -> String {
    format!("p{n}")
}

/// The child whose update `record` is in the distinct-keys test, if it is one: an upsert of
/// `p{n}:{i}` with `entry_value(n, i)`, where `i` is `seq - 1`.
fn distinct_record(record: &Record) -> Option<usize> {
    let (n, i) = record.key.strip_prefix('p')?.split_once(':')?;
    let (n, i): (usize, usize) = (n.parse().ok()?, i.parse().ok()?);
    let Op::Upsert(entry) = &record.op else {
        return None;
    };
    (record.seq == i as u64 + 1 && entry.to_value() == entry_value(n, i)).then_some(n)
}

/// The child whose update `record` is in the shared-key test, if it is one: a patch of
/// `shared` setting `p{n}` to `seq - 1` (and `updatedAt`, nothing else).
fn shared_record(record: &Record) -> Option<usize> {
    let Op::Patch(patch) = &record.op else {
        return None;
    };
    let patch = patch.to_value();
    let fields = patch.as_object()?;
    let (n, i) = fields
        .iter()
        .find_map(|(name, value)| Some((name.strip_prefix('p')?.parse().ok()?, value)))?;
    let right = record.key == SHARED_KEY
        && fields.len() == 2
        && fields.contains_key("updatedAt")
        && *i == json!(record.seq - 1);
    right.then_some(n)
}

/// One journal file's records, audited: each is an update of a child (`child_of` says which),
/// each writer's are all of one child, and its seqs run up by one (nothing twice, nothing out
/// of order, nothing missing between). Returns each writer's child and seqs, in file order.
fn audit(
    bytes: &[u8],
    child_of: fn(&Record) -> Option<usize>,
) -> Result<BTreeMap<WriterId, (usize, Vec<u64>)>, String> {
    let path = Path::new("sessions.json.journal");
    let parsed = parse_journal(path, bytes).map_err(|e| format!("{e}: {e:?}"))?;
    let mut writers: BTreeMap<WriterId, (usize, Vec<u64>)> = BTreeMap::new();
    for read in &parsed.records {
        let record = &read.record;
        let n = child_of(record).ok_or_else(|| format!("not an acknowledged update: {read:?}"))?;
        let (child, seqs) = writers.entry(record.writer).or_insert((n, Vec::new()));
        if *child != n {
            return Err(format!("writer of child {child} wrote for {n}: {read:?}"));
        }
        if let Some(last) = seqs.last()
            && record.seq != last + 1
        {
            return Err(format!("seq {} after {last}: {read:?}", record.seq));
        }
        seqs.push(record.seq);
    }
    Ok(writers)
}

/// The children of one test, killed and reaped if the parent panics before it waits for them.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // A child already waited for is not signalled again.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What one child wrote to its log.
#[derive(Debug, Default)]
struct ChildLog {
    writer: Option<WriterId>,
    /// `(seq, i)` of every acknowledged update, in order.
    acks: Vec<(u64, usize)>,
    counters: Option<IoCounters>,
    counters_text: String,
    /// Compactions on demand that another process's compaction had superseded.
    superseded: usize,
}

fn parse_log(text: &str) -> ChildLog {
    let mut log = ChildLog::default();
    for line in text.lines() {
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        match tag {
            "WRITER" => log.writer = Some(rest.parse().unwrap()),
            "ACK" => {
                let (seq, i) = rest.split_once(' ').unwrap();
                log.acks.push((seq.parse().unwrap(), i.parse().unwrap()));
            }
            "COMPACT" => log.superseded += usize::from(rest == "superseded"),
            "COUNTERS" => {
                let c: Value = serde_json::from_str(rest).unwrap();
                let field = |name: &str| c[name].as_u64().unwrap();
                let mut counters = IoCounters::default();
                counters.compactions = field("compactions");
                counters.reloads = field("reloads");
                counters.followed_compactions = field("followedCompactions");
                counters.updates = field("updates");
                log.counters = Some(counters);
                log.counters_text = rest.to_owned();
            }
            other => panic!("unexpected log line {other:?}: {line}"),
        }
    }
    log
}

/// Runs `PROCESSES` children of the test `test` (this binary, filtered to it), with `role`
/// set to the scratch directory, waits for all of them and returns their logs.
fn run_children(test: &str, role: &str, dir: &Scratch) -> Vec<ChildLog> {
    let exe = std::env::current_exe().unwrap();
    let mut children = Children(Vec::new());
    for n in 0..PROCESSES {
        let child = Command::new(&exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(role, dir.path())
            .env(CHILD_NUMBER, n.to_string())
            .stdout(File::create(dir.join(format!("stdout-{n}"))).unwrap())
            .stderr(File::create(dir.join(format!("stderr-{n}"))).unwrap())
            .spawn()
            .unwrap();
        children.0.push(child);
    }
    let statuses: Vec<ExitStatus> = children.0.iter_mut().map(|c| c.wait().unwrap()).collect();
    for (n, status) in statuses.iter().enumerate() {
        let read = |name: String| fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            status.success(),
            "child {n}: {status}\n--- stdout\n{}\n--- stderr\n{}",
            read(format!("stdout-{n}")),
            read(format!("stderr-{n}"))
        );
    }
    (0..PROCESSES)
        .map(|n| parse_log(&fs::read_to_string(dir.join(format!("log-{n}"))).unwrap()))
        .collect()
}

/// The child's side: opens the store, runs `update(store, n, i)` for every `i` and logs its
/// ack; audits the journal on disk every `AUDIT_EVERY` updates; child 0 also compacts every
/// `COMPACT_EVERY` updates.
fn child_side(
    dir: &Path,
    update: impl Fn(&Store, usize, usize) -> u64,
    child_of: fn(&Record) -> Option<usize>,
) {
    let n: usize = std::env::var(CHILD_NUMBER).unwrap().parse().unwrap();
    // Start together, so that the processes overlap from the first update to the last (and
    // give up if the parent died before it started them all).
    let parent = std::os::unix::process::parent_id();
    File::create(dir.join(format!("ready-{n}"))).unwrap();
    while !(0..PROCESSES).all(|m| dir.join(format!("ready-{m}")).exists()) {
        assert_eq!(
            std::os::unix::process::parent_id(),
            parent,
            "the parent is gone"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let store = builder().open(dir.join("sessions.json")).unwrap();
    let mut log = BufWriter::new(File::create(dir.join(format!("log-{n}"))).unwrap());
    writeln!(log, "WRITER {}", store.writer_id()).unwrap();
    for i in 0..UPDATES {
        let seq = update(&store, n, i);
        writeln!(log, "ACK {seq} {i}").unwrap();
        if n == 0 && i % COMPACT_EVERY == COMPACT_EVERY / 2 {
            let report = store.compact().unwrap();
            let how = if report.superseded {
                "superseded"
            } else {
                "done"
            };
            writeln!(log, "COMPACT {how}").unwrap();
        }
        if i % AUDIT_EVERY == n {
            // Read without the lock: an append in flight is a torn tail, which is skipped.
            let bytes = fs::read(store.journal_path()).unwrap();
            if let Err(e) = audit(&bytes, child_of) {
                panic!("child {n} audited the journal after its update {i}: {e}");
            }
        }
    }
    let counters = serde_json::to_string(&store.counters()).unwrap();
    println!("COUNTERS {counters}");
    writeln!(log, "COUNTERS {counters}").unwrap();
    log.flush().unwrap();
}

/// Checks the logs, and returns the writer ids in child order.
fn check_logs(logs: &[ChildLog]) -> Vec<WriterId> {
    let mut compactions = 0;
    let mut reloads = 0;
    let mut followed = 0;
    for (n, log) in logs.iter().enumerate() {
        // Every update was acknowledged once, and each writer's seqs count 1, 2, 3, ...
        let expected: Vec<(u64, usize)> = (0..UPDATES).map(|i| (i as u64 + 1, i)).collect();
        assert!(log.acks == expected, "child {n}'s acks: {:?}", log.acks);
        let counters = log.counters.unwrap();
        assert_eq!(counters.updates, UPDATES as u64, "child {n}");
        println!("child {n}: {}", log.counters_text);
        compactions += counters.compactions;
        reloads += counters.reloads;
        followed += counters.followed_compactions;
    }
    println!(
        "{compactions} compactions, {followed} followed and {reloads} reloads by the others, {} \
         compactions on demand superseded",
        logs[0].superseded
    );
    // The run really compacted while the processes wrote.
    assert!(compactions >= 1, "no compaction happened");
    let writers: Vec<WriterId> = logs.iter().map(|l| l.writer.unwrap()).collect();
    let distinct: BTreeSet<&WriterId> = writers.iter().collect();
    assert_eq!(distinct.len(), PROCESSES, "{writers:?}");
    writers
}

/// Audits the journal the children left, with what the logs say: each writer's records there
/// are its child's last ones, up to `UPDATES` (those before were compacted into the snapshot).
/// Then checks that replaying the journal over the snapshot skips nothing and gives what the
/// store reads, and returns what it reads.
fn check_files(
    dir: &Scratch,
    writers: &[WriterId],
    child_of: fn(&Record) -> Option<usize>,
) -> Vec<(String, Entry)> {
    let path = dir.join("sessions.json");
    let journal_path = dir.join("sessions.json.journal");
    let bytes = fs::read(&journal_path).unwrap();
    let parsed = parse_journal(&journal_path, &bytes).unwrap();
    assert!(parsed.header.is_some());
    assert_eq!(parsed.torn_tail, None);
    let audited = audit(&bytes, child_of).unwrap();
    for (writer, (n, seqs)) in &audited {
        assert_eq!(writers.get(*n), Some(writer), "child {n}'s records");
        assert_eq!(seqs.last(), Some(&(UPDATES as u64)), "child {n}'s records");
    }
    println!(
        "the journal left holds {} records of children {:?}",
        parsed.records.len(),
        audited.values().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let mut state = load_snapshot(&path).unwrap();
    let replay = state.replay(&parsed.records, &mut SeqTracker::new());
    assert!(replay.skipped.is_empty(), "{:?}", replay.skipped);

    let store = Store::open(&path).unwrap();
    assert_eq!(store.open_report().torn_tail_bytes, None);
    assert!(store.open_report().quarantined.is_empty());
    let listed = store.list(&ListQuery::all()).unwrap();
    let replayed: Vec<(String, Entry)> = state
        .iter()
        .map(|(k, e)| (k.to_owned(), e.clone()))
        .collect();
    assert!(listed == replayed, "the store differs from the replay");
    listed
}

#[test]
fn four_processes_upsert_distinct_keys_through_compactions() {
    if let Some(dir) = std::env::var_os(DISTINCT_CHILD) {
        let upsert = |store: &Store, n, i| {
            let key = distinct_key(n, i);
            let entry = Entry::from_value(&entry_value(n, i)).unwrap();
            let seq = store.upsert(&key, entry).unwrap().seq;
            // Read your writes, whatever the others compacted meanwhile: this one and an
            // older one.
            for (key, i) in [(key, i), (distinct_key(n, i / 2), i / 2)] {
                let got = store.get(&key).unwrap().map(|e| e.to_value());
                assert_eq!(got, Some(entry_value(n, i)), "{key} after the ack of {i}");
            }
            seq
        };
        child_side(Path::new(&dir), upsert, distinct_record);
        return;
    }
    let dir = Scratch::new("procs-distinct");
    let logs = run_children(
        "procs::four_processes_upsert_distinct_keys_through_compactions",
        DISTINCT_CHILD,
        &dir,
    );
    let writers = check_logs(&logs);
    let listed = check_files(&dir, &writers, distinct_record);
    // Every acknowledged update is there, with its content, and nothing else.
    let all: BTreeMap<String, Value> = listed.into_iter().map(|(k, e)| (k, e.to_value())).collect();
    let expected: BTreeMap<String, Value> = (0..PROCESSES)
        .flat_map(|n| (0..UPDATES).map(move |i| (distinct_key(n, i), entry_value(n, i))))
        .collect();
    assert_eq!(all.len(), expected.len());
    assert!(
        all == expected,
        "the store lacks or changed acknowledged updates"
    );
}

#[test]
fn four_processes_patch_one_key_through_compactions() {
    if let Some(dir) = std::env::var_os(SHARED_CHILD) {
        let patch = |store: &Store, n, i| {
            let patch = Patch::from_value(&json!({ shared_field(n): i })).unwrap();
            let seq = store
                .patch(SHARED_KEY, patch, Activity::Advance)
                .unwrap()
                .seq;
            // Read your writes: only this child writes its field.
            let got = store.get(SHARED_KEY).unwrap().map(|e| e.to_value());
            let mine = got.as_ref().and_then(|v| v.get(shared_field(n)));
            assert_eq!(mine, Some(&json!(i)), "{got:?} after the ack of {i}");
            seq
        };
        child_side(Path::new(&dir), patch, shared_record);
        return;
    }
    let dir = Scratch::new("procs-shared");
    let logs = run_children(
        "procs::four_processes_patch_one_key_through_compactions",
        SHARED_CHILD,
        &dir,
    );
    let writers = check_logs(&logs);
    let listed = check_files(&dir, &writers, shared_record);
    // Each process's last acknowledged value is there.
    assert_eq!(listed.len(), 1, "{listed:?}");
    let entry = listed[0].1.to_value();
    for (n, log) in logs.iter().enumerate() {
        let last = log.acks.last().unwrap().1;
        assert_eq!(entry.get(shared_field(n)), Some(&json!(last)), "{entry}");
    }
}
