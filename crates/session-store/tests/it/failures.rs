//! Failures the store must survive without hanging or looping: a hung holder of the journal's
//! lock, and a compaction that keeps failing.

use std::fs;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use sessionkit_session_store::{Entry, ManualClock, Store};

use sessionkit_test_support::wait_until;

use crate::util::{Scratch, lock_like_another_writer, unlock};

fn entry(n: u64) -> Entry {
    Entry::parse(&format!(r#"{{"sessionId":"s{n}","updatedAt":{n}}}"#)).unwrap()
}

/// The whole chain of an error's messages, so a test can look for the path in any of them.
fn chain(e: &dyn std::error::Error) -> String {
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
