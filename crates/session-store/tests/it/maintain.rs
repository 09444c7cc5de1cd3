//! Maintenance: the cap with active and protected entries, pruning, transcripts of evicted
//! sessions, archives past retention, orphans, the disk budget, warn mode, and the background
//! trigger. Every outcome is asserted exactly.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sessionkit_session_store::{
    Clock, Entry, Maintenance, MaintenanceMode, ManualClock, Store, TranscriptDisposal,
};
use sessionkit_test_support::{
    CHECKED_AS_NOBODY, Mount, file_names, run_as_nobody, set_mode, set_modified_ago,
    why_not_as_nobody,
};

use crate::util::Scratch;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An entry for session `sid`, last updated `ago` before now.
fn entry(sid: &str, ago: Duration, extra: &str) -> Entry {
    Entry::parse(&format!(
        r#"{{"sessionId":"{sid}","updatedAt":{}{extra}}}"#,
        now_ms() - ago.as_millis() as i64
    ))
    .unwrap()
}

/// Writes a file and sets its modification time `ago` in the past.
fn plant(path: &Path, bytes: usize, ago: Duration) {
    fs::write(path, vec![b'x'; bytes]).unwrap();
    set_modified_ago(path, ago);
}

/// The forms of time an archive's name ends with.
#[derive(Clone, Copy)]
enum Form {
    /// This crate's: `20261121T073012.123Z`.
    Ours,
    /// OpenClaw's: `2026-11-21T07-30-12.123Z`.
    OpenClaw,
    /// Milliseconds since the epoch.
    Millis,
}

/// The time `ago` before now in `form`.
fn stamp(ago: Duration, form: Form) -> String {
    let ms = now_ms() - ago.as_millis() as i64;
    let iso = sessionkit_write_lock::format_iso8601_ms(ms);
    match form {
        Form::Ours => iso.replace(['-', ':'], ""),
        Form::OpenClaw => iso.replace(':', "-"),
        Form::Millis => ms.to_string(),
    }
}

/// Entries `k0`, `k1`, ... for sessions `s0`, `s1`, ..., updated 10 minutes ago and a minute
/// later each, each with a transcript of `bytes` bytes.
fn sessions_with_transcripts(store: &Store, dir: &Scratch, n: u64, bytes: usize) {
    for i in 0..n {
        let sid = format!("s{i}");
        store
            .upsert(
                format!("k{i}"),
                entry(&sid, Duration::from_secs(600 - i * 60), ""),
            )
            .unwrap();
        plant(&dir.join(format!("{sid}.jsonl")), bytes, Duration::ZERO);
    }
}

/// Maintenance that runs only when asked, so tests see each pass.
fn on_demand() -> Maintenance {
    Maintenance::new().background(false).interval(None)
}

fn open(dir: &Scratch, m: Maintenance) -> Store {
    open_in(dir.path(), m)
}

fn open_in(dir: &Path, m: Maintenance) -> Store {
    Store::builder()
        .maintenance(m)
        .auto_compact(false)
        .open(dir.join("sessions.json"))
        .unwrap()
}

/// A pass writes its evictions in batches of at most 256 (or the store's `max_batch`), so the
/// writer's own batches go in between rather than wait for all of them.
#[test]
fn a_pass_evicts_in_batches_of_bounded_size() {
    for (max_batch, batches) in [(None, 3), (Some(100), 6)] {
        let dir = Scratch::new("evict-batches");
        let mut builder = Store::builder();
        builder
            .maintenance(on_demand().max_entries(Some(100)))
            .auto_compact(false);
        if let Some(max) = max_batch {
            builder.max_batch(max);
        }
        let store = builder.open(dir.join("sessions.json")).unwrap();
        for i in 0..700u64 {
            store
                .upsert(
                    format!("k{i:03}"),
                    entry(&format!("s{i}"), Duration::from_secs(1000 - i), ""),
                )
                .unwrap();
        }
        let before = store.counters();
        let report = store.maintain(false).unwrap();
        let after = store.counters();
        assert_eq!(report.capped.len(), 600);
        assert_eq!(report.capped.first().map(String::as_str), Some("k000"));
        assert_eq!(after.updates - before.updates, 600);
        assert_eq!(
            after.batches - before.batches,
            batches,
            "max_batch {max_batch:?}"
        );
        assert_eq!(store.count().unwrap(), 100);
    }
}

#[test]
fn the_cap_evicts_the_oldest_with_hysteresis_and_spares_active_and_protected() {
    let dir = Scratch::new("cap");
    let store = open(
        &dir,
        on_demand()
            .max_entries(Some(10))
            .protect(|key, _| key.starts_with("keep:")),
    );
    // k00 is the oldest; k00 is marked active here, k01 runs elsewhere, keep:02 is protected.
    for i in 0..11 {
        let key = if i == 2 {
            "keep:02".to_owned()
        } else {
            format!("k{i:02}")
        };
        let extra = if i == 1 { r#","status":"running""# } else { "" };
        store
            .upsert(
                key,
                entry(&format!("s{i}"), Duration::from_secs(100 - i), extra),
            )
            .unwrap();
    }
    let _active = store.mark_active("k00");
    // 11 entries: within the slack of 1, so nothing happens.
    let report = store.maintain(false).unwrap();
    assert!(report.is_empty(), "{report:?}");
    assert_eq!(store.count().unwrap(), 11);

    store
        .upsert("k11", entry("s11", Duration::from_secs(1), ""))
        .unwrap();
    let report = store.maintain(false).unwrap();
    // 12 entries, cap 10: the two oldest that may go.
    assert_eq!(report.capped, ["k03", "k04"]);
    assert_eq!(report.kept_protected, 3);
    assert_eq!(store.count().unwrap(), 10);
    for kept in ["k00", "k01", "keep:02"] {
        assert!(store.get(kept).unwrap().is_some(), "{kept}");
    }
    // Their transcripts did not exist: nothing else happened.
    assert!(
        report.archived.is_empty() && report.deleted.is_empty(),
        "{report:?}"
    );
}

#[test]
fn protection_cannot_defeat_the_cap() {
    let dir = Scratch::new("protect-all");
    let store = open(&dir, on_demand().max_entries(Some(30)).protect(|_, _| true));
    for i in 0..40 {
        store
            .upsert(
                format!("k{i:02}"),
                entry("s", Duration::from_secs(100 - i), ""),
            )
            .unwrap();
    }
    let report = store.maintain(false).unwrap();
    // Everything is protected, but protection may keep at most 30 - min(25, 30) = 5 entries,
    // so the cap still holds: the oldest protected entries go.
    assert_eq!(report.capped.len(), 10, "{report:?}");
    assert_eq!(report.capped[0], "k00");
    assert_eq!(store.count().unwrap(), 30);
}

/// Protected entries that fill the cap do not crowd out new sessions: protection keeps at
/// most the cap minus min(25, cap / 2) entries, and past that the oldest protected entries go
/// rather than the newest sessions.
#[test]
fn protected_entries_that_fill_the_cap_leave_room_for_new_sessions() {
    let dir = Scratch::new("protect-room");
    // A cap of 40 (slack 1) keeps room for 20 unprotected entries.
    let store = open(
        &dir,
        on_demand()
            .max_entries(Some(40))
            .protect(|key, _| key.starts_with('p')),
    );
    let mut age = 1000;
    let mut add = |store: &Store, key: String| {
        age -= 1;
        store
            .upsert(key, entry("s", Duration::from_secs(age), ""))
            .unwrap();
    };
    for i in 0..40 {
        add(&store, format!("p{i:02}"));
    }
    // Five new sessions, newer than every protected entry: the oldest protected go, not them.
    for i in 0..5 {
        add(&store, format!("u{i:02}"));
    }
    let report = store.maintain(false).unwrap();
    assert_eq!(report.capped, ["p00", "p01", "p02", "p03", "p04"]);
    assert_eq!(report.kept_protected, 0, "{report:?}");
    let kinds = |store: &Store| {
        let all = store
            .list(&sessionkit_session_store::ListQuery::default())
            .unwrap();
        let protected = all.iter().filter(|(k, _)| k.starts_with('p')).count();
        (protected, all.len() - protected)
    };
    assert_eq!(kinds(&store), (35, 5));

    // 21 more: the oldest unprotected go down to the room of 20, then protected ones down to
    // their bound of 20.
    for i in 5..26 {
        add(&store, format!("u{i:02}"));
    }
    let report = store.maintain(false).unwrap();
    let protected: Vec<String> = (5..20).map(|i| format!("p{i:02}")).collect();
    let unprotected: Vec<String> = (0..6).map(|i| format!("u{i:02}")).collect();
    assert_eq!(report.capped, [protected, unprotected].concat());
    assert_eq!(kinds(&store), (20, 20));

    // 30 more: protection is within its bound, so only unprotected entries go, oldest first,
    // past the 20 protected ones, which are older.
    for i in 26..56 {
        add(&store, format!("u{i:02}"));
    }
    let report = store.maintain(false).unwrap();
    let unprotected: Vec<String> = (6..36).map(|i| format!("u{i:02}")).collect();
    assert_eq!(report.capped, unprotected);
    assert_eq!(report.kept_protected, 20, "{report:?}");
    assert_eq!(kinds(&store), (20, 20));
}

#[test]
fn pruning_drops_old_entries_but_not_protected_or_undated_ones() {
    let dir = Scratch::new("prune");
    let store = open(&dir, on_demand().protect(|key, _| key == "agent:main"));
    store.upsert("old", entry("s1", 31 * DAY, "")).unwrap();
    store
        .upsert("agent:main", entry("s2", 40 * DAY, ""))
        .unwrap();
    store.upsert("fresh", entry("s3", 29 * DAY, "")).unwrap();
    store
        .upsert("undated", Entry::parse(r#"{"sessionId":"s4"}"#).unwrap())
        .unwrap();
    let report = store.maintain(false).unwrap();
    assert_eq!(report.pruned, ["old"]);
    assert_eq!(store.count().unwrap(), 3);
}

#[test]
fn transcripts_of_evicted_sessions_are_archived_unless_still_referenced() {
    let dir = Scratch::new("transcripts");
    let store = open(&dir, on_demand());
    store.upsert("a", entry("sa", 40 * DAY, "")).unwrap();
    // Two entries share session sb; only one is pruned.
    store.upsert("b1", entry("sb", 40 * DAY, "")).unwrap();
    store.upsert("b2", entry("sb", DAY, "")).unwrap();
    store.upsert("c", entry("sc", 40 * DAY, "")).unwrap();
    plant(&dir.join("sa.jsonl"), 10, Duration::ZERO);
    plant(&dir.join("sa-topic-7.jsonl"), 10, Duration::ZERO);
    plant(&dir.join("sb.jsonl"), 10, Duration::ZERO);
    // The write lock's counters: the evicted session's goes with its transcript, a live
    // session's stays, and one whose transcript is long gone is cleaned up.
    plant(&dir.join("sa.jsonl.lock.gen"), 21, Duration::ZERO);
    plant(&dir.join("sb.jsonl.lock.gen"), 21, Duration::ZERO);
    plant(&dir.join("gone.jsonl.lock.gen"), 21, Duration::ZERO);
    let report = store.maintain(false).unwrap();
    assert_eq!(report.pruned, ["a", "b1", "c"]);
    let mut archived: Vec<String> = report
        .archived
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    archived.sort();
    assert_eq!(archived, ["sa-topic-7.jsonl", "sa.jsonl"]);
    let names = dir.names();
    assert!(names.contains(&"sb.jsonl".to_owned()), "{names:?}");
    assert!(!names.contains(&"sa.jsonl".to_owned()), "{names:?}");
    assert!(names.contains(&"sb.jsonl.lock.gen".to_owned()), "{names:?}");
    assert!(
        !names.contains(&"sa.jsonl.lock.gen".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"gone.jsonl.lock.gen".to_owned()),
        "{names:?}"
    );
    let archives: Vec<&String> = names.iter().filter(|n| n.contains(".deleted.")).collect();
    assert_eq!(archives.len(), 2, "{names:?}");
    assert!(archives.iter().all(|n| n.starts_with("sa")), "{names:?}");
}

/// A pass renames and removes files in runs, in one turn of their directory per run of up to
/// 32 files (`sessionkit_atomic_fs::in_directory_turn`): the threads that create transcripts
/// and their locks take that turn all the time, and a pass that queued for it once per file,
/// twice with the lock counter, fell far behind its cap under load.
#[test]
fn a_pass_archives_in_one_directory_turn_per_32_files() {
    let dir = Scratch::new("turns");
    let store = open(&dir, on_demand().max_entries(Some(10)));
    for i in 0..80u64 {
        store
            .upsert(
                format!("k{i:02}"),
                entry(&format!("s{i}"), Duration::from_secs(1000 - i), ""),
            )
            .unwrap();
        plant(&dir.join(format!("s{i}.jsonl")), 10, Duration::ZERO);
        plant(
            &dir.join(format!("s{i}.jsonl.lock.gen")),
            21,
            Duration::ZERO,
        );
    }
    let before = sessionkit_atomic_fs::directory_turns_taken();
    let report = store.maintain(false).unwrap();
    // 70 transcripts and their counters: runs of 32, 32 and 6.
    assert_eq!(sessionkit_atomic_fs::directory_turns_taken() - before, 3);
    assert_eq!(report.capped.len(), 70);
    assert_eq!(report.archived.len(), 70);
    let names = dir.names();
    let count = |f: &dyn Fn(&str) -> bool| names.iter().filter(|n| f(n)).count();
    assert_eq!(count(&|n| n.contains(".jsonl.deleted.")), 70, "{names:?}");
    assert_eq!(count(&|n| n.ends_with(".jsonl")), 10, "{names:?}");
    assert_eq!(count(&|n| n.ends_with(".lock.gen")), 10, "{names:?}");
    for i in 70..80 {
        assert!(names.contains(&format!("s{i}.jsonl")), "{names:?}");
        assert!(names.contains(&format!("s{i}.jsonl.lock.gen")), "{names:?}");
    }
}

/// An archive's name is never one that exists: a transcript archived in the same millisecond
/// as an earlier archive of the same name (a clock set back, a session id used again) takes
/// the next free millisecond, and the earlier archive keeps its bytes.
#[test]
fn archiving_never_replaces_an_archive_of_the_same_name() {
    let dir = Scratch::new("archive-clash");
    let (store, clock) = open_with_clock(&dir, on_demand());
    let name = |at: SystemTime| {
        let iso = sessionkit_write_lock::format_iso8601_ms(
            at.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64,
        );
        format!("s1.jsonl.deleted.{}", iso.replace(['-', ':'], ""))
    };
    let now = clock.now();
    let later = now + Duration::from_millis(1);
    fs::write(dir.join(name(now)), b"the first archive").unwrap();
    fs::write(dir.join(name(later)), b"the second archive").unwrap();
    // Pruned for age, so its transcript is archived at once.
    store.upsert("k", entry("s1", 40 * DAY, "")).unwrap();
    plant(&dir.join("s1.jsonl"), 10, Duration::ZERO);
    let report = store.maintain(false).unwrap();
    assert_eq!(report.pruned, ["k"]);
    assert_eq!(report.archived, [dir.join("s1.jsonl")], "{report:?}");
    assert_eq!(fs::read(dir.join(name(now))).unwrap(), b"the first archive");
    assert_eq!(
        fs::read(dir.join(name(later))).unwrap(),
        b"the second archive"
    );
    let third = name(now + Duration::from_millis(2));
    assert_eq!(fs::read(dir.join(&third)).unwrap(), vec![b'x'; 10]);
    let mut archives: Vec<String> = dir
        .names()
        .into_iter()
        .filter(|n| n.contains(".deleted."))
        .collect();
    archives.sort();
    assert_eq!(archives, [name(now), name(later), third]);
}

/// An orphan from the future that belongs to another user keeps its time, and that is no
/// error: setting a file's times to a given value takes owning it (`EPERM` otherwise), and
/// a pass that failed on it would fail on every pass. The pass runs as user 65534 in its own
/// directory, against root's file; only root can set that up.
#[test]
fn another_users_orphan_from_the_future_keeps_its_time_and_is_no_error() {
    const TEST: &str =
        "maintain::another_users_orphan_from_the_future_keeps_its_time_and_is_no_error";
    const CHILD: &str = "SESSIONKIT_TEST_RESTAMP_DIR";
    if let Some(dir) = std::env::var_os(CHILD) {
        let store = open_in(Path::new(&dir), on_demand());
        let report = store.maintain(false).unwrap();
        assert!(report.is_empty() && report.errors.is_empty(), "{report:?}");
        println!("{CHECKED_AS_NOBODY}");
        return;
    }
    if let Some(why) = why_not_as_nobody() {
        println!("SKIP: another user's file from the future: {why}");
        return;
    }
    let dir = Scratch::new("future-other-user");
    let orphan = dir.join("orphan.jsonl");
    fs::write(&orphan, b"{}\n").unwrap();
    // Writable by all, so that the pass's open for writing works and only the time is refused.
    set_mode(&orphan, 0o666);
    let file = fs::File::options().write(true).open(&orphan).unwrap();
    file.set_modified(SystemTime::now() + 3650 * DAY).unwrap();
    // As the file system keeps it.
    let ahead = fs::metadata(&orphan).unwrap().modified().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    set_mode(dir.path(), 0o755);
    run_as_nobody(TEST, dir.path(), CHILD, dir.path());
    assert_eq!(fs::metadata(&orphan).unwrap().modified().unwrap(), ahead);
}

/// An archive or an orphan made while the clock was set years ahead still ages: the pass
/// gives it its own time, and the retention or grace counts from then. An archive whose name
/// is in the future is renamed with the pass's time: its modification time is its
/// transcript's last write, by which it would go at once.
#[test]
fn archives_and_orphans_from_the_future_age_from_when_a_pass_finds_them() {
    let dir = Scratch::new("future");
    let (store, clock) = open_with_clock(&dir, on_demand());
    let compact = |at: SystemTime| {
        let ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        sessionkit_write_lock::format_iso8601_ms(ms).replace(['-', ':'], "")
    };
    let ahead = clock.now() + 3650 * DAY;
    let archive = dir.join(format!("old.jsonl.deleted.{}", compact(ahead)));
    let unnamed = dir.join("sessions.json.bak.3");
    let orphan = dir.join("orphan.jsonl");
    let set_modified = |path: &Path, at: SystemTime| {
        fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    };
    for path in [&archive, &unnamed, &orphan] {
        fs::write(path, b"x").unwrap();
        set_modified(path, ahead);
    }
    // The archived transcript was last written long before it was archived.
    set_modified(&archive, clock.now() - 31 * DAY);
    let sorted = |mut paths: Vec<std::path::PathBuf>| {
        paths.sort();
        paths
    };
    let all = sorted(vec![archive.clone(), unnamed.clone(), orphan.clone()]);
    // A dry run says so and changes nothing.
    let dry = store.maintain(true).unwrap();
    assert_eq!(sorted(dry.restamped.clone()), all, "{dry:?}");
    assert!(dry.archives_removed.is_empty(), "{dry:?}");
    assert_eq!(fs::metadata(&orphan).unwrap().modified().unwrap(), ahead);

    let report = store.maintain(false).unwrap();
    assert_eq!(sorted(report.restamped.clone()), all, "{report:?}");
    assert!(report.archives_removed.is_empty(), "{report:?}");
    assert!(!report.is_empty());
    let renamed = dir.join(format!("old.jsonl.deleted.{}", compact(clock.now())));
    assert!(!archive.exists());
    assert_eq!(fs::read(&renamed).unwrap(), b"x");
    for path in [&unnamed, &orphan] {
        assert_eq!(fs::metadata(path).unwrap().modified().unwrap(), clock.now());
    }
    // Nothing is in the future any more.
    assert!(store.maintain(true).unwrap().restamped.is_empty());
    // The orphan's grace (1 hour) counts from that pass.
    clock.advance(2 * 3600 * Duration::from_secs(1));
    let report = store.maintain(false).unwrap();
    assert_eq!(report.orphans, std::slice::from_ref(&orphan));
    assert!(report.restamped.is_empty(), "{report:?}");
    // And the archives' retention (30 days).
    clock.advance(31 * DAY);
    let report = store.maintain(false).unwrap();
    for path in [&renamed, &unnamed] {
        assert!(report.archives_removed.contains(path), "{report:?}");
        assert!(!path.exists());
    }
}

/// Without an archive retention a pass lists no archives, and a dry run shows the same.
#[test]
fn without_a_retention_archives_from_the_future_are_left_alone() {
    let dir = Scratch::new("future-kept");
    let (store, clock) = open_with_clock(&dir, on_demand().archive_retention(None));
    let ms = (clock.now() + 3650 * DAY)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let archive = dir.join(format!("old.jsonl.deleted.{ms}"));
    fs::write(&archive, b"x").unwrap();
    let dry = store.maintain(true).unwrap();
    let real = store.maintain(false).unwrap();
    assert!(dry.restamped.is_empty(), "{dry:?}");
    assert!(real.restamped.is_empty(), "{real:?}");
    assert!(archive.exists());
}

#[test]
fn delete_disposal_deletes_and_old_archives_and_orphans_go() {
    let dir = Scratch::new("dispose");
    let store = open(
        &dir,
        on_demand()
            .transcripts(TranscriptDisposal::Delete)
            .archive_retention(Some(7 * DAY)),
    );
    store.upsert("live", entry("live", DAY, "")).unwrap();
    store.upsert("gone", entry("gone", 40 * DAY, "")).unwrap();
    plant(&dir.join("live.jsonl"), 10, 2 * DAY);
    plant(&dir.join("gone.jsonl"), 10, Duration::ZERO);
    plant(
        &dir.join("orphan-old.jsonl"),
        10,
        2 * Duration::from_secs(3600),
    );
    plant(&dir.join("orphan-new.jsonl"), 10, Duration::from_secs(60));
    // Past the grace, but its write lock is held: someone is about to write its entry.
    plant(
        &dir.join("orphan-held.jsonl"),
        10,
        2 * Duration::from_secs(3600),
    );
    plant(&dir.join("orphan-held.jsonl.lock"), 1, Duration::ZERO);
    // An archive's age is the time in its name, whatever its modification time; without
    // one, the modification time.
    let x = format!("x.jsonl.deleted.{}", stamp(8 * DAY, Form::Ours));
    let y = format!("y.jsonl.reset.{}", stamp(6 * DAY, Form::OpenClaw));
    let bak = format!("sessions.json.bak.{}", stamp(9 * DAY, Form::Millis));
    plant(&dir.join(&x), 10, Duration::ZERO);
    plant(&dir.join(&y), 10, 60 * DAY);
    plant(&dir.join(&bak), 10, Duration::ZERO);
    plant(&dir.join("sessions.json.bak.3"), 10, 9 * DAY);
    plant(&dir.join("notes.txt"), 10, 90 * DAY);
    let report = store.maintain(false).unwrap();
    assert_eq!(report.pruned, ["gone"]);
    let name = |p: &std::path::PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    let mut deleted: Vec<String> = report.deleted.iter().map(name).collect();
    deleted.sort();
    assert_eq!(deleted, ["gone.jsonl", "orphan-old.jsonl"]);
    assert_eq!(
        report.orphans.iter().map(name).collect::<Vec<_>>(),
        ["orphan-old.jsonl"]
    );
    let mut removed: Vec<String> = report.archives_removed.iter().map(name).collect();
    removed.sort();
    let mut expected = [bak, "sessions.json.bak.3".to_owned(), x];
    expected.sort();
    assert_eq!(removed, expected);
    let names = dir.names();
    for kept in [
        "live.jsonl",
        "orphan-new.jsonl",
        "orphan-held.jsonl",
        &y,
        "notes.txt",
    ] {
        assert!(names.contains(&kept.to_owned()), "{kept}: {names:?}");
    }
    // A second pass finds nothing left beyond the grace.
    let again = store.maintain(false).unwrap();
    assert!(again.is_empty(), "{again:?}");
}

/// Makes files immutable (`chattr +i`: neither renamed nor removed, by root too) until
/// dropped, so a pass's errors can be seen without another user.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    /// Why not, if `chattr` or the file system cannot do it.
    fn new(paths: &[std::path::PathBuf]) -> Result<Immutable, String> {
        let mut set = Immutable(Vec::new());
        for path in paths {
            let out = std::process::Command::new("chattr")
                .arg("+i")
                .arg(path)
                .output()
                .map_err(|e| format!("cannot run chattr: {e}"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
            }
            set.0.push(path.clone());
        }
        Ok(set)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(path)
                .status();
        }
    }
}

/// A file the pass cannot archive or remove is reported with its path, the step that
/// failed and the operating system's reason, and the pass goes on with the rest.
#[test]
fn files_a_pass_cannot_touch_are_errors_naming_the_step() {
    let dir = Scratch::new("dispose-errors");
    let store = open(&dir, on_demand().archive_retention(Some(7 * DAY)));
    let orphan = dir.join("orphan.jsonl");
    let archive = dir.join(format!("x.jsonl.deleted.{}", stamp(8 * DAY, Form::Ours)));
    let other = dir.join("other.jsonl");
    for path in [&orphan, &archive, &other] {
        plant(path, 10, 2 * DAY);
    }
    let _fixed = match Immutable::new(&[orphan.clone(), archive.clone()]) {
        Ok(fixed) => fixed,
        Err(why) => {
            println!("SKIP: files a pass cannot touch: {why}");
            return;
        }
    };
    let report = store.maintain(false).unwrap();
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    let failed = |path: &std::path::PathBuf, step: &str| {
        let start = format!("{}: could not {step} it: ", path.display());
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.starts_with(&start) && e.ends_with("(os error 1)")),
            "{start}: {:?}",
            report.errors
        );
    };
    failed(&orphan, "archive");
    failed(&archive, "remove");
    // The other orphan went on its way.
    assert_eq!(report.orphans, std::slice::from_ref(&other));
    assert!(orphan.exists() && archive.exists());
}

/// A disk budget of 20,000 bytes with its high water mark at half of it, archives kept.
fn budget_of_20k() -> Maintenance {
    on_demand()
        .max_disk_bytes(Some(20_000))
        .high_water(0.5)
        .archive_retention(None)
}

/// Entries `k0` to `k5` of sessions `s0` to `s5`, updated 10 minutes ago and a minute later
/// each, with `extra(i)` after their fields.
fn six_sessions(store: &Store, extra: impl Fn(u64) -> String) {
    for i in 0..6 {
        let sid = format!("s{i}");
        let ago = Duration::from_secs(600 - i * 60);
        store
            .upsert(format!("k{i}"), entry(&sid, ago, &extra(i)))
            .unwrap();
    }
}

#[test]
fn the_disk_budget_frees_archives_and_orphans_first_then_oldest_entries() {
    let dir = Scratch::new("disk");
    let store = open(&dir, budget_of_20k());
    six_sessions(&store, |_| String::new());
    for i in 0..6 {
        plant(&dir.join(format!("s{i}.jsonl")), 3000, Duration::ZERO);
    }
    let _active = store.mark_active("k0");
    plant(
        &dir.join("old.jsonl.deleted.20200101T000000.000Z"),
        4000,
        3 * DAY,
    );
    plant(&dir.join("orphan.jsonl"), 4000, Duration::from_secs(600));
    // Kept: an orphan a minute old (its entry may be on its way), one whose lock is held.
    plant(&dir.join("young.jsonl"), 10, Duration::from_secs(60));
    plant(&dir.join("held.jsonl"), 10, Duration::from_secs(600));
    plant(&dir.join("held.jsonl.lock"), 1, Duration::from_secs(600));
    // 6 x 3000 + 8000 + 21 + the journal: over 20,000; high water 10,000.
    let report = store.maintain(false).unwrap();
    assert!(report.disk_bytes_before.unwrap() > 20_000, "{report:?}");
    let name = |p: &std::path::PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        report.archives_removed.iter().map(name).collect::<Vec<_>>(),
        ["old.jsonl.deleted.20200101T000000.000Z"]
    );
    assert_eq!(
        report.orphans.iter().map(name).collect::<Vec<_>>(),
        ["orphan.jsonl"]
    );
    // Then the oldest entries but the active k0, with their transcripts deleted.
    assert_eq!(report.disk_evicted, ["k1", "k2", "k3"]);
    let mut deleted: Vec<String> = report.deleted.iter().map(name).collect();
    deleted.sort();
    assert_eq!(
        deleted,
        ["orphan.jsonl", "s1.jsonl", "s2.jsonl", "s3.jsonl"]
    );
    assert!(report.disk_bytes_after.unwrap() <= 10_000, "{report:?}");
    assert!(store.get("k0").unwrap().is_some());
    assert_eq!(store.count().unwrap(), 3);
    let names = dir.names();
    for kept in ["young.jsonl", "held.jsonl", "held.jsonl.lock"] {
        assert!(names.contains(&kept.to_owned()), "{kept}: {names:?}");
    }
}

/// A pruned entry's transcript, to be archived, is deleted instead when the budget needs its
/// bytes. It is still the transcript of an entry this pass evicted, not an orphan, in a dry
/// run's report and in the pass's.
#[test]
fn a_transcript_the_budget_deletes_instead_of_archiving_is_no_orphan() {
    for dry in [true, false] {
        let dir = Scratch::new("disk-forced");
        let store = open(&dir, budget_of_20k());
        store.upsert("old", entry("s0", 40 * DAY, "")).unwrap();
        store
            .upsert("new", entry("s1", Duration::from_secs(60), ""))
            .unwrap();
        plant(&dir.join("s0.jsonl"), 18_000, Duration::from_secs(600));
        plant(&dir.join("s1.jsonl"), 3000, Duration::ZERO);
        let report = store.maintain(dry).unwrap();
        assert_eq!(report.dry_run, dry);
        assert_eq!(report.pruned, ["old"], "dry {dry}: {report:?}");
        assert!(report.disk_evicted.is_empty(), "dry {dry}: {report:?}");
        assert_eq!(
            report.deleted,
            [dir.join("s0.jsonl")],
            "dry {dry}: {report:?}"
        );
        assert!(report.archived.is_empty(), "dry {dry}: {report:?}");
        assert!(report.orphans.is_empty(), "dry {dry}: {report:?}");
        assert_eq!(dir.join("s0.jsonl").exists(), dry);
        assert!(dir.join("s1.jsonl").exists());
        assert!(
            !dir.names().iter().any(|n| n.contains(".deleted.")),
            "dry {dry}: {:?}",
            dir.names()
        );
    }
}

#[test]
fn warn_mode_and_dry_runs_change_nothing() {
    let dir = Scratch::new("warn");
    let store = open(&dir, on_demand().mode(MaintenanceMode::Warn));
    store.upsert("old", entry("s", 40 * DAY, "")).unwrap();
    plant(&dir.join("s.jsonl"), 10, Duration::ZERO);
    let report = store.maintain(false).unwrap();
    assert!(report.dry_run);
    assert_eq!(report.pruned, ["old"]);
    assert_eq!(report.archived.len(), 1);
    assert!(store.get("old").unwrap().is_some());
    assert!(dir.join("s.jsonl").exists());

    let dry = Scratch::new("dry");
    let enforce = open(&dry, on_demand());
    enforce.upsert("old", entry("s", 40 * DAY, "")).unwrap();
    let report = enforce.maintain(true).unwrap();
    assert_eq!(report.pruned, ["old"]);
    assert!(enforce.get("old").unwrap().is_some());
}

/// Every file of `dir` with its bytes and modification time.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>, SystemTime)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap(),
                meta.modified().unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// `plan_maintenance` reads the store as it is and plans a whole pass without opening it: a
/// torn journal tail, a snapshot without a journal (OpenClaw's registry) and an old temp file
/// stay as they are, and the plan is what a dry run of an open store reports. A transcript
/// whose write lock file exists is left out of the plan, as the pass leaves it.
#[test]
fn a_planned_pass_changes_nothing_and_leaves_out_held_transcripts() {
    let dir = Scratch::new("plan-only");
    let path = dir.join("sessions.json");
    let m = on_demand().orphan_grace(Duration::from_secs(60));
    {
        let store = open(&dir, m.clone());
        store.upsert("old", entry("s0", 40 * DAY, "")).unwrap();
        store.upsert("held", entry("s1", 41 * DAY, "")).unwrap();
        store
            .upsert("new", entry("s2", Duration::ZERO, ""))
            .unwrap();
        store.compact().unwrap();
    }
    for sid in ["s0", "s1", "s2", "orphan"] {
        plant(&dir.join(format!("{sid}.jsonl")), 10, DAY);
    }
    plant(&dir.join("s1.jsonl.lock"), 10, Duration::ZERO);
    plant(
        &dir.join(".sessions.json.1.0123456789abcdef.sktmp"),
        10,
        DAY,
    );

    // The report of an open store's dry run, from a copy of the directory: the open changes
    // its files.
    let copy = Scratch::new("plan-only-copy");
    for (name, bytes, _) in files_of(dir.path()) {
        fs::write(copy.join(&name), bytes).unwrap();
        set_modified_ago(
            &copy.join(&name),
            if name.contains("lock") {
                Duration::ZERO
            } else {
                DAY
            },
        );
    }
    let opened = open(&copy, m.clone()).maintain(true).unwrap();
    // The open removed the old temp file; the plan below leaves it.
    assert!(
        !copy
            .join(".sessions.json.1.0123456789abcdef.sktmp")
            .exists()
    );

    // Then a torn tail, and no journal at all.
    let journal = dir.join("sessions.json.journal");
    let mut bytes = fs::read(&journal).unwrap();
    bytes.extend_from_slice(b"{\"seq\":9");
    fs::write(&journal, &bytes).unwrap();
    for journal_too in [true, false] {
        if !journal_too {
            fs::remove_file(&journal).unwrap();
        }
        let before = files_of(dir.path());
        let report = sessionkit_session_store::plan_maintenance(&path, &m).unwrap();
        assert_eq!(files_of(dir.path()), before, "the files changed");
        assert!(report.dry_run);
        assert_eq!(report.pruned, ["held", "old"]);
        let names = |paths: &[std::path::PathBuf]| -> Vec<String> {
            paths
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(&report.archived), ["s0.jsonl", "orphan.jsonl"]);
        assert_eq!(names(&report.orphans), ["orphan.jsonl"]);
        assert_eq!(names(&report.temps_removed), Vec::<String>::new());
        assert_eq!(report.pruned, opened.pruned);
        assert_eq!(names(&report.archived), names(&opened.archived));
        assert_eq!(names(&report.orphans), names(&opened.orphans));
    }

    // The real pass leaves the held transcript too.
    let store = open(&dir, m);
    let done = store.maintain(false).unwrap();
    assert_eq!(done.pruned, ["held", "old"]);
    assert!(dir.join("s1.jsonl").exists());
    assert!(!dir.join("s0.jsonl").exists());
}

#[test]
fn without_maintenance_settings_nothing_is_ever_evicted() {
    let dir = Scratch::new("none");
    let store = Store::open(dir.join("sessions.json")).unwrap();
    store.upsert("old", entry("s", 400 * DAY, "")).unwrap();
    let report = store.maintain(false).unwrap();
    assert_eq!(report.mode, MaintenanceMode::Off);
    assert!(report.is_empty());
    assert!(store.get("old").unwrap().is_some());
}

#[test]
fn reaching_the_cap_starts_a_background_pass() {
    let dir = Scratch::new("background");
    let store = open(
        &dir,
        Maintenance::new().max_entries(Some(20)).interval(None),
    );
    fill_22(&store);
    // The pass runs on its own thread; wait for its effect (no deadline is asserted).
    for _ in 0..2000 {
        if store.count().unwrap() == 20 {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(store.count().unwrap(), 20);
    assert!(store.get("k00").unwrap().is_none());
    assert!(store.get("k21").unwrap().is_some());
}

/// Upserts `k00` to `k21`, oldest first (k00 was updated 100 s ago, k21 79 s ago).
fn fill_22(store: &Store) {
    for i in 0..22 {
        store
            .upsert(
                format!("k{i:02}"),
                entry("s", Duration::from_secs(100 - i), ""),
            )
            .unwrap();
    }
}

/// A hook that records the keys each heard pass evicted for the cap.
#[allow(clippy::type_complexity)]
fn hearing() -> (
    std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>,
    impl Fn(&sessionkit_session_store::MaintenanceReport) + Send + Sync + 'static,
) {
    let heard: std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>> = Default::default();
    let sink = std::sync::Arc::clone(&heard);
    (
        heard,
        move |r: &sessionkit_session_store::MaintenanceReport| {
            sink.lock().unwrap().push(r.capped.clone())
        },
    )
}

#[test]
fn the_pass_hook_hears_background_passes() {
    let dir = Scratch::new("hook-bg");
    let (heard, hook) = hearing();
    let store = open(
        &dir,
        Maintenance::new()
            .max_entries(Some(20))
            .interval(None)
            .on_pass(hook),
    );
    fill_22(&store);
    // The hook runs on the pass's thread once the pass is done; wait for what it heard.
    for _ in 0..2000 {
        if heard.lock().unwrap().concat().len() >= 2 {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(heard.lock().unwrap().concat(), ["k00", "k01"]);
    assert_eq!(store.count().unwrap(), 20);
}

#[test]
fn the_pass_hook_hears_explicit_passes_but_not_dry_runs_or_idle_ones() {
    let dir = Scratch::new("hook");
    let (heard, hook) = hearing();
    let store = open(&dir, on_demand().max_entries(Some(20)).on_pass(hook));
    fill_22(&store);
    let dry = store.maintain(true).unwrap();
    assert_eq!(dry.capped, ["k00", "k01"]);
    assert!(heard.lock().unwrap().is_empty(), "a dry run was heard");
    store.maintain(false).unwrap();
    store.maintain(false).unwrap();
    assert_eq!(*heard.lock().unwrap(), [vec!["k00", "k01"]]);
}

/// The active marks are read when a pass starts; one set while it plans must still keep the
/// entry. The protection rule, which the planner calls, marks the oldest entry active as it
/// is looked at.
#[test]
fn an_entry_marked_active_while_a_pass_plans_is_not_evicted() {
    use std::sync::{Arc, Mutex};

    let dir = Scratch::new("active-mid-pass");
    let cell: Arc<Mutex<Option<Store>>> = Arc::default();
    let marks = Arc::new(Mutex::new(Vec::new()));
    let rule = {
        let (cell, marks) = (cell.clone(), marks.clone());
        move |key: &str, _: &Entry| {
            if key == "k0"
                && let Some(store) = cell.lock().unwrap().as_ref()
            {
                marks.lock().unwrap().push(store.mark_active("k0"));
            }
            false
        }
    };
    let store = open(&dir, on_demand().max_entries(Some(2)).protect(rule));
    for i in 0..4 {
        let key = format!("k{i}");
        let sid = format!("s{i}");
        store
            .upsert(key, entry(&sid, Duration::from_secs(100 - i), ""))
            .unwrap();
    }
    *cell.lock().unwrap() = Some(store.clone());

    // Four entries against a cap of 2 (slack 1): the oldest two go, but k0 became active.
    let report = store.maintain(false).unwrap();
    assert_eq!(report.capped, ["k1"]);
    assert!(!marks.lock().unwrap().is_empty(), "the rule never ran");
    assert!(store.get("k0").unwrap().is_some());
    assert_eq!(store.count().unwrap(), 3);
    // The store holds the rule, which holds the store: break the cycle.
    cell.lock().unwrap().take();
}

/// A transcript keeps its modification time when it is archived; the archive's retention
/// still counts from the archiving, so the archive of a session pruned for age stays.
#[test]
fn an_archive_is_kept_for_its_retention_from_when_it_was_made() {
    let dir = Scratch::new("archive-age");
    let store = open(&dir, on_demand().archive_retention(Some(30 * DAY)));
    store.upsert("old", entry("s-old", 40 * DAY, "")).unwrap();
    plant(&dir.join("s-old.jsonl"), 10, 35 * DAY);
    let first = store.maintain(false).unwrap();
    assert_eq!(first.pruned, ["old"]);
    assert_eq!(first.archived.len(), 1, "{first:?}");
    let second = store.maintain(false).unwrap();
    assert!(second.is_empty(), "{second:?}");
    let archives: Vec<String> = dir
        .names()
        .into_iter()
        .filter(|n| n.starts_with("s-old.jsonl.deleted."))
        .collect();
    assert_eq!(archives.len(), 1, "{:?}", dir.names());
}

/// Opens a store whose clock moves only when told, with background maintenance every minute.
fn open_with_clock(dir: &Scratch, m: Maintenance) -> (Store, std::sync::Arc<ManualClock>) {
    let clock = std::sync::Arc::new(ManualClock::new());
    let store = Store::builder()
        .maintenance(m)
        .auto_compact(false)
        .clock(clock.clone())
        .open(dir.join("sessions.json"))
        .unwrap();
    (store, clock)
}

/// Touches `probe`, and returns the passes started so far, the check after that touch
/// included: the writer checks after it answers a batch and before it takes the next, so the
/// check has run once a second touch is answered (which starts no pass of its own: nothing
/// changed since the first).
fn passes_after_a_touch(store: &Store) -> u64 {
    store.touch("probe").unwrap();
    store.touch("probe").unwrap();
    store.counters().background_passes
}

/// A store that gets an update more often than its interval still has its timed passes: they
/// are started after a batch once due, not only when the writer has been idle that long.
#[test]
fn timed_passes_run_under_steady_traffic() {
    let dir = Scratch::new("timed-busy");
    let (tx, rx) = std::sync::mpsc::channel();
    let hook = move |r: &sessionkit_session_store::MaintenanceReport| {
        let _ = tx.send(r.pruned.clone());
    };
    let (store, clock) = open_with_clock(
        &dir,
        Maintenance::new()
            .interval(Some(Duration::from_secs(60)))
            .on_pass(hook),
    );
    let old_ms = clock.now().duration_since(UNIX_EPOCH).unwrap() - 40 * DAY;
    let old = format!(r#"{{"sessionId":"so","updatedAt":{}}}"#, old_ms.as_millis());
    store.upsert("old", Entry::parse(&old).unwrap()).unwrap();
    store
        .upsert("probe", entry("sp", Duration::ZERO, ""))
        .unwrap();
    // Updates within the interval start nothing.
    for _ in 0..5 {
        clock.advance(Duration::from_secs(10));
        assert_eq!(passes_after_a_touch(&store), 0);
    }
    clock.advance(Duration::from_secs(11));
    assert_eq!(passes_after_a_touch(&store), 1);
    // The pass runs on its own thread; its report arrives when it is done (the deadline only
    // keeps a broken build from hanging).
    let pruned = rx.recv_timeout(Duration::from_secs(120)).unwrap();
    assert_eq!(pruned, ["old"]);
    // The next is due a full interval after this one started.
    clock.advance(Duration::from_secs(59));
    assert_eq!(passes_after_a_touch(&store), 1);
    clock.advance(Duration::from_secs(2));
    assert_eq!(passes_after_a_touch(&store), 2);
}

/// A clock whose wall time can be set back, as an operator or NTP does, while its monotonic
/// time only moves forward.
#[derive(Debug)]
struct SetBackClock(std::sync::Mutex<(std::time::SystemTime, std::time::Instant)>);

impl sessionkit_write_lock::Clock for SetBackClock {
    fn now(&self) -> std::time::SystemTime {
        self.0.lock().unwrap().0
    }

    fn instant(&self) -> std::time::Instant {
        self.0.lock().unwrap().1
    }
}

/// Timed passes go by the monotonic clock: a store opened while the wall clock was a day
/// ahead still has its pass a minute later once the wall clock is set right.
#[test]
fn timed_passes_survive_a_wall_clock_set_back() {
    let dir = Scratch::new("timed-set-back");
    let start = std::time::SystemTime::now();
    let clock = std::sync::Arc::new(SetBackClock(std::sync::Mutex::new((
        start + DAY,
        std::time::Instant::now(),
    ))));
    let store = Store::builder()
        .maintenance(Maintenance::new().interval(Some(Duration::from_secs(60))))
        .auto_compact(false)
        .clock(clock.clone())
        .open(dir.join("sessions.json"))
        .unwrap();
    store
        .upsert("probe", entry("sp", Duration::ZERO, ""))
        .unwrap();
    let step = |by: Duration| {
        let mut state = clock.0.lock().unwrap();
        state.0 = start + by;
        state.1 += Duration::from_secs(30);
    };
    step(Duration::from_secs(30));
    assert_eq!(passes_after_a_touch(&store), 0);
    step(Duration::from_secs(61));
    assert_eq!(passes_after_a_touch(&store), 1);
}

/// In warn mode the cap evicts nothing, so the count stays past its trigger; the cap then
/// starts a pass only each time the count grows by the slack again, not after every batch.
#[test]
fn a_cap_that_cannot_evict_does_not_start_a_pass_per_batch() {
    let dir = Scratch::new("warn-cap");
    let store = open(
        &dir,
        Maintenance::new()
            .mode(MaintenanceMode::Warn)
            .max_entries(Some(100))
            .interval(None),
    );
    store
        .upsert("probe", entry("sp", Duration::ZERO, ""))
        .unwrap();
    for i in 0..199 {
        store
            .upsert(
                format!("k{i:03}"),
                entry("s", Duration::from_secs(1000 - i), ""),
            )
            .unwrap();
    }
    // 200 entries against a trigger of 125 (cap 100, slack 25): a pass at 126, and then one
    // each time the count passes where the last pass left it plus 25, at most 3 in all.
    let passes = passes_after_a_touch(&store);
    assert!((1..=3).contains(&passes), "{passes} passes");
    assert_eq!(store.count().unwrap(), 200);
}

/// Opens a store (clock moved by hand) whose passes have no time to spare, beside 100 orphan
/// transcripts two hours old; each pass's report is sent to the receiver as (entries capped,
/// orphans removed, incomplete).
fn open_with_backlog(
    dir: &Scratch,
    m: Maintenance,
) -> (
    Store,
    std::sync::Arc<ManualClock>,
    std::sync::mpsc::Receiver<(usize, usize, bool)>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let (store, clock) = open_with_clock(
        dir,
        m.time_budget(Duration::ZERO).on_pass(move |r| {
            let _ = tx.send((r.capped.len(), r.orphans.len(), r.incomplete));
        }),
    );
    for i in 0..100 {
        plant(
            &dir.join(format!("o{i:03}.jsonl")),
            10,
            2 * Duration::from_secs(3600),
        );
    }
    (store, clock, rx)
}

/// The orphans [`open_with_backlog`] planted that are still there.
fn backlog_left(dir: &Scratch) -> Vec<String> {
    dir.names()
        .into_iter()
        .filter(|n| n.starts_with('o') && n.ends_with(".jsonl"))
        .collect()
}

/// A pass out of time still removes 64 files, and the next background pass follows within a
/// second rather than a whole interval.
#[test]
fn a_backlog_of_orphans_shrinks_by_every_pass_and_soon() {
    let dir = Scratch::new("backlog");
    let (store, clock, rx) = open_with_backlog(
        &dir,
        Maintenance::new().interval(Some(Duration::from_secs(60))),
    );
    store
        .upsert("probe", entry("sp", Duration::ZERO, ""))
        .unwrap();
    clock.advance(Duration::from_secs(61));
    assert_eq!(passes_after_a_touch(&store), 1);
    let hang = sessionkit_test_support::HANG;
    assert_eq!(rx.recv_timeout(hang).unwrap(), (0, 64, true));
    clock.advance(Duration::from_secs(1));
    assert_eq!(passes_after_a_touch(&store), 2);
    assert_eq!(rx.recv_timeout(hang).unwrap(), (0, 36, false));
    let left = backlog_left(&dir);
    assert!(left.is_empty(), "{left:?}");
}

/// With no interval and no requests, a pass that ran out of time is still followed about a
/// second later. The idle writer used to wait for the next request, so the rest of the backlog
/// stayed until the next batch came.
#[test]
fn an_unfinished_pass_goes_on_with_no_interval_and_no_requests() {
    let dir = Scratch::new("backlog-idle");
    let (store, clock, rx) =
        open_with_backlog(&dir, Maintenance::new().interval(None).max_entries(Some(1)));
    // The third entry passes the cap's trigger (a cap of 1 and a slack of 1): its batch starts
    // the first pass, and no request follows.
    for i in 0..3u64 {
        store
            .upsert(
                format!("k{i}"),
                entry(&format!("s{i}"), DAY - Duration::from_secs(i), ""),
            )
            .unwrap();
    }
    let hang = sessionkit_test_support::HANG;
    assert_eq!(rx.recv_timeout(hang).unwrap(), (2, 64, true));
    clock.advance(Duration::from_secs(1));
    assert_eq!(rx.recv_timeout(hang).unwrap(), (0, 36, false));
    assert_eq!(store.counters().background_passes, 2);
    let left = backlog_left(&dir);
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(store.count().unwrap(), 1);
}

/// Protection orders the disk budget's evictions (unprotected entries first) but cannot defeat
/// it: a rule that protects everything still lets the oldest entries go; active ones stay.
#[test]
fn the_disk_budget_evicts_protected_entries_last_but_evicts_them() {
    let dir = Scratch::new("disk-protected");
    let store = open(
        &dir,
        on_demand()
            .max_disk_bytes(Some(20_000))
            .high_water(0.5)
            .protect(|key, _| key.starts_with('p')),
    );
    // p0 is the oldest and protected, u1 unprotected, p2 protected but active, p3 to p5.
    for (i, key) in ["p0", "u1", "p2", "p3", "p4", "p5"].iter().enumerate() {
        let sid = format!("s{i}");
        store
            .upsert(
                *key,
                entry(&sid, Duration::from_secs(600 - i as u64 * 60), ""),
            )
            .unwrap();
        plant(&dir.join(format!("{sid}.jsonl")), 4000, Duration::ZERO);
    }
    let _active = store.mark_active("p2");
    // 24,000 bytes and the journal against a high water of 10,000: u1 goes first, then the
    // oldest protected ones but the active p2.
    let report = store.maintain(false).unwrap();
    assert_eq!(report.disk_evicted, ["u1", "p0", "p3", "p4"]);
    assert_eq!(report.kept_protected, 2, "{report:?}");
    assert!(report.disk_bytes_after.unwrap() <= 10_000, "{report:?}");
    let mut left: Vec<String> = store
        .list(&sessionkit_session_store::ListQuery::default())
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    left.sort();
    assert_eq!(left, ["p2", "p5"]);
}

/// Files in subdirectories count toward the disk budget (OpenClaw's budget skipped them, so a
/// directory could grow past it unseen) and are never touched. When they alone hold the high
/// water mark, evicting sessions cannot help, and none is evicted for them.
#[test]
fn the_disk_budget_counts_subdirectories_but_evicts_nothing_for_them_alone() {
    let dir = Scratch::new("disk-nested");
    let store = open(
        &dir,
        on_demand().max_disk_bytes(Some(20_000)).high_water(0.5),
    );
    sessions_with_transcripts(&store, &dir, 4, 4000);
    fs::create_dir_all(dir.join("media/deep")).unwrap();
    let blob = dir.join("media/deep/blob");
    plant(&blob, 5000, Duration::ZERO);
    // 16,000 bytes of transcripts and a small journal are under the budget on their own; with
    // the 5,000 below `media/` they pass it, and the oldest sessions go down to 10,000.
    let report = store.maintain(false).unwrap();
    assert!(report.disk_bytes_before.unwrap() > 20_000, "{report:?}");
    assert_eq!(report.disk_evicted, ["k0", "k1", "k2"], "{report:?}");
    assert!(report.disk_bytes_after.unwrap() <= 10_000, "{report:?}");

    // Now `media/` alone holds 20,000 bytes: past the high water mark whatever is evicted.
    plant(&dir.join("media/more"), 15_000, Duration::ZERO);
    let report = store.maintain(false).unwrap();
    assert!(report.disk_bytes_before.unwrap() > 20_000, "{report:?}");
    assert!(report.disk_evicted.is_empty(), "{report:?}");
    assert!(store.get("k3").unwrap().is_some());
    assert_eq!(fs::metadata(&blob).unwrap().len(), 5000);
    assert_eq!(fs::metadata(dir.join("media/more")).unwrap().len(), 15_000);
}

/// The bytes of the regular files directly in `dir`, as a pass counts them.
fn top_level_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().metadata().unwrap())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

#[test]
fn the_disk_budget_frees_nothing_when_subdirectories_alone_pass_the_high_water_mark() {
    let dir = Scratch::new("disk-nested-beyond-reach");
    let store = open(
        &dir,
        on_demand().max_disk_bytes(Some(20_000)).high_water(0.5),
    );
    store
        .upsert("k0", entry("s0", Duration::from_secs(60), ""))
        .unwrap();
    plant(&dir.join("s0.jsonl"), 100, Duration::ZERO);
    // Inside their own rules' limits, which the budget alone would have overridden: an
    // archive made now (retention 30 days), an orphan 10 min old (grace 1 h) and a temp file
    // 10 min old (removed at open, or for the budget).
    let fresh = dir.join(format!(
        "fresh.jsonl.deleted.{}",
        stamp(Duration::ZERO, Form::Ours)
    ));
    plant(&fresh, 1000, Duration::ZERO);
    let young = dir.join("young.jsonl");
    plant(&young, 1000, Duration::from_secs(600));
    let temp = dir.join("sessions.json.4242.0b7c9e1a.tmp");
    plant(&temp, 1000, Duration::from_secs(600));
    // Past their own rules' limits: these go as they would without a budget.
    let expired = dir.join(format!(
        "expired.jsonl.deleted.{}",
        stamp(40 * DAY, Form::Ours)
    ));
    plant(&expired, 700, Duration::ZERO);
    let old = dir.join("old.jsonl");
    plant(&old, 300, 2 * Duration::from_secs(3600));
    fs::create_dir_all(dir.join("media")).unwrap();
    plant(&dir.join("media/big"), 25_000, Duration::ZERO);
    let before = top_level_bytes(dir.path()) + 25_000;

    // `media/` alone is past the high water mark of 10,000, and past the budget.
    let report = store.maintain(false).unwrap();
    assert_eq!(report.disk_bytes_before, Some(before), "{report:?}");
    assert!(report.disk_evicted.is_empty(), "{report:?}");
    assert_eq!(report.archives_removed, [expired.as_path()], "{report:?}");
    assert_eq!(report.orphans, [old.as_path()], "{report:?}");
    assert_eq!(report.archived, [old.as_path()], "{report:?}");
    assert!(report.deleted.is_empty(), "{report:?}");
    assert!(report.temps_removed.is_empty(), "{report:?}");
    // Archiving renames the orphan: only the expired archive's bytes are gone.
    assert_eq!(report.disk_bytes_after, Some(before - 700), "{report:?}");
    assert_eq!(
        top_level_bytes(dir.path()) + 25_000,
        before - 700,
        "{:?}",
        dir.names()
    );
    for kept in [&fresh, &young, &temp, &dir.join("s0.jsonl")] {
        assert!(kept.exists(), "{}: {:?}", kept.display(), dir.names());
    }
    assert!(!expired.exists() && !old.exists(), "{:?}", dir.names());
    assert!(store.get("k0").unwrap().is_some());

    // With `media/` under the mark, the budget frees space again, oldest first: the archive
    // made a day ago is enough to bring the total under 10,000.
    fs::remove_file(dir.join("media/big")).unwrap();
    plant(&dir.join("media/small"), 5000, Duration::ZERO);
    let bulk = dir.join(format!("bulk.jsonl.deleted.{}", stamp(DAY, Form::Ours)));
    plant(&bulk, 12_000, Duration::ZERO);
    let report = store.maintain(false).unwrap();
    assert!(report.disk_bytes_before.unwrap() > 20_000, "{report:?}");
    assert_eq!(report.archives_removed, [bulk], "{report:?}");
    assert!(report.temps_removed.is_empty(), "{report:?}");
    assert!(report.orphans.is_empty(), "{report:?}");
    assert!(report.disk_evicted.is_empty(), "{report:?}");
    let after = top_level_bytes(dir.path()) + 5000;
    assert!(after <= 10_000, "{after}: {:?}", dir.names());
    assert_eq!(report.disk_bytes_after, Some(after), "{report:?}");
}

/// `n` entries `k00`, `k01`, ... of about `pad` bytes each, oldest first, compacted into the
/// snapshot; the store's directory then holds the snapshot and a journal with its header.
fn compacted_entries(dir: &Scratch, n: u64, pad: usize) {
    let store = open(dir, on_demand().max_entries(None).prune_after(None));
    let pad = format!(r#","pad":"{}""#, "y".repeat(pad));
    for i in 0..n {
        store
            .upsert(
                format!("k{i:02}"),
                entry(&format!("s{i}"), Duration::from_secs(1000 - i), &pad),
            )
            .unwrap();
    }
    store.compact().unwrap();
}

/// An evicted entry's bytes leave the snapshot only at a compaction: a pass that evicted
/// under a disk budget compacts, so the next pass does not count them again and evict more.
#[test]
fn passes_under_a_disk_budget_evict_once_not_again_and_again() {
    let dir = Scratch::new("disk-again");
    compacted_entries(&dir, 20, 1000);
    let max = top_level_bytes(dir.path()) - 1000;
    let store = open(
        &dir,
        on_demand()
            .max_entries(None)
            .prune_after(None)
            .max_disk_bytes(Some(max)),
    );
    let first = store.maintain(false).unwrap();
    let evicted = first.disk_evicted.len();
    assert!(evicted > 0, "{first:?}");
    assert_eq!(first.disk_evicted[0], "k00");
    let after = top_level_bytes(dir.path());
    assert!(after <= (max as f64 * 0.8) as u64, "{after} of {max}");
    assert_eq!(first.disk_bytes_after, Some(after));
    for _ in 0..3 {
        let again = store.maintain(false).unwrap();
        assert!(again.is_empty(), "{again:?}");
    }
    assert_eq!(store.count().unwrap(), 20 - evicted);
}

/// A dry run plans what a pass does: the journal records a real pass writes for the cap's
/// evictions do not push it over a disk budget that the dry run was under.
#[test]
fn a_dry_run_under_a_cap_and_a_disk_budget_shows_what_the_pass_does() {
    let plan = |dry: bool| {
        let dir = Scratch::new("disk-dry");
        compacted_entries(&dir, 40, 500);
        let max = top_level_bytes(dir.path()) + 500;
        let store = open(
            &dir,
            on_demand()
                .max_entries(Some(20))
                .prune_after(None)
                .max_disk_bytes(Some(max)),
        );
        store.maintain(dry).unwrap()
    };
    let (dry, real) = (plan(true), plan(false));
    assert_eq!(dry.capped.len(), 20, "{dry:?}");
    assert_eq!(real.capped, dry.capped);
    assert!(dry.disk_evicted.is_empty(), "{dry:?}");
    assert_eq!(real.disk_evicted, dry.disk_evicted);
}

/// Under the disk budget, entries are evicted only after the archives, orphans and temp files
/// that come first in the order are gone: a pass that ran out of time before them evicts
/// nothing for the budget, and leaves it to the next.
#[test]
fn a_pass_out_of_time_evicts_nothing_for_the_budget_before_the_cheaper_files_are_gone() {
    let dir = Scratch::new("disk-order");
    let store = open(
        &dir,
        on_demand()
            .max_entries(None)
            .prune_after(None)
            .archive_retention(None)
            .max_disk_bytes(Some(30_000))
            .high_water(0.5)
            .time_budget(Duration::ZERO),
    );
    sessions_with_transcripts(&store, &dir, 6, 3000);
    for i in 0..200 {
        plant(
            &dir.join(format!(
                "old{i:03}.jsonl.deleted.{}",
                stamp(DAY, Form::Ours)
            )),
            100,
            Duration::ZERO,
        );
    }
    let first = store.maintain(false).unwrap();
    assert!(first.incomplete, "{first:?}");
    assert_eq!(first.archives_removed.len(), 64, "{first:?}");
    assert!(first.disk_evicted.is_empty(), "{first:?}");
    assert_eq!(store.count().unwrap(), 6);
    // The next passes go on with the archives. Once the directory is under the budget they
    // stop, and no entry had to go for it.
    let mut passes = 1;
    while store.maintain(false).unwrap().incomplete {
        passes += 1;
        assert!(passes < 10, "the passes never ended");
    }
    assert_eq!(store.count().unwrap(), 6);
    let left = dir
        .names()
        .iter()
        .filter(|n| n.contains(".deleted."))
        .count();
    assert!(left > 0 && left < 200, "{left}");
    assert!(top_level_bytes(dir.path()) <= 30_000);
}

#[test]
fn a_high_water_mark_of_zero_frees_all_it_may_when_there_are_no_subdirectories() {
    let dir = Scratch::new("disk-zero");
    let store = open(&dir, on_demand().max_disk_bytes(Some(1000)).high_water(0.0));
    sessions_with_transcripts(&store, &dir, 3, 500);
    let archive = dir.join(format!("a.jsonl.deleted.{}", stamp(DAY, Form::Ours)));
    plant(&archive, 500, Duration::ZERO);
    // A mark of 0 cannot be reached (the journal stays), but with nothing in subdirectories
    // it is not theirs to hold: every archive and every entry goes, oldest first.
    let report = store.maintain(false).unwrap();
    assert_eq!(report.archives_removed, [archive], "{report:?}");
    assert_eq!(report.disk_evicted, ["k0", "k1", "k2"], "{report:?}");
    assert_eq!(store.count().unwrap(), 0);
    // The compaction that ends a pass that evicted under a budget wrote the empty registry.
    assert_eq!(dir.names(), ["sessions.json", "sessions.json.journal"]);
    assert_eq!(
        fs::read_to_string(dir.join("sessions.json")).unwrap(),
        "{}\n"
    );
}

/// The mount, or `None` after a `SKIP:` line saying why it could not be made.
fn mounted(mount: Result<Mount, String>) -> Option<Mount> {
    mount
        .inspect_err(|why| println!("SKIP: session-store disk budget across mounts: {why}"))
        .ok()
}

#[test]
fn the_disk_budget_counts_no_other_file_system_below_the_store() {
    let dir = Scratch::new("disk-mount");
    let store = open(&dir, on_demand().max_disk_bytes(Some(1 << 30)));
    fs::create_dir_all(dir.join("media")).unwrap();
    plant(&dir.join("media/here"), 3000, Duration::ZERO);
    let other = dir.dir("media/tmpfs");
    let Some(_mount) = mounted(Mount::new(&["-t", "tmpfs", "tmpfs"], &other)) else {
        return;
    };
    plant(&other.join("there"), 7000, Duration::ZERO);
    let report = store.maintain(true).unwrap();
    let expected = top_level_bytes(dir.path()) + 3000;
    assert_eq!(report.disk_bytes_before, Some(expected), "{report:?}");
}

#[test]
fn a_bind_mount_of_the_store_inside_itself_is_counted_once() {
    let dir = Scratch::new("disk-bind");
    let store = open(&dir, on_demand().max_disk_bytes(Some(1 << 30)));
    store
        .upsert("k0", entry("s0", Duration::from_secs(60), ""))
        .unwrap();
    plant(&dir.join("s0.jsonl"), 2000, Duration::ZERO);
    fs::create_dir_all(dir.join("media")).unwrap();
    plant(&dir.join("media/blob"), 3000, Duration::ZERO);
    let inside = dir.dir("loop");
    let Some(_mount) = mounted(Mount::new(
        &["--bind", dir.path().to_str().unwrap()],
        &inside,
    )) else {
        return;
    };
    // `loop/` shows the store's directory again, `media/` and `loop/` included.
    assert!(inside.join("s0.jsonl").exists() && inside.join("media/blob").exists());
    let report = store.maintain(true).unwrap();
    let expected = top_level_bytes(dir.path()) + 3000;
    assert_eq!(report.disk_bytes_before, Some(expected), "{report:?}");
}

#[test]
fn a_transcript_named_by_a_session_file_or_a_topic_like_id_is_no_orphan() {
    let dir = Scratch::new("refs");
    let store = open(&dir, on_demand());
    // A session id that holds `-topic-`: its transcript is not session `a`'s topic.
    store.upsert("a", entry("a-topic-b", DAY, "")).unwrap();
    // A transcript named by `sessionFile` only, in another directory's path.
    store
        .upsert(
            "c",
            entry("sc", DAY, r#","sessionFile":"/elsewhere/renamed.jsonl""#),
        )
        .unwrap();
    let old = 2 * DAY;
    for name in [
        "a-topic-b.jsonl",
        "renamed.jsonl",
        "sc.jsonl",
        "lost.jsonl",
        "lost-topic-1.jsonl",
    ] {
        plant(&dir.join(name), 10, old);
    }
    // A dry run without the store plans as the pass does.
    let planned =
        sessionkit_session_store::plan_maintenance(dir.join("sessions.json"), &on_demand())
            .unwrap();
    assert_eq!(
        file_names(&planned.orphans),
        ["lost-topic-1.jsonl", "lost.jsonl"]
    );
    let report = store.maintain(false).unwrap();
    assert_eq!(
        file_names(&report.orphans),
        ["lost-topic-1.jsonl", "lost.jsonl"]
    );
    let names = dir.names();
    for kept in ["a-topic-b.jsonl", "renamed.jsonl", "sc.jsonl"] {
        assert!(names.contains(&kept.to_owned()), "{kept}: {names:?}");
    }
    // Once its entry is deleted, both of its transcripts are orphans.
    store.delete("c").unwrap();
    let report = store.maintain(false).unwrap();
    assert_eq!(file_names(&report.orphans), ["renamed.jsonl", "sc.jsonl"]);
    assert!(dir.names().contains(&"a-topic-b.jsonl".to_owned()));
}

#[test]
fn an_evicted_entry_takes_its_sessions_transcripts_and_leaves_its_session_files_to_the_grace() {
    let dir = Scratch::new("release");
    let store = open(&dir, on_demand());
    let file = |f: &str| format!(r#","sessionFile":"{f}""#);
    // `other.jsonl` may as well be a new session's here, named by a path elsewhere.
    store
        .upsert("old", entry("so", 40 * DAY, &file("/x/other.jsonl")))
        .unwrap();
    store
        .upsert("old2", entry("so2", 40 * DAY, &file("shared.jsonl")))
        .unwrap();
    // Still names `shared.jsonl`, from another path.
    store
        .upsert("keep", entry("sk", DAY, &file("/y/shared.jsonl")))
        .unwrap();
    // All inside the orphan grace.
    for name in [
        "so.jsonl",
        "so-topic-1.jsonl",
        "other.jsonl",
        "so2.jsonl",
        "shared.jsonl",
        "sk.jsonl",
    ] {
        plant(&dir.join(name), 10, Duration::ZERO);
    }
    let planned =
        sessionkit_session_store::plan_maintenance(dir.join("sessions.json"), &on_demand())
            .unwrap();
    let taken = ["so-topic-1.jsonl", "so.jsonl", "so2.jsonl"];
    assert_eq!(file_names(&planned.archived), taken);
    let report = store.maintain(false).unwrap();
    assert_eq!(report.pruned, ["old", "old2"]);
    assert_eq!(file_names(&report.archived), taken);
    assert!(report.orphans.is_empty(), "{report:?}");
    let names = dir.names();
    for kept in ["other.jsonl", "shared.jsonl", "sk.jsonl"] {
        assert!(names.contains(&kept.to_owned()), "{kept}: {names:?}");
    }
    // Past the grace, the file no entry names any more is an orphan.
    for name in ["other.jsonl", "shared.jsonl"] {
        set_modified_ago(&dir.join(name), 2 * DAY);
    }
    let report = store.maintain(false).unwrap();
    assert_eq!(file_names(&report.orphans), ["other.jsonl"]);
}

#[test]
fn a_session_file_written_on_windows_keeps_its_transcript() {
    let dir = Scratch::new("windows-path");
    let store = open(&dir, on_demand());
    store
        .upsert(
            "w",
            entry(
                "sw",
                DAY,
                r#","sessionFile":"C:\\Users\\op\\sessions\\renamed.jsonl""#,
            ),
        )
        .unwrap();
    plant(&dir.join("renamed.jsonl"), 10, 2 * DAY);
    plant(&dir.join("lost.jsonl"), 10, 2 * DAY);
    let report = store.maintain(false).unwrap();
    assert_eq!(file_names(&report.orphans), ["lost.jsonl"]);
    assert!(dir.names().contains(&"renamed.jsonl".to_owned()));
}

#[test]
fn the_disk_budget_keeps_transcripts_named_by_session_file_until_their_entry_goes() {
    let dir = Scratch::new("disk-files");
    let store = open(&dir, budget_of_20k());
    six_sessions(&store, |i| {
        // k0 is running, which a plan without the store sees as active too.
        let status = if i == 0 { r#","status":"running""# } else { "" };
        format!(r#","sessionFile":"/srv/sessions/t{i}.jsonl"{status}"#)
    });
    for i in 0..6 {
        // Old enough to be an orphan for the budget, were it one.
        plant(
            &dir.join(format!("t{i}.jsonl")),
            3000,
            Duration::from_secs(600),
        );
    }
    plant(
        &dir.join("old.jsonl.deleted.20200101T000000.000Z"),
        4000,
        3 * DAY,
    );
    // 6 x 3000 + 4000 + the journal: over 20,000; high water 10,000.
    let planned =
        sessionkit_session_store::plan_maintenance(dir.join("sessions.json"), &budget_of_20k())
            .unwrap();
    let report = store.maintain(false).unwrap();
    assert!(report.disk_bytes_before.unwrap() > 20_000, "{report:?}");
    assert!(report.orphans.is_empty(), "{report:?}");
    assert_eq!(report.disk_evicted, ["k1", "k2", "k3"]);
    assert_eq!(
        file_names(&report.deleted),
        ["t1.jsonl", "t2.jsonl", "t3.jsonl"]
    );
    // The plan reaches the high water mark; the eviction records the pass then appends to the
    // journal count in the total after it.
    assert!(planned.disk_bytes_after.unwrap() <= 10_000, "{planned:?}");
    assert_eq!(planned.disk_evicted, report.disk_evicted);
    assert_eq!(file_names(&planned.deleted), file_names(&report.deleted));
}
