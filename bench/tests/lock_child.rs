//! The `lock` suite's contender processes (`sessionkit-bench lock-child ...`), driven by hand
//! the way the suite drives them, across real process boundaries.

#![cfg(unix)]

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use sessionkit_write_lock::Locker;

fn spawn(args: &[&str]) -> (Child, ChildStdin, BufReader<ChildStdout>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionkit-bench"))
        .arg("lock-child")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdin, stdout)
}

fn line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    assert_ne!(
        reader.read_line(&mut line).unwrap(),
        0,
        "the child closed its stdout"
    );
    line.trim_end().to_owned()
}

fn stamp() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// The parent's side of `lock-child handoff`: the hello, then give and take the lock `pairs`
/// times; returns the child's samples line.
fn drive_handoff<G>(
    kind: &str,
    path: &Path,
    mut take: impl FnMut() -> G,
    give: impl Fn(G),
) -> String {
    let pairs = 3;
    let mut held = take();
    let (mut child, mut to_child, mut from_child) = spawn(&[
        "handoff",
        kind,
        path.to_str().unwrap(),
        &pairs.to_string(),
        "0",
        "1000",
        "1",
    ]);
    line(&mut from_child).parse::<u128>().unwrap();
    for _ in 0..pairs {
        writeln!(to_child, "{}", stamp()).unwrap();
        give(held);
        line(&mut from_child).parse::<u128>().unwrap();
        held = take();
        line(&mut from_child).parse::<u128>().unwrap();
        writeln!(to_child, "{}", stamp()).unwrap();
    }
    give(held);
    let samples = line(&mut from_child);
    drop(to_child);
    assert!(child.wait().unwrap().success());
    samples
}

fn assert_samples(line: &str, n: usize) {
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words[0], "samples");
    assert_eq!(words.len(), 1 + n, "{line}");
    assert!(
        words[1..].iter().all(|w| w.parse::<u64>().is_ok()),
        "{line}"
    );
}

#[test]
fn handoff_child_takes_turns_with_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t.jsonl");
    let locker = Locker::new();
    let samples = drive_handoff(
        "ours",
        &target,
        || locker.acquire(&target).unwrap(),
        |guard| guard.release().unwrap(),
    );
    assert_samples(&samples, 3);
}

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "the test's parent side is a bare `flock`, as the benchmark's baseline"
)]
fn flock_handoff_child_takes_turns_with_its_parent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    fs::write(&path, b"").unwrap();
    let samples = drive_handoff(
        "flock",
        &path,
        || {
            let file = File::open(&path).unwrap();
            file.lock().unwrap();
            file
        },
        |file| file.unlock().unwrap(),
    );
    assert_samples(&samples, 3);
}

#[test]
fn churn_children_share_the_lock_exclusively() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t.jsonl");
    let counter = dir.path().join("count");
    fs::write(&counter, format!("{:020} {:020}\n", 0, 0)).unwrap();
    let args = [
        "churn",
        target.to_str().unwrap(),
        counter.to_str().unwrap(),
        "300",
    ];
    let mut children: Vec<_> = (0..3).map(|_| spawn(&args)).collect();
    for (_, _, from_child) in &mut children {
        assert_eq!(line(from_child), "ready");
    }
    for (_, to_child, _) in &mut children {
        writeln!(to_child, "go").unwrap();
    }
    let mut sections = 0;
    for (mut child, to_child, mut from_child) in children {
        let done = line(&mut from_child);
        let words: Vec<&str> = done.split(' ').collect();
        assert_eq!((words[0], words.len()), ("done", 4), "{done}");
        let n: u64 = words[1].parse().unwrap();
        let turns: u64 = words[2].parse().unwrap();
        assert!(turns <= n);
        sections += n;
        drop(to_child);
        assert!(child.wait().unwrap().success());
    }
    let text = fs::read_to_string(&counter).unwrap();
    let counted: u64 = text.split_whitespace().next().unwrap().parse().unwrap();
    assert!(sections > 0);
    assert_eq!(counted, sections);
}

#[test]
fn an_unknown_role_fails() {
    let (mut child, to_child, _from_child) = spawn(&["spin"]);
    drop(to_child);
    assert_eq!(child.wait().unwrap().code(), Some(1));
}
