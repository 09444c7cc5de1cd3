//! `sessionkit doctor`: every kind of damage reported, `--fix` repairing all of it but a
//! corrupt registry (quarantined), a second run finding nothing left, and each kind alone.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use sessionkit::lock::{LockConfig, Locker};

use crate::util::{DATA_ERR, IO_ERR, USAGE, assert_error, dead_pid, plant_legacy_record, run};

/// A journal header and a writer id for records written by hand.
const HEADER: &str = "{\"sessionkitJournal\":1,\"epoch\":1}\n";
const WRITER: &str = "00000000000000aa";

/// One `upsert` journal line for `key`, whose session is `session`.
fn upsert(seq: u64, key: &str, session: &str) -> String {
    format!(
        "{{\"seq\":{seq},\"writer\":\"{WRITER}\",\"op\":\"upsert\",\"key\":\"{key}\",\
         \"entry\":{{\"sessionId\":\"{session}\",\"updatedAt\":1763708000000}}}}\n"
    )
}

/// Runs `sessionkit doctor [extra...] DIR`.
fn doctor(dir: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<&OsStr> = vec![OsStr::new("doctor")];
    args.extend(extra.iter().map(OsStr::new));
    args.push(dir.as_os_str());
    run(args, b"")
}

/// Asserts the exit status and an empty standard error; returns standard output.
fn stdout(output: &Output, code: i32) -> String {
    let out = String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8");
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(err.is_empty(), "stderr: {err}");
    out
}

/// Runs `doctor` on `dir` and asserts that it finds nothing.
fn assert_no_problems(dir: &Path) {
    let out = stdout(&doctor(dir, &[]), 0);
    assert_eq!(
        summary(&out),
        "doctor: 0 problems, 0 fixed, 0 left",
        "{out}"
    );
}

/// The last line of the report: `doctor: N problems, N fixed, N left`.
fn summary(out: &str) -> &str {
    out.lines().last().unwrap_or_else(|| panic!("no output"))
}

/// Every file of `dir` with its bytes, to show that a run changed nothing.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .expect("list the test directory")
        .map(|entry| {
            let entry = entry.expect("a directory entry");
            let bytes = fs::read(entry.path()).expect("read a test file");
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// Writes `bytes` to `path` and dates it `age` ago.
fn plant(path: &Path, bytes: &[u8], age: Duration) {
    fs::write(path, bytes).expect("plant a file");
    let when = SystemTime::now() - age;
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(when))
        .expect("date the planted file");
}

/// The names in `dir` that start with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list the test directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    found.sort();
    found
}

/// The line of the report that starts with `kind: ` and names `path`.
fn finding<'a>(out: &'a str, kind: &str, path: &Path) -> &'a str {
    let shown = format!("`{}`", path.display());
    out.lines()
        .map(str::trim_start)
        .find(|line| line.starts_with(&format!("{kind}: ")) && line.contains(&shown))
        .unwrap_or_else(|| panic!("no {kind} line for {shown} in:\n{out}"))
}

/// The keys of the store in `dir`, as `store list` prints them.
fn keys(dir: &Path) -> Vec<String> {
    let output = run(
        [
            OsStr::new("store"),
            OsStr::new("list"),
            dir.join("sessions.json").as_os_str(),
        ],
        b"",
    );
    stdout(&output, 0)
        .lines()
        .map(|line| line.split_whitespace().next().unwrap_or("").to_owned())
        .collect()
}

/// Two hours: past the default orphan grace of one hour and the temp age of five minutes.
const OLD: Duration = Duration::from_secs(2 * 3600);

#[test]
fn every_kind_of_damage_is_reported_then_fixed_but_the_corrupt_registry_is_quarantined() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let stale = d.join("gone.jsonl.lock");
    plant_legacy_record(&stale, dead_pid());
    let snapshot = d.join("sessions.json");
    fs::write(&snapshot, "{\"k0\": {\"sessionId\": ").expect("plant a corrupt snapshot");
    let journal = d.join("sessions.json.journal");
    let whole = format!("{HEADER}{}", upsert(1, "k1", "s1"));
    fs::write(&journal, format!("{whole}{{\"seq\":2,")).expect("plant a torn journal");
    let transcript = d.join("s1.jsonl");
    fs::write(&transcript, "{\"n\":1}\n{\"n\":").expect("plant a torn transcript");
    let orphan = d.join("old.jsonl");
    plant(&orphan, b"{\"n\":1}\n", OLD);
    let temp = d.join(".s1.jsonl.4242.00c0ffee00c0ffee.sktmp");
    plant(&temp, b"half", OLD);

    // The report alone changes nothing on disk.
    let before = contents(d);
    let out = stdout(&doctor(d, &[]), DATA_ERR);
    assert_eq!(contents(d), before, "{out}");
    for (kind, path) in [
        ("stale-lock", &stale),
        ("snapshot-corrupt", &snapshot),
        ("journal-torn-tail", &journal),
        ("transcript-torn-tail", &transcript),
        ("orphan-transcript", &orphan),
        ("temp-file", &temp),
    ] {
        let line = finding(&out, kind, path);
        assert!(line.contains("; --fix "), "{line}");
        assert!(!line.ends_with("--fix leaves it"), "{line}");
    }
    assert!(
        finding(&out, "stale-lock", &stale).contains("dead-pid"),
        "{out}"
    );
    assert_eq!(summary(&out), "doctor: 6 problems, 0 fixed, 6 left");

    // --fix repairs everything but the snapshot, which it quarantines and still reports.
    let out = stdout(&doctor(d, &["--fix"]), DATA_ERR);
    assert_eq!(
        summary(&out),
        "doctor: 6 problems, 5 fixed, 1 left",
        "{out}"
    );
    let aside = named(d, "sessions.json.corrupt.");
    assert_eq!(aside.len(), 1, "{out}");
    assert_eq!(
        fs::read(&aside[0]).expect("read the quarantined snapshot"),
        b"{\"k0\": {\"sessionId\": "
    );
    assert!(
        out.contains(&format!(
            "quarantined `{}` as `{}`",
            snapshot.display(),
            aside[0].display()
        )),
        "{out}"
    );
    assert!(
        out.contains("\nleft:\n  snapshot-corrupt (quarantined"),
        "{out}"
    );
    assert!(!stale.exists(), "{out}");
    assert!(!temp.exists(), "{out}");
    assert!(!orphan.exists(), "{out}");
    assert_eq!(named(d, "old.jsonl.deleted.").len(), 1, "{out}");
    assert_eq!(
        fs::read_to_string(&transcript).expect("read the transcript"),
        "{\"n\":1}\n"
    );
    // The journal's whole record survived the quarantine of the snapshot, and compaction
    // wrote it into a new, valid snapshot.
    assert_eq!(keys(d), ["k1"]);
    let check = run(
        [
            OsStr::new("store"),
            OsStr::new("check"),
            snapshot.as_os_str(),
        ],
        b"",
    );
    stdout(&check, 0);

    // A second run finds nothing left to fix; the quarantined file is only information.
    let before = contents(d);
    let out = stdout(&doctor(d, &[]), 0);
    assert_eq!(
        summary(&out),
        "doctor: 0 problems, 0 fixed, 0 left",
        "{out}"
    );
    let line = finding(&out, "quarantined-file", &aside[0]);
    assert!(
        line.contains("is a damaged snapshot renamed aside "),
        "{line}"
    );
    assert_eq!(contents(d), before);
}

#[test]
fn a_corrupt_journal_is_said_to_be_copied_aside_and_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let journal = d.join("sessions.json.journal");
    let damaged = format!("{HEADER}{}not a record\n", upsert(1, "k1", "s1"));
    fs::write(&journal, &damaged).expect("plant a corrupt journal");

    let out = stdout(&doctor(d, &[]), DATA_ERR);
    let line = finding(&out, "journal-corrupt", &journal);
    assert!(
        line.ends_with(&format!(
            "; --fix quarantines it (copies it to `{}.corrupt.<UTC time>` and replaces it with \
             the 1 whole record before the damage)",
            journal.display()
        )),
        "{line}"
    );

    stdout(&doctor(d, &["--fix"]), DATA_ERR);
    let aside = named(d, "sessions.json.journal.corrupt.");
    assert_eq!(aside.len(), 1);
    assert_eq!(
        fs::read_to_string(&aside[0]).expect("read the copy"),
        damaged
    );
    assert_eq!(keys(d), ["k1"]);
    let out = stdout(&doctor(d, &[]), 0);
    let line = finding(&out, "quarantined-file", &aside[0]);
    assert!(
        line.contains(&format!(
            "`{}` ({} bytes) is a damaged journal copied aside ",
            aside[0].display(),
            damaged.len()
        )),
        "{line}"
    );
}

/// A fence, as a writer puts one up over a failed batch it could not cut, naming seq `seq`
/// of `WRITER` at `offset` in the journal of epoch 1.
fn fence_line(offset: usize, seq: u64) -> String {
    format!(
        "{{\"sessionkitFence\":1,\"epoch\":1,\"offset\":{offset},\"writer\":\"{WRITER}\",\"seq\":{seq}}}\n"
    )
}

#[test]
fn a_fenced_failed_batch_is_reported_and_cut_and_its_records_never_applied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let journal = d.join("sessions.json.journal");
    let whole = format!("{HEADER}{}", upsert(1, "k1", "s1"));
    let failed = upsert(2, "k2", "s2");
    fs::write(&journal, format!("{whole}{failed}")).expect("plant a failed batch");
    let fence = d.join("sessions.json.journal.fence");
    fs::write(&fence, fence_line(whole.len(), 2)).expect("plant its fence");

    let before = contents(d);
    let out = stdout(&doctor(d, &[]), DATA_ERR);
    assert_eq!(contents(d), before, "{out}");
    let line = finding(&out, "journal-fenced-batch", &journal);
    assert!(
        line.contains(&format!(
            "ends in a failed batch of {} bytes at byte offset {}",
            failed.len(),
            whole.len()
        )) && line.ends_with("; --fix cuts it, under the journal's lock"),
        "{line}"
    );
    assert!(
        out.contains("registry: `") && out.contains(": 1 entry, "),
        "{out}"
    );

    let out = stdout(&doctor(d, &["--fix"]), 0);
    assert!(
        out.contains(&format!(
            "cut a fenced-off failed batch of {} bytes from `{}`",
            failed.len(),
            journal.display()
        )),
        "{out}"
    );
    assert!(!fence.exists());
    assert_eq!(keys(d), ["k1"]);
    assert_no_problems(d);
}

#[test]
fn a_corrupt_fence_is_quarantined() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let journal = d.join("sessions.json.journal");
    fs::write(&journal, format!("{HEADER}{}", upsert(1, "k1", "s1"))).expect("plant a journal");
    let fence = d.join("sessions.json.journal.fence");
    fs::write(&fence, "{\"sessionkitFence\":1,").expect("plant a corrupt fence");

    let out = stdout(&doctor(d, &[]), DATA_ERR);
    let line = finding(&out, "fence-corrupt", &fence);
    assert!(
        line.contains("; --fix quarantines it (renames it to `"),
        "{line}"
    );

    // Quarantined, like a corrupt snapshot: left for an operator, so still a problem.
    let out = stdout(&doctor(d, &["--fix"]), DATA_ERR);
    assert!(
        out.contains("fence-corrupt (quarantined, for an operator to look at): "),
        "{out}"
    );
    let aside = named(d, "sessions.json.journal.fence.corrupt.");
    assert_eq!(aside.len(), 1, "{out}");
    assert!(
        out.contains(&format!("quarantined `{}` as `", fence.display())),
        "{out}"
    );
    assert!(!fence.exists());
    assert_eq!(keys(d), ["k1"]);
    let out = stdout(&doctor(d, &[]), 0);
    let line = finding(&out, "quarantined-file", &aside[0]);
    assert!(
        line.contains("is a damaged journal fence renamed aside"),
        "{line}"
    );
}

#[test]
fn a_stale_lock_and_a_torn_journal_tail_leave_every_whole_record() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let stale = d.join("sessions.json.lock");
    plant_legacy_record(&stale, dead_pid());
    let journal = d.join("sessions.json.journal");
    let whole = format!(
        "{HEADER}{}{}{}",
        upsert(1, "k1", "s1"),
        upsert(2, "k2", "s2"),
        upsert(3, "k3", "s3")
    );
    let torn = "{\"seq\":4,\"wri";
    fs::write(&journal, format!("{whole}{torn}")).expect("plant a torn journal");

    let out = stdout(&doctor(d, &["--fix"]), 0);
    assert!(
        out.contains(&format!("removed stale lock `{}` (", stale.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "cut a torn tail of {} bytes from `{}`",
            torn.len(),
            journal.display()
        )),
        "{out}"
    );
    assert_eq!(
        summary(&out),
        "doctor: 2 problems, 2 fixed, 0 left",
        "{out}"
    );
    assert!(!stale.exists());
    assert_eq!(keys(d), ["k1", "k2", "k3"]);
    assert!(named(d, "sessions.json.corrupt.").is_empty());
    assert!(named(d, "sessions.json.journal.corrupt.").is_empty());
    assert_no_problems(d);
}

/// Another program's old `notes.lock` (no lock record in it) is stale to the judge, but no
/// sweep touches it: `locks` lists it as `not-lock`, a dry run does not say it would remove
/// it, and `doctor` reports it as information, so that `--fix` can end with nothing left.
#[test]
fn another_programs_lock_named_file_is_no_problem_anywhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let notes = d.join("notes.lock");
    plant(&notes, b"notes\n", OLD);
    let before = contents(d);

    let listed = stdout(&run([OsStr::new("locks"), d.as_os_str()], b""), 0);
    assert!(
        listed.starts_with(&format!(
            "not-lock  {}  age 2 h  reasons: ",
            notes.display()
        )),
        "{listed}"
    );
    assert!(
        listed.ends_with("1 lock: 0 held, 0 stale, 0 malformed, 1 not locks\n"),
        "{listed}"
    );
    let dry = stdout(
        &run(
            [OsStr::new("sweep"), OsStr::new("--dry-run"), d.as_os_str()],
            b"",
        ),
        0,
    );
    assert!(!dry.contains("would remove"), "{dry}");
    let out = stdout(&doctor(d, &["--fix"]), 0);
    assert!(
        finding(&out, "not-a-lock", &notes).contains("another program's file, never touched"),
        "{out}"
    );
    assert!(
        out.contains("locks: 1 (0 held, 0 stale, 0 malformed, 1 not locks)"),
        "{out}"
    );
    assert_eq!(
        summary(&out),
        "doctor: 0 problems, 0 fixed, 0 left",
        "{out}"
    );
    assert_eq!(contents(d), before);
}

#[test]
fn an_orphan_within_the_grace_is_reported_but_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    fs::write(
        d.join("sessions.json.journal"),
        format!("{HEADER}{}", upsert(1, "k1", "s1")),
    )
    .expect("plant a journal");
    fs::write(d.join("s1.jsonl"), "{\"n\":1}\n").expect("plant a referenced transcript");
    let young = d.join("young.jsonl");
    plant(&young, b"{\"n\":1}\n", Duration::from_secs(10));

    let out = stdout(&doctor(d, &["--fix"]), 0);
    let line = finding(&out, "recent-orphan-transcript", &young);
    assert!(line.contains("within the grace of 60 min"), "{line}");
    assert!(
        !out.contains("s1.jsonl`"),
        "a referenced transcript is no orphan: {out}"
    );
    assert_eq!(
        fs::read(&young).expect("the orphan is kept"),
        b"{\"n\":1}\n"
    );
    assert_eq!(
        summary(&out),
        "doctor: 0 problems, 0 fixed, 0 left",
        "{out}"
    );

    // A shorter grace makes it a problem, and --fix archives it.
    let out = stdout(&doctor(d, &["--orphan-grace", "5s"]), DATA_ERR);
    finding(&out, "orphan-transcript", &young);
    let out = stdout(&doctor(d, &["--fix", "--orphan-grace", "5s"]), 0);
    assert_eq!(summary(&out), "doctor: 1 problem, 1 fixed, 0 left", "{out}");
    assert!(!young.exists());
    assert_eq!(named(d, "young.jsonl.deleted.").len(), 1);
    assert!(d.join("s1.jsonl").exists());
}

#[test]
fn a_lock_held_by_a_live_process_is_reported_with_its_pid_and_never_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let transcript = d.join("s1.jsonl");
    fs::write(&transcript, "{\"n\":1}\n{\"n\"").expect("plant a torn transcript");
    let config = LockConfig::builder()
        .watchdog(false)
        .build()
        .expect("lock settings");
    let guard = Locker::with_config(config)
        .acquire(&transcript)
        .expect("take the transcript's lock");
    let lock = d.join("s1.jsonl.lock");
    let record = fs::read(&lock).expect("read the lock record");
    let pid = std::process::id();

    let out = stdout(&doctor(d, &[]), DATA_ERR);
    let line = finding(&out, "held-lock", &lock);
    assert!(line.contains(&format!("held by pid {pid}")), "{line}");
    let line = finding(&out, "transcript-torn-tail", &transcript);
    assert!(
        line.contains(&format!("its lock is held by pid {pid}")),
        "{line}"
    );
    assert!(line.ends_with("; --fix leaves it"), "{line}");

    let out = stdout(&doctor(d, &["--fix"]), DATA_ERR);
    assert_eq!(summary(&out), "doctor: 1 problem, 0 fixed, 1 left", "{out}");
    assert_eq!(fs::read(&lock).expect("the lock is kept"), record);
    assert_eq!(
        fs::read_to_string(&transcript).expect("read the transcript"),
        "{\"n\":1}\n{\"n\"",
        "a held transcript is never touched"
    );

    // Once its holder is gone, --fix cuts the tail under the lock.
    guard.release().expect("release the lock");
    let out = stdout(&doctor(d, &["--fix"]), 0);
    assert!(
        out.contains(&format!(
            "cut a torn tail of 4 bytes from `{}`",
            transcript.display()
        )),
        "{out}"
    );
    assert_eq!(summary(&out), "doctor: 1 problem, 1 fixed, 0 left", "{out}");
    assert_eq!(
        fs::read_to_string(&transcript).expect("read the transcript"),
        "{\"n\":1}\n"
    );
    assert!(!lock.exists());
}

#[test]
fn an_old_temp_file_goes_and_a_young_one_stays() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let old = d.join(".state.json.4242.00c0ffee00c0ffee.sktmp");
    plant(&old, b"half", OLD);
    let young = d.join(".state.json.4243.00c0ffee00c0ffef.sktmp");
    fs::write(&young, "in flight").expect("plant a young temp file");
    let other = d.join("state.json.tmp");
    plant(&other, b"not ours", OLD);

    let out = stdout(&doctor(d, &[]), DATA_ERR);
    finding(&out, "temp-file", &old);
    assert!(
        out.contains("recent-temp-files: 1 temp files younger than 5 min kept"),
        "{out}"
    );
    let out = stdout(&doctor(d, &["--fix"]), 0);
    assert!(
        out.contains(&format!("removed temp file `{}`", old.display())),
        "{out}"
    );
    assert!(!old.exists());
    assert!(young.exists());
    assert!(other.exists());
    assert_eq!(summary(&out), "doctor: 1 problem, 1 fixed, 0 left", "{out}");
}

#[test]
fn without_a_registry_transcripts_are_not_judged_as_orphans() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let transcript = d.join("s1.jsonl");
    plant(&transcript, b"{\"n\":1}\n", OLD);
    let out = stdout(&doctor(d, &["--fix"]), 0);
    assert!(
        out.contains("  no-registry: no registry: neither `"),
        "{out}"
    );
    assert!(!out.contains("orphan-transcript"), "{out}");
    assert!(transcript.exists());
    assert!(
        !d.join("sessions.json.journal").exists(),
        "no store is created"
    );
    assert_eq!(
        summary(&out),
        "doctor: 0 problems, 0 fixed, 0 left",
        "{out}"
    );
}

#[test]
fn a_disk_budget_that_is_exceeded_is_left_to_maintenance() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    fs::write(d.join("s1.jsonl"), "{\"n\":1}\n".repeat(10)).expect("plant a transcript");
    let out = stdout(&doctor(d, &["--fix", "--max-disk-bytes", "50"]), DATA_ERR);
    assert!(
        out.contains(
            "disk: 80 of 50 bytes (160 %): sessionkit files 80 in 1 (registry 0, transcripts 80, \
             archives 0, quarantined 0, locks 0, temp files 0), other files 0, subdirectories 0"
        ),
        "{out}"
    );
    assert!(
        out.contains("over-budget: 80 bytes are over the budget of 50 bytes"),
        "{out}"
    );
    assert_eq!(summary(&out), "doctor: 1 problem, 0 fixed, 1 left", "{out}");
    let out = stdout(&doctor(d, &["--max-disk-bytes", "90"]), 0);
    assert!(out.contains("over-high-water: 80 bytes are above"), "{out}");
}

#[test]
fn the_disk_section_counts_what_store_maintain_counts_subdirectories_included() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let store = d.join("sessions.json");
    let set = run(
        [
            OsStr::new("store"),
            OsStr::new("set"),
            store.as_os_str(),
            OsStr::new("k1"),
        ],
        b"{\"sessionId\":\"s1\"}",
    );
    assert_eq!(set.status.code(), Some(0), "{set:?}");
    fs::write(d.join("s1.jsonl"), "{\"n\":1}\n".repeat(10)).expect("plant a transcript");
    fs::write(d.join("notes.txt"), "x".repeat(20)).expect("plant another file");
    fs::create_dir_all(d.join("media/deep")).expect("create subdirectories");
    fs::write(d.join("media/deep/blob"), vec![b'x'; 3000]).expect("plant a nested file");
    // A symlink is not followed, to a file or to a directory.
    std::os::unix::fs::symlink(d.join("media/deep/blob"), d.join("media/link"))
        .expect("link a file");
    std::os::unix::fs::symlink(d.join("media"), d.join("media/deep/up")).expect("link a dir");
    let journal = fs::metadata(d.join("sessions.json.journal"))
        .expect("the journal")
        .len();
    let total = journal + 80 + 20 + 3000;

    let maintain = run(
        [
            OsStr::new("store"),
            OsStr::new("maintain"),
            store.as_os_str(),
            OsStr::new("--dry-run"),
            OsStr::new("--json"),
            OsStr::new("--max-disk-bytes"),
            OsStr::new("1000000"),
        ],
        b"",
    );
    let maintain: Value = serde_json::from_slice(&maintain.stdout).expect("a JSON report");
    assert_eq!(maintain["diskBytesBefore"], total, "{maintain}");

    // A budget the sessionkit files alone are far under, but the directory is over.
    let budget = (total - 1).to_string();
    let out = stdout(
        &doctor(d, &["--json", "--max-disk-bytes", &budget]),
        DATA_ERR,
    );
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["disk"]["totalBytes"], total, "{out}");
    assert_eq!(json["disk"]["bytes"], journal + 80, "{out}");
    assert_eq!(json["disk"]["otherBytes"], 20, "{out}");
    assert_eq!(json["disk"]["subdirectoryBytes"], 3000, "{out}");
    let problems: Vec<&str> = json["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["problem"] == true)
        .map(|f| f["kind"].as_str().expect("a kind"))
        .collect();
    assert_eq!(problems, ["over-budget"], "{out}");

    // The journal and the transcript are the sessionkit files; 80 % of the budget is below
    // the 3,000 bytes of `media/`, which maintenance would free nothing for.
    let out = stdout(&doctor(d, &["--max-disk-bytes", &budget]), DATA_ERR);
    let high = ((total - 1) as f64 * 0.8) as u64;
    assert!(high <= 3000, "{high}");
    assert!(
        out.contains(&format!(
            "\ndisk: {total} of {budget} bytes (100 %): sessionkit files {} in 2 (registry \
             {journal}, transcripts 80, archives 0, quarantined 0, locks 0, temp files 0), other \
             files 20, subdirectories 3000\n  over-budget: {total} bytes are over the budget of \
             {budget} bytes; the subdirectories alone take 3000 bytes, at least the high water \
             mark of {high} bytes, so `sessionkit store maintain --max-disk-bytes {budget}` frees \
             nothing for the budget; only removing files below them helps; --fix leaves it\n",
            journal + 80
        )),
        "{out}"
    );
}

#[test]
fn json_prints_one_object_with_findings_actions_and_outcomes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let stale = d.join("s1.jsonl.lock");
    plant_legacy_record(&stale, dead_pid());
    fs::write(
        d.join("sessions.json.journal"),
        format!("{HEADER}{}{{", upsert(1, "k1", "s1")),
    )
    .expect("plant a torn journal");

    let out = stdout(&doctor(d, &["--fix", "--json"]), 0);
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["fix"], true);
    assert_eq!(json["registry"]["entries"], 1);
    assert_eq!(json["summary"]["problems"], 2);
    assert_eq!(json["summary"]["fixed"], 2);
    assert_eq!(json["summary"]["left"], 0);
    let findings = json["findings"].as_array().expect("findings");
    let problems: Vec<(&str, &str)> = findings
        .iter()
        .filter(|f| f["problem"] == true)
        .map(|f| {
            (
                f["kind"].as_str().expect("a kind"),
                f["outcome"].as_str().expect("an outcome"),
            )
        })
        .collect();
    assert_eq!(
        problems,
        [("stale-lock", "fixed"), ("journal-torn-tail", "fixed")]
    );
    let actions: Vec<&str> = json["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .map(|a| a["action"].as_str().expect("an action"))
        .collect();
    assert_eq!(actions, ["remove-lock", "cut-tail", "compact"]);
    assert_eq!(json["disk"]["maxBytes"], Value::Null);
}

#[test]
fn a_missing_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope");
    let line = assert_error(&doctor(&missing, &[]), IO_ERR, &missing);
    assert!(
        line.contains("failed to examine the state directory"),
        "{line}"
    );
    let file = dir.path().join("sessions.json");
    fs::write(&file, "{}").expect("plant a file");
    let line = assert_error(&doctor(&file, &["--fix"]), IO_ERR, &file);
    assert!(line.ends_with("it is not a directory"), "{line}");
}

#[test]
fn bad_durations_are_usage_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [["--orphan-grace", "5"], ["--temp-older-than", "1d"]] {
        let output = doctor(dir.path(), &args);
        assert_eq!(output.status.code(), Some(USAGE), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
