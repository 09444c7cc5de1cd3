//! The tokio entry points: work runs on blocking threads, and a dropped future still finishes.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use sessionkit_atomic_fs::{AtomicWriter, FileSystem, RealFs, RecordAppender};
use sessionkit_test_support::HANG;

use crate::util::{RecordingFs, Scratch};

#[tokio::test(flavor = "current_thread")]
async fn every_file_system_call_runs_off_the_runtime_thread() {
    let dir = Scratch::new("tokio-thread");
    let rec = Arc::new(RecordingFs::default());
    let runtime_thread = std::thread::current().id();
    let mut writer = AtomicWriter::new();
    writer.file_system(rec.clone());
    writer
        .write_async(dir.join("t"), b"x".to_vec())
        .await
        .unwrap();
    writer
        .write_json_async(dir.join("j"), &serde_json::json!({"a": 1}))
        .await
        .unwrap();
    let mut appender = RecordAppender::new();
    appender.sync(true).file_system(rec.clone());
    appender
        .append_async(dir.join("l.jsonl"), b"{}".to_vec())
        .await
        .unwrap();
    let threads = rec.threads();
    assert_eq!(threads.len(), 6 + 6 + 5, "{:?}", rec.calls());
    assert_eq!(
        threads.iter().filter(|t| **t == runtime_thread).count(),
        0,
        "no call on the async worker"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn free_functions_round_trip() {
    let dir = Scratch::new("tokio-free");
    use sessionkit_atomic_fs::tokio as afs;
    afs::write_json(dir.join("a.json"), &serde_json::json!({"k": [1, 2]}))
        .await
        .unwrap();
    let v: serde_json::Value = afs::read_json(dir.join("a.json")).await.unwrap();
    assert_eq!(v["k"][1], 2);
    afs::append_record(dir.join("l.jsonl"), b"{}".to_vec())
        .await
        .unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("l.jsonl"))
        .unwrap();
    let recs = afs::read_records_from(dir.join("l.jsonl"), 0)
        .await
        .unwrap();
    assert_eq!(recs.records.len(), 1);
    let typed = afs::read_jsonl::<serde_json::Value>(dir.join("l.jsonl"))
        .await
        .unwrap();
    assert_eq!(typed.values.len(), 1);
    let repair = afs::repair_torn_tail(
        dir.join("l.jsonl"),
        sessionkit_atomic_fs::Durability::Durable,
    )
    .await
    .unwrap();
    assert_eq!(repair.removed, 0);
    let report = afs::remove_orphan_temps(dir.path(), Duration::ZERO)
        .await
        .unwrap();
    assert!(report.removed.is_empty());
    assert!(
        afs::read_json::<serde_json::Value>(dir.join("none"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

/// Blocks the write step until the test lets it go.
#[derive(Debug)]
struct Gate(Arc<Barrier>, Arc<Barrier>);

impl FileSystem for Gate {
    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> std::io::Result<usize> {
        self.0.wait();
        self.1.wait();
        RealFs.write(file, path, buf)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_future_still_completes_the_write_whole() {
    let dir = Scratch::new("tokio-cancel");
    let target = dir.join("t");
    std::fs::write(&target, b"old").unwrap();
    let (entered, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
    let mut writer = AtomicWriter::new();
    writer.file_system(Arc::new(Gate(entered.clone(), release.clone())));
    let task = tokio::spawn({
        let target = target.clone();
        async move { writer.write_async(target, vec![9u8; 100_000]).await }
    });
    // Wait until the blocking task is inside the write, then cancel the caller.
    tokio::task::spawn_blocking(move || entered.wait())
        .await
        .unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(
        std::fs::read(&target).unwrap(),
        b"old",
        "not replaced while the write is held"
    );
    tokio::task::spawn_blocking(move || release.wait())
        .await
        .unwrap();
    // The blocking task finishes on its own.
    until("the write to replace the file", || {
        std::fs::read(&target).unwrap() != b"old"
    })
    .await;
    assert_eq!(std::fs::read(&target).unwrap(), vec![9u8; 100_000]);
    until("the temp file to go", || dir.names() == ["t"]).await;
}

/// Polls `done` every millisecond until it holds; the deadline only catches a hang.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "hung: waited {HANG:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Counts how many writes are inside the file system at once, and holds them until released.
#[derive(Debug, Default)]
struct Turnstile {
    inside: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    open: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
}

impl Turnstile {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Opens the turnstile when the test ends, pass or fail, so held writes never hang it.
struct OpenOnDrop(Arc<Turnstile>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

impl FileSystem for Turnstile {
    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> std::io::Result<usize> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.inside.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
        drop(open);
        self.inside.fetch_sub(1, SeqCst);
        RealFs.write(file, path, buf)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_the_blocking_limit_runs_at_once() {
    use sessionkit_atomic_fs::tokio::{blocking_limit, default_blocking_limit, set_blocking_limit};
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(blocking_limit(), default_blocking_limit());
    set_blocking_limit(2);
    let dir = Scratch::new("tokio-limit");
    let gate = Arc::new(Turnstile::default());
    let _open_on_drop = OpenOnDrop(gate.clone());
    let mut writer = AtomicWriter::new();
    writer.file_system(gate.clone());
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let writer = writer.clone();
            let target = dir.join(format!("t{i}"));
            tokio::spawn(async move { writer.write_async(target, b"x".to_vec()).await })
        })
        .collect();
    until("two writes to get in", || gate.inside.load(SeqCst) >= 2).await;
    // Give the others plenty of chances to get in if the cap did not hold. However slowly
    // the machine runs, this window can only hide a broken cap, never fail one that holds.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(gate.inside.load(SeqCst), 2);
    gate.open();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        gate.most.load(SeqCst),
        2,
        "never more than the limit inside"
    );
    assert_eq!(dir.names().len(), 6);
    set_blocking_limit(default_blocking_limit());
}
