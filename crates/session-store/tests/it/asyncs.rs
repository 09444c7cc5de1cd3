//! The async API: many tasks on one runtime, reads, compaction and maintenance awaited, and a
//! dropped update future.

use std::time::Duration;

use sessionkit_session_store::{Activity, Entry, ListQuery, Maintenance, Patch, Store};

use crate::util::Scratch;

fn entry(n: usize) -> Entry {
    Entry::parse(&format!(r#"{{"sessionId":"s{n}","updatedAt":{n}}}"#)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_update_through_one_writer() {
    let dir = Scratch::new("async-many");
    let store = Store::builder()
        .open_async(dir.join("sessions.json"))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..64 {
        let store = store.clone();
        tasks.spawn(async move {
            for i in 0..10 {
                let key = format!("t{t}:{i}");
                store.upsert_async(&key, entry(i)).await.unwrap();
                store
                    .patch_async(
                        &key,
                        Patch::parse(r#"{"done":true}"#).unwrap(),
                        Activity::Preserve,
                    )
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(store.count_async().await.unwrap(), 640);
    let got = store.get_async("t63:9").await.unwrap().unwrap();
    assert_eq!(got.get("done").map(|v| v.get()), Some("true"));
    let c = store.counters();
    assert_eq!(c.updates, 1280);
    assert_eq!(c.fsyncs, c.batches);

    let report = store.compact_async().await.unwrap();
    assert_eq!(report.entries, 640);
    assert_eq!(
        store
            .list_async(ListQuery::all().prefix("t1:"))
            .await
            .unwrap()
            .len(),
        10
    );
    assert_eq!(store.stats_async().await.unwrap().state.entries, 640);
    store.delete_async("t0:0").await.unwrap();
    store.touch_async("t0:1").await.unwrap();
    assert!(
        store
            .touch_async("t0:0")
            .await
            .unwrap_err()
            .is_no_such_entry()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn maintenance_runs_from_async_code() {
    let dir = Scratch::new("async-maintain");
    let store = Store::builder()
        .maintenance(
            Maintenance::new()
                .max_entries(Some(5))
                .prune_after(None)
                .background(false),
        )
        .open_async(dir.join("sessions.json"))
        .await
        .unwrap();
    for n in 0..7 {
        store
            .upsert_async(format!("k{n}"), entry(n + 1))
            .await
            .unwrap();
    }
    let report = store.maintain_async(false).await.unwrap();
    assert_eq!(report.capped, ["k0", "k1"]);
    assert_eq!(store.count_async().await.unwrap(), 5);
}

/// `close_async` on the last handle returns only once the background pass the last updates
/// started has ended and its hook has heard it; on a clone it does not wait.
#[tokio::test(flavor = "current_thread")]
async fn closing_from_async_code_waits_for_the_background_pass() {
    let dir = Scratch::new("async-close");
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook = {
        let heard = std::sync::Arc::clone(&heard);
        move |pass: &sessionkit_session_store::MaintenanceReport| {
            // A slow hook: a close that did not wait for it would return first.
            std::thread::sleep(Duration::from_millis(200));
            heard.lock().unwrap().extend(pass.capped.clone());
        }
    };
    let store = Store::builder()
        .maintenance(
            Maintenance::new()
                .max_entries(Some(2))
                .prune_after(None)
                .interval(None)
                .on_pass(hook),
        )
        .open_async(dir.join("sessions.json"))
        .await
        .unwrap();
    // Four entries against a cap of 2 and a slack of 1: the last batch starts a pass.
    for n in 0..4 {
        store
            .upsert_async(format!("k{n}"), entry(n + 1))
            .await
            .unwrap();
    }
    assert!(
        !store.clone().close_async().await.unwrap(),
        "a clone is not the last"
    );
    assert!(store.close_async().await.unwrap(), "the last handle");
    assert_eq!(*heard.lock().unwrap(), ["k0", "k1"]);
    let loaded = sessionkit_session_store::load_store(dir.join("sessions.json")).unwrap();
    let keys: Vec<&str> = loaded.state.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["k2", "k3"]);
}

/// A close that a shutting-down runtime will not run is an error, not a false that would
/// read as "other handles are left": the handle was only dropped, nothing waited for.
#[test]
fn a_close_the_runtime_will_not_run_is_an_error() {
    use sessionkit_session_store::{Error, Operation};

    let dir = Scratch::new("async-close-refused");
    let store = Store::open(dir.join("sessions.json")).unwrap();
    store.upsert("k", entry(1)).unwrap();
    let gone = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let gone_handle = gone.handle().clone();
    drop(gone);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let closed = runtime.block_on(async {
        // The dropped runtime's blocking pool refuses the close's task.
        let _entered = gone_handle.enter();
        store.close_async().await
    });
    let err = closed.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Task {
                op: Operation::Close,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("close the store"), "{err}");
    assert_eq!(err.path(), Some(dir.join("sessions.json").as_path()));
}

#[tokio::test(flavor = "current_thread")]
async fn a_dropped_update_future_leaves_the_store_consistent() {
    let dir = Scratch::new("async-drop");
    let path = dir.join("sessions.json");
    let store = Store::builder().open_async(&path).await.unwrap();
    // Start an update and give up on it at once.
    let pending = store.upsert_async("maybe", entry(1));
    let _ = tokio::time::timeout(Duration::ZERO, pending).await;
    store.upsert_async("sure", entry(2)).await.unwrap();
    drop(store);
    let store = Store::builder().open_async(&path).await.unwrap();
    // The abandoned update may or may not have been written, but the store opens cleanly
    // and holds the acknowledged one.
    assert!(store.get_async("sure").await.unwrap().is_some());
    assert!(store.count_async().await.unwrap() <= 2);
    assert_eq!(store.open_report().torn_tail_bytes, None);
}

#[tokio::test(flavor = "current_thread")]
async fn transcripts_open_append_suspend_and_resume_async() {
    use sessionkit_write_lock::Locker;
    let dir = Scratch::new("async-transcript");
    let store = Store::builder()
        .open_async(dir.join("sessions.json"))
        .await
        .unwrap();
    std::fs::write(dir.join("s.jsonl"), b"{\"a\":1}\n{\"torn\":").unwrap();
    let locker = Locker::new();
    let mut t = store.open_transcript_async(&locker, "s").await.unwrap();
    assert_eq!(t.repaired_bytes(), Some(8));
    let first = t.append_async(b"{\"b\":2}".to_vec()).await.unwrap();
    assert_eq!(first.offset, 8);
    let suspended = t.suspend_async().await.unwrap();
    let mut t = suspended.resume_async().await.unwrap();
    t.append_async(b"{\"c\":3}".to_vec()).await.unwrap();
    assert_eq!(t.end(), Some(24));
    t.release_async().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("s.jsonl")).unwrap(),
        "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"
    );
}

/// Updates queued while a batch waits for the journal's lock are written together as the next
/// batch, with one fsync; a patch merged in the same batch as its entry's upsert gives the
/// bytes a replay of the file gives.
#[test]
fn updates_queued_behind_a_batch_go_out_as_one_batch() {
    let dir = Scratch::new("async-one-batch");
    let path = dir.join("sessions.json");
    let store = Store::open(&path).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // Another process holds the journal's lock, so the writer's first batch waits for it.
    let other = crate::util::lock_like_another_writer(store.journal_path());
    let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
    let first = {
        let store = store.clone();
        std::thread::spawn(move || {
            store.upsert("first", entry(1)).unwrap();
            first_tx.send(()).unwrap();
        })
    };
    assert!(
        crate::util::wait_until_lock_wait_or_done(&store, 0, &first_rx).is_none(),
        "the first batch did not wait for the lock"
    );

    // Whitespace the journal drops, so that the merge onto the caller's text would differ.
    let spaced =
        Entry::parse(r#"{"sessionId":"s9", "updatedAt":9, "x":{ "y" : [1, 2] }}"#).unwrap();
    let (upserted, patched, rest) = runtime.block_on(async {
        let upsert = tokio::spawn({
            let store = store.clone();
            async move { store.upsert_async("k", spaced).await }
        });
        let patch = tokio::spawn({
            let store = store.clone();
            async move {
                let patch = Patch::parse(r#"{"label":"l"}"#).unwrap();
                store.patch_async("k", patch, Activity::Preserve).await
            }
        });
        let more: Vec<_> = (0..8)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move { store.upsert_async(format!("m{n}"), entry(n)).await })
            })
            .collect();
        // On this one thread, every task above has sent its update once this task runs again.
        tokio::task::yield_now().await;
        crate::util::unlock(&other);
        let upserted = upsert.await.unwrap().unwrap();
        let patched = patch.await.unwrap().unwrap();
        let mut rest = Vec::new();
        for task in more {
            rest.push(task.await.unwrap().unwrap());
        }
        (upserted, patched, rest)
    });
    first.join().unwrap();
    assert_eq!(patched.seq, upserted.seq + 1);
    assert!(rest.iter().all(|ack| ack.durable));

    let c = store.counters();
    assert_eq!((c.updates, c.batches, c.fsyncs), (11, 2, 2), "{c:?}");
    let in_memory = store.get("k").unwrap().unwrap();
    drop(store);
    let replayed = Store::open(&path).unwrap().get("k").unwrap().unwrap();
    assert_eq!(in_memory.as_str(), replayed.as_str());
    assert_eq!(
        replayed.as_str(),
        r#"{"sessionId":"s9","updatedAt":9,"x":{"y":[1,2]},"label":"l"}"#
    );
}

/// Counts the write lock's "lock released" events on the thread it is the default of.
#[derive(Clone, Default)]
struct Releases(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl tracing::Subscriber for Releases {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Released(bool);
        impl tracing::field::Visit for Released {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0 |= field.name() == "message" && format!("{value:?}") == "lock released";
            }
        }
        let mut released = Released(false);
        event.record(&mut released);
        if released.0 {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A store in `dir`, a locker, and a current-thread runtime, whose one worker is the thread
/// that calls `block_on` on it.
fn on_one_worker(
    dir: &Scratch,
) -> (
    Store,
    sessionkit_write_lock::Locker,
    tokio::runtime::Runtime,
) {
    let store = Store::open(dir.join("sessions.json")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    (store, sessionkit_write_lock::Locker::new(), runtime)
}

/// A transcript whose torn tail cannot be repaired fails to open and lets go of its lock, on
/// a blocking thread: the release removes the lock file, which is file work a worker must
/// not do. On a current-thread runtime the worker is this test's thread, where the release
/// would be seen.
#[test]
fn a_failed_async_transcript_open_releases_its_lock_off_the_worker() {
    let dir = Scratch::new("async-transcript-fails");
    // A directory in the transcript's place: the lock is taken, then the repair fails.
    std::fs::create_dir(dir.join("s.jsonl")).unwrap();
    let (store, locker, runtime) = on_one_worker(&dir);
    let on_worker = Releases::default();
    let failed = tracing::subscriber::with_default(on_worker.clone(), || {
        runtime.block_on(store.open_transcript_async(&locker, "s"))
    });
    let Err(e) = failed else {
        panic!("a directory is not a transcript")
    };
    assert!(e.to_string().contains("s.jsonl"), "{e}");
    assert_eq!(on_worker.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Released all the same.
    assert!(locker.try_acquire(dir.join("s.jsonl")).unwrap().is_some());
    sees_a_release_here(&on_worker, &locker, &dir);
}

/// Checks that `on_worker` counts a release on this thread, without which the tests that
/// count none could not fail.
fn sees_a_release_here(
    on_worker: &Releases,
    locker: &sessionkit_write_lock::Locker,
    dir: &Scratch,
) {
    let before = on_worker.0.load(std::sync::atomic::Ordering::SeqCst);
    tracing::subscriber::with_default(on_worker.clone(), || {
        drop(locker.acquire(dir.join("other.jsonl")).unwrap());
    });
    assert_eq!(
        on_worker.0.load(std::sync::atomic::Ordering::SeqCst),
        before + 1
    );
}

/// An async transcript open dropped after its repair finished, before it was polled again:
/// the guard, handed back by the repair's blocking task, is released on a blocking thread,
/// not on the worker that drops the future.
#[test]
fn an_async_transcript_open_dropped_after_its_repair_releases_off_the_worker() {
    use sessionkit_test_support::poll_until_then_settle;

    let dir = Scratch::new("async-transcript-dropped");
    let transcript = dir.join("s.jsonl");
    let (store, locker, runtime) = on_one_worker(&dir);
    // An attempt is spoiled if the open finishes in the poll that follows a look at the file
    // that found the repair not yet done; then it is made again.
    for _ in 0..20 {
        // A torn tail: the repair cuts it, which tells this test that the repair ran.
        std::fs::write(&transcript, b"{\"a\":1}\n{\"torn\":").unwrap();
        let on_worker = Releases::default();
        let spoiled = tracing::subscriber::with_default(on_worker.clone(), || {
            runtime.block_on(async {
                let open = std::pin::pin!(store.open_transcript_async(&locker, "s"));
                // Polled until its repair has run, and not again after.
                let repaired = || std::fs::metadata(&transcript).unwrap().len() == 8;
                poll_until_then_settle(open, repaired).await
            })
        });
        if spoiled {
            continue;
        }
        assert_eq!(on_worker.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Released all the same, on a blocking thread.
        sessionkit_test_support::wait_until("the lock's release", || {
            locker.try_acquire(&transcript).unwrap().is_some()
        });
        sees_a_release_here(&on_worker, &locker, &dir);
        return;
    }
    panic!("every attempt's open finished before this test could drop it");
}

/// An async append dropped after its blocking write finished, before it was polled again:
/// the guard, handed back by the write's task, is released on a blocking thread, not on the
/// worker that drops the future.
#[test]
fn an_async_append_dropped_after_its_write_releases_off_the_worker() {
    use sessionkit_test_support::poll_until_then_settle;

    let dir = Scratch::new("async-append-dropped");
    let path = dir.join("s.jsonl");
    let (store, locker, runtime) = on_one_worker(&dir);
    // The first append creates the file.
    let len = || std::fs::metadata(&path).map_or(0, |m| m.len());
    // An attempt is spoiled if the append finishes in the poll that follows a look at the
    // file that found the record not yet written; then it is made again.
    for _ in 0..20 {
        let mut transcript = store.open_transcript(&locker, "s").unwrap();
        let before = len();
        let on_worker = Releases::default();
        let spoiled = tracing::subscriber::with_default(on_worker.clone(), || {
            runtime.block_on(async {
                let append = std::pin::pin!(transcript.append_async(r#"{"a":1}"#));
                // Polled until its record is written, and not again after.
                poll_until_then_settle(append, || len() != before).await
            })
        });
        drop(transcript);
        if spoiled {
            continue;
        }
        assert_eq!(on_worker.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Released all the same, on a blocking thread.
        sessionkit_test_support::wait_until("the lock's release", || {
            locker.try_acquire(&path).unwrap().is_some()
        });
        sees_a_release_here(&on_worker, &locker, &dir);
        return;
    }
    panic!("every attempt's append finished before this test could drop it");
}
