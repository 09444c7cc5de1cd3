//! Failures the store must survive without hanging, looping or losing anything: a hung holder of
//! the journal's lock, a compaction that keeps failing, and a full disk (reliability.md's R3: a
//! small tmpfs gives real `ENOSPC`s; mounting needs root, and without it those tests print
//! `SKIP:`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sessionkit_session_store::{Entry, ManualClock, Store};

use sessionkit_test_support::{Mount, wait_until};

use crate::util::{Scratch, lock_like_another_writer, unlock};

fn entry(n: u64) -> Entry {
    Entry::parse(&format!(r#"{{"sessionId":"s{n}","updatedAt":{n}}}"#)).unwrap()
}

/// The whole chain of an error's messages, so a test can look for the path in any of them.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(next) = source {
        text.push_str(": ");
        text.push_str(&next.to_string());
        source = next.source();
    }
    text
}

/// A live process that holds the journal's lock and never lets go (stopped, or stuck on a
/// failing disk) makes writes, reads that must catch up, and opens fail once the lock timeout
/// has passed, with a timeout error that names the journal; nothing of theirs is written, and
/// everything works again once the holder lets go.
#[test]
fn a_hung_lock_holder_fails_operations_after_the_lock_timeout() {
    let dir = Scratch::new("lock-timeout");
    let path = dir.join("sessions.json");
    let mut builder = Store::builder();
    builder.lock_timeout(Duration::from_millis(200));
    let writer = builder.open(&path).unwrap();
    let reader = builder.open(&path).unwrap();
    writer.upsert("before", entry(1)).unwrap();
    assert!(reader.get("before").unwrap().is_some());
    let journal = writer.journal_path().to_path_buf();

    // The holder appends a record and hangs before letting go: a reader must not apply a
    // batch that is not final, so it too has to wait.
    let mut other = lock_like_another_writer(&journal);
    other
        .write_all(b"{\"seq\":1,\"writer\":\"00000000000000aa\",\"op\":\"upsert\",\"key\":\"theirs\",\"entry\":{\"sessionId\":\"t\",\"updatedAt\":1}}\n")
        .unwrap();
    let len = fs::metadata(&journal).unwrap().len();

    let write = writer.upsert("mine", entry(2)).unwrap_err();
    let read = reader.get("theirs").unwrap_err();
    let open = builder.open(&path).unwrap_err();
    for (what, e) in [("write", &write), ("read", &read), ("open", &open)] {
        assert!(
            e.is_timeout(),
            "the {what} failed, but not as a timeout: {e}"
        );
        let text = chain(e);
        assert!(
            text.contains(&journal.display().to_string()) && text.contains("lock"),
            "the {what}'s error does not name the journal's lock: {text}"
        );
    }
    assert_eq!(
        fs::metadata(&journal).unwrap().len(),
        len,
        "a failed write wrote to the journal"
    );
    assert!(writer.counters().journal_lock_waits >= 1);

    unlock(&other);
    writer.upsert("mine", entry(2)).unwrap();
    for key in ["before", "theirs", "mine"] {
        assert!(
            reader.get(key).unwrap().is_some(),
            "{key} missing after the holder let go"
        );
    }
}

/// A background compaction that fails (here the snapshot's name is taken by a directory, so
/// its rename fails) is not tried again after every batch: the next waits 1 s, then 2 s, and so
/// on, by the store's clock; one that succeeds ends the pauses.
#[test]
fn a_failing_compaction_is_tried_again_after_growing_pauses() {
    let dir = Scratch::new("compact-backoff");
    let path = dir.join("sessions.json");
    let clock = Arc::new(ManualClock::new());
    let store = Store::builder()
        .clock(clock.clone())
        .compact_when(0, 0.0)
        .open(&path)
        .unwrap();
    fs::create_dir(&path).unwrap();
    let mut n = 0;
    let mut upsert = || {
        n += 1;
        store.upsert(format!("k{n}"), entry(n)).unwrap();
    };
    let started = || store.counters().background_compactions;
    let failed = || store.counters().failed_compactions;

    upsert();
    wait_until("the first compaction to fail", || failed() == 1);
    assert_eq!(started(), 1);
    for _ in 0..20 {
        upsert();
    }
    assert_eq!(started(), 1, "a failed compaction was tried again at once");

    // 1 s later, the second try; then 2 s must pass before the third.
    clock.advance(Duration::from_secs(1));
    upsert();
    wait_until("the second compaction to fail", || failed() == 2);
    clock.advance(Duration::from_secs(1));
    upsert();
    assert_eq!(
        started(),
        2,
        "the pause did not grow after the second failure"
    );
    clock.advance(Duration::from_secs(1));
    upsert();
    wait_until("the third compaction to fail", || failed() == 3);
    assert_eq!(started(), 3);

    // The cause goes; after the pause a compaction succeeds, and then the pauses end.
    fs::remove_dir(&path).unwrap();
    clock.advance(Duration::from_secs(4));
    upsert();
    wait_until("a compaction to finish", || {
        store.counters().compactions == 1
    });
    assert!(path.is_file(), "the compaction wrote no snapshot");
    // The flag of the compaction that finished may still be up for a moment, so a batch or
    // two may pass without starting one; none of them may wait for a pause.
    wait_until("the next compaction", || {
        upsert();
        store.counters().compactions == 2
    });
    assert_eq!(failed(), 3);
    assert_eq!(store.count().unwrap(), n as usize);
}

/// A tmpfs of `size` on a fresh directory under `dir`, or `None` after a `SKIP:` line.
fn small_disk(dir: &Scratch, size: &str) -> Option<(std::path::PathBuf, Mount)> {
    let at = dir.dir("disk");
    match Mount::tmpfs(&at, &format!("size={size}")) {
        Ok(mount) => Some((at, mount)),
        Err(why) => {
            println!("SKIP: session-store on a full disk: {why}");
            None
        }
    }
}

/// Fills the file system of `dir` with a file of its own, until the kernel says `ENOSPC`;
/// returns the file, whose removal frees the space again.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = fs::File::create(&path).unwrap();
    let chunk = [0u8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => panic!("a write of the filler wrote nothing"),
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                return path;
            }
        }
    }
}

/// An entry whose `pad` field makes it about `len` bytes.
fn sized(id: &str, len: usize) -> Entry {
    Entry::parse(&format!(
        r#"{{"sessionId":"{id}","updatedAt":1,"pad":"{}"}}"#,
        "x".repeat(len)
    ))
    .unwrap()
}

fn temps_in(dir: &Path) -> Vec<String> {
    sessionkit_test_support::names_in(dir)
        .into_iter()
        .filter(|name| name.ends_with(".sktmp"))
        .collect()
}

/// On a full disk (a real `ENOSPC` from a small tmpfs) a batch fails as a whole, with an
/// error that says the disk is full and names the journal, and nothing of it stays in the
/// journal: the kernel took part of the write (the room left in the journal's last page)
/// before it refused the rest, and the writer cut those bytes back out. Reads, in this
/// process and another, and a fresh open go on working; once there is room, so do writes.
#[test]
fn a_full_disk_fails_a_batch_whole_and_leaves_the_journal_as_it_was() {
    let dir = Scratch::new("full-disk-batch");
    let Some((disk, _mount)) = small_disk(&dir, "256k") else {
        return;
    };
    let path = disk.join("sessions.json");
    let store = Store::builder().auto_compact(false).open(&path).unwrap();
    store.upsert("kept", sized("kept", 100)).unwrap();
    let other = Store::open(&path).unwrap();
    let journal = store.journal_path().to_path_buf();
    let before = fs::read(&journal).unwrap();
    assert_ne!(
        before.len() % 4096,
        0,
        "the journal's last page has room left"
    );
    let filler = fill(&disk);

    let err = store.upsert("big", sized("big", 20_000)).unwrap_err();
    assert!(err.is_storage_full(), "{err}");
    assert!(!err.is_outcome_unknown(), "{err}");
    let text = chain(&err);
    assert!(
        text.contains(&journal.display().to_string()) && text.contains("append"),
        "the error does not name the journal and the step: {text}"
    );
    assert!(
        fs::read(&journal).unwrap() == before,
        "the failed batch left bytes in the journal"
    );
    for view in [&store, &other] {
        assert!(view.get("big").unwrap().is_none());
        assert!(view.get("kept").unwrap().is_some());
    }
    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.open_report().torn_tail_bytes, None);
    assert_eq!(reopened.open_report().fenced_batch_bytes, None);
    assert_eq!(reopened.count().unwrap(), 1);
    drop(reopened);

    fs::remove_file(&filler).unwrap();
    store.upsert("big", sized("big", 20_000)).unwrap();
    assert!(other.get("big").unwrap().is_some());
    drop((store, other));
    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.count().unwrap(), 2);
    assert_eq!(reopened.open_report().torn_tail_bytes, None);
}

/// A compaction on a full disk fails with an error that says so, and leaves the snapshot and
/// the journal as they were, and no temp file; the store goes on serving, and compacts once
/// there is room.
#[test]
fn a_compaction_on_a_full_disk_fails_and_leaves_the_files_as_they_were() {
    let dir = Scratch::new("full-disk-compact");
    let Some((disk, _mount)) = small_disk(&dir, "256k") else {
        return;
    };
    let path = disk.join("sessions.json");
    let store = Store::builder().auto_compact(false).open(&path).unwrap();
    for n in 0..10 {
        store
            .upsert(format!("k{n}"), sized(&format!("s{n}"), 1000))
            .unwrap();
    }
    store.compact().unwrap();
    store.upsert("after", sized("after", 1000)).unwrap();
    let journal = store.journal_path().to_path_buf();
    let (snapshot_before, journal_before) = (fs::read(&path).unwrap(), fs::read(&journal).unwrap());
    let filler = fill(&disk);

    let err = store.compact().unwrap_err();
    assert!(err.is_storage_full(), "{err}");
    assert!(
        fs::read(&path).unwrap() == snapshot_before,
        "the snapshot changed"
    );
    assert!(
        fs::read(&journal).unwrap() == journal_before,
        "the journal changed"
    );
    assert_eq!(temps_in(&disk), Vec::<String>::new());
    assert_eq!(store.count().unwrap(), 11);

    fs::remove_file(&filler).unwrap();
    store.compact().unwrap();
    assert_eq!(temps_in(&disk), Vec::<String>::new());
    drop(store);
    assert_eq!(Store::open(&path).unwrap().count().unwrap(), 11);
}

/// Eight threads write entries of many sizes until the disk is full and past it, with
/// compactions due all the time (which fail once the disk is full): every update the store
/// acknowledged is there after a fresh open, byte for byte, and none it said failed is. No
/// outcome is unknown, since tmpfs always lets a failed batch be cut back out.
#[test]
fn writers_filling_the_disk_lose_nothing_acknowledged_and_apply_nothing_failed() {
    let dir = Scratch::new("full-disk-writers");
    let Some((disk, _mount)) = small_disk(&dir, "192k") else {
        return;
    };
    let path = disk.join("sessions.json");
    let store = Store::builder()
        .compact_when(16 * 1024, 0.5)
        .open(&path)
        .unwrap();
    let other = Store::open(&path).unwrap();
    let outcomes: Vec<(String, usize, Result<(), bool>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|t| {
                let store = &store;
                scope.spawn(move || {
                    (0..40)
                        .map(|i| {
                            let key = format!("t{t}:{i}");
                            // 200 bytes to about 6 KB, so some batches end within the last
                            // free page and some run past it.
                            let len = 200 + (t * 40 + i) * 7919 % 6000;
                            let outcome = store
                                .upsert(key.clone(), sized(&key, len))
                                .map(|_| ())
                                .map_err(|e| {
                                    assert!(e.is_storage_full(), "{e}");
                                    e.is_outcome_unknown()
                                });
                            (key, len, outcome)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let acked = outcomes.iter().filter(|(_, _, o)| o.is_ok()).count();
    let unknown = outcomes.iter().filter(|(_, _, o)| *o == Err(true)).count();
    assert!(acked > 0, "no update fit on the disk");
    assert!(acked < outcomes.len(), "the disk never filled up");
    assert_eq!(unknown, 0, "a failed batch could not be cut back out");
    assert_eq!(other.count().unwrap(), acked);
    drop((store, other));

    let reopened = Store::open(&path).unwrap();
    assert_eq!(reopened.open_report().torn_tail_bytes, None);
    for (key, len, outcome) in &outcomes {
        let found = reopened.get(key).unwrap();
        match outcome {
            Ok(()) => assert_eq!(
                found.map(|e| e.as_str().to_owned()),
                Some(sized(key, *len).as_str().to_owned()),
                "{key}: acknowledged, then not found as written"
            ),
            Err(_) => assert!(found.is_none(), "{key}: failed, then found"),
        }
    }
    assert_eq!(reopened.count().unwrap(), acked);
}

/// A registry that OpenClaw wrote (a snapshot and no journal yet) on a full disk: the open
/// fails, saying the disk is full and naming the journal it could not start, and the snapshot
/// is left as it was; once there is room, the open works and finds every entry.
#[test]
fn opening_a_snapshot_on_a_full_disk_fails_and_leaves_it_as_it_was() {
    let dir = Scratch::new("full-disk-open");
    let Some((disk, _mount)) = small_disk(&dir, "128k") else {
        return;
    };
    let path = disk.join("sessions.json");
    let snapshot = "{\n  \"a\": {\n    \"sessionId\": \"s-a\",\n    \"updatedAt\": 1\n  },\n  \"b\": {\n    \"sessionId\": \"s-b\",\n    \"updatedAt\": 2\n  }\n}";
    fs::write(&path, snapshot).unwrap();
    let filler = fill(&disk);

    let err = Store::open(&path).unwrap_err();
    assert!(err.is_storage_full(), "{err}");
    assert!(
        chain(&err).contains("sessions.json.journal"),
        "{}",
        chain(&err)
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), snapshot);

    fs::remove_file(&filler).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.count().unwrap(), 2);
    assert_eq!(store.get("b").unwrap().unwrap().session_id(), Some("s-b"));
}
