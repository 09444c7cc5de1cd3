//! The store against a model: random sequences of upserts, patches, deletes and touches (alone,
//! or in bursts through two handles), compactions (with updates and reads through either handle
//! while they run), crashes with torn journal tails, a second handle as another process would
//! open it, a crash between the two renames of a compaction, and maintenance passes at a cap
//! (the model evicts the oldest entries itself). After every step every open
//! handle must equal a `BTreeMap<String, Value>` that only the documented rules update, and the
//! two handles must agree byte for byte.
//!
//! 64 cases by default; `PROPTEST_CASES` sets another number, as for every proptest test. A
//! failure in a compaction step depends on how threads met, so it may not replay exactly; the
//! two races the model found are kept below as tests of their own.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value};
use sessionkit_session_store::{
    Activity, Clock, Entry, ListQuery, Maintenance, ManualClock, Patch, Record, Store,
    StoreBuilder, SyncMode,
};

use crate::strategies::{entry_text, patch_text};
use crate::util::Scratch;

/// Few keys, so updates collide; one needs escaping in the journal and the snapshot.
const KEYS: [&str; 5] = [
    "agent:main:main",
    "agent:main:x",
    "cron:nightly",
    "hook:1b9d",
    "odd \"key\"\n\u{e9}",
];

/// What the store should hold: each entry as a JSON value.
type Model = BTreeMap<String, Value>;

/// Which handle a step goes through. With no second handle open, the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    First,
    Second,
}

/// One update, with the JSON text it is made from.
#[derive(Clone, Debug)]
enum Update {
    /// `upsert` (`activity: None`) or `upsert_with`.
    Upsert {
        key: &'static str,
        entry: String,
        activity: Option<Activity>,
    },
    Patch {
        key: &'static str,
        patch: String,
        activity: Activity,
    },
    Delete {
        key: &'static str,
    },
    Touch {
        key: &'static str,
    },
}

/// The record a crashed writer was appending: a prefix of its line, without the newline (the
/// whole line without its newline counts as torn too).
#[derive(Clone, Debug)]
struct Torn {
    key: &'static str,
    entry: String,
    cut: Index,
}

#[derive(Clone, Debug)]
enum Step {
    /// One update, then reads through every handle.
    Update(Via, Update),
    /// Several updates through either handle with no read in between: each writer must catch
    /// up with what the other appended before it appends (and before it resolves a patch).
    Burst(Vec<(Via, Update)>),
    /// The clock moves on by this many milliseconds.
    Tick(u64),
    /// `Store::compact` through a handle, while another thread updates and reads through a
    /// handle (the same one or the other) until the compaction is done: the records appended
    /// meanwhile move to the new journal, and no read sees a state between the two.
    Compact {
        via: Via,
        during: Via,
        updates: Vec<Update>,
    },
    /// Another process opens the store (if it has not yet).
    OpenSecond,
    /// The other process closes its handle.
    CloseSecond,
    /// The first handle's process dies: its handle is dropped (the writer finishes what it
    /// acknowledged), maybe while it was appending a record (`torn`), maybe with the second
    /// handle's process (`second_too`); the surviving second handle may write before the
    /// first reopens (`meanwhile`, which cuts the torn tail itself).
    Crash {
        torn: Option<Torn>,
        second_too: bool,
        meanwhile: Option<Update>,
    },
    /// The first handle's process dies between the two renames of a compaction: the new
    /// snapshot is in place, the old journal still is too.
    CrashBetweenRenames,
    /// A maintenance pass through a handle, with a cap of [`CAP`] entries (and its slack of
    /// one): past it, the oldest entries by `updatedAt` (those without one first, ties by
    /// key) are evicted down to the cap, through the journal.
    Maintain(Via),
}

/// The entry cap of the maintenance steps; with five keys, a full store is over it.
const CAP: usize = 3;

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&KEYS[..])
}

fn via() -> impl Strategy<Value = Via> {
    prop_oneof![Just(Via::First), Just(Via::Second)]
}

fn update() -> impl Strategy<Value = Update> {
    let activity = prop_oneof![Just(Activity::Advance), Just(Activity::Preserve)];
    prop_oneof![
        3 => (key(), entry_text(), prop::option::of(activity.clone()))
            .prop_map(|(key, entry, activity)| Update::Upsert { key, entry, activity }),
        4 => (key(), patch_text(), activity)
            .prop_map(|(key, patch, activity)| Update::Patch { key, patch, activity }),
        1 => key().prop_map(|key| Update::Delete { key }),
        2 => key().prop_map(|key| Update::Touch { key }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let torn = (key(), entry_text(), any::<Index>()).prop_map(|(key, entry, cut)| Torn {
        key,
        entry,
        cut,
    });
    prop_oneof![
        8 => (via(), update()).prop_map(|(via, update)| Step::Update(via, update)),
        3 => prop::collection::vec((via(), update()), 2..6).prop_map(Step::Burst),
        2 => (1u64..5_000).prop_map(Step::Tick),
        2 => (via(), via(), prop::collection::vec(update(), 0..4))
            .prop_map(|(via, during, updates)| Step::Compact { via, during, updates }),
        2 => Just(Step::OpenSecond),
        1 => Just(Step::CloseSecond),
        2 => (
            prop::option::weighted(0.7, torn),
            prop::bool::weighted(0.2),
            prop::option::weighted(0.3, update()),
        )
            .prop_map(|(torn, second_too, meanwhile)| Step::Crash {
                torn,
                second_too,
                meanwhile,
            }),
        1 => Just(Step::CrashBetweenRenames),
        2 => via().prop_map(Step::Maintain),
    ]
}

fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// RFC 7396, section 2.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(fields) = target else {
        unreachable!()
    };
    for (name, value) in patch {
        if value.is_null() {
            fields.remove(name);
        } else {
            merge(fields.entry(name.clone()).or_insert(Value::Null), value);
        }
    }
}

/// `updatedAt` as the store indexes it: a whole number of milliseconds within `i64`.
fn whole_millis(value: &Value) -> Option<i64> {
    let number = value.as_number()?;
    if let Some(n) = number.as_i64() {
        return Some(n);
    }
    let f = number.as_f64()?;
    let limit = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-limit..limit).contains(&f)).then_some(f as i64)
}

/// A patch by the rule: `Advance` sets `updatedAt` to now; `Preserve` keeps an existing
/// `updatedAt` and sets now where there was none. The patch's own `updatedAt` never counts.
fn patched(existing: Option<&Value>, patch: &Value, activity: Activity, now: i64) -> Value {
    let has_time = existing
        .and_then(|e| e.get("updatedAt"))
        .and_then(whole_millis)
        .is_some();
    let mut patch = patch.as_object().unwrap().clone();
    patch.remove("updatedAt");
    if !(activity == Activity::Preserve && has_time) {
        patch.insert("updatedAt".to_owned(), Value::from(now));
    }
    let mut entry = existing
        .cloned()
        .unwrap_or_else(|| Value::Object(Map::new()));
    merge(&mut entry, &Value::Object(patch));
    entry
}

/// An `upsert_with` by the rule: the entry as given, with `updatedAt` set to now, or with
/// `Preserve` to the existing entry's whole-millisecond `updatedAt` where there is one. The
/// entry's own `updatedAt` never counts: the rule takes the latest of the three times but never
/// one later than now, which is therefore always now.
fn upserted(existing: Option<&Value>, entry: &Value, activity: Activity, now: i64) -> Value {
    let existing_time = existing
        .and_then(|e| e.get("updatedAt"))
        .and_then(whole_millis);
    let at = match (activity, existing_time) {
        (Activity::Preserve, Some(at)) => at,
        _ => now,
    };
    let mut entry = entry.clone();
    entry["updatedAt"] = Value::from(at);
    entry
}

fn ok<T>(result: sessionkit_session_store::Result<T>) -> Result<T, TestCaseError> {
    result.map_err(|e| TestCaseError::fail(format!("{e}: {e:?}")))
}

/// Applies one update through `store` and to the model; `seq` is the handle's last
/// acknowledged `seq` (each writer counts its records from 1).
fn apply(
    store: &Store,
    seq: &mut u64,
    model: &mut Model,
    now: i64,
    update: &Update,
) -> Result<(), TestCaseError> {
    let mut written = |ack_seq: u64| {
        prop_assert_eq!(ack_seq, *seq + 1, "seq");
        *seq = ack_seq;
        Ok(())
    };
    match update {
        Update::Upsert {
            key,
            entry,
            activity,
        } => {
            let parsed = Entry::parse(entry).unwrap();
            let ack = match activity {
                None => ok(store.upsert(*key, parsed))?,
                Some(activity) => ok(store.upsert_with(*key, parsed, *activity))?,
            };
            prop_assert!(ack.durable);
            written(ack.seq)?;
            let next = match activity {
                None => value(entry),
                Some(activity) => upserted(model.get(*key), &value(entry), *activity, now),
            };
            model.insert((*key).to_owned(), next);
        }
        Update::Patch {
            key,
            patch,
            activity,
        } => {
            let ack = ok(store.patch(*key, Patch::parse(patch).unwrap(), *activity))?;
            prop_assert!(ack.durable);
            written(ack.seq)?;
            let next = patched(model.get(*key), &value(patch), *activity, now);
            model.insert((*key).to_owned(), next);
        }
        Update::Delete { key } => {
            let ack = ok(store.delete(*key))?;
            if model.remove(*key).is_some() {
                written(ack.seq)?;
            } else {
                // Deleting a missing key writes nothing.
                prop_assert_eq!(ack.seq, 0);
            }
        }
        Update::Touch { key } => {
            let result = store.touch(*key);
            match model.get_mut(*key) {
                Some(entry) => {
                    let ack = ok(result)?;
                    entry["updatedAt"] = Value::from(now);
                    written(ack.seq)?;
                }
                None => match result {
                    Err(e) => prop_assert!(e.is_no_such_entry(), "{:?}", e),
                    Ok(ack) => prop_assert!(false, "touched a missing key: {:?}", ack),
                },
            }
        }
    }
    Ok(())
}

/// Reads everything through `store` and compares it with the model; returns the entries.
fn read(store: &Store, model: &Model, name: &str) -> Result<Vec<(String, Entry)>, TestCaseError> {
    let list = ok(store.list(&ListQuery::all()))?;
    let got: Model = list
        .iter()
        .map(|(k, e)| (k.clone(), value(e.as_str())))
        .collect();
    prop_assert_eq!(&got, model, "{} handle", name);
    prop_assert_eq!(ok(store.count())?, model.len(), "{} handle", name);
    for key in KEYS {
        let one = ok(store.get(key))?.map(|e| value(e.as_str()));
        prop_assert_eq!(one.as_ref(), model.get(key), "{} handle: {:?}", name, key);
    }
    Ok(list)
}

/// Compacts through `compactor` in a thread of its own while this one applies `updates`
/// through `store`, and reads through both handles after each update and until the compaction
/// is done: every read equals the model as of the last acknowledged update.
fn compact_during(
    compactor: &Store,
    store: &Store,
    seq: &mut u64,
    model: &mut Model,
    now: i64,
    updates: &[Update],
) -> Result<(), TestCaseError> {
    let read_both = |model: &Model, when: &str| {
        read(store, model, &format!("updating, {when}"))?;
        read(compactor, model, &format!("compacting, {when}")).map(drop)
    };
    std::thread::scope(|scope| {
        let compaction = scope.spawn(|| compactor.compact());
        for update in updates {
            apply(store, seq, model, now, update)?;
            read_both(model, "after an update during the compaction")?;
        }
        while !compaction.is_finished() {
            read_both(model, "during the compaction")?;
        }
        let report = ok(compaction.join().unwrap())?;
        prop_assert!(!report.superseded, "{:?}", report);
        if updates.is_empty() {
            prop_assert_eq!(report.entries, model.len());
        }
        Ok(())
    })
}

/// The store under test, its second handle, and the model.
struct Harness {
    _dir: Scratch,
    path: PathBuf,
    saved_journal: PathBuf,
    clock: Arc<ManualClock>,
    builder: StoreBuilder,
    first: Option<Store>,
    second: Option<Store>,
    /// The last `seq` each handle's writer acknowledged.
    seqs: [u64; 2],
    model: Model,
}

impl Harness {
    fn new(second: bool) -> Result<Harness, TestCaseError> {
        let dir = Scratch::new("model");
        let clock = Arc::new(ManualClock::new());
        let mut builder = Store::builder();
        builder
            .sync(SyncMode::EveryBatch)
            .auto_compact(false)
            .clock(clock.clone())
            .maintenance(
                Maintenance::new()
                    .max_entries(Some(CAP))
                    .prune_after(None)
                    .background(false)
                    .interval(None),
            );
        let path = dir.join("sessions.json");
        let first = ok(builder.open(&path))?;
        prop_assert!(first.open_report().created);
        let mut harness = Harness {
            saved_journal: dir.join("journal.before-compaction"),
            _dir: dir,
            path,
            clock,
            builder,
            first: Some(first),
            second: None,
            seqs: [0, 0],
            model: Model::new(),
        };
        if second {
            harness.open_second()?;
        }
        Ok(harness)
    }

    fn first(&self) -> &Store {
        self.first.as_ref().unwrap()
    }

    fn open(&self) -> Result<Store, TestCaseError> {
        ok(self.builder.open(&self.path))
    }

    fn open_second(&mut self) -> Result<(), TestCaseError> {
        if self.second.is_none() {
            let second = self.open()?;
            prop_assert_eq!(second.open_report().torn_tail_bytes, None);
            prop_assert!(second.open_report().quarantined.is_empty());
            self.second = Some(second);
            self.seqs[1] = 0;
        }
        Ok(())
    }

    fn now_ms(&self) -> i64 {
        let now = self.clock.now().duration_since(UNIX_EPOCH).unwrap();
        i64::try_from(now.as_millis()).unwrap()
    }

    /// The handle `via` names, its last acknowledged `seq`, and the model.
    fn parts(&mut self, via: Via) -> (&Store, &mut u64, &mut Model) {
        match (via, &self.second) {
            (Via::Second, Some(second)) => (second, &mut self.seqs[1], &mut self.model),
            _ => (
                self.first.as_ref().unwrap(),
                &mut self.seqs[0],
                &mut self.model,
            ),
        }
    }

    fn apply(&mut self, via: Via, update: &Update) -> Result<(), TestCaseError> {
        let now = self.now_ms();
        let (store, seq, model) = self.parts(via);
        apply(store, seq, model, now, update)
    }

    fn read(&self, store: &Store, name: &str) -> Result<Vec<(String, Entry)>, TestCaseError> {
        read(store, &self.model, name)
    }

    /// Every open handle equals the model, and the handles agree byte for byte.
    fn check(&self) -> Result<Vec<(String, Entry)>, TestCaseError> {
        let first = self.read(self.first(), "first")?;
        if let Some(second) = &self.second {
            let second = self.read(second, "second")?;
            prop_assert_eq!(&second, &first, "the handles disagree byte for byte");
        }
        Ok(first)
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match step {
            Step::Update(via, update) => self.apply(*via, update)?,
            Step::Burst(updates) => {
                for (via, update) in updates {
                    self.apply(*via, update)?;
                }
            }
            Step::Tick(ms) => self.clock.advance(Duration::from_millis(*ms)),
            Step::Compact {
                via,
                during,
                updates,
            } => {
                let now = self.now_ms();
                let compactor = match (via, &self.second) {
                    (Via::Second, Some(second)) => second.clone(),
                    _ => self.first().clone(),
                };
                let (store, seq, model) = self.parts(*during);
                compact_during(&compactor, store, seq, model, now, updates)?;
            }
            Step::OpenSecond => self.open_second()?,
            Step::CloseSecond => self.second = None,
            Step::Crash {
                torn,
                second_too,
                meanwhile,
            } => self.crash(torn.as_ref(), *second_too, meanwhile.as_ref())?,
            Step::CrashBetweenRenames => self.crash_between_renames()?,
            Step::Maintain(via) => self.maintain(*via)?,
        }
        self.check().map(drop)
    }

    fn maintain(&mut self, via: Via) -> Result<(), TestCaseError> {
        let (store, seq, model) = self.parts(via);
        let report = ok(store.maintain(false))?;
        let mut expected = Vec::new();
        if model.len() > CAP + 1 {
            let mut oldest: Vec<(Option<i64>, &String)> = model
                .iter()
                .map(|(k, e)| (e.get("updatedAt").and_then(whole_millis), k))
                .collect();
            oldest.sort();
            expected = oldest[..model.len() - CAP]
                .iter()
                .map(|(_, k)| (*k).clone())
                .collect();
        }
        prop_assert_eq!(&report.capped, &expected, "{:?}", report);
        prop_assert!(report.pruned.is_empty() && report.disk_evicted.is_empty());
        for key in &expected {
            model.remove(key);
        }
        // Each eviction is a record of this handle's writer.
        *seq += expected.len() as u64;
        Ok(())
    }

    fn crash(
        &mut self,
        torn: Option<&Torn>,
        second_too: bool,
        meanwhile: Option<&Update>,
    ) -> Result<(), TestCaseError> {
        let before = self.check()?;
        let journal = self.first().journal_path().to_path_buf();
        let writer = self.first().writer_id();
        self.first = None;
        if second_too {
            self.second = None;
        }
        let len = fs::metadata(&journal).unwrap().len();
        let mut torn_len = None;
        if let Some(torn) = torn {
            // The record the dead writer would have acknowledged next.
            let entry = Entry::parse(&torn.entry).unwrap();
            let line = Record::upsert(self.seqs[0] + 1, writer, torn.key, &entry).encode();
            let cut = torn.cut.index(line.len()) + 1;
            let mut file = OpenOptions::new().append(true).open(&journal).unwrap();
            file.write_all(&line.as_bytes()[..cut]).unwrap();
            torn_len = Some(cut as u64);
        }
        let mut expected_torn = torn_len;
        if let Some(second) = &self.second {
            // The survivor reads past nothing but whole records...
            self.read(second, "second (torn tail present)")?;
            // ...and a write of its own cuts the tail first.
            if let Some(update) = meanwhile {
                self.apply(Via::Second, update)?;
                expected_torn = None;
            }
        }
        let first = self.open()?;
        self.seqs[0] = 0;
        prop_assert_eq!(first.open_report().torn_tail_bytes, expected_torn);
        prop_assert!(first.open_report().quarantined.is_empty());
        self.first = Some(first);
        if expected_torn.is_some() {
            // Cut to the last whole record, exactly.
            prop_assert_eq!(fs::metadata(&journal).unwrap().len(), len);
        }
        if self.second.is_none() || meanwhile.is_none() {
            // Nothing changed since: the reopened store holds the same bytes.
            let after = self.check()?;
            prop_assert_eq!(after, before, "the reopened store differs byte for byte");
        }
        Ok(())
    }

    #[allow(
        clippy::disallowed_methods,
        reason = "the test puts files back as a crash between compaction's renames leaves them"
    )]
    fn crash_between_renames(&mut self) -> Result<(), TestCaseError> {
        let before = self.check()?;
        let journal = self.first().journal_path().to_path_buf();
        fs::copy(&journal, &self.saved_journal).unwrap();
        let report = ok(self.first().compact())?;
        prop_assert!(!report.superseded, "{:?}", report);
        // The compacting process dies after renaming the new snapshot into place: its handle
        // is gone, and the old journal is still the journal.
        self.first = None;
        fs::rename(&self.saved_journal, &journal).unwrap();
        if let Some(second) = &self.second {
            // A surviving process reloads the new snapshot under the old journal.
            self.read(second, "second (after the crash)")?;
        }
        let first = self.open()?;
        self.seqs[0] = 0;
        prop_assert_eq!(first.open_report().torn_tail_bytes, None);
        prop_assert!(first.open_report().quarantined.is_empty());
        self.first = Some(first);
        let after = self.check()?;
        prop_assert_eq!(after, before, "the recovered store differs byte for byte");
        Ok(())
    }
}

fn config() -> ProptestConfig {
    let default = ProptestConfig::default();
    ProptestConfig {
        // `ProptestConfig::default()` reads PROPTEST_CASES; without it, keep CI quick.
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            default.cases
        } else {
            64
        },
        ..default
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_store_equals_the_model(
        second in any::<bool>(),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        let mut harness = Harness::new(second)?;
        for (i, step) in steps.iter().enumerate() {
            harness
                .step(step)
                .map_err(|e| TestCaseError::fail(format!("step {i} {step:?}: {e}")))?;
        }
    }
}

// Two races the model found, reduced. Each runs many short rounds, because each needs a read
// to land inside a compaction; a round that goes wrong ends the test.

/// A compaction through one handle while another handle (as another process would) writes
/// and this thread reads through both: the records appended while the new snapshot was being
/// written must reach the new journal, and each handle must read every acknowledged update.
/// (Reading the old journal's tail for the new journal shares the file's offset with the
/// readers' catch-up on the same handle; a catch-up landing in between moved it.)
#[test]
fn a_compaction_keeps_the_updates_of_another_writer_while_its_handle_is_read() {
    let dir = Scratch::new("model-seek");
    let path = dir.join("sessions.json");
    let mut builder = Store::builder();
    builder.auto_compact(false);
    let compacting = builder.open(&path).unwrap();
    let writing = builder.open(&path).unwrap();
    let mut acknowledged = 0;
    for round in 0..200 {
        std::thread::scope(|scope| {
            let compaction = scope.spawn(|| compacting.compact());
            loop {
                let entry = Entry::parse(r#"{"n":1}"#).unwrap();
                writing.upsert(format!("k{acknowledged}"), entry).unwrap();
                acknowledged += 1;
                let reads = (compacting.count().unwrap(), writing.count().unwrap());
                assert_eq!(reads, (acknowledged, acknowledged), "round {round}");
                if compaction.is_finished() {
                    break;
                }
            }
            compaction.join().unwrap().unwrap();
        });
    }
    drop((compacting, writing));
    assert_eq!(Store::open(&path).unwrap().count().unwrap(), acknowledged);
}

/// A compaction while this thread reads and writes through the same handle: a read that
/// notices the new journal reloads the store before the compaction moves the handle's view;
/// the compaction must then not read the old journal at the new journal's offset.
#[test]
fn a_compaction_succeeds_when_a_read_reloaded_the_store_first() {
    for round in 0..200 {
        let dir = Scratch::new("model-reload");
        let store = Store::builder()
            .auto_compact(false)
            .open(dir.join("sessions.json"))
            .unwrap();
        for i in 0..3 {
            let entry = Entry::parse(r#"{"n":1}"#).unwrap();
            store.upsert(format!("old{i}"), entry).unwrap();
        }
        let mut expected = 3;
        std::thread::scope(|scope| {
            let compaction = scope.spawn(|| store.compact());
            while !compaction.is_finished() {
                if expected < 6 {
                    // Lines of another length than the old ones.
                    let entry = Entry::parse(r#"{"n":2,"pad":"xxxxxxx"}"#).unwrap();
                    store.upsert(format!("new{expected}"), entry).unwrap();
                    expected += 1;
                }
                assert_eq!(store.count().unwrap(), expected, "round {round}");
            }
            let report = compaction.join().unwrap();
            assert!(report.is_ok(), "round {round}: {report:?}");
        });
        assert_eq!(store.count().unwrap(), expected, "round {round}");
    }
}
