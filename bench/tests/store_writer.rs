//! The `store` suite's multi-process writers (`sessionkit-bench store` with
//! `SESSIONKIT_BENCH_STORE_WRITER` set), driven by hand the way the suite drives them: several
//! processes writing one store at once, and a writer that must not write.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use sessionkit_session_store::{Store, SyncMode};

const WRITER_ENV: &str = "SESSIONKIT_BENCH_STORE_WRITER";

struct Writer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

fn spawn(dir: &Path, role: &str) -> Writer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionkit-bench"))
        .arg("store")
        .env(WRITER_ENV, role)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    Writer {
        child,
        stdin,
        stdout,
    }
}

fn line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// Starts `procs` writers of `kind` in `dir`, each with `threads` × `per_thread` upserts, lets
/// them go at once, and returns each one's report after `done`.
fn run_writers(
    dir: &Path,
    kind: &str,
    procs: usize,
    threads: usize,
    per_thread: usize,
) -> Vec<String> {
    let mut writers: Vec<Writer> = (0..procs)
        .map(|i| spawn(dir, &format!("{kind} {i} {threads} {per_thread}")))
        .collect();
    for w in &mut writers {
        assert_eq!(line(&mut w.stdout), "ready");
    }
    for w in &mut writers {
        writeln!(w.stdin, "go").unwrap();
    }
    let mut reports = Vec::new();
    for mut w in writers {
        assert_eq!(line(&mut w.stdout), "done");
        let mut report = String::new();
        w.stdout.read_to_string(&mut report).unwrap();
        assert!(w.child.wait().unwrap().success(), "{report}");
        reports.push(report);
    }
    reports
}

/// The value words of the line `name` in `report`.
fn field<'a>(report: &'a str, name: &str) -> Vec<&'a str> {
    let line = report
        .lines()
        .find(|l| l.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("no `{name}` in {report}"));
    line.split(' ').skip(1).collect()
}

#[test]
fn ours_writers_share_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    drop(
        Store::builder()
            .sync(SyncMode::EveryBatch)
            .open(&path)
            .unwrap(),
    );
    let reports = run_writers(dir.path(), "ours", 3, 2, 20);
    let mut batches = 0;
    for report in &reports {
        assert_eq!(field(report, "updates"), ["40"]);
        assert_eq!(field(report, "latency_us").len(), 40);
        let counters = field(report, "counters");
        assert_eq!(counters.len(), 5, "{report}");
        batches += counters[1].parse::<u64>().unwrap();
    }
    assert!((3..=120).contains(&batches), "{batches} batches");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.count().unwrap(), 120);
    assert!(store.get("hook:p2t1i19").unwrap().is_some());
}

#[test]
fn sqlite_writers_share_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(
        "CREATE TABLE sessions (key TEXT PRIMARY KEY NOT NULL, session_id TEXT,
             updated_at INTEGER, entry TEXT NOT NULL);",
    )
    .unwrap();
    let reports = run_writers(dir.path(), "sqlite-full", 3, 2, 20);
    for report in &reports {
        assert_eq!(field(report, "updates"), ["40"]);
        assert_eq!(field(report, "latency_us").len(), 40);
        assert!(!report.contains("counters"), "{report}");
    }
    let n: i64 = conn
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 120);
}

#[test]
fn a_writer_without_a_store_fails_before_it_is_ready() {
    for kind in ["ours", "sqlite-full"] {
        let dir = tempfile::tempdir().unwrap();
        let mut w = spawn(dir.path(), &format!("{kind} 0 1 1"));
        assert_eq!(line(&mut w.stdout), "", "{kind} said something");
        assert_eq!(w.child.wait().unwrap().code(), Some(1), "{kind}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{kind} created {left:?}");
    }
}

#[test]
fn a_writer_told_nothing_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    drop(Store::open(&path).unwrap());
    let mut w = spawn(dir.path(), "ours 0 2 5");
    assert_eq!(line(&mut w.stdout), "ready");
    drop(w.stdin);
    assert_eq!(w.child.wait().unwrap().code(), Some(1));
    assert_eq!(Store::open(&path).unwrap().count().unwrap(), 0);
}

#[test]
fn a_bad_role_fails() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = spawn(dir.path(), "naive 0 1 1");
    assert_eq!(w.child.wait().unwrap().code(), Some(1));
}
