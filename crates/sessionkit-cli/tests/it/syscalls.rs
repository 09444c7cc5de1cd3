//! The real system calls of a write, counted under `strace -f` (reliability.md, R1).
//!
//! The library's own tests assert the call order through its file-system seam; this checks the
//! same order against the kernel, and that `--no-fsync` and `--fsync` really change the syncs.

use std::process::{Command, Stdio};

use std::io::Write as _;

/// The traced calls of one `sessionkit` run, in order, as `name(first argument…`.
fn traced(args: &[&str], stdin: &[u8]) -> Option<Vec<String>> {
    if Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        println!("SKIP: syscall counts: strace is not installed");
        return None;
    }
    let mut child = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,write,fsync,fdatasync,rename,renameat,renameat2",
            "-o",
            "/dev/stderr",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_sessionkit"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strace");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("PTRACE_TRACEME") {
        println!("SKIP: syscall counts: ptrace is not permitted here");
        return None;
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Under `-f` every line starts with the pid; drop it so lines start with the call's name.
    let lines = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| match l.split_once(' ') {
            // strace pads the pid column, so more than one space may follow it.
            Some((pid, rest)) if pid.bytes().all(|b| b.is_ascii_digit()) => {
                rest.trim_start().to_owned()
            }
            _ => l.to_owned(),
        })
        .collect();
    Some(lines)
}

fn count(lines: &[String], call: &str) -> usize {
    lines
        .iter()
        .filter(|l| l.starts_with(&format!("{call}(")))
        .count()
}

#[test]
fn durable_write_is_create_write_fsync_rename_fsync_dir() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sessions.json");
    let Some(lines) = traced(&["write", target.to_str().unwrap()], b"{}") else {
        return;
    };
    let ours: Vec<&String> = lines
        .iter()
        .filter(|l| {
            l.contains(dir.path().to_str().unwrap())
                || l.starts_with("fsync(")
                || l.starts_with("fdatasync(")
        })
        .collect();
    let shape: Vec<&str> = ours.iter().map(|l| l.split('(').next().unwrap()).collect();
    // The temp file is created exclusively, synced, renamed; then the directory is opened and synced.
    assert_eq!(
        shape,
        ["openat", "fsync", "rename", "openat", "fsync"],
        "{ours:#?}"
    );
    assert!(
        ours[0].contains("O_EXCL") && ours[0].contains(".sktmp"),
        "{}",
        ours[0]
    );
    assert!(
        ours[3].contains(&format!("\"{}\"", dir.path().display())),
        "the directory: {}",
        ours[3]
    );
}

#[test]
fn no_fsync_write_makes_no_sync_call() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("cache.json");
    let Some(lines) = traced(&["write", "--no-fsync", target.to_str().unwrap()], b"{}") else {
        return;
    };
    assert_eq!(
        count(&lines, "fsync") + count(&lines, "fdatasync"),
        0,
        "{lines:#?}"
    );
    assert_eq!(count(&lines, "rename"), 1, "{lines:#?}");
}

#[test]
fn append_syncs_data_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    std::fs::write(&path, b"").unwrap();
    let Some(plain) = traced(&["append", path.to_str().unwrap()], b"{}\n") else {
        return;
    };
    assert_eq!(
        count(&plain, "fsync") + count(&plain, "fdatasync"),
        0,
        "{plain:#?}"
    );
    let Some(synced) = traced(&["append", "--fsync", path.to_str().unwrap()], b"{}\n") else {
        return;
    };
    assert_eq!(count(&synced, "fdatasync"), 1, "{synced:#?}");
    // The record went out as one write of record + newline.
    let writes: Vec<&String> = synced
        .iter()
        .filter(|l| l.starts_with("write(") && l.contains("\"{}\\n\""))
        .collect();
    assert_eq!(writes.len(), 1, "{synced:#?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"{}\n{}\n");
}
