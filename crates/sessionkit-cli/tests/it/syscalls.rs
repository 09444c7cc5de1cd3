//! The real system calls of a write, counted under `strace -f` (reliability.md, R1), of a
//! sweep, per lock file, and the bytes `store check` reads of a transcript.
//!
//! The library's own tests assert the call order through its file-system seam; this checks the
//! same order against the kernel, and that `--no-fsync` and `--fsync` really change the syncs.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::locks::Planted;

/// The traced calls of one `sessionkit` run, in order, as `name(first argument…`.
fn traced(args: &[&str], stdin: &[u8]) -> Option<Vec<String>> {
    traced_as(
        &[
            "-e",
            "trace=openat,write,fsync,fdatasync,rename,renameat,renameat2",
        ],
        args,
        stdin,
    )
}

/// [`traced`] with `filter` as strace's options instead of the write calls.
fn traced_as(filter: &[&str], args: &[&str], stdin: &[u8]) -> Option<Vec<String>> {
    let out = run_traced(filter, args, stdin)?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(trace_lines(&out))
}

/// The trace on a traced run's standard error, one call a line.
fn trace_lines(out: &std::process::Output) -> Vec<String> {
    // Under `-f` every line starts with the pid; drop it so lines start with the call's name.
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| match l.split_once(' ') {
            // strace pads the pid column, so more than one space may follow it.
            Some((pid, rest)) if pid.bytes().all(|b| b.is_ascii_digit()) => {
                rest.trim_start().to_owned()
            }
            _ => l.to_owned(),
        })
        .collect()
}

/// One `sessionkit` run under `strace -f` with `options`, its trace on standard error; `None`
/// (after a `SKIP:` line) if this machine cannot trace.
fn run_traced(options: &[&str], args: &[&str], stdin: &[u8]) -> Option<std::process::Output> {
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
        .args(["-f", "-qq"])
        .args(options)
        .args(["-o", "/dev/stderr", "--"])
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
    Some(out)
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

/// A durable write of 5 MiB and a byte asks the kernel to write back its first two 2 MiB
/// chunks as they are written, waits for the first, and leaves the rest to the fsync; the
/// same write without fsync makes no such call.
#[test]
fn a_large_durable_write_is_written_back_behind_in_2_mib_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sessions.json");
    let contents = vec![b' '; (5 << 20) + 1];
    let filter = ["-e", "trace=sync_file_range,fsync,rename"];
    let write = ["write", target.to_str().unwrap()];
    let Some(lines) = traced_as(&filter, &write, &contents) else {
        return;
    };
    let calls: Vec<String> = lines
        .iter()
        .filter(|l| l.starts_with("sync_file_range(") || l.starts_with("fsync("))
        .map(|l| match l.split_once(", ") {
            // `sync_file_range(3, 0, 2097152, SYNC_FILE_RANGE_WRITE) = 0`: the descriptor goes.
            Some((_fd, args)) => format!("sync_file_range({args}"),
            None => "fsync".to_owned(),
        })
        .collect();
    assert_eq!(
        calls,
        [
            "sync_file_range(0, 2097152, SYNC_FILE_RANGE_WRITE) = 0",
            "sync_file_range(2097152, 2097152, SYNC_FILE_RANGE_WRITE) = 0",
            "sync_file_range(0, 2097152, \
             SYNC_FILE_RANGE_WAIT_BEFORE|SYNC_FILE_RANGE_WRITE|SYNC_FILE_RANGE_WAIT_AFTER) = 0",
            // The temp file's fsync, then the directory's.
            "fsync",
            "fsync",
        ],
        "{lines:#?}"
    );
    assert_eq!(std::fs::read(&target).unwrap(), contents);

    let write = ["write", "--no-fsync", target.to_str().unwrap()];
    let Some(lines) = traced_as(&filter, &write, &contents) else {
        return;
    };
    assert_eq!(count(&lines, "sync_file_range"), 0, "{lines:#?}");
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

/// The calls that name `path`, or a descriptor open on it (strace's `-y`), by name, with the
/// names that differ between architectures and C libraries made one.
fn calls_on(lines: &[String], path: &Path) -> Vec<String> {
    let path = path.to_str().unwrap();
    lines
        .iter()
        // std checks in debug builds that a descriptor is still open before closing it.
        .filter(|l| l.contains(path) && !l.contains("F_GETFD"))
        .map(|l| {
            match l.split('(').next().unwrap() {
                "newfstatat" | "fstat" | "statx" | "lstat" | "stat" => "stat",
                "unlinkat" => "unlink",
                "pread64" => "pread",
                name => name,
            }
            .to_owned()
        })
        .collect()
}

#[test]
fn a_sweep_makes_eight_calls_per_stale_lock_and_five_per_kept_one() {
    let planted = Planted::new();
    let dir = planted.path().to_str().unwrap();
    let filter = ["-y", "-e", "trace=%file,%desc"];
    let Some(lines) = traced_as(&filter, &["sweep", dir], b"") else {
        return;
    };
    let dead = calls_on(&lines, &planted.lock("dead.jsonl.lock"));
    // Open without following a symlink or touching the access time, fstat, one read, the OS
    // lock; then, right before the unlink, the path's identity and the bytes again (one
    // positioned read); then the close.
    assert_eq!(
        dead,
        [
            "openat", "stat", "read", "flock", "stat", "pread", "unlink", "close"
        ],
        "{lines:#?}"
    );
    let opened = lines
        .iter()
        .find(|l| l.starts_with("openat(") && l.contains("dead.jsonl.lock"))
        .unwrap();
    assert!(opened.contains("O_NOFOLLOW"), "{opened}");
    assert!(opened.contains("O_NONBLOCK"), "{opened}");
    // Looking does not dirty the inode with a new access time (we own the file here).
    assert!(opened.contains("O_NOATIME"), "{opened}");
    // A live owner's lock and a fresh malformed one are judged and kept: no second look.
    for kept in ["live.jsonl.lock", "fresh.lock"] {
        assert_eq!(
            calls_on(&lines, &planted.lock(kept)),
            ["openat", "stat", "read", "flock", "close"],
            "{kept}: {lines:#?}"
        );
    }
    // The file that is no lock is never opened.
    assert_eq!(
        calls_on(&lines, &planted.lock("notes.txt")),
        Vec::<String>::new()
    );
    assert_eq!(
        crate::util::names(planted.path()),
        ["fresh.lock", "live.jsonl.lock", "notes.txt"]
    );
}

/// A `store set` whose journal `fdatasync` fails (`EIO`, injected by strace) exits with an
/// I/O error and, before it exits, compacts the store to make durable again what the kernel
/// may have dropped: the library would compact in the background, and the exit would cut that
/// short.
#[test]
fn a_store_set_whose_fsync_fails_compacts_before_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let path_arg = path.to_str().unwrap();
    crate::util::run_ok(
        ["store", "set", path_arg, "kept"],
        br#"{"sessionId":"kept","updatedAt":1}"#,
    );
    assert!(
        !path.exists(),
        "a fresh store has no snapshot until it compacts"
    );

    // The batch's fsync is the run's first `fdatasync`: the journal exists, and the
    // compaction's writes use `fsync`.
    let Some(out) = run_traced(
        &[
            "-e",
            "trace=fdatasync",
            "-e",
            "inject=fdatasync:error=EIO:when=1",
        ],
        &["store", "set", path_arg, "failed"],
        br#"{"sessionId":"failed","updatedAt":2}"#,
    ) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(crate::util::IO_ERR), "{stderr}");
    assert!(stderr.contains("(INJECTED)"), "{stderr}");

    let written = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("no snapshot after the failed set ({e}): {stderr}"));
    let snapshot: serde_json::Value = serde_json::from_slice(&written).unwrap();
    let keys: Vec<&String> = snapshot.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["kept"], "{stderr}");
    let missing = crate::util::run(["store", "get", path_arg, "failed"], b"");
    assert_eq!(missing.status.code(), Some(1));
}

/// A `store set` whose journal `fdatasync` fails and whose every `ftruncate` fails too (both
/// injected by strace) cannot cut its batch back out of the journal: it fences the batch off,
/// and the compaction it runs before exiting leaves the batch out of the new journal. No later
/// reader, in another process, finds the update its caller was told failed.
#[test]
fn a_store_set_that_can_cut_nothing_fences_its_failed_batch_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let path_arg = path.to_str().unwrap();
    let fence = dir.path().join("sessions.json.journal.fence");
    crate::util::run_ok(
        ["store", "set", path_arg, "kept"],
        br#"{"sessionId":"kept","updatedAt":1}"#,
    );

    let Some(out) = run_traced(
        &[
            "-e",
            "trace=fdatasync,ftruncate",
            "-e",
            "inject=fdatasync:error=EIO:when=1",
            "-e",
            "inject=ftruncate:error=EIO",
        ],
        &["store", "set", path_arg, "failed"],
        br#"{"sessionId":"failed","updatedAt":2}"#,
    ) else {
        return;
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(crate::util::IO_ERR), "{stderr}");
    assert!(
        stderr.contains("ftruncate(") && stderr.contains("(INJECTED)"),
        "{stderr}"
    );
    // The fence outlives the journal it fenced, which the compaction replaced.
    assert!(fence.exists(), "{stderr}");

    let journal = std::fs::read_to_string(dir.path().join("sessions.json.journal")).unwrap();
    assert!(!journal.contains("\"failed\""), "{journal}");
    let missing = crate::util::run(["store", "get", path_arg, "failed"], b"");
    assert_eq!(missing.status.code(), Some(1));
    std::fs::write(dir.path().join("kept.jsonl"), "").unwrap();
    let check = crate::util::run(["store", "check", path_arg], b"");
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(0), "{report}");

    // The next open removes the stale fence.
    crate::util::run_ok(
        ["store", "set", path_arg, "next"],
        br#"{"sessionId":"next","updatedAt":3}"#,
    );
    assert!(!fence.exists());
}

/// The bytes read from `path` in a trace of `read` and `pread64` calls made with `-y`.
fn bytes_read(lines: &[String], path: &Path) -> u64 {
    let path = path.to_str().unwrap();
    lines
        .iter()
        .filter(|l| (l.starts_with("read(") || l.starts_with("pread64(")) && l.contains(path))
        .map(|l| {
            let (_, returned) = l.rsplit_once(" = ").unwrap_or_else(|| panic!("{l}"));
            returned
                .trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{l}"))
        })
        .sum()
}

/// `store check` reads one byte of a clean transcript, and of a torn one only its tail (in
/// one chunk of 64 KiB here), never the records before it: a check costs the same however long
/// the transcripts are.
#[test]
fn store_check_reads_only_the_last_byte_or_the_torn_tail_of_a_transcript() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sessions.json");
    let path_arg = path.to_str().unwrap();
    for id in ["clean", "torn"] {
        crate::util::run_ok(
            ["store", "set", path_arg, id],
            format!("{{\"sessionId\":\"{id}\"}}").as_bytes(),
        );
    }
    // 720 KiB of records in each, far more than the chunk a torn tail is looked for in.
    let records = "{\"type\":\"message\",\"text\":\"0123456789abcdef\"}\n".repeat(1 << 14);
    let clean = dir.path().join("clean.jsonl");
    let torn = dir.path().join("torn.jsonl");
    std::fs::write(&clean, &records).unwrap();
    std::fs::write(&torn, format!("{records}{{\"type\":")).unwrap();

    let Some(out) = run_traced(
        &["-y", "-e", "trace=read,pread64"],
        &["store", "check", path_arg],
        b"",
    ) else {
        return;
    };
    assert_eq!(out.status.code(), Some(crate::util::DATA_ERR));
    let lines = trace_lines(&out);
    assert_eq!(bytes_read(&lines, &clean), 1, "{lines:#?}");
    let read = bytes_read(&lines, &torn);
    assert!(
        (1..=1 + 64 * 1024).contains(&read),
        "{read} bytes read of {}: {lines:#?}",
        records.len() + 8
    );
}
