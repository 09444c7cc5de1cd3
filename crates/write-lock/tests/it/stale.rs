//! The stale rules, as a table over planted lock files, and what acquire does with each.
//!
//! Where our semantics differ from OpenClaw's on purpose, the test says so.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::Duration;

use sessionkit_test_support::{CHECKED_AS_NOBODY, run_as_nobody, set_mode, why_not_as_nobody};
use sessionkit_write_lock::{LockConfig, Locker, OwnerRule, StaleReason as R, Status};

use crate::util::{
    ChildHolder, Scratch, Sleeper, dead_pid, lock_of, plant_legacy, quick_locker, set_modified_ago,
};

const MIN: Duration = Duration::from_secs(60);

fn inspect(target: &Path) -> (Status, Vec<R>) {
    let i = Locker::new().inspect(target).unwrap();
    (i.status, i.reasons)
}

#[test]
fn dead_pid_with_old_created_at_is_reclaimed_with_our_record() {
    let dir = Scratch::new("deadpid");
    let target = dir.join("t");
    plant_legacy(&target, Some(dead_pid()), Some(60 * MIN), None, None);
    assert_eq!(
        inspect(&target),
        (Status::Stale, vec![R::DeadPid, R::TooOld])
    );
    let guard = quick_locker(Duration::from_millis(100))
        .acquire(&target)
        .unwrap();
    assert_eq!(guard.record().pid, Some(std::process::id()));
}

#[test]
fn fresh_empty_object_is_malformed_and_kept() {
    let dir = Scratch::new("emptyobj");
    let target = dir.join("t");
    fs::write(lock_of(&target), b"{}").unwrap();
    assert_eq!(
        inspect(&target),
        (Status::Malformed, vec![R::MissingPid, R::InvalidCreatedAt])
    );
    assert!(
        quick_locker(Duration::from_millis(50))
            .acquire(&target)
            .unwrap_err()
            .is_timeout()
    );
    assert_eq!(fs::read(lock_of(&target)).unwrap(), b"{}");
}

#[test]
fn empty_lock_grace_follows_the_acquire_timeout() {
    let dir = Scratch::new("grace");
    // 10 s old with a 500 ms timeout: the grace is 5 s, so it is reclaimed.
    let a = dir.join("a");
    fs::write(lock_of(&a), b"").unwrap();
    set_modified_ago(&lock_of(&a), Duration::from_secs(10));
    quick_locker(Duration::from_millis(500))
        .acquire(&a)
        .unwrap();
    // 10 s old with a 30 s timeout: the grace is 30 s, so it is kept.
    let b = dir.join("b");
    fs::write(lock_of(&b), b"").unwrap();
    set_modified_ago(&lock_of(&b), Duration::from_secs(10));
    assert!(
        quick_locker(Duration::from_secs(30))
            .try_acquire(&b)
            .unwrap()
            .is_none()
    );
    // 35 s old with a 30 s timeout: reclaimed at once.
    let c = dir.join("c");
    fs::write(lock_of(&c), b"").unwrap();
    set_modified_ago(&lock_of(&c), Duration::from_secs(35));
    quick_locker(Duration::from_secs(30))
        .try_acquire(&c)
        .unwrap()
        .unwrap();
    // An observer (the sweeper's view) keeps one 10 s old.
    assert_eq!(inspect(&b).0, Status::Malformed);
}

#[test]
fn two_minute_old_empty_object_is_reclaimed_when_stale_is_ten_seconds() {
    let dir = Scratch::new("shortstale");
    let target = dir.join("t");
    fs::write(lock_of(&target), b"{}").unwrap();
    set_modified_ago(&lock_of(&target), 2 * MIN);
    let locker = Locker::with_config(
        LockConfig::builder()
            .stale_after(Duration::from_secs(10))
            .max_hold(Duration::from_secs(10))
            .acquire_timeout(Duration::from_secs(60))
            .watchdog(false)
            .build()
            .unwrap(),
    );
    locker.try_acquire(&target).unwrap().unwrap();
}

#[test]
fn hold_exceeded_is_reported_to_a_contender_but_never_robs_a_live_holder() {
    let dir = Scratch::new("holdexceeded");
    let live = Sleeper::spawn();
    let target = dir.join("t");
    plant_legacy(
        &target,
        Some(live.pid),
        Some(Duration::from_secs(30)),
        Some(live.start_time),
        Some(10_000),
    );
    // OpenClaw's contender fails fast with a stale error; ours waits, then names the holder.
    let err = quick_locker(Duration::from_millis(50))
        .acquire(&target)
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    let holder = err.holder().unwrap();
    assert!(holder.past_max_hold);
    assert!(err.to_string().contains("past its max hold"), "{err}");
    assert!(lock_of(&target).exists());
    // An observer never reports hold-exceeded (as OpenClaw's sweeper).
    assert_eq!(inspect(&target), (Status::Held, vec![]));
    // Fresh against a 60 s max hold: nothing to report.
    plant_legacy(
        &target,
        Some(live.pid),
        Some(Duration::ZERO),
        Some(live.start_time),
        Some(60_000),
    );
    let err = quick_locker(Duration::from_millis(30))
        .acquire(&target)
        .unwrap_err();
    assert!(!err.holder().unwrap().past_max_hold);
}

#[test]
fn too_old_live_owner_is_kept_and_reported() {
    let dir = Scratch::new("tooold");
    let live = Sleeper::spawn();
    let target = dir.join("t");
    plant_legacy(
        &target,
        Some(live.pid),
        Some(120 * MIN),
        Some(live.start_time),
        None,
    );
    assert_eq!(inspect(&target), (Status::Held, vec![R::TooOld]));
    assert!(
        quick_locker(Duration::from_millis(30))
            .acquire(&target)
            .unwrap_err()
            .is_timeout()
    );
    assert!(lock_of(&target).exists());
}

#[test]
fn a_live_foreign_owner_is_stale_only_with_the_non_owner_rule() {
    let dir = Scratch::new("foreign");
    let live = Sleeper::spawn();
    let target = dir.join("t");
    plant_legacy(
        &target,
        Some(live.pid),
        Some(Duration::ZERO),
        Some(live.start_time),
        None,
    );
    let locker = |ours: OwnerRule, foreign: bool| {
        Locker::with_config(
            LockConfig::builder()
                .acquire_timeout(Duration::from_millis(30))
                .watchdog(false)
                .ours(ours)
                .foreign_owners_stale(foreign)
                .build()
                .unwrap(),
        )
    };
    // Off by default, and off with only an `ours` rule: the live `sleep` keeps its lock.
    assert_eq!(inspect(&target), (Status::Held, vec![]));
    let off = locker(OwnerRule::programs(["gateway"]), false);
    assert!(off.acquire(&target).unwrap_err().is_timeout());
    // On, with `sleep` among our programs: still held.
    let ours = locker(OwnerRule::programs(["gateway", "sleep"]), true);
    let i = ours.inspect(&target).unwrap();
    assert_eq!((i.status, i.reasons), (Status::Held, vec![]));
    // On, and `sleep` is not ours: a contender takes the lock over.
    let on = locker(OwnerRule::programs(["gateway"]), true);
    let i = on.inspect(&target).unwrap();
    assert_eq!(
        (i.status, i.reasons),
        (Status::Stale, vec![R::ForeignOwner])
    );
    on.acquire(&target).unwrap().release().unwrap();
    // The rule needs `ours`.
    let err = LockConfig::builder()
        .foreign_owners_stale(true)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("foreign_owners_stale"), "{err}");
}

#[test]
fn recycled_pid_is_reclaimed() {
    let dir = Scratch::new("recycled");
    let live = Sleeper::spawn();
    let target = dir.join("t");
    plant_legacy(
        &target,
        Some(live.pid),
        Some(Duration::ZERO),
        Some(live.start_time + 1),
        None,
    );
    assert_eq!(inspect(&target), (Status::Stale, vec![R::RecycledPid]));
    quick_locker(Duration::from_millis(100))
        .acquire(&target)
        .unwrap();
}

#[test]
fn own_pid_orphans() {
    let dir = Scratch::new("orphan");
    let me = std::process::id();
    let my_start = sessionkit_write_lock::ProcLookup
        .probe(me)
        .unwrap()
        .start_time
        .unwrap();
    use sessionkit_write_lock::OwnerLookup;
    // With our start time: an orphan for everyone.
    let a = dir.join("a");
    plant_legacy(&a, Some(me), Some(Duration::ZERO), Some(my_start), None);
    assert_eq!(inspect(&a), (Status::Stale, vec![R::OrphanSelfPid]));
    quick_locker(Duration::from_millis(100))
        .acquire(&a)
        .unwrap();
    // Without a start time: proof enough for an acquire, not for an observer.
    let b = dir.join("b");
    plant_legacy(&b, Some(me), Some(Duration::ZERO), None, None);
    assert_eq!(inspect(&b), (Status::Held, vec![]));
    quick_locker(Duration::from_millis(100))
        .acquire(&b)
        .unwrap();
    // A lock this process really holds is never an orphan.
    let c = dir.join("c");
    let locker = quick_locker(Duration::from_millis(30));
    let held = locker.acquire(&c).unwrap();
    let i = locker.inspect(&c).unwrap();
    assert_eq!((i.status, i.held_here), (Status::Held, true));
    drop(held);
}

#[test]
fn our_record_is_judged_by_its_os_lock_whatever_its_pid() {
    let dir = Scratch::new("oslock");
    let live = Sleeper::spawn();
    let target = dir.join("t");
    // A record of ours naming a live process, but nobody holds its OS lock: the owner is gone.
    fs::write(
        lock_of(&target),
        format!(
            "{{\"pid\": {}, \"starttime\": {}, \"createdAt\": \"{}\", \"sessionkit\": 1, \"osLock\": true}}",
            live.pid,
            live.start_time,
            crate::util::iso_ago(Duration::ZERO)
        ),
    )
    .unwrap();
    assert_eq!(inspect(&target), (Status::Stale, vec![R::OwnerGone]));
    quick_locker(Duration::from_millis(100))
        .acquire(&target)
        .unwrap();
}

#[test]
fn a_live_holder_in_another_process_is_held_and_a_killed_one_is_reclaimed() {
    crate::util::holder_role();
    let dir = Scratch::new("child");
    let target = dir.join("t");
    let mut holder = ChildHolder::hold(
        &target,
        "stale::a_live_holder_in_another_process_is_held_and_a_killed_one_is_reclaimed",
    );
    let i = Locker::new().inspect(&target).unwrap();
    assert_eq!((i.status, i.held_here), (Status::Held, false));
    assert_eq!(i.record.as_ref().unwrap().pid, Some(holder.pid()));
    let err = quick_locker(Duration::from_millis(50))
        .acquire(&target)
        .unwrap_err();
    assert_eq!(
        err.holder().unwrap().record.as_ref().unwrap().pid,
        Some(holder.pid())
    );
    holder.kill9();
    assert_eq!(inspect(&target), (Status::Stale, vec![R::OwnerGone]));
    let guard = quick_locker(Duration::from_millis(100))
        .acquire(&target)
        .unwrap();
    assert_eq!(guard.record().pid, Some(std::process::id()));
}

#[test]
fn other_boot_is_a_reboot() {
    let dir = Scratch::new("reboot");
    let target = dir.join("t");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    fs::write(
        lock_of(&target),
        format!(
            "{{\"pid\": 1, \"createdAt\": \"{}\", \"hostname\": \"{}\", \"bootId\": \"00000000-0000-0000-0000-000000000000\"}}",
            crate::util::iso_ago(Duration::ZERO),
            host.trim()
        ),
    )
    .unwrap();
    assert_eq!(inspect(&target), (Status::Stale, vec![R::Rebooted]));
}

#[test]
fn a_record_from_another_host_is_not_judged_by_our_pids() {
    let dir = Scratch::new("otherhost");
    let target = dir.join("t");
    fs::write(
        lock_of(&target),
        format!(
            "{{\"pid\": {}, \"createdAt\": \"{}\", \"hostname\": \"elsewhere.example\"}}",
            dead_pid(),
            crate::util::iso_ago(Duration::ZERO)
        ),
    )
    .unwrap();
    assert_eq!(inspect(&target), (Status::Held, vec![]));
}

#[test]
fn a_symlink_as_lock_file_is_never_followed() {
    let dir = Scratch::new("linklock");
    let target = dir.join("t");
    let victim = dir.join("victim");
    fs::write(&victim, b"keep me").unwrap();
    std::os::unix::fs::symlink(&victim, lock_of(&target)).unwrap();
    assert_eq!(inspect(&target).0, Status::Malformed);
    let (_, removed) = Locker::new().remove_if_stale(&lock_of(&target)).unwrap();
    assert!(!removed, "young: kept");
    assert_eq!(fs::read(&victim).unwrap(), b"keep me");
}

#[test]
fn openclaw_fixtures_are_judged_by_openclaw_rules() {
    let dir = Scratch::new("fixtures");
    for (name, expected) in [
        ("openclaw-empty-object.json", Status::Malformed),
        ("empty.lock", Status::Malformed),
        ("garbage.lock", Status::Malformed),
        ("array.lock", Status::Malformed),
    ] {
        let target = dir.join(name);
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
            lock_of(&target),
        )
        .unwrap();
        assert_eq!(inspect(&target).0, expected, "{name}");
        set_modified_ago(&lock_of(&target), 2 * MIN);
        assert_eq!(inspect(&target).0, Status::Stale, "{name} past the grace");
    }
}

#[test]
fn a_lock_recreated_between_judgement_and_removal_survives() {
    let dir = Scratch::new("race");
    let target = dir.join("t");
    let lock = lock_of(&target);
    plant_legacy(&target, Some(dead_pid()), Some(60 * MIN), None, None);
    let locker = Locker::new();
    let live = Sleeper::spawn();
    let replacement = format!(
        "{{\"pid\": {}, \"starttime\": {}}}",
        live.pid, live.start_time
    );
    let replacement2 = replacement.clone();
    // In the window, another process (a shell, as an OpenClaw process would) removes the
    // stale file and creates its own.
    locker.set_removal_hook(move |path| {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(r#"rm -f "$1" && printf '%s' "$2" > "$1""#)
            .args(["sh", path.to_str().unwrap(), &replacement2])
            .status()
            .unwrap();
        assert!(status.success());
    });
    let (inspection, removed) = locker.remove_if_stale(&lock).unwrap();
    assert_eq!(inspection.status, Status::Stale);
    assert!(!removed, "the re-created lock must survive");
    assert_eq!(fs::read_to_string(&lock).unwrap(), replacement);
}

/// What became of a dead owner's stale lock that was judged once while `change` acted on the
/// file between the judgement and the removal.
struct Window {
    /// The lock's bytes when it was judged.
    before: Vec<u8>,
    removed: bool,
    /// The lock's bytes afterwards; `None` once it is gone.
    after: Option<Vec<u8>>,
}

/// Plants a dead owner's stale lock in a fresh directory, judges it once and lets `change` act
/// on the file between the judgement and the removal.
fn stale_lock_changed_by(tag: &str, change: impl Fn(&Path) + Send + Sync + 'static) -> Window {
    let dir = Scratch::new(tag);
    let target = dir.join("t");
    let lock = lock_of(&target);
    plant_legacy(&target, Some(dead_pid()), Some(60 * MIN), None, None);
    let before = fs::read(&lock).unwrap();
    let locker = Locker::new();
    locker.set_removal_hook(change);
    let (inspection, removed) = locker.remove_if_stale_once(&lock, |_| false).unwrap();
    assert_eq!(inspection.status, Status::Stale);
    let after = match fs::read(&lock) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("read {}: {e}", lock.display()),
    };
    Window {
        before,
        removed,
        after,
    }
}

#[test]
fn a_lock_rewritten_in_place_between_judgement_and_removal_survives() {
    // Same file, same length, one byte different: only the bytes tell.
    let window = stale_lock_changed_by("inplace", |path| {
        let mut file = fs::OpenOptions::new().write(true).open(path).unwrap();
        std::io::Write::write_all(&mut file, b"[").unwrap();
    });
    assert!(!window.removed, "a lock changed in place must survive");
    let after = window.after.unwrap();
    assert_eq!(after.len(), window.before.len());
    assert_eq!(after[0], b'[');
}

#[test]
fn a_lock_appended_to_between_judgement_and_removal_survives() {
    // The judged bytes are still the file's first bytes; only its length changed.
    let window = stale_lock_changed_by("append", |path| {
        let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
        std::io::Write::write_all(&mut file, b"\n").unwrap();
    });
    assert!(!window.removed, "a lock that grew must survive");
    assert_eq!(window.after.unwrap().len(), window.before.len() + 1);
}

#[test]
fn an_unchanged_stale_lock_is_removed_once_judged() {
    // The control for the two tests above: the same path with a hook that changes nothing.
    let window = stale_lock_changed_by("unchanged", |_| {});
    assert!(window.removed);
    assert_eq!(window.after, None);
}

#[test]
fn a_fifo_as_lock_file_is_judged_without_waiting_for_a_writer() {
    let dir = Scratch::new("fifo");
    let target = dir.join("t");
    let status = std::process::Command::new("mkfifo")
        .arg(lock_of(&target))
        .status()
        .unwrap();
    assert!(status.success());
    // An open that waited for a writer would hang here.
    assert_eq!(inspect(&target).0, Status::Malformed);
    let (_, removed) = Locker::new().remove_if_stale(&lock_of(&target)).unwrap();
    assert!(!removed, "young: kept");
    assert!(
        fs::symlink_metadata(lock_of(&target))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

#[test]
fn looking_at_a_lock_leaves_its_access_time_alone() {
    let dir = Scratch::new("atime");
    let target = dir.join("t");
    let live = Sleeper::spawn();
    plant_legacy(
        &target,
        Some(live.pid),
        Some(MIN),
        Some(live.start_time),
        None,
    );
    let lock = lock_of(&target);
    // An access time older than the modification time is one `relatime` would update on read.
    let long_ago = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let set_atime = || {
        fs::File::open(&lock)
            .unwrap()
            .set_times(fs::FileTimes::new().set_accessed(long_ago))
            .unwrap();
    };
    let atime = || fs::metadata(&lock).unwrap().accessed().unwrap();
    set_atime();
    fs::read(&lock).unwrap();
    if atime() == long_ago {
        println!("SKIP: access times: this file system does not update them on read");
        return;
    }
    set_atime();
    assert_eq!(inspect(&target).0, Status::Held);
    let (_, removed) = Locker::new()
        .remove_if_stale_once(&lock, |_| false)
        .unwrap();
    assert!(!removed, "a live owner's lock is kept");
    assert_eq!(
        atime(),
        long_ago,
        "inspecting and judging read the lock file"
    );
}

/// Set (to the target) when this test binary runs again as user 65534.
const NOBODY_CHILD: &str = "SK_WL_TEST_AS_NOBODY";

#[test]
fn another_users_lock_is_looked_at_without_the_noatime_flag() {
    const TEST: &str = "stale::another_users_lock_is_looked_at_without_the_noatime_flag";
    if let Some(target) = std::env::var_os(NOBODY_CHILD) {
        // Linux refuses `O_NOATIME` on another user's file (`EPERM`); the look must open the
        // file again without it rather than fail.
        let target = Path::new(&target);
        assert_eq!(inspect(target).0, Status::Held);
        let (_, removed) = Locker::new()
            .remove_if_stale_once(&lock_of(target), |_| false)
            .unwrap();
        assert!(!removed, "a live owner's lock is kept");
        println!("{CHECKED_AS_NOBODY}");
        return;
    }
    // Only root can run the look as another user; as one, it would be root's own file.
    if let Some(why) = why_not_as_nobody() {
        println!("SKIP: another user's lock: {why}");
        return;
    }
    let dir = Scratch::new("other-user");
    let target = dir.join("t");
    let live = Sleeper::spawn();
    plant_legacy(
        &target,
        Some(live.pid),
        Some(MIN),
        Some(live.start_time),
        None,
    );
    set_mode(dir.path(), 0o755);
    set_mode(&lock_of(&target), 0o644);
    run_as_nobody(TEST, dir.path(), NOBODY_CHILD, &target);
    assert!(lock_of(&target).exists());
}
