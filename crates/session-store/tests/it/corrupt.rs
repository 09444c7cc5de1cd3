//! Corrupt inputs at the store's level: the snapshot and the journal truncated at every offset
//! and with flipped bytes. Never a panic, never a silent empty store, the bad file kept.

use std::fs;
#[cfg(unix)]
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;

use sessionkit_session_store::{Entry, ListQuery, Store};

use crate::util::Scratch;

/// A store with a compacted snapshot of three entries and a journal of three more records;
/// returns the snapshot's and the journal's bytes.
fn seed(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let store = Store::builder().auto_compact(false).open(path).unwrap();
    for (key, sid) in [
        ("agent:a:main", "s1"),
        ("cron:nightly", "s2"),
        ("hook:x", "s3"),
    ] {
        let entry = format!(r#"{{"sessionId":"{sid}","updatedAt":1700000000000,"label":"é\n"}}"#);
        store.upsert(key, Entry::parse(&entry).unwrap()).unwrap();
    }
    store.compact().unwrap();
    store
        .upsert(
            "late:1",
            Entry::parse(r#"{"sessionId":"s4","updatedAt":1}"#).unwrap(),
        )
        .unwrap();
    store.delete("hook:x").unwrap();
    store
        .upsert(
            "late:2",
            Entry::parse(r#"{"sessionId":"s5","updatedAt":2}"#).unwrap(),
        )
        .unwrap();
    let journal = store.journal_path().to_path_buf();
    drop(store);
    (fs::read(path).unwrap(), fs::read(journal).unwrap())
}

fn keys(store: &Store) -> Vec<String> {
    store
        .list(&ListQuery::all())
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn a_truncated_snapshot_fails_the_open_and_is_kept_or_quarantined() {
    let dir = Scratch::new("corrupt-snap");
    let path = dir.join("sessions.json");
    let (snapshot, journal) = seed(&path);
    let journal_path = dir.join("sessions.json.journal");
    // Every cut short of the whole file (a cut inside the final newline is still whole).
    let whole = snapshot.len() - 1;
    for cut in 0..whole {
        fs::write(&path, &snapshot[..cut]).unwrap();
        fs::write(&journal_path, &journal).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(err.is_corrupt(), "cut {cut}: {err}");
        assert_eq!(fs::read(&path).unwrap(), &snapshot[..cut], "cut {cut}");
        assert_eq!(fs::read(&journal_path).unwrap(), journal, "cut {cut}");
    }
    // With recovery the damaged snapshot goes aside, reported, and the journal still applies.
    for cut in [0, 1, whole / 2, whole - 1] {
        for f in dir.names() {
            if f.contains(".corrupt.") {
                fs::remove_file(dir.join(&f)).unwrap();
            }
        }
        fs::write(&path, &snapshot[..cut]).unwrap();
        fs::write(&journal_path, &journal).unwrap();
        let store = Store::builder().recover(true).open(&path).unwrap();
        let aside = &store.open_report().quarantined;
        assert_eq!(aside.len(), 1, "cut {cut}");
        assert_eq!(fs::read(&aside[0]).unwrap(), &snapshot[..cut], "cut {cut}");
        assert_eq!(keys(&store), ["late:1", "late:2"], "cut {cut}");
    }
}

#[test]
fn a_journal_cut_anywhere_opens_with_the_whole_records_before_the_cut() {
    let dir = Scratch::new("corrupt-journal-cut");
    let path = dir.join("sessions.json");
    let (snapshot, journal) = seed(&path);
    let journal_path = dir.join("sessions.json.journal");
    let line_ends: Vec<usize> = journal
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    for cut in 0..=journal.len() {
        fs::write(&path, &snapshot).unwrap();
        fs::write(&journal_path, &journal[..cut]).unwrap();
        let store = Store::open(&path).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let whole_lines = line_ends.iter().filter(|&&end| end <= cut).count();
        let expected: &[&str] = match whole_lines {
            // No header, or only the header: the snapshot alone.
            0 | 1 => &["agent:a:main", "cron:nightly", "hook:x"],
            2 => &["agent:a:main", "cron:nightly", "hook:x", "late:1"],
            3 => &["agent:a:main", "cron:nightly", "late:1"],
            _ => &["agent:a:main", "cron:nightly", "late:1", "late:2"],
        };
        assert_eq!(keys(&store), expected, "cut {cut}");
        let torn = cut
            - line_ends
                .iter()
                .rfind(|&&end| end <= cut)
                .copied()
                .unwrap_or(0);
        let reported = store.open_report().torn_tail_bytes.unwrap_or(0) as usize;
        assert_eq!(reported, torn, "cut {cut}");
        // The snapshot is never touched by a journal repair.
        assert_eq!(fs::read(&path).unwrap(), snapshot, "cut {cut}");
    }
}

#[test]
fn flipped_bytes_never_panic_and_never_open_silently_empty() {
    let dir = Scratch::new("corrupt-flip");
    let path = dir.join("sessions.json");
    let (snapshot, journal) = seed(&path);
    let journal_path = dir.join("sessions.json.journal");
    let mut failed = 0;
    for (which, original) in [("snapshot", &snapshot), ("journal", &journal)] {
        for at in 0..original.len() {
            let mut damaged = original.clone();
            damaged[at] ^= 0x5a;
            let (s, j) = if which == "snapshot" {
                (&damaged, &journal)
            } else {
                (&snapshot, &damaged)
            };
            fs::write(&path, s).unwrap();
            fs::write(&journal_path, j).unwrap();
            match Store::open(&path) {
                Ok(store) => {
                    // A flip inside a string can make another valid value; the store opens
                    // with what the files say, but never empty.
                    assert!(store.count().unwrap() > 0, "{which} byte {at}");
                }
                Err(e) => {
                    failed += 1;
                    assert!(
                        e.is_corrupt() || e.is_unsupported(),
                        "{which} byte {at}: {e}"
                    );
                    assert_eq!(&fs::read(&path).unwrap(), s, "{which} byte {at}");
                    assert_eq!(&fs::read(&journal_path).unwrap(), j, "{which} byte {at}");
                }
            }
        }
    }
    // Most flips break the JSON and are caught.
    assert!(failed > (snapshot.len() + journal.len()) / 2, "{failed}");
}

/// Sets the process's umask and puts the old one back on drop.
#[cfg(target_os = "linux")]
struct Umask(libc::mode_t);

#[cfg(target_os = "linux")]
impl Umask {
    fn set(mask: libc::mode_t) -> Umask {
        // SAFETY: `umask` only swaps the process's file creation mask; it cannot fail.
        #[allow(unsafe_code)]
        let old = unsafe { libc::umask(mask) };
        Umask(old)
    }
}

#[cfg(target_os = "linux")]
impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as in `Umask::set`.
        #[allow(unsafe_code)]
        unsafe {
            libc::umask(self.0);
        }
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_corrupt_journal_is_copied_aside_readable_by_its_owner_alone() {
    use std::os::unix::fs::PermissionsExt;

    // The common umask, which lets a plain create make a file that everyone may read. The
    // copy holds every session's entry, so it must stay as private as the journal is. (A
    // umask of 022 is also what other tests of this binary create their files with.)
    let _umask = Umask::set(0o022);
    let dir = Scratch::new("corrupt-journal-mode");
    let path = dir.join("sessions.json");
    let (_, journal) = seed(&path);
    let journal_path = dir.join("sessions.json.journal");
    let mut damaged = journal.clone();
    damaged.extend_from_slice(b"not a record\n");
    fs::write(&journal_path, &damaged).unwrap();
    assert_eq!(
        fs::metadata(&journal_path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let store = Store::builder().recover(true).open(&path).unwrap();
    let aside = &store.open_report().quarantined;
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(
        aside[0].to_string_lossy().contains(".journal.corrupt."),
        "{aside:?}"
    );
    assert_eq!(fs::read(&aside[0]).unwrap(), damaged);
    let mode = fs::metadata(&aside[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the copy's mode is {mode:o}");
}

/// A snapshot that is gone while the journal beside it was written by a compaction is a lost
/// snapshot, not an empty registry: the open, a read-only load and a reload in another handle
/// refuse it; with `recover` the open goes on with the journal's entries and says so. The
/// journal is left as it was.
#[test]
fn a_lost_snapshot_behind_a_compacted_journal_is_an_error_not_an_empty_store() {
    let dir = Scratch::new("lost-snapshot");
    let path = dir.join("sessions.json");
    let (_, journal) = seed(&path);
    let journal_path = dir.join("sessions.json.journal");
    fs::remove_file(&path).unwrap();

    let err = Store::builder().open(&path).unwrap_err();
    assert!(
        matches!(err, sessionkit_session_store::Error::MissingSnapshot { .. }),
        "{err}"
    );
    assert!(err.is_corrupt(), "{err}");
    assert_eq!(err.path(), Some(path.as_path()));
    let err = sessionkit_session_store::load_store(&path).unwrap_err();
    assert!(
        matches!(err, sessionkit_session_store::Error::MissingSnapshot { .. }),
        "{err}"
    );
    assert_eq!(fs::read(&journal_path).unwrap(), journal);
    assert!(!path.exists());

    let store = Store::builder().recover(true).open(&path).unwrap();
    assert!(store.open_report().snapshot_lost);
    assert!(store.open_report().quarantined.is_empty());
    assert_eq!(keys(&store), ["late:1", "late:2"]);
    // An empty snapshot took the lost one's place: every process reads what this one does.
    assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
    let other = Store::builder().open(&path).unwrap();
    assert!(!other.open_report().snapshot_lost);
    assert_eq!(keys(&other), ["late:1", "late:2"]);

    // A fence over a failed batch is left as it is by an open that fails for the lost
    // snapshot.
    drop((store, other));
    fs::remove_file(&path).unwrap();
    let (damaged, fence_path, fence) = fence_a_batch(&journal_path, b"");
    assert!(Store::builder().open(&path).is_err());
    assert_eq!(fs::read(&journal_path).unwrap(), damaged);
    assert_eq!(fs::read_to_string(&fence_path).unwrap(), fence);
}

/// Appends `before` and then one record of a failed batch to the journal at `journal_path`,
/// with a fence over the batch; returns the journal's bytes, the fence's path and its text.
fn fence_a_batch(journal_path: &Path, before: &[u8]) -> (Vec<u8>, std::path::PathBuf, String) {
    let mut bytes = fs::read(journal_path).unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(bytes.split(|&b| b == b'\n').next().unwrap()).unwrap();
    let epoch = header["epoch"].as_u64().unwrap();
    bytes.extend_from_slice(before);
    let offset = bytes.len();
    let writer = "00000000000000aa";
    bytes.extend_from_slice(
        format!("{{\"seq\":1,\"writer\":\"{writer}\",\"op\":\"delete\",\"key\":\"late:1\"}}\n")
            .as_bytes(),
    );
    fs::write(journal_path, &bytes).unwrap();
    let mut fence_path = journal_path.as_os_str().to_owned();
    fence_path.push(".fence");
    let fence_path = std::path::PathBuf::from(fence_path);
    let fence = format!(
        "{{\"sessionkitFence\":1,\"epoch\":{epoch},\"offset\":{offset},\"writer\":\"{writer}\",\"seq\":1}}"
    );
    fs::write(&fence_path, &fence).unwrap();
    (bytes, fence_path, fence)
}

/// With `recover`, a corrupt snapshot set aside leaves an empty one in its place, so that
/// every process, with `recover` or without, reads the journal's entries over nothing.
#[test]
fn a_quarantined_snapshot_leaves_an_empty_one_for_every_process() {
    let dir = Scratch::new("quarantined-snapshot");
    let path = dir.join("sessions.json");
    let (snapshot, _) = seed(&path);
    fs::write(&path, &snapshot[..snapshot.len() / 2]).unwrap();
    let store = Store::builder().recover(true).open(&path).unwrap();
    assert_eq!(store.open_report().quarantined.len(), 1);
    assert!(!store.open_report().snapshot_lost);
    assert_eq!(keys(&store), ["late:1", "late:2"]);
    assert_eq!(fs::read_to_string(&path).unwrap(), "{}\n");
    let other = Store::builder().open(&path).unwrap();
    assert_eq!(keys(&other), ["late:1", "late:2"]);
    let loaded = sessionkit_session_store::load_store(&path).unwrap();
    assert_eq!(loaded.state.len(), 2);
}

/// The same loss found by a handle that reloads after compactions it did not follow.
#[test]
fn a_reload_refuses_a_lost_snapshot() {
    let dir = Scratch::new("lost-snapshot-reload");
    let path = dir.join("sessions.json");
    seed(&path);
    let reader = Store::builder().auto_compact(false).open(&path).unwrap();
    let writer = Store::builder().auto_compact(false).open(&path).unwrap();
    // Two compactions: the reader's journal is not the new journal's base, so it reloads.
    writer.compact().unwrap();
    writer.compact().unwrap();
    fs::remove_file(&path).unwrap();
    let err = reader.get("late:1").unwrap_err();
    assert!(
        matches!(err, sessionkit_session_store::Error::MissingSnapshot { .. }),
        "{err}"
    );
    assert!(Store::builder().open(&path).is_err());
}

/// An open that fails on a corrupt journal leaves the journal and its fence as they were: the
/// failed batch behind the fence is cut only once the rest of the journal has loaded.
#[test]
fn a_failed_open_leaves_a_fenced_batch_and_its_fence_in_place() {
    let dir = Scratch::new("corrupt-with-fence");
    let path = dir.join("sessions.json");
    seed(&path);
    let journal_path = dir.join("sessions.json.journal");
    let (damaged, fence_path, fence) = fence_a_batch(&journal_path, b"not a record\n");

    let err = Store::builder().open(&path).unwrap_err();
    assert!(err.is_corrupt(), "{err}");
    assert_eq!(fs::read(&journal_path).unwrap(), damaged);
    assert_eq!(fs::read_to_string(&fence_path).unwrap(), fence);

    // With `recover`, the records before the damage stay, the journal goes aside whole (the
    // fenced batch too), and the batch and the fence go.
    let store = Store::builder().recover(true).open(&path).unwrap();
    assert_eq!(
        keys(&store),
        ["agent:a:main", "cron:nightly", "late:1", "late:2"]
    );
    let aside = &store.open_report().quarantined;
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(fs::read(&aside[0]).unwrap(), damaged);
    assert!(store.open_report().fenced_batch_bytes.is_some());
    assert!(!fence_path.exists());
}

/// With `recover`, an open that fails on what it finds sets nothing aside: a corrupt snapshot
/// and an unreadable fence beside a journal of a later format version stay as they were, so
/// that the next open (by a newer version, say) sees what this one saw.
#[test]
fn a_failed_recovering_open_sets_nothing_aside() {
    let dir = Scratch::new("failed-recover");
    let path = dir.join("sessions.json");
    let (snapshot, journal) = seed(&path);
    let journal_path = dir.join("sessions.json.journal");
    let fence_path = dir.join("sessions.json.journal.fence");
    let damaged = &snapshot[..snapshot.len() / 2];
    fs::write(&path, damaged).unwrap();
    fs::write(&fence_path, b"not a fence").unwrap();
    let text = String::from_utf8(journal).unwrap();
    let later = text.replacen("{\"sessionkitJournal\":1,", "{\"sessionkitJournal\":2,", 1);
    assert_ne!(later, text);
    fs::write(&journal_path, &later).unwrap();
    let before = dir.names();

    let err = Store::builder().recover(true).open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            sessionkit_session_store::Error::UnsupportedJournal { .. }
        ),
        "{err}"
    );
    assert_eq!(dir.names(), before);
    assert_eq!(fs::read(&path).unwrap(), damaged);
    assert_eq!(fs::read(&fence_path).unwrap(), b"not a fence");
    assert_eq!(fs::read_to_string(&journal_path).unwrap(), later);

    // With the journal readable again, the same open sets both aside and goes on.
    fs::write(&journal_path, &text).unwrap();
    let store = Store::builder().recover(true).open(&path).unwrap();
    assert_eq!(store.open_report().quarantined.len(), 2);
    assert_eq!(keys(&store), ["late:1", "late:2"]);
    assert!(!fence_path.exists());
}

/// A FIFO in place of the snapshot, the journal or the fence is refused with an error naming
/// it; opening or reading one would wait for a peer for ever.
#[cfg(unix)]
#[test]
fn a_fifo_in_place_of_a_store_file_is_refused_not_waited_on() {
    use crate::failures::chain;

    for file in [
        "sessions.json",
        "sessions.json.journal",
        "sessions.json.journal.fence",
    ] {
        let dir = Scratch::new("fifo");
        let path = dir.join("sessions.json");
        seed(&path);
        let fifo = dir.join(file);
        let _ = fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo {}", fifo.display());

        for recover in [false, true] {
            let err = Store::builder().recover(recover).open(&path).unwrap_err();
            let text = chain(&err);
            assert!(
                text.contains("not a regular file") && text.contains(file),
                "{file}, recover {recover}: {text}"
            );
        }
        let err = sessionkit_session_store::load_store(&path).unwrap_err();
        let text = chain(&err);
        assert!(text.contains("not a regular file"), "{file}: {text}");
        assert!(
            fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
            "{file} is left as it was"
        );
    }
}
