//! The state directory as a service meets it: open, startup sweep, transcripts, cleanup,
//! settings from variables.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use sessionkit_service::{Error, StateDir, StateDirBuilder, SweepStatus};
use sessionkit_session_store::{Entry, Maintenance};

/// A lock record of a process that cannot exist (above Linux's pid maximum), long ago.
const DEAD_LOCK: &str = r#"{"pid": 4194304, "createdAt": "2020-01-01T00:00:00.000Z"}"#;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn opening_an_existing_directory_starts_a_new_registry_and_sweeps_only_stale_locks() {
    // The directory must exist to hold the planted locks; `a_missing_directory_is_created`
    // covers creating it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("dead.jsonl.lock"), DEAD_LOCK).unwrap();
    std::fs::write(dir.join("notes.lock"), "not a lock record").unwrap();

    // A live holder in this process: its lock must survive the sweep.
    let held = sessionkit_write_lock::Locker::new()
        .acquire(dir.join("live.jsonl"))
        .unwrap();

    let state = StateDir::builder().open(&dir).unwrap();
    let status = state.wait_startup_sweep(Duration::from_secs(60));
    let report = status.report().expect("the sweep finished").clone();
    assert_eq!(report.totals.removed, 1, "{report:?}");
    let files = names(&dir);
    assert!(!files.contains(&"dead.jsonl.lock".to_owned()), "{files:?}");
    assert!(files.contains(&"live.jsonl.lock".to_owned()), "{files:?}");
    assert!(files.contains(&"notes.lock".to_owned()), "{files:?}");
    // No registry was there, so the open started an empty one.
    assert!(state.store().open_report().created);
    assert_eq!(state.store().count().unwrap(), 0);
    held.release().unwrap();
}

#[test]
fn a_missing_directory_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/state");
    let state = StateDir::builder().startup_sweep(false).open(&dir).unwrap();
    assert!(dir.is_dir());
    assert!(matches!(state.startup_sweep(), SweepStatus::Off));
    assert_eq!(state.store().count().unwrap(), 0);
}

#[test]
fn a_bad_variable_fails_the_open_by_name_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    for (name, value) in [
        ("SESSIONKIT_MAX_ENTRIES", "1e3"),
        ("SESSIONKIT_SYNC", "sometimes"),
        ("SESSIONKIT_MAINTENANCE", "later"),
        ("SESSIONKIT_STARTUP_SWEEP", "maybe"),
        ("SESSIONKIT_ORPHAN_GRACE_MS", "0"),
        ("SESSIONKIT_LOCK_MAX_HOLD_MS", "-5"),
    ] {
        let err = StateDir::builder()
            .apply_env(env(&[(name, value)]))
            .open(&dir)
            .unwrap_err();
        assert!(err.is_config(), "{name}: {err:?}");
        let text = format!("{err}: {:?}", std::error::Error::source(&err));
        assert!(text.contains(name), "{name}: {text}");
        assert!(!dir.exists(), "{name} created the directory");
    }
}

#[test]
fn variables_reach_the_registry_and_the_sweep() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("dead.jsonl.lock"), DEAD_LOCK).unwrap();
    let state = StateDir::builder()
        .apply_env(env(&[
            ("SESSIONKIT_STARTUP_SWEEP", "off"),
            ("SESSIONKIT_MAX_ENTRIES", "2"),
            ("SESSIONKIT_SYNC", "never"),
        ]))
        .open(&dir)
        .unwrap();
    assert!(matches!(state.startup_sweep(), SweepStatus::Off));
    assert!(dir.join("dead.jsonl.lock").exists());
    for n in 0..5 {
        let entry = Entry::parse(&format!(r#"{{"sessionId":"s{n}"}}"#)).unwrap();
        state.store().upsert(format!("k{n}"), entry).unwrap();
    }
    // The cap of 2 holds once a pass ran; a background pass may have run first, and the cap's
    // hysteresis (1 entry of slack at this size) lets a pass leave 3. The default cap would
    // keep all 5.
    state.store().maintain(false).unwrap();
    let count = state.store().count().unwrap();
    assert!((2..=3).contains(&count), "{count} entries");
}

#[test]
fn a_setter_after_from_env_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::builder()
        .apply_env(env(&[("SESSIONKIT_STARTUP_SWEEP", "off")]))
        .startup_sweep(true)
        .open(tmp.path())
        .unwrap();
    assert!(!matches!(state.startup_sweep(), SweepStatus::Off));
}

#[test]
fn cleanup_abandons_held_transcripts_and_fences_them() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::builder().open(tmp.path()).unwrap();
    let mut kept = state.transcript("s1").unwrap();
    kept.append(b"{\"n\":1}").unwrap();
    let released = state.transcript("s2").unwrap();
    released.release().unwrap();
    let suspended = state.transcript("s3").unwrap().suspend().unwrap();
    let mut resumed = state.resume(suspended).unwrap();
    assert_eq!(state.held_count(), 2);

    let report = state.cleanup();
    let mut abandoned: Vec<_> = report
        .abandoned
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    abandoned.sort();
    assert_eq!(abandoned, ["s1.jsonl", "s3.jsonl"]);
    assert_eq!(state.held_count(), 0);
    assert!(kept.append(b"{\"n\":2}").is_err());
    assert!(resumed.append(b"{\"n\":2}").is_err());
    assert_eq!(
        std::fs::read(tmp.path().join("s1.jsonl")).unwrap(),
        b"{\"n\":1}\n"
    );
    assert!(!tmp.path().join("s1.jsonl.lock").exists());
}

#[test]
fn a_corrupt_registry_is_an_error_unless_recovery_is_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("sessions.json"), b"{\"a\": {").unwrap();
    let err = StateDir::builder().open(tmp.path()).unwrap_err();
    assert!(err.is_corrupt(), "{err:?}");
    assert_eq!(err.path(), Some(tmp.path()));
    assert_eq!(
        std::fs::read(tmp.path().join("sessions.json")).unwrap(),
        b"{\"a\": {"
    );

    let state = StateDir::builder()
        .apply_env(env(&[("SESSIONKIT_RECOVER", "on")]))
        .open(tmp.path())
        .unwrap();
    let quarantined = &state.store().open_report().quarantined;
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(std::fs::read(&quarantined[0]).unwrap(), b"{\"a\": {");
}

#[test]
fn a_transcript_held_elsewhere_times_out_as_a_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = sessionkit_write_lock::LockConfig::builder()
        .acquire_timeout(Duration::from_millis(50))
        .build()
        .unwrap();
    let state = StateDir::builder().lock(lock).open(tmp.path()).unwrap();
    let _held = state.transcript("s1").unwrap();
    let err: Error = state.transcript("s1").unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
}

#[test]
fn maintenance_settings_from_the_builder_are_used() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDirBuilder::default()
        .maintenance(Maintenance::new().max_entries(Some(1)).background(false))
        .open(tmp.path())
        .unwrap();
    for n in 0..3 {
        let entry = Entry::parse(&format!(r#"{{"sessionId":"s{n}"}}"#)).unwrap();
        state.store().upsert(format!("k{n}"), entry).unwrap();
    }
    assert_eq!(state.store().count().unwrap(), 3, "no background pass");
    let report = state.store().maintain(false).unwrap();
    assert_eq!(report.capped.len(), 2, "{report:?}");
    assert_eq!(state.store().count().unwrap(), 1);
}

#[cfg(feature = "tokio")]
#[tokio::test(flavor = "current_thread")]
async fn the_async_calls_work_on_a_single_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let state = StateDir::builder().open_async(tmp.path()).await.unwrap();
    let mut transcript = state.transcript_async("s1").await.unwrap();
    transcript.append_async("{}").await.unwrap();
    let suspended = transcript.suspend_async().await.unwrap();
    let transcript = state.resume_async(suspended).await.unwrap();
    transcript.release_async().await.unwrap();
    let status = state
        .wait_startup_sweep_async(Duration::from_secs(60))
        .await;
    assert!(status.is_finished());
    assert_eq!(std::fs::read(tmp.path().join("s1.jsonl")).unwrap(), b"{}\n");
}
