//! Atomic replace: modes, parents, symlinks, directories, and the exact order of calls.

use std::fs;
use std::os::unix::fs::symlink;
use std::sync::Arc;

use sessionkit_atomic_fs::{AtomicWriter, Durability, Error, Refusal, Step, is_temp_file_name};

use crate::util::{Call, RecordingFs, Scratch, mode_of};

#[test]
fn new_file_gets_0600_and_exact_contents() {
    let dir = Scratch::new("new");
    let target = dir.join("sessions.json");
    sessionkit_atomic_fs::write(&target, b"\x00binary\xffdata").unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"\x00binary\xffdata");
    assert_eq!(mode_of(&target), 0o600);
    assert_eq!(dir.names(), ["sessions.json"]);
}

#[test]
fn explicit_mode_is_set_exactly_despite_umask() {
    let dir = Scratch::new("mode");
    let target = dir.join("shared.json");
    AtomicWriter::new()
        .mode(0o664)
        .write(&target, b"x")
        .unwrap();
    assert_eq!(mode_of(&target), 0o664);
    AtomicWriter::new()
        .mode(0o640)
        .write(&target, b"y")
        .unwrap();
    assert_eq!(mode_of(&target), 0o640);
}

#[test]
fn existing_target_keeps_its_mode() {
    let dir = Scratch::new("keep");
    let target = dir.join("t");
    fs::write(&target, b"old").unwrap();
    fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    sessionkit_atomic_fs::write(&target, b"new").unwrap();
    assert_eq!(mode_of(&target), 0o644);
    assert_eq!(fs::read(&target).unwrap(), b"new");
}

#[test]
fn missing_parent_is_refused_unless_asked() {
    let dir = Scratch::new("parent");
    let target = dir.join("a/b/c.json");
    let err = sessionkit_atomic_fs::write(&target, b"{}").unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::ParentMissing));
    assert_eq!(err.path(), target);
    assert!(
        err.to_string().contains("parent directory does not exist"),
        "{err}"
    );
    assert!(!dir.join("a").exists());

    AtomicWriter::new()
        .create_parents(true)
        .write(&target, b"{}")
        .unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"{}");
    assert_eq!(mode_of(&dir.join("a")) & 0o700, 0o700);
    assert_eq!(
        mode_of(&dir.join("a")) & 0o077,
        0,
        "new directories are private"
    );
}

#[test]
fn directory_target_is_a_clear_error() {
    let dir = Scratch::new("dir");
    fs::create_dir(dir.join("d")).unwrap();
    let err = sessionkit_atomic_fs::write(dir.join("d"), b"x").unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::IsDirectory));
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert_eq!(dir.names(), ["d"]);
}

#[test]
fn path_without_file_name_is_refused() {
    for path in ["", "/", "a/.."] {
        let err = sessionkit_atomic_fs::write(path, b"x").unwrap_err();
        assert_eq!(err.refusal(), Some(Refusal::NoFileName), "{path:?}: {err}");
    }
}

#[test]
fn fifo_target_is_refused() {
    let dir = Scratch::new("fifo");
    let fifo = dir.join("p");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    let err = sessionkit_atomic_fs::write(&fifo, b"x").unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::NotRegularFile));
}

#[test]
fn symlink_is_followed_one_hop_and_kept() {
    let dir = Scratch::new("link");
    fs::create_dir(dir.join("real")).unwrap();
    fs::write(dir.join("real/sessions.json"), b"old").unwrap();
    symlink("real/sessions.json", dir.join("sessions.json")).unwrap();

    sessionkit_atomic_fs::write(dir.join("sessions.json"), b"new").unwrap();

    assert!(
        fs::symlink_metadata(dir.join("sessions.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(dir.join("real/sessions.json")).unwrap(), b"new");
    // The temp file lived beside the real file, so the rename never crossed directories.
    assert_eq!(crate::util::names_in(&dir.join("real")), ["sessions.json"]);
}

#[test]
fn dangling_symlink_creates_its_target() {
    let dir = Scratch::new("dangling");
    symlink("target.json", dir.join("link.json")).unwrap();
    sessionkit_atomic_fs::write(dir.join("link.json"), b"{}").unwrap();
    assert_eq!(fs::read(dir.join("target.json")).unwrap(), b"{}");
    assert!(
        fs::symlink_metadata(dir.join("link.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn symlink_chain_is_refused() {
    let dir = Scratch::new("chain");
    fs::write(dir.join("c"), b"old").unwrap();
    symlink("c", dir.join("b")).unwrap();
    symlink("b", dir.join("a")).unwrap();
    let err = sessionkit_atomic_fs::write(dir.join("a"), b"new").unwrap_err();
    assert_eq!(err.refusal(), Some(Refusal::SymlinkChain));
    assert_eq!(fs::read(dir.join("c")).unwrap(), b"old");
}

#[test]
fn durable_protocol_order_is_exact() {
    let dir = Scratch::new("order");
    let target = dir.join("t");
    let rec = Arc::new(RecordingFs::default());
    AtomicWriter::new()
        .file_system(rec.clone())
        .write(&target, b"hello")
        .unwrap();
    assert_eq!(
        rec.calls(),
        [
            Call::Lstat,
            Call::CreateNew,
            Call::Write,
            Call::SyncAll,
            Call::Rename,
            Call::SyncDir
        ]
    );
    let calls = rec.calls_with_paths();
    let temp = &calls[1].1;
    assert_eq!(
        temp.parent(),
        Some(dir.path()),
        "temp file beside the target"
    );
    assert!(is_temp_file_name(temp.file_name().unwrap()), "{temp:?}");
    assert_eq!(calls[3].1, *temp, "the temp file is synced, not the target");
    assert_eq!(
        calls[5].1,
        dir.path(),
        "the directory is synced after the rename"
    );
}

#[test]
fn atomic_only_skips_exactly_the_two_syncs() {
    let dir = Scratch::new("order2");
    let rec = Arc::new(RecordingFs::default());
    AtomicWriter::new()
        .durability(Durability::AtomicOnly)
        .file_system(rec.clone())
        .write(dir.join("t"), b"hello")
        .unwrap();
    assert_eq!(
        rec.calls(),
        [Call::Lstat, Call::CreateNew, Call::Write, Call::Rename]
    );
}

#[test]
fn created_parents_are_synced_in_durable_mode() {
    let dir = Scratch::new("order3");
    let rec = Arc::new(RecordingFs::default());
    AtomicWriter::new()
        .create_parents(true)
        .file_system(rec.clone())
        .write(dir.join("x/y/t"), b"1")
        .unwrap();
    let calls = rec.calls_with_paths();
    let made: Vec<_> = calls
        .iter()
        .filter(|c| c.0 == Call::CreateDir)
        .map(|c| c.1.clone())
        .collect();
    assert_eq!(made, [dir.join("x"), dir.join("x/y")]);
    let synced: Vec<_> = calls
        .iter()
        .filter(|c| c.0 == Call::SyncDir)
        .map(|c| c.1.clone())
        .collect();
    assert_eq!(
        synced,
        [dir.path().to_path_buf(), dir.join("x"), dir.join("x/y")]
    );
}

#[test]
fn prepare_then_discard_or_drop_leaves_target_alone() {
    let dir = Scratch::new("pending");
    let target = dir.join("t");
    fs::write(&target, b"old").unwrap();
    let writer = AtomicWriter::new();

    let pending = writer.prepare(&target, b"new").unwrap();
    assert!(pending.temp_path().exists());
    assert_eq!(pending.target(), target);
    pending.discard().unwrap();
    assert_eq!(dir.names(), ["t"]);

    drop(writer.prepare(&target, b"new").unwrap());
    assert_eq!(dir.names(), ["t"]);
    assert_eq!(fs::read(&target).unwrap(), b"old");

    writer.prepare(&target, b"new").unwrap().commit().unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"new");
    assert_eq!(dir.names(), ["t"]);
}

/// A file system that plants a symlink at the first temp name it is asked to create, as an
/// attacker racing the writer would.
#[derive(Debug, Default)]
struct PlantLink {
    planted: std::sync::Mutex<Option<std::path::PathBuf>>,
    victim: std::path::PathBuf,
}

impl sessionkit_atomic_fs::FileSystem for PlantLink {
    fn create_new(&self, path: &std::path::Path, mode: u32) -> std::io::Result<fs::File> {
        let mut planted = self.planted.lock().unwrap();
        if planted.is_none() {
            symlink(&self.victim, path).unwrap();
            *planted = Some(path.to_path_buf());
        }
        sessionkit_atomic_fs::RealFs.create_new(path, mode)
    }
}

#[test]
fn planted_symlink_at_temp_name_is_never_followed() {
    let dir = Scratch::new("plant");
    let victim = dir.join("victim");
    fs::write(&victim, b"precious").unwrap();
    let fs_ = Arc::new(PlantLink {
        planted: Default::default(),
        victim: victim.clone(),
    });
    AtomicWriter::new()
        .file_system(fs_.clone())
        .write(dir.join("t"), b"data")
        .unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert_eq!(fs::read(dir.join("t")).unwrap(), b"data");
    let planted = fs_.planted.lock().unwrap().clone().unwrap();
    assert!(
        fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn error_messages_name_step_and_paths() {
    let dir = Scratch::new("msg");
    let target = dir.join("t");
    let fault = Arc::new(crate::util::FaultFs::new(
        Call::Rename,
        1,
        false,
        crate::util::Fault::Errno(5),
    ));
    let err = AtomicWriter::new()
        .file_system(fault)
        .write(&target, b"x")
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("failed to replace `{}`", target.display())),
        "{msg}"
    );
    assert!(msg.contains("rename"), "{msg}");
    assert!(msg.contains(".sktmp`"), "names the temp file: {msg}");
    assert_eq!(err.step(), Some(Step::Rename));
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[test]
fn prepare_with_writes_the_pieces_and_a_failing_fill_leaves_nothing() {
    let dir = Scratch::new("prepare-with");
    let target = dir.join("big.json");
    fs::write(&target, b"old").unwrap();
    let writer = AtomicWriter::new();
    let pending = writer
        .prepare_with(&target, |out| {
            for piece in [&b"{"[..], b"\"a\":", b"1}"] {
                out.write_all(piece)?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"old");
    pending.commit().unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"{\"a\":1}");

    let err = writer
        .prepare_with(&target, |out| {
            out.write_all(b"half")?;
            Err(std::io::Error::other("the encoder gave up"))
        })
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::Write), "{err}");
    assert_eq!(fs::read(&target).unwrap(), b"{\"a\":1}");
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.iter().all(|n| !is_temp_file_name(n)), "{names:?}");
}
