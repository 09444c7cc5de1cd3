//! The store: reads and writes, reopening, group commit, compaction, torn tails, recovery.

use std::fs;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

use sessionkit_session_store::{
    Activity, Entry, ListOrder, ListQuery, ManualClock, Patch, Store, SyncMode,
};

use crate::util::Scratch;

fn entry(json: &str) -> Entry {
    Entry::parse(json).unwrap()
}

fn keys(list: &[(String, Entry)]) -> Vec<&str> {
    list.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn writes_are_read_back_and_survive_reopening() {
    let dir = Scratch::new("basic");
    let path = dir.join("sessions.json");
    let store = Store::open(&path).unwrap();
    assert!(store.open_report().created);
    let a = store
        .upsert(
            "agent:a:main",
            entry(r#"{"sessionId":"s1","updatedAt":1,"x":{"keep":1.0}}"#),
        )
        .unwrap();
    assert!(a.durable);
    assert_eq!(a.seq, 1);
    store
        .upsert("cron:nightly", entry(r#"{"sessionId":"s2","updatedAt":2}"#))
        .unwrap();
    store
        .patch(
            "agent:a:main",
            Patch::parse(r#"{"label":"hi"}"#).unwrap(),
            Activity::Preserve,
        )
        .unwrap();
    store.delete("cron:nightly").unwrap();
    // Deleting a missing key writes nothing.
    assert_eq!(store.delete("cron:nightly").unwrap().seq, 0);
    let got = store.get("agent:a:main").unwrap().unwrap();
    assert_eq!(
        got.as_str(),
        r#"{"sessionId":"s1","updatedAt":1,"x":{"keep":1.0},"label":"hi"}"#
    );
    assert_eq!(store.count().unwrap(), 1);
    drop(store);

    let store = Store::open(&path).unwrap();
    assert!(!store.open_report().created);
    assert_eq!(store.open_report().journal_records, 4);
    assert_eq!(store.get("agent:a:main").unwrap().unwrap(), got);
    assert_eq!(store.get("cron:nightly").unwrap(), None);
}

#[test]
fn updated_at_follows_the_clock_and_touch_needs_an_entry() {
    let dir = Scratch::new("clock");
    let clock = Arc::new(ManualClock::new());
    let store = Store::builder()
        .clock(clock.clone())
        .open(dir.join("sessions.json"))
        .unwrap();
    let now = |c: &ManualClock| {
        use sessionkit_session_store::Clock;
        c.now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    store
        .upsert("k", entry(r#"{"sessionId":"s","updatedAt":5}"#))
        .unwrap();
    clock.advance(Duration::from_secs(3));
    store
        .patch("k", Patch::parse(r#"{"a":1}"#).unwrap(), Activity::Advance)
        .unwrap();
    assert_eq!(
        store.get("k").unwrap().unwrap().updated_at(),
        Some(now(&clock))
    );
    let before = store.get("k").unwrap().unwrap().updated_at();
    clock.advance(Duration::from_secs(3));
    store
        .patch("k", Patch::parse(r#"{"b":1}"#).unwrap(), Activity::Preserve)
        .unwrap();
    assert_eq!(store.get("k").unwrap().unwrap().updated_at(), before);
    store.touch("k").unwrap();
    assert_eq!(
        store.get("k").unwrap().unwrap().updated_at(),
        Some(now(&clock))
    );
    let err = store.touch("missing").unwrap_err();
    assert!(err.is_no_such_entry(), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn list_by_prefix_order_and_limit() {
    let dir = Scratch::new("list");
    let store = Store::open(dir.join("sessions.json")).unwrap();
    for (key, at) in [
        ("agent:a:1", 30),
        ("agent:a:2", 10),
        ("cron:x", 20),
        ("agent:b:1", 40),
    ] {
        store
            .upsert(
                key,
                entry(&format!(r#"{{"sessionId":"{key}","updatedAt":{at}}}"#)),
            )
            .unwrap();
    }
    let all = store.list(&ListQuery::all()).unwrap();
    assert_eq!(
        keys(&all),
        ["agent:a:1", "agent:a:2", "agent:b:1", "cron:x"]
    );
    let a = store.list(&ListQuery::all().prefix("agent:a:")).unwrap();
    assert_eq!(keys(&a), ["agent:a:1", "agent:a:2"]);
    let newest = store
        .list(&ListQuery::all().order(ListOrder::NewestFirst).limit(2))
        .unwrap();
    assert_eq!(keys(&newest), ["agent:b:1", "agent:a:1"]);
    let oldest_agents = store
        .list(
            &ListQuery::all()
                .prefix("agent:")
                .order(ListOrder::OldestFirst)
                .limit(2),
        )
        .unwrap();
    assert_eq!(keys(&oldest_agents), ["agent:a:2", "agent:a:1"]);
    let stats = store.stats().unwrap();
    assert_eq!(stats.state.entries, 4);
    assert!(stats.journal_bytes > 0);
}

#[test]
fn concurrent_callers_get_one_fsync_per_batch() {
    let dir = Scratch::new("group");
    let store = Store::open(dir.join("sessions.json")).unwrap();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                for i in 0..50 {
                    let key = format!("t{t}:{i}");
                    let ack = store
                        .upsert(&key, entry(r#"{"sessionId":"s","updatedAt":1}"#))
                        .unwrap();
                    assert!(ack.durable);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let c = store.counters();
    assert_eq!(c.updates, 800);
    // One fsync per batch (that batches are shared is shown by
    // `asyncs::updates_queued_behind_a_batch_go_out_as_one_batch`).
    assert_eq!(c.fsyncs, c.batches);
    // The writer applies its batches as it wrote them; nothing is read back.
    assert_eq!(c.journal_bytes_read, 0, "{c:?}");
    assert_eq!(store.count().unwrap(), 800);
}

#[test]
fn modes_without_fsync_acknowledge_before_syncing() {
    let dir = Scratch::new("modes");
    for (name, mode) in [
        ("never", SyncMode::Never),
        ("interval", SyncMode::Interval(Duration::from_secs(3600))),
    ] {
        let path = dir.join(format!("{name}.json"));
        let store = Store::builder().sync(mode).open(&path).unwrap();
        let ack = store
            .upsert("k", entry(r#"{"sessionId":"s","updatedAt":1}"#))
            .unwrap();
        assert!(!ack.durable, "{name}");
        assert_eq!(store.counters().fsyncs, 0, "{name}");
        drop(store);
        // The writer syncs what it owes in interval mode before it stops; either way the
        // update is in the file.
        let store = Store::open(&path).unwrap();
        assert!(store.get("k").unwrap().is_some(), "{name}");
    }
}

#[test]
fn compaction_writes_a_compatible_snapshot_and_a_fresh_journal() {
    let dir = Scratch::new("compact");
    let path = dir.join("sessions.json");
    let store = Store::builder().auto_compact(false).open(&path).unwrap();
    for i in 0..100 {
        store
            .upsert(
                format!("k{i:03}"),
                entry(&format!(r#"{{"sessionId":"s{i}","updatedAt":{i}}}"#)),
            )
            .unwrap();
    }
    for i in 0..50 {
        store.delete(format!("k{i:03}")).unwrap();
    }
    let before = store.list(&ListQuery::all()).unwrap();
    let report = store.compact().unwrap();
    assert_eq!(report.entries, 50);
    assert!(!report.superseded);
    assert!(report.journal_bytes_after < report.journal_bytes_before);
    // The snapshot is a plain `{key: entry}` object, as OpenClaw reads it.
    let snapshot: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(snapshot.as_object().unwrap().len(), 50);
    assert_eq!(snapshot["k077"]["sessionId"], "s77");
    // The journal holds only its header now.
    let journal = fs::read_to_string(store.journal_path()).unwrap();
    assert_eq!(journal.lines().count(), 1, "{journal}");
    // Writes go on after it, and everything reopens the same.
    store
        .upsert("after", entry(r#"{"sessionId":"z","updatedAt":1}"#))
        .unwrap();
    assert_eq!(store.list(&ListQuery::all()).unwrap().len(), 51);
    drop(store);
    let store = Store::open(&path).unwrap();
    let mut after = store.list(&ListQuery::all()).unwrap();
    after.retain(|(k, _)| k != "after");
    assert_eq!(after, before);
    assert_eq!(store.open_report().snapshot_entries, 50);
    assert_eq!(store.open_report().journal_records, 1);
}

#[test]
fn the_store_compacts_by_itself_past_its_threshold() {
    let dir = Scratch::new("autocompact");
    let path = dir.join("sessions.json");
    let store = Store::builder()
        .compact_when(4096, 1.0)
        .open(&path)
        .unwrap();
    for i in 0..400 {
        store
            .upsert(
                format!("k{}", i % 20),
                entry(&format!(r#"{{"sessionId":"s","updatedAt":{i}}}"#)),
            )
            .unwrap();
    }
    // Compaction runs on its own thread; wait (without a deadline assertion) for it.
    for _ in 0..2000 {
        if store.counters().compactions > 0 {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert!(store.counters().compactions > 0, "{:?}", store.counters());
    assert_eq!(store.count().unwrap(), 20);
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.count().unwrap(), 20);
    assert_eq!(store.get("k19").unwrap().unwrap().updated_at(), Some(399));
}

#[test]
fn a_torn_journal_tail_is_cut_at_open_and_reported() {
    let dir = Scratch::new("torn");
    let path = dir.join("sessions.json");
    let store = Store::open(&path).unwrap();
    store
        .upsert("k", entry(r#"{"sessionId":"s","updatedAt":1}"#))
        .unwrap();
    let journal = store.journal_path().to_path_buf();
    drop(store);
    let whole = fs::read(&journal).unwrap();
    let mut torn = whole.clone();
    torn.extend_from_slice(br#"{"seq":2,"writer":"00000000000000aa","op":"ups"#);
    fs::write(&journal, &torn).unwrap();

    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.open_report().torn_tail_bytes,
        Some((torn.len() - whole.len()) as u64)
    );
    assert_eq!(fs::read(&journal).unwrap(), whole);
    assert!(store.get("k").unwrap().is_some());
    // The next append starts on a fresh line.
    store
        .upsert("j", entry(r#"{"sessionId":"s","updatedAt":1}"#))
        .unwrap();
    drop(store);
    assert_eq!(Store::open(&path).unwrap().count().unwrap(), 2);
}

#[test]
fn corrupt_files_fail_the_open_unless_recovery_is_asked_for() {
    let dir = Scratch::new("corrupt");
    let path = dir.join("sessions.json");
    fs::write(&path, b"{\"a\": {\"sessionId\": \"s\"").unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(err.to_string().contains("sessions.json"), "{err}");
    // The bad file is untouched, and no empty store replaced it.
    assert_eq!(fs::read(&path).unwrap(), b"{\"a\": {\"sessionId\": \"s\"");

    let store = Store::builder().recover(true).open(&path).unwrap();
    let aside = &store.open_report().quarantined;
    assert_eq!(aside.len(), 1);
    assert_eq!(
        fs::read(&aside[0]).unwrap(),
        b"{\"a\": {\"sessionId\": \"s\""
    );
    assert!(
        aside[0]
            .to_string_lossy()
            .contains("sessions.json.corrupt.")
    );
    assert_eq!(store.count().unwrap(), 0);
}

#[test]
fn a_corrupt_journal_record_keeps_the_records_before_it_when_recovering() {
    let dir = Scratch::new("corrupt-journal");
    let path = dir.join("sessions.json");
    let store = Store::open(&path).unwrap();
    for key in ["a", "b", "c"] {
        store
            .upsert(key, entry(r#"{"sessionId":"s","updatedAt":1}"#))
            .unwrap();
    }
    let journal = store.journal_path().to_path_buf();
    drop(store);
    let text = fs::read_to_string(&journal).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "{\"seq\":2,\"writer\":\"zz\"}";
    let damaged = lines.join("\n") + "\n";
    fs::write(&journal, &damaged).unwrap();

    let err = Store::open(&path).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert!(err.to_string().contains("line 3"), "{err}");
    assert_eq!(fs::read_to_string(&journal).unwrap(), damaged);

    let store = Store::builder().recover(true).open(&path).unwrap();
    assert_eq!(store.open_report().quarantined.len(), 1);
    assert_eq!(
        fs::read_to_string(&store.open_report().quarantined[0]).unwrap(),
        damaged
    );
    let list = store.list(&ListQuery::all()).unwrap();
    assert_eq!(keys(&list), ["a"]);
}

#[test]
fn two_handles_see_each_others_writes_through_the_journal() {
    let dir = Scratch::new("two");
    let path = dir.join("sessions.json");
    let one = Store::open(&path).unwrap();
    let two = Store::open(&path).unwrap();
    one.upsert("a", entry(r#"{"sessionId":"s","updatedAt":1}"#))
        .unwrap();
    assert!(two.get("a").unwrap().is_some());
    // The other handle read exactly the record the first appended; the first read nothing.
    assert_eq!(
        two.counters().journal_bytes_read,
        one.counters().journal_bytes
    );
    assert_eq!(one.counters().journal_bytes_read, 0);
    two.patch("a", Patch::parse(r#"{"n":2}"#).unwrap(), Activity::Preserve)
        .unwrap();
    assert_eq!(
        one.get("a").unwrap().unwrap().get("n").map(|v| v.get()),
        Some("2")
    );
    // The other follows a compaction by one reading the new journal (here only its header),
    // not the snapshot.
    one.compact().unwrap();
    let new_journal = fs::metadata(one.journal_path()).unwrap().len();
    let read = two.counters().journal_bytes_read;
    two.upsert("b", entry(r#"{"sessionId":"t","updatedAt":1}"#))
        .unwrap();
    assert_eq!(one.count().unwrap(), 2);
    assert_eq!(two.count().unwrap(), 2);
    let counters = two.counters();
    assert_eq!(
        (counters.followed_compactions, counters.reloads),
        (1, 0),
        "{counters:?}"
    );
    assert_eq!(counters.journal_bytes_read - read, new_journal);
}

#[test]
fn open_removes_stale_temp_files_of_its_own_files_only() {
    let dir = Scratch::new("temps");
    let path = dir.join("sessions.json");
    drop(Store::open(&path).unwrap());
    let old = SystemTime::now() - Duration::from_secs(600);
    let plant = |name: &str, modified: SystemTime| {
        let p = dir.join(name);
        fs::write(&p, b"partial").unwrap();
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(modified)
            .unwrap();
    };
    plant(".sessions.json.4242.00c0ffee00c0ffee.sktmp", old);
    plant(".sessions.json.journal.4242.00c0ffee00c0ffef.sktmp", old);
    // A compaction in progress elsewhere, and another file's temp: both stay.
    plant(
        ".sessions.json.4243.00c0ffee00c0fff0.sktmp",
        SystemTime::now(),
    );
    plant(".notes.json.4242.00c0ffee00c0fff1.sktmp", old);
    // OpenClaw's temp files, however old, are left to a disk budget.
    plant("sessions.json.4244.5f0e.tmp", old);
    plant(".fs-safe-replace.4244.5f0f.tmp", old);
    let store = Store::open(&path).unwrap();
    let mut removed: Vec<String> = store
        .open_report()
        .temps_removed
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            ".sessions.json.4242.00c0ffee00c0ffee.sktmp",
            ".sessions.json.journal.4242.00c0ffee00c0ffef.sktmp"
        ]
    );
    let names = dir.names();
    assert!(names.contains(&".sessions.json.4243.00c0ffee00c0fff0.sktmp".to_owned()));
    assert!(names.contains(&".notes.json.4242.00c0ffee00c0fff1.sktmp".to_owned()));
    assert!(names.contains(&"sessions.json.4244.5f0e.tmp".to_owned()));
    assert!(names.contains(&".fs-safe-replace.4244.5f0f.tmp".to_owned()));
}

#[test]
fn settings_out_of_range_fail_the_open_before_anything_is_created() {
    use sessionkit_session_store::{Error, Input, Maintenance};

    let dir = Scratch::new("settings");
    let path = dir.join("sessions.json");
    let refused = |result: Result<Store, Error>, what: &str| {
        let err = result.err().unwrap_or_else(|| panic!("{what}: opened"));
        assert!(
            matches!(
                err,
                Error::Invalid {
                    input: Input::Setting,
                    ..
                }
            ),
            "{what}: {err:?}"
        );
        assert!(err.is_bad_input(), "{what}");
        assert!(
            err.to_string().starts_with("invalid store setting: "),
            "{err}"
        );
        assert_eq!(
            sessionkit_test_support::names_in(dir.path()),
            Vec::<String>::new(),
            "{what}"
        );
    };
    for ratio in [f64::NAN, -0.5, f64::INFINITY] {
        refused(
            Store::builder().compact_when(4096, ratio).open(&path),
            &format!("ratio {ratio}"),
        );
    }
    for fraction in [f64::NAN, -0.1, 1.5] {
        let maintenance = Maintenance::new().high_water(fraction);
        refused(
            Store::builder().maintenance(maintenance).open(&path),
            &format!("high water {fraction}"),
        );
    }
    // The ends of each range are settings a store runs with.
    let store = Store::builder()
        .compact_when(0, 0.0)
        .maintenance(Maintenance::new().high_water(1.0).background(false))
        .open(&path)
        .unwrap();
    drop(store);
    let store = Store::builder()
        .maintenance(Maintenance::new().high_water(0.0).background(false))
        .open(&path)
        .unwrap();
    assert_eq!(store.count().unwrap(), 0);
}

/// Another process's batch is on the file but not yet final: its fsync may fail, and then it
/// cuts the batch back out. A reader must wait for it rather than apply it, else its offset
/// runs past the end of the file and the records that follow (acknowledged ones) are lost.
#[test]
fn readers_never_apply_a_batch_its_writer_takes_back() {
    use std::io::Write;

    let dir = Scratch::new("rollback-reader");
    let path = dir.join("sessions.json");
    let a = Store::open(&path).unwrap();
    let b = Store::open(&path).unwrap();
    a.upsert("base", entry(r#"{"sessionId":"s0","updatedAt":1}"#))
        .unwrap();
    let journal = a.journal_path().to_path_buf();
    let before = fs::metadata(&journal).unwrap().len();

    // A third writer takes the lock and writes a batch; its fsync is about to fail.
    let mut other = crate::util::lock_like_another_writer(&journal);
    other
        .write_all(b"{\"seq\":1,\"writer\":\"00000000000000aa\",\"op\":\"upsert\",\"key\":\"phantom\",\"entry\":{\"sessionId\":\"p\",\"updatedAt\":1}}\n")
        .unwrap();

    let waits = a.counters().journal_lock_waits;
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let reader = {
        let a = a.clone();
        thread::spawn(move || {
            let seen = a.get("phantom").unwrap().is_some();
            done_tx.send(seen).unwrap();
        })
    };
    assert_eq!(
        crate::util::wait_until_lock_wait_or_done(&a, waits, &done_rx),
        None,
        "the reader did not wait for the writer's lock"
    );
    // The fsync failed: the batch goes back out, then the lock is let go.
    other.set_len(before).unwrap();
    crate::util::unlock(&other);
    reader.join().unwrap();
    assert!(
        !done_rx.recv().unwrap(),
        "the reader saw the batch taken back"
    );

    b.upsert("b1", entry(r#"{"sessionId":"s1","updatedAt":1}"#))
        .unwrap();
    a.upsert("a1", entry(r#"{"sessionId":"s2","updatedAt":1}"#))
        .unwrap();
    b.upsert("b2", entry(r#"{"sessionId":"s3","updatedAt":1}"#))
        .unwrap();
    for key in ["b1", "a1", "b2"] {
        assert!(a.get(key).unwrap().is_some(), "{key} missing from a reader");
    }
    a.compact().unwrap();
    drop((a, b));
    let reopened = Store::open(&path).unwrap();
    let mut present: Vec<String> = reopened
        .list(&ListQuery::default())
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    present.sort();
    assert_eq!(present, ["a1", "b1", "b2", "base"]);
}

#[test]
fn a_missing_store_is_an_error_naming_the_operation_and_both_files() {
    use sessionkit_session_store::{Error, Operation, load_store};

    let dir = Scratch::new("missing");
    let path = dir.join("sessions.json");
    let Err(err) = Store::builder().create(false).open(&path) else {
        panic!("opened a store that is not there");
    };
    assert!(
        matches!(
            err,
            Error::NoStore {
                op: Operation::Open,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "failed to open the store `{}`: there is no store there (neither it nor `{}.journal` exists)",
            path.display(),
            path.display()
        )
    );
    let Err(err) = load_store(&path) else {
        panic!("loaded a store that is not there");
    };
    assert!(
        matches!(
            err,
            Error::NoStore {
                op: Operation::Read,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("failed to read the store `{}`: ", path.display())),
        "{err}"
    );
    assert_eq!(
        sessionkit_test_support::names_in(dir.path()),
        Vec::<String>::new()
    );
}
