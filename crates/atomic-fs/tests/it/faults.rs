//! Fault injection at every step of a replace and an append, once and persistently.
//!
//! The rules (reliability.md, R2): the target keeps its old bytes exactly, no temp file is left,
//! the error names the step, and a failed fsync is never followed by a rename.

use std::fs;
use std::sync::Arc;

use sessionkit_atomic_fs::{AtomicWriter, Durability, RecordAppender, Step};

use crate::util::{Call, Fault, FaultFs, REPLACE_CALLS, Scratch};

const ERRNOS: [(i32, &str); 5] = [
    (5, "EIO"),
    (28, "ENOSPC"),
    (13, "EACCES"),
    (30, "EROFS"),
    (27, "EFBIG"),
];

fn step_of(call: Call) -> Step {
    match call {
        Call::CreateNew => Step::CreateTemp,
        Call::Write => Step::Write,
        Call::SyncAll => Step::SyncTemp,
        Call::Rename => Step::Rename,
        Call::SyncDir => Step::SyncDir,
        other => panic!("no replace step for {other:?}"),
    }
}

#[test]
fn every_replace_step_every_errno_once_and_persistent() {
    let old = b"old contents, byte for byte".to_vec();
    let new = vec![7u8; 70_000];
    let mut cases = 0;
    for call in REPLACE_CALLS {
        for (errno, name) in ERRNOS {
            for persistent in [false, true] {
                let dir = Scratch::new("sweep");
                let target = dir.join("sessions.json");
                fs::write(&target, &old).unwrap();
                let fault = Arc::new(FaultFs::new(call, 1, persistent, Fault::Errno(errno)));
                let err = AtomicWriter::new()
                    .file_system(fault.clone())
                    .write(&target, &new)
                    .expect_err(&format!("{call:?} {name} must fail"));
                let what = format!("{call:?} {name} persistent={persistent}: {err}");
                assert_eq!(
                    fault.fired(),
                    1,
                    "the operation stops at the first fault: {what}"
                );
                assert_eq!(err.step(), Some(step_of(call)), "{what}");
                assert_eq!(
                    err.io_error().unwrap().raw_os_error(),
                    Some(errno),
                    "{what}"
                );
                assert_eq!(dir.names(), ["sessions.json"], "no temp file left: {what}");
                if call == Call::SyncDir {
                    // The rename happened; the error says durability is unknown.
                    assert!(err.is_sync_failure() && err.target_replaced(), "{what}");
                    assert_eq!(fs::read(&target).unwrap(), new, "{what}");
                } else {
                    assert!(!err.target_replaced(), "{what}");
                    assert_eq!(fs::read(&target).unwrap(), old, "target unchanged: {what}");
                }
                if call == Call::SyncAll {
                    assert!(err.is_sync_failure(), "{what}");
                    assert!(err.to_string().contains("may not be on disk"), "{what}");
                    assert!(err.to_string().contains("left unchanged"), "{what}");
                }
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 50);
}

#[test]
fn fsync_failure_is_never_followed_by_a_rename() {
    let dir = Scratch::new("gate");
    let target = dir.join("t");
    fs::write(&target, b"old").unwrap();
    let rec = Arc::new(crate::util::RecordingFs::default());
    // Fail the sync through a fault, and record what happens around it.
    #[derive(Debug)]
    struct Both(Arc<crate::util::RecordingFs>, FaultFs);
    impl sessionkit_atomic_fs::FileSystem for Both {
        fn sync_all(&self, file: &fs::File, path: &std::path::Path) -> std::io::Result<()> {
            self.1.sync_all(file, path)
        }
        fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
            self.0.rename(from, to)
        }
    }
    let both = Arc::new(Both(
        rec.clone(),
        FaultFs::new(Call::SyncAll, 1, false, Fault::Errno(5)),
    ));
    let err = AtomicWriter::new()
        .file_system(both)
        .write(&target, b"new")
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::SyncTemp));
    assert!(
        rec.calls().is_empty(),
        "no rename after a failed fsync: {:?}",
        rec.calls()
    );
    assert_eq!(fs::read(&target).unwrap(), b"old");
}

#[test]
fn short_writes_are_completed() {
    let dir = Scratch::new("short");
    let target = dir.join("t");
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    for persistent in [false, true] {
        let fault = Arc::new(FaultFs::new(Call::Write, 1, persistent, Fault::ShortWrite));
        AtomicWriter::new()
            .file_system(fault.clone())
            .write(&target, &payload)
            .unwrap();
        assert!(fault.fired() >= 1);
        assert_eq!(fs::read(&target).unwrap(), payload);
        assert_eq!(dir.names(), ["t"]);
    }
}

#[test]
fn short_write_then_error_leaves_target_unchanged() {
    let dir = Scratch::new("short2");
    let target = dir.join("t");
    fs::write(&target, b"old").unwrap();
    // The first write is short; the second (for the rest) fails with ENOSPC.
    #[derive(Debug, Default)]
    struct ShortThenFull(std::sync::atomic::AtomicU32);
    impl sessionkit_atomic_fs::FileSystem for ShortThenFull {
        fn write(
            &self,
            file: &mut fs::File,
            path: &std::path::Path,
            buf: &[u8],
        ) -> std::io::Result<usize> {
            match self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
                0 => sessionkit_atomic_fs::RealFs.write(file, path, &buf[..buf.len() / 2]),
                _ => Err(std::io::Error::from_raw_os_error(28)),
            }
        }
    }
    let fs_ = Arc::new(ShortThenFull::default());
    let err = AtomicWriter::new()
        .file_system(fs_)
        .write(&target, &[1u8; 10_000])
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Write));
    assert_eq!(err.io_error().unwrap().raw_os_error(), Some(28));
    assert_eq!(fs::read(&target).unwrap(), b"old");
    assert_eq!(dir.names(), ["t"]);
}

#[test]
fn faults_later_in_a_retry_free_sequence_fire_at_the_nth_call() {
    // The second write of a durable sequence fails: the first replace succeeds whole, the
    // second leaves the first's contents.
    let dir = Scratch::new("nth");
    let target = dir.join("t");
    let fault = Arc::new(FaultFs::new(Call::Rename, 2, false, Fault::Errno(5)));
    let writer = {
        let mut w = AtomicWriter::new();
        w.file_system(fault.clone());
        w
    };
    writer.write(&target, b"first").unwrap();
    writer.write(&target, b"second").unwrap_err();
    writer.write(&target, b"third").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"third");
    assert_eq!(fault.fired(), 1);
    assert_eq!(dir.names(), ["t"]);
}

#[test]
fn append_faults_name_the_step_and_add_no_partial_record() {
    for (call, step) in [
        (Call::OpenAppend, Step::Open),
        (Call::Write, Step::Write),
        (Call::SyncData, Step::SyncData),
    ] {
        for (errno, name) in ERRNOS {
            let dir = Scratch::new("appendfault");
            let path = dir.join("s.jsonl");
            fs::write(&path, b"{\"n\":1}\n").unwrap();
            let fault = Arc::new(FaultFs::new(call, 1, true, Fault::Errno(errno)));
            let err = RecordAppender::new()
                .sync(true)
                .file_system(fault)
                .append(&path, b"{\"n\":2}")
                .unwrap_err();
            let what = format!("{call:?} {name}: {err}");
            assert_eq!(err.step(), Some(step), "{what}");
            if call == Call::SyncData {
                assert!(err.is_sync_failure(), "{what}");
            } else {
                assert_eq!(fs::read(&path).unwrap(), b"{\"n\":1}\n", "{what}");
            }
        }
    }
}

#[test]
fn short_append_is_undone_when_nobody_appended_after_it() {
    let dir = Scratch::new("shortappend");
    let path = dir.join("s.jsonl");
    fs::write(&path, b"{\"n\":1}\n").unwrap();
    let fault = Arc::new(FaultFs::new(Call::Write, 1, false, Fault::ShortWrite));
    let err = RecordAppender::new()
        .file_system(fault)
        .append(&path, b"{\"n\":2}")
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Write));
    assert!(
        err.io_error()
            .unwrap()
            .to_string()
            .contains("partial record was removed"),
        "{err:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), b"{\"n\":1}\n");
}

#[test]
fn atomic_only_has_no_sync_steps_to_fail() {
    let dir = Scratch::new("nosync");
    for call in [Call::SyncAll, Call::SyncDir] {
        let fault = Arc::new(FaultFs::new(call, 1, true, Fault::Errno(5)));
        AtomicWriter::new()
            .durability(Durability::AtomicOnly)
            .file_system(fault.clone())
            .write(dir.join("t"), b"x")
            .unwrap();
        assert_eq!(fault.fired(), 0);
    }
}
